"""Notebook 06: the five methods head to head, at equal labels and stated cost, against a practitioner's baselines.

One task is one dataset and one seed, {"cfg": Config, "dataset": name, "seed": s} (`tasks`). `run_seed(task)`:

1. reads the dataset's training split, N_VAL fixed validation and N_TEST fixed test images once, and its oracle (one
   per dataset, ORACLE_*: the annotator of `real+m` and `aisel+m`, and the judge of every gate);
2. trains (or loads) the seed's generative models on the unlabelled training images, one per method, each built by
   its own notebook's experiment module from that notebook's parameters cell (its best setting) with the few
   budgets this notebook overrides (`method_config`): the GIN of 01 (`aisel.gated_gin`, 01's restart rule), the
   autoencoder of 02 (`tsynd.autoencoder_for`), the 2-D encoder of 03 (`query_selection.seed_view`), the VAE of 04
   (`vae_augmentation.fit_vae`) and the AutoencoderKL of 05 (through `cam_fusion_arm`, the one adapter to 05). The
   labelled budgets of a seed share them; each is charged in full to every budget (a practitioner with one budget
   pays for it all);
3. per budget n (BUDGETS): the seed's stratified labelled subset (the same for every arm), then every arm of ARMS
   (`ARM_KINDS`): `baseline`; the cheap baselines `affine` (a fresh random affine copy of every labelled image each
   epoch), `mixup` (a fresh mixed copy each epoch, soft labels, Beta(MIXUP_ALPHA, MIXUP_ALPHA)) and
   `class-balanced` (balanced class weights); `real+m` (m = M_PER_LABEL x n real pool images labelled by the
   oracle); and the five methods: `aisel+m` (01: m synthetic images chosen by energy distance, labelled by the
   oracle), `tsynd-mi` (02: latent ascent on the classifier's mutual information, images join during training),
   `latent-query` (03: QUERY_ARM's sampler picks the n images to label from the pool instead of a stratified draw),
   `latent-interpolation` (04: same-class interpolation of VAE codes) and `cam-fusion` (05: CAM-guided fusion of
   minority-class codes with majority-class neighbours, as many as balance the classes);
4. trains one classifier per arm on one scheme (`fit_arm`: CLF_*, the seed's initial weights, `equal_updates`: every
   arm makes the same updates and the same passes over its n real images; extra images make the batches larger,
   never the training longer), scores it on the test images (accuracy, AUC, balanced accuracy, ...) and records its
   kept validation check (val_auc: what chooses the best cheap baseline, `best_cheap`);
5. counts each arm's cost (`cost_rows`): annotations (n, or n + m), CPU seconds (its generative models' training from
   a cold cache, `latentlab.cache.training_costs`, plus its selection or synthesis and its classifier) and wall
   seconds;
6. returns the gate rows of every generative model of the seed (the method modules' own gates, on the images their
   notebooks gate on), per setting. The GIN is 01's `aisel.gated_gin`: its gates read validation images, and a GIN
   that fails them is trained again from the next training seed (01's restart rule); every GIN trained, and the
   gates that chose it, count in aisel+m's cost.

The classifier's convergence ("classifier") is a small grid of its own (`convergence_rows`, `classifier_gates`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from latentlab import cache, data, gates, grid, results
from latentlab.config import REPO, ClfConfig, OracleConfig, Params
from latentlab.experiments import aisel, query_selection, tsynd, vae_augmentation
from latentlab.experiments import cam_fusion as cam
from latentlab.metrics import classification_metrics
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers import vae_augmentation as augment
from latentlab.train import FitResult, Hooks, fit_classifier, predict_proba, schedule

CHEAP = ("affine", "mixup", "class-balanced")  # what a practitioner tries first
METHODS = ("aisel+m", "tsynd-mi", "latent-query", "latent-interpolation", "cam-fusion")  # the five papers, 01-05
ARMS = ("baseline", *CHEAP, "real+m", *METHODS)
METHOD_NOTEBOOK = {"aisel+m": "01_aisel", "tsynd-mi": "02_tsynd", "latent-query": "03_query_selection",
                   "latent-interpolation": "04_vae_augmentation", "cam-fusion": "05_cam_fusion"}
ANNOTATED = ("real+m", "aisel+m")  # the arms whose oracle labels m extra images (m more annotations)
CLASSIFIER = "classifier"  # the instrument of the classifier's convergence
# The instruments (gate rows) each arm's claims rest on: the method modules' own instrument names.
INSTRUMENTS = {"aisel+m": ("gin", "gin-samples"), "tsynd-mi": ("autoencoder",), "latent-query": ("vae-2d",),
               "latent-interpolation": ("vae", "vae-augmentations:interpolation"),
               "cam-fusion": ("autoencoder_kl", "stage1")}
INTERPOLATION = "latent-interpolation"


@dataclass(frozen=True)
class Config(Params):
    """Notebook 06's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`, ORACLE_* in `oracle`)."""

    NOTEBOOK = "06_head_to_head"

    datasets: tuple[str, ...]
    budgets: tuple[int, ...]        # n labelled images (a stratified draw per seed, the same for every arm)
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    workers: int | None
    m_per_label: float              # m = round(m_per_label x n): the extra annotations of real+m and aisel+m
    affine_degrees: float
    affine_translate: float
    affine_scale: tuple[float, float]
    mixup_alpha: float
    query_arm: str                  # 03's '<encoder>/<sampler>' that picks the n images of `latent-query`
    tsynd_eps_rel: float            # 02's eps in units of the latent radius
    interpolation_strength: float   # 04's lambda
    interpolation_per_image: int    # 04's synthetic images per labelled image
    aisel: dict                     # parameters of 01's cell this notebook overrides (budgets), {NAME: value}
    tsynd: dict                     # ... of 02's
    query: dict                     # ... of 03's
    vae: dict                       # ... of 04's
    cam: dict                       # ... of 05's
    clf: ClfConfig
    oracle: OracleConfig
    n_val: int | None
    n_test: int | None
    claim_metrics: tuple[str, ...]  # the metrics of the ledger's claims (the results table holds every metric)

    def __post_init__(self):
        unknown = sorted(set(self.arms) - set(ARMS))
        if unknown:
            raise ValueError(f"Unknown arms {unknown}. Choose from: {', '.join(ARMS)}.")
        if "baseline" not in self.arms:
            raise ValueError("ARMS must hold 'baseline': every claim is paired with it.")


