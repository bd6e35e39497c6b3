"""Shared fixtures: the offline data mirror and a quiet, single-threaded torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import latentlab  # noqa: F401  (torchvision shim first)

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("LATENTLAB_PROGRESS", "0")
torch.set_num_threads(1)  # tiny models: threads cost more than they give


def _mirror() -> Path:
    """The data root the loaders use ($LATENTLAB_DATA), else the read-only ../shared/data beside the repo."""
    return Path(os.environ.get("LATENTLAB_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def mirror() -> Path:
    """A folder holding the offline mirror; in CI its absence is a failure, elsewhere a skip."""
    root = _mirror()
    if not (root / "medmnist" / "pneumoniamnist.npz").exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the data mirror at {root} (set LATENTLAB_DATA)")
        pytest.skip(f"no data mirror at {root}; set LATENTLAB_DATA")
    return root


@pytest.fixture(scope="session")
def writable_mirror(mirror: Path, tmp_path_factory) -> Path:
    """A data root the loaders may write to: $LATENTLAB_DATA when set (CI points it at a copy), else a copy.

    Never the shared mirror itself: torchvision extracts .gz files in place, and root may write anywhere.
    """
    if os.environ.get("LATENTLAB_DATA"):
        return mirror
    import shutil

    dst = tmp_path_factory.mktemp("data")
    shutil.copytree(mirror, dst, dirs_exist_ok=True)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture(autouse=True)
def _profile_restored(monkeypatch):
    """`config.announce` (called by every Config.from_notebook) records the profile in $LATENTLAB_PROFILE and, at
    smoke, adds a matplotlib figure hook: neither may leak from one test into the next."""
    import matplotlib

    monkeypatch.delenv("LATENTLAB_PROFILE", raising=False)
    hooks = list(matplotlib.rcParams["figure.hooks"])
    yield
    matplotlib.rcParams["figure.hooks"] = hooks
