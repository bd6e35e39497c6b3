"""Notebook 03, latent-space query selection: one seed of one dataset, every budget n and every arm.

A task is {"cfg": Config, "dataset", "seed"} (`latentlab.grid.tasks`). `run_seed(task)`:

1. the data, read once: the training split ('mnist-unbalanced' is MNIST's after `unbalance_mnist`, one fixed
   construction with seed 0 and the config's `unbalanced_replace` / `unbalanced_shift`; validation and test images
   untouched), the unlabelled pool (`pool_size` training images drawn with the seed; the whole split with None) and
   `n_test` fixed test images (`latentlab.data.fixed_subset`). The validation split is the loader's (for MNIST and
   Fashion-MNIST carved from the training images by a fixed permutation, so no pool holds a validation image):
   every choice (the t-SNE weight, `tsne_weight_sweep`) and every gate reads it, never the test images;
2. the encoders the dataset's arms need, trained on the pool's images only (no labels), from this seed, cached by
   their config and the pool's images (so a pool of another construction trains its own encoders);
3. per budget n (`cfg.n_labelled[dataset]`) and arm (`arms_at`: the dataset's arms, restricted at n by
   `budget_arms[n]` where given): the query set (n pool indices), a classifier trained on those n images and their
   true labels (`latentlab.train.fit_classifier`, `cfg.clf`, the seed's initial weights, the same number of updates
   at every n, as the paper; no validation split selects: a cold start has none, so the last update is kept),
   evaluated on the test images;
4. tidy rows (dataset, arm, seed, metric, value, n_labelled, encoder, method): accuracy, balanced_accuracy, auc
   and single_class of the classifier on the test images, kept_epoch (the last one), and for Random's classifier
   its val_accuracy on `n_val` fixed validation images (the classifier gate's value; it never selects); coverage
   (classes present) and balance (normalised class entropy) of the query set. (Not 'n': `latentlab.stats.compare`
   reports the number of seeds as 'n'.)
5. gate rows (`latentlab.gates`, told apart by their `instrument` key; `grid.tables` splits them off): per encoder
   the 5-NN accuracy of the validation images' codes, a k-NN classifier fitted on the pool's codes (`knn_gate`,
   instrument `encoder_instrument`: 'ae-2d', 'vae-2d', 'tsne-2d', 'ae-16d'), beside PCA of the pixels to the same
   dimensions ('pca-2d', 'pca-16d', `pca_knn_reference`).

**Convergence (a small extra grid task per dataset, `doubled_tasks`).** `run_seed` of a task with `budget` 2
(`run_doubled`) trains the first seed's encoders for twice their epochs (the 5-NN accuracy `knn_accuracy_2x`, a gate
row) and Random's classifier at twice CLF_STEPS and CLF_MIN_EPOCHS per budget n (`val_accuracy_2x`, a result row).
`convergence_gates` then reads both tables: an encoder passes when doubling its budget moves its 5-NN accuracy by
less than max(1 point, the sd of that accuracy over seeds); the classifier at budget n (check `val_accuracy
(n_labelled = <n>)`, instrument 'classifier') when it moves Random's validation accuracy by less than max(1 point,
the sd of that accuracy over seeds). A claim (`instruments_of`) rests on the encoders of its arms and on the
classifier; `verdicts` compares at each n with the classifier's gate at that n only, so a classifier that has not
converged at n = 1000 makes only the claims at n = 1000 untested.

**Beyond the grid.** `tsne_weight_sweep` / `best_tsne_weight` / `write_tsne_record`: TSNE_WEIGHT is the most accurate
of TSNE_WEIGHTS among those whose validation codes settle when the budget doubles, on the first seed of each dataset
(the record configs/03_tsne_weight.csv, `make choices`; `choose_tsne_weight` shows it, or with TSNE_WEIGHT None makes
the choice on the first dataset). `budget_sweep` / `settled_budget` / `write_budget_sweep`: the record
(configs/03_encoder_budget.csv, `make choices`) that AE_LR and AE_STEPS were read off, on validation codes.
`scale_tasks` / `scaled_encoders`: the scale check, SCALE x the encoders' updates on SCALE_SEEDS for HEADLINE_ARMS
at the smallest n. `single_run_reach`: how often one run of ours shows the paper's single-run gap (share of seeds,
and a normal approximation with the seed sd).

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
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from latentlab import data, gates, results, stats
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
BASELINE = "random"  # the arm whose classifier the convergence gate retrains
CLASSIFIER = "classifier"  # the classifier's instrument
ENCODER_KINDS = {"conv": "ae", "vae": "vae", "tsne": "tsne"}  # encoder name -> the kind its instrument is named by
TOL = 0.01  # convergence gates: doubling a budget moves the accuracy by less than one point


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
    ae_steps: int | dict        # encoder updates, or {encoder family: updates} (t-SNE's: its fine-tuning)
    ae_batch: int
    ae_lr: float | dict         # one rate, or {encoder family ('conv', 'vae', 'tsne'): rate}
    ae_warmup: int              # updates of linear warm-up of the encoders' rate (`AEConfig.warmup`)
    tsne_perplexity: float
    tsne_weight: float | None   # None: chosen on the validation codes from tsne_weights (`tsne_weight_sweep`)
    tsne_weights: tuple[float, ...]  # the candidates of that choice
    tsne_pretrain: bool         # the t-SNE-style encoder starts from the seed's Conv AE (parametric t-SNE)
    threshold: float            # Algorithm 1's t, in units of the latent spread
    n_clusters: int
    accept: str
    clf: ClfConfig
    n_test: int
    n_val: int                  # validation images of the gates (codes' 5-NN accuracy, classifiers' val_accuracy)
    unbalanced_replace: int
    unbalanced_shift: int
    budget_arms: dict           # {n: [arm, ...]}: at budget n only these of a dataset's arms run (n absent: all)
    scale_seeds: tuple[int, ...]  # the scale check: SCALE x the encoders' budget on these seeds (HEADLINE_ARMS)

    def __post_init__(self):
        for dataset in self.datasets:
            budgets_of(self, dataset)
            for arm in arms_of(self, dataset):
                parse_arm(arm)
        for arms in self.budget_arms.values():
            for arm in arms:
                parse_arm(arm)
        if self.tsne_weight is None and not self.tsne_weights:
            raise ValueError("TSNE_WEIGHT None is chosen from TSNE_WEIGHTS on validation codes; give candidates.")


def per_dataset(value, dataset: str, what: str = "dataset"):
    """`value`, or value[dataset] when it is a {dataset: value} mapping (`what` names the key in the error)."""
    if isinstance(value, dict):
        if dataset not in value:
            raise ValueError(f"No entry for {what} {dataset!r} in {value!r}.")
        return value[dataset]
    return value


def budgets_of(cfg: Config, dataset: str) -> list[int]:
    """The query-set sizes n of one dataset (N_LABELLED)."""
    return list(per_dataset(cfg.n_labelled, dataset))


def arms_of(cfg: Config, dataset: str) -> list[str]:
    """The arms of one dataset: DATASET_ARMS[dataset] where given, else ARMS."""
    return list(cfg.dataset_arms.get(dataset, cfg.arms))


def arms_at(cfg: Config, dataset: str, n: int) -> list[str]:
    """The arms of one dataset that run at budget n: those of `arms_of` that BUDGET_ARMS[n] names (all without an
    entry for n), in the order of `arms_of`."""
    arms = arms_of(cfg, dataset)
    keep = per_budget(cfg.budget_arms, n)
    return arms if keep is None else [a for a in arms if a in keep]


def per_budget(mapping: dict, n: int):
    """mapping[n] (keys may be ints or their strings, as YAML and papermill give them), None without one."""
    for key, value in mapping.items():
        if int(key) == int(n):
            return list(value)
    return None


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


def encoders_of(arms) -> list[str]:
    """The encoders (sorted) that a list of arms samples from."""
    return sorted({e for e, _ in map(parse_arm, arms) if e is not None})


def encoder_instrument(encoder: str, latent: int = 2) -> str:
    """The gates' name of an encoder: its kind and code size, 'conv' -> 'ae-2d', 'conv16' -> 'ae-16d', 'vae' ->
    'vae-2d' (latent: the size of an encoder named without one, AE_LATENT)."""
    match = ENCODER.match(encoder)
    if match is None:
        raise ValueError(f"Unknown encoder {encoder!r}: use conv, vae or tsne, optionally with a latent size.")
    kind, size = match.groups()
    return f"{ENCODER_KINDS[kind]}-{size or latent}d"


def instruments_of(*arms: str, latent: int = 2) -> tuple[str, ...]:
    """The instruments a claim comparing these arms rests on: the encoders they sample from, and the classifier."""
    return (*(encoder_instrument(e, latent) for e in encoders_of(arms)), CLASSIFIER)


def encoder_config(name: str, n_images: int, cfg: Config, seed: int, factor: int = 1) -> AEConfig:
    """The config of the encoder `name` ('vae', 'conv16', ...) for a pool of n_images (its cache key with the
    pool's images); factor x its epochs (the convergence gate's factor 2 trains exactly twice as long)."""
    kind, latent = ENCODER.match(name).groups()
    steps = int(per_dataset(cfg.ae_steps, kind, "encoder family"))
    common = dict(latent_dim=int(latent) if latent else cfg.ae_latent, width=cfg.ae_width,
                  epochs=factor * epochs_for(steps, n_images, cfg.ae_batch), batch_size=cfg.ae_batch,
                  lr=float(per_dataset(cfg.ae_lr, kind, "encoder family")), warmup=cfg.ae_warmup, seed=seed)
    if kind == "tsne":
        if cfg.tsne_weight is None:
            raise ValueError("TSNE_WEIGHT is None: choose it on validation first (`tsne_weight_sweep`, then "
                             "cfg.replace(tsne_weight=best_tsne_weight(sweep))).")
        return TSNEConfig(**common, perplexity=cfg.tsne_perplexity, kl_weight=cfg.tsne_weight)
    return AEConfig(kind="ae" if kind == "conv" else "vae", **common)


def fit_encoder(name: str, pool_x: torch.Tensor, cfg: Config, seed: int, factor: int = 1) -> ConvAutoencoder:
    """The encoder `name` trained on the pool's images from `seed` (cached by its config and those images). With
    TSNE_PRETRAIN the t-SNE-style encoder is the seed's Conv AE of its latent size (at the same factor) fine-tuned
    with the t-SNE term, as parametric t-SNE is trained (van der Maaten 2009): trained from random weights, its 2-D
    plane is a new arrangement at every budget, and its codes' 5-NN accuracy moves by several points whenever the
    budget doubles (the convergence gate)."""
    config = encoder_config(name, len(pool_x), cfg, seed, factor)
    if isinstance(config, TSNEConfig):
        init = fit_encoder(name.replace("tsne", "conv"), pool_x, cfg, seed, factor) if cfg.tsne_pretrain else None
        return fit_tsne_autoencoder(pool_x, config, init=init)
    return fit_autoencoder(pool_x, config)


def encoder_tasks(cfg: Config, seed: int) -> list[dict]:
    """One task per dataset and encoder of its arms on one seed: {"cfg", "dataset", "seed", "encoder"}, for
    `train_encoder` (the walk-through figures' encoders, trained in parallel before `seed_view` loads them)."""
    return [{"cfg": cfg, "dataset": d, "seed": seed, "encoder": e} for d in cfg.datasets
            for e in encoders_of(arms_of(cfg, d))]


def train_encoder(task: dict) -> list[dict]:
    """Train (or load) one encoder of `encoder_tasks` on its seed's pool, into the cache; no rows."""
    pool, _ = seed_data(task["dataset"], task["seed"], task["cfg"])
    fit_encoder(task["encoder"], pool.x, task["cfg"], task["seed"])
    return []


def reconstruction_errors(model: ConvAutoencoder, x: torch.Tensor) -> np.ndarray:
    """Squared reconstruction error of every image, summed over pixels (what AE-error ranks)."""
    return (reconstruct(model, x) - x).pow(2).flatten(1).sum(1).numpy()


def validation_knn(model: ConvAutoencoder, pool: Dataset, val: Dataset) -> float:
    """The encoders' gate value: the 5-NN accuracy of the validation images' codes, fitted on the pool's codes."""
    return gates.knn_accuracy(encode_all(model, pool.x), pool.y, encode_all(model, val.x), val.y)


def code_knn_accuracy(codes: np.ndarray, y: np.ndarray, seed: int, k: int = 5) -> float:
    """Accuracy of a k-NN classifier on the codes, fitted on one half of the pool and scored on the other (the
    figures' titles; the gates score validation images, `encoder_gates`)."""
    a, b, ya, yb = train_test_split(codes, y, test_size=0.5, random_state=seed, stratify=y)
    return gates.knn_accuracy(a, ya, b, yb, k)


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


def val_set(dataset: str, n_val: int) -> Dataset:
    """n_val validation images (a fixed draw, the same for every seed and arm): what the gates measure on."""
    return data.fixed_subset(data.load_cached(base_dataset(dataset), "val"), n_val)


def seed_data(dataset: str, seed: int, cfg: Config) -> tuple[Dataset, Dataset]:
    """The pool and the test images of one dataset and seed, read once."""
    train = training_split(dataset, cfg.unbalanced_replace, cfg.unbalanced_shift)
    return make_pool(train, seed, cfg.pool_size), test_set(dataset, cfg.n_test)


# --------------------------------------------------------------------------- one seed


@dataclass
class SeedView:
    """What the arms of one seed share: the pool, the codes of every encoder, AE errors, clusterings and the
    encoders themselves."""

    pool: Dataset
    codes: dict[str, np.ndarray]
    errors: np.ndarray | None
    clusters: dict[str, np.ndarray]
    models: dict[str, ConvAutoencoder] = dataclasses.field(default_factory=dict)


def seed_view(pool: Dataset, arms, cfg: Config, seed: int) -> SeedView:
    """Encoders (trained or loaded), codes, AE-error scores and clusterings that `arms` need on one seed's pool."""
    models = {e: fit_encoder(e, pool.x, cfg, seed) for e in encoders_of(arms)}
    codes = {e: encode_all(m, pool.x).numpy() for e, m in models.items()}
    errors = reconstruction_errors(models["conv"], pool.x) if "conv" in models else None
    clustered = {e for e, m in map(parse_arm, arms) if m.startswith("clustered-")}
    clusters = {e: selection.cluster(codes[e], cfg.n_clusters, seed=seed) for e in sorted(clustered)}
    return SeedView(pool, codes, errors, clusters, models)


def stratified_selection(y: np.ndarray, n: int, n_classes: int, seed: int) -> np.ndarray:
    """The class-stratified reference: floor(n / K) images of each of the K classes, one more for n mod K classes
    drawn with the seed, each class's images drawn at random without replacement (it reads the labels: a reference,
    no cold-start method). Sorted pool indices."""
    rng = np.random.default_rng(seed)
    quota = np.full(n_classes, n // n_classes)
    quota[rng.permutation(n_classes)[:n % n_classes]] += 1
    picks = []
    for c, q in enumerate(quota):
        members = np.flatnonzero(y == c)
        if len(members) < q:
            raise ValueError(f"The arm 'stratified' needs {q} images of class {c}; the pool holds {len(members)}. "
                             "Use a larger POOL_SIZE or a smaller n.")
        picks.append(rng.choice(members, q, replace=False))
    return np.sort(np.concatenate(picks))


def select_arm(view: SeedView, arm: str, n: int, seed: int, cfg: Config, trace: list | None = None) -> np.ndarray:
    """The query set (pool indices) of one arm at budget n."""
    encoder, method = parse_arm(arm)
    if method == "random":
        return selection.random_selection(len(view.pool), n, seed=seed)
    if method == STRATIFIED:
        return stratified_selection(view.pool.y.numpy(), n, view.pool.n_classes, seed)
    if method in selection.LATENT_SAMPLERS:
        labels = view.clusters.get(encoder) if method.startswith("clustered-") else None
        return selection.algorithm1(view.codes[encoder], n, distribution=method.removeprefix("clustered-"),
                                    labels=labels, t=cfg.threshold, seed=seed, accept=cfg.accept, trace=trace)
    return selection.select(method, view.codes[encoder], n, seed=seed, errors=view.errors)


def query_scores(query: Dataset, test: Dataset, clf: ClfConfig, seed: int,
                 val: Dataset | None = None) -> dict[str, float]:
    """The metrics of one query set: its classifier's on the test images (and its accuracy on `val`, when given:
    measured, not used to choose), the kept epoch, and the set's coverage and balance."""
    fitted = fit_classifier(query, None, clf, seed)  # no validation split: the last update is kept
    scores = evaluate(fitted.model, test, task=test.info.task)
    scores |= selection.query_set_stats(query.y.numpy(), query.n_classes)
    out = {m: float(scores[m]) for m in (*CLASSIFIER_METRICS, *QUERY_METRICS)}
    if val is not None:
        out["val_accuracy"] = float(evaluate(fitted.model, val, task=val.info.task)["accuracy"])
    return out | {"kept_epoch": float(fitted.best_epoch)}


def pca_references(pool: Dataset, val: Dataset, sizes, dataset: str, seed: int) -> dict[int, dict]:
    """`gates.pca_reference` rows per code size (reported rows 'pca-<L>d': 5-NN accuracy and reconstruction error of
    PCA of the pixels to L components, fitted on the pool, scored on the validation images)."""
    return {d: {r["check"]: r for r in gates.pca_reference(pool.x, pool.y, val.x, val.y, dims=d, dataset=dataset,
                                                           seed=seed)} for d in sorted(set(sizes))}


def encoder_gate(model: ConvAutoencoder, codes: torch.Tensor, pool: Dataset, val: Dataset, reference: dict, *,
                 instrument: str, dataset: str, seed: int) -> list[dict]:
    """One seed's gate rows of one encoder, on the validation images, against `reference` (its code size's
    `pca_references`): the 5-NN accuracy of its codes (a k-NN classifier fitted on the pool's codes) must be above
    PCA's, and its reconstruction error below PCA's (`gates.error_gate`, the mean image's error reported). An encoder
    that died in training (the mean image out, meaningless codes), or that is no better than a linear projection of
    the same size, fails on its own seed, whatever the other seeds do."""
    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    return [*gates.knn_gate(codes, pool.y, encode_all(model, val.x), val.y, **at,
                            floor=reference["knn_accuracy"]["value"]),
            *gates.error_gate(val.x, reconstruct(model, val.x), **at, ceiling=reference["recon_mse"]["value"])]


def encoder_gates(view: SeedView, val: Dataset, dataset: str, seed: int, latent: int) -> list[dict]:
    """Gate rows of one seed's encoders (`encoder_gate`), after the PCA references of their code sizes."""
    refs = pca_references(view.pool, val, [z.shape[1] for z in view.codes.values()], dataset, seed)
    rows = [r for ref in refs.values() for r in ref.values()]
    for e, model in view.models.items():
        rows += encoder_gate(model, view.codes[e], view.pool, val, refs[view.codes[e].shape[1]],
                             instrument=encoder_instrument(e, latent), dataset=dataset, seed=seed)
    return rows


def run_seed(task: dict) -> list[dict]:
    """Every budget and arm of one dataset and seed (see the module docstring): tidy result rows and gate rows.
    A task with `budget` 2 is a convergence task (`run_doubled`); a task with `arms` runs only those of the
    dataset's arms (the scale check's `HEADLINE_ARMS`)."""
    if task.get("budget", 1) != 1:
        return run_doubled(task)
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    pool, test = seed_data(dataset, seed, cfg)
    val = val_set(dataset, cfg.n_val)
    wanted = task.get("arms")
    keep = (lambda arms: arms) if wanted is None else (lambda arms: [a for a in arms if a in wanted])
    view = seed_view(pool, keep(arms_of(cfg, dataset)), cfg, seed)
    rows = encoder_gates(view, val, dataset, seed, cfg.ae_latent)
    for n in budgets_of(cfg, dataset):
        for arm in keep(arms_at(cfg, dataset, n)):
            query = pool.subset(select_arm(view, arm, n, seed, cfg))
            encoder, method = parse_arm(arm)
            scores = query_scores(query, test, cfg.clf, seed, val if arm == BASELINE else None)
            rows += results.rows(dataset, arm, seed, scores, n_labelled=n, encoder=encoder or "", method=method)
    return rows


# --------------------------------------------------------------------------- choices on validation


def tsne_weight_sweep(task: dict) -> list[dict]:
    """One candidate of the t-SNE weight (task {"cfg", "dataset", "seed", "weight"}, optional "factor"): the
    t-SNE-style encoder trained with that weight on the seed's pool for factor x its epochs (`fit_encoder`, so factor
    1 is the grid's encoder and factor 2 the convergence gate's, from the cache), and the 5-NN accuracy of its
    validation codes (a k-NN classifier fitted on the pool's codes), as a tidy row (arm 'tsne', metric
    'knn_accuracy', columns tsne_weight, ae_steps and factor). Validation images only: no test image is read.
    `best_tsne_weight` chooses among the candidates."""
    cfg, dataset, seed, weight = task["cfg"], task["dataset"], task["seed"], float(task["weight"])
    factor = int(task.get("factor", 1))
    pool, _ = seed_data(dataset, seed, cfg)
    val = val_set(dataset, cfg.n_val)
    model = fit_encoder("tsne", pool.x, cfg.replace(tsne_weight=weight), seed, factor)
    acc = validation_knn(model, pool, val)
    return results.rows(dataset, "tsne", seed, {"knn_accuracy": acc}, n_labelled=0, encoder="tsne",
                        method="sweep", tsne_weight=weight, factor=factor,
                        ae_steps=int(per_dataset(cfg.ae_steps, "tsne", "encoder family")))


def sweep_tasks(cfg: Config, datasets=None, factors=(1, 2)) -> list[dict]:
    """The t-SNE weight's candidates (TSNE_WEIGHTS) on the first seed of each dataset (default: the first one), each
    at factor 1 and 2 x the encoders' epochs (the convergence gate's doubling, so a choice can be a settled one)."""
    return [{"cfg": cfg, "dataset": d, "seed": cfg.seeds[0], "weight": float(w), "factor": int(f)}
            for d in (datasets or cfg.datasets[:1]) for w in cfg.tsne_weights for f in factors]


def best_tsne_weight(sweep: pd.DataFrame, tol: float = TOL) -> float:
    """The candidate weight whose codes have the highest validation 5-NN accuracy (mean over the sweep's datasets and
    seeds; ties: the smaller weight), among the settled ones when the sweep doubled the budget (a `factor` 2 row):
    a weight is settled when doubling moves the accuracy by less than tol on every dataset and seed, the encoders'
    convergence gate applied before the choice. No settled weight: the one whose largest move is smallest, with a
    warning (the notebook's gate then says whether it is settled enough)."""
    rows = sweep[sweep["metric"] == "knn_accuracy"]
    if rows.empty:
        raise ValueError("The sweep holds no knn_accuracy rows.")
    factor = rows["factor"] if "factor" in rows else pd.Series(1, index=rows.index)
    once = rows[factor == 1]
    acc = once.groupby("tsne_weight")["value"].mean()
    if (factor == 2).any():
        keys = ["tsne_weight", "dataset", "seed"]
        twice = rows[factor == 2].set_index(keys)["value"]
        moves = (twice - once.set_index(keys)["value"]).abs().groupby(level="tsne_weight").max()
        settled = moves[moves < tol].index
        if not len(settled):
            import warnings
            warnings.warn(f"No candidate t-SNE weight settles (largest moves {moves.round(4).to_dict()}); choosing "
                          "the one that moves least.", stacklevel=2)
            settled = moves[moves == moves.min()].index
        acc = acc[acc.index.isin(settled)]
    return float(acc[acc == acc.max()].index.min())


TSNE_RECORD = "03_tsne_weight.csv"  # configs/<this>: the t-SNE weight's sweep, written by `make choices`


def tsne_weight_record(path=None) -> pd.DataFrame:
    """The record TSNE_WEIGHT was read off (configs/03_tsne_weight.csv, `write_tsne_record`)."""
    return _record(TSNE_RECORD, path)


def _record(name: str, path=None) -> pd.DataFrame:
    from latentlab.config import CONFIGS

    path = CONFIGS / name if path is None else path
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `make choices` writes it (validation images only).")
    return pd.read_csv(path)


def choose_tsne_weight(cfg: Config, workers: int | None = None) -> tuple[Config, pd.DataFrame]:
    """The notebook's t-SNE weight and the sweep behind it: TSNE_WEIGHT as given, shown beside the record it was
    read off (`tsne_weight_record`); with TSNE_WEIGHT None, chosen here (`best_tsne_weight` of a sweep of
    TSNE_WEIGHTS, 1x and 2x, on the first dataset's first seed: validation images only), e.g. for a dataset the
    record does not cover."""
    if cfg.tsne_weight is not None:
        return cfg, tsne_weight_record()
    from latentlab import grid

    sweep = grid.table(tsne_weight_sweep, sweep_tasks(cfg), workers=workers, desc="t-SNE weight")
    return cfg.replace(tsne_weight=best_tsne_weight(sweep)), sweep


def write_tsne_record(path=None, workers: int | None = None) -> float:
    """The record TSNE_WEIGHT was read off (`make choices`): `tsne_weight_sweep` of every candidate of the default
    parameters cell's TSNE_WEIGHTS at 1x and 2x its encoder budget, on the first seed of both of its datasets.
    Writes configs/03_tsne_weight.csv and returns `best_tsne_weight` of it."""
    from latentlab import grid
    from latentlab.config import CONFIGS, REPO
    from latentlab.runner import parameters_of

    cfg = Config.from_parameters(parameters_of(REPO / "notebooks" / f"{Config.NOTEBOOK}.ipynb", "default"))
    sweep = grid.table(tsne_weight_sweep, sweep_tasks(cfg, cfg.datasets), workers=workers, desc="t-SNE weight")
    sweep.to_csv(CONFIGS / TSNE_RECORD if path is None else path, index=False)
    return best_tsne_weight(sweep)


# --------------------------------------------------------------------------- encoder budgets, chosen on validation


def budget_sweep(task: dict) -> list[dict]:
    """One candidate (learning rate, updates) of one encoder family (task {"cfg", "dataset", "seed", "encoder",
    "lr", "steps"}): the encoder trained with them on the seed's pool (`fit_encoder`; the other families keep the
    config's rates and updates, so the t-SNE candidates fine-tune the config's Conv AE, and a candidate equal to the
    config is the very model of `run_seed`, from the cache). Tidy rows (arm = encoder, columns ae_lr and ae_steps):
    'knn_accuracy', the 5-NN accuracy of its validation codes (the value of the encoders' gates), and
    'gates_passed', 1 when it passes its seed's `encoder_gate` (above PCA's 5-NN accuracy, below PCA's reconstruction
    error), else 0. Validation images only: AE_LR and AE_STEPS of the parameters cell were read off this sweep
    (`budget_sweep_tasks`; the record is configs/03_encoder_budget.csv, `make choices`)."""
    cfg, dataset, seed, encoder = task["cfg"], task["dataset"], task["seed"], task["encoder"]
    kind = ENCODER.match(encoder).group(1)
    lrs = dict(cfg.ae_lr) if isinstance(cfg.ae_lr, dict) else dict.fromkeys(ENCODER_KINDS, cfg.ae_lr)
    steps = dict(cfg.ae_steps) if isinstance(cfg.ae_steps, dict) else dict.fromkeys(ENCODER_KINDS, cfg.ae_steps)
    cfg = cfg.replace(ae_lr=lrs | {kind: float(task["lr"])}, ae_steps=steps | {kind: int(task["steps"])})
    pool, _ = seed_data(dataset, seed, cfg)
    val = val_set(dataset, cfg.n_val)
    model = fit_encoder(encoder, pool.x, cfg, seed)
    codes = encode_all(model, pool.x)
    ref = pca_references(pool, val, [codes.shape[1]], dataset, seed)[codes.shape[1]]
    rows = encoder_gate(model, codes, pool, val, ref, instrument=encoder, dataset=dataset, seed=seed)
    acc = next(r["value"] for r in rows if r["check"] == "knn_accuracy")
    return results.rows(dataset, encoder, seed, {"knn_accuracy": acc,
                                                 "gates_passed": float(all(r["passed"] for r in rows))},
                        n_labelled=0, encoder=encoder, method="budget", ae_lr=float(task["lr"]),
                        ae_steps=int(task["steps"]))


def budget_sweep_tasks(cfg: Config, encoders, lrs, steps, seeds=None, datasets=None) -> list[dict]:
    """Every (dataset, seed, encoder, learning rate, updates) of a budget sweep (defaults: the config's seeds and
    datasets); steps: the candidate updates, or {family: candidates}. The t-SNE encoder needs TSNE_WEIGHT set
    (`tsne_weight_sweep` first)."""
    def candidates(e):
        return per_dataset(steps, ENCODER.match(e).group(1), "encoder family") if isinstance(steps, dict) else steps

    return [{"cfg": cfg, "dataset": d, "seed": s, "encoder": e, "lr": float(lr), "steps": int(n)}
            for d in (datasets or cfg.datasets) for s in (seeds or cfg.seeds) for e in encoders for lr in lrs
            for n in candidates(e)]


def budget_record(path=None) -> pd.DataFrame:
    """The record AE_LR and AE_STEPS were read off (configs/03_encoder_budget.csv, `write_budget_sweep`)."""
    return _record(BUDGET_RECORD, path)


def settled_budget(sweep: pd.DataFrame, tol: float = TOL) -> pd.DataFrame:
    """Per encoder family and learning rate of a `budget_sweep`: the mean validation 5-NN accuracy over seeds (and
    datasets) at each budget (`accuracy_by_steps`), and `settled_steps`, the smallest budget whose next candidate moves
    that mean by less than tol (its accuracy: `knn_accuracy`); `failed_runs`, the runs of that rate (any seed, dataset
    or budget) that failed their `encoder_gate` (`gates_passed` 0: a dead or PCA-level encoder). Among the rates that
    settle with no failed run, the one whose settled accuracy is highest is `chosen` (one row per family and rate).
    None / NaN / False where no budget settles."""
    acc = sweep[sweep["metric"] == "knn_accuracy"].groupby(["arm", "ae_lr", "ae_steps"])["value"].mean()
    passed = sweep[sweep["metric"] == "gates_passed"]
    rows = []
    for (arm, lr), g in acc.groupby(level=["arm", "ae_lr"]):
        g = g.droplevel(["arm", "ae_lr"]).sort_index()
        moves = (g.shift(-1) - g).abs()
        ok = moves[moves < tol]
        steps = int(ok.index[0]) if len(ok) else None
        mine = passed[(passed["arm"] == arm) & (passed["ae_lr"] == lr)]
        rows.append({"encoder": arm, "ae_lr": lr, "settled_steps": steps,
                     "knn_accuracy": float(g[steps]) if steps is not None else float("nan"),
                     "failed_runs": int((mine["value"] == 0).sum()),
                     "accuracy_by_steps": {int(k): round(float(v), 4) for k, v in g.items()}})
    out = pd.DataFrame(rows)
    best = out[out["failed_runs"] == 0].dropna(subset=["knn_accuracy"]).groupby("encoder")["knn_accuracy"].idxmax()
    return out.assign(chosen=out.index.isin(best.to_numpy()))


BUDGET_RECORD = "03_encoder_budget.csv"  # configs/<this>: the encoders' rates and budgets, written by `make choices`
BUDGET_LRS = (0.01, 0.003)  # the candidates of `write_budget_sweep` (`make choices`)
BUDGET_STEPS = {"conv": (1000, 2000, 4000, 8000), "vae": (1000, 2000, 4000), "tsne": (500, 1000, 2000)}


def write_budget_sweep(path=None, workers: int | None = None) -> pd.DataFrame:
    """The record AE_LR and AE_STEPS were read off (`make choices`): `budget_sweep` of every encoder family at the
    rates BUDGET_LRS and budgets BUDGET_STEPS on the pools of the notebook's DATASETS, seeds 0 and 1, the rest as the
    notebook's parameters cell (its AE_WARMUP and TSNE_WEIGHT; None: the choice of the t-SNE record,
    `write_tsne_record`, which `make choices` writes first). Writes configs/03_encoder_budget.csv (validation images
    only) and returns its `settled_budget`."""
    from latentlab import grid
    from latentlab.config import CONFIGS, REPO
    from latentlab.runner import parameters_of

    cfg = Config.from_parameters(parameters_of(REPO / "notebooks" / f"{Config.NOTEBOOK}.ipynb", "default"))
    weight = cfg.tsne_weight if cfg.tsne_weight is not None else best_tsne_weight(tsne_weight_record())
    cfg = cfg.replace(tsne_weight=weight, seeds=(0, 1))
    table = grid.table(budget_sweep, budget_sweep_tasks(cfg, ["conv", "vae", "tsne"], BUDGET_LRS, BUDGET_STEPS),
                       workers=workers, desc="encoder budgets")
    path = CONFIGS / BUDGET_RECORD if path is None else path
    table.assign(tsne_weight=cfg.tsne_weight).to_csv(path, index=False)
    return settled_budget(table)


# --------------------------------------------------------------------------- scale check

SCALE = 4  # the scale check: this many times the encoders' budget (`scaled_encoders`)
HEADLINE_ARMS = ("random", "stratified", "vae/clustered-normal", "conv/clustered-normal")  # its arms


def scaled_encoders(cfg: Config) -> Config:
    """The scale check's config: SCALE x the encoders' updates (each family's), everything else the same."""
    steps = cfg.ae_steps
    return cfg.replace(ae_steps={k: SCALE * v for k, v in steps.items()} if isinstance(steps, dict) else SCALE * steps)


def scale_tasks(cfg: Config) -> list[dict]:
    """The scale check's tasks: SCALE_SEEDS of every dataset at `scaled_encoders`, HEADLINE_ARMS at the smallest n."""
    small = scaled_encoders(cfg)
    small = small.replace(n_labelled={d: [min(budgets_of(cfg, d))] for d in cfg.datasets})
    return [{"cfg": small, "dataset": d, "seed": s, "arms": HEADLINE_ARMS} for d in cfg.datasets
            for s in cfg.scale_seeds]


# --------------------------------------------------------------------------- convergence


def doubled_tasks(cfg: Config) -> list[dict]:
    """One convergence task per dataset, on the first seed: {"cfg", "dataset", "seed", "budget": 2}."""
    return [{"cfg": cfg, "dataset": d, "seed": cfg.seeds[0], "budget": 2} for d in cfg.datasets]


def run_doubled(task: dict) -> list[dict]:
    """One seed at twice the budget: each encoder's 5-NN accuracy (gate rows `knn_accuracy_2x`) and Random's
    validation accuracy per budget n (result rows `val_accuracy_2x`), on the pool and query sets of `run_seed`."""
    cfg, dataset, seed = task["cfg"], task["dataset"], task["seed"]
    pool, _ = seed_data(dataset, seed, cfg)
    val = val_set(dataset, cfg.n_val)
    rows = []
    for e in encoders_of(arms_of(cfg, dataset)):
        model = fit_encoder(e, pool.x, cfg, seed, factor=2)
        acc = validation_knn(model, pool, val)
        rows.append(gates.row(encoder_instrument(e, cfg.ae_latent), dataset, seed, "knn_accuracy_2x", acc))
    view = SeedView(pool, {}, None, {})
    for n in budgets_of(cfg, dataset):
        query = pool.subset(select_arm(view, BASELINE, n, seed, cfg))
        fitted = fit_classifier(query, None, cfg.clf.scaled(2), seed)
        acc = float(evaluate(fitted.model, val, task=val.info.task)["accuracy"])
        rows += results.rows(dataset, BASELINE, seed, {"val_accuracy_2x": acc}, n_labelled=n, encoder="",
                             method=BASELINE)
    return rows


def classifier_check(n: int) -> str:
    """The check name of the classifier's convergence gate at budget n (its rows add '_2x' and '_change')."""
    return f"val_accuracy (n_labelled = {n})"


def _first(values: pd.Series) -> float:
    return float(values.iloc[0]) if len(values) else float("nan")


def _doubled_seed(more: pd.DataFrame, once: pd.DataFrame) -> int:
    """The seed the budget was doubled for (the first seed when no doubled row exists)."""
    return int(more["seed"].iloc[0]) if len(more) else int(once["seed"].min())


RUN_NOISE = 1.96 * 2 ** 0.5  # two training runs of a converged encoder differ by at most this x the seed sd (95 %)


def encoder_convergence(instruments: pd.DataFrame, tol: float = TOL) -> list[dict]:
    """`knn_accuracy_change` rows (`gates.converged_gate`): per encoder and dataset, how far the 5-NN accuracy of the
    doubled seed moves from its budget to twice its epochs; passes below max(tol, RUN_NOISE x the sd of that accuracy
    over the seeds at the budget). A 2-D plane's arrangement is each run's own local optimum: at a budget that has
    settled, two runs still differ by about the seed sd each, so the difference of one seed's two runs has sd
    sqrt(2) x the seed sd, and only a change beyond 1.96 x that (95 %) is one that more training would remove. (The
    seed-averaged criterion, doubling moves the mean by less than one point, is the budget record's:
    `settled_budget`, `make choices`.) NaN (failed) without a doubled row."""
    knn = instruments[instruments["check"].isin(["knn_accuracy", "knn_accuracy_2x"])
                      & ~instruments["instrument"].str.startswith("pca-")]
    rows = []
    for (inst, ds), g in knn.groupby(["instrument", "dataset"], sort=False):
        more, once = g[g["check"] == "knn_accuracy_2x"], g[g["check"] == "knn_accuracy"]
        seed = _doubled_seed(more, once)
        sd = RUN_NOISE * float(once["value"].std(ddof=1)) if len(once) > 1 else None
        rows += gates.converged_gate(_first(once[once["seed"] == seed]["value"]), _first(more["value"]),
                                     instrument=inst, dataset=ds, seed=seed, check="knn_accuracy", tol=tol,
                                     seed_sd=sd)[2:]
    return rows  # [2:]: the values at 1x and 2x are rows of the table already


def classifier_convergence(results_: pd.DataFrame, tol: float = TOL) -> list[dict]:
    """`gates.converged_gate` rows of instrument 'classifier' per dataset and budget n (`classifier_check`):
    Random's validation accuracy at the budget and at `ClfConfig.scaled(2)` on the doubled seed, which passes when it
    moves by less than max(tol, its sd over seeds). NaN (failed) without a doubled row."""
    val = results_[(results_["arm"] == BASELINE) & results_["metric"].isin(["val_accuracy", "val_accuracy_2x"])]
    rows = []
    for (ds, n), g in val.groupby(["dataset", "n_labelled"], sort=False):
        more, once = g[g["metric"] == "val_accuracy_2x"], g[g["metric"] == "val_accuracy"]
        seed = _doubled_seed(more, once)
        sd = float(once["value"].std(ddof=1)) if len(once) > 1 else None
        rows += gates.converged_gate(_first(once[once["seed"] == seed]["value"]), _first(more["value"]),
                                     instrument=CLASSIFIER, dataset=ds, seed=seed, check=classifier_check(int(n)),
                                     tol=tol, seed_sd=sd)
    return rows


def convergence_gates(results_: pd.DataFrame, instruments: pd.DataFrame, tol: float = TOL) -> pd.DataFrame:
    """The convergence gates of a grid with its `doubled_tasks`, from its two tables: the encoders' and the
    classifier's, as one table of `latentlab.gates` rows (join it to the grid's instruments)."""
    return gates.table(encoder_convergence(instruments, tol), classifier_convergence(results_, tol))


# --------------------------------------------------------------------------- verdicts


def gates_at(instruments: pd.DataFrame, n: int) -> pd.DataFrame:
    """The gate rows that bear on claims at budget n: every encoder's, and the classifier's at n only."""
    clf = (instruments["instrument"] == CLASSIFIER).to_numpy()
    at_n = instruments["check"].astype(str).str.match(rf"{re.escape(classifier_check(n))}(_|$)").to_numpy()
    return instruments[~clf | at_n]


def verdicts(results_: pd.DataFrame, claims, instruments: pd.DataFrame, metric="accuracy") -> pd.DataFrame:
    """`stats.compare` by dataset and budget n, each n with its own gates (`gates_at`), joined into one family
    (`stats.one_family`). results_: rows with n_labelled > 0 are compared; a budget without both arms of any claim
    (BUDGET_ARMS) adds no rows."""
    runs = results_[results_["n_labelled"] > 0]
    claims = [stats.as_claim(c) for c in claims]
    tables = [stats.compare(part, [c for c in claims if {c.a, c.b} <= set(part["arm"])], metric=metric,
                            by=["dataset", "n_labelled"], instruments=gates_at(instruments, int(n)))
              for n, part in runs.groupby("n_labelled", sort=True)
              if any({c.a, c.b} <= set(part["arm"]) for c in claims)]  # a budget whose arms make no claim: none
    if not tables:
        raise ValueError("No results with n_labelled > 0 to compare.")
    return stats.one_family(*tables)


def single_run_reach(results_: pd.DataFrame, table: pd.DataFrame, metric: str = "accuracy",
                     scale: float = 100.0) -> pd.DataFrame:
    """How often one run of our setup shows the paper's single-run gap, for the rows of a `verdicts` table with a
    paper number: `reach_share`, the share of seeds whose paired difference (points) lies at or beyond the paper's
    gap on the claimed side (direction x d >= direction x paper), and `reach_normal`, the same under a normal
    distribution with the differences' mean and sd, 1 - Phi((direction (paper - mean)) / sd). NaN without a paper
    number, or (reach_normal) with zero spread. Tells 'the paper's single run is an optimistic draw' (a small but
    real share) from 'the effect is absent' (about none). Returns `table` with the two columns."""
    from scipy.stats import norm

    part = results_[(results_["metric"] == metric) & (results_["n_labelled"] > 0)]
    wide = part.pivot_table(index=["dataset", "n_labelled", "seed"], columns="arm", values="value", aggfunc="first")
    share, normal = [], []
    for _, r in table.iterrows():
        paper_gap = pd.to_numeric(pd.Series([r.get("paper")]), errors="coerce").iloc[0]
        a, _, b = str(r["comparison"]).partition(" − ")
        key = (r["dataset"], r["n_labelled"])
        if r.get("metric", metric) != metric or not np.isfinite(paper_gap) or key not in wide.index.droplevel(2) \
                or a not in wide.columns or b not in wide.columns:
            share.append(np.nan)
            normal.append(np.nan)
            continue
        at = wide.loc[key]
        d = ((at[a] - at[b]).dropna() * scale).to_numpy()
        sign = float(r["direction"])
        share.append(float(np.mean(sign * d >= sign * paper_gap)) if len(d) else np.nan)
        sd = float(np.std(d, ddof=1)) if len(d) > 1 else np.nan
        normal.append(float(1 - norm.cdf(sign * (paper_gap - d.mean()) / sd)) if sd > 0 else np.nan)
    return table.assign(reach_share=share, reach_normal=normal)

