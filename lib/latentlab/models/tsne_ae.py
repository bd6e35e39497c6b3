"""t-SNE-style autoencoder: reconstruction plus a parametric t-SNE term on the codes (Killeen; van der Maaten 2009).

The third encoder of latent-space query selection (notebook 03). It is the convolutional autoencoder of
`latentlab.models.autoencoder` whose loss adds, for every training batch x_1..x_B, the t-SNE divergence between
neighbourhoods in image space and neighbourhoods of the codes z_i = f_enc(x_i):

  (1) p_{j|i} = exp(-beta_i ||x_i - x_j||^2) / sum_{k != i} exp(-beta_i ||x_i - x_k||^2),   p_{i|i} = 0,
      with beta_i = 1 / (2 sigma_i^2) found by binary search so that the perplexity 2^{H(P_i)} of row i equals
      the target (30 by default; H in bits);
  (2) p_ij = (p_{j|i} + p_{i|j}) / (2B)                                  (symmetric, sums to 1);
  (3) q_ij = (1 + ||z_i - z_j||^2)^-1 / sum_{k != l} (1 + ||z_k - z_l||^2)^-1   (Student t, one degree of freedom);
  (4) KL(P || Q) = sum_{i != j} p_ij log(p_ij / q_ij);
  (5) loss = ||x - f_dec(f_enc(x))||^2 (per image, summed over pixels, averaged) + kl_weight * KL(P || Q).

P depends only on the images, so it is computed without gradients; the KL term pulls codes of images that are
neighbours in pixel space together and, through the heavy-tailed Q, pushes clusters apart. The subclass keeps the
autoencoder's interface (encode / decode / loss), so `train_autoencoder` trains it as it trains the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latentlab.cache import train_or_load
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, cache_key, train_autoencoder


def pairwise_sq_dists(x: torch.Tensor) -> torch.Tensor:
    """||x_i - x_j||^2 for every pair of rows of x (flattened), shape (B, B), exactly 0 on the diagonal."""
    flat = x.flatten(1).double()
    sq = flat.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * flat @ flat.T).clamp_min(0)
    return d.fill_diagonal_(0)


def _row_entropy(d: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional probabilities of eq. 1 for off-diagonal distances d (B, B-1) and their entropies in nats."""
    logits = -beta[:, None] * d
    p = logits.softmax(1)
    return p, -(p * logits.log_softmax(1)).sum(1)


