"""Notebook 05 pieces: AutoencoderKL codec, iterated learning, EigenCAM, CAM-guided fusion, refinement, Frechet."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from latentlab.frechet import classifier_features, frechet_distance, frechet_distance_features
from latentlab.models import SmallCNN, denoiser, iterated, latent_kl
from latentlab.models.denoiser import DenoiserConfig, LatentDenoiser, refine, train_denoiser
from latentlab.models.iterated import ILConfig, IteratedModel, imitation_phase, iterated_learning
from latentlab.models.iterated import interaction_phase as interact
from latentlab.models.latent_kl import KLConfig, LatentCodec, build_autoencoder_kl, fit_latent_codec, load_pretrained
from latentlab.models.latent_kl import encode_images as encode
from latentlab.samplers import cam_fusion as cf
from latentlab.utils import batched

SMALL_KL = KLConfig(block_channels=(4, 8, 8), norm_groups=4, steps=2, batch_size=8)


def _model(seed: int = 0, n_classes: int = 3) -> IteratedModel:
    torch.manual_seed(seed)
    return IteratedModel(latent_channels=4, n_classes=n_classes, n_channels=6, width=8).eval()


def _latents(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 7, 7, generator=g), torch.arange(n) % 3


# --------------------------------------------------------------------------- AutoencoderKL


def test_autoencoder_kl_gives_a_4x7x7_latent_and_images_in_unit_range():
    codec = LatentCodec(build_autoencoder_kl(SMALL_KL)).eval()
    x = torch.rand(5, 1, 28, 28)
    z = encode(codec, x)
    out = batched(codec.decode, z)
    assert z.shape == (5, 4, 7, 7) and out.shape == x.shape
    assert 0 <= out.min() and out.max() <= 1


def test_autoencoder_kl_save_pretrained_round_trip_uses_the_from_pretrained_path(tmp_path):
    torch.manual_seed(0)
    vae = build_autoencoder_kl(SMALL_KL).eval()
    vae.save_pretrained(tmp_path / "vae")
    x = torch.rand(4, 1, 28, 28)
    # the path a user takes for a Stable Diffusion VAE: KLConfig(pretrained=..., subfolder='vae'), no training
    loaded = fit_latent_codec(x, KLConfig(pretrained=str(tmp_path), subfolder="vae"))
    direct = LatentCodec(vae).eval()
    z = encode(direct, x)
    assert torch.equal(z, encode(loaded, x))
    assert torch.equal(batched(direct.decode, z), batched(loaded.decode, z))
    assert float(loaded.scale) == pytest.approx(vae.config.scaling_factor)


def test_a_pretrained_rgb_vae_takes_grey_images_at_its_own_size(tmp_path):
    torch.manual_seed(0)
    build_autoencoder_kl(SMALL_KL, in_channels=3, image_size=32).save_pretrained(tmp_path)
    codec = load_pretrained(str(tmp_path), in_channels=1, image_size=28, resize_to=32)
    x = torch.rand(2, 1, 28, 28)
    z = encode(codec, x)
    assert z.shape == (2, 4, 8, 8) and batched(codec.decode, z).shape == x.shape


def test_autoencoder_kl_rejects_sizes_its_blocks_cannot_halve():
    with pytest.raises(ValueError, match="divisible"):
        build_autoencoder_kl(KLConfig(block_channels=(4, 8, 8, 8)), image_size=28)


def test_trained_codec_latents_are_standardised(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    x = torch.rand(24, 1, 28, 28)
    z = encode(fit_latent_codec(x, SMALL_KL), x)
    assert float(z.mean()) == pytest.approx(0, abs=1e-4) and float(z.std()) == pytest.approx(1, abs=1e-4)


def _train_all(seed: int = 0) -> dict[str, torch.Tensor]:
    """Losses and outputs of a few steps of each generative model of notebook 05."""
    g = torch.Generator().manual_seed(seed)
    x, (z, y) = torch.rand(16, 1, 28, 28, generator=g), _latents(32, seed)
    torch.manual_seed(seed)
    codec = LatentCodec(build_autoencoder_kl(SMALL_KL))
    losses = latent_kl.train_autoencoder_kl(codec.vae, x, replace(SMALL_KL, steps=4))
    out = {"kl": torch.tensor(losses), "z": encode(codec, x)}
    model = _model(seed)
    hist = iterated_learning(model, z, y, ILConfig(n_channels=6, width=8, generations=2, interaction_steps=4,
                                                   imitation_steps=4, batch_size=16))
    out |= {"il": torch.tensor(hist["interaction"] + hist["imitation"]), "codes": cf.sparse_codes(model, z)}
    torch.manual_seed(seed)
    den = LatentDenoiser(4, 8, 1)
    out["den"] = torch.tensor(train_denoiser(den, z, DenoiserConfig(width=8, blocks=1, steps=4, batch_size=16)))
    out["refined"] = refine(den, z[:4], 2, schedule=4, generator=torch.Generator().manual_seed(0))
    return out


def test_channels_last_training_gives_the_contiguous_numbers(monkeypatch):
    fast = _train_all()
    for module in (latent_kl, iterated, denoiser):  # the old path: every tensor and model contiguous
        monkeypatch.setattr(module, "channels_last", lambda obj: obj)
    plain = _train_all()
    for k in fast:
        torch.testing.assert_close(fast[k], plain[k], rtol=1e-4, atol=1e-5, msg=k)


# --------------------------------------------------------------------------- Stage 1: iterated learning


def test_sparse_code_sums_to_one_over_channels_at_every_cell():
    z, _ = _latents(8)
    s = cf.sparse_codes(_model(), z)
    assert s.shape == (8, 6, 7, 7) and (s >= 0).all()
    torch.testing.assert_close(s.sum(1), torch.ones(8, 7, 7))


def test_imitation_resets_the_encoder_and_leaves_decoder_and_classifier_untouched():
    model = _model()
    z, y = _latents()
    gen = torch.Generator().manual_seed(0)
    opt = [torch.optim.AdamW(model.parameters(), lr=1e-2)]
    interact(model, z, y, steps=5, batch_size=16, optimizers=opt, weight=None, generator=gen)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    imitation_phase(model, z, steps=0, batch_size=16, lr=1e-2, weight_decay=0.0, generator=gen)
    after = model.state_dict()
    enc = [k for k in before if k.startswith("encoder.")]
    assert enc and all(not torch.equal(before[k], after[k]) for k in enc if k.endswith("weight"))
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("encoder."))


def test_imitation_learns_the_teachers_code():
    model = _model()
    z, _ = _latents(64)
    with torch.no_grad():
        model.encoder.net[-1].weight.mul_(20)  # a confident teacher: its samples are nearly its argmax
        teacher = cf.sparse_codes(model, z).argmax(1)
    imitation_phase(model, z, steps=150, batch_size=32, lr=1e-2, weight_decay=0.0,
                    generator=torch.Generator().manual_seed(0))
    agree = (cf.sparse_codes(model, z).argmax(1) == teacher).float().mean()
    assert agree > 0.6  # a freshly initialised encoder agrees on about 1 / 6 of the cells


def test_iterated_learning_reduces_both_losses():
    model = _model()
    z, y = _latents(96)
    z = z + 2 * torch.nn.functional.one_hot(y, 4).float()[:, :, None, None]  # a class signal in the latents
    hist = iterated_learning(model, z, y, ILConfig(n_channels=6, width=8, generations=2, interaction_steps=60,
                                                   imitation_steps=20, batch_size=32, lr=1e-2))
    first, last = hist["interaction"][0], hist["interaction"][-1]
    assert len(hist["imitation"]) == 1 and np.mean(last[-10:]) < np.mean(first[:10])


# --------------------------------------------------------------------------- Stage 2: EigenCAM


def _eigencam_reference(a: np.ndarray) -> np.ndarray:
    """EigenCAM of one (c, h, w) map straight from the definition, with numpy's SVD."""
    c, h, w = a.shape
    x = a.reshape(c, h * w).T
    x = x - x.mean(0)
    v = np.linalg.svd(x)[2][0]
    p = x @ v
    if (p * x.mean(1)).sum() < 0:
        p = -p
    p = np.maximum(p, 0)
    p = p - p.min()
    return (p / (p.max() + 1e-7)).reshape(h, w)


