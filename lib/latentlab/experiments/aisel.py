"""Notebook 01, AISEL (Chen et al., TPAMI 2021): one seed of one dataset, every arm.

Per seed: draw the n labelled images, train the GIN (eq. 3 and 5) on the unlabelled training images with this seed,
train the classifier C on the labelled images (the `native` arm), evaluate the entropy density h (eq. 7) on uniform
candidates, pick m latent points by energy distance (eq. 10, `aisel+m`), by top entropy (`maxent+m`, the ablation) or
uniformly (`random+m`, `random+M`), let the oracle label G(f), and retrain on labelled + synthetic images. Every arm of
a seed shares the labelled subset, the classifier's initial weights and the GIN.
"""

from __future__ import annotations

import numpy as np
import torch

from latentlab import data
from latentlab.metrics import classification_metrics
from latentlab.models.gin import GIN, GINConfig, fit_gin, reconstruction_error
from latentlab.oracle import Oracle, train_oracle
from latentlab.samplers.energy import energy_distance, support_points
from latentlab.samplers.entropy import entropy_density, top_entropy
from latentlab.train import predict_proba, train_classifier

ARMS = ("native", "random+m", "maxent+m", "aisel+m", "random+M")
FIXED = 0  # the seed of the fixed test / validation subsets: the same images for every seed and arm


def fixed_subset(ds: data.Dataset, n: int | None) -> data.Dataset:
    """At most n images of a split, always the same ones (all if n is None or larger than the split)."""
    if n is None or n >= len(ds):
        return ds
    return ds.subset(np.sort(np.random.default_rng(FIXED).permutation(len(ds))[:n]))


def splits(p: dict) -> tuple[data.Dataset, data.Dataset, data.Dataset]:
    """Train, validation (N_VAL images) and test (N_TEST images) splits of the task's dataset."""
    name = p["dataset"]
    return (data.load_cached(name, "train"), fixed_subset(data.load_cached(name, "val"), p["N_VAL"]),
            fixed_subset(data.load_cached(name, "test"), p["N_TEST"]))


def oracle_for(p: dict) -> Oracle:
    """The dataset's oracle (one per dataset, shared by every seed: it plays the expert who labels)."""
    return train_oracle(p["dataset"], arch=p["ORACLE_ARCH"], width=p["ORACLE_WIDTH"], steps=p["ORACLE_STEPS"],
                        max_images=p["ORACLE_MAX_IMAGES"])


def gin_for(p: dict, seed: int) -> GIN:
    """This seed's GIN, trained on the unlabelled training images (cached by config and seed)."""
    cfg = GINConfig(latent_dim=p["LATENT_DIM"], width=p["GIN_WIDTH"], gan_steps=p["GAN_STEPS"], n_critic=p["N_CRITIC"],
                    encoder_steps=p["ENCODER_STEPS"], lr=p["GAN_LR"], batch_size=p["GAN_BATCH"], seed=seed)
    return fit_gin(data.load_cached(p["dataset"], "train").x, cfg, data_key=f"{p['dataset']}-train")


def train_gin(task: dict) -> dict:
    """Grid task: train (or load) the GIN of one (dataset, seed); report its reconstruction error on test images."""
    gin = gin_for(task, task["seed"])
    return {"dataset": task["dataset"], "seed": task["seed"],
            "recon_mse": reconstruction_error(gin, splits(task)[2].x[:500])}


def labelled_set(p: dict, seed: int) -> data.Dataset:
    """The seed's stratified labelled subset of n images."""
    train = data.load_cached(p["dataset"], "train")
    return train.subset(data.stratified_subset(train.y, p["N_LABELLED"][p["dataset"]], seed))


def fit_classifier(p: dict, train: data.Dataset, val: data.Dataset, seed: int):
    """Every arm's classifier: the same architecture, budget and initial weights (the seed)."""
    return train_classifier(train, val, arch=p["CLF_ARCH"], width=p["CLF_WIDTH"], steps=p["CLF_STEPS"],
                            min_epochs=p["CLF_MIN_EPOCHS"], batch_size=p["CLF_BATCH"], lr=p["CLF_LR"], seed=seed,
                            class_weight=p["CLF_CLASS_WEIGHT"], monitor=p["CLF_MONITOR"],
                            val_checks=p["CLF_VAL_CHECKS"]).model


