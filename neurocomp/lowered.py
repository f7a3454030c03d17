"""The lowered IR: neuron populations and connections with integer parameters.

This is what every backend executes, bit for bit the same way.

Timing (Lava's ``LoihiProtocol``, spec §0): at step t = 1..T every population
first receives what its incoming connections computed at step t-1-delay,
updates, and emits spikes; each connection then accumulates its source's
spikes of step t.  The input population emits ``raster[t-1]`` at step t.
So a connection hop costs one step and an output ``k`` hops from the input
first responds at step ``k + 1``.

Populations are stored flat, in the channels-last row-major order of their
logical ``shape`` (``(H, W, C)`` → index ``(h*W + w)*C + c``).

Neuron kinds (arithmetic in ``neurocomp.numerics``):

* ``InputNeuron``: emits the given integer raster (binary spikes, or graded
  payloads when ``graded``).
* ``LIFNeuron`` (Lava ``LIF``, fixed_pt)::

      u = wrap24(rtz(u * (4096 - du - 1)) + (a << 6))
      v = sat24(rtz(v * (4096 - dv)) + u + (bias_mant << bias_exp))
      s = v > vth << 6;  v[s] = 0  (reset="zero")  or  v[s] -= vth << 6 ("subtract")

  ``signed`` (``reset="subtract"`` only; mode ``rate-soft``, Loihi 2 graded spikes):
  a neuron that has fired more than its input now warrants takes a spike back::

      s = -1  where  not s  and  v < 0  and  count > 0;   v[s<0] += vth << 6
      count += s                                          (net spikes so far)

  so with ``v0 = vth/2`` its net count tracks ``round(relu(charge) / vth)`` of the
  charge integrated so far (one step behind where the input moves by more than a
  threshold per step): a spike fired on an early, unrepresentative volley no longer
  stays in the count.  Payloads are -1 or +1 (graded messages).

  ``burst`` b > 1 (``reset="subtract"`` only; ``ConvertOptions.spikes_per_step``): one step's
  message carries as many thresholds as v holds, up to b (burst spikes, Li & Zeng
  2022; one Loihi 2 graded message)::

      s = clip((v - 1) // (vth << 6), 0, b);   v -= s * (vth << 6)

  and a signed neuron takes back ``min(ceil(-v / (vth << 6)), count, b)`` at once, so the
  count stays ``round(relu(charge) / vth)`` while the charge moves by up to b
  thresholds a step.  ``burst=1`` is the plain neuron above.

  ``bias_onset`` k > 0 (delayed biases, ``ConvertOptions.delay_biases``): the bias
  joins only from step k (0-based) on, the step the population's input first
  arrives, so a layer does not integrate its bias alone while the pipeline
  fills.  ``reset="subtract"`` counts steps in its (microcoded) process; with
  ``bias_in_mant`` the always-on bias neuron starts later; Lava's plain LIF
  (and NetX) cannot delay its ``bias_mant``.

  Two optional synapses of standard Loihi hardware join a LIF population's input
  ``a`` (mode ``rate`` with ``rate_reset="synapse"``: reset by subtraction built
  from Lava's plain LIF, see ``neurocomp.lower``):

  * ``self_weight`` (``-m << e``, an 8-bit mantissa m and an exponent e): a
    one-to-one connection of every neuron onto itself, so a spike at step t adds
    ``self_weight`` to its own ``a`` at step t+1;
  * ``bias_in_mant`` / ``bias_in_exp``: a Dense ``(n, 1)`` from one always-on
    neuron (Lava LIF, vth 0, bias 1: it spikes at every step from step 1), so
    ``numerics.binary_dense_message(bias_in_mant, bias_in_exp)`` joins ``a`` at
    every step t >= 2 (a bias that enters the current ``u``, not ``v``); with
    ``bias_onset`` k > 1 the bias neuron starts from v = -(k - 1) and its
    message joins from step k (0-based) on.

* ``SigmaDeltaNeuron`` (Lava ``SigmaDelta``, fixed_pt, ReLU)::

      sigma += a;  act = relu(sigma + bias * 2^(spike_exp+state_exp))
      delta = act - act_prev + residue
      s = delta if |delta| >= vth * 2^(spike_exp+state_exp) else 0
      residue = delta - s;  payload = s >> state_exp

Connection kinds:

* ``dense``: ``weight`` is ``(n_dst, n_src)``; after Lava's weight
  quantisation (``numerics.quantize_dense_weights``) the message is
  ``wrap32(shift(W @ s, weight_exp))`` for binary spikes (each counts 1) and
  ``shift32(wrap32(W @ s), weight_exp)`` for graded payloads (Lava's int32
  dot product wraps before the exponent is applied).
* ``conv``: channels-last cross-correlation with ``weight`` in Keras layout
  ``(kh, kw, C_src/groups, C_dst)``, explicit ``pads``, ``strides``,
  ``dilation`` and ``groups``; no clip; message wrapped to 24 bits, then shifted by
  ``weight_exp`` (only where the message stays below 2^23 before and after the shift:
  Lava's Conv has no exponent, so such a conv runs as a Sparse matrix there; the rate
  modes give one to the convs that fit, except one reading graded pixels outside synapse
  reset, so a threshold, which sets the resolution of its biases, is not tied to the
  layer's largest weight).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Optional, Union

import numpy as np

from neurocomp.errors import NeurocompError
from neurocomp import numerics as nm

FORMAT = "neurocomp-lowered"
VERSION = 1


class LoweredError(NeurocompError):
    """The lowered network is inconsistent or breaks a numeric bound."""


# -- neurons -------------------------------------------------------------------

@dataclass
class InputNeuron:
    """Source of an integer raster; ``graded`` payloads carry values.

    How float inputs become that raster (``neurocomp.encoding``):
    ``payload = clip(round((x * pre_scale + pre_offset) * payload_per_unit), lo, payload_max)``
    with ``lo = -payload_max`` if ``signed`` else 0,
    emitted every step (``encoding="constant"``, constant current) or only
    at the first step (``"delta"``, what a sigma-delta network integrates).
    """

    graded: bool = False
    encoding: str = "constant"
    payload_per_unit: float = 1.0
    payload_max: int = 1
    pre_scale: Optional[np.ndarray] = None    # e.g. Keras Rescaling, folded in on the host
    pre_offset: Optional[np.ndarray] = None
    signed: bool = False                      # payloads may be negative (e.g. after an offset)
    kind: ClassVar[str] = "input"


@dataclass
class LIFNeuron:
    """CUBA LIF (Lava ``LIF`` fixed_pt); see the module docstring."""

    vth: int = 1
    du: int = 4095
    dv: int = 0
    bias_mant: Optional[np.ndarray] = None   # per neuron, int16 range
    bias_exp: Optional[np.ndarray] = None    # per neuron
    u0: Optional[np.ndarray] = None          # initial state per neuron (int32)
    v0: Optional[np.ndarray] = None
    reset: str = "zero"                      # "zero" (Lava LIF) or "subtract"
    self_weight: int = 0                     # one-to-one self synapse (0: none)
    bias_in_mant: Optional[np.ndarray] = None    # always-on bias neuron's weights, per neuron
    bias_in_exp: int = 0
    bias_onset: int = 0                      # first step (0-based) the bias applies; see above
    signed: bool = False                     # -1 spikes take back excess ones; see above
    burst: int = 1                           # most spikes one step's message may carry; see above
    kind: ClassVar[str] = "lif"

    @property
    def graded(self) -> bool:
        """Whether payloads carry values: signed spikes are -1 or +1 graded messages,
        bursts 1..burst."""
        return self.signed or self.burst > 1

    @property
    def bias_neuron_first_spike(self) -> int:
        """Step (0-based) of the always-on bias neuron's first spike: its message
        arrives one step later, at ``max(1, bias_onset)``."""
        return max(1, int(self.bias_onset)) - 1

    @property
    def has_reset_synapses(self) -> bool:
        """Whether a self synapse or an always-on bias neuron joins its input
        (``rate_reset="synapse"``)."""
        return bool(self.self_weight) or self.bias_in_mant is not None


@dataclass
class SigmaDeltaNeuron:
    """Sigma-delta ReLU neuron with graded output (Lava ``SigmaDelta``)."""

    vth: int = 1
    bias: Optional[np.ndarray] = None        # per neuron, in units before 2^(se+st)
    spike_exp: int = 0
    state_exp: int = 0
    cum_error: bool = False
    act_mode: str = "relu"                   # "relu" or "unit"
    kind: ClassVar[str] = "sigma_delta"
    graded: ClassVar[bool] = True


@dataclass
class SigmaNeuron:
    """Sigma decoder (Lava ``Sigma``, NetX ``sigma_output``): ``sigma += a``;
    emits ``sigma`` every step.  Used as the output of sigma-delta networks.
    ``bias`` is added by the host read-out, not by the neuron (Lava's Sigma
    has none); it is in sigma units."""

    bias: Optional[np.ndarray] = None
    kind: ClassVar[str] = "sigma"
    graded: ClassVar[bool] = True


@dataclass
class FewSpikeNeuron:
    """Few-spike (FS) ReLU neuron (Stöckl & Maass 2021; mlGeNN's converter), with
    graded payloads.  Time runs in cycles of ``k`` steps; at step t (0-based)
    the phase is ``p = t mod k``::

        fx += a
        if p == 0:  v = fx + bias;  fx = 0        (latch one cycle's input)
        thr = vth << (k-1-p);  s = v >= thr;  v -= s * thr
        payload = s << (k-1-p)

    so one cycle emits the binary expansion of ``v / vth`` (clipped to
    ``[0, 2^k - 1]``): ReLU with k-bit precision in at most k spikes, one
    cycle of latency per layer.  Sums wrap to int32.  Lava: the custom
    ``FewSpike`` process (Loihi 2 microcode on a chip; not NetX-expressible).
    """

    k: int = 4
    vth: int = 1
    bias: Optional[np.ndarray] = None        # per neuron, added once per cycle
    kind: ClassVar[str] = "few_spike"
    graded: ClassVar[bool] = True


Neuron = Union[InputNeuron, LIFNeuron, SigmaDeltaNeuron, SigmaNeuron, FewSpikeNeuron]
NEURON_TYPES = {c.kind: c for c in (InputNeuron, LIFNeuron, SigmaDeltaNeuron, SigmaNeuron,
                                    FewSpikeNeuron)}


@dataclass
class Population:
    name: str
    shape: tuple
    neuron: Neuron

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Connection:
    name: str
    src: str
    dst: str
    kind: str                                # "dense" or "conv"
    weight: np.ndarray = None
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: Optional[str] = None          # None: Lava decides from the weights
    delay: int = 0                           # extra steps beyond the one-step hop
    strides: tuple = (1, 1)
    pads: tuple = ((0, 0), (0, 0))
    dilation: tuple = (1, 1)
    groups: int = 1

    def effective_weight(self) -> np.ndarray:
        """Weights as the chip applies them (after Lava's quantisation for dense)."""
        if self.kind == "dense":
            return nm.quantize_dense_weights(self.weight, self.num_weight_bits, self.sign_mode)
        return nm.to_int32(self.weight)


@dataclass
class LoweredNet:
    """Populations (in topological order) and the connections between them."""

    populations: dict[str, Population] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    input: str = ""
    output: str = ""
    meta: dict = field(default_factory=dict)

    # -- structure -------------------------------------------------------------
    def add_population(self, name, shape, neuron) -> Population:
        if name in self.populations:
            raise LoweredError(f"duplicate population '{name}'")
        p = Population(name, tuple(int(d) for d in shape), neuron)
        self.populations[name] = p
        return p

    def connect(self, **kw) -> Connection:
        c = Connection(**kw)
        self.connections.append(c)
        return c

    def incoming(self, pop: str) -> list[Connection]:
        return [c for c in self.connections if c.dst == pop]

    def outgoing(self, pop: str) -> list[Connection]:
        return [c for c in self.connections if c.src == pop]

    def depth(self) -> int:
        """Pipeline depth L: steps before the output population can respond
        (one per connection hop plus its delays, longest path)."""
        d = {self.input: 0}
        for name in self.populations:
            for c in self.incoming(name):
                d[name] = max(d.get(name, 0), d[c.src] + 1 + c.delay)
        return d.get(self.output, 0)

    def latency_steps(self) -> int:
        """Steps until the read-out is meaningful: ``depth() + 1``, or what the
        lowering recorded for networks whose hops take longer (few-spike cycles)."""
        return int(self.meta.get("latency_steps", self.depth() + 1))

    def conv_out_shape(self, c: Connection) -> tuple:
        h, w, _ = self.populations[c.src].shape
        kh, kw, _, co = c.weight.shape
        outs = []
        for size, k, s, d, p in ((h, kh, c.strides[0], c.dilation[0], c.pads[0]),
                                 (w, kw, c.strides[1], c.dilation[1], c.pads[1])):
            outs.append((size + p[0] + p[1] - (k - 1) * d - 1) // s + 1)
        return (outs[0], outs[1], co)

    # -- checks ------------------------------------------------------------------
    def validate(self) -> None:
        """Structure, shapes, integer ranges and the float32-exactness bound of conv."""
        pops = self.populations
        if self.input not in pops or not isinstance(pops[self.input].neuron, InputNeuron):
            raise LoweredError(f"input population '{self.input}' missing or not an input")
        if self.output not in pops:
            raise LoweredError(f"output population '{self.output}' missing")
        order = list(pops)
        for c in self.connections:
            if c.src not in pops or c.dst not in pops:
                raise LoweredError(f"connection '{c.name}' joins unknown populations {c.src}->{c.dst}")
            if order.index(c.src) >= order.index(c.dst):
                raise LoweredError(f"connection '{c.name}' goes backwards ({c.src}->{c.dst}); "
                                   "populations must be in topological order")
            if isinstance(pops[c.dst].neuron, InputNeuron):
                raise LoweredError(f"connection '{c.name}' targets the input population")
            if not 0 <= c.delay <= 62:
                raise LoweredError(f"connection '{c.name}' delay {c.delay} outside 0..62")
            w = np.asarray(c.weight)
            if w.dtype.kind not in "iu":
                raise LoweredError(f"connection '{c.name}' weights must be integers, got {w.dtype}")
            ns, nd = pops[c.src].size, pops[c.dst].size
            if c.kind == "dense":
                if w.shape != (nd, ns):
                    raise LoweredError(f"dense '{c.name}' weight {w.shape} != ({nd}, {ns})")
            elif c.kind == "conv":
                if len(pops[c.src].shape) != 3 or w.ndim != 4:
                    raise LoweredError(f"conv '{c.name}' needs (H,W,C) populations and a 4-D kernel")
                if pops[c.src].shape[2] != w.shape[2] * c.groups or w.shape[3] % c.groups:
                    raise LoweredError(f"conv '{c.name}' kernel {w.shape} / groups {c.groups} "
                                       f"does not fit source {pops[c.src].shape}")
                if self.conv_out_shape(c) != pops[c.dst].shape:
                    raise LoweredError(f"conv '{c.name}' produces {self.conv_out_shape(c)}, "
                                       f"destination is {pops[c.dst].shape}")
                bound = self.max_payload(c.src) * int(np.abs(w.astype(np.int64)).sum(axis=(0, 1, 2)).max())
                if c.weight_exp and bound << max(0, c.weight_exp) >= 1 << (nm.CONV_WRAP_BITS - 1):
                    # Lava's Conv ignores exponents: a conv with one is a Sparse matrix there, whose
                    # sums do not wrap at 24 bits as the conv message does
                    raise LoweredError(f"conv '{c.name}' has weight_exp {c.weight_exp} with messages up "
                                       f"to {bound:,} before the shift: a conv takes an exponent only "
                                       "where its messages stay below 2^23 before and after it; fold "
                                       "it into the weights")
                if bound >= nm.FLOAT32_EXACT:
                    raise LoweredError(
                        f"conv '{c.name}' partial sums can reach {bound:,} >= 2^24: Lava's float32 "
                        "convolution would round; lower the weights or the payload bits")
            else:
                raise LoweredError(f"connection '{c.name}' has unknown kind '{c.kind}'")
        for p in pops.values():
            n = p.neuron
            if isinstance(n, LIFNeuron):
                if not 0 <= n.vth < (1 << 17):
                    raise LoweredError(f"population '{p.name}' vth {n.vth} outside 0..131071")
                for a in ("bias_mant", "bias_exp", "u0", "v0"):
                    arr = getattr(n, a)
                    if arr is not None and np.shape(arr) != (p.size,):
                        raise LoweredError(f"population '{p.name}' {a} shape {np.shape(arr)} != ({p.size},)")
                if n.reset not in ("zero", "subtract"):
                    raise LoweredError(f"population '{p.name}' reset '{n.reset}' unknown")
                if n.bias_onset < 0 or (n.bias_onset > 0 and n.reset == "zero" and n.bias_mant is not None
                                        and np.any(n.bias_mant)):
                    raise LoweredError(f"population '{p.name}' bias_onset {n.bias_onset}: Lava's LIF "
                                       "cannot delay its bias_mant (only reset='subtract' or an "
                                       "always-on bias neuron can; use bias_onset 0 or bias_in_mant)")
                if n.signed and (n.reset != "subtract" or n.has_reset_synapses):
                    raise LoweredError(f"population '{p.name}' has signed spikes, which need "
                                       "reset='subtract' without reset synapses (the rate-soft "
                                       "neuron); use signed=False")
                if n.burst != 1 and (n.reset != "subtract" or n.has_reset_synapses or not 1 <= n.burst <= 127
                                     or n.vth < 1):
                    raise LoweredError(f"population '{p.name}' has bursts of up to {n.burst} spikes, which "
                                       "need reset='subtract' without reset synapses (the rate-soft "
                                       "neuron), 1 <= burst <= 127 and vth >= 1 (a burst counts "
                                       "thresholds); use burst=1")
                if n.bias_in_mant is not None and np.shape(n.bias_in_mant) != (p.size,):
                    raise LoweredError(f"population '{p.name}' bias_in_mant shape "
                                       f"{np.shape(n.bias_in_mant)} != ({p.size},)")
                w = -int(n.self_weight)
                m, e = nm.mantissa_and_exp(w)
                if w < 0 or m << e != w or e > 7:
                    raise LoweredError(f"population '{p.name}' self_weight {n.self_weight} is not an "
                                       "8-bit inhibitory mantissa shifted by an exponent 0..7")
            elif isinstance(n, SigmaDeltaNeuron):
                if n.bias is not None and np.shape(n.bias) != (p.size,):
                    raise LoweredError(f"population '{p.name}' bias shape {np.shape(n.bias)} != ({p.size},)")
            elif isinstance(n, FewSpikeNeuron):
                if not 1 <= n.k <= 16:
                    raise LoweredError(f"population '{p.name}' few-spike k {n.k} outside 1..16")
                if not 1 <= int(n.vth) << (int(n.k) - 1) < (1 << 31):
                    raise LoweredError(f"population '{p.name}' few-spike vth {n.vth} << (k-1) must be "
                                       "in 1..2^31-1")
                if n.bias is not None and np.shape(n.bias) != (p.size,):
                    raise LoweredError(f"population '{p.name}' bias shape {np.shape(n.bias)} != ({p.size},)")
        ks = {q.neuron.k for q in pops.values() if isinstance(q.neuron, FewSpikeNeuron)}
        if len(ks) > 1:     # the phase is global: every layer's cycle must line up
            raise LoweredError(f"few-spike populations must share one cycle length, got k in {sorted(ks)}")
        if self.output not in self.reachable():
            raise LoweredError(f"output '{self.output}' is not reachable from input '{self.input}'")

    def reachable(self) -> set:
        seen, todo = {self.input}, [self.input]
        while todo:
            s = todo.pop()
            for c in self.outgoing(s):
                if c.dst not in seen:
                    seen.add(c.dst)
                    todo.append(c.dst)
        return seen

    def rate_scale(self) -> float:
        """Spikes per step that a rate-mode network's LIF values (rates, membrane read-out)
        show for an activation at the calibration scale (``ConvertOptions.rate_scale``:
        ``max_rate``, bursts); 1 for other modes and hand-made networks."""
        opts = self.meta.get("options") or {}
        if opts.get("mode") not in ("rate", "rate-soft"):
            return 1.0
        from neurocomp.options import ConvertOptions
        return float(ConvertOptions.model_validate(opts).rate_scale)

    def max_payload(self, pop: str) -> int:
        """Largest |payload| a population's spikes can carry (1 for binary)."""
        n = self.populations[pop].neuron
        if isinstance(n, InputNeuron):
            return int(n.payload_max) if n.graded else 1
        if isinstance(n, SigmaDeltaNeuron):
            # the lowering records the bound it guaranteed; else the 24-bit worst case
            return int(self.meta.get("payload_max", {}).get(pop, (1 << (nm.UV_BITS - 1)) >> n.state_exp))
        if isinstance(n, SigmaNeuron):
            return int(self.meta.get("payload_max", {}).get(pop, 1 << 31))
        if isinstance(n, FewSpikeNeuron):
            return 1 << (int(n.k) - 1)
        if isinstance(n, LIFNeuron):
            return int(n.burst)
        return 1

    # -- persistence -------------------------------------------------------------
    def to_dicts(self) -> tuple[dict, dict]:
        arrays: dict[str, np.ndarray] = {}
        pops = []
        for p in self.populations.values():
            scal = {}
            for f in dataclasses.fields(p.neuron):
                v = getattr(p.neuron, f.name)
                if isinstance(v, np.ndarray):
                    arrays[f"pop/{p.name}/{f.name}"] = v
                elif v is not None:
                    scal[f.name] = v
            pops.append({"name": p.name, "shape": list(p.shape), "neuron": p.neuron.kind,
                         "params": scal})
        conns = []
        for c in self.connections:
            d = {}
            for f in dataclasses.fields(c):
                v = getattr(c, f.name)
                if isinstance(v, np.ndarray):
                    arrays[f"conn/{c.name}/{f.name}"] = v
                else:
                    d[f.name] = _jsonable(v)
            conns.append(d)
        return {"format": FORMAT, "version": VERSION, "input": self.input, "output": self.output,
                "meta": _jsonable(self.meta), "populations": pops, "connections": conns}, arrays

    def save(self, stem) -> tuple[Path, Path]:
        stem = Path(stem)
        doc, arrays = self.to_dicts()
        jp, zp = stem.with_suffix(".json"), stem.with_suffix(".npz")
        jp.write_text(json.dumps(doc, indent=1) + "\n")
        with open(zp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return jp, zp

    @classmethod
    def from_dicts(cls, doc: dict, arrays: dict) -> "LoweredNet":
        if doc.get("format") != FORMAT:
            raise LoweredError("not a neurocomp lowered-network file (missing format tag)")
        net = cls(input=doc["input"], output=doc["output"], meta=doc.get("meta", {}))
        for pd in doc["populations"]:
            ncls = NEURON_TYPES[pd["neuron"]]
            kw = {k: _tuple(v) for k, v in pd["params"].items()}
            for f in dataclasses.fields(ncls):
                key = f"pop/{pd['name']}/{f.name}"
                if key in arrays:
                    kw[f.name] = np.asarray(arrays[key])
            net.add_population(pd["name"], pd["shape"], ncls(**kw))
        for cd in doc["connections"]:
            kw = {k: _tuple(v) for k, v in cd.items()}
            for f in dataclasses.fields(Connection):
                key = f"conn/{cd['name']}/{f.name}"
                if key in arrays:
                    kw[f.name] = np.asarray(arrays[key])
            net.connect(**kw)
        return net

    @classmethod
    def load(cls, stem) -> "LoweredNet":
        stem = Path(stem)
        if stem.suffix in (".json", ".npz"):
            stem = stem.with_suffix("")
        doc = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        net = cls.from_dicts(doc, arrays)
        net.validate()
        return net


def dense_conv_matrix(kernel: np.ndarray, src_shape, dst_shape, strides, pads, dilation, groups) -> np.ndarray:
    """A channels-last cross-correlation with Keras kernel ``(kh, kw, C_src/groups, C_dst)``
    and explicit ``pads`` as the ``(n_src, n_dst)`` matrix (canonical flat order) that
    multiplies a source row vector; the kernel's dtype is kept."""
    h, w, cin = src_shape
    ho, wo, cout = dst_shape
    kh, kw, cig, _ = kernel.shape
    (pt, _), (pl, _) = pads
    (sh, sw), (dh, dw) = strides, dilation
    co = np.arange(cout)
    src_ch = (co // (cout // int(groups))) * cig
    m = np.zeros((h * w * cin, ho * wo * cout), kernel.dtype)
    for oy in range(ho):
        for ox in range(wo):
            cols = (oy * wo + ox) * cout + co
            for i in range(kh):
                y = oy * sh + i * dh - pt
                for j in range(kw):
                    x = ox * sw + j * dw - pl
                    if 0 <= y < h and 0 <= x < w:
                        for ci in range(cig):
                            m[(y * w + x) * cin + src_ch + ci, cols] += kernel[i, j, ci, co]
    return m


def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _tuple(v):
    return tuple(_tuple(x) for x in v) if isinstance(v, list) else v
