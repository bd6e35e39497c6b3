"""Tidy result rows, the one shape every notebook's results.csv has: (dataset, arm, seed, metric, value, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS = ["dataset", "arm", "seed", "metric", "value"]
# The rows of a quality gate (latentlab.gates): a measured value, its threshold, pass or fail. A run_seed returns them
# in the same list as its result rows; `grid.tables` tells them apart by their `instrument` key.
INSTRUMENT_COLUMNS = ["instrument", "dataset", "seed", "check", "value", "threshold", "passed"]


def rows(dataset: str, arm: str, seed: int, values: Mapping[str, Any], **extra) -> list[dict]:
    """One row per metric of `values`, each carrying the same extra columns (n_synthetic=..., classifier=...)."""
    return [{"dataset": dataset, "arm": arm, "seed": seed, "metric": k, "value": v, **extra} for k, v in values.items()]
