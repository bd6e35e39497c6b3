"""Notebook 02's figures (TSynD): reconstructions, the ascent walk, flip rate vs eps, original vs optimised."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from latentlab.models.autoencoder import ConvAutoencoder, decode_all
from latentlab.plotting import image_grid
from latentlab.samplers.tsynd import AscentResult


def reconstructions(pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], seed: int) -> plt.Figure:
    """Per dataset {name: (test images, their reconstructions)}: one row of each."""
    fig, axes = plt.subplots(2 * len(pairs), 1, figsize=(9, 2.3 * len(pairs)))
    for i, (name, (x, x_hat)) in enumerate(pairs.items()):
        image_grid(x, nrow=len(x), ax=axes[2 * i], title=f"{name}: test images")
        image_grid(x_hat, nrow=len(x), ax=axes[2 * i + 1],
                   title=f"reconstructions f_dec(f_enc(x)), seed {seed}'s autoencoder")
    return fig


def ascent_walk(walks: dict[str, AscentResult], x: torch.Tensor, ae: ConvAutoencoder, j: int) -> plt.Figure:
    """Per target (rows): image j's path (the real image, then the decoded code of every ascent step), and MI and
    entropy per step (mean and interquartile band over the images, image j in red)."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    for r, t in enumerate(("mi", "entropy")):
        path = decode_all(ae, walks[t].history["z"][:, j])
        image_grid(torch.cat([x[j:j + 1], path]), nrow=len(path) + 1, ax=axes[r, 0],
                   title=f"target {t.upper()}: real image, then steps 0..{len(path) - 1}")
        for c, u in enumerate(("mi", "entropy")):
            h = walks[t].history[u]
            axes[r, 1 + c].plot(h.mean(1), color="C0", label=f"mean of {h.shape[1]} images")
            axes[r, 1 + c].fill_between(range(len(h)), h.quantile(0.25, 1), h.quantile(0.75, 1), alpha=0.25)
            axes[r, 1 + c].plot(h[:, j], color="C3", label="the walked image")
            axes[r, 1 + c].set(title=f"{u.upper()} while maximising {t.upper()}", xlabel="ascent step")
    axes[0, 1].legend(fontsize="small")
    fig.tight_layout()
    return fig


def label_flip_vs_eps(summary: pd.DataFrame, eps_rel: dict[str, float], max_flip: float) -> plt.Figure:
    """The judge's flip rate of each synthesis mode against eps with its Wilson interval (`tsynd.flip_summary`;
    one panel per dataset setting of eps_rel, in its order), the limit max_flip (dashed) and the chosen eps (red)."""
    fig, axes = plt.subplots(1, len(eps_rel), figsize=(3.2 * len(eps_rel), 2.9), squeeze=False, sharey=True)
    for ax, e in zip(axes[0], eps_rel):
        for k, (mode, g) in enumerate(summary[summary["dataset"] == e].groupby("mode", sort=False)):
            ax.plot(g["eps_rel"], g["flip_rate"], marker="o", color=f"C{k}", label=mode)
            ax.fill_between(g["eps_rel"], g["low"], g["high"], color=f"C{k}", alpha=0.2, lw=0)
        ax.axhline(max_flip, color="k", lw=0.8, ls="--")
        ax.axvline(eps_rel[e], color="C3", lw=0.8)
        ax.set(title=e, xlabel="eps (x latent radius)")
    axes[0, 0].set_ylabel("label-flip rate (judge)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def original_vs_optimised(images: dict[str, torch.Tensor], title: str) -> plt.Figure:
    """One row of images per version ({"original": x, mode: images}, as `experiments.tsynd.synthetic_versions`)."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    first = next(iter(images.values()))
    image_grid(torch.cat(list(images.values())), nrow=len(first), ax=ax, title=f"{title}; rows: " + ", ".join(images))
    return fig
