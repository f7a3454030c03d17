"""Lowering: a canonical, calibrated float IR becomes a ``LoweredNet``.

Which float nodes become neuron populations is decided once, by
``conversion_plan``; calibration (``balance_thresholds``) and lowering both
read it.  Each population represents the *normalised* activation of one float
node (activation / ``act_scale``, so that 1.0 is the neuron's threshold).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import networkx as nx
import numpy as np

from neurocomp import numerics as nm
from neurocomp.errors import UnsupportedLayerError
from neurocomp.ir import inputs_of, topo_order
from neurocomp.ir import ops
from neurocomp.lowered import (InputNeuron, LIFNeuron, LoweredError, LoweredNet, SigmaDeltaNeuron,
                               SigmaNeuron)
from neurocomp.quant import Formats, bias_to_mant_exp, choose_lif_format

MODES = ("rate", "rate-soft", "sigma-delta")


@dataclass
class PopPlan:
    """One population-to-be: what it computes and which float node holds its value."""

    name: str
    kind: str                       # input | weighted | avg_pool | global_pool
    value_node: str                 # float node whose activation the population carries
    op_node: Optional[str] = None   # the weighted / pooling node
    src: Optional[str] = None       # source population
    shape: tuple = ()
    relu: bool = True
    is_output: bool = False
    pre_nodes: list = field(default_factory=list)   # input preprocessing (Scale) folded on the host


_VIEW_KINDS = (ops.Flatten, ops.Reshape)


def conversion_plan(g: nx.DiGraph) -> list[PopPlan]:
    """Map the float graph onto populations; raise for what cannot be spiked yet."""
    plans: dict[str, PopPlan] = {}
    carrier: dict[str, str] = {}          # float node -> population carrying its value
    order = topo_order(g)
    for n in order:
        o = g.nodes[n]["op"]
        preds = inputs_of(g, n)
        if isinstance(o, ops.Input):
            plans[n] = PopPlan(n, "input", n, shape=o.shape)
            carrier[n] = n
            continue
        src_node = preds[0]
        src_pop = carrier.get(src_node)
        if isinstance(o, ops.Scale) and src_pop and plans[src_pop].kind == "input" \
                and plans[src_pop].value_node == src_node:
            plans[src_pop].pre_nodes.append(n)
            plans[src_pop].value_node = n
            carrier[n] = src_pop
        elif isinstance(o, (ops.Dense, ops.Conv2D, ops.DepthwiseConv2D)):
            succ = list(g.successors(n))
            nxt = g.nodes[succ[0]]["op"] if len(succ) == 1 else None
            relu = isinstance(nxt, ops.Activation) and nxt.function == "relu"
            value = succ[0] if relu else n
            p = PopPlan(n, "weighted", value, op_node=n, src=src_pop, shape=o.shape, relu=relu)
            plans[n] = p
            carrier[n] = n
            if relu:
                carrier[succ[0]] = n
        elif isinstance(o, ops.Activation) and n in carrier:
            continue                           # the ReLU of a weighted population
        elif isinstance(o, ops.Activation) and o.function in ("linear", "softmax"):
            if o.function == "softmax" and not all(
                    isinstance(g.nodes[s]["op"], ops.Output) for s in g.successors(n)):
                raise UnsupportedLayerError(
                    f"layer '{n}' applies softmax inside the network; a spiking network can only "
                    "drop a softmax at the output (argmax is unchanged)")
            carrier[n] = src_pop
        elif isinstance(o, (ops.AvgPool2D, ops.GlobalAvgPool2D)):
            if isinstance(o, ops.AvgPool2D) and any(p for pp in o.pads for p in pp):
                raise UnsupportedLayerError(
                    f"layer '{n}' averages over a padded window (padding='same'); use padding='valid'")
            kind = "avg_pool" if isinstance(o, ops.AvgPool2D) else "global_pool"
            plans[n] = PopPlan(n, kind, n, op_node=n, src=src_pop, shape=o.shape)
            carrier[n] = n
        elif isinstance(o, _VIEW_KINDS):
            carrier[n] = src_pop
        elif isinstance(o, ops.Output):
            carrier[n] = src_pop
            plans[src_pop].is_output = True
        else:
            raise UnsupportedLayerError(
                f"layer '{n}' ({o.kind}) cannot be converted to spikes yet; convertible ops: input, "
                "dense, conv2d, depthwise_conv2d, avg_pool2d (valid), global_avg_pool2d, flatten, "
                "reshape, relu, linear/softmax at the output, batchnorm after a weighted layer")
        if src_pop is None:
            raise UnsupportedLayerError(f"layer '{n}' ({o.kind}) reads a value no population carries")
    outs = [p for p in plans.values() if p.is_output]
    if len(outs) != 1:
        raise UnsupportedLayerError(f"spiking conversion needs exactly one output, got {len(outs)}")
    for p in plans.values():
        if p.kind == "weighted" and not p.relu and not p.is_output:
            raise UnsupportedLayerError(
                f"layer '{p.name}' has no ReLU after it; hidden weighted layers must end in relu "
                "(negative activations cannot be spiked)")
        if p.src and plans[p.src].is_output:
            raise UnsupportedLayerError(f"output layer '{p.src}' feeds '{p.name}'")
    return list(plans.values())


def act_scale(g: nx.DiGraph, node: str) -> np.ndarray:
    """Activation scale of a node: a scalar or one value per channel (last axis)."""
    meta = g.nodes[node].get("meta", {})
    if "act_scale" not in meta:
        raise LoweredError(f"node '{node}' has no activation scale: run balance_thresholds "
                           "(it needs calibration data) before lowering")
    return np.asarray(meta["act_scale"], dtype=np.float64)


def _connection_weights(g, p: PopPlan, src_shape) -> tuple[str, np.ndarray, Optional[np.ndarray], dict]:
    """(kind, float weight in Keras layout, float bias, conv geometry) of a population's input."""
    o = g.nodes[p.op_node]["op"]
    if isinstance(o, ops.DepthwiseConv2D):
        o = o.as_grouped_conv()
    if isinstance(o, ops.Dense):
        return "dense", o.weight, o.bias, {}
    if isinstance(o, ops.Conv2D):
        return "conv", o.weight, o.bias, dict(strides=tuple(o.strides), pads=tuple(o.pads),
                                              dilation=tuple(o.dilation), groups=int(o.groups))
    if isinstance(o, ops.AvgPool2D):
        c = src_shape[2]
        k = np.full(tuple(o.pool) + (1, c), 1.0 / (o.pool[0] * o.pool[1]))
        return "conv", k, None, dict(strides=tuple(o.strides), pads=tuple(o.pads), dilation=(1, 1),
                                     groups=c)
    if isinstance(o, ops.GlobalAvgPool2D):
        h, w, c = src_shape
        wd = np.zeros((h * w * c, c))
        wd[np.arange(h * w * c), np.tile(np.arange(c), h * w)] = 1.0 / (h * w)
        return "dense", wd, None, {}
    raise AssertionError(p.kind)


