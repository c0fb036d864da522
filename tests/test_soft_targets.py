"""Offline distillation: `ensemble --save-soft-targets FILE`, then `train --soft-targets FILE`."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import typer
from conftest import synthetic_faces
from typer.testing import CliRunner

from contract import LABELS
from training.core.errors import FerError
from training.fit import soft_targets as st
from training.fit.train import TrainConfig, train


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))


def write_csv(path, x, y, usage):
    """A FER2013-format CSV (emotion,pixels,Usage) of uint8 images."""
    rows = ["emotion,pixels,Usage"] + [f"{lab},{' '.join(map(str, im.reshape(-1)))},{u}"
                                       for im, lab, u in zip(x, y, usage)]
    path.write_text("\n".join(rows) + "\n")


def _onehot(labels):
    return np.eye(7, dtype="float64")[np.asarray(labels)]


def _cfg(**kw):
    base = {"model": "baseline_cnn", "epochs": 1, "batch_size": 32, "lr": 0.02, "seed": 0}
    return TrainConfig(**{**base, **kw})


# --------------------------------------------------------------------------- the file


def test_file_matches_images_by_content_in_any_order(tmp_path):
    x, y = synthetic_faces(20, seed=3)
    x[7] = x[2]  # an exact duplicate (FER2013 has them, some with another label)
    probs = np.random.default_rng(0).dirichlet(np.ones(7), size=20)
    probs[7] = probs[2]  # same pixels, same teacher output
    targets = st.from_images(x, probs, {"members": []})
    assert len(targets) == 19 and targets.meta["n_images"] == 20
    path = st.save(tmp_path / "soft.npz", targets)
    loaded = st.load(path, sha256=st.file_sha256(path))
    assert loaded.meta["labels"] == list(LABELS) and loaded.meta["schema"] == st.SCHEMA
    assert loaded.probs.dtype == np.float16 and loaded.sha256 == st.file_sha256(path)

    # Another order, a subset, one image the file has never seen, the model-input layout.
    extra, _ = synthetic_faces(1, seed=99)
    order = np.array([5, 2, 7, 19, 0])
    query = np.concatenate([x[order], extra])[..., None]
    got, covered = st.lookup(loaded, query)
    assert covered.tolist() == [True] * 5 + [False]
    np.testing.assert_allclose(got[:5], probs[order], atol=1e-3)  # float16
    assert not got[5].any()
    np.testing.assert_array_equal(got[1], got[2])  # the duplicate pair


def test_bad_files_are_refused_with_a_reason(tmp_path):
    x, _ = synthetic_faces(4, seed=3)
    path = st.save(tmp_path / "soft.npz", st.from_images(x, _onehot([0, 1, 2, 3]), {}))
    with pytest.raises(FerError, match="no such file"):
        st.load(tmp_path / "nope.npz")
    with pytest.raises(FerError, match="changed since the run started"):
        st.load(path, sha256="0" * 64)
    bad = tmp_path / "labels.npz"
    with np.load(path) as d:
        meta = json.loads(str(d["meta"]))
        np.savez(bad, keys=d["keys"], probs=d["probs"],
                 meta=np.array(json.dumps({**meta, "labels": meta["labels"][::-1]})))
    with pytest.raises(FerError, match="another label order"):
        st.load(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FerError, match="cannot read"):
        st.load(tmp_path / "junk.npz")


def test_uncovered_images_train_hard_only_and_no_coverage_is_refused(tmp_path):
    x, y = synthetic_faces(10, seed=3)
    path = st.save(tmp_path / "soft.npz", st.from_images(x[:6], _onehot(y[:6]), {}))
    said = []
    probs = st.training_targets(path, x, sha256=None, say=said.append)
    assert (probs[:6].sum(1) > 0.99).all() and not probs[6:].any()
    assert "6 of 10 training images covered; 4 not covered" in said[0]
    other, _ = synthetic_faces(5, seed=4)
    with pytest.raises(FerError, match="covers none of the 5 training images"):
        st.training_targets(path, other, sha256=None)


# --------------------------------------------------------------------------- the loss


def _trainer(**kw):
    from training.fit.trainer import Trainer
    from training.models import build_model

    return Trainer(build_model("baseline_cnn"), None, **kw)


def test_uncovered_samples_get_the_hard_loss_alone():
    trainer = _trainer(kd_alpha=0.3, kd_temperature=2.0)
    s = np.array([[0.7, 0.1, 0.05, 0.05, 0.05, 0.03, 0.02]] * 2, dtype="float32")
    t = np.array([[0.1, 0.1, 0.1, 0.4, 0.1, 0.1, 0.1]] * 2, dtype="float32")
    y = np.array([0, 0])

    def loss(mask):
        return float(keras.ops.convert_to_numpy(trainer.compute_loss(
            y=y, y_pred={"probs": s, "teacher": t, "teacher_mask": np.array(mask, "float32")})))

    hard = -np.log(0.7)
    ps, pt = s[0] ** 0.5 / (s[0] ** 0.5).sum(), t[0] ** 0.5 / (t[0] ** 0.5).sum()
    kd = 0.3 * hard + 0.7 * 4.0 * float((pt * np.log(pt / ps)).sum())
    assert loss([1, 1]) == pytest.approx(kd, rel=1e-4)
    assert loss([0, 0]) == pytest.approx(hard, rel=1e-4)
    assert loss([1, 0]) == pytest.approx((kd + hard) / 2, rel=1e-4)


def test_soft_targets_follow_their_images_through_mixup():
    """Image i is flat grey 10*i and its target names class i; after mixup the student's
    input must still be the mix of the images its target mixes."""
    from training.fit.trainer import Trainer

    inp = keras.Input((48, 48, 1))
    mean = keras.layers.GlobalAveragePooling2D()(inp)
    core = keras.Model(inp, keras.layers.Dense(
        7, kernel_initializer="ones", bias_initializer="zeros")(mean))  # every output: mean pixel
    trainer = Trainer(core, None, mixup_alpha=1.0, seed=3)
    x = np.repeat(10.0 * np.arange(7, dtype="float32"), 48 * 48).reshape(7, 48, 48, 1)
    soft = _onehot(range(7)).astype("float32")
    for _ in range(3):
        out = trainer(Trainer.inputs(x, soft), training=True)
        teacher = keras.ops.convert_to_numpy(out["teacher"])
        image_mean = keras.ops.convert_to_numpy(out["probs"])[:, 0]
        lam = float(keras.ops.convert_to_numpy(out["lam"]))
        assert 0.5 <= lam < 1.0 and not np.allclose(teacher, soft)  # really mixed
        np.testing.assert_allclose(image_mean, 10.0 * teacher @ np.arange(7), rtol=1e-4)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(out["teacher_mask"]), 1.0)
    # Inference (validation) is the student alone, whatever the input carries.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(trainer(Trainer.inputs(x, soft))),
                               keras.ops.convert_to_numpy(core(x)))


def test_soft_targets_exclude_teachers_and_must_exist(tmp_path):
    x, y = synthetic_faces(4, seed=3)
    path = st.save(tmp_path / "soft.npz", st.from_images(x, _onehot(y), {}))
    with pytest.raises(FerError, match="give one of them"):
        _cfg(soft_targets=str(path), teachers=[str(tmp_path)]).check()
    with pytest.raises(FerError, match="no such file"):
        train(_cfg(soft_targets=str(tmp_path / "gone.npz")), {}, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()  # checked before the run folder is written
    assert _cfg(soft_targets=str(path)).uses_trainer


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_soft_targets_really_drive_the_loss(tmp_path):
    """kd_alpha 0: only the file counts, and per image it names the class after the true one
    (the student can only learn that if each target followed its image through shuffling)."""
    x, y = synthetic_faces(160, seed=1)
    xv, yv = synthetic_faces(64, seed=2)
    shifted = (yv + 1) % 7
    path = st.save(tmp_path / "shifted.npz", st.from_images(x, _onehot((y + 1) % 7), {}))
    run = tmp_path / "run"
    # val carries the shifted labels so best.keras is the epoch that follows the file best.
    train(_cfg(soft_targets=str(path), kd_alpha=0.0, kd_temperature=1.0, epochs=4, lr=0.02,
               class_weights=False, mixup=0.2),
          {"train": (x, y), "val": (xv, shifted)}, run, verbose=0)
    pred = np.load(run / "predictions" / "val.npz")["probs"].argmax(1)
    assert (pred == shifted).mean() > 0.4 and (pred == yv).mean() < 0.2, (pred == yv).mean()


def _app() -> typer.Typer:
    from training.commands.ensemble import ensemble
    from training.commands.train import train as train_command

    app = typer.Typer()
    app.command("ensemble")(ensemble)
    app.command("train")(train_command)
    return app


def _invoke(*args):
    res = CliRunner().invoke(_app(), [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    assert res.exit_code == 0, res.output
    return res.output


@pytest.mark.slow
def test_ensemble_writes_the_soft_vote_and_a_student_trains_and_resumes_on_it(tmp_path):
    from training.data import load_splits
    from training.ensemble.voting import weighted_average
    from training.models.predict import predict_split
    from training.models.serialization import load_model

    x, y = synthetic_faces(128, seed=11)
    x[5] = x[4]  # a duplicate with (maybe) another label, as in FER2013
    usage = ["Training"] * 80 + ["PublicTest"] * 24 + ["PrivateTest"] * 24
    csv = tmp_path / "fer2013.csv"
    write_csv(csv, x, y, usage)
    runs = tmp_path / "runs"
    for name, seed in (("a", 0), ("b", 1)):
        _invoke("train", "--model", "baseline_cnn", "--epochs", 1, "--batch-size", 32,
                "--seed", seed, "--fer2013", csv, "--aux", "none", "--name", name,
                "--runs-dir", runs, "--verbose", 0)

    soft = tmp_path / "soft.npz"
    out = _invoke("ensemble", runs / "a", runs / "b", "--weights", "2,1", "--tta",
                  "--out", tmp_path / "report", "--save-soft-targets", soft)
    assert "80 training images (79 distinct)" in out
    targets = st.load(soft)
    assert [(m["name"], m["weight"]) for m in targets.meta["members"]] == [("a", 2.0),
                                                                          ("b", 1.0)]
    assert targets.meta["tta"] is True and targets.meta["data"]["fer2013"] == str(csv)
    train_x = load_splits(fer2013=csv)["train"].x
    votes = [predict_split(load_model(runs / n / "best.keras"), train_x,
                           np.zeros(80, "int64")).scored(True) for n in ("a", "b")]
    want = weighted_average(votes, [2, 1])
    got, covered = st.lookup(targets, train_x)
    assert covered.all()
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=2e-3)  # float16 storage

    # The student: config.json pins the file; resume checks it is still the same file.
    _invoke("train", "--model", "baseline_cnn", "--epochs", 1, "--batch-size", 32,
            "--fer2013", csv, "--aux", "none", "--soft-targets", soft, "--kd-alpha", 0.3,
            "--name", "student", "--runs-dir", runs, "--verbose", 0)
    config = json.loads((runs / "student" / "config.json").read_text())
    assert config["soft_targets"] == str(soft)
    assert config["soft_targets_sha256"] == st.file_sha256(soft)
    assert config["teachers"] == [] and config["kd_alpha"] == 0.3

    moved = tmp_path / "elsewhere.npz"
    shutil.move(soft, moved)
    resume = ("train", "--resume", "--name", "student", "--runs-dir", runs, "--verbose", 0)
    with pytest.raises(FerError, match="no such file"):
        _invoke(*resume, "--epochs", 2)
    _invoke(*resume, "--epochs", 2, "--soft-targets", moved)  # same content, new place
    assert json.loads((runs / "student" / "metrics.json").read_text())["epochs_run"] == 2

    with pytest.raises(FerError, match="soft_targets: run has none"):  # "a" trained without
        _invoke("train", "--resume", "--name", "a", "--runs-dir", runs, "--epochs", 2,
                "--soft-targets", moved)

    st.save(moved, st.from_images(train_x, _onehot(np.zeros(80, int)), {}))  # other content
    with pytest.raises(FerError, match="changed since the run started"):
        _invoke(*resume, "--epochs", 3, "--soft-targets", moved)
