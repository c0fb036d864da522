"""Multiply-adds (MACs) of a model for one input image: the cost that sets its speed.

Counted from the layers' output shapes, for the layers that hold nearly all of the work of
our models: convolutions (plain, depthwise, separable), dense layers (on every position of
their input) and LSTMs (every time step). Normalisation, activations, pooling and additions
cost one operation per value or less and are left out, as is usual when quoting MACs
(FLOPs are about 2 x MACs). The model card and README quote this number (sepnet: 19.5 M).
"""

from __future__ import annotations

import math

import keras
from keras import layers


def _positions(shape) -> int:
    """Spatial/time positions of one image's output: the product of the middle dimensions."""
    return math.prod(int(d) for d in shape[1:-1])


def layer_macs(layer) -> int:
    """Multiply-adds of one call of `layer` on one image (0 for layers not counted)."""
    if isinstance(layer, keras.Model):
        return macs_per_image(layer)
    try:
        in_shape, out_shape = layer.input.shape, layer.output.shape
    except (AttributeError, ValueError):  # a layer never called on a symbolic input
        return 0
    if isinstance(layer, layers.SeparableConv2D):  # depthwise, then pointwise 1x1
        dm, k = layer.depth_multiplier, math.prod(layer.kernel_size)
        mid = int(in_shape[-1]) * dm
        return _positions(out_shape) * (k * mid + mid * int(out_shape[-1]))
    if isinstance(layer, layers.DepthwiseConv2D):
        return (_positions(out_shape) * math.prod(layer.kernel_size) * int(in_shape[-1])
                * layer.depth_multiplier)
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        per_output = math.prod(layer.kernel_size) * int(in_shape[-1]) // layer.groups
        return _positions(out_shape) * per_output * int(out_shape[-1])
    if isinstance(layer, layers.Dense):
        return _positions(out_shape) * int(in_shape[-1]) * int(out_shape[-1])
    if isinstance(layer, layers.LSTM):
        steps, units = int(in_shape[1]), layer.units
        return steps * 4 * (int(in_shape[-1]) + units) * units  # 4 gates, input + recurrent
    return 0


def macs_per_image(model: keras.Model) -> int:
    """Multiply-adds of `model` (nested models included) for one image of its input shape."""
    return sum(layer_macs(layer) for layer in model.layers)