def test_eigencam_matches_the_svd_definition_and_lies_in_unit_range():
    a = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(1))
    cam = cf.eigencam(a)
    assert cam.shape == (3, 4, 6) and cam.min() >= 0 and cam.max() <= 1
    for i in range(3):
        np.testing.assert_allclose(cam[i].numpy(), _eigencam_reference(a[i].double().numpy()), atol=1e-5)


def test_eigencam_of_a_rank_one_map_is_its_normalised_spatial_pattern():
    pattern = torch.rand(4, 4, generator=torch.Generator().manual_seed(2))
    a = torch.tensor([1.0, 2.0, 0.5])[:, None, None] * pattern  # every channel a multiple of one pattern
    expected = (pattern - pattern.mean()).clamp(min=0)
    expected = (expected - expected.min()) / expected.max()
    torch.testing.assert_close(cf.eigencam(a[None])[0], expected, atol=1e-5, rtol=0)


def test_code_cams_give_one_map_per_code():
    model = _model()
    z, _ = _latents(5)
    cams = cf.code_cams(model, cf.sparse_codes(model, z))
    assert cams.shape == (5, 7, 7) and cams.min() >= 0 and cams.max() <= 1


# --------------------------------------------------------------------------- Stage 3: fusion


def _fusion_inputs(n: int = 6):
    g = torch.Generator().manual_seed(3)
    s_t, s_h = torch.rand(n, 5, 7, 7, generator=g), torch.rand(n, 5, 7, 7, generator=g)
    m_t, m_h = torch.rand(n, 7, 7, generator=g), torch.rand(n, 7, 7, generator=g)
    return s_t, s_h, m_t, m_h


