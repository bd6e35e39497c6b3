"""Train-or-load: trained models cached by a hash of their config, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from latentlab.repro import get_device, isolated_rng

# Bumped when the way models are built or trained changes for every model (2: seeded from the config hash).
CACHE_VERSION = 2


def cache_dir() -> Path:
    """Where trained models live: $LATENTLAB_CACHE, else ~/.cache/latentlab/models."""
    return Path(os.environ.get("LATENTLAB_CACHE", Path.home() / ".cache" / "latentlab" / "models")).expanduser()


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


def model_key(name: str, config: dict) -> str:
    """The hash that names the model `name` trained with `config` (its cache file and its seed)."""
    return config_hash({"name": name, "cache_version": CACHE_VERSION, **config})


def cache_path(name: str, config: dict) -> Path:
    """The file that holds the model `name` trained with `config`."""
    return cache_dir() / f"{name}-{model_key(name, config)}.pt"


def train_or_load(name: str, config: dict, build: Callable[[], nn.Module], train: Callable[[nn.Module], object],
                  device: str | torch.device = "auto") -> nn.Module:
    """Build the model; load its weights if this exact config was trained before, else train and cache it.

    `config` must hold everything that changes the trained weights (sizes, epochs, seed, data subset);
    bump a 'version' key in it when the training code changes. Building and training run seeded from the config
    hash, with the caller's random state restored afterwards: the weights are a function of the config alone,
    and a cache hit leaves the rest of a notebook exactly as a fresh training would.
    """
    path = cache_path(name, config)
    with isolated_rng(int(model_key(name, config), 16) % 2**31):
        model = build()
        if path.exists():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        else:
            train(model)
            atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return model.to(get_device(device)).eval()
