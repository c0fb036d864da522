"""The model zoo: every registered architecture builds and honours the model contract."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.core.errors import FerError
from training.models import MODEL_NAMES, build_model, get_defaults

TRANSFER = {"resnet50", "senet50", "vgg16"}
SMALL = [n for n in MODEL_NAMES if n not in TRANSFER]


def _check_contract(model):
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 48, 48, 1)).astype("float32")
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 7)
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert tuple(model.input_shape) == (None, 48, 48, 1)


def test_registry_lists_every_family():
    assert set(MODEL_NAMES) >= {"baseline_cnn", "five_layer", "vgg", "resnet_se", "cnn_lstm",
                                "resnet50", "senet50", "vgg16"}
    assert get_defaults("five_layer").lr == 0.1
    assert all(get_defaults(n).batch_size > 0 and get_defaults(n).lr > 0 for n in MODEL_NAMES)


def test_model_names_are_known_without_importing_keras():
    """The CLI rejects a wrong --model before paying for TensorFlow's start-up."""
    import subprocess
    import sys

    code = ("import sys; from training.models import MODEL_NAMES, check_model_name; "
            "check_model_name('vgg'); assert 'keras' not in sys.modules, 'keras imported'; "
            "print(len(MODEL_NAMES))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(MODEL_NAMES)


def test_options_read_from_the_source_match_each_builders_signature():
    """`model_options` reads the builder's keyword options from its module's source (so a
    configuration is checked without Keras); it must say what the imported builder takes."""
    import inspect

    from training.models.registry import _BUILDERS, _load, model_options

    for name in MODEL_NAMES:
        _load(name)
        sig = inspect.signature(_BUILDERS[name])
        assert model_options(name) == [p.name for p in sig.parameters.values()
                                       if p.kind is inspect.Parameter.KEYWORD_ONLY], name


def test_a_training_configuration_is_resolved_and_checked_without_keras(tmp_path):
    """Every option of the CPU campaign's recipe resolves and is checked before TensorFlow
    loads (15-30 s here): `campaign run` checks its whole plan that way, and a wrong option
    answers at once. A wrong one still fails, at once."""
    import subprocess
    import sys

    code = f"""
import sys
from training.core.errors import FerError
from training.core.runs import RunFolder
from training.fit.train import TrainConfig, prepare_run
ok = TrainConfig(model="sepnet", optimizer="adamw", schedule="cosine", label_smoothing=0.1,
                 mixup=0.2, random_erasing=0.5, robust_aug="low_light,occlusion", seed=3,
                 model_options={{"width": 0.5}})
prepare_run(ok, RunFolder({str(tmp_path / "a")!r}))
for bad in (dict(lr=-1.0), dict(robust_aug="nosuch"), dict(targets="nosuch"),
            dict(schedule="nosuch"), dict(model_options={{"depth": 3}})):
    try:
        prepare_run(TrainConfig(model="sepnet", **bad), RunFolder({str(tmp_path / "b")!r}))
    except FerError as e:
        print("refused:", e)
    else:
        raise SystemExit(f"accepted {{bad}}")
assert not [m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow", "jax")], \
    "a heavy framework was imported"
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("refused:") == 5 and "does not apply to sepnet" in out.stdout


def test_registry_imports_no_model_module():
    """No import circle: the model modules import the registry to register themselves, so the
    registry must load them lazily (importlib, on first use), never at import time."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; import training.models.registry; "
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.startswith(('training.models.', 'keras')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["training.models.registry"]


@pytest.mark.parametrize("name", SMALL)
def test_small_models_build_and_predict(name):
    model = build_model(name)
    _check_contract(model)
    # normalisation is inside the graph
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)


def test_baseline_is_small():
    assert 50_000 < build_model("baseline_cnn").count_params() < 80_000


def test_width_multiplier_shrinks_vgg_and_resnet_se():
    full = build_model("vgg").count_params()
    quarter = build_model("vgg", width=0.25)
    _check_contract(quarter)
    assert quarter.count_params() < full / 8
    small = build_model("resnet_se", width=0.25, depth=1)
    _check_contract(small)
    assert small.count_params() < build_model("resnet_se").count_params() / 10


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRANSFER))
def test_transfer_models_build_random_init(name, caplog):
    with caplog.at_level("WARNING", logger="fer_hybrid.models"):
        model = build_model(name, freeze_first=5)
    assert "RANDOM INIT" in caplog.text
    _check_contract(model)
    assert model.count_params() > 10_000_000
    # resize + grey->RGB happen inside the model
    assert any(isinstance(layer, keras.layers.Resizing) for layer in model.layers)


def test_transfer_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(FerError, match="not found"):
        build_model("vgg16", weights=str(tmp_path / "nope.weights.h5"))


def test_unknown_model_lists_valid_names():
    with pytest.raises(FerError) as err:
        build_model("alexnet")
    for name in MODEL_NAMES:
        assert name in str(err.value)


def test_unknown_option_is_a_user_error():
    with pytest.raises(FerError, match="width"):
        build_model("baseline_cnn", width=0.5)
