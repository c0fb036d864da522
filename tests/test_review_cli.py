"""The review verbs for scripts (`fer-hybrid data queue/accept/reject/relabel/reset`) and the
review counts in `data stats`, through the real entry point."""

from __future__ import annotations

import io
import json
import sys

import pytest
from conftest import main_in_process
from test_backend_helpers import image_bytes

from backend.images import clean_crop
from backend.storage import UploadStore


@pytest.fixture()
def store(tmp_path):
    store = UploadStore(tmp_path / "custom")
    for i, label in enumerate(("happy", "sad", "fear", "happy")):
        store.add(clean_crop(image_bytes(seed=i), min_side=1, max_side=4096), label, consent=True)
    store.close()
    return store


def run(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    from training.cli import main

    monkeypatch.setattr(sys, "argv", ["fer-hybrid", *map(str, argv)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code or 0, out.out, out.err


def states(store) -> dict:
    return {r["id"]: (r["state"], r["curator_label"]) for r in store.review_rows()}


def test_verbs_review_and_queue_lists(store, monkeypatch, capsys):
    c = ["--custom", store.root]
    code, out, _ = run(["data", "queue", "--ids", *c], monkeypatch, capsys)
    ids = out.split()
    assert code == 0 and len(ids) == 4
    assert (
        run(["data", "accept", ids[0], ids[1], *c], monkeypatch, capsys)[1]
        == "2 uploads accepted\n"
    )
    assert (
        run(["data", "relabel", "surprise", ids[2], *c], monkeypatch, capsys)[1]
        == "1 upload accepted as surprise\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{ids[3]}\n"))
    assert run(["data", "reject", "-", *c], monkeypatch, capsys)[1] == "1 upload rejected\n"
    got = states(UploadStore(store.root))
    assert got[ids[0]] == got[ids[1]] == ("accepted", None)
    assert got[ids[2]] == ("accepted", "surprise") and got[ids[3]] == ("rejected", None)
    code, out, _ = run(["data", "queue", "--state", "accepted", "--json", *c], monkeypatch, capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and {r["id"] for r in rows} == set(ids[:3])
    assert {r["curator_label"] for r in rows} == {None, "surprise"}
    assert run(["data", "reset", ids[2], *c], monkeypatch, capsys)[1] == "1 upload pending\n"
    assert states(UploadStore(store.root))[ids[2]] == ("pending", None)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["accept", "0" * 32], "no upload with id 00000000000000000000000000000000"),
        (["accept", "not-an-id"], "no upload with id 'not-an-id'"),
        (["relabel", "furious", "GOOD"], "unknown label 'furious'"),
        (["queue", "--state", "maybe"], "unknown review state 'maybe'"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_changes(store, monkeypatch, capsys, argv, words):
    before = states(UploadStore(store.root))
    good = next(iter(before))
    argv = [good if a == "GOOD" else a for a in argv]
    if argv[0] == "accept":
        argv.insert(1, good)  # a good id first: it must not be applied either
    code, _out, err = run(["data", *argv, "--custom", store.root], monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and words in err
    assert len(err.strip().splitlines()) == 1
    assert states(UploadStore(store.root)) == before


def test_a_missing_store_is_named_not_created(tmp_path, monkeypatch, capsys):
    code, err = main_in_process(
        ["data", "accept", "a" * 32, "--custom", tmp_path / "typo"], monkeypatch, capsys
    )
    assert code == 2 and "no upload store in" in err and not (tmp_path / "typo").exists()


def test_stats_counts_uploads_per_state_and_label(store, tmp_path, monkeypatch, capsys):
    import gzip

    import numpy as np
    from conftest import synthetic_faces

    ids = [r["id"] for r in UploadStore(store.root).review_rows()]
    UploadStore(store.root).review(ids[:2], "accept")
    UploadStore(store.root).review(ids[2:3], "relabel", "neutral")
    d = tmp_path / "data"
    d.mkdir()
    x, y = synthetic_faces(21, seed=3)
    usage = ["Training"] * 7 + ["PublicTest"] * 7 + ["PrivateTest"] * 7
    rows = ["emotion,pixels,Usage"] + [
        f"{lab},{' '.join(map(str, im.reshape(-1).tolist()))},{u}"
        for im, lab, u in zip(x, np.asarray(y), usage)
    ]
    (d / "fer2013.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    code, out, _ = run(
        ["data", "stats", "--data-dir", d, "--aux", "custom", "--custom", store.root],
        monkeypatch,
        capsys,
    )
    assert code == 0, out
    table = out[out.index("custom uploads by review state") :]
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:6] if line.strip()}
    header = lines["state"]
    col = {name: header.index(name) for name in header}
    assert lines["pending"][col["total"]] == "1"
    assert lines["accepted"][col["total"]] == "3" and lines["accepted"][col["neutral"]] == "1"
    assert lines["rejected"][col["total"]] == "0"
    assert "custom holdout:" in table
