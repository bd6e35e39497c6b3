"""Datasets as in-memory tensors, offline-first, plus seeded label budgets.

`load(name, split)` returns images as float (N, C, H, W) in [0, 1] with labels and
metadata, for every MedMNIST 2D flag (through the `medmnist` package) and for
MNIST / Fashion-MNIST (through `torchvision.datasets`). Files live under the data
root (`LATENTLAB_DATA`); a present file with the right MD5 is used as it is, a
missing one is downloaded, and a failed download says exactly what to fetch.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import latentlab  # noqa: F401  (applies the torchvision shim before the import below)

TORCHVISION_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
TORCHVISION_CLASSES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
MNIST_VAL_SIZE = 5000  # MNIST-style sets ship no validation split: we hold out a fixed 5000 of train
SPLITS = ("train", "val", "test")


def data_root() -> Path:
    """The data folder: $LATENTLAB_DATA, else ~/.cache/latentlab/data."""
    return Path(os.environ.get("LATENTLAB_DATA", Path.home() / ".cache" / "latentlab" / "data")).expanduser()


def medmnist_flags() -> list[str]:
    """Every MedMNIST 2D flag the installed medmnist package knows."""
    from medmnist import INFO

    return sorted(k for k in INFO if not k.endswith("3d"))


def available_datasets() -> list[str]:
    """Every name `load` accepts."""
    return medmnist_flags() + list(TORCHVISION_SETS)


@dataclass(frozen=True)
class DatasetInfo:
    """What a classifier needs to know about a dataset."""

    name: str
    task: str  # medmnist's words: binary-class, multi-class, multi-label, binary-class, ordinal-regression
    n_channels: int
    class_names: list[str] = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def multilabel(self) -> bool:
        return self.task.startswith("multi-label")


@dataclass
class Dataset:
    """Images x (N, C, H, W) in [0, 1], labels y, and the dataset's info."""

    x: torch.Tensor
    y: torch.Tensor
    info: DatasetInfo

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_classes(self) -> int:
        return self.info.n_classes

    def subset(self, idx) -> Dataset:
        """The images at positions idx (array, list or tensor of ints)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return Dataset(self.x[idx], self.y[idx], self.info)

    def class_counts(self) -> np.ndarray:
        """Images per class (per label for multi-label data)."""
        if self.info.multilabel:
            return self.y.sum(0).numpy().astype(int)
        return np.bincount(self.y.numpy(), minlength=self.n_classes)


# --------------------------------------------------------------------------- files


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    """MD5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def ensure_file(path: Path, url: str, md5: str | None, download: bool = True) -> Path:
    """Make sure `path` exists with the given MD5, downloading it if it is missing."""
    path = Path(path)
    fix = (f"Download {url} (MD5 {md5}) to {path}, or set LATENTLAB_DATA to a folder that holds "
           f"{Path(path.parent.name) / path.name} (now LATENTLAB_DATA={data_root()}).")
    if path.exists():
        if md5 is not None and md5sum(path) != md5:
            raise RuntimeError(f"{path} is corrupt: its MD5 is {md5sum(path)}, expected {md5}. "
                               f"Delete it and run again to re-download, or: {fix}")
        return path
    if not download:
        raise FileNotFoundError(f"{path} is missing and download=False. {fix}")
    from torchvision.datasets.utils import download_url

    try:
        download_url(url, root=str(path.parent), filename=path.name, md5=md5)
    except Exception as err:  # no network, server down, bad checksum: all need the same fix
        raise RuntimeError(f"Could not download {path.name}: {err}. {fix}") from err
    if not path.exists():
        raise RuntimeError(f"Download of {path.name} left no file. {fix}")
    return path


# --------------------------------------------------------------------------- loaders


def _check_name(name: str) -> str:
    key = name.lower()
    if key not in available_datasets():
        raise ValueError(f"Unknown dataset {name!r}. Choose one of: {', '.join(available_datasets())}.")
    return key


def _load_medmnist(flag: str, split: str, size: int, root: Path, download: bool, check_md5: bool):
    import medmnist
    from medmnist import INFO

    info = INFO[flag]
    cls = getattr(medmnist, info["python_class"])
    sizes = getattr(cls, "available_sizes", [28])
    if size not in sizes:
        raise ValueError(f"{flag} comes in sizes {sizes}, not {size}.")
    suffix = "" if size == 28 else f"_{size}"
    folder = root / "medmnist"
    folder.mkdir(parents=True, exist_ok=True)
    ensure_file(folder / f"{flag}{suffix}.npz", info[f"url{suffix}"], info[f"MD5{suffix}"] if check_md5 else None,
                download)
    ds = cls(split=split, root=str(folder), download=False, size=size)
    x = torch.from_numpy(np.asarray(ds.imgs)).float().div_(255)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) or (N,H,W,C) -> (N,C,H,W)
    labels = np.asarray(ds.labels)
    names = [info["label"][str(i)] for i in range(len(info["label"]))]
    meta = DatasetInfo(flag, info["task"], info["n_channels"], names)
    y = torch.from_numpy(labels).float() if meta.multilabel else torch.from_numpy(labels.reshape(-1)).long()
    return x.contiguous(), y, meta


