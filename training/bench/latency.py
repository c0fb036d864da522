"""Per-frame latency of our page and of each peer harness, same browser, same fake camera.

Every tool runs TF.js' wasm backend single-threaded with SIMD (no cross-origin isolation, so no
SharedArrayBuffer; our page's CSP forbids tfjs' thread workers anyway). Download size = the
uncompressed bytes of every response the tool's page needed (service workers blocked, so our
page's precache does not count twice), the harness pages themselves excluded.

Phone class: each page is then timed again with Chromium's CPU throttling (CDP
`Emulation.setCPUThrottlingRate`, which slows the page's main thread, where single-threaded wasm
runs, by the given factor) set once the page is loaded and running, after its own warm-up.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from training.bench.browser import browser, wait_for
from training.core.errors import FerError

# What bench.json calls each measured configuration; labels for the table live in report.py.
CONFIGS = ("ours", "ours_noreuse", "human", "human_nocache", "faceapi")


@dataclass
class Bytes:
    """Every response a page fetched (collected, then sized once the page is done)."""

    exclude: tuple[str, ...] = ()
    responses: list = field(default_factory=list)

    def attach(self, context) -> None:
        context.on("response", lambda r: self.responses.append(r))

    def total(self) -> tuple[int, dict[str, int]]:
        per: dict[str, int] = {}
        for r in self.responses:
            url = r.url.split("?", 1)[0]
            if url.startswith(("data:", "blob:")) or any(x in url for x in self.exclude):
                continue
            path = "/" + url.split("://", 1)[-1].split("/", 1)[-1]  # without the random port
            try:
                per[path] = len(r.body())
            except Exception:  # noqa: BLE001 - redirects and aborted requests have no body
                continue
        return sum(per.values()), per


def summarise(times: list[float], faces: list[int], method: str) -> dict:
    if not times:
        raise FerError("no frame was timed: the camera produced no frames or the tool failed")
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [times[0]] * 9
    return {"median_ms": statistics.median(times), "p90_ms": q[8], "frames": len(times),
            "faces_median": statistics.median(faces) if faces else 0,
            "faces_min": min(faces) if faces else 0, "method": method,
            "_times": list(times), "_faces": list(faces)}


def pool(rounds: list[dict]) -> dict:
    """One result from several interleaved rounds of the same configuration: the frame times
    pooled (median and p90 over all of them), each round's median kept to show the spread."""
    times = [t for r in rounds for t in r["_times"]]
    faces = [f for r in rounds for f in r["_faces"]]
    out = {**rounds[-1], **summarise(times, faces, rounds[-1]["method"])}
    out["round_medians_ms"] = [r["median_ms"] for r in rounds]
    out.pop("_times")
    out.pop("_faces")
    return out


def new_frame_times(window: list[float], processed_before: int, processed_now: int) -> list[float]:
    """The times `window` (the page's last <= 240 frame times) gained since the page had
    processed `processed_before` frames."""
    n = min(processed_now - processed_before, len(window))
    return [float(t) for t in window[-n:]] if n > 0 else []


def rate_key(rate: float) -> str:
    """How bench.json names a throttling rate: "4", "2.5"."""
    return f"{rate:g}"


def cpu_throttle(page):
    """A setter of Chromium's CPU throttling for `page`: set(rate), 1 for none. It keeps its
    DevTools session attached for the page's life: Chromium drops a session's emulation
    settings when the session detaches (the throttling would then end at once)."""
    cdp = page.context.new_cdp_session(page)
    return lambda rate: cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})


def measure_ours(b, base: str, seconds: float, warmup: float, reuse: bool = True,
                 rates: tuple[float, ...] = (1,)) -> dict[str, dict]:
    """Our real page: press Start, then read per-frame times from window.ferState, once per
    CPU throttling rate (1: none), each after `warmup` seconds at that rate -> {rate_key: result}.
    `reuse=False` opens it with `?reuse=0` (detector and classifier on every frame)."""
    ctx = b.new_context(viewport={"width": 412, "height": 860}, service_workers="block")
    sizes = Bytes()
    sizes.attach(ctx)
    page = ctx.new_page()
    page.goto(f"{base}/?backend=wasm{'' if reuse else '&reuse=0'}")
    wait_for(page, "window.ferState && (window.ferState.ready || window.ferState.error)", 180,
          "our page to load")
    if page.evaluate("window.ferState.error"):
        raise FerError(f"our page failed: {page.evaluate('window.ferState.error')}")
    page.click("#toggle")
    wait_for(page, "window.ferState.faces && window.ferState.faces.length > 0", 120,
          "our page to find a face")
    out, throttle = {}, cpu_throttle(page)
    for rate in rates:
        throttle(rate)
        time.sleep(warmup)
        out[rate_key(rate)] = _time_ours(page, seconds)
    page.click("#toggle")
    size, files = sizes.total()
    ctx.close()
    return {k: {**r, "download_bytes": size, "files": files} for k, r in out.items()}


