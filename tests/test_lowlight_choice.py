"""The page's low-light threshold per models folder: the manifest field, its choice on PublicTest
(`fer-hybrid calibrate --lowlight choose`), and the page and the Python port both obeying it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import e2e_support
import numpy as np
import pytest
from test_pipeline_chain import write_synthetic_csv
from typer.testing import CliRunner

from contract.manifest import (
    equalize_below,
    manifest_from_dict,
    read_manifest_json,
    validate_manifest,
)
from training.robustness import lowlight_choice
from training.robustness.lowlight import DARK_MEAN, normalize_batch, page_rule

e2e_models = e2e_support.e2e_models  # session fixture
REPO = Path(__file__).resolve().parents[1]


def _mean_classifier(x: np.ndarray) -> np.ndarray:
    """A stand-in model: class 0 for crops brighter than mean 90, class 1 for darker ones."""
    bright = x.reshape(len(x), -1).mean(axis=1) >= 90
    return np.stack([bright, ~bright] + [np.zeros(len(x), bool)] * 5, axis=1).astype("float64")


def test_the_shortcut_scores_every_threshold_as_equalising_then_classifying_would():
    # One pass for the crops as they are and one for the darkest ones must give, for every
    # threshold, exactly what normalising the whole set with that threshold and classifying gives.
    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(110, 45, (300, 48, 48)), 0, 255).astype("uint8")
    y = np.zeros(300, dtype=int)
    table = lowlight_choice.score_thresholds(_mean_classifier, x, y)
    from training.robustness.perturb import perturb

    for name, severity in (("clean", 0), *lowlight_choice.DARK_CONDITIONS):
        crops = x if severity == 0 else perturb(x, name, severity, 0)
        key = name if severity == 0 else f"{name}{severity}"
        for t in lowlight_choice.CANDIDATES:
            seen = normalize_batch(crops, dark_mean=t, min_range=0)[0]
            want = float((_mean_classifier(seen).argmax(1) == y).mean())
            assert table[t][key] == pytest.approx(want, abs=1e-12), (key, t)
    # this stand-in only recognises bright crops, so equalising dark ones helps it in the dark
    assert table[70]["night2"] > table[0]["night2"]
    assert lowlight_choice.choose(table) == 70


def test_the_choice_keeps_clean_accuracy_first_then_the_dark_then_the_lower_threshold():
    row = lambda clean, dark: {"clean": clean, "low_light1": dark, "night1": dark}
    # 70 is best in the dark but costs 0.3 point on clean crops: not eligible
    assert lowlight_choice.choose({0: row(0.70, 0.50), 40: row(0.6995, 0.55),
                                   70: row(0.697, 0.60)}) == 40
    # equal everywhere: the lower threshold (fewer crops touched)
    assert lowlight_choice.choose({0: row(0.7, 0.5), 40: row(0.7, 0.5)}) == 0
    # never equalising is best in the dark (an ensemble trained on dark images)
    assert lowlight_choice.choose({0: row(0.688, 0.60), 20: row(0.688, 0.58),
                                   40: row(0.688, 0.55)}) == 0


def test_the_manifest_field_is_optional_checked_and_read_alike_by_both_wings(e2e_models):
    doc = read_manifest_json(e2e_models)
    assert "equalize_below" not in doc["ensemble"]
    assert equalize_below(doc["ensemble"]) == 40 == DARK_MEAN  # manifests from before the field
    assert page_rule(manifest_from_dict(doc)) == {"dark_mean": 40, "min_range": 0}
    assert page_rule(None)["dark_mean"] == DARK_MEAN  # a run folder: the default rule
    for good in (0, 25, 40.5, 256):
        doc["ensemble"]["equalize_below"] = good
        assert validate_manifest(doc, e2e_models) == []
        assert page_rule(manifest_from_dict(doc))["dark_mean"] == good
    for bad in (-1, 257, "40", None, True, float("nan")):
        doc["ensemble"]["equalize_below"] = bad
        problems = validate_manifest(doc, e2e_models)
        assert len(problems) == 1 and problems[0].startswith("ensemble.equalize_below"), bad


@pytest.fixture(scope="module")
def chosen(e2e_models, tmp_path_factory):
    """A copy of the e2e models folder after `calibrate --lowlight choose` on a synthetic CSV."""
    from training.cli import app

    root = tmp_path_factory.mktemp("lowlight")
    models = root / "models"
    shutil.copytree(e2e_models, models)
    csv = root / "fer2013.csv"
    write_synthetic_csv(csv, n_train=70, n_val=210, n_test=210)
    card = root / "README.md"
    card.write_text("# card\n")
    data = ["--fer2013", str(csv), "--data-dir", str(root)]
    result = CliRunner().invoke(app, ["calibrate", str(models), "--lowlight", "choose",
                                      "--model-card", str(card), *data], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return models, data, result.output, card


@pytest.mark.slow
def test_calibrate_chooses_the_threshold_on_publictest_and_writes_it(chosen):
    models, _, output, card = chosen
    report = json.loads((models / "calibration" / "lowlight.json").read_text())
    t = report["equalize_below"]
    assert t in lowlight_choice.CANDIDATES
    table = {int(k): v for k, v in report["table"].items()}
    assert set(table) == set(lowlight_choice.CANDIDATES)
    assert lowlight_choice.choose(table) == t  # the written choice is the table's
    assert report["split_name"] == "PublicTest" and report["n"] == 210
    manifest = read_manifest_json(models)
    assert manifest["ensemble"]["equalize_below"] == t
    calibration = json.loads((models / "calibration" / "calibration.json").read_text())
    assert calibration["equalize_below"] == t  # the temperature was fitted under that rule
    assert "--lowlight choose" in calibration["command"]
    text = card.read_text()
    assert "Low-light threshold chosen on PublicTest" in text and f"**{t}**" in text
    assert f"low-light threshold {t}" in output


@pytest.mark.slow
def test_calibrate_refuses_a_bad_lowlight_option_in_one_line(chosen, tmp_path):
    from training.cli import app
    from training.core.errors import FerError

    models, data, _, _ = chosen
    runner = CliRunner()
    result = runner.invoke(app, ["calibrate", str(models), "--lowlight", "auto", *data])
    assert isinstance(result.exception, FerError) and "--lowlight must be keep or choose" in str(
        result.exception)
    keras_file = next(REPO.glob("training/checkpoints/*/best.keras"))
    result = runner.invoke(app, ["calibrate", str(keras_file), "--lowlight", "choose", *data])
    assert isinstance(result.exception, FerError) and "needs a models folder" in str(
        result.exception)


PAGE_JS = """async (urls) => {
  const { Ensemble } = await import('/static/js/classifier.js');
  const { faceCrop } = await import('/static/js/pipeline.js');
  const c = document.createElement('canvas');
  c.width = c.height = 96;
  const g = c.getContext('2d');
  g.fillStyle = 'rgb(14,14,14)'; g.fillRect(0, 0, 96, 96);
  g.fillStyle = 'rgb(34,34,34)'; g.fillRect(30, 34, 36, 30);  // a dim face: mean well under 40
  const det = { box: { x: 16, y: 16, w: 64, h: 64 }, score: 0.9,
                keypoints: [[36, 40], [60, 40], [48, 52], [48, 64], [20, 44], [76, 44]] };
  const { WorkerClassifier } = await import('/static/js/workermodels.js');
  const { tfjsFolder } = await import('/static/js/env.js');
  const out = { none: faceCrop(c, det, 48, null, null).lowlight };
  for (const [name, url] of Object.entries(urls)) {
    const e = await Ensemble.load(url);
    // the live view's classifier runs in a worker: its threshold must reach the page's crops too
    const w = await WorkerClassifier.start({ files: await Ensemble.download(url), tfjs: tfjsFolder() });
    out[name] = { threshold: e.equalizeBelow, branch: faceCrop(c, det, 48, null, e).lowlight,
                  worker: [w.equalizeBelow, faceCrop(c, det, 48, null, w).lowlight] };
    e.dispose();
    w.terminate();
  }
  return out;
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_the_page_equalises_a_dark_face_only_below_its_models_threshold(e2e_models, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(e2e_models, models)
    never = models / "never"
    never.mkdir()
    doc = read_manifest_json(models)
    for m in doc["members"]:
        shutil.copytree(models / m["path"].split("/")[0], never / m["path"].split("/")[0])
    doc["ensemble"]["equalize_below"] = 0
    (never / "manifest.json").write_text(json.dumps(doc))
    top = read_manifest_json(models)  # the server serves the variants its manifest lists
    top["variants"] = [{"id": "default", "title": "default", "manifest": "manifest.json",
                        "default": True},
                       {"id": "never", "title": "never", "manifest": "never/manifest.json"}]
    (models / "manifest.json").write_text(json.dumps(top))
    got = e2e_support.evaluate_in_page(models, tmp_path, PAGE_JS, {
        "default": "/models/manifest.json", "never": "/models/never/manifest.json"})
    assert got["none"] == "equalize"  # no models given: lowlight.js's default rule
    assert got["default"] == {"threshold": 40, "branch": "equalize", "worker": [40, "equalize"]}
    assert got["never"] == {"threshold": 0, "branch": "none", "worker": [0, "none"]}
