"""Bytes a first visit to the live page downloads (a report, not a test): every distinct file
the page fetches on the wasm path plus what the service worker precaches, uncompressed.

    python tests/bench_first_visit.py [--web web] [--precache backend/precache.py]

`--web`/`--precache` let you point at another checkout's web/ folder and precache.py (e.g.
main's, from `git archive main web backend/precache.py | tar -x -C /tmp/main`) for a
before/after. The WebGL backend counts only when head.html loads it up front.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import model_files  # noqa: E402

from backend.assets import TFJS_URL  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--web", type=Path, default=REPO / "web")
    ap.add_argument("--precache", type=Path, default=REPO / "backend" / "precache.py")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("backend._precache_report", args.precache)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "backend"
    spec.loader.exec_module(mod)
    web = args.web
    urls = set(mod.vendor_urls(web)) | {u for u in mod.shell_urls(web) if u.startswith("/static/")}
    if "tf-backend-webgl" in (web / "head.html").read_text():
        urls.add(TFJS_URL + "tf-backend-webgl.es2017.min.js")
    urls.add(TFJS_URL + "tfjs-backend-wasm-simd.wasm")  # what the page runs on
    static = sum((web / u[len("/static/"):]).stat().st_size for u in urls)
    models = sum(p.stat().st_size for p in model_files(args.models))
    print(json.dumps({"web": str(web), "static_bytes": static, "models_bytes": models,
                      "total_bytes": static + models}))


if __name__ == "__main__":
    main()
