"""Robustness augmentations (`--robust-aug`): each layer does what its condition means, only
while training, reproducibly, saved and reloaded with the training model; the option reaches
config.json, resume and GPU plans; off by default, so old runs and checkpoints are unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import NO_TENSORFLOW, synthetic_faces

from training.core.errors import FerError
from training.core.runs import RunFolder, initial_state
from training.fit.augment import build_augmenter, with_augmentation
from training.fit.augment_robust import (
    ROBUST_AUGS,
    RandomBlur,
    RandomDownscale,
    RandomLowLight,
    RandomOcclusion,
    robust_names,
)
from training.fit.train import TrainConfig, prepare_run

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "training" / "checkpoints" / "cpu-sepnet-reg"
LAYERS = (RandomLowLight, RandomBlur, RandomOcclusion, RandomDownscale)


def np_(t) -> np.ndarray:
    return keras.ops.convert_to_numpy(t)


def faces(n=16, seed=0) -> np.ndarray:
    return synthetic_faces(n, seed=seed)[0][..., None].astype("float32")


def noise(n=16, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, 48, 48, 1)) * 255).astype("float32")


def high_freq(x: np.ndarray) -> np.ndarray:
    """Mean absolute difference of neighbouring pixels, per image."""
    return (np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3))
            + np.abs(np.diff(x, axis=2)).mean(axis=(1, 2, 3)))


# --- each layer does what its condition means ----------------------------------------------


def test_low_light_darkens_and_adds_sensor_noise():
    x = faces()
    dark = np_(RandomLowLight(1.0, noise=(0, 0), over_p=0.0, seed=1)(x, training=True))
    assert (dark.mean(axis=(1, 2, 3)) < 0.9 * x.mean(axis=(1, 2, 3))).all()
    assert (dark <= x + 1e-3).all()  # gamma >= 1 and gain <= 1 never brighten a pixel
    grey = np.full((16, 48, 48, 1), 128.0, "float32")
    noisy = np_(RandomLowLight(1.0, gamma=(1, 1), gain=(1, 1), noise=(10, 10), over_p=0.0,
                               seed=1)(grey, training=True))
    assert abs(noisy.mean() - 128.0) < 0.5 and 9.5 < noisy.std() < 10.5
    bright = np_(RandomLowLight(1.0, noise=(0, 0), over_p=1.0, seed=1)(x, training=True))
    assert (bright.mean(axis=(1, 2, 3)) > 1.1 * x.mean(axis=(1, 2, 3))).all()
    assert bright.max() <= 255.0 and dark.min() >= 0.0


def test_blur_lowers_high_frequency_energy_and_keeps_the_level():
    x = noise()
    for motion_p in (0.0, 1.0):  # defocus, then motion
        y = np_(RandomBlur(1.0, motion_p=motion_p, seed=2)(x, training=True))
        assert (high_freq(y) <= high_freq(x)).all()  # sigma 0.3 is barely a blur
        assert high_freq(y).mean() < 0.5 * high_freq(x).mean()
        assert np.abs(y.mean(axis=(1, 2, 3)) - x.mean(axis=(1, 2, 3))).max() < 2.0
    y = np_(RandomBlur(1.0, sigma=(0.8, 1.5), motion_p=0.0, seed=2)(x, training=True))
    assert (high_freq(y) < 0.5 * high_freq(x)).all()
    flat = np.full((4, 48, 48, 1), 200.0, "float32")  # mirrored borders: edges do not darken
    assert np.allclose(np_(RandomBlur(1.0, seed=2)(flat, training=True)), 200.0, atol=1e-3)


def test_blur_kernels_are_gaussians_or_lines_through_the_centre():
    layer = RandomBlur(1.0, seed=3)
    layer.motion_p = 1.0
    lines = np_(layer.kernels(64))
    assert np.allclose(lines.sum(axis=(1, 2)), 1.0, atol=1e-5)
    directions = set()
    for k in lines:
        ys, xs = np.nonzero(k > 1e-6)
        ys, xs = ys - 3, xs - 3
        if (ys == 0).all():
            directions.add("horizontal")
        elif (xs == 0).all():
            directions.add("vertical")
        elif (ys == xs).all():
            directions.add("diagonal")
        elif (ys == -xs).all():
            directions.add("anti-diagonal")
        else:
            pytest.fail(f"not a line through the centre: {k}")
        assert 3 <= len(ys) <= 7 and k[3, 3] == k.max()
    assert len(directions) == 4
    layer.motion_p = 0.0
    gauss = np_(layer.kernels(8))
    assert np.allclose(gauss, np.transpose(gauss, (0, 2, 1)), atol=1e-6)  # isotropic
    assert (gauss > 0).all() and np.allclose(gauss.sum(axis=(1, 2)), 1.0, atol=1e-5)


@pytest.mark.parametrize("kind, flat_rows, kept_rows, cols", [
    ("eyes", slice(16, 20), [slice(0, 10), slice(27, 48)], slice(6, 42)),
    ("mask", slice(31, 48), [slice(0, 25)], slice(5, 43)),
])
def test_occlusion_covers_the_intended_rows_with_one_grey(kind, flat_rows, kept_rows, cols):
    x = noise(32)
    y = np_(RandomOcclusion(1.0, kinds=(kind,), noise_p=0.0, seed=4)(x, training=True))
    block = y[:, flat_rows, cols]
    assert (block == block[:, :1, :1]).all()  # one flat grey level per image
    assert len(np.unique(block[:, 0, 0])) > 20  # the level is drawn per image
    for rows in kept_rows:
        assert np.array_equal(y[:, rows], x[:, rows])


def test_occlusion_hand_is_one_rectangle_anywhere():
    x = noise(32)
    y = np_(RandomOcclusion(1.0, kinds=("hand",), noise_p=0.0, seed=5)(x, training=True))
    tops = set()
    for a, b in zip(x[..., 0], y[..., 0], strict=True):
        ys, xs = np.nonzero(a != b)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert 13 <= h <= 27 and 13 <= w <= 27
        assert len(ys) >= 0.95 * h * w  # a filled rectangle (a pixel may equal the fill)
        tops.add(int(ys.min()))
    assert len(tops) > 8
    mixed = np_(RandomOcclusion(1.0, kinds=("eyes",), noise_p=1.0, seed=5)(x, training=True))
    assert mixed[:, 16:20, 6:42].std(axis=(1, 2, 3)).min() > 40  # noise-filled


def test_downscale_removes_fine_detail_but_keeps_the_shape():
    stripes = np.zeros((8, 48, 48, 1), "float32")
    stripes[:, :, ::2] = 255.0  # 1-pixel stripes: no 16..32 px image can hold them
    y = np_(RandomDownscale(1.0, seed=6)(stripes, training=True))
    assert (y.std(axis=(1, 2, 3)) < 0.2 * stripes.std(axis=(1, 2, 3))).all()
    x = faces(8)
    y = np_(RandomDownscale(1.0, seed=6)(x, training=True))
    blob = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(
        np_(RandomBlur(1.0, sigma=(1.5, 1.5), motion_p=0.0, seed=0)(x, training=True)), y,
        strict=True)]
    assert min(blob) > 0.9  # the face (its blob) stays where it was
    assert np.abs(y.mean(axis=(1, 2, 3)) - x.mean(axis=(1, 2, 3))).max() < 1.0
    assert (high_freq(y) < 0.7 * high_freq(x)).all()


@pytest.mark.parametrize("side", [16, 23, 32])
def test_downscale_is_an_antialiased_bilinear_resize_down_and_back(side):
    x = noise(4)
    y = np_(RandomDownscale(1.0, size=(side, side), seed=0)(x, training=True))
    small = keras.ops.image.resize(x, (side, side), interpolation="bilinear", antialias=True)
    ref = np_(keras.ops.image.resize(small, (48, 48), interpolation="bilinear"))
    assert np.abs(y - ref).max() < 0.05


# --- only while training, with probability p, reproducibly ---------------------------------


@pytest.mark.parametrize("cls", LAYERS)
def test_identity_unless_training_and_p_applies_per_image(cls):
    x = noise(64)
    assert np.array_equal(np_(cls(1.0, seed=0)(x, training=False)), x)
    assert np.array_equal(np_(cls(1.0, seed=0)(x)), x)
    assert np.array_equal(np_(cls(0.0, seed=0)(x, training=True)), x)
    y = np_(cls(0.5, seed=0)(x, training=True))
    changed = (y != x).reshape(64, -1).any(axis=1).mean()
    assert 0.25 < changed < 0.75
    assert y.shape == x.shape and y.dtype == x.dtype and np.isfinite(y).all()


@pytest.mark.parametrize("cls", LAYERS)
def test_seeded_layers_are_reproducible(cls):
    x = faces(8)
    a, b, c = cls(1.0, seed=7), cls(1.0, seed=7), cls(1.0, seed=8)
    first = np_(a(x, training=True))
    assert np.array_equal(first, np_(b(x, training=True)))
    assert not np.array_equal(first, np_(c(x, training=True)))
    assert not np.array_equal(first, np_(a(x, training=True)))  # a new draw every step


@pytest.mark.parametrize("cls", LAYERS)
def test_layers_round_trip_through_keras_serialization(cls):
    layer = cls(0.4, seed=3, name="x")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(again) is cls and again.get_config() == layer.get_config()
    assert cls.from_config(layer.get_config()).get_config() == layer.get_config()
    assert again.p == 0.4 and again.seed == 3
    with pytest.raises(ValueError):
        cls(1.5)


# --- the augmenter, saved with the training model -------------------------------------------


def test_augmenter_is_unchanged_unless_asked():
    def kinds(augmenter):
        return [type(layer).__name__ for layer in augmenter.layers]

    paper = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation"]
    assert kinds(build_augmenter(seed=0, erasing=0.5)) == [*paper, "RandomErasing"]
    assert kinds(build_augmenter(seed=0, robust=[])) == paper
    robust = build_augmenter(seed=0, erasing=0.5, robust="all", robust_p=0.2)
    assert kinds(robust) == [*paper, "RandomOcclusion", "RandomBlur", "RandomLowLight",
                             "RandomDownscale", "RandomErasing"]
    assert [layer.name for layer in robust.layers[4:8]] == [
        "robust_occlusion", "robust_blur", "robust_low_light", "robust_downscale"]
    assert robust.layers[1].factor == pytest.approx((-30 / 360, 30 / 360))
    assert {layer.p for layer in robust.layers[4:8]} == {0.2}
    assert len({layer.seed for layer in robust.layers}) == len(robust.layers)
    only_rotation = build_augmenter(seed=0, robust=["rotation30"])
    assert len(only_rotation.layers) == 4
    assert only_rotation.layers[1].factor == pytest.approx((-30 / 360, 30 / 360))


def test_a_saved_training_model_reloads_with_the_robust_layers(tmp_path):
    from training.models import build_model
    from training.models.serialization import load_model

    model = with_augmentation(build_model("baseline_cnn"), seed=0, robust="all", robust_p=0.3)
    model.save(tmp_path / "train.keras")
    again = load_model(tmp_path / "train.keras")
    before, after = model.layers[1], again.layers[1]
    assert [type(layer) for layer in after.layers] == [type(layer) for layer in before.layers]
    assert [layer.get_config() for layer in after.layers] == \
        [layer.get_config() for layer in before.layers]
    x = faces(4)
    assert np.allclose(np_(again(x)), np_(model(x)), atol=1e-5)  # inference: no augmentation


@pytest.mark.slow
def _old_config() -> dict:
    """The committed run's config.json as code before --robust-aug wrote it (a resume with
    today's code adds the robust_* keys, so they are taken out here)."""
    config = json.loads((CHECKPOINT / "config.json").read_text())
    return {k: v for k, v in config.items() if not k.startswith("robust_")}


