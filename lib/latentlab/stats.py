"""Paired comparisons over seeds, and one verdict vocabulary for every notebook.

Every arm of a seed shares the labelled subset, the classifier's initial weights and (per seed) the generative
model, so two arms are compared by their per-seed differences d_s = a_s - b_s. For a claim "a beats b" we report the
mean of d, its sd, the unadjusted 95 % t-interval (`low`, `high`), the paired t-test and the Wilcoxon signed-rank test
(scipy.stats), wins / losses (seeds on the claimed / the other side of 0), the minimum detectable effect (the true
difference that n seeds with this spread would detect with 80 % power, at the unadjusted level) and, over the
notebook's family of claims, Holm-adjusted p-values and a family-wise interval.

**Family-wise intervals (Bonferroni).** A notebook tests many claims at once; at 95 % each, one in twenty intervals
misses its true difference, so some verdicts in a table of forty are wrong by construction. `compare` therefore
computes for every row the paired t-interval at confidence 1 - alpha/m (`low_fw`, `high_fw`; the method is the column
`fw_method` and `table.attrs["fw_method"]`, e.g. "Bonferroni, m = 12"): by Bonferroni's inequality all m intervals
cover their true differences at once with probability at least 1 - alpha. m counts the rows of the table that are
decided and tested (the rows below that read "not decided" / "not tested" are not in the family); `family=m`
overrides it (a notebook that splits its family over several calls), and `one_family(t1, t2, ...)` joins tables into
one family. **The verdict word comes from the family-wise interval**; `low` / `high` stay the unadjusted interval.
`p_holm` is Holm's step-down adjustment over the same rows (NaN outside the family).

**Verdicts.** Write [lo, hi] for the family-wise interval and p for the paper's effect, both on the claimed side
(times `direction`, so the claim reads "difference > 0"):

* ``supported, smaller than the paper's``: 0 < lo and hi < p (real, but short of what the paper reports);
* ``supported, paper size``: 0 < lo and lo <= p <= hi;
* ``supported, larger than the paper's``: p < lo;
* ``supported``: 0 < lo, and the paper gives no number;
* ``reversed``: hi < 0;
* ``paper-size effect excluded``: lo <= 0 <= hi < p (the paper's effect is ruled out, an effect of 0 is not);
* ``inconclusive (N seeds would decide)``: the interval spans 0 and contains p; N is the number of seeds a paired
  t-test at the family's level (alpha/m) needs to detect p with 80 % power given this spread (a planning number; it
  can be below n when the mean fell short of p by chance). Plain ``inconclusive`` when the paper gives no number;
* ``not decided: <reason>``: fewer than 3 seeds, zero spread of the differences (the interval collapses onto a point
  and says nothing about how seeds vary), or every run of both arms degenerate (every classifier predicted one class:
  the metric ``single_class`` of the results, or `compare`'s ``degenerate=``);
* ``not tested: <instrument>/<check> failed``: the claim relies on instruments (`Claim.instruments`) of which a
  quality gate failed on that dataset (`compare`'s ``instruments=``, the table of `latentlab.gates`).

**Equivalence claims** (`Claim(margin=delta)`: "a is as good as b, within +-delta points"): two one-sided tests
(TOST) read from the same family-wise interval, which is conservative (the TOST at level alpha uses the 1 - 2 alpha
interval): ``equivalent (within +-delta)`` when -delta < lo and hi < delta; ``not equivalent (beyond +-delta)`` when
the interval lies wholly outside (-delta, delta); ``inconclusive (equivalence, +-delta)`` otherwise. The checks for
"not tested" / "not decided" come first, as for every claim.

The claimed side is `Claim.direction`, else the sign of the paper's effect, else +1: a claim such as "Uniform sampling
is far *below* Random" (paper: -24 points) is supported by an interval below 0. A direction that contradicts the
paper's own sign raises (a paper effect of 0 goes with either).

**Settings that share models (`pooled`).** Settings of one seed (02's three label fractions of PneumoniaMNIST) share
that seed's generative model, so setting x seed pairs are not independent: the seed is the unit. `pooled` averages
the per-setting differences within each seed first (equal weight per setting; a seed counts when it has both arms in
every setting), then takes the paired interval over seeds: a stratified estimate whose n is the number of seeds.

**Random effects across settings (`random_effects`).** A random-effects meta-analysis pools the per-setting rows of
`compare` (each setting's mean difference, with variance sd² / n) into one row per comparison and metric, allowing
the true effect to differ between settings (between-setting variance `tau2`, share of the spread `i2`). The library
does it: statsmodels' `combine_effects`, DerSimonian-Laird by default (its negative moment estimate read as 0, as
DerSimonian-Laird truncates it), with normal intervals. Settings "not decided" are left out (`settings` names those
pooled); one "not tested" setting makes the pooled row "not tested". Such a row carries its standard error `se`, and
in a family (`one_family(table, random_effects(table))`) its family-wise interval is the normal interval at
1 - alpha/m, mean +- z se, not a t-interval over seeds. `leave_one_out` reports the estimate without each setting in
turn (a sensitivity table, outside the family). Caveat: settings that share a seed's generative model are treated as
independent strata; their correlation makes the SE optimistic. `pooled`, with the seed as the unit, is the check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats
from statsmodels.stats.meta_analysis import combine_effects

KINDS = ("supported", "reversed", "paper-size effect excluded", "inconclusive", "equivalent", "not equivalent",
         "not decided", "not tested")
HELD = ("not decided", "not tested")  # kinds outside the family (no interval decides them)
MIN_SEEDS = 3  # fewer seeds than this give "not decided"
MAX_SEEDS = 10_000  # seeds_to_detect searches no further ("10000+ seeds would decide")


def _number(x) -> float | None:
    """A finite float, or None (for None, NaN and the like)."""
    return None if x is None or not np.isfinite(float(x)) else float(x)


def _check_side(paper, direction: int, where: str = "") -> None:
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1; got {direction}.")
    p = _number(paper)
    if p is not None and p * direction < 0:
        raise ValueError(f"direction {direction:+d} disagrees with the paper's effect {p:+g}{where}: the claimed side "
                         "is the side of the paper's effect (a paper effect of 0 goes with either direction).")


@dataclass(frozen=True)
class Claim:
    """'a beats b' (a - b > 0), or with a negative `paper` effect or direction=-1 'a is below b'.

    paper: the paper's effect in the units of the comparison (points of accuracy by default), one number or
    {dataset: number}; None when the paper gives no number (then only the sign of `direction` is tested).
    direction: +1 or -1, the claimed side; by default the sign of the paper's effect, else +1. An explicit direction
    that disagrees with the sign of a paper effect raises ValueError.
    instruments: the instruments (names in `latentlab.gates` tables) the claim relies on; a failed gate of one of
    them makes the claim "not tested" (see `compare`).
    margin: an equivalence claim "a is within +-margin of b" (same units), tested by TOST (module docstring); the
    paper's effect, if given, is reported beside it.
    """

    a: str
    b: str
    paper: float | dict | None = None
    direction: int | None = None
    instruments: tuple[str, ...] = ()
    margin: float | None = None

    def __post_init__(self):
        names = (self.instruments,) if isinstance(self.instruments, str) else tuple(self.instruments)
        object.__setattr__(self, "instruments", names)
        if self.direction is None:
            return
        effects = self.paper.items() if isinstance(self.paper, dict) else [(None, self.paper)]
        for key, effect in effects:
            _check_side(effect, self.direction, f" in Claim {self.name}" + (f" at {key!r}" if key is not None else ""))

    def paper_for(self, dataset) -> float | None:
        return self.paper.get(dataset) if isinstance(self.paper, dict) else self.paper

    def sign(self, dataset=None) -> int:
        if self.direction is not None:
            return self.direction
        paper = _number(self.paper_for(dataset))
        return -1 if paper is not None and paper < 0 else 1

    @property
    def name(self) -> str:
        return f"{self.a} − {self.b}" + (f" (within ±{self.margin:g})" if self.margin is not None else "")


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


def seeds_to_detect(effect: float, sd: float, alpha: float = 0.05, power: float = 0.8, max_n: int = MAX_SEEDS) -> int:
    """The fewest paired seeds that detect a true difference `effect` with this power, given the spread sd (max_n
    when even max_n do not). The power grows with n, so a doubling search and bisection find it."""
    if effect == 0 or not np.isfinite(sd):
        return -1

    def enough(n: int) -> bool:
        return power_paired(effect, sd, n, alpha) >= power

    high = 2
    while not enough(high):
        if high >= max_n:
            return max_n
        high = min(2 * high, max_n)
    low = high // 2  # not enough (or below 2 seeds)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid, high)
    return high


# --------------------------------------------------------------------------- one comparison


def t_interval(mean: float, sd: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The t-interval of a mean of n paired differences with this sd (collapsed onto the mean when sd is 0)."""
    if n < 2 or not np.isfinite(sd):
        return float("nan"), float("nan")
    if sd == 0:
        return float(mean), float(mean)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sd / math.sqrt(n))
    return float(low), float(high)


