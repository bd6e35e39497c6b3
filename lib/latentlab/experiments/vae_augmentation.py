"""Notebook 04: VAE latent-space augmentation (Jorge et al., VISAPP 2018) against pixel-space and affine augmentation.

One task is one dataset and one seed (every labelled budget of that dataset in `cfg.datasets`, every arm, every
classifier):
  * the seed's own VAE (trained on `ae_images` unlabelled training images, or on the labelled subset only),
  * per budget, one labelled subset shared by every arm,
  * per arm one synthetic set (`latentlab.samplers.vae_augmentation`), its label validity judged by the oracle,
  * per arm and classifier one fit on real + synthetic images (kNN and SVM from scikit-learn on pixels; the CNN of
    `latentlab.train.fit_classifier`, seeded, so every arm of a seed starts from the same weights),
and returns tidy rows (dataset = `name@budget`, arm, seed, metric, value, plus `classifier`, `strength` and
`n_per_image`).

`tune_seed` is the validation sweep that chooses each arm's strength (gamma or lambda) and synthetic images per
labelled image; `choose` turns its rows into the settings the test runs use. The test split is never looked at there.
The paper's numbers and claims are in `latentlab.papers.vae_augmentation`, the figures in
`latentlab.plots.vae_augmentation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from latentlab import data, grid, results
from latentlab.config import ClfConfig, OracleConfig, Params
from latentlab.data import Dataset
from latentlab.metrics import classification_metrics
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, epochs_for, fit_autoencoder
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers import vae_augmentation as augment
from latentlab.train import fit_classifier, predict_proba

CLASSIFIERS = ("knn", "svm", "cnn")
LATENT_ARMS = tuple(f"latent-{op}" for op in augment.OPS)
IMAGE_ARMS = tuple(f"image-{op}" for op in augment.OPS)
ARMS = ("baseline", *LATENT_ARMS, *IMAGE_ARMS, "affine")
AE_DATA = ("all", "labelled")
LABELLED_VAE = " (labelled VAE)"  # suffix of the settings whose VAE saw the labelled subset only

Choice = tuple[float, int]  # (strength: gamma or lambda, synthetic images per labelled image)


@dataclass(frozen=True)
class Config(Params):
    """Notebook 04's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`, ORACLE_* in `oracle`)."""

    NOTEBOOK = "04_vae_augmentation"

    datasets: tuple[str, ...]  # settings 'name@labelled per class' ('name@all': the whole training split)
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    classifiers: tuple[str, ...]
    workers: int | None
    ae_data: str  # the VAE sees 'all' (unlabelled) training images, or only the 'labelled' subset
    ae_images: int  # at most this many training images (a seeded draw) train the VAE
    ae_latent: int
    ae_width: int
    ae_steps: int
    ae_batch: int
    labelled_vae_settings: tuple[str, ...]  # settings run again with ae_data='labelled' (`labelled_variant`)
    clf: ClfConfig
    knn_k: int
    svm_c: float
    strengths: dict  # {operation: [gamma or lambda, ...]} of the validation sweep
    n_per_image: tuple[int, ...]  # synthetic images per labelled image, swept with the strength
    tune_seed: int  # the labelled draw of the validation sweep
    affine_degrees: float
    affine_translate: float
    affine_scale: tuple[float, float]
    oracle: OracleConfig
    plane_steps: int  # the 2-D VAE of the paper's figures (`plane_config`)
    plane_images: int
    n_val: int
    n_test: int

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS)) + sorted(set(self.classifiers) - set(CLASSIFIERS))
        if unknown:
            raise ValueError(f"Unknown arms or classifiers {unknown}. Arms: {', '.join(ARMS)}; classifiers: "
                             f"{', '.join(CLASSIFIERS)}.")
        if self.ae_data not in AE_DATA:
            raise ValueError(f"AE_DATA must be 'all' or 'labelled'; got {self.ae_data!r}.")
        for setting in (*self.datasets, *self.labelled_vae_settings):
            parse_setting(setting)


# --------------------------------------------------------------------------- settings and their variants


