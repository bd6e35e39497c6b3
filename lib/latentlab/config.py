"""One config convention for every notebook: its `parameters` cell becomes one frozen config.

A notebook's first code cell, tagged `parameters`, holds UPPER_CASE literals (the default profile) and
`PROFILE = None`. The cell right after it makes them one frozen, typed config in one call:

    CFG = aisel.Config.from_notebook(globals())

which applies `configs/<PROFILE>.yaml` when PROFILE is set (the overrides are written back into the notebook's
namespace, so later cells see them), and refuses any unknown or missing name with the list of valid ones.

Names map to fields by lower-casing: `M_SMALL` is `cfg.m_small`. A field typed with a nested config (`clf:
ClfConfig`) takes the parameters that start with its name: `CLF_STEPS` is `cfg.clf.steps`, `ORACLE_ARCH` is
`cfg.oracle.arch`. So a parameter reaches its use under one name. Configs hold no defaults: the notebook's cell is
the only place a value is written. `PROFILE` itself is the one name that is not a field (it chooses values, it is
not one).

Lists become tuples (the config is frozen and its repr stable); dicts stay dicts.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = Path(os.environ.get("LATENTLAB_CONFIGS", REPO / "configs"))  # the profiles' folder
META = ("PROFILE",)  # parameters that choose a profile; not config fields
PROFILE_DIR = "LATENTLAB_FIGURES_PROFILE"  # `make figures PROFILE=p` (p not default) sets it to p: outputs go to
# figures/<notebook>/<p>/ (`plotting.figure_dir`), beside the default profile's


def cache_dir() -> Path:
    """Where trained models live: $LATENTLAB_CACHE, else ~/.cache/latentlab/models (`latentlab.cache`)."""
    return Path(os.environ.get("LATENTLAB_CACHE", Path.home() / ".cache" / "latentlab" / "models")).expanduser()


def _frozen(value: Any) -> Any:
    """Lists (and lists inside lists) become tuples: the config is immutable and its repr stable."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _nested(cls: type) -> dict[str, type]:
    """{field: config class} for the fields of `cls` typed with another Params dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints[f.name], type) and issubclass(hints[f.name], Params)}


@dataclasses.dataclass(frozen=True)
class Params:
    """Base of every config: built from UPPER_CASE parameters, and turned back into them."""

    NOTEBOOK: ClassVar[str | None] = None  # the notebook stem whose parameters cell this config stands for

    @classmethod
    def parameter_names(cls) -> list[str]:
        """Every UPPER_CASE parameter this config takes, nested pieces flattened (`CLF_STEPS`, ...)."""
        nested = _nested(cls)
        names = []
        for f in dataclasses.fields(cls):
            if f.name in nested:
                names += [f"{f.name.upper()}_{n}" for n in nested[f.name].parameter_names()]
            else:
                names.append(f.name.upper())
        return names

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]):
        """The config of a mapping {PARAMETER: value}. Every field must be given; an unknown name raises."""
        valid = cls.parameter_names()
        given = {k: v for k, v in params.items() if k not in META}
        unknown = sorted(set(given) - set(valid))
        missing = [k for k in valid if k not in given]
        if unknown or missing:
            what = "; ".join(s for s in (f"unknown {unknown}" if unknown else "",
                                         f"missing {missing}" if missing else "") if s)
            raise ValueError(f"{cls.__qualname__}: {what}. Valid parameters: {', '.join(valid)}.")
        return cls._build(given)

    @classmethod
    def _build(cls, given: Mapping[str, Any]):
        nested, values = _nested(cls), {}
        for f in dataclasses.fields(cls):
            if f.name in nested:
                prefix = f.name.upper() + "_"
                values[f.name] = nested[f.name]._build(
                    {k[len(prefix):]: v for k, v in given.items() if k.startswith(prefix)})
            else:
                values[f.name] = _frozen(given[f.name.upper()])
        return cls(**values)

    @classmethod
    def from_notebook(cls, namespace: dict):
        """Apply `configs/<PROFILE>.yaml` (PROFILE from the namespace; None: the cell's own values) to a notebook's
        namespace (`globals()`), then build the config from it. Other UPPER_CASE names of the namespace (helpers
        defined after the parameters cell) are not parameters and are ignored."""
        profile = namespace.get("PROFILE")
        changed = apply_profile(namespace, profile, cls.NOTEBOOK, cls.parameter_names())
        if profile:
            print(f"profile {profile!r}: {len(changed)} parameters from configs/{profile}.yaml "
                  f"({', '.join(changed) or 'none'})")
        announce(profile)
        missing = [k for k in cls.parameter_names() if k not in namespace]
        if missing:
            raise ValueError(f"{cls.__qualname__}: the parameters cell lacks {missing}. "
                             f"Valid parameters: {', '.join(cls.parameter_names())}.")
        return cls._build({k: namespace[k] for k in cls.parameter_names()})

    def parameters(self) -> dict[str, Any]:
        """The UPPER_CASE parameters this config stands for (the inverse of from_parameters)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Params):
                out |= {f"{f.name.upper()}_{k}": v for k, v in value.parameters().items()}
            else:
                out[f.name.upper()] = value
        return out

    def replace(self, **changes):
        """A copy with some fields changed (dataclasses.replace; nested pieces are replaced whole)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class ClfConfig(Params):
    """The classifier every arm of a notebook trains (`CLF_*`), see `latentlab.train.fit_classifier`."""

    arch: str               # "cnn" (SmallCNN of `width`) or "resnet18"
    width: int
    steps: int              # at least this many Adam updates ...
    min_epochs: int         # ... and at least this many passes over the training set
    batch: int
    lr: float
    class_weight: str | None  # "balanced" or None
    monitor: str            # validation metric that picks the kept model: loss, accuracy, auc, balanced_accuracy
    val_checks: int         # about this many validation checks to pick from
    lr_decay: str | None    # None: a constant rate; "cosine": from lr to 0 over the schedule's updates

    def scaled(self, factor: int) -> ClfConfig:
        """The same classifier trained `factor` x longer: both budgets scale (updates and passes), since either can
        be the one that sets the schedule. The convergence gate trains at `scaled(2)`."""
        return self.replace(steps=factor * self.steps, min_epochs=factor * self.min_epochs)


@dataclasses.dataclass(frozen=True)
class OracleConfig(Params):
    """The oracle (`ORACLE_*`): one classifier per dataset trained on its whole training split."""

    arch: str
    width: int
    steps: int
    max_images: int | None  # None: the whole training split


# --------------------------------------------------------------------------- profiles


def profiles() -> list[str]:
    """The profiles configs/ holds (besides 'default', the parameters cells themselves)."""
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def overrides(profile: str | None, notebook: str) -> dict[str, Any]:
    """The parameters configs/<profile>.yaml sets for one notebook ({} for None or 'default')."""
    if profile in (None, "default"):
        return {}
    path = CONFIGS / f"{profile}.yaml"
    if not path.exists():
        raise ValueError(f"Unknown profile {profile!r}: no {path}. Choose one of: default, {', '.join(profiles())}.")
    return dict((yaml.safe_load(path.read_text()) or {}).get(notebook) or {})


def apply_profile(namespace: dict, profile: str | None, notebook: str | None, valid: list[str]) -> list[str]:
    """Write a profile's overrides into a notebook's namespace; refuse names that are no parameter of it."""
    if profile in (None, "default"):
        return []
    if notebook is None:
        raise ValueError("This config names no notebook, so it has no profile to apply.")
    changes = overrides(profile, notebook)
    unknown = sorted(set(changes) - set(valid))
    if unknown:
        raise ValueError(f"configs/{profile}.yaml sets {unknown} for {notebook}, which are not its parameters. "
                         f"Valid parameters: {', '.join(valid)}.")
    namespace.update(changes)
    return list(changes)


# --------------------------------------------------------------------------- which profile made the outputs

SMOKE_BANNER = ("SMOKE PROFILE: CI-sized run (a few training steps, tiny data). Its models are not trained, its "
                "figures show noise and its numbers mean nothing; the prose describes the default profile. Every "
                "figure title says SMOKE.")


def current_profile() -> str:
    """The profile the running notebook was set to ($LATENTLAB_PROFILE, set by `announce` and by the runner)."""
    return os.environ.get("LATENTLAB_PROFILE") or "default"


def announce(profile: str | None) -> None:
    """Record the notebook's profile for the library (figure titles, manifests) and, at the smoke profile, show a
    banner and mark every figure pyplot makes from now on (matplotlib's `figure.hooks`)."""
    os.environ["LATENTLAB_PROFILE"] = profile or "default"
    if profile != "smoke":
        return
    try:
        from IPython.display import Markdown, display

        display(Markdown(f"> **{SMOKE_BANNER}**"))
    except ImportError:  # pragma: no cover (IPython ships with the notebooks' kernel)
        pass
    print(SMOKE_BANNER)
    import matplotlib

    hook = "latentlab.plotting:smoke_hook"
    if hook not in matplotlib.rcParams["figure.hooks"]:
        matplotlib.rcParams["figure.hooks"] = [*matplotlib.rcParams["figure.hooks"], hook]
