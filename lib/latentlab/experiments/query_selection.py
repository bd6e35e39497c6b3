"""Notebook 03, latent-space query selection (Killeen): one seed of one dataset, every budget n and every arm.

A task is {"dataset", "seed", "n_labelled", "arms", "config"} (see `make_tasks`). `run_seed(task)`:

1. the unlabelled pool: `pool_size` training images drawn with the seed (the whole training split with None);
   'mnist-unbalanced' is MNIST's training split after `killeen.unbalance_mnist` (one fixed construction, seed 0;
   validation and test images untouched);
2. the encoders the arms need, trained on the pool's images only (no labels), from this seed;
3. per budget n and arm: the query set (n pool indices), a classifier trained on those n images and their true labels
   for `clf_steps` updates from the seed's initial weights (no validation split: a cold start has none to choose a
   model with), evaluated on `n_test` fixed test images;
4. tidy rows (dataset, arm, seed, metric, value, n_labelled, encoder, method): accuracy, balanced_accuracy, auc
   and single_class of the classifier; coverage (classes present) and balance (normalised class entropy) of the
   query set; and per encoder the 5-NN accuracy of its codes (arm '<encoder> codes', n_labelled = 0): how well its
   latent space separates the classes. (Not 'n': `latentlab.stats.compare` reports the number of seeds as 'n'.)

Arm names: 'random'; 'ae-error' (the images the conv AE at `ae_latent` reconstructs worst); '<encoder>/<method>'
with encoder 'conv' (AE, MSE), 'vae' (VAE, BCE + KL) or 'tsne' (t-SNE-style AE), at latent size `ae_latent` (2), or
followed by a latent size ('conv16': the conv AE with L = 16), and method one of `killeen.LATENT_SAMPLERS` or
`killeen.COLD_START`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from latentlab.data import Dataset, load_cached
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, encode_all, epochs_for, fit_autoencoder, reconstruct
from latentlab.models.tsne_ae import TSNEConfig, fit_tsne_autoencoder
from latentlab.samplers import query_selection as killeen
from latentlab.train import evaluate, train_classifier

UNBALANCED = "mnist-unbalanced"
ENCODER = re.compile(r"^(conv|vae|tsne)(\d*)$")
PAPER_ENCODERS = {"conv": "Conv", "vae": "VAE", "tsne": "t-SNE Style"}
PAPER_SAMPLERS = {"random": "Random", "ae-error": "AE-error", "uniform": "Uniform", "normal": "Normal",
                  "clustered-uniform": "Clustered Uniform", "clustered-normal": "Clustered Normal"}
PAPER_ARMS = ["random", "ae-error"] + [f"{e}/{s}" for e in PAPER_ENCODERS for s in killeen.LATENT_SAMPLERS]
TABLE1_COLUMNS = [("mnist", 1000), ("mnist", 100), (UNBALANCED, 1000), (UNBALANCED, 100)]
# Table 1 of the paper: test accuracy (%) of a classifier trained on the query set; one run per cell.
PAPER_TABLE1 = {
    "random": (94.0, 80.9, 92.6, 76.6), "ae-error": (93.8, 76.6, 57.8, 46.4),
    "conv/uniform": (72.7, 38.1, 62.9, 44.6), "conv/normal": (93.1, 70.3, 90.5, 66.3),
    "conv/clustered-uniform": (89.6, 71.6, 89.2, 71.5), "conv/clustered-normal": (94.4, 80.9, 92.8, 79.6),
    "vae/uniform": (68.2, 38.8, 62.4, 35.3), "vae/normal": (92.1, 69.9, 91.7, 66.5),
    "vae/clustered-uniform": (86.1, 67.3, 86.8, 62.1), "vae/clustered-normal": (94.3, 82.9, 92.3, 85.0),
    "tsne/uniform": (69.3, 56.6, 85.7, 53.0), "tsne/normal": (93.6, 82.3, 91.7, 77.0),
    "tsne/clustered-uniform": (87.3, 71.6, 91.6, 76.6), "tsne/clustered-normal": (94.4, 78.9, 92.4, 75.9),
}
CLASSIFIER_METRICS = ("accuracy", "balanced_accuracy", "auc", "single_class")
QUERY_METRICS = ("coverage", "balance")


@dataclass(frozen=True)
class Config:
    """The notebook's parameters that every task shares (field = lower-case parameter name)."""

    pool_size: int | None = 20000
    ae_latent: int = 2
    ae_width: int = 8
    ae_steps: int = 300
    ae_batch: int = 128
    ae_lr: float = 1e-2
    tsne_perplexity: float = 30.0
    tsne_weight: float = 10.0
    threshold: float = 0.25     # Algorithm 1's t, in units of the latent spread
    n_clusters: int = 10
    accept: str = "nearest"
    clf_arch: str = "cnn"
    clf_width: int = 8
    clf_steps: int = 80
    clf_min_epochs: int = 1
    clf_batch: int = 64
    clf_lr: float = 2e-3
    n_test: int = 1000
    unbalanced_replace: int = 2000
    unbalanced_shift: int = 2


