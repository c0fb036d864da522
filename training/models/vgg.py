"""VGG-style network for 48x48 input (Khaireddin & Chen 2021, "VGGNet": 73.28 % on FER2013).

Four stages of 64/128/256/512 filters, two 3x3 conv + BN + ReLU each, then a
2x2 max-pool (48 -> 24 -> 12 -> 6 -> 3), then two FC 1024 layers with dropout.
`width` scales every stage and the FC layers (0.25 / 0.5 give on-device variants).
"""

import keras
from keras import layers

from training.models.blocks import classifier, conv_bn_relu, grey_input, scaled
from training.models.registry import register


@register("vgg")
def vgg(input_shape, num_classes, *, width: float = 1.0, dense: int = 1024, dropout: float = 0.5):
    inputs, x = grey_input(input_shape)
    for filters in (64, 128, 256, 512):
        x = conv_bn_relu(x, scaled(filters, width), 3)
        x = conv_bn_relu(x, scaled(filters, width), 3)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    fc = scaled(dense, width, minimum=64)
    outputs = classifier(x, num_classes, dense=(fc, fc), dropout=dropout)
    return keras.Model(inputs, outputs, name="vgg" if width == 1.0 else f"vgg_w{width:g}")
