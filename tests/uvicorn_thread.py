"""Run the real backend under Uvicorn in a daemon thread, for tests that need live HTTP(S)."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(settings, tls=None, start_timeout: float = 30.0, wrap=None):
    """Serve `create_app(settings)` on 127.0.0.1:settings.port; `tls` = (certfile, keyfile);
    `wrap(app)` returns the ASGI app actually served (a test's wrapper around the real one).
    Yields the app (unwrapped).

    Same Uvicorn options as `fer-hybrid serve` (backend.cli.uvicorn_options), bound to loopback.
    """
    import uvicorn

    from backend.app import create_app
    from backend.cli import uvicorn_options

    options = uvicorn_options(settings, tls)
    options.update(host="127.0.0.1", log_level="warning", lifespan="on")
    app = create_app(settings)
    config = uvicorn.Config(wrap(app) if wrap else app, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield app  # the app being served (its state: the store, the settings)
    finally:
        server.should_exit = True
        thread.join(10)
