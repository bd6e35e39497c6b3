"""TSynD latent optimisation (Niemeijer et al. 2024): synthetic images that maximise a classifier's uncertainty.

From the code of a real image, z0 = f_enc(x), climb the classifier's epistemic uncertainty on the decoded image:
    z* = argmax_z  U(C(f_dec(z)))   subject to  ||z - z0|| <= eps,
with U the mutual information (BALD) of T MC-dropout passes, or the predictive entropy (the paper's ablation).
Decoder and classifier are frozen; only z moves. The synthetic image f_dec(z*) keeps the label of x.
The ascent is projected, normalised gradient ascent (PGD in latent space), because raw MI gradients are tiny
on images the classifier has memorised. The baseline 'random-latent' moves z0 by a random vector of norm eps.
The hook that regenerates the synthetic set during training (`LatentAugmenter`) and the judge's label-flip rate
(`label_flips`) are the experiment's: `latentlab.experiments.tsynd`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from latentlab.metrics import mutual_information, predictive_entropy
from latentlab.models.classifiers import mc_dropout
from latentlab.utils import module_device

TARGETS = ("mi", "entropy")
MODES = ("tsynd-mi", "tsynd-entropy", "random-latent", "recon-only")


def _has_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules())


def mc_probs(model: nn.Module, x: torch.Tensor, T: int) -> torch.Tensor:
    """Softmax probabilities of T stochastic passes, (T, N, K), differentiable in x; call inside mc_dropout(model).

    A model that splits into a dropout-free trunk `features` and a `head` (SmallCNN) runs its trunk once:
    the T passes differ only where dropout acts, so this is exact and about T times cheaper.
    """
    features, head = getattr(model, "features", None), getattr(model, "head", None)
    if isinstance(features, nn.Module) and isinstance(head, nn.Module) and not _has_dropout(features):
        h = features(x)
        return torch.stack([head(h).softmax(-1) for _ in range(T)])
    # Generic model: one big batch of T copies (each copy draws its own dropout masks).
    return model(x.repeat(T, *([1] * (x.ndim - 1)))).softmax(-1).view(T, len(x), -1)


def uncertainty(probs_mc: torch.Tensor, target: str) -> torch.Tensor:
    """Per-image target U of (T, N, K) MC probabilities: 'mi' (BALD, eq. of the paper) or 'entropy' of the mean."""
    if target == "mi":
        return mutual_information(probs_mc)
    if target == "entropy":
        return predictive_entropy(probs_mc)
    raise ValueError(f"Unknown target {target!r}. Choose one of: {', '.join(TARGETS)}.")


def project_ball(z: torch.Tensor, z0: torch.Tensor, eps: float) -> torch.Tensor:
    """The point of the ball ||z - z0|| <= eps closest to z (per row)."""
    d = z - z0
    norm = d.norm(dim=1, keepdim=True)
    return z0 + d * (eps / norm.clamp_min(1e-12)).clamp(max=1.0)


@dataclass
class AscentResult:
    """Final codes and images; if recorded, MI and entropy (steps + 1, N) and the codes z (steps + 1, N, d) per step."""

    z: torch.Tensor
    x: torch.Tensor
    history: dict[str, torch.Tensor] = field(default_factory=dict)


def latent_ascent(decoder: nn.Module, classifier: nn.Module, z0: torch.Tensor, *, eps: float, steps: int = 10,
                  T: int = 8, target: str = "mi", step_size: float | None = None,
                  record: bool = False) -> AscentResult:
    """Projected, normalised gradient ascent on z of U(C(f_dec(z))) within ||z - z0|| <= eps (decoder: z -> image).

    step_size defaults to 2.5 * eps / steps (as in PGD): enough to reach the ball's surface and move along it.
    With eps = 0 the codes come back unchanged (the 'recon-only' control).
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}. Choose one of: {', '.join(TARGETS)}.")
    step_size = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    z0 = z0.detach()
    z = z0.clone()
    history: dict[str, list[torch.Tensor]] = {"mi": [], "entropy": [], "z": []}
    n_steps = steps if eps > 0 else 0  # eps = 0: nowhere to go, the codes come back unchanged
    with mc_dropout(classifier):
        for step in range(n_steps + 1):
            if step == n_steps and not record:
                break  # the last forward pass only serves the recorded trace
            z.requires_grad_(True)
            probs = mc_probs(classifier, decoder(z), T)
            if record:
                history["mi"].append(mutual_information(probs).detach().cpu())
                history["entropy"].append(predictive_entropy(probs).detach().cpu())
                history["z"].append(z.detach().cpu())
            if step == n_steps:
                break
            # Gradient w.r.t. z only: decoder and classifier weights stay frozen and get no .grad.
            grad, = torch.autograd.grad(uncertainty(probs, target).sum(), z)
            with torch.no_grad():
                # Normalised step: the direction of steepest ascent, a fixed length whatever the gradient's size.
                z = z + step_size * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                z = project_ball(z, z0, eps)
    z = z.detach()
    with torch.no_grad():
        x = decoder(z)
    return AscentResult(z, x, {k: torch.stack(v) for k, v in history.items() if v})


def random_latent(z0: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The baseline: z0 + eps * u with u uniform on the unit sphere (the same norm budget as the ascent)."""
    u = torch.randn(z0.shape, generator=generator).to(z0)
    return z0 + eps * u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)


def latent_radius(z: torch.Tensor) -> float:
    """RMS distance of codes to their mean: the unit in which eps is given (eps_rel * radius = eps)."""
    return float((z - z.mean(0)).pow(2).sum(1).mean().sqrt())


def synthesise(mode: str, autoencoder: nn.Module, classifier: nn.Module, z0: torch.Tensor, *, eps: float,
               steps: int = 10, T: int = 8, batch_size: int = 256,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes and decoded images (z, x) of one arm, batched.

    mode: 'tsynd-mi', 'tsynd-entropy' (latent ascent), 'random-latent' (norm eps), 'recon-only' (z0 itself).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}. Choose one of: {', '.join(MODES)}.")
    device = module_device(classifier)
    autoencoder.to(device).eval()
    zs, xs = [], []
    for i in range(0, len(z0), batch_size):
        zb = z0[i:i + batch_size].to(device)
        if mode.startswith("tsynd"):
            out = latent_ascent(autoencoder.decode, classifier, zb, eps=eps, steps=steps, T=T,
                                target=mode.split("-")[1])
            zb, xb = out.z, out.x
        else:
            zb = random_latent(zb, eps, generator) if mode == "random-latent" else zb
            with torch.no_grad():
                xb = autoencoder.decode(zb)
        zs.append(zb.cpu())
        xs.append(xb.cpu())
    return torch.cat(zs), torch.cat(xs)
