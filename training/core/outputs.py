"""Output folders a command will write: checked when the command starts, created only when
its first result is written.

A command refused after it made its `--out` folder (bad data, a wrong model file, an
interrupt) would leave an empty folder behind that looks like a result; so the cheap check
is "could it be created?", and the folder itself comes with the first file.
"""

from __future__ import annotations

import os
from pathlib import Path

from training.core.errors import FerError


def check_out_dir(out_dir: str | Path, flag: str = "--out") -> None:
    """FerError unless `out_dir` is a writable folder or could be made one; creates nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FerError(f"{out_dir} exists and is not a folder; pick another {flag}")
    existing = out_dir.absolute()
    while not existing.exists():  # the nearest ancestor that exists is where mkdir would start
        existing = existing.parent
    if not existing.is_dir():
        raise FerError(f"cannot create {out_dir}: {existing} is not a folder; pick another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FerError(f"{out_dir} is not writable; fix the permissions of {existing} or pick "
                       f"another {flag}")
