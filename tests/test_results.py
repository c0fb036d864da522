"""`fer-hybrid results`: our measured rows next to the published FER2013 numbers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from training.core.errors import FerError
from training.evaluate.results import PUBLISHED, collect, ensemble_row, render_results, run_row


def _run(root, name, *, acc_target, n=100, params=12345, test=True, seed=0):
    """A run folder whose PrivateTest predictions are right on about `acc_target` of images."""
    rng = np.random.default_rng(seed)
    run = root / name
    (run / "predictions").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": "vgg", "params": params}))
    y = rng.integers(0, 7, n)
    right = rng.random(n) < acc_target
    pred = np.where(right, y, (y + 1) % 7)
    probs = np.full((n, 7), 0.05, dtype="float32")
    probs[np.arange(n), pred] = 0.7
    flip = probs.copy()
    flip[np.arange(n), y] += 1.5  # the mirrored view fixes every mistake (after averaging)
    if test:
        np.savez(run / "predictions" / "test.npz", probs=probs, probs_flip=flip, y=y)
    return run, float((pred == y).mean())


def _ensemble_json(root, names):
    path = root / "ens" / "ensemble.json"
    path.parent.mkdir()
    path.write_text(json.dumps({
        "schema": "fer-hybrid/ensemble-report@1",
        "selection": {"split_name": "PublicTest"},
        "selected": [{"name": n, "weight": 1.0} for n in names],
        "ensemble": {"test": {"n": 100, "accuracy": 0.61, "accuracy_tta": 0.63,
                              "macro_f1": 0.5, "macro_f1_tta": 0.52}},
    }))
    return path


def test_published_rows_carry_citations():
    names = " ".join(p.name for p in PUBLISHED)
    for who in ("Khanzada", "Khaireddin", "Pramerdorfer", "Kim"):
        assert who in names
    accs = {round(p.accuracy, 4) for p in PUBLISHED}
    assert {0.758, 0.732, 0.7328, 0.752, 0.737} <= accs
    assert all(len(p.citation) > 20 for p in PUBLISHED)


def test_member_row_scores_plain_and_tta(tmp_path):
    run, acc = _run(tmp_path, "a", acc_target=0.6)
    row = run_row(run)
    assert row["accuracy"] == pytest.approx(acc)
    assert row["accuracy_tta"] == pytest.approx(1.0)
    assert 0 < row["macro_f1"] <= 1 and row["params"] == 12345 and row["n"] == 100


def test_missing_test_predictions_are_said_not_guessed(tmp_path):
    run, _ = _run(tmp_path, "b", acc_target=0.5, test=False)
    row = run_row(run)
    assert row["accuracy"] is None and "evaluate" in row["note"]
    with pytest.raises(FerError):
        run_row(tmp_path / "nope")
    with pytest.raises(FerError, match="ensemble"):
        ensemble_row(tmp_path / "nope.json")


def test_table_marks_ours_and_published(tmp_path):
    a, _ = _run(tmp_path, "a", acc_target=0.6, params=1000)
    b, _ = _run(tmp_path, "b", acc_target=0.4, params=2_500_000, seed=1)
    ens = _ensemble_json(tmp_path, ["a", "b"])
    rows = collect([a, b], [ens.parent])
    assert rows[-1]["params"] == 2_501_000  # summed over the selected members
    text = render_results(rows)
    lines = text.splitlines()
    ours = [ln for ln in lines if ln.startswith("| ours (measured)")]
    published = [ln for ln in lines if ln.startswith("| published [")]
    assert len(ours) == 3 and len(published) == len(PUBLISHED)
    assert "| a |" in ours[0]  # best member first, ensembles after the members
    assert "ensemble (2: a, b)" in ours[2] and "61.00%" in ours[2] and "63.00%" in ours[2]
    assert "75.80%" in text and "~73.2%" in text and "arXiv:1612.02903" in text
    assert "not re-measured" in text and "n test != 3589" in text


def test_cli_writes_markdown(tmp_path):
    from training.cli import app

    a, _ = _run(tmp_path, "a", acc_target=0.6)
    ens = _ensemble_json(tmp_path, ["a"])
    out = tmp_path / "docs" / "results.md"
    result = CliRunner().invoke(app, ["results", str(a), "--ensemble-report", str(ens),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# FER2013 PrivateTest results") and "Khanzada" in text
    result = CliRunner().invoke(app, ["results"])
    assert isinstance(result.exception, FerError)


def _fp(agree, agree_tta, share, share_tta, n=97):
    """A FER+ block as `fer-hybrid evaluate` / `ensemble` write it
    (training.data.ferplus_agreement.ferplus_scores)."""
    return {"ties": "a tie for the most votes counts as agreement with any tied class",
            "plain": {"n": n, "majority_agreement": agree, "mean_vote_share": share},
            "tta": {"n": n, "majority_agreement": agree_tta, "mean_vote_share": share_tta}}


def test_ferplus_columns_come_from_the_evaluation_or_say_not_measured(tmp_path):
    """FER+ agreement is copied from evaluation/metrics_test.json (and ensemble.json) when the
    votes were there; "-" for a run evaluated without them, for one whose evaluation scored
    other rows, and for the published papers: never a made-up number."""
    a, _ = _run(tmp_path, "a", acc_target=0.6)
    b, _ = _run(tmp_path, "b", acc_target=0.5, seed=1)
    c, _ = _run(tmp_path, "c", acc_target=0.4, seed=2)
    for run, n, block in ((a, 100, _fp(0.6512, 0.6634, 0.5511, 0.5623)), (b, 100, None),
                          (c, 50, _fp(0.9, 0.9, 0.9, 0.9))):
        (run / "evaluation").mkdir()
        (run / "evaluation" / "metrics_test.json").write_text(
            json.dumps({"n": n, "split": "test", "ferplus": block}))
    ens = _ensemble_json(tmp_path, ["a", "b"])
    doc = json.loads(ens.read_text())
    doc["ensemble"]["test"]["ferplus"] = _fp(0.7001, 0.7102, 0.6003, 0.6104)
    ens.write_text(json.dumps(doc))
    rows = collect([a, b, c], [ens])
    assert rows[0]["ferplus"]["tta"]["majority_agreement"] == 0.6634
    npz = a / "predictions" / "test.npz"  # predictions newer than the evaluation: stale, "-"
    later = (a / "evaluation" / "metrics_test.json").stat().st_mtime + 10
    os.utime(npz, (later, later))
    assert run_row(a)["ferplus"] is None
    os.utime(npz, (later - 20, later - 20))
    assert rows[1]["ferplus"] is None and rows[2]["ferplus"] is None  # c: other rows (n 50)
    text = render_results(rows)
    header = next(ln for ln in text.splitlines() if ln.startswith("|  | model"))
    assert "FER+ majority agreement | FER+ agreement (flip TTA) | FER+ mean vote share" in header
    line = {ln.split(" | ")[1]: ln for ln in text.splitlines() if ln.startswith("| ours")}
    assert "| 65.12% | 66.34% | 55.11% | 56.23% |" in line["a"]
    assert "| - | - | - | - |" in line["b"] and "| - | - | - | - |" in line["c"]
    assert "| 70.01% | 71.02% | 60.03% | 61.04% |" in line["ensemble (2: a, b)"]
    published = [ln for ln in text.splitlines() if ln.startswith("| published [")]
    assert all("| - | - | - | - | - | - | - |" in ln for ln in published)
    assert "a tie counts as agreement with any tied" in text and "3,519 of 3,589" in text


def test_agreement_plot_places_our_rows_and_the_bench_peers(tmp_path, monkeypatch):
    """--agreement-plot: one point per row with FER+ agreement (flip TTA) against its FER2013
    accuracy (flip TTA), the bench's peers beside them, FER2013's own labels as a line; rows
    without agreement and our page's bench rows are not points."""
    import training.core.plots
    from training.cli import app
    from training.evaluate.results import agreement_points

    a, _ = _run(tmp_path, "a", acc_target=0.6)
    b, _ = _run(tmp_path, "b", acc_target=0.5, seed=1)
    block = {**_fp(0.6512, 0.6634, 0.5511, 0.5623, n=100),
             "fer2013_labels": {"n": 100, "majority_agreement": 0.6533, "mean_vote_share": 0.56}}
    (a / "evaluation").mkdir()
    (a / "evaluation" / "metrics_test.json").write_text(
        json.dumps({"n": 100, "split": "test", "ferplus": block}))
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"accuracy": {
        "ours": {"accuracy_flip_tta": 0.67, "ferplus": _fp(0.6, 0.66, 0.5, 0.56)},
        "human": {"accuracy_flip_tta": 0.68, "ferplus": _fp(0.65, 0.6542, 0.5, 0.5648)},
        "faceapi": {"accuracy_flip_tta": 0.603, "ferplus": None}}}))
    rows = collect([a, b])
    points = agreement_points(rows, json.loads(bench.read_text()))
    assert [(p["name"], p["kind"], p["agreement"]) for p in points] == [
        ("a", "ours", 0.6634), ("Human", "peer", 0.6542)]
    assert points[0]["accuracy"] == rows[0]["accuracy_tta"]

    drawn = {}
    real = training.core.plots.plot_agreement
    monkeypatch.setattr(training.core.plots, "plot_agreement", lambda pts, path, **kw: drawn.update(
        points=pts, **kw) or real(pts, path, **kw))
    png = tmp_path / "agreement.png"
    result = CliRunner().invoke(app, ["results", str(a), str(b), "--out", str(tmp_path / "r.md"),
                                      "--agreement-plot", str(png), "--bench", str(bench)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "(2 models)" in result.output
    assert drawn["points"] == points and drawn["fer2013_labels"] == 0.6533
    result = CliRunner().invoke(app, ["results", str(b), "--agreement-plot", str(png)])
    assert isinstance(result.exception, FerError) and "no row has FER+" in str(result.exception)
    result = CliRunner().invoke(app, ["results", str(a), "--bench", str(bench)])
    assert isinstance(result.exception, FerError) and "--agreement-plot" in str(result.exception)
