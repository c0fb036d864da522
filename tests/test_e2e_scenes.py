"""End-to-end: a composite scene of several faces through the live page's Photo button.

The page's own BlazeFace, alignment, low-light step and the *shipped* ensemble (models/, what
users get; the tiny fixture models would make the expression checks meaningless) on the wasm
backend. The full grid of sizes x rotations x lightings is tests/bench_scenes.py; this is its
smallest case, so a broken detector hand-off, box mapping or batch order fails CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scenes as S
from e2e_support import LABELS, analyse_photo, browser, live_server, require_browser, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MODELS = Path(__file__).resolve().parents[1] / "models"

# The astronaut three times at sizes the page must handle, plus two it may miss.
REQUIRED = [S.Placement(0, 128, 0.0, "normal", (140.0, 150.0)),
            S.Placement(0, 96, 0.0, "normal", (370.0, 130.0)),
            S.Placement(0, 64, 0.0, "normal", (550.0, 110.0))]
OPTIONAL = [S.Placement(0, 24, 0.0, "normal", (560.0, 400.0)),
            S.Placement(0, 96, 0.0, "dark", (330.0, 360.0))]


def check_face(face: dict, truth) -> None:
    assert S.iou(truth, S.box_tuple(face["box"])) >= S.MATCH_IOU
    assert face["label"] in LABELS
    assert len(face["probs"]) == len(LABELS) and abs(sum(face["probs"]) - 1) < 1e-3
    assert face["lowlight"] in ("none", "equalize", "stretch")
    assert 0.6 <= face["score"] <= 1  # the page's detection threshold


def test_scene_faces_found_in_place_and_classified_like_their_single_crop(tmp_path):
    require_browser()
    assert (MODELS / "manifest.json").is_file(), "the shipped models/ are part of the repository"
    sources = [S.astronaut_source()]
    scene = S.compose(REQUIRED + OPTIONAL, sources, background_kind="noise", seed=1)
    alone = S.single_crop(0, sources)
    with live_server(MODELS, tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/?backend=wasm")
        wait_state(page, "window.ferState && window.ferState.ready", 90)
        assert page.evaluate("window.ferState.backend") == "wasm"
        faces = analyse_photo(page, scene.image, "scene.png")
        ref_faces = analyse_photo(page, alone.image, "alone.png")
    assert errors == []

    matched = S.match(scene.boxes, faces)
    n_req = len(REQUIRED)
    for truth, j in zip(scene.boxes[:n_req], matched[:n_req]):
        assert j is not None, f"face at {truth} not found; detections: {[f['box'] for f in faces]}"
        check_face(faces[j], truth)
    for truth, j in zip(scene.boxes[n_req:], matched[n_req:]):
        if j is not None:  # allowed to be missed; when found it must be a proper face
            check_face(faces[j], truth)
    # No phantom: every detection is one of the pasted faces.
    assert sorted(j for j in matched if j is not None) == list(range(len(faces)))

    [ref_j] = S.match(alone.boxes, ref_faces)
    assert ref_j is not None
    ref = ref_faces[ref_j]
    for truth, j in zip(scene.boxes[:n_req], matched[:n_req]):
        c = S.compare(faces[j]["probs"], ref["probs"])
        # Same face, same light, upright: only the size differs, so the label must not change.
        assert c["agree"], (truth, faces[j]["label"], ref["label"])
        assert c["l1"] < 0.5
    # Darkness is what the low-light step is for: when the dark face is found it was normalised.
    j_dark = matched[-1]
    if j_dark is not None:
        assert faces[j_dark]["lowlight"] == "equalize"
    assert np.isfinite([p for f in faces for p in f["probs"]]).all()
