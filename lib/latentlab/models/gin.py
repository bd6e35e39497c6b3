"""GIN, the generative invertible network of AISEL (Chen et al., TPAMI 2021): a WGAN generator plus its inverse.

Two stages, in the paper's order:
  (i)  a generator G: [-1, 1]^r -> images, trained as a Wasserstein GAN (eq. 3), here with a gradient penalty;
  (ii) an encoder E: images -> [-1, 1]^r, trained on synthetic pairs only (eq. 5): min_E E_u ||E(G(u)) - u||^2.
E then embeds the real images into the latent space where AISEL selects new points (eq. 10).
  (iii) our change to how eq. 5 is used (a standard hybrid GAN inversion): E(x) is only the starting point; `invert`
       refines it per image by gradient descent on ||G(f) - x||^2 over f in [-1, 1]^r (`invert_steps`). A small
       encoder trained on synthetic pairs alone misplaces real images (the reconstructions were no better than the
       mean image); the refined f are where G actually draws each real image.
Small DCGAN-style networks at 28px, so the whole thing trains on a laptop CPU in about a minute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.cache import train_or_load
from latentlab.models.blocks import conv_trunk, deconv_trunk  # critic trunk batch-norm free (gradient penalty)
from latentlab.repro import get_device
from latentlab.utils import adam, batched, channels_last, progress


@dataclass
class GINConfig:
    """Everything that changes the trained GIN (the cache key is built from it)."""

    latent_dim: int = 8          # r, the dimension of the feature space F = [-1, 1]^r
    width: int = 16              # channels of the first conv layer; the second has twice as many
    gan_steps: int = 1000        # generator updates of eq. 3
    n_critic: int = 2            # critic updates per generator update (WGAN-GP uses 5; 2 halves the CPU time)
    gp_weight: float = 10.0      # lambda of the gradient penalty
    encoder_steps: int = 300     # updates of eq. 5
    batch_size: int = 64
    lr: float = 1e-3             # converged visibly faster than 2e-4 / 5e-4 within 1000 CPU steps on MNIST
    seed: int = 0
    invert_steps: int = 0        # (iii) per-image latent optimisation after E (0: E(x) alone, the paper's use)
    invert_lr: float = 0.1       # Adam step of (iii) on the unconstrained w, f = tanh(w)

    def key(self) -> dict:
        """The fields that change the trained networks: (iii) happens after training, so it is not in the key."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("invert_")}


# --------------------------------------------------------------------------- networks


class Generator(nn.Module):
    """G: f in [-1, 1]^r -> image in [0, 1], DCGAN-style (dense to 7x7, two transposed convs to 28x28)."""

    def __init__(self, latent_dim: int, channels: int = 1, width: int = 32):
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, 4 * width * 7 * 7, bias=False),
                                nn.BatchNorm1d(4 * width * 7 * 7), nn.ReLU(inplace=True))
        self.net = deconv_trunk(4 * width, 2 * width, channels, batchnorm=True)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(self.fc(f).view(len(f), 4 * self.width, 7, 7)))


