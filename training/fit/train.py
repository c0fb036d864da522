"""The training loop: a resumable run folder, a time budget.

    from training.fit.train import TrainConfig, train
    metrics = train(TrainConfig(model="baseline_cnn", epochs=30), splits, "runs/baseline")

`splits` maps "train"/"val" (and optionally "test") to `training.data.Dataset`
objects or `(x, y)` pairs of uint8 (N, 48, 48) images and int labels.

Defaults (the paper's recipe, except where a model's own defaults differ: sepnet trains with
AdamW, `training.models.registry.DEFAULTS`): SGD with momentum 0.9, batch 128, decoupled
weight decay 1e-4, per-model learning rate (`training.models.get_defaults`), lr halved when
val_accuracy has not improved for 10 epochs, early stopping after `patience`
epochs without improvement, class weights inversely proportional to class
frequency, in-graph flip/rotate/zoom/shift augmentation, fixed seeds. Every training batch
is full (`training.fit.batches`: the remainder is left out of each epoch, with a new shuffle
every epoch) and validation runs on padded fixed-shape batches (`training.fit.validation`), so
XLA compiles each step once; `precision="bf16"` trains in mixed precision
(`training.fit.precision`); `checkpoint_minutes` spaces out the training checkpoints.

It writes a run folder (`training.core.runs`: config.json, log.csv, best.keras, checkpoint/,
metrics.json, predictions/, history.png). `prepare_run` makes every check that can fail
before the data is loaded; the `fer-hybrid train` command calls it, loads the data the
configuration names, then `train_prepared`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import INPUT_SHAPE, NUM_CLASSES
from contract.files import remove_stale_tmp
from training.core.errors import FerError
from training.core.metrics import top1_accuracy
from training.core.plots import plot_history
from training.core.runs import PAUSED, RunFolder, initial_state, save_predictions
from training.fit.precision import check_precision, dtype_policy
from training.models.serialization import load_model

log = logging.getLogger(__name__)

# Options that may differ between the original run and a `--resume` of it
# (`distribute` and `checkpoint_minutes` are about the machine, not the run: resume on one
# device or many, on a machine with a fast disk or a slow one; `soft_targets` is where the
# file lies on this machine: its content is pinned by sha256; `ferplus` is where the votes
# file lies: its alignment with FER2013 is checked on every load).
RESUME_MUTABLE = ("epochs", "distribute", "checkpoint_minutes", "soft_targets", "ferplus")
OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainConfig:
    """Everything needed to rebuild and resume a run (saved as config.json)."""

    model: str
    model_options: dict = field(default_factory=dict)
    epochs: int | None = None  # None: the model's default
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None  # None: the model's default (1e-4 unless noted)
    momentum: float = 0.9
    patience: int = 20  # early stopping
    lr_patience: int = 10  # ReduceLROnPlateau on val_accuracy
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    class_weights: bool = True
    smote: bool = False
    augment: bool = True
    seed: int = 0
    input_shape: tuple = INPUT_SHAPE
    num_classes: int = NUM_CLASSES
    data: dict = field(default_factory=dict)  # how the data was loaded (for the record / resume)
    # Stronger recipes (training.fit.trainer, training.fit.schedules, training.fit.augment); the
    # defaults are the paper's recipe. New fields need defaults so config.json files of older runs
    # still load and resume.
    label_smoothing: float = 0.0
    schedule: str = "plateau"  # plateau (paper) | cosine | onecycle
    mixup: float = 0.0  # Beta(alpha, alpha) mixup; 0 = off
    random_erasing: float = 0.0  # probability per image; 0 = off
    # Robustness conditions (training.fit.augment_robust): names, stored expanded ("all" -> the
    # names), and the probability each changes an image with.
    robust_aug: list = field(default_factory=list)
    robust_p: float = 0.3
    teachers: list = field(default_factory=list)  # run folders / .keras files (distillation)
    kd_alpha: float = 0.5  # weight of the hard-label loss when teachers are given
    kd_temperature: float = 4.0
    distribute: bool = False  # data-parallel over all local devices
    optimizer: str | None = None  # sgd (paper: momentum, decoupled decay) | adamw; None: model's
    # Offline distillation (training.fit.soft_targets): a file of teacher probabilities instead
    # of live teachers; its sha256 is recorded when the run starts and checked on resume.
    soft_targets: str | None = None
    soft_targets_sha256: str | None = None
    precision: str = "float32"  # float32 | bf16 (mixed_bfloat16 while training; exported float32)
    scale_lr: bool = False  # lr = model's default lr x batch_size / model's default batch size
    checkpoint_minutes: float = 10.0  # training checkpoint at most this often (0: every epoch)
    schedule_minutes: float | None = None  # stretch cosine/onecycle over minutes, not epochs
    # Fine-tuning: the core starts from this trained model's weights (same architecture and
    # options) instead of a random init; the optimizer and the schedule start fresh.
    init_from: str | None = None
    # What the loss trains towards (training.fit.targets): fer2013 | ferplus | mix:A, and where the
    # FER+ votes are (None: fer2013new.csv(.gz) next to the FER2013 data).
    targets: str = "fer2013"
    ferplus: str | None = None

    def resolved(self) -> TrainConfig:
        """A copy with None hyper-parameters filled from the model's training defaults."""
        from training.models import get_defaults

        defaults = get_defaults(self.model)
        batch_size = int(self.batch_size if self.batch_size is not None else defaults.batch_size)
        lr = self.lr
        if lr is None:
            # The linear scaling rule (Goyal et al. 2017): the default lr was tuned for the
            # default batch; a k times larger batch takes k times fewer steps, so k times the
            # lr. Resolved once: the scaled lr is what config.json records.
            lr = defaults.lr * (batch_size / defaults.batch_size if self.scale_lr else 1.0)
        return dataclasses.replace(
            self,
            epochs=int(self.epochs if self.epochs is not None else defaults.epochs),
            batch_size=batch_size,
            lr=float(lr),
            optimizer=self.optimizer or defaults.optimizer,
            weight_decay=float(self.weight_decay if self.weight_decay is not None
                               else defaults.weight_decay),
            model_options={k: v for k, v in self.model_options.items() if v is not None},
            input_shape=tuple(self.input_shape),
            teachers=[str(t) for t in self.teachers],
            robust_aug=_robust_names(self.robust_aug, strict=False),
            targets=_canonical_targets(self.targets),
        )

    @property
    def uses_trainer(self) -> bool:
        """Label smoothing, mixup and distillation need the `training.fit.trainer.Trainer`
        wrapper."""
        return bool(self.label_smoothing or self.mixup or self.teachers or self.soft_targets
                    or self.targets != "fer2013")

    def check(self, *, teachers: bool = True) -> None:
        """FerError for options out of range, options the model does not take, missing files.

        Resume skips the teacher check (teachers=False): the checkpoint already holds them."""
        from training.fit.schedules import SCHEDULES
        from training.models.registry import check_model_options

        # an unknown model, an option it does not take or a value out of range (--width -1):
        # before Keras loads
        check_model_options(self.model, self.model_options, flags=True)
        weights = self.model_options.get("weights")
        if weights is not None and not Path(weights).is_file():
            raise FerError(f"--weights {weights}: no such file")
        for flag, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if value is not None and value < 1:
                raise FerError(f"{flag} must be >= 1 (got {value})")
        if self.lr is not None and self.lr <= 0:
            raise FerError(f"--lr must be > 0 (got {self.lr})")
        sample = self.data.get("sample")
        if sample is not None and sample < 1:
            raise FerError(f"--sample must be >= 1 (got {sample})")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise FerError(f"--optimizer must be one of {', '.join(OPTIMIZERS)} "
                           f"(got {self.optimizer!r})")
        if self.schedule not in SCHEDULES:
            raise FerError(f"--schedule must be one of {', '.join(SCHEDULES)} "
                           f"(got {self.schedule!r})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise FerError(f"--label-smoothing must be in [0, 1) (got {self.label_smoothing}; "
                           f"0.1 is a common value)")
        for flag, v in (("--random-erasing", self.random_erasing), ("--kd-alpha", self.kd_alpha)):
            if not 0.0 <= v <= 1.0:
                raise FerError(f"{flag} must be in [0, 1] (got {v})")
        _robust_names(self.robust_aug)  # FerError listing the valid names
        if not 0.0 <= self.robust_p <= 1.0:
            raise FerError(f"--robust-p must be in [0, 1] (got {self.robust_p})")
        if self.robust_aug and not self.augment:
            raise FerError("--robust-aug adds to the in-graph augmenter, which --no-augment "
                           "turns off; drop one of them")
        if self.robust_p != TrainConfig.robust_p and not self.robust_aug:
            raise FerError("--robust-p is the probability of the --robust-aug conditions; "
                           "give --robust-aug too")
        if self.mixup < 0:
            raise FerError(f"--mixup must be >= 0 (got {self.mixup}; 0.2 is a common value)")
        check_precision(self.precision)
        if self.checkpoint_minutes < 0:
            raise FerError(f"--checkpoint-minutes must be >= 0 (got {self.checkpoint_minutes}; "
                           f"0 writes the checkpoint every epoch)")
        if self.kd_temperature <= 0:
            raise FerError(f"--kd-temperature must be > 0 (got {self.kd_temperature})")
        if self.schedule_minutes is not None:
            if self.schedule_minutes <= 0:
                raise FerError(f"--schedule-minutes must be > 0 (got {self.schedule_minutes})")
            if self.schedule == "plateau":
                raise FerError("--schedule-minutes stretches a --schedule cosine or onecycle "
                               "over minutes; the plateau rule has no end to stretch")
        from training.fit.targets import parse_targets

        parse_targets(self.targets)  # FerError naming the valid forms
        if self.ferplus and not Path(self.ferplus).expanduser().is_file():
            raise FerError(f"--ferplus {self.ferplus}: no such file")
        if self.soft_targets and self.teachers:
            raise FerError("--soft-targets and --teacher are two sources of the same teacher "
                           "signal; give one of them")
        for t in self.teachers if teachers else ():
            teacher_path(t)
        if self.init_from and teachers:  # like teachers: a resumed run has the weights already
            init_path(self.init_from)
        if self.soft_targets:
            from training.fit.soft_targets import load

            load(self.soft_targets, sha256=self.soft_targets_sha256)  # exists, readable, same

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["input_shape"] = tuple(d.get("input_shape", INPUT_SHAPE))
        return cls(**d)


def _robust_names(names, *, strict: bool = True) -> list:
    """--robust-aug names expanded and in canonical order (training.fit.augment_robust);
    strict=False leaves unknown names as given, for `check` to report."""
    from training.fit.augment_names import robust_names

    try:
        return robust_names(names)
    except FerError:
        if strict:
            raise
        return list(names)


def _canonical_targets(spec: str) -> str:
    """--targets as config.json records it (e.g. "MIX:0.50" -> "mix:0.5"); unparseable text
    is left as given, for `check` to report."""
    from training.fit.targets import parse_targets

    try:
        return str(parse_targets(spec))
    except FerError:
        return spec


def config_conflicts(saved: TrainConfig, given: TrainConfig) -> list[str]:
    """Human-readable differences that forbid resuming `saved` with `given`."""
    a, b = saved.to_json(), given.to_json()
    return [f"{k}: run has {a.get(k)!r}, you asked for {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if k not in RESUME_MUTABLE and a.get(k) != b.get(k)]


def class_weights_for(y: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights inversely proportional to class frequency (mean weight 1 over present classes)."""
    counts = np.bincount(np.asarray(y, dtype="int64"), minlength=num_classes)
    present = max(1, int((counts > 0).sum()))
    return {c: (float(len(y)) / (present * counts[c]) if counts[c] else 1.0)
            for c in range(num_classes)}


def _xy(split) -> tuple[np.ndarray, np.ndarray]:
    if split is None:
        return None, None
    if hasattr(split, "x") and hasattr(split, "y"):
        return np.asarray(split.x), np.asarray(split.y, dtype="int64")
    x, y = split
    return np.asarray(x), np.asarray(y, dtype="int64")


def _say(msg: str) -> None:
    print(msg, flush=True)


def _cli_name() -> str:
    """How this process was started, for hints: the installed `fer-hybrid`, or the module
    (the GPU machine has the checkout on PYTHONPATH, no installed command)."""
    import sys

    if Path(sys.argv[0]).name == "fer-hybrid":
        return "fer-hybrid"
    return f"{Path(sys.executable).name} -m training.cli"


def _make_optimizer(cfg: TrainConfig):
    import keras

    if cfg.optimizer == "adamw":
        # Adam converges in far fewer epochs than the paper's SGD on small nets, which is
        # what a 2-core CPU can afford; the decay is decoupled (Loshchilov & Hutter 2019).
        return keras.optimizers.AdamW(learning_rate=cfg.lr, weight_decay=cfg.weight_decay or None)
    return keras.optimizers.SGD(learning_rate=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay or None)


def teacher_path(spec: str | Path) -> Path:
    """A run folder (its best.keras) or a .keras file; FerError if neither exists."""
    from training.core.runs import resolve_target

    try:
        return resolve_target(spec).model_path
    except FerError as err:
        raise FerError(f"--teacher: {err}") from None


def init_path(spec: str | Path) -> Path:
    """--init-from: a run folder (its best.keras) or a .keras file; FerError if neither exists."""
    from training.core.runs import resolve_target

    try:
        return resolve_target(spec).model_path
    except FerError as err:
        raise FerError(f"--init-from: {err}") from None


def init_weights(core, spec: str | Path) -> None:
    """Copy a trained model's weights into the freshly built `core` (fine-tuning).

    The two must be the same network: same architecture and options, so the same weight
    shapes in the same order, or the same architecture at a larger width, whose most important
    channels are kept (structured pruning, training/fit/prune.py); anything else is refused
    rather than half-loaded.
    """
    from training.fit.prune import prune_into

    path = init_path(spec)
    source = load_model(path, float32=True)
    got = [tuple(w.shape) for w in source.weights]
    want = [tuple(w.shape) for w in core.weights]
    if got == want:
        for target, value in zip(core.weights, source.weights):
            target.assign(value.numpy() if hasattr(value, "numpy") else value)
        _say(f"initialised {core.name} from {path}")
        return
    try:
        counts = prune_into(source, core)
    except FerError as err:
        raise FerError(f"--init-from {spec}: its weights ({len(got)} arrays, "
                       f"{source.count_params():,} parameters) do not fit {core.name} "
                       f"({len(want)} arrays, {core.count_params():,} parameters): {err}. Give a "
                       f"model trained with the same --model and options, or the same --model "
                       f"at a larger --width") from None
    _say(f"initialised {core.name} from {path}, pruned from {counts['of']:,} to "
         f"{counts['params']:,} parameters (channels with the largest BatchNorm |gamma| kept)")


def load_teachers(specs, config: TrainConfig) -> list:
    """Load the teacher models (frozen); they must honour the same input/output contract."""
    teachers = []
    for i, spec in enumerate(specs):
        try:
            t = load_model(teacher_path(spec))
        except FerError as err:
            raise FerError(f"--teacher {spec}: {err}") from err
        if tuple(t.input_shape[1:]) != tuple(config.input_shape) or \
                t.output_shape[-1] != config.num_classes:
            raise FerError(f"--teacher {spec}: takes {tuple(t.input_shape[1:])} -> "
                           f"{t.output_shape[-1]} classes, but the student takes "
                           f"{tuple(config.input_shape)} -> {config.num_classes}; teachers must "
                           f"follow the model contract (grey levels 0..255 -> class probabilities)")
        t.trainable = False
        t.name = f"teacher_{i}"
        teachers.append(t)
    return teachers


def check_replicas(batch_size: int, n: int | None = None) -> None:
    """FerError unless the batch splits evenly over `n` devices (default: JAX's device count;
    TensorFlow's is only known inside its strategy, so `distributed` checks it there)."""
    if n is None:
        import keras

        if keras.backend.backend() != "jax":
            return
        n = len(keras.distribution.list_devices())
    if batch_size % n:
        raise FerError(f"--batch-size {batch_size} is not divisible by the {n} devices; "
                       f"use a multiple of {n} with --distribute")


@contextlib.contextmanager
def distributed(enabled: bool, batch_size: int):
    """Data-parallel scope over all local devices; yields the number of replicas.

    JAX: keras.distribution.DataParallel (set globally, restored on exit).
    TensorFlow: tf.distribute.MirroredStrategy scope (tensorflow imported only here).
    """
    if not enabled:
        yield 1
        return
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        check_replicas(batch_size, len(devices))
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield len(devices)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy()
        check_replicas(batch_size, strategy.num_replicas_in_sync)
        with strategy.scope():
            yield strategy.num_replicas_in_sync
    else:
        raise FerError(f"--distribute supports the jax and tensorflow backends, not {backend}; "
                       f"set KERAS_BACKEND=jax or tensorflow")


def _trim_for_replicas(x, y, batch_size: int, n: int):
    """Drop < n images so the last batch also splits evenly over n replicas."""
    extra = (len(x) % batch_size) % n
    return (x[:len(x) - extra], y[:len(y) - extra]) if extra else (x, y)


def deadline_after(max_minutes: float | None) -> float | None:
    """The `time.monotonic()` by which a --max-minutes budget starting now runs out."""
    if max_minutes is None:
        return None
    if max_minutes <= 0:
        raise FerError(f"--max-minutes must be > 0 (got {max_minutes})")
    return time.monotonic() + 60.0 * max_minutes


def prepare_run(config: TrainConfig, run: RunFolder, *, resume: bool = False,
                given: Iterable[str] | None = None) -> tuple[TrainConfig, dict]:
    """The configuration a run will use and the state it starts from; every check that can
    fail before the data is loaded (a wrong model name, a conflicting resume, ...).

    resume: continue the run in `run` from its checkpoint, with its saved configuration;
            only `RESUME_MUTABLE` options (epochs, distribute, checkpoint_minutes) may change.
    given:  the fields of `config` the user actually set (a command line); on resume only
            those are compared with and laid over the saved configuration. None: all of them.
    """
    if not resume:
        if not config.model:
            raise FerError("--model is required (e.g. --model baseline_cnn); see --help for the "
                           "list")
        run.check_new()
        if config.scale_lr and config.lr is not None:
            raise FerError(f"--scale-lr scales the model's default learning rate; drop it or "
                           f"--lr {config.lr:g} (an explicit lr is used as given)")
        config = config.resolved()
        config.check(teachers=True)
        if config.soft_targets:  # pin the file's content: resume checks it is the same
            from training.fit.soft_targets import file_sha256

            config = dataclasses.replace(config, soft_targets_sha256=file_sha256(
                config.soft_targets))
        return config, initial_state(config.lr)
    state = run.read_state()
    saved = TrainConfig.from_json(run.read_config()).resolved()
    if given is None:
        requested = config.resolved()
    else:
        changes = {}
        for name in given:  # dicts (model options, data) merge key by key
            value = getattr(config, name)
            changes[name] = ({**getattr(saved, name), **value} if isinstance(value, dict)
                             else value)
        requested = dataclasses.replace(saved, **changes).resolved()
    requested.check(teachers=False)  # the checkpoint already holds the teachers
    conflicts = config_conflicts(saved, requested)
    if requested.soft_targets and not saved.soft_targets:  # a new path is fine, a new KD is not
        conflicts.append(f"soft_targets: run has none, you asked for {requested.soft_targets!r}")
    if conflicts:
        raise FerError("cannot resume with a different configuration (" + "; ".join(conflicts)
                       + "); drop those options or start a new run with another --name")
    config = dataclasses.replace(saved, **{k: getattr(requested, k) for k in RESUME_MUTABLE})
    # A run stretched over minutes that used them is finished whatever its epoch count.
    timed_out = config.schedule_minutes and state["stop_reason"] == "completed"
    if state["stop_reason"] in ("completed", *PAUSED) and state["epoch"] < config.epochs \
            and not timed_out:
        state["stop_reason"] = None
    return config, state


def train(config: TrainConfig, splits: dict, run_dir, *, resume: bool = False,
          max_minutes: float | None = None, **options) -> dict:
    """Train `config.model` on `splits` in `run_dir`; return the metrics dict.

    resume:       continue from run_dir/checkpoint (config must match, except `epochs`).
    max_minutes:  stop cleanly at an epoch boundary before this wall-clock budget is used,
                  leaving a resumable checkpoint (status "incomplete" in metrics.json).
    options:      those of `train_prepared`.
    """
    deadline = deadline_after(max_minutes)
    run = RunFolder(run_dir)
    config, state = prepare_run(config, run, resume=resume)
    return train_prepared(config, state, splits, run, resume=resume, deadline=deadline, **options)


def train_prepared(config: TrainConfig, state: dict, splits: dict, run: RunFolder, *,
                   resume: bool = False, deadline: float | None = None,
                   verbose: int | str = "auto", callbacks: list | tuple = (),
                   predict_batch_size: int = 256, reserve_s: float = 30.0,
                   stop_file: str | Path | None = None) -> dict:
    """Train a run `prepare_run` checked; return the metrics dict.

    deadline:     `time.monotonic()` by which training must have stopped (None: no budget).
    stop_file:    stop at the end of the first epoch after which this file exists (resumable).
    callbacks:    extra Keras callbacks (run after the run-folder bookkeeping).
    reserve_s:    seconds of the budget kept for saving and the final predictions.
    """
    import keras

    # Teachers are loaded (and checked against the model contract) before the run folder
    # exists; a resumed run gets them back from its checkpoint instead.
    teachers = load_teachers(config.teachers, config) if config.teachers and not resume else []
    if config.distribute:
        check_replicas(config.batch_size)
    # -- data (before the run folder: a data error, e.g. missing FER+ votes, leaves no
    # half-made run that only --resume could continue) ------------------------------
    x_train, y_train = _xy(splits["train"])
    x_val, y_val = _xy(splits["val"])
    if x_train is None or len(x_train) == 0 or x_val is None or len(x_val) == 0:
        raise FerError("training needs non-empty train and val splits; check the dataset paths")
    if config.smote:
        from training.data.balance import smote

        n0 = len(y_train)
        x_train, y_train = smote(x_train, y_train, seed=config.seed)
        _say(f"SMOTE: {n0} -> {len(y_train)} training images")
    soft = None
    if config.soft_targets:  # matched by image content, after SMOTE (its images: hard loss)
        from training.fit.soft_targets import training_targets

        soft = training_targets(config.soft_targets, x_train,
                                sha256=config.soft_targets_sha256, say=_say)
    label_q, val_votes = None, None
    if config.targets != "fer2013":
        x_train, y_train, label_q, soft, val_votes = _vote_targets(
            config, x_train, y_train, x_val, soft)
    from training.models.predict import to_model_input

    xt, xv = to_model_input(x_train), to_model_input(x_val)
    if tuple(xt.shape[1:]) != tuple(config.input_shape):
        raise FerError(f"images are {tuple(xt.shape[1:])} but the model expects "
                       f"{tuple(config.input_shape)}")

    made = not run.path.exists()  # a new run: its folder goes again if it fails before a checkpoint
    run.path.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_tmp(run.path):
        log.warning("removed a temp file left by an interrupted run: %s", p)
    run.write_config(config.to_json())

    cw = class_weights_for(y_train, config.num_classes) if config.class_weights else None

    # -- model + fit (inside the data-parallel scope when --distribute) -----------------
    try:
        with distributed(config.distribute, config.batch_size) as replicas:
            if replicas > 1:
                # Batches are full (training.fit.batches) and validation is padded to full
                # batches (training.fit.validation); only a training set smaller than one
                # batch needs trimming.
                xt, y_train = _trim_for_replicas(xt, y_train, config.batch_size, replicas)
                _say(f"data-parallel over {replicas} devices ({config.batch_size // replicas} "
                     f"images per device and step)")
            _fit(config, state, run, xt, y_train, xv, y_val, cw, teachers, resume=resume,
                 deadline=deadline, verbose=verbose, callbacks=callbacks, reserve_s=reserve_s,
                 stop_file=stop_file, soft=soft, label_targets=label_q, val_votes=val_votes)
    except BaseException:
        # A refused or broken start (backbone weights that do not fit, an --init-from of
        # another shape, Ctrl-C in the first epoch) leaves no folder holding only config.json,
        # which would make the same --name refuse a new run; a checkpoint is kept for --resume.
        if made and not resume and not run.state.is_file():
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    params = state["params"]

    # -- finish ---------------------------------------------------------------------
    metrics = {
        "model": config.model,
        "params": params,
        "best_epoch": int(state["best_epoch"]),
        "val_accuracy": state["best_val_accuracy"],
        "epochs_run": int(state["epoch"]),
        "train_seconds": round(float(state["train_seconds"]), 2),
        "backend": keras.backend.backend(),
        "stop_reason": state["stop_reason"],
        "run": run.name,
    }
    if state.get("macs_per_image"):
        metrics["macs_per_image"] = int(state["macs_per_image"])  # multiply-adds, 48x48 image
    if "img_per_s" in state:
        metrics["train_images_per_second"] = round(state["img_per_s"], 1)
    if "xla" in state:
        metrics["xla"] = state["xla"]
    plot_history(run.log_csv, run.history_png, title=run.name)
    if state["stop_reason"] in PAUSED:
        metrics["status"] = "incomplete"
        run.write_metrics(metrics)
        why = ("to stay inside the time budget" if state["stop_reason"] == "time_budget"
               else "as asked (stop file)")
        _say(f"stopped after epoch {state['epoch']}/{config.epochs} {why}; "
             f"continue with: {_cli_name()} train --resume --name {run.path.name} "
             f"--runs-dir {run.path.parent}")
        return metrics

    best = load_model(run.best_model, float32=True)  # predictions of what ships
    metrics.update(_write_predictions(best, splits, run, predict_batch_size))
    if config.targets == "ferplus":  # selected by agreement with the votes, not FER2013 labels
        metrics["selected_by"] = "val_ferplus_agreement"
        metrics["val_ferplus_agreement"] = metrics.pop("val_accuracy")
        metrics["val_accuracy"] = _split_accuracy(run)
    metrics["status"] = "complete"
    run.write_metrics(metrics)
    chosen = (f"best FER+ agreement {metrics['val_ferplus_agreement']:.4f} (FER2013 val_accuracy "
              f"{metrics['val_accuracy']:.4f})" if config.targets == "ferplus"
              else f"best val_accuracy {metrics['val_accuracy']:.4f}")
    _say(f"done: {chosen} at epoch {metrics['best_epoch']} (flip TTA "
         f"{metrics['val_accuracy_tta']:.4f}); run folder {run.path}")
    return metrics


def _fit(config: TrainConfig, state: dict, run: RunFolder, xt, y_train, xv, y_val, cw,
         teachers: list, *, resume: bool, deadline: float | None, verbose, callbacks,
         reserve_s: float, stop_file=None, soft=None, label_targets=None, val_votes=None):
    """Build (or reload from the checkpoint) the training model, then fit it; updates `state`."""
    import keras

    from training.fit.augment import allow_xla, build_augmenter, with_augmentation
    from training.fit.batches import TrainBatches
    from training.fit.callbacks import EpochLRSchedule, RunMonitor, truncate_log
    from training.fit.trainer import Trainer
    from training.fit.validation import ValidationPass
    from training.models import build_model

    keras.utils.set_random_seed(int(config.seed) + int(state["epoch"]))
    if resume and state["stop_reason"] is None:
        # The training model with its optimizer state (compiled), maybe a Trainer.
        with dtype_policy(config.precision):
            train_model = load_model(run.checkpoint_dir / state["checkpoint_model"],
                                     compile=True)
        if isinstance(train_model, Trainer):
            core = train_model.core
        else:
            core = train_model.layers[-1] if config.augment else train_model  # input -> augment -> core
        dropped = truncate_log(run.log_csv, int(state["epoch"]))
        if dropped:
            _say(f"log.csv: dropped {dropped} epoch(s) after the checkpoint (they are re-trained)")
        _say(f"resuming {run.path} after epoch {state['epoch']} (best val_accuracy "
             f"{state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}, lr {state['lr']:.3g})")
    elif resume:
        train_model = core = None  # nothing left to train: only finish the run folder
    else:
        with dtype_policy(config.precision):  # the core only: the augmenter stays float32
            core = build_model(config.model, input_shape=config.input_shape,
                               num_classes=config.num_classes, **config.model_options)
        if config.init_from:
            init_weights(core, config.init_from)
        if config.uses_trainer:
            augmenter = (build_augmenter(seed=config.seed, erasing=config.random_erasing,
                                         robust=config.robust_aug, robust_p=config.robust_p)
                         if config.augment else None)
            train_model = Trainer(core, augmenter, teachers, mixup_alpha=config.mixup,
                                  label_smoothing=config.label_smoothing,
                                  kd_alpha=config.kd_alpha, kd_temperature=config.kd_temperature,
                                  seed=config.seed, name=f"train_{core.name}")
            train_model.compile(optimizer=_make_optimizer(config), metrics=["accuracy"])
            if teachers or soft is not None:
                source = (f"{len(teachers)} teacher(s) (soft-voted)" if teachers
                          else f"the soft targets in {config.soft_targets}")
                _say(f"distilling from {source}, kd_alpha {config.kd_alpha:g}, temperature "
                     f"{config.kd_temperature:g}")
        else:
            train_model = (with_augmentation(core, seed=config.seed, erasing=config.random_erasing,
                                             robust=config.robust_aug, robust_p=config.robust_p)
                           if config.augment else core)
            train_model.compile(optimizer=_make_optimizer(config),
                                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if train_model is not None:
        allow_xla(train_model)  # under JAX: XLA on, built or loaded (see training/fit/augment.py)
    params = int(core.count_params()) if core is not None else state.get("params")
    state["params"] = params
    if core is not None:
        from training.models.macs import macs_per_image

        state["macs_per_image"] = macs_per_image(core)

    if state["stop_reason"] is None and state["epoch"] < config.epochs:
        state["xla"] = bool(train_model.jit_compile)  # metrics.json: why a run was slow
        if not state["xla"] and keras.backend.backend() == "jax":
            _say("warning: XLA is off, so JAX runs every op from Python (on a GPU: ~1 s per "
                 "batch, the GPU idle); a layer of the model says it cannot be compiled")
        scheduled = config.schedule != "plateau"
        monitor = RunMonitor(run, core, state, epochs=config.epochs, patience=config.patience,
                             lr_patience=config.lr_patience, lr_factor=config.lr_factor,
                             min_lr=config.min_lr, deadline=deadline,
                             reserve_s=reserve_s, printer=_say, adjust_lr=not scheduled,
                             checkpoint_s=60.0 * config.checkpoint_minutes,
                             schedule_s=(60.0 * config.schedule_minutes
                                         if config.schedule_minutes else None),
                             stop_file=stop_file)
        batches = TrainBatches(xt, y_train, batch_size=config.batch_size, seed=config.seed,
                               class_weights=cw, initial_epoch=int(state["epoch"]),
                               soft_targets=soft,  # trimmed with xt under --distribute
                               label_targets=label_targets)
        # Order matters: the batch clock stops before validation, validation fills the
        # val_* logs RunMonitor reads; the schedule sets the lr at epoch start (RunMonitor
        # then only logs it).
        cbs = [batches.epoch_callback(),
               ValidationPass(core, xv, y_val, batch_size=config.batch_size, votes=val_votes)]
        if scheduled:
            cbs.append(EpochLRSchedule(config.schedule, base_lr=config.lr, epochs=config.epochs,
                                       min_lr=config.min_lr, minutes=config.schedule_minutes,
                                       state=state))
        cbs.append(monitor)
        if importlib.util.find_spec("tensorflow") is not None:
            cbs.append(keras.callbacks.TensorBoard(str(run.tensorboard), write_graph=False,
                                                   profile_batch=0))
        else:
            _say("TensorBoard logs skipped: tensorflow is not installed (log.csv has the same numbers)")
        cbs.extend(callbacks)
        if config.augment and config.robust_aug:
            _say(f"robustness augmentation: {', '.join(config.robust_aug)} (each changes an "
                 f"image with probability {config.robust_p:g}; rotation30: every image)")
        _say(f"training {config.model} ({params:,} params) on {len(xt)} images "
             f"({batches.images_per_epoch} per epoch in {len(batches)} full batches of "
             f"{batches.batch_size}, reshuffled each epoch), validating on {len(xv)}; epochs "
             f"{state['epoch'] + 1}..{config.epochs}, lr {state['lr']:.3g} ({config.schedule}), "
             f"precision {config.precision}, backend {keras.backend.backend()}, XLA "
             f"{'on' if state['xla'] else 'off'}")
        # shuffle=False: TrainBatches shuffles the images itself (Keras would only reorder
        # whole batches).
        train_model.fit(batches, epochs=config.epochs, initial_epoch=int(state["epoch"]),
                        callbacks=cbs, verbose=verbose, shuffle=False)
        if batches.images_per_second is not None:
            state["img_per_s"] = float(batches.images_per_second)


def _vote_targets(config: TrainConfig, x_train, y_train, x_val, soft):
    """--targets ferplus|mix:A: the training images' label distributions from the FER+ votes
    (training.fit.targets) -> (x_train, y_train, targets, soft, val_votes); images left out under
    ferplus are dropped from all of them. val_votes (ferplus only) are PublicTest's votes, so
    validation selects by agreement with the ten annotators."""
    from training.data.ferplus import load_votes
    from training.fit.targets import label_targets, match_votes, parse_targets

    targets = parse_targets(config.targets)
    fer, votes, note = load_votes(data_dir=config.data.get("data_dir"),
                                  fer2013=config.data.get("fer2013"), ferplus=config.ferplus)
    if votes is None:
        raise FerError(f"--targets {targets} needs the FER+ votes: {note}")
    _say(note)
    fer_x, _ = fer.split("Training")
    matched, covered = match_votes(x_train, fer_x, votes.split("Training"))
    lt = label_targets(targets, y_train, matched, covered)
    _say(lt.note)
    if soft is not None:
        soft = soft[lt.keep]
    val_votes = None
    if targets.kind == "ferplus":
        public_x, _ = fer.split("PublicTest")
        val_votes, val_covered = match_votes(x_val, public_x, votes.split("PublicTest"))
        scored = int((val_covered & val_votes.scored).sum())
        if scored == 0:
            raise FerError("--targets ferplus selects by FER+ agreement on PublicTest, but none "
                           "of the validation images has votes that count")
        _say(f"model selection: FER+ majority agreement on {scored} PublicTest images (ties "
             f"count as agreement), not FER2013 accuracy")
    return x_train[lt.keep], lt.labels, lt.targets, soft, val_votes


def _split_accuracy(run: RunFolder, split: str = "val") -> float:
    """FER2013 accuracy (no TTA) of the predictions _write_predictions saved for `split`."""
    from training.core.runs import load_predictions

    preds = load_predictions(run.predictions(split))
    return top1_accuracy(preds.probs, preds.y)


def _write_predictions(model, splits: dict, run: RunFolder, batch_size: int) -> dict:
    """predictions/{val,test}.npz (probs, probs_flip, y) from the best model; their accuracies."""
    from training.models.predict import predict_split

    result = {}
    for split in ("val", "test"):
        x, y = _xy(splits.get(split))
        if x is None or len(x) == 0:
            run.predictions(split).unlink(missing_ok=True)  # never leave another model's
            continue
        preds = predict_split(model, x, y, batch_size=batch_size)
        save_predictions(run.predictions(split), preds)
        plain = "test_accuracy" if split == "test" else None  # val's is the best epoch's
        if plain:
            result[plain] = top1_accuracy(preds.probs, preds.y)
        result[f"{split}_accuracy_tta"] = top1_accuracy(preds.scored(tta=True), preds.y)
    return result
