"""Notebook 04's experiment (VAE latent-space augmentation): its config, grid, seed runs, sweep, cache keys, the paper's
numbers and the figures, on a toy dataset (no data mirror needed)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latentlab import gates, grid, stats
from latentlab.data import Dataset, DatasetInfo
from latentlab.experiments import vae_augmentation as experiment
from latentlab.models.autoencoder import encode_all, reconstruct
from latentlab.oracle import Oracle
from latentlab.papers import vae_augmentation as paper

matplotlib.use("Agg")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_vae_augmentation.ipynb"
TOY = DatasetInfo("toy", "multi-class", 1, ["a", "b", "c"])


def _cell() -> dict:
    """The notebook's parameters cell, PROFILE left out."""
    code = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    values = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse("".join(code[0]["source"])).body}
    return {k: v for k, v in values.items() if k != "PROFILE"}


def _tiny(**changes) -> experiment.Config:
    """The notebook's config shrunk to seconds: one toy setting, one seed, 2-D VAE of two updates, CNN of two."""
    cfg = experiment.Config.from_parameters(_cell())
    small = dict(datasets=("toy@5",), seeds=(0,), workers=1, ae_images=45, ae_latent=2, ae_width=4, ae_steps=2,
                 ae_batch=16, labelled_vae_settings=(), clf=cfg.clf.replace(width=4, steps=2, val_checks=1),
                 strengths={"noise": [0.5], "interpolation": [0.5, 1.0], "extrapolation": [0.5]}, n_per_image=(1, 2))
    return cfg.replace(**(small | changes))


def _toy(n_per_class: int, seed: int) -> Dataset:
    """28x28 images: class c is a bright band at rows 8c..8c+8 over noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    x = 0.3 * torch.rand(len(y), 1, 28, 28, generator=g)
    for c in range(3):
        x[y == c, :, 8 * c + 2:8 * c + 10, 4:24] += 0.6
    return Dataset(x.clamp(0, 1), y, TOY)


SPLITS = experiment.Splits(_toy(15, 0), _toy(10, 1), _toy(10, 2))


class _MeanBand(nn.Module):
    """An oracle that labels an image by its brightest band (the band means are the features its last Linear
    reads, for the Frechet gate)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3))
            self.head.bias.zero_()

    def forward(self, x):
        rows = x.mean(dim=(1, 3))
        return self.head(torch.stack([rows[:, 8 * c + 2:8 * c + 10].mean(1) for c in range(3)], 1))


ORACLE = Oracle("toy", _MeanBand(), 1.0, 1.0, 1 / 3, "multi-class")


