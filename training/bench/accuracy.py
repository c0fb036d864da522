"""Every FER2013 PrivateTest crop through each tool's own classifier code, in the browser.

* ours: the page's modules on the served models/ (web/js/classifier.js `Ensemble`, after
  web/js/lowlight.js `normalizeLowLight` with the manifest's threshold as the page does;
  "ours_raw" without that step),
  imported into the real page served by the real backend;
* Human: its emotion model with its own preprocessing (harness/human.js cites the source);
* face-api: `faceExpressionNet.predictExpressions` (harness/faceapi.js).

Flip TTA is the mean of the probabilities of a crop and of its mirror, for every tool alike
(for ours this is exactly what `Ensemble.classify` does with the manifest's tta_flip, whose
two halves it averages the same way, so the Ensemble runs with ttaFlip off here).
"""

from __future__ import annotations

import base64
import time

import numpy as np

from training.bench.browser import browser, wait_for
from training.bench.labels import to_project_order
from training.core.errors import FerError
from training.core.metrics import tta_average
from training.data.ferplus_agreement import ferplus_scores

CHUNK = 256  # crops per page.evaluate: ~0.6 MB of base64, a few seconds of work

_OURS_SETUP = """async () => {
  const { Ensemble } = await import('/static/js/classifier.js');
  const lowlight = await import('/static/js/lowlight.js');
  const ens = await Ensemble.load();
  const ttaManifest = ens.ttaFlip;
  ens.ttaFlip = false;  // flip TTA is applied outside, identically for every tool
  window.__ferBench = { ens, lowlight };
  return { labels: ens.labels, ttaManifest, members: ens.members.map((m) => m.name),
           backend: globalThis.tf.getBackend() };
}"""

_OURS_CLASSIFY = """async ([b64, n, low]) => {
  const { ens, lowlight } = window.__ferBench;
  const s = atob(b64), bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  const crops = [];
  for (let i = 0; i < n; i++) {
    const c = bytes.slice(i * 2304, (i + 1) * 2304);
    crops.push(low ? lowlight.normalizeLowLight(c, { darkMean: ens.equalizeBelow }).gray : c);
  }
  const probs = [];
  for (const p of await ens.classify(crops)) probs.push(...p);
  return { labels: ens.labels, probs };
}"""


def _b64(x: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(x, dtype=np.uint8).tobytes()).decode()


def _classify_all(call, x: np.ndarray, log, what: str) -> np.ndarray:
    """(n, 7) probabilities in contract.LABELS order, CHUNK crops per browser call."""
    out, t0 = [], time.monotonic()
    for i in range(0, len(x), CHUNK):
        part = x[i:i + CHUNK]
        r = call(_b64(part), len(part))
        probs = np.asarray(r["probs"], dtype=np.float64).reshape(len(part), -1)
        out.append(to_project_order(probs, r["labels"]))
        done = i + len(part)
        if done == len(x) or (i // CHUNK) % 4 == 3:
            log(f"    {what}: {done}/{len(x)} crops, {time.monotonic() - t0:.0f} s")
    return np.concatenate(out)


def score(p: np.ndarray, p_flip: np.ndarray, y: np.ndarray, votes=None) -> dict:
    """Accuracy plain and with flip TTA; with `votes` (the same crops' FER+ votes) also
    "ferplus": agreement with the ten-annotator majority
    (`training.data.ferplus_agreement.ferplus_scores`)."""
    y = np.asarray(y)
    tta = tta_average(p, p_flip)
    out = {"n": int(len(y)),
           "accuracy": float(np.mean(p.argmax(1) == y)),
           "accuracy_flip_tta": float(np.mean(tta.argmax(1) == y))}
    if votes is not None:
        out["ferplus"] = ferplus_scores(p, tta, votes)
    return out


def _both(call, x, y, log, what, votes=None) -> dict:
    p = _classify_all(call, x, log, what)
    pf = _classify_all(call, x[:, :, ::-1], log, what + " (mirrored)")
    return score(p, pf, y, votes)


def run_accuracy(x: np.ndarray, y: np.ndarray, our_base: str, peer_base: str | None,
                 peers: list[str], log=print, votes=None) -> dict[str, dict]:
    """{config: {n, accuracy, accuracy_flip_tta, [ferplus], ...}} for ours, ours_raw and each
    peer; "ferplus" when `votes` (the crops' FER+ votes) are given."""
    out: dict[str, dict] = {}
    with browser() as b:
        page = b.new_context(service_workers="block").new_page()
        page.goto(f"{our_base}/?backend=wasm")
        wait_for(page, "window.ferState && window.ferState.ready", 180, "our page to load")
        info = page.evaluate(_OURS_SETUP)
        for name, low in (("ours", True), ("ours_raw", False)):
            log(f"  accuracy: {name} ({'page low-light step + ' if low else ''}ensemble) ...")
            call = lambda b64, n, low=low: page.evaluate(_OURS_CLASSIFY, [b64, n, low])  # noqa: E731
            out[name] = {**_both(call, x, y, log, name, votes), "info": info}
        page.context.close()
        for tool in peers:
            page = b.new_context(service_workers="block").new_page()
            page.goto(f"{peer_base}/harness/index.html?tool={tool}")
            wait_for(page, "window.bench && (window.bench.ready || window.bench.error)", 180,
                     f"{tool} to load")
            if page.evaluate("window.bench.error"):
                raise FerError(f"{tool} harness failed: {page.evaluate('window.bench.error')}")
            log(f"  accuracy: {tool} ...")
            call = lambda b64, n, page=page: page.evaluate(  # noqa: E731
                "([b, n]) => bench.classify(b, n)", [b64, n])
            out[tool] = {**_both(call, x, y, log, tool, votes),
                         "info": page.evaluate("window.bench.info")}
            page.context.close()
    return out
