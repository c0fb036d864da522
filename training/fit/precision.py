"""Training precision: float32 (default) or bf16 mixed precision (`--precision bf16`).

bf16 is Keras' `mixed_bfloat16` dtype policy: weights stay float32, layers compute in
bfloat16, which roughly halves memory traffic and uses the tensor cores of a GPU. No loss
scaling is needed (bfloat16 has float32's exponent range). The softmax layer of every model
keeps dtype="float32" (training.models.blocks.classifier), so probabilities, the loss and
the metrics stay float32.

The policy only matters while layers are created (a built model and a loaded .keras file
carry each layer's policy), so it is set around building the core model or loading the
checkpoint, and restored afterwards: it must not leak into the rest of the process (the
augmenter, the teachers, tests). Models are exported and evaluated in float32
(`training.models.serialization.as_float32`).
"""

from __future__ import annotations

import contextlib

from training.core.errors import FerError

# --precision value -> Keras dtype policy
PRECISIONS = {"float32": "float32", "bf16": "mixed_bfloat16"}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise FerError(f"--precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    return precision


@contextlib.contextmanager
def dtype_policy(precision: str):
    """Keras' global dtype policy set for `precision` inside the block, restored after."""
    import keras

    policy = PRECISIONS[check_precision(precision)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
