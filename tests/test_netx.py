"""lava-dl NetX export (``backends/netx.py``).

* three-way agreement: compiled digits models (MLP, LeNet-style CNN with
  average pooling, CNN with symmetric 'same' padding and a stride), rate and
  sigma-delta mode, event vs Lava vs NetX recordings of every population
  (spikes and states), identical for several samples;
* the dense weight path through ``optimize_weight_bits`` is exact, checked
  against the real lava-dl / Lava functions and a running Lava Dense;
* the file holds datasets only (no attributes, no ``messageBits``) and loads
  with plain ``netx.hdf5.Network(net_config=path, **netx_network_args(net))``;
* ``netx_expressible`` gives one-line reasons for what NetX cannot express.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import neurocomp
from neurocomp.encoding import encode
from neurocomp.errors import NeurocompError
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredNet
from neurocomp.backends.netx import (NetxBackend, _simulate_netx_dense, netx_expressible,
                                     netx_input, netx_network_args, write_netx)

lava_group = pytest.mark.xdist_group("lava")
N_SAMPLES = 3


# -- models --------------------------------------------------------------------------

_MEMO: dict = {}


def _same_stride_cnn():
    """Conv 3x3 'same' (pads 1,1) -> conv 4x4 stride 2 'same' (pads 1,1 on 8x8)
    -> Flatten -> Dense; trained a few epochs on digits."""
    if "same_stride" not in _MEMO:
        from neurocomp.frontends.keras import import_keras
        from keras_zoo import load_digits_data
        keras = import_keras()
        L = keras.layers
        keras.utils.set_random_seed(0)
        xtr, ytr, xte, _ = load_digits_data()
        m = keras.Sequential([
            keras.Input((8, 8, 1)),
            L.Conv2D(6, 3, padding="same", activation="relu", name="conv_same"),
            L.Conv2D(8, 4, strides=2, padding="same", activation="relu", name="conv_s2"),
            L.Flatten(), L.Dense(10, name="logits")], name="same_stride_cnn")
        m.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(xtr, ytr, epochs=10, batch_size=64, verbose=0)
        _MEMO["same_stride"] = (m, xte[:20])
    return _MEMO["same_stride"]


def _model(name, zoo_cache):
    if name == "same_stride_cnn":
        return _same_stride_cnn()
    from keras_zoo import load_or_build
    return load_or_build(name, zoo_cache)


def _compiled(name, mode, zoo_cache, netx=True):
    key = (name, mode, netx)
    if key not in _MEMO:
        from keras_zoo import load_digits_data
        model, x = _model(name, zoo_cache)
        c = neurocomp.compile(model, calib=load_digits_data()[0][:300], mode=mode, netx=netx)
        _MEMO[key] = (c, x)
    return _MEMO[key]


def _assert_same(ref, other, label):
    assert set(ref.spikes) == set(other.spikes), label
    for k in ref.spikes:
        np.testing.assert_array_equal(other.spikes[k], ref.spikes[k],
                                      err_msg=f"{label}: spikes of '{k}'")
        np.testing.assert_array_equal(other.spike_counts[k], ref.spike_counts[k],
                                      err_msg=f"{label}: spike counts of '{k}'")
    assert set(ref.states) == set(other.states), label
    for k in ref.states:
        for v in ref.states[k]:
            np.testing.assert_array_equal(other.states[k][v], ref.states[k][v],
                                          err_msg=f"{label}: state {v} of '{k}'")


# -- three-way agreement -----------------------------------------------------------------

@lava_group
@pytest.mark.parametrize("mode", ["rate", "sigma-delta"])
@pytest.mark.parametrize("name", ["mlp_digits", "lenet", "same_stride_cnn"])
def test_event_lava_netx_agree(name, mode, zoo_cache, tmp_path):
    from neurocomp.backends.event import EventBackend
    from neurocomp.backends.lava import LavaBackend
    c, x = _compiled(name, mode, zoo_cache)
    net = c.net
    assert netx_expressible(net) == (True, "")
    if name == "same_stride_cnn":          # the model really has 'same' pads and a stride
        convs = [k for k in net.connections if k.kind == "conv"]
        assert any(k.pads == ((1, 1), (1, 1)) and tuple(k.strides) == (2, 2) for k in convs)
    steps = c.latency_steps + 8
    raster = encode(net, x[:N_SAMPLES], steps)
    # one case through a file written beforehand, the others through a temporary one
    if mode == "rate":
        path = tmp_path / f"{name}.net"
        write_netx(net, path)
        nx = NetxBackend(path=path)
    else:
        nx = NetxBackend()
    ev = EventBackend().run(net, raster, record="all", record_states=True)
    lv = LavaBackend().run(net, raster, record="all", record_states=True)
    rn = nx.run(net, raster, record="all", record_states=True)
    assert rn.steps == steps and rn.samples == N_SAMPLES and rn.seconds > 0
    assert set(rn.spikes) == {p for p in net.populations if p != net.input}
    hidden = [p for p in rn.spikes if p != net.output]
    assert all(rn.spike_counts[p].sum() > 0 for p in hidden), "silent hidden layer"
    _assert_same(ev, lv, f"{name}/{mode} event vs lava")
    _assert_same(ev, rn, f"{name}/{mode} event vs netx")


# -- weights, file format -----------------------------------------------------------------

def _chain_net():
    """Binary input -> dense (odd mixed weights, 9 weight bits, delay 2) -> LIF
    -> dense (non-positive with zeros: NetX sees 'mixed', Lava 'inhibitory')
    -> LIF -> dense (weight exponent -1 on even weights, folded) -> LIF."""
    rng = np.random.default_rng(3)
    net = LoweredNet(input="in", output="c")
    net.add_population("in", (12,), InputNeuron())
    net.add_population("a", (10,), LIFNeuron(vth=150, du=1023, dv=256,
                                             bias_mant=rng.integers(-3, 6, 10) * 64,
                                             bias_exp=np.zeros(10, np.int64)))
    net.add_population("b", (8,), LIFNeuron(vth=40, du=4095, dv=0,
                                            bias_mant=np.full(8, 30), bias_exp=np.full(8, 6)))
    net.add_population("c", (5,), LIFNeuron(vth=60, du=2047, dv=128))
    w1 = rng.integers(-101, 102, (10, 12)) | 1                 # odd, mixed, |w| <= 127
    w2 = -rng.integers(0, 4, (8, 10))                          # {0..-3}, min -3
    w2[0, 0] = -3
    w3 = rng.integers(-60, 61, (5, 8)) * 2                     # even, exponent -1
    net.connect(name="in->a", src="in", dst="a", kind="dense", weight=w1, num_weight_bits=9,
                delay=2)
    net.connect(name="a->b", src="a", dst="b", kind="dense", weight=w2)
    net.connect(name="b->c", src="b", dst="c", kind="dense", weight=w3, weight_exp=-1)
    net.validate()
    return net


def _walk(h5):
    """Every (name, object) of an h5py file, the root included."""
    items = [("/", h5)]
    h5.visititems(lambda n, o: items.append((n, o)))
    return items


@lava_group
def test_weights_survive_optimize_weight_bits_and_file_is_plain(tmp_path, zoo_cache):
    import h5py
    from neurocomp.backends.netx import _import_netx
    netx = _import_netx()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    c, _ = _compiled("lenet", "rate", zoo_cache)
    for j, (net, run_it) in enumerate(((_chain_net(), True), (c.net, False))):
        path = tmp_path / f"w{j}.net"
        write_netx(net, path)
        with h5py.File(path, "r") as f:
            for nme, obj in _walk(f):
                assert len(obj.attrs) == 0, f"attribute on {nme}"
                assert "messageBits" not in nme
        with np.errstate(divide="ignore"):
            network = netx.hdf5.Network(net_config=str(path), **netx_network_args(net))
        n_in = net.populations[net.input].size
        assert netx_input(net, np.zeros((1, 2, n_in), np.int32)).shape[2:] == \
            tuple(network.inp.shape)
        chain = list(net.connections)                 # in chain order for these nets
        assert len(network.layers) == len(chain)
        dense = [(i, k) for i, k in enumerate(chain) if k.kind == "dense"]
        assert dense

        def lowered(k):        # effective weights x 2^weight_exp (integers here)
            w = k.effective_weight().astype(np.int64)
            return w << k.weight_exp if k.weight_exp >= 0 else w >> -k.weight_exp

        def ours(k, w):        # NetX flatten column order (c, h, w) -> ours (h, w, c)
            src = net.populations[k.src]
            if len(src.shape) != 3:
                return w
            h, ww, ch = src.shape
            return w.reshape(-1, ch, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)

        for i, k in dense:
            assert not np.any(k.effective_weight() % (1 << max(0, -k.weight_exp)))
            syn = network.layers[i].synapse
            w = np.asarray(syn.weights.init).astype(np.int32)
            nwb, we = syn.proc_params["num_weight_bits"], syn.proc_params["weight_exp"]
            sm = determine_sign_mode(w)                 # what PyDenseModelBitAcc does
            wq = truncate_weights(clip_weights(w, sm, num_bits=8), sm, nwb).astype(np.int64)
            assert we <= 0 and not np.any(wq % (1 << -we))
            np.testing.assert_array_equal(ours(k, wq >> -we), lowered(k), err_msg=k.name)
        if run_it:
            # and the running Lava Dense (it quantises its weights on the first step)
            src = RingBuffer(data=np.zeros(tuple(network.inp.shape) + (1,), np.int32))
            src.s_out.connect(network.inp)
            try:
                network.run(condition=RunSteps(num_steps=1),
                            run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
                for i, k in dense:
                    syn = network.layers[i].synapse
                    q = np.rint(np.asarray(syn.weights.get())).astype(np.int64)
                    we = syn.proc_params["weight_exp"]
                    np.testing.assert_array_equal(ours(k, q >> -we), lowered(k), err_msg=k.name)
            finally:
                network.stop()


@lava_group
def test_hand_built_chain_with_delay_agrees():
    from neurocomp.backends.event import EventBackend
    net = _chain_net()
    assert netx_expressible(net) == (True, "")
    rng = np.random.default_rng(5)
    raster = (rng.random((2, 30, 12)) < 0.4).astype(np.int32)
    ev = EventBackend().run(net, raster, record="all", record_states=True)
    rn = NetxBackend().run(net, raster, record="all", record_states=True)
    assert ev.spike_counts["a"].sum() > 0 and ev.spike_counts["c"].sum() > 0
    _assert_same(ev, rn, "hand-built chain")
    # default recording: the output's spikes; states of the populations asked for
    ev = EventBackend().run(net, raster, record_states=["b"])
    rn = NetxBackend().run(net, raster, record_states=["b"])
    assert set(rn.spikes) == {"c"} and set(rn.states) == {"b"}
    _assert_same(ev, rn, "hand-built chain, default recording")


@lava_group
def test_model_crash_raises_and_leaves_no_processes(tmp_path):
    """A file whose neuron crashes Lava's fixed_pt model (a float vThMant) must
    raise, not hang, and leave no Lava processes behind."""
    import multiprocessing as mp
    import h5py
    from neurocomp.backends.lava import LavaRunError
    net = _chain_net()
    path = tmp_path / "bad.net"
    write_netx(net, path)
    with h5py.File(path, "r+") as f:
        del f["layer/2/neuron/vThMant"]
        f["layer/2/neuron"].create_dataset("vThMant", data=10.5)
    raster = np.zeros((2, 6, 12), np.int32)
    with pytest.raises(LavaRunError):
        NetxBackend(path=path).run(net, raster, record="all", record_states=True)
    assert mp.active_children() == []
    with pytest.raises(NeurocompError, match="not found"):
        NetxBackend(path=tmp_path / "missing.net").run(net, raster)
    with pytest.raises(ValueError):
        NetxBackend(tag="floating_pt")


def test_simulated_weight_path_matches_lava_dl():
    """``_simulate_netx_dense`` against lava-dl's optimize_weight_bits plus
    Lava's clip/truncate (the functions Dense calls) on random matrices."""
    from neurocomp.backends.netx import _import_netx
    _import_netx()
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
    rng = np.random.default_rng(0)
    ranges = [(-300, 300), (-256, 254), (0, 300), (-300, 0), (-5, 5), (-256, 0), (0, 1), (-2, 0)]
    n_exact = 0
    for _ in range(1500):
        lo, hi = ranges[rng.integers(len(ranges))]
        w = rng.integers(lo, hi + 1, (int(rng.integers(1, 5)), int(rng.integers(1, 5))))
        w = w * int(rng.choice([1, 2, 4, 64]))
        if not w.any():
            continue
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore"):
            ws, nwb, we, _ = optimize_weight_bits(w.copy())
        ok = we <= 0
        if ok:
            ws = ws.astype(np.int32)
            sm = determine_sign_mode(ws)
            q = truncate_weights(clip_weights(ws, sm, num_bits=8), sm, nwb).astype(np.int64)
            ok = not np.any(q % (1 << -we)) and np.array_equal(q >> -we, w)
        assert _simulate_netx_dense(w)[3] == ok, w.tolist()
        n_exact += ok
    assert n_exact > 200