def conditional_affinities(sq_dists: torch.Tensor, perplexity: float = 30.0, tol: float = 1e-5,
                           max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: P = (p_{j|i}) with zero diagonal, every row at the target perplexity; returns (P, beta).

    Binary search per row (all rows at once): the entropy H(P_i) falls as beta_i grows, so a row whose entropy is
    above log(perplexity) needs a larger beta_i. Until a row has an upper bound its beta is doubled; then the
    bracket [lo, hi] is halved until |H(P_i) - log(perplexity)| < tol (in nats) or max_iter steps have run.
    """
    n = len(sq_dists)
    if sq_dists.shape != (n, n):
        raise ValueError(f"sq_dists must be a square (B, B) matrix; got shape {tuple(sq_dists.shape)}.")
    if not 1 <= perplexity < n - 1:
        raise ValueError(f"A batch of {n} points has {n - 1} neighbours per point, so the perplexity must lie in "
                         f"[1, {n - 1}); got {perplexity}. Use larger batches or a smaller perplexity.")
    off = ~torch.eye(n, dtype=torch.bool, device=sq_dists.device)
    d = sq_dists.double()[off].view(n, n - 1)
    target = math.log(perplexity)
    beta = 1.0 / d.mean(1).clamp_min(1e-12)  # a start at the scale of the distances
    lo, hi = torch.zeros_like(beta), torch.full_like(beta, math.inf)
    for _ in range(max_iter):
        p, h = _row_entropy(d, beta)
        if (h - target).abs().max() < tol:
            break
        too_flat = h > target  # entropy too high: the Gaussian is too wide, beta must grow
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(hi.isinf(), 2 * beta, (lo + hi) / 2)
    p, _ = _row_entropy(d, beta)
    out = torch.zeros(n, n, dtype=torch.float64, device=sq_dists.device)
    out[off] = p.flatten()
    return out, beta


def joint_affinities(x: torch.Tensor, perplexity: float = 30.0) -> torch.Tensor:
    """Eq. 2: the symmetric P of a batch of images x (B, ...), rows at the target perplexity before symmetrising."""
    p_cond, _ = conditional_affinities(pairwise_sq_dists(x), perplexity)
    return (p_cond + p_cond.T) / (2 * len(x))


def student_t_similarities(z: torch.Tensor) -> torch.Tensor:
    """Eq. 3: Q of codes z (B, L), zero diagonal, summing to 1 (differentiable)."""
    kernel = 1.0 / (1.0 + torch.cdist(z, z).pow(2))
    kernel = kernel * (1 - torch.eye(len(z), dtype=z.dtype, device=z.device))
    return kernel / kernel.sum()


def tsne_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Eq. 4: KL(P || Q) = sum p log(p / q) over the pairs with p > 0."""
    p = p.to(q.dtype)
    mask = p > 0
    return (p[mask] * (p[mask].log() - q[mask].clamp_min(eps).log())).sum()


class TSNEAutoencoder(ConvAutoencoder):
    """ConvAutoencoder whose loss adds kl_weight * KL(P || Q) on each batch (eq. 5)."""

    def __init__(self, in_channels: int = 1, latent_dim: int = 2, width: int = 32, image_size: int = 28,
                 perplexity: float = 30.0, kl_weight: float = 10.0):
        super().__init__(in_channels, latent_dim, width, image_size)
        self.perplexity, self.kl_weight = perplexity, kl_weight

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Eq. 5. A batch too small for the perplexity (the last one of an epoch) uses perplexity (B - 1) / 2."""
        z = self.encode(x)
        recon = F.mse_loss(self.decode(z), x, reduction="none").flatten(1).sum(1).mean()
        if len(x) < 4:  # no neighbourhood worth matching
            return recon
        with torch.no_grad():
            p = joint_affinities(x, min(self.perplexity, (len(x) - 1) / 2))
        return recon + self.kl_weight * tsne_kl(p, student_t_similarities(z))


@dataclass
class TSNEConfig(AEConfig):
    """AEConfig plus the t-SNE term's perplexity and weight (the cache key is built from all of it)."""

    kind: str = "tsne"
    latent_dim: int = 2
    perplexity: float = 30.0
    kl_weight: float = 10.0


def fit_tsne_autoencoder(x: torch.Tensor, cfg: TSNEConfig, device: str | torch.device = "auto",
                         init: ConvAutoencoder | None = None) -> TSNEAutoencoder:
    """Train a TSNEAutoencoder on images x, or load it from the cache (as `fit_autoencoder` does for AE / VAE).

    init: a trained ConvAutoencoder of the same sizes whose weights the training starts from (van der Maaten 2009
    pretrains the network as an autoencoder, then fine-tunes it with the t-SNE cost: the plane's arrangement comes
    from the pretraining, the t-SNE term sharpens its neighbourhoods); its weights are part of the cache key. None:
    from a random initialisation."""
    if cfg.batch_size < cfg.perplexity + 2:
        raise ValueError(f"batch_size {cfg.batch_size} is too small for perplexity {cfg.perplexity}: each image "
                         f"needs more than {cfg.perplexity:g} neighbours in its batch. Use batch_size >= "
                         f"{math.ceil(cfg.perplexity) + 2}.")
    start = None if init is None else {k: v.detach().cpu().contiguous() for k, v in init.state_dict().items()}

    def build() -> TSNEAutoencoder:
        model = TSNEAutoencoder(x.shape[1], cfg.latent_dim, cfg.width, x.shape[-1], cfg.perplexity, cfg.kl_weight)
        if start is not None:  # its weights; buffers of its own training (an AE's val_curve) are not the model's
            mine = model.state_dict()
            if set(mine) - set(start) or any(start[k].shape != v.shape for k, v in mine.items()):
                raise ValueError(f"init does not fit a t-SNE autoencoder of latent {cfg.latent_dim} and width "
                                 f"{cfg.width}: pretrain a ConvAutoencoder of the same sizes.")
            model.load_state_dict({k: start[k] for k in mine})
        return model

    weights = () if start is None else tuple(start.values())
    key = cache_key(cfg, 2) | ({} if start is None else {"init": "pretrained"})
    return train_or_load("autoencoder-tsne", key, build,
                         lambda model: train_autoencoder(model, x, cfg), data=(x, *weights), device=device)
