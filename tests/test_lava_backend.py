"""LavaBackend (lava-nc fixed_pt models) against an independent numpy step loop.

The reference below follows ``shared/specs/lava_loihi_spec.md`` literally
(§0 timing, §1.2 LIF, §2.1 Dense, §2.2 DelayDense, §2.5 Conv, §2.6 SigmaDelta)
and works in the canonical channels-last flat order only, so any layout slip
in the backend ((H,W,C) <-> Lava (W,H,C), kernel flip, flatten order) shows
up as a mismatch.  Every Lava run uses several samples: the backend reuses one
process graph and resets its Vars between samples, the reference starts each
sample from scratch.
"""
from __future__ import annotations

import importlib.util
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from neurocomp.errors import BackendUnavailableError
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredNet, SigmaDeltaNeuron
from neurocomp.backends.base import STATE_VARS
from neurocomp.backends import lava as lb
from neurocomp.backends.lava import LavaBackend, LavaMappingError

SPECS = Path(__file__).resolve().parents[1].parent / "shared" / "specs"


# -- reference (plain numpy, spec literal) ------------------------------------------

def ref_quantize(w, nwb=8, sign_mode=None):
    """Dense weight quantisation (spec §2.1): int32 cast, sign mode, 8-bit clip,
    drop 8 - nwb + is_mixed LSBs (magnitude for inhibitory)."""
    w = np.asarray(w).astype(np.int64)
    sm = sign_mode or ("excitatory" if w.min() >= 0 else
                       "inhibitory" if w.max() <= 0 else "mixed")
    mixed = int(sm == "mixed")
    if sm == "inhibitory":
        w = -w
    w = np.clip(w, -256 * mixed, 255)
    k = 8 - nwb + mixed
    w = (w >> k) << k
    if sm == "inhibitory":
        w = -w
    return w


def ref_dense_acc(wq, s, weight_exp, graded):
    acc = wq @ s.astype(np.int64) if graded else wq[:, s != 0].sum(axis=1)
    acc = acc << weight_exp if weight_exp > 0 else acc >> -weight_exp
    return acc.astype(np.int64).astype(np.int32).astype(np.int64)       # int32 channel


