"""CK+ ("CK+48": 981 48x48 crops, 3 peak frames per sequence).

Accepts ``ckplus48.npz`` (arrays x, y, class_names alphabetical: anger, contempt,
disgust, fear, happy, sadness, surprise) or the folder layout ``CK+48/<class>/*.png``.
"contempt" has no FER2013 class and is dropped by default (see labelmap).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.core.errors import FerError
from training.data.folders import load_class_folder
from training.data.npz import load_labelled_npz

DEFAULT_NAMES = ("ckplus48.npz", "CK+48", "ckplus48", "ckplus")


def load_ckplus(
    path: str | Path, *, contempt: str | None = None, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path).expanduser()
    if path.is_dir():
        x, y, _ = load_class_folder(path, contempt=contempt, progress=progress)
        return x, y
    if path.exists() or path.suffix == ".npz":
        return load_labelled_npz(path, "CK+", contempt=contempt)
    raise FerError(f"CK+ data {path} does not exist; pass --ckplus PATH (ckplus48.npz or CK+48/)")
