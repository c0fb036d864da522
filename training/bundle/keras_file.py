"""best.keras <-> a compact weights file, and back to a normal float32 .keras file.

A Keras 3 `.keras` file is an uncompressed zip of `config.json` (the architecture),
`metadata.json` and `model.weights.h5` (one HDF5 dataset per variable, in groups that carry
a `name` attribute). Its float32 weights are nearly all of its size, so the compact form
keeps the zip's other entries verbatim, the HDF5 layout (group attributes, dataset paths and
dtypes) as JSON, and the arrays in an `.npz`, float32 ones rounded to float16 when asked:
half the size. `rebuild_keras` writes the HDF5 back with float32 arrays, so what it returns
is an ordinary .keras file that `training.models.serialization.load_model` loads.

numpy, h5py (a Keras dependency) and the standard library only: no Keras, no TensorFlow.
"""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from training.core.errors import FerError

WEIGHTS_ENTRY = "model.weights.h5"
# Entries are written with this fixed time so that the same weights give the same bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_LAYOUT_KEY = "__layout__"
STORAGES = ("float16", "float32")


class UnsupportedKerasFile(FerError):
    """The .keras file is not laid out as this module expects (bundle it verbatim instead)."""


def _attr_value(value):
    """An HDF5 attribute as JSON (Keras writes strings only; anything else is refused)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    raise UnsupportedKerasFile(f"HDF5 attribute of type {type(value).__name__}")


def read_weights(keras_bytes: bytes) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """(layout, [(dataset path, array)]) of a .keras file's model.weights.h5."""
    import h5py

    try:
        archive = zipfile.ZipFile(io.BytesIO(keras_bytes))
        names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise UnsupportedKerasFile(f"not a .keras zip ({err})") from err
    if WEIGHTS_ENTRY not in names:
        raise UnsupportedKerasFile(f"no {WEIGHTS_ENTRY} in the .keras file (found {names})")
    groups: dict[str, dict] = {}
    datasets: list[tuple[str, np.ndarray]] = []
    with archive, h5py.File(io.BytesIO(archive.read(WEIGHTS_ENTRY)), "r") as h5:
        groups[""] = {k: _attr_value(v) for k, v in h5.attrs.items()}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                if obj.attrs:
                    raise UnsupportedKerasFile(f"dataset {name} has attributes")
                datasets.append((name, np.asarray(obj[()])))
            else:
                groups[name] = {k: _attr_value(v) for k, v in obj.attrs.items()}

        h5.visititems(visit)
        # latin-1 maps bytes to str one to one, so any entry survives the JSON layout.
        others = {n: archive.read(n).decode("latin-1") for n in names if n != WEIGHTS_ENTRY}
    layout = {"entries": names, "other_entries": others, "groups": groups,
              "datasets": [[path, str(arr.dtype), list(arr.shape)] for path, arr in datasets]}
    return layout, datasets


def compact_keras(keras_bytes: bytes, storage: str) -> bytes:
    """The compact form (.npz bytes) of a .keras file, its float32 weights stored as `storage`.

    UnsupportedKerasFile if the file is not a single-HDF5 .keras file; FerError if float16
    cannot hold a weight (|w| > 65504 would become inf).
    """
    if storage not in STORAGES:
        raise FerError(f"unknown weight storage {storage!r}; use one of {', '.join(STORAGES)}")
    layout, datasets = read_weights(keras_bytes)
    arrays = {}
    for i, (path, arr) in enumerate(datasets):
        if storage == "float16" and arr.dtype == np.float32:
            if arr.size and np.abs(arr).max() > np.finfo(np.float16).max:
                raise FerError(f"weight {path} exceeds float16's range; store float32")
            arr = arr.astype(np.float16)
        arrays[f"w{i}"] = arr
    layout["storage"] = storage
    arrays[_LAYOUT_KEY] = np.frombuffer(json.dumps(layout).encode("utf-8"), dtype=np.uint8)
    # An .npz written by hand: np.savez stamps the current time into the zip, and the same
    # weights must give the same bytes (the bundle's id is its stream's sha256). Uncompressed:
    # the bundle stream may be lzma'd as a whole.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            with archive.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def stored_arrays(compact: bytes) -> tuple[dict, list[np.ndarray]]:
    """(layout, arrays as stored) of `compact_keras`'s output."""
    try:
        with np.load(io.BytesIO(compact), allow_pickle=False) as npz:
            layout = json.loads(bytes(npz[_LAYOUT_KEY]).decode("utf-8"))
            return layout, [npz[f"w{i}"] for i in range(len(layout["datasets"]))]
    except Exception as err:  # a damaged file: the bundle's checksums should have caught it
        raise FerError(f"compact model weights are unreadable ({err})") from err


def holds_weights(keras_bytes: bytes, compact: bytes) -> bool:
    """True if the .keras file's weights are exactly the compact form's (in their dtypes)."""
    layout, stored = stored_arrays(compact)
    _, found = read_weights(keras_bytes)
    if [path for path, _ in found] != [d[0] for d in layout["datasets"]]:
        return False
    return all(arr.dtype == np.dtype(dtype) and np.array_equal(arr, kept.astype(dtype))
               for (_, arr), kept, (_, dtype, _) in zip(found, stored, layout["datasets"]))


def rebuild_keras(compact: bytes) -> bytes:
    """A normal .keras file (float32 weights) from `compact_keras`'s output."""
    import h5py

    layout, arrays = stored_arrays(compact)
    h5_buf = io.BytesIO()
    with h5py.File(h5_buf, "w", track_order=True) as h5:
        h5.attrs.update(layout["groups"].get("", {}))
        for name, attrs in layout["groups"].items():
            if name:
                h5.require_group(name).attrs.update(attrs)
        for (path, dtype, shape), arr in zip(layout["datasets"], arrays):
            if list(arr.shape) != shape:
                raise FerError(f"compact weight {path} has shape {arr.shape}, expected {shape}")
            h5.create_dataset(path, data=arr.astype(dtype))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in layout["entries"]:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            data = (h5_buf.getvalue() if name == WEIGHTS_ENTRY
                    else layout["other_entries"][name].encode("latin-1"))
            archive.writestr(info, data)
    return out.getvalue()


def float16_rounded(keras_bytes: bytes) -> bytes:
    """The .keras file the float16 storage restores to (what `precision` measures)."""
    return rebuild_keras(compact_keras(keras_bytes, "float16"))
