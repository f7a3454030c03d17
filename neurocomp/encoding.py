"""Turning float inputs into the input population's integer raster.

Every encoding runs on the host and produces the ``(batch, steps, n_input)``
int32 raster all backends consume, so whatever it computes is bit-exact across
backends by construction.  Payloads never exceed the input population's
``payload_max`` (the bound the first layer's weights were quantised for); the
spiking encodings emit ``payload_max`` (with the input's sign) per spike, so a
spike carries the same charge as one step of constant current at the
calibration maximum and the first layer's weights keep their meaning.

Let ``r = clip(x_scaled * payload_per_unit, lo, payload_max) / payload_max``
be the input as a fraction of its calibration maximum (``lo = -payload_max``
for signed inputs, else 0) and ``p`` its rounded integer payload.

=================  ==================================================================
``constant``       ``p`` every step (constant current; the default).
``delta``          ``p`` at the first step only (sigma-delta networks integrate it).
``poisson``        a spike with probability ``r`` per step (ANNarchy's ``CPN``,
                   SNN Toolbox's Poisson input); unsigned inputs only.
``signed-poisson`` a spike of sign ``sign(r)`` with probability ``|r|``.
``if``             integer integrate-and-fire: ``v += |p|``; spike and ``v -= payload_max``
                   when ``v >= payload_max``; ``v`` starts at ``payload_max // 2`` (rounds
                   the count instead of flooring it).  Deterministic: after ``t`` steps
                   the count is ``floor((payload_max // 2 + t |p|) / payload_max)``.
``burst``          Izhikevich (2003) intrinsically bursting neuron driven by
                   ``I = burst_gain * r`` (ANNarchy's ``IB``: a=0.02, b=0.2, c=-55, d=4,
                   spike at v > 30, v0=-55, u0=-13, forward Euler, one step = 1 ms).
                   Its rate is a saturating function of ``I`` (about 0.37 spikes per
                   step at ``I = 100``), so the first layer sees less drive than with
                   constant current: budget more steps.  Unsigned inputs only.
``phase``          weighted-spike phase coding (Kim et al. 2018, "Deep neural networks
                   with weighted spikes", the scheme ANNarchy's ``PSO`` cites): periods of
                   ``k = bit_length(payload_max)`` steps; at phase ``i`` (MSB first) the
                   payload is bit ``k-1-i`` of ``|p|`` times its weight ``2^(k-1-i)``,
                   with the input's sign.  A period delivers exactly ``p`` -- once per
                   ``k`` steps, so the first layer's drive is ``1/k`` of constant
                   current's.  (ANNarchy's literal PSO neuron compares the input with an
                   oscillating threshold and emits unweighted spikes, a logarithmic
                   code that does not preserve rates; it is not reproduced.)
=================  ==================================================================

Stochastic encodings draw from a counter-based generator keyed by
``(seed, sample index, step, neuron)``: the same seed gives the same raster,
and a sample's raster does not depend on the batch it is in (``sample_offset``
gives its index in a larger set) nor on the number of steps (a longer run
extends a shorter one).
"""
from __future__ import annotations

import numpy as np

from neurocomp.errors import NeurocompError
from neurocomp.lowered import InputNeuron, LoweredNet

#: Encodings a user can choose (``ConvertOptions.encoding``, ``simulate(encoding=...)``).
ENCODINGS = ("constant", "poisson", "signed-poisson", "if", "burst", "phase")
#: Encodings that use the ``seed``.
STOCHASTIC = ("poisson", "signed-poisson")
#: Encodings that cannot carry a negative input.
UNSIGNED_ONLY = ("poisson", "burst")

IZHIKEVICH_IB = dict(a=0.02, b=0.2, c=-55.0, d=4.0, v_thresh=30.0, v0=-55.0, u0=-13.0)
BURST_GAIN = 100.0          # ANNarchy's max_f: input 1.0 drives I = 100
_BLOCK = 64                 # samples per block for the large temporaries


class EncodingError(NeurocompError):
    """An input encoding is unknown or does not fit the network's mode or input."""


def input_payloads(neuron: InputNeuron, x: np.ndarray) -> np.ndarray:
    """(batch, n) integer payloads for float samples ``x`` (batch, *shape)."""
    return np.rint(_scaled(neuron, x)).astype(np.int32)


