"""The page's per-face low-light normalisation, in Python (numpy only).

Source of truth: ``web/js/lowlight.js``; this is a port, so the robustness benchmark can score
crops exactly as the page feeds them to the models (detect -> align -> *normalise* -> classify).
``tests/test_robustness_lowlight.py`` runs the JS module in headless Chromium on the same crops
and checks the outputs byte for byte, branch included. Change both files together.

The rule (per crop of grey levels 0..255):

* ``equalize`` when the mean is below ``dark_mean`` (the manifest's ``ensemble.equalize_below``,
  40 when it has none: `page_rule`): histogram equalisation,
  ``lut[i] = round((cdf[i] - cdf_min) * 255 / max(1, n - cdf_min))``;
* else ``stretch`` when the 2nd-98th percentile range is below ``min_range`` (0 by default, so
  never: on PublicTest stretching cost accuracy on clean crops, ``tests/bench_lowlight_rule.py``;
  the page's rule before 2026-12-03 was 70 / 110): a linear stretch of ``[p2, p98]`` onto
  ``[0, 255]``, clipped;
* else ``none`` (the crop is returned untouched).

Percentiles are the JS ones: the first grey level whose cumulative count reaches ``p * n``.
Rounding is JavaScript's ``Math.round`` (halves go up, towards +inf), not numpy's round half to
even: ``round(2.5)`` is 3 here, as in the page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.manifest import DEFAULT_EQUALIZE_BELOW, equalize_below

DARK_MEAN = DEFAULT_EQUALIZE_BELOW
MIN_RANGE = 0
#: The rule the page used before 2026-12-03 (the robustness report's page-mode figures so far).
FORMER_RULE = {"dark_mean": 70, "min_range": 110}
BRANCHES = ("equalize", "stretch", "none")


def page_rule(manifest) -> dict[str, float]:
    """The options of `normalize_batch` the page uses for a models folder's manifest (a
    `contract.manifest.Manifest`, or None for a run or a .keras file: the default rule)."""
    return {"dark_mean": equalize_below(manifest.ensemble) if manifest is not None else DARK_MEAN,
            "min_range": MIN_RANGE}


def js_round(x: np.ndarray) -> np.ndarray:
    """JavaScript's Math.round on float64: the nearest integer, halves towards +inf.

    ``floor(x + 0.5)`` is not it: for 0.49999999999999994 the sum rounds to 1.0 in floating
    point. ``x - floor(x)`` is exact for these magnitudes, so comparing it with 0.5 is.
    """
    x = np.asarray(x, dtype="float64")
    lo = np.floor(x)
    return lo + (x - lo >= 0.5)


@dataclass
class Stats:
    mean: float
    p2: int
    p98: int
    hist: np.ndarray  # (256,) counts


def _percentile(hist: np.ndarray, p: float, n: int) -> int:
    hits = np.flatnonzero(np.cumsum(hist) >= p * n)  # p * n in float64, as in JS
    return int(hits[0]) if hits.size else 255


def stats(gray: np.ndarray) -> Stats:
    gray = _as_levels(gray)
    n = gray.size
    hist = np.bincount(gray.ravel(), minlength=256)
    return Stats(mean=int(gray.sum(dtype="int64")) / n, p2=_percentile(hist, 0.02, n),
                 p98=_percentile(hist, 0.98, n), hist=hist)


def decide(s: Stats, *, dark_mean: float = DARK_MEAN, min_range: float = MIN_RANGE) -> str:
    """'equalize' | 'stretch' | 'none', as lowlight.js decides."""
    if s.mean < dark_mean:
        return "equalize"
    if s.p98 - s.p2 < min_range:
        return "stretch"
    return "none"


def stretch(gray: np.ndarray, lo: int, hi: int) -> np.ndarray:
    gray = _as_levels(gray)
    span = max(1, hi - lo)
    # integer numerator, float64 division: the same IEEE numbers as the JS expression
    out = js_round((gray.astype("int64") - lo) * 255 / span)
    return np.clip(out, 0, 255).astype("uint8")


def equalize(gray: np.ndarray, hist: np.ndarray) -> np.ndarray:
    gray = _as_levels(gray)
    return equalize_lut(hist, gray.size)[gray]


def equalize_lut(hist: np.ndarray, n: int) -> np.ndarray:
    cdf = np.cumsum(hist).astype("float64")
    cdf_min = cdf[np.argmax(cdf > 0)]
    denom = max(1.0, n - cdf_min)
    return np.clip(js_round((cdf - cdf_min) * 255 / denom), 0, 255).astype("uint8")


def normalize_low_light(gray: np.ndarray, **opts) -> tuple[np.ndarray, str]:
    """(normalised crop, branch) for one crop; the crop itself when the branch is 'none'."""
    s = stats(gray)
    applied = decide(s, **opts)
    if applied == "equalize":
        return equalize(gray, s.hist), applied
    if applied == "stretch":
        return stretch(gray, s.p2, s.p98), applied
    return _as_levels(gray), applied


def normalize_batch(x: np.ndarray, **opts) -> tuple[np.ndarray, np.ndarray]:
    """`normalize_low_light` on every crop of a batch (N, H, W): (uint8 crops, branches (N,)).

    Vectorised (per-row histograms by offset bincount) because the benchmark normalises tens
    of thousands of crops; tests check it equals the per-crop port.
    """
    x = _as_levels(x)
    n_img = len(x)
    if n_img == 0:
        return x.copy(), np.zeros(0, dtype="<U8")
    flat = x.reshape(n_img, -1)
    n = flat.shape[1]
    offsets = (np.arange(n_img, dtype="int64") * 256)[:, None]
    hist = np.bincount((flat + offsets).ravel(), minlength=256 * n_img).reshape(n_img, 256)
    cum = np.cumsum(hist, axis=1)
    mean = flat.sum(axis=1, dtype="int64") / n
    p2 = _first_reaching(cum, 0.02 * n)
    p98 = _first_reaching(cum, 0.98 * n)
    dark_mean = opts.get("dark_mean", DARK_MEAN)
    min_range = opts.get("min_range", MIN_RANGE)
    branch = np.where(mean < dark_mean, "equalize",
                      np.where(p98 - p2 < min_range, "stretch", "none"))
    out = flat.copy()
    eq = branch == "equalize"
    if eq.any():
        cdf = cum[eq].astype("float64")
        cdf_min = cdf[np.arange(len(cdf)), np.argmax(cdf > 0, axis=1)][:, None]
        denom = np.maximum(1.0, n - cdf_min)
        lut = np.clip(js_round((cdf - cdf_min) * 255 / denom), 0, 255).astype("uint8")
        out[eq] = np.take_along_axis(lut, flat[eq].astype("int64"), axis=1)
    st = branch == "stretch"
    if st.any():
        lo = p2[st][:, None]
        span = np.maximum(1, p98[st] - p2[st])[:, None]
        vals = js_round((flat[st].astype("int64") - lo) * 255 / span)
        out[st] = np.clip(vals, 0, 255).astype("uint8")
    return out.reshape(x.shape), branch


def _first_reaching(cum: np.ndarray, target: float) -> np.ndarray:
    """Per row, the first grey level whose cumulative count reaches `target` (255 if none)."""
    hit = cum >= target
    return np.where(hit.any(axis=1), np.argmax(hit, axis=1), 255)


def _as_levels(gray: np.ndarray) -> np.ndarray:
    """uint8 grey levels; the page's crops are Uint8Array, so anything else is a caller bug."""
    gray = np.asarray(gray)
    if gray.dtype != np.uint8:
        raise TypeError(f"low-light normalisation takes uint8 grey levels, got {gray.dtype}")
    return gray
