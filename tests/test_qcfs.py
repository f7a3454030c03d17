"""Threshold balancing takes a QCFS activation's trained lambda (the Keras
frontend's ``meta["act_scale_hint"]``) as its activation scale."""
from __future__ import annotations

import numpy as np
import pytest

import neurocomp


def _model(lam1: float, lam2: float):
    """An untrained conv net whose QCFS clips sit far above (lam1) and inside (lam2) its activations."""
    from neurocomp.frontends.keras import import_keras
    from neurocomp.training import QCFS

    keras = import_keras()
    L = keras.layers
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, name="c1"),
                             QCFS(levels=4, threshold=lam1, name="q1"), L.AveragePooling2D(2),
                             L.Flatten(), L.Dense(12, name="d1"), QCFS(levels=4, threshold=lam2, name="q2"),
                             L.Dense(3, name="logits")], name="qcfs_hint")


@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("mode", ["rate-soft", "few-spike"])
def test_balancing_uses_the_qcfs_hint(channelwise, mode):
    calib = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype(np.float32)
    m = _model(50.0, 0.05)
    c = neurocomp.compile(m, calib=calib, mode=mode, channelwise=channelwise)
    g = c.graph
    for node, lam in (("q1", 50.0), ("q2", 0.05)):
        meta = g.nodes[node]["meta"]
        assert meta["act_scale_hint"] == pytest.approx(lam, rel=1e-4)
        s = np.asarray(meta["act_scale"])
        assert s.shape == ((4,) if node == "q1" else (12,)) if channelwise else s.shape == ()
        np.testing.assert_allclose(s, lam, rtol=1e-4)       # not the calibration statistic
    assert set(c.notes["balance_thresholds"]["from_hint"]) == {"c1", "d1"}
    # the calibration activations of q1 stay far below lambda: without the hint the scale would be theirs
    from neurocomp.ir import run_float
    acts = run_float(g, calib, keep=["q1"])["q1"]
    assert acts.max() < 10.0
    # layers without a hint (the pool, the output) keep calibration scales
    out_scale = np.asarray(g.nodes["logits"]["meta"]["act_scale"])
    assert out_scale.size == 1 and float(out_scale) != pytest.approx(50.0)



def _rate_soft_accuracy(model, xtr, xte, yte, offsets):
    """rate-soft SNN accuracy at T = L + each offset (event simulator, one run)."""
    from neurocomp.readout import scores
    c = neurocomp.compile(model, calib=xtr[:200], mode="rate-soft")
    L = c.latency_steps
    out = c.simulate(xte, L + max(offsets))
    return c, [float((scores(c.net, out.result, L + k).argmax(1) == yte).mean()) for k in offsets]


def test_qcfs_finetune_replaces_each_relu_and_starts_from_the_trained_network(zoo):
    """Before any fine-tuning step the twin is the plain network with its ReLUs clipped at the
    99.9th percentile and quantised to the top level count: same weights, same decisions."""
    from keras_zoo import load_digits_data
    from neurocomp.training import QCFS, qcfs_finetune

    m, _ = zoo("cnn_bn_relu")
    xtr, ytr, xte, _ = load_digits_data()
    twin = qcfs_finetune(m, xtr, ytr, levels=(6, 24), epochs=0)
    kinds = {l.name: type(l).__name__ for l in twin.layers}
    assert kinds["relu1"] == "QCFS" and kinds["relu6"] == "ReLU"    # a capped ReLU is not plain
    q = twin.get_layer("relu1")
    assert isinstance(q, QCFS) and q.levels == 24
    probe = m.get_layer("relu1").output
    import keras
    acts = keras.Model(m.inputs, probe).predict(xtr[:2000], verbose=0)
    assert q.threshold_value() == pytest.approx(float(np.percentile(acts, 99.9)), rel=1e-4)
    for layer in m.layers:
        if layer.weights and layer.name != "relu1":
            for a, b in zip(layer.get_weights(), twin.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    agree = (m.predict(xte, verbose=0).argmax(1) == twin.predict(xte, verbose=0).argmax(1)).mean()
    assert agree >= 0.95


def test_qcfs_twin_converts_at_low_latency(zoo, tmp_path):
    """The digits ResNet's QCFS twin (3 epochs) keeps the plain network's accuracy, reloads from
    a .keras file, gives each layer its trained lambda as the threshold, and as a rate-soft SNN
    is at least as accurate as the plain one in the first steps after the pipeline fills
    (mean over L+2, L+4, L+8; measured +0.4 to +1.3 pt over seeds and trainings of the plain
    model: 360 test images leave that within noise, the clear gain is on MNIST, see
    benchmarks/accuracy.py --models resnet_qcfs) and within 2 pt of its own ANN at L+8."""
    import keras
    from keras_zoo import load_digits_data
    from neurocomp.training import QCFS, qcfs_finetune

    m, _ = zoo("resnet_bn")
    xtr, ytr, xte, yte = load_digits_data()
    twin = qcfs_finetune(m, xtr, ytr, epochs=3, seed=0)
    twin.save(tmp_path / "twin.keras")
    twin = keras.models.load_model(tmp_path / "twin.keras", compile=False)
    ann = {k: float((v.predict(xte, verbose=0).argmax(1) == yte).mean()) for k, v in (("plain", m), ("twin", twin))}
    assert ann["twin"] >= ann["plain"] - 0.01
    offsets = (2, 4, 8)
    _, plain_acc = _rate_soft_accuracy(m, xtr, xte, yte, offsets)
    c, twin_acc = _rate_soft_accuracy(twin, xtr, xte, yte, offsets)
    assert np.mean(twin_acc) >= np.mean(plain_acc) - 0.005, (plain_acc, twin_acc)
    assert twin_acc[-1] >= ann["twin"] - 0.02, (twin_acc, ann)
    lams = {l.name: l.threshold_value() for l in twin.layers if isinstance(l, QCFS)}
    assert set(lams) == {"stem_relu", "b1_r1", "b1_out", "b2_r1", "b2_out"}
    hinted = {n: d["meta"]["act_scale_hint"] for n, d in c.graph.nodes(data=True)
              if "act_scale_hint" in d.get("meta", {})}
    assert sorted(hinted.values()) == pytest.approx(sorted(lams.values()), rel=1e-4)


def test_qcfs_finetune_refuses_what_it_cannot_twin(zoo):
    from keras_zoo import load_digits_data
    from neurocomp.training import qcfs_finetune

    xtr, ytr, _, _ = load_digits_data()
    m, _ = zoo("mlp_digits")                     # Dense(activation="relu"): no ReLU layer
    with pytest.raises(ValueError, match="no ReLU layer"):
        qcfs_finetune(m, xtr, ytr, epochs=0)
    m, _ = zoo("cnn_bn_relu")
    with pytest.raises(ValueError, match="1 <= lo <= hi"):
        qcfs_finetune(m, xtr, ytr, levels=(8, 4), epochs=0)
