"""`--targets fer2013|ferplus|mix:A`: the per-image targets built from the FER+ votes (hand-built
votes with known answers), the loss they drive (numerically, on a toy batch), selection by FER+
agreement, and one tiny training run through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from conftest import synthetic_faces
from test_ferplus import col, write_fer_with_votes
from typer.testing import CliRunner

from training.core.errors import FerError
from training.data.ferplus import COLUMNS, FerPlusVotes
from training.fit.targets import (
    Targets,
    label_targets,
    match_votes,
    parse_targets,
    vote_distribution,
)


def votes_of(*rows: list[int]) -> FerPlusVotes:
    return FerPlusVotes(np.array(rows, "uint8"), np.zeros(len(rows), "uint8"))


def test_parse_targets_forms_and_errors():
    assert parse_targets("fer2013") == Targets("fer2013")
    assert parse_targets(" FERPLUS ") == Targets("ferplus")
    assert parse_targets("mix:0.25") == Targets("mix", 0.25) and str(Targets("mix", 0.5)) == "mix:0.5"
    for bad in ("votes", "mix", "mix:", "mix:1.5", "mix:-0.1", "mix:half"):
        with pytest.raises(FerError, match="targets"):
            parse_targets(bad)


def test_vote_distribution_is_the_share_of_votes_over_our_seven_classes():
    v = votes_of(col(happiness=6, neutral=2, contempt=2), col(NF=10))
    dist = vote_distribution(v.seven)
    # LABELS order: angry, disgust, fear, happy, sad, surprise, neutral; contempt is not ours
    np.testing.assert_allclose(dist[0], [0, 0, 0, 0.75, 0, 0, 0.25])
    np.testing.assert_array_equal(dist[1], np.zeros(7))


VOTES = votes_of(
    col(happiness=8, neutral=2),  # happy 0.8 / neutral 0.2
    col(NF=10),  # not a face: left out under ferplus
    col(contempt=5, anger=3, unknown=2),  # top is contempt: left out under ferplus
    col(fear=4, sadness=4, surprise=2),  # tie fear / sad: kept
    col(),  # an aux image: no votes
)
Y = np.array([3, 0, 1, 5, 6])  # FER2013 (or aux) labels
COVERED = np.array([True, True, True, True, False])


def test_ferplus_targets_are_the_vote_shares_and_leave_out_rows_without_a_class_of_ours():
    lt = label_targets(Targets("ferplus"), Y, VOTES, COVERED)
    assert lt.keep.tolist() == [True, False, False, True, True]
    np.testing.assert_allclose(lt.targets[0], [0, 0, 0, 0.8, 0, 0, 0.2])
    np.testing.assert_allclose(lt.targets[1], [0, 0, 0.4, 0, 0.4, 0.2, 0])
    np.testing.assert_array_equal(lt.targets[2], np.eye(7)[6])  # aux: its own label
    assert lt.labels.tolist() == [3, 2, 6]  # the majority (first on a tie); aux keeps its own
    assert "2 left out" in lt.note and "1 images without FER+ votes" in lt.note


def test_mix_targets_blend_the_label_and_the_votes_and_keep_every_row():
    lt = label_targets(Targets("mix", 0.25), Y, VOTES, COVERED)
    assert lt.keep.all() and lt.labels.tolist() == Y.tolist()
    np.testing.assert_allclose(lt.targets[0], 0.25 * np.eye(7)[3] + 0.75 * np.array(
        [0, 0, 0, 0.8, 0, 0, 0.2]), atol=1e-6)
    # a row without a single vote for our classes has nothing to mix: its one-hot label
    np.testing.assert_array_equal(lt.targets[1], np.eye(7)[0])
    np.testing.assert_allclose(lt.targets[2], 0.25 * np.eye(7)[1] + 0.75 * np.eye(7)[0])
    np.testing.assert_allclose(lt.targets.sum(axis=1), 1.0, atol=1e-6)
    fer = label_targets(Targets("fer2013"), Y, VOTES, COVERED)
    np.testing.assert_array_equal(fer.targets, np.eye(7)[Y])


def test_votes_are_matched_by_image_content():
    fer_x, _ = synthetic_faces(6, seed=3)
    fer_x[4] = fer_x[1]  # an exact duplicate: the first row's votes serve both
    votes = votes_of(*[col(**{COLUMNS[i]: 10}) for i in range(6)])
    aux, _ = synthetic_faces(1, seed=9)
    x = np.concatenate([fer_x[[5, 4, 0]], aux])
    matched, covered = match_votes(x, fer_x, votes)
    assert covered.tolist() == [True, True, True, False]
    assert matched.votes.argmax(axis=1)[:3].tolist() == [5, 1, 0]
    assert matched.votes[3].sum() == 0
    with pytest.raises(FerError, match="none of the training images"):
        label_targets(Targets("ferplus"), np.zeros(1, "int64"), matched, np.zeros(1, bool))


def test_the_loss_trains_towards_the_label_distributions_on_a_toy_batch():
    """Trainer's hard loss with label distributions q is the (smoothed, weighted, mixed)
    cross-entropy against q, computed here by hand; one-hot q gives the plain labels' loss."""
    import keras

    from training.fit.trainer import Trainer

    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(7, activation="softmax")])
    x = np.random.default_rng(0).uniform(0, 255, (6, 48, 48, 1)).astype("float32") / 255.0
    y = np.array([0, 1, 2, 3, 4, 5])
    q = np.random.default_rng(1).dirichlet(np.ones(7), 6).astype("float32")
    w = np.linspace(0.5, 2.0, 6).astype("float32")
    p = np.asarray(core(x)).astype("float64")

    def ce(t):
        t = t * 0.9 + 0.1 / 7
        return -(t * np.log(np.clip(p, 1e-7, 1.0))).sum(axis=1)

    trainer = Trainer(core, None, label_smoothing=0.1)
    out = trainer(Trainer.inputs(x, label_targets=q), training=True)
    loss = float(trainer.compute_loss(y=y, y_pred=out, sample_weight=w))
    assert loss == pytest.approx(float((w * ce(q)).mean()), rel=1e-5)
    plain = float(trainer.compute_loss(y=y, y_pred=trainer(x, training=True), sample_weight=w))
    assert plain != pytest.approx(loss, rel=1e-3)  # the targets changed the loss ...
    onehot = trainer(Trainer.inputs(x, label_targets=np.eye(7, dtype="float32")[y]),
                     training=True)
    assert float(trainer.compute_loss(y=y, y_pred=onehot, sample_weight=w)) == pytest.approx(
        plain, rel=1e-5)  # ... and one-hot targets are the labels

    mixer = Trainer(core, None, mixup_alpha=0.4, label_smoothing=0.1, seed=3)
    out = mixer(Trainer.inputs(x, label_targets=q), training=True)
    lam, perm = float(out["lam"]), np.asarray(out["perm"])
    p = np.asarray(out["probs"]).astype("float64")
    expected = lam * w * ce(q) + (1 - lam) * w[perm] * ce(q[perm])
    assert float(mixer.compute_loss(y=y, y_pred=out, sample_weight=w)) == pytest.approx(
        float(expected.mean()), rel=1e-5)


