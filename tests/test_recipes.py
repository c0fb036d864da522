"""Stronger recipes (off by default): label smoothing, lr schedules, mixup, random erasing."""

from __future__ import annotations

import csv
import json
from itertools import pairwise

import keras
import numpy as np
import pytest
from conftest import synthetic_faces

from training.core.errors import FerError
from training.fit.augment import RandomErasing
from training.fit.schedules import progress_lr, scheduled_lr, time_progress
from training.fit.train import TrainConfig, train
from training.fit.trainer import Trainer


def _splits(n_train=128, n_val=64):
    x, y = synthetic_faces(n_train, seed=1)
    xv, yv = synthetic_faces(n_val, seed=2)
    return {"train": (x, y), "val": (xv, yv)}


def _log(run):
    with open(run / "log.csv") as fh:
        return list(csv.DictReader(fh))


# --- pure pieces -----------------------------------------------------------------------


def test_defaults_are_the_papers_recipe_and_old_configs_still_load():
    cfg = TrainConfig(model="baseline_cnn")
    assert (cfg.label_smoothing, cfg.schedule, cfg.mixup, cfg.random_erasing) == (0, "plateau", 0, 0)
    assert cfg.teachers == [] and cfg.distribute is False and not cfg.uses_trainer
    old = {"model": "vgg", "epochs": 5, "input_shape": [48, 48, 1], "seed": 2}  # pre-recipe file
    loaded = TrainConfig.from_json(old)
    assert loaded.schedule == "plateau" and loaded.mixup == 0.0 and loaded.teachers == []


@pytest.mark.parametrize("kw, flag", [({"schedule": "step"}, "--schedule"),
                                      ({"label_smoothing": 1.0}, "--label-smoothing"),
                                      ({"mixup": -1.0}, "--mixup"),
                                      ({"random_erasing": 1.5}, "--random-erasing"),
                                      ({"kd_alpha": 2.0}, "--kd-alpha"),
                                      ({"kd_temperature": 0.0}, "--kd-temperature"),
                                      ({"optimizer": "adam"}, "--optimizer"),
                                      ({"teachers": ["/no/such/run"]}, "--teacher")])
def test_bad_recipe_options_are_user_errors(kw, flag):
    with pytest.raises(FerError, match=flag):
        TrainConfig(model="baseline_cnn", **kw).check()


def test_optimizer_choice():
    """sgd stays the paper's default; adamw carries the lr and the decoupled weight decay."""
    from training.fit.train import _make_optimizer

    assert TrainConfig(model="vgg").resolved().optimizer == "sgd"
    recipe = TrainConfig(model="sepnet").resolved()  # the lr 0.002 belongs with AdamW
    assert (recipe.optimizer, recipe.lr, recipe.weight_decay) == ("adamw", 0.002, 0.01)
    assert TrainConfig(model="sepnet", optimizer="sgd").resolved().optimizer == "sgd"
    sgd = _make_optimizer(TrainConfig(model="vgg", lr=0.01).resolved())
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    adamw = _make_optimizer(TrainConfig(model="sepnet", optimizer="adamw", lr=0.002,
                                        weight_decay=0.01).resolved())
    assert isinstance(adamw, keras.optimizers.AdamW)
    assert adamw.weight_decay == pytest.approx(0.01)
    assert float(keras.ops.convert_to_numpy(adamw.learning_rate)) == pytest.approx(0.002)


def test_cosine_and_onecycle_schedules():
    lrs = [scheduled_lr("cosine", e, base_lr=0.1, epochs=11, min_lr=0.001) for e in range(11)]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.001)
    assert all(a > b for a, b in pairwise(lrs))
    assert lrs[5] == pytest.approx(0.0505)
    one = [scheduled_lr("onecycle", e, base_lr=0.1, epochs=10) for e in range(10)]
    assert one[0] == pytest.approx(0.1 / 25) and max(one) == pytest.approx(0.1)
    peak = one.index(max(one))
    assert peak == 3  # 30 % warm-up
    assert all(a < b for a, b in pairwise(one[:peak + 1]))
    assert all(a > b for a, b in pairwise(one[peak:]))
    assert scheduled_lr("plateau", 7, base_lr=0.1, epochs=10) == 0.1


