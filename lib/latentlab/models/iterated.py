"""Stage 1 of Elberg et al. (notebook 05): iterated learning of a sparse, class-separable code of the latents.

Three networks work on the autoencoder's latents z (C x h x w, here 4 x 7 x 7):

* the student encoder S maps z to a sparse code z^s = softmax_K(S(z)): at every spatial cell a distribution over
  K channels (the paper's sparsified embedding, SE; Figure 1's "sparse domain Z^s");
* the decoder D maps z^s back to the latent space, D(z^s) ~ z;
* the classifier C reads the class from z^s (its last convolution is where Stage 2 takes its CAMs).

Each generation has two phases (Figure 1, Stage 1; the official `1_train_iterated.py`):

1. interaction: train S, D and C together on  L = |D(z^s) - z|_1 + CE_w(C(z^s), y),  the reconstruction L1 plus a
   class-weighted cross-entropy (weights n / (K_classes * n_c), as the official `calculate_weight`); multi-hot
   labels (the paper's chest X-rays) take a binary cross-entropy with per-label positive weights instead;
2. imitation: freeze a copy of S as the teacher T, re-initialise S, and train it to imitate one-hot codes drawn
   cell by cell from the teacher's softmax, c ~ Cat(T(z)_{:, i, j}), minimising  -log S(z)_{c, i, j}.

The last generation stops after its interaction phase. Re-learning the code from samples of the previous one at
every generation is what iterated learning uses to favour simple, compositional (here: sparse) codes.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.cache import train_or_load
from latentlab.losses import balanced_weights, loss_fn
from latentlab.utils import channels_last


def _conv_stack(c_in: int, width: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with SiLU and a 1x1 projection; the spatial size is kept."""
    return nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.SiLU(),
                         nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, c_out, 1))


class SparseEncoder(nn.Module):
    """S: latents (N, C, h, w) -> sparse code (N, K, h, w), a softmax over the K channels at every cell."""

    def __init__(self, latent_channels: int, n_channels: int, width: int):
        super().__init__()
        self.net = _conv_stack(latent_channels, width, n_channels)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits(z).softmax(dim=1)


class CodeClassifier(nn.Module):
    """C: sparse code -> class logits. `features` is the last convolution's activation map (Stage 2's CAM layer)."""

    def __init__(self, n_channels: int, n_classes: int, width: int):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(n_channels, width, 3, padding=1), nn.SiLU(),
                                      nn.Conv2d(width, 2 * width, 3, padding=1), nn.SiLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_classes))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(s))


class IteratedModel(nn.Module):
    """Encoder S, decoder D and classifier C of Stage 1."""

    def __init__(self, latent_channels: int, n_classes: int, n_channels: int = 16, width: int = 32):
        super().__init__()
        self.encoder = SparseEncoder(latent_channels, n_channels, width)
        self.decoder = _conv_stack(n_channels, width, latent_channels)
        self.classifier = CodeClassifier(n_channels, n_classes, width)

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """z^s = softmax_K(S(z))."""
        return self.encoder(z)

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """D(z^s), back in the latent space."""
        return self.decoder(s)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.encode(z)
        return self.decode(s), self.classifier(s)


