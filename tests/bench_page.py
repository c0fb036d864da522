"""Benchmark the live page with a models folder in headless Chromium (a report, not a test).

    PYTHONPATH=. python tests/bench_page.py [--models models] [--seconds 20] [--faces 1|2|5]
                               [--backend wasm|webgl|cpu|page] [--web DIR ...] [--rounds N]
                               [--query 'threads=1'] [--startup-only]

(`PYTHONPATH=.`: the checkout's backend and training packages, not an installed copy's.)

Serves the real backend, plays a clip through Chromium's fake camera (the astronaut once, twice,
or five faces: training/bench/video.py, as `fer-hybrid bench`) at 15 fps and reports, per page variant:

* per-frame processing time: median, p90 and mean over `ferState.frameTimes` (one entry per
  distinct camera frame the page processed); pages without it (before the per-frame loop) are
  sampled from `lastLatencyMs` every 0.25 s instead (`frame_source` says which);
* fps: frames processed per second over the sampling window (from `framesProcessed` when the
  page counts them, else the page's own `fps` readout), and the camera's fps;
* navigation -> Ready, cold: a first visit (fresh browser context: empty HTTP cache, no service
  worker, empty localStorage) from the navigation's start to the page's Ready state; warm: a
  second visit in the same context once the first one's service worker is active (its precache,
  the HTTP cache and localStorage, e.g. a remembered backend, in place);
* first label: seconds from clicking Start (on the warm page) to a labelled face;
* page weight: bytes the page itself downloaded on a cold load until ready (response bodies as
  sent, i.e. compressed where the server compresses; the service worker's background precache
  is not counted: `page_weight_files_bytes` lists the files' sizes).

The three times are read from the page's own clock (an init script watches `body[data-state]`,
the Start click and `ferState.faces`), so they work for any version of the page and include no
polling delay. `--backend page` opens the page without `?backend=` (its own choice: remembered,
else probed), which is what a visitor gets; `--startup-only` measures those three times only.

`--web A --web B --rounds 3` runs A, B, A, B, ... in one process so both see the same machine
load (a before/after table). Numbers depend on the machine: say which one when you quote them.
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
CAMERA_FPS = 15


def clip(faces: int, path: Path) -> Path:
    from skimage import data

    if faces == 5:
        from training.bench.video import face_frame

        frames = frames_with_jitter(face_frame(5))
    else:
        frame = (single_face_frame if faces == 1 else multi_face_frame)(data.astronaut())
        frames = frames_with_jitter(frame)
    return write_y4m(path, frames, fps=CAMERA_FPS)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


# In each page before its own scripts: the moments (ms since the navigation started) the page
# first entered its Ready state, Start was clicked, and the first face got a label.
CLOCK = """(() => {
const clock = window.__clock = {};
new MutationObserver((_, obs) => {
  if (document.body && document.body.dataset.state === 'ready') { clock.ready = performance.now(); obs.disconnect(); }
}).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-state'] });
document.addEventListener('click', (e) => {
  if (clock.start !== undefined || !e.target.closest || !e.target.closest('#toggle')) return;
  clock.start = performance.now();
  new MutationObserver((_, obs) => {
    const s = window.ferState;
    if (s && s.faces.some((f) => f.label)) { clock.label = performance.now(); obs.disconnect(); }
  }).observe(document, { attributes: true, childList: true, subtree: true });
}, true);
})();
"""


# Where a start-up's time went: the document's own milestones and the page's start-up marks
# (web/README.md, "Testing hook"; a page without them gives the document's only), s from navigation.
STEPS = """(() => {
  const n = performance.getEntriesByType('navigation')[0];
  const out = {html: n.responseEnd, dom_content_loaded: n.domContentLoadedEventEnd};
  for (const m of performance.getEntriesByType('mark')) if (m.name.startsWith('fer-')) out[m.name.slice(4)] = m.startTime;
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Math.round(v) / 1000]));
})()"""


def open_ready(ctx, url: str):
    page = ctx.new_page()
    page.goto(url)
    wait_state(page, "window.__clock && window.__clock.ready !== undefined", 180)
    return page


def measure(b, base: str, args, label: str) -> dict:
    ctx = b.new_context(viewport={"width": 412, "height": 860})
    ctx.add_init_script(CLOCK)
    sizes: list[int] = []
    # The page's own downloads (the service worker's precache runs in the background after).
    ctx.on("requestfinished", lambda r: None if r.service_worker else sizes.append(r.sizes()["responseBodySize"]))
    query = "&".join(q for q in ("" if args.backend == "page" else f"backend={args.backend}", args.query) if q)
    url = f"{base}/?{query}"
    page = open_ready(ctx, url)
    ready_cold_s = page.evaluate("window.__clock.ready") / 1000
    steps_cold = page.evaluate(STEPS)
    cold_bytes = sum(sizes)
    # A second visit comes later: its service worker has finished precaching by then.
    page.evaluate("Promise.race([navigator.serviceWorker.ready, new Promise((r) => setTimeout(r, 30000))])")
    page.close()
    page = open_ready(ctx, url)  # warm: HTTP cache, service worker, localStorage
    ready_warm_s = page.evaluate("window.__clock.ready") / 1000
    wait_state(page, "window.ferState && window.ferState.ready", 60)
    page.click("#toggle")
    wait_state(page, "window.__clock.label !== undefined", 60)
    first_label_s = page.evaluate("(window.__clock.label - window.__clock.start) / 1000")
    startup = {"variant": label, "ready_cold_s": round(ready_cold_s, 2), "ready_warm_s": round(ready_warm_s, 2),
               "first_label_s": round(first_label_s, 2), "backend": page.evaluate("window.ferState.backend"),
               "cold_load_bytes": cold_bytes, "steps_cold_s": steps_cold}
    if args.startup_only:
        ctx.close()
        return startup
    wait_state(page, f"window.ferState.faces.length >= {args.faces}", 60)
    time.sleep(2)  # warm-up frames are not counted
    js = "({...window.ferState, faces: window.ferState.faces.length})"
    s0, t_start = page.evaluate(js), time.monotonic()
    sampled: list[float] = []
    faces_seen: list[int] = []
    end = t_start + args.seconds
    while time.monotonic() < end:
        s = page.evaluate(js)
        if isinstance(s.get("lastLatencyMs"), (int, float)):
            sampled.append(float(s["lastLatencyMs"]))
        faces_seen.append(s["faces"])
        time.sleep(0.25)
    s1, t_end = page.evaluate(js), time.monotonic()
    frame_times = s1.get("frameTimes")
    if frame_times:
        # The last <= 240 frames; at 15 fps that is the whole window for --seconds <= 16.
        n_new = s1["framesProcessed"] - s0["framesProcessed"]
        times, source = frame_times[-max(1, min(len(frame_times), n_new)):], "frameTimes"
        fps = n_new / (t_end - t_start)
    else:
        times, source = sampled, "lastLatencyMs sampled every 0.25 s"
        fps = s1.get("fps")
    ctx.close()
    return {
        **startup,
        "faces_expected": args.faces,
        "faces_median": statistics.median(faces_seen),
        "frame_ms_median": round(statistics.median(times), 1),
        "frame_ms_p90": round(pct(times, 0.9), 1),
        "frame_ms_mean": round(statistics.fmean(times), 1),
        "frames": len(times),
        "frame_source": source,
        "fps_processed": round(fps, 1) if fps else None,
        "camera_fps": s1.get("cameraFps"),
        "detect_ms_last": s1.get("detectMs"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--backend", default="wasm", choices=["wasm", "webgl", "cpu", "page"],
                    help="?backend= to open the page with; page: none (the page's own choice)")
    ap.add_argument("--faces", type=int, default=1, choices=[1, 2, 5])
    ap.add_argument("--web", type=Path, action="append",
                    help="web/ folder to serve (repeat to compare variants); default: this repo's")
    ap.add_argument("--rounds", type=int, default=1, help="runs per variant, interleaved")
    ap.add_argument("--query", default="", help="extra query string, e.g. threads=1")
    ap.add_argument("--startup-only", action="store_true",
                    help="only navigation -> Ready (cold, warm) and Start -> first label")
    args = ap.parse_args()
    if not (args.models / "manifest.json").is_file():
        sys.exit(f"error: no manifest.json in {args.models}; run `fer-hybrid export` first")

    tmp = Path(tempfile.mkdtemp(prefix="fer-bench-"))
    video = clip(args.faces, tmp / "cam.y4m")
    webs = args.web or [REPO / "web"]
    runs = []
    with browser(video) as b:
        for r in range(args.rounds):
            for web in webs:
                with live_server(args.models, tmp / "custom", web_dir=web) as base:
                    res = measure(b, base, args, str(web))
                res["round"] = r
                runs.append(res)
                print(json.dumps(res), flush=True)
    summary = {}
    for web in webs:
        mine = [x for x in runs if x["variant"] == str(web)]
        keys = ("ready_cold_s", "ready_warm_s", "first_label_s", "cold_load_bytes", "frame_ms_median",
                "frame_ms_p90", "frame_ms_mean", "fps_processed")
        summary[str(web)] = {k: statistics.median(x[k] for x in mine)
                             for k in keys if all(x.get(k) is not None for x in mine)}
        # the spread behind each median: on a shared machine one round can be far off
        summary[str(web)]["range"] = {k: [min(x[k] for x in mine), max(x[k] for x in mine)]
                                      for k in ("ready_cold_s", "ready_warm_s", "first_label_s")}
    print(json.dumps({"backend": args.backend, "faces": args.faces, "query": args.query,
                      "models": str(args.models), "summary (median over rounds)": summary,
                      "page_weight_files_bytes": page_weight(REPO / "web", args.models)}, indent=2))


if __name__ == "__main__":
    main()
