"""The uploads API keeps its promises: rate limit (429), storage quota (507), the upload store's
schema migration, and an OpenAPI document that says what the server really does."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest
from fastapi.testclient import TestClient
from test_backend_helpers import db_rows, image_bytes, make_settings, post_upload, stored_files

from backend.app import create_app
from backend.images import clean_crop
from backend.ratelimit import RateLimiter, client_address
from backend.storage import CLAIM_ROW_BYTES, SCHEMA_VERSION, UploadStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(settings, clock=None):
    app = create_app(settings)
    if clock is not None:
        app.state.upload_limiter = RateLimiter(
            settings.uploads_per_minute, settings.upload_burst, clock=clock
        )
    return TestClient(app)


# -- rate limit -------------------------------------------------------------------------------
def test_uploads_are_rate_limited_per_client_with_retry_after(tmp_path):
    settings = make_settings(tmp_path, uploads_per_minute=6, upload_burst=2)
    clock = FakeClock()
    with _client(settings, clock) as client:
        assert post_upload(client, image_bytes(seed=1)).status_code == 201
        assert post_upload(client, image_bytes(seed=2)).status_code == 201
        r = post_upload(client, image_bytes(seed=3))
        assert r.status_code == 429, r.text
        assert "too many uploads" in r.json()["detail"]
        assert r.headers["retry-after"] == "10"  # 6 per minute: one token every 10 s
        assert len(stored_files(settings.custom_dir)) == 2
        # Everything but POST /api/uploads is unaffected.
        assert client.get("/api/uploads/stats").json()["total"] == 2
        assert (
            client.delete("/api/uploads/" + "0" * 32, headers={"X-Deletion-Token": "x"}).status_code
            == 404
        )
        assert client.get("/openapi.json").status_code == 200
        clock.now += 9.5
        assert post_upload(client, image_bytes(seed=3)).status_code == 429
        clock.now += 0.5
        assert post_upload(client, image_bytes(seed=3)).status_code == 201
        assert post_upload(client, image_bytes(seed=4)).status_code == 429
    # Another client address has its own bucket.
    limiter = RateLimiter(6, 2, clock=clock)
    assert limiter.acquire("10.0.0.1") == 0 and limiter.acquire("10.0.0.1") == 0
    assert limiter.acquire("10.0.0.1") > 0 and limiter.acquire("10.0.0.2") == 0


def test_ipv6_clients_count_by_their_64():
    assert client_address("2001:db8:1:2:aaaa::1") == client_address("2001:db8:1:2:bbbb::9")
    assert client_address("2001:db8:1:2::1") != client_address("2001:db8:1:3::1")
    assert client_address("::ffff:10.0.0.1") == client_address("10.0.0.1") == "10.0.0.1"
    assert client_address(None) == "unknown" and client_address("testclient") == "testclient"


def test_rate_limiter_forgets_idle_clients_and_can_be_off():
    clock = FakeClock()
    limiter = RateLimiter(60, 1, clock=clock, max_clients=3)
    for i in range(3):
        assert limiter.acquire(f"c{i}") == 0
    clock.now += 5  # every bucket is full again
    assert limiter.acquire("c3") == 0
    assert len(limiter) <= 3
    off = RateLimiter(0, 1, clock=clock)
    assert all(off.acquire("x") == 0 for _ in range(100))


def test_cross_origin_posts_do_not_use_up_the_victims_budget(tmp_path):
    settings = make_settings(tmp_path, uploads_per_minute=1, upload_burst=1)
    with _client(settings, FakeClock()) as client:
        for _ in range(3):
            r = client.post(
                "/api/uploads",
                files={"crop": ("c.png", image_bytes(seed=7), "image/png")},
                data={"label": "happy", "consent": "true"},
                headers={"Origin": "https://evil.example"},
            )
            assert r.status_code == 403
        assert post_upload(client, image_bytes(seed=7)).status_code == 201


# -- storage quota ----------------------------------------------------------------------------
def test_storage_quota_in_bytes_gives_507_and_stores_nothing(tmp_path):
    one = len(clean_crop(image_bytes(seed=1), min_side=1, max_side=4096).data)
    # room for exactly one contribution: its file and its claim row
    settings = make_settings(tmp_path, custom_max_bytes=one + CLAIM_ROW_BYTES)
    key = {"Idempotency-Key": "quota-key-0123456789"}
    files = {"crop": ("c.png", image_bytes(seed=1), "image/png")}
    fields = {"label": "happy", "consent": "true"}
    with _client(settings) as client:
        first = client.post("/api/uploads", files=files, data=fields, headers=key)
        assert first.status_code == 201
        r = post_upload(client, image_bytes(seed=2))
        assert r.status_code == 507, r.text
        assert "storage quota reached" in r.json()["detail"]
        assert len(stored_files(settings.custom_dir)) == 1
        # A duplicate adds no file but a claim row: refused too once the quota is reached, so
        # sending the same picture again and again cannot grow the store past it.
        for _ in range(3):
            dup = post_upload(client, image_bytes(seed=1))
            assert dup.status_code == 507, dup.text
        assert len(db_rows(settings.custom_dir, "claims")) == 1
        # A re-send adds nothing at all: still answered (the page's retry after a lost answer).
        again = client.post("/api/uploads", files=files, data=fields, headers=key)
        assert again.status_code == 201 and again.json()["resent"] is True
        # Deleting frees the space again.
        body = first.json()
        url = f"/api/uploads/{body['id']}"
        assert (
            client.delete(url, headers={"X-Deletion-Token": body["deletion_token"]}).status_code
            == 204
        )
        assert post_upload(client, image_bytes(seed=2)).status_code == 201


def test_storage_quota_in_files_counts_originals(tmp_path):
    settings = make_settings(tmp_path, custom_max_files=2)
    with _client(settings) as client:
        assert post_upload(client, image_bytes(seed=1)).status_code == 201
        r = post_upload(client, image_bytes(seed=2), original=image_bytes(seed=3, fmt="JPEG"))
        assert r.status_code == 507 and "storage quota reached" in r.json()["detail"]
        assert post_upload(client, image_bytes(seed=2)).status_code == 201
        assert post_upload(client, image_bytes(seed=4)).status_code == 507
        assert len(stored_files(settings.custom_dir)) == 2


def test_usage_is_what_is_on_disk_plus_the_rows(tmp_path):
    store = UploadStore(tmp_path / "c")
    a = store.add(clean_crop(image_bytes(seed=1), min_side=1, max_side=4096), "happy", consent=True)
    store.add(clean_crop(image_bytes(seed=1), min_side=1, max_side=4096), "happy", consent=True)
    on_disk = sum(p.stat().st_size for p in stored_files(store.root))
    assert store.usage() == (on_disk + 2 * CLAIM_ROW_BYTES, 1)
    store.delete(a.id, a.deletion_token)
    assert store.usage() == (on_disk + CLAIM_ROW_BYTES, 1)  # the duplicate's claim keeps it


# -- schema migration -------------------------------------------------------------------------
SCHEMA_V1 = """
CREATE TABLE uploads (
    id       TEXT PRIMARY KEY,
    label    TEXT NOT NULL,
    sha256   TEXT NOT NULL UNIQUE,
    width    INTEGER NOT NULL,
    height   INTEGER NOT NULL,
    created  TEXT NOT NULL
);
CREATE TABLE claims (
    token_hash      TEXT PRIMARY KEY,
    upload_id       TEXT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
    created         TEXT NOT NULL,
    consent         INTEGER NOT NULL,
    source          TEXT,
    original_sha256 TEXT,
    original_ext    TEXT
);
CREATE INDEX claims_upload ON claims(upload_id);
PRAGMA user_version=1;
"""


def test_a_store_from_the_previous_schema_opens_and_is_counted(tmp_path):
    root = tmp_path / "c"
    crop = clean_crop(image_bytes(seed=5), min_side=1, max_side=4096)
    (root / "sad").mkdir(parents=True)
    (root / "sad" / f"{crop.sha256}.png").write_bytes(crop.data)
    token = "old-token-" + "x" * 30
    with sqlite3.connect(root / "uploads.sqlite") as conn:
        conn.executescript(SCHEMA_V1)
        conn.execute(
            "INSERT INTO uploads VALUES (?, 'sad', ?, 64, 64, '2026-01-01T00:00:00+00:00')",
            ("a" * 32, crop.sha256),
        )
        conn.execute(
            "INSERT INTO claims VALUES (?, ?, '2026-01-01T00:00:00+00:00', 1, 'file', NULL, NULL)",
            (hashlib.sha256(token.encode()).hexdigest(), "a" * 32),
        )
    store = UploadStore(root)
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.usage() == (len(crop.data) + CLAIM_ROW_BYTES, 1)
    assert store.recover().total == 0
    again = store.add(crop, "sad", consent=True, key="k" * 20)
    assert again.duplicate and again.id == "a" * 32
    store.delete("a" * 32, token)  # the token handed out before the upgrade still works
    store.delete("a" * 32, again.deletion_token)
    assert stored_files(root) == [] and store.rows() == []
    UploadStore(root)  # opening a current store again changes nothing
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_store_from_a_newer_schema_is_refused(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    with sqlite3.connect(root / "uploads.sqlite") as conn:
        conn.executescript(
            SCHEMA_V1.replace("user_version=1", f"user_version={SCHEMA_VERSION + 1}")
        )
    with pytest.raises(RuntimeError, match="newer"):
        UploadStore(root)


# -- OpenAPI says what the server does --------------------------------------------------------
@pytest.fixture
def spec(tmp_path):
    settings = make_settings(
        tmp_path,
        max_upload_bytes=123_456,
        max_image_side=2000,
        min_image_side=20,
        max_crop_side=300,
        max_original_pixels=1_500_000,
        decode_memory_bytes=77_000_000,
        uploads_per_minute=7,
        upload_burst=3,
        custom_max_bytes=999_999_999,
        custom_max_files=4321,
    )
    with TestClient(create_app(settings)) as client:
        yield client.get("/openapi.json").json()


def _resolve(spec, obj):
    while "$ref" in obj:
        *_, kind, name = obj["$ref"].split("/")
        obj = spec["components"][kind][name]
    return obj


def test_openapi_post_documents_every_answer(spec):
    post = spec["paths"]["/api/uploads"]["post"]
    codes = set(post["responses"])
    assert {"201", "400", "403", "409", "413", "422", "429", "431", "507"} <= codes
    assert (
        "own pages" in post["responses"]["403"]["description"]
        or "same origin" in post["responses"]["403"]["description"].lower()
    )
    assert "same-origin" in post["description"].lower() or "same origin" in post["description"]
    assert "Retry-After" in post["responses"]["429"]["headers"]
    assert "quota" in post["responses"]["507"]["description"]
    for code in codes - {"201"}:
        schema = post["responses"][code]["content"]["application/json"]["schema"]
        assert _resolve(spec, schema)["properties"]["detail"]["type"] == "string", code


def test_openapi_consent_is_the_accepted_values(spec):
    body = post_body = spec["paths"]["/api/uploads"]["post"]["requestBody"]
    props = post_body["content"]["multipart/form-data"]["schema"]["properties"]
    assert props["consent"]["enum"] == ["true", "on", "1", "yes"]
    assert "" not in props["consent"]["enum"]
    assert body["required"] is True


@pytest.mark.parametrize(
    "consent, status",
    [
        ("true", 201),
        ("on", 201),
        ("1", 201),
        ("yes", 201),
        ("", 400),
        ("TRUE", 400),
        (" true", 400),
        ("no", 400),
    ],
)
def test_consent_accepts_exactly_the_documented_values(tmp_path, consent, status):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        r = post_upload(client, image_bytes(seed=1), consent=consent)
        assert r.status_code == status, r.text


def test_openapi_limits_come_from_the_apps_settings(spec):
    post = spec["paths"]["/api/uploads"]["post"]
    props = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert "123456 bytes" in props["crop"]["description"]
    assert "20 to 300 pixels" in props["crop"]["description"]
    assert "2000 pixels" in props["original"]["description"]
    assert "1500000 pixels in all" in props["original"]["description"]
    assert "77000000" in post["responses"]["413"]["description"]
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert "7 per minute" in post["description"] and "bursts of 3" in post["description"]
    assert "999999999 bytes" in post["description"] and "4321 files" in post["description"]
    assert post["x-upload-limits"]["max_upload_bytes"] == 123_456
    assert post["x-upload-limits"]["max_request_bytes"] == 2 * 123_456 + 64 * 1024


def test_openapi_links_the_created_upload_to_its_deletion(spec):
    post = spec["paths"]["/api/uploads"]["post"]
    delete = spec["paths"]["/api/uploads/{upload_id}"]["delete"]
    links = post["responses"]["201"]["links"]
    (link,) = links.values()
    assert link["operationId"] == delete["operationId"]
    assert link["parameters"] == {
        "path.upload_id": "$response.body#/id",
        "header.X-Deletion-Token": "$response.body#/deletion_token",
    }
    header = next(p for p in delete["parameters"] if p["name"].lower() == "x-deletion-token")
    assert header["in"] == "header" and header["required"] is True
    assert {"204", "400", "403", "404", "431"} <= set(delete["responses"])


def test_openapi_documents_the_idempotency_key(spec):
    post = spec["paths"]["/api/uploads"]["post"]
    (param,) = [p for p in post.get("parameters", []) if p["name"] == "Idempotency-Key"]
    assert param["in"] == "header" and param["required"] is False
    assert param["schema"]["pattern"] == "^[A-Za-z0-9_-]{16,64}$"
    created = _resolve(spec, post["responses"]["201"]["content"]["application/json"]["schema"])
    assert {"resent", "duplicate"} <= set(created["properties"])


def test_undocumented_form_fields_are_refused(tmp_path):
    settings = make_settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/api/uploads",
            files={"crop": ("c.png", image_bytes(seed=1), "image/png")},
            data={"label": "happy", "consent": "true", "labl": "sad"},
        )
        assert r.status_code == 400 and "unknown form field 'labl'" in r.json()["detail"]
    assert stored_files(settings.custom_dir) == []
    spec_body = create_app(settings).openapi()["paths"]["/api/uploads"]["post"]["requestBody"]
    assert spec_body["content"]["multipart/form-data"]["schema"]["additionalProperties"] is False


def test_openapi_states_the_image_sides_the_server_accepts(tmp_path):
    """Sides are no JSON Schema keyword: the form's file fields state them as x-image-min-side /
    x-image-max-side (a 1x1 crop looked valid by the document and was refused)."""
    settings = make_settings(tmp_path, min_image_side=20, max_crop_side=300, max_image_side=2000)
    with _client(settings) as client:
        body = client.get("/openapi.json").json()["paths"]["/api/uploads"]["post"]["requestBody"]
        fields = body["content"]["multipart/form-data"]["schema"]["properties"]
        assert (fields["crop"]["x-image-min-side"], fields["crop"]["x-image-max-side"]) == (20, 300)
        assert (fields["original"]["x-image-min-side"], fields["original"]["x-image-max-side"]) == (
            1,
            2000,
        )
        assert post_upload(client, image_bytes(size=(20, 20), seed=1)).status_code == 201
        for side in (19, 1):
            r = post_upload(client, image_bytes(size=(side, side), seed=2))
            assert r.status_code == 400 and "smallest accepted side is 20" in r.json()["detail"]
        r = post_upload(client, image_bytes(size=(301, 20), seed=3))
        assert r.status_code == 413 and "largest accepted side is 300" in r.json()["detail"]
