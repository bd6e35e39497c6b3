"""Notebook 02, TSynD (Niemeijer et al. 2024): one seed of one dataset setting, every arm.

Per seed: a stratified labelled subset (a share of the training split), the seed's own autoencoder (trained on all
training images without labels, or on the labelled subset only), the baseline classifier, and four synthetic arms
whose images join training epoch by epoch through `LatentAugmenter`: `recon-only` (plain reconstructions, eps = 0),
`random-latent` (a random move of norm eps), `tsynd-entropy` and `tsynd-mi` (latent ascent on the classifier's
uncertainty, eq. 3-4). eps is given per dataset setting in units of the seed's latent radius (chosen in the notebook
by a label-flip rate measured with the judge, `flip_sweep` and `choose_eps`). Every arm of a seed shares the subset,
the initial weights, the training schedule and the autoencoder.

A task is {"cfg": Config, "dataset": "<name>@<share>%", "seed": s} (plus "eps_rel" for `run_seed`, see
`seed_tasks`); `run_seed` reads the seed's data once (`seed_data`) and hands it down.

Instruments (`latentlab.gates`; `run_seed` returns their rows beside its results, `grid.tables` splits them):

* "autoencoder": `reconstruction_gate` of the seed's autoencoder on a fixed draw of `GATE_IMAGES` test images of the
  setting's dataset (`data.fixed_subset`: the same images for every seed), judged by the dataset's oracle;
* "classifier" (`classifier_gates`): every run records its kept validation check (`kept_epoch`), its
  `synthesis_start_epoch` and the classifier's validation scores then; a synthetic arm validates only from that epoch
  on (`train.Hooks(validate_from=...)`), so it can never keep a model trained on real images alone
  (`kept_minus_synthesis_start_epoch` >= 0); the baseline and the classifier synthesis starts from must have learnt
  (validation balanced accuracy >= LEARNS). The convergence gate retrains the first seed's baseline at 2x the
  updates (`baseline_2x`, one task per setting) and `convergence_gates` compares the two kept models on the
  validation metric that picks them (CLF_MONITOR; `gates.converged_gate`, tol 0.01 or the seed sd).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from statsmodels.stats.proportion import proportion_confint
from torch import nn

from latentlab import data, gates, grid, results
from latentlab.config import ClfConfig, OracleConfig, Params
from latentlab.metrics import classification_metrics, mutual_information, predictive_entropy
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, decode_all, encode_all, epochs_for, fit_autoencoder
from latentlab.oracle import Oracle, train_oracle
from latentlab.perturb import robustness, standard_perturbations
from latentlab.samplers.tsynd import MODES, latent_radius, synthesise
from latentlab.train import FitResult, Hooks, Schedule, fit_classifier, mc_predict, predict_proba, schedule, validate
from latentlab.utils import batched

ARMS = ("baseline", "recon-only", "random-latent", "tsynd-entropy", "tsynd-mi", "baseline+updates")
MATCHED = "baseline+updates"  # the baseline trained for as many updates as a synthetic arm (the control for them)
SYNTHESIS = ("tsynd-mi", "tsynd-entropy", "random-latent")
AE_DATA = ("all", "labelled")
GATE_IMAGES = 1000  # held-out test images of the reconstruction gate (fewer where the test split is smaller)
LEARNS = 0.6  # a classifier "learns" when its validation balanced accuracy reaches this (a constant one scores 0.5)
MIN_JUDGED = 1000  # the eps sweep's flip rates rest on at least this many judged images per setting and mode
SCALE = 4  # the scale check's multiple of the autoencoder's updates
HEADLINE_ARMS = ("baseline", "recon-only", "random-latent", "tsynd-mi")  # the arms the scale check re-runs


@dataclass(frozen=True)
class Config(Params):
    """Notebook 02's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`, ORACLE_* in `oracle`)."""

    NOTEBOOK = "02_tsynd"

    datasets: tuple[str, ...]   # dataset settings "name@share%"
    seeds: tuple[int, ...]
    arms: tuple[str, ...]
    ae_kind: str                # "ae" or "vae"
    ae_data: str                # the autoencoder sees "all" training images or the "labelled" subset only
    ae_latent: int
    ae_width: int
    ae_steps: int
    clf: ClfConfig
    oracle: OracleConfig        # the label-flip judge
    ascent_steps: int
    mc_samples: int
    syn_ratio: float
    max_synthetic: int
    start_fraction: float
    regenerations: int
    eps_grid: tuple[float, ...]
    max_flip: float
    flip_sources: int           # training images per eps seed whose moves the judge labels
    eps_seeds: tuple[int, ...]  # the seeds whose autoencoder and baseline drive the eps sweep (the first: the walk)
    walk_dataset: str
    attack_levels: tuple[float, ...]  # the L-inf budgets of the FGSM / PGD sweep, grey levels (of 255)
    attack_images: int | None   # the fixed test images robustness is measured on (None: the whole test split)
    pgd_steps: int
    rotation: float             # degrees
    noise_std: float
    scale_seeds: tuple[int, ...]  # the scale check: headline arms again with SCALE x the autoencoder's updates
    workers: int | None