@pytest.fixture
def toy(monkeypatch, tmp_path):
    """run_seed and tune_seed on the toy splits and oracle, with a fresh model cache."""
    monkeypatch.setenv("LATENTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(experiment, "load_splits", lambda name, cfg: SPLITS)
    monkeypatch.setattr(experiment, "train_oracle", lambda name, cfg: ORACLE)
    return tmp_path


def _vaes(cache: Path) -> int:
    return len(list(cache.glob("autoencoder-vae-*.pt")))


def _split(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run_seed's rows as (results, gate rows), the way grid.tables splits them."""
    return (pd.DataFrame([r for r in rows if "instrument" not in r]),
            gates.table([r for r in rows if "instrument" in r]))


# --------------------------------------------------------------------------- config and settings


def test_config_has_no_defaults_and_refuses_unknown_arms_data_and_settings():
    cfg = experiment.Config.from_parameters(_cell())
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in dataclasses.fields(cfg))
    cell = _cell()
    assert (cfg.clf.steps, cfg.clf.val_checks) == (cell["CLF_STEPS"], cell["CLF_VAL_CHECKS"])  # CLF_* into cfg.clf
    assert cfg.oracle.max_images is None and cfg.affine_scale == (0.9, 1.1) and cfg.ae_data == "all"
    assert set(cfg.cnn_arms) <= set(cfg.arms) and experiment.CODES not in cfg.cnn_arms and cfg.scale_seeds == ()
    with pytest.raises(ValueError, match="Unknown arms"):
        cfg.replace(arms=("baseline", "latent-rotation"))
    with pytest.raises(ValueError, match="CNN_ARMS"):
        cfg.replace(cnn_arms=("baseline", experiment.CODES))  # the codes arm trains no CNN
    with pytest.raises(ValueError, match="AE_DATA"):
        cfg.replace(ae_data="some")
    with pytest.raises(ValueError, match="dataset@images_per_class"):
        cfg.replace(labelled_vae_settings=("mnist",))


def test_settings_parse_and_reject_typos():
    assert experiment.parse_setting("mnist@10") == ("mnist", 10)
    assert experiment.parse_setting("breastmnist@all") == ("breastmnist", None)
    for bad in ("mnist", "mnist@ten", "mnist@10%"):
        with pytest.raises(ValueError, match="dataset@images_per_class"):
            experiment.parse_setting(bad)


def test_variants_are_replacements_of_the_notebook_config():
    cfg = experiment.Config.from_parameters(_cell()).replace(
        datasets=("mnist@10", "mnist@50", "fashion-mnist@10", "breastmnist@all"),
        labelled_vae_settings=("mnist@10", "breastmnist@all"))
    assert experiment.dataset_names(cfg.datasets) == ["mnist", "fashion-mnist", "breastmnist"]
    assert experiment.settings_of(cfg.datasets, "mnist") == ["mnist@10", "mnist@50"]
    labelled = experiment.labelled_variant(cfg)
    assert labelled.ae_data == "labelled" and labelled.datasets == ("mnist@10", "breastmnist@all")
    assert labelled.arms == ("baseline", *experiment.VAE_ARMS) and labelled.labelled_vae_settings == ()
    scaled = experiment.scaled_vae(cfg.replace(scale_seeds=(0, 1, 2)))
    assert scaled.ae_steps == experiment.SCALE * cfg.ae_steps and scaled.seeds == (0, 1, 2)
    assert scaled.arms == experiment.HEADLINE_ARMS and scaled.labelled_vae_settings == ()
    assert scaled.replace(ae_steps=cfg.ae_steps, seeds=cfg.seeds, arms=cfg.arms,
                          labelled_vae_settings=cfg.labelled_vae_settings, scale_seeds=()) == cfg
    assert labelled.clf == cfg.clf and labelled.seeds == cfg.seeds
    assert experiment.result_settings(cfg)[-1] == "breastmnist@all" + experiment.LABELLED_VAE
    plane = experiment.plane_config(cfg)
    assert (plane.ae_latent, plane.ae_steps, plane.ae_images) == (2, cfg.plane_steps, cfg.plane_images)


def test_tasks_carry_the_config_and_their_dataset_choice_and_seeds_follow_coordinates():
    cfg = experiment.Config.from_parameters(_cell()).replace(
        seeds=(0, 1), datasets=("mnist@10", "mnist@50", "fashion-mnist@10", "breastmnist@all"),
        labelled_vae_settings=("mnist@10",))
    chosen = {"mnist@10": {"latent-noise": (0.5, 2)}, "fashion-mnist@10": {"latent-noise": (1.0, 5)},
              "breastmnist@all": {"latent-noise": (0.5, 5)}}
    tasks = experiment.tasks(cfg, chosen)
    assert [(t["seed"], t["dataset"]) for t in tasks[:3]] == [(0, "mnist"), (0, "fashion-mnist"), (0, "breastmnist")]
    assert len(tasks) == 2 * 3 + 2 and all(t["cfg"] is cfg for t in tasks[:6])
    assert tasks[1]["choice"] == {"latent-noise": (1.0, 5)} and tasks[-1]["cfg"].ae_data == "labelled"
    fewer = experiment.tasks(cfg.replace(datasets=("mnist@10",), labelled_vae_settings=()), chosen)
    seeds = {(t["seed"], t["dataset"]): grid.task_seed(t) for t in tasks}
    assert all(grid.task_seed(t) == seeds[(t["seed"], t["dataset"])] for t in fewer)  # other datasets do not matter
    with pytest.raises(ValueError, match="No tuned choice for the dataset 'fashion-mnist'"):
        experiment.tasks(cfg, {"mnist@50": {}})


def test_choose_takes_the_best_mean_of_knn_and_svm_and_the_first_on_ties():
    rows = [("noise", 0.5, 2, "knn", 0.70), ("noise", 0.5, 2, "svm", 0.80), ("noise", 1.0, 2, "knn", 0.90),
            ("noise", 1.0, 2, "svm", 0.50), ("noise", 0.5, 5, "knn", 0.75), ("noise", 0.5, 5, "svm", 0.76),
            ("affine", 0.0, 2, "knn", 0.6), ("affine", 0.0, 2, "svm", 0.6), ("affine", 0.0, 5, "knn", 0.6),
            ("affine", 0.0, 5, "svm", 0.6), ("affine", 0.0, 5, "oracle", 1.0)]
    sweep = pd.DataFrame([{"dataset": "mnist@10", "arm": a, "strength": s, "n_per_image": n, "classifier": c,
                           "metric": "label_validity" if c == "oracle" else "val_accuracy", "value": v}
                          for a, s, n, c, v in rows])
    chosen = experiment.choose(sweep)  # noise: means 0.75, 0.70, 0.755 -> (0.5, 5); affine: a tie -> the first
    assert chosen == {"mnist@10": {"noise": (0.5, 5), "affine": (0.0, 2)}}
    assert experiment.choice_for(chosen, "mnist@50") == experiment.choice_for(chosen, "mnist") == chosen["mnist@10"]
    with pytest.raises(ValueError, match="fashion-mnist"):
        experiment.choice_for(chosen, "fashion-mnist@10")


# --------------------------------------------------------------------------- one seed, the sweep, the cache


def test_run_seed_gives_every_arm_and_classifier_and_repeats_bitwise(toy):
    cfg = _tiny()
    choice = {arm: (0.5, 1) for arm in cfg.arms[1:]} | {"latent-noise": (0.5, 2), "affine": (0.0, 1)}
    task = {"cfg": cfg, "dataset": "toy", "seed": 0, "choice": choice}
    rows, inst = _split(experiment.run_seed(task))
    assert list(rows.columns[:5]) == ["dataset", "arm", "seed", "metric", "value"]
    assert set(rows["dataset"]) == {"toy@5"} and list(dict.fromkeys(rows["arm"])) == list(cfg.arms)
    validity = rows[rows["metric"] == "label_validity"]
    assert set(validity["arm"]) == set(cfg.arms) - {"baseline", experiment.CODES}
    assert validity["value"].between(0, 1).all()
    acc = rows[rows["metric"] == "accuracy"]
    assert len(acc) == len(cfg.arms) * 2 + len(cfg.cnn_arms) and set(acc["classifier"]) == {"knn", "svm", "cnn"}
    assert set(acc.loc[acc["classifier"] == "cnn", "arm"]) == set(cfg.cnn_arms)  # the CNN on CNN_ARMS only
    kept = rows[rows["metric"].isin(["val_accuracy", "best_epoch"])]
    assert set(kept["classifier"]) == {"cnn"} and len(kept) == 2 * len(cfg.cnn_arms)  # the CNN's kept check, per arm
    auc = rows[rows["metric"] == "auc"]
    assert set(auc["classifier"]) == {"svm", "cnn"}  # a 1-NN has no AUC (KNN_K = 1)
    noise = rows[(rows["arm"] == "latent-noise")]
    assert (noise["strength"] == 0.5).all() and (noise["n_per_image"] == 2).all()
    fixed = rows[rows["arm"].isin(list(experiment.FIXED_CHOICES))].groupby("arm")[["strength", "n_per_image"]].max()
    assert fixed.loc[experiment.RECONSTRUCTION].tolist() == [0.0, 1] and fixed.loc[experiment.CODES].tolist() == [0, 0]
    assert rows[rows["arm"] == "baseline"]["n_per_image"].eq(0).all() and _vaes(toy) == 1
    assert set(inst["instrument"]) == {"vae", *map(experiment.augmentation_instrument, experiment.DECODED_ARMS)}
    again, inst_again = _split(experiment.run_seed(task))  # the VAE comes from the cache now
    pd.testing.assert_frame_equal(rows, again)
    pd.testing.assert_frame_equal(inst, inst_again)
    assert _vaes(toy) == 1


def test_the_labelled_variant_trains_its_vae_on_the_labelled_images_only(toy):
    cfg = _tiny(labelled_vae_settings=("toy@5",))
    tasks = experiment.tasks(cfg, {"toy@5": {"latent-interpolation": (0.5, 1), "latent-noise": (0.5, 1),
                                             "latent-extrapolation": (0.5, 1)}})
    rows, inst = _split(experiment.run_seed(tasks[-1]))
    assert set(rows["dataset"]) == set(inst["dataset"]) == {"toy@5" + experiment.LABELLED_VAE}
    assert set(rows["arm"]) == {"baseline", *experiment.VAE_ARMS} and _vaes(toy) == 1
    experiment.run_seed(tasks[0] | {"cfg": cfg.replace(arms=("baseline", "latent-noise"))})
    assert _vaes(toy) == 2  # the VAE of all 45 training images is another model


def test_vae_cache_key_changes_with_every_field_and_the_images_it_saw(toy):
    cfg, lab = _tiny(), experiment.labelled_subset(SPLITS.train, 5, 0)
    experiment.fit_vae(SPLITS, 0, cfg)
    experiment.fit_vae(SPLITS, 0, cfg)
    assert _vaes(toy) == 1
    variants = [(cfg.replace(ae_steps=10), 0, SPLITS, None), (cfg.replace(ae_images=30), 0, SPLITS, None),
                (cfg.replace(ae_latent=3), 0, SPLITS, None), (cfg.replace(ae_width=6), 0, SPLITS, None),
                (cfg.replace(ae_batch=8), 0, SPLITS, None), (cfg, 1, SPLITS, None),
                (cfg, 0, dataclasses.replace(SPLITS, val=SPLITS.val.subset(range(20))), None),  # N_VAL
                (cfg.replace(ae_data="labelled"), 0, SPLITS, lab),
                (cfg.replace(ae_data="labelled"), 0, SPLITS, experiment.labelled_subset(SPLITS.train, 5, 1))]
    for i, (c, seed, splits, labelled) in enumerate(variants, start=2):
        experiment.fit_vae(splits, seed, c, labelled)
        assert _vaes(toy) == i, f"variant {i - 2} loaded another variant's VAE"
    with pytest.raises(ValueError, match="labelled subset"):
        experiment.fit_vae(SPLITS, 0, cfg.replace(ae_data="labelled"))


def test_tune_seed_sweeps_every_arm_strength_and_count_without_the_test_split(toy, monkeypatch):
    cfg = _tiny()
    monkeypatch.setattr(experiment, "load_splits", lambda name, cfg: dataclasses.replace(SPLITS, test=None))
    sweep = grid.table(experiment.tune_seed, experiment.tune_tasks(cfg), workers=1)
    acc = sweep[sweep["metric"] == "val_accuracy"]
    per_arm = acc.groupby("arm").size().to_dict()
    assert per_arm == {"latent-noise": 4, "latent-interpolation": 8, "latent-extrapolation": 4, "image-noise": 4,
                       "image-interpolation": 8, "image-extrapolation": 4, "affine": 4}  # x (kNN, SVM)
    assert set(sweep["seed"]) == {cfg.tune_seed} and set(sweep["dataset"]) == {"toy@5"}
    assert set(sweep.loc[sweep["metric"] == "label_ratio", "value"]) == set(
        sweep.loc[sweep["metric"] == "label_validity", "value"] / ORACLE.val_accuracy)
    chosen = experiment.choose(sweep)
    assert set(chosen["toy@5"]) == set(cfg.arms) - {"baseline", *experiment.FIXED_CHOICES}
    assert all(c[1] in cfg.n_per_image for c in chosen["toy@5"].values())


def test_sklearn_scores_are_probabilities_whose_argmax_is_the_prediction():
    from sklearn.svm import SVC

    cfg = experiment.Config.from_parameters(_cell())
    cfg = cfg.replace(clf=cfg.clf.replace(class_weight=None))
    g = torch.Generator().manual_seed(0)
    for k in (2, 3):
        y = torch.arange(30) % k
        x = torch.rand(30, 1, 4, 4, generator=g) + y.view(-1, 1, 1, 1) * 0.3
        for kind in ("knn", "svm"):
            p = experiment.sklearn_probs(kind, x, y, x, k, cfg)
            assert p.shape == (30, k) and np.allclose(p.sum(1), 1)
        svm = SVC(C=cfg.svm_c, gamma="scale").fit(x.flatten(1).numpy(), y.numpy())
        assert (p.argmax(1) == svm.predict(x.flatten(1).numpy())).all()


# --------------------------------------------------------------------------- the paper's numbers, the figures


def test_gains_and_paper_effects():
    assert paper.paper_effect("latent-interpolation", "baseline", "knn") == pytest.approx(21.29)
    assert paper.paper_effect("latent-noise", "baseline", "cnn") == pytest.approx(-6.79)
    claim = paper.paper_claims(["mnist@10"], [("latent-noise", "baseline")])[0]
    assert claim.paper_for(("mnist@10", "svm")) == pytest.approx(4.30) and claim.sign(("mnist@10", "cnn")) == -1
    assert [(c.a, c.b) for c in paper.knn_gains_most_claims()] == [("knn", "svm"), ("knn", "cnn")]
    assert paper.knn_gains_most_claims()[0].paper == pytest.approx(21.29 - 8.69)
    rows = [{"dataset": "d", "classifier": c, "seed": s, "arm": a, "metric": "accuracy", "value": v}
            for c, base in (("knn", 0.5), ("svm", 0.6)) for s in (0, 1)
            for a, v in (("baseline", base + s / 10), ("latent-noise", base + s / 10 + (0.2 if c == "knn" else 0.1)))]
    g = paper.gains(pd.DataFrame(rows), "latent-noise").set_index(["arm", "seed"])["value"]
    assert g[("knn", 0)] == pytest.approx(0.2) and g[("svm", 1)] == pytest.approx(0.1)
    table = paper.beside_paper(pd.DataFrame(rows), ["baseline", "latent-noise"])
    assert table.loc[("UJIPEN (paper)", "knn"), "baseline"] == "31.86" and ("d", "svm") in table.index


def test_figures_draw_on_a_tiny_two_dimensional_vae(toy):
    import matplotlib.pyplot as plt

    from latentlab.plots import vae_augmentation as plots

    cfg = _tiny()
    vae = experiment.fit_vae(SPLITS, 0, cfg)
    assert plots.manifold(vae, 4).shape == (16, 1, 28, 28)
    with pytest.raises(ValueError, match="2-D latent space"):
        plots.manifold(experiment.fit_vae(SPLITS, 0, cfg.replace(ae_latent=3)))
    lab = experiment.labelled_subset(SPLITS.train, 5, 0)
    demo = plots.operations_demo(vae.encode(lab.x).detach(), lab.y, j=0, lam=0.5, gamma=0.5, n_noise=6)
    assert demo["noise"].shape == (6, 2) and torch.allclose(demo["interpolation"], (demo["z_j"] + demo["z_k"]) / 2)
    choice = {a: (0.5, 1) for a in cfg.arms}
    rows = plots.example_rows(lab, vae, choice, [0, 5], 0, cfg)
    made = [a for a in cfg.arms[1:] if a not in experiment.FIXED_CHOICES]  # the reconstruction row is that arm's
    assert list(rows) == ["original", "reconstruction", *made] and rows["affine"].shape == (2, 1, 28, 28)
    for fig in (plots.latent_plane_figure(vae, SPLITS.train), plots.operations_figure(vae, lab),
                plots.interpolation_paths_figure(vae, lab, neighbour=2, steps=4)):
        assert len(fig.axes) >= 1
        plt.close(fig)


# --------------------------------------------------------------------------- the instruments' gates


def test_run_seed_gates_the_vae_and_each_latent_arms_augmentations(toy):
    cfg = _tiny()
    choice = {arm: (0.5, 1) for arm in cfg.arms[1:]} | {"latent-noise": (0.5, 2)}
    rows, inst = _split(experiment.run_seed({"cfg": cfg, "dataset": "toy", "seed": 0, "choice": choice}))
    assert list(inst.columns) == gates.COLUMNS and set(inst["dataset"]) == {"toy@5"} and set(inst["seed"]) == {0}
    vae = inst[inst["instrument"] == "vae"].set_index("check")
    assert list(vae.index) == ["oracle_accuracy_real", "oracle_accuracy_recon", "mean_image_mse", "recon_mse",
                               "oracle_margin"]
    assert vae.loc["oracle_accuracy_real", "value"] == ORACLE.agreement(SPLITS.test.x, SPLITS.test.y)  # 30 test
    acc_real = vae.loc["oracle_accuracy_real", "value"]
    majority = np.bincount(SPLITS.test.y.numpy()).max() / 30  # the judge against a constant answer, by hand
    assert vae.loc["oracle_margin", "value"] == pytest.approx(acc_real - majority)
    assert vae.loc["oracle_margin", "threshold"] == 0.10
    assert vae.loc["oracle_margin", "passed"] == (acc_real - majority >= 0.10)
    for arm in experiment.DECODED_ARMS:
        mine = inst[inst["instrument"] == experiment.augmentation_instrument(arm)].set_index("check")
        assert "min_class_share" not in mine.index  # per-class augmentations: coverage does not apply
        assert {"label_agreement", "class_mix_gap", "fd_gap_closed", "fd_floor"} <= set(mine.index)
        validity = rows[(rows["arm"] == arm) & (rows["metric"] == "label_validity")]["value"].item()
        assert mine.loc["label_agreement", "value"] == validity  # the same images as the result row
        assert mine.loc["label_agreement", "threshold"] == pytest.approx(0.8 * acc_real)
        assert mine.loc["label_agreement", "passed"] == (validity >= 0.8 * acc_real)
        n = 30 if arm == "latent-noise" else 15  # noise: 2 per image, so 44 of the 45 training images are the real set
        assert mine.loc["class_mix_gap", "value"] == pytest.approx(0.0 if n == 15 else 1 / 66)  # 15/15/14 of 44
    assert not set(inst["instrument"]) & {"vae-augmentations:image", "affine"}  # the controls rest on no gate


def test_a_synthetic_arm_keeps_no_model_from_before_its_first_synthetic_epoch(toy, monkeypatch):
    """With the first synthetic epoch moved to 1, every CNN's validation checks (and its kept one) start there."""
    fits = []

    def spy(train, val, clf, seed, hooks=None, **kw):
        fits.append((hooks.validate_from, fit_classifier(train, val, clf, seed, hooks=hooks, **kw)))
        return fits[-1][1]

    from latentlab.train import fit_classifier
    monkeypatch.setattr(experiment, "FIRST_SYNTHETIC_EPOCH", 1)
    monkeypatch.setattr(experiment, "fit_classifier", spy)
    arms = ("baseline", "latent-interpolation", "affine")
    cfg = _tiny(arms=arms, classifiers=("cnn",), cnn_arms=arms)
    cfg = cfg.replace(clf=cfg.clf.replace(steps=4, val_checks=4))  # 4 one-batch epochs: checks at 0-3 unhooked
    choice = {"latent-interpolation": (0.5, 1), "affine": (0.0, 1)}
    rows, _ = _split(experiment.run_seed({"cfg": cfg, "dataset": "toy", "seed": 0, "choice": choice}))
    assert [v for v, _ in fits] == [1, 1, 1] and all(f.schedule.val_epochs[0] == 1 for _, f in fits)
    best = rows[rows["metric"] == "best_epoch"].set_index("arm")["value"]
    assert (best >= 1).all() and best.tolist() == [f.best_epoch for _, f in fits]
    val = rows[rows["metric"] == "val_accuracy"]["value"].tolist()
    assert val == [next(r["val_accuracy"] for r in f.history if r["epoch"] == f.best_epoch) for _, f in fits]


def test_convergence_retrains_the_first_seeds_baseline_at_twice_the_budget(toy, monkeypatch):
    seen = []
    monkeypatch.setattr(experiment, "fit_classifier", lambda train, val, clf, seed, hooks=None: seen.append(
        (len(train), clf, seed)) or experiment.FitResult(nn.Identity(), [{"epoch": 0, "val_accuracy": 0.7}]))
    cfg = _tiny(seeds=(3, 4))
    tasks = experiment.convergence_tasks(cfg)
    assert [t["setting"] for t in tasks] == ["toy@5"]
    assert experiment.convergence_tasks(cfg.replace(classifiers=("knn", "svm"))) == []
    rows = experiment.convergence_rows(tasks[0])
    assert seen == [(15, cfg.clf.scaled(2), 3)]  # 5 labelled images per class, seed 3's draw and weights
    assert seen[0][1].steps == 2 * cfg.clf.steps
    assert rows == [{"dataset": "toy@5", "arm": "baseline", "seed": 3, "metric": "val_accuracy", "value": 0.7,
                     "classifier": "cnn"}]


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": d, "arm": "baseline", "seed": s, "metric": "val_accuracy", "value": v,
                          "classifier": "cnn"} for d, vs in values.items() for s, v in enumerate(vs)])


