"""Notebook 05's experiment: CAM-guided feature-space fusion for long-tailed classes (Elberg et al. 2024).

One task is one dataset and one seed, {"cfg": Config, "dataset": d, "seed": s} (`latentlab.grid.tasks`).
`run_seed(task)` reads the dataset's splits once (the training split, and fixed stratified subsets of validation and
test, `capped`) and hands them down:

1. draws the seed's long-tailed training set (`long_tailed`): an exponential profile with imbalance ratio rho for
   multi-class data (the rarest `n_tail` classes are the tail), the minority class subsampled to n_major / rho for
   binary data (it is the tail), the natural long tail of multi-label data (its rarest labels);
2. trains the seed's own generative models on it (`prepare`; each cached by its config and the data it saw): the
   AutoencoderKL (or loads a pretrained one), Stage 1 iterated learning on its latents, and the latent denoiser;
3. builds every arm's training set: `none`; `oversample` (tail images repeated); `reweight` (class-balanced loss
   over every class: `cfg.clf` with class_weight='balanced'); `reweight-tail` (only the tail classes up-weighted, each
   by (n_c + n_augment) / n_c: the loss of adding n_augment copies, so it touches the classes augmentation touches,
   `tail_weights`); `cam-fusion` (0 refinement steps); its controls, each changing one thing (`FUSIONS`):
   `shuffled-mask` (each CAM's cells permuted: as many tail cells, random places), `random-mask` (U(0, 1) masks:
   places and amount both change) and `random-partner` (CAM masks, any head partner); `cam-fusion+reweight` (the
   fused images with the class-balanced loss, what a practitioner would run); `cam-fusion+refine` (the same fused
   latents after `refine_steps` steps). Every augmenting arm adds `n_augment` images per tail class;
4. trains one classifier per arm (`latentlab.train.fit_classifier`), all from the seed's initial weights, selected on
   the balanced validation split, and scores it on the balanced test split: tail-class and overall average
   precision, balanced accuracy, per-class recall, AUC;
5. measures the Frechet distance between fused and real tail images on the oracle's features, and the oracle's
   agreement with the tail label, for every refinement step count in `refine_grid`, with the CPU time it took;
6. runs the quality gates on the seed's own models (`gate_rows`, `latentlab.gates`), returned as gate rows beside
   the result rows (`grid.tables` tells them apart):

   * "autoencoder_kl" and "stage1": `gates.reconstruction_gate` of the AutoencoderKL's reconstructions and of the
     Stage 1 round trip (image, latent, sparse code, Stage 1 decoder, image: the path fused codes are decoded
     through, `stage1_reconstruct`) on the validation split (the whole of it, `held_out`: at most GATE_IMAGES of the
     tail classes, check names prefixed "tail_", and of all classes, prefixed "all_"; the split the latent space was
     chosen on, `instrument_sweep`), with the oracle's accuracy on the test split's tail images and their
     reconstructions reported beside;
   * "denoiser": real held-out tail latents refined as the fused ones are must stay real tail images
     (`denoiser_gate_rows`); "feature_ae": the label-free feature autoencoder beats the mean image
     (`feature_gate_rows`);
   The fused images themselves are the method's output, not an instrument: whether they keep their tail label
   (`tail_fidelity`) and how far they are from real tail images (`frechet`, `frechet_ae`) are result rows of
   `quality_rows`, per refinement step count, beside the same measures of real tail images and their
   reconstructions. A method whose images lose the label is tested, and its classifier claims say what that did.

Classifier convergence ("classifier") is a separate small task: `convergence_rows` retrains seed 0's `none` arm at
2x the updates, `classifier_gate` compares it with the grid's run (tolerance: one point, or the seed sd if larger).
Every augmenting arm adds its images from the first epoch on (`FIRST_SYNTHETIC_EPOCH`), so no kept model predates
them; each run records its kept validation check (`best_epoch`) and the validation accuracy there (`val_accuracy`).

The paper's claims are in `latentlab.papers.cam_fusion`, the figures in `latentlab.plots.cam_fusion`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from latentlab import data, gates, results, train
from latentlab.config import ClfConfig, OracleConfig, Params
from latentlab.frechet import classifier_features, frechet_distance_features
from latentlab.metrics import classification_metrics, per_class_average_precision, predictions
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, encode_all, epochs_for, fit_autoencoder
from latentlab.models.autoencoder import reconstruct as ae_reconstruct
from latentlab.models.denoiser import REFINE_MODES, DenoiserConfig, LatentDenoiser, fit_denoiser, refine
from latentlab.models.iterated import ILConfig, IteratedModel, fit_iterated
from latentlab.models.latent_kl import KLConfig, LatentCodec, fit_latent_codec
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers.cam_fusion import Fusion, cam_fusion, channel_max_projection, code_cams, sparse_codes
from latentlab.utils import batched

ARMS = ("none", "oversample", "reweight", "reweight-tail", "random-mask", "shuffled-mask", "random-partner",
        "cam-fusion", "cam-fusion+reweight", "cam-fusion+refine")
# The fusions a seed draws (`Seed.fuse`): kind -> (masks, partners) of `cam_fusion`; and the kind each fusion arm adds.
FUSIONS = {"cam": ("cam", "cam"), "shuffled": ("shuffled", "cam"), "random": ("random", "cam"),
           "random-partner": ("cam", "random")}
FUSION_ARMS = {"random-mask": "random", "shuffled-mask": "shuffled", "random-partner": "random-partner",
               "cam-fusion": "cam", "cam-fusion+reweight": "cam", "cam-fusion+refine": "cam"}
CONTROLS = {"shuffled-mask": "shuffled", "random-mask": "random", "random-partner": "random-partner"}  # quality rows
SYNTHETIC_ARMS = ("oversample", *FUSION_ARMS)  # the arms that add images to the long-tailed set
BALANCED_ARMS = ("reweight", "cam-fusion+reweight")  # a class-balanced loss over every class
FIRST_SYNTHETIC_EPOCH = 0  # they add them to the training set itself: every epoch sees them
SCALE = 4  # the scale check: this many times the AutoencoderKL's and Stage 1's updates (`scaled`)
HEADLINE_ARMS = ("none", "oversample", "shuffled-mask", "cam-fusion")  # the arms of the scale check's claims
FEATURE_AE_IMAGES = 10000  # training images (a fixed draw, no labels) of the label-free feature autoencoder
GATE_IMAGES = 1000  # held-out images per reconstruction gate (a fixed subset, the same for every seed)
AGREEMENT_RATIO = 0.8  # refined real tail images must keep their label this often, relative to the same unrefined


@dataclass(frozen=True)
class Config(Params):
    """Notebook 05's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`, ORACLE_* in `oracle`)."""

    NOTEBOOK = "05_cam_fusion"

    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    workers: int | None
    imbalance: dict                 # rho per dataset: head-class over tail-class images
    n_max: dict                     # head-class images per dataset (absent: all)
    n_tail: int                     # rarest classes marked tail (binary data: the minority class only)
    tail_order: str                 # "fixed" (label order along the profile) or "seeded" (`tail_order`)
    n_augment: int                  # images added per tail class by every augmenting arm
    ae_pretrained: str | None       # a from_pretrained name (a Stable Diffusion VAE); None trains one here
    ae_subfolder: str | None
    ae_image_size: int | None       # resize for a pretrained VAE
    ae_latent: int
    ae_width: tuple[int, ...]
    ae_steps: int
    ae_batch: int
    il_channels: int
    il_width: int
    il_generations: int
    il_interaction_steps: int
    il_imitation_steps: int
    k_neighbours: int
    denoiser_width: int
    denoiser_steps: int
    refine_schedule: int            # N: the DDIM schedule whose last steps refine a fused latent
    refine_steps: int               # N / d of the cam-fusion+refine arm (the official script's 3)
    refine_mode: str                # "sdedit" (noise, then denoise) or "official" (no added noise), `refine`
    refine_grid: tuple[int, ...]
    n_fid: int                      # real tail images per tail class, the reference of the Frechet distance
    feature_ae_steps: int           # updates of the label-free feature autoencoder (whole training split, no labels)
    scale_seeds: tuple[int, ...]    # the scale check: SCALE x the AutoencoderKL's and Stage 1's updates on these seeds
    clf: ClfConfig
    oracle: OracleConfig
    n_val: int | None
    n_test: int | None

    def __post_init__(self):
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"Unknown arms {sorted(unknown)}. Choose from: {', '.join(ARMS)}.")
        tail_order(2, 0, self.tail_order)  # refuses an unknown TAIL_ORDER before any worker starts
        if self.refine_mode not in REFINE_MODES:
            raise ValueError(f"Unknown REFINE_MODE {self.refine_mode!r}. Choose one of: {', '.join(REFINE_MODES)}.")
        if not 0 <= self.refine_steps <= self.refine_schedule or max(self.refine_grid) > self.refine_schedule:
            raise ValueError(f"Refinement steps must lie in [0, REFINE_SCHEDULE={self.refine_schedule}].")

    def kl(self, seed: int) -> KLConfig:
        """The seed's AutoencoderKL (AE_*)."""
        return KLConfig(pretrained=self.ae_pretrained, subfolder=self.ae_subfolder, image_size=self.ae_image_size,
                        block_channels=self.ae_width, latent_channels=self.ae_latent, steps=self.ae_steps,
                        batch_size=self.ae_batch, seed=seed)

    def il(self, seed: int) -> ILConfig:
        """The seed's Stage 1 model (IL_*)."""
        return ILConfig(n_channels=self.il_channels, width=self.il_width, generations=self.il_generations,
                        interaction_steps=self.il_interaction_steps, imitation_steps=self.il_imitation_steps,
                        seed=seed)

    def denoiser(self, seed: int) -> DenoiserConfig:
        """The seed's latent denoiser (DENOISER_*)."""
        return DenoiserConfig(width=self.denoiser_width, steps=self.denoiser_steps, seed=seed)

    def feature_ae(self, n_images: int) -> AEConfig:
        """The label-free feature autoencoder (FEATURE_AE_STEPS updates on n_images images)."""
        return AEConfig(kind="ae", latent_dim=32, width=16, epochs=epochs_for(self.feature_ae_steps, n_images, 128),
                        batch_size=128, seed=0)


