"""Knowledge distillation: frozen teachers (soft-voted) teach the student on the same batch."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from conftest import synthetic_faces

from training.core.errors import FerError
from training.fit.train import TrainConfig, train


def _splits(n_train=128, n_val=64):
    x, y = synthetic_faces(n_train, seed=1)
    xv, yv = synthetic_faces(n_val, seed=2)
    return {"train": (x, y), "val": (xv, yv)}


def _constant_teacher(path, cls=3, shape=(48, 48, 1)):
    """A contract-shaped model that always predicts `cls` (whatever the image)."""
    inp = keras.Input(shape=shape)
    h = keras.layers.Flatten()(inp)
    bias = np.zeros(7, dtype="float32")
    bias[cls] = 10.0
    out = keras.layers.Dense(7, activation="softmax", kernel_initializer="zeros",
                             bias_initializer=keras.initializers.Constant(bias))(h)
    model = keras.Model(inp, out, name="always")
    model.save(str(path))
    return path


def _cfg(**kw):
    base = {"model": "baseline_cnn", "epochs": 2, "batch_size": 32, "lr": 0.02, "seed": 0}
    return TrainConfig(**{**base, **kw})


def test_teacher_must_follow_the_model_contract(tmp_path):
    bad = _constant_teacher(tmp_path / "big.keras", shape=(64, 64, 1))
    with pytest.raises(FerError, match="model contract"):
        train(_cfg(teachers=[str(bad)]), _splits(40, 20), tmp_path / "run", verbose=0)
    with pytest.raises(FerError, match="--teacher"):
        train(_cfg(teachers=[str(tmp_path / "missing")]), _splits(40, 20), tmp_path / "r2",
              verbose=0)
    assert not (tmp_path / "r2").exists()  # checked before the run folder is written


def test_distillation_loss_is_temperature_scaled_kl():
    from training.fit.trainer import Trainer
    from training.models import build_model

    trainer = Trainer(build_model("baseline_cnn"), None, [_dummy()], kd_alpha=0.0,
                      kd_temperature=2.0)
    s = np.array([[0.7, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]], dtype="float32")
    t = np.array([[0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1]], dtype="float32")
    got = float(keras.ops.convert_to_numpy(
        trainer.compute_loss(y=np.array([0]), y_pred={"probs": s, "teacher": t})))
    ps, pt = s ** 0.5 / (s ** 0.5).sum(), t ** 0.5 / (t ** 0.5).sum()
    want = 4.0 * float((pt * np.log(pt / ps)).sum())
    assert got == pytest.approx(want, rel=1e-4)
    assert trainer.teachers[0].trainable is False


def _dummy():
    inp = keras.Input(shape=(48, 48, 1))
    return keras.Model(inp, keras.layers.Dense(7, activation="softmax")(
        keras.layers.Flatten()(inp)))


@pytest.mark.slow
def test_kd_run_writes_a_normal_run_folder_and_resumes(tmp_path):
    teacher_run = tmp_path / "teacher"
    teacher_run.mkdir()
    _constant_teacher(teacher_run / "best.keras", cls=5)
    other = _constant_teacher(tmp_path / "t2.keras", cls=3)
    run = tmp_path / "student"
    m = train(_cfg(teachers=[str(teacher_run), str(other)], kd_alpha=0.5), _splits(), run,
              verbose=0)
    assert m["status"] == "complete"
    for name in ("config.json", "log.csv", "best.keras", "checkpoint/state.json", "metrics.json",
                 "predictions/val.npz"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["teachers"] == [str(teacher_run),
                                                                        str(other)]
    # The student alone: a plain contract model, no teacher inside.
    student = keras.saving.load_model(str(run / "best.keras"), compile=False)
    assert student.input_shape == (None, 48, 48, 1) and student.output_shape == (None, 7)
    assert m["params"] == student.count_params()
    assert not any("teacher" in layer.name or layer.name == "always" for layer in student.layers)
    # The checkpoint holds the teachers, so resume works even if they moved.
    (teacher_run / "best.keras").unlink()
    m = train(_cfg(teachers=[str(teacher_run), str(other)], kd_alpha=0.5, epochs=3), _splits(),
              run, resume=True, verbose=0)
    assert m["epochs_run"] == 3 and m["status"] == "complete"


@pytest.mark.slow
def test_kd_loss_really_uses_the_teacher(tmp_path):
    """kd_alpha 0: only the teacher's soft targets count; it always says class 3."""
    teacher = _constant_teacher(tmp_path / "always3.keras", cls=3)
    run = tmp_path / "run"
    train(_cfg(teachers=[str(teacher)], kd_alpha=0.0, epochs=3, lr=0.05, class_weights=False),
          _splits(), run, verbose=0)
    probs = np.load(run / "predictions" / "val.npz")["probs"]
    assert (probs.argmax(1) == 3).mean() > 0.9