def per_dataset(value, dataset: str):
    """`value`, or value[dataset] when it is a {dataset: value} mapping."""
    if isinstance(value, dict):
        if dataset not in value:
            raise ValueError(f"No entry for dataset {dataset!r} in {value!r}.")
        return value[dataset]
    return value


def make_tasks(datasets, seeds, n_labelled, arms, config: Config) -> list[dict]:
    """One task per dataset x seed; n_labelled and arms may be lists or {dataset: list}."""
    tasks = []
    for d in datasets:
        ns, arm_list = list(per_dataset(n_labelled, d)), list(per_dataset(arms, d))
        for arm in arm_list:
            parse_arm(arm)  # fail here, in the notebook, not inside a worker
        tasks += [{"dataset": d, "seed": s, "n_labelled": ns, "arms": arm_list, "config": config} for s in seeds]
    return tasks


# --------------------------------------------------------------------------- arms and encoders


def parse_arm(arm: str) -> tuple[str | None, str]:
    """(encoder or None, method) of an arm name (see the module docstring)."""
    if arm in killeen.BASELINES:
        return ("conv" if arm == "ae-error" else None), arm
    encoder, _, method = arm.partition("/")
    if not ENCODER.match(encoder) or method not in killeen.LATENT_SAMPLERS + killeen.COLD_START:
        raise ValueError(f"Unknown arm {arm!r}. Use 'random', 'ae-error' or '<encoder>/<method>' with encoder conv, "
                         f"vae or tsne (optionally followed by a latent size, e.g. conv16) and method one of "
                         f"{', '.join(killeen.LATENT_SAMPLERS + killeen.COLD_START)}.")
    return encoder, method


def fit_encoder(name: str, pool: Dataset, cfg: Config, seed: int, data_key: str) -> ConvAutoencoder:
    """The encoder `name` ('vae', 'conv16', ...) trained on the pool's images (cached by config), from `seed`."""
    kind, latent = ENCODER.match(name).groups()
    latent = int(latent) if latent else cfg.ae_latent
    common = dict(latent_dim=latent, width=cfg.ae_width, epochs=epochs_for(cfg.ae_steps, len(pool), cfg.ae_batch),
                  batch_size=cfg.ae_batch, lr=cfg.ae_lr, seed=seed)
    if kind == "tsne":
        tsne = TSNEConfig(**common, perplexity=cfg.tsne_perplexity, kl_weight=cfg.tsne_weight)
        return fit_tsne_autoencoder(pool.x, tsne, data_key)
    return fit_autoencoder(pool.x, AEConfig(kind="ae" if kind == "conv" else "vae", **common), data_key)


def reconstruction_errors(model: ConvAutoencoder, x: torch.Tensor) -> np.ndarray:
    """Squared reconstruction error of every image, summed over pixels (what AE-error ranks)."""
    return (reconstruct(model, x) - x).pow(2).flatten(1).sum(1).numpy()


def code_knn_accuracy(codes: np.ndarray, y: np.ndarray, seed: int, k: int = 5) -> float:
    """Accuracy of a k-NN classifier on the codes, fitted on one half of the pool and scored on the other."""
    a, b, ya, yb = train_test_split(codes, y, test_size=0.5, random_state=seed, stratify=y)
    return float(KNeighborsClassifier(k).fit(a, ya).score(b, yb))


# --------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def training_split(dataset: str, replace: int = 2000, shift: int = 2) -> Dataset:
    """The training split of a dataset; for 'mnist-unbalanced' MNIST's after `killeen.unbalance_mnist` (seed 0)."""
    if dataset != UNBALANCED:
        return load_cached(dataset, "train")
    base = load_cached("mnist", "train")
    x, y = killeen.unbalance_mnist(base.x, base.y, n_replace=replace, max_shift=shift, seed=0)
    return Dataset(x, y, dataclasses.replace(base.info, name=UNBALANCED))


def make_pool(dataset: str, seed: int, cfg: Config) -> Dataset:
    """The unlabelled pool of one seed: pool_size training images drawn with the seed (all with None)."""
    train = training_split(dataset, cfg.unbalanced_replace, cfg.unbalanced_shift)
    if cfg.pool_size is None or cfg.pool_size >= len(train):
        return train
    return train.subset(np.sort(np.random.default_rng(seed).choice(len(train), cfg.pool_size, replace=False)))


@functools.lru_cache(maxsize=4)
def test_set(dataset: str, n_test: int) -> Dataset:
    """n_test test images (a fixed draw, the same for every seed and arm; all when the split is smaller)."""
    test = load_cached("mnist" if dataset == UNBALANCED else dataset, "test")
    if n_test >= len(test):
        return test
    return test.subset(np.sort(np.random.default_rng(0).choice(len(test), n_test, replace=False)))


# --------------------------------------------------------------------------- one seed


@dataclass
class SeedView:
    """What the arms of one seed share: the pool, the codes of every encoder, AE errors and clusterings."""

    pool: Dataset
    codes: dict[str, np.ndarray]
    errors: np.ndarray | None
    clusters: dict[str, np.ndarray]


