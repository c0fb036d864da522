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
) -> None:
    """PrivateTest accuracy (plain and flip TTA), macro-F1, FER+ agreement (where `fer-hybrid evaluate` / `ensemble` measured it with the votes; "-" otherwise) and params of our runs and ensembles, next to the published FER2013 results (marked as such, with citations)."""
    from contract.files import atomic_write
    from training.errors import FerError
    from training.results import collect, render_results

    if not runs and not ensemble_report:
        raise FerError("give at least one run folder or --ensemble-report to tabulate")
    text = render_results(collect(runs or [], ensemble_report or []))
    if out is None:
        typer.echo(text)
    else:
        atomic_write(out, text)
        typer.echo(f"wrote {out}")
