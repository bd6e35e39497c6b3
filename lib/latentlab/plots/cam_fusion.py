"""Notebook 05's figures (CAM-guided fusion): the paper's Figure 2 rebuilt, and image quality vs refinement steps."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from latentlab.experiments.cam_fusion import Example

REFERENCE_STYLES = {"real": ":", "vae-recon": "--", "shuffled-mask": "-.", "random-mask": (0, (1, 3)),
                    "random-partner": (0, (5, 2, 1, 2))}  # line style of each reference arm (0 steps)
MODE_MARKERS = {"official": "o", "sdedit": "s"}  # marker of each refinement mode


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


def quality_figure(results: pd.DataFrame, metrics=("frechet", "frechet_ae", "tail_fidelity")) -> plt.Figure:
    """Per dataset (columns) and metric (rows): cam-fusion images vs refinement steps (mean ± sd over seeds), one
    curve per refinement mode (column `refine_mode`, when there is one), the denoiser's sanity curve (real tail
    latents refined alike, `real-refined`, dashed), and the references as horizontal lines (real tail images, their
    reconstructions, the fusion controls at 0 steps)."""
    datasets = list(dict.fromkeys(results["dataset"]))
    metrics = [m for m in metrics if (results["metric"] == m).any()]
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(4.6 * len(datasets), 3.0 * len(metrics)),
                             squeeze=False)
    modes = results["refine_mode"] if "refine_mode" in results else pd.Series("", index=results.index)
    for (i, metric), (j, d) in ((a, b) for a in enumerate(metrics) for b in enumerate(datasets)):
        part = results[(results["dataset"] == d) & (results["metric"] == metric)]
        ax = axes[i, j]
        zero = part[(part["arm"] == "cam-fusion") & (part["refine_steps"] == 0)]["value"]
        for mode in dict.fromkeys(modes[part.index]):
            for arm, ls in (("cam-fusion", "-"), ("real-refined", "--")):
                rows = part[(part["arm"] == arm) & (modes[part.index] == mode)]
                if arm == "cam-fusion" and len(zero) and not (rows["refine_steps"] == 0).any():
                    rows = pd.concat([part[(part["arm"] == arm) & (part["refine_steps"] == 0)], rows])
                if not len(rows):
                    continue
                curve = rows.groupby("refine_steps")["value"].agg(["mean", "std"])
                ax.errorbar(curve.index, curve["mean"], yerr=curve["std"], marker=MODE_MARKERS.get(mode, "o"), ls=ls,
                            capsize=3, label=f"{arm}, {mode}".rstrip(", "))
        for arm, style in REFERENCE_STYLES.items():
            if (part["arm"] == arm).any():
                ax.axhline(part.loc[part["arm"] == arm, "value"].mean(), ls=style, color="0.35", lw=1, label=arm)
        ax.set(title=f"{d}: {metric}", xlabel="refinement steps N/d", ylabel=metric)
        if metric.startswith("frechet"):
            ax.set_yscale("log")
    axes[0, -1].legend(fontsize="x-small", loc="best")
    fig.tight_layout()
    return fig