# --------------------------------------------------------------------------- the data of a seed


def parse_entry(entry: str) -> tuple[str, float]:
    """'pneumoniamnist@10%' -> ('pneumoniamnist', 0.1)."""
    name, _, share = entry.partition("@")
    if not share.endswith("%"):
        raise ValueError(f"A dataset setting reads name@share%, e.g. 'pneumoniamnist@10%'; got {entry!r}.")
    return name, float(share[:-1]) / 100


@dataclass(frozen=True)
class SeedData:
    """One (dataset setting, seed): the dataset's splits and the labelled subset every arm of the seed trains on."""

    entry: str
    seed: int
    train: data.Dataset
    val: data.Dataset
    test: data.Dataset
    labelled: data.Dataset


def seed_data(entry: str, seed: int) -> SeedData:
    """The splits of the setting's dataset and the seed's stratified labelled subset (at least two per class)."""
    name, share = parse_entry(entry)
    train, val, test = (data.load_cached(name, split) for split in data.SPLITS)
    idx = data.stratified_subset(train.y, max(2 * train.n_classes, round(share * len(train))), seed)
    return SeedData(entry, seed, train, val, test, train.subset(idx))


# --------------------------------------------------------------------------- the models of a seed


def judge_for(task: dict) -> Oracle:
    """Grid task: the label-flip judge of task['dataset'] (a dataset name), its oracle (one per dataset)."""
    return train_oracle(task["dataset"], task["cfg"].oracle)


def autoencoder_for(cfg: Config, d: SeedData) -> tuple[ConvAutoencoder, float]:
    """The seed's autoencoder and its latent radius (RMS spread of the codes of the images it was trained on).

    Cached by its config and the images it saw: settings of one dataset share it when it sees all training images.
    """
    if cfg.ae_data not in AE_DATA:
        raise ValueError(f"AE_DATA must be one of {', '.join(AE_DATA)}; got {cfg.ae_data!r}.")
    x = d.labelled.x if cfg.ae_data == "labelled" else d.train.x
    ae_cfg = AEConfig(kind=cfg.ae_kind, latent_dim=cfg.ae_latent, width=cfg.ae_width,
                      epochs=epochs_for(cfg.ae_steps, len(x)), batch_size=128, seed=d.seed)
    ae = fit_autoencoder(x, ae_cfg, x_val=d.val.x)
    return ae, latent_radius(encode_all(ae, x))


def autoencoder_tasks(cfg: Config) -> list[dict]:
    """One task per autoencoder to train: per (dataset, seed) when it sees all training images (settings of one
    dataset share it; the task names the first setting of each), per (setting, seed) when it sees the labelled
    subset only."""
    first_of_each: dict[str, str] = {}
    for entry in cfg.datasets:
        first_of_each.setdefault(parse_entry(entry)[0], entry)
    entries = cfg.datasets if cfg.ae_data == "labelled" else tuple(first_of_each.values())
    return grid.tasks(cfg, dataset=entries, seed=cfg.seeds)


