"""NIR export (``to_nir`` / ``write_nir``) of lowered networks and import
(``from_nir``) of NIR graphs into the float IR.  No Lava needed."""
import numpy as np
import pytest

nir = pytest.importorskip("nir")

import neurocomp  # noqa: E402
from neurocomp import ir, nir_io  # noqa: E402
from neurocomp import numerics as nm  # noqa: E402
from neurocomp.analysis import quantised_ann  # noqa: E402
from neurocomp.encoding import input_payloads  # noqa: E402
from neurocomp.errors import NeurocompError, UnsupportedLayerError  # noqa: E402
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredNet  # noqa: E402


@pytest.fixture(scope="module")
def data():
    from neurocomp.demo import digits_data
    return digits_data()          # x_tr, x_te, y_tr, y_te; x (N, 8, 8, 1) in [0, 1]


@pytest.fixture(scope="module")
def models(data):
    import keras
    keras.utils.set_random_seed(0)
    x_tr, _, y_tr, _ = data
    L = keras.layers
    mlp = keras.Sequential([L.Input((8, 8, 1)), L.Flatten(), L.Dense(32, activation="relu"),
                            L.Dense(10)], name="mlp")
    cnn = keras.Sequential([L.Input((8, 8, 1)), L.Conv2D(8, 3, padding="same", activation="relu"),
                            L.AveragePooling2D(2), L.Conv2D(16, 3, activation="relu"), L.Flatten(),
                            L.Dense(10)], name="cnn")
    for m in (mlp, cnn):
        m.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x_tr, y_tr, epochs=10, batch_size=64, verbose=0)
    return {"mlp": mlp, "cnn": cnn}


def chw(shape):
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def to_nir_layout(flat, shape):
    a = np.asarray(flat).reshape(shape)
    return a.transpose(2, 0, 1) if a.ndim == 3 else a


def lif_bias_w(p):
    n = p.neuron
    return nm.lif_bias(n.bias_mant, n.bias_exp) / 64.0


