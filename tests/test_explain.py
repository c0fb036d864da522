"""`fer-hybrid explain`: saliency that finds the signal, the confusion analysis, the report.

Synthetic faces (conftest.synthetic_faces) put a bright blob where the class says, so a model
that learned them must look at the blob: occlusion and Grad-CAM are checked to find it, and to
agree, on a tiny CNN trained here; Grad-CAM's gradient under JAX must equal TensorFlow's.
The command runs end to end through the real CLI on a run folder and on an exported TF.js
models folder (tests/e2e_support.py), over a synthetic FER2013 CSV.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import main_in_process, synthetic_faces

from training.core.errors import FerError
from training.explain.analysis import (
    NAMED_PAIRS,
    confident_mistakes,
    confused_pairs,
    named_pairs,
    pair_examples,
)
from training.explain.saliency import occlusion_maps, peak, resize_bilinear

REPO = Path(__file__).resolve().parents[1]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def blob_centre(label: int, size: int = 48) -> tuple[float, float]:
    """Where synthetic_faces puts the blob of `label` (row, column)."""
    angle = 2 * np.pi * label / 7
    return size / 2 + size / 3.5 * np.sin(angle), size / 2 + size / 3.5 * np.cos(angle)


def peak_distances(maps: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.array([np.hypot(*np.subtract(peak(m), blob_centre(c))) for m, c in zip(maps, y)])


def nearest_blob(maps: np.ndarray) -> np.ndarray:
    """The class whose blob place is nearest each map's peak (the place the map points at)."""
    centres = np.array([blob_centre(c) for c in range(7)])
    return np.array([np.argmin(np.hypot(*(centres - peak(m)).T)) for m in maps])


# --------------------------------------------------------------------------- analysis


def hand_made_confusion() -> np.ndarray:
    cm = np.diag([40, 10, 30, 50, 30, 20, 30]).astype("int64")
    cm[4, 6] = 9  # sad -> neutral: 9 of 39
    cm[6, 4] = 3  # neutral -> sad: 3 of 33
    cm[2, 5] = 6  # fear -> surprise: 6 of 36
    cm[5, 2] = 2  # surprise -> fear: 2 of 22
    cm[1, 0] = 5  # disgust -> angry: 5 of 15
    cm[0, 3] = 9  # angry -> happy: 9 of 49 (same count as sad -> neutral, lower rate)
    return cm


def test_confused_pairs_ranked_by_count_then_rate():
    pairs = confused_pairs(hand_made_confusion(), top=4, labels=LABELS)
    assert [(p["true"], p["pred"], p["count"]) for p in pairs] == [
        ("sad", "neutral", 9), ("angry", "happy", 9), ("fear", "surprise", 6),
        ("disgust", "angry", 5)]
    assert pairs[0]["rate"] == pytest.approx(9 / 39) and pairs[0]["support"] == 39
    assert pairs[1]["rate"] == pytest.approx(9 / 49)
    assert len(confused_pairs(hand_made_confusion(), top=100, labels=LABELS)) == 6  # no zeros
    assert confused_pairs(np.diag([5] * 7), labels=LABELS) == []


def test_named_pairs_both_ways():
    named = {p["pair"]: p for p in named_pairs(hand_made_confusion(), NAMED_PAIRS, labels=LABELS)}
    assert list(named) == ["sad/neutral", "fear/surprise", "disgust/angry"]
    sn = named["sad/neutral"]
    assert (sn["a_to_b"]["count"], sn["a_to_b"]["rate"]) == (9, pytest.approx(9 / 39))
    assert (sn["b_to_a"]["count"], sn["b_to_a"]["rate"]) == (3, pytest.approx(3 / 33))
    assert sn["joint_rate"] == pytest.approx(12 / 72)
    da = named["disgust/angry"]
    assert da["a_to_b"]["rate"] == pytest.approx(5 / 15) and da["b_to_a"]["count"] == 0
    assert da["b_to_a"]["support"] == 49


