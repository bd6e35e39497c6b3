"""Test-time perturbations (flips, small rotations, Gaussian noise) and FGSM / PGD attacks, for robustness metrics.

Images are (N, C, H, W) in [0, 1]; every function returns images in [0, 1]. Attacks are L-infinity, in pixel
units of [0, 1] (eps = 2/255 moves each pixel by at most two grey levels), on a model in eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latentlab.utils import batched, module_device

Perturbation = Callable[[torch.Tensor], torch.Tensor]


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror left-right."""
    return x.flip(-1)


def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror top-bottom."""
    return x.flip(-2)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre by `degrees` (bilinear; corners filled with black)."""
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(len(x), 2, 3).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def gaussian_noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Add N(0, std^2) pixel noise (seeded, so every arm sees the same noise) and clip to [0, 1]."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(x)
    return (x + std * noise).clamp(0, 1)


def standard_perturbations(rotation: float = 10.0, noise_std: float = 0.05) -> dict[str, Perturbation]:
    """The named perturbations behind `accuracy_tta`: flips, +-rotation degrees, Gaussian noise."""
    return {
        "hflip": hflip,
        "vflip": vflip,
        f"rot+{rotation:g}": lambda x: rotate(x, rotation),
        f"rot-{rotation:g}": lambda x: rotate(x, -rotation),
        f"noise{noise_std:g}": lambda x: gaussian_noise(x, noise_std),
    }


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of the cross-entropy w.r.t. the input (weights untouched)."""
    x = x.detach().requires_grad_(True)
    grad, = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size eps up the loss's sign gradient."""
    model.eval()
    return (x + eps * _loss_grad(model, x, y).sign()).clamp(0, 1).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 10,
        alpha: float | None = None, random_start: bool = True, seed: int = 0) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018): `steps` sign steps of size alpha, projected to the eps box."""
    model.eval()
    alpha = 2.5 * eps / steps if alpha is None else alpha
    x0 = x.detach()
    adv = x0.clone()
    if random_start:
        g = torch.Generator().manual_seed(seed)
        adv = (adv + (torch.rand(x.shape, generator=g).to(x) * 2 - 1) * eps).clamp(0, 1)
    for _ in range(steps):
        adv = adv + alpha * _loss_grad(model, adv, y).sign()
        adv = torch.min(torch.max(adv, x0 - eps), x0 + eps).clamp(0, 1).detach()
    return adv


def attack_batched(attack: Callable[..., torch.Tensor], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 512, **kwargs) -> torch.Tensor:
    """Apply an attack (fgsm, pgd) batch by batch on the model's device; results on the CPU.

    Attacks need gradients, so this cannot use `latentlab.utils.batched` (no-grad inference); images and labels are
    chunked together instead.
    """
    device = module_device(model)
    return torch.cat([attack(model, x[i:i + batch_size].to(device), y[i:i + batch_size].to(device), **kwargs).cpu()
                      for i in range(0, len(x), batch_size)])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    model.eval()
    return float((batched(model, x, batch_size).argmax(1) == y.cpu()).float().mean())


def robustness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attack_eps: Sequence[float],
               pgd_steps: int = 20, perturbations: dict[str, Perturbation] | None = None) -> dict[str, float]:
    """Robustness measured on the images the model classifies correctly, so that it is not confounded with clean
    accuracy (a model wrong on an image cannot be made wrong by an attack) and a constant predictor gains nothing
    from the images of its one class being hard to move. Returns:

    robust_images: how many of the len(x) images the model gets right (the base of every share below);
    accuracy_<name>: the share of them still right under each test-time perturbation, accuracy_tta their mean;
    accuracy_fgsm@<e>, accuracy_pgd@<e>: the share still right under FGSM / PGD (`pgd_steps` steps) at each L-inf
    budget e of `attack_eps` (keys in grey levels of 255, e.g. 'accuracy_pgd@2'); accuracy_fgsm, accuracy_pgd:
    their mean over the sweep (the area under the robustness curve, one number per attack).
    """
    if len(attack_eps) == 0:
        raise ValueError("attack_eps needs at least one budget.")
    perturbations = standard_perturbations() if perturbations is None else perturbations
    model.eval()
    right = batched(model, x).argmax(1) == y.cpu()
    out: dict[str, float] = {"robust_images": int(right.sum())}
    if not right.any():
        return out
    x, y = x[right], y[right]
    per = {f"accuracy_{name}": _accuracy(model, f(x), y) for name, f in perturbations.items()}
    out |= ({"accuracy_tta": sum(per.values()) / len(per)} if per else {}) | per
    for name, attack, options in (("fgsm", fgsm, {}), ("pgd", pgd, {"steps": pgd_steps})):
        sweep = {f"accuracy_{name}@{eps * 255:g}": _accuracy(model, attack_batched(attack, model, x, y, eps=eps,
                                                                                    **options), y)
                 for eps in attack_eps}
        out |= {f"accuracy_{name}": sum(sweep.values()) / len(sweep)} | sweep
    return out
