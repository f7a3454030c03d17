"""Fixed-point arithmetic of Loihi as implemented by Lava's ``fixed_pt`` models.

One module holds every constant and integer rule that the backends share
(source: ``../shared/specs/lava_loihi_spec.md`` §1.2, §2.1, §2.5, §2.6,
verified against lava-nc 0.10.0).  Hardware *limits* (bit widths a chip
offers) live in ``hw_configs/``; this module is the *semantics*.
"""
from __future__ import annotations

import numpy as np

# -- CUBA LIF (lava/proc/lif/models.py AbstractPyLifModelFixed) ---------------
DECAY_SHIFT = 12              # decays are k/4096
DECAY_UNITY = 1 << DECAY_SHIFT
ACT_SHIFT = 6                 # synaptic input enters u as a << 6
VTH_SHIFT = 6                 # threshold compared as vth << 6
DS_OFFSET = 1                 # current decay uses du + 1 (Loihi-1 register offset)
DM_OFFSET = 0                 # voltage decay uses dv as is
UV_BITS = 24
MAX_UV = 1 << (UV_BITS - 1)   # u wraps at +-2^23, v saturates at +-(2^23 - 1)

# -- connections -----------------------------------------------------------
WEIGHT_BITS = 8               # Dense clips to 8-bit magnitude (+ sign)
CONV_WRAP_BITS = 24           # Conv output is wrapped to 24 bits (signed_clamp)
FLOAT32_EXACT = 1 << 24       # torch float32 conv is exact while |partial sums| < 2^24

SIGN_MODES = ("mixed", "excitatory", "inhibitory")


def sign_mode_of(w: np.ndarray) -> str:
    """Lava ``determine_sign_mode`` on int32 weights (weightutils.py:21-43)."""
    w = np.asarray(w)
    if w.size == 0 or w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def to_int32(x) -> np.ndarray:
    """C-style cast as Lava's Var init does: floats truncate toward 0, ints wrap."""
    out = np.empty(np.shape(x), dtype=np.int32)
    out[...] = np.trunc(x) if np.asarray(x).dtype.kind == "f" else np.asarray(x).astype(np.int64)
    return out


def quantize_dense_weights(w, num_weight_bits: int = 8, sign_mode: str | None = None) -> np.ndarray:
    """What ``PyDenseModelBitAcc`` does to its weights before the first step.

    cast to int32 -> sign mode -> clip to 8 bits (mixed [-256, 255],
    excitatory [0, 255], inhibitory [-255, 0]) -> drop
    ``8 - num_weight_bits + is_mixed`` LSBs (floor; magnitude for inhibitory).
    """
    w = to_int32(w).astype(np.int64)
    sm = sign_mode or sign_mode_of(w)
    mixed, inh = int(sm == "mixed"), sm == "inhibitory"
    if inh:
        w = -w
    w = np.clip(w, -(1 << WEIGHT_BITS) * mixed, (1 << WEIGHT_BITS) - 1)
    k = WEIGHT_BITS - num_weight_bits + mixed
    w = (w >> k) << k
    if inh:
        w = -w
    return w.astype(np.int32)


def shift_sum(acc: np.ndarray, weight_exp: int) -> np.ndarray:
    """Weight exponent applied to an accumulated sum (arithmetic shift)."""
    return acc << weight_exp if weight_exp >= 0 else acc >> -weight_exp


def mantissa_and_exp(magnitude: int) -> tuple[int, int]:
    """``(m, e)`` with ``m`` the top ``WEIGHT_BITS`` bits of ``magnitude`` and ``m << e``
    at most ``magnitude`` (equal when the bits below are zero): one Dense weight."""
    e = max(0, int(magnitude).bit_length() - WEIGHT_BITS)
    return int(magnitude) >> e, e


def binary_dense_message(mant, weight_exp: int) -> np.ndarray:
    """What a Dense with one weight per destination sends for one binary spike:
    the quantised mantissa, shifted by the exponent, wrapped to int32."""
    w = quantize_dense_weights(np.asarray(mant).reshape(-1, 1)).astype(np.int64)[:, 0]
    return wrap_int32(shift_sum(w, int(weight_exp)))


def wrap_int32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64).astype(np.int32)


def wrap_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Signed wrap to ``bits`` bits: ((x + 2^(b-1)) mod 2^b) - 2^(b-1)."""
    half = 1 << (bits - 1)
    return ((x.astype(np.int64) + half) % (1 << bits)) - half


def rtz_decay(x: np.ndarray, keep: int) -> np.ndarray:
    """``sign(x * keep) * (|x * keep| >> 12)``: Lava's round-toward-zero decay."""
    p = x.astype(np.int64) * keep
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


def lif_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    """Effective bias added to v: ``mant << exp`` (``>>`` for negative exp)."""
    bm = np.asarray(bias_mant).astype(np.int16).astype(np.int64)
    be = np.asarray(bias_exp).astype(np.int16).astype(np.int64)
    return np.where(be >= 0, bm << np.maximum(be, 0), bm >> np.maximum(-be, 0))
