"""`Trainer`: the training-model wrapper for label smoothing, mixup and distillation.

It owns the augmenter, the core (student) and optional frozen teachers; one forward pass
per batch augments once, mixes once, and runs the student and the teachers on the *same*
images. Only `trainer.core` is ever saved as best.keras or exported; checkpoints hold the
whole trainer (registered as "fer_hybrid>Trainer", see training.models.serialization) so a
resume restores the optimizer. Everything uses keras.ops / keras.random only, so it runs
on every backend.

    trainer = Trainer(core, augmenter, teachers=[t1, t2], mixup_alpha=0.2,
                      label_smoothing=0.1, kd_alpha=0.5, kd_temperature=4.0)
    trainer.compile(optimizer=..., metrics=["accuracy"])   # the loss is built in
    trainer.fit(x, y_int, class_weight=...)                  # sparse labels as usual

Offline distillation (no teacher models): per-image teacher probabilities come in with the
images, `trainer.fit(Trainer.inputs(x, soft), y_int, ...)`, so Keras shuffles them with
their images; `training.fit.soft_targets` reads them from a file by image content.
Label distributions (`--targets ferplus|mix:A`, `training.fit.targets`) travel the same way,
`Trainer.inputs(x, label_targets=q)`, and replace the one-hot labels in the hard loss.
"""

from __future__ import annotations

import keras
from keras import ops

from training.models.serialization import PACKAGE

