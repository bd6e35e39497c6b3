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
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

from latentlab import cache, data, gates, stats, train  # noqa: E402
from latentlab.experiments import query_selection as qs  # noqa: E402
from latentlab.models import autoencoder  # noqa: E402
from latentlab.models.autoencoder import cache_key  # noqa: E402
from latentlab.papers import query_selection as paper  # noqa: E402
from latentlab.plots import query_selection as qs_plots  # noqa: E402

U = qs.UNBALANCED
# A tiny notebook-03 parameters cell: every parameter, small enough to train encoders and classifiers in seconds.
PARAMS = dict(
    DATASETS=["mnist", U], SEEDS=[0], N_LABELLED={"mnist": [20], U: [20, 30]},
    ARMS=["random", "ae-error", "vae/clustered-normal", "tsne/normal", "conv16/typiclust"],
    DATASET_ARMS={U: ["random", "vae/uniform"]}, WORKERS=1, POOL_SIZE=150, AE_LATENT=2, AE_WIDTH=2, AE_STEPS=2,
    AE_BATCH=32, AE_LR=0.01, AE_WARMUP=0, TSNE_PERPLEXITY=5.0, TSNE_WEIGHT=10.0, TSNE_PRETRAIN=True, THRESHOLD=0.25,
    N_CLUSTERS=3,
    ACCEPT="nearest", CLF_ARCH="cnn", CLF_WIDTH=2, CLF_STEPS=3, CLF_MIN_EPOCHS=1, CLF_BATCH=16, CLF_LR=0.002,
    CLF_CLASS_WEIGHT=None, CLF_MONITOR="loss", CLF_VAL_CHECKS=10, CLF_LR_DECAY="cosine", N_TEST=40, N_VAL=30,
    UNBALANCED_REPLACE=20, UNBALANCED_SHIFT=2, TSNE_WEIGHTS=[3.0, 10.0], BUDGET_ARMS={}, SCALE_SEEDS=[],
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
        config = cache_key(qs.encoder_config("vae", len(pool), cfg, 0), 3)
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


def _split(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(result rows, gate rows) of a task, as grid.tables splits them."""
    gate = [r for r in rows if "instrument" in r]
    return pd.DataFrame([r for r in rows if "instrument" not in r]), gates.table(gate)


def test_run_seed_gives_every_arm_and_budget_its_rows_and_repeats_them(toy):
    task = {"cfg": TINY, "dataset": "mnist", "seed": 0}
    rows, inst = _split(qs.run_seed(task))
    assert list(rows.columns) == ["dataset", "arm", "seed", "metric", "value", "n_labelled", "encoder", "method"]
    # 7 metrics per arm; Random's classifier also gets its val_accuracy (the classifier gate reads it).
    assert set(rows["arm"]) == set(PARAMS["ARMS"]) and len(rows) == 5 * 7 + 1 and (rows["n_labelled"] == 20).all()
    assert rows[rows["metric"] == "val_accuracy"]["arm"].tolist() == ["random"]
    acc = rows[rows["metric"] == "accuracy"]["value"]
    assert acc.between(0, 1).all() and rows[rows["metric"] == "val_accuracy"]["value"].between(0, 1).all()
    assert (rows[rows["metric"] == "coverage"]["value"] <= 10).all()
    # No validation split: the kept model is the last epoch's (20 images, batch 16, 3 updates: 2 epochs).
    last = train.schedule(20, TINY.clf).epochs - 1
    assert last == 1 and (rows[rows["metric"] == "kept_epoch"]["value"] == last).all()
    assert sorted(inst["instrument"].unique()) == ["ae-16d", "ae-2d", "pca-16d", "pca-2d", "tsne-2d", "vae-2d"]
    # PCA reported; every encoder per seed: 5-NN accuracy above PCA's of its size, reconstruction error gated.
    pca = inst[inst["instrument"].str.startswith("pca-")]
    assert set(pca["check"]) == {"knn_accuracy", "recon_mse"} and pca["passed"].all() and pca["threshold"].isna().all()
    enc = inst[~inst["instrument"].str.startswith("pca-")]
    assert set(enc["check"]) == {"knn_accuracy", "mean_image_mse", "recon_mse"}
    ref = pca.set_index(["instrument", "check"])["value"]
    for r in enc[enc["check"].isin(["knn_accuracy", "recon_mse"])].itertuples():
        assert r.threshold == ref[(f"pca-{r.instrument.split('-')[1]}", r.check)]
        assert r.passed == ((r.value > r.threshold) if r.check == "knn_accuracy" else (r.value < r.threshold))
    again_rows, again_inst = _split(qs.run_seed(task))  # cached encoders, seeded classifiers
    pd.testing.assert_frame_equal(again_rows, rows)
    pd.testing.assert_frame_equal(again_inst, inst)
    unbalanced, inst_u = _split(qs.run_seed(task | {"dataset": U}))
    assert set(unbalanced["arm"]) == {"random", "vae/uniform"} and sorted(unbalanced["n_labelled"].unique()) == [20, 30]
    assert sorted(inst_u["instrument"].unique()) == ["pca-2d", "vae-2d"]


def test_the_code_gates_are_5nn_accuracies_of_validation_codes_beside_pca(toy):
    """The gate rows against sklearn: a 5-NN classifier fitted on the pool's codes, scored on the validation codes
    (the fixed N_VAL images), and the same on a 2-D PCA of the pixels."""
    pool, _ = qs.seed_data("mnist", 0, TINY)
    val = qs.val_set("mnist", TINY.n_val)
    assert len(val) == 30 and torch.equal(val.x, data.fixed_subset(_toy_mnist("val"), 30).x)
    view = qs.seed_view(pool, ["vae/normal"], TINY, 0)
    table = gates.table(qs.encoder_gates(view, val, "mnist", 0, TINY.ae_latent)).set_index(["instrument", "check"])
    z_val = autoencoder.encode_all(view.models["vae"], val.x).numpy()
    knn = KNeighborsClassifier(5).fit(view.codes["vae"], pool.y.numpy()).score(z_val, val.y.numpy())
    assert table.loc[("vae-2d", "knn_accuracy"), "value"] == pytest.approx(knn)
    pca = PCA(2, random_state=0).fit(pool.x.flatten(1).numpy())
    ref = KNeighborsClassifier(5).fit(pca.transform(pool.x.flatten(1).numpy()), pool.y.numpy())
    ref_acc = ref.score(pca.transform(val.x.flatten(1).numpy()), val.y.numpy())
    assert table.loc[("pca-2d", "knn_accuracy"), "value"] == pytest.approx(ref_acc)
    assert table.loc[("vae-2d", "knn_accuracy"), "threshold"] == pytest.approx(ref_acc)  # the seed's own floor
    # The reconstruction error of the VAE's posterior means, by hand, against 0.6 x the mean image's.
    x = val.x
    rec = view.models["vae"].decode(torch.as_tensor(z_val)).detach()
    mean_mse = float(((x - x.mean(0, keepdim=True)) ** 2).mean())
    assert table.loc[("vae-2d", "recon_mse"), "value"] == pytest.approx(float(((rec - x) ** 2).mean()), rel=1e-5)
    assert table.loc[("vae-2d", "mean_image_mse"), "value"] == pytest.approx(mean_mse)
    flat = val.x.flatten(1).numpy()
    pca_rec = pca.inverse_transform(pca.transform(flat))
    assert table.loc[("pca-2d", "recon_mse"), "value"] == pytest.approx(float(((pca_rec - flat) ** 2).mean()), rel=1e-5)
    assert table.loc[("vae-2d", "recon_mse"), "threshold"] == table.loc[("pca-2d", "recon_mse"), "value"]


def test_instrument_names_follow_the_encoder_kind_and_code_size():
    assert [qs.encoder_instrument(e) for e in ("conv", "vae", "tsne", "conv16")] == ["ae-2d", "vae-2d", "tsne-2d",
                                                                                      "ae-16d"]
    assert qs.encoder_instrument("vae", latent=3) == "vae-3d"
    assert qs.instruments_of("ae-error", "random") == ("ae-2d", "classifier")  # AE-error ranks by the conv AE
    assert qs.instruments_of("conv16/typiclust", "vae/typiclust") == ("ae-16d", "vae-2d", "classifier")
    assert qs.instruments_of("stratified", "random") == ("classifier",)
    with pytest.raises(ValueError, match="Unknown encoder"):
        qs.encoder_instrument("pca")


# --------------------------------------------------------------------------- convergence


def test_the_doubled_task_trains_twice_as_long_on_the_first_seed(toy, monkeypatch):
    cfg = TINY.replace(seeds=(3, 4), dataset_arms={U: ["random", "vae/uniform"]})
    assert qs.doubled_tasks(cfg) == [{"cfg": cfg, "dataset": d, "seed": 3, "budget": 2} for d in ("mnist", U)]
    once, twice = qs.encoder_config("vae", 150, cfg, 3), qs.encoder_config("vae", 150, cfg, 3, factor=2)
    assert twice.epochs == 2 * once.epochs and vars(twice) | {"epochs": once.epochs} == vars(once)
    assert cfg.clf.scaled(2).steps == 6 and cfg.clf.scaled(2).min_epochs == 2
    # 20 images, batches of 16: 2 batches an epoch, so 3 updates take ceil(3 / 2) = 2 epochs and 6 take 3.
    assert [train.schedule(20, c).epochs for c in (cfg.clf, cfg.clf.scaled(2))] == [2, 3]
    # min_epochs doubles too: where it sets the schedule, doubling the updates alone would train no longer.
    slow = cfg.clf.replace(min_epochs=10)
    assert train.schedule(20, slow.scaled(2)).epochs == 20 == 2 * train.schedule(20, slow).epochs
    epochs = []
    real = autoencoder.train_autoencoder
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda m, x, c, *a, **k: epochs.append(c.epochs) or
                        real(m, x, c, *a, **k))
    rows, inst = _split(qs.run_seed(qs.doubled_tasks(cfg)[1]))
    assert epochs == [2 * once.epochs]  # the unbalanced pool's VAE, at twice its epochs
    assert inst[["instrument", "dataset", "seed", "check"]].values.tolist() == [["vae-2d", U, 3, "knn_accuracy_2x"]]
    assert rows[["arm", "metric", "n_labelled", "seed"]].values.tolist() == [
        ["random", "val_accuracy_2x", 20, 3], ["random", "val_accuracy_2x", 30, 3]]


def _gate_rows(values: dict) -> pd.DataFrame:
    """Reported gate rows {(instrument, dataset, seed, check): value}."""
    return gates.table([gates.row(i, d, s, c, v) for (i, d, s, c), v in values.items()])


def _val_rows(values: dict, metric: str = "val_accuracy") -> pd.DataFrame:
    """Random's result rows {(dataset, n, seed): value}."""
    return pd.DataFrame([{"dataset": d, "arm": "random", "seed": s, "metric": metric, "value": v, "n_labelled": n}
                         for (d, n, s), v in values.items()])


def test_convergence_gates_by_hand():
    inst = _gate_rows({("vae-2d", "mnist", 0, "knn_accuracy"): 0.50, ("vae-2d", "mnist", 1, "knn_accuracy"): 0.51,
                       ("vae-2d", "mnist", 0, "knn_accuracy_2x"): 0.515,
                       ("ae-16d", "mnist", 0, "knn_accuracy"): 0.60, ("ae-16d", "mnist", 1, "knn_accuracy"): 0.66,
                       ("ae-16d", "mnist", 0, "knn_accuracy_2x"): 0.63,
                       ("ae-2d", "mnist", 0, "knn_accuracy"): 0.70, ("ae-2d", "mnist", 0, "knn_accuracy_2x"): 0.705,
                       ("tsne-2d", "mnist", 0, "knn_accuracy"): 0.80,  # never doubled
                       ("pca-2d", "mnist", 0, "knn_accuracy"): 0.40})
    results = pd.concat([_val_rows({("mnist", 100, 0): 0.80, ("mnist", 100, 1): 0.82, ("mnist", 100, 2): 0.84,
                                    ("mnist", 1000, 0): 0.90, ("mnist", 1000, 1): 0.905, ("mnist", 1000, 2): 0.91}),
                         _val_rows({("mnist", 100, 0): 0.815, ("mnist", 1000, 0): 0.93}, "val_accuracy_2x")])
    out = qs.convergence_gates(results, inst).set_index(["instrument", "check"])
    change = out.xs("knn_accuracy_change", level="check")
    # vae-2d: |0.515 - 0.50| = 0.015 against max(0.01, 1.96 x sqrt(2) x sd(0.50, 0.51) = 0.0098 x 2.77 = 0.0196):
    # passes on the noise of two runs; with sd(0.50, 0.505) it is max(0.01, 0.0098) = 0.01 and fails.
    assert change.loc["vae-2d", "value"] == pytest.approx(0.015) and change.loc["vae-2d", "passed"]
    assert change.loc["vae-2d", "threshold"] == pytest.approx(1.96 * 0.01)
    tight = qs.encoder_convergence(inst.assign(value=np.where((inst["instrument"] == "vae-2d") & (inst["seed"] == 1)
                                                              & (inst["check"] == "knn_accuracy"), 0.505,
                                                              inst["value"])))
    vae = next(r for r in tight if r["instrument"] == "vae-2d")
    assert vae["threshold"] == 0.01 and not vae["passed"]
    # ae-16d: |0.63 - 0.60| = 0.03 against 1.96 x sqrt(2) x sd(0.60, 0.66) = 1.96 x 0.06 = 0.1176: passes.
    assert change.loc["ae-16d", "threshold"] == pytest.approx(1.96 * 0.06) and change.loc["ae-16d", "passed"]
    assert change.loc["ae-2d", "value"] == pytest.approx(0.005) and change.loc["ae-2d", "passed"]  # one seed: tol
    assert change.loc["ae-2d", "threshold"] == 0.01
    assert np.isnan(change.loc["tsne-2d", "value"]) and not change.loc["tsne-2d", "passed"]  # not measured: fails
    assert "pca-2d" not in change.index
    clf = out.loc["classifier"]
    n100, n1000 = qs.classifier_check(100), qs.classifier_check(1000)
    # n = 100: |0.815 - 0.80| = 0.015 < max(0.01, sd(0.80, 0.82, 0.84) = 0.02): passes on the seed spread.
    assert clf.loc[f"{n100}_change", "threshold"] == pytest.approx(0.02) and clf.loc[f"{n100}_change", "passed"]
    assert clf.loc[n100, "value"] == 0.80 and clf.loc[f"{n100}_2x", "value"] == 0.815
    # n = 1000: |0.93 - 0.90| = 0.03 against max(0.01, 0.005): fails.
    assert clf.loc[f"{n1000}_change", "value"] == pytest.approx(0.03) and not clf.loc[f"{n1000}_change", "passed"]
    assert clf.loc[f"{n1000}_change", "threshold"] == 0.01 and (out["seed"] == 0).all()


def _claim_results() -> pd.DataFrame:
    """Three seeds of Random and VAE + Clustered Normal at n = 100 and 1000 on MNIST: the latter 5 +- 1 points up."""
    rows = [{"dataset": "mnist", "arm": a, "seed": s, "metric": "accuracy", "n_labelled": n,
             "value": 0.8 + (0.05 + 0.01 * (s - 1) if a != "random" else 0.0) + 0.02 * s}
            for n in (100, 1000) for a in ("random", "vae/clustered-normal") for s in range(3)]
    return pd.DataFrame(rows)


def test_a_failed_gate_makes_its_claims_not_tested_and_the_classifiers_only_at_its_budget():
    claims = [stats.Claim("vae/clustered-normal", "random", 2.0, instruments=qs.instruments_of("vae/clustered-normal"))]
    ok = {("vae-2d", "mnist", 0, "knn_accuracy_change"): (0.005, True)}
    clf = {(qs.classifier_check(100) + "_change"): (0.0, True), (qs.classifier_check(1000) + "_change"): (0.03, False)}
    inst = gates.table([gates.row(i, d, s, c, v, 0.01, p) for (i, d, s, c), (v, p) in ok.items()]
                       + [gates.row("classifier", "mnist", 0, c, v, 0.01, p) for c, (v, p) in clf.items()])
    v = qs.verdicts(_claim_results(), claims, inst).set_index("n_labelled")["verdict"]
    assert stats.verdict_kind(v[100]) == "supported"  # decided: m = 1, the n = 1000 row is out of the family
    assert v[1000] == f"not tested: classifier/{qs.classifier_check(1000)}_change failed"
    encoder_failed = inst.assign(passed=inst["instrument"] != "vae-2d")
    v = qs.verdicts(_claim_results(), claims, encoder_failed)["verdict"]
    assert v.str.startswith("not tested: vae-2d/knn_accuracy_change failed").all()
    no_encoder = qs.verdicts(_claim_results(), claims, inst[inst["instrument"] == "classifier"])
    assert no_encoder["verdict"].str.contains("vae-2d not measured").all()


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
    # n = 25 is no multiple of K = 10: 2 of each class, and 5 seeded classes get a third.
    odd = qs.select_arm(view, "stratified", 25, 0, TINY)
    counts = np.bincount(pool.y.numpy()[odd], minlength=10)
    assert len(np.unique(odd)) == 25 and sorted(counts.tolist()) == [2] * 5 + [3] * 5
    assert np.array_equal(odd, qs.select_arm(view, "stratified", 25, 0, TINY))
    with pytest.raises(ValueError, match="larger POOL_SIZE"):
        qs.stratified_selection(np.array([0, 0, 1]), 4, 2, 0)  # two of class 1 from a pool that holds one
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
    for claim in paper.CLAIMS:  # each rests on the encoders it samples from and on the classifier
        assert claim.instruments == qs.instruments_of(claim.a, claim.b)
    assert dict((c.name, c.instruments) for c in paper.CLAIMS)["ae-error − random"] == ("ae-2d", "classifier")
    # Every cell carries its own Table 1 gap and is claimed on that gap's side: t-SNE Clustered Normal is below
    # Random at unbalanced n = 100 (75.9 vs 76.6) and above it on balanced MNIST at n = 1000 (94.4 vs 94.0).
    tsne = next(c for c in paper.CLAIMS if c.a == "tsne/clustered-normal")
    assert tsne.paper_for((U, 100)) == pytest.approx(-0.7) and tsne.sign((U, 100)) == -1
    assert tsne.paper_for(("mnist", 1000)) == pytest.approx(0.4) and tsne.sign(("mnist", 1000)) == 1
    # all 14 rows of Table 1: 13 against Random, on every (dataset, n) of the table; a dataset outside the table
    # gets no paper number and the claim "beats Random"
    table1 = [c for c in paper.CLAIMS if c.b == "random" and c.a in paper.TABLE1]
    assert sorted(c.a for c in table1) == sorted(a for a in paper.TABLE1 if a != "random") and len(table1) == 13
    assert all(set(c.paper) == set(paper.TABLE1_COLUMNS) for c in table1)
    assert tsne.paper_for(("fashion-mnist", 100)) is None and tsne.sign(("fashion-mnist", 100)) == 1
    # dimension at a fixed family, family at a fixed dimension; the labelled reference outside the method claims
    names = {c.name for c in paper.CLAIMS}
    assert {"conv16/typiclust − conv/typiclust", "conv16/kcenter − conv/kcenter",
            "vae/typiclust − conv/typiclust", "conv/typiclust − random"} <= names
    assert [c.name for c in paper.REFERENCE] == ["stratified − random"] and "stratified − random" not in names


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
