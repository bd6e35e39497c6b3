"""The autoencoders' training schedule: cosine decay over epochs, and the linear warm-up of `AEConfig.warmup`."""

from __future__ import annotations

import math

import pytest
import torch

from latentlab.models.autoencoder import AEConfig, build_autoencoder, cache_key, train_autoencoder


def _rates(monkeypatch, cfg: AEConfig, n_images: int) -> list[float]:
    """The rate of every update a training run of cfg makes on n_images (read inside Adam's step)."""
    seen, step = [], torch.optim.Adam.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    torch.manual_seed(0)
    train_autoencoder(build_autoencoder(cfg), torch.rand(n_images, 1, 28, 28), cfg)
    return seen


def test_the_rate_is_the_cosine_of_the_epoch_times_the_warm_up_share(monkeypatch):
    cfg = AEConfig(kind="ae", latent_dim=2, width=4, epochs=3, batch_size=4, lr=0.01, warmup=5)
    seen = _rates(monkeypatch, cfg, 12)  # 3 updates per epoch, 9 in all
    cosine = [0.01 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3) for _ in range(3)]
    warm = [min(1.0, (u + 1) / 5) for u in range(9)]
    assert seen == pytest.approx([c * w for c, w in zip(cosine, warm, strict=True)])
    # without warm-up: the cosine alone (the schedule the models of notebooks 01-05 were trained with)
    assert _rates(monkeypatch, AEConfig(kind="ae", latent_dim=2, width=4, epochs=3, batch_size=4, lr=0.01),
                  12) == pytest.approx(cosine)


def test_a_warm_up_changes_the_cache_key_and_none_keeps_the_old_one():
    plain = AEConfig(kind="vae", latent_dim=2)
    assert cache_key(plain, 3) == {"version": 3, **{k: v for k, v in vars(plain).items() if k != "warmup"}}
    warm = cache_key(AEConfig(kind="vae", latent_dim=2, warmup=100), 3)
    assert warm["warmup"] == 100 and warm != cache_key(plain, 3)


def test_a_warm_up_leaves_the_schedule_as_it_was(monkeypatch):
    """The warm-up scales its own updates' rates only: the cosine schedule after it is the one without warm-up."""
    cfg = AEConfig(kind="ae", latent_dim=2, width=4, epochs=2, batch_size=4, lr=0.01, warmup=3)
    assert _rates(monkeypatch, cfg, 8) == pytest.approx([0.01 / 3, 0.02 / 3, 0.005, 0.005])
