"""Fold average pooling (windowed or global) into the weighted layers that read it."""
from __future__ import annotations

import networkx as nx
import numpy as np

from neurocomp.ir import inputs_of
from neurocomp.ir import ops
from .base import PassContext, graph_pass


def _foldable(g: nx.DiGraph, name: str) -> bool:
    """A pool can be folded when its windows do not overlap and have no
    padding, and everything that reads it is a plain conv (groups 1, no
    dilation; and the windows must tile the input exactly, or the conv's
    padding would read the rows they leave out) or a flatten read only by
    dense layers (whose weights on those rows become zero)."""
    p = g.nodes[name]["op"]
    if tuple(p.pool) != tuple(p.strides) or p.pads != ((0, 0), (0, 0)):
        return False
    (src,) = inputs_of(g, name)
    h, w, _ = g.nodes[src]["op"].shape
    tiled = (h, w) == (p.shape[0] * p.pool[0], p.shape[1] * p.pool[1])
    for user in g.successors(name):
        u = g.nodes[user]["op"]
        if isinstance(u, ops.Conv2D):
            if u.groups != 1 or tuple(u.dilation) != (1, 1) or not tiled:
                return False
        elif isinstance(u, ops.Flatten):
            if not all(isinstance(g.nodes[d]["op"], ops.Dense) for d in g.successors(user)):
                return False
        else:
            return False
    return True


def _upsampled(w: np.ndarray, pool: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    """Each weight repeated over its pooling window, divided by the window size:
    the weights of the same layer applied before the (linear) average pool."""
    ph, pw = pool
    return np.repeat(np.repeat(w, ph, axis=axes[0]), pw, axis=axes[1]) / (ph * pw)


def _fold_into_conv(c: ops.Conv2D, pool: tuple[int, int]) -> None:
    """conv(avgpool(x)) as one conv on x: kernel taps spread over the pooling
    windows (kernel (k-1)*s + s per axis for stride-s pooling), strides and
    padding scaled by the pool size.  Exact where the conv's padding lands
    outside x, which holds when the pool tiles x exactly (checked by caller)."""
    w = _upsampled(c.weight, pool, (0, 1))
    (pt, pb), (pl, pr) = c.pads
    ph, pw = pool
    c.weight = w
    c.strides = (c.strides[0] * ph, c.strides[1] * pw)
    c.pads = ((pt * ph, pb * ph), (pl * pw, pr * pw))


def _fold_global(g: nx.DiGraph, name: str) -> None:
    """A global average pool read only by dense layers becomes a flatten: each
    dense weight row is spread over the pixels it averaged, divided by their count."""
    if g.nodes[name]["op"].keepdims or not all(
            isinstance(g.nodes[d]["op"], ops.Dense) for d in g.successors(name)):
        return
    (src,) = inputs_of(g, name)
    h, w, ch = g.nodes[src]["op"].shape
    for d in g.successors(name):
        dense = g.nodes[d]["op"]
        dense.weight = np.tile(dense.weight[None], (h * w, 1, 1)).reshape(h * w * ch, -1) / (h * w)
    g.nodes[name]["op"] = ops.Flatten(shape=(h * w * ch,))


@graph_pass
def fold_avgpool(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Removes non-overlapping, unpadded average pools read only by convs or flatten->dense, and global average pools read only by dense layers, folding the (linear) pool into their weights: one spiking layer less per pool. Requires: nothing."""
    for name in [n for n in g.nodes if isinstance(g.nodes[n]["op"], ops.GlobalAvgPool2D)]:
        _fold_global(g, name)
    for name in [n for n in g.nodes if isinstance(g.nodes[n]["op"], ops.AvgPool2D)]:
        if not _foldable(g, name):
            continue
        p = g.nodes[name]["op"]
        (src,) = inputs_of(g, name)
        h, w, ch = g.nodes[src]["op"].shape
        ph, pw = p.pool
        hy, wy, _ = p.shape
        for user in list(g.successors(name)):
            u = g.nodes[user]["op"]
            if isinstance(u, ops.Conv2D):
                _fold_into_conv(u, p.pool)
            else:                                              # flatten -> dense
                for d in g.successors(user):
                    dense = g.nodes[d]["op"]
                    wd = dense.weight.reshape(hy, wy, ch, -1)
                    up = np.zeros((h, w, ch, wd.shape[-1]), wd.dtype)
                    up[:hy * ph, :wy * pw] = _upsampled(wd, p.pool, (0, 1))
                    dense.weight = up.reshape(h * w * ch, -1)
                u.shape = (h * w * ch,)
            g.remove_edge(name, user)
            g.add_edge(src, user, index=0)
        g.remove_node(name)
    return g
