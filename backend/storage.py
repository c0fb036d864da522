"""The upload store: images on disk, metadata in SQLite, crash-safe.

Layout under `custom_dir` (the custom-dataset contract):

    <label>/<sha256>.png          the face crop, re-encoded PNG, named by its own sha256
    originals/<sha256>.<ext>      optional original photo (re-encoded, no EXIF), named by its sha256
    uploads.sqlite                metadata (WAL mode)

Design
------
* One row in `uploads` per stored crop (UNIQUE sha256): id (uuid4 hex), label, sha256, size, created,
  bytes (the PNG's size on disk).
  The same pixels can only carry one label: uploading them with another label is a conflict.
* One row in `claims` per contribution: every successful POST (first or duplicate) gets its own
  random deletion token, of which only the sha256 is stored. DELETE with a token withdraws that
  claim; the image and its row go when the last claim is withdrawn. So a duplicate upload never
  hands out power over somebody else's contribution, and each contributor can withdraw theirs.
* A claim may carry the sha256 of a client-chosen idempotency key (`key_hash`, UNIQUE). The
  deletion token of such a claim is derived from the key (HMAC-SHA256 under a random secret kept
  in the `meta` table), so sending the same key again with the same crop, label and original
  adds nothing and returns the same token (`resent`), however many re-sends run at once. That is
  how a contributor whose upload was committed but never acknowledged (crash, lost response)
  gets a working token. The same key with other pixels, label or original is a 409.
* Quota: `usage()` is SUM(uploads.bytes) plus the distinct originals' `claims.original_bytes`
  (what this store wrote; hand-added files are not counted) plus CLAIM_ROW_BYTES per claim (its
  row and index entries). `add` refuses with 507 what would take it over `Quota`: a duplicate
  adds no file but a row, so it is refused too once the quota is reached; a re-send adds nothing
  and is always answered.
* `SCHEMA_VERSION` is kept in `PRAGMA user_version`; older stores are migrated in place when
  opened (version 1 -> 2 adds the byte counts, filled from the files on disk, and `key_hash`;
  2 -> 3 adds `meta` with the token secret; 3 -> 4 adds the review columns, every existing upload
  `pending`).
* Review (`review`): each upload has a review state (`contract.review`: pending, accepted,
  rejected) and, when a curator relabelled it, `curator_label` beside the contributor's `label`.
  A batch of ids is one `BEGIN IMMEDIATE` transaction: every id is checked before anything is
  written, so a batch applies fully or not at all, also when the process dies during it. The
  crop stays in the contributor's label folder (why: `contract/review.py`). A contributor's
  DELETE does not look at the review state: withdrawing wins at any state.
* Writes are atomic: temp file in the destination folder -> fsync -> os.replace -> fsync(dir),
  all inside an SQLite `BEGIN IMMEDIATE` transaction (a cross-process write lock), committed
  only after the file is in place; any failure removes the new file and rolls back.
  Deletion renames the files it removes aside (`.deleting-<name>`, same folder), commits, then
  unlinks them (renaming them back if the commit fails). So a reader never sees a row whose file
  is gone, and a crash at any point is undone or finished by recovery, never half done. A label
  folder (or originals/) left empty by a deletion is removed, under the same write lock, so an
  upload cannot be writing into it at that moment (`atomic_write` makes the folder again).
* A full disk: an upload that meets it (ENOSPC writing a file, SQLITE_FULL committing) is a 507
  that stores nothing. A deletion needs a few pages of free disk too (SQLite writes its WAL
  before it frees anything), so the store keeps a `.reserve` file of RESERVE_BYTES: a DELETE
  that meets a full disk gives it up and tries once more, and it is made again once a deletion
  has freed space. So contributors can withdraw their photos while the disk is full.
* `recover()` (run at startup, under the same lock) first settles interrupted deletions: a file
  moved aside whose row or claim is still there (the deletion never committed) is renamed back,
  one that nothing refers to any more is removed. Then it deletes temp files, crop/original files
  named like ours that no row references, and rows whose crop file is missing. Files that do not
  look like ours (not `<64 hex>.<ext>`) are never touched, so hand-added images survive.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from contract import LABELS, ORIGINALS
from contract.files import TMP_PREFIX, atomic_write
from contract.review import ACCEPTED, PENDING, REJECTED, REVIEW_STATES
from contract.review import DB_NAME as REVIEW_DB_NAME

from .images import CleanImage

log = logging.getLogger("fer_hybrid.storage")

DB_NAME = REVIEW_DB_NAME  # one home: the contract, which training reads it by
OUR_FILE = re.compile(r"^[0-9a-f]{64}\.(png|jpg|webp)$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: A file a DELETE moved aside until its transaction commits (see the module docstring).
ASIDE_PREFIX = ".deleting-"
#: Disk space kept free for deletions (a DELETE's WAL frames take a few tens of KB).
RESERVE_NAME = ".reserve"
RESERVE_BYTES = 1024 * 1024
DISK_FULL_POST = "the server's disk is full: nothing was stored; try again later"
DISK_FULL_DELETE = (
    "the server's disk is full, so the photo could not be withdrawn yet; nothing changed, "
    "try again later"
)

SCHEMA_VERSION = 4
#: What one claim counts for in the byte quota: its row and index entries, generously.
CLAIM_ROW_BYTES = 512
# The current version, as a fresh store gets it. The columns added since version 1 come last, so a migrated
# store has the same layout.
SCHEMA = """
CREATE TABLE uploads (
    id       TEXT PRIMARY KEY,
    label    TEXT NOT NULL,
    sha256   TEXT NOT NULL UNIQUE,
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    created  TEXT NOT NULL,
    bytes    INTEGER NOT NULL DEFAULT 0,
    review        TEXT NOT NULL DEFAULT 'pending',
    curator_label TEXT,
    reviewed      TEXT
);
CREATE TABLE claims (
    token_hash      TEXT PRIMARY KEY,
    upload_id       TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    created         TEXT NOT NULL,
    consent         INTEGER NOT NULL,
    source          TEXT,
    original_sha256 TEXT,
    original_ext    TEXT,
    original_bytes  INTEGER,
    key_hash        TEXT
);
CREATE INDEX claims_upload ON claims(upload_id);
CREATE UNIQUE INDEX claims_key ON claims(key_hash) WHERE key_hash IS NOT NULL;
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
MIGRATE_1_TO_2 = """
ALTER TABLE uploads ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE claims ADD COLUMN original_bytes INTEGER;
ALTER TABLE claims ADD COLUMN key_hash TEXT;
CREATE UNIQUE INDEX claims_key ON claims(key_hash) WHERE key_hash IS NOT NULL;
"""
MIGRATE_2_TO_3 = """
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# Every existing upload becomes pending: nobody has looked at it yet.
MIGRATE_3_TO_4 = """
ALTER TABLE uploads ADD COLUMN review TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE uploads ADD COLUMN curator_label TEXT;
ALTER TABLE uploads ADD COLUMN reviewed TEXT;
"""
TOKEN_SECRET = "token_secret"


#: The curator's actions and the state each one sets (relabel: accepted, with a label).
REVIEW_ACTIONS = {"accept": ACCEPTED, "reject": REJECTED, "relabel": ACCEPTED, "reset": PENDING}


def check_review(ids: Sequence[str], action: str, label: str | None) -> None:
    """Refuse a malformed review batch with one line (UploadError), before any work."""
    if action not in REVIEW_ACTIONS:
        raise UploadError(
            400, f"unknown review action {str(action)[:40]!r}; use one of: "
            f"{', '.join(REVIEW_ACTIONS)}"
        )
    if action == "relabel":
        if label not in LABELS:
            raise UploadError(
                422, f"unknown label {str(label)[:40]!r}; use one of: {', '.join(LABELS)}"
            )
    elif label is not None:
        raise UploadError(400, f"only relabel takes a label, not {action}")
    if not ids:
        raise UploadError(400, "no upload ids given; nothing was changed")
    bad = next((i for i in ids if not isinstance(i, str) or not UPLOAD_ID.match(i)), None)
    if bad is not None:
        raise UploadError(
            404, f"no upload with id {str(bad)[:40]!r} (ids are 32 hex digits); nothing was "
            "changed"
        )


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
    duplicate: bool  # another contribution shares this image
    resent: bool = False  # an earlier send with the same idempotency key had stored it


@dataclass(frozen=True)
class Quota:
    max_bytes: int
    max_files: int


class Usage(NamedTuple):
    bytes: int
    files: int


@dataclass
class RecoveryReport:
    temp_files: list[str] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    orphan_rows: list[str] = field(default_factory=list)
    restored_files: list[str] = field(default_factory=list)  # an uncommitted deletion undone

    @property
    def total(self) -> int:
        return (
            len(self.temp_files)
            + len(self.orphan_files)
            + len(self.orphan_rows)
            + len(self.restored_files)
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values, so a plain (fast) hash is enough: no password stretching.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _statements(script: str) -> list[str]:
    return [stmt.strip() for stmt in script.split(";") if stmt.strip()]


def disk_full(err: BaseException) -> bool:
    """True for the errors a full disk (or a used-up disk quota) raises, from Python or SQLite."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(err, sqlite3.OperationalError):
        code = getattr(err, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or (code is None and "disk is full" in str(err))
    return False


def aside_path(path: Path) -> Path:
    """Where DELETE keeps `path` until its transaction commits (same folder: atomic renames)."""
    return path.with_name(ASIDE_PREFIX + path.name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class UploadStore:
    """Thread- and process-safe store of contributed face crops."""

    def __init__(self, root: Path, *, busy_timeout_s: float = 30.0) -> None:
        self.root = Path(root)
        self.busy_timeout_s = busy_timeout_s
        self._lock = (
            threading.Lock()
        )  # serialises writers in this process; SQLite does across processes
        self._reserve_lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
        # Held open, never queried: while one connection is open SQLite keeps the -wal and -shm
        # files (the last one to close deletes them), so a request never has to create them,
        # which needs free disk; on a full disk that made even reads fail ("disk I/O error").
        self._keeper = sqlite3.connect(self.db_path, check_same_thread=False)
        self._keeper.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        with self._write_txn() as conn:  # one process creates or migrates; the others wait
            self._ensure_schema(conn)
        if not self.ensure_reserve():
            log.warning("no room for the %d-byte reserve in %s: the disk is full", RESERVE_BYTES,
                        self.root)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        has_tables = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'uploads'"
        ).fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.db_path} has schema version {version}, newer than this server's "
                f"{SCHEMA_VERSION}: run a newer fer-hybrid"
            )
        if not has_tables:
            for stmt in _statements(SCHEMA):
                conn.execute(stmt)
            self._new_secret(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            version = SCHEMA_VERSION
        if version < 2:  # 0 = a version-1 store written before user_version was set
            for stmt in _statements(MIGRATE_1_TO_2):
                conn.execute(stmt)
            for upload_id, label, sha in conn.execute(
                "SELECT id, label, sha256 FROM uploads"
            ).fetchall():
                conn.execute(
                    "UPDATE uploads SET bytes = ? WHERE id = ?",
                    (_size(self.crop_path(label, sha)), upload_id),
                )
            for sha, ext in conn.execute(
                "SELECT DISTINCT original_sha256, original_ext FROM claims "
                "WHERE original_sha256 IS NOT NULL"
            ).fetchall():
                conn.execute(
                    "UPDATE claims SET original_bytes = ? WHERE original_sha256 = ?",
                    (_size(self.original_path(sha, ext)), sha),
                )
        if version < 3:
            for stmt in _statements(MIGRATE_2_TO_3):
                conn.execute(stmt)
            self._new_secret(conn)
        if version < 4:
            for stmt in _statements(MIGRATE_3_TO_4):
                conn.execute(stmt)
        if version != SCHEMA_VERSION:
            log.info("upload store %s migrated to schema version %d", self.db_path, SCHEMA_VERSION)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._secret = bytes.fromhex(
            conn.execute("SELECT value FROM meta WHERE name = ?", (TOKEN_SECRET,)).fetchone()[0]
        )

    @staticmethod
    def _new_secret(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?)", (TOKEN_SECRET, secrets.token_hex(32))
        )

    def _token(self, key_hash: str | None) -> str:
        """A fresh random deletion token, or the one derived from an idempotency key's hash."""
        if key_hash is None:
            return secrets.token_urlsafe(32)
        digest = hmac.new(self._secret, key_hash.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def close(self) -> None:
        """Let go of the connection that keeps the WAL files (the app does at shutdown)."""
        self._keeper.close()

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
        key: str | None = None,
        quota: Quota | None = None,
    ) -> StoredUpload:
        """Store one contribution; `key` makes re-sending it safe (see the module docstring)."""
        if label not in LABELS:
            raise UploadError(422, f"unknown label {label!r}; use one of: {', '.join(LABELS)}")
        if not consent:
            raise UploadError(400, "consent is required to store a photo")
        if key is not None and not IDEMPOTENCY_KEY.match(key):
            raise UploadError(
                400, "the Idempotency-Key must be 16 to 64 characters A-Z a-z 0-9 _ -"
            )
        key_hash = hashlib.sha256(key.encode("ascii")).hexdigest() if key is not None else None
        token = self._token(key_hash)
        created: list[Path] = []  # files this call brought into existence (removed on failure)
        try:
            with self._write_txn() as conn:
                if key_hash is not None:
                    resent = self._resend(conn, key_hash, token, crop, label, original)
                    if resent is not None:
                        return resent
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
                new_original = (
                    original is not None
                    and not conn.execute(
                        "SELECT 1 FROM claims WHERE original_sha256 = ? LIMIT 1", (original.sha256,)
                    ).fetchone()
                )
                if quota is not None:  # a duplicate too: it adds a claim row
                    self._check_quota(
                        conn,
                        quota,
                        (0 if duplicate else len(crop.data))
                        + (len(original.data) if new_original else 0)
                        + CLAIM_ROW_BYTES,
                        (0 if duplicate else 1) + (1 if new_original else 0),
                    )
                now = _now()
                if not duplicate:
                    path = self.crop_path(label, crop.sha256)
                    if not path.exists():
                        atomic_write(path, crop.data)
                        created.append(path)
                    conn.execute(
                        "INSERT INTO uploads (id, label, sha256, width, height, created, bytes) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            upload_id,
                            label,
                            crop.sha256,
                            crop.width,
                            crop.height,
                            now,
                            len(crop.data),
                        ),
                    )
                orig_sha = orig_ext = orig_bytes = None
                if original is not None:
                    orig_sha, orig_ext = original.sha256, original.extension
                    orig_bytes = len(original.data)
                    opath = self.original_path(orig_sha, orig_ext)
                    if not opath.exists():
                        atomic_write(opath, original.data)
                        created.append(opath)
                conn.execute(
                    "INSERT INTO claims (token_hash, upload_id, created, consent, source, "
                    "original_sha256, original_ext, original_bytes, key_hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        hash_token(token),
                        upload_id,
                        now,
                        int(consent),
                        source,
                        orig_sha,
                        orig_ext,
                        orig_bytes,
                        key_hash,
                    ),
                )
        except BaseException as err:
            for path in created:
                with contextlib.suppress(OSError):
                    path.unlink()
            if disk_full(err):
                raise UploadError(507, DISK_FULL_POST) from err
            raise
        return StoredUpload(upload_id, label, crop.sha256, token, duplicate)

    def _resend(
        self,
        conn: sqlite3.Connection,
        key_hash: str,
        token: str,
        crop: CleanImage,
        label: str,
        original: CleanImage | None,
    ) -> StoredUpload | None:
        """The claim made earlier with this key, now holding `token`; None if there is none."""
        claim = conn.execute(
            "SELECT c.upload_id, u.label, u.sha256, c.original_sha256 FROM claims c "
            "JOIN uploads u ON u.id = c.upload_id WHERE c.key_hash = ?",
            (key_hash,),
        ).fetchone()
        if claim is None:
            return None
        upload_id, stored_label, stored_sha, stored_original = claim
        if (stored_label, stored_sha, stored_original) != (
            label,
            crop.sha256,
            original.sha256 if original is not None else None,
        ):
            raise UploadError(
                409,
                "this Idempotency-Key was already used for a different image, label or original; "
                "use a new key for a new contribution",
            )
        # The token is derived from the key, so it is the one handed out before; a claim made
        # before tokens were derived (schema 2) gets the derived one now, once.
        conn.execute(
            "UPDATE claims SET token_hash = ? WHERE key_hash = ? AND token_hash != ?",
            (hash_token(token), key_hash, hash_token(token)),
        )
        others = conn.execute(
            "SELECT COUNT(*) FROM claims WHERE upload_id = ?", (upload_id,)
        ).fetchone()[0]
        return StoredUpload(upload_id, label, crop.sha256, token, others > 1, resent=True)

    @staticmethod
    def _usage(conn: sqlite3.Connection) -> Usage:
        crops, crop_bytes = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM uploads"
        ).fetchone()
        originals, original_bytes = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(b), 0) FROM (SELECT MAX(original_bytes) AS b "
            "FROM claims WHERE original_sha256 IS NOT NULL GROUP BY original_sha256)"
        ).fetchone()
        claims = conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]
        return Usage(crop_bytes + original_bytes + claims * CLAIM_ROW_BYTES, crops + originals)

    def usage(self) -> Usage:
        """Bytes (crops + distinct originals + CLAIM_ROW_BYTES a claim) and files this store
        holds."""
        with self._connect() as conn:
            return self._usage(conn)

    def _check_quota(
        self, conn: sqlite3.Connection, quota: Quota, new_bytes: int, new_files: int
    ) -> None:
        used = self._usage(conn)
        if used.bytes + new_bytes > quota.max_bytes or used.files + new_files > quota.max_files:
            raise UploadError(
                507,
                f"storage quota reached: the server keeps at most {quota.max_bytes} bytes in "
                f"{quota.max_files} files of contributed photos and this upload would go over it "
                f"(now {used.bytes} bytes in {used.files} files); nothing was stored",
            )

    def delete(self, upload_id: str, token: str | None) -> None:
        """Withdraw the claim holding `token`; remove the image when no claim is left."""
        if not token:  # checked first: without a token nothing is said about the id
            raise UploadError(403, "the X-Deletion-Token header is required")
        if not UPLOAD_ID.match(upload_id or ""):
            raise UploadError(404, "no upload with this id")
        try:
            self._delete(upload_id, token)
        except (OSError, sqlite3.OperationalError) as err:
            if not disk_full(err):
                raise
            if not self.release_reserve():
                raise UploadError(507, DISK_FULL_DELETE) from err
            log.warning("the disk is full: the reserve went to a deletion")
            try:
                self._delete(upload_id, token)
            except (OSError, sqlite3.OperationalError) as again:
                if disk_full(again):
                    raise UploadError(507, DISK_FULL_DELETE) from again
                raise
        self.ensure_reserve()  # the deletion freed space: put the reserve back if it was spent

    def _delete(self, upload_id: str, token: str) -> None:
        aside: list[tuple[Path, Path]] = []
        try:
            with self._write_txn() as conn:
                row = conn.execute(
                    "SELECT label, sha256 FROM uploads WHERE id = ?", (upload_id,)
                ).fetchone()
                if row is None:
                    raise UploadError(404, "no upload with this id")
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
                        tmp = aside_path(path)
                        os.replace(path, tmp)
                        aside.append((path, tmp))
        except BaseException:
            for path, tmp in aside:  # the transaction rolled back: put the files back
                with contextlib.suppress(OSError):
                    os.replace(tmp, path)
            raise
        for _path, tmp in aside:  # committed: a crash before this leaves them to recover()
            with contextlib.suppress(OSError):
                tmp.unlink()
        if aside:
            self._remove_empty({path.parent for path, _tmp in aside})

    def _remove_empty(self, folders: set[Path]) -> None:
        """Remove each folder if it is empty, holding the write lock: every writer creates its
        folder and its file inside that lock, so none is between the two now. `os.rmdir` itself
        refuses a folder that is not empty (a hand-added file, another upload)."""
        with self._write_txn():
            for folder in folders:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)

    # -- the disk reserve ---------------------------------------------------------------------
    @property
    def reserve_path(self) -> Path:
        return self.root / RESERVE_NAME

    def ensure_reserve(self) -> bool:
        """Make sure the reserve file holds RESERVE_BYTES of real blocks; False if no room."""
        with self._reserve_lock:
            with contextlib.suppress(OSError):
                if self.reserve_path.stat().st_size >= RESERVE_BYTES:
                    return True
            try:
                fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, RESERVE_BYTES)  # allocated, not a sparse file
                finally:
                    os.close(fd)
                return True
            except OSError:
                with contextlib.suppress(OSError):
                    self.reserve_path.unlink()  # a partial reserve would only hold space
                return False

    def release_reserve(self) -> bool:
        """Give the reserve's space back to the disk; False when there was none to give."""
        with self._reserve_lock:
            try:
                self.reserve_path.unlink()
            except FileNotFoundError:
                return False
            return True

    def stats(self) -> dict[str, int]:
        counts = dict.fromkeys(LABELS, 0)
        with self._connect() as conn:
            for label, n in conn.execute("SELECT label, COUNT(*) FROM uploads GROUP BY label"):
                if label in counts:
                    counts[label] = n
        return counts

    def review_counts(self) -> dict[str, dict[str, int]]:
        """Uploads per review state and training label (the curator's when relabelled)."""
        counts = {state: dict.fromkeys(LABELS, 0) for state in REVIEW_STATES}
        with self._connect() as conn:
            for state, label, n in conn.execute(
                "SELECT review, COALESCE(curator_label, label), COUNT(*) FROM uploads "
                "GROUP BY review, COALESCE(curator_label, label)"
            ):
                if state in counts and label in counts[state]:
                    counts[state][label] = n
        return counts

    def review(self, ids: Sequence[str], action: str, label: str | None = None) -> int:
        """Apply one curator action to every upload in `ids`, all or nothing; the count.

        action: accept, reject, relabel (accept with the curator's `label`; the contributor's
        stays beside it) or reset (back to pending, the curator's label dropped). Unknown
        actions, labels and ids are refused (UploadError) before anything is written, and the
        whole batch is one transaction, so a crash in the middle of it leaves nothing half done.
        """
        ids = list(dict.fromkeys(ids))  # the same id twice is one review
        check_review(ids, action, label)
        now = _now()
        with self._write_txn() as conn:
            found = {}
            for upload_id in ids:
                row = conn.execute(
                    "SELECT label FROM uploads WHERE id = ?", (upload_id,)
                ).fetchone()
                if row is None:
                    raise UploadError(
                        404, f"no upload with id {upload_id} (withdrawn?); nothing was changed"
                    )
                found[upload_id] = row[0]
            for upload_id, contributor in found.items():
                if action == "relabel":
                    # The contributor's own label needs no second copy: relabelling back to it
                    # is a plain accept.
                    curator = None if label == contributor else label
                    conn.execute(
                        "UPDATE uploads SET review = ?, curator_label = ?, reviewed = ? "
                        "WHERE id = ?",
                        (ACCEPTED, curator, now, upload_id),
                    )
                elif action == "reset":
                    conn.execute(
                        "UPDATE uploads SET review = ?, curator_label = NULL, reviewed = NULL "
                        "WHERE id = ?",
                        (PENDING, upload_id),
                    )
                else:
                    conn.execute(
                        "UPDATE uploads SET review = ?, reviewed = ? WHERE id = ?",
                        (REVIEW_ACTIONS[action], now, upload_id),
                    )
        return len(found)

    def review_rows(self, state: str | None = None) -> list[dict]:
        """Upload rows for the review queue (all, or those in `state`), oldest first."""
        if state is not None and state not in REVIEW_STATES:
            raise UploadError(
                400, f"unknown review state {state!r}; use one of: {', '.join(REVIEW_STATES)}"
            )
        query = (
            "SELECT u.id, u.label, u.curator_label, u.review AS state, u.sha256, u.width, "
            "u.height, u.created, u.reviewed, COUNT(c.token_hash) AS contributions "
            "FROM uploads u LEFT JOIN claims c ON c.upload_id = u.id "
        )
        args: tuple = ()
        if state is not None:
            query += "WHERE u.review = ? "
            args = (state,)
        query += "GROUP BY u.id ORDER BY u.created, u.id"
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(query, args)]

    def crop_file(self, upload_id: str) -> Path:
        """The crop file of an upload (UploadError 404 for an unknown id)."""
        if not UPLOAD_ID.match(upload_id or ""):
            raise UploadError(404, f"no upload with id {upload_id[:40]!r}")
        with self._connect() as conn:
            row = conn.execute(
                "SELECT label, sha256 FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
        if row is None:
            raise UploadError(404, f"no upload with id {upload_id}")
        return self.crop_path(*row)

    def rows(self) -> list[dict]:
        """All upload rows (for tests and tooling)."""
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM uploads ORDER BY created, id")]

    def claim_count(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM claims").fetchone()[0]

    # -- crash recovery -----------------------------------------------------------------------
    def _settle_deletions(self, conn: sqlite3.Connection, report: RecoveryReport) -> None:
        """Files a DELETE moved aside: back in place when their row or claim is still there
        (the transaction never committed), else removed (it did; only the unlink was missed)."""
        crops = {(label, sha) for label, sha in conn.execute("SELECT label, sha256 FROM uploads")}
        originals = {
            f"{sha}.{ext}"
            for sha, ext in conn.execute(
                "SELECT original_sha256, original_ext FROM claims WHERE original_sha256 IS NOT NULL"
            )
        }
        for folder in [self.root / label for label in LABELS] + [self.root / ORIGINALS]:
            if not folder.is_dir():
                continue
            for aside in folder.glob(f"{ASIDE_PREFIX}*"):
                target = folder / aside.name[len(ASIDE_PREFIX) :]
                if not OUR_FILE.match(target.name):
                    continue
                if folder.name == ORIGINALS:
                    wanted = target.name in originals
                else:
                    wanted = target.suffix == ".png" and (folder.name, target.stem) in crops
                if wanted and not target.exists():
                    os.replace(aside, target)
                    report.restored_files.append(str(target))
                else:
                    aside.unlink()
                    report.orphan_files.append(str(aside))

    def recover(self) -> RecoveryReport:
        """Remove what an interrupted write or delete may have left behind."""
        report = RecoveryReport()
        folders = [self.root / label for label in LABELS] + [self.root / ORIGINALS]
        with self._write_txn() as conn:
            self._settle_deletions(conn, report)  # first: a restored file is not an orphan row
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
                "upload store recovery: restored %d file(s) of an interrupted deletion; removed "
                "%d temp file(s), %d orphan file(s), %d orphan row(s)",
                len(report.restored_files),
                len(report.temp_files),
                len(report.orphan_files),
                len(report.orphan_rows),
            )
        return report
