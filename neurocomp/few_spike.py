"""Lowering one population in ``few-spike`` mode (``FewSpikeNeuron``).

Scales: a few-spike population carrying activation ``a`` (normalised, 1.0 =
its calibration scale) emits ``round(a * (2^k - 1))`` in payloads per cycle
of ``k`` steps (clipped to ``[0, 2^k - 1]``): ``unit = 2^k - 1``.  A
constant-current input with ``pmax`` per activation 1.0 delivers ``k * pmax``
per cycle.  A population with threshold mantissa ``vth`` latches
``v = vth * unit * (sum W' a + b')``, so its weights are
``W' * vth * unit / unit_src`` and its bias ``b' * vth * unit`` plus
``vth / 2`` (the greedy binary expansion floors ``v / vth``; the half
threshold rounds it).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from neurocomp.lowered import FewSpikeNeuron, SigmaNeuron
from neurocomp.quant import Formats, choose_lif_format, round_mantissas

# per-step messages stay below 2^24: Lava's float32 conv is exact and its 24-bit wrap never
# triggers; the latched sum of k steps stays inside int32 for k <= 64
MESSAGE_BITS = 24


def cycle_unit(k: int) -> int:
    """Payload sum per cycle that stands for an activation of 1.0."""
    return (1 << k) - 1


def lower_population(conns, src_units, src_payload_max, src_signed, b_n, shape, is_output: bool,
                     relu: bool, k: int, netx_weights: bool, fmt: Formats):
    """``(neuron, integer weights per connection, weight_exp per connection, unit)``
    of one population fed by ``conns`` (normalised weights ``.w``, ``.kind``,
    ``.sum_axes``) from sources with per-cycle ``src_units``, and bias ``b_n``."""
    unit = cycle_unit(k)
    size = int(np.prod(shape))
    bias = np.zeros(size) if b_n is None else np.broadcast_to(b_n, tuple(shape)).reshape(-1).astype(np.float64)
    if is_output and not relu:
        # a Sigma decoder: per cycle it gains c * sum(W' a); the host adds round(b' * c)
        lim = fmt.mantissa_max
        c = min(lim * u / (float(np.abs(cn.w).max()) or 1.0) for cn, u in zip(conns, src_units))
        worst = sum(float(np.abs(cn.w).sum(axis=cn.sum_axes).max()) * pm / u
                    for cn, u, pm in zip(conns, src_units, src_payload_max)) or 1.0
        c = min(c, ((1 << MESSAGE_BITS) - 1) / worst)
        mants = [round_mantissas(cn.w / u, c, lim) for cn, u in zip(conns, src_units)]
        return SigmaNeuron(bias=np.round(bias * c).astype(np.int64)), mants, [0] * len(conns), c
    wide = dataclasses.replace(fmt, accumulator_bits=MESSAGE_BITS + 6)
    lf = choose_lif_format([cn.w for cn in conns], [u / unit for u in src_units], list(src_payload_max),
                           [cn.sum_axes for cn in conns], wide,
                           allow_exp=all(cn.kind == "dense" for cn in conns) and not netx_weights,
                           vth_cap=min(fmt.vth_max, (1 << (32 - k)) - 1), signed=list(src_signed))
    b_int = np.round(bias * lf.vth * unit).astype(np.int64) + lf.vth // 2
    neuron = FewSpikeNeuron(k=int(k), vth=int(lf.vth), bias=b_int)
    return neuron, lf.mantissas, [int(lf.weight_exp)] * len(conns), unit


def decode_window(steps: int, k: int) -> tuple[int, int]:
    """``(t0, t1)``: the last complete cycle an output Sigma decoder has
    integrated by step ``steps - 1`` (its value is ``sigma[t1] - sigma[t0]``)."""
    t1 = ((steps - 1) // k) * k
    return max(t1 - k, 0), t1


def latency_steps(hops: int, k: int) -> int:
    """Steps until the output decoder holds its first complete cycle: every hop
    but the last (into the decoder) costs one cycle, the decoder integrates one
    more, plus one step to read it (``decode_window`` then ends at step L-1)."""
    return hops * k + 1


__all__ = ["cycle_unit", "lower_population", "decode_window", "latency_steps", "MESSAGE_BITS"]
