"""bench.json / bench.md / bench.png from one bench result (a plain dict, see `table`)."""

from __future__ import annotations

from pathlib import Path

from training.core.report import FERPLUS_HEADERS, ferplus_cells, markdown_table, pct, write_json

# How each measured configuration is named in the table, and what it runs.
TOOLS: dict[str, dict[str, str]] = {
    "ours": {"tool": "fer-hybrid (this page)", "short": "fer-hybrid",
             "stack": "BlazeFace (Human's conversion) + our uint8 ensemble ({members}), "
                      "page low-light step"},
    "ours_noreuse": {"tool": "fer-hybrid, nothing reused (`?reuse=0`)", "short": "fer-hybrid\nevery frame",
                     "stack": "the same, detector and classifier on every frame"},
    "ours_raw": {"tool": "fer-hybrid, no low-light step", "short": "fer-hybrid\nraw crop",
                 "stack": "the same ensemble on the raw crop (accuracy only)"},
    "human": {"tool": "Human 3.3.6, default video caching", "short": "Human\n(its caching)",
              "stack": "BlazeFace + emotion (oarriaga mini-Xception, 64x64 grey); reuses earlier "
                       "results on near-identical frames"},
    "human_nocache": {"tool": "Human 3.3.6, caching off", "short": "Human\n(caching off)",
                      "stack": "the same, detection and emotion on every frame"},
    "faceapi": {"tool": "face-api.js weights via @vladmandic/face-api 1.7.15",
                "short": "face-api.js",
                "stack": "TinyFaceDetector (inputSize 320) + FaceExpressionNet"},
}
ROWS = ("ours", "ours_noreuse", "ours_raw", "human", "human_nocache", "faceapi")
# Configurations that share a classifier: accuracy is measured once, under the first name.
SAME_CLASSIFIER = {"human_nocache": "human", "ours_noreuse": "ours"}
# Each row's like-for-like counterpart: the same amount of reuse (Human's cache <-> our page's
# schedule; every frame <-> every frame; face-api.js has no cache).
LIKE_FOR_LIKE = {"ours": "human", "human": "ours", "ours_noreuse": "human_nocache",
                 "human_nocache": "ours_noreuse", "faceapi": "ours_noreuse"}


# What a reader needs to weigh the numbers; each is checked against the peers' sources.
NOTES = [
    "Notes:",
    "",
    "- Human's emotion model is oarriaga's mini-Xception (Human's README, 'Default models'). "
    "oarriaga's trainer (face_classification, src/train_emotion_classifier.py with "
    "src/utils/datasets.py split_data) trains on the first 80 % of fer2013.csv, exactly the "
    "Training rows, and keeps the checkpoint with the best loss on the last 20 %, PublicTest "
    "and PrivateTest together: PrivateTest took part in that model's selection, so its "
    "PrivateTest figure is somewhat optimistic. What face-api.js's expression net was trained "
    "on is not documented.",
    "- Human, accuracy: each crop takes the path Human gives every detected face with the mesh "
    "off: src/face/facemeshutil.ts cutAndResize (the box, here the whole crop, resized to "
    "BlazeFace's 256x256, / 255), then src/gear/emotion.ts (bilinear resize to 64x64, grey = "
    "0.2989 R + 0.587 G + 0.114 B, (grey - 0.5) * 2). Resizing the 48x48 crop straight to 64x64 "
    "instead scored 66.6 % plain and 67.4 % with flip TTA (one side run, 2026-12-03). face-api: "
    "each crop as a canvas to faceExpressionNet.predictExpressions (its own resize to 112x112 "
    "and normalisation).",
    "- fer-hybrid (this page) runs its live schedule (web/js/live.js): faces followed by patch "
    "matching on every frame; a detection every 5th frame and at least every 400 ms (with one of "
    "the finer tiles each time), a face re-classified when its crop changed or every 6th frame, "
    "both in Web Workers (web/js/modelworker.js), so its ms/frame is the page's main thread's "
    "time per frame, which holds neither model; `?reuse=0` runs the detector and the classifier "
    "on every frame on the main thread, as the peers do. Ratios compare like with like: our "
    "schedule with Human's cache, our every-frame page with Human without cache and with "
    "face-api.js (no cache).",
    "- Human 'default video caching' reuses its earlier detection and emotion results while "
    "frames differ little (cacheSensitivity 0.7, skipFrames 99, skipTime 1.5-2.5 s); how often "
    "that applies depends on the video (the clip here jitters by a few pixels every frame), "
    "so compare its two rows; 'caching off' runs both models on every frame. Human's "
    "whole-frame image filters are off (WebGL, which headless Chromium renders in software).",
]


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.2f} MiB"


