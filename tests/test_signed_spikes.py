"""rate-soft's signed spikes (``LIFNeuron.signed``, ``ConvertOptions.signed_spikes``).

A reset-by-subtraction neuron's spike count is the running maximum of its
rounded charge: a spike fired on an early, unrepresentative volley stays in the
count.  A signed neuron takes such a spike back with a -1 payload, so its net
count is the rounded ReLU of the charge so far.  Checked here: that invariant
step by step on the event simulator, Lava's fixed_pt model giving the same
payloads and states, the lowering (hidden layers signed, the read-out not, the
option refused where no neuron can count), and the accuracy it buys on a deep
BatchNorm ResNet at few steps."""
import numpy as np
import pytest

import neurocomp
from neurocomp import ir
from neurocomp import numerics as nm
from neurocomp.backends.event import EventBackend
from neurocomp.compiler import check_options
from neurocomp.errors import NeurocompError
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredError, LoweredNet
from neurocomp.options import ConvertOptions
from keras_zoo import labels_for, load_digits_data, load_or_build

VTH = 50


def _signed_net(weight, signed=True, vth=VTH, burst=1):
    """Graded input -> one dense layer of signed rate-soft neurons starting at half threshold
    (``burst``: up to that many spikes per step, ``tests/test_burst.py``)."""
    n_out, n_in = weight.shape
    net = LoweredNet(input="in", output="out")
    net.add_population("in", (n_in,), InputNeuron(graded=True, payload_max=40, signed=True))
    net.add_population("out", (n_out,), LIFNeuron(
        vth=vth, reset="subtract", signed=signed, burst=burst,
        v0=np.full(n_out, (vth << nm.VTH_SHIFT) // 2, np.int64)))
    net.connect(name="in->out", src="in", dst="out", kind="dense", weight=weight.astype(np.int64))
    net.validate()
    return net


def _raster(rng, steps, n_in, top):
    """Inputs whose sign flips half-way, so charges rise and then fall back below zero."""
    x = rng.integers(0, top + 1, size=(4, steps, n_in))
    x[:, steps // 2:] *= -1
    return x.astype(np.int32)


def test_net_count_is_the_rounded_relu_of_the_charge():
    rng = np.random.default_rng(3)
    w = rng.integers(0, 2, size=(12, 6))
    net = _signed_net(w)
    raster = _raster(rng, 40, 6, 8)                # per-step charge below one threshold: no lag
    res = EventBackend().run(net, raster, record="all", record_states=True)
    s = res.spikes["out"].astype(np.int64)
    assert set(np.unique(s)) == {-1, 0, 1}
    # without recorded states the simulator takes its IF kernel: the same spikes
    np.testing.assert_array_equal(EventBackend().run(net, raster, record="all").spikes["out"], s)
    count = np.cumsum(s, axis=1)
    # the charge that has reached the neuron by step t (each hop costs a step)
    drive = np.einsum("btj,ij->bti", raster.astype(np.int64), w)
    charge = np.concatenate([np.zeros_like(drive[:, :1]), np.cumsum(drive, axis=1)[:, :-1]], axis=1)
    half, vth64 = (VTH << nm.VTH_SHIFT) // 2, VTH << nm.VTH_SHIFT
    v = res.states["out"]["v"].astype(np.int64)
    np.testing.assert_array_equal(v + count * vth64, half + (charge << nm.ACT_SHIFT))
    # and v stays in [0, vth] while the count is positive (below 0 only at count 0): so the
    # count is max(0, round(charge / vth)) (either neighbour at an exact tie)
    assert (count >= 0).all() and (v <= vth64).all() and (v[count > 0] >= 0).all()
    exact = ((charge << nm.ACT_SHIFT) + half) / vth64 - 0.5
    assert (np.abs(count - np.maximum(exact, 0)) <= 0.5).all()
    # the plain soft reset keeps every spike it fired on the way up
    plain = EventBackend().run(_signed_net(w, signed=False), raster, record="all")
    kept = np.cumsum(plain.spikes["out"], axis=1)
    assert (kept >= count).all() and (kept[:, -1] > count[:, -1]).any()


@pytest.mark.xdist_group("lava")
def test_lava_takes_back_the_same_spikes():
    from backend_agreement import assert_identical, run_event_and_lava

    rng = np.random.default_rng(5)
    w = rng.integers(0, 4, size=(10, 6))           # up to a few thresholds per step: lags too
    net = _signed_net(w, vth=20)
    ev, lv = run_event_and_lava(net, _raster(rng, 24, 6, 40))
    assert assert_identical(ev, lv) > 0
    assert (ev.spikes["out"] < 0).any()


def test_only_rate_soft_neurons_without_reset_synapses_are_signed():
    net = _signed_net(np.ones((2, 3), np.int64))
    net.populations["out"].neuron.reset = "zero"
    with pytest.raises(LoweredError, match="signed spikes"):
        net.validate()
    with pytest.raises(NeurocompError, match="rate-soft"):
        check_options(ConvertOptions(mode="rate", signed_spikes=True))


@pytest.fixture(scope="module")
def resnet(zoo_cache):
    model, x = load_or_build("resnet_bn", zoo_cache)
    return model, x, labels_for("resnet_bn"), load_digits_data()[0][:300]


def test_hidden_layers_are_signed_by_default(resnet):
    model, _, _, calib = resnet
    c = neurocomp.compile(model, calib=calib, mode="rate-soft")
    lif = {p.name: p.neuron.signed for p in c.net.populations.values() if isinstance(p.neuron, LIFNeuron)}
    assert not lif.pop(c.net.output) and lif and all(lif.values())
    off = neurocomp.compile(model, calib=calib, mode="rate-soft", signed_spikes=False)
    assert not any(getattr(p.neuron, "signed", False) for p in off.net.populations.values()
                   if isinstance(p.neuron, LIFNeuron))
    rate = neurocomp.compile(model, calib=calib, mode="rate")
    assert not any(getattr(p.neuron, "signed", False) for p in rate.net.populations.values()
                   if isinstance(p.neuron, LIFNeuron))


def test_signed_spikes_reach_the_ann_sooner_on_a_deep_net(resnet):
    """A BatchNorm ResNet (7 hops): two steps after the pipeline fills the signed network is
    far ahead of the plain soft reset, whose layers still carry the spikes they fired on their
    first volleys, and by L+8 it is at the ANN."""
    from neurocomp.readout import scores
    model, x, y, calib = resnet
    acc = {}
    for signed in (True, False):
        c = neurocomp.compile(model, calib=calib, mode="rate-soft", signed_spikes=signed)
        res = c.simulate(x, c.latency_steps + 8).result
        acc[signed] = [float((scores(c.net, res, c.latency_steps + k).argmax(1) == y).mean()) for k in (2, 8)]
    ann = float((ir.predict(c.graph, x).argmax(1) == y).mean())
    assert acc[True][0] >= acc[False][0] + 0.1 and acc[True][1] >= ann - 0.03, (ann, acc)
