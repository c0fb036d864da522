"""The CPU training campaign: a committed plan of runs that trains one run at a time, in the
background of every session, and survives any interruption.

    nice -n 10 fer-hybrid campaign run training/checkpoints/campaign.json --max-minutes 240 &
    fer-hybrid campaign status training/checkpoints/campaign.json
    fer-hybrid campaign stop training/checkpoints/campaign.json   # at the next epoch boundary

The plan (`CampaignPlan`, JSON) lists runs in the GPU plan's member format ("NAME: TRAIN
OPTIONS", `training.gpu.plan.parse_member`) after options they all share. Each run trains in
`<runs_dir>/<name>/` (the working folder, not committed) and, whenever a slice of it stops,
its compact part is copied to `<the plan's folder>/<name>/` (committed: config, log, best
model, the last epoch's training checkpoint; a completed run drops the checkpoint and adds
metrics.json). A slice resumes from whichever of the two copies is further along, so a
fresh clone continues from the committed copy and a killed process from its working folder;
the training checkpoint is written every epoch, so a kill loses at most the epoch in
progress.

Every run of the plan is checked before anything trains (`check_plan`): its options parse as
`fer-hybrid train` options, name a known model and valid values, and an existing checkpoint
was made with the same configuration. Each slice is a `fer-hybrid train` child process (a
fresh TensorFlow per run; its console goes to `<runs_dir>/<name>.out` and to this process's
output); `status` reads only small files and never loads Keras.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contract.files import atomic_write
from training.core.errors import FerError
from training.core.runs import PAUSED, RunFolder
from training.gpu.plan import PlannedMember, parse_member

FORMAT = "fer-hybrid/campaign@1"
# Options the campaign sets on each slice itself; a run of the plan must not set them.
CAMPAIGN_OWNED = ("--name", "--runs-dir", "--resume", "--max-minutes", "--stop-file",
                  "--checkpoint-minutes", "--verbose", "--schedule-minutes")
# A slice shorter than this would spend its time loading data and building the model.
MIN_SLICE_MINUTES = 4.0
# The compact part of a run folder that travels with the repository.
COMPACT_FILES = ("config.json", "log.csv", "history.png", "best.keras")


@dataclass
class CampaignPlan:
    """The plan file: shared options, then the runs in the order they train."""

    path: Path
    common: str
    runs: list[PlannedMember]
    why: dict[str, str] = field(default_factory=dict)  # run name -> the reason it is planned

    @property
    def store(self) -> Path:
        """Where the runs' compact copies are committed: the plan's own folder."""
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> CampaignPlan:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise FerError(f"{path}: no such campaign plan") from None
        except (OSError, ValueError) as err:
            raise FerError(f"{path}: not a readable campaign plan ({err})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise FerError(f"{path}: not a campaign plan (format "
                           f"{d.get('format') if isinstance(d, dict) else None!r}, expected "
                           f"{FORMAT!r})")
        common = d.get("common", "")
        entries = d.get("runs")
        if not isinstance(common, str) or not isinstance(entries, list) or not entries:
            raise FerError(f"{path}: needs \"common\" (a string of train options) and \"runs\" "
                           f"(a non-empty list)")
        runs, why = [], {}
        for i, entry in enumerate(entries, 1):
            spec = entry.get("run") if isinstance(entry, dict) else entry
            if not isinstance(spec, str):
                raise FerError(f"{path}: run {i} is not \"NAME: TRAIN OPTIONS\" (or an object "
                               f"with \"run\" and \"why\")")
            try:
                member = parse_member(spec, common, owned=CAMPAIGN_OWNED,
                                      owner="the campaign", label="run")
            except FerError as err:
                raise FerError(f"{path}: {err}") from None
            runs.append(member)
            if isinstance(entry, dict) and entry.get("why"):
                why[member.name] = str(entry["why"])
        names = [r.name for r in runs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FerError(f"{path}: two runs are named {', '.join(dupes)}")
        return cls(path=path, common=common, runs=runs, why=why)


# -- where a run stands ----------------------------------------------------------------------


@dataclass
class RunCopy:
    """One copy of a run (the working folder or the committed one) and how far it got."""

    folder: RunFolder
    epoch: int = 0  # epochs its checkpoint (or its completed log) holds
    complete: bool = False
    resumable: bool = False  # holds a training checkpoint
    stop_reason: str | None = None

    @classmethod
    def read(cls, path: Path) -> RunCopy:
        folder = RunFolder(path)
        copy = cls(folder)
        if not folder.config.is_file():
            return copy
        metrics = _read_json(folder.metrics)
        if metrics.get("status") == "complete":
            copy.complete = True
            copy.epoch = int(metrics.get("epochs_run") or len(read_log(folder.log_csv)))
            copy.stop_reason = metrics.get("stop_reason")
            return copy
        state = _read_json(folder.state)
        name = state.get("checkpoint_model")
        if name and (folder.checkpoint_dir / name).is_file():
            copy.resumable = True
            copy.epoch = int(state.get("epoch") or 0)
            copy.stop_reason = state.get("stop_reason")
        return copy

    @property
    def started(self) -> bool:
        return self.complete or self.resumable


@dataclass
class RunStatus:
    member: PlannedMember
    working: RunCopy
    committed: RunCopy
    epochs: int | None  # the run's total (from its config, else its options)
    log: list[dict]  # the further copy's log.csv rows

    @property
    def ahead(self) -> RunCopy:
        """The copy a slice continues from: the further one (the working one on a tie)."""
        w, c = self.working, self.committed
        if c.complete and not w.complete:
            return c
        return w if (w.complete or w.epoch >= c.epoch) and w.started else c

    @property
    def complete(self) -> bool:
        return self.ahead.complete

    @property
    def unsaved(self) -> bool:
        """The working folder holds epochs the committed copy lacks."""
        w, c = self.working, self.committed
        return w.started and (w.epoch > c.epoch or (w.complete and not c.complete))

    @property
    def epoch(self) -> int:
        return self.ahead.epoch

    def best(self) -> tuple[float, int] | None:
        rows = [r for r in self.log if r.get("val_accuracy")]
        if not rows:
            return None
        top = max(rows, key=lambda r: float(r["val_accuracy"]))
        return float(top["val_accuracy"]), int(top["epoch"])

    def seconds_per_epoch(self) -> float | None:
        """Median of the last ten epochs (the first epoch of a slice carries the start-up)."""
        secs = [float(r["seconds"]) for r in self.log[-10:] if r.get("seconds")]
        return statistics.median(secs) if secs else None


def read_log(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as fh:
            return [r for r in csv.DictReader(fh) if r.get("epoch")]
    except FileNotFoundError:
        return []


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def run_status(plan: CampaignPlan, member: PlannedMember, runs_dir: Path) -> RunStatus:
    working = RunCopy.read(runs_dir / member.name)
    committed = RunCopy.read(plan.store / member.name)
    status = RunStatus(member, working, committed, None, [])
    ahead = status.ahead
    status.log = [r for r in read_log(ahead.folder.log_csv) if int(r["epoch"]) <= ahead.epoch] \
        if ahead.started else []
    config = _read_json(ahead.folder.config) if ahead.started else {}
    status.epochs = config.get("epochs") or _option(member.args, "--epochs", int)
    return status


def _option(args: list[str], flag: str, kind: Callable = str):
    value = None
    for i, a in enumerate(args[:-1]):
        if a == flag:
            value = args[i + 1]
    try:
        return kind(value) if value is not None else None
    except ValueError:  # reported by the option check, with the option's name
        return None


# -- checking the plan before anything trains ------------------------------------------------

#: A `fer-hybrid train` command line's TrainConfig fields (FerError for an unknown option or a
#: bad value). The command hands it in (`training.commands.train.train_fields`): the options
#: are the command line's, and a stage never imports the commands above it.
TrainFields = Callable[[list[str]], dict]


def planned_config(member: PlannedMember, runs_dir: Path, train_fields: TrainFields):
    """The TrainConfig the run's options give, checked as `train` checks a new run."""
    from training.fit.train import TrainConfig, prepare_run

    fresh = Path(runs_dir) / f".campaign-check-{member.name}"  # never created
    try:
        given = train_fields(list(member.args))
        config, _ = prepare_run(TrainConfig(**given), RunFolder(fresh))
    except FerError as err:
        raise FerError(f"run {member.name}: {err}") from None
    return config


