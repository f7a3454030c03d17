"""Split every non-input population of a LoweredNet into core-sized blocks.

Limits (all from the hardware YAML): ``core.neurons``, ``core.input_axons``,
``core.output_axons`` and ``core.synapse_memory_bits`` with the per-encoding
cost model of ``HardwareConfig.synapse_memory_bits`` (counting rules: see
``neurocomp.mapping``).  Dense connections use the ``dense`` encoding; conv
connections whichever of ``conv_shared``, ``sparse`` and ``dense`` is smallest per core
(``dense`` stores zeros but no target index: it wins where every axon of a small
tile reaches most of its neurons, e.g. 1x1 tiles of wide 3x3 layers on Loihi 1).

Populations are partitioned from the output back to the input, so that when a
population is split the cores of everything it feeds are known and its
neurons' output axons (one per destination core) can be counted.

* A population whose incoming connections are all convolutions is cut into a
  grid of ``(th, tw, tc)`` tiles (rows x columns x channels).  Every count is
  separable over the three axes (receptive-field rows x columns x source
  channels), so each candidate tile shape is scored over all its tiles with a
  few numpy broadcasts (``conv_shared`` rows: distinct tap footprints per axis,
  ``_axis_classes``, times source channels); candidates are tried in increasing core count and the
  first one where every tile fits wins.  When that grid misses the layer's
  bound, border bands (first/last 1-2 rows and/or columns) are cut off and
  each of the up to 9 regions gets its own grid: border positions have
  clipped receptive fields (fewer axons, more shared footprints), so they
  take larger tiles than the interior.  Overlapping receptive fields (the
  halo of a spatial tile) are paid as input axons on each core, which is what
  makes channel groups win for wide layers and spatial tiles for large maps.
  Weights are counted structurally (zeros included), an upper bound of the
  checker's count.
* Other populations (dense inputs, mixed inputs) are cut into contiguous
  ranges of the flat order, greedily longest-first (binary search on the end
  of each block; every limit is monotone in it), counting distinct sources on
  the dst-major CSR with numpy.  Small conv populations are tried this way too
  and the fewer cores win.

Lower bound per layer (``summary["lower_bound"]`` sums them, since a core
holds one layer): max over limits of ceil(total / per-core limit).  Synapse
memory depends on the partition, so its total is the provable minimum under
the cost model (every synapse costs at least the cheapest block's bits per
synapse; ``conv_shared`` shares a row among at most ``P`` axons, ``P`` the
destination positions one core can hold -- see ``_syn_lower_bits``).
``proven_lower_bound`` adds whole-neuron capacity per core.  For a conv layer
whose partition misses that bound, ``conv_capacity`` adds the footprint
capacity bound of ``_conv_capacity``: per output position, the most neurons
any tile or flat-range core containing it can hold given the input-axon
limit (halo included) and the distinct clipped footprints it must store;
#cores >= sum over neurons of 1 / capacity.  It is a fractional bound (each
position may take its best core shape), so 3x3 layers whose best shapes
differ from position to position still sit above it.

Conv layers are tried as contiguous ranges only when tiles miss the bound:
the range search counts synapses and is the slow part.

Impossible cases raise ``HardwareLimitError`` with the numbers.
"""
from __future__ import annotations

import math

import numpy as np

from neurocomp.errors import HardwareLimitError
from neurocomp.lowered import InputNeuron, LoweredNet
from neurocomp.mapping import (CoreRecord, Mapping, conn_bits, conv_tap_codes, place_chips,
                               row_bits_fn)

FLAT_CONV_MAX_SYNAPSES = 1_000_000   # also try contiguous ranges for conv layers up to this size
BORDER_BANDS = ((1, 1), (1, 0), (0, 1), (2, 2), (2, 1), (1, 2), (3, 3))   # (rows, cols) cut off
CAPACITY_BOUND_WORK = 1_500_000      # footprint updates the capacity bound may spend on flat ranges


class _Limits:
    def __init__(self, hw):
        self.N = int(hw.value("core.neurons"))
        self.A = int(hw.value("core.input_axons"))
        self.O = int(hw.value("core.output_axons"))
        self.M = int(hw.value("core.synapse_memory_bits"))


def _rb(hw, enc, c):
    wb, db = conn_bits(c)
    return row_bits_fn(hw, enc, wb, db)


def _vec(f, x):
    """Apply the cached scalar row-bits function to an int array."""
    x = np.asarray(x, np.int64)
    u, inv = np.unique(x, return_inverse=True)
    return np.array([f(int(v)) for v in u], np.int64)[inv].reshape(x.shape)


# -- conv geometry (per axis) -------------------------------------------------------

def _axis_classes(n_out, n_in, k, s, d, p0, t, a0=0, a1=None):
    """(n_tiles, k) per tile of t outputs along one axis: how many distinct
    non-empty tap footprints of a given size (column j: j + 1 taps) the
    inputs it reaches have.  The footprint of input i is the set of taps
    that carry it to an output of the tile; inputs with equal footprints
    share a conv_shared row."""
    a1 = n_out if a1 is None else a1
    starts = np.arange(a0, a1, t)
    out = np.zeros((starts.size, k), np.int64)
    for j, a in enumerate(starts):
        o = np.arange(a, min(a + t, a1))
        bits = np.zeros(n_in, np.int64)
        for tap in range(k):
            i = o * s + tap * d - p0
            i = i[(i >= 0) & (i < n_in)]
            bits[i] |= 1 << tap
        u = np.unique(bits[bits > 0])
        pc = np.array([bin(int(v)).count("1") for v in u], np.int64)
        out[j] = np.bincount(pc - 1, minlength=k)[:k]
    return out


def _axis_hits(n_out, n_in, k, s, d, p0):
    """(n_out, n_in) number of kernel taps of output position o landing on input i."""
    m = np.zeros((n_out, n_in), np.int64)
    o = np.arange(n_out)
    for t in range(k):
        i = o * s + t * d - p0
        ok = (i >= 0) & (i < n_in)
        np.add.at(m, (o[ok], i[ok]), 1)
    return m