def normalised_weights(kind, w, b, geo, src_scale, dst_scale, src_shape):
    """``W * scale(source neuron) / scale(destination channel)``, ``b / scale``."""
    ls = np.broadcast_to(src_scale, src_shape).reshape(-1) if kind == "dense" else \
        np.broadcast_to(src_scale, (src_shape[-1],))
    ld = np.broadcast_to(dst_scale, (w.shape[-1],))
    if kind == "dense":
        wn = w * ls[:, None] / ld[None, :]
    else:
        kh, kw, cg, co = w.shape
        og = co // geo["groups"]
        src_ch = (np.arange(co)[None, :] // og) * cg + np.arange(cg)[:, None]     # (cg, co)
        wn = w * (ls[src_ch] / ld[None, :])[None, None]
    return wn, (None if b is None else b / ld)


def _input_layer_format(net, inp: str, w_n, sum_axes, fmt, cap, signed, unit):
    """Choose the input payload width jointly with the first layer's weights (no
    exponent): the worst-case input bound couples them."""
    neuron = net.populations[inp].neuron
    scale_per_unit = neuron.payload_per_unit / neuron.payload_max       # 1 / calibration max
    # the widest input whose first layer keeps 7-bit weight mantissas; else 4-bit input
    # (weight rounding errors hit every sample the same way, input rounding averages out)
    best = None
    for bits in range(int(np.log2(neuron.payload_max + 1)), 3, -1):
        pmax = (1 << bits) - 1
        lf = choose_lif_format([w_n], [pmax], [pmax], [sum_axes], fmt, allow_exp=False, vth_cap=cap,
                               signed=[signed])
        best = (0, bits, lf)
        if int(np.abs(lf.mantissas[0]).max()) >= 128:
            break
    _, bits, lf = best
    pmax = (1 << bits) - 1
    neuron.payload_max = pmax
    neuron.payload_per_unit = pmax * scale_per_unit
    unit[inp] = pmax
    return lf


def _plan_weights(g, plans: dict, p: PopPlan):
    """(kind, normalised weights, normalised bias, geometry, sum axes) of a population's input."""
    src = plans[p.src]
    src_shape = tuple(src.shape)
    kind, w, b, geo = _connection_weights(g, p, src_shape)
    src_scale = act_scale(g, src.value_node)
    if src.kind == "input":
        src_scale = np.max(src_scale)
    w_n, b_n = normalised_weights(kind, w, b, geo, src_scale, act_scale(g, p.value_node), src_shape)
    return kind, w_n, b_n, geo, (0 if kind == "dense" else (0, 1, 2))


def _sd_state_limits(g, plans_list, opt, fmt) -> dict[str, float]:
    """Largest sigma units per activation 1.0 each sigma-delta population may use.

    Its own bounds: the 24-bit sigma for activations up to 4x the calibration
    scale, and exact sums downstream of it (Lava's float32 conv: 2^24; int32 dot
    products: 2^31) -- ``4 * A * max column sum |W'| < bound``.  And its
    consumers': payloads are A/64 per 1.0, and a consumer q with scale A_q
    gets weights W'_q * A_q * 64 / A, which need A <= 64 * A_q * max|W'_q| / lim
    to keep full mantissas (a large A upstream starves the weights below).
    """
    plans = {p.name: p for p in plans_list}
    lim = (1 << fmt.weight_bits) - 2
    floor = (1 << nm.ACT_SHIFT) / opt.sd_threshold        # keeps the delta threshold's resolution
    own, wmax, needs = {}, {}, {}
    for p in plans_list:
        if p.kind == "input":
            continue
        kind, w_n, _, _, axes = _plan_weights(g, plans, p)
        colsum = float(np.abs(w_n).sum(axis=axes).max()) or 1.0
        exact = nm.FLOAT32_EXACT if kind == "conv" else 1 << 31
        own[p.name] = min(opt.sd_state_scale, (1 << (nm.UV_BITS - 1)) / 4, exact / (4 * colsum))
        wmax[p.name] = float(np.abs(w_n).max()) or 1.0
        nz = np.abs(w_n[w_n != 0])
        uniform = nz.size and nz.max() - nz.min() <= 1e-9 * nz.max()    # pooling: no rounding to spread
        exponent = kind == "dense" and not opt.netx_weights             # an exponent absorbs any scale
        needs[p.name] = 0 if exponent else (64 if uniform else lim)     # mantissa the weights need
    allow = {}
    for p in reversed(plans_list):
        if p.kind == "input":
            continue
        a = own[p.name]
        for q in plans_list:
            if q.src == p.name and needs[q.name]:
                a = min(a, (1 << nm.ACT_SHIFT) * allow[q.name] * wmax[q.name] / needs[q.name])
        allow[p.name] = min(own[p.name], max(a, floor))
    return allow


def lower(g: nx.DiGraph, options=None, hw=None) -> LoweredNet:
    """Build the integer network from a calibrated float graph (see ``ConvertOptions``)."""
    from neurocomp.options import ConvertOptions

    opt = options or ConvertOptions()
    mode = opt.mode
    fmt = Formats.from_hw(hw)
    plans = conversion_plan(g)
    net = LoweredNet(meta={"mode": mode, "payload_max": {}, "options": opt.model_dump()})
    by_name = {p.name: p for p in plans}
    pmax_in = (1 << opt.input_bits) - 1
    unit: dict[str, float] = {}            # payload per activation 1.0, per population
    sd_allow = _sd_state_limits(g, plans, opt, fmt) if mode == "sigma-delta" else {}
    for p in plans:
        if p.kind == "input":
            scale = float(np.max(act_scale(g, p.value_node)))
            pre_scale, pre_offset = np.ones(1), np.zeros(1)
            for s in (g.nodes[n]["op"] for n in p.pre_nodes):     # y = (x*s1+o1)*s2+o2 ...
                pre_scale, pre_offset = pre_scale * s.scale, pre_offset * s.scale + s.offset
            neuron = InputNeuron(graded=True, encoding="delta" if mode == "sigma-delta" else "constant",
                                 payload_per_unit=pmax_in / scale, payload_max=pmax_in,
                                 pre_scale=np.asarray(pre_scale, np.float64),
                                 pre_offset=np.asarray(pre_offset, np.float64),
                                 signed=bool(g.nodes[p.value_node].get("meta", {}).get("signed", False)))
            net.add_population(p.name, p.shape, neuron)
            net.input = p.name
            unit[p.name] = pmax_in
            continue
        src = by_name[p.src]
        src_pop = net.populations[p.src]
        kind, w, b, geo = _connection_weights(g, p, src_pop.shape)
        src_scale = act_scale(g, src.value_node)
        if src.kind == "input":
            src_scale = np.max(src_scale)
        w_n, b_n = normalised_weights(kind, w, b, geo, src_scale, act_scale(g, p.value_node),
                                      src_pop.shape)
        sum_axes = 0 if kind == "dense" else (0, 1, 2)
        n = int(np.prod(p.shape))
        membrane = p.is_output and mode != "sigma-delta" and opt.readout == "membrane"
        if mode in ("rate", "rate-soft"):
            # membrane read-out: v integrates ~|logit| * vth * 64 per step and must stay below 2^23
            cap = (1 << 17) // (2 * opt.max_steps) if membrane else fmt.vth_max
            if b_n is not None and np.abs(b_n).max() > 0:
                # biases are b' * vth weight units and must fit the bias mantissa/exponent
                cap = min(cap, int(fmt.max_bias_weight_units / float(np.abs(b_n).max())))
            cap = max(cap, 1)
            src_signed = bool(getattr(src_pop.neuron, "signed", False))
            allow_exp = kind == "dense" and not opt.netx_weights
            if src.kind == "input" and not allow_exp:
                # without an exponent the worst-case input bound can starve the weights of bits:
                # trade input bits for weight bits where that lowers the larger of the two errors
                lf = _input_layer_format(net, p.src, w_n, sum_axes, fmt, cap, src_signed, unit)
            else:
                lf = choose_lif_format([w_n], [unit[p.src]], [net.max_payload(p.src)], [sum_axes], fmt,
                                       allow_exp=allow_exp, vth_cap=cap, signed=[src_signed])
            mant = lf.mantissas[0]
            # biases in whole weight units (x64 in v): what NetX's CUBA bias can hold
            bias_w = np.zeros(n) if b_n is None else np.round(np.broadcast_to(
                b_n, p.shape).reshape(-1) * lf.vth)
            bm, be, _ = bias_to_mant_exp(bias_w * (1 << nm.ACT_SHIFT), fmt, exp_min=nm.ACT_SHIFT)
            v0 = None
            if opt.initial_membrane and not membrane:
                v0 = np.full(n, int(opt.initial_membrane * (lf.vth << nm.VTH_SHIFT)), np.int64)
            neuron = LIFNeuron(vth=fmt.vth_max if membrane else lf.vth, du=4095, dv=0, bias_mant=bm,
                               bias_exp=be, v0=v0, reset="subtract" if mode == "rate-soft" else "zero")
            wexp = lf.weight_exp
            unit[p.name] = 1
            net.meta.setdefault("vth_nominal", {})[p.name] = int(lf.vth)
        else:
            u_src = unit[p.src]
            wmax = float(np.abs(w_n).max()) or 1.0
            lim = (1 << fmt.weight_bits) - 2
            # activation 1.0 == a_dst sigma units.  Bounded by: the 24-bit sigma (activations
            # up to 4x the calibration scale), the weight mantissa range, and exactness of
            # the sums of the payloads this population receives (float32 conv in Lava: 2^24,
            # int32 dot products: 2^31) for activations up to 4x: 4 * a_dst * colsum(W') < bound
            exact = nm.FLOAT32_EXACT if kind == "conv" else 1 << 31
            cap = sd_allow[p.name]
            if kind == "dense" and not opt.netx_weights:
                # w_int * 2^e = W' * A / u_src, with |w_int| <= lim
                e = math.ceil(math.log2(wmax * cap / u_src / lim))
                e = min(max(e, fmt.weight_exp_min), 0)
                a_dst = min(cap, lim * u_src * 2.0 ** e / wmax)
            else:
                e = 0
                a_dst = min(cap, lim * u_src / wmax)
            while True:      # rounding can push the exact-sum bound over: shrink until it holds
                scale = a_dst / u_src / 2.0 ** e
                mant = (2 * np.round(w_n * scale / 2) if w_n.min() < 0 < w_n.max()
                        else np.round(w_n * scale)).astype(np.int64)
                worst = net.max_payload(p.src) * float(np.abs(mant).sum(axis=sum_axes).max())
                if worst < exact or a_dst < 1:
                    break
                a_dst *= 0.97 * exact / worst
            state_exp = nm.ACT_SHIFT
            b_full = None if b_n is None else np.broadcast_to(b_n, p.shape).reshape(-1) * a_dst
            if p.is_output and not p.relu:
                # a Sigma decoder (NetX sigma_output): the host adds the bias when reading out
                neuron = SigmaNeuron(bias=None if b_full is None else np.round(b_full).astype(np.int64))
                unit[p.name] = a_dst
            else:
                bias = None if b_full is None else np.round(b_full / (1 << state_exp)).astype(np.int64)
                vth = max(1, int(round(opt.sd_threshold * a_dst / (1 << state_exp))))
                neuron = SigmaDeltaNeuron(vth=vth, bias=bias, spike_exp=0, state_exp=state_exp,
                                          act_mode="relu" if p.relu else "unit")
                unit[p.name] = a_dst / (1 << state_exp)
            wexp = e
            # payloads of this population stay below this bound for activations up to 4x
            # the calibration scale (documented guarantee for Lava's float32 conv)
            net.meta["payload_max"][p.name] = int(math.ceil(4 * unit[p.name]))
        net.add_population(p.name, p.shape, neuron)
        cw = mant.T if kind == "dense" else mant
        net.connect(name=f"{p.src}->{p.name}", src=p.src, dst=p.name, kind=kind,
                    weight=np.ascontiguousarray(cw).astype(np.int64), weight_exp=int(wexp), **geo)
        if p.is_output:
            net.output = p.name
    net.meta["units"] = {k: float(v) for k, v in unit.items()}
    net.meta["readout"] = "sigma" if mode == "sigma-delta" else opt.readout
    net.validate()
    return net
