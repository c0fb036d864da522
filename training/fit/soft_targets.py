"""The soft-target file: an ensemble's probabilities on training images, for offline distillation.

`fer-hybrid ensemble RUN... --save-soft-targets FILE` writes it (`training.ensemble.teacher`);
`fer-hybrid train --soft-targets FILE` distils from it instead of running teacher models,
which may be gone by then (GPU slices are short; teachers stay on the machine that made them).

Format (an .npz, no pickles, written atomically):

    keys   uint8 (N, 16)  blake2b-128 of each image's exact uint8 pixels
                          (`training.data.images.pixel_hashes`, the digest the loaders
                          already use to drop aux images that duplicate val/test)
    probs  float16 (N, 7) the ensemble's probabilities, columns in `meta["labels"]` order
    meta   0-d str        JSON: schema, created, labels, members + weights, tta, data, counts

Images are matched by content, not by position, so a later run may load the data in another
order, draw another `--sample`, or add auxiliary sets: `lookup` finds what the file covers.
Each distinct image is stored once: FER2013 holds exact duplicates (some with different
labels), and the same pixels give the same teacher probabilities, so one row serves them all.
The probabilities are those of the un-augmented image (with flip TTA when the ensemble uses
it); the student sees augmented versions of it: standard offline distillation.

Standard library + numpy only: nothing here imports Keras.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE, LABELS, NUM_CLASSES, utc_now
from contract.files import atomic_output
from training.core.errors import FerError
from training.data.images import pixel_hashes

SCHEMA = "fer-hybrid/soft-targets@1"
KEY_BYTES = 16


@dataclass
class SoftTargets:
    """One row per distinct image: its content key and the teacher probabilities."""

    keys: np.ndarray  # uint8 (N, KEY_BYTES)
    probs: np.ndarray  # float16 (N, NUM_CLASSES)
    meta: dict = field(default_factory=dict)
    sha256: str | None = None  # of the file it was read from

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def image_keys(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 16) content keys of (N, 48, 48) (or (N, 48, 48, 1)) uint8 images."""
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[-1] == 1:  # the model-input layout: same pixels, same key
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise FerError(f"soft targets are for ({IMAGE_SIZE}, {IMAGE_SIZE}) grey images, got "
                       f"images of shape {x.shape[1:]}")
    if x.dtype != np.uint8:
        raise FerError(f"soft targets key uint8 images (raw grey levels), got {x.dtype}")
    digests = pixel_hashes(x)
    return np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), KEY_BYTES)


def from_images(x: np.ndarray, probs: np.ndarray, meta: dict) -> SoftTargets:
    """Soft targets of images `x` (duplicates collapse to their first row)."""
    probs = np.asarray(probs, dtype="float64")
    if probs.shape != (len(x), NUM_CLASSES):
        raise ValueError(f"probs {probs.shape} do not match {len(x)} images x {NUM_CLASSES}")
    keys = image_keys(x)
    _, first = np.unique(keys, axis=0, return_index=True)
    first = np.sort(first)  # keep the data's order: easier to read, same content
    meta = {**meta, "n_images": int(len(x)), "n_unique": int(len(first))}
    return SoftTargets(keys[first], probs[first].astype("float16"), meta)


def save(path: str | Path, targets: SoftTargets) -> Path:
    """Write `targets` to `path` atomically (a reader never sees half a file)."""
    meta = {"schema": SCHEMA, "created": utc_now(), "labels": list(LABELS), **targets.meta}
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        # np.savez is given a file object, so it does not append its own `.npz`.
        np.savez(fh, keys=np.asarray(targets.keys, np.uint8),
                 probs=np.asarray(targets.probs, np.float16), meta=np.array(json.dumps(meta)))
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """sha256 of a soft-target file (what a run pins in its config.json); FerError if absent."""
    return hashlib.sha256(_read_bytes(Path(path))).hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FerError(f"--soft-targets {path}: no such file; write one with `fer-hybrid "
                       f"ensemble RUN... --save-soft-targets {path}`") from None
    except OSError as err:
        raise FerError(f"--soft-targets {path}: cannot read it ({err})") from None


