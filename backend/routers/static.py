"""Static files: /static/* from web/ and /models/* from models/.

Starlette's StaticFiles gives ETag / Last-Modified revalidation, Range requests and path
traversal protection; `backend.assets` pins the MIME types; `SecurityHeadersMiddleware`
decides Cache-Control (immutable for versioned URLs, no-cache otherwise).
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles

from .. import assets  # noqa: F401  (registers MIME types)


class AssetFiles(StaticFiles):
    """StaticFiles that never lists directories and tolerates a missing folder at startup."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            directory=str(directory), check_dir=False, html=False, follow_symlink=False
        )
        self._root = Path(directory)

    async def check_config(self) -> None:
        if self._root.is_dir():  # a missing folder just means 404s, not a 500
            await super().check_config()
