"""`fer-hybrid serve` refuses what cannot work before it prints its banner: one `error:` line and
exit code 2, no traceback (an unusable certificate, a port in use, a models folder that is not
there); a models folder without a manifest starts with a clear warning. The real command, run as
the user runs it (`python -m training.cli`, the console entry point)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from server_process import REPO_ROOT, ServerProcess
from uvicorn_thread import free_port

pytestmark = pytest.mark.slow  # a fresh interpreter per case

BANNER = "Open:"


def serve(tmp_path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "training.cli", "serve", "--no-qr", "--host", "127.0.0.1",
        "--custom-dir", str(tmp_path / "custom"), "--web-dir", str(tmp_path),
        *args,
    ]
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def assert_one_error_line(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert BANNER not in done.stdout, done.stdout  # refused before any banner
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_an_unusable_certificate_is_one_error_line(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("")
    key.write_text("")
    done = serve(tmp_path, "--port", str(free_port()), "--https", "--cert", str(cert),
                 "--key", str(key), "--models-dir", str(tmp_path))
    assert_one_error_line(done, str(cert))


def test_a_port_in_use_is_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve(tmp_path, "--port", str(port), "--models-dir", str(tmp_path))
    assert_one_error_line(done, str(port), "--port")


def test_a_models_folder_that_is_not_there_is_one_error_line(tmp_path):
    done = serve(tmp_path, "--port", str(free_port()), "--models-dir", "/nonexistent")
    assert_one_error_line(done, "/nonexistent")


def test_a_models_folder_without_a_manifest_starts_with_a_warning(tmp_path):
    with ServerProcess(tmp_path) as server:  # its models folder is empty
        pass
    log = server.output()
    assert "warning: " in log and "manifest.json" in log, log
    assert log.index("warning: ") < log.index(BANNER), log
