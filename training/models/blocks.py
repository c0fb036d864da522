"""Building blocks shared by the architectures (so no model copy-pastes another).

Everything here is plain Keras 3 (`keras.layers`, `keras.ops`), so the models
run unchanged on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
from keras import layers

from training.core.errors import FerError
from training.models.registry import check_option

log = logging.getLogger(__name__)


def grey_input(input_shape):
    """Model input (raw 0..255 grey levels) and its [0, 1] rescaled tensor."""
    inputs = keras.Input(shape=input_shape, name="pixels")
    return inputs, layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)


def conv_bn_relu(x, filters: int, kernel=3, *, strides=1, padding="same"):
    """Conv (no bias, BN follows) -> BatchNorm -> ReLU."""
    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def scaled(filters: int, width: float, minimum: int = 8) -> int:
    """Channel count times a width multiplier, at least `minimum`."""
    check_option("width", width)
    return max(minimum, round(filters * width))


def classifier(x, num_classes: int, *, dense=(), dropout: float = 0.5, batchnorm: bool = False):
    """Dense (-> BN) -> ReLU -> Dropout for each width in `dense`, then the softmax layer."""
    for units in dense:
        x = layers.Dense(units, use_bias=not batchnorm)(x)
        if batchnorm:
            x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    if not dense and dropout:
        x = layers.Dropout(dropout)(x)
    return layers.Dense(num_classes, activation="softmax", name="probs", dtype="float32")(x)


def se_block(x, ratio: int = 16):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from global context."""
    channels = x.shape[-1]
    s = layers.GlobalAveragePooling2D(keepdims=True)(x)
    s = layers.Dense(max(4, channels // ratio), activation="relu")(s)
    s = layers.Dense(channels, activation="sigmoid")(s)
    return layers.Multiply()([x, s])


def _shortcut(x, filters: int, strides: int):
    if strides == 1 and x.shape[-1] == filters:
        return x
    x = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
    return layers.BatchNormalization()(x)


def basic_block(x, filters: int, *, strides: int = 1, se: bool = True, se_ratio: int = 16):
    """ResNet basic block (two 3x3 convs), optionally with SE before the residual add."""
    shortcut = _shortcut(x, filters, strides)
    y = conv_bn_relu(x, filters, 3, strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if se:
        y = se_block(y, se_ratio)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def bottleneck_block(x, filters: int, *, strides: int = 1, se: bool = True, se_ratio: int = 16):
    """ResNet-50 bottleneck (1x1 -> 3x3 -> 1x1 x4), optionally with SE (SENet-50)."""
    out = filters * 4
    shortcut = _shortcut(x, out, strides)
    y = conv_bn_relu(x, filters, 1, strides=strides)
    y = conv_bn_relu(y, filters, 3)
    y = layers.Conv2D(out, 1, use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    if se:
        y = se_block(y, se_ratio)
    return layers.ReLU()(layers.Add()([shortcut, y]))


# --- transfer-learning heads -------------------------------------------------

TRANSFER_SIZE = 197  # the paper's input size for the VGGFace-style backbones


def transfer_model(
    name: str,
    backbone_fn,
    input_shape,
    num_classes: int,
    *,
    weights: str | None = None,
    freeze_first: int = 0,
    size: int = TRANSFER_SIZE,
    head=(4096, 1024),
    dropout: float = 0.5,
    preprocess: str = "scale",
):
    """48x48x1 raw pixels -> resize to size x size, grey -> RGB -> backbone -> FC head -> softmax.

    `backbone_fn(input_shape) -> keras.Model` builds the convolutional trunk
    (pooled output). `weights` is a local weights file for that trunk; without
    one the trunk starts from random initialisation (no downloads, ever).
    `preprocess`: "scale" maps 0..255 to [-1, 1]; "caffe" subtracts a mean grey
    level of 109 (VGGFace-style weights expect mean-subtracted 0..255 input).
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Resizing(size, size, interpolation="bilinear", name="resize")(inputs)
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    if preprocess == "scale":
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    elif preprocess == "caffe":
        x = layers.Rescaling(1.0, offset=-109.0, name="rescale")(x)
    else:
        raise FerError(f"preprocess must be 'scale' or 'caffe' (got {preprocess!r})")
    backbone = backbone_fn((size, size, 3))
    if weights is None:
        log.warning("%s: backbone %s uses RANDOM INIT (no weights file given; nothing is downloaded)",
                    name, backbone.name)
    else:
        path = Path(weights)
        if str(weights) == "imagenet" or not path.is_file():
            raise FerError(
                f"weights file {weights!r} not found; pass a local backbone weights file "
                f"(e.g. *.weights.h5) — nothing is downloaded"
            )
        try:
            backbone.load_weights(str(path))
        except Exception as err:  # wrong architecture / corrupt file
            raise FerError(f"cannot load backbone weights from {path}: {err}") from err
        log.info("%s: backbone %s loaded from %s", name, backbone.name, path)
    if freeze_first:
        n = int(freeze_first)
        if n < 0 or n > len(backbone.layers):
            raise FerError(f"freeze_first must be in 0..{len(backbone.layers)} (got {n})")
        for layer in backbone.layers[:n]:
            layer.trainable = False
        log.info("%s: froze the first %d of %d backbone layers", name, n, len(backbone.layers))
    x = backbone(x)
    outputs = classifier(x, num_classes, dense=head, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)
