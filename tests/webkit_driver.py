"""WebKitGTK's MiniBrowser (WebKit: the engine of every iPhone browser) through Debian's
WebKitWebDriver and Selenium, in an Xvfb display of its own (tests/engines.py's interface).

MiniBrowser has no headless mode, hence Xvfb; WebKitWebDriver speaks classic WebDriver only (no
BiDi), and gives no console: tests/engine_harness.js collects the page's errors instead.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

from engines import MINIBROWSER, WEBKIT_DRIVER, XVFB, Engine, EngineError

# `--automation` must come first: WebKitWebDriver matches the session's capabilities against
# the browser started with it. The media flags give the page getUserMedia and a mock camera
# behind it; the tests replace that camera with a face (tests/engine_harness.js).
BROWSER_ARGS = ["--automation", "--enable-media-stream=true", "--enable-mock-capture-devices=true"]
# Longer than any one command (page loads and scripts are given 120 s).
COMMAND_TIMEOUT_S = 180


def start_xvfb(timeout_s: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Xvfb on a display it picks itself (free, so parallel runs never collide): (process, ':N')."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        [str(XVFB), "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    os.close(write)
    # Read up to the newline: Xvfb exits when it cannot write the whole line ("Cannot write
    # display number"), which closing the pipe after the digits would cause.
    line = b""
    deadline = time.monotonic() + timeout_s
    try:
        while not line.endswith(b"\n"):
            ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read, 64) if ready else b""
            if not chunk:
                break
            line += chunk
    finally:
        os.close(read)
    if not line.endswith(b"\n") or proc.poll() is not None:
        proc.kill()
        proc.wait(10)
        raise EngineError(f"webkit: Xvfb did not start a display within {timeout_s:.0f} s "
                          f"(it wrote {line!r})")
    return proc, f":{line.decode().strip()}"


class WebKit(Engine):
    name = "webkit"

    def __init__(self, viewport: tuple[int, int], log: Path):
        from selenium import webdriver
        from selenium.webdriver.remote.client_config import ClientConfig
        from selenium.webdriver.webkitgtk.options import Options
        from selenium.webdriver.webkitgtk.service import Service

        self.driver = self.service = None
        self.xvfb, display = start_xvfb()
        try:
            options = Options()
            options.binary_location = str(MINIBROWSER)
            for arg in BROWSER_ARGS:
                options.add_argument(arg)
            self.service = Service(executable_path=str(WEBKIT_DRIVER), log_output=str(log),
                                   env={**os.environ, "DISPLAY": display})
            self.service.start()
            # Not webdriver.WebKitGTK: it gives its HTTP client no time-out, and a browser that
            # cannot start leaves the new-session request waiting for ever.
            url = self.service.service_url
            self.driver = webdriver.Remote(
                command_executor=url, options=options,
                client_config=ClientConfig(remote_server_addr=url, timeout=COMMAND_TIMEOUT_S))
            self.driver.set_page_load_timeout(120)
            self.driver.set_script_timeout(120)
            # MiniBrowser's window is never narrower than 447 px (asking for less gives 447).
            self.driver.set_window_size(*viewport)
        except BaseException:
            self.close()
            raise

    def goto(self, url: str) -> None:
        self.driver.get(url)

    def _evaluate(self, expression: str) -> str:
        from selenium.common.exceptions import JavascriptException

        try:
            # Execute Script waits for a returned promise (WebDriver spec).
            return self.driver.execute_script(f"return {expression};")
        except JavascriptException as err:
            raise EngineError(f"webkit: {err.msg}") from None

    def close(self) -> None:
        try:
            if self.driver is not None:
                self.driver.quit()
        finally:
            if self.service is not None:
                self.service.stop()
            self.xvfb.terminate()
            try:
                self.xvfb.wait(10)
            except subprocess.TimeoutExpired:
                self.xvfb.kill()
                self.xvfb.wait(10)
