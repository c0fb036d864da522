"""Class-folder layouts: ``<root>/<class>/*.{png,jpg,...}`` and Kaggle's FER2013 image variant.

* Generic: one sub-folder per class (any accepted name, see labelmap), images of
  any common format; converted to grayscale and resized (Lanczos) to 48x48.
* Kaggle "msambare" FER2013 images: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.
  Their file names start with ``Training_``, ``PublicTest_`` or ``PrivateTest_``;
  that prefix gives the FER2013 Usage. Without a prefix, ``train/`` is Training
  and ``test/`` (or ``val/``, ``validation/``) is PrivateTest / PublicTest.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE
from training.core.errors import FerError
from training.data.fer2013 import USAGES, FerArrays
from training.data.images import is_image_file, read_image
from training.data.labelmap import map_name

SPLIT_DIRS = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}
PREFIXES = {"training": "Training", "publictest": "PublicTest", "privatetest": "PrivateTest"}


def _subdirs(root: Path) -> list[Path]:
    """Sub-folders, without hidden ones and archive debris such as __MACOSX."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def list_class_folder(
    root: Path, *, strict: bool = True, contempt: str | None = None
) -> tuple[list[Path], list[int]]:
    """Image files and FER2013 labels under root/<class>/.

    strict: unknown folder names and empty class folders are errors; otherwise
    (the web app's custom dataset) they are skipped.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FerError(f"image folder {root} does not exist; check the path")
    files: list[Path] = []
    labels: list[int] = []
    for sub in _subdirs(root):
        try:
            label = map_name(sub.name, contempt=contempt, where=str(root))
        except FerError:
            if strict:
                raise
            continue
        imgs = sorted(p for p in sub.iterdir() if is_image_file(p))
        if not imgs:
            if strict:
                raise FerError(
                    f"class folder {sub} has no images (png/jpg/...); add images or remove it"
                )
            continue
        if label is None:  # e.g. CK+ contempt: known, no FER2013 class
            continue
        files += imgs
        labels += [label] * len(imgs)
    if strict and not files and not _subdirs(root):
        raise FerError(
            f"image folder {root} has no class sub-folders; expected {root}/<class>/*.png "
            "with class names like angry, happy, ..."
        )
    return files, labels


def read_images(
    files: list[Path],
    size: int = IMAGE_SIZE,
    *,
    desc: str = "images",
    progress: bool | None = None,
) -> np.ndarray:
    """Decode many files in a small thread pool (Pillow releases the GIL while decoding)."""
    from tqdm import tqdm

    out = np.empty((len(files), size, size), np.uint8)
    if not files:
        return out
    with ThreadPoolExecutor(max_workers=4) as pool:
        it = pool.map(lambda p: read_image(p, size), files, chunksize=64)
        for i, im in enumerate(
            tqdm(
                it,
                total=len(files),
                desc=desc,
                unit="img",
                mininterval=0.5,
                disable=None if progress is None else not progress,
            )
        ):
            out[i] = im
    return out


def load_class_folder(
    root: str | Path,
    *,
    strict: bool = True,
    contempt: str | None = None,
    progress: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """(x uint8 (N,48,48), y int64, files) of a class-folder dataset."""
    root = Path(root).expanduser()
    files, labels = list_class_folder(root, strict=strict, contempt=contempt)
    x = read_images(files, desc=f"scan {root.name}", progress=progress)
    return x, np.asarray(labels, np.int64), files


def is_split_layout(root: Path) -> bool:
    """True for the msambare layout (train/ and test/ ... folders of class folders)."""
    if not root.is_dir():
        return False
    names = {p.name.lower() for p in _subdirs(root)}
    return bool(names) and names <= set(SPLIT_DIRS)


def usage_of(path: Path, split_dir: str) -> str:
    head = path.name.split("_", 1)[0].lower()
    if "_" in path.name and head in PREFIXES:
        return PREFIXES[head]
    return SPLIT_DIRS[split_dir.lower()]


def load_fer_folder(root: str | Path, *, progress: bool | None = None) -> FerArrays:
    """FER2013 from Kaggle's image variant (train/ & test/ class folders); Usage from name prefixes."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FerError(f"FER2013 folder {root} does not exist; check --fer2013")
    if is_split_layout(root):
        parts = [(d, d.name) for d in _subdirs(root)]
    else:  # a plain class-folder layout: Usage only from prefixes, else Training
        parts = [(root, "train")]
    files: list[Path] = []
    labels: list[int] = []
    usage: list[int] = []
    for d, split_name in parts:
        f, lab = list_class_folder(d)
        files += f
        labels += lab
        usage += [USAGES.index(usage_of(p, split_name)) for p in f]
    x = read_images(files, desc=f"scan {root.name}", progress=progress)
    return FerArrays(x, np.asarray(labels, np.int64), np.asarray(usage, np.uint8))
