"""Metrics against scikit-learn and hand computation; entropy and mutual information by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from latentlab import metrics as M

rng = np.random.default_rng(0)


def _probs(n: int, k: int) -> np.ndarray:
    p = rng.random((n, k)) ** 3
    return p / p.sum(1, keepdims=True)


def test_binary_metrics_match_sklearn_and_confusion_counts():
    y = rng.integers(0, 2, 200)
    p = _probs(200, 2)
    pred = p.argmax(1)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.sensitivity(y, p) == pytest.approx(tp / (tp + fn))
    assert M.specificity(y, p) == pytest.approx(tn / (tn + fp))
    assert M.f1(y, p) == pytest.approx(skm.f1_score(y, pred))
    assert M.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p[:, 1]))
    assert M.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p[:, 1]))
    assert M.balanced_accuracy(y, p) == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)


def test_known_values_on_a_tiny_binary_case():
    y = np.array([1, 1, 1, 0, 0])
    p = np.array([[.2, .8], [.6, .4], [.1, .9], [.7, .3], [.4, .6]])  # predictions 1 0 1 0 1
    assert M.accuracy(y, p) == pytest.approx(3 / 5)
    assert M.sensitivity(y, p) == pytest.approx(2 / 3)
    assert M.specificity(y, p) == pytest.approx(1 / 2)
    assert M.f1(y, p) == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert M.auc(y, p) == pytest.approx(5 / 6)  # positives .8 .4 .9 vs negatives .3 .6: 5 of 6 pairs ordered


def test_multiclass_metrics_match_sklearn():
    y = np.arange(300) % 5
    p = _probs(300, 5)
    assert M.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert M.f1(y, p) == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"))
    assert M.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    assert M.sensitivity(y, p) == pytest.approx(skm.recall_score(y, p.argmax(1), average="macro"))
    assert M.average_precision(y, p) == pytest.approx(skm.average_precision_score(np.eye(5)[y], p))
    out = M.classification_metrics(torch.as_tensor(y), torch.as_tensor(p), "multi-class")
    assert set(out) == {"accuracy", "balanced_accuracy", "auc", "macro_f1", "single_class"}


def test_multilabel_metrics_match_sklearn():
    y = rng.integers(0, 2, (100, 4))
    p = rng.random((100, 4))
    assert M.auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert M.accuracy(y, p) == pytest.approx(((p >= .5) == y).mean())
    assert M.f1(y, p) == pytest.approx(skm.f1_score(y, p >= .5, average="macro"))
    assert M.average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p))


def test_per_class_average_precision_matches_sklearn_and_marks_absent_classes():
    y = np.arange(120) % 4
    p = _probs(120, 5)  # class 4 has no test image: its AP is undefined
    ap = M.per_class_average_precision(torch.as_tensor(y), torch.as_tensor(p))
    np.testing.assert_allclose(ap[:4], skm.average_precision_score(np.eye(5)[y][:, :4], p[:, :4], average=None))
    assert math.isnan(ap[4])
    yb, pb = rng.integers(0, 2, 80), _probs(80, 2)  # binary: both classes, class 1 as average_precision
    np.testing.assert_allclose(M.per_class_average_precision(yb, pb),
                               [skm.average_precision_score(yb == 0, pb[:, 0]), M.average_precision(yb, pb)])
    yml, pml = rng.integers(0, 2, (60, 3)), rng.random((60, 3))
    np.testing.assert_allclose(M.per_class_average_precision(yml, pml), skm.average_precision_score(yml, pml,
                                                                                                   average=None))


def test_binary_report_has_the_clinical_metrics_and_nan_auc_when_undefined():
    out = M.classification_metrics(np.zeros(4, int), _probs(4, 2), "binary-class")
    assert {"sensitivity", "specificity", "f1"} <= set(out) and math.isnan(out["auc"])


def test_entropy_and_mutual_information_by_hand():
    # two passes that disagree completely: the mean is uniform (ln 2), each pass is certain (0)
    mc = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (T=2, N=2, K=2)
    np.testing.assert_allclose(M.predictive_entropy(mc), [math.log(2), math.log(2)], atol=1e-6)
    np.testing.assert_allclose(M.mutual_information(mc), [math.log(2), 0.0], atol=1e-6)
    # a (N, K) input: H = -(.2 ln .2 + .8 ln .8)
    assert M.predictive_entropy(torch.tensor([[.2, .8]]))[0].item() == pytest.approx(0.500402, abs=1e-5)


def test_mutual_information_is_between_zero_and_entropy():
    mc = torch.softmax(torch.randn(20, 50, 3) * 2, -1)
    mi, h = M.mutual_information(mc), M.predictive_entropy(mc)
    assert torch.all(mi >= -1e-6) and torch.all(mi <= h + 1e-6)
    with pytest.raises(ValueError, match=r"\(T, N, K\)"):
        M.mutual_information(mc[0])


def test_single_class_flags_degenerate_predictions_only():
    one = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])  # argmax 0 everywhere
    assert M.single_class(one) and not M.single_class(np.array([[0.9, 0.1], [0.4, 0.6]]))
    assert M.classification_metrics(np.array([0, 1, 1]), one, "binary-class")["single_class"] == 1.0
    assert M.single_class(np.array([[0.9, 0.1], [0.8, 0.2]]), multilabel=True)
    assert not M.single_class(np.array([[0.9, 0.1], [0.2, 0.2]]), multilabel=True)
