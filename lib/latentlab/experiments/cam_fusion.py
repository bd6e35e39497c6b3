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
     through, `stage1_reconstruct`) on held-out test images (`held_out`: at most GATE_IMAGES of the tail classes,
     check names prefixed "tail_", and of all classes, prefixed "all_");
   * "fused" and "refined": the cam-fusion images at 0 and at `refine_steps` steps (`sample_gate_rows`): the
     oracle's agreement with their tail label must reach AGREEMENT_RATIO x its accuracy on real held-out tail
     images, and their Frechet distance must close 70 % of the gap between a trivial generator and real tail
     images (`gates.sample_gate`, whose class-coverage row is dropped: the samples are tail images by design).

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
GATE_IMAGES = 1000  # held-out images per reconstruction gate (a fixed subset, the same for every seed)
AGREEMENT_RATIO = 0.8  # fused images must keep their tail label this often, relative to real tail images


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

    def images(self, latents: torch.Tensor, steps: int = 0) -> torch.Tensor:
        """Images of latents after `steps` refinement steps (seeded noise)."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        z = refine(self.denoiser, latents, steps, self.cfg.refine_schedule, generator=gen, mode=self.cfg.refine_mode)
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


def image_quality(oracle: Oracle, x: torch.Tensor, labels: torch.Tensor, ref_features: torch.Tensor) -> dict:
    """Frechet distance of images x to the reference (the oracle's features of real tail images) and the share of
    x whose oracle label is their tail label (`tail_fidelity`; NaN for multi-hot labels)."""
    agree = oracle.agreement(x, labels) if labels.ndim == 1 else float("nan")
    return {"frechet": frechet_distance_features(classifier_features(oracle.model, x), ref_features),
            "tail_fidelity": agree}


def quality_rows(s: Seed, fused: dict[str, Fusion], oracle: Oracle) -> list[dict]:
    """`image_quality` of the fused images per refinement step count, with the CPU seconds of refining and
    decoding; and the same for three references: other real tail images, their AutoencoderKL reconstructions, and
    the fusion controls among the arms (`CONTROLS`)."""
    ref, alt, alt_labels = reference_images(s, s.cfg.n_fid)
    ref_features = classifier_features(oracle.model, ref)

    def measure(arm: str, x: torch.Tensor, labels: torch.Tensor, steps: int = 0) -> list[dict]:
        values = image_quality(oracle, x, labels, ref_features)
        return results.rows(s.dataset, arm, s.seed, values, refine_steps=steps)

    rows = measure("real", alt, alt_labels) + measure("vae-recon", batched(s.codec.forward, alt, 512), alt_labels)
    for arm, kind in CONTROLS.items():
        if kind in fused:
            rows += measure(arm, s.images(fused[kind].latents), fused[kind].labels)
    f = fused["cam"]
    for steps in s.cfg.refine_grid:
        clock = time.process_time()
        x = s.images(f.latents, steps)
        seconds = time.process_time() - clock
        rows += measure("cam-fusion", x, f.labels, steps)
        rows.append(rows[-1] | {"metric": "refine_cpu_seconds", "value": seconds})
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


def reconstruction_rows(s: Seed, oracle: Oracle, test: data.Dataset) -> list[dict]:
    """`gates.reconstruction_gate` of the AutoencoderKL ("autoencoder_kl") and of the Stage 1 round trip ("stage1")
    on the held-out tail and all-class images (checks prefixed "tail_" / "all_"): the oracle recognises the
    reconstructions at least 0.8 x as often as the real images, and their MSE is at most 0.6 x the mean image's."""
    rows = []
    for instrument, reconstruct in (("autoencoder_kl", lambda x: batched(s.codec.forward, x, 512)),
                                    ("stage1", lambda x: stage1_reconstruct(s, x))):
        for part, ds in held_out(test, s.tail).items():
            rows += _prefixed(gates.reconstruction_gate(oracle, ds.x, ds.y, reconstruct(ds.x), instrument=instrument,
                                                        dataset=s.dataset, seed=s.seed), part)
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


def fusion_gate_rows(s: Seed, fused: dict[str, Fusion], oracle: Oracle, test: data.Dataset) -> list[dict]:
    """`sample_gate_rows` of the cam-fusion images at 0 steps ("fused") and at `refine_steps` steps ("refined"),
    against real tail images the seed never trained on (`reference_images`, both of its sets)."""
    ref, alt, _ = reference_images(s, s.cfg.n_fid)
    tail = held_out(test, s.tail)["tail"]
    real_accuracy = oracle.agreement(tail.x, tail.y)
    f = fused["cam"]
    return [r for instrument, steps in (("fused", 0), ("refined", s.cfg.refine_steps))
            for r in sample_gate_rows(oracle, s.images(f.latents, steps), f.labels, torch.cat([ref, alt]),
                                      real_accuracy, n_classes=s.full.n_classes, instrument=instrument,
                                      dataset=s.dataset, seed=s.seed)]


def gate_rows(s: Seed, fused: dict[str, Fusion], oracle: Oracle, test: data.Dataset) -> list[dict]:
    """Every quality gate of a seed's models (module docstring, step 6). Multi-label data have no single label for
    the oracle to check: each instrument then gets one failed `single_label` row (its claims read "not tested")."""
    if test.info.multilabel:
        return [gates.row(i, s.dataset, s.seed, "single_label", 0.0, threshold=1.0, passed=False)
                for i in ("autoencoder_kl", "stage1", "fused", "refined")]
    return reconstruction_rows(s, oracle, test) + fusion_gate_rows(s, fused, oracle, test)


# --------------------------------------------------------------------------- the task


def run_seed(task: dict) -> list[dict]:
    """Every arm of one dataset and seed: tidy result rows (dataset, arm, seed, metric, value[, refine_steps]) and
    the seed's gate rows (instrument, dataset, seed, check, value, threshold, passed)."""
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    full = data.load_cached(dataset, "train")
    val = capped(data.load_cached(dataset, "val"), cfg.n_val)
    test = capped(data.load_cached(dataset, "test"), cfg.n_test)
    s = prepare(full, seed, cfg)
    clock = time.process_time()
    kinds = {FUSION_ARMS[a] for a in cfg.arms if a in FUSION_ARMS} | {"cam"}
    fused = {kind: s.fuse(*FUSIONS[kind]) for kind in sorted(kinds)}
    s.cpu_seconds["fusion"] = time.process_time() - clock
    oracle = train_oracle(dataset, cfg.oracle)
    rows = classifier_rows(s, fused, val, test) + quality_rows(s, fused, oracle)
    rows += [r for stage, v in s.cpu_seconds.items() for r in results.rows(dataset, stage, seed, {"cpu_seconds": v})]
    return rows + gate_rows(s, fused, oracle, test)


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) the oracle of task['dataset']: its result rows (validation / test accuracy, majority rate)."""
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
