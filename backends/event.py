"""Sparse event-driven reference simulator, batched over samples.

Bit-exact with Lava's ``fixed_pt`` CPU models (``neurocomp.numerics``;
spec: ``../shared/specs/lava_loihi_spec.md``) and orders of magnitude faster:

* Work is proportional to spikes: every connection is stored source-major,
  so a spike of source neuron ``i`` adds one contiguous row of weights
  (dense: ``W.T[i]``; conv: the CSR row of the kernel stamp ``i`` touches).
  When a step's spikes are dense enough, one float32 GEMM (dense) or torch
  convolution (conv) is faster than row adds; it is used only where it is
  provably exact: every partial sum is bounded by
  ``max_payload * max_j sum_i |w_ij| < 2^24``.  A conv can also be
  computed destination-major in integers (``_conv_gather``; for depthwise
  convs such as pooling, a whole output row per kernel tap).  A measured cost
  model (``PATH_NS``) picks the cheapest exact path per connection and step.
* All samples of a batch run together: the batch is split into one part per
  core, each simulated by numba-compiled kernels in its own thread (they
  release the GIL).  Integer arithmetic throughout (int64
  accumulators, explicit int32 / 24-bit wraps where Lava wraps), so there is
  no float rounding to bound.
* A connection from the input whose raster repeats itself (constant
  current) keeps its last message instead of recomputing it.
* Memory: O(batch x neurons) state + O(synapses) weights (+ recordings).
"""
from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from neurocomp import numerics as nm
from neurocomp.ir.ops import tied_block
from neurocomp.lowered import (Connection, FewSpikeNeuron, InputNeuron, LIFNeuron, LoweredNet,
                               SigmaDeltaNeuron, SigmaNeuron)

from ._mp import allow_lava_start_method
from .base import STATE_VARS, SimResult, record_set, state_set

_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1

# -- numba kernels --------------------------------------------------------------

# The batch is split into one part per core, and each part runs the whole simulation in
# its own Python thread with serial kernels that release the GIL.  Parallel kernels
# (numba prange) were slower here: each step launches ~15 small kernels, and a launch
# costs ~350 us on numba's workqueue layer, while its OpenMP layer spin-waits between
# launches and, next to torch's pool or on a busy machine, slows runs 2-4x.
MIN_SAMPLES_PER_THREAD = 32


def _kernel(**flags):
    """A serial numba kernel that releases the GIL (so batch parts run concurrently)."""
    return numba.njit(cache=True, nogil=True, **flags)


@numba.njit(inline="always")
def _wrap32(x):
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@numba.njit(inline="always")
def _wrap24(x):
    return ((x + (1 << 23)) & 0xFFFFFF) - (1 << 23)


@numba.njit(inline="always")
def _shift(x, weight_exp):
    """A weight exponent applied to a sum (``numerics.shift_sum``)."""
    if weight_exp > 0:
        return x << weight_exp
    return x >> (-weight_exp) if weight_exp < 0 else x


@numba.njit(inline="always")
def _finish_one(x, is_conv, graded, weight_exp):
    """Lava's finishing of one exact integer sum: dense binary sums are int64,
    shifted, cast to int32; dense graded sums are int32 dot products shifted
    in int32; conv sums are cast to int32 and wrapped to 24 bits (then shifted
    by ``weight_exp``, below 2^23 either side of the shift: such a conv is a Sparse
    matrix in Lava)."""
    if is_conv:
        return _shift(_wrap24(_wrap32(x)), weight_exp)
    if graded:
        x = _wrap32(x)
    return _wrap32(_shift(x, weight_exp))


@_kernel()
def _propagate(spk, indptr, indices, data, dense_rows, n_dst, graded, is_conv, weight_exp, scratch, out):
    """One connection, one step: ``out[b] = finish(sum_i payload(spk[b, i]) * row_i)``.

    Rows are dense (``dense_rows`` (n_src, n_dst), indptr empty) or CSR;
    ``finish`` is ``_finish_one``.  Every kernel here indexes one sample's row
    view (``x[b]``), never ``x[b, j]``: numba cannot vectorise 2-D indexing
    in a loop over the batch and runs it ~20x slower.
    """
    batch, n_src = spk.shape
    use_csr = indptr.shape[0] > 0
    for b in range(batch):
        acc = scratch[b]
        sb = spk[b]
        ob = out[b]
        acc[:] = 0
        for i in range(n_src):
            p = sb[i]
            if p == 0:
                continue
            if not graded:
                p = 1
            if use_csr:
                for k in range(indptr[i], indptr[i + 1]):
                    acc[indices[k]] += p * data[k]
            else:
                row = dense_rows[i]
                if p == 1:
                    for j in range(n_dst):
                        acc[j] += row[j]
                else:
                    for j in range(n_dst):
                        acc[j] += p * row[j]
        for j in range(n_dst):
            ob[j] = _finish_one(acc[j], is_conv, graded, weight_exp)


@_kernel()
def _conv_gather(spk, wt, h, w, cin, ho, wo, sh, sw, dh, dw, pt, pl, groups, graded, out):
    """One conv connection, one step, destination-major: each output neuron sums
    the kernel taps that read it (HWC layout; ``wt`` (kh, kw, cin/groups, cout)).
    Same message as ``_propagate``'s conv.  Integer accumulators wrapping at 32
    bits are exact here: a conv's finishing (24-bit wrap) depends on the sum
    modulo 2^24 only.  Zero inputs are skipped; each other adds a contiguous
    weight row."""
    batch = spk.shape[0]
    kh, kw, cg, cout = wt.shape
    og = cout // groups
    acc = np.zeros(cout, np.int32)
    for b in range(batch):
        sb = spk[b]
        ob = out[b]
        for oy in range(ho):
            for ox in range(wo):
                acc[:] = 0
                for ky in range(kh):
                    iy = oy * sh + ky * dh - pt
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox * sw + kx * dw - pl
                        if ix < 0 or ix >= w:
                            continue
                        base = (iy * w + ix) * cin
                        for g in range(groups):
                            for ci in range(cg):
                                p = sb[base + g * cg + ci]
                                if p == 0:
                                    continue
                                if not graded:
                                    p = 1
                                wr = wt[ky, kx, ci]
                                for o in range(g * og, (g + 1) * og):
                                    acc[o] += p * wr[o]
                o0 = (oy * wo + ox) * cout
                for o in range(cout):
                    ob[o0 + o] = _wrap24(np.int64(acc[o]))


