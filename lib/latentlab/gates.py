"""Quality gates: is an instrument good enough for the claims that rest on it?

A verdict about AISEL, TSynD or CAM fusion means something only when the machinery under it works: an autoencoder
whose reconstructions keep their labels, a generator whose samples look like the data, a 2-D code that holds the
classes apart, a classifier trained to convergence. Each gate here turns one of those demands into a measured value,
a stated threshold and pass / fail, the way `train_oracle` already refuses an oracle that does not beat the
majority class:

* `reconstruction_gate`: the oracle recognises reconstructions (labelled with their source label) at least 0.8 x as
  often as the real images, and their per-pixel MSE is at most 0.6 x that of predicting the mean image;
* `sample_gate`: the oracle's class histogram of the samples gives every class at least 1/(3K) of them, and a
  Frechet distance on the oracle's features closes at least 70 % of the gap between a trivial generator (the ceiling:
  the mean image plus per-pixel Gaussian noise) and real images (the floor);
* `knn_gate` / `pca_reference`: the k-NN accuracy of codes on held-out images, beside PCA of the pixels;
* `converged_gate`: doubling the budget (classifier updates, encoder steps) changes a value by less than a tolerance.

Every gate returns tidy rows, one per check, with the columns `COLUMNS`:
(instrument, dataset, seed, check, value, threshold, passed). The caller names the instrument ("gin",
"autoencoder", "vae", "autoencoder_kl", "classifier", ...). A row whose threshold is NaN is *reported*, not gated:
it carries a number the reader needs beside the gate (the real images' accuracy, the FD floor and ceiling, ...) and
its `passed` is always True. A gate that cannot be evaluated (a NaN value, an FD ceiling not above its floor) fails.

In a notebook::

    rows = []
    for seed in seeds:
        rows += gates.reconstruction_gate(oracle, x_test, y_test, ae.reconstruct(x_test),
                                          instrument="autoencoder", dataset=name, seed=seed)
        rows += gates.sample_gate(oracle, samples, x_real, n_classes=K, instrument="gin", dataset=name, seed=seed)
    instruments = gates.table(rows)
    instruments.to_csv(f"figures/{nb}/instruments.csv", index=False)
    display(gates.summary(instruments))
    gates.require(instruments)  # stops the notebook, naming every failed gate; or mark claims `not tested`:
    broken = gates.failed(instruments)

The oracle argument of the gates is duck-typed: any object with `.label(x) -> (labels, confidence)` (hard labels
(N,) and max probability (N,), tensors or arrays) and, for `sample_gate`, `.model` (an nn.Module whose last
nn.Linear reads the features the Frechet distance uses; see `latentlab.frechet.classifier_features`). A
`latentlab.oracle.Oracle` is one; this module does not import it (it sits lower in the library).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.neighbors import KNeighborsClassifier

from latentlab.frechet import classifier_features, frechet_distance_features
from latentlab.results import INSTRUMENT_COLUMNS

COLUMNS = INSTRUMENT_COLUMNS
NAN = float("nan")


def row(instrument: str, dataset: str, seed: int, check: str, value: float, threshold: float = NAN,
        passed: bool | None = None) -> dict:
    """One tidy row. threshold NaN (the default): a reported value, passed True. Otherwise `passed` must be given
    (a NaN value never passes). For gates of your own, e.g. "kept validation check after the first synthetic batch"."""
    value, threshold = float(value), float(threshold)
    if math.isnan(threshold):
        passed = True
    elif passed is None:
        raise ValueError(f"row {check!r} has a threshold ({threshold}) but no pass / fail.")
    else:
        passed = bool(passed) and not math.isnan(value)
    return {"instrument": instrument, "dataset": dataset, "seed": int(seed), "check": check, "value": value,
            "threshold": threshold, "passed": passed}


def _tensor(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().float()
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty batch of images (N, ...); got shape {tuple(x.shape)}.")
    return x


def _labels(oracle, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    labels, conf = oracle.label(x)
    return np.asarray(torch.as_tensor(labels).cpu()), np.asarray(torch.as_tensor(conf).float().cpu())


def _class_indices(y, n: int, name: str) -> np.ndarray:
    y = np.asarray(torch.as_tensor(y).cpu())
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name} must be 1-D class indices, one per image ({n}); got shape {y.shape}.")
    return y


# --------------------------------------------------------------------------- reconstructions


def reconstruction_gate(oracle, x, y, x_rec, *, instrument: str, dataset: str, seed: int,
                        min_label_ratio: float = 0.8, max_error_ratio: float = 0.6,
                        per_class: bool = False) -> list[dict]:
    """Do reconstructions keep their labels and beat the mean image? Rows:

    * `oracle_accuracy_real` (reported): the oracle's accuracy on the real images x against their labels y;
    * `oracle_accuracy_recon`: its accuracy on x_rec against the *source* labels y; passes when it is at least
      min_label_ratio x the real accuracy;
    * with per_class, the same pair per class k present in y (`oracle_accuracy_real_<k>` reported,
      `oracle_accuracy_recon_<k>` gated at min_label_ratio x the real accuracy on class k): on skewed data the
      overall accuracy can pass while the reconstructions of a minority class are not recognised at all;
    * `mean_image_mse` (reported): the per-pixel MSE of predicting every image by the mean image of x;
    * `recon_mse`: the per-pixel MSE of x_rec against x; passes when it is at most max_error_ratio x mean_image_mse.

    x, x_rec: images (N, C, H, W) in the same order; y: class indices (N,). Use held-out images.
    """
    x, x_rec = _pair(x, x_rec)
    y = _class_indices(y, len(x), "y")
    hit_real, hit_rec = _labels(oracle, x)[0] == y, _labels(oracle, x_rec)[0] == y
    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    parts = [("", np.ones(len(y), bool))] + ([(f"_{k}", y == k) for k in np.unique(y)] if per_class else [])
    rows = []
    for suffix, keep in parts:
        acc_real, acc_rec = float(hit_real[keep].mean()), float(hit_rec[keep].mean())
        rows += [row(**at, check="oracle_accuracy_real" + suffix, value=acc_real),
                 row(**at, check="oracle_accuracy_recon" + suffix, value=acc_rec, threshold=min_label_ratio * acc_real,
                     passed=acc_rec >= min_label_ratio * acc_real)]
    return rows + error_gate(x, x_rec, **at, max_error_ratio=max_error_ratio)


def _pair(x, x_rec) -> tuple[torch.Tensor, torch.Tensor]:
    x, x_rec = _tensor(x, "x"), _tensor(x_rec, "x_rec")
    if x.shape != x_rec.shape:
        raise ValueError(f"x and x_rec must have the same shape; got {tuple(x.shape)} and {tuple(x_rec.shape)}.")
    return x, x_rec


def error_gate(x, x_rec, *, instrument: str, dataset: str, seed: int, max_error_ratio: float = 0.6,
               ceiling: float | None = None) -> list[dict]:
    """Do reconstructions beat the mean image? The label-free half of `reconstruction_gate` (for a notebook without
    an oracle). Rows `mean_image_mse` (reported: the per-pixel MSE of predicting every image by the mean image of x)
    and `recon_mse` (the per-pixel MSE of x_rec against x; passes when it is at most max_error_ratio x
    mean_image_mse). A model that died in training and outputs the mean image fails it. With `ceiling` (e.g. the
    error of PCA to the model's code size, `pca_reference`: a 2-D code cannot reach 0.6 x the mean image's error on
    MNIST) it passes below that error instead."""
    x, x_rec = _pair(x, x_rec)
    mse_mean = float(((x - x.mean(0, keepdim=True)) ** 2).mean())
    mse_rec = float(((x_rec - x) ** 2).mean())
    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    if ceiling is not None:
        return [row(**at, check="mean_image_mse", value=mse_mean),
                row(**at, check="recon_mse", value=mse_rec, threshold=ceiling, passed=mse_rec < ceiling)]
    return [row(**at, check="mean_image_mse", value=mse_mean),
            row(**at, check="recon_mse", value=mse_rec, threshold=max_error_ratio * mse_mean,
                passed=mse_rec <= max_error_ratio * mse_mean)]


# --------------------------------------------------------------------------- samples


def trivial_samples(real, n: int, seed: int = 0) -> torch.Tensor:
    """The ceiling generator: n images of the mean image of `real` plus Gaussian noise of its per-pixel sd,
    clipped to [0, 1]. It knows the data's first two moments per pixel and nothing else."""
    real = _tensor(real, "real")
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, *real.shape[1:]), generator=g)
    return (real.mean(0) + noise * real.std(0)).clamp(0, 1)


