"""`fer-hybrid robustness`: the benchmark library on a fake classifier, the command end to end
on tiny models (a run folder and an exported models/ folder) over synthetic data, its errors,
the model card section, and a small real-data run of the shipped models."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, main_in_process, synthetic_faces
from typer.testing import CliRunner

from training.core.errors import FerError
from training.core.report import read_marked_section, write_marked_section
from training.evaluate.scorer import resolve_source
from training.robustness.lowlight import normalize_batch
from training.robustness.perturb import CONDITIONS, perturb
from training.robustness.robustness import (
    GOALS,
    judge_goals,
    measure,
    parse_conditions,
    plan_robustness,
)

runner = CliRunner()


# --------------------------------------------------------------------------- library


def test_parse_conditions():
    assert parse_conditions(None) == list(CONDITIONS)
    assert parse_conditions("roll, occlusion") == ["roll", "occlusion_eyes", "occlusion_lower",
                                                  "occlusion_hand"]
    assert parse_conditions("clean,jpeg,jpeg") == ["jpeg"]
    with pytest.raises(FerError, match="unknown condition 'fog'"):
        parse_conditions("jpeg,fog")
    with pytest.raises(FerError, match="names no condition"):
        parse_conditions("clean")


def test_goals_are_judged_on_the_page_mode():
    def row(cond, sev, page, raw):
        return {"condition": cond, "severity": sev, "drop_points": {"normalised": page, "raw": raw},
                "drop_ci95_points": {"normalised": 1.0, "raw": 1.0}}

    goals = {g["condition"]: g for g in judge_goals([row("low_light", 2, 2.9, 50.0),
                                                      row("night", 2, 6.1, 0.0),
                                                      row("roll", 1, 0.0, 0.0)])}
    assert goals["low_light"]["met"] is True and goals["night"]["met"] is False
    assert goals["roll"]["met"] is None and goals["roll"]["drop_points"] is None  # moderate not run
    assert len(judge_goals([])) == len(GOALS)


class Brightness:
    """A fake classifier: class = mean grey level // 37 (so darkening changes the answer);
    counts the crops it sees."""

    def __init__(self):
        self.seen = 0

    def __call__(self, x):
        self.seen += len(x)
        cls = np.minimum(6, np.asarray(x, float).mean(axis=(1, 2)) // 37).astype(int)
        return np.eye(7)[cls]


def test_measure_on_a_fake_classifier(tmp_path):
    x, _ = synthetic_faces(60, seed=4)
    offsets = np.linspace(0, 180, len(x)).astype(int)[:, None, None]  # every brightness class
    x = np.clip(x.astype(int) + offsets, 0, 255).astype(np.uint8)
    y = Brightness()(x).argmax(1)  # the clean crops are all right
    plan = plan_robustness(resolve_source(_keras_file(tmp_path)), tta=None,
                           conditions="low_light,jpeg", split="test", out_dir=None, seed=0,
                           sample=None, model_card=None, command="fer-hybrid robustness x")
    fake = Brightness()
    result = measure(plan, fake, x, y, progress=False)
    rows = {(r["condition"], r["severity"]): r for r in result["results"]}
    assert [k for k in rows][:2] == [("clean", 0), ("low_light", 1)] and len(rows) == 7
    clean = rows[("clean", 0)]
    assert clean["accuracy"]["raw"] == 1.0 and clean["drop_points"]["raw"] == 0.0
    changed = 0
    for (name, sev), row in rows.items():
        crops = perturb(x, name, sev, 0)
        norm, branch = normalize_batch(crops)
        raw = float((Brightness()(crops).argmax(1) == y).mean())
        page = float((Brightness()(norm).argmax(1) == y).mean())
        page_clean = clean["accuracy"]["normalised"]
        assert row["accuracy"] == pytest.approx({"raw": raw, "normalised": page}), (name, sev)
        assert row["drop_points"]["raw"] == pytest.approx(100 * (1 - raw))
        assert row["drop_points"]["normalised"] == pytest.approx(100 * (page_clean - page))
        assert row["lowlight_branches"] == {b: int((branch == b).sum())
                                            for b in ("equalize", "stretch", "none")}
        changed += int(np.any((norm != crops).reshape(len(x), -1), 1).sum())
    # the page's equalisation brightens dark crops: the two modes really differ there
    severe = rows[("low_light", 3)]
    assert severe["lowlight_branches"]["equalize"] > 0
    assert severe["accuracy"]["raw"] != severe["accuracy"]["normalised"]
    # the paired interval: zero when every image moved the same way, else positive
    mixed = [r for r in rows.values() if 0 < r["accuracy"]["raw"] < 1]
    assert mixed and all(r["drop_ci95_points"]["raw"] > 0 for r in mixed)
    assert all(r["drop_ci95_points"]["raw"] == 0 for r in rows.values() if r not in mixed)
    # a second pass through the models only for the crops the normalisation changed
    assert fake.seen == len(rows) * len(x) + changed
    assert result["goals"][0]["condition"] == "low_light" and result["goals"][0]["met"] is False
    assert result["conditions"]["jpeg"]["levels"]["2"] == {"quality": 25}


def test_marked_section(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Card\n\nintro\n")
    write_marked_section(card, "robustness", "## R\n\none")
    assert card.read_text() == ("# Card\n\nintro\n\n<!-- robustness:begin -->\n## R\n\none\n"
                                "<!-- robustness:end -->\n")
    card.write_text(card.read_text() + "\n## After\n")
    write_marked_section(card, "robustness", "two")
    assert card.read_text() == ("# Card\n\nintro\n\n<!-- robustness:begin -->\ntwo\n"
                                "<!-- robustness:end -->\n\n## After\n")
    assert read_marked_section(card, "robustness") == "two"
    card.write_text("<!-- robustness:end --> <!-- robustness:begin -->")
    with pytest.raises(FerError, match="once each, in that order"):
        write_marked_section(card, "robustness", "x")


# --------------------------------------------------------------------------- the command


def _keras_file(tmp_path: Path) -> Path:
    """Looks like a .keras file (a zip of config.json and weights) to the cheap checks; never
    loaded."""
    path = tmp_path / "fake.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for entry in ("config.json", "model.weights.h5"):
            archive.writestr(entry, "{}")
    return path


def tiny_model(seed: int = 0):
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((48, 48, 1))
    h = layers.Rescaling(1 / 255.0)(inp)
    h = layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = layers.MaxPooling2D(4)(h)
    h = layers.Flatten()(h)
    out = layers.Dense(7, activation="softmax")(h)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A data dir (FER2013 CSV with 70 PrivateTest images), a run folder with a tiny trained
    model, and that model exported as a models/ folder measured on the same images."""
    from training.data.evaluation import EvalData
    from training.export.export import export_ensemble

    root = tmp_path_factory.mktemp("robustness")
    x_train, y_train = synthetic_faces(700, seed=1)
    x_test, y_test = synthetic_faces(70, seed=2)
    model = tiny_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train[..., None].astype("float32"), y_train, epochs=3, batch_size=64, verbose=0)
    run = root / "runs" / "tiny"
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    data = root / "data"
    data.mkdir()
    rows = ["emotion,pixels,Usage"] + [
        f"{lab},{' '.join(map(str, im.ravel().tolist()))},{usage}"
        for xs, ys, usage in ((x_train[:14], y_train[:14], "Training"),
                              (x_train[14:21], y_train[14:21], "PublicTest"),
                              (x_test, y_test, "PrivateTest"))
        for im, lab in zip(xs, ys)]
    (data / "fer2013.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    models = root / "models"
    export_ensemble([run], models, quantization="uint8",
                    eval_split=EvalData("test", x_test, y_test))
    (models / "README.md").write_text("# Model card\n\nHand-written text.\n")
    return {"root": root, "run": run, "data": data, "models": models, "x": x_test, "y": y_test}


@pytest.fixture()
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))