@_kernel()
def _depthwise_gather(spk, wrow, idx, h, w, cin, ho, sh, dh, pt, out):
    """A depthwise conv (pooling) connection, one step, one output row at a time:
    for each kernel tap, the whole row of outputs (x, channel) adds
    ``wrow[ky, kx, j] * input[row, idx[kx, j]]`` -- one long vector loop
    instead of a short one per pixel (channels are few).  ``wrow`` is zero
    where a tap falls in the horizontal padding.  Exact as ``_conv_gather``."""
    batch = spk.shape[0]
    kh, kw, n = wrow.shape
    acc = np.zeros(n, np.int32)
    row = w * cin
    for b in range(batch):
        sb = spk[b]
        ob = out[b]
        for oy in range(ho):
            acc[:] = 0
            for ky in range(kh):
                iy = oy * sh + ky * dh - pt
                if iy < 0 or iy >= h:
                    continue
                rb = sb[iy * row:(iy + 1) * row]
                for kx in range(kw):
                    wr = wrow[ky, kx]
                    ix = idx[kx]
                    for j in range(n):          # binary payloads are 0/1 (see _run_chunk)
                        acc[j] += wr[j] * rb[ix[j]]
            o0 = oy * n
            for j in range(n):
                ob[o0 + j] = _wrap24(np.int64(acc[j]))


def depthwise_plan(src_shape, c: Connection) -> tuple[tuple, tuple[int, int, int]]:
    """``_depthwise_gather``'s arguments for a depthwise conv (after the spikes,
    before the output) and its output shape.  The tables: per tap, the weight
    of every output (x, channel) of a row (``wrow`` (kh, kw, wo * cout)) and the
    input element it reads within the input row (``idx`` (kw, wo * cout))."""
    h, w, cin = src_shape
    kh, kw, _, cout = c.weight.shape
    (pt, pb), (pl, pr) = c.pads
    sh, sw = c.strides
    dh, dw = c.dilation
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    ix = np.arange(wo)[None, :] * sw + np.arange(kw)[:, None] * dw - pl        # (kw, wo)
    inside = (ix >= 0) & (ix < w)
    idx = np.where(inside, ix, 0)[:, :, None] * cin + np.arange(cout)
    wt = nm.to_int32(c.weight)[:, :, 0, :]                                       # (kh, kw, cout)
    wrow = wt[:, :, None, :] * inside[None, :, :, None]
    return ((np.ascontiguousarray(wrow.reshape(kh, kw, wo * cout)).astype(np.int32),
             np.ascontiguousarray(idx.reshape(kw, wo * cout)).astype(np.int64),
             h, w, cin, ho, sh, dh, pt), (ho, wo, cout))


@_kernel()
def _finish(acc, is_conv, graded, weight_exp, out):
    """``_finish_one`` over a batch of exact integer sums (the GEMM path)."""
    batch, n = acc.shape
    for b in range(batch):
        ab = acc[b]
        ob = out[b]
        for j in range(n):
            ob[j] = _finish_one(np.int64(ab[j]), is_conv, graded, weight_exp)


@_kernel()
def _spike_stats(spk, fan_out, row_counts):
    """Non-zero payloads per sample (into ``row_counts``); returns (their
    total, the synaptic events they cause = sum of the spiking neurons' fan-out)."""
    batch, n = spk.shape
    events = 0
    for b in range(batch):
        c = 0
        e = 0
        sb = spk[b]
        for i in range(n):
            nz = sb[i] != 0
            c += nz
            e += nz * fan_out[i]
        row_counts[b] = c
        events += e
    return row_counts.sum(), events


@numba.njit(inline="always")
def _rtz_decay(x, keep):
    """sign(x*keep) * (|x*keep| >> 12), branch-free."""
    p = np.int64(x) * keep
    q = np.abs(p) >> 12
    return q - 2 * q * (p < 0)


@numba.njit(inline="always")
def _fire(nv, evth, rinv, subtract, c, burst):
    """A LIF neuron's spike payload and its membrane after the reset, from the membrane
    ``nv`` before it: binary (reset to zero or by subtraction), signed (``c``: its net
    spike count, which the caller advances by the payload; ``_take_back``), bursts
    (``burst``: ``_burst``, ``_signed_burst``; ``rinv`` = 1 / evth).  ``c`` and
    ``burst`` are None or not per compiled kernel, so only one branch is left.  The
    helpers take the count, not the row of counts: an array passed into an inlined
    helper costs reference counting in the loop, which numba does not always prune,
    and then the loop stays scalar (signed bursts: 7x slower)."""
    if burst is not None:
        if c is not None:
            return _signed_burst(nv, evth, rinv, c, burst)
        q = _burst(nv, evth, rinv, burst)
        return q, np.int32(nv - q * evth)
    s = nv > evth
    if c is not None:
        return _take_back(nv, s, evth, c)
    return np.int32(s), np.int32(nv - s * (evth if subtract else nv))


