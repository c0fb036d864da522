"""Calibration: the metrics (ECE, NLL, the temperature fit), `fer-hybrid calibrate` on an
exported models folder, and the page applying the manifest's temperature exactly as Python
computes it."""

from __future__ import annotations

import json
import shutil

import e2e_support
import numpy as np
import pytest
from test_pipeline_chain import write_synthetic_csv
from typer.testing import CliRunner

from contract.manifest import read_manifest_json, validate_manifest
from training.evaluate.calibration import ece, fit_temperature, nll, reliability, with_temperature


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _drawn(t_true: float, n: int = 20000, seed: int = 0):
    """Probabilities softmax(z) whose labels are drawn from softmax(z / t_true): a model whose
    calibrating temperature is t_true by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2.5, (n, 7))
    truth = _softmax(z / t_true)
    y = np.array([rng.choice(7, p=p) for p in truth])
    return _softmax(z), y


def test_ece_is_zero_when_confidence_matches_accuracy_and_counts_the_gap_otherwise():
    # 10 images at confidence 0.8, 8 of them right: calibrated
    probs = np.tile(np.array([[0.8] + [0.2 / 6] * 6]), (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert ece(probs, y) == pytest.approx(0.0, abs=1e-12)
    # the same confidence with 5 right: a 0.3 gap over all images
    assert ece(probs, np.array([0] * 5 + [1] * 5)) == pytest.approx(0.3)
    rel = reliability(probs, y, bins=5)
    assert rel["count"] == [0, 0, 0, 10, 0]  # 0.8 lies in (0.6, 0.8]
    assert rel["confidence"][3] == pytest.approx(0.8) and rel["accuracy"][3] == pytest.approx(0.8)


@pytest.mark.parametrize("t_true", [0.6, 1.7])
def test_the_fit_recovers_the_temperature_and_lowers_ece_and_nll(t_true):
    probs, y = _drawn(t_true)
    t = fit_temperature(probs, y)
    assert t == pytest.approx(t_true, rel=0.06)
    fixed = with_temperature(probs, t)
    assert ece(fixed, y) < ece(probs, y) / 2
    assert nll(fixed, y) < nll(probs, y)
    # a temperature never changes the top class
    assert (fixed.argmax(1) == probs.argmax(1)).all()
    np.testing.assert_allclose(with_temperature(probs, 1.0), probs, atol=1e-12)


def test_the_manifest_accepts_a_temperature_in_range_only(tmp_path):
    doc = json.loads('{"schema": "fer-hybrid/manifest@1", "labels": ["a", "b"], "input": '
                     '{"height": 48, "width": 48, "channels": 1, "dtype": "float32", '
                     '"range": [0, 255], "layout": "NHWC"}, "ensemble": {"method": '
                     '"soft_voting", "tta_flip": true}, "members": [{"name": "m", "path": '
                     '"m/model.json", "format": "tfjs_graph_model", "weight": 1.0, '
                     '"quantization": "uint8", "bytes": 1}], "metrics": {"split": null}}')
    assert not [p for p in validate_manifest(doc) if "temperature" in p]
    for bad in (0, -1, 30, "2", True, float("nan")):
        doc["ensemble"]["temperature"] = bad
        assert any("ensemble.temperature" in p for p in validate_manifest(doc)), bad
    doc["ensemble"]["temperature"] = 1.37
    assert not [p for p in validate_manifest(doc) if "temperature" in p]


# -- the command and the page --------------------------------------------------------------------

e2e_models = e2e_support.e2e_models  # the tiny exported ensemble the browser tests share


@pytest.fixture(scope="module")
def calibrated(e2e_models, tmp_path_factory):
    """A copy of the e2e fixture's models folder, calibrated by the real command on a synthetic
    FER2013 CSV; returns (models dir, data args, output)."""
    from training.cli import app

    root = tmp_path_factory.mktemp("calibrated")
    models = root / "models"
    shutil.copytree(e2e_models, models)
    csv = root / "fer2013.csv"
    write_synthetic_csv(csv, n_train=70, n_val=420, n_test=420)
    card = root / "README.md"
    card.write_text("# card\n")
    data = ["--fer2013", str(csv), "--data-dir", str(root)]
    result = CliRunner().invoke(app, ["calibrate", str(models), "--model-card", str(card), *data],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return models, data, result.output, card


@pytest.mark.slow
def test_calibrate_writes_the_temperature_reports_and_the_card(calibrated):
    models, _, output, card = calibrated
    report = json.loads((models / "calibration" / "calibration.json").read_text())
    t = report["temperature"]
    assert read_manifest_json(models)["ensemble"]["temperature"] == pytest.approx(t, abs=1e-4)
    assert report["fitted_on"] == "val" and report["held_out"] == "test"
    held = report["test"]
    assert held["before"]["n"] == 420 and held["before"]["accuracy"] == held["after"]["accuracy"]
    # fitted on PublicTest, the NLL there cannot be worse than the vote's own
    assert report["val"]["after"]["nll"] <= report["val"]["before"]["nll"] + 1e-9
    assert (models / "calibration" / "reliability.png").stat().st_size > 5000
    text = card.read_text()
    assert "<!-- calibration:begin -->" in text and f"T = **{t:.3f}**" in text
    assert "Reproduce: `fer-hybrid calibrate" in text
    assert f"temperature {t:.3f}" in output and "ECE" in output


@pytest.mark.slow
def test_calibrate_refuses_bad_input_in_one_line(calibrated, tmp_path):
    from training.cli import app
    from training.core.errors import FerError

    models, data, _, _ = calibrated
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(models), "--bins", "1", *data])
    assert isinstance(result.exception, FerError) and "--bins" in str(result.exception)
    result = runner.invoke(app, ["calibrate", str(tmp_path), *data])
    assert isinstance(result.exception, FerError) and "neither a run folder" in str(result.exception)


PAGE_JS = """async ({url, crops}) => {
    const { Ensemble } = await import('/static/js/classifier.js');
    const e = await Ensemble.load(url);
    const out = await e.classify(crops.map((c) => Float32Array.from(c)));
    const t = e.temperature;
    e.dispose();
    return { t, out: out.map((p) => Array.from(p)) };
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_applies_the_manifests_temperature_as_python_does(calibrated, tmp_path):
    from training.evaluate.scorer import resolve_source
    from training.robustness.robustness import page_classifier

    models, _, _, _ = calibrated
    t = read_manifest_json(models)["ensemble"]["temperature"]
    assert abs(t - 1) > 0.02  # otherwise this test could not tell
    crops = np.random.default_rng(3).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    got = e2e_support.evaluate_in_page(models, tmp_path, PAGE_JS, {
        "url": "/models/manifest.json", "crops": crops.reshape(5, -1).tolist()})
    assert got["t"] == pytest.approx(t)
    page = np.asarray(got["out"])
    source = resolve_source(models)
    python = page_classifier(source, tta=source.default_tta)(crops)
    raw = page_classifier(source, tta=source.default_tta, temperature=1.0)(crops)
    np.testing.assert_allclose(page, python, atol=2e-3)
    assert np.abs(page - raw).max() > 5e-3  # the temperature visibly changed the numbers


def test_the_strict_ferplus_majority_breaks_ties_by_the_first_column():
    from contract import LABELS
    from training.data.ferplus import FerPlusVotes, strict_majority

    # FER+ columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    votes = np.array([
        [0, 6, 4, 0, 0, 0, 0, 0, 0, 0],  # happiness
        [0, 0, 5, 5, 0, 0, 0, 0, 0, 0],  # surprise / sadness tie: surprise comes first
        [0, 0, 0, 0, 0, 0, 4, 4, 2, 0],  # fear / contempt tie: fear comes first
        [0, 0, 0, 0, 0, 0, 0, 5, 5, 0],  # contempt first: not one of ours, left out
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
        [0] * 10,  # no votes
    ], dtype=np.uint8)
    y, rows = strict_majority(FerPlusVotes(votes, np.zeros(len(votes), np.uint8)))
    assert rows.tolist() == [True, True, True, False, False, False]
    assert [LABELS[i] for i in y[rows]] == ["happy", "surprise", "fear"]
