"""TSynD pieces: latent ascent, the random baseline, the augmenter hook, perturbations and attacks, autoencoders."""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latentlab import cache, data, gates, grid, repro, train
from latentlab.experiments import tsynd
from latentlab.experiments.tsynd import LatentAugmenter
from latentlab.metrics import mutual_information, predictive_entropy
from latentlab.models import SmallCNN, mc_dropout
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, ConvVAE, build_autoencoder, train_autoencoder
from latentlab.oracle import Oracle
from latentlab.papers import tsynd as paper
from latentlab.perturb import attack_batched, fgsm, pgd, robustness, standard_perturbations
from latentlab.samplers.tsynd import latent_ascent, mc_probs, random_latent, synthesise

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_tsynd.ipynb"


@functools.lru_cache(maxsize=1)
def _notebook_cfg() -> tsynd.Config:
    """The Config of notebook 02's own parameters cell (its default profile)."""
    cell = next(c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code")
    tree = ast.parse("".join(cell["source"]))
    return tsynd.Config.from_parameters({n.targets[0].id: ast.literal_eval(n.value) for n in tree.body})


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
    aug = LatentAugmenter("tsynd-mi", ae, x, y, eps=1.0, n_synthetic=12, steps=2, T=2, start_fraction=0.1,
                          regenerations=4, seed=0)
    plan = train.Schedule(epochs=10, batch_size=8, val_epochs=(9,))  # starts at epoch 1: 1 + (i * 9) // 4
    assert (aug.start_epoch(plan), aug.regeneration_epochs(plan)) == (1, [1, 3, 5, 7])
    assert aug(0, clf, plan) is None
    x1, y1 = aug(1, clf, plan)
    assert x1.shape == (12, 1, 28, 28) and torch.equal(y1, y[aug.last_idx])
    assert aug(2, clf, plan)[0] is x1  # kept between regenerations
    assert aug(3, clf, plan)[0] is not x1
    assert len(aug.log) == 2 and {"synthetic_mi", "recon_mi", "synthetic_entropy", "recon_entropy"} <= set(aug.log[0])
    assert all(aug.log[0][k] >= 0 for k in ("synthetic_mi", "recon_mi"))


@pytest.mark.parametrize("epochs, start_fraction, regenerations",
                         [(12, 0.2, 4), (10, 0.2, 4), (3, 0.0, 4), (50, 0.5, 7)])
def test_the_augmenter_regenerates_exactly_as_often_as_asked(epochs, start_fraction, regenerations):
    """(epochs - start) // R as the spacing regenerated 5 times at 12 epochs and R = 4; now exactly R (fewer only
    when fewer epochs remain), evenly spaced from the start, the first at the start."""
    aug = LatentAugmenter("recon-only", ConvAutoencoder(1, 8, width=8).eval(), torch.rand(4, 1, 28, 28),
                          torch.arange(4) % 2, eps=0.0, n_synthetic=2, steps=1, T=2, start_fraction=start_fraction,
                          regenerations=regenerations, seed=0)
    plan = train.Schedule(epochs=epochs, batch_size=8, val_epochs=(epochs - 1,))
    at = aug.regeneration_epochs(plan)
    start = int(start_fraction * epochs)
    assert at[0] == start and len(at) == min(regenerations, epochs - start) and at[-1] < epochs
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert len(set(at)) == len(at) and (not gaps or max(gaps) - min(gaps) <= 1)


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


def test_robustness_is_measured_on_the_correctly_classified_images_over_the_sweep():
    repro.seed_everything(0)
    model = train.fit(SmallCNN(1, 2, width=8), _toy(), None, task="binary-class", epochs=5, batch_size=32).model
    x, y = _toy(200, 1)
    right = model.eval()(x).argmax(1) == y
    levels = [2 / 255, 20 / 255, 40 / 255]
    out = robustness(model, x, y, attack_eps=levels, pgd_steps=3, perturbations={"none": lambda v: v})
    assert out["robust_images"] == int(right.sum())
    assert out["accuracy_none"] == 1.0  # every counted image is right, unperturbed
    pgd_curve = [out[f"accuracy_pgd@{e * 255:g}"] for e in levels]
    assert pgd_curve[0] >= pgd_curve[1] >= pgd_curve[2] and pgd_curve[2] < 0.9  # larger budgets hurt more
    assert out["accuracy_pgd"] == sum(pgd_curve) / 3
    # a constant predictor: only the images of its one class count, and there is nothing to attack elsewhere
    const = nn.Sequential(nn.Flatten(), nn.Linear(256, 2))
    with torch.no_grad():
        const[1].weight.zero_(), const[1].bias.copy_(torch.tensor([0.0, 1.0]))
    flat = robustness(const, x, y, attack_eps=levels, pgd_steps=2, perturbations={})
    assert flat["robust_images"] == int((y == 1).sum()) and flat["accuracy_pgd"] == 1.0


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
    first = fit_autoencoder(x, cfg, x_val=x[:8])
    again = fit_autoencoder(x, cfg, x_val=x[:8])  # loaded, not trained
    assert first.val_curve.shape == (3,) and torch.isfinite(first.val_curve).all()
    torch.testing.assert_close(first.val_curve, again.val_curve)
    assert torch.isnan(fit_autoencoder(x, cfg).val_curve).all()  # no validation split, no curve


# --- moved from test_experiments.py

def test_parse_entry_and_its_error():
    assert tsynd.parse_entry("pneumoniamnist@10%") == ("pneumoniamnist", 0.1)
    assert tsynd.parse_entry("breastmnist@100%") == ("breastmnist", 1.0)
    with pytest.raises(ValueError, match="name@share%"):
        tsynd.parse_entry("breastmnist")


def test_flip_summary_pools_the_seeds_with_a_wilson_interval():
    from statsmodels.stats.proportion import proportion_confint

    sweep = pd.DataFrame([{"dataset": "a@1%", "seed": s, "eps_rel": 0.1, "mode": "tsynd-mi", "flipped": f,
                           "n_judged": n} for s, (f, n) in enumerate([(10, 400), (30, 400), (2, 300)])])
    out = tsynd.flip_summary(sweep).iloc[0]
    assert (out["flipped"], out["n_judged"]) == (42, 1100) and out["flip_rate"] == pytest.approx(42 / 1100)
    assert (out["low"], out["high"]) == pytest.approx(proportion_confint(42, 1100, method="wilson"))
    assert out["low"] < 42 / 1100 < out["high"] and bool(out["enough_judged"])
    assert not tsynd.flip_summary(sweep[sweep["seed"] < 2])["enough_judged"].iloc[0]  # 800 < MIN_JUDGED


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
    cfg = _notebook_cfg().replace(datasets=("pneumoniamnist@1%", "pneumoniamnist@10%", "breastmnist@100%"),
                                  seeds=(0, 1), ae_data="all")
    tasks = tsynd.autoencoder_tasks(cfg)
    assert [(t["dataset"], t["seed"]) for t in tasks] == [
        ("pneumoniamnist@1%", 0), ("pneumoniamnist@1%", 1), ("breastmnist@100%", 0), ("breastmnist@100%", 1)]
    assert all(t["cfg"] is cfg for t in tasks)
    assert len(tsynd.autoencoder_tasks(cfg.replace(ae_data="labelled"))) == 6


def test_the_config_is_the_notebooks_parameters_cell():
    cfg = _notebook_cfg()
    assert cfg.clf.arch == "cnn" and cfg.oracle.max_images is None  # the values the code used before they were fields
    assert cfg.clf.steps == 240 and cfg.attack_images == 200
    assert cfg.arms == tsynd.ARMS and cfg.arms[-1] == tsynd.MATCHED


def _tiny(n: int = 40, seed: int = 0) -> data.Dataset:
    g = torch.Generator().manual_seed(seed)
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    return data.Dataset(torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 2, info)


@pytest.mark.parametrize("steps, min_epochs, start_fraction", [(24, 2, 0.2), (4, 6, 0.5), (40, 1, 0.0)])
def test_synthesis_starts_where_the_schedule_says(steps, min_epochs, start_fraction):
    """The synthetic images join at start_fraction of the epochs `train.schedule` gives the labelled set, and are
    regenerated `regenerations` times from there: measured on the epochs fit actually ran."""
    cfg = _notebook_cfg()
    cfg = cfg.replace(clf=cfg.clf.replace(width=4, steps=steps, min_epochs=min_epochs, batch=16, val_checks=2),
                      start_fraction=start_fraction, regenerations=3, syn_ratio=0.5, ascent_steps=1, mc_samples=2)
    labelled, val = _tiny(), _tiny(16, 1)
    plan = train.schedule(len(labelled), cfg.clf)
    start = int(start_fraction * plan.epochs)
    aug = tsynd.augmenter(cfg, "tsynd-mi", ConvAutoencoder(1, 4, width=4), 1.0, labelled, 0.5, seed=0)
    fitted = train.fit_classifier(labelled, val, cfg.clf, 0, hooks=train.Hooks(synthetic=aug))
    assert fitted.schedule == plan and len(fitted.history) == plan.epochs
    assert [r["n_train"] > len(labelled) for r in fitted.history] == [e >= start for e in range(plan.epochs)]
    assert [r["epoch"] for r in aug.log] == aug.regeneration_epochs(plan)
    assert len(aug.log) == min(3, plan.epochs - start)


def test_autoencoder_key_follows_the_images_it_sees(tmp_path, monkeypatch):
    """AE_DATA = 'labelled' trains one autoencoder per labelled subset: the key comes from the images, so settings
    and seeds with other subsets get other autoencoders, and 'all' one per (dataset, seed)."""
    monkeypatch.setattr(tsynd, "fit_autoencoder", lambda x, cfg, x_val=None: (x, cfg, x_val))
    monkeypatch.setattr(tsynd, "encode_all", lambda ae, x: torch.randn(len(x), 2))
    train_set, val = _tiny(60), _tiny(16, 1)

    def key(ae_data: str, share: float, seed: int) -> str:
        idx = data.stratified_subset(train_set.y, round(share * len(train_set)), seed)
        d = tsynd.SeedData(f"toy@{share:.0%}", seed, train_set, val, val, train_set.subset(idx))
        (x, ae_cfg, x_val), _ = tsynd.autoencoder_for(_notebook_cfg().replace(ae_data=ae_data), d)
        return cache.model_key("autoencoder", ae_cfg, (x, x_val))

    assert len({key("labelled", 0.1, 0), key("labelled", 0.5, 0), key("labelled", 0.1, 1)}) == 3
    assert key("all", 0.1, 0) == key("all", 0.5, 0) != key("all", 0.1, 1)
    with pytest.raises(ValueError, match="AE_DATA"):
        key("everything", 0.1, 0)


# --- issue 17: the instruments of notebook 02 and its one family of verdicts


def _stub_oracle(name: str, cfg) -> Oracle:
    """An untrained judge with the Oracle interface (run_seed's gates need .label and .model, not a good judge)."""
    torch.manual_seed(0)
    return Oracle(name, SmallCNN(1, 2, width=4).eval(), 0.9, 0.9, 0.7, "binary-class")


def test_run_seed_returns_gate_rows_and_kept_checks(mirror, tmp_path, monkeypatch):
    """At a tiny size: result rows with every run's kept check, then the seed's autoencoder gate (on the fixed
    held-out test images) and the selection gate; no synthetic arm keeps a model from before its first synthetic
    epoch although checks before it would exist (val_checks 6 over 8 epochs, synthesis from epoch 4)."""
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(tsynd, "train_oracle", _stub_oracle)
    cfg = _notebook_cfg()
    cfg = cfg.replace(datasets=("breastmnist@10%",), seeds=(0,), arms=("baseline", "recon-only", "tsynd-mi",
                                                                        "baseline+updates"),
                      ae_steps=5, ae_width=4, clf=cfg.clf.replace(width=4, steps=8, min_epochs=8, batch=64,
                                                                  val_checks=6),
                      start_fraction=0.5, ascent_steps=1, mc_samples=2, max_synthetic=16, regenerations=2,
                      pgd_steps=1, attack_levels=(2.0, 8.0), attack_images=40)
    res, inst = grid.tables(tsynd.run_seed, tsynd.seed_tasks(cfg, {"breastmnist@10%": 0.1}), workers=1)
    wide = res.pivot_table(index="arm", columns="metric", values="value").loc[list(cfg.arms)]
    synthetic = ["recon-only", "tsynd-mi"]
    assert wide.loc[synthetic, "synthesis_start_epoch"].tolist() == [4, 4]
    assert (wide.loc[synthetic, "kept_epoch"] >= 4).all() and (wide.loc[synthetic, "regenerations"] == 2).all()
    assert wide[["val_accuracy", "val_auc"]].notna().all().all() and np.isnan(wide.loc["baseline",
                                                                                       "synthesis_start_epoch"])
    # the matched-updates control trains at least as many updates as the synthetic arms, the baseline fewer
    n_syn = wide.loc["tsynd-mi", "updates"]
    assert wide.loc["recon-only", "updates"] == n_syn > wide.loc["baseline", "updates"]
    assert n_syn <= wide.loc["baseline+updates", "updates"] < n_syn + wide.loc["baseline", "updates"] / 8
    assert {"recall_0", "recall_1", "accuracy_pgd@2", "accuracy_pgd@8", "robust_images"} <= set(wide.columns)
    # robustness on the right ones of 40 fixed test images (of 156), clean accuracy on all: a multiple of 1/156
    robust = wide["robust_images"].dropna()  # a constant predictor has none (NaN)
    assert len(robust) >= 2 and (robust <= 40).all() and (robust > 0).all()
    assert np.allclose((wide["accuracy"] * 156).round(), wide["accuracy"] * 156)
    assert list(inst.columns) == gates.COLUMNS and set(inst["dataset"]) == {"breastmnist@10%"}
    assert inst["check"].tolist() == ["oracle_accuracy_real", "oracle_accuracy_recon", "mean_image_mse",
                                      "recon_mse", "kept_minus_synthesis_start_epoch",
                                      "synthesis_start_val_balanced_accuracy", "baseline_val_balanced_accuracy"]
    assert inst["instrument"].tolist() == ["autoencoder"] * 4 + ["classifier"] * 3
    held = data.fixed_subset(data.load_cached("breastmnist", "test"), tsynd.GATE_IMAGES).x
    mse_mean = float(((held - held.mean(0)) ** 2).mean())  # by hand, on the same fixed test images
    assert inst.set_index("check").loc["mean_image_mse", "value"] == pytest.approx(mse_mean, rel=1e-6)
    margin = (wide.loc[synthetic, "kept_epoch"] - 4).min()
    assert inst.set_index("check").loc["kept_minus_synthesis_start_epoch", ["value", "passed"]].tolist() == [
        margin, True]
    start = wide.loc[synthetic, "synthesis_start_val_balanced_accuracy"].min()
    assert inst.set_index("check").loc["synthesis_start_val_balanced_accuracy", "value"] == start


def test_a_synthetic_arm_keeps_no_model_from_before_its_first_synthetic_epoch(monkeypatch):
    """With a validation score that only falls, fit keeps its first check: without validate_from that is a model
    trained on real images alone (the defect of issue 17), with fit_arm it is the first synthetic epoch or later."""
    cfg = _notebook_cfg()
    cfg = cfg.replace(clf=cfg.clf.replace(width=4, steps=10, min_epochs=10, batch=16, val_checks=10),
                      start_fraction=0.3, regenerations=2, syn_ratio=0.5, ascent_steps=1, mc_samples=2)
    calls = iter(range(1000))
    monkeypatch.setattr(train, "validate", lambda *a, **k: {"val_loss": 0.0, "val_accuracy": 0.5, "val_auc":
                                                           1 - next(calls) / 1000, "val_balanced_accuracy": 0.5})
    labelled, val = _tiny(), _tiny(16, 1)

    def aug():
        return tsynd.augmenter(cfg, "tsynd-mi", ConvAutoencoder(1, 4, width=4), 1.0, labelled, 0.5, seed=0)

    start = tsynd.synthesis_start_epoch(cfg, aug(), len(labelled))
    assert start == 3
    plain = train.fit_classifier(labelled, val, cfg.clf, 0, hooks=train.Hooks(synthetic=aug()))
    assert plain.best_epoch < start  # the defect, reproduced
    fitted = tsynd.fit_arm(cfg, labelled, val, 0, synthetic=aug())
    assert fitted.best_epoch == fitted.schedule.val_epochs[0] == start
    assert tsynd.fit_arm(cfg, labelled, val, 0).best_epoch == 0  # the baseline validates from the start


def _runs(values: dict, metric: str = "val_accuracy", arm: str = "baseline") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "arm": arm, "seed": s, "metric": metric, "value": v}
                         for d, vs in values.items() for s, v in enumerate(vs)])


