"""The whole pipeline through the real CLI on a synthetic FER2013-format CSV:
data stats -> train (2 epochs, tiny model) -> evaluate -> ensemble -> export.

Each step reads what the previous one wrote, exactly as a user would chain them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import synthetic_faces
from typer.testing import CliRunner

from training.cli import app

pytestmark = pytest.mark.slow


def write_synthetic_csv(path, n_train=420, n_val=140, n_test=140):
    x, y = synthetic_faces(n_train + n_val + n_test, seed=3)
    usage = ["Training"] * n_train + ["PublicTest"] * n_val + ["PrivateTest"] * n_test
    lines = ["emotion,pixels,Usage"]
    lines += [f"{label},{' '.join(map(str, img.ravel()))},{u}" for img, label, u in zip(x, y, usage)]
    path.write_text("\n".join(lines) + "\n")


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_data_train_evaluate_ensemble_export(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    csv = tmp_path / "fer2013.csv"
    write_synthetic_csv(csv)
    data = ["--fer2013", csv, "--data-dir", tmp_path]  # data dir without CK+/JAFFE: FER only

    stats = run("data", "stats", *data, "--aux", "none")
    assert "420" in stats and "140" in stats

    runs = tmp_path / "runs"
    for seed in (0, 1):
        run("train", "--model", "baseline_cnn", "--epochs", 2, "--batch-size", 32, "--lr", 0.05,
            "--name", f"tiny-{seed}", "--seed", seed, "--runs-dir", runs, "--aux", "none",
            "--verbose", 0, *data)
        assert (runs / f"tiny-{seed}" / "best.keras").is_file()

    run("evaluate", runs / "tiny-0", "--split", "test", *data)
    metrics = json.loads((runs / "tiny-0" / "evaluation" / "metrics_test.json").read_text())
    assert metrics["split"] == "test" and metrics["n"] == 140
    assert (runs / "tiny-0" / "evaluation" / "confusion_test.png").stat().st_size > 1000

    report_dir = tmp_path / "report"
    run("ensemble", runs / "tiny-0", runs / "tiny-1", "--select", "greedy", "--out", report_dir, *data)
    report = json.loads((report_dir / "ensemble.json").read_text())
    assert report["ensemble"]["test"]["accuracy"] > 1 / 7  # learnable data: well above chance

    models = tmp_path / "models"
    run("export", runs / "tiny-0", runs / "tiny-1", "--out", models, "--eval", "test", *data)
    manifest = json.loads((models / "manifest.json").read_text())
    assert [m["name"] for m in manifest["members"]] == ["tiny-0", "tiny-1"]
    for member in manifest["members"]:
        assert (models / member["path"]).is_file()
    q, f = manifest["metrics"]["accuracy_quantized"], manifest["metrics"]["accuracy_float"]
    assert abs(q - f) <= 0.02
    assert np.isfinite(q)