def seed_and_test_interval(a, b, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0,
                           scale: float = 100.0) -> dict:
    """A paired interval of mean(a - b) that holds both error sources of a small test split: the seeds (models) and
    the test images (every seed is scored on the same images, so their sampling error does not average out over
    seeds, and the t-interval over seeds leaves it out).

    a, b: per-image scores (n_seeds, n_images) of two arms on the same test images in the same order (e.g. 1.0 where
    an image is classified right: the mean is the accuracy). The seed error is se_seed = sd(d_s) / sqrt(n) of the
    per-seed mean differences d_s; the test-sampling error se_test is the sd, over n_boot draws of n_images test
    images with replacement (one draw shared by every seed and both arms: a bootstrap over test images within
    seeds), of the mean over seeds of d_s on the drawn images. The interval is mean +- t_{n-1} sqrt(se_seed^2 +
    se_test^2). Returns mean, se_seed, se_test, low, high (x scale: points by default) and n (seeds)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] < 2 or a.shape[1] < 2:
        raise ValueError(f"a and b must be per-image scores (n_seeds >= 2, n_images >= 2) of the same shape; got "
                         f"{a.shape} and {b.shape}.")
    d = (a - b) * scale
    n, n_images = d.shape
    per_seed = d.mean(1)
    draws = np.random.default_rng(seed).integers(0, n_images, size=(n_boot, n_images))
    boot = d[:, draws].mean(axis=(0, 2))  # (n_boot,): the seed mean of d on each drawn test set
    se_seed, se_test = float(per_seed.std(ddof=1) / math.sqrt(n)), float(boot.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.hypot(se_seed, se_test)
    mean = float(per_seed.mean())
    return {"mean": mean, "se_seed": se_seed, "se_test": se_test, "low": mean - half, "high": mean + half, "n": n}


def _seeds_to_decide(paper, direction: int, sd, alpha: float, power: float) -> int:
    """Seeds that would detect the paper's effect on the claimed side; -1 without a (nonzero) paper effect."""
    p, sd = _number(paper), _number(sd)
    return -1 if p is None or p == 0 or sd is None else seeds_to_detect(direction * p, sd, alpha, power)


