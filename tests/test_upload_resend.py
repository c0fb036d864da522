"""A contribution committed but never acknowledged (crash, lost response) can be reclaimed:
re-sending it with the same Idempotency-Key returns a fresh deletion token for the same claim."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import db_rows, image_bytes, make_settings, stored_files

from backend.app import create_app
from backend.images import clean_crop
from backend.storage import UploadError, UploadStore

KEY = "pending-key_0123456789abcdef"


def post(client, crop, key=KEY, label="happy", original=None):
    files = {"crop": ("crop.png", crop, "image/png")}
    if original is not None:
        files["original"] = ("photo.jpg", original, "image/jpeg")
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        "/api/uploads", files=files, data={"label": label, "consent": "true"}, headers=headers
    )


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


def test_crash_between_commit_and_response_is_reclaimed_by_a_resend(settings, monkeypatch):
    app = create_app(settings)
    store = app.state.store
    real_add = store.add

    def add_then_crash(*args, **kwargs):
        real_add(*args, **kwargs)  # committed to disk and SQLite ...
        raise RuntimeError("server died before answering")  # ... but never acknowledged

    crop = image_bytes(seed=11)
    original = image_bytes(seed=12, fmt="JPEG")
    with TestClient(app, raise_server_exceptions=False) as client:
        monkeypatch.setattr(store, "add", add_then_crash)
        lost = post(client, crop, original=original)
        assert lost.status_code == 500
        monkeypatch.undo()
        assert len(db_rows(settings.custom_dir, "claims")) == 1  # the row is there, no token out

        again = post(client, crop, original=original)
        assert again.status_code == 201, again.text
        body = again.json()
        assert body["resent"] is True and body["duplicate"] is False
        assert len(db_rows(settings.custom_dir)) == 1
        assert len(db_rows(settings.custom_dir, "claims")) == 1  # no second claim

        # A third send (say the page retried twice) gets the same token: every answer works.
        third = post(client, crop, original=original).json()
        assert third["resent"] is True and third["id"] == body["id"]
        assert third["deletion_token"] == body["deletion_token"]
        url = f"/api/uploads/{body['id']}"
        r = client.delete(url, headers={"X-Deletion-Token": third["deletion_token"]})
        assert r.status_code == 204
    # Gone completely: no file, no original, no row, no orphan claim.
    assert stored_files(settings.custom_dir) == []
    assert db_rows(settings.custom_dir) == [] and db_rows(settings.custom_dir, "claims") == []


def test_resend_of_a_duplicate_keeps_the_other_contribution(settings):
    with TestClient(create_app(settings)) as client:
        crop = image_bytes(seed=21)
        other = post(client, crop, key=None).json()
        mine = post(client, crop).json()
        again = post(client, crop).json()
        assert mine["duplicate"] is True and again["duplicate"] is True and again["resent"] is True
        assert len(db_rows(settings.custom_dir, "claims")) == 2
        url = f"/api/uploads/{mine['id']}"
        assert (
            client.delete(url, headers={"X-Deletion-Token": again["deletion_token"]}).status_code
            == 204
        )
        assert len(stored_files(settings.custom_dir)) == 1  # the other contributor's stays
        assert (
            client.delete(url, headers={"X-Deletion-Token": other["deletion_token"]}).status_code
            == 204
        )
        assert stored_files(settings.custom_dir) == []


def test_same_key_for_another_image_or_label_is_a_409(settings):
    with TestClient(create_app(settings)) as client:
        assert post(client, image_bytes(seed=31)).status_code == 201
        r = post(client, image_bytes(seed=32))
        assert r.status_code == 409 and "Idempotency-Key" in r.json()["detail"]
        r = post(client, image_bytes(seed=31), label="sad")
        assert r.status_code == 409 and "Idempotency-Key" in r.json()["detail"]
        r = post(client, image_bytes(seed=31), original=image_bytes(seed=33, fmt="JPEG"))
        assert r.status_code == 409
        assert len(db_rows(settings.custom_dir, "claims")) == 1
        assert len(stored_files(settings.custom_dir)) == 1


@pytest.mark.parametrize(
    "key", ["x" * 15, "x" * 65, "has space in it!!", "key.with.dots.0123456", "a+b/c=" * 4]
)
def test_malformed_keys_are_refused(settings, key):
    with TestClient(create_app(settings)) as client:
        r = post(client, image_bytes(seed=41), key=key)
        assert r.status_code == 400 and "Idempotency-Key" in r.json()["detail"]
    assert stored_files(settings.custom_dir) == []


def test_only_the_key_hash_is_stored(settings):
    with TestClient(create_app(settings)) as client:
        assert post(client, image_bytes(seed=51)).status_code == 201
    assert KEY not in (settings.custom_dir / "uploads.sqlite").read_bytes().decode("latin-1")


def test_store_level_resend(tmp_path):
    store = UploadStore(tmp_path / "c")
    crop = clean_crop(image_bytes(seed=61), min_side=1, max_side=4096)
    first = store.add(crop, "fear", consent=True, key=KEY)
    again = store.add(crop, "fear", consent=True, key=KEY)
    assert not first.resent and again.resent and again.id == first.id
    assert again.deletion_token == first.deletion_token  # derived from the key: the same
    other = store.add(clean_crop(image_bytes(seed=62), min_side=1, max_side=4096), "fear",
                      consent=True, key=KEY[::-1])
    assert other.deletion_token != first.deletion_token  # another key, another token
    store.delete(other.id, other.deletion_token)
    store.delete(first.id, again.deletion_token)
    assert store.rows() == [] and store.claim_count() == 0
    # Once withdrawn, the key is free: sending again is a new contribution.
    fresh = store.add(crop, "fear", consent=True, key=KEY)
    assert not fresh.resent and not fresh.duplicate


def test_concurrent_resends_all_get_a_token_that_works(settings):
    """Ten re-sends of one contribution at once (a page retrying on a flaky network): every
    answer's token must withdraw it, not only the one whose request happened to finish last."""
    import hashlib
    import threading

    crop, original = image_bytes(seed=71), image_bytes(seed=72, fmt="JPEG")
    with TestClient(create_app(settings)) as client:
        first = post(client, crop, original=original)  # stored; say its answer was lost
        assert first.status_code == 201
        answers: list = [None] * 10

        def resend(i: int) -> None:
            answers[i] = post(client, crop, original=original)

        threads = [threading.Thread(target=resend, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers]
        assert all(a.json()["resent"] for a in answers)
        (claim,) = db_rows(settings.custom_dir, "claims")
        for a in answers:  # each token is the one the claim holds
            token = a.json()["deletion_token"]
            assert hashlib.sha256(token.encode()).hexdigest() == claim[0]
        url = f"/api/uploads/{first.json()['id']}"
        token = answers[3].json()["deletion_token"]
        assert client.delete(url, headers={"X-Deletion-Token": token}).status_code == 204
    assert stored_files(settings.custom_dir) == []