# -- what NetX cannot express ---------------------------------------------------------

def _reason(net):
    ok, why = netx_expressible(net)
    assert not ok and why and "\n" not in why
    with pytest.raises(NeurocompError) as ei:
        write_netx(net, "/nonexistent/never-written.net")
    assert str(ei.value) == why
    return why


def _small(conv_pads=((1, 1), (1, 1)), strides=(1, 1)):
    rng = np.random.default_rng(1)
    net = LoweredNet(input="in", output="out")
    net.add_population("in", (6, 6, 2), InputNeuron())
    k = rng.integers(-20, 21, (3, 3, 2, 4))
    ho = (6 + sum(conv_pads[0]) - 3) // strides[0] + 1
    wo = (6 + sum(conv_pads[1]) - 3) // strides[1] + 1
    net.add_population("conv", (ho, wo, 4), LIFNeuron(vth=30))
    net.add_population("out", (3,), LIFNeuron(vth=10))
    net.connect(name="in->conv", src="in", dst="conv", kind="conv", weight=k, pads=conv_pads,
                strides=strides)
    net.connect(name="conv->out", src="conv", dst="out", kind="dense",
                weight=rng.integers(-50, 51, (3, ho * wo * 4)) * 2)
    net.validate()
    return net


def test_reason_rate_soft(zoo_cache):
    c, _ = _compiled("mlp_digits", "rate-soft", zoo_cache, netx=None)
    assert "subtraction" in _reason(c.net) and "rate-soft" in _reason(c.net)


