"""Notebook 01's experiment module and the paper's numbers: the small decisions, and one tiny seed end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from latentlab import data, gates, grid, metrics, oracle
from latentlab.config import ClfConfig, OracleConfig
from latentlab.experiments import aisel
from latentlab.papers import aisel as paper
from latentlab.train import fit_classifier, predict_proba


def test_class_balance_is_a_normalised_label_entropy():
    assert aisel.class_balance(torch.tensor([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert aisel.class_balance(torch.tensor([2, 2, 2]), 4) == pytest.approx(0.0)
    assert aisel.class_balance(torch.tensor([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # ln 2 / ln 4


def test_the_claims_carry_the_papers_effects_at_the_papers_ratio_only():
    plain = {(c.a, c.b): c.paper for c in paper.claims()}
    assert plain == {("aisel+m", "random+m"): None, ("random+m", "native"): None, ("aisel+m", "native"): None,
                     ("aisel+m", "random+M"): -3.0, ("aisel+m", "maxent+m"): None, ("random+M", "random+m"): None,
                     ("aisel+m", "real+m"): None, ("aisel+m", "uncertain-real+m"): None, ("real+m", "native"): None,
                     ("aisel+M", "random+M"): None, ("random+M", "native"): None}
    at = {(c.a, c.b): c.paper for c in paper.claims({"pneumoniamnist": "M", "mnist": "m"})}
    assert at[("aisel+M", "random+M")] == {"pneumoniamnist": 8.3} and at[("random+M", "native")] == {
        "pneumoniamnist": 7.8}
    assert at[("aisel+m", "random+m")] == {"mnist": 8.3} and at[("aisel+m", "native")] == {"mnist": 16.1}
    assert paper.CLAIMS[3].margin == paper.MARGIN == 3.0  # "AISEL close to random+M": an equivalence claim
    assert all(c.paper is None and c.sign() == 1 for c in paper.AUC_CLAIMS)
    assert [c.margin for c in paper.AUC_CLAIMS] == [c.margin for c in paper.CLAIMS]
    assert all(c.instruments == (("classifier",) if c.a == "real+m" else ("gin", "gin-samples", "classifier"))
               for c in paper.CLAIMS + paper.AUC_CLAIMS)
    assert {(c.a, c.b) for c in paper.HEADLINE} == {("aisel+m", "random+m"), ("aisel+m", "random+M"),
                                                    ("aisel+M", "random+M")}
    table = paper.table()
    assert list(table.columns) == ["native", "random+m", "aisel+m", "random+M"]
    assert table.loc["accuracy", "aisel+m"] == 75.60 and set(table.index) == {"accuracy", "sensitivity",
                                                                                "specificity", "f1"}


def test_the_papers_ratio_is_where_big_m_is_nine_times_n(tiny):
    assert aisel.at_paper_ratio(tiny) == {}
    assert aisel.at_paper_ratio(tiny.replace(m_large=9 * 40)) == {"breastmnist": "M"}
    assert aisel.at_paper_ratio(tiny.replace(m_small=9 * 40)) == {"breastmnist": "m"}


def test_soft_labels_are_one_hot_for_real_images_and_the_oracles_probabilities_for_synthetic_ones():
    info = data.DatasetInfo("toy", "multi-class", 1, ["a", "b", "c"])
    labelled = data.Dataset(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 1]), info)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[2.0, 0.0, 0.0]]).expand(len(x), 3)

    o = oracle.Oracle("toy", Fixed(), 1.0, 1.0, 0.4, "multi-class")
    joined = aisel.soft_labelled(labelled, torch.rand(2, 1, 28, 28), o)
    assert joined.y.shape == (6, 3) and torch.equal(joined.y[:4].argmax(1), labelled.y)
    assert torch.allclose(joined.y.sum(1), torch.ones(6)) and joined.y[4, 0] == pytest.approx(0.787, abs=1e-3)


def test_distance_to_real_is_the_mean_nearest_distance():
    real = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert aisel.distance_to_real(torch.tensor([[0.0, 0.5], [3.0, 0.0]]), real) == pytest.approx((0.5 + 2.0) / 2)


@pytest.fixture()
def tiny(writable_mirror, tmp_path, monkeypatch):
    """A config of notebook 01 at toy size on BreastMNIST (546 training images), with a private model cache."""
    monkeypatch.setenv("LATENTLAB_DATA", str(writable_mirror))
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    data.load_cached.cache_clear()
    oracle.train_oracle.cache_clear()
    clf = ClfConfig(arch="cnn", width=4, steps=4, min_epochs=1, batch=32, lr=1e-3, class_weight="balanced",
                    monitor="auc", val_checks=2, lr_decay=None)
    yield aisel.Config(datasets=("breastmnist",), n_labelled={"breastmnist": 40}, seeds=(0, 1), m_small=12,
                       m_large=30, latent_dim=2, gin_width=4, gan_steps=2, n_critic=1, gan_lr=1e-3, gan_batch=16,
                       encoder_steps=2, invert_steps=3,
                       oracle=OracleConfig(arch="cnn", width=8, steps=150, max_images=None), clf=clf,
                       n_candidates=200, sp_iters=3, n_val=60, n_test=100, curve_sizes=(5,), curve_seeds=(0,),
                       scale_datasets=("breastmnist",), scale_seeds=(0, 1), workers=1)
    oracle.train_oracle.cache_clear()


def test_run_seed_end_to_end_and_its_rows_depend_on_their_coordinates_only(tiny, tmp_path):
    one, gates_one = grid.tables(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[0]), workers=1)
    assert list(dict.fromkeys(one.arm)) == ["native", "random+m", "random+M", "aisel+m", "aisel+M", "maxent+m",
                                            "real+m", "uncertain-real+m"]
    sizes = one.groupby("arm")["n_synthetic"].first().to_dict()
    assert sizes == {"native": 0, "random+m": 12, "random+M": 30, "aisel+m": 12, "aisel+M": 30, "maxent+m": 12,
                     "real+m": 12, "uncertain-real+m": 12}
    metrics = set(one[one.arm == "aisel+m"].metric)
    assert {"accuracy", "auc", "oracle_confidence", "class_balance", "classifier_entropy", "energy_distance",
            "val_accuracy", "best_epoch", "boundary_share", "real_passes", "class_share_0", "class_share_1"} <= metrics
    assert set(one[one.arm == "native"].metric) >= {"val_accuracy", "best_epoch", "gin_recon_mse", "weights_ess"}
    passes = one[one.metric == "real_passes"].set_index("arm")["value"]
    assert passes.nunique() == 1  # every arm sees the real images as often as native
    shares = one[one.metric.str.startswith("class_share_")].groupby("arm")["value"].sum()
    assert np.allclose(shares, 1.0) and set(shares.index) == set(aisel.SYNTHETIC + aisel.REAL)
    restarts = int(gates_one.query("check == 'restarts'").value.item())  # the restart rule: k discarded GINs
    assert len(list(tmp_path.glob("gin-*.pt"))) == restarts + 1 and len(list(tmp_path.glob("oracle-*.pt"))) == 1
    two, gates_two = grid.tables(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[1, 0]), workers=1)
    assert two[two.seed == 0].reset_index(drop=True).equals(one)  # cached GIN, same rows, whatever the grid
    assert gates_two[gates_two.seed == 0].reset_index(drop=True).equals(gates_one)  # the gate rows too
    made = gates_two.query("check == 'restarts'").value.sum() + 2
    assert len(list(tmp_path.glob("gin-*.pt"))) == made  # one GIN per seed, and one per restart
    assert list(gates_two.columns) == list(gates.COLUMNS) and set(gates_two.seed) == {0, 1}
    kept = gates_two[(gates_two.seed == 1) & ~gates_two.check.str.startswith("discarded")
                     & (gates_two.check != "restarts")]
    checks = kept.groupby("instrument", sort=False)["check"].apply(list).to_dict()
    assert checks == {"gin": ["oracle_accuracy_real", "oracle_accuracy_recon", "oracle_accuracy_real_0",
                              "oracle_accuracy_recon_0", "oracle_accuracy_real_1", "oracle_accuracy_recon_1",
                              "mean_image_mse", "recon_mse"],  # per class: the oracle labels the GIN's images
                      "gin-samples": ["min_class_share", "mean_confidence", "fd_model", "fd_floor", "fd_ceiling",
                                      "fd_gap_closed"]}
    native = one[(one.arm == "native") & (one.metric == "gin_recon_mse")].value.item()
    assert native == gates_one.query("check == 'recon_mse'").value.item()


def test_the_gin_gates_measure_this_seeds_gin_on_fixed_validation_images_never_the_test_split(tiny):
    o = oracle.train_oracle("breastmnist", tiny.oracle)
    s = aisel.setup(tiny, "breastmnist", 0, o)
    rows = pd.DataFrame(aisel.gin_gates(tiny, s.gin, s.train, s.val, o, "breastmnist", 0)).set_index("check")["value"]
    held = data.fixed_subset(s.val, aisel.GATE_IMAGES)  # the whole 60-image validation subset here
    assert len(held) == 60
    by_hand = ((s.gin.reconstruct(held.x) - held.x) ** 2).mean().item()
    assert rows["recon_mse"] == pytest.approx(by_hand, rel=1e-6)
    assert rows["mean_image_mse"] == pytest.approx(held.x.var(0, unbiased=False).mean().item(), rel=1e-5)
    assert rows["oracle_accuracy_real"] == pytest.approx((o.label(held.x)[0] == held.y).float().mean().item())
    assert aisel.train_gin({"cfg": tiny, "dataset": "breastmnist", "seed": 0})["recon_mse"] == rows["recon_mse"]
    # min(GATE_IMAGES, M) = 30 samples: the smallest class share is a multiple of 1/30
    assert rows["min_class_share"] * 30 == pytest.approx(round(rows["min_class_share"] * 30))


@pytest.mark.parametrize("passes_from, restarts", [(0, 0), (1, 1), (99, aisel.RESTARTS)])
def test_the_restart_rule_keeps_the_first_gin_that_passes_from_the_next_training_seeds(tiny, monkeypatch,
                                                                                      passes_from, restarts):
    trained, made = [], {}

    def fake_gin_for(cfg, train, seed):  # a GIN is its training seed here
        trained.append(seed)
        return made.setdefault(seed, object())

    def fake_gates(cfg, gin, train, val, judge, name, seed):
        attempt = [k for k, g in made.items() if g is gin][0] // aisel.RESTART_SEED
        assert val is splits[1] and seed == 7  # validation images; the seed's other draws keep the seed
        return [gates.row("gin", name, seed, "recon_mse", attempt, threshold=0.5, passed=attempt >= passes_from)]

    monkeypatch.setattr(aisel, "_GATED", {})
    monkeypatch.setattr(aisel, "gin_for", fake_gin_for)
    monkeypatch.setattr(aisel, "gin_gates", fake_gates)
    splits = ("train", "val")
    gin, rows = aisel.gated_gin(tiny, *splits, None, "breastmnist", 7)
    assert trained == [7 + k * aisel.RESTART_SEED for k in range(restarts + 1)]  # at most RESTARTS restarts
    assert gin is made[trained[-1]]
    table = pd.DataFrame(rows).set_index("check")
    assert table.loc["restarts", "value"] == restarts and table.loc["restarts", "passed"]
    assert table.loc["recon_mse", "value"] == restarts
    assert table.loc["recon_mse", "passed"] == (passes_from <= aisel.RESTARTS)  # the last GIN kept, failed or not
    discarded = table[table.index.str.startswith("discarded")]
    assert list(discarded.index) == [f"discarded{k}_recon_mse" for k in range(restarts)]
    assert list(discarded.value) == list(range(restarts)) and discarded.passed.all()  # reported, not gated
    again = aisel.gated_gin(tiny, *splits, None, "breastmnist", 7, remember=True)
    assert aisel.gated_gin(tiny, *splits, None, "breastmnist", 7, remember=True)[0] is again[0]
    assert len(trained) == 2 * (restarts + 1)  # remembered: gated once in this process, not twice


def test_every_run_records_its_kept_check_and_synthetic_images_train_from_the_first_epoch(tiny):
    o = oracle.train_oracle("breastmnist", tiny.oracle)
    s = aisel.setup(tiny, "breastmnist", 0, o)
    f = s.gin.sample_latent(12, generator=torch.Generator().manual_seed(0))
    fit, _ = aisel.fit_synthetic(tiny, s, o, f)
    assert fit.history[0]["n_train"] == len(s.labelled) + 12  # the synthetic images are in epoch 0 already
    assert fit.best_epoch in fit.schedule.val_epochs and fit.best_epoch >= 0
    values = aisel.run_scores(fit, s)
    assert values["best_epoch"] == fit.best_epoch
    assert values["val_accuracy"] == pytest.approx((fit.model(s.val.x).argmax(1) == s.val.y).float().mean().item())


def test_the_convergence_gate_compares_the_native_run_with_the_same_seed_at_twice_the_budget(tiny):
    res, _ = grid.tables(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[0, 1]), workers=1)
    doubled = pd.DataFrame(aisel.native_at_2x({"cfg": tiny, "dataset": "breastmnist", "seed": 0}))
    s = aisel.setup(tiny, "breastmnist", 0, oracle.train_oracle("breastmnist", tiny.oracle))
    fit = fit_classifier(s.labelled, s.val, tiny.clf.scaled(2), 0)
    assert fit.schedule.epochs == 2 * s.native.schedule.epochs
    assert doubled.query("metric == 'val_accuracy'").value.item() == aisel.val_accuracy(fit, s.val)
    rows = pd.DataFrame(gates.classifier_convergence(res, doubled, setting="arm"))
    once = res.query("arm == 'native' and metric == 'val_accuracy'").set_index("seed")["value"]
    change = rows[rows.threshold.notna()].squeeze()  # the gated row: the change at 2x the budget
    assert change.instrument == "classifier" and change.seed == 0 and "native" in change.check
    assert change.value == pytest.approx(abs(aisel.val_accuracy(fit, s.val) - once[0]))
    assert change.threshold == pytest.approx(max(0.01, once.std()))


def test_claims_rest_on_the_gin_read_not_tested_when_its_gate_fails_and_not_decided_on_two_seeds(tiny):
    res, inst = grid.tables(aisel.run_seed, grid.tasks(tiny, dataset=tiny.datasets, seed=[0, 1, 2]), workers=1)
    doubled = pd.DataFrame(aisel.native_at_2x({"cfg": tiny, "dataset": "breastmnist", "seed": 0}))
    inst = gates.table(inst, gates.classifier_convergence(res, doubled, setting="arm"))
    passing = inst.assign(passed=True)
    ok = paper.verdicts(res, passing)
    assert len(ok) == 22 and not ok.verdict.str.startswith("not tested").any()  # 11 claims x 2 metrics
    broken = passing.copy()
    broken.loc[(broken.instrument == "gin") & (broken.check == "recon_mse") & (broken.seed == 1), "passed"] = False
    table = paper.verdicts(res, broken)
    on_gin = table.comparison != "real+m − native"
    assert (table.verdict[on_gin] == "not tested: gin/recon_mse failed").all()
    assert not table.verdict[~on_gin].str.startswith("not tested").any()  # real images: no GIN under the claim
    missing = paper.verdicts(res, passing[passing.instrument != "classifier"]).verdict
    assert (missing == "not tested: classifier not measured").all()
    assert table.attrs["family"] <= 2 and ok.attrs["family"] <= 22
    two = paper.verdicts(res[res.seed < 2], passing[passing.seed < 2]).verdict  # the smoke profile's two seeds
    assert two.str.startswith("not decided").all()


def test_a_variant_reproduces_the_main_grids_aisel_rows(tiny):
    main = aisel.run_seed({"cfg": tiny, "dataset": "breastmnist", "seed": 0})
    rows = pd.DataFrame(aisel.run_variant({"cfg": tiny, "dataset": "breastmnist", "seed": 0, "variant": "no fixed"}))
    assert set(rows.arm) == {"aisel+m", "aisel+m (no fixed)"}
    mine = rows[(rows.arm == "aisel+m") & (rows.metric != "distance_to_real")].set_index("metric")["value"]
    theirs = pd.DataFrame(main).query("arm == 'aisel+m'").set_index("metric")["value"]
    assert mine.to_dict() == theirs.to_dict()


def test_the_real_arms_draw_from_the_unlabelled_pool_and_uncertain_takes_the_least_sure(tiny):
    s = aisel.setup(tiny, "breastmnist", 0, oracle.train_oracle("breastmnist", tiny.oracle))
    assert len(s.pool) + len(s.labelled) == len(s.train)
    flat = lambda x: {tuple(v.flatten().tolist()) for v in x}  # noqa: E731
    sets = aisel.real_sets(tiny, s, 12)
    assert all(len(x) == 12 for x in sets.values())
    assert not (flat(sets["real+m"]) | flat(sets["uncertain-real+m"])) & flat(s.labelled.x)
    gen = torch.Generator().manual_seed(30_000)
    candidates = s.pool.x[torch.randperm(len(s.pool), generator=gen)[:tiny.n_candidates]]
    h = metrics.entropy(predict_proba(s.classifier, candidates, task="binary-class"))
    chosen = metrics.entropy(predict_proba(s.classifier, sets["uncertain-real+m"], task="binary-class"))
    assert chosen.min() >= torch.sort(h, descending=True).values[11] - 1e-6


def test_passes_are_matched_so_larger_sets_get_more_updates_not_fewer_passes(tiny):
    o = oracle.train_oracle("breastmnist", tiny.oracle)
    s = aisel.setup(tiny, "breastmnist", 0, o)
    native = s.native.schedule
    fit, info = aisel.fit_extra(tiny, s, o, s.pool.x[:30])
    assert fit.schedule.epochs == native.epochs == info["real_passes"]
    assert fit.schedule.epochs * math.ceil(70 / fit.schedule.batch_size) > native.epochs  # more updates


def test_effective_sample_size_of_flat_and_concentrated_weights():
    assert aisel.effective_sample_size(torch.ones(50)) == pytest.approx(50)
    assert aisel.effective_sample_size(torch.tensor([0.0, 0.0, 3.0])) == pytest.approx(1)
    assert aisel.effective_sample_size(torch.tensor([1.0, 1.0, 0.0, 0.0])) == pytest.approx(2)


def test_the_scale_check_multiplies_both_gin_budgets_and_nothing_else(tiny):
    big = aisel.scaled_gin(tiny)
    assert (big.gan_steps, big.encoder_steps) == (4 * tiny.gan_steps, 4 * tiny.encoder_steps)
    assert big.replace(gan_steps=tiny.gan_steps, encoder_steps=tiny.encoder_steps) == tiny
