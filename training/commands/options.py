"""Command-line options several commands share: declared once, with one help text each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[Path | None, typer.Option(
    "--data-dir",
    help="Folder with the datasets: fer2013.csv(.gz), ckplus48.npz, jaffe_128.npz "
         "(default: $FER_HYBRID_DATA or ../shared/data).")]

Fer2013 = Annotated[Path | None, typer.Option(
    "--fer2013",
    help="FER2013 source: the Kaggle CSV (plain or .gz), a `data pack` file, or the image "
         "folder (train/<class>, test/<class>). Default: found in --data-dir.")]

FerPlus = Annotated[Path | None, typer.Option(
    "--ferplus",
    help="FER+ ten-annotator votes aligned with the FER2013 CSV (fer2013new.csv, plain or .gz): "
         "agreement with people beside FER2013 accuracy, and train's --targets ferplus|mix:A. "
         "Default: found next to the FER2013 file; without it, FER2013 accuracy only.")]

Aux = Annotated[str | None, typer.Option(
    "--aux",
    help="Auxiliary sets (48x48, mapped onto the FER2013 labels), comma-separated: "
         "ckplus,jaffe,custom; 'none' for FER2013 alone. Exact duplicates of PublicTest/"
         "PrivateTest images are dropped.")]

CkPlus = Annotated[Path | None, typer.Option(
    "--ckplus", help="CK+ data: ckplus48.npz or a CK+48/<class>/ folder (default: in "
                     "--data-dir). 'contempt' is dropped.")]

Jaffe = Annotated[Path | None, typer.Option(
    "--jaffe", help="JAFFE data: jaffe_128.npz or a folder of JAFFE images (default: in "
                    "--data-dir).")]

Custom = Annotated[Path | None, typer.Option(
    "--custom", help="Custom dataset from web uploads, <dir>/<label>/*.png (default: "
                     "$FER_HYBRID_CUSTOM_DIR or data/custom).")]

CustomUploads = Annotated[str | None, typer.Option(
    "--custom-uploads", metavar="accepted|all",
    help="Which web uploads of the custom set train: accepted (default: those a curator "
         "accepted or relabelled in `fer-hybrid data review`) or all (pending and rejected "
         "too). The custom holdout, one accepted upload in five, never trains.")]

Sample = Annotated[int | None, typer.Option(
    "--sample", help="Use a stratified subsample of at most N images per split (quick runs).")]

PredictBatch = Annotated[int, typer.Option(
    "--batch-size", help="Images per prediction batch (only when predictions are computed).")]

ScoredTarget = Annotated[Path, typer.Argument(
    help="An exported models folder with manifest.json (e.g. models: the shipped TF.js ensemble, "
         "run in Python as the page runs it), a run folder (runs/<name>, its best.keras and "
         "saved predictions) or a .keras file.",
    show_default=False)]