# -- export --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("mode,netx", [("rate", True), ("rate", False), ("rate-soft", None)])
def test_export_round_trip_is_exact(models, data, tmp_path, name, mode, netx):
    x_tr, x_te, _, _ = data
    # NIR holds rate mode with Lava LIF's own reset (rate_reset "synapse" is refused: test_reset_synapse)
    extra = {"rate_reset": "zero"} if mode == "rate" else {}
    c = neurocomp.compile(models[name], calib=x_tr[:300], mode=mode, netx=netx, **extra)
    net = c.net
    assert nir_io.nir_expressible(net) == (True, "")
    path = nir_io.write_nir(net, tmp_path / f"{name}.nir")
    g = nir.read(path)                                        # type-checked by nir itself

    # structure: one node per population and connection, flatten before dense-from-image
    expected_edges = set()
    for p in net.populations.values():
        node = g.nodes[p.name]
        md = node.metadata
        assert md["population"] == p.name and tuple(md["shape_hwc"]) == p.shape
        if isinstance(p.neuron, InputNeuron):
            assert isinstance(node, nir.Input)
            assert tuple(node.input_type["input"]) == chw(p.shape)
            assert md["payload_per_unit"] == p.neuron.payload_per_unit
            assert md["encoding"] == "constant" and bool(md["graded"])
            continue
        n = p.neuron
        assert isinstance(node, nir.IF)                       # du=4095, dv=0: no leak
        assert node.v_threshold.shape == chw(p.shape)
        np.testing.assert_array_equal(node.v_threshold, n.vth)
        np.testing.assert_array_equal(node.r, 1.0)
        np.testing.assert_array_equal(node.v_reset, 0.0)
        assert (md["vth"], md["du"], md["dv"], md["reset"]) == (n.vth, n.du, n.dv, n.reset)
        np.testing.assert_array_equal(md["bias_mant"], to_nir_layout(n.bias_mant, p.shape))
        np.testing.assert_array_equal(md["bias_exp"], to_nir_layout(n.bias_exp, p.shape))
        if n.v0 is not None:
            np.testing.assert_array_equal(md["v0"], to_nir_layout(n.v0, p.shape))
    out_name = [k for k, v in g.nodes.items() if isinstance(v, nir.Output)]
    assert len(out_name) == 1
    expected_edges.add((net.output, out_name[0]))
    assert g.nodes[net.output].metadata["readout"] == "membrane"

    for conn in net.connections:
        node = g.nodes[conn.name]
        src, dst = net.populations[conn.src], net.populations[conn.dst]
        assert node.metadata["weight_exp"] == conn.weight_exp
        assert node.metadata["src"] == conn.src and node.metadata["dst"] == conn.dst
        w = conn.effective_weight().astype(np.float64) * 2.0 ** conn.weight_exp
        bias = lif_bias_w(dst)
        if conn.kind == "dense":
            assert isinstance(node, (nir.Affine, nir.Linear))
            if len(src.shape) == 3:                           # columns to C,H,W order
                w = w.reshape((-1,) + src.shape).transpose(0, 3, 1, 2).reshape(len(w), -1)
                flat = f"{conn.name}.flatten"
                assert isinstance(g.nodes[flat], nir.Flatten)
                expected_edges |= {(conn.src, flat), (flat, conn.name)}
            else:
                expected_edges.add((conn.src, conn.name))
            np.testing.assert_array_equal(node.weight, w)     # exact, (out, in)
            got_bias = node.bias if isinstance(node, nir.Affine) else np.zeros(len(w))
            np.testing.assert_array_equal(got_bias, bias)
        else:
            assert isinstance(node, nir.Conv2d)
            expected_edges.add((conn.src, conn.name))
            kh, kw, cg, co = w.shape
            g_out = co // conn.groups
            full = np.zeros((co, cg * conn.groups, kh, kw))
            for o in range(co):                               # grouped kernels written with groups=1
                grp = o // g_out
                full[o, grp * cg:(grp + 1) * cg] = w[..., o].transpose(2, 0, 1)
            np.testing.assert_array_equal(node.weight, full)
            assert node.metadata["groups"] == conn.groups
            (pt, pb), (pl, pr) = conn.pads
            assert tuple(np.asarray(node.padding)) == (pt, pl) and pt == pb and pl == pr
            assert tuple(np.asarray(node.stride)) == tuple(conn.strides)
            np.testing.assert_array_equal(node.bias, bias.reshape(dst.shape)[0, 0])
        expected_edges.add((conn.name, conn.dst))
    assert set(map(tuple, g.edges)) == expected_edges

    # metadata round trip: the lowered network comes back bit for bit
    back = nir_io.lowered_from_nir(path)
    d0, a0 = net.to_dicts()
    d1, a1 = back.to_dicts()
    assert d0 == d1 and a0.keys() == a1.keys()
    for k in a0:
        assert a0[k].dtype == a1[k].dtype and np.array_equal(a0[k], a1[k]), k
    assert g.metadata["format"] == nir_io.FORMAT
    if mode == "rate-soft":
        assert any("subtraction" in line for line in g.metadata["caveats"].split("\n"))
        assert nir_io.nir_expressible(net, strict=True)[0] is False

    # semantics: the exported graph read as rates is the quantised ANN of the integer net
    f = nir_io.from_nir(g, clip_rate=True)
    inp = net.populations[net.input]
    payloads = input_payloads(inp.neuron, x_te).reshape((len(x_te),) + inp.shape).astype(np.float64)
    out = ir.predict(f, payloads)
    q = quantised_ann(net, x_te, corrected=True)[net.output]
    scale = net.populations[net.output].neuron.vth / net.meta["vth_nominal"][net.output]
    np.testing.assert_allclose(out * scale, q, rtol=1e-9, atol=1e-9)


def test_sigma_delta_is_not_expressible(models, data):
    c = neurocomp.compile(models["mlp"], calib=data[0][:300], mode="sigma-delta")
    ok, reason = nir_io.nir_expressible(c.net)
    assert ok is False and "sigma-delta" in reason and "\n" not in reason
    with pytest.raises(NeurocompError, match="sigma-delta"):
        nir_io.to_nir(c.net)


def _leaky_net(du=1023, dv=512):
    net = LoweredNet(input="x", output="y", meta={"readout": "count"})
    net.add_population("x", (4,), InputNeuron(graded=True, payload_max=15, payload_per_unit=15.0))
    net.add_population("y", (3,), LIFNeuron(vth=100, du=du, dv=dv, reset="zero",
                                            bias_mant=np.array([64, -5, 0]), bias_exp=np.array([6, 1, 0]),
                                            v0=np.array([0, 10, 20])))
    net.connect(name="x->y", src="x", dst="y", kind="dense",
                weight=np.arange(-6, 6, dtype=np.int64).reshape(3, 4) * 2)
    net.validate()
    return net


