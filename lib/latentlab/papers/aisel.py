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


# The instruments every claim rests on (gates of `latentlab.experiments.aisel`): each claim compares arms trained on
# images the GIN decodes and the oracle labels (G(u) in every synthetic arm; G(f) of points placed by E(x) in aisel+m),
# with classifiers whose budget must be enough. A failed gate of one of them on a dataset makes the claim
# "not tested" there.
INSTRUMENTS = ("gin", "gin-samples", "classifier")

# The claims on test accuracy, with the paper's effect where it gives one. aisel+m - random+M is -3.0: "AISEL close
# to ten times more random images"; an interval above -3.0 excludes the paper's gap (AISEL even closer).
CLAIMS = [Claim("aisel+m", "random+m", effect("aisel+m", "random+m"), instruments=INSTRUMENTS),
          Claim("random+m", "native", effect("random+m", "native"), instruments=INSTRUMENTS),
          Claim("aisel+m", "native", effect("aisel+m", "native"), instruments=INSTRUMENTS),
          Claim("aisel+m", "random+M", effect("aisel+m", "random+M"), instruments=INSTRUMENTS),
          Claim("aisel+m", "maxent+m", instruments=INSTRUMENTS),  # the ablation (not in the paper): the diversity term
          Claim("random+M", "random+m", instruments=INSTRUMENTS)]  # the paper's premise: more synthetic images help
# The paper gives no AUC: the same comparisons on test AUC are tested against zero only ("a beats b").
AUC_CLAIMS = [Claim(c.a, c.b, instruments=c.instruments) for c in CLAIMS]


def verdicts(results: pd.DataFrame, instruments: pd.DataFrame | None) -> pd.DataFrame:
    """Notebook 01's one family of claims: CLAIMS on test accuracy and AUC_CLAIMS on test AUC (`stats.compare` each,
    joined by `stats.one_family`, so the family-wise intervals count both); claims whose instruments failed a gate on
    a dataset read "not tested" there."""
    return stats.one_family(stats.compare(results, CLAIMS, metric="accuracy", instruments=instruments),
                            stats.compare(results, AUC_CLAIMS, metric="auc", instruments=instruments))
