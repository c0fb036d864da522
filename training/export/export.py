"""Export trained Keras models as a quantised TF.js ensemble with a manifest.

Public API::

    export_ensemble(members, out_dir, *, quantization="uint8", weights=None, names=None,
                    placeholder=False, notes="", eval_split=None) -> Path

Pipeline per member: ``best.keras`` (or a ``.keras`` file) -> a TF.js graph model in
``<out_dir>/<member>/`` (training.export.tfjs: conversion, the fixes that make it run in the page,
and a Python runner for the exported model.json) -> one manifest for the ensemble.

Measured accuracy of what ships: with `eval_split`, the float Keras ensemble and
the *quantised* TF.js graph-model ensemble are both scored on that split, with
and without flip TTA. The quantised graphs are run in Python from their dequantised
weights (`training.export.tfjs.load_tfjs_graph_model`), not in a browser; see training.export.tfjs
for why that gives the browser's numbers.

Output folder (atomic): everything is built in a temporary sibling folder
``.<out_dir name>.export-*`` and swapped in with two renames at the end, so a
crash or a conversion error leaves the previous ``models/`` untouched. The new
folder holds the exported members and the manifest; top-level *files* of the
old folder other than ``manifest.json`` (e.g. the ``README.md`` model card,
``.gitkeep``) and sub-folders that hold no ``model.json`` (reports that other commands write
there: ``bench/``, ``robustness/``) are carried over; old member folders are dropped, except
the folders of the variants the old manifest lists: they and the manifest's ``variants``
list are carried over (so re-exporting the default model keeps the other models).

Variants (`variant=`, ``fer-hybrid export RUN --variant ID``): the run is exported as a
second selectable model into ``<out_dir>/<ID>/`` (its own full manifest and member files,
built aside and swapped in the same way) and then registered in the top manifest's
``variants`` (one atomic write), replacing an entry with that id; the first variant added
also creates the default's entry (`DEFAULT_VARIANT`) for the top manifest itself. The
default model must be exported first, and a variant must share its labels and input.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from contract import LABELS, SPLIT_TITLES, input_spec, utc_now
from contract.manifest import (
    MANIFEST_NAME,
    SPLIT_NAMES,
    VARIANT_ID,
    Manifest,
    ManifestError,
    Member,
    Variant,
    manifest_from_dict,
    read_manifest,
    read_manifest_json,
    validate_manifest,
    write_manifest,
)
from training.core.errors import FerError
from training.core.metrics import top1_accuracy
from training.core.outputs import check_out_dir
from training.core.report import read_marked_section, write_marked_section
from training.core.runs import RunFolder, load_predictions, resolve_target
from training.data.evaluation import EvalData
from training.data.ferplus import FerPlusVotes
from training.data.ferplus_agreement import ferplus_scores
from training.ensemble.voting import check_weights, weighted_average
from training.export.tfjs import (
    Predictor,
    check_quantization,
    convert_keras_to_tfjs,
    load_tfjs_graph_model,
)
from training.models.serialization import load_model

log = logging.getLogger(__name__)

MODEL_CARD = "README.md"  # the model card beside the manifest, carried over by an export
CARD_SECTION = "ferplus"  # its part an export rewrites: <!-- ferplus:begin --> ... end


@dataclass
class MemberSource:
    """A member to export, resolved from a run folder or a .keras file."""

    name: str
    keras_path: Path
    run_dir: Path | None = None
    architecture: str = ""
    run_metrics: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- members


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return name or "model"


def resolve_members(members: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> list[MemberSource]:
    """Run folders (their best.keras + metrics.json) or .keras files -> `MemberSource`s."""
    if not members:
        raise FerError("no models given; pass one or more run folders (runs/<name>) or .keras files")
    if names is not None and len(names) != len(members):
        raise FerError(f"got {len(names)} names for {len(members)} models; give one name per model")
    out: list[MemberSource] = []
    used: set[str] = set()
    for i, item in enumerate(members):
        target = resolve_target(item)  # FerError for a missing/odd path or a run without best.keras
        keras_path, run_dir = target.model_path, target.run_dir
        metrics: dict[str, Any] = {}
        if target.run is not None:
            metrics = target.run.read_summary()
            default_name = target.name
        else:
            default_name = keras_path.parent.name if keras_path.stem == "best" else keras_path.stem
        name = _safe_name(names[i] if names is not None else default_name)
        if name == MANIFEST_NAME or name in used:
            n = 2
            while f"{name}_{n}" in used:
                n += 1
            name = f"{name}_{n}"
        used.add(name)
        arch = str(metrics.get("model") or name)
        out.append(MemberSource(name, keras_path, run_dir, arch, metrics))
    return out


# --------------------------------------------------------------------------- predictors
# (keras_predictor is the float reference; training.export.tfjs.load_tfjs_graph_model runs what
# ships.)


def keras_predictor(model: Any, *, batch_size: int = 256) -> Predictor:
    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, "float32"), batch_size=batch_size, verbose=0), "float32")

    return predict


# --------------------------------------------------------------------------- evaluation


def soft_vote(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """The ensemble's probabilities as float32, as the page computes them."""
    return weighted_average(probs, weights).astype("float32")