def verdict(low: float, high: float, paper: float | None = None, direction: int = 1, *, n: int | None = None,
            sd: float | None = None, degenerate: bool = False, failed: str | None = None, alpha: float = 0.05,
            power: float = 0.8, margin: float | None = None) -> str:
    """The verdict for an interval [low, high] of a - b (see the module docstring for every word).

    [low, high] is the interval that decides (in `compare`, the family-wise one, at level alpha = 0.05 / m). The
    checks that come first, when their arguments are given: `failed` (a failed gate: "not tested: <failed>"), then
    `degenerate`, fewer than 3 seeds (`n`) and zero spread (`sd`): "not decided: <reason>". `sd`, `alpha` and
    `power` also give N in "inconclusive (N seeds would decide)". margin: an equivalence claim (TOST words).
    """
    _check_side(paper, direction)
    if failed:
        return f"not tested: {failed}"
    if degenerate:
        return "not decided: every classifier predicted one class"
    if n is not None and n < MIN_SEEDS:
        return f"not decided: fewer than {MIN_SEEDS} seeds (n = {n})"
    if sd is not None and sd == 0:
        return "not decided: zero spread of the differences"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not decided: no finite interval"
    if margin is not None:
        return equivalence(low, high, margin)
    lo, hi = sorted((direction * low, direction * high))  # on the claimed side, the claim reads "difference > 0"
    p = None if _number(paper) is None else direction * float(paper)
    if lo > 0:
        if p is None:
            return "supported"
        return ("supported, smaller than the paper's" if hi < p else "supported, larger than the paper's" if lo > p
                else "supported, paper size")
    if hi < 0:
        return "reversed"
    if p is not None and hi < p:
        return "paper-size effect excluded"
    decide = _seeds_to_decide(paper, direction, sd, alpha, power)
    if decide <= 0:
        return "inconclusive"
    return f"inconclusive ({decide}{'+' if decide >= MAX_SEEDS else ''} seeds would decide)"


def equivalence(low: float, high: float, margin: float) -> str:
    """The TOST reading of an interval [low, high] against the margin (-margin, margin)."""
    if not margin > 0:
        raise ValueError(f"An equivalence margin must be positive; got {margin}.")
    if -margin < low and high < margin:
        return f"equivalent (within ±{margin:g})"
    if low >= margin or high <= -margin:
        return f"not equivalent (beyond ±{margin:g})"
    return f"inconclusive (equivalence, ±{margin:g})"


def verdict_kind(word: str) -> str:
    """The head of a verdict, one of KINDS ('supported, paper size' -> 'supported', 'not tested: x' -> 'not tested')."""
    for kind in KINDS:
        if str(word).startswith(kind):
            return kind
    raise ValueError(f"Not a verdict of latentlab.stats: {word!r}.")


def _versus_paper(low: float, high: float, paper: float | None, direction: int) -> str:
    if _number(paper) is None or not (np.isfinite(low) and np.isfinite(high)):
        return ""
    lo, hi, p = *sorted((direction * low, direction * high)), direction * paper
    return "smaller than the paper's" if hi < p else "larger than the paper's" if lo > p else "paper's effect inside"


def z_interval(mean: float, se: float, confidence: float = 0.95) -> tuple[float, float]:
    """The normal interval mean +- z_{1 - (1 - confidence) / 2} se (a random-effects estimate and its se)."""
    half = float(stats.norm.ppf(1 - (1 - confidence) / 2)) * se
    return float(mean) - half, float(mean) + half


