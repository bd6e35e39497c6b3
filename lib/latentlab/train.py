"""One training and evaluation core for every classifier in the notebooks.

`fit_classifier(train, val, clf, seed, hooks=...)` is the one way the notebooks train a classifier: seeded initial
weights (every arm of a seed starts from the same weights), a budget of at least `clf.steps` updates and
`clf.min_epochs` passes whatever the set's size (`schedule`), optional balanced class weights, and the model of the
best validation check (by `clf.monitor`) kept. `fit` is its loop (Adam, channels-last tensors, synthetic images per
epoch through `Hooks`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from latentlab.config import ClfConfig
from latentlab.data import Dataset
from latentlab.losses import balanced_weights, loss_fn, to_probs
from latentlab.metrics import classification_metrics
from latentlab.models import build_classifier, mc_dropout
from latentlab.repro import get_device, seed_everything
from latentlab.utils import adam, batched, channels_last, progress

Pair = tuple[torch.Tensor, torch.Tensor]
MONITORS = ("loss", "accuracy", "auc", "balanced_accuracy")
LR_DECAYS = (None, "cosine")


def lr_factor(progress: float, decay: str | None) -> float:
    """The learning rate's multiplier when a share `progress` (0 to 1) of the training is done: 1 throughout for
    None; 0.5 (1 + cos(pi progress)) for "cosine" (1 at the start, 0.5 half-way, 0 after the last update)."""
    if decay not in LR_DECAYS:
        raise ValueError(f"Unknown lr_decay {decay!r}. Choose None or 'cosine'.")
    return 1.0 if decay is None else 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _xy(data: Dataset | Pair) -> Pair:
    return (data.x, data.y) if isinstance(data, Dataset) else data


@dataclass(frozen=True)
class Schedule:
    """How long a classifier trains: epochs, batch size, and the epochs whose validation checks pick the model."""

    epochs: int
    batch_size: int
    val_epochs: tuple[int, ...]

    @property
    def first_val_epoch(self) -> int | None:
        return self.val_epochs[0] if self.val_epochs else None


def schedule(n_train: int, clf: ClfConfig, validate_from: int = 0) -> Schedule:
    """The schedule `fit_classifier` gives n_train images: at least clf.steps updates and clf.min_epochs passes,
    about clf.val_checks validation checks (the last epoch always one), none before epoch `validate_from`."""
    batch_size = max(2, min(clf.batch, n_train))
    epochs = max(clf.min_epochs, math.ceil(clf.steps / math.ceil(n_train / batch_size)))
    if not 0 <= validate_from < max(epochs, 1):
        raise ValueError(f"validate_from={validate_from} leaves no validation check in {epochs} epochs.")
    every = max(1, (epochs - validate_from) // max(1, clf.val_checks))
    checks = tuple(e for e in range(validate_from, epochs) if (e - validate_from + 1) % every == 0 or e == epochs - 1)
    return Schedule(epochs, batch_size, checks)


Synthetic = Callable[[int, nn.Module, Schedule], Pair | None]


@dataclass(frozen=True)
class Hooks:
    """What an arm adds to the one training loop.

    synthetic(epoch, model, schedule): images (x, y) that join the training set for that epoch only (or None).
    augment(x): a transform of each training batch (never of validation data).
    validate_from: no validation check (so no kept model) before this epoch, e.g. the first synthetic one.
    """

    synthetic: Synthetic | None = None
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    validate_from: int = 0


@dataclass
class FitResult:
    """The best-by-validation model, one history row per epoch, the kept epoch and the schedule it ran."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    schedule: Schedule | None = None


