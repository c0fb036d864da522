"""The robustness benchmark (dynamic environments): accuracy under graded corruptions.

For every condition x severity of `training.robustness.perturb` the split's crops are corrupted,
then scored twice by the target as the page scores a crop (`page_classifier`: the target loaded by
`training.evaluate.scorer`, a models folder's members soft-voted with the manifest's weights, plus
flip TTA as the manifest says):

* ``normalised``: through the page's low-light normalisation first (`training.robustness.lowlight`,
  the port of web/js/lowlight.js), exactly what the page feeds its models;
* ``raw``: the corrupted crop as it is (what the model alone can take).

Each mode's drop is measured against the clean crop in the same mode, in points, with a paired
95 % interval (the same images scored twice, so the per-image differences give the spread).
The goals (`GOALS`) are judged on the ``normalised`` drops (the page's pipeline).

`plan_robustness` makes every cheap check (target, conditions, output, model card);
`measure` is the slow part; `write_reports` writes robustness.json/.md/.png and, when asked, the
marked section of the model card. Keras/TensorFlow are imported by `page_classifier` only.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE, SPLIT_TITLES, utc_now
from contract.files import atomic_write
from training.core.errors import FerError
from training.core.metrics import top1_accuracy
from training.core.outputs import check_out_dir
from training.core.report import (
    markdown_table,
    read_marked_section,
    write_json,
    write_marked_section,
)
from training.evaluate.scorer import Source
from training.robustness.lowlight import BRANCHES, DARK_MEAN, MIN_RANGE, normalize_batch, page_rule
from training.robustness.perturb import CONDITIONS, FAMILIES, SEVERITIES, SEVERITY_NAMES, perturb

SCHEMA = "fer-hybrid/robustness@1"
MODES = ("normalised", "raw")
MODE_NOTES = {
    "normalised": "corrupted crop -> the page's low-light normalisation (web/js/lowlight.js, "
                  "ported in training/robustness/lowlight.py) -> classifier: what the page runs",
    "raw": "corrupted crop -> classifier (no normalisation)",
}
SECTION = "robustness"  # the model card's <!-- robustness:begin --> ... <!-- robustness:end -->


@dataclass(frozen=True)
class Goal:
    """A robustness target: the drop under one condition/severity stays within `max_drop` points."""

    goal: str
    condition: str
    severity: int
    max_drop: float


GOALS = (
    Goal("moderate low light", "low_light", 2, 3.0),
    Goal("night", "night", 2, 6.0),
    Goal("±20° roll", "roll", 2, 3.0),
    Goal("eyes occluded", "occlusion_eyes", 2, 8.0),
    Goal("lower face occluded", "occlusion_lower", 2, 8.0),
    Goal("24-px faces", "scale", 2, 5.0),
)


def parse_conditions(text: str | None) -> list[str]:
    """'all'/None -> every condition; else names or family names, comma-separated, in order."""
    if text is None or text.strip().lower() in ("", "all"):
        return list(CONDITIONS)
    chosen: list[str] = []
    for item in (t.strip().lower() for t in text.split(",")):
        if not item or item == "clean":
            continue  # clean is always measured: it is the reference
        if item in CONDITIONS:
            names = [item]
        elif item in FAMILIES:
            names = [n for n, c in CONDITIONS.items() if c.family == item]
        else:
            raise FerError(f"unknown condition {item!r}; use conditions "
                           f"({', '.join(CONDITIONS)}) or families ({', '.join(FAMILIES)})")
        chosen += [n for n in names if n not in chosen]
    if not chosen:
        raise FerError("--conditions names no condition; leave it out to run them all")
    return chosen


def default_out_dir(source: Source) -> Path:
    """models/robustness/ (a re-export drops it with the members it measured),
    <run>/robustness/, or <model>_robustness/ beside a .keras file."""
    if source.kind == "keras":
        return source.path.parent / f"{source.path.stem}_robustness"
    return source.path / "robustness"


def describe_target(source: Source, tta: bool) -> dict:
    """JSON-ready: what was measured."""
    if source.manifest is not None:
        members = [{"name": m.name, "path": str((source.path / m.path).parent),
                    "weight": float(m.weight)} for m in source.manifest.members]
    else:
        members = [{"name": source.name, "path": str(source.target.model_path), "weight": 1.0}]
    return {"name": source.name, "kind": source.kind, "path": str(source.path),
            "tta_flip": bool(tta), "members": members}


def page_classifier(source: Source, *, tta: bool, batch_size: int = 256,
                    temperature: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 crops -> probabilities as web/js/classifier.js computes them: the members'
    weighted soft vote (`load_scorer`), averaged with the mirrored crop's when `tta`, then the
    manifest's temperature (`temperature`: another one; 1 for the vote as it is)."""
    from training.core.metrics import tta_average
    from training.evaluate.calibration import with_temperature
    from training.evaluate.scorer import load_scorer
    from training.models.predict import to_model_input

    if temperature is None:
        temperature = float(source.manifest.ensemble.get("temperature", 1.0)
                            if source.manifest is not None else 1.0)
    scorer = load_scorer(source, batch_size=batch_size)

    def classify(x: np.ndarray) -> np.ndarray:
        inputs = to_model_input(x)
        probs = scorer.predict(inputs)
        if tta:  # the vote is linear, so mirroring the vote = voting the mirrored members
            probs = tta_average(probs, scorer.predict(np.ascontiguousarray(inputs[:, :, ::-1])))
        probs = np.asarray(probs, dtype="float64")
        return probs if temperature == 1.0 else with_temperature(probs, temperature)

    return classify


