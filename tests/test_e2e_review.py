"""The review page in headless Chromium, served by a real `fer-hybrid data review` with the
shipped models: it loads under the CSP, predicts every crop with the TF.js ensemble, sorts by
disagreement, and the keyboard reviews one or many."""

from __future__ import annotations

import json

from e2e_support import browser, require_browser, wait_state
from review_support import make_store, review_server

from contract import LABELS


def test_the_review_page_predicts_sorts_and_reviews_by_keyboard(tmp_path):
    require_browser()
    store, ups = make_store(
        tmp_path / "custom", ["happy", "sad", "fear", "angry", "neutral", "sad"]
    )
    with review_server(store.root) as (base, port, _token), browser() as b:
        page = b.new_page()
        problems = []
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.on(
            "console", lambda msg: msg.type in ("error", "warning") and problems.append(msg.text)
        )
        elsewhere = []  # offline: nothing may be fetched from another origin

        def only_here(route):
            if route.request.url.startswith(f"http://127.0.0.1:{port}/"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_here)
        page.goto(base)
        wait_state(page, "document.body.dataset.state === 'ready'", 120)
        assert page.evaluate("document.body.dataset.model") == "ok", page.inner_text("#model")
        cards = page.evaluate(
            "[...document.querySelectorAll('.card')].map(c => [c.dataset.id, "
            "c.dataset.prediction, Number(c.dataset.disagreement)])"
        )
        assert {c[0] for c in cards} == {u.id for u in ups}
        assert all(c[1] in LABELS for c in cards)
        scores = [c[2] for c in cards]
        assert scores == sorted(scores, reverse=True)  # the most disagreeing first
        assert "6 pending" in page.inner_text("#counts")

        first, second = (c[0] for c in cards[:2])
        focused = "document.activeElement.dataset.id"
        page.keyboard.press("x")  # select the focused (first) crop
        page.keyboard.press("ArrowRight")
        page.keyboard.press("x")
        page.keyboard.press("a")  # accept both at once
        wait_state(page, "document.querySelectorAll('.card').length === 4")
        assert "2 uploads accepted" in page.inner_text("#message")
        third = page.evaluate(focused)
        assert third in {c[0] for c in cards[2:]}
        page.keyboard.press("3")  # relabel the crop in focus as LABELS[2]
        wait_state(page, "document.querySelectorAll('.card').length === 3")
        fourth = page.evaluate(focused)
        page.keyboard.press("r")
        wait_state(page, "document.querySelectorAll('.card').length === 2")
        assert "3 pending" not in page.inner_text("#counts")
        assert "2 pending" in page.inner_text("#counts")
        assert problems == [], json.dumps(problems)
        assert elsewhere == []

    rows = {r["id"]: r for r in store.review_rows()}
    assert rows[first]["state"] == rows[second]["state"] == "accepted"
    relabelled = rows[third]
    assert relabelled["state"] == "accepted"
    assert (relabelled["curator_label"] or relabelled["label"]) == LABELS[2]
    assert rows[fourth]["state"] == "rejected"
    assert [r["state"] for r in rows.values()].count("pending") == 2
