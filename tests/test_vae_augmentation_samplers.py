"""VAE augmentation samplers: noise, interpolation, extrapolation of codes and pixels; affine baseline; validity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentlab.models.autoencoder import ConvVAE
from latentlab.oracle import Oracle
from latentlab.samplers.vae_augmentation import (
    add_noise,
    affine_augment,
    augment_codes,
    augment_images,
    augment_latent,
    code_spread,
    extrapolate,
    interpolate,
    same_class_neighbours,
)


def _codes(n: int = 40, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.arange(n) % classes


def _brute_neighbours(z: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """k nearest same-class rows by an explicit distance matrix (other classes and the point itself at infinity)."""
    d = torch.cdist(z.double(), z.double())
    d[y[:, None] != y[None, :]] = float("inf")
    d.fill_diagonal_(float("inf"))
    return d.argsort(1)[:, :k]


def test_interpolation_endpoints_and_extrapolation_distance():
    z, y = _codes()
    k = torch.from_numpy(same_class_neighbours(z, y, 1))[:, 0]
    assert torch.equal(augment_codes(z, y, "interpolation", 0.0, 1)[0], z)
    assert torch.allclose(augment_codes(z, y, "interpolation", 1.0, 1)[0], z[k])
    assert torch.allclose(interpolate(z, z[k], 0.3), 0.7 * z + 0.3 * z[k])
    lam = 0.4
    out = augment_codes(z, y, "extrapolation", lam, 1)[0]
    gap = (z - z[k]).norm(dim=1)
    # Away from the neighbour along the line through it: the distance to z_k grows by exactly lambda * ||z_j - z_k||.
    assert torch.allclose((out - z[k]).norm(dim=1), (1 + lam) * gap, atol=1e-5)
    assert torch.allclose((out - z).norm(dim=1), lam * gap, atol=1e-5)
    assert torch.allclose(extrapolate(z, z[k], lam), z + lam * (z - z[k]))


def test_neighbours_are_same_class_and_truly_nearest():
    z, y = _codes(n=60, d=4, classes=4, seed=1)
    idx = torch.from_numpy(same_class_neighbours(z, y, 3))
    assert (y[idx] == y[:, None]).all()
    assert (idx != torch.arange(len(z))[:, None]).all()
    assert torch.equal(idx, _brute_neighbours(z, y, 3))


def test_copies_use_successive_neighbours_and_keep_labels():
    z, y = _codes()
    new, labels, source = augment_codes(z, y, "interpolation", 1.0, 3)
    nb = _brute_neighbours(z, y, 3)
    assert new.shape == (3 * len(z), z.shape[1]) and torch.equal(labels, y[source])
    for m in range(3):  # copy m of every image (rows m*N..) lands on its (m+1)-th nearest neighbour
        assert torch.allclose(new[m * len(z):(m + 1) * len(z)], z[nb[:, m]])


def test_noise_identity_at_zero_and_spread_scales_with_gamma_sigma():
    z, y = _codes()
    assert torch.equal(augment_codes(z, y, "noise", 0.0, 2)[0], z.repeat(2, 1))
    sigma = torch.tensor([0.1, 1.0, 3.0])
    base = torch.zeros(20000, 3)
    for gamma in (0.5, 2.0):
        drawn = add_noise(base, gamma, sigma, torch.Generator().manual_seed(0))
        assert torch.allclose(drawn.std(0), gamma * sigma, rtol=0.03)
        assert drawn.mean(0).abs().max() < 0.05 * gamma * 3
    assert torch.allclose(code_spread(z), z.std(0))


def test_seeds_repeat_and_differ():
    z, y = _codes()
    a = augment_codes(z, y, "noise", 0.5, 2, seed=3)[0]
    assert torch.equal(a, augment_codes(z, y, "noise", 0.5, 2, seed=3)[0])
    assert not torch.allclose(a, augment_codes(z, y, "noise", 0.5, 2, seed=4)[0])
    x = torch.rand(6, 1, 28, 28)
    b = affine_augment(x, torch.zeros(6, dtype=torch.long), 2, seed=1)[0]
    state = torch.get_rng_state()
    assert torch.equal(b, affine_augment(x, torch.zeros(6, dtype=torch.long), 2, seed=1)[0])
    assert torch.equal(state, torch.get_rng_state())  # the global stream is left as it was
    assert not torch.allclose(b, affine_augment(x, torch.zeros(6, dtype=torch.long), 2, seed=2)[0])


def test_image_space_matches_the_formulas_on_pixels():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 1, 28, 28, generator=g), torch.arange(30) % 3
    flat = x.flatten(1)
    k = _brute_neighbours(flat, y, 1)[:, 0]
    inter = augment_images(x, y, "interpolation", 0.5, 1)[0]
    assert torch.allclose(inter, (0.5 * (x[k] - x) + x).clamp(0, 1))
    extra = augment_images(x, y, "extrapolation", 0.5, 1)[0]
    assert torch.allclose(extra, (0.5 * (x - x[k]) + x).clamp(0, 1))
    noise = augment_images(x, y, "noise", 0.5, 1, seed=7)[0]
    eps = torch.randn(flat.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(noise, (flat + 0.5 * flat.std(0) * eps).clamp(0, 1).view_as(x))
    assert extra.min() >= 0 and extra.max() <= 1 and (extra == 1).any()  # the clip acts


def test_latent_augmentation_decodes_to_images_in_range():
    torch.manual_seed(0)
    vae = ConvVAE(latent_dim=4, width=8).eval()
    x, y = torch.rand(12, 1, 28, 28), torch.arange(12) % 3
    for op in ("noise", "interpolation", "extrapolation"):
        out, labels, source = augment_latent(vae, x, y, op, 0.5, 2, batch_size=5)
        assert out.shape == (24, 1, 28, 28) and torch.equal(labels, y[source])
        assert out.min() >= 0 and out.max() <= 1
    with torch.no_grad():  # lambda = 0 gives the decoded posterior means: plain reconstructions
        recon = vae.decode(vae.encode(x))
    assert torch.allclose(augment_latent(vae, x, y, "interpolation", 0.0, 1)[0], recon, atol=1e-6)


def test_affine_baseline_shapes_labels_and_identity():
    x, y = torch.rand(5, 1, 28, 28), torch.tensor([0, 1, 0, 1, 2])
    out, labels, source = affine_augment(x, y, 3, seed=0)
    assert out.shape == (15, 1, 28, 28) and torch.equal(labels, y[source]) and torch.equal(source[:5], torch.arange(5))
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out[:5], x)
    same = affine_augment(x, y, 1, degrees=0, translate=0, scale=(1, 1))[0]
    assert torch.allclose(same, x, atol=1e-6)


class _ThresholdOracle(nn.Module):
    """Label 1 when the mean pixel is above 0.5."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True) - 0.5 + 0 * self.w
        return torch.cat([-m, m], 1)