def parse_setting(setting: str) -> tuple[str, int | None]:
    """'mnist@10' -> ('mnist', 10 labelled images per class); 'breastmnist@all' -> ('breastmnist', None)."""
    name, sep, budget = setting.partition("@")
    if not sep or not (budget == "all" or budget.isdigit()):
        raise ValueError(f"A setting is 'dataset@images_per_class' or 'dataset@all'; got {setting!r}.")
    return name, None if budget == "all" else int(budget)


def dataset_names(settings) -> list[str]:
    """The datasets of some settings, in order of first appearance."""
    return list(dict.fromkeys(parse_setting(s)[0] for s in settings))


def settings_of(settings, name: str) -> list[str]:
    """The settings of one dataset."""
    return [s for s in settings if parse_setting(s)[0] == name]


def labelled_variant(cfg: Config) -> Config:
    """The config of the LABELLED_VAE_SETTINGS runs: those settings, each budget's VAE trained on its labelled subset
    only, and only the arms a VAE changes (baseline and latent arms; the others would repeat the main runs)."""
    return cfg.replace(datasets=cfg.labelled_vae_settings, labelled_vae_settings=(), ae_data="labelled",
                       arms=tuple(a for a in cfg.arms if a == "baseline" or a in LATENT_ARMS))


def result_settings(cfg: Config) -> list[str]:
    """The `dataset` column values of the experiment's rows: the settings, then the labelled-VAE ones."""
    return [*cfg.datasets, *(s + LABELLED_VAE for s in cfg.labelled_vae_settings)]


def plane_config(cfg: Config) -> Config:
    """The 2-D VAE that draws the paper's figures: a two-dimensional code, PLANE_STEPS updates on PLANE_IMAGES
    unlabelled training images."""
    return cfg.replace(ae_data="all", ae_latent=2, ae_steps=cfg.plane_steps, ae_images=cfg.plane_images)


# --------------------------------------------------------------------------- data and the VAE


@dataclass(frozen=True)
class Splits:
    """One dataset's training split and the fixed validation and test subsets every seed and arm share."""

    train: Dataset
    val: Dataset
    test: Dataset


def load_splits(name: str, cfg: Config) -> Splits:
    """The training split, N_VAL validation and N_TEST test images of a dataset (fixed subsets)."""
    return Splits(data.load_cached(name, "train"), data.fixed_subset(data.load_cached(name, "val"), cfg.n_val),
                  data.fixed_subset(data.load_cached(name, "test"), cfg.n_test))


def labelled_subset(train: Dataset, budget: int | None, seed: int) -> Dataset:
    """`budget` images per class drawn with `seed` (the whole training split for budget None)."""
    return train if budget is None else train.subset(data.per_class_subset(train.y, budget, seed))


def fit_vae(splits: Splits, seed: int, cfg: Config, lab: Dataset | None = None) -> ConvAutoencoder:
    """The seed's VAE: on `ae_images` training images drawn with the seed (labels unused), or with
    cfg.ae_data='labelled' on the labelled subset `lab` only; the validation images monitor it. Cached by its config
    and the images it saw."""
    if cfg.ae_data == "labelled":
        if lab is None:
            raise ValueError("AE_DATA='labelled' trains the VAE on the labelled subset: pass it as lab.")
        x = lab.x
    else:
        x = splits.train.x[np.sort(np.random.default_rng(seed).permutation(len(splits.train))[:cfg.ae_images])]
    ae = AEConfig(kind="vae", latent_dim=cfg.ae_latent, width=cfg.ae_width, batch_size=cfg.ae_batch, seed=seed,
                  epochs=epochs_for(cfg.ae_steps, len(x), cfg.ae_batch))
    return fit_autoencoder(x, ae, x_val=splits.val.x)


# --------------------------------------------------------------------------- synthetic sets and classifiers