def test_leaky_lif_becomes_cuba_lif(tmp_path):
    net = _leaky_net()
    g = nir.read(nir_io.write_nir(net, tmp_path / "leaky.nir"))
    y = g.nodes["y"]
    assert isinstance(y, nir.CubaLIF) and isinstance(g.nodes["x->y"], nir.Linear)
    # current decay (4096 - du - 1)/4096 = 1 - 1/tau_syn, voltage decay (4096 - dv)/4096 = 1 - 1/tau_mem
    np.testing.assert_allclose(1 - 1 / y.tau_syn, (4096 - 1023 - 1) / 4096)
    np.testing.assert_allclose(1 - 1 / y.tau_mem, (4096 - 512) / 4096)
    np.testing.assert_allclose(y.w_in / y.tau_syn, 1.0)       # input enters u with gain 1
    np.testing.assert_allclose(y.r / y.tau_mem, 1.0)          # u enters v with gain 1
    np.testing.assert_allclose(y.v_leak / y.tau_mem, np.array([64 << 6, -5 << 1, 0]) / 64)
    np.testing.assert_array_equal(y.v_threshold, 100.0)
    assert y.metadata["du"] == 1023 and y.metadata["dv"] == 512
    np.testing.assert_array_equal(y.metadata["v0"], [0, 10, 20])
    back = nir_io.lowered_from_nir(g)
    assert back.to_dicts()[0] == net.to_dicts()[0]
    assert any("initial" in c for c in nir_io.nir_caveats(net))


def test_what_nir_cannot_express():
    ok, reason = nir_io.nir_expressible(_leaky_net(du=1023, dv=0))
    assert not ok and "tau_mem" in reason
    net = LoweredNet(input="x", output="y", meta={})
    net.add_population("x", (4, 4, 1), InputNeuron())
    net.add_population("y", (4, 4, 2), LIFNeuron(vth=10))
    net.connect(name="c", src="x", dst="y", kind="conv", weight=np.ones((2, 2, 1, 2), np.int64),
                pads=((0, 1), (0, 1)))
    net.validate()
    ok, reason = nir_io.nir_expressible(net)
    assert not ok and "asymmetric" in reason and "\n" not in reason
    with pytest.raises(NeurocompError, match="Conv2d"):
        nir_io.to_nir(net)


# -- import --------------------------------------------------------------------------

def _rng_pos(rng, shape):
    return rng.uniform(0.5, 2.0, shape)


def mlp_nir(model, rng):
    """Input(64) -> Affine -> IF -> Affine -> IF -> Output with the Keras weights,
    random (positive) per-neuron r and thresholds compensated in the weights."""
    (w1, b1), (w2, b2) = model.layers[1].get_weights(), model.layers[2].get_weights()
    nodes, edges, prev = {"in": nir.Input(input_type=np.array([64]))}, [], "in"
    for i, (w, b) in enumerate(((w1, b1), (w2, b2))):
        n = w.shape[1]
        vth, r = _rng_pos(rng, n), _rng_pos(rng, n)
        k = vth / r
        nodes[f"fc{i}"] = nir.Affine(weight=(w * k).T.astype(np.float64), bias=(b * k).astype(np.float64))
        nodes[f"lif{i}"] = nir.IF(r=r, v_threshold=vth)
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["out"] = nir.Output(output_type=np.array([10]))
    edges.append((prev, "out"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def cnn_nir(model, rng):
    """Input(1,8,8) -> Conv2d -> IF -> SumPool2d -> Conv2d -> IF -> Flatten -> Affine -> IF -> Output."""
    conv1, _, conv2, _, dense = model.layers
    (k1, b1), (k2, b2), (wd, bd) = conv1.get_weights(), conv2.get_weights(), dense.get_weights()
    t1, t2, t3 = _rng_pos(rng, 8), _rng_pos(rng, 16), _rng_pos(rng, 10)
    # NIR flattens C,H,W; Keras flattened H,W,C: reorder the dense rows
    wd_chw = wd.reshape(2, 2, 16, 10).transpose(2, 0, 1, 3).reshape(-1, 10)
    nodes = {
        "in": nir.Input(input_type=np.array([1, 8, 8])),
        "c1": nir.Conv2d(input_shape=(8, 8), weight=(k1 * t1).transpose(3, 2, 0, 1).astype(np.float64),
                         stride=1, padding=1, dilation=1, groups=1, bias=(b1 * t1).astype(np.float64)),
        "s1": nir.IF(r=np.ones((8, 8, 8)), v_threshold=np.broadcast_to(t1[:, None, None], (8, 8, 8)).copy()),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        # sum pooling = 4 x average pooling: compensate in the next kernel
        "c2": nir.Conv2d(input_shape=(4, 4), weight=(k2 * t2 / 4).transpose(3, 2, 0, 1).astype(np.float64),
                         stride=1, padding=0, dilation=1, groups=1, bias=(b2 * t2).astype(np.float64)),
        "s2": nir.IF(r=np.ones((16, 2, 2)), v_threshold=np.broadcast_to(t2[:, None, None], (16, 2, 2)).copy()),
        "flat": nir.Flatten(input_type={"input": np.array([16, 2, 2])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=(wd_chw * t3).T.astype(np.float64), bias=(bd * t3).astype(np.float64)),
        "s3": nir.IF(r=np.ones(10), v_threshold=t3),
        "out": nir.Output(output_type=np.array([10])),
    }
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:])))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_import_matches_source_model_and_converts(models, data, tmp_path, name):
    x_tr, x_te, _, y_te = data
    model = models[name]
    rng = np.random.default_rng(1)
    g_nir = (mlp_nir if name == "mlp" else cnn_nir)(model, rng)
    nir.write(tmp_path / "m.nir", g_nir)
    g = nir_io.from_nir(tmp_path / "m.nir")
    ir.validate(g)
    shape = lambda x: x.reshape(len(x), -1) if name == "mlp" else x  # noqa: E731
    keras_logits = model.predict(x_te, verbose=0)
    logits = ir.predict(g, shape(x_te))
    np.testing.assert_allclose(logits, keras_logits, atol=1e-4, rtol=1e-4)
    assert np.array_equal(logits.argmax(1), keras_logits.argmax(1))
    float_acc = float((logits.argmax(1) == y_te).mean())

    c = neurocomp.compile(g, calib=shape(x_tr[:300]), mode="rate-soft")
    snn_acc = c.simulate(shape(x_te), c.latency_steps + 32).accuracy(y_te)
    assert snn_acc >= float_acc - 0.03, (snn_acc, float_acc)


