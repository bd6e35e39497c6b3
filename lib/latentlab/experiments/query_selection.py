"""Notebook 03, latent-space query selection: one seed of one dataset, every budget n and every arm.

A task is {"cfg": Config, "dataset", "seed"} (`latentlab.grid.tasks`). `run_seed(task)`:

1. the data, read once: the training split ('mnist-unbalanced' is MNIST's after `unbalance_mnist`, one fixed
   construction with seed 0 and the config's `unbalanced_replace` / `unbalanced_shift`; validation and test images
   untouched), the unlabelled pool (`pool_size` training images drawn with the seed; the whole split with None) and
   `n_test` fixed test images (`latentlab.data.fixed_subset`);
2. the encoders the dataset's arms need, trained on the pool's images only (no labels), from this seed, cached by
   their config and the pool's images (so a pool of another construction trains its own encoders);
3. per budget n (`cfg.n_labelled[dataset]`) and arm (`arms_of`): the query set (n pool indices), a classifier
   trained on those n images and their true labels (`latentlab.train.fit_classifier`, `cfg.clf`, the seed's initial
   weights; no validation split: a cold start has none to choose a model with, so the last update is kept),
   evaluated on the test images;
4. tidy rows (dataset, arm, seed, metric, value, n_labelled, encoder, method): accuracy, balanced_accuracy, auc
   and single_class of the classifier; coverage (classes present) and balance (normalised class entropy) of the
   query set; and per encoder the 5-NN accuracy of its codes (arm '<encoder> codes', n_labelled = 0): how well its
   latent space separates the classes. (Not 'n': `latentlab.stats.compare` reports the number of seeds as 'n'.)

Arm names: 'random'; 'ae-error' (the images the conv AE at `ae_latent` reconstructs worst); 'stratified' (n / K
images of each of the K classes, drawn with the pool's true labels: an oracle no cold start has, the balanced
upper bound of exercise 4); '<encoder>/<method>'
with encoder 'conv' (AE, MSE), 'vae' (VAE, BCE + KL) or 'tsne' (t-SNE-style AE), at latent size `ae_latent` (2), or
followed by a latent size ('conv16': the conv AE with L = 16), and method one of `selection.LATENT_SAMPLERS` or
`selection.COLD_START`. The paper's own numbers are in `latentlab.papers.query_selection`, the figures in
`latentlab.plots.query_selection`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from latentlab import data, results
from latentlab.config import ClfConfig, Params
from latentlab.data import Dataset
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, encode_all, epochs_for, fit_autoencoder, reconstruct
from latentlab.models.tsne_ae import TSNEConfig, fit_tsne_autoencoder
from latentlab.samplers import query_selection as selection
from latentlab.train import evaluate, fit_classifier

UNBALANCED = "mnist-unbalanced"  # the paper's unbalanced MNIST (`unbalance_mnist`), a dataset name of this notebook
ENCODER = re.compile(r"^(conv|vae|tsne)(\d*)$")
STRATIFIED = "stratified"  # the class-stratified oracle arm (it reads the labels)
CLASSIFIER_METRICS = ("accuracy", "balanced_accuracy", "auc", "single_class")
QUERY_METRICS = ("coverage", "balance")


@dataclass(frozen=True)
class Config(Params):
    """Notebook 03's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`). Arm names are checked here,
    in the notebook, before any worker starts."""

    NOTEBOOK = "03_query_selection"

    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    n_labelled: dict            # {dataset: [n, ...]} query-set sizes, or one list for every dataset
    arms: tuple[str, ...]
    dataset_arms: dict          # {dataset: [arm, ...]} for datasets that do not run `arms`
    workers: int | None
    pool_size: int | None
    ae_latent: int
    ae_width: int
    ae_steps: int
    ae_batch: int
    ae_lr: float
    tsne_perplexity: float
    tsne_weight: float
    threshold: float            # Algorithm 1's t, in units of the latent spread
    n_clusters: int
    accept: str
    clf: ClfConfig
    n_test: int
    unbalanced_replace: int
    unbalanced_shift: int

    def __post_init__(self):
        for dataset in self.datasets:
            budgets_of(self, dataset)
            for arm in arms_of(self, dataset):
                parse_arm(arm)


def per_dataset(value, dataset: str):
    """`value`, or value[dataset] when it is a {dataset: value} mapping."""
    if isinstance(value, dict):
        if dataset not in value:
            raise ValueError(f"No entry for dataset {dataset!r} in {value!r}.")
        return value[dataset]
    return value


def budgets_of(cfg: Config, dataset: str) -> list[int]:
    """The query-set sizes n of one dataset (N_LABELLED)."""
    return list(per_dataset(cfg.n_labelled, dataset))


def arms_of(cfg: Config, dataset: str) -> list[str]:
    """The arms of one dataset: DATASET_ARMS[dataset] where given, else ARMS."""
    return list(cfg.dataset_arms.get(dataset, cfg.arms))


# --------------------------------------------------------------------------- arms and encoders


def parse_arm(arm: str) -> tuple[str | None, str]:
    """(encoder or None, method) of an arm name (see the module docstring)."""
    if arm in (*selection.BASELINES, STRATIFIED):
        return ("conv" if arm == "ae-error" else None), arm
    encoder, _, method = arm.partition("/")
    if not ENCODER.match(encoder) or method not in selection.LATENT_SAMPLERS + selection.COLD_START:
        raise ValueError(f"Unknown arm {arm!r}. Use 'random', 'ae-error', 'stratified' or '<encoder>/<method>' with "
                         f"encoder conv, vae or tsne (optionally followed by a latent size, e.g. conv16) and method "
                         f"one of {', '.join(selection.LATENT_SAMPLERS + selection.COLD_START)}.")
    return encoder, method


def encoder_config(name: str, n_images: int, cfg: Config, seed: int) -> AEConfig:
    """The config of the encoder `name` ('vae', 'conv16', ...) for a pool of n_images (its cache key with the
    pool's images)."""
    kind, latent = ENCODER.match(name).groups()
    common = dict(latent_dim=int(latent) if latent else cfg.ae_latent, width=cfg.ae_width,
                  epochs=epochs_for(cfg.ae_steps, n_images, cfg.ae_batch), batch_size=cfg.ae_batch, lr=cfg.ae_lr,
                  seed=seed)
    if kind == "tsne":
        return TSNEConfig(**common, perplexity=cfg.tsne_perplexity, kl_weight=cfg.tsne_weight)
    return AEConfig(kind="ae" if kind == "conv" else "vae", **common)


def fit_encoder(name: str, pool_x: torch.Tensor, cfg: Config, seed: int) -> ConvAutoencoder:
    """The encoder `name` trained on the pool's images from `seed` (cached by its config and those images)."""
    config = encoder_config(name, len(pool_x), cfg, seed)
    if isinstance(config, TSNEConfig):
        return fit_tsne_autoencoder(pool_x, config)
    return fit_autoencoder(pool_x, config)


def reconstruction_errors(model: ConvAutoencoder, x: torch.Tensor) -> np.ndarray:
    """Squared reconstruction error of every image, summed over pixels (what AE-error ranks)."""
    return (reconstruct(model, x) - x).pow(2).flatten(1).sum(1).numpy()


def code_knn_accuracy(codes: np.ndarray, y: np.ndarray, seed: int, k: int = 5) -> float:
    """Accuracy of a k-NN classifier on the codes, fitted on one half of the pool and scored on the other."""
    a, b, ya, yb = train_test_split(codes, y, test_size=0.5, random_state=seed, stratify=y)
    return float(KNeighborsClassifier(k).fit(a, ya).score(b, yb))


# --------------------------------------------------------------------------- data


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate each image x[i] (C, H, W) by (dy[i], dx[i]) pixels (down, right), filling with zeros."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (a, b) in enumerate(zip(dy.tolist(), dx.tolist())):
        out[i, :, max(a, 0):h + min(a, 0), max(b, 0):w + min(b, 0)] = \
            x[i, :, max(-a, 0):h + min(-a, 0), max(-b, 0):w + min(-b, 0)]
    return out


def unbalance_mnist(x: torch.Tensor, y: torch.Tensor, *, n_replace: int, max_shift: int,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's unbalanced MNIST: for each even digit d, n_replace images of digit d + 1 are replaced by shifted
    copies of n_replace distinct images of digit d (val / test stay untouched).

    Shift: every copy is translated by (dy, dx) pixels, each drawn uniformly from -max_shift..max_shift (the
    notebook's 2), never (0, 0), with zero fill (no wrap-around). Seeded; returns new tensors (x, y) of the same
    size, so on our 55 000 training images with n_replace = 2000 the even digits hold ~7 400 images each and the odd
    ones ~4 000.
    """
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"x must be (N, C, H, W) images with one label each; got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}.")
    if max_shift < 1:
        raise ValueError(f"max_shift must be at least 1 pixel; got {max_shift}.")
    offsets = torch.tensor([(a, b) for a in range(-max_shift, max_shift + 1) for b in range(-max_shift, max_shift + 1)
                            if (a, b) != (0, 0)])
    gen = torch.Generator().manual_seed(seed)
    x, y = x.clone(), y.clone()
    for d in (0, 2, 4, 6, 8):
        odd, even = torch.nonzero(y == d + 1).flatten(), torch.nonzero(y == d).flatten()
        if min(len(odd), len(even)) < n_replace:
            raise ValueError(f"Digits {d} and {d + 1} need {n_replace} images each; they have {len(even)} and "
                             f"{len(odd)}. Lower n_replace.")
        out = odd[torch.randperm(len(odd), generator=gen)[:n_replace]]
        src = even[torch.randperm(len(even), generator=gen)[:n_replace]]
        pick = offsets[torch.randint(len(offsets), (n_replace,), generator=gen)]
        x[out] = shift_images(x[src], pick[:, 0], pick[:, 1])
        y[out] = d
    return x, y


def base_dataset(dataset: str) -> str:
    """The dataset whose files a name reads: MNIST for 'mnist-unbalanced', else the name itself."""
    return "mnist" if dataset == UNBALANCED else dataset


@functools.lru_cache(maxsize=4)
def training_split(dataset: str, unbalanced_replace: int, unbalanced_shift: int) -> Dataset:
    """The training split of a dataset; for 'mnist-unbalanced' MNIST's after `unbalance_mnist` (seed 0) with
    `unbalanced_replace` images per digit pair and shifts up to `unbalanced_shift` pixels (both ignored for other
    datasets)."""
    base = data.load_cached(base_dataset(dataset), "train")
    if dataset != UNBALANCED:
        return base
    x, y = unbalance_mnist(base.x, base.y, n_replace=unbalanced_replace, max_shift=unbalanced_shift, seed=0)
    return Dataset(x, y, dataclasses.replace(base.info, name=UNBALANCED))


def make_pool(train: Dataset, seed: int, pool_size: int | None) -> Dataset:
    """The unlabelled pool of one seed: pool_size training images drawn with the seed (all with None)."""
    if pool_size is None or pool_size >= len(train):
        return train
    return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), pool_size, replace=False)))


def test_set(dataset: str, n_test: int) -> Dataset:
    """n_test test images (a fixed draw, the same for every seed and arm; all when the split is smaller)."""
    return data.fixed_subset(data.load_cached(base_dataset(dataset), "test"), n_test)


def seed_data(dataset: str, seed: int, cfg: Config) -> tuple[Dataset, Dataset]:
    """The pool and the test images of one dataset and seed, read once."""
    train = training_split(dataset, cfg.unbalanced_replace, cfg.unbalanced_shift)
    return make_pool(train, seed, cfg.pool_size), test_set(dataset, cfg.n_test)


# --------------------------------------------------------------------------- one seed


@dataclass
class SeedView:
    """What the arms of one seed share: the pool, the codes of every encoder, AE errors and clusterings."""

    pool: Dataset
    codes: dict[str, np.ndarray]
    errors: np.ndarray | None
    clusters: dict[str, np.ndarray]


def seed_view(pool: Dataset, arms, cfg: Config, seed: int) -> SeedView:
    """Encoders (trained or loaded), codes, AE-error scores and clusterings that `arms` need on one seed's pool."""
    encoders = sorted({e for e, _ in map(parse_arm, arms) if e is not None})
    models = {e: fit_encoder(e, pool.x, cfg, seed) for e in encoders}
    codes = {e: encode_all(m, pool.x).numpy() for e, m in models.items()}
    errors = reconstruction_errors(models["conv"], pool.x) if "conv" in models else None
    clustered = {e for e, m in map(parse_arm, arms) if m.startswith("clustered-")}
    clusters = {e: selection.cluster(codes[e], cfg.n_clusters, seed=seed) for e in sorted(clustered)}
    return SeedView(pool, codes, errors, clusters)


def select_arm(view: SeedView, arm: str, n: int, seed: int, cfg: Config, trace: list | None = None) -> np.ndarray:
    """The query set (pool indices) of one arm at budget n."""
    encoder, method = parse_arm(arm)
    if method == "random":
        return selection.random_selection(len(view.pool), n, seed=seed)
    if method == STRATIFIED:
        if n % view.pool.n_classes:
            raise ValueError(f"The arm 'stratified' draws n / K images per class; n = {n} is no multiple of the "
                             f"K = {view.pool.n_classes} classes.")
        return data.per_class_subset(view.pool.y, n // view.pool.n_classes, seed)
    if method in selection.LATENT_SAMPLERS:
        labels = view.clusters.get(encoder) if method.startswith("clustered-") else None
        return selection.algorithm1(view.codes[encoder], n, distribution=method.removeprefix("clustered-"),
                                    labels=labels, t=cfg.threshold, seed=seed, accept=cfg.accept, trace=trace)
    return selection.select(method, view.codes[encoder], n, seed=seed, errors=view.errors)


def query_scores(query: Dataset, test: Dataset, clf: ClfConfig, seed: int) -> dict[str, float]:
    """The metrics of one query set: its classifier's on the test images, and the set's coverage and balance."""
    fitted = fit_classifier(query, None, clf, seed)  # no validation split: the last update is kept
    scores = evaluate(fitted.model, test, task=test.info.task)
    scores |= selection.query_set_stats(query.y.numpy(), query.n_classes)
    return {m: float(scores[m]) for m in (*CLASSIFIER_METRICS, *QUERY_METRICS)}


def run_seed(task: dict) -> list[dict]:
    """Every budget and arm of one dataset and seed (see the module docstring): tidy result rows."""
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    pool, test = seed_data(dataset, seed, cfg)
    arms = arms_of(cfg, dataset)
    view = seed_view(pool, arms, cfg, seed)
    y_pool = pool.y.numpy()
    rows = []
    for e, z in view.codes.items():
        rows += results.rows(dataset, f"{e} codes", seed, {"knn_accuracy": code_knn_accuracy(z, y_pool, seed)},
                             n_labelled=0, encoder=e, method="codes")
    for n in budgets_of(cfg, dataset):
        for arm in arms:
            query = pool.subset(select_arm(view, arm, n, seed, cfg))
            encoder, method = parse_arm(arm)
            rows += results.rows(dataset, arm, seed, query_scores(query, test, cfg.clf, seed), n_labelled=n,
                                 encoder=encoder or "", method=method)
    return rows