def test_classifier_gates_compare_the_2x_run_with_the_larger_of_tol_and_the_seed_sd():
    runs = _runs({"a@10": [0.80, 0.81, 0.82], "a@10" + experiment.LABELLED_VAE: [0.80, 0.81, 0.82],
                  "b@10": [0.60, 0.70, 0.80], "c@10": [0.5, 0.5, 0.5]})
    others = pd.concat([runs.assign(classifier="knn", value=0.0), runs.assign(arm="latent-noise", value=0.1)])
    more = _runs({"a@10": [0.83], "b@10": [0.65]})
    inst = gates.table(experiment.classifier_gates(pd.concat([runs, others]), more))  # only the CNN's baseline
    assert set(inst["check"]) == {f"val_accuracy{s} (classifier = cnn)" for s in ("", "_2x", "_change")}
    change = inst[inst["check"] == "val_accuracy_change (classifier = cnn)"].set_index("dataset")
    assert set(change.index) == {"a@10", "a@10" + experiment.LABELLED_VAE, "b@10"}  # c@10 has no 2x run
    assert change.loc["a@10", "value"] == pytest.approx(0.03) and change.loc["a@10", "threshold"] == pytest.approx(0.01)
    assert not change.loc["a@10", "passed"]
    assert change.loc["a@10" + experiment.LABELLED_VAE, "value"] == pytest.approx(0.03)  # the same baselines
    assert change.loc["b@10", "threshold"] == pytest.approx(0.1) and change.loc["b@10", "passed"]  # sd 0.1 > 0.05
    assert set(inst["instrument"]) == {"classifier"} and set(inst["seed"]) == {0}
    assert experiment.classifier_gates(runs, pd.DataFrame()) == []  # no CNN, no convergence grid


