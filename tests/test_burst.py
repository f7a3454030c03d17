"""rate-soft's bursts (``LIFNeuron.burst``, ``ConvertOptions.spikes_per_step``).

A burst neuron sends, in one graded message, as many thresholds as its membrane
holds (up to ``burst``), and a signed one takes back up to ``burst`` at once, so
its net count stays the rounded ReLU of its charge while that charge moves by
several thresholds a step; the calibration scale then stands for ``burst``
spikes per step and every layer resolves ``burst`` times more levels in the same
steps.  Checked here: that invariant on the event simulator, Lava's fixed_pt
model sending the same payloads, the lowering (rates scaled, the read-out left
alone, refusals), the NIR round trip, and the accuracy it buys at few steps on a
deep BatchNorm ResNet."""
import numpy as np
import pytest

import neurocomp
from neurocomp import ir, nir_io
from neurocomp import numerics as nm
from neurocomp.analysis import quantised_ann
from neurocomp.backends.event import EventBackend
from neurocomp.compiler import check_options
from neurocomp.errors import NeurocompError
from neurocomp.lowered import LIFNeuron, LoweredError, LoweredNet
from neurocomp.options import ConvertOptions
from neurocomp.readout import scores
from keras_zoo import labels_for, load_digits_data, load_or_build
from test_signed_spikes import _raster, _signed_net

VTH = 30


def _burst_net(weight, burst, signed=True, vth=VTH):
    """Graded input -> one dense layer of rate-soft neurons starting at half threshold."""
    return _signed_net(weight, signed=signed, vth=vth, burst=burst)


def _charge(raster, w):
    """The charge that has reached each neuron by step t (a hop costs a step)."""
    drive = np.einsum("btj,ij->bti", raster.astype(np.int64), w)
    return np.concatenate([np.zeros_like(drive[:, :1]), np.cumsum(drive, axis=1)[:, :-1]], axis=1)


def test_signed_burst_count_is_the_rounded_relu_of_a_fast_charge():
    rng = np.random.default_rng(3)
    w = rng.integers(0, 3, size=(12, 6))
    raster = _raster(rng, 40, 6, 12)            # up to ~3.6 thresholds a step, either way
    burst = 4
    net = _burst_net(w, burst)
    res = EventBackend().run(net, raster, record="all", record_states=True)
    s = res.spikes["out"].astype(np.int64)
    assert np.abs(s).max() >= 3 and (s <= -2).any()      # several thresholds in one message
    np.testing.assert_array_equal(EventBackend().run(net, raster, record="all").spikes["out"], s)
    count = np.cumsum(s, axis=1)
    charge = _charge(raster, w)
    half, vth64 = (VTH << nm.VTH_SHIFT) // 2, VTH << nm.VTH_SHIFT
    v = res.states["out"]["v"].astype(np.int64)
    np.testing.assert_array_equal(v + count * vth64, half + (charge << nm.ACT_SHIFT))
    # no lag: the count is max(0, round(charge / vth)) at every step
    exact = ((charge << nm.ACT_SHIFT) + half) / vth64 - 0.5
    assert (count >= 0).all() and (np.abs(count - np.maximum(exact, 0)) <= 0.5).all()
    # one spike per step cannot keep up with the same charge
    single = np.cumsum(EventBackend().run(_burst_net(w, 1), raster, record="all").spikes["out"], axis=1)
    assert (np.abs(single - np.maximum(exact, 0)) > 1).any()


