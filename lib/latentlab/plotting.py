"""One look for every figure, image grids, and the one place figures and results tables are written."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.config import PROFILE_DIR, current_profile
from latentlab.results import COLUMNS

RESULT_COLUMNS = COLUMNS


def set_style() -> None:
    """The seaborn theme all notebooks share."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def figures_root() -> Path:
    """$LATENTLAB_FIGURES, else build/figures of the repository (an editable install), else ./build/figures.

    Only `make figures` writes the tracked figures/ (it sets LATENTLAB_FIGURES): an interactive run in JupyterLab
    leaves the committed figures and results alone."""
    if os.environ.get("LATENTLAB_FIGURES"):
        return Path(os.environ["LATENTLAB_FIGURES"]).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return (repo if (repo / "pyproject.toml").exists() else Path.cwd()) / "build" / "figures"


def figure_dir(notebook: str) -> Path:
    """figures/<notebook>/ (figures/<notebook>/<p>/ when $LATENTLAB_FIGURES_PROFILE is p: a non-default profile's
    committed outputs sit beside the default's, never over them), created if needed."""
    path = figures_root() / notebook / os.environ.get(PROFILE_DIR, "")
    path.mkdir(parents=True, exist_ok=True)
    return path


SMOKE = "SMOKE"  # the word every smoke-profile figure carries


def mark_smoke(fig: plt.Figure) -> plt.Figure:
    """Label a figure made at the smoke profile: a red stamp at its top (pyplot calls this on every new figure once
    `config.announce("smoke")` ran) and, when it is saved, "SMOKE · " before each title. Idempotent."""
    if not any(t.get_gid() == "latentlab-smoke" for t in fig.texts):
        fig.text(0.0, 1.0, f"{SMOKE} profile: CI-sized run, not results", color="tab:red", fontsize="small",
                 fontweight="bold", ha="left", va="bottom", gid="latentlab-smoke")
    titles = [ax.title for ax in fig.axes] + ([fig._suptitle] if fig._suptitle is not None else [])
    for t in titles:
        if t.get_text() and not t.get_text().startswith(SMOKE):
            t.set_text(f"{SMOKE} · {t.get_text()}")
    return fig


def smoke_hook(fig: plt.Figure) -> None:
    """matplotlib's `figure.hooks` entry `config.announce("smoke")` installs: marks new figures while the profile is
    smoke."""
    if current_profile() == "smoke":
        mark_smoke(fig)


def savefig(fig: plt.Figure, name: str, notebook: str) -> list[Path]:
    """Write fig as <figures>/<notebook>/<name>.png and .pdf (no timestamps, so re-runs diff cleanly). At the smoke
    profile (`config.current_profile()`) the figure is marked SMOKE first (`mark_smoke`)."""
    if current_profile() == "smoke":
        mark_smoke(fig)
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


VERDICT_COLORS = {"supported": "#1b9e77", "reversed": "#d95f02", "paper-size effect excluded": "#7570b3",
                  "inconclusive": "0.45", "equivalent": "#1b9e77", "not equivalent": "#d95f02",
                  "not decided": "0.75", "not tested": "0.75"}  # by `stats.verdict_kind`


