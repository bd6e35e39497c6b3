"""Loaders (every path), file checks and label budgets."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from latentlab import data

MIRRORED = {  # name: (train, val, test, channels, classes) as documented in the mirror's README
    "pneumoniamnist": (4708, 524, 624, 1, 2),
    "breastmnist": (546, 78, 156, 1, 2),
    "mnist": (55000, 5000, 10000, 1, 10),
    "fashion-mnist": (55000, 5000, 10000, 1, 10),
}


@pytest.mark.parametrize("name", list(MIRRORED))
def test_mirrored_datasets_load_as_tensors(name, writable_mirror):
    sizes = MIRRORED[name]
    seen = []
    for split, n in zip(data.SPLITS, sizes[:3]):
        ds = data.load(name, split, root=writable_mirror, download=False)
        assert ds.x.shape == (n, sizes[3], 28, 28) and ds.x.dtype == torch.float32
        assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0 and ds.x.max() > 0.9
        assert ds.y.dtype == torch.int64 and ds.y.shape == (n,)
        assert set(ds.y.unique().tolist()) == set(range(sizes[4]))
        assert ds.n_classes == sizes[4] and len(ds.info.class_names) == sizes[4]
        seen.append(ds.x[:50].flatten(1))
    # the three splits hold different images
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])


def test_mnist_val_is_disjoint_from_train_and_fixed(writable_mirror):
    train = data.load("mnist", "train", root=writable_mirror)
    val = data.load("mnist", "val", root=writable_mirror)
    again = data.load("mnist", "val", root=writable_mirror)
    assert torch.equal(val.x, again.x)
    h_train = {hash(r.numpy().tobytes()) for r in train.x[:, 0, 10:18, 10:18].reshape(len(train), -1)[:20000]}
    h_val = [hash(r.numpy().tobytes()) for r in val.x[:, 0, 10:18, 10:18].reshape(len(val), -1)]
    # crops of distinct digits rarely coincide; a leaked split would match for every val image
    assert sum(h in h_train for h in h_val) < 0.05 * len(h_val)


def test_class_names_come_from_the_dataset(writable_mirror):
    assert data.load("pneumoniamnist", "val", root=writable_mirror).info.class_names == ["normal", "pneumonia"]
    assert data.load("fashion-mnist", "test", root=writable_mirror).info.class_names[-1] == "Ankle boot"


def _fake_npz(path, n_channels: int, n_classes: int, multilabel: bool, size: int = 28) -> None:
    """A MedMNIST-format file: {split}_images uint8 and {split}_labels."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in [("train", 30), ("val", 10), ("test", 12)]:
        shape = (n, size, size) if n_channels == 1 else (n, size, size, n_channels)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (rng.integers(0, 2, (n, n_classes)) if multilabel
                                     else np.arange(n).reshape(n, 1) % n_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_unmirrored_multiclass_rgb_flag_loads_from_a_medmnist_file(tmp_path):
    _fake_npz(tmp_path / "medmnist" / "dermamnist.npz", n_channels=3, n_classes=7, multilabel=False)
    ds = data.load("dermamnist", "test", root=tmp_path, download=False, check_md5=False)
    assert ds.x.shape == (12, 3, 28, 28) and ds.y.shape == (12,) and ds.y.dtype == torch.int64
    assert ds.info.task == "multi-class" and ds.n_classes == 7 and ds.info.n_channels == 3


def test_multilabel_flag_gives_float_multi_hot_labels(tmp_path):
    _fake_npz(tmp_path / "medmnist" / "chestmnist.npz", n_channels=1, n_classes=14, multilabel=True)
    ds = data.load("chestmnist", "train", root=tmp_path, download=False, check_md5=False)
    assert ds.y.shape == (30, 14) and ds.y.dtype == torch.float32 and ds.info.multilabel
    assert set(ds.y.unique().tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.class_counts(), ds.y.sum(0).numpy())


def test_larger_sizes_use_the_sized_file(tmp_path):
    _fake_npz(tmp_path / "medmnist" / "bloodmnist_64.npz", n_channels=3, n_classes=8, multilabel=False, size=64)
    ds = data.load("bloodmnist", "val", size=64, root=tmp_path, download=False, check_md5=False)
    assert ds.x.shape == (10, 3, 64, 64)


def test_every_medmnist_2d_flag_is_accepted():
    flags = data.medmnist_flags()
    assert {"pneumoniamnist", "breastmnist", "chestmnist", "dermamnist", "pathmnist", "octmnist", "retinamnist",
            "bloodmnist", "tissuemnist", "organamnist", "organcmnist", "organsmnist"} <= set(flags)
    assert not any(f.endswith("3d") for f in flags)


def test_present_file_with_right_md5_is_never_downloaded(writable_mirror, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("download attempted for a file that is present")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", no_network)
    assert len(data.load("breastmnist", "train", root=writable_mirror)) == 546


def test_missing_file_is_downloaded(tmp_path, mirror, monkeypatch):
    calls = []

    def fake_download(url, root, filename, md5):
        calls.append((url, filename, md5))
        shutil.copy(mirror / "medmnist" / filename, f"{root}/{filename}")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", fake_download)
    ds = data.load("breastmnist", "val", root=tmp_path)
    assert len(ds) == 78 and len(calls) == 1
    assert "breastmnist.npz" in calls[0][0] and calls[0][2] == "750601b1f35ba3300ea97c75c52ff8f6"
    data.load("breastmnist", "test", root=tmp_path)
    assert len(calls) == 1  # the second load finds the file


def test_failed_download_names_file_url_md5_and_variable(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr("torchvision.datasets.utils.download_url", offline)
    with pytest.raises(RuntimeError) as err:
        data.load("pneumoniamnist", root=tmp_path)
    msg = str(err.value)
    assert "pneumoniamnist.npz" in msg and "zenodo.org" in msg and "28209eda62fecd6e6a2d98b1501bb15f" in msg
    assert "LATENTLAB_DATA" in msg


def test_failed_mnist_download_names_the_gz_file(tmp_path, monkeypatch):
    monkeypatch.setattr("torchvision.datasets.utils.download_url", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    with pytest.raises(RuntimeError, match=r"train-images-idx3-ubyte\.gz.*f68b3c2dcbeaaa9fbdd348bbdeb94873"):
        data.load("mnist", root=tmp_path)


def test_missing_file_without_download_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"breastmnist\.npz.*LATENTLAB_DATA"):
        data.load("breastmnist", root=tmp_path, download=False)


def test_bad_md5_is_an_error_not_a_silent_load(tmp_path):
    bad = tmp_path / "medmnist" / "breastmnist.npz"
    _fake_npz(bad, 1, 2, False)
    with pytest.raises(RuntimeError, match=r"corrupt.*750601b1f35ba3300ea97c75c52ff8f6"):
        data.load("breastmnist", root=tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "imagenet"}, "Unknown dataset 'imagenet'.*pneumoniamnist"),
    ({"name": "mnist", "split": "validation"}, "Unknown split"),
    ({"name": "mnist", "size": 64}, "size 28 only"),
    ({"name": "breastmnist", "size": 100}, r"sizes \[28, 64, 128, 224\]"),
])
def test_bad_requests_raise_value_errors(kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        data.load(root=tmp_path, download=False, **kwargs)


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTLAB_DATA", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("LATENTLAB_DATA")
    assert data.data_root().parts[-3:] == (".cache", "latentlab", "data")


# --------------------------------------------------------------------------- budgets

Y = np.repeat(np.arange(4), [400, 300, 200, 100])  # 1000 labels, 40/30/20/10 %


def test_stratified_subset_size_strata_and_determinism():
    idx = data.stratified_subset(Y, 100, seed=3)
    assert len(idx) == 100 == len(set(idx))
    np.testing.assert_array_equal(np.bincount(Y[idx]), [40, 30, 20, 10])
    np.testing.assert_array_equal(idx, data.stratified_subset(Y, 100, seed=3))
    assert not np.array_equal(idx, data.stratified_subset(Y, 100, seed=4))


def test_stratified_subset_rounds_to_the_exact_size():
    for n in (1, 7, 33, 999, 1000):
        idx = data.stratified_subset(Y, n, seed=0)
        assert len(idx) == n
        assert np.all(np.abs(np.bincount(Y[idx], minlength=4) - n * np.array([.4, .3, .2, .1])) < 1)


def test_per_class_subset():
    idx = data.per_class_subset(Y, 25, seed=1)
    np.testing.assert_array_equal(np.bincount(Y[idx]), [25] * 4)
    with pytest.raises(ValueError, match="from 1 to 100"):
        data.per_class_subset(Y, 101, seed=1)


@pytest.mark.parametrize("rho", [1, 10, 100])
def test_exponential_long_tail_has_the_requested_ratio(rho):
    y = np.repeat(np.arange(10), 500)
    idx = data.long_tail_subset(y, rho=rho, n_max=400, seed=0)
    counts = np.bincount(y[idx])
    assert counts[0] == 400 and counts[-1] == 400 // rho
    assert np.all(np.diff(counts) <= 0)  # monotone tail
    np.testing.assert_allclose(counts, np.floor(400 * rho ** (-np.arange(10) / 9)))


def test_step_long_tail():
    y = np.repeat(np.arange(4), 100)
    counts = np.bincount(y[data.long_tail_subset(y, rho=10, profile="step", n_max=50, seed=0)])
    np.testing.assert_array_equal(counts, [50, 50, 5, 5])


@pytest.mark.parametrize("call, match", [
    (lambda: data.stratified_subset(Y, 0, 0), "from 1 to 1000; got 0"),
    (lambda: data.stratified_subset(Y, -5, 0), "got -5"),
    (lambda: data.stratified_subset(Y, 1001, 0), "from 1 to 1000; got 1001"),
    (lambda: data.stratified_subset(Y, 2.5, 0), "whole number"),
    (lambda: data.long_tail_subset(Y, rho=0.5), "rho must be >= 1"),
    (lambda: data.long_tail_subset(Y, rho=10, profile="linear"), "'exp' or 'step'"),
    (lambda: data.long_tail_subset(Y, rho=10, n_max=101), "n_max"),
    (lambda: data.stratified_subset(np.zeros((10, 3)), 2, 0), "single-label"),
])
def test_impossible_budgets_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fixed_subsets_are_the_same_for_every_call():
    ds = data.Dataset(torch.arange(100).float().view(100, 1, 1, 1), torch.zeros(100, dtype=torch.long),
                      data.DatasetInfo("toy", "multi-class", 1, ["a"]))
    a, b = data.fixed_subset(ds, 10), data.fixed_subset(ds, 10)
    assert torch.equal(a.x, b.x) and len(a) == 10 and len(data.fixed_subset(ds, None)) == 100



def test_a_long_tail_order_moves_the_profile_onto_other_classes():
    y = np.repeat(np.arange(4), 50)
    plain = data.long_tail_subset(y, rho=10, n_max=40, seed=0)
    assert np.bincount(y[plain]).tolist() == data.long_tail_counts(4, 40, 10).tolist()
    moved = data.long_tail_subset(y, rho=10, n_max=40, seed=0, order=[2, 0, 3, 1])
    counts = data.long_tail_counts(4, 40, 10)
    assert np.bincount(y[moved], minlength=4)[[2, 0, 3, 1]].tolist() == counts.tolist()
    with pytest.raises(ValueError, match="each class"):
        data.long_tail_subset(y, rho=10, n_max=40, order=[0, 1, 2])
