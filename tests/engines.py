"""The three browser engines behind one small interface, for tests/test_e2e_engines.py.

* chromium: Debian's Chromium, headless, through Playwright (training/bench/browser.py)
* firefox: Debian's Firefox ESR, headless, over WebDriver BiDi (tests/firefox_bidi.py)
* webkit: WebKitGTK's MiniBrowser (the engine of every iPhone browser) through WebKitWebDriver
  and Selenium, in an Xvfb display (tests/webkit_driver.py)

An `Engine` has one tab: `goto(url)`, `run(body)` (an async JS function body, its return value
back through JSON, so every engine hands back the same Python values), `wait(expr)`, `close()`.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from training.bench.browser import CHROMIUM, CHROMIUM_ARGS

FIREFOX = Path("/usr/bin/firefox-esr")
WEBKIT_DRIVER = Path("/usr/bin/WebKitWebDriver")
MINIBROWSER = Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser")
XVFB = Path("/usr/bin/Xvfb")
ENGINES = ("chromium", "firefox", "webkit")
# What each engine needs, with the Debian package that brings it (.ci/run installs them).
NEEDS = {
    "chromium": [(CHROMIUM, "chromium")],
    "firefox": [(FIREFOX, "firefox-esr")],
    "webkit": [(WEBKIT_DRIVER, "webkit2gtk-driver"), (MINIBROWSER, "webkit2gtk-driver"),
               (XVFB, "xvfb")],
}
# Every call goes through JSON: the three drivers' own conversions of JS values differ.
JS_CALL = "(async () => {{\n{body}\n}})().then((v) => JSON.stringify(v === undefined ? null : v))"


class EngineError(Exception):
    """A script failed or a wait timed out in an engine; the message names the engine."""


def installed(path: Path) -> bool:
    return path.exists()


def require_engine(name: str) -> None:
    """Skip without the engine on a developer's machine; CI (CI set) must have it, like Chromium
    (tests/e2e_support.require_browser). Skip reasons are in tests/no_silent_skips.py."""
    for path, package in NEEDS[name]:
        if not installed(path):
            if os.environ.get("CI"):
                pytest.fail(f"{path} is missing on CI: .ci/run installs {package} with apt")
            pytest.skip(f"{path} not installed (apt-get install {package})")


class Engine:
    name = "?"

    def goto(self, url: str) -> None:
        raise NotImplementedError

    def _evaluate(self, expression: str) -> str:
        """The value of a JS expression that yields a promise of a JSON string."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(self, body: str):
        """Run `body` as an async JS function in the page; returns its value (JSON-able)."""
        return json.loads(self._evaluate(JS_CALL.format(body=body)))

    def wait(self, expr: str, timeout_s: float = 60.0, interval_s: float = 0.25):
        """Poll the JS expression until truthy; returns its value. A time-out's error carries the
        page's state and the errors the harness collected, to show what the page was doing."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.run(f"return ({expr});")
            if value:
                return value
            if time.monotonic() > deadline:
                state = self.run("return [window.ferState || window.ferUploadState || null,"
                                 " window.__e2e && window.__e2e.errors];")
                raise EngineError(f"{self.name}: timed out after {timeout_s:.0f} s waiting for "
                                  f"{expr!r}; state, errors = {json.dumps(state)[:1500]}")
            time.sleep(interval_s)


class Chromium(Engine):
    name = "chromium"

    def __init__(self, playwright, viewport: tuple[int, int]):
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})

    def goto(self, url: str) -> None:
        self.page.goto(url)

    def _evaluate(self, expression: str) -> str:
        from playwright.sync_api import Error

        try:
            return self.page.evaluate(expression)
        except Error as err:
            raise EngineError(f"chromium: {err.message.splitlines()[0]}") from None

    def close(self) -> None:
        self.browser.close()


@contextmanager
def launch(name: str, workdir: Path, viewport: tuple[int, int], playwright=None):
    """One running engine (closed on exit). `workdir`: its profile and logs; `playwright`: a
    started Playwright (Chromium only: two sync Playwrights cannot run at once in a thread)."""
    if name == "chromium":
        engine = Chromium(playwright, viewport)
    elif name == "firefox":
        from firefox_bidi import Firefox

        engine = Firefox(workdir / "firefox-profile", viewport)
    elif name == "webkit":
        from webkit_driver import WebKit

        engine = WebKit(viewport, workdir / "webkitwebdriver.log")
    else:
        raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")
    try:
        yield engine
    finally:
        engine.close()
