"""Models: the Keras model zoo, one architecture per module, all reachable by name
(`registry`, which imports no model: each loads on first use), and what any model is used with:
loading our .keras files under their registered names (`serialization`), batch prediction with
flip TTA and a run's saved predictions (`predict`), multiply-adds per image (`macs`). It imports
`core` and `data`, never a later stage; `serialization` names the fit stage's registering
modules as strings, imported only when a model is loaded.

    from training.models import build_model, MODEL_NAMES
    model = build_model("vgg", width=0.5)   # uncompiled keras.Model, (N,48,48,1) 0..255 -> (N,7) softmax

Every model normalises its raw 0..255 grey-level input inside its own graph,
so the page, the server and the exported TF.js files all feed raw pixels.
"""

from training.models.registry import (
    MODEL_NAMES,
    TrainingDefaults,
    build_model,
    check_model_name,
    get_defaults,
    register,
)

__all__ = ["MODEL_NAMES", "TrainingDefaults", "build_model", "check_model_name", "get_defaults",
           "register"]