def test_random_erasing_is_in_graph_and_train_only():
    x = np.full((8, 48, 48, 1), 128.0, dtype="float32")
    layer = RandomErasing(1.0, seed=1)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(x, training=False)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    changed = (out != x).reshape(8, -1).mean(axis=1)
    assert (changed > 0.005).all() and (changed < 0.3).all()  # one rectangle of 2..25 % per image
    none = keras.ops.convert_to_numpy(RandomErasing(0.0)(x, training=True))
    assert np.array_equal(none, x)
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert again.p == 1.0


def test_augmenter_gets_erasing_only_when_asked():
    from training.fit.augment import build_augmenter

    assert "random_erasing" not in [l.name for l in build_augmenter(seed=0).layers]
    assert "random_erasing" in [l.name for l in build_augmenter(seed=0, erasing=0.5).layers]


def _core():
    from training.models import build_model

    return build_model("baseline_cnn")


def test_label_smoothing_loss_matches_keras_with_class_weights():
    trainer = Trainer(_core(), None, label_smoothing=0.1)
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=6).astype("float32")
    y = np.array([0, 1, 2, 3, 4, 6])
    w = np.array([1.0, 2.0, 0.5, 1.0, 3.0, 1.0], dtype="float32")
    got = float(keras.ops.convert_to_numpy(
        trainer.compute_loss(y=y, y_pred={"probs": probs}, sample_weight=w)))
    ref = keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction=None)(
        keras.ops.one_hot(y, 7), probs)
    want = float(np.mean(keras.ops.convert_to_numpy(ref) * w))
    assert got == pytest.approx(want, rel=1e-4)


def test_mixup_loss_mixes_both_labels():
    trainer = Trainer(_core(), None, mixup_alpha=0.2)
    probs = np.array([[0.5, 0.3] + [0.04] * 5, [0.2, 0.6] + [0.04] * 5], dtype="float32")
    y = np.array([0, 1])
    pred = {"probs": probs, "lam": np.float32(0.7), "perm": np.array([1, 0])}
    got = float(keras.ops.convert_to_numpy(trainer.compute_loss(y=y, y_pred=pred)))
    ce = -np.log(np.clip(probs, 1e-7, 1))
    want = np.mean([0.7 * ce[0, 0] + 0.3 * ce[0, 1], 0.7 * ce[1, 1] + 0.3 * ce[1, 0]])
    assert got == pytest.approx(want, rel=1e-4)


# --- a run with every recipe on, resumed ------------------------------------------------


@pytest.mark.slow
def test_recipe_run_follows_the_schedule_and_resumes(tmp_path):
    run = tmp_path / "recipe"
    cfg = TrainConfig(model="baseline_cnn", epochs=3, batch_size=32, lr=0.02, seed=0,
                      label_smoothing=0.1, mixup=0.2, random_erasing=0.5, schedule="cosine",
                      lr_patience=1, min_lr=1e-4)
    train(cfg, _splits(), run, max_minutes=None, verbose=0, callbacks=[_StopAfter(2)])
    assert [int(r["epoch"]) for r in _log(run)] == [1, 2]
    m = train(cfg, _splits(), run, resume=True, verbose=0)
    assert m["status"] == "complete" and m["epochs_run"] == 3
    lrs = [float(r["lr"]) for r in _log(run)]
    want = [scheduled_lr("cosine", e, base_lr=0.02, epochs=3, min_lr=1e-4) for e in range(3)]
    assert lrs == pytest.approx(want, rel=1e-4)  # lr_patience=1 would have halved it otherwise
    saved = json.loads((run / "config.json").read_text())
    assert saved["mixup"] == 0.2 and saved["schedule"] == "cosine"
    best = keras.saving.load_model(str(run / "best.keras"), compile=False)  # the core only
    assert best.output_shape == (None, 7)
    assert "random_erasing" not in [l.name for l in best.layers]


