"""Notebook 05's figures (CAM-guided fusion): the paper's Figure 2 rebuilt, and image quality vs refinement steps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from latentlab.experiments.cam_fusion import Example

REFERENCE_STYLES = {"real": ":", "vae-recon": "--", "random-mask": "-."}  # line style of each reference arm


def example_figure(ex: Example, title: str = "") -> plt.Figure:
    """The paper's Figure 2 for each example (one row each): tail image, its sparse code (channel-wise maximum),
    the kept cells (CAM_t > 0.5), the head partner, its code, the swapped cells (CAM_h < 0.5), the fused code, and
    the decoded image after each number of refinement steps."""
    panels = [("tail image", ex.tail[:, 0]), ("tail code (max)", ex.tail_mip), ("CAM_t > 0.5", ex.tail_keep),
              ("head partner", ex.head[:, 0]), ("head code (max)", ex.head_mip), ("CAM_h < 0.5", ex.head_swap),
              ("fused code (max)", ex.fused_mip)]
    panels += [(f"image, {k} steps", x[:, 0]) for k, x in ex.refined.items()]
    n = len(ex.tail)
    fig, axes = plt.subplots(n, len(panels), figsize=(1.15 * len(panels), 1.2 * n + 0.4), squeeze=False)
    for j, (name, images) in enumerate(panels):
        for i in range(n):
            cmap = "gray" if "image" in name or "partner" in name else "viridis"
            axes[i, j].imshow(images[i].float().numpy(), cmap=cmap, interpolation="nearest")
            axes[i, j].set_axis_off()
        axes[0, j].set_title(name, fontsize="x-small")
    fig.suptitle(title, fontsize="small")
    fig.tight_layout()
    return fig


def quality_figure(results: pd.DataFrame, metrics=("frechet", "tail_fidelity")) -> plt.Figure:
    """Per dataset (columns) and metric (rows): cam-fusion images vs refinement steps (mean ± sd over seeds), with
    the references as horizontal lines (real tail images, their reconstructions, random-mask fusion at 0 steps)."""
    datasets = list(dict.fromkeys(results["dataset"]))
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(4.6 * len(datasets), 3.2 * len(metrics)),
                             squeeze=False)
    for (i, metric), (j, d) in ((a, b) for a in enumerate(metrics) for b in enumerate(datasets)):
        part = results[(results["dataset"] == d) & (results["metric"] == metric)]
        curve = part[part["arm"] == "cam-fusion"].groupby("refine_steps")["value"].agg(["mean", "std"])
        ax = axes[i, j]
        ax.errorbar(curve.index, curve["mean"], yerr=curve["std"], marker="o", capsize=3, label="cam-fusion")
        for arm, style in REFERENCE_STYLES.items():
            if (part["arm"] == arm).any():
                ax.axhline(part.loc[part["arm"] == arm, "value"].mean(), ls=style, color="0.35", lw=1, label=arm)
        ax.set(title=f"{d}: {metric}", xlabel="refinement steps N/d", ylabel=metric)
    axes[0, -1].legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig
