"""Classification metrics on predicted probabilities, and uncertainty of MC-dropout predictions.

Every metric takes y_true (int labels (N,), or multi-hot (N, K)) and probabilities (N, K).
Binary tasks have K = 2 and class 1 is the positive class. The scores come from scikit-learn;
this module only decides how a task's probabilities become its inputs.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

EPS = 1e-12


def _np(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _prep(y_true, probs) -> tuple[np.ndarray, np.ndarray, bool]:
    y, p = _np(y_true), _np(probs)
    if p.ndim != 2:
        raise ValueError(f"probs must be (N, K); got shape {p.shape}.")
    return y, p, y.ndim == 2  # multi-hot labels mean multi-label


def predictions(probs, multilabel: bool = False) -> np.ndarray:
    """Hard predictions: argmax, or a 0.5 threshold per label for multi-label data."""
    p = _np(probs)
    return (p >= 0.5).astype(int) if multilabel else p.argmax(1)


def single_class(probs, multilabel: bool = False) -> bool:
    """True when the hard predictions name a single class for every image: a degenerate classifier.

    Such a run scores exactly the majority share (or its complement); it is no baseline and is counted, not averaged
    away, in every notebook. For multi-label data: every label's prediction is constant over the images.
    """
    pred = predictions(probs, multilabel)
    if multilabel:
        return bool((pred == pred[:1]).all())
    return len(np.unique(pred)) <= 1


def accuracy(y_true, probs) -> float:
    """Share of correct predictions (per label, averaged, for multi-label data)."""
    y, p, ml = _prep(y_true, probs)
    return float((predictions(p, ml) == y).mean())


def balanced_accuracy(y_true, probs) -> float:
    """Mean recall over classes (labels)."""
    y, p, ml = _prep(y_true, probs)
    if ml:
        return float(np.mean([skm.balanced_accuracy_score(y[:, k], predictions(p, True)[:, k])
                              for k in range(y.shape[1])]))
    return float(skm.balanced_accuracy_score(y, predictions(p)))


def _confusion(y, pred, k: int) -> tuple[int, int, int, int]:
    """TP, FN, TN, FP of class k against the rest."""
    t, q = y == k, pred == k
    return int((t & q).sum()), int((t & ~q).sum()), int((~t & ~q).sum()), int((~t & q).sum())


def _per_class(y_true, probs, fn) -> float:
    y, p, ml = _prep(y_true, probs)
    if ml:
        pred = predictions(p, True)
        return float(np.mean([fn(*_confusion(y[:, k], pred[:, k], 1)) for k in range(y.shape[1])]))
    pred = predictions(p)
    if p.shape[1] == 2:
        return float(fn(*_confusion(y, pred, 1)))
    return float(np.mean([fn(*_confusion(y, pred, k)) for k in range(p.shape[1])]))


def sensitivity(y_true, probs) -> float:
    """TP / (TP + FN) of the positive class; macro over classes for multi-class."""
    return _per_class(y_true, probs, lambda tp, fn, tn, fp: tp / (tp + fn) if tp + fn else 0.0)


def specificity(y_true, probs) -> float:
    """TN / (TN + FP) of the positive class; macro over classes for multi-class."""
    return _per_class(y_true, probs, lambda tp, fn, tn, fp: tn / (tn + fp) if tn + fp else 0.0)


def f1(y_true, probs) -> float:
    """F1 of the positive class for binary data, macro-F1 otherwise."""
    y, p, ml = _prep(y_true, probs)
    binary = not ml and p.shape[1] == 2
    return float(skm.f1_score(y, predictions(p, ml), average="binary" if binary else "macro", zero_division=0))


def auc(y_true, probs) -> float:
    """ROC AUC: binary, one-vs-rest macro for multi-class, macro over labels for multi-label."""
    y, p, ml = _prep(y_true, probs)
    if ml:
        return float(skm.roc_auc_score(y, p, average="macro"))
    if p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    p = p / p.sum(1, keepdims=True)  # sklearn insists that multi-class rows sum to exactly 1
    return float(skm.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=np.arange(p.shape[1])))


def average_precision(y_true, probs) -> float:
    """Average precision of the positive class (binary) or macro over classes / labels."""
    y, p, ml = _prep(y_true, probs)
    if not ml and p.shape[1] == 2:
        return float(skm.average_precision_score(y, p[:, 1]))
    onehot = y if ml else np.eye(p.shape[1])[y]
    return float(skm.average_precision_score(onehot, p, average="macro"))


def per_class_average_precision(y_true, probs) -> np.ndarray:
    """Average precision of every class against the rest (every label, for multi-label data): an array (K,), NaN
    for a class with no positive image in y_true. Binary data gives both classes' AP (class 0's from p[:, 0])."""
    y, p, ml = _prep(y_true, probs)
    onehot = y if ml else np.eye(p.shape[1])[y]
    return np.array([skm.average_precision_score(onehot[:, k], p[:, k]) if onehot[:, k].any() else np.nan
                     for k in range(p.shape[1])])


def classification_metrics(y_true, probs, task: str = "multi-class") -> dict[str, float]:
    """The metrics the notebooks report for a task (binary adds sensitivity, specificity and f1).

    `single_class` is 1.0 for a degenerate classifier (one class predicted for every image), else 0.0.
    """
    y, p, ml = _prep(y_true, probs)
    out = {"accuracy": accuracy(y, p), "balanced_accuracy": balanced_accuracy(y, p),
           "single_class": float(single_class(p, ml))}
    try:
        out["auc"] = auc(y, p)
    except ValueError:  # a class absent from y_true: AUC is undefined, say so with NaN
        out["auc"] = float("nan")
    if not ml and p.shape[1] == 2:
        out |= {"sensitivity": sensitivity(y, p), "specificity": specificity(y, p), "f1": f1(y, p)}
    else:
        out["macro_f1"] = f1(y, p)
    return out


# --------------------------------------------------------------------------- uncertainty


def entropy(probs: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats along dim (differentiable)."""
    return -(probs * (probs + EPS).log()).sum(dim)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H[p] of (N, K) probabilities, or H[mean_t p_t] of (T, N, K) MC-dropout probabilities."""
    probs = torch.as_tensor(probs)
    return entropy(probs.mean(0) if probs.ndim == 3 else probs)


def mutual_information(probs_mc: torch.Tensor) -> torch.Tensor:
    """BALD: H[mean_t p_t] - mean_t H[p_t] of (T, N, K) MC-dropout probabilities; epistemic uncertainty."""
    probs_mc = torch.as_tensor(probs_mc)
    if probs_mc.ndim != 3:
        raise ValueError(f"mutual_information needs (T, N, K) MC probabilities; got shape {tuple(probs_mc.shape)}.")
    return entropy(probs_mc.mean(0)) - entropy(probs_mc).mean(0)
