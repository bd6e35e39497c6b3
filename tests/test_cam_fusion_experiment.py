"""Notebook 05's experiment: long-tailed splits, and one seed end to end on a tiny synthetic dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latentlab import config, data, train
from latentlab.experiments import cam_fusion as cam
from latentlab.models import SmallCNN
from latentlab.oracle import Oracle
from latentlab.results import INSTRUMENT_COLUMNS
from latentlab.utils import batched

PARAMS = dict(DATASETS=["toy"], SEEDS=[0], ARMS=list(cam.ARMS), WORKERS=1, IMBALANCE={"toy": 10}, N_MAX={},
              N_TAIL=1, TAIL_ORDER="fixed", N_AUGMENT=6, AE_PRETRAINED=None, AE_SUBFOLDER=None, AE_IMAGE_SIZE=None,
              AE_LATENT=4,
              AE_WIDTH=[4, 4, 4], AE_STEPS=2, AE_BATCH=8, IL_CHANNELS=4, IL_WIDTH=8, IL_GENERATIONS=2,
              IL_INTERACTION_STEPS=2, IL_IMITATION_STEPS=2, K_NEIGHBOURS=3, DENOISER_WIDTH=8, DENOISER_STEPS=2,
              REFINE_SCHEDULE=4, REFINE_STEPS=2, REFINE_MODE="sdedit", REFINE_GRID=[0, 2], N_FID=8,
              FEATURE_AE_STEPS=2, SCALE_SEEDS=[],
              CLF_ARCH="cnn", CLF_WIDTH=4, CLF_STEPS=2, CLF_MIN_EPOCHS=1, CLF_BATCH=16, CLF_LR=2e-3,
              CLF_CLASS_WEIGHT=None, CLF_MONITOR="loss", CLF_VAL_CHECKS=10, CLF_LR_DECAY=None,
              ORACLE_ARCH="cnn", ORACLE_WIDTH=4, ORACLE_STEPS=2, ORACLE_MAX_IMAGES=None, N_VAL=None, N_TEST=None)
TINY = cam.Config.from_parameters(PARAMS)


def _toy(split: str, n_classes: int = 3) -> data.Dataset:
    """Class k: a bright square at position k, plus noise; 40 images per class (train), 10 (val, test)."""
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
    per = 40 if split == "train" else 10
    y = torch.arange(n_classes).repeat_interleave(per)
    x = 0.1 * torch.rand(len(y), 1, 28, 28, generator=g)
    for k in range(n_classes):
        x[y == k, :, 4 + 6 * k:10 + 6 * k, 4:24] += 0.8
    info = data.DatasetInfo("toy", "multi-class" if n_classes > 2 else "binary-class", 1,
                            [str(k) for k in range(n_classes)])
    return data.Dataset(x.clamp(0, 1), y, info)


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """The toy splits instead of real data (loads counted), a tiny untrained oracle, a fresh model cache."""
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    loads = []
    monkeypatch.setattr(data, "load_cached", lambda name, split="train", size=28: loads.append(split) or _toy(split))
    torch.manual_seed(0)
    oracle = Oracle("toy", SmallCNN(1, 3, width=4).eval(), 1.0, 1.0, 1 / 3, "multi-class")
    monkeypatch.setattr(cam, "train_oracle", lambda dataset, cfg: oracle)
    return loads


def test_a_seeded_tail_order_draws_other_tail_classes_per_seed_and_fixed_is_label_order():
    assert cam.tail_order(10, 3, "fixed").tolist() == list(range(10))
    orders = [cam.tail_order(10, s, "seeded") for s in range(6)]
    assert all(sorted(o.tolist()) == list(range(10)) for o in orders)
    assert np.array_equal(orders[0], cam.tail_order(10, 0, "seeded"))  # seeded
    assert len({tuple(o[-3:].tolist()) for o in orders}) > 3  # the tail (last three) moves from seed to seed
    with pytest.raises(ValueError, match="TAIL_ORDER"):
        cam.Config.from_parameters(PARAMS | {"TAIL_ORDER": "random"})
    cfg = TINY.replace(tail_order="seeded")
    lt, tail, _ = cam.long_tailed(_toy("train"), 1, cfg)
    counts = np.bincount(lt.y.numpy(), minlength=3)
    order = cam.tail_order(3, 1, "seeded")
    assert tail == [int(order[-1])] and counts[order[0]] == counts.max() and counts[order[-1]] == counts.min()


def test_long_tailed_multi_class_follows_the_exponential_profile_and_marks_the_rarest_tail():
    lt, tail, rows = cam.long_tailed(_toy("train"), 0, TINY)
    counts = lt.class_counts()
    np.testing.assert_array_equal(counts, data.long_tail_counts(3, 40, 10))  # 40, 12, 4
    assert tail == [2] and len(rows) == len(lt) and len(set(rows.tolist())) == len(rows)


def test_minority_subset_cuts_the_minority_class_to_the_ratio():
    y = np.array([0] * 30 + [1] * 100)
    idx = cam.minority_subset(y, rho=20, seed=0)
    assert np.bincount(y[idx]).tolist() == [5, 100]
    assert np.bincount(y[cam.minority_subset(y, rho=20, seed=0, n_max=60)]).tolist() == [3, 60]


def test_config_is_the_notebooks_parameters_and_back():
    assert TINY.parameters() == {k: config._frozen(v) for k, v in PARAMS.items()}
    assert TINY.clf.val_checks == 10 and TINY.oracle.max_images is None and TINY.refine_grid == (0, 2)
    with pytest.raises(ValueError, match="unknown.*NB.*Valid parameters"):
        cam.Config.from_parameters(PARAMS | {"NB": "05_cam_fusion"})


def test_config_rejects_unknown_arms_and_impossible_steps():
    with pytest.raises(ValueError, match="Unknown arms"):
        TINY.replace(arms=("none", "smote"))
    with pytest.raises(ValueError, match="REFINE_SCHEDULE"):
        TINY.replace(refine_steps=30, refine_schedule=20)


@pytest.mark.parametrize("part", ["AE_", "IL_", "DENOISER_"])
def test_every_generative_parameter_reaches_its_models_config(part):
    build = {"AE_": TINY.kl, "IL_": TINY.il, "DENOISER_": TINY.denoiser}[part]
    changed = {"AE_PRETRAINED": "hub/vae", "AE_SUBFOLDER": "vae", "AE_IMAGE_SIZE": 64, "AE_WIDTH": [8, 8, 8]}
    for name in (n for n in PARAMS if n.startswith(part)):
        value = changed.get(name, PARAMS[name] + 1 if isinstance(PARAMS[name], int) else None)
        other = cam.Config.from_parameters(PARAMS | {name: value})
        models = {"AE_": other.kl, "IL_": other.il, "DENOISER_": other.denoiser}[part]
        assert models(0) != build(0), f"{name} does not reach the model's config (nor its cache key)"
    assert build(0) != build(1)  # the seed does


def test_reweight_trains_a_class_balanced_classifier_and_the_others_cfg_clf():
    for arm in ("reweight", "cam-fusion+reweight"):
        assert cam.arm_classifier(TINY, arm) == TINY.clf.replace(class_weight="balanced")
    assert all(cam.arm_classifier(TINY, arm) == TINY.clf for arm in cam.ARMS if arm not in cam.BALANCED_ARMS)


def test_tail_weights_count_the_added_copies_by_hand():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 5 + [3] * 2)
    w = cam.tail_weights(y, 4, tail=[2, 3], n_augment=10)
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0, 15 / 5, 12 / 2]))
    # the weighted class totals are those of the set with 10 copies of each tail class added
    counts = torch.bincount(y, minlength=4).float()
    torch.testing.assert_close(w * counts, counts + torch.tensor([0.0, 0.0, 10.0, 10.0]))
    multi = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 1]])  # multi-hot: label 1 on two images
    torch.testing.assert_close(cam.tail_weights(multi, 2, tail=[1], n_augment=4), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="no images"):
        cam.tail_weights(torch.tensor([0, 0, 1]), 3, tail=[2], n_augment=1)


def test_given_weights_replace_the_configs_and_never_stack_with_balanced(monkeypatch):
    seen = []
    real = cam.train.fit
    monkeypatch.setattr(cam.train, "fit", lambda *a, **k: seen.append(k["class_weight"]) or real(*a, **k))
    ds = _toy("train")
    w = torch.linspace(1, 2, ds.n_classes)
    train.fit_classifier(ds, None, TINY.clf, 0, weight=w)
    assert torch.equal(seen[-1], w)
    with pytest.raises(ValueError, match="not both"):
        train.fit_classifier(ds, None, TINY.clf.replace(class_weight="balanced"), 0, weight=w)


def test_scores_split_average_precision_into_tail_and_overall():
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    probs = torch.tensor([[.9, .05, .05], [.8, .1, .1], [.1, .8, .1], [.6, .3, .1], [.1, .1, .8], [.1, .6, .3]])
    out = cam.scores(y, probs, "multi-class", tail=[2])
    assert out["tail_ap"] == pytest.approx(1.0)  # both class-2 images have the highest class-2 scores
    assert out["recall_1"] == pytest.approx(0.5) and out["tail_recall"] == pytest.approx(0.5)
    assert out["ap"] < 1 and out["single_class"] == 0.0


def _split(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Result rows and gate rows of run_seed, as grid.tables splits them."""
    return (pd.DataFrame([r for r in rows if "instrument" not in r]),
            pd.DataFrame([r for r in rows if "instrument" in r]))


