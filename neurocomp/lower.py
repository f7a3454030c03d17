"""Lowering: a canonical, calibrated float IR becomes a ``LoweredNet``.

Which float nodes become neuron populations, and which float-weighted
connections feed each, is decided once, by ``conversion_plan``; calibration
(``balance_thresholds``) and lowering both read it.  Each population
represents the *normalised* activation of one float node (activation /
``act_scale``, so that 1.0 is the neuron's threshold).

Values without a population of their own are *views* of populations
(``Part``: which population elements sit where in the value): flatten and
reshape, zero padding (folded into the pads of the consumer's connections)
and channel concatenation (each consumer reads one slice per source
population).  A weighted layer without ReLU that feeds only an ``Add`` is
fused into the ``Add``'s population: several connections summed into one
population, each normalised from its own source scale to the common
destination scale.  Branches of different depths are aligned with synaptic
delays on the shorter ones (``_align_delays``).  Max pooling is a tree of
ReLU populations, ``max(a, b) = relu(a - b) + b`` for ``b >= 0``
(``maxpool="exact"``), or an average pool (``maxpool="avg"``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import networkx as nx
import numpy as np

from neurocomp import few_spike
from neurocomp import numerics as nm
from neurocomp.errors import UnsupportedLayerError
from neurocomp.ir import copy_graph, inputs_of, run_float, topo_order
from neurocomp.ir import ops
from neurocomp.lowered import (InputNeuron, LIFNeuron, LoweredError, LoweredNet, SigmaDeltaNeuron,
                               SigmaNeuron, dense_conv_matrix)
from neurocomp.quant import (Formats, bias_to_mant_exp, choose_lif_format, layer_input_bound, own_exponents,
                             round_mantissas, round_mantissas_optq)

MODES = ("rate", "rate-soft", "sigma-delta", "few-spike")
MAX_DELAY = 62                    # Lava DelayDense / Loihi 2: 6-bit synaptic delays


@dataclass
class FloatConn:
    """One incoming connection of a population, in float (un-normalised) weights."""

    src: str                      # source population
    kind: str                     # dense | conv
    weight: np.ndarray            # dense (n_src, n_dst); conv (kh, kw, C_src/groups, C_dst), Keras layout
    geo: dict = field(default_factory=dict)     # conv: strides, pads, dilation, groups
    delay: int = 0                # synaptic delay aligning it with the population's deepest input


@dataclass
class PopPlan:
    """One population-to-be: what it computes and which float node holds its value."""

    name: str
    kind: str                       # input | weighted | avg_pool | global_pool | add | max_pool | max_tree
    value_node: str                 # float node whose activation the population carries
    op_node: Optional[str] = None   # the weighted / pooling / add node
    src: Optional[str] = None       # first source population
    shape: tuple = ()
    relu: bool = True
    is_output: bool = False
    pre_nodes: list = field(default_factory=list)   # input preprocessing (Scale) folded on the host
    inputs: list = field(default_factory=list)      # FloatConn
    bias: Optional[np.ndarray] = None               # float, per output channel (last axis)
    aux: bool = False               # a max-pool tree population: scale and value belong to value_node
    # aux: the float value it approximates, from {node: float activation} and {aux pop: value}
    float_value: Optional[Callable] = None

    @property
    def sources(self) -> list[str]:
        return [c.src for c in self.inputs]


@dataclass
class Part:
    """Elements of population ``pop`` sit at flat positions ``index`` of a value."""

    pop: str
    index: np.ndarray


_VIEW_KINDS = (ops.Flatten, ops.Reshape)
_WEIGHTED = (ops.Dense, ops.Conv2D, ops.DepthwiseConv2D)


def _whole(pop: str, shape) -> list[Part]:
    return [Part(pop, np.arange(int(np.prod(shape))))]


def ungroup(k: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel ``(kh, kw, C/g, Co)`` as the equivalent ``groups=1`` kernel (zeros elsewhere)."""
    if groups == 1:
        return k
    kh, kw, cg, co = k.shape
    og = co // groups
    full = np.zeros((kh, kw, cg * groups, co), k.dtype)
    for g in range(groups):
        full[:, :, g * cg:(g + 1) * cg, g * og:(g + 1) * og] = k[:, :, :, g * og:(g + 1) * og]
    return full


def maxpool_as_avg_conv(o: ops.MaxPool2D, channels: int) -> ops.Conv2D:
    """The ``maxpool="avg"`` stand-in: a depthwise mean whose padding counts as zeros."""
    kh, kw = o.pool
    return ops.Conv2D(shape=o.shape, weight=np.full((kh, kw, 1, channels), 1.0 / (kh * kw)),
                      bias=None, strides=tuple(o.strides), pads=tuple(o.pads), dilation=(1, 1),
                      groups=channels)


def calibration_graph(g: nx.DiGraph, maxpool: str = "exact") -> nx.DiGraph:
    """The float network the spiking one approximates: ``g`` itself, or with
    every max pool replaced by its average-pool stand-in (``maxpool="avg"``)."""
    if maxpool != "avg" or not any(isinstance(g.nodes[n]["op"], ops.MaxPool2D) for n in g):
        return g
    h = copy_graph(g)
    for n in h:
        o = h.nodes[n]["op"]
        if isinstance(o, ops.MaxPool2D):
            c = h.nodes[inputs_of(h, n)[0]]["op"].shape[-1]
            h.nodes[n]["op"] = maxpool_as_avg_conv(o, c)
    return h


def _padded_mean_matrix(o: ops.AvgPool2D, vshape, name) -> np.ndarray:
    """Keras' 'same' average pool (padding excluded from each window's count) as an
    explicit (n_in, n_out) matrix: the divisor differs at the borders, so no shared kernel."""
    h, w, c = vshape
    ho, wo, _ = o.shape
    if h * w * c * ho * wo * c > 1 << 24:
        raise UnsupportedLayerError(
            f"layer '{name}' averages over padded windows (padding='same') on a {vshape} map, which "
            "needs an explicit matrix too large here; use padding='valid' or ZeroPadding2D")
    m = np.zeros((h * w * c, ho * wo * c))
    ch = np.arange(c)
    for oy in range(ho):
        for ox in range(wo):
            ys = [y for y in range(oy * o.strides[0] - o.pads[0][0], oy * o.strides[0] - o.pads[0][0]
                                   + o.pool[0]) if 0 <= y < h]
            xs = [x for x in range(ox * o.strides[1] - o.pads[1][0], ox * o.strides[1] - o.pads[1][0]
                                   + o.pool[1]) if 0 <= x < w]
            for y in ys:
                for x in xs:
                    m[(y * w + x) * c + ch, (oy * wo + ox) * c + ch] = 1.0 / (len(ys) * len(xs))
    return m


