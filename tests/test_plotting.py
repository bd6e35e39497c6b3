"""Figures and results tables land where the pipeline expects them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from latentlab import plotting  # noqa: E402


def test_savefig_writes_png_and_pdf_under_the_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    plotting.set_style()
    fig, ax = plt.subplots()
    plotting.image_grid(torch.rand(10, 1, 8, 8), nrow=5, ax=ax, title="grid")
    paths = plotting.savefig(fig, "grid", "99_test")
    assert [p.name for p in paths] == ["grid.png", "grid.pdf"]
    assert all(p.parent == tmp_path / "99_test" and p.stat().st_size > 1000 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_results_table_is_tidy(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    df = pd.DataFrame({"value": [0.5, 0.7], "metric": "accuracy", "seed": [0, 1], "arm": "native", "dataset": "m"})
    path = plotting.save_results(df, "99_test")
    assert list(pd.read_csv(path).columns) == plotting.RESULT_COLUMNS
    summary = plotting.summarise(df)
    assert summary.loc[0, "mean"] == pytest.approx(0.6) and summary.loc[0, "count"] == 2
    with pytest.raises(ValueError, match="missing \\['seed'\\]"):
        plotting.save_results(df.drop(columns="seed"), "99_test")
