"""load_splits, duplicate removal, sampling, the pack format and SMOTE on synthetic data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_faces
from PIL import Image

from training.core.errors import FerError
from training.data import Dataset, load_splits
from training.data.balance import smote
from training.data.fer2013 import load_fer2013_csv
from training.data.packed import is_packed, read_pack, write_pack


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FER_HYBRID_CUSTOM_DIR", str(tmp_path / "no-custom"))


def write_csv(path: Path, x, y, usage):
    rows = ["emotion,pixels,Usage"]
    rows += [
        f"{lab},{' '.join(map(str, im.reshape(-1).tolist()))},{u}"
        for im, lab, u in zip(x, y, usage)
    ]
    data = ("\n".join(rows) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


@pytest.fixture()
def fer_dir(tmp_path):
    """A data dir with a 70-row FER2013 CSV (40/15/15) and a CK+ npz sharing 2 val/test images."""
    d = tmp_path / "data"
    d.mkdir()
    x, y = synthetic_faces(70, seed=11)
    usage = ["Training"] * 40 + ["PublicTest"] * 15 + ["PrivateTest"] * 15
    write_csv(d / "fer2013.csv.gz", x, y, usage)
    ck_x, _ = synthetic_faces(6, seed=12)
    ck_x[0] = x[45]  # a PublicTest image
    ck_x[1] = x[60]  # a PrivateTest image
    ck_x[2] = x[3]  # a Training image: not a leak, kept
    names = np.array(["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"])
    np.savez(
        d / "ckplus48.npz", x=ck_x, y=np.array([0, 2, 3, 4, 1, 6], np.uint8), class_names=names
    )
    return d, x, y


def test_load_splits_contract(fer_dir):
    d, x, y = fer_dir
    s = load_splits(data_dir=d)
    assert set(s) == {"train", "val", "test"}
    for name, n, sl in (
        ("train", 40, slice(0, 40)),
        ("val", 15, slice(40, 55)),
        ("test", 15, slice(55, 70)),
    ):
        ds = s[name]
        assert isinstance(ds, Dataset) and len(ds) == n
        assert ds.x.dtype == np.uint8 and ds.x.shape == (n, 48, 48)
        assert ds.y.dtype == np.int64 and (ds.source == "fer2013").all()
        np.testing.assert_array_equal(ds.x, x[sl])
        np.testing.assert_array_equal(ds.y, y[sl])


def test_aux_train_only_with_duplicate_removal(fer_dir, caplog):
    d, _x, _ = fer_dir
    with caplog.at_level("INFO"):
        s = load_splits(data_dir=d, aux="ckplus")
    train = s["train"]
    # 6 CK+ images, 1 contempt dropped by the mapping, 2 exact copies of val/test dropped
    assert (train.source == "ckplus").sum() == 3
    assert train.meta["duplicates_dropped"] == 2
    assert train.meta["aux"]["ckplus"] == {"loaded": 5, "duplicates_dropped": 2}
    assert "2 exact duplicates" in caplog.text
    assert len(s["val"]) == 15 and len(s["test"]) == 15
    assert (s["val"].source == "fer2013").all() and (s["test"].source == "fer2013").all()
    held = {im.tobytes() for im in np.concatenate([s["val"].x, s["test"].x])}
    assert not any(im.tobytes() in held for im in train.x[train.source == "ckplus"])


def test_extra_folder_and_custom(fer_dir, tmp_path):
    d, x, _ = fer_dir
    folder = tmp_path / "extra"
    (folder / "happy").mkdir(parents=True)
    Image.fromarray(x[50]).save(folder / "happy" / "dup_of_val.png")
    Image.fromarray(x[0]).save(folder / "happy" / "new.png")
    custom = tmp_path / "custom"
    (custom / "sad").mkdir(parents=True)
    (custom / "originals").mkdir()
    Image.fromarray(x[1]).convert("RGB").save(custom / "sad" / "abc.png")
    s = load_splits(data_dir=d, folders=[folder], aux=["custom"], custom=custom)
    src = s["train"].source.tolist()
    assert src.count("folder") == 1 and src.count("custom") == 1
    assert s["train"].meta["duplicates_dropped"] == 1


def test_sample_is_stratified_and_seeded(fer_dir):
    d, _, _ = fer_dir
    a = load_splits(data_dir=d, sample=20, seed=3)
    b = load_splits(data_dir=d, sample=20, seed=3)
    full = load_splits(data_dir=d)
    assert len(a["train"]) == 20 and len(a["val"]) == 15
    np.testing.assert_array_equal(a["train"].x, b["train"].x)
    present = set(full["train"].y.tolist())
    assert set(a["train"].y.tolist()) == present  # every class keeps at least one image


def test_image_size_and_rgb(fer_dir):
    d, _, _ = fer_dir
    s = load_splits(data_dir=d, image_size=64, rgb=True, sample=5)
    assert s["train"].x.shape == (5, 64, 64, 3) and s["train"].x.dtype == np.uint8
    np.testing.assert_array_equal(s["train"].x[..., 0], s["train"].x[..., 2])


def test_missing_paths(tmp_path, fer_dir):
    with pytest.raises(FerError, match="no FER2013 data in"):
        load_splits(data_dir=tmp_path / "empty")
    d, _, _ = fer_dir
    with pytest.raises(FerError, match="no JAFFE data in"):
        load_splits(data_dir=d, aux="jaffe")
    with pytest.raises(FerError, match="unknown auxiliary dataset 'affectnet'"):
        load_splits(data_dir=d, aux="affectnet")


def test_pack_round_trip_equals_csv(fer_dir, tmp_path):
    d, _, _ = fer_dir
    csv = load_fer2013_csv(d / "fer2013.csv.gz")
    from training.data.ckplus import load_ckplus

    ck = load_ckplus(d / "ckplus48.npz")
    out = tmp_path / "fer.pack"
    size = write_pack(out, csv, {"ckplus": ck})
    assert size == out.stat().st_size and is_packed(out) and not is_packed(d / "fer2013.csv.gz")
    entries = read_pack(out)
    np.testing.assert_array_equal(entries["fer2013/x"], csv.x)
    np.testing.assert_array_equal(entries["fer2013/y"], csv.y)
    np.testing.assert_array_equal(entries["fer2013/usage"], csv.usage)
    a = load_splits(data_dir=d, aux="ckplus")
    b = load_splits(fer2013=out, data_dir=tmp_path / "elsewhere", aux="ckplus")  # aux from the pack
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(a[k].x, b[k].x)
        np.testing.assert_array_equal(a[k].y, b[k].y)
        np.testing.assert_array_equal(a[k].source, b[k].source)


def test_pack_damaged(tmp_path, fer_dir):
    d, _, _ = fer_dir
    out = tmp_path / "fer.pack"
    write_pack(out, load_fer2013_csv(d / "fer2013.csv.gz"))
    out.write_bytes(out.read_bytes()[:-100])
    with pytest.raises(FerError, match="level must be 0-9"):
        write_pack(tmp_path / "x.pack", None, preset=10)
    with pytest.raises(FerError, match="damaged"):
        load_splits(fer2013=out)


# --------------------------------------------------------------------------- SMOTE


def test_smote_balances_and_stays_in_range():
    x, y = synthetic_faces(120, seed=7)
    keep = np.concatenate([np.flatnonzero(y == c)[: 3 + 4 * c] for c in range(7)])
    x, y = x[keep], y[keep]
    counts = np.bincount(y, minlength=7)
    xs, ys = smote(x, y, seed=0, k=5)
    assert xs.dtype == np.uint8 and ys.dtype == np.int64
    new_counts = np.bincount(ys, minlength=7)
    assert (new_counts == counts.max()).all()
    np.testing.assert_array_equal(xs[: len(x)], x)  # originals kept first
    # every synthetic image lies between two images of its class (pixel-wise bounds of the class)
    for c in range(7):
        cls = x[y == c].astype(int)
        syn = xs[len(x) :][ys[len(x) :] == c].astype(int)
        assert (syn >= cls.min(axis=0) - 1).all() and (syn <= cls.max(axis=0) + 1).all()
    xs2, _ys2 = smote(x, y, seed=0, k=5)
    np.testing.assert_array_equal(xs, xs2)


def test_smote_tiny_classes():
    x = np.stack([np.full((4, 4), v, np.uint8) for v in (0, 10, 20, 200, 250)])
    y = np.array([0, 0, 0, 1, 2])
    xs, ys = smote(x, y, seed=1)
    assert np.bincount(ys).tolist() == [3, 3, 3]
    assert set(np.unique(xs[ys == 2])) == {250}  # a lone image can only be repeated
    assert set(np.unique(xs[ys == 1])) == {200}
