"""The robustness augmentations' names (`fer-hybrid train --robust-aug`), known without Keras:
a training configuration is resolved and checked before TensorFlow loads, which takes 15-30 s
on a 2-core machine. The layers themselves are in `training.fit.augment_robust`.
"""

from __future__ import annotations

from training.core.errors import FerError

# --robust-aug names, in the order build_augmenter applies them (rotation30 sits with the
# geometric augmentation, before all of them).
ROBUST_AUGS = ("rotation30", "occlusion", "blur", "low_light", "downscale")
ROBUST_P = 0.3


def robust_names(names) -> list[str]:
    """`names` (a list, or a comma-separated string) expanded (`all`) and in the canonical
    order; FerError naming the valid names for an unknown one."""
    if isinstance(names, str):
        names = names.split(",")
    names = [str(n).strip().lower() for n in names or () if str(n).strip()]
    unknown = [n for n in names if n not in ROBUST_AUGS and n != "all"]
    if unknown:
        raise FerError(f"--robust-aug: unknown {', '.join(repr(n) for n in unknown)}; valid: "
                       f"{', '.join(ROBUST_AUGS)} or all (comma-separated)")
    return [n for n in ROBUST_AUGS if n in names or "all" in names]