def _at_family(r: dict, m: int, confidence: float, power: float, **reasons) -> dict:
    """The family-wise columns of a row (n, mean, sd, paper, direction) in a family of m rows (Bonferroni).

    A row with a finite `se` (a row of `random_effects`) gets the normal interval mean +- z se at 1 - alpha/m instead
    of the t-interval from (mean, sd, n), and seeds_to_decide -1 (its spread is not one of seeds)."""
    alpha = (1 - confidence) / max(m, 1)
    se = _number(r.get("se"))
    if se is None:
        low, high = t_interval(r["mean"], r["sd"], r["n"], 1 - alpha)
        spread = {"n": r["n"], "sd": r["sd"]}
    else:
        low, high = z_interval(r["mean"], se, 1 - alpha)
        spread = {}
    margin = _number(r.get("margin"))
    word = verdict(low, high, r["paper"], r["direction"], alpha=alpha, power=power, margin=margin, **spread,
                   **reasons)
    kind = verdict_kind(word)
    return {"low_fw": low, "high_fw": high, "verdict": word,
            "seeds_to_decide": _seeds_to_decide(r["paper"], r["direction"], spread.get("sd"), alpha, power)
            if kind == "inconclusive" and margin is None else -1,
            "vs_paper": "" if kind in HELD else _versus_paper(low, high, r["paper"], r["direction"]),
            "fw_method": f"Bonferroni, m = {m}"}


