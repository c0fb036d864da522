"""Export: Keras -> quantised TF.js graph models + manifest, measured in Python.

The quantised graphs are run with TensorFlow from their dequantised weights
(`training.export.tfjs.load_tfjs_graph_model`); test_export_browser.py checks the
same files in headless Chromium with the vendored tfjs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import synthetic_faces

from contract.manifest import read_manifest, validate_manifest
from training.core.errors import FerError

pytestmark = pytest.mark.slow

# Quantised ensemble accuracy must stay within this of the float ensemble (1 percentage point).
ACCURACY_TOLERANCE = 0.01


def tiny_model(seed: int = 0):
    """A small CNN obeying the model contract: float32 (N,48,48,1) 0..255 in, softmax(7) out."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((48, 48, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.1)(x)
    out = layers.Dense(7, activation="softmax")(x)
    return keras.Model(inp, out, name=f"tiny_{seed}")


def train_tiny(x, y, seed: int, epochs: int = 4):
    model = tiny_model(seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[..., None].astype("float32"), y, epochs=epochs, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny models trained on synthetic faces, one saved as a run folder, one as a .keras file."""
    root = tmp_path_factory.mktemp("trained")
    x, y = synthetic_faces(1600, seed=1)
    # Hard evaluation sample: each image blends two synthetic faces (55/45, label of the first),
    # so ~30% are misclassified and many decisions sit near a boundary where quantisation bites.
    xa, y_test = synthetic_faces(400, seed=2)
    xb, _ = synthetic_faces(400, seed=5)
    x_test = np.clip(0.55 * xa.astype("float32") + 0.45 * xb, 0, 255).astype("uint8")
    a, b = train_tiny(x, y, seed=0), train_tiny(x, y, seed=1)
    run = root / "runs" / "tiny_a-1"
    (run / "predictions").mkdir(parents=True)
    a.save(run / "best.keras")
    (run / "metrics.json").write_text(
        json.dumps({"model": "tiny_cnn", "params": a.count_params(), "best_epoch": 4, "val_accuracy": 0.9,
                    "epochs_run": 4, "train_seconds": 1.0, "backend": "tensorflow"})
    )
    inputs = x_test[..., None].astype("float32")
    np.savez(run / "predictions" / "test.npz", probs=a.predict(inputs, verbose=0),
             probs_flip=a.predict(inputs[:, :, ::-1], verbose=0), y=y_test)
    b_path = root / "tiny_b.keras"
    b.save(b_path)
    return {"run": run, "keras": b_path, "models": (a, b), "x_test": x_test, "y_test": y_test}


def test_quantised_ensemble_accuracy_within_tolerance(trained, tmp_path):
    """Synthetic learnable data: uint8 ensemble within 1 point of the float ensemble."""
    from training.data.evaluation import EvalData
    from training.export.export import export_ensemble

    out = tmp_path / "models"
    manifest_path = export_ensemble(
        [trained["run"], trained["keras"]], out, quantization="uint8", weights=[1.0, 2.0],
        eval_split=EvalData("sample", trained["x_test"], trained["y_test"]),
        notes="tiny test models", placeholder=True,
    )
    doc = json.loads(manifest_path.read_text())
    assert validate_manifest(doc, out) == []
    met = doc["metrics"]
    print("\nsynthetic ensemble metrics:", json.dumps(met))
    assert met["split"] == "sample" and met["n"] == 400
    assert 0.5 < met["accuracy_float"] < 0.95, "should have learned, but the sample is meant to be hard"
    assert abs(met["accuracy_quantized"] - met["accuracy_float"]) <= ACCURACY_TOLERANCE
    assert abs(met["accuracy_quantized_tta"] - met["accuracy_float_tta"]) <= ACCURACY_TOLERANCE
    assert met["top1_agreement_tta"] >= 0.97

    a, b = doc["members"]
    assert (a["name"], a["architecture"], a["weight"]) == ("tiny_a-1", "tiny_cnn", 1.0)
    assert (b["name"], b["weight"]) == ("tiny_b", 2.0)
    assert a["metrics"]["val_accuracy"] == 0.9  # carried over from metrics.json
    for m in doc["members"]:
        assert m["quantization"] == "uint8" and m["format"] == "tfjs_graph_model"
        assert m["params"] == trained["models"][0].count_params()
        for key in ("sample_accuracy", "sample_accuracy_tta", "sample_accuracy_float",
                    "sample_accuracy_float_tta"):
            assert 0 <= m["metrics"][key] <= 1
        assert abs(m["metrics"]["sample_accuracy"] - m["metrics"]["sample_accuracy_float"]) <= 0.02
        folder = out / Path(m["path"]).parent
        assert m["bytes"] == sum(p.stat().st_size for p in folder.iterdir())
        assert not Path(m["path"]).is_absolute()
    assert doc["placeholder"] is True and doc["notes"] == "tiny test models"
    assert read_manifest(out).members[1].name == "tiny_b"


@pytest.mark.parametrize(
    "quantization, max_abs, min_agree",
    [("none", 1e-5, 1.0), ("float16", 5e-3, 0.99), ("uint8", 5e-2, 0.95)],
)
def test_graph_model_matches_keras(trained, tmp_path, quantization, max_abs, min_agree):
    """Each quantisation, run from the dequantised TF.js weights, against Keras; logs sizes/times."""
    from training.export.tfjs import convert_keras_to_tfjs, load_tfjs_graph_model

    model = trained["models"][0]
    info = convert_keras_to_tfjs(model, tmp_path / "m", quantization)
    x = trained["x_test"][..., None].astype("float32")
    ref = model.predict(x, verbose=0)
    got = load_tfjs_graph_model(tmp_path / "m")(x)
    diff = float(np.abs(got - ref).max())
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    weights_bytes = sum(p.stat().st_size for p in (tmp_path / "m").glob("*.bin"))
    print(f"\n{quantization}: params={info['params']} total_bytes={info['bytes']} "
          f"weights_bytes={weights_bytes} convert_s={info['seconds']:.2f} max_abs={diff:.2e} agree={agree:.4f}")
    assert diff <= max_abs and agree >= min_agree
    expected_per_param = {"none": 4, "float16": 2, "uint8": 1}[quantization]
    assert weights_bytes <= expected_per_param * info["params"] + 512


def test_run_folder_without_eval_uses_saved_predictions(trained, tmp_path):
    from training.export.export import export_ensemble

    doc = json.loads(export_ensemble([trained["run"]], tmp_path / "m", quantization="float16").read_text())
    met = doc["metrics"]
    assert met["split"] == "PrivateTest" and met["n"] == 400
    assert "accuracy_quantized" not in met and met["accuracy_float"] > 0.5
    assert doc["members"][0]["quantization"] == "float16"
    assert doc["placeholder"] is False and "tiny_cnn" in doc["notes"]


def test_atomic_replace_keeps_model_card_and_survives_failures(trained, tmp_path, monkeypatch):
    import training.export.export as ex

    out = tmp_path / "models"
    (out / "old_member").mkdir(parents=True)
    (out / "old_member" / "model.json").write_text("{}")
    (out / "manifest.json").write_text('{"old": true}')
    (out / "README.md").write_text("# model card\n")
    # reports other commands keep beside the models (fer-hybrid bench, robustness): not models
    (out / "bench").mkdir()
    (out / "bench" / "bench.json").write_text("{}")
    (out / "robustness" / "plots").mkdir(parents=True)

    real = ex.convert_keras_to_tfjs
    calls = []

    def flaky(model, dest, quantization="uint8"):
        calls.append(dest)
        if len(calls) == 2:
            raise RuntimeError("converter crashed")
        return real(model, dest, quantization)

    monkeypatch.setattr(ex, "convert_keras_to_tfjs", flaky)
    with pytest.raises(RuntimeError, match="crashed"):
        ex.export_ensemble([trained["run"], trained["keras"]], out)
    # The old folder is untouched and no temporary folder is left behind.
    assert (out / "manifest.json").read_text() == '{"old": true}'
    assert (out / "old_member" / "model.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]

    monkeypatch.setattr(ex, "convert_keras_to_tfjs", real)
    ex.export_ensemble([trained["keras"]], out, quantization="uint8")
    assert (out / "README.md").read_text() == "# model card\n"
    assert not (out / "old_member").exists()
    assert (out / "bench" / "bench.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "bench", "manifest.json",
                                                     "robustness", "tiny_b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert oct((out / "manifest.json").stat().st_mode & 0o777) == oct(0o644)


def test_variant_is_registered_and_survives_a_default_reexport(trained, tmp_path):
    """--variant: a second model in models/<id>/ listed in the top manifest's variants; the
    default's re-export keeps both the list and the folder (issue 17, item 5)."""
    import typer
    from typer.testing import CliRunner

    from contract.manifest import Variant
    from training.commands.export import export
    from training.export.export import DEFAULT_VARIANT, export_ensemble, register_variant

    out = tmp_path / "models"
    with pytest.raises(FerError, match="default model first"):
        export_ensemble([trained["run"]], out, variant="ferplus")
    export_ensemble([trained["keras"]], out, quantization="uint8")  # the default: tiny_b
    (out / "README.md").write_text("# model card\n")
    # Refused before anything slow runs.
    for kwargs, message in [({"variant": "fer2013"}, "default model"),
                            ({"variant": "Fer Plus"}, "--variant"),
                            ({"variant": "tiny_b"}, "member"),
                            ({"title": "x"}, "add --variant")]:
        with pytest.raises(FerError, match=message):
            export_ensemble([trained["run"]], out, **kwargs)

    app = typer.Typer()
    app.command("export")(export)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, [
        "export", str(trained["run"]), "--out", str(out), "--eval", "none", "--variant", "ferplus",
        "--title", "People's votes (FER+)", "--description", "Ten annotators per face."])
    assert result.exit_code == 0, result.output
    assert "registered variant 'ferplus'" in result.output and "fer2013 (default)" in result.output
    top = json.loads((out / "manifest.json").read_text())
    default = {"id": "fer2013", "title": DEFAULT_VARIANT.title,
               "description": DEFAULT_VARIANT.description, "manifest": "manifest.json",
               "default": True}
    assert top["variants"] == [default, {
        "id": "ferplus", "title": "People's votes (FER+)", "description": "Ten annotators per face.",
        "manifest": "ferplus/manifest.json", "default": False}]
    assert [m["name"] for m in top["members"]] == ["tiny_b"]
    assert validate_manifest(top, out) == []
    assert read_manifest(out / "ferplus").members[0].name == "tiny_a-1"
    assert sorted(p.name for p in (out / "ferplus").iterdir()) == ["manifest.json", "tiny_a-1"]
    assert "variants" not in json.loads((out / "ferplus" / "manifest.json").read_text())
    help_text = CliRunner().invoke(app, ["export", "--help"]).output
    assert "--variant" in help_text and "--title" in help_text and "--description" in help_text

    # Registering again replaces the entry with that id (what a re-export of the variant does).
    register_variant(out, Variant("ferplus", "FER+", "ferplus/manifest.json", "votes"))
    assert [(v["id"], v["title"]) for v in json.loads((out / "manifest.json").read_text())[
        "variants"]] == [("fer2013", DEFAULT_VARIANT.title), ("ferplus", "FER+")]

    # Re-exporting the default model keeps the variant's folder and entry.
    variant_manifest = (out / "ferplus" / "manifest.json").read_bytes()
    export_ensemble([trained["run"]], out, names=["again"])
    top = json.loads((out / "manifest.json").read_text())
    assert [m["name"] for m in top["members"]] == ["again"]
    assert [v["id"] for v in top["variants"]] == ["fer2013", "ferplus"]
    assert (out / "ferplus" / "manifest.json").read_bytes() == variant_manifest
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "again", "ferplus",
                                                     "manifest.json"]
    assert validate_manifest(top, out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no temporary folders


def test_user_errors_are_fer_errors(trained, tmp_path):
    from training.data.evaluation import EvalData
    from training.export.export import export_ensemble

    with pytest.raises(FerError, match="does not exist"):
        export_ensemble([tmp_path / "runs" / "missing"], tmp_path / "out")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FerError, match="best.keras"):
        export_ensemble([tmp_path / "empty_run"], tmp_path / "out")
    with pytest.raises(FerError, match="one weight per model"):
        export_ensemble([trained["run"], trained["keras"]], tmp_path / "out", weights=[1.0])
    with pytest.raises(FerError, match="positive"):
        export_ensemble([trained["run"]], tmp_path / "out", weights=[-1.0])
    with pytest.raises(FerError, match="unknown quantisation"):
        export_ensemble([trained["run"]], tmp_path / "out", quantization="int4")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FerError, match="not a folder"):
        export_ensemble([trained["run"]], tmp_path / "a_file")
    with pytest.raises(FerError, match="cannot create|not writable"):
        export_ensemble([trained["run"]], tmp_path / "a_file" / "models")
    with pytest.raises(FerError, match="split"):
        export_ensemble([trained["run"]], tmp_path / "out",
                        eval_split=EvalData("train", trained["x_test"], trained["y_test"]))
    assert not (tmp_path / "out").exists()


