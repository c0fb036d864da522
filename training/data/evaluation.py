"""A split ready to measure on: its images, labels and FER+ votes (`EvalData`, `load_eval_split`).

Export measures the converted ensemble on it, robustness corrupts it, calibration fits a
temperature on it; each command loads it before the slow work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract.manifest import SPLIT_NAMES
from training.core.errors import FerError
from training.core.splits import normalise_split
from training.data.ferplus import FerPlusVotes, votes_for_split
from training.data.splits import split_loader


@dataclass
class EvalData:
    """Labelled images to measure a model on (export, robustness, calibration).

    The caller loads them (`load_eval_split` for a dataset split) before the slow work (a
    conversion, a sweep of corruptions), so a missing dataset fails fast. split_key names the
    metrics: "test" (PrivateTest) and "val" (PublicTest) are the dataset's splits, "sample" any
    other labelled arrays.
    """

    split_key: str
    x: np.ndarray  # uint8 (N, H, W) grey images
    y: np.ndarray  # (N,) class indices
    votes: FerPlusVotes | None = None  # the same rows' FER+ votes, for agreement with people
    votes_note: str = ""  # where the votes came from, or why there are none

    def __post_init__(self) -> None:
        if self.split_key not in (*SPLIT_NAMES, "sample"):
            raise FerError(f"unknown evaluation split {self.split_key!r}; use test, val or sample")
        self.x, self.y = np.asarray(self.x), np.asarray(self.y)
        if len(self.x) == 0 or len(self.x) != len(self.y):
            raise FerError("the evaluation split is empty or x/y lengths differ; check the dataset")

    @property
    def split_name(self) -> str:
        """The name the manifest records: PrivateTest, PublicTest or sample."""
        return SPLIT_NAMES.get(self.split_key, self.split_key)


def load_eval_split(split: str, *, data_dir: Path | None = None,
                    fer2013: Path | None = None, ferplus: Path | None = None) -> EvalData:
    """Split "test"/"PrivateTest" or "val"/"PublicTest" of the dataset, ready to measure on,
    with its FER+ votes when they are there (`training.data.ferplus.votes_for_split`)."""
    split = normalise_split(split)
    if split not in SPLIT_NAMES:
        raise FerError(f"unknown evaluation split {split!r}; use test, val or none")

    x, y = split_loader(data_dir, fer2013)(split)
    votes, note = votes_for_split(split, data_dir=data_dir, fer2013=fer2013, ferplus=ferplus)
    return EvalData(split, x, y, votes, note)