def train_autoencoder(task: dict) -> list[dict]:
    """Grid task: train (or load) one seed's autoencoder; one row with its test reconstruction RMSE, latent radius
    and final validation loss."""
    d = seed_data(task["dataset"], task["seed"])
    ae, radius = autoencoder_for(task["cfg"], d)
    rmse = float((decode_all(ae, encode_all(ae, d.test.x)) - d.test.x).pow(2).mean().sqrt())
    return [{"dataset": parse_entry(d.entry)[0], "seed": d.seed, "test_rmse": rmse, "latent_radius": radius,
             "final_val_loss": float(ae.val_curve[-1])}]


def fit_arm(cfg: Config, labelled: data.Dataset, val: data.Dataset, seed: int,
            synthetic: LatentAugmenter | None = None, clf: ClfConfig | None = None) -> FitResult:
    """Every arm's classifier: cfg.clf (or `clf`) on the labelled images (same schedule and initial weights for every
    arm of a seed), with the arm's synthetic images joining from the epoch its augmenter says. A synthetic arm
    validates only from that epoch on, so the kept model has trained on synthetic images (kept epoch >= it)."""
    start = 0 if synthetic is None else synthesis_start_epoch(cfg, synthetic, len(labelled))
    return fit_classifier(labelled, val, clf or cfg.clf, seed, hooks=Hooks(synthetic=synthetic, validate_from=start))


def synthesis_start_epoch(cfg: Config, aug: LatentAugmenter, n_labelled: int) -> int:
    """The epoch of an augmenter's first synthetic batch on the schedule cfg.clf gives n_labelled images."""
    return aug.start_epoch(schedule(n_labelled, cfg.clf))


def updates(fitted: FitResult) -> int:
    """The optimiser steps a run made: batches per epoch (synthetic images included) summed over its epochs."""
    b = fitted.schedule.batch_size
    return sum(math.ceil(r["n_train"] / b) for r in fitted.history)


def matched_updates(cfg: Config, n_labelled: int, n_updates: int) -> ClfConfig:
    """The `baseline+updates` control: the baseline's classifier trained for (at least) n_updates steps, the
    updates of a synthetic arm, rounded up to whole epochs of the n_labelled real images."""
    return cfg.clf.replace(steps=n_updates, min_epochs=1)


def kept_check(fitted: FitResult) -> dict[str, float]:
    """The kept validation check of a run: its epoch and the validation accuracy, balanced accuracy and AUC of the
    kept model."""
    kept = next(r for r in fitted.history if r["epoch"] == fitted.best_epoch)
    return {"kept_epoch": fitted.best_epoch, "val_accuracy": kept.get("val_accuracy", float("nan")),
            "val_balanced_accuracy": kept.get("val_balanced_accuracy", float("nan")),
            "val_auc": kept.get("val_auc", float("nan")), "updates": updates(fitted)}


# --------------------------------------------------------------------------- synthetic images during training


