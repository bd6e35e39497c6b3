"""Notebook 01's experiment module and the paper's numbers: the small decisions, and one tiny seed end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from latentlab import data, grid, oracle
from latentlab.config import ClfConfig, OracleConfig
from latentlab.experiments import aisel
from latentlab.papers import aisel as paper


def test_class_balance_is_a_normalised_label_entropy():
    assert aisel.class_balance(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert aisel.class_balance(torch.tensor([2, 2, 2]), 4) == pytest.approx(0.0)
    assert aisel.class_balance(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # ln 2 / ln 4


def test_the_claims_carry_the_papers_effects_from_its_table():
    effects = {(c.a, c.b): c.paper for c in paper.CLAIMS}
    assert effects == {("aisel+m", "random+m"): 8.3, ("random+m", "native"): 7.8, ("aisel+m", "native"): 16.1,
                       ("aisel+m", "random+M"): -3.0, ("aisel+m", "maxent+m"): None, ("random+M", "random+m"): None}
    assert paper.CLAIMS[3].sign() == -1  # "AISEL close to ten times more random images": a claim below zero
    assert all(c.paper is None and c.sign() == 1 for c in paper.AUC_CLAIMS)
    table = paper.table()
    assert list(table.columns) == ["native", "random+m", "aisel+m", "random+M"]
    assert table.loc["accuracy", "aisel+m"] == 75.60 and set(table.index) == {"accuracy", "sensitivity",
                                                                                "specificity", "f1"}


def test_soft_labels_are_one_hot_for_real_images_and_the_oracles_probabilities_for_synthetic_ones():
    info = data.DatasetInfo("toy", "multi-class", 1, ["a", "b", "c"])
    labelled = data.Dataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 1]), info)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[2.0, 0.0, 0.0]]).expand(len(x), 3)

    o = oracle.Oracle("toy", Fixed(), 1.0, 1.0, 0.4, "multi-class")
    joined = aisel.soft_labelled(labelled, torch.rand(2, 1, 28, 28), o)
    assert joined.y.shape == (6, 3) and torch.equal(joined.y[:4].argmax(1), labelled.y)
    assert torch.allclose(joined.y.sum(1), torch.ones(6)) and joined.y[4, 0] == pytest.approx(0.787, abs=1e-3)


def test_distance_to_real_is_the_mean_nearest_distance():
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert aisel.distance_to_real(torch.tensor([[0.0, 0.5], [3.0, 0.0]]), real) == pytest.approx((0.5 + 2.0) / 2)


@pytest.fixture()
def tiny(writable_mirror, tmp_path, monkeypatch):
    """A config of notebook 01 at toy size on BreastMNIST (546 training images), with a private model cache."""
    monkeypatch.setenv("LATENTLAB_DATA", str(writable_mirror))
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    data.load_cached.cache_clear()
    oracle.train_oracle.cache_clear()
    clf = ClfConfig(arch="cnn", width=4, steps=4, min_epochs=1, batch=32, lr=1e-3, class_weight="balanced",
                    monitor="auc", val_checks=2)
    yield aisel.Config(datasets=("breastmnist",), n_labelled={"breastmnist": 40}, seeds=(0, 1), m_small=12,
                       m_large=30, latent_dim=2, gin_width=4, gan_steps=2, n_critic=1, gan_lr=1e-3, gan_batch=16,
                       encoder_steps=2, oracle=OracleConfig(arch="cnn", width=8, steps=60, max_images=None), clf=clf,
                       n_candidates=200, sp_iters=3, n_val=60, n_test=100, curve_sizes=(5,), curve_seeds=(0,),
                       workers=1)
    oracle.train_oracle.cache_clear()


def test_run_seed_end_to_end_and_its_rows_depend_on_their_coordinates_only(tiny, tmp_path):
    one = grid.table(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[0]), workers=1)
    assert list(dict.fromkeys(one.arm)) == ["native", "random+m", "random+M", "aisel+m", "maxent+m"]
    sizes = one.groupby("arm")["n_synthetic"].first().to_dict()
    assert sizes == {"native": 0, "random+m": 12, "random+M": 30, "aisel+m": 12, "maxent+m": 12}
    metrics = set(one[one.arm == "aisel+m"].metric)
    assert {"accuracy", "auc", "oracle_confidence", "class_balance", "classifier_entropy", "energy_distance"} <= metrics
    assert len(list(tmp_path.glob("gin-*.pt"))) == 1 and len(list(tmp_path.glob("oracle-*.pt"))) == 1
    two = grid.table(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[1, 0]), workers=1)
    assert two[two.seed == 0].reset_index(drop=True).equals(one)  # cached GIN, same rows, whatever the grid
    assert len(list(tmp_path.glob("gin-*.pt"))) == 2  # one GIN per seed


def test_a_variant_reproduces_the_main_grids_aisel_rows(tiny):
    main = aisel.run_seed({"cfg": tiny, "dataset": "breastmnist", "seed": 0})
    rows = pd.DataFrame(aisel.run_variant({"cfg": tiny, "dataset": "breastmnist", "seed": 0, "variant": "no fixed"}))
    assert set(rows.arm) == {"aisel+m", "aisel+m (no fixed)"}
    mine = rows[(rows.arm == "aisel+m") & (rows.metric != "distance_to_real")].set_index("metric")["value"]
    theirs = pd.DataFrame(main).query("arm == 'aisel+m'").set_index("metric")["value"]
    assert mine.to_dict() == theirs.to_dict()
