"""The hybrid CNN-LSTM: a small CNN whose final feature map is read as a sequence.

The 6x6 positions of the last feature map (row-major) become 36 time steps of
`filters[-1]`-dimensional features; an LSTM summarises them and a dense softmax
classifies its final state.

The LSTM computes in float32 whatever the precision policy: under `--precision bf16` on a
GPU, JAX runs it through cuDNN, and its RNN lowering rejects bfloat16 (the first GPU session's
cnn_lstm member failed with "Unknown output type bfloat16"). It is about 5 % of the model's
multiply-adds (4.7 M of 90.3 M), so the convolutions keep bf16's speed.
"""

import keras
from keras import layers

from training.models.blocks import classifier, conv_bn_relu, grey_input
from training.models.registry import register


@register("cnn_lstm")
def cnn_lstm(input_shape, num_classes, *, filters=(32, 64, 128), units: int = 128,
             dropout: float = 0.5):
    inputs, x = grey_input(input_shape)
    for f in filters:
        x = conv_bn_relu(x, int(f), 3)
        x = conv_bn_relu(x, int(f), 3)
        x = layers.MaxPooling2D(2)(x)
    h, w, c = x.shape[1:]
    x = layers.Reshape((h * w, c), name="positions_as_sequence")(x)
    x = layers.LSTM(int(units), dtype="float32")(x)
    outputs = classifier(x, num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name="cnn_lstm")
