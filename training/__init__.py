"""fer-hybrid training pipeline (Keras 3, backend-agnostic).

Importing this package is cheap: TensorFlow/Keras are imported only inside the
functions that need them, so the CLI's help and the server start instantly.
"""