def test_thresholds_that_keep_the_whole_tail_code_return_the_tail_code():
    s_t, s_h, m_t, m_h = _fusion_inputs()
    q1, q2 = torch.full((6,), -math.inf), torch.full((6,), -math.inf)  # keep everywhere, swap nowhere
    assert torch.equal(cf.fuse_codes(s_t, s_h, m_t, m_h, q1, q2), s_t)


def test_thresholds_that_keep_the_whole_head_code_return_the_head_code():
    s_t, s_h, m_t, m_h = _fusion_inputs()
    q1, q2 = torch.full((6,), math.inf), torch.full((6,), math.inf)  # keep nowhere, swap everywhere
    assert torch.equal(cf.fuse_codes(s_t, s_h, m_t, m_h, q1, q2), s_h)


def test_fusion_mask_follows_the_cams_where_they_agree_and_mixes_elsewhere():
    _, _, m_t, m_h = _fusion_inputs(200)
    q = torch.full((200,), 0.5)
    mask = cf.fusion_mask(m_t, m_h, q, q, torch.Generator().manual_seed(0))
    keep, swap = m_t > 0.5, m_h < 0.5
    assert mask[keep & ~swap].all() and not mask[swap & ~keep].any()
    mixed = mask[keep == swap].float().mean()
    assert 0.3 < mixed < 0.7  # P(u > p) = 1/2 for u, p ~ U(0, 1)


def test_head_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(4)
    tail, head = torch.rand(5, 3, 3, generator=g), torch.rand(20, 3, 3, generator=g)
    got = cf.head_neighbours(tail, head, k=3)
    dist = torch.cdist(tail.flatten(1), head.flatten(1))
    np.testing.assert_array_equal(np.sort(got, 1), np.sort(dist.topk(3, largest=False).indices.numpy(), 1))
    with pytest.raises(ValueError, match="k must"):
        cf.head_neighbours(tail, head, k=21)


