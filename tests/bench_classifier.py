"""Benchmark the page's expression classifier alone: ms per classify() call in headless Chromium.

    python tests/bench_classifier.py [--models models ...] [--arch sepnet --arch sepnet:width=0.75 ...]
                                     [--faces 1,5] [--repeats 50] [--rounds 3] [--backend wasm]

Each candidate is a models folder (its manifest.json and members, as the page loads them) or an
architecture from the model zoo, built with random weights and exported uint8 with the shipped
flow (`fer-hybrid export model.keras --quantize uint8 --eval none --placeholder`): speed does not
depend on the weights. Every candidate gets its own server and page (the real backend, the page's
tfjs and CSP) and is timed through web/js/classifier.js's `Ensemble.classify` — what the page
calls per frame, with the manifest's flip TTA (faces and mirrored faces in one batch) — on
`faces` grey 48x48 crops. Candidates are timed in turn, round after round, so a loaded machine
slows all of them alike. Prints median ms per call and per face; numbers depend on the machine:
say which one (and what else ran) when you quote them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_support import browser, live_server, wait_state  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SETUP = """async () => {
  const m = await import('/static/js/classifier.js');
  window.__clf = await m.Ensemble.load();
  await window.__clf.warmup();
  return { members: window.__clf.members.length, tta: window.__clf.ttaFlip };
}"""

TIME = """async ([faces, repeats]) => {
  const crops = [];
  for (let f = 0; f < faces; f++) {
    const c = new Uint8Array(48 * 48);
    for (let i = 0; i < c.length; i++) c[i] = (i * 7 + f * 31) % 256;
    crops.push(c);
  }
  await window.__clf.classify(crops);  // a new batch size compiles once: not timed
  const ms = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await window.__clf.classify(crops);
    ms.push(performance.now() - t0);
  }
  return ms;
}"""


def export_arch(spec: str, out: Path) -> Path:
    """`name[:key=value,...]` -> a uint8 models folder of that architecture with random weights."""
    import keras

    from training.models.registry import build_model

    name, _, opts = spec.partition(":")
    options = {k: float(v) if "." in v else int(v)
               for k, v in (kv.split("=", 1) for kv in opts.split(",") if kv)}
    keras.utils.set_random_seed(0)
    model = build_model(name, **options)
    out.mkdir(parents=True)
    path = out / f"{name}.keras"
    model.save(path)
    folder = out / "models"
    subprocess.run([sys.executable, "-m", "training.cli", "export", str(path), "--out", str(folder),
                    "--quantize", "uint8", "--eval", "none", "--placeholder"], check=True,
                   capture_output=True)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, action="append", default=[],
                    help="a models folder (manifest.json + members); repeatable")
    ap.add_argument("--arch", action="append", default=[],
                    help="an architecture with options, e.g. sepnet:width=0.75; repeatable")
    ap.add_argument("--faces", default="1,5", help="crops per call, comma-separated")
    ap.add_argument("--repeats", type=int, default=50, help="timed calls per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--backend", default="wasm")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    faces = [int(f) for f in args.faces.split(",")]

    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        tmp = Path(tmp)
        candidates = {str(m): m for m in args.models}
        for i, spec in enumerate(args.arch):
            candidates[spec] = export_arch(spec, tmp / f"arch{i}")
            print(f"exported {spec}: {json.loads((candidates[spec] / 'manifest.json').read_text())['members'][0]['bytes']:,} bytes", flush=True)
        if not candidates:
            ap.error("give at least one --models or --arch")
        b = stack.enter_context(browser())
        pages = {}
        for i, (label, folder) in enumerate(candidates.items()):
            base = stack.enter_context(live_server(folder, tmp / f"custom{i}"))
            page = b.new_page()
            page.goto(f"{base}/?backend={args.backend}")
            wait_state(page, "window.ferState && window.ferState.ready", 180)
            info = page.evaluate(SETUP)
            print(f"{label}: {info['members']} member(s), flip TTA {info['tta']}", flush=True)
            pages[label] = page
        times = {label: {n: [] for n in faces} for label in pages}
        for r in range(args.rounds):
            for label, page in pages.items():
                for n in faces:
                    times[label][n] += page.evaluate(TIME, [n, args.repeats])
            print(f"round {r + 1}/{args.rounds} done", flush=True)

    results = {label: {str(n): {"median_ms": statistics.median(v),
                                "median_ms_per_face": statistics.median(v) / n}
                       for n, v in per.items()} for label, per in times.items()}
    width = max(len(label) for label in results)
    print(f"\n{'candidate':<{width}}  " + "  ".join(f"{n} face(s): ms/call  ms/face" for n in faces))
    for label, per in results.items():
        cells = "  ".join(f"{per[str(n)]['median_ms']:>18.2f}  {per[str(n)]['median_ms_per_face']:>7.2f}"
                          for n in faces)
        print(f"{label:<{width}}  {cells}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