class _Planner:
    """Builds the population plans of one float graph (see ``conversion_plan``)."""

    def __init__(self, g: nx.DiGraph, maxpool: str):
        self.g, self.maxpool = g, maxpool
        self.plans: dict[str, PopPlan] = {}
        self.carrier: dict[str, list[Part]] = {}     # float node -> where its value lives
        self.fused: dict[str, tuple[list, np.ndarray]] = {}   # linear node -> (FloatConns, bias)

    def shape(self, node):
        return tuple(self.g.nodes[node]["op"].shape)

    def parts(self, node, user) -> list[Part]:
        if node in self.fused:
            raise UnsupportedLayerError(f"layer '{node}' has no ReLU and feeds '{user}' besides an Add; "
                                        "negative activations cannot be spiked")
        if node not in self.carrier:
            raise UnsupportedLayerError(f"layer '{user}' reads '{node}', whose value no population carries")
        return self.carrier[node]

    # -- geometry of parts -----------------------------------------------------------
    def _image_geometry(self, part: Part, vshape, user) -> tuple[int, int, int, int, int]:
        """(top, bottom, left, right, channel offset) placing a population in an image value."""
        p = self.plans[part.pop]
        hv, wv, cv = vshape
        if len(p.shape) != 3:
            if p.kind == "input" and np.array_equal(part.index, np.arange(int(np.prod(vshape)))):
                p.shape = tuple(vshape)          # same flat order: the input is an image after all
            else:
                raise UnsupportedLayerError(
                    f"layer '{user}' reads population '{part.pop}' of shape {p.shape} as an image; "
                    "reshaping a flat layer's output into an image is not supported")
        hp, wp, cp = p.shape
        t, rest = divmod(int(part.index[0]), wv * cv)
        l, o = divmod(rest, cv)
        hh, ww, cc = np.meshgrid(np.arange(hp), np.arange(wp), np.arange(cp), indexing="ij")
        expect = ((hh + t) * wv + (ww + l)) * cv + o + cc
        if not np.array_equal(expect.reshape(-1), part.index):
            raise UnsupportedLayerError(
                f"layer '{user}' reads a value assembled along an axis other than channels; only "
                "channel concatenation and zero padding can feed convolutions and pooling")
        return t, hv - t - hp, l, wv - l - wp, o

    def conv_from(self, parts, vshape, k, strides, pads, dilation, groups, user) -> list[FloatConn]:
        """A convolution of a value made of ``parts``: one conv connection per source population."""
        out = []
        cv = vshape[2]
        for part in parts:
            t, b, l, r, o = self._image_geometry(part, vshape, user)
            cp = self.plans[part.pop].shape[2]
            kk, gg = k, groups
            if not (o == 0 and cp == cv):
                kk, gg = ungroup(k, groups)[:, :, o:o + cp, :], 1
            geo = dict(strides=tuple(strides), pads=((pads[0][0] + t, pads[0][1] + b),
                                                     (pads[1][0] + l, pads[1][1] + r)),
                       dilation=tuple(dilation), groups=int(gg))
            out.append(FloatConn(part.pop, "conv", np.asarray(kk, np.float64), geo))
        return out

    def dense_from(self, parts, w) -> list[FloatConn]:
        return [FloatConn(p.pop, "dense", np.asarray(w, np.float64)[p.index]) for p in parts]

    def identity_from(self, parts, vshape, coeff=1.0, user="") -> list[FloatConn]:
        """Connections copying a value (times ``coeff``) into a population of its shape."""
        if len(vshape) != 3:
            out = []
            for p in parts:
                w = np.zeros((len(p.index), int(np.prod(vshape))))
                w[np.arange(len(p.index)), p.index] = coeff
                out.append(FloatConn(p.pop, "dense", w))
            return out
        c = vshape[2]
        return self.conv_from(parts, vshape, np.full((1, 1, 1, c), float(coeff)), (1, 1),
                              ((0, 0), (0, 0)), (1, 1), c, user)

    # -- ops ---------------------------------------------------------------------------
    def op_conns(self, n) -> tuple[list, Optional[np.ndarray]]:
        """(FloatConns, bias) of a weighted or pooling node reading its input's parts."""
        g = self.g
        o = g.nodes[n]["op"]
        src = inputs_of(g, n)[0]
        parts, vshape = self.parts(src, n), self.shape(src)
        if isinstance(o, ops.DepthwiseConv2D):
            o = o.as_grouped_conv()
        if isinstance(o, ops.Dense):
            return self.dense_from(parts, o.weight), o.bias
        if isinstance(o, ops.Conv2D):
            return self.conv_from(parts, vshape, o.weight, o.strides, o.pads, o.dilation, o.groups,
                                  n), o.bias
        if isinstance(o, ops.AvgPool2D):
            if any(p for pp in o.pads for p in pp):
                return self.dense_from(parts, _padded_mean_matrix(o, vshape, n)), None
            c = vshape[2]
            k = np.full(tuple(o.pool) + (1, c), 1.0 / (o.pool[0] * o.pool[1]))
            return self.conv_from(parts, vshape, k, o.strides, o.pads, (1, 1), c, n), None
        if isinstance(o, ops.MaxPool2D):          # maxpool="avg"
            a = maxpool_as_avg_conv(o, vshape[2])
            return self.conv_from(parts, vshape, a.weight, a.strides, a.pads, (1, 1), a.groups, n), None
        if isinstance(o, ops.GlobalAvgPool2D):
            h, w, c = vshape
            wd = np.zeros((h * w * c, c))
            wd[np.arange(h * w * c), np.tile(np.arange(c), h * w)] = 1.0 / (h * w)
            return self.dense_from(parts, wd), None
        raise AssertionError(o.kind)

    def add_pop(self, p: PopPlan) -> PopPlan:
        p.src = p.inputs[0].src if p.inputs else None
        self.plans[p.name] = p
        return p

    def relu_after(self, n) -> Optional[str]:
        succ = list(self.g.successors(n))
        nxt = self.g.nodes[succ[0]]["op"] if len(succ) == 1 else None
        return succ[0] if isinstance(nxt, ops.Activation) and nxt.function == "relu" else None

    def feeds_only_add(self, n) -> bool:
        succ = list(self.g.successors(n))
        return len(succ) == 1 and isinstance(self.g.nodes[succ[0]]["op"], ops.Add)

    def neuron_pop(self, n, kind, conns, bias):
        """A population for node ``n`` (ReLU folded in when it follows), or a fused linear term."""
        relu_node = self.relu_after(n)
        out_next = all(isinstance(self.g.nodes[s]["op"], ops.Output) or
                       (isinstance(self.g.nodes[s]["op"], ops.Activation)
                        and self.g.nodes[s]["op"].function in ("linear", "softmax"))
                       for s in self.g.successors(n))
        if relu_node is None and kind in ("weighted", "add") and self.feeds_only_add(n):
            self.fused[n] = (conns, bias)         # summed into the Add's population
            return
        if relu_node is None and kind in ("weighted", "add") and not out_next:
            raise UnsupportedLayerError(
                f"layer '{n}' has no ReLU after it; hidden weighted layers must end in relu "
                "(negative activations cannot be spiked)")
        value = relu_node or n
        self.add_pop(PopPlan(n, kind, value, op_node=n, shape=self.shape(n), relu=relu_node is not None
                             or kind not in ("weighted", "add"), inputs=conns, bias=bias))
        self.carrier[n] = _whole(n, self.shape(n))
        if relu_node:
            self.carrier[relu_node] = self.carrier[n]

    def add_node(self, n):
        conns, bias = [], np.zeros(self.shape(n)[-1])
        for src in inputs_of(self.g, n):
            if src in self.fused:
                c, b = self.fused.pop(src)
                conns += c
                if b is not None:
                    bias = bias + b
            else:
                conns += self.identity_from(self.parts(src, n), self.shape(src), 1.0, n)
        self.neuron_pop(n, "add", conns, bias)

    def concat_node(self, n, o):
        shapes = [self.shape(s) for s in inputs_of(self.g, n)]
        vshape = self.shape(n)
        ax = o.axis % len(vshape)
        pos = np.arange(int(np.prod(vshape))).reshape(vshape)
        off, parts = 0, []
        for s, shp in zip(inputs_of(self.g, n), shapes):
            sl = [slice(None)] * len(vshape)
            sl[ax] = slice(off, off + shp[ax])
            where = pos[tuple(sl)].reshape(-1)          # positions of the operand's elements
            parts += [Part(p.pop, where[p.index]) for p in self.parts(s, n)]
            off += shp[ax]
        self.carrier[n] = parts

    def zero_pad_node(self, n, o):
        src = inputs_of(self.g, n)[0]
        h, w, c = self.shape(src)
        (t, _), (l, _) = o.pads
        _, wv, cv = self.shape(n)
        hh, ww, cc = np.unravel_index(np.arange(h * w * c), (h, w, c))
        where = ((hh + t) * wv + (ww + l)) * cv + cc
        self.carrier[n] = [Part(p.pop, where[p.index]) for p in self.parts(src, n)]

    def max_pool_node(self, n, o):
        """``max(a, b) = relu(a - b) + b`` (b >= 0) as a tournament over the window:
        each match is a ReLU population of the difference, the winner's expression
        adds back the loser's, and a last population sums the final expression."""
        g = self.g
        src = inputs_of(g, n)[0]
        parts, vshape = self.parts(src, n), self.shape(src)
        c = vshape[2]
        kh, kw = o.pool
        shape = self.shape(n)
        # an expression: {"win": {(a, b): coeff}, "pop": {population: coeff}}
        level = [{"win": {(a, b): 1.0}, "pop": {}} for a in range(kh) for b in range(kw)]

        def conns_of(expr):
            out = []
            if expr["win"]:
                k = np.zeros((kh, kw, 1, c))
                for (a, b), v in expr["win"].items():
                    k[a, b] = v
                out += self.conv_from(parts, vshape, k, o.strides, o.pads, (1, 1), c, n)
            for pop, v in expr["pop"].items():
                out += self.identity_from(_whole(pop, shape), shape, v, n)
            return out

        def value_fn(expr):
            def f(acts, vals):
                win = ops._windows(acts[src], o.pool, o.strides, (1, 1), o.pads)   # (N,Ho,Wo,C,kh,kw)
                y = sum(v * win[..., a, b] for (a, b), v in expr["win"].items())
                y = y + sum(v * vals[pop] for pop, v in expr["pop"].items())
                return np.maximum(y, 0.0)
            return f

        k = 0
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level) - 1, 2):
                a, b = level[i], level[i + 1]
                diff = {"win": dict(a["win"]), "pop": dict(a["pop"])}
                for key in ("win", "pop"):
                    for r, v in b[key].items():
                        diff[key][r] = diff[key].get(r, 0.0) - v
                name = f"{n}.max{k}"
                k += 1
                self.add_pop(PopPlan(name, "max_tree", n, op_node=n, shape=shape, inputs=conns_of(diff),
                                     aux=True, float_value=value_fn(diff)))
                nxt.append({"win": dict(b["win"]), "pop": {name: 1.0, **b["pop"]}})
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        self.add_pop(PopPlan(n, "max_pool", n, op_node=n, shape=shape, inputs=conns_of(level[0])))
        self.carrier[n] = _whole(n, shape)

    # -- the walk --------------------------------------------------------------------
    def run(self) -> list[PopPlan]:
        g = self.g
        for n in topo_order(g):
            o = g.nodes[n]["op"]
            preds = inputs_of(g, n)
            if isinstance(o, ops.Input):
                self.add_pop(PopPlan(n, "input", n, shape=o.shape))
                self.carrier[n] = _whole(n, o.shape)
                continue
            first = self.carrier.get(preds[0])
            if isinstance(o, ops.Scale) and first and len(first) == 1 \
                    and self.plans[first[0].pop].kind == "input" \
                    and self.plans[first[0].pop].value_node == preds[0]:
                self.plans[first[0].pop].pre_nodes.append(n)
                self.plans[first[0].pop].value_node = n
                self.carrier[n] = first
            elif isinstance(o, _WEIGHTED):
                self.neuron_pop(n, "weighted", *self.op_conns(n))
            elif isinstance(o, ops.Activation) and n in self.carrier:
                continue                                   # the ReLU of a population
            elif isinstance(o, ops.Activation) and o.function == "relu" and first and all(
                    self.plans[p.pop].relu and self.plans[p.pop].kind != "input" for p in first):
                self.carrier[n] = first                    # ReLU of non-negative values: identity
            elif isinstance(o, ops.Activation) and o.function in ("linear", "softmax"):
                if o.function == "softmax" and not all(
                        isinstance(g.nodes[s]["op"], ops.Output) for s in g.successors(n)):
                    raise UnsupportedLayerError(
                        f"layer '{n}' applies softmax inside the network; a spiking network can only "
                        "drop a softmax at the output (argmax is unchanged)")
                self.carrier[n] = self.parts(preds[0], n)
            elif isinstance(o, (ops.AvgPool2D, ops.GlobalAvgPool2D)) or (
                    isinstance(o, ops.MaxPool2D) and self.maxpool == "avg"):
                kind = "global_pool" if isinstance(o, ops.GlobalAvgPool2D) else "avg_pool"
                self.neuron_pop(n, kind, *self.op_conns(n))
            elif isinstance(o, ops.MaxPool2D):
                self.max_pool_node(n, o)
            elif isinstance(o, ops.Add):
                self.add_node(n)
            elif isinstance(o, ops.Concatenate):
                self.concat_node(n, o)
            elif isinstance(o, ops.ZeroPadding2D):
                self.zero_pad_node(n, o)
            elif isinstance(o, _VIEW_KINDS):
                self.carrier[n] = self.parts(preds[0], n)
            elif isinstance(o, ops.Output):
                parts = self.parts(preds[0], n)
                p = self.plans[parts[0].pop]
                if len(parts) != 1 or not np.array_equal(parts[0].index, np.arange(len(parts[0].index))) \
                        or p.kind == "input":
                    raise UnsupportedLayerError(
                        f"the network output '{preds[0]}' is not one layer's output (a concatenation, "
                        "padding or the input); end the model with a Dense or Conv layer")
                p.is_output = True
            else:
                raise UnsupportedLayerError(
                    f"layer '{n}' ({o.kind}) cannot be converted to spikes yet; convertible ops: "
                    "input, dense, conv2d, depthwise_conv2d, avg_pool2d (valid), max_pool2d, "
                    "global_avg_pool2d, add, concatenate, zero_padding2d, flatten, reshape, relu, "
                    "linear/softmax at the output, batchnorm after a weighted layer")
        if self.fused:
            n = next(iter(self.fused))
            raise UnsupportedLayerError(f"layer '{n}' has no ReLU after it; hidden weighted layers must "
                                        "end in relu (negative activations cannot be spiked)")
        plans = list(self.plans.values())
        outs = [p for p in plans if p.is_output]
        if len(outs) != 1:
            raise UnsupportedLayerError(f"spiking conversion needs exactly one output, got {len(outs)}")
        for p in plans:
            if p.kind in ("weighted", "add") and not p.relu and not p.is_output:
                raise UnsupportedLayerError(
                    f"layer '{p.name}' has no ReLU after it; hidden weighted layers must end in relu "
                    "(negative activations cannot be spiked)")
            for s in p.sources:
                if self.plans[s].is_output:
                    raise UnsupportedLayerError(f"output layer '{s}' feeds '{p.name}'")
        _align_delays(plans)
        return plans


