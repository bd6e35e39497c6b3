"""Notebook 00: the problem itself. How test accuracy and AUC fall as labelled images become scarce.

One task is one (budget, seed): a stratified subset of that many training images, the shared classifier training
scheme (`latentlab.train.train_classifier`: at least CLF_STEPS updates and CLF_MIN_EPOCHS passes, balanced class
weights, the best validation check kept), and the test metrics.
"""

from __future__ import annotations

from latentlab import data
from latentlab.train import evaluate, train_classifier


def run_budget(task: dict) -> list[dict]:
    """Tidy rows (dataset, arm = budget, seed, metric, value) of one classifier trained on `budget` labels."""
    name, n, seed = task["CURVE_DATASET"], task["budget"], task["seed"]
    train, val, test = (data.load_cached(name, split) for split in data.SPLITS)
    subset = train.subset(data.stratified_subset(train.y, n, seed))
    fitted = train_classifier(subset, val, arch=task["CLF_ARCH"], steps=task["CLF_STEPS"],
                              min_epochs=task["CLF_MIN_EPOCHS"], batch_size=task["CLF_BATCH"], lr=task["CLF_LR"],
                              seed=seed, class_weight=task["CLF_CLASS_WEIGHT"], monitor=task["CLF_MONITOR"],
                              **({"width": task["CLF_WIDTH"]} if task["CLF_ARCH"] == "cnn" else {}))
    scores = evaluate(fitted.model, test, task=test.info.task) | {"epochs": len(fitted.history),
                                                                  "best_epoch": fitted.best_epoch}
    return [{"dataset": name, "arm": n, "seed": seed, "metric": k, "value": v} for k, v in scores.items()]
