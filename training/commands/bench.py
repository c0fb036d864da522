"""`fer-hybrid bench`: our page against Human and face-api.js, latency and accuracy, one run.

Only typer/pathlib/typing at module level: Playwright, numpy and matplotlib load in the body.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import DataDir, Fer2013, FerPlus

REPO = Path(__file__).resolve().parents[2]


def bench(
    out: Annotated[Path, typer.Option(
        "--out", help="Where bench.json, bench.md and bench.png go.",
        show_default="models/bench")] = REPO / "models" / "bench",
    models_dir: Annotated[Path, typer.Option(
        "--models-dir", help="The exported models our page serves (manifest.json).",
        show_default="models")]
        = REPO / "models",
    peers: Annotated[str, typer.Option(
        "--peers", help="Peers to measure, comma-separated: human, faceapi; all or none.")]
        = "all",
    accuracy: Annotated[bool, typer.Option(
        "--accuracy/--no-accuracy",
        help="Also score every tool on FER2013 PrivateTest (skipped with a note when the "
             "dataset is not found and no data option was given).")] = True,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A smoke run: 3 s per video after 2 s of warm-up, 140 crops "
                        "(stratified). Numbers are not for quoting.")] = False,
    seconds: Annotated[float | None, typer.Option(
        "--seconds", help="Timed seconds per tool and video (default 20; 3 with --quick).",
        show_default=False)] = None,
    warmup: Annotated[float | None, typer.Option(
        "--warmup", help="Untimed seconds before that (default 3; 2 with --quick).",
        show_default=False)] = None,
    rounds: Annotated[int, typer.Option(
        "--rounds", min=1,
        help="Latency rounds: the tools take turns this many times and their frame times are "
             "pooled (on a busy machine, 3 rounds of 10 s beat one of 30).")] = 1,
    cpu_throttle: Annotated[str, typer.Option(
        "--cpu-throttle",
        help="Phone-class rows: every page timed again with Chromium's CPU slowed down by these "
             "rates (comma-separated, e.g. 4 or 2,6); none: no such rows.")] = "4",
    web_dir: Annotated[Path | None, typer.Option(
        "--web-dir", help="Measure another copy of the page (default: web/).",
        show_default=False)] = None,
    crops: Annotated[int | None, typer.Option(
        "--crops", help="Score a stratified sample of N PrivateTest crops (default: all "
                        "3,589; 140 with --quick).", show_default=False)] = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    ferplus: FerPlus = None,
) -> None:
    """Peer benchmark: our page, Human 3.3.6 and face-api.js in one headless
    Chromium.

    Per-frame latency with 1 and 5 faces (fake camera; TF.js wasm backend,
    single-threaded SIMD, for every tool), again with the CPU throttled
    (phone class, --cpu-throttle; the DevTools protocol's
    Emulation.setCPUThrottlingRate), each tool's download size, and
    each tool's accuracy on the same FER2013 PrivateTest crops (plain and
    with flip TTA), and, when the FER+ votes are there, each tool's
    agreement with the ten-annotator majority on the same crops. Writes bench.json, bench.md and bench.png. The peers'
    pinned npm packages are downloaded once from registry.npmjs.org into
    ~/.cache/fer-hybrid/peers (sha512 checked; never committed). Needs
    Debian's /usr/bin/chromium and pip install 'fer-hybrid\\[train,test]'
    (Playwright, scikit-image, matplotlib). A full run takes about 15
    minutes on a 2-core CPU, about 4 more per --cpu-throttle rate;
    --quick is a smoke run of a minute or two.
    """
    from training.bench.browser import require_chromium
    from training.bench.peers import parse_peers
    from training.bench.report import markdown, write
    from training.bench.run import QUICK, BenchSettings, parse_throttle, run

    chosen = parse_peers(peers)
    throttles = parse_throttle(cpu_throttle)
    require_chromium()
    # the videos need scikit-image, the figure at the end matplotlib: fail now, not after 15 min
    from training.core.errors import FerError

    for module, extra in (("skimage", "test"), ("matplotlib", "train")):
        try:
            __import__(module)
        except ModuleNotFoundError:
            raise FerError(f"fer-hybrid bench needs {module}: pip install "
                           f"'fer-hybrid[train,test]' (the {extra} extra)") from None

    d = QUICK if quick else {"seconds": 20.0, "warmup": 3.0, "crops": None}
    settings = BenchSettings(
        models_dir=models_dir, out=out, peers=chosen, quick=quick, accuracy=accuracy,
        seconds=seconds if seconds is not None else d["seconds"],
        warmup=warmup if warmup is not None else d["warmup"], rounds=rounds, web_dir=web_dir,
        crops=crops if crops is not None else d["crops"], data_dir=data_dir, fer2013=fer2013,
        cpu_throttle=throttles,
        ferplus=ferplus, command="fer-hybrid " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    typer.echo(f"bench: ours + {', '.join(p.key for p in chosen) or 'no peers'} -> {out}")
    result = run(settings, log=typer.echo)
    files = write(result, out)
    typer.echo(markdown(result))
    typer.echo("  wrote " + ", ".join(str(p) for p in files.values()))