def scaled(cfg: Config) -> Config:
    """The scale check's config: SCALE x the AutoencoderKL's and Stage 1's updates, on cfg.scale_seeds, the
    HEADLINE_ARMS only (the rest as cfg: the denoiser, the classifiers and the oracle do not change)."""
    arms = tuple(a for a in cfg.arms if a in HEADLINE_ARMS)
    return cfg.replace(ae_steps=SCALE * cfg.ae_steps, il_interaction_steps=SCALE * cfg.il_interaction_steps,
                       il_imitation_steps=SCALE * cfg.il_imitation_steps, seeds=tuple(cfg.scale_seeds), arms=arms,
                       scale_seeds=())


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


def tail_order(n_classes: int, seed: int, how: str) -> np.ndarray:
    """The classes in the order of the long-tail profile (most images first, the last `n_tail` are the tail): label
    order for "fixed" (so the tail is always the same classes), a permutation drawn with the seed for "seeded"
    (so each seed's tail is another draw of classes, and a verdict is not about a few particular ones)."""
    if how == "fixed":
        return np.arange(n_classes)
    if how == "seeded":
        return np.random.default_rng([seed, 5]).permutation(n_classes)
    raise ValueError(f"Unknown TAIL_ORDER {how!r}. Choose 'fixed' or 'seeded'.")


