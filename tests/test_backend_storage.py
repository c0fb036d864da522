"""The upload store on its own: atomicity, crash recovery, multi-process safety."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import db_rows, image_bytes, make_settings, stored_files

from backend import storage
from backend.app import create_app
from backend.images import clean_crop, clean_original
from backend.storage import UploadError, UploadStore
from contract import ORIGINALS


def crop(seed: int):
    return clean_crop(image_bytes(seed=seed), min_side=1, max_side=4096)


def test_add_and_delete_roundtrip(tmp_path):
    store = UploadStore(tmp_path / "c")
    original = clean_original(image_bytes(size=(80, 60), fmt="JPEG", seed=9), max_side=4096)
    up = store.add(crop(1), "happy", consent=True, source="file", original=original)
    assert store.crop_path("happy", up.sha256).is_file()
    assert store.original_path(original.sha256, "jpg").is_file()
    assert store.stats()["happy"] == 1
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(UploadError) as err:
        store.delete(up.id, "wrong")
    assert err.value.status_code == 403
    store.delete(up.id, up.deletion_token)
    assert stored_files(store.root) == [] and store.rows() == []


def test_store_refuses_bad_label_and_missing_consent(tmp_path):
    store = UploadStore(tmp_path / "c")
    with pytest.raises(UploadError):
        store.add(crop(1), "../x", consent=True)
    with pytest.raises(UploadError):
        store.add(crop(1), "happy", consent=False)
    assert stored_files(store.root) == []


def test_failure_after_file_write_leaves_nothing(tmp_path, monkeypatch):
    store = UploadStore(tmp_path / "c")

    def boom(token):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(storage, "hash_token", boom)  # fails at the claims INSERT, after the file
    with pytest.raises(RuntimeError):
        store.add(
            crop(2),
            "sad",
            consent=True,
            original=clean_original(image_bytes(seed=3), max_side=4096),
        )
    assert stored_files(store.root) == []
    assert store.rows() == [] and store.claim_count() == 0
    assert not [p for p in store.root.rglob("*") if p.name.startswith(storage.TMP_PREFIX)]


def test_failure_during_replace_leaves_no_temp_file(tmp_path, monkeypatch):
    store = UploadStore(tmp_path / "c")

    def broken_replace(src, dst):
        raise OSError("no space left on device")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.add(crop(4), "fear", consent=True)
    monkeypatch.undo()
    assert stored_files(store.root) == [] and store.rows() == []
    assert not list(store.root.rglob(f"{storage.TMP_PREFIX}*"))


def test_deleting_the_last_upload_of_a_label_removes_its_empty_folder(tmp_path):
    store = UploadStore(tmp_path / "c")
    original = clean_original(image_bytes(size=(80, 60), fmt="JPEG", seed=20), max_side=4096)
    first = store.add(crop(20), "happy", consent=True, original=original)
    second = store.add(crop(21), "happy", consent=True)
    store.delete(first.id, first.deletion_token)
    assert store.crop_path("happy", second.sha256).is_file()
    assert not (store.root / ORIGINALS).exists(), "its only original went, and the folder with it"
    store.delete(second.id, second.deletion_token)
    assert not (store.root / "happy").exists()
    # A file put there by hand keeps its folder.
    third = store.add(crop(22), "sad", consent=True)
    mine = store.root / "sad" / "my_own_photo.png"
    mine.write_bytes(image_bytes(seed=23))
    store.delete(third.id, third.deletion_token)
    assert mine.is_file()
    # The label's next upload makes the folder again.
    again = store.add(crop(20), "happy", consent=True)
    assert store.crop_path("happy", again.sha256).is_file()


def test_removing_a_label_folder_never_races_an_upload_into_it(tmp_path, monkeypatch):
    """A delete empties the "fear" folder and is about to remove it, while an upload to "fear"
    has made (found) the folder but not yet its file: removing the folder then would make the
    upload fail. The delete's removal waits up to 1 s for the upload to reach that point; it
    must not (the removal holds the store's write lock), and the upload must succeed."""
    import threading

    from contract import files

    store = UploadStore(tmp_path / "c")
    doomed = store.add(crop(100), "fear", consent=True)
    made = threading.Event()
    outcome: list = []
    real_temp_path, real_rmdir = files.temp_path, os.rmdir

    def upload():
        try:
            outcome.append(store.add(crop(101), "fear", consent=True))
        except BaseException as err:  # noqa: BLE001 - checked below
            outcome.append(err)

    def slow_temp_path(path):  # the upload, between making its folder and writing its file
        if Path(path).parent.name == "fear":
            made.set()
            time.sleep(0.3)
        return real_temp_path(path)

    def rmdir_after_upload_started(path):
        if Path(path).name == "fear" and not made.is_set():
            thread = threading.Thread(target=upload)
            thread.start()
            made.wait(1.0)
            threads.append(thread)
        real_rmdir(path)

    threads: list[threading.Thread] = []
    monkeypatch.setattr(files, "temp_path", slow_temp_path)
    monkeypatch.setattr(storage.os, "rmdir", rmdir_after_upload_started)
    store.delete(doomed.id, doomed.deletion_token)
    for thread in threads:
        thread.join()
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert store.crop_path("fear", outcome[0].sha256).is_file()


def test_failed_delete_commit_restores_the_file(tmp_path, monkeypatch):
    store = UploadStore(tmp_path / "c")
    up = store.add(crop(5), "angry", consent=True)
    path = store.crop_path("angry", up.sha256)
    real_write_txn = store._write_txn

    import contextlib

    @contextlib.contextmanager
    def failing_txn():
        with real_write_txn() as conn:
            yield conn
            raise sqlite3.OperationalError("database is locked")  # the COMMIT never happens

    monkeypatch.setattr(store, "_write_txn", failing_txn)
    with pytest.raises(sqlite3.OperationalError):
        store.delete(up.id, up.deletion_token)
    assert path.is_file() and len(store.rows()) == 1


def test_recovery_removes_orphans_but_keeps_foreign_files(tmp_path):
    settings = make_settings(tmp_path)
    store = UploadStore(settings.custom_dir)
    kept = store.add(crop(10), "happy", consent=True)
    gone = store.add(crop(11), "sad", consent=True)
    store.crop_path("sad", gone.sha256).unlink()  # row without file
    orphan = store.crop_path("neutral", "ab" * 32)  # file without row
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(image_bytes(seed=12))
    temp = store.root / "happy" / f"{storage.TMP_PREFIX}123-{'cd' * 32}.png"  # half-written
    temp.write_bytes(b"\x89PNG half")
    orig = store.original_path("ef" * 32, "jpg")  # unreferenced original
    orig.parent.mkdir(parents=True, exist_ok=True)
    orig.write_bytes(b"x")
    foreign = store.root / "happy" / "my_own_photo.png"  # not ours: keep
    foreign.write_bytes(image_bytes(seed=13))

    with TestClient(create_app(settings)) as client:  # startup runs recovery
        report = client.app.state.recovery
        assert report.orphan_rows == [gone.id]
        assert sorted(report.orphan_files) == sorted([str(orphan), str(orig)])
        assert report.temp_files == [str(temp)]
        assert client.get("/api/uploads/stats").json()["total"] == 1
    assert not orphan.exists() and not temp.exists() and not orig.exists()
    assert foreign.exists() and store.crop_path("happy", kept.sha256).exists()
    assert [r[0] for r in db_rows(settings.custom_dir)] == [kept.id]
    assert UploadStore(settings.custom_dir).recover().total == 0  # idempotent


def _add_many(root: str, start: int, n: int) -> None:
    from test_backend_helpers import image_bytes

    from backend.images import clean_crop
    from backend.storage import UploadStore

    store = UploadStore(root)
    for i in range(start, start + n):
        label = "happy" if i % 2 else "sad"
        store.add(clean_crop(image_bytes(seed=i), min_side=1, max_side=4096), label, consent=True)
    # and one image that every process adds: a shared duplicate
    store.add(
        clean_crop(image_bytes(seed=10_000), min_side=1, max_side=4096), "neutral", consent=True
    )


def test_two_processes_writing_at_once_lose_nothing(tmp_path, monkeypatch):
    root = tmp_path / "c"
    UploadStore(root)
    ctx = multiprocessing.get_context("spawn")
    env_path = os.path.dirname(__file__)
    procs = [ctx.Process(target=_add_many, args=(str(root), k * 100, 6)) for k in range(2)]
    old = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [env_path, os.path.dirname(env_path), old]))
    )
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    store = UploadStore(root)
    assert len(store.rows()) == 13 and store.claim_count() == 14
    assert len(stored_files(root)) == 13
    assert store.recover().total == 0


