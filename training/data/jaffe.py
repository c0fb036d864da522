"""JAFFE (213 images of 10 Japanese female subjects).

Accepts ``jaffe_128.npz`` (x (213,128,128), y, class_names angry, disgust, fear,
happy, neutral, sad, surprise), a class-folder layout (``<code or name>/*``, e.g.
``AN/KA.AN1.39.tiff.png``), or a flat folder of original files named
``<subject>.<CODE><n>.<number>.tiff`` where CODE is AN/DI/FE/HA/NE/SA/SU.
Images are resized to 48x48 (Lanczos).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from training.core.errors import FerError
from training.data.folders import list_class_folder, read_images
from training.data.images import is_image_file
from training.data.labelmap import map_name
from training.data.npz import load_labelled_npz

DEFAULT_NAMES = ("jaffe_128.npz", "jaffe.npz", "jaffe")
CODE_RE = re.compile(r"^[A-Za-z]{2}\.([A-Za-z]{2})\d*\.\d+")


def code_of(name: str) -> str | None:
    """JAFFE expression code from a file name: 'KA.AN1.39.tiff' -> 'AN'."""
    m = CODE_RE.match(name)
    return m.group(1).upper() if m else None


def load_jaffe(path: str | Path, *, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path).expanduser()
    if path.is_dir():
        flat = sorted(p for p in path.iterdir() if is_image_file(p))
        if flat:
            labels = []
            for p in flat:
                code = code_of(p.name)
                if code is None:
                    raise FerError(
                        f"JAFFE file {p} has no expression code in its name "
                        "(expected e.g. KA.AN1.39.tiff); rename or remove it"
                    )
                labels.append(map_name(code, where=str(p)))
            return read_images(flat, desc="scan jaffe", progress=progress), np.asarray(
                labels, np.int64
            )
        files, labels = list_class_folder(path)
        return read_images(files, desc="scan jaffe", progress=progress), np.asarray(
            labels, np.int64
        )
    if path.exists() or path.suffix == ".npz":
        return load_labelled_npz(path, "JAFFE")
    raise FerError(
        f"JAFFE data {path} does not exist; pass --jaffe PATH (jaffe_128.npz or a folder)"
    )
