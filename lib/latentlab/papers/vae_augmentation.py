"""Jorge et al. (VISAPP 2018), the paper notebook 04 checks: its Table 2, the effect sizes it implies, its claims.

Table 2 reports UJIPEN test accuracy (%) per classifier and generation method (latent space). The notebook tests
three claims against it: interpolation helps most, kNN gains most, noise can hurt the neural network; the effects
below are the paper's differences in accuracy points, the unit of `latentlab.stats.compare`.

Every claim names the instruments it rests on (`instruments_for`): a claim about a latent arm rests on the seed's VAE
("vae") and on that arm's decoded augmentations ("vae-augmentations:<operation>"); a claim about the CNN also rests
on its convergence ("classifier"); kNN and SVM on pixel-space or affine arms rest on none. Because a Claim's
instruments hold for every group it is compared in, `compare_per_classifier` runs one comparison per classifier and
joins them into one family.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from latentlab import stats
from latentlab.experiments.vae_augmentation import CLASSIFIER, LATENT_ARMS, VAE, augmentation_instrument
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


def instruments_for(arms: Sequence[str], classifier: str | None = None) -> tuple[str, ...]:
    """The instruments a claim on these arms rests on: "vae" and `augmentation_instrument` of each latent arm, and
    "classifier" when the classifier is the CNN (kNN and SVM keep no model from several validation checks)."""
    latent = [a for a in arms if a in LATENT_ARMS]
    names = ([VAE] if latent else []) + [augmentation_instrument(a) for a in latent]
    return tuple(dict.fromkeys(names + ([CLASSIFIER] if classifier == "cnn" else [])))


def paper_claims(settings: list[str], pairs: list[tuple[str, str]], classifier: str | None = None) -> list[Claim]:
    """One Claim per pair of arms for `latentlab.stats.compare(..., by=['dataset', 'classifier'])`: the paper's
    effect per (setting, classifier) group when both arms are in Table 2 (else none, the claimed side a > b), for
    one classifier (its instruments, `instruments_for`) or, with classifier None, every Table-2 classifier."""
    classifiers = PAPER_CLASSIFIERS if classifier is None else (classifier,)

    def effects(a: str, b: str):
        in_table = all(arm in PAPER_TABLE2["svm"] for arm in (a, b)) and set(classifiers) <= set(PAPER_TABLE2)
        return {(s, c): paper_effect(a, b, c) for s in settings for c in classifiers} if in_table else None

    return [Claim(a, b, effects(a, b), instruments=instruments_for((a, b), classifier)) for a, b in pairs]


def compare_per_classifier(results: pd.DataFrame, settings: list[str], pairs: list[tuple[str, str]],
                           classifiers: Sequence[str], *, metric: str = "accuracy",
                           instruments: pd.DataFrame | None = None) -> pd.DataFrame:
    """`stats.compare` by (dataset, classifier), one call per classifier so that each classifier's claims rest on
    its own instruments, joined into one family (`stats.one_family`)."""
    tables = [stats.compare(results[results["classifier"] == c], paper_claims(settings, pairs, c), metric=metric,
                            by=["dataset", "classifier"], instruments=instruments) for c in classifiers]
    return stats.one_family(*tables)


def gains(results: pd.DataFrame, arm: str, baseline: str = "baseline", metric: str = "accuracy") -> pd.DataFrame:
    """Per setting, seed and classifier, `arm` minus `baseline`, as a tidy table whose arm is the classifier: so
    `latentlab.stats.compare` can ask whether one classifier gains more than another (paired by seed)."""
    wide = results[results["metric"] == metric].pivot_table(index=["dataset", "classifier", "seed"], columns="arm",
                                                             values="value")
    out = (wide[arm] - wide[baseline]).rename("value").reset_index().rename(columns={"classifier": "arm"})
    return out.assign(metric=f"{arm} gain")


def knn_gains_most_claims(arm: str = "latent-interpolation") -> list[Claim]:
    """Claim 2, kNN gains most: kNN's gain from `arm` minus the SVM's and the CNN's, with the paper's differences
    (claims on the classifier 'arms' of `gains`), resting on the instruments of `arm` and of both classifiers."""
    knn = paper_effect(arm, "baseline", "knn")
    return [Claim("knn", other, knn - paper_effect(arm, "baseline", other), instruments=instruments_for([arm], other))
            for other in ("svm", "cnn")]


def ledger_rows(family: pd.DataFrame) -> pd.DataFrame:
    """A verdict family with the classifier written into the claim ('latent-noise − baseline (knn)') where the rows
    have one, so that `latentlab.ledger.claims` tells the classifiers' rows apart."""
    if "classifier" not in family:
        return family
    named = family["classifier"].notna()
    return family.assign(comparison=family["comparison"].where(~named, family["comparison"] + " ("
                                                               + family["classifier"].astype(str) + ")"))


def beside_paper(results: pd.DataFrame, arms: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """Table 2's layout (classifier rows, arm columns; mean ± sd over seeds in %) per setting, under the paper's
    UJIPEN row block."""
    ours = summary_table(results[results["classifier"].isin(PAPER_CLASSIFIERS)], metrics=[metric], arms=arms,
                         by=["dataset", "classifier"]).droplevel("metric")
    paper = pd.DataFrame(PAPER_TABLE2).T.reindex(columns=arms).map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    paper.index = pd.MultiIndex.from_product([["UJIPEN (paper)"], paper.index], names=ours.index.names)
    return pd.concat([paper, ours])
