"""Benchmark multi-face scenes through the live page in headless Chromium (a report, not a test).

    python tests/bench_scenes.py --out models [--models models] [--lfw 20]
        [--photo-repeats 6] [--repeats 1] [--max-faces 8] [--seed 0]
    python tests/bench_scenes.py --calibrate      # print the face boxes tests/scenes.py uses

Every face (scikit-image's astronaut, matplotlib's Grace Hopper, the first --lfw of
scikit-image's LFW faces) is pasted at every face width x in-plane rotation x lighting of the grid
below, several faces per 640x480 scene (tests/scenes.py), and each scene goes through the page's
Photo button: the page's own BlazeFace, alignment, low-light step and ensemble on the wasm backend.
Per face: detected (IoU >= scenes.MATCH_IOU with a detection) and, when detected, its
probabilities against the same face alone, 160 px wide, upright, in normal light (its single
crop): same top-1 label, and L1 distance. The two kinds of face are reported apart: the photos
are what a camera sees, the LFW crops (blurry upscaled brow-to-chin crops) give many identities
but are much harder for BlazeFace, and pooled they would bury the photos. Writes scenes.json,
scenes.md and scenes_recall.png to --out (models/: top-level files there survive `fer-hybrid
export`, sub-folders do not); no image is written. About 11 minutes on the loaded 2-core
machine (the Photo button runs the detector's thorough mode: 7 passes per 640x480 scene).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenes as S  # noqa: E402
from e2e_support import analyse_photo, browser, live_server, wait_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZES = (24, 32, 48, 64, 96, 128)
ANGLES = (-30, -15, 0, 15, 30)
LIGHTS = tuple(S.LIGHTS)
REFERENCE_SIZE = 160


def open_page(b, base):
    page = b.new_page()
    page.goto(f"{base}/?backend=wasm")
    wait_state(page, "window.ferState && window.ferState.ready", 180)
    assert page.evaluate("window.ferState.backend") == "wasm"
    return page


def plan(sources, seed: int, max_faces: int, repeats: dict[str, int],
         grid=(SIZES, ANGLES, LIGHTS), shape=S.CANVAS) -> list[tuple[list[S.Placement], str]]:
    """Every source x size x angle x light of `grid`, repeats[source.kind] times (each time a new
    place, background and noise), shuffled and packed into scenes."""
    rng = np.random.default_rng(seed)
    todo = [S.Placement(i, size, angle, light) for i, src in enumerate(sources)
            for size, angle, light in itertools.product(*grid)
            for _ in range(repeats[src.kind])]
    todo = [todo[i] for i in rng.permutation(len(todo))]
    out, current = [], []
    for p in todo:
        trial = S.place(current + [p], sources, rng, shape)
        if trial is None or len(current) == max_faces:
            out.append(current)
            current = S.place([p], sources, rng, shape)
        else:
            current = trial
    out.append(current)
    return [(pl, S.BACKGROUNDS[i % len(S.BACKGROUNDS)]) for i, pl in enumerate(out)]


def references(page, sources) -> list[dict | None]:
    """Each source alone (its single crop): the detection's probabilities, or None if missed."""
    refs = []
    for i in range(len(sources)):
        scene = S.single_crop(i, sources, REFERENCE_SIZE)
        faces = analyse_photo(page, scene.image, f"ref{i}.png")
        j = S.match(scene.boxes, faces)[0]
        refs.append(None if j is None else faces[j])
    return refs


def run_scenes(page, sources, scenes_plan, refs) -> tuple[list[dict], dict]:
    """Per-face rows, and the detections no face claimed (false or badly placed boxes)."""
    rows, extra = [], {"detections": 0, "unmatched": 0, "unmatched_near_a_face": 0}
    for k, (placements, bg) in enumerate(scenes_plan):
        scene = S.compose(placements, sources, background_kind=bg, seed=k)
        faces = analyse_photo(page, scene.image, f"scene{k}.png")
        matched = S.match(scene.boxes, faces)
        extra["detections"] += len(faces)
        for di, f in enumerate(faces):
            if di not in matched:
                extra["unmatched"] += 1
                # Overlapping a face a little: a box in the wrong place rather than a phantom.
                extra["unmatched_near_a_face"] += any(S.iou(t, S.box_tuple(f["box"])) >= 0.1 for t in scene.boxes)
        for p, truth, j in zip(placements, scene.boxes, matched):
            row = {"source": sources[p.source].name, "kind": sources[p.source].kind, "size": p.size,
                   "angle": p.angle, "light": p.light, "detected": j is not None, "faces_in_scene": len(placements)}
            if j is not None:
                f = faces[j]
                row.update(iou=S.iou(truth, S.box_tuple(f["box"])), label=f["label"], lowlight=f["lowlight"])
                ref = refs[p.source]
                if ref is not None:
                    row.update(S.compare(f["probs"], ref["probs"]))
            rows.append(row)
        if k % 20 == 0:
            print(f"scene {k + 1}/{len(scenes_plan)}", file=sys.stderr)
    return rows, extra


