"""`fer-hybrid runs bundle/unbundle`: a tiny real run bundled under JAX (TensorFlow blocked, as
on the GPU machine), restored here from the folders of two device calls, and the errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import NO_TENSORFLOW, synthetic_faces
from typer.testing import CliRunner

from contract.files import sha256_file
from training.bundle import float16_check, keras_file, plan
from training.bundle.unpack import unbundle
from training.core.errors import FerError
from training.core.runs import RunFolder

REPO = Path(__file__).resolve().parents[1]
VERBATIM = ["config.json", "log.csv", "metrics.json", "checkpoint/state.json",
            "predictions/val.npz", "predictions/test.npz"]

# Runs the CLI with TensorFlow made uninstallable (conftest.NO_TENSORFLOW).
BUNDLE_SCRIPT = NO_TENSORFLOW + textwrap.dedent("""
    import json
    from typer.testing import CliRunner
    from training.cli import app
    results = []
    for args in json.loads(sys.argv[1]):
        r = CliRunner().invoke(app, ["runs", "bundle", *args])
        results.append({"code": r.exit_code, "output": r.output, "error": repr(r.exception)})
    import keras
    print("RESULT", json.dumps({"results": results, "backend": keras.backend.backend(),
                                "tensorflow": "tensorflow" in sys.modules}))
