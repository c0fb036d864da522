"""Loading our .keras files: the names our own Keras classes are saved under, and the import
that registers them before any load (`load_model`).

A .keras file names a custom class by its registered name, "<PACKAGE>><ClassName>"
(e.g. "fer_hybrid>Trainer" in the checkpoints of a run with label smoothing, mixup or
distillation, "fer_hybrid>RandomErasing" in any run with random erasing,
"fer_hybrid>RandomBlur" and its siblings in a run with --robust-aug). Keras finds
the class only if it was registered under that exact name before the load, so both the
package and the class names are part of the file format: renaming either breaks every
saved checkpoint. The module the class lived in is recorded too but not needed once the
class is registered, which is why the classes may move between modules.

Keras is not imported here: the registering modules are imported only when asked.

`as_float32` turns a mixed-precision model (a `--precision bf16` run) back into float32 with
the same weights: what ships, and what the TF.js converter can write (it rejects bfloat16).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from training.core.errors import FerError
from training.core.runs import check_keras_file

PACKAGE = "fer_hybrid"

# Every module that registers a class under PACKAGE (`@register_keras_serializable`).
REGISTERING_MODULES = (
    "training.fit.augment", "training.fit.augment_robust", "training.fit.trainer",
)


def register_custom_objects() -> None:
    """Import every module that registers a class under PACKAGE; call before loading a model."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)


def load_model(path: str | Path, *, compile: bool = False, float32: bool = False):
    """Load one of our .keras files (Keras imported here); FerError if it cannot be read.

    float32: rebuild a mixed-precision model in float32 (`as_float32`): for inference and
    export; a training checkpoint must keep its precision (the default)."""
    path = Path(path)
    check_keras_file(path)  # missing, empty, not a zip: said before Keras loads
    import keras

    register_custom_objects()  # a training checkpoint may hold a Trainer and RandomErasing
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as err:  # corrupt, truncated or incompatible: the user's to fix
        raise FerError(f"cannot load {path}: {err}; re-train it or pass another model") from err
    return as_float32(model) if float32 else model


def _mixed(dtype) -> bool:
    """A layer config's dtype entry names a mixed-precision policy (e.g. mixed_bfloat16)."""
    return "mixed_" in str(dtype)


def is_mixed_precision(model) -> bool:
    """Any layer of `model` (nested models included) computes in a reduced precision."""
    return any(_mixed(layer.dtype_policy.name)
               for layer in model._flatten_layers(include_self=True, recursive=True)
               if getattr(layer, "dtype_policy", None) is not None)


def as_float32(model):
    """`model` itself if it is float32, else a float32 copy with the same weights (its
    mixed-precision layers rebuilt with dtype float32, nested models too)."""
    if not is_mixed_precision(model):
        return model
    import keras

    def float32_layer(layer):
        config = layer.get_config()
        if _mixed(config.get("dtype")):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=float32_layer, recursive=True)
        copy.set_weights(model.get_weights())
    except Exception as err:  # a model clone_model cannot rebuild (subclassed, ...)
        raise FerError(f"cannot rebuild {model.name} in float32 ({err}); export or evaluate "
                       f"a float32 model instead") from err
    return copy
