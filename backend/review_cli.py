"""`fer-hybrid data review` (the curator's page) and the same actions as verbs for scripts:
`data queue`, `data accept`, `data reject`, `data relabel`, `data reset`.

They live in backend/ because they are operations of the upload store; `training/cli.py` (the
composition root) mounts them under `fer-hybrid data`. Import-light: FastAPI and Uvicorn are
imported by `review` only, and nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from contract import LABELS, REPO_ROOT, default_custom_dir
from contract.review import HOLDOUT_MIN, REVIEW_STATES, in_holdout, store_path

CustomDir = typer.Option(
    None,
    "--custom",
    metavar="DIR",
    help="The upload store to review: the folder `fer-hybrid serve` stores uploads in (default: "
    "$FER_HYBRID_CUSTOM_DIR or data/custom).",
)
Ids = typer.Argument(
    ...,
    metavar="ID...",
    show_default=False,
    help="Upload ids (32 hex digits, as `fer-hybrid data queue` lists them); - reads them from "
    "standard input, one or more a line.",
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _open_store(custom: Path | None):
    """The existing store (migrated if older), or one `error:` line: a review never creates an
    empty store where there was none (a mistyped --custom would look like an empty queue)."""
    root = Path(custom).expanduser() if custom else default_custom_dir()
    if not store_path(root).is_file():
        _fail(
            f"no upload store in {root}: nothing has been uploaded there yet (check --custom "
            "or $FER_HYBRID_CUSTOM_DIR)"
        )
    from .storage import UploadStore

    return UploadStore(root)


def _ids(given: list[str]) -> list[str]:
    if given == ["-"]:
        return sys.stdin.read().split()
    return given


def _apply(custom: Path | None, ids: list[str], action: str, label: str | None = None) -> None:
    from .storage import UploadError, check_review

    ids = _ids(ids)
    try:
        check_review(ids, action, label)  # before the store is opened: a typo costs nothing
        store = _open_store(custom)
        changed = store.review(ids, action, label)
    except UploadError as err:
        _fail(str(err))
    state = {"accept": "accepted", "reject": "rejected", "reset": "pending"}.get(
        action, f"accepted as {label}"
    )
    typer.echo(f"{changed} upload{'s' if changed != 1 else ''} {state}")


def accept(ids: list[str] = Ids, custom: Path | None = CustomDir) -> None:
    """Accept uploads: they train (unless the custom holdout keeps them for testing).

    All the ids are applied in one transaction, or none: an unknown id changes nothing.
    """
    _apply(custom, ids, "accept")


def reject(ids: list[str] = Ids, custom: Path | None = CustomDir) -> None:
    """Reject uploads (not a face, a wrong or deliberate label): they never train. The files
    stay until their contributor withdraws them."""
    _apply(custom, ids, "reject")


def relabel(
    label: str = typer.Argument(..., metavar="LABEL", help=f"One of: {', '.join(LABELS)}."),
    ids: list[str] = Ids,
    custom: Path | None = CustomDir,
) -> None:
    """Accept uploads with the curator's LABEL; the contributor's label is kept beside it, and
    training and the custom holdout use the curator's."""
    _apply(custom, ids, "relabel", label)


def reset(ids: list[str] = Ids, custom: Path | None = CustomDir) -> None:
    """Put uploads back in the queue (pending, the curator's label dropped)."""
    _apply(custom, ids, "reset")


def queue(
    state: str = typer.Option(
        "pending", "--state", help=f"Which uploads: {', '.join(REVIEW_STATES)} or all."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object a line, for scripts."),
    ids_only: bool = typer.Option(False, "--ids", help="Only the ids, one a line."),
    custom: Path | None = CustomDir,
) -> None:
    """List uploads by review state (default: the pending ones), oldest first.

    Columns: id, state, contributor's label, curator's label, and whether the upload is in the
    custom holdout (one accepted upload in five, chosen by its hash, never trains).
    """
    from .storage import UploadError

    if state != "all" and state not in REVIEW_STATES:
        _fail(f"unknown review state {state!r}; use one of: {', '.join(REVIEW_STATES)}, all")
    store = _open_store(custom)
    try:
        rows = store.review_rows(None if state == "all" else state)
    except UploadError as err:
        _fail(str(err))
    for r in rows:
        held = in_holdout(r["sha256"])
        if ids_only:
            typer.echo(r["id"])
        elif as_json:
            typer.echo(
                json.dumps(
                    {
                        "id": r["id"],
                        "state": r["state"],
                        "label": r["label"],
                        "curator_label": r["curator_label"],
                        "holdout": held,
                        "created": r["created"],
                    }
                )
            )
        else:
            typer.echo(
                f"{r['id']}  {r['state']:<8}  {r['label']:<8}  "
                f"{r['curator_label'] or '-':<8}  {'holdout' if held else ''}".rstrip()
            )
    if not (ids_only or as_json):
        typer.echo(f"{len(rows)} upload{'s' if len(rows) != 1 else ''} ({state})", err=True)


def review(
    custom: Path | None = CustomDir,
    port: int = typer.Option(
        0, "--port", "-p", min=0, max=65535, help="TCP port on 127.0.0.1 (default: a free one)."
    ),
    models_dir: Path = typer.Option(
        REPO_ROOT / "models",
        "--models-dir",
        help="The shipped TF.js models (manifest.json) whose predictions the page shows.",
    ),
    web_dir: Path = typer.Option(
        REPO_ROOT / "web", "--web-dir", help="The web/ folder (review/, js/, vendor/)."
    ),
) -> None:
    """Review uploads before they train, in a local page: a grid of the pending face crops with
    the contributor's label and the shipped model's prediction and confidence, the most
    disagreeing first; accept, reject or relabel one or many (keyboard: a, r, 1-7, space, x).

    It is served on 127.0.0.1 only, at a URL with a random one-time token (printed; every
    request without it is refused), and works offline. The same actions for scripts:
    `fer-hybrid data queue`, `accept`, `reject`, `relabel`, `reset`.
    """
    import secrets
    import socket

    if not (web_dir / "review" / "index.html").is_file():
        _fail(f"--web-dir {web_dir} has no review/index.html")
    store = _open_store(custom)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))  # loopback only, whatever the machine's other interfaces
    except OSError as err:
        sock.close()
        _fail(f"cannot listen on 127.0.0.1:{port}: {err.strerror or err}")
    port = sock.getsockname()[1]
    import uvicorn

    from .review_app import create_review_app

    token = secrets.token_urlsafe(24)  # new every run: a URL from yesterday opens nothing
    app = create_review_app(store, token=token, port=port, web_dir=web_dir, models_dir=models_dir)
    counts = store.review_counts()
    pending = sum(counts["pending"].values())
    typer.echo(
        f"reviewing {store.root}: {pending} pending, {sum(counts['accepted'].values())} "
        f"accepted, {sum(counts['rejected'].values())} rejected"
    )
    if not (models_dir / "manifest.json").is_file():
        typer.echo(f"warning: {models_dir} has no manifest.json: the page shows no predictions")
    typer.echo("open this URL on this machine (only it can; the token is new every run):")
    typer.echo(f"    http://127.0.0.1:{port}/{token}/", color=False)
    typer.echo(f"the custom holdout is reported from {HOLDOUT_MIN} accepted faces; Ctrl-C stops")
    sys.stdout.flush()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        store.close()
