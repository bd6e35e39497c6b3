"""Notebook 02, TSynD (Niemeijer et al. 2024): one seed of one dataset setting, every arm.

Per seed: a stratified labelled subset (a share of the training split), the seed's own autoencoder (trained on all
training images without labels, or on the labelled subset only), the baseline classifier, and four synthetic arms
whose images join training epoch by epoch through `LatentAugmenter`: `recon-only` (plain reconstructions, eps = 0),
`random-latent` (a random move of norm eps), `tsynd-entropy` and `tsynd-mi` (latent ascent on the classifier's
uncertainty, eq. 3-4). eps is given per dataset setting in units of the seed's latent radius (chosen in the notebook
by a label-flip rate measured with the judge). Every arm of a seed shares the subset, the initial weights, the
number of epochs and the autoencoder.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from latentlab import data
from latentlab.metrics import classification_metrics
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, decode_all, encode_all, epochs_for, fit_autoencoder
from latentlab.oracle import Oracle, train_oracle
from latentlab.perturb import robustness, standard_perturbations
from latentlab.samplers.tsynd import LatentAugmenter, label_flips, latent_radius, synthesise
from latentlab.train import predict_proba, train_classifier

ARMS = ("baseline", "recon-only", "random-latent", "tsynd-entropy", "tsynd-mi")
SYNTHESIS = ("tsynd-mi", "tsynd-entropy", "random-latent")


def parse_entry(entry: str) -> tuple[str, float]:
    """'pneumoniamnist@10%' -> ('pneumoniamnist', 0.1)."""
    name, _, share = entry.partition("@")
    if not share.endswith("%"):
        raise ValueError(f"A dataset setting reads name@share%, e.g. 'pneumoniamnist@10%'; got {entry!r}.")
    return name, float(share[:-1]) / 100


def splits(name: str) -> tuple[data.Dataset, data.Dataset, data.Dataset]:
    return data.load_cached(name, "train"), data.load_cached(name, "val"), data.load_cached(name, "test")


def labelled_index(entry: str, seed: int) -> np.ndarray:
    """The seed's stratified labelled subset (at least two images per class)."""
    name, share = parse_entry(entry)
    train = data.load_cached(name, "train")
    return data.stratified_subset(train.y, max(2 * train.n_classes, round(share * len(train))), seed)


def judge_for(p: dict) -> Oracle:
    """The label-flip judge of p['dataset']: its oracle, trained on the whole training split (one per dataset)."""
    return train_oracle(p["dataset"], arch=p["ORACLE_ARCH"], width=p["ORACLE_WIDTH"], steps=p["ORACLE_STEPS"])


def autoencoder_for(p: dict, entry: str, seed: int) -> tuple[ConvAutoencoder, float]:
    """The seed's autoencoder and its latent radius (RMS spread of the codes of the images it was trained on)."""
    name, _ = parse_entry(entry)
    train, val, _ = splits(name)
    labelled_only = p["AE_DATA"] == "labelled"
    x = train.x[labelled_index(entry, seed)] if labelled_only else train.x
    cfg = AEConfig(kind=p["AE_KIND"], latent_dim=p["AE_LATENT"], width=p["AE_WIDTH"],
                   epochs=epochs_for(p["AE_STEPS"], len(x)), batch_size=128, seed=seed)
    key = f"{entry}-labelled-seed{seed}" if labelled_only else f"{name}-train-all"
    ae = fit_autoencoder(x, cfg, key, x_val=val.x)
    return ae, latent_radius(encode_all(ae, x))


def autoencoder_tasks(p: dict) -> list[dict]:
    """One task per autoencoder to train: per (dataset, seed) when it sees all training images (settings of one
    dataset share it), per (setting, seed) when it sees the labelled subset only."""
    first_of_each: dict[str, str] = {}
    for entry in p["DATASETS"]:
        first_of_each.setdefault(parse_entry(entry)[0], entry)
    entries = p["DATASETS"] if p["AE_DATA"] == "labelled" else list(first_of_each.values())
    return [p | {"entry": e, "seed": s} for e in entries for s in p["SEEDS"]]


def train_autoencoder(task: dict) -> dict:
    """Grid task: train (or load) one seed's autoencoder; report its test reconstruction RMSE and latent radius."""
    ae, radius = autoencoder_for(task, task["entry"], task["seed"])
    test = splits(parse_entry(task["entry"])[0])[2]
    rmse = float((decode_all(ae, encode_all(ae, test.x)) - test.x).pow(2).mean().sqrt())
    return {"dataset": parse_entry(task["entry"])[0], "seed": task["seed"], "test_rmse": rmse, "latent_radius": radius,
            "final_val_loss": float(ae.val_curve[-1])}


def fit_arm(p: dict, labelled: data.Dataset, val: data.Dataset, seed: int, synthetic=None):
    """Every arm's classifier: same architecture, budget in real-image epochs and initial weights (the seed)."""
    return train_classifier(labelled, val, arch="cnn", width=p["CLF_WIDTH"], steps=p["CLF_STEPS"],
                            min_epochs=p["CLF_MIN_EPOCHS"], batch_size=p["CLF_BATCH"], lr=p["CLF_LR"], seed=seed,
                            class_weight=p["CLF_CLASS_WEIGHT"], monitor=p["CLF_MONITOR"],
                            val_checks=p["CLF_VAL_CHECKS"], synthetic=synthetic).model


def n_epochs(p: dict, n: int) -> int:
    """The epochs `train_classifier` gives n labelled images (synthesis is scheduled within them)."""
    batch = max(2, min(p["CLF_BATCH"], n))
    return max(p["CLF_MIN_EPOCHS"], int(np.ceil(p["CLF_STEPS"] / np.ceil(n / batch))))