class _Constant(nn.Module):
    """A judge that answers class 0 whatever it sees: no better than the majority rate of a balanced test set."""

    def forward(self, x):
        return torch.tensor([[5.0, 0.0, 0.0]]).expand(len(x), 3)


def test_a_judge_no_better_than_a_constant_answer_fails_the_vae_gate(monkeypatch):
    monkeypatch.setattr(experiment, "reconstruct", lambda vae, x: x.clone())  # perfect reconstructions
    good = {r["check"]: r for r in experiment.vae_gate(None, ORACLE, SPLITS, dataset="toy@5", seed=0)}
    weak = {r["check"]: r for r in experiment.vae_gate(None, Oracle("toy", _Constant(), 0.4, 0.4, 1 / 3,
                                                                    "multi-class"), SPLITS, dataset="toy@5", seed=0)}
    assert good["oracle_margin"]["passed"] and good["recon_mse"]["passed"]
    # class 0 holds 10 of the 30 test images: accuracy 1/3 = the majority rate, a margin of 0
    assert weak["oracle_margin"]["value"] == pytest.approx(0.0) and not weak["oracle_margin"]["passed"]


def test_augmentation_gate_skips_the_frechet_distance_when_the_class_mix_differs():
    assert experiment.class_mix_gap([0, 0, 1, 1], [0, 1, 1, 1], 2) == pytest.approx(0.25)
    assert experiment.class_mix_gap([2, 2], [0, 1], 3) == 1.0
    x, y = SPLITS.train.x[:15], SPLITS.train.y[:15]  # class 0 only, against a balanced reference
    rows = experiment.augmentation_gate("latent-noise", x, y, ORACLE, SPLITS, 0.9, dataset="toy@5", seed=0)
    assert [r["check"] for r in rows] == ["label_agreement", "class_mix_gap"]
    assert rows[0]["value"] == 1.0 and rows[0]["threshold"] == pytest.approx(0.72) and rows[0]["passed"]
    assert rows[1]["value"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="latent arms"):
        experiment.augmentation_instrument("image-noise")


