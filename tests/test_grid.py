"""The experiment grid: the same results in-process, over local worker processes and on a Dask cluster; a model
cache that survives two workers training the same key at once."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import numpy as np
import pytest
import torch
from torch import nn

from latentlab import cache, grid

# Tasks below are defined in this test module, which worker processes cannot import: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # joblib (loky) and dask both use cloudpickle


def _train_tiny(task: dict) -> dict:
    """A small seeded training run plus draws from the unseeded global RNGs of NumPy and torch: all must repeat
    wherever it runs. (Python's `random` is left out: Dask's own threads draw from it inside a worker; latentlab never
    uses it.)"""
    torch.manual_seed(task["seed"])
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    x, y = torch.randn(256, 8), torch.randn(256, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(20):
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"task": task, "loss": loss.item(), "threads": torch.get_num_threads(),
            "unseeded": (np.random.rand(), torch.rand(1).item())}


TASKS = [{"dataset": d, "seed": s} for d in ("a", "b") for s in range(3)]


@pytest.fixture(scope="module")
def in_process() -> list:
    return grid.run(_train_tiny, TASKS, workers=1)


def test_in_process_results_come_in_task_order_with_one_thread(in_process):
    assert [r["task"] for r in in_process] == TASKS
    assert all(r["threads"] == 1 for r in in_process)
    assert len({r["unseeded"] for r in in_process}) == len(TASKS)  # each task its own random state


def test_two_local_workers_give_the_same_values(in_process):
    assert grid.run(_train_tiny, TASKS, workers=2) == in_process


def test_a_dask_cluster_gives_the_same_values(in_process):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client:
        assert grid.run(_train_tiny, TASKS, client=client) == in_process


def test_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("LATENTLAB_WORKERS", "3")
    assert grid.n_workers() == 3 and grid.n_workers(1) == 1
    monkeypatch.setenv("LATENTLAB_WORKERS", "many")
    with pytest.raises(ValueError, match="whole number"):
        grid.n_workers()
    with pytest.raises(ValueError, match="at least 1"):
        grid.n_workers(0)


def _fails(task):
    raise KeyError("no such arm")


def test_a_failing_task_is_named():
    with pytest.raises(RuntimeError, match=r"Task \{'seed': 1\} failed: KeyError"):
        grid.run(_fails, [{"seed": 1}], workers=1)


def _slow_train(model: nn.Module) -> None:
    time.sleep(0.5)  # both workers are inside training at the same time
    with torch.no_grad():
        model.weight.normal_()


def _race(task: dict) -> list:
    os.environ["LATENTLAB_CACHE"] = task["cache"]
    model = cache.train_or_load("race", {"w": 1}, lambda: nn.Linear(64, 8), _slow_train)
    return model.weight.flatten().tolist()


def test_two_workers_training_the_same_key_at_once(tmp_path, monkeypatch):
    tasks = [{"cache": str(tmp_path), "worker": i} for i in range(2)]
    a, b = grid.run(_race, tasks, workers=2)
    assert a == b  # seeded from the config: both trainings wrote the same weights
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[1].startswith("race-") and files[1].endswith(".pt")  # no temporary leftovers
    assert files[0] == cache.cost_path(tmp_path / files[1]).name  # beside it only its training cost record
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    loaded = cache.train_or_load("race", {"w": 1}, lambda: nn.Linear(64, 8), lambda m: pytest.fail("retrained"))
    assert loaded.weight.flatten().tolist() == a


def test_tasks_carry_the_config_and_their_coordinates():
    cfg = ("a frozen config",)
    out = grid.tasks(cfg, dataset=["a", "b"], seed=[0, 1])
    assert [(t["dataset"], t["seed"]) for t in out] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert all(t["cfg"] is cfg for t in out)
    with pytest.raises(TypeError):  # the config is the first argument, never an axis
        grid.tasks(cfg, **{"cfg": [1]})


def test_a_task_seed_depends_on_its_coordinates_only():
    a = {"cfg": "profile one", "dataset": "mnist", "seed": 3}
    assert grid.task_seed(a) == grid.task_seed(a | {"cfg": "profile two, an hour later"})
    assert grid.task_seed(a) == grid.task_seed({"seed": 3, "dataset": "mnist", "cfg": None})  # key order
    assert grid.task_seed(a) != grid.task_seed(a | {"seed": 4})
    assert grid.task_seed(a) != grid.task_seed(a | {"dataset": "pneumoniamnist"})


def _draws(task: dict) -> list[dict]:
    """Rows that depend on the task's random state alone (what an unseeded part of run_seed would draw)."""
    return [{"dataset": task["dataset"], "seed": task["seed"], "value": float(torch.rand(1)), "np": np.random.rand()}]


def test_a_larger_grid_leaves_the_rows_of_the_others_bitwise_unchanged():
    small = grid.table(_draws, grid.tasks("cfg", dataset=["a"], seed=[0, 1]), workers=1)
    wider = grid.table(_draws, grid.tasks("cfg", dataset=["a", "b"], seed=[0, 1, 2]), workers=1)
    later = grid.table(_draws, grid.tasks("other cfg", dataset=["a"], seed=[0, 1]), workers=1)
    shared = wider[(wider.dataset == "a") & wider.seed.isin([0, 1])].reset_index(drop=True)
    assert shared.equals(small) and later.equals(small)


def test_a_real_experiment_row_does_not_depend_on_the_rest_of_the_grid(writable_mirror, tmp_path, monkeypatch):
    """Notebook 00's run_seed at a tiny size: a seed's rows are the same with one seed or two in the grid, and on
    a re-run (the task seed, the cache and the data draws depend only on the coordinates and the config)."""
    from latentlab import data
    from latentlab.config import ClfConfig
    from latentlab.experiments import budget

    monkeypatch.setenv("LATENTLAB_DATA", str(writable_mirror))
    data.load_cached.cache_clear()
    clf = ClfConfig(arch="cnn", width=4, steps=4, min_epochs=1, batch=16, lr=1e-3, class_weight="balanced",
                    monitor="auc", val_checks=2, lr_decay=None)
    cfg = budget.Config(curve_dataset="breastmnist", tour_datasets=(), budgets=(20,), seeds=(0, 1), clf=clf,
                        workers=1)
    one = grid.table(budget.run_seed, grid.tasks(cfg, budget=[20], seed=[0]), workers=1)
    two = grid.table(budget.run_seed, grid.tasks(cfg.replace(seeds=(0, 1)), budget=[20, 30], seed=[1, 0]), workers=1)
    again = grid.table(budget.run_seed, grid.tasks(cfg, budget=[20], seed=[0]), workers=1)
    mine = two[(two.seed == 0) & (two.arm == 20)].reset_index(drop=True)
    assert mine.equals(one) and again.equals(one)


def _mixed_rows(task):
    return [{"dataset": "d", "arm": "a", "seed": task["seed"], "metric": "accuracy", "value": 0.5},
            {"instrument": "vae", "dataset": "d", "seed": task["seed"], "check": "recon_mse", "value": 0.1,
             "threshold": 0.2, "passed": True}]


def test_tables_splits_result_rows_from_gate_rows_in_task_order():
    from latentlab.results import INSTRUMENT_COLUMNS

    res, inst = grid.tables(_mixed_rows, [{"seed": s} for s in range(3)], workers=1)
    assert res["seed"].tolist() == [0, 1, 2] and "instrument" not in res.columns
    assert list(inst.columns) == INSTRUMENT_COLUMNS and inst["seed"].tolist() == [0, 1, 2]
