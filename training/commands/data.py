"""`fer-hybrid data ...`: dataset statistics and the compact pack for GPU machines.

Only typer/pathlib/typing at module level; the loaders are imported in the command bodies.
"""

from __future__ import annotations

from pathlib import Path

import typer

from training.commands.options import Aux, CkPlus, Custom, DataDir, Fer2013, Jaffe, Sample

data_app = typer.Typer(
    name="data",
    help="Inspect the datasets (class counts per split/source) and pack FER2013 for a GPU machine.",
    no_args_is_help=True,
)



def _available_aux(data_dir: Path | None, ckplus, jaffe, custom) -> list[str]:
    """Aux sets to show by default: those given explicitly or present at their default place."""
    from contract import default_custom_dir
    from training.data.ckplus import DEFAULT_NAMES as CK
    from training.data.jaffe import DEFAULT_NAMES as JA
    from training.data.splits import default_data_dir

    d = Path(data_dir) if data_dir else default_data_dir()
    out = []
    if ckplus or any((d / n).exists() for n in CK):
        out.append("ckplus")
    if jaffe or any((d / n).exists() for n in JA):
        out.append("jaffe")
    if custom or default_custom_dir().is_dir():
        out.append("custom")
    return out


@data_app.command("stats")
def stats(
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    ckplus: CkPlus = None,
    jaffe: Jaffe = None,
    custom: Custom = None,
    folder: list[Path] | None = typer.Option(
        None,
        "--folder",
        metavar="DIR",
        help="Extra class-folder dataset (<dir>/<class>/*.png) added to train; repeatable.",
    ),
    aux: Aux = None,  # default: every set that is present
    sample: Sample = None,
    seed: int = typer.Option(0, "--seed", help="Seed for --sample."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also write a bar chart of the counts to this PNG."
    ),
) -> None:
    """Print images per class for train/val/test and per source, with totals.

    train = FER2013 Training + auxiliary sets (exact duplicates of val/test images removed),
    val = PublicTest, test = PrivateTest.
    """
    from training.data import load_splits
    from training.data.splits import parse_aux
    from training.data.stats import format_table, plot_counts

    if aux is None:
        aux_list = _available_aux(data_dir, ckplus, jaffe, custom)
    elif aux.strip().lower() in ("none", ""):
        aux_list = []
    else:
        aux_list = parse_aux(aux)
    splits = load_splits(
        data_dir=data_dir,
        fer2013=fer2013,
        aux=aux_list,
        ckplus=ckplus,
        jaffe=jaffe,
        custom=custom,
        folders=folder or (),
        sample=sample,
        seed=seed,
    )
    meta = splits["train"].meta
    typer.echo(f"FER2013: {meta.get('fer2013')}")
    typer.echo(format_table(splits))
    for src, info in meta.get("aux", {}).items():
        typer.echo(
            f"{src}: {info['loaded']:,} loaded, {info['duplicates_dropped']:,} exact duplicates "
            "of val/test images dropped"
        )
    if "ckplus" in aux_list:
        typer.echo("note: CK+ 'contempt' has no FER2013 class and is left out.")
    if "custom" in aux_list:
        typer.echo(review_table(custom))
    if plot:
        typer.echo(f"wrote {plot_counts(splits, plot)}")


def review_table(custom: Path | None) -> str:
    """The custom uploads per review state and label (the curator's label where relabelled),
    and the custom holdout's size: what `--custom-uploads` chooses from."""
    from contract import LABELS, default_custom_dir
    from contract.review import (
        HOLDOUT_MIN,
        REVIEW_STATES,
        holdout_uploads,
        read_uploads,
        store_path,
    )
    from training.core.report import text_table

    root = Path(custom).expanduser() if custom else default_custom_dir()
    if not store_path(root).is_file():
        return f"custom uploads: no upload store in {root} (a hand-made folder trains whole)"
    uploads = read_uploads(root)
    rows = []
    for state in REVIEW_STATES:
        mine = [u for u in uploads if u.state == state]
        rows.append([state, *[sum(u.training_label == lab for u in mine) for lab in LABELS],
                     len(mine)])
    held = len(holdout_uploads(uploads))
    note = (f"custom holdout: {held} accepted face{'s' if held != 1 else ''} (never trained; "
            f"its accuracy is reported from {HOLDOUT_MIN})")
    return ("custom uploads by review state (only accepted ones train, less the holdout):\n"
            + text_table(["state", *LABELS, "total"], rows) + "\n" + note)


@data_app.command("pack")
def pack(
    out: Path = typer.Option(..., "--out", "-o", help="File to write, e.g. fer2013.pack."),
    data_dir: DataDir = None,
    fer2013: Fer2013 = None,
    no_test: bool = typer.Option(
        False, "--no-test", help="Leave out PrivateTest (test evaluation runs on the CPU machine)."
    ),
    aux: Aux = None,  # default: FER2013 alone
    ckplus: CkPlus = None,
    jaffe: Jaffe = None,
    custom: Custom = None,
    level: int = typer.Option(
        9,
        "--level",
        min=0,
        max=9,
        help="lzma level 0-9. FER2013 without PrivateTest packs to ~52 MB at 9 and at 6 "
        "alike (5-6 min on one slow core); low levels are for quick tests.",
    ),
) -> None:
    """Write FER2013 (+ optional aux sets) as one compact file: uint8 images, lzma with a delta filter.

    Any command that takes --fer2013 accepts the pack in place of the CSV, e.g.
    `fer-hybrid train --fer2013 fer2013.pack --model baseline_cnn` on the GPU machine.
    """
    typer.echo(write_data_pack(out, data_dir=data_dir, fer2013=fer2013, no_test=no_test,
                               aux=aux, ckplus=ckplus, jaffe=jaffe, custom=custom, level=level))


def write_data_pack(out: Path, *, data_dir=None, fer2013=None, no_test: bool = False, aux=None,
                    ckplus=None, jaffe=None, custom=None, level: int = 9) -> str:
    """Write the pack `data pack` describes (also used by `gpu prepare`); one summary line."""
    import time

    from training.data.fer2013 import USAGES, FerArrays
    from training.data.packed import write_pack
    from training.data.splits import (
        default_data_dir,
        find_fer2013,
        load_aux,
        load_fer_source,
        parse_aux,
    )

    d = Path(data_dir).expanduser() if data_dir else default_data_dir()
    src = Path(fer2013).expanduser() if fer2013 else find_fer2013(d)
    fer, packed_aux = load_fer_source(src)
    if no_test:
        keep = fer.usage != USAGES.index("PrivateTest")
        fer = FerArrays(fer.x[keep], fer.y[keep], fer.usage[keep])
    explicit = {"ckplus": ckplus, "jaffe": jaffe, "custom": custom}
    aux_sets = {}
    for name in parse_aux(aux):
        if explicit[name] is None and name in packed_aux:
            aux_sets[name] = packed_aux[name]
        else:
            aux_sets[name] = load_aux(name, explicit[name], d)
    t = time.perf_counter()
    size = write_pack(out, fer, aux_sets, preset=level)
    raw = fer.x.nbytes + sum(x.nbytes for x, _ in aux_sets.values())
    counts = ", ".join(f"{u} {int((fer.usage == i).sum()):,}" for i, u in enumerate(USAGES))
    extra = "".join(f", {k} {len(v[1]):,}" for k, v in aux_sets.items())
    return (f"wrote {out}: {size:,} bytes ({size / 2**20:.1f} MiB; images {raw:,} bytes raw) "
            f"in {time.perf_counter() - t:.0f}s - {counts}{extra}")
