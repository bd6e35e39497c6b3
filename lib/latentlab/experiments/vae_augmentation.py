"""Notebook 04: VAE latent-space augmentation (Jorge et al., VISAPP 2018) against pixel-space and affine augmentation.

One task is one dataset and one seed (every labelled budget of that dataset in `cfg.datasets`, every arm, every
classifier):
  * the seed's own VAE (trained on `ae_images` unlabelled training images, or on the labelled subset only),
  * per budget, one labelled subset shared by every arm,
  * per arm one synthetic set (`latentlab.samplers.vae_augmentation`), its label validity judged by the oracle,
  * per arm and classifier one fit on real + synthetic images (kNN and SVM from scikit-learn on pixels; the CNN of
    `latentlab.train.fit_classifier`, seeded, so every arm of a seed starts from the same weights),
and returns tidy rows (dataset = `name@budget`, arm, seed, metric, value, plus `classifier`, `strength` and
`n_per_image`; the CNN's runs add `val_accuracy` and `best_epoch`, the kept validation check) together with the
quality gates of that seed's instruments (`latentlab.gates` rows, told apart by their `instrument` key; split them
with `latentlab.grid.tables`):
  * "vae": `reconstruction_gate` on GATE_IMAGES fixed test images (the same for every seed): the oracle recognises
    the reconstructions at least 0.8 x as often as the real images, and their MSE is at most 0.6 x the mean image's;
    and `oracle_margin`, the oracle's accuracy on those real images minus their majority-class rate, at least
    ORACLE_MARGIN: a judge that barely beats a constant answer (BreastMNIST's) cannot check labels, so every claim
    on a latent arm (all rest on "vae") reads `not tested` rather than resting on its label checks;
  * "vae-augmentations:<operation>" (`augmentation_instrument`), per latent arm: the decoded augmentations keep their
    source's label, to the oracle, at least LABEL_RATIO = 0.8 x as often as it labels the real images correctly
    (`label_agreement`; the coverage row of `sample_gate` does not apply: the augmentations are made per class, from
    the labelled images), and, where their class mix is within MAX_CLASS_MIX_GAP of the real images' (total
    variation), the Frechet gap of `sample_gate` on at most GATE_SAMPLES of them (`fd_gap_closed` >= 0.7).
Every CNN trains with `Hooks(validate_from=FIRST_SYNTHETIC_EPOCH)`: the synthetic set is made before training and
joins every epoch, so no kept model predates the first synthetic batch. The CNN's convergence ("classifier") is a
small grid of its own: `convergence_rows` retrains the first seed's baseline at 2x its budget per setting, and
`classifier_gates` turns that and the seeds' validation accuracies into `converged_gate` rows.

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

from latentlab import data, gates, grid, results
from latentlab.config import ClfConfig, OracleConfig, Params
from latentlab.data import Dataset
from latentlab.metrics import classification_metrics
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, encode_all, epochs_for, fit_autoencoder, reconstruct
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers import vae_augmentation as augment
from latentlab.train import FitResult, Hooks, fit_classifier, predict_proba

CLASSIFIERS = ("knn", "svm", "cnn")
LATENT_ARMS = tuple(f"latent-{op}" for op in augment.OPS)  # the paper's three operations on the codes
RECONSTRUCTION = "latent-reconstruction"  # the control: the codes decoded unaltered (eq. (3) with lambda = 0)
CODES = "latent-codes"  # the control: kNN / SVM on the VAE codes of the labelled images, no synthetic image
DECODED_ARMS = (*LATENT_ARMS, RECONSTRUCTION)  # the arms whose synthetic images the VAE decodes (augmentation gate)
VAE_ARMS = (*DECODED_ARMS, CODES)  # the arms that use the VAE
IMAGE_ARMS = tuple(f"image-{op}" for op in augment.OPS)
ARMS = ("baseline", *LATENT_ARMS, RECONSTRUCTION, CODES, *IMAGE_ARMS, "affine")
FIXED_CHOICES = {RECONSTRUCTION: (0.0, 1), CODES: (0.0, 0)}  # nothing to tune: one unaltered copy; no copy
HEADLINE_ARMS = ("baseline", "latent-interpolation", RECONSTRUCTION, CODES)  # the arms of the scale check's claims
SCALE = 4  # the scale check: this many times the VAE's updates (`scaled_vae`)
AE_DATA = ("all", "labelled")
LABELLED_VAE = " (labelled VAE)"  # suffix of the settings whose VAE saw the labelled subset only
VAE = "vae"  # the instrument of the VAE's reconstructions
CLASSIFIER = "classifier"  # the instrument of the CNN's convergence
GATE_IMAGES = 1000  # held-out real images of the reconstruction gate (a fixed test subset, the same for every seed)
GATE_SAMPLES = 1000  # at most this many decoded augmentations in the Frechet gate
LABEL_RATIO = 0.8  # augmentations keep their label at least this x as often as the oracle labels real images right
ORACLE_MARGIN = 0.10  # the oracle must beat the majority-class rate of the gate's test images by this much
CHOICE_MARGIN = 0.05  # the sweep asks LABEL_RATIO + this of a candidate: the seeds' own VAEs differ from the sweep's
MAX_CLASS_MIX_GAP = 0.1  # total variation between the class mixes beyond which the Frechet gate is not measured
FIRST_SYNTHETIC_EPOCH = 0  # the synthetic set joins the training set from the first epoch

Choice = tuple[float, int]  # (strength: gamma or lambda, synthetic images per labelled image)


@dataclass(frozen=True)
class Config(Params):
    """Notebook 04's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`, ORACLE_* in `oracle`)."""

    NOTEBOOK = "04_vae_augmentation"

    datasets: tuple[str, ...]  # settings 'name@labelled per class' ('name@all': the whole training split)
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    classifiers: tuple[str, ...]
    cnn_arms: tuple[str, ...]  # the arms of `arms` the CNN trains on (kNN and SVM: every arm of `arms`)
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
    n_test: int | None  # None: the whole test split
    scale_seeds: tuple[int, ...]  # the scale check: SCALE x the VAE's updates on these seeds (`scaled_vae`)

    def __post_init__(self):
        unknown = (sorted(set(self.arms) - set(ARMS)) + sorted(set(self.classifiers) - set(CLASSIFIERS))
                   + sorted(set(self.cnn_arms) - set(ARMS)) + sorted(set(self.cnn_arms) & {CODES}))
        if unknown:
            raise ValueError(f"Unknown arms or classifiers {unknown}. Arms: {', '.join(ARMS)}; classifiers: "
                             f"{', '.join(CLASSIFIERS)}; CNN_ARMS are arms too ({CODES} trains no CNN).")
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
    arms = tuple(a for a in cfg.arms if a == "baseline" or a in VAE_ARMS)
    return cfg.replace(datasets=cfg.labelled_vae_settings, labelled_vae_settings=(), ae_data="labelled", arms=arms)


