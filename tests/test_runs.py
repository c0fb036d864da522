"""training/core/runs.py (the run folder) and train.prepare_run (the checks before data loads)."""

from __future__ import annotations

import json
import logging

import pytest

from training.core.errors import FerError
from training.core.runs import RunFolder, default_run_name, initial_state
from training.fit.train import TrainConfig, deadline_after, prepare_run


def _saved_run(tmp_path, **config) -> RunFolder:
    """A run folder as `train` leaves it after some epochs (the checkpoint file is a stub)."""
    run = RunFolder(tmp_path / "r")
    cfg = TrainConfig(model="baseline_cnn", epochs=4, **config).resolved()
    run.path.mkdir()
    run.write_config(cfg.to_json())
    run.checkpoint_dir.mkdir()
    run.checkpoint_model(2).write_bytes(b"stub")
    run.write_state({**initial_state(cfg.lr), "epoch": 2, "best_val_accuracy": 0.5,
                     "checkpoint_model": run.checkpoint_model(2).name})
    return run


def test_layout_names():
    run = RunFolder("runs/vgg-1")
    assert run.best_model.name == "best.keras" and run.config.name == "config.json"
    assert run.state.as_posix().endswith("checkpoint/state.json")
    assert run.predictions("PrivateTest").as_posix().endswith("predictions/test.npz")
    assert run.checkpoint_model(7).name == "train-epoch0007.keras"
    assert default_run_name("vgg").startswith("vgg-")


def test_summary_merges_config_and_metrics_and_survives_damage(tmp_path, caplog):
    run = RunFolder(tmp_path)
    assert run.read_summary() == {} and run.read_metrics() == {}
    run.write_config({"model": "vgg", "lr": 0.01})
    run.write_metrics({"model": "vgg", "val_accuracy": 0.6})
    assert run.read_summary() == {"model": "vgg", "lr": 0.01, "val_accuracy": 0.6}
    run.metrics.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert run.read_summary() == {"model": "vgg", "lr": 0.01}
    assert "metrics.json" in caplog.text
    with pytest.raises(FerError, match="damaged"):
        run.read_metrics()


def test_new_run_checks(tmp_path):
    with pytest.raises(FerError, match="--model is required"):
        prepare_run(TrainConfig(model=""), RunFolder(tmp_path / "a"))
    with pytest.raises(FerError, match="unknown model"):
        prepare_run(TrainConfig(model="nosuch"), RunFolder(tmp_path / "a"))
    config, state = prepare_run(TrainConfig(model="baseline_cnn"), RunFolder(tmp_path / "a"))
    assert config.epochs and config.lr and state["epoch"] == 0  # defaults filled in
    assert not (tmp_path / "a").exists()  # nothing is written before training starts
    run = _saved_run(tmp_path)
    with pytest.raises(FerError, match="already holds a run"):
        prepare_run(TrainConfig(model="baseline_cnn"), run)


def test_resume_takes_the_saved_config_and_only_the_given_options(tmp_path):
    run = _saved_run(tmp_path, lr=0.05)
    # A command line that gave only --epochs: the rest (here a different lr) is not compared.
    config, state = prepare_run(TrainConfig(model="", epochs=9, lr=0.5), run, resume=True,
                                given={"epochs"})
    assert (config.model, config.epochs, config.lr, state["epoch"]) == ("baseline_cnn", 9, 0.05, 2)
    with pytest.raises(FerError, match="lr: run has 0.05, you asked for 0.5"):
        prepare_run(TrainConfig(model="", lr=0.5), run, resume=True, given={"lr"})
    # A library call compares every field.
    with pytest.raises(FerError, match="different configuration"):
        prepare_run(TrainConfig(model="baseline_cnn", epochs=4, lr=0.5), run, resume=True)


def test_resume_needs_a_complete_checkpoint(tmp_path):
    with pytest.raises(FerError, match="nothing to resume"):
        prepare_run(TrainConfig(model="baseline_cnn"), RunFolder(tmp_path / "empty"),
                    resume=True)
    run = _saved_run(tmp_path)
    run.checkpoint_model(2).unlink()
    with pytest.raises(FerError, match="incomplete"):
        prepare_run(TrainConfig(model="baseline_cnn"), run, resume=True, given=set())
    state = json.loads(run.state.read_text())
    assert state["checkpoint_model"] == "train-epoch0002.keras"


def test_deadline_after():
    assert deadline_after(None) is None
    with pytest.raises(FerError, match="--max-minutes must be > 0"):
        deadline_after(0)
