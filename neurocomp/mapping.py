"""Core mappings: what runs where, an independent checker, chip placement
and the cost report.

A :class:`Mapping` lists one :class:`CoreRecord` per used core: the chip and
core index, the population (layer) and which of its neurons the core holds,
either a range ``[start, stop)`` of the population's flat (channels-last
row-major) order or a ``tile`` ``[[h0, h1], [w0, w1], [c0, c1]]`` of its
``(H, W, C)`` shape.  The input population is not placed: the host (or an
off-chip spike generator) injects its spikes.

Counting rules (the partitioner in ``neurocomp.passes.partition_cores`` and
:func:`check_mapping` follow them, with separate code):

* **neurons**: the neurons the core holds (one compartment each).
* **input axons**: distinct *source neurons* ``(population, index)`` with at
  least one non-zero synapse onto a neuron of the core.  One axon carries a
  source's spike to every synapse it has on that core, so a source reaching
  many neurons of one core costs one axon; overlapping receptive fields of
  neighbouring conv tiles are paid on both cores.  Where the chip has
  population axons (``synapse_encodings.conv_shared.population_axon_slots``
  > 0), a ``groups == 1`` conv connection stored ``conv_shared`` on the core
  is reached through one axon per distinct source *pixel* instead: the
  spike's atom names the channel (nengo-loihi's ``build_conv2d_connection``).
* **output axons**: distinct ``(neuron, destination core)`` pairs over the
  core's neurons, i.e. each neuron needs one output axon per *other or same*
  core it reaches (Loihi routes a spike to a core through one axon-table
  entry; the destination core fans it out).  A population axon takes
  ``population_axon_slots`` slots on every core holding a neuron of its pixel,
  per distinct ``(pixel, destination core)``.  The output population's
  neurons (read by the host) use none.
* **synapses**: non-zero weights onto the core's neurons (what the simulator
  counts as synaptic events per spike).
* **synapse memory**: per incoming connection, ``hw.synapse_memory_bits``
  with the encoding recorded in ``CoreRecord.encodings``:
  ``dense``: rows = the connection's input axons on the core, each as wide as
  the neurons of the destination population on the core (a dense row stores
  zeros too); ``sparse``: one row per input axon holding its non-zero
  synapses onto the core; ``conv_shared``: one stored row per distinct
  *weight class* of the core's axons, a class being (source channel, the set
  of (kernel tap, output channel) pairs the axon uses on the core), each row
  as wide as its class (:func:`conv_tap_codes` names the pairs), plus
  ``per_axon_overhead_bits`` per input axon.  Axons of one class share a row
  because their targets differ only by a base offset (a core's compartments
  are linear in (row, column, channel)); an axon at a tile's edge uses a
  clipped footprint, which is a different class -- nengo-loihi's
  ``conv2d_loihi_weights`` keys its shared weight sets the same way.  So a
  tile smaller than the kernel stores the whole kh*kw*cin*tc kernel slice in
  rows of tc, and a large interior tile stores one row per distinct border
  footprint, not only the full kernel.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import numpy as np

from neurocomp.errors import HardwareLimitError
from neurocomp.lowered import InputNeuron, LoweredNet

FORMAT = "neurocomp-mapping"
VERSION = 1


# -- shared cost-model rules (not counting code) ---------------------------------

def conn_bits(c) -> tuple[int, int]:
    """(weight_bits, delay_bits) one synapse of connection ``c`` stores."""
    return int(c.num_weight_bits), (int(c.delay).bit_length() if c.delay else 0)


def has_reset_synapses(neuron) -> bool:
    """Whether a population resets through a self synapse / always-on bias neuron
    (``rate_reset="synapse"``)."""
    return bool(getattr(neuron, "has_reset_synapses", False))


def reset_synapse_costs(hw, neuron, k: int, bias_synapses: int) -> dict:
    """What ``rate_reset="synapse"`` adds to a core holding ``k`` neurons of a
    population (``bias_synapses`` of them with a non-zero bias weight).

    The self synapses: each neuron reaches its own core once (an output and an
    input axon) and one synapse there (a ``sparse`` row of one).  The always-on
    bias neuron lives on the same core: one more neuron, one output and one
    input axon, a ``dense`` row as wide as the core's neurons of the layer.
    Keys are ``CoreRecord`` fields; ``encodings`` names the two synapse sets."""
    out = dict(neurons=0, input_axons=0, output_axons=0, synapses=0, synapse_memory_bits=0,
               encodings={})
    if getattr(neuron, "self_weight", 0):
        out["input_axons"] += k
        out["output_axons"] += k
        out["synapses"] += k
        out["synapse_memory_bits"] += hw.synapse_memory_bits("sparse", k, 1, 8, 0) if k else 0
        out["encodings"]["self"] = "sparse"
    if getattr(neuron, "bias_in_mant", None) is not None:
        out["neurons"] += 1
        out["input_axons"] += 1
        out["output_axons"] += 1
        out["synapses"] += bias_synapses
        out["synapse_memory_bits"] += hw.synapse_memory_bits("dense", 1, k, 8, 0)
        out["encodings"]["bias"] = "dense"
    return out


def conv_tap_codes(net, c, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per synapse ``(src, dst)`` of conv connection ``c`` (flat indices),
    the code ``(ky * kw + kx) * Co + co`` of its kernel tap and output
    channel: what an axon's shared weight row is keyed on (with the source
    channel) under ``conv_shared``."""
    H, W, Cs = net.populations[c.src].shape
    Ho, Wo, Co = net.populations[c.dst].shape
    kw = c.weight.shape[1]
    src = np.asarray(src, np.int64)
    dst = np.asarray(dst, np.int64)
    iy, ix = src // (W * Cs), (src // Cs) % W
    oy, ox, co = dst // (Wo * Co), (dst // Co) % Wo, dst % Co
    ky = (iy + c.pads[0][0] - oy * c.strides[0]) // c.dilation[0]
    kx = (ix + c.pads[1][0] - ox * c.strides[1]) // c.dilation[1]
    return (ky * kw + kx) * Co + co


