"""Paired comparisons and verdicts against scipy and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from latentlab import stats

A = np.array([71.0, 74.5, 69.0, 80.0, 77.5, 73.0])
B = np.array([70.0, 72.0, 69.5, 76.0, 75.0, 72.5])


def test_paired_matches_scipy():
    r = stats.paired(A, B)
    d = A - B
    test = st.ttest_rel(A, B)
    low, high = test.confidence_interval(0.95)
    assert r["n"] == 6 and r["mean"] == pytest.approx(d.mean()) and r["sd"] == pytest.approx(d.std(ddof=1))
    assert (r["low"], r["high"]) == pytest.approx((low, high))
    assert r["p_t"] == pytest.approx(test.pvalue) and r["p_wilcoxon"] == pytest.approx(st.wilcoxon(d).pvalue)
    assert (r["wins"], r["losses"]) == (5, 1)


def test_paired_interval_by_hand():
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.29099; t(0.975, 3) = 3.182446; half-width 3.182446 * 1.29099 / 2
    r = stats.paired([1, 2, 3, 4], [0, 0, 0, 0])
    assert r["mean"] == 2.5 and r["sd"] == pytest.approx(1.290994, abs=1e-6)
    assert (r["low"], r["high"]) == pytest.approx((0.445739, 4.554261), abs=1e-5)
    assert r["verdict"] == "supported"


def test_paired_drops_missing_pairs_and_needs_two():
    r = stats.paired([1.0, np.nan, 3.0, 2.0], [0.0, 1.0, 1.0, np.nan])
    assert r["n"] == 2 and r["mean"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        stats.paired([1.0], [0.0])
    with pytest.raises(ValueError, match="equal length"):
        stats.paired([1.0, 2.0], [0.0])


def test_constant_differences_collapse_the_interval():
    r = stats.paired([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert r["low"] == r["high"] == 1.0 and r["verdict"] == "supported" and r["p_t"] == 0.0
    tie = stats.paired([1.0, 2.0], [1.0, 2.0])
    assert tie["verdict"] == "inconclusive" and tie["p_t"] == 1.0 and tie["p_wilcoxon"] == 1.0


@pytest.mark.parametrize("low, high, paper, direction, word", [
    (0.5, 3.0, 8.3, 1, "supported"),                      # above 0
    (-4.0, -0.2, 8.3, 1, "reversed"),                     # below 0
    (-1.0, 2.0, 8.3, 1, "paper-size effect excluded"),    # spans 0, wholly below the paper's +8.3
    (-1.0, 9.0, 8.3, 1, "inconclusive"),                  # spans 0, contains +8.3
    (-1.0, 2.0, None, 1, "inconclusive"),                 # spans 0, no paper number
    (-30.0, -5.0, -24.0, -1, "supported"),                # claim "far below": interval below 0 supports it
    (2.0, 6.0, -24.0, -1, "reversed"),
    (-10.0, 3.0, -24.0, -1, "paper-size effect excluded"),  # spans 0, never reaches -24
    (-30.0, 3.0, -24.0, -1, "inconclusive"),
])
def test_every_verdict_branch(low, high, paper, direction, word):
    assert stats.verdict(low, high, paper, direction) == word


def test_negative_paper_effect_sets_the_claimed_side():
    r = stats.paired([50.0, 52.0, 49.0, 51.0], [80.0, 79.0, 81.0, 78.5], paper=-24.0)
    assert r["verdict"] == "supported" and r["vs_paper"] == "larger than the paper's"


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


def test_inconclusive_says_how_many_seeds_would_decide():
    r = stats.paired([3.0, -2.0, 4.0, 0.5], [0.0, 0.0, 0.0, 0.0], paper=3.0)
    assert r["verdict"] == "inconclusive" and r["seeds_to_decide"] == stats.seeds_to_detect(3.0, r["sd"])
    assert "seeds would decide" in stats.describe(r | {"comparison": "a − b", "p_holm": 1.0})


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
    np.testing.assert_allclose(table["p_holm"], stats.holm(table["p_t"]))
    assert table.loc[1, "paper"] == 7.8 and np.isnan(table.loc[3, "paper"])  # no paper number for pneumonia
    assert table.loc[1, "verdict"] == "supported" and table.loc[1, "mean"] == pytest.approx(1.0)


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
