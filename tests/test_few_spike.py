"""Few-spike neurons: the event simulator against a plain reference of the
dynamics and against Lava's custom ``FewSpike`` fixed_pt process, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from backend_agreement import assert_identical, run_event_and_lava
from neurocomp.backends.event import EventBackend
from neurocomp.lowered import FewSpikeNeuron, InputNeuron, LoweredError, LoweredNet, SigmaNeuron


def fs_reference(a_steps: np.ndarray, k: int, vth: int, bias: np.ndarray):
    """Literal FewSpikeNeuron dynamics for one population: input (steps, n) ->
    payloads (steps, n)."""
    fx = np.zeros(a_steps.shape[1], np.int64)
    v = np.zeros_like(fx)
    out = []
    for t, a in enumerate(a_steps):
        p = t % k
        fx = fx + a
        if p == 0:
            v, fx = fx + bias, np.zeros_like(fx)
        thr = vth << (k - 1 - p)
        s = v >= thr
        v = v - s * thr
        out.append(s.astype(np.int64) << (k - 1 - p))
    return np.array(out)


def test_one_cycle_emits_the_binary_expansion_of_the_latched_value():
    k, vth = 4, 3
    net = LoweredNet(input="in", output="fs")
    net.add_population("in", (5,), InputNeuron(graded=True, payload_max=100))
    net.add_population("fs", (5,), FewSpikeNeuron(k=k, vth=vth))
    net.connect(name="w", src="in", dst="fs", kind="dense", weight=np.eye(5, dtype=np.int64))
    net.validate()
    x = np.array([0, 3, 10, 44, 100])            # 100 > (2^4 - 1) * 3 clips at 15
    raster = np.zeros((1, 3 * k, 5), np.int32)
    raster[0, :k] = x                               # one cycle of input, latched at step k
    res = EventBackend().run(net, raster, record="all", record_states=True)
    cycle = res.spikes["fs"][0, k:2 * k]
    total = cycle.sum(axis=0)
    np.testing.assert_array_equal(total, np.minimum((k * x) // vth, 2 ** k - 1))
    assert (np.count_nonzero(cycle, axis=0) <= k).all()
    ref = fs_reference(np.vstack([np.zeros((1, 5)), raster[0, :-1]]).astype(np.int64), k, vth, np.zeros(5, np.int64))
    np.testing.assert_array_equal(res.spikes["fs"][0], ref)


def fs_net(rng, k=3):
    net = LoweredNet(input="in", output="out")
    net.add_population("in", (6, 6, 2), InputNeuron(graded=True, payload_max=15))
    net.add_population("c", (4, 4, 3), FewSpikeNeuron(k=k, vth=20, bias=rng.integers(-30, 30, 48)))
    net.add_population("h", (12,), FewSpikeNeuron(k=k, vth=9, bias=rng.integers(-10, 10, 12)))
    net.add_population("out", (4,), SigmaNeuron())
    net.connect(name="a", src="in", dst="c", kind="conv", weight=rng.integers(-6, 7, (3, 3, 2, 3)))
    net.connect(name="b", src="c", dst="h", kind="dense", weight=rng.integers(-5, 6, (12, 48)))
    net.connect(name="d", src="h", dst="out", kind="dense", weight=rng.integers(-9, 10, (4, 12)))
    net.connect(name="skip", src="c", dst="out", kind="dense", weight=rng.integers(-3, 4, (4, 48)), delay=k)
    net.validate()
    return net


def test_event_and_lava_agree_on_a_few_spike_network():
    rng = np.random.default_rng(3)
    net = fs_net(rng)
    raster = np.repeat(rng.integers(0, 16, (3, 1, 72)), 14, axis=1).astype(np.int32)
    ev, lv = run_event_and_lava(net, raster)
    assert_identical(ev, lv)
    assert ev.spikes["c"].any() and ev.spikes["h"].any()
    # spikes carry payloads 2^(k-1-phase): the phase is global
    k = net.populations["c"].neuron.k
    for t in range(raster.shape[1]):
        vals = np.unique(ev.spikes["c"][:, t])
        assert set(vals.tolist()) <= {0, 1 << (k - 1 - t % k)}


def test_cycle_lengths_must_agree():
    net = LoweredNet(input="in", output="b")
    net.add_population("in", (2,), InputNeuron(graded=True, payload_max=3))
    net.add_population("a", (2,), FewSpikeNeuron(k=3, vth=2))
    net.add_population("b", (2,), FewSpikeNeuron(k=4, vth=2))
    net.connect(name="x", src="in", dst="a", kind="dense", weight=np.eye(2, dtype=np.int64))
    net.connect(name="y", src="a", dst="b", kind="dense", weight=np.eye(2, dtype=np.int64))
    with pytest.raises(LoweredError, match="one cycle length"):
        net.validate()


# -- converted models ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp_digits", "lenet", "resnet_bn"])
def test_few_spike_mode_keeps_the_ann_accuracy_at_its_latency(zoo, digits, name):
    import neurocomp
    from neurocomp.ir import predict
    x_tr, _, x_te, y_te = digits
    model, _ = zoo(name)
    c = neurocomp.compile(model, calib=x_tr[:300], mode="few-spike", fs_k=6)
    ann = float((predict(c.graph, x_te).argmax(1) == y_te).mean())
    out = c.simulate(x_te, c.latency_steps)
    assert out.accuracy(y_te) >= ann - 0.01, (out.accuracy(y_te), ann)
    # at most k spikes per neuron and cycle: few spikes per inference
    n_neurons = sum(p.size for n, p in c.net.populations.items() if n not in (c.net.input, c.net.output))
    cycles = c.latency_steps / 6
    per_neuron = sum(v.sum(axis=1) for n, v in out.result.spike_counts.items() if n != c.net.output).mean()
    assert per_neuron / n_neurons <= 6 * cycles


def test_a_near_silent_channel_does_not_cost_the_others_their_weights(zoo, digits):
    """A hidden unit biased to fire on a few calibration samples only, and then barely,
    gets a tiny activation scale: channel-wise, its normalised incoming weights would set
    the layer's shared weight range and round the other units' weights away (a retrained
    MNIST MLP's few-spike quantised ANN lost 30 pt so).  The channel-scale floor keeps it
    at the float network's accuracy."""
    import keras
    import neurocomp
    from neurocomp.analysis import quantised_ann
    from neurocomp.ir import predict
    x_tr, _, x_te, y_te = digits
    model, _ = zoo("mlp_digits")
    m = keras.models.clone_model(model)
    m.set_weights(model.get_weights())
    w1, b1 = m.get_layer("hidden").get_weights()
    j = int(np.argmax(np.abs(w1).sum(0)))             # the unit with the largest weights
    z = x_tr[:300].reshape(300, -1) @ w1[:, j]
    b1[j] = -np.sort(z)[-2] * 0.999                   # active on two samples, barely
    m.get_layer("hidden").set_weights([w1, b1])
    for floor, ok in ((None, True), (0.0, False)):
        c = neurocomp.compile(m, calib=x_tr[:300], mode="few-spike", fs_k=4, channel_scale_floor=floor)
        ann = float((predict(c.graph, x_te).argmax(1) == y_te).mean())
        q = float((quantised_ann(c.net, x_te)[c.net.output].argmax(1) == y_te).mean())
        assert (q >= ann - 0.01) == ok, (floor, q, ann)


@pytest.mark.xdist_group("lava")
def test_converted_few_spike_network_is_bit_exact_on_lava(zoo, digits):
    import neurocomp
    from neurocomp.encoding import encode
    x_tr, _, x_te, _ = digits
    model, _ = zoo("lenet")
    c = neurocomp.compile(model, calib=x_tr[:300], mode="few-spike", fs_k=4)
    raster = encode(c.net, x_te[:2], c.latency_steps + 4)
    assert assert_identical(*run_event_and_lava(c.net, raster)) > 0
    assert all(isinstance(p.neuron, (InputNeuron, FewSpikeNeuron, SigmaNeuron)) for p in c.net.populations.values())
    assert c.simulate(x_te[:2], c.latency_steps, backend="lava").predictions.tolist() == \
        c.simulate(x_te[:2], c.latency_steps).predictions.tolist()