def scaled_vae(cfg: Config) -> Config:
    """The scale check's config: SCALE x the VAE's updates, on cfg.scale_seeds, the HEADLINE_ARMS only (kNN and SVM
    and the CNN where cfg trains it), everything else the same."""
    arms = tuple(a for a in HEADLINE_ARMS if a in cfg.arms)
    return cfg.replace(ae_steps=SCALE * cfg.ae_steps, seeds=cfg.scale_seeds, arms=arms, labelled_vae_settings=())


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
    """The training split, N_VAL validation and N_TEST test images of a dataset (fixed subsets; N_TEST None: the
    whole test split)."""
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
    if arm in ("baseline", CODES):
        return lab.x[:0], lab.y[:0]
    if arm == RECONSTRUCTION:  # eq. (3) with lambda = 0: every code decoded as it is
        return augment.augment_latent(vae, lab.x, lab.y, "interpolation", 0.0, 1, seed=seed)[:2]
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


def fit_cnn(train: Dataset, val: Dataset, seed: int, clf: ClfConfig) -> FitResult:
    """The seeded CNN on `train` (real + synthetic), no validation check before FIRST_SYNTHETIC_EPOCH."""
    return fit_classifier(train, val, clf, seed, hooks=Hooks(validate_from=FIRST_SYNTHETIC_EPOCH))