def reset_parameters(module: nn.Module) -> None:
    """Re-initialise every layer of module in place (the official `reset_weights`)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _adamw(params, cfg: ILConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def interaction_phase(model: IteratedModel, z: torch.Tensor, y: torch.Tensor, *, steps: int, batch_size: int,
                      optimizers: list[torch.optim.Optimizer], weight: torch.Tensor | None,
                      generator: torch.Generator) -> list[float]:
    """Train S, D, C on L1(D(z^s), z) + CE_w(C(z^s), y) for `steps` mini-batches; returns the losses.

    y: class labels (N,), or multi-hot labels (N, n_labels) (then a weighted binary cross-entropy). Model and
    batches are channels-last (NHWC), the fast layout for CPU convolutions.
    """
    task = "multi-label" if y.ndim == 2 else "multi-class"
    channels_last(model).train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(z), (min(batch_size, len(z)),), generator=generator)
        batch = channels_last(z[idx])
        recon, logits = model(batch)
        loss = F.l1_loss(recon, batch) + loss_fn(logits, y[idx], task, weight)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def imitation_phase(model: IteratedModel, z: torch.Tensor, *, steps: int, batch_size: int, lr: float,
                    weight_decay: float, generator: torch.Generator) -> list[float]:
    """Re-initialise the encoder and train it to imitate one-hot codes sampled from its previous self.

    Only the encoder changes: the decoder and classifier are left exactly as they were.
    """
    channels_last(model.encoder)
    teacher = copy.deepcopy(model.encoder).eval().requires_grad_(False)
    reset_parameters(model.encoder)
    opt = torch.optim.AdamW(model.encoder.parameters(), lr=lr, weight_decay=weight_decay)
    model.encoder.train()
    losses = []
    for _ in range(steps):
        batch = channels_last(z[torch.randint(len(z), (min(batch_size, len(z)),), generator=generator)])
        with torch.no_grad():
            probs = teacher(batch).permute(0, 2, 3, 1).reshape(-1, teacher.net[-1].out_channels)
            target = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # one channel per cell
        logits = model.encoder.logits(batch).permute(0, 2, 3, 1).reshape(len(target), -1)
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.encoder.eval()
    return losses


@dataclass
class ILConfig:
    """Everything that changes a Stage 1 model (the cache key is built from it)."""

    n_channels: int = 16          # K, channels of the sparse code (official: 64)
    width: int = 32
    generations: int = 3          # official run.sh: 20 (one epoch per phase)
    interaction_steps: int = 100
    imitation_steps: int = 50
    batch_size: int = 64
    lr: float = 2e-3              # official: 1e-4 for 20 generations of full epochs on a GPU
    weight_decay: float = 1e-2
    class_weighted: bool = True   # the official default ('weighted' suffix)
    seed: int = 0


def iterated_learning(model: IteratedModel, z: torch.Tensor, y: torch.Tensor, cfg: ILConfig) -> dict[str, list]:
    """cfg.generations rounds of interaction then imitation (none after the last); returns the loss histories."""
    gen = torch.Generator().manual_seed(cfg.seed)
    channels_last(model)  # before the optimisers see its parameters
    n_classes = model.classifier.head[-1].out_features
    weight = balanced_weights(y, n_classes) if cfg.class_weighted else None
    opt_rest = _adamw(list(model.decoder.parameters()) + list(model.classifier.parameters()), cfg)
    history: dict[str, list] = {"interaction": [], "imitation": []}
    for generation in range(cfg.generations):
        opt_encoder = _adamw(model.encoder.parameters(), cfg)  # fresh for every (re-initialised) student
        history["interaction"].append(interaction_phase(
            model, z, y, steps=cfg.interaction_steps, batch_size=cfg.batch_size,
            optimizers=[opt_encoder, opt_rest], weight=weight, generator=gen))
        if generation < cfg.generations - 1:
            history["imitation"].append(imitation_phase(
                model, z, steps=cfg.imitation_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                weight_decay=cfg.weight_decay, generator=gen))
    # back to contiguous weights: a freshly trained model then computes bit for bit as one loaded from the cache
    model.to(memory_format=torch.contiguous_format)
    return history


def fit_iterated(z: torch.Tensor, y: torch.Tensor, n_classes: int, cfg: ILConfig,
                 device: str | torch.device = "auto") -> IteratedModel:
    """Train a Stage 1 model on latents z with labels y, or load it from the cache."""
    if z.ndim != 4 or len(z) != len(y):
        raise ValueError(f"Expected latents (N, C, h, w) and N labels; got {tuple(z.shape)} and {tuple(y.shape)}.")
    if y.ndim == 2 and y.shape[1] != n_classes:
        raise ValueError(f"Multi-hot labels must have n_classes={n_classes} columns; got {tuple(y.shape)}.")

    build = lambda: IteratedModel(z.shape[1], n_classes, cfg.n_channels, cfg.width)
    train = lambda model: iterated_learning(model, z, y, cfg)
    config = {"version": 2, "n_classes": n_classes, **asdict(cfg)}
    return train_or_load("iterated-learning", config, build, train, data=(z, y), device=device)