def row_bits_fn(hw, encoding: str, weight_bits: int, delay_bits: int):
    """``f(spr)``: bits of one stored row of ``spr`` synapses (no per-axon overhead),
    from ``hw.synapse_memory_bits``; cached."""
    ovh = hw.synapse_memory_bits(encoding, 1, 0, weight_bits, delay_bits)

    @lru_cache(maxsize=None)
    def f(spr: int) -> int:
        return hw.synapse_memory_bits(encoding, 1, int(spr), weight_bits, delay_bits) - ovh
    return f, ovh


# -- records -------------------------------------------------------------------------

@dataclass
class CoreRecord:
    chip: int
    core: int
    population: str
    start: Optional[int] = None          # flat range [start, stop) ...
    stop: Optional[int] = None
    tile: Optional[list] = None          # ... or [[h0,h1],[w0,w1],[c0,c1]] of an (H,W,C) shape
    neurons: int = 0
    input_axons: int = 0
    output_axons: int = 0
    synapses: int = 0
    synapse_memory_bits: int = 0
    encodings: dict = field(default_factory=dict)   # incoming connection -> encoding

    def indices(self, shape) -> np.ndarray:
        """Flat neuron indices this core holds (population of logical ``shape``)."""
        if self.tile is None:
            return np.arange(self.start, self.stop, dtype=np.int64)
        (h0, h1), (w0, w1), (c0, c1) = self.tile
        H, W, C = shape
        hh, ww, cc = np.meshgrid(np.arange(h0, h1), np.arange(w0, w1), np.arange(c0, c1), indexing="ij")
        return ((hh * W + ww) * C + cc).ravel().astype(np.int64)


@dataclass
class Mapping:
    hw: str
    cores: list = field(default_factory=list)       # list[CoreRecord]
    summary: dict = field(default_factory=dict)
    placement: dict = field(default_factory=dict)   # filled by place_chips

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "hw": self.hw,
                "summary": self.summary, "placement": self.placement,
                "cores": [asdict(r) for r in self.cores]}

    def to_json(self, path: Union[str, Path, None] = None) -> str:
        text = json.dumps(_plain(self.to_dict()), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, text_or_path: Union[str, Path]) -> "Mapping":
        s = str(text_or_path)
        if not s.lstrip().startswith("{"):
            s = Path(s).read_text()
        d = json.loads(s)
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file (format={d.get('format')!r})")
        return cls(hw=d["hw"], cores=[CoreRecord(**r) for r in d["cores"]],
                   summary=d.get("summary", {}), placement=d.get("placement", {}))

    @property
    def chips_used(self) -> int:
        return len({r.chip for r in self.cores})


def _plain(o):
    if isinstance(o, dict):
        return {str(k): _plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_plain(v) for v in o]
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    return o


# -- independent recount -------------------------------------------------------------