def _invoke(args):
    from training.cli import app

    result = runner.invoke(app, ["robustness", *map(str, args)])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_command_on_a_run_folder(world, _cache, tmp_path):
    out = tmp_path / "out"
    args = [world["run"], "--data-dir", world["data"], "--conditions", "low_light,roll,scale",
            "--out", out, "--seed", 3]
    result = _invoke(args)
    assert "clean accuracy" in result.output and "goal ±20° roll" in result.output
    report = json.loads((out / "robustness.json").read_text())
    assert report["schema"] == "fer-hybrid/robustness@1" and report["n"] == 70
    assert report["target"]["kind"] == "run" and report["target"]["tta_flip"] is True
    assert report["command"] == (f"fer-hybrid robustness {world['run']} --conditions "
                                 f"low_light,roll,scale --seed 3 --data-dir {world['data']} "
                                 f"--out {out}")
    assert [r["condition"] for r in report["results"]] == ["clean"] + ["low_light"] * 3 + [
        "roll"] * 3 + ["scale"] * 3
    # the clean, raw number is `evaluate`'s flip-TTA accuracy of the same model on the same crops
    from training.core.runs import resolve_target
    from training.evaluate.evaluate import evaluate_target

    scored = evaluate_target(resolve_target(world["run"]), "test", tta=True,
                             out_dir=tmp_path / "eval",
                             data_loader=lambda split: (world["x"], world["y"]))
    assert report["results"][0]["accuracy"]["raw"] == pytest.approx(scored["accuracy_tta"])
    goals = {g["condition"]: g for g in report["goals"]}
    assert goals["night"]["met"] is None and goals["roll"]["met"] in (True, False)
    md = (out / "robustness.md").read_text()
    assert "| `roll` | moderate |" in md and "gain 0.45, gamma 1.4, noise_sigma 4" in md
    assert (out / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # seeded: the same command gives the same numbers
    _invoke(args)
    again = json.loads((out / "robustness.json").read_text())
    assert again["results"] == report["results"]


@pytest.mark.slow
def test_command_on_a_models_folder_with_the_model_card(world, _cache):
    models = world["models"]
    card = models / "README.md"
    before = card.read_text()
    _invoke([models, "--data-dir", world["data"], "--conditions", "occlusion_eyes,night_mask",
             "--model-card", card])
    report = json.loads((models / "robustness" / "robustness.json").read_text())
    assert report["target"]["kind"] == "models"
    assert report["target"]["members"][0]["name"] == "tiny"
    # the manifest ensemble as the page runs it == what export measured for the quantised model
    manifest = json.loads((models / "manifest.json").read_text())
    clean = report["results"][0]["accuracy"]["raw"]
    assert clean == pytest.approx(manifest["metrics"]["accuracy_quantized_tta"])
    text = card.read_text()
    assert text.startswith(before.rstrip("\n"))
    section = read_marked_section(card, "robustness")
    assert "## Robustness" in section and "| eyes occluded |" in section
    assert "`robustness/robustness.md`" in section
    assert f"fer-hybrid robustness {models} --conditions occlusion_eyes,night_mask" in section
    # a second run replaces the section instead of appending another
    _invoke([models, "--data-dir", world["data"], "--conditions", "jpeg", "--model-card", card,
             "--no-tta"])
    assert card.read_text().count("<!-- robustness:begin -->") == 1
    assert "--conditions jpeg --no-tta" in read_marked_section(card, "robustness")
    report = json.loads((models / "robustness" / "robustness.json").read_text())
    assert report["target"]["tta_flip"] is False


def test_bad_inputs_are_one_error_line(tmp_path, monkeypatch, capsys):
    # training.cli.main in-process: the same error lines without a fresh interpreter
    # importing TensorFlow for each case
    cases = [
        ((tmp_path / "missing",), "missing does not exist"),
        ((_keras_file(tmp_path), "--conditions", "fog"), "unknown condition 'fog'"),
        ((_keras_file(tmp_path), "--split", "nonsense"), "unknown split 'nonsense'"),
    ]
    broken = tmp_path / "card.md"
    broken.write_text("<!-- robustness:begin -->\nno end marker\n")
    cases.append(((_keras_file(tmp_path), "--model-card", broken), "once each"))
    (tmp_path / "a-file").write_text("")
    cases.append(((_keras_file(tmp_path), "--out", tmp_path / "a-file"),
                  "exists and is not a folder"))
    bad_manifest = tmp_path / "models"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text('{"schema": "fer-hybrid/manifest@1"}')
    cases.append(((bad_manifest,), "invalid manifest"))
    for args, message in cases:
        code, err = main_in_process(["robustness", *args, "--data-dir", tmp_path / "no-data"],
                                    monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (args, err)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            args, err)
    # a good target with no data fails on the data, before any model loads (the last line:
    # importing TensorFlow first may log CUDA probing on a machine with CUDA libraries)
    code, err = main_in_process(["robustness", _keras_file(tmp_path), "--data-dir",
                                 tmp_path / "no-data"], monkeypatch, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: no FER2013 data in"), err
    assert "Traceback" not in err


def test_base_install_gets_the_install_hint_before_the_data(tmp_path):
    """Without the training stack (a server-only install) the hint comes before the dataset
    would load: here there is no dataset at all, and the hint still wins."""
    block = ("import sys\n"
             "for m in ('keras', 'tensorflow', 'tqdm', 'matplotlib', 'tensorflowjs'):\n"
             "    sys.modules[m] = None\n"
             "from training.cli import main\n"
             "main()\n")
    proc = subprocess.run([sys.executable, "-c", block, "robustness", str(_keras_file(tmp_path)),
                           "--data-dir", str(tmp_path / "no-data")], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "pip install 'fer-hybrid[train]'" in proc.stderr


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.realdata
def test_shipped_models_on_real_crops(shared_data, tmp_path):
    """The shipped models on 140 real PrivateTest crops: clean accuracy far above chance, and
    the harshest corruptions cost accuracy."""
    out = tmp_path / "out"
    _invoke([REPO_ROOT / "models", "--data-dir", shared_data, "--sample", 140,
             "--conditions", "night,occlusion_lower", "--out", out])
    report = json.loads((out / "robustness.json").read_text())
    assert report["n"] == 140 and report["sample"] == 140
    rows = {(r["condition"], r["severity"]): r for r in report["results"]}
    assert rows[("clean", 0)]["accuracy"]["normalised"] > 0.45
    assert rows[("night", 3)]["drop_points"]["raw"] > 10
    assert rows[("occlusion_lower", 3)]["drop_points"]["normalised"] > 10
