"""Run folders -> a bundle: flat parts of at most `part_bytes` and a manifest, in one folder.

What is kept per run (everything else is left out and listed in the manifest):
  config.json, log.csv, metrics.json, checkpoint/state.json   verbatim (small; the record)
  predictions/{val,test}.npz                                  verbatim (ensembles need them)
  best.keras                                                  compact: the weights as float16
      when `float16_check` measures that harmless (or asked), else the original file verbatim
The training checkpoint model (resuming happens on the GPU machine, not here), tensorboard/
and evaluation/ are left out; history.png is redrawn from log.csv on unbundling.

The files go into one deterministic tar stream (optionally lzma), built in an anonymous
temporary file (no one else can see it), then cut into parts written with the atomic
writer; the manifest is written last, so a manifest on disk means its parts are complete.
"""

from __future__ import annotations

import io
import json
import lzma
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract import utc_now
from contract.files import atomic_write, sha256_of
from training.bundle import float16_check, keras_file, manifest, plan
from training.core.errors import FerError
from training.core.runs import RunFolder

WEIGHT_OPTIONS = ("auto", "float16", "float32")
# Bundled verbatim when present, in this order (best.keras comes first, in its stored form).
# console.txt: a GPU session's training output (training.gpu.session), the only record of
# what happened on a machine that is gone.
RECORD_FILES = ("config.json", "log.csv", "metrics.json", "checkpoint/state.json",
                "predictions/val.npz", "predictions/test.npz", "console.txt")
COMPACT_SUFFIX = ".compact.npz"  # best.keras.compact.npz: the compact form of best.keras


@dataclass
class BundleOptions:
    weights: str = "auto"  # auto | float16 | float32
    part_bytes: int = plan.DEFAULT_PART_BYTES
    compression: str = "lzma"  # lzma | none
    min_agreement: float = float16_check.DEFAULT_MIN_AGREEMENT
    max_accuracy_change: float = float16_check.DEFAULT_MAX_ACCURACY_CHANGE
    max_prob_change: float | None = None
    batch_size: int = 256

    def check(self) -> BundleOptions:
        if self.weights not in WEIGHT_OPTIONS:
            raise FerError(f"--weights {self.weights!r}: use one of {', '.join(WEIGHT_OPTIONS)}")
        if self.compression not in manifest.COMPRESSIONS:
            raise FerError(f"--compress {self.compression!r}: use one of "
                           f"{', '.join(manifest.COMPRESSIONS)}")
        if not 0 <= self.min_agreement <= 100:
            raise FerError("--min-agreement is a percentage between 0 and 100")
        if self.max_accuracy_change < 0 or (self.max_prob_change or 0) < 0:
            raise FerError("--max-accuracy-change and --max-prob-change cannot be negative")
        plan.check_part_size(self.part_bytes)
        return self


@dataclass
class Bundle:
    manifest_path: Path
    manifest: dict
    plan_text: str


def _run_folders(paths: list[Path]) -> list[RunFolder]:
    runs = []
    for path in paths:
        run = RunFolder(path)
        if not run.config.is_file():
            raise FerError(f"{path} is not a run folder (no config.json); pass runs/<name>")
        runs.append(run)
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FerError(f"two runs share the folder name {', '.join(dupes)}; a bundle restores "
                       "runs by name, so bundle them separately")
    return runs


def _model_entry(run: RunFolder, opts: BundleOptions, say) -> tuple[str, bytes, dict]:
    """(name in the run, bytes, weights record) of best.keras in its stored form."""
    original = run.best_model.read_bytes()
    record = {"restores": "best.keras", "original_bytes": len(original),
              "original_sha256": manifest.sha256_bytes(original), "check": None}
    if opts.weights == "float32":
        return "best.keras", original, {**record, "storage": "float32",
                                        "reason": "asked for (--weights float32)",
                                        "restored_sha256": record["original_sha256"]}
    try:
        compact = keras_file.compact_keras(original, "float16")
    except FerError as err:  # an unusual .keras layout or weights beyond float16's range
        if opts.weights == "float16":
            raise FerError(f"{run.name}: cannot store best.keras as float16: {err}") from err
        return "best.keras", original, {**record, "storage": "float32",
                                        "reason": f"float16 not possible: {err}",
                                        "restored_sha256": record["original_sha256"]}
    images = float16_check.run_images(run)
    say(f"{run.name}: measuring float16 weights on {len(images.x)} images "
        f"({images.source.split(':')[0]}) ...")
    rebuilt = keras_file.rebuild_keras(compact)  # what unbundling will write
    check = float16_check.measure(run.best_model, rebuilt, images, batch_size=opts.batch_size)
    storage, reason = float16_check.decide(check, min_agreement=opts.min_agreement,
                                           max_accuracy_change=opts.max_accuracy_change,
                                           max_prob_change=opts.max_prob_change)
    if opts.weights == "float16":
        storage, reason = "float16", f"asked for (--weights float16); measured: {reason}"
    say(f"{run.name}: {storage} weights ({reason})")
    record = {**record, "storage": storage, "reason": reason, "check": check}
    if storage == "float32":
        return "best.keras", original, {**record, "restored_sha256": record["original_sha256"]}
    # For the record: another HDF5 library may write the same weights as other bytes, so
    # unbundling checks the weights themselves (keras_file.holds_weights), not this digest.
    return "best.keras" + COMPACT_SUFFIX, compact, {
        **record, "restored_sha256": manifest.sha256_bytes(rebuilt)}


