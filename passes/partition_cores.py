"""Split every non-input population of a LoweredNet into core-sized blocks.

Limits (all from the hardware YAML): ``core.neurons``, ``core.input_axons``,
``core.output_axons`` and ``core.synapse_memory_bits`` with the per-encoding
cost model of ``HardwareConfig.synapse_memory_bits`` (counting rules: see
``neurocomp.mapping``).  Dense connections use the ``dense`` encoding; conv
connections whichever of ``conv_shared``, ``sparse`` and ``dense`` is smallest per core
(``dense`` stores zeros but no target index: it wins where every axon of a small
tile reaches most of its neurons, e.g. 1x1 tiles of wide 3x3 layers on Loihi 1).
A core holds neurons of one layer (nengo-loihi's one block per core).

Populations are partitioned from the output back to the input, so that when a
population is split the cores of everything it feeds are known and its
neurons' output axons (one per destination core) can be counted.

* A population fed by one ``groups == 1`` convolution is cut into tiles
  ``[y0, y1) x [x0, x1) x [c0, c1)`` by a slab search (``_Rects``,
  ``_slab_partition``).  Every count of a tile is a product of per-axis
  tables (distinct inputs, distinct tap footprints by size -- the
  ``conv_shared`` rows --, inputs by footprint size), so the most channels
  each rectangle of output positions can hold is found for all rectangles
  at once.  Then, per region of a few decompositions of the map (whole; a
  border band of 1-3 rows/columns cut off as a 9-region grid, as full-width
  bands, or as a pinwheel whose side strips each take a corner), the
  channels are cut into slabs, each slab a partition of the region into row
  bands cut into column pieces (or the transpose) that all hold the slab's
  height: a DP per height (``_band_costs_nb``) and an unbounded knapsack
  over heights (``_knapsack_nb``), so slabs need not be equal, the last one
  is not left nearly empty, and border positions (clipped receptive fields:
  fewer axons, fewer footprint rows) take larger tiles or other shapes than
  the interior.  A tile's input axons are the feeding layer's output axons,
  so when that layer is placed a tile costs ``1 + input axons / output-axon
  limit`` cores (``_Rects.wgt``): cutting a layer finer than it must be
  multiplies the cores of the layer before it (VGG: -11% cores in all).
  Where the feeding layer's own limits need more cores than those output
  axons, the plain core count is compared too.
* Other conv populations (several inputs, grouped/depthwise) are cut into a
  grid of ``(th, tw, tc)`` tiles over the whole layer or over border bands
  and the interior (``_tile_partition``; candidates tried in increasing core
  count, the first where every tile fits wins).
* Other populations (dense inputs, mixed inputs) are cut into contiguous
  ranges of the flat order, greedily longest-first (binary search on the end
  of each block; every limit is monotone in it), counting distinct sources on
  the dst-major CSR with numpy.  Small conv populations are tried this way too
  and the cheaper wins.

Lower bound per layer (``summary["lower_bound"]`` sums them, since a core
holds one layer): max over limits of ceil(total / per-core limit).  Synapse
memory depends on the partition, so its total is the provable minimum under
the cost model (every synapse costs at least the cheapest block's bits per
synapse; ``conv_shared`` shares a row among at most ``P`` axons, ``P`` the
destination positions one core can hold -- see ``_syn_lower_bits``).
``proven_lower_bound`` adds whole-neuron capacity per core.  For a conv layer
whose partition misses that bound, ``conv_capacity`` adds the footprint
capacity bound of ``_conv_capacity`` (with population axons: the covering
LP of ``_LayerLP`` instead, ``layer_lp``): per output position, the most neurons
any tile or flat-range core containing it can hold given the input-axon
limit (halo included) and the distinct clipped footprints it must store;
#cores >= sum over neurons of 1 / capacity.  The output-axon term of a layer
uses its consumers' actual partition, so these bounds move with the mapping
and their sum is not a lower bound on the network's cores.
:func:`network_lower_bound` is one: per conv layer a covering LP over every
tile and flat range (``_LayerLP``, exact tile costs), and output axons
charged to the layers that cause them (see its docstring).

Population axons (``synapse_encodings.conv_shared.population_axon_slots`` > 0,
Loihi 1 and 2): a tile storing a ``groups == 1`` conv ``conv_shared`` reads it
through one input axon per source pixel (the channel rides as the spike's
atom), so its fan-in is the kernel's positions; dense and sparse rows keep one
axon per source neuron, and each tile takes whichever fits with less memory.
Upstream, every core holding any channel of a pixel spends that many
output-axon slots per such tile reading it (``_Out.q``, per pixel); contiguous
ranges store convs dense or sparse.  The footprint capacity bound counts
per-neuron axons and is not claimed there; the covering LP prices both
(conv_shared cores by pixel axons, dense and sparse ones by neuron axons
within the input-axon limit, and a core's axons upstream at ``slots`` per
pixel) and stands in for it in the per-layer bound (``layer_lp``).

Impossible cases raise ``HardwareLimitError`` with the numbers.
"""
from __future__ import annotations

import copy
import functools
import math

import numba
import numpy as np

from neurocomp.errors import HardwareLimitError
from neurocomp.lowered import InputNeuron, LoweredNet
from neurocomp.mapping import (CoreRecord, Mapping, conn_bits, conv_tap_codes, has_reset_synapses,
                               place_chips, reset_synapse_costs, row_bits_fn)

FLAT_CONV_MAX_SYNAPSES = 1_000_000   # also try contiguous ranges for conv layers up to this size
BORDER_BANDS = ((1, 1), (1, 0), (0, 1), (2, 2), (2, 1), (1, 2), (3, 3))   # (rows, cols) cut off
CAPACITY_BOUND_WORK = 1_500_000      # footprint updates the capacity bound may spend on flat ranges


class _Limits:
    def __init__(self, hw):
        self.N = int(hw.value("core.neurons"))
        self.A = int(hw.value("core.input_axons"))
        self.O = int(hw.value("core.output_axons"))
        self.M = int(hw.value("core.synapse_memory_bits"))
        # > 0: conv connections ride population axons (one per source pixel), each
        # taking this many output-axon slots per destination core (see neurocomp.mapping)
        self.pop = int(hw.population_axon_slots())


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


def _conv_axes(net, c):
    """Per axis (rows, cols) of conv ``c``: (outputs, inputs, kernel taps, stride,
    dilation, leading pad), as plain ints (the key of the per-axis tables)."""
    H, W = net.populations[c.src].shape[:2]
    Ho, Wo = net.populations[c.dst].shape[:2]
    kh, kw = c.weight.shape[:2]
    return tuple(tuple(int(v) for v in (n_out, n_in, k, c.strides[a], c.dilation[a], c.pads[a][0]))
                 for a, (n_out, n_in, k) in enumerate(((Ho, H, kh), (Wo, W, kw))))


class _ConvGeom:
    def __init__(self, net, c):
        H, W, Cs = net.populations[c.src].shape
        Ho, Wo, Co = net.populations[c.dst].shape
        kh, kw, cg, co = c.weight.shape
        self.c = c
        self._cls_args = _conv_axes(net, c)
        self.hy, self.hx = (_axis_hits(*a) for a in self._cls_args)
        self.cy = np.vstack([np.zeros((1, H), np.int64), np.cumsum(self.hy, 0)])
        self.cx = np.vstack([np.zeros((1, W), np.int64), np.cumsum(self.hx, 0)])
        self.cg, self.og, self.Co, self.Cs = cg, co // c.groups, Co, Cs
        self.kh, self.kw = kh, kw
        self.pix_fanin = int(self.hy.sum(1).max()) * int(self.hx.sum(1).max())
        self.max_fanin = self.pix_fanin * cg
        self.pop = False          # set where population axons carry this connection

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


def _conv_out_axons_from(geom: _ConvGeom, tiles):
    """Per source neuron (flat), how many of the destination tiles
    ``(y0, y1, x0, x1, c0, c1)`` it reaches (one output axon each)."""
    t = np.asarray(tiles, np.int64).reshape(-1, 6)
    ry = (geom.cy[t[:, 1]] - geom.cy[t[:, 0]]) > 0                   # (tiles, H): rows reached
    rx = (geom.cx[t[:, 3]] - geom.cx[t[:, 2]]) > 0                   # (tiles, W)
    g = np.arange(geom.Cs) // geom.cg                                 # group of each source channel
    rc = (t[:, 4:5] < (g + 1)[None] * geom.og) & (t[:, 5:6] > g[None] * geom.og)   # (tiles, Cs)
    pos = (ry[:, :, None] & rx[:, None, :]).reshape(len(t), -1).astype(np.float64)
    return np.rint(pos.T @ rc.astype(np.float64)).astype(np.int64).ravel()


def _tiles_of(recs):
    return [tuple(v for ab in r.tile for v in ab) for r in recs]


# -- the pass ---------------------------------------------------------------------------