class _ConvGeom:
    def __init__(self, net, c):
        H, W, Cs = net.populations[c.src].shape
        Ho, Wo, Co = net.populations[c.dst].shape
        kh, kw, cg, co = c.weight.shape
        self.c = c
        self.hy = _axis_hits(Ho, H, kh, c.strides[0], c.dilation[0], c.pads[0][0])
        self.hx = _axis_hits(Wo, W, kw, c.strides[1], c.dilation[1], c.pads[1][0])
        self.cy = np.vstack([np.zeros((1, H), np.int64), np.cumsum(self.hy, 0)])
        self.cx = np.vstack([np.zeros((1, W), np.int64), np.cumsum(self.hx, 0)])
        self.cg, self.og, self.Co, self.Cs = cg, co // c.groups, Co, Cs
        self.kh, self.kw = kh, kw
        self._cls_args = ((Ho, H, kh, c.strides[0], c.dilation[0], c.pads[0][0]),
                          (Wo, W, kw, c.strides[1], c.dilation[1], c.pads[1][0]))
        self.max_fanin = int(self.hy.sum(1).max()) * int(self.hx.sum(1).max()) * cg

    def axis(self, which, t, a0=0, a1=None):
        """Per tile of size t along rows/cols of [a0, a1): (distinct inputs, max taps per input, taps)."""
        cum = self.cy if which == 0 else self.cx
        n = cum.shape[0] - 1 if a1 is None else a1
        s = np.arange(a0, n, t)
        e = np.minimum(s + t, n)
        T = cum[e] - cum[s]
        return (T > 0).sum(1), T.max(1), T.sum(1)

    def classes(self, which, t, a0=0, a1=None):
        """Per tile of size t along rows/cols of [a0, a1): counts of distinct footprints by size."""
        return _axis_classes(*self._cls_args[which], t, a0, a1)

    def chan(self, t):
        """Per channel tile of size t: (source channels, max fan-out per source channel in tile)."""
        c0 = np.arange(0, self.Co, t)
        c1 = np.minimum(c0 + t, self.Co)
        og = self.og
        g0, g1 = c0 // og, (c1 - 1) // og
        rc = (g1 - g0 + 1) * self.cg
        same = g0 == g1
        first = (g0 + 1) * og - c0
        last = c1 - g1 * og
        mid = np.where(g1 - g0 >= 2, og, 0)
        fc = np.where(same, c1 - c0, np.maximum(np.maximum(first, last), mid))
        return rc, fc


def _conv_out_axons_from(geom: _ConvGeom, regions):
    """Per source neuron (flat), destination tiles it reaches, for a dst cut
    into rectangular regions ``(y0, y1, x0, x1, th, tw, tc)``, each a uniform
    grid of tiles (cores of different regions are different cores)."""
    def per_axis(hits, a0, a1, t):
        return (np.add.reduceat(hits[a0:a1], np.arange(0, a1 - a0, t), axis=0) > 0).sum(0)
    cs = np.arange(geom.Cs)
    g = cs // geom.cg
    lo, hi = g * geom.og, (g + 1) * geom.og - 1
    out = 0
    for y0, y1, x0, x1, th, tw, tc in regions:
        ny, nx = per_axis(geom.hy, y0, y1, th), per_axis(geom.hx, x0, x1, tw)
        ncc = hi // tc - lo // tc + 1
        out = out + ny[:, None, None] * nx[None, :, None] * ncc[None, None, :]
    return np.asarray(out).ravel()


# -- the pass ---------------------------------------------------------------------------

def partition_cores(net: LoweredNet, hw, place: bool = True) -> Mapping:
    """Partition ``net`` onto cores of ``hw``; returns a :class:`Mapping`
    (chips assigned in order, then by :func:`neurocomp.mapping.place_chips`
    when more than one chip is needed and ``place``)."""
    lim = _Limits(hw)
    pops = [n for n, p in net.populations.items() if not isinstance(p.neuron, InputNeuron)]
    info = {}          # pop -> ("tile", [(y0, y1, x0, x1, th, tw, tc), ...]) or ("flat",)
    core_ids = {}      # pop -> per-neuron core id (global, unique)
    per_pop = {}
    lbs = {}
    next_id = [0]
    for name in reversed(pops):
        out_ax = _out_axons(net, name, info, core_ids)
        recs, lb = _partition_pop(net, hw, lim, name, out_ax, info)
        ids = np.full(net.populations[name].size, -1, np.int64)
        for r in recs:
            ids[r.indices(net.populations[name].shape)] = next_id[0]
            next_id[0] += 1
        core_ids[name] = ids
        per_pop[name] = recs
        lbs[name] = lb
    cores = [r for n in pops for r in per_pop[n]]
    cpc = int(hw.value("chip.cores"))
    max_chips = int(hw.value("chip.system.max_chips"))
    if len(cores) > cpc * max_chips:
        raise HardwareLimitError(f"network needs {len(cores)} cores but '{hw.name}' has at most "
                                 f"{max_chips} chips x {cpc} cores = {cpc * max_chips}")
    for k, r in enumerate(cores):
        r.chip, r.core = k // cpc, k % cpc
    m = Mapping(hw=hw.name, cores=cores)
    n = len(cores)
    tot = {k: sum(getattr(r, k) for r in cores)
           for k in ("neurons", "input_axons", "output_axons", "synapses", "synapse_memory_bits")}
    m.summary = {
        "cores_used": n,
        "lower_bound": int(sum(v["cores"] for v in lbs.values())),
        "proven_lower_bound": int(sum(v["proven"] for v in lbs.values())),
        "lower_bound_per_layer": lbs,
        "cores_per_layer": {p: len(per_pop[p]) for p in pops},
        "utilisation": {
            "neurons": tot["neurons"] / max(1, n * lim.N),
            "input_axons": tot["input_axons"] / max(1, n * lim.A),
            "output_axons": tot["output_axons"] / max(1, n * lim.O),
            "synapse_memory_bits": tot["synapse_memory_bits"] / max(1, n * lim.M),
        },
        "synapses": int(tot["synapses"]),
        "chips_used": len({r.chip for r in cores}),
    }
    if place and m.summary["chips_used"] > 1:
        place_chips(net, hw, m)
    return m


