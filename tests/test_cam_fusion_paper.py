"""Notebook 05's claims: the instruments they rest on, and one family of classifier and image-quality verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from latentlab import gates, stats
from latentlab.papers import cam_fusion as paper

INSTRUMENTS = ("autoencoder_kl", "stage1", "denoiser", "feature_ae", "fused", "refined", "classifier")


def _results(n_seeds: int = 5) -> pd.DataFrame:
    """Every classifier arm with tail_ap, ap, balanced_accuracy, single_class; cam-fusion quality rows at 0, 3 and
    20 steps. cam-fusion is 0.02 above every other arm plus seed noise; refinement raises the Frechet distance."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(n_seeds):
        for arm in ("none", "oversample", "reweight", "reweight-tail", "shuffled-mask", "random-mask", "random-partner",
                    "cam-fusion", "cam-fusion+reweight", "cam-fusion+refine"):
            for metric in paper.METRICS:
                value = 0.7 + (0.02 if arm.startswith("cam-fusion") else 0.0) + 0.01 * rng.standard_normal()
                rows.append({"dataset": "d", "arm": arm, "seed": seed, "metric": metric, "value": value})
            rows.append({"dataset": "d", "arm": arm, "seed": seed, "metric": "single_class", "value": 0.0})
        for steps in (0, 3, 20):
            rows.append({"dataset": "d", "arm": "cam-fusion", "seed": seed, "metric": "frechet",
                         "value": 100 + 2 * steps + rng.standard_normal(), "refine_steps": steps})
            rows.append({"dataset": "d", "arm": "cam-fusion", "seed": seed, "metric": "frechet_ae",
                         "value": 10 + 0.5 * steps + rng.standard_normal(), "refine_steps": steps})
            rows.append({"dataset": "d", "arm": "cam-fusion", "seed": seed, "metric": "tail_fidelity",
                         "value": 0.5 - 0.01 * steps + 0.01 * rng.standard_normal(), "refine_steps": steps})
    return pd.DataFrame(rows)


def _instruments(failed: tuple[str, ...] = (), missing: tuple[str, ...] = ()) -> pd.DataFrame:
    """One gated row per instrument on dataset d; those in `failed` fail, those in `missing` have no row."""
    return gates.table([gates.row(i, "d", 0, "some_check", 1.0, threshold=0.5, passed=i not in failed)
                        for i in INSTRUMENTS if i not in missing])


def test_every_claim_names_the_instruments_of_the_images_it_uses():
    for c in paper.CLAIMS:
        assert set(paper.FUSED) <= set(c.instruments) and "classifier" in c.instruments
        assert ("denoiser" in c.instruments) == ("refine" in c.a)  # C5 alone uses refined images
        assert not {"fused", "refined"} & set(c.instruments)  # the method's own output checks are no instrument
    for c in paper.quality_claims(3, 20):
        assert c.instruments == (*paper.REFINED, "feature_ae") and c.direction == -1
    assert [c.b for c in paper.CLAIMS[2:5]] == ["shuffled-mask", "random-mask", "random-partner"]


def test_all_claims_form_one_family_and_pass_gates_decide():
    v = paper.verdicts(_results(), 3, 20, _instruments())
    assert len(v) == 8 * 3 + 2 * 3 and v.attrs["family"] == len(v)  # every row decided, one Bonferroni m
    assert not v["verdict"].str.startswith("not ").any()
    # the family-wise interval of a quality row is the t-interval at 1 - 0.05 / m, recomputed with scipy
    r = v[(v["metric"] == "frechet") & (v["comparison"] == "3 steps − 0 steps")].iloc[0]
    low, high = scipy_stats.t.interval(1 - 0.05 / len(v), r["n"] - 1, loc=r["mean"], scale=r["sd"] / np.sqrt(r["n"]))
    assert (r["low_fw"], r["high_fw"]) == (pytest.approx(low), pytest.approx(high))
    assert r["verdict"] == "reversed"  # refinement raised the distance (claimed: lowered it)


def test_a_failed_gate_leaves_the_claims_that_rest_on_it_untested():
    v = paper.verdicts(_results(), 3, 20, _instruments(failed=("denoiser",)))
    uses_refined = v["comparison"].str.contains("steps|refine")
    assert (v.loc[uses_refined, "verdict"] == "not tested: denoiser/some_check failed").all()
    assert not v.loc[~uses_refined, "verdict"].str.startswith("not ").any()
    assert v.attrs["family"] == (~uses_refined).sum()  # untested rows leave the family
    stage1 = paper.verdicts(_results(), 3, 20, _instruments(failed=("stage1",)))
    assert stage1["verdict"].str.startswith("not tested: stage1/some_check failed").all()
    fused = paper.verdicts(_results(), 3, 20, _instruments(failed=("fused", "refined")))  # outputs, no instrument
    assert not fused["verdict"].str.startswith("not ").any()


def test_a_claim_whose_gate_was_not_run_reads_not_measured():
    v = paper.verdicts(_results(), 3, 20, _instruments(missing=("classifier",)))
    classifier = v["metric"].isin(paper.METRICS)
    assert (v.loc[classifier, "verdict"] == "not tested: classifier not measured").all()
    assert not v.loc[~classifier, "verdict"].str.startswith("not ").any()  # the quality claims need no classifier


def test_two_seeds_give_no_verdict():
    v = paper.verdicts(_results(n_seeds=2), 3, 20, _instruments())
    assert v["verdict"].map(stats.verdict_kind).eq("not decided").all()



def test_quality_verdicts_test_the_configured_refinement_mode_alone():
    r = _results()
    other = r[r["metric"].isin(paper.QUALITY)].assign(refine_mode="sdedit")
    other.loc[other["metric"] == "frechet", "value"] -= 50 * other["refine_steps"]  # sdedit: much lower distances
    both = pd.concat([r.assign(refine_mode="official"), other], ignore_index=True)
    official = paper.quality_verdicts(both, 3, 20, _instruments(), mode="official")
    pd.testing.assert_frame_equal(official, paper.quality_verdicts(r, 3, 20, _instruments()))
    sdedit = paper.quality_verdicts(both, 3, 20, _instruments(), mode="sdedit")
    assert (sdedit.loc[sdedit["metric"] == "frechet", "mean"] < 0).all()


def test_scale_check_compares_the_headline_claims_on_the_shared_seeds():
    r = _results()
    bigger = r.copy()
    bigger.loc[bigger["arm"] == "cam-fusion", "value"] += 0.05  # 5 more points for cam-fusion at 4x
    check = paper.scale_check(r, bigger[bigger["seed"] < 3])
    assert set(check["comparison"]) == {c.name for c in paper.HEADLINE}
    assert set(check["metric"]) == {"tail_recall", "tail_ap"} and (check["n"] == 3).all()
    assert check["change"].to_numpy() == pytest.approx(5.0) and check["moved"].all()
    assert paper.scale_check(r, r.iloc[:0]).empty