def sample_gate(oracle, samples, real, *, n_classes: int, instrument: str, dataset: str, seed: int,
                min_closed: float = 0.7, seed_noise: int = 0) -> list[dict]:
    """Do the samples look like the data, to the oracle? Rows:

    * `min_class_share`: the smallest share of the samples the oracle gives to any of the n_classes classes; passes
      when at least 1/(3K) (a generator that misses a class, or makes mostly one, fails);
    * `mean_confidence` (reported): the oracle's mean max-probability on the samples;
    * `fd_model`, `fd_floor`, `fd_ceiling` (reported): Frechet distances on the oracle's penultimate features
      (`classifier_features(oracle.model, .)`) to a reference set of real images, of the samples, of held-out real
      images, and of `trivial_samples` (the mean image plus per-pixel noise);
    * `fd_gap_closed`: (ceiling - model) / (ceiling - floor), 1 for samples as good as real images, 0 for the
      trivial generator; passes when at least min_closed. NaN (and failed) when the ceiling is not above the floor.

    Floor: `real` is split at random (seed_noise) into a held-out part of len(samples) images and the reference part
    (the rest), so len(real) must be at least 2 x len(samples). The Frechet distance is biased upwards at small n
    (by roughly tr(cov) / n), so model, floor and ceiling are all measured with n = len(samples) images against
    the same reference: the gap stays comparable, while the distances themselves are comparable only at equal n.
    The issue asks for 1000 samples; fewer (64 in the smoke profile) work, with a noisier gap.
    """
    samples, real = _tensor(samples, "samples"), _tensor(real, "real")
    n = len(samples)
    if samples.shape[1:] != real.shape[1:]:
        raise ValueError(f"samples and real must be images of one shape; got {tuple(samples.shape[1:])} and "
                         f"{tuple(real.shape[1:])}.")
    if n < 2 or len(real) < 2 * n:
        raise ValueError(f"sample_gate needs at least 2 samples and 2 x as many real images (a held-out floor of "
                         f"len(samples) and a reference of the rest); got {n} samples, {len(real)} real images.")
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1; got {n_classes}.")
    labels, conf = _labels(oracle, samples)
    share = np.bincount(labels, minlength=n_classes)[:n_classes] / n

    order = np.random.default_rng(seed_noise).permutation(len(real))
    held, reference = real[order[:n]], real[order[n:]]
    feats = lambda x: classifier_features(oracle.model, x)
    ref = feats(reference)
    fd_model = frechet_distance_features(feats(samples), ref)
    fd_floor = frechet_distance_features(feats(held), ref)
    fd_ceiling = frechet_distance_features(feats(trivial_samples(real, n, seed_noise)), ref)
    closed = (fd_ceiling - fd_model) / (fd_ceiling - fd_floor) if fd_ceiling > fd_floor else NAN

    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    return [row(**at, check="min_class_share", value=share.min(), threshold=1 / (3 * n_classes),
                passed=share.min() >= 1 / (3 * n_classes)),
            row(**at, check="mean_confidence", value=conf.mean()),
            row(**at, check="fd_model", value=fd_model),
            row(**at, check="fd_floor", value=fd_floor),
            row(**at, check="fd_ceiling", value=fd_ceiling),
            row(**at, check="fd_gap_closed", value=closed, threshold=min_closed, passed=closed >= min_closed)]