""")


def _write_fer_csv(path: Path) -> None:
    rows = ["emotion,pixels,Usage"]
    for usage, n, seed in (("Training", 280, 1), ("PublicTest", 140, 2), ("PrivateTest", 140, 3)):
        x, y = synthetic_faces(n, seed=seed)
        rows += [f"{label},{' '.join(map(str, img.ravel()))},{usage}" for img, label in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 1-epoch baseline_cnn run whose config.json says where its data is, bundled twice
    under JAX: auto -> float16 (16 KiB parts: several calls), and auto forced to float32."""
    from training.data import load_splits
    from training.fit.train import TrainConfig, train

    root = tmp_path_factory.mktemp("bundle")
    csv = root / "fer2013.csv"
    _write_fer_csv(csv)
    splits = load_splits(fer2013=csv, cache=False, progress=False)
    run = root / "runs" / "tiny"
    train(TrainConfig(model="baseline_cnn", epochs=1, batch_size=32, lr=0.05, seed=0,
                      data={"fer2013": str(csv)}), splits, run, verbose=0)
    jobs = [[str(run), "--out", str(root / "b16"), "--part-size", "16KiB",
             "--min-agreement", "0", "--max-accuracy-change", "100"],
            [str(run), "--out", str(root / "b32"), "--max-prob-change", "0",
             "--compress", "none"]]
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(REPO), "FER_HYBRID_CACHE": str(root / "cache")}
    proc = subprocess.run([sys.executable, "-c", BUNDLE_SCRIPT, json.dumps(jobs)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    result = json.loads(line.split(" ", 1)[1])
    for job in result["results"]:
        assert job["code"] == 0, job
    return {"root": root, "run": run, "splits": splits, **result}


def _manifest(folder: Path) -> dict:
    (path,) = folder.glob("fer-bundle-*.json")
    return json.loads(path.read_text())


def _split_by_call(bundle: Path, into: Path) -> list[Path]:
    """Copy each device call's files into its own folder, as separate calls bring them back."""
    folders = []
    for call in _manifest(bundle)["calls"]:
        folder = into / f"call{call['call']}"
        folder.mkdir(parents=True)
        for name in call["files"]:
            shutil.copy(bundle / name, folder / name)
        folders.append(folder)
    return folders


@pytest.mark.slow
def test_bundles_under_jax_without_tensorflow(tiny):
    assert tiny["backend"] == "jax" and tiny["tensorflow"] is False
    out = tiny["results"][0]["output"]
    assert "call 1: cp " in out and "call 2: cp " in out and "$OUT" in out
    files = sorted(p.name for p in (tiny["root"] / "b16").iterdir())
    assert all(p.is_file() for p in (tiny["root"] / "b16").iterdir())  # flat
    m = _manifest(tiny["root"] / "b16")
    assert files == sorted([p["name"] for p in m["parts"]] + [f"fer-bundle-{m['bundle']}.json"])
    assert all(p["bytes"] <= 16 * 1024 for p in m["parts"]) and len(m["parts"]) > 7
    assert m["calls"][0]["files"][0] == f"fer-bundle-{m['bundle']}.json"
    for call in m["calls"]:
        assert len(call["files"]) <= 8 and call["bytes"] <= 64 * 2**20
        assert call["bytes"] == sum((tiny["root"] / "b16" / n).stat().st_size
                                    for n in call["files"])
    (run,) = m["runs"]
    w = run["weights"]
    assert w["storage"] == "float16" and w["check"]["images"].startswith("val:")
    assert w["check"]["n"] == 140 and "accuracy_change_pp" in w["check"]
    assert [f["path"] for f in run["files"]] == ["best.keras.compact.npz"] + VERBATIM
    assert "history.png" in run["left_out"] and "checkpoint/train-epoch0001.keras" in \
        run["left_out"]
    compact = next(f for f in run["files"] if f["path"].startswith("best.keras"))
    assert compact["bytes"] < 0.6 * w["original_bytes"]  # float16 halves the weights


@pytest.mark.slow
def test_unbundles_from_two_folders_and_the_run_works(tiny, tmp_path):
    import keras

    from training.cli import app
    from training.models.predict import predict_probs
    from training.models.serialization import load_model

    folders = _split_by_call(tiny["root"] / "b16", tmp_path / "back")
    assert len(folders) >= 2
    runs_dir = tmp_path / "runs"
    result = CliRunner().invoke(app, ["runs", "unbundle", *map(str, folders),
                                      "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0, result.output
    original, restored = RunFolder(tiny["run"]), RunFolder(runs_dir / "tiny")
    for rel in VERBATIM:  # predictions and the record come back byte for byte
        assert (restored.path / rel).read_bytes() == (original.path / rel).read_bytes(), rel
    assert restored.history_png.is_file()
    assert not restored.checkpoint_models() and not list(restored.path.rglob(".tmp-*"))
    assert not any(p.name.endswith(".npz") and "compact" in p.name
                   for p in restored.path.rglob("*"))

    # best.keras: a float32 .keras file, predicting within the measured float16 tolerance
    check = _manifest(tiny["root"] / "b16")["runs"][0]["weights"]["check"]
    model = load_model(restored.best_model)
    weights = _manifest(tiny["root"] / "b16")["runs"][0]["weights"]
    assert sha256_file(restored.best_model) == weights["restored_sha256"]  # same HDF5 here
    assert {w.dtype for w in model.get_weights()} == {np.dtype("float32")}
    x = tiny["splits"]["val"].x
    p_orig = predict_probs(keras.saving.load_model(original.best_model), x)
    p_rest = predict_probs(model, x)
    assert 0 < np.abs(p_orig - p_rest).max() <= check["max_abs_prob_change"] + 1e-4
    assert (p_orig.argmax(1) == p_rest.argmax(1)).mean() * 100 >= check["top1_agreement_pct"]

    # the restored run is a run: evaluate and ensemble work from it
    ev = CliRunner().invoke(app, ["evaluate", str(restored.path), "--split", "test",
                                  "--out", str(tmp_path / "ev")])
    assert ev.exit_code == 0, ev.output
    assert (tmp_path / "ev" / "metrics_test.json").is_file()
    en = CliRunner().invoke(app, ["ensemble", str(restored.path), "--out",
                                  str(tmp_path / "ens")])
    assert en.exit_code == 0, en.output
    assert (tmp_path / "ens" / "ensemble.json").is_file()

    # never over an existing run without --force
    with pytest.raises(FerError, match="already exist.*--force"):
        unbundle(folders, runs_dir, say=lambda _: None)
    (restored.path / "stale.txt").write_text("from before")
    unbundle(folders, runs_dir, force=True, say=lambda _: None)
    assert not (restored.path / "stale.txt").exists() and restored.best_model.is_file()


@pytest.mark.slow
def test_float32_fallback_when_the_threshold_says_so(tiny, tmp_path):
    m = _manifest(tiny["root"] / "b32")
    w = m["runs"][0]["weights"]
    assert w["storage"] == "float32" and "max |dp|" in w["reason"]
    assert w["check"]["max_abs_prob_change"] > 0 and m["compression"] == "none"
    assert m["runs"][0]["files"][0]["path"] == "best.keras"
    unbundle([tiny["root"] / "b32"], tmp_path / "runs", say=lambda _: None)
    restored = tmp_path / "runs" / "tiny" / "best.keras"
    assert sha256_file(restored) == w["original_sha256"]  # the original file, verbatim


@pytest.mark.slow
def test_missing_part_names_it_and_its_call(tiny, tmp_path):
    folders = _split_by_call(tiny["root"] / "b16", tmp_path / "back")
    m = _manifest(tiny["root"] / "b16")
    last = [p["name"] for p in m["parts"] if p["call"] == len(m["calls"])]
    with pytest.raises(FerError, match=rf"missing: {last[0]} \(call {len(m['calls'])}\)"):
        unbundle(folders[:-1], tmp_path / "runs", say=lambda _: None)
    assert not (tmp_path / "runs" / "tiny").exists()
    with pytest.raises(FerError, match="no bundle manifest"):
        unbundle(folders[1:], tmp_path / "runs", say=lambda _: None)


@pytest.mark.slow
def test_corrupt_or_truncated_part_is_named(tiny, tmp_path):
    folders = _split_by_call(tiny["root"] / "b16", tmp_path / "back")
    part = sorted(folders[0].glob("*.part*"))[1]
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(FerError, match=rf"{part.name} is corrupt.*call 1"):
        unbundle(folders, tmp_path / "runs", say=lambda _: None)
    part.write_bytes(bytes(data[:-10]))
    with pytest.raises(FerError, match=rf"{part.name} is truncated"):
        unbundle(folders, tmp_path / "runs", say=lambda _: None)
    assert not (tmp_path / "runs" / "tiny").exists()


def test_plan_never_exceeds_a_calls_limits():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = [int(s) for s in rng.integers(1, plan.MAX_FILE_BYTES, size=rng.integers(1, 30))]
        files = [(f"f{i}", s) for i, s in enumerate(sizes)]
        calls = plan.plan_calls(files)
        assert [n for c in calls for n in c] == [n for n, _ in files]  # in order, each once
        for call in calls:
            assert len(call) <= plan.MAX_FILES
            assert sum(dict(files)[n] for n in call) <= plan.MAX_CALL_BYTES
    assert plan.plan_calls([("m", 10)] + [(f"p{i}", 15 * plan.MiB) for i in range(9)]) == [
        ["m", "p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"], ["p8"]]
    assert len(plan.plan_calls([(f"p{i}", 1) for i in range(17)])) == 3
    with pytest.raises(FerError, match="too big"):
        plan.plan_calls([("huge", plan.MAX_FILE_BYTES + 1)])


def test_sizes_are_read_and_checked():
    assert plan.parse_size("15MiB") == 15 * 2**20 == plan.parse_size("15m")
    assert plan.parse_size("16KiB") == 16384 and plan.parse_size("4096") == 4096
    for bad in ("lots", "12 parsecs", "0"):
        with pytest.raises(FerError):
            plan.parse_size(bad)
    with pytest.raises(FerError, match="15MiB or less"):
        plan.check_part_size(plan.parse_size("17MiB"))


def test_decide_keeps_float32_beyond_the_thresholds():
    ok = {"top1_agreement_pct": 99.95, "accuracy_change_pp": -0.03, "max_abs_prob_change": 5e-3}
    assert float16_check.decide(ok)[0] == "float16"
    assert float16_check.decide({**ok, "top1_agreement_pct": 99.8})[0] == "float32"
    assert float16_check.decide({**ok, "accuracy_change_pp": 0.2})[0] == "float32"
    assert float16_check.decide({**ok, "accuracy_change_pp": -0.2})[0] == "float32"
    assert float16_check.decide(ok, max_prob_change=1e-3)[0] == "float32"
    probe = {"top1_agreement_pct": 100.0, "max_abs_prob_change": 1e-4}  # no labels
    assert float16_check.decide(probe)[0] == "float16"


def test_a_diverged_model_is_kept_float32_and_its_check_is_strict_json(tmp_path):
    """A run whose weights went NaN (seen: a bf16 member under JAX) must not make the bundle's
    strict-JSON manifest unwritable, which would lose every run of the device call."""
    import keras

    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(7, activation="softmax")])
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.full_like(kernel, np.nan), bias])
    path = tmp_path / "best.keras"
    model.save(path)
    rebuilt = keras_file.rebuild_keras(keras_file.compact_keras(path.read_bytes(), "float16"))
    images = float16_check.probe_images(n=16)
    check = float16_check.measure(path, rebuilt, images)
    json.dumps(check, allow_nan=False)  # raised "Out of range float values" before
    assert check["not_finite_images"] == 16 and check["max_abs_prob_change"] is None
    storage, reason = float16_check.decide(check)
    assert storage == "float32" and "NaN" in reason