def ref_xcorr(x_flat, shape, k, strides, pads, dilation, groups, graded):
    """Keras-style channels-last cross-correlation with explicit pads, then the
    24-bit wrap of Lava's Conv (spec §2.5)."""
    h, w, cin = shape
    x = x_flat.reshape(h, w, cin).astype(np.int64)
    if not graded:
        x = (x != 0).astype(np.int64)
    (pt, pb), (pl, pr) = pads
    xp = np.zeros((h + pt + pb, w + pl + pr, cin), np.int64)
    xp[pt:pt + h, pl:pl + w] = x
    kh, kw, cig, cout = k.shape
    sh, sw = strides
    dh, dw = dilation
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    cog = cout // groups
    out = np.zeros((ho, wo, cout), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            patch = xp[oy * sh:oy * sh + (kh - 1) * dh + 1:dh, ox * sw:ox * sw + (kw - 1) * dw + 1:dw]
            for co in range(cout):
                gi = co // cog
                out[oy, ox, co] = (patch[:, :, gi * cig:(gi + 1) * cig] * k[:, :, :, co]).sum()
    out = ((out + (1 << 23)) % (1 << 24)) - (1 << 23)
    return out.reshape(-1)


def rtz(p):
    return np.sign(p) * (np.abs(p) >> 12)


class RefLIF:
    def __init__(self, n, nrn):
        z = np.zeros(n, np.int64)
        self.u = z + (0 if nrn.u0 is None else np.asarray(nrn.u0))
        self.v = z + (0 if nrn.v0 is None else np.asarray(nrn.v0))
        bm = z + (0 if nrn.bias_mant is None else np.asarray(nrn.bias_mant).astype(np.int16))
        be = z + (0 if nrn.bias_exp is None else np.asarray(nrn.bias_exp).astype(np.int16))
        self.bias = np.where(be >= 0, bm << np.maximum(be, 0), bm >> np.maximum(-be, 0))
        self.du, self.dv, self.vth = nrn.du, nrn.dv, nrn.vth

    def step(self, a):
        d = rtz(self.u * (4096 - (self.du + 1))) + (a << 6)
        self.u = np.where(d > 2 ** 23, d - 2 ** 24, np.where(d <= -2 ** 23, d + 2 ** 24, d))
        self.v = np.clip(rtz(self.v * (4096 - self.dv)) + self.u + self.bias,
                         -(2 ** 23 - 1), 2 ** 23 - 1)
        s = self.v > (self.vth << 6)
        self.v = np.where(s, 0, self.v)
        return s.astype(np.int64)

    def states(self):
        return {"u": self.u, "v": self.v}


class RefSD:
    def __init__(self, n, nrn):
        sc = 1 << (nrn.spike_exp + nrn.state_exp)
        self.nrn = nrn
        self.vth = nrn.vth * sc
        self.bias = np.zeros(n, np.int64) + (0 if nrn.bias is None else np.asarray(nrn.bias) * sc)
        self.sigma = np.zeros(n, np.int64)
        self.act = np.zeros(n, np.int64)
        self.residue = np.zeros(n, np.int64)
        self.error = np.zeros(n, np.int64)

    def step(self, a):
        self.sigma = self.sigma + a
        act = self.sigma + self.bias
        if self.nrn.act_mode == "relu":
            act = np.maximum(act, 0)
        delta = act - self.act + self.residue
        if self.nrn.cum_error:
            self.error = self.error + delta
            s = np.where(np.abs(self.error) >= self.vth, delta, 0)
            self.error = self.error * (s == 0)
        else:
            s = np.where(np.abs(delta) >= self.vth, delta, 0)
        self.residue = delta - s
        self.act = act
        return s >> self.nrn.state_exp

    def states(self):
        return {"sigma": self.sigma, "act": self.act, "residue": self.residue}


def ref_run(net: LoweredNet, x: np.ndarray):
    """One sample ``x`` (steps, n_in) -> spikes {pop: (steps, n)}, states {pop: {var: ...}}."""
    pops = net.populations
    neurons = {}
    for p in pops.values():
        if isinstance(p.neuron, LIFNeuron):
            neurons[p.name] = RefLIF(p.size, p.neuron)
        elif isinstance(p.neuron, SigmaDeltaNeuron):
            neurons[p.name] = RefSD(p.size, p.neuron)
    bufs = {c.name: deque([np.zeros(pops[c.dst].size, np.int64)] * (c.delay + 1))
            for c in net.connections}
    spikes = {n: [] for n in pops}
    states = {n: {v: [] for v in STATE_VARS[pops[n].neuron.kind]} for n in neurons}
    for t in range(x.shape[0]):
        out = {net.input: x[t].astype(np.int64)}
        for name, nrn in neurons.items():
            a = np.zeros(pops[name].size, np.int64)
            for c in net.incoming(name):
                a = a + bufs[c.name].popleft()
            out[name] = nrn.step(a.astype(np.int32).astype(np.int64))
            for k, v in nrn.states().items():
                states[name][k].append(v.copy())
        for c in net.connections:
            graded = getattr(pops[c.src].neuron, "graded", False)
            if c.kind == "dense":
                acc = ref_dense_acc(ref_quantize(c.weight, c.num_weight_bits, c.sign_mode),
                                    out[c.src], c.weight_exp, graded)
            else:
                acc = ref_xcorr(out[c.src], pops[c.src].shape, np.asarray(c.weight, np.int64),
                                c.strides, c.pads, c.dilation, c.groups, graded)
            bufs[c.name].append(acc)
        for n in pops:
            spikes[n].append(out[n])
    return ({n: np.array(v) for n, v in spikes.items()},
            {n: {k: np.array(v) for k, v in d.items()} for n, d in states.items()})


def check_exact(net, raster, res, states=True):
    pops = [p for p in net.populations if p != net.input]
    for b in range(raster.shape[0]):
        rs, rst = ref_run(net, raster[b])
        for p in pops:
            got, want = res.spikes[p][b], rs[p]
            assert got.dtype == np.int32 and got.shape == want.shape
            bad = np.argwhere(got != want)
            assert bad.size == 0, f"sample {b} pop {p} spikes differ at (t, i) {bad[:5].tolist()}"
            if states:
                for k, want_k in rst[p].items():
                    got_k = res.states[p][k][b]
                    bad = np.argwhere(got_k != want_k)
                    assert bad.size == 0, (f"sample {b} pop {p} state {k} differs at "
                                           f"{bad[:5].tolist()}: {got_k[tuple(bad[0])]} vs "
                                           f"{want_k[tuple(bad[0])]}")
    return rs


def activity(res, net):
    return {p: int(np.abs(res.spikes[p]).sum()) for p in res.spikes if p != net.input}


# -- networks -------------------------------------------------------------------------

def dense_chain(rng, graded=False):
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (24,), InputNeuron(graded=graded))
    net.add_population("h", (32,), LIFNeuron(
        vth=300 if not graded else 2000, du=410, dv=205,
        bias_mant=rng.integers(-64, 200, 32), bias_exp=rng.integers(-2, 4, 32),
        u0=rng.integers(-5000, 5000, 32), v0=rng.integers(-3000, 15000, 32)))
    net.add_population("o", (12,), LIFNeuron(
        vth=200, du=4095, dv=1000, bias_mant=rng.integers(-100, 100, 12),
        bias_exp=rng.integers(-2, 3, 12)))
    net.connect(name="d1", src="in", dst="h", kind="dense",
                weight=rng.integers(-256, 256, (32, 24)), weight_exp=-4 if graded else 0)
    if graded:
        net.connect(name="d2", src="h", dst="o", kind="dense", weight=rng.integers(0, 256, (12, 32)),
                    weight_exp=1, num_weight_bits=7, sign_mode="excitatory")
    else:
        net.connect(name="d2", src="h", dst="o", kind="dense",
                    weight=rng.integers(-200, 256, (12, 32)), weight_exp=-1, num_weight_bits=6)
    return net


