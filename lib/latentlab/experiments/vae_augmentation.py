"""Notebook 04: VAE latent-space augmentation (Jorge et al., VISAPP 2018) against pixel-space and affine augmentation.

One task is one dataset and one seed (every labelled budget of that dataset, every arm, every classifier):
  * the seed's own VAE (trained on `ae_images` unlabelled training images, or on the labelled subset only),
  * per budget, one labelled subset shared by every arm,
  * per arm one synthetic set (`latentlab.samplers.vae_augmentation`), its label validity judged by the dataset's oracle,
  * per arm and classifier one fit on real + synthetic images (kNN and SVM from scikit-learn on pixels; the CNN of
    `latentlab.train.train_classifier`, seeded, so every arm of a seed starts from the same weights),
and returns tidy rows (dataset = `name@budget`, arm, seed, metric, value, plus `classifier`).

`tune_seed` is the validation sweep that chooses each arm's strength (gamma or lambda) and synthetic images per
labelled image; `choose` turns its rows into the settings the test runs use. The test split is never looked at there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from latentlab.data import Dataset, load_cached, per_class_subset
from latentlab.metrics import classification_metrics
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, decode_all, encode_all, epochs_for, fit_autoencoder
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers import vae_augmentation as jorge
from latentlab.stats import Claim, summary_table
from latentlab.train import predict_proba, train_classifier

CLASSIFIERS = ("knn", "svm", "cnn")
LATENT_ARMS = tuple(f"latent-{op}" for op in jorge.OPS)
IMAGE_ARMS = tuple(f"image-{op}" for op in jorge.OPS)
ARMS = ("baseline", *LATENT_ARMS, *IMAGE_ARMS, "affine")
LABELLED_VAE = " (labelled VAE)"  # suffix of the settings whose VAE saw the labelled subset only

# The paper's Table 2: UJIPEN test accuracy (%), classifier x generation method (latent space).
PAPER_TABLE2 = {
    "svm": {"baseline": 54.79, "latent-noise": 59.09, "latent-interpolation": 63.48, "latent-extrapolation": 63.19},
    "knn": {"baseline": 31.86, "latent-noise": 39.29, "latent-interpolation": 53.15, "latent-extrapolation": 46.74},
    "cnn": {"baseline": 63.99, "latent-noise": 57.20, "latent-interpolation": 65.60, "latent-extrapolation": 64.09},
}


@dataclass(frozen=True)
class Config:
    """The notebook's parameters that shape one task (see its `parameters` cell for their meaning)."""

    arms: tuple[str, ...] = ARMS
    classifiers: tuple[str, ...] = CLASSIFIERS
    ae_data: str = "all"  # the VAE sees 'all' (unlabelled) training images, or only the 'labelled' subset
    ae_images: int = 55000  # at most this many training images (a seeded draw) train the VAE
    ae_latent: int = 16
    ae_width: int = 16
    ae_steps: int = 800
    ae_batch: int = 64
    clf_arch: str = "cnn"
    clf_width: int = 8
    clf_steps: int = 100
    clf_min_epochs: int = 1
    clf_batch: int = 32
    clf_lr: float = 2e-3
    clf_class_weight: str | None = "balanced"
    clf_monitor: str = "loss"
    clf_val_checks: int = 5
    knn_k: int = 1
    svm_c: float = 10.0
    affine: dict = field(default_factory=lambda: {"degrees": 10.0, "translate": 0.1, "scale": (0.9, 1.1)})
    oracle: dict = field(default_factory=lambda: {"arch": "cnn", "width": 8, "steps": 400})
    n_val: int = 300
    n_test: int = 1000

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS)) + sorted(set(self.classifiers) - set(CLASSIFIERS))
        if unknown:
            raise ValueError(f"Unknown arms or classifiers {unknown}. Arms: {', '.join(ARMS)}; classifiers: "
                             f"{', '.join(CLASSIFIERS)}.")
        if self.ae_data not in ("all", "labelled"):
            raise ValueError(f"ae_data must be 'all' or 'labelled'; got {self.ae_data!r}.")


