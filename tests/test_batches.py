"""Fixed-shape batches (training.fit.batches) and exact padded validation
(training.fit.validation)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.core.errors import FerError
from training.fit.batches import TrainBatches
from training.fit.validation import ValidationPass, val_metrics
from training.models.predict import pad_to_batches


def _data(n=37):
    x = np.arange(n, dtype="float32").reshape(n, 1, 1, 1) * np.ones((1, 4, 4, 1), "float32")
    return x, np.arange(n) % 3


def test_only_full_batches_with_a_new_order_every_epoch():
    x, y = _data(37)
    b = TrainBatches(x, y, batch_size=8, seed=5)
    assert len(b) == 4 and b.images_per_epoch == 32
    seen = []
    for epoch in range(6):
        b.set_epoch(epoch)
        ids = [int(xb[j, 0, 0, 0]) for xb, yb in (b[i] for i in range(len(b))) for j in range(8)]
        assert len(ids) == len(set(ids)) == 32  # full batches, no image twice in an epoch
        seen.append(ids)
    assert sorted(seen[0]) != sorted(seen[1])  # a different 5 dropped each epoch
    assert set().union(*map(set, seen)) == set(range(37))  # every image is seen over epochs
    b.set_epoch(3)
    resumed = TrainBatches(x, y, batch_size=8, seed=5, initial_epoch=3)
    assert np.array_equal(resumed[0][0], b[0][0])  # a resumed run trains the same batches
    with pytest.raises(IndexError):
        b[4]


def test_labels_follow_images_and_class_weights_become_sample_weights():
    x, y = _data(30)
    b = TrainBatches(x, y, batch_size=10, seed=0, class_weights={0: 2.0, 1: 0.5, 2: 1.0})
    xb, yb, wb = b[1]
    ids = xb[:, 0, 0, 0].astype(int)
    assert np.array_equal(yb, ids % 3)
    assert np.array_equal(wb, np.array([2.0, 0.5, 1.0], "float32")[ids % 3])
    assert len(TrainBatches(x, y, batch_size=10)[0]) == 2  # no weights: (x, y)


def test_fewer_images_than_a_batch_make_one_batch():
    x, y = _data(5)
    b = TrainBatches(x, y, batch_size=32)
    assert len(b) == 1 and len(b[0][0]) == 5
    with pytest.raises(FerError):
        TrainBatches(x[:0], y[:0], batch_size=32)


def test_padding_does_not_count_in_validation():
    x, y = _data(37)
    padded = pad_to_batches(x, 16)
    assert padded.shape[0] == 48 and not padded[37:].any()
    assert pad_to_batches(x[:32], 16).shape[0] == 32
    probs = np.full((4, 3), 0.1)
    probs[[0, 1, 2, 3], [0, 1, 0, 2]] = 0.8
    m = val_metrics(probs, np.array([0, 1, 2, 2]))
    assert m["val_accuracy"] == 0.75
    assert m["val_loss"] == pytest.approx(-(3 * np.log(0.8) + np.log(0.1)) / 4)


def test_validation_pass_is_exact_on_a_model():
    inp = keras.Input((4, 4, 1))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, out)
    x, y = _data(37)
    logs = {}
    ValidationPass(model, x, y, batch_size=16).on_epoch_end(0, logs)
    probs = model.predict(x, verbose=0)
    assert logs["val_accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    ref = keras.losses.SparseCategoricalCrossentropy()(y, probs)
    assert logs["val_loss"] == pytest.approx(float(ref), rel=1e-5)