def test_convergence_gates_compare_2x_with_the_seed_spread():
    results = _runs({"a@1%": [0.80, 0.84, 0.82], "b@1%": [0.70, 0.70, 0.70]}, metric="val_auc")
    more = _runs({"a@1%": [0.815], "b@1%": [0.72]}, metric="val_auc_2x")
    inst = gates.table(tsynd.convergence_gates(results, more, monitor="auc")).set_index(["dataset", "check"])
    # a: |0.815 - 0.80| = 0.015 < max(0.01, sd 0.02); b: 0.02 is not below max(0.01, sd 0)
    assert inst.loc[("a@1%", "val_auc_change"), ["value", "threshold", "passed"]].tolist() == pytest.approx(
        [0.015, 0.02, True])
    assert inst.loc[("b@1%", "val_auc_change"), ["threshold", "passed"]].tolist() == pytest.approx([0.01, False])
    assert set(inst["instrument"]) == {"classifier"} and inst.loc[("b@1%", "val_auc_2x"), "value"] == 0.72
    # the gate reads the monitored metric only: accuracy rows of the same runs do not count
    acc = _runs({"a@1%": [0.5, 0.5, 0.5], "b@1%": [0.5, 0.5, 0.5]})
    assert gates.table(tsynd.convergence_gates(pd.concat([results, acc]), more))["passed"].tolist() == [
        True, True, True, True, True, False]
    with pytest.raises(ValueError, match="val_auc_2x"):
        tsynd.convergence_gates(results, results)
    with pytest.raises(ValueError, match="val_accuracy_2x"):
        tsynd.convergence_gates(results, more, monitor="accuracy")