# --------------------------------------------------------------------------- latent structure


def knn_accuracy(codes_train, y_train, codes_test, y_test, k: int = 5) -> float:
    """Accuracy of a k-NN classifier (sklearn, Euclidean, uniform votes) fitted on the training codes."""
    a, b = (np.asarray(torch.as_tensor(c).float().flatten(1)) for c in (codes_train, codes_test))
    ya, yb = _class_indices(y_train, len(a), "y_train"), _class_indices(y_test, len(b), "y_test")
    if not 1 <= k <= len(a):
        raise ValueError(f"k must be between 1 and the number of training codes ({len(a)}); got {k}.")
    return float(KNeighborsClassifier(n_neighbors=k).fit(a, ya).score(b, yb))


def knn_gate(codes_train, y_train, codes_test, y_test, *, instrument: str, dataset: str, seed: int,
             k: int = 5, floor: float | None = None) -> list[dict]:
    """The k-NN accuracy (check `knn_accuracy`) of held-out codes, a k-NN classifier fitted on the training codes.
    Codes (N, d) (or anything that flattens to it); labels: class indices. Reported without a floor; with one (e.g.
    the `pca_reference` of the same size and seed: a trained encoder must hold more class structure than a linear
    projection of the pixels) it passes only above it. Its other gate is `converged_gate` on the value at 2x the
    encoder budget."""
    acc = knn_accuracy(codes_train, y_train, codes_test, y_test, k)
    if floor is None:
        return [row(instrument, dataset, seed, "knn_accuracy", acc)]
    return [row(instrument, dataset, seed, "knn_accuracy", acc, threshold=floor, passed=acc > floor)]


