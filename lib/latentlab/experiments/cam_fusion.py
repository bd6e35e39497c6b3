"""Notebook 05's experiment: CAM-guided feature-space fusion for long-tailed classes (Elberg et al. 2024).

One task is one dataset and one seed. `run_seed(task)`:

1. draws the seed's long-tailed training set (`long_tailed`): an exponential profile with imbalance ratio rho for
   multi-class data (the rarest `n_tail` classes are the tail), the minority class subsampled to n_major / rho for
   binary data (it is the tail), the natural long tail of multi-label data (its rarest labels);
2. trains the seed's own generative models on it (each cached by its config): the AutoencoderKL (or loads a
   pretrained one), Stage 1 iterated learning on its latents, and the latent denoiser;
3. builds every arm's training set: `none`; `oversample` (tail images repeated); `reweight` (class-balanced loss);
   `random-mask` (fusion with random masks); `cam-fusion` (0 refinement steps); `cam-fusion+refine` (the same fused
   latents after `refine_steps` steps). Every augmenting arm adds `n_augment` images per tail class;
4. trains one classifier per arm, all from the seed's initial weights, selected on the balanced validation split,
   and scores it on the balanced test split: tail-class and overall average precision, balanced accuracy,
   per-class recall, AUC;
5. measures the Frechet distance between fused and real tail images on the oracle's features, and the oracle's
   agreement with the tail label, for every refinement step count in `refine_grid`, with the CPU time it took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from latentlab import data, train
from latentlab.frechet import classifier_features, frechet_distance_features
from latentlab.metrics import classification_metrics, predictions
from latentlab.models.denoiser import DenoiserConfig, LatentDenoiser, fit_denoiser, refine
from latentlab.models.iterated import ILConfig, IteratedModel, fit_iterated
from latentlab.models.latent_kl import KLConfig, LatentCodec, fit_latent_codec
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers.cam_fusion import Fusion, cam_fusion, channel_max_projection, code_cams, sparse_codes
from latentlab.utils import batched

ARMS = ("none", "oversample", "reweight", "random-mask", "cam-fusion", "cam-fusion+refine")
FUSION_ARMS = {"random-mask": "random", "cam-fusion": "cam", "cam-fusion+refine": "cam"}


@dataclass(frozen=True)
class Config:
    """The notebook's parameters (the UPPER_CASE names of its first cell, lower-cased)."""

    arms: tuple[str, ...] = ARMS
    imbalance: dict = field(default_factory=lambda: {"fashion-mnist": 100, "pneumoniamnist": 20})
    n_max: dict = field(default_factory=lambda: {"fashion-mnist": 1000})  # head-class images (absent: all)
    n_tail: int = 3                      # rarest classes marked tail (binary data: the minority class only)
    n_augment: int = 200                 # images added per tail class by every augmenting arm
    ae_pretrained: str | None = None     # a from_pretrained name (a Stable Diffusion VAE); None trains one here
    ae_subfolder: str | None = None
    ae_image_size: int | None = None     # resize for a pretrained VAE
    ae_latent: int = 4
    ae_width: tuple[int, ...] = (8, 16, 16)
    ae_steps: int = 800
    ae_batch: int = 8
    il_channels: int = 16
    il_width: int = 32
    il_generations: int = 3
    il_interaction_steps: int = 100
    il_imitation_steps: int = 50
    k_neighbours: int = 3
    denoiser_width: int = 32
    denoiser_steps: int = 300
    refine_schedule: int = 20            # N: the DDIM schedule whose last steps refine a fused latent
    refine_steps: int = 3                # N / d of the cam-fusion+refine arm (the official script's 3)
    refine_grid: tuple[int, ...] = (0, 1, 3, 5, 10, 20)
    n_fid: int = 500                     # real tail images per tail class, the reference of the Frechet distance
    clf_arch: str = "cnn"
    clf_width: int = 8
    clf_steps: int = 180
    clf_min_epochs: int = 1
    clf_batch: int = 64
    clf_lr: float = 2e-3
    clf_monitor: str = "loss"
    oracle_arch: str = "cnn"
    oracle_width: int = 8
    oracle_steps: int = 300
    n_val: int | None = 500
    n_test: int | None = 2000

    def __post_init__(self):
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"Unknown arms {sorted(unknown)}. Choose from: {', '.join(ARMS)}.")
        if not 0 <= self.refine_steps <= self.refine_schedule or max(self.refine_grid) > self.refine_schedule:
            raise ValueError(f"Refinement steps must lie in [0, REFINE_SCHEDULE={self.refine_schedule}].")

    @classmethod
    def from_parameters(cls, params: dict) -> Config:
        """A Config from a notebook's UPPER_CASE parameters (`latentlab.grid.parameters(globals())`, or a task):
        every field, upper-cased, where present; lists become tuples."""
        names = {f.upper(): f for f in cls.__dataclass_fields__}
        return cls(**{names[k]: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in names})

    def parameters(self) -> dict:
        """The UPPER_CASE parameters this Config stands for (the inverse of from_parameters)."""
        return {f.upper(): getattr(self, f) for f in self.__dataclass_fields__}

    def oracle(self, dataset: str) -> Oracle:
        kw = {"width": self.oracle_width} if self.oracle_arch == "cnn" else {}
        return train_oracle(dataset, arch=self.oracle_arch, steps=self.oracle_steps, **kw)


