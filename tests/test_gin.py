"""GIN (AISEL): shapes, the box of the latent space, eval-mode sampling, the encoder loss of eq. 5 going down, the
pieces of Theorem 1's error, and a cache key that follows every config field and the training images."""

from dataclasses import fields, replace

import torch

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.models.gin import (
    GIN,
    GINConfig,
    fit_gin,
    inversion_errors,
    reconstruction_error,
    train_encoder,
    train_generator,
)


def test_shapes_and_ranges():
    gin = GIN(latent_dim=4, channels=1, width=4)
    f = gin.sample_latent(6)
    assert f.shape == (6, 4) and f.min() >= -1 and f.max() <= 1
    x = gin.generate(f)
    assert x.shape == (6, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert gin.critic(x).shape == (6,)
    e = gin.encode(x)
    assert e.shape == (6, 4) and e.abs().max() <= 1
    assert gin.reconstruct(x).shape == x.shape


def test_generate_is_eval_mode_and_batch_independent():
    torch.manual_seed(0)
    gin = GIN(latent_dim=4, width=4)
    gin.generator.train()
    gin.generator(gin.sample_latent(32))  # move the batch-norm running stats off their initial values
    f = gin.sample_latent(8)
    alone = torch.cat([gin.generate(f[i:i + 1]) for i in range(8)])
    assert torch.allclose(gin.generate(f), alone, atol=1e-6)  # an image must not depend on its batch
    assert gin.generator.training  # and the mode is restored


def test_generator_and_encoder_train_down_their_losses():
    torch.manual_seed(0)
    gin = GIN(latent_dim=2, width=4)
    x = torch.rand(64, 1, 28, 28) ** 4  # dark images with a few bright pixels
    cfg = GINConfig(latent_dim=2, width=4, gan_steps=3, n_critic=1, encoder_steps=150, batch_size=16, lr=1e-3)
    history = train_generator(gin, x, cfg)
    assert len(history) >= 1 and all(torch.isfinite(torch.tensor(h["wasserstein"])) for h in history)
    losses = train_encoder(gin, cfg)
    first, last = losses[0]["loss_e"], losses[-1]["loss_e"]
    assert last < 0.5 * first  # eq. 5: E learns to invert G on synthetic pairs


def test_inversion_errors_split_theorem_1s_error_into_its_pieces():
    torch.manual_seed(0)
    gin = GIN(latent_dim=2, width=4)
    x = torch.rand(10, 1, 28, 28)
    errors = inversion_errors(gin, x)
    assert set(errors) == {"real_recon_mse", "encoder_recon_mse", "synthetic_recon_mse", "latent_mse"}
    assert errors["real_recon_mse"] == reconstruction_error(gin, x)
    assert errors["encoder_recon_mse"] == errors["real_recon_mse"]  # no refinement: E(x) is f(x)
    assert all(v >= 0 for v in errors.values()) and inversion_errors(gin, x) == errors  # seeded draws of u
    gin.invert_steps = 20
    refined = inversion_errors(gin, x)
    assert refined["real_recon_mse"] < refined["encoder_recon_mse"] == errors["encoder_recon_mse"]  # (iii) helps


TINY = GINConfig(latent_dim=2, width=2, gan_steps=1, n_critic=1, gp_weight=10.0, encoder_steps=1, batch_size=4,
                 lr=1e-3, seed=0)


def test_the_cache_key_changes_with_every_config_field_and_with_the_images(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("LATENTLAB_PROGRESS", "0")
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fit_gin(x, TINY)
    fit_gin(x, TINY)  # a hit: no second file
    assert len(list(tmp_path.glob("gin-*.pt"))) == 1
    trained = [f for f in fields(GINConfig) if not f.name.startswith("invert_")]  # (iii) runs after training
    for n, f in enumerate(trained, start=2):
        value = getattr(TINY, f.name)
        fit_gin(x, replace(TINY, **{f.name: value * 2 if value else 1}))
        assert len(list(tmp_path.glob("gin-*.pt"))) == n, f"changing {f.name} did not change the key"
    other = x.clone()
    other[0, 0, 0, 0] += 0.5  # one pixel of the training images
    fit_gin(other, TINY)
    assert len(list(tmp_path.glob("gin-*.pt"))) == len(trained) + 2


def test_a_cache_hit_computes_bitwise_what_the_fresh_training_does(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setenv("LATENTLAB_PROGRESS", "0")
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    cfg = replace(TINY, width=4)  # 4 channels: channels-last and contiguous strides differ
    fresh, loaded = fit_gin(x, cfg), fit_gin(x, cfg)
    u = fresh.sample_latent(20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(fresh.encode(x), loaded.encode(x)) and torch.equal(fresh.generate(u), loaded.generate(u))


def test_invert_refines_the_encoders_estimate_stays_in_the_box_and_ignores_the_batch():
    torch.manual_seed(0)
    gin = GIN(latent_dim=4, width=4, invert_steps=30, invert_lr=0.1)
    gin.generator.train()
    gin.generator(gin.sample_latent(32))  # batch-norm statistics off their initial values
    gin.generator.eval()
    x = gin.generate(gin.sample_latent(6, generator=torch.Generator().manual_seed(1)))  # images G can draw
    err = lambda f: ((gin.generate(f) - x) ** 2).flatten(1).mean(1)  # noqa: E731
    f0, f = gin.invert(x, steps=0), gin.invert(x)
    assert torch.equal(f0, gin.encode(x))  # steps 0: E(x) alone, the paper's use
    assert (err(f) < err(f0)).all() and f.abs().max() <= 1
    assert torch.allclose(gin.invert(x, batch_size=2), f, atol=1e-5)  # each image's loss is its own
    assert all(p.requires_grad for p in gin.generator.parameters()) and not gin.generator.training
    assert torch.allclose(gin.reconstruct(x), gin.generate(f))


def test_the_refinement_is_not_part_of_the_trained_gins_cache_key():
    a, b = GINConfig(invert_steps=0), GINConfig(invert_steps=50, invert_lr=0.3)
    assert a.key() == b.key() and "invert_steps" not in a.key()
    assert GINConfig(gan_steps=5).key() != a.key()