def seed_view(dataset: str, seed: int, arms, cfg: Config) -> SeedView:
    """Pool, encoders (trained or loaded), codes, AE-error scores and clusterings that `arms` need for one seed."""
    pool = make_pool(dataset, seed, cfg)
    key = f"{dataset}-pool{cfg.pool_size}-seed{seed}"
    encoders = sorted({e for e, _ in map(parse_arm, arms) if e is not None})
    models = {e: fit_encoder(e, pool, cfg, seed, key) for e in encoders}
    codes = {e: encode_all(m, pool.x).numpy() for e, m in models.items()}
    errors = reconstruction_errors(models["conv"], pool.x) if "conv" in models else None
    clustered = {e for e, m in map(parse_arm, arms) if m.startswith("clustered-")}
    clusters = {e: killeen.cluster(codes[e], cfg.n_clusters, seed=seed) for e in sorted(clustered)}
    return SeedView(pool, codes, errors, clusters)


def select_arm(view: SeedView, arm: str, n: int, seed: int, cfg: Config, trace: list | None = None) -> np.ndarray:
    """The query set (pool indices) of one arm at budget n."""
    encoder, method = parse_arm(arm)
    if method == "random":
        return killeen.random_selection(len(view.pool), n, seed=seed)
    if method in killeen.LATENT_SAMPLERS:
        labels = view.clusters.get(encoder) if method.startswith("clustered-") else None
        return killeen.algorithm1(view.codes[encoder], n, distribution=method.removeprefix("clustered-"),
                                  labels=labels, t=cfg.threshold, seed=seed, accept=cfg.accept, trace=trace)
    return killeen.select(method, view.codes[encoder], n, seed=seed, errors=view.errors)


def _row(task: dict, arm: str, metric: str, value: float, n: int, encoder: str | None, method: str) -> dict:
    return {"dataset": task["dataset"], "arm": arm, "seed": task["seed"], "metric": metric, "value": float(value),
            "n_labelled": n, "encoder": encoder or "", "method": method}


def run_seed(task: dict) -> list[dict]:
    """Every budget and arm of one dataset and seed (see the module docstring): tidy result rows."""
    cfg, seed, dataset = task["config"], task["seed"], task["dataset"]
    view = seed_view(dataset, seed, task["arms"], cfg)
    test = test_set(dataset, cfg.n_test)
    y_pool = view.pool.y.numpy()
    rows = [_row(task, f"{e} codes", "knn_accuracy", code_knn_accuracy(z, y_pool, seed), 0, e, "codes")
            for e, z in view.codes.items()]
    for n in task["n_labelled"]:
        for arm in task["arms"]:
            idx = select_arm(view, arm, n, seed, cfg)
            query = view.pool.subset(idx)
            fit = train_classifier(query, None, arch=cfg.clf_arch, steps=cfg.clf_steps,
                                   min_epochs=cfg.clf_min_epochs, batch_size=cfg.clf_batch, lr=cfg.clf_lr, seed=seed,
                                   **({"width": cfg.clf_width} if cfg.clf_arch == "cnn" else {}))
            scores = evaluate(fit.model, test, task=test.info.task)
            scores |= killeen.query_set_stats(query.y.numpy(), view.pool.n_classes)
            rows += [_row(task, arm, m, scores[m], n, *parse_arm(arm)) for m in (*CLASSIFIER_METRICS, *QUERY_METRICS)]
    return rows


# --------------------------------------------------------------------------- tables beside the paper's


def paper_effects(arm: str, baseline: str = "random") -> dict:
    """The paper's Table 1 gap arm - baseline in points, {(dataset, n): gap}, for `latentlab.stats.Claim`."""
    a, b = PAPER_TABLE1[arm], PAPER_TABLE1[baseline]
    return {col: round(x - y, 1) for col, x, y in zip(TABLE1_COLUMNS, a, b)}


def table1(results: pd.DataFrame, metric: str = "accuracy", digits: int = 1) -> pd.DataFrame:
    """Table 1's layout (AE type and sampling strategy x dataset and n): ours 'mean ± sd' with the paper's number."""
    part = results[(results["metric"] == metric) & results["arm"].isin(PAPER_TABLE1)]
    stats = part.groupby(["arm", "dataset", "n_labelled"])["value"].agg(["mean", "std"]) * 100
    rows = {}
    for arm, paper in PAPER_TABLE1.items():
        encoder, method = parse_arm(arm)
        name = (PAPER_ENCODERS.get(encoder, "—") if "/" in arm else "—",
                PAPER_SAMPLERS[method])
        cells = {}
        for (dataset, n), p in zip(TABLE1_COLUMNS, paper):
            if (arm, dataset, n) in stats.index:
                m, s = stats.loc[(arm, dataset, n)]
                cells[("balanced" if dataset == "mnist" else "unbalanced", n)] = \
                    f"{m:.{digits}f} ± {s:.{digits}f} ({p})"
        rows[name] = cells
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["AE type", "sampling strategy"]
    return table.dropna(how="all")
