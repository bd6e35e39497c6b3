"""Notebook 01's experiment module: the small decisions it makes, checked by hand."""

from __future__ import annotations

import pytest
import torch

from latentlab.experiments import aisel


def test_class_balance_is_a_normalised_label_entropy():
    assert aisel.class_balance(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert aisel.class_balance(torch.tensor([2, 2, 2]), 4) == pytest.approx(0.0)
    assert aisel.class_balance(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # ln 2 / ln 4

