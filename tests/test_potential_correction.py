"""Potential correction: each channel's initial membrane moved by the charge its mean
rate misses at T = L+8; kept only where the network agrees more often with the
quantised ANN; the corrected network runs bit-exact on Lava."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import neurocomp
from neurocomp.analysis import pop_depths, quantised_ann, snn_values
from neurocomp.backends.event import EventBackend
from neurocomp.encoding import encode
from neurocomp.potential_correction import (MATCH_OFFSET, correct_potentials, correct_potentials_if_better,
                                            correctable)


def _channel_miss(net, x, steps):
    """Per correctable population, the mean absolute per-channel rate error against the
    quantised ANN (spikes per step) over ``steps``."""
    res = EventBackend().run(net, encode(net, x, steps), record="all")
    got, want = snn_values(net, res.spikes), quantised_ann(net, x)
    out = {}
    for p in correctable(net):
        c = net.populations[p].shape[-1]
        miss = (np.clip(want[p], 0, 1) - got[p]).reshape(len(x), -1, c).mean(axis=(0, 1))
        out[p] = float(np.abs(miss).mean())
    return out


UNSIGNED = {"rate": {"rate_reset": "synapse"}, "rate-soft": {"signed_spikes": False}}


@pytest.mark.parametrize("mode, attr", [("rate", "u0"), ("rate-soft", "v0")])
def test_correction_moves_channel_rates_to_the_quantised_ann(zoo, digits, mode, attr):
    x = digits[0][:300]
    model, _ = zoo("resnet_bn")
    extra = UNSIGNED[mode]
    c = neurocomp.compile(model, calib=x, mode=mode, potential_correction=False, **extra)
    net = copy.deepcopy(c.net)
    steps = c.latency_steps + MATCH_OFFSET
    names = correctable(net)
    assert len(names) == len([p for p in net.populations if p not in (net.input, net.output)])
    before = _channel_miss(net, x, steps)
    errors = correct_potentials(net, x, steps)
    after = _channel_miss(net, x, steps)
    # it reports each layer's error as it found it: the first one's before any correction
    assert set(errors) == set(names) and errors[names[0]] == pytest.approx(before[names[0]])
    assert sum(after.values()) < 0.5 * sum(before.values()), (before, after)
    # only the initial state moved, per channel (one value per channel where the layer had one)
    for p in names:
        n0, n1 = c.net.populations[p].neuron, net.populations[p].neuron
        assert (n0.vth, n0.self_weight, n0.reset) == (n1.vth, n1.self_weight, n1.reset)
        s0 = np.broadcast_to(getattr(n0, attr), (net.populations[p].size,))
        delta = (np.asarray(getattr(n1, attr)) - s0).reshape(-1, net.populations[p].shape[-1])
        assert np.any(delta != 0)
        if np.ndim(getattr(n0, attr)) == 0:
            assert (delta == delta[0]).all()
        assert np.abs(getattr(n1, attr)).max() <= (int(n1.vth) << 6)


def test_compile_keeps_it_only_where_decisions_agree_more_often(zoo, digits, monkeypatch):
    import neurocomp.rate_correction as rc

    x = digits[0][:300]
    model, _ = zoo("resnet_bn")
    c = neurocomp.compile(model, calib=x, mode="rate")
    plain = neurocomp.compile(model, calib=x, mode="rate", potential_correction=False)
    note = c.notes["potential_correction"]
    assert note["applied"] == (note["agreement_after"] > note["agreement_before"] + rc.MIN_GAIN / len(x))
    changed = any(np.any(np.asarray(c.net.populations[p].neuron.u0) != np.asarray(plain.net.populations[p].neuron.u0))
                  for p in correctable(plain.net))
    assert changed == note["applied"]
    # a gain under the noise floor is not kept, one above it is
    for gain, kept in ((0.5, False), (1.5, True)):
        calls = []

        def fake(net, xx, reference, **k):
            calls.append(net)
            return 0.5 if len(calls) == 1 else 0.5 + gain * rc.MIN_GAIN / len(xx)
        monkeypatch.setattr(rc, "agreement", fake)
        net, note = correct_potentials_if_better(plain.net, x)
        assert note["applied"] == kept and (net is not plain.net) == kept


def test_networks_that_start_at_zero_or_take_spikes_back_are_left_alone(zoo, digits):
    """Reset to zero keeps NetX's zero initial state; sigma-delta has no rate to match;
    signed rate-soft neurons take early spikes back themselves."""
    x = digits[0][:200]
    model, _ = zoo("lenet")
    for kw in ({"mode": "rate", "rate_reset": "zero"}, {"mode": "sigma-delta"}, {"mode": "rate-soft"}):
        c = neurocomp.compile(model, calib=x, **kw)
        assert not correctable(c.net) and "potential_correction" not in c.notes


@pytest.mark.xdist_group("lava")
@pytest.mark.parametrize("mode", ["rate", "rate-soft"])
def test_corrected_network_is_bit_exact_on_lava(zoo, digits, mode):
    from backend_agreement import assert_identical, run_event_and_lava

    x = digits[2][:2]
    model, _ = zoo("resnet_bn")
    c = neurocomp.compile(model, calib=digits[0][:300], mode=mode, potential_correction=False, **UNSIGNED[mode])
    net = copy.deepcopy(c.net)
    correct_potentials(net, digits[0][:300], c.latency_steps + MATCH_OFFSET)
    depth = pop_depths(net)
    assert any(np.ptp(np.asarray(net.populations[p].neuron.u0 if mode == "rate" else net.populations[p].neuron.v0)) > 0
               for p in correctable(net) if depth[p] > 1)
    assert assert_identical(*run_event_and_lava(net, encode(net, x, c.latency_steps + 4))) > 0
