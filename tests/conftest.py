"""Fixtures shared by every test module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Any skip other than a missing browser or missing real datasets fails (tests/no_silent_skips.py);
# pytester lets tests/test_install.py check that guard itself.
pytest_plugins = ["no_silent_skips", "pytester"]

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FER_HYBRID_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the real datasets; tests that need it skip cleanly without it."""
    if not (SHARED_DATA / "fer2013.csv.gz").is_file():
        pytest.skip(f"real datasets not found in {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins): a real face shipped in a package."""
    from skimage import data

    return data.astronaut()


# Prepended to a script run under KERAS_BACKEND=jax: TensorFlow made uninstallable, as on
# the GPU machine, which has none: `import tensorflow` fails and
# `importlib.util.find_spec("tensorflow")` answers None (the path finder no longer sees it;
# no sys.modules entry is left that Keras would take for a loaded TensorFlow). It also saves
# the JAX process TensorFlow's import, which Keras does to save a model when it can.
NO_TENSORFLOW = """
import sys
from importlib.machinery import PathFinder
class NoTensorFlow(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return None
        return PathFinder.find_spec(name, path, target)
sys.meta_path[sys.meta_path.index(PathFinder)] = NoTensorFlow
"""


def synthetic_faces(n: int, size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny learnable synthetic 'faces': the class decides where a bright blob sits.

    Learnable on purpose, so a 2-epoch training run in a test can be checked to
    beat chance instead of merely running.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 7, size=n)
    x = rng.integers(0, 60, size=(n, size, size)).astype("uint8")
    yy, xx = np.mgrid[0:size, 0:size]
    for i, label in enumerate(y):
        angle = 2 * np.pi * label / 7
        cy, cx = size / 2 + size / 3.5 * np.sin(angle), size / 2 + size / 3.5 * np.cos(angle)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 10) ** 2))
        x[i] = np.clip(x[i] + 190 * blob, 0, 255).astype("uint8")
    return x, y.astype("int64")



def main_in_process(argv, monkeypatch, capsys) -> tuple[int, str]:
    """`fer-hybrid ARGV` through the console entry point (`training.cli.main`, which turns a
    user mistake into one `error:` line and exit code 2) in this process, without a fresh
    interpreter importing TensorFlow again: (exit code, what it wrote to stderr)."""
    from training.cli import main

    monkeypatch.setattr(sys, "argv", ["fer-hybrid", *map(str, argv)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


# Modules whose tests pytest-xdist may hand to the two workers one by one: long ones, where
# spreading them evens out the workers' ends. Every other module runs whole on one worker
# (`--dist loadgroup` in pyproject's addopts), so a module-scoped fixture that trains or
# converts something is built once, not once per worker.
SPREAD_MODULES = {"test_train.py"}


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name not in SPREAD_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.path.name))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny untrained .keras classifier of the contract's input (evaluation plumbing tests)."""
    import keras

    inputs = keras.Input((48, 48, 1))
    h = keras.layers.Rescaling(1 / 255.0)(inputs)
    h = keras.layers.AveragePooling2D(8)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(7, activation="softmax")(h)
    model = keras.Model(inputs, outputs)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    model.save(path)
    return path
