"""TSynD (Niemeijer et al. 2024): the paper's claims, as the paired comparisons notebook 02 tests.

J. Niemeijer, J. Ehrhardt, H. Uzunova, H. Handels, *TSynD: Targeted Synthetic Data Generation for Enhanced Medical
Image Classification*, arXiv:2406.17473, 2024. Our copy is an extract without its tables: the paper gives no effect
size, so every claim is tested against zero (`Claim.paper` is None) and each verdict says which effects the seeds
can and cannot detect (the minimum detectable effect).

The paper claims, on MedMNIST v2 and a chest X-ray set: (1) TSynD > random latent augmentation > no synthetic data,
most clearly with little data; (2) mutual information beats entropy as the target; (3) more robustness to test-time
perturbations and adversarial attacks. `recon-only` (plain autoencoder reconstructions) is our control, not the
paper's: it separates the targeting from "more autoencoder images".
"""

from __future__ import annotations

import pandas as pd

from latentlab.stats import Claim

REFERENCE = "Niemeijer et al., TSynD: Targeted Synthetic Data Generation for Enhanced Medical Image Classification, " \
            "arXiv:2406.17473, 2024"

CLAIMS = (
    Claim("tsynd-mi", "random-latent"),  # (1) targeted beats random latent moves of the same norm
    Claim("random-latent", "baseline"),  # (1) random latent augmentation beats no synthetic data
    Claim("tsynd-mi", "tsynd-entropy"),  # (2) MI beats entropy as the target
    Claim("tsynd-mi", "baseline"),  # (1) and (3): TSynD beats training without synthetic data
    Claim("tsynd-mi", "recon-only"),  # our control: the targeting, beyond the autoencoder images
    Claim("recon-only", "baseline"),  # our control: the autoencoder images alone
)
CLEAN = ("accuracy", "auc")
ROBUSTNESS = ("accuracy_tta", "accuracy_fgsm", "accuracy_pgd")  # test-time perturbations, FGSM, PGD (claim 3)
METRICS = CLEAN + ROBUSTNESS

# The paper's claims (and our control) beside the comparison and the metrics that test each.
STATEMENTS = (
    ("TSynD-MI > random latent augmentation", CLAIMS[0], CLEAN),
    ("random latent > baseline", CLAIMS[1], CLEAN),
    ("MI > entropy as the target", CLAIMS[2], CLEAN),
    ("more robust (test-time perturbations, attacks)", CLAIMS[3], ROBUSTNESS),
    ("... because of the targeting (our control)", CLAIMS[4], ("accuracy",) + ROBUSTNESS[1:]),
)


def _decided(per_setting: pd.DataFrame, comparison: str, metric: str) -> str:
    """The settings whose verdict on a comparison is not inconclusive, with their difference; '-' if none."""
    part = per_setting[(per_setting["comparison"] == comparison) & (per_setting["metric"] == metric)
                       & ~per_setting["verdict"].str.startswith(("inconclusive", "not "))]
    return "; ".join(f"{r['verdict']} at {r['dataset']} ({r['mean']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}])"
                     for _, r in part.iterrows()) or "-"


def claims_table(pooled: pd.DataFrame, per_setting: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each claim of `STATEMENTS` beside our paired difference (points, 95 % interval), verdict and minimum
    detectable effect, from the pooled verdict table of `latentlab.stats.compare`; with the per-setting table, the
    settings that decide the claim on that metric."""
    rows = []
    for statement, claim, metrics in STATEMENTS:
        for metric in metrics:
            hit = pooled[(pooled["comparison"] == claim.name) & (pooled["metric"] == metric)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            rows.append({"paper's claim": statement, "comparison": claim.name, "metric": metric,
                         "difference": f"{r['mean']:+.1f} [{r['low']:+.1f}, {r['high']:+.1f}]",
                         "verdict": r["verdict"], "mde": round(float(r["mde"]), 1)})
            if per_setting is not None:
                rows[-1]["decided per setting"] = _decided(per_setting, claim.name, metric)
    return pd.DataFrame(rows)
