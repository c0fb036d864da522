"""When the disk is full, uploads are refused with a JSON 507 and contributors can still withdraw
their photos.

The real thing first: `fer-hybrid serve` with its upload store on a 6 MiB tmpfs (mounted in a
private user + mount namespace, so no privilege and nothing outside the test sees it), filled by
uploads until it refuses them, and then to the last byte by a filler file; then every photo it
had acknowledged is deleted over HTTP. Then the same answers with an injected ENOSPC /
SQLITE_FULL, in-process and fast.
"""

from __future__ import annotations

import contextlib
import errno
import io
import shutil
import sqlite3
import subprocess

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from server_process import ServerProcess
from test_backend_helpers import image_bytes, make_settings, post_upload, stored_files

from backend import storage
from backend.app import create_app

SMALL_FS = "6m"
SECURITY = ("content-security-policy", "x-content-type-options", "cross-origin-resource-policy")


def noise(side: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def assert_json_with_security_headers(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    for name in SECURITY:
        assert name in r.headers, (name, dict(r.headers))
    return r.json()["detail"]


def small_filesystem(mountpoint) -> tuple[str, ...]:
    """A command prefix: run the rest in new user + mount namespaces with a tmpfs at `mountpoint`."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is needed (Debian: apt-get install util-linux)"
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True
    )
    assert probe.returncode == 0, f"user namespaces are off here: {probe.stderr.strip()}"
    return (
        unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
        f'mount -t tmpfs -o size={SMALL_FS} tmpfs "{mountpoint}" && exec "$@"', "sh",
    )


def inside(server: ServerProcess, script: str) -> str:
    """Run `script` in the server's namespaces (where its small filesystem is mounted)."""
    nsenter = shutil.which("nsenter")
    assert nsenter, "util-linux's nsenter is needed"
    done = subprocess.run(
        [nsenter, "-t", str(server.proc.pid), "-U", "-m", "--preserve-credentials",
         "sh", "-c", script],
        capture_output=True, text=True, timeout=60,
    )
    return done.stdout


@pytest.mark.slow
def test_full_disk_refuses_with_507_and_every_photo_can_still_be_withdrawn(tmp_path):
    store = tmp_path / "small"
    store.mkdir()
    with ServerProcess(
        tmp_path, prefix=small_filesystem(store), custom_dir=store,
        FER_HYBRID_UPLOADS_PER_MINUTE="0",
    ) as server:
        stored = []
        for seed in range(200):  # ~150 KB a contribution: the 6 MiB are gone long before
            r = httpx.post(
                server.url + "/api/uploads",
                files={
                    "crop": ("c.png", noise(128, "PNG", seed), "image/png"),
                    "original": ("o.png", noise(256, "PNG", 10_000 + seed), "image/png"),
                },
                data={"label": "happy", "consent": "true"},
                timeout=60,
            )
            if r.status_code != 201:
                break
            stored.append(r.json())
        detail = assert_json_with_security_headers(r, 507)
        assert "disk" in detail and "full" in detail, detail
        assert len(stored) >= 5, len(stored)
        # What an upload could not use, something else on the machine takes: not a byte left.
        filled = inside(server, f'dd if=/dev/zero of="{store}/filler" bs=4k; df -k "{store}"')
        assert filled.split()[-2] == "100%", filled
        assert httpx.get(server.url + "/api/uploads/stats").json()["total"] == len(stored)

        for up in stored:  # the disk is full, and each contributor withdraws their photo
            r = httpx.delete(
                f"{server.url}/api/uploads/{up['id']}",
                headers={"X-Deletion-Token": up["deletion_token"]},
            )
            assert r.status_code == 204, (r.status_code, r.text)
        assert httpx.get(server.url + "/api/uploads/stats").json()["total"] == 0
        r = httpx.post(  # and with the space back, uploads work again
            server.url + "/api/uploads",
            files={"crop": ("c.png", noise(128, "PNG", 1234), "image/png")},
            data={"label": "happy", "consent": "true"},
        )
        assert r.status_code == 201, r.text
    assert "Traceback" not in server.output(), server.output()[-3000:]


@pytest.fixture
def client(tmp_path):
    with TestClient(create_app(make_settings(tmp_path)), raise_server_exceptions=False) as c:
        yield c


def test_enospc_while_writing_a_file_is_a_json_507(client, monkeypatch):
    def full(path, data, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "atomic_write", full)
    r = post_upload(client, image_bytes(seed=1))
    detail = assert_json_with_security_headers(r, 507)
    assert "disk is full" in detail and "nothing was stored" in detail
    monkeypatch.undo()
    assert stored_files(client.app.state.settings.custom_dir) == []


def test_sqlite_full_while_deleting_spends_the_reserve_and_deletes(client, monkeypatch):
    """SQLite needs a few pages of free disk to delete a row; the store keeps a reserve file
    that it gives up for a DELETE that met a full disk, and tries again."""
    store = client.app.state.store
    up = post_upload(client, image_bytes(seed=2)).json()
    reserve = store.root / storage.RESERVE_NAME
    assert reserve.is_file() and reserve.stat().st_size == storage.RESERVE_BYTES
    real_txn, failures = store._write_txn, []

    @contextlib.contextmanager
    def full_until_the_reserve_is_gone():
        with real_txn() as conn:
            yield conn
            if reserve.exists():  # the commit meets a full disk while the reserve is there
                failures.append(1)
                raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_write_txn", full_until_the_reserve_is_gone)
    r = client.delete(f"/api/uploads/{up['id']}", headers={"X-Deletion-Token": up["deletion_token"]})
    assert r.status_code == 204, r.text
    assert failures == [1]
    monkeypatch.undo()
    assert stored_files(store.root) == []
    assert reserve.is_file()  # made again once the deletion freed space