def test_the_frechet_reference_is_the_test_subset_when_it_holds_twice_the_samples():
    assert experiment.frechet_reference(SPLITS, 15) is SPLITS.test  # 30 test images
    ref = experiment.frechet_reference(SPLITS, 16)
    assert len(ref) == 32 and torch.equal(ref.x, SPLITS.train.subset(np.sort(
        np.random.default_rng(0).permutation(45)[:32])).x)


def test_claims_name_their_instruments_per_arm_and_classifier():
    assert paper.instruments_for(("latent-noise", "baseline"), "knn") == ("vae", "vae-augmentations:noise")
    assert paper.instruments_for(("latent-noise", "image-noise"), "cnn") == ("vae", "vae-augmentations:noise",
                                                                             "classifier")
    assert paper.instruments_for(("affine", "baseline"), "svm") == ()
    assert paper.instruments_for(("image-interpolation", "baseline"), "cnn") == ("classifier",)
    control = paper.paper_claims(["mnist@10"], [("affine", "baseline")], "knn")[0]
    assert control.paper is None and control.instruments == ()
    gain = paper.knn_gains_most_claims()
    assert gain[1].instruments == ("vae", "vae-augmentations:interpolation", "classifier")
    assert paper.instruments_for(("latent-interpolation", experiment.RECONSTRUCTION), "svm") == (
        "vae", "vae-augmentations:interpolation", "vae-augmentations:reconstruction")
    assert paper.instruments_for((experiment.CODES, "baseline"), "knn") == ("vae",)


