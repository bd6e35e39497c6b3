"""The oracle: the expert who labels synthetic images (AISEL) or judges whether a label survived (TSynD, ...).

In the papers it is a physician or a network trained on all the data. Here it is one classifier per dataset, trained
on the full training split, selected on the validation split and cached by its config. Every notebook reports its
validation and test accuracy next to the majority-class rate, and `train_oracle` refuses an oracle that does not
clearly beat the majority class: an oracle that always says "pneumonia" would make every label-flip rate and every
oracle label meaningless, silently.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from latentlab.cache import train_or_load
from latentlab.config import ClfConfig, OracleConfig
from latentlab.data import load_cached
from latentlab.models import build_classifier
from latentlab.train import evaluate, fit_classifier, predict_proba

# How every oracle trains besides its OracleConfig (the fields of ClfConfig it does not set).
TRAINING = dict(min_epochs=1, batch=64, lr=1e-3, class_weight="balanced", monitor="accuracy", val_checks=10,
                lr_decay=None)


@dataclass(frozen=True)
class Oracle:
    """A trained classifier with its measured quality."""

    dataset: str
    model: nn.Module
    val_accuracy: float
    test_accuracy: float
    majority_rate: float  # share of the largest class in the validation split: what a constant answer scores
    task: str

    def label(self, x: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
        """Hard labels (argmax) of images x and the oracle's confidence (max probability) in each."""
        probs = predict_proba(self.model, x, task=self.task, batch_size=batch_size)
        conf, labels = probs.max(1)
        return labels, conf

    def agreement(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Share of images x whose oracle label equals y (the label-validity of synthetic images)."""
        return float((self.label(x)[0] == y.cpu()).float().mean()) if len(x) else float("nan")

    def rows(self) -> list[dict]:
        """Tidy result rows (arm 'oracle'): validation and test accuracy, and the validation majority-class rate."""
        values = {"val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                  "val_majority_rate": self.majority_rate}
        return [{"dataset": self.dataset, "arm": "oracle", "seed": 0, "metric": k, "value": v}
                for k, v in values.items()]

    def __str__(self) -> str:
        return (f"oracle {self.dataset}: val accuracy {self.val_accuracy:.3f} "
                f"(majority class {self.majority_rate:.3f}), test accuracy {self.test_accuracy:.3f}")


@functools.lru_cache(maxsize=8)
def train_oracle(dataset: str, cfg: OracleConfig, min_margin: float = 0.05) -> Oracle:
    """The oracle of a dataset: trained on its whole training split (cached), best validation accuracy kept.

    cfg.max_images: train on a fixed random subset of at most this many training images (quick profiles); None: all.
    Every oracle trains the same way besides cfg (`TRAINING`: balanced class weights, selected on validation
    accuracy, seed 0).

    Raises RuntimeError when its validation accuracy is not at least `min_margin` above the majority-class rate.
    Remembered per process, so the workers of a grid load and measure it once each.
    """
    train, val, test = (load_cached(dataset, s) for s in ("train", "val", "test"))
    if cfg.max_images is not None and cfg.max_images < len(train):
        train = train.subset(np.sort(np.random.default_rng(0).permutation(len(train))[:cfg.max_images]))
    clf = ClfConfig(arch=cfg.arch, width=cfg.width, steps=cfg.steps, **TRAINING)

    def fit(model: nn.Module) -> None:
        fitted = fit_classifier(train, val, clf, seed=0, desc=f"oracle {dataset}")
        model.load_state_dict(fitted.model.state_dict())

    kwargs = {"width": cfg.width} if cfg.arch == "cnn" else {}
    build = lambda: build_classifier(cfg.arch, train.info.n_channels, train.n_classes, **kwargs)
    model = train_or_load("oracle", {"version": 2, "dataset": dataset, **asdict(clf)}, build, fit,
                          data=(train.x, train.y))
    majority = float(np.bincount(val.y.numpy()).max() / len(val)) if val.y.ndim == 1 else float("nan")
    oracle = Oracle(dataset, model, evaluate(model, val, task=val.info.task)["accuracy"],
                    evaluate(model, test, task=test.info.task)["accuracy"], majority, train.info.task)
    if not oracle.val_accuracy >= majority + min_margin:
        raise RuntimeError(f"{oracle}: not {min_margin:.2f} above the majority class. An oracle that cannot beat a "
                           "constant answer would make its labels meaningless: give it more steps or width "
                           "(ORACLE_STEPS, ORACLE_WIDTH) or another architecture (ORACLE_ARCH).")
    return oracle