# The LIF kernels below compute in int32 lanes: ``np.int32(x)`` truncates, which is
# Lava's 32-bit wrap, and keeping every intermediate 32 bits wide lets LLVM pack twice
# as many neurons per vector as int64 would (1.7x here).  Only the decay products need
# 64 bits.  ``bias`` is int32 and ``fan_out`` (synapses per neuron) int32; the step
# returns (spiking neurons, synaptic events they cause), counting spikes per sample
# into ``row_counts``.  Branch-free so LLVM vectorises them.

@numba.njit(inline="always")
def _take_back(nv, s, evth, c):
    """Signed spikes (``LIFNeuron.signed``): where v is negative (so no spike fired)
    and the net count ``c`` positive, a -1 spike returns one threshold; returns
    (payload, v).  Branch-free (vectorises)."""
    p = np.int32(s) - np.int32((nv < 0) & (c > 0))
    return p, np.int32(nv - p * evth)


@numba.njit(inline="always")
def _thresholds_in(t, evth, rinv):
    """floor(t / evth) for |t| < 2^25, without an integer division: x86 has no
    vector one, and ``//`` kept the burst kernels scalar (5x slower).  The float
    product is within 2^-30 of t / evth, while a quotient that is not an integer is
    at least 1 / evth > 2^-23 from one, so truncating it is off by at most one --
    toward zero for negative t, or short on an exact multiple -- and the integer
    remainder puts that right (``test_kernels_divide_exactly_at_every_membrane``)."""
    t = np.int32(t)
    q = np.int32(np.float64(t) * rinv)
    r = np.int32(t - q * evth)
    return np.int32(q + np.int32(r >= evth) - np.int32(r < 0))


@numba.njit(inline="always")
def _burst(nv, evth, rinv, burst):
    """Thresholds v holds, 0..burst (``LIFNeuron.burst``): ``s = v > vth`` for burst 1."""
    return min(max(_thresholds_in(nv - 1, evth, rinv), np.int32(0)), np.int32(burst))


@numba.njit(inline="always")
def _signed_burst(nv, evth, rinv, c, burst):
    """Bursts of a signed neuron: up to ``burst`` thresholds go out while v holds
    them, and where v is negative up to ``burst`` come back (no more than the net
    count ``c``, and no more than v lacks) -- floor(v / vth) for v < 0 is minus
    the thresholds it lacks, so one quotient, clipped, gives both."""
    top = np.int32(burst)
    q = _thresholds_in(nv - np.int32(nv > 0), evth, rinv)
    p = min(max(q, np.int32(-min(c, top))), top)
    return p, np.int32(nv - p * evth)


@_kernel(fastmath=True)
def _lif_step(a, u, v, du, dv, vth, bias, subtract, spk, fan_out, row_counts,
              self_w=0, bias_in=None, bias_on=0, count=None, burst=None):
    """One LIF step for a batch (Lava's PyLifModelBitAcc, see neurocomp.numerics).
    ``rate_reset="synapse"`` passes ``bias_in`` (zeros without a bias neuron): last
    step's spikes (still in ``spk``) through the self synapse ``self_w`` and, when
    ``bias_on``, the always-on neuron's message ``bias_in`` join ``a`` in the loop
    (int32 wrap, as Lava's input sum), with no per-step temporaries; without it numba
    compiles the branch away.  ``count`` (net spikes per neuron) selects signed
    spikes (``_take_back``), ``burst`` (an int; ``reset="subtract"``) bursts of up to
    that many spikes; they too compile away when absent."""
    batch, n = u.shape
    ku = 4096 - (du + 1)
    kv = 4096 - dv
    evth = np.int32(vth << 6)            # vth < 2^17 (LoweredNet.validate)
    rinv = 1.0 / np.float64(max(evth, 1))     # bursts only, where vth >= 1 (validate)
    events = 0
    for b in range(batch):
        cnt = 0
        ev = 0
        ab, ub, vb, sb = a[b], u[b], v[b], spk[b]
        if count is not None:
            cb = count[b]
        else:
            cb = None
        for j in range(n):
            x = ab[j]
            if bias_in is not None:
                x = np.int32(np.int64(x) + np.int64(sb[j]) * self_w + np.int64(bias_in[j]) * bias_on)
            d = np.int32(np.int32(_rtz_decay(ub[j], ku)) + np.int32(np.int64(x) << 6))
            d = np.int32(d - (d > (1 << 23)) * (1 << 24) + (d <= -(1 << 23)) * (1 << 24))  # 24-bit wrap
            ub[j] = d
            nv = np.int32(np.int32(_rtz_decay(vb[j], kv)) + np.int64(d) + bias[j])
            nv = min(max(nv, np.int32(-(1 << 23) + 1)), np.int32((1 << 23) - 1))
            if count is not None:
                p, vb[j] = _fire(nv, evth, rinv, subtract, cb[j], burst)
                cb[j] += p
            else:
                p, vb[j] = _fire(nv, evth, rinv, subtract, None, burst)
            sb[j] = p
            s = p != 0
            cnt += s
            ev += s * fan_out[j]
        row_counts[b] = cnt
        events += ev
    return row_counts.sum(), events


