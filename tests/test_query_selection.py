"""Notebook 03's experiment: arms, the unbalanced MNIST, the encoders' cache keys, one seed end to end (tiny
synthetic MNIST), the paper's Table 1 and the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from latentlab import cache, data  # noqa: E402
from latentlab.experiments import query_selection as qs  # noqa: E402
from latentlab.models import autoencoder  # noqa: E402
from latentlab.papers import query_selection as paper  # noqa: E402
from latentlab.plots import query_selection as qs_plots  # noqa: E402

U = qs.UNBALANCED
# A tiny notebook-03 parameters cell: every parameter, small enough to train encoders and classifiers in seconds.
PARAMS = dict(
    DATASETS=["mnist", U], SEEDS=[0], N_LABELLED={"mnist": [20], U: [20, 30]},
    ARMS=["random", "ae-error", "vae/clustered-normal", "tsne/normal", "conv16/typiclust"],
    DATASET_ARMS={U: ["random", "vae/uniform"]}, WORKERS=1, POOL_SIZE=150, AE_LATENT=2, AE_WIDTH=2, AE_STEPS=2,
    AE_BATCH=32, AE_LR=0.01, TSNE_PERPLEXITY=5.0, TSNE_WEIGHT=10.0, THRESHOLD=0.25, N_CLUSTERS=3,
    ACCEPT="nearest", CLF_ARCH="cnn", CLF_WIDTH=2, CLF_STEPS=3, CLF_MIN_EPOCHS=1, CLF_BATCH=16, CLF_LR=0.002,
    CLF_CLASS_WEIGHT=None, CLF_MONITOR="loss", CLF_VAL_CHECKS=10, N_TEST=40, UNBALANCED_REPLACE=20,
    UNBALANCED_SHIFT=2,
)
TINY = qs.Config.from_parameters(PARAMS)


def _toy_mnist(split: str) -> data.Dataset:
    """Ten digits, 40 images each (train; 10 for test): a bright bar at a position per class, plus noise."""
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    y = torch.arange(10).repeat_interleave(40 if split == "train" else 10)
    x = 0.1 * torch.rand(len(y), 1, 28, 28, generator=g)
    for k in range(10):
        x[y == k, :, 2 + 2 * k:4 + 2 * k, 4:24] += 0.8
    return data.Dataset(x.clamp(0, 1), y, data.DatasetInfo("mnist", "multi-class", 1, [str(k) for k in range(10)]))


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """Synthetic MNIST in place of the mirror, and an empty model cache."""
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "load_cached", lambda name, split="train", size=28: _toy_mnist(split))
    qs.training_split.cache_clear()
    yield tmp_path
    qs.training_split.cache_clear()


# --------------------------------------------------------------------------- config and arms


def test_arm_names_parse_and_bad_ones_fail_when_the_config_is_built():
    assert qs.parse_arm("random") == (None, "random") and qs.parse_arm("ae-error") == ("conv", "ae-error")
    assert qs.parse_arm("conv16/typiclust") == ("conv16", "typiclust")
    assert qs.parse_arm("tsne/clustered-normal") == ("tsne", "clustered-normal")
    for bad in ("pca/normal", "vae/gmm", "vae"):
        with pytest.raises(ValueError, match="Unknown arm"):
            qs.Config.from_parameters(PARAMS | {"ARMS": ["random", bad]})
        with pytest.raises(ValueError, match="Unknown arm"):  # a dataset's own arms too
            TINY.replace(dataset_arms={U: [bad]})
    with pytest.raises(ValueError, match="No entry for dataset"):
        TINY.replace(n_labelled={"mnist": [20]})


def test_each_dataset_gets_its_own_arms_and_budgets():
    assert qs.arms_of(TINY, "mnist") == PARAMS["ARMS"] and qs.arms_of(TINY, U) == ["random", "vae/uniform"]
    assert qs.budgets_of(TINY, U) == [20, 30]
    assert qs.budgets_of(TINY.replace(n_labelled=(10, 50)), "mnist") == [10, 50]  # one list for every dataset
    assert TINY.clf.steps == 3 and TINY.clf.class_weight is None and TINY.parameters()["UNBALANCED_REPLACE"] == 20


# --------------------------------------------------------------------------- the unbalanced MNIST


def test_unbalanced_mnist_has_the_stated_class_counts():
    rng = torch.Generator().manual_seed(0)
    y = torch.arange(10).repeat_interleave(torch.tensor([60, 50, 70, 55, 65, 45, 50, 52, 48, 40]))
    x = torch.rand(len(y), 1, 12, 12, generator=rng)
    x2, y2 = qs.unbalance_mnist(x, y, n_replace=20, max_shift=2, seed=1)
    before, after = torch.bincount(y, minlength=10), torch.bincount(y2, minlength=10)
    assert torch.equal(after[0::2], before[0::2] + 20) and torch.equal(after[1::2], before[1::2] - 20)
    changed = (x2 != x).flatten(1).any(1)
    assert int(changed.sum()) == 100 and torch.equal(y2[~changed], y[~changed])
    assert torch.equal(qs.unbalance_mnist(x, y, n_replace=20, max_shift=2, seed=1)[0], x2)  # seeded
    with pytest.raises(ValueError, match="Lower n_replace"):
        qs.unbalance_mnist(x, y, n_replace=41, max_shift=2)


def test_shifted_copies_are_translations_with_zero_fill():
    x = torch.zeros(2, 1, 6, 6)
    x[:, 0, 2, 3] = 1.0
    out = qs.shift_images(x, torch.tensor([1, -2]), torch.tensor([-1, 2]))
    assert out[0, 0, 3, 2] == 1 and out[1, 0, 0, 5] == 1 and out.sum() == 2
    edge = torch.ones(1, 1, 4, 4)
    assert qs.shift_images(edge, torch.tensor([2]), torch.tensor([0]))[0, 0, :2].sum() == 0  # no wrap-around


def test_the_unbalanced_split_follows_its_parameters_and_test_images_stay_mnists(toy):
    base = qs.training_split("mnist", 20, 2)
    assert torch.equal(qs.training_split("mnist", 30, 1).x, base.x)  # the parameters shape the unbalanced split only
    counts = {r: qs.training_split(U, r, 2).class_counts() for r in (20, 30)}
    assert counts[20][0::2].tolist() == [60] * 5 and counts[30][1::2].tolist() == [10] * 5
    assert qs.training_split(U, 20, 2).info.name == U
    pool, test = qs.seed_data(U, 0, TINY)
    assert len(pool) == 150 and torch.equal(test.x, data.fixed_subset(_toy_mnist("test"), 40).x)


# --------------------------------------------------------------------------- the encoders' cache


def _encoder_files(cache_root) -> set[str]:
    return {p.name for p in cache_root.glob("autoencoder-vae-*.pt")}


def test_changing_unbalanced_replace_or_shift_changes_the_encoder_key_and_retrains(toy, monkeypatch):
    """The encoders' key was once f'{dataset}-pool{pool_size}-seed{seed}': a pool of another unbalanced construction
    loaded the encoders of the first. Now the key holds the images the encoder trains on."""
    trained = []
    real = autoencoder.train_autoencoder
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda *a, **k: trained.append(1) or real(*a, **k))
    keys = {}
    for replace, shift in ((20, 2), (30, 2), (20, 1), (20, 2)):
        cfg = TINY.replace(unbalanced_replace=replace, unbalanced_shift=shift)
        pool, _ = qs.seed_data(U, 0, cfg)
        config = {"version": 3, **vars(qs.encoder_config("vae", len(pool), cfg, 0))}
        keys[replace, shift] = cache.cache_path("autoencoder-vae", config, [pool.x])
        qs.fit_encoder("vae", pool.x, cfg, 0)
        assert keys[replace, shift].exists()  # the file the encoder was cached in
    assert len(set(keys.values())) == 3 and len(_encoder_files(toy)) == 3
    assert len(trained) == 3  # the last one, (20, 2) again, was loaded
    # The balanced MNIST's pool does not depend on the unbalanced construction: one encoder for both.
    for replace in (20, 30):
        pool, _ = qs.seed_data("mnist", 0, TINY.replace(unbalanced_replace=replace))
        qs.fit_encoder("vae", pool.x, TINY, 0)
    assert len(trained) == 4


def test_the_encoders_key_changes_with_each_encoder_parameter_and_the_pool(toy):
    pool, _ = qs.seed_data("mnist", 0, TINY)
    base = qs.encoder_config("tsne", len(pool), TINY, 0)
    changes = dict(ae_latent=3, ae_width=3, ae_steps=200, ae_batch=16, ae_lr=0.02, tsne_perplexity=6.0,
                   tsne_weight=3.0)
    for name, value in changes.items():
        assert qs.encoder_config("tsne", len(pool), TINY.replace(**{name: value}), 0) != base, name
    assert qs.encoder_config("tsne", len(pool), TINY, 1) != base  # the seed
    other, _ = qs.seed_data("mnist", 1, TINY)
    assert cache.model_key("autoencoder-tsne", vars(base), [pool.x]) != \
        cache.model_key("autoencoder-tsne", vars(base), [other.x])  # another seed's pool
    assert qs.encoder_config("conv16", 150, TINY, 0).latent_dim == 16


# --------------------------------------------------------------------------- one seed end to end


def test_run_seed_gives_every_arm_and_budget_its_rows_and_repeats_them(toy):
    task = {"cfg": TINY, "dataset": "mnist", "seed": 0}
    rows = pd.DataFrame(qs.run_seed(task))
    assert list(rows.columns) == ["dataset", "arm", "seed", "metric", "value", "n_labelled", "encoder", "method"]
    codes = rows[rows["method"] == "codes"]
    assert sorted(codes["arm"]) == ["conv codes", "conv16 codes", "tsne codes", "vae codes"]
    assert (codes["metric"] == "knn_accuracy").all() and (codes["n_labelled"] == 0).all()
    runs = rows[rows["n_labelled"] > 0]
    assert set(runs["arm"]) == set(PARAMS["ARMS"]) and len(runs) == 5 * 6
    acc = runs[runs["metric"] == "accuracy"]["value"]
    assert acc.between(0, 1).all()
    assert (runs[runs["metric"] == "coverage"]["value"] <= 10).all()
    pd.testing.assert_frame_equal(pd.DataFrame(qs.run_seed(task)), rows)  # cached encoders, seeded classifiers
    unbalanced = pd.DataFrame(qs.run_seed(task | {"dataset": U}))
    assert set(unbalanced["arm"]) == {"random", "vae/uniform", "vae codes"}
    assert sorted(unbalanced["n_labelled"].unique()) == [0, 20, 30]


def test_select_arm_records_algorithm1s_draws():
    rng = np.random.default_rng(0)
    pool = _toy_mnist("train")
    codes = rng.normal(size=(len(pool), 2))
    view = qs.SeedView(pool, {"vae": codes}, None, {"vae": rng.integers(0, 3, len(pool))})
    trace: list = []
    picks = qs.select_arm(view, "vae/clustered-normal", 30, 0, TINY, trace=trace)
    assert len(np.unique(picks)) == 30 and len(trace) >= 30
    assert np.array_equal(qs.select_arm(view, "random", 30, 0, TINY), qs.select_arm(view, "random", 30, 0, TINY))


def test_the_stratified_oracle_labels_as_many_images_of_every_class_and_needs_no_encoder(toy):
    assert qs.parse_arm("stratified") == (None, "stratified")
    pool, _ = qs.seed_data(U, 0, TINY)
    view = qs.seed_view(pool, ["stratified"], TINY, 0)
    assert view.codes == {} and not list(toy.glob("*.pt"))  # no encoder trained
    picks = qs.select_arm(view, "stratified", 30, 0, TINY)
    assert np.bincount(pool.y.numpy()[picks], minlength=10).tolist() == [3] * 10
    with pytest.raises(ValueError, match="no multiple"):
        qs.select_arm(view, "stratified", 25, 0, TINY)
    rows = pd.DataFrame(qs.run_seed({"cfg": TINY.replace(dataset_arms={U: ["stratified"]}), "dataset": U, "seed": 0}))
    assert set(rows["arm"]) == {"stratified"} and set(rows["n_labelled"]) == {20, 30}
    assert rows[rows["metric"] == "balance"]["value"].tolist() == pytest.approx([1.0, 1.0])


# --------------------------------------------------------------------------- the paper's numbers


def test_table1_puts_our_mean_and_sd_beside_the_papers_number():
    rows = [{"dataset": d, "arm": a, "seed": s, "metric": "accuracy", "value": v + 0.01 * s, "n_labelled": n}
            for (d, n) in paper.TABLE1_COLUMNS for a, v in (("random", 0.80), ("vae/clustered-normal", 0.85))
            for s in (0, 1, 2)]
    table = paper.table1(pd.DataFrame(rows))
    assert table.loc[("—", "Random"), ("unbalanced", 100)] == "81.0 ± 1.0 (76.6)"
    assert table.loc[("VAE", "Clustered Normal"), ("balanced", 1000)] == "86.0 ± 1.0 (94.3)"
    assert len(table) == 2  # rows without results are dropped
    assert paper.effects("vae/clustered-normal")[(U, 100)] == 8.4
    assert paper.row_name("ae-error") == ("—", "AE-error") and paper.row_name("tsne/normal") == ("t-SNE Style",
                                                                                                 "Normal")


def test_the_papers_claims_and_table_name_arms_the_experiment_runs():
    for arm in paper.TABLE1:
        qs.parse_arm(arm)
    for claim in paper.CLAIMS:
        qs.parse_arm(claim.a), qs.parse_arm(claim.b)
    uniform = next(c for c in paper.CLAIMS if c.a == "vae/uniform")
    assert uniform.sign((U, 100)) == -1 and uniform.paper_for((U, 100)) == pytest.approx(35.3 - 76.6)


# --------------------------------------------------------------------------- figures


def test_every_figure_draws_from_a_seed_view():
    rng = np.random.default_rng(0)
    pool = _toy_mnist("train")
    y = pool.y.numpy()
    codes = {e: rng.normal(size=(len(pool), 2)) + y[:, None] for e in ("conv", "vae", "tsne")}
    view = qs.SeedView(pool, codes, None, {"vae": y % 3})
    trace: list = []
    picks = qs.select_arm(view, "vae/clustered-normal", 30, 0, TINY, trace=trace)
    shifted = data.Dataset(pool.x.roll(1, dims=-1), pool.y, pool.info)
    by_arm = {a: qs.select_arm(view, a, 30, 0, TINY) for a in ("random", "vae/normal", "vae/uniform")}
    figures = [qs_plots.unbalanced_copies(pool, shifted, n=8), qs_plots.latent_spaces(view, 0),
               qs_plots.algorithm1_walk(codes["vae"], view.clusters["vae"], trace, picks, 0.3, "walk"),
               qs_plots.picks_by_sampler(codes["vae"], y, by_arm, "picks"),
               qs_plots.class_histograms(y, by_arm, 10, "histograms")]
    assert all(isinstance(f, plt.Figure) and f.axes for f in figures)
    plt.close("all")