class LatentAugmenter:
    """fit's `synthetic` hook: from `start_fraction` of the schedule's epochs on, regenerate n synthetic images
    `regenerations` times, evenly spaced, from the current classifier (each keeps the label of its source image)
    and add them to the training set.

    Source images are drawn afresh at each regeneration, so over training the synthetic set covers the data. Each
    regeneration is logged with the classifier's mean MI and entropy (`T_REPORT` dropout passes) on the synthetic
    images and on the plain reconstructions of their sources: does the target raise what it names? With `val`
    given, the classifier's validation accuracy and balanced accuracy when synthesis starts are logged too
    (`start_check`): the classifier whose uncertainty the first synthetic set climbs.
    """

    T_REPORT = 32  # dropout passes of the logged MI / entropy (more than the ascent's T: a report, not a target)

    def __init__(self, mode: str, autoencoder: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float,
                 n_synthetic: int, steps: int, T: int, start_fraction: float, regenerations: int, seed: int,
                 task: str = "multi-class", val: data.Dataset | None = None):
        if mode not in MODES:
            raise ValueError(f"Unknown mode {mode!r}. Choose one of: {', '.join(MODES)}.")
        if regenerations < 1:
            raise ValueError(f"regenerations must be >= 1; got {regenerations}.")
        self.mode, self.autoencoder, self.y = mode, autoencoder.eval(), y
        self.eps, self.n, self.steps, self.T = eps, n_synthetic, steps, T
        self.start_fraction, self.regenerations, self.task, self.val = start_fraction, regenerations, task, val
        self.generator = torch.Generator().manual_seed(seed)
        self.z_real = batched(autoencoder.encode, x, 512)  # the autoencoder is frozen: encode the labelled images once
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        self.last_z: torch.Tensor | None = None
        self.last_idx: torch.Tensor | None = None
        self.start_check: dict[str, float] = {}
        self.log: list[dict] = []

    def start_epoch(self, schedule: Schedule) -> int:
        """The first epoch with synthetic images (an untrained classifier's uncertainty says nothing)."""
        return int(self.start_fraction * schedule.epochs)

    def regeneration_epochs(self, schedule: Schedule) -> list[int]:
        """The epochs that regenerate the set: `regenerations` of them, evenly spaced from the start epoch (fewer
        only when fewer epochs remain)."""
        start = self.start_epoch(schedule)
        left = schedule.epochs - start
        return sorted({start + (i * left) // self.regenerations for i in range(self.regenerations)})

    def __call__(self, epoch: int, model: nn.Module, schedule: Schedule) -> tuple[torch.Tensor, torch.Tensor] | None:
        if epoch < self.start_epoch(schedule):
            return None
        if self.current is None or epoch in self.regeneration_epochs(schedule):
            if self.current is None and self.val is not None:
                check = validate(model, self.val, task=self.task)
                self.start_check = {k: check[f"val_{k}"] for k in ("accuracy", "balanced_accuracy")}
            N = len(self.z_real)
            idx = (torch.randperm(N, generator=self.generator)[:self.n] if self.n <= N
                   else torch.randint(N, (self.n,), generator=self.generator))
            z, x = synthesise(self.mode, self.autoencoder, model, self.z_real[idx], eps=self.eps, steps=self.steps,
                              T=self.T, generator=self.generator)
            self.current, self.last_z, self.last_idx = (x, self.y[idx]), z, idx
            shift = float((z - self.z_real[idx]).norm(dim=1).mean())
            self.log.append({"epoch": epoch, "n": len(idx), "mean_shift": shift,
                             **self.uncertainty(model, x, decode_all(self.autoencoder, self.z_real[idx]))})
        return self.current

    def uncertainty(self, model: nn.Module, x_syn: torch.Tensor, x_rec: torch.Tensor) -> dict[str, float]:
        """Mean MI and entropy of the classifier (T_REPORT dropout passes) on the synthetic images and on the
        reconstructions they came from."""
        was_training = model.training
        out = {}
        for name, x in (("synthetic", x_syn), ("recon", x_rec)):
            probs = mc_predict(model, x, self.T_REPORT, task=self.task)
            out[f"{name}_mi"] = float(mutual_information(probs).mean())
            out[f"{name}_entropy"] = float(predictive_entropy(probs).mean())
        model.train(was_training)
        return out


def augmenter(cfg: Config, arm: str, ae: ConvAutoencoder, radius: float, labelled: data.Dataset, eps_rel: float,
              seed: int, val: data.Dataset | None = None) -> LatentAugmenter:
    """The synthetic-image hook of one arm (eps = eps_rel x the seed's latent radius; 0 for recon-only)."""
    return LatentAugmenter(arm, ae, labelled.x, labelled.y, eps=0.0 if arm == "recon-only" else eps_rel * radius,
                           n_synthetic=min(cfg.max_synthetic, round(cfg.syn_ratio * len(labelled))),
                           steps=cfg.ascent_steps, T=cfg.mc_samples, start_fraction=cfg.start_fraction,
                           regenerations=cfg.regenerations, seed=seed, task=labelled.info.task, val=val)


# --------------------------------------------------------------------------- metrics


@torch.no_grad()
def label_flips(judge: nn.Module, x_syn: torch.Tensor, x_ref: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """Flip rate caused by the latent move: among images whose reference (their plain reconstruction) the judge
    labels y, the share whose synthetic image it labels otherwise; and how many images that share is over."""
    judge.eval()
    keep = batched(judge, x_ref).argmax(1) == y.cpu()
    if not keep.any():
        return float("nan"), 0
    flipped = batched(judge, x_syn[keep]).argmax(1) != y.cpu()[keep]
    return float(flipped.float().mean()), int(keep.sum())


def evaluate_all(cfg: Config, model: nn.Module, test: data.Dataset) -> dict[str, float]:
    """Clean metrics on the whole test split (accuracy, AUC, balanced accuracy, recall of each class
    `recall_<k>`), and robustness on those of ATTACK_IMAGES fixed test images (`data.fixed_subset`: the same for
    every seed and arm) that the model classifies correctly (`latentlab.perturb.robustness`: test-time
    perturbations, FGSM and PGD over the ATTACK_LEVELS sweep). A constant predictor (one class for every test
    image) gets no robustness values (NaN): its "robustness" is the share of one class, and paired claims drop its
    seed."""
    probs = predict_proba(model, test.x, task=test.info.task)
    out = classification_metrics(test.y, probs, test.info.task)
    keep = ("accuracy", "auc", "balanced_accuracy", "single_class")
    pred, y = probs.argmax(1).cpu(), test.y.cpu()
    recall = {f"recall_{k}": float((pred[y == k] == k).float().mean()) for k in range(test.n_classes)}
    held = data.fixed_subset(test, cfg.attack_images)
    rob = robustness(model, held.x, held.y, attack_eps=[level / 255 for level in cfg.attack_levels],
                     pgd_steps=cfg.pgd_steps, perturbations=standard_perturbations(cfg.rotation, cfg.noise_std))
    if out["single_class"]:
        rob = {k: float("nan") for k in rob}
    return {k: out[k] for k in keep} | recall | rob


def synthetic_validity(judge: Oracle, ae: ConvAutoencoder, aug: LatentAugmenter) -> dict[str, float]:
    """The synthetic sets of an arm: the latent move and the judge's label-flip rate of the last set, and the
    classifier's MI / entropy on the synthetic images and on their reconstructions (means over regenerations), the
    regenerations made and the classifier's validation scores when synthesis started."""
    x_ref = decode_all(ae, aug.z_real[aug.last_idx])  # the plain reconstructions of the source images
    flip, _ = label_flips(judge.model, aug.current[0], x_ref, aug.current[1])
    means = pd.DataFrame(aug.log)[["synthetic_mi", "recon_mi", "synthetic_entropy", "recon_entropy"]].mean()
    return {"synthetic_shift": aug.log[-1]["mean_shift"], "synthetic_flip_rate": flip, **means.to_dict(),
            "regenerations": len(aug.log),
            **{f"synthesis_start_val_{k}": v for k, v in aug.start_check.items()}}


# --------------------------------------------------------------------------- the seed grid


def seed_tasks(cfg: Config, eps_rel: dict[str, float]) -> list[dict]:
    """The seed grid: one task per (dataset setting, seed) of cfg, each with its setting's chosen eps (x radius)."""
    return [t | {"eps_rel": eps_rel[t["dataset"]]} for t in grid.tasks(cfg, dataset=cfg.datasets, seed=cfg.seeds)]


def autoencoder_gate(judge: Oracle, ae: ConvAutoencoder, d: SeedData) -> list[dict]:
    """The "autoencoder" gate rows of a seed: its reconstructions of (at most) GATE_IMAGES fixed test images,
    judged by the dataset's oracle (labels kept: >= 0.8 x the real images' accuracy; MSE <= 0.6 x the mean
    image's)."""
    held = data.fixed_subset(d.test, GATE_IMAGES)
    return gates.reconstruction_gate(judge, held.x, held.y, decode_all(ae, encode_all(ae, held.x)),
                                     instrument="autoencoder", dataset=d.entry, seed=d.seed)


def classifier_gates(entry: str, seed: int, runs: dict[str, dict]) -> list[dict]:
    """The "classifier" gate rows of a seed, from its runs' metrics ({arm: metrics}):

    kept_minus_synthesis_start_epoch: the smallest kept epoch minus synthesis start epoch over the synthetic arms
    (>= 0: no synthetic arm kept a model from before its first synthetic batch);
    baseline_val_balanced_accuracy: the baseline learns (>= LEARNS; a constant predictor scores 0.5);
    synthesis_start_val_balanced_accuracy: the classifier the first synthetic set is made from has learnt too (the
    smallest over the synthetic arms, >= LEARNS): an untrained net's uncertainty targets nothing."""
    synthetic = [m for arm, m in runs.items() if "synthesis_start_epoch" in m]
    rows = []
    if synthetic:
        low = min(m["kept_epoch"] - m["synthesis_start_epoch"] for m in synthetic)
        rows.append(gates.row("classifier", entry, seed, "kept_minus_synthesis_start_epoch", low, 0, passed=low >= 0))
        start = min(m.get("synthesis_start_val_balanced_accuracy", float("nan")) for m in synthetic)
        rows.append(gates.row("classifier", entry, seed, "synthesis_start_val_balanced_accuracy", start, LEARNS,
                              passed=start >= LEARNS))
    if "baseline" in runs:
        bal = runs["baseline"]["val_balanced_accuracy"]
        rows.append(gates.row("classifier", entry, seed, "baseline_val_balanced_accuracy", bal, LEARNS,
                              passed=bal >= LEARNS))
    return rows


def run_arm(cfg: Config, d: SeedData, arm: str, ae: ConvAutoencoder, radius: float, eps_rel: float, judge: Oracle,
            n_updates: int | None = None) -> dict[str, float]:
    """One arm of a seed: train (`fit_arm`), score on test (`evaluate_all`) and describe its kept check and, for a
    synthetic arm, its synthetic sets. `baseline+updates` trains for n_updates steps (`matched_updates`)."""
    if arm == MATCHED:
        if n_updates is None:
            raise ValueError(f"{MATCHED} needs the updates of a synthetic arm: list it after one in ARMS.")
        fitted = fit_arm(cfg, d.labelled, d.val, d.seed, clf=matched_updates(cfg, len(d.labelled), n_updates))
        return evaluate_all(cfg, fitted.model, d.test) | kept_check(fitted)
    aug = None if arm == "baseline" else augmenter(cfg, arm, ae, radius, d.labelled, eps_rel, d.seed, val=d.val)
    fitted = fit_arm(cfg, d.labelled, d.val, d.seed, synthetic=aug)
    metrics = evaluate_all(cfg, fitted.model, d.test) | kept_check(fitted)
    if aug is not None:
        metrics["synthesis_start_epoch"] = synthesis_start_epoch(cfg, aug, len(d.labelled))
        if aug.current is not None:
            metrics |= synthetic_validity(judge, ae, aug)
    return metrics


def run_seed(task: dict) -> list[dict]:
    """Every arm of one (dataset setting, seed): tidy rows (dataset, arm, seed, metric, value), then the seed's
    gate rows (instrument, dataset, seed, check, value, threshold, passed). `baseline+updates` gets the updates of
    the seed's last synthetic arm before it (synthetic arms of a seed make the same number of updates)."""
    cfg, d = task["cfg"], seed_data(task["dataset"], task["seed"])
    judge, (ae, radius) = train_oracle(parse_entry(d.entry)[0], cfg.oracle), autoencoder_for(cfg, d)
    runs: dict[str, dict] = {}
    for arm in cfg.arms:
        done = [m["updates"] for m in runs.values() if "synthesis_start_epoch" in m]
        runs[arm] = run_arm(cfg, d, arm, ae, radius, task["eps_rel"], judge, done[-1] if done else None)
    rows = [r for arm, m in runs.items() for r in results.rows(d.entry, arm, d.seed, m)]
    rows += results.rows(d.entry, "autoencoder", d.seed, {"latent_radius": radius})
    return rows + autoencoder_gate(judge, ae, d) + classifier_gates(d.entry, d.seed, runs)


def scaled_ae(cfg: Config) -> Config:
    """The scale check's config: SCALE x the autoencoder's updates, the headline arms, the scale seeds."""
    return cfg.replace(ae_steps=SCALE * cfg.ae_steps, arms=HEADLINE_ARMS, seeds=cfg.scale_seeds)


# --------------------------------------------------------------------------- classifier convergence


def convergence_tasks(cfg: Config) -> list[dict]:
    """One task per dataset setting: the first seed's baseline, to be retrained at 2x the updates."""
    return grid.tasks(cfg, dataset=cfg.datasets, seed=cfg.seeds[:1])


def baseline_2x(task: dict) -> list[dict]:
    """Grid task: the setting's baseline of task['seed'] retrained at 2x its budget (`ClfConfig.scaled(2)`); result
    rows (arm "baseline") `kept_epoch_2x`, `val_accuracy_2x`, `val_balanced_accuracy_2x`, `val_auc_2x` and
    `updates_2x` of the kept model."""
    cfg, d = task["cfg"], seed_data(task["dataset"], task["seed"])
    fitted = fit_classifier(d.labelled, d.val, cfg.clf.scaled(2), d.seed)
    return results.rows(d.entry, "baseline", d.seed, {f"{k}_2x": v for k, v in kept_check(fitted).items()})


def convergence_gates(results_df: pd.DataFrame, more: pd.DataFrame, monitor: str = "auc",
                      tol: float = 0.01) -> list[dict]:
    """The "classifier" convergence gate per setting (`gates.classifier_convergence`; a setting is a dataset entry)
    on the validation metric that picks the kept model (`monitor`, CLF_MONITOR: checks `val_<monitor>[_2x|_change]`):
    the baseline's value at the budget used (`results_df`, run_seed's rows) against the same seed at 2x (`more`,
    baseline_2x's rows), passing when they differ by less than max(tol, the sd over seeds of the baseline's value).
    Converged means more updates would not pick a better model by the criterion that picks it; threshold metrics of
    the kept model (accuracy, balanced accuracy) can still move with the budget: baseline_2x reports them too."""
    metric = f"val_{monitor}"
    twice = more[more["metric"] == f"{metric}_2x"]
    if twice.empty:
        raise ValueError(f"`more` holds no {metric}_2x rows (from baseline_2x).")
    base = results_df[results_df["arm"] == "baseline"]
    return gates.classifier_convergence(base, twice.assign(metric=metric), metric=metric, setting=None, tol=tol)


# --------------------------------------------------------------------------- choosing eps by the label-flip rate


def sweep_tasks(cfg: Config) -> list[dict]:
    """The eps sweep's grid: one task per (dataset setting, eps seed)."""
    return grid.tasks(cfg, dataset=cfg.datasets, seed=cfg.eps_seeds)


def flip_sweep(task: dict) -> list[dict]:
    """Grid task: for one dataset setting and one eps seed, the judge's label flips of each synthesis mode at every
    eps of EPS_GRID (units of the seed's latent radius), on FLIP_SOURCES training images (never test images), moved
    from the seed's autoencoder codes with the seed's baseline as the classifier: one row per (eps, mode), with
    the flips and the images judged (`flip_summary` pools the seeds).

    A flip counts among images whose plain reconstruction the judge labels correctly: flips caused by the move.
    """
    cfg, d = task["cfg"], seed_data(task["dataset"], task["seed"])
    clf, judge = fit_arm(cfg, d.labelled, d.val, d.seed).model, train_oracle(parse_entry(d.entry)[0], cfg.oracle)
    ae, radius = autoencoder_for(cfg, d)
    gen = torch.Generator().manual_seed(d.seed)
    src = torch.randperm(len(d.train), generator=gen)[:cfg.flip_sources]
    z0 = encode_all(ae, d.train.x[src])
    _, x_ref = synthesise("recon-only", ae, clf, z0, eps=0.0)
    rows = []
    for eps_rel in cfg.eps_grid:
        for mode in SYNTHESIS:
            _, x_syn = synthesise(mode, ae, clf, z0, eps=eps_rel * radius, steps=cfg.ascent_steps,
                                  T=cfg.mc_samples, generator=gen)
            rate, n = label_flips(judge.model, x_syn, x_ref, d.train.y[src])
            rows.append({"dataset": d.entry, "seed": d.seed, "eps_rel": eps_rel, "eps": eps_rel * radius,
                         "mode": mode, "flipped": round(rate * n) if n else 0, "n_judged": n})
    return rows


def flip_summary(sweep: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Flip rates pooled over the eps seeds: per (dataset, eps_rel, mode) the flips over the images judged, with
    the Wilson interval (statsmodels' `proportion_confint`) and whether at least MIN_JUDGED images were judged."""
    out = sweep.groupby(["dataset", "eps_rel", "mode"], sort=False)[["flipped", "n_judged"]].sum().reset_index()
    out["flip_rate"] = out["flipped"] / out["n_judged"]
    out["low"], out["high"] = proportion_confint(out["flipped"], out["n_judged"], alpha=1 - confidence,
                                                 method="wilson")
    out["enough_judged"] = out["n_judged"] >= MIN_JUDGED
    return out


def choose_eps(summary: pd.DataFrame, max_flip: float) -> float:
    """The largest eps (x radius) at which both TSynD targets, at it and at every smaller eps, flip at most max_flip
    of the labels (`flip_summary`'s pooled rate); 0 when even the smallest eps flips more (then TSynD is
    `recon-only`)."""
    tsynd_rows = summary[summary["mode"].str.startswith("tsynd")]
    worst = tsynd_rows.groupby("eps_rel")["flip_rate"].apply(lambda r: r.max(skipna=False)).sort_index()
    chosen = 0.0
    for eps_rel, rate in worst.items():
        if not rate <= max_flip:
            break
        chosen = float(eps_rel)
    return chosen


def synthetic_versions(cfg: Config, ae: ConvAutoencoder, clf: nn.Module, images: data.Dataset, eps: float,
                       T: int = 64) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """Images, and their version of every synthetic arm at eps (seeded by cfg.eps_seeds[0]), with the classifier's
    MI (T dropout passes) of each synthetic image: ({"original": x, mode: images}, {mode: MI per image})."""
    x, task = images.x, images.info.task
    z = encode_all(ae, x)
    versions, mi = {"original": x}, {}
    torch.manual_seed(cfg.eps_seeds[0])
    for mode in ("recon-only", "random-latent", "tsynd-entropy", "tsynd-mi"):
        _, versions[mode] = synthesise(mode, ae, clf, z, eps=eps, steps=cfg.ascent_steps, T=cfg.mc_samples,
                                       generator=torch.Generator().manual_seed(cfg.eps_seeds[0]))
        mi[mode] = mutual_information(mc_predict(clf, versions[mode], T, task=task)).numpy()
    return versions, mi