def _out_axons(net, name, info, core_ids):
    size = net.populations[name].size
    out = np.zeros(size, np.int64)
    if name == net.output:
        return out
    for c in net.outgoing(name):
        kind = info[c.dst]
        if kind[0] == "tile" and c.kind == "conv":
            out += _conv_out_axons_from(_ConvGeom(net, c), kind[1])
        else:
            from neurocomp.analysis import connection_matrix
            m = connection_matrix(net, c).tocoo()
            dst = core_ids[c.dst][m.col]
            u = np.unique(m.row.astype(np.int64) * (int(dst.max()) + 1 if dst.size else 1) + dst)
            base = int(dst.max()) + 1 if dst.size else 1
            out += np.bincount(u // base, minlength=size)
    return out


def _partition_pop(net, hw, lim, name, out_ax, info):
    p = net.populations[name]
    ins = net.incoming(name)
    if int(out_ax.max(initial=0)) > lim.O:
        i = int(out_ax.argmax())
        raise HardwareLimitError(f"neuron {i} of '{name}' reaches {int(out_ax[i])} cores "
                                 f"> {lim.O} output axons per core on '{hw.name}'")
    conv_only = bool(ins) and len(p.shape) == 3 and all(c.kind == "conv" for c in ins)
    best = None
    lb = _lower_bound(net, hw, lim, name, out_ax)
    if conv_only:
        best = _tile_partition(net, hw, lim, name, out_ax, lb["cores"])
        n_syn = sum(int(np.prod(c.weight.shape[:3])) * p.size for c in ins)
        # contiguous ranges cost a synapse-level count; no use once tiles reach the bound
        at_bound = best is not None and len(best[0]) <= lb["proven"]
        if n_syn <= FLAT_CONV_MAX_SYNAPSES and not at_bound:
            try:
                flat = _flat_partition(net, hw, lim, name, out_ax,
                                       max_cores=None if best is None else len(best[0]) - 1)
            except HardwareLimitError:
                if best is None:
                    raise
                flat = None
            if flat is not None and (best is None or len(flat[0]) < len(best[0])):
                best = flat
        if best is None:
            raise HardwareLimitError(f"'{name}' {p.shape}: no tiling fits a core of '{hw.name}' "
                                     f"({lim.N} neurons, {lim.A} input axons, {lim.M} memory bits)")
    else:
        best = _flat_partition(net, hw, lim, name, out_ax)
    recs, kind = best
    info[name] = kind
    if conv_only and len(recs) > lb["cores"]:
        # only worth its cost where the plain bound is not met
        cc = _conv_capacity_cores(net, hw, lim, name)
        lb["conv_capacity"] = cc
        lb["cores"] = max(lb["cores"], cc)
        lb["proven"] = max(lb["proven"], cc)
    return recs, lb


def _min_bits_per_synapse(hw, enc, c):
    """Fewest memory bits any row of ``enc`` spends per synapse of ``c``: a
    row is a sum of blocks, so its cost per synapse is at least the best
    block's (``f(m) / m`` over block sizes ``m``)."""
    f, _ = _rb(hw, enc, c)
    block = int(hw.value(f"synapse_encodings.{enc}.max_synapses_per_block"))
    return min(f(m) / m for m in range(1, block + 1))


def _conv_fanin_and_channels(net, c):
    """Exact non-zero fan-in of every destination neuron of a conv connection
    (flat order), from its kernel and the taps valid at each position, and
    ``nch0``: the most source channels that every destination neuron reads
    at one tap valid at every position (0 when no such tap exists)."""
    from neurocomp import numerics as nm
    H, W, _ = net.populations[c.src].shape
    Ho, Wo, _ = net.populations[c.dst].shape
    k = (nm.to_int32(c.weight) != 0).astype(np.int64)        # (kh, kw, cg, co)
    ok = []
    for n_out, n_in, kk, st, d, p0 in ((Ho, H, k.shape[0], c.strides[0], c.dilation[0], c.pads[0][0]),
                                      (Wo, W, k.shape[1], c.strides[1], c.dilation[1], c.pads[1][0])):
        i = np.arange(n_out)[:, None] * st + np.arange(kk)[None, :] * d - p0
        ok.append(((i >= 0) & (i < n_in)).astype(np.int64))
    fanin = np.einsum("ya,xb,abo->yxo", ok[0], ok[1], k.sum(2)).ravel()
    per_tap = k.sum(2).min(2)                                  # (kh, kw): min over co
    always = ok[0].all(0)[:, None] & ok[1].all(0)[None, :]
    nch0 = int(per_tap[always].max()) if always.any() else 0
    return fanin, nch0


def _syn_lower_bits(net, hw, lim, c):
    """(synapses of ``c``, fewest memory bits per synapse any valid mapping
    can spend on them).

    ``conv_shared``: a core stores one row per weight class (source channel,
    set of (tap, output channel)); its synapses are at most the sum over
    classes of row width x axons in the class, and the axons of one class sit
    at distinct source positions, each reaching, through one fixed tap, a
    different destination position of the core -- so at most ``P`` (the
    core's destination positions) axons share a row, and the core stores
    >= syn / P synapses.  ``P <= min(dst positions, neurons per core,
    input axons per core / nch0)``: every destination position reads
    ``nch0`` distinct sources at one tap valid everywhere.  Linear in the
    core's synapses, so it sums over cores.  ``dense`` and ``sparse`` store
    every synapse (dense stores zeros too)."""
    if c.kind == "dense":
        syn = int(np.count_nonzero(c.effective_weight()))
        encs = {e: 1.0 for e in ("dense", "sparse")}
    else:
        fanin, nch0 = _conv_fanin_and_channels(net, c)
        syn = int(fanin.sum())
        Ho, Wo, _ = net.populations[c.dst].shape
        P = min(Ho * Wo, lim.N)
        if nch0 > 0:
            P = min(P, min(lim.A, net.populations[c.src].size) // nch0)
        encs = {"dense": 1.0, "sparse": 1.0, "conv_shared": 1.0 / max(P, 1)}
    return syn, min(_min_bits_per_synapse(hw, e, c) * f for e, f in encs.items())


def _lower_bound(net, hw, lim, name, out_ax):
    """max over limits of ceil(layer total / per-core limit), where a total
    that depends on the partition (synapse memory) is its provable minimum.

    Also ``proven``: the same argument with whole neurons -- a core holds at
    most ``cap`` neurons, the largest n whose n cheapest neurons (output
    axons, memory) still fit one core -- which the plain bound cannot see
    (e.g. 8192 neurons x 3 output axons is exactly 6 x 4096, but no core can
    hold 4096/3 neurons)."""
    p = net.populations[name]
    ins = net.incoming(name)
    axons = 0
    mem = 0.0
    mem_per_neuron = np.zeros(p.size)
    for c in ins:
        n_src = net.populations[c.src].size
        syn, bits = _syn_lower_bits(net, hw, lim, c)
        mem += syn * bits
        if c.kind == "dense":
            n_src = int(np.count_nonzero(np.any(c.effective_weight() != 0, axis=0)))
            mem_per_neuron += np.count_nonzero(c.effective_weight(), axis=1) * bits
        else:
            # only source positions some output window covers need an axon (strides can skip some)
            h, w, cin = net.populations[c.src].shape
            kh, kw = c.weight.shape[:2]
            ho, wo = p.shape[:2]
            reach = []
            for size, k, st, d, pad, n_out in ((h, kh, c.strides[0], c.dilation[0], c.pads[0][0], ho),
                                               (w, kw, c.strides[1], c.dilation[1], c.pads[1][0], wo)):
                pos = (np.arange(n_out)[:, None] * st + np.arange(k)[None, :] * d - pad).ravel()
                reach.append(np.unique(pos[(pos >= 0) & (pos < size)]).size)
            n_src = reach[0] * reach[1] * cin
            mem_per_neuron += _conv_fanin_and_channels(net, c)[0] * bits
        axons += n_src
    parts = {"neurons": math.ceil(p.size / lim.N), "input_axons": math.ceil(axons / lim.A),
             "output_axons": math.ceil(int(out_ax.sum()) / lim.O),
             "synapse_memory_bits": math.ceil(mem / lim.M - 1e-9)}
    cores = max(parts.values())
    # whole-neuron capacity: sorted prefix sums of each per-neuron cost
    cap = lim.N
    for cost, L in ((np.sort(out_ax), lim.O), (np.sort(mem_per_neuron), lim.M)):
        cap = min(cap, int(np.searchsorted(np.cumsum(cost), L * (1 + 1e-12), side="right")))
    proven = max(cores, math.ceil(p.size / max(cap, 1)))
    return {"cores": cores, **parts, "proven": proven, "per_core_capacity": cap,
            "min_synapse_memory_bits": int(math.floor(mem))}


# -- footprint capacity bound (conv layers) ------------------------------------------

def _axis_intervals(n_out, n_in, k, s, d, p0):
    """Every output interval [a, b) along one axis: (a, b, distinct inputs N,
    D = sum of sizes of the distinct non-empty tap footprints, T = valid taps,
    then k columns: distinct footprints of size 1..k, then k columns: inputs
    whose footprint has size 1..k)."""
    rows = []
    for a in range(n_out):
        bits = np.zeros(n_in, np.int64)
        T = 0
        for b in range(a + 1, n_out + 1):
            o = b - 1
            i = o * s + np.arange(k) * d - p0
            ok = (i >= 0) & (i < n_in)
            bits[i[ok]] |= (1 << np.arange(k))[ok]
            T += int(ok.sum())
            u, cnt = np.unique(bits[bits > 0], return_counts=True)
            sz = np.array([bin(int(v)).count("1") for v in u], np.int64)
            D = int(sz.sum())
            rows.append((a, b, int((bits > 0).sum()), D, T,
                         *np.bincount(sz - 1, minlength=k)[:k], *np.bincount(sz - 1, cnt, minlength=k)[:k]))
    return np.array(rows, np.int64).reshape(-1, 5 + 2 * k)


_AXIS_CACHE: dict = {}


def _axis_table(args):
    if args not in _AXIS_CACHE:
        _AXIS_CACHE[args] = _axis_intervals(*args)
    return _AXIS_CACHE[args]


def _conv_capacity(net, hw, lim, name):
    """Per destination position ``p`` of a conv layer, ``cap[p]``: an upper
    bound on the neurons of ANY core (tile or flat range of the mapping
    format) that holds a neuron at ``p``; ``None`` when the argument does not
    apply (several inputs, grouped conv, zero kernel weights).

    Argument.  Let a core hold output positions ``S`` and, at each, some
    output channels; ``S_co`` the positions holding channel ``co``.  With a
    kernel without zeros and ``groups == 1``: (a) the core's input axons are
    ``|N(S)| * cin``, ``N(S)`` the input positions some tap of ``S`` reads;
    (b) under ``conv_shared`` the classes restricted to one output channel
    ``co`` are the distinct clipped footprints ``F(i) = {taps t : i - t in
    S_co}``, so the stored synapses are >= ``cin * sum_co D(S_co)``, ``D(S)``
    = sum of the sizes of the distinct footprints; under ``sparse`` >= ``cin
    * sum_co T(S_co)`` (valid taps); under ``dense`` rows x width >=
    ``|N(S)| cin x neurons``; every stored synapse costs >= the encoding's
    cheapest bits per synapse.  A tile has ``S_co = S`` for all its ``tc``
    channels (``D``, ``T``, ``N`` of a rectangle are products of per-axis
    values), so ``tc <= (M - axon overhead) / (cin D(S) bits)`` etc.; a flat
    range has every ``S_co`` a row-major sub-interval of ``S``, so its
    neurons ``sum_co |S_co| <= rho(S) * sum_co D(S_co)`` with ``rho(S)`` the
    largest ``|S'| / D(S')`` over sub-intervals (and, for ``|S| >= 3``, each of
    the ``Co`` channels sits on every inner position, so ``S_co`` is one of
    four intervals and the core needs ``>= Co`` times the least of their
    ``D``; if that overflows, no such range fits).  For tiles the relaxed
    ``tc`` is then stepped down while the exact cost of the tile (the
    checker's count: per class ``f(|F| tc)``) overflows every encoding --
    cost grows with ``tc``, so that is still an upper bound.  Every core ``K`` then has
    ``|K| <= cap[p]`` for each of its neurons, so #cores = sum_K sum_{n in K}
    1/|K| >= sum_n 1/cap[p(n)]."""
    ins = net.incoming(name)
    if len(ins) != 1 or ins[0].kind != "conv" or ins[0].groups != 1:
        return None
    c = ins[0]
    from neurocomp import numerics as nm
    if not (nm.to_int32(c.weight) != 0).all():
        return None
    H, W, cin = net.populations[c.src].shape
    Ho, Wo, Co = net.populations[c.dst].shape
    kh, kw = c.weight.shape[:2]
    axy = (Ho, H, kh, c.strides[0], c.dilation[0], c.pads[0][0])
    axx = (Wo, W, kw, c.strides[1], c.dilation[1], c.pads[1][0])
    mb = {e: _min_bits_per_synapse(hw, e, c) for e in ("conv_shared", "sparse", "dense")}
    ovh = {e: _rb(hw, e, c)[1] for e in mb}
    Nl, A, M = lim.N, lim.A, lim.M
    Q = A // cin                                      # most input positions one core can read

    def enc_cap(npos, D, T, Nin):
        """Neurons per core allowed by memory (float arrays), best encoding."""
        rows = Nin * cin
        cs = (M - rows * ovh["conv_shared"]) / (cin * mb["conv_shared"]) * npos / np.maximum(D, 1)
        sp = (M - rows * ovh["sparse"]) / (cin * mb["sparse"]) * npos / np.maximum(T, 1)
        de = (M - rows * ovh["dense"]) / (np.maximum(rows, 1) * mb["dense"])
        return np.maximum(np.maximum(cs, sp), de)

    # tiles: rectangles = pairs of axis intervals
    ty, tx = _axis_table(axy), _axis_table(axx)
    ty = ty[ty[:, 2] * int(tx[:, 2].min()) <= Q]
    tx = tx[tx[:, 2] * int(ty[:, 2].min(initial=Q + 1)) <= Q] if ty.size else tx[:0]
    cap = np.zeros((Ho, Wo))
    if ty.size and tx.size:
        npos = (ty[:, 1] - ty[:, 0])[:, None] * (tx[:, 1] - tx[:, 0])[None, :]
        Nin = ty[:, 2][:, None] * tx[:, 2][None, :]
        D = ty[:, 3][:, None] * tx[:, 3][None, :]
        T = ty[:, 4][:, None] * tx[:, 4][None, :]
        tc = np.floor(enc_cap(npos, D, T, Nin) / npos + 1e-9)
        tc = np.minimum(np.minimum(tc, Co), Nl // npos)
        # exact cost of the tile at tc (the checker's count for a tile): cost is
        # monotone in tc, so step tc down while even the cheapest encoding overflows
        fns = {e: (lambda w, e=e: _row_table(hw, e, c, int(w.max(initial=0)))[w]) for e in mb}
        hy, my_ = ty[:, 5:5 + kh], ty[:, 5 + kh:5 + 2 * kh]
        hx, mx_ = tx[:, 5:5 + kw], tx[:, 5 + kw:5 + 2 * kw]
        ab = np.arange(1, kh + 1)[:, None] * np.arange(1, kw + 1)[None, :]     # footprint sizes
        live = (Nin <= Q) & (tc >= 1)
        for _ in range(6):
            yi, xi = np.nonzero(live)
            if yi.size == 0:
                break
            t = tc[yi, xi].astype(np.int64)
            rows_ = Nin[yi, xi] * cin
            w = ab[None] * t[:, None, None]                                    # (n, kh, kw)
            cs = cin * np.einsum("na,nb,nab->n", hy[yi], hx[xi], fns["conv_shared"](w)) \
                + rows_ * ovh["conv_shared"]
            sp = cin * np.einsum("na,nb,nab->n", my_[yi], mx_[xi], fns["sparse"](w)) + rows_ * ovh["sparse"]
            de = rows_ * (fns["dense"](npos[yi, xi] * t) + ovh["dense"])
            bad = np.minimum(np.minimum(cs, sp), de) > M
            if not bad.any():
                break
            tc[yi[bad], xi[bad]] -= 1
            live[yi[bad], xi[bad]] = tc[yi[bad], xi[bad]] >= 1
        v = np.where(Nin <= Q, np.maximum(tc, 0) * npos, 0).astype(np.float64)
        my = (ty[:, 0][None, :] <= np.arange(Ho)[:, None]) & (np.arange(Ho)[:, None] < ty[:, 1][None, :])
        mx = (tx[:, 0][None, :] <= np.arange(Wo)[:, None]) & (np.arange(Wo)[:, None] < tx[:, 1][None, :])
        rowmax = np.where(my[:, :, None], v[None], 0).max(1)            # (Ho, n_x_intervals)
        cap = np.where(mx[None, :, :], rowmax[:, None, :], 0).max(2)    # (Ho, Wo)
    # flat ranges: row-major position intervals, exact footprints (2-D bit masks)
    Lmax = min(Ho * Wo, Nl // Co + 2)
    taps = []
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    for p in range(Ho * Wo):
        y, x = divmod(p, Wo)
        iy = y * c.strides[0] + ky * c.dilation[0] - c.pads[0][0]
        ix = x * c.strides[1] + kx * c.dilation[1] - c.pads[1][0]
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        taps.append(list(zip((iy * W + ix)[ok].tolist(), (1 << (ky * kw + kx))[ok].tolist())))
    vy = np.arange(Ho)[:, None] * c.strides[0] + np.arange(kh)[None, :] * c.dilation[0] - c.pads[0][0]
    rowsig = [tuple(r) for r in ((vy >= 0) & (vy < H))]          # valid vertical taps per row
    n = Ho * Wo
    Dm = np.full((n, Lmax + 1), -1, np.int64)
    Tm = np.zeros((n, Lmax + 1), np.int64)
    Nm = np.zeros((n, Lmax + 1), np.int64)
    memo = {}
    span = -(-Lmax // Wo) + 1
    work = 0
    for u in range(n):
        y, x = divmod(u, Wo)
        key = (x, tuple(rowsig[y:y + span]))        # translation along y changes nothing else
        if key in memo:
            Dm[u], Tm[u], Nm[u] = memo[key]
            Dm[u, n - u + 1:] = -1
            continue
        fp, cls = {}, {}
        D = T = 0
        for L in range(1, min(Lmax, n - u) + 1):
            work += len(taps[u + L - 1])
            if work > CAPACITY_BOUND_WORK:
                return None                         # too costly: no capacity bound (still sound)
            for i, b in taps[u + L - 1]:
                old = fp.get(i, 0)
                if old:
                    cls[old] -= 1
                    if not cls[old]:
                        D -= bin(old).count("1")
                new = old | b
                fp[i] = new
                cls[new] = cls.get(new, 0) + 1
                if cls[new] == 1:
                    D += bin(new).count("1")
                T += 1
            if len(fp) > Q:
                break
            Dm[u, L], Tm[u, L], Nm[u, L] = D, T, len(fp)
        memo[key] = (Dm[u].copy(), Tm[u].copy(), Nm[u].copy())
    ok = Dm >= 0
    Ls = np.arange(Lmax + 1)[None, :].repeat(n, 0)
    rcs = np.where(ok, Ls / np.maximum(Dm, 1), 0.0)
    rsp = np.where(ok, Ls / np.maximum(Tm, 1), 0.0)
    for L in range(2, Lmax + 1):                   # rho over sub-intervals
        rcs[:, L] = np.where(ok[:, L], np.maximum(rcs[:, L], rcs[:, L - 1]), 0)
        rsp[:, L] = np.where(ok[:, L], np.maximum(rsp[:, L], rsp[:, L - 1]), 0)
        rcs[:-1, L] = np.where(ok[:-1, L], np.maximum(rcs[:-1, L], rcs[1:, L - 1]), 0)
        rsp[:-1, L] = np.where(ok[:-1, L], np.maximum(rsp[:-1, L], rsp[1:, L - 1]), 0)
    rows = Nm * cin
    mem = np.maximum(np.maximum((M - rows * ovh["conv_shared"]) / (cin * mb["conv_shared"]) * rcs,
                                (M - rows * ovh["sparse"]) / (cin * mb["sparse"]) * rsp),
                     (M - rows * ovh["dense"]) / (np.maximum(rows, 1) * mb["dense"]))
    fcap = np.where(ok, np.floor(np.minimum(np.minimum(mem + 1e-9, Nl), Co * Ls)), 0)
    # |S| >= 3: every channel sits on all inner positions S°, so each S_co is one
    # of S°, S° + first, S° + last, S -- its footprints cost at least the least of
    # those four, for each of the Co channels; the core holds >= Co (|S| - 2) + 2
    for L in range(3, Lmax + 1):
        u = np.arange(n - L + 1)
        if u.size == 0:
            break
        d4 = np.stack([Dm[u + 1, L - 2], Dm[u, L - 1], Dm[u + 1, L - 1], Dm[u, L]]).min(0)
        r = Nm[u, L] * cin
        need = np.minimum(np.minimum(cin * mb["conv_shared"] * Co * d4 + r * ovh["conv_shared"],
                                     cin * mb["sparse"] * Co * Tm[u + 1, L - 2] + r * ovh["sparse"]),
                          r * (Co * (L - 2) + 2) * mb["dense"] + r * ovh["dense"])
        fcap[u, L] = np.where(ok[u, L] & (need <= M * (1 + 1e-12)), fcap[u, L], 0)
    capf = np.zeros(n)
    for L in range(1, Lmax + 1):
        for j in range(L):
            capf[j:] = np.maximum(capf[j:], fcap[:n - j, L])
    return np.maximum(cap.ravel(), capf)


_ROW_TABLES: dict = {}


def _row_table(hw, enc, c, n):
    """Bits of one stored row of 0..>=n synapses of ``c`` under ``enc`` (no
    per-axon overhead), as an array; cached per chip, encoding and bit widths."""
    f, _ = _rb(hw, enc, c)
    key = (hw.name, enc, conn_bits(c), tuple(f(w) for w in (1, 2, 63, 64, 65, 1000)))
    tab = _ROW_TABLES.get(key)
    if tab is None or tab.size <= n:
        tab = np.array([f(w) for w in range(max(n + 1, 64))], np.int64)
        _ROW_TABLES[key] = tab
    return tab


def _conv_capacity_cores(net, hw, lim, name):
    cap = _conv_capacity(net, hw, lim, name)
    if cap is None:
        return 0
    Co = net.populations[name].shape[2]
    if (cap <= 0).any():
        return 0                                    # some neuron fits no core: reported elsewhere
    return math.ceil(float((Co / cap).sum()) - 1e-6)


# -- tiles ----------------------------------------------------------------------------

def _sizes(n):
    return sorted({-(-n // k) for k in range(1, n + 1)})


def _tile_partition(net, hw, lim, name, out_ax, target=0):
    """Uniform grid of tiles over the whole layer; when that needs more than
    ``target`` cores, also cut off border bands (the first/last ``b`` rows
    and/or columns, whose clipped receptive fields cost fewer axons and
    store fewer footprint rows, so they take larger tiles) and tile each of
    the up to 9 regions with its own grid.  Returns (records, ("tile",
    regions)) for the fewest cores, or None."""
    p = net.populations[name]
    Ho, Wo, Co = p.shape
    geoms = [_ConvGeom(net, c) for c in net.incoming(name)]
    fanin = sum(g.max_fanin for g in geoms)
    if fanin > lim.A:
        raise HardwareLimitError(f"a neuron of '{name}' has fan-in {fanin} > {lim.A} input axons per core "
                                 f"on '{hw.name}' (inputs from {', '.join(g.c.src for g in geoms)}); "
                                 "split the layer's inputs")
    O3 = out_ax.reshape(Ho, Wo, Co)
    sat = _sat(O3)
    rbs = {id(g): (_rb(hw, "conv_shared", g.c), _rb(hw, "sparse", g.c), _rb(hw, "dense", g.c))
           for g in geoms}
    cache = {}

    def ax(g, which, t, a0, a1):
        key = (id(g), which, t, a0, a1)
        if key not in cache:
            cache[key] = g.chan(t) if which == 2 else \
                g.axis(which, t, a0, a1) if which < 2 else g.classes(which - 3, t, a0, a1)
        return cache[key]

    best_cache = {}

    def best_in(y0, y1, x0, x1, bound=None):
        """Fewest-core uniform grid over the region (all channels)."""
        key = (y0, y1, x0, x1)
        if key in best_cache:
            return best_cache[key]
        h, w = y1 - y0, x1 - x0
        cands = []
        for th in _sizes(h):
            for tw in _sizes(w):
                if th * tw > lim.N:
                    continue
                for tc in _sizes(Co):
                    if th * tw * tc > lim.N:
                        continue
                    n = (-(-h // th)) * (-(-w // tw)) * (-(-Co // tc))
                    cands.append((n, -th * tw * tc, th, tw, tc))
        cands.sort()
        out = None
        spatial_ok = {}
        max_tc = {}        # (th, tw) -> a tc that failed on axons/memory: larger ones fail too
        ungrouped = all(g.c.groups == 1 for g in geoms)
        for n, _, th, tw, tc in cands:
            if bound is not None and n >= bound:
                break
            if tc >= max_tc.get((th, tw), Co + 1):
                continue
            if (th, tw) not in spatial_ok:
                # input axons of a tile are >= its source positions x cg per conv, whatever tc
                a = sum(ax(g, 0, th, y0, y1)[0][:, None] * ax(g, 1, tw, x0, x1)[0][None, :] * g.cg
                        for g in geoms)
                spatial_ok[(th, tw)] = int(np.max(a)) <= lim.A
            if not spatial_ok[(th, tw)]:
                continue
            ok, res = _score(geoms, rbs, ax, lim, O3, th, tw, tc, (y0, y1, x0, x1), sat)
            if not ok and ungrouped and res != "output_axons":
                # groups == 1: per tile, axons do not depend on tc and memory grows with
                # the tile's channel count, and a wider grid's tiles hold as many channels
                max_tc[(th, tw)] = min(tc, max_tc.get((th, tw), Co + 1))
            if ok:
                out = (n, (y0, y1, x0, x1, th, tw, tc), res)
                break
        if bound is None or out is not None:
            best_cache[key] = out
        return out

    whole = best_in(0, Ho, 0, Wo)
    best = None if whole is None else (whole[0], [whole])
    if best is None or best[0] > target:
        for by, bx in BORDER_BANDS:
            if 2 * by >= Ho or 2 * bx >= Wo or max(by, bx) > 2 and Ho * Wo > 64:
                continue                  # wide bands only pay (and are only cheap) on small maps
            ys = [a for a in ((0, by), (by, Ho - by), (Ho - by, Ho)) if a[1] > a[0]]
            xs = [a for a in ((0, bx), (bx, Wo - bx), (Wo - bx, Wo)) if a[1] > a[0]]
            parts, tot = [], 0
            for y0, y1 in ys:
                for x0, x1 in xs:
                    left = None if best is None else best[0] - tot
                    r = best_in(y0, y1, x0, x1, left)
                    if r is None:
                        break
                    parts.append(r)
                    tot += r[0]
                else:
                    continue
                break
            else:
                if best is None or tot < best[0]:
                    best = (tot, parts)
    if best is None:
        return None
    recs = [rec for _, (y0, y1, x0, x1, th, tw, tc), res in best[1] for rec in _tile_records(name, res)]
    return recs, ("tile", [reg for _, reg, _ in best[1]])


def _sat(O3):
    """Summed-area table of a (H, W, C) array, zero-padded in front."""
    P = np.zeros(tuple(n + 1 for n in O3.shape), np.int64)
    P[1:, 1:, 1:] = O3.cumsum(0).cumsum(1).cumsum(2)
    return P


def _score(geoms, rbs, ax, lim, O3, th, tw, tc, region=None, sat=None):
    """Score the uniform (th, tw, tc) grid over ``region`` (y0, y1, x0, x1;
    default the whole layer): (fits, per-tile counts).  ``sat``: ``_sat(O3)``."""
    Ho, Wo, Co = O3.shape
    y0, y1, x0, x1 = (0, Ho, 0, Wo) if region is None else region
    sh, sw, sc = np.arange(y0, y1, th), np.arange(x0, x1, tw), np.arange(0, Co, tc)
    ny = np.minimum(sh + th, y1) - sh
    nx = np.minimum(sw + tw, x1) - sw
    ncn = np.minimum(sc + tc, Co) - sc
    P = _sat(O3) if sat is None else sat
    a = (sh[:, None, None], sw[None, :, None], sc[None, None, :])
    b = ((sh + ny)[:, None, None], (sw + nx)[None, :, None], (sc + ncn)[None, None, :])
    outs = (P[b[0], b[1], b[2]] - P[a[0], b[1], b[2]] - P[b[0], a[1], b[2]] - P[b[0], b[1], a[2]]
            + P[a[0], a[1], b[2]] + P[a[0], b[1], a[2]] + P[b[0], a[1], a[2]] - P[a[0], a[1], a[2]])
    if outs.max() > lim.O:
        return False, "output_axons"
    axons = np.zeros(outs.shape, np.int64)
    syn = np.zeros(outs.shape, np.int64)
    mem = np.zeros(outs.shape, np.int64)
    encs = []
    for g in geoms:
        ry, fy, sy = ax(g, 0, th, y0, y1)
        rx, fx, sx = ax(g, 1, tw, x0, x1)
        rc, fc = ax(g, 2, tc, 0, Co)
        rows = ry[:, None, None] * rx[None, :, None] * rc[None, None, :]
        spr = fy[:, None, None] * fx[None, :, None] * fc[None, None, :]
        axons += rows
        if axons.max() > lim.A:
            return False, "input_axons"
        syn += sy[:, None, None] * sx[None, :, None] * (g.cg * ncn)[None, None, :]
        (fcs, ocs), (fsp, osp), (fde, ode) = rbs[id(g)]
        # conv_shared: one row per (source channel, footprint rows x footprint cols),
        # each of |fy| * |fx| taps x the channel's output channels on the core
        ky, kx = ax(g, 3, th, y0, y1), ax(g, 4, tw, x0, x1)
        a = np.arange(1, g.kh + 1)[:, None, None]
        b = np.arange(1, g.kw + 1)[None, :, None]
        rowb = _vec(fcs, a * b * fc[None, None, :])                  # (kh, kw, n_ctiles)
        m_cs = np.einsum("ya,xb,abc->yxc", ky, kx, rowb) * rc[None, None, :] + rows * ocs
        m_sp = rows * (_vec(fsp, spr) + osp)
        # dense: every axon a row as wide as the tile (zeros stored; no index bits)
        m_de = rows * (_vec(fde, ny[:, None, None] * nx[None, :, None] * ncn[None, None, :]) + ode)
        enc = np.where(m_cs <= m_sp, 0, 1)
        m = np.minimum(m_cs, m_sp)
        enc = np.where(m_de < m, 2, enc)
        mem += np.minimum(m, m_de)
        encs.append((g.c.name, enc))
        if mem.max() > lim.M:
            return False, "synapse_memory_bits"
    neurons = ny[:, None, None] * nx[None, :, None] * ncn[None, None, :]
    return True, dict(sh=sh, sw=sw, sc=sc, ny=ny, nx=nx, ncn=ncn, outs=outs, axons=axons, syn=syn,
                      mem=mem, encs=encs, neurons=neurons)


_ENC_NAMES = ("conv_shared", "sparse", "dense")


def _tile_records(name, r):
    recs = []
    for i, h0 in enumerate(r["sh"]):
        for j, w0 in enumerate(r["sw"]):
            for k, c0 in enumerate(r["sc"]):
                recs.append(CoreRecord(
                    chip=0, core=0, population=name,
                    tile=[[int(h0), int(h0 + r["ny"][i])], [int(w0), int(w0 + r["nx"][j])],
                          [int(c0), int(c0 + r["ncn"][k])]],
                    neurons=int(r["neurons"][i, j, k]), input_axons=int(r["axons"][i, j, k]),
                    output_axons=int(r["outs"][i, j, k]), synapses=int(r["syn"][i, j, k]),
                    synapse_memory_bits=int(r["mem"][i, j, k]),
                    encodings={cn: _ENC_NAMES[int(u[i, j, k])] for cn, u in r["encs"]}))
    return recs


# -- contiguous ranges ---------------------------------------------------------------

class _FlatConn:
    """Dst-major non-zero structure of one incoming connection."""

    def __init__(self, net, hw, c):
        self.c = c
        if c.kind == "dense":
            rows, cols = np.nonzero(c.effective_weight())
            n_dst = net.populations[c.dst].size
            self.indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_dst))])
            self.indices = cols.astype(np.int64)
            self.fd, self.od = _rb(hw, "dense", c)
            # column-major keys col * n_dst + row (sorted): first non-zero row >= a per column
            self.n_dst = n_dst
            self.ckeys = np.sort(cols.astype(np.int64) * n_dst + rows)
            self.ncol = int(c.effective_weight().shape[1])
            self._first = (None, None)
        else:
            from neurocomp.analysis import connection_matrix
            m = connection_matrix(net, c).T.tocsr()
            m.sort_indices()
            self.indptr, self.indices = m.indptr.astype(np.int64), m.indices.astype(np.int64)
            self.fs, self.os = _rb(hw, "sparse", c)
            self.fc, self.oc = _rb(hw, "conv_shared", c)
            self.fd, self.od = _rb(hw, "dense", c)
            self.cs = net.populations[c.src].shape[2]
            dst = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(self.indptr))
            code = conv_tap_codes(net, c, self.indices, dst).astype(np.uint64)
            # per (tap, output channel) code a well-mixed 64-bit word (splitmix64);
            # a source's class is its channel and the wrapped sum over its codes
            z = (code + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            self.hv = z ^ (z >> np.uint64(31))
            self.hc = np.random.default_rng(7).integers(0, 2**63, self.cs, dtype=np.uint64)  # per channel

    def cost(self, a, b):
        """(input axons, synapses, memory bits, encoding) of dst neurons [a, b)."""
        lo, hi = self.indptr[a], self.indptr[b]
        if self.c.kind == "dense":
            # distinct sources of rows [a, b): columns whose first non-zero row >= a is < b
            if self.ckeys.size == 0:
                return 0, 0, 0, "dense"
            if self._first[0] != a:
                q = np.arange(self.ncol, dtype=np.int64) * self.n_dst + a
                pos = np.searchsorted(self.ckeys, q)
                hit = pos < self.ckeys.size
                key = self.ckeys[np.minimum(pos, self.ckeys.size - 1)]
                hit &= key // self.n_dst == np.arange(self.ncol)
                self._first = (a, np.sort(np.where(hit, key % self.n_dst, self.n_dst + 1)))
            rows = int(np.searchsorted(self._first[1], b))
            return rows, int(hi - lo), rows * (self.fd(b - a) + self.od), "dense"
        cols = self.indices[lo:hi]
        if cols.size == 0:
            return 0, 0, 0, "sparse"
        src, inv, fan = np.unique(cols, return_inverse=True, return_counts=True)
        rows = int(src.size)
        vals, cnt = np.unique(fan, return_counts=True)
        m_sp = int(sum(int(n) * self.fs(int(v)) for v, n in zip(vals, cnt))) + rows * self.os
        # conv_shared: one row per distinct (source channel, set of (tap, output channel))
        h = self.hc[src % self.cs].copy()
        np.add.at(h, inv, self.hv[lo:hi])
        _, first = np.unique(h, return_index=True)
        wv, wc = np.unique(fan[first], return_counts=True)
        m_cs = int(sum(int(n) * self.fc(int(v)) for v, n in zip(wv, wc))) + rows * self.oc
        m_de = rows * (self.fd(b - a) + self.od)
        best = min((m_cs, "conv_shared"), (m_sp, "sparse"), (m_de, "dense"), key=lambda t: t[0])
        return rows, int(cols.size), best[0], best[1]


def _flat_partition(net, hw, lim, name, out_ax, max_cores=None):
    """Greedy contiguous ranges; ``None`` as soon as more than ``max_cores``
    would be needed (the caller already has a partition that good)."""
    p = net.populations[name]
    n = p.size
    conns = [_FlatConn(net, hw, c) for c in net.incoming(name)]
    fanin = np.zeros(n, np.int64)
    for fc in conns:
        fanin += np.diff(fc.indptr)
    if fanin.size and fanin.max() > lim.A:
        i = int(fanin.argmax())
        raise HardwareLimitError(f"neuron {i} of '{name}' has fan-in {int(fanin[i])} > {lim.A} "
                                 f"input axons per core on '{hw.name}'")
    cum_out = np.concatenate([[0], np.cumsum(out_ax)])

    def evaluate(a, b):
        if cum_out[b] - cum_out[a] > lim.O:
            return None
        ax = syn = mem = 0
        encs = {}
        for fc in conns:
            r, s, m, e = fc.cost(a, b)
            ax, syn, mem = ax + r, syn + s, mem + m
            encs[fc.c.name] = e
            if ax > lim.A or mem > lim.M:
                return None
        return ax, syn, mem, encs

    recs = []
    a = 0
    while a < n:
        if max_cores is not None and len(recs) >= max_cores:
            return None
        first = evaluate(a, a + 1)
        if first is None:
            r = [fc.cost(a, a + 1) for fc in conns]
            raise HardwareLimitError(
                f"neuron {a} of '{name}' fits no core of '{hw.name}': {sum(x[0] for x in r)} input axons "
                f"(limit {lim.A}), {sum(x[2] for x in r)} synapse memory bits (limit {lim.M}), "
                f"{int(out_ax[a])} output axons (limit {lim.O})")
        lo, hi = a + 1, min(n, a + lim.N)          # lo feasible
        best = first
        if hi > lo:
            res = evaluate(a, hi)
            if res is not None:
                lo, best = hi, res
            else:
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    res = evaluate(a, mid)
                    if res is None:
                        hi = mid
                    else:
                        lo, best = mid, res
        ax, syn, mem, encs = best
        recs.append(CoreRecord(chip=0, core=0, population=name, start=int(a), stop=int(lo),
                               neurons=int(lo - a), input_axons=int(ax),
                               output_axons=int(cum_out[lo] - cum_out[a]), synapses=int(syn),
                               synapse_memory_bits=int(mem), encodings=encs))
        a = lo
    return recs, ("flat",)
