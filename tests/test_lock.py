"""requirements-lock.txt fits pyproject.toml, and the check notices when they part."""

from __future__ import annotations

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
    """Run in the tested environment, `lock.py write` gives the committed pins (what make env installs is what ran)."""
    if not sys.prefix.endswith(".venv"):
        pytest.skip("not in a project venv")
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
