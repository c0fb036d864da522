"""Fake-camera clips for the live-loop tests and tests/bench_page.py (Y4M via e2e_support).

Faces come from packaged images only (scikit-image's astronaut, matplotlib's Grace Hopper),
composed by tests/scenes.py. Every clip is 640x480, what the page asks the camera for.

* `five_faces()`   five faces on one frame (the 5-face speed goal), 1-2 px jitter;
* `moving_face()`  one face sliding left and right (boxes must follow it);
* `entering_face()` one face, then a second one appears part-way through the loop.
"""

from __future__ import annotations

import numpy as np
import scenes as S

# Face width 72 px: big enough for the full-frame 256x256 detector pass, small enough for five
# non-overlapping patches on 640x480.
FIVE = [(100.0, 120.0), (320.0, 120.0), (540.0, 120.0), (210.0, 360.0), (430.0, 360.0)]


def five_faces(n: int = 8) -> tuple[list[np.ndarray], list[tuple]]:
    """Frames (with 1-2 px jitter) and the five ground-truth boxes."""
    sources = [S.astronaut_source(), S.hopper_source()]
    placements = [S.Placement(i % 2, 72, 0.0, "normal", c) for i, c in enumerate(FIVE)]
    scene = S.compose(placements, sources, background_kind="gradient", seed=3)
    return [np.roll(scene.image, (i % 3) - 1, axis=1) for i in range(n)], scene.boxes


def moving_face(n: int = 30, amplitude: float = 120.0, size: int = 110):
    """One face whose centre moves along x by a triangle wave (`n` frames, one period), so the
    clip loops without a jump. Returns (frames, true boxes per frame)."""
    sources = [S.astronaut_source()]
    frames, boxes = [], []
    for i in range(n):
        phase = 1 - abs(2 * i / n - 1)  # 0 -> 1 -> 0
        cx = 320.0 - amplitude / 2 + amplitude * phase
        scene = S.compose([S.Placement(0, size, 0.0, "normal", (cx, 220.0))], sources,
                          background_kind="gradient", seed=5)
        frames.append(scene.image)
        boxes.append(scene.boxes[0])
    return frames, boxes


def entering_face(n_alone: int = 20, n_both: int = 20):
    """`n_alone` frames with one face on the left, then `n_both` with a second face on the right.
    Returns (frames, boxes of the second face)."""
    sources = [S.astronaut_source(), S.hopper_source()]
    first = S.Placement(0, 110, 0.0, "normal", (170.0, 220.0))
    second = S.Placement(1, 110, 0.0, "normal", (470.0, 220.0))
    alone = S.compose([first], sources, background_kind="gradient", seed=7)
    both = S.compose([first, second], sources, background_kind="gradient", seed=7)
    frames = [np.roll(alone.image, (i % 3) - 1, axis=1) for i in range(n_alone)]
    frames += [np.roll(both.image, (i % 3) - 1, axis=1) for i in range(n_both)]
    return frames, both.boxes[1]
