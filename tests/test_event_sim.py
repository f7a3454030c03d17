"""The event simulator against the spec's executable numpy references and
against a dense (non-event) re-computation of every connection."""
import numpy as np
import pytest

from neurocomp.backends.event import EventBackend, conv_stamp_csr
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredNet, SigmaDeltaNeuron
from spec_refs import load_spec_module


def chain_from_spec_cfg(cfg, n_in, graded):
    net = LoweredNet(input="in", output="l2")
    net.add_population("in", (n_in,), InputNeuron(graded=graded))

    def lif(d, n):
        return LIFNeuron(vth=d["vth"], du=d["du"], dv=d["dv"],
                         bias_mant=np.broadcast_to(np.asarray(d["bias_mant"]), (n,)).astype(np.int64),
                         bias_exp=np.broadcast_to(np.asarray(d["bias_exp"]), (n,)).astype(np.int64))
    n1, n2 = cfg["w1"].shape[0], cfg["w2"].shape[0]
    net.add_population("l1", (n1,), lif(cfg["lif1"], n1))
    net.add_population("l2", (n2,), lif(cfg["lif2"], n2))
    sm = lambda v: None if v is None else v.name.lower()  # noqa: E731
    w1 = np.trunc(np.asarray(cfg["w1"])).astype(np.int64)  # Lava truncates float weights
    net.connect(name="c1", src="in", dst="l1", kind="dense", weight=w1, weight_exp=cfg["we1"],
                num_weight_bits=cfg["nwb1"], sign_mode=sm(cfg.get("sm1")))
    net.connect(name="c2", src="l1", dst="l2", kind="dense", weight=np.asarray(cfg["w2"]),
                weight_exp=cfg["we2"], num_weight_bits=cfg["nwb2"], sign_mode=sm(cfg.get("sm2")))
    return net


@pytest.mark.parametrize("scenario", ["nominal", "stress", "inhib", "graded"])
def test_matches_spec_reference(scenario):
    ref = load_spec_module("lif_dense_bitexact")
    cfgs, xs = ref.make_cfgs()
    cfg, x = cfgs[scenario], xs[scenario]
    expected = ref.ref_run(cfg, x)
    net = chain_from_spec_cfg(cfg, x.shape[0], graded=cfg.get("nmb1", 0) > 0)
    net.validate()
    res = EventBackend().run(net, x.T[None].astype(np.int32), record="all", record_states=True)
    for key, (pop, var) in {"s1": ("l1", None), "v1": ("l1", "v"), "u1": ("l1", "u"),
                            "s2": ("l2", None), "v2": ("l2", "v"), "u2": ("l2", "u")}.items():
        got = res.spikes[pop][0] if var is None else res.states[pop][var][0]
        np.testing.assert_array_equal(got, expected[key], err_msg=f"{scenario}:{key}")
    if scenario in ("stress", "inhib"):   # the wrap / saturation paths were really exercised
        assert sum(expected["coverage"].values()) > 0


