"""Five-layer CNN after Kim et al.: conv 32 5x5, conv 32 4x4, conv 64 5x5
(each followed by 3x3 stride-2 max pooling), FC 1024 with BatchNorm, 30 % dropout.
"""

import keras
from keras import layers

from training.models.blocks import classifier, grey_input
from training.models.registry import register


@register("five_layer")
def five_layer(input_shape, num_classes, *, dense: int = 1024, dropout: float = 0.3):
    inputs, x = grey_input(input_shape)
    for filters, kernel in ((32, 5), (32, 4), (64, 5)):
        x = layers.Conv2D(filters, kernel, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Flatten()(x)
    outputs = classifier(x, num_classes, dense=(dense,), dropout=dropout, batchnorm=True)
    return keras.Model(inputs, outputs, name="five_layer")
