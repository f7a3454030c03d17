"""Rate correction for reset-to-zero integrate-and-fire layers (``rate`` mode).

A neuron that resets to zero discards the charge above threshold at every
spike, so its rate for a per-step input ``I`` (in thresholds) is about
``I / (1 + I/2)``, not ``I``: every layer passes on slightly less than the
ANN's activation while its bias does not shrink.  Over a few layers the
signal sinks under the biases (a LeNet-style MNIST CNN falls to 20-40 %).
``correct_rates`` measures each layer's mean rate on calibration data with the
event simulator, layer by layer from the input, and lowers its threshold (and
its bias and initial membrane with it, so the operating point stays the same)
until the mean matches the quantised ANN's mean activation.  Only thresholds
and biases change: the network stays LIF / NetX CUBA expressible.

Matching means is a first-order fix (the reset's loss is larger for strong
inputs), so ``correct_rates_if_better`` keeps the correction only where the
corrected network agrees more often with the quantised ANN's decisions on
the calibration data -- a label-free check.
"""
from __future__ import annotations

import numpy as np

from neurocomp import numerics as nm
from neurocomp.lowered import LIFNeuron, LoweredNet
from neurocomp.quant import Formats, bias_to_mant_exp

MAX_ITERATIONS = 6
TOLERANCE = 0.01          # relative mismatch of the mean rate accepted


def correct_rates(net: LoweredNet, x: np.ndarray, steps: int, fmt: Formats) -> dict[str, float]:
    """Rescale hidden reset-to-zero LIF thresholds in place so each layer's mean
    rate on ``x`` over ``steps`` matches the quantised ANN; returns the final
    threshold scale per population."""
    from neurocomp.analysis import quantised_ann, snn_values
    from neurocomp.backends.event import EventBackend
    from neurocomp.encoding import encode

    target = quantised_ann(net, x)
    raster = encode(net, x, steps)
    backend = EventBackend()
    scales = {}
    for name, p in net.populations.items():
        n = p.neuron
        if not isinstance(n, LIFNeuron) or n.reset != "zero" or n.self_weight or name == net.output:
            continue
        want = float(np.clip(target[name], 0, 1).mean())
        total = 1.0
        for _ in range(MAX_ITERATIONS):
            got = float(snn_values(net, backend.run(net, raster, record=[name]).spikes)[name].mean())
            if want <= 0 or got <= 0:
                break
            ratio = got / want
            vth = max(1, int(round(n.vth * ratio)))
            if abs(vth / n.vth - 1) < TOLERANCE:
                break
            _scale_threshold(n, vth, fmt)
            total *= ratio
        scales[name] = total
    net.validate()
    return scales


def agreement(net: LoweredNet, x: np.ndarray, steps: int, reference: np.ndarray) -> float:
    """Fraction of ``x`` on which the spiking network's decision equals ``reference``."""
    from neurocomp.backends.event import EventBackend
    from neurocomp.encoding import encode
    from neurocomp.readout import needs_states, scores

    res = EventBackend().run(net, encode(net, x, steps), record_states=needs_states(net))
    return float((scores(net, res).argmax(1) == reference).mean())


def correct_rates_if_better(net: LoweredNet, x: np.ndarray, steps: int, fmt: Formats) -> tuple:
    """``(network, note)``: the rate-corrected copy of ``net`` if it agrees more
    often with the quantised ANN on ``x`` than ``net`` does, else ``net``."""
    import copy
    from neurocomp.analysis import quantised_ann

    # the uncorrected network's quantised ANN is the reference for both: the correction
    # rescales biases, which would move the corrected network's own quantised ANN
    reference = quantised_ann(net, x)[net.output].argmax(1)
    before = agreement(net, x, steps, reference)
    fixed = copy.deepcopy(net)
    scales = correct_rates(fixed, x, steps, fmt)
    after = agreement(fixed, x, steps, reference)
    note = {"agreement_before": before, "agreement_after": after, "applied": after > before,
            "threshold_scales": scales}
    return (fixed if after > before else net), note


def _scale_threshold(n: LIFNeuron, vth: int, fmt: Formats) -> None:
    s = vth / n.vth
    n.vth = vth
    if n.bias_mant is not None:
        bias = nm.lif_bias(n.bias_mant, n.bias_exp if n.bias_exp is not None else 0) * s
        # whole weight units (x64), as the lowering keeps them for NetX's CUBA bias
        n.bias_mant, n.bias_exp, _ = bias_to_mant_exp(np.round(bias / 64) * 64, fmt, exp_min=nm.ACT_SHIFT)
    if n.v0 is not None:
        n.v0 = np.round(np.asarray(n.v0) * s).astype(np.int64)
