"""Commands: one module per `fer-hybrid` subcommand (options shared through `options.py`), the
top of the house with `training/cli.py`. A command turns options into arguments and calls its
stage, which makes the checks; it may import any stage, and imports its heavy libraries inside
its body so that `fer-hybrid --help` and `fer-hybrid serve` never load TensorFlow."""