def _scaled(neuron: InputNeuron, x: np.ndarray) -> np.ndarray:
    """(batch, n) float payloads before rounding, clipped to the payload range."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1) if neuron.pre_scale is None else \
        np.asarray(x, dtype=np.float64)
    if neuron.pre_scale is not None:
        x = (x * neuron.pre_scale + neuron.pre_offset).reshape(len(x), -1)
    # integer bounds: rounding after clipping equals rounding before, input_payloads is unchanged
    return np.clip(x * neuron.payload_per_unit, -neuron.payload_max if neuron.signed else 0,
                   neuron.payload_max)


def default_encoding(net: LoweredNet) -> str:
    """The encoding the network was compiled for (``delta`` for sigma-delta)."""
    return net.populations[net.input].neuron.encoding


def check_encoding(net: LoweredNet, encoding: str) -> str:
    """``encoding`` resolved against the network; raises ``EncodingError`` when it does not fit."""
    neuron = net.populations[net.input].neuron
    mode = net.meta.get("mode", "rate")
    if encoding not in ENCODINGS + ("delta",):
        raise EncodingError(f"unknown input encoding '{encoding}'; choose one of {', '.join(ENCODINGS)}")
    if neuron.encoding == "delta" or mode == "sigma-delta":
        # a sigma-delta network integrates input *changes*: only a delta-coded constant makes sense
        if encoding not in ("constant", "delta"):
            raise EncodingError(f"encoding '{encoding}' does not apply to mode sigma-delta (its input is "
                                "the delta-coded constant current); use encoding 'constant' or a rate mode")
        return "delta"
    if encoding == "delta":
        raise EncodingError(f"encoding 'delta' is for sigma-delta networks; this one is mode '{mode}': "
                            "use 'constant'")
    if encoding in UNSIGNED_ONLY and neuron.signed:
        raise EncodingError(f"encoding '{encoding}' cannot carry the negative inputs this network takes "
                            "(its input scaling has an offset); use signed-poisson, if or phase")
    return encoding


def encode(net: LoweredNet, x: np.ndarray, steps: int, encoding: str | None = None, seed: int = 0,
           sample_offset: int = 0) -> np.ndarray:
    """Raster ``(batch, steps, n_input)`` int32 for ``steps`` time steps.

    ``encoding``: default the network's (``ConvertOptions.encoding``, kept in
    the bundle); ``seed``: for the stochastic encodings; ``sample_offset``: the
    index of ``x[0]`` in the data set, so a sample's raster is the same in any
    batch.
    """
    neuron = net.populations[net.input].neuron
    enc = check_encoding(net, encoding or default_encoding(net))
    batch = len(x)
    if enc in ("constant", "delta"):
        p = input_payloads(neuron, x)
        raster = np.zeros((batch, steps, p.shape[1]), np.int32)
        if enc == "constant":
            raster[:] = p[:, None, :]
        else:
            raster[:, 0] = p
        return raster
    pmax = int(neuron.payload_max)
    f = _scaled(neuron, x)
    raster = np.zeros((batch, steps, f.shape[1]), np.int32)
    for b0 in range(0, batch, _BLOCK):
        fb = f[b0:b0 + _BLOCK]
        if enc in STOCHASTIC:
            u = uniform(seed, sample_offset + b0, len(fb), steps, fb.shape[1])
            rate = np.abs(fb) / pmax
            raster[b0:b0 + _BLOCK] = np.where(u < rate[:, None, :], np.sign(fb)[:, None, :] * pmax, 0)
        elif enc == "if":
            raster[b0:b0 + _BLOCK] = _if_raster(np.rint(fb).astype(np.int64), pmax, steps)
        elif enc == "burst":
            raster[b0:b0 + _BLOCK] = _burst_spikes(fb / pmax, steps) * pmax
        elif enc == "phase":
            raster[b0:b0 + _BLOCK] = _phase_raster(np.rint(fb).astype(np.int64), pmax, steps)
    return raster


# -- the encoders ------------------------------------------------------------------------

def _if_raster(p: np.ndarray, pmax: int, steps: int) -> np.ndarray:
    # closed form of v += |p|; spike, v -= pmax at v >= pmax: |p| <= pmax keeps it to one spike a step
    t = np.arange(steps + 1, dtype=np.int64)[None, :, None]
    count = (pmax // 2 + t * np.abs(p)[:, None, :]) // pmax
    return (np.diff(count, axis=1) * pmax * np.sign(p)[:, None, :]).astype(np.int32)


def _burst_spikes(r: np.ndarray, steps: int, gain: float = BURST_GAIN) -> np.ndarray:
    """(batch, steps, n) 0/1 spikes of Izhikevich IB neurons driven by ``gain * r``."""
    k = IZHIKEVICH_IB
    current = gain * np.clip(r, 0.0, 1.0)
    v = np.full(r.shape, k["v0"])
    u = np.full(r.shape, k["u0"])
    out = np.zeros((r.shape[0], steps, r.shape[1]), np.int32)
    for t in range(steps):
        v_new = v + (0.04 * v * v + 5.0 * v + 140.0 - u + current)
        u = u + k["a"] * (k["b"] * v - u)
        v = v_new
        s = v > k["v_thresh"]
        out[:, t] = s
        v = np.where(s, k["c"], v)
        u = np.where(s, u + k["d"], u)
    return out


def _phase_raster(p: np.ndarray, pmax: int, steps: int) -> np.ndarray:
    k = max(1, int(pmax).bit_length())
    bit = (k - 1 - np.arange(steps) % k)[None, :, None]
    mag = np.abs(p)[:, None, :] & (np.int64(1) << bit)
    return (mag * np.sign(p)[:, None, :]).astype(np.int32)


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection on uint64 with good avalanche)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def uniform(seed: int, sample0: int, batch: int, steps: int, n: int) -> np.ndarray:
    """``(batch, steps, n)`` uniforms in [0, 1), a pure function of
    ``(seed, sample0 + b, t, i)``: no state, so any slicing reproduces them."""
    with np.errstate(over="ignore"):
        key = _mix(np.asarray([int(seed) & 0xFFFFFFFFFFFFFFFF], np.uint64) + _GAMMA)
        s = np.arange(sample0, sample0 + batch, dtype=np.uint64)[:, None, None]
        t = np.arange(steps, dtype=np.uint64)[None, :, None]
        i = np.arange(n, dtype=np.uint64)[None, None, :]
        h = _mix(key ^ (s * _GAMMA + _M1))
        h = _mix(h ^ (t * _GAMMA + _M2))
        h = _mix(h ^ (i * _GAMMA))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def spike_rate(raster: np.ndarray, pmax: int) -> np.ndarray:
    """``(batch, n)`` mean payload per step as a fraction of ``pmax`` (the rate a raster carries)."""
    return raster.astype(np.float64).mean(axis=1) / pmax
