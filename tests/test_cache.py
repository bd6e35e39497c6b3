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
