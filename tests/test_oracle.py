"""The oracle: trained on the full training split, cached, measured, and refused when it cannot beat a constant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentlab import data, oracle
from latentlab.config import OracleConfig


def _cfg(steps: int) -> OracleConfig:
    return OracleConfig(arch="cnn", width=4, steps=steps, max_images=None)


@pytest.fixture()
def breast(writable_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_DATA", str(writable_mirror))
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    data.load_cached.cache_clear()
    oracle.train_oracle.cache_clear()
    yield "breastmnist"
    oracle.train_oracle.cache_clear()


def test_oracle_reports_its_accuracy_beside_the_majority_rate(breast, tmp_path):
    o = oracle.train_oracle(breast, _cfg(60), min_margin=-1.0)
    val = data.load(breast, "val")
    assert o.majority_rate == pytest.approx(np.bincount(val.y.numpy()).max() / len(val))  # 57 / 78 benign
    assert 0 <= o.val_accuracy <= 1 and 0 <= o.test_accuracy <= 1
    assert len(list(tmp_path.glob("oracle-*.pt"))) == 1  # cached
    labels, conf = o.label(val.x[:10])
    assert labels.shape == (10,) and ((conf >= 0.5) & (conf <= 1)).all()
    assert o.agreement(val.x[:10], labels) == 1.0
    rows = o.rows()
    assert {r["metric"]: r["value"] for r in rows} == {"val_accuracy": o.val_accuracy, "test_accuracy":
                                                       o.test_accuracy, "val_majority_rate": o.majority_rate}
    assert all(r["arm"] == "oracle" and r["dataset"] == breast for r in rows)


def test_an_oracle_that_cannot_beat_the_majority_class_is_refused(breast):
    with pytest.raises(RuntimeError, match="majority class"):
        oracle.train_oracle(breast, _cfg(1), min_margin=0.5)


def test_the_oracle_is_deterministic_from_its_config(breast, tmp_path, monkeypatch):
    a = oracle.train_oracle(breast, _cfg(20), min_margin=-1.0)
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path / "other"))
    oracle.train_oracle.cache_clear()
    b = oracle.train_oracle(breast, _cfg(20), min_margin=-1.0)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