def _align_delays(plans: list[PopPlan]) -> None:
    """Synaptic delays on the shorter inputs of every population, so that all
    its inputs first arrive in the same step (residual and concatenated branches)."""
    depth = {}
    for p in plans:
        depth[p.name] = max((depth[c.src] + 1 for c in p.inputs), default=0)
        for c in p.inputs:
            c.delay = depth[p.name] - depth[c.src] - 1
            if c.delay > MAX_DELAY:
                raise UnsupportedLayerError(
                    f"aligning the branches into '{p.name}' needs a delay of {c.delay} steps from "
                    f"'{c.src}', more than the chip's {MAX_DELAY}")


def conversion_plan(g: nx.DiGraph, maxpool: str = "exact") -> list[PopPlan]:
    """Map the float graph onto populations and their float connections; raise
    for what cannot be spiked.  ``maxpool``: "exact" (ReLU tournament) or "avg"."""
    return _Planner(g, maxpool).run()


def act_scale(g: nx.DiGraph, node: str) -> np.ndarray:
    """Activation scale of a node: a scalar or one value per channel (last axis)."""
    meta = g.nodes[node].get("meta", {})
    if "act_scale" not in meta:
        raise LoweredError(f"node '{node}' has no activation scale: run balance_thresholds "
                           "(it needs calibration data) before lowering")
    return np.asarray(meta["act_scale"], dtype=np.float64)


