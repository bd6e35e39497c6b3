"""Training throughput on one thread: the library's loops (channels-last) against the same loops on plain
contiguous tensors. `make bench-train` runs it; the last line is `train_speedup=<ratio>` (total plain time over total
library time, so every workload counts by how long it takes). Under two minutes on one core.

Workloads: SmallCNN of width 8 and 16 through `train.fit` (batch 128, 28 px, 10-class), the GIN's WGAN-GP steps
(`models.gin.train_generator`) and encoder steps (`train_encoder`), and the conv autoencoder's epochs
(`models.autoencoder.train_autoencoder`). "plain" swaps `utils.channels_last` for the identity in every module that
uses it, `utils.adam` for torch's default Adam (a per-parameter loop on the CPU) and `blocks.ImageConvTranspose2d`'s
kernel for nn.ConvTranspose2d's: the plain run is the eager loop a user would write, the library's differs from it in
memory layout, the optimiser's fused update and the image layer's kernel alone.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from torch import nn

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab import train, utils
from latentlab.models import SmallCNN, autoencoder, blocks, gin

MODULES = (train, utils, gin, autoencoder)
REPEATS = 5


@contextlib.contextmanager
def plain_layout():
    """Every loop on contiguous (NCHW) tensors with torch's default Adam and torch's transposed-conv kernel:
    channels_last becomes the identity, ImageConvTranspose2d an nn.ConvTranspose2d."""
    saved = [(m, name, getattr(m, name)) for m in MODULES for name in ("channels_last", "adam") if hasattr(m, name)]
    saved.append((blocks.ImageConvTranspose2d, "forward", blocks.ImageConvTranspose2d.forward))
    for m, name, _ in saved:
        setattr(m, name, {"channels_last": lambda obj: obj, "adam": torch.optim.Adam,
                          "forward": nn.ConvTranspose2d.forward}[name])
    try:
        yield
    finally:
        for m, name, fn in saved:
            setattr(m, name, fn)


def _images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def cnn(width: int, batches: int = 12):
    x, y = _images(128 * batches)

    def run():
        torch.manual_seed(0)
        train.fit(SmallCNN(1, 10, width=width), (x, y), None, task="multi-class", epochs=1, batch_size=128)
    return run


def gin_steps(steps: int = 12):
    x, _ = _images(512)
    cfg = gin.GINConfig(latent_dim=8, width=16, gan_steps=steps, n_critic=2, encoder_steps=steps, batch_size=64)

    def run():
        torch.manual_seed(0)
        model = gin.GIN(cfg.latent_dim, 1, cfg.width)
        gin.train_generator(model, x, cfg)
        gin.train_encoder(model, cfg)
    return run


def autoencoder_epochs(images: int = 1536):
    x, _ = _images(images)
    cfg = autoencoder.AEConfig(kind="ae", latent_dim=16, width=32, epochs=1, batch_size=128)

    def run():
        torch.manual_seed(0)
        autoencoder.train_autoencoder(autoencoder.build_autoencoder(cfg), x, cfg)
    return run


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_seconds(fn) -> tuple[float, float]:
    """Median wall times of REPEATS plain and REPEATS library runs, taken in turn (plain, library, plain, ...) after
    a warm-up of each, so a machine whose speed drifts slows both alike."""
    plain, library = [], []
    for i in range(REPEATS + 1):
        with plain_layout():
            p = _time(fn)
        q = _time(fn)
        if i:  # the first pair warms up
            plain.append(p)
            library.append(q)
    return statistics.median(plain), statistics.median(library)


def main() -> None:
    torch.set_num_threads(1)
    workloads = {"SmallCNN width 8": cnn(8), "SmallCNN width 16": cnn(16), "GIN (eq. 3 + eq. 5 steps)": gin_steps(),
                 "conv autoencoder": autoencoder_epochs()}
    total = {"plain": 0.0, "library": 0.0}
    print(f"{'workload':<28} {'plain s':>8} {'library s':>10} {'speedup':>8}   (1 thread, median of {REPEATS} pairs)")
    for name, fn in workloads.items():
        plain, library = paired_seconds(fn)
        total["plain"] += plain
        total["library"] += library
        print(f"{name:<28} {plain:8.3f} {library:10.3f} {plain / library:8.2f}x", flush=True)
    print(f"train_speedup={total['plain'] / total['library']:.2f}")


if __name__ == "__main__":
    main()