@_kernel(fastmath=True)
def _if_step(a, v, vth, bias, subtract, spk, fan_out, row_counts, count=None, burst=None):
    """``_lif_step`` without decays (du=4095, dv=0: the conversion default), when
    ``u`` is not recorded: ``u`` is then this step's input alone, so it is not
    stored at all (a conditional store in the loop stops vectorisation, ~20x)."""
    batch, n = v.shape
    evth = np.int32(vth << 6)
    rinv = 1.0 / np.float64(max(evth, 1))     # bursts only, where vth >= 1 (validate)
    events = 0
    for b in range(batch):
        cnt = 0
        ev = 0
        ab, vb, sb = a[b], v[b], spk[b]
        if count is not None:
            cb = count[b]
        else:
            cb = None
        for j in range(n):
            d = np.int32(np.int64(ab[j]) << 6)
            d = np.int32(d - (d > (1 << 23)) * (1 << 24) + (d <= -(1 << 23)) * (1 << 24))
            nv = np.int32(np.int64(vb[j]) + d + bias[j])
            nv = min(max(nv, np.int32(-(1 << 23) + 1)), np.int32((1 << 23) - 1))
            if count is not None:
                p, vb[j] = _fire(nv, evth, rinv, subtract, cb[j], burst)
                cb[j] += p
            else:
                p, vb[j] = _fire(nv, evth, rinv, subtract, None, burst)
            sb[j] = p
            s = p != 0
            cnt += s
            ev += s * fan_out[j]
        row_counts[b] = cnt
        events += ev
    return row_counts.sum(), events


@_kernel()
def _sigma_step(a, sigma, spk):
    batch, n = sigma.shape
    for b in range(batch):
        ab, gb, sb = a[b], sigma[b], spk[b]
        for j in range(n):
            x = _wrap32(np.int64(gb[j]) + ab[j])
            gb[j] = x
            sb[j] = x


@numba.njit(inline="always")
def _abs32(x):
    # numpy's int32 abs keeps INT32_MIN negative
    return x if x == -(1 << 31) else abs(x)


@_kernel()
def _sigma_delta_step(a, sigma, act, residue, error, vth, bias, state_exp, relu, cum_error, spk):
    batch, n = sigma.shape
    for b in range(batch):
        ab, gb, cb, rb, eb, sb = a[b], sigma[b], act[b], residue[b], error[b], spk[b]
        for j in range(n):
            sg = _wrap32(np.int64(gb[j]) + ab[j])
            gb[j] = sg
            x = _wrap32(np.int64(sg) + bias[j])
            if relu and x < 0:
                x = 0
            delta = _wrap32(x - np.int64(cb[j]) + rb[j])
            if cum_error:
                e = _wrap32(np.int64(eb[j]) + delta)
                s = delta if _abs32(e) >= vth else 0
                if s != 0:
                    e = 0
                eb[j] = e
            else:
                s = delta if _abs32(delta) >= vth else 0
            rb[j] = _wrap32(delta - s)
            cb[j] = x
            sb[j] = s >> state_exp


@_kernel()
def _few_spike_step(a, fx, v, k, phase, vth, bias, spk):
    """One few-spike step at ``phase`` (``neurocomp.lowered.FewSpikeNeuron``)."""
    batch, n = v.shape
    shift = k - 1 - phase
    thr = np.int64(vth) << shift
    for b in range(batch):
        ab, fb, vb, sb = a[b], fx[b], v[b], spk[b]
        for j in range(n):
            f = _wrap32(np.int64(fb[j]) + ab[j])
            if phase == 0:
                vb[j] = _wrap32(f + bias[j])
                f = 0
            fb[j] = f
            s = np.int64(vb[j]) >= thr
            vb[j] = _wrap32(vb[j] - s * thr)
            sb[j] = s << shift


# -- build ----------------------------------------------------------------------