def test_the_committed_run_still_loads_with_its_augmenter(tmp_path):
    """A run from before --robust-aug (its config.json without the robust_* keys) gets today's
    augmenter back: its committed model wrapped with the augmenter its config describes, saved
    and loaded again (a completed run keeps no training checkpoint, so the wrapping is redone)."""
    from training.models.serialization import load_model

    saved = TrainConfig.from_json(_old_config())
    assert saved.robust_aug == [] and saved.robust_p == 0.3  # an old config.json
    core = load_model(CHECKPOINT / "best.keras")
    model = with_augmentation(core, seed=saved.seed, erasing=saved.random_erasing,
                              robust=saved.robust_aug, robust_p=saved.robust_p)
    model.save(tmp_path / "train.keras")
    model = load_model(tmp_path / "train.keras")
    fresh = build_augmenter(seed=saved.seed, erasing=saved.random_erasing,
                            robust=saved.robust_aug, robust_p=saved.robust_p)
    # Names left out: Keras numbers auto-named layers per process (random_flip_5 after
    # other tests built four), which says nothing about the augmentation.
    def spec(layer):
        return type(layer), {k: v for k, v in layer.get_config().items() if k != "name"}

    assert [spec(a) for a in model.layers[1].layers] == [spec(b) for b in fresh.layers]


