"""Run a ``LoweredNet`` on Intel's Lava framework (lava-nc 0.10.0).

``LavaBackend(tag="fixed_pt")`` runs Lava's CPU process models
(``Loihi2SimCfg(select_tag="fixed_pt")``), which are bit-exact with the
arithmetic in ``neurocomp.numerics`` (spec: ``shared/specs/lava_loihi_spec.md``).
``tag="floating_pt"`` selects Lava's float models instead (supported, not
bit-exact: no quantisation, no wraps; parameters are converted to the float
models' units and recorded values converted back, see ``_FloatMap``).
``hardware=True`` runs on a Loihi 2 chip through ``Loihi2HwCfg``; that needs
the non-public ``lava-loihi`` package (``lava.utils.loihi.is_installed()``),
otherwise ``run`` raises ``BackendUnavailableError``.

Mapping of the lowered IR onto Lava processes
---------------------------------------------

* input population  -> ``lava.proc.io.source.RingBuffer`` holding the rasters
  of all samples of a chunk back to back (``(*lava_shape, samples*steps)``);
  the RingBuffer sends ``data[..., (t-1) % len]`` at step t, so sample k of
  the chunk occupies steps ``k*steps+1 .. (k+1)*steps``.
* ``LIFNeuron`` (reset "zero") -> ``lava.proc.lif.process.LIF`` (scalars as
  Python ints: float ``vth``/``du``/``dv`` crash fixed_pt).  ``reset="subtract"``
  -> ``lava_procs.LIFSoftReset`` (Lava's bit-accurate LIF with a subtractive
  reset, a ``bias_onset`` step counter and, for ``signed`` spikes, a net spike
  count; needs Loihi 2 microcode on a chip).
  A ``rate_reset="synapse"`` population's always-on bias neuron starts from
  ``v = -first spike step``, which delays its bias.
* ``SigmaDeltaNeuron`` -> ``lava.proc.sdn.process.SigmaDelta`` (the constructor
  scales ``vth`` and ``bias`` by ``2**(spike_exp+state_exp)`` itself).
* ``dense`` -> ``lava.proc.dense.process.Dense`` (``DelayDense`` with a constant
  delays matrix when ``delay > 0``: a spike at t arrives at t+1+delay) with
  ``weight_exp``, ``num_weight_bits``, ``sign_mode`` (only when given) and
  ``num_message_bits=24`` for graded sources (0 for binary ones).
* ``conv`` -> ``lava.proc.conv.process.Conv`` when expressible: symmetric pads
  per axis (top == bottom, left == right), no delay, and stride / padding /
  dilation / groups <= 127 (Lava stores them as int8).  The Keras kernel
  ``K (kh, kw, Cin/g, Cout)`` becomes ``K[::-1, ::-1].transpose(3, 1, 0, 2)``
  = ``(Cout, kw, kh, Cin/g)``: the spatial flip cancels the flip of Lava's
  true convolution, so the overall operation is Keras' cross-correlation
  (the same as NetX's ``W[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)`` from
  torch ``(O, I, kH, kW)``).  Stride, padding and dilation are given in
  Lava's ``(x, y) = (W, H)`` order.
  Otherwise (asymmetric pads, e.g. Keras 'same' with stride 2 on even sizes,
  a delay, or int8 overflow) the convolution is written out as the explicit
  ``(n_dst, n_src)`` matrix in canonical order and run with
  ``lava.proc.sparse.process.Sparse`` (``DelaySparse`` when delayed).  That is
  exact only when Dense/Sparse's weight quantisation (8-bit clip, LSB drop of
  mixed-sign matrices) leaves the matrix unchanged,
  ``numerics.quantize_dense_weights(M) == M``, and when no message can reach
  2**23 (Conv wraps its output to 24 bits, Sparse to 32); otherwise
  ``LavaMappingError`` is raised.
* several connections into one population: every ``a_out`` is connected to
  the one ``a_in`` (Lava sums them).

Layout
------
A population of logical shape ``(H, W, C)`` lives in Lava as ``(W, H, C)``
(Lava's (x, y, c) convention for Conv ports): canonical flat index
``(h*W + w)*C + c`` <-> Lava array index ``[w, h, c]``.  Every other shape is
a flat ``(n,)`` process in canonical order.  Dense/Sparse connections see the
canonical flat order through virtual ports: a ``(W, H, C)`` source is
connected as ``s_out.transpose([1, 0, 2]).flatten()`` and a ``(W, H, C)``
destination as ``a_out.reshape((H, W, C)).transpose([1, 0, 2])``.  Recorded
arrays are converted back with ``np.swapaxes(x, -3, -2).reshape(..., n)``.

Samples and state
-----------------
Lava cannot batch.  One process graph is built (and compiled) per chunk of
samples and reused: between samples every stateful Var (LIF ``u``/``v`` to
``u0``/``v0``; SigmaDelta ``sigma``/``act``/``residue``/``error``; the
connections' ``a_buff``/``a_buf`` holding the in-flight step) is set back to
its initial value with ``Var.set``, which makes each sample start exactly as
a freshly built network (the tests check batches against per-sample
references).  Lava transfers ``Var.set``/``Var.get`` one element per message
(~20 us each), so recording does not use ``Monitor.get_data``: spikes are
streamed per step to the host with ``lava.proc.io.extractor.Extractor``
(connected to ``s_out``: zero delay, same step) and states with
``lava.proc.io.extractor.VarWire`` (a RefPort read in the post-management
phase of each step, i.e. after spike and reset: exactly what a ``Monitor`` Var
probe records).

``SimResult.seconds`` is the wall time spent inside Lava's ``run()`` calls only
(compilation, process start-up, resets and the draining of recordings are
excluded).
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Optional

import numpy as np

from neurocomp import numerics as nm
from neurocomp.errors import BackendUnavailableError, NeurocompError
from neurocomp.lowered import (Connection, FewSpikeNeuron, InputNeuron, LIFNeuron, LoweredNet,
                               dense_conv_matrix,
                               Population, SigmaDeltaNeuron, SigmaNeuron)

from .base import STATE_VARS, SimResult, record_set, state_set

TAGS = ("fixed_pt", "floating_pt")
GRADED_MESSAGE_BITS = 24          # Loihi 2 graded spikes are 24-bit signed
_INT8_MAX = 127                   # Conv stores stride/padding/dilation/groups as int8
_RASTER_BUDGET = 1 << 24          # input elements per built graph (chunking)
_STREAM_BUDGET = 1 << 22          # float64 elements per extractor buffer

_HW_HINT = ("Loihi hardware needs Intel's non-public lava-loihi package (INRC members only; "
            "lava.utils.loihi.is_installed() is false here); use --backend lava (CPU "
            "simulation of the same arithmetic) or --backend event")


from ._mp import allow_lava_start_method as _allow_lava_start_method  # noqa: E402
from ._mp import frozen_heap as _frozen_heap  # noqa: E402


_allow_lava_start_method()


class LavaMappingError(NeurocompError):
    """A connection cannot be expressed exactly with Lava's processes."""