def summarise(rows: list[dict], keys: tuple[str, ...]) -> dict:
    """Recall and single-crop agreement grouped by `keys` ('all' when empty)."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys) if keys else ("all",)].append(r)
    out = {}
    for key, rs in sorted(groups.items()):
        det = [r for r in rs if r["detected"]]
        cmp_ = [r for r in det if "agree" in r]
        out["/".join(map(str, key))] = {
            "n": len(rs), "detected": len(det), "recall": len(det) / len(rs),
            "compared": len(cmp_),
            "agreement": sum(r["agree"] for r in cmp_) / len(cmp_) if cmp_ else None,
            "mean_l1": float(np.mean([r["l1"] for r in cmp_])) if cmp_ else None,
            "mean_iou": float(np.mean([r["iou"] for r in det])) if det else None,
            # What lowlight.js did to the detected crops (equalize / stretch / none).
            "lowlight": dict(sorted(Counter(r["lowlight"] for r in det).items())),
        }
    return out


def with_abs_angle(rows):
    return [{**r, "abs_angle": abs(r["angle"])} for r in rows]


# ---------------------------------------------------------------- reports
KINDS = {"photo": "Photo faces (astronaut, Grace Hopper: sharp colour portraits with hair and shoulders)",
         "lfw": "LFW faces (scikit-image's 25×25 grey crops, brow to chin, upscaled: blurry, no hair)"}


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f} %"


def markdown(report: dict) -> str:
    t, g = report["tables"], report["grid"]
    sizes, lights, angles = g["sizes"], g["lights"], sorted({abs(a) for a in g["angles"]})
    head = "| face width | all | " + " | ".join(lights) + " | " + \
        " | ".join(f"±{a}°" if a else "0°" for a in angles) + " |"
    rule = "| ---: |" + " ---: |" * (1 + len(lights) + len(angles))

    def table(kind, fmt):
        rows = [head, rule]
        for s in sizes:
            cells = [t["size_kind"].get(f"{s}/{kind}")]
            cells += [t["size_light_kind"].get(f"{s}/{li}/{kind}") for li in lights]
            cells += [t["size_abs_angle_kind"].get(f"{s}/{a}/{kind}") for a in angles]
            rows.append(f"| {s} px | " + " | ".join(fmt(c) for c in cells) + " |")
        return rows

    recall = lambda c: pct(c["recall"]) if c else "–"
    agree = lambda c: "–" if not c or c["agreement"] is None else f"{pct(c['agreement'])} / {c['mean_l1']:.2f}"
    lines = [f"{report['faces']} faces in {report['scenes']} scenes of {report['canvas'][1]}×{report['canvas'][0]} "
             f"(the page's camera size); each face at every width × rotation × lighting, photo faces "
             f"{report['repeats']['photo']}×, LFW faces {report['repeats']['lfw']}×, a new place, background and "
             f"noise each time. Detected = a detection with IoU ≥ {report['match_iou']}. Agreement = same top-1 "
             f"label as the face's single crop (alone, {report['reference_size']} px, upright, normal light) / "
             "mean L1 distance of the 7 probabilities (0–2), over detected faces.", ""]
    for kind, title in KINDS.items():
        n = t["kind"].get(kind)
        if not n:
            continue
        lines += [f"**{title}**: recall {pct(n['recall'])} of {n['n']}, agreement {pct(n['agreement'])}, "
                  f"mean L1 {n['mean_l1']:.2f}.", "", "Detection recall:", ""]
        lines += table(kind, recall)
        lines += ["", "Agreement with the single crop / mean L1:", ""]
        lines += table(kind, agree)
        lines.append("")
    lines.append(f"Single crops found: {report['references_found']}/{len(report['sources'])}. Detections "
                 f"matched to no face: {report['unmatched']} of {report['detections']} "
                 f"({report['unmatched_near_a_face']} of them overlap a face with IoU ≥ 0.1: a misplaced box "
                 "rather than a phantom face).")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, g = report["tables"], report["grid"]
    sizes = g["sizes"]
    kinds = [k for k in KINDS if k in t["kind"]]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 3.6 * len(kinds)), sharex=True, sharey=True,
                             squeeze=False)
    for row, kind in zip(axes, kinds):
        for light in g["lights"]:
            row[0].plot(sizes, [t["size_light_kind"][f"{s}/{light}/{kind}"]["recall"] for s in sizes],
                        marker="o", label=light)
        for a in sorted({abs(a) for a in g["angles"]}):
            row[1].plot(sizes, [t["size_abs_angle_kind"][f"{s}/{a}/{kind}"]["recall"] for s in sizes],
                        marker="o", label=f"±{a}°" if a else "0°")
        for ax, by in zip(row, ("lighting (all rotations)", "rotation (all lightings)")):
            ax.set(xscale="log", xticks=sizes, ylim=(-0.02, 1.02), title=f"{kind} faces, by {by}")
            ax.set_xticklabels([str(s) for s in sizes])
            ax.minorticks_off()  # a log axis labels its minor ticks (3x10^1...) over ours
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left")
        row[0].set_ylabel(f"recall (IoU ≥ {report['match_iou']})")
    for ax in axes[-1]:
        ax.set_xlabel("face width in a 640×480 scene (px)")
    fig.suptitle("The page's BlazeFace (wasm) on composite scenes: detection recall vs face width")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- calibration
def calibrate(page) -> None:
    """Print the face boxes scenes.py hardcodes: BlazeFace on each photo, mean box on LFW."""
    for src in (S.astronaut_source(), S.hopper_source()):
        faces = analyse_photo(page, src.image, f"{src.name}.png")
        best = max(faces, key=lambda f: f["score"])
        print(src.name, {k: round(v, 1) for k, v in best["box"].items()})
    lfw = S.lfw_sources(100)
    rel = []
    for i, src in enumerate(lfw):
        scene = S.single_crop(i, lfw, REFERENCE_SIZE)
        faces = analyse_photo(page, scene.image, f"lfw{i}.png")
        j = S.match(scene.boxes, faces, 0.1)[0]
        if j is None:
            continue
        (tx, ty, tw, _), b = scene.boxes[0], faces[j]["box"]
        # Back into the 25x25 crop's coordinates.
        k = src.box[2] / tw
        rel.append([src.box[0] + (b["x"] - tx) * k, src.box[1] + (b["y"] - ty) * k, b["w"] * k, b["h"] * k])
    print(f"lfw mean box over {len(rel)}/100:", [round(float(v), 1) for v in np.mean(rel, axis=0)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="folder for scenes.json, scenes.md, scenes_recall.png")
    ap.add_argument("--models", type=Path, default=REPO / "models")
    ap.add_argument("--lfw", type=int, default=20, help="how many LFW faces join the two photos (0-100)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--photo-repeats", type=int, default=6, help="times each photo face meets each condition")
    ap.add_argument("--repeats", type=int, default=1, help="times each LFW face meets each condition")
    ap.add_argument("--max-faces", type=int, default=8, help="faces per scene at most")
    ap.add_argument("--calibrate", action="store_true", help="print the face boxes scenes.py uses, then stop")
    args = ap.parse_args()
    if not (args.models / "manifest.json").is_file():
        sys.exit(f"error: no manifest.json in {args.models}; run `fer-hybrid export` first")
    if not args.calibrate and args.out is None:
        ap.error("--out is required (or --calibrate)")

    tmp = Path(tempfile.mkdtemp(prefix="fer-scenes-"))
    sources = [S.astronaut_source(), S.hopper_source()] + S.lfw_sources(args.lfw)
    t0 = time.monotonic()
    with live_server(args.models, tmp / "custom") as base, browser() as b:
        page = open_page(b, base)
        if args.calibrate:
            calibrate(page)
            return
        refs = references(page, sources)
        repeats = {"photo": args.photo_repeats, "lfw": args.repeats}
        scenes_plan = plan(sources, args.seed, args.max_faces, repeats)
        rows, extra = run_scenes(page, sources, scenes_plan, refs)
    rows = with_abs_angle(rows)
    manifest = json.loads((args.models / "manifest.json").read_text())
    report = {
        "what": "multi-face scenes through the live page (Photo button): BlazeFace + align + lowlight + ensemble",
        "command": "python tests/bench_scenes.py --out " + str(args.out) + f" --lfw {args.lfw} --seed {args.seed}"
                   f" --photo-repeats {args.photo_repeats} --repeats {args.repeats} --max-faces {args.max_faces}",
        "backend": "wasm (headless Chromium)",
        "models": [m["name"] for m in manifest["members"]],
        "canvas": list(S.CANVAS), "match_iou": S.MATCH_IOU, "reference_size": REFERENCE_SIZE,
        "lights": {k: dict(zip(("gain", "gamma", "noise_std"), v)) for k, v in S.LIGHTS.items()},
        "grid": {"sizes": list(SIZES), "angles": list(ANGLES), "lights": list(LIGHTS)},
        "sources": [s.name for s in sources], "lfw": args.lfw,
        "references_found": sum(r is not None for r in refs),
        "reference_labels": {s.name: (r["label"] if r else None) for s, r in zip(sources, refs)},
        "scenes": len(scenes_plan), "faces": len(rows), "repeats": repeats, **extra,
        "seconds": round(time.monotonic() - t0, 1),
        "tables": {
            "all": summarise(rows, ()),
            "kind": summarise(rows, ("kind",)),
            "size_kind": summarise(rows, ("size", "kind")),
            "size_light_kind": summarise(rows, ("size", "light", "kind")),
            "size_abs_angle_kind": summarise(rows, ("size", "abs_angle", "kind")),
            "size_angle_light_kind": summarise(rows, ("size", "angle", "light", "kind")),
            "source": summarise(rows, ("source",)),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scenes.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "scenes.md").write_text(markdown(report))
    plot(report, args.out / "scenes_recall.png")
    print(markdown(report))


if __name__ == "__main__":
    main()
