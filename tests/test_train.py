"""Training loop and `fer-hybrid train`: run folder, resume, crash safety, time budget."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import synthetic_faces

from training.core.errors import FerError
from training.fit.train import TrainConfig, class_weights_for, train

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = ["config.json", "log.csv", "best.keras", "checkpoint/state.json", "metrics.json",
             "predictions/val.npz", "predictions/test.npz", "history.png"]


def _splits(n_train=300, n_val=140):
    x, y = synthetic_faces(n_train, seed=1)
    xv, yv = synthetic_faces(n_val, seed=2)
    xt, yt = synthetic_faces(n_val, seed=3)
    return {"train": (x, y), "val": (xv, yv), "test": (xt, yt)}


def _config(**kw):
    base = {"model": "baseline_cnn", "epochs": 2, "batch_size": 32, "lr": 0.05, "seed": 0}
    return TrainConfig(**{**base, **kw})


def _epochs(run: Path) -> list[int]:
    with open(run / "log.csv") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def _no_tmp(run: Path) -> None:
    assert [p for p in run.rglob("*") if ".tmp" in p.name] == []


@pytest.fixture(scope="module")
def splits():
    return _splits()


@pytest.fixture(scope="module")
def small_splits():
    """For the tests of the run's mechanics (crash, checkpoint, resume), not of learning:
    3 batches an epoch instead of 9, and a third of the predictions."""
    return _splits(96, 40)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, splits):
    run = tmp_path_factory.mktemp("runs") / "base"
    metrics = train(_config(), splits, run, verbose=0)
    return run, metrics


def test_class_weights_inverse_frequency():
    w = class_weights_for(np.array([0, 0, 0, 1]), 3)
    assert w[1] == pytest.approx(3 * w[0])
    assert w[2] == 1.0  # absent class: harmless default
    assert np.mean([w[0]] * 3 + [w[1]]) == pytest.approx(1.0)


@pytest.mark.slow
def test_train_writes_the_run_folder_and_learns(finished_run, splits):
    run, metrics = finished_run
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert any((run / "checkpoint").glob("train-epoch0002.keras"))
    _no_tmp(run)
    assert _epochs(run) == [1, 2]
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("model", "params", "best_epoch", "val_accuracy", "epochs_run", "train_seconds",
                "backend"):
        assert key in saved
    assert saved["epochs_run"] == 2 and saved["status"] == "complete"
    assert saved["params"] == 60711
    assert saved["macs_per_image"] == 32_546_304  # training.models.macs on baseline_cnn
    assert saved["train_images_per_second"] > 0
    assert metrics["val_accuracy"] > 1 / 7 + 0.15  # clearly beats chance on the synthetic set
    pred = np.load(run / "predictions" / "val.npz")
    assert pred["probs"].shape == pred["probs_flip"].shape == (140, 7)
    assert pred["y"].dtype == np.int64
    np.testing.assert_allclose(pred["probs"].sum(1), 1, atol=1e-4)
    assert not np.allclose(pred["probs"], pred["probs_flip"])
    # best.keras is the core model (no augmenter) following the model contract
    best = keras.saving.load_model(run / "best.keras", compile=False)
    assert best.name == "baseline_cnn"
    assert best.input_shape == (None, 48, 48, 1)
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "baseline_cnn" and config["epochs"] == 2
    assert config["class_weights"] is True and config["weight_decay"] == 1e-4


@pytest.mark.slow
def test_resume_continues_from_the_saved_epoch(finished_run, splits, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(finished_run[0], run)
    metrics = train(_config(epochs=3), splits, run, resume=True, verbose=0)
    assert _epochs(run) == [1, 2, 3]
    assert metrics["epochs_run"] == 3
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3 and state["checkpoint_model"] == "train-epoch0003.keras"
    model = keras.saving.load_model(run / "checkpoint" / state["checkpoint_model"])
    # optimizer state carried across the resume: 300 // 32 = 9 full batches per epoch
    assert int(model.optimizer.iterations) == 3 * 9
    _no_tmp(run)


@pytest.mark.slow
def test_resume_refuses_a_conflicting_config(finished_run, splits, tmp_path):
    run = tmp_path / "conflict"
    shutil.copytree(finished_run[0], run)
    with pytest.raises(FerError, match="lr"):
        train(_config(epochs=3, lr=0.5), splits, run, resume=True, verbose=0)


def test_scale_lr_scales_the_default_lr_once(tmp_path):
    from training.core.runs import RunFolder
    from training.fit.train import prepare_run

    sepnet = {"model": "sepnet", "batch_size": 512}  # defaults: lr 0.002 at batch 128
    config, _ = prepare_run(TrainConfig(**sepnet, scale_lr=True), RunFolder(tmp_path / "a"))
    assert config.lr == pytest.approx(0.008) and config.scale_lr
    assert config.resolved().lr == config.lr  # a resume does not scale it again
    assert prepare_run(TrainConfig(**sepnet), RunFolder(tmp_path / "b"))[0].lr == 0.002
    with pytest.raises(FerError, match="--scale-lr"):
        prepare_run(TrainConfig(**sepnet, scale_lr=True, lr=0.01), RunFolder(tmp_path / "c"))


def test_checkpoint_minutes_must_not_be_negative(tmp_path):
    with pytest.raises(FerError, match="--checkpoint-minutes"):
        train(_config(checkpoint_minutes=-1), _splits(20, 10), tmp_path / "neg", verbose=0)


def test_resume_without_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(FerError, match="nothing to resume"):
        train(_config(), _splits(20, 10), tmp_path / "empty", resume=True, verbose=0)


@pytest.mark.slow
def test_new_run_refuses_an_existing_run_folder(finished_run, splits):
    with pytest.raises(FerError, match="--resume"):
        train(_config(), splits, finished_run[0], verbose=0)


class _Crash(keras.callbacks.Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.at_epoch:
            raise RuntimeError("injected crash")


@pytest.mark.slow
def test_crash_leaves_loadable_best_and_no_tmp_files(tmp_path, small_splits, monkeypatch):
    run = tmp_path / "crash"
    with pytest.raises(RuntimeError, match="injected"):  # checkpoint every epoch
        train(_config(epochs=4, checkpoint_minutes=0), small_splits, run, verbose=0,
              callbacks=[_Crash(2)])
    keras.saving.load_model(run / "best.keras", compile=False)
    _no_tmp(run)
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 2

    # A crash *while* writing a model file: the half-written temp file must not replace anything.
    import training.fit.callbacks as cb

    before = (run / "best.keras").read_bytes()

    def broken_write(model, path):
        Path(path).write_bytes(b"half a zip file")
        raise OSError("disk full (injected)")

    monkeypatch.setattr(cb, "_write_keras", broken_write)
    with pytest.raises(OSError, match="injected"):
        train(_config(epochs=4), small_splits, run, resume=True, verbose=0)
    assert (run / "best.keras").read_bytes() == before
    keras.saving.load_model(run / "best.keras", compile=False)
    _no_tmp(run)
    monkeypatch.undo()
    # ... and the run still resumes to the end.
    train(_config(epochs=4), small_splits, run, resume=True, verbose=0)
    assert _epochs(run)[-1] == 4


@pytest.fixture()
def checkpoint_epochs(monkeypatch):
    """The epochs RunMonitor writes a training checkpoint at, in order."""
    import training.fit.callbacks as cb

    saved, original = [], cb.RunMonitor.save_checkpoint

    def counting(self):
        saved.append(self.state["epoch"])
        original(self)

    monkeypatch.setattr(cb.RunMonitor, "save_checkpoint", counting)
    return saved


@pytest.mark.slow
def test_checkpoint_only_when_due_and_when_the_run_stops(tmp_path, small_splits,
                                                         checkpoint_epochs):
    run = tmp_path / "rare"
    train(_config(epochs=3, checkpoint_minutes=1000), small_splits, run, verbose=0)
    assert checkpoint_epochs == [3]  # none due in 1000 minutes: only the one at the end
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 3 and state["checkpoint_model"] == "train-epoch0003.keras"
    metrics = train(_config(epochs=4, checkpoint_minutes=1000), small_splits, run, resume=True,
                    verbose=0)
    assert checkpoint_epochs == [3, 4] and _epochs(run) == [1, 2, 3, 4]
    assert metrics["status"] == "complete"


@pytest.mark.slow
def test_resume_after_a_crash_retrains_from_the_checkpoint(tmp_path, small_splits, monkeypatch,
                                                           capsys):
    import training.fit.callbacks as cb

    run = tmp_path / "crashed"
    # A checkpoint after epoch 1 only (as if the minutes ran out there), then a crash after
    # epoch 2 was logged: log.csv has 2 rows, the checkpoint is epoch 1's.
    monkeypatch.setattr(cb.RunMonitor, "_checkpoint_due", lambda self: self.state["epoch"] == 1)
    with pytest.raises(RuntimeError, match="injected"):
        train(_config(epochs=3, checkpoint_minutes=1000), small_splits, run, verbose=0,
              callbacks=[_Crash(2)])
    monkeypatch.undo()
    assert _epochs(run) == [1, 2]
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["checkpoint_model"] == "train-epoch0001.keras"
    with open(run / "log.csv") as fh:
        val = [float(r["val_accuracy"]) for r in csv.DictReader(fh)]
    # the counters are epoch 1's, but the best model on disk is named (it may be epoch 2's)
    assert state["best_epoch"] == 1 + int(np.argmax(val))
    assert state["best_val_accuracy"] == pytest.approx(max(val), abs=1e-6)

    metrics = train(_config(epochs=3, checkpoint_minutes=1000), small_splits, run, resume=True,
                    verbose=0)
    assert "dropped 1 epoch(s) after the checkpoint" in capsys.readouterr().out
    assert _epochs(run) == [1, 2, 3]  # epoch 2 re-trained, logged once
    assert metrics["epochs_run"] == 3 and metrics["status"] == "complete"


@pytest.mark.slow
def test_stop_file_stops_at_the_epoch_boundary_and_resumes(tmp_path, small_splits, capsys):
    run, stop = tmp_path / "stopped", tmp_path / "campaign.stop"
    stop.touch()  # present before the first epoch ends: the run stops after it
    metrics = train(_config(epochs=3), small_splits, run, stop_file=stop, verbose=0)
    assert metrics["status"] == "incomplete" and metrics["stop_reason"] == "stop_requested"
    assert metrics["epochs_run"] == 1 and _epochs(run) == [1]
    assert "as asked (stop file)" in capsys.readouterr().out
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and (run / "checkpoint" / state["checkpoint_model"]).is_file()
    stop.unlink()
    metrics = train(_config(epochs=3), small_splits, run, resume=True, stop_file=stop, verbose=0)
    assert metrics["status"] == "complete" and _epochs(run) == [1, 2, 3]


@pytest.mark.slow
def test_max_minutes_stops_early_with_resumable_state(tmp_path, splits, capsys):
    run = tmp_path / "budget"
    metrics = train(_config(epochs=5), splits, run, max_minutes=0.01, reserve_s=0, verbose=0)
    assert metrics["status"] == "incomplete" and metrics["stop_reason"] == "time_budget"
    assert metrics["epochs_run"] == 1
    assert "--resume" in capsys.readouterr().out
    assert (run / "checkpoint" / "state.json").is_file() and (run / "best.keras").is_file()
    assert not (run / "predictions" / "val.npz").exists()
    metrics = train(_config(epochs=2), splits, run, resume=True, verbose=0)
    assert metrics["status"] == "complete" and _epochs(run) == [1, 2]


# --- the CLI command ------------------------------------------------------------------


@pytest.fixture()
def cli(monkeypatch):
    """A one-command Typer app around `train` with synthetic data instead of load_splits."""
    import typer
    from typer.testing import CliRunner

    import training.commands.train as cmd

    seen = {}

    def fake_load(data, seed):
        seen.update(data=data, seed=seed)
        return _splits(120, 60)

    monkeypatch.setattr(cmd, "_load_data", fake_load)
    app = typer.Typer()
    app.command()(cmd.train)
    app.command("other")(lambda: None)  # keep `train` a named subcommand
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["train", *args]), seen


def test_cli_help_explains_options(cli):
    run, _ = cli
    out = run("--help").output
    for flag in ("--model", "--resume", "--max-minutes", "--smote", "--no-class-weights",
                 "--weights", "--freeze-first", "--width", "--sample", "--aux",
                 "--checkpoint-minutes", "--precision", "--scale-lr"):
        assert flag in out


def test_cli_unknown_model_is_a_user_error(cli, tmp_path):
    run, _ = cli
    result = run("--model", "alexnet", "--runs-dir", str(tmp_path))
    assert isinstance(result.exception, FerError) and "baseline_cnn" in str(result.exception)
    result = run("--model", "baseline_cnn", "--width", "0.5", "--runs-dir", str(tmp_path))
    assert isinstance(result.exception, FerError) and "--width" in str(result.exception)


def test_cli_resume_without_checkpoint_is_a_user_error(cli, tmp_path):
    run, _ = cli
    result = run("--resume", "--name", "nope", "--runs-dir", str(tmp_path))
    assert isinstance(result.exception, FerError) and "nothing to resume" in str(result.exception)


@pytest.mark.slow
def test_cli_trains_and_resumes(cli, tmp_path):
    run, seen = cli
    args = ("--runs-dir", str(tmp_path), "--name", "r1")
    result = run("--model", "baseline_cnn", "--epochs", "1", "--batch-size", "32", "--sample", "50",
                 "--aux", "jaffe", "--seed", "3", *args)
    assert result.exit_code == 0, result.output
    assert seen["data"]["sample"] == 50 and seen["data"]["aux"] == ["jaffe"] and seen["seed"] == 3
    assert (tmp_path / "r1" / "best.keras").is_file()
    result = run("--resume", "--epochs", "2", *args)  # everything else comes from config.json
    assert result.exit_code == 0, result.output
    assert seen["seed"] == 3
    assert _epochs(tmp_path / "r1") == [1, 2]
    result = run("--resume", "--lr", "0.3", *args)
    assert isinstance(result.exception, FerError) and "lr" in str(result.exception)


# --- backend-agnostic: the same code trains on JAX -----------------------------------
# Covered elsewhere, without a JAX process of its own here: tests/test_distribute.py trains
# baseline_cnn with train() under this environment's JAX (backend "jax", best.keras, the
# predictions), tests/test_augment_robust.py runs the augmenter in a jitted JAX train step,
# and tests/test_gpu_flow.py trains two members with augmentation under the GPU machine's
# JAX through `fer-hybrid train`.


@pytest.mark.slow
def test_smote_option_calls_the_data_helper(tmp_path, monkeypatch):
    import importlib.util
    import types

    calls = []

    def fake_smote(x, y, *, seed=0, k=5):
        calls.append((len(y), seed))
        return np.concatenate([x, x[:10]]), np.concatenate([y, y[:10]])

    if importlib.util.find_spec("training.data") is None:  # the data package is written separately
        monkeypatch.setitem(sys.modules, "training.data", types.ModuleType("training.data"))
    module = types.ModuleType("training.data.balance")
    module.smote = fake_smote
    monkeypatch.setitem(sys.modules, "training.data.balance", module)
    train(_config(epochs=1, smote=True, seed=4), _splits(100, 40), tmp_path / "smote", verbose=0)
    assert calls == [(100, 4)]


@pytest.mark.slow
def test_resume_without_augmentation(tmp_path, small_splits):
    run = tmp_path / "noaug"
    train(_config(epochs=1, augment=False), small_splits, run, verbose=0)
    metrics = train(_config(epochs=2, augment=False), small_splits, run, resume=True, verbose=0)
    assert metrics["epochs_run"] == 2 and _epochs(run) == [1, 2]
    best = keras.saving.load_model(run / "best.keras", compile=False)
    assert best.name == "baseline_cnn"


def test_resume_hint_names_the_command_that_ran(monkeypatch):
    from training.fit.train import _cli_name

    monkeypatch.setattr(sys, "argv", ["/venv/bin/fer-hybrid", "train"])
    assert _cli_name() == "fer-hybrid"
    # On the GPU machine: `python3 -m training.cli`, no installed command.
    monkeypatch.setattr(sys, "argv", ["/repo/training/cli.py", "train"])
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    assert _cli_name() == "python3 -m training.cli"


@pytest.mark.slow
def test_init_from_starts_from_the_trained_weights(finished_run, small_splits, tmp_path):
    run, _ = finished_run
    source = keras.saving.load_model(run / "best.keras", compile=False)
    # A learning rate too small to move anything: the fine-tuned model's trainable weights are
    # the source's (BatchNorm's moving statistics still follow the data, so not all weights).
    train(_config(epochs=1, lr=1e-12, init_from=str(run)), small_splits, tmp_path / "ft",
          verbose=0)
    tuned = keras.saving.load_model(tmp_path / "ft" / "best.keras", compile=False)
    assert len(tuned.trainable_weights) == len(source.trainable_weights) > 0
    for a, b in zip(source.trainable_weights, tuned.trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    # ... while the same run without --init-from starts somewhere else
    train(_config(epochs=1, lr=1e-12), small_splits, tmp_path / "fresh", verbose=0)
    fresh = keras.saving.load_model(tmp_path / "fresh" / "best.keras", compile=False)
    assert not np.allclose(np.asarray(fresh.trainable_weights[0]),
                           np.asarray(source.trainable_weights[0]))
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_from"] == str(run)


@pytest.mark.slow
def test_init_from_another_architecture_is_refused(finished_run, splits, tmp_path):
    run, _ = finished_run
    with pytest.raises(FerError, match="do not fit"):
        train(_config(model="sepnet", init_from=str(run / "best.keras")), splits,
              tmp_path / "bad", verbose=0)


def test_init_from_a_missing_model_fails_before_training(tmp_path):
    with pytest.raises(FerError, match="--init-from"):
        _config(init_from=str(tmp_path / "nope.keras")).check()