def paired(a: Sequence[float], b: Sequence[float], *, paper: float | None = None, direction: int | None = None,
           confidence: float = 0.95, power: float = 0.8, family: int = 1, degenerate: bool = False,
           failed: str | None = None, margin: float | None = None) -> dict:
    """The paired comparison of two arms over the same seeds (a[i], b[i] from seed i).

    The verdict comes from the interval at confidence 1 - (1 - confidence) / family (`low_fw`, `high_fw`; with
    family=1 the same as `low`, `high`); `degenerate`, `failed` and `margin` (an equivalence claim) as in `verdict`.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and of equal length (one value per seed); got {a.shape}, {b.shape}.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d, n = a - b, len(a)
    if n < 2:
        raise ValueError(f"A paired comparison needs at least 2 seeds with both arms; got {n}.")
    direction = direction if direction is not None else (-1 if _number(paper) is not None and paper < 0 else 1)
    _check_side(paper, direction)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd <= 1e-9 * max(1.0, abs(mean)):  # equal differences up to floating-point rounding: zero spread
        sd = 0.0
    low, high = t_interval(mean, sd, n, confidence)
    p_t = float(stats.ttest_rel(a, b).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    p_w = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    r = {"n": n, "mean": mean, "sd": sd, "low": low, "high": high, "low_fw": low, "high_fw": high, "p_t": p_t,
         "p_wilcoxon": p_w, "wins": int((direction * d > 0).sum()), "losses": int((direction * d < 0).sum()),
         "mde": minimum_detectable_effect(sd, n, 1 - confidence, power), "paper": paper, "direction": direction,
         "margin": np.nan if margin is None else float(margin)}
    fw = _at_family(r, family, confidence, power, degenerate=degenerate, failed=failed)
    return {**r, "low_fw": fw.pop("low_fw"), "high_fw": fw.pop("high_fw"), **fw}


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


# --------------------------------------------------------------------------- a notebook's family of claims


def one_family(*tables: pd.DataFrame, family: int | None = None, confidence: float = 0.95,
               power: float = 0.8) -> pd.DataFrame:
    """Tables of `compare` / `pooled` / `random_effects` joined into one family: the family-wise intervals, verdicts
    and Holm p-values recomputed over all their rows (m = the decided and tested rows, or `family`)."""
    table = pd.concat(tables, ignore_index=True)
    held = table["verdict"].map(lambda w: verdict_kind(w) in HELD).to_numpy()
    m = int((~held).sum()) if family is None else int(family)
    if m < (~held).sum():
        raise ValueError(f"family = {m} is smaller than the {(~held).sum()} decided rows of the table.")
    columns = []
    for r, out_of_family in zip(table.to_dict("records"), held):
        r["paper"] = _number(r.get("paper"))
        r.setdefault("direction", -1 if r["paper"] is not None and r["paper"] < 0 else 1)
        fw = _at_family(r, m, confidence, power)
        if out_of_family:  # the row keeps its reason
            fw.update(verdict=r["verdict"], seeds_to_decide=-1, vs_paper="")
        columns.append(fw)
    out = table.copy()
    for k, values in pd.DataFrame(columns, index=table.index).items():
        out[k] = values
    p_holm = np.full(len(out), np.nan)
    p_holm[~held] = holm(out.loc[~held, "p_t"])
    out["p_holm"] = p_holm
    out.attrs.update(family=m, fw_method=f"Bonferroni, m = {m}")
    return out


def _pivot(df: pd.DataFrame, index: list[str], aggfunc: str = "first") -> pd.DataFrame:
    return df.pivot_table(index=[*index, "seed"], columns="arm", values="value", aggfunc=aggfunc)


def _flags(results: pd.DataFrame, degenerate, index: list[str]) -> pd.DataFrame | None:
    """Per run (index + seed) x arm: 1 where the run is degenerate; None when nothing says so."""
    if degenerate is False:
        return None
    if degenerate is None:
        if "single_class" not in set(results["metric"]):
            return None
        degenerate = results[results["metric"] == "single_class"]
    if isinstance(degenerate, pd.Series):
        degenerate = degenerate.rename("value").reset_index()
    missing = [c for c in [*index, "arm", "seed", "value"] if c not in degenerate.columns]
    if missing:
        raise ValueError(f"degenerate= lacks the columns {missing} (a tidy table of True / False per run).")
    return _pivot(degenerate.assign(value=degenerate["value"].astype(float)), index, "min")  # degenerate if all are


def _all_degenerate(flags: pd.DataFrame | None, runs: pd.Index, c: Claim) -> bool:
    if flags is None or c.a not in flags.columns or c.b not in flags.columns or not len(runs):
        return False
    return bool((flags.reindex(runs)[[c.a, c.b]].fillna(0) > 0).all().all())


def _passed(col: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return col.astype(bool)
    return col.astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])  # read back from a CSV as text


def _failed_gates(instruments: pd.DataFrame | None, names: tuple[str, ...], datasets: list | None) -> str | None:
    """'<instrument>/<check> failed, ...' (the first two, then 'k more') for the failed gates of the named instruments
    on these datasets (rows with dataset NaN or 'all' count everywhere; datasets None: every row); an instrument
    without rows is 'not measured'."""
    if instruments is None or not names:
        return None
    rows = instruments[instruments["instrument"].isin(names)]
    if datasets is not None:
        ds = rows["dataset"]
        rows = rows[ds.isna() | (ds.astype(str) == "all") | ds.isin(datasets)]
    bad = rows[~_passed(rows["passed"])]
    words = [f"{i}/{check} failed" for i, check in dict.fromkeys(zip(bad["instrument"], bad["check"]))]
    words += [f"{name} not measured" for name in names if name not in set(rows["instrument"])]
    if len(words) > 2:  # the verdict names the first two; instruments.csv holds them all
        words = [*words[:2], f"{len(words) - 2} more"]
    return ", ".join(words) or None


def _too_few(x: pd.DataFrame, c: Claim, key, failed: str | None) -> dict:
    """The row of a claim with fewer than 2 seeds that have both arms: no interval, "not tested" or "not decided"."""
    nan = float("nan")
    return {"n": len(x), "mean": nan, "sd": nan, "low": nan, "high": nan, "low_fw": nan, "high_fw": nan, "p_t": nan,
            "p_wilcoxon": nan, "wins": 0, "losses": 0, "mde": nan, "paper": c.paper_for(key),
            "direction": c.sign(key), "margin": nan if c.margin is None else float(c.margin),
            "verdict": verdict(nan, nan, c.paper_for(key), c.sign(key), n=len(x), failed=failed),
            "seeds_to_decide": -1, "vs_paper": "", "fw_method": ""}


def _table(results, claims, *, metric="accuracy", by="dataset", over=None, label="pooled", scale=100.0,
           confidence=0.95, power=0.8, family=None, degenerate=None, instruments=None) -> pd.DataFrame:
    claims = [as_claim(c) for c in claims]
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by = [by] if isinstance(by, str) else list(by)
    if over is not None and over in by:
        raise ValueError(f"Pooling over {over!r}: it cannot also be a column of by = {by}.")
    index = [*by, *([over] if over else [])]
    missing = [c for c in [*index, "arm", "seed", "metric", "value"] if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks the columns {missing}.")
    if instruments is not None:
        lacks = [c for c in ("instrument", "dataset", "check", "passed") if c not in instruments.columns]
        if lacks:
            raise ValueError(f"instruments lacks the columns {lacks} (see latentlab.gates.COLUMNS).")
    flags = _flags(results, degenerate, index)
    rows = []
    for m in metrics:
        part = results[results["metric"] == m]
        if part.empty:
            raise ValueError(f"No results for metric {m!r}; metrics present: {sorted(results['metric'].unique())}.")
        wide = _pivot(part, index)
        for group, g in (wide.groupby(level=list(range(len(by))), sort=False) if by else [((), wide)]):
            group = group if isinstance(group, tuple) else (group,)
            for c in claims:
                if c.a not in g.columns or c.b not in g.columns:
                    continue
                runs = g[[c.a, c.b]].dropna()
                where = dict(zip(by, group))
                datasets = [where["dataset"]] if "dataset" in where else None
                if over is None:
                    key, x = (group[0] if len(by) == 1 else group), runs
                else:  # the per-seed mean over settings; a seed counts when it has both arms in every setting
                    settings = list(dict.fromkeys(runs.index.get_level_values(over)))
                    per_seed = runs.groupby(level="seed").size()
                    runs = runs[(per_seed.reindex(runs.index.get_level_values("seed")) == len(settings)).to_numpy()]
                    key, x = ((*group, label) if by else label), runs.groupby(level="seed", sort=False).mean()
                    where |= {over: label, "settings": ", ".join(map(str, settings))}
                    datasets = settings if over == "dataset" else datasets
                failed = _failed_gates(instruments, c.instruments, datasets)
                if len(x.dropna()) < 2:  # e.g. robustness, where constant predictors have no value
                    rows.append({**where, "comparison": c.name, "metric": m, **_too_few(x.dropna(), c, key, failed)})
                    continue
                r = paired(x[c.a].to_numpy() * scale, x[c.b].to_numpy() * scale, paper=c.paper_for(key),
                           direction=c.sign(key), confidence=confidence, power=power,
                           degenerate=_all_degenerate(flags, runs.index, c), failed=failed, margin=c.margin)
                rows.append({**where, "comparison": c.name, "metric": m, **r})
    if not rows:
        raise ValueError("No claim matched the arms of the results table.")
    table = pd.DataFrame(rows)
    table.insert(table.columns.get_loc("p_wilcoxon") + 1, "p_holm", np.nan)
    return one_family(table, family=family, confidence=confidence, power=power)


def compare(results: pd.DataFrame, claims: Iterable[Claim | Sequence], *, metric: str | Sequence[str] = "accuracy",
            by: str | Sequence[str] = "dataset", scale: float = 100.0, confidence: float = 0.95, power: float = 0.8,
            family: int | None = None, degenerate: pd.DataFrame | pd.Series | bool | None = None,
            instruments: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paired comparisons of a tidy results table (dataset, arm, seed, metric, value): one row per group x claim x
    metric, with family-wise intervals, verdicts and Holm-adjusted p-values over the rows of the table (one family;
    see the module docstring).

    Differences are multiplied by `scale` (100: accuracy in points, the unit of the papers' tables; paper effects
    are given in the same unit). Seeds are paired on `seed` within each group of `by`.
    family: the family size m, when the notebook's family is larger than this table (default: the decided rows; p_holm
    stays over this table's rows; `one_family` joins tables into one family instead).
    degenerate: per run (the `by` columns, arm, seed, value True / False; or a boolean Series with that index) whether
    it is degenerate; by default the metric `single_class` of `results` where present; False: no check. A row whose
    every run of both arms is degenerate is "not decided".
    instruments: the gates' table (instrument, dataset, seed, check, value, threshold, passed); a claim naming
    instruments (`Claim.instruments`) is "not tested" when one of their rows on the row's dataset (or dataset NaN /
    'all') failed, or when the table has no row of it. None: no gate is checked.
    """
    return _table(results, claims, metric=metric, by=by, scale=scale, confidence=confidence, power=power,
                  family=family, degenerate=degenerate, instruments=instruments)