# --------------------------------------------------------------------------- data


def minority_subset(y, rho: float, seed: int, n_max: int | None = None) -> np.ndarray:
    """Binary labels: every majority image (at most n_max), and the minority class cut to n_majority / rho."""
    y = np.asarray(y)
    counts = np.bincount(y, minlength=2)
    major, minor = int(counts.argmax()), int(counts.argmin())
    n_major = int(counts[major] if n_max is None else min(n_max, counts[major]))
    n_minor = max(1, min(int(counts[minor]), round(n_major / rho)))
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(y == c), n, replace=False) for c, n in ((major, n_major), (minor, n_minor))]
    return np.sort(np.concatenate(keep))


def long_tailed(dataset: str, seed: int, cfg: Config) -> tuple[data.Dataset, list[int], np.ndarray]:
    """The seed's long-tailed training set, its tail classes, and its rows in the training split."""
    full = data.load_cached(dataset, "train")
    n_max, rho = cfg.n_max.get(dataset), cfg.imbalance.get(dataset)
    if full.info.multilabel:  # the natural long tail (ChestMNIST): at most n_max images, the rarest labels are tail
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(full), min(n_max or len(full), len(full)), replace=False))
        counts = full.y[idx].sum(0).numpy()
        return full.subset(idx), sorted(np.argsort(counts)[:cfg.n_tail].tolist()), idx
    if rho is None:
        raise ValueError(f"IMBALANCE names no ratio for {dataset!r}; add one, e.g. {{{dataset!r}: 100}}.")
    if full.n_classes == 2:
        idx = minority_subset(full.y.numpy(), rho, seed, n_max)
    else:
        idx = data.long_tail_subset(full.y, rho=rho, profile="exp", n_max=n_max, seed=seed)
    counts = np.bincount(full.y[idx].numpy(), minlength=full.n_classes)
    n_tail = min(cfg.n_tail, full.n_classes - 1)  # binary data: the minority class alone
    return full.subset(idx), sorted(np.argsort(counts, kind="stable")[:n_tail].tolist()), idx


def capped(ds: data.Dataset, n: int | None) -> data.Dataset:
    """At most n images of ds, class proportions kept (stratified; a fixed draw, the same for every seed)."""
    if n is None or n >= len(ds):
        return ds
    if ds.info.multilabel:
        return ds.subset(np.sort(np.random.default_rng(0).choice(len(ds), n, replace=False)))
    return ds.subset(data.stratified_subset(ds.y, n, seed=0))


def tail_members(y: torch.Tensor, tail: list[int]) -> torch.Tensor:
    """Boolean (N,): the samples that carry a tail label."""
    if y.ndim == 2:
        return (y[:, tail] > 0).any(1)
    return torch.isin(y, torch.tensor(tail))


# --------------------------------------------------------------------------- one seed's models


