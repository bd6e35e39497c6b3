"""What repeats exactly and what does not: notebook 00's label-budget grid run three ways (a measurement script, not a
unit test; `python tests/repeatability.py`, minutes of CPU).

Usage: `python tests/repeatability.py [BUDGET ...]` (default: every budget of the notebook's profile; e.g. `20 200 1000`
for a quicker look). The seeds and every other parameter are the notebook's.

1. the grid with 1 worker (in-process) and with 2 worker processes: must be identical, value for value;
2. the same grid with 2 torch threads per task instead of 1: a stand-in for another machine, where the floating-point
   order of a convolution differs; how many result rows change, by how much, and do the means move beyond the seed
   spread?
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

import latentlab  # noqa: F401
from latentlab import grid
from latentlab.experiments import budget

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_setup_and_data.ipynb"


def config() -> budget.Config:
    """The notebook's default profile: its parameters cell, executed."""
    namespace: dict = {}
    exec("".join(json.loads(NOTEBOOK.read_text())["cells"][1]["source"]), namespace)
    return budget.Config.from_notebook(namespace)


def run(workers: int, threads: int) -> pd.Series:
    cfg = config()
    budgets = [int(b) for b in sys.argv[1:]] or cfg.budgets
    tasks = grid.tasks(cfg, budget=budgets, seed=cfg.seeds)
    rows = grid.table(budget.run_seed, tasks, workers=workers, threads=threads, desc=f"{workers}w x {threads}t")
    return rows.set_index(["arm", "seed", "metric"])["value"]


if __name__ == "__main__":
    one, two = run(1, 1), run(2, 1)
    print(f"1 worker vs 2 workers: {int((one != two).sum())} of {len(one)} result rows differ")
    threads = run(2, 2)
    diff = (threads - two).abs()
    print(f"1 vs 2 torch threads per task: {int((diff > 0).sum())} of {len(diff)} rows differ, "
          f"max |diff| {diff.max():.3f} ({diff.idxmax()})")
    for metric in ("accuracy", "auc"):
        a, b = (s.xs(metric, level="metric").groupby("arm") for s in (two, threads))
        shift = (a.mean() - b.mean()).abs()
        spread = a.std()
        print(f"{metric}: mean per budget moved by at most {shift.max():.3f}; "
              f"budgets where the move exceeds the seed sd: {int((shift > spread).sum())} of {len(shift)}")
