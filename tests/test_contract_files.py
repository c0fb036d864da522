"""contract/files.py: the one atomic writer both wings use."""

from __future__ import annotations

import os
import stat

import pytest

from contract.files import TMP_PREFIX, atomic_output, atomic_write, remove_stale_tmp, temp_path


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX))


def test_atomic_write_bytes_text_and_mode(tmp_path):
    target = tmp_path / "sub" / "a.json"  # the folder is created
    assert atomic_write(target, '{"x": 1}\n') == target
    assert target.read_text() == '{"x": 1}\n'
    atomic_write(target, b"\x00\x01", mode=0o600)
    assert target.read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"public", mode=0o644)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(target.parent) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_a_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        atomic_write(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_temp_names_keep_the_suffix_last_and_are_found_after_a_crash(tmp_path):
    tmp = temp_path(tmp_path / "best.keras")
    assert tmp.parent == tmp_path and tmp.name.startswith(TMP_PREFIX)
    assert tmp.suffix == ".keras"  # Keras refuses to save to any other suffix
    assert temp_path(tmp_path / "best.keras") != tmp
    (tmp_path / "checkpoint").mkdir()
    stale = [tmp, tmp_path / "checkpoint" / f"{TMP_PREFIX}1-state.json"]
    for p in stale:
        p.write_bytes(b"partial")
    keep = tmp_path / "best.keras"
    keep.write_bytes(b"whole")
    assert sorted(remove_stale_tmp(tmp_path)) == sorted(stale)
    assert keep.exists() and not any(p.exists() for p in stale)


def test_sha256_of_a_file_and_of_a_file_object(tmp_path):
    import hashlib
    import io

    from contract.files import sha256_file, sha256_of

    data = bytes(range(256)) * 5000  # several chunks
    (tmp_path / "f").write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "f") == want
    fh = io.BytesIO(data)
    fh.read(100)  # wherever it stands, the whole content is hashed
    assert sha256_of(fh, chunk=4096) == want