def fit(model: nn.Module, train: Dataset | Pair, val: Dataset | Pair | None = None, *, task: str,
        epochs: int = 30, batch_size: int = 128, val_epochs: tuple[int, ...] | None = None, lr: float = 1e-3,
        weight_decay: float = 0.0, monitor: str = "loss", patience: int | None = None, hooks: Hooks | None = None,
        class_weight: torch.Tensor | None = None, lr_decay: str | None = None,
        device: str | torch.device | None = None, desc: str | None = None,
        batches_per_epoch: int | None = None) -> FitResult:
    """Train with Adam; keep the model of the best validation check; stop after `patience` epochs without gain.

    monitor: 'loss' (lower is better), 'accuracy', 'balanced_accuracy' or 'auc' (higher is better) on `val`, checked
    at `val_epochs` (default: every epoch; tiny training sets make many one-batch epochs, and validating each would
    dominate). hooks: synthetic images per epoch, a batch augmentation (see `Hooks`). class_weight weighs the loss
    per class. lr_decay (`lr_factor`): None keeps lr; "cosine" lowers it before every update, towards 0 at the last
    one, so that the last model (the one a run without validation keeps) is a settled one. Model and batches are
    channels-last (NHWC in memory): CPU convolutions run about 1.5-1.9x faster that way, with the same numbers up to
    floating-point order. batches_per_epoch: every epoch makes exactly this many updates, its batch size growing with
    the images a hook adds that epoch (ceil(images / batches_per_epoch), at least batch_size): an arm with extra
    images then makes the same updates and the same passes over the real images as one without (notebook 06).
    """
    if monitor not in MONITORS:
        raise ValueError(f"Unknown monitor {monitor!r}. Choose one of: {', '.join(MONITORS)}.")
    lr_factor(0.0, lr_decay)  # refuses an unknown decay before any training
    hooks = hooks or Hooks()
    val_epochs = tuple(range(epochs)) if val_epochs is None else tuple(val_epochs)
    plan = Schedule(epochs, batch_size, val_epochs if val is not None else ())
    device = get_device(device or "auto")
    channels_last(model.to(device))
    weight = class_weight.to(device) if class_weight is not None else None
    x_train, y_train = _xy(train)
    opt = adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_score, best_state, best_epoch, history = -math.inf, None, 0, []
    bar = progress(range(epochs), desc=desc or "fit", leave=False)
    for epoch in bar:
        x, y = x_train, y_train
        added = hooks.synthetic(epoch, model, plan) if hooks.synthetic is not None else None
        if added is not None:
            x, y = torch.cat([x, added[0].to(x)]), torch.cat([y, added[1].to(y)])
        model.train()
        total, order = 0.0, torch.randperm(len(x))
        size = batch_size if batches_per_epoch is None else max(batch_size, math.ceil(len(x) / batches_per_epoch))
        for start in range(0, len(x), size):
            if lr_decay is not None:  # the share of training done before this update
                done = (epoch + start / len(x)) / epochs
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor(done, lr_decay)
            idx = order[start:start + size]
            if len(idx) < 2 and len(x) > 1:  # batch-norm cannot train on a single image
                continue
            xb = channels_last(x[idx].to(device))
            loss = loss_fn(model(hooks.augment(xb) if hooks.augment else xb), y[idx].to(device), task, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(x), "n_train": len(x)}
        if val is not None and epoch in plan.val_epochs:
            row |= validate(model, val, task=task, device=device)
            score = -row["val_loss"] if monitor == "loss" else row[f"val_{monitor}"]
            if score > best_score or best_state is None:  # NaN scores (AUC of one class) keep the first check
                best_score, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row[f'val_{monitor}']:.3f}")
        history.append(row)
        if patience is not None and best_state is not None and epoch - best_epoch >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return FitResult(model, history, best_epoch if best_state is not None else len(history) - 1, plan)


