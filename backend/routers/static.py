"""Static files: /static/* from web/ and /models/* from models/, the product's files only.

Starlette's StaticFiles gives ETag / Last-Modified revalidation, Range requests and path
traversal protection; `backend.assets` pins the MIME types; `backend.served` says which files
are the product (the rest, templates, reports, tooling, is a 404 like a missing file);
`SecurityHeadersMiddleware` decides Cache-Control (immutable for versioned URLs, no-cache
otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from .. import assets  # noqa: F401  (registers MIME types)


class AssetFiles(StaticFiles):
    """StaticFiles that never lists directories, tolerates a missing folder at startup and
    serves only the paths `served` accepts (relative to the folder, '/'-separated)."""

    def __init__(self, directory: Path, served: Callable[[str], bool]) -> None:
        super().__init__(
            directory=str(directory), check_dir=False, html=False, follow_symlink=False
        )
        self._root = Path(directory)
        self._served = served

    async def check_config(self) -> None:
        if self._root.is_dir():  # a missing folder just means 404s, not a 500
            await super().check_config()

    async def get_response(self, path: str, scope: Scope):
        if scope["method"] in ("GET", "HEAD") and not self._served(Path(path).as_posix()):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)
