"""A real `fer-hybrid data review` server for the review tests: a subprocess running this
checkout's code, its URL read from what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from test_backend_helpers import image_bytes

from backend.images import clean_crop
from backend.storage import UploadStore

REPO = Path(__file__).resolve().parents[1]
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/([A-Za-z0-9_-]+)/")


def make_store(root: Path, labels: list[str]) -> tuple[UploadStore, list]:
    """A store with one upload per label in `labels` (distinct random crops)."""
    store = UploadStore(root)
    ups = [
        store.add(
            clean_crop(image_bytes(size=(128, 128), seed=500 + i), min_side=1, max_side=4096),
            label,
            consent=True,
        )
        for i, label in enumerate(labels)
    ]
    return store, ups


@contextmanager
def review_server(custom: Path, *extra: str, timeout_s: float = 60.0):
    """Yields (base URL with the token, port, token); the server is stopped afterwards."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "data", "review", "--custom", str(custom), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + timeout_s
        printed = []
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"the review server stopped: {''.join(printed)}{proc.stderr.read()}"
                )
            printed.append(line)
            found = URL.search(line)
            if found:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the review server printed no URL")
        port, token = int(found.group(1)), found.group(2)
        _wait_listening(port, deadline)
        yield f"http://127.0.0.1:{port}/{token}/", port, token
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(port: int, deadline: float) -> None:
    import socket

    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