# --- the option: names, config.json, resume, GPU plans -------------------------------------


def test_names_are_checked_and_expanded():
    assert robust_names("all") == list(ROBUST_AUGS)
    assert robust_names("downscale, BLUR,blur,") == ["blur", "downscale"]
    assert robust_names([]) == [] and robust_names("") == []
    with pytest.raises(FerError, match="unknown 'fog'.*low_light.*or all"):
        robust_names("blur,fog")
    cfg = TrainConfig(model="sepnet", robust_aug=["all"]).resolved()
    assert cfg.robust_aug == list(ROBUST_AUGS) and cfg.to_json()["robust_p"] == 0.3


@pytest.mark.parametrize("kw, match", [
    ({"robust_aug": ["fog"]}, "--robust-aug: unknown 'fog'"),
    ({"robust_aug": ["blur"], "robust_p": 1.5}, "--robust-p must be in"),
    ({"robust_aug": ["blur"], "augment": False}, "--no-augment"),
    ({"robust_p": 0.5}, "give --robust-aug too"),
])
def test_bad_robust_options_are_user_errors(kw, match, tmp_path):
    with pytest.raises(FerError, match=match):
        prepare_run(TrainConfig(model="sepnet", **kw), RunFolder(tmp_path / "r"))


def _saved_run(path: Path, config: dict) -> RunFolder:
    """A run folder as a stopped run leaves it (the checkpoint model only needs to exist)."""
    run = RunFolder(path)
    (path / "checkpoint").mkdir(parents=True)
    run.write_config(config)
    (path / "checkpoint" / "train-epoch0001.keras").write_bytes(b"")
    state = {**initial_state(config.get("lr") or 0.002), "epoch": 1, "stop_reason": None,
             "checkpoint_model": "train-epoch0001.keras"}
    (path / "checkpoint" / "state.json").write_text(json.dumps(state))
    return run


