"""Run-folder bookkeeping for training: atomic saves, resumable state, time budget.

`RunMonitor` is the one callback that owns the run folder during `fit`. It does
the work of ReduceLROnPlateau + EarlyStopping + ModelCheckpoint + CSVLogger, but
keeps all of their counters in one JSON-serialisable `state` dict, so a resumed
run continues exactly where it stopped (Keras' own callbacks forget theirs).

The training checkpoint (the whole training model with its optimizer state: large for big
models) is written when `checkpoint_s` seconds have passed since the last one, and always
when the run stops (completed, early stop, time budget); best.keras on every improvement.
A resume continues from the last checkpoint and re-trains the epochs after it
(`truncate_log` drops their rows from log.csv first). state.json always holds the counters
of the checkpoint it names, except best_val_accuracy/best_epoch, which describe the
best.keras on disk (rewritten with each new best), so a resumed run only replaces
best.keras with a better model and reports the one it ships.

Every file that matters is written atomically: to a temporary file in the same
folder, then `os.replace`d over the target, so a crash (or a killed GPU slice)
never leaves a half-written best.keras or checkpoint behind.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import time
from pathlib import Path

import keras

from contract.files import atomic_output, atomic_write
from training.core.runs import RunFolder
from training.fit.schedules import progress_lr, scheduled_lr, time_progress

LOG_FIELDS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def _write_keras(model: keras.Model, path: Path) -> None:
    model.save(str(path))


def atomic_save_model(model: keras.Model, path: Path) -> None:
    """model.save to a temporary sibling, then replace `path` with it."""
    with atomic_output(path) as tmp:
        _write_keras(model, tmp)


def truncate_log(path: Path, epoch: int) -> int:
    """Drop the rows of log.csv after `epoch` (epochs a resume re-trains); return how many."""
    if not path.is_file():
        return 0
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if r.get("epoch") and int(r["epoch"]) <= epoch]
    if len(keep) == len(rows):
        return 0
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LOG_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: r.get(k, "") for k in LOG_FIELDS} for r in keep)
    atomic_write(path, out.getvalue())
    return len(rows) - len(keep)


def get_lr(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class RunMonitor(keras.callbacks.Callback):
    """Logs, tracks the best model, halves the lr on plateaus, stops early, checkpoints.

    Args:
      run: the run folder (log.csv, best.keras, checkpoint/ live there).
      core: the model to save as best.keras (the training model minus the augmenter).
      state: resumable counters (see `training.core.runs.initial_state`); updated in place and saved
        every epoch.
      epochs: total epochs of the run.
      patience: epochs without a val_accuracy improvement before stopping.
      lr_patience / lr_factor / min_lr: ReduceLROnPlateau on val_accuracy.
      deadline: `time.monotonic()` value by which training must have stopped (None: no budget).
      reserve_s: seconds kept free before the deadline for the final predictions.
      adjust_lr: False when an lr schedule (EpochLRSchedule) owns the lr,
        so the plateau rule does not fight it (the counters are still kept).
      checkpoint_s: seconds between training checkpoints (0: every epoch); one is always
        written when the run stops.
      schedule_s: the lr schedule is stretched over this many seconds of training
        (`--schedule-minutes`): the run is complete once the next epoch would not fit.
      stop_file: when this file exists at the end of an epoch, the run stops there, as at a
        deadline (`--stop-file`: how `fer-hybrid campaign stop` ends a background run
        without losing the epoch in progress).
    """

    def __init__(self, run: RunFolder, core: keras.Model, state: dict, *, epochs: int,
                 patience: int, lr_patience: int, lr_factor: float, min_lr: float,
                 deadline: float | None = None, reserve_s: float = 0.0, printer=print,
                 adjust_lr: bool = True, checkpoint_s: float = 0.0,
                 schedule_s: float | None = None, stop_file: Path | None = None):
        super().__init__()
        self.run = run
        self.core = core
        self.state = state
        self.epochs = int(epochs)
        self.patience = int(patience)
        self.lr_patience = int(lr_patience)
        self.lr_factor = float(lr_factor)
        self.min_lr = float(min_lr)
        self.deadline = deadline
        self.reserve_s = float(reserve_s)
        self.printer = printer
        self.adjust_lr = bool(adjust_lr)
        self._epoch_t0 = 0.0
        self._durations: list[float] = []
        self.checkpoint_s = float(checkpoint_s)
        self.schedule_s = schedule_s
        self.stop_file = Path(stop_file) if stop_file is not None else None
        self._last_checkpoint = time.monotonic()  # the run (or resume) starts from one
        self._checkpointed = copy.deepcopy(state)  # the state the checkpoint on disk holds

    # -- helpers ---------------------------------------------------------------
    def _append_log(self, row: dict) -> None:
        path = self.run.log_csv
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
            fh.flush()
            os.fsync(fh.fileno())

    def save_checkpoint(self) -> None:
        """Training model (weights + optimizer) then state.json, both atomic and consistent:
        the state names the model file it belongs to; older model files are removed after."""
        path = self.run.checkpoint_model(self.state["epoch"])
        atomic_save_model(self.model, path)
        self.state["checkpoint_model"] = path.name
        self.run.write_state(self.state)
        self._checkpointed = copy.deepcopy(self.state)
        self._last_checkpoint = time.monotonic()
        for old in self.run.checkpoint_models():
            if old != path:
                old.unlink(missing_ok=True)

    def _checkpoint_due(self) -> bool:
        return (self.state["stop_reason"] is not None or self.checkpoint_s <= 0
                or time.monotonic() - self._last_checkpoint >= self.checkpoint_s)

    def _record_best(self) -> None:
        """A new best.keras between checkpoints: state.json keeps the checkpoint's counters
        but names the best model now on disk (nothing to record before a first checkpoint)."""
        if self._checkpointed.get("checkpoint_model"):
            self._checkpointed["best_val_accuracy"] = self.state["best_val_accuracy"]
            self._checkpointed["best_epoch"] = self.state["best_epoch"]
            self.run.write_state(self._checkpointed)

    # -- Keras hooks -----------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_t0 = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.monotonic() - self._epoch_t0
        self._durations.append(seconds)
        st = self.state
        done = epoch + 1
        lr = get_lr(self.model)
        self._append_log({**{k: f"{float(v):.6f}" for k, v in logs.items() if k in LOG_FIELDS},
                          "epoch": done, "lr": f"{lr:.6g}", "seconds": f"{seconds:.2f}"})
        st["epoch"] = done
        st["train_seconds"] = float(st["train_seconds"]) + seconds

        val_acc = float(logs.get("val_accuracy", float("nan")))
        best = st["best_val_accuracy"]
        note = ""
        if best is None or val_acc > best:
            st["best_val_accuracy"], st["best_epoch"] = val_acc, done
            st["plateau_wait"] = st["early_stop_wait"] = 0
            atomic_save_model(self.core, self.run.best_model)
            note = " (new best, saved best.keras)"
        else:
            st["plateau_wait"] += 1
            st["early_stop_wait"] += 1
            if self.adjust_lr and st["plateau_wait"] >= self.lr_patience:
                new_lr = max(lr * self.lr_factor, self.min_lr)
                st["plateau_wait"] = 0
                if new_lr < lr:
                    self.model.optimizer.learning_rate = new_lr
                    note = f" (val_accuracy stalled {self.lr_patience} epochs: lr {lr:.3g} -> {new_lr:.3g})"
                    lr = new_lr
        st["lr"] = lr

        if done >= self.epochs:
            st["stop_reason"] = "completed"
        elif st["early_stop_wait"] >= self.patience:
            st["stop_reason"] = "early_stopping"
            note += f" (no val_accuracy gain for {self.patience} epochs: early stopping)"
        elif (self.schedule_s and
              float(st["train_seconds"]) + self._durations[-1] > self.schedule_s):
            # The last epoch's time, not the max of the last three: the first epoch carries
            # the compilation, and one epoch too many here only overshoots the schedule's end.
            st["stop_reason"] = "completed"
            note += (f" (the schedule's {self.schedule_s / 60:g} minutes of training are used: "
                     f"run complete)")
        elif self.stop_file is not None and self.stop_file.exists():
            st["stop_reason"] = "stop_requested"
            note += f" ({self.stop_file} exists: stopping at this epoch boundary)"
        elif self.deadline is not None:
            next_epoch = max(self._durations[-3:]) * 1.15
            if time.monotonic() + next_epoch + self.reserve_s > self.deadline:
                st["stop_reason"] = "time_budget"
                note += " (time budget nearly used: stopping at this epoch boundary)"
        if st["stop_reason"] is not None:
            self.model.stop_training = True

        if self._checkpoint_due():
            self.save_checkpoint()
            note += " (checkpoint saved)" if self.checkpoint_s > 0 else ""
        elif st["best_epoch"] == done:
            self._record_best()

        avg = sum(self._durations[-5:]) / len(self._durations[-5:])
        left = max(0, self.epochs - done)
        self.printer(
            f"epoch {done}/{self.epochs}  loss {logs.get('loss', float('nan')):.4f}  "
            f"acc {logs.get('accuracy', float('nan')):.4f}  val_acc {val_acc:.4f}  "
            f"best {st['best_val_accuracy']:.4f}@{st['best_epoch']}  lr {lr:.3g}  "
            f"{seconds:.1f}s/epoch  ETA {_fmt_duration(avg * left)} (at most){note}"
        )


    def on_train_end(self, logs=None):
        # fit also ends when another callback stops it: never leave trained epochs behind
        # without a checkpoint (a crash, which skips this hook, loses them: they re-train).
        if self.state["epoch"] > (self._checkpointed.get("epoch") or 0):
            self.save_checkpoint()


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class EpochLRSchedule(keras.callbacks.Callback):
    """Sets the optimizer's lr at each epoch start from `scheduled_lr`.

    A per-epoch callback rather than a LearningRateSchedule object: `fit(initial_epoch=k)`
    hands it the absolute epoch, so resume needs no extra state, and RunMonitor's
    `get_lr` keeps reading a plain float.

    minutes/state: stretch the schedule over `minutes` of training (`time_progress`, read
    from the run's `state`, which RunMonitor updates at each epoch end).
    """

    def __init__(self, kind: str, *, base_lr: float, epochs: int, min_lr: float = 0.0,
                 minutes: float | None = None, state: dict | None = None):
        super().__init__()
        self.kind, self.base_lr, self.epochs, self.min_lr = kind, base_lr, epochs, min_lr
        self.minutes, self.state = minutes, state

    def on_epoch_begin(self, epoch, logs=None):
        if self.minutes:
            lr = progress_lr(self.kind, time_progress(self.state, epoch, self.epochs,
                                                      self.minutes),
                             base_lr=self.base_lr, min_lr=self.min_lr)
        else:
            lr = scheduled_lr(self.kind, epoch, base_lr=self.base_lr, epochs=self.epochs,
                              min_lr=self.min_lr)
        self.model.optimizer.learning_rate = lr