def pooled(results: pd.DataFrame, claims: Iterable[Claim | Sequence], *, over: str = "dataset",
           metric: str | Sequence[str] = "accuracy", by: str | Sequence[str] = (), label: str = "pooled",
           **options) -> pd.DataFrame:
    """Claims pooled over the settings in column `over` that share each seed's models: within each seed the
    per-setting differences are averaged (equal weight per setting), then the paired interval is taken over seeds
    (a stratified estimate; n is the number of seeds, never settings x seeds).

    The rows carry `over` = `label` and `settings` (the settings pooled). A pooled row's paper effect is the claim's
    number, or its dict's entry under `label` ((*group, label) with `by`). options: as `compare` (scale, confidence,
    power, family, degenerate, instruments; gates are matched on the pooled datasets when over = 'dataset').
    """
    return _table(results, claims, metric=metric, by=by, over=over, label=label, **options)


# --------------------------------------------------------------------------- random effects across settings


def _combine(mean: np.ndarray, var: np.ndarray, method: str, confidence: float) -> dict:
    """statsmodels' random-effects combination of k estimates with known variances (normal, not t).

    statsmodels (0.15) leaves the one-step DerSimonian-Laird moment estimate negative when Q < k - 1 (and the
    weights 1 / (v + tau2) then inflated); DerSimonian-Laird truncates it at 0, where the random-effects estimate is
    the fixed-effect one, so that is what a negative tau2 reads here."""
    with np.errstate(divide="ignore", invalid="ignore"):  # Q = 0 (I² = 1 - (k - 1) / Q), sqrt of v + tau2 < 0
        res = combine_effects(mean, var, method_re=method, use_t=False)
        ci_fe, ci_re = res.conf_int(alpha=1 - confidence, use_t=False)[:2]
    positive = res.tau2 > 0
    low, high = ci_re if positive else ci_fe
    return {"mean": float(res.mean_effect_re if positive else res.mean_effect_fe),
            "se": float(res.sd_eff_w_re if positive else res.sd_eff_w_fe), "tau2": max(float(res.tau2), 0.0),
            "i2": max(float(res.i2), 0.0), "low": float(low), "high": float(high)}