def normalised_weights(kind, w, b, geo, src_scale, dst_scale, src_shape, dst_shape=None):
    """``W * scale(source neuron) / scale(destination channel)``, ``b / scale``."""
    ls = np.broadcast_to(src_scale, src_shape).reshape(-1) if kind == "dense" else \
        np.broadcast_to(src_scale, (src_shape[-1],))
    if kind == "dense" and dst_shape is not None:     # e.g. a padded mean into an image
        ld = np.broadcast_to(dst_scale, tuple(dst_shape)).reshape(-1)
    else:
        ld = np.broadcast_to(dst_scale, (w.shape[-1],))
    if kind == "dense":
        wn = w * ls[:, None] / ld[None, :]
    else:
        kh, kw, cg, co = w.shape
        og = co // geo["groups"]
        src_ch = (np.arange(co)[None, :] // og) * cg + np.arange(cg)[:, None]     # (cg, co)
        wn = w * (ls[src_ch] / ld[None, :])[None, None]
    return wn, (None if b is None else b / ld)


def _scale_of(g, plans: dict, name: str) -> np.ndarray:
    p = plans[name]
    s = act_scale(g, p.value_node)
    return np.max(s) if p.kind == "input" else s


@dataclass
class _NormConn:
    fc: FloatConn
    w: np.ndarray                 # normalised weights (activation 1.0 -> 1.0)
    sum_axes: object              # axes a destination neuron sums over

    @property
    def kind(self):
        return self.fc.kind


def _normalised(g, plans: dict, p: PopPlan) -> tuple[list[_NormConn], Optional[np.ndarray]]:
    """A population's incoming connections and bias, normalised to its own scale."""
    dst = _scale_of(g, plans, p.name)
    conns = []
    for fc in p.inputs:
        w, _ = normalised_weights(fc.kind, fc.weight, None, fc.geo, _scale_of(g, plans, fc.src), dst,
                                  tuple(plans[fc.src].shape), p.shape)
        conns.append(_NormConn(fc, w, 0 if fc.kind == "dense" else (0, 1, 2)))
    b = None
    if p.bias is not None and np.any(p.bias):
        b = p.bias / np.broadcast_to(dst, (p.shape[-1],))
    return conns, b


def _exact_bound(fc: FloatConn) -> int:
    """Largest exact |sum| of one message: Lava's float32 conv (2^24), its explicit-matrix
    fallback for delayed or asymmetrically padded convs, which must not reach Conv's
    24-bit wrap (2^23), int32 dot products."""
    if fc.kind == "conv":
        (pt, pb), (pl, pr) = fc.geo["pads"]
        return 1 << 23 if fc.delay or pt != pb or pl != pr else nm.FLOAT32_EXACT
    return 1 << 31


def _input_layer_format(net, inp: str, w_n, sum_axes, fmt, cap, signed, unit):
    """Choose the input payload width jointly with the first layer's weights (no
    exponent): the worst-case input bound couples them."""
    neuron = net.populations[inp].neuron
    scale_per_unit = neuron.payload_per_unit / neuron.payload_max       # 1 / calibration max
    per_payload = unit[inp] / neuron.payload_max          # 1 / burst: the weights carry bursts
    # the widest input whose first layer keeps 7-bit weight mantissas; else 4-bit input
    # (weight rounding errors hit every sample the same way, input rounding averages out)
    best = None
    for bits in range(int(np.log2(neuron.payload_max + 1)), 3, -1):
        pmax = (1 << bits) - 1
        lf = choose_lif_format([w_n], [pmax * per_payload], [pmax], [sum_axes], fmt, allow_exp=False,
                               vth_cap=cap, signed=[signed])
        best = (0, bits, lf)
        if int(np.abs(lf.mantissas[0]).max()) >= 128:
            break
    _, bits, lf = best
    pmax = (1 << bits) - 1
    neuron.payload_max = pmax
    neuron.payload_per_unit = pmax * scale_per_unit
    unit[inp] = pmax * per_payload
    return lf


SD_STATE_EXP_MAX = 7              # Loihi 2 / Lava SigmaDelta: state_exp is a 3-bit field
SD_BIAS_MAX = (1 << 15) - 1       # Lava SigmaDelta (fixed_pt): 16-bit signed bias, in payload units
SD_EXACT_NEED = 16                # exact (integer) mantissas of a pooling-like consumer: at least this


def _matrix(k) -> np.ndarray:
    """A connection's normalised weights as (rows, columns): one column per destination
    neuron (dense) or output channel (conv), one row per source neuron (dense) or kernel tap."""
    return k.w if k.kind == "dense" else k.w.reshape(-1, k.w.shape[-1])


def _dst_channel_max(col_values: np.ndarray, c_dst: int) -> np.ndarray:
    """Per destination channel, the largest of its columns' values (channels last)."""
    return np.asarray(col_values, np.float64).reshape(-1, c_dst).max(axis=0)


def _col_values(k, per_channel: np.ndarray) -> np.ndarray:
    """A per-destination-channel value for every column of ``_matrix(k)``."""
    n = k.w.shape[-1]
    return np.broadcast_to(per_channel, (n // len(per_channel), len(per_channel))).reshape(-1)


def _src_channel_of(k, c_src: int) -> np.ndarray:
    """The source channel of every entry of ``_matrix(k)`` (broadcastable to it)."""
    if k.kind == "dense":
        return (np.arange(k.w.shape[0]) % c_src)[:, None]
    kh, kw, cg, co = k.w.shape
    og = co // int(k.fc.geo.get("groups", 1))
    ch = (np.arange(co)[None, :] // og) * cg + np.arange(cg)[:, None]          # (cg, co)
    return np.tile(ch, (kh * kw, 1))


def _src_channel_max(k, values: np.ndarray, c_src: int) -> np.ndarray:
    """Per source channel, the largest of ``values`` (shaped like ``_matrix(k)``) over its entries."""
    if k.kind == "dense":
        return values.reshape(-1, c_src, values.shape[-1]).max(axis=(0, 2))
    kh, kw, cg, co = k.w.shape
    per = values.reshape(kh * kw, cg, co).max(axis=0)                            # (cg, co)
    out = np.zeros(c_src)
    np.maximum.at(out, _src_channel_of(k, c_src)[:cg].ravel(), per.ravel())
    return out


def _exact_channels(k, m: np.ndarray, c_src: int, c_dst: int, one_source: bool = False
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Destination channels whose nonzero weights ``m`` (shaped like ``_matrix(k)``)
    all have one magnitude (pooling, identity copies): an integer multiple of that
    magnitude represents them exactly.  ``one_source``: also each column reads
    one source channel, so that the weights stay equal over any per-channel
    payload units of the source (``m`` not yet divided by them).  Returns (per
    channel flag, magnitude)."""
    a = np.abs(m)
    nz = a > 0
    hi = _dst_channel_max(np.where(nz, a, 0).max(axis=0), c_dst)
    lo = -_dst_channel_max(-np.where(nz, a, np.inf).min(axis=0), c_dst)
    ok = hi - lo <= 1e-9 * hi                       # all-zero channels: hi - lo = -inf
    if one_source:
        ch = np.broadcast_to(_src_channel_of(k, c_src), a.shape)
        one = (np.where(nz, ch, -1).max(axis=0) == np.where(nz, ch, c_src).min(axis=0)) | ~nz.any(axis=0)
        ok &= -_dst_channel_max(-one.astype(np.float64), c_dst) > 0
    return ok, hi


def _sd_state_limits(g, plans_list, opt, fmt) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Largest sigma units per activation 1.0 each sigma-delta population may
    use, per channel (last axis), and its ``state_exp`` (payload = sigma delta
    >> state_exp).

    Its own bounds: the 24-bit sigma for activations up to 4x the calibration
    scale, and exact sums downstream of it (Lava's float32 conv: 2^24; int32 dot
    products: 2^31) -- ``4 * A_c * column sum |W'| < bound`` per incoming
    connection and channel c.  And its consumers': payloads are A_c/64 per 1.0,
    and a consumer q with scales A_q gets weights W'_q * A_q * 64 / A_c, which
    need A_c <= 64 * max_j |W'_q[c, j]| * A_q[j] / lim for source channel c's
    largest weight to keep a full mantissa (a large A upstream starves the
    weights below).  Connections with a weight exponent (dense, not NetX) absorb
    any scale; pooling-like ones (``_exact_channels``) are lowered to exact
    integer mantissas and need only ``SD_EXACT_NEED``.  A hidden neuron's bias,
    ``b' * A_c / 2^state_exp`` payload units, must fit Lava SigmaDelta's 16-bit
    bias (``SD_BIAS_MAX``).  The output keeps one scale for all its neurons.

    Where a consumer bounds A that way, ``state_exp = 7`` (one more bit than
    the default 6, the most the chip's 3-bit field holds) doubles A at the
    same payload unit A / 2^state_exp: the population's own incoming weights
    and bias gain a bit, and so, through its relaxed bound, do the populations
    upstream of it (deep chains otherwise shrink A ~4x per layer down to the
    floor where the delta threshold is one payload unit).  Not for NetX
    (its SDNN neurons fix state_exp = 6).
    """
    plans = {p.name: p for p in plans_list}
    lim = fmt.mantissa_max
    floor = (1 << nm.ACT_SHIFT) / opt.sd_threshold        # keeps the delta threshold's resolution
    own, bias_cap = {}, {}
    reads = {p.name: [] for p in plans_list}             # source -> [(consumer, conn, mantissa need)]
    for p in plans_list:
        if p.kind == "input":
            continue
        conns, b_n = _normalised(g, plans, p)
        c = int(p.shape[-1])
        a = np.full(c, float(min(opt.sd_state_scale, (1 << (nm.UV_BITS - 1)) / 4)))
        for k in conns:
            m = _matrix(k)
            colsum = _dst_channel_max(np.abs(m).sum(axis=0), c)
            a = np.minimum(a, _exact_bound(k.fc) / (4 * np.maximum(colsum, 1e-300)))
            c_src = int(plans[k.fc.src].shape[-1])
            if k.kind == "dense" and not opt.netx_weights:
                need = 0                                 # an exponent absorbs any scale
            elif len(conns) == 1 and _exact_channels(k, m, c_src, c, one_source=True)[0].all():
                need = SD_EXACT_NEED
            else:
                need = lim
            reads[k.fc.src].append((p.name, k, need))
        own[p.name] = a
        # a hidden neuron's bias is held in payload units (A / 2^state_exp per 1.0)
        bias_cap[p.name] = np.full(c, np.inf) if b_n is None or (p.is_output and not p.relu) else \
            SD_BIAS_MAX / np.maximum(np.abs(np.broadcast_to(b_n, (c,))), 1e-300)
    allow, sexp = {}, {}
    for p in reversed(plans_list):
        if p.kind == "input":
            continue
        c = int(p.shape[-1])
        a = own[p.name].copy()
        for q, k, need in reads[p.name]:
            if need:
                reach = np.abs(_matrix(k)) * _col_values(k, allow[q])
                row = _src_channel_max(k, reach, c)
                a = np.where(row > 0, np.minimum(a, (1 << nm.ACT_SHIFT) * row / need), a)
        cap = bias_cap[p.name] * (1 << nm.ACT_SHIFT)
        allow[p.name] = np.minimum(np.minimum(own[p.name], np.maximum(a, floor)), cap)
        if p.is_output:                                  # one scale (see _lower_sigma_delta)
            allow[p.name][:] = allow[p.name].min()
        sexp[p.name] = nm.ACT_SHIFT
        bound = a < own[p.name]
        if not opt.netx and bound.any() and np.all(2 * allow[p.name][bound] <= own[p.name][bound]):
            step = 1 << (SD_STATE_EXP_MAX - nm.ACT_SHIFT)
            allow[p.name] = np.minimum(allow[p.name] * step, np.minimum(own[p.name], cap * step))
            sexp[p.name] = SD_STATE_EXP_MAX
    return allow, sexp


def _lower_sigma_delta(p, conns, b_n, allow, state_exp, unit, net, opt, fmt):
    """Integer weights, exponents and neuron of a sigma-delta population (or the Sigma
    decoder at the output).  Returns (neuron, mantissas, exponents, payload units per
    activation 1.0: one per channel, a scalar at the output).

    Activation 1.0 of channel c is ``A_c`` sigma units, each channel's scale chosen
    on its own (channel-wise normalisation already gives every channel its own
    range; its bias and delta threshold follow ``A_c``): as large as the plan
    allows (``_sd_state_limits``: 24-bit sigma, exact sums, 16-bit bias, the
    consumers' mantissas) and every incoming connection's largest weight into the
    channel keeps a full ``lim`` mantissa, ``w_int * 2^e = W' * A_c / u_src``.  A
    dense connection's one exponent is chosen so that every channel can fill its
    mantissas below its allowance (not below the delta threshold's floor).
    Pooling-like channels (``_exact_channels``) get ``A_c`` at an exact integer
    mantissa.  The output keeps one scale (the read-out compares its neurons).
    """
    lim = fmt.mantissa_max
    c = int(p.shape[-1])
    per_channel = not p.is_output
    allow = np.broadcast_to(np.asarray(allow, np.float64), (c,)).copy()
    if not per_channel:
        allow[:] = allow.min()
    floor = (1 << state_exp) / opt.sd_threshold       # the delta threshold's resolution
    wu, mixed, vmax, c_srcs = [], [], [], []
    for k in conns:
        c_src = int(net.populations[k.fc.src].shape[-1])
        us = np.broadcast_to(np.asarray(unit[k.fc.src], np.float64), (c_src,))
        m = _matrix(k) / us[_src_channel_of(k, c_src)]       # W' over the source's payload unit
        wu.append(m)
        c_srcs.append(c_src)
        mixed.append(bool(m.min() < 0 < m.max()))           # Lava drops mixed-sign LSBs: even
        vmax.append(_dst_channel_max(np.abs(m).max(axis=0), c))
    exps = []
    for k, v in zip(conns, vmax):
        reach = allow * v / lim          # 2^e at which a channel's largest weight fills at A = allow
        reach = reach[v > 0]
        if k.kind != "dense" or opt.netx_weights or not reach.size:
            exps.append(0)
            continue
        e = e_top = math.ceil(math.log2(reach.max()))
        if per_channel:                  # low enough for every channel, not below the floor
            e = min(e_top, max(math.floor(math.log2(reach.min())),
                               math.ceil(math.log2(floor * v.max() / lim))))
        exps.append(int(min(max(e, fmt.weight_exp_min), 0)))
    a = allow.copy()
    for v, e in zip(vmax, exps):
        a = np.minimum(a, np.where(v > 0, lim * 2.0 ** e / np.maximum(v, 1e-300), np.inf))
    if not per_channel:
        a[:] = a.min()
    if state_exp > nm.ACT_SHIFT and np.all(a <= allow / 2):
        # incoming weights cap A at half the plan or less: state_exp 6 doubles the payload
        # unit (a finer delta threshold) within what the consumers were planned for
        state_exp = nm.ACT_SHIFT
    exact = np.zeros(c, bool)
    if per_channel and len(conns) == 1:
        exact, mag = _exact_channels(conns[0], wu[0], c_srcs[0], c)
        exact &= mag > 0
        step = 2 if mixed[0] else 1

    def exact_scale(a):
        """Exact channels: the largest A <= a at an integer (even, when mixed) mantissa."""
        if not exact.any():
            return a
        m = np.floor(a * mag / 2.0 ** exps[0] / step) * step
        return np.where(exact & (m >= step), m * 2.0 ** exps[0] / np.where(exact, mag, 1.0), a)

    while True:      # rounding can push an exact-sum bound over: shrink until all hold
        a = exact_scale(a)
        mants, ratio = [], np.full(c, np.inf)
        for k, m, mx, e in zip(conns, wu, mixed, exps):
            x = m * (_col_values(k, a) / 2.0 ** e)
            q = (2 * np.round(x / 2) if mx else np.round(x)).astype(np.int64)
            mants.append(q.reshape(k.w.shape))
            worst = net.max_payload(k.fc.src) * _dst_channel_max(np.abs(q).sum(axis=0), c)
            ratio = np.minimum(ratio, np.where(worst > 0, _exact_bound(k.fc) / np.maximum(worst, 1), np.inf))
        if np.all(ratio > 1) or a.max() < 1:
            break
        a = np.where(ratio > 1, a, a * 0.97 * np.minimum(ratio, 1.0))
        if not per_channel:
            a[:] = a.min()
    a_flat = np.broadcast_to(a, p.shape).reshape(-1)
    b_full = None if b_n is None else np.broadcast_to(b_n, p.shape).reshape(-1) * a_flat
    if p.is_output and not p.relu:
        # a Sigma decoder (NetX sigma_output): the host adds the bias when reading out
        neuron = SigmaNeuron(bias=None if b_full is None else np.round(b_full).astype(np.int64))
        return neuron, mants, exps, float(a[0])
    bias = None if b_full is None else np.round(b_full / (1 << state_exp)).astype(np.int64)
    vth = max(1, int(round(opt.sd_threshold * float(a.min()) / (1 << state_exp))))
    neuron = SigmaDeltaNeuron(vth=vth, bias=bias, spike_exp=0, state_exp=state_exp,
                              act_mode="relu" if p.relu else "unit")
    u = a / (1 << state_exp)
    return neuron, mants, exps, (u if per_channel else float(u[0]))


# rate_reset="synapse": u holds the whole reset-by-subtraction membrane, and wraps at 2^23
# (it does not saturate like v).  A neuron driven below zero keeps integrating, so the
# threshold leaves room for max_steps steps of the layer's most negative per-step input:
# measured on calibration data where there is some (synapse_reset_caps), else assumed to
# be this many thresholds; the self synapse -vth must be an 8-bit mantissa and exponent.
SYNAPSE_RESET_NEG_DRIVE = 1
SYNAPSE_RESET_MARGIN = 1.25          # on the measured drive: other inputs may reach further
SYNAPSE_RESET_MIN_DRIVE = 1 / 16     # assumed at least, however little calibration shows
SYNAPSE_RESET_VTH_MAX = 255 << 7


def _u_room() -> int:
    """|u| < 2^23 in weight units (u counts them << 6)."""
    return 1 << (nm.UV_BITS - 1 - nm.ACT_SHIFT)


def synapse_reset_caps(net: LoweredNet, x: np.ndarray, max_steps: int) -> dict[str, int]:
    """Per ``rate_reset="synapse"`` population, the largest threshold with which
    ``max_steps`` steps of its most negative steady per-step input on ``x``
    (the quantised ANN's, with ``SYNAPSE_RESET_MARGIN``) cannot wrap u."""
    from neurocomp.analysis import quantised_ann
    currents: dict[str, np.ndarray] = {}
    quantised_ann(net, x, currents=currents)
    caps = {}
    for name, z in currents.items():
        n = net.populations[name].neuron
        if not n.self_weight:
            continue
        drive = max(float(-z.min(initial=0.0)) / n.vth, SYNAPSE_RESET_MIN_DRIVE)   # thresholds/step
        cap = int(_u_room() / (max_steps * drive * SYNAPSE_RESET_MARGIN))
        caps[name] = representable_self_vth(min(max(cap, 1), SYNAPSE_RESET_VTH_MAX))
    return caps


INPUT_BITS_TRADED = 3            # trade_input_bits tries input_bits, input_bits - 1, ... this many fewer
INPUT_BITS_MIN = 4


def output_error(net: LoweredNet, g: nx.DiGraph, x: np.ndarray, float_out: Optional[np.ndarray] = None
                 ) -> float:
    """Relative error of the quantised network's output against the float network's on
    ``x`` (``float_out``: ``predict(g, x)`` when already at hand), after the best common
    scale: ``min_a |a q - f| / |f|``."""
    from neurocomp.analysis import quantised_ann
    from neurocomp.ir import predict
    q = quantised_ann(net, x)[net.output].reshape(len(x), -1).astype(np.float64)
    f = np.asarray(predict(g, x) if float_out is None else float_out, np.float64).reshape(len(x), -1)
    qq = float((q * q).sum())
    a = float((q * f).sum()) / qq if qq > 0 else 0.0
    return float(np.linalg.norm(a * q - f) / max(np.linalg.norm(f), 1e-30))


def trade_input_bits(g: nx.DiGraph, net: LoweredNet, opt, lower_at, x: np.ndarray):
    """``rate_reset="synapse"``, constant-current input: the input width, of ``opt.input_bits``
    and up to INPUT_BITS_TRADED fewer, whose lowered network (``lower_at(options)``) has the
    smallest ``output_error`` on calibration inputs ``x``; returns (net, {bits: error}).

    The first layer's threshold is capped for u's range, so a wide pixel payload forces its
    weights to the exponent floor and a few mantissa levels (MNIST MLP, 8 bits: at most 24 of
    254), and their rounding error, the same for every sample and step, outweighs the input's;
    measured output error 8 -> 6 bits: MLP 0.016 -> 0.007, CNN 0.019 -> 0.008."""
    from neurocomp.ir import predict
    f = predict(g, x)                              # the same float reference for every width
    errors = {opt.input_bits: output_error(net, g, x, f)}
    best, best_error = net, errors[opt.input_bits]
    for bits in range(opt.input_bits - 1, max(opt.input_bits - INPUT_BITS_TRADED, INPUT_BITS_MIN) - 1, -1):
        cand = lower_at(opt.model_copy(update={"input_bits": bits}))
        errors[bits] = output_error(cand, g, x, f)
        if errors[bits] < best_error:
            best, best_error = cand, errors[bits]
    return best, errors


SYNAPSE_RESET_MATRIX_MAX = 1 << 23      # synapses of a graded conv written out as a matrix


def _conv_as_dense(k: _NormConn, src_shape, dst_shape) -> _NormConn:
    """A normalised conv connection as the equivalent dense ``(n_src, n_dst)`` one."""
    geo = k.fc.geo
    m = dense_conv_matrix(np.asarray(k.w, np.float64), src_shape, dst_shape, geo["strides"],
                          geo["pads"], geo["dilation"], geo["groups"])
    return _NormConn(dataclasses.replace(k.fc, kind="dense", weight=m, geo={}), m, 0)


def synapse_reset_vth_cap(max_steps: int) -> int:
    """Largest threshold of a ``rate_reset="synapse"`` layer without calibration data."""
    return representable_self_vth(max(1, _u_room() // (max_steps * SYNAPSE_RESET_NEG_DRIVE)))


def representable_self_vth(vth: int) -> int:
    """The largest threshold <= ``vth`` whose self synapse ``-vth`` is one 8-bit
    mantissa shifted by an exponent (``LIFNeuron.self_weight``)."""
    m, e = nm.mantissa_and_exp(vth)
    return max(1, m << e)


def _synapse_reset_neuron(vth: int, bias_w: np.ndarray, v_init: float, fmt: Formats,
                          bias_onset: int = 0) -> LIFNeuron:
    """Reset by subtraction from Lava's plain LIF (``rate_reset="synapse"``).

    du=0 makes the current u an integrator (it keeps 4095/4096 per step: Lava adds
    Loihi 1's offset of 1 to du), dv=4095 makes v = u + u_prev-carry (at most
    vth/64 units) each step, so v's reset to zero forgets nothing: the self synapse
    -vth takes the threshold out of u one step after each spike, before the next
    comparison.  A bias added to v would no longer integrate, so it comes from an
    always-on neuron into u (its Dense holds it as 8-bit mantissas with one
    exponent, -1 where the biases fit: whole weight units, exactly); its first spike
    arrives at step 2, so u0 holds step 1's share
    unless the bias is delayed (``bias_onset`` > 0: no share before the input).
    """
    lim = fmt.mantissa_max
    bias_w = np.asarray(bias_w, np.float64)
    mant, exp = None, 0
    if np.any(bias_w != 0):
        top = float(np.abs(bias_w).max())
        # a mixed-sign Dense keeps even mantissas only (Lava drops their LSB): at exponent 0
        # the biases would step by 2 weight units; at -1 (biases up to 127 units) the even
        # mantissa 2b halves back to b exactly, so they step by 1 (MobileNet rate: quantised
        # ANN 0.919 -> 0.935).  Below -1 the shift would floor: messages are whole units.
        exp = next((e for e in range(max(-1, fmt.weight_exp_min), fmt.weight_exp_max + 1)
                    if top / 2.0 ** e <= lim),
                   fmt.weight_exp_max)
        mant = round_mantissas(bias_w, 2.0 ** -exp, lim)
        if not mant.any():
            mant, exp = None, 0
    first = np.zeros(bias_w.shape, np.int64) if mant is None or bias_onset > 0 else \
        nm.binary_dense_message(mant, exp).astype(np.int64)
    u0 = int(v_init * (vth << nm.VTH_SHIFT)) + (first << nm.ACT_SHIFT)
    return LIFNeuron(vth=vth, du=0, dv=4095, u0=u0, self_weight=-int(vth), bias_in_mant=mant,
                     bias_in_exp=int(exp), reset="zero", bias_onset=int(bias_onset) if mant is not None else 0)


OPTQ_MAX_INPUTS = 4096          # Hessian rows per weight group (its inverse is dense)
# Fewer inputs per weight group than this round to nearest: OPTQ compensates one tap's error
# on its few neighbours, which the float mean accepts but spiking layers, whose taps' spikes
# arrive at different steps, do not (MNIST MobileNet, 3x3 depthwise convs, 2000 images, L+32:
# rate 0.820 with them, 0.871 without; rate-soft 0.9295 / 0.9325; all other layers keep OPTQ)
OPTQ_MIN_INPUTS = 16
OPTQ_CHUNK = 1 << 22            # window elements per batch of calibration samples
OPTQ_BATCH = 64                 # calibration samples run through the float graph at a time


def optq_hessians(g: nx.DiGraph, opt, calib: Optional[np.ndarray]) -> dict[str, np.ndarray]:
    """``calibration_hessians`` where ``weight_rounding="optq"`` applies (a rate mode,
    constant-current input, calibration data), else none.  They depend on neither
    thresholds nor formats, so one set serves every ``lower`` of the same graph."""
    # the Hessians describe per-step input currents under constant-current input; a temporal
    # code's per-step inputs differ (mlp_digits, phase code: 0.92 -> 0.905 at L+128 with them)
    if calib is None or opt.weight_rounding != "optq" or opt.mode not in ("rate", "rate-soft") \
            or opt.encoding != "constant":
        return {}
    return calibration_hessians(g, conversion_plan(g, opt.maxpool), opt.maxpool, calib)


def calibration_hessians(g: nx.DiGraph, plans: list[PopPlan], maxpool: str, x: np.ndarray
                         ) -> dict[str, np.ndarray]:
    """Per weighted population fed by one connection (of ``OPTQ_MIN_INPUTS`` to
    ``OPTQ_MAX_INPUTS`` inputs per weight group), ``input_hessians`` of its inputs on calibration data
    ``x`` as the spiking network carries them: the float graph's activations over
    the source's scale, clipped to one spike per step for hidden layers.  Batches
    of samples keep memory to the Hessians themselves."""
    by_name = {p.name: p for p in plans}
    want = {p.name: p.inputs[0] for p in plans
            if p.kind == "weighted" and len(p.inputs) == 1
            and OPTQ_MIN_INPUTS <= int(np.prod(p.inputs[0].weight.shape[:-1])) <= OPTQ_MAX_INPUTS}
    if not want:
        return {}
    cg = calibration_graph(g, maxpool)
    nodes = {by_name[fc.src].value_node for fc in want.values()}
    scales = {fc.src: _scale_of(g, by_name, fc.src) for fc in want.values()}
    out: dict[str, np.ndarray] = {}
    for b0 in range(0, len(x), OPTQ_BATCH):
        acts = run_float(cg, np.asarray(x[b0:b0 + OPTQ_BATCH]), keep=nodes)
        for name, fc in want.items():
            src = by_name[fc.src]
            v = acts[src.value_node] / scales[fc.src]
            if src.kind != "input" and src.relu:
                v = np.clip(v, 0.0, 1.0)
            h = input_hessians(fc, v)
            out[name] = h if name not in out else out[name] + h
    return out


def input_hessians(fc: FloatConn, x: np.ndarray) -> np.ndarray:
    """X^T X of one weighted connection's inputs on calibration values ``x``
    (N, *source shape), one matrix per weight group: dense (1, n_src, n_src),
    conv (groups, kh*kw*cg, kh*kw*cg) in the kernel's (kh, kw, cg) order."""
    if fc.kind == "dense":
        f = x.reshape(len(x), -1)
        return (f.T @ f)[None]
    kh, kw, cg, _ = fc.weight.shape
    groups = int(fc.geo.get("groups", 1))
    k = kh * kw * cg
    h = np.zeros((groups, k, k))
    per = max(1, OPTQ_CHUNK // max(1, int(np.prod(x.shape[1:])) * kh * kw))
    for b0 in range(0, len(x), per):
        win = ops._windows(x[b0:b0 + per], (kh, kw), fc.geo["strides"], fc.geo["dilation"],
                           fc.geo["pads"])                               # N,Ho,Wo,C,kh,kw
        m = np.ascontiguousarray(win.transpose(0, 1, 2, 4, 5, 3)).reshape(-1, kh, kw, groups, cg)
        m = np.ascontiguousarray(m.transpose(3, 0, 1, 2, 4)).reshape(groups, -1, k)
        h += np.matmul(m.transpose(0, 2, 1), m)           # per group, BLAS
    return h


def pooled_hessian(h: np.ndarray, kernel: tuple[int, int, int], s: int) -> np.ndarray:
    """A conv's input Hessian (``input_hessians``, (kh, kw, cg) order) for its kernel
    tied over s x s tiles: that of the tiles' sums, the inputs of the conv s times
    smaller per axis (T^T H T, T summing each tile)."""
    if s == 1:
        return h
    kh, kw, cg = kernel
    n = (kh // s) * (kw // s) * cg
    return h.reshape(kh // s, s, kw // s, s, cg, kh // s, s, kw // s, s, cg).sum(axis=(1, 3, 6, 8)).reshape(n, n)


def _optq_mantissas(k: _NormConn, unit, h: np.ndarray, lf, exp: int, net: LoweredNet,
                    signed: bool, fmt: Formats) -> Optional[list]:
    """One connection's mantissas rounded with error feedback (``round_mantissas_optq``,
    Hessians ``h`` per weight group) at the scale and exponent the format chose; None
    where the worst-case per-step input would then no longer fit the accumulator."""
    scale = lf.scale * 2.0 ** (lf.weight_exp - exp)
    w = np.asarray(k.w, np.float64) / unit
    if not np.array_equal(round_mantissas(w, scale, fmt.mantissa_max), lf.mantissas[0]):
        return None            # a format that traded input bits: not this scale's mantissas
    mixed = bool(w.min() < 0 < w.max())
    if k.kind == "dense":
        m = round_mantissas_optq(w, scale, fmt.mantissa_max, h[0], mixed)
    else:
        kh, kw, cg, co = w.shape
        geo = k.fc.geo
        # taps fold_avgpool tied (an average pool folded into this conv) stay tied: the
        # pooled conv is rounded, on its inputs' Hessian (the block sums'), as it would be
        # unfolded, and the kernel keeps the structure that lets the simulator pool first
        s = ops.tied_block(w, geo["strides"], geo["pads"], geo["dilation"])
        og = co // len(h)
        m = np.empty(w.shape, np.int64)
        for gi in range(len(h)):
            wg = w[::s, ::s, :, gi * og:(gi + 1) * og]
            mg = round_mantissas_optq(wg.reshape(-1, og), scale, fmt.mantissa_max,
                                      pooled_hessian(h[gi], (kh, kw, cg), s), mixed).reshape(wg.shape)
            m[..., gi * og:(gi + 1) * og] = np.repeat(np.repeat(mg, s, axis=0), s, axis=1)
    if layer_input_bound([m], [exp], [k.sum_axes], [net.max_payload(k.fc.src)], [signed]) \
            > fmt.max_input:
        return None
    return [m]


def _hops(net: LoweredNet) -> int:
    """Longest path from the input to the output in connection hops (delays ignored)."""
    d = {net.input: 0}
    for name in net.populations:
        for c in net.incoming(name):
            d[name] = max(d.get(name, 0), d[c.src] + 1)
    return d.get(net.output, 0)


def lower(g: nx.DiGraph, options=None, hw=None, vth_caps: Optional[dict] = None,
          hessians: Optional[dict] = None) -> LoweredNet:
    """Build the integer network from a calibrated float graph (see ``ConvertOptions``).
    ``vth_caps``: thresholds of ``rate_reset="synapse"`` layers, by population, instead of
    ``synapse_reset_vth_cap`` (``synapse_reset_caps`` measures them).  ``hessians``:
    ``optq_hessians`` of ``g``, for ``weight_rounding="optq"`` (nearest rounding without)."""
    from neurocomp.options import ConvertOptions

    opt = options or ConvertOptions()
    mode = opt.mode
    fmt = Formats.from_hw(hw)
    plans = conversion_plan(g, opt.maxpool)
    net = LoweredNet(meta={"mode": mode, "payload_max": {}, "options": opt.model_dump()})
    by_name = {p.name: p for p in plans}
    pmax_in = (1 << opt.input_bits) - 1
    unit: dict[str, float] = {}            # payload per activation 1.0, per population
    sd_allow, sd_exp = _sd_state_limits(g, plans, opt, fmt) if mode == "sigma-delta" else ({}, {})
    fan_out = {p.name: sum(s == p.name for q in plans for s in q.sources) for p in plans}
    lim = fmt.mantissa_max
    arrival: dict[str, int] = {}           # step (0-based) each population's input first arrives
    hessians = hessians or {}
    for p in plans:
        if p.kind == "input":
            scale = float(np.max(act_scale(g, p.value_node)))
            pre_scale, pre_offset = np.ones(1), np.zeros(1)
            for s in (g.nodes[n]["op"] for n in p.pre_nodes):     # y = (x*s1+o1)*s2+o2 ...
                pre_scale, pre_offset = pre_scale * s.scale, pre_offset * s.scale + s.offset
            rate = opt.max_rate if mode in ("rate", "rate-soft") else 1.0     # firing-rate scaling
            neuron = InputNeuron(graded=True, encoding="delta" if mode == "sigma-delta" else "constant",
                                 payload_per_unit=pmax_in * rate / scale, payload_max=pmax_in,
                                 pre_scale=np.asarray(pre_scale, np.float64),
                                 pre_offset=np.asarray(pre_offset, np.float64),
                                 signed=bool(g.nodes[p.value_node].get("meta", {}).get("signed", False)))
            net.add_population(p.name, p.shape, neuron)
            net.input = p.name
            # few-spike: a constant input delivers k payloads per cycle; bursts: the first layer's
            # weights, not the pixels (already at their widest), carry the burst factor
            unit[p.name] = pmax_in * (opt.fs_k if mode == "few-spike" else 1) / (
                opt.spikes_per_step if mode == "rate-soft" else 1)
            continue
        conns, b_n = _normalised(g, by_name, p)
        n = int(np.prod(p.shape))
        arrival[p.name] = max(arrival.get(k.fc.src, 0) + 1 + int(k.fc.delay) for k in conns)
        membrane = p.is_output and mode in ("rate", "rate-soft") and opt.readout == "membrane"
        if mode == "few-spike":
            neuron, mants, exps, unit[p.name] = few_spike.lower_population(
                conns, [unit[k.fc.src] for k in conns], [net.max_payload(k.fc.src) for k in conns],
                [bool(getattr(net.populations[k.fc.src].neuron, "signed", False)) for k in conns],
                b_n, p.shape, p.is_output, p.relu, opt.fs_k, opt.netx_weights, fmt)
            for k in conns:                 # a hop costs a cycle: branches align by whole cycles
                k.fc.delay = int(k.fc.delay) * opt.fs_k
        elif mode in ("rate", "rate-soft"):
            # membrane read-out: v integrates ~|logit| * vth * 64 per step and must stay below 2^23
            cap = (1 << 17) // (2 * opt.max_steps * math.ceil(opt.rate_scale)) if membrane else fmt.vth_max
            synapse_reset = opt.reset_synapse and not membrane
            # A conv takes a weight exponent where its messages stay below 2^23 (Lava's Conv has
            # no exponent: it runs as a Sparse matrix there, which does not wrap at 24 bits as
            # the conv message does).  Without one, a threshold capped for u's range (synapse
            # reset), for the biases or for the per-step input bound is the mantissa scale itself
            # and starves the kernel of bits (MNIST CNN, rate: vth 420, kernel mantissas up to 50
            # of 254); and an uncapped threshold is tied to the largest weight (254 / max|W|), so
            # a layer's biases, in whole weight units, keep a few bits (MobileNet depthwise: vth
            # 99, biases of 16 units; a positive exponent lifts it to the cap).
            # graded pixels (constant current), not a rate-soft layer's -1/+1 spikes
            pixels = {k.fc.src for k in conns if isinstance(net.populations[k.fc.src].neuron, InputNeuron)
                      and net.populations[k.fc.src].neuron.graded}
            graded_conv = any(k.kind == "conv" and k.fc.src in pixels for k in conns)
            convs_fit = all(k.kind != "conv" or net.max_payload(k.fc.src) * lim * int(np.prod(
                [k.w.shape[a] for a in k.sum_axes])) < 1 << (nm.CONV_WRAP_BITS - 1) for k in conns)
            # graded pixels outside synapse reset keep _input_layer_format's trade of input bits
            conv_exp = (convs_fit and any(k.kind == "conv" for k in conns) and not opt.netx_weights
                        and (synapse_reset or not graded_conv))
            if synapse_reset and graded_conv and not convs_fit:
                # graded input (constant current) through a conv without a weight exponent sends
                # per-step inputs far larger than a threshold that leaves u room to integrate: a
                # conv too wide for an exponent is written as an explicit matrix with one; too
                # large for that, the layer keeps Lava's reset to zero
                if all(k.kind != "conv" or net.populations[k.fc.src].size * n <= SYNAPSE_RESET_MATRIX_MAX
                       for k in conns):
                    conns = [_conv_as_dense(k, tuple(net.populations[k.fc.src].shape), p.shape)
                             if k.kind == "conv" and k.fc.src in pixels else k
                             for k in conns]
                else:
                    synapse_reset = False
            if synapse_reset:
                cap = min(cap, (vth_caps or {}).get(p.name) or synapse_reset_vth_cap(opt.max_steps))
            if b_n is not None and np.abs(b_n).max() > 0 and not synapse_reset:
                # biases are b' * vth weight units and must fit the bias mantissa/exponent
                cap = min(cap, int(fmt.max_bias_weight_units / float(np.abs(b_n).max() * opt.rate_scale)))
            cap = max(cap, 1)
            signed = [bool(getattr(net.populations[k.fc.src].neuron, "signed", False)) for k in conns]
            allow_exp = (conv_exp or all(k.kind == "dense" for k in conns)) and not opt.netx_weights
            # a synaptic filter multiplies the steady-state current by tau: thresholds and biases
            # follow, and the per-step input must leave u (24 bits) room for that gain
            du, tau = 4095, 1.0
            if opt.synapse_tau > 1 and not membrane:
                du = max(0, min(4095, int(round(4096 / opt.synapse_tau)) - 1))
                tau = 4096 / (du + 1)
                cap = max(1, int(cap / tau))
            layer_fmt = dataclasses.replace(
                fmt, accumulator_bits=fmt.accumulator_bits - int(math.ceil(math.log2(tau))))
            src0 = conns[0].fc.src
            if len(conns) == 1 and by_name[src0].kind == "input" and not allow_exp \
                    and fan_out[src0] == 1:
                # without an exponent the worst-case input bound can starve the weights of bits:
                # trade input bits for weight bits where that lowers the larger of the two errors
                lf = _input_layer_format(net, src0, conns[0].w, conns[0].sum_axes, layer_fmt, cap,
                                         signed[0], unit)
            else:
                def choose(vth_cap, exponent=None):
                    return choose_lif_format([k.w for k in conns], [unit[k.fc.src] for k in conns],
                                             [net.max_payload(k.fc.src) for k in conns],
                                             [k.sum_axes for k in conns], layer_fmt, allow_exp=allow_exp,
                                             vth_cap=vth_cap, signed=signed, exponent=exponent)
                lf = choose(cap)
                while synapse_reset and representable_self_vth(lf.vth) != lf.vth:   # ends by 255
                    lf = choose(representable_self_vth(lf.vth), lf.weight_exp)
            exps = [lf.weight_exp] * len(conns)
            if not opt.netx_weights:
                fit = [k.kind == "dense" or (k.kind == "conv" and convs_fit) for k in conns]
                exps = own_exponents(lf, [k.w for k in conns], [unit[k.fc.src] for k in conns],
                                     [net.max_payload(k.fc.src) for k in conns], [k.sum_axes for k in conns],
                                     layer_fmt, fit, signed)
            mants = lf.mantissas
            if p.name in hessians and conns[0].fc is p.inputs[0]:       # not re-written as a matrix
                mants = _optq_mantissas(conns[0], unit[conns[0].fc.src], hessians[p.name], lf, exps[0], net,
                                        signed[0], layer_fmt) or mants
            vth = int(round(lf.vth * tau))
            # biases in whole weight units (x64 in v): what NetX's CUBA bias can hold
            bias_w = np.zeros(n) if b_n is None else np.round(np.broadcast_to(
                b_n, p.shape).reshape(-1) * vth * opt.rate_scale)
            bm, be, _ = bias_to_mant_exp(bias_w * (1 << nm.ACT_SHIFT), fmt, exp_min=nm.ACT_SHIFT)
            v0 = None
            if opt.initial_membrane and not membrane:
                v0 = np.full(n, int(opt.initial_membrane * (vth << nm.VTH_SHIFT)), np.int64)
            # Lava's plain LIF (reset to zero, the rate membrane read-out) cannot delay its bias
            onset = arrival[p.name] if opt.biases_delayed and np.any(bias_w != 0) else 0
            if synapse_reset:
                neuron = _synapse_reset_neuron(vth, bias_w, opt.initial_membrane, fmt, onset)
            else:
                neuron = LIFNeuron(vth=fmt.vth_max if membrane else vth, du=du, dv=0, bias_mant=bm,
                                   bias_exp=be, v0=v0, reset="subtract" if mode == "rate-soft" else "zero",
                                   bias_onset=onset if mode == "rate-soft" else 0,
                                   signed=opt.spikes_signed and not p.is_output,
                                   burst=opt.spikes_per_step if mode == "rate-soft" and not membrane else 1)
            unit[p.name] = 1
            net.meta.setdefault("vth_nominal", {})[p.name] = int(vth)
        else:
            neuron, mants, exps, unit[p.name] = _lower_sigma_delta(
                p, conns, b_n, sd_allow[p.name], sd_exp.get(p.name, nm.ACT_SHIFT), unit, net, opt, fmt)
            # payloads of this population stay below this bound for activations up to 4x
            # the calibration scale (documented guarantee for Lava's float32 conv)
            net.meta["payload_max"][p.name] = int(math.ceil(4 * float(np.max(unit[p.name]))))
        net.add_population(p.name, p.shape, neuron)
        names = set()
        for k, m, e in zip(conns, mants, exps):
            fc = k.fc
            name = f"{fc.src}->{p.name}"
            while name in names:
                name += "'"
            names.add(name)
            cw = m.T if fc.kind == "dense" else m
            net.connect(name=name, src=fc.src, dst=p.name, kind=fc.kind, delay=int(fc.delay),
                        weight=np.ascontiguousarray(cw).astype(np.int64), weight_exp=int(e), **fc.geo)
        if p.is_output:
            net.output = p.name
    net.meta["units"] = {k: (float(v) if np.ndim(v) == 0 else [float(x) for x in v])
                         for k, v in unit.items()}
    net.meta["readout"] = {"sigma-delta": "sigma", "few-spike": "few-spike"}.get(mode, opt.readout)
    if mode == "few-spike":
        net.meta["cycle_steps"] = opt.fs_k
        net.meta["latency_steps"] = few_spike.latency_steps(_hops(net), opt.fs_k)
    net.validate()
    return net