KILL_SCRIPT = """
import os, sys
from backend import storage
from backend.images import clean_crop
from test_backend_helpers import image_bytes

where = sys.argv[2]
real_replace, real_fsync = os.replace, os.fsync

def dying_fsync(fd):
    real_fsync(fd)
    if where == "before-replace":
        os._exit(137)  # like SIGKILL: no cleanup handlers run

def dying_replace(src, dst):
    real_replace(src, dst)
    if where == "before-commit":
        os._exit(137)

storage.os.fsync = dying_fsync
storage.os.replace = dying_replace
store = storage.UploadStore(sys.argv[1])
store.add(clean_crop(image_bytes(seed=77), min_side=1, max_side=4096), "happy", consent=True)
"""


@pytest.mark.parametrize("where", ["before-replace", "before-commit"])
def test_killed_writer_is_cleaned_up_on_next_start(tmp_path, where, repo_root):
    import subprocess
    import sys

    root = tmp_path / "c"
    store = UploadStore(root)
    kept = store.add(crop(78), "sad", consent=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root / "tests"), str(repo_root)])}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(root), where],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 137, proc.stderr
    leftovers = [p for p in stored_files(root) if p.name != f"{kept.sha256}.png"]
    assert leftovers  # the crash really left something behind
    report = UploadStore(root).recover()
    assert report.total == len(leftovers)
    assert stored_files(root) == [store.crop_path("sad", kept.sha256)]
    assert [r["id"] for r in store.rows()] == [kept.id] and store.claim_count() == 1
    again = store.add(crop(77), "happy", consent=True)  # the database is not left locked
    assert not again.duplicate
