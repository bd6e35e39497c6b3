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
at the budget, learning, kept after the first synthetic batch): a failed "autoencoder" or "classifier" gate on a
setting makes its claims `not tested` (`latentlab.experiments.tsynd` makes the gate rows). `verdicts` tests the
claims per setting on AUC and balanced accuracy, and pooled across every setting by random effects
(`stats.random_effects`) on AUC, balanced accuracy and accuracy, and for the robustness claims on the robustness
metrics, as ONE family (Bonferroni over all rows). `baseline+updates` (the baseline trained for as many updates as
a synthetic arm) is our second control: it separates the synthetic images from the extra optimisation they bring.
"""

from __future__ import annotations

import pandas as pd

from latentlab import stats
from latentlab.stats import Claim

REFERENCE = "Niemeijer et al., TSynD: Targeted Synthetic Data Generation for Enhanced Medical Image Classification, " \
            "arXiv:2406.17473, 2024"

INSTRUMENTS = ("autoencoder", "classifier")  # the gates every claim rests on
POOLED = "all settings (random effects)"  # the `dataset` of the pooled rows
CLAIMS = (
    Claim("tsynd-mi", "random-latent", instruments=INSTRUMENTS),  # (1) targeted beats random moves of the same norm
    Claim("random-latent", "baseline", instruments=INSTRUMENTS),  # (1) random latent augmentation beats none
    Claim("tsynd-mi", "tsynd-entropy", instruments=INSTRUMENTS),  # (2) MI beats entropy as the target
    Claim("tsynd-mi", "baseline", instruments=INSTRUMENTS),  # (1) and (3): TSynD beats no synthetic data
    Claim("tsynd-mi", "recon-only", instruments=INSTRUMENTS),  # our control: the targeting, beyond the AE images
    Claim("recon-only", "baseline", instruments=INSTRUMENTS),  # our control: the autoencoder images alone
    Claim("tsynd-mi", "baseline+updates", instruments=INSTRUMENTS),  # our control: beyond the extra updates
)
ROBUST_CLAIMS = (CLAIMS[3], CLAIMS[4], CLAIMS[6])  # claim (3), against no synthetic data and the two controls
HEADLINE = (CLAIMS[0], CLAIMS[3])  # the scale check's claims
PER_SETTING = ("auc", "balanced_accuracy")  # claimed per setting, first: accuracy alone hides threshold shifts
CLEAN = PER_SETTING + ("accuracy",)  # claimed pooled
ROBUSTNESS = ("accuracy_tta", "accuracy_fgsm", "accuracy_pgd")  # on correctly classified images (claim 3)
METRICS = CLEAN + ROBUSTNESS

# The paper's claims (and our controls) beside the comparison and the metrics that test each.
STATEMENTS = (
    ("TSynD-MI > random latent augmentation", CLAIMS[0], CLEAN),
    ("random latent > baseline", CLAIMS[1], CLEAN),
    ("MI > entropy as the target", CLAIMS[2], CLEAN),
    ("TSynD-MI > baseline", CLAIMS[3], CLEAN),
    ("more robust (test-time perturbations, attacks)", CLAIMS[3], ROBUSTNESS),
    ("... because of the targeting (our control)", CLAIMS[4], CLEAN + ROBUSTNESS),
    ("... not because of more updates (our control)", CLAIMS[6], CLEAN + ROBUSTNESS),
)


def per_setting(results: pd.DataFrame, instruments: pd.DataFrame | None) -> pd.DataFrame:
    """Every claim per setting on every metric (robustness metrics for ROBUST_CLAIMS only): the input of the
    random-effects pooling; `verdicts` keeps the PER_SETTING metrics of it in the family."""
    clean = stats.compare(results, CLAIMS, metric=list(CLEAN), instruments=instruments)
    robust = stats.compare(results, ROBUST_CLAIMS, metric=list(ROBUSTNESS), instruments=instruments)
    return pd.concat([clean, robust], ignore_index=True)


def verdicts(results: pd.DataFrame, instruments: pd.DataFrame | None) -> pd.DataFrame:
    """The notebook's one family of verdicts: every claim per setting on PER_SETTING, and pooled across the
    settings by random effects on CLEAN (ROBUSTNESS too for ROBUST_CLAIMS; with a single setting there is nothing to
    pool and its rows on every one of those metrics take the pooled rows' place), with family-wise intervals over all
    rows. instruments: the gates' table (claims on a setting with a failed gate read `not tested`)."""
    rows = per_setting(results, instruments)
    if rows["dataset"].nunique() < 2:  # one setting (the classroom profile's): its rows are what pooling would give
        return stats.one_family(rows)
    pooled = stats.random_effects(rows, label=POOLED)
    return stats.one_family(rows[rows["metric"].isin(PER_SETTING)], pooled)


def sensitivity(results: pd.DataFrame, instruments: pd.DataFrame | None) -> pd.DataFrame:
    """Leave one setting out of each pooled claim (`stats.leave_one_out`): does the pooled interval's side of 0
    hold without any one setting?"""
    return stats.leave_one_out(per_setting(results, instruments), label=POOLED)


def _interval(r: pd.Series, low: str, high: str) -> str:
    return f"[{r[low]:+.1f}, {r[high]:+.1f}]"


def _decided(settings: pd.DataFrame, comparison: str, metric: str) -> str:
    """The settings whose verdict on a comparison is neither inconclusive nor held (not decided / tested), with
    their difference and family-wise interval; '-' if none."""
    part = settings[(settings["comparison"] == comparison) & (settings["metric"] == metric)
                    & ~settings["verdict"].str.startswith(("inconclusive", "not "))]
    return "; ".join(f"{r['verdict']} at {r['dataset']} ({r['mean']:+.1f} {_interval(r, 'low_fw', 'high_fw')})"
                     for _, r in part.iterrows()) or "-"


def claims_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each claim of `STATEMENTS` beside our pooled (random-effects) difference (points; 95 % and family-wise
    interval), verdict and the between-setting spread tau, from `verdicts`'s table, and the settings that decide the
    claim on that metric."""
    at = table["dataset"] == POOLED
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
                         "tau": round(float(r["tau2"]) ** 0.5, 1), "settings": int(r["k"]),
                         "decided per setting": _decided(table[~at], claim.name, metric)})
    return pd.DataFrame(rows)
