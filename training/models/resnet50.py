"""ResNet-50 transfer head (keras.applications trunk, random init unless `weights=PATH`).

48x48x1 -> resize 197x197, grey -> RGB inside the model -> ResNet-50 (avg pooled)
-> FC 4096 -> FC 1024 -> softmax, as in the paper's VGGFace-style transfer models.
"""

import keras

from training.models.blocks import transfer_model
from training.models.registry import register


def _trunk(shape):
    return keras.applications.ResNet50(include_top=False, weights=None, input_shape=shape,
                                       pooling="avg")


@register("resnet50")
def resnet50(input_shape, num_classes, *, weights=None, freeze_first: int = 0,
             preprocess: str = "scale", dropout: float = 0.5):
    return transfer_model("resnet50", _trunk, input_shape, num_classes, weights=weights,
                          freeze_first=freeze_first, preprocess=preprocess, dropout=dropout)
