"""Benchmark the page's face detector alone: recall on multi-face scenes, false positives on
face-free frames and ms per detect() call, for several detect() options on the same images.

    python tests/bench_detector.py [--out models] [--sizes 32,40,48,64,96,128] [--angles 0,15,-30]
        [--photo-repeats 2] [--lfw 0] [--fp-frames 1] [--canvas 640x480 --tag ""] [--variant NAME=JSON ...]

Scenes are tests/scenes.py's (the faces shipped in packages on 640x480 backgrounds); every
variant sees every scene and every face-free frame in turn (interleaved, so a loaded machine
slows all of them alike); ms are medians over the scenes. Face-free frames: scikit-image's
non-face pictures and the scene backgrounds, each in normal, dim and dark light. Detector only
(web/js/detector.js via tests/detector_support.py): no Photo button, alignment or classifier.
Writes detector.json and detector.md to --out when given. The default variants are the page's
two modes: `default` ({}) and `thorough` ({thorough: true}).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes as S
from bench_scenes import plan
from detector_support import detect, open_detector_page, put_image
from e2e_support import browser, live_server

REPO = Path(__file__).resolve().parents[1]
# scikit-image pictures with no human face (camera, astronaut: faces; chelsea: a cat's face;
# coins: Greek coins, several with a head in relief, which BlazeFace does take for faces).
FACE_FREE = ("brick", "coffee", "rocket", "grass", "gravel", "text", "moon", "page",
             "hubble_deep_field", "immunohistochemistry", "colorwheel", "retina", "clock", "cell")


def face_free_frames(n_backgrounds: int, shape=S.CANVAS) -> list[tuple[str, np.ndarray]]:
    """Frames (default 640x480) with no face: each picture scaled to cover and centre-cropped,
    plus `n_backgrounds` of each scene background; each in every scene lighting (whole frame)."""
    base = [(name, S.picture(name, shape)) for name in FACE_FREE]
    rng = np.random.default_rng(123)
    for kind in S.BACKGROUNDS:
        for i in range(n_backgrounds):
            base.append((f"{kind}{i}", S.background(kind, rng, shape).astype(np.float64)))
    out = []
    for name, img in base:
        for light in S.LIGHTS:
            out.append((f"{name}/{light}", np.rint(S.relight(img, light, rng)).astype(np.uint8)))
    return out


def run(page, variants: dict[str, dict], sources, scenes_plan, fp_frames, shape=S.CANVAS) -> dict:
    rows = {v: [] for v in variants}
    ms = {v: [] for v in variants}
    views = {}
    extra = {v: {"detections": 0, "unmatched": 0} for v in variants}
    for k, (placements, bg) in enumerate(scenes_plan):
        scene = S.compose(placements, sources, background_kind=bg, seed=k, shape=shape)
        put_image(page, scene.image)
        for v, opts in variants.items():
            r = detect(page, opts)
            ms[v] += r["ms"]
            views[v] = r["views"]
            matched = S.match(scene.boxes, r["faces"])
            extra[v]["detections"] += len(r["faces"])
            extra[v]["unmatched"] += sum(di not in matched for di in range(len(r["faces"])))
            for p, j in zip(placements, matched):
                rows[v].append({"kind": sources[p.source].kind, "size": p.size, "angle": p.angle,
                                "light": p.light, "detected": j is not None})
        if k % 10 == 0:
            print(f"scene {k + 1}/{len(scenes_plan)}", file=sys.stderr)
    fps = {v: {} for v in variants}
    for name, img in fp_frames:
        put_image(page, img)
        for v, opts in variants.items():
            r = detect(page, opts)
            fps[v][name] = [round(f["score"], 3) for f in r["faces"]]
    return {"rows": rows, "ms": ms, "views": views, "extra": extra, "fp": fps}


def recall_table(rows: list[dict], keys) -> dict:
    g = defaultdict(list)
    for r in rows:
        g["/".join(str(r[k]) for k in keys)].append(r["detected"])
    return {k: {"n": len(v), "recall": sum(v) / len(v)} for k, v in sorted(g.items())}


def summarise(res: dict, variants: dict, min_face: int) -> dict:
    out = {}
    for v, opts in variants.items():
        rows = res["rows"][v]
        big = [r for r in rows if r["size"] >= min_face]
        by_kind = {}
        for kind in sorted({r["kind"] for r in rows}):
            kr = [r for r in big if r["kind"] == kind]
            by_kind[kind] = {"n": len(kr), "recall": sum(r["detected"] for r in kr) / max(1, len(kr))}
        fp = res["fp"][v]
        by_light = defaultdict(lambda: [0, 0])
        for name, scores in fp.items():
            light = name.split("/")[1]
            by_light[light][0] += 1
            by_light[light][1] += len(scores)
        out[v] = {
            "opts": opts, "views": res["views"].get(v),
            "ms_median": float(np.median(res["ms"][v])), "ms_p90": float(np.percentile(res["ms"][v], 90)),
            f"recall_ge_{min_face}_by_kind": by_kind,
            "size_light_kind": recall_table(rows, ("size", "light", "kind")),
            "size_angle_kind": recall_table([{**r, "angle": abs(r["angle"])} for r in rows], ("size", "angle", "kind")),
            "scene_detections": res["extra"][v],
            "fp_frames": len(fp), "fp_detections": sum(len(s) for s in fp.values()),
            "fp_frames_with_any": sum(bool(s) for s in fp.values()),
            "fp_by_light": {k: {"frames": a, "detections": b} for k, (a, b) in sorted(by_light.items())},
            "fp_max_score": max((max(s) for s in fp.values() if s), default=None),
            "fp_where": {k: s for k, s in fp.items() if s},
        }
    return out


def markdown(report: dict) -> str:
    pct = lambda x: f"{100 * x:.0f} %"
    s, g = report["summary"], report["grid"]
    canvas = report.get("canvas", "640×480")  # reports from before --canvas
    lines = [(f"`{report['command']}` — {report['faces']} faces in {report['scenes']} scenes of {canvas}, "
              f"{report['fp_frames']} face-free frames; wasm backend, headless Chromium, {report['note']}"), ""]
    lines += [(f"| variant | passes ({canvas}) | ms / detect, median (p90) | recall ≥ "
               f"{report['min_face']} px, photo | recall ≥ {report['min_face']} px, LFW | scene boxes on no face "
               "| face-free frames with a box | boxes on face-free frames |"),
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cell(rk: dict, k: str) -> str:
        return f"{pct(rk[k]['recall'])} of {rk[k]['n']}" if k in rk and rk[k]["n"] else "–"

    for v, r in s.items():
        rk = r[f"recall_ge_{report['min_face']}_by_kind"]
        lines.append(f"| `{v}` | {r['views']} | {r['ms_median']:.1f} ({r['ms_p90']:.1f}) | {cell(rk, 'photo')} | "
                     f"{cell(rk, 'lfw')} | {r['scene_detections']['unmatched']} of {r['scene_detections']['detections']} "
                     f"| {r['fp_frames_with_any']} of {r['fp_frames']} | {r['fp_detections']} |")
    for kind in ("photo", "lfw"):
        if not any(k.endswith("/" + kind) for k in next(iter(s.values()))["size_light_kind"]):
            continue
        lines += ["", f"Recall, {kind} faces, by face width × light (variants left to right: "
                  + ", ".join(f"`{v}`" for v in s) + "):", ""]
        lines.append("| width | " + " | ".join(g["lights"]) + " |")
        lines.append("| ---: |" + " ---: |" * len(g["lights"]))
        for size in g["sizes"]:
            cells = []
            for light in g["lights"]:
                key = f"{size}/{light}/{kind}"
                cells.append(" / ".join(pct(s[v]["size_light_kind"][key]["recall"]) if key in s[v]["size_light_kind"]
                                        else "–" for v in s))
            lines.append(f"| {size} px | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--sizes", default="32,40,48,64,96,128")
    ap.add_argument("--angles", default="-30,-15,0,15,30")
    ap.add_argument("--lights", default=",".join(S.LIGHTS))
    ap.add_argument("--photo-repeats", type=int, default=2)
    ap.add_argument("--lfw", type=int, default=0, help="LFW faces (1x each condition)")
    ap.add_argument("--max-faces", type=int, default=8)
    ap.add_argument("--fp-frames", type=int, default=1, help="scene backgrounds of each kind among the face-free frames")
    ap.add_argument("--min-face", type=int, default=40)
    ap.add_argument("--canvas", default="640x480", help="WxH of the scenes and face-free frames")
    ap.add_argument("--tag", default="", help="written as detector<TAG>.json/.md")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON detect() options (repeatable)")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"default": "{}", "thorough": '{"thorough": true}'}
    variants = {k: json.loads(v) for k, v in variants.items()}
    grid = {"sizes": [int(x) for x in args.sizes.split(",")], "angles": [float(x) for x in args.angles.split(",")],
            "lights": args.lights.split(",")}
    w, h = (int(x) for x in args.canvas.split("x"))
    sources = [S.astronaut_source(), S.hopper_source()] + S.lfw_sources(args.lfw)
    scenes_plan = plan(sources, args.seed, args.max_faces, {"photo": args.photo_repeats, "lfw": 1},
                       (grid["sizes"], grid["angles"], grid["lights"]), (h, w))
    fp_frames = face_free_frames(args.fp_frames, (h, w))
    t0 = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="fer-detector-"))
    with live_server(args.models, tmp / "custom") as base, browser() as b:
        page = open_detector_page(b, base)
        res = run(page, variants, sources, scenes_plan, fp_frames, (h, w))
    report = {
        "command": "python tests/bench_detector.py " + " ".join(sys.argv[1:]),
        "note": args.note, "grid": grid, "canvas": f"{w}×{h}", "min_face": args.min_face,
        "scenes": len(scenes_plan), "faces": len(next(iter(res["rows"].values()))), "fp_frames": len(fp_frames),
        "seconds": round(time.monotonic() - t0, 1), "summary": summarise(res, variants, args.min_face),
    }
    md = markdown(report)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"detector{args.tag}.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / f"detector{args.tag}.md").write_text(md)


if __name__ == "__main__":
    main()
