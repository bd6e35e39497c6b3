"""The latent space of Elberg et al. (notebook 05): a `diffusers.AutoencoderKL`, the class Stable Diffusion uses.

The paper encodes chest X-rays with the VAE of a pretrained Stable Diffusion pipeline (RoentGen): 4 x 64 x 64
latents of 512 px images. Every later stage (iterated learning, CAMs, fusion, diffusion refinement) works on
those latents. Two ways to get the autoencoder, one code path:

* `KLConfig(pretrained=None)`: a small AutoencoderKL for 28 px images (three blocks, two of them downsampling:
  latents 4 x 7 x 7), trained from scratch on the training images; the default here, since no weights can be
  downloaded and a 28 px image is far below what the Stable Diffusion VAE was made for.
* `KLConfig(pretrained="<hub id or folder>", subfolder="vae")`: `AutoencoderKL.from_pretrained`, for users with
  internet and a GPU (e.g. a Stable Diffusion VAE); `image_size` then resizes the images to what it expects and
  grey images are repeated to its three channels. Nothing is trained.

`LatentCodec` wraps either: encode(x in [0, 1]) -> latents scaled to unit variance, decode(latents) -> images in
[0, 1]. Stable Diffusion multiplies its latents by `scaling_factor` (0.18215) for the same reason; a model
trained here measures its own scale and shift on the training latents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first: diffusers imports torchvision)
from latentlab.cache import train_or_load
from latentlab.repro import get_device
from latentlab.utils import adam, batched, channels_last, module_device, progress


@dataclass
class KLConfig:
    """Everything that changes the autoencoder (the cache key is built from it)."""

    pretrained: str | None = None             # a from_pretrained name or folder; None trains a small one here
    subfolder: str | None = None              # 'vae' inside a full Stable Diffusion repository
    image_size: int | None = None             # resize to this before encoding (a pretrained VAE wants >= 64 px)
    block_channels: tuple[int, ...] = (8, 16, 16)  # one block per entry; all but the last halve the size
    latent_channels: int = 4
    norm_groups: int = 4
    steps: int = 800
    batch_size: int = 8
    lr: float = 2e-3
    kl_weight: float = 1e-4                   # weight of KL(q(z|x) || N(0, I)) beside the L1 reconstruction
    seed: int = 0


def build_autoencoder_kl(cfg: KLConfig, in_channels: int = 1, image_size: int = 28):
    """An untrained diffusers.AutoencoderKL: len(block_channels) blocks, no attention (small images)."""
    from diffusers import AutoencoderKL

    n = len(cfg.block_channels)
    if image_size % 2 ** (n - 1):
        raise ValueError(f"image_size {image_size} must be divisible by 2^{n - 1} for {n} blocks; "
                         f"use fewer block_channels or resize the images.")
    if any(c % cfg.norm_groups for c in cfg.block_channels):
        raise ValueError(f"Every entry of block_channels {cfg.block_channels} must be divisible by "
                         f"norm_groups={cfg.norm_groups} (group norm).")
    return AutoencoderKL(in_channels=in_channels, out_channels=in_channels,
                         down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                         block_out_channels=tuple(cfg.block_channels), layers_per_block=1,
                         latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_groups,
                         sample_size=image_size, mid_block_add_attention=False)


class LatentCodec(nn.Module):
    """Images in [0, 1] <-> standardised latents through an AutoencoderKL (its posterior mode, no sampling)."""

    def __init__(self, vae: nn.Module, in_channels: int = 1, image_size: int = 28, resize_to: int | None = None):
        super().__init__()
        self.vae, self.in_channels, self.image_size, self.resize_to = vae, in_channels, image_size, resize_to
        self.register_buffer("scale", torch.tensor(float(vae.config.scaling_factor)))
        self.register_buffer("shift", torch.tensor(float(vae.config.shift_factor or 0.0)))

    def _to_vae(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Expected images with {self.in_channels} channels; got shape {tuple(x.shape)}.")
        if self.resize_to is not None:
            x = F.interpolate(x, size=self.resize_to, mode="bilinear", align_corners=False)
        if self.vae.config.in_channels != x.shape[1]:
            x = x.repeat(1, self.vae.config.in_channels // x.shape[1], 1, 1)  # grey -> RGB
        return 2 * x - 1  # diffusers' autoencoders work in [-1, 1]

    def _from_vae(self, y: torch.Tensor) -> torch.Tensor:
        y = ((y + 1) / 2).clamp(0, 1)
        if y.shape[1] != self.in_channels:
            y = y.mean(1, keepdim=True)  # RGB -> grey
        if self.resize_to is not None:
            y = F.interpolate(y, size=self.image_size, mode="bilinear", align_corners=False)
        return y

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents (N, latent_channels, h, w): (mode of q(z|x) - shift) * scale."""
        return (self.vae.encode(self._to_vae(x)).latent_dist.mode() - self.shift) * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] from standardised latents."""
        return self._from_vae(self.vae.decode(z / self.scale + self.shift).sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


# --------------------------------------------------------------------------- training


def train_steps(model: nn.Module, batch_loss, x: torch.Tensor, *, steps: int, batch_size: int, lr: float, seed: int,
                desc: str) -> list[float]:
    """Adam with a cosine-decayed rate on batch_loss(batch, generator) for `steps` mini-batches of x drawn with
    replacement (seeded); returns the losses. The training loop of the AutoencoderKL and the latent denoiser.
    Model and batches are channels-last (NHWC) while it trains, the fast layout for CPU convolutions."""
    gen = torch.Generator().manual_seed(seed)
    device = module_device(channels_last(model))
    opt = adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    model.train()
    history = []
    for _ in progress(range(steps), desc=desc, leave=False):
        batch = x[torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)]
        loss = batch_loss(channels_last(batch.to(device)), gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
    # back to contiguous weights: a freshly trained model then computes bit for bit as one loaded from the cache
    model.to(memory_format=torch.contiguous_format).eval()
    return history


def train_autoencoder_kl(vae: nn.Module, x: torch.Tensor, cfg: KLConfig) -> list[float]:
    """L1 reconstruction + kl_weight * KL (per pixel) on images x in [0, 1], cfg.steps mini-batches.

    Stable Diffusion's VAE adds a perceptual (LPIPS) and an adversarial loss; at 28 px L1 alone gives sharp
    enough reconstructions, and a small KL weight keeps the latents near N(0, I) without blurring them.
    """

    def loss(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batch = 2 * batch - 1
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        return F.l1_loss(recon, batch) + cfg.kl_weight * posterior.kl().mean() / batch[0].numel()

    return train_steps(vae, loss, x, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                       desc="AutoencoderKL")


@torch.no_grad()
def standardise(codec: LatentCodec, x: torch.Tensor, batch_size: int = 512) -> LatentCodec:
    """Set the codec's shift and scale so that the latents of x have mean 0 and standard deviation 1."""
    codec.scale.fill_(1.0)
    codec.shift.fill_(0.0)
    z = encode_images(codec, x, batch_size)
    codec.shift.fill_(float(z.mean()))
    codec.scale.fill_(float(1 / z.std()))
    return codec


