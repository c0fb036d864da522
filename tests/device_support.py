"""A look-alike of the GPU machine's Python, for tests/test_gpu_flow.py.

The GPU machine runs Python 3.12 with JAX 0.11.2 and numpy 2.5.2 and has no TensorFlow and
no Keras (Keras travels as a wheel). This builds a virtual environment like it, once per
requirements file (cached under ~/.cache/fer-hybrid), from a Python 3.12 found on this
machine, and plants an import hook there that makes TensorFlow un-importable even if it
were installed: a command of the GPU path that reaches for TensorFlow fails here as it
would there.
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

# sitecustomize runs at every interpreter start in that environment.
NO_TENSORFLOW = '''\
import importlib.abc, sys


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """The GPU machine has no TensorFlow: fail any import of it, as there."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflowjs", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r} (GPU look-alike: the GPU "
                                      f"machine has no TensorFlow)", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


def find_python312() -> str | None:
    """FER_HYBRID_DEVICE_PYTHON, python3.12 on PATH, or a pyenv 3.12."""
    given = os.environ.get("FER_HYBRID_DEVICE_PYTHON")
    if given:
        return given
    found = shutil.which("python3.12")
    if found:
        return found
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    return pyenv[-1] if pyenv else None


def device_venv() -> Path:
    """The look-alike environment's folder (built on first use); skips without Python 3.12
    on a developer's machine and fails on CI, which must have it."""
    python = find_python312()
    if python is None:
        if os.environ.get("CI"):
            pytest.fail("no Python 3.12 on CI for the GPU look-alike (set "
                        "FER_HYBRID_DEVICE_PYTHON or install python3.12)")
        pytest.skip(SKIP_REASON)
    key = hashlib.sha256(REQUIREMENTS.read_bytes() + NO_TENSORFLOW.encode()
                         + python.encode()).hexdigest()[:16]
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
    site = subprocess.run([str(tmp / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "sitecustomize.py").write_text(NO_TENSORFLOW)
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
