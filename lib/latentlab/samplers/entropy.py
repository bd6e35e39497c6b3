"""The uncertainty density of AISEL: h(f) = H(C(G(f))), the classifier's entropy on a generated image (eq. 7)."""

from __future__ import annotations

import torch
from torch import nn

from latentlab.metrics import entropy
from latentlab.train import predict_proba
from latentlab.utils import batched


def _generate(generator: nn.Module, f: torch.Tensor, batch_size: int) -> torch.Tensor:
    """G(f) in eval mode (batch-norm must not make an image depend on its batch), in batches, without gradients."""
    if hasattr(generator, "generate"):  # a GIN: its own eval-mode sampler
        return generator.generate(f, batch_size=batch_size)
    was_training = generator.training
    generator.eval()
    x = batched(generator, f, batch_size)
    generator.train(was_training)
    return x


def entropy_density(classifier: nn.Module, generator: nn.Module, f: torch.Tensor, *, task: str = "multi-class",
                    batch_size: int = 1024) -> torch.Tensor:
    """Eq. 7: h(f) = -sum_k C(G(f))[k] log C(G(f))[k], an unnormalised density on the feature space (N,)."""
    probs = predict_proba(classifier, _generate(generator, f, batch_size), task=task, batch_size=batch_size)
    return entropy(probs)


def top_entropy(h: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of the m largest entropies: pure uncertainty sampling, no diversity (the `maxent` ablation)."""
    return torch.topk(torch.as_tensor(h), m).indices
