"""The review queue in the upload store: states, relabels, all-or-nothing batches, migration,
deletion at any state, a crash in the middle of a batch, and what training reads back."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from test_backend_helpers import image_bytes, stored_files

from backend.images import clean_crop
from backend.storage import SCHEMA_VERSION, UploadError, UploadStore
from contract import LABELS
from contract.review import (
    HOLDOUT_EVERY,
    holdout_uploads,
    in_holdout,
    read_uploads,
    training_uploads,
)


def crop(seed: int):
    return clean_crop(image_bytes(seed=seed), min_side=1, max_side=4096)


def fill(store: UploadStore, n: int, label: str = "happy") -> list:
    return [store.add(crop(seed), label, consent=True) for seed in range(n)]


def states(store: UploadStore) -> dict[str, tuple]:
    return {r["id"]: (r["state"], r["label"], r["curator_label"]) for r in store.review_rows()}


def test_actions_set_states_and_relabel_keeps_both_labels(tmp_path):
    store = UploadStore(tmp_path / "c")
    a, b, c, d = fill(store, 4)
    assert set(states(store).values()) == {("pending", "happy", None)}
    assert store.review([a.id, b.id], "accept") == 2
    assert store.review([c.id], "reject") == 1
    assert store.review([d.id], "relabel", "sad") == 1
    got = states(store)
    assert got[a.id] == got[b.id] == ("accepted", "happy", None)
    assert got[c.id] == ("rejected", "happy", None)
    assert got[d.id] == ("accepted", "happy", "sad")  # the contributor's label stays beside
    assert store.crop_path("happy", d.sha256).is_file()  # the crop does not move
    store.review([d.id], "relabel", "happy")  # back to the contributor's own: no second copy
    assert states(store)[d.id] == ("accepted", "happy", None)
    store.review([a.id], "reset")
    assert states(store)[a.id] == ("pending", "happy", None)
    counts = store.review_counts()
    assert counts["accepted"]["happy"] == 2 and counts["rejected"]["happy"] == 1
    assert counts["pending"]["happy"] == 1 and sum(counts["pending"].values()) == 1


@pytest.mark.parametrize(
    ("ids", "action", "label", "status", "words"),
    [
        (["UNKNOWN"], "accept", None, 404, "no upload with id"),
        (["f" * 32], "accept", None, 404, "no upload with id"),
        (None, "approve", None, 400, "unknown review action"),
        (None, "relabel", "furious", 422, "unknown label"),
        (None, "relabel", None, 422, "unknown label"),
        (None, "accept", "sad", 400, "only relabel takes a label"),
        ([], "accept", None, 400, "no upload ids"),
    ],
)
def test_a_bad_batch_is_one_error_and_changes_nothing(tmp_path, ids, action, label, status, words):
    store = UploadStore(tmp_path / "c")
    ups = fill(store, 3)
    before = states(store)
    batch = [u.id for u in ups] + (ids or []) if ids != [] else []
    with pytest.raises(UploadError) as err:
        store.review(batch, action, label)
    assert err.value.status_code == status
    assert words in str(err.value) and "\n" not in str(err.value)
    assert states(store) == before  # the good ids before the bad one were not applied either


def test_a_contributors_delete_wins_at_every_state(tmp_path):
    store = UploadStore(tmp_path / "c")
    ups = fill(store, 4)
    store.review([ups[1].id], "accept")
    store.review([ups[2].id], "reject")
    store.review([ups[3].id], "relabel", "fear")
    for up in ups:
        store.delete(up.id, up.deletion_token)
    assert store.rows() == [] and stored_files(store.root) == []
    assert read_uploads(store.root) == []
    with pytest.raises(UploadError, match="withdrawn"):
        store.review([ups[0].id], "accept")


def test_a_store_without_review_columns_opens_with_every_upload_pending(tmp_path):
    store = UploadStore(tmp_path / "c")
    ups = fill(store, 3)
    store.close()
    with sqlite3.connect(store.db_path) as conn:  # back to schema 3, as the previous server left it
        for column in ("review", "curator_label", "reviewed"):
            conn.execute(f"ALTER TABLE uploads DROP COLUMN {column}")
        conn.execute("PRAGMA user_version=3")
    old = read_uploads(store.root)  # training reads an unmigrated store too
    assert [u.state for u in old] == ["pending"] * 3
    store = UploadStore(store.root)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert set(states(store).values()) == {("pending", "happy", None)}
    store.review([ups[0].id], "relabel", "sad")
    assert states(store)[ups[0].id] == ("accepted", "happy", "sad")
    store.delete(ups[0].id, ups[0].deletion_token)  # tokens from before still work


def test_training_reads_accepted_uploads_with_the_curators_label_and_never_the_holdout(tmp_path):
    store = UploadStore(tmp_path / "c")
    ups = fill(store, 40)
    store.review([u.id for u in ups[:30]], "accept")
    store.review([ups[30].id], "reject")
    store.review([ups[0].id], "relabel", "surprise")
    uploads = read_uploads(store.root)
    by_id = {u.id: u for u in uploads}
    assert by_id[ups[0].id].training_label == "surprise" and by_id[ups[0].id].label == "happy"
    train = training_uploads(uploads)
    held = holdout_uploads(uploads)
    assert held, "40 random crops should put some in the holdout"
    assert all(u.state == "accepted" and not u.holdout for u in train)
    assert all(u.state == "accepted" and u.holdout for u in held)
    assert {u.id for u in train} | {u.id for u in held} == {u.id for u in ups[:30]}
    everything = training_uploads(uploads, "all")
    assert {u.id for u in everything} == {u.id for u in uploads if not u.holdout}
    assert all(u.path.is_file() for u in uploads)


def test_the_holdout_is_one_in_five_by_the_crops_hash():
    import hashlib

    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    share = sum(map(in_holdout, shas)) / len(shas)
    assert abs(share - 1 / HOLDOUT_EVERY) < 0.02
    assert [in_holdout(s) for s in shas[:50]] == [in_holdout(s) for s in shas[:50]]
    assert in_holdout("0" * 64) and not in_holdout("0" * 7 + "1" + "0" * 56)


# A child process that reviews batches in a loop; killed at random, each batch must be whole.
CHILD = textwrap.dedent(
    """
    import sys
    from backend.storage import UploadStore
    from contract import LABELS
    store = UploadStore(sys.argv[1])
    ids = [r["id"] for r in store.review_rows()]
    print("ready", flush=True)
    i = 0
    while True:
        store.review(ids, "relabel", LABELS[i % len(LABELS)])
        i += 1
    """
)


def test_a_crash_during_review_batches_leaves_each_batch_whole(tmp_path, repo_root):
    store = UploadStore(tmp_path / "c")
    ups = fill(store, 60)
    store.close()
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    seen = set()
    for round_ in range(6):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store.root)], env=env, stdout=subprocess.PIPE
        )
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.07 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
        after = UploadStore(store.root)
        got = states(after)
        curator = {label for _state, _label, label in got.values()}
        assert len(got) == 60 and len(curator) == 1, f"a batch was half applied: {curator}"
        assert len({s for s, _l, _c in got.values()}) == 1
        seen |= curator
        after.recover()
        after.close()
    assert seen <= set(LABELS) | {None}
    assert all(store.crop_path("happy", u.sha256).is_file() for u in ups)
