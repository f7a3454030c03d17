"""Passes: registry, copy semantics, fold_batchnorm."""
import numpy as np
import pytest

from neurocomp import ir
from neurocomp.ir import ops
from neurocomp.passes import PASSES, PassContext, PassError, run_pass, run_pipeline
from neurocomp.pipeline import PIPELINES, describe


def bn(c, rng):
    return ops.BatchNorm(gamma=rng.uniform(0.5, 2, c), beta=rng.normal(size=c), mean=rng.normal(size=c),
                         var=rng.uniform(0.1, 3, c), epsilon=1e-3)


def graph_with_batchnorms(rng):
    g = ir.new_graph("bn")
    ir.add_op(g, "x", ops.Input(shape=(7, 7, 3)))
    ir.add_op(g, "c", ops.Conv2D(weight=rng.normal(size=(3, 3, 3, 4)), bias=None, strides=(2, 2)), ["x"])
    ir.add_op(g, "bn1", bn(4, rng), ["c"])
    ir.add_op(g, "r1", ops.Activation(function="relu"), ["bn1"])
    ir.add_op(g, "dw", ops.DepthwiseConv2D(weight=rng.normal(size=(3, 3, 4, 2)), bias=rng.normal(size=8),
                                           pads=((1, 1), (1, 1))), ["r1"])
    ir.add_op(g, "bn2", bn(8, rng), ["dw"])
    ir.add_op(g, "r2", ops.Activation(function="relu"), ["bn2"])
    ir.add_op(g, "bn3", bn(8, rng), ["r2"])           # after an activation: cannot fold backwards
    ir.add_op(g, "f", ops.Flatten(), ["bn3"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(72, 5)), bias=rng.normal(size=5)), ["f"])
    ir.add_op(g, "bn4", bn(5, rng), ["d"])
    ir.add_op(g, "out", ops.Output(), ["bn4"])
    return g


def test_every_pass_has_a_one_line_summary():
    for name, info in PASSES.items():
        assert info.summary and "Requires" in info.fn.__doc__, name
    for stage in PIPELINES:
        assert all(summary for _, summary in describe(stage))


def test_fold_batchnorm_keeps_outputs_and_removes_batchnorm():
    rng = np.random.default_rng(0)
    g = graph_with_batchnorms(rng)
    x = rng.normal(size=(16, 7, 7, 3))
    ctx = PassContext()
    h = run_pass("fold_batchnorm", g, ctx)
    kinds = [h.nodes[n]["op"].kind for n in h.nodes]
    assert "batchnorm" not in kinds
    assert kinds.count("scale") == 1                 # bn3 became an affine op
    assert "bn1" not in h and "bn2" not in h and "bn4" not in h
    np.testing.assert_allclose(ir.predict(h, x), ir.predict(g, x), atol=1e-4)
    assert h.nodes["c"]["op"].bias is not None       # folding created the bias
    assert ctx.timings and ctx.timings[0][0] == "fold_batchnorm"


def test_passes_do_not_mutate_their_input():
    rng = np.random.default_rng(1)
    g = graph_with_batchnorms(rng)
    before = ir.copy_graph(g)
    run_pipeline(g, PIPELINES["canonicalize"], PassContext())
    assert ir.graphs_equal(g, before)


def test_batchnorm_feeding_two_consumers_is_not_folded_into_a_shared_conv():
    rng = np.random.default_rng(2)
    g = ir.new_graph()
    ir.add_op(g, "x", ops.Input(shape=(4,)))
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(4, 3))), ["x"])
    ir.add_op(g, "bn", bn(3, rng), ["d"])
    ir.add_op(g, "add", ops.Add(), ["bn", "d"])      # d also used un-normalised
    ir.add_op(g, "out", ops.Output(), ["add"])
    h = run_pass("fold_batchnorm", g, PassContext())
    x = rng.normal(size=(8, 4))
    np.testing.assert_allclose(ir.predict(h, x), ir.predict(g, x), atol=1e-9)
    assert h.nodes["bn"]["op"].kind == "scale"


def test_unknown_pass_names_the_known_ones():
    with pytest.raises(PassError, match="fold_batchnorm"):
        run_pass("fold_everything", ir.new_graph(), PassContext())