def _time_ours(page, seconds: float) -> dict:
    """Per-frame times of our running page for `seconds`.

    Uses `ferState.frameTimes` (the last <= 240 whole-frame times, one per distinct camera
    frame) with `framesProcessed` when the page has them; else samples `lastLatencyMs` each
    time `frames` moves (the page before per-camera-frame timing)."""
    read = ("(() => { const s = window.ferState; return {frames: s.frames, last: s.lastLatencyMs,"
            " faces: s.faces.length, processed: s.framesProcessed ?? null, seen: s.framesSeen ?? null,"
            " times: Array.isArray(s.frameTimes) ? s.frameTimes.slice() : null, backend: s.backend}; })()")
    start = page.evaluate(read)
    use_window = start["times"] is not None and start["processed"] is not None
    times, faces = [], []
    last_frames, processed = start["frames"], start["processed"]
    # frameTimes holds the last <= 240 frames: polled every 2 s (<= 60 frames at 30 fps) nothing
    # is lost, and the page's thread is left alone; else lastLatencyMs is sampled every 0.1 s
    every = 2.0 if use_window else 0.1
    end = time.monotonic() + seconds
    while True:
        time.sleep(max(0.0, min(every, end - time.monotonic())))
        s = page.evaluate(read)
        if use_window:
            times += new_frame_times(s["times"], processed, s["processed"])
            processed = s["processed"]
            faces.append(int(s["faces"]))
        elif s["frames"] != last_frames and s["last"] is not None:
            times.append(float(s["last"]))
            faces.append(int(s["faces"]))
            last_frames = s["frames"]
        if time.monotonic() >= end:
            break
    stop = s
    method = ("ferState.frameTimes (one time per distinct camera frame)" if use_window else
              "ferState.lastLatencyMs, sampled every 0.1 s when ferState.frames moved")
    result = summarise(times, faces, method)
    result["backend"] = stop["backend"]
    if stop["seen"] is not None:
        result["camera_frames_seen"] = stop["seen"] - (start["seen"] or 0)
    return result


def measure_peer(b, base: str, tool: str, seconds: float, warmup: float, cache: bool = True,
                 rates: tuple[float, ...] = (1,)) -> dict[str, dict]:
    """A peer's harness page: its own per-frame loop, once per CPU throttling rate (1: none),
    each after `warmup` seconds at that rate -> {rate_key: result}."""
    ctx = b.new_context(viewport={"width": 640, "height": 480}, service_workers="block")
    sizes = Bytes(exclude=("/harness/",))
    sizes.attach(ctx)
    page = ctx.new_page()
    page.goto(f"{base}/harness/index.html?tool={tool}&cache={int(cache)}")
    wait_for(page, "window.bench && (window.bench.ready || window.bench.error)", 180, f"{tool} to load")
    if page.evaluate("window.bench.error"):
        raise FerError(f"{tool} harness failed: {page.evaluate('window.bench.error')}")
    info = page.evaluate("window.bench.info")
    out, throttle = {}, cpu_throttle(page)
    for rate in rates:
        throttle(rate)
        r = page.evaluate("([s, w]) => bench.latency(s, w)", [seconds, warmup])
        out[rate_key(rate)] = {**summarise(r["times"], r["faces"], "requestVideoFrameCallback, one "
                                           "detect+classify per distinct camera frame"), "info": info}
    size, files = sizes.total()
    ctx.close()
    return {k: {**r, "download_bytes": size, "files": files} for k, r in out.items()}


def run_latency(videos: dict[int, Path], our_base: str, peer_base: str | None, peers: list[str],
                seconds: float, warmup: float, rounds: int = 1, log=print,
                throttles: tuple[float, ...] = ()) -> dict[str, dict[str, dict[str, dict]]]:
    """{rate: {config: {"1": result, "5": result}}} for ours and each peer configuration, rate
    "1" unthrottled and one more per CPU throttling rate in `throttles` (each page is timed at
    every rate in turn). With several rounds the configurations take turns (ours, human, ...,
    ours, human, ...), so a change in the machine's load hits them alike; their frame times are
    pooled."""
    rates = (1, *(r for r in throttles if r != 1))
    out: dict[str, dict[str, dict[str, dict]]] = {rate_key(r): {} for r in rates}
    for faces, video in videos.items():
        with browser(video) as b:
            plan = [("ours", lambda: measure_ours(b, our_base, seconds, warmup, True, rates)),
                    ("ours_noreuse", lambda: measure_ours(b, our_base, seconds, warmup, False, rates))]
            if "human" in peers:
                plan.append(("human", lambda: measure_peer(b, peer_base, "human", seconds, warmup, True, rates)))
                plan.append(("human_nocache",
                             lambda: measure_peer(b, peer_base, "human", seconds, warmup, False, rates)))
            if "faceapi" in peers:
                plan.append(("faceapi", lambda: measure_peer(b, peer_base, "faceapi", seconds, warmup,
                                                             True, rates)))
            done: dict[tuple[str, str], list[dict]] = {}
            for i in range(rounds):
                for name, run in plan:
                    log(f"  latency: {name}, {faces} face{'s' if faces > 1 else ''}"
                        f"{f', round {i + 1}/{rounds}' if rounds > 1 else ''} "
                        f"({warmup:g} s warm-up + {seconds:g} s"
                        f"{', then again at CPU x' + ', x'.join(rate_key(r) for r in rates[1:]) if len(rates) > 1 else ''}) ...")
                    for rate, r in run().items():
                        log(f"    {'' if rate == '1' else f'CPU x{rate}: '}median {r['median_ms']:.1f} ms, "
                            f"p90 {r['p90_ms']:.1f} ms, {r['frames']} frames, faces found (median) "
                            f"{r['faces_median']:g}")
                        done.setdefault((rate, name), []).append(r)
            for (rate, name), results in done.items():
                out[rate].setdefault(name, {})[str(faces)] = pool(results)
    return out
