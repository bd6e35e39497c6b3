"""Notebook 03 (issue 19): arms per budget, the t-SNE weight chosen on validation codes, the scale check's tasks,
how often one run reaches the paper's gap, and one seed end to end on a dataset the notebook was not written for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import norm
from sklearn.neighbors import KNeighborsClassifier
from test_query_selection import PARAMS, TINY, U, _split, toy  # noqa: F401  (toy: the fixture)

from latentlab import data, gates, stats
from latentlab.experiments import query_selection as qs
from latentlab.models import autoencoder


def test_budget_arms_restrict_the_arms_at_one_n_and_keep_the_order():
    cfg = TINY.replace(budget_arms={30: ["vae/uniform", "random"]})
    assert qs.arms_at(cfg, U, 20) == ["random", "vae/uniform"] and qs.arms_at(cfg, U, 30) == ["random", "vae/uniform"]
    assert qs.arms_at(cfg, "mnist", 30) == ["random"]  # mnist's arms that BUDGET_ARMS[30] names
    assert qs.arms_at(TINY.replace(budget_arms={"20": ["ae-error"]}), "mnist", 20) == ["ae-error"]  # YAML-string key
    with pytest.raises(ValueError, match="Unknown arm"):
        TINY.replace(budget_arms={20: ["vae/gmm"]})


def test_run_seed_runs_only_the_arms_of_each_budget(toy):  # noqa: F811
    cfg = TINY.replace(n_labelled={"mnist": [20, 30], U: [20]}, budget_arms={30: ["random"]})
    rows, _ = _split(qs.run_seed({"cfg": cfg, "dataset": "mnist", "seed": 0}))
    acc = rows[rows["metric"] == "accuracy"]
    assert sorted(acc[acc["n_labelled"] == 20]["arm"]) == sorted(PARAMS["ARMS"])
    assert acc[acc["n_labelled"] == 30]["arm"].tolist() == ["random"]


def test_the_tsne_weight_is_none_until_chosen_and_the_sweep_picks_the_best_validation_codes(toy):  # noqa: F811
    undecided = TINY.replace(tsne_weight=None)
    with pytest.raises(ValueError, match="choose it on validation"):
        qs.encoder_config("tsne", 150, undecided, 0)
    with pytest.raises(ValueError, match="give candidates"):
        TINY.replace(tsne_weight=None, tsne_weights=())
    tasks = qs.sweep_tasks(undecided)
    assert [(t["weight"], t["factor"]) for t in tasks] == [(3.0, 1), (3.0, 2), (10.0, 1), (10.0, 2)]
    assert {t["dataset"] for t in tasks} == {"mnist"} and {t["seed"] for t in tasks} == {0}
    sweep = pd.DataFrame([r for t in tasks for r in qs.tsne_weight_sweep(t)])
    assert sweep["tsne_weight"].tolist() == [3.0, 3.0, 10.0, 10.0] and (sweep["metric"] == "knn_accuracy").all()
    assert sweep["factor"].tolist() == [1, 2, 1, 2] and set(sweep["ae_steps"]) == {TINY.ae_steps}
    # each value is sklearn's 5-NN accuracy of the validation codes of the encoder trained with that weight
    pool, _ = qs.seed_data("mnist", 0, TINY)
    val = qs.val_set("mnist", TINY.n_val)
    for factor in (1, 2):  # factor 2: the convergence gate's encoder (twice the epochs), from the cache
        model = qs.fit_encoder("tsne", pool.x, TINY.replace(tsne_weight=3.0), 0, factor)
        z, z_val = (autoencoder.encode_all(model, x).numpy() for x in (pool.x, val.x))
        knn = KNeighborsClassifier(5).fit(z, pool.y.numpy()).score(z_val, val.y.numpy())
        at = (sweep["tsne_weight"] == 3.0) & (sweep["factor"] == factor)
        assert sweep.loc[at, "value"].item() == pytest.approx(knn)
    by_hand = pd.DataFrame({"metric": "knn_accuracy", "tsne_weight": [1.0, 3.0, 10.0], "value": [0.5, 0.7, 0.7]})
    assert qs.best_tsne_weight(by_hand) == 3.0  # ties: the smaller weight
    assert qs.best_tsne_weight(by_hand.assign(value=[0.9, 0.7, 0.7])) == 1.0


def test_the_tsne_weight_is_the_most_accurate_of_the_weights_that_settle_when_the_budget_doubles():
    def sweep(values):  # (weight, dataset, factor) -> accuracy, one seed
        return pd.DataFrame([{"metric": "knn_accuracy", "tsne_weight": w, "dataset": d, "seed": 0, "factor": f,
                              "value": v} for (w, d, f), v in values.items()])

    # 1.0 is the most accurate at 1x but moves 5 points on 'b'; 3.0 and 10.0 settle everywhere, 10.0 is better
    values = {(1.0, "a", 1): 0.90, (1.0, "a", 2): 0.905, (1.0, "b", 1): 0.80, (1.0, "b", 2): 0.75,
              (3.0, "a", 1): 0.70, (3.0, "a", 2): 0.70, (3.0, "b", 1): 0.70, (3.0, "b", 2): 0.705,
              (10.0, "a", 1): 0.72, (10.0, "a", 2): 0.72, (10.0, "b", 1): 0.74, (10.0, "b", 2): 0.735}
    assert qs.best_tsne_weight(sweep(values)) == 10.0
    assert qs.best_tsne_weight(sweep(values), tol=0.1) == 1.0  # a looser gate: 1.0 settles too
    moving = {k: v + (0.05 if k[2] == 2 else 0.0) for k, v in values.items()}  # nothing settles
    with pytest.warns(UserWarning, match="No candidate t-SNE weight settles"):  # largest moves 0.055, 0.055, 0.05
        assert qs.best_tsne_weight(sweep(moving)) == 10.0


def test_the_notebooks_tsne_weight_is_the_choice_of_its_committed_record():
    from latentlab.config import REPO
    from latentlab.runner import parameters_of

    cfg = qs.Config.from_parameters(parameters_of(REPO / "notebooks" / f"{qs.Config.NOTEBOOK}.ipynb", "default"))
    record = qs.tsne_weight_record()
    assert set(record["dataset"]) == set(cfg.datasets) and set(record["factor"]) == {1, 2}
    assert set(record["tsne_weight"]) == set(cfg.tsne_weights)
    assert set(record["ae_steps"]) == {qs.per_dataset(cfg.ae_steps, "tsne")}
    assert cfg.tsne_weight == qs.best_tsne_weight(record)
    same, shown = qs.choose_tsne_weight(cfg)  # a weight given: the record is shown, nothing is trained
    assert same == cfg and shown.equals(record)


def test_the_notebooks_encoder_rates_and_budgets_are_the_choices_of_their_committed_record():
    from latentlab.config import REPO
    from latentlab.runner import parameters_of

    cfg = qs.Config.from_parameters(parameters_of(REPO / "notebooks" / f"{qs.Config.NOTEBOOK}.ipynb", "default"))
    record = qs.budget_record()
    assert set(record["dataset"]) == set(cfg.datasets) and set(record["tsne_weight"]) == {cfg.tsne_weight}
    chosen = qs.settled_budget(record)
    chosen = chosen[chosen["chosen"]].set_index("encoder")
    assert sorted(chosen.index) == ["conv", "tsne", "vae"]  # every family has a settled, working rate
    for family, row in chosen.iterrows():
        assert row["ae_lr"] == qs.per_dataset(cfg.ae_lr, family) and row["failed_runs"] == 0
        assert row["settled_steps"] == qs.per_dataset(cfg.ae_steps, family)


def test_the_scale_check_runs_the_headline_arms_at_four_times_the_encoders_on_scale_seeds(toy, monkeypatch):  # noqa: F811
    cfg = TINY.replace(scale_seeds=(1, 2), dataset_arms={U: ["random", "vae/clustered-normal", "ae-error"]})
    tasks = qs.scale_tasks(cfg)
    assert [(t["dataset"], t["seed"]) for t in tasks] == [("mnist", 1), ("mnist", 2), (U, 1), (U, 2)]
    big = tasks[0]["cfg"]
    assert big.ae_steps == qs.SCALE * TINY.ae_steps and qs.budgets_of(big, U) == [20]  # the smallest n only
    # SCALE x the updates (8 on 150 images in batches of 32: 2 epochs, against the notebook's 1)
    assert qs.encoder_config("vae", 150, big, 1).epochs == autoencoder.epochs_for(qs.SCALE * TINY.ae_steps, 150, 32)
    assert qs.encoder_config("vae", 150, big, 1).epochs == 2 * qs.encoder_config("vae", 150, cfg, 1).epochs
    trained = []
    real = autoencoder.train_autoencoder
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda m, x, c, *a, **k: trained.append(c.kind) or
                        real(m, x, c, *a, **k))
    rows, inst = _split(qs.run_seed(tasks[2]))
    assert set(rows["arm"]) == {"random", "vae/clustered-normal"}  # ae-error is no headline arm
    assert trained == ["vae"] and set(inst["instrument"]) == {"vae-2d", "pca-2d"}
    assert qs.scale_tasks(TINY) == []  # SCALE_SEEDS [] at the default: no task


def _two_arms(diffs: list[float], n: int = 100) -> pd.DataFrame:
    """Random at 0.80 and an arm at 0.80 + d / 100 on seed i (d in points)."""
    rows = []
    for s, d in enumerate(diffs):
        rows += [{"dataset": "mnist", "arm": "random", "seed": s, "metric": "accuracy", "value": 0.80,
                  "n_labelled": n},
                 {"dataset": "mnist", "arm": "vae/normal", "seed": s, "metric": "accuracy", "value": 0.80 + d / 100,
                  "n_labelled": n}]
    return pd.DataFrame(rows)


def test_single_run_reach_counts_seeds_at_or_beyond_the_papers_gap_and_its_normal_approximation():
    diffs = [1.0, 3.0, 5.0, 9.0]
    runs = _two_arms(diffs)
    for paper_gap, sign in ((4.0, 1), (-2.0, -1)):
        claim = stats.Claim("vae/normal", "random", {("mnist", 100): paper_gap})
        table = qs.single_run_reach(runs, qs.verdicts(runs, [claim], gates.table([])))
        d = np.array(diffs)
        assert table["reach_share"].item() == pytest.approx(np.mean(sign * d >= sign * paper_gap))
        expected = 1 - norm.cdf(sign * (paper_gap - d.mean()) / d.std(ddof=1))
        assert table["reach_normal"].item() == pytest.approx(expected)
    assert table["reach_share"].item() == 0.0  # no seed is 2 points below Random
    no_number = qs.single_run_reach(runs, qs.verdicts(runs, [stats.Claim("vae/normal", "random")], gates.table([])))
    assert no_number["reach_share"].isna().all() and no_number["reach_normal"].isna().all()


def _toy_binary(split: str) -> data.Dataset:
    """A two-class dataset under another name (breastmnist): class 1 images carry a bright square."""
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    y = torch.tensor([0, 1] * (100 if split == "train" else 20))
    x = 0.1 * torch.rand(len(y), 1, 28, 28, generator=g)
    x[y == 1, :, 8:20, 8:20] += 0.7
    return data.Dataset(x.clamp(0, 1), y, data.DatasetInfo("breastmnist", "binary-class", 1, ["normal", "tumour"]))


def test_one_seed_runs_end_to_end_on_a_dataset_the_notebook_was_not_written_for(monkeypatch, tmp_path):
    """Another dataset of the loader (two classes, another name) through the notebook's path: the sweep, the grid
    task, the convergence task and the gates, the verdicts with the paper's claims (no paper number there) and the
    single-run reach; no KeyError for 'mnist'."""
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "load_cached", lambda name, split="train", size=28: _toy_binary(split))
    qs.training_split.cache_clear()
    cfg = qs.Config.from_parameters(PARAMS | {
        "DATASETS": ["breastmnist"], "SEEDS": [0, 1, 2], "N_LABELLED": [20, 30], "DATASET_ARMS": {},
        "ARMS": ["random", "stratified", "ae-error", "vae/clustered-normal", "tsne/normal", "conv16/typiclust"],
        "BUDGET_ARMS": {30: ["random", "stratified"]}, "POOL_SIZE": 120, "N_VAL": 30, "TSNE_WEIGHT": None})
    sweep = pd.DataFrame([r for t in qs.sweep_tasks(cfg) for r in qs.tsne_weight_sweep(t)])
    cfg = cfg.replace(tsne_weight=qs.best_tsne_weight(sweep))
    rows = [r for t in qs.doubled_tasks(cfg) + [{"cfg": cfg, "dataset": "breastmnist", "seed": s} for s in cfg.seeds]
            for r in qs.run_seed(t)]
    results, inst = _split(rows)
    inst = gates.table(inst, qs.convergence_gates(results, inst))
    assert set(results["dataset"]) == {"breastmnist"} and set(results["seed"]) == {0, 1, 2}
    strat = results[(results["arm"] == "stratified") & (results["metric"] == "balance")]["value"]
    assert strat.to_numpy() == pytest.approx(1.0)  # 10 and 15 of each class
    assert {"vae-2d", "tsne-2d", "ae-16d", "ae-2d", "classifier"} <= set(inst["instrument"])
    from latentlab.papers import query_selection as paper
    runs = results[results["n_labelled"] > 0]
    verdicts = qs.single_run_reach(runs, qs.verdicts(runs, paper.CLAIMS, inst))
    # n = 30 runs Random and the stratified reference only: no method claim there, the reference at both n
    assert set(verdicts["n_labelled"]) == {20} and verdicts["paper"].isna().all()
    assert set(qs.verdicts(runs, paper.REFERENCE, inst)["n_labelled"]) == {20, 30}
    assert verdicts["reach_share"].isna().all()  # no paper number outside Table 1's datasets
    assert paper.table1(results).empty
    qs.training_split.cache_clear()


def test_the_walk_through_encoders_train_once_per_dataset_and_encoder_and_the_view_loads_them(toy, monkeypatch):  # noqa: F811
    tasks = qs.encoder_tasks(TINY, 0)
    assert [(t["dataset"], t["encoder"]) for t in tasks] == [("mnist", "conv"), ("mnist", "conv16"), ("mnist", "tsne"),
                                                             ("mnist", "vae"), (U, "vae")]
    for t in tasks:
        assert qs.train_encoder(t) == []
    trained = []
    real = autoencoder.train_autoencoder
    monkeypatch.setattr(autoencoder, "train_autoencoder", lambda *a, **k: trained.append(1) or real(*a, **k))
    pool, _ = qs.seed_data("mnist", 0, TINY)
    view = qs.seed_view(pool, qs.arms_of(TINY, "mnist"), TINY, 0)
    assert trained == [] and sorted(view.models) == ["conv", "conv16", "tsne", "vae"]  # all from the cache


def test_the_budget_sweep_measures_the_gates_value_and_its_own_candidate_is_the_grids_encoder(toy):  # noqa: F811
    cfg = TINY.replace(ae_lr={"conv": 0.01, "vae": 0.003, "tsne": 0.003})
    tasks = qs.budget_sweep_tasks(cfg, ["vae"], lrs=[0.003, 0.01], steps=[2, 8], seeds=[0], datasets=["mnist"])
    assert [(t["lr"], t["steps"]) for t in tasks] == [(0.003, 2), (0.003, 8), (0.01, 2), (0.01, 8)]
    sweep = pd.DataFrame([r for t in tasks for r in qs.budget_sweep(t)])
    assert sweep["metric"].tolist() == ["knn_accuracy", "gates_passed"] * 4 and sweep["arm"].eq("vae").all()
    sweep, passed = sweep[sweep["metric"] == "knn_accuracy"], sweep[sweep["metric"] == "gates_passed"]
    assert sweep[["ae_lr", "ae_steps"]].values.tolist() == [[0.003, 2], [0.003, 8], [0.01, 2], [0.01, 8]]
    # the candidate equal to the config (0.003, 2 updates) is the grid's own VAE, and its value the gate's:
    pool, _ = qs.seed_data("mnist", 0, cfg)
    val = qs.val_set("mnist", cfg.n_val)
    model = qs.fit_encoder("vae", pool.x, cfg, 0)
    assert qs.encoder_config("vae", len(pool.x), cfg, 0).lr == 0.003  # the family's own rate
    z, z_val = (autoencoder.encode_all(model, x).numpy() for x in (pool.x, val.x))
    knn = KNeighborsClassifier(5).fit(z, pool.y.numpy()).score(z_val, val.y.numpy())
    assert sweep.iloc[0]["value"] == pytest.approx(knn)
    # gates_passed: 1 exactly when the seed's encoder gate (against PCA of the same size) passes
    ref = qs.pca_references(pool, val, [2], "mnist", 0)[2]
    rows = qs.encoder_gate(model, autoencoder.encode_all(model, pool.x), pool, val, ref, instrument="vae",
                           dataset="mnist", seed=0)
    assert passed.iloc[0]["value"] == float(all(r["passed"] for r in rows))
    # steps per family: the candidates of each family's own tasks
    tasks = qs.budget_sweep_tasks(cfg, ["vae", "conv"], lrs=[0.003], steps={"vae": [2], "conv": [4, 8]}, seeds=[0],
                                  datasets=["mnist"])
    assert [(t["encoder"], t["steps"]) for t in tasks] == [("vae", 2), ("conv", 4), ("conv", 8)]
    # 8 updates on 150 images in batches of 32 are 2 epochs (2 updates: 1), so the candidates are distinct models
    assert qs.encoder_config("vae", 150, cfg.replace(ae_steps=8), 0).epochs == 2
    with pytest.raises(ValueError, match="encoder family 'conv'"):
        qs.encoder_config("conv", 150, cfg.replace(ae_lr={"vae": 0.003}), 0)


def test_settled_budget_is_the_first_budget_whose_next_moves_the_mean_less_than_a_point_by_hand():
    rows = [("vae", 0.003, 1000, [0.50, 0.52]), ("vae", 0.003, 3000, [0.58, 0.60]), ("vae", 0.003, 6000, [0.585, 0.6]),
            ("vae", 0.01, 1000, [0.55, 0.55]), ("vae", 0.01, 3000, [0.60, 0.62]), ("vae", 0.01, 6000, [0.55, 0.57]),
            ("conv", 0.01, 1000, [0.60, 0.60]), ("conv", 0.01, 3000, [0.605, 0.605])]
    sweep = pd.DataFrame([{"arm": e, "ae_lr": lr, "ae_steps": n, "seed": s, "metric": "knn_accuracy", "value": v}
                          for e, lr, n, vs in rows for s, v in enumerate(vs)])
    out = qs.settled_budget(sweep).set_index(["encoder", "ae_lr"])
    # vae at 0.003: means 0.51, 0.59, 0.5925: 1000 -> 3000 moves 8 points, 3000 -> 6000 0.25: settled at 3000
    assert out.loc[("vae", 0.003), "settled_steps"] == 3000
    assert out.loc[("vae", 0.003), "knn_accuracy"] == pytest.approx(0.59)
    assert out.loc[("vae", 0.003), "chosen"]
    # vae at 0.01: means 0.55, 0.61, 0.56: every move is 5 points or more, so no budget settles, and it is not chosen
    assert pd.isna(out.loc[("vae", 0.01), "settled_steps"]) and not out.loc[("vae", 0.01), "chosen"]
    # conv: 1000 -> 3000 moves half a point: settled at its smallest budget
    assert out.loc[("conv", 0.01), "settled_steps"] == 1000 and out.loc[("conv", 0.01), "chosen"]
    assert (out["failed_runs"] == 0).all()  # no recon_ratio rows: no failed run
    # a rate one of whose runs failed its encoder gate (e.g. died in training) is never chosen, even if it settles
    dead = pd.DataFrame([{"arm": "conv", "ae_lr": 0.01, "ae_steps": 3000, "seed": 1, "metric": "gates_passed",
                          "value": 0.0}, {"arm": "conv", "ae_lr": 0.01, "ae_steps": 1000, "seed": 0,
                                          "metric": "gates_passed", "value": 1.0}])
    out = qs.settled_budget(pd.concat([sweep, dead])).set_index(["encoder", "ae_lr"])
    assert out.loc[("conv", 0.01), "failed_runs"] == 1 and not out.loc[("conv", 0.01), "chosen"]
    assert out.loc[("vae", 0.003), "chosen"]  # the other family is untouched


def test_the_pretrained_tsne_encoder_starts_from_the_seeds_conv_ae(toy):  # noqa: F811
    """TSNE_PRETRAIN: the t-SNE-style encoder is the seed's Conv AE (same factor) fine-tuned with the t-SNE term. At a
    vanishing learning rate the fine-tuning leaves the Conv AE's codes; from random weights, or with another init, the
    cache keeps separate models; an init of other sizes is refused."""
    from latentlab.models.tsne_ae import TSNEConfig, fit_tsne_autoencoder

    pool, _ = qs.seed_data("mnist", 0, TINY)
    still = TINY.replace(ae_lr={"conv": 0.01, "vae": 0.01, "tsne": 1e-12})
    conv = qs.fit_encoder("conv", pool.x, still, 0)
    tsne = qs.fit_encoder("tsne", pool.x, still, 0)
    z_conv, z_tsne = (autoencoder.encode_all(m, pool.x) for m in (conv, tsne))
    assert torch.allclose(z_tsne, z_conv, atol=1e-5)
    scratch = qs.fit_encoder("tsne", pool.x, still.replace(tsne_pretrain=False), 0)
    assert not torch.allclose(autoencoder.encode_all(scratch, pool.x), z_conv, atol=1e-3)
    doubled = qs.fit_encoder("conv", pool.x, still, 0, factor=2)  # the gate's: the doubled Conv AE is its init
    assert torch.allclose(autoencoder.encode_all(qs.fit_encoder("tsne", pool.x, still, 0, factor=2), pool.x),
                          autoencoder.encode_all(doubled, pool.x), atol=1e-5)
    wide = qs.fit_encoder("conv", pool.x, still.replace(ae_width=4), 0)
    with pytest.raises(ValueError, match="does not fit"):
        fit_tsne_autoencoder(pool.x, TSNEConfig(latent_dim=2, width=TINY.ae_width, epochs=1, batch_size=32,
                                                perplexity=5.0), init=wide)


def test_the_scale_check_multiplies_every_familys_updates():
    cfg = TINY.replace(ae_steps={"conv": 2, "vae": 3, "tsne": 1})
    assert qs.scaled_encoders(cfg).ae_steps == {"conv": 2 * qs.SCALE, "vae": 3 * qs.SCALE, "tsne": qs.SCALE}
    assert qs.encoder_config("vae", 64, cfg, 0).epochs == autoencoder.epochs_for(3, 64, cfg.ae_batch)
    assert qs.scaled_encoders(TINY).ae_steps == qs.SCALE * TINY.ae_steps
