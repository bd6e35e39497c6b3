"""Notebook 06's claims: every arm against the baseline and against the best cheap baseline, and the closing advice.

No paper makes these claims: each of the five papers compares its method with its own baselines, on its own data. The
questions here are the practitioner's (issue 22): at n labels, does a method beat training on the n images alone
(`baseline`), and does it beat the best of the cheap baselines (affine augmentation, mixup, a class-balanced loss)?
The best cheap baseline of a setting is the one with the highest mean *validation* AUC (`best_cheap`), so choosing it
never reads the test split. Every claim rests on its method's instruments (`head_to_head.INSTRUMENTS`, the method
modules' own gates) and on the classifier's convergence; `verdicts` tests them all as one family (Bonferroni over
every setting, claim and metric). `recommendation` writes the closing advice from the ledger alone.
"""

from __future__ import annotations

import pandas as pd

from latentlab import stats
from latentlab.experiments.head_to_head import ARMS, CHEAP, CLASSIFIER, INSTRUMENTS

REFERENCE = "head to head (ours: the five methods at equal labels and stated cost)"


def best_cheap(runs: pd.DataFrame, cheap=CHEAP) -> dict[str, str]:
    """Per setting, the cheap baseline with the highest mean validation AUC over seeds (never the test split)."""
    val = runs[(runs["metric"] == "val_auc") & runs["arm"].isin(cheap)]
    means = val.groupby(["dataset", "arm"], sort=False)["value"].mean().reset_index()
    return {d: g.loc[g["value"].idxmax(), "arm"] for d, g in means.groupby("dataset", sort=False)}


def claims_for(arms, cheap_arm: str | None) -> list[stats.Claim]:
    """Every arm against `baseline`, and every arm that is no cheap baseline against the setting's best cheap one,
    each resting on its method's instruments and the classifier's convergence."""
    def inst(*names):
        return tuple(dict.fromkeys(i for a in names for i in INSTRUMENTS.get(a, ()))) + (CLASSIFIER,)

    out = [stats.Claim(a, "baseline", instruments=inst(a)) for a in arms if a != "baseline"]
    if cheap_arm is not None:
        out += [stats.Claim(a, cheap_arm, instruments=inst(a, cheap_arm)) for a in arms
                if a not in ("baseline", *CHEAP)]
    return out


def verdicts(runs: pd.DataFrame, instruments: pd.DataFrame, metrics=("auc",)) -> pd.DataFrame:
    """stats.compare per setting (each with its best cheap baseline), joined into one family (`stats.one_family`)."""
    cheap = best_cheap(runs)
    tables = []
    for where in dict.fromkeys(runs["dataset"]):
        part = runs[runs["dataset"] == where]
        arms = [a for a in ARMS if a in set(part["arm"])]
        tables.append(stats.compare(part, claims_for(arms, cheap.get(where)), metric=list(metrics),
                                    instruments=instruments))
    return stats.one_family(*tables)


def recommendation(ledger: pd.DataFrame, costs: pd.DataFrame) -> str:
    """The closing advice, from the ledger's verdicts alone (and the arms' measured costs): per setting, the arms
    decided better than the baseline or the best cheap baseline, or that none was."""
    lines = []
    for where, g in ledger.groupby("dataset", sort=False):
        c = costs[costs["dataset"] == where].set_index("arm")
        wins = g[g["verdict"].astype(str).str.startswith("supported")]
        losses = g[g["verdict"].astype(str).str.startswith("reversed")]
        untested = g[~g["instruments_ok"]]
        parts = []
        if len(wins):
            parts.append("decided better: " + "; ".join(
                f"{r.claim} ({r.metric} {r.mean:+.2f} [{r.low_fw:+.2f}, {r.high_fw:+.2f}] points, "
                f"{c.loc[r.claim.split(' − ')[0], 'cpu_seconds']:.0f} CPU-s)" for r in wins.itertuples()))
        else:
            parts.append("no arm is decided better than the baseline or the best cheap baseline")
        if len(losses):
            parts.append("decided worse: " + ", ".join(f"{r.claim} ({r.metric} {r.mean:+.2f} points)"
                                                        for r in losses.itertuples()))
        if len(untested):
            parts.append(f"{len(untested)} of {len(g)} claims not tested (a gate failed)")
        lines.append(f"* **{where}**: " + "; ".join(parts) + ".")
    return "\n".join(lines)