def long_tailed(full: data.Dataset, seed: int, cfg: Config) -> tuple[data.Dataset, list[int], np.ndarray]:
    """The seed's long-tailed subset of a training split `full`, its tail classes, and its rows in `full`."""
    dataset = full.info.name
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
        order = tail_order(full.n_classes, seed, cfg.tail_order)
        idx = data.long_tail_subset(full.y, rho=rho, profile="exp", n_max=n_max, seed=seed, order=order)
    counts = np.bincount(full.y[idx].numpy(), minlength=full.n_classes)
    n_tail = min(cfg.n_tail, full.n_classes - 1)  # binary data: the minority class alone
    return full.subset(idx), sorted(np.argsort(counts, kind="stable")[:n_tail].tolist()), idx


def capped(ds: data.Dataset, n: int | None) -> data.Dataset:
    """At most n images of ds, class proportions kept (stratified; a fixed draw, the same for every seed).
    Multi-label data: `data.fixed_subset`."""
    if n is None or n >= len(ds):
        return ds
    if ds.info.multilabel:
        return data.fixed_subset(ds, n)
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

    seed: int
    cfg: Config
    full: data.Dataset             # the whole training split the long-tailed set was drawn from
    train: data.Dataset            # the long-tailed set
    tail: list[int]
    rows: np.ndarray               # the long-tailed set's rows in `full`
    codec: LatentCodec
    latents: torch.Tensor
    stage1: IteratedModel
    denoiser: LatentDenoiser
    cpu_seconds: dict = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.full.info.name

    def fuse(self, masks: str, partners: str = "cam") -> Fusion:
        """n_augment fused samples per tail class (the same draw for a given seed, mask and partner kind; the same
        pairs for every mask kind)."""
        gen = torch.Generator().manual_seed(self.seed)
        return cam_fusion(self.stage1, self.latents, self.train.y, self.tail, self.cfg.n_augment,
                          k=self.cfg.k_neighbours, masks=masks, partners=partners, generator=gen)

    def images(self, latents: torch.Tensor, steps: int = 0, mode: str | None = None) -> torch.Tensor:
        """Images of latents after `steps` refinement steps (seeded noise) in `mode` (default: REFINE_MODE)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        z = refine(self.denoiser, latents, steps, self.cfg.refine_schedule, generator=gen,
                   mode=mode or self.cfg.refine_mode)
        return batched(self.codec.decode, z, 512)


def prepare(full: data.Dataset, seed: int, cfg: Config) -> Seed:
    """Draw the seed's long-tailed set from the training split `full` and train (or load) its AutoencoderKL,
    Stage 1 model and denoiser (each cached by its config and the tensors it trains on)."""
    lt, tail, rows = long_tailed(full, seed, cfg)
    clock, cost = time.process_time(), {}
    codec = fit_latent_codec(lt.x, cfg.kl(seed))
    latents = batched(codec.encode, lt.x, 512)
    cost["autoencoder-kl"], clock = time.process_time() - clock, time.process_time()
    stage1 = fit_iterated(latents, lt.y, lt.n_classes, cfg.il(seed))
    cost["iterated-learning"], clock = time.process_time() - clock, time.process_time()
    denoiser = fit_denoiser(latents, cfg.denoiser(seed))
    cost["denoiser"] = time.process_time() - clock
    return Seed(seed, cfg, full, lt, tail, rows, codec, latents, stage1, denoiser, cost)


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
    if arm in ("none", "reweight", "reweight-tail"):
        return s.train
    if arm == "oversample":
        x, y = oversample(s)
    else:
        f = fused[FUSION_ARMS[arm]]
        x, y = s.images(f.latents, s.cfg.refine_steps if arm == "cam-fusion+refine" else 0), f.labels
    return data.Dataset(torch.cat([s.train.x, x]), torch.cat([s.train.y, y.to(s.train.y.dtype)]), s.train.info)


def arm_classifier(cfg: Config, arm: str) -> ClfConfig:
    """The classifier an arm trains: cfg.clf, with a class-balanced loss for the `BALANCED_ARMS`."""
    return cfg.clf.replace(class_weight="balanced") if arm in BALANCED_ARMS else cfg.clf


def tail_weights(y: torch.Tensor, n_classes: int, tail: list[int], n_augment: int) -> torch.Tensor:
    """`reweight-tail`'s per-class loss weights: (n_c + n_augment) / n_c for a tail class c with n_c images, 1 for the
    others: in expectation the loss of adding n_augment copies of each tail class, the classes augmentation adds to
    (multi-hot labels: n_c counts the images carrying label c)."""
    y = torch.as_tensor(y)
    counts = (y.sum(0) if y.ndim == 2 else torch.bincount(y.long(), minlength=n_classes)).double()
    weight = torch.ones(n_classes, dtype=torch.float64)
    t = torch.tensor(tail)
    if (counts[t] == 0).any():
        raise ValueError(f"A tail class in {tail} has no images.")
    weight[t] = (counts[t] + n_augment) / counts[t]
    return weight.float()


def scores(y: torch.Tensor, probs: torch.Tensor, task: str, tail: list[int]) -> dict[str, float]:
    """classification_metrics plus per-class average precision and recall, their tail and overall means."""
    out = classification_metrics(y, probs, task)
    ap = per_class_average_precision(y, probs)  # NaN for a class without test images
    y, p = y.numpy(), probs.numpy()
    onehot = y if y.ndim == 2 else np.eye(p.shape[1])[y]
    hits = predictions(p, True) if y.ndim == 2 else np.eye(p.shape[1])[p.argmax(1)]
    recall = (hits * onehot).sum(0) / np.maximum(onehot.sum(0), 1)
    out |= {"ap": float(np.nanmean(ap)), "tail_ap": float(np.nanmean(ap[tail])),
            "tail_recall": float(recall[tail].mean())}
    return out | {f"recall_{k}": float(r) for k, r in enumerate(recall)}


def kept_check(fit: train.FitResult) -> dict[str, float]:
    """The kept validation check of a fit: its epoch (`best_epoch`) and the validation accuracy there."""
    return {"best_epoch": fit.best_epoch, "val_accuracy": fit.history[fit.best_epoch].get("val_accuracy", np.nan)}


def fit_arm(train_set: data.Dataset, val: data.Dataset, clf: ClfConfig, seed: int, arm: str,
            weight: torch.Tensor | None = None) -> train.FitResult:
    """One arm's classifier; no validation check (so no kept model) before the arm's first synthetic epoch. weight:
    per-class loss weights in place of clf.class_weight's (`reweight-tail`)."""
    hooks = train.Hooks(validate_from=FIRST_SYNTHETIC_EPOCH if arm in SYNTHETIC_ARMS else 0)
    return train.fit_classifier(train_set, val, clf, seed, hooks=hooks, weight=weight)