# --------------------------------------------------------------------------- the method modules' configs


@functools.lru_cache(maxsize=8)
def _notebook_parameters(stem: str) -> dict:
    from latentlab.runner import parameters_of  # papermill / nbformat: imported only when a config is built

    return parameters_of(REPO / "notebooks" / f"{stem}.ipynb", "default")


def method_config(module, overrides: dict, oracle: OracleConfig):
    """A method module's Config: its notebook's parameters cell (the default profile: its best setting), then the
    overrides of this notebook (`cfg.aisel`, ...), with this notebook's oracle (one judge and annotator per
    dataset for every method)."""
    params = _notebook_parameters(module.Config.NOTEBOOK) | dict(overrides)
    if "ORACLE_ARCH" in module.Config.parameter_names():
        params |= {f"ORACLE_{k}": v for k, v in oracle.parameters().items()}
    return module.Config.from_parameters(params)


def configs(cfg: Config) -> dict:
    """{arm: its module's Config} for the five methods (built once per task)."""
    return {"aisel+m": method_config(aisel, cfg.aisel, cfg.oracle),
            "tsynd-mi": method_config(tsynd, cfg.tsynd, cfg.oracle),
            "latent-query": method_config(query_selection, cfg.query, cfg.oracle),
            INTERPOLATION: method_config(vae_augmentation, cfg.vae, cfg.oracle),
            "cam-fusion": method_config(cam, cfg.cam, cfg.oracle)}


# --------------------------------------------------------------------------- cost


@dataclass
class Cost:
    """CPU and wall seconds of some work, as from a cold model cache (cached models count their recorded training)."""

    cpu: float = 0.0
    wall: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.cpu + other.cpu, self.wall + other.wall)


@contextmanager
def metered():
    """`with metered() as cost:` the block's cost (`Cost`), every model loaded from the cache inside it counted at
    its recorded training cost (`cache.training_costs`, `cache.cold_cpu_seconds`)."""
    out = Cost()
    clock, wall = time.process_time(), time.perf_counter()
    with cache.training_costs() as log:
        yield out
    top = [e for e in log if not e["nested"]]
    loaded_wall = sum(e["elapsed_cpu"] for e in top if e["loaded"])  # a load's wall is about its CPU (one thread)
    out.cpu = cache.cold_cpu_seconds(log, time.process_time() - clock)
    out.wall = (time.perf_counter() - wall - loaded_wall + sum(e["wall_seconds"] for e in top if e["loaded"]))


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Splits:
    """A dataset's training split and the fixed validation and test images every seed and arm share."""

    train: data.Dataset
    val: data.Dataset
    test: data.Dataset


