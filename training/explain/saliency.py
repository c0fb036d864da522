"""Saliency maps: where in a 48x48 face a model looks for a class.

Two methods, both returning one map per image at the input's resolution (N, 48, 48):

* **occlusion sensitivity** (model-agnostic): slide a patch filled with the image's own mean
  grey level over the face and record how much each class's probability drops; a pixel's
  value is the mean drop over the patches that cover it. It needs nothing but a predictor
  (float32 NHWC 0..255 -> probabilities), so it runs the shipped TF.js graphs
  (`training.export.tfjs.load_tfjs_graph_model`), any Keras model, and any backend, and its maps are
  comparable across all of them: units are probability.
* **Grad-CAM** (Keras models only) at the last convolutional feature map A (the last rank-4
  layer with more than one pixel that the output depends on alone): ReLU(sum over channels of
  A * d log p_c / dA), upsampled bilinearly. That is Grad-CAM in its element-wise form
  (HiResCAM, Draelos & Carin 2020): for a global-average-pooled head, as sepnet's, the gradient
  is the same at every position and it equals classic Grad-CAM (channel weights = spatial mean
  of the gradient); for a Flatten head, where evidence is position-specific, the spatial mean
  mixes the positions and points elsewhere (on the synthetic faces of tests/test_explain.py a
  third of classic Grad-CAM's peaks were on the blob, against nine in ten of this form's).
  The model is cut at that layer into features and head, so the gradient needs no tape over the
  whole model: `feature_gradients` (TensorFlow: GradientTape; JAX: jax.grad on the head's
  stateless call) is the only backend-specific code. Maps are scaled to max 1 per image, as
  usual for Grad-CAM, since their raw units differ between images.

Flip TTA: with `tta` both explain the flip-TTA probabilities the target is scored with:
occlusion runs the TTA predictor, Grad-CAM averages the map of the image and the mirrored-back
map of the mirrored image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.core.errors import FerError
from training.core.metrics import tta_average
from training.export.tfjs import Predictor

#: Occlusion patch and stride in pixels: 8 px is about one eye of a 48x48 FER2013 face, small
#: enough to separate eyes, brows and mouth; stride 4 gives 11 x 11 = 121 patches per image.
PATCH = 8
STRIDE = 4

# log p_c is the class logit minus a term shared by all classes: unlike p_c it does not saturate
# (zero gradient) on confident predictions, and it needs no access to the pre-softmax layer.
_LOG_EPS = 1e-7


def as_nhwc(x: np.ndarray) -> np.ndarray:
    """uint8/float images (N, H, W) or (N, H, W, 1) -> float32 NHWC, the model contract."""
    x = np.asarray(x, dtype="float32")
    return x[..., None] if x.ndim == 3 else x


def with_flip_tta(predict: Predictor) -> Predictor:
    """A predictor that returns the mean of the image's and its mirror's probabilities."""

    def tta(x: np.ndarray) -> np.ndarray:
        x = as_nhwc(x)
        return tta_average(predict(x), predict(np.ascontiguousarray(x[:, :, ::-1]))).astype(
            "float32")

    return tta


def patch_origins(size: int, patch: int = PATCH, stride: int = STRIDE) -> list[int]:
    """Top/left corners of the patches along one axis; the last one always reaches the edge."""
    if not 0 < patch <= size or stride < 1:
        raise FerError(f"occlusion patch {patch} / stride {stride} do not fit a {size}px image")
    origins = list(range(0, size - patch + 1, stride))
    if origins[-1] != size - patch:
        origins.append(size - patch)
    return origins


def occlusion_maps(predict: Predictor, x: np.ndarray, *, patch: int = PATCH,
                   stride: int = STRIDE, batch_images: int = 16,
                   progress: bool = False) -> np.ndarray:
    """Occlusion sensitivity of every class: (N, K, H, W) float32 probability drops.

    Positive where hiding the region lowers the class's probability (evidence for the class),
    negative where hiding it raises it. `batch_images` images (x their patches) go to the
    predictor per call.
    """
    x = as_nhwc(x)
    n, h, w, _ = x.shape
    ys, xs = patch_origins(h, patch, stride), patch_origins(w, patch, stride)
    corners = [(r, c) for r in ys for c in xs]
    sums, counts = None, np.zeros((h, w), "float32")
    for r, c in corners:
        counts[r:r + patch, c:c + patch] += 1
    chunks = range(0, n, batch_images)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="occlusion", unit="batch", leave=False)
    for start in chunks:
        part = x[start:start + batch_images]
        m = len(part)
        # the image's own mean: a fixed grey would paint a bright or dark square, itself a feature
        fill = part.mean(axis=(1, 2, 3))
        occluded = np.repeat(part[:, None], len(corners), axis=1)  # (m, P, H, W, 1)
        for p, (r, c) in enumerate(corners):
            occluded[:, p, r:r + patch, c:c + patch, :] = fill[:, None, None, None]
        base = np.asarray(predict(part), "float32")  # (m, K)
        probs = np.asarray(predict(occluded.reshape(m * len(corners), h, w, 1)), "float32")
        drops = base[:, None, :] - probs.reshape(m, len(corners), -1)  # (m, P, K)
        if sums is None:
            sums = np.zeros((n, drops.shape[-1], h, w), "float32")
        for p, (r, c) in enumerate(corners):
            sums[start:start + m, :, r:r + patch, c:c + patch] += drops[:, p, :, None, None]
    if sums is None:
        return np.zeros((0, 0, h, w), "float32")
    return sums / counts


def resize_bilinear(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, h, w) -> (N, H, W) by bilinear interpolation (pixel centres aligned, edges clamped)."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        mat = np.zeros((n_out, n_in), "float32")
        mat[np.arange(n_out), lo] += 1 - (pos - lo)
        mat[np.arange(n_out), hi] += pos - lo
        return mat

    maps = np.asarray(maps, "float32")
    rows, cols = weights(maps.shape[1], size[0]), weights(maps.shape[2], size[1])
    return np.einsum("Hh,nhw,Ww->nHW", rows, maps, cols)


def peak(saliency: np.ndarray) -> tuple[int, int]:
    """(row, column) of a map's maximum."""
    return tuple(int(v) for v in np.unravel_index(np.argmax(saliency), saliency.shape))


