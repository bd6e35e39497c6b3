"""The library's imports form a tree that only points down: every module sits in a layer, and imports only from
its own layer or below (never up), with no cycles. A new module must be given a layer here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "latentlab"


def _module(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """latentlab modules a file imports at module level or inside functions (`import latentlab` alone excluded:
    it only applies the torchvision shim)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentlab"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("latentlab.")]
        found |= {n for n in names if n in modules and n != "latentlab"}
    return found


def test_no_import_cycles():
    files = {_module(p): p for p in LIB.rglob("*.py")}
    graph = {m: _imports(p, set(files)) - {m} for m, p in files.items()}
    # a package's __init__ re-exporting its own submodules is not a cycle with them
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in graph[m]:
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*path, m, d])
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [])
    assert "latentlab.train" in graph and graph["latentlab.stats"] == set()  # the graph was really built


# From the bottom up. A module's layer is that of the longest prefix listed.
LAYERS = [
    ["latentlab", "latentlab._compat", "latentlab.config", "latentlab.data", "latentlab.losses", "latentlab.metrics",
     "latentlab.repro", "latentlab.results", "latentlab.stats", "latentlab.utils"],
    ["latentlab.cache", "latentlab.frechet", "latentlab.gates", "latentlab.grid", "latentlab.perturb",
     "latentlab.ledger", "latentlab.plotting", "latentlab.runner"],
    ["latentlab.models"],
    ["latentlab.train"],
    ["latentlab.oracle", "latentlab.samplers"],
    ["latentlab.experiments"],
    ["latentlab.papers"],
    ["latentlab.plots"],
    ["latentlab.validate"],  # the output check: runs notebooks through runner, imports nothing of the method layers
]


def layer(module: str) -> int:
    """The layer of a module: that of the longest listed name it equals or lies under."""
    best = None
    for level, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (level, name)
    assert best is not None, f"{module} has no layer in tests/test_layering.py: give it one"
    return best[0]


def test_imports_only_point_down():
    files = {_module(p): p for p in LIB.rglob("*.py")}
    upward = []
    for m, p in files.items():
        for d in _imports(p, set(files)) - {m}:
            if d.startswith(m + "."):  # a package re-exporting its own submodules
                continue
            if layer(d) > layer(m):
                upward.append(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))
    assert layer("latentlab.models.iterated") < layer("latentlab.train")  # the old upward arrow stays gone


def test_the_upward_check_catches_an_upward_import(tmp_path, monkeypatch):
    pkg = tmp_path / "latentlab"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "net.py").write_text("from latentlab.train import loss_fn\n")
    (pkg / "train.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "LIB", pkg)
    with pytest.raises(AssertionError, match="latentlab.models.net .* imports latentlab.train"):
        test_imports_only_point_down()


def test_the_cycle_check_catches_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "latentlab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from latentlab.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from latentlab import a\n")
    (pkg / "stats.py").write_text("")
    (pkg / "train.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "LIB", pkg)
    try:
        test_no_import_cycles()
    except AssertionError as err:
        assert "import cycle" in str(err)
    else:
        raise AssertionError("a cycle went unnoticed")
