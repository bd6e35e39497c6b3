"""TSynD (Niemeijer et al. 2024): the paper's claims, as the paired comparisons notebook 02 tests.

J. Niemeijer, J. Ehrhardt, H. Uzunova, H. Handels, *TSynD: Targeted Synthetic Data Generation for Enhanced Medical
Image Classification*, arXiv:2406.17473, 2024. Our copy is an extract without its tables: the paper gives no effect
size, so every claim is tested against zero (`Claim.paper` is None) and each verdict says which effects the seeds
can and cannot detect (the minimum detectable effect).

The paper claims, on MedMNIST v2 and a chest X-ray set: (1) TSynD > random latent augmentation > no synthetic data,
most clearly with little data; (2) mutual information beats entropy as the target; (3) more robustness to test-time
perturbations and adversarial attacks. `recon-only` (plain autoencoder reconstructions) is our control, not the
paper's: it separates the targeting from "more autoencoder images".

Every claim rests on the seed's autoencoder (its images are the synthetic arms') and on the classifiers (converged
at the budget, kept after the first synthetic batch): a failed "autoencoder" or "classifier" gate on a setting makes
its claims `not tested` (`latentlab.experiments.tsynd` makes the gate rows). `verdicts` tests the claims per setting
(accuracy, AUC) and pooled over the settings of `POOLED` (every metric) as ONE family (Bonferroni over all rows):
those settings share each seed's autoencoder, so the pooled estimate takes the seed as its unit (`stats.pooled`).
"""

from __future__ import annotations

import pandas as pd

from latentlab import stats
from latentlab.stats import Claim

REFERENCE = "Niemeijer et al., TSynD: Targeted Synthetic Data Generation for Enhanced Medical Image Classification, " \
            "arXiv:2406.17473, 2024"

INSTRUMENTS = ("autoencoder", "classifier")  # the gates every claim rests on
POOLED = "pneumoniamnist"  # the dataset whose settings (label shares) are pooled: they share each seed's autoencoder
CLAIMS = (
    Claim("tsynd-mi", "random-latent", instruments=INSTRUMENTS),  # (1) targeted beats random moves of the same norm
    Claim("random-latent", "baseline", instruments=INSTRUMENTS),  # (1) random latent augmentation beats none
    Claim("tsynd-mi", "tsynd-entropy", instruments=INSTRUMENTS),  # (2) MI beats entropy as the target
    Claim("tsynd-mi", "baseline", instruments=INSTRUMENTS),  # (1) and (3): TSynD beats no synthetic data
    Claim("tsynd-mi", "recon-only", instruments=INSTRUMENTS),  # our control: the targeting, beyond the AE images
    Claim("recon-only", "baseline", instruments=INSTRUMENTS),  # our control: the autoencoder images alone
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


def pooled_label(dataset: str = POOLED) -> str:
    """The `dataset` value of the pooled rows."""
    return f"{dataset} (pooled)"


def verdicts(results: pd.DataFrame, instruments: pd.DataFrame | None, pooled: str = POOLED) -> pd.DataFrame:
    """The notebook's one family of verdicts: every claim per setting on CLEAN, and pooled over the settings of the
    dataset `pooled` ("name@share%") on METRICS (the seed the unit), with family-wise intervals over all rows.
    instruments: the gates' table (claims on a setting with a failed gate read `not tested`)."""
    settings = [e for e in dict.fromkeys(results["dataset"]) if str(e).partition("@")[0] == pooled]
    if not settings:
        raise ValueError(f"No setting of {pooled!r} in the results (datasets: {sorted(set(results['dataset']))}).")
    per_setting = stats.compare(results, CLAIMS, metric=list(CLEAN), instruments=instruments)
    across = stats.pooled(results[results["dataset"].isin(settings)], CLAIMS, metric=list(METRICS),
                          label=pooled_label(pooled), instruments=instruments)
    return stats.one_family(per_setting, across)


def _interval(r: pd.Series, low: str, high: str) -> str:
    return f"[{r[low]:+.1f}, {r[high]:+.1f}]"


def _decided(per_setting: pd.DataFrame, comparison: str, metric: str) -> str:
    """The settings whose verdict on a comparison is neither inconclusive nor held (not decided / tested), with
    their difference and family-wise interval; '-' if none."""
    part = per_setting[(per_setting["comparison"] == comparison) & (per_setting["metric"] == metric)
                       & ~per_setting["verdict"].str.startswith(("inconclusive", "not "))]
    return "; ".join(f"{r['verdict']} at {r['dataset']} ({r['mean']:+.1f} {_interval(r, 'low_fw', 'high_fw')})"
                     for _, r in part.iterrows()) or "-"


def claims_table(table: pd.DataFrame, pooled: str = POOLED) -> pd.DataFrame:
    """Each claim of `STATEMENTS` beside our pooled paired difference (points; 95 % and family-wise interval),
    verdict and minimum detectable effect, from `verdicts`'s table, and the settings that decide the claim on that
    metric."""
    at = table["dataset"] == pooled_label(pooled)
    rows = []
    for statement, claim, metrics in STATEMENTS:
        for metric in metrics:
            hit = table[at & (table["comparison"] == claim.name) & (table["metric"] == metric)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            rows.append({"paper's claim": statement, "comparison": claim.name, "metric": metric,
                         "difference": f"{r['mean']:+.1f} {_interval(r, 'low', 'high')}",
                         "family-wise": _interval(r, "low_fw", "high_fw"), "verdict": r["verdict"],
                         "mde": round(float(r["mde"]), 1),
                         "decided per setting": _decided(table[~at], claim.name, metric)})
    return pd.DataFrame(rows)
