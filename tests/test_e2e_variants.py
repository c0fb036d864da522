"""End-to-end: the live page's model menu (issue 17, item 5) in headless Chromium.

A models folder offering two variants: a copy of the session's tiny e2e ensemble (untrained:
near-uniform probabilities) plus one added by `fer-hybrid export`'s `variant=`, the same
architecture with its head all but certain of "surprise" whatever the face, so the labels and
probabilities on the fake camera's face say which model the page runs. Real backend (Uvicorn in
a thread), wasm backend.
"""

from __future__ import annotations

import e2e_support
import pytest
from e2e_support import (
    ARTIFACTS,
    RequestLog,
    browser,
    js_state,
    live_server,
    wait_state,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

e2e_models = e2e_support.e2e_models
e2e_videos = e2e_support.e2e_videos

READY = "window.ferState && window.ferState.ready"
VARIANT_LABEL = "surprise"


def one_class_model(path, label: str) -> None:
    """e2e_support's tiny CNN (build_fixture_models), its head all but certain of `label`."""
    import keras

    from contract import LABELS

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(7, activation="softmax")
    model = keras.Model(inp, head(x))
    kernel, bias = head.get_weights()
    bias[:] = 0.0
    bias[LABELS.index(label)] = 8.0
    head.set_weights([kernel * 0.01, bias])
    model.save(path)


@pytest.fixture(scope="module")
def variant_models(e2e_models, tmp_path_factory):
    import shutil

    from training.export.export import export_ensemble

    root = tmp_path_factory.mktemp("variant_models")
    models = root / "models"
    shutil.copytree(e2e_models, models)
    one_class_model(root / "votes.keras", VARIANT_LABEL)
    export_ensemble([root / "votes.keras"], models, placeholder=True, notes="e2e variant",
                    variant="ferplus", title="People's votes (FER+)",
                    description="Agrees better with people.")
    return models


def labelled(label: str | None = None) -> str:
    """JS: faces found and all labelled (by `label` when given)."""
    check = f"f.label === '{label}'" if label else "f.label"
    return ("window.ferState.frames >= 3 && window.ferState.faces.length >= 1"
            f" && window.ferState.faces.every(f => {check})")


def weight_tensors(manifest) -> int:
    """How many tensors the members of `manifest` (a path) hold once loaded in TF.js."""
    import json

    doc = json.loads(manifest.read_text())
    return sum(len(group["weights"])
               for m in doc["members"]
               for group in json.loads((manifest.parent / m["path"]).read_text())["weightsManifest"])


def top_probability(page) -> float:
    return max(max(f["probs"]) for f in js_state(page)["faces"])


def test_model_menu_switches_live_and_remembers(variant_models, e2e_videos, tmp_path):
    with live_server(variant_models, tmp_path / "custom") as base, browser(e2e_videos["single"]) as b:
        ctx = b.new_context(viewport={"width": 412, "height": 860})
        log = RequestLog(ctx)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/?backend=wasm")
        wait_state(page, READY, 90)
        s = js_state(page)
        assert s["variant"] == "fer2013" and s["manifestUrl"] == f"{base}/models/manifest.json"
        assert [(v["id"], v["default"]) for v in s["variants"]] == [("fer2013", True),
                                                                    ("ferplus", False)]
        assert page.is_visible("#model-select") and page.is_enabled("#model-select")
        assert page.inner_text("label[for=model-select]") == "Model"
        options = page.eval_on_selector_all("#model-select option",
                                            "os => os.map((o) => [o.value, o.textContent])")
        assert options == [["fer2013", "FER2013 labels"], ["ferplus", "People's votes (FER+)"]]
        assert page.input_value("#model-select") == "fer2013"
        ferplus = [r["url"] for r in log.requests if "/models/ferplus/" in r["url"]]
        assert ferplus == [], "a variant is fetched only when chosen"
        tensors = page.evaluate("tf.memory().numTensors")

        page.click("#toggle")
        wait_state(page, labelled(), 90)
        assert top_probability(page) < 0.6  # the untrained default: near-uniform
        page.select_option("#model-select", "ferplus")
        wait_state(page, "window.ferState.variant === 'ferplus' && window.ferState.modelsLoaded"
                   " && !window.ferState.switchingModel", 60)
        frames = page.evaluate("window.ferState.frames")
        wait_state(page, labelled(VARIANT_LABEL) + f" && window.ferState.frames > {frames + 3}", 60)
        s = js_state(page)
        assert s["status"] == "running" and s["manifestUrl"] == f"{base}/models/ferplus/manifest.json"
        assert top_probability(page) > 0.95
        assert page.input_value("#model-select") == "ferplus"
        assert page.inner_text("#model-description") == "Agrees better with people."
        page.screenshot(path=str(ARTIFACTS / "live_model_menu.png"))
        urls = {r["url"].split("?")[0] for r in log.requests}
        for path in ("ferplus/manifest.json", "ferplus/votes/model.json",
                     "ferplus/votes/group1-shard1of1.bin"):
            assert f"{base}/models/{path}" in urls, path
        page.click("#toggle")
        wait_state(page, "window.ferState.status === 'ready'", 20)
        # The first model was disposed: only the second one's weights are alive beside the rest.
        swapped = (tensors - weight_tensors(variant_models / "manifest.json")
                   + weight_tensors(variant_models / "ferplus" / "manifest.json"))
        assert page.evaluate("tf.memory().numTensors") == swapped
        assert page.evaluate("localStorage.getItem('fer-hybrid.model')") == "ferplus"

        page.reload()
        wait_state(page, READY, 90)
        assert page.evaluate("window.ferState.variant") == "ferplus"
        assert page.input_value("#model-select") == "ferplus"
        page.click("#toggle")
        wait_state(page, labelled(VARIANT_LABEL), 90)
        page.click("#toggle")

        # A remembered model that is no longer offered: the default.
        page.evaluate("localStorage.setItem('fer-hybrid.model', 'gone')")
        page.reload()
        wait_state(page, READY, 90)
        assert page.evaluate("window.ferState.variant") == "fer2013"
        assert page.input_value("#model-select") == "fer2013"
        assert errors == []
        ctx.close()
