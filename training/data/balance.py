"""SMOTE oversampling of the training split (opt-in: `fer-hybrid train --smote`)."""

from __future__ import annotations

import numpy as np


def smote(
    x: np.ndarray, y: np.ndarray, *, seed: int = 0, k: int = 5, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Oversample every minority class up to the majority count (SMOTE, Chawla et al. 2002).

    Each synthetic image is ``x_i + u * (x_nn - x_i)``, u ~ U(0, 1), where x_i is a random
    image of the class and x_nn one of its k nearest same-class neighbours in pixel space
    (Euclidean). Results are rounded and clipped to x's dtype range, so uint8 stays uint8.
    Returns (x, y) with the originals first and the synthetic images appended.
    Memory: neighbours are found one class at a time with sklearn (float32 copy of one
    class only) and the new images are built in chunks.
    """
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    if not len(y):
        return x, y
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    target = int(counts.max())
    new_x, new_y = [x], [y]
    info = np.iinfo(x.dtype) if np.issubdtype(x.dtype, np.integer) else None
    for c, n_c in zip(classes, counts):
        need = target - int(n_c)
        if need <= 0:
            continue
        idx = np.flatnonzero(y == c)
        members = x[idx].reshape(len(idx), -1)
        base = rng.integers(0, len(idx), size=need)
        kk = min(k, len(idx) - 1)
        if kk < 1:  # a single image: nothing to interpolate with, so repeat it
            new_x.append(x[idx[base]])
            new_y.append(np.full(need, c, np.int64))
            continue
        feats = members.astype(np.float32)
        nn = NearestNeighbors(n_neighbors=kk + 1).fit(feats)
        # neighbours of each member once (column 0 is normally the point itself)
        neigh = np.empty((len(idx), kk), np.int64)
        for s in range(0, len(idx), chunk):
            got = nn.kneighbors(feats[s : s + chunk], return_distance=False)
            for r, row in enumerate(got):
                row = row[row != s + r][:kk]
                neigh[s + r, : len(row)] = row
                if len(row) < kk:  # exact duplicates can push the point itself out of column 0
                    neigh[s + r, len(row) :] = row[-1] if len(row) else s + r
        del feats
        pick = neigh[base, rng.integers(0, kk, size=need)]
        gap = rng.random(need, dtype=np.float32)
        out = np.empty((need, *x.shape[1:]), x.dtype)
        for s in range(0, need, chunk):
            a = members[base[s : s + chunk]].astype(np.float32)
            b = members[pick[s : s + chunk]].astype(np.float32)
            v = a + gap[s : s + chunk, None] * (b - a)
            if info is not None:
                v = np.clip(np.rint(v), info.min, info.max)
            out[s : s + chunk] = v.reshape(-1, *x.shape[1:]).astype(x.dtype)
        new_x.append(out)
        new_y.append(np.full(need, c, np.int64))
    return np.concatenate(new_x), np.concatenate(new_y)
