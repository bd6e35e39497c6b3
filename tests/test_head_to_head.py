"""Notebook 06 (head to head): equal updates, cold training costs, the arms' helpers, claims and the advice."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latentlab import cache, config, data, stats
from latentlab.config import ClfConfig
from latentlab.experiments import aisel, cam_fusion, query_selection, tsynd, vae_augmentation
from latentlab.experiments import head_to_head as h2h
from latentlab.papers import head_to_head as claims
from latentlab.runner import parameters_of
from latentlab.train import Hooks, fit, fit_classifier

NB = config.REPO / "notebooks" / "06_head_to_head.ipynb"


def _toy(n: int = 24, seed: int = 0) -> data.Dataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.5 + y.view(-1, 1, 1, 1) * 0.5
    return data.Dataset(x, y, data.DatasetInfo("toy", "binary-class", 1, ["a", "b"]))


CLF = ClfConfig(arch="cnn", width=4, steps=12, min_epochs=2, batch=8, lr=1e-3, class_weight=None, monitor="auc",
                val_checks=2, lr_decay=None)


def _batches(train, extra=None, equal=True) -> tuple[int, list[int]]:
    """Updates a fit makes (batches seen by the augment hook) and their sizes."""
    sizes = []

    def count(xb):
        sizes.append(len(xb))
        return xb

    hooks = Hooks(synthetic=(lambda e, m, p: extra) if extra is not None else None, augment=count)
    from latentlab.train import schedule
    plan = schedule(len(train), CLF)
    torch.manual_seed(0)
    from latentlab.models import build_classifier
    model = build_classifier("cnn", 1, 2, width=4)
    fit(model, train, None, task="binary-class", epochs=plan.epochs, batch_size=plan.batch_size, hooks=hooks,
        batches_per_epoch=math.ceil(len(train) / plan.batch_size) if equal else None)
    return len(sizes), sizes


def test_equal_updates_make_batches_larger_not_more():
    train = _toy(24)
    extra = (_toy(48, seed=1).x, _toy(48, seed=1).y)
    n_base, base = _batches(train)
    n_more, more = _batches(train, extra)
    n_plain, _ = _batches(train, extra, equal=False)
    assert n_base == n_more  # the same updates with 48 extra images ...
    assert sum(more) == 3 * sum(base)  # ... every image of every epoch seen, in larger batches
    assert n_plain == 3 * n_base  # without equal updates the extra images triple the updates
    assert max(base) == 8 and max(more) == 24


def test_fit_classifier_equal_updates_keeps_the_schedule_of_the_real_images():
    train, val = _toy(24), _toy(16, seed=2)
    extra = (_toy(24, seed=3).x, _toy(24, seed=3).y)
    a = fit_classifier(train, val, CLF, 0, equal_updates=True)
    b = fit_classifier(train, val, CLF, 0, hooks=Hooks(synthetic=lambda e, m, p: extra), equal_updates=True)
    assert a.schedule == b.schedule and len(a.history) == len(b.history)
    assert all(r["n_train"] == 48 for r in b.history)


def test_training_costs_record_cold_training_and_count_it_on_a_hit(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))

    def train(model):
        x = torch.randn(256, 64)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(200):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()

    cfg = {"width": 64, "seed": 1}
    with cache.training_costs() as cold:
        cache.train_or_load("toy", cfg, lambda: nn.Linear(64, 64), train)
    assert len(cold) == 1 and not cold[0]["loaded"] and not cold[0]["nested"] and cold[0]["cpu_seconds"] > 0
    assert cache.cost_path(cache.cache_path("toy", cfg)).exists()
    with cache.training_costs() as warm:
        cache.train_or_load("toy", cfg, lambda: nn.Linear(64, 64), train)
    assert warm[0]["loaded"] and warm[0]["cpu_seconds"] == pytest.approx(cold[0]["cpu_seconds"])
    # a block that only loaded counts the training it replaced, not the loading
    measured = warm[0]["elapsed_cpu"] + 0.5
    assert cache.cold_cpu_seconds(warm, measured) == pytest.approx(0.5 + cold[0]["cpu_seconds"])
    # a model trained inside another's training is nested: the outer entry already holds its cost
    with cache.training_costs() as log:
        cache.train_or_load("outer", {"seed": 2}, lambda: nn.Linear(4, 4),
                            lambda m: cache.train_or_load("inner", {"seed": 3}, lambda: nn.Linear(64, 64), train))
    assert [(e["name"], e["nested"]) for e in log] == [("inner", True), ("outer", False)]
    assert cache.cold_cpu_seconds(log, 1.0) == pytest.approx(1.0 - log[1]["elapsed_cpu"] + log[1]["cpu_seconds"])


def test_a_hit_without_a_record_counts_as_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    cache.train_or_load("toy", {"seed": 0}, lambda: nn.Linear(2, 2), lambda m: None)
    cache.cost_path(cache.cache_path("toy", {"seed": 0})).unlink()
    with cache.training_costs() as log:
        cache.train_or_load("toy", {"seed": 0}, lambda: nn.Linear(2, 2), lambda m: None)
    assert log[0]["loaded"] and math.isnan(cache.cold_cpu_seconds(log, 1.0))


def test_mixup_mixes_images_and_labels_alike_and_is_seeded():
    lab = _toy(20)
    hook = h2h.mixup_hook(lab, 0.4, seed=3)
    x, y = hook(0, None, None)
    assert x.shape == lab.x.shape and y.shape == (20, 2)
    assert torch.allclose(y.sum(1), torch.ones(20)) and (y >= 0).all()
    assert x.min() >= 0 and x.max() <= 1
    x2, _ = hook(0, None, None)
    x3, _ = hook(1, None, None)
    assert torch.equal(x, x2) and not torch.equal(x, x3)  # the same per epoch, fresh every epoch
    # the label of each mixed image is the mix of its sources': recover lambda from a one-pixel image pair
    assert torch.allclose(h2h.soft(lab).y, torch.nn.functional.one_hot(lab.y, 2).float())


def test_affine_hook_keeps_labels_and_changes_images():
    lab = _toy(12)
    cfg = h2h.Config.from_parameters(parameters_of(NB, "smoke"))
    x, y = h2h.affine_hook(lab, cfg, seed=0)(0, None, None)
    assert torch.equal(y, lab.y) and x.shape == lab.x.shape and not torch.equal(x, lab.x)


def test_pareto_front():
    t = pd.DataFrame({"arm": list("abcde"), "cpu_seconds": [1, 2, 3, 4, 4], "auc": [0.7, 0.8, 0.75, 0.9, 0.85]})
    assert list(t["arm"][h2h.pareto(t)]) == ["a", "b", "d"]


def test_configs_of_the_method_notebooks_take_overrides_and_this_notebooks_oracle():
    cfg = h2h.Config.from_parameters(parameters_of(NB, "default"))
    mcfg = h2h.configs(cfg)
    own = parameters_of(config.REPO / "notebooks" / "01_aisel.ipynb", "default")
    assert isinstance(mcfg["aisel+m"], aisel.Config)
    assert mcfg["aisel+m"].gan_steps == cfg.aisel.get("GAN_STEPS", own["GAN_STEPS"])  # an override, else 01's own
    overridden = h2h.Config.from_parameters(parameters_of(NB, "default") | {"AISEL": {"GAN_STEPS": 7}})
    assert h2h.configs(overridden)["aisel+m"].gan_steps == 7
    assert isinstance(mcfg["tsynd-mi"], tsynd.Config) and mcfg["tsynd-mi"].oracle == cfg.oracle
    assert isinstance(mcfg["latent-query"], query_selection.Config) and mcfg["latent-query"].pool_size is None
    assert isinstance(mcfg["latent-interpolation"], vae_augmentation.Config)
    assert isinstance(mcfg["cam-fusion"], cam_fusion.Config) and mcfg["cam-fusion"].oracle == cfg.oracle
    # everything not overridden is the method notebook's own parameters cell
    assert mcfg["aisel+m"].latent_dim == own["LATENT_DIM"] and mcfg["aisel+m"].n_critic == own["N_CRITIC"]
    smoke = h2h.Config.from_parameters(parameters_of(NB, "smoke"))
    assert h2h.configs(smoke)["aisel+m"].gan_steps < mcfg["aisel+m"].gan_steps


def test_config_refuses_unknown_arms_and_a_missing_baseline():
    params = parameters_of(NB, "default")
    with pytest.raises(ValueError, match="Unknown arms"):
        h2h.Config.from_parameters(params | {"ARMS": ["baseline", "magic"]})
    with pytest.raises(ValueError, match="baseline"):
        h2h.Config.from_parameters(params | {"ARMS": ["affine"]})
    assert set(h2h.METHODS) <= set(h2h.Config.from_parameters(params).arms)


def _runs(effect: dict[str, float], seeds=range(6), val_best="mixup") -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for s in seeds:
        base = 0.8 + 0.02 * rng.standard_normal()
        for arm in h2h.ARMS:
            auc = base + effect.get(arm, 0.0) + 0.002 * rng.standard_normal()
            val = 0.9 if arm == val_best else 0.5
            rows += [{"dataset": "toy@50", "arm": arm, "seed": s, "metric": "auc", "value": auc},
                     {"dataset": "toy@50", "arm": arm, "seed": s, "metric": "val_auc", "value": val},
                     {"dataset": "toy@50", "arm": arm, "seed": s, "metric": "cpu_seconds", "value": 10.0},
                     {"dataset": "toy@50", "arm": arm, "seed": s, "metric": "annotations", "value": 50}]
    return pd.DataFrame(rows)


def _gates(failed: tuple[str, ...] = ()) -> pd.DataFrame:
    names = {i for v in h2h.INSTRUMENTS.values() for i in v} | {h2h.CLASSIFIER}
    return pd.DataFrame([{"instrument": i, "dataset": "toy@50", "seed": 0, "check": "c", "value": 1.0,
                          "threshold": 0.5, "passed": i not in failed} for i in sorted(names)])


def test_best_cheap_is_chosen_on_validation_and_claims_pair_every_arm():
    runs = _runs({"affine": 0.05})  # best on test, but mixup is best on validation
    assert claims.best_cheap(runs) == {"toy@50": "mixup"}
    made = claims.claims_for(h2h.ARMS, "mixup")
    names = [c.name for c in made]
    assert len(made) == 9 + 6 and "affine − mixup" not in names and "cam-fusion − mixup" in names
    gin = next(c for c in made if c.a == "aisel+m" and c.b == "baseline")
    assert gin.instruments == ("gin", "gin-samples", h2h.CLASSIFIER)


def test_verdicts_and_the_recommendation_come_from_the_ledger():
    runs = _runs({"latent-interpolation": 0.05, "cam-fusion": -0.05})
    family = claims.verdicts(runs, _gates(failed=("gin",)))
    from latentlab import ledger
    led = ledger.claims(family, paper=claims.REFERENCE)
    v = led.set_index("claim")["verdict"]
    assert v["latent-interpolation − baseline"] == "supported"
    assert v["cam-fusion − baseline"] == "reversed"
    assert v["aisel+m − baseline"].startswith("not tested: gin/c failed")
    assert family.attrs["family"] < len(family)  # the untested rows are out of the family
    text = claims.recommendation(led, h2h.arm_costs(runs))
    assert "latent-interpolation − baseline" in text and "decided worse: cam-fusion − baseline" in text
    assert "not tested" in text and "**toy@50**" in text
    assert stats.verdict_kind(v["latent-interpolation − mixup"]) == "supported"


def test_arm_costs_means_over_seeds():
    runs = _runs({"real+m": 0.01})
    costs = h2h.arm_costs(runs)
    assert set(costs["arm"]) == set(h2h.ARMS) and (costs["cpu_seconds"] == 10).all()
    assert costs.set_index("arm").loc["real+m", "auc"] > costs.set_index("arm").loc["baseline", "auc"]


def test_passing_datasets_keep_only_datasets_whose_every_gated_check_passed():
    row = lambda d, passed: {"instrument": "vae", "dataset": d, "seed": 0, "check": "c", "value": 1.0,
                             "threshold": 0.5, "passed": passed}
    record = pd.DataFrame([row("b@50", True), row("a@50", True), row("a@200", False), row("b@200", True)])
    assert h2h.passing_datasets(record) == ["b"]
    assert h2h.passing_datasets(record.assign(passed=True)) == ["b", "a"]


def test_the_default_datasets_are_the_records_passing_ones():
    record = pd.read_csv(h2h.DATASET_RECORD)
    assert set(record["dataset"].str.split("@").str[0]) == set(h2h.DATASET_CANDIDATES)
    assert parameters_of(NB, "default")["DATASETS"] == h2h.passing_datasets(record)
