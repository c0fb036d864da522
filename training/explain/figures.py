"""Pictures for the explain report: saliency overlays, gallery tiles, the class-average figure.

Tiles are small PNGs built straight from arrays (Pillow, no axes: the HTML around them carries
the captions as text); the class-average grid is a matplotlib figure saved with
`training.core.plots._save`. matplotlib and Pillow are imported on first use.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from contract import LABELS

#: Upscaling of the 48x48 tiles in the report, so a face is legible without zooming, and the
#: widest a tile gets (two tiles of five panels side by side on a laptop screen).
TILE_SCALE = 2.5
TILE_MAX_WIDTH = 560
#: Largest opacity of the heat colours over the face.
ALPHA = 0.6


def display_map(saliency: np.ndarray) -> np.ndarray:
    """A map for display: its positive part (evidence *for* the class) scaled to max 1."""
    pos = np.maximum(np.asarray(saliency, "float32"), 0.0)
    top = float(pos.max()) if pos.size else 0.0
    return pos / top if top > 0 else pos


def overlay(face: np.ndarray, saliency: np.ndarray | None, *, cmap: str = "jet") -> np.ndarray:
    """Grey face (H, W) with the display map as heat colours, more opaque where it is high."""
    grey = np.asarray(face, "float32")
    rgb = np.repeat((grey / 255.0)[..., None], 3, axis=2)
    if saliency is not None:
        import matplotlib

        m = display_map(saliency)
        heat = matplotlib.colormaps[cmap](m)[..., :3]
        a = (ALPHA * m)[..., None]
        rgb = (1 - a) * rgb + a * heat
    return np.clip(np.rint(rgb * 255), 0, 255).astype("uint8")


def tile_png(panels: Sequence[np.ndarray], *, scale: float = TILE_SCALE, gap: int = 2) -> bytes:
    """Panels (H, W, 3) uint8 side by side, upscaled, as PNG bytes."""
    from PIL import Image

    h, w = panels[0].shape[:2]
    strip = np.full((h, len(panels) * (w + gap) - gap, 3), 255, "uint8")
    for i, p in enumerate(panels):
        strip[:, i * (w + gap): i * (w + gap) + w] = p
    scale = min(scale, TILE_MAX_WIDTH / strip.shape[1])
    img = Image.fromarray(strip).resize((round(strip.shape[1] * scale), round(h * scale)),
                                        Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def class_average_figure(faces: np.ndarray, maps: dict[str, np.ndarray], counts: Sequence[int],
                         accuracy: Sequence[float], path: str | Path, *,
                         labels: Sequence[str] = LABELS, title: str = "") -> Path:
    """One column per class: the class-average face, then each method's average map over it.

    faces (K, H, W) float grey levels; maps {method: (K, H, W)}; counts = images averaged.
    """
    from training.core.plots import _pyplot, _save

    plt = _pyplot()
    rows = [("average face", None)] + list(maps.items())
    k = len(labels)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.45 * k, 1.6 * len(rows) + 0.6), dpi=110,
                             squeeze=False)
    try:
        for r, (name, stack) in enumerate(rows):
            for c in range(k):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if counts[c] == 0:
                    ax.set_axis_off()
                    continue
                ax.imshow(overlay(faces[c], None if stack is None else stack[c]),
                          interpolation="bicubic")  # as the gallery tiles
                if r == 0:
                    ax.set_title(f"{labels[c]}\nn={counts[c]}, acc {100 * accuracy[c]:.0f}%",
                                 fontsize=8)
                if c == 0:
                    ax.set_ylabel(name, fontsize=8)
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return _save(fig, path)
