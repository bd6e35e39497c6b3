"""Notebook 05's experiment: long-tailed splits, and one seed end to end on a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latentlab import data
from latentlab.experiments import cam_fusion as cam
from latentlab.models import SmallCNN
from latentlab.oracle import Oracle

TINY = cam.Config(imbalance={"toy": 10}, n_max={}, n_tail=1, n_augment=6, ae_width=(4, 4, 4), ae_steps=2,
                  il_channels=4, il_width=8, il_generations=2, il_interaction_steps=2, il_imitation_steps=2,
                  denoiser_width=8, denoiser_steps=2, refine_steps=2, refine_grid=(0, 2), refine_schedule=4,
                  n_fid=8, clf_width=4, clf_steps=2, clf_batch=16, n_val=None, n_test=None)


def _toy(split: str, n_classes: int = 3) -> data.Dataset:
    """Class k: a bright square at position k, plus noise; 40 images per class (train), 10 (val, test)."""
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    per = 40 if split == "train" else 10
    y = torch.arange(n_classes).repeat_interleave(per)
    x = 0.1 * torch.rand(len(y), 1, 28, 28, generator=g)
    for k in range(n_classes):
        x[y == k, :, 4 + 6 * k:10 + 6 * k, 4:24] += 0.8
    info = data.DatasetInfo("toy", "multi-class" if n_classes > 2 else "binary-class", 1,
                            [str(k) for k in range(n_classes)])
    return data.Dataset(x.clamp(0, 1), y, info)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "load_cached", lambda name, split="train", size=28: _toy(split))
    torch.manual_seed(0)
    oracle = Oracle("toy", SmallCNN(1, 3, width=4).eval(), 1.0, 1.0, 1 / 3, "multi-class")
    monkeypatch.setattr(cam.Config, "oracle", lambda self, dataset: oracle)


def test_long_tailed_multi_class_follows_the_exponential_profile_and_marks_the_rarest_tail(toy):
    lt, tail, rows = cam.long_tailed("toy", 0, TINY)
    counts = lt.class_counts()
    np.testing.assert_array_equal(counts, data.long_tail_counts(3, 40, 10))  # 40, 12, 4
    assert tail == [2] and len(rows) == len(lt) and len(set(rows.tolist())) == len(rows)


def test_minority_subset_cuts_the_minority_class_to_the_ratio():
    y = np.array([0] * 30 + [1] * 100)
    idx = cam.minority_subset(y, rho=20, seed=0)
    assert np.bincount(y[idx]).tolist() == [5, 100]
    assert np.bincount(y[cam.minority_subset(y, rho=20, seed=0, n_max=60)]).tolist() == [3, 60]


def test_config_round_trips_through_a_notebooks_parameters():
    params = TINY.parameters() | {"SEEDS": [0, 1], "WORKERS": None, "dataset": "toy"}
    params["REFINE_GRID"] = list(params["REFINE_GRID"])  # a notebook writes lists
    assert cam.Config.from_parameters(params) == TINY


def test_config_rejects_unknown_arms_and_impossible_steps():
    with pytest.raises(ValueError, match="Unknown arms"):
        cam.Config(arms=("none", "smote"))
    with pytest.raises(ValueError, match="REFINE_SCHEDULE"):
        cam.Config(refine_steps=30, refine_schedule=20)


def test_scores_split_average_precision_into_tail_and_overall():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    probs = torch.tensor([[.9, .05, .05], [.8, .1, .1], [.1, .8, .1], [.6, .3, .1], [.1, .1, .8], [.1, .6, .3]])
    out = cam.scores(y, probs, "multi-class", tail=[2])
    assert out["tail_ap"] == pytest.approx(1.0)  # both class-2 images have the highest class-2 scores
    assert out["recall_1"] == pytest.approx(0.5) and out["tail_recall"] == pytest.approx(0.5)
    assert out["ap"] < 1 and out["single_class"] == 0.0


def test_run_seed_gives_every_arm_and_the_quality_grid(toy):
    rows = pd.DataFrame(cam.run_seed(TINY.parameters() | {"dataset": "toy", "seed": 0}))
    clf = rows[rows["metric"] == "tail_ap"]
    assert sorted(clf["arm"]) == sorted(cam.ARMS) and clf["value"].between(0, 1).all()
    fid = rows[(rows["metric"] == "frechet") & (rows["arm"] == "cam-fusion")]
    assert sorted(fid["refine_steps"]) == [0, 2] and np.isfinite(fid["value"]).all()
    assert {"real", "vae-recon", "random-mask"} <= set(rows.loc[rows["metric"] == "frechet", "arm"])
    assert set(rows.loc[rows["metric"] == "single_class", "arm"]) == set(cam.ARMS)


def test_augmenting_arms_add_n_augment_tail_images_and_reweight_adds_none(toy):
    s = cam.prepare("toy", 0, TINY)
    fused = {"cam": s.fuse("cam"), "random": s.fuse("random")}
    for arm in cam.ARMS:
        ds = cam.arm_data(s, arm, fused)
        added = ds.y[len(s.train):]
        assert len(added) == (0 if arm in ("none", "reweight") else TINY.n_augment) and (added == 2).all()
