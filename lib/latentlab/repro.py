"""Reproducibility: seeds, device choice and CPU threads."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run repeats exactly on one machine."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.backends.cudnn.is_available():
        # cuDNN picks algorithms by timing; that choice is not repeatable.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block seeded with `seed`, then restore every RNG (Python, NumPy, torch CPU and CUDA) as it was.

    What happens inside cannot shift the caller's random stream: a cached model that is loaded instead of
    trained leaves the rest of a notebook exactly as a fresh training would.
    """
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():  # torch CPU and every CUDA device
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve 'auto' to cuda, then mps, then cpu; pass anything else through."""
    if isinstance(device, torch.device):
        return device
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_threads(n: int | None = None) -> int:
    """Use n CPU threads (default: the cores this process may run on, at most 8) and return the number."""
    if n is None:
        try:
            available = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS and Windows have no sched_getaffinity
            available = os.cpu_count() or 1
        # Past ~8 threads small convolutions get slower on CPU, not faster.
        n = max(1, min(available, 8))
    torch.set_num_threads(n)
    return n
