"""NIR (Neuromorphic Intermediate Representation) export and import.

Export: :func:`to_nir` / :func:`write_nir` turn a rate-mode ``LoweredNet``
into a ``nir.NIRGraph`` carrying the *quantised* values; :func:`lowered_from_nir`
rebuilds the identical ``LoweredNet`` from the node metadata of such a graph.
Import: :func:`from_nir` turns a NIR graph made by another tool into
neurocomp's float IR (rate interpretation), ready for ``neurocomp.compile``.

Conventions of the export
-------------------------
* **Layout.**  NIR is channels-first: an image population of neurocomp shape
  ``(H, W, C)`` is a NIR node of shape ``(C, H, W)``; per-neuron parameters
  (thresholds, biases, metadata arrays) are stored in that layout.  A dense
  connection from an image population goes through ``nir.Flatten``
  (``start_dim=0``: C, H, W order) and its ``Affine``/``Linear`` columns are
  permuted from neurocomp's ``(h*W + w)*C + c`` order to NIR's
  ``(c*H + h)*W + w``.  Dense weights are ``(out, in)``; conv kernels go from
  Keras ``(kh, kw, Cin/g, Cout)`` to ``(Cout, Cin/g, kh, kw)`` (both are
  cross-correlations with PyTorch's group order).
* **Units: weight units.**  One unit is what an integer weight of 1 (at
  ``weight_exp`` 0) adds to the current.  Loihi works internally in
  ``v`` units = weight units x 64 (``a << 6``, ``vth << 6``); the export
  divides by 64 throughout, so the numbers are the lowered integers:
  weights ``= effective_weight() * 2**weight_exp``, ``v_threshold = vth``,
  bias ``= (bias_mant << bias_exp) / 64``, ``v_reset = 0``, ``r = 1``.
* **Input.**  ``nir.Input`` receives the integer payloads neurocomp's encoder
  makes, ``clip(round((x*pre_scale + pre_offset) * payload_per_unit))``, every
  step (``encoding="constant"``); the encoding is in the node's metadata.
* **Neurons**, time step ``dt = 1``, forward Euler:
  ``I[t] = I[t-1] + (w_in*x[t] - I[t-1]) / tau_syn`` then
  ``v[t] = v[t-1] + (v_leak - v[t-1] + r*I[t]) / tau_mem``, spike if
  ``v > v_threshold`` (strict, as Loihi's ``v > vth << 6``).

  - no leak (``du = 4095``: the current is replaced every step, ``dv = 0``)
    -> ``nir.IF`` (``v += r*I``); the bias is the ``bias`` of the (first)
    incoming ``Affine`` / ``Conv2d``, exactly Loihi's ``v += u + bias``.
  - otherwise -> ``nir.CubaLIF`` with current decay factor
    ``(4096 - du - 1)/4096 = 1 - 1/tau_syn`` (``tau_syn = 4096/(du+1)``),
    voltage decay ``(4096 - dv)/4096 = 1 - 1/tau_mem``
    (``tau_mem = 4096/dv``), ``w_in = tau_syn`` and ``r = tau_mem`` (so input
    and current enter with gain 1 as on Loihi) and ``v_leak = bias*tau_mem``
    (so ``v_leak/tau_mem`` is the bias added every step).  The incoming
    connections are then ``Linear`` (Conv2d bias 0).
* **Reset.**  NIR's IF/LIF/CubaLIF reset *to a value* (``v = v_reset``): that
  is neurocomp's ``reset="zero"`` (Lava LIF, mode ``rate``).  NIR has no
  reset-by-subtraction (mode ``rate-soft``): the export keeps ``v_reset = 0``
  and records ``reset="subtract"`` in the node metadata (a caveat; see below).
* **Metadata** (``node.metadata``, written by ``nir.write``) keeps every
  integer: populations: ``population``, ``neuron``, ``shape_hwc``, ``vth``,
  ``du``, ``dv``, ``reset``, ``bias_mant``, ``bias_exp`` (+ ``v0``/``u0``);
  connections: ``connection``, ``src``, ``dst``, ``kind``, ``weight_exp``,
  ``num_weight_bits``, ``sign_mode``, ``delay``, ``pads`` (+ ``weight_raw``
  when Lava's quantisation changed the stored weights); input: the encoding;
  graph: ``format``, ``units``, population/connection order and
  ``neurocomp_meta`` (the ``LoweredNet.meta`` as JSON) and ``caveats``.
  Arrays are in NIR layout.  ``lowered_from_nir`` inverts the export exactly.

What NIR cannot express
-----------------------
:func:`nir_expressible` says ``False`` (and ``to_nir`` raises) for:
sigma-delta and sigma populations (graded spikes: NIR has no such neuron),
asymmetric conv padding (NIR has one pad per axis), a current decay without
voltage leak (CubaLIF would need ``tau_mem = inf``), a dense connection into an
image population (NIR has no reshape), conv biases that vary over positions,
population ranks other than 1 and 3.  :func:`nir_caveats` lists what the
export keeps only in metadata because NIR's float semantics lack it:
reset by subtraction, rate-soft's -1 spikes (``signed``) and bursts (``burst``), initial membrane/current state, the floor after a
negative ``weight_exp`` (Lava shifts the integer sum), the one-step delay of
each Loihi hop, 24-bit saturation / round-toward-zero decays, the membrane
read-out of the output (it has a threshold it never reaches).
``strict=True`` turns these caveats into failures.

Grouped convolutions (how Lava average pooling is lowered) are written as the
equivalent ``groups=1`` ``Conv2d`` (zero weights outside each group): nir
1.0.8's ``Conv2d`` takes ``weight.shape[1]`` (= C_in/groups) as its input
channel count, so a grouped ``Conv2d`` fails ``nir.read``'s type check.  The
metadata ``groups`` keeps the original and ``from_nir`` accepts grouped
``Conv2d`` nodes from files read with ``type_check=False``.

Import (``from_nir``), rate interpretation
------------------------------------------
``Affine``/``Linear`` -> ``Dense`` (``weight.T``), ``Conv2d`` -> ``Conv2D``
(channels-first -> channels-last, kernel to Keras layout; ``padding`` int,
pair, ``"valid"`` or ``"same"`` with stride 1), ``AvgPool2d`` -> ``AvgPool2D``,
``SumPool2d`` -> ``AvgPool2D`` with the window area folded into the next
weighted layer, ``Flatten`` -> ``Flatten`` with the C,H,W -> H,W,C permutation
folded into the rows of the next ``Dense``, ``Delay`` -> nothing (delays do not
change rates), ``Input``/``Output`` -> ``Input``/``Output``.  A spiking neuron
becomes ``Activation("relu")`` whose output equals its firing rate in spikes
per step: the rate of a neuron driven by a constant current is
``dt * (r*I + v_leak) / (tau * v_threshold)`` (IF: ``tau = 1``,
``v_leak = 0``; CubaLIF: ``r*w_in`` and ``tau_mem``; the ``-v`` leak term is
neglected), so that factor is folded into the preceding layer's weights and
bias.  Rates above 1 spike per step are not clipped unless
``clip_rate=True``.  The output layer's neuron (IF, LIF, CubaLIF or the
non-spiking I, LI, CubaLI) is dropped by default (``drop_output_neuron``):
the output is then its folded pre-activation, whose argmax is the read-out.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import networkx as nx
import numpy as np

from neurocomp import numerics as nm
from neurocomp.errors import NeurocompError, UnsupportedLayerError
from neurocomp.lowered import InputNeuron, LIFNeuron, LoweredNet, SigmaDeltaNeuron, SigmaNeuron

FORMAT = "neurocomp-nir"
VERSION = 1
UNITS = ("weight units: weights = effective integer weights * 2**weight_exp, v_threshold = vth, "
         "bias = (bias_mant << bias_exp) / 64 (Loihi's v units / 64); input = integer payloads; dt = 1 step")

#: NIR node types ``from_nir`` understands.
SUPPORTED_NIR_NODES = ("Input", "Output", "Affine", "Linear", "Conv2d", "IF", "LIF", "CubaLIF",
                       "I", "LI", "CubaLI", "Flatten", "AvgPool2d", "SumPool2d", "Delay")
_SPIKING = ("IF", "LIF", "CubaLIF")
_NON_SPIKING = ("I", "LI", "CubaLI")


class NIRError(NeurocompError):
    """A network cannot be written as NIR, or a NIR graph is malformed."""


def _nir():
    import nir
    return nir


# -- layouts ----------------------------------------------------------------------

def _chw(shape_hwc) -> tuple:
    """NIR shape of a population of neurocomp shape ``shape_hwc``."""
    s = tuple(int(d) for d in shape_hwc)
    return (s[2], s[0], s[1]) if len(s) == 3 else s


def _hwc_to_nir(flat, shape_hwc) -> np.ndarray:
    """Flat per-neuron array (channels-last order) -> array of the NIR node's shape."""
    a = np.asarray(flat).reshape(tuple(shape_hwc))
    return np.ascontiguousarray(a.transpose(2, 0, 1)) if a.ndim == 3 else a


