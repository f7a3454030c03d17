"""fold_avgpool: average pools folded into the conv / dense layers that read them."""
import numpy as np
import pytest

from neurocomp import ir
from neurocomp.ir import ops
from neurocomp.options import ConvertOptions
from neurocomp.passes import PassContext, run_pass
from neurocomp.pipeline import passes_for


def lenet_graph(rng, hw=(12, 12), pool=(2, 2)):
    g = ir.new_graph("lenet")
    ir.add_op(g, "x", ops.Input(shape=(*hw, 2)))
    ir.add_op(g, "c1", ops.Conv2D(weight=rng.normal(size=(3, 3, 2, 4)), bias=rng.normal(size=4)), ["x"])
    ir.add_op(g, "r1", ops.Activation(function="relu"), ["c1"])
    ir.add_op(g, "p1", ops.AvgPool2D(pool=pool, strides=pool), ["r1"])
    ir.add_op(g, "c2", ops.Conv2D(weight=rng.normal(size=(3, 3, 4, 5)), bias=rng.normal(size=5),
                                  strides=(1, 1), pads=((1, 1), (0, 1))), ["p1"])
    ir.add_op(g, "r2", ops.Activation(function="relu"), ["c2"])
    ir.add_op(g, "p2", ops.AvgPool2D(pool=(2, 2), strides=(2, 2)), ["r2"])
    ir.add_op(g, "f", ops.Flatten(), ["p2"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(ir.op(g, "f").shape[0], 3)), bias=None), ["f"])
    ir.add_op(g, "y", ops.Output(), ["d"])
    return g


@pytest.mark.parametrize("hw", [(12, 12), (13, 11)])
def test_folding_keeps_outputs_and_removes_the_pools(hw):
    """(13, 11): the second pool leaves a row/column no window reads; its dense
    weights there are zero.  The first pool must then stay (a conv reads it)."""
    rng = np.random.default_rng(0)
    g = lenet_graph(rng, hw)
    h = run_pass("fold_avgpool", g, PassContext())
    x = rng.normal(size=(8, *hw, 2))
    np.testing.assert_allclose(ir.predict(h, x), ir.predict(g, x), rtol=1e-6, atol=1e-6)
    kinds = [ir.op(h, n).kind for n in h.nodes]
    if hw == (12, 12):
        assert "avg_pool2d" not in kinds
        c2 = ir.op(h, "c2")
        assert c2.weight.shape == (6, 6, 4, 5) and c2.strides == (2, 2) and c2.pads == ((2, 2), (0, 2))
    else:
        assert kinds.count("avg_pool2d") == 1 and "p2" not in h    # p1's input is 11 x 9: not tiled
    assert ir.op(h, "d").weight.shape[0] == int(np.prod(ir.op(h, "r2").shape))


@pytest.mark.parametrize("case", ["overlapping", "padded", "depthwise_reader", "add_reader"])
def test_pools_that_cannot_fold_are_left_alone(case):
    rng = np.random.default_rng(1)
    g = ir.new_graph()
    ir.add_op(g, "x", ops.Input(shape=(8, 8, 3)))
    ir.add_op(g, "r", ops.Activation(function="relu"), ["x"])
    if case == "overlapping":
        ir.add_op(g, "p", ops.AvgPool2D(pool=(3, 3), strides=(2, 2)), ["r"])
    elif case == "padded":
        ir.add_op(g, "p", ops.AvgPool2D(pool=(2, 2), strides=(2, 2), pads=((0, 1), (0, 1))), ["r"])
    else:
        ir.add_op(g, "p", ops.AvgPool2D(pool=(2, 2), strides=(2, 2)), ["r"])
    if case == "depthwise_reader":
        ir.add_op(g, "c", ops.DepthwiseConv2D(weight=rng.normal(size=(3, 3, 3, 1))), ["p"])
    elif case == "add_reader":
        ir.add_op(g, "c0", ops.Conv2D(weight=rng.normal(size=(1, 1, 3, 3))), ["p"])
        ir.add_op(g, "c", ops.Add(), ["p", "c0"])
    else:
        ir.add_op(g, "c", ops.Conv2D(weight=rng.normal(size=(1, 1, 3, 3))), ["p"])
    ir.add_op(g, "y", ops.Output(), ["c"])
    h = run_pass("fold_avgpool", g, PassContext())
    assert ir.graphs_equal(g, h)


def test_folding_is_the_default_for_rate_modes_only():
    assert "fold_avgpool" in passes_for(ConvertOptions(mode="rate"))
    assert "fold_avgpool" in passes_for(ConvertOptions(mode="rate-soft"))
    assert "fold_avgpool" not in passes_for(ConvertOptions(mode="sigma-delta"))
    assert "fold_avgpool" not in passes_for(ConvertOptions(mode="rate", avgpool_fold=False))
    assert "fold_avgpool" in passes_for(ConvertOptions(mode="few-spike", avgpool_fold=True))


def test_folded_lenet_converts_with_fewer_layers_and_keeps_accuracy(zoo, digits):
    """On a real digits LeNet (conv-relu-avgpool-conv-flatten-dense), rate-soft:
    one population and one step of latency less, and early accuracy (the point
    of folding) no worse."""
    import neurocomp
    from neurocomp.readout import scores
    x_tr, y_tr, x_te, y_te = digits
    model, _ = zoo("lenet")
    accs, lat = {}, {}
    for fold in (False, True):
        c = neurocomp.compile(model, calib=x_tr[:200], mode="rate-soft", avgpool_fold=fold)
        lat[fold] = L = c.latency_steps
        out = c.simulate(x_te, L + 8)
        accs[fold] = np.mean([(scores(c.net, out.result, L + k).argmax(1) == y_te).mean() for k in (4, 8)])
        assert ("pool1" in c.net.populations) != fold
    assert lat[True] == lat[False] - 1
    assert accs[True] >= accs[False] - 0.01


def test_global_average_pool_read_by_dense_becomes_a_flatten():
    rng = np.random.default_rng(3)
    g = ir.new_graph()
    ir.add_op(g, "x", ops.Input(shape=(5, 4, 3)))
    ir.add_op(g, "r", ops.Activation(function="relu"), ["x"])
    ir.add_op(g, "gap", ops.GlobalAvgPool2D(), ["r"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(3, 6)), bias=rng.normal(size=6)), ["gap"])
    ir.add_op(g, "y", ops.Output(), ["d"])
    h = run_pass("fold_avgpool", g, PassContext())
    assert ir.op(h, "gap").kind == "flatten" and ir.op(h, "d").weight.shape == (60, 6)
    x = rng.normal(size=(4, 5, 4, 3))
    np.testing.assert_allclose(ir.predict(h, x), ir.predict(g, x), rtol=1e-6, atol=1e-6)
    # keepdims, or a non-dense reader: left alone
    g2 = ir.new_graph()
    ir.add_op(g2, "x", ops.Input(shape=(5, 4, 3)))
    ir.add_op(g2, "gap", ops.GlobalAvgPool2D(keepdims=True), ["x"])
    ir.add_op(g2, "y", ops.Output(), ["gap"])
    assert ir.graphs_equal(run_pass("fold_avgpool", g2, PassContext()), g2)