# --------------------------------------------------------------------------- Grad-CAM


def feature_gradients(head, features: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """d log p_c / d features for each image's class c, through the Keras model `head`.

    The one backend-specific piece of Grad-CAM. Images are independent in inference mode
    (BatchNorm uses its moving statistics), so the gradient of the summed scores is each
    image's own gradient.
    """
    import keras

    backend = keras.backend.backend()
    features = np.asarray(features, "float32")
    classes = np.asarray(classes, "int32")
    if backend == "tensorflow":
        import tensorflow as tf

        feats = tf.convert_to_tensor(features)
        with tf.GradientTape() as tape:
            tape.watch(feats)
            probs = head(feats, training=False)
            picked = tf.gather(probs, classes, axis=1, batch_dims=1)
            score = tf.reduce_sum(tf.math.log(picked + _LOG_EPS))
        return tape.gradient(score, feats).numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in head.trainable_variables]
        frozen = [v.value for v in head.non_trainable_variables]
        idx = jnp.asarray(classes)

        def score(feats):
            probs, _ = head.stateless_call(trainable, frozen, feats, training=False)
            picked = jnp.take_along_axis(probs, idx[:, None], axis=1)
            return jnp.sum(jnp.log(picked + _LOG_EPS))

        return np.asarray(jax.grad(score)(jnp.asarray(features)))
    raise FerError(f"Grad-CAM supports the tensorflow and jax Keras backends, not {backend}; "
                   "use --method occlusion")


class GradCam:
    """Grad-CAM of a Keras model at its last convolutional feature map (or the layer named)."""

    def __init__(self, model, layer: str | None = None):
        import keras

        self.model = model
        self.layer, self.head = self._cut(model, layer, keras)
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.features = keras.Model(inputs, self.layer.output)

    @staticmethod
    def _cut(model, name: str | None, keras):
        """(feature layer, head model from it to the output): the last layer that works."""
        if name and name not in {la.name for la in model.layers}:
            raise FerError(f"{model.name} has no layer {name!r}; leave out --gradcam-layer to use "
                           "the last convolutional feature map")
        layers = [model.get_layer(name)] if name else [
            la for la in model.layers
            if len(getattr(la.output, "shape", ())) == 4 and (la.output.shape[1] or 0) > 1
            and (la.output.shape[2] or 0) > 1]
        for layer in reversed(layers):
            try:
                # a sub-graph from an inner tensor: fails if a skip connection bypasses it
                return layer, keras.Model(layer.output, model.output)
            except Exception:  # noqa: BLE001 - try the layer before
                continue
        if name:
            raise FerError(f"layer {name!r} of {model.name} is not a feature map the output "
                           "depends on alone (a skip connection bypasses it); pick another "
                           "--gradcam-layer")
        raise FerError(f"{model.name} has no convolutional feature map that the output depends "
                       "on alone, so Grad-CAM is not available; use --method occlusion")

    @property
    def map_size(self) -> tuple[int, int]:
        return int(self.layer.output.shape[1]), int(self.layer.output.shape[2])

    def _raw(self, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
        feats = np.asarray(self.features(x, training=False), "float32")
        grads = feature_gradients(self.head, feats, classes)
        # element-wise, not the spatial mean of the gradient: see the module docstring
        return np.maximum((feats * grads).sum(axis=-1), 0.0)

    def __call__(self, x: np.ndarray, classes: Sequence[int] | np.ndarray, *,
                 tta: bool = False, batch_size: int = 64) -> np.ndarray:
        """(N, H, W) maps in [0, 1] for `classes[i]` of image i, at the input's resolution."""
        x = as_nhwc(x)
        classes = np.asarray(classes, "int32")
        out = np.zeros(x.shape[:3], "float32")
        for start in range(0, len(x), batch_size):
            part, cls = x[start:start + batch_size], classes[start:start + batch_size]
            cam = self._raw(part, cls)
            cam = resize_bilinear(cam, x.shape[1:3])
            if tta:
                mirrored = self._raw(np.ascontiguousarray(part[:, :, ::-1]), cls)
                cam = (cam + resize_bilinear(mirrored, x.shape[1:3])[:, :, ::-1]) / 2
            top = cam.reshape(len(cam), -1).max(axis=1)
            out[start:start + len(part)] = cam / np.where(top > 0, top, 1.0)[:, None, None]
        return out
