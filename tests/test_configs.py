"""Profiles, notebooks and packaging stay consistent."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import papermill as pm
import pytest
import tomllib
import yaml

from latentlab import runner

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("profile", ["smoke", "classroom", "paper"])
def test_every_override_names_a_real_parameter(profile):
    assert runner.unknown_overrides(profile) == []


def test_a_misspelt_override_is_caught(tmp_path, monkeypatch):
    stem = NOTEBOOKS[0].stem
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump({stem: {"SEEDZ": [0]}, "99_nothing": {"A": 1}}))
    monkeypatch.setattr(runner, "CONFIGS", tmp_path)
    bad = runner.unknown_overrides("smoke")
    assert any("SEEDZ" in b for b in bad) and any("99_nothing" in b for b in bad)


def test_every_notebook_has_a_smoke_profile():
    smoke = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    assert {nb.stem for nb in NOTEBOOKS} <= set(smoke)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_first_and_holds_upper_case_literals_only(nb):
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "the first code cell must be tagged 'parameters'"
    names = []
    for node in ast.parse("".join(code[0]["source"])).body:
        assert isinstance(node, ast.Assign), f"only assignments in the parameters cell: {ast.unparse(node)}"
        names.append(node.targets[0].id)
        assert names[-1].isupper(), f"{names[-1]} is not UPPER_CASE"
        ast.literal_eval(node.value)  # raises on anything but a literal
    # papermill must see every one of them (a '=' inside a trailing comment, say, hides a parameter)
    assert sorted(pm.inspect_notebook(str(nb))) == sorted(names)


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", s, maxsplit=1)[0].lower() for s in specs}


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _names([p for p in pip if not p.startswith("-e")]) == _names(wanted)
    assert "-e .[dev]" in pip and "python=3.11" in env["dependencies"]
    # the specifiers match too, so conda users get the same tested versions
    assert sorted(p for p in pip if not p.startswith("-e")) == sorted(wanted)


def test_runner_executes_in_place_at_a_profile_and_keeps_diffs_small(tmp_path, monkeypatch):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("N = 3\nPROFILE = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("from latentlab import config\n"
                                  "config.apply_profile(globals(), PROFILE, '07_tiny', ['N'])"),
        nbformat.v4.new_code_cell("print('N is', N)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "07_tiny.ipynb"
    nbformat.write(nb, path)
    (tmp_path / "smoke.yaml").write_text("07_tiny:\n  N: 5\n")
    monkeypatch.setattr(runner, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setattr(runner, "profiles", lambda: ["smoke"])
    monkeypatch.setenv("LATENTLAB_CONFIGS", str(tmp_path))  # the kernel reads the profile from here

    runner.execute(path, path, "smoke")
    out = nbformat.read(path, as_version=4)
    assert "N is 5" in out.cells[-1].outputs[0]["text"]
    assert out.metadata["papermill"] == {"profile": "smoke", "parameters": {"PROFILE": "smoke"}}  # PROFILE alone
    assert out.metadata["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    assert not any("papermill" in c.metadata or "execution" in c.metadata for c in out.cells)

    runner.execute(path, path, "default")  # back to the default: the smoke injection must go
    out = nbformat.read(path, as_version=4)
    assert "N is 3" in out.cells[-1].outputs[0]["text"]
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in out.cells)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_opening_a_notebook_in_jupyterlab_leaves_it_unchanged(nb):
    """JupyterLab rewrites a kernelspec other than ipykernel's on open (and autosave then marks the file modified)."""
    meta = json.loads(nb.read_text())["metadata"]
    assert meta["kernelspec"] == runner.KERNELSPEC


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_runnable_folded_code_cells(nb):
    cells = json.loads(nb.read_text())["cells"]
    solutions = [c for c in cells if "solution" in c["metadata"].get("tags", [])]
    code = [c for c in solutions if c["cell_type"] == "code"]
    assert code, "every notebook's exercises have solution cells (code, tagged 'solution')"
    assert all(c["metadata"].get("jupyter", {}).get("source_hidden") for c in solutions), "solutions are folded"
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "<details>" not in text and "yours to measure" not in text
