"""Notebook 06's figures: AUC against annotations, and AUC against CPU seconds with the Pareto front."""

from __future__ import annotations

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from latentlab.experiments import head_to_head as h2h

MARKERS = {"baseline": "o", "affine": "s", "mixup": "D", "class-balanced": "v", "real+m": "P", "aisel+m": "*",
           "tsynd-mi": "X", "latent-query": "^", "latent-interpolation": "<", "cam-fusion": ">"}


def _colour(arm: str) -> str:
    if arm == "baseline":
        return "black"
    if arm in h2h.CHEAP:
        return "tab:blue"
    if arm == "real+m":
        return "tab:green"
    return "tab:red"


def _log_x(ax, ticks=None) -> None:
    """A log x axis labelled in plain numbers (50, 100, 2000), no labels on its minor ticks; at `ticks` if given."""
    ax.set_xscale("log")
    if ticks is not None:
        ax.set_xticks(sorted(set(ticks)))
    ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(mticker.NullFormatter())


def _dataset(where: str) -> tuple[str, int]:
    name, _, n = where.partition("@")
    return name, int(n)


def auc_vs_annotations(costs: pd.DataFrame, value: str = "auc") -> plt.Figure:
    """One panel per dataset: every arm's mean AUC (error bars: its sd over seeds) against the annotations it used,
    its budgets joined by a line (blue: cheap baselines, red: the five methods, green: real+m)."""
    c = costs.assign(name=costs["dataset"].map(lambda s: _dataset(s)[0]))
    names = list(dict.fromkeys(c["name"]))
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        part = c[c["name"] == name]
        for arm, g in part.groupby("arm", sort=False):
            g = g.sort_values("annotations")
            ax.errorbar(g["annotations"], g[value], yerr=g.get(f"{value}_sd"), marker=MARKERS.get(arm, "o"),
                        color=_colour(arm), label=arm, capsize=2, alpha=0.85, lw=1)
        _log_x(ax, part["annotations"])
        ax.set_xlabel("annotations (labelled images + oracle labels)")
        ax.set_ylabel(f"test {value.upper() if value == 'auc' else value}")
        ax.set_title(name)
    axes[0][-1].legend(fontsize=7, loc="best", ncol=2)
    fig.tight_layout()
    return fig


def auc_vs_cpu(costs: pd.DataFrame, value: str = "auc", cost: str = "cpu_seconds") -> plt.Figure:
    """One panel per setting: every arm's mean AUC against its mean CPU seconds (generative training from a cold
    cache included), the Pareto front (`head_to_head.pareto`: no arm cheaper and better) drawn as a step line."""
    settings = list(dict.fromkeys(costs["dataset"]))
    cols = min(2, len(settings))
    rows = int(np.ceil(len(settings) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
    for ax, where in zip(axes.flat, settings):
        part = costs[costs["dataset"] == where].reset_index(drop=True)
        front = part[h2h.pareto(part, cost, value)].sort_values(cost)
        ax.step(front[cost], front[value], where="post", color="grey", lw=1, ls="--", label="Pareto front")
        for r in part.itertuples():
            ax.scatter(getattr(r, cost), getattr(r, value), marker=MARKERS.get(r.arm, "o"), color=_colour(r.arm),
                       s=60, zorder=3, edgecolor="white" if r.arm not in set(front["arm"]) else "black")
            ax.annotate(r.arm, (getattr(r, cost), getattr(r, value)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        _log_x(ax)
        ax.set_xlabel("CPU seconds per seed, cold (generative training included)")
        ax.set_ylabel(f"test {value.upper() if value == 'auc' else value}")
        ax.set_title(where)
    for ax in list(axes.flat)[len(settings):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
