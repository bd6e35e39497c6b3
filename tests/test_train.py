"""The training core, the classifiers and MC dropout."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from latentlab import data, repro, train
from latentlab.config import ClfConfig
from latentlab.models import SmallCNN, build_classifier, mc_dropout, resnet18_28


def _clf(**changes) -> ClfConfig:
    base = dict(arch="cnn", width=4, steps=300, min_epochs=1, batch=64, lr=1e-3, class_weight=None, monitor="loss",
                val_checks=10, lr_decay=None)
    return ClfConfig(**(base | changes))


def _toy(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Bright top half (class 1) or bright bottom half (class 0), plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 1, 16, 16, generator=g) * 0.5
    x[y == 1, :, :8] += 0.5
    x[y == 0, :, 8:] += 0.5
    return x, y


def test_fit_learns_a_separable_problem_and_keeps_the_best_epoch():
    repro.seed_everything(0)
    result = train.fit(SmallCNN(1, 2, width=8), _toy(), _toy(128, 1), task="binary-class", epochs=6, batch_size=32)
    assert train.evaluate(result.model, _toy(200, 2), task="binary-class")["accuracy"] > 0.95
    losses = [r["val_loss"] for r in result.history]
    assert result.best_epoch == losses.index(min(losses))
    assert not result.model.training


def test_fit_is_repeatable_with_a_seed():
    states = []
    for _ in range(2):
        repro.seed_everything(7)
        model = SmallCNN(1, 2, width=4)
        train.fit(model, _toy(64), None, task="binary-class", epochs=2, batch_size=16)
        states.append(torch.cat([p.flatten() for p in model.parameters()]))
    assert torch.equal(states[0], states[1])


def test_early_stopping_and_val_epochs():
    repro.seed_everything(0)
    result = train.fit(SmallCNN(1, 2, width=4), _toy(64), _toy(64, 1), task="binary-class", epochs=200,
                       patience=4, val_epochs=range(1, 200, 2), lr=0.05)
    assert len(result.history) < 200
    assert all(("val_loss" in r) == ((r["epoch"] + 1) % 2 == 0) for r in result.history[:-1])


def test_synthetic_samples_join_training_for_their_epoch():
    calls = []

    def synthetic(epoch, model, schedule):
        calls.append((epoch, schedule.epochs))
        return (torch.rand(10, 1, 16, 16), torch.ones(10, dtype=torch.long)) if epoch % 2 else None

    result = train.fit(SmallCNN(1, 2, width=4), _toy(32), None, task="binary-class", epochs=4,
                       hooks=train.Hooks(synthetic=synthetic))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert [r["n_train"] for r in result.history] == [32, 42, 32, 42]


def test_multilabel_training_uses_per_label_probabilities():
    x, y = _toy(64)
    y2 = torch.stack([y, 1 - y], 1).float()
    result = train.fit(SmallCNN(1, 2, width=4), (x, y2), (x, y2), task="multi-label, binary-class", epochs=2)
    p = train.predict_proba(result.model, x, task="multi-label, binary-class")
    assert p.shape == (64, 2) and not torch.allclose(p.sum(1), torch.ones(64))


def test_mc_dropout_passes_differ_while_batchnorm_stays_frozen():
    model = SmallCNN(1, 3, width=4, dropout=0.5)
    model.train()
    model(torch.rand(8, 1, 16, 16))  # give batch-norm non-trivial running statistics
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)][0]
    before = (bn.running_mean.clone(), bn.num_batches_tracked.clone())
    x = torch.rand(5, 1, 16, 16)
    mc = train.mc_predict(model, x, T=6, task="multi-class")
    assert mc.shape == (6, 5, 3) and not torch.allclose(mc[0], mc[1])
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.num_batches_tracked, before[1])
    assert model.training  # the previous mode is restored
    with mc_dropout(model):
        assert not bn.training and all(m.training for m in model.modules() if isinstance(m, nn.Dropout))
    p = train.predict_proba(model, x, task="multi-class")
    torch.testing.assert_close(p, train.predict_proba(model, x, task="multi-class"))  # eval is deterministic
    torch.testing.assert_close(p.sum(1), torch.ones(5))


def test_resnet18_for_28px_keeps_resolution_in_the_stem():
    net = resnet18_28(3, 7)
    assert isinstance(net.maxpool, nn.Identity) and net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert net(torch.rand(2, 3, 28, 28)).shape == (2, 7)
    assert build_classifier("cnn", 1, 4)(torch.rand(2, 1, 28, 28)).shape == (2, 4)


def test_device_and_threads():
    assert repro.get_device("cpu") == torch.device("cpu")
    assert repro.get_device("auto").type in {"cpu", "cuda", "mps"}
    assert repro.set_threads(1) == 1 == torch.get_num_threads()


def test_balanced_weights_follow_sklearns_rule():
    from sklearn.utils.class_weight import compute_class_weight

    y = torch.tensor([0] * 30 + [1] * 10 + [2] * 5)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    np.testing.assert_allclose(train.balanced_weights(y, 3).numpy(), expected, rtol=1e-6)
    assert train.balanced_weights(torch.tensor([0, 0, 1]), 3)[2] == 1.0  # an absent class keeps weight 1
    multi = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0]])
    torch.testing.assert_close(train.balanced_weights(multi, 2), torch.tensor([1 / 3, 3.0]))  # N_neg / N_pos


def test_class_weights_stop_a_skewed_set_from_predicting_the_majority_only():
    # 95 % class 0 in training, a balanced validation set: unweighted, the easy minority is still drowned out early
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.zeros(190, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    x = torch.rand(200, 1, 16, 16, generator=g) * 0.6
    x[y == 1, :, :, :8] += 0.25
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    val_y = torch.tensor([0, 1] * 50)
    val_x = torch.rand(100, 1, 16, 16, generator=g) * 0.6
    val_x[val_y == 1, :, :, :8] += 0.25
    fits = {cw: train.fit_classifier(data.Dataset(x, y, info), data.Dataset(val_x, val_y, info),
                                     _clf(steps=30, class_weight=cw, monitor="balanced_accuracy"), seed=0)
            for cw in (None, "balanced")}
    recall = {cw: train.evaluate(f.model, (val_x, val_y), task="binary-class")["sensitivity"] for cw, f in fits.items()}
    assert recall["balanced"] > recall[None] + 0.2


def test_fit_classifier_budget_in_steps_and_epochs():
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    small = data.Dataset(*_toy(64), info)
    r = train.fit_classifier(small, None, _clf(steps=40, batch=16), seed=0)
    assert len(r.history) == 10 and r.schedule.epochs == 10  # 40 steps of 4 batches per epoch
    r = train.fit_classifier(small, None, _clf(steps=4, min_epochs=3, batch=16), seed=0)
    assert len(r.history) == 3  # the epoch floor wins over a tiny step budget
    with pytest.raises(ValueError, match="CLF_CLASS_WEIGHT"):
        train.fit_classifier(small, None, _clf(class_weight="inverse"), seed=0)
    with pytest.raises(ValueError, match="monitor"):
        train.fit(SmallCNN(1, 2, width=4), _toy(8), _toy(8), task="binary-class", monitor="f2")


def test_augment_touches_training_batches_only():
    seen = []

    def augment(x):
        seen.append(len(x))
        return x.flip(-1)

    train.fit(SmallCNN(1, 2, width=4), _toy(32), _toy(20, 1), task="binary-class", epochs=2, batch_size=16,
              hooks=train.Hooks(augment=augment))
    assert seen == [16, 16, 16, 16]  # two epochs of two batches; validation (20 images) never augmented


def test_same_seed_same_initial_weights_for_every_arm():
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    a = train.fit_classifier(data.Dataset(*_toy(32), info), None, _clf(steps=0, min_epochs=0), seed=3)
    b = train.fit_classifier(data.Dataset(*_toy(48, 5), info), None, _clf(steps=0, min_epochs=0), seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))


def test_the_schedule_is_the_one_the_loop_runs_and_hooks_are_told_it():
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    lab, val = data.Dataset(*_toy(50), info), data.Dataset(*_toy(30, 1), info)
    clf = _clf(steps=35, batch=16, val_checks=3)
    plan = train.schedule(len(lab), clf)
    assert (plan.epochs, plan.batch_size) == (9, 16)  # ceil(35 / ceil(50 / 16)) = ceil(35 / 4)
    assert plan.val_epochs == (2, 5, 8)  # every 9 // 3 = 3 epochs, the last one included
    seen = []
    r = train.fit_classifier(lab, val, clf, seed=0,
                             hooks=train.Hooks(synthetic=lambda e, m, s: seen.append(s) or None))
    assert seen == [plan] * plan.epochs and r.schedule == plan
    assert [h["epoch"] for h in r.history if "val_loss" in h] == list(plan.val_epochs)
    assert r.best_epoch in plan.val_epochs


def test_validation_starts_where_the_hooks_say():
    clf = _clf(steps=100, batch=10, val_checks=4)
    plan = train.schedule(20, clf, validate_from=30)  # 50 epochs, checks only in the last 20
    assert plan.epochs == 50 and plan.val_epochs == (34, 39, 44, 49)
    info = data.DatasetInfo("toy", "binary-class", 1, ["a", "b"])
    r = train.fit_classifier(data.Dataset(*_toy(20), info), data.Dataset(*_toy(20, 1), info), clf, seed=0,
                             hooks=train.Hooks(validate_from=30))
    assert r.best_epoch >= 30
    with pytest.raises(ValueError, match="validate_from"):
        train.schedule(20, clf, validate_from=50)


def test_channels_last_gives_the_contiguous_numbers():
    """The fast path (channels-last model and batches) computes what a plain contiguous loop computes."""
    x, y = _toy(64)
    losses = {}
    for layout in ("contiguous", "channels_last"):
        repro.seed_everything(0)
        model = SmallCNN(1, 2, width=8)
        if layout == "channels_last":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        trace = []
        for step in range(5):
            xb = x[step * 12:(step + 1) * 12]
            xb = xb.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else xb
            loss = nn.functional.cross_entropy(model(xb), y[step * 12:(step + 1) * 12])
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
        losses[layout] = (trace, torch.cat([p.detach().flatten() for p in model.parameters()]))
    np.testing.assert_allclose(losses["contiguous"][0], losses["channels_last"][0], rtol=1e-4, atol=1e-5)
    # Adam steps every weight by about lr (1e-3) whatever its gradient's size, so a weight whose gradient is near 0
    # (its sign a matter of summation order) may end up to a step apart: atol is one lr, the other weights agree to 1e-4
    torch.testing.assert_close(losses["contiguous"][1], losses["channels_last"][1], rtol=1e-3, atol=1e-3)
    close = torch.isclose(losses["contiguous"][1], losses["channels_last"][1], rtol=1e-3, atol=1e-4)
    assert close.float().mean() > 0.999
    repro.seed_everything(0)
    fitted = train.fit(SmallCNN(1, 2, width=8), (x, y), None, task="binary-class", epochs=1, batch_size=16)
    assert fitted.model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_scaled_classifier_trains_twice_as_many_updates_whichever_budget_binds():
    from latentlab.config import ClfConfig

    clf = ClfConfig(arch="cnn", width=8, steps=300, min_epochs=20, batch=32, lr=1e-3, class_weight=None,
                    monitor="accuracy", val_checks=5, lr_decay=None)
    for n in (20, 4708):  # steps bind at 20 images (300 epochs of one batch), min_epochs at 4708 (20 of 148)
        assert train.schedule(n, clf.scaled(2)).epochs == 2 * train.schedule(n, clf).epochs
    # doubling the steps alone would leave the 4708-image schedule as it was: the gate would compare a run with itself
    assert train.schedule(4708, clf.replace(steps=600)).epochs == train.schedule(4708, clf).epochs == 20


def test_validation_checks_are_deterministic_and_leave_the_model_untouched():
    from latentlab.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(1, 2, width=4).train()
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 2, (16,))
    state = copy.deepcopy(model.state_dict())
    first, second = (train.validate(model, (x, y), task="multi-class") for _ in range(2))
    assert first == second  # dropout off, batch-norm on running statistics
    assert model.training  # the mode is restored
    for k, v in model.state_dict().items():  # running statistics not updated with validation images
        assert torch.equal(v, state[k]), k


def test_the_cosine_factor_matches_its_formula_and_an_unknown_decay_is_refused():
    assert [train.lr_factor(p, "cosine") for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    assert train.lr_factor(0.25, "cosine") == pytest.approx((1 + math.cos(math.pi / 4)) / 2)
    assert train.lr_factor(0.7, None) == 1.0
    with pytest.raises(ValueError, match="lr_decay"):
        train.lr_factor(0.1, "linear")
    with pytest.raises(ValueError, match="lr_decay"):
        train.fit(SmallCNN(1, 2, width=4), (torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 0, 1])), task="multi-class",
                  epochs=1, lr_decay="step")


def test_a_cosine_run_sets_each_update_rate_from_the_share_done_and_a_constant_run_keeps_lr(monkeypatch):
    seen = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    xy = (torch.rand(8, 1, 28, 28), torch.tensor([0, 1] * 4))
    train.fit(SmallCNN(1, 2, width=4), xy, task="multi-class", epochs=3, batch_size=4, lr=0.01, lr_decay="cosine")
    shares = [(e + s / 8) / 3 for e in range(3) for s in (0, 4)]  # 2 updates per epoch, 6 in all
    assert seen == pytest.approx([0.01 * (1 + math.cos(math.pi * p)) / 2 for p in shares])
    seen.clear()
    train.fit(SmallCNN(1, 2, width=4), xy, task="multi-class", epochs=3, batch_size=4, lr=0.01)
    assert seen == [0.01] * 6