def test_label_validity_of_synthetic_images_against_a_count():
    """The validity check the notebook reports: the oracle's agreement with the source labels of synthetic images."""
    oracle = Oracle("toy", _ThresholdOracle(), 1.0, 1.0, 0.5, "binary-class")
    x = torch.rand(20, 1, 4, 4)
    y = (x.flatten(1).mean(1) > 0.5).long()
    syn, y_syn, _ = augment_images(x, y, "noise", 3.0, 2, seed=0)  # strong noise: some labels flip
    truth = (syn.flatten(1).mean(1) > 0.5).long()
    assert oracle.agreement(syn, y_syn) == pytest.approx(float((truth == y_syn).float().mean()))
    assert oracle.agreement(x, y) == 1.0


@pytest.mark.parametrize("call, match", [
    (lambda z, y: augment_codes(z, y, "rotate", 0.5, 1), "Unknown operation"),
    (lambda z, y: augment_codes(z, y, "noise", -0.1, 1), ">= 0"),
    (lambda z, y: augment_codes(z, y, "noise", 0.5, 0), "n_per_image"),
    (lambda z, y: augment_codes(z, y[:5], "noise", 0.5, 1), "shapes"),
    (lambda z, y: same_class_neighbours(z[:4], torch.tensor([0, 0, 0, 1]), 1), "Class 1 has 1 image"),
    (lambda z, y: augment_codes(z, y, "interpolation", 0.5, 14), "n_per_image <= 13"),
    (lambda z, y: add_noise(z, 0.5, torch.ones(3)), "one entry per code dimension"),
    (lambda z, y: augment_images(z, y, "noise", 0.5, 1), "images"),
])
def test_clear_errors(call, match):
    z, y = _codes()  # 40 codes in 3 classes: 13 or 14 per class
    with pytest.raises(ValueError, match=match):
        call(z, y)
