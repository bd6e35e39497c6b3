"""One training and evaluation core for every classifier in the notebooks.

`fit` is the loop (Adam, best-by-validation model, optional synthetic images per epoch); `train_classifier` is the
one way the notebooks train a classifier: seeded initial weights (so every arm of a seed starts from the same
weights), a budget of at least `steps` updates and `min_epochs` passes whatever the set's size, optional balanced
class weights, and model selection on the validation split by loss, accuracy or AUC.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from latentlab.data import Dataset
from latentlab.metrics import classification_metrics
from latentlab.models import build_classifier, mc_dropout
from latentlab.repro import get_device, seed_everything
from latentlab.utils import batched, progress

Pair = tuple[torch.Tensor, torch.Tensor]
Synthetic = Callable[[int, nn.Module], Pair | None]
MONITORS = ("loss", "accuracy", "auc", "balanced_accuracy")


def _xy(data: Dataset | Pair) -> Pair:
    return (data.x, data.y) if isinstance(data, Dataset) else data


def _multilabel(task: str) -> bool:
    return task.startswith("multi-label")


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for one label per image, binary cross-entropy per label for multi-label data.

    weight: per-class weights (K,) for cross-entropy, or per-label positive weights (K,) for multi-label data.
    """
    if _multilabel(task):
        return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=weight)
    return F.cross_entropy(logits, y, weight=weight)


def balanced_weights(y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """'Balanced' class weights N / (K * N_k) (scikit-learn's rule), so every class weighs the same in the loss.

    For multi-hot labels: per-label positive weights N_neg / N_pos. A class absent from y gets weight 1.
    """
    if y.ndim == 2:
        pos = y.float().sum(0)
        return torch.where(pos > 0, (len(y) - pos) / pos.clamp_min(1), torch.ones_like(pos))
    counts = torch.bincount(y, minlength=n_classes).float()
    present = counts > 0
    return torch.where(present, len(y) / (int(present.sum()) * counts.clamp_min(1)), torch.ones_like(counts))


def to_probs(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Softmax (or per-label sigmoid) of logits."""
    return torch.sigmoid(logits) if _multilabel(task) else logits.softmax(-1)


@dataclass
class FitResult:
    """The best-by-validation model and one history row per epoch."""

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0


def fit(model: nn.Module, train: Dataset | Pair, val: Dataset | Pair | None = None, *, task: str,
        epochs: int = 30, lr: float = 1e-3, batch_size: int = 128, patience: int | None = None,
        weight_decay: float = 0.0, monitor: str = "loss", val_every: int = 1, synthetic: Synthetic | None = None,
        class_weight: torch.Tensor | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        device: str | torch.device | None = None, desc: str | None = None) -> FitResult:
    """Train with Adam; keep the model of the best validation check; stop after `patience` epochs without gain.

    monitor: 'loss' (lower is better), 'accuracy', 'balanced_accuracy' or 'auc' (higher is better) on `val`, checked
    every `val_every` epochs and after the last (tiny training sets make many one-batch epochs; validating each would
    dominate). synthetic(epoch, model) may return images (x, y) that join the training set for that epoch only.
    class_weight weighs the loss per class; augment(x) transforms each training batch (never validation data).
    """
    if monitor not in MONITORS:
        raise ValueError(f"Unknown monitor {monitor!r}. Choose one of: {', '.join(MONITORS)}.")
    device = get_device(device or "auto")
    model.to(device)
    weight = class_weight.to(device) if class_weight is not None else None
    x_train, y_train = _xy(train)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_score, best_state, best_epoch, history = -math.inf, None, 0, []
    bar = progress(range(epochs), desc=desc or "fit", leave=False)
    for epoch in bar:
        x, y = x_train, y_train
        added = synthetic(epoch, model) if synthetic is not None else None
        if added is not None:
            x, y = torch.cat([x, added[0].to(x)]), torch.cat([y, added[1].to(y)])
        model.train()
        total, order = 0.0, torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and len(x) > 1:  # batch-norm cannot train on a single image
                continue
            xb = x[idx].to(device)
            loss = loss_fn(model(augment(xb) if augment is not None else xb), y[idx].to(device), task, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(x), "n_train": len(x)}
        if val is not None and ((epoch + 1) % val_every == 0 or epoch == epochs - 1):
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
    return FitResult(model, history, best_epoch if val is not None else epochs - 1)


@torch.no_grad()
def validate(model: nn.Module, val: Dataset | Pair, *, task: str, device=None) -> dict[str, float]:
    """Validation loss, accuracy and AUC (keys prefixed 'val_')."""
    x, y = _xy(val)
    logits = _logits(model, x, batch_size=512, device=device)
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


def train_classifier(train: Dataset, val: Dataset | None, *, arch: str = "cnn", steps: int = 300,
                     min_epochs: int = 1, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                     seed: int = 0, class_weight: str | None = None, monitor: str = "loss", val_checks: int = 10,
                     synthetic: Synthetic | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     device=None, desc: str | None = None, **model_kwargs) -> FitResult:
    """Seed, build a classifier for `train` and fit it for at least `steps` updates and `min_epochs` passes.

    The budget in updates lets sets of 20 and 5000 images train for comparably long; `min_epochs` makes a large
    set (real + many synthetic images) see every image several times. `seed` fixes the initial weights and the batch
    order: every arm of a seed starts from the same weights (paired runs). class_weight='balanced' weighs each class
    by N / (K * N_k) (see `balanced_weights`): a classifier trained on a few, skewed labels then stops predicting the
    majority class only. The model of the best of about `val_checks` validation checks (by `monitor`) is returned.
    """
    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced'; got {class_weight!r}.")
    if len(train) == 0:
        raise ValueError("The training set is empty.")
    seed_everything(seed)
    model = build_classifier(arch, train.info.n_channels, train.n_classes, **model_kwargs)
    batch_size = max(2, min(batch_size, len(train)))
    epochs = max(min_epochs, math.ceil(steps / math.ceil(len(train) / batch_size)))
    weight = balanced_weights(train.y, train.n_classes) if class_weight == "balanced" else None
    return fit(model, train, val, task=train.info.task, epochs=epochs, lr=lr, batch_size=batch_size,
               weight_decay=weight_decay, monitor=monitor, val_every=max(1, epochs // max(1, val_checks)),
               synthetic=synthetic, class_weight=weight, augment=augment, device=device, desc=desc)