def _pool_settings(g: pd.DataFrame, label: str, confidence: float, power: float, method: str) -> dict | None:
    """The random-effects row of one (comparison, metric) group of per-setting rows; None when fewer than 2 of its
    settings are decided (not 'not decided')."""
    kinds = g["verdict"].map(verdict_kind)
    if (kinds != "not decided").sum() < 2:
        return None
    directions = set(g["direction"])
    if len(directions) > 1:
        raise ValueError(f"{g['comparison'].iloc[0]}: the settings claim opposite sides {sorted(directions)}; "
                         "a pooled effect needs one claimed side.")
    used = g[~kinds.isin(HELD)]
    r = {"dataset": label, "comparison": g["comparison"].iloc[0], "metric": g["metric"].iloc[0],
         "settings": ", ".join(map(str, used["dataset"])), "k": len(used), "n": int(used["n"].sum())}
    nan = float("nan")
    if len(used) >= 2:
        mean, sd, n = (used[c].to_numpy(float) for c in ("mean", "sd", "n"))
        r |= _combine(mean, sd**2 / n, method, confidence)
    else:
        r |= dict.fromkeys(("mean", "se", "tau2", "i2", "low", "high"), nan)
    r["sd"] = nan  # no spread of seeds: `se` makes the family-wise interval (see `_at_family`)
    se, z = r["se"], float(stats.norm.ppf(1 - (1 - confidence) / 2))
    r |= {"p_t": float(2 * stats.norm.sf(abs(r["mean"] / se))) if np.isfinite(se) else nan,
          "mde": (z + float(stats.norm.ppf(power))) * se, "paper": _number(g["paper"].iloc[0]),
          "direction": int(g["direction"].iloc[0]), "margin": _number(g["margin"].iloc[0]) if "margin" in g else None}
    untested = g[kinds == "not tested"]
    if len(untested):  # a pooled claim may not rest on a failed instrument
        r["verdict"] = f"{untested['verdict'].iloc[0]} (at {untested['dataset'].iloc[0]})"
    else:  # 2 or more settings, all tested; a placeholder verdict that one_family decides at the family's level
        r["verdict"] = verdict(r["low"], r["high"], r["paper"], r["direction"], margin=r["margin"])
    r["margin"] = nan if r["margin"] is None else r["margin"]
    return r


def random_effects(table: pd.DataFrame, *, label: str = "pooled (random effects)", confidence: float = 0.95,
                   power: float = 0.8, method: str = "dl") -> pd.DataFrame:
    """Per-setting rows of `compare` (one row per setting in column `dataset`) pooled across settings by a
    random-effects meta-analysis: one row per (comparison, metric).

    Each decided and tested setting contributes its mean difference with variance sd² / n; statsmodels'
    `combine_effects` (method_re=`method`, DerSimonian-Laird by default; normal intervals) gives the estimate `mean`,
    its `se`, the between-setting variance `tau2`, `i2` and the unadjusted interval `low`, `high` at `confidence`.
    Settings "not decided" are dropped (`settings` names those used, `k` counts them, `n` sums their seeds); a group
    with fewer than 2 decided settings gives no row, and a table where no group gives one raises ValueError. If any
    setting is "not tested", so is the pooled row (the first such reason, "(at <setting>)"; its numbers still pool
    the tested settings).

    The rows carry the verdict columns of `one_family`, computed over this table as one family; join them to the
    per-setting rows with `one_family(table, random_effects(table))`, where a row's family-wise interval is
    mean +- z_{1 - alpha/(2m)} se. `p_t` is the z-test's p-value of the pooled mean, `mde` the normal-approximation
    effect detectable with `power` at the unadjusted level, `seeds_to_decide` -1 (the spread is not one of seeds).
    paper, direction, margin: the group's first setting's.
    """
    if "settings" in table.columns and table["settings"].notna().any():
        raise ValueError("random_effects pools per-setting rows of compare; this table holds pooled rows "
                         "(a 'settings' entry).")
    rows = []
    for _, g in table.groupby(["comparison", "metric"], sort=False):
        if g["dataset"].duplicated().any():
            raise ValueError(f"{g['comparison'].iloc[0]}: more than one row per setting (dataset) to pool.")
        r = _pool_settings(g, label, confidence, power, method)
        if r is not None:
            rows.append(r)
    if not rows:
        raise ValueError("No (comparison, metric) has 2 decided settings to pool.")
    out = pd.DataFrame(rows)
    out.insert(out.columns.get_loc("p_t") + 1, "p_holm", np.nan)
    return one_family(out, confidence=confidence, power=power)


