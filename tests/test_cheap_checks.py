"""Wrong usages answered before TensorFlow loads: each runs the CLI in a subprocess and checks
the one `error:` line, that neither Keras nor TensorFlow was imported, and that the refused
command left no output folder behind."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs the CLI and then says which heavy frameworks were imported (SystemExit passes `finally`).
CLI = ("import sys\n"
       "from training.cli import main\n"
       "try:\n"
       "    main()\n"
       "finally:\n"
       "    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'keras', 'tensorflow', 'jax'})\n"
       "    print('HEAVY', ','.join(heavy), file=sys.stderr)\n")


def refuse(tmp_path: Path, *args: str) -> str:
    """The `error:` line of a CLI call that must fail before any heavy import."""
    proc = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert lines[-1] == "HEAVY ", f"imported {lines[-1]} before refusing: {proc.stderr}"
    assert len(lines) == 2 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def keras_like(path: Path, entries=("config.json", "model.weights.h5")) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in entries:
            archive.writestr(name, "{}")
    return path


@pytest.mark.parametrize("flag, value, says", [
    ("--width", "-1", "--width must be > 0 (got -1)"),
    ("--width", "0", "--width must be > 0 (got 0)"),
    ("--freeze-first", "-2", "--freeze-first must be >= 0 (got -2)"),
])
def test_model_option_values_before_keras(tmp_path, flag, value, says):
    model = "resnet50" if flag == "--freeze-first" else "sepnet"
    line = refuse(tmp_path, "train", "--model", model, flag, value, "--name", "w")
    assert says in line
    assert not (tmp_path / "runs").exists(), "a refused run left its folder"


def test_option_rules_are_the_builders_rules():
    """The value rules hold for keyword names the builders really take (no stale names)."""
    import ast

    from training.models.registry import MODEL_NAMES, OPTION_RULES, model_options

    taken = {o for name in MODEL_NAMES for o in model_options(name)}
    assert set(OPTION_RULES) <= taken
    ast.parse((REPO / "training" / "models" / "blocks.py").read_text())


EVERY_KIND = [(None, "does not exist"), (b"", "is empty"), (b"not a model\n", "not a zip archive"),
              ("zip", "no model.weights.h5")]
EVERY_COMMAND = [
    ["explain", "{m}", "--out", "{tmp}/out"],
    ["robustness", "{m}", "--out", "{tmp}/out"],
    ["export", "{m}", "--out", "{tmp}/out"],
    ["calibrate", "{m}"],
    ["ensemble", "{m}", "{m}"],
    ["train", "--model", "sepnet", "--init-from", "{m}"],
    ["train", "--model", "sepnet", "--teacher", "{m}"],
]


@pytest.mark.parametrize("content, says, command", [
    *[(content, says, ["evaluate", "{m}"]) for content, says in EVERY_KIND],
    *[(b"", "is empty", command) for command in EVERY_COMMAND],
    ("dir", "neither a run folder", ["robustness", "{m}", "--out", "{tmp}/out"]),
])
def test_bad_keras_file_before_keras(tmp_path, content, says, command):
    model = tmp_path / "m.keras"
    if content == "zip":
        keras_like(model, entries=("config.json",))
    elif content == "dir":
        model.mkdir()
    elif content is not None:
        model.write_bytes(content)
    line = refuse(tmp_path, *[a.format(m=model, tmp=tmp_path) for a in command])
    assert says in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_keras_like_file_passes_the_cheap_check(tmp_path):
    from training.core.runs import check_keras_file

    check_keras_file(keras_like(tmp_path / "m.keras"))


def test_check_out_dir_creates_nothing(tmp_path):
    from training.core.errors import FerError
    from training.core.outputs import check_out_dir

    check_out_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FerError, match="not a folder"):
        check_out_dir(tmp_path / "file")
    with pytest.raises(FerError, match="not a folder"):
        check_out_dir(tmp_path / "file" / "sub")


def test_a_run_that_fails_to_start_leaves_no_folder(tmp_path, monkeypatch):
    """A failure after the run folder was made but before any checkpoint (here the model
    build) removes the folder: a folder holding only config.json would make the same --name
    refuse the next try."""
    from conftest import synthetic_faces

    import training.fit.train as train_module
    from training.core.errors import FerError
    from training.core.runs import RunFolder
    from training.data.dataset import make
    from training.fit.train import TrainConfig, prepare_run, train_prepared

    def broken_fit(*args, **kwargs):
        raise FerError("cannot load backbone weights")

    monkeypatch.setattr(train_module, "_fit", broken_fit)
    x, y = synthetic_faces(21, seed=3)
    splits = {"train": make(x, y, "fer2013"), "val": make(x, y, "fer2013")}
    run = RunFolder(tmp_path / "runs" / "r")
    config, state = prepare_run(TrainConfig(model="sepnet", epochs=1), run)
    with pytest.raises(FerError, match="backbone"):
        train_prepared(config, state, splits, run)
    assert not run.path.exists()