def test_reason_weight_exponent(zoo_cache):
    c, _ = _compiled("mlp_digits", "sigma-delta", zoo_cache, netx=False)
    assert any(k.weight_exp for k in c.net.connections)
    why = _reason(c.net)
    assert "weight exponent" in why and "--netx" in why


def test_reason_residual_two_inputs():
    rng = np.random.default_rng(2)
    net = LoweredNet(input="in", output="sum")
    net.add_population("in", (4,), InputNeuron())
    net.add_population("a", (4,), LIFNeuron(vth=5))
    net.add_population("sum", (4,), LIFNeuron(vth=5))
    net.connect(name="in->a", src="in", dst="a", kind="dense", weight=rng.integers(1, 9, (4, 4)))
    net.connect(name="a->sum", src="a", dst="sum", kind="dense", weight=rng.integers(1, 9, (4, 4)))
    net.connect(name="in->sum", src="in", dst="sum", kind="dense", weight=np.eye(4, dtype=int) * 8)
    net.validate()
    why = _reason(net)
    assert "'sum' has 2 inputs" in why and "residual" in why


def test_reason_asymmetric_pads():
    assert netx_expressible(_small()) == (True, "")
    why = _reason(_small(conv_pads=((0, 1), (0, 1)), strides=(2, 2)))
    assert "asymmetric padding" in why and "in->conv" in why


