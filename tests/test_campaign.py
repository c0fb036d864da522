"""`fer-hybrid campaign`: a plan of runs trained one at a time, stopped and resumed at epoch
boundaries, its compact copies committed beside the plan.

The flow test drives the real commands as separate processes (the campaign starts a
`fer-hybrid train` child per slice) on a synthetic FER2013 CSV with a tiny model: a run that
completes, a run stopped by `campaign stop` while it trains, then a fresh working folder
(as in a fresh clone) that continues from the committed copy to the end.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pipeline_chain import write_synthetic_csv
from typer.testing import CliRunner

from training.campaign.campaign import CampaignPlan, RunCopy, save_compact
from training.cli import app
from training.core.errors import FerError

TINY = "--model baseline_cnn --batch-size 32 --lr 0.05 --aux none"


def write_plan(folder: Path, runs: list, common: str = TINY) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "campaign.json"
    path.write_text(json.dumps({"format": "fer-hybrid/campaign@1", "common": common,
                                "runs": runs}))
    return path


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=900)


def epochs(run: Path) -> list[int]:
    with open(run / "log.csv") as fh:
        return [int(r["epoch"]) for r in csv.DictReader(fh)]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- refused before anything trains ----------------------------------------------------------


@pytest.mark.parametrize("run, message", [
    ("a: --model alexnet", "run a: unknown model 'alexnet'"),
    ("a: --epochs 2 --frobnicate 3", "run a: No such option: --frobnicate"),
    ("a: --epochs two", "run a: Invalid value for '--epochs'"),
    ("a: --lr -1", "run a: --lr must be > 0"),
    ("a: --robust-aug dusk", "run a: --robust-aug: unknown 'dusk'"),
    ("a: --max-minutes 5", "--max-minutes is set by the campaign itself"),
    ("a b: --epochs 2", "needs --model"),
])
def test_a_bad_run_is_refused_in_one_line_before_training(tmp_path, run, message):
    common = "" if "alexnet" in run else TINY
    if "needs --model" in message:
        common = ""
    plan = write_plan(tmp_path / "store", [run], common)
    result = invoke("campaign", "run", plan, "--max-minutes", 5, "--runs-dir", tmp_path / "runs")
    assert isinstance(result.exception, FerError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "runs" / "a").exists()


def test_a_plan_file_that_is_not_a_plan_is_refused(tmp_path):
    bad = tmp_path / "plan.json"
    for text, message in (("{", "not a readable campaign plan"),
                          ('{"format": "x"}', "not a campaign plan"),
                          ('{"format": "fer-hybrid/campaign@1", "runs": []}', "non-empty"),
                          ('{"format": "fer-hybrid/campaign@1", "common": "--model sepnet", '
                           '"runs": ["a: --seed 1", "a: --seed 2"]}', "two runs are named a")):
        bad.write_text(text)
        with pytest.raises(FerError, match=message):
            CampaignPlan.load(bad)
    with pytest.raises(FerError, match="no such campaign plan"):
        CampaignPlan.load(tmp_path / "missing.json")


def _fake_run(folder: Path, *, seed: int, epoch: int, total: int = 20,
              complete: bool = False) -> Path:
    """A run folder as `train` leaves it (config from the real TrainConfig), minus real weights."""
    from training.fit.train import TrainConfig

    config = TrainConfig(model="baseline_cnn", batch_size=32, lr=0.05, seed=seed, epochs=total,
                         data={"aux": []}).resolved()
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_json()))
    (folder / "best.keras").write_bytes(b"best")
    (folder / "log.csv").write_text("epoch,loss,accuracy,val_loss,val_accuracy,lr,seconds\n" + "".join(
        f"{e},1.5,0.4,1.6,{0.30 + e / 100:.4f},0.05,12.0\n" for e in range(1, epoch + 1)))
    if complete:
        (folder / "metrics.json").write_text(json.dumps({"status": "complete",
                                                         "epochs_run": epoch}))
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / f"train-epoch{epoch:04d}.keras").write_bytes(b"ckpt")
    (folder / "checkpoint" / "state.json").write_text(json.dumps({
        "epoch": epoch, "checkpoint_model": f"train-epoch{epoch:04d}.keras",
        "stop_reason": "completed" if complete else "time_budget"}))
    return folder


def test_a_checkpoint_made_with_other_options_is_refused(tmp_path):
    store = tmp_path / "store"
    plan = write_plan(store, ["a: --seed 3 --epochs 20"])
    _fake_run(store / "a", seed=4, epoch=2)
    result = invoke("campaign", "run", plan, "--max-minutes", 5, "--runs-dir", tmp_path / "runs")
    assert isinstance(result.exception, FerError), result.output
    assert "run a: the checkpoint in" in str(result.exception)
    assert "seed: run has 4, you asked for 3" in str(result.exception)
    assert not (tmp_path / "runs" / "a").exists()


# -- the compact copy and the status table -----------------------------------------------------


def test_the_compact_copy_keeps_one_checkpoint_then_drops_it_when_complete(tmp_path):
    working = _fake_run(tmp_path / "runs" / "a", seed=0, epoch=3)
    (working / "tensorboard").mkdir()
    (working / "predictions").mkdir()
    dest = tmp_path / "store" / "a"
    save_compact(RunCopy.read(working).folder, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "best.keras", "checkpoint/state.json", "checkpoint/train-epoch0003.keras",
        "config.json", "log.csv"]
    # the next slice replaces the copy: the older checkpoint does not stay behind
    (working / "checkpoint" / "train-epoch0003.keras").unlink()
    (working / "checkpoint" / "train-epoch0005.keras").write_bytes(b"ckpt5")
    state = json.loads((working / "checkpoint" / "state.json").read_text())
    (working / "checkpoint" / "state.json").write_text(json.dumps(
        {**state, "epoch": 5, "checkpoint_model": "train-epoch0005.keras"}))
    save_compact(RunCopy.read(working).folder, dest)
    assert [p.name for p in (dest / "checkpoint").iterdir()] != []
    assert not (dest / "checkpoint" / "train-epoch0003.keras").exists()
    assert RunCopy.read(dest).epoch == 5
    (working / "metrics.json").write_text(json.dumps({"status": "complete", "epochs_run": 6}))
    save_compact(RunCopy.read(working).folder, dest)
    assert not (dest / "checkpoint").exists() and (dest / "metrics.json").is_file()
    assert RunCopy.read(dest).complete
    assert [p.name for p in dest.parent.iterdir()] == ["a"]  # no temporary folders left


def test_status_shows_each_runs_state_epoch_best_and_eta(tmp_path):
    store = tmp_path / "store"
    plan = write_plan(store, ["done: --seed 0 --epochs 4", "half: --seed 1 --epochs 10",
                              "later: --seed 2 --epochs 10"])
    _fake_run(store / "done", seed=0, epoch=4, total=4, complete=True)
    _fake_run(store / "half", seed=1, epoch=4, total=10)
    _fake_run(tmp_path / "runs" / "half", seed=1, epoch=6, total=10)  # trained on since the commit
    result = invoke("campaign", "status", plan, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert "complete" in lines["done"] and "4/4" in lines["done"] and "34.00 % @4" in lines["done"]
    assert "paused (working copy ahead)" in lines["half"] and "6/10" in lines["half"]
    assert "36.00 % @6" in lines["half"] and "1 min" in lines["half"]  # 4 epochs x 12 s
    assert "not started" in lines["later"] and "0/10" in lines["later"]
    assert "2 min" in lines["later"]  # 10 epochs at the pace of the same model
    assert "not yet in" in result.output and "half" in result.output.splitlines()[-1]


# -- the whole flow, as separate processes -----------------------------------------------------


@pytest.mark.slow
def test_run_stop_and_continue_from_the_committed_copy(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    write_synthetic_csv(csv_path, n_train=192, n_val=64, n_test=32)  # epochs of ~1 s
    store, runs = tmp_path / "store", tmp_path / "runs"
    common = f"{TINY} --fer2013 {csv_path} --data-dir {tmp_path}"
    plan = write_plan(store, ["first: --epochs 2 --seed 0",
                              {"run": "second: --epochs 8 --patience 8 --seed 1", "why": "long"}], common)

    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "campaign", "run", str(plan),
                             "--max-minutes", "20", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = runs / "second" / "log.csv"
    t0 = time.monotonic()
    while not (log.is_file() and epochs(runs / "second")) and proc.poll() is None:
        assert time.monotonic() - t0 < 600, "the second run never trained an epoch"
        time.sleep(0.5)
    stop = cli("campaign", "stop", plan, "--runs-dir", runs)
    out = proc.communicate(timeout=600)[0]
    assert stop.returncode == 0 and "to stop at its next epoch boundary" in stop.stdout, stop
    assert proc.returncode == 0, out[-3000:]
    assert "first: epoch 2 (complete); compact copy saved" in out

    first, second = RunCopy.read(store / "first"), RunCopy.read(store / "second")
    assert first.complete and not (store / "first" / "checkpoint").exists()
    assert json.loads((store / "first" / "metrics.json").read_text())["status"] == "complete"
    assert second.resumable and 1 <= second.epoch < 8 and second.stop_reason == "stop_requested"
    stopped_at = second.epoch
    assert len(list((store / "second" / "checkpoint").glob("*.keras"))) == 1
    status = cli("campaign", "status", plan, "--runs-dir", runs)
    assert "paused" in status.stdout and f"{stopped_at}/8" in status.stdout

    # A fresh clone: no working folders, only what was committed beside the plan.
    subprocess.run(["rm", "-rf", str(runs)], check=True)
    again = cli("campaign", "run", plan, "--max-minutes", 20, "--runs-dir", runs)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"second: continuing from the committed copy (epoch {stopped_at})" in again.stdout
    assert "every run of the plan is complete" in again.stdout
    assert epochs(store / "second") == list(range(1, 9))  # each epoch once, none lost
    assert RunCopy.read(store / "second").complete
    assert not (store / "second" / "checkpoint").exists()
    status = cli("campaign", "status", plan, "--runs-dir", runs).stdout
    assert status.count("complete") == 2


@pytest.mark.slow
def test_a_killed_campaign_takes_its_child_along_and_loses_at_most_an_epoch(tmp_path):
    csv_path = tmp_path / "fer2013.csv"
    write_synthetic_csv(csv_path, n_train=192, n_val=64, n_test=32)  # epochs of ~1 s
    store, runs = tmp_path / "store", tmp_path / "runs"
    plan = write_plan(store, ["only: --epochs 60 --patience 60"],
                      f"{TINY} --fer2013 {csv_path} --data-dir {tmp_path}")
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "campaign", "run", str(plan),
                             "--max-minutes", "20", "--runs-dir", str(runs)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while RunCopy.read(runs / "only").epoch < 2:  # checkpointed epochs
        assert proc.poll() is None and time.monotonic() - t0 < 600
        time.sleep(0.2)
    proc.terminate()  # SIGTERM, as `kill PID` sends
    assert proc.wait(timeout=60) != 0
    assert not (runs / "campaign.pid").exists()
    trained = epochs(runs / "only")
    time.sleep(5)
    assert epochs(runs / "only") == trained  # no orphaned child trains on
    assert trained[-1] < 60

    status = cli("campaign", "status", plan, "--runs-dir", runs).stdout
    assert "paused (working copy ahead)" in status
    saved = cli("campaign", "stop", plan, "--runs-dir", runs)
    assert "no campaign is running" in saved.stdout
    # the checkpoint is at most the epoch in progress behind the last logged epoch
    assert RunCopy.read(store / "only").epoch >= trained[-1] - 1 >= 0