def _nir_to_hwc(arr, shape_hwc) -> np.ndarray:
    a = np.asarray(arr).reshape(_chw(shape_hwc))
    return (a.transpose(1, 2, 0) if a.ndim == 3 else a).reshape(-1)


def chw_order(h: int, w: int, c: int) -> np.ndarray:
    """``perm[k]`` = channels-last flat index of the element at channels-first flat index ``k``."""
    return np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).reshape(-1)


# -- what NIR can hold ---------------------------------------------------------------

def _resolved_sign_mode(c) -> str:
    return c.sign_mode or nm.sign_mode_of(np.asarray(c.weight))


def _lif_bias_w(p) -> np.ndarray:
    """Per-neuron bias in weight units (flat, channels-last)."""
    n = p.neuron
    if n.bias_mant is None:
        return np.zeros(p.size)
    be = n.bias_exp if n.bias_exp is not None else np.zeros(p.size, np.int64)
    return nm.lif_bias(n.bias_mant, be).astype(np.float64) / (1 << nm.ACT_SHIFT)


def _leaky(n: LIFNeuron) -> bool:
    return not (n.du == nm.DECAY_UNITY - 1 and n.dv == 0)


def _problems(net: LoweredNet) -> list[str]:
    """Reasons NIR cannot express ``net`` at all (first one is reported)."""
    out = []
    pops = net.populations
    for p in pops.values():
        n = p.neuron
        if isinstance(n, SigmaDeltaNeuron):
            out.append(f"population '{p.name}' is a sigma-delta neuron: NIR has no graded-spike "
                       "(sigma-delta) neuron; compile with mode='rate' or 'rate-soft' to export NIR")
        elif isinstance(n, SigmaNeuron):
            out.append(f"population '{p.name}' is a sigma decoder: NIR has no graded-spike "
                       "(sigma-delta) neuron; compile with mode='rate' or 'rate-soft' to export NIR")
        elif not isinstance(n, (InputNeuron, LIFNeuron)):
            out.append(f"population '{p.name}' has neuron kind '{n.kind}' that NIR cannot express")
        if len(p.shape) not in (1, 3):
            out.append(f"population '{p.name}' has shape {p.shape}: only (N,) and (H, W, C) map to NIR")
        if isinstance(n, LIFNeuron) and n.has_reset_synapses:
            out.append(f"population '{p.name}' resets through a self synapse fed by an always-on bias "
                       "neuron (rate_reset 'synapse'); compile with rate_reset='zero' to export NIR")
        elif isinstance(n, LIFNeuron) and n.dv == 0 and n.du != nm.DECAY_UNITY - 1:
            out.append(f"population '{p.name}' has a decaying current (du={n.du}) but no voltage leak "
                       "(dv=0): NIR's CubaLIF would need tau_mem = inf")
    for c in net.connections:
        if c.kind == "conv":
            (t, b), (l, r) = c.pads
            if t != b or l != r:
                out.append(f"connection '{c.name}' pads {tuple(map(tuple, c.pads))} asymmetrically: "
                           "NIR's Conv2d has one padding per axis")
            dst = pops[c.dst]
            if isinstance(dst.neuron, LIFNeuron) and not _leaky(dst.neuron) \
                    and net.incoming(c.dst)[0] is c:
                bw = _lif_bias_w(dst).reshape(dst.shape)
                if not np.all(bw == bw[:1, :1, :]):
                    out.append(f"population '{dst.name}' has a bias that varies over positions: "
                               "NIR's Conv2d bias is per channel")
        elif c.kind == "dense" and len(pops[c.dst].shape) != 1:
            out.append(f"dense connection '{c.name}' targets image population '{c.dst}': "
                       "NIR has no reshape node")
    return out


