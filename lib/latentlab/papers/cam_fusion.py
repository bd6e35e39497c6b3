"""CAM-guided feature-space fusion (Elberg et al. 2024): the paper's claims, as the comparisons notebook 05 tests.

R. Elberg, D. Parra, M. Petrache, *Long Tail Image Generation Through Feature Space Augmentation and Iterated
Learning*, arXiv:2405.01705, 2024 (LXAI workshop at CVPR 2024). The extract we hold has no numbers for its claims
(its one table is not in it), so every claim is tested against zero (`Claim.paper` is None):

* C1 fused samples improve tail-class metrics over no augmentation;
* C2 ... and over plain oversampling of the tail (the natural baseline);
* C3 the CAMs matter: fusing with the CAM masks beats fusing with each CAM's cells shuffled (`shuffled-mask`: as many
  tail cells, at random places; the control that changes one thing), with U(0, 1) masks (`random-mask`: places and
  amount both change, a second control) and with a random head partner (`random-partner`: the CAM neighbour search);
* C4 a few diffusion steps keep (or improve) image quality at a fraction of the cost (Frechet distance);
* C5 the caveat: label information leaks during diffusion and lowers tail-class AP (a decrease, direction -1).

Ours, like for like with what a practitioner would run: `cam-fusion` against `reweight-tail` (only the tail classes
up-weighted, by as much as fusion adds to them) and `cam-fusion+reweight` against `reweight` (the class-balanced loss
with and without the fused images).

Every claim names the instruments it rests on (`latentlab.gates`, run by `experiments.cam_fusion.gate_rows`): a claim
that uses fused images rests on the AutoencoderKL and the Stage 1 round trip (FUSED: the latent space and the code the
fused samples are decoded through), one that uses refined images also on the denoiser's sanity check (REFINED); a
classifier claim also on the classifier's convergence; an image-quality claim also on the label-free feature
autoencoder. The fused images' own measures (do they keep their tail label? how far are they from real ones?) are
the method's output, result rows, not an instrument: a method whose images lose the label is tested, and fails.
`verdicts` tests them all as one family (Bonferroni over the classifier and the image-quality claims together).
"""

from __future__ import annotations

import pandas as pd

from latentlab.stats import Claim, compare, one_family

REFERENCE = "Elberg, Parra, Petrache, Long Tail Image Generation Through Feature Space Augmentation and Iterated " \
            "Learning, arXiv:2405.01705, 2024"

FUSED = ("autoencoder_kl", "stage1")  # the instruments of a claim that uses fused images
REFINED = (*FUSED, "denoiser")  # ... of one that uses refined images
CLASSIFIER = ("classifier",)
QUALITY_INSTRUMENTS = ("feature_ae",)

CLAIMS = (
    Claim("cam-fusion", "none", instruments=FUSED + CLASSIFIER),  # C1
    Claim("cam-fusion", "oversample", instruments=FUSED + CLASSIFIER),  # C2
    Claim("cam-fusion", "shuffled-mask", instruments=FUSED + CLASSIFIER),  # C3: where the CAMs point
    Claim("cam-fusion", "random-mask", instruments=FUSED + CLASSIFIER),  # C3, the coarser control
    Claim("cam-fusion", "random-partner", instruments=FUSED + CLASSIFIER),  # C3: the CAM neighbour
    Claim("cam-fusion", "reweight-tail", instruments=FUSED + CLASSIFIER),  # ours: the same classes, no new images
    Claim("cam-fusion+reweight", "reweight", instruments=FUSED + CLASSIFIER),  # ours: fusion on top of reweighting
    Claim("cam-fusion+refine", "cam-fusion", direction=-1, instruments=REFINED + CLASSIFIER),  # C5: lower tail AP
)
HEADLINE = CLAIMS[:3]  # the scale check's claims (arms `experiments.cam_fusion.HEADLINE_ARMS`)
METRICS = ("tail_recall", "tail_ap", "balanced_accuracy")  # the metrics the classifier claims are tested on
QUALITY = ("frechet", "frechet_ae", "tail_fidelity")  # the image-quality metrics of C4 and the leak


def quality_claims(refine_steps: int, largest: int) -> list[Claim]:
    """C4 and the leak: `refine_steps` steps, and the largest step count measured, against none; lower Frechet
    distance and lower tail fidelity are the claimed sides (direction -1). They rest on REFINED and the label-free
    feature autoencoder."""
    return [Claim(f"{k} steps", "0 steps", direction=-1, instruments=REFINED + QUALITY_INSTRUMENTS)
            for k in dict.fromkeys((refine_steps, largest)) if k]


def quality_verdicts(results: pd.DataFrame, refine_steps: int, largest: int,
                     instruments: pd.DataFrame | None = None, mode: str | None = None) -> pd.DataFrame:
    """Paired tests over seeds of the cam-fusion images at each step count against 0 steps, one family: the Frechet
    distances (oracle features and label-free features, in their own units) and the tail fidelity (in points). No
    classifier metric, so no run is degenerate (`degenerate=False`). results: tidy rows with `refine_steps` (the
    notebook's grid) and, when they have it, `refine_mode` (only `mode`'s rows are tested; None: all)."""
    fused = results[(results["arm"] == "cam-fusion") & results["metric"].isin(QUALITY)]
    if mode is not None and "refine_mode" in fused:
        fused = fused[fused["refine_mode"] == mode]
    steps = fused.assign(arm=fused["refine_steps"].astype(int).astype(str) + " steps")
    claims = quality_claims(refine_steps, largest)
    at = dict(degenerate=False, instruments=instruments)
    tables = [compare(steps, claims, metric=m, scale=1.0, **at) for m in ("frechet", "frechet_ae")
              if (steps["metric"] == m).any()]
    return one_family(*tables, compare(steps, claims, metric="tail_fidelity", **at))


def verdicts(results: pd.DataFrame, refine_steps: int, largest: int,
             instruments: pd.DataFrame | None = None, mode: str | None = None) -> pd.DataFrame:
    """The notebook's family: the classifier claims (CLAIMS on METRICS, in points) and `quality_verdicts`, with one
    Bonferroni m over all their decided rows; claims whose instruments failed a gate read "not tested"."""
    classifiers = compare(results, CLAIMS, metric=list(METRICS), instruments=instruments)
    return one_family(classifiers, quality_verdicts(results, refine_steps, largest, instruments, mode))


def scale_check(results: pd.DataFrame, scaled: pd.DataFrame) -> pd.DataFrame:
    """`stats.scale_check` of the HEADLINE claims on tail recall and tail AP: did their effects move beyond the seed
    spread when the AutoencoderKL and Stage 1 got SCALE x their updates?"""
    from latentlab.stats import scale_check as check

    tables = [check(results, scaled, HEADLINE, metric=m) for m in ("tail_recall", "tail_ap")]
    return pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else tables[0]