def binary(rng, shape, p=0.3):
    return (rng.random(shape) < p).astype(np.int32)


# -- tests ------------------------------------------------------------------------------

def test_layout_helpers_roundtrip():
    rng = np.random.default_rng(0)
    shape = (3, 5, 2)
    flat = rng.integers(0, 1000, (4, 30))
    lav = lb.to_lava(flat, shape)
    assert lav.shape == (4, 5, 3, 2)
    h, w, c = 2, 4, 1
    assert lav[1, w, h, c] == flat[1, (h * 5 + w) * 2 + c]          # [w,h,c] <-> (h*W+w)*C+c
    assert np.array_equal(lb.from_lava(lav, shape), flat)
    assert lb.lava_shape((3, 5, 2)) == (5, 3, 2) and lb.lava_shape((7,)) == (7,)
    assert lb.lava_shape((2, 3)) == (6,)
    k = rng.integers(-9, 9, (3, 2, 4, 5))                             # (kh, kw, cin, cout)
    lk = lb.keras_to_lava_kernel(k)
    assert lk.shape == (5, 2, 3, 4)
    assert lk[4, 0, 0, 3] == k[2, 1, 3, 4]                             # flipped in both axes


def test_conv_matrix_matches_reference_xcorr():
    rng = np.random.default_rng(1)
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (6, 5, 4), InputNeuron(graded=True))
    net.add_population("o", (3, 2, 6), LIFNeuron())
    c = net.connect(name="c", src="in", dst="o", kind="conv", weight=rng.integers(-9, 9, (3, 2, 2, 6)),
                    strides=(2, 2), pads=((0, 1), (1, 0)), dilation=(1, 2), groups=2)
    net.validate()
    m = lb.conv_matrix(net, c)
    x = rng.integers(-5, 6, 120)
    want = ref_xcorr(x, (6, 5, 4), c.weight, c.strides, c.pads, c.dilation, c.groups, True)
    assert np.array_equal(m @ x, want)


