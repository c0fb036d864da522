"""Agreement with the FER+ ten-annotator votes: how predictions agree with the majority, and the
block every report carries (evaluate, ensemble, export's manifest, bench).

It sits beside the votes (`training.data.ferplus`) because it reads their column layout
(`CLASS_COLUMNS`); the metrics on plain arrays (`training.core.metrics`) know nothing of FER+.
"""

from __future__ import annotations

import numpy as np

from training.core.metrics import combine_tta
from training.core.runs import Predictions
from training.data.ferplus import CLASS_COLUMNS, FerPlusVotes


def ferplus_agreement(y_pred: np.ndarray, votes: np.ndarray, scored: np.ndarray) -> dict:
    """How predictions agree with the FER+ ten-annotator votes (`training.data.ferplus`).

    `votes` (N, 10) in FER+ column order, `scored` (N,) the rows whose most-voted column is one
    of our seven classes (`FerPlusVotes.scored`). Returns:

    * `majority_agreement`: share of scored rows whose predicted class got the most votes; a
      tie counts as agreement with any tied class;
    * `mean_vote_share`: over the same rows, the mean share of the ten (or however many)
      annotators who chose the predicted class;
    * `n`: how many rows were scored.
    """
    y_pred = np.asarray(y_pred, dtype="int64").ravel()
    votes = np.asarray(votes, dtype="int64")
    scored = np.asarray(scored, dtype=bool).ravel()
    if not (y_pred.shape[0] == votes.shape[0] == scored.shape[0]):
        raise ValueError(
            f"predictions {y_pred.shape}, votes {votes.shape} and rows {scored.shape} differ"
        )
    pred_votes = votes[:, CLASS_COLUMNS][np.arange(len(y_pred)), y_pred]
    top, total = votes.max(axis=1), votes.sum(axis=1)
    n = int(scored.sum())
    if n == 0:
        return {"n": 0, "majority_agreement": None, "mean_vote_share": None}
    return {
        "n": n,
        "majority_agreement": float((pred_votes == top)[scored].mean()),
        "mean_vote_share": float((pred_votes / np.maximum(total, 1))[scored].mean()),
    }


#: How `ferplus_agreement` counts a tie for the most votes (reports quote it).
FERPLUS_TIES = "a tie for the most votes counts as agreement with any tied class"


def ferplus_scores(probs: np.ndarray, probs_tta: np.ndarray | None, votes,
                   labels: np.ndarray | None = None) -> dict:
    """FER+ agreement of one set of predictions, plain and with flip TTA: the block every
    report carries (evaluate, ensemble, export's manifest, bench).

    `probs` (N, 7) plain probabilities, `probs_tta` (N, 7) the flip-TTA ones (or None),
    `votes` the same N rows' `training.data.ferplus.FerPlusVotes`. Returns
    {"ties", "plain": ferplus_agreement(...), "tta": ... or None}, or {"note"} saying why not
    when the predictions are not the votes' rows (another row count). With `labels` (N,) (the
    rows' FER2013 labels) also "fer2013_labels": their own agreement, for scale.
    """
    if len(votes.votes) != len(probs):
        return {
            "note": f"not computed: the predictions have {len(probs)} rows but the split has "
            f"{len(votes.votes)} FER+ vote rows, so they are not the same images"
        }

    def agree(p):
        return ferplus_agreement(np.asarray(p).argmax(axis=1), votes.votes, votes.scored)

    block = {
        "ties": FERPLUS_TIES,
        "plain": agree(probs),
        "tta": agree(probs_tta) if probs_tta is not None else None,
    }
    if labels is not None:
        block["fer2013_labels"] = ferplus_agreement(np.asarray(labels), votes.votes, votes.scored)
    return block


def ferplus_metrics(preds: Predictions, votes: FerPlusVotes) -> dict:
    """FER+ majority agreement and mean vote share of the predictions, plain and flip TTA
    (or a "note" saying why not, when the predictions are not the split's rows)."""
    tta = combine_tta(preds.probs, preds.probs_flip, True) if preds.probs_flip is not None else None
    return ferplus_scores(preds.probs, tta, votes, labels=preds.y)
