"""Name -> builder registry for the model zoo, with per-model training defaults.

A model module registers its builder with a decorator:

    @register("baseline_cnn")
    def baseline_cnn(input_shape, num_classes, *, dropout=0.5): ...

Each model's `TrainingDefaults` (`get_defaults(name)`: what `fer-hybrid train` uses for every
hyper-parameter the user leaves out) live in the table `DEFAULTS` below, not beside the
builder, so that a command can resolve and check a whole training configuration without
importing Keras (a TensorFlow import takes 15-30 s on a 2-core machine).

`build_model(name, **options)` looks the name up and passes the options on;
an unknown name or option is a `FerError` (a user mistake, not a bug).

`MODEL_NAMES` is known without importing Keras (each architecture lives in the module of
the same name, imported on first use), so a CLI can reject a wrong name in milliseconds.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from contract import INPUT_SHAPE, NUM_CLASSES
from training.core.errors import FerError


@dataclass(frozen=True)
class TrainingDefaults:
    """Training defaults for one architecture (the paper's recipe unless noted)."""

    lr: float = 0.01
    batch_size: int = 128
    epochs: int = 100
    optimizer: str = "sgd"  # the lr only means something together with its optimizer
    weight_decay: float = 1e-4

    def as_dict(self) -> dict:
        return asdict(self)


# One module per architecture, named after the model it registers (checked when loaded).
MODEL_NAMES: tuple[str, ...] = ("baseline_cnn", "five_layer", "vgg", "resnet_se", "cnn_lstm",
                                "sepnet", "resnet50", "senet50", "vgg16")

DEFAULTS: dict[str, TrainingDefaults] = {
    "baseline_cnn": TrainingDefaults(lr=0.01),
    "five_layer": TrainingDefaults(lr=0.1),
    "vgg": TrainingDefaults(lr=0.01),
    "resnet_se": TrainingDefaults(lr=0.05),
    "cnn_lstm": TrainingDefaults(lr=0.01),
    # the recipe sepnet was trained with on the CPU (training/checkpoints/README.md)
    "sepnet": TrainingDefaults(lr=0.002, epochs=150, optimizer="adamw", weight_decay=0.01),
    "resnet50": TrainingDefaults(lr=0.01, batch_size=64),
    "senet50": TrainingDefaults(lr=0.01, batch_size=64),
    "vgg16": TrainingDefaults(lr=0.01, batch_size=64),
}
assert set(DEFAULTS) == set(MODEL_NAMES)

_BUILDERS: dict[str, Callable] = {}


def register(name: str):
    """Decorator registering an architecture's builder: `@register("vgg")`."""

    def wrap(fn: Callable) -> Callable:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn

    return wrap


def check_model_name(name: str) -> None:
    """FerError naming the choices for an unknown architecture (imports nothing heavy)."""
    if name not in MODEL_NAMES:
        raise FerError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


def _load(name: str) -> None:
    """Import the architecture's module (and so Keras) the first time it is needed."""
    check_model_name(name)
    if name not in _BUILDERS:
        importlib.import_module(f"training.models.{name}")
        if name not in _BUILDERS:
            raise RuntimeError(f"training/models/{name}.py does not register a model {name!r}")


def get_defaults(name: str) -> TrainingDefaults:
    """Per-model training defaults (lr, batch size, epochs, optimizer, weight decay); no Keras."""
    check_model_name(name)
    return DEFAULTS[name]


def model_options(name: str) -> list[str]:
    """Keyword options the builder of `name` accepts, read from its module's source, so that
    options are checked without importing Keras (tests compare it with the signature)."""
    check_model_name(name)
    source = Path(__file__).with_name(f"{name}.py")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", None) == "register"
                and [getattr(a, "value", None) for a in d.args] == [name]
                for d in node.decorator_list):
            return [a.arg for a in node.args.kwonlyargs]
    raise RuntimeError(f"{source} does not register a model {name!r}")


# What a builder's numeric option may be, by option name (the same name means the same thing
# in every builder): the one home of these rules, checked before Keras loads by
# `check_model_options` and by the builders themselves (`check_option`), so a wrong value
# costs milliseconds, not TensorFlow's start-up.
_POSITIVE = ("> 0", lambda v: v > 0)
_COUNT = (">= 1", lambda v: v >= 1)
OPTION_RULES: dict[str, tuple[str, Callable]] = {
    "width": _POSITIVE,
    "dropout": ("in [0, 1)", lambda v: 0 <= v < 1),
    "freeze_first": (">= 0", lambda v: v >= 0),
    "filters": _COUNT, "dense": _COUNT, "units": _COUNT, "stem": _COUNT, "se_ratio": _COUNT,
}
OPTION_HINTS = {"width": "; try 0.25, 0.5 or 1.0"}


def check_option(option: str, value, *, flag: str | None = None) -> None:
    """FerError if `value` breaks the rule for a model option named `option` (see
    OPTION_RULES; an option without a rule, or a non-number such as a tuple, passes).
    `flag`: the name the user typed (e.g. "--width"), for the message."""
    rule = OPTION_RULES.get(option)
    if rule is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    text, ok = rule
    if not ok(value):
        raise FerError(f"{flag or option} must be {text} (got {value:g})"
                       f"{OPTION_HINTS.get(option, '')}")


def check_model_options(name: str, options: dict, *, flags: bool = False) -> None:
    """FerError for an option the builder of `name` does not take, or a value out of range;
    no Keras. flags: name them as command-line flags (--freeze-first), not keywords."""
    valid = model_options(name)

    def shown(key: str) -> str:
        return f"--{key.replace('_', '-')}" if flags else key

    unknown = sorted(k for k in options if k not in valid)
    if unknown:
        raise FerError(f"{', '.join(shown(k) for k in unknown)} does not apply to {name} "
                       f"(it takes: {', '.join(valid) or 'no options'})")
    for key, value in options.items():
        if value is not None:
            check_option(key, value, flag=shown(key))


def build_model(name: str, *, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES, **options):
    """Build the uncompiled keras.Model registered as `name`.

    Options that are None are dropped (so a CLI can pass every flag through);
    an option the architecture does not take is a FerError naming the valid ones.
    """
    options = {k: v for k, v in options.items() if v is not None}
    check_model_options(name, options)
    _load(name)
    return _BUILDERS[name](tuple(input_shape), int(num_classes), **options)