def test_reference_agrees_with_spec_script():
    """Our literal reference pieces == the ones in shared/specs (when present)."""
    path = SPECS / "lif_dense_bitexact.py"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared absent)")
    spec = importlib.util.spec_from_file_location("lif_dense_bitexact", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(2)
    for w in (rng.integers(-256, 256, (7, 9)), rng.integers(0, 300, (7, 9)),
              -rng.integers(0, 300, (7, 9))):
        for nwb in (8, 6, 3):
            assert np.array_equal(ref_quantize(w, nwb), mod.ref_quantize_dense_weights(w, nwb))
    nrn = LIFNeuron(vth=50, du=300, dv=700, bias_mant=rng.integers(-99, 99, 9),
                    bias_exp=rng.integers(-2, 4, 9), u0=rng.integers(-999, 999, 9),
                    v0=rng.integers(-999, 999, 9))
    a, b = RefLIF(9, nrn), mod.RefLIF(9, nrn.du, nrn.dv, nrn.vth, nrn.bias_mant, nrn.bias_exp,
                                      nrn.u0, nrn.v0)
    for _ in range(30):
        inp = rng.integers(-300, 300, 9)
        assert np.array_equal(a.step(inp), b.step(inp))
        assert np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


def test_dense_chain_binary_exact_with_states():
    rng = np.random.default_rng(10)
    net = dense_chain(rng)
    raster = binary(rng, (3, 40, 24))
    res = LavaBackend().run(net, raster, record="all", record_states=True)
    assert res.steps == 40 and res.samples == 3 and res.seconds > 0
    assert set(res.spikes) == {"h", "o"} and set(res.states) == {"h", "o"}
    assert res.states["h"]["u"].shape == (3, 40, 32) and res.states["h"]["v"].dtype == np.int32
    check_exact(net, raster, res)
    act = activity(res, net)
    assert act["h"] > 20 and act["o"] > 5, act
    # the three samples really differ (the resets are exercised)
    assert not np.array_equal(res.spikes["h"][0], res.spikes["h"][1])


def test_dense_chain_graded_input_exact():
    rng = np.random.default_rng(11)
    net = dense_chain(rng, graded=True)
    raster = (binary(rng, (2, 30, 24)) * rng.integers(1, 256, (2, 30, 24))).astype(np.int32)
    res = LavaBackend().run(net, raster, record=["h"], record_states=True)
    assert set(res.spikes) == {"h", "o"}
    check_exact(net, raster, res)
    act = activity(res, net)
    assert act["h"] > 10 and act["o"] > 5, act


def conv_net(rng):
    """Non-square everything, so an H/W swap cannot cancel out."""
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (9, 7, 2), InputNeuron())
    net.add_population("a", (5, 6, 4), LIFNeuron(
        vth=120, du=1000, dv=300, bias_mant=rng.integers(-20, 40, 120), bias_exp=np.full(120, 2)))
    net.add_population("b", (5, 6, 3), LIFNeuron(vth=150, du=2000, dv=100,
                                                 v0=rng.integers(0, 9000, 90)))
    net.add_population("o", (10,), LIFNeuron(vth=60, du=4095, dv=200))
    # stride (2,1), non-square kernel, groups=2, large weights (Conv does not clip)
    net.connect(name="ca", src="in", dst="a", kind="conv", weight=rng.integers(-300, 400, (3, 2, 1, 4)),
                strides=(2, 1), pads=((1, 1), (0, 0)), groups=2)
    # dilation (2,1), symmetric pads
    net.connect(name="cb", src="a", dst="b", kind="conv", weight=rng.integers(-60, 90, (3, 3, 4, 3)),
                pads=((2, 2), (1, 1)), dilation=(2, 1))
    # (H,W,C) -> dense -> (H,W,C): flatten order on both sides; two inputs into b
    net.connect(name="ab", src="a", dst="b", kind="dense", weight=rng.integers(-40, 60, (90, 120)))
    # (H,W,C) source into a dense
    net.connect(name="bo", src="b", dst="o", kind="dense", weight=rng.integers(-100, 140, (10, 90)))
    return net