def _load_torchvision(name: str, split: str, size: int, root: Path, download: bool, check_md5: bool):
    from torchvision import datasets

    if size != 28:
        raise ValueError(f"{name} comes in size 28 only, not {size}.")
    cls = getattr(datasets, TORCHVISION_SETS[name])
    raw = root / cls.__name__ / "raw"
    for filename, md5 in cls.resources:
        if not (raw / filename.removesuffix(".gz")).exists():  # torchvision reads the extracted file
            ensure_file(raw / filename, cls.mirrors[0] + filename, md5 if check_md5 else None, download)
    ds = cls(str(root), train=split != "test", download=True)  # files are present: this only extracts
    x = ds.data.float().div_(255).unsqueeze(1)
    y = ds.targets.long()
    if split != "test":
        # A fixed permutation, independent of any experiment seed, so 'val' never overlaps 'train'.
        perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
        keep = perm[-MNIST_VAL_SIZE:] if split == "val" else perm[:-MNIST_VAL_SIZE].sort().values
        x, y = x[keep], y[keep]
    return x.contiguous(), y, DatasetInfo(name, "multi-class", 1, TORCHVISION_CLASSES[name])


def load(name: str, split: str = "train", size: int = 28, root: str | Path | None = None,
         download: bool = True, check_md5: bool = True) -> Dataset:
    """Load one split of a named dataset as tensors (see the module docstring)."""
    key = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Choose one of: {', '.join(SPLITS)}.")
    root = Path(root).expanduser() if root is not None else data_root()
    loader = _load_torchvision if key in TORCHVISION_SETS else _load_medmnist
    x, y, info = loader(key, split, size, root, download, check_md5)
    return Dataset(x, y, info)


@functools.lru_cache(maxsize=16)
def load_cached(name: str, split: str = "train", size: int = 28) -> Dataset:
    """`load`, remembered for the life of the process: worker processes of `latentlab.grid` call it once per split.

    The returned tensors are shared by every caller: treat them as read-only (take `subset`s, never write in place).
    """
    return load(name, split, size)


# --------------------------------------------------------------------------- label budgets


def _labels(y) -> np.ndarray:
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if y.ndim != 1:
        raise ValueError("Budgets need single-label data (one class per image); got labels of shape "
                         f"{y.shape}. For multi-label data draw a plain random subset instead.")
    return y.astype(np.int64)


def _check_size(n: int, what: str, available: int) -> None:
    if int(n) != n or n <= 0 or n > available:
        raise ValueError(f"{what} must be a whole number from 1 to {available}; got {n}.")


def fixed_subset(ds: Dataset, n: int | None) -> Dataset:
    """At most n images of a split, always the same ones (a seed-0 draw, kept in order): the validation or test
    subset every seed and arm of a notebook shares. All of them when n is None or not smaller than the split."""
    if n is None or n >= len(ds):
        return ds
    return ds.subset(np.sort(np.random.default_rng(0).permutation(len(ds))[:n]))


def stratified_subset(y, n: int, seed: int) -> np.ndarray:
    """n indices whose class proportions match y's (largest-remainder rounding), seeded."""
    y = _labels(y)
    _check_size(n, "The labelled budget n", len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / len(y)
    quota = np.floor(exact).astype(int)
    # Hand the remaining images to the classes with the largest remainders (ties: larger class first).
    order = np.lexsort((-counts, -(exact - quota)))
    quota[order[: n - quota.sum()]] += 1
    return _draw(y, classes, quota, seed)


def _draw(y: np.ndarray, classes: np.ndarray, quota, seed: int) -> np.ndarray:
    """quota[i] indices of class classes[i], without replacement, seeded, sorted."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))


def per_class_subset(y, n_per_class: int, seed: int) -> np.ndarray:
    """n_per_class indices from every class, seeded."""
    y = _labels(y)
    classes, counts = np.unique(y, return_counts=True)
    _check_size(n_per_class, "n_per_class", int(counts.min()))
    return _draw(y, classes, [n_per_class] * len(classes), seed)


def long_tail_counts(n_classes: int, n_max: int, rho: float, profile: str = "exp") -> np.ndarray:
    """Images per class for an imbalance ratio rho = n_max / n_min (class 0 is the head)."""
    if rho < 1:
        raise ValueError(f"The imbalance ratio rho must be >= 1 (head / tail); got {rho}.")
    if profile == "exp":  # n_c = n_max * rho^(-c / (C - 1)), the CIFAR-LT profile
        counts = n_max * rho ** (-np.arange(n_classes) / max(n_classes - 1, 1))
    elif profile == "step":  # first half of the classes n_max, second half n_max / rho
        counts = np.where(np.arange(n_classes) < (n_classes + 1) // 2, n_max, n_max / rho)
    else:
        raise ValueError(f"Unknown imbalance profile {profile!r}. Choose 'exp' or 'step'.")
    return np.maximum(1, np.floor(counts)).astype(int)


def long_tail_subset(y, rho: float, profile: str = "exp", n_max: int | None = None, seed: int = 0,
                     order=None) -> np.ndarray:
    """A long-tailed subset of y, seeded: the class at position i of `order` keeps long_tail_counts(...)[i] images
    (order None: the classes in label order, so class 0 is the head and the last class the rarest)."""
    y = _labels(y)
    classes, counts = np.unique(y, return_counts=True)
    if order is not None:
        order = np.asarray(order)
        if sorted(order.tolist()) != classes.tolist():
            raise ValueError(f"order must hold each class of y once ({classes.tolist()}); got {order.tolist()}.")
        classes = order
    n_max = int(counts.min()) if n_max is None else n_max
    _check_size(n_max, "n_max (images of the head class)", int(counts.min()))
    quota = long_tail_counts(len(classes), n_max, rho, profile)
    return _draw(y, classes, quota, seed)
