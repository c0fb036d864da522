"""Numerical round trip through the real runtime: exported TF.js graph models in headless
Chromium with the vendored tfjs 4.22 (wasm backend), compared with Keras.

Also checks that the Python runner used to measure quantised accuracy
(`training.export.tfjs.load_tfjs_graph_model`) computes what the browser computes.
Files are served from a tiny HTTP server on 127.0.0.1 in a thread, with the
same COOP/COEP headers as the real server.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from backend.assets import TFJS_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VENDOR = Path(__file__).resolve().parents[1] / "web" / TFJS_DIR
SCRIPTS = ["tf-core.es2017.min.js", "tf-converter.es2017.min.js", "tf-backend-cpu.es2017.min.js",
           "tf-backend-wasm.es2017.min.js"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file() and not os.environ.get("CI"),
                       reason="needs /usr/bin/chromium (required when CI is set)"),
]

# Browser (wasm, float32) vs Keras (TF CPU, float32): same weights, different kernels.
FLOAT_TOL = 1e-4
# uint8 weights: bound on |p_browser - p_keras| and required top-1 agreement.
UINT8_TOL = 5e-2
UINT8_MIN_AGREEMENT = 0.9


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript",
                      ".json": "application/json", ".bin": "application/octet-stream"}

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        super().end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A served folder: /vendor/ (tfjs), /index.html, and /models/<name>/ filled by the tests."""
    root = tmp_path_factory.mktemp("site")
    shutil.copytree(VENDOR, root / "vendor")
    tags = "\n".join(f'<script src="/vendor/{s}"></script>' for s in SCRIPTS)
    (root / "index.html").write_text(f"<!doctype html><html><head>{tags}</head><body>ok</body></html>")
    (root / "models").mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def page(site):
    from playwright import sync_api

    _, url = site
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            pg = browser.new_page()
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(url + "/index.html")
            backend = pg.evaluate(
                """async () => {
                    tf.wasm.setWasmPaths('/vendor/');
                    const ok = await tf.setBackend('wasm');
                    await tf.ready();
                    return ok ? tf.getBackend() : 'failed';
                }"""
            )
            assert backend == "wasm", (backend, errors)
            yield pg
        finally:
            browser.close()


RUN_JS = """async ({url, data, shape}) => {
    const model = await tf.loadGraphModel(url);
    const x = tf.tensor(data, shape, 'float32');
    const y = model.predict(x);
    const out = Array.from(await y.data());
    const outShape = y.shape;
    tf.dispose([x, y]);
    model.dispose();
    return {out, shape: outShape, backend: tf.getBackend()};
}"""