def _ms(r: dict | None) -> str:
    if not r:
        return "-"
    return f"{r['median_ms']:.1f} ({r['p90_ms']:.1f})"


def _ratio(r: dict | None, ours: dict | None) -> str:
    if not r or not ours:
        return "-"
    return f"{r['median_ms'] / ours['median_ms']:.2f}x"


def table(result: dict) -> str:
    """The Markdown table: one row per configuration measured."""
    lat, acc = result.get("latency", {}), result.get("accuracy") or {}
    members = ", ".join(result.get("ours_members", [])) or "?"
    rows = []
    for key in ROWS:
        if key not in lat and key not in acc:
            continue
        by = lat.get(key, {})
        one, five = by.get("1"), by.get("5")
        # peers against our row with the same reuse; our rows are the 1.00x reference
        base = lat.get(key if key.startswith("ours") else LIKE_FOR_LIKE.get(key, "ours"), {})
        found = "/".join(f"{by[k]['faces_median']:g}" for k in ("1", "5") if k in by) or "-"
        src = SAME_CLASSIFIER.get(key)
        a = acc.get(key)
        if a:
            plain, flip = pct(a["accuracy"], 1), pct(a["accuracy_flip_tta"], 1)
        elif src and src in acc:
            plain = flip = f"as {TOOLS[src]['tool'].split(',')[0]}"
        else:
            plain = flip = "-"
        size = (one or five or {}).get("download_bytes")
        rows.append([TOOLS[key]["tool"], TOOLS[key]["stack"].format(members=members), mib(size),
                     _ms(one), _ms(five), f"{_ratio(one, base.get('1'))} / {_ratio(five, base.get('5'))}",
                     found, plain, flip])
    headers = ["tool", "detector + classifier", "download", "ms/frame, 1 face: median (p90)",
               "ms/frame, 5 faces: median (p90)", "median vs ours, like for like (1 / 5 faces)",
               "faces found (1 / 5)", "PrivateTest", "PrivateTest, flip TTA"]
    return markdown_table(headers, rows)


def throttled_table(result: dict, rate: str) -> str:
    """The phone-class table: each configuration's latency with the CPU throttled `rate` times,
    its slow-down against the unthrottled run, and the like-for-like ratio at that rate."""
    lat, slow = result.get("latency", {}), result.get("latency_throttled", {}).get(rate, {})
    rows = []
    for key in ROWS:
        if key not in slow:
            continue
        by, fast = slow[key], lat.get(key, {})
        base = slow.get(key if key.startswith("ours") else LIKE_FOR_LIKE.get(key, "ours"), {})
        one, five = by.get("1"), by.get("5")
        rows.append([TOOLS[key]["tool"], _ms(one), _ms(five),
                     f"{_ratio(one, fast.get('1'))} / {_ratio(five, fast.get('5'))}",
                     f"{_ratio(one, base.get('1'))} / {_ratio(five, base.get('5'))}"])
    headers = ["tool", "ms/frame, 1 face: median (p90)", "ms/frame, 5 faces: median (p90)",
               "median vs unthrottled (1 / 5 faces)", "median vs ours, like for like (1 / 5 faces)"]
    return markdown_table(headers, rows)