def test_run_seed_gives_every_arm_and_the_quality_grid_and_reads_each_split_once(toy):
    rows, _ = _split(cam.run_seed({"cfg": TINY, "dataset": "toy", "seed": 0}))
    assert sorted(toy) == ["test", "train", "val"]
    clf = rows[rows["metric"] == "tail_ap"]
    assert sorted(clf["arm"]) == sorted(cam.ARMS) and clf["value"].between(0, 1).all()
    fid = rows[(rows["metric"] == "frechet") & (rows["arm"] == "cam-fusion")]
    assert np.isfinite(fid["value"]).all() and np.isfinite(rows.loc[rows["metric"] == "frechet_ae", "value"]).all()
    # both refinement modes at every step count (0 steps once: the same images in every mode)
    assert sorted(zip(fid["refine_mode"], fid["refine_steps"])) == [("official", 2), ("sdedit", 0), ("sdedit", 2)]
    real = rows[(rows["metric"] == "frechet") & (rows["arm"] == "real-refined")]  # the denoiser's sanity rows
    assert sorted(zip(real["refine_mode"], real["refine_steps"])) == [("official", 2), ("sdedit", 2)]
    assert {"real", "vae-recon", "random-mask", "shuffled-mask", "random-partner"} <= set(
        rows.loc[rows["metric"] == "frechet", "arm"])
    assert set(rows.loc[rows["metric"] == "single_class", "arm"]) == set(cam.ARMS)


