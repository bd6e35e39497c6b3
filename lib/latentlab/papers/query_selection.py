"""Killeen, "Query Selection based on Latent Space Sampling" (code: `latens`): Table 1, its effect sizes, and the
claims notebook 03 tests.

Table 1 is one run per cell: test accuracy (%) of a classifier trained on the query set, for three encoders (Conv,
VAE, t-SNE style, L = 2) x four samplers (Uniform, Normal, Clustered Uniform, Clustered Normal) and two baselines
(Random, AE-error), on MNIST and on the paper's unbalanced MNIST, at n = 1000 and n = 100. Arm names are those of
`latentlab.experiments.query_selection` ('random', 'ae-error', '<encoder>/<sampler>').
"""

from __future__ import annotations

import pandas as pd

from latentlab.experiments.query_selection import UNBALANCED, instruments_of
from latentlab.stats import Claim

ENCODERS = {"conv": "Conv", "vae": "VAE", "tsne": "t-SNE Style"}  # the paper's names of the three encoders
SAMPLERS = {"random": "Random", "ae-error": "AE-error", "uniform": "Uniform", "normal": "Normal",
            "clustered-uniform": "Clustered Uniform", "clustered-normal": "Clustered Normal"}
TABLE1_COLUMNS = [("mnist", 1000), ("mnist", 100), (UNBALANCED, 1000), (UNBALANCED, 100)]  # (dataset, n)
# Table 1 of the paper: test accuracy (%) of a classifier trained on the query set; one run per cell.
TABLE1 = {
    "random": (94.0, 80.9, 92.6, 76.6), "ae-error": (93.8, 76.6, 57.8, 46.4),
    "conv/uniform": (72.7, 38.1, 62.9, 44.6), "conv/normal": (93.1, 70.3, 90.5, 66.3),
    "conv/clustered-uniform": (89.6, 71.6, 89.2, 71.5), "conv/clustered-normal": (94.4, 80.9, 92.8, 79.6),
    "vae/uniform": (68.2, 38.8, 62.4, 35.3), "vae/normal": (92.1, 69.9, 91.7, 66.5),
    "vae/clustered-uniform": (86.1, 67.3, 86.8, 62.1), "vae/clustered-normal": (94.3, 82.9, 92.3, 85.0),
    "tsne/uniform": (69.3, 56.6, 85.7, 53.0), "tsne/normal": (93.6, 82.3, 91.7, 77.0),
    "tsne/clustered-uniform": (87.3, 71.6, 91.6, 76.6), "tsne/clustered-normal": (94.4, 78.9, 92.4, 75.9),
}


def effects(arm: str, baseline: str = "random") -> dict:
    """The paper's Table 1 gap arm - baseline in points, {(dataset, n): gap}, for `latentlab.stats.Claim`."""
    a, b = TABLE1[arm], TABLE1[baseline]
    return {col: round(x - y, 1) for col, x, y in zip(TABLE1_COLUMNS, a, b)}


# The claims notebook 03 tests on accuracy, grouped by (dataset, n_labelled). First every row of Table 1 against
# Random (13 claims), each with its Table 1 gap in every cell as the effect size and the side of that gap as the
# claimed direction (a cell whose gap is 0.0 claims "at or above"): so a row the paper reports below Random is tested
# as "below Random by the paper's gap", one above it as "above". Then ours beyond the paper (no paper number): the
# modern cold-start selectors against Random on the Conv plane, the VAE plane and the 16-D Conv code; the code size
# at a fixed encoder family (conv16 - conv, same objective, L = 16 against 2) and the encoder family at a fixed size
# (vae - conv, L = 2). Each claim rests on the encoders its arms sample from and on the classifier
# (`qs.instruments_of`). The class-stratified draw reads the labels: `REFERENCE` compares it with Random as a
# reference row, outside the family of method claims.
def _claim(a: str, b: str = "random", paper: dict | None = None) -> Claim:
    return Claim(a, b, paper, instruments=instruments_of(a, b))


TABLE1_CLAIMS = [_claim(a, paper=effects(a)) for a in TABLE1 if a != "random"]
MODERN_CLAIMS = [_claim(a) for a in ("conv/typiclust", "vae/typiclust", "conv16/typiclust", "conv/kcenter",
                                     "conv16/kcenter")] + [
    _claim("conv16/typiclust", "conv/typiclust"), _claim("conv16/kcenter", "conv/kcenter"),
    _claim("vae/typiclust", "conv/typiclust")]
CLAIMS = TABLE1_CLAIMS + MODERN_CLAIMS
REFERENCE = [_claim("stratified")]  # needs the labels: a reference row, not a method claim
# The headline claims of the scale check (`qs.HEADLINE_ARMS`): the paper's best sampler on both encoders.
HEADLINE = [c for c in TABLE1_CLAIMS if c.a in ("vae/clustered-normal", "conv/clustered-normal")] + REFERENCE


def row_name(arm: str) -> tuple[str, str]:
    """(AE type, sampling strategy) of a Table 1 arm, as the paper names its rows."""
    encoder, _, method = arm.partition("/")
    return (ENCODERS[encoder], SAMPLERS[method]) if method else ("—", SAMPLERS[arm])


def table1(results: pd.DataFrame, metric: str = "accuracy", digits: int = 1) -> pd.DataFrame:
    """Table 1's layout (AE type and sampling strategy x dataset and n): ours 'mean ± sd' with the paper's number."""
    part = results[(results["metric"] == metric) & results["arm"].isin(TABLE1)]
    stats = part.groupby(["arm", "dataset", "n_labelled"])["value"].agg(["mean", "std"]) * 100
    rows = {}
    for arm, paper in TABLE1.items():
        cells = {}
        for (dataset, n), p in zip(TABLE1_COLUMNS, paper):
            if (arm, dataset, n) in stats.index:
                m, s = stats.loc[(arm, dataset, n)]
                cells[("balanced" if dataset == "mnist" else "unbalanced", n)] = \
                    f"{m:.{digits}f} ± {s:.{digits}f} ({p})"
        rows[row_name(arm)] = cells
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["AE type", "sampling strategy"]
    return table.dropna(how="all")
