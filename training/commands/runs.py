"""`fer-hybrid runs ...`: bundle run folders for the trip back from a GPU call, and unbundle.

Only typer/pathlib/typing at module level; `training.bundle` is imported in the command
bodies (bundling imports Keras under the backend in use, never TensorFlow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

runs_app = typer.Typer(
    name="runs",
    help="Move run folders between machines: `bundle` them on the GPU machine into parts a "
         "device call can bring back, `unbundle` the parts here.",
    no_args_is_help=True,
)


@runs_app.command("bundle")
def bundle(
    runs: Annotated[list[Path], typer.Argument(help="Run folders (runs/<name>) to bundle.",
                                               show_default=False)],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Folder for the parts and the manifest (written flat, no "
                            "subfolders).")],
    weights: Annotated[str, typer.Option(
        "--weights", help="How to store best.keras's weights: auto (float16 unless it changes "
                          "the predictions beyond the thresholds below, measured now), float16 "
                          "or float32.")] = "auto",
    part_size: Annotated[str, typer.Option(
        "--part-size", help="Largest part, e.g. 15MiB, 512KiB (at most 16MiB: a device call "
                            "silently drops bigger files).")] = "15MiB",
    compress: Annotated[str, typer.Option(
        "--compress", help="lzma (smaller, slower) or none.")] = "lzma",
    min_agreement: Annotated[float, typer.Option(
        "--min-agreement", help="auto: keep float32 if fewer than this percentage of images "
                                "keep their top-1 class under float16.")] = 99.9,
    max_accuracy_change: Annotated[float, typer.Option(
        "--max-accuracy-change", help="auto: keep float32 if float16 moves the validation "
                                      "accuracy by more than this many percentage points.")] = 0.1,
    max_prob_change: Annotated[float | None, typer.Option(
        "--max-prob-change", help="auto: also keep float32 if any probability moves by more "
                                  "than this (default: not a criterion).")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Images per prediction batch for the float16 measurement.")] = 256,
) -> None:
    """Bundle run folders into parts of at most --part-size plus a manifest, and print which
    files each device call copies to $OUT (at most 8 files and 64 MiB a call).

    Kept: best.keras (float16 weights when measured harmless on the run's validation images,
    else float32), predictions/{val,test}.npz, config.json, log.csv, metrics.json,
    checkpoint/state.json. Left out: the training checkpoint model, tensorboard/,
    evaluation/ and history.png (redrawn from log.csv by `unbundle`).

    Example, at the end of the GPU call that trained:

      fer-hybrid runs bundle runs/vgg-1 runs/sepnet-2 --out /tmp/bundle
    """
    from training.bundle.pack import BundleOptions, bundle_runs
    from training.bundle.plan import format_size, parse_size

    opts = BundleOptions(weights=weights, part_bytes=parse_size(part_size), compression=compress,
                         min_agreement=min_agreement, max_accuracy_change=max_accuracy_change,
                         max_prob_change=max_prob_change, batch_size=batch_size)
    result = bundle_runs(runs, out, opts, say=typer.echo)
    body = result.manifest
    total = sum(p["bytes"] for p in body["parts"])
    typer.echo(f"wrote {result.manifest_path}: {len(body['runs'])} run(s), "
               f"{format_size(total)} in {len(body['parts'])} part(s) ({body['compression']}), "
               f"{len(body['calls'])} device call(s):")
    typer.echo(result.plan_text)
    typer.echo("Run the calls back to back (the machine forgets everything when idle), then "
               "here: fer-hybrid runs unbundle <folder>...")


@runs_app.command("unbundle")
def unbundle(
    folders: Annotated[list[Path], typer.Argument(
        help="Folders the device calls copied the bundle files into (one or several).",
        show_default=False)],
    runs_dir: Annotated[Path, typer.Option(
        "--runs-dir", help="Where to restore the run folders.")] = Path("runs"),
    force: Annotated[bool, typer.Option(
        "--force", help="Replace run folders that already exist.")] = False,
) -> None:
    """Check a bundle (manifest, every part's sha256, every file's sha256) and restore its
    run folders: best.keras as a normal float32 .keras file, history.png redrawn.

    Then `fer-hybrid evaluate runs/<name>` and `fer-hybrid ensemble` work as on the GPU
    machine (from the saved predictions).
    """
    from training.bundle.unpack import unbundle as restore

    restored = restore(folders, runs_dir, force=force, say=typer.echo)
    typer.echo(f"restored {len(restored)} run folder(s)")
