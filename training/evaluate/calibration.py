"""Calibration: does "happy 85 %" mean right 85 % of the time? Measured, and fixed with one
temperature.

    ece(probs, y)                      expected calibration error (top label, equal-width bins)
    reliability(probs, y)              per bin: mean confidence, accuracy, count (the diagram)
    fit_temperature(probs, y)          T minimising the negative log-likelihood (Guo et al. 2017)
    with_temperature(probs, T)         softmax(log(p) / T): what the page shows

The page's probabilities are a soft vote of softmax outputs (and of their mirrored crops), not
logits, so the temperature acts on log(p): for one member that is exactly logit / T (the
log-partition cancels in the softmax); for a vote it is the same monotone sharpening (T < 1) or
softening (T > 1) of the final distribution, so no top class and no accuracy changes. T is
fitted on PublicTest only; ECE is reported on PrivateTest before and after.
"""

from __future__ import annotations

import numpy as np

BINS = 15
T_RANGE = (0.05, 20.0)  # the manifest accepts this range (contract/manifest.py)
_EPS = 1e-12


def with_temperature(probs: np.ndarray, t: float) -> np.ndarray:
    """softmax(log(p) / t) row by row (t = 1 returns p renormalised)."""
    logp = np.log(np.clip(np.asarray(probs, dtype="float64"), _EPS, None)) / float(t)
    logp -= logp.max(axis=1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=1, keepdims=True)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    p = np.asarray(probs, dtype="float64")[np.arange(len(y)), np.asarray(y, dtype="int64")]
    return float(-np.mean(np.log(np.clip(p, _EPS, None))))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict:
    """Per equal-width confidence bin (of the top probability): mean confidence, accuracy and
    count; empty bins have None for the means."""
    probs = np.asarray(probs, dtype="float64")
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = pred == np.asarray(y)
    # bin i holds (i/bins, (i+1)/bins]; a confidence of exactly 0 cannot occur (top of 7 >= 1/7)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / counts, acc_sum / counts
    return {"edges": [i / bins for i in range(bins + 1)], "count": counts.tolist(),
            "confidence": [None if c == 0 else float(v) for c, v in zip(counts, mean_conf)],
            "accuracy": [None if c == 0 else float(v) for c, v in zip(counts, acc)]}


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: sum over bins of |accuracy - confidence| x share of images."""
    r = reliability(probs, y, bins)
    n = max(1, sum(r["count"]))
    return float(sum(c / n * abs(a - m) for c, a, m in zip(r["count"], r["accuracy"],
                                                            r["confidence"]) if c))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in T_RANGE that minimises the NLL of `with_temperature(probs, T)` (a convex
    problem in 1/T: golden-section search over log T)."""
    from scipy.optimize import minimize_scalar

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    res = minimize_scalar(lambda lt: nll(with_temperature(probs, np.exp(lt)), y),
                          bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(res.x))


def summary(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> dict:
    """Accuracy, mean top probability, ECE and NLL of one set of probabilities."""
    probs = np.asarray(probs, dtype="float64")
    return {"n": len(y), "accuracy": float((probs.argmax(1) == np.asarray(y)).mean()),
            "mean_confidence": float(probs.max(1).mean()), "ece": ece(probs, y, bins),
            "nll": nll(probs, y)}


# -- the report of `fer-hybrid calibrate` ----------------------------------------------------

SECTION = "calibration"  # the model card's <!-- calibration[-<variant>]:begin --> ... end


def calibrate(fit: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray], *,
              bins: int = BINS, fit_split: str = "val", held_split: str = "test") -> dict:
    """T fitted on `fit` (probs, y); every figure before and after it on both splits, with the
    held-out split's reliability bins."""
    t = fit_temperature(*fit)
    result = {"temperature": t, "bins": bins, "fitted_on": fit_split, "held_out": held_split}
    for split, (probs, y) in ((fit_split, fit), (held_split, held_out)):
        result[split] = {}
        for key, p in (("before", probs), ("after", with_temperature(probs, t))):
            block = summary(p, y, bins)
            if split == held_split:
                block["reliability"] = reliability(p, y, bins)
            result[split][key] = block
    return result


def markdown(result: dict) -> str:
    """The model card's section: one table, the temperature and how it was measured."""
    from contract import SPLIT_TITLES
    from training.core.report import markdown_table, pct

    rows = []
    for split in (result["held_out"], result["fitted_on"]):
        for key, what in (("before", "the vote as it is"),
                          ("after", f"temperature {result['temperature']:.3f}")):
            b = result[split][key]
            rows.append([f"{SPLIT_TITLES[split]} ({b['n']})", what, pct(b["accuracy"]),
                         pct(b["mean_confidence"]), pct(b["ece"]), f"{b['nll']:.3f}"])
    held, fit = SPLIT_TITLES[result["held_out"]], SPLIT_TITLES[result["fitted_on"]]
    truth = ("FER2013's labels" if result.get("labels", "fer2013") == "fer2013" else
             "the FER+ annotators' strict majority (a tie broken by the first FER+ column; "
             "rows whose majority is not one of the seven classes left out)")
    return "\n".join([
        f"**{result['target']}**: the page shows softmax(log(p) / T) of its vote p "
        f"({'with' if result['tta'] else 'without'} flip TTA, after its low-light step), "
        f"T = **{result['temperature']:.3f}** fitted on {fit} only (negative log-likelihood); "
        f"expected calibration error over {result['bins']} equal-width confidence bins, "
        f"measured on {held} against {truth}. A temperature never changes the top class, so "
        f"the accuracy stays.",
        "",
        markdown_table(["split (images)", "probabilities", "accuracy", "mean confidence",
                        "ECE", "NLL"], rows),
        "",
        f"Reproduce: `{result['command']}` (reliability diagram: "
        f"`{result['figure']}`).",
    ])


def set_temperature(models_dir, t: float) -> None:
    """Write `ensemble.temperature` into a models folder's manifest.json (checked, atomic)."""
    set_ensemble(models_dir, temperature=round(float(t), 4))


def set_ensemble(models_dir, **fields) -> None:
    """Write fields of `ensemble` (the temperature, the low-light threshold) into a models
    folder's manifest.json, checked before it is written, atomically."""
    from contract.manifest import (
        ManifestError,
        manifest_path,
        read_manifest_json,
        validate_manifest,
        write_manifest,
    )

    path = manifest_path(models_dir)
    doc = read_manifest_json(path)
    doc["ensemble"] = {**doc.get("ensemble", {}), **fields}
    problems = validate_manifest(doc, path.parent)
    if problems:
        raise ManifestError(f"{path}: " + "; ".join(problems))
    write_manifest(doc, path)
