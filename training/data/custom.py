"""The custom dataset built by the web app's uploads: ``<custom>/<label>/<sha256>.png``.

Only folders named after one of the 7 labels count; the server's other entries
(``originals/``, ``uploads.sqlite``, temp files) are ignored, as are empty label
folders. Images of any size/mode are converted to 48x48 grayscale.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from contract import default_custom_dir
from training.core.errors import FerError
from training.data.folders import load_class_folder

log = logging.getLogger(__name__)


def load_custom(
    path: str | Path | None = None, *, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path).expanduser() if path else default_custom_dir()
    if not path.is_dir():
        raise FerError(
            f"custom dataset {path} does not exist; upload labelled faces in the web app "
            "first, or set FER_HYBRID_CUSTOM_DIR / --custom"
        )
    x, y, _ = load_class_folder(path, strict=False, progress=progress)
    if not len(y):
        log.warning("custom dataset %s holds no labelled images yet", path)
    return x, y