class Critic(nn.Module):
    """D of eq. 3: an unbounded score (a 1-Lipschitz function in the WGAN view), no sigmoid."""

    def __init__(self, channels: int = 1, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(conv_trunk(channels, width), nn.Linear(2 * width * 7 * 7, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class Encoder(nn.Module):
    """E of eq. 5: image -> feature in [-1, 1]^r (tanh keeps it inside the box G was trained on)."""

    def __init__(self, latent_dim: int, channels: int = 1, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(conv_trunk(channels, width), nn.Linear(2 * width * 7 * 7, 256),
                                 nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, latent_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GIN(nn.Module):
    """Generator, critic and encoder together, so one state_dict caches the whole trained GIN."""

    def __init__(self, latent_dim: int = 8, channels: int = 1, width: int = 16, invert_steps: int = 0,
                 invert_lr: float = 0.1):
        super().__init__()
        self.latent_dim = latent_dim
        self.invert_steps, self.invert_lr = invert_steps, invert_lr
        self.generator = Generator(latent_dim, channels, width)
        self.critic = Critic(channels, width)
        self.encoder = Encoder(latent_dim, channels, width)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n features drawn uniformly from F = [-1, 1]^r (the paper's U)."""
        return torch.rand(n, self.latent_dim, generator=generator) * 2 - 1

    @torch.no_grad()
    def generate(self, f: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """G(f) in eval mode: with batch-norm in train mode an image would depend on the rest of its batch."""
        was_training = self.generator.training
        self.generator.eval()
        out = batched(self.generator, f, batch_size)
        self.generator.train(was_training)
        return out

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """E(x): the features of images x."""
        self.encoder.eval()
        return batched(self.encoder, x, batch_size)

    def invert(self, x: torch.Tensor, steps: int | None = None, batch_size: int = 1000) -> torch.Tensor:
        """(iii) The latent feature of each real image: E(x), refined by `steps` (default self.invert_steps) Adam
        steps on the per-image error ||G(f) - x||^2 with f = tanh(w), so f stays in [-1, 1]^r. G is frozen, in eval
        mode, and each image's loss is its own (summed over the batch), so the result does not depend on the batch."""
        steps = self.invert_steps if steps is None else steps
        f = self.encode(x)
        if steps == 0:
            return f
        G = self.generator
        was_training, grads = G.training, [p.requires_grad for p in G.parameters()]
        G.eval().requires_grad_(False)
        out = []
        for xb, fb in zip(x.split(batch_size), f.split(batch_size)):
            xb = xb.to(fb.device)
            w = torch.atanh(fb.clamp(-0.995, 0.995)).requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.invert_lr)
            for _ in range(steps):
                loss = ((G(torch.tanh(w)) - xb) ** 2).flatten(1).mean(1).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            out.append(torch.tanh(w).detach())
        for p, g in zip(G.parameters(), grads):
            p.requires_grad_(g)
        G.train(was_training)
        return torch.cat(out)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """G(f(x)) with f(x) = `invert(x)` (E(x) when invert_steps is 0): how well the GIN re-creates real images
        (Theorem 1 bounds this error for G(E(x)))."""
        return self.generate(self.invert(x))


# --------------------------------------------------------------------------- stage (i): eq. 3, WGAN-GP


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Gulrajani et al. 2017: push ||grad D|| to 1 on random interpolates (a soft 1-Lipschitz constraint)."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device)
    mix = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def train_generator(gin: GIN, x: torch.Tensor, cfg: GINConfig) -> list[dict]:
    """Eq. 3: min_G max_D E_x[D(x)] - E_u[D(G(u))], the critic kept (softly) 1-Lipschitz by a gradient penalty."""
    G, D = gin.generator, gin.critic
    # Adam with beta1 = 0.5 / 0.9 as in the WGAN-GP paper: momentum makes the min-max game oscillate.
    opt_g = adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    device = next(gin.parameters()).device
    channels_last(G), channels_last(D)  # NHWC: the fast layout for CPU convolutions (`make bench-train`)
    G.train()
    history = []
    for step in progress(range(cfg.gan_steps), desc="GIN eq. 3 (WGAN-GP)", leave=False):
        for _ in range(cfg.n_critic):  # the critic must be near its max before each generator step
            real = channels_last(x[torch.randint(len(x), (cfg.batch_size,))].to(device))
            with torch.no_grad():
                fake = G(gin.sample_latent(cfg.batch_size).to(device))
            wasserstein = D(real).mean() - D(fake).mean()
            loss_d = -wasserstein + cfg.gp_weight * gradient_penalty(D, real, fake)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        loss_g = -D(G(gin.sample_latent(cfg.batch_size).to(device))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if step % 100 == 0 or step == cfg.gan_steps - 1:
            history.append({"step": step, "wasserstein": wasserstein.item(), "loss_g": loss_g.item()})
    G.eval()
    return history


# --------------------------------------------------------------------------- stage (ii): eq. 5, the encoder


def train_encoder(gin: GIN, cfg: GINConfig) -> list[dict]:
    """Eq. 5: min_E E_u ||E(G(u)) - u||^2 on synthetic pairs only; the true feature of a real image is unknown."""
    E = gin.encoder
    device = next(E.parameters()).device
    opt = adam(E.parameters(), lr=cfg.lr * 5)
    channels_last(E)
    E.train()
    history = []
    for step in progress(range(cfg.encoder_steps), desc="GIN eq. 5 (encoder)", leave=False):
        u = gin.sample_latent(2 * cfg.batch_size)
        x = gin.generate(u)  # G frozen, eval mode: the same G(u) the selection step will decode
        loss = ((E(channels_last(x.to(device))) - u.to(device)) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == cfg.encoder_steps - 1:
            history.append({"step": step, "loss_e": loss.item()})
    E.eval()
    return history


def fit_gin(x: torch.Tensor, cfg: GINConfig, device: str | torch.device = "auto") -> GIN:
    """Train G (eq. 3) then E (eq. 5) on images x, or load them from the cache (key: cfg and the images).
    The model comes back in eval mode and channels-last memory format."""

    def train(gin: GIN) -> None:
        torch.manual_seed(cfg.seed)
        gin.to(get_device(device))
        train_generator(gin, x, cfg)
        train_encoder(gin, cfg)

    build = lambda: GIN(cfg.latent_dim, x.shape[1], cfg.width, cfg.invert_steps, cfg.invert_lr)
    # Channels-last whether trained now or loaded (a loaded state_dict is contiguous): both then compute with the
    # same kernels, so a cache hit gives bitwise the numbers of the fresh training.
    return channels_last(train_or_load("gin", {"version": 3, **cfg.key()}, build, train, data=(x,), device=device))


def reconstruction_error(gin: GIN, x: torch.Tensor) -> float:
    """Mean squared pixel error of G(E(x)) against x (the quantity Theorem 1 bounds)."""
    return float(((gin.reconstruct(x) - x) ** 2).mean())


def inversion_errors(gin: GIN, x: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Theorem 1's pieces, measured on len(x) real images and as many synthetic ones G(u), u ~ U (seeded):

    real_recon_mse: mean squared pixel error of G(f(x)) on real images, f = `invert` (E(x) refined when
    gin.invert_steps > 0: what the selection step uses);
    encoder_recon_mse: the same with E(x) alone, the quantity the theorem bounds (equal when invert_steps is 0);
    synthetic_recon_mse: the same on G's own images, where only the encoder can err (eq. 5's share);
    latent_mse: eq. 5's loss E_u ||E(G(u)) - u||^2 itself.
    What the real error adds to the synthetic one comes from real images G cannot draw (eq. 3's share).
    """
    u = gin.sample_latent(len(x), generator=torch.Generator().manual_seed(seed))
    fake = gin.generate(u)
    return {"real_recon_mse": reconstruction_error(gin, x),
            "encoder_recon_mse": float(((gin.generate(gin.encode(x)) - x) ** 2).mean()),
            "synthetic_recon_mse": reconstruction_error(gin, fake),
            "latent_mse": float(((gin.encode(fake) - u) ** 2).sum(1).mean())}