def test_resume_keeps_the_robust_options_and_refuses_new_ones(tmp_path):
    saved = TrainConfig(model="sepnet", epochs=2, robust_aug=["all"], robust_p=0.2).resolved()
    run = _saved_run(tmp_path / "robust", saved.to_json())
    config, _ = prepare_run(TrainConfig(model=""), run, resume=True, given={})
    assert config.robust_aug == list(ROBUST_AUGS) and config.robust_p == 0.2
    assert config == saved
    same = {"robust_aug": ["all"], "robust_p": 0.2}  # given again, spelt `all`: the same
    assert prepare_run(TrainConfig(model="", **same), run, resume=True, given=same)[0] == saved
    for given in ({"robust_aug": ["blur"]}, {"robust_p": 0.5}):
        with pytest.raises(FerError, match="cannot resume.*robust_"):
            prepare_run(TrainConfig(model="", **given), run, resume=True, given=given)


def test_an_old_run_resumes_without_the_option_and_refuses_it(tmp_path):
    old = _old_config()
    run = _saved_run(tmp_path / "old", old)
    config, _ = prepare_run(TrainConfig(model=""), run, resume=True, given={})
    assert config.robust_aug == [] and config.random_erasing == 0.5
    given = {"robust_aug": ["low_light"]}
    with pytest.raises(FerError, match="robust_aug: run has \\[\\]"):
        prepare_run(TrainConfig(model="", **given), run, resume=True, given=given)


def test_gpu_plans_pass_the_option_through():
    from training.gpu.plan import make_plan

    plan = make_plan(["r: --model sepnet --robust-aug all --robust-p 0.2"], pack="p.pack")
    command = plan.member_command(plan.members[0])
    # The common options carry --robust-aug low_light,occlusion; the member's own follow them,
    # and the last occurrence of a flag is the one the command line keeps.
    i = len(command) - 1 - command[::-1].index("--robust-aug")
    assert command[i:i + 4] == ["--robust-aug", "all", "--robust-p", "0.2"]


@pytest.fixture()
def cli(monkeypatch):
    """`train` as a one-command Typer app, on synthetic data instead of load_splits."""
    import typer
    from typer.testing import CliRunner

    import training.commands.train as cmd

    def fake_load(data, seed):
        x, y = synthetic_faces(64, seed=1)
        xv, yv = synthetic_faces(32, seed=2)
        return {"train": (x, y), "val": (xv, yv)}

    monkeypatch.setattr(cmd, "_load_data", fake_load)
    app = typer.Typer()
    app.command()(cmd.train)
    app.command("other")(lambda: None)  # keep `train` a named subcommand
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["train", *args], terminal_width=200)


