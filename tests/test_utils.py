"""Batched inference and the progress bar."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latentlab import utils


def test_batched_equals_one_big_call_whatever_the_batch_size():
    net = nn.Sequential(nn.Linear(5, 3), nn.Tanh()).eval()
    x = torch.randn(103, 5)
    with torch.no_grad():
        full = net(x)
    for bs in (1, 10, 103, 500):
        torch.testing.assert_close(utils.batched(net, x, bs), full)
    assert utils.batched(net, x[:0]).shape == (0, 3)
    out = utils.batched(lambda b: b * 2, x, 7)
    torch.testing.assert_close(out, x * 2)
    assert not out.requires_grad
    with pytest.raises(ValueError, match="batch_size"):
        utils.batched(net, x, 0)


def test_module_device_and_silent_progress(monkeypatch):
    assert utils.module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert utils.module_device(nn.ReLU()) == torch.device("cpu")
    monkeypatch.setenv("LATENTLAB_PROGRESS", "0")
    assert utils.progress(range(3)).disable
    monkeypatch.setenv("LATENTLAB_PROGRESS", "1")
    assert list(utils.progress(range(3), disable=True)) == [0, 1, 2]