def test_augmenting_arms_add_n_augment_tail_images_and_reweight_adds_none(toy):
    s = cam.prepare(_toy("train"), 0, TINY)
    fused = {kind: s.fuse(*how) for kind, how in cam.FUSIONS.items()}
    for arm in cam.ARMS:
        ds = cam.arm_data(s, arm, fused)
        added = ds.y[len(s.train):]
        reweighting = arm in ("none", "reweight", "reweight-tail")
        assert len(added) == (0 if reweighting else TINY.n_augment) and (added == 2).all()
    # the controls change one thing each: the mask controls keep the CAM pairs, random-partner keeps the CAM masks
    assert all(torch.equal(fused[k].tail_index, fused["cam"].tail_index)
               and torch.equal(fused[k].head_index, fused["cam"].head_index) for k in ("shuffled", "random"))
    assert not torch.equal(fused["random-partner"].head_index, fused["cam"].head_index)


def test_the_long_tailed_set_keys_the_models_and_other_parameters_do_not(toy, tmp_path):
    def trained(cfg) -> int:
        """How many models prepare(cfg) trained (new cache files)."""
        before = set(tmp_path.glob("*.pt"))
        cam.prepare(_toy("train"), 0, cfg)
        return len(set(tmp_path.glob("*.pt")) - before)

    assert trained(TINY) == 3  # the AutoencoderKL, the Stage 1 model, the denoiser
    assert trained(TINY.replace(n_augment=3, n_tail=2, clf=TINY.clf.replace(steps=5))) == 0  # all loaded
    # another imbalance ratio draws another long-tailed set: every model retrains (keys from the data it saw)
    assert trained(TINY.replace(imbalance={"toy": 5})) == 3
    assert trained(TINY.replace(il_generations=1)) == 1  # the Stage 1 model alone
    assert trained(TINY.replace(ae_steps=3)) == 3  # new latents: the models trained on them follow