class LavaRunError(RuntimeError):
    """A Lava process model died during ``run()`` (its traceback is on stderr)."""


# -- layout -------------------------------------------------------------------

def lava_shape(shape) -> tuple:
    """Shape of a population's Lava process: (H,W,C) -> (W,H,C), else (n,)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 3:
        return (shape[1], shape[0], shape[2])
    return (int(np.prod(shape)),)


def to_lava(flat: np.ndarray, shape) -> np.ndarray:
    """``(..., n)`` canonical channels-last flat -> ``(..., *lava_shape)``."""
    flat = np.asarray(flat)
    if len(shape) == 3:
        h, w, c = shape
        return np.swapaxes(flat.reshape(flat.shape[:-1] + (h, w, c)), -3, -2)
    return flat.reshape(flat.shape[:-1] + (int(np.prod(shape)),))


def from_lava(arr: np.ndarray, shape) -> np.ndarray:
    """``(..., *lava_shape)`` -> ``(..., n)`` canonical flat order."""
    arr = np.asarray(arr)
    if len(shape) == 3:
        a = np.swapaxes(arr, -3, -2)
        return a.reshape(a.shape[:-3] + (-1,))
    k = len(lava_shape(shape))
    return arr.reshape(arr.shape[:arr.ndim - k] + (-1,))


def _flat_out(port, shape):
    """An OutPort in Lava layout seen in canonical flat order."""
    if len(shape) == 3:
        return port.transpose([1, 0, 2]).flatten()
    return port


def _shaped_out(port, shape):
    """A flat (canonical) OutPort reshaped to a destination's Lava layout."""
    if len(shape) == 3:
        h, w, c = shape
        return port.reshape((h, w, c)).transpose([1, 0, 2])
    return port