def synthetic_sets(p: dict, seed: int, gin: GIN, classifier, labelled: data.Dataset, m: int, M: int) -> dict:
    """Latent points of every synthetic arm, plus the candidates, their entropies h (eq. 7) and the real encodings."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    candidates = gin.sample_latent(p["N_CANDIDATES"], generator=gen)
    h = entropy_density(classifier, gin, candidates, task=labelled.info.task)          # eq. 7
    real = gin.encode(labelled.x)                                                       # the n fixed points of eq. 10
    sets = {"random+m": gin.sample_latent(m, generator=gen), "random+M": gin.sample_latent(M, generator=gen),
            "aisel+m": support_points(candidates, m, weights=h, fixed=real, iters=p["SP_ITERS"], seed=seed),
            "maxent+m": candidates[top_entropy(h, m)]}
    return {"sets": sets, "candidates": candidates, "h": h, "real": real}


def class_balance(labels: torch.Tensor, n_classes: int) -> float:
    """Normalised entropy of a label histogram: 1 = perfectly balanced, 0 = one class only."""
    q = np.bincount(labels.numpy(), minlength=n_classes) / max(len(labels), 1)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum() / np.log(n_classes))


def with_oracle_labels(labelled: data.Dataset, x_syn: torch.Tensor, oracle: Oracle) -> tuple[data.Dataset, dict]:
    """The labelled set plus synthetic images labelled by the oracle, and what the oracle thought of them."""
    y_syn, conf = oracle.label(x_syn)
    joined = data.Dataset(torch.cat([labelled.x, x_syn]), torch.cat([labelled.y, y_syn]), labelled.info)
    return joined, {"oracle_confidence": conf.mean().item(), "class_balance": class_balance(y_syn, labelled.n_classes)}


def scores(model, test: data.Dataset) -> dict:
    """The paper's metrics (accuracy, sensitivity, specificity, F1 / macro-F1), AUC and the single-class flag."""
    return classification_metrics(test.y, predict_proba(model, test.x, task=test.info.task), test.info.task)


def run_seed(task: dict) -> list[dict]:
    """Every arm of one (dataset, seed): tidy rows (dataset, arm, seed, metric, value, n_synthetic)."""
    p, seed, name = task, task["seed"], task["dataset"]
    _, val, test = splits(p)
    oracle, gin, labelled = oracle_for(p), gin_for(p, seed), labelled_set(p, seed)
    classifier = fit_classifier(p, labelled, val, seed)                                  # C of eq. 7 = `native`
    view = synthetic_sets(p, seed, gin, classifier, labelled, p["M_SMALL"], p["M_LARGE"])
    results = {"native": scores(classifier, test) | {"gin_recon_mse": reconstruction_error(gin, test.x[:500])}}
    for arm, f in view["sets"].items():
        joined, info = with_oracle_labels(labelled, gin.generate(f), oracle)
        results[arm] = scores(fit_classifier(p, joined, val, seed), test) | info | {
            "classifier_entropy": entropy_density(classifier, gin, f, task=labelled.info.task).mean().item(),
            # eq. 10's objective (x100 in the tables) on a 2000-candidate subsample of mu_h
            "energy_distance": energy_distance(torch.cat([f, view["real"]]), view["candidates"][:2000],
                                               weights_y=view["h"][:2000])}
    sizes = {arm: 0 if arm == "native" else len(view["sets"][arm]) for arm in results}
    return [{"dataset": name, "arm": arm, "seed": seed, "metric": k, "value": v, "n_synthetic": sizes[arm]}
            for arm, metrics in results.items() for k, v in metrics.items()]


def run_curve(task: dict) -> list[dict]:
    """'Query less for more': accuracy of AISEL and random synthesis at one more synthetic-set size."""
    p, seed, size = task, task["seed"], task["size"]
    _, val, test = splits(p)
    oracle, gin, labelled = oracle_for(p), gin_for(p, seed), labelled_set(p, seed)
    classifier = fit_classifier(p, labelled, val, seed)
    sets = synthetic_sets(p, seed, gin, classifier, labelled, size, size)["sets"]
    rows = []
    for method, arm in (("random", "random+m"), ("aisel", "aisel+m")):
        joined, _ = with_oracle_labels(labelled, gin.generate(sets[arm]), oracle)
        acc = scores(fit_classifier(p, joined, val, seed), test)["accuracy"]
        rows.append({"dataset": p["dataset"], "arm": f"curve:{method}", "seed": seed, "metric": "accuracy",
                     "value": acc, "n_synthetic": size})
    return rows