def forest_plot(table: pd.DataFrame, *, by: str = "dataset", unit: str = "points", title: str | None = None,
                width: float = 7.5) -> plt.Figure:
    """Paired differences from `latentlab.stats.compare`: one row per comparison and group, the 95 % interval (thick),
    the family-wise one (thin) and the mean, coloured by verdict; the zero line; the paper's effect as a red diamond
    where it gives one. One panel per metric."""
    from latentlab.stats import verdict_kind

    metrics = list(dict.fromkeys(table["metric"]))
    n_rows = len(table) // len(metrics) if len(metrics) else 0
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * (0.75 if len(metrics) > 1 else 1) * len(metrics),
                                                       0.42 * max(n_rows, 2) + 1.3), squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        part = table[table["metric"] == metric].reset_index(drop=True)
        ys = np.arange(len(part))[::-1]
        for y, (_, r) in zip(ys, part.iterrows()):
            color = VERDICT_COLORS.get(verdict_kind(r["verdict"]), "k")
            if "low_fw" in r:
                ax.plot([r["low_fw"], r["high_fw"]], [y, y], color=color, lw=0.9)
            ax.plot([r["low"], r["high"]], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            ax.plot(r["mean"], y, "o", color=color, ms=5)
            if r.get("paper") is not None and np.isfinite(r["paper"]):
                ax.plot(r["paper"], y, "D", color="tab:red", ms=5, mfc="none", mew=1.5)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(ys, [f"{r['comparison']}  |  {r[by]}" for _, r in part.iterrows()] if by in part else None)
        ax.set(xlabel=f"paired difference ({unit}), 95 % (thick) and family-wise interval", title=metric)
        ax.grid(axis="y", visible=False)
    handles = [plt.Line2D([], [], color=c, lw=2.2, marker="o", label=v) for v, c in VERDICT_COLORS.items()
               if v in set(table["verdict"].map(verdict_kind))]
    if table.get("paper") is not None and table["paper"].notna().any():
        handles.append(plt.Line2D([], [], ls="none", marker="D", mfc="none", mew=1.5, color="tab:red",
                                  label="paper's effect"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, 1.0 if title is None else 0.95))
    if title:
        fig.suptitle(title, y=1.06)
    fig.tight_layout()
    return fig


def arm_summary(results: pd.DataFrame, metrics: list[str], *, arms: list[str] | None = None, by: str = "dataset",
                scale: float = 100.0, unit: str = "%") -> plt.Figure:
    """Every arm's mean ± sd over seeds per group (one panel per metric), each seed a faint dot: the spread the
    paired differences have to beat."""
    part = results[results["metric"].isin(metrics)].copy()
    part["value"] = part["value"] * scale
    arms = arms or list(dict.fromkeys(part["arm"]))
    groups = list(dict.fromkeys(part[by]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.6, 1.1 * len(groups) + 1.6) * len(metrics), 3.8),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data = part[part["metric"] == metric]
        kw = dict(data=data, x=by, y="value", hue="arm", hue_order=arms, order=groups, ax=ax)
        state = np.random.get_state()  # seaborn jitters with NumPy's global generator: seeded, the same figure every
        np.random.seed(0)              # run (and the caller's random state as it was)
        try:
            sns.stripplot(**kw, dodge=True, alpha=0.35, size=3, legend=False)
        finally:
            np.random.set_state(state)
        sns.pointplot(**kw, dodge=0.8 - 0.8 / len(arms), errorbar="sd", linestyle="none", markersize=5,
                      capsize=0.08, err_kws={"linewidth": 1.2}, legend=metric == metrics[-1])
        ax.set(title=metric, xlabel="", ylabel=f"{metric} ({unit})" if unit else metric)
        ax.tick_params(axis="x", rotation=20)
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.01, 1), fontsize="small", title=None)
    fig.tight_layout()
    return fig


def class_montage(dataset, per_class: int = 8, seed: int = 0, title: str | None = None) -> plt.Figure:
    """One row of `per_class` random images (drawn with `seed`) for every class of a single-label Dataset."""
    names = dataset.info.class_names
    fig, axes = plt.subplots(len(names), 1, figsize=(per_class * 0.55, len(names) * 0.62 + 0.4))
    rng = np.random.default_rng(seed)
    for c, ax in enumerate(np.atleast_1d(axes)):
        idx = rng.choice(np.flatnonzero(dataset.y.numpy() == c), per_class, replace=False)
        image_grid(dataset.x[idx], nrow=per_class, ax=ax)
        ax.set_axis_on()
        ax.set(xticks=[], yticks=[])
        ax.grid(False)
        ax.set_ylabel(names[c][:14], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, y=1.0)
    return fig


def split_counts(splits: dict) -> pd.DataFrame:
    """Images per class (rows, plus a `total` row) in each split (columns) of {split name: Dataset}."""
    names = next(iter(splits.values())).info.class_names
    counts = pd.DataFrame({s: ds.class_counts() for s, ds in splits.items()}, index=names)
    counts.loc["total"] = counts.sum()
    return counts


def report_verdicts(verdicts: pd.DataFrame, name: str, notebook: str, *, columns: list[str] | None = None,
                    title: str | None = None, unit: str = "points", by: str = "dataset", digits: int = 2):
    """The one way a notebook shows verdicts: a sentence per comparison (`stats.describe`), the forest plot saved as
    <figures>/<notebook>/<name>.png, and the table (the given columns) returned for display."""
    from latentlab.stats import describe

    for _, row in verdicts.iterrows():
        print(f"{str(row.get(by, '')):18s} {describe(row)}")
    fig = forest_plot(verdicts, by=by, unit=unit, title=title)
    savefig(fig, name, notebook)
    plt.show()
    return verdicts[columns].round(digits) if columns else verdicts.round(digits)
