"""The Python API: ``neurocomp.compile(model, hw=..., calib=...)``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import networkx as nx
import numpy as np

from neurocomp.encoding import check_encoding, default_encoding, encode
from neurocomp.errors import HardwareLimitError, NeurocompError
from neurocomp.lowered import FewSpikeNeuron, LIFNeuron, LoweredNet
from neurocomp.options import ConvertOptions
from neurocomp.pipeline import passes_for


@dataclass
class SimOutput:
    predictions: np.ndarray
    scores: np.ndarray
    result: Any                      # backends.base.SimResult
    steps: int
    backend: str
    winners: Optional[np.ndarray] = None       # (batch, n_out) bool, see readout.decide(ties=...)
    decision_steps: Optional[np.ndarray] = None  # (batch,) step each decision was taken
    encoding: str = "constant"

    def accuracy(self, y) -> float:
        return float((self.predictions == np.asarray(y).reshape(-1)).mean())

    @property
    def mean_steps(self) -> float:
        """Mean steps per sample to the decision (``steps`` unless early exit or a spike-time read-out)."""
        return float(np.mean(self.decision_steps)) if self.decision_steps is not None else float(self.steps)


@dataclass
class Compiled:
    """A compiled network: the calibrated float graph, the integer network,
    the options and hardware it was made for, and what each pass noted."""

    graph: nx.DiGraph
    net: LoweredNet
    options: ConvertOptions
    hw: Any = None
    notes: dict = field(default_factory=dict)
    timings: list = field(default_factory=list)

    @property
    def latency_steps(self) -> int:
        """Pipeline depth L: steps before the output can respond."""
        return self.net.latency_steps()

    def save(self, out, x=None, y=None, **kwargs) -> dict:
        """Write the deployable bundle (networks, mapping, summary, report) into
        ``out``, analysed on ``x`` / ``y``: ``neurocomp.bundle.save_bundle``."""
        from neurocomp.bundle import save_bundle
        return save_bundle(self, out, x, y, **kwargs)

    def report(self, x, y=None, steps: Optional[int] = None, **kwargs) -> dict:
        """The report's data (accuracy curve, per-layer diagnostics, cores, costs)
        on ``x`` / ``y`` without writing files: ``neurocomp.report.analyse``."""
        from neurocomp.report import analyse, map_to_cores
        mapping, _ = map_to_cores(self.net, self.hw)
        return analyse(self, x, y, steps or self.latency_steps + 32, mapping, **kwargs)

    def simulate(self, x: np.ndarray, steps: int, backend: str = "event", *, record=None,
                 record_states=None, encoding: Optional[str] = None, seed: int = 0,
                 readout: Optional[str] = None, k: Optional[int] = None, ties: str = "first",
                 early_exit=None) -> SimOutput:
        """Run ``x`` (float samples, the Keras model's input shape) for ``steps``.

        ``encoding``/``seed``: input encoding (default: the compiled one) and
        the seed of the stochastic ones (``neurocomp.encoding``).  ``readout``,
        ``k``, ``ties``, ``early_exit`` (an ``EarlyExit``, or a margin as a
        float): how the decision is read (``neurocomp.readout.decide``).
        """
        from neurocomp.backends import get_backend
        from neurocomp.readout import EarlyExit, decide, needs_states

        enc = encoding or default_encoding(self.net)
        raster = encode(self.net, x, steps, encoding=enc, seed=seed)
        states = set(needs_states(self.net)) | set(
            self.net.populations if record_states is True else (record_states or ()))
        res = get_backend(backend).run(self.net, raster, record=record, record_states=sorted(states))
        if early_exit is not None and not isinstance(early_exit, EarlyExit):
            early_exit = EarlyExit(margin=float(early_exit))
        d = decide(self.net, res, readout=readout, k=k, ties=ties, early_exit=early_exit)
        return SimOutput(d.predictions, d.scores, res, steps, backend, d.winners, d.steps, enc)


def check_options(opt: ConvertOptions) -> None:
    """Refuse option combinations that make no sense, in one line, before any work."""
    from neurocomp.encoding import EncodingError
    from neurocomp.readout import ReadoutError

    if opt.mode == "sigma-delta" and opt.encoding != "constant":
        raise EncodingError(f"encoding '{opt.encoding}' does not apply to mode sigma-delta (its input is the "
                            "delta-coded constant current); use encoding 'constant' or a rate mode")
    if opt.mode in ("sigma-delta", "few-spike") and opt.readout not in ("membrane",):
        raise ReadoutError(f"read-out '{opt.readout}' does not apply to mode {opt.mode} (it is read from "
                           "its Sigma decoder); leave the read-out at its default or use a rate mode")
    if opt.mode == "rate" and opt.rate_reset == "synapse" and opt.netx:
        raise NeurocompError("rate reset 'synapse' is not NetX-expressible (NetX has no self synapses on "
                             "conv layers and no always-on bias neuron); use --rate-reset zero with "
                             "--netx, or --no-netx")
    if opt.signed_spikes and opt.mode != "rate-soft":
        raise NeurocompError(f"signed spikes need rate-soft's microcoded neuron (mode {opt.mode} has "
                             "none with a spike count to take back); use --mode rate-soft or drop "
                             "--signed-spikes")
    if opt.spikes_per_step > 1 and opt.mode != "rate-soft":
        raise NeurocompError(f"--spikes-per-step above 1 (bursts) needs rate-soft's microcoded neuron (mode {opt.mode} sends at most "
                             "one spike per step); use --mode rate-soft or --spikes-per-step 1")
    if opt.readout_skip > 0 and (opt.mode not in ("rate", "rate-soft") or opt.readout not in ("membrane", "count")):
        raise ReadoutError(f"--readout-skip applies to the rate modes' membrane and count read-outs (not mode "
                           f"{opt.mode} with read-out '{opt.readout}'); drop it or use one of those")
    if opt.mode == "rate" and opt.rate_reset == "synapse" and opt.synapse_tau > 1:
        raise NeurocompError("--synapse-tau filters through the current u, which rate reset 'synapse' "
                             "uses as its integrator; use --rate-reset zero with --synapse-tau")


SYNAPSE_RESET_CAP_SAMPLES = 300    # calibration samples synapse_reset_caps simulates
# calibration samples correct_rates_if_better simulates: its threshold search compares decisions,
# where 300 left the MNIST CNN's choice to a handful of images (0.9877 at L+32 against 0.9899)
RATE_CORRECTION_SAMPLES = 500
INPUT_BITS_SAMPLES = 200           # calibration samples trade_input_bits compares networks on


def compile(model, calib: Optional[np.ndarray] = None, hw="loihi2", options: Optional[ConvertOptions] = None,
            on_pass: Optional[Callable[[int, int, str], None]] = None, **option_overrides) -> Compiled:
    """Compile a Keras model (object or file) or an IR graph into a spiking network.

    ``calib``: calibration inputs (a few hundred training samples) for
    threshold balancing.  ``hw``: hardware name, YAML path or config.
    Options: a ``ConvertOptions`` or its fields as keyword arguments.
    ``on_pass(i, n, name)``, for a progress display: called before each of the ``n``
    passes, then with ``i = n`` (and a ``name`` that is no pass) before lowering, before
    rate correction and after each candidate of its threshold search.
    """
    from neurocomp.frontends.keras import load_keras
    from neurocomp.hw import load_hw
    from neurocomp.lower import lower, optq_hessians
    from neurocomp.passes import PassContext, run_pipeline

    opt = options or ConvertOptions(**option_overrides)
    if option_overrides and options is not None:
        opt = options.model_copy(update=option_overrides)
    check_options(opt)
    hw_cfg = load_hw(hw) if isinstance(hw, str) else hw
    g = model if isinstance(model, nx.DiGraph) else load_keras(model)
    ctx = PassContext(hw=hw_cfg, options=opt.model_dump(),
                      calib=None if calib is None else np.asarray(calib)[:opt.calib_samples])
    names = passes_for(opt)
    g = run_pipeline(g, names, ctx, on_pass=on_pass)
    t0 = time.perf_counter()
    if on_pass:
        on_pass(len(names), len(names), "lower")
    hessians = optq_hessians(g, opt, ctx.calib)
    net = lower(g, opt, hw_cfg, hessians=hessians)
    if opt.reset_synapse and ctx.calib is not None:
        # thresholds that leave u room for the negative input calibration data shows
        from neurocomp.lower import synapse_reset_caps
        caps = synapse_reset_caps(net, ctx.calib[:SYNAPSE_RESET_CAP_SAMPLES], opt.max_steps)
        if caps:
            net = lower(g, opt, hw_cfg, vth_caps=caps, hessians=hessians)
            ctx.notes["synapse_reset_vth"] = caps
        if opt.trade_input_bits and opt.encoding == "constant":
            from neurocomp.lower import trade_input_bits
            net, errors = trade_input_bits(
                g, net, opt, lambda o: lower(g, o, hw_cfg, vth_caps=caps or None, hessians=hessians),
                ctx.calib[:INPUT_BITS_SAMPLES])
            ctx.notes["input_bits"] = {"chosen": int(net.meta["options"]["input_bits"]),
                                       "output_error": {int(b): e for b, e in errors.items()}}
    if opt.mode != "sigma-delta":
        # the bundle's input neuron remembers the encoding; encode() reads it from there
        net.populations[net.input].neuron.encoding = opt.encoding
    check_encoding(net, opt.encoding)
    ctx.timings.append(("lower", time.perf_counter() - t0))
    zero_reset = any(n != net.output and isinstance(p.neuron, LIFNeuron) and p.neuron.reset == "zero"
                     and not p.neuron.has_reset_synapses for n, p in net.populations.items())
    if opt.mode == "rate" and opt.rate_correction and ctx.calib is not None and zero_reset:
        from neurocomp.quant import Formats
        from neurocomp.rate_correction import correct_rates_if_better
        t0 = time.perf_counter()
        x = ctx.calib[:RATE_CORRECTION_SAMPLES]
        def progress(done, most):
            on_pass(len(names), len(names), f"rate correction: threshold candidate {done} of up to {most}")
        if on_pass:
            on_pass(len(names), len(names), "rate correction")
        net, ctx.notes["rate_correction"] = correct_rates_if_better(
            net, x, net.latency_steps() + 32, Formats.from_hw(hw_cfg), search=opt.threshold_search,
            progress=progress if on_pass else None)
        ctx.timings.append(("correct_rates", time.perf_counter() - t0))
    if opt.mode in ("rate", "rate-soft") and opt.potential_correction and ctx.calib is not None:
        from neurocomp.potential_correction import correct_potentials_if_better, correctable
        if correctable(net):
            t0 = time.perf_counter()
            if on_pass:
                on_pass(len(names), len(names), "potential correction")
            net, ctx.notes["potential_correction"] = correct_potentials_if_better(
                net, ctx.calib[:RATE_CORRECTION_SAMPLES])
            ctx.timings.append(("correct_potentials", time.perf_counter() - t0))
    check_neuron_support(net, hw_cfg)
    return Compiled(g, net, opt, hw_cfg, ctx.notes, ctx.timings)


def check_neuron_support(net: LoweredNet, hw) -> None:
    """Refuse neurons the chip cannot run: microcoded ones (reset by subtraction,
    few-spike) where its compartments are fixed-function, graded spikes where it sends
    binary ones.  The input is exempt: the host injects it."""
    custom = hw.value("numerics.supports_custom_neurons")
    graded = hw.value("numerics.supports_graded_spikes")
    for p in net.populations.values():
        n = p.neuron
        if p.name == net.input:
            continue
        if not custom and (isinstance(n, FewSpikeNeuron) or getattr(n, "reset", "") == "subtract"):
            raise HardwareLimitError(
                f"population '{p.name}' needs a microcoded neuron ("
                f"{'few-spike' if isinstance(n, FewSpikeNeuron) else 'reset by subtraction'}), which "
                f"'{hw.name}' lacks (supports_custom_neurons: false); compile for a chip with "
                "programmable neurons (--hw loihi2) or with --mode rate")
        if not graded and n.graded:
            raise HardwareLimitError(
                f"population '{p.name}' sends graded spikes ({n.kind}), which '{hw.name}' lacks "
                "(supports_graded_spikes: false); compile for a chip with graded spikes (--hw loihi2) "
                "or with --mode rate")