def _family(seeds: int = 5) -> pd.DataFrame:
    """Arms of three settings (two PneumoniaMNIST shares, one BreastMNIST) with a known per-seed effect."""
    rng = np.random.default_rng(0)
    rows = []
    for d in ("pneumoniamnist@1%", "pneumoniamnist@10%", "breastmnist@100%"):
        for s in range(seeds):
            base = rng.uniform(0.6, 0.8)
            for arm, shift in zip(tsynd.ARMS, (0.0, 0.01, 0.02, 0.03, 0.04, 0.005)):
                for metric in paper.METRICS:
                    rows.append({"dataset": d, "arm": arm, "seed": s, "metric": metric,
                                 "value": base + shift + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def _gate_rows(failed_at: str | None) -> pd.DataFrame:
    rows = []
    for d in ("pneumoniamnist@1%", "pneumoniamnist@10%", "breastmnist@100%"):
        for instrument in paper.INSTRUMENTS:
            rows.append(gates.row(instrument, d, 0, "check", 1.0, 0.5, passed=d != failed_at))
    return gates.table(rows)


N_POOLED = len(paper.CLAIMS) * len(paper.CLEAN) + len(paper.ROBUST_CLAIMS) * len(paper.ROBUSTNESS)


def test_a_claim_with_a_failed_gate_reads_not_tested_and_leaves_the_family():
    results = _family()
    v = paper.verdicts(results, _gate_rows("pneumoniamnist@10%"))
    pooled = v[v["dataset"] == paper.POOLED]
    at_10 = v[v["dataset"] == "pneumoniamnist@10%"]
    assert (at_10["verdict"] == "not tested: autoencoder/check failed, classifier/check failed").all()
    assert len(pooled) == N_POOLED and pooled["verdict"].str.startswith("not tested").all()  # one setting failed
    held = v["verdict"].str.startswith("not ")
    assert not held[v["dataset"].isin(["pneumoniamnist@1%", "breastmnist@100%"])].any()
    assert v.attrs["family"] == int((~held).sum()) == 2 * len(paper.CLAIMS) * len(paper.PER_SETTING)
    no_gates = paper.verdicts(results, gates.table([]))
    assert no_gates["verdict"].str.startswith("not tested: autoencoder not measured, classifier not measured").all()


def test_one_setting_has_nothing_to_pool_and_its_family_is_the_per_setting_rows():
    results = _family()
    one = results[results["dataset"] == "pneumoniamnist@1%"]
    v = paper.verdicts(one, _gate_rows(None))
    assert set(v["dataset"]) == {"pneumoniamnist@1%"}  # no pooled rows: the setting's own take their place
    assert len(v) == N_POOLED == v.attrs["family"] and set(v["metric"]) == set(paper.METRICS)
    full = paper.verdicts(results, _gate_rows(None))  # its per-setting rows, in a larger family there
    mine = full[full["dataset"] == "pneumoniamnist@1%"].reset_index(drop=True)
    same = v[v["metric"].isin(paper.PER_SETTING)].reset_index(drop=True)
    assert np.allclose(same["mean"].to_numpy(), mine["mean"].to_numpy())
    assert (same["high_fw"] - same["low_fw"] < mine["high_fw"] - mine["low_fw"]).all()  # fewer rows: narrower


def test_the_pooled_rows_are_a_random_effects_meta_analysis_of_the_settings():
    """Pooled across all three settings by random effects: the estimate is statsmodels' DerSimonian-Laird on the
    per-setting mean differences with variance sd^2 / n (by hand here), and its family-wise interval the normal one
    at 1 - alpha / m."""
    from scipy import stats as sps
    from statsmodels.stats.meta_analysis import combine_effects

    results = _family()
    v = paper.verdicts(results, _gate_rows(None))
    r = v[(v["dataset"] == paper.POOLED) & (v["comparison"] == "tsynd-mi − baseline")
          & (v["metric"] == "accuracy")].iloc[0]
    part = results[results["metric"] == "accuracy"]
    wide = part.pivot_table(index=["dataset", "seed"], columns="arm", values="value")
    d = ((wide["tsynd-mi"] - wide["baseline"]) * 100).groupby(level="dataset")
    effect, var = d.mean(), d.var(ddof=1) / d.size()
    res = combine_effects(effect.to_numpy(), var.to_numpy(), method_re="dl", use_t=False)
    w = 1 / var
    q = float((w * (effect - (w * effect).sum() / w.sum()) ** 2).sum())
    tau2 = max(0.0, (q - 2) / float(w.sum() - (w ** 2).sum() / w.sum()))
    ws = 1 / (var + tau2)
    assert r["k"] == 3 and r["tau2"] == pytest.approx(tau2)
    assert r["mean"] == pytest.approx(float((ws * effect).sum() / ws.sum()))
    assert r["mean"] == pytest.approx(res.mean_effect_re if tau2 > 0 else res.mean_effect_fe)
    m = v.attrs["family"]
    assert m == 3 * len(paper.CLAIMS) * len(paper.PER_SETTING) + N_POOLED
    z = sps.norm.ppf(1 - 0.025 / m)
    assert (r["low_fw"], r["high_fw"]) == pytest.approx((r["mean"] - z * r["se"], r["mean"] + z * r["se"]))
    table = paper.claims_table(v)
    assert len(table) == sum(len(ms) for *_, ms in paper.STATEMENTS)
    loo = paper.sensitivity(results, _gate_rows(None))
    assert len(loo) == 3 * N_POOLED and set(loo["left_out"]) == {"pneumoniamnist@1%", "pneumoniamnist@10%",
                                                                 "breastmnist@100%"}
