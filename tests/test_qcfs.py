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

