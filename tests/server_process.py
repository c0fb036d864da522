"""`fer-hybrid serve` in a child process, for tests that measure the server itself (its CPU time,
its resident memory) or kill it: what a thread in the test process cannot show.

    with ServerProcess(tmp_path, FER_HYBRID_UPLOADS_PER_MINUTE="0") as server:
        httpx.get(server.url + "/api/health")
        server.cpu_seconds(), server.peak_rss_bytes()

The child runs `python -m training.cli serve` from the repository root (the console entry point,
so the worktree's packages are the ones imported), bound to 127.0.0.1 on a free port, with its
folders in `tmp_path` and any further setting given as `FER_HYBRID_*` environment variables.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from uvicorn_thread import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


class ServerProcess:
    def __init__(
        self,
        root: Path,
        start_timeout: float = 60.0,
        prefix: tuple[str, ...] = (),
        custom_dir: Path | None = None,
        **env: str,
    ) -> None:
        """`prefix`: a command the server runs under (e.g. one that mounts a small filesystem
        first); `custom_dir`: the upload store's folder (default root/custom)."""
        self.root = Path(root)
        self.prefix = tuple(prefix)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.custom_dir = Path(custom_dir) if custom_dir is not None else self.root / "custom"
        self.start_timeout = start_timeout
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FER_HYBRID_")}
        self.env.update(
            FER_HYBRID_WEB_DIR=str(self.root / "web"),
            FER_HYBRID_MODELS_DIR=str(self.root / "models"),
            FER_HYBRID_CERT_DIR=str(self.root / "tls"),
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.log = self.root / f"server-{self.port}.log"

    # -- lifecycle
    def start(self) -> ServerProcess:
        for folder in ("web", "models"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *self.prefix,
                    sys.executable, "-m", "training.cli", "serve", "--no-qr",
                    "--host", "127.0.0.1", "--port", str(self.port),
                    "--custom-dir", str(self.custom_dir),
                ],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited at start:\n{self.output()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer in time:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)

    def kill(self) -> None:
        """SIGKILL: no handler, no cleanup, like a power cut for the server's own state."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(15)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- what the kernel says about the child
    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
        raise KeyError(key)

    def rss_bytes(self) -> int:
        return self._status("VmRSS")

    def peak_rss_bytes(self) -> int:
        """The most resident memory the process ever had (the kernel's high-water mark)."""
        return self._status("VmHWM")