def check_copy(member: PlannedMember, copy: RunCopy, planned) -> None:
    """FerError unless the checkpoint in `copy` was made with the run's planned options."""
    from training.fit.train import RESUME_MUTABLE, TrainConfig, config_conflicts

    try:
        saved = TrainConfig.from_json(_read_json(copy.folder.config)).resolved()
    except TypeError as err:
        raise FerError(f"run {member.name}: {copy.folder.config} is not a run configuration "
                       f"({err})") from None
    ignore = (*RESUME_MUTABLE, "soft_targets_sha256")
    conflicts = [c for c in config_conflicts(saved, planned) if c.split(":")[0] not in ignore]
    if planned.soft_targets_sha256 and saved.soft_targets_sha256 != planned.soft_targets_sha256:
        conflicts.append(f"soft targets: {planned.soft_targets} is not the file the run "
                         f"started with")
    if conflicts:
        raise FerError(f"run {member.name}: the checkpoint in {copy.folder.path} does not match "
                       f"the plan ({'; '.join(conflicts)}); fix the plan or rename the run")


def check_plan(plan: CampaignPlan, runs_dir: Path, train_fields: TrainFields) -> list[RunStatus]:
    """Every run's options and checkpoints checked (FerError, one line); their statuses."""
    statuses = []
    for member in plan.runs:
        status = run_status(plan, member, runs_dir)
        if not status.complete:
            planned = planned_config(member, runs_dir, train_fields)
            for copy in (status.working, status.committed):
                if copy.started:
                    check_copy(member, copy, planned)
        statuses.append(status)
    return statuses