def partition_cores(net: LoweredNet, hw, place: bool = True) -> Mapping:
    """Partition ``net`` onto cores of ``hw``; returns a :class:`Mapping`
    (chips assigned in order, then by :func:`neurocomp.mapping.place_chips`
    when more than one chip is needed and ``place``)."""
    lim = _Limits(hw)
    pops = [n for n, p in net.populations.items() if not isinstance(p.neuron, InputNeuron)]
    info = {}          # pop -> ("tile", [(y0, y1, x0, x1, c0, c1), ...]) or ("flat",)
    core_ids = {}      # pop -> per-neuron core id (global, unique)
    per_pop = {}
    lbs = {}
    next_id = [0]
    for name in reversed(pops):
        out_ax = _out_axons(net, name, info, core_ids, lim.pop)
        if has_reset_synapses(net.populations[name].neuron):
            recs, lb = _partition_reset_synapses(net, hw, lim, name, out_ax, info)
        else:
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


class _Out:
    """What a layer's neurons spend in output axons, given its consumers' partition.

    ``per``: per neuron (flat), charged to whichever core holds it: one axon per
    (neuron, destination core) for per-neuron axons, and, for population axons into
    a grouped conv's tiles, ``slots`` per destination tile the neuron reaches (an
    upper bound: neurons of one pixel on one core share them).  ``q``: per source
    pixel, the population-axon slots to the tiles of ``groups == 1`` convs that
    read it -- every core holding any channel of the pixel pays all of them.
    ``exact``: the per-neuron part every partition pays per neuron (for the
    whole-neuron capacity bound).  ``bound``: the output axons any partition of
    the layer needs in all."""

    def __init__(self, size, per=None, q=None, exact=None, bound=0):
        self.per = np.zeros(size, np.int64) if per is None else per
        self.exact = np.zeros(size, np.int64) if exact is None else exact
        self.q, self.bound = q, int(bound)

    def worst(self, shape) -> tuple[int, int]:
        """(neuron, its least output axons on any core) for the costliest neuron."""
        cost = self.per.copy()
        if self.q is not None:
            cost += np.repeat(self.q, int(shape[-1]))
        i = int(cost.argmax()) if cost.size else 0
        return i, int(cost[i]) if cost.size else 0


def _as_out(out_ax) -> _Out:
    """``out_ax`` as an ``_Out`` (a plain per-neuron array: per-neuron axons only)."""
    if isinstance(out_ax, _Out):
        return out_ax
    a = np.asarray(out_ax, np.int64)
    return _Out(a.size, per=a, exact=a, bound=int(a.sum()))


