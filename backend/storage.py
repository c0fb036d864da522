"""The upload store: images on disk, metadata in SQLite, crash-safe.

Layout under `custom_dir` (the custom-dataset contract):

    <label>/<sha256>.png          the face crop, re-encoded PNG, named by its own sha256
    originals/<sha256>.<ext>      optional original photo (re-encoded, no EXIF), named by its sha256
    uploads.sqlite                metadata (WAL mode)

Design
------
* One row in `uploads` per stored crop (UNIQUE sha256): id (uuid4 hex), label, sha256, size, created.
  The same pixels can only carry one label: uploading them with another label is a conflict.
* One row in `claims` per contribution: every successful POST (first or duplicate) gets its own
  random deletion token, of which only the sha256 is stored. DELETE with a token withdraws that
  claim; the image and its row go when the last claim is withdrawn. So a duplicate upload never
  hands out power over somebody else's contribution, and each contributor can withdraw theirs.
* Writes are atomic: temp file in the destination folder -> fsync -> os.replace -> fsync(dir),
  all inside an SQLite `BEGIN IMMEDIATE` transaction (a cross-process write lock), committed
  only after the file is in place; any failure removes the new file and rolls back.
  Deletion renames the file aside, commits, then unlinks (restoring it if the commit fails).
* `recover()` (run at startup, under the same lock) deletes temp files, crop/original files named
  like ours that no row references, and rows whose crop file is missing. Files that do not look
  like ours (not `<64 hex>.<ext>`) are never touched, so hand-added images survive.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from contract import LABELS, ORIGINALS
from contract.files import TMP_PREFIX, atomic_write, temp_path

from .images import CleanImage

log = logging.getLogger("fer_hybrid.storage")

DB_NAME = "uploads.sqlite"
OUR_FILE = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp)$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id       TEXT PRIMARY KEY,
    label    TEXT NOT NULL,
    sha256   TEXT NOT NULL UNIQUE,
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    token_hash      TEXT PRIMARY KEY,
    upload_id       TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    created         TEXT NOT NULL,
    consent         INTEGER NOT NULL,
    source          TEXT,
    original_sha256 TEXT,
    original_ext    TEXT
);
CREATE INDEX IF NOT EXISTS claims_upload ON claims(upload_id);
"""


