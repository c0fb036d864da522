"""Under JAX the training model compiles with XLA, augmenter and all
(training.fit.augment.allow_xla).

Keras marks its geometric Random* layers as not XLA-compatible (true of TensorFlow's kernel
only), and one such layer turned XLA off for the whole training model: under JAX every op
then ran from Python, and the first GPU session trained at ~1 s per batch with the H200
mostly 0-5 % busy. These tests build the training model as `fer-hybrid train` does, under
JAX in a subprocess (TensorFlow hidden, as on the GPU machine), and under TensorFlow here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import NO_TENSORFLOW

REPO = Path(__file__).resolve().parents[1]


def _tiny_core():
    import keras

    inputs = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x), name="tiny")


@pytest.mark.slow
def test_jax_training_model_compiles_with_xla_fresh_and_resumed(tmp_path):
    script = NO_TENSORFLOW + textwrap.dedent(f"""
        sys.path[:0] = [{str(REPO)!r}, {str(Path(__file__).parent)!r}]
        import keras, numpy as np
        from test_xla import _tiny_core
        from training.fit.augment import allow_xla, build_augmenter, with_augmentation
        from training.models.serialization import load_model
        from training.fit.trainer import Trainer

        x = (np.random.default_rng(0).random((16, 48, 48, 1)) * 255).astype("float32")
        y = np.arange(16) % 7
        # Both training models of `fer-hybrid train`: the Trainer (label smoothing, mixup,
        # distillation) and input -> augmenter -> core, with the paper's augmenter
        # (rotation, zoom, translation) and the robustness layers.
        aug = lambda: build_augmenter(seed=0, erasing=0.5, robust=["low_light", "occlusion"])
        models = {{"trainer": Trainer(_tiny_core(), aug(), label_smoothing=0.1, seed=0),
                   "sequential": with_augmentation(_tiny_core(), aug())}}
        for name, model in models.items():
            loss = None if name == "trainer" else "sparse_categorical_crossentropy"
            assert allow_xla(model) is True
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)  # weights fixed:
            assert model.jit_compile is True, name
            first = float(model.train_on_batch(x, y))  # XLA compiles the augmenter too
            second = float(model.train_on_batch(x, y))
            assert first != second, (name, first)  # so only fresh random draws change the loss
            path = {str(tmp_path)!r} + f"/{{name}}.keras"
            model.save(path)
            resumed = load_model(path, compile=True)
            assert resumed.jit_compile is False, name  # what Keras alone decides on loading
            assert allow_xla(resumed) is True and resumed.jit_compile is True, name
            again = float(resumed.train_on_batch(x, y))
            assert np.isfinite([first, again]).all(), (name, first, again)
        print("OK", keras.backend.backend(), "tensorflow" in sys.modules)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK jax False" in proc.stdout


def test_tensorflow_keeps_keras_choice():
    """TensorFlow's image transform has no XLA kernel: there the augmenter stays uncompiled
    (graph mode, fast enough), and allow_xla says so."""
    import keras

    from training.fit.augment import allow_xla, with_augmentation

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the suite runs under TensorFlow; the JAX side is the test above")
    model = with_augmentation(_tiny_core(), seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    assert allow_xla(model) is False and model.jit_compile is False
