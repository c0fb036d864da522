"""Multiply-adds per image (training.models.macs): hand-counted layers and the number the docs
quote."""

from __future__ import annotations

import keras
from keras import layers

from training.models.macs import macs_per_image


def test_counts_each_kind_of_layer_by_hand():
    inp = keras.Input((8, 8, 2))
    x = layers.Conv2D(4, 3, padding="same")(inp)  # 8*8 positions * 3*3*2 * 4 = 4608
    x = layers.BatchNormalization()(x)  # not counted
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 4*4 * 3*3 * 4 = 576
    x = layers.SeparableConv2D(6, 3, padding="same")(x)  # 4*4 * (9*4 + 4*6) = 960
    inner_in = keras.Input((4, 4, 6))
    inner = keras.Model(inner_in, layers.Conv2D(2, 1)(inner_in))  # nested: 4*4 * 6 * 2 = 192
    x = layers.Reshape((16, 2))(inner(x))
    x = layers.LSTM(3)(x)  # 16 steps * 4 * (2 + 3) * 3 = 960
    out = layers.Dense(7)(x)  # 3 * 7 = 21
    model = keras.Model(inp, out)
    assert macs_per_image(model) == 4608 + 576 + 960 + 192 + 960 + 21


def test_sepnet_matches_the_model_card():
    from training.models import build_model

    # README.md and models/README.md: 19.5 M multiply-adds per face
    assert round(macs_per_image(build_model("sepnet")) / 1e6, 1) == 19.5
