"""Compact residual network of depthwise-separable convolutions for the phone (CPU fallback).

In the spirit of mini-Xception (Arriaga et al. 2018), sized for 48x48 grey faces and a
few milliseconds per face in the browser: a 3x3 stem at full resolution, one strided
3x3 conv (48 -> 24), then Xception entry-flow blocks (two separable convs + max-pool,
with a strided 1x1 shortcut) at 24 -> 12 -> 6 -> 3, global average pooling, dropout,
softmax. Most multiply-adds sit in the 1x1 (pointwise) convolutions, which both
TensorFlow on a CPU and tfjs-wasm run efficiently.

`width` scales every stage; `stages` gives the block widths at width 1.0.
"""

import keras
from keras import layers

from training.models.blocks import classifier, conv_bn_relu, grey_input, scaled
from training.models.registry import register


def sep_block(x, filters: int):
    """Xception entry-flow block: 2 x (SepConv -> BN), ReLU between, max-pool; 1x1/2 shortcut."""
    shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", use_bias=False)(x)
    shortcut = layers.BatchNormalization()(shortcut)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
    y = layers.BatchNormalization()(y)
    y = layers.ReLU()(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    y = layers.MaxPooling2D(3, strides=2, padding="same")(y)
    return layers.ReLU()(layers.Add()([shortcut, y]))


@register("sepnet")
def sepnet(input_shape, num_classes, *, width: float = 1.0, stages=(64, 128, 256, 512),
           stem: int = 32, dropout: float = 0.3):
    inputs, x = grey_input(input_shape)
    x = conv_bn_relu(x, scaled(stem // 2, width), 3)  # full-resolution edges (1 input channel)
    x = conv_bn_relu(x, scaled(stem, width), 3, strides=2)  # 48 -> 24
    for filters in stages:
        x = sep_block(x, scaled(filters, width))  # 24 -> 12 -> 6 -> 3 -> 2
    x = layers.GlobalAveragePooling2D()(x)
    outputs = classifier(x, num_classes, dropout=dropout)
    name = "sepnet" if width == 1.0 else f"sepnet_w{width:g}"
    return keras.Model(inputs, outputs, name=name)