def test_probe_set_stands_in_when_the_runs_data_is_not_here(tmp_path):
    run = RunFolder(tmp_path / "r")
    run.write_config({"model": "baseline_cnn", "seed": 0,
                      "data": {"fer2013": str(tmp_path / "gone.csv")}})
    images = float16_check.run_images(run)
    assert images.y is None and images.x.shape == (float16_check.PROBE_IMAGES, 48, 48)
    assert "gone.csv" in images.source and images.source.startswith("probe:")
    assert np.array_equal(images.x, float16_check.probe_images().x)  # deterministic
    assert images.x.std() > 30  # spread over the grey levels, not a flat image


def test_unbundle_needs_a_folder_with_a_manifest(tmp_path):
    with pytest.raises(FerError, match="not a folder"):
        unbundle([tmp_path / "nope"], tmp_path / "runs", say=lambda _: None)
    (tmp_path / "fer-bundle-abc.json").write_text("{not json")
    with pytest.raises(FerError, match="cannot read the bundle manifest"):
        unbundle([tmp_path], tmp_path / "runs", say=lambda _: None)


def test_compact_weights_are_deterministic_and_round_to_float16(repo_root):
    original = (repo_root / "training/checkpoints/cpu-sepnet/best.keras").read_bytes()
    compact = keras_file.compact_keras(original, "float16")
    assert compact == keras_file.compact_keras(original, "float16")  # same weights, same bytes
    assert len(compact) < 0.51 * len(original)
    rebuilt = keras_file.rebuild_keras(compact)
    assert keras_file.holds_weights(rebuilt, compact)
    _, before = keras_file.read_weights(original)
    _, after = keras_file.read_weights(rebuilt)
    assert [p for p, _ in before] == [p for p, _ in after]
    assert all(a.dtype == np.float32 and np.array_equal(a, b.astype(np.float16).astype(np.float32))
               for (_, b), (_, a) in zip(before, after))
    assert any(not np.array_equal(a, b) for (_, b), (_, a) in zip(before, after))
    exact = keras_file.rebuild_keras(keras_file.compact_keras(original, "float32"))
    assert all(np.array_equal(a, b) for (_, b), (_, a) in
               zip(before, keras_file.read_weights(exact)[1]))
    assert not keras_file.holds_weights(exact, compact)
    with pytest.raises(FerError, match="not a .keras zip"):
        keras_file.compact_keras(b"not a zip", "float16")


def test_probe_set_when_the_data_found_is_not_what_the_run_validated_on(tmp_path, monkeypatch):
    from training.core.runs import Predictions, save_predictions

    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))  # not the user's cache
    csv = tmp_path / "fer2013.csv"
    _write_fer_csv(csv)
    run = RunFolder(tmp_path / "r")
    run.write_config({"model": "baseline_cnn", "seed": 0, "data": {"fer2013": str(csv)}})
    images = float16_check.run_images(run)
    assert images.y is not None and len(images.y) == 140 and images.source.startswith("val:")
    y = (images.y + 1) % 7  # other labels: another dataset than the run's
    probs = np.full((140, 7), 1 / 7, dtype="float32")
    save_predictions(run.predictions("val"), Predictions(probs, probs, y))
    images = float16_check.run_images(run)
    assert images.y is None and "does not match the labels" in images.source
