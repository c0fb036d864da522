"""Time BlazeFace and the ensemble on tfjs-wasm with 1 thread vs 2 (a report, not a test).

    python tests/bench_wasm_threads.py [--rounds 3] [--threads 2] [--cores 4]

The threaded build starts its workers from blob: URLs and runs `importScripts(blob:…)` inside
them, which the page's CSP (`script-src 'self'`) forbids, and it needs cross-origin isolation
(the backend already sends COOP/COEP). This report therefore serves the page with `blob:` added
to script-src *in this process only*. tfjs also caps the thread count at
navigator.hardwareConcurrency / 2, so on a 2-core machine `--cores 4` makes the page report 4
cores (else the threaded build runs one thread). Variants run interleaved (A, B, A, B, ...) so
both see the same machine load; prints per-run medians and the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import browser, live_server, wait_state  # noqa: E402

import backend.middleware as mw  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JS = """async () => {
  const { FaceDetector } = await import('/static/js/detector.js');
  const { Ensemble } = await import('/static/js/classifier.js');
  const d = await new FaceDetector().load(); await d.warmup();
  const e = await Ensemble.load(); await e.warmup();
  const c = document.createElement('canvas'); c.width = 640; c.height = 480;
  const ctx = c.getContext('2d'); ctx.fillStyle = '#888'; ctx.fillRect(0, 0, 640, 480);
  const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  const T = async (f, n) => { const out = []; for (let i = 0; i < n; i++) { const t0 = performance.now(); await f(); out.push(performance.now() - t0); } return med(out); };
  const crops = (k) => Array.from({ length: k }, () => new Uint8Array(48 * 48).fill(100));
  await T(() => e.classify(crops(5)), 3);
  return { threads: tf.wasm.getThreadsCount(), isolated: crossOriginIsolated,
    detect_ms: await T(() => d.detect(c, 640, 480), 25),
    classify1_ms: await T(() => e.classify(crops(1)), 25), classify5_ms: await T(() => e.classify(crops(5)), 15) };
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cores", type=int, default=0, help="navigator.hardwareConcurrency to report")
    args = ap.parse_args()
    mw.SECURITY_HEADERS["content-security-policy"] = mw.CSP.replace(
        "script-src 'self'", "script-src 'self' blob:")
    variants = {"1 thread": "", f"{args.threads} threads": f"threads={args.threads}"}
    res: dict[str, list[dict]] = {k: [] for k in variants}
    tmp = Path(tempfile.mkdtemp(prefix="fer-threads-"))
    with browser() as b, live_server(args.models, tmp / "custom") as base:
        for _ in range(args.rounds):
            for name, query in variants.items():
                ctx = b.new_context()
                if args.cores:
                    ctx.add_init_script("Object.defineProperty(Navigator.prototype, "
                                        f"'hardwareConcurrency', {{ get: () => {args.cores} }})")
                page = ctx.new_page()
                page.goto(f"{base}/upload?backend=wasm&{query}")
                wait_state(page, "window.ferUploadState && window.ferUploadState.ready", 120)
                out = page.evaluate(JS)
                res[name].append(out)
                print(name, json.dumps(out), flush=True)
                ctx.close()
    keys = ("detect_ms", "classify1_ms", "classify5_ms")
    print(json.dumps({name: {k: round(statistics.median(x[k] for x in xs), 1) for k in keys}
                      for name, xs in res.items()}, indent=2))


if __name__ == "__main__":
    main()
