"""Notebook 01's figures (AISEL): GIN samples and reconstructions, the latent space, the synthetic sets, the curve."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from latentlab.experiments.aisel import Selection
from latentlab.models.gin import GIN
from latentlab.oracle import Oracle
from latentlab.plotting import image_grid


def samples_and_reconstructions(gins: dict, seed: int, n: int = 32) -> plt.Figure:
    """Per dataset (a column of {name: (gin, held-out images)}): n samples G(u), u ~ U[-1, 1]^r (drawn with seed 0,
    in eval mode), and the first 16 held-out images above their reconstructions G(f(x)), f(x) = `GIN.invert(x)`."""
    fig, axes = plt.subplots(2, len(gins), figsize=(4.2 * len(gins), 5.6), squeeze=False)
    for j, (name, (gin, held)) in enumerate(gins.items()):
        u = gin.sample_latent(n, generator=torch.Generator().manual_seed(0))
        image_grid(gin.generate(u), nrow=8, ax=axes[0, j],
                   title=f"{name}, seed {seed}: G(u), u ~ U[-1,1]^{gin.latent_dim}")
        image_grid(torch.cat([held.x[:16], gin.reconstruct(held.x[:16])]), nrow=8, ax=axes[1, j],
                   title="real (rows 1-2) and G(f(x)), f = E refined (rows 3-4)")
    fig.tight_layout()
    return fig


def latent_space(view: Selection, title: str, arms: tuple[str, ...] = ("aisel+m", "maxent+m")) -> plt.Figure:
    """The latent space through the plane of the real encodings' two principal axes: the candidates' mean entropy h
    per hexagon (background), the real encodings (grey) and each arm's selected points (red), one panel per arm."""
    center = view.real.mean(0)
    plane = torch.linalg.svd(view.real - center, full_matrices=False)[2][:2].T
    proj = lambda f: ((f - center) @ plane).numpy()
    c = proj(view.candidates)
    fig, axes = plt.subplots(1, len(arms), figsize=(5.5 * len(arms), 4.4), sharex=True, sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        hb = ax.hexbin(c[:, 0], c[:, 1], C=view.h.numpy(), gridsize=30, cmap="viridis", reduce_C_function=np.mean)
        ax.scatter(*proj(view.real).T, s=4, c="0.75", label="real encodings E(x)")
        ax.scatter(*proj(view.sets[arm]).T, s=8, c="tab:red", label=f"{arm} points")
        ax.set(title=f"{title}: {arm}", xlabel="PC 1 of E(x)", ylabel="PC 2")
        ax.legend(loc="lower right", fontsize="small")
    fig.colorbar(hb, ax=axes[0].tolist(), label="mean entropy h(f) (eq. 7)")
    return fig


def synthetic_sets(gin: GIN, view: Selection, oracle: Oracle, arms: tuple[str, ...] = ("random+m", "aisel+m",
                                                                                      "maxent+m")) -> plt.Figure:
    """The first 16 images decoded from each arm's set, with the oracle's labels and its mean confidence in them."""
    fig, axes = plt.subplots(1, len(arms), figsize=(14 / 3 * len(arms), 3.4), squeeze=False)
    for ax, arm in zip(axes[0], arms):
        xs = gin.generate(view.sets[arm][:16])
        labels, conf = oracle.label(xs)
        image_grid(xs, nrow=8, ax=ax, title=f"{arm} (oracle confidence {conf.mean():.2f})\nlabels, row 1: "
                   f"{' '.join(map(str, labels[:8].tolist()))}\nrow 2: {' '.join(map(str, labels[8:].tolist()))}")
    return fig


def query_curve(results: pd.DataFrame, curve: pd.DataFrame, dataset: str, seeds, n_labelled: int,
                arms=("native", "random+m", "maxent+m", "aisel+m", "random+M")) -> plt.Figure:
    """'Query less for more': test accuracy (mean ± sd over `seeds`) against the number of synthetic images, for
    random and AISEL synthesis; the curve's own sizes (`curve`, arms curve:<method>) joined with the main grid's
    (native at 0, the m-arms at m, random+M at M) of the same dataset and seeds."""
    main = results[(results.dataset == dataset) & (results.metric == "accuracy") & results.seed.isin(seeds)]
    points = pd.concat([curve, main[main.arm.isin(arms)]])
    points["method"] = points.arm.str.replace("curve:", "").str.split("+").str[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, color in [("random", "tab:blue"), ("aisel", "tab:red")]:
        part = points[points.method.isin([method, "native"])].groupby("n_synthetic")["value"].agg(["mean", "std"])
        ax.errorbar(part.index + 1, 100 * part["mean"], yerr=100 * part["std"], marker="o", capsize=3, color=color,
                    label=method)
    ax.set(xscale="log", xlabel="synthetic images added + 1 (log scale)", ylabel="test accuracy (%)",
           title=f"{dataset}, n = {n_labelled} labelled, seeds {list(seeds)}")
    ax.legend()
    return fig


def class_histograms(results: pd.DataFrame, arms: tuple[str, ...]) -> plt.Figure:
    """The oracle's class histogram of every extra set (`class_share_<k>` rows): per dataset, the mean share of each
    class over the seeds, one bar group per class and one bar per arm, with the seeds' range as a line."""
    shares = results[results["metric"].str.startswith("class_share_") & results["arm"].isin(arms)]
    names = list(dict.fromkeys(shares["dataset"]))
    fig, axes = plt.subplots(1, len(names), figsize=(6.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        part = shares[shares["dataset"] == name]
        part = part.assign(k=part["metric"].str.rsplit("_", n=1).str[-1].astype(int))
        shown = [a for a in arms if a in set(part["arm"])]
        width = 0.8 / max(len(shown), 1)
        for i, arm in enumerate(shown):
            g = part[part["arm"] == arm].groupby("k")["value"]
            x = np.asarray(g.mean().index) + (i - (len(shown) - 1) / 2) * width
            ax.bar(x, g.mean(), width, label=arm)
            ax.vlines(x, g.min(), g.max(), color="k", lw=0.8)
        ax.set(title=f"{name}: the oracle's labels of each set", xlabel="class", ylabel="share of the set")
        ax.set_xticks(sorted(part["k"].unique()))
    axes[0, -1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
