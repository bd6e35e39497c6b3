"""Paired comparisons over seeds, and one verdict vocabulary for every notebook.

Every arm of a seed shares the labelled subset, the classifier's initial weights and (per seed) the generative
model, so two arms are compared by their per-seed differences d_s = a_s - b_s. For a claim "a beats b" we report the
mean of d, its sd, the 95 % t-interval, the paired t-test and the Wilcoxon signed-rank test (scipy.stats), wins / n,
Holm-adjusted p-values when a notebook tests several claims, and the minimum detectable effect: the true difference
that n seeds with this spread would detect with 80 % power. The verdict compares the interval with zero **and with
the paper's own effect size**, so "not significant" is never the end of the sentence:

* ``supported``: the interval lies wholly on the claimed side of 0;
* ``reversed``: it lies wholly on the other side;
* ``paper-size effect excluded``: it spans 0 and lies wholly short of the paper's effect;
* ``inconclusive``: it spans 0 and still contains the paper's effect (or the paper gives none); the table says how
  many seeds would decide it.

The claimed side is the sign of the paper's effect (positive when the paper gives none): a claim such as
"Uniform sampling is far *below* Random" (paper: -24 points) is supported by an interval below 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats


@dataclass(frozen=True)
class Claim:
    """'a beats b' (a - b > 0), or with a negative `paper` effect 'a is below b'.

    paper: the paper's effect in the units of the comparison (points of accuracy by default), one number or
    {dataset: number}; None when the paper gives no number (then only the sign of `direction` is tested).
    """

    a: str
    b: str
    paper: float | dict | None = None
    direction: int | None = None  # +1 or -1; default: the sign of the paper's effect, else +1

    def paper_for(self, dataset) -> float | None:
        return self.paper.get(dataset) if isinstance(self.paper, dict) else self.paper

    def sign(self, dataset=None) -> int:
        if self.direction is not None:
            if self.direction not in (1, -1):
                raise ValueError(f"direction must be +1 or -1; got {self.direction}.")
            return self.direction
        paper = self.paper_for(dataset)
        return -1 if paper is not None and paper < 0 else 1

    @property
    def name(self) -> str:
        return f"{self.a} − {self.b}"


def as_claim(c: Claim | Sequence) -> Claim:
    """A Claim from a Claim, (a, b) or (a, b, paper)."""
    if isinstance(c, Claim):
        return c
    if isinstance(c, str) or not 2 <= len(c) <= 3:
        raise ValueError(f"A claim is Claim(a, b, paper) or a tuple (a, b) / (a, b, paper); got {c!r}.")
    return Claim(*c)


# --------------------------------------------------------------------------- power


def power_paired(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test at level alpha to detect a true mean difference `effect` (noncentral t)."""
    if n < 2:
        return float("nan")
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df, ncp = n - 1, abs(effect) / (sd / math.sqrt(n))
    crit = stats.t.ppf(1 - alpha / 2, df)
    value = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    return value if np.isfinite(value) else 1.0  # scipy's nct gives NaN far in the tail, where the power is ~1


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference that n paired seeds with this sd detect with the given power."""
    if n < 2 or not np.isfinite(sd):
        return float("nan")
    if sd <= 0:
        return 0.0
    upper = sd / math.sqrt(n)
    while power_paired(upper, sd, n, alpha) < power:  # bracket the root, then solve power(e) = power
        upper *= 2
    return float(optimize.brentq(lambda e: power_paired(e, sd, n, alpha) - power, 0.0, upper, xtol=1e-12 * upper))


def seeds_to_detect(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, max_n: int = 10_000) -> int:
    """The fewest paired seeds that detect a true difference `effect` with this power, given the spread sd."""
    if effect == 0 or not np.isfinite(sd):
        return -1
    for n in range(2, max_n + 1):
        if power_paired(effect, sd, n, alpha) >= power:
            return n
    return max_n


# --------------------------------------------------------------------------- one comparison


def verdict(low: float, high: float, paper: float | None = None, direction: int = 1) -> str:
    """The verdict word for an interval [low, high] of a - b (see the module docstring)."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1; got {direction}.")
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    lo, hi = sorted((direction * low, direction * high))  # on the claimed side, the claim reads "difference > 0"
    if lo > 0:
        return "supported"
    if hi < 0:
        return "reversed"
    if paper is not None and hi < direction * paper:
        return "paper-size effect excluded"
    return "inconclusive"


def _versus_paper(low: float, high: float, paper: float | None, direction: int) -> str:
    if paper is None or not (np.isfinite(low) and np.isfinite(high)):
        return ""
    lo, hi, p = *sorted((direction * low, direction * high)), direction * paper
    return "smaller than the paper's" if hi < p else "larger than the paper's" if lo > p else "paper's effect inside"


