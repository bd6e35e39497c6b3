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
"""

from __future__ import annotations

import pandas as pd

from latentlab.stats import Claim, compare

REFERENCE = "Elberg, Parra, Petrache, Long Tail Image Generation Through Feature Space Augmentation and Iterated " \
            "Learning, arXiv:2405.01705, 2024"

CLAIMS = (
    Claim("cam-fusion", "none"),  # C1
    Claim("cam-fusion", "oversample"),  # C2
    Claim("cam-fusion", "random-mask"),  # C3
    Claim("cam-fusion", "reweight"),  # ours: the class-balanced loss
    Claim("cam-fusion+refine", "cam-fusion", direction=-1),  # C5: refinement lowers tail AP
)
METRICS = ("tail_ap", "ap", "balanced_accuracy")  # the metrics the classifier claims are tested on


def quality_claims(refine_steps: int, schedule: int) -> list[Claim]:
    """C4 and the leak: `refine_steps` steps, and the whole schedule (unconditional generation), against none;
    lower Frechet distance and lower tail fidelity are the claimed sides (direction -1)."""
    return [Claim(f"{k} steps", "0 steps", direction=-1) for k in dict.fromkeys((refine_steps, schedule))]


def quality_verdicts(results: pd.DataFrame, refine_steps: int, schedule: int) -> pd.DataFrame:
    """Paired tests over seeds of the cam-fusion images at each step count against 0 steps: the Frechet distance (in
    the oracle-feature units) and the tail fidelity (in points)."""
    fused = results[results["arm"] == "cam-fusion"]
    steps = fused.assign(arm=fused["refine_steps"].astype(int).astype(str) + " steps")
    claims = quality_claims(refine_steps, schedule)
    return pd.concat([compare(steps, claims, metric="frechet", scale=1.0),
                      compare(steps, claims, metric="tail_fidelity")], ignore_index=True)