def test_reasons_neurons_and_weights():
    net = _small()
    net.populations["conv"].neuron.v0 = np.full(net.populations["conv"].size, 5)
    assert "non-zero membrane" in _reason(net)

    net = _small()
    n = net.populations["out"].neuron
    n.bias_mant, n.bias_exp = np.array([3, 0, 64]), np.zeros(3, np.int64)
    assert "not a whole number of weight units" in _reason(net)

    net = _small()
    net.connections[1].weight = np.zeros_like(net.connections[1].weight)
    assert "all-zero" in _reason(net)

    net = _small()                                # mixed with 255: Lava keeps it, NetX clips
    net.connections[1].weight[0, :2] = (255, -3)
    net.connections[1].num_weight_bits = 9
    assert "not reproduced exactly" in _reason(net)

    net = _small()
    w = -np.abs(net.connections[1].weight)
    w[0, 0] = -2                                  # NetX shifts -2 to -256, Lava clips to -255
    net.connections[1].weight = np.where(w < -2, 0, w)
    assert "not reproduced exactly" in _reason(net)

    net = _small()
    net.populations["conv"].neuron.reset = "subtract"
    assert "subtraction" in _reason(net)


def test_network_args():
    net = _small()
    assert netx_network_args(net) == {"input_message_bits": 0}
    net.populations["in"].neuron.graded = True
    net.populations["in"].neuron.payload_max = 255
    assert netx_network_args(net) == {"input_message_bits": 24}


def test_netx_input_layouts():
    net = LoweredNet(input="in", output="o")
    net.add_population("in", (2, 3, 4), InputNeuron())
    net.add_population("o", (5,), LIFNeuron(vth=3))
    net.connect(name="in->o", src="in", dst="o", kind="dense",
                weight=np.arange(5 * 24).reshape(5, 24) % 7 + 1)
    x = np.arange(24).reshape(1, 1, 24)                 # value = canonical (h*3 + w)*4 + c
    got = netx_input(net, x)[0, 0]
    h, w, c = np.meshgrid(range(2), range(3), range(4), indexing="ij")
    want = ((h * 3 + w) * 4 + c).transpose(2, 0, 1).reshape(-1)   # NetX flatten (c, h, w)
    np.testing.assert_array_equal(got, want)
    net2 = _small()                                        # conv first: Lava (W, H, C)
    assert netx_input(net2, np.zeros((2, 3, 72))).shape == (2, 3, 6, 6, 2)
