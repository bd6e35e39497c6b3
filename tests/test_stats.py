"""Paired comparisons and verdicts against scipy and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from latentlab import stats

A = np.array([71.0, 74.5, 69.0, 80.0, 77.5, 73.0])
B = np.array([70.0, 72.0, 69.5, 76.0, 75.0, 72.5])


def _bonferroni(d, m: int, alpha: float = 0.05) -> tuple[float, float]:
    """The paired t-interval at confidence 1 - alpha / m, by hand."""
    d = np.asarray(d, float)
    half = st.t.ppf(1 - alpha / (2 * m), len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def _first_n_with_power(effect: float, sd: float, alpha: float, power: float = 0.8) -> int:
    """Brute force: the smallest n whose two-sided paired t-test has the power (noncentral t, written out)."""
    for n in range(2, 1000):
        crit, ncp = st.t.ppf(1 - alpha / 2, n - 1), abs(effect) * np.sqrt(n) / sd
        if st.nct.sf(crit, n - 1, ncp) + st.nct.cdf(-crit, n - 1, ncp) >= power:
            return n
    raise AssertionError("no n below 1000")


# --------------------------------------------------------------------------- one comparison


def test_paired_matches_scipy():
    r = stats.paired(A, B)
    d = A - B
    test = st.ttest_rel(A, B)
    low, high = test.confidence_interval(0.95)
    assert r["n"] == 6 and r["mean"] == pytest.approx(d.mean()) and r["sd"] == pytest.approx(d.std(ddof=1))
    assert (r["low"], r["high"]) == pytest.approx((low, high))
    assert (r["low_fw"], r["high_fw"]) == pytest.approx((low, high))  # a family of one
    assert r["fw_method"] == "Bonferroni, m = 1"
    assert r["p_t"] == pytest.approx(test.pvalue) and r["p_wilcoxon"] == pytest.approx(st.wilcoxon(d).pvalue)
    assert (r["wins"], r["losses"]) == (5, 1)


def test_paired_interval_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.29099; t(0.975, 3) = 3.182446; half-width 3.182446 * 1.29099 / 2
    r = stats.paired([1, 2, 3, 4], [0, 0, 0, 0])
    assert r["mean"] == 2.5 and r["sd"] == pytest.approx(1.290994, abs=1e-6)
    assert (r["low"], r["high"]) == pytest.approx((0.445739, 4.554261), abs=1e-5)
    assert r["verdict"] == "supported"


def test_paired_family_widens_the_deciding_interval():
    # the same d at m = 5: t(1 - 0.05 / 10, 3) = 5.840909; half-width 5.840909 * 1.290994 / 2 = 3.770291 spans 0
    r = stats.paired([1, 2, 3, 4], [0, 0, 0, 0], family=5)
    assert (r["low"], r["high"]) == pytest.approx((0.445739, 4.554261), abs=1e-5)  # the unadjusted one stays
    assert (r["low_fw"], r["high_fw"]) == pytest.approx((2.5 - 3.770291, 2.5 + 3.770291), abs=1e-5)
    assert (r["low_fw"], r["high_fw"]) == pytest.approx(_bonferroni([1, 2, 3, 4], 5))
    assert r["verdict"] == "inconclusive" and r["fw_method"] == "Bonferroni, m = 5"


def test_paired_drops_missing_pairs_and_needs_two():
    r = stats.paired([1.0, np.nan, 3.0, 2.0], [0.0, 1.0, 1.0, np.nan])
    assert r["n"] == 2 and r["mean"] == pytest.approx(1.5)
    assert r["verdict"] == "not decided: fewer than 3 seeds (n = 2)"
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.paired([1.0], [0.0])
    with pytest.raises(ValueError, match="equal length"):
        stats.paired([1.0, 2.0], [0.0])


def test_zero_spread_is_not_decided():
    r = stats.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0], paper=8.3)
    assert r["low"] == r["high"] == 1.0 and r["verdict"] == "not decided: zero spread of the differences"
    assert r["vs_paper"] == "" and r["seeds_to_decide"] == -1
    tie = stats.paired([1.0, 2.0], [1.0, 2.0])  # n = 2 comes first
    assert tie["verdict"] == "not decided: fewer than 3 seeds (n = 2)" and tie["p_wilcoxon"] == 1.0


@pytest.mark.parametrize("low, high, paper, direction, word", [
    (0.5, 3.0, 8.3, 1, "supported, smaller than the paper's"),   # above 0, wholly below +8.3
    (6.0, 10.0, 8.3, 1, "supported, paper size"),                # contains +8.3
    (8.3, 10.0, 8.3, 1, "supported, paper size"),                # the paper's effect on the edge is inside
    (9.0, 12.0, 8.3, 1, "supported, larger than the paper's"),   # wholly above +8.3
    (0.5, 3.0, None, 1, "supported"),                            # no paper number: no magnitude
    (0.5, 3.0, 0.0, 1, "supported, larger than the paper's"),    # the paper's effect is 0
    (-4.0, -0.2, 8.3, 1, "reversed"),                            # below 0
    (-1.0, 2.0, 8.3, 1, "paper-size effect excluded"),           # spans 0, wholly below the paper's +8.3
    (0.0, 2.0, 8.3, 1, "paper-size effect excluded"),            # touching 0 is spanning it
    (-1.0, 9.0, 8.3, 1, "inconclusive"),                         # spans 0, contains +8.3 (no sd: no N)
    (-1.0, 2.0, None, 1, "inconclusive"),                        # spans 0, no paper number
    (-28.4, -10.5, -42.1, -1, "supported, smaller than the paper's"),  # the example: a third of the paper's
    (-30.0, -5.0, -24.0, -1, "supported, paper size"),           # claim "far below": an interval below 0 supports it
    (-40.0, -30.0, -24.0, -1, "supported, larger than the paper's"),
    (2.0, 6.0, -24.0, -1, "reversed"),
    (-10.0, 3.0, -24.0, -1, "paper-size effect excluded"),       # spans 0, never reaches -24
    (-30.0, 3.0, -24.0, -1, "inconclusive"),
    (0.5, 3.0, 0.0, -1, "reversed"),                             # paper 0 goes with either direction
])
def test_every_verdict_branch(low, high, paper, direction, word):
    assert stats.verdict(low, high, paper, direction) == word


def test_not_decided_and_not_tested_come_before_the_interval():
    good = dict(low=1.0, high=3.0, paper=2.0, direction=1)
    assert stats.verdict(**good) == "supported, paper size"
    assert stats.verdict(**good, failed="gin/fd_gap_closed failed") == "not tested: gin/fd_gap_closed failed"
    assert stats.verdict(**good, degenerate=True) == "not decided: every classifier predicted one class"
    assert stats.verdict(**good, n=2, sd=1.0) == "not decided: fewer than 3 seeds (n = 2)"
    assert stats.verdict(**good, n=3, sd=0.0) == "not decided: zero spread of the differences"
    assert stats.verdict(**good, n=3, sd=1.0) == "supported, paper size"
    assert stats.verdict(**good, n=2, degenerate=True, failed="x/y failed") == "not tested: x/y failed"
    assert stats.verdict(float("nan"), 1.0) == "not decided: no finite interval"


def test_inconclusive_names_the_seeds_at_the_familys_level():
    alpha = 0.05 / 4
    n = _first_n_with_power(8.3, 6.0, alpha)
    assert stats.verdict(-1.0, 9.0, 8.3, 1, n=6, sd=6.0, alpha=alpha) == f"inconclusive ({n} seeds would decide)"
    # a negative claim: the paper's magnitude on the claimed side
    n = _first_n_with_power(24.0, 20.0, 0.05)
    assert stats.verdict(-30.0, 3.0, -24.0, -1, n=6, sd=20.0) == f"inconclusive ({n} seeds would decide)"
    assert stats.seeds_to_detect(-24.0, 20.0) == stats.seeds_to_detect(24.0, 20.0) == n


def test_direction_against_the_papers_sign_raises():
    with pytest.raises(ValueError, match="disagrees"):
        stats.verdict(1.0, 2.0, paper=-3.0, direction=1)
    with pytest.raises(ValueError, match=r"\+1 or -1"):
        stats.verdict(1.0, 2.0, direction=0)
    with pytest.raises(ValueError, match="disagrees"):
        stats.Claim("a", "b", -3.0, direction=1)
    with pytest.raises(ValueError, match="'y'"):  # every per-dataset effect is checked
        stats.Claim("a", "b", {"x": 2.0, "y": -1.0}, direction=1)
    with pytest.raises(ValueError, match="disagrees"):
        stats.paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.5], paper=-3.0, direction=1)
    assert stats.Claim("a", "b", 0.0, direction=-1).sign() == -1  # paper 0 goes with either
    assert stats.Claim("a", "b", {"x": -2.0, "y": 3.0}).sign("x") == -1  # no direction: each dataset's sign
    assert stats.Claim("a", "b", instruments="gin").instruments == ("gin",)


def test_wins_count_the_claimed_direction():
    # claim "a is below b" (paper -24): d = -30, -27, -32, -27.5, +5: four seeds on the claimed side
    r = stats.paired([50.0, 52.0, 49.0, 51.0, 60.0], [80.0, 79.0, 81.0, 78.5, 55.0], paper=-24.0)
    assert (r["wins"], r["losses"]) == (4, 1) and r["direction"] == -1
    r = stats.paired([50.0, 52.0, 49.0, 51.0, 60.0], [80.0, 79.0, 81.0, 78.5, 55.0], direction=-1)
    assert (r["wins"], r["losses"]) == (4, 1)


def test_negative_paper_effect_sets_the_claimed_side():
    a, b = np.array([50.0, 52.0, 49.0, 51.0]), np.array([80.0, 79.0, 81.0, 78.5])
    r = stats.paired(a, b, paper=-24.0)
    low, high = st.ttest_rel(a, b).confidence_interval(0.95)  # [-31.8, -26.9]: wholly beyond -24
    assert high < -24.0 and (r["low"], r["high"]) == pytest.approx((low, high))
    assert r["verdict"] == "supported, larger than the paper's" and r["vs_paper"] == "larger than the paper's"


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.5, np.nan, 0.9])
    assert np.isnan(out[1]) and out[0] == pytest.approx(1.0) and out[2] == pytest.approx(1.0)


def test_minimum_detectable_effect_has_the_asked_power():
    mde = stats.minimum_detectable_effect(sd=3.0, n=6)
    assert stats.power_paired(mde, 3.0, 6) == pytest.approx(0.8, abs=1e-6)
    # large n: the normal approximation (z_.975 + z_.8) sd / sqrt(n)
    big = stats.minimum_detectable_effect(sd=1.0, n=400)
    assert big == pytest.approx((st.norm.ppf(0.975) + st.norm.ppf(0.8)) / 20, rel=0.01)
    assert stats.minimum_detectable_effect(1.0, 12) < stats.minimum_detectable_effect(1.0, 6)


def test_seeds_to_detect_is_the_first_n_with_enough_power():
    n = stats.seeds_to_detect(2.0, sd=3.0)
    assert stats.power_paired(2.0, 3.0, n) >= 0.8 > stats.power_paired(2.0, 3.0, n - 1)
    assert n == _first_n_with_power(2.0, 3.0, 0.05)


@pytest.mark.parametrize("effect, sd, alpha", [(2.0, 3.0, 0.05), (1.0, 6.0, 0.05), (8.3, 6.0, 0.05 / 24),
                                                (5.0, 0.5, 0.05), (-24.0, 20.0, 0.01)])
def test_seeds_to_detect_matches_the_linear_search(effect, sd, alpha):
    assert stats.seeds_to_detect(effect, sd, alpha) == _first_n_with_power(effect, sd, alpha)


def test_seeds_to_detect_stops_at_its_cap():
    assert stats.seeds_to_detect(0.2, 20.0) == stats.MAX_SEEDS == 10_000
    assert stats.verdict(-30.0, 30.0, 0.2, n=6, sd=20.0) == "inconclusive (10000+ seeds would decide)"


def test_inconclusive_says_how_many_seeds_would_decide():
    r = stats.paired([3.0, -2.0, 4.0, 0.5], [0.0, 0.0, 0.0, 0.0], paper=3.0)
    n = _first_n_with_power(3.0, r["sd"], 0.05)
    assert r["verdict"] == f"inconclusive ({n} seeds would decide)" and r["seeds_to_decide"] == n
    assert "INCONCLUSIVE (" in stats.describe(r | {"comparison": "a − b", "p_holm": 1.0})


def test_verdict_kind_is_the_head():
    assert stats.verdict_kind("supported, paper size") == "supported"
    assert stats.verdict_kind("inconclusive (7 seeds would decide)") == "inconclusive"
    assert stats.verdict_kind("not tested: gin/fd failed") == "not tested"
    with pytest.raises(ValueError, match="Not a verdict"):
        stats.verdict_kind("SUPPORTED")


# --------------------------------------------------------------------------- a notebook's family


def _tidy() -> pd.DataFrame:
    rows = []
    for ds, shift in [("mnist", 0.02), ("pneumonia", -0.01)]:
        for seed, (a, b) in enumerate(zip(A / 100, B / 100)):
            rows += [{"dataset": ds, "arm": "aisel", "seed": seed, "metric": "accuracy", "value": a + shift},
                     {"dataset": ds, "arm": "random", "seed": seed, "metric": "accuracy", "value": b},
                     {"dataset": ds, "arm": "native", "seed": seed, "metric": "accuracy", "value": b - 0.01}]
    return pd.DataFrame(rows)


def test_compare_builds_one_row_per_group_and_claim_with_holm():
    table = stats.compare(_tidy(), [("aisel", "random", 8.3), stats.Claim("random", "native", {"mnist": 7.8})])
    assert list(table["dataset"]) == ["mnist", "mnist", "pneumonia", "pneumonia"]
    assert list(table["comparison"]) == ["aisel − random", "random − native"] * 2
    first = stats.paired((A / 100 + 0.02) * 100, B, paper=8.3)
    assert table.loc[0, "mean"] == pytest.approx(first["mean"]) and table.loc[0, "high"] == pytest.approx(first["high"])
    assert table.loc[1, "paper"] == 7.8 and np.isnan(table.loc[3, "paper"])  # no paper number for pneumonia
    # random − native is +1.0 at every seed: zero spread, not decided, outside the family of the two other rows
    assert list(table["verdict"][[1, 3]]) == ["not decided: zero spread of the differences"] * 2
    assert table.loc[1, "mean"] == pytest.approx(1.0)
    np.testing.assert_allclose(table["p_holm"][[0, 2]], stats.holm(table["p_t"][[0, 2]]))
    assert table["p_holm"][[1, 3]].isna().all()
    assert set(table["fw_method"]) == {"Bonferroni, m = 2"} and table.attrs["family"] == 2


def _family() -> pd.DataFrame:
    """Six seeds of one dataset; vs z: a is +2.86 se (unadjusted supported, family-wise not), b far above, c + 1."""
    d1 = np.array([1.0, 3.0, 0.0, 2.5, 4.0, 0.5])
    d2 = np.array([5.0, 6.0, 5.5, 7.0, 6.5, 6.0])
    rows = []
    for seed in range(6):
        z = 0.5 + 0.01 * seed
        for arm, v in (("z", z), ("a", z + d1[seed] / 100), ("b", z + d2[seed] / 100), ("c", z + 0.01)):
            rows.append({"dataset": "ds", "arm": arm, "seed": seed, "metric": "accuracy", "value": v})
    return pd.DataFrame(rows), d1, d2


def test_compare_verdicts_come_from_the_bonferroni_interval_over_the_decided_rows():
    df, d1, d2 = _family()
    table = stats.compare(df, [stats.Claim("a", "z", 3.0), stats.Claim("b", "z", 2.0), stats.Claim("c", "z", 8.3)])
    a, b, c = (table.iloc[i] for i in range(3))
    assert c["verdict"] == "not decided: zero spread of the differences"  # not in the family: m = 2
    assert table.attrs["fw_method"] == "Bonferroni, m = 2" and set(table["fw_method"]) == {"Bonferroni, m = 2"}
    assert (a["low_fw"], a["high_fw"]) == pytest.approx(_bonferroni(d1, 2))
    assert (b["low_fw"], b["high_fw"]) == pytest.approx(_bonferroni(d2, 2))
    unadjusted = st.ttest_1samp(d1, 0.0).confidence_interval(0.95)
    assert (a["low"], a["high"]) == pytest.approx(unadjusted)
    assert a["low"] > 0 > a["low_fw"]  # the premise: at 95 % alone this row would read "supported"
    n = _first_n_with_power(3.0, d1.std(ddof=1), 0.025)  # [-0.19, +3.86] contains +3
    assert a["verdict"] == f"inconclusive ({n} seeds would decide)" and a["seeds_to_decide"] == n
    assert b["verdict"] == "supported, larger than the paper's"  # [+5.09, +6.91] family-wise, paper +2
    # family = 10 rows of a notebook: the width at m = 10
    wide = stats.compare(df, [stats.Claim("a", "z", 4.0)], family=10)
    assert (wide.loc[0, "low_fw"], wide.loc[0, "high_fw"]) == pytest.approx(_bonferroni(d1, 10))
    assert wide.loc[0, "fw_method"] == "Bonferroni, m = 10"
    with pytest.raises(ValueError, match="smaller than the 2 decided rows"):
        stats.compare(df, [("a", "z"), ("b", "z")], family=1)


def test_one_family_joins_tables():
    df, d1, d2 = _family()
    auc = df.assign(metric="auc")
    joined = stats.one_family(stats.compare(df, [("a", "z"), ("c", "z")]), stats.compare(auc, [("b", "z")],
                                                                                            metric="auc"))
    assert list(joined["comparison"]) == ["a − z", "c − z", "b − z"] and joined.attrs["family"] == 2
    assert (joined.loc[0, "low_fw"], joined.loc[0, "high_fw"]) == pytest.approx(_bonferroni(d1, 2))
    assert joined.loc[0, "verdict"] == "inconclusive" and joined.loc[1, "verdict"].startswith("not decided")
    assert joined.loc[2, "verdict"] == "supported"
    np.testing.assert_allclose(joined["p_holm"][[0, 2]], stats.holm(joined["p_t"][[0, 2]]))


def test_every_difference_zero_at_two_seeds_is_not_decided():
    # the smoke profile: two seeds, every classifier single-class, so both arms score the same
    rows = [{"dataset": "mnist", "arm": arm, "seed": s, "metric": "accuracy", "value": 0.1}
            for arm in ("aisel", "random") for s in (0, 1)]
    table = stats.compare(pd.DataFrame(rows), [("aisel", "random", 8.3)])
    word = table.loc[0, "verdict"]
    assert word.startswith("not decided:") and table.attrs["family"] == 0
    text = stats.describe(table.iloc[0])
    assert "NOT DECIDED" in text and "EXCLUDED" not in text and "[" not in text
    assert not any(w in text for w in ("smaller", "larger", "paper size"))


def test_degenerate_runs_are_not_decided():
    df = _tidy()
    flags = df.assign(metric="single_class", value=1.0)
    both = stats.compare(pd.concat([df, flags]), [("aisel", "random", 8.3)])  # read from results
    assert list(both["verdict"]) == ["not decided: every classifier predicted one class"] * 2
    one_good = flags.assign(value=np.where((flags.arm == "random") & (flags.seed == 3), 0.0, 1.0))
    some = stats.compare(pd.concat([df, one_good]), [("aisel", "random", 8.3)])
    assert not some["verdict"].str.startswith("not").any() and some.attrs["family"] == 2
    series = (flags.assign(value=flags["dataset"] == "mnist").set_index(["dataset", "arm", "seed"])["value"])
    given = stats.compare(df, [("aisel", "random", 8.3)], degenerate=series)
    assert given.loc[0, "verdict"].startswith("not decided") and not given.loc[1, "verdict"].startswith("not")
    off = stats.compare(pd.concat([df, flags]), [("aisel", "random", 8.3)], degenerate=False)
    assert not off["verdict"].str.startswith("not").any()


def _instruments(rows) -> pd.DataFrame:
    return pd.DataFrame([{"instrument": i, "dataset": d, "seed": s, "check": c, "value": 0.5, "threshold": 0.7,
                          "passed": p} for i, d, s, c, p in rows])


def test_failed_gates_make_claims_not_tested():
    df = _tidy()
    gates = _instruments([("gin", "mnist", 0, "fd_gap_closed", True), ("gin", "mnist", 1, "fd_gap_closed", False),
                          ("gin", "pneumonia", 0, "fd_gap_closed", True), ("oracle", np.nan, 0, "accuracy", True)])
    claims = [stats.Claim("aisel", "random", 8.3, instruments=("gin", "oracle")), stats.Claim("aisel", "native")]
    table = stats.compare(df, claims, instruments=gates)
    assert table.loc[0, "verdict"] == "not tested: gin/fd_gap_closed failed"  # mnist: seed 1's gate failed
    assert not table.loc[[1, 2, 3], "verdict"].str.startswith("not").any()  # pneumonia passed; claim 2 names none
    assert table.attrs["family"] == 3 and np.isnan(table.loc[0, "p_holm"])
    assert "NOT TESTED: gin/fd_gap_closed failed" in stats.describe(table.iloc[0])
    everywhere = _instruments([("gin", "all", 0, "coverage", "False")])  # as read back from a CSV
    table = stats.compare(df, claims[:1], instruments=everywhere)
    assert list(table["verdict"]) == ["not tested: gin/coverage failed, oracle not measured"] * 2
    with pytest.raises(ValueError, match="instruments lacks"):
        stats.compare(df, claims, instruments=gates.drop(columns="passed"))


def test_pooled_averages_settings_within_each_seed():
    # two settings share each seed's model: a seed-level shift moves both; the seed is the unit
    rng = np.random.default_rng(0)
    shift, rows = rng.normal(0, 3, 6), []
    for setting, gain in (("pneu@1%", 2.0), ("pneu@10%", 1.0)):
        for seed in range(6):
            base = 0.7 + 0.01 * seed
            a = base + (gain + shift[seed] + rng.normal(0, 0.5)) / 100
            rows += [{"dataset": setting, "arm": "tsynd", "seed": seed, "metric": "accuracy", "value": a},
                     {"dataset": setting, "arm": "baseline", "seed": seed, "metric": "accuracy", "value": base}]
    rows.append({"dataset": "pneu@1%", "arm": "tsynd", "seed": 6, "metric": "accuracy", "value": 0.9})
    rows.append({"dataset": "pneu@1%", "arm": "baseline", "seed": 6, "metric": "accuracy", "value": 0.8})
    df = pd.DataFrame(rows)
    wide = df.pivot_table(index=["seed", "dataset"], columns="arm", values="value")
    d = ((wide["tsynd"] - wide["baseline"]) * 100).unstack("dataset").dropna()  # seed 6 lacks a setting
    per_seed = d.mean(axis=1).to_numpy()
    table = stats.pooled(df, [stats.Claim("tsynd", "baseline", 2.0)], over="dataset")
    r = table.iloc[0]
    assert r["n"] == 6 and r["dataset"] == "pooled" and r["settings"] == "pneu@1%, pneu@10%"
    assert r["mean"] == pytest.approx(per_seed.mean()) and r["sd"] == pytest.approx(per_seed.std(ddof=1))
    assert (r["low"], r["high"]) == pytest.approx(st.ttest_1samp(per_seed, 0.0).confidence_interval(0.95))
    assert (r["low"], r["high"]) == pytest.approx(st.t.interval(0.95, 5, per_seed.mean(), st.sem(per_seed)))
    assert r["p_t"] == pytest.approx(st.ttest_1samp(per_seed, 0.0).pvalue)
    gates = _instruments([("autoencoder", "pneu@10%", 0, "label_ratio", False)])
    untested = stats.pooled(df, [stats.Claim("tsynd", "baseline", instruments="autoencoder")], instruments=gates)
    assert untested.loc[0, "verdict"] == "not tested: autoencoder/label_ratio failed"
    with pytest.raises(ValueError, match="cannot also be"):
        stats.pooled(df, [("tsynd", "baseline")], by="dataset")


def test_describe_prints_both_intervals_and_the_verdict():
    df, d1, d2 = _family()
    table = stats.compare(df, [stats.Claim("a", "z", 4.0), stats.Claim("b", "z", 8.0)])
    text = stats.describe(table.iloc[1])
    low, high = st.ttest_1samp(d2, 0.0).confidence_interval(0.95)
    fw = _bonferroni(d2, 2)
    assert f"[{low:+.2f}, {high:+.2f}]" in text and f"family-wise [{fw[0]:+.2f}, {fw[1]:+.2f}]" in text
    assert "(Bonferroni, m = 2)" in text and "SUPPORTED, smaller than the paper's" in text
    assert "wins 6/6" in text


def test_compare_errors_name_the_problem():
    with pytest.raises(ValueError, match="metric 'auc'"):
        stats.compare(_tidy(), [("aisel", "random")], metric="auc")
    with pytest.raises(ValueError, match="No claim matched"):
        stats.compare(_tidy(), [("x", "y")])
    with pytest.raises(ValueError, match="Claim"):
        stats.compare(_tidy(), ["aisel"])


def test_summary_and_degenerate_tables():
    df = _tidy()
    table = stats.summary_table(df, ["accuracy"], arms=["native", "aisel"])
    assert list(table.columns) == ["native", "aisel"]
    assert table.loc[("mnist", "accuracy"), "aisel"] == f"{A.mean() + 2:.1f} ± {A.std(ddof=1):.1f}"
    flags = df[df.metric == "accuracy"].assign(metric="single_class", value=lambda d: (d.seed == 0) * 1.0)
    counts = stats.degenerate_runs(flags, arms=["aisel", "random"])
    assert counts.loc["mnist", "aisel"] == "1/6" and list(counts.columns) == ["aisel", "random"]


def test_a_claim_with_many_failed_gates_names_the_first_two_and_counts_the_rest():
    results = pd.DataFrame([{"dataset": "d", "arm": arm, "seed": s, "metric": "accuracy", "value": v + s / 10}
                            for s in range(4) for arm, v in (("a", 0.6), ("b", 0.5))])
    instruments = pd.DataFrame([{"instrument": "vae", "dataset": "d", "seed": 0, "check": f"c{i}", "value": 0.0,
                                 "threshold": 1.0, "passed": False} for i in range(5)])
    table = stats.compare(results, [stats.Claim("a", "b", instruments=("vae",))], instruments=instruments)
    assert table["verdict"].iloc[0] == "not tested: vae/c0 failed, vae/c1 failed, 3 more"


def test_equivalence_claims_read_tost_from_the_interval_and_agree_with_statsmodels():
    from statsmodels.stats.weightstats import ttost_paired
    rng = np.random.default_rng(0)
    b = rng.normal(80, 2, 8)
    for shift, margin in ((0.3, 3.0), (0.3, 0.5), (6.0, 3.0), (-6.0, 3.0), (2.0, 3.0)):
        a = b + shift + rng.normal(0, 1, 8)
        r = stats.paired(a, b, margin=margin, confidence=0.90)  # the 90 % interval is the TOST at 5 %
        p_tost = ttost_paired(a, b, -margin, margin)[0]
        kind = stats.verdict_kind(r["verdict"])
        assert (kind == "equivalent") == (p_tost < 0.05), (shift, margin, r["verdict"], p_tost)
        d = a - b
        if kind == "not equivalent":
            assert abs(d.mean()) > margin
    assert stats.verdict(-1.0, 2.0, margin=3) == "equivalent (within ±3)"
    assert stats.verdict(3.5, 6.0, margin=3) == "not equivalent (beyond ±3)"
    assert stats.verdict(-4.0, -3.0, margin=3) == "not equivalent (beyond ±3)"
    assert stats.verdict(-1.0, 4.0, margin=3) == "inconclusive (equivalence, ±3)"
    assert stats.verdict(-1.0, 1.0, margin=3, n=2).startswith("not decided")
    with pytest.raises(ValueError, match="positive"):
        stats.verdict(-1.0, 1.0, margin=0)


def test_an_equivalence_claim_stays_in_the_family_and_is_named_with_its_margin():
    rows = [{"dataset": "d", "arm": arm, "seed": s, "metric": "accuracy", "value": v}
            for s in range(6) for arm, v in (("a", 0.80 + 0.01 * s), ("b", 0.81 + 0.01 * s + 0.002 * (s % 2)),
                                            ("c", 0.70 + 0.012 * s))]
    table = stats.compare(pd.DataFrame(rows), [stats.Claim("a", "b", margin=3.0), stats.Claim("a", "c")])
    eq = table.set_index("comparison").loc["a − b (within ±3)"]
    assert stats.verdict_kind(eq["verdict"]) == "equivalent" and table.attrs["family"] == 2
    assert -3 < eq["low_fw"] and eq["high_fw"] < 3


def test_scale_check_compares_the_same_seeds_and_calls_a_change_beyond_the_seed_spread_a_move():
    def table(diffs, seeds):
        return pd.DataFrame([{"dataset": "d", "arm": arm, "seed": s, "metric": "accuracy", "value": v}
                             for s, dd in zip(seeds, diffs) for arm, v in (("a", 0.5 + dd), ("b", 0.5))])
    base = table([0.01, 0.03, 0.02, 0.40], [0, 1, 2, 3])  # seed 3 is not in the scaled run and must not count
    out = stats.scale_check(base, table([0.06, 0.07, 0.08], [0, 1, 2]), [("a", "b")]).iloc[0]
    assert out["n"] == 3 and out["mean_base"] == pytest.approx(2.0) and out["mean_scaled"] == pytest.approx(7.0)
    assert out["change"] == pytest.approx(5.0) and out["seed_sd"] == pytest.approx(1.0) and out["moved"]
    still = stats.scale_check(base, table([0.02, 0.03, 0.02], [0, 1, 2]), [("a", "b")]).iloc[0]
    assert still["change"] == pytest.approx(1 / 3) and not still["moved"]
    assert stats.scale_check(base, pd.DataFrame(), [("a", "b")]).empty  # a profile without a scale check
    with pytest.raises(ValueError, match="shared seeds"):
        stats.scale_check(base, table([0.06], [0]), [("a", "b")])


# --------------------------------------------------------------------------- random effects across settings

HETERO = {"s1": [1.0, 2.0, 3.0, 2.0], "s2": [5.0, 6.0, 4.0, 5.5], "s3": [0.0, 1.0, -0.5, 1.5],
          "s4": [3.0, 3.5, 2.5, 4.0]}  # per-seed differences (points) of a - b per setting: tau² > 0
CLOSE = {"s1": [1.0, 3.0, 2.0, 4.0], "s2": [2.0, 4.0, 3.0, 2.0], "s3": [0.0, 3.0, 2.0, 4.0]}  # 0 < Q < k - 1


def _settings(diffs: dict, metric: str = "accuracy") -> pd.DataFrame:
    """A tidy results table whose arm a beats arm b by diffs[setting][seed] points (dataset = setting)."""
    rows = []
    for setting, d in diffs.items():
        for seed, x in enumerate(d):
            b = 0.5 + 0.01 * seed
            rows += [{"dataset": setting, "arm": "a", "seed": seed, "metric": metric, "value": b + x / 100},
                     {"dataset": setting, "arm": "b", "seed": seed, "metric": metric, "value": b}]
    return pd.DataFrame(rows)


def _dersimonian_laird(mean, var):
    """DerSimonian-Laird by hand: w = 1/v, Q about the fixed-effect mean, tau² = max(0, (Q - (k - 1)) / c),
    w* = 1/(v + tau²); returns the estimate, its se, tau², Q."""
    mean, var = np.asarray(mean, float), np.asarray(var, float)
    w = 1 / var
    q = (w * (mean - (w * mean).sum() / w.sum()) ** 2).sum()
    tau2 = max(0.0, (q - (len(mean) - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    w_star = 1 / (var + tau2)
    return (w_star * mean).sum() / w_star.sum(), np.sqrt(1 / w_star.sum()), tau2, q


@pytest.mark.parametrize("diffs", [HETERO, CLOSE])
def test_random_effects_is_dersimonian_laird_by_hand(diffs):
    table = stats.compare(_settings(diffs), [stats.Claim("a", "b", 3.0)])
    r = stats.random_effects(table).iloc[0]
    mean = [np.mean(d) for d in diffs.values()]
    var = [np.var(d, ddof=1) / len(d) for d in diffs.values()]
    est, se, tau2, q = _dersimonian_laird(mean, var)
    k = len(diffs)
    assert (tau2 > 0) if diffs is HETERO else (0 < q < k - 1)  # the premise: both branches of the max
    assert r["mean"] == pytest.approx(est) and r["se"] == pytest.approx(se) and r["tau2"] == pytest.approx(tau2)
    assert r["i2"] == pytest.approx(max(0.0, (q - (k - 1)) / q))
    assert (r["low"], r["high"]) == pytest.approx((est - st.norm.ppf(0.975) * se, est + st.norm.ppf(0.975) * se))
    assert r["k"] == k and r["n"] == 4 * k and r["settings"] == ", ".join(diffs) and r["paper"] == 3.0
    assert r["dataset"] == "pooled (random effects)" and r["p_t"] == pytest.approx(2 * st.norm.sf(abs(est / se)))
    assert r["seeds_to_decide"] == -1 and r["fw_method"] == "Bonferroni, m = 1"
    from statsmodels.stats.meta_analysis import combine_effects  # method= reaches the library
    pm = stats.random_effects(table, method="iterated").iloc[0]
    assert pm["tau2"] == pytest.approx(combine_effects(np.array(mean), np.array(var), method_re="iterated").tau2)


def test_random_effects_of_equal_settings_is_the_fixed_effect_estimate():
    # equal means, unequal spreads: Q = 0, tau² = 0, the estimate is the inverse-variance mean with se 1 / sqrt(sum w)
    # (statsmodels' raw DerSimonian-Laird moment estimate is negative here, and its se too small)
    diffs = {"s1": [1.0, 2.0, 3.0], "s2": [0.0, 2.0, 4.0], "s3": [1.5, 2.0, 2.5]}
    r = stats.random_effects(stats.compare(_settings(diffs), [("a", "b")])).iloc[0]
    w = np.array([3 / np.var(d, ddof=1) for d in diffs.values()])  # 3, 0.75, 12
    assert r["tau2"] == 0.0 and r["i2"] == 0.0
    assert r["mean"] == pytest.approx(2.0) and r["se"] == pytest.approx(1 / np.sqrt(w.sum()))
    same = stats.random_effects(stats.compare(_settings({s: [1.0, 2.0, 3.0] for s in "xyz"}), [("a", "b")]))
    assert same.loc[0, "tau2"] == 0.0 and same.loc[0, "mean"] == pytest.approx(2.0)
    assert same.loc[0, "se"] == pytest.approx(np.sqrt(1 / 3 / 3))  # v = 1/3 per setting, three settings


def test_a_not_tested_setting_makes_the_pooled_row_not_tested_and_not_decided_ones_are_dropped():
    gates = _instruments([("gin", s, 0, "fd_gap_closed", s != "s2") for s in HETERO])
    claim = stats.Claim("a", "b", 3.0, instruments="gin")
    table = stats.compare(_settings(HETERO), [claim], instruments=gates)
    r = stats.random_effects(table).iloc[0]
    assert r["verdict"] == "not tested: gin/fd_gap_closed failed (at s2)"
    assert r["settings"] == "s1, s3, s4" and r["k"] == 3  # the numbers pool the tested settings
    assert r["mean"] == pytest.approx(_dersimonian_laird(*zip(*[(np.mean(HETERO[s]), np.var(HETERO[s], ddof=1) / 4)
                                                                for s in ("s1", "s3", "s4")]))[0])
    joined = stats.one_family(table, stats.random_effects(table))
    assert joined.attrs["family"] == 3 and np.isnan(joined["p_holm"].iloc[-1])  # outside the family
    assert joined["verdict"].iloc[-1] == r["verdict"] and "NOT TESTED" in stats.describe(joined.iloc[-1])
    # a setting with 2 seeds is "not decided" and left out of the pooling
    short = stats.compare(_settings(HETERO | {"s5": [9.0, 9.5]}), [("a", "b")])
    assert short["verdict"].iloc[-1].startswith("not decided")
    pooled, without = (stats.random_effects(t).iloc[0] for t in (short, short[short["dataset"] != "s5"]))
    assert pooled["settings"] == "s1, s2, s3, s4" and pooled["mean"] == pytest.approx(without["mean"])
    assert not pooled["verdict"].startswith("not")


def test_one_family_gives_a_pooled_row_the_normal_interval_at_bonferroni_level():
    table = stats.compare(_settings(HETERO), [stats.Claim("a", "b", 3.0)])
    joined = stats.one_family(table, stats.random_effects(table))
    m = 5  # four decided settings and the pooled row
    assert joined.attrs["family"] == m and set(joined["fw_method"]) == {f"Bonferroni, m = {m}"}
    r = joined.iloc[-1]
    half = st.norm.ppf(1 - 0.025 / m) * r["se"]
    assert (r["low_fw"], r["high_fw"]) == pytest.approx((r["mean"] - half, r["mean"] + half))
    assert r["low_fw"] < r["low"] and r["high"] < r["high_fw"]
    assert r["verdict"] == "supported, paper size" and r["seeds_to_decide"] == -1  # [+0.41, +5.04] contains +3
    s1 = joined.iloc[0]  # per-setting rows keep the t-interval over seeds
    assert (s1["low_fw"], s1["high_fw"]) == pytest.approx(_bonferroni(HETERO["s1"], m))
    np.testing.assert_allclose(joined["p_holm"], stats.holm(joined["p_t"]))
    text = stats.describe(r)
    assert "random effects over k = 4 settings: s1, s2, s3, s4" in text and f"(Bonferroni, m = {m})" in text


def test_leave_one_out_refits_without_each_setting():
    table = stats.compare(_settings(HETERO), [stats.Claim("a", "b", 3.0)])
    loo = stats.leave_one_out(table)
    assert list(loo["left_out"]) == list(HETERO) and (loo["k"] == 3).all()
    full = stats.random_effects(table).iloc[0]
    assert full["low"] > 0  # the premise: the full interval is above 0

    def side(low, high):
        return 1 if low > 0 else -1 if high < 0 else 0

    for row in loo.itertuples():
        reduced = stats.random_effects(table[table["dataset"] != row.left_out]).iloc[0]
        assert (row.mean, row.low, row.high) == pytest.approx((reduced["mean"], reduced["low"], reduced["high"]))
        assert row.same_side == (side(row.low, row.high) == side(full["low"], full["high"]))
    assert list(loo["same_side"]) == [True, True, True, False]  # without s4 the interval reaches below 0
    two = stats.leave_one_out(table[table["dataset"].isin(["s1", "s2"])])  # pooling one setting is not pooling
    assert two.empty and list(two.columns) == ["comparison", "metric", "left_out", "k", "mean", "low", "high",
                                               "same_side"]


def test_random_effects_needs_two_decided_settings():
    short = {"s1": [1.0, 2.0, 3.0, 2.0], "s2": [1.0, 2.0], "s3": [2.0, 3.0]}  # s2, s3: 2 seeds, not decided
    both = pd.concat([_settings(HETERO), _settings(short, metric="auc")])
    table = stats.compare(both, [("a", "b")], metric=["accuracy", "auc"])
    out = stats.random_effects(table)
    assert list(out["metric"]) == ["accuracy"]  # auc has one decided setting: no pooled row
    with pytest.raises(ValueError, match="2 decided settings"):
        stats.random_effects(table[table["metric"] == "auc"])
    with pytest.raises(ValueError, match="pooled rows"):
        stats.random_effects(stats.one_family(table, out))
    opposite = stats.compare(_settings(HETERO), [stats.Claim("a", "b", {"s1": 2.0, "s2": -1.0})])
    with pytest.raises(ValueError, match="opposite sides"):
        stats.random_effects(opposite)


def test_a_claim_with_fewer_than_two_seeds_is_a_visible_not_decided_row():
    """Robustness values are NaN for constant predictors: a claim left with one seed keeps its row (not decided, or
    not tested when a gate failed) and stays out of the family instead of raising or vanishing."""
    rows = [{"dataset": "d", "arm": arm, "seed": s, "metric": "m", "value": v}
            for s in range(4) for arm, v in (("a", 0.5 + s / 10 if s else np.nan), ("b", 0.4))]
    rows += [{"dataset": "e", "arm": arm, "seed": s, "metric": "m", "value": 0.5 + (arm == "a") * (0.1 + s * s / 100)}
             for s in range(4) for arm in ("a", "b")]
    table = pd.DataFrame(rows)
    for s in (1, 2):
        table.loc[(table.dataset == "d") & (table.arm == "a") & (table.seed == s), "value"] = np.nan
    out = stats.compare(table, [("a", "b")], metric="m").set_index("dataset")
    assert out.loc["d", "n"] == 1 and out.loc["d", "verdict"] == "not decided: fewer than 3 seeds (n = 1)"
    assert out.attrs["family"] == 1 and np.isnan(out.loc["d", "p_holm"])
    assert not out.loc["e", "verdict"].startswith("not ")


def test_seed_and_test_interval_adds_the_test_sampling_error_to_the_seed_error():
    rng = np.random.default_rng(1)
    n_images = 400
    a_img, b_img = (rng.random(n_images) < 0.8).astype(float), (rng.random(n_images) < 0.7).astype(float)
    # identical seeds: no seed error; the test error is the textbook standard error of a paired mean difference
    r = stats.seed_and_test_interval(np.tile(a_img, (5, 1)), np.tile(b_img, (5, 1)), n_boot=4000)
    d = 100 * (a_img - b_img)
    assert r["se_seed"] == 0 and r["mean"] == pytest.approx(d.mean())
    assert r["se_test"] == pytest.approx(d.std(ddof=1) / np.sqrt(n_images), rel=0.08)
    half = st.t.ppf(0.975, 4) * r["se_test"]
    assert (r["low"], r["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    # seeds that differ: the interval is wider than the seed-only t-interval by the test error, in quadrature
    a = (rng.random((5, n_images)) < np.linspace(0.7, 0.9, 5)[:, None]).astype(float)
    b = (rng.random((5, n_images)) < 0.7).astype(float)
    r = stats.seed_and_test_interval(a, b)
    per_seed = 100 * (a - b).mean(1)
    low, high = stats.t_interval(per_seed.mean(), per_seed.std(ddof=1), 5)
    assert r["se_seed"] == pytest.approx(per_seed.std(ddof=1) / np.sqrt(5)) and r["se_test"] > 0
    assert r["low"] < low and r["high"] > high
    assert (r["high"] - r["low"]) / (high - low) == pytest.approx(np.hypot(r["se_seed"], r["se_test"]) / r["se_seed"])
    with pytest.raises(ValueError, match="per-image scores"):
        stats.seed_and_test_interval(a[:1], b[:1])
