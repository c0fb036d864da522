"""The curated custom dataset: review states, the custom holdout, and a read-only view of the
upload store for training.

The server (`backend/storage.py`) writes the review state of each upload into its SQLite store;
training reads it here, with the standard library only, so that neither wing imports the other.

- Review states: every upload starts `pending`; a curator accepts or rejects it, or relabels it
  (accepted, with the curator's label kept beside the contributor's). Training uses accepted
  uploads only unless asked for all.
- Relabelling never moves the crop: it stays in the contributor's label folder
  (`<custom>/<label>/<sha256>.png`) and the curator's label lives in the database. Moving the
  file would add a second crash-safe rename (and its recovery rules) to every review, and the
  deletion and recovery code finds a crop by its contributor label; a column update is one atomic
  SQLite write. So the folder layout alone no longer tells the label of a reviewed upload:
  training reads labels from here.
- The custom holdout: one accepted upload in HOLDOUT_EVERY, chosen from the crop's sha256, so
  the split is stable (the same face is always on the same side, whatever else is uploaded or
  deleted) and needs no stored state. Holdout faces never train, under any option; they are the
  one test set that looks like the app's real users. Accuracy on it is reported once it holds
  HOLDOUT_MIN faces: below that one face moves the number by more than 2 points.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from contract import LABELS

DB_NAME = "uploads.sqlite"

PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"
#: Every review state, the first being the one a new (or migrated) upload gets.
REVIEW_STATES: tuple[str, ...] = (PENDING, ACCEPTED, REJECTED)

#: One face in this many (by sha256) is held out; 5 keeps 80 % of accepted faces for training.
HOLDOUT_EVERY = 5
#: Faces the holdout must hold before an accuracy on it is reported.
HOLDOUT_MIN = 50
HOLDOUT_TITLE = "custom holdout"

#: Which uploads train: the curated ones (default) or every upload but the holdout.
UPLOAD_CHOICES = ("accepted", "all")


def in_holdout(sha256: str) -> bool:
    """True when the crop with this sha256 (64 hex digits) belongs to the custom holdout.

    The crop's sha256 is already a uniform hash of its pixels, so its first 32 bits modulo
    HOLDOUT_EVERY pick a fixed fifth without a second hash.
    """
    return int(sha256[:8], 16) % HOLDOUT_EVERY == 0


@dataclass(frozen=True)
class CustomUpload:
    """One stored upload as training sees it."""

    id: str
    sha256: str
    label: str  # the contributor's
    curator_label: str | None
    state: str
    path: Path  # the crop file (in the contributor's label folder)

    @property
    def training_label(self) -> str:
        """The label training and the holdout use: the curator's when there is one."""
        return self.curator_label or self.label

    @property
    def holdout(self) -> bool:
        return in_holdout(self.sha256)


class StoreError(ValueError):
    """An upload store that cannot be read (the message names the file and says why)."""


def store_path(custom_dir: Path) -> Path:
    return Path(custom_dir) / DB_NAME


def read_uploads(custom_dir: Path) -> list[CustomUpload]:
    """Every upload of the store in `custom_dir`, oldest first, read-only; [] without a store.

    A store written before reviews existed has no review columns: its uploads read as pending
    (the server adds the columns when it next opens the store).
    """
    db = store_path(custom_dir)
    if not db.is_file():
        return []
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(uploads)")}
        review = "review" if "review" in columns else f"'{PENDING}'"
        curator = "curator_label" if "curator_label" in columns else "NULL"
        rows = conn.execute(
            f"SELECT id, sha256, label, {curator}, {review} FROM uploads ORDER BY created, id"
        ).fetchall()
    except sqlite3.DatabaseError as err:  # a damaged or foreign file: say which, not a traceback
        raise StoreError(f"{db} is not a readable upload store ({err}); move it aside to train "
                         "on the label folders as they are") from err
    finally:
        conn.close()
    root = Path(custom_dir)
    return [
        CustomUpload(uid, sha, label, cur, state, root / label / f"{sha}.png")
        for uid, sha, label, cur, state in rows
        if label in LABELS
    ]


def training_uploads(uploads: list[CustomUpload], which: str = "accepted") -> list[CustomUpload]:
    """The uploads that train: accepted ones (or all with which="all"), never the holdout."""
    if which not in UPLOAD_CHOICES:
        raise ValueError(
            f"unknown upload choice {which!r}; use one of: {', '.join(UPLOAD_CHOICES)}"
        )
    return [u for u in uploads if not u.holdout and (which == "all" or u.state == ACCEPTED)]


def holdout_uploads(uploads: list[CustomUpload]) -> list[CustomUpload]:
    """The custom holdout: accepted uploads whose sha256 puts them on the held-out side."""
    return [u for u in uploads if u.holdout and u.state == ACCEPTED]