def _out_axons(net, name, info, core_ids, slots=0):
    size = net.populations[name].size
    out = _Out(size)
    if name == net.output:
        return out
    for c in net.outgoing(name):
        kind = info[c.dst]
        if kind[0] == "tile" and c.kind == "conv":
            g = _ConvGeom(net, c)
            tiles = np.asarray(kind[1], np.int64).reshape(-1, 6)
            shared = kind[2][c.name] if slots and c.groups == 1 and len(kind) > 2 else \
                np.zeros(len(tiles), bool)
            if shared.any():
                # tiles storing it conv_shared read it by population axons: one per pixel
                t = tiles[shared]
                ry = (g.cy[t[:, 1]] - g.cy[t[:, 0]]) > 0
                rx = (g.cx[t[:, 3]] - g.cx[t[:, 2]]) > 0
                out.bound += slots * int((ry.sum(1) * rx.sum(1)).sum())
                reach = np.einsum("th,tw->hw", ry.astype(np.int64), rx.astype(np.int64)).ravel()
                out.q = slots * reach if out.q is None else out.q + slots * reach
            if shared.all():
                continue
            n = _conv_out_axons_from(g, tiles[~shared])
        else:
            from neurocomp.analysis import connection_matrix
            m = connection_matrix(net, c).tocoo()
            dst = core_ids[c.dst][m.col]
            u = np.unique(m.row.astype(np.int64) * (int(dst.max()) + 1 if dst.size else 1) + dst)
            base = int(dst.max()) + 1 if dst.size else 1
            n = np.bincount(u // base, minlength=size)
        out.per += n
        out.exact += n
        out.bound += int(n.sum())
    return out


def _partition_pop(net, hw, lim, name, out_ax, info):
    out_ax = _as_out(out_ax)
    p = net.populations[name]
    ins = net.incoming(name)
    i, worst = out_ax.worst(p.shape)
    if worst > lim.O:
        raise HardwareLimitError(f"neuron {i} of '{name}' reaches {worst} cores "
                                 f"> {lim.O} output axons per core on '{hw.name}'")
    conv_only = bool(ins) and len(p.shape) == 3 and all(c.kind == "conv" for c in ins)
    best = None
    lb = _lower_bound(net, hw, lim, name, out_ax)
    # what a core's input axons cost the layer feeding it (they are its output
    # axons): weighed in when that layer is placed (not the host-fed input)
    lam = float(any(not isinstance(net.populations[c.src].neuron, InputNeuron) for c in ins))
    if conv_only:
        if _slab_ok(net, name):
            slab = _slab_partition(net, hw, lim, name, out_ax, lam)
            if slab is not None and lam > 0:
                # the weight only pays where the feeding layer is short of output
                # axons; where its own limits need more cores than its output
                # axons do, compare with the tiling that ignores them
                up = _own_cores(net, hw, lim, ins[0].src)
                ax = sum(r.input_axons for r in slab[1]) / lim.O
                if up > ax:
                    plain = _slab_partition(net, hw, lim, name, out_ax, 0.0)
                    if plain is not None and (len(plain[1]) + max(up, sum(r.input_axons for r in plain[1]) / lim.O)
                                              < len(slab[1]) + up):
                        slab = plain
            best = None if slab is None else slab[1:]
        if best is None:
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
            if flat is not None and (best is None or _tiling_cost(flat[0], lam, lim)
                                     < _tiling_cost(best[0], lam, lim)):
                best = flat
        if best is None:
            raise HardwareLimitError(f"'{name}' {p.shape}: no tiling fits a core of '{hw.name}' "
                                     f"({lim.N} neurons, {lim.A} input axons, {lim.M} memory bits)")
    else:
        best = _flat_partition(net, hw, lim, name, out_ax)
    recs, kind = best
    if kind[0] == "tile":
        # which tiles store each input conv_shared (population axons: see _out_axons)
        kind = ("tile", kind[1], {c.name: np.array([r.encodings.get(c.name) == "conv_shared"
                                                           for r in recs]) for c in ins})
    info[name] = kind
    if conv_only and len(recs) > lb["cores"]:
        # only worth its cost where the plain bound is not met
        cc = _conv_capacity_cores(net, hw, lim, name)
        lb["conv_capacity"] = cc
        if lim.pop and _lp_applicable(net, name):
            # the footprint capacity bound counts per-neuron axons; the covering LP
            # prices population axons too
            lp = _LayerLP(net, hw, lim, name, skip_below=max(lb["proven"], cc))
            if lp.rows_ok:
                lb["layer_lp"] = math.ceil(lp.value(1.0, 0.0) - 1e-6)
                cc = max(cc, lb["layer_lp"])
        lb["cores"] = max(lb["cores"], cc)
        lb["proven"] = max(lb["proven"], cc)
    return recs, lb


def _partition_reset_synapses(net, hw, lim, name, out_ax, info):
    """``_partition_pop`` for a ``rate_reset="synapse"`` layer: every core also holds
    its neurons' self synapses and one always-on bias neuron
    (``mapping.reset_synapse_costs``), which grow with the neurons per core.  So
    the layer is partitioned under limits less what a core of at most ``K``
    neurons adds, for a few caps ``K``, and the fewest cores win; the records
    then carry the additions."""
    p = net.populations[name]
    n = p.neuron
    best, err = None, None
    for cap in sorted({lim.N - 1, lim.N // 2, lim.N // 4}, reverse=True):
        extra = reset_synapse_costs(hw, n, cap, cap)
        sub = copy.copy(lim)
        sub.N = min(lim.N - extra["neurons"], cap)
        sub.A, sub.O = lim.A - extra["input_axons"], lim.O - extra["output_axons"]
        sub.M = lim.M - extra["synapse_memory_bits"]
        if min(sub.N, sub.A, sub.O, sub.M) <= 0:
            continue
        trial = dict(info)
        try:
            recs, _ = _partition_pop(net, hw, sub, name, out_ax, trial)
        except HardwareLimitError as e:
            err = e
            continue
        if best is None or len(recs) < len(best[0]):
            best = (recs, trial[name])
    if best is None:
        raise err or HardwareLimitError(
            f"'{name}' {p.shape}: its self synapses and bias neuron (rate_reset 'synapse') leave no "
            f"room on a core of '{hw.name}' ({lim.N} neurons, {lim.A} input axons, {lim.O} output "
            "axons); use --rate-reset zero")
    recs, info[name] = best
    nz = np.zeros(p.size, bool) if n.bias_in_mant is None else np.asarray(n.bias_in_mant).reshape(-1) != 0
    for r in recs:
        extra = reset_synapse_costs(hw, n, r.neurons, int(nz[r.indices(p.shape)].sum()))
        for key in ("neurons", "input_axons", "output_axons", "synapses", "synapse_memory_bits"):
            setattr(r, key, getattr(r, key) + extra[key])
        r.encodings.update({f"{name}/{k}": v for k, v in extra["encodings"].items()})
    # the bound counts the layer's own connections under the chip's real limits
    return recs, _lower_bound(net, hw, lim, name, out_ax)


def _own_cores(net, hw, lim, name):
    """Cores layer ``name`` needs whatever its consumers' partition: neurons,
    input axons and synapse memory (not output axons)."""
    lb = _lower_bound(net, hw, lim, name, _Out(net.populations[name].size))
    return max(lb["neurons"], lb["input_axons"], lb["synapse_memory_bits"])


def _tiling_cost(recs, lam, lim):
    return len(recs) + lam * sum(r.input_axons for r in recs) / lim.O


def _slab_ok(net, name):
    """Slab tilings need one ``groups == 1`` conv input (its costs factor per axis)."""
    ins = net.incoming(name)
    return len(ins) == 1 and ins[0].kind == "conv" and ins[0].groups == 1


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


@functools.lru_cache(maxsize=None)
def _axis_share(n_out, n_in, k, s, d, p0) -> float:
    """Most times a conv_shared row is used per stored tap along one axis, over every
    interval of outputs: the inputs an interval reaches use sum |tap set| taps, and a
    core stores one row per distinct tap set (its class), sum over classes |tap set|.
    Intervals away from both ends score like a shifted copy of one that starts near
    the first end, so only those starting or ending within ``2k + 3`` of an end are
    scored."""
    near = 2 * k + 3
    best = 1.0
    tap = np.arange(k)
    for o0 in range(n_out):
        for o1 in range(o0 + 1, n_out + 1):
            if o0 >= near and o1 <= n_out - near:
                continue
            o = np.arange(o0, o1)
            i = o[:, None] * s + tap[None, :] * d - p0
            ok = (i >= 0) & (i < n_in)
            masks = np.zeros(n_in, np.int64)
            np.bitwise_or.at(masks, i[ok], (1 << np.broadcast_to(tap, i.shape))[ok])
            used = masks[masks > 0]
            if used.size == 0:
                continue
            sizes = np.array([bin(int(m)).count("1") for m in used])
            _, first = np.unique(used, return_index=True)
            best = max(best, float(sizes.sum()) / float(sizes[first].sum()))
    return best


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
    ``nch0`` distinct sources at one tap valid everywhere (population axons:
    one per pixel, so ``nch0`` counts 1).  With population axons a ``groups ==
    1`` conv without zero weights is stored ``conv_shared`` only on rectangular
    tiles (ranges store it dense or sparse), whose classes are products of
    per-axis tap sets, so ``P`` is also capped by the product over both axes
    of ``_axis_share``, the most taps used per tap stored over any interval
    of outputs.  Linear in the
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
        from neurocomp import numerics as nm
        if lim.pop and c.groups == 1 and bool((nm.to_int32(c.weight) != 0).all()):
            # rectangular tiles (population axons: ranges store these convs dense or sparse)
            # share a row among at most the most used / stored taps of any interval per axis
            axy, axx = _conv_axes(net, c)
            P = min(P, _axis_share(*axy) * _axis_share(*axx))
        if nch0 > 0:
            # population axons: one per pixel, whatever the channels it carries
            P = min(P, min(lim.A, net.populations[c.src].size) // (1 if lim.pop and c.groups == 1 else nch0))
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
    out_ax = _as_out(out_ax)
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
            # only source positions some output window covers need an axon (strides can skip
            # some); population axons: one per pixel
            n_src = _conv_sources_reached(net, c, pixels=bool(lim.pop) and c.groups == 1)
            mem_per_neuron += _conv_fanin_and_channels(net, c)[0] * bits
        axons += n_src
    parts = {"neurons": math.ceil(p.size / lim.N), "input_axons": math.ceil(axons / lim.A),
             "output_axons": math.ceil(out_ax.bound / lim.O),
             "synapse_memory_bits": math.ceil(mem / lim.M - 1e-9)}
    cores = max(parts.values())
    # whole-neuron capacity: sorted prefix sums of each per-neuron cost
    cap = lim.N
    for cost, L in ((np.sort(out_ax.exact), lim.O), (np.sort(mem_per_neuron), lim.M)):
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
    cin = int(net.populations[c.src].shape[-1])
    Ho, Wo, Co = net.populations[c.dst].shape
    kh, kw = c.weight.shape[:2]
    axy, axx = _conv_axes(net, c)
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
    st = _flat_stats(net, c, Lmax, Q)
    if st is None:
        return None                                 # too costly: no capacity bound (still sound)
    Dm, Tm, Nm = st
    n = Ho * Wo
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


def _position_taps(net, c):
    """Per output position of conv ``c`` (row-major): the flat indices of the
    source pixels it reads and the kernel tap (``ky * kw + kx``) each is read by."""
    H, W, _ = net.populations[c.src].shape
    Ho, Wo, _ = net.populations[c.dst].shape
    kh, kw = c.weight.shape[:2]
    ky, kx = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    out = []
    for p in range(Ho * Wo):
        y, x = divmod(p, Wo)
        iy = y * c.strides[0] + ky * c.dilation[0] - c.pads[0][0]
        ix = x * c.strides[1] + kx * c.dilation[1] - c.pads[1][0]
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        out.append(((iy * W + ix)[ok], (ky * kw + kx)[ok]))
    return out


def _flat_stats(net, c, Lmax, Q, work_limit=None):
    """Per row-major interval of output positions ``[u, u + L)`` (L <= Lmax)
    of conv ``c``: D (sum of the sizes of the distinct 2-D tap footprints of
    its inputs), T (valid taps) and N (distinct input positions), each
    ``(n, Lmax + 1)``; D = -1 where the interval is past the end or reads more
    than ``Q`` input positions.  Exact (2-D bit masks), translation-memoised
    along rows; None when it would take more than ``work_limit`` footprint
    updates (default ``CAPACITY_BOUND_WORK``)."""
    H, W, _ = net.populations[c.src].shape
    Ho, Wo, _ = net.populations[c.dst].shape
    kh, kw = c.weight.shape[:2]
    limit = CAPACITY_BOUND_WORK if work_limit is None else work_limit
    taps = [list(zip(src.tolist(), (1 << tap).tolist())) for src, tap in _position_taps(net, c)]
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
            if work > limit:
                return None
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
    return Dm, Tm, Nm


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
    if lim.pop and any(c.kind == "conv" and c.groups == 1 for c in net.incoming(name)):
        return 0            # its capacities count per-neuron axons; no bound claimed
    cap = _conv_capacity(net, hw, lim, name)
    if cap is None:
        return 0
    Co = net.populations[name].shape[2]
    if (cap <= 0).any():
        return 0                                    # some neuron fits no core: reported elsewhere
    return math.ceil(float((Co / cap).sum()) - 1e-6)


# -- LP lower bounds ------------------------------------------------------------------

LP_CLASS_REACH = 3        # positions this far from every edge share one LP variable
LP_MAX_ROWS = 300_000     # core types an LP may list before it is given up (no bound claimed)


def _lp_applicable(net, name):
    """The covering LP needs exact per-tile costs: one groups=1 conv input without zero weights."""
    from neurocomp import numerics as nm
    ins = net.incoming(name)
    return (len(ins) == 1 and ins[0].kind == "conv" and ins[0].groups == 1
            and len(net.populations[name].shape) == 3 and bool((nm.to_int32(ins[0].weight) != 0).all()))


def _vertices(P, Q, R):
    """Vertices of the polygons {p_i a1 + q_i a2 <= r_i} (one per row of the
    (n, k) arrays): (n, k(k-1)/2, 2) points and a validity mask."""
    n, k = P.shape
    i, j = np.triu_indices(k, 1)
    det = P[:, i] * Q[:, j] - P[:, j] * Q[:, i]
    with np.errstate(divide="ignore", invalid="ignore"):
        a1 = (R[:, i] * Q[:, j] - R[:, j] * Q[:, i]) / det
        a2 = (P[:, i] * R[:, j] - P[:, j] * R[:, i]) / det
    ok = np.abs(det) > 1e-12
    a1, a2 = np.where(ok, a1, 0.0), np.where(ok, a2, 0.0)
    slack = P[:, None, :] * a1[:, :, None] + Q[:, None, :] * a2[:, :, None] - R[:, None, :]
    tol = 1e-9 * (1 + np.abs(R))[:, None, :]
    ok &= (slack <= tol).all(2)
    return np.stack([a1, a2], 2), ok


class _LayerLP:
    """The covering LP of one conv layer (``_lp_applicable``), in the dual:
    a price ``y_p >= 0`` per output position such that every core K any
    mapping could use satisfies ``sum over its neurons of y <= weight(K)``;
    then every mapping's total weight is ``>= Co * sum_p y_p`` (weak duality).

    Cores are (a) tiles: ``cap(R) * sum_{p in R} y_p <= w`` for every
    rectangle R, ``cap`` exact (``_Rects``, without output axons -- they only
    remove cores); (b) flat ranges ``[u, u + L)`` of the row-major order,
    L >= 2 (L = 1 is a 1x1 tile): the first position holds a1 >= 1 channels,
    the last a2 >= 1, the middle all Co; with ``groups == 1`` and no zero
    weights a channel's positions are one of mid+first, mid+last, mid, all,
    and every limit is bounded below by a linear function of (a1, a2): input
    axons N(S)*cin exactly, neurons a1 + a2 + Co (L-2), memory >= the
    cheapest bits per synapse x ``cin * sum_co D(S_co)`` (conv_shared: each
    distinct footprint of a channel is in some stored row), ``cin * sum_co
    T(S_co)`` (sparse: every synapse) or rows x neurons (dense).  Each vertex
    (a1, a2) of those polygons (both channel-overlap cases, each encoding)
    gives a row; every real flat core is a convex combination of them.  For
    L = 2, where a per-synapse price lets a core hold a channel or more too
    many (Loihi 1's 64-bit words), the rows are exact instead (``_pair_hulls``).
    Positions are priced per class (distance to each edge, capped at
    ``LP_CLASS_REACH``) -- any prices are valid, classes only make the LP
    small.  ``rows_ok`` is False when the flat-range statistics were too
    costly to compute (then no bound is claimed)."""

    def __init__(self, net, hw, lim, name, skip_below=0):
        c = net.incoming(name)[0]
        H, W, cin = net.populations[c.src].shape
        Ho, Wo, Co = net.populations[name].shape
        self.Co, self.O = Co, lim.O
        R = _Rects(net, hw, lim, name)
        self.rows_ok = True
        # the LP cannot exceed sum_p Co / cap(1x1 tile at p) (those rows alone);
        # not worth building where that is no more than a bound already known
        cap1 = R.cap[R.iy[np.arange(Ho), np.arange(Ho) + 1]][:, R.ix[np.arange(Wo), np.arange(Wo) + 1]]
        if (cap1 <= 0).any() or float((Co / np.minimum(cap1, Co)).sum()) <= skip_below * (1 + 1e-9):
            self.rows_ok = False
            return
        d = LP_CLASS_REACH

        def axis_classes(n):
            key = np.minimum(np.arange(n), d) * (d + 1) + np.minimum(n - 1 - np.arange(n), d)
            _, cid = np.unique(key, return_inverse=True)
            return cid.ravel()
        cy, cx = axis_classes(Ho), axis_classes(Wo)
        ncy, ncx = cy.max() + 1, cx.max() + 1
        ncls = ncy * ncx
        self.pos_cls = (cy[:, None] * ncx + cx[None, :]).ravel()
        self.shape = (Ho, Wo)
        self.npos = np.bincount(self.pos_cls, minlength=ncls).astype(float)
        # (a) tiles: class counts of a rectangle = outer product of per-axis counts
        Cy = np.vstack([np.zeros(ncy), np.cumsum(np.eye(ncy)[cy], 0)])
        Cx = np.vstack([np.zeros(ncx), np.cumsum(np.eye(ncx)[cx], 0)])
        yi, xi = np.nonzero(R.cap > 0)
        cnty = Cy[R.ty[yi, 1]] - Cy[R.ty[yi, 0]]
        cntx = Cx[R.tx[xi, 1]] - Cx[R.tx[xi, 0]]
        A_t = (cnty[:, :, None] * cntx[:, None, :]).reshape(yi.size, ncls) * np.minimum(R.cap[yi, xi], Co)[:, None]
        # what a tile's input axons cost upstream, at least: population axons take
        # `pop` slots per pixel, neuron axons one per source neuron
        ax_t = (R.ty[yi, 2] * R.tx[xi, 2] * (min(lim.pop, cin) if lim.pop else cin)).astype(float)
        # (b) flat ranges
        mb = {e: _min_bits_per_synapse(hw, e, c) for e in _ENC_NAMES}
        ovh = R.ovh
        Lmax = min(Ho * Wo, (lim.N - 2) // Co + 2)
        A_f = np.zeros((0, ncls))
        ax_f = np.zeros(0)
        if Lmax >= 2:
            st = _flat_stats(net, c, Lmax, lim.A if lim.pop else lim.A // cin)
            if st is None:
                self.rows_ok = False
            else:
                fr = self._flat_rows(st, Ho, Wo, Co, cin, cy, cx, ncx, ncls, Lmax, lim, mb, ovh)
                if fr is None:
                    self.rows_ok = False
                else:
                    A_p, ax_p = _pair_rows(net, hw, lim, c, self.pos_cls, ncls)
                    A_f, ax_f = np.vstack([fr[0], A_p]), np.concatenate([fr[1], ax_p])
        self.A_all = np.vstack([A_t, A_f])
        self.ax_all = np.concatenate([ax_t, ax_f])
        # the LP is solved on distinct rows (translations in the interior repeat);
        # its prices are then checked against every row
        h = np.round(self.A_all, 6) @ np.random.default_rng(3).random(ncls) + self.ax_all * np.pi
        _, first = np.unique(h, return_index=True)
        self.A, self.ax = self.A_all[first], self.ax_all[first]
        self._cache = {}

    @staticmethod
    def _flat_rows(st, Ho, Wo, Co, cin, cy, cx, ncx, ncls, Lmax, lim, mb, ovh):
        Dm, Tm, Nm = st
        n = Ho * Wo
        cls = (cy[:, None] * ncx + cx[None, :]).ravel()          # class of each flat position
        onehot = np.eye(ncls)[cls]
        pre = np.vstack([np.zeros(ncls), np.cumsum(onehot, 0)])
        rows_A, rows_ax = [], []
        M = float(lim.M)
        for L in range(3, Lmax + 1):            # L = 2: exact rows (_pair_rows)
            u = np.arange(n - L + 1)
            ok = Dm[u, L] >= 0
            u = u[ok]
            if u.size == 0:
                continue
            Df, Dl, DS = Dm[u, L - 1], Dm[u + 1, L - 1], Dm[u, L]
            Tf, Tl, TS = Tm[u, L - 1], Tm[u + 1, L - 1], Tm[u, L]
            if L > 2:
                D0, T0 = Dm[u + 1, L - 2], Tm[u + 1, L - 2]
            else:
                D0, T0 = np.zeros(u.size), np.zeros(u.size)
            rows_n = (Nm[u, L] * cin).astype(float)
            cap_n = lim.N - Co * (L - 2)
            if cap_n < 2:
                continue
            pts, axs = [], []
            for r1 in (True, False):                      # channels on no end (a1+a2 <= Co) or on both
                for e in _ENC_NAMES:
                    # population axons: conv_shared reads one axon per pixel (pop slots
                    # upstream each); dense and sparse one per source neuron, within A
                    pix = bool(lim.pop) and e == "conv_shared"
                    rows = Nm[u, L].astype(float) if pix else rows_n
                    fits = np.ones(u.size, bool) if pix or not lim.pop else rows_n <= lim.A
                    if e == "dense":
                        K = rows * mb["dense"]
                        p_, q_ = K, K
                        r_ = M - rows * ovh["dense"] - K * Co * (L - 2)
                    else:
                        S = (Df, Dl, D0, DS) if e == "conv_shared" else (Tf, Tl, T0, TS)
                        K = cin * mb[e]
                        room = (M - rows * ovh[e]) / K
                        if r1:
                            p_, q_, r_ = S[0] - S[2], S[1] - S[2], room - Co * S[2]
                        else:
                            p_, q_, r_ = S[3] - S[1], S[3] - S[0], room - Co * (S[0] + S[1] - S[3])
                    one = np.ones(u.size)
                    reg = (one, one, Co * one) if r1 else (-one, -one, -Co * one)
                    P = np.column_stack([-one, one, 0 * one, 0 * one, reg[0], one, p_])
                    Q = np.column_stack([0 * one, 0 * one, -one, one, reg[1], one, q_])
                    Rr = np.column_stack([-one, Co * one, -one, Co * one, reg[2], cap_n * one, r_])
                    v, vok = _vertices(P, Q, Rr.astype(float))
                    vok &= fits[:, None]
                    pts.append(np.where(vok[:, :, None], v, -1.0))
                    axs.append(np.broadcast_to((rows * lim.pop if pix else rows)[:, None], vok.shape))
            pts = np.concatenate(pts, 1)                      # (n_u, k, 2); -1: none
            axs = np.concatenate(axs, 1)
            valid = pts[:, :, 0] >= 0
            iu, ik = np.nonzero(valid)
            if iu.size == 0:
                continue
            uu = u[iu]
            a1, a2 = pts[iu, ik, 0], pts[iu, ik, 1]
            mid = (pre[uu + L - 1] - pre[uu + 1]) * Co
            Arow = mid
            Arow[np.arange(uu.size), cls[uu]] += a1
            Arow[np.arange(uu.size), cls[uu + L - 1]] += a2
            rows_A.append(Arow)
            rows_ax.append(axs[iu, ik])
            if sum(len(r) for r in rows_ax) > LP_MAX_ROWS:
                return None
        if not rows_A:
            return np.zeros((0, ncls)), np.zeros(0)
        return np.vstack(rows_A), np.concatenate(rows_ax)

    def prices(self, a, b):
        """Certified prices per output position, ``(Ho, Wo)``, for core weight
        ``a + b * input axons / O``: every core of every mapping satisfies
        ``sum over its neurons of the price of their position <= its weight``."""
        return self._solve(a, b)[self.pos_cls].reshape(self.shape)

    def value(self, a, b):
        """``Co * sum of the prices``: a lower bound on the total weight of any mapping."""
        return float(self.Co * (self.npos @ self._solve(a, b)))

    def _solve(self, a, b):
        if a > 0 and b > 0 and a != 1.0:     # homogeneous: one LP per ratio b / a
            return a * self._solve(1.0, b / a)
        if a == 0 and b != 1.0:
            return b * self._solve(0.0, 1.0) if b > 0 else np.zeros(self.npos.size)
        key = (round(a, 12), round(b, 12))
        if key in self._cache:
            return self._cache[key]
        from scipy.optimize import linprog
        from scipy.sparse import csr_matrix
        w = a + b * self.ax / self.O
        keep = w > 0
        A = self.A[keep] / w[keep, None]
        c = -self.Co * self.npos
        # constraint generation: solve on the most restrictive rows, add violated ones
        active = np.zeros(A.shape[0], bool)
        active[np.argsort(-A.max(1))[:2000]] = True
        active[A.argmax(0)[self.npos > 0]] = True          # every price bounded from the start
        for _ in range(30):
            res = linprog(c, A_ub=csr_matrix(A[active]), b_ub=np.ones(int(active.sum())), bounds=(0, None),
                          method="highs")
            if res.status != 0:
                break
            viol = A @ res.x - 1.0
            new = np.flatnonzero((viol > 1e-9) & ~active)
            if new.size == 0:
                break
            active[new[np.argsort(-viol[new])[:2000]]] = True
        y = np.zeros(self.npos.size)
        if res.status == 0:
            y = np.maximum(res.x, 0.0)
            wa = a + b * self.ax_all / self.O
            ka = wa > 0
            if (~ka).any() and (self.A_all[~ka] @ y > 0).any():
                y[:] = 0.0                                         # a free core type: no bound
            worst = float((self.A_all[ka] @ y / wa[ka]).max(initial=0.0))
            y = y / max(worst, 1.0) * (1 - 1e-9)                 # feasible for every row
        self._cache[key] = y
        return y


def _upper_hull(pts):
    """The points of ``pts`` ((a1, a2) pairs, a1 increasing, a2 the most that fits
    with a1) on the upper-right hull: every other one is a convex combination of
    them and points they dominate, so its LP row is implied."""
    hull = []
    for p in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:   # hull[-1] not above the chord
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def _pair_hulls(net, hw, lim, c):
    """Exact limits of every flat range of two output positions
    ``(u, u + 1)`` (row-major): the last a1 channels of u and the first a2 of
    u + 1.  Each source pixel's taps into u and into u + 1 are different, so
    with no zero weights every (source pixel, channel) is its own weight row
    of width ``a1 [reads u] + a2 [reads u + 1]`` -- for conv_shared and sparse
    alike -- and a dense row is ``a1 + a2`` wide.  (Only when both positions
    hold all channels can two pixels' conv_shared rows coincide: one row per
    distinct tap set then.)  Memory is then exact, word
    rounding included, where a linear price per synapse (``_flat_rows``)
    lets a core hold a channel or more too many.  Returns ``{(u, encoding):
    (points, upstream axons)}``: the upper hull of the largest (a1, a2) that
    fit every limit (a1 increasing), and what the core's input axons cost the
    layer feeding it."""
    cin = int(net.populations[c.src].shape[-1])
    Ho, Wo, Co = net.populations[c.dst].shape
    # per output position: source pixel -> tap
    reads = [dict(zip(src.tolist(), tap.tolist())) for src, tap in _position_taps(net, c)]
    fns = {e: _rb(hw, e, c) for e in _ENC_NAMES}
    hulls = {}

    def hull(nb, nu, nv, e, full_sets):
        key = (nb, nu, nv, e, full_sets)
        if key not in hulls:
            npix = nb + nu + nv
            pix = bool(lim.pop) and e == "conv_shared"
            axons = npix if pix else npix * cin
            f, ovh = fns[e]
            if e == "dense":
                def mem(a1, a2):
                    return axons * (f(a1 + a2) + ovh)
            else:
                def mem(a1, a2):
                    return cin * (nb * f(a1 + a2) + nu * f(a1) + nv * f(a2)) + axons * ovh
            pts = []
            if axons <= lim.A:
                a2 = min(Co, lim.N - 1)
                for a1 in range(1, min(Co, lim.N - 1) + 1):
                    a2 = min(a2, lim.N - a1)
                    while a2 >= 1 and mem(a1, a2) > lim.M:      # a2 only falls as a1 grows
                        a2 -= 1
                    if a2 < 1:
                        break
                    pts.append((a1, a2))
                if e == "conv_shared" and 2 * Co <= lim.N and (
                        cin * sum(f(n * Co) for n in full_sets) + axons * ovh <= lim.M):
                    pts.append((Co, Co))
            up = npix * lim.pop if pix else npix * cin
            hulls[key] = (_upper_hull(pts), up)
        return hulls[key]

    out = {}
    for u in range(Ho * Wo - 1):
        su, sv = reads[u], reads[u + 1]
        nb = len(su.keys() & sv.keys())
        # both positions whole: one conv_shared row per distinct set of taps (sizes)
        full_sets = tuple(sorted(len(t) for t in {frozenset((su.get(i), sv.get(i))) - {None}
                                                  for i in su.keys() | sv.keys()}))
        for e in _ENC_NAMES:
            out[(u, e)] = hull(nb, len(su) - nb, len(sv) - nb, e, full_sets)
    return out


def _pair_rows(net, hw, lim, c, pos_cls, ncls):
    """Covering-LP rows (over position classes) and upstream axons of the
    two-position flat ranges (``_pair_hulls``)."""
    rows_A, rows_ax = [], []
    for (u, _), (pts, up) in _pair_hulls(net, hw, lim, c).items():
        for a1, a2 in pts:
            row = np.zeros(ncls)
            row[pos_cls[u]] += a1
            row[pos_cls[u + 1]] += a2
            rows_A.append(row)
            rows_ax.append(up)
    if not rows_A:
        return np.zeros((0, ncls)), np.zeros(0)
    return np.array(rows_A), np.array(rows_ax, float)


def layer_lp_bound(net, hw, name):
    """Fewest cores any mapping (tiles or flat ranges, one layer per core)
    can give conv layer ``name``, by the covering LP (``_LayerLP``); None
    where it does not apply."""
    if not _lp_applicable(net, name):
        return None
    lp = _LayerLP(net, hw, _Limits(hw), name)
    return math.ceil(lp.value(1.0, 0.0) - 1e-6) if lp.rows_ok else None


NET_BOUND_MU = (0.0, 0.25, 0.5, 0.75, 1.0)


def network_lower_bound(net: LoweredNet, hw) -> dict:
    """A lower bound on the cores of ANY mapping of ``net`` (one layer per
    core), independent of how the layers are cut -- unlike the per-layer
    bounds of ``partition_cores``' summary, whose output-axon terms use the
    next layer's actual partition.

    Argument: a layer's cores ``c_k >= own_k`` (neurons, input axons, memory,
    and for conv layers the covering LP) and ``c_k >= out_k / O``, where
    ``out_k``, its neurons' output axons, is the sum over the cores T of the
    layers it feeds of T's input axons from k.  For any ``mu_k`` in [0, 1],
    ``c_k >= mu_k c_k + (1 - mu_k) out_k / O``; summing and regrouping each
    ``out_k`` by the cores T it is counted on, the total is ``>= sum_j
    min over partitions of layer j of sum_T (mu_j + sum_k (1 - mu_k)
    ax_T^k / O)`` -- a weighted covering problem per layer, bounded by its
    LP (``_LayerLP.value``) for conv layers and by ``mu own + sum (1 - mu)
    max(sources used, own x least fan-in) / O`` otherwise.  Any mu gives a
    valid bound; mu is chosen per layer on the grid ``NET_BOUND_MU`` by
    coordinate ascent.  Returns ``{"cores": ceil(total), "total", "mu",
    "per_layer", "lp_layers", "own"}`` (``own``: per layer the cores it needs
    whatever the others' partition, with the covering LP for conv layers)."""
    lim = _Limits(hw)
    pops = [n for n, p in net.populations.items() if not isinstance(p.neuron, InputNeuron)]
    placed = set(pops)
    own, minax, minfan, lps = {}, {}, {}, {}
    for name in pops:
        p = net.populations[name]
        lb = _lower_bound(net, hw, lim, name, _Out(p.size))
        # whole-neuron capacity from memory only (output axons depend on the partition)
        own[name] = max(lb["neurons"], lb["input_axons"], lb["synapse_memory_bits"])
        fan = np.zeros(p.size, np.int64)
        for c in net.incoming(name):
            if c.kind == "dense":
                nz = c.effective_weight() != 0
                minax[(c.src, name)] = int(np.count_nonzero(nz.any(0)))
                fan += nz.sum(1)
            elif lim.pop and c.groups == 1:
                # population axons: one per source pixel, each `pop` output-axon slots
                minax[(c.src, name)] = lim.pop * _conv_sources_reached(net, c, pixels=True)
            else:
                minax[(c.src, name)] = _conv_sources_reached(net, c)
                fan += _conv_fanin_and_channels(net, c)[0]
        minfan[name] = int(fan.min(initial=0))
        if _lp_applicable(net, name):
            lp = _LayerLP(net, hw, lim, name, skip_below=own[name])
            if lp.rows_ok:
                lps[name] = lp
                own[name] = max(own[name], math.ceil(lp.value(1.0, 0.0) - 1e-6))
    ins = {n: [c.src for c in net.incoming(n) if c.src in placed] for n in pops}
    outs = {n: [m for m in pops if n in ins[m]] for n in pops}

    def term(j, mu):
        a = mu[j]
        bs = {k: 1.0 - mu[k] for k in ins[j]}
        b = sum(bs.values())
        v = a * own[j]
        for k, bk in bs.items():
            v += bk * max(minax[(k, j)], own[j] * minfan[j] if len(net.incoming(j)) == 1 else 0) / lim.O
        if j in lps and len(ins[j]) <= 1:
            # both bound the same weighted cores; the LP prices no axon that every
            # mapping must read (its tiles' axons are per core)
            v = max(v, lps[j].value(a, b))
        return v

    mu = {n: 1.0 for n in pops}
    for _ in range(4):
        changed = False
        for k in pops:
            if k == net.output or not outs[k]:
                continue              # the output's neurons use no output axons: mu stays 1
            best = (sum(term(j, mu) for j in [k] + outs[k]), mu[k])
            for g in NET_BOUND_MU:
                mu2 = dict(mu)
                mu2[k] = g
                v = sum(term(j, mu2) for j in [k] + outs[k])
                if v > best[0] + 1e-9:
                    best = (v, g)
            if best[1] != mu[k]:
                mu[k] = best[1]
                changed = True
        if not changed:
            break
    per = {j: term(j, mu) for j in pops}
    total = sum(per.values())
    return {"cores": math.ceil(total - 1e-6), "total": total, "mu": mu, "per_layer": per,
            "lp_layers": sorted(lps), "own": own}


def _conv_sources_reached(net, c, pixels=False):
    """Source neurons of conv ``c`` with at least one synapse (window positions reached x
    channels; ``pixels``: the positions alone)."""
    reach = []
    for n_out, size, k, st, d, pad in _conv_axes(net, c):
        pos = (np.arange(n_out)[:, None] * st + np.arange(k)[None, :] * d - pad).ravel()
        reach.append(np.unique(pos[(pos >= 0) & (pos < size)]).size)
    return reach[0] * reach[1] * (1 if pixels else int(net.populations[c.src].shape[-1]))


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
    out_ax = _as_out(out_ax)
    p = net.populations[name]
    Ho, Wo, Co = p.shape
    geoms = [_ConvGeom(net, c) for c in net.incoming(name)]
    for g in geoms:
        g.pop = bool(lim.pop) and g.c.groups == 1
    fanin = sum(g.pix_fanin if g.pop else g.max_fanin for g in geoms)
    if fanin > lim.A:
        raise HardwareLimitError(f"a neuron of '{name}' has fan-in {fanin} > {lim.A} input axons per core "
                                 f"on '{hw.name}' (inputs from {', '.join(g.c.src for g in geoms)}); "
                                 "split the layer's inputs")
    O3 = out_ax.per.reshape(Ho, Wo, Co)
    sat = _sat(O3)
    satq = None if out_ax.q is None else _sat2(out_ax.q.reshape(Ho, Wo))
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
                a = sum(ax(g, 0, th, y0, y1)[0][:, None] * ax(g, 1, tw, x0, x1)[0][None, :]
                        * (1 if g.pop else g.cg) for g in geoms)
                spatial_ok[(th, tw)] = int(np.max(a)) <= lim.A
            if not spatial_ok[(th, tw)]:
                continue
            ok, res = _score(geoms, rbs, ax, lim, O3, th, tw, tc, (y0, y1, x0, x1), sat, satq)
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
    return recs, ("tile", _tiles_of(recs))


def _sat2(Q):
    """Summed-area table of a (H, W) array, zero-padded in front."""
    P = np.zeros((Q.shape[0] + 1, Q.shape[1] + 1), np.int64)
    P[1:, 1:] = Q.cumsum(0).cumsum(1)
    return P


def _rect_sum2(P, y0, y1, x0, x1):
    """Sum over [y0, y1) x [x0, x1) from a ``_sat2`` table (bounds broadcast)."""
    return P[y1, x1] - P[y0, x1] - P[y1, x0] + P[y0, x0]


def _sat(O3):
    """Summed-area table of a (H, W, C) array, zero-padded in front."""
    P = np.zeros(tuple(n + 1 for n in O3.shape), np.int64)
    P[1:, 1:, 1:] = O3.cumsum(0).cumsum(1).cumsum(2)
    return P


def _score(geoms, rbs, ax, lim, O3, th, tw, tc, region=None, sat=None, satq=None):
    """Score the uniform (th, tw, tc) grid over ``region`` (y0, y1, x0, x1;
    default the whole layer): (fits, per-tile counts).  ``sat``: ``_sat(O3)``;
    ``satq``: ``_sat2`` of the per-pixel output axons (``_Out.q``), or None."""
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
    if satq is not None:
        outs = outs + _rect_sum2(satq, a[0][..., 0], b[0][..., 0], a[1][..., 0], b[1][..., 0])[..., None]
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
        if not g.pop:
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
        if g.pop:
            # conv_shared rides population axons (one per source pixel); dense and sparse
            # rows one axon per source neuron: per tile the cheaper one that fits
            pix = ry[:, None, None] * rx[None, :, None] + 0 * rc[None, None, :]
            m_cs = m_cs - rows * ocs + pix * ocs         # its per-axon overhead: pixel axons
            enc_n = np.where(m_de < m_sp, 2, 1)
            m_n = np.minimum(m_sp, m_de)
            ok_n = axons + rows <= lim.A
            use_p = (axons + pix <= lim.A) & (~ok_n | (m_cs <= m_n))
            enc = np.where(use_p, 0, enc_n)
            m = np.where(use_p, m_cs, m_n)
            axons += np.where(use_p, pix, rows)
            if axons.max() > lim.A:
                return False, "input_axons"
        else:
            enc = np.where(m_cs <= m_sp, 0, 1)
            m = np.minimum(m_cs, m_sp)
            enc = np.where(m_de < m, 2, enc)
            m = np.minimum(m, m_de)
        mem += m
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


# -- slab tilings (one groups=1 conv input) ------------------------------------------


def _interval_index(n):
    """(n+1, n+1): row of [a, b) in an ``_axis_table`` (rows ordered by a, then b); -1 elsewhere."""
    idx = np.full((n + 1, n + 1), -1, np.int64)
    a, b = np.triu_indices(n + 1, 1)
    idx[a, b] = np.arange(a.size)
    return idx


class _Rects:
    """Exact cost of every tile ``[y0, y1) x [x0, x1) x tc channels`` of a
    layer fed by one ``groups == 1`` conv: each count is a product of
    per-axis interval tables (``_axis_table``: distinct inputs, distinct
    footprints by size, inputs by footprint size), so all rectangles are
    scored at once (per class of equal per-axis tables).  ``cap[i, j]``: the
    most channels a tile over y-interval ``i`` and x-interval ``j`` can hold
    (0: none) within neurons, input axons, synapse memory (cheapest encoding;
    weights counted structurally, zeros included) and, when ``O3`` is given,
    output axons (per position the largest over channels, so never below the
    exact sum).  ``wgt``: what such a tile costs -- one core plus ``lam`` x
    its input axons / the output-axon limit, the share of a core they take
    in the layer that feeds this one."""

    def __init__(self, net, hw, lim, name, O3=None, lam=0.0, Q=None):
        c = net.incoming(name)[0]
        cin = int(net.populations[c.src].shape[-1])
        Ho, Wo, Co = net.populations[name].shape
        kh, kw = c.weight.shape[:2]
        self.c, self.lim, self.cin, self.Co, self.kh, self.kw = c, lim, cin, Co, kh, kw
        self.Ho, self.Wo, self.O3 = Ho, Wo, O3
        self.satq = None if Q is None else _sat2(Q)
        self.axc = 1 if lim.pop else cin            # axons per source position (population axons: 1)
        self.ty, self.tx = (_axis_table(a) for a in _conv_axes(net, c))
        self.iy, self.ix = _interval_index(Ho), _interval_index(Wo)
        self.ovh = {e: _rb(hw, e, c)[1] for e in _ENC_NAMES}
        self.tab = {e: _row_table(hw, e, c, kh * kw * Co + lim.N) for e in _ENC_NAMES}
        self.ab = np.arange(1, kh + 1)[:, None] * np.arange(1, kw + 1)[None, :]
        # intervals with equal length and tables score alike: bisect tc per class pair
        ky = np.column_stack([self.ty[:, 1] - self.ty[:, 0], self.ty[:, 2:]])
        kx = np.column_stack([self.tx[:, 1] - self.tx[:, 0], self.tx[:, 2:]])
        uy, ry, cy = np.unique(ky, axis=0, return_index=True, return_inverse=True)
        ux, rx, cx = np.unique(kx, axis=0, return_index=True, return_inverse=True)
        rows = ky[ry, 1][:, None] * kx[rx, 1][None, :] * self.axc
        npos = ky[ry, 0][:, None] * kx[rx, 0][None, :]
        hi = np.where(rows <= lim.A, np.minimum(Co, lim.N // npos), 0)
        yi, xi = np.nonzero(hi > 0)
        lo, hi = np.zeros(yi.size, np.int64), hi[yi, xi]
        yi, xi = ry[yi], rx[xi]                   # representative intervals
        while True:                  # memory is nondecreasing in tc: bisect every class at once
            act = lo < hi
            if not act.any():
                break
            mid = (lo + hi + 1) // 2
            fits = self.memory(yi[act], xi[act], mid[act]).min(0) <= lim.M
            up = np.zeros(act.size, bool)
            up[act] = fits
            lo = np.where(up, mid, lo)
            hi = np.where(act & ~up, mid - 1, hi)
        ccap = np.zeros(rows.shape, np.int64)
        ccap[_inv(ry, yi), _inv(rx, xi)] = lo
        cap = ccap[cy.ravel()][:, cx.ravel()]
        if O3 is not None:
            y0, y1 = self.ty[:, 0][:, None], self.ty[:, 1][:, None]
            x0, x1 = self.tx[:, 0][None, :], self.tx[:, 1][None, :]
            per = _rect_sum2(_sat2(O3.max(2)), y0, y1, x0, x1)
            # per-pixel axons (population axons to the next layer) cost the same for any tc
            left = lim.O - (0 if self.satq is None else _rect_sum2(self.satq, y0, y1, x0, x1))
            # no per-neuron axons (per == 0): any channel count fits once the pixels' slots do
            by_out = np.where(per > 0, np.maximum(left, 0) // np.maximum(per, 1), cap)
            cap = np.where(left < 0, 0, np.minimum(cap, by_out))
        self.cap = np.ascontiguousarray(cap)
        self.wgt = 1.0 + lam * (self.ty[:, 2][:, None] * self.tx[:, 2][None, :] * self.axc
                                * max(1, lim.pop)) / lim.O
        self.capT, self.wgtT = np.ascontiguousarray(self.cap.T), np.ascontiguousarray(self.wgt.T)

    def memory(self, yi, xi, t):
        """(3, n): memory bits per encoding (``_ENC_NAMES`` order) of the tiles
        over y-intervals ``yi``, x-intervals ``xi`` with ``t`` channels: one
        conv_shared row per distinct footprint pair (``ky x kx`` of each size
        pair), one sparse row per input (``my x mx``), dense rows as wide as the tile."""
        ty, tx, cin, kh, kw = self.ty, self.tx, self.cin, self.kh, self.kw
        rows = ty[yi, 2] * tx[xi, 2] * cin
        w = self.ab[None] * t[:, None, None]
        cs = cin * np.einsum("na,nb,nab->n", ty[yi, 5:5 + kh], tx[xi, 5:5 + kw], self.tab["conv_shared"][w])
        sp = cin * np.einsum("na,nb,nab->n", ty[yi, 5 + kh:5 + 2 * kh], tx[xi, 5 + kw:5 + 2 * kw],
                             self.tab["sparse"][w])
        npos = (ty[yi, 1] - ty[yi, 0]) * (tx[xi, 1] - tx[xi, 0])
        de = rows * self.tab["dense"][npos * t]
        cs_axons = rows
        if self.lim.pop:
            # conv_shared rides population axons (one per pixel: always fits, see cap);
            # dense and sparse rows need an axon per source neuron
            big = np.iinfo(np.int64).max // 4
            over = rows > self.lim.A
            sp, de = np.where(over, big, sp), np.where(over, big, de)
            cs_axons = ty[yi, 2] * tx[xi, 2]
        return np.stack([cs + cs_axons * self.ovh["conv_shared"], sp + rows * self.ovh["sparse"],
                         de + rows * self.ovh["dense"]])

    def records(self, name, tiles):
        """CoreRecords of tiles ``(y0, y1, x0, x1, c0, c1)`` with exact counts
        (output axons summed over the tile's channels); None if one does not fit."""
        t = np.asarray(tiles, np.int64).reshape(-1, 6)
        yi, xi = self.iy[t[:, 0], t[:, 1]], self.ix[t[:, 2], t[:, 3]]
        tc = t[:, 5] - t[:, 4]
        mem = self.memory(yi, xi, tc)
        enc, mem = mem.argmin(0), mem.min(0)
        axons = self.ty[yi, 2] * self.tx[xi, 2] * np.where(enc == 0, self.axc, self.cin)
        syn = self.ty[yi, 4] * self.tx[xi, 4] * self.cin * tc
        neurons = (t[:, 1] - t[:, 0]) * (t[:, 3] - t[:, 2]) * tc
        outs = np.zeros(len(t), np.int64)
        if self.O3 is not None:
            P = _sat(self.O3)
            a, b = t[:, 0::2].T, t[:, 1::2].T
            outs = (P[b[0], b[1], b[2]] - P[a[0], b[1], b[2]] - P[b[0], a[1], b[2]] - P[b[0], b[1], a[2]]
                    + P[a[0], a[1], b[2]] + P[a[0], b[1], a[2]] + P[b[0], a[1], a[2]] - P[a[0], a[1], a[2]])
        if self.satq is not None:
            outs = outs + _rect_sum2(self.satq, t[:, 0], t[:, 1], t[:, 2], t[:, 3])
        lim = self.lim
        if (mem > lim.M).any() or (axons > lim.A).any() or (outs > lim.O).any() or (neurons > lim.N).any():
            return None
        return [CoreRecord(chip=0, core=0, population=name,
                           tile=[[int(r[0]), int(r[1])], [int(r[2]), int(r[3])], [int(r[4]), int(r[5])]],
                           neurons=int(n), input_axons=int(a_), output_axons=int(o), synapses=int(s_),
                           synapse_memory_bits=int(m), encodings={self.c.name: _ENC_NAMES[int(e)]})
                for r, n, a_, o, s_, m, e in zip(t, neurons, axons, outs, syn, mem, enc)]

    def _oriented(self, tr, Y0, Y1, X0, X1):
        if tr:
            return self.capT, self.wgtT, self.ix, self.iy, X0, X1, Y0, Y1
        return self.cap, self.wgt, self.iy, self.ix, Y0, Y1, X0, X1

    def plan(self, tr, h, Y0, Y1, X0, X1):
        """The rectangles of the cheapest band partition (``_bands_nb``) for height ``h``."""
        cap, wgt, iy, ix, r0, r1, c0, c1 = self._oriented(tr, Y0, Y1, X0, X1)
        m, n = r1 - r0, c1 - c0
        argx = np.zeros((m + 1, m + 1, n + 1), np.int64)
        ay = np.zeros(m + 1, np.int64)
        _bands_nb(cap, wgt, iy, ix, r0, r1, c0, c1, h, argx, ay)
        out, y1 = [], m
        while y1 > 0:
            y0, x1 = int(ay[y1]), n
            while x1 > 0:
                x0 = int(argx[y0, y1, x1])
                out.append((c0 + x0, c0 + x1, r0 + y0, r0 + y1) if tr else (r0 + y0, r0 + y1, c0 + x0, c0 + x1))
                x1 = x0
            y1 = y0
        return out

    def slab_tiling(self, Y0, Y1, X0, X1):
        """Cover the region [Y0, Y1) x [X0, X1) x all channels with channel
        slabs, each slab a partition of the region into row bands cut into
        column pieces (or the transpose) that all hold the slab's height,
        cheapest first (``_band_costs_nb``, every height at once); the slab
        heights are an unbounded knapsack (``_knapsack_nb``), so slabs need
        not be equal and the last one is not left nearly empty.  Returns
        (cost, tiles ``(y0, y1, x0, x1, c0, c1)``) or (inf, None)."""
        iy = self.iy[Y0:Y1 + 1, Y0:Y1 + 1]
        ix = self.ix[X0:X1 + 1, X0:X1 + 1]
        seen = np.zeros(self.Co + 1, bool)
        seen[np.minimum(self.cap[iy[iy >= 0]][:, ix[ix >= 0]], self.Co)] = True
        hs = np.flatnonzero(seen[1:]) + 1                 # the distinct heights of the region's rectangles
        if hs.size == 0:
            return np.inf, None
        costs = np.stack([_band_costs_nb(*self._oriented(tr, Y0, Y1, X0, X1)[:8], hs) for tr in (False, True)])
        tr = costs.argmin(0)
        v = costs.min(0)
        ok = np.isfinite(v)
        if not ok.any():
            return np.inf, None
        hs, v, tr = hs[ok], v[ok], tr[ok]
        keep = np.append(v[1:] > v[:-1] + 1e-9, True)      # the largest height at each cost
        hs, v, tr = hs[keep], v[keep], tr[keep]
        total, pick = _knapsack_nb(hs, v, self.Co)
        heights = hs[pick]
        tiles, c0 = [], 0
        plans = {}
        for k, g in zip(pick, _spread(self.Co, heights)):
            if k not in plans:
                plans[k] = self.plan(bool(tr[k]), int(hs[k]), Y0, Y1, X0, X1)
            tiles += [(y0, y1, x0, x1, c0, c0 + int(g)) for y0, y1, x0, x1 in plans[k]]
            c0 += int(g)
        return float(total), tiles


def _inv(rep, idx):
    """Positions in ``rep`` (sorted unique representatives from np.unique's
    return_index, not sorted by value) of the values ``idx``."""
    order = np.argsort(rep)
    return order[np.searchsorted(rep[order], idx)]


def _spread(total, caps):
    """Integers ``g_i <= caps_i`` summing to ``total`` (<= sum of caps), as even as the caps allow."""
    caps = np.asarray(caps, np.int64)
    lo, hi = 0, int(caps.max())
    while lo < hi:                   # the largest level L with sum(min(caps, L)) <= total
        m = (lo + hi + 1) // 2
        if np.minimum(caps, m).sum() <= total:
            lo = m
        else:
            hi = m - 1
    g = np.minimum(caps, lo)
    rest = total - int(g.sum())
    for i in np.flatnonzero(caps > lo)[:rest]:
        g[i] += 1
    return g


@numba.njit(cache=True, nogil=True)
def _band_cost_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, h, band, dpx, dy):
    """The cost of the cheapest partition of [Y0, Y1) x [X0, X1) into row
    bands, each cut into column pieces, every piece with ``cap[y-interval,
    x-interval] >= h`` and costing ``wgt[...]`` (inf: none): a DP over
    column cuts per band, then over band cuts (``band``, ``dpx``, ``dy``: scratch)."""
    m, n = Y1 - Y0, X1 - X0
    for y0 in range(m):
        for y1 in range(y0 + 1, m + 1):
            bi = iy[Y0 + y0, Y0 + y1]
            dpx[0] = 0.0
            for x1 in range(1, n + 1):
                best = np.inf
                for x0 in range(x1):
                    if dpx[x0] < best:
                        xi = ix[X0 + x0, X0 + x1]
                        if cap[bi, xi] >= h:
                            v = dpx[x0] + wgt[bi, xi]
                            if v < best:
                                best = v
                dpx[x1] = best
            band[y0, y1] = dpx[n]
    dy[0] = 0.0
    for y1 in range(1, m + 1):
        best = np.inf
        for y0 in range(y1):
            v = dy[y0] + band[y0, y1]
            if v < best:
                best = v
        dy[y1] = best
    return dy[m]


@numba.njit(cache=True, nogil=True)
def _band_costs_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, hs):
    """``_band_cost_nb`` for every height of the increasing ``hs``.  The cost
    is nondecreasing in the height, so only its steps are searched
    (bisection); heights between two evaluated ones of equal cost share it."""
    m, n = Y1 - Y0, X1 - X0
    band = np.empty((m + 1, m + 1))
    dpx = np.empty(n + 1)
    dy = np.empty(m + 1)
    k = hs.size
    out = np.full(k, np.nan)
    out[0] = _band_cost_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, hs[0], band, dpx, dy)
    if k == 1:
        return out
    out[k - 1] = _band_cost_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, hs[k - 1], band, dpx, dy)
    stack = [(0, k - 1)]
    while len(stack):
        a, b = stack.pop()
        if out[b] - out[a] <= 1e-9 or (out[a] == np.inf and out[b] == np.inf):
            for i in range(a + 1, b):
                out[i] = out[a]
        elif b - a > 1:
            mid = (a + b) // 2
            out[mid] = _band_cost_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, hs[mid], band, dpx, dy)
            stack.append((a, mid))
            stack.append((mid, b))
    return out


@numba.njit(cache=True, nogil=True)
def _bands_nb(cap, wgt, iy, ix, Y0, Y1, X0, X1, h, argx, ay):
    """``_band_costs_nb`` for one height, keeping the cuts: ``argx[y0, y1,
    x1]`` (previous column cut of band [Y0+y0, Y0+y1)) and ``ay[y1]``
    (previous band cut).  Returns the cost."""
    m, n = Y1 - Y0, X1 - X0
    band = np.full((m + 1, m + 1), np.inf)
    dpx = np.empty(n + 1)
    for y0 in range(m):
        for y1 in range(y0 + 1, m + 1):
            bi = iy[Y0 + y0, Y0 + y1]
            dpx[0] = 0.0
            for x1 in range(1, n + 1):
                best = np.inf
                arg = 0
                for x0 in range(x1):
                    if dpx[x0] < best:
                        xi = ix[X0 + x0, X0 + x1]
                        if cap[bi, xi] >= h:
                            v = dpx[x0] + wgt[bi, xi]
                            if v < best:
                                best = v
                                arg = x0
                dpx[x1] = best
                argx[y0, y1, x1] = arg
            band[y0, y1] = dpx[n]
    dy = np.full(m + 1, np.inf)
    dy[0] = 0.0
    for y1 in range(1, m + 1):
        for y0 in range(y1):
            v = dy[y0] + band[y0, y1]
            if v < dy[y1]:
                dy[y1] = v
                ay[y1] = y0
    return dy[m]


@numba.njit(cache=True, nogil=True)
def _knapsack_nb(hs, cost, total):
    """Cheapest multiset of items (height ``hs[i]``, cost ``cost[i]``) whose
    heights sum to >= ``total``: (cost, item indices)."""
    dp = np.full(total + 1, np.inf)
    pick = np.zeros(total + 1, np.int64)
    dp[0] = 0.0
    for c in range(1, total + 1):
        for i in range(hs.size):
            r = c - hs[i]
            v = (dp[r] if r > 0 else 0.0) + cost[i]
            if v < dp[c] - 1e-12:
                dp[c] = v
                pick[c] = i
    items = []
    c = total
    while c > 0:
        items.append(pick[c])
        c -= hs[pick[c]]
    return dp[total], np.array(items, np.int64)


def _schemes(Ho, Wo):
    """Region decompositions tiled independently: the whole layer, and per
    border width (``BORDER_BANDS``) the 9-region grid, full-width top and
    bottom bands over a split middle (and the transpose), and the two
    pinwheels (each side strip takes one corner)."""
    out = [[(0, Ho, 0, Wo)]]
    for by, bx in BORDER_BANDS:
        if (by and 2 * by >= Ho) or (bx and 2 * bx >= Wo):
            continue
        ys = [a for a in ((0, by), (by, Ho - by), (Ho - by, Ho)) if a[1] > a[0]]
        xs = [a for a in ((0, bx), (bx, Wo - bx), (Wo - bx, Wo)) if a[1] > a[0]]
        out.append([(y0, y1, x0, x1) for y0, y1 in ys for x0, x1 in xs])
        if by and bx:
            out.append([(0, by, 0, Wo), (Ho - by, Ho, 0, Wo)] + [(by, Ho - by, x0, x1) for x0, x1 in xs])
            out.append([(0, Ho, 0, bx), (0, Ho, Wo - bx, Wo)] + [(y0, y1, bx, Wo - bx) for y0, y1 in ys])
            out.append([(0, by, 0, Wo - bx), (0, Ho - by, Wo - bx, Wo), (Ho - by, Ho, bx, Wo),
                        (by, Ho, 0, bx), (by, Ho - by, bx, Wo - bx)])
            out.append([(0, by, bx, Wo), (by, Ho, Wo - bx, Wo), (Ho - by, Ho, 0, Wo - bx),
                        (0, Ho - by, 0, bx), (by, Ho - by, bx, Wo - bx)])
    return out


def _slab_partition(net, hw, lim, name, out_ax, lam, max_cost=np.inf):
    """Cheapest slab tiling (``_Rects.slab_tiling``) over the region schemes
    of ``_schemes``, a core costing 1 plus ``lam`` x its input axons /
    output-axon limit (what it takes from the layer that feeds it):
    (cost, records, ("tile", tiles)) or None (none found below ``max_cost``)."""
    out_ax = _as_out(out_ax)
    Ho, Wo, Co = net.populations[name].shape
    R = _Rects(net, hw, lim, name, out_ax.per.reshape(Ho, Wo, Co), lam,
               None if out_ax.q is None else out_ax.q.reshape(Ho, Wo))
    memo = {}
    best = (max_cost, None)
    for regs in _schemes(Ho, Wo):
        tot, tiles = 0.0, []
        for r in regs:
            if r not in memo:
                memo[r] = R.slab_tiling(*r)
            v, t = memo[r]
            tot += v
            if t is None or tot >= best[0] - 1e-9:
                break
            tiles += t
        else:
            best = (tot, tiles)
    if best[1] is None:
        return None
    recs = R.records(name, best[1])
    return None if recs is None else (best[0], recs, ("tile", best[1]))


# -- contiguous ranges ---------------------------------------------------------------

class _FlatConn:
    """Dst-major non-zero structure of one incoming connection."""

    def __init__(self, net, hw, c):
        self.c = c
        # population axons would reach conv_shared rows by pixel: contiguous ranges keep
        # per-neuron axons, so they store convs dense or sparse
        self.no_shared = bool(hw.population_axon_slots()) and c.kind == "conv" and c.groups == 1
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
        opts = ([] if self.no_shared else [(m_cs, "conv_shared")]) + [(m_sp, "sparse"), (m_de, "dense")]
        best = min(opts, key=lambda t: t[0])
        return rows, int(cols.size), best[0], best[1]


def _flat_partition(net, hw, lim, name, out_ax, max_cores=None):
    """Greedy contiguous ranges; ``None`` as soon as more than ``max_cores``
    would be needed (the caller already has a partition that good)."""
    out_ax = _as_out(out_ax)
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
    cum_out = np.concatenate([[0], np.cumsum(out_ax.per)])
    cq, nch = None, int(p.shape[-1])
    if out_ax.q is not None:             # per pixel: paid by every core holding one of its channels
        cq = np.concatenate([[0], np.cumsum(out_ax.q)])

    def outs(a, b):
        o = int(cum_out[b] - cum_out[a])
        return o if cq is None else o + int(cq[(b - 1) // nch + 1] - cq[a // nch])

    def evaluate(a, b):
        if outs(a, b) > lim.O:
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
                f"{outs(a, a + 1)} output axons (limit {lim.O})")
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
                               output_axons=outs(a, lo), synapses=int(syn),
                               synapse_memory_bits=int(mem), encodings=encs))
        a = lo
    return recs, ("flat",)
