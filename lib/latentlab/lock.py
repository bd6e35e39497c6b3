"""The locked environment: requirements-lock.txt pins every package `latentlab[dev,book]` needs, as tested.

    python lib/latentlab/lock.py write      # from the current venv (after `make test` passed in it)
    python lib/latentlab/lock.py check      # exit 1 when pyproject.toml and the lock disagree
    python lib/latentlab/lock.py pip-args   # what `make env` passes to pip (the lock, the CPU torch index)

The lock is the closure of pyproject.toml's dependencies and its dev and book extras over the installed
packages' own metadata, each pinned `name==version`, for Linux and the Python it was written on; torch is the CPU
build (`+cpu`), from the PyTorch CPU index (`make env` adds it when it answers; else pip finds the wheel in its usual
places). The header holds a hash of pyproject.toml's requirement lists: change them and `check` (tests/test_lock.py)
fails until the lock is written again. Standard library only: `make env` runs it before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYPROJECT, LOCK = REPO / "pyproject.toml", REPO / "requirements-lock.txt"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
EXTRAS = ("dev", "book")  # the extras `make env` installs


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _project(pyproject: Path) -> dict:
    import tomllib

    return tomllib.loads(pyproject.read_text())["project"]


def requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """pyproject.toml's dependencies and the locked extras, as written there."""
    project = _project(pyproject)
    return list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]]


def fingerprint(pyproject: Path = PYPROJECT) -> str:
    """A hash of what the lock must satisfy: the requirement lists and requires-python."""
    project = _project(pyproject)
    blob = json.dumps([requirements(pyproject), project.get("requires-python")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def closure(reqs: list[str]) -> dict[str, str]:
    """{canonical name: installed version} of reqs and everything they need (markers evaluated here)."""
    from packaging.requirements import Requirement

    todo = [(Requirement(r), ()) for r in reqs]
    found: dict[str, str] = {}
    seen: set[tuple[str, tuple]] = set()
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras or ("",))):
            continue
        name = canonical(req.name)
        if (name, tuple(sorted(req.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(req.extras))))
        dist = metadata.distribution(req.name)
        found[name] = dist.version
        wanted = tuple(sorted(req.extras))
        for sub in dist.requires or []:
            todo.append((Requirement(sub), wanted))
    return dict(sorted(found.items()))


def write(path: Path = LOCK, pyproject: Path = PYPROJECT) -> Path:
    """The lock of the current environment."""
    pins = closure(requirements(pyproject))
    pins.pop("latentlab", None)
    lines = ["# latentlab's locked, tested environment: every package `pip install -e .[dev,book]` needs, pinned as",
             "# tested.",
             f"# Linux x86_64, Python {platform.python_version()}; torch is the CPU build ({TORCH_INDEX}).",
             "# Written by `python lib/latentlab/lock.py write` from the venv that passed `make test`; `make env`",
             "# installs it (pip -c); tests/test_lock.py fails when pyproject.toml's requirements change without a new",
             "# lock.",
             f"# pyproject-fingerprint: {fingerprint(pyproject)}"]
    lines += [f"{name}=={version}" for name, version in pins.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read(path: Path = LOCK) -> tuple[str | None, dict[str, str]]:
    """(the pyproject fingerprint it was written for, {canonical name: version})."""
    stamp, pins = None, {}
    for line in path.read_text().splitlines():
        if line.startswith("# pyproject-fingerprint:"):
            stamp = line.split(":", 1)[1].strip()
        elif line and not line.startswith(("#", "-")):
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return stamp, pins


def disagreements(pyproject: Path = PYPROJECT, path: Path = LOCK) -> list[str]:
    """Why the lock does not fit pyproject.toml (empty when it does): an outdated fingerprint, a requirement the lock
    does not pin, or a pin outside the requirement's bounds."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    stamp, pins = read(path)
    bad = []
    if stamp != fingerprint(pyproject):
        bad.append(f"{path.name} was written for other requirements (fingerprint {stamp}, pyproject.toml now "
                   f"{fingerprint(pyproject)}): run `python lib/latentlab/lock.py write` in a venv that passed the "
                   "tests")
    for spec in requirements(pyproject):
        req = Requirement(spec)
        name = canonical(req.name)
        if name not in pins:
            bad.append(f"{req.name} (pyproject.toml) is not pinned in {path.name}")
        elif not req.specifier.contains(Version(pins[name]).public, prereleases=True):
            bad.append(f"{name}=={pins[name]} in {path.name} is outside pyproject.toml's {spec!r}")
    return bad


def pip_args(path: Path = LOCK) -> list[str]:
    """`make env`'s extra pip arguments: the lock as constraints on Linux (its wheels are Linux builds), and the
    PyTorch CPU index when it answers (otherwise pip's own configuration has to provide the +cpu wheel)."""
    if not sys.platform.startswith("linux") or not path.exists():
        print(f"make env: no lock for {sys.platform}; installing pyproject.toml's ranges", file=sys.stderr)
        return []
    args = ["-c", str(path)]
    try:
        urllib.request.urlopen(TORCH_INDEX + "/torch/", timeout=5).close()
        args += ["--extra-index-url", TORCH_INDEX]
    except OSError:
        print(f"make env: {TORCH_INDEX} does not answer; torch's +cpu wheel must come from pip's configured sources",
              file=sys.stderr)
    return args


def main(argv: list[str] | None = None) -> int:
    command = (argv or sys.argv[1:] or ["check"])[0]
    if command == "write":
        print(f"wrote {write()}")
    elif command == "pip-args":
        print(" ".join(pip_args()))
    elif command == "check":
        bad = disagreements()
        print("\n".join(bad) or f"{LOCK.name} fits pyproject.toml")
        return 1 if bad else 0
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
