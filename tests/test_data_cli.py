"""`fer-hybrid data stats` / `data pack` through Typer's CliRunner."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import synthetic_faces
from typer.testing import CliRunner

from training.commands.data import data_app
from training.core.errors import FerError

runner = CliRunner()


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FER_HYBRID_CUSTOM_DIR", str(tmp_path / "no-custom"))


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    x, y = synthetic_faces(35, seed=21)
    y[:7] = np.arange(7)  # every class present
    usage = ["Training"] * 21 + ["PublicTest"] * 7 + ["PrivateTest"] * 7
    rows = ["emotion,pixels,Usage"]
    rows += [
        f"{lab},{' '.join(map(str, im.reshape(-1).tolist()))},{u}"
        for im, lab, u in zip(x, y, usage)
    ]
    (d / "fer2013.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    names = np.array(["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"])
    ck_x, _ = synthetic_faces(4, seed=22)
    np.savez(d / "ckplus48.npz", x=ck_x, y=np.array([0, 1, 4, 6], np.uint8), class_names=names)
    return d


def test_stats_table(data_dir, tmp_path):
    png = tmp_path / "plot" / "counts.png"
    result = runner.invoke(data_app, ["stats", "--data-dir", str(data_dir), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    out = result.output
    header = next(line for line in out.splitlines() if line.startswith("split"))
    for label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "total"):
        assert label in header
    assert any(line.startswith("train") and "ckplus" in line for line in out.splitlines())
    train_total = next(line for line in out.splitlines() if line.startswith("train  total"))
    assert train_total.split()[-1] == "24"  # 21 FER2013 + 3 CK+ (contempt dropped)
    assert "contempt" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stats_aux_none(data_dir):
    result = runner.invoke(data_app, ["stats", "--data-dir", str(data_dir), "--aux", "none"])
    assert result.exit_code == 0, result.output
    assert "ckplus" not in result.output
    all_total = next(line for line in result.output.splitlines() if line.startswith("all"))
    assert all_total.split()[-1] == "35"


def test_stats_error_is_ferror(tmp_path):
    result = runner.invoke(data_app, ["stats", "--data-dir", str(tmp_path / "missing")])
    assert isinstance(result.exception, FerError)
    assert "no FER2013 data" in str(result.exception)


def test_pack_no_test_round_trip(data_dir, tmp_path):
    out = tmp_path / "fer.pack"
    result = runner.invoke(
        data_app,
        [
            "pack",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            "--no-test",
            "--aux",
            "ckplus",
            "--level",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{out.stat().st_size:,} bytes" in result.output
    from training.data import load_splits

    s = load_splits(fer2013=out, aux="ckplus")
    ref = load_splits(data_dir=data_dir, aux="ckplus")
    assert len(s["test"]) == 0
    np.testing.assert_array_equal(s["train"].x, ref["train"].x)
    np.testing.assert_array_equal(s["val"].y, ref["val"].y)


def test_help_texts():
    for cmd in ("stats", "pack"):
        result = runner.invoke(data_app, [cmd, "--help"])
        assert result.exit_code == 0
        assert "--data-dir" in result.output and "--fer2013" in result.output
    assert "--plot" in runner.invoke(data_app, ["stats", "--help"]).output
    assert "--no-test" in runner.invoke(data_app, ["pack", "--help"]).output


def test_root_cli_data_stats(data_dir):
    """Through the real `fer-hybrid` app."""
    from training.cli import app

    result = runner.invoke(app, ["data", "stats", "--data-dir", str(data_dir), "--aux", "none"])
    assert result.exit_code == 0, result.output
    assert "fer2013" in result.output


def test_root_cli_error_line(tmp_path):
    """`fer-hybrid data stats` on a missing dir prints one `error:` line and exits 2."""
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from training.cli import main; main()",
            "data",
            "stats",
            "--data-dir",
            str(tmp_path / "missing"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no FER2013 data in")


def test_stats_names_an_empty_aux_set(data_dir, tmp_path, monkeypatch):
    """An auxiliary set that loads no image (an empty custom folder) is reported by its name,
    not as `?: 0 loaded`."""
    custom = tmp_path / "custom"
    custom.mkdir()
    monkeypatch.setenv("FER_HYBRID_CUSTOM_DIR", str(custom))
    result = runner.invoke(data_app, ["stats", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "custom: 0 loaded" in result.output and "?:" not in result.output
