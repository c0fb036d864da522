"""The contract between the wings: what training writes and the server and the page read.

`training/` (heavy: Keras, TensorFlow) and `backend/` (light: never imports either) both
import this package and nothing else of each other's, so it imports only the standard
library. It owns:

- the classes and their order (`LABELS`): model output i is `LABELS[i]`, FER2013's own
  label order, which every dataset is mapped onto and the upload API accepts;
- the model input (`IMAGE_SIZE`, `INPUT_SHAPE`, `input_spec()`): raw grey levels 0..255,
  float32 NHWC, 48x48x1 — models normalise inside their own graph;
- the manifest (`contract.manifest`): `fer-hybrid export` writes `models/manifest.json`,
  the server and the page read it;
- the custom dataset's layout (`default_custom_dir()`, `ORIGINALS`): the server stores
  uploads as `<custom>/<label>/<sha256>.png`, training reads the label folders.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The repository (or installed project) root: this package lives directly below it.
REPO_ROOT = Path(__file__).resolve().parents[1]

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(LABELS)

#: FER2013's usage names for our split keys (the manifest names the split it measured on).
SPLIT_TITLES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}

IMAGE_SIZE = 48
INPUT_SHAPE: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 1)


def input_spec(height: int = IMAGE_SIZE, width: int = IMAGE_SIZE,
               channels: int = 1) -> dict[str, Any]:
    """The manifest's description of the model input: raw grey levels 0..255, float32 NHWC."""
    return {
        "height": height,
        "width": width,
        "channels": channels,
        "color": "grayscale" if channels == 1 else "rgb",
        "dtype": "float32",
        "range": [0, 255],
        "layout": "NHWC",
    }


# -- the custom dataset: <custom>/<label>/<sha256>.png (+ originals/, uploads.sqlite) ----------

CUSTOM_DIR_ENV = "FER_HYBRID_CUSTOM_DIR"
#: Original photos the server keeps beside the crops; not a label folder, never trained on.
ORIGINALS = "originals"


def default_custom_dir() -> Path:
    """Where uploads are stored and read: $FER_HYBRID_CUSTOM_DIR, else <repo>/data/custom."""
    env = os.environ.get(CUSTOM_DIR_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "data" / "custom"


def utc_now() -> str:
    """The timestamp every JSON file of the project carries: ISO-8601 UTC, seconds, "Z"."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
