"""Metrics against hand-computed cases and scikit-learn."""

import numpy as np
import pytest

from contract import LABELS
from training.core.metrics import (
    accuracy,
    classification_metrics,
    combine_tta,
    confusion_matrix,
    evaluate_probs,
    f1_per_class,
    macro_f1,
    precision_per_class,
    recall_per_class,
    row_normalise,
)


def one_hot(pred, k=7):
    p = np.full((len(pred), k), 0.01)
    p[np.arange(len(pred)), pred] = 0.9
    return p


def test_confusion_matrix_by_hand():
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]  # rows = true
    assert accuracy(y, p) == pytest.approx(4 / 6)
    np.testing.assert_allclose(recall_per_class(cm), [1 / 2, 1, 2 / 3])
    np.testing.assert_allclose(precision_per_class(cm), [1 / 2, 1 / 2, 1])
    f1 = [0.5, 2 * 0.5 * 1 / 1.5, 2 * 1 * (2 / 3) / (1 + 2 / 3)]
    np.testing.assert_allclose(f1_per_class(cm), f1)
    assert macro_f1(cm) == pytest.approx(np.mean(f1))
    np.testing.assert_allclose(row_normalise(cm)[2], [1 / 3, 0, 2 / 3])


def test_absent_and_never_predicted_classes_score_zero():
    y = np.array([0, 0, 1])
    p = np.array([0, 0, 0])
    cm = confusion_matrix(y, p, 7)
    assert recall_per_class(cm)[1] == 0 and precision_per_class(cm)[1] == 0
    assert recall_per_class(cm)[5] == 0 and np.all(np.isfinite(f1_per_class(cm)))
    assert row_normalise(cm)[5].sum() == 0


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 7)
    with pytest.raises(ValueError):
        confusion_matrix(np.array([0, 1]), np.array([0]), 7)


def test_agrees_with_sklearn():
    import sklearn.metrics as sk

    rng = np.random.default_rng(3)
    y = rng.integers(0, 7, 500)
    probs = rng.random((500, 7))
    probs[np.arange(500), y] += rng.random(500) * 0.8  # better than chance
    m = classification_metrics(y, probs)
    pred = probs.argmax(1)
    labels = list(range(7))
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(
        sk.f1_score(y, pred, average="macro", labels=labels, zero_division=0)
    )
    assert m["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=labels).tolist()
    rec = sk.recall_score(y, pred, average=None, labels=labels, zero_division=0)
    prec = sk.precision_score(y, pred, average=None, labels=labels, zero_division=0)
    for i, lab in enumerate(LABELS):
        assert m["per_class"][lab]["recall"] == pytest.approx(rec[i])
        assert m["per_class"][lab]["precision"] == pytest.approx(prec[i])
        assert m["per_class"][lab]["support"] == int((y == i).sum())


def test_tta_averages_plain_and_flipped():
    y = np.array([0, 1, 2])
    probs = one_hot([0, 0, 0])  # 1/3 right
    flip = one_hot([0, 1, 2]) * 2  # confident and right: the mean follows it
    np.testing.assert_allclose(combine_tta(probs, flip, True), (probs + flip) / 2)
    np.testing.assert_allclose(combine_tta(probs, flip, False), probs)
    m = evaluate_probs(y, probs, flip, tta=True)
    assert m["tta"] is True
    assert m["accuracy_plain"] == pytest.approx(1 / 3)
    assert m["accuracy_tta"] == pytest.approx(1.0)
    assert m["accuracy"] == m["accuracy_tta"]
    m = evaluate_probs(y, probs, flip, tta=False)
    assert m["tta"] is False and m["accuracy"] == pytest.approx(1 / 3)
    assert m["accuracy_tta"] == pytest.approx(1.0)  # still reported side by side
    m = evaluate_probs(y, probs, None, tta=True)
    assert m["tta"] is False and m["accuracy_tta"] is None