# -- the compact committed copy --------------------------------------------------------------


def save_compact(working: RunFolder, dest: Path) -> Path:
    """Replace `dest` with the compact part of the working run folder: config, log, history,
    best model, and either the last training checkpoint (a run to continue) or, for a
    completed run, metrics.json instead (nothing left to resume). Built beside `dest`, then
    swapped in, so a crash leaves the old copy or the new one."""
    complete = _read_json(working.metrics).get("status") == "complete"
    tmp = dest.with_name(f".tmp-{dest.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "checkpoint").mkdir(parents=True)
    for name in COMPACT_FILES:
        if (working.path / name).is_file():
            shutil.copy2(working.path / name, tmp / name)
    if complete:
        shutil.copy2(working.metrics, tmp / "metrics.json")
        (tmp / "checkpoint").rmdir()
    else:
        state = _read_json(working.state)
        model = working.checkpoint_dir / str(state.get("checkpoint_model"))
        if not model.is_file():
            shutil.rmtree(tmp)
            raise FerError(f"{working.path}: no training checkpoint to save")
        shutil.copy2(working.state, tmp / "checkpoint" / "state.json")
        shutil.copy2(model, tmp / "checkpoint" / model.name)
    old = dest.with_name(f".old-{dest.name}")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def restore_working(committed: RunFolder, working: Path) -> None:
    """Start the working folder again from the committed copy (a fresh clone, or a working
    folder behind it); what the working folder had is replaced."""
    shutil.rmtree(working, ignore_errors=True)
    shutil.copytree(committed.path, working)


# -- running ---------------------------------------------------------------------------------


def stop_file(plan: CampaignPlan, runs_dir: Path) -> Path:
    return Path(runs_dir) / f"{plan.path.stem}.stop"


def pid_file(plan: CampaignPlan, runs_dir: Path) -> Path:
    return Path(runs_dir) / f"{plan.path.stem}.pid"


def running_pid(plan: CampaignPlan, runs_dir: Path) -> tuple[int, str] | None:
    """(pid, run) of a `campaign run` of this plan that is alive, else None."""
    d = _read_json(pid_file(plan, runs_dir))
    pid = d.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid, str(d.get("run", ""))


@contextlib.contextmanager
def holding_lock(plan: CampaignPlan, runs_dir: Path):
    """One `campaign run` per plan at a time (two would train the same run twice)."""
    live = running_pid(plan, runs_dir)
    if live and live[0] != os.getpid():
        raise FerError(f"this plan is already training (pid {live[0]}, run {live[1]}); "
                       f"`fer-hybrid campaign stop {plan.path}` ends it at an epoch boundary")
    path = pid_file(plan, runs_dir)
    atomic_write(path, json.dumps({"pid": os.getpid(), "run": ""}))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def slice_command(member: PlannedMember, runs_dir: Path, *, resume: bool, minutes: float,
                  stop: Path, python: str = sys.executable) -> list[str]:
    """The `fer-hybrid train` child of one slice: the run's own options (the child checks a
    resumed run's configuration against them too), a training checkpoint every epoch."""
    return [python, "-m", "training.cli", "train", *member.args, "--name", member.name,
            "--runs-dir", str(runs_dir), *(["--resume"] if resume else []),
            "--max-minutes", f"{minutes:.2f}", "--checkpoint-minutes", "0",
            "--stop-file", str(stop), "--verbose", "2"]


def run_campaign(plan: CampaignPlan, runs_dir: Path, *, max_minutes: float,
                 train_fields: TrainFields, printer: Callable = print,
                 python: str = sys.executable) -> list[str]:
    """Train the plan's unfinished runs in order until the deadline or a stop request; each
    slice's compact copy is saved when it stops. Returns the names of the runs it trained."""
    t0 = time.monotonic()
    deadline = t0 + 60.0 * max_minutes
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stop = stop_file(plan, runs_dir)
    stop.unlink(missing_ok=True)  # a request was for the process it stopped
    trained: list[str] = []
    with holding_lock(plan, runs_dir) as lock, terminate_children():
        statuses = check_plan(plan, runs_dir, train_fields)
        for status in statuses:
            if status.unsaved:  # a slice that was killed, or stopped before this command
                save_compact(status.working.folder, plan.store / status.member.name)
                printer(f"{status.member.name}: saved the working folder's epochs "
                        f"(to {status.working.epoch}) to {plan.store / status.member.name}")
        for status in statuses:
            if status.complete:
                continue
            minutes = (deadline - time.monotonic()) / 60.0
            if stop.exists():
                printer(f"stop requested ({stop}): not starting {status.member.name}")
                break
            if minutes < MIN_SLICE_MINUTES:
                printer(f"{minutes:.1f} min left: too little for a slice of "
                        f"{status.member.name}; stopping here")
                break
            name = status.member.name
            working = runs_dir / name
            if status.ahead is status.committed and status.committed.started:
                restore_working(status.committed.folder, working)
                printer(f"{name}: continuing from the committed copy (epoch "
                        f"{status.committed.epoch})")
            resume = RunCopy.read(working).resumable
            if not resume and working.exists():
                # A slice that failed before its first checkpoint: nothing trained to keep.
                shutil.rmtree(working)
                printer(f"{name}: removed {working} (it holds no checkpoint: the last slice "
                        f"stopped before its first epoch ended)")
            atomic_write(lock, json.dumps({"pid": os.getpid(), "run": name}))
            cmd = slice_command(status.member, runs_dir, resume=resume, minutes=minutes,
                                stop=stop, python=python)
            printer(f"{name}: {'resuming after epoch ' + str(status.epoch) if resume else 'starting'}"
                    f" for at most {minutes:.0f} min: {shlex.join(cmd[2:])}")
            code = _run_child(cmd, runs_dir / f"{name}.out", printer)
            after = RunCopy.read(working)
            if after.started:
                save_compact(after.folder, plan.store / name)
                printer(f"{name}: epoch {after.epoch}"
                        f"{' (complete)' if after.complete else ''}; compact copy saved to "
                        f"{plan.store / name}")
            trained.append(name)
            if code != 0:
                raise FerError(f"{name}: `fer-hybrid train` exited with status {code} (its "
                               f"output: {runs_dir / f'{name}.out'}); the campaign stops here")
            if not after.complete:
                if after.stop_reason not in PAUSED:
                    printer(f"{name}: stopped ({after.stop_reason}) before its last epoch")
                break  # the deadline or a stop request ended this slice
        else:
            printer("every run of the plan is complete")
    stop.unlink(missing_ok=True)
    return trained


# TensorFlow's C++ start-up lines and Keras' own per-epoch lines: kept in the slice's log
# file, not echoed (the child's epoch lines say it all).
NOISE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EWI] |[EWI]\d{4} |WARNING: All log "
                   r"messages|Epoch \d+/\d+$|\d+/\d+ - \d+s )")


