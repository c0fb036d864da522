"""The `Dataset` container and small array helpers shared by the loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from contract import IMAGE_SIZE, LABELS


@dataclass
class Dataset:
    """Images with FER2013 labels.

    x: uint8 (N, H, W) grayscale (default 48x48) or (N, H, W, 3) with rgb=True.
    y: int64 (N,), index into LABELS.
    source: str (N,), e.g. "fer2013", "ckplus", "jaffe", "custom", "folder".
    meta: free-form notes from the loader (e.g. duplicates dropped); optional.
    """

    x: np.ndarray
    y: np.ndarray
    source: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def counts(self) -> np.ndarray:
        """Images per class, (7,) int64 in LABELS order."""
        return np.bincount(np.asarray(self.y, dtype="int64"), minlength=len(LABELS))[: len(LABELS)]

    def subset(self, index) -> Dataset:
        return Dataset(self.x[index], self.y[index], self.source[index], dict(self.meta))


def make(x: np.ndarray, y, source: str | np.ndarray) -> Dataset:
    """Build a Dataset with the contract dtypes."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if isinstance(source, str):
        source = np.full(len(y), source, dtype=f"<U{max(len(source), 1)}")
    return Dataset(x, y, np.asarray(source, dtype=str))


def empty(shape=(IMAGE_SIZE, IMAGE_SIZE)) -> Dataset:
    return make(np.zeros((0, *shape), np.uint8), np.zeros(0, np.int64), np.zeros(0, dtype="<U1"))


def concat(parts: list[Dataset], shape=(IMAGE_SIZE, IMAGE_SIZE)) -> Dataset:
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty(shape)
    if len(parts) == 1:
        return make(parts[0].x, parts[0].y, parts[0].source)
    return make(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        np.concatenate([p.source.astype(str) for p in parts]),
    )