@dataclass
class Seed:
    """A seed's long-tailed data and the generative models trained on it."""

    dataset: str
    seed: int
    cfg: Config
    train: data.Dataset
    tail: list[int]
    rows: np.ndarray               # the training set's rows in the full training split
    codec: LatentCodec
    latents: torch.Tensor
    stage1: IteratedModel
    denoiser: LatentDenoiser
    cpu_seconds: dict = field(default_factory=dict)

    def fuse(self, masks: str) -> Fusion:
        """n_augment fused samples per tail class (the same draw for a given seed and mask kind)."""
        gen = torch.Generator().manual_seed(self.seed)
        return cam_fusion(self.stage1, self.latents, self.train.y, self.tail, self.cfg.n_augment,
                          k=self.cfg.k_neighbours, masks=masks, generator=gen)

    def images(self, latents: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """Images of latents after `steps` refinement steps (seeded noise)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        z = refine(self.denoiser, latents, steps, self.cfg.refine_schedule, generator=gen)
        return batched(self.codec.decode, z, 512)


def prepare(dataset: str, seed: int, cfg: Config) -> Seed:
    """Draw the seed's long-tailed set and train (or load) its AutoencoderKL, Stage 1 model and denoiser."""
    lt, tail, rows = long_tailed(dataset, seed, cfg)
    key = f"{dataset}-lt{cfg.imbalance.get(dataset)}-max{cfg.n_max.get(dataset)}-seed{seed}"
    clock, cost = time.process_time(), {}
    kl = KLConfig(pretrained=cfg.ae_pretrained, subfolder=cfg.ae_subfolder, image_size=cfg.ae_image_size,
                  block_channels=tuple(cfg.ae_width), latent_channels=cfg.ae_latent, steps=cfg.ae_steps,
                  batch_size=cfg.ae_batch, seed=seed)
    codec = fit_latent_codec(lt.x, kl, data_key=key)
    latents = batched(codec.encode, lt.x, 512)
    cost["autoencoder-kl"], clock = time.process_time() - clock, time.process_time()
    il = ILConfig(n_channels=cfg.il_channels, width=cfg.il_width, generations=cfg.il_generations,
                  interaction_steps=cfg.il_interaction_steps, imitation_steps=cfg.il_imitation_steps, seed=seed)
    stage1 = fit_iterated(latents, lt.y, lt.n_classes, il, data_key=f"{key}-{kl}")
    cost["iterated-learning"], clock = time.process_time() - clock, time.process_time()
    den = DenoiserConfig(width=cfg.denoiser_width, steps=cfg.denoiser_steps, seed=seed)
    denoiser = fit_denoiser(latents, den, data_key=f"{key}-{kl}")
    cost["denoiser"] = time.process_time() - clock
    return Seed(dataset, seed, cfg, lt, tail, rows, codec, latents, stage1, denoiser, cost)


# --------------------------------------------------------------------------- arms


def oversample(s: Seed) -> tuple[torch.Tensor, torch.Tensor]:
    """n_augment tail images per tail class, drawn with replacement from that class's real images."""
    gen = torch.Generator().manual_seed(s.seed)
    rows = []
    for c in s.tail:
        members = torch.nonzero(tail_members(s.train.y, [c])).squeeze(1)
        rows.append(members[torch.randint(len(members), (s.cfg.n_augment,), generator=gen)])
    rows = torch.cat(rows)
    return s.train.x[rows], s.train.y[rows]


def arm_data(s: Seed, arm: str, fused: dict[str, Fusion]) -> data.Dataset:
    """The training set of an arm: the long-tailed set plus the arm's extra images."""
    if arm in ("none", "reweight"):
        return s.train
    if arm == "oversample":
        x, y = oversample(s)
    else:
        f = fused[FUSION_ARMS[arm]]
        x, y = s.images(f.latents, s.cfg.refine_steps if arm == "cam-fusion+refine" else 0), f.labels
    return data.Dataset(torch.cat([s.train.x, x]), torch.cat([s.train.y, y.to(s.train.y.dtype)]), s.train.info)


def scores(y: torch.Tensor, probs: torch.Tensor, task: str, tail: list[int]) -> dict[str, float]:
    """classification_metrics plus per-class average precision and recall, their tail and overall means."""
    out = classification_metrics(y, probs, task)
    y, p = y.numpy(), probs.numpy()
    onehot = y if y.ndim == 2 else np.eye(p.shape[1])[y]
    hits = predictions(p, y.ndim == 2) if y.ndim == 2 else np.eye(p.shape[1])[p.argmax(1)]
    ap = np.array([average_precision_score(onehot[:, k], p[:, k]) if onehot[:, k].any() else np.nan
                   for k in range(p.shape[1])])
    recall = (hits * onehot).sum(0) / np.maximum(onehot.sum(0), 1)
    out |= {"ap": float(np.nanmean(ap)), "tail_ap": float(np.nanmean(ap[tail])),
            "tail_recall": float(recall[tail].mean())}
    return out | {f"recall_{k}": float(r) for k, r in enumerate(recall)}


def classifier_rows(s: Seed, fused: dict[str, Fusion], val: data.Dataset, test: data.Dataset) -> list[dict]:
    """Train one classifier per arm (same seed, same initial weights) and score it on the test split."""
    cfg, rows = s.cfg, []
    kw = {"width": cfg.clf_width} if cfg.clf_arch == "cnn" else {}
    for arm in cfg.arms:
        clock = time.process_time()
        fit = train.train_classifier(arm_data(s, arm, fused), val, arch=cfg.clf_arch, steps=cfg.clf_steps,
                                     min_epochs=cfg.clf_min_epochs, batch_size=cfg.clf_batch, lr=cfg.clf_lr,
                                     seed=s.seed, class_weight="balanced" if arm == "reweight" else None,
                                     monitor=cfg.clf_monitor, **kw)
        probs = train.predict_proba(fit.model, test.x, task=test.info.task)
        values = scores(test.y, probs, test.info.task, s.tail) | {"cpu_seconds": time.process_time() - clock}
        rows += [{"dataset": s.dataset, "arm": arm, "seed": s.seed, "metric": m, "value": v}
                 for m, v in values.items()]
    return rows


# --------------------------------------------------------------------------- image quality


def reference_images(s: Seed, n_per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real tail images the seed never trained on (training split minus its long-tailed set), in two disjoint sets:
    n_per_class per tail class (the reference), and as many per class as fusion makes (a real-vs-real floor), with
    the labels of the second."""
    full = data.load_cached(s.dataset, "train")
    unused = torch.ones(len(full), dtype=torch.bool)
    unused[torch.from_numpy(s.rows)] = False
    gen = torch.Generator().manual_seed(s.seed)
    ref, alt = [], []
    for c in s.tail:
        rows = torch.nonzero(unused & tail_members(full.y, [c])).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        ref.append(rows[:n_per_class])
        alt.append(rows[n_per_class:n_per_class + s.cfg.n_augment])
    alt = torch.cat(alt)
    return full.x[torch.cat(ref)], full.x[alt], full.y[alt]


def quality_rows(s: Seed, fused: dict[str, Fusion], oracle: Oracle) -> list[dict]:
    """Frechet distance to real tail images and the oracle's agreement with the tail label (`tail_fidelity`) per
    refinement step count, with the CPU seconds of refining and decoding; and the same for three references: other
    real tail images, their AutoencoderKL reconstructions, and random-mask fusion."""
    ref, alt, alt_labels = reference_images(s, s.cfg.n_fid)
    ref_features = classifier_features(oracle.model, ref)

    def measure(arm: str, x: torch.Tensor, labels: torch.Tensor, steps: int = 0) -> list[dict]:
        agree = oracle.agreement(x, labels) if labels.ndim == 1 else float("nan")
        distance = frechet_distance_features(classifier_features(oracle.model, x), ref_features)
        return [{"dataset": s.dataset, "seed": s.seed, "arm": arm, "metric": m, "value": v, "refine_steps": steps}
                for m, v in (("frechet", distance), ("tail_fidelity", agree))]

    rows = measure("real", alt, alt_labels) + measure("vae-recon", batched(s.codec.forward, alt, 512), alt_labels)
    if "random" in fused:
        rows += measure("random-mask", s.images(fused["random"].latents), fused["random"].labels)
    f = fused["cam"]
    for steps in s.cfg.refine_grid:
        clock = time.process_time()
        x = s.images(f.latents, steps)
        seconds = time.process_time() - clock
        rows += measure("cam-fusion", x, f.labels, steps)
        rows.append(rows[-1] | {"metric": "refine_cpu_seconds", "value": seconds})
    return rows


# --------------------------------------------------------------------------- the task


def run_seed(task: dict) -> list[dict]:
    """Every arm of one dataset and seed: tidy result rows (dataset, arm, seed, metric, value[, refine_steps]).

    task: the notebook's UPPER_CASE parameters with its coordinates `dataset` and `seed` (`latentlab.grid.tasks`).
    """
    dataset, seed, cfg = task["dataset"], task["seed"], Config.from_parameters(task)
    s = prepare(dataset, seed, cfg)
    clock = time.process_time()
    kinds = {FUSION_ARMS[a] for a in cfg.arms if a in FUSION_ARMS} | {"cam"}
    fused = {kind: s.fuse(kind) for kind in sorted(kinds)}
    s.cpu_seconds["fusion"] = time.process_time() - clock
    val = capped(data.load_cached(dataset, "val"), cfg.n_val)
    test = capped(data.load_cached(dataset, "test"), cfg.n_test)
    rows = classifier_rows(s, fused, val, test) + quality_rows(s, fused, cfg.oracle(dataset))
    rows += [{"dataset": dataset, "arm": stage, "seed": seed, "metric": "cpu_seconds", "value": v}
             for stage, v in s.cpu_seconds.items()]
    return rows


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) the oracle of task['dataset']: its result rows (validation / test accuracy, majority rate)."""
    return Config.from_parameters(task).oracle(task["dataset"]).rows()


# --------------------------------------------------------------------------- the paper's Figure 2


@dataclass
class Example:
    """One fused sample at every stage (each tensor has one row per example)."""

    tail: torch.Tensor         # tail images
    head: torch.Tensor         # their head partners
    tail_mip: torch.Tensor     # channel-wise maximum projections of their sparse codes
    head_mip: torch.Tensor
    tail_keep: torch.Tensor    # CAM_t > q1 (q1 = 0.5)
    head_swap: torch.Tensor    # CAM_h < q2 (q2 = 0.5)
    fused_mip: torch.Tensor
    refined: dict              # refinement steps -> images


def fusion_example(dataset: str, seed: int, cfg: Config, n: int = 6, steps=(0, 3, 10)) -> Example:
    """The first n cam-fusion samples of a seed, stage by stage (models loaded from the cache the grid filled)."""
    s = prepare(dataset, seed, cfg)
    f = s.fuse("cam")
    pick = torch.linspace(0, len(f.labels) - 1, n).long()  # spread over the tail classes
    t, h = f.tail_index[pick], f.head_index[pick]
    codes = sparse_codes(s.stage1, s.latents[torch.cat([t, h])])
    cams = code_cams(s.stage1, codes)
    mips = channel_max_projection(codes)
    refined = {k: s.images(f.latents[pick], k) for k in steps}
    return Example(s.train.x[t], s.train.x[h], mips[:n], mips[n:], cams[:n] > 0.5, cams[n:] < 0.5,
                   channel_max_projection(f.codes[pick]), refined)



def example_figure(ex: Example, title: str = ""):
    """The paper's Figure 2 for each example (one row each): tail image, its sparse code (channel-wise maximum),
    the kept cells (CAM_t > 0.5), the head partner, its code, the swapped cells (CAM_h < 0.5), the fused code, and
    the decoded image after each number of refinement steps."""
    import matplotlib.pyplot as plt

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


REFERENCE_STYLES = {"real": ":", "vae-recon": "--", "random-mask": "-."}


def quality_figure(results, metrics=("frechet", "tail_fidelity")):
    """Per dataset (columns) and metric (rows): cam-fusion images vs refinement steps (mean ± sd over seeds), with
    the references as horizontal lines (real tail images, their reconstructions, random-mask fusion at 0 steps)."""
    import matplotlib.pyplot as plt

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
