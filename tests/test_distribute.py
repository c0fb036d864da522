"""--distribute: data-parallel training over all devices of one machine.

Tested on virtual CPU devices: JAX with XLA_FLAGS=--xla_force_host_platform_device_count=2,
in a subprocess (the flag must be set before jax starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import NO_TENSORFLOW

from training.fit.train import _trim_for_replicas, distributed

REPO = Path(__file__).resolve().parents[1]


def test_off_means_one_replica_and_no_distribution():
    with distributed(False, 7) as n:
        assert n == 1


def test_last_batch_is_trimmed_to_split_evenly():
    import numpy as np

    x, y = np.zeros((37, 2)), np.arange(37)
    tx, ty = _trim_for_replicas(x, y, batch_size=8, n=2)  # last batch 5 -> 4
    assert len(tx) == len(ty) == 36
    assert len(_trim_for_replicas(x, y, batch_size=8, n=1)[0]) == 37


def _run_jax(script: str, tmp_path: Path, devices: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    # no TensorFlow, as on the GPU machine (and Keras would import it to save a .keras file)
    head = NO_TENSORFLOW + (
        f"import json\nsys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]\n")
    return subprocess.run([sys.executable, "-c", head + textwrap.dedent(script)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          check=False)


@pytest.mark.slow
def test_data_parallel_on_two_virtual_jax_devices(tmp_path):
    # One JAX process for both checks (each fresh one costs JAX's start-up): first a batch
    # size the 2 devices cannot split is refused before the run folder is written, then a
    # data-parallel run.
    # augment=False: on *virtual* CPU devices, XLA:CPU's all-reduce deadlocks (rendezvous
    # timeout, process abort) once the full Random* augmenter is in the graph, although each
    # layer alone works; this is a property of the emulation, the code path is the same.
    run = tmp_path / "dp"
    proc = _run_jax(f"""
        import keras
        from conftest import synthetic_faces
        from training.core.errors import FerError
        from training.fit.train import TrainConfig, train
        print("DEVICES", len(keras.distribution.list_devices()))
        x, y = synthetic_faces(20, seed=1)
        try:
            train(TrainConfig(model="baseline_cnn", epochs=1, batch_size=33, distribute=True),
                  {{"train": (x, y), "val": (x, y)}}, {str(tmp_path / 'odd')!r}, verbose=0)
        except FerError as err:
            print("FERERROR", err)
        x, y = synthetic_faces(100, seed=1); xv, yv = synthetic_faces(41, seed=2)
        m = train(TrainConfig(model="baseline_cnn", epochs=1, batch_size=32, lr=0.05,
                              distribute=True, augment=False),
                  {{"train": (x, y), "val": (xv, yv)}}, {str(run)!r}, verbose=0)
        print("AFTER", keras.distribution.distribution())
        print("METRICS", json.dumps(m))
        print("TENSORFLOW", "tensorflow" in sys.modules)
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "FERERROR --batch-size 33 is not divisible by the 2 devices" in out
    assert not (tmp_path / "odd").exists()  # refused before the run folder is written
    assert "DEVICES 2" in out and "data-parallel over 2 devices" in out
    assert "AFTER None" in out  # the global distribution is restored after training
    assert "TENSORFLOW False" in out
    metrics = json.loads(out.split("METRICS", 1)[1].strip().splitlines()[0])
    assert metrics["status"] == "complete" and metrics["backend"] == "jax"
    assert (run / "best.keras").is_file() and (run / "predictions" / "val.npz").is_file()
    assert json.loads((run / "config.json").read_text())["distribute"] is True