# The input keys: images, offline distillation's teacher probabilities, label distributions.
IMAGES, SOFT_TARGETS, LABEL_TARGETS = "images", "soft_targets", "label_targets"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Trainer(keras.Model):
    """Training wrapper: augment -> (mixup) -> student (+ frozen teachers) with a built-in loss.

    Labels stay sparse ints (so `fit(class_weight=...)` keeps working: Keras turns it
    into per-sample weights); they are one-hot encoded and smoothed inside the loss.

    Loss per sample (hard part, with mixup partner j and mixing weight lam):
        hard = lam * w_i * CE(smooth(y_i), p) + (1 - lam) * w_j * CE(smooth(y_j), p)
    where y_i is the one-hot label, or the image's label distribution when one is given
    (`Trainer.inputs(x, label_targets=q)`: the FER+ votes, `training.fit.targets`).
    With teachers (Hinton et al. 2015, keras.io "Knowledge Distillation"):
        loss = kd_alpha * hard + (1 - kd_alpha) * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))
    where z are log-probabilities (our models output softmax; log p is a valid logit).
    The teacher is either the soft-voted mean of live `teachers`' probabilities on the very
    images the student sees (augmented and mixed), or per-sample soft targets given as input
    (`Trainer.inputs`), made on the un-augmented images; with mixup those are mixed with the
    same lam and partner as their images. A sample whose soft-target row is all zero (not
    covered, see `training.fit.soft_targets`) gets the hard loss alone, at full weight; so does a
    mixed sample whose partner is not covered.
    In inference (`training=False`, e.g. validation) it is just the student.
    """

    def __init__(self, core, augmenter=None, teachers=None, *, mixup_alpha: float = 0.0,
                 label_smoothing: float = 0.0, kd_alpha: float = 0.5,
                 kd_temperature: float = 4.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.core = core
        self.augmenter = augmenter
        self.teachers = list(teachers or [])
        for t in self.teachers:
            t.trainable = False
        self.mixup_alpha = float(mixup_alpha)
        self.label_smoothing = float(label_smoothing)
        self.kd_alpha = float(kd_alpha)
        self.kd_temperature = float(kd_temperature)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.num_classes = int(core.output_shape[-1])

    def build(self, input_shape):
        self.built = True

    @staticmethod
    def inputs(images, soft_targets=None, label_targets=None):
        """What to `fit`: the images alone, or with per-sample teacher probabilities (N, K)
        (offline distillation; an all-zero row marks an image without a teacher signal)
        and/or per-sample label distributions (N, K) that replace the one-hot labels."""
        extra = {k: v for k, v in ((SOFT_TARGETS, soft_targets), (LABEL_TARGETS, label_targets))
                 if v is not None}
        return {IMAGES: images, **extra} if extra else images

    def call(self, x, training=False):
        x, soft, dense = ((x[IMAGES], x.get(SOFT_TARGETS), x.get(LABEL_TARGETS))
                          if isinstance(x, dict) else (x, None, None))
        if not training:
            return self.core(x, training=False)
        if self.augmenter is not None:
            x = self.augmenter(x, training=True)
        n = ops.shape(x)[0]
        out = {}
        if dense is not None:  # mixed in the loss, with the partner's (like one-hot labels)
            out["targets"] = ops.cast(dense, x.dtype)
        if soft is not None:
            soft = ops.cast(soft, x.dtype)
            covered = ops.cast(ops.sum(soft, axis=-1) > 0.5, x.dtype)
        if self.mixup_alpha > 0:
            lam = keras.random.beta((), self.mixup_alpha, self.mixup_alpha,
                                    seed=self.seed_generator)
            lam = ops.maximum(lam, 1.0 - lam)  # keep the first image dominant (as in timm)
            perm = keras.random.shuffle(ops.arange(n), seed=self.seed_generator)
            x = lam * x + (1.0 - lam) * ops.take(x, perm, axis=0)
            out["lam"], out["perm"] = lam, perm
            if soft is not None:  # the targets follow their images into the mix
                soft = lam * soft + (1.0 - lam) * ops.take(soft, perm, axis=0)
                covered = covered * ops.take(covered, perm, axis=0)
        out["probs"] = self.core(x, training=True)
        if self.teachers:
            probs = [t(x, training=False) for t in self.teachers]
            out["teacher"] = ops.stop_gradient(sum(probs[1:], probs[0]) / len(probs))
        elif soft is not None:
            out["teacher"], out["teacher_mask"] = soft, covered
        return out

    # -- loss -----------------------------------------------------------------------
    def _targets(self, y, dense=None):
        """Per-sample target distributions (N, K), smoothed: the label distributions `dense`
        when given, else one-hot sparse labels `y`."""
        target = (ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), self.num_classes)
                  if dense is None else dense)
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return target

    @staticmethod
    def _ce(target, probs):
        """Per-sample cross-entropy of target distributions (N, K) against probabilities."""
        logp = ops.log(ops.clip(probs, 1e-7, 1.0))
        return -ops.sum(ops.cast(target, probs.dtype) * logp, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        extra = ops.sum(ops.stack(self.losses)) if self.losses else 0.0
        if not isinstance(y_pred, dict):  # validation / evaluate: plain (unsmoothed) CE
            target = ops.one_hot(ops.cast(ops.reshape(y, (-1,)), "int32"), self.num_classes)
            ce = -ops.sum(target * ops.log(ops.clip(y_pred, 1e-7, 1.0)), axis=-1)
            w = ops.ones_like(ce) if sample_weight is None else ops.reshape(sample_weight, (-1,))
            return ops.sum(ce * w) / ops.maximum(ops.sum(w), 1e-7) + extra
        probs = y_pred["probs"]
        n = ops.shape(probs)[0]
        w = (ops.ones((n,), probs.dtype) if sample_weight is None
             else ops.cast(ops.reshape(sample_weight, (-1,)), probs.dtype))
        target = self._targets(y, y_pred.get("targets"))
        if "lam" in y_pred:
            lam, perm = y_pred["lam"], y_pred["perm"]
            hard = (lam * w * self._ce(target, probs)
                    + (1.0 - lam) * ops.take(w, perm) * self._ce(ops.take(target, perm, axis=0),
                                                                 probs))
        else:
            hard = w * self._ce(target, probs)
        if "teacher" not in y_pred:
            return ops.mean(hard) + extra
        # Per sample, so samples without a teacher signal (mask 0) keep the hard loss alone;
        # with live teachers every sample has one and this is kd_alpha*mean(hard) + ... .
        t = self.kd_temperature
        log_s = ops.log_softmax(ops.log(ops.clip(probs, 1e-7, 1.0)) / t, axis=-1)
        log_t = ops.log_softmax(ops.log(ops.clip(y_pred["teacher"], 1e-7, 1.0)) / t, axis=-1)
        kl = ops.sum(ops.exp(log_t) * (log_t - log_s), axis=-1)
        kd = self.kd_alpha * hard + (1.0 - self.kd_alpha) * (t * t) * kl
        mask = y_pred.get("teacher_mask")
        if mask is not None:
            kd = mask * kd + (1.0 - mask) * hard
        return ops.mean(kd) + extra

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        probs = y_pred["probs"] if isinstance(y_pred, dict) else y_pred
        return super().compute_metrics(x, y, probs, sample_weight)

    # -- saving (checkpoints hold the whole trainer so resume restores the optimizer) ---
    def get_config(self):
        ser = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "core": ser(self.core),
            "augmenter": ser(self.augmenter) if self.augmenter is not None else None,
            "teachers": [ser(t) for t in self.teachers],
            "mixup_alpha": self.mixup_alpha, "label_smoothing": self.label_smoothing,
            "kd_alpha": self.kd_alpha, "kd_temperature": self.kd_temperature, "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        de = keras.saving.deserialize_keras_object
        config = dict(config)
        core = de(config.pop("core"))
        aug = config.pop("augmenter")
        teachers = [de(t) for t in config.pop("teachers")]
        return cls(core, de(aug) if aug is not None else None, teachers, **config)
