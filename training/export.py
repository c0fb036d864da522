"""Export trained Keras models as a quantised TF.js ensemble with a manifest.

Public API::

    export_ensemble(members, out_dir, *, quantization="uint8", weights=None, names=None,
                    placeholder=False, notes="", eval_split=None, data_options=None) -> Path

Pipeline per member: ``best.keras`` (or a ``.keras`` file) -> ``model.export()``
(TF SavedModel) -> tensorflowjs' ``convert_tf_saved_model`` (the same code the
``tensorflowjs_converter --input_format=tf_saved_model --output_format=tfjs_graph_model``
CLI runs; called in-process because each CLI start costs ~7 s of imports) ->
``<out_dir>/<member>/model.json + group1-shard*.bin``. Two fixes make every zoo model run in
the page: recurrent layers are unrolled before export (a rolled LSTM becomes a v1 while-loop
that `model.predict` refuses), and fused nodes whose "bias" is not a constant (LSTM
``MatMul + MatMul``, residual adds) are split back, since tfjs rejects them. Identical weight
tensors (an unrolled LSTM's per-step kernel copies) are stored once.

Measured accuracy of what ships: with `eval_split`, the float Keras ensemble and
the *quantised* TF.js graph-model ensemble are both scored on that split, with
and without flip TTA. The quantised graphs are run in Python, not in a browser:
tensorflowjs 4.22 has no tfjs_graph_model -> SavedModel converter, but the
model.json topology *is* a TF GraphDef (the weight nodes are kept as value-less
Const nodes), so `load_tfjs_graph_model` parses it, fills the constants with
`tensorflowjs.read_weights` (which dequantises uint8/float16 exactly the way
tfjs does: ``min + scale * q`` / half->float) and runs it with TF. That is fast
enough for the full 3.6k-image PrivateTest on a CPU and needs no browser;
tests/test_export_browser.py checks separately, in headless Chromium with the
vendored tfjs-wasm, that the browser computes the same numbers.

Output folder (atomic): everything is built in a temporary sibling folder
``.<out_dir name>.export-*`` and swapped in with two renames at the end, so a
crash or a conversion error leaves the previous ``models/`` untouched. The new
folder holds the exported members and the manifest; top-level *files* of the
old folder other than ``manifest.json`` (e.g. the ``README.md`` model card,
``.gitkeep``) are carried over; old sub-folders (previous members) are dropped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.errors import FerError
from training.evaluate import resolve_target
from training.labels import LABELS
from training.manifest import (
    MANIFEST_NAME,
    QUANTIZATIONS,
    SPLIT_NAMES,
    Manifest,
    Member,
    default_input_spec,
    member_bytes,
    utc_now_iso,
    validate_manifest,
    write_manifest,
)
from training.serialization import register_custom_objects

log = logging.getLogger("training.export")

Predictor = Callable[[np.ndarray], np.ndarray]
"""float32 NHWC 0..255 batch -> (N, 7) probabilities."""


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
        config: dict[str, Any] = {}
        if run_dir is not None:
            for fname, into in (("metrics.json", metrics), ("config.json", config)):
                try:
                    into.update(json.loads((run_dir / fname).read_text()))
                except FileNotFoundError:
                    pass
                except (OSError, ValueError) as err:
                    log.warning("ignoring unreadable %s: %s", run_dir / fname, err)
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
        arch = str(metrics.get("model") or config.get("model") or config.get("model_name") or name)
        out.append(MemberSource(name, keras_path, run_dir, arch, metrics))
    return out


def parse_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise FerError(f"got {len(weights)} weights for {count} models; give exactly one weight per model")
    if any(not math.isfinite(w) or w <= 0 for w in weights):
        raise FerError("weights must be positive numbers, e.g. --weights 1,1,0.5")
    return weights


def check_quantization(quantization: str) -> str:
    q = (quantization or "").lower()
    if q == "float32":
        q = "none"
    if q not in QUANTIZATIONS:
        raise FerError(f"unknown quantisation {quantization!r}; use one of {', '.join(QUANTIZATIONS)}")
    return q


def check_writable(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FerError(f"{out_dir} exists and is not a folder; pick another --out")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FerError(f"cannot create {parent}: {err.strerror}; pick a writable --out") from err
    if not os.access(parent, os.W_OK | os.X_OK) or (out_dir.exists() and not os.access(out_dir, os.W_OK)):
        raise FerError(f"{out_dir} is not writable; fix its permissions or pick another --out")


# --------------------------------------------------------------------------- conversion


def import_tensorflowjs():
    """tensorflowjs, imported without needing IPython.

    tensorflowjs imports tensorflow_decision_forests, which greets "notebooks" (any process
    whose stdout is not fd 1/2: pytest's capture, a GUI) by importing IPython, a package nothing
    else needs. Its documented switch turns the greeting off; it is set here, right before the
    import, because an environment restored by a caller in between would undo an earlier one.
    """
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    import tensorflowjs
    import tensorflowjs.converters.tf_saved_model_conversion_v2

    return tensorflowjs


def convert_keras_to_tfjs(model: Any, out_dir: str | os.PathLike, quantization: str = "uint8") -> dict[str, Any]:
    """Convert one Keras model (object or .keras path) to a TF.js graph model in `out_dir`.

    Returns {"bytes", "seconds", "params"}. `out_dir` must not exist yet or be empty.
    """
    import keras

    tfjs_conv = import_tensorflowjs().converters.tf_saved_model_conversion_v2

    quantization = check_quantization(quantization)
    if not isinstance(model, keras.Model):
        register_custom_objects()  # our own layers must be known before the load
        model = keras.models.load_model(model, compile=False)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fer-savedmodel-") as tmp:
        saved = Path(tmp) / "saved_model"
        _unrolled(model).export(str(saved), format="tf_saved_model", verbose=False)
        dtype_map = None if quantization == "none" else {quantization: ["*"]}
        tfjs_conv.convert_tf_saved_model(
            str(saved),
            str(out_dir),
            quantization_dtype_map=dtype_map,
            skip_op_check=False,
            metadata=None,
        )
    model_json = out_dir / "model.json"
    if not model_json.is_file():
        raise FerError(f"the TF.js converter wrote no model.json into {out_dir}; check the log above")
    _make_browser_safe(model_json)
    seconds = time.perf_counter() - start
    return {"bytes": member_bytes(model_json), "seconds": seconds, "params": int(model.count_params())}


def _unrolled(model):
    """A copy of `model` with recurrent layers unrolled (same weights), else `model` itself.

    A rolled LSTM becomes a v1 while-loop (Enter/Exit/Merge) that the page's synchronous
    `model.predict` refuses to run; the sequences here are short (cnn_lstm: 36 steps), so
    unrolling gives a static graph that runs everywhere.
    """
    import keras

    def rolled(layer) -> bool:
        return isinstance(layer, keras.layers.RNN) and not layer.get_config().get("unroll", False)

    if not any(rolled(layer) for layer in model._flatten_layers(include_self=False)):
        return model

    def clone(layer):
        config = layer.get_config()
        if rolled(layer):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except Exception as err:  # subclassed models etc.: export as is
        log.warning("could not unroll the recurrent layers of %s (%s); exporting as is", model.name, err)
        return model
    return copy


DYNAMIC_OPS = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond", "While", "StatelessWhile",
               "If", "StatelessIf"}


def _make_browser_safe(model_json: Path) -> None:
    """Split the fused nodes tfjs cannot run (non-constant bias) in an exported model.json."""
    import tensorflow as tf
    from google.protobuf import json_format

    doc = json.loads(model_json.read_text())
    graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef())
    dynamic = sorted({n.op for n in graph_def.node if n.op in DYNAMIC_OPS})
    if dynamic:
        log.warning("%s uses control flow (%s): the page must call executeAsync", model_json, ", ".join(dynamic))
    lowered = _lower_tfjs_ops(graph_def, only_unsafe=True)
    changed = len(lowered.node) != len(graph_def.node)
    if changed:
        doc["modelTopology"] = json_format.MessageToDict(lowered)
    changed = _dedupe_weights(doc, model_json.parent) or changed
    if changed:
        tmp = model_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, model_json)


_DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2}
SHARD_BYTES = 4 * 1024 * 1024


def _dedupe_weights(doc: dict, folder: Path) -> bool:
    """Store identical weight tensors once (rewrites doc and the shard files; True if changed).

    Freezing an unrolled LSTM turns every time step's read of the same kernel into its own
    constant (cnn_lstm: 72 copies of 128x512), which would multiply the download ~10x.
    """
    entries = []  # (weight spec, raw bytes)
    for group in doc["weightsManifest"]:
        data = b"".join((folder / rel).read_bytes() for rel in group["paths"])
        offset = 0
        for spec in group["weights"]:
            q = spec.get("quantization")
            dtype = q["dtype"] if q else spec["dtype"]
            if dtype not in _DTYPE_BYTES:
                return False  # strings etc.: leave the model alone
            size = int(np.prod(spec["shape"], dtype=np.int64)) * _DTYPE_BYTES[dtype]
            entries.append((spec, data[offset : offset + size]))
            offset += size
    canonical: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    unique = []
    for spec, raw in entries:
        key = (json.dumps({k: v for k, v in spec.items() if k != "name"}, sort_keys=True), raw)
        if key in canonical:
            rename[spec["name"]] = canonical[key]
        else:
            canonical[key] = spec["name"]
            unique.append((spec, raw))
    if not rename:
        return False

    def renamed(ref: str) -> str:
        prefix = "^" if ref.startswith("^") else ""
        name, sep, port = ref[len(prefix):].partition(":")
        return prefix + rename.get(name, name) + sep + port

    topology = doc["modelTopology"]
    topology["node"] = [n for n in topology["node"] if n["name"] not in rename]
    for node in topology["node"]:
        if "input" in node:
            node["input"] = [renamed(i) for i in node["input"]]
    for fn in topology.get("library", {}).get("function", []):
        for node in fn.get("nodeDef", []):
            if "input" in node:
                node["input"] = [renamed(i) for i in node["input"]]
    for group in doc["weightsManifest"]:
        for rel in group["paths"]:
            (folder / rel).unlink()
    blob = b"".join(raw for _, raw in unique)
    chunks = [blob[i : i + SHARD_BYTES] for i in range(0, len(blob), SHARD_BYTES)] or [b""]
    paths = [f"group1-shard{i + 1}of{len(chunks)}.bin" for i in range(len(chunks))]
    for rel, chunk in zip(paths, chunks):
        (folder / rel).write_bytes(chunk)
    doc["weightsManifest"] = [{"paths": paths, "weights": [spec for spec, _ in unique]}]
    log.info("stored %d duplicated weight tensors once", len(rename))
    return True


def load_tfjs_graph_model(model_dir: str | os.PathLike, *, batch_size: int = 256) -> Predictor:
    """Run an exported (possibly quantised) TF.js graph model with TensorFlow in Python.

    Weights are read back dequantised with `tensorflowjs.read_weights`, i.e. the
    numbers the browser sees. Returns a function float32 NHWC -> probabilities.
    """
    import tensorflow as tf
    from google.protobuf import json_format
    read_weights = import_tensorflowjs().read_weights

    model_dir = Path(model_dir)
    doc = json.loads((model_dir / "model.json").read_text())
    graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef())
    values = {
        w["name"]: w["data"]
        for w in read_weights.read_weights(doc["weightsManifest"], str(model_dir), flatten=True)
    }
    for node in graph_def.node:
        if node.name in values:
            arr = np.asarray(values.pop(node.name))
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr))
            node.attr["dtype"].type = tf.as_dtype(arr.dtype).as_datatype_enum
    if values:
        raise FerError(f"{model_dir}/model.json lists weights missing from its graph; re-export it")
    graph_def = _lower_tfjs_ops(graph_def)
    sig = doc["signature"]
    (inp,) = [v["name"] for v in sig["inputs"].values()]
    (out,) = [v["name"] for v in sig["outputs"].values()]
    # A plain v1 Graph + Session rather than tf.function: recurrent members (cnn_lstm) come
    # out of the converter with v1 control flow (Enter/Exit/Merge), which only runs there.
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)
    inp_t, out_t = graph.get_tensor_by_name(inp), graph.get_tensor_by_name(out)

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype="float32")
        if x.ndim == 3:
            x = x[..., None]
        parts = [session.run(out_t, {inp_t: x[i : i + batch_size]}) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype("float32") if parts else np.zeros((0, len(LABELS)), "float32")

    return predict


_FUSED_BASE = {"FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedConv2D": "Conv2D",
               "_FusedMatMul": "MatMul"}
_FUSED_ONLY_ATTRS = {"fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs", "num_host_args",
                     "filter_format"}
_UNARY = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh"}


def _lower_tfjs_ops(graph_def, *, only_unsafe: bool = False):
    """Rewrite the converter's TF.js-only ops into plain TensorFlow ops.

    The converter fuses Conv2D/DepthwiseConv2dNative/MatMul with bias + activation
    (``FusedDepthwiseConv2dNative`` exists only in tfjs; TF's ``_FusedConv2D`` lacks
    ``Prelu``) and turns Keras PReLU into a tfjs ``Prelu`` op. Each such node becomes
    the base op, the add and the activation, the last one keeping the original name.

    With `only_unsafe`, only fused nodes whose "bias" is not a constant are split (and
    Prelu is kept): grappler also fuses ``MatMul + MatMul`` (LSTM cells) and residual
    adds, which tfjs rejects ("_FusedMatMul only supports rank-1 bias"); this variant is
    applied to the exported model.json so the browser can run it.
    """
    consts = {n.name for n in graph_def.node if n.op == "Const"}

    def unsafe(node) -> bool:
        ops = [o.decode() if isinstance(o, bytes) else o for o in node.attr["fused_ops"].list.s]
        data = [i for i in node.input if not i.startswith("^")]
        if "BiasAdd" not in ops or len(data) < 3:
            return False
        return data[2].split(":")[0] not in consts

    import tensorflow as tf

    NodeDef, AttrValue = tf.compat.v1.NodeDef, tf.compat.v1.AttrValue
    float_attr = AttrValue(type=tf.float32.as_datatype_enum)
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)

    def add(name, op, inputs, attrs=None):
        node = NodeDef(name=name, op=op, input=list(inputs))
        node.attr["T"].CopyFrom(float_attr)
        for key, value in (attrs or {}).items():
            node.attr[key].CopyFrom(value)
        out.node.append(node)
        return name

    def prelu(name, x, alpha):
        pos = add(f"{name}/_pos", "Relu", [x])
        neg = add(f"{name}/_negrelu", "Relu", [add(f"{name}/_neg", "Neg", [x])])
        return add(name, "Sub", [pos, add(f"{name}/_scaled", "Mul", [alpha, neg])])

    for node in graph_def.node:
        if node.op == "Prelu" and not only_unsafe:
            prelu(node.name, node.input[0], node.input[1])
            continue
        if node.op not in _FUSED_BASE or (only_unsafe and not unsafe(node)):
            out.node.append(node)
            continue
        data = [i for i in node.input if not i.startswith("^")]
        control = [i for i in node.input if i.startswith("^")]
        ops = [o.decode() if isinstance(o, bytes) else o for o in node.attr["fused_ops"].list.s]
        ops = [o for o in ops if o != "NoOp"]
        base_attrs = {k: v for k, v in node.attr.items() if k not in _FUSED_ONLY_ATTRS and k != "T"}
        prev = add(node.name if not ops else f"{node.name}/_base", _FUSED_BASE[node.op],
                   data[:2] + control, base_attrs)
        args = iter(data[2:])
        for i, op in enumerate(ops):
            name = node.name if i == len(ops) - 1 else f"{node.name}/_{op.lower()}"
            if op == "BiasAdd":
                # tfjs also folds residual adds (a full tensor, not a bias) into this slot,
                # and adds it with broadcasting: AddV2 covers both.
                prev = add(name, "AddV2", [prev, next(args)])
            elif op in _UNARY:
                prev = add(name, op, [prev])
            elif op == "LeakyRelu":
                prev = add(name, "LeakyRelu", [prev], {"alpha": AttrValue(f=node.attr["leakyrelu_alpha"].f)})
            elif op == "Prelu":
                prev = prelu(name, prev, next(args))
            else:
                raise FerError(f"cannot run the TF.js op {node.op} with {op} in Python; use --eval none")
    return out


def keras_predictor(model: Any, *, batch_size: int = 256) -> Predictor:
    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, "float32"), batch_size=batch_size, verbose=0), "float32")

    return predict


# --------------------------------------------------------------------------- evaluation


def soft_vote(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Weighted mean of member probabilities (the page does the same)."""
    w = np.asarray(weights, dtype="float64")
    stacked = np.stack([np.asarray(p, "float64") for p in probs])
    return (np.tensordot(w, stacked, axes=1) / w.sum()).astype("float32")


def ensemble_accuracy(
    predictors: Sequence[Predictor], x: np.ndarray, y: np.ndarray, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Score an ensemble of predictors on uint8 images `x` (N,H,W) and labels `y`.

    Returns {"accuracy", "accuracy_tta", "members": [{"accuracy", "accuracy_tta"}...],
    "probs", "probs_tta"} where the TTA variant averages plain and mirrored inputs.
    """
    from training.predict import to_model_input, tta_average

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
            {"accuracy": float((p.argmax(1) == y).mean()), "accuracy_tta": float((pt.argmax(1) == y).mean())}
        )
    probs, probs_tta = soft_vote(plain, weights), soft_vote(tta, weights)
    return {
        "accuracy": float((probs.argmax(1) == y).mean()),
        "accuracy_tta": float((probs_tta.argmax(1) == y).mean()),
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
    split: str = "PrivateTest",
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Float vs quantised ensemble on the same arrays -> (manifest metrics, per-member metrics).

    Per-member keys: ``accuracy_float[_tta]`` (Keras) and ``accuracy[_tta]`` (the
    exported, quantised graph: what the page runs). The caller prefixes them with the split.
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


def load_eval_split(split: str, data_options: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of split "test" (PrivateTest) or "val" (PublicTest) via training.data.load_splits."""
    if split not in SPLIT_NAMES:
        raise FerError(f"unknown evaluation split {split!r}; use test, val or none")
    try:
        from training.data import load_splits
    except ImportError as err:
        raise FerError(f"the dataset loader is not available ({err}); export with --eval none") from err
    import inspect

    options = {k: v for k, v in (data_options or {}).items() if v is not None}
    params = inspect.signature(load_splits).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    splits = load_splits(**options)
    ds = splits[split]
    return np.asarray(ds.x), np.asarray(ds.y)


def _run_prediction_metrics(sources: Sequence[MemberSource], weights: Sequence[float]) -> dict[str, Any] | None:
    """Float ensemble accuracy on PrivateTest from the runs' saved predictions (no quantised numbers)."""
    loaded = []
    for src in sources:
        npz = src.run_dir / "predictions" / "test.npz" if src.run_dir else None
        if npz is None or not npz.is_file():
            return None
        with np.load(npz) as d:
            loaded.append((d["probs"], d["probs_flip"], d["y"]))
    y = loaded[0][2]
    if any(len(t[2]) != len(y) or not np.array_equal(t[2], y) for t in loaded):
        return None
    p = soft_vote([t[0] for t in loaded], weights)
    pt = soft_vote([(t[0] + t[1]) / 2 for t in loaded], weights)
    return {
        "split": SPLIT_NAMES["test"],
        "n": len(y),
        "accuracy_float": float((p.argmax(1) == y).mean()),
        "accuracy_float_tta": float((pt.argmax(1) == y).mean()),
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


def export_ensemble(
    members: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    quantization: str = "uint8",
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
    placeholder: bool = False,
    notes: str = "",
    eval_split: str | tuple | None = None,
    data_options: dict[str, Any] | None = None,
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
    eval_split:   None (no measurement), "test" (PrivateTest) or "val" (PublicTest) loaded with
                  training.data.load_splits(**data_options); or arrays: (x uint8 (N,48,48), y)
                  (recorded as split "sample") or ("test"|"val", x, y) when already loaded.
                  Float and quantised ensemble accuracy (with/without flip TTA) go into
                  manifest["metrics"] and each member's metrics as "<split>_accuracy[_tta]"
                  (quantised) and "<split>_accuracy_float[_tta]".
    Raises FerError for user mistakes (missing run/best.keras, bad weights, unknown quantisation,
    unwritable out_dir).
    """
    quantization = check_quantization(quantization)
    sources = resolve_members(members, names)
    weights = parse_weights(weights, len(sources))
    out_dir = Path(out_dir)
    check_writable(out_dir)

    # Resolve the evaluation data before the slow conversion, so a missing dataset fails fast.
    eval_x = eval_y = None
    split_key = split_name = None
    if eval_split is not None:
        if isinstance(eval_split, str):
            if eval_split == "none":
                eval_split = None
            else:
                eval_x, eval_y = load_eval_split(eval_split, data_options)
                split_key, split_name = eval_split, SPLIT_NAMES[eval_split]
        elif len(eval_split) == 3:  # (split key, x, y): arrays already loaded for that split
            key, eval_x, eval_y = eval_split
            if key not in SPLIT_NAMES:
                raise FerError(f"unknown evaluation split {key!r}; use test or val")
            eval_x, eval_y = np.asarray(eval_x), np.asarray(eval_y)
            split_key, split_name = key, SPLIT_NAMES[key]
        else:  # (x, y): an arbitrary labelled sample
            eval_x, eval_y = (np.asarray(a) for a in eval_split)
            split_key, split_name = "sample", "sample"
        if eval_x is not None and (len(eval_x) == 0 or len(eval_x) != len(eval_y)):
            raise FerError("the evaluation split is empty or x/y lengths differ; check the dataset")

    import keras

    register_custom_objects()  # our own layers must be known before a member loads
    tmp_dir = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.export-"))
    try:
        entries: list[Member] = []
        keras_models = []
        input_shape = None
        for src, weight in zip(sources, weights):
            log.info("converting %s (%s) with quantisation %s", src.name, src.keras_path, quantization)
            try:
                model = keras.models.load_model(src.keras_path, compile=False)
            except Exception as err:  # corrupt / incompatible file: user-fixable
                raise FerError(f"cannot load {src.keras_path}: {err}; re-train or pass another model") from err
            shape = tuple(model.input_shape[1:])
            if input_shape is None:
                input_shape = shape
            if shape != input_shape or len(shape) != 3:
                raise FerError(
                    f"{src.name} takes input {shape} but the ensemble uses {input_shape}; "
                    "export models with the same input size together"
                )
            out_shape = tuple(model.output_shape[1:])
            if out_shape != (len(LABELS),):
                raise FerError(f"{src.name} outputs {out_shape}, expected ({len(LABELS)},) class probabilities")
            info = convert_keras_to_tfjs(model, tmp_dir / src.name, quantization)
            log.info("%s: %d bytes in %.1f s", src.name, info["bytes"], info["seconds"])
            keras_models.append(model)
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

        if eval_x is not None:
            log.info("measuring float vs quantised accuracy on %s (%d images)", split_name, len(eval_x))
            quant = [load_tfjs_graph_model(tmp_dir / e.name) for e in entries]
            metrics, per_member = compare_float_quantized(
                [keras_predictor(m) for m in keras_models], quant, eval_x, eval_y, weights, split=split_name
            )
            for entry, member_metrics in zip(entries, per_member):
                entry.metrics.update({f"{split_key}_{k}": v for k, v in member_metrics.items()})
        else:
            metrics = _run_prediction_metrics(sources, weights) or {"split": None}

        h, w, c = input_shape
        if not notes:
            notes = (
                f"Soft-voting ensemble of {len(entries)} Keras model(s) "
                f"({', '.join(e.architecture for e in entries)}), exported to TF.js graph models "
                f"with {quantization} weight quantisation by `fer-hybrid export`."
            )
        manifest = Manifest(
            members=entries,
            input=default_input_spec(h, w, c),
            metrics=metrics,
            placeholder=bool(placeholder),
            notes=notes,
            created=utc_now_iso(),
        )
        data = manifest.to_dict()
        problems = validate_manifest(data, tmp_dir)
        if problems:
            raise FerError("the exported manifest is invalid: " + "; ".join(problems))
        write_manifest(data, tmp_dir / MANIFEST_NAME)

        # Carry over the old folder's top-level files (model card, .gitkeep, ...).
        if out_dir.is_dir():
            for old in out_dir.iterdir():
                if old.is_file() and old.name != MANIFEST_NAME and not (tmp_dir / old.name).exists():
                    shutil.copy2(old, tmp_dir / old.name)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it 0700; the server must read it
        _swap_in(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir / MANIFEST_NAME
