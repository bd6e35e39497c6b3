"""requirements-lock.txt fits pyproject.toml, and the check notices when they part."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from latentlab import lock

REPO = Path(__file__).resolve().parents[1]


def test_the_lock_fits_pyproject():
    assert lock.disagreements(REPO / "pyproject.toml", REPO / "requirements-lock.txt") == []


def test_the_lock_pins_cpu_torch_and_every_requirement():
    _, pins = lock.read(REPO / "requirements-lock.txt")
    assert pins["torch"].endswith("+cpu")
    names = {lock.canonical(r.split("[")[0].split(">")[0].split("<")[0].split("=")[0]) for r in lock.requirements()}
    assert names <= set(pins) and "latentlab" not in pins


@pytest.fixture
def copies(tmp_path):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copy(REPO / "requirements-lock.txt", tmp_path / "lock.txt")
    return tmp_path / "pyproject.toml", tmp_path / "lock.txt"


def test_a_new_requirement_without_a_new_lock_is_caught(copies):
    pyproject, path = copies
    pyproject.write_text(pyproject.read_text().replace('"pyyaml",', '"pyyaml",\n    "rich",'))
    bad = lock.disagreements(pyproject, path)
    assert any("fingerprint" in b for b in bad) and any("rich" in b and "not pinned" in b for b in bad)


def test_a_pin_outside_the_bounds_is_caught(copies):
    pyproject, path = copies
    _, pins = lock.read(path)
    path.write_text(path.read_text().replace(f"torch=={pins['torch']}", "torch==2.1.0"))
    assert any("torch==2.1.0" in b and "outside" in b for b in lock.disagreements(pyproject, path))


def test_writing_the_lock_reproduces_the_committed_one(tmp_path):
    """In CI's venv, which `make env` built from the lock, `lock.py write` gives the committed pins: what make env
    installs is what the tests ran on. (Locally a venv may hold more or older packages: CI only.)"""
    if not (os.environ.get("CI") and sys.prefix.endswith(".venv")):
        pytest.skip("CI only: the venv `make env` built from the lock")
    _, committed = lock.read(REPO / "requirements-lock.txt")
    _, fresh = lock.read(lock.write(tmp_path / "lock.txt", REPO / "pyproject.toml"))
    differ = {k: (committed.get(k), fresh.get(k)) for k in set(committed) | set(fresh)
              if committed.get(k) != fresh.get(k)}
    assert not differ, f"this venv differs from the lock: {differ}"


def test_pip_args_use_the_lock_as_constraints_on_linux(monkeypatch):
    monkeypatch.setattr(lock.sys, "platform", "linux")
    monkeypatch.setattr(lock.urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert lock.pip_args(REPO / "requirements-lock.txt") == ["-c", str(REPO / "requirements-lock.txt")]
    monkeypatch.setattr(lock.sys, "platform", "darwin")
    assert lock.pip_args(REPO / "requirements-lock.txt") == []


def test_binder_installs_the_lock():
    text = (REPO / "binder" / "requirements.txt").read_text()
    assert "-r ../requirements-lock.txt" in text.splitlines() and lock.TORCH_INDEX in text
    assert "pip install --no-deps -e ." in (REPO / "binder" / "postBuild").read_text()
