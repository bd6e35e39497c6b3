"""Convolutional autoencoder and VAE for 28px images: the generative models whose latent space we search.

Used by TSynD (notebook 02: gradient ascent on the code z through the frozen decoder), by latent-space query
selection (notebook 03: latent size 2) and by VAE augmentation. One interface for both kinds:
  encode(x) -> z           (the VAE returns its mean: deterministic codes for search and selection)
  decode(z) -> x_hat       (in [0, 1], a sigmoid output, so it plugs straight into a classifier)
  forward(x) -> x_hat      (AE) or (x_hat, mu, logvar) (VAE)
  loss(x) -> scalar        (AE: mean squared error; VAE: BCE + beta * KL, per image)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.cache import train_or_load
from latentlab.models.blocks import conv_trunk, deconv_trunk
from latentlab.utils import adam, batched, channels_last, module_device, progress


class _Decoder(nn.Module):
    """z -> image in [0, 1]: a dense layer to (2*width, s/4, s/4), then two transposed convs."""

    def __init__(self, latent_dim: int, out_channels: int, width: int, image_size: int):
        super().__init__()
        self.shape = (2 * width, image_size // 4, image_size // 4)
        self.fc = nn.Sequential(nn.Linear(latent_dim, 256), nn.ReLU(inplace=True),
                                nn.Linear(256, 2 * width * (image_size // 4) ** 2), nn.ReLU(inplace=True))
        self.net = deconv_trunk(2 * width, width, out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(self.fc(z).view(len(z), *self.shape)))


class ConvAutoencoder(nn.Module):
    """Deterministic autoencoder (f_enc, f_dec) with a latent vector of size latent_dim, MSE reconstruction loss."""

    variational = False

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, width: int = 32, image_size: int = 28):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two stride-2 stages); got {image_size}.")
        self.latent_dim, self.in_channels, self.image_size = latent_dim, in_channels, image_size
        flat = 2 * width * (image_size // 4) ** 2
        self.encoder = nn.Sequential(conv_trunk(in_channels, width), nn.Linear(flat, 256),
                                     nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, self._code_size()))
        self.decoder = _Decoder(latent_dim, in_channels, width, image_size)

    def _code_size(self) -> int:
        return self.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """z = f_enc(x), shape (N, latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x_hat = f_dec(z), shape (N, C, H, W) in [0, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor):
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared reconstruction error, summed over pixels and averaged over images."""
        return F.mse_loss(self(x), x, reduction="none").flatten(1).sum(1).mean()


class ConvVAE(ConvAutoencoder):
    """Variational autoencoder (Kingma & Welling 2014): Gaussian q(z|x), N(0, I) prior, Bernoulli-style BCE decoder."""

    variational = True

    def __init__(self, in_channels: int = 1, latent_dim: int = 16, width: int = 32, image_size: int = 28,
                 beta: float = 1.0):
        self.beta = beta
        super().__init__(in_channels, latent_dim, width, image_size)

    def _code_size(self) -> int:
        return 2 * self.latent_dim  # mean and log-variance

    def encode_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z|x)."""
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)  # clamped: exp(logvar) must not overflow early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: a deterministic code for latent search, selection and plots."""
        return self.encode_dist(x)[0]

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): a sample whose gradient flows to mu and logvar."""
        return mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.encode_dist(x)
        return self.decode(self.reparameterise(mu, logvar)), mu, logvar

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images decoded from prior draws z ~ N(0, I)."""
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.latent_dim, generator=generator).to(device))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per image: BCE reconstruction (summed over pixels) + beta * KL(q(z|x) || N(0, I))."""
        x_hat, mu, logvar = self(x)
        bce = F.binary_cross_entropy(x_hat, x, reduction="none").flatten(1).sum(1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
        return (bce + self.beta * kl).mean()


# --------------------------------------------------------------------------- training


@dataclass
class AEConfig:
    """Everything that changes a trained autoencoder (the cache key is built from it)."""

    kind: str = "ae"            # 'ae' or 'vae'
    latent_dim: int = 16
    width: int = 32
    epochs: int = 20
    batch_size: int = 128
    lr: float = 2e-3
    beta: float = 1.0           # VAE only
    seed: int = 0
    warmup: int = 0             # updates over which the rate ramps linearly up to lr (0: none)


def cache_key(cfg: AEConfig, version: int) -> dict:
    """The cache key of a config: every field, `warmup` only when it is set (so the models of configs without one
    keep the keys they were trained under)."""
    key = {"version": version, **asdict(cfg)}
    if not key["warmup"]:
        del key["warmup"]
    return key


def build_autoencoder(cfg: AEConfig, in_channels: int = 1, image_size: int = 28) -> ConvAutoencoder:
    """An untrained ConvAutoencoder or ConvVAE from a config."""
    if cfg.kind == "ae":
        return ConvAutoencoder(in_channels, cfg.latent_dim, cfg.width, image_size)
    if cfg.kind == "vae":
        return ConvVAE(in_channels, cfg.latent_dim, cfg.width, image_size, beta=cfg.beta)
    raise ValueError(f"Unknown autoencoder kind {cfg.kind!r}. Choose 'ae' or 'vae'.")


def train_autoencoder(model: ConvAutoencoder, x: torch.Tensor, cfg: AEConfig,
                      x_val: torch.Tensor | None = None) -> list[dict]:
    """Adam on model.loss over shuffled mini-batches of x; one history row per epoch (train loss, and the loss on
    x_val when given: the validation split monitors the fit, it never stops or selects it).

    The rate follows a cosine decay over the epochs; with cfg.warmup = W it is also multiplied by (u + 1) / W on the
    first W updates u = 0, 1, ... (a linear warm-up). Without it, a 2-D bottleneck at a high rate can die in its first
    updates: every ReLU of the decoder's first layer off, the output the mean image, the codes meaningless."""
    gen = torch.Generator().manual_seed(cfg.seed)
    device = module_device(channels_last(model))  # NHWC: the fast layout for CPU convolutions
    opt = adam(model.parameters(), lr=cfg.lr)
    # Cosine decay: a high rate early for speed, a low one late for sharp reconstructions.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    history, update = [], 0
    for epoch in progress(range(cfg.epochs), desc=f"{cfg.kind} training", leave=False):
        model.train()
        order, total = torch.randperm(len(x), generator=gen), 0.0
        for start in range(0, len(x), cfg.batch_size):
            batch = channels_last(x[order[start:start + cfg.batch_size]].to(device))
            loss = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            _step(opt, (update + 1) / cfg.warmup if update < cfg.warmup else 1.0)
            update += 1
            total += loss.item() * len(batch)
        sched.step()
        history.append({"epoch": epoch, "train_loss": total / len(x)} | (
            {"val_loss": validation_loss(model, x_val)} if x_val is not None else {}))
    model.eval()
    return history


