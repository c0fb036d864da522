"""Structured pruning (training/fit/prune.py): a narrower model that starts from a wider trained
one."""

import numpy as np
import pytest

from training.core.errors import FerError
from training.fit.prune import prune_into
from training.fit.train import init_weights
from training.models.registry import build_model

SHAPE = dict(input_shape=(48, 48, 1), num_classes=7)


def _faces(n=6):
    return np.random.default_rng(0).integers(0, 256, (n, 48, 48, 1)).astype("float32")


def _randomise_batchnorms(model, rng):
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.gamma.assign(rng.uniform(0.5, 1.5, n))
            layer.beta.assign(rng.normal(0, 0.2, n))
            layer.moving_mean.assign(rng.normal(0, 0.2, n))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n))


def _silence(model, narrow):
    """Zero gamma and beta of the channels `narrow` lacks (the same ones for every equal width,
    so the shortcut and main path of a residual add agree): those channels then carry nothing."""
    for layer, small in zip(model.layers, narrow.layers):
        if type(layer).__name__ == "BatchNormalization":
            n, m = layer.gamma.shape[0], small.gamma.shape[0]
            drop = np.random.default_rng(n).permutation(n)[: n - m]
            for w in (layer.gamma, layer.beta):
                v = np.asarray(w).copy()
                v[drop] = 0
                w.assign(v)


def test_same_width_copies_the_model_exactly():
    src = build_model("sepnet", width=0.5, **SHAPE)
    _randomise_batchnorms(src, np.random.default_rng(1))
    dst = build_model("sepnet", width=0.5, **SHAPE)
    counts = prune_into(src, dst)
    assert counts["params"] == counts["of"] == src.count_params()
    np.testing.assert_array_equal(src.predict(_faces(), verbose=0), dst.predict(_faces(), verbose=0))


def test_pruning_channels_that_carry_nothing_keeps_the_predictions():
    """If the dropped channels are silent in the wide model, the narrow one computes the same
    function: the right channels were kept, in every layer, residual groups included."""
    src = build_model("sepnet", width=0.5, **SHAPE)
    dst = build_model("sepnet", width=0.25, **SHAPE)
    _randomise_batchnorms(src, np.random.default_rng(2))
    _silence(src, dst)
    counts = prune_into(src, dst)
    assert counts["params"] == dst.count_params() < counts["of"]
    want = src.predict(_faces(), verbose=0)
    got = dst.predict(_faces(), verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert want.std() > 1e-3  # the comparison is not between two constant outputs


def test_pruning_the_wrong_channels_changes_the_predictions():
    """The test above can fail: keep the silent channels instead and the outputs differ."""
    src = build_model("sepnet", width=0.5, **SHAPE)
    dst = build_model("sepnet", width=0.25, **SHAPE)
    _randomise_batchnorms(src, np.random.default_rng(2))
    _silence(src, dst)
    want = src.predict(_faces(), verbose=0)
    for layer in src.layers:  # flip the ranking: silent channels now look important
        if type(layer).__name__ == "BatchNormalization":
            g = np.asarray(layer.gamma)
            layer.gamma.assign(np.where(g == 0, 9.0, g))
    prune_into(src, dst)
    assert np.abs(dst.predict(_faces(), verbose=0) - want).max() > 1e-3


def test_a_wider_target_or_another_architecture_is_refused():
    src = build_model("sepnet", width=0.25, **SHAPE)
    with pytest.raises(FerError, match="wider"):
        prune_into(src, build_model("sepnet", width=0.5, **SHAPE))
    with pytest.raises(FerError, match="not the same architecture"):
        prune_into(src, build_model("baseline_cnn", **SHAPE))


def test_init_from_a_wider_model_prunes_it(tmp_path):
    src = build_model("sepnet", width=0.5, **SHAPE)
    _randomise_batchnorms(src, np.random.default_rng(3))
    path = tmp_path / "wide.keras"
    src.save(path)
    core = build_model("sepnet", width=0.25, **SHAPE)
    init_weights(core, path)
    bn = next(x for x in core.layers if type(x).__name__ == "BatchNormalization")
    assert not np.allclose(np.asarray(bn.gamma), 1.0)  # not the fresh initialisation
    with pytest.raises(FerError, match="larger --width"):
        init_weights(build_model("baseline_cnn", **SHAPE), path)
