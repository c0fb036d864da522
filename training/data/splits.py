"""`load_splits`: FER2013 Training/PublicTest/PrivateTest -> train/val/test (+ aux in train only)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from contract import IMAGE_SIZE, REPO_ROOT
from training.core.errors import FerError
from training.data.dataset import Dataset, concat, make
from training.data.fer2013 import FerArrays, load_fer2013_csv
from training.data.images import finalize, pixel_hashes

log = logging.getLogger(__name__)

AUX_SOURCES = ("ckplus", "jaffe", "custom")
FER_NAMES = ("fer2013.csv", "fer2013.csv.gz", "fer2013.pack", "fer2013.ferpack")


def default_data_dir() -> Path:
    env = os.environ.get("FER_HYBRID_DATA")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


def find_fer2013(data_dir: Path) -> Path:
    for name in FER_NAMES:
        if (data_dir / name).exists():
            return data_dir / name
    raise FerError(
        f"no FER2013 data in {data_dir} (looked for {', '.join(FER_NAMES)}); "
        "pass --fer2013 PATH or --data-dir, or set FER_HYBRID_DATA"
    )


def _find(data_dir: Path, names: Iterable[str], what: str, flag: str) -> Path:
    for name in names:
        if (data_dir / name).exists():
            return data_dir / name
    raise FerError(
        f"no {what} data in {data_dir} (looked for {', '.join(names)}); pass {flag} PATH"
    )


def load_fer_source(
    path: str | Path, *, cache: bool = True, progress: bool | None = None
) -> tuple[FerArrays, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """FER2013 from a CSV(.gz), a pack, or an image folder; plus any aux sets stored in a pack."""
    from training.data.folders import load_fer_folder
    from training.data.packed import aux_from_pack, fer_from_pack, is_packed, read_pack

    path = Path(path).expanduser()
    if path.is_dir():
        return load_fer_folder(path, progress=progress), {}
    if not path.exists():
        raise FerError(
            f"FER2013 data {path} does not exist; pass --fer2013 PATH (csv, csv.gz, "
            "pack or image folder)"
        )
    if is_packed(path):
        entries = read_pack(path)
        return fer_from_pack(entries, path), aux_from_pack(entries)
    return load_fer2013_csv(path, cache=cache, progress=progress), {}


def load_aux(
    name: str,
    path: str | Path | None,
    data_dir: Path,
    *,
    progress: bool | None = None,
    custom_uploads: str = "accepted",
) -> tuple[np.ndarray, np.ndarray]:
    """(x (N,48,48) uint8, y) of one auxiliary source, by name (custom_uploads: which uploads of
    the custom set train, `training.data.custom`)."""
    if name == "ckplus":
        from training.data.ckplus import DEFAULT_NAMES, load_ckplus

        return load_ckplus(
            path or _find(data_dir, DEFAULT_NAMES, "CK+", "--ckplus"), progress=progress
        )
    if name == "jaffe":
        from training.data.jaffe import DEFAULT_NAMES, load_jaffe

        return load_jaffe(
            path or _find(data_dir, DEFAULT_NAMES, "JAFFE", "--jaffe"), progress=progress
        )
    if name == "custom":
        from training.data.custom import load_custom

        return load_custom(path, uploads=custom_uploads, progress=progress)
    raise FerError(f"unknown auxiliary dataset {name!r}; use {', '.join(AUX_SOURCES)}")


def parse_aux(aux: str | Sequence[str] | None) -> list[str]:
    """'ckplus,jaffe' (or a list) -> validated names; None, '' or 'none' -> []."""
    if aux is None or (isinstance(aux, str) and aux.strip().lower() in ("", "none")):
        return []
    items = aux.split(",") if isinstance(aux, str) else list(aux)
    out = []
    for a in (str(i).strip().lower() for i in items):
        if not a:
            continue
        if a in ("ck+", "ck", "ckplus48"):
            a = "ckplus"
        if a not in AUX_SOURCES:
            raise FerError(f"unknown auxiliary dataset {a!r}; use {', '.join(AUX_SOURCES)}")
        if a not in out:
            out.append(a)
    return out


def stratified_indices(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most n labels of `y`, per-class proportional (every present class
    keeps >= 1), seeded; all indices when n is None or covers `y`."""
    y = np.asarray(y)
    if n is None or len(y) <= n:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    want = np.maximum(1, np.floor(counts * n / len(y)).astype(int))
    # hand out the remainder to the largest classes, trim if the minimums overshoot
    while want.sum() < n:
        frac = counts * n / len(y) - want
        want[np.argmax(frac)] += 1
    while want.sum() > n:
        want[np.argmax(want)] -= 1
    idx = [
        rng.choice(np.flatnonzero(y == c), size=min(k, cnt), replace=False)
        for c, k, cnt in zip(classes, want, counts)
    ]
    return np.sort(np.concatenate(idx))


def stratified_sample(ds: Dataset, n: int, seed: int = 0) -> Dataset:
    """At most n images, per-class proportional (every present class keeps >= 1), seeded."""
    if n is None or len(ds) <= n:
        return ds
    return ds.subset(stratified_indices(ds.y, n, seed))


def drop_duplicates(aux: Dataset, against: Sequence[Dataset]) -> tuple[Dataset, int]:
    """Remove aux images whose exact pixels occur in any dataset of `against`."""
    if not len(aux):
        return aux, 0
    seen = set()
    for d in against:
        seen.update(pixel_hashes(d.x))
    keep = np.array([h not in seen for h in pixel_hashes(aux.x)], bool)
    return aux.subset(np.flatnonzero(keep)), int((~keep).sum())


