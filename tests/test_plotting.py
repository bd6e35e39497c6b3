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


def _table() -> pd.DataFrame:
    from latentlab import stats

    rows = [{"dataset": d, "arm": a, "seed": s, "metric": "accuracy", "value": v + 0.01 * s}
            for d in ("mnist", "pneumonia") for s in range(4)
            for a, v in (("native", 0.80), ("aisel", 0.83 + 0.005 * (s % 2)), ("random", 0.70 + 0.05 * (s % 2)))]
    return pd.DataFrame(rows), stats


def test_forest_plot_draws_one_interval_per_row_and_the_paper_marker(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_FIGURES", str(tmp_path))
    df, stats = _table()
    table = stats.compare(df, [("aisel", "native", 8.3), ("random", "native")])
    fig = plotting.forest_plot(table)
    ax = fig.axes[0]
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() > 2]
    assert len(intervals) == len(table) == 4
    diamonds = [line for line in ax.lines if line.get_marker() == "D"]
    assert [float(d.get_xdata()[0]) for d in diamonds] == [8.3, 8.3]  # only the claims with a paper number
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "aisel − native  |  mnist"
    assert all(p.exists() for p in plotting.savefig(fig, "forest", "99_test"))
    plt.close(fig)


def test_arm_summary_has_one_panel_per_metric():
    df, _ = _table()
    df = pd.concat([df, df.assign(metric="auc")])
    fig = plotting.arm_summary(df, ["accuracy", "auc"], arms=["native", "aisel"])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["accuracy", "auc"]
    plt.close(fig)


def test_arm_summary_draws_the_same_jitter_every_time_and_leaves_the_global_random_state():
    import numpy as np

    df, _ = _table()

    def dots():
        fig = plotting.arm_summary(df, ["accuracy"], arms=["native", "aisel"])
        out = np.concatenate([c.get_offsets() for c in fig.axes[0].collections if len(c.get_offsets())])
        plt.close(fig)
        return out

    np.random.seed(1)
    first = dots()
    after = np.random.random()
    np.random.seed(2)
    assert np.array_equal(first, dots())  # another global state, the same figure
    np.random.seed(1)
    dots()
    assert np.random.random() == after  # the plot drew nothing from the caller's generator


class _Info:
    class_names = ["a", "b", "c"]


class _Set:
    def __init__(self, y):
        self.y, self.x, self.info = torch.tensor(y), torch.rand(len(y), 1, 4, 4), _Info()

    def class_counts(self):
        return torch.bincount(self.y, minlength=3).numpy()


def test_split_counts_count_every_class_of_every_split_and_total_them():
    counts = plotting.split_counts({"train": _Set([0, 0, 1, 2, 2, 2]), "test": _Set([1, 1, 2])})
    assert counts.loc[["a", "b", "c"], "train"].tolist() == [2, 1, 3]
    assert counts.loc[["a", "b", "c"], "test"].tolist() == [0, 2, 1]
    assert counts.loc["total"].tolist() == [6, 3]


def test_class_montage_has_one_row_per_class_and_is_seeded():
    ds = _Set([0, 0, 0, 1, 1, 1, 2, 2, 2])
    figs = [plotting.class_montage(ds, per_class=2, seed=1) for _ in range(2)]
    assert len(figs[0].axes) == 3 and [ax.get_ylabel() for ax in figs[0].axes] == ["a", "b", "c"]
    images = [[ax.images[0].get_array() for ax in f.axes] for f in figs]
    assert all((a == b).all() for a, b in zip(*images))
    plt.close("all")
