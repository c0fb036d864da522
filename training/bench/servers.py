"""The two HTTP servers of a bench run, both on 127.0.0.1 at a free port.

* `backend(...)`: the real backend (`fer-hybrid serve`) as a subprocess: our page is measured
  exactly as it is served (training/ imports backend/ only in training/cli.py, and a separate
  process also keeps the server off the browser's and the harness's threads).
* `static(...)`: a stdlib file server for the peers' harness pages: URL prefix -> folder.
  No COOP/COEP headers, so (as on our page, whose CSP forbids tfjs' thread workers) no
  SharedArrayBuffer and every tool runs tfjs' wasm backend single-threaded with SIMD.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from training.core.errors import FerError

TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
         ".json": "application/json", ".bin": "application/octet-stream", ".html": "text/html"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise FerError(f"the server exited with status {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise FerError(f"no answer from {url} after {timeout_s:.0f} s") from None
            time.sleep(0.2)


@contextmanager
def backend(models_dir: Path, work_dir: Path, web_dir: Path | None = None, timeout_s: float = 90.0):
    """`python -m training.cli serve` on a free port; yields the base URL. `web_dir`: another
    copy of the page (e.g. a variant to compare); default the repository's web/."""
    port = free_port()
    cmd = [sys.executable, "-m", "training.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--models-dir", str(models_dir), "--custom-dir", str(work_dir / "custom"), "--no-qr"]
    if web_dir is not None:
        cmd += ["--web-dir", str(web_dir)]
    log = open(work_dir / "serve.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc, timeout_s)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class _Handler(SimpleHTTPRequestHandler):
    routes: dict[str, Path] = {}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, folder in sorted(self.routes.items(), key=lambda kv: -len(kv[0])):
            if path.startswith(prefix):
                rel = Path(urllib.request.url2pathname(path[len(prefix):]))
                target = (folder / rel).resolve()
                if folder.resolve() in target.parents or target == folder.resolve():
                    return str(target)
        return "/nonexistent"

    def guess_type(self, path) -> str:
        return TYPES.get(Path(str(path)).suffix, super().guess_type(path))

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args) -> None:  # quiet
        pass


@contextmanager
def static(routes: dict[str, Path]):
    """Serve `routes` ({'/peer/human/': folder, ...}); yields the base URL."""
    handler = type("Handler", (_Handler,), {"routes": dict(routes)})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), partial(handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
