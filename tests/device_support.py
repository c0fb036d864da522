"""A look-alike of the GPU machine's Python, for tests/test_gpu_flow.py.

The GPU machine runs Python 3.12 with JAX 0.11.2 and numpy 2.5.2 and has no TensorFlow and
no Keras (Keras travels as a wheel). This builds a virtual environment like it, once per
requirements file (cached under ~/.cache/fer-hybrid), from a Python 3.12 found on this
machine. TensorFlow is really absent there (checked after the build), not hidden behind an
import hook: `importlib.util.find_spec("tensorflow")` answers None as it does on the GPU
machine, and a command of the GPU path that imports TensorFlow fails here as it would there.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIREMENTS = Path(__file__).resolve().parent / "device-requirements.txt"
SKIP_REASON = "needs Python 3.12 for the GPU look-alike"

def find_python312() -> str | None:
    """FER_HYBRID_DEVICE_PYTHON, a pyenv 3.12 ($PYENV_ROOT, then ~/.pyenv) or python3.12 on
    PATH: the first that runs (a pyenv shim on PATH exists even where its version is not
    selected, and fails)."""
    roots = [os.environ.get("PYENV_ROOT"), os.path.expanduser("~/.pyenv")]
    pyenv = [python for root in filter(None, roots)
             for python in sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"),
                                  reverse=True)]  # the newest 3.12 first
    candidates = [os.environ.get("FER_HYBRID_DEVICE_PYTHON"), *pyenv,
                  shutil.which("python3.12")]
    for python in filter(None, candidates):
        try:
            proc = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if proc.returncode == 0 and proc.stdout.strip() == "(3, 12)":
            return python
    return None


def device_venv() -> Path:
    """The look-alike environment's folder (built on first use); skips without Python 3.12
    on a developer's machine and fails on CI, which must have it."""
    python = find_python312()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("no Python 3.12 on CI for the GPU look-alike (set "
                        "FER_HYBRID_DEVICE_PYTHON or install python3.12)")
        pytest.skip(SKIP_REASON)
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + python.encode()).hexdigest()[:16]
    cache = Path(os.environ.get("FER_HYBRID_CACHE", Path.home() / ".cache" / "fer-hybrid"))
    venv = cache.expanduser() / f"device-venv-{key}"
    if (venv / "ready").is_file():
        return venv
    tmp = venv.with_name(venv.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(tmp)], check=True)
    proc = subprocess.run([str(tmp / "bin" / "python"), "-m", "pip", "install", "-q",
                           "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"could not build the GPU look-alike environment: {proc.stderr[-2000:]}")
    absent = subprocess.run([str(tmp / "bin" / "python"), "-c",
                             "import importlib.util as u; print([m for m in ('tensorflow', "
                             "'keras') if u.find_spec(m)])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if absent != "[]":  # a requirement pulled one in: the look-alike would lie
        pytest.fail(f"the GPU look-alike has {absent}; the GPU machine has neither")
    (tmp / "ready").write_text("ok\n")
    shutil.rmtree(venv, ignore_errors=True)
    # A venv finds itself through bin/python's location, so it survives the rename.
    os.replace(tmp, venv)
    return venv


def device_env(venv: Path, **extra: str) -> dict:
    """Environment for running the device command: the look-alike's python3 first on PATH,
    nothing of this interpreter's environment (no PYTHONPATH, no venv)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "KERAS_BACKEND")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(extra)
    return env
