"""training/robustness/perturb.py: seeded, deterministic, and each condition damages what it claims
to."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_faces

from training.robustness.perturb import (
    CONDITIONS,
    SEVERITIES,
    disk_kernel,
    line_kernel,
    perturb,
    rotate,
)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    x, _ = synthetic_faces(24, seed=7)
    # lift the synthetic faces to a mid-grey face-like range (their background is 0..60)
    return np.clip(x.astype(int) + 70, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_every_condition_is_deterministic_shaped_and_seeded(faces, name):
    for s in SEVERITIES:
        a = perturb(faces, name, s, seed=1)
        assert a.dtype == np.uint8 and a.shape == faces.shape
        np.testing.assert_array_equal(a, perturb(faces, name, s, seed=1))
        assert not np.array_equal(a, faces), (name, s)
    random = {"low_light", "night", "motion_blur", "roll", "occlusion_hand", "low_light_roll",
              "night_mask", "low_light_scale"}
    changed = not np.array_equal(perturb(faces, name, 2, seed=1), perturb(faces, name, 2, seed=2))
    assert changed == (name in random), name


def test_float_input_and_single_crop(faces):
    a = perturb(faces.astype("float32"), "jpeg", 2)
    np.testing.assert_array_equal(a, perturb(faces, "jpeg", 2))
    assert perturb(faces[0], "scale", 2).shape == (1, 48, 48)
    np.testing.assert_array_equal(perturb(faces, "clean", 0), faces)
    with pytest.raises(ValueError, match="unknown condition"):
        perturb(faces, "fog", 1)
    with pytest.raises(ValueError, match="severities"):
        perturb(faces, "jpeg", 4)


def test_one_condition_does_not_depend_on_another(faces):
    """Each (condition, severity) has its own generator: running others first changes nothing."""
    first = perturb(faces, "roll", 2, seed=3)
    perturb(faces, "low_light", 1, seed=3)
    np.testing.assert_array_equal(perturb(faces, "roll", 2, seed=3), first)


def _mean_abs_change(faces, name):
    return [np.abs(perturb(faces, name, s, seed=0).astype(int) - faces).mean() for s in SEVERITIES]


@pytest.mark.parametrize("name", ["low_light", "night", "over_exposure", "motion_blur",
                                  "defocus_blur", "jpeg", "roll", "scale", "occlusion_eyes",
                                  "occlusion_lower", "occlusion_hand"])
def test_damage_grows_with_severity(faces, name):
    d = _mean_abs_change(faces, name)
    assert d[0] < d[1] < d[2], (name, d)


def test_lighting_moves_the_mean(faces):
    means = {n: [perturb(faces, n, s).mean() for s in (0, *SEVERITIES)]
             for n in ("low_light", "night", "over_exposure")}
    assert all(a > b for a, b in zip(means["low_light"], means["low_light"][1:]))
    assert all(a > b for a, b in zip(means["night"], means["night"][1:]))
    assert means["night"][1] < means["low_light"][2]  # night is darker than any low light
    assert all(a < b for a, b in zip(means["over_exposure"], means["over_exposure"][1:]))
    noisy = perturb(np.full((4, 48, 48), 128, np.uint8), "low_light", 2).astype(float)
    assert 2 < noisy.std() < 6  # sensor noise sigma 4 on a flat patch


def test_occlusion_masks_the_right_rows(faces):
    eyes = perturb(faces, "occlusion_eyes", 2)
    assert (eyes[:, 13:23, 5:43] == 20).all()
    outside = np.ones((48, 48), bool)
    outside[13:23, 5:43] = False
    np.testing.assert_array_equal(eyes[:, outside], faces[:, outside])
    mask = perturb(faces, "occlusion_lower", 2)
    assert (mask[:, 29:, 4:44] == 200).all() and np.array_equal(mask[:, :29], faces[:, :29])
    hand = perturb(faces, "occlusion_hand", 2, seed=0)
    changed = hand != faces
    rows = np.flatnonzero(changed.any(axis=(0, 2)))
    assert changed.any(axis=(1, 2)).sum() >= len(faces) - 2  # a flat patch may match by chance
    assert rows.min() < 16 and rows.max() > 32  # placed anywhere, not always the same spot
    for i in range(len(faces)):
        r, c = np.nonzero(changed[i])
        if r.size:
            assert r.max() - r.min() < 16 and c.max() - c.min() < 16


def test_roll_keeps_shape_and_turns_the_picture():
    bar = np.zeros((1, 48, 48))
    bar[0, 23:25, 4:44] = 255  # a horizontal bar through the centre
    for deg in (10, 20, 30):
        out = rotate(bar, [deg])
        assert out.shape == bar.shape
        assert out[0, 23:25, 23:25].min() > 200  # the centre stays
        ys, xs = np.nonzero(out[0] > 127)
        slope = np.polyfit(xs, ys, 1)[0]
        assert abs(np.degrees(np.arctan(abs(slope))) - deg) < 2.5
    np.testing.assert_allclose(rotate(bar, [0]), bar)
    signs = np.sign([np.polyfit(*np.nonzero(r > 127)[::-1], 1)[0]
                     for r in perturb(np.repeat(bar, 40, 0), "roll", 1, seed=0)])
    assert set(signs) == {-1.0, 1.0}  # a random sign per image


def test_scale_and_blur_remove_fine_detail():
    checker = ((np.indices((48, 48)).sum(axis=0) % 2) * 255).astype(np.uint8)[None]
    for name in ("scale", "defocus_blur", "motion_blur", "night"):
        contrast = [perturb(checker, name, s).std() for s in SEVERITIES]
        assert contrast[-1] < 0.5 * checker.std(), name
    assert disk_kernel(2).sum() == pytest.approx(1) and disk_kernel(2).shape == (5, 5)
    k = line_kernel(5, 0.0)
    assert k.shape == (5, 5) and k[2].sum() == pytest.approx(1)  # horizontal: the middle row


def test_combinations_chain_their_steps(faces):
    got = perturb(faces, "night_mask", 1, seed=0)
    assert got.mean() < perturb(faces, "occlusion_lower", 2).mean() / 3
    # the (bright) mask went on before the night darkened everything
    night = perturb(faces, "night", 1, seed=0)
    assert got[:, 30:, 6:42].mean() > night[:, 30:, 6:42].mean() + 5
    assert perturb(faces, "low_light_roll", 2).mean() < faces.mean() / 2