def test_cli_documents_and_checks_the_option(cli, tmp_path):
    out = cli("--help").output
    for text in ("--robust-aug", "--robust-p", "low_light", "rotation30"):
        assert text in out
    result = cli("--model", "sepnet", "--robust-aug", "low_light,fog", "--runs-dir", str(tmp_path))
    assert isinstance(result.exception, FerError)
    assert "fog" in str(result.exception) and "downscale" in str(result.exception)
    assert not (tmp_path / "sepnet").exists()


@pytest.mark.slow
def test_cli_trains_with_every_condition_and_resumes(cli, tmp_path):
    args = ("--runs-dir", str(tmp_path), "--name", "robust")
    # --label-smoothing: the GPU sessions' recipe, whose training model is a Trainer
    result = cli("--model", "baseline_cnn", "--epochs", "1", "--batch-size", "32",
                 "--label-smoothing", "0.1", "--robust-aug", "all", "--robust-p", "0.5",
                 "--checkpoint-minutes", "0", *args)
    assert result.exit_code == 0, result.output
    assert "robustness augmentation: rotation30, occlusion" in result.output
    saved = json.loads((tmp_path / "robust" / "config.json").read_text())
    assert saved["robust_aug"] == list(ROBUST_AUGS) and saved["robust_p"] == 0.5
    result = cli("--resume", "--epochs", "2", *args)
    assert result.exit_code == 0, result.output
    state = json.loads((tmp_path / "robust" / "checkpoint" / "state.json").read_text())
    from training.models.serialization import load_model

    model = load_model(tmp_path / "robust" / "checkpoint" / state["checkpoint_model"])
    assert state["epoch"] == 2
    assert "robust_downscale" in [layer.name for layer in model.augmenter.layers]
    result = cli("--resume", "--epochs", "3", "--robust-aug", "blur", *args)
    assert isinstance(result.exception, FerError) and "robust_aug" in str(result.exception)
    best = keras.saving.load_model(tmp_path / "robust" / "best.keras", compile=False)
    assert best.name == "baseline_cnn"  # what ships has no augmenter


@pytest.mark.slow
def test_the_layers_train_under_jax(tmp_path):
    """The GPU machine trains with JAX (and has no TensorFlow): our layers run inside the
    jitted train step there, draw new parameters every step, change the images only while
    training, and save/load. The augmenter holds our four layers alone, so Keras's own
    Random* layers cannot hide ours repeating a draw; the optimizer's learning rate is 0, so
    two steps on one batch give different losses only through different draws, and a test
    step's loss is the one of the unchanged images (worked out here with numpy). One compiled
    train step does it (an eager pass under JAX compiles op by op: slower than the step)."""
    ours = [n for n in ROBUST_AUGS if n != "rotation30"]
    script = NO_TENSORFLOW + textwrap.dedent(f"""
        sys.path[:0] = [{str(REPO)!r}]
        import keras, numpy as np
        from training.fit.augment import build_augmenter
        from training.models.serialization import load_model
        aug = build_augmenter(seed=0, flip=False, rotation_deg=0, zoom=0, shift=0,
                              robust={ours!r}, robust_p=1.0)
        inputs = keras.Input((48, 48, 1))
        model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(aug(inputs)))))
        model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=True,
                      loss="sparse_categorical_crossentropy")
        x = (np.random.default_rng(0).random((32, 48, 48, 1)) * 255).astype("float32")
        y = np.arange(32) % 7
        steps = []
        for _ in range(2):
            steps.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))
            model.reset_metrics()
        plain = float(model.test_on_batch(x, y, return_dict=True)["loss"])
        assert np.isfinite(steps + [plain]).all(), (steps, plain)
        assert steps[0] != steps[1], steps  # new draws in the second step
        assert plain not in steps, (steps, plain)  # training changed the images
        w, b = model.layers[-1].get_weights()  # the test step saw them unchanged:
        logits = x.mean(axis=(1, 2)) / 255 @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        assert abs(plain + np.log(p[np.arange(32), y]).mean()) < 1e-4, plain
        model.save({str(tmp_path / 'jax.keras')!r})
        print("OK", keras.backend.backend(), len(load_model({str(tmp_path / 'jax.keras')!r}).layers[1].layers),
              "tensorflow" in sys.modules)
    """)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # JAX compiles slowly on a busy CPU
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK jax 4 False" in proc.stdout
