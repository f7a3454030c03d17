"""Rate correction of reset-to-zero layers: it moves each layer's mean rate to
the quantised ANN's and is kept only where it helps."""
from __future__ import annotations

import copy

import numpy as np

import neurocomp
from neurocomp.analysis import quantised_ann, snn_values
from neurocomp.backends.event import EventBackend
from neurocomp.backends.netx import netx_expressible
from neurocomp.encoding import encode
from neurocomp.quant import Formats
from neurocomp.rate_correction import correct_rates


def test_correction_matches_mean_rates_and_stays_netx_expressible(zoo, digits):
    x_tr, _, x_te, _ = digits
    model, _ = zoo("lenet")
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    x, steps = x_tr[:200], c.latency_steps + 32
    net = copy.deepcopy(c.net)
    target = quantised_ann(net, x)

    def mismatch(n):
        res = EventBackend().run(n, encode(n, x, steps), record="all")
        got = snn_values(n, res.spikes)
        return {p: abs(got[p].mean() / np.clip(target[p], 0, 1).mean() - 1)
                for p in got if p not in (n.input, n.output)}

    before = mismatch(net)
    scales = correct_rates(net, x, steps, Formats.from_hw(c.hw))
    after = mismatch(net)
    assert set(scales) == set(before) and all(s < 1 for s in scales.values())   # rates were too low
    assert all(after[p] < before[p] for p in before), (before, after)
    assert max(after.values()) < 0.1          # within 10 % after at most MAX_ITERATIONS rounds
    assert netx_expressible(net)[0]
    for p in scales:
        n = net.populations[p].neuron
        assert (np.asarray(n.bias_exp) >= 6).all()        # whole weight units, as NetX needs


def test_compile_keeps_the_correction_only_when_it_agrees_better(zoo, digits):
    x_tr = digits[0]
    model, _ = zoo("lenet")
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_reset="zero")
    note = c.notes["rate_correction"]
    assert note["applied"] == (note["agreement_after"] > note["agreement_before"])
    plain = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    changed = any(c.net.populations[p].neuron.vth != plain.net.populations[p].neuron.vth
                  for p in note["threshold_scales"])
    assert changed == note["applied"]
