"""Headless Debian Chromium through Playwright (`playwright install` is never needed)."""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from training.core.errors import FerError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]


def require_chromium() -> None:
    """A clear error instead of a traceback when the browser or Playwright is missing."""
    if not CHROMIUM.exists():
        raise FerError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ModuleNotFoundError:
        raise FerError("this command needs Playwright: pip install 'fer-hybrid[test]'") from None


def chromium_version() -> str:
    out = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


@contextmanager
def browser(video: Path | None = None):
    """Headless Chromium via Playwright (sync API); fake camera from `video` when given."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if video is not None:
        args.append(f"--use-file-for-fake-video-capture={video}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield b
        finally:
            b.close()


def wait_for(page, expr: str, timeout_s: float, what: str, interval_s: float = 0.2):
    """Poll a JS expression until truthy; returns its value. (page.wait_for_function compiles
    with `new Function`, which our page's CSP forbids; page.evaluate is not subject to it.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expr)
        if value:
            return value
        if time.monotonic() > deadline:
            raise FerError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
