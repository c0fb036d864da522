"""Residual network with squeeze-and-excitation blocks, sized for 48x48 input.

A ResNet-18-like layout without the ImageNet stem (a 3x3 stride-1 stem keeps the
small faces' detail): stages of 64/128/256/512 x `width` filters, `depth` basic
blocks per stage (int or one int per stage), strides 1/2/2/2 (48 -> 6), SE in
every block, global average pooling, dropout, softmax.
"""

import keras
from keras import layers

from training.core.errors import FerError
from training.models.blocks import basic_block, classifier, conv_bn_relu, grey_input, scaled
from training.models.registry import register

STAGES = (64, 128, 256, 512)


@register("resnet_se")
def resnet_se(input_shape, num_classes, *, width: float = 1.0, depth=2, se_ratio: int = 16,
              dropout: float = 0.3):
    depths = (depth,) * len(STAGES) if isinstance(depth, int) else tuple(int(d) for d in depth)
    if len(depths) != len(STAGES) or min(depths) < 1:
        raise FerError(f"depth must be a positive int or {len(STAGES)} positive ints (got {depth!r})")
    inputs, x = grey_input(input_shape)
    x = conv_bn_relu(x, scaled(STAGES[0], width), 3)
    for stage, (filters, blocks) in enumerate(zip(STAGES, depths)):
        for b in range(blocks):
            strides = 2 if stage > 0 and b == 0 else 1
            x = basic_block(x, scaled(filters, width), strides=strides, se_ratio=se_ratio)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = classifier(x, num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="resnet_se")
