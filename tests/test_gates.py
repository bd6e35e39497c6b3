"""Quality gates on synthetic data whose answer is known by construction.

Images of three classes: class k lights up rows 2k and 2k+1 of a 6 x 6 image, plus pixel noise. The oracle is a
linear classifier whose weights are the centred templates (it recognises every clean image) and whose features
(what its last nn.Linear reads) are the pixels themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from latentlab import gates

K = 3
TEMPLATES = torch.zeros(K, 1, 6, 6)
for _k in range(K):
    TEMPLATES[_k, 0, 2 * _k:2 * _k + 2, :] = 1
AT = dict(instrument="vae", dataset="toy", seed=0)


def draw(n: int, seed: int, classes=range(K)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor(list(classes))
    y = pool[torch.randint(len(pool), (n,), generator=g)]
    return (0.1 + 0.8 * TEMPLATES[y] + 0.1 * torch.randn(n, 1, 6, 6, generator=g)).clamp(0, 1), y


class TemplateOracle:
    """Duck-typed oracle: .label(x) -> (labels, confidence) and .model ending in nn.Linear."""

    def __init__(self):
        lin = nn.Linear(36, K)
        with torch.no_grad():
            flat = TEMPLATES.flatten(1)
            lin.weight.copy_(8 * (flat - flat.mean(0)))
            lin.bias.zero_()
        self.model = nn.Sequential(nn.Flatten(), lin)

    def label(self, x):
        with torch.no_grad():
            conf, labels = self.model(x).softmax(1).max(1)
        return labels, conf


class LabelsOracle:
    """An oracle that answers fixed labels (for hand-computed accuracies)."""

    def __init__(self, fn):
        self.fn = fn

    def label(self, x):
        labels = self.fn(x)
        return labels, torch.ones(len(labels))


def by_check(rows) -> dict[str, dict]:
    return {r["check"]: r for r in rows}


# --------------------------------------------------------------------------- reconstruction


def test_perfect_reconstructions_pass_and_the_mean_image_fails_both_gates():
    oracle, (x, y) = TemplateOracle(), draw(300, 0)
    perfect = by_check(gates.reconstruction_gate(oracle, x, y, x.clone(), **AT))
    assert perfect["oracle_accuracy_real"]["value"] == 1.0 and perfect["oracle_accuracy_recon"]["value"] == 1.0
    assert perfect["recon_mse"]["value"] == 0.0
    assert all(r["passed"] for r in perfect.values())

    mean = x.mean(0, keepdim=True).expand_as(x)
    rows = by_check(gates.reconstruction_gate(oracle, x, y, mean, **AT))
    # every reconstruction is the same image, so one label: the accuracy is that class's share of y
    only = int(oracle.label(mean[:1])[0])
    assert rows["oracle_accuracy_recon"]["value"] == pytest.approx(float((y == only).float().mean()))
    assert not rows["oracle_accuracy_recon"]["passed"]
    assert rows["recon_mse"]["value"] == pytest.approx(rows["mean_image_mse"]["value"])
    assert rows["recon_mse"]["threshold"] == pytest.approx(0.6 * rows["mean_image_mse"]["value"])
    assert not rows["recon_mse"]["passed"]


def test_reconstruction_gate_against_hand_computed_values():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).view(5, 1, 1, 2)
    y = torch.tensor([0, 1, 1, 0, 0])
    x_rec = x + 0.1  # per-pixel error 0.01
    # real: all five right; recon: four of five (the last) right -> 0.8 = 0.8 x 1.0, the boundary passes
    oracle = LabelsOracle(lambda im: torch.tensor([0, 1, 1, 0, 0]) if im[0].sum() == 0
                          else torch.tensor([1, 1, 1, 0, 0]))
    rows = by_check(gates.reconstruction_gate(oracle, x, y, x_rec, **AT))
    assert rows["oracle_accuracy_real"]["value"] == 1.0 and math.isnan(rows["oracle_accuracy_real"]["threshold"])
    assert rows["oracle_accuracy_recon"]["value"] == 0.8 and rows["oracle_accuracy_recon"]["passed"]
    # mean image (0.4, 0.4): squared errors per pixel 0.16 x 3 + 0.36 x 2 per column -> 0.24
    assert rows["mean_image_mse"]["value"] == pytest.approx(0.24)
    assert rows["recon_mse"]["value"] == pytest.approx(0.01) and rows["recon_mse"]["passed"]
    assert rows["recon_mse"]["threshold"] == pytest.approx(0.6 * 0.24)
    # a stricter label ratio makes 0.8 fail
    assert not by_check(gates.reconstruction_gate(oracle, x, y, x_rec, **AT, min_label_ratio=0.9)
                        )["oracle_accuracy_recon"]["passed"]


def test_reconstruction_gate_per_class_fails_a_class_the_overall_ratio_hides():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).view(5, 1, 1, 2)
    y = torch.tensor([0, 1, 1, 0, 0])
    oracle = LabelsOracle(lambda im: torch.tensor([0, 1, 1, 0, 0]) if im[0].sum() == 0
                          else torch.tensor([1, 1, 1, 0, 0]))  # the first reconstruction (class 0) is called 1
    rows = by_check(gates.reconstruction_gate(oracle, x, y, x + 0.1, **AT, per_class=True))
    assert rows["oracle_accuracy_recon"]["value"] == 0.8 and rows["oracle_accuracy_recon"]["passed"]  # 4 of 5
    assert rows["oracle_accuracy_real_0"]["value"] == 1.0 and rows["oracle_accuracy_real_1"]["value"] == 1.0
    assert rows["oracle_accuracy_recon_0"]["value"] == pytest.approx(2 / 3)  # 2 of class 0's 3: below 0.8 x 1
    assert not rows["oracle_accuracy_recon_0"]["passed"] and rows["oracle_accuracy_recon_0"]["threshold"] == 0.8
    assert rows["oracle_accuracy_recon_1"]["value"] == 1.0 and rows["oracle_accuracy_recon_1"]["passed"]
    plain = by_check(gates.reconstruction_gate(oracle, x, y, x + 0.1, **AT))
    assert set(rows) - set(plain) == {f"oracle_accuracy_{kind}_{k}" for kind in ("real", "recon") for k in (0, 1)}


def test_error_gate_is_the_label_free_half_of_the_reconstruction_gate():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).view(5, 1, 1, 2)
    rows = by_check(gates.error_gate(x, x + 0.1, **AT))
    assert list(rows) == ["mean_image_mse", "recon_mse"]
    assert rows["mean_image_mse"]["value"] == pytest.approx(0.24) and rows["recon_mse"]["value"] == pytest.approx(0.01)
    assert rows["recon_mse"]["passed"] and rows["recon_mse"]["threshold"] == pytest.approx(0.6 * 0.24)
    # a model that died in training outputs the mean image: error = the mean image's, above 0.6 x it
    dead = by_check(gates.error_gate(x, x.mean(0, keepdim=True).expand_as(x), **AT))
    assert dead["recon_mse"]["value"] == pytest.approx(0.24) and not dead["recon_mse"]["passed"]
    with pytest.raises(ValueError, match="same shape"):
        gates.error_gate(x, x[:2], **AT)
    # with a ceiling (e.g. PCA's error at the code size) it passes strictly below that error instead
    rows = by_check(gates.error_gate(x, x + 0.1, **AT, ceiling=0.01))
    assert rows["recon_mse"]["threshold"] == 0.01 and not rows["recon_mse"]["passed"]
    assert by_check(gates.error_gate(x, x + 0.1, **AT, ceiling=0.0101))["recon_mse"]["passed"]


def test_reconstruction_gate_rejects_mismatched_inputs():
    x, y = draw(10, 0)
    with pytest.raises(ValueError, match="same shape"):
        gates.reconstruction_gate(TemplateOracle(), x, y, x[:5], **AT)
    with pytest.raises(ValueError, match="1-D class indices"):
        gates.reconstruction_gate(TemplateOracle(), x, y[:5], x, **AT)


# --------------------------------------------------------------------------- samples


@pytest.fixture(scope="module")
def real() -> torch.Tensor:
    return draw(900, 1)[0]


def test_real_images_close_the_gap_and_the_trivial_generator_does_not(real):
    oracle = TemplateOracle()
    fresh = by_check(gates.sample_gate(oracle, draw(300, 2)[0], real, n_classes=K, **AT))
    copies = by_check(gates.sample_gate(oracle, real[:300].clone(), real, n_classes=K, **AT))
    trivial = by_check(gates.sample_gate(oracle, gates.trivial_samples(real, 300, seed=7), real, n_classes=K, **AT))
    for rows in (fresh, copies, trivial):
        assert rows["fd_ceiling"]["value"] > 20 * rows["fd_floor"]["value"]  # the features tell them apart
        gap = rows["fd_ceiling"]["value"] - rows["fd_floor"]["value"]
        closed = (rows["fd_ceiling"]["value"] - rows["fd_model"]["value"]) / gap
        assert rows["fd_gap_closed"]["value"] == pytest.approx(closed)
    assert fresh["fd_gap_closed"]["value"] == pytest.approx(1, abs=0.03) and fresh["fd_gap_closed"]["passed"]
    assert copies["fd_gap_closed"]["value"] == pytest.approx(1, abs=0.03) and copies["fd_gap_closed"]["passed"]
    assert trivial["fd_gap_closed"]["value"] == pytest.approx(0, abs=0.05) and not trivial["fd_gap_closed"]["passed"]
    assert fresh["min_class_share"]["passed"] and fresh["min_class_share"]["threshold"] == pytest.approx(1 / 9)
    assert fresh["mean_confidence"]["value"] > trivial["mean_confidence"]["value"]
    assert math.isnan(fresh["fd_model"]["threshold"]) and fresh["fd_model"]["passed"]


def test_a_generator_of_one_class_fails_coverage(real):
    rows = by_check(gates.sample_gate(TemplateOracle(), draw(300, 3, classes=[0])[0], real, n_classes=K, **AT))
    assert rows["min_class_share"]["value"] == 0.0 and not rows["min_class_share"]["passed"]
    assert not rows["fd_gap_closed"]["passed"]  # one class is further from the data than the trivial generator


def test_coverage_threshold_is_one_third_of_a_fair_share():
    # labels fixed by hand: shares 0.5, 0.4, 0.1 of K = 3; 1 / 9 = 0.111 -> fails; with 0.2 for the last -> passes
    x = draw(40, 4)[0]
    skewed = LabelsOracle(lambda im: torch.tensor([0] * 20 + [1] * 16 + [2] * 4)[:len(im)])
    skewed.model = TemplateOracle().model
    rows = by_check(gates.sample_gate(skewed, x[:40], draw(80, 5)[0], n_classes=K, **AT))
    assert rows["min_class_share"]["value"] == pytest.approx(0.1) and not rows["min_class_share"]["passed"]
    fair = LabelsOracle(lambda im: torch.tensor([0] * 16 + [1] * 16 + [2] * 8)[:len(im)])
    fair.model = skewed.model
    assert by_check(gates.sample_gate(fair, x, draw(80, 5)[0], n_classes=K, **AT))["min_class_share"]["passed"]


def test_sample_gate_works_at_smoke_size_and_is_seeded(real):
    a = gates.sample_gate(TemplateOracle(), draw(64, 6)[0], real, n_classes=K, **AT, seed_noise=3)
    b = gates.sample_gate(TemplateOracle(), draw(64, 6)[0], real, n_classes=K, **AT, seed_noise=3)
    assert a == b and all(math.isfinite(r["value"]) for r in a)
    assert by_check(a)["fd_floor"]["value"] > by_check(gates.sample_gate(
        TemplateOracle(), draw(300, 6)[0], real, n_classes=K, **AT, seed_noise=3))["fd_floor"]["value"]  # small-n bias


def test_floor_and_ceiling_are_measured_against_a_disjoint_reference(real):
    from latentlab.frechet import frechet_distance_features

    oracle, samples = TemplateOracle(), draw(100, 8)[0]
    rows = by_check(gates.sample_gate(oracle, samples, real, n_classes=K, **AT, seed_noise=4))
    order = np.random.default_rng(4).permutation(len(real))  # the documented split: held-out n, reference the rest
    held, ref = real[order[:100]].flatten(1), real[order[100:]].flatten(1)  # the oracle's features are its pixels
    assert rows["fd_floor"]["value"] == pytest.approx(frechet_distance_features(held, ref))
    assert rows["fd_model"]["value"] == pytest.approx(frechet_distance_features(samples.flatten(1), ref))
    trivial = gates.trivial_samples(real, 100, seed=4).flatten(1)
    assert rows["fd_ceiling"]["value"] == pytest.approx(frechet_distance_features(trivial, ref))


def test_sample_gate_needs_twice_as_many_real_images():
    with pytest.raises(ValueError, match="2 x as many real"):
        gates.sample_gate(TemplateOracle(), draw(64, 0)[0], draw(100, 1)[0], n_classes=K, **AT)


def test_a_ceiling_not_above_the_floor_fails_the_gap():
    class Blind(TemplateOracle):  # features constant: every set is at distance 0
        def __init__(self):
            super().__init__()
            self.model = nn.Sequential(nn.Flatten(), nn.Linear(36, 2), nn.Linear(2, K))
            with torch.no_grad():
                self.model[1].weight.zero_()
    rows = by_check(gates.sample_gate(Blind(), draw(20, 0)[0], draw(40, 1)[0], n_classes=K, **AT))
    assert math.isnan(rows["fd_gap_closed"]["value"]) and not rows["fd_gap_closed"]["passed"]


def test_trivial_samples_have_the_data_moments_and_stay_in_range(real):
    t = gates.trivial_samples(real, 2000, seed=0)
    assert t.min() >= 0 and t.max() <= 1 and t.shape == (2000, 1, 6, 6)
    assert torch.equal(gates.trivial_samples(real, 5, seed=1), gates.trivial_samples(real, 5, seed=1))
    # data far from 0 and 1 (no clipping): per-pixel mean and sd of the data, pixels independent
    g = torch.Generator().manual_seed(0)
    narrow = 0.3 + 0.4 * torch.rand(1, 2, 3, 3, generator=g) + 0.05 * torch.randn(500, 2, 3, 3, generator=g)
    t = gates.trivial_samples(narrow, 20000, seed=0)
    assert torch.allclose(t.mean(0), narrow.mean(0), atol=0.002)
    assert torch.allclose(t.std(0), narrow.std(0), rtol=0.03)
    assert abs(np.corrcoef(t[:, 0, 0, 0], t[:, 1, 2, 2])[0, 1]) < 0.03


# --------------------------------------------------------------------------- latent structure


def brute_knn(a, ya, b, yb, k):
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    votes = ya[np.argsort(d, axis=1)[:, :k]]
    pred = np.array([np.bincount(v, minlength=K).argmax() for v in votes])  # ties: the smaller label, as sklearn
    return float((pred == yb).mean())


def test_knn_gate_equals_brute_force_knn():
    rng = np.random.default_rng(0)
    ya, yb = rng.integers(0, K, 200), rng.integers(0, K, 100)
    a, b = rng.normal(size=(200, 2)) + ya[:, None], rng.normal(size=(100, 2)) + yb[:, None]
    for k in (1, 5):
        (r,) = gates.knn_gate(a, ya, b, yb, **AT, k=k)
        assert r["check"] == "knn_accuracy" and r["passed"] and math.isnan(r["threshold"])
        assert r["value"] == brute_knn(a, ya, b, yb, k)
    assert 0.4 < r["value"] < 0.95  # neither trivial nor perfect: the comparison is informative


def test_knn_gate_with_a_floor_passes_only_above_it():
    rng = np.random.default_rng(0)
    ya, yb = rng.integers(0, K, 200), rng.integers(0, K, 100)
    a, b = rng.normal(size=(200, 2)) + ya[:, None], rng.normal(size=(100, 2)) + yb[:, None]
    acc = brute_knn(a, ya, b, yb, 5)
    (above,) = gates.knn_gate(a, ya, b, yb, **AT, floor=acc - 0.01)
    (at,) = gates.knn_gate(a, ya, b, yb, **AT, floor=acc)
    assert above["passed"] and above["threshold"] == pytest.approx(acc - 0.01) and above["value"] == acc
    assert not at["passed"]  # strictly above: no better than the floor is not a working encoder


def test_pca_reference_equals_svd_projection_and_brute_force_knn():
    (xa, ya), (xb, yb) = draw(150, 0), draw(60, 1)
    r, e = gates.pca_reference(xa, ya, xb, yb, dims=2, k=5, dataset="toy")
    a, b = xa.flatten(1).numpy().astype(np.float64), xb.flatten(1).numpy().astype(np.float64)
    mu = a.mean(0)
    v = np.linalg.svd(a - mu, full_matrices=False)[2][:2].T
    assert r["instrument"] == "pca-2d" and r["dataset"] == "toy" and r["check"] == "knn_accuracy"
    assert r["value"] == brute_knn((a - mu) @ v, ya.numpy(), (b - mu) @ v, yb.numpy(), 5)
    # the reconstruction from 2 components, by hand: project on v and back
    assert e["check"] == "recon_mse" and e["passed"] and math.isnan(e["threshold"])
    assert e["value"] == pytest.approx(float(((((b - mu) @ v) @ v.T + mu - b) ** 2).mean()), rel=1e-4)


def test_knn_rejects_k_above_the_training_set():
    with pytest.raises(ValueError, match="k must be"):
        gates.knn_gate(np.zeros((3, 2)), [0, 1, 2], np.zeros((2, 2)), [0, 1], **AT, k=5)


# --------------------------------------------------------------------------- convergence


def test_converged_gate_branches_at_the_tolerance_and_the_seed_sd():
    rows = by_check(gates.converged_gate(0.5, 0.74, **AT, check="val_accuracy", tol=0.25))
    assert [r["check"] for r in rows.values()] == ["val_accuracy", "val_accuracy_2x", "val_accuracy_change"]
    assert rows["val_accuracy"]["value"] == 0.5 and rows["val_accuracy_2x"]["value"] == 0.74
    assert rows["val_accuracy_change"]["value"] == pytest.approx(0.24) and rows["val_accuracy_change"]["passed"]
    at_tol = by_check(gates.converged_gate(0.5, 0.75, **AT, check="val_accuracy", tol=0.25))["val_accuracy_change"]
    assert at_tol["value"] == 0.25 and at_tol["threshold"] == 0.25 and not at_tol["passed"]  # strictly below
    down = gates.converged_gate(0.75, 0.5, **AT, check="val_accuracy", tol=0.25)[-1]
    assert down["value"] == 0.25 and not down["passed"]  # a drop counts as much as a rise
    wide = gates.converged_gate(0.5, 0.75, **AT, check="val_accuracy", tol=0.25, seed_sd=0.375)[-1]
    assert wide["threshold"] == 0.375 and wide["passed"]
    narrow = gates.converged_gate(0.5, 0.75, **AT, check="val_accuracy", tol=0.25, seed_sd=0.125)[-1]
    assert narrow["threshold"] == 0.25 and not narrow["passed"]
    nan_sd = gates.converged_gate(0.5, 0.505, **AT, check="knn_accuracy", seed_sd=float("nan"))[-1]
    assert nan_sd["threshold"] == 0.01 and nan_sd["passed"]
    assert not gates.converged_gate(0.5, float("nan"), **AT, check="knn_accuracy")[-1]["passed"]


# --------------------------------------------------------------------------- tables


def _instruments() -> pd.DataFrame:
    x, y = draw(60, 0)
    return gates.table(gates.reconstruction_gate(TemplateOracle(), x, y, x, instrument="vae", dataset="toy", seed=0),
                       gates.reconstruction_gate(TemplateOracle(), x, y, x.mean(0, keepdim=True).expand_as(x),
                                                 instrument="vae", dataset="toy", seed=1),
                       gates.converged_gate(0.9, 0.905, instrument="classifier", dataset="toy", seed=0,
                                            check="val_accuracy"))


def test_table_has_the_fixed_columns_and_dtypes():
    df = _instruments()
    assert list(df.columns) == gates.COLUMNS == ["instrument", "dataset", "seed", "check", "value", "threshold",
                                                 "passed"]
    assert len(df) == 11 and df["passed"].dtype == bool
    assert list(gates.table(df.iloc[::-1][gates.COLUMNS[::-1]]).columns) == gates.COLUMNS  # reordered back
    with pytest.raises(ValueError, match="exactly the columns"):
        gates.table(df.assign(extra=1))
    with pytest.raises(ValueError, match="threshold"):
        gates.row("vae", "toy", 0, "recon_mse", 0.1, threshold=0.2)  # a gate without pass / fail


def test_failed_and_require_name_every_failed_gate():
    df = _instruments()
    bad = gates.failed(df)
    assert set(bad["check"]) == {"oracle_accuracy_recon", "recon_mse"} and set(bad["seed"]) == {1}
    assert gates.failed(df, instrument="classifier").empty and gates.failed(df, dataset="other").empty
    with pytest.raises(RuntimeError) as err:
        gates.require(df)
    assert "2 quality gate(s) failed" in str(err.value)
    assert "vae on toy, seed 1: oracle_accuracy_recon" in str(err.value) and "seed 1: recon_mse" in str(err.value)
    gates.require(df, instrument="classifier")  # passes silently
    gates.require(df[df["seed"] == 0])


def test_summary_counts_passing_seeds_per_check():
    s = gates.summary(_instruments())
    assert list(s.columns) == ["instrument", "dataset", "check", "value", "threshold", "passed", "seeds"]
    s = s.set_index(["instrument", "check"])
    assert s.loc[("vae", "recon_mse"), "passed"] == "1/2" and s.loc[("vae", "recon_mse"), "seeds"] == 2
    assert s.loc[("vae", "oracle_accuracy_real"), "passed"] == "reported"
    assert s.loc[("vae", "oracle_accuracy_real"), "value"] == 1.0
    assert s.loc[("classifier", "val_accuracy_change"), "passed"] == "1/1"
    recon = _instruments().query("check == 'recon_mse'")
    assert s.loc[("vae", "recon_mse"), "value"] == pytest.approx(recon["value"].mean())
    assert list(s.index.get_level_values("check")[:4]) == ["oracle_accuracy_real", "oracle_accuracy_recon",
                                                           "mean_image_mse", "recon_mse"]  # order of appearance


def test_the_library_oracle_fits_the_duck_type():
    from latentlab.models import build_classifier
    from latentlab.oracle import Oracle

    torch.manual_seed(0)
    oracle = Oracle("toy", build_classifier("cnn", 1, K), 0.0, 0.0, 0.0, "multi-class")
    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, K, (40,))
    rows = gates.table(gates.reconstruction_gate(oracle, x[:16], y[:16], x[:16], **AT),
                       gates.sample_gate(oracle, x[:12], x[12:], n_classes=K, **AT))
    assert rows["value"].notna().all() and list(rows.columns) == gates.COLUMNS


def test_classifier_convergence_pairs_each_retrained_seed_with_its_setting():
    res = pd.DataFrame([{"dataset": "d", "arm": n, "seed": s, "metric": "val_accuracy", "value": v}
                        for n, vals in ((20, [0.70, 0.80, 0.90]), (500, [0.900, 0.902, 0.904]))
                        for s, v in enumerate(vals)])
    doubled = pd.DataFrame([{"dataset": "d", "arm": 20, "seed": 0, "metric": "val_accuracy", "value": 0.75},
                            {"dataset": "d", "arm": 500, "seed": 0, "metric": "val_accuracy", "value": 0.93}])
    rows = {r["check"]: r for r in gates.classifier_convergence(res, doubled, setting="arm")}
    small, large = rows["val_accuracy_change (arm = 20)"], rows["val_accuracy_change (arm = 500)"]
    assert small["value"] == pytest.approx(0.05) and small["threshold"] == pytest.approx(0.1) and small["passed"]
    assert large["value"] == pytest.approx(0.03) and large["threshold"] == pytest.approx(0.01) and not large["passed"]
    with pytest.raises(ValueError, match="seed 3"):
        gates.classifier_convergence(res, doubled.assign(seed=3))


def test_classifier_convergence_with_one_setting_per_dataset_names_plain_checks():
    res = pd.DataFrame([{"dataset": d, "seed": s, "metric": "val_accuracy", "value": v}
                        for d, vals in (("a@1%", [0.80, 0.84, 0.82]), ("b@1%", [0.70, 0.70, 0.70]))
                        for s, v in enumerate(vals)])
    doubled = pd.DataFrame([{"dataset": "a@1%", "seed": 0, "metric": "val_accuracy", "value": 0.815},
                            {"dataset": "b@1%", "seed": 0, "metric": "val_accuracy", "value": 0.72}])
    rows = {(r["dataset"], r["check"]): r for r in gates.classifier_convergence(res, doubled, setting=None)}
    assert set(rows) == {(d, c) for d in ("a@1%", "b@1%")
                         for c in ("val_accuracy", "val_accuracy_2x", "val_accuracy_change")}
    a, b = rows[("a@1%", "val_accuracy_change")], rows[("b@1%", "val_accuracy_change")]
    assert (a["value"], a["threshold"], a["passed"]) == (pytest.approx(0.015), pytest.approx(0.02), True)
    assert (b["value"], b["threshold"], b["passed"]) == (pytest.approx(0.02), pytest.approx(0.01), False)
