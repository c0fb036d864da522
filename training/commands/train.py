"""`fer-hybrid train`: train one model of the zoo into a run folder.

Heavy imports (keras, the data loaders) happen inside the command body so that
`fer-hybrid --help` stays fast and never imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import typer

from training.commands.options import Aux, CustomUploads, DataDir, Fer2013, FerPlus, Sample
from training.models.registry import MODEL_NAMES


def train(
    model: str | None = typer.Option(
        None, "--model", "-m",
        help=f"Architecture from the zoo: {', '.join(MODEL_NAMES)}. Optional with --resume "
             "(taken from the run).",
    ),
    epochs: int | None = typer.Option(
        None, help="Total epochs (default: the model's defaults, 100). With --resume this may be "
                   "raised to train a finished run further."),
    batch_size: int | None = typer.Option(None, help="Batch size (default: the model's defaults, "
                                                        "128; 64 for the transfer models). Every "
                                                        "batch is full: the remainder is left out "
                                                        "of each epoch, reshuffled every epoch."),
    lr: float | None = typer.Option(None, help="Initial learning rate (default: the model's "
                                                  "defaults, e.g. 0.01 baseline_cnn/vgg, 0.1 "
                                                  "five_layer)."),
    weight_decay: float | None = typer.Option(None, help="Decoupled weight decay of the "
                                                            "optimizer (default: the model's "
                                                            "defaults, 1e-4; 0.01 sepnet)."),
    optimizer: str | None = typer.Option(
        None, help="sgd (the paper's: momentum 0.9) or adamw (Adam with decoupled weight decay: "
                   "far fewer epochs, the CPU recipe). Default: the model's defaults (sgd; "
                   "adamw for sepnet)."),
    patience: int | None = typer.Option(None, help="Early stopping: epochs without a val_accuracy "
                                                      "gain before stopping (default 20; the lr is "
                                                      "halved after 10 such epochs)."),
    name: str | None = typer.Option(None, "--name", help="Run folder name (default: "
                                                             "<model>-<UTC timestamp>)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Folder that holds the run folders."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run --name from its "
                                                        "checkpoint with its saved configuration."),
    max_minutes: float | None = typer.Option(
        None, help="Wall-clock budget: stop cleanly at an epoch boundary before it runs out, "
                   "leaving a checkpoint to --resume (e.g. 9 for a 10-minute GPU slice)."),
    checkpoint_minutes: float | None = typer.Option(
        None, help="Write the training checkpoint (model + optimizer state, for --resume) at "
                   "most every M minutes (default 10; 0: every epoch), and always when the run "
                   "stops (finished, early stop, --max-minutes). best.keras is still saved on "
                   "every improvement; a resume re-trains the epochs after the checkpoint. May "
                   "change on --resume."),
    stop_file: Path | None = typer.Option(
        None, "--stop-file",
        help="Stop cleanly at the end of the first epoch after which this file exists, leaving "
             "a checkpoint to --resume (how `fer-hybrid campaign stop` ends a background run "
             "without losing the epoch in progress). Not part of the run's configuration."),
    schedule_minutes: float | None = typer.Option(
        None, help="Stretch the --schedule cosine/onecycle over M minutes of training instead of "
                   "--epochs (the clock or the epochs, whichever ends first; the minutes count "
                   "across resumes): the run ends complete with its lr annealed however fast "
                   "the machine is. What a GPU session uses (`fer-hybrid gpu`)."),
    seed: int | None = typer.Option(None, help="Random seed for weights, shuffling and "
                                                  "augmentation (default 0)."),
    smote: bool = typer.Option(False, "--smote", help="Oversample minority classes of the training "
                                                      "split with SMOTE before training."),
    no_class_weights: bool = typer.Option(False, "--no-class-weights",
                                          help="Turn off loss weights inversely proportional to "
                                               "class frequency (on by default)."),
    no_augment: bool = typer.Option(False, "--no-augment", help="Turn off the in-graph flip/rotate/"
                                                                "zoom/shift augmentation."),
    weights: Path | None = typer.Option(None, help="Transfer models: local weights file for the "
                                                      "backbone (default: random init; nothing is "
                                                      "downloaded)."),
    freeze_first: int | None = typer.Option(None, help="Transfer models: freeze the first N "
                                                          "backbone layers."),
    width: float | None = typer.Option(None, help="vgg / resnet_se / sepnet: channel width "
                                                     "multiplier (e.g. 0.25 or 0.5 for on-device "
                                                     "variants)."),
    sample: Sample = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    aux: Aux = None,
    custom_uploads: CustomUploads = None,
    label_smoothing: float | None = typer.Option(
        None, help="Recipe: label smoothing of the cross-entropy (e.g. 0.1; default 0 = off)."),
    schedule: str | None = typer.Option(
        None, help="Recipe: lr schedule: plateau (paper: halve after 10 stalled epochs; default), "
                   "cosine (to --min-lr over --epochs) or onecycle (30% warm-up, then cosine). "
                   "cosine/onecycle turn the plateau halving off."),
    mixup: float | None = typer.Option(
        None, help="Recipe: mixup with Beta(ALPHA, ALPHA) mixing weights on each training batch "
                   "(e.g. 0.2; default 0 = off)."),
    random_erasing: float | None = typer.Option(
        None, help="Recipe: probability of erasing a random rectangle (noise-filled) of each "
                   "training image, in-graph (e.g. 0.5; default 0 = off)."),
    robust_aug: str | None = typer.Option(
        None, "--robust-aug",
        help="Recipe: robustness conditions added to the in-graph augmentation, comma-separated "
             "(or all): low_light (dark: gamma 1-3, gain 0.2-1; a quarter over-exposed: gamma "
             "0.5-1, gain 1.2-2; sensor noise sigma 0-12 grey levels), blur (Gaussian sigma "
             "0.3-1.5 px or motion blur 3-7 px, horizontal/vertical/diagonal), occlusion "
             "(sunglasses band over the eyes, mask over the lower face, or a 14-26 px hand "
             "patch; flat grey or noise), downscale (a far face: down to 16-32 px, back up to "
             "48), rotation30 (rotation +/-30 degrees instead of +/-10). Default: none. Kept "
             "on --resume (a different set is refused)."),
    robust_p: float | None = typer.Option(
        None, "--robust-p",
        help="Recipe: probability that each --robust-aug condition (except rotation30) "
             "changes a training image, drawn per image and condition (default 0.3)."),
    init_from: str | None = typer.Option(
        None, "--init-from",
        help="Fine-tuning: start from the weights of a trained run folder (its best.keras) or "
             ".keras file of the same --model and options, instead of random weights; the "
             "optimizer and the lr schedule start fresh (e.g. --lr 0.0003 --epochs 5). The "
             "same --model at a larger --width is pruned to this one (the channels with the "
             "largest BatchNorm |gamma| kept): a faster network that starts trained."),
    teacher: list[str] | None = typer.Option(
        None, "--teacher", help="Knowledge distillation: a teacher run folder (its best.keras) or "
                                ".keras file; repeat for several (their probabilities are "
                                "averaged). Teachers are frozen; only the student is saved."),
    soft_targets: Path | None = typer.Option(
        None, "--soft-targets", help="Offline distillation: a file from `fer-hybrid ensemble RUN... "
                                     "--save-soft-targets FILE` instead of --teacher (no teacher "
                                     "model needed). Its probabilities are for the un-augmented "
                                     "image while the student sees the augmented one (standard "
                                     "offline KD); with --mixup the two images' targets are mixed "
                                     "with the images' weight (a live --teacher instead predicts "
                                     "on the mixed image). "
                                     "Images are matched by content; training images the file "
                                     "does not cover get the hard-label loss only (their count "
                                     "is printed). The file's sha256 is recorded: --resume "
                                     "refuses a changed file."),
    kd_alpha: float | None = typer.Option(
        None, help="Distillation: weight of the hard-label loss; 1 - KD_ALPHA goes to the "
                   "teacher's soft targets (default 0.5)."),
    kd_temperature: float | None = typer.Option(
        None, help="Distillation: softmax temperature of the soft targets (default 4)."),
    targets: str | None = typer.Option(
        None, "--targets",
        help="What the loss trains towards: fer2013 (FER2013's one label per image, default), "
             "ferplus (the share of the ten FER+ annotators' votes each of our seven classes "
             "got; images whose top vote is contempt, unknown or not-a-face are left out, and "
             "the best epoch is chosen by FER+ majority agreement on PublicTest) or mix:A "
             "(A x FER2013 one-hot + (1-A) x the vote shares, e.g. mix:0.5; chosen by FER2013 "
             "PublicTest accuracy). The votes (fer2013new.csv(.gz)) are read next to the FER2013 "
             "data or from --ferplus. Kept on --resume."),
    ferplus: FerPlus = None,
    distribute: bool = typer.Option(
        False, "--distribute", help="Data-parallel training over all devices of this machine "
                                    "(JAX: keras.distribution.DataParallel; TensorFlow: "
                                    "MirroredStrategy). --batch-size must divide by the device "
                                    "count."),
    scale_lr: bool = typer.Option(
        False, "--scale-lr", help="Scale the model's default learning rate with the batch size "
                                  "(linear scaling rule: lr x BATCH_SIZE / the model's default "
                                  "batch), to train a small model with a larger --batch-size on "
                                  "a GPU, e.g. sepnet --batch-size 512 --scale-lr: lr 0.008. "
                                  "Not with --lr."),
    precision: str | None = typer.Option(
        None, help="float32 (default) or bf16: mixed precision (Keras' mixed_bfloat16: float32 "
                   "weights, bfloat16 compute, float32 softmax), for GPUs with bfloat16 tensor "
                   "cores; kept on --resume. Export and evaluation rebuild the model in float32."),
    verbose: str = typer.Option("auto", help="Keras progress: auto, 0 (none), 1 (bar), 2 (line per "
                                             "epoch)."),
) -> None:
    """Train a model into runs/<name>/ (resumable, time-boxable).

    Defaults per model (training/models/registry.py): the reference paper's recipe, SGD with
    momentum 0.9 and weight decay 1e-4, batch 128 (64 for the transfer models), 100 epochs,
    for every model but sepnet, which defaults to AdamW with lr 0.002 and weight decay 0.01
    for 150 epochs (its CPU recipe). For all: lr halved after 10 epochs without a
    val_accuracy gain, early stopping, class weights, flip/rotate/zoom/shift augmentation.

    Writes config.json, log.csv, tensorboard/ (when TensorFlow is installed), best.keras, checkpoint/, metrics.json, predictions/{val,test}.npz and history.png.
    """
    params = dict(locals())  # the parsed options, by name (before any other local exists)
    import logging
    import sys

    from training.fit.train import TrainConfig, deadline_after, prepare_run, train_prepared

    deadline = deadline_after(max_minutes)  # the budget counts from here, data loading included
    from training.core.errors import FerError
    from training.core.runs import RunFolder, default_run_name

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if resume and not name:
        raise FerError("--resume needs --name of the run to continue (a folder in --runs-dir)")

    given = config_fields(params)
    run = RunFolder(Path(runs_dir) / (name or default_run_name(model)))
    config, state = prepare_run(TrainConfig(**{"model": model or "", **given}), run,
                                resume=resume, given=given)
    if verbose == "auto":
        verbose = "1" if sys.stdout.isatty() else "2"

    # The options are checked without Keras; a server-only install (no training stack) hears
    # so now, before the data is looked for (the import is needed for training anyway).
    import keras  # noqa: F401
    splits = _load_data(config.data, config.seed)
    train_prepared(config, state, splits, run, resume=resume, deadline=deadline,
                   verbose=int(verbose) if verbose.isdigit() else verbose, stop_file=stop_file)


def _load_data(data: dict, seed: int) -> dict:
    """The splits a run's `data` options name (`TrainConfig.data`: load_splits' keywords)."""
    from training.data import load_splits

    return load_splits(**{k: v for k, v in data.items() if v not in (None, [])}, seed=seed)


def train_fields(args: list[str]) -> dict:
    """The TrainConfig fields of a `train` command line `args`, parsed as `fer-hybrid train`
    parses them (FerError for an unknown option or a bad value, in one line). The campaign
    checks its plan's runs with it before anything trains."""
    from training.core.errors import FerError

    app = typer.Typer()
    app.command()(train)
    command = typer.main.get_command(app)
    try:
        with command.make_context("train", list(args)) as ctx:
            params = dict(ctx.params)
    except Exception as err:
        # click's usage errors, recognised by shape: typer may bundle its own click
        if not callable(getattr(err, "format_message", None)):
            raise
        raise FerError(f"{' '.join(err.format_message().split())} (see "
                       f"`fer-hybrid train --help`)") from None
    return config_fields(params)