def throttled_lines(result: dict) -> list[str]:
    """bench.md's phone-class section: one table per CPU throttling rate ([] without)."""
    lines = []
    for rate in result.get("latency_throttled") or {}:
        lines += ["", f"Phone class: the same pages with Chromium's CPU throttled x{rate} (DevTools "
                  "protocol `Emulation.setCPUThrottlingRate`, set once each page was loaded and "
                  "running, then the same warm-up and timed seconds; it slows the page's main "
                  "thread, where the peers' single-threaded wasm runs, and ours on `?reuse=0`; "
                  "our schedule's models run in workers):", "",
                  throttled_table(result, rate)]
    return lines


def ferplus_table(result: dict) -> list[str]:
    """Markdown lines: each tool's agreement with the FER+ ten-annotator majority on the same
    crops ([] when the bench measured no accuracy; one line when the votes were absent)."""
    acc = result.get("accuracy") or {}
    if not acc:
        return []
    title = "Agreement with people (FER+ ten-annotator votes) on the same crops:"
    blocks = {k: acc[k].get("ferplus") for k in ROWS if k in acc}
    scored = next((b for b in blocks.values() if b and "note" not in b), None)
    if scored is None:
        why = next((b["note"] for b in blocks.values() if b and "note" in b), None) or \
            result["settings"].get("ferplus") or "no FER+ votes file"
        return ["", f"{title} not measured ({why})."]
    rows = [[TOOLS[k]["tool"], *ferplus_cells(b)] for k, b in blocks.items()]
    return ["", (f"{title} the {scored['plain']['n']} crops whose most-voted FER+ column is "
                 f"one of the seven classes; {scored['ties']}; vote share = mean share of the "
                 "annotators who chose the predicted class."), "",
            markdown_table(["tool", *FERPLUS_HEADERS], rows)]


def markdown(result: dict) -> str:
    env, s = result["environment"], result["settings"]
    acc = result.get("accuracy")
    n = next(iter(acc.values()))["n"] if acc else None
    lines = [
        "# Peer benchmark",
        "",
        f"`{result['command']}` on {result['created']}. " + s["backend"] + ".",
        f"Machine: {env['cpu']} ({env['cpus']} CPUs, load average {env['load_average']} at the "
        f"start), {env['chromium']}.",
        "",
        table(result),
        "",
        f"Latency: {s['seconds']:g} s per tool and video after {s['warmup']:g} s of warm-up"
        f"{', in %d interleaved rounds, frame times pooled' % s['rounds'] if s.get('rounds', 1) > 1 else ''}; one "
        "detect+classify per distinct camera frame of a 640x480 fake camera "
        f"({s['fps']} fps; 1 face: scikit-image's astronaut; 5 faces: she and matplotlib's Grace "
        "Hopper, some mirrored); median and 90th percentile "
        "over frames. Download: uncompressed bytes of every file the tool's page fetched "
        "(JavaScript, wasm, models).",
    ]
    if result.get("latency_throttled"):
        lines += [*throttled_lines(result), ""]
    if acc:
        lines.append(f"Accuracy: {n} FER2013 PrivateTest crops ({s['crops']}) through each "
                     "tool's own classifier code in the browser, the tool's classes mapped onto "
                     "FER2013's by name; flip TTA = mean of the crop's and its mirror's "
                     "probabilities.")
    else:
        lines.append(f"Accuracy: not measured ({result.get('accuracy_skipped', 'skipped')}).")
    lines += ferplus_table(result)
    lines += ["", *NOTES, ""]
    return "\n".join(lines)


def write(result: dict, out: Path) -> dict[str, Path]:
    from contract.files import atomic_write
    from training.core.plots import plot_bench

    out.mkdir(parents=True, exist_ok=True)
    files = {"json": write_json(out / "bench.json", result),
             "md": atomic_write(out / "bench.md", markdown(result))}
    files["png"] = plot_bench(result, out / "bench.png", TOOLS)
    return files