def keras_to_lava_kernel(k: np.ndarray) -> np.ndarray:
    """Keras ``(kh, kw, Cin/g, Cout)`` cross-correlation kernel -> Lava Conv
    ``(Cout, kw, kh, Cin/g)`` with the flip that cancels Lava's convolution flip."""
    return np.ascontiguousarray(np.asarray(k)[::-1, ::-1].transpose(3, 1, 0, 2))


def conv_matrix(net: LoweredNet, c: Connection) -> np.ndarray:
    """The conv connection as an explicit ``(n_dst, n_src)`` int64 matrix in
    canonical order (channels-last cross-correlation, explicit pads)."""
    return dense_conv_matrix(np.asarray(c.weight).astype(np.int64), net.populations[c.src].shape,
                             net.populations[c.dst].shape, c.strides, c.pads, c.dilation, c.groups).T.copy()


def conv_matrix_sparse(net: LoweredNet, c: Connection):
    """``conv_matrix`` as a scipy CSR matrix, built without the dense array."""
    from scipy.sparse import csr_matrix
    from .event import conv_stamp_csr
    indptr, indices, data = conv_stamp_csr(net.populations[c.src].shape, c)
    n_src, n_dst = net.populations[c.src].size, net.populations[c.dst].size
    src_major = csr_matrix((data.astype(np.int64), indices, indptr), shape=(n_src, n_dst))
    return src_major.T.tocsr()


def _sign_mode(name: Optional[str]):
    from lava.utils.weightutils import SignMode
    return {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY,
            "inhibitory": SignMode.INHIBITORY}[name]


# -- the backend ------------------------------------------------------------------

class LavaBackend:
    """Lava (lava-nc) backend; see the module docstring."""

    name = "lava"

    def __init__(self, tag: str = "fixed_pt", hardware: bool = False):
        if tag not in TAGS:
            raise ValueError(f"unknown Lava model tag '{tag}'; use one of {TAGS}")
        self.tag = tag
        self.hardware = bool(hardware)

    # -- public ------------------------------------------------------------------
    def run(self, net: LoweredNet, raster: np.ndarray, *, record: Optional[Iterable[str]] = None,
            record_states=False) -> SimResult:
        if self.hardware:
            _require_hardware()
            if record_states:
                raise NeurocompError("record_states is not available on Loihi hardware "
                                     "(state probes run on the CPU simulation only); "
                                     "drop --record-states or use --backend lava")
        _quiet_lava()
        net.validate()
        _check_supported(net)
        raster, res, names, state_pops = empty_result(net, raster, record, record_states)
        chunks = raster_chunks(raster.shape)
        if not chunks:
            return res
        for b0, b1 in chunks:
            res.seconds += self._run_chunk(net, raster[b0:b1], b0, names, state_pops, res)
        res.spike_counts = {k: np.count_nonzero(v, axis=2).astype(np.int32)
                            for k, v in res.spikes.items() if k != net.input}
        return res

    # -- one built graph ----------------------------------------------------------
    def _run_chunk(self, net, raster, b0, names, state_pops, res) -> float:
        _allow_lava_start_method()
        g = _Graph(net, self.tag, self.hardware)
        try:
            g.build(raster, [n for n in names if n != net.input], state_pops)
            return stream_chunk(g, net, raster.shape, b0, list(g.spike_taps), state_pops, res)
        finally:
            g.close()


def empty_result(net: LoweredNet, raster, record, record_states) -> tuple:
    """``(raster, result, recorded populations, state populations)``: the checked
    raster and a ``SimResult`` with zeroed recordings (the input's spikes are the
    raster as given).  Shared by the Lava and NetX backends."""
    raster = np.asarray(raster)
    inp = net.populations[net.input]
    if raster.ndim != 3 or raster.shape[2] != inp.size:
        raise ValueError(f"raster must be (batch, steps, {inp.size}), got {raster.shape}")
    batch, steps, _ = raster.shape
    names = record_set(net, record)
    wanted = state_set(net, record_states)
    state_pops = [p for p in net.populations if p in wanted]
    res = SimResult(steps=steps, samples=batch)
    for nme in names:
        res.spikes[nme] = np.zeros((batch, steps, net.populations[nme].size), np.int32)
    for nme in state_pops:
        kind = net.populations[nme].neuron.kind
        res.states[nme] = {v: np.zeros((batch, steps, net.populations[nme].size), np.int32)
                           for v in STATE_VARS[kind]}
    if net.input in res.spikes:
        res.spikes[net.input][...] = raster
    return raster, res, names, state_pops


