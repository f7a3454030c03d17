"""The IR container: construction, validation errors, JSON+NPZ round trip."""
import networkx as nx
import numpy as np
import pytest

from neurocomp import ir
from neurocomp.ir import ops
from neurocomp.ir.ops import IRError


def small_graph(rng=np.random.default_rng(0)):
    g = ir.new_graph("toy")
    ir.add_op(g, "x", ops.Input(shape=(6, 6, 2)))
    ir.add_op(g, "c", ops.Conv2D(weight=rng.normal(size=(3, 3, 2, 4)), bias=rng.normal(size=4),
                                 pads=((1, 1), (1, 1))), ["x"])
    ir.add_op(g, "r", ops.Activation(function="relu"), ["c"])
    ir.add_op(g, "p", ops.AvgPool2D(pool=(2, 2), strides=(2, 2)), ["r"])
    ir.add_op(g, "b", ops.BatchNorm(gamma=np.ones(4), beta=np.zeros(4), mean=np.zeros(4),
                                    var=np.ones(4)), ["p"])
    ir.add_op(g, "cat", ops.Concatenate(axis=2), ["b", "p"])
    ir.add_op(g, "f", ops.Flatten(), ["cat"])
    ir.add_op(g, "d", ops.Dense(weight=rng.normal(size=(72, 3)), bias=None), ["f"])
    ir.add_op(g, "out", ops.Output(), ["d"])
    return g


def test_shapes_are_inferred_and_valid():
    g = small_graph()
    ir.validate(g)
    assert g.nodes["c"]["op"].shape == (6, 6, 4)
    assert g.nodes["cat"]["op"].shape == (3, 3, 8)
    assert ir.topo_order(g)[0] == "x" and ir.output_nodes(g) == ["out"]


def test_round_trip_is_identical(tmp_path):
    g = small_graph()
    g.nodes["r"]["meta"] = {"act_scale": 1.5}
    ir.save(g, tmp_path / "m")
    h = ir.load(tmp_path / "m.json")
    assert ir.graphs_equal(g, h)
    x = np.random.default_rng(1).normal(size=(5, 6, 6, 2))
    np.testing.assert_array_equal(ir.predict(g, x), ir.predict(h, x))
    h.nodes["d"]["op"].weight[0, 0] += 1e-12
    assert not ir.graphs_equal(g, h)


def test_concatenate_order_survives_round_trip(tmp_path):
    g = small_graph()
    ir.save(g, tmp_path / "m")
    h = ir.load(tmp_path / "m")
    assert ir.inputs_of(h, "cat") == ["b", "p"]


@pytest.mark.parametrize("breakage, message", [
    (lambda g: g.add_edge("out", "x", index=0), "cycle"),
    (lambda g: g.nodes["d"]["op"].__setattr__("shape", (4,)), "records shape"),
    (lambda g: g.nodes["d"]["op"].weight.__setitem__((0, 0), np.nan), "non-finite"),
    (lambda g: g.remove_edge("p", "cat"), "needs at least 2"),
    (lambda g: g.nodes["c"]["op"].__setattr__("weight", np.zeros((3, 3, 3, 4))), "does not fit"),
    (lambda g: g.remove_node("out"), "no output"),
])
def test_validate_rejects(breakage, message):
    g = small_graph()
    breakage(g)
    with pytest.raises(IRError, match=message):
        ir.validate(g)


def test_add_op_rejects_unknown_input_and_duplicates():
    g = small_graph()
    with pytest.raises(IRError, match="unknown node"):
        ir.add_op(g, "z", ops.Flatten(), ["nope"])
    with pytest.raises(IRError, match="duplicate"):
        ir.add_op(g, "d", ops.Flatten(), ["x"])


def test_copy_graph_does_not_alias_arrays():
    g = small_graph()
    h = ir.copy_graph(g)
    h.nodes["d"]["op"].weight[:] = 0
    assert np.abs(g.nodes["d"]["op"].weight).sum() > 0


def test_run_float_keeps_requested_nodes_and_chunks():
    g = small_graph()
    x = np.random.default_rng(2).normal(size=(7, 6, 6, 2))
    full = ir.run_float(g, x, keep="all", batch_size=3)
    assert set(full) == set(g.nodes)
    assert full["r"].min() >= 0
    np.testing.assert_allclose(full["out"], ir.predict(g, x, batch_size=100))
    with pytest.raises(IRError, match="expects samples of shape"):
        ir.run_float(g, x[:, :5])


def test_same_padding_matches_tensorflow_rule():
    # 'same', stride 2, even input: TensorFlow pads the extra pixel at the end
    assert ops.same_pads(8, 3, 2, 1) == (0, 1)
    assert ops.same_pads(7, 3, 2, 1) == (1, 1)
    assert ops.same_pads(5, 3, 1, 2) == (2, 2)