def _results(classifiers=("knn", "cnn"), seeds=range(4)) -> pd.DataFrame:
    """Accuracy rows whose latent-noise and image-noise arms beat the baseline by 2-5 points, unequal per seed."""
    rise = {"baseline": 0.0, "latent-noise": 0.05, "image-noise": 0.02}
    return pd.DataFrame([{"dataset": "mnist@10", "arm": a, "seed": s, "metric": "accuracy", "classifier": c,
                          "value": 0.6 + r + (0.01 * s * s if a != "baseline" else 0.0)}
                         for c in classifiers for s in seeds for a, r in rise.items()])


def test_a_claim_whose_gate_failed_reads_not_tested_and_leaves_the_rest_decided():
    at = dict(dataset="mnist@10", seed=0)
    inst = gates.table([gates.row("vae", check="recon_mse", value=0.5, threshold=0.2, passed=False, **at),
                        gates.row("vae-augmentations:noise", check="label_agreement", value=0.9, threshold=0.7,
                                  passed=True, **at)])
    pairs = [("latent-noise", "baseline"), ("image-noise", "baseline")]
    table = paper.compare_per_classifier(_results(), ["mnist@10"], pairs, ["knn", "cnn"], instruments=inst)
    words = table.set_index(["classifier", "comparison"])["verdict"]
    assert words[("knn", "latent-noise − baseline")] == "not tested: vae/recon_mse failed"
    assert words[("cnn", "latent-noise − baseline")] == "not tested: vae/recon_mse failed, classifier not measured"
    assert words[("cnn", "image-noise − baseline")] == "not tested: classifier not measured"
    assert not words[("knn", "image-noise − baseline")].startswith("not")  # the pixel control rests on no gate
    assert table.attrs["fw_method"] == "Bonferroni, m = 1"  # only the decided row is in the family
    named = paper.ledger_rows(table)["comparison"].tolist()
    assert named[0] == "latent-noise − baseline (knn)" and named[-1] == "image-noise − baseline (cnn)"


