"""The claims ledger and the README's generated results section."""

import numpy as np
import pandas as pd
import pytest

from latentlab import ledger


def _verdicts():
    return pd.DataFrame({
        "dataset": ["mnist", "mnist", "pneumoniamnist"], "comparison": ["a − b", "a − c", "a − b"],
        "metric": ["accuracy"] * 3, "paper": [8.3, None, -2.0], "mean": [1.5, 0.0, -3.0],
        "low": [0.5, np.nan, -4.0], "high": [2.5, np.nan, -2.0], "low_fw": [0.2, np.nan, -4.5],
        "high_fw": [2.8, np.nan, -1.5], "n": [5, 2, 5],
        "verdict": ["supported, smaller than the paper's", "not decided: fewer than 3 seeds",
                    "not tested: vae/oracle_accuracy_recon failed"]})


def test_claims_maps_the_verdict_table_and_marks_untested_claims():
    led = ledger.claims(_verdicts(), paper="P")
    assert list(led.columns) == ledger.COLUMNS
    assert led["claim_id"].tolist() == [1, 2, 3]
    assert led["instruments_ok"].tolist() == [True, True, False]
    assert np.isnan(led["paper_effect"][1]) and led["paper_effect"][0] == 8.3
    with pytest.raises(ValueError, match="low_fw"):
        ledger.claims(_verdicts().drop(columns="low_fw"), paper="P")


def test_save_writes_both_tables_and_refuses_wrong_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    inst = pd.DataFrame([{"instrument": "vae", "dataset": "mnist", "seed": 0, "check": "recon_mse", "value": 0.01,
                          "threshold": 0.02, "passed": True}])
    paths = ledger.save(ledger.claims(_verdicts(), paper="P"), inst, "09_x")
    assert [p.name for p in paths] == ["claims.csv", "instruments.csv"]
    assert pd.read_csv(paths[0])["verdict"].tolist() == _verdicts()["verdict"].tolist()
    with pytest.raises(ValueError, match="instruments.csv"):
        ledger.save(ledger.claims(_verdicts(), paper="P"), inst.drop(columns="passed"), "09_x")


def test_results_section_counts_verdict_heads_and_failed_gates(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    inst = pd.DataFrame([{"instrument": "vae", "dataset": "mnist", "seed": s, "check": "oracle_accuracy_recon",
                          "value": 0.5, "threshold": 0.7, "passed": s == 0} for s in range(3)])
    ledger.save(ledger.claims(_verdicts(), paper="Paper A"), inst, "02_b")
    ledger.save(ledger.claims(_verdicts().iloc[:1], paper="Paper Z"), inst.iloc[:1], "01_a")
    text = ledger.results_section(tmp_path)
    assert text.index("### 01_a (Paper Z)") < text.index("### 02_b (Paper A)")
    assert "3 claims: not decided 1, not tested 1, supported 1." in text
    assert "Instrument checks: 3 rows, 2 failed (vae/oracle_accuracy_recon)." in text
    assert "| mnist | a − b | accuracy | +1.50 | [+0.50, +2.50] | [+0.20, +2.80] | +8.3 | 5 |" in text
    assert "| mnist | a − c | accuracy | +0.00 | – | – | – | 2 | not decided: fewer than 3 seeds |" in text


def test_render_readme_replaces_only_between_the_markers():
    text = f"head\n{ledger.BEGIN}\nold\n{ledger.END}\ntail\n"
    assert ledger.render_readme(text, "new") == f"head\n{ledger.BEGIN}\nnew\n{ledger.END}\ntail\n"
    with pytest.raises(ValueError, match="exactly one"):
        ledger.render_readme("no markers", "new")


def test_main_check_fails_on_a_stale_readme_and_passes_after_an_update(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{ledger.BEGIN}\nhand-typed result\n{ledger.END}\n")
    args = ["readme", "--readme", str(readme), "--figures", str(tmp_path / "figures")]
    assert ledger.main([*args, "--check"]) == 1
    assert ledger.main(args) == 0
    assert ledger.main([*args, "--check"]) == 0
    assert "hand-typed" not in readme.read_text()


def test_the_committed_readme_matches_the_committed_ledgers():
    assert ledger.main(["readme", "--check"]) == 0, "README's results differ from figures/*/claims.csv: make readme"


def _check():
    return pd.DataFrame([{"dataset": "mnist", "comparison": "a − b", "metric": "accuracy", "n": 3, "mean_base": 1.0,
                          "mean_scaled": 4.5, "change": 3.5, "seed_sd": 2.0, "moved": True}])


def test_a_computed_scale_check_is_written_and_an_empty_one_shows_the_committed_record(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path / "out"))
    committed = tmp_path / "figures"
    empty = _check().iloc[:0]
    shown, where = ledger.scale_record(empty, "09_x", figures=committed)
    assert shown.empty and "PROFILE=scale" in where  # nothing recorded yet: it says how to make it
    shown, where = ledger.scale_record(_check(), "09_x", figures=committed)  # SCALE_SEEDS set: this run's
    assert (tmp_path / "out" / "09_x" / "scale_check.csv").exists() and "this run" in where
    record = committed / "09_x" / "scale"
    record.mkdir(parents=True)
    _check().to_csv(record / "scale_check.csv", index=False)
    (record / "MANIFEST.json").write_text(json.dumps({"commit": "abcdef123", "dirty": False, "wall_s": 60.0,
                                                      "cpu_s": 100.0}))
    shown, where = ledger.scale_record(empty, "09_x", figures=committed)
    pd.testing.assert_frame_equal(shown, _check())
    assert "commit abcdef1" in where and "60.0 s wall" in where
    section = ledger.scale_section(committed)
    assert "| 09_x | mnist | a − b | accuracy | 3 | +1.00 | +4.50 | +3.50 | 2.00 | yes |" in section
    assert ledger.scale_section(tmp_path / "none") == ""
    (committed / "08_y" / "scale").mkdir(parents=True)  # 04's table has a classifier column
    _check().assign(classifier="knn").to_csv(committed / "08_y" / "scale" / "scale_check.csv", index=False)
    section = ledger.scale_section(committed)
    assert section.index("| 08_y | mnist | a − b (knn) |") < section.index("| 09_x |")
