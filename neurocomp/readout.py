"""From simulation results to class scores, decisions and the steps they took.

Read-outs (``ConvertOptions.readout``; the compiled one is ``net.meta["readout"]``):

* ``membrane``: the output layer never spikes; its membrane potential is the
  integrated input (the ANN's logit times the steps).
* ``count``: spike counts, ties broken by the membrane potential.
* ``first-spike`` / ``k-spikes``: the class of the first output neuron to emit
  1 / ``k`` spikes; the decision is taken at that step (the chip could stop
  there).  Simultaneous arrivals are broken by the membrane potential at that
  step (``ties="all"`` returns every one of them).  If no neuron gets there
  within the run, the spike count at the last step decides.
* ``sigma``: sigma-delta: the output Sigma decoder's value (the decoded logit)
  plus its bias.
* ``few-spike``: the output Sigma decoder's gain over its last complete
  cycle (``neurocomp.few_spike.decode_window``) plus its bias.

``count``, ``first-spike`` and ``k-spikes`` share one network (a spiking output
layer) and can be swapped at decision time; ``membrane`` and ``sigma`` cannot.

Early exit (:class:`EarlyExit`) stops a sample once the decision is confident;
see :func:`decide`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from neurocomp.errors import NeurocompError
from neurocomp.lowered import LoweredNet

READOUTS = ("membrane", "count", "first-spike", "k-spikes", "sigma", "few-spike")
SPIKING = ("count", "first-spike", "k-spikes")        # read from a spiking output layer


class ReadoutError(NeurocompError):
    """A read-out does not fit the compiled network or its arguments are invalid."""


@dataclass(frozen=True)
class EarlyExit:
    """Stop a sample at the first step where the top-1 minus top-2 normalised
    score has been at least ``margin`` for ``patience`` consecutive steps, not
    before ``min_steps`` (default: the pipeline depth + 1, when the output can
    first respond).  Normalised scores are in units of the output layer's
    calibration scale (its largest |logit| on calibration data is 1.0): the
    mean membrane charge or spike rate per step since the output could respond,
    or the decoded logit for sigma-delta."""

    margin: float = 0.1
    patience: int = 3
    min_steps: Optional[int] = None

    def __post_init__(self):
        if not self.margin >= 0 or self.patience < 1:
            raise ReadoutError(f"early exit needs margin >= 0 and patience >= 1, got margin={self.margin}, "
                               f"patience={self.patience}")


@dataclass
class Decision:
    predictions: np.ndarray      # (batch,) the decided class
    scores: np.ndarray           # (batch, n_out) at the decision step; argmax is the prediction
    winners: np.ndarray          # (batch, n_out) bool: the prediction, or every tied class (ties="all")
    steps: np.ndarray            # (batch,) step (1-based) at which each decision was taken

    @property
    def mean_steps(self) -> float:
        return float(self.steps.mean()) if self.steps.size else 0.0


def readout_of(net: LoweredNet) -> str:
    return net.meta.get("readout", "count")


def needs_states(net: LoweredNet) -> list[str]:
    """Populations whose state the read-out needs (to pass as ``record_states``)."""
    return [net.output] if net.populations[net.output].neuron.kind == "lif" else []


def _resolve(net: LoweredNet, readout: Optional[str]) -> str:
    compiled = readout_of(net)
    if readout is None or readout == compiled:
        return compiled
    if readout not in READOUTS:
        raise ReadoutError(f"unknown read-out '{readout}'; choose one of {', '.join(READOUTS)}")
    if compiled in SPIKING and readout in SPIKING:
        return readout
    if compiled in ("sigma", "few-spike") or readout in ("sigma", "few-spike"):
        raise ReadoutError(f"read-out '{readout}' does not fit this network: sigma-delta networks are read "
                           "from their Sigma decoder (read-out 'sigma') and only they are")
    raise ReadoutError(f"read-out '{readout}' does not fit a network compiled for read-out '{compiled}' "
                       f"(its output layer is built for that one); compile with readout='{readout}'")


def _vth64(net: LoweredNet) -> float:
    """Membrane charge of activation 1.0 per step at the output (its nominal threshold << 6)."""
    nominal = net.meta.get("vth_nominal", {}).get(net.output, getattr(net.populations[net.output].neuron, "vth", 1))
    return float(int(nominal) << 6) or 1.0


def _series(net: LoweredNet, res, readout: str, steps: int, skip: Optional[float] = None):
    """Per step: (tie-broken score, primary score for ties, normalised score), each (batch, steps, n);
    ``skip``: ``readout_skip`` (default the compiled one)."""
    out = net.output
    spikes = res.spikes[out][:, :steps]
    latency = net.latency_steps()
    t_eff = np.maximum(np.arange(2, steps + 2) - latency, 1).astype(np.float64)[None, :, None]
    if readout == "few-spike":
        from neurocomp.few_spike import decode_window
        k = int(net.meta["cycle_steps"])
        sig = spikes.astype(np.int64)
        win = np.array([decode_window(t + 1, k) for t in range(steps)])        # (steps, 2)
        gain = sig[:, win[:, 1]] - sig[:, win[:, 0]]
        gain = ((gain + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)     # sigma wraps at int32; the gain does not
        bias = net.populations[out].neuron.bias
        s = gain.astype(np.float64) + (0.0 if bias is None else bias)
        unit = float(net.meta.get("units", {}).get(out, 1.0)) or 1.0
        return s, s, s / unit
    if readout == "sigma":
        bias = net.populations[out].neuron.bias
        s = spikes.astype(np.float64) + (0.0 if bias is None else bias)
        unit = float(net.meta.get("units", {}).get(out, 1.0)) or 1.0
        return s, s, s / unit
    v = res.states.get(out, {}).get("v")
    v = v[:, :steps].astype(np.float64) if v is not None else np.zeros(spikes.shape)
    if skip is None:
        skip = float(net.meta.get("options", {}).get("readout_skip", 0.0))
    # normalised: per step, in units of the calibration scale (early-exit margins)
    if readout == "membrane":
        v, t_eff = _skip_transient(v, t_eff, skip, latency)
        return v, v, v / (_vth64(net) * t_eff * net.rate_scale())
    # payloads: a burst neuron's message carries several spikes (the read-out is unsigned)
    counts = np.cumsum(spikes, axis=1, dtype=np.int64).astype(np.float64)
    counts, t_eff = _skip_transient(counts, t_eff, skip, latency)
    vth64 = float(net.populations[out].neuron.vth << 6) or 1.0
    return counts + np.clip(v / vth64, -0.999, 0.999) * 0.5, counts, counts / (t_eff * net.rate_scale())


def _skip_transient(series: np.ndarray, t_eff: np.ndarray, skip: float, latency: int):
    """A cumulative (batch, steps, n) read-out series counted from the step the output's
    input arrives, less the first ``skip`` of the steps since then (``ConvertOptions.readout_skip``):
    from that step on, minus its value at the last step left out; with the steps left (``t_eff``,
    (1, steps, 1)).  Before its input arrives an output with a constant bias (Lava's plain LIF,
    NetX CUBA: ``rate``) integrates the bias alone, a head start for the classes with larger
    biases that no ANN logit holds (MNIST CNN, reset to zero: 0.9587 -> 0.9854 at L+4); a
    delayed bias integrates nothing there.  Before arrival the series is left as it is."""
    m = t_eff[0, :, 0].astype(np.int64)                   # steps since arrival, per step
    k = np.floor(max(skip, 0.0) * m + 1e-9).astype(np.int64)   # of them left out (< m; 0.29 * 100 is 28.999...)
    base = latency - 2 + k                                # index of the last step left out
    cut = (np.arange(len(m)) >= latency - 1) & (base >= 0)
    out = series.copy()
    out[:, cut] -= series[:, base[cut]]
    return out, np.maximum(m - k, 1).astype(np.float64)[None, :, None]


def first_spike_times(net: LoweredNet, res, k: int = 1) -> np.ndarray:
    """``(batch, n_out)`` step (1-based) at which each output neuron emitted its
    ``k``-th spike; 0 where it did not within the run."""
    c = np.cumsum(res.spikes[net.output], axis=1, dtype=np.int64)      # bursts: payloads
    reached = c >= k
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, 0)


def decide(net: LoweredNet, res, *, readout: Optional[str] = None, k: Optional[int] = None,
           ties: str = "first", early_exit: Optional[EarlyExit] = None,
           steps: Optional[int] = None, skip: Optional[float] = None) -> Decision:
    """The decision of every sample from a run's output spikes and membrane.

    ``readout``: default the compiled one (spiking read-outs are interchangeable);
    ``k``: spikes for ``k-spikes`` (default ``ConvertOptions.readout_k``);
    ``ties``: ``"first"`` (one winner, ties broken by membrane then index) or
    ``"all"`` (``winners`` marks every class tied on the read-out's primary
    quantity: count, arrival step, membrane or decoded value);
    ``early_exit``: an :class:`EarlyExit` rule; ``steps``: use only the first
    ``steps`` steps of the run; ``skip``: the membrane and count read-outs' ``readout_skip``
    (default the compiled one).

    Early exit is evaluated on the recorded trajectories -- the read-out at
    every step -- which is exactly what a chip watching the output online
    would decide: it stops a sample at the exit step and reports the decision
    then; the steps after it do not influence anything.
    """
    readout = _resolve(net, readout)
    if ties not in ("first", "all"):
        raise ReadoutError(f"ties must be 'first' or 'all', got '{ties}'")
    total = res.spikes[net.output].shape[1]
    steps = min(steps or total, total)
    score, primary, norm = _series(net, res, readout, steps, skip)
    batch = score.shape[0]
    t_dec = np.full(batch, steps, np.int64)
    if readout in ("first-spike", "k-spikes"):
        if early_exit is not None:
            raise ReadoutError(f"read-out '{readout}' decides at the first arrival already; "
                               "early exit applies to membrane, count and sigma")
        kk = 1 if readout == "first-spike" else int(k or net.meta.get("options", {}).get("readout_k", 3))
        if kk < 1:
            raise ReadoutError(f"k must be >= 1, got {kk}")
        # spikes before the input can have reached the output come from biases and the
        # initial membrane alone: they carry no decision, so counting starts at the latency
        early = min(max(net.latency_steps() - 1, 0), steps)
        if early:
            primary = primary - primary[:, early - 1:early]
            primary[:, :early] = 0
        arrived = primary.max(axis=2) >= kk                        # (batch, steps)
        t_dec = np.where(arrived.any(axis=1), arrived.argmax(axis=1) + 1, steps)
    elif early_exit is not None:
        t_dec = _exit_steps(norm, early_exit, net.latency_steps())
    rows = np.arange(batch)
    sc = score[rows, t_dec - 1]
    pred = sc.argmax(axis=1)
    if ties == "all":
        pm = primary[rows, t_dec - 1]
        winners = pm == pm.max(axis=1, keepdims=True)
    else:
        winners = np.zeros(sc.shape, bool)
        winners[rows, pred] = True
    return Decision(pred, sc, winners, t_dec)


def _exit_steps(norm: np.ndarray, rule: EarlyExit, latency: int) -> np.ndarray:
    batch, steps, n = norm.shape
    if n < 2:
        return np.full(batch, min(steps, rule.min_steps or latency), np.int64)
    top2 = np.sort(norm, axis=2)[:, :, -2:]
    confident = (top2[:, :, 1] - top2[:, :, 0]) >= rule.margin
    start = max(1, rule.min_steps if rule.min_steps is not None else latency)
    confident[:, :start - 1] = False
    # length of the current run of confident steps, per step
    run = np.zeros((batch, steps), np.int64)
    acc = np.zeros(batch, np.int64)
    for t in range(steps):
        acc = np.where(confident[:, t], acc + 1, 0)
        run[:, t] = acc
    done = run >= rule.patience
    return np.where(done.any(axis=1), done.argmax(axis=1) + 1, steps).astype(np.int64)


def output_values(net: LoweredNet, res, steps: int | None = None, skip: Optional[float] = None) -> np.ndarray:
    """``(batch, n_out)``: the compiled membrane or count read-out after the first
    ``steps`` steps in calibration units per step (what early-exit margins compare;
    with ``readout_skip``, default the compiled one, over the steps it keeps)."""
    readout = _resolve(net, None)
    if readout not in ("membrane", "count"):
        raise ReadoutError(f"output values are for the membrane and count read-outs, not '{readout}'")
    total = res.spikes[net.output].shape[1]
    steps = min(steps or total, total)
    return _series(net, res, readout, steps, skip)[2][:, steps - 1]


def scores(net: LoweredNet, res, steps: int | None = None) -> np.ndarray:
    """``(batch, n_out)`` scores whose argmax is the prediction, after the
    first ``steps`` steps of the run (default: all of them), for the compiled
    read-out (spike-time read-outs: at their decision step)."""
    return decide(net, res, steps=steps).scores


def predict(net: LoweredNet, res) -> np.ndarray:
    return scores(net, res).argmax(axis=1)