def _caveats(net: LoweredNet) -> list[tuple[bool, str]]:
    """(changes what a standard NIR simulator computes, text) for each caveat."""
    out = []
    for p in net.populations.values():
        n = p.neuron
        if not isinstance(n, LIFNeuron):
            continue
        if n.reset == "subtract":
            out.append((True, f"population '{p.name}' resets by subtraction; NIR resets to v_reset "
                              "(metadata reset='subtract')"))
        for a in ("v0", "u0"):
            v = getattr(n, a)
            if v is not None and np.any(np.asarray(v) != 0):
                out.append((True, f"population '{p.name}' starts from a non-zero {a}; NIR has no "
                                  f"initial state (metadata {a})"))
        if n.bias_onset:
            out.append((True, f"population '{p.name}' starts its bias at step {n.bias_onset}; NIR "
                              "biases are constant (metadata bias_onset)"))
        if n.signed:
            out.append((True, f"population '{p.name}' sends -1 spikes to take back spikes its input "
                              "no longer warrants; NIR spikes are binary (metadata signed)"))
        if n.burst > 1:
            out.append((True, f"population '{p.name}' sends up to {n.burst} spikes per step in one "
                              "graded message; NIR spikes are binary (metadata burst)"))
        if _leaky(n):
            out.append((True, f"population '{p.name}' decays with round-toward-zero integer "
                              "arithmetic; NIR's CubaLIF is real-valued"))
    for c in net.connections:
        if c.weight_exp < 0:
            out.append((True, f"connection '{c.name}' has weight_exp {c.weight_exp}: Lava floors the "
                              "shifted integer sum, NIR multiplies real weights"))
    if net.meta.get("readout") == "membrane":
        out.append((False, f"output '{net.output}' is read from its membrane potential (its threshold "
                           "is never reached), not from spikes"))
    out.append((False, "each Loihi connection hop costs one time step; NIR edges are instantaneous"))
    out.append((False, "Loihi saturates v and wraps u at 24 bits; NIR values are unbounded"))
    return out


def nir_caveats(net: LoweredNet) -> list[str]:
    """What the export keeps only in metadata because NIR's float semantics lack it."""
    return [text for _, text in _caveats(net)]


def nir_expressible(net: LoweredNet, strict: bool = False) -> tuple[bool, str]:
    """``(True, "")`` if ``to_nir`` can write ``net``, else ``(False, one-line reason)``.

    ``strict``: also refuse what NIR's float semantics would compute differently
    (reset by subtraction, initial state, negative weight exponents, integer decays).
    """
    probs = _problems(net)
    if strict:
        probs += [text for hard, text in _caveats(net) if hard]
    if probs:
        more = f" (and {len(probs) - 1} more)" if len(probs) > 1 else ""
        return False, probs[0] + more
    return True, ""


# -- export -------------------------------------------------------------------------

def _safe(name: str, taken: set) -> str:
    base = str(name).replace("/", "_") or "node"
    out, k = base, 1
    while out in taken:
        out, k = f"{base}_{k}", k + 1
    taken.add(out)
    return out


