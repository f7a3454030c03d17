"""Write a ``LoweredNet`` as a lava-dl NetX HDF5 file and run such files.

NetX (``lava.lib.dl.netx.hdf5.Network``, lava-dl 0.6.0) builds a chain of
blocks (synapse + neuron) from an HDF5 description (spec:
``shared/specs/lava_loihi_spec.md`` §4; the installed
``lava/lib/dl/netx/hdf5.py`` is the final word).  This module

* decides whether a network can be written *exactly*
  (:func:`netx_expressible`),
* writes it (:func:`write_netx`) together with the ``Network(...)`` keyword
  arguments the file must be loaded with (:func:`netx_network_args`),
* runs a file under Lava's CPU ``fixed_pt`` models (:class:`NetxBackend`) and
  records spikes and states in the same canonical layout as the event and
  Lava backends, so the three can be compared array for array.

File layout written
-------------------
``layer/0``: ``type=input``, ``shape`` = ``(C, H, W)`` for a 3-D input, else
``(n,)``; no neuron group.  Then one group per population, in chain order:

* dense: ``type=dense``, ``shape=(n_out,)``, ``weight`` ``(n_out, n_in)``
  integers (exponent folded in), optional ``bias``, optional scalar ``delay``.
  When the source is 3-D in NetX (the input or a conv layer) a
  ``type=flatten`` group precedes it and the weight columns are permuted from
  our channels-last ``(h, w, c)`` order to NetX's ``c*H*W + h*W + w``.  When
  that source is the input itself, NetX's ``net.inp`` is the dense synapse's
  flat port: feed it the input flattened in ``(C, H, W)`` order.
* conv: ``type=conv``, ``shape`` = output ``(C, H, W)``, ``weight`` in torch
  layout ``(O, I/groups, kH, kW)`` (cross-correlation), ``stride`` /
  ``padding`` / ``dilation`` as ``(H, W)`` pairs, ``groups``, optional
  ``bias`` (per channel, or per neuron in NetX's ``(W, H, C)`` layout when it
  differs within a channel).  The first layer being a conv, NetX's ``net.inp``
  has the Lava ``(W, H, C)`` (x, y, c) shape.
* neuron group: ``LIFNeuron`` -> ``CUBA`` (``iDecay = du + 1``,
  ``vDecay = dv``, ``vThMant = vth``, ``refDelay = 1``; NetX fixes
  ``bias_exp = 6``, so ``bias`` is the LIF bias in units of 64);
  ``SigmaDeltaNeuron`` -> ``SDNN`` (``vThMant = vth``; NetX fixes
  ``state_exp = 6`` and takes ``spike_exp`` from the ``Network`` argument);
  ``SigmaNeuron`` -> ``SDNN`` with a ``sigma_output`` key (its ``bias``
  belongs to the host read-out and is not written).

Only datasets are written (NetX never reads attributes), never
``messageBits`` (NetX mis-reads it as a group).

Dense weights go through ``netx.utils.optimize_weight_bits`` (a shift ``s``,
``weight_exp = -s`` and ``num_weight_bits``) and then Lava's Dense weight
quantisation; the integer matrix written is accepted only when that round
trip reproduces it exactly (simulated here with ``numerics``; the tests check
it against the real Lava processes).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from neurocomp import numerics as nm
from neurocomp.errors import NeurocompError
from neurocomp.lowered import (Connection, InputNeuron, LIFNeuron, LoweredNet, SigmaDeltaNeuron,
                               SigmaNeuron)

from .base import SimResult
from .lava import (GRADED_MESSAGE_BITS, _Graph, _allow_lava_start_method, _quiet_lava, empty_result,
                   from_lava, raster_chunks, stream_chunk, to_lava)

__all__ = ["NetxError", "netx_expressible", "write_netx", "netx_network_args", "netx_input",
           "NetxBackend"]

NETX_STATE_EXP = 6              # NetX's SDNN neurons: state_exp = 6 (hdf5.py)
NETX_BIAS_EXP = 6               # NetX's CUBA neurons: bias_exp = 6
NETX_MAX_DELAY = 62             # NetX clips delays to 0..62 (DelayDense max_delay=62)
_INT8_MAX = 127                 # Lava Conv stores kernel/stride/padding/dilation/groups as int8
_INT16 = (-(1 << 15), (1 << 15) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)


class NetxError(NeurocompError):
    """The network cannot be written exactly as a NetX file (or the file does
    not match the network)."""


# -- the plan: what each NetX layer holds ------------------------------------------

@dataclass
class _Layer:
    pop: str                         # our population
    conn: Connection                 # its one incoming connection
    kind: str                        # "dense" or "conv"
    layout: str                      # NetX neuron layout: "whc" (conv) or "flat" (canonical)
    flatten: bool = False            # a flatten layer precedes it (3-D NetX source)
    weight: np.ndarray = None        # as written to the file
    bias: Optional[np.ndarray] = None
    neuron: dict = field(default_factory=dict)   # neuron group datasets
    netx_shape: tuple = ()           # shape of the NetX neuron process


@dataclass
class _Plan:
    input: str
    input_layout: str                # "whc", "chw" (flattened C,H,W) or "flat"
    input_file_shape: tuple
    layers: list
    args: dict

    def layout_of(self, pop: str) -> str:
        if pop == self.input:
            return self.input_layout
        for lay in self.layers:
            if lay.pop == pop:
                return lay.layout
        raise KeyError(pop)


def _shape_str(a) -> str:
    return f"[{int(np.min(a))}, {int(np.max(a))}]"


def _chain(net: LoweredNet) -> list:
    """Populations input -> ... -> output, each with one incoming connection
    from the previous one; raises ``NetxError`` with the reason otherwise."""
    pops = net.populations
    for name, p in pops.items():
        if name == net.input:
            continue
        if isinstance(p.neuron, InputNeuron):
            raise NetxError(f"population '{name}' is a second input; NetX files have one")
        inc = net.incoming(name)
        if len(inc) > 1:
            raise NetxError(f"population '{name}' has {len(inc)} inputs "
                            f"({', '.join(repr(c.src) for c in inc)}: a residual add or concat); "
                            "NetX files are a single chain")
    chain, cur = [], net.input
    while True:
        outs = net.outgoing(cur)
        if not outs:
            break
        if len(outs) > 1:
            raise NetxError(f"population '{cur}' feeds {len(outs)} populations (a branch); "
                            "NetX files are a single chain")
        chain.append(outs[0])
        cur = outs[0].dst
    if not chain:
        raise NetxError("the network has no connections")
    if cur != net.output:
        raise NetxError(f"the chain from the input ends at '{cur}', not at the output "
                        f"'{net.output}'")
    off = set(pops) - {net.input} - {c.dst for c in chain}
    if off:
        raise NetxError(f"population(s) {sorted(off)} are not on the input->output chain")
    return chain


def _simulate_netx_dense(w: np.ndarray):
    """``netx.utils.optimize_weight_bits`` followed by Lava Dense's weight
    quantisation (runtime sign detection).  Returns ``(stored, weight_exp,
    num_weight_bits, exact)`` where ``exact`` means every binary spike adds
    exactly ``w`` (stored == w << -weight_exp and the quantisation keeps it)."""
    w = np.asarray(w, dtype=np.int64)
    mx, mn = int(w.max()), int(w.min())
    if (mx > 254 and mn < 0) or (mn < -256 and mx > 0):
        return None, 0, 8, False                      # NetX clips these with a warning
    if mx < 0:
        scale, signed = -256.0 / mn, 0                # inhibitory
    elif mn >= 0:
        if mx == 0:
            return None, 0, 8, False                  # all zero: log2(inf) overflows
        scale, signed = 255.0 / mx, 0                 # excitatory
    else:                                             # mixed (also max == 0)
        with np.errstate(divide="ignore"):
            scale, signed = min(np.float64(127) / mx if mx else np.inf, -128.0 / mn), 1
    s = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    nwb = 8 - s - n
    if s < 0:
        return None, -s, nwb, False                   # a negative shift garbles the weights
    stored = w << s
    # Lava's Dense re-detects the sign mode (a mixed matrix whose max is 0 becomes
    # inhibitory) and drops 8 - nwb + is_mixed LSBs; the sum is then shifted by -s.
    sm = nm.sign_mode_of(stored)
    if 8 - nwb + int(sm == "mixed") < 0:
        return stored, -s, nwb, False
    q = nm.quantize_dense_weights(stored, nwb, sm).astype(np.int64)
    return stored, -s, nwb, bool(np.array_equal(q, stored))


def _dense_weight(net: LoweredNet, c: Connection) -> np.ndarray:
    """Integer weights (exponent folded in) that reproduce the lowered
    connection exactly through NetX, or ``NetxError``."""
    w = c.effective_weight().astype(np.int64)
    e = int(c.weight_exp)
    if e > 0:
        w = w << e
    elif e < 0:
        if np.any(w % (1 << -e)):
            raise NetxError(f"connection '{c.name}' uses weight exponent {e} (weights not "
                            f"multiples of {1 << -e}); NetX weights have no exponent "
                            "(compile with --netx)")
        w = w >> -e
    if not w.any():
        raise NetxError(f"connection '{c.name}' has all-zero weights, which NetX's "
                        "optimize_weight_bits cannot handle")
    stored, wexp, _, exact = _simulate_netx_dense(w)
    if not exact:
        raise NetxError(f"connection '{c.name}' weights {_shape_str(w)}"
                        f"{f' (after folding weight exponent {e})' if e else ''} are not "
                        "reproduced exactly by NetX's Dense (integers in [-256, 254] when mixed, "
                        "[0, 255] excitatory, [-255, -1] inhibitory)")
    if net.max_payload(c.src) > 1:      # graded: Lava's int32 dot product must not wrap
        rows = max(int(np.abs(stored).sum(axis=1).max()),
                   int(np.abs(c.effective_weight().astype(np.int64)).sum(axis=1).max()))
        bound = net.max_payload(c.src) * rows
        if bound > _INT32[1]:
            raise NetxError(f"connection '{c.name}': graded messages can reach {bound:,} with "
                            f"NetX's pre-shifted weights (x2^{-wexp}), beyond Lava's int32 dot "
                            "product; lower the weights or the payload bits")
    return w


def _lif_neuron(p) -> tuple[dict, Optional[np.ndarray]]:
    n = p.neuron
    if n.reset != "zero":
        raise NetxError(f"population '{p.name}' resets by subtraction (rate-soft), which NetX "
                        "cannot express (CUBA neurons reset to zero)")
    if n.has_reset_synapses:
        raise NetxError(f"population '{p.name}' resets through a self synapse and an always-on bias "
                        "neuron (rate_reset 'synapse'), which NetX cannot express; compile with "
                        "--rate-reset zero (or --netx) for a NetX file")
    for a in ("u0", "v0"):
        v = getattr(n, a)
        if v is not None and np.any(np.asarray(v) != 0):
            raise NetxError(f"population '{p.name}' starts with a non-zero membrane ({a}); "
                            "NetX files cannot set initial states (compile with v_init=0)")
    if not 0 <= int(n.du) <= 4095 or not 0 <= int(n.dv) <= 4096:
        raise NetxError(f"population '{p.name}' decays du={n.du}, dv={n.dv} outside "
                        "NetX's iDecay 1..4096 / vDecay 0..4096")
    bias = None
    if n.bias_mant is not None:
        be = np.zeros(p.size, np.int64) if n.bias_exp is None else n.bias_exp
        total = nm.lif_bias(np.asarray(n.bias_mant), np.asarray(be))
        if np.any(total % (1 << NETX_BIAS_EXP)):
            raise NetxError(f"bias of population '{p.name}' is not a whole number of weight "
                            f"units (NetX biases are bias_mant << {NETX_BIAS_EXP})")
        b = total >> NETX_BIAS_EXP
        if b.min() < _INT16[0] or b.max() > _INT16[1]:
            raise NetxError(f"bias of population '{p.name}' {_shape_str(b)} (units of 64) exceeds "
                            "the 16-bit bias_mant of NetX's CUBA neurons")
        bias = b if b.any() else None
    neuron = {"type": "CUBA", "iDecay": int(n.du) + 1, "vDecay": int(n.dv),
              "vThMant": int(n.vth), "refDelay": 1}
    return neuron, bias


def _sd_neuron(p) -> tuple[dict, Optional[np.ndarray]]:
    n = p.neuron
    if n.act_mode != "relu":
        raise NetxError(f"population '{p.name}' uses sigma-delta act_mode '{n.act_mode}'; "
                        "NetX's SDNN neurons are ReLU")
    if n.cum_error:
        raise NetxError(f"population '{p.name}' uses cumulative-error sigma-delta; NetX's "
                        "SDNN neurons do not")
    if int(n.state_exp) != NETX_STATE_EXP:
        raise NetxError(f"population '{p.name}' has state_exp {n.state_exp}; NetX's SDNN "
                        f"neurons fix it to {NETX_STATE_EXP}")
    bias = None
    if n.bias is not None:
        b = np.asarray(n.bias).astype(np.int64)
        big = int(np.abs(b).max(initial=0)) * 2 ** (int(n.spike_exp) + NETX_STATE_EXP)
        if big > _INT32[1]:
            raise NetxError(f"bias of population '{p.name}' overflows int32 once scaled by "
                            f"2^{int(n.spike_exp) + NETX_STATE_EXP}")
        bias = b if b.any() else None
    return {"type": "SDNN", "vThMant": int(n.vth)}, bias


def _plan(net: LoweredNet) -> _Plan:
    try:
        net.validate()
    except NeurocompError as e:
        raise NetxError(f"invalid network: {e}") from None
    chain = _chain(net)
    pops = net.populations
    inp = pops[net.input]
    sd_exps = {int(pops[c.dst].neuron.spike_exp) for c in chain
               if isinstance(pops[c.dst].neuron, SigmaDeltaNeuron)}
    if len(sd_exps) > 1:
        raise NetxError(f"sigma-delta populations use different spike_exp {sorted(sd_exps)}; "
                        "NetX takes one for the whole network")
    args = {"input_message_bits": GRADED_MESSAGE_BITS if inp.neuron.graded else 0}
    if sd_exps:
        args["spike_exp"] = sd_exps.pop()

    three_d_in = len(inp.shape) == 3
    if three_d_in:
        h, w, cc = inp.shape
        in_file_shape = (cc, h, w)
        in_layout = "whc" if chain[0].kind == "conv" else "chw"
    else:
        in_file_shape = (inp.size,)
        in_layout = "flat"

    layers, src_layout = [], ("whc" if three_d_in else "flat")
    for c in chain:
        p = pops[c.dst]
        sp = pops[c.src]
        n = p.neuron
        if isinstance(n, LIFNeuron):
            neuron, bias = _lif_neuron(p)
        elif isinstance(n, SigmaDeltaNeuron):
            neuron, bias = _sd_neuron(p)
        elif isinstance(n, SigmaNeuron):
            neuron, bias = {"type": "SDNN", "sigma_output": True}, None
        else:
            raise NetxError(f"population '{p.name}': neuron kind '{n.kind}' has no NetX form")
        if c.kind == "dense":
            if not 0 <= int(c.delay) <= NETX_MAX_DELAY:
                raise NetxError(f"connection '{c.name}' delay {c.delay} outside NetX's 0..62")
            wt = _dense_weight(net, c)
            flatten = src_layout == "whc"
            if flatten:                       # columns (h, w, c) -> NetX flatten (c, h, w)
                hh, ww, ch = sp.shape
                wt = wt.reshape(-1, hh, ww, ch).transpose(0, 3, 1, 2).reshape(wt.shape[0], -1)
            layers.append(_Layer(p.name, c, "dense", "flat", flatten, wt, bias, neuron,
                                 (p.size,)))
            src_layout = "flat"
            continue
        # conv
        if src_layout != "whc":
            raise NetxError(f"conv '{c.name}' follows a dense layer; NetX convolutions need "
                            "a 3-D (input or conv) source")
        (pt, pb), (pl, pr) = (tuple(int(v) for v in q) for q in c.pads)
        if pt != pb or pl != pr:
            raise NetxError(f"conv '{c.name}' has asymmetric padding "
                            f"(({pt}, {pb}), ({pl}, {pr})); NetX pads symmetrically")
        if c.delay:
            raise NetxError(f"conv '{c.name}' has a delay of {c.delay}; NetX ignores delays "
                            "on conv layers")
        if c.weight_exp:
            raise NetxError(f"conv '{c.name}' has weight exponent {c.weight_exp}; NetX weights have "
                            "no exponent (compile with --netx)")
        k = np.asarray(c.weight).astype(np.int64)
        params = [pt, pl, *c.strides, *c.dilation, c.groups, k.shape[0], k.shape[1]]
        if max(int(v) for v in params) > _INT8_MAX:
            raise NetxError(f"conv '{c.name}': kernel/stride/padding/dilation/groups above "
                            f"{_INT8_MAX} (Lava's Conv stores them as int8)")
        if not k.any():
            raise NetxError(f"conv '{c.name}' has all-zero weights")
        ho, wo, co = p.shape
        if bias is not None:
            per = bias.reshape(ho, wo, co)
            if np.all(per == per[:1, :1, :]):
                bias = per[0, 0, :].copy()                 # per channel
            else:
                bias = per.transpose(1, 0, 2).copy()       # per neuron, NetX (W, H, C)
        layers.append(_Layer(p.name, c, "conv", "whc", False, k.transpose(3, 2, 0, 1).copy(),
                             bias, neuron, (wo, ho, co)))
        src_layout = "whc"
    return _Plan(net.input, in_layout, in_file_shape, layers, args)


# -- public API --------------------------------------------------------------------

def netx_expressible(net: LoweredNet) -> tuple[bool, str]:
    """``(True, "")`` when ``net`` can be written as a NetX file that runs
    exactly like it, else ``(False, one-line reason)``."""
    try:
        _plan(net)
    except NetxError as e:
        return False, str(e)
    return True, ""


def netx_network_args(net: LoweredNet) -> dict:
    """Keyword arguments for ``netx.hdf5.Network(net_config=..., **args)``
    besides ``net_config``: ``input_message_bits`` (24 for a graded input,
    as the Lava backend uses; 0 for binary spikes) and, when there are
    sigma-delta layers, their ``spike_exp`` (NetX's default is 6)."""
    inp = net.populations[net.input].neuron
    args = {"input_message_bits": GRADED_MESSAGE_BITS if getattr(inp, "graded", False) else 0}
    exps = sorted({int(p.neuron.spike_exp) for p in net.populations.values()
                   if isinstance(p.neuron, SigmaDeltaNeuron)})
    if exps:
        args["spike_exp"] = exps[0]
    return args


def netx_input(net: LoweredNet, raster: np.ndarray) -> np.ndarray:
    """Our ``(batch, steps, n_input)`` raster (canonical channels-last order)
    in the layout the written file's ``net.inp`` takes: ``(batch, steps, W, H, C)``
    when the first layer is a conv, ``(batch, steps, n)`` flattened in
    ``(C, H, W)`` order when a 3-D input feeds a dense layer, else unchanged.
    (A Lava ``RingBuffer`` wants it as ``np.moveaxis(x[k], 0, -1)``.)"""
    plan = _plan(net)
    return _to_netx(np.asarray(raster), net.populations[net.input].shape, plan.input_layout)


def _str(g, key: str, value: str) -> None:
    g.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def write_netx(net: LoweredNet, path) -> None:
    """Write ``net`` as a lava-dl NetX HDF5 file; ``NetxError`` (one line)
    when it cannot be expressed exactly (see :func:`netx_expressible`)."""
    import h5py
    plan = _plan(net)
    with h5py.File(os.fspath(path), "w") as f:
        root = f.create_group("layer")
        idx = 0

        def group():
            nonlocal idx
            g = root.create_group(str(idx))
            idx += 1
            return g

        g = group()
        _str(g, "type", "input")
        g.create_dataset("shape", data=np.array(plan.input_file_shape, np.int64))
        for lay in plan.layers:
            if lay.flatten:
                g = group()
                _str(g, "type", "flatten")
                g.create_dataset("shape", data=np.array([lay.weight.shape[1]], np.int64))
            g = group()
            w = np.ascontiguousarray(lay.weight, dtype=np.int64)
            if lay.kind == "dense":
                _str(g, "type", "dense")
                g.create_dataset("shape", data=np.array([w.shape[0]], np.int64))
                g.create_dataset("inFeatures", data=np.int64(w.shape[1]))
                g.create_dataset("outFeatures", data=np.int64(w.shape[0]))
                g.create_dataset("weight", data=w)
                if lay.conn.delay:
                    g.create_dataset("delay", data=np.int64(lay.conn.delay))
            else:
                c = lay.conn
                ho, wo, co = net.populations[lay.pop].shape
                _str(g, "type", "conv")
                g.create_dataset("shape", data=np.array([co, ho, wo], np.int64))
                g.create_dataset("inChannels", data=np.int64(w.shape[1] * int(c.groups)))
                g.create_dataset("outChannels", data=np.int64(w.shape[0]))
                g.create_dataset("kernelSize", data=np.array(w.shape[2:4], np.int64))
                g.create_dataset("stride", data=np.array(c.strides, np.int64))
                g.create_dataset("padding", data=np.array([c.pads[0][0], c.pads[1][0]], np.int64))
                g.create_dataset("dilation", data=np.array(c.dilation, np.int64))
                g.create_dataset("groups", data=np.int64(c.groups))
                g.create_dataset("weight", data=w)
            if lay.bias is not None:
                g.create_dataset("bias", data=np.asarray(lay.bias, np.int64))
            ng = g.create_group("neuron")
            for key, val in lay.neuron.items():
                if key == "type":
                    _str(ng, key, val)
                elif isinstance(val, bool):
                    ng.create_dataset(key, data=np.bool_(val))
                else:
                    ng.create_dataset(key, data=np.int64(val))


# -- layouts -----------------------------------------------------------------------

def _to_netx(flat: np.ndarray, shape, layout: str) -> np.ndarray:
    """``(..., n)`` canonical -> ``(..., *netx_shape)``."""
    if layout == "whc":
        return to_lava(flat, shape)
    if layout == "chw":
        h, w, c = shape
        a = flat.reshape(flat.shape[:-1] + (h, w, c))
        return np.moveaxis(a, -1, -3).reshape(flat.shape)
    return flat


def _from_netx(arr: np.ndarray, shape, layout: str) -> np.ndarray:
    if layout == "whc":
        return from_lava(arr, shape)
    return np.asarray(arr).reshape(np.shape(arr)[:1] + (-1,))


# -- the backend ---------------------------------------------------------------------

def _import_netx():
    """``lava.lib.dl.netx``, importing lava-dl without its start-up chatter
    (slayer prints a Prophesee-toolbox warning and torch a CUDA notice)."""
    import sys
    if "lava.lib.dl.netx.hdf5" not in sys.modules:
        import contextlib
        import io
        _allow_lava_start_method()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import lava.lib.dl.netx.hdf5  # noqa: F401
    from lava.lib.dl import netx
    return netx


def _close_config(network) -> None:
    """NetX's ``NetDict`` opens the HDF5 file and never closes it (the handle
    lives as long as the ``Network``); everything is read by now, so release
    it: the file can then be rewritten or removed while the graph runs."""
    f = getattr(getattr(network, "net_config", None), "f", None)
    try:
        if f is not None:
            f.close()
    except Exception:                                   # pragma: no cover - best effort
        pass


class _NetxGraph(_Graph):
    """One NetX ``Network`` loaded from a file with a RingBuffer source and
    recording taps; reuses the Lava backend's compile / crash-safe run loop /
    reset / close (``backends.lava._Graph``)."""

    def __init__(self, net: LoweredNet, plan: _Plan, path: str):
        super().__init__(net, "fixed_pt", False)
        self.plan, self.path = plan, path
        self.network = None

    def build(self, raster: np.ndarray, rec_names: list, state_pops: list) -> None:
        from lava.proc.io.source import RingBuffer
        netx = _import_netx()
        net, plan = self.net, self.plan
        self._rec_names, self._state_pops = rec_names, state_pops
        with np.errstate(divide="ignore"):   # optimize_weight_bits: 127 / 0 when max == 0
            network = netx.hdf5.Network(net_config=self.path, **plan.args)
        self.network = network
        _close_config(network)
        if len(network.layers) != len(plan.layers):
            raise NetxError(f"NetX file {self.path} has {len(network.layers)} layers, the "
                            f"network {len(plan.layers)}")
        nb, steps, n_in = raster.shape
        inp = net.populations[net.input]
        data = _to_netx(raster.reshape(nb * steps, n_in), inp.shape, plan.input_layout)
        data = np.ascontiguousarray(np.moveaxis(data, 0, -1)).astype(np.int32)
        if tuple(data.shape[:-1]) != tuple(network.inp.shape):
            raise NetxError(f"NetX input port {tuple(network.inp.shape)} does not take the "
                            f"input '{net.input}' as {tuple(data.shape[:-1])}")
        src = RingBuffer(data=data)
        src.s_out.connect(network.inp)
        self.anchor = src
        self.procs[net.input] = src
        self.out_ports[net.input] = src.s_out
        for lay, blk in zip(plan.layers, network.layers):
            neu = blk.neuron
            if tuple(neu.s_out.shape) != tuple(lay.netx_shape):
                raise NetxError(f"NetX layer of '{lay.pop}' has shape {tuple(neu.s_out.shape)}, "
                                f"expected {lay.netx_shape} (file does not match the network)")
            self.procs[lay.pop] = neu
            self.out_ports[lay.pop] = neu.s_out
            self.conn_procs[lay.conn.name] = blk.synapse
            for v in ("u", "v", "sigma", "act", "residue", "error"):
                var = getattr(neu, v, None)
                if var is not None:
                    self.resets.append((var, np.zeros(var.shape)))
            for v in ("a_buff", "a_buf"):
                var = getattr(blk.synapse, v, None)
                if var is not None:
                    self.resets.append((var, np.zeros(var.shape)))

    def _tap_source(self, nme: str) -> tuple:
        """NetX's neurons keep NetX's own (W, H, C) shapes."""
        port = self.out_ports[nme]
        return port, tuple(port.shape)

    def _canon(self, nme: str, data: np.ndarray) -> np.ndarray:
        p = self.net.populations[nme]
        flat = _from_netx(data, p.shape, self.plan.layout_of(nme))
        return np.rint(flat).astype(np.int64).astype(np.int32)

    def spikes_out(self, nme: str, data: np.ndarray) -> np.ndarray:
        return self._canon(nme, data)

    def state_out(self, nme: str, var: str, data: np.ndarray) -> np.ndarray:
        return self._canon(nme, data)


class NetxBackend:
    """Runs a network through a lava-dl NetX file under Lava's CPU fixed_pt
    models.  ``path``: an existing file written by :func:`write_netx` for the
    network passed to ``run`` (default: written to a temporary file per run)."""

    name = "netx"

    def __init__(self, path=None, tag: str = "fixed_pt"):
        if tag != "fixed_pt":
            raise ValueError(f"NetX blocks only have fixed_pt process models; got tag '{tag}'")
        self.path = None if path is None else os.fspath(path)
        self.tag = tag

    def run(self, net: LoweredNet, raster: np.ndarray, *, record: Optional[Iterable[str]] = None,
            record_states=False) -> SimResult:
        _quiet_lava()
        plan = _plan(net)
        raster, res, names, state_pops = empty_result(net, raster, record, record_states)
        chunks = raster_chunks(raster.shape)
        if not chunks:
            return res
        tmp = None
        path = self.path
        try:
            if path is None:
                tmp = tempfile.mkdtemp(prefix="neurocomp-netx-")
                path = os.path.join(tmp, "net.h5")
                write_netx(net, path)
            elif not os.path.exists(path):
                raise NetxError(f"NetX file not found: {path}")
            for b0, b1 in chunks:
                res.seconds += self._run_chunk(net, plan, path, raster[b0:b1], b0, names,
                                               state_pops, res)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        res.spike_counts = {k: np.count_nonzero(v, axis=2).astype(np.int32)
                            for k, v in res.spikes.items() if k != net.input}
        return res

    def _run_chunk(self, net, plan, path, raster, b0, names, state_pops, res) -> float:
        _allow_lava_start_method()
        g = _NetxGraph(net, plan, path)
        try:
            g.build(raster, [n for n in names if n != net.input], state_pops)
            return stream_chunk(g, net, raster.shape, b0, g._rec_names, state_pops, res)
        finally:
            g.close()
