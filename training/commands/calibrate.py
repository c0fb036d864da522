"""`fer-hybrid calibrate`: measure whether the page's percentages mean what they say, and fit
the one temperature that makes them (training/evaluate/calibration.py); on request, first choose
the page's low-light threshold for the models (training/robustness/lowlight_choice.py).

Only typer/pathlib/typing at module level: the models run in TensorFlow inside the body.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import DataDir, Fer2013, FerPlus, PredictBatch, ScoredTarget


def calibrate(
    target: ScoredTarget,
    write: Annotated[bool, typer.Option(
        "--write/--no-write", help="Models folder: write the fitted temperature into its "
                                   "manifest.json (ensemble.temperature), which the page "
                                   "applies.")] = True,
    labels: Annotated[str, typer.Option(
        "--labels", help="What the percentages are checked against: fer2013 (FER2013's one "
                         "label per image) or ferplus (the ten FER+ annotators' majority, a tie "
                         "broken by the first FER+ column; rows whose majority is contempt, "
                         "unknown or not-a-face left out): the right check for a model trained "
                         "on the votes.")] = "fer2013",
    ferplus: FerPlus = None,
    lowlight: Annotated[str, typer.Option(
        "--lowlight", help="keep: score with the manifest's low-light threshold "
                           "(ensemble.equalize_below, 40 when it has none); choose: first pick "
                           "the threshold on PublicTest (clean crops and the robustness "
                           "benchmark's low light and night; about 10 minutes for three "
                           "members on 2 cores) and write it with the temperature.")] = "keep",
    bins: Annotated[int, typer.Option("--bins", help="Equal-width confidence bins of the "
                                                      "expected calibration error.")] = 15,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Report folder (default: <models>/calibration, <run>/calibration, or "
                      "<model>_calibration beside a .keras file).")] = None,
    model_card: Annotated[Path | None, typer.Option(
        "--model-card", help="Also write the table into this Markdown file (e.g. "
                             "models/README.md), between <!-- calibration:begin --> and "
                             "<!-- calibration:end --> (<!-- calibration-ID:… --> for the "
                             "variant in models/ID).")] = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    batch_size: PredictBatch = 256,
) -> None:
    """Calibration: the expected calibration error (ECE) of the probabilities the page shows,
    before and after one temperature fitted on PublicTest, measured on PrivateTest.

    The target is scored as the page scores it (the low-light step, the members' weighted
    vote, flip TTA as the manifest says). Writes calibration.json, calibration.md and
    reliability.png; for a models folder, also the temperature into its manifest (the page
    then shows softmax(log(p) / T)). About a minute for the shipped model on 2 cores.

    With --lowlight choose, the page's low-light threshold (below which mean grey level a face
    crop is equalised; 0: never) is picked first, on PublicTest only: the thresholds that cost
    at most 0.1 point on clean crops, and of those the best in low light and at night. It is
    written into the manifest (ensemble.equalize_below) with lowlight.json and lowlight.md,
    and the temperature is then fitted on crops as that rule leaves them.
    """
    from training.core.errors import FerError
    from training.evaluate.scorer import resolve_source

    source = resolve_source(target)
    if bins < 2:
        raise FerError(f"--bins must be at least 2 (got {bins})")
    if labels not in ("fer2013", "ferplus"):
        raise FerError(f"--labels must be fer2013 or ferplus (got {labels!r})")
    if lowlight not in ("keep", "choose"):
        raise FerError(f"--lowlight must be keep or choose (got {lowlight!r})")
    if lowlight == "choose" and source.manifest is None:
        raise FerError("--lowlight choose needs a models folder (its manifest holds the page's "
                       f"low-light threshold); {target} is a {source.kind}")
    out_dir = Path(out) if out is not None else (
        source.path.parent / f"{source.path.stem}_calibration" if source.kind == "keras"
        else source.path / "calibration")
    # a variant (models/<id>/, below the top manifest) gets a section of its own in the card
    section = (f"calibration-{source.name}" if source.manifest is not None
               and (source.path.parent / "manifest.json").is_file() else "calibration")
    import keras  # noqa: F401 - the install hint before the data loads
    import matplotlib  # noqa: F401
    import scipy  # noqa: F401

    from training.core.plots import plot_reliability
    from training.core.report import write_json, write_marked_section
    from training.data.evaluation import load_eval_split
    from training.evaluate.calibration import calibrate as fit_and_measure
    from training.evaluate.calibration import markdown, set_ensemble, set_temperature
    from training.robustness import lowlight_choice
    from training.robustness.lowlight import normalize_batch, page_rule
    from training.robustness.robustness import page_classifier

    classify = page_classifier(source, tta=source.default_tta, batch_size=batch_size,
                               temperature=1.0)
    rule, chosen, splits = page_rule(source.manifest), None, {}
    for split in ("val", "test"):
        data = load_eval_split(split, data_dir=data_dir, fer2013=fer2013)
        x, y = data.x, data.y
        if labels == "ferplus":
            x, y = _ferplus_rows(split, x, data_dir=data_dir, fer2013=fer2013, ferplus=ferplus)
        splits[split] = (data.split_name, x, y)
    if lowlight == "choose":
        name, x, y = splits["val"]
        typer.echo(f"choosing the low-light threshold on {name} ({len(y)} images)...")
        table = lowlight_choice.score_thresholds(classify, x, y, log=typer.echo)
        rule["dark_mean"] = lowlight_choice.choose(table)
        chosen = {"split_name": name, "n": len(y), "labels": labels,
                  "equalize_below": rule["dark_mean"], "table": table}
    scored = {}
    for split, (name, x, y) in splits.items():
        typer.echo(f"scoring {name} ({len(y)} images) as the page does...")
        scored[split] = (classify(normalize_batch(x, **rule)[0]), y)
    result = fit_and_measure(scored["val"], scored["test"], bins=bins)
    result["labels"] = labels
    parts = ["fer-hybrid", "calibrate", str(target)]
    if labels != "fer2013":
        parts += ["--labels", labels]
    if lowlight != "keep":
        parts += ["--lowlight", lowlight]
    if not write and source.manifest is not None:
        parts.append("--no-write")
    if bins != 15:
        parts += ["--bins", str(bins)]
    if model_card is not None:
        parts += ["--model-card", str(model_card)]
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / "reliability.png"
    result.update(target=source.name, tta=source.default_tta, command=shlex.join(parts),
                  figure=str(figure), equalize_below=rule["dark_mean"])
    if chosen is not None:
        chosen["command"] = result["command"]
        write_json(out_dir / "lowlight.json", chosen)
        (out_dir / "lowlight.md").write_text(lowlight_choice.markdown(chosen) + "\n")
        typer.echo(f"low-light threshold {rule['dark_mean']} (chosen on {chosen['split_name']}; "
                   "0: never equalise)")
    plot_reliability(result, figure)
    write_json(out_dir / "calibration.json", result)
    (out_dir / "calibration.md").write_text(markdown(result) + "\n")
    held = result["test"]
    typer.echo(f"temperature {result['temperature']:.3f} (fitted on PublicTest); PrivateTest "
               f"ECE {100 * held['before']['ece']:.2f} % -> {100 * held['after']['ece']:.2f} %, "
               f"mean confidence {100 * held['before']['mean_confidence']:.1f} % -> "
               f"{100 * held['after']['mean_confidence']:.1f} % (accuracy "
               f"{100 * held['before']['accuracy']:.2f} %)")
    if source.manifest is not None and write:
        set_temperature(source.path, result["temperature"])
        typer.echo(f"wrote ensemble.temperature {result['temperature']:.4f} into "
                   f"{source.path / 'manifest.json'}")
        if chosen is not None:
            set_ensemble(source.path, equalize_below=int(rule["dark_mean"]))
            typer.echo(f"wrote ensemble.equalize_below {rule['dark_mean']} into "
                       f"{source.path / 'manifest.json'}")
    if model_card is not None:
        body = markdown(result)
        if chosen is not None:
            body += "\n\n" + lowlight_choice.markdown(chosen)
        write_marked_section(model_card, section, body)
        typer.echo(f"updated the {section} section of {model_card}")
    typer.echo(f"  wrote {out_dir}/calibration.json, calibration.md, reliability.png"
               + (", lowlight.json, lowlight.md" if chosen is not None else ""))


def _ferplus_rows(split: str, x, *, data_dir, fer2013, ferplus):
    """The split's images whose strict FER+ majority is one of our classes, and that label."""
    from training.core.errors import FerError
    from training.data.ferplus import strict_majority, votes_for_split

    votes, note = votes_for_split(split, data_dir=data_dir, fer2013=fer2013, ferplus=ferplus)
    if votes is None:
        raise FerError(f"--labels ferplus needs the FER+ votes: {note}")
    y, rows = strict_majority(votes)
    return x[rows], y[rows]