def _run_child(cmd: list[str], log: Path, printer: Callable) -> int:
    """Run one slice, its console appended to `log` and its epoch lines echoed."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a") as fh:
        fh.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC: "
                 f"{shlex.join(cmd[2:])}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env)
        try:
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                if not NOISE.match(line):
                    printer(line.rstrip())
        except BaseException:  # Ctrl-C or a kill of this process: the child goes too
            proc.terminate()
            proc.wait()
            raise
        return proc.wait()


@contextlib.contextmanager
def terminate_children():
    """SIGTERM (`kill PID`) ends this process through the exception path, so the slice's
    child is terminated with it instead of training on unwatched (and the lock is freed)."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- the status table ------------------------------------------------------------------------


def status_rows(plan: CampaignPlan, statuses: list[RunStatus], runs_dir: Path) -> list[list]:
    live = running_pid(plan, runs_dir)
    # A run not started yet is timed by the pace of a started run of the same model.
    pace = {}
    for s in statuses:
        if s.seconds_per_epoch():
            pace.setdefault(_option(s.member.args, "--model"), s.seconds_per_epoch())
    rows = []
    for s in statuses:
        best = s.best()
        spe = s.seconds_per_epoch() or pace.get(_option(s.member.args, "--model"))
        left = max(0, (s.epochs or 0) - s.epoch)
        if s.complete:
            state = "complete"
        elif live and live[1] == s.member.name:
            state = "training now"
        elif s.ahead.started:
            state = "paused"
        else:
            state = "not started"
        if s.unsaved and state == "paused":
            state += " (working copy ahead)"
        rows.append([
            s.member.name, _option(s.member.args, "--model") or "?", state,
            f"{s.epoch}/{s.epochs}" if s.epochs else str(s.epoch),
            f"{100 * best[0]:.2f} % @{best[1]}" if best else "-",
            (f"{spe:.0f}" if s.seconds_per_epoch() else f"~{spe:.0f}") if spe else "-",
            "-" if s.complete else (_duration(spe * left) if spe else "?"),
        ])
    return rows


STATUS_HEADERS = ("run", "model", "state", "epoch", "best PublicTest", "s/epoch", "ETA")


def _duration(seconds: float) -> str:
    h, m = divmod(int(round(seconds / 60)), 60)
    return f"{h}h{m:02d}" if h else f"{m} min"