def test_a_rerun_from_the_model_cache_gives_the_same_rows(toy):
    task = {"cfg": TINY.replace(arms=("none", "cam-fusion+refine")), "dataset": "toy", "seed": 0}
    (fresh, fresh_gates), (cached, cached_gates) = (_split(cam.run_seed(task)) for _ in range(2))  # trained, loaded
    timing = fresh["metric"].str.endswith("cpu_seconds")
    pd.testing.assert_frame_equal(fresh[~timing], cached[~timing])
    pd.testing.assert_frame_equal(fresh_gates, cached_gates)


# --------------------------------------------------------------------------- quality gates and kept checks


def _gate(gates: pd.DataFrame, instrument: str, check: str) -> pd.Series:
    row = gates[(gates["instrument"] == instrument) & (gates["check"] == check)]
    assert len(row) == 1, (instrument, check)
    return row.iloc[0]


def test_held_out_images_are_fixed_stratified_draws_of_the_tail_and_of_all_classes():
    test = _toy("test")  # 10 images per class
    parts = cam.held_out(test, [1, 2], n=8)
    assert parts["tail"].class_counts().tolist() == [0, 4, 4] and parts["all"].class_counts().sum() == 8
    assert torch.equal(cam.held_out(test, [1, 2], n=8)["tail"].x, parts["tail"].x)  # the same draw every time
    assert len(cam.held_out(test, [2])["tail"]) == 10  # at most n: all of them


def test_run_seed_gates_every_instrument_on_its_own_models(toy):
    results_df, g = _split(cam.run_seed({"cfg": TINY, "dataset": "toy", "seed": 0}))
    assert set(g.columns) == set(INSTRUMENT_COLUMNS) and (g["dataset"] == "toy").all() and (g["seed"] == 0).all()
    recon = {f"{p}_{c}" for p in ("tail", "all")
             for c in ("oracle_accuracy_real", "oracle_accuracy_recon", "mean_image_mse", "recon_mse")}
    samples = {"oracle_accuracy_real_tail", "tail_agreement", "mean_confidence", "fd_model", "fd_floor",
               "fd_ceiling", "fd_gap_closed"}  # no min_class_share: the samples are tail images by design
    tested = recon | {"test_tail_oracle_accuracy_real", "test_tail_oracle_accuracy_recon"}  # reported beside
    for instrument, checks in (("autoencoder_kl", tested), ("stage1", tested), ("denoiser", samples | {"fd_before"}),
                               ("feature_ae", {"mean_image_mse", "recon_mse"})):
        assert set(g.loc[g["instrument"] == instrument, "check"]) == checks, instrument
    assert set(g["instrument"]) == {"autoencoder_kl", "stage1", "denoiser", "feature_ae"}  # fused images: results
    # the reconstruction gate recomputed by hand from the seed's (cached) AutoencoderKL on the held-out images
    s = cam.prepare(_toy("train"), 0, TINY)
    tail = cam.held_out(_toy("val"), s.tail)["tail"]  # the whole validation split, where the latent space was chosen
    mse = float(((batched(s.codec.forward, tail.x, 512) - tail.x) ** 2).mean())
    assert _gate(g, "autoencoder_kl", "tail_recon_mse")["value"] == pytest.approx(mse, rel=1e-5)
    mean_mse = float(((tail.x - tail.x.mean(0)) ** 2).mean())
    assert _gate(g, "stage1", "tail_recon_mse")["threshold"] == pytest.approx(0.6 * mean_mse, rel=1e-5)
    # the fused images' own measures are result rows: the oracle's agreement with their tail label, by hand
    f = s.fuse("cam")
    fidelity = results_df.query("arm == 'cam-fusion' and metric == 'tail_fidelity' and refine_steps == 0")["value"]
    judge = cam.train_oracle("toy", TINY.oracle)
    assert fidelity.item() == pytest.approx(judge.agreement(s.images(f.latents, 0), f.labels))
    ref, alt, labels = cam.reference_images(s, TINY.n_fid)  # the denoiser's: real tail images never trained on
    keep = torch.linspace(0, len(alt) - 1, len(ref) // 2).long()  # (at most half as many as the reference)
    alt, labels = alt[keep], labels[keep]
    own = cam.train_oracle("toy", TINY.oracle).agreement(alt, labels)
    assert _gate(g, "denoiser", "tail_agreement")["threshold"] == pytest.approx(cam.AGREEMENT_RATIO * own)
    assert _gate(g, "denoiser", "fd_before")["value"] != _gate(g, "denoiser", "fd_model")["value"]  # it refined


def test_sample_gate_rows_pass_and_fail_on_the_oracles_agreement():
    class Judge:  # an oracle that calls every image with a bright top half class 1, the rest class 0
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 4), torch.nn.Linear(4, 2))

        def label(self, x):
            labels = (x[:, 0, :14].mean((1, 2)) > 0.5).long()
            return labels, torch.ones(len(x))

        def agreement(self, x, y):
            return float((self.label(x)[0] == y).float().mean())

    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 1, 28, 28, generator=g) * 0.2
    x[:7, :, :14] += 0.8  # 7 of 10 look like class 1
    real = torch.rand(20, 1, 28, 28, generator=g)
    rows = pd.DataFrame(cam.sample_gate_rows(Judge(), x, torch.ones(10, dtype=torch.long), real, 0.9, n_classes=2,
                                             instrument="fused", dataset="d", seed=3))
    agree = _gate(rows, "fused", "tail_agreement")
    assert agree["value"] == pytest.approx(0.7) and agree["threshold"] == pytest.approx(0.72) and not agree["passed"]
    rows = pd.DataFrame(cam.sample_gate_rows(Judge(), x, torch.ones(10, dtype=torch.long), real, 0.85, n_classes=2,
                                             instrument="fused", dataset="d", seed=3))
    assert _gate(rows, "fused", "tail_agreement")["passed"]  # 0.7 >= 0.8 x 0.85 = 0.68
    assert "min_class_share" not in set(rows["check"]) and "fd_gap_closed" in set(rows["check"])