def load(path: str | Path, *, sha256: str | None = None) -> SoftTargets:
    """Read and check a soft-target file; with `sha256`, FerError unless it is that file.

    The digest is taken of the very bytes that are parsed, so a file replaced between the
    check and the read cannot slip through.
    """
    path = Path(path)
    raw = _read_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    if sha256 is not None and digest != sha256:
        raise FerError(f"--soft-targets {path} changed since the run started (sha256 "
                       f"{digest[:12]}..., the run recorded {sha256[:12]}...); put the "
                       f"original file back (or pass its new place with --soft-targets) "
                       f"or start a new run")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            missing = [k for k in ("keys", "probs", "meta") if k not in data.files]
            if missing:
                raise FerError(f"--soft-targets {path}: not a soft-target file (missing "
                               f"{', '.join(missing)}); write it with `fer-hybrid ensemble "
                               f"... --save-soft-targets`")
            keys, probs = np.asarray(data["keys"]), np.asarray(data["probs"])
            meta = json.loads(str(data["meta"]))
    except FerError:
        raise
    except Exception as err:  # a damaged zip, pickled arrays, bad JSON ...
        raise FerError(f"--soft-targets {path}: cannot read it ({err}); write it again") from err
    if meta.get("schema") != SCHEMA:
        raise FerError(f"--soft-targets {path}: schema {meta.get('schema')!r}, expected {SCHEMA}")
    if list(meta.get("labels", [])) != list(LABELS):
        raise FerError(f"--soft-targets {path}: its columns are {meta.get('labels')}, but the "
                       f"models output {list(LABELS)}; it was made for another label order")
    if keys.dtype != np.uint8 or keys.ndim != 2 or keys.shape[1] != KEY_BYTES \
            or probs.shape != (len(keys), NUM_CLASSES):
        raise FerError(f"--soft-targets {path}: keys {keys.shape} / probs {probs.shape} do not "
                       f"fit the format (N, {KEY_BYTES}) uint8 / (N, {NUM_CLASSES}); write it "
                       f"again")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise FerError(f"--soft-targets {path}: probabilities must be finite and >= 0")
    return SoftTargets(keys, probs, meta, sha256=digest)


def lookup(targets: SoftTargets, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Teacher probabilities for images `x`, matched by content -> (probs float32 (N, 7),
    covered bool (N,)). Rows of images the file does not cover are all zero."""
    index = {k.tobytes(): i for i, k in enumerate(targets.keys)}
    rows = np.array([index.get(k.tobytes(), -1) for k in image_keys(x)], dtype=np.int64)
    covered = rows >= 0
    probs = np.zeros((len(rows), NUM_CLASSES), np.float32)
    probs[covered] = targets.probs[rows[covered]].astype(np.float32)
    return probs, covered


def training_targets(path: str | Path, x: np.ndarray, *, sha256: str | None,
                     say=print) -> np.ndarray:
    """The per-image teacher probabilities a run trains with (zeros: not covered).

    Policy for training images the file does not cover (an extra aux set, SMOTE's synthetic
    images, another --sample): they are trained with the hard-label loss only, at full
    weight, and their count is reported. A file that covers none of them is a mistake (made
    for other data) and is refused.
    """
    targets = load(path, sha256=sha256)
    probs, covered = lookup(targets, x)
    n, hit = len(covered), int(covered.sum())
    if hit == 0:
        raise FerError(f"--soft-targets {path} covers none of the {n} training images (it has "
                       f"{len(targets)} images of other data); write it with the same data "
                       f"options (--data-dir/--fer2013/--aux/--sample) as this run")
    members = ", ".join(f"{m['name']}x{m['weight']:g}" for m in targets.meta.get("members", []))
    say(f"soft targets {path}: {hit} of {n} training images covered"
        + (f"; {n - hit} not covered train with the hard-label loss only" if hit < n else "")
        + (f" (ensemble {members}, flip TTA {'on' if targets.meta.get('tta') else 'off'})"
           if members else ""))
    return probs
