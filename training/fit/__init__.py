"""Fit: turning a configuration into a trained run folder. The configuration and the fit
loop (`train`), the training-model wrapper for label smoothing, mixup and distillation
(`trainer`), batches, exact validation, per-epoch callbacks, lr schedules, in-graph augmentation
and the `--robust-aug` conditions, what the loss trains towards (`targets`, `soft_targets`),
`--precision` and pruning for `--init-from`. It imports `core`, `data` and `models`, never a
later stage (evaluation, ensembles and export read what it writes)."""