def load_splits(
    data_dir: str | Path | None = None,
    fer2013: str | Path | None = None,
    *,
    aux: str | Sequence[str] | None = (),
    ckplus: str | Path | None = None,
    jaffe: str | Path | None = None,
    custom: str | Path | None = None,
    custom_uploads: str = "accepted",
    folders: Sequence[str | Path] = (),
    sample: int | None = None,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    rgb: bool = False,
    include_test: bool = True,
    cache: bool = True,
    progress: bool | None = None,
) -> dict[str, Dataset]:
    """Train/val/test Datasets: FER2013 Training -> train, PublicTest -> val, PrivateTest -> test.

    data_dir: folder with fer2013.csv(.gz)/ckplus48.npz/jaffe_128.npz (default $FER_HYBRID_DATA
        or <repo>/../shared/data).
    fer2013: the FER2013 CSV (plain/.gz), a `fer-hybrid data pack` file, or the Kaggle image
        folder (train/<class>, test/<class>); default: found in data_dir.
    aux: auxiliary training sets to add, from "ckplus", "jaffe", "custom" (list or comma string).
        Their paths: ckplus/jaffe/custom, else data_dir (or the pack, if it carries them).
    custom_uploads: "accepted" (the curator's accepted uploads) or "all" (every upload); the
        custom holdout never trains either way (`training.data.custom`).
    folders: extra class-folder datasets (<dir>/<class>/*.png), added to train as source "folder".
    Auxiliary images go into train only; exact duplicates (same uint8 pixels) of a val/test image
    are dropped, the count is logged and kept in ``splits["train"].meta["duplicates_dropped"]``.
    sample: keep at most this many images per split (stratified per class, seeded) for quick runs.
    image_size / rgb: final size (Lanczos) and 3-channel output for the transfer models.
    include_test: False skips loading PrivateTest (the test split is then empty).
    """
    data_dir = Path(data_dir).expanduser() if data_dir else default_data_dir()
    aux_names = parse_aux(aux)
    if image_size < 8:
        raise FerError(f"image_size must be >= 8 (got {image_size})")
    fer_path = Path(fer2013).expanduser() if fer2013 else find_fer2013(data_dir)
    fer, packed_aux = load_fer_source(fer_path, cache=cache, progress=progress)

    def fer_split(usage: str) -> Dataset:
        x, y = fer.split(usage)
        return make(x, y, "fer2013")

    train = fer_split("Training")
    val = fer_split("PublicTest")
    test = (
        fer_split("PrivateTest")
        if include_test
        else make(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), [], "fer2013")
    )
    meta: dict = {"fer2013": str(fer_path), "aux": {}, "duplicates_dropped": 0}
    if not len(val) and len(train):
        log.warning(
            "FER2013 source %s has no PublicTest images; holding out 10%% of Training as val",
            fer_path,
        )
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train))
        cut = max(1, len(train) // 10)
        val, train = train.subset(np.sort(order[:cut])), train.subset(np.sort(order[cut:]))

    explicit = {"ckplus": ckplus, "jaffe": jaffe, "custom": custom}
    # named here: an empty part (an empty custom folder) has no source to read a name from
    aux_parts: list[tuple[str, Dataset]] = []
    for name in aux_names:
        if explicit[name] is None and name in packed_aux:
            x, y = packed_aux[name]
        else:
            x, y = load_aux(name, explicit[name], data_dir, progress=progress,
                            custom_uploads=custom_uploads)
        aux_parts.append((name, make(x, y, name)))
    for folder in folders or ():
        from training.data.folders import load_class_folder

        x, y, _ = load_class_folder(folder, progress=progress)
        aux_parts.append(("folder", make(x, y, "folder")))
    for src, part in aux_parts:
        kept, dropped = drop_duplicates(part, [val, test])
        info = meta["aux"].setdefault(src, {"loaded": 0, "duplicates_dropped": 0})
        info["loaded"] += len(part)
        info["duplicates_dropped"] += dropped
        meta["duplicates_dropped"] += dropped
        if dropped:
            log.info("%s: dropped %d image(s) that duplicate val/test images", src, dropped)
        train = concat([train, kept])
    if aux_parts:
        log.info(
            "auxiliary training images: %s; %d exact duplicates of val/test dropped",
            ", ".join(
                f"{k} {v['loaded'] - v['duplicates_dropped']}" for k, v in meta["aux"].items()
            ),
            meta["duplicates_dropped"],
        )

    splits = {"train": train, "val": val, "test": test}
    if sample:
        if sample < 1:
            raise FerError(f"sample must be >= 1 (got {sample})")
        splits = {
            k: stratified_sample(d, sample, seed + i) for i, (k, d) in enumerate(splits.items())
        }
    out = {}
    for k, d in splits.items():
        out[k] = Dataset(finalize(d.x, image_size=image_size, rgb=rgb), d.y, d.source, {})
    out["train"].meta = meta
    return out


# split name -> (x uint8 (N, 48, 48), y int64 (N,))
SplitLoader = Callable[[str], "tuple[np.ndarray, np.ndarray]"]


def split_loader(data_dir: str | Path | None = None,
                 fer2013: str | Path | None = None) -> SplitLoader:
    """split name ('test', 'PublicTest', ...) -> (x, y), loading the dataset once, on first use
    (commands that may find every prediction saved never read the dataset at all)."""
    from training.core.splits import normalise_split, split_title

    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        split = normalise_split(split)
        if not cache:
            for key, ds in load_splits(data_dir=data_dir, fer2013=fer2013).items():
                cache[key] = (np.asarray(ds.x), np.asarray(ds.y, dtype="int64"))
        if split not in cache:
            raise FerError(f"the dataset has no {split_title(split)} split")
        return cache[split]

    return load
