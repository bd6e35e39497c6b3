"""Frechet distance between two sets of features: FID without Inception (Heusel et al. 2017).

  d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

is the squared 2-Wasserstein distance between the Gaussians N(mu_1, S_1) and N(mu_2, S_2) fitted to the features.
FID takes the features from an ImageNet Inception-v3; its weights cannot be downloaded here, and 28 px grey images
are far from ImageNet anyway, so the notebooks use the penultimate layer of a classifier trained on the dataset
(`classifier_features`). Values are comparable only between runs that use the same feature network.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import nn

from latentlab.utils import batched


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """d^2 between N(mu1, cov1) and N(mu2, cov2) (matrix square root by scipy.linalg.sqrtm)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"Means and covariances must be (d,) and (d, d) alike; got {mu1.shape}, {cov1.shape}, "
                         f"{mu2.shape}, {cov2.shape}.")
    with warnings.catch_warnings():  # fewer samples than features make the product singular: handled below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():  # a failed square root: nudge both covariances (as pytorch-fid does)
        offset = np.eye(len(mu1)) * 1e-6
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = covmean.real  # rounding leaves tiny imaginary parts
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples) of a feature matrix (N, d), N >= 2."""
    f = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"Features must be (N, d) with N >= 2; got shape {f.shape}.")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance_features(f1, f2) -> float:
    """d^2 between Gaussians fitted to two feature sets (N1, d) and (N2, d)."""
    return frechet_distance(*feature_stats(f1), *feature_stats(f2))


def classifier_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """What the classifier's last linear layer reads (its penultimate features), eval mode, batched, on the CPU."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError("classifier_features needs a model whose last layer is an nn.Linear.")
    captured: list[torch.Tensor] = []
    hook = last[-1].register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach().cpu()))
    try:
        batched(model.eval(), x, batch_size)
    finally:
        hook.remove()
    return torch.cat(captured).flatten(1)
