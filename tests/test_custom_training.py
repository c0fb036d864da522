"""What of the custom dataset trains: accepted uploads (or all), the curator's label, never the
custom holdout; and a real `fer-hybrid train` run on a synthetic store."""

from __future__ import annotations

import gzip
import hashlib
import logging

import numpy as np
import pytest
from conftest import synthetic_faces
from test_backend_helpers import image_bytes

from backend.images import clean_crop
from backend.storage import UploadStore
from contract import LABELS
from contract.review import read_uploads
from training.core.errors import FerError
from training.data.custom import load_custom, load_custom_holdout
from training.data.folders import read_images


def _hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha256(np.ascontiguousarray(im).tobytes()).hexdigest() for im in x}


@pytest.fixture()
def store(tmp_path):
    """30 uploads: 0-14 accepted (0 relabelled to fear), 15-19 rejected, the rest pending."""
    store = UploadStore(tmp_path / "custom")
    ups = [
        store.add(
            clean_crop(image_bytes(seed=100 + i), min_side=1, max_side=4096), "happy", consent=True
        )
        for i in range(30)
    ]
    store.review([u.id for u in ups[:15]], "accept")
    store.review([ups[0].id], "relabel", "fear")
    store.review([u.id for u in ups[15:20]], "reject")
    store.close()
    return store


def _expected(store, keep) -> tuple[set[str], list[str]]:
    chosen = [u for u in read_uploads(store.root) if keep(u)]
    x = read_images([u.path for u in chosen], progress=False)
    return _hashes(x), sorted(u.training_label for u in chosen)


@pytest.fixture()
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    x, y = synthetic_faces(70, seed=21)
    y[:7] = np.arange(7)
    usage = ["Training"] * 42 + ["PublicTest"] * 14 + ["PrivateTest"] * 14
    rows = ["emotion,pixels,Usage"] + [
        f"{lab},{' '.join(map(str, im.reshape(-1).tolist()))},{u}"
        for im, lab, u in zip(x, y, usage)
    ]
    (d / "fer2013.csv.gz").write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))
    return d


def test_accepted_uploads_train_with_the_curators_label_and_the_holdout_never(store):
    x, y = load_custom(store.root, progress=False)
    want, labels = _expected(store, lambda u: u.state == "accepted" and not u.holdout)
    assert _hashes(x) == want and sorted(LABELS[i] for i in y) == labels
    assert 0 < len(y) < 15
    held_x, held_y = load_custom_holdout(store.root, progress=False)
    want_held, _ = _expected(store, lambda u: u.state == "accepted" and u.holdout)
    assert _hashes(held_x) == want_held and len(held_y) + len(y) == 15
    assert not _hashes(held_x) & _hashes(x)
    (relabelled,) = [u for u in read_uploads(store.root) if u.curator_label]
    assert relabelled.curator_label == "fear" and relabelled.label == "happy"
    assert "fear" in [LABELS[i] for i in (held_y if relabelled.holdout else y)]
    every_x, _ = load_custom(store.root, uploads="all", progress=False)
    want_all, _ = _expected(store, lambda u: not u.holdout)
    assert _hashes(every_x) == want_all and not _hashes(every_x) & _hashes(held_x)
    with pytest.raises(FerError, match="accepted, all"):
        load_custom(store.root, uploads="some")


def test_a_folder_without_a_store_trains_whole_and_has_no_holdout(tmp_path):
    folder = tmp_path / "hand"
    (folder / "sad").mkdir(parents=True)
    (folder / "sad" / "a.png").write_bytes(image_bytes(seed=1))
    _x, y = load_custom(folder, progress=False)
    assert len(y) == 1 and LABELS[y[0]] == "sad"
    assert len(load_custom_holdout(folder, progress=False)[1]) == 0


def test_train_runs_on_accepted_uploads_only(store, data_dir, tmp_path, monkeypatch, caplog):
    """A real `fer-hybrid train --aux custom` run; the splits it trained on are recorded on
    the way through."""
    import training.fit.train as fit
    from training.cli import main

    seen = {}
    real = fit.train_prepared

    def recording(config, state, splits, run, **kw):
        seen["train"] = splits["train"]
        return real(config, state, splits, run, **kw)

    monkeypatch.setattr(fit, "train_prepared", recording)
    monkeypatch.setenv("FER_HYBRID_CUSTOM_DIR", str(store.root))
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        "sys.argv",
        [
            "fer-hybrid",
            "train",
            "--model",
            "baseline_cnn",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--data-dir",
            str(data_dir),
            "--aux",
            "custom",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--name",
            "custom",
            "--verbose",
            "0",
        ],
    )
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as done:
        main()
    assert done.value.code in (0, None)
    assert (tmp_path / "runs" / "custom" / "best.keras").is_file()
    train = seen["train"]
    custom = np.flatnonzero(train.source == "custom")
    want, labels = _expected(store, lambda u: u.state == "accepted" and not u.holdout)
    assert _hashes(np.asarray(train.x, np.uint8)[custom]) == want
    assert sorted(LABELS[i] for i in np.asarray(train.y)[custom]) == labels
    assert "accepted only" in caplog.text


def test_a_bad_custom_uploads_value_is_one_line_before_any_data(tmp_path, capsys, monkeypatch):
    from training.cli import main

    monkeypatch.setattr(
        "sys.argv",
        [
            "fer-hybrid",
            "train",
            "--model",
            "baseline_cnn",
            "--custom-uploads",
            "most",
            "--data-dir",
            str(tmp_path / "nowhere"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and "--custom-uploads must be one of: accepted, all" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