def fit_latent_codec(x: torch.Tensor, cfg: KLConfig,
                     device: str | torch.device = "auto") -> LatentCodec:
    """The codec of cfg: loaded with from_pretrained (cfg.pretrained), else trained on images x, or cached."""
    in_channels, image_size = x.shape[1], x.shape[-1]
    if cfg.pretrained is not None:
        codec = load_pretrained(cfg.pretrained, cfg.subfolder, in_channels, image_size, cfg.image_size)
        return codec.to(get_device(device))

    def build() -> LatentCodec:
        return LatentCodec(build_autoencoder_kl(cfg, in_channels, image_size), in_channels, image_size)

    def train(codec: LatentCodec) -> None:
        train_autoencoder_kl(codec.vae, x, cfg)
        standardise(codec, x)

    return train_or_load("autoencoder-kl", {"version": 2, **asdict(cfg)}, build, train, data=(x,), device=device)


def load_pretrained(name: str, subfolder: str | None = None, in_channels: int = 1, image_size: int = 28,
                    resize_to: int | None = None) -> LatentCodec:
    """A LatentCodec around AutoencoderKL.from_pretrained(name, subfolder) (a hub id needs internet)."""
    from diffusers import AutoencoderKL

    kwargs = {"subfolder": subfolder} if subfolder else {}
    vae = AutoencoderKL.from_pretrained(name, low_cpu_mem_usage=False, **kwargs)  # no `accelerate` needed
    return LatentCodec(vae, in_channels, image_size, resize_to).eval()


# --------------------------------------------------------------------------- batched helpers


def encode_images(codec: LatentCodec, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Latents of many images, batched, in eval mode, on the CPU."""
    return batched(codec.eval().encode, x, batch_size)
