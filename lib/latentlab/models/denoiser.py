"""Few-step latent diffusion refinement (Elberg et al., notebook 05): the "inference steps" after fusion.

The paper passes each fused latent through the last N/d steps of a Stable Diffusion sampler (the official
`utils.diffuse`: a 75-step schedule, of which the script runs the last `d_steps`, default 0, `run.sh` 3, Figure 2
shows 5), to take the seams of fusion away at a fraction of the cost of full generation. We have no Stable
Diffusion UNet, so a small denoiser eps_theta(z_t, t) is trained here on the dataset's latents:

* training (DDPM, Ho et al. 2020):  z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps,  minimise |eps - eps_theta(z_t, t)|^2,
  with diffusers' DDPMScheduler and Stable Diffusion's noise schedule (scaled-linear betas 0.00085 to 0.012,
  1000 steps);
* refinement (SDEdit, Meng et al. 2022): noise the fused latent to the first timestep of the last `steps` of an
  N-step DDIM schedule (diffusers' DDIMScheduler, eta = 0), then denoise through those `steps` timesteps.
  `steps = 0` returns the latent unchanged. The official code runs the same tail of the schedule but does not add
  noise first: it treats the fused latent as if it were already noisy.

The denoiser is unconditional: the paper's pipeline is text-conditioned (the class names as prompt), which is
where its authors suspect label information leaks; here any drift toward head classes comes from the data prior.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first: diffusers imports torchvision)
from latentlab.cache import train_or_load
from latentlab.models.latent_kl import train_steps
from latentlab.utils import channels_last, module_device

# Stable Diffusion's noise schedule (its scheduler_config.json).
SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


class _Block(nn.Module):
    """A residual 3x3 conv block whose features are shifted by a projection of the timestep embedding."""

    def __init__(self, width: int, emb_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, width), nn.GroupNorm(8, width)
        self.conv1, self.conv2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.emb = nn.Linear(emb_dim, width)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        r = self.conv1(F.silu(self.norm1(h))) + self.emb(emb)[:, :, None, None]
        return h + self.conv2(F.silu(self.norm2(r)))


class LatentDenoiser(nn.Module):
    """eps_theta(z_t, t): a few residual conv blocks at the latent resolution, with a sinusoidal time embedding."""

    def __init__(self, latent_channels: int = 4, width: int = 32, blocks: int = 2):
        super().__init__()
        if width % 8:
            raise ValueError(f"width must be divisible by 8 (group norm); got {width}.")
        self.width = width
        self.time = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Linear(2 * width, 2 * width))
        self.inp = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(_Block(width, 2 * width) for _ in range(blocks))
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, latent_channels, 3, padding=1))

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        from diffusers.models.embeddings import get_timestep_embedding

        t = torch.as_tensor(t, device=z.device).reshape(-1).expand(len(z))
        emb = self.time(get_timestep_embedding(t, self.width, flip_sin_to_cos=True, downscale_freq_shift=0))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


@dataclass
class DenoiserConfig:
    """Everything that changes a trained denoiser (the cache key is built from it)."""

    width: int = 32
    blocks: int = 2
    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


def train_denoiser(model: LatentDenoiser, z: torch.Tensor, cfg: DenoiserConfig) -> list[float]:
    """DDPM training on latents z: noise-prediction MSE at uniformly drawn timesteps, cfg.steps mini-batches."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**SCHEDULE)

    def loss(z0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        t = torch.randint(SCHEDULE["num_train_timesteps"], (len(z0),), generator=gen)
        eps = torch.randn(z0.shape, generator=gen)
        return F.mse_loss(model(scheduler.add_noise(z0, eps, t), t), eps)

    return train_steps(model, loss, z, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                       desc="denoiser")


def fit_denoiser(z: torch.Tensor, cfg: DenoiserConfig,
                 device: str | torch.device = "auto") -> LatentDenoiser:
    """Train a denoiser on latents z (N, C, h, w), or load it from the cache."""
    build = lambda: LatentDenoiser(z.shape[1], cfg.width, cfg.blocks)
    train = lambda model: train_denoiser(model, z, cfg)
    config = {"version": 2, "schedule": SCHEDULE, **asdict(cfg)}
    return train_or_load("latent-denoiser", config, build, train, data=(z,), device=device)


REFINE_MODES = ("sdedit", "official")


@torch.no_grad()
def refine(model: LatentDenoiser, z: torch.Tensor, steps: int, schedule: int = 20,
           generator: torch.Generator | None = None, mode: str = "sdedit") -> torch.Tensor:
    """Run the last `steps` of a `schedule`-step DDIM schedule on z.

    mode "sdedit": noise z to the start of those steps first (steps = schedule starts from almost pure noise, i.e.
    full generation); "official" (the paper's released code): take z itself as the noisy latent at the first of
    those steps and denoise it, adding no noise (so with a long schedule and few steps, a small correction).
    steps = 0 returns z itself.
    """
    if mode not in REFINE_MODES:
        raise ValueError(f"Unknown refinement mode {mode!r}. Choose 'sdedit' or 'official'.")
    from diffusers import DDIMScheduler

    if not 0 <= steps <= schedule:
        raise ValueError(f"steps must lie in [0, schedule={schedule}]; got {steps}.")
    if steps == 0:
        return z
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False)  # latents are not bounded to [-1, 1]
    scheduler.set_timesteps(schedule)
    timesteps = scheduler.timesteps[-steps:]
    device = module_device(model)
    if mode == "sdedit":
        noise = torch.randn(z.shape, generator=generator).to(device)
        zt = scheduler.add_noise(z.to(device), noise, timesteps[:1])
    else:
        zt = z.to(device)
    model.eval()
    for t in timesteps:
        zt = scheduler.step(model(channels_last(zt), t), t, zt).prev_sample  # NHWC: see utils.channels_last
    return zt.to(z.device)
