"""The `fer-hybrid` command line.

Each subcommand lives in its own module under `training/commands/` (or
`backend/cli.py` for `serve`); those modules import TensorFlow/Keras only
inside the command body so that `--help` and `serve` never pay for it.
"""

import os
import sys

# TensorFlow's C++ start-up chatter (CUDA probing, CPU feature notes) buries the
# progress bars; keep warnings and errors only. Set before any TF import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import typer  # noqa: E402

from backend.cli import serve  # noqa: E402
from training.commands.data import data_app  # noqa: E402
from training.commands.ensemble import ensemble  # noqa: E402
from training.commands.evaluate import evaluate  # noqa: E402
from training.commands.export import export  # noqa: E402
from training.commands.results import results  # noqa: E402
from training.commands.train import train  # noqa: E402
from training.errors import FerError  # noqa: E402

app = typer.Typer(
    name="fer-hybrid",
    help=(
        "Facial-expression recognition that runs on the phone.\n\n"
        "Pipeline: `data stats` -> `train` -> `evaluate` -> `ensemble` -> `export`, "
        "then `serve` the mobile page with the exported TF.js models."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("ensemble")(ensemble)
app.command("export")(export)
app.command("results")(results)
app.command("serve")(serve)



def main() -> None:
    """Entry point: run the app, turning `FerError`s into one-line messages."""
    try:
        app(standalone_mode=False)
    except FerError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except (typer.Exit, SystemExit) as done:  # normal exits carry their code
        code = getattr(done, "exit_code", getattr(done, "code", 0))
        sys.exit(code or 0)
    except Exception as err:  # click's usage errors print themselves
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