# --------------------------------------------------------------------------- settings and data


def parse_setting(setting: str) -> tuple[str, int | None]:
    """'mnist@10' -> ('mnist', 10 labelled images per class); 'breastmnist@all' -> ('breastmnist', None)."""
    name, sep, budget = setting.partition("@")
    if not sep or not (budget == "all" or budget.isdigit()):
        raise ValueError(f"A setting is 'dataset@images_per_class' or 'dataset@all'; got {setting!r}.")
    return name, None if budget == "all" else int(budget)


def tasks(settings: list[str], seeds: list[int], config: Config, choices: dict | None = None) -> list[dict]:
    """One task per dataset and seed, holding all its settings (so each seed's VAE is trained once, by one worker)."""
    names = list(dict.fromkeys(parse_setting(s)[0] for s in settings))
    return [{"dataset": name, "seed": seed, "settings": [s for s in settings if parse_setting(s)[0] == name],
             "choices": {s: c for s, c in (choices or {}).items() if parse_setting(s)[0] == name},
             "config": asdict(config)} for seed in seeds for name in names]


def fixed_subset(data: Dataset, n: int) -> Dataset:
    """The same n images of a split for every seed and arm (all of them when the split is smaller)."""
    return data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:n])) if n < len(data) else data


def labelled_subset(train: Dataset, budget: int | None, seed: int) -> Dataset:
    """`budget` images per class drawn with `seed` (the whole training split for budget None)."""
    return train if budget is None else train.subset(per_class_subset(train.y, budget, seed))


def oracle_for(name: str, cfg: Config) -> Oracle:
    """The dataset's oracle (trained on its full training split, cached on disk and per process)."""
    return train_oracle(name, **cfg.oracle)


def fit_vae(name: str, seed: int, cfg: Config, labelled: Dataset | None = None) -> ConvAutoencoder:
    """The seed's VAE: on `ae_images` training images drawn with the seed (labels unused), or on `labelled` only;
    the validation images monitor it (cached by config, data and seed)."""
    train, val = load_cached(name, "train"), fixed_subset(load_cached(name, "val"), cfg.n_val)
    if labelled is None:
        idx = np.sort(np.random.default_rng(seed).permutation(len(train))[:cfg.ae_images])
        x, key = train.x[idx], f"{name}-train{len(idx)}-seed{seed}"
    else:
        x, key = labelled.x, f"{name}-labelled{len(labelled)}-seed{seed}"
    ae = AEConfig(kind="vae", latent_dim=cfg.ae_latent, width=cfg.ae_width, batch_size=cfg.ae_batch, seed=seed,
                  epochs=epochs_for(cfg.ae_steps, len(x), cfg.ae_batch))
    return fit_autoencoder(x, ae, key, x_val=val.x)


# --------------------------------------------------------------------------- synthetic sets and classifiers


