"""The custom dataset built by the web app's uploads: ``<custom>/<label>/<sha256>.png``.

With the server's upload store (``uploads.sqlite``) beside the crops, what trains is decided
by the curator's review (``contract.review``): accepted uploads only by default, every upload
with ``uploads="all"``, with the curator's label where they relabelled one, and never a face of
the custom holdout. The labels come from the store, not the folders: a relabelled crop stays in
its contributor's folder (``contract/review.py`` says why). Files in the label folders that the
store does not know (hand-added) are not used; a hand-curated folder goes in with ``--folder``.

Without a store (a folder made by hand) every image in a label folder counts, as before:
nobody uploaded them, so there is nothing to review. Only folders named after one of the 7
labels count; ``originals/`` and temp files are ignored. Images of any size/mode are
converted to 48x48 grayscale.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from contract import LABELS, default_custom_dir
from contract.review import (
    HOLDOUT_EVERY,
    UPLOAD_CHOICES,
    CustomUpload,
    holdout_uploads,
    read_uploads,
    store_path,
    training_uploads,
)
from training.core.errors import FerError
from training.data.folders import load_class_folder, read_images

log = logging.getLogger(__name__)


def _custom_dir(path: str | Path | None) -> Path:
    path = Path(path).expanduser() if path else default_custom_dir()
    if not path.is_dir():
        raise FerError(
            f"custom dataset {path} does not exist; upload labelled faces in the web app "
            "first, or set FER_HYBRID_CUSTOM_DIR / --custom"
        )
    return path


def _arrays(uploads: list[CustomUpload], progress: bool | None) -> tuple[np.ndarray, np.ndarray]:
    # A row whose file is gone (a deletion the server has not settled) is skipped: the server's
    # recovery removes such rows when it next starts.
    present = [u for u in uploads if u.path.is_file()]
    x = read_images([u.path for u in present], desc="scan custom", progress=progress)
    y = np.asarray([LABELS.index(u.training_label) for u in present], np.int64)
    return x, y


def load_custom(
    path: str | Path | None = None,
    *,
    uploads: str = "accepted",
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the custom images that train: see the module docstring."""
    if uploads not in UPLOAD_CHOICES:
        raise FerError(
            f"unknown --custom-uploads {uploads!r}; use one of: {', '.join(UPLOAD_CHOICES)}"
        )
    path = _custom_dir(path)
    if not store_path(path).is_file():
        x, y, _ = load_class_folder(path, strict=False, progress=progress)
        if not len(y):
            log.warning("custom dataset %s holds no labelled images yet", path)
        return x, y
    every = read_uploads(path)
    chosen = training_uploads(every, uploads)
    held = sum(u.holdout for u in every)
    log.info(
        "custom uploads in %s: %d train (%s), %d of %d in the holdout (1 in %d, never trained)",
        path,
        len(chosen),
        "accepted only" if uploads == "accepted" else "every state",
        held,
        len(every),
        HOLDOUT_EVERY,
    )
    if not chosen and uploads == "accepted":
        log.warning(
            "custom dataset %s has no accepted uploads to train on yet; review them with "
            "`fer-hybrid data review`",
            path,
        )
    return _arrays(chosen, progress)


def load_custom_holdout(
    path: str | Path | None = None, *, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the custom holdout (accepted uploads the sha256 holds out); empty without a
    store or a custom folder: a test set that does not exist yet holds no faces."""
    path = Path(path).expanduser() if path else default_custom_dir()
    if not path.is_dir() or not store_path(path).is_file():
        return _arrays([], progress)
    return _arrays(holdout_uploads(read_uploads(path)), progress)
