"""The per-notebook experiment modules: the small decisions they make, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latentlab.experiments import aisel, tsynd


def test_class_balance_is_a_normalised_label_entropy():
    assert aisel.class_balance(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert aisel.class_balance(torch.tensor([2, 2, 2]), 4) == pytest.approx(0.0)
    assert aisel.class_balance(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # ln 2 / ln 4


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


def test_fixed_subsets_are_the_same_for_every_call():
    from latentlab import data

    ds = data.Dataset(torch.arange(100).float().view(100, 1, 1, 1), torch.zeros(100, dtype=torch.long),
                      data.DatasetInfo("toy", "multi-class", 1, ["a"]))
    a, b = aisel.fixed_subset(ds, 10), aisel.fixed_subset(ds, 10)
    assert torch.equal(a.x, b.x) and len(a) == 10 and len(aisel.fixed_subset(ds, None)) == 100
