"""Input encodings, read-outs, early exit and the QCFS training helpers
(issue #7, parts 2, 3 and 5) on small sklearn-digits models."""
import json

import numpy as np
import pytest

import neurocomp
from neurocomp import ir
from neurocomp.backends.base import SimResult
from neurocomp.encoding import ENCODINGS, EncodingError, encode, spike_rate, uniform
from neurocomp.lowered import LoweredNet
from neurocomp.readout import EarlyExit, ReadoutError, decide, first_spike_times
from keras_zoo import load_digits_data


@pytest.fixture(scope="module")
def calib():
    return load_digits_data()[0][:300]


@pytest.fixture(scope="module")
def mlp(zoo_cache):
    from keras_zoo import labels_for, load_or_build
    model, x = load_or_build("mlp_digits", zoo_cache)
    return model, x, labels_for("mlp_digits")


@pytest.fixture(scope="module")
def signed_mlp(zoo_cache, calib):
    """A network whose input can be negative (Rescaling with an offset)."""
    from keras_zoo import labels_for, load_or_build
    model, x = load_or_build("mlp_rescale_bn_dropout", zoo_cache)
    return model, x, labels_for("mlp_rescale_bn_dropout")


@pytest.fixture(scope="module")
def compiled(mlp, calib):
    """rate-soft nets of mlp_digits, one per (encoding, read-out) asked for."""
    cache = {}

    def get(encoding="constant", readout="membrane", mode="rate-soft"):
        key = (encoding, readout, mode)
        if key not in cache:
            cache[key] = neurocomp.compile(mlp[0], calib=calib, mode=mode, encoding=encoding, readout=readout)
        return cache[key]
    return get


def ann_accuracy(c, x, y):
    return float((ir.predict(c.graph, x).argmax(1) == y).mean())


# -- encodings: determinism and statistics ------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encoding_is_reproducible_and_bounded(compiled, mlp, encoding):
    c = compiled(encoding)
    x = mlp[1][:6]
    net, pmax = c.net, c.net.populations[c.net.input].neuron.payload_max
    a = encode(net, x, 40, seed=7)
    np.testing.assert_array_equal(a, encode(net, x, 40, seed=7))
    assert a.dtype == np.int32 and a.shape == (6, 40, 64)
    assert np.abs(a).max() <= pmax
    # a sample's raster depends on neither its batch nor the run length
    np.testing.assert_array_equal(encode(net, x[2:5], 40, seed=7, sample_offset=2), a[2:5])
    np.testing.assert_array_equal(encode(net, x, 25, seed=7), a[:, :25])
    if encoding in ("poisson", "signed-poisson"):
        assert not np.array_equal(a, encode(net, x, 40, seed=8))
        assert set(np.unique(a)) <= {0, pmax}
    else:
        np.testing.assert_array_equal(a, encode(net, x, 40, seed=8))     # deterministic: seed unused
    assert encode(net, x, 40, seed=7).sum() > 0