def _placed(net: LoweredNet, mapping: Mapping, errors: list) -> dict[str, np.ndarray]:
    """Per non-input population, the mapping.cores index of each neuron (-1: missing)."""
    core_of = {n: np.full(p.size, -1, np.int64) for n, p in net.populations.items()
               if not isinstance(p.neuron, InputNeuron)}
    for k, r in enumerate(mapping.cores):
        if r.population not in core_of:
            errors.append(f"core {k} (chip {r.chip} core {r.core}) holds unknown or input "
                          f"population '{r.population}'")
            continue
        shape = net.populations[r.population].shape
        try:
            idx = r.indices(shape)
        except Exception as e:                                   # malformed range/tile
            errors.append(f"core {k}: bad neuron range/tile ({e})")
            continue
        n = core_of[r.population].size
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            errors.append(f"core {k}: neuron indices outside 0..{n - 1} of '{r.population}'")
            idx = idx[(idx >= 0) & (idx < n)]
        arr = core_of[r.population]
        dup = idx[arr[idx] >= 0]
        if dup.size:
            errors.append(f"'{r.population}': {dup.size} neuron(s) placed twice "
                          f"(e.g. neuron {int(dup[0])} on cores {int(arr[dup[0]])} and {k})")
        arr[idx[arr[idx] < 0]] = k
    for name, arr in core_of.items():
        miss = np.flatnonzero(arr < 0)
        if miss.size:
            errors.append(f"'{name}': {miss.size} neuron(s) not placed (e.g. neuron {int(miss[0])})")
    return core_of


def _pairs(net, c, core_of):
    """(src, dst_core) of every non-zero synapse of connection ``c`` onto placed neurons."""
    from neurocomp.analysis import connection_matrix
    m = connection_matrix(net, c).tocoo()
    src = m.row.astype(np.int64)
    dcore = core_of[c.dst][m.col]
    ok = dcore >= 0
    return src[ok], dcore[ok]


def _conv_shared_classes(net, c, core_of) -> dict:
    """Checker's count of ``conv_shared`` weight classes: per core, the width
    (synapses) of every distinct (source channel, set of (tap, output
    channel)) class among its axons of connection ``c``.

    Built from the synapse list (not the partitioner's per-axis tables): each
    (core, source) group's set of tap codes is summarised by two independent
    64-bit hashes (sums of per-code random words and of their squares), so
    two different sets merge only on a double collision."""
    from neurocomp.analysis import connection_matrix
    m = connection_matrix(net, c).tocoo()
    dcore = core_of[c.dst][m.col]
    ok = dcore >= 0
    if not ok.any():
        return {}
    src = m.row[ok].astype(np.int64)
    code = conv_tap_codes(net, c, src, m.col[ok])
    n_src = net.populations[c.src].size
    key = dcore[ok] * n_src + src
    ncode = int(np.prod(c.weight.shape[:2])) * net.populations[c.dst].shape[2]
    rng = np.random.default_rng(0x5EED)
    h1 = rng.integers(0, 2**63, ncode, dtype=np.uint64) | np.uint64(1)
    h2 = h1 * h1
    uk, inv, width = np.unique(key, return_inverse=True, return_counts=True)
    s1 = np.zeros(uk.size, np.uint64)
    s2 = np.zeros(uk.size, np.uint64)
    np.add.at(s1, inv, h1[code])
    np.add.at(s2, inv, h2[code])
    core = uk // n_src
    ch = (uk % n_src) % net.populations[c.src].shape[2]
    cls = np.unique(np.stack([core.astype(np.uint64), ch.astype(np.uint64), s1, s2,
                              width.astype(np.uint64)], 1), axis=0)
    bounds = np.flatnonzero(np.diff(cls[:, 0].astype(np.int64))) + 1
    return {int(g[0, 0]): g[:, 4].astype(np.int64) for g in np.split(cls, bounds)}


