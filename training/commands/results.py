"""`fer-hybrid results`: Markdown table of our runs/ensembles next to published FER2013 numbers.

Only typer/pathlib/typing at module level; reads saved outputs only (no models, no data).
"""

from pathlib import Path
from typing import Annotated

import typer


def results(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(help="Run folders (runs/<name>) to list as members.", show_default=False),
    ] = None,
    ensemble_report: Annotated[
        list[Path] | None,
        typer.Option("--ensemble-report",
                     help="ensemble.json (or its folder) from `fer-hybrid ensemble`; repeatable."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the Markdown here (default: print it).")
    ] = None,
    agreement_plot: Annotated[
        Path | None,
        typer.Option("--agreement-plot",
                     help="Also draw FER2013 accuracy against FER+ majority agreement (both flip "
                          "TTA) for every row that has both, as a PNG here."),
    ] = None,
    bench: Annotated[
        Path | None,
        typer.Option("--bench",
                     help="With --agreement-plot: a `fer-hybrid bench` result (e.g. "
                          "models/bench/bench.json) whose in-browser peers join the plot."),
    ] = None,
) -> None:
    """PrivateTest accuracy (plain and flip TTA), macro-F1, FER+ agreement (where `fer-hybrid evaluate` / `ensemble` measured it with the votes; "-" otherwise) and params of our runs and ensembles, next to the published FER2013 results (marked as such, with citations)."""
    from contract.files import atomic_write
    from training.core.errors import FerError
    from training.evaluate.results import collect, render_results

    if not runs and not ensemble_report:
        raise FerError("give at least one run folder or --ensemble-report to tabulate")
    if bench is not None and agreement_plot is None:
        raise FerError("--bench adds the peers to --agreement-plot; give --agreement-plot PATH")
    rows = collect(runs or [], ensemble_report or [])
    text = render_results(rows)
    if out is None:
        typer.echo(text)
    else:
        atomic_write(out, text)
        typer.echo(f"wrote {out}")
    if agreement_plot is not None:
        _plot_agreement(rows, agreement_plot, bench)


def _plot_agreement(rows: list[dict], path: Path, bench: Path | None) -> None:
    import json

    from training.core.errors import FerError
    from training.core.plots import plot_agreement
    from training.evaluate.results import agreement_points

    doc = None
    if bench is not None:
        try:
            doc = json.loads(Path(bench).read_text())
        except (OSError, ValueError) as err:
            raise FerError(f"--bench {bench}: cannot read it ({err}); it is the bench.json "
                           f"`fer-hybrid bench` writes") from None
    points = agreement_points(rows, doc)
    if not points:
        raise FerError("--agreement-plot: no row has FER+ agreement; run `fer-hybrid evaluate "
                       "RUN` with the FER+ votes next to the FER2013 data first")
    # FER2013's own labels on the same rows (`fer-hybrid evaluate` records it), for scale
    labels = next((r["ferplus"]["fer2013_labels"]["majority_agreement"] for r in rows
                   if (r.get("ferplus") or {}).get("fer2013_labels")), None)
    plot_agreement(points, path, fer2013_labels=labels)
    typer.echo(f"wrote {path} ({len(points)} models)")
