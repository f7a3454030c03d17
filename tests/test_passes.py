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


# -- fold_linear_layers ---------------------------------------------------------------

def _linear_bottleneck_graph(rng):
    """Two MobileNetV2-style blocks on hand-made weights: a linear 1x1 projection
    (with bias) summed by a linear Add that the next block's 1x1 expansion and
    its Add both read, and a separable conv (linear depthwise -> 1x1)."""
    g = ir.new_graph("bottleneck")
    conv = lambda k, ci, co, **kw: ops.Conv2D(weight=rng.normal(size=(k, k, ci, co)),  # noqa: E731
                                              bias=rng.normal(size=co), **kw)
    relu = lambda: ops.Activation(function="relu", max_value=6.0)  # noqa: E731
    ir.add_op(g, "x", ops.Input(shape=(6, 6, 2)))
    ir.add_op(g, "stem", conv(3, 2, 4, pads=((1, 1), (1, 1))), ["x"])
    ir.add_op(g, "stem_r", relu(), ["stem"])
    src = "stem_r"
    for b in ("b1", "b2"):
        ir.add_op(g, f"{b}_exp", conv(1, 4, 8), [src])
        ir.add_op(g, f"{b}_exp_r", relu(), [f"{b}_exp"])
        ir.add_op(g, f"{b}_dw", ops.DepthwiseConv2D(weight=rng.normal(size=(3, 3, 8, 1)), bias=rng.normal(size=8),
                                                    pads=((1, 1), (1, 1))), [f"{b}_exp_r"])
        ir.add_op(g, f"{b}_dw_r", relu(), [f"{b}_dw"])
        ir.add_op(g, f"{b}_proj", conv(1, 8, 4), [f"{b}_dw_r"])           # linear
        ir.add_op(g, f"{b}_add", ops.Add(), [src, f"{b}_proj"])            # linear
        src = f"{b}_add"
    ir.add_op(g, "head", conv(1, 4, 4), [src])
    ir.add_op(g, "head_r", relu(), ["head"])
    ir.add_op(g, "sep_dw", ops.DepthwiseConv2D(weight=rng.normal(size=(3, 3, 4, 2)), bias=None,
                                               strides=(2, 2)), ["head_r"])     # linear
    ir.add_op(g, "sep_pw", conv(1, 8, 5), ["sep_dw"])
    ir.add_op(g, "sep_r", ops.Activation(function="relu"), ["sep_pw"])
    ir.add_op(g, "f", ops.Flatten(), ["sep_r"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(20, 3)), bias=rng.normal(size=3)), ["f"])
    ir.add_op(g, "out", ops.Output(), ["d"])
    return g


def _hidden_linear(g):
    """Weighted or Add nodes without a ReLU reader, other than those the planner sums
    into an Add (a single Add reader) and the output layer."""
    out = []
    for n in g.nodes:
        o, succ = g.nodes[n]["op"], list(g.successors(n))
        if not isinstance(o, (ops.Dense, ops.Conv2D, ops.DepthwiseConv2D, ops.Add)):
            continue
        kinds = [g.nodes[s]["op"] for s in succ]
        if any(isinstance(k, ops.Activation) and k.function == "relu" for k in kinds):
            continue
        if len(kinds) == 1 and isinstance(kinds[0], (ops.Add, ops.Output)):
            continue
        out.append(n)
    return out


def test_fold_linear_layers_composes_pointwise_readers_and_keeps_outputs():
    rng = np.random.default_rng(5)
    g = _linear_bottleneck_graph(rng)
    x = rng.random((4, 6, 6, 2))
    assert set(_hidden_linear(g)) == {"b1_add", "b2_add", "sep_dw"}
    h = run_pass("fold_linear_layers", g, PassContext())
    assert _hidden_linear(h) == []
    np.testing.assert_allclose(ir.predict(h, x), ir.predict(g, x), rtol=1e-9, atol=1e-9)
    # the separable pair became one full conv with the depthwise geometry
    sep = h.nodes["sep_pw"]["op"]
    assert isinstance(sep, ops.Conv2D) and sep.weight.shape == (3, 3, 4, 5) and sep.groups == 1
    assert sep.strides == (2, 2) and "sep_dw" not in h
    # a read of a linear Add became an Add of pointwise layers, one per term
    assert isinstance(h.nodes["b2_exp"]["op"], ops.Add) and isinstance(h.nodes["head"]["op"], ops.Add)
    from neurocomp.lower import conversion_plan
    assert conversion_plan(h)          # the planner takes what is left


def test_fold_linear_layers_leaves_a_linear_value_read_by_a_3x3_conv():
    """A kxk reader would see the linear layer's bias at its zero-padded border, which
    no single conv computes: the graph is left as it is, and the planner names the layer."""
    from neurocomp.errors import UnsupportedLayerError
    from neurocomp.lower import conversion_plan
    rng = np.random.default_rng(6)
    g = ir.new_graph("k3")
    ir.add_op(g, "x", ops.Input(shape=(5, 5, 2)))
    ir.add_op(g, "lin", ops.Conv2D(weight=rng.normal(size=(1, 1, 2, 3)), bias=rng.normal(size=3)), ["x"])
    ir.add_op(g, "c", ops.Conv2D(weight=rng.normal(size=(3, 3, 3, 3)), bias=None, pads=((1, 1), (1, 1))), ["lin"])
    ir.add_op(g, "r", ops.Activation(function="relu"), ["c"])
    ir.add_op(g, "f", ops.Flatten(), ["r"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(75, 2)), bias=None), ["f"])
    ir.add_op(g, "out", ops.Output(), ["d"])
    h = run_pass("fold_linear_layers", g, PassContext())
    assert ir.graphs_equal(g, h)
    with pytest.raises(UnsupportedLayerError, match="'lin' has no ReLU after it"):
        conversion_plan(h)
