"""Ensembling from saved probabilities: greedy selection on val only, weights, reports, errors."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import training.ensemble.ensemble as ens
from training.commands.ensemble import ensemble as ensemble_command
from training.core.errors import FerError
from training.core.runs import Predictions, save_predictions
from training.ensemble.ensemble import (
    Candidate,
    build_ensemble,
    greedy_select,
    load_members,
    write_ensemble_report,
)
from training.ensemble.voting import parse_weights, weighted_average

N = 90


def probs_for(y, wrong_mask, seed, conf_right=0.7, conf_wrong=0.5):
    """Probabilities that are right where ~wrong_mask, confidently wrong (class y+1) where wrong_mask."""
    rng = np.random.default_rng(seed)
    n = len(y)
    rows = np.arange(n)
    top = np.where(wrong_mask, (y + 1) % 7, y)
    conf = np.where(wrong_mask, conf_wrong, conf_right)
    p = np.repeat(((1 - conf) / 6)[:, None], 7, axis=1) + rng.random((n, 7)) * 1e-3
    p[rows, top] = conf
    return (p / p.sum(1, keepdims=True)).astype("float32")


def make_preds(y, wrong_mask, seed):
    p = probs_for(y, wrong_mask, seed)
    return Predictions(probs=p, probs_flip=p.copy(), y=y)


@pytest.fixture()
def val_y():
    return np.arange(N, dtype="int64") % 7


def thirds(i):
    m = np.zeros(N, bool)
    m[i * 30 : (i + 1) * 30] = True
    return m


def test_greedy_picks_complementary_members_and_skips_bad_one(val_y):
    a = probs_for(val_y, thirds(0), 1)
    b = probs_for(val_y, thirds(1), 2)
    bad = probs_for(val_y, np.arange(N) % 3 != 0, 3)  # right on a third only
    res = greedy_select([bad, a, b], val_y)
    assert res.weights[0] == 0
    assert res.weights[1] >= 1 and res.weights[2] >= 1
    assert res.val_accuracy == pytest.approx(1.0)
    assert [h["val_accuracy"] for h in res.history] == sorted(
        h["val_accuracy"] for h in res.history
    )
    assert all(isinstance(w, int) for w in res.weights)


def test_greedy_repeats_become_integer_weights_and_max_members():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 40)
    members = []
    for _ in range(4):
        p = rng.random((40, 7)) ** 3
        p[np.arange(40), y] += rng.random(40) * 0.5
        members.append(p / p.sum(1, keepdims=True))
    single = [float(np.mean(p.argmax(1) == y)) for p in members]
    res = greedy_select(members, y)
    assert max(res.weights) >= 2  # picked again -> integer weight 2+
    assert sum(res.weights) == len(res.history)
    ens_acc = float(np.mean(weighted_average(members, res.weights).argmax(1) == y))
    assert ens_acc == pytest.approx(res.val_accuracy) and ens_acc > max(single)
    capped = greedy_select(members, y, max_members=2)
    assert sum(1 for w in capped.weights if w) <= 2
    assert capped.weights[int(np.argmax(single))] >= 1  # the best single model is picked first
    assert capped.val_accuracy <= res.val_accuracy


def test_selection_is_a_pure_function_of_val_arrays_only():
    params = list(inspect.signature(greedy_select).parameters)
    assert params == ["val_probs", "val_y", "max_members", "max_picks"]


def test_build_ensemble_never_looks_at_test_for_selection(val_y, monkeypatch):
    test_y = (np.arange(60, dtype="int64") * 3) % 7
    perfect_on_test = np.zeros(60, bool)
    all_wrong = np.ones(60, bool)
    members = [
        Candidate(
            "good", Path("good"), make_preds(val_y, thirds(0), 1), make_preds(test_y, all_wrong, 11)
        ),
        Candidate(
            "other",
            Path("other"),
            make_preds(val_y, thirds(1), 2),
            make_preds(test_y, all_wrong, 12),
        ),
        Candidate(
            "bad",
            Path("bad"),
            make_preds(val_y, np.arange(N) % 3 != 0, 3),
            make_preds(test_y, perfect_on_test, 13),
        ),
    ]
    seen = []
    real = ens.greedy_select

    def spy(val_probs, val_y_arg, **kw):
        seen.append((val_probs, val_y_arg))
        return real(val_probs, val_y_arg, **kw)

    monkeypatch.setattr(ens, "greedy_select", spy)
    report = build_ensemble(members, select="greedy", tta=True)
    ((val_probs, y_arg),) = seen
    assert y_arg is members[0].val.y
    for arr, m in zip(val_probs, members):
        np.testing.assert_allclose(arr, m.val.scored(True))
        assert arr.shape[0] == N  # never the 60 test rows
    weights = {m["name"]: m["weight"] for m in report["members"]}
    assert weights["bad"] == 0  # although it is perfect on test
    assert report["selection"]["split"] == "val" and "never used" in report["selection"]["note"]
    assert report["ensemble"]["val"]["accuracy"] == pytest.approx(1.0)
    assert report["ensemble"]["test"]["accuracy"] == pytest.approx(0.0)
    assert [s["name"] for s in report["selected"]] == ["good", "other"]


def test_explicit_weights_and_all(val_y):
    members = [
        Candidate("a", Path("a"), make_preds(val_y, thirds(0), 1), make_preds(val_y, thirds(0), 4)),
        Candidate("b", Path("b"), make_preds(val_y, thirds(1), 2), make_preds(val_y, thirds(1), 5)),
    ]
    r = build_ensemble(members, weights=[0, 1])
    assert r["selection"]["method"] == "weights"
    assert r["ensemble"]["val"]["accuracy"] == pytest.approx(r["members"][1]["val"]["accuracy"])
    assert r["members"][1]["weight_normalised"] == 1.0
    r = build_ensemble(members, select="all", tta=False)
    assert [m["weight"] for m in r["members"]] == [1.0, 1.0] and r["tta_flip"] is False
    r = build_ensemble(members, select="all", max_members=1)
    assert sum(m["weight"] > 0 for m in r["members"]) == 1
    np.testing.assert_allclose(
        weighted_average([np.eye(7)[:2], np.eye(7)[1:3]], [1, 3]),
        (np.eye(7)[:2] + 3 * np.eye(7)[1:3]) / 4,
    )


def test_errors(val_y):
    assert parse_weights("1, 2,0.5", 3) == [1.0, 2.0, 0.5]
    with pytest.raises(FerError, match="2 values but there are 3"):
        parse_weights("1,2", 3)
    with pytest.raises(FerError, match="numbers"):
        parse_weights("1,x", 2)
    with pytest.raises(FerError, match="non-negative"):
        parse_weights("-1,2", 2)
    with pytest.raises(FerError, match="non-negative"):
        parse_weights("0,0", 2)
    a = Candidate("a", Path("a"), make_preds(val_y, thirds(0), 1), make_preds(val_y, thirds(0), 1))
    other_y = val_y.copy()
    other_y[0] = (other_y[0] + 1) % 7
    b = Candidate("b", Path("b"), make_preds(other_y, thirds(0), 1), make_preds(val_y, thirds(0), 1))
    with pytest.raises(FerError, match="labels differ"):
        build_ensemble([a, b])
    c = Candidate(
        "c", Path("c"), make_preds(val_y, thirds(0), 1), make_preds(val_y[:10], thirds(0)[:10], 1)
    )
    with pytest.raises(FerError, match="shape"):
        build_ensemble([a, c])
    with pytest.raises(FerError, match="cannot be combined"):
        build_ensemble([a, a], weights=[1, 1], max_members=1)
    with pytest.raises(FerError, match="unknown --select"):
        build_ensemble([a], select="best")


def write_run(root: Path, name: str, val: Predictions, test: Predictions | None) -> Path:
    run = root / name
    save_predictions(run / "predictions" / "val.npz", val)
    if test is not None:
        save_predictions(run / "predictions" / "test.npz", test)
    return run


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("ensemble")(ensemble_command)

    @app.command("noop")
    def _noop() -> None:
        pass

    return app


def test_cli_from_saved_predictions_only(tmp_path, val_y):
    test_y = val_y[::-1].copy()
    runs = [
        write_run(
            tmp_path, "run-a", make_preds(val_y, thirds(0), 1), make_preds(test_y, thirds(1), 4)
        ),
        write_run(
            tmp_path, "run-b", make_preds(val_y, thirds(1), 2), make_preds(test_y, thirds(2), 5)
        ),
        write_run(
            tmp_path,
            "run-bad",
            make_preds(val_y, np.arange(N) % 3 != 0, 3),
            make_preds(test_y, thirds(0), 6),
        ),
    ]
    out = tmp_path / "report"
    res = CliRunner().invoke(_app(), ["ensemble", *map(str, runs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "never used for selection" in res.output and "ENSEMBLE" in res.output
    for name in ("ensemble.md", "ensemble.json", "confusion_test.png", "confusion_test.json"):
        assert (out / name).is_file()
    report = json.loads((out / "ensemble.json").read_text())
    assert [m["name"] for m in report["members"]] == ["run-a", "run-b", "run-bad"]
    assert report["members"][2]["weight"] == 0 and report["selection"]["method"] == "greedy"
    md = (out / "ensemble.md").read_text()
    assert "PrivateTest (test) was never used for selection" in md
    assert report["export_command"].startswith("fer-hybrid export ")
    assert report["export_command"] in md and "run-bad" not in report["export_command"]
    assert "| **ensemble** |" in md and "run-bad" in md and "confusion_test.png" in md

    res = CliRunner().invoke(
        _app(), ["ensemble", *map(str, runs), "--weights", "1,2", "--out", str(out)]
    )
    assert isinstance(res.exception, FerError) and "2 values but there are 3" in str(res.exception)
    res = CliRunner().invoke(
        _app(),
        [
            "ensemble",
            *map(str, runs),
            "--weights",
            "1,2,0",
            "--no-tta",
            "--out",
            str(tmp_path / "w"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert (
        json.loads((tmp_path / "w" / "ensemble.json").read_text())["selection"]["method"]
        == "weights"
    )


def test_missing_predictions(tmp_path, val_y):
    run = write_run(tmp_path, "no-test", make_preds(val_y, thirds(0), 1), None)
    with pytest.raises(FerError, match=r"fer-hybrid evaluate .*--split test"):
        load_members([run])
    with pytest.raises(FerError, match="does not exist"):
        load_members([tmp_path / "ghost"])


def test_missing_predictions_are_computed_from_best_keras(tmp_path):
    import keras
    from conftest import synthetic_faces

    inputs = keras.Input((48, 48, 1))
    h = keras.layers.Flatten()(
        keras.layers.AveragePooling2D(8)(keras.layers.Rescaling(1 / 255)(inputs))
    )
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(h))
    run = tmp_path / "runs" / "m"
    run.mkdir(parents=True)
    model.save(run / "best.keras")
    x, y = synthetic_faces(16, seed=2)
    data = {"val": (x[:8], y[:8]), "test": (x[8:], y[8:])}
    (member,) = load_members([run], data_loader=data.__getitem__)
    assert member.val.n == 8 and member.test.n == 8
    assert (run / "predictions" / "val.npz").is_file() and (
        run / "predictions" / "test.npz"
    ).is_file()
    files = write_ensemble_report(build_ensemble([member]), tmp_path / "rep")
    assert files["markdown"].is_file()


def test_real_cli_reports_fer_error_in_one_line(tmp_path, monkeypatch, capsys):
    from training import cli

    monkeypatch.setattr("sys.argv", ["fer-hybrid", "ensemble", str(tmp_path / "ghost")])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "does not exist" in err and "\n" not in err


def _votes_for(y: np.ndarray):
    """FER+ votes for test rows labelled y: row i's majority is y[i] (6 votes, 4 'unknown'),
    except every 9th row, whose majority is 'not a face' (not scored)."""
    from test_ferplus import col

    from contract import LABELS
    from training.data.ferplus import COLUMN_CLASS, FerPlusVotes

    column = {k: c for c, k in COLUMN_CLASS.items() if k}
    rows = [col(NF=10) if i % 9 == 8 else col(**{column[LABELS[c]]: 6, "unknown": 4})
            for i, c in enumerate(y)]
    return FerPlusVotes(np.array(rows, "uint8"), np.full(len(y), 2, "uint8"))


def write_fer_with_votes(data: Path, test_y: np.ndarray) -> Path:
    """data/fer2013.csv (one Training and one PublicTest row, then PrivateTest rows labelled
    test_y, image i filled with grey level i) and data/fer2013new.csv (`_votes_for(test_y)`)."""
    from training.data.ferplus import COLUMNS

    data.mkdir()
    usages = ["Training", "PublicTest"] + ["PrivateTest"] * len(test_y)
    labels = [0, 0, *test_y.tolist()]
    (data / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "".join(
        f"{c},{' '.join([str(max(i - 2, 0))] * 2304)},{u}\n"
        for i, (c, u) in enumerate(zip(labels, usages))))
    votes = _votes_for(test_y).votes
    (data / "fer2013new.csv").write_text("Usage,Image name," + ",".join(COLUMNS) + "\n" + "".join(
        f"{u},fer{i:07d}.png,{','.join(map(str, votes[i - 2] if i >= 2 else [10] + [0] * 9))}\n"
        for i, u in enumerate(usages)))
    return data


def test_members_and_ensemble_agreement_with_the_ferplus_majority(val_y):
    """With PrivateTest's FER+ votes each member's and the ensemble's test scores carry the
    agreement block (`training.data.ferplus_agreement.ferplus_metrics`); without them, one line says
    why."""
    from training.core.report import ferplus_cells
    from training.data.ferplus_agreement import ferplus_metrics

    test_y = (np.arange(60, dtype="int64") * 3) % 7
    members = [
        Candidate("a", Path("a"), make_preds(val_y, thirds(0), 1), make_preds(test_y, thirds(0)[:60], 11)),
        Candidate("b", Path("b"), make_preds(val_y, thirds(1), 2), make_preds(test_y, thirds(1)[:60], 12)),
    ]
    votes = _votes_for(test_y)  # the majority is the FER2013 label on every scored row
    report = build_ensemble(members, select="all", tta=True, votes=votes, votes_note="FER+ votes: x")
    for row, m in zip(report["members"], members):
        fp = row["test"]["ferplus"]
        assert fp == ferplus_metrics(m.test, votes) and fp["plain"]["n"] == 60 - 6
        # a member is wrong on 30 of the 60 rows, 27 of them scored
        assert fp["plain"]["majority_agreement"] == pytest.approx(27 / 54)
    ens_fp = report["ensemble"]["test"]["ferplus"]
    assert ens_fp["tta"]["majority_agreement"] == pytest.approx(report["ensemble"]["test"]["accuracy_tta"], abs=0.05)
    md = ens.render_markdown(report)
    assert "## Agreement with people on test (FER+ ten-annotator votes)" in md
    assert "On the 54 PrivateTest rows" in md and "tie for the most votes" in md
    assert f"| **ensemble** | {' | '.join(ferplus_cells(ens_fp))} |" in md

    bare = build_ensemble(members, select="all", votes_note="no FER+ votes next to x")
    assert "ferplus" not in bare["ensemble"]["test"] and "ferplus" not in bare["members"][0]["test"]
    assert "Not computed: no FER+ votes next to x." in ens.render_markdown(bare)


def test_cli_reports_agreement_when_the_votes_are_next_to_the_data(tmp_path, val_y):
    """A synthetic FER2013 CSV with its FER+ votes beside it: the ensemble CLI adds each
    member's and the ensemble's agreement; with the votes gone, one line says why not."""
    test_y = val_y[::-1].copy()
    runs = [write_run(tmp_path, "run-a", make_preds(val_y, thirds(0), 1), make_preds(test_y, thirds(1), 4)),
            write_run(tmp_path, "run-b", make_preds(val_y, thirds(1), 2), make_preds(test_y, thirds(2), 5))]
    data = write_fer_with_votes(tmp_path / "data", test_y)
    out = tmp_path / "report"
    res = CliRunner().invoke(_app(), ["ensemble", *map(str, runs), "--data-dir", str(data),
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "ensemble agreement with the FER+ majority on test (flip TTA, 80 rows" in res.output
    report = json.loads((out / "ensemble.json").read_text())
    assert report["members"][0]["test"]["ferplus"]["plain"]["n"] == 80
    assert "## Agreement with people on test" in (out / "ensemble.md").read_text()

    (data / "fer2013new.csv").unlink()
    res = CliRunner().invoke(_app(), ["ensemble", *map(str, runs), "--data-dir", str(data),
                                      "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "no FER+ votes" in res.output and "FER2013 accuracy only" in res.output
    assert "Not computed: no FER+ votes" in (out / "ensemble.md").read_text()
