"""kill -9 loop: `fer-hybrid serve` is killed (SIGKILL) at random moments while clients upload
and delete; after each restart (start-up recovery), every acknowledged upload that was not
acknowledged as deleted is there, every acknowledged deletion stays deleted, and no temporary or
orphan file is left. Its deletion tokens still work at the end.

Bounded in the suite (a few rounds, `slow`); a longer run, as a script:

    python tests/test_upload_kill_loop.py --rounds 200
"""

from __future__ import annotations

import argparse
import io
import random
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_process import ServerProcess  # noqa: E402

ROUNDS_IN_SUITE = 4


def crop(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class Ledger:
    """What the clients were told: acknowledged uploads and acknowledged deletions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.kept: dict[str, dict] = {}  # id -> the 201 body (acknowledged, not deleted)
        self.deleted: dict[str, dict] = {}  # id -> the 201 body (deletion acknowledged)
        # id -> the 201 body: a DELETE was sent and never answered (the kill came first), so
        # either outcome is right, as long as it is a whole one
        self.unsure: dict[str, dict] = {}
        self.wrong: list[str] = []  # answers that should not have happened (checked in run)
        self.unanswered = 0  # uploads stored whose 201 the kill cut off (counted at the end)
        self.seed = 0

    def next_seed(self) -> int:
        with self.lock:
            self.seed += 1
            return self.seed


def client(url: str, ledger: Ledger, stop: threading.Event, rng: random.Random) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            try:
                with ledger.lock:
                    victims = list(ledger.kept.values())
                    body = rng.choice(victims) if victims and rng.random() < 0.35 else None
                    if body is not None:  # from now on its fate is open until the answer
                        ledger.unsure[body["id"]] = ledger.kept.pop(body["id"])
                if body is not None:
                    r = http.delete(
                        f"/api/uploads/{body['id']}",
                        headers={"X-Deletion-Token": body["deletion_token"]},
                    )
                    with ledger.lock:
                        if r.status_code == 204:
                            ledger.deleted[body["id"]] = ledger.unsure.pop(body["id"])
                        else:
                            ledger.wrong.append(f"DELETE {body['id']}: {r.status_code} {r.text}")
                else:
                    seed = ledger.next_seed()
                    r = http.post(
                        "/api/uploads",
                        files={"crop": ("c.png", crop(seed), "image/png")},
                        data={"label": "happy", "consent": "true"},
                    )
                    with ledger.lock:
                        if r.status_code == 201:
                            ledger.kept[r.json()["id"]] = r.json()
                        else:
                            ledger.wrong.append(f"POST: {r.status_code} {r.text}")
            except httpx.HTTPError:
                time.sleep(0.05)  # the server is gone (killed) or not back yet


def check_store(custom: Path, ledger: Ledger) -> None:
    """After recovery: the ledger's promises hold and nothing half-done is left."""
    with sqlite3.connect(custom / "uploads.sqlite") as conn:
        rows = {i: sha for i, sha in conn.execute("SELECT id, sha256 FROM uploads")}
    files = {p.stem for p in (custom / "happy").glob("*.png")} if (custom / "happy").is_dir() else set()
    for upload_id, body in ledger.kept.items():
        assert rows.get(upload_id) == body["sha256"], f"acknowledged upload {upload_id} lost"
        assert body["sha256"] in files, f"the file of {upload_id} is gone"
    for upload_id in ledger.deleted:
        assert upload_id not in rows, f"acknowledged deletion of {upload_id} came back"
    for upload_id in list(ledger.unsure):  # a DELETE the kill cut off: done or not, settle it
        body = ledger.unsure.pop(upload_id)
        if upload_id in rows:
            assert body["sha256"] in files, f"{upload_id} kept its row but lost its file"
            ledger.kept[upload_id] = body
        else:
            ledger.deleted[upload_id] = body
    assert files == set(rows.values()), "a file without a row, or a row without a file"
    leftovers = [p for p in custom.rglob(".*") if p.is_file() and p.name != ".reserve"]
    assert not leftovers, leftovers


def run(root: Path, rounds: int, seed: int = 0, clients: int = 3) -> Ledger:
    rng = random.Random(seed)
    ledger = Ledger()
    server = ServerProcess(root, FER_HYBRID_UPLOADS_PER_MINUTE="0")
    for _ in range(rounds):
        server.start()
        check_store(server.custom_dir, ledger)  # what the last kill left, after recovery
        stop = threading.Event()
        threads = [
            threading.Thread(target=client, args=(server.url, ledger, stop, random.Random(rng.random())))
            for _ in range(clients)
        ]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 2.0))
        server.kill()  # SIGKILL, mid-request most of the time
        stop.set()
        for t in threads:
            t.join()
        assert not ledger.wrong, ledger.wrong
    with server:  # the last recovery, then every token still withdraws its upload
        check_store(server.custom_dir, ledger)
        for upload_id, body in list(ledger.kept.items()):
            r = httpx.delete(
                f"{server.url}/api/uploads/{upload_id}",
                headers={"X-Deletion-Token": body["deletion_token"]},
            )
            assert r.status_code == 204, (upload_id, r.status_code, r.text)
        # What is left was stored but its answer never arrived (the kill fell between the
        # commit and the response, the gap an Idempotency-Key closes): none of the ledger's.
        with sqlite3.connect(server.custom_dir / "uploads.sqlite") as conn:
            left = {i for (i,) in conn.execute("SELECT id FROM uploads")}
        assert not left & (set(ledger.kept) | set(ledger.deleted)), left
        ledger.unanswered = len(left)
    return ledger


@pytest.mark.slow
def test_random_kills_lose_nothing_acknowledged(tmp_path):
    ledger = run(tmp_path, ROUNDS_IN_SUITE)
    assert ledger.kept or ledger.deleted  # the clients did get answers between the kills


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        done = run(Path(folder), args.rounds, args.seed)
    print(f"{args.rounds} kills: {len(done.kept)} acknowledged uploads kept, {len(done.deleted)} "
          f"acknowledged deletions, {done.unanswered} stored without an answer; nothing lost")