def load_splits(name: str, cfg: Config) -> Splits:
    return Splits(data.load_cached(name, "train"), data.fixed_subset(data.load_cached(name, "val"), cfg.n_val),
                  data.fixed_subset(data.load_cached(name, "test"), cfg.n_test))


def setting(name: str, n: int) -> str:
    """The `dataset` column of a budget's rows: 'pneumoniamnist@50'."""
    return f"{name}@{n}"


def labelled_index(train: data.Dataset, n: int, seed: int) -> np.ndarray:
    """The seed's n labelled images: a stratified draw (the same for every arm but `latent-query`)."""
    return data.stratified_subset(train.y, n, seed)


def n_extra(cfg: Config, n: int) -> int:
    """m, the extra annotations of real+m and aisel+m."""
    return max(1, round(cfg.m_per_label * n))


# --------------------------------------------------------------------------- one classifier scheme


def fit_arm(train: data.Dataset, val: data.Dataset, clf: ClfConfig, seed: int,
            extra: Callable | tuple | None = None, validate_from: int = 0,
            weight: torch.Tensor | None = None) -> FitResult:
    """Every arm's classifier: `clf` on the n real images `train` from the seed's initial weights, the kept model the
    best validation check. `extra`: images (x, y) that join every epoch, or a hook (epoch, model, schedule) -> (x, y)
    that makes them per epoch; with `equal_updates` they enlarge the batches, so every arm makes the same updates and
    the same passes over the real images."""
    hook = (lambda epoch, model, plan: extra) if isinstance(extra, tuple) else extra
    return fit_classifier(train, val, clf, seed, hooks=Hooks(synthetic=hook, validate_from=validate_from),
                          weight=weight, equal_updates=True)


def scores(fitted: FitResult, splits: Splits) -> dict[str, float]:
    """Test metrics of the kept model, and its validation check (val_auc, val_accuracy, best_epoch)."""
    test = splits.test
    out = classification_metrics(test.y, predict_proba(fitted.model, test.x, task=test.info.task), test.info.task)
    kept = next(r for r in fitted.history if r["epoch"] == fitted.best_epoch)
    return out | {"val_auc": kept.get("val_auc", float("nan")), "val_accuracy": kept.get("val_accuracy", float("nan")),
                  "best_epoch": fitted.best_epoch}


def affine_hook(lab: data.Dataset, cfg: Config, seed: int) -> Callable:
    """`affine`: every epoch one fresh random affine copy of every labelled image (`augment.affine_augment`)."""
    def hook(epoch, model, plan):
        return augment.affine_augment(lab.x, lab.y, 1, degrees=cfg.affine_degrees, translate=cfg.affine_translate,
                                      scale=tuple(cfg.affine_scale), seed=seed * 100_003 + epoch)[:2]
    return hook


def mixup_hook(lab: data.Dataset, alpha: float, seed: int) -> Callable:
    """`mixup` (Zhang et al. 2018): every epoch one mixed copy of every labelled image, lambda x_i + (1 - lambda)
    x_j with a random partner j and lambda ~ Beta(alpha, alpha), its label the same mix of the two one-hot labels."""
    onehot = F.one_hot(lab.y, lab.n_classes).float()

    def hook(epoch, model, plan):
        rng = np.random.default_rng(seed * 100_003 + epoch)  # the same draw for an epoch, whatever ran before
        j = torch.from_numpy(rng.permutation(len(lab)))
        lam = torch.from_numpy(rng.beta(alpha, alpha, len(lab)) if alpha > 0 else np.ones(len(lab))).to(lab.x.dtype)
        x = lam.view(-1, 1, 1, 1) * lab.x + (1 - lam.view(-1, 1, 1, 1)) * lab.x[j]
        return x, lam.view(-1, 1) * onehot + (1 - lam.view(-1, 1)) * onehot[j]
    return hook


