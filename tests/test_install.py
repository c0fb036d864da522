"""The install a new user gets: pinned stack, the `fer-hybrid` entry point's error lines, no
silent skips. These run the *installed* console script, as a user would type it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fer_hybrid() -> str:
    """The console script of this interpreter's environment (not some other one on PATH)."""
    exe = Path(sysconfig.get_path("scripts")) / "fer-hybrid"
    if exe.is_file():
        return str(exe)
    found = shutil.which("fer-hybrid")
    assert found, "the fer-hybrid entry point is not installed: pip install -e '.[train,test]'"
    return found


def _run(*args: str, env: dict | None = None, cwd: Path | None = None):
    return subprocess.run([_fer_hybrid(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def _pins(extra: str) -> dict[str, str]:
    """name -> exact version pinned (==) in pyproject's extra, for this Python."""
    from packaging.requirements import Requirement

    doc = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {}
    for line in doc["project"]["optional-dependencies"][extra]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[req.name] = exact[0]
    return pins


def test_training_stack_imports_inside_pytest():
    """tensorflowjs imports TF-DF, which wanted IPython under pytest's capture (fixed in
    training.export.tfjs.import_tensorflowjs); a broken converter import must fail here, not skip
    the export tests."""
    from training.export.tfjs import import_tensorflowjs

    tensorflowjs = import_tensorflowjs()
    assert tensorflowjs.__version__ == _pins("train")["tensorflowjs"]
    assert callable(tensorflowjs.converters.tf_saved_model_conversion_v2.convert_tf_saved_model)


def test_pinned_versions_are_installed():
    """Keras equals the GPU machine's carried wheel (so .keras files move between them), and
    JAX the GPU machine's where this Python can have it."""
    for extra in ("train", "test"):
        for name, pinned in _pins(extra).items():
            installed = version(name)
            if "*" in pinned:
                assert installed.startswith(pinned.rstrip("*").rstrip(".")), (name, installed)
            else:
                assert installed == pinned, f"{name} {installed} installed, {pinned} pinned"
    assert "keras" in _pins("train") and "jax" in _pins("test")


def test_constraints_file_pins_the_stack():
    """constraints.txt (used by the README's commands) pins every package of the stack."""
    text = (REPO / "constraints.txt").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", text, flags=re.M))
    norm = {k.lower().replace("_", "-"): v for k, v in pinned.items()}
    for name in ("tensorflow", "tensorflowjs", "keras", "fastapi", "typer", "numpy", "playwright"):
        assert name in norm, f"{name} is not pinned in constraints.txt"
    assert norm["keras"] == _pins("train")["keras"]


@pytest.mark.parametrize("args", [
    ["data", "stats", "/x.csv"],           # a path where an option belongs
    ["serve", "--port", "99999"],          # out of range
    ["nosuch"],                            # unknown command
    ["train", "--model", "nosuch"],        # unknown model: rejected before TensorFlow loads
    ["train", "--epochs", "many"],         # not a number
    ["export"],                            # missing argument
    ["evaluate", "/no/such/run"],          # a path that does not exist
    ["explain", "/no/such/run"],
])
def test_usage_errors_print_one_line(args, tmp_path):
    proc = _run(*args, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out


def test_help_exits_zero():
    proc = _run("--help")
    assert proc.returncode == 0 and "train" in proc.stdout


@pytest.mark.parametrize("args", [
    ["train", "--model", "baseline_cnn", "--sample", "10"],
    ["evaluate", "model.keras"],
    ["export", "model.keras", "--eval", "none"],
    ["explain", "model.keras"],
])
def test_base_install_gets_an_install_hint(args, tmp_path):
    """A server-only install (no [train] extra) asks for it instead of crashing on imports.
    Simulated by making the training stack unimportable in the CLI's process."""
    # looks like a .keras file (a zip of config.json and weights), so commands get as far as Keras
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        for entry in ("config.json", "model.weights.h5"):
            archive.writestr(entry, "{}")
    block = ("import sys\n"
             "for m in ('keras', 'tensorflow', 'tqdm', 'matplotlib', 'sklearn', 'tensorflowjs'):\n"
             "    sys.modules[m] = None  # import raises ModuleNotFoundError, as if absent\n"
             "from training.cli import main\n"
             "main()\n")
    proc = subprocess.run([sys.executable, "-c", block, *args], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    if proc.returncode == 0:
        pytest.fail(f"{args} succeeded without the training stack:\n{out}")
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "pip install 'fer-hybrid[train]'" in out, out


def test_unexpected_skips_fail_the_run(pytester):
    """The no-silent-skips guard: importorskip of a missing package fails, machine skips pass."""
    pytester.syspathinsert(str(Path(__file__).parent))
    pytester.makeconftest("pytest_plugins = ['no_silent_skips']")
    pytester.makepyfile(
        test_a="import pytest\nx = pytest.importorskip('no_such_package_xyz')\n"
               "def test_a():\n    pass\n",
        test_b="import pytest\n"
               "def test_machine():\n    pytest.skip('real datasets not found in /nowhere')\n"
               "def test_other():\n    pytest.skip('not written yet')\n",
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--continue-on-collection-errors")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == 1, outcomes
    assert outcomes.get("failed") == 1 and outcomes.get("errors") == 1, outcomes


@pytest.mark.parametrize("name", ["chromium", "firefox", "webkit"])
def test_a_missing_browser_engine_skips_only_off_ci(name, monkeypatch):
    """Without an engine the cross-engine tests skip with a reason the guard allows on a
    developer's machine, and fail when CI is set (.ci/run installs every engine)."""
    import engines
    from no_silent_skips import ALLOWED_SKIPS

    missing = engines.NEEDS[name][0][0]
    monkeypatch.setattr(engines, "installed", lambda path: path != missing)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        engines.require_engine(name)
    assert any(allowed in str(skipped.value) for allowed in ALLOWED_SKIPS), skipped.value
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="missing on CI: .ci/run installs"):
        engines.require_engine(name)
