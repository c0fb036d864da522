"""What a run trains towards (`fer-hybrid train --targets`): FER2013's labels, the FER+ votes, or a mix.

    fer2013   FER2013's one label per image (one-hot; the default, the paper's).
    ferplus   the ten FER+ annotators' vote distribution over our seven classes (Barsoum et
              al. 2016, "cross-entropy" mode): cross-entropy against the share of votes each
              class got. Training images whose most-voted FER+ column is not one of our seven
              (contempt, unknown, not a face) are left out; the run says how many.
    mix:A     A x FER2013 one-hot + (1 - A) x the vote distribution, 0 <= A <= 1.

Targets are per-image distributions (N, 7) in LABELS order that travel with their images
(`training.fit.trainer.Trainer.inputs`). FER+ votes exist for FER2013 images only: they are found
by image content (the same 16-byte keys as `training.fit.soft_targets`), so auxiliary images
(CK+, JAFFE, custom) keep their own label as a one-hot target under every mode, and the
sample, order and duplicate handling of the data loaders do not matter.

Model selection: under `ferplus` a run's val_accuracy is the FER+ majority agreement on the
PublicTest rows the metric scores (`training.data.ferplus_agreement.ferplus_agreement`, ties count),
since the run is trying to agree with people, not with FER2013's labels; under `fer2013` and `mix`
it stays FER2013 PublicTest accuracy. PrivateTest is never used for a choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract import NUM_CLASSES
from training.core.errors import FerError
from training.data.ferplus import FerPlusVotes
from training.fit.soft_targets import image_keys

TARGET_KINDS = ("fer2013", "ferplus", "mix")
HELP = ("fer2013 (FER2013's labels, default), ferplus (the FER+ ten-annotator vote "
        "distribution; images whose top vote is contempt/unknown/not-a-face are left out) or "
        "mix:A (A x FER2013 one-hot + (1-A) x votes, e.g. mix:0.5)")


@dataclass(frozen=True)
class Targets:
    kind: str  # one of TARGET_KINDS
    alpha: float | None = None  # mix only: the weight of FER2013's one-hot label

    @property
    def uses_votes(self) -> bool:
        return self.kind != "fer2013"

    def __str__(self) -> str:
        return f"mix:{self.alpha:g}" if self.kind == "mix" else self.kind


def parse_targets(spec: str) -> Targets:
    """`--targets` text -> Targets; FerError naming the valid forms otherwise."""
    text = str(spec).strip().lower()
    if text in ("fer2013", "ferplus"):
        return Targets(text)
    if text.startswith("mix:"):
        try:
            alpha = float(text[4:])
        except ValueError:
            alpha = float("nan")
        if 0.0 <= alpha <= 1.0:
            return Targets("mix", alpha)
        raise FerError(f"--targets {spec}: the mix weight A in mix:A must be a number in [0, 1] "
                       f"(e.g. mix:0.5)")
    raise FerError(f"--targets must be {HELP}; got {spec!r}")


def vote_distribution(votes: np.ndarray) -> np.ndarray:
    """(N, 7) float32: each row's votes for our seven classes as shares summing to 1; a row
    without a single vote for them is all zero."""
    seven = np.asarray(votes, dtype="float64")
    total = seven.sum(axis=1, keepdims=True)
    return np.divide(seven, total, out=np.zeros_like(seven), where=total > 0).astype("float32")


def match_votes(x: np.ndarray, fer_x: np.ndarray, votes: FerPlusVotes) -> tuple[FerPlusVotes, np.ndarray]:
    """The FER+ votes of images `x`, found by content among the FER2013 images `fer_x` (whose
    rows `votes` lines up with) -> (votes (N, 10), covered bool (N,)). Rows not covered (not a
    FER2013 image) have zero votes. FER2013 holds exact duplicates; the first row's votes
    serve all of its copies."""
    index: dict[bytes, int] = {}
    for i, key in enumerate(image_keys(fer_x)):
        index.setdefault(key.tobytes(), i)
    rows = np.array([index.get(k.tobytes(), -1) for k in image_keys(x)], dtype=np.int64)
    covered = rows >= 0
    matched = np.zeros((len(rows), votes.votes.shape[1]), np.uint8)
    matched[covered] = votes.votes[rows[covered]]
    usage = np.zeros(len(rows), np.uint8)
    usage[covered] = votes.usage[rows[covered]]
    return FerPlusVotes(matched, usage), covered


@dataclass
class LabelTargets:
    keep: np.ndarray  # bool (N,): images that stay in training
    targets: np.ndarray  # float32 (kept, 7): what each kept image trains towards
    labels: np.ndarray  # int64 (kept,): the hard label (class weights, the train accuracy shown)
    note: str  # one line for the log: what was covered, what was left out


def label_targets(targets: Targets, y: np.ndarray, votes: FerPlusVotes,
                  covered: np.ndarray) -> LabelTargets:
    """The per-image targets of training images with labels `y` and matched `votes`.

    Images without votes (`covered` False: auxiliary sets) keep their one-hot label. Under
    `ferplus` an image's hard label becomes the most-voted of our classes (first on ties), so
    class weights and the displayed train accuracy follow the targets.
    """
    y = np.asarray(y, dtype="int64")
    one_hot = np.eye(NUM_CLASSES, dtype="float32")[y]
    dist = vote_distribution(votes.seven)
    has_votes = covered & (dist.sum(axis=1) > 0)
    n_fer = int(covered.sum())
    if targets.kind == "fer2013":
        return LabelTargets(np.ones(len(y), bool), one_hot, y, "targets: FER2013 labels")
    if n_fer == 0:
        raise FerError(f"--targets {targets}: none of the training images is a FER2013 image "
                       f"with FER+ votes (they are matched by content)")
    if targets.kind == "ferplus":
        keep = ~covered | (covered & votes.scored)
        t = np.where(has_votes[:, None], dist, one_hot)
        labels = np.where(has_votes, dist.argmax(axis=1), y)
        dropped = int((~keep).sum())
        note = (f"targets: FER+ vote distribution for {n_fer - dropped} FER2013 images; "
                f"{dropped} left out (top vote contempt, unknown or not a face)")
    else:
        a = float(targets.alpha)
        keep = np.ones(len(y), bool)
        t = np.where(has_votes[:, None], a * one_hot + (1.0 - a) * dist, one_hot)
        labels = y
        note = (f"targets: {a:g} x FER2013 label + {1 - a:g} x FER+ votes for "
                f"{int(has_votes.sum())} FER2013 images")
    n_aux = int((~covered).sum())
    if n_aux:
        note += f"; {n_aux} images without FER+ votes (not FER2013) keep their own label"
    return LabelTargets(keep, t[keep].astype("float32"), labels[keep].astype("int64"), note)