def test_schedules_by_the_clock():
    # The same curves on a continuous axis: cosine from base to min, onecycle warms up first.
    assert progress_lr("cosine", 0.0, base_lr=0.1, min_lr=0.001) == pytest.approx(0.1)
    assert progress_lr("cosine", 0.5, base_lr=0.1, min_lr=0.001) == pytest.approx(0.0505)
    assert progress_lr("cosine", 1.7, base_lr=0.1, min_lr=0.001) == pytest.approx(0.001)
    one = [progress_lr("onecycle", t / 10, base_lr=0.1) for t in range(11)]
    assert one[0] == pytest.approx(0.004) and max(one) == pytest.approx(0.1, rel=0.05)
    assert one[-1] == pytest.approx(0.0, abs=1e-9)
    # Progress: the clock (training seconds kept in the run's state) or the epochs.
    assert time_progress({"train_seconds": 30.0}, 1, 100, minutes=1.0) == pytest.approx(0.5)
    assert time_progress({"train_seconds": 0.0}, 50, 101, minutes=1.0) == pytest.approx(0.5)
    with pytest.raises(FerError, match="plateau rule has no end"):
        TrainConfig(model="baseline_cnn", schedule_minutes=5).check()
    with pytest.raises(FerError, match="must be > 0"):
        TrainConfig(model="baseline_cnn", schedule="cosine", schedule_minutes=0).check()


@pytest.mark.slow
def test_a_run_stretched_over_minutes_ends_complete_when_they_are_used(tmp_path):
    # 0.01 minutes: used up by the first epoch, long before --epochs 50.
    cfg = TrainConfig(model="baseline_cnn", epochs=50, batch_size=32, lr=0.02,
                      schedule="cosine", schedule_minutes=0.01, min_lr=1e-4)
    m = train(cfg, _splits(), tmp_path / "timed", verbose=0)
    assert m["status"] == "complete" and m["stop_reason"] == "completed"
    assert m["epochs_run"] == 1 and (tmp_path / "timed" / "predictions" / "val.npz").is_file()
    assert float(_log(tmp_path / "timed")[0]["lr"]) == pytest.approx(0.02)  # epoch 1: the top
    again = train(cfg, _splits(), tmp_path / "timed", resume=True, verbose=0)
    assert again["epochs_run"] == 1  # finished: a resume trains no further


class _StopAfter(keras.callbacks.Callback):
    """Simulates an interrupted run: stop fit after `n` epochs (checkpoint already written)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.n:
            self.model.stop_training = True


def test_cli_has_the_recipe_flags():
    import typer
    from typer.testing import CliRunner

    from training.commands.train import train as train_cmd

    app = typer.Typer()
    app.command()(train_cmd)
    app.command("other")(lambda: None)
    out = CliRunner().invoke(app, ["train", "--help"], terminal_width=200).output
    for flag in ("--label-smoothing", "--schedule", "--mixup", "--random-erasing", "--teacher",
                 "--kd-alpha", "--kd-temperature", "--distribute"):
        assert flag in out
    result = CliRunner().invoke(app, ["train", "--model", "baseline_cnn", "--schedule", "step"])
    assert isinstance(result.exception, FerError) and "--schedule" in str(result.exception)


# --- saved checkpoints name our classes ---------------------------------------------------


def test_every_registered_class_is_found_by_the_loaders(repo_root):
    """Checkpoints name "fer_hybrid>Trainer" / "fer_hybrid>RandomErasing"; the loaders
    (resume, evaluate, export) call `register_custom_objects`, so it must import every module
    that registers a class, in a fresh process where nothing else has imported them."""
    import subprocess
    import sys

    from training.models.serialization import PACKAGE, REGISTERING_MODULES

    registering = sorted(
        ".".join(p.relative_to(repo_root).with_suffix("").parts)
        for p in (repo_root / "training").rglob("*.py")
        if "@keras.saving.register_keras_serializable" in p.read_text(encoding="utf-8"))
    assert registering == sorted(REGISTERING_MODULES)
    code = ("import keras; from training.models.serialization import register_custom_objects; "
            "register_custom_objects(); "
            f"print(keras.saving.get_registered_object('{PACKAGE}>Trainer').__module__, "
            f"keras.saving.get_registered_object('{PACKAGE}>RandomErasing').__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=repo_root).stdout
    assert out.split()[-2:] == ["training.fit.trainer", "training.fit.augment"]
