"""Training helpers for users who can retrain before converting.

* :class:`QCFS` -- the quantisation-clip-floor-shift activation of Bu et al.
  (ICLR 2022, "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency
  spiking neural networks"): ``lambda * clip(floor(x * L / lambda + 0.5) / L, 0, 1)``
  with a trainable threshold ``lambda`` and ``L`` quantisation levels; the floor
  passes gradients straight through.  It is exactly what an integrate-and-fire
  neuron with reset by subtraction and a half-threshold start (neurocomp's
  ``rate-soft`` mode) computes in ``L`` steps when its threshold is ``lambda``,
  so a network trained with it converts with near-zero loss at ``T ~ L`` steps
  (plus the pipeline depth).  The Keras frontend reads it as a ReLU capped at
  ``lambda`` and records ``lambda`` as the activation-scale hint
  ``meta["act_scale_hint"]`` (and ``L`` as ``meta["qcfs_levels"]``).
* :func:`qcfs_finetune` -- turns a trained ReLU network into its QCFS twin:
  every ReLU layer becomes a QCFS whose lambda starts at the activation's
  99.9th percentile, and the twin is fine-tuned with the level count redrawn
  per layer and batch from a range, so it suits every window a run gives its
  layers (a rate-coded layer at depth ``d`` resolves ``T - d`` levels, not one
  fixed ``L``).
* :class:`RateRegularizer` -- an activity regulariser that keeps activations
  in the range a rate code can carry: it penalises activations above
  ``ceiling`` (they would be clipped at the neuron's maximum rate) and units
  whose mean activation falls below ``floor`` (silent neurons carry nothing).

Both are registered Keras serializables (package ``neurocomp``): a ``.keras``
file that uses them reloads once ``neurocomp.training`` is imported, which
``neurocomp``'s Keras frontend does before loading a file.
"""
from __future__ import annotations

import math

import numpy as np

from neurocomp.frontends.keras import import_keras

keras = import_keras()
ops = keras.ops

__all__ = ["QCFS", "RateRegularizer", "qcfs_finetune"]