def test_validation_under_ferplus_scores_agreement_with_the_votes():
    from training.fit.validation import vote_metrics

    votes = votes_of(col(happiness=6, neutral=4), col(anger=5, fear=5), col(NF=10),
                     col(sadness=7, surprise=3))
    probs = np.full((4, 7), 0.01)
    probs[[0, 1, 2, 3], [6, 2, 0, 4]] = 0.94  # neutral (no), fear (tie: yes), -, sad (yes)
    m = vote_metrics(probs, votes)
    assert m["val_accuracy"] == pytest.approx(2 / 3)
    dist = vote_distribution(votes.seven)[[0, 1, 3]]
    assert m["val_loss"] == pytest.approx(-(dist * np.log(probs[[0, 1, 3]])).sum(1).mean())


def _app() -> typer.Typer:
    from training.commands.train import train

    app = typer.Typer()
    app.command("train")(train)
    app.command("other")(lambda: None)  # two commands: typer keeps the "train" subcommand
    return app


@pytest.mark.slow
def test_cli_trains_on_the_votes_and_selects_by_agreement(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    votes = write_fer_with_votes(
        data, (("Training", 96, 1), ("PublicTest", 32, 2), ("PrivateTest", 8, 3)),
        lambda i: col(NF=10) if i % 8 == 7 else col(**{COLUMNS[i % 7]: 7, "unknown": 3}))
    args = ["train", "--model", "baseline_cnn", "--epochs", "1", "--batch-size", "32",
            "--data-dir", str(data), "--aux", "none", "--runs-dir", str(tmp_path / "runs"),
            "--verbose", "0", "--targets", "ferplus", "--name", "fp"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code != 0 and "needs the FER+ votes" in str(res.exception)

    (data / "fer2013new.csv").write_text(votes)
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, (res.output, res.exception)
    assert "FER+ vote distribution for 84 FER2013 images; 12 left out" in res.output
    assert "FER+ majority agreement on 28 PublicTest images" in res.output
    run = tmp_path / "runs" / "fp"
    assert json.loads((run / "config.json").read_text())["targets"] == "ferplus"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["selected_by"] == "val_ferplus_agreement"
    assert 0.0 <= metrics["val_ferplus_agreement"] <= 1.0 and "val_accuracy" in metrics
    assert "done: best FER+ agreement" in res.output
