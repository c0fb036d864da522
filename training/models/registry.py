"""Name -> builder registry for the model zoo, with per-model training defaults.

A model module registers its builder with a decorator:

    @register("baseline_cnn", lr=0.01)
    def baseline_cnn(input_shape, num_classes, *, dropout=0.5): ...

The keywords of `register` are the model's `TrainingDefaults` (`get_defaults(name)`): what
`fer-hybrid train` uses for every hyper-parameter the user leaves out.

`build_model(name, **options)` looks the name up and passes the options on;
an unknown name or option is a `FerError` (a user mistake, not a bug).

`MODEL_NAMES` is known without importing Keras (each architecture lives in the module of
the same name, imported on first use), so a CLI can reject a wrong name in milliseconds.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass

from contract import INPUT_SHAPE, NUM_CLASSES
from training.errors import FerError


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

_BUILDERS: dict[str, Callable] = {}
DEFAULTS: dict[str, TrainingDefaults] = {}


def register(name: str, **defaults):
    """Decorator registering a builder and its training defaults: `@register("vgg", lr=0.01)`."""

    def wrap(fn: Callable) -> Callable:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} registered twice")
        _BUILDERS[name] = fn
        DEFAULTS[name] = TrainingDefaults(**defaults)
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
    """Per-model training defaults (lr, batch size, epochs, optimizer, weight decay)."""
    _load(name)
    return DEFAULTS[name]


def model_options(name: str) -> list[str]:
    """Keyword options the builder of `name` accepts."""
    _load(name)
    sig = inspect.signature(_BUILDERS[name])
    return [p.name for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def build_model(name: str, *, input_shape=INPUT_SHAPE, num_classes: int = NUM_CLASSES, **options):
    """Build the uncompiled keras.Model registered as `name`.

    Options that are None are dropped (so a CLI can pass every flag through);
    an option the architecture does not take is a FerError naming the valid ones.
    """
    _load(name)
    options = {k: v for k, v in options.items() if v is not None}
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise FerError(
            f"model {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(valid) or 'no options'}"
        )
    return _BUILDERS[name](tuple(input_shape), int(num_classes), **options)
