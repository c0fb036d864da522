"""SENet-50 transfer head: a ResNet-50 layout with squeeze-and-excitation in every block.

keras.applications has no SENet, so the trunk is built here from the shared
bottleneck block: 7x7/2 stem + 3x3/2 max-pool, stages of (3, 4, 6, 3)
bottlenecks with 64/128/256/512 (x4) filters, SE ratio 16, global average pool.
Then the same head as the other transfer models (197x197 RGB inside the model,
FC 4096 -> FC 1024 -> softmax). Random init unless `weights=PATH`.
"""

import keras
from keras import layers

from training.models.blocks import bottleneck_block, conv_bn_relu, transfer_model
from training.models.registry import register


def senet50_trunk(shape, se_ratio: int = 16):
    inputs = keras.Input(shape=shape)
    x = conv_bn_relu(inputs, 64, 7, strides=2)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for b in range(blocks):
            strides = 2 if stage > 0 and b == 0 else 1
            x = bottleneck_block(x, filters, strides=strides, se_ratio=se_ratio)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x, name="senet50_trunk")


@register("senet50")
def senet50(input_shape, num_classes, *, weights=None, freeze_first: int = 0,
            preprocess: str = "scale", dropout: float = 0.5):
    return transfer_model("senet50", senet50_trunk, input_shape, num_classes, weights=weights,
                          freeze_first=freeze_first, preprocess=preprocess, dropout=dropout)
