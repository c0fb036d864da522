"""Where the GPU look-alike (tests/device_support.py) finds its Python 3.12."""

from __future__ import annotations

from device_support import find_python312


def _fake_python(folder, version: str = "(3, 12)"):
    """An executable that answers the version probe as a Python 3.12 would."""
    folder.mkdir(parents=True)
    exe = folder / "python3.12"
    exe.write_text(f"#!/bin/sh\necho '{version}'\n")
    exe.chmod(0o755)
    return exe


def test_python312_found_under_pyenv_root(tmp_path, monkeypatch):
    """A pyenv installed elsewhere than ~/.pyenv (PYENV_ROOT) is found, with another HOME."""
    exe = _fake_python(tmp_path / "pyenv" / "versions" / "3.12.9" / "bin")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("FER_HYBRID_DEVICE_PYTHON", raising=False)
    assert find_python312() == str(exe)


def test_pyenv_root_before_home_pyenv(tmp_path, monkeypatch):
    root = _fake_python(tmp_path / "root" / "versions" / "3.12.1" / "bin")
    _fake_python(tmp_path / "home" / ".pyenv" / "versions" / "3.12.9" / "bin")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("FER_HYBRID_DEVICE_PYTHON", raising=False)
    assert find_python312() == str(root)