def pca_reference(x_train, y_train, x_test, y_test, dims: int = 2, k: int = 5, *, dataset: str = "",
                  seed: int = 0, instrument: str | None = None) -> list[dict]:
    """The paper-free reference of an encoder with `dims`-dimensional codes: PCA of the flattened pixels to `dims`
    components (fitted on x_train), as two reported rows of instrument "pca-<dims>d" (or `instrument`):
    `knn_accuracy` of the test images' projections (a k-NN classifier fitted on the training projections; the floor
    of `knn_gate`) and `recon_mse`, the per-pixel error of the test images' reconstructions from their projections
    (the ceiling of `error_gate`): what a linear map of the same size gets without training."""
    a, b = (np.asarray(torch.as_tensor(x).float().flatten(1)) for x in (x_train, x_test))
    pca = PCA(n_components=dims, random_state=seed).fit(a)
    name = instrument or f"pca-{dims}d"
    mse = float(((pca.inverse_transform(pca.transform(b)) - b) ** 2).mean())
    return [*knn_gate(pca.transform(a), y_train, pca.transform(b), y_test, instrument=name, dataset=dataset,
                      seed=seed, k=k), row(name, dataset, seed, "recon_mse", mse)]


# --------------------------------------------------------------------------- convergence


def converged_gate(value: float, value_more: float, *, instrument: str, dataset: str, seed: int, check: str,
                   tol: float = 0.01, seed_sd: float | None = None) -> list[dict]:
    """Is the budget enough? value: at the budget used; value_more: the same seed at 2x the budget. Rows:
    `<check>` and `<check>_2x` (reported), and `<check>_change` = |value_more - value|, which passes when it is
    below max(tol, seed_sd) (strictly). tol 0.01: one point of accuracy; seed_sd: the spread of that value over the
    setting's seeds (None or NaN: tol alone). E.g. check="val_accuracy" for a classifier (2x the updates),
    check="knn_accuracy" for an encoder (2x its steps)."""
    sd = NAN if seed_sd is None else float(seed_sd)
    threshold = tol if math.isnan(sd) else max(tol, sd)
    change = abs(float(value_more) - float(value))
    at = dict(instrument=instrument, dataset=dataset, seed=seed)
    return [row(**at, check=check, value=value), row(**at, check=f"{check}_2x", value=value_more),
            row(**at, check=f"{check}_change", value=change, threshold=threshold, passed=change < threshold)]