def config_fields(params: dict) -> dict:
    """The TrainConfig fields a `train` command line sets, from its parsed options by name;
    on --resume the rest comes from the run. (`fer-hybrid campaign` checks a plan's runs with
    it before anything trains.)"""
    from training.core.errors import FerError
    from training.data.splits import parse_aux

    def path(key: str) -> str | None:
        return str(params[key]) if params.get(key) else None

    from contract.review import UPLOAD_CHOICES

    uploads = params.get("custom_uploads")
    if uploads is not None and uploads not in UPLOAD_CHOICES:  # before any data is read
        raise FerError(f"--custom-uploads must be one of: {', '.join(UPLOAD_CHOICES)} "
                       f"(got {uploads!r})")
    data = {"data_dir": path("data_dir"), "fer2013": path("fer2013"),
            "aux": parse_aux(params.get("aux")) or None, "sample": params.get("sample"),
            "custom_uploads": uploads}
    options = {"weights": path("weights"), "freeze_first": params.get("freeze_first"),
               "width": params.get("width")}
    flag = {"class_weights": False if params.get("no_class_weights") else None,
            "smote": True if params.get("smote") else None,
            "augment": False if params.get("no_augment") else None,
            "distribute": True if params.get("distribute") else None,
            "scale_lr": True if params.get("scale_lr") else None}
    robust, teacher = params.get("robust_aug"), params.get("teacher")
    given = {**{k: params.get(k) for k in (
                 "model", "epochs", "batch_size", "lr", "weight_decay", "patience", "seed",
                 "label_smoothing", "schedule", "mixup", "random_erasing", "robust_p",
                 "init_from", "kd_alpha", "kd_temperature", "targets", "optimizer",
                 "checkpoint_minutes", "precision", "schedule_minutes")},
             **flag,
             "robust_aug": robust.split(",") if robust is not None else None,
             "teachers": list(teacher) if teacher else None,
             "soft_targets": path("soft_targets"), "ferplus": path("ferplus"),
             "model_options": {k: v for k, v in options.items() if v is not None} or None,
             "data": {k: v for k, v in data.items() if v is not None} or None}
    return {k: v for k, v in given.items() if v is not None}
