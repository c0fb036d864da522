"""`fer-hybrid campaign run|status|stop`: the CPU training campaign (training/campaign/campaign.py).

Nothing here imports Keras or TensorFlow: `run` trains each slice in a `fer-hybrid train`
child process, and `status` reads the run folders' small files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_PLAN = Path("training/checkpoints/campaign.json")

campaign_app = typer.Typer(
    name="campaign",
    help="Work through a plan of training runs one at a time, resumably, in the background "
         "of other work: `run` trains until a deadline, `status` shows where each run stands, "
         "`stop` ends the run in progress at its next epoch boundary.",
    no_args_is_help=True,
)

Plan = Annotated[Path, typer.Argument(
    help="The campaign plan (JSON; its runs' compact copies are committed beside it).")]
RunsDir = Annotated[Path, typer.Option(
    "--runs-dir", help="Where the runs train (working folders, not committed).")]


@campaign_app.command("run")
def run(
    plan: Plan = DEFAULT_PLAN,
    max_minutes: Annotated[float, typer.Option(
        "--max-minutes", help="Wall-clock budget of this command: the run in progress stops "
                              "at the last epoch boundary that fits (data loading included), "
                              "and its compact copy is saved.", show_default=False)] = ...,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Train the plan's first unfinished run from its checkpoint until --max-minutes; when a run
    completes, go on with the next.

    Every run of the plan is checked first (options, model, existing checkpoints). Each slice
    writes a training checkpoint every epoch, so a killed process loses at most the epoch in
    progress; when a slice stops, the run's compact part (config, log, best model, last
    checkpoint; metrics.json instead of the checkpoint once complete) replaces its copy beside
    the plan, ready to commit. Run it in the background at low priority, e.g.
    `nice -n 10 fer-hybrid campaign run --max-minutes 240 > runs/campaign.log 2>&1 &`.
    """
    from training.campaign.campaign import CampaignPlan, run_campaign
    from training.commands.train import train_fields
    from training.core.errors import FerError

    if max_minutes <= 0:
        raise FerError(f"--max-minutes must be > 0 (got {max_minutes:g})")
    run_campaign(CampaignPlan.load(plan), runs_dir, max_minutes=max_minutes,
                 train_fields=train_fields, printer=lambda s: typer.echo(s))


@campaign_app.command("status")
def status(plan: Plan = DEFAULT_PLAN, runs_dir: RunsDir = Path("runs")) -> None:
    """One line per run: its state, epoch, best PublicTest accuracy (no TTA) and epoch, median
    seconds per epoch of its last ten, and the time left at that pace."""
    from training.campaign.campaign import (
        STATUS_HEADERS,
        CampaignPlan,
        run_status,
        running_pid,
        status_rows,
    )
    from training.core.report import text_table

    loaded = CampaignPlan.load(plan)
    statuses = [run_status(loaded, m, runs_dir) for m in loaded.runs]
    typer.echo(text_table(STATUS_HEADERS, status_rows(loaded, statuses, runs_dir)))
    live = running_pid(loaded, runs_dir)
    unsaved = [s.member.name for s in statuses
               if s.unsaved and not (live and live[1] == s.member.name)]
    if unsaved:
        typer.echo(f"\nnot yet in {loaded.store}: the newest epochs of {', '.join(unsaved)} "
                   f"(the next `campaign run` or `campaign stop` saves them)")


@campaign_app.command("stop")
def stop(
    plan: Plan = DEFAULT_PLAN,
    runs_dir: RunsDir = Path("runs"),
    wait: Annotated[bool, typer.Option(
        "--wait/--no-wait", help="Wait until the run in progress has stopped and its compact "
                                 "copy is saved.")] = True,
) -> None:
    """Ask the campaign's run in progress to stop at its next epoch boundary (its compact copy
    is then saved beside the plan); with nothing running, save any working copy that is
    ahead of the committed one."""
    import time

    from training.campaign.campaign import (
        CampaignPlan,
        run_status,
        running_pid,
        save_compact,
        stop_file,
    )

    loaded = CampaignPlan.load(plan)
    live = running_pid(loaded, runs_dir)
    if live:
        path = stop_file(loaded, runs_dir)
        path.touch()
        typer.echo(f"asked {live[1] or 'the campaign'} (pid {live[0]}) to stop at its next "
                   f"epoch boundary ({path})")
        if not wait:
            return
        while running_pid(loaded, runs_dir):
            time.sleep(2)
        typer.echo("stopped")
        return
    for member in loaded.runs:
        s = run_status(loaded, member, runs_dir)
        if s.unsaved:
            save_compact(s.working.folder, loaded.store / member.name)
            typer.echo(f"{member.name}: saved epoch {s.working.epoch} to "
                       f"{loaded.store / member.name}")
    typer.echo("no campaign is running")