def test_unsigned_burst_sends_the_thresholds_v_holds():
    rng = np.random.default_rng(4)
    w = rng.integers(0, 3, size=(8, 5))
    raster = np.abs(_raster(rng, 30, 5, 14))
    burst = 3
    net = _burst_net(w, burst, signed=False)
    res = EventBackend().run(net, raster, record="all", record_states=True)
    s = res.spikes["out"].astype(np.int64)
    assert s.min() == 0 and s.max() == burst
    v = res.states["out"]["v"].astype(np.int64)
    vth64 = VTH << nm.VTH_SHIFT
    before = v + s * vth64                      # the membrane the spikes were taken from
    np.testing.assert_array_equal(s, np.clip((before - 1) // vth64, 0, burst))
    half = vth64 // 2
    np.testing.assert_array_equal(v + np.cumsum(s, axis=1) * vth64, half + (_charge(raster, w) << nm.ACT_SHIFT))


@pytest.mark.parametrize("vth", [1, 3, 30, 977, (1 << 17) - 1])
@pytest.mark.parametrize("burst", [2, 7, 127])
def test_kernels_divide_exactly_at_every_membrane(vth, burst):
    """The kernels find the thresholds in v by a float reciprocal and an integer
    correction (``_thresholds_in``): exact on every multiple of the threshold and
    its neighbours, at both ends of the 24-bit membrane, for any count."""
    from neurocomp.backends.event import _if_step

    evth = vth << nm.VTH_SHIFT
    lim = (1 << 23) - 1
    k = np.arange(-300, 301)
    v = np.concatenate([(k[:, None] * evth + np.array([-1, 0, 1])).ravel(),
                        [lim, lim - 1, -lim, -lim + 1, 0, 1, -1],
                        np.random.default_rng(vth).integers(-lim, lim + 1, 4000)])
    v = np.clip(v, -lim, lim).astype(np.int32)
    count = np.random.default_rng(burst).integers(0, 2 * burst, v.size).astype(np.int32)
    want_up = np.clip((v.astype(np.int64) - 1) // evth, 0, burst)
    lacks = -(v.astype(np.int64) // evth)                     # ceil(-v / vth)
    want_signed = np.where(v < 0, -np.minimum(np.minimum(lacks, count), burst), want_up)
    for c, want in ((None, want_up), (count.copy(), want_signed)):
        vb, spk = v[None].copy(), np.zeros((1, v.size), np.int8)
        _if_step(np.zeros_like(vb), vb, np.int64(vth), np.zeros(v.size, np.int32), True, spk,
                 np.ones(v.size, np.int32), np.zeros(1, np.int64),
                 None if c is None else c[None], np.int32(burst))
        np.testing.assert_array_equal(spk[0], want)
        np.testing.assert_array_equal(vb[0], v - want * evth)
        if c is not None:
            np.testing.assert_array_equal(c, count + want)


@pytest.mark.xdist_group("lava")
@pytest.mark.parametrize("signed", [True, False])
def test_lava_sends_the_same_bursts(signed):
    from backend_agreement import assert_identical, run_event_and_lava

    rng = np.random.default_rng(5)
    w = rng.integers(0, 4, size=(10, 6))
    net = _burst_net(w, 3, signed=signed, vth=20)
    raster = _raster(rng, 24, 6, 40)
    ev, lv = run_event_and_lava(net, raster if signed else np.abs(raster))
    assert assert_identical(ev, lv) > 0
    assert ev.spikes["out"].max() == 3 and (not signed or ev.spikes["out"].min() < -1)


def test_bursts_need_the_rate_soft_neuron():
    net = _burst_net(np.ones((2, 3), np.int64), 2, signed=False)
    net.populations["out"].neuron.reset = "zero"
    with pytest.raises(LoweredError, match="bursts"):
        net.validate()
    net.populations["out"].neuron.reset, net.populations["out"].neuron.vth = "subtract", 0
    with pytest.raises(LoweredError, match="vth >= 1"):
        net.validate()
    with pytest.raises(NeurocompError, match="rate-soft"):
        check_options(ConvertOptions(mode="rate", spikes_per_step=2))
    with pytest.raises(ValueError):
        ConvertOptions(mode="rate-soft", spikes_per_step=0)


@pytest.fixture(scope="module")
def resnet(zoo_cache):
    model, x = load_or_build("resnet_bn", zoo_cache)
    return model, x, labels_for("resnet_bn"), load_digits_data()[0][:300]


@pytest.fixture(scope="module")
def compiled(resnet):
    model, _, _, calib = resnet
    return {b: neurocomp.compile(model, calib=calib, mode="rate-soft", spikes_per_step=b) for b in (1, 3)}


def test_lowering_scales_rates_by_the_burst(resnet, compiled):
    """Hidden layers burst (the membrane read-out does not) and their quantised-ANN rates
    are burst times those of the one-spike network: the same function, more levels."""
    _, x, _, _ = resnet
    one, three = compiled[1], compiled[3]
    lif = {p.name: p.neuron.burst for p in three.net.populations.values() if isinstance(p.neuron, LIFNeuron)}
    assert lif.pop(three.net.output) == 1 and set(lif.values()) == {3}
    assert three.net.max_payload(next(iter(lif))) == 3
    q1, q3 = quantised_ann(one.net, x[:100]), quantised_ann(three.net, x[:100])
    for name in lif:
        assert q3[name].max() <= 3
        ratio = q3[name].mean() / q1[name].mean()
        assert 2.7 < ratio < 3.3, (name, ratio)
    agree = (q3[three.net.output].argmax(1) == q1[one.net.output].argmax(1)).mean()
    assert agree >= 0.97


def test_bursts_reach_the_ann_sooner(resnet, compiled):
    """Two steps after the pipeline fills, every hidden layer of the burst-3 network tracks
    the float ANN far more closely than one spike per step (Pearson r over neurons and
    samples; digits accuracy on 200 images is too coarse to show it reliably), and by L+8
    it is at the ANN."""
    from neurocomp.analysis import layer_diagnostics
    model, x, y, _ = resnet
    acc, corr = {}, {}
    for b, c in compiled.items():
        L = c.latency_steps
        corr[b] = [d.correlation for d in layer_diagnostics(c, x, L + 2) if d.population != c.net.output]
        res = c.simulate(x, L + 8).result
        acc[b] = [float((scores(c.net, res, L + k).argmax(1) == y).mean()) for k in (2, 8)]
    ann = float((ir.predict(compiled[1].graph, x).argmax(1) == y).mean())
    assert np.mean(corr[3]) >= np.mean(corr[1]) + 0.03 and min(corr[3]) >= 0.95, corr
    assert acc[3][0] >= acc[1][0] and acc[3][1] >= ann - 0.02, (ann, acc)


def test_saved_and_nir_networks_keep_the_burst(zoo_cache, tmp_path):
    model, _ = load_or_build("mlp_digits", zoo_cache)
    net = neurocomp.compile(model, calib=load_digits_data()[0][:200], mode="rate-soft", spikes_per_step=3).net

    def bursts(n):
        return {p.name: getattr(p.neuron, "burst", None) for p in n.populations.values()}
    assert 3 in bursts(net).values()
    net.save(tmp_path / "net")
    assert bursts(LoweredNet.load(tmp_path / "net")) == bursts(net)
    assert any("graded message" in c for c in nir_io.nir_caveats(net))
    assert bursts(nir_io.lowered_from_nir(nir_io.write_nir(net, tmp_path / "burst.nir"))) == bursts(net)


def test_count_read_out_sums_the_payloads(zoo_cache):
    """With a spiking read-out the output bursts too, and counts are payload sums."""
    model, x = load_or_build("mlp_digits", zoo_cache)
    y = labels_for("mlp_digits")
    c = neurocomp.compile(model, calib=load_digits_data()[0][:200], mode="rate-soft", spikes_per_step=3,
                          readout="count")
    out = c.net.populations[c.net.output].neuron
    assert out.burst == 3 and not out.signed
    res = c.simulate(x, c.latency_steps + 8).result
    spikes = res.spikes[c.net.output]
    assert spikes.max() > 1
    # ties are broken by the membrane, below one spike
    s = scores(c.net, res)
    np.testing.assert_array_equal(np.floor(s + 0.5), spikes.sum(axis=1))
    ann = float((ir.predict(c.graph, x).argmax(1) == y).mean())
    assert float((s.argmax(1) == y).mean()) >= ann - 0.03


def test_report_and_early_exit_read_rates_in_calibration_units(zoo_cache):
    """LIF values are rates, ``rate_scale`` spikes per step per activation 1.0: the report's
    quantisation error and the early-exit margins divide it out, so bursts (and max_rate)
    leave them where one spike per step has them."""
    from neurocomp.readout import _series
    from neurocomp.report import analyse

    model, x = load_or_build("mlp_digits", zoo_cache)
    calib = load_digits_data()[0][:200]
    err, top = {}, {}
    for b in (1, 3):
        c = neurocomp.compile(model, calib=calib, mode="rate-soft", spikes_per_step=b)
        assert c.net.rate_scale() == b
        rows = {r["name"]: r for r in analyse(c, x[:60], None, c.latency_steps + 16, n=60)["layers"]}
        err[b] = [r["quant_error"] for r in rows.values() if r.get("quant_error") is not None]
        steps = c.latency_steps + 16
        res = c.simulate(x[:100], steps).result
        norm = _series(c.net, res, "membrane", steps)[2]        # what early-exit margins are read on
        top[b] = float(norm[:, -1].max(axis=1).mean())
    assert max(err[3]) < 0.1 and max(err[1]) < 0.1, err
    assert 0.85 < top[3] / top[1] < 1.15, top


def test_spike_norm_measures_in_calibration_units(zoo_cache):
    """spike-norm's factors are per-step inputs over the threshold per activation 1.0: they do
    not change with the spikes an activation stands for (bursts, max_rate)."""
    model, _ = load_or_build("mlp_digits", zoo_cache)
    calib = load_digits_data()[0][:200]

    def factors(**kw):
        c = neurocomp.compile(model, calib=calib, normalization="spike-norm", **kw)
        return np.array(list(c.notes["spike_norm"]["factors"].values()))
    base = factors(mode="rate-soft")
    np.testing.assert_allclose(factors(mode="rate-soft", spikes_per_step=3), base, rtol=0.05)
    np.testing.assert_allclose(factors(mode="rate-soft", max_rate=0.5), base, rtol=0.05)