def _step(opt: torch.optim.Optimizer, factor: float) -> None:
    """opt.step() at factor x the scheduled rate (the schedule itself is left as it was)."""
    if factor == 1.0:
        opt.step()
        return
    rates = [group["lr"] for group in opt.param_groups]
    for group, lr in zip(opt.param_groups, rates, strict=True):
        group["lr"] = lr * factor
    opt.step()
    for group, lr in zip(opt.param_groups, rates, strict=True):
        group["lr"] = lr


@torch.no_grad()
def validation_loss(model: ConvAutoencoder, x: torch.Tensor, batch_size: int = 1024) -> float:
    """model.loss averaged over the images of x, in eval mode (a VAE still samples z: its loss is an ELBO)."""
    model.eval()
    device = module_device(model)
    total = sum(model.loss(x[i:i + batch_size].to(device)).item() * len(x[i:i + batch_size])
                for i in range(0, len(x), batch_size))
    return total / len(x)


def epochs_for(steps: int, n_images: int, batch_size: int = 128) -> int:
    """Epochs that give about `steps` updates on n_images (at least one): a budget in updates, whatever the size."""
    return max(1, math.ceil(steps / math.ceil(n_images / batch_size)))


def fit_autoencoder(x: torch.Tensor, cfg: AEConfig, device: str | torch.device = "auto",
                    x_val: torch.Tensor | None = None) -> ConvAutoencoder:
    """Train an AE/VAE on images x, or load it from the cache (key: cfg and the images it saw).

    With x_val, the loss on x_val after each epoch is kept in the buffer `model.val_curve` (cached with the weights,
    so a cache hit shows it too; NaN without x_val).
    """

    def build() -> ConvAutoencoder:
        model = build_autoencoder(cfg, x.shape[1], x.shape[-1])
        model.register_buffer("val_curve", torch.full((cfg.epochs,), float("nan")))
        return model

    def train(model: ConvAutoencoder) -> None:
        history = train_autoencoder(model, x, cfg, x_val)
        model.val_curve.copy_(torch.tensor([r.get("val_loss", float("nan")) for r in history]))

    data = (x,) if x_val is None else (x, x_val)
    return train_or_load(f"autoencoder-{cfg.kind}", cache_key(cfg, 3), build, train, data=data,
                         device=device)


def encode_all(model: ConvAutoencoder, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Codes of many images, batched, in eval mode, on the CPU."""
    model.eval()
    return batched(model.encode, x, batch_size)


def reconstruct(model: ConvAutoencoder, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """f_dec(f_enc(x)) for many images (the VAE decodes its posterior mean: no sampling noise)."""
    model.eval()
    return batched(lambda b: model.decode(model.encode(b)), x, batch_size, device=module_device(model))


def decode_all(model: ConvAutoencoder, z: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """f_dec(z) for many codes, batched, in eval mode, on the CPU."""
    model.eval()
    return batched(model.decode, z, batch_size)
