"""GIN (AISEL): shapes, the box of the latent space, eval-mode sampling, and the encoder loss of eq. 5 going down."""

import torch

import latentlab  # noqa: F401  (torchvision shim first)
from latentlab.models.gin import GIN, GINConfig, train_encoder, train_generator


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
