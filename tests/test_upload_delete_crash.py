"""A server killed in the middle of a DELETE loses nothing that was not deleted.

Fault injection: a child process serves the app (TestClient: real HTTP requests through the
ASGI app), and dies with os._exit (like SIGKILL: no cleanup runs) at a chosen point of
`DELETE /api/uploads/{id}`: after moving the first file aside, after moving the last one (both
before the transaction commits), or after the commit, before the files moved aside are removed.
The app is then started again (its start-up recovery runs) and asked over HTTP: an uncommitted
deletion must leave every file in place, byte for byte, and the token working; a committed one
must leave nothing behind. Random kills (tests/test_upload_kill_loop.py) rarely hit these points.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import image_bytes, make_settings, stored_files

from backend import storage
from backend.app import create_app

pytestmark = pytest.mark.slow  # a child interpreter per case

CHILD = """
import os, pathlib, sys
from fastapi.testclient import TestClient
from test_backend_helpers import make_settings
from backend.app import create_app

root, upload_id, token, where = sys.argv[1:5]
app = create_app(make_settings(pathlib.Path(root)))
with TestClient(app) as client:  # start-up recovery has run; the faults start now
    real_replace, real_unlink, moved = os.replace, pathlib.Path.unlink, []

    def replace(src, dst):
        real_replace(src, dst)
        moved.append(dst)
        if where == f"after-move-{len(moved)}":
            os._exit(137)

    def unlink(self, missing_ok=False):
        if where == "after-commit":
            os._exit(137)
        return real_unlink(self, missing_ok=missing_ok)

    os.replace, pathlib.Path.unlink = replace, unlink
    r = client.delete(f"/api/uploads/{upload_id}", headers={"X-Deletion-Token": token})
    print("answered", r.status_code, r.text)
"""


def digests(custom) -> dict[str, str]:
    return {
        str(p.relative_to(custom)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in stored_files(custom)
    }


def crash_delete(tmp_path, repo_root, upload_id: str, token: str, where: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo_root / "tests"), str(repo_root)])}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), upload_id, token, where],
        env=env, cwd=repo_root, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 137, (where, proc.stdout, proc.stderr)  # it died where told


def post(client, crop: bytes, original: bytes | None = None):
    files = {"crop": ("c.png", crop, "image/png")}
    if original is not None:
        files["original"] = ("o.jpg", original, "image/jpeg")
    r = client.post("/api/uploads", files=files, data={"label": "happy", "consent": "true"})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize("where", ["after-move-1", "after-move-2", "after-commit"])
def test_last_contribution_with_original(tmp_path, repo_root, where):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        mine = post(client, image_bytes(seed=1), image_bytes(size=(80, 60), fmt="JPEG", seed=2))
    before = digests(settings.custom_dir)
    assert len(before) == 2  # crop + original: DELETE moves both aside

    crash_delete(tmp_path, repo_root, mine["id"], mine["deletion_token"], where)

    with TestClient(create_app(settings)) as client:  # recovery runs at start
        url = f"/api/uploads/{mine['id']}"
        token = {"X-Deletion-Token": mine["deletion_token"]}
        if where == "after-commit":  # the deletion was done: nothing may come back
            assert digests(settings.custom_dir) == {}
            assert client.get("/api/uploads/stats").json()["total"] == 0
            assert client.delete(url, headers=token).status_code == 404
        else:  # never committed: all there, byte for byte, and the token still withdraws it
            assert digests(settings.custom_dir) == before
            assert client.get("/api/uploads/stats").json()["total"] == 1
            assert client.delete(url, headers=token).status_code == 204
            assert digests(settings.custom_dir) == {}
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.startswith(".") and p.is_file()]
    assert leftovers == [storage.RESERVE_NAME]  # no file moved aside, no temp file


@pytest.mark.parametrize("where", ["after-move-1", "after-commit"])
def test_one_of_two_contributions_takes_its_original(tmp_path, repo_root, where):
    """A duplicate: withdrawing the claim that sent an original moves only that original."""
    settings = make_settings(tmp_path)
    crop = image_bytes(seed=3)
    with TestClient(create_app(settings)) as client:
        other = post(client, crop)
        mine = post(client, crop, image_bytes(size=(80, 60), fmt="JPEG", seed=4))
    assert mine["duplicate"] and mine["id"] == other["id"]
    before = digests(settings.custom_dir)

    crash_delete(tmp_path, repo_root, mine["id"], mine["deletion_token"], where)

    with TestClient(create_app(settings)) as client:
        url = f"/api/uploads/{mine['id']}"
        mine_token = {"X-Deletion-Token": mine["deletion_token"]}
        if where == "after-commit":
            assert [k.split("/")[0] for k in digests(settings.custom_dir)] == ["happy"]
            assert client.delete(url, headers=mine_token).status_code == 403
        else:
            assert digests(settings.custom_dir) == before  # the original is back
            assert client.delete(url, headers=mine_token).status_code == 204
        r = client.delete(url, headers={"X-Deletion-Token": other["deletion_token"]})
        assert r.status_code == 204
        assert digests(settings.custom_dir) == {}