def _ungroup(wk: np.ndarray, groups: int) -> np.ndarray:
    """(Cout, Cin/g, kh, kw) grouped kernel -> the equivalent (Cout, Cin, kh, kw) with g = 1
    (zeros outside each output channel's group)."""
    if groups == 1:
        return wk
    co, cg, kh, kw = wk.shape
    full = np.zeros((co, cg * groups, kh, kw), wk.dtype)
    for o in range(co):
        gi = o // (co // groups)
        full[o, gi * cg:(gi + 1) * cg] = wk[o]
    return full


def _regroup(full: np.ndarray, groups: int) -> np.ndarray:
    if groups == 1:
        return full
    co, ci = full.shape[:2]
    cg = ci // groups
    return np.stack([full[o, (o // (co // groups)) * cg:(o // (co // groups) + 1) * cg]
                     for o in range(co)])


def to_nir(net: LoweredNet, strict: bool = False):
    """The lowered network as a ``nir.NIRGraph`` with its quantised values (see module doc).

    Raises ``NIRError`` (a ``NeurocompError``) naming what NIR cannot express.
    """
    nir = _nir()
    ok, reason = nir_expressible(net, strict=strict)
    if not ok:
        raise NIRError(f"cannot export to NIR: {reason}")
    pops = net.populations
    taken: set = set()
    pop_node = {name: _safe(name, taken) for name in pops}
    nodes: dict = {}
    edges: list = []
    conn_nodes: list = []

    for p in pops.values():
        n = p.neuron
        shape = _chw(p.shape)
        md = {"population": p.name, "neuron": n.kind, "shape_hwc": np.asarray(p.shape, np.int64)}
        if isinstance(n, InputNeuron):
            md.update(graded=bool(n.graded), encoding=n.encoding,
                      payload_per_unit=float(n.payload_per_unit), payload_max=int(n.payload_max),
                      signed=bool(n.signed))
            for a in ("pre_scale", "pre_offset"):
                if getattr(n, a) is not None:
                    md[a] = np.asarray(getattr(n, a), np.float64)
            nodes[pop_node[p.name]] = nir.Input(input_type=np.asarray(shape), metadata=md)
            continue
        md.update(vth=int(n.vth), du=int(n.du), dv=int(n.dv), reset=n.reset,
                  vth_shift=nm.VTH_SHIFT, act_shift=nm.ACT_SHIFT)
        bm = n.bias_mant if n.bias_mant is not None else np.zeros(p.size, np.int64)
        be = n.bias_exp if n.bias_exp is not None else np.zeros(p.size, np.int64)
        md["bias_mant"] = _hwc_to_nir(bm, p.shape)
        md["bias_exp"] = _hwc_to_nir(be, p.shape)
        md["has_bias"] = n.bias_mant is not None
        for a in ("v0", "u0"):
            if getattr(n, a) is not None:
                md[a] = _hwc_to_nir(getattr(n, a), p.shape)
        if n.bias_onset:
            md["bias_onset"] = int(n.bias_onset)
        if n.signed:
            md["signed"] = True
        if n.burst > 1:
            md["burst"] = int(n.burst)
        if p.name == net.output:
            md["readout"] = str(net.meta.get("readout", "count"))
            if p.name in net.meta.get("vth_nominal", {}):
                md["vth_nominal"] = int(net.meta["vth_nominal"][p.name])
        vth = np.full(shape, float(n.vth))
        if _leaky(n):
            tau_syn = float(nm.DECAY_UNITY) / (n.du + 1)
            tau_mem = float(nm.DECAY_UNITY) / n.dv
            bias_w = _hwc_to_nir(_lif_bias_w(p), p.shape)
            node = nir.CubaLIF(tau_syn=np.full(shape, tau_syn), tau_mem=np.full(shape, tau_mem),
                               r=np.full(shape, tau_mem), v_leak=bias_w * tau_mem, v_threshold=vth,
                               v_reset=np.zeros(shape), w_in=np.full(shape, tau_syn), metadata=md)
        else:
            node = nir.IF(r=np.ones(shape), v_threshold=vth, v_reset=np.zeros(shape), metadata=md)
        nodes[pop_node[p.name]] = node

    for c in net.connections:
        src, dst = pops[c.src], pops[c.dst]
        cname = _safe(c.name, taken)
        conn_nodes.append(cname)
        # the bias rides on the first incoming connection of a non-leaky population
        carry_bias = isinstance(dst.neuron, LIFNeuron) and not _leaky(dst.neuron) \
            and net.incoming(c.dst)[0] is c
        bias_w = _lif_bias_w(dst) if carry_bias else None
        w_eff = np.asarray(c.effective_weight()).astype(np.int64)
        md = {"connection": c.name, "src": c.src, "dst": c.dst, "kind": c.kind,
              "weight_exp": int(c.weight_exp), "num_weight_bits": int(c.num_weight_bits),
              "sign_mode": c.sign_mode or "auto", "sign_mode_resolved": _resolved_sign_mode(c),
              "delay": int(c.delay), "carries_bias": bool(carry_bias),
              "weight_dtype": str(np.asarray(c.weight).dtype)}
        if not np.array_equal(w_eff, np.asarray(c.weight)):
            md["weight_raw"] = np.asarray(c.weight)
        scale = 2.0 ** c.weight_exp
        prev = pop_node[c.src]
        if c.kind == "dense":
            w = w_eff.astype(np.float64) * scale                     # (n_dst, n_src)
            if len(src.shape) == 3:
                h, wd, ch = src.shape
                w = w[:, chw_order(h, wd, ch)]
                fname = _safe(f"{c.name}.flatten", taken)
                nodes[fname] = nir.Flatten(input_type={"input": np.asarray(_chw(src.shape))},
                                           start_dim=0, end_dim=-1,
                                           metadata={"connection": c.name, "order": "CHW"})
                edges.append((prev, fname))
                prev = fname
            if carry_bias and np.any(bias_w != 0):
                node = nir.Affine(weight=w, bias=np.asarray(bias_w, np.float64), metadata=md)
            else:
                node = nir.Linear(weight=w, metadata=md)
        else:
            (pt, _), (pl, _) = c.pads
            md["pads"] = np.asarray(c.pads, np.int64)
            wk = np.ascontiguousarray(w_eff.transpose(3, 2, 0, 1)).astype(np.float64) * scale
            wk = _ungroup(wk, int(c.groups))
            md["groups"] = int(c.groups)
            co = wk.shape[0]
            b = np.zeros(co) if bias_w is None else np.asarray(bias_w).reshape(dst.shape)[0, 0, :]
            node = nir.Conv2d(input_shape=tuple(int(d) for d in src.shape[:2]), weight=wk,
                              stride=tuple(int(s) for s in c.strides), padding=(int(pt), int(pl)),
                              dilation=tuple(int(d) for d in c.dilation), groups=1,
                              bias=np.asarray(b, np.float64), metadata=md)
        nodes[cname] = node
        edges.append((prev, cname))
        prev = cname
        if c.delay:
            dname = _safe(f"{c.name}.delay", taken)
            nodes[dname] = nir.Delay(delay=np.full(_chw(dst.shape), float(c.delay)),
                                     metadata={"connection": c.name})
            edges.append((prev, dname))
            prev = dname
        edges.append((prev, pop_node[c.dst]))

    out_name = _safe("output", taken)
    nodes[out_name] = nir.Output(output_type=np.asarray(_chw(pops[net.output].shape)),
                                 metadata={"population": net.output})
    edges.append((pop_node[net.output], out_name))
    from neurocomp.lowered import _jsonable
    meta = {"format": FORMAT, "version": VERSION, "units": UNITS, "layout": "channels-first (C, H, W)",
            "input": net.input, "output": net.output,
            "population_nodes": json.dumps([[k, v] for k, v in pop_node.items()]),
            "connection_nodes": json.dumps(conn_nodes),
            "neurocomp_meta": json.dumps(_jsonable(net.meta), default=_json_default),
            "caveats": "\n".join(nir_caveats(net))}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


def _json_default(o):
    return o.tolist() if isinstance(o, np.ndarray) else str(o)


def write_nir(net: LoweredNet, path, strict: bool = False) -> Path:
    """``nir.write(path, to_nir(net))``; returns the path."""
    path = Path(path)
    _nir().write(path, to_nir(net, strict=strict))
    return path


def read_nir(path):
    """``nir.read(path)`` with a neurocomp error when the file is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise NIRError(f"NIR file not found: {path}")
    try:
        return _nir().read(path)
    except (OSError, KeyError, ValueError, AssertionError) as e:
        raise NIRError(f"cannot read NIR file {path}: {e}") from None


# -- exact inverse of the export -------------------------------------------------------

def _md(node) -> dict:
    md = getattr(node, "metadata", None) or {}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in md.items()}


def _py(v):
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def lowered_from_nir(graph_or_path) -> LoweredNet:
    """Rebuild the ``LoweredNet`` a graph written by :func:`to_nir` came from (from its metadata)."""
    from neurocomp.lowered import _tuple
    g = read_nir(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    gm = _md(g)
    if gm.get("format") != FORMAT:
        raise NIRError("this NIR graph was not written by neurocomp (no 'neurocomp-nir' metadata); "
                       "use from_nir to import it as a float network")
    net = LoweredNet(input=gm["input"], output=gm["output"], meta=json.loads(gm["neurocomp_meta"]))
    for name, node_name in json.loads(gm["population_nodes"]):
        node = g.nodes[node_name]
        md = _md(node)
        shape = tuple(int(d) for d in np.asarray(md["shape_hwc"]).reshape(-1))
        if md["neuron"] == "input":
            kw = {k: _py(md[k]) for k in ("graded", "encoding", "payload_per_unit", "payload_max",
                                            "signed")}
            for a in ("pre_scale", "pre_offset"):
                if a in md:
                    kw[a] = np.asarray(md[a])
            neuron = InputNeuron(**kw)
        elif md["neuron"] == "lif":
            kw = {k: _py(md[k]) for k in ("vth", "du", "dv", "reset")}
            if _py(md.get("has_bias", True)):
                kw["bias_mant"] = _nir_to_hwc(md["bias_mant"], shape)
                kw["bias_exp"] = _nir_to_hwc(md["bias_exp"], shape)
            for a in ("v0", "u0"):
                if a in md:
                    kw[a] = _nir_to_hwc(md[a], shape)
            kw["bias_onset"] = int(_py(md.get("bias_onset", 0)))
            kw["signed"] = bool(_py(md.get("signed", False)))
            kw["burst"] = int(_py(md.get("burst", 1)))
            neuron = LIFNeuron(**kw)
        else:
            raise NIRError(f"node '{node_name}' has unknown neuron kind '{md['neuron']}'")
        net.add_population(name, shape, neuron)
    for node_name in json.loads(gm["connection_nodes"]):
        node = g.nodes[node_name]
        md = _md(node)
        src_shape = net.populations[md["src"]].shape
        e = _py(md["weight_exp"])
        kw = dict(name=md["connection"], src=md["src"], dst=md["dst"], kind=md["kind"], weight_exp=e,
                  num_weight_bits=_py(md["num_weight_bits"]), delay=_py(md["delay"]),
                  sign_mode=None if md["sign_mode"] == "auto" else md["sign_mode"])
        dtype = np.dtype(md.get("weight_dtype", "int64"))
        w = np.asarray(node.weight, np.float64) / 2.0 ** e
        if md["kind"] == "dense":
            if len(src_shape) == 3:
                wn = np.empty_like(w)
                wn[:, chw_order(*src_shape)] = w
                w = wn
        else:
            groups = _py(md.get("groups", node.groups))
            w = _regroup(w, groups).transpose(2, 3, 1, 0)
            kw.update(strides=_tuple(np.asarray(node.stride).tolist()),
                      dilation=_tuple(np.asarray(node.dilation).tolist()), groups=groups,
                      pads=_tuple(np.asarray(md["pads"]).tolist()))
        kw["weight"] = np.asarray(md["weight_raw"]) if "weight_raw" in md else \
            np.ascontiguousarray(np.rint(w)).astype(dtype)
        net.connect(**kw)
    net.validate()
    return net


# -- import ----------------------------------------------------------------------------

class _Val:
    """What a NIR node's output is in the float IR being built.

    ``node``: IR node carrying the value; ``shape``: NIR (channels-first) shape;
    ``perm``: for a flattened image, channels-last index of each NIR position
    (None: same order); ``mult``: NIR value = ``mult`` * IR value;
    ``weighted``: IR weighted nodes whose outputs are summed into this value and
    only feed it (where a neuron's rate factor can be folded)."""

    def __init__(self, node, shape, perm=None, mult=1.0, weighted=()):
        self.node, self.shape, self.perm, self.mult = node, tuple(int(d) for d in shape), perm, mult
        self.weighted = list(weighted)


def _unsupported(name, node, why=None) -> UnsupportedLayerError:
    t = type(node).__name__
    if why:
        return UnsupportedLayerError(f"NIR node '{name}' ({t}): {why}")
    return UnsupportedLayerError(f"NIR node '{name}' ({t}): NIR node type '{t}' is not supported; "
                                 f"supported NIR nodes: {', '.join(SUPPORTED_NIR_NODES)}")


def _pair(v, what, name, node) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2 or np.any(a != np.round(a)):
        raise _unsupported(name, node, f"{what} {v!r} is not an int or a pair of ints")
    return int(a[0]), int(a[1])


def _param(node, attr, shape, default=None) -> np.ndarray:
    v = getattr(node, attr, None)
    if v is None:
        v = default
    a = np.asarray(v, np.float64)
    if a.ndim == 1 and len(shape) == 3 and a.shape[0] == shape[0] and a.size != np.prod(shape):
        a = a.reshape(-1, 1, 1)                      # per channel
    return np.broadcast_to(a, shape).astype(np.float64)


def from_nir(graph_or_path, *, dt: float = 1.0, drop_output_neuron: bool = True,
             clip_rate: bool = False, name: Optional[str] = None) -> nx.DiGraph:
    """A NIR graph (object or file) as neurocomp's float IR, rate interpretation (module doc).

    ``dt``: the NIR time step one neurocomp step stands for (rates are per step).
    ``drop_output_neuron``: the output is the last layer's folded pre-activation
    (argmax read-out) instead of its rate.  ``clip_rate``: cap hidden rates at
    1 spike per step (``relu`` with ``max_value=1``; a neurocomp burst neuron's
    metadata ``burst`` raises the cap to that many).
    Raises ``UnsupportedLayerError`` for NIR nodes (or uses of them) it cannot map.
    """
    from neurocomp.ir import add_op, new_graph, validate
    from neurocomp.ir import ops

    g_nir = read_nir(graph_or_path) if isinstance(graph_or_path, (str, os.PathLike)) else graph_or_path
    nodes = g_nir.nodes
    for nname, node in nodes.items():
        if type(node).__name__ not in SUPPORTED_NIR_NODES:
            raise _unsupported(nname, node)
    dg = nx.DiGraph()
    dg.add_nodes_from(nodes)
    for a, b in g_nir.edges:
        dg.add_edge(a, b)
    if not nx.is_directed_acyclic_graph(dg):
        cyc = nx.find_cycle(dg)
        raise UnsupportedLayerError(f"NIR graph has a recurrent edge ({cyc[-1][0]} -> {cyc[-1][1]}); "
                                    "from_nir supports feed-forward graphs only")
    rank = {n: i for i, n in enumerate(nodes)}
    order = list(nx.lexicographical_topological_sort(dg, key=rank.__getitem__))
    preds = {n: sorted(dg.predecessors(n), key=rank.__getitem__) for n in order}

    md_name = _md(g_nir).get("name")
    g = new_graph(name or (md_name if isinstance(md_name, str) else "nir"))
    g.graph["source"] = "nir"
    notes: list[str] = []
    taken: set = set()
    vals: dict[str, _Val] = {}

    def fresh(base):
        return _safe(base, taken)

    def consumers(n):
        return list(dg.successors(n))

    def take_input(n, node) -> _Val:
        ps = preds[n]
        if not ps:
            raise _unsupported(n, node, "has no input edge")
        vs = [vals[p] for p in ps]
        if len(vs) == 1:
            return vs[0]
        if len({v.shape for v in vs}) != 1 or any(v.mult != vs[0].mult for v in vs) or \
                any(not _same_perm(v.perm, vs[0].perm) for v in vs):
            raise _unsupported(n, node, f"sums inputs of different shapes or layouts from {ps}")
        s = add_op(g, fresh(f"{n}.sum"), ops.Add(), [v.node for v in vs])
        w = [x for v in vs for x in v.weighted] if all(v.weighted for v in vs) else []
        return _Val(s, vs[0].shape, vs[0].perm, vs[0].mult, w)

    def ir_shape(shape_cf):
        return (shape_cf[1], shape_cf[2], shape_cf[0]) if len(shape_cf) == 3 else tuple(shape_cf)

    for n in order:
        node = nodes[n]
        t = type(node).__name__
        if t == "Input":
            shape = tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
            if len(shape) not in (1, 3):
                raise _unsupported(n, node, f"input shape {shape}: only (N,) and (C, H, W) are supported")
            vals[n] = _Val(add_op(g, fresh(n), ops.Input(shape=ir_shape(shape))), shape)
            continue
        v = take_input(n, node)
        sole = len(consumers(n)) == 1
        if t == "Output":
            if v.perm is not None:
                raise _unsupported(n, node, "reads a flattened image directly; the C,H,W order of NIR's "
                                   "flatten can only be folded into a following Affine/Linear")
            src = v.node
            if v.mult != 1.0:
                src = add_op(g, fresh(f"{n}.scale"), ops.Scale(scale=np.asarray(float(v.mult)),
                                                                offset=np.asarray(0.0)), [src])
            add_op(g, fresh(n), ops.Output(), [src])
        elif t in ("Affine", "Linear"):
            wt = np.asarray(node.weight, np.float64)
            if wt.ndim != 2:
                raise _unsupported(n, node, f"weight of shape {wt.shape}: only 2-D (out, in) is supported")
            if len(v.shape) != 1 or v.shape[0] != wt.shape[1]:
                raise _unsupported(n, node, f"weight {wt.shape} does not fit its input of shape {v.shape}")
            wd = wt.T * v.mult
            if v.perm is not None:
                wr = np.empty_like(wd)
                wr[v.perm] = wd
                wd = wr
            b = np.asarray(node.bias, np.float64).reshape(-1) if t == "Affine" else None
            if b is not None and b.size == 1:
                b = np.full(wt.shape[0], float(b[0]))
            d = add_op(g, fresh(n), ops.Dense(weight=wd, bias=b), [v.node])
            vals[n] = _Val(d, (wt.shape[0],), weighted=[d] if sole else [])
        elif t == "Conv2d":
            if len(v.shape) != 3 or v.perm is not None:
                raise _unsupported(n, node, f"input of shape {v.shape} is not a (C, H, W) image")
            wt = np.asarray(node.weight, np.float64)
            co, cg, kh, kw = wt.shape
            stride = _pair(node.stride, "stride", n, node)
            dil = _pair(node.dilation, "dilation", n, node)
            pad = node.padding
            if isinstance(pad, bytes):
                pad = pad.decode()
            if isinstance(pad, str):
                if pad == "valid":
                    pads = ((0, 0), (0, 0))
                elif stride != (1, 1):
                    raise _unsupported(n, node, "padding='same' with a stride other than 1")
                else:
                    pads = (ops.same_pads(v.shape[1], kh, 1, dil[0]), ops.same_pads(v.shape[2], kw, 1, dil[1]))
            else:
                ph, pw = _pair(pad, "padding", n, node)
                pads = ((ph, ph), (pw, pw))
            bias = getattr(node, "bias", None)
            b = None if bias is None else np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), (co,)).copy()
            op = ops.Conv2D(weight=np.ascontiguousarray(wt.transpose(2, 3, 1, 0)) * v.mult, bias=b,
                            strides=stride, pads=pads, dilation=dil, groups=int(np.asarray(node.groups)))
            try:
                c = add_op(g, fresh(n), op, [v.node])
            except NeurocompError as e:
                raise _unsupported(n, node, str(e)) from None
            ho, wo, _ = g.nodes[c]["op"].shape
            vals[n] = _Val(c, (co, ho, wo), weighted=[c] if sole else [])
        elif t in ("AvgPool2d", "SumPool2d"):
            if len(v.shape) != 3 or v.perm is not None:
                raise _unsupported(n, node, f"input of shape {v.shape} is not a (C, H, W) image")
            k = _pair(node.kernel_size, "kernel_size", n, node)
            s = _pair(node.stride if node.stride is not None else node.kernel_size, "stride", n, node)
            pd = _pair(node.padding if node.padding is not None else 0, "padding", n, node)
            if pd != (0, 0):
                raise _unsupported(n, node, f"padding {pd}: only unpadded pooling is supported")
            p = add_op(g, fresh(n), ops.AvgPool2D(pool=k, strides=s), [v.node])
            ho, wo, _ = g.nodes[p]["op"].shape
            mult = v.mult * (k[0] * k[1] if t == "SumPool2d" else 1)
            vals[n] = _Val(p, (v.shape[0], ho, wo), mult=mult)
        elif t == "Flatten":
            in_shape = v.shape
            if len(in_shape) == 1:
                vals[n] = v
                continue
            if len(in_shape) != 3:
                raise _unsupported(n, node, f"input of shape {in_shape}")
            start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
            from nir.ir.utils import calc_flatten_output
            res = calc_flatten_output(list(in_shape), start, end)
            if len(res) != 1:
                if (start, end) in ((1, -1), (0, -2)):
                    notes.append(f"flatten '{n}' (start_dim={start}, end_dim={end}) read as a full "
                                 "flatten (an exporter counting the batch axis)")
                else:
                    raise _unsupported(n, node, f"flattens {in_shape} to {tuple(res)}; only a full "
                                       "flatten to a vector is supported")
            cch, h, w = in_shape
            perm = chw_order(h, w, cch)
            f = add_op(g, fresh(n), ops.Flatten(), [v.node])
            vals[n] = _Val(f, (cch * h * w,), None if np.array_equal(perm, np.arange(perm.size)) else perm,
                           v.mult)
        elif t == "Delay":
            notes.append(f"delay '{n}' dropped (delays do not change rates)")
            vals[n] = _Val(v.node, v.shape, v.perm, v.mult, v.weighted if sole else [])
        elif t in _SPIKING + _NON_SPIKING:
            outs = consumers(n)
            at_output = bool(outs) and all(type(nodes[o]).__name__ == "Output" for o in outs)
            if t in _NON_SPIKING and not at_output:
                raise _unsupported(n, node, "a non-spiking neuron is supported only as the output layer")
            if v.perm is not None:
                raise _unsupported(n, node, "reads a flattened image directly")
            f, c = _rate_factor(n, node, t, v.shape, dt)
            if v.mult != 1.0:
                f = f * v.mult
            keep_relu = t in _SPIKING and not (at_output and drop_output_neuron)
            src = _fold(g, v, f, c, n, node, fresh)
            if keep_relu:
                # a neurocomp burst neuron (metadata burst) sends up to that many spikes per step
                cap = float(_py(_md(node).get("burst", 1)))
                act = ops.Activation(function="relu", max_value=cap if clip_rate else None)
                src = add_op(g, fresh(n), act, [src])
            vals[n] = _Val(src, v.shape)
            if t in ("LIF", "CubaLIF"):
                notes.append(f"neuron '{n}' ({t}): membrane leak neglected in the rate interpretation")
        else:  # pragma: no cover - filtered above
            raise _unsupported(n, node)
    g.graph["nir_notes"] = notes
    validate(g)
    return g


def _same_perm(a, b) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def _rate_factor(name, node, t, shape, dt) -> tuple[np.ndarray, np.ndarray]:
    """(factor on the input current, constant term): rate = factor * I + const (per step)."""
    ones = np.ones(shape)
    if t == "I":
        return dt * _param(node, "r", shape), 0 * ones
    if t == "LI":     # steady state v = v_leak + r I
        return _param(node, "r", shape), _param(node, "v_leak", shape)
    if t == "CubaLI":
        return _param(node, "r", shape) * _param(node, "w_in", shape, 1.0), _param(node, "v_leak", shape)
    vth = _param(node, "v_threshold", shape)
    if np.any(vth <= 0):
        raise _unsupported(name, node, "v_threshold must be positive for a rate interpretation")
    r = _param(node, "r", shape)
    if t == "IF":
        return dt * r / vth, 0 * ones
    if t == "LIF":
        tau = _param(node, "tau", shape)
        return dt * r / (tau * vth), dt * _param(node, "v_leak", shape) / (tau * vth)
    tau = _param(node, "tau_mem", shape)
    w_in = _param(node, "w_in", shape, 1.0)
    return dt * r * w_in / (tau * vth), dt * _param(node, "v_leak", shape) / (tau * vth)


def _fold(g, v: _Val, f, c, name, node, fresh) -> str:
    """Apply ``y = f * x + c`` (per NIR neuron) to ``v``: into its weighted producers
    when it has them, else as a ``Scale`` op.  Returns the IR node carrying y."""
    from neurocomp.ir import add_op
    from neurocomp.ir import ops
    if len(v.shape) == 3:
        if not (np.all(f == f[:, :1, :1]) and np.all(c == c[:, :1, :1])):
            raise _unsupported(name, node, "parameters vary over positions of an image; only "
                               "per-channel values can be folded into a convolution")
        fc, cc = f[:, 0, 0], c[:, 0, 0]
    else:
        fc, cc = f.reshape(-1), c.reshape(-1)
    if np.all(fc == 1.0) and np.all(cc == 0.0):
        return v.node
    if v.weighted:
        for i, wn in enumerate(v.weighted):
            o = g.nodes[wn]["op"]
            o.weight = o.weight * fc                 # output axis is last (Dense and Conv2D)
            b = (o.bias * fc) if o.bias is not None else None
            if i == 0 and np.any(cc != 0):
                b = (b if b is not None else 0.0) + cc
            o.bias = None if b is None else np.asarray(b, np.float64)
        return v.node
    return add_op(g, fresh(f"{name}.scale"), ops.Scale(scale=np.asarray(fc, np.float64),
                                                       offset=np.asarray(cc, np.float64)), [v.node])


__all__ = ["to_nir", "write_nir", "read_nir", "from_nir", "lowered_from_nir", "nir_expressible",
           "nir_caveats", "chw_order", "NIRError", "SUPPORTED_NIR_NODES", "FORMAT", "UNITS"]