def test_with_passing_gates_the_claims_are_decided_and_one_family():
    at = dict(dataset="mnist@10", seed=0)
    inst = gates.table([gates.row(i, check="ok", value=1.0, threshold=0.5, passed=True, **at)
                        for i in ("vae", "vae-augmentations:noise", "classifier")])
    pairs = [("latent-noise", "baseline"), ("image-noise", "baseline")]
    table = paper.compare_per_classifier(_results(), ["mnist@10"], pairs, ["knn", "cnn"], instruments=inst)
    assert table.attrs["fw_method"] == "Bonferroni, m = 4" and not table["verdict"].str.startswith("not").any()
    two = paper.compare_per_classifier(_results(seeds=range(2)), ["mnist@10"], pairs, ["knn"], instruments=inst)
    assert two["verdict"].str.startswith("not decided: fewer than 3 seeds").all()  # the smoke profile's 2 seeds
    knn = stats.compare(_results(classifiers=("knn",)), paper.paper_claims(["mnist@10"], pairs, "knn"),
                        by=["dataset", "classifier"], instruments=inst, family=4)
    assert np.allclose(knn["low_fw"], table[table["classifier"] == "knn"]["low_fw"])  # the same Bonferroni m


# --------------------------------------------------------------------------- the controls, the sweep's choice, headroom


def test_the_reconstruction_arm_decodes_the_codes_unaltered_and_the_codes_arm_fits_on_codes(toy):
    cfg = _tiny()
    lab = experiment.labelled_subset(SPLITS.train, 5, 0)
    vae = experiment.fit_vae(SPLITS, 0, cfg)
    x, y = experiment.synthesise(experiment.RECONSTRUCTION, lab, vae, 0.0, 1, 0, cfg)
    assert torch.allclose(x, reconstruct(vae, lab.x), atol=1e-6) and torch.equal(y, lab.y)
    assert len(experiment.synthesise(experiment.CODES, lab, vae, 0.0, 0, 0, cfg)[0]) == 0
    # 1-NN on codes, brute force: the label of the nearest labelled code
    z, z_test = encode_all(vae, lab.x), encode_all(vae, SPLITS.test.x)
    nearest = lab.y[torch.cdist(z_test, z).argmin(1)]
    probs = experiment.code_probs("knn", vae, lab, SPLITS.test.x, cfg)
    assert probs.shape == (len(SPLITS.test), 3) and (probs.argmax(1) == nearest.numpy()).all()
    assert experiment.classifiers_of(experiment.CODES, cfg) == ["knn", "svm"]
    assert experiment.classifiers_of("baseline", cfg) == ["knn", "svm", "cnn"]
    assert experiment.classifiers_of("affine", cfg) == ["knn", "svm"]  # not in CNN_ARMS


