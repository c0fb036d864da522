"""Dataset loaders on synthetic data built in tmp_path: CSV, folders, npz, custom, errors."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_faces
from PIL import Image

from contract import LABELS
from training.core.errors import FerError
from training.data.ckplus import load_ckplus
from training.data.custom import load_custom
from training.data.fer2013 import USAGES, load_fer2013_csv, parse_csv_bytes
from training.data.folders import load_class_folder, load_fer_folder
from training.data.jaffe import code_of, load_jaffe
from training.data.labelmap import map_name


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_HYBRID_CACHE", str(tmp_path / "cache"))


def csv_text(x: np.ndarray, y: np.ndarray, usage: list[str]) -> str:
    lines = ["emotion,pixels,Usage"]
    for im, label, use in zip(x, y, usage):
        lines.append(f"{label},{' '.join(map(str, im.reshape(-1).tolist()))},{use}")
    return "\n".join(lines) + "\n"


def make_fer(n_train=30, n_val=10, n_test=12, seed=0):
    x, y = synthetic_faces(n_train + n_val + n_test, seed=seed)
    usage = ["Training"] * n_train + ["PublicTest"] * n_val + ["PrivateTest"] * n_test
    return x, y, usage


def write_fer_csv(path: Path, gz: bool = False, **kw):
    x, y, usage = make_fer(**kw)
    text = csv_text(x, y, usage).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return x, y, usage


# --------------------------------------------------------------------------- FER2013 CSV


@pytest.mark.parametrize("gz", [False, True])
def test_csv_parse_plain_and_gz(tmp_path, gz):
    path = tmp_path / ("fer2013.csv.gz" if gz else "fer2013.csv")
    x, y, usage = write_fer_csv(path, gz=gz)
    fer = load_fer2013_csv(path)
    assert fer.x.dtype == np.uint8 and fer.x.shape == (52, 48, 48)
    np.testing.assert_array_equal(fer.x, x)
    np.testing.assert_array_equal(fer.y, y)
    assert [int((fer.usage == i).sum()) for i in range(3)] == [30, 10, 12]
    assert [USAGES[u] for u in fer.usage] == usage


def test_csv_cache_written_and_reused(tmp_path):
    path = tmp_path / "fer2013.csv"
    x, _, _ = write_fer_csv(path)
    load_fer2013_csv(path)
    cached = list((tmp_path / "cache").glob("fer2013-*.npz"))
    assert len(cached) == 1 and not list((tmp_path / "cache").glob(".*tmp"))
    # a cache hit does not re-read the CSV: damage the CSV but keep its size and mtime
    st = path.stat()
    path.write_bytes(b"x" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    np.testing.assert_array_equal(load_fer2013_csv(path).x, x)
    # a changed file (new mtime) is parsed again -> the damage shows
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(FerError):
        load_fer2013_csv(path)


def test_csv_wrong_header(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(FerError, match=r"header .*expected 'emotion,pixels,Usage'"):
        load_fer2013_csv(path)


def test_csv_bad_pixel_count_names_row():
    x, y, usage = make_fer(n_train=5, n_val=1, n_test=1)
    lines = csv_text(x, y, usage).splitlines()
    lines[4] = (
        lines[4].replace(" 0 ", " ", 1) if " 0 " in lines[4] else lines[4].replace(" ", "", 1)
    )
    with pytest.raises(FerError, match=r"data row 4 has 2303 pixel values, expected 2304"):
        parse_csv_bytes("\n".join(lines).encode())


def test_csv_bad_values_and_usage():
    x, y, usage = make_fer(n_train=3, n_val=1, n_test=1)
    lines = csv_text(x, y, usage).splitlines()
    emo, pix, use = lines[2].split(",")
    bad = lines.copy()
    bad[2] = ",".join([emo, " ".join(["999", *pix.split()[1:]]), use])
    with pytest.raises(FerError, match=r"data row 2 has pixel values that are not integers 0-255"):
        parse_csv_bytes("\n".join(bad).encode())
    bad[2] = ",".join([emo, " ".join(["abc", *pix.split()[1:]]), use])
    with pytest.raises(FerError, match=r"data row 2 has pixel values"):
        parse_csv_bytes("\n".join(bad).encode())
    bad = lines.copy()
    bad[3] = bad[3].rsplit(",", 1)[0] + ",Validation"
    with pytest.raises(FerError, match=r"data row 3 has Usage 'Validation'"):
        parse_csv_bytes("\n".join(bad).encode())


def test_missing_csv(tmp_path):
    with pytest.raises(FerError, match="does not exist"):
        load_fer2013_csv(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- folders


def save(path: Path, arr: np.ndarray, mode: str = "L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    if mode != "L":
        img = img.convert(mode)
    img.save(path)


def test_class_folder_png_jpeg_any_size(tmp_path):
    x, _ = synthetic_faces(4, size=64, seed=1)
    save(tmp_path / "happy" / "a.png", x[0])
    save(tmp_path / "happy" / "b.jpg", x[1], "RGB")
    save(tmp_path / "Anger" / "c.jpeg", x[2])
    save(tmp_path / "sadness" / "d.png", x[3], "RGBA")
    (tmp_path / "happy" / "notes.txt").write_text("ignored")
    xs, ys, files = load_class_folder(tmp_path)
    assert xs.shape == (4, 48, 48) and xs.dtype == np.uint8
    assert sorted(LABELS[i] for i in ys) == ["angry", "happy", "happy", "sad"]
    # the PNG decodes losslessly then resizes 64 -> 48 with Lanczos
    i = [f.name for f in files].index("a.png")
    ref = np.asarray(Image.fromarray(x[0]).resize((48, 48), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(xs[i], ref)


def test_msambare_layout_prefixes(tmp_path):
    x, y = synthetic_faces(9, seed=2)
    names = [
        "Training_1",
        "Training_2",
        "Training_3",
        "PublicTest_4",
        "PublicTest_5",
        "PrivateTest_6",
        "PrivateTest_7",
        "PrivateTest_8",
        "Training_9",
    ]
    for k, (im, label, name) in enumerate(zip(x, y, names)):
        top = "train" if name.startswith("Training") else "test"
        ext = ".jpg" if k % 2 else ".png"
        save(tmp_path / top / LABELS[label] / f"{name}{ext}", im)
    fer = load_fer_folder(tmp_path)
    counts = [int((fer.usage == i).sum()) for i in range(3)]
    assert counts == [4, 2, 3]
    assert sorted(fer.y.tolist()) == sorted(y.tolist())


def test_split_layout_without_prefix(tmp_path):
    x, y = synthetic_faces(4, seed=3)
    for k, (im, label) in enumerate(zip(x, y)):
        save(tmp_path / ("train" if k < 3 else "test") / LABELS[label] / f"im{k}.png", im)
    fer = load_fer_folder(tmp_path)
    assert [int((fer.usage == i).sum()) for i in range(3)] == [3, 0, 1]


def test_corrupt_image_names_file(tmp_path):
    x, _ = synthetic_faces(1)
    save(tmp_path / "happy" / "ok.png", x[0])
    (tmp_path / "happy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FerError, match=r"cannot decode image .*broken\.png"):
        load_class_folder(tmp_path)


def test_empty_class_folder(tmp_path):
    x, _ = synthetic_faces(1)
    save(tmp_path / "happy" / "ok.png", x[0])
    (tmp_path / "fear").mkdir()
    with pytest.raises(FerError, match=r"class folder .*fear has no images"):
        load_class_folder(tmp_path)


def test_unknown_class_folder_lists_names(tmp_path):
    x, _ = synthetic_faces(1)
    save(tmp_path / "joyful" / "ok.png", x[0])
    with pytest.raises(FerError, match=r"unknown class name 'joyful'.*angry, disgust, fear"):
        load_class_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(FerError, match="does not exist"):
        load_class_folder(tmp_path / "nope")


# --------------------------------------------------------------------------- label mapping / npz


def test_label_mapping():
    assert [
        map_name(n) for n in ("anger", "AN", "sadness", "SA", "happiness", "HA", "Neutral")
    ] == [0, 0, 4, 4, 3, 3, 6]
    assert map_name("contempt") is None
    assert map_name("contempt", contempt="disgust") == 1
    assert code_of("KA.AN1.39.tiff") == "AN" and code_of("YM.SU3.60.tiff.png") == "SU"


def test_ckplus_npz_contempt_dropped(tmp_path):
    names = np.array(["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"])
    y = np.array([0, 1, 2, 3, 4, 5, 6, 1], np.uint8)
    x = np.arange(8 * 48 * 48, dtype=np.uint32).reshape(8, 48, 48).astype(np.uint8)
    np.savez(tmp_path / "ck.npz", x=x, y=y, class_names=names, subject=np.array(["S1"] * 8))
    xs, ys = load_ckplus(tmp_path / "ck.npz")
    assert [LABELS[i] for i in ys] == ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    np.testing.assert_array_equal(xs, x[[0, 2, 3, 4, 5, 6]])


def test_ckplus_folder_layout(tmp_path):
    x, _ = synthetic_faces(3, seed=4)
    for k, cls in enumerate(["anger", "contempt", "surprise"]):
        save(tmp_path / "CK+48" / cls / f"S0{k}_001_0000001{k}.png", x[k])
    _xs, ys = load_ckplus(tmp_path / "CK+48")
    assert [LABELS[i] for i in ys] == ["angry", "surprise"]


def test_jaffe_npz_resized_and_mapped(tmp_path):
    names = np.array(["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    y = np.arange(7, dtype=np.uint8)
    x = np.random.default_rng(0).integers(0, 256, (7, 128, 128)).astype(np.uint8)
    np.savez(tmp_path / "jaffe.npz", x=x, y=y, class_names=names)
    xs, ys = load_jaffe(tmp_path / "jaffe.npz")
    assert xs.shape == (7, 48, 48) and xs.dtype == np.uint8
    assert [LABELS[i] for i in ys] == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "sad",
        "surprise",
    ]


def test_jaffe_flat_folder_codes(tmp_path):
    x, _ = synthetic_faces(3, size=128, seed=5)
    for im, name in zip(x, ["KA.AN1.39.tiff", "KL.HA2.159.tiff", "NA.NE1.202.tiff"]):
        save(tmp_path / name, im)
    _, ys = load_jaffe(tmp_path)
    assert sorted(LABELS[i] for i in ys) == ["angry", "happy", "neutral"]


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "ck.npz", images=np.zeros((1, 48, 48), np.uint8))
    with pytest.raises(FerError, match=r"lacks array\(s\) x, y, class_names"):
        load_ckplus(tmp_path / "ck.npz")


# --------------------------------------------------------------------------- custom uploads


def test_custom_dir_ignores_extra_entries(tmp_path):
    custom = tmp_path / "custom"
    x, _ = synthetic_faces(3, size=100, seed=6)
    save(custom / "happy" / ("a" * 64 + ".png"), x[0], "RGB")
    save(custom / "sad" / ("b" * 64 + ".png"), x[1])
    save(custom / "originals" / "c.jpg", x[2], "RGB")
    (custom / "fear").mkdir()  # empty label folder: nothing uploaded yet
    (custom / "happy" / ".tmp-upload").write_bytes(b"partial")
    xs, ys = load_custom(custom)
    assert xs.shape == (2, 48, 48)
    assert sorted(LABELS[i] for i in ys) == ["happy", "sad"]


def test_custom_dir_with_a_damaged_upload_store_says_which_file(tmp_path):
    # The store decides what trains, so a damaged one is an error, not something to skip.
    from contract.review import StoreError

    custom = tmp_path / "custom"
    x, _ = synthetic_faces(1, size=100, seed=6)
    save(custom / "happy" / ("a" * 64 + ".png"), x[0], "RGB")
    (custom / "uploads.sqlite").write_bytes(b"SQLite format 3\x00")
    with pytest.raises(StoreError, match="uploads.sqlite is not a readable upload store"):
        load_custom(custom)


def test_custom_missing_dir(tmp_path):
    with pytest.raises(FerError, match="custom dataset .* does not exist"):
        load_custom(tmp_path / "none")
