"""Helpers for the browser end-to-end tests (tests/test_e2e_*.py).

* Y4M writer (Chromium's fake camera reads `--use-file-for-fake-video-capture=FILE.y4m`) and
  headless Chromium launch: re-exported from training/bench/ (their one home)
* astronaut frames (single face / several faces on one canvas)
* a tiny Keras expression model exported as a TF.js ensemble (fixture models folder)
* a live Uvicorn server running the real backend in a thread
* a still image through the live page's Photo button (`analyse_photo`)
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from uvicorn_thread import free_port, serve_in_thread

from backend.assets import TFJS_DIR
from training.bench.browser import CHROMIUM, CHROMIUM_ARGS, browser, wait_for  # noqa: F401 - re-exported
from training.bench.video import jitter as frames_with_jitter  # noqa: F401 - re-exported
from training.bench.video import rgb_to_i420, write_y4m  # noqa: F401 - re-exported
from training.core.errors import FerError

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"


# ---------------------------------------------------------------- video
# rgb_to_i420 and write_y4m live in training/bench/video.py (the bench writes fake-camera videos too).


def resize_rgb(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from skimage.transform import resize

    return (resize(img, (h, w), anti_aliasing=True, preserve_range=True)).astype(np.uint8)


def single_face_frame(astronaut: np.ndarray) -> np.ndarray:
    """640x480 frame: the astronaut photo's upper part (her face large and frontal)."""
    crop = astronaut[0:384, 0:512]  # 4:3, face around the centre-left
    return resize_rgb(crop, 480, 640)


def multi_face_frame(astronaut: np.ndarray) -> np.ndarray:
    """640x480 frame with the astronaut's face twice: the original and a mirrored copy side by side."""
    face = astronaut[0:300, 60:300]  # head and shoulders (300x240)
    half = resize_rgb(face, 400, 320)
    canvas = np.full((480, 640, 3), 40, np.uint8)
    canvas[40:440, 0:320] = half
    canvas[40:440, 320:640] = half[:, ::-1]
    return canvas


# ---------------------------------------------------------------- models
def build_fixture_models(out_dir: Path, work_dir: Path) -> Path:
    """A tiny untrained-but-valid expression model exported as a TF.js uint8 ensemble; returns manifest path."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1), name="face")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(7, activation="softmax")(x)
    model = keras.Model(inp, out, name="tiny")
    work_dir.mkdir(parents=True, exist_ok=True)
    keras_path = work_dir / "tiny_cnn.keras"
    model.save(keras_path)
    from training.export.export import export_ensemble

    return Path(
        export_ensemble([keras_path], out_dir, quantization="uint8", placeholder=True, notes="e2e fixture")
    )


def page_weight(web_dir: Path, models_dir: Path | None) -> dict[str, int]:
    """Bytes the live page downloads: our JS/CSS, tfjs JS (4 backends used), the wasm binary, models."""
    vendor = web_dir / "vendor"
    out = {
        "app_js_css": sum(p.stat().st_size for p in (web_dir / "js").glob("*.js"))
        + (web_dir / "css" / "app.css").stat().st_size,
        "tfjs_js": sum(p.stat().st_size for p in (web_dir / TFJS_DIR).glob("*.js")),
        "wasm_simd": (web_dir / TFJS_DIR / "tfjs-backend-wasm-simd.wasm").stat().st_size,
        "blazeface": sum(p.stat().st_size for p in (vendor / "human-3.3.6" / "models").iterdir()),
    }
    if models_dir and (models_dir / "manifest.json").exists():
        out["models"] = sum(p.stat().st_size for p in model_files(models_dir))
    return out


def model_files(models_dir: Path) -> list[Path]:
    """What the page fetches from models/: the manifest, each member's model.json and weight
    shards (not the model card, its figures or benchmark reports lying next to them)."""
    manifest = models_dir / "manifest.json"
    files = [manifest]
    for member in json.loads(manifest.read_text())["members"]:
        graph = models_dir / member["path"]
        files.append(graph)
        for group in json.loads(graph.read_text()).get("weightsManifest", []):
            files += [graph.parent / name for name in group["paths"]]
    return files


# ---------------------------------------------------------------- server
@contextmanager
def live_server(models_dir: Path, custom_dir: Path, web_dir: Path | None = None,
                trusted_hosts: list[str] | None = None, wrap=None):
    """The real backend under Uvicorn in a daemon thread; yields the base URL.

    `trusted_hosts`: names besides localhost/127.0.0.1 the page is opened with (`--trusted-host`);
    `wrap(app)`: an ASGI wrapper around the app (tests/engine_pages.py)."""
    from backend.settings import Settings

    port = free_port()
    kwargs = {"host": "127.0.0.1", "port": port, "models_dir": models_dir, "custom_dir": custom_dir,
              "cert_dir": custom_dir.parent / "tls"}
    if web_dir is not None:
        kwargs["web_dir"] = web_dir
    if trusted_hosts is not None:
        kwargs["trusted_hosts"] = trusted_hosts
    with serve_in_thread(Settings(**kwargs), wrap=wrap):
        yield f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- browser
# CHROMIUM, CHROMIUM_ARGS and browser() live in training/bench/browser.py (the bench drives it too).


class RequestLog:
    """Every request the page (and its workers) makes: method, URL, post data size."""

    def __init__(self, context):
        self.requests: list[dict] = []
        context.on("request", self._on)

    def _on(self, req):
        try:
            body = req.post_data_buffer
        except Exception:  # noqa: BLE001 - some requests have no readable body
            body = None
        self.requests.append({"method": req.method, "url": req.url, "body": len(body) if body else 0,
                              "type": req.resource_type})

    def foreign(self, base: str) -> list[str]:
        return [r["url"] for r in self.requests
                if not (r["url"].startswith(base + "/") or r["url"] == base
                        or r["url"].startswith(("data:", "blob:", "about:")))]

    def non_get(self) -> list[dict]:
        return [r for r in self.requests if r["method"] != "GET"]


def wait_state(page, expr: str, timeout_s: float = 60.0, interval_s: float = 0.25):
    """Poll the JS expression until truthy (training.bench.browser.wait_for); returns its value.
    On a time-out the page's state goes into the error, to show what the page was doing."""
    try:
        return wait_for(page, expr, timeout_s, repr(expr), interval_s)
    except FerError as err:
        state = page.evaluate("JSON.stringify(window.ferState || window.ferUploadState || null)")
        raise TimeoutError(f"{err}; state={state[:1500]}") from None