@dataclass
class RobustnessPlan:
    source: Source
    tta: bool
    conditions: list[str]
    split: str
    out_dir: Path
    seed: int = 0
    sample: int | None = None
    model_card: Path | None = None
    command: str = ""


def plan_robustness(source: Source, *, tta: bool | None, conditions: str | None, split: str,
                    out_dir: Path | None, seed: int, sample: int | None,
                    model_card: Path | None, command: str) -> RobustnessPlan:
    """Every check that needs neither data nor TensorFlow (`tta` None: as the target says)."""
    from training.core.splits import normalise_split

    split = normalise_split(split)
    if source.manifest is not None:
        spec = source.manifest.input
        size = (spec.get("height"), spec.get("width"), spec.get("channels", 1))
        if size != (IMAGE_SIZE, IMAGE_SIZE, 1):
            raise FerError(f"{source.path}: the manifest's input is {size}, but the corruptions "
                           f"are defined on {IMAGE_SIZE}x{IMAGE_SIZE} grey crops")
    if sample is not None and sample < 7:
        raise FerError(f"--sample {sample} is too small; use at least 7 (one image per class)")
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(source)
    check_out_dir(out_dir)  # now, not after minutes of measuring; made by write_reports
    if model_card is not None:
        model_card = Path(model_card)
        if not model_card.parent.is_dir():
            raise FerError(f"--model-card {model_card}: folder {model_card.parent} does not exist")
        if model_card.exists():
            read_marked_section(model_card, SECTION)  # FerError for broken markers, now
    return RobustnessPlan(source, source.default_tta if tta is None else bool(tta),
                          parse_conditions(conditions), split, out_dir, seed, sample,
                          model_card, command)