def soft(lab: data.Dataset) -> data.Dataset:
    """The labelled images with one-hot labels (mixup's soft cross-entropy)."""
    return data.Dataset(lab.x, F.one_hot(lab.y, lab.n_classes).float(), lab.info)


# --------------------------------------------------------------------------- the five methods, through their modules


@dataclass
class Models:
    """One (dataset, seed)'s generative models (shared by its budgets), what each cost to train, and its gate rows
    (dataset = the dataset's name; `run_seed` copies them to every setting)."""

    gin: object = None
    ae: object = None
    radius: float = float("nan")
    view: object = None
    vae: object = None
    codec: object = None
    cost: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)


def train_models(cfg: Config, mcfg: dict, name: str, seed: int, splits: Splits, oracle: Oracle) -> Models:
    """The seed's generative models of the methods in cfg.arms (cached), each metered, with their gates."""
    m = Models()
    arms = set(cfg.arms)
    if "aisel+m" in arms:
        with metered() as m.cost["aisel+m"]:  # 01's restart rule and its gates are part of the method: counted
            m.gin, rows = aisel.gated_gin(gate_config(mcfg["aisel+m"], splits), splits.train, splits.val, oracle,
                                          name, seed)
        m.gates += rows
    if "tsynd-mi" in arms:
        # 02's autoencoder sees every training image (AE_DATA 'all'): the labelled subset plays no part in it
        d = tsynd.SeedData(name, seed, splits.train, splits.val, splits.test, splits.train.subset([0]))
        with metered() as m.cost["tsynd-mi"]:
            m.ae, m.radius = tsynd.autoencoder_for(mcfg["tsynd-mi"], d)
        m.gates += tsynd.autoencoder_gate(oracle, m.ae, d)
    if "latent-query" in arms:
        qcfg = mcfg["latent-query"]
        pool = query_selection.make_pool(splits.train, seed, qcfg.pool_size)
        with metered() as m.cost["latent-query"]:
            m.view = query_selection.seed_view(pool, [cfg.query_arm], qcfg, seed)
        m.gates += query_selection.encoder_gates(m.view, splits.val, name, seed, qcfg.ae_latent)
    if INTERPOLATION in arms:
        vsplits = vae_augmentation.Splits(splits.train, splits.val, splits.test)
        with metered() as m.cost[INTERPOLATION]:
            m.vae = vae_augmentation.fit_vae(vsplits, seed, mcfg[INTERPOLATION])
        m.gates += vae_augmentation.vae_gate(m.vae, oracle, vsplits, dataset=name, seed=seed)
    if "cam-fusion" in arms:
        with metered() as m.cost["cam-fusion"]:
            m.codec = cam_codec(mcfg["cam-fusion"], splits.train, seed)
    return m


def aisel_setup(lab: data.Dataset, pool: data.Dataset, splits: Splits, gin, baseline: FitResult,
                seed: int) -> aisel.Setup:
    """01's Setup on this notebook's labelled images: its classifier C is this notebook's baseline (the same scheme)."""
    return aisel.Setup(seed, splits.train, splits.val, splits.test, lab, pool, gin, baseline)


def aisel_images(acfg, s: aisel.Setup, m: int) -> torch.Tensor:
    """aisel+m's m synthetic images: 01's support points (eq. 10) of the entropy density of C, decoded by G."""
    return s.gin.generate(aisel.synthetic_sets(acfg, s, m, m, arms=("aisel+m",)).sets["aisel+m"])


