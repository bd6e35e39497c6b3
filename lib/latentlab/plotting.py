"""One look for every figure, image grids, and the one place figures and results tables are written."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

import latentlab  # noqa: F401  (torchvision shim first)

RESULT_COLUMNS = ["dataset", "arm", "seed", "metric", "value"]


def set_style() -> None:
    """The seaborn theme all notebooks share."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def figures_root() -> Path:
    """$LATENTLAB_FIGURES, else the repository's figures/ (for an editable install), else ./figures."""
    if "LATENTLAB_FIGURES" in os.environ:
        return Path(os.environ["LATENTLAB_FIGURES"]).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo / "figures" if (repo / "pyproject.toml").exists() else Path.cwd() / "figures"


def figure_dir(notebook: str) -> Path:
    """figures/<notebook>/, created if needed."""
    path = figures_root() / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def savefig(fig: plt.Figure, name: str, notebook: str) -> list[Path]:
    """Write fig as <figures>/<notebook>/<name>.png and .pdf (no timestamps, so re-runs diff cleanly)."""
    base = figure_dir(notebook) / name
    paths = [base.with_suffix(".png"), base.with_suffix(".pdf")]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"Creator": None, "Producer": None, "CreationDate": None})
    return paths


def save_results(df: pd.DataFrame, notebook: str) -> Path:
    """Write the tidy results table <figures>/<notebook>/results.csv (dataset, arm, seed, metric, value)."""
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"A results table needs the columns {RESULT_COLUMNS}; missing {missing}.")
    path = figure_dir(notebook) / "results.csv"
    extra = [c for c in df.columns if c not in RESULT_COLUMNS]
    df[RESULT_COLUMNS + extra].to_csv(path, index=False)
    return path


def image_grid(x: torch.Tensor, nrow: int = 8, ax: plt.Axes | None = None, title: str | None = None,
               padding: int = 2) -> plt.Axes:
    """Show images (N, C, H, W) in [0, 1] as one grid (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    grid = make_grid(x.detach().cpu().float().clamp(0, 1), nrow=nrow, padding=padding, pad_value=1.0)
    ax = ax or plt.subplots(figsize=(nrow * 0.6, (len(x) + nrow - 1) // nrow * 0.6 + 0.3))[1]
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray" if x.shape[1] == 1 else None, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def summarise(df: pd.DataFrame, by: tuple[str, ...] = ("dataset", "arm", "metric")) -> pd.DataFrame:
    """Mean, standard deviation and number of seeds of a tidy results table."""
    return df.groupby(list(by), sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
