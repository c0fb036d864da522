"""How long `fer-hybrid` takes to refuse a wrong usage: a report, not a test.

Each wrong usage runs as its own `python -m training.cli …` subprocess (in a scratch folder, so
nothing it might leave lands in the repository); the table gives its wall time, exit code, the
first line of its stderr and whether it left an output folder behind. A refusal that waits for
TensorFlow's import (15-80 s on a busy 2-core machine) is the cost this measures.

    PYTHONPATH=. python tests/bench_wrong_usage.py            # this checkout
    PYTHONPATH=/other/checkout python tests/bench_wrong_usage.py   # another one, e.g. main
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (what, arguments, a path the refusal must not leave behind or None); {tmp} is the scratch folder
USAGES = [
    ("unknown model", ["train", "--model", "nosuch"], None),
    ("train --width -1", ["train", "--model", "sepnet", "--width", "-1", "--runs-dir",
                          "{tmp}/runs", "--name", "w"], "{tmp}/runs/w"),
    ("train --lr -1", ["train", "--model", "sepnet", "--lr", "-1", "--runs-dir", "{tmp}/runs",
                       "--name", "lr"], "{tmp}/runs/lr"),
    ("train --epochs 0", ["train", "--model", "sepnet", "--epochs", "0", "--runs-dir",
                          "{tmp}/runs", "--name", "e"], "{tmp}/runs/e"),
    ("train --robust-aug nosuch", ["train", "--model", "sepnet", "--robust-aug", "nosuch",
                                   "--runs-dir", "{tmp}/runs", "--name", "r"], "{tmp}/runs/r"),
    ("train --targets nosuch", ["train", "--model", "sepnet", "--targets", "nosuch",
                                "--runs-dir", "{tmp}/runs", "--name", "t"], "{tmp}/runs/t"),
    ("train --init-from empty.keras", ["train", "--model", "sepnet", "--init-from",
                                       "{tmp}/empty.keras", "--runs-dir", "{tmp}/runs", "--name",
                                       "i"], "{tmp}/runs/i"),
    ("evaluate missing.keras", ["evaluate", "{tmp}/missing.keras"], None),
    ("evaluate empty.keras", ["evaluate", "{tmp}/empty.keras"], None),
    ("evaluate text.keras", ["evaluate", "{tmp}/text.keras"], None),
    ("explain empty.keras", ["explain", "{tmp}/empty.keras", "--out", "{tmp}/explain"],
     "{tmp}/explain"),
    ("robustness empty.keras --out X", ["robustness", "{tmp}/empty.keras", "--out",
                                        "{tmp}/robust"], "{tmp}/robust"),
    ("export text.keras", ["export", "{tmp}/text.keras", "--out", "{tmp}/export"],
     "{tmp}/export"),
    ("ensemble empty.keras x2", ["ensemble", "{tmp}/empty.keras", "{tmp}/text.keras"], None),
    ("calibrate empty.keras", ["calibrate", "{tmp}/empty.keras"], None),
    ("evaluate --split nosuch", ["evaluate", "{tmp}/empty.keras", "--split", "nosuch"], None),
]


def run(args: list[str], tmp: str) -> tuple[float, int, str, int]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return time.monotonic() - started, proc.returncode, (lines[0] if lines else ""), len(lines)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "empty.keras").write_bytes(b"")
        Path(tmp, "text.keras").write_text("not a model\n")
        print("| wrong usage | s | exit | stderr lines | first stderr line | left behind |")
        print("|---|---:|---:|---:|---|---|")
        for what, args, leaves in USAGES:
            seconds, code, first, count = run([a.format(tmp=tmp) for a in args], tmp)
            left = leaves is not None and Path(leaves.format(tmp=tmp)).exists()
            first = first.replace(tmp, "$TMP").replace("|", "/")[:110]
            print(f"| {what} | {seconds:.1f} | {code} | {count} | {first} | "
                  f"{'yes' if left else ''} |", flush=True)


if __name__ == "__main__":
    main()
