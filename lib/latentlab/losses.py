"""Losses every training loop shares: cross-entropy (or per-label BCE), balanced class weights, probabilities.

A leaf module: classifiers' training (`latentlab.train`) and the generative models (`latentlab.models.iterated`)
both import it, and it imports nothing of latentlab.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multilabel(task: str) -> bool:
    """True for MedMNIST's multi-label tasks (one sigmoid per label)."""
    return task.startswith("multi-label")


def loss_fn(logits: torch.Tensor, y: torch.Tensor, task: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy for one label per image, binary cross-entropy per label for multi-label data.

    weight: per-class weights (K,) for cross-entropy, or per-label positive weights (K,) for multi-label data.
    """
    if multilabel(task):
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
    return torch.sigmoid(logits) if multilabel(task) else logits.softmax(-1)
