"""Notebook 00: the problem itself. How test accuracy and AUC fall as labelled images become scarce.

One task is one (budget, seed): a stratified subset of that many training images, the shared classifier training
scheme (`latentlab.train.fit_classifier`: at least CLF_STEPS updates and CLF_MIN_EPOCHS passes, balanced class
weights, the best validation check kept), and the test metrics; plus the validation accuracy and AUC of the kept
model, which the convergence gate compares with the same seed trained twice as long (`gates.classifier_convergence`).
"""

from __future__ import annotations

from dataclasses import dataclass

from latentlab import data, results
from latentlab.config import ClfConfig, Params
from latentlab.train import evaluate, fit_classifier


@dataclass(frozen=True)
class Config(Params):
    """Notebook 00's parameters cell (UPPER_CASE names lower-cased; CLF_* in `clf`)."""

    NOTEBOOK = "00_setup_and_data"

    curve_dataset: str
    tour_datasets: tuple[str, ...]
    budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    clf: ClfConfig
    workers: int | None


def run_seed(task: dict) -> list[dict]:
    """Tidy rows (dataset, arm = budget, seed, metric, value) of one classifier trained on `budget` labels."""
    cfg, n, seed = task["cfg"], task["budget"], task["seed"]
    train, val, test = (data.load_cached(cfg.curve_dataset, split) for split in data.SPLITS)
    subset = train.subset(data.stratified_subset(train.y, n, seed))
    fitted = fit_classifier(subset, val, cfg.clf, seed)
    valid = evaluate(fitted.model, val, task=val.info.task)  # what the convergence gate compares at 1x and 2x
    scores = evaluate(fitted.model, test, task=test.info.task) | {
        "val_accuracy": valid["accuracy"], "val_auc": valid["auc"], "epochs": len(fitted.history),
        "best_epoch": fitted.best_epoch}
    return results.rows(cfg.curve_dataset, n, seed, scores)
