"""FER+ votes: ten annotators per FER2013 image, aligned row by row with the Kaggle CSV.

Microsoft's FER+ (MIT licence) re-labelled every FER2013 image with ten crowd votes over ten
columns; ``fer2013new.csv`` has one row per FER2013 CSV row, in the same order::

    Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF

The votes are a companion of FER2013, never a dataset of their own: `load_ferplus` checks that
they line up with the FER2013 arrays loaded from the same folder (same row count, the same Usage
on every row) and refuses them with a message that says where they part otherwise.

`COLUMN_CLASS` is the one place that maps FER+ columns onto our seven classes; contempt,
unknown and NF ("not a face") have no FER2013 class.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import LABELS
from training.core.errors import FerError
from training.data.fer2013 import USAGES, FerArrays, _read_bytes

FERPLUS_NAMES = ("fer2013new.csv", "fer2013new.csv.gz")
COLUMNS = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
    "unknown",
    "NF",
)
#: FER+ column -> our class (contract.LABELS), None where FER2013 has no such class.
COLUMN_CLASS: dict[str, str | None] = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": None,
    "unknown": None,
    "NF": None,
}
#: For each of our classes (LABELS order), its column in COLUMNS.
CLASS_COLUMNS = tuple(
    COLUMNS.index(next(c for c, k in COLUMN_CLASS.items() if k == label)) for label in LABELS
)


@dataclass
class FerPlusVotes:
    """votes uint8 (N, 10) in COLUMNS order; usage uint8 (N,) coded like FerArrays.usage."""

    votes: np.ndarray
    usage: np.ndarray

    def split(self, usage: str) -> FerPlusVotes:
        keep = self.usage == USAGES.index(usage)
        return FerPlusVotes(self.votes[keep], self.usage[keep])

    @property
    def seven(self) -> np.ndarray:
        """Votes for our seven classes (N, 7), in LABELS order."""
        return self.votes[:, CLASS_COLUMNS]

    @property
    def scored(self) -> np.ndarray:
        """Rows the agreement metric counts (N,) bool: the most-voted column (over all ten) is
        one of our seven classes. A row whose top vote is contempt, unknown or NF, or tied
        only among those, is left out; a tie between one of ours and another column counts."""
        top = self.votes.max(axis=1)
        return (top > 0) & (self.seven.max(axis=1) == top)


def strict_majority(votes: FerPlusVotes) -> tuple[np.ndarray, np.ndarray]:
    """(labels, rows): the strict reading of the votes, one label per row: the most-voted
    column with a tie broken by the first FER+ column; `rows` (N,) bool keeps the rows whose
    label so chosen is one of our seven classes, `labels` (N,) their class index (-1 elsewhere)."""
    first = votes.votes.argmax(axis=1)  # numpy's argmax takes the first of tied columns
    column_to_class = np.full(len(COLUMNS), -1, dtype="int64")
    for i, col in enumerate(CLASS_COLUMNS):
        column_to_class[col] = i
    labels = column_to_class[first]
    rows = (votes.votes.max(axis=1) > 0) & (labels >= 0)
    return np.where(rows, labels, -1), rows


def find_ferplus(fer2013_path: str | Path) -> Path | None:
    """The votes file next to the FER2013 file (or in the folder given), None if there is none."""
    folder = Path(fer2013_path).expanduser()
    folder = folder if folder.is_dir() else folder.parent
    for name in FERPLUS_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def parse_ferplus(raw: bytes, name: str = "fer2013new.csv") -> FerPlusVotes:
    """Parse the votes CSV (bytes); FerError naming the first bad line."""
    reader = csv.reader(io.StringIO(raw.decode("utf-8", errors="replace")))
    header = next(reader, None)
    expected = ["Usage", "Image name", *COLUMNS]
    if header is None or [h.strip() for h in header] != expected:
        raise FerError(
            f"{name} is not a FER+ votes file: its header should be {','.join(expected)}"
        )
    votes, usage = [], []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            if len(row) != len(expected):
                raise ValueError(f"{len(row)} fields instead of {len(expected)}")
            usage.append(USAGES.index(row[0]))
            counts = [int(v) for v in row[2:]]
            if min(counts) < 0 or max(counts) > 255:
                raise ValueError("a vote count outside 0..255")
            votes.append(counts)
        except ValueError as err:
            raise FerError(f"{name} line {line} is malformed ({err})") from None
    return FerPlusVotes(
        np.asarray(votes, dtype="uint8").reshape(-1, len(COLUMNS)), np.asarray(usage, dtype="uint8")
    )


def load_ferplus(path: str | Path, fer: FerArrays) -> FerPlusVotes:
    """The votes at `path`, checked to line up with `fer` row by row (FerError otherwise)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FerError(f"FER+ votes file {path} does not exist; pass --ferplus PATH")
    votes = parse_ferplus(_read_bytes(path, "re-download the FER+ votes file"), path.name)
    if len(votes.usage) != len(fer.usage):
        raise FerError(
            f"{path.name} has {len(votes.usage)} rows but the FER2013 data has "
            f"{len(fer.usage)}: the votes must be the FER+ file aligned with this exact CSV"
        )
    differ = np.flatnonzero(votes.usage != fer.usage)
    if differ.size:
        row = int(differ[0])
        raise FerError(
            f"{path.name} is not aligned with the FER2013 data: row {row + 1} is "
            f"{USAGES[votes.usage[row]]} there but {USAGES[fer.usage[row]]} in FER2013 "
            f"({differ.size} rows differ)"
        )
    return votes


def load_votes(
    *,
    data_dir: str | Path | None = None,
    fer2013: str | Path | None = None,
    ferplus: str | Path | None = None,
) -> tuple[FerArrays | None, FerPlusVotes | None, str]:
    """The FER2013 arrays and the votes lined up with them, and a line saying where the votes
    came from; or (None, None, a line saying why there are none: no votes file or no FER2013
    data). A votes file that is there but does not line up with the FER2013 data is an error
    (FerError), not a silent skip: anything computed from it would be meaningless.
    """
    from training.data.splits import default_data_dir, find_fer2013, load_fer_source

    if fer2013 is None:
        folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        try:
            fer2013 = find_fer2013(folder)
        except FerError:
            if ferplus is not None:
                raise
            return None, None, f"no FER2013 data in {folder}: FER+ agreement not computed"
    path = Path(ferplus).expanduser() if ferplus is not None else find_ferplus(fer2013)
    if path is None:
        return None, None, (
            f"no FER+ votes ({' or '.join(FERPLUS_NAMES)}) next to {fer2013}: FER2013 accuracy "
            "only (pass --ferplus PATH to add agreement with the ten-annotator votes)"
        )
    fer, _ = load_fer_source(fer2013, progress=False)
    return fer, load_ferplus(path, fer), f"FER+ votes: {path}"


def votes_for_split(
    split: str,
    *,
    data_dir: str | Path | None = None,
    fer2013: str | Path | None = None,
    ferplus: str | Path | None = None,
) -> tuple[FerPlusVotes | None, str]:
    """The votes of one split (`train`/`val`/`test`) and a line saying where they came from,
    or None and a line saying why there are none (`load_votes`)."""
    from contract import SPLIT_TITLES

    _, votes, note = load_votes(data_dir=data_dir, fer2013=fer2013, ferplus=ferplus)
    return (votes.split(SPLIT_TITLES[split]) if votes is not None else None), note