@pytest.mark.parametrize("masks", ["cam", "shuffled", "random"])
def test_cam_fusion_pairs_each_tail_sample_with_one_of_its_head_neighbours(masks):
    model = _model()
    z, y = _latents(60)
    out = cf.cam_fusion(model, z, y, tail_classes=[2], n_per_class=10, k=3, masks=masks,
                     generator=torch.Generator().manual_seed(0))
    assert out.latents.shape == (10, 4, 7, 7) and (out.labels == 2).all()
    assert (y[out.tail_index] == 2).all() and (y[out.head_index] != 2).all()
    cams = cf.code_cams(model, cf.sparse_codes(model, z))
    head_rows = torch.nonzero(y != 2).squeeze(1)
    near = cf.head_neighbours(cams[out.tail_index], cams[head_rows], 3)
    assert all(int(h) in head_rows[near[i]].tolist() for i, h in enumerate(out.head_index))
    with torch.no_grad():  # every fused cell holds the tail's or the head's code
        s = cf.sparse_codes(model, z)
        from_tail = (out.codes == s[out.tail_index]).all(1)
        from_head = (out.codes == s[out.head_index]).all(1)
    assert (from_tail | from_head).all()


def test_shuffled_cells_keep_each_maps_values_so_as_many_cells_pass_a_threshold_at_other_places():
    g = torch.Generator().manual_seed(5)
    maps = torch.rand(6, 7, 7, generator=g)
    out = cf.shuffle_cells(maps, torch.Generator().manual_seed(1))
    assert out.shape == maps.shape
    torch.testing.assert_close(out.flatten(1).sort(1).values, maps.flatten(1).sort(1).values)  # same values
    for q in (0.3, 0.5, 0.9):  # so the same number of cells pass any threshold
        assert torch.equal((out > q).flatten(1).sum(1), (maps > q).flatten(1).sum(1))
    moved = (out != maps).flatten(1).float().mean(1)
    assert (moved > 0.8).all()  # a random permutation of 49 cells leaves about one in place
    assert torch.equal(out, cf.shuffle_cells(maps, torch.Generator().manual_seed(1)))  # seeded
    same = maps[:1].expand(2, 7, 7)  # two copies of one map get two different permutations
    twice = cf.shuffle_cells(same, torch.Generator().manual_seed(2))
    assert not torch.equal(twice[0], twice[1])


def test_shuffled_masks_change_only_the_masks_the_pairs_stay_the_cam_neighbours():
    model = _model()
    z, y = _latents(60)
    cam, shuffled = (cf.cam_fusion(model, z, y, tail_classes=[2], n_per_class=10, masks=m,
                                   generator=torch.Generator().manual_seed(0)) for m in ("cam", "shuffled"))
    assert torch.equal(cam.tail_index, shuffled.tail_index) and torch.equal(cam.head_index, shuffled.head_index)
    assert not torch.equal(cam.codes, shuffled.codes)


def test_cam_fusion_rejects_unknown_masks_and_partners():
    z, y = _latents(12)
    with pytest.raises(ValueError, match="Unknown masks"):
        cf.cam_fusion(_model(), z, y, [2], 2, masks="gradcam")
    with pytest.raises(ValueError, match="Unknown partners"):
        cf.cam_fusion(_model(), z, y, [2], 2, partners="nearest")


def test_random_partners_are_head_samples_beyond_the_cam_neighbours():
    model = _model()
    z, y = _latents(90)
    out = cf.cam_fusion(model, z, y, tail_classes=[2], n_per_class=40, partners="random",
                        generator=torch.Generator().manual_seed(0))
    assert (out.labels == 2).all() and (y[out.tail_index] == 2).all() and (y[out.head_index] != 2).all()
    cams = cf.code_cams(model, cf.sparse_codes(model, z))
    head_rows = torch.nonzero(y != 2).squeeze(1)
    near = cf.head_neighbours(cams[out.tail_index], cams[head_rows], 3)
    outside = [int(h) not in head_rows[near[i]].tolist() for i, h in enumerate(out.head_index)]
    assert sum(outside) > 20  # 3 of 60 head samples are CAM neighbours: most random partners are not


