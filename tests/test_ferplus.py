"""FER+ votes: the loader (alignment with FER2013, column mapping, rows without a class of
ours) and the agreement metric, on hand-built votes with known answers, then on the real file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from contract import LABELS
from training.core.errors import FerError
from training.data.fer2013 import FerArrays
from training.data.ferplus import (
    CLASS_COLUMNS,
    COLUMN_CLASS,
    COLUMNS,
    find_ferplus,
    load_ferplus,
    parse_ferplus,
)
from training.data.ferplus_agreement import ferplus_agreement

HEADER = "Usage,Image name," + ",".join(COLUMNS)


def votes_csv(rows: list[tuple[str, list[int]]]) -> str:
    lines = [HEADER]
    for i, (usage, counts) in enumerate(rows):
        lines.append(f"{usage},fer{i:07d}.png," + ",".join(map(str, counts)))
    return "\n".join(lines) + "\n"


def col(**counts: int) -> list[int]:
    """Ten vote counts from column names, e.g. col(happiness=6, NF=4)."""
    return [counts.get(c, 0) for c in COLUMNS]


def write_fer_with_votes(data, sizes, counts_of) -> str:
    """A synthetic fer2013.csv in folder `data` (sizes: (usage, n, seed) per split) and the text
    of its aligned FER+ votes file, `counts_of(i)` the ten counts of the split's i-th row.
    Returns the votes text (the caller decides whether fer2013new.csv is there)."""
    from conftest import synthetic_faces

    rows, votes = ["emotion,pixels,Usage"], [HEADER]
    for usage, n, seed in sizes:
        x, y = synthetic_faces(n, seed=seed)
        for i, (img, label) in enumerate(zip(x, y)):
            rows.append(f"{label},{' '.join(map(str, img.ravel()))},{usage}")
            votes.append(f"{usage},fer{len(votes):07d}.png," + ",".join(map(str, counts_of(i))))
    (data / "fer2013.csv").write_text("\n".join(rows) + "\n")
    return "\n".join(votes) + "\n"


def fer_arrays(usages: list[str]) -> FerArrays:
    code = {"Training": 0, "PublicTest": 1, "PrivateTest": 2}
    n = len(usages)
    return FerArrays(
        np.zeros((n, 48, 48), "uint8"),
        np.zeros(n, "int64"),
        np.array([code[u] for u in usages], "uint8"),
    )


ROWS = [
    ("Training", col(happiness=8, neutral=2)),  # happy
    ("PublicTest", col(anger=5, disgust=5)),  # tie between two of ours
    ("PrivateTest", col(NF=10)),  # not a face: not scored
    ("PrivateTest", col(contempt=4, unknown=4, sadness=2)),  # top is contempt/unknown: not scored
    ("PrivateTest", col(fear=4, NF=4, surprise=2)),  # tie fear / NF: scored
    ("PrivateTest", col()),  # no votes at all: not scored
]


def test_columns_map_onto_our_seven_classes_in_one_place():
    assert [COLUMNS[c] for c in CLASS_COLUMNS] == [
        "anger",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "surprise",
        "neutral",
    ]
    assert [COLUMN_CLASS[COLUMNS[c]] for c in CLASS_COLUMNS] == list(LABELS)
    assert [c for c, k in COLUMN_CLASS.items() if k is None] == ["contempt", "unknown", "NF"]


def test_parse_reorders_votes_and_marks_the_rows_without_a_class_of_ours():
    v = parse_ferplus(votes_csv(ROWS).encode())
    assert v.votes.shape == (6, 10) and v.usage.tolist() == [0, 1, 2, 2, 2, 2]
    assert v.seven[0].tolist() == [0, 0, 0, 8, 0, 0, 2]  # LABELS order: happy 8, neutral 2
    assert v.scored.tolist() == [True, True, False, False, True, False]
    test = v.split("PrivateTest")
    assert len(test.votes) == 4 and test.scored.tolist() == [False, False, True, False]


def test_agreement_on_hand_built_votes_has_the_known_answer():
    v = parse_ferplus(votes_csv(ROWS).encode())
    happy, angry, disgust, fear, sad = (
        LABELS.index(k) for k in ("happy", "angry", "disgust", "fear", "sad")
    )
    # Scored rows 0, 1, 4. Row 0 happy: agrees (8 of 10). Row 1 disgust: tied top, agrees
    # (5 of 10). Row 4 sad: no (0 of 10). Rows 2, 3, 5 are ignored whatever is predicted.
    pred = np.array([happy, disgust, angry, sad, sad, fear])
    m = ferplus_agreement(pred, v.votes, v.scored)
    assert m["n"] == 3
    assert m["majority_agreement"] == pytest.approx(2 / 3)
    assert m["mean_vote_share"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    pred[4] = fear  # fear is tied with NF on row 4: counts as agreement
    assert ferplus_agreement(pred, v.votes, v.scored)["majority_agreement"] == 1.0
    none = ferplus_agreement(pred[2:4], v.votes[2:4], v.scored[2:4])
    assert none == {"n": 0, "majority_agreement": None, "mean_vote_share": None}
    with pytest.raises(ValueError, match="differ"):
        ferplus_agreement(pred[:2], v.votes, v.scored)


def test_load_checks_alignment_with_the_fer2013_rows(tmp_path):
    path = tmp_path / "fer2013new.csv.gz"
    path.write_bytes(gzip.compress(votes_csv(ROWS).encode()))
    usages = [u for u, _ in ROWS]
    assert load_ferplus(path, fer_arrays(usages)).votes.shape == (6, 10)
    with pytest.raises(FerError, match="has 6 rows but the FER2013 data has 5"):
        load_ferplus(path, fer_arrays(usages[:5]))
    shifted = usages[:]
    shifted[1] = "Training"
    with pytest.raises(FerError, match="row 2 is PublicTest there but Training in FER2013"):
        load_ferplus(path, fer_arrays(shifted))
    with pytest.raises(FerError, match="does not exist; pass --ferplus"):
        load_ferplus(tmp_path / "nope.csv", fer_arrays(usages))


def test_malformed_votes_files_name_the_problem(tmp_path):
    with pytest.raises(FerError, match="not a FER\\+ votes file"):
        parse_ferplus(b"emotion,pixels,Usage\n0,1 2,Training\n")
    bad = votes_csv(ROWS).replace("PublicTest,", "Validation,", 1).encode()
    with pytest.raises(FerError, match="line 3 is malformed"):
        parse_ferplus(bad)
    short = (HEADER + "\nTraining,fer0.png,1,2\n").encode()
    with pytest.raises(FerError, match="line 2 is malformed .4 fields instead of 12"):
        parse_ferplus(short)


def test_found_next_to_the_fer2013_file(tmp_path):
    (tmp_path / "fer2013.csv").write_text("x")
    assert find_ferplus(tmp_path / "fer2013.csv") is None
    (tmp_path / "fer2013new.csv.gz").write_bytes(b"")
    assert find_ferplus(tmp_path / "fer2013.csv") == tmp_path / "fer2013new.csv.gz"
    assert find_ferplus(tmp_path) == tmp_path / "fer2013new.csv.gz"


@pytest.mark.realdata
def test_real_votes_align_and_fer2013_labels_agree_with_the_majority(shared_data):
    """The real file lines up with the Kaggle CSV; FER2013's own labels agree with the
    ten-person majority on 65.3 % of the scored PrivateTest rows (ties count as agreement;
    63.4 % when a tie is broken towards the first FER+ column instead)."""
    from training.data.fer2013 import load_fer2013_csv

    fer = load_fer2013_csv(shared_data / "fer2013.csv.gz", progress=False)
    votes = load_ferplus(find_ferplus(shared_data / "fer2013.csv.gz"), fer)
    test = votes.split("PrivateTest")
    _, y = fer.split("PrivateTest")
    m = ferplus_agreement(y, test.votes, test.scored)
    assert m["n"] == 3519
    assert m["majority_agreement"] == pytest.approx(0.6533, abs=5e-4)
    assert m["mean_vote_share"] == pytest.approx(0.5645, abs=5e-4)


def test_scores_block_plain_and_tta_or_a_note_for_other_rows():
    """`ferplus_scores`: the one block every report carries (evaluate, ensemble, export, bench)."""
    from training.data.ferplus_agreement import FERPLUS_TIES, ferplus_scores

    v = parse_ferplus(votes_csv(ROWS).encode())
    happy, disgust, sad = (LABELS.index(k) for k in ("happy", "disgust", "sad"))
    plain = np.eye(7)[[happy, disgust, 0, 0, sad, 0]]  # rows 0, 1 agree; row 4 does not
    tta = plain.copy()
    tta[4] = np.eye(7)[LABELS.index("fear")]  # tied with NF: agrees
    block = ferplus_scores(plain, tta, v)
    assert block["ties"] == FERPLUS_TIES and "tie" in FERPLUS_TIES
    assert block["plain"] == ferplus_agreement(plain.argmax(1), v.votes, v.scored)
    assert block["plain"]["majority_agreement"] == pytest.approx(2 / 3)
    assert block["tta"]["majority_agreement"] == 1.0 and block["tta"]["n"] == 3
    assert ferplus_scores(plain, None, v)["tta"] is None and "fer2013_labels" not in block
    labels = np.array([happy, 0, 0, 0, sad, 0])  # FER2013's labels of the rows, for scale
    assert ferplus_scores(plain, tta, v, labels=labels)["fer2013_labels"] == ferplus_agreement(
        labels, v.votes, v.scored)
    other = ferplus_scores(plain[:4], tta[:4], v)
    assert set(other) == {"note"} and "4 rows but the split has 6" in other["note"]