def built_kinds(net, raster):
    """Class names of the Lava connection processes the backend builds (no run)."""
    g = lb._Graph(net, "fixed_pt", False)
    g.build(raster, [], [])
    return {k: type(v).__name__ for k, v in g.conn_procs.items()}


def test_conv_chain_exact():
    rng = np.random.default_rng(12)
    net = conv_net(rng)
    raster = binary(rng, (2, 25, 126), 0.4)
    assert built_kinds(net, raster) == {"ca": "Conv", "cb": "Conv", "ab": "Dense", "bo": "Dense"}
    res = LavaBackend().run(net, raster, record="all", record_states=True)
    check_exact(net, raster, res)
    act = activity(res, net)
    assert min(act.values()) > 5, act


def test_asymmetric_pads_use_sparse_fallback_exact():
    rng = np.random.default_rng(13)
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (6, 6, 2), InputNeuron())
    net.add_population("a", (3, 3, 4), LIFNeuron(vth=100, du=1500, dv=500))
    net.add_population("o", (5,), LIFNeuron(vth=50, du=4095, dv=0))
    # Keras 'same', stride 2 on an even size: pads ((0,1),(0,1)); mixed even weights (invariant)
    net.connect(name="c1", src="in", dst="a", kind="conv",
                weight=rng.integers(-100, 128, (3, 3, 2, 4)) * 2,
                strides=(2, 2), pads=((0, 1), (0, 1)))
    # a delayed conv (explicit DelaySparse), excitatory weights (invariant)
    net.connect(name="c2", src="in", dst="a", kind="conv", weight=rng.integers(0, 100, (2, 2, 2, 4)),
                strides=(2, 2), delay=1)
    net.connect(name="d", src="a", dst="o", kind="dense", weight=rng.integers(-50, 120, (5, 36)))
    raster = binary(rng, (2, 20, 72), 0.4)
    assert built_kinds(net, raster) == {"c1": "Sparse", "c2": "DelaySparse", "d": "Dense"}
    res = LavaBackend().run(net, raster, record="all", record_states=True)
    check_exact(net, raster, res)
    act = activity(res, net)
    assert min(act.values()) > 5, act


def test_asymmetric_pads_with_non_invariant_weights_raise():
    net = LoweredNet(input="in", output="a")
    net.add_population("in", (6, 6, 1), InputNeuron())
    net.add_population("a", (3, 3, 1), LIFNeuron())
    net.connect(name="c", src="in", dst="a", kind="conv", weight=np.array([[[[3]], [[-1]]],
                                                                        [[[1]], [[2]]]]),
                strides=(2, 2), pads=((0, 0), (0, 0)), delay=1)
    with pytest.raises(LavaMappingError, match="not invariant"):
        LavaBackend().run(net, np.zeros((1, 5, 36), np.int32))