def _left_out(run: RunFolder, kept: set[str]) -> list[str]:
    """What of the run folder is not bundled: whole folders as 'name/', else files."""
    out = set()
    for path in run.path.rglob("*"):
        if not path.is_file():
            continue
        rel = path.relative_to(run.path).as_posix()
        if rel in kept:
            continue
        top = rel.split("/")[0]
        whole = "/" in rel and not any(k.startswith(top + "/") for k in kept)
        out.add(top + "/" if whole else rel)
    return sorted(out)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    # Fixed metadata: the same runs give the same stream, hence the same bundle id.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_stream(runs: list[RunFolder], opts: BundleOptions, tar_file, say) -> list[dict]:
    """Write the tar of every run's kept files into `tar_file`; the manifest's run records."""
    records = []
    with tarfile.open(fileobj=tar_file, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for run in runs:
            files, weights = [], None
            if run.best_model.is_file():
                name, data, weights = _model_entry(run, opts, say)
                files.append((name, data))
            else:
                say(f"{run.name}: no best.keras (no epoch finished?): bundling the record only")
            for rel in RECORD_FILES:
                path = run.path / rel
                if path.is_file():
                    files.append((rel, path.read_bytes()))
            entries = []
            for rel, data in files:
                _add(tar, f"{run.name}/{rel}", data)
                entries.append({"path": rel, "bytes": len(data),
                                "sha256": manifest.sha256_bytes(data)})
            kept = {e["path"] for e in entries} | ({"best.keras"} if weights else set())
            records.append({"name": run.name, "files": entries, "weights": weights,
                            "left_out": _left_out(run, kept)})
    return records


# Measured on cpu-sepnet's float16 weights: preset 0 saves 13.9 %, preset 6 15.6 % at half
# the speed (float weights hardly compress); bundling runs inside a time-boxed GPU call.
LZMA_PRESET = 0


def _compress(src, dst, compression: str) -> None:
    src.seek(0)
    if compression == "lzma":
        with lzma.open(dst, "wb", preset=LZMA_PRESET, check=lzma.CHECK_CRC64) as out:
            while block := src.read(2**20):
                out.write(block)
    else:
        while block := src.read(2**20):
            dst.write(block)
    dst.flush()


def bundle_runs(paths: list[Path], out: Path, opts: BundleOptions | None = None, *,
                say: Callable[[str], None] = print) -> Bundle:
    """Bundle the run folders at `paths` into `out` (flat); returns the manifest and plan."""
    opts = (opts or BundleOptions()).check()
    runs = _run_folders(paths)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FerError(f"--out {out} is a file; give a folder for the bundle's parts")
    with tempfile.TemporaryFile() as tar_file, tempfile.TemporaryFile() as stream:
        records = _write_stream(runs, opts, tar_file, say)
        raw_bytes = tar_file.tell()
        say(f"compressing {plan.format_size(raw_bytes)} ({opts.compression}) ..."
            if opts.compression != "none" else f"stream: {plan.format_size(raw_bytes)}")
        _compress(tar_file, stream, opts.compression)
        size = stream.tell()
        digest = sha256_of(stream)
        bundle_id = digest[:12]
        count = max(1, -(-size // opts.part_bytes))
        parts = []
        stream.seek(0)
        for i, name in enumerate(manifest.part_names(bundle_id, count), 1):
            data = stream.read(opts.part_bytes)
            atomic_write(out / name, data)
            parts.append({"name": name, "bytes": len(data),
                          "sha256": manifest.sha256_bytes(data)})
            say(f"wrote part {i}/{count}: {out / name} ({plan.format_size(len(data))})")
    body = {"format": manifest.FORMAT, "version": manifest.VERSION, "bundle": bundle_id,
            "created": utc_now(), "compression": opts.compression,
            "stream": {"bytes": size, "sha256": digest, "tar_bytes": raw_bytes},
            "limits": {"max_files_per_call": plan.MAX_FILES,
                       "max_bytes_per_call": plan.MAX_CALL_BYTES,
                       "max_file_bytes": plan.MAX_FILE_BYTES, "part_bytes": opts.part_bytes},
            "thresholds": {"weights": opts.weights, "min_agreement_pct": opts.min_agreement,
                           "max_accuracy_change_pp": opts.max_accuracy_change,
                           "max_prob_change": opts.max_prob_change},
            "runs": records, "parts": parts, "calls": []}
    name = manifest.manifest_name(bundle_id)
    sizes = {p["name"]: p["bytes"] for p in parts}
    sizes[name] = len(_manifest_text(body))
    for _ in range(8):  # the manifest lists the calls, and its own size helps decide them
        calls = plan.plan_calls([(name, sizes[name])] + [(p["name"], p["bytes"]) for p in parts])
        _set_calls(body, calls, sizes)
        text = _manifest_text(body)
        if len(text) == sizes[name]:
            break
        sizes[name] = len(text)
    path = atomic_write(out / name, text)
    return Bundle(manifest_path=path, manifest=body,
                  plan_text=plan.format_plan(str(out), calls, sizes))


def _manifest_text(body: dict) -> str:
    return json.dumps(body, indent=2, allow_nan=False) + "\n"


def _set_calls(body: dict, calls: list[list[str]], sizes: dict[str, int]) -> None:
    call_of = {n: i for i, names in enumerate(calls, 1) for n in names}
    for part in body["parts"]:
        part["call"] = call_of[part["name"]]
    body["calls"] = [{"call": i, "files": names, "bytes": sum(sizes[n] for n in names)}
                     for i, names in enumerate(calls, 1)]
