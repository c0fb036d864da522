"""What the service worker caches when it installs, derived from the files under web/.

routers/pages.py renders web/sw.js with these lists, so a module added under web/js/ is
available offline without anyone remembering to list it (a page missing one module offline
does not start at all).
"""

from __future__ import annotations

from pathlib import Path

from .assets import TFJS_DIR

#: Pages and the shell files that are not modules (the HTML files under web/ are templates).
SHELL_PAGES = ("/", "/upload")
SHELL_FILES = ("css/app.css", "manifest.webmanifest", "icon.svg")
MODULE_SUFFIXES = (".js", ".mjs")
#: TF.js scripts and the wasm binaries tfjs-backend-wasm picks from at run time (not LICENSE).
TFJS_SUFFIXES = (".js", ".wasm")
#: ... except those fetched only when used (then kept by the worker's cache-first rule), 806 KB
#: that every first visit would otherwise download: the WebGL backend (the live page loads it
#: only when it tries WebGL; offline that attempt fails and the page stays on wasm) and the
#: threaded wasm binary (threads are opt-in, ?threads=N: web/js/env.js).
TFJS_ON_DEMAND = ("tf-backend-webgl.es2017.min.js", "tfjs-backend-wasm-threaded-simd.wasm")
#: The BlazeFace weights detector.js loads; a glob, so the Human version is not written here too.
DETECTOR_GLOB = "vendor/human-*/models/*"


def _files(web: Path, pattern: str) -> list[Path]:
    return sorted(p for p in web.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _url(web: Path, path: Path) -> str:
    return "/static/" + path.relative_to(web).as_posix()


def shell_urls(web_dir: Path) -> list[str]:
    """The pages, their CSS/manifest/icon and every module under web/js/ (network-first)."""
    web = Path(web_dir)
    modules = [p for p in _files(web, "js/**/*") if p.suffix in MODULE_SUFFIXES]
    return [*SHELL_PAGES, *(f"/static/{f}" for f in SHELL_FILES), *(_url(web, p) for p in modules)]


def vendor_urls(web_dir: Path) -> list[str]:
    """The vendored files the pages load at run time (versioned folders: cache-first)."""
    web = Path(web_dir)
    tfjs = [
        p
        for p in _files(web, f"{TFJS_DIR}/*")
        if p.suffix in TFJS_SUFFIXES and p.name not in TFJS_ON_DEMAND
    ]
    return [_url(web, p) for p in (*tfjs, *_files(web, DETECTOR_GLOB))]