def leave_one_out(table: pd.DataFrame, *, label: str = "pooled (random effects)", confidence: float = 0.95,
                  power: float = 0.8, method: str = "dl") -> pd.DataFrame:
    """A sensitivity table of `random_effects` (not part of the family): per (comparison, metric) with at least 3
    decided and tested settings, the pooled estimate without each of them in turn (`left_out`): k, mean and the
    unadjusted interval low, high; `same_side` says whether that interval's side of 0 (above, below, spanning) is the
    full pooled interval's (at the unadjusted level: supported / reversed / inconclusive). Options as
    `random_effects`."""
    options = dict(confidence=confidence, power=power, method=method)
    rows = []
    for _, g in table.groupby(["comparison", "metric"], sort=False):
        used = g.loc[~g["verdict"].map(verdict_kind).isin(HELD), "dataset"]
        if len(used) < 3:  # pooling one setting is not pooling
            continue
        full = _pool_settings(g, label, **options)
        for setting in used:
            r = _pool_settings(g[g["dataset"] != setting], label, **options)
            rows.append({"comparison": r["comparison"], "metric": r["metric"], "left_out": setting, "k": r["k"],
                         "mean": r["mean"], "low": r["low"], "high": r["high"],
                         "same_side": _side(r["low"], r["high"]) == _side(full["low"], full["high"])})
    return pd.DataFrame(rows, columns=["comparison", "metric", "left_out", "k", "mean", "low", "high", "same_side"])


def _side(low: float, high: float) -> int:
    """+1 above 0, -1 below 0, 0 spanning it."""
    return 1 if low > 0 else -1 if high < 0 else 0


def scale_check(base: pd.DataFrame, scaled: pd.DataFrame, claims: Iterable[Claim | Sequence], *,
                metric: str = "accuracy", scale: float = 100.0) -> pd.DataFrame:
    """Did a claim's effect move when the generative model got k x the budget? Per dataset and claim, on the seeds
    both runs share: the mean paired difference with the notebook's models (`base`) and with the k x models
    (`scaled`), their change, and the seed spread (sd of the base differences over those seeds); `moved` is
    |change| > spread. Tidy result tables (dataset, arm, seed, metric, value); differences in points (x scale).
    An empty `scaled` (a profile that runs no scale check) gives an empty table."""
    columns = ["dataset", "comparison", "metric", "n", "mean_base", "mean_scaled", "change", "seed_sd", "moved"]
    if scaled.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for c in (as_claim(c) for c in claims):
        wide = {k: _pivot(t[t["metric"] == metric], ["dataset"]) for k, t in (("base", base), ("scaled", scaled))}
        if any(c.a not in w.columns or c.b not in w.columns for w in wide.values()):
            continue
        d = {k: (w[c.a] - w[c.b]).dropna() * scale for k, w in wide.items()}
        for dataset in dict.fromkeys(d["scaled"].index.get_level_values("dataset")):
            at = {k: v.xs(dataset, level="dataset") for k, v in d.items()}
            seeds = at["scaled"].index.intersection(at["base"].index)
            if len(seeds) < 2:
                continue
            b, k = at["base"].loc[seeds], at["scaled"].loc[seeds]
            change = float(k.mean() - b.mean())
            rows.append({"dataset": dataset, "comparison": c.name, "metric": metric, "n": len(seeds),
                         "mean_base": float(b.mean()), "mean_scaled": float(k.mean()), "change": change,
                         "seed_sd": float(b.std(ddof=1)), "moved": abs(change) > float(b.std(ddof=1))})
    if not rows:
        raise ValueError("No claim has both arms on at least 2 shared seeds in both tables.")
    return pd.DataFrame(rows, columns=columns)


def describe(row: pd.Series | dict, unit: str = "pts") -> str:
    """One sentence for a row of `compare` or `random_effects`: the difference, its unadjusted and family-wise
    intervals, the paper's effect and the verdict (a row not decided / not tested gets its mean, n and reason only)."""
    r = dict(row)
    paper = _number(r.get("paper"))
    paper = f", paper {paper:+.1f}" if paper is not None else ""
    word = str(r["verdict"])
    kind = verdict_kind(word)
    shout = kind.upper() + word[len(kind):]
    if kind in HELD:
        return f"{r['comparison']} = {r['mean']:+.2f} {unit} (n = {r['n']}){paper}: {shout}"
    fw = (f"; family-wise [{r['low_fw']:+.2f}, {r['high_fw']:+.2f}] ({r.get('fw_method', 'Bonferroni')})"
          if "low_fw" in r else "")
    if _number(r.get("se")) is not None:  # a row of random_effects
        return (f"{r['comparison']} = {r['mean']:+.2f} {unit} [{r['low']:+.2f}, {r['high']:+.2f}]{fw}{paper}: "
                f"{shout} (random effects over k = {r['k']:.0f} settings: {r['settings']}; se {r['se']:.2f}, "
                f"tau² = {r['tau2']:.2f}, I² = {r['i2']:.0%}, z p = {r['p_t']:.3f}, "
                f"Holm p = {r.get('p_holm', float('nan')):.3f})")
    tail = (f"; effects under {r['mde']:.1f} {unit} are undetectable here"
            if kind == "inconclusive" and r.get("seeds_to_decide", -1) <= 0 else "")
    return (f"{r['comparison']} = {r['mean']:+.2f} {unit} [{r['low']:+.2f}, {r['high']:+.2f}]{fw}{paper}: {shout} "
            f"(n = {r['n']}, wins {r['wins']}/{r['n']}, t p = {r['p_t']:.3f}, "
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
