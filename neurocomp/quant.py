"""Choosing integer formats for one layer: weight mantissas, exponents,
thresholds and biases, within the target's bit widths (``hw_configs/``) and
with a guaranteed bound on the per-step synaptic input.

Conventions: a float weight ``W`` (already normalised: threshold = 1.0)
seen by a neuron whose threshold mantissa is ``vth`` becomes
``mantissa * 2^weight_exp ≈ W * vth / unit`` where ``unit`` is the payload
that stands for an activation of 1.0 on the source (1 for binary spikes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurocomp import numerics as nm
from neurocomp.lowered import LoweredError


@dataclass(frozen=True)
class Formats:
    """The bit widths quantisation must respect (read from a hardware config)."""

    weight_bits: int = 8            # mantissa magnitude bits (sign separate)
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    vth_bits: int = 17
    bias_bits: int = 13             # signed mantissa incl. sign
    bias_exp_min: int = 0
    bias_exp_max: int = 7
    accumulator_bits: int = 21      # per-step input, in u units (<< 6), plus sign

    @classmethod
    def from_hw(cls, hw) -> "Formats":
        if hw is None:
            return cls()
        v = hw.value
        return cls(weight_bits=int(v("numerics.weight_mantissa_bits")),
                   weight_exp_min=int(v("numerics.weight_exp_min")),
                   weight_exp_max=int(v("numerics.weight_exp_max")),
                   vth_bits=int(v("numerics.threshold_mantissa_bits")),
                   bias_bits=int(v("numerics.bias_mantissa_bits")),
                   bias_exp_min=int(v("numerics.bias_exp_min")),
                   bias_exp_max=int(v("numerics.bias_exp_max")),
                   accumulator_bits=int(v("numerics.accumulator_bits")))

    @property
    def max_input(self) -> int:
        """Largest |synaptic input per step| in weight units (accumulator >> 6)."""
        return (1 << (self.accumulator_bits - nm.ACT_SHIFT)) - 1

    @property
    def max_bias_weight_units(self) -> float:
        """Largest |bias| in weight units: signed mantissa << largest exponent, over 64."""
        return ((1 << (self.bias_bits - 1)) - 1) * 2.0 ** self.bias_exp_max / (1 << nm.ACT_SHIFT)

    @property
    def mantissa_max(self) -> int:
        """Largest weight mantissa magnitude used: even, so a mixed-sign matrix keeps it
        through Lava's dropped LSB, and it fits an excitatory or inhibitory one too."""
        return (1 << self.weight_bits) - 2

    @property
    def vth_max(self) -> int:
        return (1 << self.vth_bits) - 1


def _lava_round(x: np.ndarray, mixed: bool) -> np.ndarray:
    """Nearest mantissas that survive Lava: a mixed-sign matrix loses its LSB, so even values."""
    return 2 * np.round(x / 2) if mixed else np.round(x)


def round_mantissas(w: np.ndarray, scale: float, limit: int) -> np.ndarray:
    """``round(w * scale)`` as Lava's Dense will apply it: mixed-sign
    matrices lose their LSB in Lava, so they are rounded to even values
    (still 8-bit magnitude); clipped to ``limit``."""
    x = w * scale
    mixed = bool(x.size and x.min() < 0 < x.max())
    return np.clip(_lava_round(x, mixed), -limit, limit).astype(np.int64)


