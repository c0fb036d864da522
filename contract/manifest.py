"""The model manifest (`models/manifest.json`): types, writing, reading, validation.

`fer-hybrid export` writes it; the web page and the server read the same JSON.
Standard library only (it is part of `contract`), so the server imports it without
TensorFlow.

Shape (schema ``fer-hybrid/manifest@1``)::

    {
      "schema": "fer-hybrid/manifest@1",
      "created": "2026-01-01T12:00:00Z",
      "labels": ["angry", ..., "neutral"],
      "input": {"height": 48, "width": 48, "channels": 1, "color": "grayscale",
                "dtype": "float32", "range": [0, 255], "layout": "NHWC"},
      "ensemble": {"method": "soft_voting", "tta_flip": true},
      "members": [{"name": "baseline_cnn", "architecture": "baseline_cnn",
                   "path": "baseline_cnn/model.json", "format": "tfjs_graph_model",
                   "weight": 1.0, "quantization": "uint8", "bytes": 123456,
                   "params": 61000, "metrics": {...}}],
      "metrics": {"split": "PrivateTest", "accuracy_float": ..., ...},
      "placeholder": false,
      "notes": "..."
    }

`ensemble.temperature` (optional, default 1): the page shows softmax(log(p) / T) of the vote p
(flip TTA included), so its percentages mean what they say; `fer-hybrid calibrate` fits T on
PublicTest. Any T > 0 keeps every top class, so accuracies do not change.

`ensemble.equalize_below` (optional, default 40): the page histogram-equalises a face crop
whose mean grey level is below this before the models see it (web/js/lowlight.js); 0 never
does. Whether that helps depends on the models (members trained with the low-light
augmentation do better on dark crops as they are), so `fer-hybrid calibrate --lowlight choose`
picks it on PublicTest per models folder. Manifests written before the field existed get 40,
the rule the page had then.

Variants (optional): the models folder may offer more than one model. The top manifest
then lists them, itself first as the default, each a full manifest of this same schema in
its own subfolder (its own members, labels, input and metrics)::

      "variants": [
        {"id": "fer2013", "title": "FER2013 labels", "description": "...",
         "manifest": "manifest.json", "default": true},
        {"id": "ferplus", "title": "People's votes (FER+)", "description": "...",
         "manifest": "ferplus/manifest.json", "default": false}
      ]

Rules: ids are unique and safe (`VARIANT_ID`); `manifest` is relative to the top manifest's
folder; exactly one variant is the default and it is the top manifest itself
("manifest.json"), every other one lies in a subfolder that holds no member of the top
manifest (nor of another variant); a variant's manifest lists no variants of its own and has
the top manifest's labels and input spec (checked when the files are). The key is optional
and additive, so the schema id stays ``fer-hybrid/manifest@1``: a manifest without it is
valid as before, and a reader that ignores it gets the default model.

Conventions:
- `path` is relative to the manifest's folder, POSIX separators, no `..`.
- `bytes` is what the page downloads for that member: `model.json` plus every
  weight shard it lists (so it can be checked against the files on disk).
- `metrics` (top level) always has `split` (``"PrivateTest"``, ``"PublicTest"``
  or ``null`` when nothing was measured); the accuracy keys are present when measured.
- `metrics.ferplus` (optional, only when the FER+ votes were there at export): the
  quantised ensemble's agreement with Microsoft's FER+ ten-annotator votes on the same split,
  ``{"of", "n", "rows", "ties", "majority_agreement", "majority_agreement_tta",
  "mean_vote_share", "mean_vote_share_tta", "fer2013_labels_majority_agreement",
  "fer2013_labels_mean_vote_share"}``: shares in [0, 1] (or null) over the `n` of the split's
  `rows` whose most-voted FER+ column is one of the seven labels; a tie for the most votes
  counts as agreement with any tied class. ``{"note": "..."}`` when it could not be computed.
  Readers must not require it.

Public helpers: `Manifest`, `Member`, `Variant`, `manifest_to_dict`, `manifest_from_dict`,
`validate_manifest` (returns a list of problems), `write_manifest` (atomic),
`read_manifest` (raises `ManifestError` when invalid), `member_bytes`, `manifest_variants`.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from contract import LABELS, SPLIT_TITLES, input_spec, utc_now
from contract.files import atomic_write

SCHEMA = "fer-hybrid/manifest@1"
MANIFEST_NAME = "manifest.json"
MODEL_FORMAT = "tfjs_graph_model"
QUANTIZATIONS = ("uint8", "float16", "none")
ENSEMBLE_METHOD = "soft_voting"
#: The page's low-light threshold for a manifest without `ensemble.equalize_below`.
DEFAULT_EQUALIZE_BELOW = 40
#: The splits a manifest's metrics can be measured on.
SPLIT_NAMES = {k: SPLIT_TITLES[k] for k in ("test", "val")}
#: A variant id: lower-case letters, digits, "_" and "-" (it names a folder and a URL part).
VARIANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class ManifestError(ValueError):
    """A manifest that is missing, unreadable or breaks the contract (the message says how)."""


@dataclass
class Member:
    """One ensemble member as listed in the manifest."""

    name: str
    path: str  # relative to the manifest folder, e.g. "baseline_cnn/model.json"
    architecture: str = ""
    format: str = MODEL_FORMAT
    weight: float = 1.0
    quantization: str = "uint8"
    bytes: int = 0
    params: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Variant:
    """One selectable model of a models folder (the top manifest's `variants`)."""

    id: str
    title: str
    manifest: str  # relative to the top manifest's folder: "manifest.json" or "<id>/manifest.json"
    description: str = ""
    default: bool = False


@dataclass
class Manifest:
    """The whole manifest. `to_dict()` gives the JSON document."""

    members: list[Member]
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    input: dict[str, Any] = field(default_factory=input_spec)
    ensemble: dict[str, Any] = field(
        default_factory=lambda: {"method": ENSEMBLE_METHOD, "tta_flip": True}
    )
    metrics: dict[str, Any] = field(default_factory=lambda: {"split": None})
    placeholder: bool = False
    notes: str = ""
    created: str = ""
    schema: str = SCHEMA
    variants: list[Variant] = field(default_factory=list)  # empty: one model, no "variants" key

    def to_dict(self) -> dict[str, Any]:
        return manifest_to_dict(self)


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    """JSON-ready dict with the contract's key order ("variants" last, only when there are some)."""
    data = {
        "schema": manifest.schema,
        "created": manifest.created or utc_now(),
        "labels": list(manifest.labels),
        "input": dict(manifest.input),
        "ensemble": dict(manifest.ensemble),
        "members": [asdict(m) for m in manifest.members],
        "metrics": dict(manifest.metrics),
        "placeholder": bool(manifest.placeholder),
        "notes": manifest.notes,
    }
    if manifest.variants:
        data["variants"] = [
            {"id": v.id, "title": v.title, "description": v.description, "manifest": v.manifest,
             "default": bool(v.default)}
            for v in manifest.variants
        ]
    return data


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Inverse of `manifest_to_dict` (call `validate_manifest` first for untrusted input)."""
    known = set(Member.__dataclass_fields__)
    members = [Member(**{k: v for k, v in m.items() if k in known}) for m in data["members"]]
    variants = [
        Variant(id=v["id"], title=v["title"], manifest=v["manifest"],
                description=str(v.get("description", "")), default=bool(v.get("default", False)))
        for v in data.get("variants") or []
    ]
    return Manifest(
        members=members,
        labels=list(data["labels"]),
        input=dict(data.get("input") or input_spec()),
        ensemble=dict(data.get("ensemble") or {"method": ENSEMBLE_METHOD, "tta_flip": True}),
        metrics=dict(data.get("metrics") or {"split": None}),
        placeholder=bool(data.get("placeholder", False)),
        notes=str(data.get("notes", "")),
        created=str(data.get("created", "")),
        schema=str(data.get("schema", SCHEMA)),
        variants=variants,
    )


def member_files(model_json: Path) -> list[Path]:
    """`model.json` and the weight shards it references (all relative to its folder)."""
    doc = json.loads(Path(model_json).read_text())
    files = [Path(model_json)]
    for group in doc.get("weightsManifest", []):
        for rel in group.get("paths", []):
            files.append(Path(model_json).parent / rel)
    return files


def member_bytes(model_json: Path) -> int:
    """Download size of one member: model.json + its weight shards."""
    return sum(p.stat().st_size for p in member_files(model_json))


def equalize_below(ensemble: dict[str, Any] | None) -> float:
    """The page's low-light threshold from a manifest's `ensemble` block (see above)."""
    return float((ensemble or {}).get("equalize_below", DEFAULT_EQUALIZE_BELOW))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad_relative_path(path: Any, name: str = "model.json") -> str | None:
    if not isinstance(path, str) or not path:
        return "must be a non-empty string"
    if "\\" in path:
        return "must use '/' separators"
    if "://" in path or path.startswith("data:"):
        return "must be a relative file path, not a URL"
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "must be relative to the manifest folder"
    if any(part in ("..", "") for part in path.split("/")):
        return "must not contain '..' or empty parts"
    if pure.name != name:
        return f"must point at a {name}"
    return None


def _folder(path: str) -> PurePosixPath:
    return PurePosixPath(path).parent


def _nested(a: PurePosixPath, b: PurePosixPath) -> bool:
    """True when folder a is b or lies inside it, or the other way round."""
    return a == b or a in b.parents or b in a.parents


def _validate_variants(data: dict[str, Any], base_dir: str | os.PathLike | None) -> list[str]:
    """Problems of the optional top-level `variants` list (see the module docstring)."""
    variants = data["variants"]
    if not isinstance(variants, list) or not variants:
        return ["variants: must be a non-empty list (leave the key out for a single model)"]
    problems: list[str] = []
    ids: set[str] = set()
    folders: list[PurePosixPath] = []
    defaults = 0
    members = data.get("members") if isinstance(data.get("members"), list) else []
    member_dirs = [_folder(m["path"]) for m in members
                   if isinstance(m, dict) and not _bad_relative_path(m.get("path"))]
    for i, variant in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(variant, dict):
            problems.append(f"{where}: must be an object with id, title and manifest")
            continue
        vid = variant.get("id")
        if not isinstance(vid, str) or not VARIANT_ID.fullmatch(vid):
            problems.append(f"{where}.id {vid!r}: must be 1-32 of a-z, 0-9, '_', '-' "
                            "(starting with a letter or digit)")
        elif vid in ids:
            problems.append(f"{where}.id: duplicate id {vid!r}")
        else:
            ids.add(vid)
            where = f"variants[{i}] ({vid})"
        if not isinstance(variant.get("title"), str) or not variant["title"].strip():
            problems.append(f"{where}.title: must be a non-empty string")
        if not isinstance(variant.get("description", ""), str):
            problems.append(f"{where}.description: must be a string")
        is_default = variant.get("default", False)
        if not isinstance(is_default, bool):
            problems.append(f"{where}.default: must be true or false")
            is_default = False
        defaults += is_default
        path = variant.get("manifest")
        why = _bad_relative_path(path, MANIFEST_NAME)
        if why:
            problems.append(f"{where}.manifest {path!r}: {why}")
            continue
        if is_default:
            if path != MANIFEST_NAME:
                problems.append(f"{where}: the default variant is the top manifest itself; "
                                f"its manifest must be {MANIFEST_NAME!r}, not {path!r}")
            continue
        if path == MANIFEST_NAME:
            problems.append(f"{where}.manifest: only the default is the top manifest; put this "
                            f"one in a subfolder, e.g. '{vid}/{MANIFEST_NAME}'")
            continue
        folder = _folder(path)
        if any(_nested(folder, m) for m in member_dirs):
            problems.append(f"{where}.manifest {path!r}: its folder overlaps a member folder "
                            "of the top manifest")
        elif any(_nested(folder, f) for f in folders):
            problems.append(f"{where}.manifest {path!r}: its folder overlaps another variant's")
        folders.append(folder)
        if base_dir is not None:
            problems += [f"{where}: {p}" for p in _check_variant_file(data, base_dir, path)]
    if defaults != 1:
        problems.append(f"variants: need exactly one default (the top manifest), found {defaults}")
    return problems


def _check_variant_file(top: dict[str, Any], base_dir: str | os.PathLike, path: str) -> list[str]:
    """A variant's manifest on disk: present, valid with its files, compatible with the top one."""
    file = Path(base_dir) / path
    if not file.is_file():
        return [f"{path} does not exist next to the manifest"]
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return [f"cannot read {path}: {err}"]
    if not isinstance(doc, dict):
        return [f"{path} is not a JSON object"]
    problems = [f"{path}: {p}" for p in validate_manifest(doc, file.parent)]
    if "variants" in doc:
        problems.append(f"{path}: a variant's manifest must not list variants of its own")
    for key in ("labels", "input"):
        if doc.get(key) != top.get(key):
            problems.append(f"{path}: {key} differ from the top manifest's (every variant must "
                            "classify the same labels from the same input)")
    return problems


def validate_manifest(data: Any, base_dir: str | os.PathLike | None = None) -> list[str]:
    """All problems found in a manifest document (an empty list means valid).

    With `base_dir` (the manifest's folder) it also checks that every member's
    model.json and weight shards exist and that `bytes` matches the files on disk, and
    that every variant's manifest exists, is valid with its files and matches this one.
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["manifest must be a JSON object"]
    if data.get("schema") != SCHEMA:
        problems.append(f"schema must be {SCHEMA!r}, got {data.get('schema')!r}")

    labels = data.get("labels")
    if not isinstance(labels, list) or not labels:
        problems.append("labels: missing or empty (expected the list of class names)")
    elif not all(isinstance(x, str) and x for x in labels) or len(set(labels)) != len(labels):
        problems.append("labels: must be unique non-empty strings")

    spec = data.get("input")
    if not isinstance(spec, dict):
        problems.append("input: missing (expected the input spec object)")
    else:
        for key in ("height", "width", "channels"):
            if not isinstance(spec.get(key), int) or isinstance(spec.get(key), bool) or spec[key] <= 0:
                problems.append(f"input.{key}: must be a positive integer")
        if spec.get("layout") != "NHWC":
            problems.append("input.layout: must be 'NHWC'")
        if spec.get("dtype") != "float32":
            problems.append("input.dtype: must be 'float32'")
        rng = spec.get("range")
        if not (isinstance(rng, list) and len(rng) == 2 and all(_is_number(v) for v in rng)):
            problems.append("input.range: must be [low, high]")

    ens = data.get("ensemble")
    if not isinstance(ens, dict):
        problems.append("ensemble: missing")
    else:
        if ens.get("method") != ENSEMBLE_METHOD:
            problems.append(f"ensemble.method: must be {ENSEMBLE_METHOD!r}")
        if not isinstance(ens.get("tta_flip"), bool):
            problems.append("ensemble.tta_flip: must be true or false")
        t = ens.get("temperature", 1.0)
        if not (_is_number(t) and math.isfinite(t) and 0.05 <= t <= 20):
            problems.append("ensemble.temperature: must be a number from 0.05 to 20 (1: the "
                            "vote as it is)")
        e = ens.get("equalize_below", DEFAULT_EQUALIZE_BELOW)
        if not (_is_number(e) and 0 <= e <= 256):
            problems.append("ensemble.equalize_below: must be a grey level from 0 to 256 (0: "
                            "never equalise)")

    members = data.get("members")
    if not isinstance(members, list) or not members:
        problems.append("members: missing or empty (export at least one model)")
        members = []
    names: set[str] = set()
    paths: set[str] = set()
    for i, member in enumerate(members):
        where = f"members[{i}]"
        if not isinstance(member, dict):
            problems.append(f"{where}: must be an object")
            continue
        name = member.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: must be a non-empty string")
        elif name in names:
            problems.append(f"{where}.name: duplicate name {name!r}")
        else:
            names.add(name)
            where = f"members[{i}] ({name})"
        path = member.get("path")
        why = _bad_relative_path(path)
        if why:
            problems.append(f"{where}.path {path!r}: {why}")
        elif path in paths:
            problems.append(f"{where}.path: duplicate path {path!r}")
        else:
            paths.add(path)
        if member.get("format") != MODEL_FORMAT:
            problems.append(f"{where}.format: must be {MODEL_FORMAT!r}")
        if not _is_number(member.get("weight")) or member["weight"] <= 0:
            problems.append(f"{where}.weight: must be a positive number")
        if member.get("quantization") not in QUANTIZATIONS:
            problems.append(f"{where}.quantization: must be one of {', '.join(QUANTIZATIONS)}")
        size = member.get("bytes")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            problems.append(f"{where}.bytes: must be a positive integer")
        params = member.get("params")
        if params is not None and (not isinstance(params, int) or isinstance(params, bool) or params < 0):
            problems.append(f"{where}.params: must be a non-negative integer or null")
        if not isinstance(member.get("metrics", {}), dict):
            problems.append(f"{where}.metrics: must be an object")
        if base_dir is not None and not why:
            model_json = Path(base_dir) / path
            if not model_json.is_file():
                problems.append(f"{where}: {path} does not exist next to the manifest")
            else:
                try:
                    files = member_files(model_json)
                except (OSError, ValueError) as err:
                    problems.append(f"{where}: cannot read {path}: {err}")
                    continue
                missing = [str(p.relative_to(base_dir)) for p in files if not p.is_file()]
                if missing:
                    problems.append(f"{where}: missing weight files {', '.join(missing)}")
                elif isinstance(size, int) and size != sum(p.stat().st_size for p in files):
                    actual = sum(p.stat().st_size for p in files)
                    problems.append(f"{where}.bytes: says {size} but the files take {actual}")

    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        problems.append("metrics: missing (expected an object with at least 'split')")
    elif "split" not in metrics:
        problems.append("metrics.split: missing (use null when nothing was measured)")
    else:
        for key, value in metrics.items():
            if key.startswith("accuracy") and value is not None and not (
                _is_number(value) and 0.0 <= value <= 1.0
            ):
                problems.append(f"metrics.{key}: must be a number in [0, 1]")
        problems += _ferplus_problems(metrics.get("ferplus"))
    if not isinstance(data.get("placeholder"), bool):
        problems.append("placeholder: must be true or false")
    if not isinstance(data.get("notes", ""), str):
        problems.append("notes: must be a string")
    if not isinstance(data.get("created"), str) or not data.get("created"):
        problems.append("created: must be an ISO-8601 timestamp string")
    if "variants" in data:
        problems += _validate_variants(data, base_dir)
    return problems


def _ferplus_problems(block: Any) -> list[str]:
    """What is wrong with an (optional) metrics.ferplus block; [] when absent or fine."""
    if block is None:
        return []
    if not isinstance(block, dict):
        return ["metrics.ferplus: must be an object (or absent)"]
    problems = []
    for key, value in block.items():
        share = key.startswith(("majority_agreement", "mean_vote_share")) or "labels_" in key
        if share and value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
            problems.append(f"metrics.ferplus.{key}: must be a number in [0, 1] or null")
        if key in ("n", "rows") and not (isinstance(value, int) and not isinstance(value, bool)
                                         and value >= 0):
            problems.append(f"metrics.ferplus.{key}: must be a whole number >= 0")
    return problems


def write_manifest(manifest: Manifest | dict[str, Any], path: str | os.PathLike) -> Path:
    """Validate (without touching the disk) and write atomically (tmp file + os.replace)."""
    data = manifest.to_dict() if isinstance(manifest, Manifest) else dict(manifest)
    problems = validate_manifest(data)
    if problems:
        raise ManifestError("refusing to write an invalid manifest: " + "; ".join(problems))
    # 0o644: the server (maybe another user) must read it.
    return atomic_write(path, json.dumps(data, indent=2) + "\n", mode=0o644)


def manifest_path(path: str | os.PathLike) -> Path:
    """The manifest file: `path` itself, or manifest.json inside the folder `path`."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def read_manifest_json(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest document as JSON, not validated; ManifestError if missing or unreadable."""
    path = manifest_path(path)
    if not path.is_file():
        raise ManifestError(f"no manifest at {path}; run `fer-hybrid export RUN...` to create one")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ManifestError(f"cannot read {path}: {err}; re-run `fer-hybrid export`") from err
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a JSON object; re-run `fer-hybrid export`")
    return data


def read_manifest(path: str | os.PathLike, *, check_files: bool = True) -> Manifest:
    """Read and validate a manifest (a file or the folder holding manifest.json).

    Raises `ManifestError` naming every problem. With `check_files` the member files
    and their byte counts are checked against the disk too.
    """
    path = manifest_path(path)
    data = read_manifest_json(path)
    problems = validate_manifest(data, path.parent if check_files else None)
    if problems:
        raise ManifestError(f"invalid manifest {path}: " + "; ".join(problems)
                            + "; re-run `fer-hybrid export`")
    return manifest_from_dict(data)


def manifest_variants(path: str | os.PathLike) -> list[Variant]:
    """The variants a models folder (or its manifest file) offers, validated with their files;
    [] for a single-model folder. Raises `ManifestError` like `read_manifest`."""
    return read_manifest(path).variants