def synthesise(arm: str, lab: Dataset, vae: ConvAutoencoder | None, strength: float, n_per_image: int, seed: int,
               cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic images and labels of one arm ('baseline': none)."""
    if arm == "baseline":
        return lab.x[:0], lab.y[:0]
    if arm == "affine":
        return augment.affine_augment(lab.x, lab.y, n_per_image, degrees=cfg.affine_degrees,
                                      translate=cfg.affine_translate, scale=cfg.affine_scale, seed=seed)[:2]
    space, op = arm.split("-", 1)
    if space == "latent":
        return augment.augment_latent(vae, lab.x, lab.y, op, strength, n_per_image, seed=seed)[:2]
    return augment.augment_images(lab.x, lab.y, op, strength, n_per_image, seed=seed)[:2]


def sklearn_probs(kind: str, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, n_classes: int,
                  cfg: Config) -> np.ndarray:
    """Class scores (N, K) of a kNN (neighbour votes) or RBF-SVM (softmax of its one-vs-rest decision values) fitted
    on flattened pixels: their argmax is the prediction, their ranking gives the AUC."""
    xf, ef, yn = x.flatten(1).numpy(), x_eval.flatten(1).numpy(), y.numpy()
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=cfg.knn_k).fit(xf, yn).predict_proba(ef)
    svm = SVC(C=cfg.svm_c, gamma="scale", class_weight=cfg.clf.class_weight).fit(xf, yn)
    scores = svm.decision_function(ef)
    scores = np.stack([-scores, scores], 1) / 2 if n_classes == 2 else scores
    e = np.exp(scores - scores.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def classifier_probs(kind: str, train: Dataset, val: Dataset, x_eval: torch.Tensor, seed: int,
                     cfg: Config) -> np.ndarray:
    """Fit one classifier on `train` (real + synthetic) and return its class probabilities on x_eval."""
    if kind in ("knn", "svm"):
        return sklearn_probs(kind, train.x, train.y, x_eval, train.n_classes, cfg)
    fitted = fit_classifier(train, val, cfg.clf, seed)
    return predict_proba(fitted.model, x_eval, task=train.info.task).numpy()


def with_synthetic(lab: Dataset, x: torch.Tensor, y: torch.Tensor) -> Dataset:
    """The labelled images followed by synthetic ones."""
    return Dataset(torch.cat([lab.x, x]), torch.cat([lab.y, y]), lab.info)


# --------------------------------------------------------------------------- one seed


def arm_rows(arm: str, setting: str, seed: int, lab: Dataset, vae: ConvAutoencoder, choice: Choice, splits: Splits,
             oracle: Oracle, cfg: Config) -> list[dict]:
    """Validity of one arm's synthetic set, then every classifier's test metrics on real + synthetic images."""
    x, y = synthesise(arm, lab, vae, *choice, seed, cfg)
    extra = {"strength": choice[0], "n_per_image": choice[1]}
    rows = [] if arm == "baseline" else results.rows(setting, arm, seed, {"label_validity": oracle.agreement(x, y)},
                                                     classifier="oracle", **extra)
    train = with_synthetic(lab, x, y)
    for kind in cfg.classifiers:
        probs = classifier_probs(kind, train, splits.val, splits.test.x, seed, cfg)
        metrics = classification_metrics(splits.test.y, probs, splits.test.info.task)
        rows += results.rows(setting, arm, seed, metrics, classifier=kind, **extra)
    return rows


def run_seed(task: dict) -> list[dict]:
    """Every setting of one dataset in cfg.datasets, every arm and classifier, for one seed; tidy rows (see the
    module docstring). task: {"cfg", "dataset", "seed", "choice": {arm: (strength, n_per_image)}} (`tasks`).

    With cfg.ae_data='labelled' each budget gets a VAE of its own labelled subset, and the rows' dataset is the
    setting suffixed LABELLED_VAE (a setting of its own).
    """
    cfg, name, seed, choice = task["cfg"], task["dataset"], task["seed"], task["choice"]
    splits, oracle = load_splits(name, cfg), train_oracle(name, cfg.oracle)
    rows = []
    for setting in settings_of(cfg.datasets, name):
        lab = labelled_subset(splits.train, parse_setting(setting)[1], seed)
        vae = fit_vae(splits, seed, cfg, lab)
        label = setting + LABELLED_VAE if cfg.ae_data == "labelled" else setting
        for arm in cfg.arms:
            rows += arm_rows(arm, label, seed, lab, vae, tuple(choice.get(arm, (0.0, 0))), splits, oracle, cfg)
    return rows


def tasks(cfg: Config, chosen: dict[str, dict[str, Choice]]) -> list[dict]:
    """The experiment's grid: one task per seed and dataset (all its settings, so each seed's VAE trains once, in
    one worker), carrying the choice tuned for that dataset (`choose`); then the same for the labelled-VAE settings
    (`labelled_variant`), when there are any."""
    configs = [cfg] + ([labelled_variant(cfg)] if cfg.labelled_vae_settings else [])
    return [task | {"choice": choice_for(chosen, task["dataset"])}
            for c in configs for task in grid.tasks(c, seed=c.seeds, dataset=dataset_names(c.datasets))]


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) one dataset's oracle; its result rows (validation / test accuracy, majority-class rate)."""
    return train_oracle(task["dataset"], task["cfg"].oracle).rows()