def round_mantissas_optq(w: np.ndarray, scale: float, limit: int, hessian: np.ndarray,
                         mixed: bool | None = None, damp: float = 0.01) -> np.ndarray:
    """``round_mantissas`` with error feedback (OPTQ, Frantar et al. 2022): rows
    of ``w`` (inputs x outputs) are rounded one input at a time, most active
    first, and each rounding error is spread over the inputs not yet rounded
    in proportion to how they co-vary on calibration data (``hessian`` = X^T X
    of the inputs).  The output's error on that data is least-squares smaller
    than nearest rounding's, which leaves it to chance; weights that are
    exactly zero stay zero and inputs never active keep nearest rounding.
    ``mixed``: whether Lava sees the whole matrix ``w`` belongs to as mixed-sign
    (default: ``w`` itself is)."""
    x = np.asarray(w, np.float64).reshape(len(hessian), -1) * scale
    if mixed is None:
        mixed = bool(x.size and x.min() < 0 < x.max())
    # feedback must not give a one-signed matrix the other sign (nor Lava's mixed mode)
    lo = -limit if mixed or x.min(initial=0) < 0 else 0
    hi = limit if mixed or x.max(initial=0) > 0 else 0

    def quant(r):
        return np.clip(_lava_round(r, mixed), lo, hi)

    h = np.array(hessian, np.float64)
    live = np.diag(h) > 0
    q = quant(x)
    if live.sum() > 1:
        idx = np.flatnonzero(live)
        idx = idx[np.argsort(-np.diag(h)[idx], kind="stable")]
        hl = h[np.ix_(idx, idx)]
        hl[np.diag_indices_from(hl)] += damp * float(np.mean(np.diag(hl)))
        try:
            u = np.linalg.cholesky(np.linalg.inv(hl)).T          # upper, U^T U = H^-1
        except np.linalg.LinAlgError:                           # pragma: no cover - damped, PD
            return q.astype(np.int64).reshape(np.shape(w))
        r = x[idx].copy()
        zero = x[idx] == 0
        out = np.empty_like(r)
        for i in range(len(idx)):
            out[i] = np.where(zero[i], 0.0, quant(r[i]))
            err = (r[i] - out[i]) / u[i, i]
            r[i + 1:] -= np.outer(u[i, i + 1:], err)
        q[idx] = out
    return q.astype(np.int64).reshape(np.shape(w))


def worst_case_input(mant: np.ndarray, axis, payload_max: int, signed: bool = False) -> int:
    """Largest |sum| over the weights of one destination neuron, for sources
    whose payloads lie in [0, payload_max] (ReLU rates, images), or in
    [-payload_max, payload_max] when ``signed``."""
    if signed:
        return int(np.abs(mant).sum(axis=axis).max(initial=0)) * payload_max
    pos = np.where(mant > 0, mant, 0).sum(axis=axis)
    neg = np.where(mant < 0, -mant, 0).sum(axis=axis)
    return int(max(pos.max(initial=0), neg.max(initial=0))) * payload_max


def layer_input_bound(mants: list, exps: list, sum_axes: list, payload_max: list, signed: list) -> float:
    """Worst-case per-step input of one neuron, in weight units, summed over its
    incoming tensors (mantissas ``mants[k]`` shifted by ``exps[k]``)."""
    return sum(worst_case_input(m, ax, p, sg) * 2.0 ** x
               for m, x, ax, p, sg in zip(mants, exps, sum_axes, payload_max, signed))


@dataclass
class LayerFormat:
    vth: int
    weight_exp: int
    mantissas: list           # one integer array per incoming weight tensor
    scale: float              # mantissa units per (normalised weight * unit)
    clipped: int = 0


def choose_lif_format(weights: list[np.ndarray], units: list[float], payload_max: list[int],
                      sum_axes: list, fmt: Formats, allow_exp: bool = True,
                      vth_cap: int | None = None, signed: list | None = None,
                      exponent: int | None = None) -> LayerFormat:
    """Pick threshold and exponent for a LIF population fed by ``weights``.

    All inputs share the population's threshold ``vth``; weight ``k``
    becomes ``round(W_k * vth / (unit_k * 2^e))``.  The exponent ``e`` starts
    as high as the threshold's width allows and is lowered until the
    worst-case per-step input fits the accumulator.  A conv whose messages
    do not fit an exponent gets ``allow_exp=False`` (Lava's Conv has none):
    then the mantissa scale itself shrinks.  ``vth_cap`` bounds the threshold
    (a membrane read-out must not saturate v over many steps).  ``exponent``
    fixes the exponent: a threshold lowered a little (to one the self synapse
    can hold) then costs the mantissas a little, not the threshold a factor 2.
    """
    vth_max = min(fmt.vth_max, vth_cap or fmt.vth_max)
    signed = signed or [False] * len(weights)
    lim = fmt.mantissa_max
    # mantissa scale c: largest |W * vth / unit| maps to lim
    wmax = max(float(np.abs(w).max()) * 1.0 / u for w, u in zip(weights, units)) or 1.0
    c_full = lim / wmax                      # mantissa units per (W / unit)
    exps = range(fmt.weight_exp_max, fmt.weight_exp_min - 1, -1) if allow_exp else (0,)
    if exponent is not None:
        exps = (exponent,)
    for e in exps:
        if len(exps) > 1 and c_full * 2.0 ** e > vth_max and e > fmt.weight_exp_min:
            continue                         # a lower exponent keeps all mantissa bits
        c = min(c_full, vth_max / 2.0 ** e)  # else: threshold too wide, use fewer weight bits
        vth = max(int(round(c * 2.0 ** e)), 1)
        c = vth / 2.0 ** e
        mants = [round_mantissas(w / u, c, lim) for w, u in zip(weights, units)]
        if layer_input_bound(mants, [e] * len(mants), sum_axes, payload_max, signed) <= fmt.max_input:
            return LayerFormat(vth, e, mants, c)
    # even the smallest exponent overflows: shrink the mantissa scale
    e = exponent if exponent is not None else fmt.weight_exp_min if allow_exp else 0
    worst_unit = sum(worst_case_input(np.abs(w / u), ax, p)
                     for w, u, ax, p in zip(weights, units, sum_axes, payload_max)) or 1.0  # abs: signed-safe
    c = min(c_full, vth_max / 2.0 ** e, fmt.max_input / (worst_unit * 2.0 ** e))
    vth = int(math.floor(c * 2.0 ** e))
    if vth < 1:
        raise LoweredError(f"cannot fit the per-step input in {fmt.accumulator_bits} accumulator bits "
                           "even with a threshold of 1; reduce the input payload or the fan-in")
    c = vth / 2.0 ** e
    mants = [round_mantissas(w / u, c, lim) for w, u in zip(weights, units)]
    return LayerFormat(vth, e, mants, c)