class UploadError(Exception):
    """A store-level refusal with an HTTP status and a user-facing message."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(frozen=True)
class StoredUpload:
    id: str
    label: str
    sha256: str
    deletion_token: str
    duplicate: bool


@dataclass
class RecoveryReport:
    temp_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    orphan_rows: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.temp_files) + len(self.orphan_files) + len(self.orphan_rows)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values, so a plain (fast) hash is enough: no password stretching.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()




class UploadStore:
    """Thread- and process-safe store of contributed face crops."""

    def __init__(self, root: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.busy_timeout_s = busy_timeout_s
        self._lock = (
            threading.Lock()
        )  # serialises writers in this process; SQLite does across processes
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # -- plumbing -----------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    def crop_path(self, label: str, sha256: str) -> Path:
        return self.root / label / f"{sha256}.png"

    def original_path(self, sha256: str, ext: str) -> Path:
        return self.root / ORIGINALS / f"{sha256}.{ext}"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.db_path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        """Exclusive writer section: in-process lock + SQLite's cross-process write lock."""
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- operations ---------------------------------------------------------------------------
    def add(
        self,
        crop: CleanImage,
        label: str,
        *,
        consent: bool,
        source: str | None = None,
        original: CleanImage | None = None,
    ) -> StoredUpload:
        if label not in LABELS:
            raise UploadError(422, f"unknown label {label!r}; use one of: {', '.join(LABELS)}")
        if not consent:
            raise UploadError(400, "consent is required to store a photo")
        token = secrets.token_urlsafe(32)
        created: list[Path] = []  # files this call brought into existence (removed on failure)
        try:
            with self._write_txn() as conn:
                row = conn.execute(
                    "SELECT id, label FROM uploads WHERE sha256 = ?", (crop.sha256,)
                ).fetchone()
                if row is not None and row[1] != label:
                    raise UploadError(
                        409,
                        "this exact image is already stored with a different label; "
                        "delete that upload first (with its deletion token) to relabel it",
                    )
                duplicate = row is not None
                upload_id = row[0] if duplicate else uuid.uuid4().hex
                now = _now()
                if not duplicate:
                    path = self.crop_path(label, crop.sha256)
                    if not path.exists():
                        atomic_write(path, crop.data)
                        created.append(path)
                    conn.execute(
                        "INSERT INTO uploads (id, label, sha256, width, height, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (upload_id, label, crop.sha256, crop.width, crop.height, now),
                    )
                orig_sha = orig_ext = None
                if original is not None:
                    orig_sha, orig_ext = original.sha256, original.extension
                    opath = self.original_path(orig_sha, orig_ext)
                    if not opath.exists():
                        atomic_write(opath, original.data)
                        created.append(opath)
                conn.execute(
                    "INSERT INTO claims (token_hash, upload_id, created, consent, source, "
                    "original_sha256, original_ext) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (hash_token(token), upload_id, now, int(consent), source, orig_sha, orig_ext),
                )
        except BaseException:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return StoredUpload(upload_id, label, crop.sha256, token, duplicate)

    def delete(self, upload_id: str, token: str | None) -> None:
        """Withdraw the claim holding `token`; remove the image when no claim is left."""
        if not UPLOAD_ID.match(upload_id or ""):
            raise UploadError(404, "no upload with this id")
        aside: list[tuple[Path, Path]] = []
        try:
            with self._write_txn() as conn:
                row = conn.execute(
                    "SELECT label, sha256 FROM uploads WHERE id = ?", (upload_id,)
                ).fetchone()
                if row is None:
                    raise UploadError(404, "no upload with this id")
                if not token:
                    raise UploadError(403, "the X-Deletion-Token header is required")
                wanted = hash_token(token)
                claims = conn.execute(
                    "SELECT token_hash, original_sha256, original_ext FROM claims WHERE upload_id = ?",
                    (upload_id,),
                ).fetchall()
                match = next((c for c in claims if hmac.compare_digest(c[0], wanted)), None)
                if match is None:
                    raise UploadError(403, "wrong deletion token for this upload")
                conn.execute("DELETE FROM claims WHERE token_hash = ?", (match[0],))
                doomed: list[Path] = []
                if (
                    match[1]
                    and not conn.execute(
                        "SELECT 1 FROM claims WHERE original_sha256 = ? LIMIT 1", (match[1],)
                    ).fetchone()
                ):
                    doomed.append(self.original_path(match[1], match[2]))
                if len(claims) == 1:
                    conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
                    doomed.append(self.crop_path(row[0], row[1]))
                for path in doomed:
                    if path.exists():
                        tmp = temp_path(path)
                        os.replace(path, tmp)
                        aside.append((path, tmp))
        except BaseException:
            for path, tmp in aside:  # the transaction rolled back: put the files back
                with contextlib.suppress(OSError):
                    os.replace(tmp, path)
            raise
        for _path, tmp in aside:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def stats(self) -> dict[str, int]:
        counts = dict.fromkeys(LABELS, 0)
        with self._connect() as conn:
            for label, n in conn.execute("SELECT label, COUNT(*) FROM uploads GROUP BY label"):
                if label in counts:
                    counts[label] = n
        return counts

    def rows(self) -> list[dict]:
        """All upload rows (for tests and tooling)."""
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM uploads ORDER BY created, id")]

    def claim_count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]

    # -- crash recovery -----------------------------------------------------------------------
    def recover(self) -> RecoveryReport:
        """Remove what an interrupted write or delete may have left behind."""
        report = RecoveryReport()
        folders = [self.root / label for label in LABELS] + [self.root / ORIGINALS]
        with self._write_txn() as conn:
            for folder in folders:
                if folder.is_dir():
                    for tmp in folder.glob(f"{TMP_PREFIX}*"):
                        with contextlib.suppress(OSError):
                            tmp.unlink()
                            report.temp_files.append(str(tmp))
            for upload_id, label, sha in conn.execute(
                "SELECT id, label, sha256 FROM uploads"
            ).fetchall():
                if not self.crop_path(label, sha).is_file():
                    conn.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
                    report.orphan_rows.append(upload_id)
            known = {
                (label, sha) for label, sha in conn.execute("SELECT label, sha256 FROM uploads")
            }
            originals = {
                f"{sha}.{ext}"
                for sha, ext in conn.execute(
                    "SELECT original_sha256, original_ext FROM claims WHERE original_sha256 IS NOT NULL"
                )
            }
            for label in LABELS:
                folder = self.root / label
                if not folder.is_dir():
                    continue
                for path in folder.iterdir():
                    ours = OUR_FILE.match(path.name) and path.suffix == ".png"
                    if ours and (label, path.stem) not in known:
                        path.unlink()
                        report.orphan_files.append(str(path))
            folder = self.root / ORIGINALS
            if folder.is_dir():
                for path in folder.iterdir():
                    if OUR_FILE.match(path.name) and path.name not in originals:
                        path.unlink()
                        report.orphan_files.append(str(path))
        if report.total:
            log.warning(
                "upload store recovery: removed %d temp file(s), %d orphan file(s), %d orphan row(s)",
                len(report.temp_files),
                len(report.orphan_files),
                len(report.orphan_rows),
            )
        return report
