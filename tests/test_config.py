"""One config convention: a notebook's parameters cell is one frozen config, unknown names refused."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import pytest
import yaml

import latentlab.experiments
from latentlab import config
from latentlab.config import ClfConfig, OracleConfig, Params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@dataclasses.dataclass(frozen=True)
class Toy(Params):
    NOTEBOOK = "99_toy"

    seeds: tuple[int, ...]
    m_small: int
    clf: ClfConfig
    oracle: OracleConfig


CLF = dict(CLF_ARCH="cnn", CLF_WIDTH=8, CLF_STEPS=100, CLF_MIN_EPOCHS=1, CLF_BATCH=32, CLF_LR=1e-3,
           CLF_CLASS_WEIGHT=None, CLF_MONITOR="loss", CLF_VAL_CHECKS=5, CLF_LR_DECAY=None)
ORACLE = dict(ORACLE_ARCH="cnn", ORACLE_WIDTH=16, ORACLE_STEPS=300, ORACLE_MAX_IMAGES=None)
PARAMS = dict(SEEDS=[0, 1], M_SMALL=200, **CLF, **ORACLE)


def test_parameters_map_to_fields_and_back():
    cfg = Toy.from_parameters(PARAMS)
    assert cfg.m_small == 200 and cfg.seeds == (0, 1)  # lists become tuples
    assert cfg.clf.steps == 100 and cfg.oracle.arch == "cnn" and cfg.clf.class_weight is None
    assert cfg.parameters() == PARAMS | {"SEEDS": (0, 1)}
    assert Toy.parameter_names() == list(PARAMS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.m_small = 3


def test_unknown_and_missing_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown \['M_SMAL'\].*Valid parameters: SEEDS, M_SMALL, CLF_ARCH"):
        Toy.from_parameters(PARAMS | {"M_SMAL": 3})
    with pytest.raises(ValueError, match=r"missing \['CLF_STEPS'\]"):
        Toy.from_parameters({k: v for k, v in PARAMS.items() if k != "CLF_STEPS"})
    assert Toy.from_parameters(PARAMS | {"PROFILE": "smoke"}) == Toy.from_parameters(PARAMS)  # the one meta name


def test_from_notebook_applies_the_profile_and_ignores_helpers(tmp_path, monkeypatch):
    (tmp_path / "quick.yaml").write_text(yaml.safe_dump({"99_toy": {"M_SMALL": 5, "CLF_STEPS": 7}}))
    monkeypatch.setattr(config, "CONFIGS", tmp_path)
    namespace = dict(PARAMS, PROFILE=None, NB="99_toy", T0=123.4)
    assert Toy.from_notebook(dict(namespace)) == Toy.from_parameters(PARAMS)  # NB, T0: not parameters, not carried
    namespace["PROFILE"] = "quick"
    cfg = Toy.from_notebook(namespace)
    assert (cfg.m_small, cfg.clf.steps) == (5, 7) and namespace["M_SMALL"] == 5  # later cells see the override
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"99_toy": {"M_SMALLL": 5}}))
    with pytest.raises(ValueError, match="M_SMALLL.*Valid parameters"):
        Toy.from_notebook(dict(PARAMS, PROFILE="bad"))
    with pytest.raises(ValueError, match="Unknown profile 'nope'"):
        Toy.from_notebook(dict(PARAMS, PROFILE="nope"))


def _cell_parameters(nb: Path) -> dict:
    code = [c for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
    tree = ast.parse("".join(code[0]["source"]))
    return {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body}


def _configs() -> dict[str, type]:
    found = {}
    for mod in pkgutil.iter_modules(latentlab.experiments.__path__):
        module = importlib.import_module(f"latentlab.experiments.{mod.name}")
        cls = getattr(module, "Config", None)
        if isinstance(cls, type) and issubclass(cls, Params) and cls.NOTEBOOK:
            found[cls.NOTEBOOK] = cls
    return found


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_parameter_is_a_config_field_and_back(nb):
    configs = _configs()
    assert nb.stem in configs, f"no experiments module has a Config with NOTEBOOK = {nb.stem!r}"
    cls, cell = configs[nb.stem], _cell_parameters(nb)
    assert cell.get("PROFILE", "absent") is None, "the parameters cell must hold PROFILE = None"
    cell.pop("PROFILE")
    assert sorted(cls.parameter_names()) == sorted(cell), "parameters cell and Config fields differ"
    cfg = cls.from_parameters(cell)
    assert cfg.parameters() == {k: config._frozen(v) for k, v in cell.items()}


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_every_profile_override_builds_a_config(profile):
    configs = _configs()
    for nb in NOTEBOOKS:
        changes = config.overrides(profile, nb.stem)
        cell = {k: v for k, v in _cell_parameters(nb).items() if k != "PROFILE"}
        cfg = configs[nb.stem].from_parameters(cell | changes)  # raises on an unknown override
        assert all(cfg.parameters()[k] == config._frozen(v) for k, v in changes.items())


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_builds_a_config_from_keyword_arguments(nb):
    for cell in json.loads(nb.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith("%"))
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
                assert not (name.endswith("Config") and node.keywords), \
                    f"a cell builds {name}(...) from keyword arguments: use Config.from_notebook / .replace"