# --------------------------------------------------------------------------- choosing strengths on validation


def sweep_rows(arm: str, setting: str, strength: float, n: int, lab: Dataset, vae: ConvAutoencoder, val: Dataset,
               oracle: Oracle, cfg: Config) -> list[dict]:
    """Label validity and kNN / SVM validation accuracy of one arm at one strength and count."""
    x, y = synthesise(arm, lab, vae, strength, n, cfg.tune_seed, cfg)
    train = with_synthetic(lab, x, y)
    extra = {"strength": strength, "n_per_image": n}
    rows = results.rows(setting, arm, cfg.tune_seed, {"label_validity": oracle.agreement(x, y)}, classifier="oracle",
                        **extra)
    for kind in ("knn", "svm"):
        pred = sklearn_probs(kind, train.x, train.y, val.x, lab.n_classes, cfg).argmax(1)
        accuracy = float((pred == val.y.numpy()).mean())
        rows += results.rows(setting, arm, cfg.tune_seed, {"val_accuracy": accuracy}, classifier=kind, **extra)
    return rows


def tune_seed(task: dict) -> list[dict]:
    """The validation sweep of one dataset, on its first setting in cfg.datasets: every arm at every strength in
    cfg.strengths[op] and every count in cfg.n_per_image (rows of `sweep_rows`). The labelled subset is drawn with
    cfg.tune_seed (not an evaluation seed); the VAE is that of the first evaluation seed (trained once, loaded by
    run_seed later). The test split is never used."""
    cfg, name = task["cfg"], task["dataset"]
    splits, oracle = load_splits(name, cfg), train_oracle(name, cfg.oracle)
    setting = settings_of(cfg.datasets, name)[0]
    lab = labelled_subset(splits.train, parse_setting(setting)[1], cfg.tune_seed)
    vae = fit_vae(splits, cfg.seeds[0], cfg, lab)
    rows = []
    for arm in (a for a in cfg.arms if a != "baseline"):
        strengths = [0.0] if arm == "affine" else cfg.strengths[arm.split("-", 1)[1]]
        for strength, n in ((s, n) for s in strengths for n in cfg.n_per_image):
            rows += sweep_rows(arm, setting, strength, n, lab, vae, splits.val, oracle, cfg)
    return rows


def tune_tasks(cfg: Config) -> list[dict]:
    """One sweep task per dataset of cfg.datasets (on its first setting; its other budgets reuse the choice)."""
    return grid.tasks(cfg, dataset=dataset_names(cfg.datasets))


def choose(sweep: pd.DataFrame) -> dict[str, dict[str, Choice]]:
    """Per setting tuned on and arm, the (strength, n_per_image) with the best validation accuracy averaged over kNN
    and SVM (ties: the weaker strength and fewer images, the first in the sweep's order)."""
    acc = sweep[sweep["metric"] == "val_accuracy"]
    mean = acc.groupby(["dataset", "arm", "strength", "n_per_image"], sort=False)["value"].mean().reset_index()
    best = mean.loc[mean.groupby(["dataset", "arm"], sort=False)["value"].idxmax()]
    out: dict[str, dict[str, Choice]] = {}
    for r in best.itertuples():
        out.setdefault(r.dataset, {})[r.arm] = (float(r.strength), int(r.n_per_image))
    return out


def choice_for(chosen: dict[str, dict[str, Choice]], setting: str) -> dict[str, Choice]:
    """The choice of a setting or dataset: the one tuned on a setting of the same dataset (the sweep runs one budget
    per dataset)."""
    name = parse_setting(setting)[0] if "@" in setting else setting
    by_name = {parse_setting(s)[0]: c for s, c in chosen.items()}
    if name not in by_name:
        raise ValueError(f"No tuned choice for the dataset {name!r} (tuned: {sorted(by_name)}): run the validation "
                         "sweep on it too.")
    return by_name[name]
