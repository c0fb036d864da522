"""The custom holdout as a test set: `evaluate` and `ensemble` score it beside PrivateTest once
it holds enough faces, and say how many it holds until then."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import synthetic_faces
from test_backend_helpers import image_bytes
from typer.testing import CliRunner

from backend.images import clean_crop
from backend.storage import UploadStore
from contract.review import HOLDOUT_MIN, in_holdout
from training.commands.ensemble import ensemble as ensemble_command
from training.commands.evaluate import evaluate as evaluate_command
from training.core.runs import Predictions, save_predictions
from training.data.custom import load_custom_holdout


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)
    app.command("ensemble")(ensemble_command)
    return app


def _store(root: Path, holdout_faces: int) -> UploadStore:
    """Accepted uploads until `holdout_faces` of them are on the held-out side (plus the
    others, which train), and a pending one in the holdout that must not count."""
    store = UploadStore(root)
    held, seed, ids = 0, 0, []
    pending_in_holdout = False
    while held < holdout_faces or not pending_in_holdout:
        crop = clean_crop(image_bytes(size=(48, 48), seed=seed), min_side=1, max_side=4096)
        seed += 1
        label = ("angry", "happy", "sad")[seed % 3]
        if in_holdout(crop.sha256) and held >= holdout_faces:
            store.add(crop, label, consent=True)  # stays pending
            pending_in_holdout = True
            continue
        ids.append(store.add(crop, label, consent=True).id)
        held += in_holdout(crop.sha256)
    store.review(ids, "accept")
    store.close()
    return store


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> UploadStore:
    return _store(tmp_path_factory.mktemp("big") / "custom", HOLDOUT_MIN)


def _run(tmp_path: Path, name: str, model_file: Path, seed: int) -> Path:
    run = tmp_path / name
    (run / "predictions").mkdir(parents=True)
    (run / "best.keras").write_bytes(model_file.read_bytes())
    _x, y = synthetic_faces(30, seed=0)  # the same labels for every run: one data set
    rng = np.random.default_rng(seed)
    for split in ("val", "test"):
        p = rng.random((30, 7)).astype("float32")
        save_predictions(run / "predictions" / f"{split}.npz", Predictions(p, p, y))
    return run


def _accuracy(model_file: Path, x: np.ndarray, y: np.ndarray) -> float:
    import keras

    model = keras.models.load_model(model_file)
    probs = model.predict(x[..., None].astype("float32"), verbose=0)
    return float((probs.argmax(1) == y).mean())


def test_evaluate_reports_the_holdout_beside_privatetest(tmp_path, big_store, model_file):
    x, y = load_custom_holdout(big_store.root, progress=False)
    assert len(y) == HOLDOUT_MIN  # the pending face on the held-out side is not in it
    run = _run(tmp_path, "r1", model_file, 1)
    res = CliRunner().invoke(_app(), ["evaluate", str(run), "--custom", str(big_store.root)])
    assert res.exit_code == 0, res.output
    assert f"custom holdout ({HOLDOUT_MIN} faces): accuracy no TTA" in res.output
    metrics = json.loads((run / "evaluation" / "metrics_test.json").read_text())
    held = metrics["custom_holdout"]
    assert held["n"] == HOLDOUT_MIN and held["note"] is None
    assert held["accuracy"] == pytest.approx(_accuracy(model_file, x, y))


def test_ensemble_reports_members_and_vote_on_the_holdout(tmp_path, big_store, model_file):
    runs = [_run(tmp_path, "a", model_file, 1), _run(tmp_path, "b", model_file, 2)]
    out = tmp_path / "report"
    res = CliRunner().invoke(
        _app(),
        [
            "ensemble",
            *map(str, runs),
            "--select",
            "all",
            "--custom",
            str(big_store.root),
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"ensemble on the custom holdout ({HOLDOUT_MIN} faces)" in res.output
    report = json.loads((out / "ensemble.json").read_text())
    x, y = load_custom_holdout(big_store.root, progress=False)
    acc = _accuracy(model_file, x, y)  # both members are the same model
    assert report["custom_holdout"]["ensemble"]["accuracy"] == pytest.approx(acc)
    assert set(report["custom_holdout"]["members"]) == {"a", "b"}
    md = (out / "ensemble.md").read_text()
    assert "## The custom holdout" in md and f"{HOLDOUT_MIN} faces from the app's own" in md


def test_a_small_holdout_is_counted_not_scored(tmp_path, model_file, monkeypatch):
    store = _store(tmp_path / "custom", 3)
    run = _run(tmp_path, "r1", model_file, 1)
    (run / "best.keras").unlink()  # never loaded: saved predictions are enough
    res = CliRunner().invoke(_app(), ["evaluate", str(run), "--custom", str(store.root)])
    assert res.exit_code == 0, res.output
    assert (
        f"the custom holdout holds 3 accepted faces; its accuracy is reported from "
        f"{HOLDOUT_MIN}" in res.output
    )
    res = CliRunner().invoke(
        _app(),
        [
            "ensemble",
            str(run),
            str(_run(tmp_path, "r2", model_file, 2)),
            "--custom",
            str(store.root),
            "--out",
            str(tmp_path / "ens"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "holds 3 accepted faces" in res.output
    assert "holds 3 accepted faces" in (tmp_path / "ens" / "ensemble.md").read_text()
    res = CliRunner().invoke(_app(), ["evaluate", str(run), "--custom", str(tmp_path / "none")])
    assert res.exit_code == 0 and "holds 0 accepted faces" in res.output
