"""Fold inference BatchNorm into the weighted op before it."""
from __future__ import annotations

import networkx as nx
import numpy as np

from neurocomp.ir import bypass, inputs_of
from neurocomp.ir import ops
from .base import PassContext, graph_pass


def _fold_into(w_op: ops.Op, scale: np.ndarray, offset: np.ndarray) -> None:
    """``bn(w·x + b) = (w·scale)·x + (b·scale + offset)`` per output channel."""
    w = w_op.weight
    w_op.weight = w * scale.reshape((1,) * (w.ndim - 1) + (-1,)) if not isinstance(
        w_op, ops.DepthwiseConv2D) else w * scale.reshape(1, 1, w.shape[2], w.shape[3])
    bias = w_op.bias if w_op.bias is not None else np.zeros_like(offset)
    w_op.bias = bias * scale + offset


@graph_pass
def fold_batchnorm(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Removes every batchnorm: folded into a preceding dense/conv/depthwise op that feeds only it, else turned into a scale op. Requires: nothing."""
    for name in [n for n in g.nodes if isinstance(g.nodes[n]["op"], ops.BatchNorm)]:
        bn = g.nodes[name]["op"]
        scale, offset = bn.scale_offset()
        (src,) = inputs_of(g, name)
        prev = g.nodes[src]["op"]
        if isinstance(prev, (ops.Dense, ops.Conv2D, ops.DepthwiseConv2D)) and g.out_degree(src) == 1:
            _fold_into(prev, scale, offset)
            bypass(g, name)
        else:
            g.nodes[name]["op"] = ops.Scale(shape=bn.shape, scale=scale, offset=offset)
    return g
