"""The review page's API over HTTP, against a real `fer-hybrid data review` server: the token,
the host and CSRF checks, bad input, concurrent reviews and a contributor's delete during one."""

from __future__ import annotations

import threading

import httpx
import pytest
from review_support import make_store, review_server

from backend.storage import UploadStore
from contract import LABELS
from contract.review import read_uploads

LABELS_10 = ["happy", "sad", "fear", "angry", "neutral"] * 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("review") / "custom"
    store, ups = make_store(root, LABELS_10)
    with review_server(root) as (base, port, token):
        yield store, ups, base, port, token


def states(store: UploadStore) -> dict:
    return {r["id"]: (r["state"], r["curator_label"]) for r in store.review_rows()}


def post(base, token, body, **headers):
    return httpx.post(f"{base}api/review", json=body, headers={"x-review-token": token, **headers})


def test_every_request_without_the_token_is_refused(served):
    _store, ups, base, port, token = served
    root = f"http://127.0.0.1:{port}"
    for path in (
        "/",
        "/api/queue",
        f"/crop/{ups[0].id}",
        "/static/review/review.js",
        "/models/manifest.json",
        f"/{token[:-1]}x/",
        f"/{token}",
        f"/x/{token}/",
    ):
        r = httpx.get(root + path)
        assert r.status_code == 403, path
        assert "token" in r.json()["detail"] and r.headers["x-frame-options"] == "DENY"
    r = httpx.post(
        f"{root}/api/review",
        json={"ids": [ups[0].id], "action": "accept"},
        headers={"x-review-token": token},
    )
    assert r.status_code == 403
    page = httpx.get(base)
    assert page.status_code == 200 and "Review uploads" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    queue = httpx.get(f"{base}api/queue").json()
    assert len(queue["items"]) == 10 and queue["labels"] == list(LABELS)
    assert httpx.get(f"{base}api/queue").headers["cache-control"] == "no-store"
    crop = httpx.get(f"{base}crop/{ups[0].id}")
    assert crop.status_code == 200 and crop.content[:4] == b"\x89PNG"


def test_only_this_host_and_only_this_page_may_write(served):
    store, ups, base, port, token = served
    before = states(store)
    body = {"ids": [ups[0].id], "action": "reject"}
    assert httpx.get(base, headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert httpx.post(f"{base}api/review", json=body).status_code == 403  # no token header
    assert post(base, token[::-1], body).status_code == 403
    assert post(base, token, body, origin="http://evil.example").status_code == 403
    assert post(base, token, body, origin=f"http://127.0.0.1:{port + 1}").status_code == 403
    assert post(base, token, body, **{"sec-fetch-site": "cross-site"}).status_code == 403
    form = httpx.post(
        f"{base}api/review",
        data={"ids": ups[0].id, "action": "reject"},
        headers={"x-review-token": token},
    )
    assert form.status_code == 415  # a form post (what a CSRF page can send) is never read
    assert states(store) == before
    ok = post(
        base, token, body, origin=f"http://127.0.0.1:{port}", **{"sec-fetch-site": "same-origin"}
    )
    assert ok.status_code == 200 and ok.json()["changed"] == 1
    assert states(store)[ups[0].id] == ("rejected", None)
    assert post(base, token, {"ids": [ups[0].id], "action": "reset"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"ids": ["GOOD", "f" * 32], "action": "accept"}, 404, "no upload with id"),
        ({"ids": ["GOOD", "../etc"], "action": "accept"}, 404, "no upload with id"),
        ({"ids": ["GOOD"], "action": "approve"}, 400, "unknown review action"),
        ({"ids": ["GOOD"], "action": "relabel", "label": "furious"}, 422, "unknown label"),
        ({"ids": ["GOOD"], "action": "accept", "label": "sad"}, 400, "only relabel"),
        ({"ids": "GOOD", "action": "accept"}, 400, "ids must be a list"),
        ({"ids": ["GOOD"], "action": "accept", "state": "x"}, 400, "send {"),
        ({"ids": [], "action": "accept"}, 400, "no upload ids"),
    ],
)
def test_bad_input_is_one_error_and_nothing_is_applied(served, body, status, words):
    store, ups, base, _port, token = served
    before = states(store)
    good = ups[1].id
    body = {
        k: (
            [good if i == "GOOD" else i for i in v]
            if isinstance(v, list)
            else (good if v == "GOOD" else v)
        )
        for k, v in body.items()
    }
    r = post(base, token, body)
    assert r.status_code == status and words in r.json()["detail"]
    assert "\n" not in r.json()["detail"]
    assert states(store) == before
    bad_json = httpx.post(
        f"{base}api/review",
        content=b"{not json",
        headers={"x-review-token": token, "content-type": "application/json"},
    )
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["detail"]


def test_concurrent_reviews_each_apply_whole(served):
    store, ups, base, _port, token = served
    ids = [u.id for u in ups[2:]]
    answers = []

    def reviewer(k: int) -> None:
        with httpx.Client() as client:
            for i in range(6):
                label = LABELS[(k + i) % len(LABELS)]
                r = client.post(
                    f"{base}api/review",
                    json={"ids": ids, "action": "relabel", "label": label},
                    headers={"x-review-token": token},
                    timeout=60,
                )
                answers.append(r.status_code)

    threads = [threading.Thread(target=reviewer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 36
    got = {u.id: (u.state, u.training_label) for u in read_uploads(store.root)}
    # every batch relabelled all the ids at once: whichever came last, they agree
    assert len({got[i] for i in ids}) == 1 and got[ids[0]][0] == "accepted"
    assert post(base, token, {"ids": ids, "action": "reset"}).status_code == 200


def test_a_contributors_delete_during_review_wins(served):
    store, ups, base, _port, token = served
    gone, other = ups[0], ups[1]
    queue = httpx.get(f"{base}api/queue").json()
    assert gone.id in {it["id"] for it in queue["items"]}  # the curator's page shows it ...
    assert post(base, token, {"ids": [gone.id], "action": "accept"}).status_code == 200
    store.delete(gone.id, gone.deletion_token)  # ... and its contributor withdraws it
    r = post(base, token, {"ids": [other.id, gone.id], "action": "reject"})
    assert r.status_code == 404 and "withdrawn" in r.json()["detail"]
    assert states(store)[other.id] == ("pending", None)  # nothing of the batch applied
    assert httpx.get(f"{base}crop/{gone.id}").status_code == 404
    assert gone.id not in {u.id for u in read_uploads(store.root)}  # nor in the holdout
    assert post(base, token, {"ids": [other.id], "action": "reject"}).status_code == 200