def xcorr_nhwc(x, w, strides, pads, dilation, groups):
    """Plain integer cross-correlation, channels last, explicit pads."""
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    kh, kw, cg, co = w.shape
    ho = (xp.shape[0] - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    wo = (xp.shape[1] - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    y = np.zeros((ho, wo, co), np.int64)
    og = co // groups
    for o in range(co):
        g = o // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[i * strides[0]:i * strides[0] + (kh - 1) * dilation[0] + 1:dilation[0],
                           j * strides[1]:j * strides[1] + (kw - 1) * dilation[1] + 1:dilation[1],
                           g * cg:(g + 1) * cg]
                y[i, j, o] = (patch * w[:, :, :, o]).sum()
    return y


@pytest.mark.parametrize("geo", [
    dict(strides=(1, 1), pads=((0, 0), (0, 0)), dilation=(1, 1), groups=1),
    dict(strides=(2, 2), pads=((0, 1), (0, 1)), dilation=(1, 1), groups=1),
    dict(strides=(1, 2), pads=((2, 2), (1, 0)), dilation=(2, 1), groups=2),
    dict(strides=(2, 1), pads=((1, 1), (1, 1)), dilation=(1, 1), groups=4),
])
def test_conv_stamp_equals_cross_correlation(geo):
    rng = np.random.default_rng(3)
    src = (7, 6, 4)
    w = rng.integers(-9, 10, size=(3, 3, 4 // geo["groups"], 4))
    from neurocomp.lowered import Connection
    c = Connection("c", "a", "b", "conv", weight=w, **geo)
    indptr, indices, data = conv_stamp_csr(src, c)
    x = rng.integers(0, 5, size=src)
    ref = xcorr_nhwc(x, w, **geo)
    got = np.zeros(ref.size, np.int64)
    flat = x.reshape(-1)
    for i in np.nonzero(flat)[0]:
        np.add.at(got, indices[indptr[i]:indptr[i + 1]], flat[i] * data[indptr[i]:indptr[i + 1]])
    np.testing.assert_array_equal(got, ref.reshape(-1))


def test_batch_chunks_and_samples_are_independent():
    rng = np.random.default_rng(4)
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (20,), InputNeuron())
    net.add_population("h", (15,), LIFNeuron(vth=40, du=300, dv=100, bias_mant=rng.integers(-9, 9, 15),
                                             bias_exp=np.full(15, 3)))
    net.add_population("o", (5,), SigmaDeltaNeuron(vth=2, bias=rng.integers(-5, 5, 5), state_exp=2))
    net.connect(name="a", src="in", dst="h", kind="dense", weight=rng.integers(-100, 100, (15, 20)), delay=2)
    net.connect(name="b", src="h", dst="o", kind="dense", weight=rng.integers(-100, 100, (5, 15)))
    net.connect(name="c", src="in", dst="o", kind="dense", weight=rng.integers(0, 50, (5, 20)))
    net.validate()
    raster = (rng.random((9, 30, 20)) < 0.3).astype(np.int32)
    whole = EventBackend().run(net, raster, record="all", record_states=True)
    chunked = EventBackend(chunk=4).run(net, raster, record="all", record_states=True)
    single = EventBackend().run(net, raster[5:6], record="all", record_states=True)
    for pop in ("h", "o"):
        np.testing.assert_array_equal(whole.spikes[pop], chunked.spikes[pop])
        np.testing.assert_array_equal(whole.spikes[pop][5:6], single.spikes[pop])
    assert whole.spikes["h"].sum() > 0 and np.abs(whole.spikes["o"]).sum() > 0
    # the delay: nothing reaches h before step 1 + 1 + 2
    assert whole.states["h"]["u"][:, :3].max() == 0 and whole.states["h"]["u"][:, 3].any()


def test_blas_path_is_bit_identical_to_row_adds():
    """The float32 GEMM path is only taken where exact; the row-add,
    GEMM and conv-gather paths must agree bit for bit, and so must the cost
    model's mix."""
    rng = np.random.default_rng(5)
    net = LoweredNet(input="in", output="d")
    net.add_population("in", (9, 9, 3), InputNeuron(graded=True, payload_max=255))
    net.add_population("c1", (7, 7, 8), LIFNeuron(vth=500, du=4095, dv=0, bias_mant=rng.integers(-99, 99, 392),
                                                  bias_exp=np.full(392, 6)))
    net.add_population("c2", (4, 4, 8), LIFNeuron(vth=100, du=4000, dv=10, bias_mant=rng.integers(-99, 99, 128),
                                                  bias_exp=np.full(128, 2)))
    net.add_population("p", (3, 3, 8), LIFNeuron(vth=40, du=4095, dv=0))
    net.add_population("q", (3, 4, 4), LIFNeuron(vth=60, du=4095, dv=0))
    net.add_population("d", (10,), LIFNeuron(vth=300, du=4095, dv=0, reset="subtract"))
    net.connect(name="a", src="in", dst="c1", kind="conv", weight=rng.integers(-30, 30, (3, 3, 3, 8)))
    net.connect(name="pool", src="c1", dst="p", kind="conv", weight=rng.integers(-20, 99, (2, 2, 1, 8)),
                strides=(2, 2), groups=8)                              # depthwise, like pooling
    net.connect(name="f", src="p", dst="d", kind="dense", weight=rng.integers(-60, 60, (10, 72)))
    # a kernel constant over 2x2 tiles (an average pool folded into a conv): the BLAS path
    # computes it as block sums and a 2x smaller conv
    net.connect(name="fold", src="c1", dst="q", kind="conv", strides=(2, 2), pads=((2, 0), (2, 2)),
                weight=np.repeat(np.repeat(rng.integers(-40, 60, (2, 2, 8, 4)), 2, axis=0), 2, axis=1))
    net.connect(name="g", src="q", dst="d", kind="dense", weight=rng.integers(-60, 60, (10, 48)))
    net.connect(name="b", src="c1", dst="c2", kind="conv", weight=rng.integers(-99, 99, (3, 3, 4, 8)),
                strides=(2, 2), pads=((1, 1), (1, 2)), groups=2)
    net.connect(name="e", src="c2", dst="d", kind="dense", weight=2 * rng.integers(-60, 60, (10, 128)),
                weight_exp=-2)
    net.validate()
    raster = np.repeat((rng.random((64, 1, 243)) * 255).astype(np.int32), 15, axis=1)
    a = EventBackend(force_path="scatter").run(net, raster, record="all", record_states=True)
    for path in (None, "blas", "gather"):
        b = EventBackend(force_path=path).run(net, raster, record="all", record_states=True)
        for pop in a.spikes:
            np.testing.assert_array_equal(a.spikes[pop], b.spikes[pop])
            assert a.spikes[pop].any()
        for pop in a.states:
            for var in a.states[pop]:
                np.testing.assert_array_equal(a.states[pop][var], b.states[pop][var])