def test_confident_mistakes_and_pair_examples_keep_split_indices():
    y = np.array([4, 4, 6, 2, 4, 0])
    probs = np.full((6, 7), 0.01)
    probs[0, 6], probs[0, 4] = 0.90, 0.04  # sad -> neutral, sure
    probs[1, 4] = 0.94  # right
    probs[2, 4] = 0.70  # neutral -> sad
    probs[3, 5] = 0.80  # fear -> surprise
    probs[4, 6] = 0.50  # sad -> neutral, less sure
    probs[5, 0] = 0.99  # right, surest of all: not a mistake
    index = np.array([10, 11, 12, 13, 14, 15])  # a sample's rows in the full split
    mistakes = confident_mistakes(y, probs, 3, index=index, labels=LABELS)
    assert [m["index"] for m in mistakes] == [10, 13, 12]
    assert mistakes[0] == {"index": 10, "true": "sad", "pred": "neutral", "prob_pred": 0.90,
                           "prob_true": 0.04}
    examples = pair_examples(y, probs, "sad", "neutral", 5, index=index, labels=LABELS)
    assert [e["index"] for e in examples] == [10, 14]
    assert pair_examples(y, probs, "happy", "sad", 5, index=index, labels=LABELS) == []


# --------------------------------------------------------------------------- saliency


def test_occlusion_marks_the_region_the_predictor_reads():
    """A hand-made predictor whose class 0 is the brightness of one square."""
    def predict(x):
        p0 = x[:, 8:16, 28:36, 0].mean(axis=(1, 2)) / 255.0
        return np.concatenate([p0[:, None], np.repeat(((1 - p0) / 6)[:, None], 6, 1)], 1)

    x = np.full((3, 48, 48), 40, "uint8")
    x[:, 8:16, 28:36] = 250
    maps = occlusion_maps(predict, x)
    assert maps.shape == (3, 7, 48, 48)
    hot = maps[:, 0, 8:16, 28:36].mean()
    assert hot > 0.2 and np.abs(maps[:, 0, 30:, :20]).max() == 0  # far away: no effect at all
    assert 8 <= peak(maps[0, 0])[0] < 16 and 28 <= peak(maps[0, 0])[1] < 36
    assert (maps[:, 1:, 8:16, 28:36] < 0).all()  # hiding class 0's evidence helps the others


def test_resize_bilinear_keeps_constants_and_corners():
    out = resize_bilinear(np.full((2, 3, 3), 5.0), (48, 48))
    assert out.shape == (2, 48, 48) and np.allclose(out, 5.0)
    ramp = resize_bilinear(np.arange(4.0).reshape(1, 2, 2), (4, 4))[0]
    assert ramp[0, 0] == 0 and ramp[-1, -1] == 3 and np.all(np.diff(ramp, axis=1) >= 0)


def tiny_cnn(seed: int = 0):
    """A small CNN that keeps position (Flatten head), 12x12 last feature map."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((48, 48, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = layers.Flatten()(x)
    out = layers.Dense(7, activation="softmax")(x)
    return keras.Model(inp, out, name="tiny_explain")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny CNN after 4 epochs on 1600 synthetic faces, saved as a .keras file."""
    x, y = synthetic_faces(1600, seed=1)
    model = tiny_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[..., None].astype("float32"), y, epochs=4, batch_size=64, verbose=0)
    path = tmp_path_factory.mktemp("explain") / "tiny.keras"
    model.save(path)
    xt, yt = synthetic_faces(120, seed=2)
    pred = model.predict(xt[..., None].astype("float32"), verbose=0).argmax(1)
    right = pred == yt
    assert right.mean() > 0.9, "the tiny CNN should learn the synthetic faces"
    return {"model": model, "path": path, "x": xt[right], "y": yt[right]}


