"""Fake-camera videos: Chromium plays a YUV4MPEG2 file as the camera
(`--use-file-for-fake-video-capture`). Faces come only from images shipped inside packages
(scikit-image's astronaut, matplotlib's Grace Hopper), never from a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FRAME = (480, 640)  # (height, width): what the live page asks the camera for


def rgb_to_i420(rgb: np.ndarray) -> bytes:
    """RGB uint8 (H, W, 3), even H and W -> planar I420 (BT.601 full range, as C420jpeg means)."""
    h, w, _ = rgb.shape
    assert h % 2 == 0 and w % 2 == 0, "I420 needs even sizes"
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y, sub(u), sub(v)]
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in planes)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Write RGB frames as a YUV4MPEG2 (I420) file."""
    h, w, _ = frames[0].shape
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for fr in frames:
            f.write(b"FRAME\n")
            f.write(rgb_to_i420(fr))
    return path


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(img, (h, w), anti_aliasing=True, preserve_range=True).astype(np.uint8)


def _heads() -> list[np.ndarray]:
    """Head-and-shoulders crops (5:4 tall) of the two packaged portraits."""
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()[0:300, 60:300]  # the crop tests/e2e_support.py uses
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))[20:420, 100:420]
    return [astronaut, hopper]


def face_frame(faces: int) -> np.ndarray:
    """A 640x480 frame with `faces` heads (1..6) on a dark grey background, in a grid of
    up to 3 columns; alternate copies are mirrored so no two neighbours are identical."""
    if not 1 <= faces <= 6:
        raise ValueError("faces must be 1..6")
    h, w = FRAME
    canvas = np.full((h, w, 3), 40, np.uint8)
    if faces == 1:  # one large face, as a selfie shows it
        head = _resize(_heads()[0], 400, 320)
        canvas[40:440, 160:480] = head
        return canvas
    cols = min(3, faces)
    rows = -(-faces // cols)
    cell_w, cell_h = w // cols, h // rows
    side_h = int(min(cell_h * 0.92, cell_w * 0.92 * 5 / 4))
    side_w = side_h * 4 // 5
    heads = _heads()
    for i in range(faces):
        head = _resize(heads[i % len(heads)], side_h, side_w)
        if (i // len(heads)) % 2:
            head = head[:, ::-1]
        r, c = divmod(i, cols)
        y0 = r * cell_h + (cell_h - side_h) // 2
        x0 = c * cell_w + (cell_w - side_w) // 2
        canvas[y0:y0 + side_h, x0:x0 + side_w] = head
    return canvas


def jitter(frame: np.ndarray, n: int = 10) -> list[np.ndarray]:
    """A few frames with a 1-2 px shift so the fake camera shows a (barely) moving picture."""
    return [np.roll(frame, shift=(i % 3) - 1, axis=1) for i in range(n)]


def write_face_video(path: Path, faces: int, fps: int = 30) -> Path:
    return write_y4m(path, jitter(face_frame(faces)), fps=fps)
