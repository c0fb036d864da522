"""Where one BlazeFace pass goes (a report, not a test): drawing the frame into the 256x256
canvas, reading it back as a normalised tensor, executing the graph, downloading the outputs,
and the whole detector.detect() call; medians of 30 on the wasm backend, two page loads.

    python tests/bench_detector_parts.py [--models models]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import browser, live_server, wait_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
JS = """async () => {
  const { FaceDetector } = await import('/static/js/detector.js');
  const d = await new FaceDetector().load(); await d.warmup();
  const src = document.createElement('canvas'); src.width = 640; src.height = 480;
  const sctx = src.getContext('2d'); sctx.fillStyle = '#888'; sctx.fillRect(0, 0, 640, 480);
  const med = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
  const acc = { draw: [], pixels: [], execute: [], download: [], whole: [] };
  for (let i = 0; i < 30; i++) {
    const t0 = performance.now();
    d.ctx.drawImage(src, 0, 0, 640, 480, 0, 32, 256, 192);
    const t1 = performance.now();
    const x = tf.tidy(() => tf.expandDims(tf.sub(tf.div(tf.cast(tf.browser.fromPixels(d.canvas), 'float32'), 127.5), 1), 0));
    await x.data();
    const t2 = performance.now();
    let res = d.model.execute(x); if (!Array.isArray(res)) res = [res];
    const t3 = performance.now();
    await Promise.all(res.map((t) => t.data()));
    const t4 = performance.now();
    tf.dispose([x, ...res]);
    await d.detect(src, 640, 480);
    const t5 = performance.now();
    acc.draw.push(t1 - t0); acc.pixels.push(t2 - t1); acc.execute.push(t3 - t2); acc.download.push(t4 - t3); acc.whole.push(t5 - t4);
  }
  return Object.fromEntries(Object.entries(acc).map(([k, v]) => [k, Math.round(med(v) * 10) / 10]));
}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fer-detparts-"))
    with browser() as b, live_server(args.models, tmp / "custom") as base:
        for _ in range(2):
            page = b.new_page()
            page.goto(f"{base}/upload?backend=wasm")
            wait_state(page, "window.ferUploadState && window.ferUploadState.ready", 120)
            print(json.dumps(page.evaluate(JS)))
            page.close()


if __name__ == "__main__":
    main()