@pytest.mark.slow
def test_occlusion_and_gradcam_find_the_blob_and_agree(trained):
    from training.explain.saliency import GradCam
    from training.models.predict import predict_probs

    model, x, y = trained["model"], trained["x"], trained["y"]
    occ = occlusion_maps(lambda b: predict_probs(model, b, batch_size=512), x)
    occ_true = occ[np.arange(len(y)), y]
    cam = GradCam(model)
    assert cam.layer.name == "last_conv" and cam.map_size == (12, 12)
    grad = cam(x, y)
    assert grad.shape == (len(y), 48, 48) and grad.max() <= 1.0 + 1e-6 and grad.min() >= 0
    d_occ, d_cam = peak_distances(occ_true, y), peak_distances(grad, y)
    at_occ, at_cam = nearest_blob(occ_true), nearest_blob(grad)
    print(f"\nblob distance: occlusion median {np.median(d_occ):.1f}px, grad-cam "
          f"{np.median(d_cam):.1f}px; on the true blob {np.mean(at_occ == y):.0%}, "
          f"{np.mean(at_cam == y):.0%} of {len(y)} images")
    # neighbouring blob places are 12 px apart, blob sigma 4.8 px, both grids 4 px
    assert np.median(d_occ) <= 4 and np.mean(at_occ == y) >= 0.9
    assert np.median(d_cam) <= 4 and np.mean(at_cam == y) >= 0.9
    assert np.mean(at_occ == at_cam) >= 0.9  # the two methods point at the same blob
    # the map of a class the image does not show is not peaked on this image's blob
    other = (y + 3) % 7
    assert np.mean(nearest_blob(cam(x, other)) == y) < 0.5


@pytest.mark.slow
def test_gradcam_cut_skips_a_layer_that_a_skip_connection_bypasses():
    import keras
    from keras import layers

    from training.explain.saliency import GradCam

    inp = keras.Input((48, 48, 1))
    a = layers.Conv2D(4, 3, strides=2, name="early")(inp)
    b = layers.Conv2D(4, 3, strides=2, name="late")(a)
    merged = layers.Concatenate()([layers.GlobalAveragePooling2D()(a),
                                   layers.GlobalAveragePooling2D()(b)])
    model = keras.Model(inp, layers.Dense(7, activation="softmax")(merged))
    cam = GradCam(model)
    assert cam.layer.name == "early"  # the output depends on `early` not only through `late`
    assert cam(np.zeros((2, 48, 48), "uint8") + 100, [0, 1]).shape == (2, 48, 48)
    with pytest.raises(FerError, match="skip connection"):
        GradCam(model, "late")
    with pytest.raises(FerError, match="no layer 'nope'"):
        GradCam(model, "nope")


JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from training.explain.saliency import GradCam, as_nhwc, feature_gradients
    from training.models.serialization import load_model
    model_path, data, out = sys.argv[1:4]
    d = np.load(data)
    cam = GradCam(load_model(model_path, float32=True))
    maps = cam(d["x"], d["y"])
    feats = np.asarray(cam.features(as_nhwc(d["x"])))
    np.savez(out, maps=maps, grads=feature_gradients(cam.head, feats, d["y"]))
    print("RESULT", json.dumps({"backend": keras.backend.backend(), "layer": cam.layer.name}))
