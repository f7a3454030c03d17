"""Potential correction: each channel's initial membrane set from calibration data.

A rate-coded layer's count after a few steps is not its steady rate: the layers
feeding it have not settled, and an unsigned neuron keeps every spike an early,
unrepresentative volley made it fire (its count is the running maximum of its
charge in thresholds, not the charge).  The error has a mean per channel, which a
different starting charge removes: Li et al., "A free lunch from ANN: towards
efficient, accurate spiking neural networks calibration" (ICML 2021), call it
potential correction.  ``correct_potentials`` goes layer by layer from the input,
simulates the calibration samples for ``L + 8`` steps (the latency the rate
targets name first), and moves each channel's initial membrane by the charge its
mean rate misses over the steps since the layer's input arrived: ``(quantised
ANN - SNN) x steps x threshold``, twice per layer (the second pass takes out what
the first one's rounding and its effect on the running maximum left).  Layers
later in the network are measured with the earlier ones already corrected.

Only the initial state changes (``u0`` of a reset-synapse neuron, whose current
integrates; ``v0`` of a rate-soft one), so every backend runs the corrected net
bit for bit.  Networks that start at zero (reset to zero, NetX: its files cannot
set initial states) are left alone.  ``correct_potentials_if_better`` keeps the
result only where the network's decisions then agree with the quantised ANN's
more often, by the same noise floor as the rate correction's search.

MNIST, 10,000 test images, ``rate`` at L+8: ResNet 0.9624 -> 0.9800, MobileNet
0.5830 -> 0.9174 (ANN 0.9903 and 0.9824); the MLP and CNN keep their networks.
"""
from __future__ import annotations

import copy
from typing import Optional

import numpy as np

from neurocomp import numerics as nm
from neurocomp.lowered import LIFNeuron, LoweredNet

# the offset after the pipeline depth the rates are matched at (the rate targets' L+8)
MATCH_OFFSET = 8
PASSES = 2


def correctable(net: LoweredNet) -> list[str]:
    """Hidden unsigned LIF populations that start from a membrane state: reset-synapse
    neurons (``u0``) and reset-by-subtraction ones (``v0``).  Signed neurons (rate-soft's
    default) take early spikes back with -1 spikes; there a static offset only moved
    decisions at random (MNIST ResNet rate-soft, 10k test images: 0.9877 -> 0.9860 at L+8,
    0.9803 -> 0.9716 at L+4)."""
    out = []
    for name, p in net.populations.items():
        n = p.neuron
        if name == net.output or not isinstance(n, LIFNeuron) or n.signed:
            continue
        if (n.has_reset_synapses and n.u0 is not None) or (n.reset == "subtract" and n.v0 is not None):
            out.append(name)
    return out


def _state_attr(n: LIFNeuron) -> str:
    return "u0" if n.has_reset_synapses else "v0"


def correct_potentials(net: LoweredNet, x: np.ndarray, steps: int,
                       target: Optional[dict] = None) -> dict[str, float]:
    """Move each correctable channel's initial state in place so its mean rate on
    ``x`` over ``steps`` matches the quantised ANN (``target``: its values on ``x``,
    where the caller has them); returns per population the mean absolute per-channel
    rate error (spikes per step) it found, the layers before it already corrected."""
    from neurocomp.analysis import pop_depths, quantised_ann, snn_values
    from neurocomp.backends.event import EventBackend
    from neurocomp.encoding import encode

    target = quantised_ann(net, x) if target is None else target
    raster = encode(net, x, steps)
    depth = pop_depths(net)
    backend = EventBackend()
    errors = {}
    for name in correctable(net):
        p, n = net.populations[name], net.populations[name].neuron
        channels = p.shape[-1]
        attr = _state_attr(n)
        # rates count the steps after the population's input arrived (snn_values)
        charge = max(steps - depth[name], 1) * (int(n.vth) << nm.VTH_SHIFT)
        top = (int(n.vth) << nm.VTH_SHIFT) * int(n.burst) - 1
        want = np.clip(target[name], 0, n.burst)
        for k in range(PASSES):
            got = snn_values(net, backend.run(net, raster, record=[name]).spikes)[name]
            miss = (want - got).reshape(len(x), -1, channels).mean(axis=(0, 1))
            if k == 0:
                errors[name] = float(np.abs(miss).mean())
            state = np.broadcast_to(np.asarray(getattr(n, attr), np.float64), (p.size,)).reshape(-1, channels)
            # at most one threshold below zero: a spike's worth of early charge to absorb
            state = np.clip(np.round(state + miss * charge), -top - 1, top)
            setattr(n, attr, state.astype(np.int64).reshape(-1))
    net.validate()
    return errors


def correct_potentials_if_better(net: LoweredNet, x: np.ndarray) -> tuple:
    """``(network, note)``: the potential-corrected copy of ``net`` if its decisions on
    ``x`` agree with the quantised ANN's more often than ``net``'s, by ``MIN_GAIN``
    samples (``neurocomp.rate_correction``), else ``net``."""
    from neurocomp.analysis import quantised_ann
    from neurocomp.rate_correction import agreement, agrees_more_often

    # initial states do not enter the quantised ANN: one evaluation serves both networks
    target = quantised_ann(net, x)
    reference = target[net.output].argmax(1)
    before = agreement(net, x, reference)
    fixed = copy.deepcopy(net)
    errors = correct_potentials(fixed, x, net.latency_steps() + MATCH_OFFSET, target)
    after = agreement(fixed, x, reference)
    applied = agrees_more_often(after, before, len(x))
    note = {"agreement_before": before, "agreement_after": after, "applied": applied,
            "rate_error_found": errors}
    return (fixed if applied else net), note
