"""CAM-guided feature-space fusion (Elberg et al. 2024): the paper's claims, as the comparisons notebook 05 tests.

R. Elberg, D. Parra, M. Petrache, *Long Tail Image Generation Through Feature Space Augmentation and Iterated
Learning*, arXiv:2405.01705, 2024 (LXAI workshop at CVPR 2024). The extract we hold has no numbers for its claims
(its one table is not in it), so every claim is tested against zero (`Claim.paper` is None):

* C1 fused samples improve tail-class metrics over no augmentation;
* C2 ... and over plain oversampling of the tail (the natural baseline);
* C3 the CAMs matter: fusing with random masks is worse;
* C4 a few diffusion steps keep (or improve) image quality at a fraction of the cost (Frechet distance);
* C5 the caveat: label information leaks during diffusion and lowers tail-class AP (a decrease, direction -1).

`cam-fusion` vs `reweight` (a class-balanced loss, no new images) is ours: the second cheap baseline.

Every claim names the instruments it rests on (`latentlab.gates`, run by `experiments.cam_fusion.gate_rows`): a claim
that uses fused images rests on the AutoencoderKL, the Stage 1 round trip and the fused images (FUSED), one that uses
refined images also on those (REFINED); a classifier claim also on the classifier's convergence. `verdicts` tests
them all as one family (Bonferroni over the classifier and the image-quality claims together).
"""

from __future__ import annotations

import pandas as pd

from latentlab.stats import Claim, compare, one_family

REFERENCE = "Elberg, Parra, Petrache, Long Tail Image Generation Through Feature Space Augmentation and Iterated " \
            "Learning, arXiv:2405.01705, 2024"

FUSED = ("autoencoder_kl", "stage1", "fused")  # the instruments of a claim that uses fused images
REFINED = (*FUSED, "refined")  # ... of one that uses refined images
CLASSIFIER = ("classifier",)

CLAIMS = (
    Claim("cam-fusion", "none", instruments=FUSED + CLASSIFIER),  # C1
    Claim("cam-fusion", "oversample", instruments=FUSED + CLASSIFIER),  # C2
    Claim("cam-fusion", "random-mask", instruments=FUSED + CLASSIFIER),  # C3
    Claim("cam-fusion", "reweight", instruments=FUSED + CLASSIFIER),  # ours: the class-balanced loss
    Claim("cam-fusion+refine", "cam-fusion", direction=-1, instruments=REFINED + CLASSIFIER),  # C5: lower tail AP
)
METRICS = ("tail_ap", "ap", "balanced_accuracy")  # the metrics the classifier claims are tested on
QUALITY = ("frechet", "tail_fidelity")  # the image-quality metrics of C4 and the leak


def quality_claims(refine_steps: int, schedule: int) -> list[Claim]:
    """C4 and the leak: `refine_steps` steps, and the whole schedule (unconditional generation), against none;
    lower Frechet distance and lower tail fidelity are the claimed sides (direction -1). They rest on REFINED."""
    return [Claim(f"{k} steps", "0 steps", direction=-1, instruments=REFINED)
            for k in dict.fromkeys((refine_steps, schedule))]


def quality_verdicts(results: pd.DataFrame, refine_steps: int, schedule: int,
                     instruments: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paired tests over seeds of the cam-fusion images at each step count against 0 steps, one family: the Frechet
    distance (in the oracle-feature units) and the tail fidelity (in points). Neither is a classifier metric, so no
    run is degenerate (`degenerate=False`). results: tidy rows with `refine_steps` (the notebook's grid)."""
    fused = results[(results["arm"] == "cam-fusion") & results["metric"].isin(QUALITY)]
    steps = fused.assign(arm=fused["refine_steps"].astype(int).astype(str) + " steps")
    claims = quality_claims(refine_steps, schedule)
    at = dict(degenerate=False, instruments=instruments)
    return one_family(compare(steps, claims, metric="frechet", scale=1.0, **at),
                      compare(steps, claims, metric="tail_fidelity", **at))


def verdicts(results: pd.DataFrame, refine_steps: int, schedule: int,
             instruments: pd.DataFrame | None = None) -> pd.DataFrame:
    """The notebook's family: the classifier claims (CLAIMS on METRICS, in points) and `quality_verdicts`, with one
    Bonferroni m over all their decided rows; claims whose instruments failed a gate read "not tested"."""
    classifiers = compare(results, CLAIMS, metric=list(METRICS), instruments=instruments)
    return one_family(classifiers, quality_verdicts(results, refine_steps, schedule, instruments))
