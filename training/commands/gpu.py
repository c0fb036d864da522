"""`fer-hybrid gpu prepare` (here) and `fer-hybrid gpu session` (on the GPU machine).

`prepare` makes everything a GPU session needs and prints the one device command to paste;
`session` is what that command runs there. Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from training.commands.options import Aux, DataDir, Fer2013

gpu_app = typer.Typer(
    name="gpu",
    help="Train the ensemble in one GPU session: `prepare` here, then paste the device command "
         "it prints; `session` is what that command runs on the GPU machine.",
    no_args_is_help=True,
)

CARRY_DIR = ".carry"
WHEELS_DIR = ".whl"
PACK_NAME = "fer2013-train.pack"
PLAN_NAME = "gpu-plan.json"
SITE = "${TMPDIR:-/tmp}/fer-site"  # where the wheels are installed on the GPU machine


def device_command(plan_path: str, wheels_dir: str = WHEELS_DIR) -> str:
    """The shell command for the device call (run with carry=[.carry, .whl], timeout 600 s)."""
    return (f"python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
            f"--upgrade --target {SITE} {wheels_dir}/*.whl && export PYTHONPATH={SITE}:$PWD "
            f"|| exit 1; python3 -m training.cli gpu session {shlex.quote(plan_path)} "
            f"--out \"$OUT\"")


@gpu_app.command("prepare")
def prepare(
    member: list[str] | None = typer.Option(
        None, "--member",
        help="A member to train: 'NAME: TRAIN OPTIONS' (options of `fer-hybrid train`, e.g. "
             "'vgg-s0: --model vgg --seed 0'); repeat for each. Default: the first session's "
             "seven members (see docs/gpu.md)."),
    common: str | None = typer.Option(
        None, help="Options every member gets before its own (default: the GPU recipe: "
                   "AdamW, cosine, label smoothing 0.1, CK+ and JAFFE, bf16)."),
    call_minutes: float = typer.Option(
        10.0, help="Minutes of the device call (at most 10): install, train, bundle."),
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    aux: Aux = "ckplus,jaffe",
    rebuild_pack: bool = typer.Option(
        False, "--rebuild-pack", help="Write the data pack again even if .carry has one."),
    level: int = typer.Option(9, "--level", min=0, max=9,
                              help="lzma level of the pack (9: smallest; low levels for tests)."),
    require_gpu: bool = typer.Option(
        True, "--require-gpu/--no-require-gpu",
        help="The session refuses to train when JAX sees no GPU (off only to rehearse on a CPU)."),
    park: list[str] | None = typer.Option(
        None, "--park",
        help="A tracked path the GPU session does not need (e.g. training/checkpoints), left "
             "out of what device calls send, until `fer-hybrid gpu unpark`; the files stay "
             "where they are. Repeatable."),
    constraints: Path = typer.Option(
        Path("constraints.txt"), help="Pinned versions of the wheels carried to the GPU machine."),
    repo: Path = typer.Option(Path("."), help="The checkout the device call sends."),
) -> None:
    """Pack the data, fetch the pinned wheels, write the plan, check the 64 MiB, print the call.

    Writes .carry/fer2013-train.pack (FER2013 Training + PublicTest and the aux sets; PrivateTest
    stays here), .carry/gpu-plan.json and .whl/{keras,namex,optree}-*.whl (Python 3.12 wheels).
    """
    from training.commands.data import write_data_pack
    from training.core.errors import FerError
    from training.gpu.carry import fetch_wheels, measure_carry, mib, pinned_versions
    from training.gpu.carry import park as park_paths
    from training.gpu.plan import COMMON, make_plan

    repo = repo.resolve()
    carry_dir, wheels_dir = repo / CARRY_DIR, repo / WHEELS_DIR
    pack_rel = f"{CARRY_DIR}/{PACK_NAME}"
    plan = make_plan(member, pack=pack_rel, common=COMMON if common is None else common,
                     call_minutes=call_minutes, require_gpu=require_gpu)
    versions = pinned_versions(repo / constraints if not constraints.is_absolute()
                               else constraints)

    pack = repo / pack_rel
    if pack.is_file() and not rebuild_pack:
        typer.echo(f"data pack: {pack_rel} ({mib(pack.stat().st_size)}; --rebuild-pack to "
                   f"write it again)")
    else:
        carry_dir.mkdir(exist_ok=True)
        typer.echo("writing the data pack (a few minutes at --level 9)...")
        typer.echo(write_data_pack(pack, data_dir=data_dir, fer2013=fer2013, no_test=True,
                                   aux=aux, level=level))
    wheels = fetch_wheels(wheels_dir, versions)
    typer.echo("wheels: " + ", ".join(f"{w.name} ({mib(w.stat().st_size)})" for w in wheels))
    plan_path = plan.save(carry_dir / PLAN_NAME)
    typer.echo(f"plan: {plan_path.relative_to(repo)}: {len(plan.members)} members at once, "
               f"{plan.train_minutes:g} min each ({plan.schedule_minutes:g} of training):")
    for m in plan.members:
        typer.echo(f"  {m.name}: {' '.join(m.args)}")

    if park:
        left = park_paths(repo, park)
        typer.echo(f"parked (left out of device calls until `fer-hybrid gpu unpark`; commit "
                   f"nothing meanwhile): {', '.join(left)}")
    report = measure_carry(repo, [CARRY_DIR, WHEELS_DIR])
    typer.echo("carried: " + "; ".join(report.lines()))
    if not report.fits:
        raise FerError(report.over_limit_message())
    cmd = device_command(f"{CARRY_DIR}/{PLAN_NAME}")
    typer.echo(f"\nDevice call (carry {CARRY_DIR} and {WHEELS_DIR}, timeout_s 600; "
               f"{len(cmd)} characters):\n\n{cmd}\n")
    typer.echo("If it prints further calls for the rest of the bundle, make them AT ONCE (the "
               "machine goes back after 30 s idle). Then, here:\n"
               "  fer-hybrid runs unbundle <the folders the calls' files came back in> "
               "--runs-dir runs\n"
               "  fer-hybrid evaluate runs/<member> --split test   # and ensemble, export")


@gpu_app.command("session")
def session(
    plan: Path = typer.Argument(..., help="The plan `gpu prepare` wrote (.carry/gpu-plan.json)."),
    out: Path = typer.Option(..., "--out", help="Where the first call's bundle parts go ($OUT)."),
    call_minutes: float | None = typer.Option(
        None, help="Override the plan's minutes for this call, e.g. when the device has less "
                   "time left than the plan assumed (the members' share shrinks with it)."),
) -> None:
    """On the GPU machine: train every member of the plan at once, then bundle them into --out."""
    import dataclasses

    from training.gpu.plan import GpuPlan, check_budget
    from training.gpu.session import run_session

    loaded = GpuPlan.load(plan)
    if call_minutes is not None:
        loaded = check_budget(dataclasses.replace(loaded, call_minutes=call_minutes))
    run_session(loaded, out, printer=lambda s: typer.echo(s))


@gpu_app.command("unpark")
def unpark(
    repo: Path = typer.Option(Path("."), help="The checkout `gpu prepare --park` changed."),
) -> None:
    """Put back what `gpu prepare --park` left out of device calls (after the GPU session)."""
    from training.gpu.carry import unpark as unpark_paths

    back = unpark_paths(repo.resolve())
    typer.echo(f"back in the index: {', '.join(back)}" if back else "nothing is parked")