@pytest.fixture(scope="module")
def model_and_inputs():
    """A tiny contract-conforming CNN trained briefly on synthetic faces, plus fixed inputs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from conftest import synthetic_faces
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(4)(x)
    x = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    model = keras.Model(inp, layers.Dense(7, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    xs, ys = synthetic_faces(600, seed=3)
    model.fit(xs[..., None].astype("float32"), ys, epochs=4, batch_size=32, verbose=0)
    fixed, _ = synthetic_faces(16, seed=4)
    fixed = fixed[..., None].astype("float32")
    fixed[0] = 0.0  # extremes of the input range
    fixed[1] = 255.0
    return model, fixed


@pytest.mark.parametrize("quantization", ["none", "uint8"])
def test_browser_matches_keras(site, page, model_and_inputs, quantization):
    from training.export.tfjs import convert_keras_to_tfjs, load_tfjs_graph_model

    root, _ = site
    model, x = model_and_inputs
    dest = root / "models" / quantization
    info = convert_keras_to_tfjs(model, dest, quantization)

    result = page.evaluate(
        RUN_JS, {"url": f"/models/{quantization}/model.json", "data": x.ravel().tolist(), "shape": list(x.shape)}
    )
    assert result["backend"] == "wasm"
    assert result["shape"] == [len(x), 7]
    browser = np.asarray(result["out"], dtype="float32").reshape(len(x), 7)
    keras_probs = model.predict(x, verbose=0)
    python_graph = load_tfjs_graph_model(dest)(x)

    diff_keras = float(np.abs(browser - keras_probs).max())
    diff_python = float(np.abs(browser - python_graph).max())
    agree = float((browser.argmax(1) == keras_probs.argmax(1)).mean())
    print(f"\n{quantization}: bytes={info['bytes']} |browser-keras|max={diff_keras:.2e} "
          f"|browser-python_graph|max={diff_python:.2e} top1_agree={agree:.3f}")
    np.testing.assert_allclose(browser.sum(1), 1.0, atol=1e-4)
    # The Python runner of the (dequantised) graph is what export uses to measure accuracy.
    assert diff_python <= FLOAT_TOL
    if quantization == "none":
        assert diff_keras <= FLOAT_TOL
        assert agree == 1.0
    else:
        assert diff_keras <= UINT8_TOL
        assert agree >= UINT8_MIN_AGREEMENT


ENSEMBLE_JS = """async ({base, data, shape}) => {
    const manifest = await (await fetch(base + '/manifest.json')).json();
    const models = await Promise.all(manifest.members.map(m => tf.loadGraphModel(base + '/' + m.path)));
    const x = tf.tensor(data, shape, 'float32');
    const total = manifest.members.reduce((s, m) => s + m.weight, 0);
    const p = tf.tidy(() => {
        // Functional ops only: the vendored tf-core bundle has no chained tensor methods.
        let acc = tf.zeros([shape[0], manifest.labels.length]);
        models.forEach((model, i) => {
            let probs = model.predict(x);
            if (manifest.ensemble.tta_flip) {
                probs = tf.div(tf.add(probs, model.predict(tf.reverse(x, 2))), 2);
            }
            acc = tf.add(acc, tf.mul(probs, manifest.members[i].weight));
        });
        return tf.div(acc, total);
    });
    const out = Array.from(await p.data());
    tf.dispose([x, p]);
    models.forEach(m => m.dispose());
    return out;
}"""


def test_browser_ensemble_follows_manifest(site, page, model_and_inputs):
    """The page's recipe (weighted soft voting + flip TTA, driven by manifest.json) in the
    browser equals the Python measurement that export writes into the manifest."""
    import keras

    from training.export.export import export_ensemble, soft_vote
    from training.export.tfjs import load_tfjs_graph_model

    root, _ = site
    model, x = model_and_inputs
    keras.utils.set_random_seed(7)
    other = keras.models.clone_model(model)  # same architecture, fresh random weights
    paths = []
    for i, m in enumerate((model, other)):
        paths.append(root / f"m{i}.keras")
        m.save(paths[-1])
    out = root / "models" / "ensemble"
    export_ensemble(paths, out, quantization="uint8", weights=[2.0, 1.0], names=["first", "second"])

    browser = np.asarray(
        page.evaluate(ENSEMBLE_JS, {"base": "/models/ensemble", "data": x.ravel().tolist(),
                                    "shape": list(x.shape)}),
        dtype="float32",
    ).reshape(len(x), 7)
    runners = [load_tfjs_graph_model(out / name) for name in ("first", "second")]
    flipped = np.ascontiguousarray(x[:, :, ::-1, :])
    python = soft_vote([(r(x) + r(flipped)) / 2 for r in runners], [2.0, 1.0])
    diff = float(np.abs(browser - python).max())
    print(f"\nensemble: |browser-python|max={diff:.2e}")
    assert diff <= FLOAT_TOL
    assert (browser.argmax(1) == python.argmax(1)).all()


def test_browser_runs_recurrent_and_residual_model(site, page):
    """LSTM (unrolled at export) and a residual add fused into a conv by grappler: both
    patterns tfjs cannot run as converted; the exported model.json must work in the page."""
    import keras
    from keras import layers

    from training.export.tfjs import convert_keras_to_tfjs, load_tfjs_graph_model

    keras.utils.set_random_seed(1)
    inp = keras.Input((48, 48, 1))
    x = layers.Rescaling(1.0 / 255)(inp)
    # (strides=4 with a 3x3 SAME conv is miscomputed by tfjs-wasm 4.22 itself: avoided here.)
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    skip = x
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.Activation("relu")(layers.Add()([x, layers.Multiply()([skip, skip])]))
    x = layers.MaxPooling2D(2)(x)
    x = layers.Reshape((36, 8))(x)
    x = layers.LSTM(8)(x)
    model = keras.Model(inp, layers.Dense(7, activation="softmax")(x))
    x_in = np.random.default_rng(5).uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    root, _ = site
    convert_keras_to_tfjs(model, root / "models" / "recurrent", "none")
    doc = json.loads((root / "models" / "recurrent" / "model.json").read_text())
    ops = {n["op"] for n in doc["modelTopology"]["node"]}
    assert not ops & {"Enter", "Exit", "Merge", "While", "StatelessWhile"}, ops
    # Unrolling duplicates the LSTM kernels per time step; export stores them once.
    weight_bytes = sum(p.stat().st_size for p in (root / "models" / "recurrent").glob("*.bin"))
    assert weight_bytes <= 4 * model.count_params() + 1024, weight_bytes
    result = page.evaluate(RUN_JS, {"url": "/models/recurrent/model.json", "data": x_in.ravel().tolist(),
                                    "shape": list(x_in.shape)})
    browser = np.asarray(result["out"], dtype="float32").reshape(4, 7)
    diff = float(np.abs(browser - model.predict(x_in, verbose=0)).max())
    python_graph = load_tfjs_graph_model(root / "models" / "recurrent")(x_in)
    print(f"\nrecurrent+residual: |browser-keras|max={diff:.2e} weight_bytes={weight_bytes}")
    assert diff <= FLOAT_TOL
    assert float(np.abs(browser - python_graph).max()) <= FLOAT_TOL


@pytest.mark.parametrize("name", ["sepnet"])
def test_browser_runs_zoo_model(site, page, name):
    """A phone-sized zoo architecture (separable convs, residual adds, max-pools) converts and
    gives Keras' numbers in tfjs-wasm. Random weights, with BatchNorm statistics and the
    classifier scaled so the probabilities are far from uniform (a real comparison)."""
    import keras

    from training.export.tfjs import convert_keras_to_tfjs
    from training.models import build_model

    keras.utils.set_random_seed(3)
    model = build_model(name)
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                               rng.normal(0, 0.1, beta.shape).astype("float32"),
                               rng.normal(0, 0.1, mean.shape).astype("float32"),
                               rng.uniform(0.5, 1.5, var.shape).astype("float32")])
    head = model.get_layer("probs")
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 20.0, bias])
    x_in = rng.uniform(0, 255, (4, 48, 48, 1)).astype("float32")
    expected = model.predict(x_in, verbose=0)
    assert float(expected.max(axis=1).min()) > 0.3  # not a near-uniform output
    root, _ = site
    convert_keras_to_tfjs(model, root / "models" / name, "none")
    result = page.evaluate(RUN_JS, {"url": f"/models/{name}/model.json",
                                    "data": x_in.ravel().tolist(), "shape": list(x_in.shape)})
    browser = np.asarray(result["out"], dtype="float32").reshape(4, 7)
    diff = float(np.abs(browser - expected).max())
    print(f"\n{name}: |browser-keras|max={diff:.2e}")
    assert diff <= FLOAT_TOL
    assert (browser.argmax(1) == expected.argmax(1)).all()
