"""Train-or-load survives re-runs and interrupted writes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from latentlab import cache


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))


def _train(calls):
    def train(model):
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(float(len(calls)))
    return train


def test_second_call_loads_instead_of_training(tmp_path):
    calls = []
    a = cache.train_or_load("lin", {"width": 3}, lambda: nn.Linear(3, 1), _train(calls))
    b = cache.train_or_load("lin", {"width": 3}, lambda: nn.Linear(3, 1), _train(calls))
    assert len(calls) == 1 and torch.equal(a.weight, b.weight) and b.weight[0, 0] == 1.0
    cache.train_or_load("lin", {"width": 3, "seed": 1}, lambda: nn.Linear(3, 1), _train(calls))
    assert len(calls) == 2 and len(list(tmp_path.glob("lin-*.pt"))) == 2


def test_config_hash_ignores_key_order():
    assert cache.config_hash({"a": 1, "b": [1, 2]}) == cache.config_hash({"b": [1, 2], "a": 1})
    assert cache.config_hash({"a": 1}) != cache.config_hash({"a": 2})


def test_interrupted_write_leaves_no_file_and_retrains(tmp_path, monkeypatch):
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # the user pressed stop mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        cache.train_or_load("lin", {"w": 1}, lambda: nn.Linear(2, 1), _train(calls))
    assert list(tmp_path.iterdir()) == []  # neither a broken .pt nor a stray temporary file
    monkeypatch.setattr(torch, "save", real_save)
    cache.train_or_load("lin", {"w": 1}, lambda: nn.Linear(2, 1), _train(calls))
    assert len(calls) == 2 and len(list(tmp_path.glob("lin-*.pt"))) == 1


def _noisy_train(model):
    with torch.no_grad():  # training that draws from every global RNG, as real training does
        model.weight.add_(torch.randn_like(model.weight) + float(np.random.rand()) + random.random())


def _draws():
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_weights_depend_on_the_config_only(tmp_path, monkeypatch):
    weights = []
    for caller_seed in (1, 2):  # different caller RNG states, each with a cold cache
        monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path / str(caller_seed)))
        torch.manual_seed(caller_seed), np.random.seed(caller_seed), random.seed(caller_seed)
        weights.append(cache.train_or_load("lin", {"w": 1}, lambda: nn.Linear(4, 1), _noisy_train).weight)
    assert torch.equal(weights[0], weights[1])
    other = cache.train_or_load("lin", {"w": 2}, lambda: nn.Linear(4, 1), _noisy_train).weight
    assert not torch.equal(weights[0], other)


def test_cache_hit_and_miss_leave_the_callers_random_stream_alone():
    def run(use_cache: bool):
        torch.manual_seed(0), np.random.seed(0), random.seed(0)
        if use_cache:
            cache.train_or_load("lin", {"w": 3}, lambda: nn.Linear(4, 1), _noisy_train)
        return _draws()

    untouched = run(False)
    assert run(True) == untouched  # cold: trains
    assert run(True) == untouched  # warm: loads


def test_a_truncated_cache_file_is_named_and_retrained(tmp_path):
    calls = []
    cache.train_or_load("lin", {"w": 2}, lambda: nn.Linear(2, 1), _train(calls))
    (path,) = tmp_path.glob("lin-*.pt")
    path.write_bytes(path.read_bytes()[:40])  # a truncated file: torch alone would say "failed reading zip archive"
    with pytest.warns(UserWarning, match=str(path.name)):
        model = cache.train_or_load("lin", {"w": 2}, lambda: nn.Linear(2, 1), _train(calls))
    assert len(calls) == 2 and model.weight[0, 0] == 2.0
    cache.train_or_load("lin", {"w": 2}, lambda: nn.Linear(2, 1), _train(calls))  # the rewritten file loads
    assert len(calls) == 2


def test_the_key_changes_with_the_data_it_saw():
    x = torch.zeros(4, 1, 2, 2)
    base = cache.model_key("m", {"a": 1}, [x])
    assert cache.model_key("m", {"a": 1}, [x.clone()]) == base  # same values: same key
    y = x.clone()
    y[3, 0, 1, 1] = 1e-3  # one pixel
    assert cache.model_key("m", {"a": 1}, [y]) != base
    assert cache.model_key("m", {"a": 1}, [x[:3]]) != base  # fewer images
    assert cache.model_key("m", {"a": 1}, [x, torch.zeros(4)]) != base  # labels too
    assert cache.model_key("m", {"a": 1}, [x.double()]) != base


def _model_configs():
    """Every generative model's config dataclass with a valid instance (the ones the notebooks cache)."""
    from latentlab.models.autoencoder import AEConfig
    from latentlab.models.denoiser import DenoiserConfig
    from latentlab.models.gin import GINConfig
    from latentlab.models.iterated import ILConfig
    from latentlab.models.latent_kl import KLConfig
    from latentlab.models.tsne_ae import TSNEConfig

    return [AEConfig(), DenoiserConfig(), GINConfig(), ILConfig(), KLConfig(), TSNEConfig()]


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, value[-1] if value else 1)
    if value is None:
        return 1
    raise TypeError(type(value))


@pytest.mark.parametrize("config", _model_configs(), ids=lambda c: type(c).__name__)
def test_every_config_field_changes_the_key(config):
    import dataclasses

    x = torch.rand(3, 1, 4, 4)
    base = cache.model_key("m", config, [x])
    for f in dataclasses.fields(config):
        other = dataclasses.replace(config, **{f.name: _changed(getattr(config, f.name))})
        assert cache.model_key("m", other, [x]) != base, f"{type(config).__name__}.{f.name} does not reach the key"


def test_a_cache_hit_computes_exactly_what_a_fresh_training_computes(tmp_path):
    """Trained channels-last or loaded into a contiguous model, the returned model has one layout and one output."""
    from latentlab.utils import channels_last

    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))

    def train(model):
        channels_last(model)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            loss = model(channels_last(torch.rand(4, 3, 6, 6))).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    x = channels_last(torch.rand(5, 3, 6, 6))
    fresh = cache.train_or_load("layout", {"w": 1}, build, train)
    loaded = cache.train_or_load("layout", {"w": 1}, build, lambda m: pytest.fail("retrained"))
    with torch.no_grad():
        assert torch.equal(fresh(x), loaded(x))
    assert loaded[0].weight.is_contiguous(memory_format=torch.channels_last)