def test_import_keeps_output_rate_and_folds_lif_leak_terms(models):
    rng = np.random.default_rng(2)
    g_nir = mlp_nir(models["mlp"], rng)
    g = nir_io.from_nir(g_nir, drop_output_neuron=False)
    kinds = [g.nodes[n]["op"].kind for n in ir.topo_order(g)]
    assert kinds == ["input", "dense", "activation", "dense", "activation", "output"]
    # a CubaLIF: rate = (r * w_in * I + v_leak) / (tau_mem * v_threshold)
    w, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    cuba = nir.CubaLIF(tau_syn=np.full(3, 2.0), tau_mem=np.full(3, 4.0), r=np.full(3, 8.0),
                       v_leak=np.array([1.0, -2.0, 0.5]), v_threshold=np.array([1.0, 2.0, 4.0]),
                       w_in=np.full(3, 0.5))
    h = nir_io.from_nir(nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([5])),
                                            "a": nir.Affine(weight=w, bias=b), "n": cuba,
                                            "o": nir.Output(output_type=np.array([3]))},
                                     edges=[("i", "a"), ("a", "n"), ("n", "o")]))
    x = rng.normal(size=(7, 5))
    want = (8.0 * 0.5 * (x @ w.T + b) + cuba.v_leak) / (4.0 * cuba.v_threshold)
    np.testing.assert_allclose(ir.predict(h, x), want)
    assert any("leak" in s for s in h.graph["nir_notes"])


def test_unsupported_nir_node_is_named():
    g = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([4])),
                            "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
                            "thr": nir.Threshold(threshold=np.ones(3)),
                            "o": nir.Output(output_type=np.array([3]))},
                     edges=[("i", "a"), ("a", "thr"), ("thr", "o")])
    with pytest.raises(UnsupportedLayerError) as e:
        nir_io.from_nir(g)
    msg = str(e.value)
    assert "'thr'" in msg and "Threshold" in msg and "Affine" in msg and "\n" not in msg
    # a non-spiking integrator is only accepted as the output layer
    g = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([4])),
                            "a": nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
                            "li": nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
                            "b": nir.Linear(weight=np.ones((2, 3))),
                            "o": nir.Output(output_type=np.array([2]))},
                     edges=[("i", "a"), ("a", "li"), ("li", "b"), ("b", "o")])
    with pytest.raises(UnsupportedLayerError, match="'li'.*output layer"):
        nir_io.from_nir(g)


def test_import_grouped_strided_conv_and_flatten_order():
    """Conv2d (groups, stride, dilation, padding) and NIR's C,H,W flatten, against PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    w, b = rng.normal(size=(6, 2, 3, 2)), rng.normal(size=6)
    lin = rng.normal(size=(3, 6 * 4 * 4))
    g = nir.NIRGraph(nodes={"i": nir.Input(input_type=np.array([4, 7, 6])),
                            "c": nir.Conv2d(input_shape=None, weight=w, stride=(2, 1), padding=(1, 0),
                                            dilation=(1, 2), groups=2, bias=b),
                            "f": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
                            "a": nir.Linear(weight=lin), "o": nir.Output(output_type=np.array([3]))},
                     edges=[("i", "c"), ("c", "f"), ("f", "a"), ("a", "o")], type_check=False)
    h = nir_io.from_nir(g)
    x = rng.normal(size=(5, 4, 7, 6))                                   # N, C, H, W
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=(2, 1),
                                     padding=(1, 0), dilation=(1, 2), groups=2).numpy()
    np.testing.assert_allclose(ir.predict(h, x.transpose(0, 2, 3, 1)), ref.reshape(5, -1) @ lin.T,
                               atol=1e-10)