def gate_config(acfg, splits: Splits):
    """01's config with M (the size of its sample gate, `aisel.gin_gates`) within what the training split can hold
    REAL_PER_SAMPLE x; the GIN itself does not depend on M."""
    return acfg.replace(m_large=max(1, min(aisel.GATE_IMAGES, acfg.m_large,
                                           len(splits.train) // aisel.REAL_PER_SAMPLE)))


# The one adapter to notebook 05's module: every use of `cam_fusion` goes through the two functions below, so a change
# of 05's interface changes them alone.

def cam_codec(ccfg, train: data.Dataset, seed: int):
    """05's AutoencoderKL of the seed, trained on the unlabelled training images (05 trains it on its long-tailed
    set; here the other methods' generative models see every training image, so this one does too)."""
    from latentlab.models.latent_kl import fit_latent_codec

    return fit_latent_codec(train.x, ccfg.kl(seed))


def cam_fusion_arm(ccfg, codec, splits: Splits, lab: data.Dataset, lab_rows: np.ndarray, seed: int,
                   oracle: Oracle, gate_dataset: str) -> tuple[torch.Tensor, torch.Tensor, list]:
    """05's CAM fusion for the minority class of the labelled images: Stage 1 (iterated learning) trained on their
    latents and labels, then as many fused minority images as balance the classes (n_augment = majority - minority
    count), decoded without refinement (05's `cam-fusion` arm); with 05's gates (AutoencoderKL and Stage 1
    reconstructions on the validation split). The fused images are the method's output, not an instrument (as in
    05): how often the oracle gives them their label is the arm's `label_validity` result. Returns (x, y, gate
    rows)."""
    from latentlab.models.iterated import fit_iterated
    from latentlab.utils import batched

    counts = np.bincount(lab.y.numpy(), minlength=lab.n_classes)
    minority = int(np.argmin(counts))
    n_augment = int(counts.max() - counts.min())
    ccfg = ccfg.replace(n_augment=max(1, n_augment), refine_steps=0)
    latents = batched(codec.encode, lab.x, 512)
    stage1 = fit_iterated(latents, lab.y, lab.n_classes, ccfg.il(seed))
    train, val, test = splits.train, splits.val, splits.test
    s = cam.Seed(seed, ccfg, train, lab, [minority], np.asarray(lab_rows), codec, latents, stage1, None)
    fused = s.fuse("cam", "cam")
    x, y = s.images(fused.latents, 0), fused.labels.to(lab.y.dtype)
    rows = cam.reconstruction_rows(s, oracle, val, test)
    rows = [r | {"dataset": gate_dataset} for r in rows]
    return x, y, rows


# --------------------------------------------------------------------------- one seed


def cost_rows(where: str, arm: str, seed: int, n_annotations: int, cost: Cost, generative: float) -> list[dict]:
    """An arm's cost: annotations, CPU and wall seconds (generative training from cold included), and the generative
    share of the CPU seconds."""
    return results.rows(where, arm, seed, {"annotations": n_annotations, "cpu_seconds": cost.cpu,
                                           "wall_seconds": cost.wall, "generative_cpu_seconds": generative})


def budget_rows(cfg: Config, mcfg: dict, models: Models, name: str, n: int, seed: int, splits: Splits,
                oracle: Oracle) -> list[dict]:
    """Every arm at one budget n of one seed: result rows (metrics, extra-set descriptors, cost) and the gate rows
    made at this budget (01's and 05's, which depend on the labelled images; 04's augmentation gate)."""
    where, train = setting(name, n), splits.train
    idx = labelled_index(train, n, seed)
    lab = train.subset(idx)
    pool = train.subset(np.setdiff1d(np.arange(len(train)), idx))
    m = n_extra(cfg, n)
    clf = cfg.clf
    rows, gate_rows, done = [], [], {}

    def record(arm: str, fitted: FitResult, cost: Cost, annotations: int, generative: Cost | None = None, **info):
        generative = generative or Cost()
        total = cost + generative
        rows.extend(results.rows(where, arm, seed, scores(fitted, splits) | info))
        rows.extend(cost_rows(where, arm, seed, annotations, total, generative.cpu))
        done[arm] = (fitted, total)

    with metered() as c:
        base = fit_arm(lab, splits.val, clf, seed)
    record("baseline", base, c, n)
    for arm in cfg.arms:
        if arm == "baseline":
            continue
        gen = models.cost.get(arm, Cost())
        with metered() as c:
            if arm == "affine":
                fitted, info = fit_arm(lab, splits.val, clf, seed, affine_hook(lab, cfg, seed)), {}
            elif arm == "mixup":
                fitted, info = fit_arm(soft(lab), splits.val, clf.replace(class_weight=None), seed,
                                       mixup_hook(lab, cfg.mixup_alpha, seed)), {}
            elif arm == "class-balanced":
                fitted, info = fit_arm(lab, splits.val, clf.replace(class_weight="balanced"), seed), {}
            elif arm == "real+m":
                s = aisel_setup(lab, pool, splits, models.gin, base, seed)
                joined, info = aisel.with_oracle_labels(lab, aisel.real_sets(mcfg["aisel+m"], s, m)["real+m"], oracle)
                fitted = fit_arm(lab, splits.val, clf, seed, (joined.x[n:], joined.y[n:]))
            elif arm == "aisel+m":
                s = aisel_setup(lab, pool, splits, models.gin, base, seed)
                joined, info = aisel.with_oracle_labels(lab, aisel_images(mcfg[arm], s, m), oracle)
                fitted = fit_arm(lab, splits.val, clf, seed, (joined.x[n:], joined.y[n:]))
            elif arm == "tsynd-mi":
                aug = tsynd.augmenter(mcfg[arm], arm, models.ae, models.radius, lab, cfg.tsynd_eps_rel, seed)
                start = aug.start_epoch(schedule(len(lab), clf))
                fitted = fit_arm(lab, splits.val, clf, seed, aug, validate_from=start)
                info = tsynd.synthetic_validity(oracle, models.ae, aug) if aug.current is not None else {}
            elif arm == "latent-query":
                view = models.view
                query = view.pool.subset(query_selection.select_arm(view, cfg.query_arm, n, seed,
                                                                     mcfg[arm]))
                fitted = fit_arm(query, splits.val, clf, seed)
                info = {"query_minority_share": float(np.bincount(query.y.numpy(), minlength=query.n_classes).min()
                                                      / len(query))}
            elif arm == INTERPOLATION:
                vcfg = mcfg[arm]
                x, y = vae_augmentation.synthesise(arm, lab, models.vae, cfg.interpolation_strength,
                                                   cfg.interpolation_per_image, seed, vcfg)
                fitted = fit_arm(lab, splits.val, clf, seed, (x, y))
                info = {"label_validity": oracle.agreement(x, y)}
                vsplits = vae_augmentation.Splits(splits.train, splits.val, splits.test)
                held = data.fixed_subset(splits.test, vae_augmentation.GATE_IMAGES)
                acc_real = oracle.agreement(held.x, held.y)
                gate_rows += vae_augmentation.augmentation_gate(arm, x, y, oracle, vsplits, acc_real, dataset=where,
                                                                seed=seed)
            elif arm == "cam-fusion":
                x, y, g = cam_fusion_arm(mcfg[arm], models.codec, splits, lab, idx, seed, oracle, where)
                fitted = fit_arm(lab, splits.val, clf, seed, (x, y))
                info = {"label_validity": oracle.agreement(x, y), "n_synthetic": len(x)}
                gate_rows += g
            else:  # pragma: no cover (Config refuses unknown arms)
                raise ValueError(arm)
        if arm == "aisel+m":  # C, the classifier whose entropy AISEL reads, is the baseline's fit: part of its cost
            c = c + done["baseline"][1]
        record(arm, fitted, c, n + m if arm in ANNOTATED else n, gen, **info)
    return rows + gate_rows


def run_seed(task: dict) -> list[dict]:
    """Every budget and arm of one dataset and seed (module docstring): result rows and gate rows, the seed's
    generative models' gates copied to every setting (claims are made per setting)."""
    cfg, name, seed = task["cfg"], task["dataset"], task["seed"]
    mcfg = configs(cfg)
    splits, oracle = load_splits(name, cfg), train_oracle(name, cfg.oracle)
    models = train_models(cfg, mcfg, name, seed, splits, oracle)
    rows = []
    for n in cfg.budgets:
        rows += budget_rows(cfg, mcfg, models, name, n, seed, splits, oracle)
        rows += [r | {"dataset": setting(name, n)} for r in models.gates]
        rows += [r for arm, c in models.cost.items() for r in results.rows(
            setting(name, n), arm, seed, {"model_cpu_seconds": c.cpu, "model_wall_seconds": c.wall})]
    return rows


def tasks(cfg: Config) -> list[dict]:
    """One task per dataset and seed (its budgets share its generative models)."""
    return grid.tasks(cfg, dataset=cfg.datasets, seed=cfg.seeds)


def settings(cfg: Config) -> list[str]:
    return [setting(d, n) for d in cfg.datasets for n in cfg.budgets]


def oracle_rows(task: dict) -> list[dict]:
    """Train (or load) one dataset's oracle: its result rows (validation / test accuracy, majority-class rate)."""
    return train_oracle(task["dataset"], task["cfg"].oracle).rows()


# --------------------------------------------------------------------------- the classifier's convergence


def convergence_tasks(cfg: Config) -> list[dict]:
    """One task per setting: the first seed's baseline retrained at 2x (`convergence_rows`)."""
    return [{"cfg": cfg, "dataset": d, "budget": n, "seed": cfg.seeds[0]} for d in cfg.datasets for n in cfg.budgets]


def convergence_rows(task: dict) -> list[dict]:
    """The first seed's baseline of one setting at 2x its updates and passes (`ClfConfig.scaled(2)`): its kept
    validation AUC (arm 'baseline', metric val_auc) for `classifier_gates`."""
    cfg, name, n, seed = task["cfg"], task["dataset"], task["budget"], task["seed"]
    splits = load_splits(name, cfg)
    lab = splits.train.subset(labelled_index(splits.train, n, seed))
    fitted = fit_arm(lab, splits.val, cfg.clf.scaled(2), seed)
    return results.rows(setting(name, n), "baseline", seed, {"val_auc": scores(fitted, splits)["val_auc"]})


def classifier_gates(runs: pd.DataFrame, doubled: pd.DataFrame, tol: float = 0.01) -> list[dict]:
    """`gates.classifier_convergence` of the baseline per setting on its kept validation AUC (what CLF_MONITOR picks
    the model by): 1x against 2x within max(tol, the seeds' sd)."""
    base = runs[runs["arm"] == "baseline"]
    return gates.classifier_convergence(base, doubled, metric="val_auc", setting=None, tol=tol,
                                        instrument=CLASSIFIER)


# --------------------------------------------------------------------------- costs and the Pareto front


def arm_costs(runs: pd.DataFrame) -> pd.DataFrame:
    """Per setting and arm: mean AUC, accuracy and balanced accuracy over seeds, annotations and mean CPU and wall
    seconds (from a cold cache)."""
    keep = ["auc", "accuracy", "balanced_accuracy", "annotations", "cpu_seconds", "wall_seconds"]
    part = runs[runs["metric"].isin(keep)]
    table = part.pivot_table(index=["dataset", "arm"], columns="metric", values="value", aggfunc="mean", sort=False)
    sd = part[part["metric"] == "auc"].groupby(["dataset", "arm"], sort=False)["value"].std().rename("auc_sd")
    return table[[k for k in keep if k in table.columns]].join(sd).reset_index()


def pareto(table: pd.DataFrame, cost: str = "cpu_seconds", value: str = "auc") -> pd.Series:
    """True for the arms on the Pareto front of one setting: no other arm costs at most as much and scores at least
    as high, one of the two strictly."""
    c, v = table[cost].to_numpy(), table[value].to_numpy()
    front = []
    for i in range(len(table)):
        dominated = ((c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))).any()
        front.append(not dominated)
    return pd.Series(front, index=table.index)


# --------------------------------------------------------------------------- the datasets the default profile runs


DATASET_RECORD = REPO / "configs" / "06_dataset_record.csv"
DATASET_CANDIDATES = ("pneumoniamnist", "breastmnist")  # the two datasets


def dataset_record(candidates=DATASET_CANDIDATES, seed: int = 0, workers: int | None = None) -> pd.DataFrame:
    """The default profile's instruments on each candidate dataset: `run_seed` of one seed with the parameters cell
    of this notebook (every method at the budget it runs at) and its gate rows (each method's gates read the images
    its own notebook gates on: validation images for 01, 03 and 05, fixed test images for 02's and 04's
    reconstruction and augmentation gates; no claim's metric enters the choice)."""
    params = _notebook_parameters(Config.NOTEBOOK) | {"DATASETS": list(candidates), "SEEDS": [seed]}
    cfg = Config.from_parameters(params)
    _, rows = grid.tables(run_seed, tasks(cfg), workers=workers, desc="dataset record")
    return rows


def passing_datasets(record: pd.DataFrame) -> list[str]:
    """The datasets (names without '@n') of which every gated check of the record passed, in the record's order."""
    name = record["dataset"].str.split("@").str[0]
    ok = record.assign(name=name).groupby("name", sort=False)["passed"].all()
    return [d for d, passed in ok.items() if passed]


def write_dataset_record(path=DATASET_RECORD, **kwargs) -> pd.DataFrame:
    """`dataset_record`, written to configs/06_dataset_record.csv (`make choices`): DATASETS of the parameters cell
    is `passing_datasets` of it (a test checks)."""
    record = dataset_record(**kwargs)
    record.to_csv(path, index=False)
    return record