def classifier_rows(s: Seed, fused: dict[str, Fusion], val: data.Dataset, test: data.Dataset) -> list[dict]:
    """Train one classifier per arm (same seed, same initial weights) and score it on the test split, with its kept
    validation check (and, for the arms that add images, the epoch of their first synthetic batch)."""
    rows = []
    for arm in s.cfg.arms:
        clock = time.process_time()
        weight = (tail_weights(s.train.y, s.train.n_classes, s.tail, s.cfg.n_augment) if arm == "reweight-tail"
                  else None)
        fit = fit_arm(arm_data(s, arm, fused), val, arm_classifier(s.cfg, arm), s.seed, arm, weight)
        probs = train.predict_proba(fit.model, test.x, task=test.info.task)
        values = scores(test.y, probs, test.info.task, s.tail) | kept_check(fit)
        if arm in SYNTHETIC_ARMS:
            values["first_synthetic_epoch"] = FIRST_SYNTHETIC_EPOCH
        rows += results.rows(s.dataset, arm, s.seed, values | {"cpu_seconds": time.process_time() - clock})
    return rows


# --------------------------------------------------------------------------- image quality


def reference_images(s: Seed, n_per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real tail images the seed never trained on (training split minus its long-tailed set), in two disjoint sets:
    n_per_class per tail class (the reference), and as many per class as fusion makes (a real-vs-real floor), with
    the labels of the second."""
    unused = torch.ones(len(s.full), dtype=torch.bool)
    unused[torch.from_numpy(s.rows)] = False
    gen = torch.Generator().manual_seed(s.seed)
    ref, alt = [], []
    for c in s.tail:
        rows = torch.nonzero(unused & tail_members(s.full.y, [c])).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=gen)]
        ref.append(rows[:n_per_class])
        alt.append(rows[n_per_class:n_per_class + s.cfg.n_augment])
    alt = torch.cat(alt)
    return s.full.x[torch.cat(ref)], s.full.x[alt], s.full.y[alt]


def feature_encoder(dataset: str, cfg: Config, full: data.Dataset | None = None) -> ConvAutoencoder:
    """The label-free feature space of the image-quality measures: a convolutional autoencoder (32-d code) trained
    without labels on FEATURE_AE_IMAGES images of the whole training split (a fixed draw, the same for every seed;
    cached). Its encoder never saw a label, so a Frechet distance on its codes does not merely repeat the oracle's
    class decision (`frechet_ae` beside the oracle's `frechet`)."""
    x = data.fixed_subset(data.load_cached(dataset, "train") if full is None else full, FEATURE_AE_IMAGES).x
    return fit_autoencoder(x, cfg.feature_ae(len(x)))


def image_quality(oracle: Oracle, x: torch.Tensor, labels: torch.Tensor, ref_features: torch.Tensor,
                  encoder: ConvAutoencoder | None = None, ref_codes: torch.Tensor | None = None) -> dict:
    """Frechet distance of images x to the reference (the oracle's features of real tail images), the share of x
    whose oracle label is their tail label (`tail_fidelity`; NaN for multi-hot labels) and, given the label-free
    `encoder` and its codes of the reference, the Frechet distance on those codes (`frechet_ae`)."""
    agree = oracle.agreement(x, labels) if labels.ndim == 1 else float("nan")
    out = {"frechet": frechet_distance_features(classifier_features(oracle.model, x), ref_features),
           "tail_fidelity": agree}
    if encoder is not None:
        out["frechet_ae"] = frechet_distance_features(encode_all(encoder, x), ref_codes)
    return out


def quality_rows(s: Seed, fused: dict[str, Fusion], oracle: Oracle,
                 encoder: ConvAutoencoder | None = None) -> list[dict]:
    """`image_quality` of the fused images per refinement step count in both refinement modes (column
    `refine_mode`; REFINE_MODE's rows are the claims'), with the CPU seconds of refining and decoding; the same for
    the references: other real tail images, their AutoencoderKL reconstructions, those reconstructions' latents
    refined like the fused ones (`real-refined`: the denoiser's sanity check, per step count and mode), and the
    fusion controls among the arms (`CONTROLS`)."""
    ref, alt, alt_labels = reference_images(s, s.cfg.n_fid)
    ref_features = classifier_features(oracle.model, ref)
    ref_codes = encode_all(encoder, ref) if encoder is not None else None

    def measure(arm: str, x: torch.Tensor, labels: torch.Tensor, steps: int = 0, mode: str | None = None):
        values = image_quality(oracle, x, labels, ref_features, encoder, ref_codes)
        return results.rows(s.dataset, arm, s.seed, values, refine_steps=steps, refine_mode=mode or s.cfg.refine_mode)

    rows = measure("real", alt, alt_labels) + measure("vae-recon", batched(s.codec.forward, alt, 512), alt_labels)
    for arm, kind in CONTROLS.items():
        if kind in fused:
            rows += measure(arm, s.images(fused[kind].latents), fused[kind].labels)
    f = fused["cam"]
    z_real = batched(s.codec.encode, alt, 512)
    for mode in (s.cfg.refine_mode, *(m for m in REFINE_MODES if m != s.cfg.refine_mode)):
        for steps in s.cfg.refine_grid:
            if steps == 0 and mode != s.cfg.refine_mode:
                continue  # 0 steps is the same image in every mode
            clock = time.process_time()
            x = s.images(f.latents, steps, mode)
            seconds = time.process_time() - clock
            rows += measure("cam-fusion", x, f.labels, steps, mode)
            rows.append(rows[-1] | {"metric": "refine_cpu_seconds", "value": seconds})
            if steps:
                rows += measure("real-refined", s.images(z_real, steps, mode), alt_labels, steps, mode)
    return rows


# --------------------------------------------------------------------------- quality gates


def held_out(test: data.Dataset, tail: list[int], n: int = GATE_IMAGES) -> dict[str, data.Dataset]:
    """The reconstruction gates' images: at most n test images of the tail classes ("tail") and of all classes
    ("all"), stratified fixed draws (`capped`): the same images for every seed."""
    rows = torch.nonzero(tail_members(test.y, tail)).squeeze(1).numpy()
    return {"tail": capped(test.subset(rows), n), "all": capped(test, n)}


def stage1_reconstruct(s: Seed, x: torch.Tensor) -> torch.Tensor:
    """Images x through the whole Stage 1 round trip: AutoencoderKL latent, sparse code S, decoder D back to a latent,
    AutoencoderKL decoder. Fused images are decoded this way, so it bounds what fusion can give back."""
    model = s.stage1.eval()
    z = batched(s.codec.encode, x, 512)
    return batched(s.codec.decode, batched(lambda v: model.decode(model.encode(v)), z, 512), 512)


def _prefixed(rows: list[dict], prefix: str) -> list[dict]:
    return [r | {"check": f"{prefix}_{r['check']}"} for r in rows]


def reconstruction_rows(s: Seed, oracle: Oracle, images: data.Dataset, test: data.Dataset | None = None) -> list[dict]:
    """`gates.reconstruction_gate` of the AutoencoderKL ("autoencoder_kl") and of the Stage 1 round trip ("stage1")
    on held-out tail and all-class images of `images` (`held_out`; checks prefixed "tail_" / "all_"): the oracle
    recognises the reconstructions at least 0.8 x as often as the real images, and their MSE is at most 0.6 x the mean
    image's. `images`: the whole validation split (the run's gates and `instrument_sweep`'s alike). With `test`, the
    oracle's accuracy on the test split's tail images and on their reconstructions is reported beside (checks
    "test_tail_oracle_accuracy_real" / "..._recon", not gated: PneumoniaMNIST's test split comes from other
    patients, where the oracle itself recognises far fewer of the real tail images, so a ratio there measures the
    oracle's shift as much as the instrument)."""
    rows = []
    for instrument, reconstruct in (("autoencoder_kl", lambda x: batched(s.codec.forward, x, 512)),
                                    ("stage1", lambda x: stage1_reconstruct(s, x))):
        for part, ds in held_out(images, s.tail).items():
            rows += _prefixed(gates.reconstruction_gate(oracle, ds.x, ds.y, reconstruct(ds.x), instrument=instrument,
                                                        dataset=s.dataset, seed=s.seed), part)
        if test is not None:
            tail = held_out(test, s.tail)["tail"]
            for kind, x in (("real", tail.x), ("recon", reconstruct(tail.x))):
                rows.append(gates.row(instrument, s.dataset, s.seed, f"test_tail_oracle_accuracy_{kind}",
                                      oracle.agreement(x, tail.y)))
    return rows


def sample_gate_rows(oracle: Oracle, x: torch.Tensor, labels: torch.Tensor, real: torch.Tensor, real_accuracy: float,
                     *, n_classes: int, instrument: str, dataset: str, seed: int) -> list[dict]:
    """The gate of class-conditional samples x (tail images labelled `labels`) against real tail images `real`:
    `oracle_accuracy_real_tail` (reported: the oracle's accuracy on real held-out tail images), `tail_agreement`
    (the share of x the oracle gives their label; passes at >= AGREEMENT_RATIO x real_accuracy) and the Frechet
    rows of `gates.sample_gate` (fd_gap_closed passes at >= 0.7). sample_gate's `min_class_share` is dropped: the
    samples are meant to be of the tail classes only, so the coverage of every class does not apply."""
    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    agree, threshold = oracle.agreement(x, labels), AGREEMENT_RATIO * real_accuracy
    rows = [gates.row(**at, check="oracle_accuracy_real_tail", value=real_accuracy),
            gates.row(**at, check="tail_agreement", value=agree, threshold=threshold, passed=agree >= threshold)]
    frechet = gates.sample_gate(oracle, x, real, n_classes=n_classes, **at, seed_noise=seed)
    return rows + [r for r in frechet if r["check"] != "min_class_share"]


def denoiser_gate_rows(s: Seed, oracle: Oracle) -> list[dict]:
    """The denoiser's sanity check ("denoiser"): real tail images the seed never trained on (`reference_images`'
    second set), encoded and refined with REFINE_STEPS steps of REFINE_MODE exactly as the fused latents are, must
    stay real tail images: `sample_gate_rows` of the refined images against the reference set (their tail agreement
    against 0.8 x the oracle's accuracy on the same real images, their Frechet gap closed), beside `fd_before`
    (reported: the Frechet distance of the same images unrefined, i.e. the AutoencoderKL's reconstructions; the
    refinement should not move it far)."""
    ref, alt, labels = reference_images(s, s.cfg.n_fid)
    if len(alt) > len(ref) // 2:  # sample_gate's floor needs twice as many real images as samples: spread evenly
        keep = torch.linspace(0, len(alt) - 1, len(ref) // 2).long()
        alt, labels = alt[keep], labels[keep]
    real_accuracy = oracle.agreement(alt, labels)
    z = batched(s.codec.encode, alt, 512)
    at = dict(n_classes=s.full.n_classes, instrument="denoiser", dataset=s.dataset, seed=s.seed)
    before = sample_gate_rows(oracle, s.images(z, 0), labels, ref, real_accuracy, **at)
    after = sample_gate_rows(oracle, s.images(z, s.cfg.refine_steps), labels, ref, real_accuracy, **at)
    fd_before = next(r["value"] for r in before if r["check"] == "fd_model")
    return after + [gates.row("denoiser", s.dataset, s.seed, "fd_before", fd_before)]


def feature_gate_rows(encoder: ConvAutoencoder, dataset: str, seed: int, test: data.Dataset) -> list[dict]:
    """The label-free feature autoencoder ("feature_ae"): `gates.error_gate` of its reconstructions of the held-out
    test images (it must beat the mean image clearly, or its codes carry little of the images)."""
    x = test.x[:GATE_IMAGES]
    return gates.error_gate(x, ae_reconstruct(encoder, x), instrument="feature_ae", dataset=dataset, seed=seed)


def gate_rows(s: Seed, oracle: Oracle, test: data.Dataset, val: data.Dataset) -> list[dict]:
    """Every quality gate of a seed's models (module docstring, step 6). Multi-label data have no single label for
    the oracle to check: each instrument then gets one failed `single_label` row (its claims read "not tested")."""
    if test.info.multilabel:
        return [gates.row(i, s.dataset, s.seed, "single_label", 0.0, threshold=1.0, passed=False)
                for i in ("autoencoder_kl", "stage1", "denoiser")]
    return reconstruction_rows(s, oracle, val, test) + denoiser_gate_rows(s, oracle)


# --------------------------------------------------------------------------- the task


def run_seed(task: dict) -> list[dict]:
    """Every arm of one dataset and seed: tidy result rows (dataset, arm, seed, metric, value[, refine_steps]) and
    the seed's gate rows (instrument, dataset, seed, check, value, threshold, passed)."""
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    full = data.load_cached(dataset, "train")
    whole_val = data.load_cached(dataset, "val")  # the gates' images; the classifiers select on N_VAL of them
    val = capped(whole_val, cfg.n_val)
    test = capped(data.load_cached(dataset, "test"), cfg.n_test)
    s = prepare(full, seed, cfg)
    clock = time.process_time()
    kinds = {FUSION_ARMS[a] for a in cfg.arms if a in FUSION_ARMS} | {"cam"}
    fused = {kind: s.fuse(*FUSIONS[kind]) for kind in sorted(kinds)}
    s.cpu_seconds["fusion"] = time.process_time() - clock
    oracle = train_oracle(dataset, cfg.oracle)
    encoder = feature_encoder(dataset, cfg, full)
    rows = classifier_rows(s, fused, val, test) + quality_rows(s, fused, oracle, encoder)
    rows += [r for stage, v in s.cpu_seconds.items() for r in results.rows(dataset, stage, seed, {"cpu_seconds": v})]
    rows += results.rows(dataset, "stage1", seed, stage1_diagnostics(s.stage1, batched(s.codec.encode, val.x, 512),
                                                                    val.y))
    return rows + gate_rows(s, oracle, test, whole_val) + feature_gate_rows(encoder, dataset, seed, test)


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) the oracle of task['dataset'] (its result rows: validation / test accuracy, majority rate) and
    its label-free feature autoencoder (`feature_encoder`), so that the seed grid finds both in the cache."""
    feature_encoder(task["dataset"], task["cfg"])
    return train_oracle(task["dataset"], task["cfg"].oracle).rows()


def convergence_rows(task: dict) -> list[dict]:
    """The convergence task of a dataset (task: cfg, dataset, seed): the seed's `none` classifier retrained at 2x its
    budget (`ClfConfig.scaled(2)`), one result row (arm "none", metric "val_accuracy_2x": the validation accuracy
    of its kept check). It needs no generative model: `none` trains on the long-tailed set alone."""
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    lt, _, _ = long_tailed(data.load_cached(dataset, "train"), seed, cfg)
    val = capped(data.load_cached(dataset, "val"), cfg.n_val)
    fit = fit_arm(lt, val, cfg.clf.scaled(2), seed, "none")
    return results.rows(dataset, "none", seed, {"val_accuracy_2x": kept_check(fit)["val_accuracy"]})


def classifier_gate(results_df: pd.DataFrame, arm: str = "none", tol: float = 0.01) -> list[dict]:
    """The "classifier" gate per dataset (`gates.classifier_convergence`): the change of the validation accuracy of
    `arm` from the grid's run of a seed to its 2x run (`convergence_rows`) must stay below max(tol, the sd of that
    arm's validation accuracy over the grid's seeds). results_df: the grid's rows plus the convergence rows."""
    part = results_df[results_df["arm"] == arm]
    for dataset, d in part.groupby("dataset", sort=False):
        if not (d["metric"] == "val_accuracy_2x").any():
            raise ValueError(f"No 'val_accuracy_2x' row of arm {arm!r} on {dataset!r}: run convergence_rows first.")
    more = part[part["metric"] == "val_accuracy_2x"].assign(metric="val_accuracy")
    return gates.classifier_convergence(part, more, setting=None, tol=tol)


# --------------------------------------------------------------------------- the paper's Figure 2, its data


@dataclass
class Example:
    """One fused sample at every stage (each tensor has one row per example); `plots.cam_fusion.example_figure`."""

    tail: torch.Tensor         # tail images
    head: torch.Tensor         # their head partners
    tail_mip: torch.Tensor     # channel-wise maximum projections of their sparse codes
    head_mip: torch.Tensor
    tail_keep: torch.Tensor    # CAM_t > q1 (q1 = 0.5)
    head_swap: torch.Tensor    # CAM_h < q2 (q2 = 0.5)
    fused_mip: torch.Tensor
    refined: dict              # refinement steps -> images


def fusion_example(s: Seed, n: int = 6, steps=(0, 3, 10)) -> Example:
    """n of a seed's cam-fusion samples (spread over its tail classes), stage by stage."""
    f = s.fuse("cam")
    pick = torch.linspace(0, len(f.labels) - 1, n).long()
    t, h = f.tail_index[pick], f.head_index[pick]
    codes = sparse_codes(s.stage1, s.latents[torch.cat([t, h])])
    cams = code_cams(s.stage1, codes)
    mips = channel_max_projection(codes)
    refined = {k: s.images(f.latents[pick], k) for k in steps}
    return Example(s.train.x[t], s.train.x[h], mips[:n], mips[n:], cams[:n] > 0.5, cams[n:] < 0.5,
                   channel_max_projection(f.codes[pick]), refined)


# --------------------------------------------------------------------------- the instruments' budget, on validation


def stage1_diagnostics(stage1: IteratedModel, z: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """What Stage 1's sparse codes of latents z (labels y) hold: `stage1_accuracy`, the accuracy of its classifier C
    on them (class labels only; NaN for multi-hot), `code_max_prob`, the mean over cells of the largest channel
    probability (1: one-hot at every cell, 1/K: uniform), and `code_one_hot_share`, the share of cells whose largest
    channel holds more than 0.9 of the mass (how sparse the codes are)."""
    model = stage1.eval()
    codes = sparse_codes(model, z)
    top = codes.amax(1)
    with torch.no_grad():
        logits = batched(model.classifier, codes, 1024)
    acc = float((logits.argmax(1) == y).float().mean()) if y.ndim == 1 else float("nan")
    return {"stage1_accuracy": acc, "code_max_prob": float(top.mean()),
            "code_one_hot_share": float((top > 0.9).float().mean())}


def instrument_sweep(task: dict) -> list[dict]:
    """One candidate latent space (task {"cfg", "dataset", "seed", "ae_width", "ae_latent", "ae_steps",
    "il_channels"}: the config with those AE_WIDTH, AE_LATENT, AE_STEPS and IL_CHANNELS): the seed's AutoencoderKL and
    Stage 1 model trained on its long-tailed set (cached, so a candidate equal to the config is `run_seed`'s very
    model), and the reconstruction gates of both ("autoencoder_kl", "stage1", checks prefixed "tail_"/"all_") on the
    *validation* split, plus `stage1_diagnostics` of the validation codes and the CPU seconds of training (0 when
    loaded from the cache). Tidy rows (arm: the instrument, or "stage1" / "cost"), columns ae_width (a string),
    ae_latent, ae_steps, il_channels and latent_grid (h x w). AE_* and IL_CHANNELS of the parameters cell were read
    off this sweep (`write_instrument_record`, configs/05_instrument_budget.csv)."""
    cfg = task["cfg"].replace(ae_width=tuple(task["ae_width"]), ae_latent=int(task["ae_latent"]),
                              ae_steps=int(task["ae_steps"]), il_channels=int(task["il_channels"]))
    dataset, seed = task["dataset"], task["seed"]
    full = data.load_cached(dataset, "train")
    val = data.load_cached(dataset, "val")
    lt, tail, _ = long_tailed(full, seed, cfg)
    clock = time.process_time()
    codec = fit_latent_codec(lt.x, cfg.kl(seed))
    latents = batched(codec.encode, lt.x, 512)
    ae_seconds, clock = time.process_time() - clock, time.process_time()
    stage1 = fit_iterated(latents, lt.y, lt.n_classes, cfg.il(seed))
    il_seconds = time.process_time() - clock
    oracle = train_oracle(dataset, cfg.oracle)
    s = Seed(seed, cfg, full, lt, tail, np.zeros(0, dtype=int), codec, latents, stage1, None)
    extra = dict(ae_width="-".join(map(str, cfg.ae_width)), ae_latent=cfg.ae_latent, ae_steps=cfg.ae_steps,
                 il_channels=cfg.il_channels, latent_grid=f"{latents.shape[-2]}x{latents.shape[-1]}")
    rows = []
    for r in reconstruction_rows(s, oracle, val):
        rows += results.rows(dataset, r["instrument"], seed, {r["check"]: r["value"]}, **extra)
        if not np.isnan(r["threshold"]):
            rows += results.rows(dataset, r["instrument"], seed, {f"{r['check']}_passed": float(r["passed"])},
                                 **extra)
    part = held_out(val, tail)["all"]
    rows += results.rows(dataset, "stage1", seed,
                         stage1_diagnostics(stage1, batched(codec.encode, part.x, 512), part.y), **extra)
    return rows + results.rows(dataset, "cost", seed, {"autoencoder_cpu_seconds": ae_seconds,
                                                       "stage1_cpu_seconds": il_seconds}, **extra)


INSTRUMENT_RECORD = "05_instrument_budget.csv"  # configs/<this>: the latent spaces tried, written by `make choices`
# The candidates of `write_instrument_record`: (AE_WIDTH, AE_LATENT, AE_STEPS, IL_CHANNELS); a 3-block AE halves 28 px
# twice (7 x 7 latents, the old default), a 2-block one once (14 x 14).
INSTRUMENT_CANDIDATES = (((8, 16, 16), 4, 800, 16), ((16, 32, 32), 8, 800, 16), ((8, 16), 2, 800, 16),
                         ((8, 16), 4, 800, 16), ((16, 32), 4, 800, 16), ((16, 32), 4, 800, 32))


def instrument_tasks(cfg: Config, candidates=INSTRUMENT_CANDIDATES, seeds=(0, 1), datasets=None) -> list[dict]:
    """Every (dataset, seed, candidate) of an instrument sweep."""
    return [{"cfg": cfg, "dataset": d, "seed": s, "ae_width": w, "ae_latent": c, "ae_steps": n, "il_channels": k}
            for d in (datasets or cfg.datasets) for s in seeds for (w, c, n, k) in candidates]


def instrument_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per candidate of an `instrument_sweep`: the runs (datasets x seeds), how many passed every reconstruction gate
    of both instruments, the worst ratio of each gate (recognised reconstructions over real, error over the mean
    image's), Stage 1's accuracy and sparsity, and the mean CPU seconds of training."""
    keys = ["ae_width", "ae_latent", "ae_steps", "il_channels", "latent_grid"]
    out = []
    for cand, g in sweep.groupby(keys, sort=False):
        passed = g[g["metric"].str.endswith("_passed")].groupby(["dataset", "seed"])["value"].min()
        row = dict(zip(keys, cand)) | {"runs": len(passed), "runs_passed": int(passed.sum())}
        for inst in ("autoencoder_kl", "stage1"):
            v = g[g["arm"] == inst].pivot_table(index=["dataset", "seed"], columns="metric", values="value")
            for part in ("tail", "all"):
                label = v[f"{part}_oracle_accuracy_recon"] / v[f"{part}_oracle_accuracy_real"]
                error = v[f"{part}_recon_mse"] / v[f"{part}_mean_image_mse"]
                row[f"{inst}/{part}_label_ratio_min"] = float(label.min())
                row[f"{inst}/{part}_error_ratio_max"] = float(error.max())
        diag = g[g["metric"].isin(["stage1_accuracy", "code_max_prob", "code_one_hot_share"])]
        diag = diag.groupby("metric")["value"].mean()
        cost = g[g["arm"] == "cost"].groupby("metric")["value"].mean()
        out.append(row | diag.to_dict() | cost.to_dict())
    return pd.DataFrame(out)


def instrument_record(path=None) -> pd.DataFrame:
    """The record AE_* and IL_CHANNELS were read off (configs/05_instrument_budget.csv, `write_instrument_record`)."""
    from latentlab.config import CONFIGS

    path = CONFIGS / INSTRUMENT_RECORD if path is None else path
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `make choices` writes it (validation images only).")
    return pd.read_csv(path)


def write_instrument_record(path=None, workers: int | None = None, candidates=INSTRUMENT_CANDIDATES) -> pd.DataFrame:
    """The record the latent space was read off (`make choices`): `instrument_sweep` of every candidate on seeds 0
    and 1 of the notebook's DATASETS, the rest as its parameters cell. Writes configs/05_instrument_budget.csv
    (validation images only) and returns its `instrument_summary`: the cheapest candidate that passes on every run is
    the parameters cell's."""
    from latentlab import grid
    from latentlab.config import CONFIGS, REPO
    from latentlab.runner import parameters_of

    cfg = Config.from_parameters(parameters_of(REPO / "notebooks" / f"{Config.NOTEBOOK}.ipynb", "default"))
    sweep = grid.table(instrument_sweep, instrument_tasks(cfg, candidates), workers=workers, desc="latent spaces")
    sweep.to_csv(CONFIGS / INSTRUMENT_RECORD if path is None else path, index=False)
    return instrument_summary(sweep)