def classifier_convergence(results: pd.DataFrame, doubled: pd.DataFrame, *, metric: str = "val_accuracy",
                           setting: str | None = "arm", tol: float = 0.01,
                           instrument: str = "classifier") -> list[dict]:
    """`converged_gate` for every classifier setting of a notebook: `results` are the grid's tidy rows (every seed),
    `doubled` the rows of a few seeds re-trained at 2x the budget (`ClfConfig.scaled(2)`), under the same `metric`
    name. Per (dataset, setting, re-trained seed): the seed's `metric` at 1x and 2x, gated against max(tol, sd of
    `metric` over that setting's seeds). Checks are named `<metric>[_2x|_change] (<setting> = <value>)`, so one table
    holds every setting; setting=None: one setting per dataset (its name says the setting), checks `<metric>[...]`."""
    keys = ["dataset"] if setting is None else ["dataset", setting]
    rows = []
    for key, more in doubled[doubled["metric"] == metric].groupby(keys, sort=False):
        dataset, value = (key[0], None) if setting is None else key
        base = results[(results["metric"] == metric) & (results["dataset"] == dataset)]
        if setting is not None:
            base = base[base[setting] == value]
        where = f"{dataset}" if setting is None else f"{setting} = {value} ({dataset})"
        for seed, v2 in zip(more["seed"], more["value"]):
            v1 = base.loc[base["seed"] == seed, "value"]
            if v1.empty:
                raise ValueError(f"No {metric} of seed {seed} at {where} in results.")
            gate = converged_gate(float(v1.iloc[0]), float(v2), instrument=instrument, dataset=dataset, seed=seed,
                                  check=metric, tol=tol, seed_sd=base["value"].std())
            rows += gate if setting is None else [r | {"check": f"{r['check']} ({setting} = {value})"} for r in gate]
    return rows


# --------------------------------------------------------------------------- tables


def table(*row_lists) -> pd.DataFrame:
    """One DataFrame with the columns COLUMNS (in that order) from lists of rows and / or DataFrames."""
    frames = [r if isinstance(r, pd.DataFrame) else pd.DataFrame(list(r), columns=COLUMNS) for r in row_lists]
    for f in frames:
        if set(f.columns) != set(COLUMNS):
            raise ValueError(f"gate rows must have exactly the columns {COLUMNS}; got {list(f.columns)}.")
    out = pd.concat([f[COLUMNS] for f in frames], ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return out.astype({"seed": int, "value": float, "threshold": float, "passed": bool})


def _select(df: pd.DataFrame, instrument: str | None, dataset: str | None) -> pd.DataFrame:
    keep = np.ones(len(df), bool)
    if instrument is not None:
        keep &= (df["instrument"] == instrument).to_numpy()
    if dataset is not None:
        keep &= (df["dataset"] == dataset).to_numpy()
    return df[keep]


def failed(instruments: pd.DataFrame, instrument: str | None = None, dataset: str | None = None) -> pd.DataFrame:
    """The failed rows (of one instrument and / or dataset, when given)."""
    df = _select(instruments, instrument, dataset)
    return df[~df["passed"].astype(bool)]


def require(instruments: pd.DataFrame, instrument: str | None = None, dataset: str | None = None) -> None:
    """Raise RuntimeError naming every failed gate (of one instrument and / or dataset, when given): for notebooks
    whose claims cannot be tested without the instrument."""
    bad = failed(instruments, instrument, dataset)
    if len(bad):
        lines = [f"  {r.instrument} on {r.dataset}, seed {r.seed}: {r.check} = {r.value:.4g} (threshold "
                 f"{r.threshold:.4g})" for r in bad.itertuples()]
        raise RuntimeError(f"{len(bad)} quality gate(s) failed; the claims that rest on these instruments cannot be "
                           "tested:\n" + "\n".join(lines))


def summary(instruments: pd.DataFrame) -> pd.DataFrame:
    """One row per instrument x dataset x check (in order of appearance): the mean value and threshold over seeds,
    and `passed` as "k/n" seeds ("reported" for a check without a threshold)."""
    g = instruments.groupby(["instrument", "dataset", "check"], sort=False)
    out = g.agg(value=("value", "mean"), threshold=("threshold", "mean"), n_pass=("passed", "sum"),
                seeds=("seed", "nunique"), n=("passed", "size")).reset_index()
    out["passed"] = [("reported" if math.isnan(t) else f"{int(p)}/{n}")
                     for t, p, n in zip(out["threshold"], out["n_pass"], out["n"])]
    return out[["instrument", "dataset", "check", "value", "threshold", "passed", "seeds"]]