# --------------------------------------------------------------------------- refinement


def test_refinement_with_zero_steps_is_the_identity():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 7, 7)
    assert torch.equal(refine(LatentDenoiser(4, 16, 1), z, steps=0), z)


def test_refinement_moves_further_with_more_steps_and_checks_its_range():
    torch.manual_seed(0)
    model, z = LatentDenoiser(4, 16, 1), torch.randn(8, 4, 7, 7)
    moved = [float((refine(model, z, s, schedule=10, generator=torch.Generator().manual_seed(0)) - z).norm())
             for s in (1, 5)]
    assert 0 < moved[0] < moved[1]
    with pytest.raises(ValueError, match="steps must"):
        refine(model, z, steps=11, schedule=10)


def test_the_official_refinement_adds_no_noise_it_runs_the_last_ddim_steps_from_z_itself():
    from diffusers import DDIMScheduler

    from latentlab.models.denoiser import SCHEDULE

    torch.manual_seed(0)
    model, z = LatentDenoiser(4, 16, 1).eval(), torch.randn(5, 4, 7, 7)
    gen = torch.Generator().manual_seed(3)
    out = refine(model, z, 3, schedule=75, generator=gen, mode="official")
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(3).get_state())  # no noise drawn
    scheduler = DDIMScheduler(**SCHEDULE, clip_sample=False)
    scheduler.set_timesteps(75)
    by_hand = z.clone()
    with torch.no_grad():
        for t in scheduler.timesteps[-3:]:  # the last 3 of 75 steps: t = 26, 13, 0 at 1000 training steps
            by_hand = scheduler.step(model(by_hand, t), t, by_hand).prev_sample
    torch.testing.assert_close(out, by_hand, rtol=1e-4, atol=1e-5)
    sdedit = refine(model, z, 3, schedule=75, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(out, sdedit)
    with pytest.raises(ValueError, match="refinement mode"):
        refine(model, z, 3, mode="ddpm")


# --------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_of_diagonal_gaussians_has_its_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()  # 5 + 4 + 1 + 0 = 10
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected) == pytest.approx(10)


def test_frechet_distance_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, size=(20000, 2))
    b = rng.normal([3, 0], [2, 1], size=(20000, 2))
    assert frechet_distance_features(a, b) == pytest.approx(9 + 1, rel=0.05)
    assert frechet_distance_features(a, a) == pytest.approx(0, abs=1e-8)


def test_classifier_features_are_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    model = SmallCNN(1, 3, width=4).eval()
    x = torch.rand(5, 1, 28, 28)
    f = classifier_features(model, x, batch_size=2)
    assert f.shape == (5, 128)
    torch.testing.assert_close(model.head[-1](f), model(x))


# --------------------------------------------------------------------------- multi-hot labels (ChestMNIST's case)


def _multi_hot(n: int = 60) -> torch.Tensor:
    y = torch.zeros(n, 3)
    y[torch.arange(n), torch.arange(n) % 2] = 1  # labels 0 and 1 are the head
    y[::6, 2] = 1  # label 2, the tail, rides on some of them
    return y


def test_iterated_learning_takes_multi_hot_labels():
    z, _ = _latents(60)
    hist = iterated_learning(_model(), z, _multi_hot(), ILConfig(n_channels=6, width=8, generations=1,
                                                                 interaction_steps=3, batch_size=16))
    assert len(hist["interaction"][0]) == 3 and all(np.isfinite(hist["interaction"][0]))


def test_fusion_of_multi_hot_labels_pairs_with_tail_free_samples_and_unites_labels():
    z, _ = _latents(60)
    y = _multi_hot()
    out = cf.cam_fusion(_model(), z, y, tail_classes=[2], n_per_class=8, generator=torch.Generator().manual_seed(0))
    assert (y[out.tail_index, 2] == 1).all() and (y[out.head_index, 2] == 0).all()
    torch.testing.assert_close(out.labels, torch.maximum(y[out.tail_index], y[out.head_index]))
