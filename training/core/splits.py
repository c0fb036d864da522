"""Split keys and their aliases: `test` (FER2013's PrivateTest), `val` (PublicTest), `train`.

Every command accepts either name (`normalise_split`); files and reports use the key. The data
stage reads splits by key, the run folder names its predictions by key, so the names live
here, below both.
"""

from __future__ import annotations

from contract import SPLIT_TITLES
from training.core.errors import FerError

SPLITS = ("test", "val", "train")
_SPLIT_ALIASES = {
    "test": "test", "privatetest": "test",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "train": "train", "training": "train",
}


def normalise_split(split: str) -> str:
    """'test'/'PrivateTest' -> 'test', 'val'/'PublicTest' -> 'val', 'train' -> 'train'."""
    key = str(split).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise FerError(
            f"unknown split {split!r}; use one of test (PrivateTest), val (PublicTest), train"
        )
    return _SPLIT_ALIASES[key]


def split_title(split: str) -> str:
    split = normalise_split(split)
    return f"{split} ({SPLIT_TITLES[split]})"