def kept_check(fitted: FitResult) -> dict[str, float]:
    """The kept validation check of a CNN: its validation accuracy and epoch (`best_epoch`)."""
    row = next(r for r in fitted.history if r["epoch"] == fitted.best_epoch)
    return {"val_accuracy": row["val_accuracy"], "best_epoch": fitted.best_epoch}


def classifier_run(kind: str, train: Dataset, val: Dataset, x_eval: torch.Tensor, seed: int,
                   cfg: Config) -> tuple[np.ndarray, dict[str, float]]:
    """Fit one classifier on `train` (real + synthetic): its class probabilities on x_eval and, for the CNN, its kept
    validation check (`kept_check`; kNN and SVM keep no model from several, so none)."""
    if kind in ("knn", "svm"):
        return sklearn_probs(kind, train.x, train.y, x_eval, train.n_classes, cfg), {}
    fitted = fit_cnn(train, val, seed, cfg.clf)
    return predict_proba(fitted.model, x_eval, task=train.info.task).numpy(), kept_check(fitted)


def with_synthetic(lab: Dataset, x: torch.Tensor, y: torch.Tensor) -> Dataset:
    """The labelled images followed by synthetic ones."""
    return Dataset(torch.cat([lab.x, x]), torch.cat([lab.y, y]), lab.info)


# --------------------------------------------------------------------------- the instruments' gates


def augmentation_instrument(arm: str) -> str:
    """The instrument of a latent arm's decoded augmentations: 'latent-noise' -> 'vae-augmentations:noise'."""
    if arm not in DECODED_ARMS:
        raise ValueError(f"Only latent arms decode augmentations ({', '.join(DECODED_ARMS)}); got {arm!r}.")
    return "vae-augmentations:" + arm.split("-", 1)[1]


def vae_gate(vae: ConvAutoencoder, oracle: Oracle, splits: Splits, *, dataset: str, seed: int) -> list[dict]:
    """`gates.reconstruction_gate` of a VAE on GATE_IMAGES fixed test images (instrument "vae"), and the judge's own
    row `oracle_margin`: its accuracy on those images minus their majority-class rate, at least ORACLE_MARGIN."""
    held = data.fixed_subset(splits.test, GATE_IMAGES)
    rows = gates.reconstruction_gate(oracle, held.x, held.y, reconstruct(vae, held.x), instrument=VAE,
                                     dataset=dataset, seed=seed)
    acc = next(r["value"] for r in rows if r["check"] == "oracle_accuracy_real")
    margin = acc - float(np.bincount(held.y.numpy()).max() / len(held))
    return rows + [gates.row(VAE, dataset, seed, "oracle_margin", margin, threshold=ORACLE_MARGIN,
                             passed=margin >= ORACLE_MARGIN)]


def frechet_reference(splits: Splits, n: int) -> Dataset:
    """The real images of a Frechet gate of n samples: the fixed test subset when it holds 2n of them, else a fixed
    subset of 2n training images (all of them when the split is smaller)."""
    return splits.test if len(splits.test) >= 2 * n else data.fixed_subset(splits.train, 2 * n)


def class_mix_gap(y_a, y_b, n_classes: int) -> float:
    """Total variation distance between the class mixes of two label sets (0: the same shares, 1: disjoint)."""
    shares = [np.bincount(np.asarray(y), minlength=n_classes)[:n_classes] / len(y) for y in (y_a, y_b)]
    return float(0.5 * np.abs(shares[0] - shares[1]).sum())