def synthesise(arm: str, lab: Dataset, vae: ConvAutoencoder | None, strength: float, n_per_image: int, seed: int,
               cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic images and labels of one arm ('baseline': none)."""
    if arm == "baseline":
        return lab.x[:0], lab.y[:0]
    if arm == "affine":
        return jorge.affine_augment(lab.x, lab.y, n_per_image, seed=seed, **cfg.affine)[:2]
    space, op = arm.split("-", 1)
    if space == "latent":
        return jorge.augment_latent(vae, lab.x, lab.y, op, strength, n_per_image, seed=seed)[:2]
    return jorge.augment_images(lab.x, lab.y, op, strength, n_per_image, seed=seed)[:2]


def sklearn_probs(kind: str, x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, n_classes: int,
                  cfg: Config) -> np.ndarray:
    """Class scores (N, K) of a kNN (neighbour votes) or RBF-SVM (softmax of its one-vs-rest decision values) fitted
    on flattened pixels: their argmax is the prediction, their ranking gives the AUC."""
    xf, ef, yn = x.flatten(1).numpy(), x_eval.flatten(1).numpy(), y.numpy()
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=cfg.knn_k).fit(xf, yn).predict_proba(ef)
    svm = SVC(C=cfg.svm_c, gamma="scale", class_weight=cfg.clf_class_weight).fit(xf, yn)
    scores = svm.decision_function(ef)
    scores = np.stack([-scores, scores], 1) / 2 if n_classes == 2 else scores
    e = np.exp(scores - scores.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def classifier_probs(kind: str, train: Dataset, val: Dataset, x_eval: torch.Tensor, seed: int,
                     cfg: Config) -> np.ndarray:
    """Fit one classifier on `train` (real + synthetic) and return its class probabilities on x_eval."""
    if kind in ("knn", "svm"):
        return sklearn_probs(kind, train.x, train.y, x_eval, train.n_classes, cfg)
    fit = train_classifier(train, val, arch=cfg.clf_arch, width=cfg.clf_width, steps=cfg.clf_steps,
                           min_epochs=cfg.clf_min_epochs, batch_size=cfg.clf_batch, lr=cfg.clf_lr, seed=seed,
                           class_weight=cfg.clf_class_weight, monitor=cfg.clf_monitor, val_checks=cfg.clf_val_checks)
    return predict_proba(fit.model, x_eval, task=train.info.task).numpy()


def with_synthetic(lab: Dataset, x: torch.Tensor, y: torch.Tensor) -> Dataset:
    """The labelled images followed by synthetic ones."""
    return Dataset(torch.cat([lab.x, x]), torch.cat([lab.y, y]), lab.info)


# --------------------------------------------------------------------------- one seed


def _arm_rows(arm: str, setting: str, seed: int, lab: Dataset, vae, choice: tuple[float, int], splits, oracle: Oracle,
              cfg: Config) -> list[dict]:
    """Validity of one arm's synthetic set, then every classifier's test metrics on real + synthetic images."""
    val, test = splits
    x, y = synthesise(arm, lab, vae, *choice, seed, cfg)
    base = {"dataset": setting, "arm": arm, "seed": seed, "strength": choice[0], "n_per_image": choice[1]}
    rows = [] if arm == "baseline" else [base | {"classifier": "oracle", "metric": "label_validity",
                                                 "value": oracle.agreement(x, y)}]
    train = with_synthetic(lab, x, y)
    for kind in cfg.classifiers:
        probs = classifier_probs(kind, train, val, test.x, seed, cfg)
        metrics = classification_metrics(test.y, probs, test.info.task)
        rows += [base | {"classifier": kind, "metric": m, "value": v} for m, v in metrics.items()]
    return rows


def run_seed(task: dict) -> list[dict]:
    """Every setting, arm and classifier of one dataset and seed; tidy rows (see the module docstring).

    With config ae_data='labelled' each budget gets a VAE of its own labelled subset, only the baseline and the
    latent arms run, and the rows' dataset is the setting suffixed LABELLED_VAE (a setting of its own).
    """
    cfg, name, seed = Config(**task["config"]), task["dataset"], task["seed"]
    splits = tuple(fixed_subset(load_cached(name, s), n) for s, n in (("val", cfg.n_val), ("test", cfg.n_test)))
    oracle, labelled = oracle_for(name, cfg), cfg.ae_data == "labelled"
    arms = [a for a in cfg.arms if not labelled or a == "baseline" or a in LATENT_ARMS]
    rows = []
    for setting in task["settings"]:
        lab = labelled_subset(load_cached(name, "train"), parse_setting(setting)[1], seed)
        vae = fit_vae(name, seed, cfg, lab if labelled else None)
        label = setting + LABELLED_VAE if labelled else setting
        for arm in arms:
            choice = tuple(task["choices"].get(setting, {}).get(arm, (0.0, 0)))
            rows += _arm_rows(arm, label, seed, lab, vae, choice, splits, oracle, cfg)
    return rows


# --------------------------------------------------------------------------- choosing strengths on validation


def _sweep_rows(arm: str, strength: float, n: int, lab: Dataset, vae, val: Dataset, oracle: Oracle, seed: int,
                cfg: Config) -> list[dict]:
    """Label validity and kNN / SVM validation accuracy of one arm at one strength and count."""
    x, y = synthesise(arm, lab, vae, strength, n, seed, cfg)
    train = with_synthetic(lab, x, y)
    base = {"arm": arm, "strength": strength, "n_per_image": n}
    rows = [base | {"classifier": "oracle", "metric": "label_validity", "value": oracle.agreement(x, y)}]
    for kind in ("knn", "svm"):
        pred = sklearn_probs(kind, train.x, train.y, val.x, lab.n_classes, cfg).argmax(1)
        accuracy = float((pred == val.y.numpy()).mean())
        rows.append(base | {"classifier": kind, "metric": "val_accuracy", "value": accuracy})
    return rows


def tune_seed(task: dict) -> list[dict]:
    """The validation sweep of one dataset: every arm at every strength in task['strengths'][op] and every count in
    task['n_per_image'] (rows of `_sweep_rows`). The labelled subset is drawn with task['seed'] (a tuning seed, not
    an evaluation seed); the VAE is that of task['vae_seed'] (an evaluation seed's, so it is trained once). The
    test split is never used."""
    cfg, name, seed = Config(**task["config"]), task["dataset"], task["seed"]
    val, oracle = fixed_subset(load_cached(name, "val"), cfg.n_val), oracle_for(name, cfg)
    vae = fit_vae(name, task["vae_seed"], cfg)
    rows = []
    for setting in task["settings"]:
        lab = labelled_subset(load_cached(name, "train"), parse_setting(setting)[1], seed)
        for arm in (a for a in cfg.arms if a != "baseline"):
            strengths = [0.0] if arm == "affine" else task["strengths"][arm.split("-", 1)[1]]
            for strength, n in ((s, n) for s in strengths for n in task["n_per_image"]):
                rows += [{"dataset": setting} | r for r in _sweep_rows(arm, strength, n, lab, vae, val, oracle,
                                                                         seed, cfg)]
    return rows


def choose(sweep: pd.DataFrame) -> dict[str, dict[str, tuple[float, int]]]:
    """Per setting and arm, the (strength, n_per_image) with the best validation accuracy averaged over kNN and SVM
    (ties: the weaker strength and fewer images, the first in the sweep's order)."""
    acc = sweep[sweep["metric"] == "val_accuracy"]
    mean = acc.groupby(["dataset", "arm", "strength", "n_per_image"], sort=False)["value"].mean().reset_index()
    best = mean.loc[mean.groupby(["dataset", "arm"], sort=False)["value"].idxmax()]
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for r in best.itertuples():
        out.setdefault(r.dataset, {})[r.arm] = (float(r.strength), int(r.n_per_image))
    return out


def tune_tasks(settings: list[str], vae_seed: int, seed: int, strengths: dict[str, list[float]],
               n_per_image: list[int], config: Config) -> list[dict]:
    """One sweep task per dataset, on its first setting in `settings` (the other budgets reuse its choice)."""
    first: dict[str, str] = {}
    for s in settings:
        first.setdefault(parse_setting(s)[0], s)
    return [{"dataset": name, "seed": seed, "vae_seed": vae_seed, "settings": [s], "strengths": strengths,
             "n_per_image": list(n_per_image), "config": asdict(config)} for name, s in first.items()]


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) one dataset's oracle; its result rows (validation / test accuracy, majority-class rate)."""
    return oracle_for(task["dataset"], Config(**task["config"])).rows()


def choices_for(settings: list[str], chosen: dict[str, dict]) -> dict[str, dict]:
    """Every setting gets the choice tuned for a setting of the same dataset (the sweep runs one budget each)."""
    by_name = {parse_setting(s)[0]: c for s, c in chosen.items()}
    missing = sorted({parse_setting(s)[0] for s in settings} - set(by_name))
    if missing:
        raise ValueError(f"No tuned choice for the datasets {missing}: run the validation sweep on them too.")
    return {s: by_name[parse_setting(s)[0]] for s in settings}


# --------------------------------------------------------------------------- the paper's claims


def paper_effect(a: str, b: str, classifier: str) -> float:
    """The paper's difference a - b in accuracy points (Table 2), for arms of the table."""
    return round(PAPER_TABLE2[classifier][a] - PAPER_TABLE2[classifier][b], 2)


def paper_claims(settings: list[str], pairs: list[tuple[str, str]]) -> list[Claim]:
    """One Claim per pair of Table-2 arms, the paper's effect given per (setting, classifier) group, for
    `latentlab.stats.compare(..., by=['dataset', 'classifier'])`."""
    return [Claim(a, b, {(s, c): paper_effect(a, b, c) for s in settings for c in PAPER_TABLE2}) for a, b in pairs]


def gains(results: pd.DataFrame, arm: str, baseline: str = "baseline", metric: str = "accuracy") -> pd.DataFrame:
    """Per setting, seed and classifier, `arm` minus `baseline`, as a tidy table whose arm is the classifier: so
    `latentlab.stats.compare` can ask whether one classifier gains more than another (paired by seed)."""
    wide = results[results["metric"] == metric].pivot_table(index=["dataset", "classifier", "seed"], columns="arm",
                                                             values="value")
    out = (wide[arm] - wide[baseline]).rename("value").reset_index().rename(columns={"classifier": "arm"})
    return out.assign(metric=f"{arm} gain")


def beside_paper(results: pd.DataFrame, arms: list[str], metric: str = "accuracy") -> pd.DataFrame:
    """Table 2's layout (classifier rows, arm columns; mean ± sd over seeds in %) per setting, under the paper's
    UJIPEN row block."""
    ours = summary_table(results[results["classifier"].isin(CLASSIFIERS)], metrics=[metric], arms=arms,
                         by=["dataset", "classifier"]).droplevel("metric")
    paper = pd.DataFrame(PAPER_TABLE2).T.reindex(columns=arms).map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    paper.index = pd.MultiIndex.from_product([["UJIPEN (paper)"], paper.index], names=ours.index.names)
    return pd.concat([paper, ours])


@torch.no_grad()
def example_rows(lab: Dataset, vae: ConvAutoencoder, choices: dict[str, tuple[float, int]], idx: list[int],
                 seed: int, cfg: Config) -> dict[str, torch.Tensor]:
    """The paper's Figure 10: for the labelled images idx, the original, its reconstruction and the first synthetic
    copy of every arm (interpolation and extrapolation with the nearest same-class neighbour)."""
    rows = {"original": lab.x[idx], "reconstruction": decode_all(vae, encode_all(vae, lab.x[idx]))}
    for arm in (a for a in cfg.arms if a != "baseline"):
        rows[arm] = synthesise(arm, lab, vae, choices[arm][0], 1, seed, cfg)[0][idx]
    return rows


# --------------------------------------------------------------------------- figures of the paper


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
    k = int(jorge.same_class_neighbours(z, y, 1)[j, 0])
    zj, zk = z[j:j + 1], z[k:k + 1]
    noise = jorge.add_noise(zj.repeat(n_noise, 1), gamma, jorge.code_spread(z), torch.Generator().manual_seed(seed))
    return {"z_j": zj, "z_k": zk, "interpolation": jorge.interpolate(zj, zk, lam),
            "extrapolation": jorge.extrapolate(zj, zk, lam), "noise": noise}
