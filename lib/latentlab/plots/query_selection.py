"""Figures of notebook 03 (latent-space query selection): the unbalanced copies, the 2-D latent spaces, Algorithm 1
at work, where each selector's picks fall, and the class histograms of the query sets. Each returns the figure;
the notebook saves it (`latentlab.plotting.savefig`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from latentlab import plotting
from latentlab.data import Dataset
from latentlab.experiments import query_selection as qs
from latentlab.papers import query_selection as paper

DIGITS = dict(cmap="tab10", vmin=-0.5, vmax=9.5)  # one colour per digit, the same in every figure


def unbalanced_copies(base: Dataset, unbalanced: Dataset, n: int = 16) -> plt.Figure:
    """The first n training images that the unbalanced construction replaced (top) and their replacements, shifted
    copies of even digits (bottom)."""
    copies = torch.nonzero((base.x != unbalanced.x).flatten(1).any(1)).flatten()[:n]
    fig, ax = plt.subplots(figsize=(8, 1.4))
    plotting.image_grid(torch.cat([base.x[copies], unbalanced.x[copies]]), nrow=n, ax=ax,
                        title="odd digits (top) replaced by shifted copies of even digits (bottom)")
    return fig


def latent_spaces(view: qs.SeedView, seed: int, encoders: Sequence[str] = ("conv", "vae", "tsne")) -> plt.Figure:
    """The paper's Figure 2: each encoder's 2-D codes of the pool, coloured by the true digit, titled with the 5-NN
    accuracy of the codes (`qs.code_knn_accuracy`)."""
    y = view.pool.y.numpy()
    fig, axes = plt.subplots(1, len(encoders), figsize=(4.5 * len(encoders), 4.4), squeeze=False)
    for ax, enc in zip(axes[0], encoders):
        z = view.codes[enc]
        points = ax.scatter(*z.T, c=y, s=1, alpha=0.4, rasterized=True, **DIGITS)
        knn = qs.code_knn_accuracy(z, y, seed)
        ax.set(title=f"{paper.ENCODERS.get(enc, enc)} (5-NN accuracy {knn:.2f})", xlabel="$z_1$", ylabel="$z_2$")
    fig.colorbar(points, ax=axes[0], ticks=range(10), label="digit", fraction=0.02)
    return fig


def algorithm1_walk(z: np.ndarray, clusters: np.ndarray, trace: list, picks: np.ndarray, radius: float,
                    title: str) -> plt.Figure:
    """One run of Algorithm 1 (`trace` from `qs.select_arm(..., trace=)`): the codes coloured by cluster, every
    draw (accepted: black, rejected: red), the labelled images circled, and the radius t around the first accepted
    draw."""
    draws = np.array([d for _, d, _ in trace])
    hit = np.array([len(h) > 0 for *_, h in trace])
    fig, ax = plt.subplots(figsize=(6.5, 6))
    ax.scatter(*z.T, c=clusters, cmap="tab10", s=1, alpha=0.15, rasterized=True)
    ax.scatter(*draws[~hit].T, marker="x", c="red", s=14, lw=0.8, label=f"rejected draws ({(~hit).sum()})")
    ax.scatter(*draws[hit].T, marker="x", c="k", s=14, lw=0.8, label=f"accepted draws ({hit.sum()})")
    ax.scatter(*z[picks].T, s=40, facecolors="none", edgecolors="k", lw=0.8, label="labelled images")
    ax.add_patch(plt.Circle(draws[hit][0], radius, fill=False, color="tab:blue"))
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$")
    ax.legend(loc="lower right", fontsize="small")
    return fig


def picks_by_sampler(z: np.ndarray, y: np.ndarray, picks: Mapping[str, np.ndarray], title: str) -> plt.Figure:
    """Where each selector's labels fall on a 2-D plane (grey: the pool; picks coloured by their digit), at most
    eight selectors in a 2 x 4 grid."""
    fig, axes = plt.subplots(2, 4, figsize=(14, 7), sharex=True, sharey=True)
    for ax, (arm, idx) in zip(axes.flat, list(picks.items())[:8]):
        ax.scatter(*z.T, c="0.85", s=1, rasterized=True)
        ax.scatter(*z[idx].T, c=y[idx], s=12, **DIGITS)
        ax.set_title(arm)
    for ax in axes.flat[len(picks):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def class_histograms(y: np.ndarray, picks: Mapping[str, np.ndarray], n_classes: int, title: str,
                     xlabel: str = "class") -> plt.Figure:
    """Labels per class in each query set, one row per selector (a heatmap with the counts written in)."""
    hist = pd.DataFrame({arm: np.bincount(y[idx], minlength=n_classes) for arm, idx in picks.items()}).T
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(hist) + 1.2))
    sns.heatmap(hist, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set(xlabel=xlabel, ylabel="", title=title)
    return fig