""")


@pytest.mark.slow
def test_gradcam_gradient_under_jax_equals_tensorflow(trained, tmp_path):
    from training.explain.saliency import GradCam, as_nhwc, feature_gradients

    x = trained["x"][:16]
    # the shown class for half, another for the rest: a confident log p has a tiny gradient
    y = np.where(np.arange(16) % 2, trained["y"][:16], (trained["y"][:16] + 1) % 7)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", JAX_SCRIPT, str(trained["path"]),
                           str(tmp_path / "data.npz"), str(tmp_path / "jax.npz")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    assert json.loads(line.split(" ", 1)[1]) == {"backend": "jax", "layer": "last_conv"}

    cam = GradCam(trained["model"])
    feats = np.asarray(cam.features(as_nhwc(x)))
    tf_grads = feature_gradients(cam.head, feats, y)
    jax = np.load(tmp_path / "jax.npz")
    scale = np.abs(tf_grads).max(axis=(1, 2, 3))  # per image
    assert (scale > 0).all()
    # + 1e-7: a near-certain class (1 - p ~ 1e-6) has a gradient at float32's rounding level
    assert (np.abs(jax["grads"] - tf_grads).max(axis=(1, 2, 3)) <= 1e-3 * scale + 1e-7).all()
    assert np.abs(jax["maps"] - cam(x, y)).max() <= 1e-2


# --------------------------------------------------------------------------- the command


def write_fer_csv(path: Path) -> Path:
    """A FER2013-shaped CSV of synthetic faces. Its 140 PrivateTest images blend two faces
    (55/45, the first one's label), so even a model that learned the faces makes mistakes."""
    rows = ["emotion,pixels,Usage"]
    for usage, n, seed in (("Training", 70, 1), ("PublicTest", 70, 2), ("PrivateTest", 140, 3)):
        x, y = synthetic_faces(n, seed=seed)
        if usage == "PrivateTest":
            other, _ = synthetic_faces(n, seed=seed + 10)
            x = np.clip(0.55 * x.astype("float32") + 0.45 * other, 0, 255).astype("uint8")
        rows += [f"{label},{' '.join(map(str, img.ravel()))},{usage}" for img, label in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def run_cli(*args: str, cache: Path | None) -> SimpleNamespace:
    """`fer-hybrid explain ARGS` in this process through typer's CliRunner (the command's
    code path, without a new interpreter importing TensorFlow again); cache None: the
    user's FER2013 cache."""
    from typer.testing import CliRunner

    from training.cli import app

    env = {"FER_HYBRID_CACHE": str(cache)} if cache is not None else None
    result = CliRunner().invoke(app, ["explain", *args], env=env)
    failure = "".join(traceback.format_exception(result.exception)) if result.exit_code else ""
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr + failure)


def check_report(out: Path, *, n: int, methods: list[str]) -> dict:
    doc = json.loads((out / "explain.json").read_text())
    assert doc["schema"] == "fer-hybrid/explain@1" and doc["split_name"] == "PrivateTest"
    assert doc["n"] == n and doc["n_split"] == 140 and doc["saliency"]["methods"] == methods
    assert np.asarray(doc["confusion_matrix"]).sum() == n
    assert [p["pair"] for p in doc["named_pairs"]] == ["sad/neutral", "fear/surprise",
                                                       "disgust/angry"]
    indices = doc["indices"] if doc["indices"] is not None else list(range(140))
    assert len(indices) == n and all(0 <= i < 140 for i in indices)
    mistakes = doc["confident_mistakes"]
    assert mistakes, "a tiny model on synthetic faces makes mistakes"
    assert all(m["index"] in indices and m["true"] != m["pred"] for m in mistakes)
    assert [m["prob_pred"] for m in mistakes] == sorted((m["prob_pred"] for m in mistakes),
                                                        reverse=True)

    def longest_list(v) -> int:  # numbers only: nothing image-sized (48 rows / 2304 pixels)
        if isinstance(v, dict):
            return max([0, *map(longest_list, v.values())])
        if isinstance(v, list):
            return max([len(v), *map(longest_list, v)])
        return 0

    assert longest_list({k: v for k, v in doc.items() if k != "indices"}) <= 12
    html = (out / "explain.html").read_text()
    assert "<script" not in html and not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    shown = len(mistakes) + sum(len(g["examples"]) for g in doc["pair_galleries"])
    assert html.count("<figure>") == shown
    assert html.count('src="data:image/png;base64,') == shown + 2  # + confusion, class maps
    assert "sad → neutral" in html and "fear/surprise" in html
    assert (out / "confusion_test.png").is_file() and (out / "class_saliency_test.png").is_file()
    return doc


@pytest.mark.slow
def test_cli_explains_a_run_folder(trained, tmp_path):
    run = tmp_path / "runs" / "tiny-run"
    run.mkdir(parents=True)
    (run / "best.keras").write_bytes(trained["path"].read_bytes())
    csv = write_fer_csv(tmp_path / "fer2013.csv")
    proc = run_cli(str(run), "--fer2013", str(csv), "--sample", "100", "--gallery", "4",
                   "--pairs", "2", "--maps-per-class", "3", cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sad -> neutral" in proc.stdout and "most confused" in proc.stdout
    doc = check_report(run / "explain", n=100, methods=["occlusion", "gradcam"])
    assert doc["kind"] == "run" and doc["tta"] is True and doc["predictions"] == "computed"
    assert doc["saliency"]["gradcam"]["layer"] == "last_conv"
    assert (run / "predictions" / "test.npz").is_file()  # the full split, as evaluate saves it


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    from e2e_support import build_fixture_models

    root = tmp_path_factory.mktemp("models")
    return build_fixture_models(root / "models", root / "work").parent


@pytest.mark.slow
def test_cli_explains_an_exported_models_folder(models_dir, tmp_path):
    csv = write_fer_csv(tmp_path / "fer2013.csv")
    out = tmp_path / "report"
    proc = run_cli(str(models_dir), "--fer2013", str(csv), "--gallery", "3", "--pairs", "1",
                   "--maps-per-class", "2", "--out", str(out), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = check_report(out, n=140, methods=["occlusion"])
    assert doc["kind"] == "models" and doc["tta"] is True and doc["indices"] is None
    assert "gradcam" not in doc["saliency"]


@pytest.mark.slow
def test_cli_user_errors_are_one_line(models_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    cases = [([str(tmp_path / "missing")], "does not exist"),
             ([str(tmp_path / "empty")], "neither a run folder"),
             ([str(models_dir), "--method", "gradcam"], "--method occlusion"),
             ([str(models_dir), "--method", "lime"], "unknown --method"),
             ([str(models_dir), "--split", "holdout"], "unknown split")]
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    for args, message in cases:
        code, err = main_in_process(["explain", *args], monkeypatch, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (args, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.mark.slow
@pytest.mark.realdata
def test_cli_explains_the_shipped_models_on_real_privatetest(shared_data, tmp_path):
    out = tmp_path / "report"
    proc = run_cli(str(REPO / "models"), "--data-dir", str(shared_data), "--sample", "140",
                   "--maps-per-class", "1", "--gallery", "2", "--pairs", "1", "--out", str(out),
                   cache=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "explain.json").read_text())
    assert doc["n"] == 140 and doc["n_split"] == 3589 and doc["kind"] == "models"
    assert 0.45 < doc["accuracy"] < 0.9  # the card says 67.65 % on all 3,589
    sad_neutral = doc["named_pairs"][0]
    assert sad_neutral["pair"] == "sad/neutral" and sad_neutral["a_to_b"]["support"] > 0
    assert (out / "explain.html").stat().st_size > 50_000  # faces and maps inlined


@pytest.mark.slow
def test_gradcam_only_without_tta_on_a_keras_file(trained, tmp_path):
    """The library path for a bare .keras file: Grad-CAM alone, plain (no TTA) scores."""
    from training.evaluate.scorer import resolve_source
    from training.explain.build import ExplainOptions, default_out_dir, explain_target

    xa, y = synthetic_faces(60, seed=4)
    xb, _ = synthetic_faces(60, seed=14)
    x = np.clip(0.55 * xa.astype("float32") + 0.45 * xb, 0, 255).astype("uint8")
    source = resolve_source(trained["path"])
    assert source.kind == "keras" and default_out_dir(source) == Path("reports/explain-tiny")
    doc = explain_target(source, {"test": (x, y)}.__getitem__,
                         ExplainOptions(method="gradcam", tta=False, maps_per_class=2, gallery=3,
                                        pairs=1), tmp_path / "out")
    assert doc["saliency"]["methods"] == ["gradcam"] and "occlusion" not in doc["saliency"]
    assert doc["tta"] is False and doc["accuracy"] == doc["accuracy_plain"] < 1.0
    assert doc["saliency"]["classes"]["angry"]["gradcam"]["upper_half_share"] is not None
    html = (tmp_path / "out" / "explain.html").read_text()
    assert "Grad-CAM for <i>predicted</i>" in html and "occlusion for" not in html
