"""`fer-hybrid ensemble`: soft voting over run folders' saved probabilities.

Only typer/pathlib/typing at module level. Works from predictions/*.npz alone
(CPU, no models); best.keras + data are only needed for missing predictions.
"""

from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import (
    Aux,
    Custom,
    DataDir,
    Fer2013,
    FerPlus,
    PredictBatch,
    Sample,
)


def ensemble(
    runs: Annotated[
        list[Path], typer.Argument(help="Run folders (runs/<name>) to combine.", show_default=False)
    ],
    select: Annotated[
        str,
        typer.Option(
            "--select",
            help="greedy: Caruana forward selection on val (PublicTest) only; all: equal weights.",
        ),
    ] = "greedy",
    weights: Annotated[
        str | None,
        typer.Option(
            "--weights", help="Explicit weights, one per RUN, e.g. 2,1,1 (overrides --select)."
        ),
    ] = None,
    tta: Annotated[
        bool, typer.Option("--tta/--no-tta", help="Use horizontal-flip TTA probabilities.")
    ] = True,
    max_members: Annotated[
        int | None, typer.Option("--max-members", min=1, help="At most K distinct members.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("reports/ensemble"),
    save_soft_targets: Annotated[
        Path | None,
        typer.Option(
            "--save-soft-targets",
            help="Also run the selected members' best.keras on the TRAINING split and write "
            "the ensemble's probabilities (this soft vote: the same weights and --tta) to FILE "
            "(.npz, keyed by image content) for `fer-hybrid train --soft-targets FILE`: "
            "distillation without the teacher models. The data is that of the first selected "
            "run's config.json; --data-dir, --fer2013, --aux and --sample override it.",
        ),
    ] = None,
    data_dir: DataDir = None,  # read to compute missing predictions and soft targets
    fer2013: Fer2013 = None,
    aux: Aux = None,  # only for --save-soft-targets (aux sets are training images)
    sample: Sample = None,
    batch_size: PredictBatch = 256,
    ferplus: FerPlus = None,
    custom: Custom = None,
) -> None:
    """Combine trained runs by soft voting and report members and ensemble side by side.

    Selection never sees PrivateTest (test): weights are chosen on PublicTest (val)
    only; test is scored afterwards. Writes ensemble.md, ensemble.json and the
    ensemble's confusion matrix (confusion_test.png/.json) into --out; with
    --save-soft-targets also the ensemble's probabilities on the training images. When the
    FER+ votes are there (fer2013new.csv(.gz) next to the FER2013 file, or --ferplus), also
    each member's and the ensemble's agreement with the ten-annotator majority on test.
    Also scores the custom holdout (accepted web uploads that never train, from --custom) once
    it holds enough faces, and otherwise says how many it holds.
    """
    from training.core.report import pct, text_table
    from training.data import splits
    from training.data.ferplus import votes_for_split
    from training.ensemble.ensemble import build_ensemble, load_members, write_ensemble_report
    from training.ensemble.voting import parse_weights

    parsed = parse_weights(weights, len(runs)) if weights is not None else None
    loader = splits.split_loader(data_dir=data_dir, fer2013=fer2013)
    members = load_members(runs, data_loader=loader, batch_size=batch_size)
    votes, votes_note = votes_for_split("test", data_dir=data_dir, fer2013=fer2013,
                                        ferplus=ferplus)
    if votes is None:
        typer.echo(votes_note)
    report = build_ensemble(
        members, select=select, weights=parsed, tta=tta, max_members=max_members,
        votes=votes, votes_note=votes_note,
    )
    from training.ensemble.holdout import add_holdout
    from training.models.custom_holdout import format_holdout, load_holdout

    held_x, held_y = load_holdout(custom)
    holdout = add_holdout(report, held_x, held_y, batch_size=batch_size)
    files = write_ensemble_report(report, out)

    key = "accuracy_tta" if tta else "accuracy"
    rows = [
        [
            m["name"],
            f"{m['weight']:g}",
            pct(m["val"]["accuracy"]),
            pct(m["val"]["accuracy_tta"]),
            pct(m["test"]["accuracy"]),
            pct(m["test"]["accuracy_tta"]),
        ]
        for m in report["members"]
    ]
    e = report["ensemble"]
    rows.append(
        [
            "ENSEMBLE",
            f"{sum(m['weight'] for m in report['members']):g}",
            pct(e["val"]["accuracy"]),
            pct(e["val"]["accuracy_tta"]),
            pct(e["test"]["accuracy"]),
            pct(e["test"]["accuracy_tta"]),
        ]
    )
    typer.echo(
        f"selection: {report['selection']['method']} on val (PublicTest, {e['val']['n']} images); "
        f"test = PrivateTest ({e['test']['n']} images), never used for selection"
    )
    typer.echo(text_table(["member", "weight", "val acc", "val TTA", "test acc", "test TTA"], rows))
    typer.echo(f"ensemble test accuracy ({'flip TTA' if tta else 'no TTA'}): {pct(e['test'][key])}")
    typer.echo(f"ensemble on the {format_holdout(holdout)}" if holdout["accuracy"] is not None
               else format_holdout(holdout))
    fp = e["test"].get("ferplus")
    if fp and "note" in fp:
        typer.echo(f"FER+ agreement {fp['note']}")
    elif fp:
        side = fp["tta"] if tta else fp["plain"]
        typer.echo(
            f"ensemble agreement with the FER+ majority on test ({'flip TTA' if tta else 'no TTA'}, "
            f"{side['n']} rows, ties agree): {pct(side['majority_agreement'])}, mean vote share "
            f"{pct(side['mean_vote_share'])}"
        )
    typer.echo(f"wrote {files['markdown']}, {files['json']}, {files['confusion_png']}")
    if save_soft_targets is not None:
        from training.data.splits import parse_aux
        from training.ensemble.teacher import save_ensemble_soft_targets

        overrides = {"data_dir": str(data_dir) if data_dir else None,
                     "fer2013": str(fer2013) if fer2013 else None,
                     "aux": parse_aux(aux) if aux is not None else None, "sample": sample}
        targets = save_ensemble_soft_targets(report, save_soft_targets, overrides=overrides,
                                             batch_size=batch_size)
        size = save_soft_targets.stat().st_size
        typer.echo(f"wrote soft targets for {targets.meta['n_images']} training images "
                   f"({len(targets)} distinct) to {save_soft_targets} ({size / 1e6:.2f} MB); "
                   f"train with: fer-hybrid train --soft-targets {save_soft_targets} ...")