def test_test_metrics_leave_out_the_auc_of_a_one_nearest_neighbour_only():
    cfg = _tiny()
    y, probs = torch.tensor([0, 1, 2, 1]), np.eye(3)[[0, 1, 1, 1]]
    assert "auc" not in experiment.test_metrics("knn", y, probs, "multi-class", cfg)
    assert "auc" in experiment.test_metrics("knn", y, probs, "multi-class", cfg.replace(knn_k=5))
    assert "auc" in experiment.test_metrics("svm", y, probs, "multi-class", cfg)


def _sweep(values: dict[tuple[float, int], tuple[float, float]]) -> pd.DataFrame:
    """A sweep of one arm: {(strength, n): (mean validation accuracy, label_ratio)}."""
    rows = []
    for (strength, n), (acc, ratio) in values.items():
        at = {"dataset": "toy@5", "arm": "latent-noise", "seed": 1000, "strength": strength, "n_per_image": n}
        rows += [at | {"metric": "val_accuracy", "value": acc, "classifier": c} for c in ("knn", "svm")]
        rows.append(at | {"metric": "label_ratio", "value": ratio, "classifier": "oracle"})
    return pd.DataFrame(rows)


def test_choose_keeps_the_best_candidate_whose_images_keep_their_labels():
    sweep = _sweep({(0.25, 2): (0.70, 0.95), (0.5, 2): (0.74, 0.86), (0.75, 2): (0.78, 0.84), (1.0, 2): (0.80, 0.6)})
    assert experiment.LABEL_RATIO + experiment.CHOICE_MARGIN == pytest.approx(0.85)
    assert experiment.choose(sweep)["toy@5"]["latent-noise"] == (0.5, 2)  # 0.75 and 1.0 keep too few labels
    none_ok = _sweep({(0.5, 2): (0.74, 0.5), (1.0, 2): (0.80, 0.6)})
    assert experiment.choose(none_ok)["toy@5"]["latent-noise"] == (1.0, 2)  # no candidate keeps them: the best
    no_ratio = sweep[sweep["metric"] != "label_ratio"]
    assert experiment.choose(no_ratio)["toy@5"]["latent-noise"] == (1.0, 2)  # pixel arms and affine


def test_headroom_divides_each_gain_by_the_ceiling_minus_the_baseline():
    results = pd.DataFrame(
        [{"dataset": "mnist@5", "arm": "baseline", "seed": s, "metric": "accuracy", "classifier": "knn", "value": v}
         for s, v in enumerate([0.60, 0.70])]
        + [{"dataset": "mnist", "arm": "oracle", "seed": 0, "metric": "ceiling_accuracy", "value": 0.95}])
    at = {"dataset": "mnist@5", "classifier": "knn", "verdict": "inconclusive"}
    family = pd.DataFrame([at | {"comparison": "latent-interpolation − baseline", "mean": 6.0, "low_fw": -2.0,
                                 "high_fw": 10.0, "paper": 21.29},
                           at | {"comparison": "latent-interpolation − latent-noise", "mean": 1.0, "low_fw": 0.0,
                                 "high_fw": 2.0, "paper": 13.86}])
    table = paper.headroom(family, results)
    assert len(table) == 1  # only the rows against the baseline
    r = table.iloc[0]
    assert (r["baseline"], r["ceiling"], r["headroom"]) == pytest.approx((65.0, 95.0, 30.0))
    assert (r["share"], r["share_low_fw"], r["share_high_fw"]) == pytest.approx((0.2, -2 / 30, 1 / 3))
    assert r["paper_share"] == pytest.approx((53.15 - 31.86) / (100 - 31.86))


def test_per_classifier_comparisons_and_scale_check_skip_the_classifiers_without_both_arms():
    runs = _results(classifiers=("knn", "cnn"))
    runs = runs[~((runs["classifier"] == "cnn") & (runs["arm"] == "latent-noise"))]  # the CNN lacks one arm
    table = paper.compare_per_classifier(runs, ["mnist@10"], [("latent-noise", "baseline")], ["knn", "cnn"])
    assert set(table["classifier"]) == {"knn"}
    scaled = runs[runs["seed"] < 3].assign(value=lambda d: d["value"] + np.where(d["arm"] == "baseline", 0, 0.1))
    check = paper.scale_check(runs, scaled, [("latent-noise", "baseline"), ("image-noise", "baseline")],
                              ["knn", "cnn"]).set_index(["classifier", "comparison"])
    assert check.loc[("knn", "latent-noise − baseline"), "change"] == pytest.approx(10.0)  # +10 points at 4x
    assert ("cnn", "latent-noise − baseline") not in check.index and ("cnn", "image-noise − baseline") in check.index
    assert paper.scale_check(runs, runs.iloc[:0], paper.HEADLINE, ["knn"]).empty  # no scale-check run