def augmentation_gate(arm: str, x: torch.Tensor, y: torch.Tensor, oracle: Oracle, splits: Splits, acc_real: float,
                      *, dataset: str, seed: int) -> list[dict]:
    """The gate rows of one latent arm's decoded augmentations x (labels y, their sources'), instrument
    `augmentation_instrument(arm)`: `label_agreement` (the oracle gives them their source's label at least
    LABEL_RATIO x acc_real, its accuracy on real test images), the reported `class_mix_gap` to the real images,
    and, when that gap is at most MAX_CLASS_MIX_GAP, `sample_gate`'s rows on at most GATE_SAMPLES of them (a fixed
    draw) without its coverage row (`min_class_share`: per-class augmentations cover what the labelled set holds)."""
    at = dict(instrument=augmentation_instrument(arm), dataset=dataset, seed=seed)
    agree = oracle.agreement(x, y)
    rows = [gates.row(**at, check="label_agreement", value=agree, threshold=LABEL_RATIO * acc_real,
                      passed=agree >= LABEL_RATIO * acc_real)]
    n = min(len(x), GATE_SAMPLES, len(splits.train) // 2)
    real = frechet_reference(splits, n)
    gap = class_mix_gap(y, real.y, real.n_classes)
    rows.append(gates.row(**at, check="class_mix_gap", value=gap))
    if gap > MAX_CLASS_MIX_GAP:
        return rows
    keep = np.sort(np.random.default_rng(0).permutation(len(x))[:n])
    fd = gates.sample_gate(oracle, x[keep], real.x, n_classes=real.n_classes, **at)
    return rows + [r for r in fd if r["check"] != "min_class_share"]


# --------------------------------------------------------------------------- one seed


def classifiers_of(arm: str, cfg: Config) -> list[str]:
    """The classifiers an arm trains: kNN and SVM on every arm, the CNN on cfg.cnn_arms (never on CODES)."""
    return [k for k in cfg.classifiers if k != "cnn" or arm in cfg.cnn_arms]


def code_probs(kind: str, vae: ConvAutoencoder, lab: Dataset, x_eval: torch.Tensor, cfg: Config) -> np.ndarray:
    """The CODES arm: kNN or SVM (`sklearn_probs`) fitted on the VAE codes (posterior means) of the labelled images,
    scored on the codes of x_eval. The VAE saw the unlabelled images; no synthetic image is made."""
    return sklearn_probs(kind, encode_all(vae, lab.x), lab.y, encode_all(vae, x_eval), lab.n_classes, cfg)


def test_metrics(kind: str, y_true: torch.Tensor, probs: np.ndarray, task: str, cfg: Config) -> dict[str, float]:
    """`classification_metrics` of one classifier, without the AUC of a 1-NN (its scores are 0 or 1, so its "AUC" is
    its balanced accuracy: KNN_K > 1 gives vote shares that rank)."""
    metrics = classification_metrics(y_true, probs, task)
    return {k: v for k, v in metrics.items() if not (k == "auc" and kind == "knn" and cfg.knn_k == 1)}


def arm_rows(arm: str, setting: str, seed: int, lab: Dataset, vae: ConvAutoencoder, choice: Choice, splits: Splits,
             oracle: Oracle, cfg: Config, acc_real: float) -> list[dict]:
    """Validity of one arm's synthetic set (and, for a decoded arm, its gate rows, `augmentation_gate`), then every
    classifier's test metrics (`classifiers_of`) on real + synthetic images (the CNN's with its kept validation
    check); the CODES arm fits kNN and SVM on codes (`code_probs`)."""
    x, y = synthesise(arm, lab, vae, *choice, seed, cfg)
    extra = {"strength": choice[0], "n_per_image": choice[1]}
    rows = [] if arm in ("baseline", CODES) else results.rows(
        setting, arm, seed, {"label_validity": oracle.agreement(x, y)}, classifier="oracle", **extra)
    if arm in DECODED_ARMS:
        rows += augmentation_gate(arm, x, y, oracle, splits, acc_real, dataset=setting, seed=seed)
    train = with_synthetic(lab, x, y)
    for kind in classifiers_of(arm, cfg):
        if arm == CODES:
            probs, kept = code_probs(kind, vae, lab, splits.test.x, cfg), {}
        else:
            probs, kept = classifier_run(kind, train, splits.val, splits.test.x, seed, cfg)
        metrics = test_metrics(kind, splits.test.y, probs, splits.test.info.task, cfg) | kept
        rows += results.rows(setting, arm, seed, metrics, classifier=kind, **extra)
    return rows


def run_seed(task: dict) -> list[dict]:
    """Every setting of one dataset in cfg.datasets, every arm and classifier, for one seed: result rows and the gate
    rows of the seed's VAE (`vae_gate`, per setting) and of its latent arms' augmentations (see the module
    docstring). task: {"cfg", "dataset", "seed", "choice": {arm: (strength, n_per_image)}} (`tasks`).

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
        vae_rows = vae_gate(vae, oracle, splits, dataset=label, seed=seed)
        acc_real = next(r["value"] for r in vae_rows if r["check"] == "oracle_accuracy_real")
        rows += vae_rows
        for arm in cfg.arms:
            rows += arm_rows(arm, label, seed, lab, vae, tuple((choice | FIXED_CHOICES).get(arm, (0.0, 0))),
                             splits, oracle, cfg, acc_real)
    return rows


def tasks(cfg: Config, chosen: dict[str, dict[str, Choice]]) -> list[dict]:
    """The experiment's grid: one task per seed and dataset (all its settings, so each seed's VAE trains once, in
    one worker), carrying the choice tuned for that dataset (`choose`); then the same for the labelled-VAE settings
    (`labelled_variant`), when there are any."""
    configs = [cfg] + ([labelled_variant(cfg)] if cfg.labelled_vae_settings else [])
    return [task | {"choice": choice_for(chosen, task["dataset"])}
            for c in configs for task in grid.tasks(c, seed=c.seeds, dataset=dataset_names(c.datasets))]


def convergence_tasks(cfg: Config) -> list[dict]:
    """The CNN's convergence grid: one task per setting of cfg.datasets (none without 'cnn' in cfg.classifiers). The
    labelled-VAE settings train the same baselines and share their setting's task."""
    return grid.tasks(cfg, setting=cfg.datasets) if "cnn" in cfg.classifiers else []