def test_sigma_delta_chain_graded_exact():
    rng = np.random.default_rng(14)
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (4, 5, 2), InputNeuron(graded=True))
    net.add_population("s1", (4, 5, 3), SigmaDeltaNeuron(
        vth=40, bias=rng.integers(-10, 10, 60), spike_exp=1, state_exp=2))
    net.add_population("s2", (8,), SigmaDeltaNeuron(
        vth=5000, bias=rng.integers(-20, 20, 8), spike_exp=0, state_exp=3, cum_error=True,
        act_mode="unit"))
    net.add_population("o", (6,), LIFNeuron(vth=40, du=4095, dv=0))
    net.connect(name="c", src="in", dst="s1", kind="conv", weight=rng.integers(-20, 25, (3, 3, 2, 3)),
                pads=((1, 1), (1, 1)))
    net.connect(name="d1", src="s1", dst="s2", kind="dense", weight=rng.integers(-30, 30, (8, 60)))
    net.connect(name="d2", src="s2", dst="o", kind="dense", weight=rng.integers(-30, 60, (6, 8)))
    raster = (binary(rng, (2, 30, 40), 0.5) * rng.integers(1, 40, (2, 30, 40))).astype(np.int32)
    res = LavaBackend().run(net, raster, record="all", record_states=True)
    rs = check_exact(net, raster, res)
    assert np.abs(rs["s1"]).max() > 1 and (rs["s2"] < 0).any()       # graded, signed payloads
    act = activity(res, net)
    assert min(act.values()) > 5, act


def test_fan_in_and_delay_exact(capfd):
    rng = np.random.default_rng(15)
    net = LoweredNet(input="in", output="c")
    net.add_population("in", (16,), InputNeuron())
    net.add_population("a", (10,), LIFNeuron(vth=80, du=500, dv=200))
    net.add_population("b", (10,), LIFNeuron(vth=80, du=4095, dv=100))
    net.add_population("c", (6,), LIFNeuron(vth=60, du=300, dv=300))
    net.connect(name="ia", src="in", dst="a", kind="dense", weight=rng.integers(-100, 200, (10, 16)))
    net.connect(name="ib", src="in", dst="b", kind="dense", weight=rng.integers(-100, 200, (10, 16)))
    net.connect(name="ac", src="a", dst="c", kind="dense", weight=rng.integers(-100, 200, (6, 10)))
    net.connect(name="bc", src="b", dst="c", kind="dense", weight=-rng.integers(0, 120, (6, 10)),
                delay=2)
    net.connect(name="ic", src="in", dst="c", kind="dense", weight=rng.integers(0, 60, (6, 16)))
    raster = binary(rng, (2, 30, 16), 0.35)
    res = LavaBackend().run(net, raster, record="all", record_states=True)
    check_exact(net, raster, res)
    act = activity(res, net)
    assert min(act.values()) > 5, act
    # the delay matters: the same net without it gives other states
    net.connections[3].delay = 0
    _, st0 = ref_run(net, raster[0])
    assert not np.array_equal(st0["c"]["v"], res.states["c"]["v"][0])
    out = capfd.readouterr().out
    assert out == "", f"Lava run printed to stdout: {out[:300]!r}"


def test_floating_pt_runs():
    rng = np.random.default_rng(16)
    net = dense_chain(rng)
    raster = binary(rng, (2, 20, 24))
    res = LavaBackend(tag="floating_pt").run(net, raster, record="all", record_states=True)
    assert res.spikes["o"].shape == (2, 20, 12) and res.spikes["o"].dtype == np.int32
    assert set(np.unique(res.spikes["h"])) <= {0, 1}
    assert res.states["h"]["v"].shape == (2, 20, 32)
    assert res.spikes["h"].sum() > 0


def test_hardware_unavailable_is_a_clear_error():
    rng = np.random.default_rng(17)
    net = dense_chain(rng)
    with pytest.raises(BackendUnavailableError) as ei:
        LavaBackend(hardware=True).run(net, binary(rng, (1, 5, 24)))
    msg = str(ei.value)
    assert "lava-loihi" in msg and "--backend lava" in msg and "\n" not in msg


def test_soft_reset_runs_the_custom_process_bit_exactly():
    from neurocomp.backends.event import EventBackend
    rng = np.random.default_rng(18)
    net = dense_chain(rng)
    for p in net.populations.values():
        if isinstance(p.neuron, LIFNeuron):
            p.neuron.reset = "subtract"
    raster = binary(rng, (2, 30, 24))
    lv = LavaBackend().run(net, raster, record="all", record_states=True)
    ev = EventBackend().run(net, raster, record="all", record_states=True)
    for pop in ev.states:
        assert ev.spikes[pop].any()
        np.testing.assert_array_equal(lv.spikes[pop], ev.spikes[pop])
        for var in ev.states[pop]:
            np.testing.assert_array_equal(lv.states[pop][var], ev.states[pop][var])


