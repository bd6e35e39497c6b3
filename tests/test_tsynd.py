"""TSynD pieces: latent ascent, the random baseline, the augmenter hook, perturbations and attacks, autoencoders."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latentlab import repro, train
from latentlab.experiments import tsynd
from latentlab.metrics import mutual_information, predictive_entropy
from latentlab.models import SmallCNN, mc_dropout
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, ConvVAE, build_autoencoder, train_autoencoder
from latentlab.perturb import attack_batched, fgsm, pgd, standard_perturbations
from latentlab.samplers.tsynd import LatentAugmenter, latent_ascent, mc_probs, random_latent, synthesise


class _LinearDecoder(nn.Module):
    """z -> sigmoid(W z) as a 28x28 image: unlike an untrained conv decoder, its output moves with z."""

    def __init__(self, latent: int):
        super().__init__()
        self.fc = nn.Linear(latent, 28 * 28)
        nn.init.normal_(self.fc.weight, std=1.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(z)).view(len(z), 1, 28, 28)

    forward = decode


@functools.lru_cache(maxsize=1)
def _setup(seed: int = 0, n: int = 32, latent: int = 8):
    """A decoder, a classifier with dropout trained on its images (label: sign of z_0), and fresh codes z0."""
    repro.seed_everything(seed)
    ae = _LinearDecoder(latent).eval()
    z = torch.randn(256, latent)
    with torch.no_grad():
        data = (ae.decode(z), (z[:, 0] > 0).long())
    clf = train.fit(SmallCNN(1, 2, width=4, dropout=0.5), data, None, task="binary-class", epochs=15, lr=3e-3,
                    batch_size=32).model
    return ae, clf, torch.randn(n, latent)


def _mean_target(clf, ae, z, target: str, T: int = 256) -> float:
    torch.manual_seed(123)
    with torch.no_grad(), mc_dropout(clf):
        probs = mc_probs(clf, ae.decode(z), T)
    return float((mutual_information(probs) if target == "mi" else predictive_entropy(probs)).mean())


@pytest.mark.parametrize("target", ["mi", "entropy"])
def test_ascent_raises_its_target_and_stays_in_the_ball(target):
    ae, clf, z0 = _setup()
    eps = 2.0
    out = latent_ascent(ae.decode, clf, z0, eps=eps, steps=15, T=16, target=target, record=True)
    assert _mean_target(clf, ae, out.z, target) > 1.1 * _mean_target(clf, ae, z0, target)
    assert (out.z - z0).norm(dim=1).max() <= eps + 1e-4
    assert out.history["mi"].shape == (16, len(z0)) and out.x.shape == (len(z0), 1, 28, 28)


def test_ascent_with_eps_zero_returns_the_input():
    ae, clf, z0 = _setup()
    out = latent_ascent(ae.decode, clf, z0, eps=0.0, steps=5)
    assert torch.equal(out.z, z0)


def test_ascent_leaves_weights_and_batchnorm_statistics_alone():
    ae, clf, z0 = _setup()
    bn = {k: v.clone() for k, v in clf.state_dict().items()}
    clf.zero_grad(set_to_none=True)
    latent_ascent(ae.decode, clf, z0, eps=1.0, steps=3, T=4)
    assert all(torch.equal(bn[k], v) for k, v in clf.state_dict().items())
    assert all(p.grad is None for p in list(clf.parameters()) + list(ae.parameters()))
    assert not clf.training  # mode restored


def test_mc_dropout_passes_differ_but_batchnorm_is_frozen():
    _, clf, _ = _setup()
    clf.train()  # even from train mode: inside mc_dropout BN must use (and not update) running statistics
    x = torch.rand(8, 1, 28, 28)
    before = clf.features[0][1].running_mean.clone()
    with torch.no_grad(), mc_dropout(clf):
        probs = mc_probs(clf, x, 4)
        generic = clf(x.repeat(4, 1, 1, 1)).softmax(-1).view(4, 8, -1)
    assert not torch.allclose(probs[0], probs[1])
    assert not torch.allclose(generic[0], generic[1])
    assert torch.equal(before, clf.features[0][1].running_mean)
    assert clf.training
    clf.eval()


def test_random_baseline_has_the_same_norm_budget():
    z0 = torch.randn(100, 8)
    z = random_latent(z0, 1.5, torch.Generator().manual_seed(0))
    assert torch.allclose((z - z0).norm(dim=1), torch.full((100,), 1.5), atol=1e-5)
    ae, clf, z0 = _setup()
    z_opt, _ = synthesise("tsynd-mi", ae, clf, z0, eps=1.5, steps=5, T=4)
    assert (z_opt - z0).norm(dim=1).max() <= 1.5 + 1e-4


def test_augmenter_waits_then_adds_labelled_synthetic_images_on_schedule():
    _, clf, _ = _setup()
    ae = ConvAutoencoder(1, 8, width=8).eval()
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 2
    aug = LatentAugmenter("tsynd-mi", ae, x, y, eps=1.0, n_synthetic=12, steps=2, T=2, start_epoch=1, every=2)
    assert aug(0, clf) is None
    x1, y1 = aug(1, clf)
    assert x1.shape == (12, 1, 28, 28) and torch.equal(y1, y[aug.last_idx])
    assert aug(2, clf)[0] is x1  # kept between regenerations
    assert aug(3, clf)[0] is not x1
    assert len(aug.log) == 2


def _toy(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.8
    x[y == 1, :, :8] += 0.1  # a small margin: a few grey levels per pixel can cross it
    x[y == 0, :, 8:] += 0.1
    return x, y


def test_fgsm_and_pgd_lower_accuracy_of_a_trained_model():
    repro.seed_everything(0)
    model = train.fit(SmallCNN(1, 2, width=8), _toy(), None, task="binary-class", epochs=5, batch_size=32).model
    x, y = _toy(200, 1)
    clean = train.evaluate(model, (x, y), task="binary-class")["accuracy"]
    attacked = {a.__name__: train.evaluate(model, (attack_batched(a, model, x, y, eps=0.15), y), task="binary-class")
                ["accuracy"] for a in (fgsm, pgd)}
    assert clean > 0.9
    assert attacked["fgsm"] < clean - 0.2
    assert attacked["pgd"] <= attacked["fgsm"] + 0.02
    adv = attack_batched(pgd, model, x, y, eps=0.15)
    assert (adv - x).abs().max() <= 0.15 + 1e-6 and adv.min() >= 0 and adv.max() <= 1


def test_test_time_perturbations_keep_shape_and_range():
    x = torch.rand(4, 1, 28, 28)
    for name, f in standard_perturbations().items():
        out = f(x)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, name
        assert not torch.equal(out, x), name


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_autoencoders_have_the_right_shapes_and_learn(kind):
    repro.seed_everything(0)
    cfg = AEConfig(kind=kind, latent_dim=2, width=8, epochs=15, batch_size=16, lr=3e-3)
    model = build_autoencoder(cfg)
    assert isinstance(model, ConvVAE if kind == "vae" else ConvAutoencoder)
    x = torch.rand(16, 1, 28, 28) * 0.2
    x[:, :, 8:20, 8:20] += 0.7  # a bright square: something a tiny model can learn in a few steps
    z = model.encode(x)
    assert z.shape == (16, 2) and model.decode(z).shape == x.shape
    out = model(x)
    assert (out[0] if kind == "vae" else out).shape == x.shape
    before = model.loss(x).item()
    history = train_autoencoder(model, x, cfg, x_val=x[:4])
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"] and model.loss(x).item() < before
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # the validation split monitors the same fit


def test_fit_autoencoder_keeps_its_validation_curve_through_the_cache(tmp_path, monkeypatch):
    from latentlab.models.autoencoder import fit_autoencoder

    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    x = torch.rand(32, 1, 28, 28)
    cfg = AEConfig(kind="ae", latent_dim=2, width=4, epochs=3, batch_size=16)
    first = fit_autoencoder(x, cfg, "toy", x_val=x[:8])
    again = fit_autoencoder(x, cfg, "toy", x_val=x[:8])  # loaded, not trained
    assert first.val_curve.shape == (3,) and torch.isfinite(first.val_curve).all()
    torch.testing.assert_close(first.val_curve, again.val_curve)
    assert torch.isnan(fit_autoencoder(x, cfg, "toy").val_curve).all()  # no validation split, no curve


# --- moved from test_experiments.py

def test_parse_entry_and_its_error():
    assert tsynd.parse_entry("pneumoniamnist@10%") == ("pneumoniamnist", 0.1)
    assert tsynd.parse_entry("breastmnist@100%") == ("breastmnist", 1.0)
    with pytest.raises(ValueError, match="name@share%"):
        tsynd.parse_entry("breastmnist")


def _sweep(rates: dict[float, tuple[float, float]]) -> pd.DataFrame:
    rows = [{"eps_rel": e, "mode": m, "flip_rate": r} for e, (mi, ent) in rates.items()
            for m, r in (("tsynd-mi", mi), ("tsynd-entropy", ent), ("random-latent", 0.0))]
    return pd.DataFrame(rows)


def test_choose_eps_takes_the_largest_eps_below_the_flip_limit_for_both_targets():
    assert tsynd.choose_eps(_sweep({0.1: (0.01, 0.02), 0.2: (0.04, 0.05), 0.3: (0.06, 0.01)}), 0.05) == 0.2
    # a later eps that passes again does not count: every smaller eps must pass too
    assert tsynd.choose_eps(_sweep({0.1: (0.01, 0.0), 0.2: (0.2, 0.0), 0.3: (0.0, 0.0)}), 0.05) == 0.1
    assert tsynd.choose_eps(_sweep({0.1: (0.3, 0.0)}), 0.05) == 0.0
    assert tsynd.choose_eps(_sweep({0.1: (np.nan, 0.0)}), 0.05) == 0.0  # an unmeasured rate never passes


def test_autoencoder_tasks_share_one_autoencoder_per_dataset_and_seed():
    p = {"DATASETS": ["pneumoniamnist@1%", "pneumoniamnist@10%", "breastmnist@100%"], "SEEDS": [0, 1],
         "AE_DATA": "all"}
    assert [(t["entry"], t["seed"]) for t in tsynd.autoencoder_tasks(p)] == [
        ("pneumoniamnist@1%", 0), ("pneumoniamnist@1%", 1), ("breastmnist@100%", 0), ("breastmnist@100%", 1)]
    assert len(tsynd.autoencoder_tasks(p | {"AE_DATA": "labelled"})) == 6


def test_n_epochs_matches_train_classifiers_budget():
    p = {"CLF_BATCH": 64, "CLF_STEPS": 120, "CLF_MIN_EPOCHS": 2}
    assert tsynd.n_epochs(p, 47) == 120  # one batch an epoch
    assert tsynd.n_epochs(p, 4708) == 2  # 74 batches: the epoch floor
    assert tsynd.n_epochs(p, 470) == 15  # 8 batches

