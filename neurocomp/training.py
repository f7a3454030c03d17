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
* :class:`RateRegularizer` -- an activity regulariser that keeps activations
  in the range a rate code can carry: it penalises activations above
  ``ceiling`` (they would be clipped at the neuron's maximum rate) and units
  whose mean activation falls below ``floor`` (silent neurons carry nothing).

Both are registered Keras serializables (package ``neurocomp``): a ``.keras``
file that uses them reloads once ``neurocomp.training`` is imported, which
``neurocomp``'s Keras frontend does before loading a file.
"""
from __future__ import annotations

from neurocomp.frontends.keras import import_keras

keras = import_keras()
ops = keras.ops

__all__ = ["QCFS", "RateRegularizer"]


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
        lam = ops.abs(self.threshold) + 1e-6       # a sign flip by the optimiser must not invert the code
        z = x * (self.levels / lam) + 0.5
        z = z + ops.stop_gradient(ops.floor(z) - z)          # floor, straight-through gradient
        return ops.clip(z / self.levels, 0.0, 1.0) * lam

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
