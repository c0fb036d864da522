"""Structured channel pruning: start a narrower network from a wider trained one.

`prune_into(source, target)` copies a trained functional model into a freshly built model of
the same architecture at a smaller width (e.g. `sepnet --width 0.75` from `sepnet`), keeping
in every layer the channels that matter most. Fine-tuning the result converges in a fraction
of the epochs a narrow network needs from random weights, which is what a 2-core CPU can
afford when a model must get faster without losing its accuracy.

Importance follows "network slimming" (Liu et al. 2017): a channel's BatchNorm scale |gamma|
says how much of it reaches the next layer. Channels tied by a residual `Add` (the shortcut's
and the main path's) form one group and are kept or dropped together, ranked by the sum of
their BatchNorms' |gamma|; a group with no BatchNorm is ranked by its kernels' L1 norm.

Supported layers: Conv2D, SeparableConv2D, DepthwiseConv2D, Dense, BatchNormalization, Add
and anything that keeps the channel count (activations, pooling, dropout, rescaling,
reshaping of the spatial axes only). Anything else is refused rather than half-copied.
"""

from __future__ import annotations

import numpy as np

from training.core.errors import FerError

# Layers whose output channels are their input channels, one for one.
_PASS_THROUGH = {"ReLU", "Activation", "MaxPooling2D", "AveragePooling2D",
                 "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D",
                 "Rescaling", "Identity", "ZeroPadding2D", "Cropping2D",
                 "DepthwiseConv2D", "BatchNormalization", "LeakyReLU", "ELU", "ReLU6"}
_CONV = {"Conv2D", "SeparableConv2D", "Dense"}


class _Groups:
    """Union-find over channel groups: tensors whose channels must be pruned alike."""

    def __init__(self):
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        self.parent[b] = a
        return a


def _inputs(layer) -> list:
    x = layer.input
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _channel_groups(model) -> tuple[dict, dict, _Groups]:
    """For every layer: the group of its input channels and of its output channels."""
    groups = _Groups()
    of_tensor: dict[int, int] = {}
    in_group, out_group = {}, {}
    for tensor in model.inputs:
        of_tensor[id(tensor)] = groups.new()
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        ins = [of_tensor[id(t)] for t in _inputs(layer)]
        if kind == "Add":
            g = ins[0]
            for other in ins[1:]:
                g = groups.union(g, other)
        elif kind in _CONV:
            g = groups.new()
        elif kind in _PASS_THROUGH:
            g = ins[0]
        else:
            raise FerError(f"pruning: layer {layer.name} ({kind}) is not supported; "
                           f"only convolutions, dense, batch norm, add and channel-preserving "
                           f"layers are")
        in_group[layer.name], out_group[layer.name] = ins[0], g
        of_tensor[id(layer.output)] = g
    return in_group, out_group, groups


def _width(layer, which: str) -> int:
    shape = _inputs(layer)[0].shape if which == "in" else layer.output.shape
    return int(shape[-1])


def _keep(source, target) -> tuple[list, dict]:
    """Pair the layers and choose the kept channel indices of every group (sorted)."""
    src_layers = [layer for layer in source.layers if type(layer).__name__ != "InputLayer"]
    dst_layers = [layer for layer in target.layers if type(layer).__name__ != "InputLayer"]
    if [type(x).__name__ for x in src_layers] != [type(x).__name__ for x in dst_layers]:
        raise FerError(f"pruning: {source.name} and {target.name} are not the same architecture "
                       f"(their layers differ)")
    in_group, out_group, groups = _channel_groups(source)
    sizes: dict[int, int] = {}  # group -> channels in the target
    full: dict[int, int] = {}  # group -> channels in the source
    score: dict[int, np.ndarray] = {}
    for src, dst in zip(src_layers, dst_layers):
        for which, table in (("in", in_group), ("out", out_group)):
            g = groups.find(table[src.name])
            want, full[g] = _width(dst, which), _width(src, which)
            if want > full[g]:
                raise FerError(f"pruning: {dst.name} is wider than {src.name} "
                               f"({want} > {full[g]} channels); the target must be "
                               f"narrower (a smaller --width)")
            if sizes.setdefault(g, want) != want:
                raise FerError(f"pruning: channels tied by a residual add get different widths "
                               f"in {target.name} ({sizes[g]} vs {want})")
        if type(src).__name__ == "BatchNormalization":
            g = groups.find(out_group[src.name])
            score[g] = score.get(g, 0) + np.abs(np.asarray(src.gamma))
    for src in src_layers:  # groups with no BatchNorm: the L1 norm of the kernels producing them
        g = groups.find(out_group[src.name])
        if type(src).__name__ in _CONV and g not in score:
            kernel = np.asarray(src.weights[-2 if src.use_bias else -1])
            score[g] = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
    keep = {}
    for g, n in sizes.items():
        if n == full[g]:
            keep[g] = np.arange(n)
        elif g in score:
            keep[g] = np.sort(np.argsort(-score[g], kind="stable")[:n])
        else:  # e.g. the input image or the class scores: never narrowed
            raise FerError(f"pruning: cannot narrow a group of {full[g]} channels to {n} "
                           f"(it has no weights to rank them by)")
    pairs = [(s, d, groups.find(in_group[s.name]), groups.find(out_group[s.name]))
             for s, d in zip(src_layers, dst_layers)]
    return pairs, keep


def _slice(kind: str, name: str, value: np.ndarray, keep_in, keep_out) -> np.ndarray:
    """One weight array of a layer, cut to the kept input/output channels."""
    if kind == "BatchNormalization" or value.ndim == 1:  # gamma/beta/mean/var or a bias
        return value[keep_out]
    if kind == "DepthwiseConv2D" or "depthwise" in name:  # (kh, kw, in, multiplier)
        return value[:, :, keep_in, :]
    return value[..., keep_in, :][..., keep_out]  # conv / pointwise / dense: (..., in, out)


def prune_into(source, target) -> dict:
    """Copy `source`'s weights into the narrower `target`; returns the parameter counts
    {"params": target's, "of": source's}."""
    pairs, keep = _keep(source, target)
    for src, dst, g_in, g_out in pairs:
        kind = type(src).__name__
        for w_src, w_dst in zip(src.weights, dst.weights):
            value = _slice(kind, w_src.path, np.asarray(w_src), keep[g_in], keep[g_out])
            if tuple(value.shape) != tuple(w_dst.shape):
                raise FerError(f"pruning: {w_src.path} cut to {value.shape} does not fit "
                               f"{w_dst.path} {tuple(w_dst.shape)}")
            w_dst.assign(value)
    return {"params": int(target.count_params()), "of": int(source.count_params())}
