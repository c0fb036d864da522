"""Bundle: what matters of run folders, cut into parts a GPU call can bring back. It imports
`core`, `data` and `models` (the float16 check predicts with the run's model), never `gpu` or
`campaign`, which run it through the command line.

A lent GPU machine returns at most 8 files of at most 16 MiB (64 MiB in all) per call and
forgets everything when given back, while a run folder can hold 100+ MiB (best.keras, the
training checkpoint, tensorboard/). `fer-hybrid runs bundle` keeps what the CPU side needs
(best.keras's weights, float16 when measured harmless, predictions, config, log, metrics,
the checkpoint's state.json) in one tar stream (optionally lzma), cut into flat parts with a
manifest that says which parts each call copies back; `fer-hybrid runs unbundle` checks
every part and file against the manifest and restores the run folders.

    plan.py           sizes, device limits, which files go in which call
    keras_file.py     best.keras <-> compact weights (float16/float32 arrays + model config)
    float16_check.py  does float16 storage change the model's predictions? (measured)
    manifest.py       the bundle manifest: names, schema, reading and checking
    pack.py           run folders -> parts + manifest
    unpack.py         parts + manifest -> run folders

Nothing here imports TensorFlow: bundling runs on the GPU machine under JAX.
"""