@keras.saving.register_keras_serializable(package="neurocomp")
class QCFS(keras.layers.Layer):
    """Quantised clipped ReLU with a trainable threshold (QCFS).

    ``levels``: L, the number of quantisation levels (about the time steps the
    converted network needs); ``threshold``: initial lambda (Bu et al. use 8.0
    for ImageNet-scale networks; start near the activations' typical maximum,
    e.g. 1-4 for inputs in [0, 1]).
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0, **kwargs):
        super().__init__(**kwargs)
        if int(levels) < 1:
            raise ValueError(f"QCFS levels must be >= 1, got {levels}")
        if not float(threshold) > 0:
            raise ValueError(f"QCFS threshold must be > 0, got {threshold}")
        self.levels = int(levels)
        self.initial_threshold = float(threshold)

    def build(self, input_shape):
        self.threshold = self.add_weight(
            name="threshold", shape=(), trainable=True,
            initializer=keras.initializers.Constant(self.initial_threshold))
        super().build(input_shape)

    def call(self, x):
        return self._quantise(x, self.levels)

    def _quantise(self, x, levels):
        lam = ops.abs(self.threshold) + 1e-6       # a sign flip by the optimiser must not invert the code
        z = x * (levels / lam) + 0.5
        z = z + ops.stop_gradient(ops.floor(z) - z)          # floor, straight-through gradient
        return ops.clip(z / levels, 0.0, 1.0) * lam

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "levels": self.levels, "threshold": self.initial_threshold}

    def threshold_value(self) -> float:
        """The trained lambda as a float."""
        return float(abs(float(keras.ops.convert_to_numpy(self.threshold)))) + 1e-6


@keras.saving.register_keras_serializable(package="neurocomp")
class RateRegularizer(keras.regularizers.Regularizer):
    """Activity regulariser keeping activations where rate coding carries them.

    ``strength * (mean(relu(a - ceiling)^2) + mean_units(relu(floor - mean_batch(a))^2))``:
    the first term pulls activations above ``ceiling`` back (a converted neuron
    saturates at one spike per step at its calibration scale); the second wakes
    units whose mean activation over the batch is below ``floor``.  Use as
    ``Dense(..., activity_regularizer=RateRegularizer())`` or on a QCFS layer.
    """

    def __init__(self, ceiling: float = 1.0, floor: float = 0.0, strength: float = 1e-3):
        if not float(ceiling) > 0 or float(floor) < 0 or float(strength) < 0:
            raise ValueError("RateRegularizer needs ceiling > 0, floor >= 0 and strength >= 0")
        self.ceiling, self.floor, self.strength = float(ceiling), float(floor), float(strength)

    def __call__(self, a):
        over = ops.mean(ops.square(ops.relu(a - self.ceiling)))
        loss = over
        if self.floor > 0:
            axes = tuple(range(len(a.shape) - 1))
            loss = loss + ops.mean(ops.square(ops.relu(self.floor - ops.mean(a, axis=axes))))
        return self.strength * loss

    def get_config(self):
        return {"ceiling": self.ceiling, "floor": self.floor, "strength": self.strength}


class _SampledLevelsQCFS(QCFS):
    """QCFS whose level count is a variable (redrawn per batch by ``_RedrawLevels``); training only."""

    def build(self, input_shape):
        super().build(input_shape)
        self.level_count = self.add_weight(name="level_count", shape=(), trainable=False,
                                           initializer=keras.initializers.Constant(float(self.levels)))

    def call(self, x):
        return self._quantise(x, self.level_count)


class _RedrawLevels(keras.callbacks.Callback):
    def __init__(self, layers, levels, seed):
        super().__init__()
        self.qcfs, self.log_range = layers, (math.log(levels[0]), math.log(levels[1]))
        self.rng = np.random.default_rng(seed)

    def on_train_batch_begin(self, batch, logs=None):
        for q in self.qcfs:
            q.level_count.assign(float(np.round(np.exp(self.rng.uniform(*self.log_range)))))


def _is_plain_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        return cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold")
    return isinstance(layer, keras.layers.Activation) and layer.get_config().get("activation") == "relu"


def qcfs_finetune(model, x, y, levels: tuple[int, int] = (6, 24), epochs: int = 2, lr: float = 3e-4,
                  batch_size: int = 128, percentile: float = 99.9, seed: int = 0, loss=None, verbose: int = 0):
    """A copy of ``model`` with every ReLU layer (``ReLU()`` or ``Activation("relu")``) replaced
    by a :class:`QCFS` and fine-tuned on ``(x, y)`` for low-latency rate conversion.

    Each QCFS starts at lambda = the ``percentile`` of its ReLU's output on ``x[:2000]``; during
    the ``epochs`` of Adam(``lr``) its level count is redrawn before every batch, log-uniformly
    from ``levels`` (inclusive), so the twin keeps its accuracy at every resolution from
    ``levels[0]`` to ``levels[1]`` steps per layer.  The returned model is built from plain
    :class:`QCFS` layers with ``levels[1]`` levels (serialisable; the frontend reads each as a
    ReLU capped at its trained lambda).  ``loss`` defaults to sparse categorical cross-entropy on
    logits.  A ReLU fused into another layer (``Dense(..., activation="relu")``) is not replaced:
    write it as a separate ``ReLU`` layer first.  Raises ``ValueError`` when the model has no
    ReLU layer or ``levels`` is not 1 <= lo <= hi."""
    lo, hi = int(levels[0]), int(levels[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"qcfs_finetune: levels must satisfy 1 <= lo <= hi, got {levels}")
    relus = [l for l in model.layers if _is_plain_relu(l)]
    if not relus:
        raise ValueError(f"qcfs_finetune: {model.name} has no ReLU layer to replace (fused "
                         "activations such as Dense(activation='relu') must be separate ReLU layers)")
    x = np.asarray(x)
    probe = keras.Model(model.inputs, [l.output for l in relus])
    acts = probe.predict(x[:2000], verbose=0)
    acts = acts if isinstance(acts, (list, tuple)) else [acts]
    lam = {l.name: max(float(np.percentile(a, percentile)), 1e-3) for l, a in zip(relus, acts)}

    def twin_of(layer_cls):
        def clone(layer):
            if layer.name in lam:
                return layer_cls(levels=hi, threshold=lam[layer.name], name=layer.name)
            return layer.__class__.from_config(layer.get_config())
        twin = keras.models.clone_model(model, clone_function=clone)
        for a in model.layers:
            if a.name not in lam and a.weights:
                twin.get_layer(a.name).set_weights(a.get_weights())
        return twin

    keras.utils.set_random_seed(seed)
    train = twin_of(_SampledLevelsQCFS)
    train.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qcfs = [train.get_layer(n) for n in lam]
    train.fit(x, np.asarray(y), epochs=epochs, batch_size=batch_size, verbose=verbose,
              callbacks=[_RedrawLevels(qcfs, (lo, hi), seed)])
    out = twin_of(QCFS)
    for a in train.layers:
        if a.weights:
            w = a.get_weights()
            out.get_layer(a.name).set_weights(w[:1] if a.name in lam else w)
    return out
