"""The paper's baseline CNN: 4 conv 3x3x32 layers, 2 max-pools, BatchNorm, 50 % dropout.

About 61 k parameters: small enough to train on a laptop CPU and to run on a
phone in a few milliseconds.
"""

import keras
from keras import layers

from training.models.blocks import classifier, conv_bn_relu, grey_input
from training.models.registry import register


@register("baseline_cnn")
def baseline_cnn(input_shape, num_classes, *, filters: int = 32, dropout: float = 0.5):
    inputs, x = grey_input(input_shape)
    for _ in range(2):
        x = conv_bn_relu(x, filters, 3)
        x = conv_bn_relu(x, filters, 3)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = classifier(x, num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="baseline_cnn")