def paired(a: Sequence[float], b: Sequence[float], *, paper: float | None = None, direction: int | None = None,
           confidence: float = 0.95, power: float = 0.8) -> dict:
    """The paired comparison of two arms over the same seeds (a[i], b[i] from seed i)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and of equal length (one value per seed); got {a.shape}, {b.shape}.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d, n = a - b, len(a)
    if n < 2:
        raise ValueError(f"A paired comparison needs at least 2 seeds with both arms; got {n}.")
    direction = direction if direction is not None else (-1 if paper is not None and paper < 0 else 1)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd > 0:
        test = stats.ttest_rel(a, b)
        low, high = test.confidence_interval(confidence)
        p_t = float(test.pvalue)
    else:  # every seed gave the same difference: the interval collapses onto it
        low = high = mean
        p_t = 1.0 if mean == 0 else 0.0
    p_w = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    alpha = 1 - confidence
    word = verdict(low, high, paper, direction)
    decide = seeds_to_detect(paper, sd, alpha, power) if word == "inconclusive" and paper else -1
    return {"n": n, "mean": mean, "sd": sd, "low": float(low), "high": float(high), "p_t": p_t, "p_wilcoxon": p_w,
            "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
            "mde": minimum_detectable_effect(sd, n, alpha, power), "paper": paper, "verdict": word,
            "seeds_to_decide": decide, "vs_paper": _versus_paper(low, high, paper, direction)}


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaNs stay NaN and do not count): controls the family-wise error."""
    p = np.asarray(list(pvalues), float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


# --------------------------------------------------------------------------- a notebook's table of claims


def compare(results: pd.DataFrame, claims: Iterable[Claim | Sequence], *, metric: str | Sequence[str] = "accuracy",
            by: str | Sequence[str] = "dataset", scale: float = 100.0, confidence: float = 0.95,
            power: float = 0.8) -> pd.DataFrame:
    """Paired comparisons of a tidy results table (dataset, arm, seed, metric, value): one row per group x claim x
    metric, with Holm-adjusted p-values over all rows of the table.

    Differences are multiplied by `scale` (100: accuracy in points, the unit of the papers' tables; paper effects
    are given in the same unit). Seeds are paired on `seed` within each group of `by`.
    """
    claims = [as_claim(c) for c in claims]
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*by, "arm", "seed", "metric", "value"] if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks the columns {missing}.")
    rows = []
    for m in metrics:
        part = results[results["metric"] == m]
        if part.empty:
            raise ValueError(f"No results for metric {m!r}; metrics present: {sorted(results['metric'].unique())}.")
        wide = part.pivot_table(index=[*by, "seed"], columns="arm", values="value", aggfunc="first")
        for group, g in wide.groupby(level=list(range(len(by))), sort=False):
            group = group if isinstance(group, tuple) else (group,)
            key = group[0] if len(by) == 1 else group
            for c in claims:
                if c.a not in g.columns or c.b not in g.columns:
                    continue
                paper = c.paper_for(key)
                r = paired(g[c.a].to_numpy() * scale, g[c.b].to_numpy() * scale, paper=paper, direction=c.sign(key),
                           confidence=confidence, power=power)
                rows.append({**dict(zip(by, group)), "comparison": c.name, "metric": m, **r})
    if not rows:
        raise ValueError("No claim matched the arms of the results table.")
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p_wilcoxon") + 1, "p_holm", holm(table["p_t"]))
    return table


def describe(row: pd.Series | dict, unit: str = "pts") -> str:
    """One sentence for a row of `compare`: the difference, its interval, the paper's effect and the verdict."""
    r = dict(row)
    paper = f", paper {r['paper']:+.1f}" if r.get("paper") is not None and np.isfinite(r["paper"]) else ""
    tail = ""
    if r["verdict"] == "inconclusive":
        tail = (f"; about {r['seeds_to_decide']} seeds would decide the paper's effect"
                if r.get("seeds_to_decide", -1) > 0 else f"; effects under {r['mde']:.1f} {unit} are undetectable here")
    return (f"{r['comparison']} = {r['mean']:+.2f} {unit} [{r['low']:+.2f}, {r['high']:+.2f}]{paper}: "
            f"{r['verdict'].upper()} (n = {r['n']}, wins {r['wins']}/{r['n']}, t p = {r['p_t']:.3f}, "
            f"Holm p = {r.get('p_holm', float('nan')):.3f}, Wilcoxon p = {r['p_wilcoxon']:.3f}, "
            f"MDE {r['mde']:.1f} {unit}{tail})")


# --------------------------------------------------------------------------- descriptive tables


def summary_table(results: pd.DataFrame, metrics: Sequence[str] | None = None, arms: Sequence[str] | None = None,
                  by: str | Sequence[str] = "dataset", scale: float = 100.0, digits: int = 1) -> pd.DataFrame:
    """'mean ± sd' over seeds of each arm (columns) per group and metric (rows), values times `scale`."""
    by = [by] if isinstance(by, str) else list(by)
    part = results if metrics is None else results[results["metric"].isin(metrics)]
    arms = list(dict.fromkeys(part["arm"])) if arms is None else [a for a in arms if a in set(part["arm"])]
    stats_ = part.groupby([*by, "metric", "arm"], sort=False)["value"].agg(["mean", "std"]) * scale
    cell = stats_.apply(lambda r: f"{r['mean']:.{digits}f} ± {r['std']:.{digits}f}" if np.isfinite(r["std"])
                        else f"{r['mean']:.{digits}f}", axis=1)
    table = cell.unstack("arm").reindex(columns=arms)
    if metrics is not None:  # rows in the order asked for
        order = {m: i for i, m in enumerate(metrics)}
        table = table.sort_index(level="metric", key=lambda s: s.map(order), sort_remaining=False)
    return table


def degenerate_runs(results: pd.DataFrame, arms: Sequence[str] | None = None,
                    by: str | Sequence[str] = "dataset") -> pd.DataFrame:
    """Runs per group and arm whose classifier predicted a single class (metric `single_class`), as 'k/n'."""
    by = [by] if isinstance(by, str) else list(by)
    part = results[results["metric"] == "single_class"]
    if part.empty:
        raise ValueError("results hold no 'single_class' metric (latentlab.metrics.classification_metrics adds it).")
    counts = part.groupby([*by, "arm"], sort=False)["value"].agg(["sum", "count"])
    cell = counts.apply(lambda r: f"{int(r['sum'])}/{int(r['count'])}", axis=1).unstack("arm")
    return cell.reindex(columns=[a for a in (arms or cell.columns) if a in cell.columns])