def augmenter(p: dict, arm: str, ae, radius: float, labelled: data.Dataset, eps_rel: float,
              seed: int) -> LatentAugmenter:
    """The synthetic-image hook of one arm: regenerated REGENERATIONS times from START_FRACTION of training on."""
    epochs = n_epochs(p, len(labelled))
    start = int(p["START_FRACTION"] * epochs)
    return LatentAugmenter(arm, ae, labelled.x, labelled.y, eps=0.0 if arm == "recon-only" else eps_rel * radius,
                           n_synthetic=min(p["MAX_SYNTHETIC"], round(p["SYN_RATIO"] * len(labelled))),
                           steps=p["ASCENT_STEPS"], T=p["MC_SAMPLES"], start_epoch=start,
                           every=max(1, (epochs - start) // p["REGENERATIONS"]), seed=seed)


def evaluate_all(p: dict, model, test: data.Dataset) -> dict[str, float]:
    """Clean metrics, accuracy under test-time perturbations (mean: accuracy_tta) and under FGSM / PGD."""
    out = classification_metrics(test.y, predict_proba(model, test.x, task=test.info.task), test.info.task)
    perturbations = standard_perturbations(rotation=p["ROTATION"], noise_std=p["NOISE_STD"])
    rob = robustness(model, test.x, test.y, attack_eps=p["ATTACK_LEVELS"] / 255, pgd_steps=p["PGD_STEPS"],
                     perturbations=perturbations)
    keep = ("accuracy", "auc", "balanced_accuracy", "sensitivity", "specificity", "single_class")
    return {k: out[k] for k in keep} | {k: rob[k] for k in ("accuracy_tta", "accuracy_fgsm", "accuracy_pgd")}


def synthetic_validity(judge: Oracle, ae, aug: LatentAugmenter) -> dict[str, float]:
    """Latent move and judge's label-flip rate of the synthetic set an arm used last in training."""
    x_ref = decode_all(ae, aug.z_real[aug.last_idx])  # the plain reconstructions of the source images
    flip, _ = label_flips(judge.model, aug.current[0], x_ref, aug.current[1])
    return {"synthetic_shift": aug.log[-1]["mean_shift"], "synthetic_flip_rate": flip}


def run_seed(task: dict) -> list[dict]:
    """Every arm of one (dataset setting, seed): tidy rows (dataset, arm, seed, metric, value)."""
    p, entry, seed = task, task["entry"], task["seed"]
    name, _ = parse_entry(entry)
    train, val, test = splits(name)
    labelled = train.subset(labelled_index(entry, seed))
    judge, (ae, radius) = judge_for(p | {"dataset": name}), autoencoder_for(p, entry, seed)
    rows = []
    for arm in p["ARMS"]:
        aug = None if arm == "baseline" else augmenter(p, arm, ae, radius, labelled, task["eps_rel"], seed)
        metrics = evaluate_all(p, fit_arm(p, labelled, val, seed, synthetic=aug), test)
        if aug is not None and aug.current is not None:
            metrics |= synthetic_validity(judge, ae, aug)
        rows += [{"dataset": entry, "arm": arm, "seed": seed, "metric": k, "value": v} for k, v in metrics.items()]
    return rows + [{"dataset": entry, "arm": "autoencoder", "seed": seed, "metric": "latent_radius", "value": radius}]


# --------------------------------------------------------------------------- choosing eps by the label-flip rate


def flip_sweep(task: dict) -> pd.DataFrame:
    """Grid task: for one dataset setting and the seed EPS_SEED, the judge's label-flip rate of each synthesis mode
    at every eps of EPS_GRID (units of the latent radius), on FLIP_SOURCES training images (never test images).

    A flip counts among images whose plain reconstruction the judge labels correctly: flips caused by the move.
    """
    p, entry, seed = task, task["entry"], task["EPS_SEED"]
    name, _ = parse_entry(entry)
    train, val, _ = splits(name)
    labelled = train.subset(labelled_index(entry, seed))
    clf, judge = fit_arm(p, labelled, val, seed), judge_for(p | {"dataset": name})
    ae, radius = autoencoder_for(p, entry, seed)
    gen = torch.Generator().manual_seed(seed)
    src = torch.randperm(len(train), generator=gen)[:p["FLIP_SOURCES"]]
    z0 = encode_all(ae, train.x[src])
    _, x_ref = synthesise("recon-only", ae, clf, z0, eps=0.0)
    rows = []
    for eps_rel in p["EPS_GRID"]:
        for mode in SYNTHESIS:
            _, x_syn = synthesise(mode, ae, clf, z0, eps=eps_rel * radius, steps=p["ASCENT_STEPS"],
                                  T=p["MC_SAMPLES"], generator=gen)
            rate, n = label_flips(judge.model, x_syn, x_ref, train.y[src])
            rows.append({"dataset": entry, "eps_rel": eps_rel, "eps": eps_rel * radius, "mode": mode,
                         "flip_rate": rate, "n_judged": n})
    return pd.DataFrame(rows)


def choose_eps(sweep: pd.DataFrame, max_flip: float) -> float:
    """The largest eps (x radius) at which both TSynD targets, at it and at every smaller eps, flip at most max_flip
    of the labels; 0 when even the smallest eps flips more (then TSynD is `recon-only`)."""
    tsynd_rows = sweep[sweep["mode"].str.startswith("tsynd")]
    worst = tsynd_rows.groupby("eps_rel")["flip_rate"].apply(lambda r: r.max(skipna=False)).sort_index()
    chosen = 0.0
    for eps_rel, rate in worst.items():
        if not rate <= max_flip:
            break
        chosen = float(eps_rel)
    return chosen
