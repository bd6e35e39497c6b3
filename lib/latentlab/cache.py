"""Train-or-load: trained models cached by a hash of their config and of the data they saw, written atomically.

A model's key is derived, never hand-written: its config (a dataclass or dict: every field that shapes the weights)
and a fingerprint of the tensors it trains on. Change any field, or one pixel of the data, and the key changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from latentlab import modelpack
from latentlab.config import cache_dir  # where trained models live (in config, below modelpack and cache)
from latentlab.repro import get_device, isolated_rng
from latentlab.utils import channels_last

# Bumped when the way models are built or trained changes for every model (2: seeded from the config hash;
# 3: keys from config dataclasses and data fingerprints, channels-last training; 4: validation checks in eval
# mode, fused Adam).
CACHE_VERSION = 4


def config_hash(config: dict) -> str:
    """A short, stable hash of a JSON-able config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def atomic_save(obj, path: Path) -> Path:
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of tensors' shapes, dtypes and values: the identity of the data a model saw."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(memoryview(t.numpy().reshape(-1).view("uint8")))
    return h.hexdigest()[:16]


def _as_dict(config) -> dict:
    if dataclasses.is_dataclass(config):
        return {"config": type(config).__name__} | dataclasses.asdict(config)
    return dict(config)


def model_key(name: str, config, data: Sequence[torch.Tensor] = ()) -> str:
    """The hash that names the model `name` trained with `config` on `data` (its cache file and its seed)."""
    return config_hash({"name": name, "cache_version": CACHE_VERSION, **_as_dict(config),
                        "data": fingerprint(*data) if data else None})


def cache_path(name: str, config, data: Sequence[torch.Tensor] = ()) -> Path:
    """The file that holds the model `name` trained with `config` on `data`."""
    return cache_dir() / f"{name}-{model_key(name, config, data)}.pt"


def _read(path: Path) -> dict | None:
    """The cached weights at path; None (with a warning naming the file) when the file cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as err:
        warnings.warn(f"The cached model {path} cannot be loaded ({type(err).__name__}: {err}); it is retrained and "
                      "overwritten. (Delete the file, or $LATENTLAB_CACHE, to force this.)", stacklevel=3)
        return None


COST_SUFFIX = ".cost.json"  # beside a cached model: the CPU and wall seconds its training took (`training_costs`)
_COST_LOGS: list[list[dict]] = []  # the open `training_costs` blocks (innermost last)
_DEPTH = [0]  # train_or_load calls in progress (a model trained inside another's training is part of its cost)


def cost_path(path: Path) -> Path:
    """The file beside a cached model that records what training it cost."""
    return Path(path).with_suffix(COST_SUFFIX)


def _read_cost(path: Path) -> dict:
    try:
        return json.loads(cost_path(path).read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def training_costs() -> Iterator[list[dict]]:
    """Collect, for every model `train_or_load` returns inside the block, what training it cost from a cold cache:
    entries {"name", "loaded" (a cache hit), "cpu_seconds" and "wall_seconds" of its training (read from the
    record beside the cached file on a hit; NaN when a hit has no record), "elapsed_cpu" (CPU seconds this call took:
    the training, or the loading), "nested" (True for a model trained inside another's training, whose cost the outer
    entry already holds)}. Notebook 06 counts generative training from cold this way whether or not the cache is
    warm."""
    log: list[dict] = []
    _COST_LOGS.append(log)
    try:
        yield log
    finally:
        _COST_LOGS.remove(log)


def cold_cpu_seconds(log: list[dict], measured: float) -> float:
    """CPU seconds a block would have taken from a cold cache: `measured` (the block's own CPU time) with every
    top-level model's loading replaced by its recorded training cost (NaN when one has no record)."""
    top = [e for e in log if not e["nested"]]
    return measured - sum(e["elapsed_cpu"] for e in top) + sum(e["cpu_seconds"] for e in top)


_PACK_DONE: set[str] = set()  # model caches whose pack this process has installed (or found installed)


def _install_pack() -> None:
    """Once per process and cache: fetch the model pack of $LATENTLAB_MODELS_URL, if set (`latentlab.modelpack`)."""
    if not (os.environ.get(modelpack.URL_ENV) or os.environ.get(modelpack.BACKUP_ENV)):
        return
    folder = str(cache_dir())
    if folder not in _PACK_DONE:
        modelpack.ensure(Path(folder))
        _PACK_DONE.add(folder)


def train_or_load(name: str, config, build: Callable[[], nn.Module], train: Callable[[nn.Module], object],
                  data: Sequence[torch.Tensor] = (), device: str | torch.device = "auto") -> nn.Module:
    """Build the model; load its weights if this config was trained on this data before, else train and cache it.

    `config` (a dataclass or dict) must hold everything that changes the trained weights besides the data (sizes,
    steps, seed, ...); `data` the tensors it trains on. Bump a 'version' field when the training code changes.
    Building and training run seeded from the key, with the caller's random state restored afterwards: the weights
    are a function of config and data alone, and a cache hit leaves the rest of a notebook exactly as a fresh
    training would. A cache file that cannot be read (truncated, say) is reported and retrained.
    """
    _install_pack()
    key = model_key(name, config, data)
    path = cache_dir() / f"{name}-{key}.pt"
    state = _read(path) if path.exists() else None
    clock, wall = time.process_time(), time.perf_counter()
    nested = _DEPTH[0] > 0
    _DEPTH[0] += 1
    try:
        with isolated_rng(int(key, 16) % 2**31):
            model = build()
            if state is not None:
                try:
                    model.load_state_dict(state)
                except RuntimeError as err:
                    raise RuntimeError(f"The cached model {path} does not fit the model its config builds ({err}). "
                                       "Delete the file to retrain it.") from err
            else:
                train(model)
                atomic_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path)
    finally:
        _DEPTH[0] -= 1
    elapsed = time.process_time() - clock
    if state is None:
        cost = {"cpu_seconds": elapsed, "wall_seconds": time.perf_counter() - wall}
        try:
            cost_path(path).write_text(json.dumps(cost))
        except OSError:  # a read-only cache keeps its models; only the record is lost
            pass
    else:
        cost = _read_cost(path)
    for log in _COST_LOGS:
        log.append({"name": name, "loaded": state is not None, "nested": nested, "elapsed_cpu": elapsed,
                    "cpu_seconds": float(cost.get("cpu_seconds", float("nan"))),
                    "wall_seconds": float(cost.get("wall_seconds", float("nan")))})
    # One memory layout whichever way the weights came (trained channels-last, or loaded into a fresh contiguous
    # model): some kernels (1x1 convolutions) round differently by layout, and a cache hit must compute exactly what
    # a fresh training computes.
    return channels_last(model.to(get_device(device))).eval()
