"""Benchmark the live page with a models folder in headless Chromium (a report, not a test).

    python tests/bench_page.py [--models models] [--seconds 20] [--backend wasm] [--faces 1|2]

Serves the real backend, plays the astronaut (or two faces) through Chromium's fake camera and
samples `window.ferState` for a while; prints the medians of BlazeFace detection, ensemble
classification per face and whole-frame latency as JSON. Numbers depend on the machine: say which
one when you quote them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import (  # noqa: E402
    browser,
    frames_with_jitter,
    live_server,
    multi_face_frame,
    page_weight,
    single_face_frame,
    wait_state,
    write_y4m,
)

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--backend", default="wasm", choices=["wasm", "webgl", "cpu"])
    ap.add_argument("--faces", type=int, default=1, choices=[1, 2])
    args = ap.parse_args()
    if not (args.models / "manifest.json").is_file():
        sys.exit(f"error: no manifest.json in {args.models}; run `fer-hybrid export` first")

    from skimage import data

    tmp = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    frame = (single_face_frame if args.faces == 1 else multi_face_frame)(data.astronaut())
    video = write_y4m(tmp / "cam.y4m", frames_with_jitter(frame))
    samples: dict[str, list[float]] = {"detectMs": [], "classifyPerFaceMs": [], "lastLatencyMs": []}
    with live_server(args.models, tmp / "custom") as base, browser(video) as b:
        page = b.new_page(viewport={"width": 412, "height": 860})
        page.goto(f"{base}/?backend={args.backend}")
        wait_state(page, "window.ferState && window.ferState.ready", 120)
        page.click("#toggle")
        wait_state(page, f"window.ferState.faces.length >= {args.faces}", 120)
        time.sleep(2)  # warm-up frames are not counted
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            state = page.evaluate("({...window.ferState, faces: window.ferState.faces.length})")
            for key in samples:
                if isinstance(state.get(key), (int, float)):
                    samples[key].append(float(state[key]))
            time.sleep(0.25)
        fps = page.evaluate("window.ferState.fps")
    report = {
        "backend": args.backend,
        "faces": args.faces,
        "models": str(args.models),
        "median_detect_ms": statistics.median(samples["detectMs"]),
        "median_classify_ms_per_face": statistics.median(samples["classifyPerFaceMs"]),
        "median_frame_ms": statistics.median(samples["lastLatencyMs"]),
        "fps": fps,
        "samples": len(samples["lastLatencyMs"]),
        "page_weight_bytes": page_weight(REPO / "web", args.models),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
