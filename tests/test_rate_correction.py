"""Rate correction of reset-to-zero layers: it moves each layer's mean rate to
the quantised ANN's and is kept only where it helps."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import neurocomp
from neurocomp.analysis import quantised_ann, snn_values
from neurocomp.backends.event import EventBackend
from neurocomp.backends.netx import netx_expressible
from neurocomp.encoding import encode
from neurocomp.quant import Formats
from neurocomp.rate_correction import MIN_GAIN, correct_rates


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
    steps = []
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_reset="zero",
                          on_pass=lambda i, n, name: steps.append(name))
    note = c.notes["rate_correction"]
    assert note["applied"] == (note["agreement_after"] > note["agreement_before"] + MIN_GAIN / 300)
    # a command-line progress bar names the search's candidates while it runs
    i = steps.index("lower")
    assert steps[i + 1] == "rate correction" and steps[i + 2].startswith("rate correction: threshold candidate 1 of up to ")
    plain = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    changed = any(c.net.populations[p].neuron.vth != plain.net.populations[p].neuron.vth
                  for p in note["threshold_scales"])
    assert changed == note["applied"]


@pytest.mark.parametrize("gain, kept", [(0.5, False), (1.5, True)])
def test_the_correction_must_gain_more_than_noise(zoo, digits, monkeypatch, gain, kept):
    """The corrected network is kept only where it agrees with the quantised ANN more often by
    ``MIN_GAIN`` calibration samples, the floor every search step must clear: a smaller gain is
    the sample's noise (the MNIST MLP's 0.4 weighted images had cost it 11 test images)."""
    import neurocomp.rate_correction as rc

    x = digits[0][:200]
    model, _ = zoo("lenet")
    plain = neurocomp.compile(model, calib=x, mode="rate", rate_correction=False, rate_reset="zero")
    before = rc.agreement(plain.net, x, quantised_ann(plain.net, x)[plain.net.output].argmax(1))
    monkeypatch.setattr(rc, "tune_thresholds", lambda net, *a, **k: ({}, before + gain * MIN_GAIN / len(x)))
    net, note = rc.correct_rates_if_better(plain.net, x, plain.latency_steps + 32, Formats.from_hw(plain.hw))
    assert note["applied"] == kept and (net is not plain.net) == kept


def test_threshold_search_agrees_at_least_as_often_and_stays_netx_expressible(zoo, digits):
    """``tune_thresholds`` goes on from the matched means; it moves a threshold only
    for more agreement with the quantised ANN, so it never ends with less."""
    from neurocomp.rate_correction import SWEEPS, THRESHOLD_FACTORS, agreement, tune_thresholds

    x_tr = digits[0]
    model, _ = zoo("lenet")
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    x, fmt = x_tr[:200], Formats.from_hw(c.hw)
    net = copy.deepcopy(c.net)
    reference = quantised_ann(net, x)[net.output].argmax(1)
    correct_rates(net, x, c.latency_steps + 32, fmt)
    matched = agreement(net, x, reference)
    vth = {p: net.populations[p].neuron.vth for p in net.populations if p != net.input}
    calls = []
    factors, tuned = tune_thresholds(net, x, reference, fmt, progress=lambda *a: calls.append(a))
    assert agreement(net, x, reference) == tuned >= matched
    most = SWEEPS * len(factors) * len(THRESHOLD_FACTORS)
    assert [c[0] for c in calls] == list(range(1, len(calls) + 1)) and {c[1] for c in calls} == {most}
    assert len(calls) in range(most // SWEEPS, most + 1, len(factors) * len(THRESHOLD_FACTORS))
    assert set(factors) == {p for p in vth if p not in (net.input, net.output)}
    for p, f in factors.items():
        assert net.populations[p].neuron.vth == pytest.approx(vth[p] * f)
    assert net.populations[net.output].neuron.vth == vth[net.output]       # the read-out is left alone
    assert netx_expressible(net)[0]


def test_without_the_search_the_correction_is_mean_matching_alone(zoo, digits):
    """``threshold_search=False`` (minutes saved on deep networks) judges, and keeps where
    it agrees more often, the mean-matched network."""
    from neurocomp.rate_correction import agreement

    x_tr = digits[0]
    model, _ = zoo("lenet")
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_reset="zero", threshold_search=False)
    plain = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    note = c.notes["rate_correction"]
    assert not note["threshold_search"]
    matched = copy.deepcopy(plain.net)
    correct_rates(matched, x_tr[:300], plain.latency_steps + 32, Formats.from_hw(plain.hw))
    reference = quantised_ann(plain.net, x_tr[:300])[plain.net.output].argmax(1)
    assert note["agreement_after"] == agreement(matched, x_tr[:300], reference)
    kept = matched if note["applied"] else plain.net
    for p in note["threshold_scales"]:
        assert c.net.populations[p].neuron.vth == kept.populations[p].neuron.vth
        assert note["threshold_scales"][p] == matched.populations[p].neuron.vth / plain.net.populations[p].neuron.vth


def test_quantised_ann_of_a_corrected_network_is_the_uncorrected_one(zoo, digits):
    """Rate correction scales thresholds and biases of the spiking network; the quantised
    ANN it reports (the accuracy that separates quantisation loss from spiking loss) stays
    that of the network before it, up to the biases' rounding to whole weight units."""
    x_tr, _, x_te, _ = digits
    model, _ = zoo("cnn_bn_relu")          # lenet on digits: a gain below MIN_GAIN, not applied
    c = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_reset="zero")
    plain = neurocomp.compile(model, calib=x_tr[:300], mode="rate", rate_correction=False, rate_reset="zero")
    assert c.notes["rate_correction"]["applied"]
    assert c.net.meta["threshold_corrections"] == pytest.approx(c.notes["rate_correction"]["threshold_scales"])
    q, q0 = (quantised_ann(n.net, x_te) for n in (c, plain))
    err = {p: np.abs(q[p] - q0[p]).mean() for p in c.net.meta["threshold_corrections"]}
    assert max(err.values()) < 0.01, err                     # activation 1.0 = the calibration scale
    assert (q[c.net.output].argmax(1) == q0[c.net.output].argmax(1)).mean() >= 0.99
    del c.net.meta["threshold_corrections"]             # what it reported before: a hybrid
    hybrid = quantised_ann(c.net, x_te)
    assert all(np.abs(hybrid[p] - q0[p]).mean() > 2 * err[p] for p in err)