def test_synthetic_arms_keep_no_model_from_before_their_first_synthetic_epoch(toy, monkeypatch):
    rows, _ = _split(cam.run_seed({"cfg": TINY, "dataset": "toy", "seed": 0}))
    kept = rows.pivot_table(index="arm", columns="metric", values="value").loc[list(cam.ARMS)]
    assert kept["best_epoch"].notna().all() and kept["val_accuracy"].between(0, 1).all()
    synthetic = kept.loc[list(cam.SYNTHETIC_ARMS)]
    assert (synthetic["best_epoch"] >= synthetic["first_synthetic_epoch"]).all()
    assert kept.loc[["none", "reweight"], "first_synthetic_epoch"].isna().all()
    # a later first synthetic epoch reaches the training loop: no check (no kept model) before it
    monkeypatch.setattr(cam, "FIRST_SYNTHETIC_EPOCH", 2)
    clf = TINY.clf.replace(steps=24, val_checks=5)
    ds = _toy("train")
    late = cam.fit_arm(ds, _toy("val"), clf, 0, "cam-fusion")
    assert min(late.schedule.val_epochs) == 2 and late.best_epoch >= 2
    assert min(cam.fit_arm(ds, _toy("val"), clf, 0, "none").schedule.val_epochs) < 2


def test_the_convergence_task_retrains_the_grids_none_run_at_twice_the_updates(toy):
    rows, _ = _split(cam.run_seed({"cfg": TINY.replace(arms=("none",)), "dataset": "toy", "seed": 0}))
    at_1x = rows.query("arm == 'none' and metric == 'val_accuracy'")["value"].item()
    half = TINY.replace(clf=TINY.clf.replace(steps=TINY.clf.steps // 2))  # its 2x is the grid's budget
    (row,) = cam.convergence_rows({"cfg": half, "dataset": "toy", "seed": 0})
    assert (row["arm"], row["metric"], row["seed"]) == ("none", "val_accuracy_2x", 0) and row["value"] == at_1x


def _val_rows(values: list[float], at_2x: float) -> pd.DataFrame:
    rows = [{"dataset": "d", "arm": "none", "seed": s, "metric": "val_accuracy", "value": v}
            for s, v in enumerate(values)]
    rows.append({"dataset": "d", "arm": "none", "seed": 0, "metric": "val_accuracy_2x", "value": at_2x})
    return pd.DataFrame(rows)


def test_classifier_gate_tolerates_a_point_or_the_seed_sd_whichever_is_larger():
    ok = pd.DataFrame(cam.classifier_gate(_val_rows([0.80, 0.82, 0.84], 0.815)))  # sd 0.02 > 0.01
    change = _gate(ok, "classifier", "val_accuracy_change")
    assert change["value"] == pytest.approx(0.015) and change["threshold"] == pytest.approx(0.02) and change["passed"]
    bad = _gate(pd.DataFrame(cam.classifier_gate(_val_rows([0.80, 0.80, 0.80], 0.815))), "classifier",
                "val_accuracy_change")  # no spread: one point alone
    assert bad["threshold"] == pytest.approx(0.01) and not bad["passed"]
    with pytest.raises(ValueError, match="val_accuracy_2x.*convergence_rows"):
        cam.classifier_gate(_val_rows([0.8, 0.8], 0.8).iloc[:-1])


# --------------------------------------------------------------------------- the instruments' budget, the scale check


def test_instrument_sweep_gates_each_latent_space_on_the_validation_split(toy):
    tasks = cam.instrument_tasks(TINY, candidates=(((4, 4, 4), 4, 2, 4), ((4, 4), 2, 2, 4)), seeds=(0,))
    sweep = pd.DataFrame([r for t in tasks for r in cam.instrument_sweep(t)])
    assert "test" not in toy  # validation images only
    assert sorted(set(sweep["latent_grid"])) == ["14x14", "7x7"]  # 2 blocks halve 28 px once, 3 blocks twice
    summary = cam.instrument_summary(sweep)
    assert summary["runs"].tolist() == [1, 1]
    # the summary's ratios are the gate rows' own values, recomputed by hand
    one = sweep[(sweep["latent_grid"] == "7x7") & (sweep["arm"] == "autoencoder_kl")].set_index("metric")["value"]
    ratio = one["tail_oracle_accuracy_recon"] / one["tail_oracle_accuracy_real"]
    assert summary.loc[0, "autoencoder_kl/tail_label_ratio_min"] == pytest.approx(ratio)
    passed = sweep[(sweep["latent_grid"] == "7x7") & sweep["metric"].str.endswith("_passed")]["value"]
    assert summary.loc[0, "runs_passed"] == int(passed.min())
    diag = sweep[sweep["metric"] == "code_max_prob"]["value"]
    assert diag.between(1 / 4, 1).all()  # K = 4 channels: between uniform and one-hot


def test_stage1_diagnostics_read_accuracy_and_sparsity_of_the_codes():
    model = cam.IteratedModel(4, 3, n_channels=4, width=8)
    with torch.no_grad():  # an encoder with huge logits: one-hot codes at every cell
        model.encoder.net[-1].weight.mul_(1e4)
        model.encoder.net[-1].bias.copy_(torch.tensor([1e4, 0, 0, 0]))
    z, y = torch.randn(20, 4, 7, 7), torch.randint(3, (20,))
    d = cam.stage1_diagnostics(model, z, y)
    assert d["code_one_hot_share"] == 1.0 and d["code_max_prob"] == pytest.approx(1.0)
    logits = model.eval().classifier(cam.sparse_codes(model, z))
    assert d["stage1_accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))


def test_the_scale_checks_config_scales_the_instruments_alone_on_the_scale_seeds():
    cfg = TINY.replace(scale_seeds=(0, 1, 2))
    big = cam.scaled(cfg)
    assert (big.ae_steps, big.il_interaction_steps, big.il_imitation_steps) == (
        cam.SCALE * cfg.ae_steps, cam.SCALE * cfg.il_interaction_steps, cam.SCALE * cfg.il_imitation_steps)
    assert big.seeds == (0, 1, 2) and big.scale_seeds == () and set(big.arms) == set(cam.HEADLINE_ARMS)
    assert (big.denoiser_steps, big.clf, big.oracle) == (cfg.denoiser_steps, cfg.clf, cfg.oracle)
