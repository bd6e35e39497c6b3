"""Figures of notebook 04 (VAE latent-space augmentation, Jorge et al.): the paper's Figures 7, 9, 10 and 14 rebuilt.

Each `*_figure` function returns a matplotlib figure; the notebook saves it (`latentlab.plotting.savefig`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from latentlab import data, plotting
from latentlab.data import Dataset
from latentlab.experiments import vae_augmentation as experiment
from latentlab.models.autoencoder import ConvAutoencoder, decode_all, encode_all
from latentlab.samplers import vae_augmentation as augment


@torch.no_grad()
def manifold(vae: ConvAutoencoder, n: int = 15, span: float = 2.5) -> torch.Tensor:
    """Decoded images of an n x n grid of 2-D codes over [-span, span]^2, rows from top (high z_2) to bottom: the
    paper's Figure 7 (right). Feed it to `latentlab.plotting.image_grid(..., nrow=n)`."""
    if vae.latent_dim != 2:
        raise ValueError(f"manifold needs a VAE with a 2-D latent space; this one has {vae.latent_dim}.")
    t = torch.linspace(-span, span, n)
    grid = torch.stack([torch.stack([a, b]) for b in t.flip(0) for a in t])
    return decode_all(vae, grid)


def operations_demo(z: torch.Tensor, y: torch.Tensor, j: int, lam: float, gamma: float, n_noise: int = 40,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """The codes of the paper's Figure 9 for point j: itself, its nearest same-class neighbour, the interpolated and
    extrapolated codes at `lam`, and n_noise noisy copies at `gamma` (sigma_i the spread of all codes z)."""
    k = int(augment.same_class_neighbours(z, y, 1)[j, 0])
    zj, zk = z[j:j + 1], z[k:k + 1]
    noise = augment.add_noise(zj.repeat(n_noise, 1), gamma, augment.code_spread(z),
                              torch.Generator().manual_seed(seed))
    return {"z_j": zj, "z_k": zk, "interpolation": augment.interpolate(zj, zk, lam),
            "extrapolation": augment.extrapolate(zj, zk, lam), "noise": noise}


@torch.no_grad()
def example_rows(lab: Dataset, vae: ConvAutoencoder, choice: dict[str, experiment.Choice], idx: list[int],
                 seed: int, cfg: experiment.Config) -> dict[str, torch.Tensor]:
    """The paper's Figure 10: for the labelled images idx, the original, its reconstruction and the first synthetic
    copy of every arm (interpolation and extrapolation with the nearest same-class neighbour); the arms of
    `FIXED_CHOICES` make no image of their own (the reconstruction row is the latent-reconstruction arm's)."""
    rows = {"original": lab.x[idx], "reconstruction": decode_all(vae, encode_all(vae, lab.x[idx]))}
    for arm in (a for a in cfg.arms if a != "baseline" and a not in experiment.FIXED_CHOICES):
        rows[arm] = experiment.synthesise(arm, lab, vae, choice[arm][0], 1, seed, cfg)[0][idx]
    return rows


def latent_plane_figure(vae: ConvAutoencoder, shown: Dataset, n: int = 15, span: float = 2.5) -> plt.Figure:
    """The paper's Figure 7: left the posterior means of the images `shown` (coloured by class), right the decoder
    applied to an n x n grid of codes over [-span, span]^2."""
    z = encode_all(vae, shown.x)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    points = axes[0].scatter(z[:, 0], z[:, 1], c=shown.y, cmap="tab10", s=4)
    axes[0].legend(*points.legend_elements(), title="digit", fontsize="x-small", ncol=2, loc="upper right")
    axes[0].set(title=f"codes of {len(shown)} MNIST training images", xlabel="$z_1$", ylabel="$z_2$",
                xlim=(-3, 3), ylim=(-3, 3))
    plotting.image_grid(manifold(vae, n, span), nrow=n, ax=axes[1], padding=0,
                        title=f"decoded codes of a grid over $[-{span:g}, {span:g}]^2$")
    return fig


def operations_figure(vae: ConvAutoencoder, lab: Dataset, j: int = 0, lam: float = 0.5,
                      gamma: float = 0.5) -> plt.Figure:
    """The paper's Figure 9 on a 2-D VAE: the codes of the labelled images `lab`, image j's nearest same-class
    neighbour, its interpolation and extrapolation at `lam` and noisy copies at `gamma`; beside them, decoded."""
    z = encode_all(vae, lab.x)
    demo = operations_demo(z, lab.y, j=j, lam=lam, gamma=gamma)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    axes[0].scatter(z[:, 0], z[:, 1], c=lab.y, cmap="tab10", s=14, alpha=0.35)
    axes[0].scatter(*demo["noise"].T, s=10, c="0.4", marker=".", label=rf"noise, $\gamma$ = {gamma:g}")
    for key, style in {"z_j": "ko", "z_k": "ks", "interpolation": "C2D", "extrapolation": "C3D"}.items():
        axes[0].plot(*demo[key].T, style, ms=8, label=key)
    axes[0].plot(*torch.cat([demo["extrapolation"], demo["z_k"]]).T, "k:", lw=1)
    axes[0].legend(fontsize="small", loc="best")
    axes[0].set(title=f"one '{int(lab.y[j])}' and its nearest same-class neighbour", xlabel="$z_1$",
                ylabel="$z_2$")
    codes = [demo[k][:1] for k in ("z_j", "z_k", "interpolation", "extrapolation")] + [demo["noise"][:4]]
    plotting.image_grid(decode_all(vae, torch.cat(codes)), nrow=8, ax=axes[1],
                        title="decoded: z_j, z_k, interp., extrap., 4 x noise")
    return fig


def show_examples(setting: str, chosen: dict, cfg: experiment.Config, ax: plt.Axes) -> None:
    """One panel of Figure 10: per operation (rows), the first synthetic copy of one labelled image per class (up to
    8 columns) of the first seed, at the strengths chosen on validation."""
    name, budget = experiment.parse_setting(setting)
    splits, seed = experiment.load_splits(name, cfg), cfg.seeds[0]
    lab = experiment.labelled_subset(splits.train, budget, seed)
    idx = [int((lab.y == c).nonzero()[0]) for c in lab.y.unique()[:8]]  # one image per class (up to 8)
    rows = example_rows(lab, experiment.fit_vae(splits, seed, cfg, lab), experiment.choice_for(chosen, setting), idx,
                        seed, cfg)
    plotting.image_grid(torch.cat(list(rows.values())), nrow=len(idx), ax=ax, title=setting)
    ax.set_axis_on()  # image_grid hides the axes; we want the row names as tick labels, without the grid
    ax.grid(False)
    ax.set(xticks=[], yticks=[2 + 30 * i + 14 for i in range(len(rows))], yticklabels=list(rows))


def decoded_examples_figure(settings: list[str], chosen: dict, cfg: experiment.Config) -> plt.Figure:
    """The paper's Figures 10 and 13: one panel (`show_examples`) per setting, side by side."""
    widths = [min(8, data.load_cached(experiment.parse_setting(s)[0], "train").n_classes) for s in settings]
    fig, axes = plt.subplots(1, len(settings), figsize=(0.55 * sum(widths) + 2.2 * len(settings), 6.2),
                             squeeze=False, gridspec_kw={"width_ratios": widths})
    for setting, ax in zip(settings, axes[0]):
        show_examples(setting, chosen, cfg, ax)
    fig.tight_layout()
    return fig


def interpolation_paths_figure(vae: ConvAutoencoder, lab: Dataset, j: int = 0, neighbour: int = 5,
                               steps: int = 10) -> plt.Figure:
    """The paper's Figure 14: image j and its `neighbour`-th nearest same-class image (by pixels) joined by `steps`
    interpolations with lambda from 0 to 1, top in the VAE's latent space, bottom in pixel space."""
    k = int(augment.same_class_neighbours(lab.x.flatten(1), lab.y, neighbour)[j, -1])
    lambdas = torch.linspace(0, 1, steps)
    z_pair = encode_all(vae, lab.x[[j, k]])
    latent = decode_all(vae, torch.cat([augment.interpolate(z_pair[:1], z_pair[1:], float(t)) for t in lambdas]))
    pixel = torch.cat([augment.interpolate(lab.x[j:j + 1], lab.x[k:k + 1], float(t)) for t in lambdas])
    fig, ax = plt.subplots(figsize=(8, 2))
    plotting.image_grid(torch.cat([latent, pixel]), nrow=steps, ax=ax,
                        title=r"$\lambda$ = 0 ... 1; top: in the VAE's latent space, bottom: in pixel space")
    return fig
