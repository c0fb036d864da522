"""Debian's Firefox ESR, headless, driven over WebDriver BiDi (tests/engines.py's interface).

geckodriver is not packaged by Debian; Firefox itself serves BiDi on `--remote-debugging-port`,
and the few commands the tests need (a session, navigate, evaluate, viewport) are JSON over one
websocket.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import threading
import time
from collections import deque
from contextlib import ExitStack
from pathlib import Path

from engines import FIREFOX, Engine, EngineError

# A fresh profile's user.js: a fake camera, and no permission prompt (nobody would answer it).
# The tests replace the camera with a face (tests/engine_harness.js).
PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
}
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")


class Firefox(Engine):
    name = "firefox"

    def __init__(self, profile: Path, viewport: tuple[int, int], start_timeout_s: float = 60.0):
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()))
        # Port 0: Firefox picks a free port and prints it on stderr.
        self.proc = subprocess.Popen(
            [str(FIREFOX), "--headless", "--no-remote", "--profile", str(profile),
             "--remote-debugging-port", "0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.stderr: deque[str] = deque(maxlen=30)  # Firefox's last words, for errors
        self._urls: queue.Queue[str] = queue.Queue()
        # Read stderr to the end, or Firefox blocks once the pipe is full.
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self._stack = ExitStack()
        self._id = 0
        try:
            from websockets.sync.client import connect

            try:
                url = self._urls.get(timeout=start_timeout_s)
            except queue.Empty:
                raise EngineError(f"firefox: no BiDi server after {start_timeout_s:.0f} s; "
                                  f"stderr: {' | '.join(self.stderr)}") from None
            self.ws = self._stack.enter_context(connect(url + "/session", max_size=None))
            self.command("session.new", {"capabilities": {}})
            tree = self.command("browsingContext.getTree", {"maxDepth": 0})
            self.context = tree["contexts"][0]["context"]
            self.command("browsingContext.setViewport", {
                "context": self.context, "viewport": {"width": viewport[0], "height": viewport[1]}})
        except BaseException:
            self.close()
            raise

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            match = LISTENING.search(line)
            if match:
                self._urls.put(match.group(1))

    def command(self, method: str, params: dict, timeout_s: float = 120.0) -> dict:
        """Send one BiDi command and return its result (no events are subscribed to: any other
        message is skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                message = json.loads(self.ws.recv(timeout=max(0.0, deadline - time.monotonic())))
            except TimeoutError:
                raise EngineError(f"firefox: no answer to {method} in {timeout_s:.0f} s") from None
            if message.get("id") != self._id:
                continue
            if message.get("type") == "error":
                raise EngineError(f"firefox: {method}: {message.get('error')}: "
                                  f"{message.get('message')}")
            return message["result"]

    def goto(self, url: str) -> None:
        self.command("browsingContext.navigate",
                     {"context": self.context, "url": url, "wait": "complete"})

    def _evaluate(self, expression: str) -> str:
        result = self.command("script.evaluate", {
            "expression": expression, "target": {"context": self.context}, "awaitPromise": True})
        if result["type"] == "exception":
            raise EngineError(f"firefox: {result['exceptionDetails']['text']}")
        return result["result"]["value"]

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