def convergence_rows(task: dict) -> list[dict]:
    """The first seed's baseline CNN of one setting retrained at 2x its budget (`ClfConfig.scaled(2)`): one result
    row (arm 'baseline', classifier 'cnn', metric `val_accuracy` of the kept check) for `classifier_gates`."""
    cfg, setting = task["cfg"], task["setting"]
    name, budget = parse_setting(setting)
    splits, seed = load_splits(name, cfg), cfg.seeds[0]
    fitted = fit_cnn(labelled_subset(splits.train, budget, seed), splits.val, seed, cfg.clf.scaled(2))
    return results.rows(setting, "baseline", seed, {"val_accuracy": kept_check(fitted)["val_accuracy"]},
                        classifier="cnn")


def classifier_gates(runs: pd.DataFrame, doubled: pd.DataFrame, tol: float = 0.01) -> list[dict]:
    """`gates.classifier_convergence` (instrument "classifier", checks `val_accuracy[_2x|_change] (classifier =
    cnn)`) of the baseline CNN per setting of `runs` (the experiment's results): the first seed's validation accuracy
    against the same run at 2x (`doubled`, the rows of `convergence_rows`), gated against max(tol, the seed sd of the
    setting's baseline). A labelled-VAE setting trains the same baselines and uses its setting's 2x run. Settings
    without one get no rows (their CNN claims then read 'not tested: classifier not measured')."""
    if doubled.empty:  # no CNN in the grid
        return []
    base = runs[(runs["arm"] == "baseline") & (runs["classifier"] == "cnn")]
    labelled = [s for s in dict.fromkeys(base["dataset"]) if s.endswith(LABELLED_VAE)]
    more = pd.concat([doubled, *(doubled[doubled["dataset"] == s.removesuffix(LABELLED_VAE)].assign(dataset=s)
                                 for s in labelled)], ignore_index=True)
    return gates.classifier_convergence(base, more, setting="classifier", tol=tol, instrument=CLASSIFIER)


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) one dataset's oracle; its result rows (validation / test accuracy, majority-class rate) and
    `ceiling_accuracy`, its accuracy on the experiment's test images (`load_splits`): what a classifier trained on
    every label of the training split scores, the ceiling that the headroom of a setting is measured against."""
    cfg, name = task["cfg"], task["dataset"]
    oracle, test = train_oracle(name, cfg.oracle), load_splits(name, cfg).test
    return oracle.rows() + [{"dataset": name, "arm": "oracle", "seed": 0, "metric": "ceiling_accuracy",
                             "value": oracle.agreement(test.x, test.y)}]


# --------------------------------------------------------------------------- choosing strengths on validation


def sweep_rows(arm: str, setting: str, strength: float, n: int, lab: Dataset, vae: ConvAutoencoder, val: Dataset,
               oracle: Oracle, cfg: Config) -> list[dict]:
    """Label validity and kNN / SVM validation accuracy of one arm at one strength and count; `label_ratio` is the
    label validity over the oracle's validation accuracy (what `choose` asks of a latent arm)."""
    x, y = synthesise(arm, lab, vae, strength, n, cfg.tune_seed, cfg)
    train = with_synthetic(lab, x, y)
    extra = {"strength": strength, "n_per_image": n}
    validity = oracle.agreement(x, y)
    rows = results.rows(setting, arm, cfg.tune_seed, {"label_validity": validity,
                                                      "label_ratio": validity / oracle.val_accuracy},
                        classifier="oracle", **extra)
    for kind in ("knn", "svm"):
        pred = sklearn_probs(kind, train.x, train.y, val.x, lab.n_classes, cfg).argmax(1)
        accuracy = float((pred == val.y.numpy()).mean())
        rows += results.rows(setting, arm, cfg.tune_seed, {"val_accuracy": accuracy}, classifier=kind, **extra)
    return rows


