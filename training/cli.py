"""The `fer-hybrid` command line.

Each subcommand lives in its own module under `training/commands/` (or
`backend/cli.py` for `serve`); those modules import TensorFlow/Keras only
inside the command body so that `--help` and `serve` never pay for it.
"""

import inspect
import sys

from training.core.tf_log import quiet_tensorflow_startup

# TensorFlow's C++ start-up log buries the one `error:` line and the progress bars: off
# before anything below can import TensorFlow (TF_CPP_MIN_LOG_LEVEL set by hand keeps it).
quiet_tensorflow_startup()

import typer  # noqa: E402

from backend.cli import serve  # noqa: E402
from backend.review_cli import accept, queue, reject, relabel, reset, review  # noqa: E402
from contract.manifest import ManifestError  # noqa: E402
from contract.review import StoreError  # noqa: E402
from training.commands.bench import bench  # noqa: E402
from training.commands.calibrate import calibrate  # noqa: E402
from training.commands.campaign import campaign_app  # noqa: E402
from training.commands.data import data_app  # noqa: E402
from training.commands.ensemble import ensemble  # noqa: E402
from training.commands.evaluate import evaluate  # noqa: E402
from training.commands.explain import explain  # noqa: E402
from training.commands.export import export  # noqa: E402
from training.commands.gpu import gpu_app  # noqa: E402
from training.commands.results import results  # noqa: E402
from training.commands.robustness import robustness  # noqa: E402
from training.commands.runs import runs_app  # noqa: E402
from training.commands.train import train  # noqa: E402
from training.core.errors import FerError  # noqa: E402

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
# The review verbs are operations of the upload store (backend/); this is the one place that
# may put them beside the training's `data` commands.
for _name, _verb in (("review", review), ("queue", queue), ("accept", accept),
                     ("reject", reject), ("relabel", relabel), ("reset", reset)):
    data_app.command(_name)(_verb)
app.add_typer(data_app, name="data")
app.add_typer(runs_app, name="runs")
app.command("train")(train)
app.command("evaluate")(evaluate)
app.command("explain")(explain)
app.command("ensemble")(ensemble)
app.command("export")(export)
app.command("results")(results)
app.command("robustness")(robustness)
app.command("calibrate")(calibrate)
app.command("bench")(bench)
app.command("serve")(serve)
app.add_typer(gpu_app, name="gpu")
app.add_typer(campaign_app, name="campaign")


def reflow(doc: str) -> str:
    """A command's docstring with each paragraph on one line, so that `--help` wraps it to the
    terminal's width instead of breaking lines where the source did. Lines that are indented
    (examples, commands) keep their own line, as does the line before one."""
    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines = paragraph.split("\n")
        text = lines[0]
        for before, line in zip(lines, lines[1:]):
            keep = line[:1].isspace() or before[:1].isspace() or line.startswith("- ")
            text += ("\n" if keep else " ") + (line if keep else line.strip())
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    """`reflow` every command's help in `typer_app` and its sub-apps (help= given or docstring)."""
    for info in typer_app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = reflow(doc)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            sub = group.typer_instance.info
            if isinstance(sub.help, str):
                sub.help = reflow(sub.help)
            _reflow_help(group.typer_instance)


_reflow_help(app)



# Modules that only the `[train]` extra installs (see pyproject.toml). A command that needs
# one of them in a base (server-only) install gets an install hint, not a traceback.
TRAIN_MODULES = frozenset({"keras", "tensorflow", "tensorflowjs", "tensorflow_decision_forests",
                           "ydf", "tqdm", "matplotlib", "sklearn", "scipy", "h5py"})


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {' '.join(message.split())}", fg=typer.colors.RED, err=True)
    sys.exit(code)


def _click_error_line(err: Exception) -> str:
    """One line for a click usage error, with the command whose --help explains it."""
    msg = err.format_message()
    ctx = getattr(err, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        msg = f"{msg.rstrip('.')} (see '{ctx.command_path} --help')"
    return msg


def main() -> None:
    """Entry point: every user mistake becomes one `error: …` line and a non-zero exit.

    Click's exceptions are recognised by shape, not class: typer >= 0.2x raises those of its
    own bundled click (`typer._click`), older typer those of the `click` package.
    """
    try:
        rv = app(standalone_mode=False)
    except (FerError, ManifestError, StoreError) as err:
        _fail(str(err))
    except ModuleNotFoundError as err:
        top = (err.name or "").split(".")[0]
        if top not in TRAIN_MODULES:
            raise
        _fail(f"this command needs the training stack, and {top} is not installed: "
              f"pip install 'fer-hybrid[train]'")
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as err:
        kind = {cls.__name__ for cls in type(err).__mro__}
        if "Exit" in kind:  # typer.Exit / click's Exit carry the intended code
            sys.exit(getattr(err, "exit_code", 0) or 0)
        if "Abort" in kind:  # Ctrl-C or EOF at a prompt
            _fail("aborted", 1)
        if "NoArgsIsHelpError" in kind:  # `fer-hybrid` alone: the help text is the answer
            err.show()
            sys.exit(err.exit_code)
        if callable(getattr(err, "format_message", None)) and hasattr(err, "exit_code"):
            _fail(_click_error_line(err), err.exit_code or 2)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