def test_cli_prints_table(trained, tmp_path):
    import typer
    from typer.testing import CliRunner

    from training.commands.export import export

    app = typer.Typer()
    app.command("export")(export)
    app.command("other")(lambda: None)  # keep `export` a subcommand
    out = tmp_path / "models"
    result = CliRunner().invoke(
        app, ["export", str(trained["run"]), str(trained["keras"]), "--out", str(out),
              "--quantize", "float16", "--weights", "1,1", "--eval", "none", "--notes", "cli"],
    )
    assert result.exit_code == 0, result.output
    assert "tiny_a-1" in result.output and "tiny_b" in result.output
    assert "total download" in result.output and "float16" in result.output
    assert json.loads((out / "manifest.json").read_text())["notes"] == "cli"

    bad = CliRunner().invoke(app, ["export", str(trained["run"]), "--weights", "1,2", "--out", str(out)])
    assert isinstance(bad.exception, FerError) and "one weight per model" in str(bad.exception)
    bad = CliRunner().invoke(app, ["export", str(trained["run"]), "--quantize", "int3", "--out", str(out)])
    assert isinstance(bad.exception, FerError)
    help_text = CliRunner().invoke(app, ["export", "--help"]).output
    assert "--quantize" in help_text and "--eval" in help_text


def test_cli_measures_accuracy_table(trained, tmp_path, monkeypatch):
    """Default --eval: PrivateTest via load_eval_split (stubbed with synthetic arrays here)."""
    import typer
    from test_ensemble import _votes_for
    from typer.testing import CliRunner

    import training.data.evaluation as ev
    from training.commands.export import export

    xy = (trained["x_test"], trained["y_test"])
    votes = _votes_for(trained["y_test"])  # the majority is the label (every 9th row: no face)

    def stub(split, **data_options):
        return ev.EvalData(split, *xy, votes=votes, votes_note="FER+ votes: stub")

    monkeypatch.setattr(ev, "load_eval_split", stub)
    app = typer.Typer()
    app.command("export")(export)
    app.command("other")(lambda: None)
    out = tmp_path / "models"
    out.mkdir()
    (out / "README.md").write_text("# card\n\nhand-written\n")
    result = CliRunner().invoke(app, ["export", str(trained["keras"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "manifest.json").read_text())
    assert doc["metrics"]["split"] == "PrivateTest" and doc["metrics"]["n"] == len(xy[1])
    assert "test_accuracy_tta" in doc["members"][0]["metrics"]
    assert "ensemble on PrivateTest" in result.output and "quant+tta" in result.output
    assert f"{100 * doc['metrics']['accuracy_quantized_tta']:5.1f}%" in result.output
    # FER+: the quantised ensemble against the votes, in the manifest, the output and the card
    fp = doc["metrics"]["ferplus"]
    scored = votes.scored
    assert fp["n"] == int(scored.sum()) == 356 and fp["rows"] == 400
    assert fp["fer2013_labels_majority_agreement"] == 1.0  # the labels are the majority here
    # agreement = accuracy on the scored rows, as the majority is the label there
    assert 0.5 < fp["majority_agreement_tta"] < 0.95 and 0 < fp["mean_vote_share_tta"] < 0.6
    assert validate_manifest(doc, out) == []
    assert f"majority on 356 rows (ties agree): {100 * fp['majority_agreement']:5.1f}%" in result.output
    card = (out / "README.md").read_text()
    assert card.startswith("# card\n\nhand-written\n") and "<!-- ferplus:begin -->" in card
    assert "**356 PrivateTest rows**" in card and "(44 left out" in card
    assert f"| {100 * fp['majority_agreement_tta']:.2f}% |" in card

    def no_votes(split, **data_options):
        return ev.EvalData(split, *xy, votes_note="no FER+ votes (fer2013new.csv) next to x")

    monkeypatch.setattr(ev, "load_eval_split", no_votes)
    result = CliRunner().invoke(app, ["export", str(trained["keras"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "note: no FER+ votes (fer2013new.csv) next to x" in result.output
    assert "ferplus" not in json.loads((out / "manifest.json").read_text())["metrics"]
    card = (out / "README.md").read_text()  # the old numbers are gone, the reason is there
    assert card.count("<!-- ferplus:begin -->") == 1 and "**356" not in card
    assert "Not measured by the last `fer-hybrid export`: no FER+ votes (fer2013new.csv)" in card


def test_broken_card_markers_fail_before_converting(trained, tmp_path):
    from training.export.export import plan_export

    out = tmp_path / "models"
    out.mkdir()
    (out / "README.md").write_text("<!-- ferplus:end -->\n<!-- ferplus:begin -->\n")
    with pytest.raises(FerError, match="markers"):
        plan_export([trained["keras"]], out)


@pytest.mark.realdata
def test_real_data_quantised_within_tolerance(shared_data, tmp_path):
    """FER2013: a tiny CNN trained briefly; uint8 ensemble within 1 point of float on PrivateTest."""
    from training.data import load_splits
    from training.data.evaluation import EvalData
    from training.export.export import export_ensemble

    try:
        splits = load_splits(data_dir=str(shared_data))
    except TypeError:
        splits = load_splits()
    train, test = splits["train"], splits["test"]
    keep = np.asarray(train.source) == "fer2013" if getattr(train, "source", None) is not None else slice(None)
    x, y = np.asarray(train.x)[keep][:6000], np.asarray(train.y)[keep][:6000]
    model = train_tiny(x, y, seed=0, epochs=3)
    path = tmp_path / "fer_tiny.keras"
    model.save(path)
    x_test, y_test = np.asarray(test.x)[:1500], np.asarray(test.y)[:1500]
    manifest = export_ensemble([path], tmp_path / "m", eval_split=EvalData("test", x_test, y_test))
    doc = json.loads(manifest.read_text())
    met = doc["metrics"]
    print("\nreal-data metrics:", json.dumps(met))
    assert met["split"] == "PrivateTest"
    assert met["accuracy_float"] > 1 / 7
    assert abs(met["accuracy_quantized"] - met["accuracy_float"]) <= ACCURACY_TOLERANCE
    assert abs(met["accuracy_quantized_tta"] - met["accuracy_float_tta"]) <= ACCURACY_TOLERANCE
