"""Fold hidden linear layers into the pointwise layers that read them.

A spiking population can only carry a ReLU'd (non-negative) value, so a
weighted layer without an activation can become part of a network only where
the planner sums it into an ``Add``'s population.  Two common architectures
have linear values elsewhere, and both are read by pointwise layers only:

* ``SeparableConv2D`` is a depthwise conv whose (linear) output a 1x1 conv
  reads; the frontend emits both.
* MobileNetV2's *linear bottleneck*: each block's 1x1 projection (plus
  BatchNorm) has no activation, and neither has the residual ``Add`` after
  it, which the next block's 1x1 expansion and the next ``Add`` both read.

A 1x1, stride-1, unpadded conv (or a dense layer) ``P`` composes exactly with
any linear layer ``L`` before it: ``P(L(x)) = (P o L)(x)`` is one layer with
``L``'s geometry and kernel ``L_kernel @ P_kernel`` over the channels, bias
``L_bias @ P + P_bias``; and ``P(a + b) = P_nobias(a) + P(b)`` turns a read
of a linear ``Add`` into an ``Add`` of pointwise layers.  Padding is no
obstacle because ``P`` has none (a kxk consumer would read ``L``'s bias at
its zero-padded border, which no single conv expresses).  The composed
layers hold more synapses than the pair (a separable conv becomes a full
conv), which is the price of having no linear neurons.
"""
from __future__ import annotations

import networkx as nx
import numpy as np

from neurocomp.ir import inputs_of, ops, replace_input, topo_order
from .base import PassContext, graph_pass

_WEIGHTED = (ops.Dense, ops.Conv2D, ops.DepthwiseConv2D)


def _rectified(g: nx.DiGraph, n: str) -> bool:
    """Whether a ReLU reads ``n`` (then ``n``'s value is spiked after it)."""
    return any(isinstance(g.nodes[s]["op"], ops.Activation) and g.nodes[s]["op"].function == "relu"
               for s in g.successors(n))


def _pointwise(o: ops.Op, src_rank: int) -> bool:
    if isinstance(o, ops.Dense):
        return src_rank == 1
    return (isinstance(o, ops.Conv2D) and o.weight.shape[:2] == (1, 1) and o.groups == 1
            and tuple(o.strides) == (1, 1) and o.pads == ((0, 0), (0, 0)))


def _foldable(g: nx.DiGraph, n: str) -> bool:
    """A hidden linear value read only by pointwise layers and ``Add``s, and not
    already in the form the planner takes (one weighted layer feeding one ``Add``)."""
    o = g.nodes[n]["op"]
    succ = list(g.successors(n))
    if not isinstance(o, _WEIGHTED + (ops.Add,)) or not succ or _rectified(g, n):
        return False
    if len(succ) == 1 and isinstance(g.nodes[succ[0]]["op"], ops.Add):
        return False
    rank = len(o.shape)
    return all(_pointwise(g.nodes[s]["op"], rank) or isinstance(g.nodes[s]["op"], ops.Add) for s in succ)


def _fresh(g: nx.DiGraph, base: str) -> str:
    cand, k = base, 0
    while cand in g:
        k += 1
        cand = f"{base}_{k}"
    return cand


def _kernel_matrix(p: ops.Op) -> np.ndarray:
    """A pointwise layer's (in, out) matrix."""
    return p.weight if isinstance(p, ops.Dense) else p.weight[0, 0]


def _composed(lin: ops.Op, p: ops.Op) -> ops.Op:
    """The single layer computing ``p(lin(x))`` (``p`` pointwise)."""
    m = _kernel_matrix(p)
    bias = None
    if lin.bias is not None:
        bias = lin.bias @ m
    if p.bias is not None:
        bias = p.bias if bias is None else bias + p.bias
    if isinstance(lin, ops.Dense):
        return ops.Dense(weight=lin.weight @ m, bias=bias)
    from neurocomp.lower import ungroup
    conv = lin.as_grouped_conv() if isinstance(lin, ops.DepthwiseConv2D) else lin
    k = ungroup(conv.weight, conv.groups)
    return ops.Conv2D(weight=np.einsum("abcm,mo->abco", k, m), bias=bias, strides=tuple(conv.strides),
                      pads=conv.pads, dilation=tuple(conv.dilation), groups=1)


def _set_op(g: nx.DiGraph, n: str, o: ops.Op, inputs: list[str]) -> None:
    """Give node ``n`` a new op and inputs, keeping its consumers and meta."""
    for src in inputs_of(g, n):
        g.remove_edge(src, n)
    for i, src in enumerate(inputs):
        g.add_edge(src, n, index=i)
    o.shape = tuple(int(d) for d in o.infer_shape([g.nodes[s]["op"].shape for s in inputs]))
    g.nodes[n]["op"] = o


def _add_node(g: nx.DiGraph, name: str, o: ops.Op, inputs: list[str]) -> str:
    g.add_node(name, op=o, meta={})
    _set_op(g, name, o, inputs)
    return name


def _fold(g: nx.DiGraph, n: str) -> None:
    o = g.nodes[n]["op"]
    srcs = inputs_of(g, n)
    for s in list(g.successors(n)):
        so = g.nodes[s]["op"]
        if isinstance(so, ops.Add):
            # a private copy of n for this Add; the next round folds or fuses it
            replace_input(g, s, n, _add_node(g, _fresh(g, f"{n}_to_{s}"), _copy_op(o), srcs))
        elif isinstance(o, ops.Add):
            # p(a + b + ...) = p(a) + p_nobias(b) + ...: s becomes the Add
            terms = []
            for i, src in enumerate(srcs):
                po = _copy_op(so)
                if i:
                    po.bias = None
                terms.append(_add_node(g, _fresh(g, f"{s}_from_{src}"), po, [src]))
            _set_op(g, s, ops.Add(), terms)
        else:
            _set_op(g, s, _composed(o, so), srcs)
    g.remove_node(n)


def _copy_op(o: ops.Op) -> ops.Op:
    import copy
    return copy.deepcopy(o)


@graph_pass
def fold_linear_layers(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Removes every hidden linear layer (dense/conv/depthwise or add without relu) read only by 1x1 stride-1 unpadded convs, dense layers and adds: composed into each pointwise reader, copied for each add. Requires: fold_batchnorm (a batchnorm between would block it)."""
    changed = True
    while changed:
        changed = False
        for n in topo_order(g):
            if n in g and _foldable(g, n):
                _fold(g, n)
                changed = True
    return g