def own_exponents(lf: LayerFormat, weights: list[np.ndarray], units: list[float], payload_max: list[int],
                  sum_axes: list, fmt: Formats, shift_ok: list[bool], signed: list | None = None
                  ) -> list[int]:
    """Per incoming weight tensor, the exponent ``lf.weight_exp - s`` (s >= 0) that
    gives its largest weight the most mantissa bits; ``lf.mantissas`` are re-rounded
    in place.  The layer's threshold fixes one scale for all its inputs, so a small
    tensor beside a large one (a residual skip beside a conv, a bias neuron) would
    otherwise keep a few bits.  ``shift_ok[k]``: tensor k may take its own exponent.
    Kept only where the worst-case per-step input still fits the accumulator."""
    lim = fmt.mantissa_max
    signed = signed or [False] * len(weights)
    e = lf.weight_exp
    exps, mants = [e] * len(weights), list(lf.mantissas)
    for k, (w, u) in enumerate(zip(weights, units)):
        top = float(np.abs(w).max(initial=0.0)) / u * lf.scale
        if not shift_ok[k] or top <= 0:
            continue
        s = min(int(math.floor(math.log2(lim / top))), e - fmt.weight_exp_min)
        if s > 0:
            exps[k], mants[k] = e - s, round_mantissas(w / u, lf.scale * 2.0 ** s, lim)
    if exps == [e] * len(weights):
        return exps
    if layer_input_bound(mants, exps, sum_axes, payload_max, signed) > fmt.max_input:
        return [e] * len(weights)
    lf.mantissas[:] = mants
    return exps


def bias_to_mant_exp(bias_v: np.ndarray, fmt: Formats, exp_min: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Express per-neuron biases (in v units, i.e. already x64) as
    ``mant << exp`` with a signed ``bias_bits`` mantissa; one exponent per
    neuron, the smallest (at least ``exp_min``) that fits.  Returns (mant, exp,
    clipped count)."""
    mmax = (1 << (fmt.bias_bits - 1)) - 1
    bias_v = np.asarray(bias_v, dtype=np.float64)
    lo = fmt.bias_exp_min if exp_min is None else max(exp_min, fmt.bias_exp_min)
    exp = np.full(bias_v.shape, lo, dtype=np.int64)
    for e in range(lo, fmt.bias_exp_max + 1):
        need = np.abs(bias_v) / 2.0 ** e > mmax
        exp = np.where((exp == e) & need, e + 1, exp)
    clipped = int((exp > fmt.bias_exp_max).sum())
    exp = np.minimum(exp, fmt.bias_exp_max)
    mant = np.clip(np.round(bias_v / 2.0 ** exp), -mmax, mmax).astype(np.int64)
    return mant, exp, clipped
