"""Run an experiment grid (dataset x seed, or finer) in parallel worker processes, or on a Dask cluster.

A notebook's per-seed work is one function `fn(task) -> result` of a small, picklable task: the notebook's frozen
config and the task's coordinates, `{"cfg": CFG, "dataset": ..., "seed": ...}` (`tasks`). Each worker loads its
own data (`latentlab.data.load_cached`) and trains its own models
(cached by config, `latentlab.cache.train_or_load`), so nothing large crosses process boundaries.

* Locally, through joblib (loky processes): one worker per core by default, one torch thread each: small CPU
  models scale far better over processes than over threads. `LATENTLAB_WORKERS=N` overrides the number;
  `LATENTLAB_WORKERS=1` runs every task in this process, one after another (for debugging in JupyterLab).
* On a cluster: with `LATENTLAB_DASK_SCHEDULER=tcp://host:port` the same grid goes to that `dask.distributed`
  scheduler. Its workers need latentlab installed and the same `LATENTLAB_DATA` / `LATENTLAB_CACHE` (a shared
  folder) as you would set locally.

Every task runs inside `repro.isolated_rng`, seeded from the task itself, with the same number of torch threads
wherever it runs: which worker (or machine) ran a task, and in what order, does not change its result. (NumPy's and
torch's global generators, that is. Python's `random` module is shared with Dask's own threads inside a Dask worker;
latentlab never draws from it.)
"""

from __future__ import annotations

import itertools
import os
import warnings
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import torch

from latentlab.repro import isolated_rng
from latentlab.results import INSTRUMENT_COLUMNS
from latentlab.utils import progress


def n_workers(workers: int | None = None) -> int:
    """Worker processes to use: `workers` if given, else $LATENTLAB_WORKERS, else the cores this process may use."""
    if workers is None:
        env = os.environ.get("LATENTLAB_WORKERS", "").strip()
        if env:
            try:
                workers = int(env)
            except ValueError:
                raise ValueError(f"LATENTLAB_WORKERS must be a whole number; got {env!r}.") from None
        else:
            try:
                workers = len(os.sched_getaffinity(0))
            except AttributeError:  # macOS, Windows
                workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"The number of workers must be at least 1; got {workers}.")
    return workers


def tasks(cfg: Any, **axes: Iterable) -> list[dict]:
    """The grid: one task per combination of the axes, e.g. tasks(CFG, dataset=DATASETS, seed=SEEDS), each task
    {"cfg": cfg, <axis>: value, ...} (first axis outermost). The config travels whole; the coordinates alone
    decide the task's random state (`task_seed`)."""
    names = list(axes)
    return [{"cfg": cfg} | dict(zip(names, values)) for values in itertools.product(*(list(axes[n]) for n in names))]


def coordinates(task: Any) -> Any:
    """A task's coordinates: every entry but its config (dataset, seed, ...), sorted by name."""
    if isinstance(task, dict):
        return tuple(sorted((k, v) for k, v in task.items() if k != "cfg"))
    return task


def task_seed(task: Any) -> int:
    """A stable seed from a task's coordinates alone: the random state a task starts from, wherever it runs. It does
    not change when the grid gains a dataset or a seed, nor with the parameters (they act through the config)."""
    return zlib.crc32(repr(coordinates(task)).encode()) % 2**31


def describe(task: Any) -> str:
    """A task's coordinates for messages."""
    return repr(dict(coordinates(task))) if isinstance(task, dict) else repr(task)


def call(fn: Callable[[Any], Any], task: Any, threads: int = 1) -> Any:
    """Run fn(task) with `threads` torch threads and the task's own random state; say which task failed."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with isolated_rng(task_seed(task)):
            return fn(task)
    except Exception as err:
        raise RuntimeError(f"Task {describe(task)} failed: {type(err).__name__}: {err}") from err
    finally:
        torch.set_num_threads(previous)


def _worker_call(index: int, fn: Callable[[Any], Any], task: Any, threads: int) -> tuple[int, Any]:
    os.environ["LATENTLAB_PROGRESS"] = "0"  # workers' bars would interleave; the grid's own bar counts tasks
    return index, call(fn, task, threads)


def run(fn: Callable[[Any], Any], tasks: Iterable[Any], *, workers: int | None = None, desc: str | None = None,
        threads: int = 1, client=None) -> list:
    """[fn(task) for task in tasks], computed in parallel; results come back in the order of `tasks`.

    workers: processes (default `n_workers()`); threads: torch threads per task. client: a `dask.distributed.Client`
    to use instead of local processes (default: one for $LATENTLAB_DASK_SCHEDULER when that is set).
    """
    tasks = list(tasks)
    address = os.environ.get("LATENTLAB_DASK_SCHEDULER", "").strip()
    if client is None and address:
        from dask.distributed import Client

        client = Client(address)
    bar = progress(total=len(tasks), desc=desc or "tasks")
    try:
        if client is not None:
            return _run_dask(fn, tasks, threads, client, bar)
        n = min(n_workers(workers), max(1, len(tasks)))
        if n == 1:
            return [_counted(bar, call(fn, task, threads)) for task in tasks]
        return _run_joblib(fn, tasks, threads, n, bar)
    finally:
        bar.close()


def table(fn: Callable[[Any], list[dict]], tasks: Iterable[Any], **kwargs):
    """`run` for per-task lists of tidy rows: one pandas DataFrame of every task's rows, in task order."""
    import pandas as pd

    return pd.DataFrame([row for rows in run(fn, tasks, **kwargs) for row in rows])


def tables(fn: Callable[[Any], list[dict]], tasks: Iterable[Any], **kwargs):
    """`run` for tasks that return result rows and gate rows (`results.INSTRUMENT_COLUMNS`, told apart by their
    `instrument` key) in one list: (results, instruments), two DataFrames in task order."""
    import pandas as pd

    rows = [row for rows in run(fn, tasks, **kwargs) for row in rows]
    instruments = pd.DataFrame([r for r in rows if "instrument" in r], columns=INSTRUMENT_COLUMNS)
    return pd.DataFrame([r for r in rows if "instrument" not in r]), instruments


def _counted(bar, result):
    bar.update()
    return result


def _run_joblib(fn, tasks: list, threads: int, n: int, bar) -> list:
    from joblib import Parallel, delayed

    # loky replaces a worker whose memory grew by 300 MB between two tasks (its leak guard) and warns; ours grow by
    # design (each keeps its datasets loaded), the replacement only reloads them, and no task is lost.
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor")
    out: list = [None] * len(tasks)
    jobs = (delayed(_worker_call)(i, fn, task, threads) for i, task in enumerate(tasks))
    # Idle workers live an hour (not loky's 5 minutes), so a notebook's next grid finds them with their data loaded.
    parallel = Parallel(n_jobs=n, backend="loky", return_as="generator_unordered", idle_worker_timeout=3600)
    for i, result in parallel(jobs):
        out[i] = result
        bar.update()
    return out


def _run_dask(fn, tasks: list, threads: int, client, bar) -> list:
    from dask.distributed import as_completed

    futures = client.map(_worker_call, range(len(tasks)), [fn] * len(tasks), tasks, [threads] * len(tasks),
                         pure=False)
    out: list = [None] * len(tasks)
    for future in as_completed(futures):
        i, result = future.result()
        out[i] = result
        bar.update()
    return out
