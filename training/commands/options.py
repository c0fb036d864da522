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
