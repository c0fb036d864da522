"""Loading our .keras files: the names our own Keras classes are saved under, and the import
that registers them before any load (`load_model`).

A .keras file names a custom class by its registered name, "<PACKAGE>><ClassName>"
(e.g. "fer_hybrid>Trainer" in the checkpoints of a run with label smoothing, mixup or
distillation, "fer_hybrid>RandomErasing" in any run with random erasing). Keras finds
the class only if it was registered under that exact name before the load, so both the
package and the class names are part of the file format: renaming either breaks every
saved checkpoint. The module the class lived in is recorded too but not needed once the
class is registered, which is why the classes may move between modules.

Keras is not imported here: the registering modules are imported only when asked.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from training.errors import FerError

PACKAGE = "fer_hybrid"

# Every module that registers a class under PACKAGE (`@register_keras_serializable`).
REGISTERING_MODULES = ("training.augment", "training.trainer")


def register_custom_objects() -> None:
    """Import every module that registers a class under PACKAGE; call before loading a model."""
    for module in REGISTERING_MODULES:
        importlib.import_module(module)


def load_model(path: str | Path, *, compile: bool = False):
    """Load one of our .keras files (Keras imported here); FerError if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FerError(f"model file {path} not found")
    import keras

    register_custom_objects()  # a training checkpoint may hold a Trainer and RandomErasing
    try:
        return keras.saving.load_model(path, compile=compile)
    except Exception as err:  # corrupt, truncated or incompatible: the user's to fix
        raise FerError(f"cannot load {path}: {err}; re-train it or pass another model") from err
