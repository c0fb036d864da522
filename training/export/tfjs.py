"""Keras model -> TF.js graph model, and that model.json run back in Python.

Everything that knows the TF.js graph-model format lives here; training.export.export only
orchestrates.

Conversion: ``.keras`` (or a model object) -> ``model.export()`` (TF SavedModel) ->
tensorflowjs' ``convert_tf_saved_model`` (the same code the
``tensorflowjs_converter --input_format=tf_saved_model --output_format=tfjs_graph_model``
CLI runs; called in-process because each CLI start costs ~7 s of imports) ->
``<out_dir>/model.json + group1-shard*.bin``. Two fixes make every zoo model run in the page:
recurrent layers are unrolled before export (a rolled LSTM becomes a v1 while-loop that
`model.predict` refuses), and fused nodes whose "bias" is not a constant (LSTM
``MatMul + MatMul``, residual adds) are split back, since tfjs rejects them. Identical weight
tensors (an unrolled LSTM's per-step kernel copies) are stored once.

Running it in Python (`load_tfjs_graph_model`), so export can measure what ships:
tensorflowjs 4.22 has no tfjs_graph_model -> SavedModel converter, but the model.json topology
*is* a TF GraphDef (the weight nodes are kept as value-less Const nodes), so it is parsed, the
constants are filled with `tensorflowjs.read_weights` (which dequantises uint8/float16 exactly
the way tfjs does: ``min + scale * q`` / half->float), the TF.js-only ops are lowered to plain
TF ops and the graph is run with TF. That is fast enough for the full 3.6k-image PrivateTest on
a CPU and needs no browser; tests/test_export_browser.py checks separately, in headless
Chromium with the vendored tfjs-wasm, that the browser computes the same numbers.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from contract import LABELS
from contract.files import atomic_write
from contract.manifest import QUANTIZATIONS, member_bytes
from training.core.errors import FerError
from training.models.serialization import as_float32, load_model

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]
"""float32 NHWC 0..255 batch -> (N, 7) probabilities."""


# --------------------------------------------------------------------------- conversion


def check_quantization(quantization: str) -> str:
    """The converter's weight quantisation for a user's choice ("float32" means "none")."""
    q = (quantization or "").lower()
    if q == "float32":
        q = "none"
    if q not in QUANTIZATIONS:
        raise FerError(
            f"unknown quantisation {quantization!r}; use one of {', '.join(QUANTIZATIONS)}"
        )
    return q


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


def convert_keras_to_tfjs(
    model: Any, out_dir: str | os.PathLike, quantization: str = "uint8"
) -> dict[str, Any]:
    """Convert one Keras model (object or .keras path) to a TF.js graph model in `out_dir`.

    Returns {"bytes", "seconds", "params"}. `out_dir` must not exist yet or be empty.
    """
    import keras

    tfjs_conv = import_tensorflowjs().converters.tf_saved_model_conversion_v2

    quantization = check_quantization(quantization)
    # float32: the TF.js weight writer rejects bfloat16 (a --precision bf16 run's model)
    if isinstance(model, keras.Model):
        model = as_float32(model)
    else:
        model = load_model(model, float32=True)
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
        raise FerError(
            f"the TF.js converter wrote no model.json into {out_dir}; check the log above"
        )
    _make_browser_safe(model_json)
    seconds = time.perf_counter() - start
    params = int(model.count_params())
    return {"bytes": member_bytes(model_json), "seconds": seconds, "params": params}


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
        log.warning(
            "could not unroll the recurrent layers of %s (%s); exporting as is", model.name, err
        )
        return model
    return copy


DYNAMIC_OPS = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond", "While",
               "StatelessWhile", "If", "StatelessIf"}


def _make_browser_safe(model_json: Path) -> None:
    """Split the fused nodes tfjs cannot run (non-constant bias) in an exported model.json."""
    import tensorflow as tf
    from google.protobuf import json_format

    doc = json.loads(model_json.read_text())
    graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef())
    dynamic = sorted({n.op for n in graph_def.node if n.op in DYNAMIC_OPS})
    if dynamic:
        log.warning("%s uses control flow (%s): the page must call executeAsync",
                    model_json, ", ".join(dynamic))
    lowered = _lower_tfjs_ops(graph_def, only_unsafe=True)
    changed = len(lowered.node) != len(graph_def.node)
    if changed:
        doc["modelTopology"] = json_format.MessageToDict(lowered)
    changed = _dedupe_weights(doc, model_json.parent) or changed
    if changed:
        atomic_write(model_json, json.dumps(doc))


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


# --------------------------------------------------------------------------- running in Python


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
        parts = [session.run(out_t, {inp_t: x[i : i + batch_size]})
                 for i in range(0, len(x), batch_size)]
        if not parts:
            return np.zeros((0, len(LABELS)), "float32")
        return np.concatenate(parts).astype("float32")

    return predict


# --------------------------------------------------------------------------- TF.js-only ops
# Shared: export splits the unsafe fused nodes for the browser; running in TF lowers them all.

_FUSED_BASE = {"FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedConv2D": "Conv2D",
               "_FusedMatMul": "MatMul"}
_FUSED_ONLY_ATTRS = {"fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs",
                     "num_host_args", "filter_format"}
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
                alpha = AttrValue(f=node.attr["leakyrelu_alpha"].f)
                prev = add(name, "LeakyRelu", [prev], {"alpha": alpha})
            elif op == "Prelu":
                prev = prelu(name, prev, next(args))
            else:
                raise FerError(
                    f"cannot run the TF.js op {node.op} with {op} in Python; use --eval none"
                )
    return out
