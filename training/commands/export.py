"""`fer-hybrid export`: trained runs -> quantised TF.js ensemble + models/manifest.json.

Heavy imports (keras, tensorflow, tensorflowjs) happen inside the command body.
"""

from __future__ import annotations

from pathlib import Path

import typer

from training.commands.options import DataDir, Fer2013, FerPlus


def _pct(value) -> str:
    return f"{100 * value:5.1f}%" if isinstance(value, (int, float)) else "    -"


def format_report(manifest: dict, split_key: str | None) -> str:
    """The per-member table printed after an export."""
    lines = []
    head = f"{'member':<28} {'quant':>7} {'params':>10} {'bytes':>11}"
    if split_key:
        head += f" {'float':>7} {'float+tta':>9} {'quant':>7} {'quant+tta':>9}"
    lines.append(head)
    lines.append("-" * len(head))
    total = 0
    for m in manifest["members"]:
        total += m["bytes"]
        row = f"{m['name'][:28]:<28} {m['quantization']:>7} {m['params'] or 0:>10,} {m['bytes']:>11,}"
        if split_key:
            mm = m.get("metrics", {})
            row += (
                f" {_pct(mm.get(f'{split_key}_accuracy_float')):>7}"
                f" {_pct(mm.get(f'{split_key}_accuracy_float_tta')):>9}"
                f" {_pct(mm.get(f'{split_key}_accuracy')):>7}"
                f" {_pct(mm.get(f'{split_key}_accuracy_tta')):>9}"
            )
        lines.append(row)
    lines.append("-" * len(head))
    lines.append(f"{'total download':<28} {'':>7} {'':>10} {total:>11,}  ({total / 1e6:.2f} MB)")
    met = manifest.get("metrics", {})
    if split_key and "accuracy_quantized" in met:
        lines.append(
            f"ensemble on {met['split']} (n={met.get('n')}): float {_pct(met['accuracy_float'])}, "
            f"float+tta {_pct(met['accuracy_float_tta'])}, quantised {_pct(met['accuracy_quantized'])}, "
            f"quantised+tta {_pct(met['accuracy_quantized_tta'])}; top-1 agreement float vs quantised "
            f"{_pct(met.get('top1_agreement_tta'))}"
        )
    fp = met.get("ferplus")
    if split_key and fp and "note" in fp:
        lines.append(f"FER+ agreement {fp['note']}")
    elif split_key and fp:
        lines.append(
            f"quantised ensemble vs the FER+ ten-annotator majority on {fp['n']} rows (ties agree): "
            f"{_pct(fp['majority_agreement'])}, with flip TTA {_pct(fp['majority_agreement_tta'])}; "
            f"mean vote share {_pct(fp['mean_vote_share'])}, with flip TTA "
            f"{_pct(fp['mean_vote_share_tta'])}"
        )
    if met.get("accuracy_float") is not None and "accuracy_quantized" not in met:
        lines.append(
            f"ensemble on {met['split']} (float, from the runs' saved predictions): "
            f"{_pct(met['accuracy_float'])}, with flip TTA {_pct(met.get('accuracy_float_tta'))}"
        )
    return "\n".join(lines)