def raster_chunks(shape) -> list[tuple[int, int]]:
    """``(b0, b1)`` sample ranges of one built graph each, within ``_RASTER_BUDGET``
    input elements (none for an empty raster)."""
    batch, steps, n_in = shape
    if batch == 0 or steps == 0:
        return []
    chunk = max(1, min(batch, _RASTER_BUDGET // max(1, n_in * steps)))
    return [(b0, min(batch, b0 + chunk)) for b0 in range(0, batch, chunk)]


def stream_chunk(g, net, raster_shape, b0, rec_names, state_pops, res) -> float:
    """Compile a built graph ``g`` and run every sample of its chunk, resetting
    state between samples and streaming recordings into ``res``; returns the
    seconds spent inside Lava's ``run()``.  Shared by the Lava and NetX backends."""
    nb, steps, _ = raster_shape
    max_n = max([net.populations[n].size for n in list(rec_names) + list(state_pops)] + [1])
    seg = max(1, min(steps, _STREAM_BUDGET // max_n))
    with _frozen_heap():                      # both fork: VarWire's manager, the runtime
        g.add_taps(seg)
        g.compile()
    seconds = 0.0
    for k in range(nb):
        if k:
            g.reset()
        t = 0
        while t < steps:
            n = min(seg, steps - t)
            seconds += g.run_steps(n)
            for nme, ex in g.spike_taps.items():
                data = np.array([ex.receive() for _ in range(n)])
                res.spikes[nme][b0 + k, t:t + n] = g.spikes_out(nme, data)
            for (nme, var), vw in g.state_taps.items():
                data = np.array([vw.receive() for _ in range(n)])
                res.states[nme][var][b0 + k, t:t + n] = g.state_out(nme, var, data)
            t += n
    return seconds


def _quiet_lava() -> None:
    for nme in ("lava", "lava.magma", "lava.lib"):
        lg = logging.getLogger(nme)
        if lg.level == logging.NOTSET or lg.level < logging.ERROR:
            lg.setLevel(logging.ERROR)


def _require_hardware() -> None:
    try:
        from lava.utils import loihi
        ok = loihi.is_installed()
    except Exception:                                   # pragma: no cover
        ok = False
    if not ok:
        raise BackendUnavailableError(_HW_HINT)


def _check_supported(net: LoweredNet) -> None:
    for p in net.populations.values():
        if isinstance(p.neuron, LIFNeuron) and p.neuron.reset not in ("zero", "subtract"):
            raise LavaMappingError(f"population '{p.name}': LIF reset '{p.neuron.reset}' has no "
                                   "Lava process (known: zero, subtract)")


class _Graph:
    """The Lava processes of one network, built for one chunk of samples."""

    def __init__(self, net: LoweredNet, tag: str, hardware: bool):
        self.net, self.tag, self.hw = net, tag, hardware
        self.float = tag == "floating_pt"
        self.procs: dict = {}          # population -> Lava neuron process (RingBuffer for input)
        self.conn_procs: dict = {}     # connection -> Lava connection process
        self.out_ports: dict = {}      # population -> OutPort the connections read from
        self.resets: list = []         # (Var, initial value) restored between samples
        self.spike_taps: dict = {}     # population -> Extractor
        self.state_taps: dict = {}     # (population, var) -> VarWire
        self.varwires: list = []
        self.anchor = None
        self.runtime_made = False
        self.failed = False
        self._rec_names: list = []
        self._state_pops: list = []

    # -- build ---------------------------------------------------------------------
    def build(self, raster: np.ndarray, rec_names: list, state_pops: list) -> None:
        from lava.proc.io.source import RingBuffer
        net = self.net
        self._rec_names, self._state_pops = rec_names, state_pops
        nb, steps, n_in = raster.shape
        inp = net.populations[net.input]
        data = to_lava(raster.reshape(nb * steps, n_in), inp.shape)
        data = np.ascontiguousarray(np.moveaxis(data, 0, -1)).astype(
            np.float64 if self.float else np.int32)
        src = RingBuffer(data=data)
        self.procs[net.input] = src
        self.anchor = src
        port = src.s_out
        if self.hw:
            from lava.proc import embedded_io as eio      # lava-loihi only
            ad = eio.spike.PyToNxAdapter(shape=lava_shape(inp.shape),
                                         num_message_bits=self._msg_bits(net.input))
            src.s_out.connect(ad.inp)
            port = ad.out
        self.out_ports[net.input] = port
        for p in net.populations.values():
            if p.name == net.input:
                continue
            proc = self._neuron(p)
            self.procs[p.name] = proc
            self.out_ports[p.name] = proc.s_out
        for c in net.connections:
            self._connection(c)
        for p in net.populations.values():
            if isinstance(p.neuron, LIFNeuron):
                self._reset_synapses(p)

    def _msg_bits(self, pop: str) -> int:
        n = self.net.populations[pop].neuron
        return GRADED_MESSAGE_BITS if getattr(n, "graded", False) else 0

    def _neuron(self, p: Population):
        n = p.neuron
        shp = lava_shape(p.shape)

        def arr(a, default=0):
            if a is None:
                return np.full(shp, default, np.int64)
            return to_lava(np.asarray(a).astype(np.int64), p.shape)

        if isinstance(n, LIFNeuron):
            if n.reset == "subtract":   # custom process: Loihi 2 microcode on a chip
                from .lava_procs import LIFSoftReset as LIF
            else:
                from lava.proc.lif.process import LIF
            u0, v0 = arr(n.u0), arr(n.v0)
            # LoweredNet.validate (run() calls it) refuses a delayed bias_mant on Lava's plain LIF
            kw = {"bias_onset": int(n.bias_onset), "signed": bool(n.signed), "burst": int(n.burst)} \
                if n.reset == "subtract" else {}
            if self.float:
                bias = nm.lif_bias(arr(n.bias_mant), arr(n.bias_exp)) / 64.0
                proc = LIF(shape=shp, vth=float(n.vth), du=(int(n.du) + 1) / 4096.0,
                           dv=int(n.dv) / 4096.0, bias_mant=bias, bias_exp=0,
                           u=u0 / 64.0, v=v0 / 64.0, **kw)
                self.resets += [(proc.u, u0 / 64.0), (proc.v, v0 / 64.0)]
            else:
                proc = LIF(shape=shp, vth=int(n.vth), du=int(n.du), dv=int(n.dv),
                           bias_mant=arr(n.bias_mant), bias_exp=arr(n.bias_exp), u=u0, v=v0, **kw)
                self.resets += [(proc.u, u0), (proc.v, v0)]
            if kw:
                self.resets += [(proc.steps_run, np.zeros(1)), (proc.count, np.zeros(shp))]
            return proc
        if isinstance(n, SigmaDeltaNeuron):
            from lava.proc.sdn.process import ActivationMode, SigmaDelta
            modes = {"relu": ActivationMode.RELU, "unit": ActivationMode.UNIT}
            if n.act_mode not in modes:
                raise LavaMappingError(f"population '{p.name}': sigma-delta act_mode "
                                       f"'{n.act_mode}' unknown (relu or unit)")
            bias = 0 if n.bias is None else arr(n.bias)
            proc = SigmaDelta(shape=shp, vth=int(n.vth), bias=bias, act_mode=modes[n.act_mode],
                              cum_error=bool(n.cum_error), spike_exp=int(n.spike_exp),
                              state_exp=int(n.state_exp))
            zero = np.zeros(shp)
            self.resets += [(getattr(proc, v), zero) for v in ("sigma", "act", "residue", "error")]
            return proc
        if isinstance(n, SigmaNeuron):
            from lava.proc.sdn.process import Sigma
            proc = Sigma(shape=shp)
            self.resets += [(proc.sigma, np.zeros(shp))]
            return proc
        if isinstance(n, FewSpikeNeuron):
            if self.float:
                raise LavaMappingError(f"population '{p.name}': few-spike neurons have only a fixed_pt "
                                       "model; use --backend lava")
            from .lava_procs import FewSpike
            proc = FewSpike(shape=shp, k=int(n.k), vth=int(n.vth), bias=arr(n.bias))
            zero = np.zeros(shp)
            self.resets += [(proc.fx, zero), (proc.v, zero), (proc.cycle_step, np.zeros(1))]
            return proc
        raise LavaMappingError(f"population '{p.name}': neuron kind '{n.kind}' has no Lava mapping")

    def _connection(self, c: Connection) -> None:
        net = self.net
        sp, dp = net.populations[c.src], net.populations[c.dst]
        nmb = self._msg_bits(c.src)
        scale = 1.0
        if self.float and isinstance(sp.neuron, SigmaDeltaNeuron):
            # float SigmaDelta sends the unshifted delta; fixed sends delta >> state_exp
            scale = 2.0 ** -int(sp.neuron.state_exp)
        if c.kind == "dense":
            self._dense(c, np.asarray(c.weight), c.weight_exp, c.num_weight_bits, c.sign_mode,
                        nmb, scale)
            return
        if c.kind != "conv":
            raise LavaMappingError(f"connection '{c.name}': unknown kind '{c.kind}'")
        (pt, pb), (pl, pr) = c.pads
        params = [pt, pl, *c.strides, *c.dilation, c.groups]
        if pt == pb and pl == pr and c.delay == 0 and c.weight_exp == 0 and max(params) <= _INT8_MAX:
            from lava.proc.conv.process import Conv
            w = keras_to_lava_kernel(c.weight)
            w = w.astype(np.float64) * scale if self.float else w.astype(np.int64)
            conv = Conv(weight=w, input_shape=lava_shape(sp.shape), padding=(int(pl), int(pt)),
                        stride=(int(c.strides[1]), int(c.strides[0])),
                        dilation=(int(c.dilation[1]), int(c.dilation[0])),
                        groups=int(c.groups), num_message_bits=nmb)
            if tuple(conv.a_out.shape) != lava_shape(dp.shape):
                raise LavaMappingError(f"conv '{c.name}': Lava output shape {conv.a_out.shape} "
                                       f"!= destination {lava_shape(dp.shape)} (W,H,C)")
            self.conn_procs[c.name] = conv
            self.out_ports[c.src].connect(conv.s_in)
            conv.a_out.connect(self.procs[c.dst].a_in)
            self.resets.append((conv.a_buf, np.zeros(conv.a_out.shape)))
            return
        # explicit-matrix fallback, kept sparse: a delayed conv (a residual skip, a max-pool
        # tree's window) or one with a weight exponent (Lava's Conv ignores it) can join large
        # maps whose dense matrix would not fit in memory
        m = conv_matrix_sparse(net, c)
        if not np.array_equal(nm.quantize_dense_weights(m.data), m.data):
            raise LavaMappingError(
                f"conv '{c.name}' (pads {c.pads}, delay {c.delay}) cannot use Lava's Conv and its "
                "weights are not invariant under Sparse/Dense weight quantisation (8-bit clip, "
                "LSB drop of mixed-sign matrices); use symmetric pads or weights in "
                "[-256, 254] (even when mixed) / [0, 255] / [-255, 0]")
        bound = net.max_payload(c.src) * int(np.asarray(abs(m).sum(axis=1)).max(initial=0))
        if bound >= (1 << (nm.CONV_WRAP_BITS - 1)):
            raise LavaMappingError(
                f"conv '{c.name}': messages can reach {bound:,} >= 2^23, where Lava's Conv "
                "wraps to 24 bits but the Sparse fallback does not; lower weights or payloads")
        self._dense(c, m, int(c.weight_exp), 8, nm.sign_mode_of(m.data), nmb, scale, sparse=True)

    def _reset_synapses(self, p: Population) -> None:
        """``rate_reset="synapse"``: the one-to-one self synapse and the always-on
        bias neuron (a LIF with vth 0 and bias 1 spikes at every step) of ``p``."""
        from scipy.sparse import identity
        n = p.neuron
        if n.self_weight:
            m, e = nm.mantissa_and_exp(-int(n.self_weight))
            w = identity(p.size, dtype=np.int64, format="csr") * -m
            self._dense(Connection(name=f"{p.name}/self", src=p.name, dst=p.name, kind="dense"), w,
                        e, 8, "inhibitory", 0, 1.0, sparse=True)
        if n.bias_in_mant is not None:
            from lava.proc.lif.process import LIF
            name = f"{p.name}/bias"
            one = Population(name, (1,), LIFNeuron(vth=0, bias_mant=np.ones(1, np.int64)))
            # v > 0 spikes: from v0 = -k (bias 1 per step) the first spike comes at step k
            v0 = -float(n.bias_neuron_first_spike)
            if self.float:
                v0 /= 64.0
                proc = LIF(shape=(1,), vth=0.0, du=1.0, dv=0.0, bias_mant=1.0 / 64.0, bias_exp=0,
                           v=v0)
            else:
                proc = LIF(shape=(1,), vth=0, du=4095, dv=0, bias_mant=1, bias_exp=0, v=int(v0))
            self.resets += [(proc.u, np.zeros(1)), (proc.v, np.full(1, v0))]
            self.procs[name] = proc
            self.out_ports[name] = proc.s_out
            w = np.asarray(n.bias_in_mant, np.int64).reshape(-1, 1)
            self._dense(Connection(name=name, src=name, dst=p.name, kind="dense"), w,
                        int(n.bias_in_exp), 8, None, 0, 1.0, pops={name: one, p.name: p})

    def _dense(self, c, w, weight_exp, nwb, sign_mode, nmb, scale, sparse=False, pops=None) -> None:
        net = self.net
        pops = pops or net.populations
        sp, dp = pops[c.src], pops[c.dst]
        from scipy.sparse import csr_matrix, issparse
        if issparse(w):
            w = w.tocsr()
            w.data = nm.quantize_dense_weights(w.data, nwb, sign_mode).astype(np.float64) \
                * 2.0 ** int(weight_exp) * scale if self.float else w.data.astype(np.int64)
        elif self.float:
            w = nm.quantize_dense_weights(w, nwb, sign_mode).astype(np.float64) \
                * 2.0 ** int(weight_exp) * scale
        else:
            w = np.asarray(w).astype(np.int64)
        kw = {}
        if not self.float:
            kw = dict(weight_exp=int(weight_exp), num_weight_bits=int(nwb))
            if sign_mode is not None:
                kw["sign_mode"] = _sign_mode(sign_mode)
        if c.delay > 0 and sparse:
            from lava.proc.sparse.process import DelaySparse
            w = csr_matrix(w)
            delays = w.copy()
            delays.data = np.full(delays.data.shape, int(c.delay), dtype=int)
            proc = DelaySparse(weights=w, delays=delays, num_message_bits=nmb, **kw)
            self.resets.append((proc.a_buff, np.zeros((w.shape[0], int(c.delay) + 1))))
        elif c.delay > 0:
            from lava.proc.dense.process import DelayDense
            proc = DelayDense(weights=w, delays=np.full(w.shape, int(c.delay), dtype=int),
                              num_message_bits=nmb, **kw)
            self.resets.append((proc.a_buff, np.zeros((w.shape[0], int(c.delay) + 1))))
        elif sparse:
            from lava.proc.sparse.process import Sparse
            proc = Sparse(weights=csr_matrix(w), num_message_bits=nmb, **kw)
            self.resets.append((proc.a_buff, np.zeros(w.shape[0])))
        else:
            from lava.proc.dense.process import Dense
            proc = Dense(weights=w, num_message_bits=nmb, **kw)
            self.resets.append((proc.a_buff, np.zeros(w.shape[0])))
        self.conn_procs[c.name] = proc
        _flat_out(self.out_ports[c.src], sp.shape).connect(proc.s_in)
        _shaped_out(proc.a_out, dp.shape).connect(self.procs[c.dst].a_in)

    def _tap_source(self, nme: str) -> tuple:
        """(port, shape) a spike tap of population ``nme`` reads: on the chip, through an
        adapter to the host."""
        shape = lava_shape(self.net.populations[nme].shape)
        port = self.out_ports[nme]
        if self.hw:
            from lava.proc import embedded_io as eio      # lava-loihi only
            ad = eio.spike.NxToPyAdapter(shape=shape, num_message_bits=self._msg_bits(nme))
            port.connect(ad.inp)
            port = ad.out
        return port, shape

    def add_taps(self, seg: int) -> None:
        from lava.proc.io.extractor import Extractor, VarWire
        for nme in self._rec_names:
            port, shape = self._tap_source(nme)
            ex = Extractor(shape=shape, buffer_size=int(seg))
            port.connect(ex.in_port)
            self.spike_taps[nme] = ex
        for nme in self._state_pops:
            proc = self.procs[nme]
            for var in STATE_VARS[self.net.populations[nme].neuron.kind]:
                vw = VarWire(buffer_size=int(seg))
                self.varwires.append(vw)
                vw.connect_var(getattr(proc, var))
                self.state_taps[(nme, var)] = vw

    def compile(self) -> None:
        from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
        pm_map = {Extractor: PyLoihiExtractorModel}
        if self.hw:
            from lava.magma.core.run_configs import Loihi2HwCfg
            cfg = Loihi2HwCfg(select_tag=self.tag, exception_proc_model_map=pm_map,
                              loglevel=logging.ERROR)
        else:
            from lava.magma.core.run_configs import Loihi2SimCfg
            cfg = Loihi2SimCfg(select_tag=self.tag, exception_proc_model_map=pm_map,
                               loglevel=logging.ERROR)
        self.runtime_made = True
        self.anchor.create_runtime(run_cfg=cfg)

    # -- running -----------------------------------------------------------------------
    def run_steps(self, n: int) -> float:
        """Run ``n`` steps; returns the seconds spent until Lava reported them done.

        Lava's blocking ``run()`` hangs for ever when a process model raises
        while a downstream model waits for its output (the runtime service
        waits for every model's phase response in turn), and its ``stop()``
        hangs after a reported model error.  So the run is started
        non-blocking and the responses are polled while watching the actor
        processes; a dead actor marks the graph failed and ``close()`` then
        terminates the remaining actors instead of calling ``stop()``.
        """
        from lava.magma.core.run_conditions import RunSteps
        rt = self.anchor.runtime
        ports = list(rt.service_to_runtime)
        actors = list(rt._messaging_infrastructure.actors)
        t0 = time.perf_counter()
        try:
            self.anchor.run(condition=RunSteps(num_steps=int(n), blocking=False))
            nap = 2e-5
            while not all(p.probe() for p in ports):
                dead = [a for a in actors if a.exitcode is not None]
                if dead:
                    time.sleep(0.05)                  # let an ERROR response arrive
                    if not all(p.probe() for p in ports):
                        raise LavaRunError(
                            f"{len(dead)} Lava process(es) exited during run() (a process model "
                            "raised; see its traceback on stderr)")
                time.sleep(nap)
                nap = min(nap * 2, 1e-3)
            from lava.magma.runtime.mgmt_token_enums import MGMT_RESPONSE, enum_equal
            if any(enum_equal(p.peek(), MGMT_RESPONSE.ERROR) for p in ports):
                raise LavaRunError("a Lava process model raised during run() (see its "
                                   "traceback on stderr)")
            rt.wait()                                 # collects the DONE responses
        except BaseException:
            self.failed = True
            raise
        return time.perf_counter() - t0

    # -- between samples and after ------------------------------------------------------
    def reset(self) -> None:
        for var, value in self.resets:
            var.set(np.asarray(value, dtype=np.float64))

    def spikes_out(self, nme: str, data: np.ndarray) -> np.ndarray:
        p = self.net.populations[nme]
        flat = from_lava(data, p.shape)
        if self.float and isinstance(p.neuron, SigmaDeltaNeuron):
            return np.floor(flat / 2.0 ** int(p.neuron.state_exp)).astype(np.int32)
        out = np.rint(flat).astype(np.int64)
        if self.hw and getattr(p.neuron, "graded", False):
            out = (out.astype(np.int32) << 8) >> 8            # 24-bit sign extension
        return out.astype(np.int32)

    def state_out(self, nme: str, var: str, data: np.ndarray) -> np.ndarray:
        p = self.net.populations[nme]
        flat = from_lava(data, p.shape)
        if self.float and isinstance(p.neuron, LIFNeuron):
            flat = flat * 64.0
        return np.rint(flat).astype(np.int64).astype(np.int32)

    def close(self) -> None:
        try:
            if self.runtime_made and self.anchor is not None:
                rt = self.anchor.runtime
                if self.failed and rt is not None:
                    _abort_runtime(rt)
                self.anchor.stop()
        finally:
            for vw in self.varwires:
                try:
                    if vw._multi_processing is not None:
                        vw._multi_processing.stop()
                    if vw._pm_to_p_dst_port is not None:
                        vw._pm_to_p_dst_port.join()
                except Exception:                       # pragma: no cover - best effort
                    pass


def _abort_runtime(rt) -> None:
    """Terminate the actors of a failed Lava runtime (only processes Lava
    started for this graph) and mark it stopped, so that ``stop()`` merely
    releases the shared memory instead of waiting for dead services."""
    try:
        actors = list(rt._messaging_infrastructure.actors)
    except AttributeError:                                # pragma: no cover
        actors = []
    for a in actors:
        try:
            if a.exitcode is None:
                a.terminate()
        except Exception:                                 # pragma: no cover
            pass
    for a in actors:
        try:
            a.join()
        except Exception:                                 # pragma: no cover
            pass
    rt._is_running = False
    rt._is_started = False