def tune_seed(task: dict) -> list[dict]:
    """The validation sweep of one dataset, on its first setting in cfg.datasets: every arm at every strength in
    cfg.strengths[op] and every count in cfg.n_per_image (rows of `sweep_rows`). The labelled subset is drawn with
    cfg.tune_seed (not an evaluation seed); the VAE is that of the first evaluation seed (trained once, loaded by
    run_seed later). The arms of FIXED_CHOICES have nothing to sweep. The test split is never used."""
    cfg, name = task["cfg"], task["dataset"]
    splits, oracle = load_splits(name, cfg), train_oracle(name, cfg.oracle)
    setting = settings_of(cfg.datasets, name)[0]
    lab = labelled_subset(splits.train, parse_setting(setting)[1], cfg.tune_seed)
    vae = fit_vae(splits, cfg.seeds[0], cfg, lab)
    rows = []
    for arm in (a for a in cfg.arms if a != "baseline" and a not in FIXED_CHOICES):
        strengths = [0.0] if arm == "affine" else cfg.strengths[arm.split("-", 1)[1]]
        for strength, n in ((s, n) for s in strengths for n in cfg.n_per_image):
            rows += sweep_rows(arm, setting, strength, n, lab, vae, splits.val, oracle, cfg)
    return rows


def tune_tasks(cfg: Config) -> list[dict]:
    """One sweep task per dataset of cfg.datasets (on its first setting; its other budgets reuse the choice)."""
    return grid.tasks(cfg, dataset=dataset_names(cfg.datasets))


def choose(sweep: pd.DataFrame) -> dict[str, dict[str, Choice]]:
    """Per setting tuned on and arm, the (strength, n_per_image) with the best validation accuracy averaged over kNN
    and SVM (ties: the weaker strength and fewer images, the first in the sweep's order), among the candidates whose
    synthetic images keep their label at least LABEL_RATIO + CHOICE_MARGIN x as often as the oracle labels
    validation images right (`label_ratio`: the augmentation gate's demand, asked on the sweep with a margin for the
    seeds' own VAEs; an arm with no such candidate, or without `label_ratio` rows, chooses among all of its
    candidates)."""
    keys = ["dataset", "arm", "strength", "n_per_image"]
    acc = sweep[sweep["metric"] == "val_accuracy"]
    mean = acc.groupby(keys, sort=False)["value"].mean().reset_index()
    ratio = sweep[sweep["metric"] == "label_ratio"].groupby(keys, sort=False)["value"].mean()
    ok = pd.Series(ratio.reindex(pd.MultiIndex.from_frame(mean[keys])).to_numpy() >= LABEL_RATIO + CHOICE_MARGIN,
                   index=mean.index)
    any_ok = ok.groupby([mean["dataset"], mean["arm"]], sort=False).transform("any")
    mean = mean[ok | ~any_ok]
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
