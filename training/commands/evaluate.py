"""`fer-hybrid evaluate`: accuracy, macro-F1, per-class recall and a confusion matrix.

Only typer/pathlib/typing at module level: Keras is imported by the command
body, and only when predictions must actually be computed.
"""

from pathlib import Path
from typing import Annotated

import typer

from training.commands.options import Custom, DataDir, Fer2013, FerPlus, PredictBatch


def evaluate(
    targets: Annotated[
        list[Path],
        typer.Argument(
            help="Run folders (runs/<name>, uses best.keras), .keras files or exported models "
                 "folders with manifest.json (e.g. models: the shipped TF.js ensemble, run in "
                 "Python as the page runs it).", show_default=False
        ),
    ],
    split: Annotated[
        str, typer.Option("--split", help="test (PrivateTest), val (PublicTest) or train.")
    ] = "test",
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta", help="Score with horizontal-flip TTA (both are always reported)."
        ),
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (default: <run>/evaluation, <models>/evaluation, or "
                 "<model>_evaluation beside a .keras file).",
        ),
    ] = None,
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    batch_size: PredictBatch = 256,
    ferplus: FerPlus = None,
    custom: Custom = None,
) -> None:
    """Evaluate run folders, .keras models or models folders on one split (default: test =
    PrivateTest).

    A run folder's predictions/<split>.npz is reused, or computed and saved.
    Writes metrics_<split>.json, confusion_<split>.png and confusion_<split>.json. When the
    FER+ votes are there (fer2013new.csv(.gz) next to the FER2013 file, or --ferplus), also
    reports agreement with the ten-annotator majority. Beside the split, each target is scored
    on the custom holdout (accepted web uploads that never train, from --custom) once it holds
    enough faces; until then the report says how many it holds.
    """
    from training.core.outputs import check_out_dir
    from training.core.splits import normalise_split
    from training.data import splits
    from training.data.ferplus import votes_for_split
    from training.evaluate.evaluate import evaluate_target, format_summary, target_holdout
    from training.evaluate.scorer import resolve_source
    from training.models.custom_holdout import load_holdout

    split = normalise_split(split)
    # fail fast on a bad path; a run folder without best.keras is fine if its predictions exist
    resolved = [resolve_source(t, need_model=False) for t in targets]
    if out is not None:
        check_out_dir(out)
    import keras  # noqa: F401  (no training stack: say so before looking for the data)

    loader = splits.split_loader(data_dir=data_dir, fer2013=fer2013)
    votes, votes_note = votes_for_split(split, data_dir=data_dir, fer2013=fer2013, ferplus=ferplus)
    if votes is None:
        typer.echo(votes_note)
    held_x, held_y = load_holdout(custom)
    many = len(resolved) > 1
    for target in resolved:
        out_dir = None
        if out is not None:
            out_dir = out / target.name if many else out
        result = evaluate_target(
            target,
            split,
            tta=tta,
            out_dir=out_dir,
            data_loader=loader,
            batch_size=batch_size,
            votes=votes,
            holdout=target_holdout(target, held_x, held_y, batch_size=batch_size),
        )
        typer.echo(format_summary(result))
        typer.echo(f"  wrote {result['files']['metrics']}, {result['files']['confusion_png']}")
        if many:
            typer.echo("")
