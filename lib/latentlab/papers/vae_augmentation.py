"""Jorge et al. (VISAPP 2018), the paper notebook 04 checks: its Table 2, the effect sizes it implies, its claims.

Table 2 reports UJIPEN test accuracy (%) per classifier and generation method (latent space). The notebook tests
three claims against it: interpolation helps most, kNN gains most, noise can hurt the neural network; the effects
below are the paper's differences in accuracy points, the unit of `latentlab.stats.compare`.
"""

from __future__ import annotations

import pandas as pd

from latentlab.stats import Claim, summary_table

# The paper's Table 2: UJIPEN test accuracy (%), classifier x generation method (latent space).
PAPER_TABLE2 = {
    "svm": {"baseline": 54.79, "latent-noise": 59.09, "latent-interpolation": 63.48, "latent-extrapolation": 63.19},
    "knn": {"baseline": 31.86, "latent-noise": 39.29, "latent-interpolation": 53.15, "latent-extrapolation": 46.74},
    "cnn": {"baseline": 63.99, "latent-noise": 57.20, "latent-interpolation": 65.60, "latent-extrapolation": 64.09},
}
PAPER_CLASSIFIERS = tuple(PAPER_TABLE2)  # "cnn" stands for the paper's neural network


def paper_effect(a: str, b: str, classifier: str) -> float:
    """The paper's difference a - b in accuracy points (Table 2), for arms of the table."""
    return round(PAPER_TABLE2[classifier][a] - PAPER_TABLE2[classifier][b], 2)


def paper_claims(settings: list[str], pairs: list[tuple[str, str]]) -> list[Claim]:
    """One Claim per pair of Table-2 arms, the paper's effect given per (setting, classifier) group, for
    `latentlab.stats.compare(..., by=['dataset', 'classifier'])`."""
    return [Claim(a, b, {(s, c): paper_effect(a, b, c) for s in settings for c in PAPER_TABLE2}) for a, b in pairs]


def gains(results: pd.DataFrame, arm: str, baseline: str = "baseline", metric: str = "accuracy") -> pd.DataFrame:
    """Per setting, seed and classifier, `arm` minus `baseline`, as a tidy table whose arm is the classifier: so
    `latentlab.stats.compare` can ask whether one classifier gains more than another (paired by seed)."""
    wide = results[results["metric"] == metric].pivot_table(index=["dataset", "classifier", "seed"], columns="arm",
                                                             values="value")
    out = (wide[arm] - wide[baseline]).rename("value").reset_index().rename(columns={"classifier": "arm"})
    return out.assign(metric=f"{arm} gain")


def knn_gains_most_claims(arm: str = "latent-interpolation") -> list[tuple[str, str, float]]:
    """Claim 2, kNN gains most: kNN's gain from `arm` minus the SVM's and the CNN's, with the paper's differences
    (claims on the classifier 'arms' of `gains`)."""
    knn = paper_effect(arm, "baseline", "knn")
    return [("knn", other, knn - paper_effect(arm, "baseline", other)) for other in ("svm", "cnn")]


def beside_paper(results: pd.DataFrame, arms: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """Table 2's layout (classifier rows, arm columns; mean ± sd over seeds in %) per setting, under the paper's
    UJIPEN row block."""
    ours = summary_table(results[results["classifier"].isin(PAPER_CLASSIFIERS)], metrics=[metric], arms=arms,
                         by=["dataset", "classifier"]).droplevel("metric")
    paper = pd.DataFrame(PAPER_TABLE2).T.reindex(columns=arms).map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    paper.index = pd.MultiIndex.from_product([["UJIPEN (paper)"], paper.index], names=ours.index.names)
    return pd.concat([paper, ours])
