"""A bundle's parts + manifest -> run folders, each checked against the manifest.

Order of the checks, so that a problem is named before anything is written: the manifest,
every part present (missing ones are named with the device call that carries them), every
part's size and sha256, no run folder in the way (unless `force`), the whole stream's
sha256. Then each run is restored into a temporary sibling folder (files written with the
atomic writer, each checked against its sha256), best.keras rebuilt as a float32 .keras
file and loaded once, history.png redrawn from log.csv, and the folder renamed into place.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from contract.files import atomic_write, fsync_dir, sha256_file, temp_path
from training.bundle import keras_file, manifest
from training.bundle.pack import COMPACT_SUFFIX
from training.core.errors import FerError
from training.core.runs import RunFolder


def _locate_parts(body: dict, folders: list[Path]) -> list[Path]:
    """Each part's file, checked; FerError naming every missing or damaged part."""
    found, missing, damaged = [], [], []
    for part in body["parts"]:
        candidates = [f / part["name"] for f in folders if (f / part["name"]).is_file()]
        if not candidates:
            missing.append(f"{part['name']} (call {part['call']})")
            continue
        problems = []
        for path in candidates:
            size = path.stat().st_size
            if size != part["bytes"]:
                problems.append(f"{path} is truncated or padded: {size:,} bytes, the manifest "
                                f"says {part['bytes']:,}")
            elif sha256_file(path) != part["sha256"]:
                problems.append(f"{path} is corrupt (its sha256 differs from the manifest's)")
            else:
                found.append(path)
                break
        else:
            damaged.append("; ".join(problems) + f" - copy it back again from call "
                                                 f"{part['call']}")
    if missing:
        calls = sorted({int(m.rsplit("call ", 1)[1].rstrip(")")) for m in missing})
        raise FerError(f"bundle {body['bundle']}: {len(missing)} of {len(body['parts'])} parts "
                       f"missing: {', '.join(missing)}; copy the files of call(s) "
                       f"{', '.join(map(str, calls))} back and pass their folder too")
    if damaged:
        raise FerError(f"bundle {body['bundle']}: " + "; ".join(damaged))
    return found


def _assemble(parts: list[Path], body: dict, into) -> None:
    """Concatenate the parts into `into`, checking the stream's size and sha256."""
    digest, size = hashlib.sha256(), 0
    for path in parts:
        with open(path, "rb") as fh:
            while block := fh.read(2**20):
                digest.update(block)
                size += len(block)
                into.write(block)
    into.flush()
    into.seek(0)
    if size != body["stream"]["bytes"] or digest.hexdigest() != body["stream"]["sha256"]:
        raise FerError(f"bundle {body['bundle']}: the parts check out but their stream does "
                       "not match the manifest; the bundle was written incompletely: bundle "
                       "the runs again")


def _restore_stream(stream, body: dict, staging: dict[str, Path]) -> dict[str, dict[str, bytes]]:
    """Write every stream file into its staging folder; the compact models, kept in memory."""
    expected = {f"{r['name']}/{e['path']}": e for r in body["runs"] for e in r["files"]}
    compact: dict[str, dict[str, bytes]] = {}
    seen = set()
    source = lzma.open(stream, "rb") if body["compression"] == "lzma" else stream
    try:
        with tarfile.open(fileobj=source, mode="r|") as tar:
            for member in tar:
                entry = expected.get(member.name)
                if entry is None or not member.isfile() or member.name in seen:
                    raise FerError(f"bundle {body['bundle']}: unexpected {member.name!r} in "
                                   "the stream; the manifest does not belong to these parts")
                data = tar.extractfile(member).read()
                if len(data) != entry["bytes"] or manifest.sha256_bytes(data) != entry["sha256"]:
                    raise FerError(f"bundle {body['bundle']}: {member.name} does not match its "
                                   "sha256 in the manifest")
                seen.add(member.name)
                run_name, rel = member.name.split("/", 1)
                if rel.endswith(COMPACT_SUFFIX):
                    compact.setdefault(run_name, {})[rel] = data
                else:
                    atomic_write(staging[run_name] / rel, data)
    except (lzma.LZMAError, tarfile.TarError, EOFError, OSError) as err:
        raise FerError(f"bundle {body['bundle']}: the stream is damaged ({err})") from err
    lost = sorted(set(expected) - seen)
    if lost:
        raise FerError(f"bundle {body['bundle']}: the stream ends before {', '.join(lost)}")
    return compact


def _check_loads(path: Path) -> None:
    from training.models.serialization import load_model

    load_model(path)  # FerError naming the file if it does not load


def _redraw_history(run: RunFolder, say) -> None:
    try:
        from training.core.plots import plot_history
    except ImportError as err:  # matplotlib is part of the [train] extra
        say(f"{run.name}: history.png not redrawn ({err})")
        return
    plot_history(run.log_csv, run.history_png, title=run.name)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename the staged run folder to `target`, replacing an old one as briefly as possible."""
    old = None
    if target.exists():
        old = temp_path(target)
        os.replace(target, old)
    os.replace(staging, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old)


def unbundle(folders: list[Path], runs_dir: Path, *, force: bool = False,
             check_load: bool = True, say: Callable[[str], None] = print) -> list[Path]:
    """Restore every bundle whose manifest is in `folders` into `runs_dir`; the run folders."""
    folders = [Path(f) for f in folders]
    restored = []
    for manifest_path in manifest.find_manifests(folders):
        body = manifest.read_manifest(manifest_path)
        parts = _locate_parts(body, folders)
        targets = {r["name"]: Path(runs_dir) / r["name"] for r in body["runs"]}
        taken = [str(t) for t in targets.values() if t.exists()]
        if taken and not force:
            raise FerError(f"{', '.join(taken)} already exist(s); pass --force to replace, or "
                           "--runs-dir to restore elsewhere")
        say(f"bundle {body['bundle']}: {len(parts)} parts check out; restoring "
            f"{', '.join(targets)} into {runs_dir}")
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
        staging = {name: temp_path(t) for name, t in targets.items()}
        try:
            with tempfile.TemporaryFile() as stream:
                _assemble(parts, body, stream)
                for path in staging.values():
                    path.mkdir()
                compact = _restore_stream(stream, body, staging)
            for record in body["runs"]:
                run = RunFolder(staging[record["name"]])
                for rel, data in compact.get(record["name"], {}).items():
                    rebuilt = keras_file.rebuild_keras(data)
                    if not keras_file.holds_weights(rebuilt, data):  # never ship a bad rebuild
                        raise FerError(f"{record['name']}: the rebuilt best.keras does not hold "
                                       "the bundled weights; please report this bug")
                    atomic_write(run.path / rel.removesuffix(COMPACT_SUFFIX), rebuilt)
                if check_load and run.best_model.is_file():
                    _check_loads(run.best_model)
                _redraw_history(run, say)
            for name, target in targets.items():
                _swap_in(staging[name], target)
                weights = next(r["weights"] for r in body["runs"] if r["name"] == name)
                say(f"restored {target}" + (f" (best.keras from {weights['storage']} weights)"
                                            if weights else " (no best.keras)"))
                restored.append(target)
        finally:
            for path in staging.values():
                shutil.rmtree(path, ignore_errors=True)
    return restored
