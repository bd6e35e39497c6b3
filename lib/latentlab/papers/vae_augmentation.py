"""Jorge et al. (VISAPP 2018), the paper notebook 04 checks: its Table 2, the effect sizes it implies, its claims.

Table 2 reports UJIPEN test accuracy (%) per classifier and generation method (latent space). The notebook tests
three claims against it: interpolation helps most, kNN gains most, noise can hurt the neural network; the effects
below are the paper's differences in accuracy points, the unit of `latentlab.stats.compare`.

Every claim names the instruments it rests on (`instruments_for`): a claim about a latent arm rests on the seed's VAE
("vae") and on that arm's decoded augmentations ("vae-augmentations:<operation>", also for the reconstruction
control), the codes control on the VAE alone; a claim about the CNN also rests on its convergence ("classifier");
kNN and SVM on pixel-space or affine arms rest on none.

`headroom` puts every gain over the baseline beside the room it had: the ceiling (the oracle, trained on every label
of the training split, on the same test images) minus the baseline, so that a small gain on a baseline near its
ceiling is not read as a small effect of the method. Because a Claim's
instruments hold for every group it is compared in, `compare_per_classifier` runs one comparison per classifier and
joins them into one family.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from latentlab import stats
from latentlab.experiments.vae_augmentation import (
    CLASSIFIER,
    CODES,
    DECODED_ARMS,
    RECONSTRUCTION,
    VAE,
    VAE_ARMS,
    augmentation_instrument,
    parse_setting,
)
from latentlab.stats import Claim, summary_table

# The paper's Table 2: UJIPEN test accuracy (%), classifier x generation method (latent space).
PAPER_TABLE2 = {
    "svm": {"baseline": 54.79, "latent-noise": 59.09, "latent-interpolation": 63.48, "latent-extrapolation": 63.19},
    "knn": {"baseline": 31.86, "latent-noise": 39.29, "latent-interpolation": 53.15, "latent-extrapolation": 46.74},
    "cnn": {"baseline": 63.99, "latent-noise": 57.20, "latent-interpolation": 65.60, "latent-extrapolation": 64.09},
}
PAPER_CLASSIFIERS = tuple(PAPER_TABLE2)  # "cnn" stands for the paper's neural network
# The scale check's claims: the method against the baseline, against decoding alone and the codes alone.
HEADLINE = (("latent-interpolation", "baseline"), ("latent-interpolation", RECONSTRUCTION), (CODES, "baseline"))


def paper_effect(a: str, b: str, classifier: str) -> float:
    """The paper's difference a - b in accuracy points (Table 2), for arms of the table."""
    return round(PAPER_TABLE2[classifier][a] - PAPER_TABLE2[classifier][b], 2)


def instruments_for(arms: Sequence[str], classifier: str | None = None) -> tuple[str, ...]:
    """The instruments a claim on these arms rests on: "vae" for every arm that uses the VAE, `augmentation_instrument`
    of each arm whose images it decodes, and "classifier" when the classifier is the CNN (kNN and SVM keep no model
    from several validation checks)."""
    names = ([VAE] if any(a in VAE_ARMS for a in arms) else []) + [augmentation_instrument(a) for a in arms
                                                                   if a in DECODED_ARMS]
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
    its own instruments, joined into one family (`stats.one_family`). A classifier that trained neither arm of
    every pair (the CNN on the codes arm, or on arms outside CNN_ARMS) is left out."""
    def trained(c: str) -> bool:
        arms = set(results.loc[(results["classifier"] == c) & (results["metric"] == metric), "arm"])
        return any({a, b} <= arms for a, b in pairs)

    tables = [stats.compare(results[results["classifier"] == c], paper_claims(settings, pairs, c), metric=metric,
                            by=["dataset", "classifier"], instruments=instruments) for c in classifiers if trained(c)]
    return stats.one_family(*tables)


def scale_check(base: pd.DataFrame, scaled: pd.DataFrame, claims, classifiers: Sequence[str],
                metric: str = "accuracy") -> pd.DataFrame:
    """`stats.scale_check` per classifier (a classifier column beside the dataset): did the headline differences
    move beyond the seed spread with SCALE x the VAE's updates? Empty when the profile ran no scale check."""
    tables = [stats.scale_check(base[base["classifier"] == c], scaled[scaled["classifier"] == c], claims,
                                metric=metric).assign(classifier=c)
              for c in classifiers if not scaled.empty and (scaled["classifier"] == c).any()]
    return pd.concat(tables, ignore_index=True) if tables else stats.scale_check(base, scaled, claims, metric=metric)


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


def headroom(family: pd.DataFrame, results: pd.DataFrame, baseline: str = "baseline",
             metric: str = "accuracy") -> pd.DataFrame:
    """Every row of a verdict family that compares an arm with `baseline`, in points and as a share of the headroom:
    ceiling (the oracle's `ceiling_accuracy` on the setting's test images, in %) minus the baseline's mean over the
    seeds; `share`, `share_low_fw` and `share_high_fw` are the mean and family-wise interval divided by it (the
    headroom is one number per setting: its own seed error is not in the interval). Beside it, the paper's gain as
    a share of 100 % minus its baseline (`paper_share`: UJIPEN's ceiling is not reported, so this is the smallest
    share the paper's gain can be)."""
    rows = family[family["comparison"].str.endswith(f" − {baseline}")]
    ceilings = results[results["metric"] == "ceiling_accuracy"].groupby("dataset")["value"].first() * 100
    base = (results[(results["arm"] == baseline) & (results["metric"] == metric)]
            .groupby(["dataset", "classifier"])["value"].mean() * 100)
    out = []
    for r in rows.itertuples():
        name = parse_setting(r.dataset.split(" ")[0])[0]
        b = base.get((r.dataset, r.classifier), float("nan"))
        room = ceilings.get(name, float("nan")) - b
        arm = r.comparison.split(" − ")[0]
        paper_b = PAPER_TABLE2.get(r.classifier, {}).get(baseline)
        paper_gain = PAPER_TABLE2.get(r.classifier, {}).get(arm)
        out.append({"dataset": r.dataset, "classifier": r.classifier, "comparison": r.comparison,
                    "baseline": b, "ceiling": ceilings.get(name, float("nan")), "headroom": room, "mean": r.mean,
                    "low_fw": r.low_fw, "high_fw": r.high_fw, "share": r.mean / room,
                    "share_low_fw": r.low_fw / room, "share_high_fw": r.high_fw / room,
                    "paper": r.paper, "paper_share": (float("nan") if paper_b is None or paper_gain is None
                                                      else (paper_gain - paper_b) / (100 - paper_b)),
                    "verdict": r.verdict})
    return pd.DataFrame(out)
