"""One training and evaluation core for every classifier in the notebooks."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from latentlab.data import Dataset
from latentlab.metrics import classification_metrics
from latentlab.models import mc_dropout
from latentlab.repro import get_device, seed_everything

Pair = tuple[torch.Tensor, torch.Tensor]
Extra = Callable[[int, nn.Module], Pair | None]


def progress(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm bar, silent when LATENTLAB_PROGRESS=0 (batch runs, CI)."""
    disable = os.environ.get("LATENTLAB_PROGRESS", "1") == "0" or kwargs.pop("disable", False)
    return tqdm(iterable, disable=disable, dynamic_ncols=True, **kwargs)


def _xy(data: Dataset | Pair) -> Pair:
    return (data.x, data.y) if isinstance(data, Dataset) else data


def _multilabel(task: str) -> bool:
    return task.startswith("multi-label")


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str) -> torch.Tensor:
    """Cross-entropy for one label per image, binary cross-entropy per label for multi-label data."""
    if _multilabel(task):
        return F.binary_cross_entropy_with_logits(logits, y.float())
    return F.cross_entropy(logits, y)


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
        weight_decay: float = 0.0, monitor: str = "loss", val_every: int = 1, extra: Extra | None = None,
        device: str | torch.device | None = None, desc: str | None = None) -> FitResult:
    """Train with Adam; keep the model of the best validation epoch and stop after `patience` epochs without gain.

    monitor: 'loss' (lower is better), 'accuracy' or 'auc' (higher is better) on `val`, checked every
    `val_every` epochs (tiny training sets make many one-batch epochs; validating each would dominate).
    extra(epoch, model) may return synthetic (x, y) that join the training set for that epoch only.
    """
    device = get_device(device or "auto")
    model.to(device)
    x_train, y_train = _xy(train)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best_score, best_state, best_epoch, history = -math.inf, None, 0, []
    bar = progress(range(epochs), desc=desc or "fit", leave=False)
    for epoch in bar:
        x, y = x_train, y_train
        added = extra(epoch, model) if extra is not None else None
        if added is not None:
            x, y = torch.cat([x, added[0].to(x)]), torch.cat([y, added[1].to(y)])
        model.train()
        total, order = 0.0, torch.randperm(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and len(x) > 1:  # batch-norm cannot train on a single image
                continue
            loss = loss_fn(model(x[idx].to(device)), y[idx].to(device), task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(x), "n_train": len(x)}
        if val is not None and ((epoch + 1) % val_every == 0 or epoch == epochs - 1):
            row |= validate(model, val, task=task, device=device)
            score = -row["val_loss"] if monitor == "loss" else row[f"val_{monitor}"]
            if score > best_score:
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
    return {"val_loss": loss_fn(logits, y, task).item(), "val_accuracy": out["accuracy"], "val_auc": out["auc"]}


def _logits(model: nn.Module, x: torch.Tensor, batch_size: int, device=None) -> torch.Tensor:
    device = get_device(device or "auto")
    model.to(device)
    return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


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
                     batch_size: int = 64, lr: float = 1e-3, seed: int = 0, extra: Extra | None = None,
                     monitor: str = "loss", device=None, desc: str | None = None, **model_kwargs) -> FitResult:
    """Seed, build a classifier for `train` and fit it for about `steps` updates, whatever the set's size.

    A fixed number of updates (not epochs) lets budgets of 20 and 5000 images train for equally long;
    validation runs about 10 times in all.
    """
    from latentlab.models import build_classifier

    seed_everything(seed)
    model = build_classifier(arch, train.info.n_channels, train.n_classes, **model_kwargs)
    batch_size = max(2, min(batch_size, len(train)))
    epochs = max(1, math.ceil(steps / math.ceil(len(train) / batch_size)))
    return fit(model, train, val, task=train.info.task, epochs=epochs, lr=lr, batch_size=batch_size,
               monitor=monitor, val_every=max(1, epochs // 10), extra=extra, device=device, desc=desc)
