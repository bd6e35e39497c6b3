"""AISEL's own numbers (Chen et al., Active Image Synthesis for Efficient Labeling, TPAMI 2021): the aortic-stenosis
table, the effect sizes it implies, and the claims notebook 01 tests against them.

The table: n = 126 real CT scans, binary, average over 4 folds, in %. "Query less for more": m = 1134 AISEL images
(picked by uncertainty and energy distance) help about as much as M = 10000 random ones.
"""

from __future__ import annotations

import pandas as pd

from latentlab import stats
from latentlab.stats import Claim

N_LABELLED, M_SMALL, M_LARGE, FOLDS = 126, 1134, 10000, 4

TABLE = {  # arm: {metric: %}
    "native": {"accuracy": 59.48, "sensitivity": 51.11, "specificity": 68.23, "f1": 54.81},
    "random+m": {"accuracy": 67.27, "sensitivity": 58.93, "specificity": 74.45, "f1": 61.78},
    "aisel+m": {"accuracy": 75.60, "sensitivity": 75.39, "specificity": 75.64, "f1": 73.14},
    "random+M": {"accuracy": 78.57, "sensitivity": 75.51, "specificity": 81.29, "f1": 75.62},
}


def table() -> pd.DataFrame:
    """The paper's table as printed: metrics (rows) by arm (columns), in %."""
    return pd.DataFrame(TABLE).rename_axis(columns="arm")


def effect(a: str, b: str, metric: str = "accuracy") -> float:
    """The paper's difference a - b in points of `metric`, to the table's one decimal (e.g. aisel+m - random+m =
    +8.3)."""
    return round(TABLE[a][metric] - TABLE[b][metric], 1)


# The instruments every claim rests on (gates of `latentlab.experiments.aisel`): each claim that compares an arm
# trained on images the GIN decodes and the oracle labels (G(u) in every synthetic arm; G(f) of points placed by the
# refined E(x) in aisel+m) rests on both GIN gates and on the classifier's budget; a claim between real-image arms
# rests on the classifier alone. A failed gate of one of them on a dataset makes the claim "not tested" there.
INSTRUMENTS = ("gin", "gin-samples", "classifier")
REAL_ONLY = ("classifier",)
MARGIN = 3.0  # points: "AISEL close to random+M" is tested as equivalence within +-MARGIN (two one-sided tests)


def claims(at_paper_ratio: dict[str, str] | None = None) -> list[Claim]:
    """The claims on test accuracy. The paper's effects belong to its setting, m / n = 1134 / 126 = 9: they are the
    yardstick only on the datasets where our m or M is 9 n (`aisel.at_paper_ratio`: {dataset: "m" | "M"}), for the
    comparisons at that size; every other comparison tests the direction only."""
    ratio = at_paper_ratio or {}
    at = lambda size, a, b: {d: effect(a, b) for d, k in ratio.items() if k == size} or None  # noqa: E731
    return [Claim("aisel+m", "random+m", at("m", "aisel+m", "random+m"), instruments=INSTRUMENTS),
            Claim("random+m", "native", at("m", "random+m", "native"), instruments=INSTRUMENTS),
            Claim("aisel+m", "native", at("m", "aisel+m", "native"), instruments=INSTRUMENTS),
            # "AISEL close to random+M": equivalence within MARGIN (the paper's table: -3.0, reported beside it)
            Claim("aisel+m", "random+M", effect("aisel+m", "random+M"), instruments=INSTRUMENTS, margin=MARGIN),
            Claim("aisel+m", "maxent+m", instruments=INSTRUMENTS),  # the ablation (not in the paper): diversity
            Claim("random+M", "random+m", instruments=INSTRUMENTS),  # the premise: more synthetic images help
            # "query less for more" against the same annotation budget spent on real images, the same oracle
            Claim("aisel+m", "real+m", instruments=INSTRUMENTS),
            Claim("aisel+m", "uncertain-real+m", instruments=INSTRUMENTS),
            Claim("real+m", "native", instruments=REAL_ONLY),  # the control: does the annotation budget help at all?
            # AISEL with M points: the paper's setting where M = 9 n
            Claim("aisel+M", "random+M", at("M", "aisel+m", "random+m"), instruments=INSTRUMENTS),
            Claim("random+M", "native", at("M", "random+m", "native"), instruments=INSTRUMENTS)]


CLAIMS = claims()
# The headline claims the scale check re-runs with 4 x the GIN's budget (`stats.scale_check`).
HEADLINE = [c for c in CLAIMS if c.a in ("aisel+m", "aisel+M") and c.b in ("random+m", "random+M")]


def auc_claims(claims_: list[Claim]) -> list[Claim]:
    """The paper gives no AUC: the same comparisons on test AUC are tested against zero only ("a beats b"); the
    equivalence claim keeps its margin."""
    return [Claim(c.a, c.b, instruments=c.instruments, margin=c.margin) for c in claims_]


AUC_CLAIMS = auc_claims(CLAIMS)


def verdicts(results: pd.DataFrame, instruments: pd.DataFrame | None,
             at_paper_ratio: dict[str, str] | None = None) -> pd.DataFrame:
    """Notebook 01's one family of claims: `claims(at_paper_ratio)` on test accuracy and their `auc_claims` on test
    AUC (`stats.compare` each, joined by `stats.one_family`, so the family-wise intervals count both); claims whose
    instruments failed a gate on a dataset read "not tested" there."""
    acc = claims(at_paper_ratio)
    return stats.one_family(stats.compare(results, acc, metric="accuracy", instruments=instruments),
                            stats.compare(results, auc_claims(acc), metric="auc", instruments=instruments))
