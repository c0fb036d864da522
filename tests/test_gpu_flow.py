"""The GPU session end to end, rehearsed on this CPU exactly as it would run there.

`fer-hybrid gpu prepare` (here) -> the device command it prints, run verbatim by bash in a
GPU look-alike (Python 3.12, JAX 0.11.2, numpy 2.5.2, Keras from the carried wheels, no
TensorFlow: tests/device_support.py) in a copy of the checkout, with $OUT and $TMPDIR as
the device has them -> what comes back in $OUT (the device's limits checked) ->
`runs unbundle` -> `evaluate` / `ensemble` / `export` here under TensorFlow.

The members are tiny and train one epoch on synthetic faces, so the call lasts about a
minute instead of ten; everything else (the pack, the wheels, the plan, bf16, the bundle)
is what a real session does. The bf16 member is five_layer, the cheapest model to compile
under JAX on a CPU that trains sanely in bf16 (sepnet spent ~80 s compiling its first
epoch; baseline_cnn in bf16 diverges with these options). The steps after the call run
in this process (typer's CliRunner, as tests/test_pipeline_chain.py does): only the device
command is about a separate process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_faces
from device_support import device_env, device_venv
from test_pipeline_chain import run, write_synthetic_csv

pytestmark = pytest.mark.slow

# What travels as the working tree: the code the device runs (a real checkout also has
# web/, models/, tests/, ...; they only add bytes, which test_gpu_prepare checks).
CODE = ("contract", "training", "backend", "constraints.txt", "pyproject.toml")


def _checkout(repo_root: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in CODE:
        src = repo_root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "checkpoints"))
        else:
            shutil.copy2(src, dest / name)
    shutil.copy2(repo_root / ".gitignore", dest / ".gitignore")
    for cmd in (["git", "init", "-q"], ["git", "add", "."],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code"]):
        subprocess.run(cmd, cwd=dest, check=True)
    return dest


def _cli(*args, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", "training.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_prepare_device_call_bundle_unbundle_evaluate_export(repo_root, tmp_path, monkeypatch):
    venv = device_venv()  # first: it may skip (no Python 3.12 on a developer's machine)
    data = tmp_path / "data"
    data.mkdir()
    write_synthetic_csv(data / "fer2013.csv", n_train=160, n_val=40, n_test=40)
    ck_x, _ = synthetic_faces(8, seed=5)
    np.savez(data / "ckplus48.npz", x=ck_x, y=np.array([0, 1, 2, 3, 4, 5, 6, 4], np.uint8),
             class_names=np.array(["anger", "contempt", "disgust", "fear", "happy",
                                   "sadness", "surprise"]))
    repo = _checkout(repo_root, tmp_path / "checkout")
    here = {**os.environ, "FER_HYBRID_CACHE": str(tmp_path / "cache"),
            "PYTHONPATH": str(repo_root)}

    # -- here: prepare ------------------------------------------------------------------
    out = _cli("gpu", "prepare", "--repo", repo, "--data-dir", data, "--aux", "ckplus",
               "--level", 1, "--no-require-gpu", "--call-minutes", 5,
               "--common", "--optimizer adamw --schedule cosine --label-smoothing 0.1 "
                           "--aux ckplus --checkpoint-minutes 60 --batch-size 32",
               "--member", "cnn: --model baseline_cnn --seed 0 --epochs 1",
               "--member", "half: --model five_layer --seed 1 --epochs 1 --precision bf16",
               cwd=tmp_path, env=here)
    lines = out.splitlines()
    command = lines[lines.index(next(l for l in lines if l.startswith("Device call"))) + 2]
    assert command.startswith("python3 -m pip install") and len(command) < 2000
    assert (repo / ".carry" / "fer2013-train.pack").is_file()
    assert sorted(p.name.split("-")[0] for p in (repo / ".whl").glob("*.whl")) == \
        ["keras", "namex", "optree"]

    # -- "the GPU machine": the printed command, verbatim, in the look-alike ------------
    device_out, device_tmp = tmp_path / "OUT", tmp_path / "device-tmp"
    device_out.mkdir()
    device_tmp.mkdir()
    proc = subprocess.run(["bash", "-c", command], cwd=repo, capture_output=True, text=True,
                          env=device_env(venv, OUT=str(device_out), TMPDIR=str(device_tmp)),
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "JAX devices: cpu" in log
    # What comes back: at most 8 plain files of at most 16 MiB, 64 MiB together.
    back = sorted(device_out.rglob("*"))
    assert back and all(p.is_file() and p.parent == device_out for p in back), back
    assert len(back) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in back)
    assert sum(p.stat().st_size for p in back) <= 64 * 2**20

    # -- here again: unbundle, evaluate, ensemble, export under TensorFlow --------------
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    run("runs", "unbundle", device_out, "--runs-dir", runs)
    for name in ("cnn", "half"):
        config = json.loads((runs / name / "config.json").read_text())
        assert (runs / name / "best.keras").is_file()
        metrics = json.loads((runs / name / "metrics.json").read_text())
        assert metrics["backend"] == "jax" and metrics["epochs_run"] == 1, metrics
        assert metrics["xla"] is True, metrics  # augmenter and all: see tests/test_xla.py
        assert metrics["status"] == "complete", metrics
    assert config["precision"] == "bf16"
    data_opts = ["--data-dir", data, "--fer2013", data / "fer2013.csv"]
    run("evaluate", runs / "half", "--split", "test", *data_opts)
    evaluation = json.loads((runs / "half" / "evaluation" / "metrics_test.json").read_text())
    assert evaluation["n"] == 40
    from training.models.serialization import load_model

    for name in ("cnn", "half"):  # trained, not diverged (a NaN run would still bundle)
        weights = load_model(runs / name / "best.keras").get_weights()
        assert all(np.isfinite(w).all() for w in weights), name
    run("ensemble", runs / "cnn", runs / "half", "--out", tmp_path / "report", *data_opts)
    models = tmp_path / "models"
    run("export", runs / "cnn", runs / "half", "--out", models, "--eval", "test", *data_opts)
    manifest = json.loads((models / "manifest.json").read_text())
    assert [m["name"] for m in manifest["members"]] == ["cnn", "half"]  # the bf16 one exported
    assert np.isfinite(manifest["metrics"]["accuracy_quantized"])
