"""Explicit mapping of every dataset's label names onto the 7 FER2013 classes.

FER2013 order (``contract.LABELS``) is the target::

    0 angry  1 disgust  2 fear  3 happy  4 sad  5 surprise  6 neutral

Each dataset names its classes differently; this table lists every accepted
spelling (case-insensitive) per dataset:

=============  =========================================  ==================
FER2013 class  accepted names                             JAFFE code
=============  =========================================  ==================
angry          angry, anger, an                           AN
disgust        disgust, disgusted, disgusting, di         DI
fear           fear, fearful, afraid, scared, fe          FE
happy          happy, happiness, joy, smile, ha           HA
sad            sad, sadness, sa                           SA
surprise       surprise, surprised, su                    SU
neutral        neutral, neutrality, calm, ne              NE
=============  =========================================  ==================

CK+ "contempt" rule: CK+ has an eighth expression, *contempt*, that FER2013
does not have. Merging it into another class would inject label noise (it is
neither disgust nor anger in the FACS coding CK+ uses, and FER2013 annotators
were never offered it), so by default its images are **dropped**
(``CONTEMPT_DEFAULT = None``). ``map_name(..., contempt="disgust")`` merges it
into a class instead for those who want the images anyway.
"""

from __future__ import annotations

from contract import LABELS
from training.core.errors import FerError

# name (lower case) -> FER2013 class name
SYNONYMS: dict[str, str] = {
    # angry
    "angry": "angry",
    "anger": "angry",
    "an": "angry",
    # disgust
    "disgust": "disgust",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "di": "disgust",
    # fear
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "fe": "fear",
    # happy
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "smile": "happy",
    "ha": "happy",
    # sad
    "sad": "sad",
    "sadness": "sad",
    "sa": "sad",
    # surprise
    "surprise": "surprise",
    "surprised": "surprise",
    "su": "surprise",
    # neutral
    "neutral": "neutral",
    "neutrality": "neutral",
    "calm": "neutral",
    "ne": "neutral",
}

# Names that are known but have no FER2013 class; they are dropped by default.
DROPPED: frozenset[str] = frozenset({"contempt"})
CONTEMPT_DEFAULT: str | None = None

assert set(SYNONYMS.values()) == set(LABELS)


def accepted_names() -> list[str]:
    """Every accepted class name (for error messages)."""
    return sorted(set(SYNONYMS) | DROPPED)


def map_name(name: str, *, contempt: str | None = CONTEMPT_DEFAULT, where: str = "") -> int | None:
    """FER2013 index of a dataset class name, or None when the class is dropped.

    Raises FerError for an unknown name, listing the accepted ones.
    """
    key = name.strip().lower()
    if key in SYNONYMS:
        return LABELS.index(SYNONYMS[key])
    if key == "contempt":
        if contempt is None:
            return None
        return map_name(contempt)
    at = f" in {where}" if where else ""
    raise FerError(
        f"unknown class name {name!r}{at}; rename it to one of: {', '.join(LABELS)} "
        f"(also accepted: {', '.join(n for n in accepted_names() if n not in LABELS)})"
    )


def map_names(names, **kwargs) -> list[int | None]:
    """`map_name` for a sequence (e.g. an npz ``class_names`` array)."""
    return [map_name(str(n), **kwargs) for n in names]