def export(
    models: list[Path] = typer.Argument(
        ...,
        help="Run folders (runs/<name>, uses best.keras + metrics.json) and/or .keras files; "
        "each becomes one ensemble member.",
        show_default=False,
    ),
    out: Path = typer.Option(Path("models"), "--out", "-o", help="Output folder served at /models/."),
    quantize: str = typer.Option(
        "uint8", "--quantize", "-q", help="Weight quantisation: uint8 (~4x smaller), float16 (2x) or none."
    ),
    weights: str | None = typer.Option(
        None, help="Comma-separated soft-voting weights, one per model (default: all 1)."
    ),
    names: str | None = typer.Option(
        None, help="Comma-separated member names (default: run folder name / .keras file stem)."
    ),
    eval: str | None = typer.Option(
        None,
        "--eval",
        help="Measure float vs quantised ensemble accuracy on: test (PrivateTest), val (PublicTest) "
        "or none. Default: test when the dataset is available, else none.",
        show_default=False,
    ),
    placeholder: bool = typer.Option(
        False, "--placeholder", help="Flag the models as placeholders (e.g. barely trained) in the manifest."
    ),
    notes: str = typer.Option("", help="Free text for the manifest (default: a generated description)."),
    variant: str | None = typer.Option(
        None, "--variant",
        help="Export as a second model the page lets users choose: into OUT/<ID>/ (its own "
        "manifest.json + member files) and registered in OUT/manifest.json's variants "
        "(replacing an entry with that id). OUT must already hold the default model. "
        "ID: a-z, 0-9, '_', '-', e.g. ferplus.",
        show_default=False,
    ),
    title: str | None = typer.Option(
        None, "--title", help="With --variant: the name the page's model menu shows "
        "(default: the entry's current title, else the id).", show_default=False,
    ),
    description: str | None = typer.Option(
        None, "--description", help="With --variant: one sentence shown under the menu "
        "(default: the entry's current one, else none).", show_default=False,
    ),
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    ferplus: FerPlus = None,
) -> None:
    """Export trained models as a quantised TF.js ensemble for the web page.

    Writes OUT/<member>/model.json + *.bin and OUT/manifest.json (labels, input spec, soft-voting + flip-TTA ensemble, per-member bytes/params/metrics). The folder is replaced atomically; top-level files such as OUT/README.md, report folders without a model (OUT/bench/, OUT/robustness/) and the folders of the variants OUT/manifest.json lists are kept. Prints a table: size per member and float vs quantised accuracy. With the FER+ votes (fer2013new.csv(.gz) next to the FER2013 file, or --ferplus), also the quantised ensemble's agreement with the ten-annotator majority, into the manifest and (default model only) the model card's FER+ section.

    With --variant ID the models become a second, selectable model instead: OUT/ID/ is replaced atomically and OUT/manifest.json gets a "variants" list (the default model first, entry "fer2013", then ID); the page shows a model menu when there are two or more. Re-exporting the default later keeps the list.

    Examples:

      fer-hybrid export runs/baseline_cnn-1 runs/vgg-1 --weights 1,2

      fer-hybrid export model.keras --quantize float16 --eval none --placeholder

      fer-hybrid export runs/sepnet-ferplus-1 --out models --variant ferplus --title "People's votes (FER+)" --description "Trained on ten annotators' votes per face (FER+)."
    """
    import logging
    import os
    import time

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from contract.manifest import read_manifest_json
    from training.core.errors import FerError
    from training.data.evaluation import load_eval_split
    from training.ensemble.voting import parse_numbers
    from training.export.export import export_planned, plan_export

    # Check everything cheap before loading data or TensorFlow.
    plan = plan_export([str(m) for m in models], out, quantization=quantize,
                       weights=parse_numbers(weights) if weights else None,
                       names=[n.strip() for n in names.split(",")] if names else None,
                       variant=variant, title=title, description=description)
    requested = None if eval is None or eval.lower() == "none" else eval

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("tensorflow", "absl", "h5py"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    # Load the evaluation split now, before TensorFlow and the slow conversion.
    eval_data = None
    if requested is not None:
        eval_data = load_eval_split(requested, data_dir=data_dir, fer2013=fer2013,
                                    ferplus=ferplus)
    elif eval is None:
        # Default: PrivateTest if the dataset can be loaded; otherwise say so and carry on.
        try:
            eval_data = load_eval_split("test", data_dir=data_dir, fer2013=fer2013,
                                        ferplus=ferplus)
        except (FerError, OSError) as err:
            if ferplus is not None:
                raise
            typer.echo(f"note: not measuring accuracy ({err})", err=True)
    if eval_data is not None and eval_data.votes is None and eval_data.votes_note:
        typer.echo(f"note: {eval_data.votes_note}", err=True)

    start = time.perf_counter()
    manifest_path = export_planned(plan, placeholder=placeholder, notes=notes,
                                   eval_split=eval_data)
    seconds = time.perf_counter() - start
    manifest = read_manifest_json(manifest_path)
    typer.echo("")
    typer.echo(format_report(manifest, eval_data.split_key if eval_data else None))
    typer.echo(f"wrote {manifest_path} in {seconds:.1f} s")
    typer.echo(f"its percentages are not calibrated yet (temperature 1): fer-hybrid calibrate "
               f"{manifest_path.parent}")
    if plan.variant is not None:
        top = read_manifest_json(plan.out_dir)
        listed = ", ".join(f"{v['id']}{' (default)' if v.get('default') else ''}"
                           for v in top.get("variants", []))
        typer.echo(f"registered variant {plan.variant.id!r} in {plan.out_dir / 'manifest.json'} "
                   f"(variants: {listed})")

