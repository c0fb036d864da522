"""Shared loader for the labelled .npz datasets (arrays x, y, class_names)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE
from training.core.errors import FerError
from training.data.images import resize_batch
from training.data.labelmap import map_names

REQUIRED = ("x", "y", "class_names")


def load_labelled_npz(
    path: str | Path, what: str, *, contempt: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (N,48,48), y int64 FER2013 indices); classes mapping to None are dropped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FerError(f"{what} file {path} does not exist; pass its path or put it in --data-dir")
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in REQUIRED if k not in d.files]
            if missing:
                raise FerError(
                    f"{path} lacks array(s) {', '.join(missing)} (has {', '.join(d.files)}); "
                    f"a {what} .npz needs x, y and class_names"
                )
            x, y, names = d["x"], d["y"], d["class_names"]
    except FerError:
        raise
    except Exception as err:  # noqa: BLE001 - any unreadable npz
        raise FerError(f"cannot read {path} as .npz ({err}); re-download the {what} file") from None
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x.mean(axis=-1) if x.shape[-1] == 3 else x[..., 0]
    if x.ndim != 3 or len(x) != len(y):
        raise FerError(
            f"{path}: x has shape {x.shape} and y {y.shape}; expected (N,H,W) images and N labels"
        )
    mapping = map_names([str(n) for n in names], contempt=contempt, where=str(path))
    y = np.asarray(y, np.int64)
    if y.size and (y.min() < 0 or y.max() >= len(mapping)):
        raise FerError(f"{path}: labels run outside class_names (0..{len(mapping) - 1})")
    fer = np.array([-1 if m is None else m for m in mapping], np.int64)
    new_y = fer[y] if y.size else y
    keep = new_y >= 0
    x = np.clip(np.round(x), 0, 255).astype(np.uint8) if x.dtype != np.uint8 else x
    return resize_batch(x[keep], IMAGE_SIZE), new_y[keep]