def recount(net: LoweredNet, hw, mapping: Mapping, errors: Optional[list] = None) -> dict:
    """Recount, from the network, every per-core quantity of ``mapping``.
    Returns ``{"core_of": ..., "neurons", "input_axons", "output_axons",
    "synapses", "memory"}`` (arrays over ``mapping.cores``)."""
    errors = [] if errors is None else errors
    core_of = _placed(net, mapping, errors)
    nc = len(mapping.cores)
    neurons = np.zeros(nc, np.int64)
    for arr in core_of.values():
        neurons += np.bincount(arr[arr >= 0], minlength=nc)
    in_ax = np.zeros(nc, np.int64)
    syn = np.zeros(nc, np.int64)
    mem = np.zeros(nc, np.int64)
    out_pairs = {}                            # src pop -> list of keys src*nc + dst core
    ax_keys = {}                              # src pop -> list of keys core*n_src + src
    pix_keys = {}                             # src pop -> list of keys core*n_pixels + pixel
    pop_out = {}                              # src pop -> list of keys (src core*n_pix + pixel)*nc + dst core
    slots = hw.population_axon_slots()
    enc_of = [r.encodings for r in mapping.cores]
    # one row-bits function (and its cache of row widths) per encoding and bit widths
    row_fn = lru_cache(maxsize=None)(lambda enc, wb, db: row_bits_fn(hw, enc, wb, db))

    def n_pixels(name):
        return net.populations[name].size // int(net.populations[name].shape[-1])
    for c in net.connections:
        src, dcore = _pairs(net, c, core_of)
        n_src = net.populations[c.src].size
        syn += np.bincount(dcore, minlength=nc)
        # distinct (core, source) pairs of this connection: its axon rows (kept per
        # connection, not per synapse, so VGG-sized networks fit in memory)
        rows_key, fan = np.unique(dcore * n_src + src, return_counts=True)
        del src, dcore
        on_pop = np.zeros(rows_key.size, bool)
        pix_rows = None                        # population axons per core (pixels), if any
        if slots and c.kind == "conv" and c.groups == 1:
            # population axons: a conv_shared core gets one axon per source pixel
            pop_core = np.array([e.get(c.name) == "conv_shared" for e in enc_of] + [False])
            on_pop = pop_core[rows_key // n_src]
            cs = int(net.populations[c.src].shape[-1])
            n_pix = n_pixels(c.src)
            pk = rows_key[on_pop]
            pix, pcore = (pk % n_src) // cs, pk // n_src
            pix_keys.setdefault(c.src, []).append(pcore * n_pix + pix)
            pix_rows = np.bincount(np.unique(pcore * n_pix + pix) // n_pix, minlength=nc)
            if c.src in core_of:
                scor = core_of[c.src][pk % n_src]
                ok = scor >= 0
                pop_out.setdefault(c.src, []).append((scor[ok] * n_pix + pix[ok]) * nc + pcore[ok])
        nk = rows_key[~on_pop]
        ax_keys.setdefault(c.src, []).append(nk)
        if c.src in core_of:
            out_pairs.setdefault(c.src, []).append((nk % n_src) * nc + nk // n_src)
        # memory of this connection per core, with the recorded encoding
        rcore = rows_key // n_src
        n_rows = np.bincount(rcore, minlength=nc)
        wb, db = conn_bits(c)
        cs_classes = None
        for k in np.flatnonzero(n_rows):
            enc = mapping.cores[k].encodings.get(c.name)
            if enc is None:
                errors.append(f"core {k}: no synapse encoding recorded for connection '{c.name}'")
                continue
            sel = rcore == k
            try:
                if enc == "dense":
                    width = int(np.count_nonzero(core_of[c.dst] == k))
                    mem[k] += hw.synapse_memory_bits("dense", int(n_rows[k]), width, wb, db)
                elif enc == "sparse":
                    f, ovh = row_fn(enc, wb, db)
                    vals, cnt = np.unique(fan[sel], return_counts=True)
                    mem[k] += int(sum(int(n) * f(int(v)) for v, n in zip(vals, cnt))) + int(n_rows[k]) * ovh
                elif enc == "conv_shared":
                    if c.kind != "conv":
                        errors.append(f"core {k}: conv_shared encoding on non-conv connection '{c.name}'")
                        continue
                    if cs_classes is None:
                        cs_classes = _conv_shared_classes(net, c, core_of)
                    widths = cs_classes.get(int(k), np.zeros(0, np.int64))
                    f, ovh = row_fn(enc, wb, db)
                    # one stored row per class; the per-axon overhead on the core's input
                    # axons: its pixels for population axons
                    mem[k] += ovh * int(n_rows[k] if pix_rows is None else pix_rows[k])
                    ws, nw = np.unique(widths, return_counts=True)
                    mem[k] += int(sum(int(n) * f(int(w)) for w, n in zip(ws, nw)))
                else:
                    errors.append(f"core {k}: unknown encoding '{enc}' for '{c.name}'")
            except HardwareLimitError as e:
                errors.append(f"core {k}: {e}")
    # distinct source neurons per core (keys per source population: core * n_src + src)
    for sname, keys in ax_keys.items():
        n_src = net.populations[sname].size
        u = np.unique(np.concatenate(keys))
        in_ax += np.bincount(u // n_src, minlength=nc)
    # population axons: distinct source pixels per core, and per sending core
    # ``slots`` output-axon slots per distinct (pixel, destination core)
    for sname, keys in pix_keys.items():
        u = np.unique(np.concatenate(keys))
        in_ax += np.bincount(u // n_pixels(sname), minlength=nc)
    out_ax = np.zeros(nc, np.int64)
    for sname, keys in out_pairs.items():
        if sname == net.output:
            continue
        u = np.unique(np.concatenate(keys))
        srcc = core_of[sname][u // nc]
        ok = srcc >= 0
        out_ax += np.bincount(srcc[ok], minlength=nc)
    for sname, keys in pop_out.items():
        if sname == net.output:
            continue
        u = np.unique(np.concatenate(keys))
        out_ax += slots * np.bincount(u // nc // n_pixels(sname), minlength=nc)
    # rate_reset "synapse": self synapses and one bias neuron per core of the layer
    for pname, arr in core_of.items():
        n = net.populations[pname].neuron
        if not has_reset_synapses(n):
            continue
        nz = np.zeros(arr.size, bool) if n.bias_in_mant is None else \
            np.asarray(n.bias_in_mant).reshape(-1) != 0
        for k in np.unique(arr[arr >= 0]):
            on = arr == k
            extra = reset_synapse_costs(hw, n, int(on.sum()), int((on & nz).sum()))
            neurons[k] += extra["neurons"]
            in_ax[k] += extra["input_axons"]
            out_ax[k] += extra["output_axons"]
            syn[k] += extra["synapses"]
            mem[k] += extra["synapse_memory_bits"]
    return {"core_of": core_of, "neurons": neurons, "input_axons": in_ax,
            "output_axons": out_ax, "synapses": syn, "memory": mem}


LIMITS = (("neurons", "core.neurons", "neurons"),
          ("input_axons", "core.input_axons", "input axons"),
          ("output_axons", "core.output_axons", "output axons"),
          ("memory", "core.synapse_memory_bits", "synapse memory bits"))


def check_mapping(net: LoweredNet, hw, mapping: Mapping) -> list[str]:
    """Every problem of ``mapping`` for ``net`` on ``hw`` (empty: valid).

    Independent of the partitioner: recounts from the network's connection
    matrices, then checks every per-core limit, every neuron placed exactly
    once, chip/core indices in range and unique, and that the numbers
    recorded in the mapping are not below the recount."""
    errors: list[str] = []
    if mapping.hw != hw.name:
        errors.append(f"mapping is for '{mapping.hw}', checking against '{hw.name}'")
    rc = recount(net, hw, mapping, errors)
    max_chips = int(hw.value("chip.system.max_chips"))
    cpc = int(hw.value("chip.cores"))
    seen = {}
    for k, r in enumerate(mapping.cores):
        if not 0 <= r.chip < max_chips:
            errors.append(f"core {k}: chip {r.chip} outside 0..{max_chips - 1}")
        if not 0 <= r.core < cpc:
            errors.append(f"core {k}: core index {r.core} outside 0..{cpc - 1}")
        if (r.chip, r.core) in seen:
            errors.append(f"core {k}: chip {r.chip} core {r.core} also used by core {seen[(r.chip, r.core)]}")
        seen[(r.chip, r.core)] = k
        for key, path, label in LIMITS:
            got = int(rc[key][k])
            lim = int(hw.value(path))
            if got > lim:
                errors.append(f"core {k} (chip {r.chip} core {r.core}, '{r.population}'): "
                              f"{got} {label} > limit {lim}")
        for key, attr in (("neurons", "neurons"), ("input_axons", "input_axons"),
                          ("output_axons", "output_axons"), ("synapses", "synapses"),
                          ("memory", "synapse_memory_bits")):
            if int(getattr(r, attr)) < int(rc[key][k]):
                errors.append(f"core {k}: records {attr}={getattr(r, attr)} but the network needs "
                              f"{int(rc[key][k])}")
    return errors


# -- chip placement -------------------------------------------------------------------

def _axis_reach(n_out, n_in, k, s, d, p0):
    """Unique (input, output) position pairs of one conv axis."""
    o = np.repeat(np.arange(n_out), k)
    i = o * s + np.tile(np.arange(k), n_out) * d - p0
    ok = (i >= 0) & (i < n_in)
    u = np.unique(i[ok] * n_out + o[ok])
    return u // n_out, u % n_out


def _reach_pairs(net, c, core_of):
    """Unique (source neuron, destination core) pairs of connection ``c``.

    Placement only needs which cores a source reaches, not its synapses, so
    a conv whose kernel has no zero is done per (source position, channel
    group): every source channel of a group reaches the same cores, which
    keeps the work near the number of such pairs instead of the synapse
    count (tens of millions on VGG).  Kernels with zeros take the exact
    synapse-level path."""
    from neurocomp import numerics as nm
    dcore_all = core_of[c.dst]
    if c.kind != "conv" or not np.all(nm.to_int32(c.weight) != 0):
        src, dcore = _pairs(net, c, core_of)
        nc = int(dcore.max()) + 1 if dcore.size else 1
        u = np.unique(src * nc + dcore)
        return u // nc, u % nc
    H, W, Cs = net.populations[c.src].shape
    Ho, Wo, Co = net.populations[c.dst].shape
    kh, kw, cg, _ = c.weight.shape
    G = int(c.groups)
    og = Co // G
    iy, oy = _axis_reach(Ho, H, kh, c.strides[0], c.dilation[0], c.pads[0][0])
    ix, ox = _axis_reach(Wo, W, kw, c.strides[1], c.dilation[1], c.pads[1][0])
    # every (source position, destination position) pair of the separable window
    sy, sx = np.repeat(iy, ix.size), np.tile(ix, iy.size)
    dy, dx = np.repeat(oy, ox.size), np.tile(ox, oy.size)
    spos, dpos = sy * W + sx, dy * Wo + dx
    # distinct cores per (destination position, group)
    nc = int(dcore_all.max()) + 2 if dcore_all.size else 2
    d3 = dcore_all.reshape(Ho * Wo, G, og)
    pg = np.repeat(np.arange(Ho * Wo * G), og)
    cores = d3.reshape(-1)
    ok = cores >= 0
    u = np.unique(pg[ok] * nc + cores[ok])
    pg_u, core_u = u // nc, u % nc
    start = np.searchsorted(pg_u, np.arange(Ho * Wo * G + 1))
    # join: (spos, dpos) x g -> cores of (dpos, g)
    key = np.repeat(dpos * G, G) + np.tile(np.arange(G), dpos.size)
    cls = np.repeat(spos * G, G) + np.tile(np.arange(G), spos.size)
    cnt = start[key + 1] - start[key]
    cls = np.repeat(cls, cnt)
    first = np.repeat(start[key], cnt)
    offs = np.arange(cls.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    core = core_u[first + offs]
    u = np.unique(cls * nc + core)
    cls, core = u // nc, u % nc
    sp_, g = cls // G, cls % G
    # every source channel of the group shares the class's cores
    src = (np.repeat(sp_ * Cs + g * cg, cg) + np.tile(np.arange(cg), cls.size))
    return src.astype(np.int64), np.repeat(core, cg).astype(np.int64)


def _core_traffic(net, mapping, rates, core_of=None):
    """Messages per inference between cores: dict (a, b) -> weight.  A spike
    of a neuron sends one message to each core it reaches (the output-axon
    rule)."""
    core_of = core_of if core_of is not None else _placed(net, mapping, [])
    nc = len(mapping.cores)
    w = np.zeros(nc * nc)
    for sname in net.populations:
        if sname not in core_of:
            continue
        keys = []
        for c in net.outgoing(sname):
            src, dcore = _reach_pairs(net, c, core_of)
            keys.append(src * nc + dcore)
        if not keys:
            continue
        u = np.unique(np.concatenate(keys))
        src, dcore = u // nc, u % nc
        scores = core_of[sname][src]
        r = _rate_array(rates, sname, net.populations[sname].size)[src]
        ok = scores >= 0
        w += np.bincount(scores[ok] * nc + dcore[ok], weights=r[ok], minlength=nc * nc)
    w = w.reshape(nc, nc)
    np.fill_diagonal(w, 0.0)
    a, b = np.nonzero(w)
    return {(int(i), int(j)): float(w[i, j]) for i, j in zip(a, b)}


def _rate_array(rates, name, size):
    if rates is None or name not in rates:
        return np.ones(size)
    r = np.asarray(rates[name], np.float64)
    return np.broadcast_to(r, (size,)) if r.ndim == 0 else r


def rates_from_sim(net: LoweredNet, sim_result) -> dict[str, np.ndarray]:
    """Spikes per neuron per inference from a simulator result: per neuron
    when the population's spikes were recorded, else the population mean."""
    out = {}
    for name, p in net.populations.items():
        if name in getattr(sim_result, "spikes", {}):
            out[name] = (np.asarray(sim_result.spikes[name]) != 0).sum(axis=1).mean(axis=0)
        elif name in sim_result.spike_counts:
            out[name] = np.full(p.size, sim_result.spike_counts[name].sum(axis=1).mean() / p.size)
    return out


def _inter_chip(traffic, chip_of):
    return float(sum(w for (a, b), w in traffic.items() if chip_of[a] != chip_of[b]))


def place_chips(net: LoweredNet, hw, mapping: Mapping, rates=None) -> tuple[Mapping, dict]:
    """Assign the mapping's cores to chips so that inter-chip spike traffic is
    low: recursive Kernighan-Lin bisection (networkx) of the core graph
    weighted by messages per inference (``rates``: spikes per neuron per
    inference, e.g. :func:`rates_from_sim`; 1 per neuron when absent),
    starting from the naive in-order placement, so never worse than it.
    Traffic is counted per (source neuron, destination core) without
    expanding conv synapses (:func:`_reach_pairs`), so VGG-sized networks
    place in about a second.
    Returns the updated mapping and ``{"inter_chip_messages",
    "naive_inter_chip_messages", "chips_used", "weights"}``."""
    import networkx as nx
    from networkx.algorithms.community import kernighan_lin_bisection

    nc = len(mapping.cores)
    cpc = int(hw.value("chip.cores"))
    max_chips = int(hw.value("chip.system.max_chips"))
    n_chips = max(1, math.ceil(nc / cpc))
    if n_chips > max_chips:
        raise HardwareLimitError(f"{nc} cores need {n_chips} chips of {cpc} cores; "
                                 f"'{hw.name}' systems have at most {max_chips} chips")
    traffic = _core_traffic(net, mapping, rates)
    g = nx.Graph()
    g.add_nodes_from(range(nc))
    for (a, b), w in traffic.items():
        if g.has_edge(a, b):
            g[a][b]["weight"] += w
        else:
            g.add_edge(a, b, weight=w)
    naive = [k // cpc for k in range(nc)]

    def split(nodes: list, k: int, first_chip: int, out: dict):
        if k == 1:
            for n in nodes:
                out[n] = first_chip
            return
        k1 = k // 2
        n1 = min(len(nodes), k1 * cpc) if len(nodes) > k1 * cpc else math.ceil(len(nodes) * k1 / k)
        n1 = max(len(nodes) - (k - k1) * cpc, min(n1, k1 * cpc))
        a, b = set(nodes[:n1]), set(nodes[n1:])
        if a and b and len(nodes) <= 4000:
            ka, kb = kernighan_lin_bisection(g.subgraph(nodes), partition=(a, b), max_iter=10,
                                             weight="weight", seed=0)
            # KL swaps node pairs, so the sizes survive, but networkx (2.8) may hand the
            # two sides back in either order; the chip capacities are not symmetric
            if len(ka) != n1:
                ka, kb = kb, ka
            if len(ka) == n1:
                a, b = set(ka), set(kb)
        split(sorted(a), k1, first_chip, out)
        split(sorted(b), k - k1, first_chip + k1, out)

    chip_of = {}
    split(list(range(nc)), n_chips, 0, chip_of)
    cost, naive_cost = _inter_chip(traffic, chip_of), _inter_chip(traffic, naive)
    if cost > naive_cost:                       # KL is a heuristic; keep the better one
        chip_of, cost = dict(enumerate(naive)), naive_cost
    counters = {}
    for k, r in enumerate(mapping.cores):
        r.chip = int(chip_of[k])
        r.core = counters.get(r.chip, 0)
        counters[r.chip] = r.core + 1
    stats = {"inter_chip_messages": cost, "naive_inter_chip_messages": naive_cost,
             "chips_used": len(set(chip_of.values())),
             "weights": "simulated spike rates" if rates is not None else "1 spike per neuron (estimate)"}
    mapping.placement = stats
    mapping.summary["chips_used"] = stats["chips_used"]
    return mapping, stats


# -- cost report ----------------------------------------------------------------------

def _leaf(hw, path):
    if not hw.has(path):
        return None, True
    q = hw.quantity(path)
    return float(q.value), bool(q.confirmed)


def cost_report(net: LoweredNet, hw, mapping: Mapping, sim_result=None, steps: Optional[int] = None,
                raster: Optional[np.ndarray] = None) -> dict:
    """Per layer and total, per inference: synaptic operations, neuron
    updates, spikes, inter-core and inter-chip messages, latency in steps
    (``net.depth() + 1``) and energy (pJ) / time (ns) estimates from the
    per-operation costs in the hardware YAML.

    Spikes come from ``sim_result`` (the event simulator; per neuron when
    recorded, e.g. ``record="all"``, else population totals with the mean
    fan-out); the input population's from ``raster`` when given.  Without a
    simulation every neuron is assumed to spike once per step (an upper
    bound, flagged ``"estimated": True``).  ``unconfirmed`` lists the YAML
    costs used that are marked ``confirmed: false``."""
    from neurocomp.analysis import connection_matrix
    if steps is None:
        steps = int(sim_result.steps) if sim_result is not None else 1
    errors: list = []
    core_of = _placed(net, mapping, errors)
    nc = len(mapping.cores)
    chip = np.array([r.chip for r in mapping.cores], np.int64)
    estimated = sim_result is None

    def spikes_per_neuron(name):
        """(per-neuron spikes per inference, exact?)"""
        p = net.populations[name]
        if name == net.input:
            if raster is not None:
                return (np.asarray(raster) != 0).sum(axis=1).mean(axis=0).astype(np.float64), True
            return np.full(p.size, float(steps)), False
        if sim_result is not None and name in getattr(sim_result, "spikes", {}):
            return (np.asarray(sim_result.spikes[name]) != 0).sum(axis=1).mean(axis=0), True
        if sim_result is not None and name in sim_result.spike_counts:
            return np.full(p.size, sim_result.spike_counts[name].sum(axis=1).mean() / p.size), False
        return np.full(p.size, float(steps)), False

    layers = {n: {"neurons": p.size, "synaptic_ops_in": 0.0, "neuron_updates": 0.0,
                  "spikes": 0.0, "inter_core_messages": 0.0,
                  "inter_chip_messages": 0.0, "host_input_messages": 0.0}
              for n, p in net.populations.items()}
    core_syn = np.zeros(nc)
    exact = True
    for name, p in net.populations.items():
        s, ok = spikes_per_neuron(name)
        exact &= ok
        row = layers[name]
        if name != net.input:
            row["neuron_updates"] = float(p.size * steps)
        row["spikes"] = float(s.sum())
        keys = []
        for c in net.outgoing(name):
            m = connection_matrix(net, c).tocsr()
            fan = np.diff(m.indptr)
            layers[c.dst]["synaptic_ops_in"] += float(s @ fan)
            coo = m.tocoo()
            dcore = core_of[c.dst][coo.col]
            okm = dcore >= 0
            core_syn += np.bincount(dcore[okm], weights=s[coo.row[okm]], minlength=nc)
            keys.append(coo.row[okm].astype(np.int64) * nc + dcore[okm])
        if keys:
            u = np.unique(np.concatenate(keys))
            src, dcore = u // nc, u % nc
            if name == net.input:
                row["host_input_messages"] = float(s[src].sum())
            else:
                scores = core_of[name][src]
                okc = scores >= 0
                w = s[src][okc]
                diff_core = scores[okc] != dcore[okc]
                diff_chip = chip[scores[okc]] != chip[dcore[okc]]
                row["inter_core_messages"] = float(w[diff_core].sum())
                row["inter_chip_messages"] = float(w[diff_chip].sum())
    # rate_reset "synapse": each spike also reaches its own self synapse; every core's bias
    # neuron updates, spikes and reaches its bias row at every step (all within the core)
    for name, p in net.populations.items():
        n = p.neuron
        if name == net.input or not has_reset_synapses(n):
            continue
        row = layers[name]
        if n.self_weight:
            row["synaptic_ops_in"] += row["spikes"]
        if n.bias_in_mant is not None:
            cores = np.unique(core_of[name][core_of[name] >= 0]).size
            row["neuron_updates"] += float(cores * steps)
            fires = max(0, steps - n.bias_neuron_first_spike)     # a delayed bias starts later
            row["spikes"] += float(cores * fires)
            row["synaptic_ops_in"] += float(np.count_nonzero(n.bias_in_mant) * fires)
    # synaptic ops are charged to the destination layer
    out_layers = {}
    for name in net.populations:
        row = dict(layers[name])
        row["synaptic_ops"] = float(row.pop("synaptic_ops_in", 0.0))
        out_layers[name] = row
    tot = {k: float(sum(r[k] for r in out_layers.values()))
           for k in ("neurons", "synaptic_ops", "neuron_updates", "spikes", "inter_core_messages",
                     "inter_chip_messages", "host_input_messages")}
    used, unconfirmed = {}, []

    def cost(path):
        v, conf = _leaf(hw, path)
        if v is not None:
            used[path] = v
            if not conf:
                unconfirmed.append(path)
        return v or 0.0

    e_syn, e_neu = cost("energy.synop_pj"), cost("energy.neuron_update_pj")
    e_ic, e_xc = cost("energy.spike_intra_chip_pj"), cost("energy.spike_inter_chip_pj")
    for row in list(out_layers.values()) + [tot]:
        row["energy_pj"] = (row["synaptic_ops"] * e_syn + row["neuron_updates"] * e_neu
                            + row["inter_core_messages"] * e_ic
                            + row["inter_chip_messages"] * (e_xc - e_ic))
    # time: cores run in parallel; each step lasts as long as the busiest core
    t_syn, t_neu = cost("timing.synop_ns"), cost("timing.neuron_update_ns")
    t_step, t_xc = cost("timing.timestep_overhead_ns"), cost("timing.spike_inter_chip_ns")
    neurons = np.zeros(nc)
    for arr in core_of.values():
        neurons += np.bincount(arr[arr >= 0], minlength=nc)
    per_core_ns = (core_syn * t_syn + neurons * steps * t_neu) if nc else np.zeros(1)
    xc_per_step = tot["inter_chip_messages"] / max(steps, 1)
    step_ns = float(per_core_ns.max() / max(steps, 1)) + t_step + (t_xc if xc_per_step > 0 else 0.0)
    latency = net.latency_steps()
    return {"hw": hw.name, "steps": int(steps), "latency_steps": int(latency),
            "layers": out_layers, "total": tot,
            "time_per_step_ns": step_ns, "time_per_inference_ns": step_ns * steps,
            "first_output_ns": step_ns * latency,
            "costs_used": used, "unconfirmed": sorted(set(unconfirmed)),
            "estimated": bool(estimated or not exact),
            "spikes_source": "simulator" if sim_result is not None else "assumed 1 spike/neuron/step",
            "mapping_errors": errors}
