"""Fake-camera clips for the live-loop tests (Y4M via e2e_support). The benchmarks' five-face
frame is training/bench/video.py's `face_frame`; the 1-2 px jitter is its `jitter`.

Faces come from packaged images only (scikit-image's astronaut, matplotlib's Grace Hopper),
composed by tests/scenes.py. Every clip is 640x480, what the page asks the camera for.

* `moving_face()`  one face sliding left and right (boxes must follow it);
* `entering_face()` one face, then a second one appears part-way through the loop.
"""

from __future__ import annotations

import scenes as S

from training.bench.video import jitter


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
    return jitter(alone.image, n_alone) + jitter(both.image, n_both), both.boxes[1]
