"""--precision bf16: mixed-precision training that resumes as bf16 and exports as float32."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import synthetic_faces

from training.core.errors import FerError
from training.fit.precision import dtype_policy
from training.fit.train import TrainConfig, train
from training.models.serialization import as_float32, is_mixed_precision


def _tiny(name="tiny"):
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, strides=4)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(7, activation="softmax", dtype="float32")(x)
    return keras.Model(inp, out, name=name)


def test_policy_is_set_inside_and_restored_after():
    assert keras.config.dtype_policy().name == "float32"
    with dtype_policy("bf16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError), dtype_policy("bf16"):
        raise RuntimeError
    assert keras.config.dtype_policy().name == "float32"  # also after an error
    with pytest.raises(FerError, match="--precision"):
        TrainConfig(model="sepnet", precision="fp16").check()


def test_as_float32_rebuilds_a_bf16_model_with_its_weights():
    keras.utils.set_random_seed(0)
    with dtype_policy("bf16"):
        mixed = _tiny()
    assert is_mixed_precision(mixed) and mixed.layers[2].compute_dtype == "bfloat16"
    plain = as_float32(mixed)
    assert not is_mixed_precision(plain) and plain.name == "tiny"
    assert all(layer.compute_dtype == "float32" for layer in plain.layers)
    for a, b in zip(mixed.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = synthetic_faces(8)[0][..., None].astype("float32")
    np.testing.assert_allclose(plain.predict(x, verbose=0), mixed.predict(x, verbose=0),
                               atol=0.02)  # bfloat16 has ~3 significant digits
    float32_model = _tiny()
    assert as_float32(float32_model) is float32_model


class _Policies(keras.callbacks.Callback):
    """The dtype policies of the convolutions being trained, and the global policy."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        convs = {layer.dtype_policy.name for layer in self.model._flatten_layers()
                 if isinstance(layer, keras.layers.Conv2D)}
        self.seen.append((convs, keras.config.dtype_policy().name))


@pytest.mark.slow
def test_bf16_run_trains_resumes_and_exports_float32(tmp_path):
    from training.export.tfjs import convert_keras_to_tfjs, load_tfjs_graph_model

    x, y = synthetic_faces(96, seed=1)
    xv, yv = synthetic_faces(40, seed=2)
    splits = {"train": (x, y), "val": (xv, yv)}
    run = tmp_path / "bf16"

    def config(epochs):
        return TrainConfig(model="baseline_cnn", epochs=epochs, batch_size=32, lr=0.05,
                           precision="bf16", checkpoint_minutes=0)

    policies = _Policies()
    metrics = train(config(1), splits, run, verbose=0, callbacks=[policies])
    assert metrics["status"] == "complete"
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    assert policies.seen == [({"mixed_bfloat16"}, "float32")]  # the core only; no leak
    assert keras.config.dtype_policy().name == "float32"

    with pytest.raises(FerError, match="precision"):  # a resume keeps the run's precision
        train(TrainConfig(model="baseline_cnn", epochs=2, batch_size=32, lr=0.05), splits, run,
              resume=True, verbose=0)
    policies = _Policies()
    metrics = train(config(2), splits, run, resume=True, verbose=0, callbacks=[policies])
    assert metrics["epochs_run"] == 2
    assert policies.seen == [({"mixed_bfloat16"}, "float32")]  # the checkpoint is still bf16
    assert keras.config.dtype_policy().name == "float32"

    best = keras.saving.load_model(run / "best.keras", compile=False)
    assert is_mixed_precision(best)
    out = tmp_path / "tfjs"
    convert_keras_to_tfjs(run / "best.keras", out, "float32")  # would fail on bfloat16 weights
    doc = json.loads((out / "model.json").read_text())
    dtypes = {w["dtype"] for group in doc["weightsManifest"] for w in group["weights"]}
    assert "float32" in dtypes and dtypes <= {"float32", "int32"}  # int32: shape constants
    images = xv[..., None].astype("float32")
    got = load_tfjs_graph_model(out)(images)
    np.testing.assert_allclose(got, as_float32(best).predict(images, verbose=0), atol=1e-4)