def test_uniforms_are_uniform_and_independent():
    u = uniform(3, 0, 50, 40, 64)
    assert 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert abs(np.corrcoef(u[:, 1:].ravel(), u[:, :-1].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(u[1:].ravel(), u[:-1].ravel())[0, 1]) < 0.01


def test_rates_carry_the_input(compiled, mlp, signed_mlp, calib):
    x = mlp[1][:8]
    steps = 2000
    pmax = compiled("constant").net.populations[compiled("constant").net.input].neuron.payload_max
    assert pmax == 255                                            # 8 input bits: phase periods of 8
    want = encode(compiled("constant").net, x, 1)[:, 0] / pmax            # r per input neuron
    for enc in ("poisson", "signed-poisson"):
        c = compiled(enc)
        r = spike_rate(encode(c.net, x, steps, seed=1), 255)
        sd = np.sqrt(want * (1 - want) / steps) + 1e-9
        assert np.all(np.abs(r - want) <= 5 * sd + 1 / 255), enc
    # integrate-and-fire: the count after t steps is round(t * p / pmax), never more than 1 off
    c = compiled("if")
    ras = encode(c.net, x, 100)
    p = encode(compiled("constant").net, x, 1)[:, 0]
    count = (ras != 0).sum(axis=1)
    assert np.all(np.abs(count - 100 * p / 255) <= 0.5 + 1e-9)
    # phase: each period of k = 8 steps delivers the payload exactly (binary expansion, MSB first)
    ras = encode(compiled("phase").net, x, 16)
    np.testing.assert_array_equal(ras[:, :8].sum(axis=1), p)
    np.testing.assert_array_equal(ras[:, 8:].sum(axis=1), p)
    assert set(np.unique(ras[:, 0])) <= {0, 128}
    # burst: silent at 0, rate increasing with the input
    r = spike_rate(encode(compiled("burst").net, x, 400), 255)
    assert np.all(r[want == 0] == 0)
    order = np.argsort(want.ravel())
    assert np.corrcoef(want.ravel(), r.ravel())[0, 1] > 0.95 and r.ravel()[order[-1]] > 0.3
    # signed inputs: signed-poisson carries the sign, poisson and burst are refused
    cs = neurocomp.compile(signed_mlp[0], calib=calib * 16.0, mode="rate-soft", encoding="signed-poisson")
    neuron = cs.net.populations[cs.net.input].neuron
    assert neuron.signed
    xs = signed_mlp[1][:4]
    ws = encode(cs.net, xs, 1, encoding="constant")[:, 0] / neuron.payload_max
    rs = spike_rate(encode(cs.net, xs, 3000, seed=2), neuron.payload_max)
    assert (ws < 0).any() and np.all(np.abs(rs - ws) <= 5 * np.sqrt(np.abs(ws) / 3000) + 1 / 255)
    for enc in ("poisson", "burst"):
        with pytest.raises(EncodingError, match="negative"):
            encode(cs.net, xs, 4, encoding=enc)


@pytest.mark.parametrize("encoding,steps,tolerance", [
    ("constant", 32, 0.02), ("poisson", 64, 0.03), ("signed-poisson", 64, 0.03), ("if", 32, 0.02),
    # burst drives the first layer with ~0.37 spikes per step at most, phase with 1/8 of the input
    ("burst", 64, 0.03), ("phase", 128, 0.04)])
def test_encoding_accuracy(compiled, mlp, encoding, steps, tolerance):
    _, x, y = mlp
    c = compiled(encoding)
    ann = ann_accuracy(c, x, y)
    out = c.simulate(x, c.latency_steps + steps, seed=0)
    assert out.encoding == encoding
    assert out.accuracy(y) >= ann - tolerance, (encoding, out.accuracy(y), ann)


def test_encoding_choices_are_checked_and_remembered(compiled, mlp, calib, tmp_path):
    model, x, _ = mlp
    with pytest.raises(EncodingError, match="sigma-delta"):
        neurocomp.compile(model, calib=calib, mode="sigma-delta", encoding="poisson")
    with pytest.raises(ReadoutError, match="sigma-delta"):
        neurocomp.compile(model, calib=calib, mode="sigma-delta", readout="first-spike")
    c = compiled("poisson")
    with pytest.raises(EncodingError, match="delta"):
        encode(c.net, x[:2], 4, encoding="delta")
    with pytest.raises(EncodingError, match="unknown"):
        encode(c.net, x[:2], 4, encoding="rank-order")
    c.net.save(tmp_path / "net")
    net = LoweredNet.load(tmp_path / "net")
    assert net.populations[net.input].neuron.encoding == "poisson"
    np.testing.assert_array_equal(encode(net, x[:3], 10, seed=4), encode(c.net, x[:3], 10, seed=4))
    # simulate-time override, and sigma-delta keeps its delta code
    assert c.simulate(x[:4], 10, encoding="constant").encoding == "constant"
    sd = compiled(mode="sigma-delta")
    assert encode(sd.net, x[:2], 5)[:, 1:].sum() == 0
    with pytest.raises(EncodingError, match="sigma-delta"):
        sd.simulate(x[:2], 5, encoding="if")


# -- read-outs -----------------------------------------------------------------------------

def test_spike_time_readouts(compiled, mlp):
    _, x, y = mlp
    c = compiled(readout="k-spikes")
    T = c.latency_steps + 64
    ann = ann_accuracy(c, x, y)
    out = c.simulate(x, T)                                       # k = readout_k = 3
    assert out.accuracy(y) >= ann - 0.03
    assert out.mean_steps < T / 3
    times = first_spike_times(c.net, out.result, 3)
    reached = times > 0
    # the decision step is the first arrival, and the winner is among the first to arrive
    first = np.where(reached.any(1), np.where(reached, times, T + 1).min(1), T)
    np.testing.assert_array_equal(out.decision_steps, first)
    rows = np.flatnonzero(reached.any(1))
    assert np.all(times[rows, out.predictions[rows]] == first[rows])
    one = c.simulate(x, T, readout="first-spike", ties="all")
    assert one.mean_steps <= out.mean_steps
    assert np.all(one.winners[np.arange(len(x)), one.predictions])
    assert (one.winners.sum(1) > 1).any()                        # first spikes often tie
    t1 = first_spike_times(c.net, one.result, 1)
    for i in np.flatnonzero(one.winners.sum(1) > 1):
        np.testing.assert_array_equal(one.winners[i], t1[i] == one.decision_steps[i])
    count = c.simulate(x, T, readout="count")
    assert count.accuracy(y) >= ann - 0.03 and np.all(count.decision_steps == T)
    with pytest.raises(ReadoutError, match="membrane"):
        decide(c.net, out.result, readout="membrane")
    with pytest.raises(ReadoutError, match="first arrival"):
        decide(c.net, out.result, early_exit=EarlyExit())


def test_ties_on_a_handmade_run(compiled):
    """Two output neurons reach k spikes at the same step: 'first' breaks the tie
    by membrane potential, 'all' returns both."""
    net = compiled(readout="first-spike").net
    n = net.populations[net.output].size
    T, vth64 = 10, net.populations[net.output].neuron.vth << 6
    s = np.zeros((1, T, n), np.int32)
    v = np.zeros((1, T, n), np.int32)
    s[0, 4, [2, 7]] = 1
    s[0, 6, 5] = 1
    v[0, 4, 2], v[0, 4, 7] = vth64 // 10, vth64 // 3
    v[0, -1, 7] = vth64 // 4
    res = SimResult(spikes={net.output: s}, states={net.output: {"v": v}})
    d = decide(net, res)
    assert d.predictions[0] == 7 and d.steps[0] == 5
    d = decide(net, res, ties="all")
    assert d.winners[0].tolist() == [i in (2, 7) for i in range(n)]
    d = decide(net, res, readout="k-spikes", k=2)                 # nobody gets 2: the counts decide at T
    assert d.steps[0] == T and d.predictions[0] == 7
    assert decide(net, res, readout="k-spikes", k=2, ties="all").winners[0].sum() == 3


def _with_options(net, **options):
    """The same network with other read-out options in its record (what compile stores)."""
    import copy
    other = copy.copy(net)
    other.meta = {**net.meta, "options": {**net.meta["options"], **options}}
    return other


@pytest.mark.parametrize("readout", ["membrane", "count"])
def test_readout_skip_leaves_the_transient_out(compiled, readout):
    """``readout_skip``: at each step T the decision reads the output's membrane (or
    counts) since the first ``skip`` of the steps since arrival, not since arrival: an
    early volley for one class no longer outvotes the later, steady evidence for another."""
    net = compiled(readout=readout).net
    n, L = net.populations[net.output].size, net.latency_steps()
    T = L + 12                                    # 13 steps since arrival: 6 left out at 0.5
    vth64 = net.populations[net.output].neuron.vth << 6
    s = np.zeros((1, T, n), np.int32)
    v = np.zeros((1, T, n), np.int64)
    early, late = L - 1 + np.arange(4), L + 5 + np.arange(T - L - 5)
    if readout == "membrane":
        inc = np.zeros((T, n))
        inc[early, 3] = 5 * vth64                  # the transient: a big early push for class 3
        inc[late, 6] = 2 * vth64                   # then class 6, steadily
        v[0] = np.cumsum(inc, axis=0)
    else:                                         # one spike a step at most
        s[0, L - 1 + np.arange(6), 3] = 1
        s[0, L + 7 + np.arange(5), 6] = 1
    res = SimResult(spikes={net.output: s}, states={net.output: {"v": v.astype(np.int32)}})
    assert decide(net, res).predictions[0] == 3
    skipped = _with_options(net, readout_skip=0.5)
    d = decide(skipped, res)
    assert d.predictions[0] == 6
    np.testing.assert_array_equal(decide(net, res, skip=0.5).scores, d.scores)   # the same, asked for
    base = L - 2 + 6                               # the last of the 6 steps left out
    series = v[0] if readout == "membrane" else np.cumsum(s[0], axis=0)
    np.testing.assert_allclose(d.scores[0] if readout == "membrane" else np.floor(d.scores[0] + 0.5),
                               series[T - 1] - series[base])
    # early-exit margins: per step of the window, in calibration units
    from neurocomp.readout import _vth64, output_values
    per_step = (_vth64(net) if readout == "membrane" else 1.0) * (T + 1 - L - 6) * net.rate_scale()
    np.testing.assert_allclose(output_values(skipped, res)[0], (series[T - 1] - series[base]) / per_step)
    # before arrival, and while fewer than 2 steps have passed, nothing is left out
    np.testing.assert_array_equal(decide(skipped, res, steps=L).scores, decide(net, res, steps=L).scores)


@pytest.mark.parametrize("readout", ["membrane", "count"])
def test_readouts_count_from_the_outputs_input(compiled, readout):
    """What the output integrated before its input arrived (a constant bias alone: Lava's
    plain LIF cannot delay it) is no part of the decision: a class whose bias filled the
    membrane (or fired) during the pipeline's fill loses to the class the input drives."""
    net = compiled(readout=readout).net
    n, L = net.populations[net.output].size, net.latency_steps()
    T = L + 6
    vth64 = net.populations[net.output].neuron.vth << 6
    s = np.zeros((1, T, n), np.int32)
    v = np.zeros((1, T, n), np.int64)
    if readout == "membrane":
        inc = np.zeros((T, n))
        inc[:L - 1, 2] = 3 * vth64               # bias only, before arrival (steps 1 .. L-1)
        inc[L - 1:, 5] = 1 * vth64               # the input's evidence, from arrival (step L)
        v[0] = np.cumsum(inc, axis=0)
    else:
        s[0, :L - 1, 2] = 1
        s[0, L - 1 + np.arange(0, T - L + 1, 2), 5] = 1
    res = SimResult(spikes={net.output: s}, states={net.output: {"v": v.astype(np.int32)}})
    d = decide(net, res)
    assert d.predictions[0] == 5
    series = v[0] if readout == "membrane" else np.cumsum(s[0], axis=0)
    np.testing.assert_allclose(d.scores[0] if readout == "membrane" else np.floor(d.scores[0] + 0.5),
                               series[T - 1] - series[L - 2])
    # before arrival the read-out is what the output holds (its biases: the prior)
    assert decide(net, res, steps=L - 1).predictions[0] == 2


def test_readout_skip_is_refused_where_it_does_not_apply(mlp, calib):
    with pytest.raises(ReadoutError, match="readout-skip"):
        neurocomp.compile(mlp[0], calib=calib, mode="sigma-delta", readout_skip=0.5)
    with pytest.raises(ReadoutError, match="readout-skip"):
        neurocomp.compile(mlp[0], calib=calib, mode="rate", readout="first-spike", readout_skip=0.5)


@pytest.mark.parametrize("readout,mode", [("membrane", "rate-soft"), ("count", "rate-soft"),
                                          ("membrane", "sigma-delta")])
def test_early_exit(compiled, mlp, readout, mode):
    _, x, y = mlp
    c = compiled(readout=readout, mode=mode)
    T = c.latency_steps + 64
    full = c.simulate(x, T)
    early = c.simulate(x, T, early_exit=EarlyExit(margin=0.1, patience=3))
    assert early.mean_steps < T / 2, early.mean_steps
    assert early.accuracy(y) >= full.accuracy(y) - 0.02
    assert np.all(early.decision_steps >= c.latency_steps + 2)    # min_steps + patience - 1
    # the decision at the exit step is the read-out of the first decision_steps steps
    for i in range(5):
        t = int(early.decision_steps[i])
        assert decide(c.net, full.result, steps=t).predictions[i] == early.predictions[i]
    never = c.simulate(x[:20], T, early_exit=1e9)
    assert np.all(never.decision_steps == T)
    np.testing.assert_array_equal(never.predictions, full.predictions[:20])


# -- backends agree on stochastic input --------------------------------------------------------

@pytest.mark.xdist_group("lava")
def test_poisson_input_bit_exact_on_event_and_lava(compiled, mlp):
    from backend_agreement import assert_identical, run_event_and_lava

    c = compiled("poisson", readout="first-spike")
    raster = encode(c.net, mlp[1][:3], c.latency_steps + 8, seed=11)
    ev, lv = run_event_and_lava(c.net, raster)
    assert_identical(ev, lv)
    assert np.count_nonzero(ev.spikes[c.net.output]) > 0
    a, b = decide(c.net, ev), decide(c.net, lv)
    np.testing.assert_array_equal(a.predictions, b.predictions)
    np.testing.assert_array_equal(a.steps, b.steps)


# -- CLI ---------------------------------------------------------------------------------------

def test_cli_encoding_seed_readout_and_early_exit(mlp, calib, tmp_path, capsys):
    from neurocomp.cli import main

    model, x, y = mlp
    model.save(tmp_path / "m.keras")
    np.savez(tmp_path / "calib.npz", x=calib)
    np.savez(tmp_path / "test.npz", x=x[:60], y=y[:60])
    assert main(["-q", "compile", str(tmp_path / "m.keras"), "-o", str(tmp_path / "b"), "--calib",
                 str(tmp_path / "calib.npz"), "--mode", "rate-soft", "--encoding", "poisson",
                 "--readout", "k-spikes", "--readout-k", "2", "--no-threshold-search"]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["options"]["encoding"] == "poisson" and summary["options"]["readout"] == "k-spikes"
    assert summary["options"]["threshold_search"] is False
    # no labels in the calibration file: the result line gives the agreement with the float ANN
    wrote = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("wrote ")]
    agree = summary["agreement"]
    assert len(wrote) == 1 and f"agrees with the float ANN on {agree['snn']:.1%} of calibration samples at " \
        f"{agree['steps']} steps" in wrote[0], wrote
    capsys.readouterr()
    runs = []
    for seed in (1, 1, 2):
        assert main(["simulate", str(tmp_path / "b"), "--data", str(tmp_path / "test.npz"), "--json",
                     "--seed", str(seed)]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["predictions"] == runs[1]["predictions"]
    assert runs[0]["mean_steps"] < runs[0]["steps"]
    assert main(["simulate", str(tmp_path / "b"), "--data", str(tmp_path / "test.npz"), "--json",
                 "--encoding", "constant", "--steps", "40"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8
    assert main(["-q", "compile", str(tmp_path / "m.keras"), "-o", str(tmp_path / "c"), "--calib",
                 str(tmp_path / "calib.npz"), "--mode", "sigma-delta", "--encoding", "burst"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "sigma-delta" in err and len(err.splitlines()) == 1


# -- training helpers ------------------------------------------------------------------------------

def _qcfs_cnn(levels):
    from neurocomp.frontends.keras import import_keras
    from neurocomp.training import QCFS, RateRegularizer

    keras = import_keras()
    L = keras.layers
    keras.utils.set_random_seed(1)
    act = lambda name: QCFS(levels=levels, threshold=2.0, name=name,  # noqa: E731
                            activity_regularizer=RateRegularizer(ceiling=2.0))
    m = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(8, 3, name="c1"), act("q1"),
                          L.AveragePooling2D(2), L.Flatten(), L.Dense(32, name="d1"), act("q2"),
                          L.Dense(10, name="logits")], name="qcfs_cnn")
    m.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    xtr, ytr, _, _ = load_digits_data()
    m.fit(xtr, ytr, epochs=15, batch_size=64, verbose=0)
    return m


def test_qcfs_layer_math_and_serialisation(tmp_path):
    from neurocomp.frontends.keras import import_keras, load_keras
    from neurocomp.training import QCFS, RateRegularizer

    keras = import_keras()
    q = QCFS(levels=4, threshold=2.0)
    x = np.linspace(-1, 3, 41, dtype=np.float32)[:, None]
    y = keras.ops.convert_to_numpy(q(x))
    np.testing.assert_allclose(y, 2.0 * np.clip(np.floor(x * 4 / 2.0 + 0.5) / 4, 0, 1), atol=1e-6)
    import tensorflow as tf
    xv = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        out = tf.reduce_sum(q(xv))
    g = tape.gradient(out, xv).numpy().ravel()
    level = np.floor(x.ravel() * 2 + 0.5)
    inside = (level >= 0) & (level <= 4)          # straight through wherever the clip passes (bounds included)
    assert np.all(g[inside] == pytest.approx(1.0)) and np.all(g[~inside] == 0)
    reg = RateRegularizer(ceiling=1.0, floor=0.5, strength=2.0)
    assert float(reg(np.array([[3.0, 0.0]], np.float32))) == pytest.approx(2.0 * (4.0 / 2 + 0.25 / 2))
    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"),
                          QCFS(levels=3, threshold=1.5, name="q", activity_regularizer=reg),
                          keras.layers.Dense(2, name="o")])
    m.save(tmp_path / "q.keras")
    back = keras.saving.load_model(tmp_path / "q.keras")
    assert back.get_layer("q").levels == 3 and back.get_layer("q").activity_regularizer.floor == 0.5
    g = load_keras(tmp_path / "q.keras")
    assert g.nodes["q"]["meta"] == {"act_scale_hint": pytest.approx(1.5), "qcfs_levels": 3}
    assert g.nodes["q"]["op"].max_value == pytest.approx(1.5)
    xs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    (w1, b1), (w2, b2) = m.get_layer("d").get_weights(), m.get_layer("o").get_weights()
    clipped = np.clip(xs @ w1 + b1, 0, 1.5) @ w2 + b2            # the IR keeps the clip, not the levels
    np.testing.assert_allclose(ir.predict(g, xs), clipped, atol=1e-5)


def test_qcfs_trained_cnn_converts_at_its_levels(tmp_path, calib):
    """QCFS with L levels is what a rate-soft neuron computes in L steps: the
    converted network reaches the QCFS network's accuracy about L steps after
    the pipeline fills (each layer waits for the one before)."""
    levels = 4
    m = _qcfs_cnn(levels)
    _, _, xte, yte = load_digits_data()
    ann = float((m.predict(xte, verbose=0).argmax(1) == yte).mean())
    m.save(tmp_path / "qcfs.keras")
    c = neurocomp.compile(tmp_path / "qcfs.keras", calib=calib, mode="rate-soft")
    for node in ("q1", "q2"):                                     # thresholds sit at lambda
        meta = c.graph.nodes[node]["meta"]
        assert np.max(meta["act_scale"]) == pytest.approx(meta["act_scale_hint"], rel=0.02)
    snn = c.simulate(xte, c.latency_steps + 2 * levels).accuracy(yte)
    assert ann > 0.9 and snn >= ann - 0.01, (snn, ann)