def command_line(target: Path, **options) -> str:
    """The `fer-hybrid robustness` line that reproduces a result (options that change it)."""
    parts = ["fer-hybrid", "robustness", str(target)]
    for flag, value in options.items():
        if value is None or value is False:
            continue
        parts += [f"--{flag.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return shlex.join(parts)


# --------------------------------------------------------------------------- measuring


def _drop(clean: np.ndarray, cond: np.ndarray) -> tuple[float, float]:
    """(drop, 95 % half-width) in points, paired over the same images."""
    d = clean.astype("float64") - cond.astype("float64")
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return 100.0 * float(d.mean()), 100.0 * float(half)


def measure(plan: RobustnessPlan, classify: Callable[[np.ndarray], np.ndarray],
            x: np.ndarray, y: np.ndarray, *, progress: bool | None = None) -> dict:
    """Accuracy per condition, severity and mode; the report as a JSON-ready dict."""
    from tqdm import tqdm

    y = np.asarray(y)
    steps = [("clean", 0)] + [(n, s) for n in plan.conditions for s in SEVERITIES]
    start = time.monotonic()
    rule = page_rule(plan.source.manifest)
    rows, reference = [], {}
    bar = tqdm(steps, desc="robustness", unit="condition", disable=progress is False,
               mininterval=1.0)
    for name, severity in bar:
        bar.set_postfix_str(f"{name} {severity}")
        crops = perturb(x, name, severity, plan.seed)
        probs = classify(crops)
        normalised, branch = normalize_batch(crops, **rule)
        # only crops the normalisation changed need a second pass through the models
        changed = np.any((normalised != crops).reshape(len(crops), -1), axis=1)
        probs_norm = probs.copy()
        if changed.any():
            probs_norm[changed] = classify(normalised[changed])
        correct = {"normalised": probs_norm.argmax(1) == y, "raw": probs.argmax(1) == y}
        if name == "clean":
            reference = correct
        cond = CONDITIONS.get(name)
        row = {
            "condition": name,
            "family": cond.family if cond else "clean",
            "severity": severity,
            "severity_name": SEVERITY_NAMES[severity],
            "params": cond.params(severity) if cond else {},
            "accuracy": {m: top1_accuracy(p, y) for m, p in (("normalised", probs_norm),
                                                              ("raw", probs))},
            "drop_points": {}, "drop_ci95_points": {},
            "lowlight_branches": {b: int(np.sum(branch == b)) for b in BRANCHES},
        }
        for mode in MODES:
            row["drop_points"][mode], row["drop_ci95_points"][mode] = _drop(
                reference[mode], correct[mode])
        rows.append(row)
    result = {
        "schema": SCHEMA,
        "created": utc_now(),
        "command": plan.command,
        "target": describe_target(plan.source, plan.tta),
        "split": plan.split,
        "split_name": SPLIT_TITLES[plan.split],
        "n": int(len(y)),
        "sample": plan.sample,
        "seed": plan.seed,
        "modes": dict(MODE_NOTES),
        "lowlight_rule": rule,
        "severities": {str(k): v for k, v in SEVERITY_NAMES.items()},
        "conditions": {n: {"family": CONDITIONS[n].family, "title": CONDITIONS[n].title,
                           "levels": {str(s): CONDITIONS[n].params(s) for s in SEVERITIES}}
                       for n in plan.conditions},
        "results": rows,
        "goals": judge_goals(rows),
        "seconds": round(time.monotonic() - start, 1),
    }
    return result


def find_row(rows: Sequence[dict], condition: str, severity: int) -> dict | None:
    return next((r for r in rows if r["condition"] == condition and r["severity"] == severity),
                None)


def judge_goals(rows: Sequence[dict], mode: str = "normalised") -> list[dict]:
    """goal / limit / measured / met for each robustness goal (met None when not measured)."""
    out = []
    for g in GOALS:
        row = find_row(rows, g.condition, g.severity)
        drop = row["drop_points"][mode] if row else None
        out.append({
            "goal": g.goal, "condition": g.condition, "severity": g.severity,
            "severity_name": SEVERITY_NAMES[g.severity], "mode": mode,
            "max_drop_points": g.max_drop, "drop_points": drop,
            "drop_ci95_points": row["drop_ci95_points"][mode] if row else None,
            "met": None if drop is None else bool(drop <= g.max_drop),
        })
    return out


# --------------------------------------------------------------------------- reports


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def _drop_text(row: dict, mode: str) -> str:
    if row["condition"] == "clean":
        return "—"
    return f"{row['drop_points'][mode]:+.1f} ± {row['drop_ci95_points'][mode]:.1f}"


def goals_table(result: dict) -> str:
    rows = []
    for g in result["goals"]:
        measured = ("not run" if g["drop_points"] is None
                    else f"{g['drop_points']:+.1f} ± {g['drop_ci95_points']:.1f}")
        met = {True: "yes", False: "**no**", None: "—"}[g["met"]]
        rows.append([g["goal"], f"`{g['condition']}` {g['severity_name']}",
                     f"≤ {g['max_drop_points']:g}", measured, met])
    return markdown_table(["goal", "condition", "max drop (points)", "measured drop", "met"],
                          rows)


def results_table(result: dict) -> str:
    rows = []
    for r in result["results"]:
        b = r["lowlight_branches"]
        share = (b["equalize"] + b["stretch"]) / max(1, sum(b.values()))
        rows.append([
            "clean" if r["condition"] == "clean" else f"`{r['condition']}`",
            r["severity_name"],
            _pct(r["accuracy"]["normalised"]), _drop_text(r, "normalised"),
            _pct(r["accuracy"]["raw"]), _drop_text(r, "raw"),
            f"{100 * share:.0f} %",
        ])
    return markdown_table(["condition", "severity", "accuracy (page)", "drop (page)",
                           "accuracy (raw)", "drop (raw)", "crops normalised"], rows)


def _params_text(params: dict) -> str:
    if "steps" in params:
        return " then ".join(f"`{n}` {SEVERITY_NAMES[s]}" for n, s in params["steps"])
    return ", ".join(f"{k} {v}" for k, v in params.items())


def _rule_text(rule: dict | None) -> str:
    """The page's low-light rule in words (a report without one: the rule before the manifest
    carried it)."""
    dark = (rule or {}).get("dark_mean", DARK_MEAN)
    low = (rule or {}).get("min_range", MIN_RANGE)
    text = f"equalise when the mean < {dark:g}" if dark > 0 else "never equalise"
    return text + (f", stretch when the 2–98 % range < {low:g}" if low > 0 else "")


def _header(result: dict) -> list[str]:
    t = result["target"]
    members = ", ".join(f"{m['name']} (weight {m['weight']:g})" for m in t["members"])
    sample = f", a stratified sample (--sample {result['sample']})" if result["sample"] else ""
    return [
        f"Target `{t['path']}` ({t['kind']}: {members}), flip TTA "
        f"{'on' if t['tta_flip'] else 'off'}; {result['split_name']}, {result['n']:,} images"
        f"{sample}; seed {result['seed']}.",
        "",
        "Drops are in points against the clean crops of the same mode, with a paired 95 % "
        "interval; positive = accuracy lost. **page**: the corrupted crop goes through the "
        f"page's low-light normalisation ({_rule_text(result.get('lowlight_rule'))}) before "
        "the models, as in the browser; **raw**: it does not. "
        "The goals are judged on the page's numbers.",
    ]


def render_markdown(result: dict) -> str:
    lines = [f"# Robustness of `{result['target']['name']}`", "", *_header(result), "",
             f"Command: `{result['command']}`", "", "## Goals", "",
             goals_table(result), "", "## Accuracy per condition", "", results_table(result),
             "", "## Conditions", ""]
    for name, c in result["conditions"].items():
        levels = "; ".join(f"{SEVERITY_NAMES[int(s)]}: {_params_text(p)}"
                           for s, p in c["levels"].items())
        lines.append(f"- `{name}` ({c['family']}), {c['title']}: {levels}")
    lines += ["", "Definitions: `training/robustness/perturb.py`. Curves: `robustness.png`.", ""]
    return "\n".join(lines)


def render_card_section(result: dict, report_dir: str) -> str:
    """The model card's robustness section (between the markers)."""
    return "\n".join([
        "## Robustness (dynamic environments)", "",
        *_header(result), "",
        goals_table(result), "",
        results_table(result), "",
        f"Conditions, exact parameters and curves: `{report_dir}/robustness.md`, "
        f"`{report_dir}/robustness.png` (definitions in `training/robustness/perturb.py`). "
        f"Reproduce ({result['seconds'] / 60:.0f} min on the 2-core CPU machine):", "",
        "```bash", result["command"], "```",
    ])


def write_reports(result: dict, plan: RobustnessPlan) -> dict[str, Path]:
    """robustness.json, robustness.md, robustness.png in plan.out_dir (+ the model card)."""
    from training.core.plots import plot_robustness  # matplotlib

    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "robustness.json", "markdown": out / "robustness.md",
             "png": out / "robustness.png"}
    plot_robustness(result, files["png"])
    atomic_write(files["markdown"], render_markdown(result))
    if plan.model_card is not None:
        try:
            rel = files["markdown"].parent.resolve().relative_to(plan.model_card.parent.resolve())
            where = rel.as_posix()
        except ValueError:
            where = str(out)
        write_marked_section(plan.model_card, SECTION, render_card_section(result, where))
        files["model_card"] = plan.model_card
    result["files"] = {k: str(v) for k, v in files.items()}
    write_json(files["json"], result)
    return files


def summary(result: dict) -> str:
    """A few terminal lines: clean accuracy, the worst drops, the goals."""
    clean = result["results"][0]["accuracy"]
    lines = [f"{result['target']['name']} on {result['split']} ({result['split_name']}), "
             f"{result['n']} images, {result['seconds']:.0f} s",
             f"  clean accuracy  page {_pct(clean['normalised'])}   raw {_pct(clean['raw'])}"]
    for g in result["goals"]:
        if g["met"] is not None:
            lines.append(f"  goal {g['goal']}: drop {g['drop_points']:+.1f} (≤ "
                         f"{g['max_drop_points']:g}) {'met' if g['met'] else 'NOT met'}")
    return "\n".join(lines)