def conv_stamp_csr(src_shape, c: Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source-major CSR of a conv connection: row ``i`` lists the
    (destination index, weight) pairs that a spike of source neuron ``i`` hits."""
    h, w, cin = src_shape
    kh, kw, cg, cout = c.weight.shape
    (pt, pb), (pl, pr) = c.pads
    sh, sw = c.strides
    dh, dw = c.dilation
    ho = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    wo = (w + pl + pr - (kw - 1) * dw - 1) // sw + 1
    og = cout // c.groups
    wt = nm.to_int32(c.weight)
    oy, ox, a, bb, ci, o = np.meshgrid(np.arange(ho), np.arange(wo), np.arange(kh), np.arange(kw),
                                       np.arange(cg), np.arange(cout), indexing="ij")
    y = oy * sh + a * dh - pt
    x = ox * sw + bb * dw - pl
    g = o // og
    cs = g * cg + ci
    ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
    src = ((y * w + x) * cin + cs)[ok]
    dst = ((oy * wo + ox) * cout + o)[ok]
    val = wt[a, bb, ci, o][ok]
    nz = val != 0
    src, dst, val = src[nz], dst[nz], val[nz]
    order = np.lexsort((dst, src))
    src, dst, val = src[order], dst[order], val[order]
    indptr = np.zeros(h * w * cin + 1, np.int64)
    np.add.at(indptr, src + 1, 1)
    return np.cumsum(indptr), dst.astype(np.int32), val.astype(np.int64)


@functools.lru_cache(maxsize=None)
def _blas_threads() -> ThreadpoolController:
    """The process's BLAS thread pools (finding them takes ~1 ms: once)."""
    return ThreadpoolController()


def _single_threaded_torch() -> None:
    """One torch thread per call: the batch parts already keep every core busy,
    and torch's OpenMP workers would compete with them (and spin after every
    call).  Process-wide."""
    import torch
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@dataclass
class _Conn:
    c: Connection
    src: int                      # index into the population list
    dst: int
    n_dst: int
    graded: bool
    dense_rows: np.ndarray        # (n_src, n_dst) int64 or (0, 0)
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    blas: Optional[object] = None        # float32 weights for the exact BLAS path, if provably exact
    synapses: int = 0
    fan_out: Optional[np.ndarray] = None  # synapses per source neuron (events per spike)
    gather: Optional[tuple] = None        # conv: (_conv_gather or _depthwise_gather, its arguments)
    block: int = 1                        # conv: BLAS path as sum-pool(block) + smaller conv
    block_sum: Optional[tuple] = None     # that sum-pool: depthwise_plan's (arguments, output shape)

    @property
    def blas_kind(self) -> str:
        if self.c.kind == "conv" and self.c.groups > 1 and self.c.weight.shape[2] == 1:
            return "depthwise"                        # torch's grouped convolutions are slow
        return self.c.kind

    def path(self, nnz: int, batch: int, force: Optional[str] = None) -> str:
        """``scatter``, ``blas`` or ``gather``: the cheapest exact way to deliver
        this step's ``nnz`` non-zero payloads (all samples) by the cost model
        ``PATH_NS``, or ``force`` where that path exists (else ``scatter``)."""
        costs = {"scatter": PATH_NS["scatter_" + self.c.kind] * nnz * self.mean_fan_out +
                 PATH_NS["scan"] * batch * self.fan_out.size}
        if self.blas is not None:
            k = self.blas_kind
            costs["blas"] = PATH_NS["call_" + k] + PATH_NS["mac_" + k] * batch * self.synapses / \
                self.block ** 2
            if self.block > 1:          # the block sums: one gather tap per input element
                costs["blas"] += PATH_NS["gather_depthwise"] * batch * self.fan_out.size
        if self.gather is not None:
            kh, kw, cg, cout = self.c.weight.shape
            taps = batch * (self.n_dst // cout) * kh * kw       # (sample, output pixel, tap)
            if self.gather[0] is _depthwise_gather:             # per tap and channel
                costs["gather"] = PATH_NS["gather_depthwise"] * taps * cout
            else:
                density = nnz / max(1, batch * self.fan_out.size)
                cin = cg * self.c.groups
                costs["gather"] = taps * cin * (PATH_NS["gather_scan"] +
                                                PATH_NS["gather_row"] * density)
        if force is not None:
            return force if force in costs else "scatter"
        return min(costs, key=costs.get)

    def propagate_gather(self, src: np.ndarray, out: np.ndarray) -> None:
        kernel, args = self.gather
        kernel(src, *args, out)
        if self.c.weight_exp < 0:           # the gathers finish like _finish_one without the shift
            np.right_shift(out, -int(self.c.weight_exp), out=out)
        elif self.c.weight_exp > 0:
            np.left_shift(out, int(self.c.weight_exp), out=out)

    @property
    def mean_fan_out(self) -> float:
        return float(self.fan_out.mean()) if self.fan_out is not None and self.fan_out.size else 0.0

    def propagate_blas(self, src: np.ndarray, src_shape, out: np.ndarray) -> None:
        """The same message as ``_propagate``, computed as one float32 GEMM
        (dense) or one float32 torch convolution (conv, as Lava's own Conv does).

        Exact: every product and partial sum is an integer of magnitude
        ``<= max_payload * max_j sum_i |w_ij| < 2^24`` (checked in
        ``_prepare``), and float32 represents all such integers, in any
        summation order.  A conv whose kernel is constant over ``block`` x
        ``block`` tiles aligned with its stride (an average pool folded into
        it) is computed as exact integer block sums (``_depthwise_gather``,
        below 2^23 by ``_prepare``) followed by the ``block``-times smaller
        conv: the same integer products, grouped.
        """
        c = self.c
        if self.block > 1:
            # exact block sums of the (padded) input, in integers, straight from the spikes
            args, src_shape = self.block_sum
            pooled = np.empty((src.shape[0], int(np.prod(src_shape))), np.int32)
            _depthwise_gather(src, *args, pooled)
            x = pooled.astype(np.float32)
        # LIF spikes are int8 0/1 (-1/+1 signed) already: one conversion pass instead of two
        elif self.graded or src.dtype == np.int8:
            x = src.astype(np.float32)
        else:
            x = (src != 0).astype(np.float32)
        if c.kind == "dense":
            acc = x @ self.blas
        else:
            import torch
            import torch.nn.functional as F
            h, w, cin = src_shape
            xt = torch.from_numpy(x.reshape(-1, h, w, cin)).permute(0, 3, 1, 2)   # NCHW view
            (pt, pb), (pl, pr) = c.pads if self.block == 1 else ((0, 0), (0, 0))
            if pt != pb or pl != pr:
                xt, pad = F.pad(xt, (pl, pr, pt, pb)), (0, 0)
            else:
                pad = (pt, pl)
            stride = (c.strides[0] // self.block, c.strides[1] // self.block)
            with torch.no_grad():
                y = F.conv2d(xt, self.blas, stride=stride, padding=pad,
                             dilation=tuple(c.dilation), groups=c.groups)
            acc = y.permute(0, 2, 3, 1).reshape(y.shape[0], -1).numpy()
        _finish(acc, c.kind == "conv", self.graded, int(c.weight_exp), out)


# cost model of the exact delivery paths, nanoseconds (measured on 2 x86 cores with
# benchmarks/sim_speed.py's networks at batch 1 and 1000): one scattered add of a weight
# row (dense rows are contiguous and vectorise; conv CSR stamps are indirect), scanning
# one source for a spike, a conv gather's (tap, output element) for depthwise convs or
# (tap, input channel) scan and row add for others, one float32 multiply-add in a GEMM /
# torch convolution, and the fixed cost of one call
PATH_NS = {"scatter_dense": 0.6, "scatter_conv": 2.5, "scan": 1.2,
           "gather_depthwise": 0.6, "gather_scan": 3.0, "gather_row": 2.0,
           "mac_dense": 0.03, "mac_conv": 0.05, "mac_depthwise": 0.8,
           "call_dense": 5_000, "call_conv": 40_000, "call_depthwise": 40_000}


def _block_factor(c: Connection) -> int:
    """``tied_block`` of the conv's integer kernel (1 for grouped and depthwise
    convs, which take the gather path)."""
    if c.groups != 1:
        return 1
    return tied_block(nm.to_int32(c.weight), c.strides, c.pads, c.dilation)


def _prepare(net: LoweredNet) -> list[_Conn]:
    names = list(net.populations)
    out = []
    empty_i = np.zeros(0, np.int64)
    for c in net.connections:
        sp, dp = net.populations[c.src], net.populations[c.dst]
        graded = bool(sp.neuron.graded)
        payload = net.max_payload(c.src) if graded else 1
        if graded and isinstance(sp.neuron, (SigmaDeltaNeuron, SigmaNeuron)):
            payload = 1 << 31          # sigma-delta payloads are not bounded a priori
        if c.kind == "dense":
            rows = np.ascontiguousarray(c.effective_weight().T.astype(np.int64))
            k = _Conn(c, names.index(c.src), names.index(c.dst), dp.size, graded, rows,
                      empty_i, np.zeros(0, np.int32), empty_i, synapses=int(np.count_nonzero(rows)),
                      fan_out=np.count_nonzero(rows, axis=1).astype(np.float64))
            col_sums = np.abs(rows).sum(axis=0)
            w32 = rows.astype(np.float32)
        else:
            indptr, indices, data = conv_stamp_csr(sp.shape, c)
            k = _Conn(c, names.index(c.src), names.index(c.dst), dp.size, graded,
                      np.zeros((0, 0), np.int64), indptr, indices, data, synapses=int(data.size),
                      fan_out=np.diff(indptr).astype(np.float64))
            wt = nm.to_int32(c.weight).astype(np.int64)
            col_sums = np.abs(wt).sum(axis=(0, 1, 2))
            import torch
            # torch layout (C_out, C_in / groups, kh, kw); torch's conv2d is a cross-correlation
            k.block = _block_factor(c)
            if payload * k.block ** 2 >= 1 << 23:       # block sums must stay below 2^23
                k.block = 1
            if k.block > 1:
                b, cin = k.block, sp.shape[2]
                pool = Connection(name=c.name + "_blocksum", src=c.src, dst=c.dst, kind="conv",
                                  weight=np.ones((b, b, 1, cin), np.int64), strides=(b, b),
                                  pads=c.pads, groups=cin)
                k.block_sum = depthwise_plan(sp.shape, pool)
            w32 = torch.from_numpy(np.ascontiguousarray(
                wt[::k.block, ::k.block].transpose(3, 2, 0, 1).astype(np.float32)))
            (pt, _), (pl, _) = c.pads
            ho, wo, _ = dp.shape
            if c.weight.shape[2] == 1 and c.weight.shape[3] == c.groups:      # depthwise
                k.gather = (_depthwise_gather, depthwise_plan(sp.shape, c)[0])
            else:
                k.gather = (_conv_gather, (np.ascontiguousarray(nm.to_int32(c.weight)), *sp.shape, ho, wo,
                                           *c.strides, *c.dilation, pt, pl, int(c.groups), graded))
        if payload * int(col_sums.max(initial=0)) < nm.FLOAT32_EXACT:
            k.blas = w32
        out.append(k)
    return out


class EventBackend:
    """Batched, event-driven, bit-exact reference simulator (see module doc)."""

    name = "event"

    PATHS = ("scatter", "blas", "gather")

    def __init__(self, chunk: int = 2048, use_blas: bool = True, force_path: Optional[str] = None,
                 threads: Optional[int] = None):
        """``chunk``: most samples one thread simulates at once (bounds the state
        memory); ``threads``: batch parts run concurrently (default: the usable
        cores).  ``force_path`` (tests): deliver every message by ``scatter``
        (row adds), ``blas`` (where provably exact) or ``gather`` (convs)
        instead of the cheapest by the cost model; ``use_blas=False`` is ``force_path="scatter"``."""
        if force_path is not None and force_path not in self.PATHS:
            raise ValueError(f"force_path must be one of {self.PATHS}")
        self.chunk = chunk
        self.force_path = force_path if use_blas else "scatter"
        self.threads = threads or len(os.sched_getaffinity(0))

    def _parts(self, batch: int) -> list[slice]:
        """Batch parts: one per thread (none smaller than MIN_SAMPLES_PER_THREAD
        samples), each cut further to at most ``chunk`` samples."""
        n = max(1, min(self.threads, batch // MIN_SAMPLES_PER_THREAD))
        n = max(n, -(-batch // self.chunk))
        n = -(-n // self.threads) * self.threads if n > self.threads else n
        bounds = np.linspace(0, batch, n + 1).round().astype(int)
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]

    def run(self, net: LoweredNet, raster: np.ndarray, *, record=None,
            record_states: bool = False) -> SimResult:
        raster = np.asarray(raster)
        if raster.ndim != 3 or raster.shape[2] != net.populations[net.input].size:
            raise ValueError(f"raster must be (batch, steps, {net.populations[net.input].size}), "
                             f"got {raster.shape}")
        rec = record_set(net, record)
        conns = _prepare(net)
        parts = self._parts(raster.shape[0])
        if any(k.blas is not None and k.c.kind == "conv" for k in conns):
            _single_threaded_torch()
        t0 = time.perf_counter()
        # the batch parts are the parallelism: BLAS worker threads would only compete
        # with them for the cores (and spin between calls)
        with _blas_threads().limit(limits=1, user_api="blas"):
            if len(parts) == 1:
                results = [self._run_chunk(net, conns, raster[parts[0]], rec, record_states)]
            else:
                with ThreadPoolExecutor(max_workers=min(self.threads, len(parts))) as pool:
                    results = list(pool.map(
                        lambda sl: self._run_chunk(net, conns, raster[sl], rec, record_states), parts))
        seconds = time.perf_counter() - t0
        allow_lava_start_method()
        res = SimResult(steps=raster.shape[1], samples=raster.shape[0], seconds=seconds,
                        synaptic_events=sum(p.synaptic_events for p in results))
        res.spikes = {k: np.concatenate([p.spikes[k] for p in results]) for k in results[0].spikes}
        res.states = {k: {v: np.concatenate([p.states[k][v] for p in results])
                          for v in results[0].states[k]} for k in results[0].states}
        res.spike_counts = {k: np.concatenate([p.spike_counts[k] for p in results])
                            for k in results[0].spike_counts}
        return res

    def _run_chunk(self, net, conns, raster, rec, record_states) -> SimResult:
        t0 = time.perf_counter()
        batch, steps, _ = raster.shape
        pops = list(net.populations.values())
        names = [p.name for p in pops]
        raster = np.ascontiguousarray(raster.astype(np.int32))
        if not net.populations[net.input].neuron.graded:
            raster = (raster != 0).astype(np.int32)      # a binary payload is 1, whatever the value
        # LIF spikes (0/1, or -1/+1 signed) as int8, graded payloads as int32: less memory traffic
        spk = [np.zeros((batch, p.size), np.int8 if isinstance(p.neuron, LIFNeuron) else np.int32)
               for p in pops]
        state: list[dict] = []
        params: list[tuple] = []
        extra_in: dict[int, tuple] = {}     # population -> (self synapse, always-on bias message,
                                            #                bias neuron's first spike step)
        no_bias: dict[int, tuple] = {}      # population -> (bias onset, zero bias): delayed biases
        for p in pops:
            n = p.neuron
            if isinstance(n, LIFNeuron):
                st = {"u": np.zeros((batch, p.size), np.int32), "v": np.zeros((batch, p.size), np.int32)}
                if n.u0 is not None:
                    st["u"][:] = nm.to_int32(n.u0)
                if n.v0 is not None:
                    st["v"][:] = nm.to_int32(n.v0)
                if n.signed:
                    st["count"] = np.zeros((batch, p.size), np.int32)
                bm = n.bias_mant if n.bias_mant is not None else np.zeros(p.size, np.int64)
                be = n.bias_exp if n.bias_exp is not None else np.zeros(p.size, np.int64)
                bias = nm.wrap_int32(nm.lif_bias(bm, np.broadcast_to(be, (p.size,)))).astype(np.int32)
                params.append((int(n.du), int(n.dv), int(n.vth), bias, n.reset == "subtract"))
                if n.bias_onset and n.bias_mant is not None:
                    no_bias[len(params) - 1] = (int(n.bias_onset), np.zeros_like(bias))
                if n.has_reset_synapses:
                    bias_in = None if n.bias_in_mant is None else \
                        nm.binary_dense_message(n.bias_in_mant, n.bias_in_exp).astype(np.int32)
                    extra_in[len(params) - 1] = (int(n.self_weight), bias_in, n.bias_neuron_first_spike)
            elif isinstance(n, SigmaDeltaNeuron):
                st = {k: np.zeros((batch, p.size), np.int32) for k in ("sigma", "act", "residue", "error")}
                scale = 1 << (n.spike_exp + n.state_exp)
                bias = np.zeros(p.size, np.int64) if n.bias is None else \
                    nm.to_int32(np.asarray(n.bias, np.int64) * scale).astype(np.int64)
                vth = int(nm.to_int32(np.int64(n.vth) * scale))
                params.append((vth, bias, int(n.state_exp), n.act_mode == "relu", bool(n.cum_error)))
            elif isinstance(n, SigmaNeuron):
                st = {"sigma": np.zeros((batch, p.size), np.int32)}
                params.append(None)
            elif isinstance(n, FewSpikeNeuron):
                st = {"fx": np.zeros((batch, p.size), np.int32), "v": np.zeros((batch, p.size), np.int32)}
                bias = np.zeros(p.size, np.int64) if n.bias is None else nm.to_int32(n.bias).astype(np.int64)
                params.append((int(n.k), int(n.vth), bias))
            else:
                st = {}
                params.append(None)
            state.append(st)
        # per connection: a ring of (delay + 1) pending messages, and a cache
        # of the last accumulation for sources that repeat themselves.
        pending = [np.zeros((k.c.delay + 1, batch, k.n_dst), np.int32) for k in conns]
        scratch = [np.empty((batch, k.n_dst), np.int64) for k in conns]   # per-sample accumulators
        # steps whose input raster equals the previous step's (constant current)
        input_repeats = np.zeros(steps, bool)
        if steps > 1:
            input_repeats[1:] = (raster[:, 1:] == raster[:, :-1]).all(axis=(0, 2))
        a_in = [np.zeros((batch, p.size), np.int32) for p in pops]
        incoming = [[j for j, k in enumerate(conns) if k.dst == i] for i in range(len(pops))]
        rec_idx = [names.index(r) for r in rec]
        out_spikes = {r: np.zeros((batch, steps, pops[i].size), np.int32) for r, i in zip(rec, rec_idx)}
        out_states = {}
        for p in pops:
            if p.name in state_set(net, record_states):
                out_states[p.name] = {v: np.zeros((batch, steps, p.size), np.int32)
                                      for v in STATE_VARS[p.neuron.kind]}
        inp = names.index(net.input)
        counts = {p.name: np.zeros((batch, steps), np.int32) for i, p in enumerate(pops) if i != inp}
        counts_t = [np.zeros(batch, np.int64) for _ in pops]
        fan_total = []                      # synapses each neuron's spike reaches, all connections
        for i, p in enumerate(pops):
            outs = [k.fan_out for k in conns if k.src == i]
            fan = np.sum(outs, axis=0) if outs else np.zeros(p.size)
            if i in extra_in and extra_in[i][0]:
                fan = fan + 1                       # the self synapse
            fan_total.append(fan.astype(np.int32))
        # the always-on bias neurons: one spike per step (from their first) reaching every non-zero weight
        bias_events = [(int(np.count_nonzero(b)), t0) for _, b, t0 in extra_in.values() if b is not None]
        feeds = [any(k.src == i for k in conns) for i in range(len(pops))]
        # int32 burst caps select the kernels' burst branch; None compiles it away
        bursts = [np.int32(p.neuron.burst) if isinstance(p.neuron, LIFNeuron) and p.neuron.burst > 1 else None
                  for p in pops]
        events = 0
        last_input_stats = (0, 0)
        # what _lif_step adds to a synapse-reset population's input (zeros: no bias neuron)
        bias_in_of = {i: b if b is not None else np.zeros(pops[i].size, np.int32)
                      for i, (_, b, _) in extra_in.items()}
        for t in range(steps):
            nnz = {}
            events += sum(k for k, t0 in bias_events if t >= t0) * batch
            for i, p in enumerate(pops):
                n = p.neuron
                if isinstance(n, InputNeuron):
                    spk[i] = raster[:, t, :]
                    continue
                ins = incoming[i]
                if len(ins) == 1:
                    j = ins[0]
                    a = pending[j][t % pending[j].shape[0]]
                else:
                    a = a_in[i]
                    a[:] = 0
                    for j in ins:
                        np.add(a, pending[j][t % pending[j].shape[0]], out=a)  # int32 wrap like Lava
                if isinstance(n, LIFNeuron):
                    du, dv, vth, bias, sub = params[i]
                    if i in no_bias and t < no_bias[i][0]:
                        bias = no_bias[i][1]
                    if i in extra_in:
                        # the self synapse delivers last step's spikes (still in spk[i]); the
                        # bias neuron's first spike (step 1 or later) arrives one step later
                        self_w, bias_in, first = extra_in[i]
                        nnz[i], ev = _lif_step(a, state[i]["u"], state[i]["v"], du, dv, vth, bias, sub,
                                               spk[i], fan_total[i], counts_t[i], np.int64(self_w),
                                               bias_in_of[i], np.int64(bias_in is not None and t > first))
                    elif du == 4095 and dv == 0 and p.name not in out_states:
                        nnz[i], ev = _if_step(a, state[i]["v"], vth, bias, sub, spk[i], fan_total[i],
                                              counts_t[i], state[i].get("count"), bursts[i])
                    else:
                        nnz[i], ev = _lif_step(a, state[i]["u"], state[i]["v"], du, dv, vth, bias, sub,
                                               spk[i], fan_total[i], counts_t[i], 0, None, 0,
                                               state[i].get("count"), bursts[i])
                    events += ev
                    counts[p.name][:, t] = counts_t[i]
                elif isinstance(n, SigmaNeuron):
                    _sigma_step(a, state[i]["sigma"], spk[i])
                elif isinstance(n, FewSpikeNeuron):
                    k, vth, bias = params[i]
                    _few_spike_step(a, state[i]["fx"], state[i]["v"], k, t % k, vth, bias, spk[i])
                else:
                    vth, bias, sexp, relu, cum = params[i]
                    st = state[i]
                    _sigma_delta_step(a, st["sigma"], st["act"], st["residue"], st["error"], vth,
                                      bias, sexp, relu, cum, spk[i])
            for i, p in enumerate(pops):
                if i != inp and not feeds[i] and not isinstance(p.neuron, LIFNeuron):
                    counts[p.name][:, t] = np.count_nonzero(spk[i], axis=1)   # nothing reads these
            for r, i in zip(rec, rec_idx):
                out_spikes[r][:, t] = spk[i]
            for name, vars_ in out_states.items():
                st = state[names.index(name)]
                for v, arr in vars_.items():
                    arr[:, t] = st[v]
            # connections accumulate this step's spikes; delivered t + 1 + delay
            for i, p in enumerate(pops):
                if isinstance(p.neuron, LIFNeuron):
                    continue                                # counted by the LIF kernel
                if i == inp and t > 0 and input_repeats[t]:
                    nnz[i], ev = last_input_stats          # constant input: same statistics
                    events += ev
                elif i == inp or feeds[i]:
                    nnz[i], ev = _spike_stats(spk[i], fan_total[i], counts_t[i])
                    events += ev
                    if i == inp:
                        last_input_stats = (nnz[i], ev)
                    if i != inp:
                        counts[p.name][:, t] = counts_t[i]
            for j, k in enumerate(conns):
                src = spk[k.src]
                ring = pending[j]
                target = ring[t % ring.shape[0]]  # slot just consumed, reused for t + 1 + delay
                if k.src == inp and ring.shape[0] == 1 and t > 0 and input_repeats[t]:
                    continue  # constant input: the pending message is already this step's
                path = k.path(nnz[k.src], batch, self.force_path)
                if path == "blas":
                    k.propagate_blas(src, pops[k.src].shape, target)
                elif path == "gather":
                    k.propagate_gather(src, target)
                else:
                    _propagate(src, k.indptr, k.indices, k.data, k.dense_rows, k.n_dst, k.graded,
                               k.c.kind == "conv", int(k.c.weight_exp), scratch[j], target)
        return SimResult(spikes=out_spikes, states=out_states, spike_counts=counts,
                         synaptic_events=events, seconds=time.perf_counter() - t0, steps=steps,
                         samples=batch)