@torch.no_grad()
def validate(model: nn.Module, val: Dataset | Pair, *, task: str, device=None) -> dict[str, float]:
    """Validation loss, accuracy and AUC (keys prefixed 'val_'), in eval mode: dropout off and batch-norm on its
    running statistics, so a check is deterministic and never updates the model. The model's mode is restored."""
    x, y = _xy(val)
    was_training = model.training
    model.eval()
    try:
        logits = _logits(model, x, batch_size=512, device=device)
    finally:
        model.train(was_training)
    out = classification_metrics(y, to_probs(logits, task), task)
    return {"val_loss": loss_fn(logits, y, task).item(), "val_accuracy": out["accuracy"], "val_auc": out["auc"],
            "val_balanced_accuracy": out["balanced_accuracy"]}


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device=None) -> torch.Tensor:
    device = get_device(device or "auto")
    return batched(model.to(device), x, batch_size, device)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, task: str, batch_size: int = 512,
                  device=None) -> torch.Tensor:
    """Class probabilities (N, K) in eval mode."""
    model.eval()
    return to_probs(_logits(model, x, batch_size, device), task)


@torch.no_grad()
def mc_predict(model: nn.Module, x: torch.Tensor, T: int, *, task: str, batch_size: int = 512,
               device=None) -> torch.Tensor:
    """T stochastic passes with dropout on and batch-norm frozen: probabilities (T, N, K)."""
    with mc_dropout(model):
        return torch.stack([to_probs(_logits(model, x, batch_size, device), task) for _ in range(T)])


def evaluate(model: nn.Module, data: Dataset | Pair, *, task: str, device=None) -> dict[str, float]:
    """The task's metrics (latentlab.metrics.classification_metrics) of the model on data."""
    x, y = _xy(data)
    return classification_metrics(y, predict_proba(model, x, task=task, device=device), task)


def fit_classifier(train: Dataset, val: Dataset | None, clf: ClfConfig, seed: int, hooks: Hooks | None = None,
                   device=None, desc: str | None = None, weight: torch.Tensor | None = None,
                   equal_updates: bool = False) -> FitResult:
    """Seed, build the classifier `clf` describes for `train`, and fit it on its `schedule`.

    The budget in updates (clf.steps) lets sets of 20 and 5000 images train for comparably long; clf.min_epochs
    makes a large set (real + many synthetic images) see every image several times. `seed` fixes the initial weights
    and the batch order: every arm of a seed starts from the same weights (paired runs). clf.class_weight='balanced'
    weighs each class by N / (K * N_k) (see `balanced_weights`): a classifier trained on a few, skewed labels then
    stops predicting the majority class only. The model of the best validation check (by clf.monitor) is returned,
    with the schedule it ran (hooks.validate_from moves the first check, e.g. to the first synthetic epoch). weight:
    per-class loss weights of the caller's own (notebook 05's tail-only reweighting) in place of clf.class_weight's,
    which must then be None. equal_updates: the images hooks add make the batches larger, not more (`fit`'s
    batches_per_epoch: those of `train` alone), so every arm makes the schedule's updates and passes over `train`.
    """
    if clf.class_weight not in (None, "balanced"):
        raise ValueError(f"CLF_CLASS_WEIGHT must be None or 'balanced'; got {clf.class_weight!r}.")
    if len(train) == 0:
        raise ValueError("The training set is empty.")
    hooks = hooks or Hooks()
    plan = schedule(len(train), clf, hooks.validate_from)
    seed_everything(seed)
    kwargs = {"width": clf.width} if clf.arch == "cnn" else {}
    model = build_classifier(clf.arch, train.info.n_channels, train.n_classes, **kwargs)
    if weight is not None and clf.class_weight is not None:
        raise ValueError(f"Give per-class weights or CLF_CLASS_WEIGHT={clf.class_weight!r}, not both.")
    if weight is None and clf.class_weight == "balanced":
        weight = balanced_weights(train.y, train.n_classes)
    return fit(model, train, val, task=train.info.task, epochs=plan.epochs, batch_size=plan.batch_size,
               val_epochs=plan.val_epochs, lr=clf.lr, monitor=clf.monitor, hooks=hooks, class_weight=weight,
               lr_decay=clf.lr_decay, device=device, desc=desc,
               batches_per_epoch=math.ceil(len(train) / plan.batch_size) if equal_updates else None)