def ensemble_accuracy(
    predictors: Sequence[Predictor], x: np.ndarray, y: np.ndarray, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Score an ensemble of predictors on uint8 images `x` (N,H,W) and labels `y`.

    Returns {"accuracy", "accuracy_tta", "members": [{"accuracy", "accuracy_tta"}...],
    "probs", "probs_tta"} where the TTA variant averages plain and mirrored inputs.
    """
    from training.core.metrics import tta_average
    from training.models.predict import to_model_input

    weights = list(weights) if weights is not None else [1.0] * len(predictors)
    inputs = to_model_input(x)
    flipped = np.ascontiguousarray(inputs[:, :, ::-1, :])
    y = np.asarray(y)
    plain, tta, members = [], [], []
    for predict in predictors:
        p = predict(inputs)
        pt = tta_average(p, predict(flipped))
        plain.append(p)
        tta.append(pt)
        members.append(
            {"accuracy": top1_accuracy(p, y), "accuracy_tta": top1_accuracy(pt, y)}
        )
    probs, probs_tta = soft_vote(plain, weights), soft_vote(tta, weights)
    return {
        "accuracy": top1_accuracy(probs, y),
        "accuracy_tta": top1_accuracy(probs_tta, y),
        "members": members,
        "probs": probs,
        "probs_tta": probs_tta,
    }


def compare_float_quantized(
    float_predictors: Sequence[Predictor],
    quant_predictors: Sequence[Predictor],
    x: np.ndarray,
    y: np.ndarray,
    weights: Sequence[float] | None = None,
    *,
    split: str = SPLIT_TITLES["test"],
    votes: FerPlusVotes | None = None,
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Float vs quantised ensemble on the same arrays -> (manifest metrics, per-member metrics).

    Per-member keys: ``accuracy_float[_tta]`` (Keras) and ``accuracy[_tta]`` (the
    exported, quantised graph: what the page runs). The caller prefixes them with the split.
    With `votes` (the same rows' FER+ votes) the metrics also get "ferplus": the quantised
    ensemble's agreement with the ten-annotator majority (`manifest_ferplus`).
    """
    f = ensemble_accuracy(float_predictors, x, y, weights)
    q = ensemble_accuracy(quant_predictors, x, y, weights)
    metrics = {
        "split": split,
        "n": len(y),
        "accuracy_float": f["accuracy"],
        "accuracy_float_tta": f["accuracy_tta"],
        "accuracy_quantized": q["accuracy"],
        "accuracy_quantized_tta": q["accuracy_tta"],
        "top1_agreement_tta": float((f["probs_tta"].argmax(1) == q["probs_tta"].argmax(1)).mean()),
        "max_abs_prob_diff_tta": float(np.abs(f["probs_tta"] - q["probs_tta"]).max()) if len(y) else 0.0,
    }
    if votes is not None:
        metrics["ferplus"] = manifest_ferplus(
            ferplus_scores(q["probs"], q["probs_tta"], votes, labels=y), rows=len(y))
    members = [
        {
            "accuracy_float": mf["accuracy"],
            "accuracy_float_tta": mf["accuracy_tta"],
            "accuracy": mq["accuracy"],
            "accuracy_tta": mq["accuracy_tta"],
        }
        for mf, mq in zip(f["members"], q["members"])
    ]
    return metrics, members


def manifest_ferplus(block: dict, rows: int) -> dict[str, Any]:
    """`training.data.ferplus_agreement.ferplus_scores`' block (with `labels`) as the manifest
    records it (flat numbers): {"of", "n", "rows", "ties", "majority_agreement[_tta]",
    "mean_vote_share[_tta]", "fer2013_labels_*"}, or {"note"}."""
    if "note" in block:
        return {"note": block["note"]}
    plain, tta, labels = block["plain"], block["tta"] or {}, block["fer2013_labels"]
    return {
        "of": "the quantised ensemble (what the page runs)",
        "n": plain["n"],
        "ties": block["ties"],
        "majority_agreement": plain["majority_agreement"],
        "majority_agreement_tta": tta.get("majority_agreement"),
        "mean_vote_share": plain["mean_vote_share"],
        "mean_vote_share_tta": tta.get("mean_vote_share"),
        "rows": rows,  # for scale: FER2013's own labels on the same rows
        "fer2013_labels_majority_agreement": labels["majority_agreement"],
        "fer2013_labels_mean_vote_share": labels["mean_vote_share"],
    }


def _run_prediction_metrics(sources: Sequence[MemberSource], weights: Sequence[float]) -> dict[str, Any] | None:
    """Float ensemble accuracy on PrivateTest from the runs' saved predictions (no quantised numbers)."""
    loaded = []
    for src in sources:
        npz = RunFolder(src.run_dir).predictions("test") if src.run_dir else None
        if npz is None or not npz.is_file():
            return None
        loaded.append(load_predictions(npz))
    y = loaded[0].y
    if any(not np.array_equal(t.y, y) for t in loaded):
        return None
    p = soft_vote([t.probs for t in loaded], weights)
    pt = soft_vote([t.scored(tta=True) for t in loaded], weights)
    return {
        "split": SPLIT_NAMES["test"],
        "n": len(y),
        "accuracy_float": top1_accuracy(p, y),
        "accuracy_float_tta": top1_accuracy(pt, y),
        "source": "float Keras predictions saved by the training runs; quantised accuracy not measured",
    }


# --------------------------------------------------------------------------- export


def _member_run_metrics(src: MemberSource) -> dict[str, Any]:
    keep = {}
    for key, value in src.run_metrics.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if numeric and ("accuracy" in key or "loss" in key or key in ("best_epoch", "epochs_run")):
            keep[key] = value
    return keep


def _swap_in(tmp_dir: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp_dir with renames; the old folder survives any failure."""
    backup = None
    if out_dir.exists():
        backup = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
        backup.rmdir()
        os.rename(out_dir, backup)
    try:
        os.rename(tmp_dir, out_dir)
    except BaseException:
        if backup is not None:
            os.rename(backup, out_dir)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


#: The entry a models folder's own (top) model gets when the first variant is added.
DEFAULT_VARIANT = Variant(
    id="fer2013",
    title="FER2013 labels",
    description="Trained on FER2013's one label per face: the model whose accuracy compares "
    "with published FER2013 results.",
    manifest=MANIFEST_NAME,
    default=True,
)


@dataclass
class ExportPlan:
    """What an export will do, every cheap check made (`plan_export`)."""

    sources: list[MemberSource]
    weights: list[float]
    quantization: str
    out_dir: Path
    variant: Variant | None = None  # export as this variant of out_dir's top manifest

    @property
    def dest(self) -> Path:
        """The folder the models and their manifest go to: out_dir, or out_dir/<variant id>."""
        return self.out_dir / self.variant.id if self.variant else self.out_dir


def plan_variant(out_dir: Path, variant_id: str, title: str | None = None,
                 description: str | None = None) -> Variant:
    """The `variants` entry for exporting into out_dir/<variant_id>/, checked against the top
    manifest (which must exist, be valid and not use that id or folder)."""
    if not VARIANT_ID.fullmatch(variant_id or ""):
        raise FerError(f"--variant {variant_id!r}: use 1-32 of a-z, 0-9, '_' and '-' "
                       "(it names the folder models/<id>/), e.g. --variant ferplus")
    try:
        data = read_manifest_json(out_dir)
    except ManifestError as err:
        raise FerError(f"cannot add variant {variant_id!r}: {err}. Export the default model "
                       f"first (fer-hybrid export RUN --out {out_dir}), then the variant") from err
    # The default model's files must be in place (a variant joins a working folder); the other
    # variants' files are not checked here, so a broken one can be re-exported.
    own = {k: v for k, v in data.items() if k != "variants"}
    problems = validate_manifest(own, out_dir) + validate_manifest(data)
    if problems:
        raise FerError(f"cannot add variant {variant_id!r}: {out_dir / MANIFEST_NAME} is invalid: "
                       + "; ".join(dict.fromkeys(problems)) + "; re-export the default model first")
    top = manifest_from_dict(data)
    default = next((v for v in top.variants if v.default), DEFAULT_VARIANT)
    if variant_id == default.id:
        raise FerError(f"{variant_id!r} is the default model (the top manifest itself); export "
                       "it without --variant, or pick another id")
    members = {PurePosixPath(m.path).parts[0] for m in top.members}
    if variant_id in members:
        raise FerError(f"models/{variant_id}/ holds a member of the default model; pick another "
                       "--variant id")
    old = next((v for v in top.variants if v.id == variant_id), None)
    return Variant(
        id=variant_id,
        title=(title or (old.title if old else "") or variant_id).strip(),
        description=(description if description is not None
                     else (old.description if old else "")).strip(),
        manifest=f"{variant_id}/{MANIFEST_NAME}",
    )


def plan_export(
    members: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    quantization: str = "uint8",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    variant: str | None = None,
    title: str | None = None,
    description: str | None = None,
) -> ExportPlan:
    """Resolve the members and check the options and --out before anything slow runs.

    variant: export as that variant of out_dir's models (`plan_variant`), with its title and
    description (default: the existing entry's, else the id and nothing).
    """
    quantization = check_quantization(quantization)
    sources = resolve_members(members, names)
    # Every shipped member must count: weights > 0 (1 each by default).
    weights = ([1.0] * len(sources) if weights is None
               else check_weights(weights, len(sources), allow_zero=False))
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    if variant is None and (title is not None or description is not None):
        raise FerError("--title and --description describe a variant; add --variant ID")
    entry = plan_variant(out_dir, variant, title, description) if variant is not None else None
    if entry is None and (out_dir / MODEL_CARD).is_file():  # broken FER+ markers: FerError
        read_marked_section(out_dir / MODEL_CARD, CARD_SECTION)  # now, not after converting
    return ExportPlan(sources, weights, quantization, out_dir, entry)


def export_ensemble(
    members: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    quantization: str = "uint8",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    placeholder: bool = False,
    notes: str = "",
    eval_split: EvalData | None = None,
    variant: str | None = None,
    title: str | None = None,
    description: str | None = None,
) -> Path:
    """Export Keras models as a TF.js graph-model ensemble; returns the manifest path.

    members:      run folders (uses best.keras, reads metrics.json/config.json) or .keras files.
    out_dir:      e.g. "models"; gets <member>/model.json + *.bin and manifest.json (atomic swap,
                  see the module docstring for what is kept).
    quantization: "uint8" (default, ~4x smaller), "float16" or "none".
    weights:      soft-voting weight per member (default 1.0 each).
    names:        member folder names (default: run folder name / .keras stem).
    placeholder:  mark the models as placeholders (e.g. barely trained) in the manifest.
    notes:        free text for the manifest (default: a generated description).
    eval_split:   None (no measurement) or `EvalData` (e.g. from load_eval_split("test")).
                  Float and quantised ensemble accuracy (with/without flip TTA) go into
                  manifest["metrics"] and each member's metrics as "<split>_accuracy[_tta]"
                  (quantised) and "<split>_accuracy_float[_tta]".
    variant:      None (the folder's own, default model) or an id: export into out_dir/<id>/
                  and register it in out_dir/manifest.json's variants with `title` and
                  `description` (returns out_dir/<id>/manifest.json).
    Raises FerError for user mistakes (missing run/best.keras, bad weights, unknown quantisation,
    unwritable out_dir).
    """
    plan = plan_export(members, out_dir, quantization=quantization, weights=weights, names=names,
                       variant=variant, title=title, description=description)
    return export_planned(plan, placeholder=placeholder, notes=notes, eval_split=eval_split)


def export_planned(plan: ExportPlan, *, placeholder: bool = False, notes: str = "",
                   eval_split: EvalData | None = None) -> Path:
    """Convert, measure and publish what `plan_export` planned; returns the manifest path."""
    if eval_split is not None and not isinstance(eval_split, EvalData):  # fail before converting
        raise TypeError("eval_split must be an EvalData or None, e.g. load_eval_split('test')")
    sources, weights, quantization, out_dir = (plan.sources, plan.weights, plan.quantization,
                                               plan.out_dir)
    label = f"{out_dir.name}.{plan.variant.id}" if plan.variant else out_dir.name
    tmp_dir = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{label}.export-"))
    try:
        models = _load_members(sources)
        entries = _convert_members(sources, models, weights, quantization, tmp_dir)
        metrics = _measure(entries, models, sources, weights, eval_split, tmp_dir)
        input_shape = tuple(models[0].input_shape[1:])
        variants = [] if plan.variant else _carry_variants(out_dir, tmp_dir)
        _write_manifest(tmp_dir, entries, input_shape, metrics, quantization=quantization,
                        placeholder=placeholder, notes=notes, variants=variants)
        if plan.variant:  # the model card is the default model's: a variant's numbers are
            # in its own manifest.json
            _check_fits_top(tmp_dir, out_dir, plan.variant)
            os.chmod(tmp_dir, 0o755)  # mkdtemp makes it 0700; the server must read it
            _swap_in(tmp_dir, plan.dest)
        else:
            _publish(tmp_dir, out_dir, card_section=card_ferplus_section(
                metrics, entries, eval_split.votes_note if eval_split is not None else ""),
                measured="majority_agreement" in metrics.get("ferplus", {}))
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)  # the old out_dir was never touched
        raise
    if plan.variant:
        register_variant(out_dir, plan.variant)
    return plan.dest / MANIFEST_NAME


def _load_members(sources: Sequence[MemberSource]) -> list[Any]:
    """Each member's Keras model, checked to fit one ensemble: same input, 7 probabilities out."""
    models: list[Any] = []
    for src in sources:
        # float32 (a bf16 run's model is rebuilt); FerError for a corrupt or incompatible file
        model = load_model(src.keras_path, float32=True)
        shape = tuple(model.input_shape[1:])
        first = tuple(models[0].input_shape[1:]) if models else shape
        if shape != first or len(shape) != 3:
            raise FerError(
                f"{src.name} takes input {shape} but the ensemble uses {first}; "
                "export models with the same input size together"
            )
        out_shape = tuple(model.output_shape[1:])
        if out_shape != (len(LABELS),):
            raise FerError(
                f"{src.name} outputs {out_shape}, expected ({len(LABELS)},) class probabilities"
            )
        models.append(model)
    return models


def _convert_members(
    sources: Sequence[MemberSource],
    models: Sequence[Any],
    weights: Sequence[float],
    quantization: str,
    folder: Path,
) -> list[Member]:
    """Convert each model into folder/<member>/; returns their manifest entries."""
    entries = []
    for src, model, weight in zip(sources, models, weights):
        log.info("converting %s (%s) with quantisation %s", src.name, src.keras_path, quantization)
        info = convert_keras_to_tfjs(model, folder / src.name, quantization)
        log.info("%s: %d bytes in %.1f s", src.name, info["bytes"], info["seconds"])
        entries.append(
            Member(
                name=src.name,
                architecture=src.architecture,
                path=f"{src.name}/model.json",
                weight=weight,
                quantization=quantization,
                bytes=info["bytes"],
                params=info["params"],
                metrics=_member_run_metrics(src),
            )
        )
    return entries


def _measure(
    entries: Sequence[Member],
    models: Sequence[Any],
    sources: Sequence[MemberSource],
    weights: Sequence[float],
    eval_split: EvalData | None,
    folder: Path,
) -> dict[str, Any]:
    """The manifest's metrics; with eval_split also each entry's "<split>_accuracy..." metrics.

    Without eval_split, the runs' saved float predictions are the best available number.
    """
    if eval_split is None:
        return _run_prediction_metrics(sources, weights) or {"split": None}
    ev = eval_split
    log.info("measuring float vs quantised accuracy on %s (%d images)", ev.split_name, len(ev.x))
    quant = [load_tfjs_graph_model(folder / e.name) for e in entries]
    metrics, per_member = compare_float_quantized(
        [keras_predictor(m) for m in models], quant, ev.x, ev.y, weights, split=ev.split_name,
        votes=ev.votes,
    )
    for entry, member_metrics in zip(entries, per_member):
        entry.metrics.update({f"{ev.split_key}_{k}": v for k, v in member_metrics.items()})
    return metrics


def _write_manifest(
    folder: Path,
    entries: list[Member],
    input_shape: tuple[int, ...],
    metrics: dict[str, Any],
    *,
    quantization: str,
    placeholder: bool,
    notes: str,
    variants: Sequence[Variant] = (),
) -> None:
    """folder/manifest.json, validated against the files just written."""
    if not notes:
        notes = (
            f"Soft-voting ensemble of {len(entries)} Keras model(s) "
            f"({', '.join(e.architecture for e in entries)}), exported to TF.js graph models "
            f"with {quantization} weight quantisation by `fer-hybrid export`."
        )
    manifest = Manifest(
        members=entries,
        input=input_spec(*input_shape),
        metrics=metrics,
        placeholder=bool(placeholder),
        notes=notes,
        created=utc_now(),
        variants=list(variants),
    )
    data = manifest.to_dict()
    problems = validate_manifest(data, folder)
    if problems:
        hint = ("; the variants listed in the old manifest must keep fitting the default model "
                "(re-export them too, or remove them from its variants)") if variants else ""
        raise FerError("the exported manifest is invalid: " + "; ".join(problems) + hint)
    write_manifest(data, folder / MANIFEST_NAME)


# --------------------------------------------------------------------------- variants


def _carry_variants(out_dir: Path, tmp_dir: Path) -> list[Variant]:
    """The old top manifest's variants, their folders copied into tmp_dir (re-exporting the
    default keeps the other models). Entries whose manifest is gone are dropped."""
    try:
        old = read_manifest(out_dir, check_files=False)
    except ManifestError:
        return []  # no (valid) old manifest: nothing listed to keep
    kept: list[Variant] = []
    for variant in old.variants:
        if variant.default:
            kept.append(variant)
            continue
        folder = PurePosixPath(variant.manifest).parent
        if not (out_dir / variant.manifest).is_file():
            log.warning("dropping variant %s: %s is missing", variant.id, out_dir / variant.manifest)
            continue
        if (tmp_dir / folder).exists():
            raise FerError(f"a member's folder {folder} would replace variant {variant.id!r}'s "
                           "models; pick other member names (--names)")
        shutil.copytree(out_dir / folder, tmp_dir / folder)
        kept.append(variant)
    return kept if any(not v.default for v in kept) else []


def _check_fits_top(variant_dir: Path, out_dir: Path, variant: Variant) -> None:
    """A variant's manifest must classify the top manifest's labels from the same input."""
    top = read_manifest_json(out_dir)
    mine = read_manifest_json(variant_dir)
    for key in ("labels", "input"):
        if mine.get(key) != top.get(key):
            raise FerError(f"variant {variant.id!r}: its {key} ({mine.get(key)}) differ from "
                           f"{out_dir / MANIFEST_NAME}'s ({top.get(key)}); every variant must "
                           "classify the same labels from the same input")


def register_variant(out_dir: str | os.PathLike, variant: Variant) -> Path:
    """Add `variant` to out_dir/manifest.json's variants (replacing one with its id; the
    default's entry is created when absent) and write it atomically; returns its path."""
    out_dir = Path(out_dir)
    try:
        top = read_manifest(out_dir, check_files=False)
    except ManifestError as err:
        raise FerError(f"cannot register variant {variant.id!r}: {err}") from err
    variants = list(top.variants) or [DEFAULT_VARIANT]
    at = next((i for i, v in enumerate(variants) if v.id == variant.id), None)
    if at is None:
        variants.append(variant)
    else:
        variants[at] = variant
    top.variants = variants
    data = top.to_dict()
    problems = validate_manifest(data, out_dir)
    if problems:
        raise FerError(f"variant {variant.id!r} not registered in {out_dir / MANIFEST_NAME}: "
                       + "; ".join(problems))
    return write_manifest(data, out_dir / MANIFEST_NAME)


def card_ferplus_section(metrics: dict[str, Any], entries: Sequence[Member], votes_note: str) -> str:
    """The model card's FER+ section (between <!-- ferplus:begin/end -->), from the manifest's
    metrics: the shipped ensemble's agreement with the ten-annotator majority, or why not."""
    from training.core.report import markdown_table, pct

    title = "## Agreement with people (FER+ ten-annotator votes)"
    fp = metrics.get("ferplus")
    if not fp or "note" in fp:
        why = (fp or {}).get("note") or votes_note or "no evaluation split (--eval none)"
        return f"{title}\n\nNot measured by the last `fer-hybrid export`: {why}."
    names = ", ".join(f"`{e.name}`" for e in entries)
    left_out = fp["rows"] - fp["n"]
    return "\n".join([
        title,
        "",
        f"Written by `fer-hybrid export` ({metrics['split']}, {fp['rows']:,} images): the shipped "
        f"{entries[0].quantization} ensemble ({names}) against Microsoft's FER+ re-labelling "
        "(`fer2013new.csv`, ten crowd votes per image). Scored on the "
        f"**{fp['n']:,} {metrics['split']} rows** whose most-voted FER+ column is one of our "
        f"seven classes ({left_out} left out: their top vote is contempt, unknown or not a "
        f"face). **Ties:** {fp['ties']}.",
        "",
        markdown_table(["", "no TTA", "flip TTA"], [
            ["majority agreement (predicted class got the most votes)",
             pct(fp["majority_agreement"]), pct(fp["majority_agreement_tta"])],
            ["mean vote share of the predicted class",
             pct(fp["mean_vote_share"]), pct(fp["mean_vote_share_tta"])],
        ]),
        "",
        f"For scale, FER2013's own labels agree with the majority on "
        f"{pct(fp['fer2013_labels_majority_agreement'])} of the same rows (mean vote share "
        f"{pct(fp['fer2013_labels_mean_vote_share'])}). Measured by the `fer-hybrid export` "
        "command under Reproduce, whenever `fer2013new.csv(.gz)` is next to the FER2013 file "
        "(or given with --ferplus); also in `manifest.json` under `metrics.ferplus`.",
    ])


def _publish(tmp_dir: Path, out_dir: Path, card_section: str | None = None,
             measured: bool = False) -> None:
    """Carry the old folder's top-level files (model card, .gitkeep, ...) and its sub-folders
    without a model (reports such as bench/ and robustness/) over, then swap in.

    A carried-over model card (README.md) gets `card_section` as its FER+ section when it was
    `measured`; a card that already has one gets it either way (then saying why there are no
    numbers), so it never shows an old export's numbers beside new models.
    """
    if out_dir.is_dir():
        for old in out_dir.iterdir():
            if (tmp_dir / old.name).exists():  # a new member or a carried variant
                continue
            if old.is_file() and old.name != MANIFEST_NAME:
                shutil.copy2(old, tmp_dir / old.name)
            elif old.is_dir() and not any(old.rglob("model.json")):
                # reports other commands keep beside the models (bench/, robustness/); a folder
                # holding a model.json is a previous member: replaced by this export
                shutil.copytree(old, tmp_dir / old.name)
    card = tmp_dir / MODEL_CARD
    if card_section is not None and card.is_file() and (
            measured or read_marked_section(card, CARD_SECTION) is not None):
        write_marked_section(card, CARD_SECTION, card_section)
    os.chmod(tmp_dir, 0o755)  # mkdtemp makes it 0700; the server must read it
    _swap_in(tmp_dir, out_dir)