def test_unsupported_inputs():
    rng = np.random.default_rng(18)
    net = dense_chain(rng)
    with pytest.raises(ValueError):
        LavaBackend(tag="bit_accurate_loihi")
    net.populations["o"].neuron.reset = "zero"
    with pytest.raises(ValueError):
        LavaBackend().run(net, binary(rng, (1, 5, 23)))


def test_model_crash_raises_and_leaves_no_processes(monkeypatch):
    """A process model that raises mid-run (here a float ``du``, which crashes
    fixed_pt) must not hang Lava's runtime nor leak its processes."""
    import multiprocessing as mp
    rng = np.random.default_rng(19)
    net = dense_chain(rng)
    orig = lb._Graph._neuron

    def bad(self, p):
        proc = orig(self, p)
        if p.name == "h":
            from lava.proc.lif.process import LIF
            proc = LIF(shape=(p.size,), vth=10, du=0.5, dv=3)
        return proc

    monkeypatch.setattr(lb._Graph, "_neuron", bad)
    with pytest.raises(lb.LavaRunError):
        LavaBackend().run(net, binary(rng, (2, 10, 24)), record="all", record_states=True)
    assert mp.active_children() == []


def test_forked_children_do_not_collect_inherited_tensorflow_garbage():
    """A child forked under ``frozen_heap`` leaves the parent's cyclic garbage
    alone.  Without it the child's first full collection finalises TensorFlow
    objects whose mutexes a parent thread held or waited on at the fork, and
    segfaults (every fork here) or aborts in abseil -- the way a Lava process
    died in CI.  The parent's collector stays off until the fork, as it is in
    effect for garbage in the oldest generation, which it rarely collects."""
    import gc
    import os
    import threading
    import keras
    from neurocomp.backends._mp import frozen_heap

    def tensorflow_busy():
        for _ in range(200):
            keras.ops.convert_to_numpy(keras.ops.ones((64, 64)) @ keras.ops.ones((64, 64)))

    statuses = []
    for _ in range(3):
        gc.disable()
        try:
            for _ in range(2):                           # Keras models' reference cycles
                m = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, activation="relu"),
                                      keras.layers.Dense(3)])
                m.compile("adam", "sparse_categorical_crossentropy")
                m.fit(np.zeros((32, 16)), np.zeros(32, int), epochs=1, verbose=0)
                del m
            busy = threading.Thread(target=tensorflow_busy)
            busy.start()
            with frozen_heap():
                pid = os.fork()
                if pid == 0:                             # pragma: no cover - child
                    gc.enable()
                    gc.collect()
                    os._exit(0)
                statuses.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
            busy.join()
        finally:
            gc.enable()
    assert statuses == [0, 0, 0]
    assert gc.get_freeze_count() == 0                     # the parent is unfrozen after


def test_lava_forks_its_processes_from_a_frozen_heap(monkeypatch):
    """Every process Lava starts for a run (runtime service, models, the
    shared-memory manager) is forked while the heap is frozen."""
    import gc
    import multiprocessing.process as mpp
    rng = np.random.default_rng(23)
    net = dense_chain(rng)
    frozen_at_start = []
    start = mpp.BaseProcess.start

    def spy(self):
        frozen_at_start.append(gc.get_freeze_count())
        return start(self)

    monkeypatch.setattr(mpp.BaseProcess, "start", spy)
    LavaBackend().run(net, binary(rng, (2, 6, 24)), record="all")
    assert len(frozen_at_start) >= 3 and min(frozen_at_start) > 0
    assert gc.get_freeze_count() == 0
