"""TensorFlow's C++ start-up log kept out of the CLI's stderr (training/core/tf_log.py), with a
stand-in `tensorflow` package: the real import takes half a minute here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cpp_log_lines_are_filtered_python_warnings_kept(tmp_path):
    """The TensorFlow import runs with fd 2 filtered: a stand-in `tensorflow` package that
    writes the real start-up lines to fd 2 and warns in Python, imported after the CLI's set-up."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    cpp = ("2026-12-06 18:04:11.037474: E external/local_xla/xla/stream_executor/cuda/"
           "cuda_fft.cc:467] Unable to register cuFFT factory\n"
           "WARNING: All log messages before absl::InitializeLog() is called are written to "
           "STDERR\n"
           "E0000 00:00:1796580251.144181   20760 cuda_dnn.cc:8579] Unable to register cuDNN\n"
           "W0000 00:00:1796580251.376556   20760 computation_placer.cc:177] computation placer\n")
    (fake / "__init__.py").write_text(
        f"import os, warnings\nos.write(2, {cpp.encode()!r})\n"
        "warnings.warn('a real Python warning')\nVALUE = 42\n")
    code = ("import sys\nimport training.cli\nimport tensorflow\n"
            "assert tensorflow.VALUE == 42 and sys.modules['tensorflow'] is tensorflow\n"
            "print('ok')\n")
    env = {"PYTHONPATH": f"{tmp_path / 'fake'}:{REPO}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr
    assert "a real Python warning" in proc.stderr
    assert "cuda" not in proc.stderr and "absl" not in proc.stderr, proc.stderr
    # a developer who sets TF_CPP_MIN_LOG_LEVEL sees everything
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "cuda_dnn.cc" in proc.stderr and "absl" in proc.stderr