def evaluate_in_page(models_dir: Path, tmp_path: Path, script: str, arg=None):
    """Run `script` (a JS function) in the upload page of a fresh server and browser, TF.js on
    the cpu backend and ready, and return its value: the home of the page modules' unit checks."""
    require_browser()
    with live_server(models_dir, tmp_path / "custom") as base, browser() as b:
        page = b.new_page()
        page.goto(f"{base}/upload?backend=cpu")
        wait_state(page, "window.ferUploadState && window.ferUploadState.ready", 60)
        return page.evaluate(script, arg)


def analyse_photo(page, rgb: np.ndarray, name: str = "scene.png",
                  timeout_s: float = 60.0) -> list[dict]:
    """Run an RGB image through the live page's Photo button: its own detector, alignment,
    low-light step and ensemble (main.js -> pipeline.analyse). Returns `ferState.faces`
    ({box, score, label, probs, lowlight} in image pixels). The page must be ready."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)  # lossless: the exact pixels
    # A status the page never sets, so the wait below cannot see the previous photo's result.
    page.evaluate("window.ferState.status = 'test-pending'")
    png = {"name": name, "mimeType": "image/png", "buffer": buf.getvalue()}
    page.set_input_files("#photo", files=[png])
    wait_state(page, "window.ferState.status === 'photo' && window.ferState.mode === 'still'",
               timeout_s)
    return js_state(page)["faces"]


def save_json(name: str, data) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(data, indent=2))


# ---------------------------------------------------------------- pytest fixtures (assign into test modules)


def require_browser() -> None:
    """Skip without Debian's Chromium on a developer's machine; CI (CI set) must have it."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing on CI: .ci/run installs it with apt")
        pytest.skip("/usr/bin/chromium not installed")


@pytest.fixture(scope="session")
def e2e_models(tmp_path_factory) -> Path:
    """models/ folder with a tiny exported ensemble (built once per session)."""
    require_browser()
    root = tmp_path_factory.mktemp("e2e_models")
    build_fixture_models(root / "models", root / "work")
    return root / "models"


@pytest.fixture(scope="session")
def e2e_videos(tmp_path_factory, astronaut_rgb) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e_videos")
    return {
        "single": write_y4m(root / "single.y4m", frames_with_jitter(single_face_frame(astronaut_rgb), 6)),
        "multi": write_y4m(root / "multi.y4m", frames_with_jitter(multi_face_frame(astronaut_rgb), 6)),
    }


def js_state(page) -> dict:
    return page.evaluate(
        "(() => { const s = window.ferState; return s && {...s, faces: s.faces.map(f => ({...f}))}; })()"
    )


def allowed_live_url(base: str, url: str) -> bool:
    """URLs the live page may fetch: the page itself, its static files, the SW and models."""
    if not url.startswith(base):
        return url.startswith(("data:", "blob:"))
    path = url[len(base):].split("?")[0]
    return path in ("/", "/upload", "/sw.js", "/favicon.ico") or path.startswith(("/static/", "/models/"))
