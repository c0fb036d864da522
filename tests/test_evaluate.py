"""`evaluate` on a tiny saved Keras model over synthetic data, and its errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import synthetic_faces
from typer.testing import CliRunner

from training.commands.evaluate import evaluate as evaluate_command
from training.core.errors import FerError
from training.core.runs import (
    Predictions,
    load_predictions,
    normalise_split,
    resolve_target,
    save_predictions,
)
from training.evaluate.evaluate import evaluate_target, format_summary


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("evaluate")(evaluate_command)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps "evaluate" as a subcommand name
        pass

    return app


@pytest.fixture(scope="module")
def data():
    x, y = synthetic_faces(40, seed=1)
    return {"test": (x, y), "val": (x[:20], y[:20]), "train": (x[:10], y[:10])}


@pytest.fixture()
def run_dir(tmp_path, model_file) -> Path:
    run = tmp_path / "runs" / "tiny-run"
    run.mkdir(parents=True)
    (run / "best.keras").write_bytes(model_file.read_bytes())
    return run


def test_evaluate_run_folder_writes_files_and_caches_predictions(run_dir, data):
    calls = []

    def loader(split):
        calls.append(split)
        return data[split]

    target = resolve_target(run_dir)
    result = evaluate_target(target, "test", tta=True, data_loader=loader)
    assert calls == ["test"]
    assert (
        result["predictions"] == "computed"
        and result["n"] == 40
        and result["split_name"] == "PrivateTest"
    )
    cached = run_dir / "predictions" / "test.npz"
    preds = load_predictions(cached)
    assert preds.probs.shape == (40, 7) and preds.probs_flip.shape == (40, 7)
    np.testing.assert_array_equal(preds.y, data["test"][1])
    out = run_dir / "evaluation"
    for name in ("metrics_test.json", "confusion_test.png", "confusion_test.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "confusion_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics_test.json").read_text())
    assert metrics["tta"] is True and metrics["accuracy"] == metrics["accuracy_tta"]
    assert np.asarray(metrics["confusion_matrix"]).sum() == 40
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))

    # second time: reuses the saved predictions, never touches data
    again = evaluate_target(target, "test", tta=False, data_loader=None)
    assert again["predictions"] == "saved" and again["tta"] is False
    assert again["accuracy"] == again["accuracy_plain"] == metrics["accuracy_plain"]
    text = format_summary(again)
    assert "PrivateTest" in text and "40 images" in text and "happy" in text


def test_evaluate_bare_keras_file(model_file, data, tmp_path):
    result = evaluate_target(
        resolve_target(model_file), "val", data_loader=data.__getitem__, out_dir=tmp_path / "out"
    )
    assert result["n"] == 20 and (tmp_path / "out" / "metrics_val.json").is_file()


def test_errors(tmp_path, model_file):
    with pytest.raises(FerError, match="does not exist"):
        resolve_target(tmp_path / "nope")
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(FerError, match="best.keras"):
        resolve_target(tmp_path / "empty-run")
    (tmp_path / "model.h5").write_text("x")
    with pytest.raises(FerError, match="not a .keras"):
        resolve_target(tmp_path / "model.h5")
    with pytest.raises(FerError, match="unknown split"):
        normalise_split("holdout")
    assert normalise_split("PrivateTest") == "test" and normalise_split("PublicTest") == "val"
    bad = tmp_path / "bad.npz"
    np.savez(bad, probs=np.zeros((3, 7)), probs_flip=np.zeros((3, 6)), y=np.zeros(3, dtype="int64"))
    with pytest.raises(FerError, match="probs_flip"):
        load_predictions(bad)
    np.savez(bad, probs=np.zeros((3, 7)), y=np.zeros(3, dtype="int64"))
    with pytest.raises(FerError, match="missing"):
        load_predictions(bad)
    bad.write_bytes(b"not a zip")
    with pytest.raises(FerError, match="cannot read"):
        load_predictions(bad)
    # a run with no predictions and no loader -> says which command to run
    run = tmp_path / "r"
    run.mkdir()
    (run / "best.keras").write_bytes(model_file.read_bytes())
    with pytest.raises(FerError, match="fer-hybrid evaluate"):
        evaluate_target(resolve_target(run), "test", data_loader=None)


def test_save_predictions_roundtrip(tmp_path):
    p = Predictions(np.full((2, 7), 1 / 7), np.full((2, 7), 1 / 7), np.array([1, 2]))
    path = save_predictions(tmp_path / "predictions" / "val.npz", p)
    assert path.name == "val.npz"
    back = load_predictions(path)
    assert back.probs.dtype == np.float32 and back.y.dtype == np.int64


def test_cli(run_dir, data, monkeypatch, tmp_path):
    import training.data.splits as splits

    monkeypatch.setattr(splits, "split_loader", lambda **kw: data.__getitem__)
    runner = CliRunner()
    res = runner.invoke(
        _app(),
        ["evaluate", str(run_dir), "--split", "val", "--no-tta", "--out", str(tmp_path / "ev")],
    )
    assert res.exit_code == 0, res.output
    assert "val (PublicTest), 20 images" in res.output and "macro-F1" in res.output
    assert (tmp_path / "ev" / "metrics_val.json").is_file()
    res = runner.invoke(_app(), ["evaluate", str(run_dir), "--split", "nope"])
    assert isinstance(res.exception, FerError) and "unknown split" in str(res.exception)
    res = runner.invoke(_app(), ["evaluate", str(tmp_path / "missing")])
    assert isinstance(res.exception, FerError)


def test_cli_run_with_saved_predictions_needs_no_model(tmp_path):
    run = tmp_path / "cpu-run"
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 30)
    p = rng.random((30, 7))
    save_predictions(run / "predictions" / "test.npz", Predictions(p, p, y))
    res = CliRunner().invoke(_app(), ["evaluate", str(run)])
    assert res.exit_code == 0, res.output
    assert "test (PrivateTest), 30 images [predictions saved]" in res.output
    assert (run / "evaluation" / "confusion_test.json").is_file()
    res = CliRunner().invoke(_app(), ["evaluate", str(run), "--split", "val"])
    assert isinstance(res.exception, FerError) and "no best.keras" in str(res.exception)


def test_cli_reports_ferplus_agreement_when_the_votes_are_next_to_the_data(run_dir, tmp_path):
    """A synthetic FER2013 CSV with its FER+ votes beside it: evaluate adds the agreement
    (checked against a hand computation); with the votes gone, one line says why not."""
    from test_ferplus import col, write_fer_with_votes

    from training.data.ferplus import COLUMNS, parse_ferplus
    from training.data.ferplus_agreement import ferplus_agreement, ferplus_metrics

    data = tmp_path / "data"
    data.mkdir()
    # a different majority per row; every 5th row is "not a face"
    votes = write_fer_with_votes(
        data, (("Training", 14, 1), ("PublicTest", 7, 2), ("PrivateTest", 21, 3)),
        lambda i: col(NF=10) if i % 5 == 4 else col(**{COLUMNS[i % 7]: 6, "unknown": 4}))
    (data / "fer2013new.csv").write_text(votes)

    out = tmp_path / "ev"
    res = CliRunner().invoke(_app(), ["evaluate", str(run_dir), "--data-dir", str(data),
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "FER+ majority agreement" in res.output and "17 rows" in res.output
    doc = json.loads((out / "metrics_test.json").read_text())
    preds = load_predictions(run_dir / "predictions" / "test.npz")
    expected = parse_ferplus(votes.encode()).split("PrivateTest")
    by_hand = ferplus_agreement(((preds.probs + preds.probs_flip) / 2).argmax(1),
                                expected.votes, expected.scored)
    assert doc["ferplus"]["tta"] == pytest.approx(by_hand) and by_hand["n"] == 17
    assert ferplus_metrics(preds, expected)["plain"]["n"] == 17

    (data / "fer2013new.csv").unlink()
    res = CliRunner().invoke(_app(), ["evaluate", str(run_dir), "--data-dir", str(data),
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "no FER+ votes" in res.output and "FER2013 accuracy only" in res.output
    assert json.loads((out / "metrics_test.json").read_text())["ferplus"] is None


def test_evaluate_takes_a_models_folder_as_explain_does():
    """The shipped models/ folder (manifest.json) resolves as a models target, not as a run
    folder without best.keras (which then had nothing to score)."""
    from training.evaluate.evaluate import default_out_dir
    from training.evaluate.scorer import resolve_source

    models = Path(__file__).resolve().parents[1] / "models"
    source = resolve_source(models, need_model=False)
    assert source.kind == "models" and source.manifest.members
    assert default_out_dir(source) == models / "evaluation"


@pytest.mark.slow
def test_evaluate_scores_an_exported_models_folder(tmp_path, data):
    """The manifest's TF.js members, soft-voted as the page does, plain and mirrored."""
    from e2e_support import build_fixture_models

    from training.evaluate.scorer import resolve_source

    manifest = build_fixture_models(tmp_path / "models", tmp_path / "work")
    source = resolve_source(manifest.parent, need_model=False)
    result = evaluate_target(source, "test", data_loader=lambda split: data[split])
    assert result["predictions"] == "computed" and result["n"] == 40
    assert result["model"] == str(manifest.parent) and result["run_dir"] is None
    assert (manifest.parent / "evaluation" / "metrics_test.json").is_file()
    assert 0 <= result["accuracy_plain"] <= 1 and 0 <= result["accuracy_tta"] <= 1
