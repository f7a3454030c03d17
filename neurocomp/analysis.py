"""Where accuracy goes: the quantised ANN and per-layer ANN-vs-SNN diagnostics.

``quantised_ann`` evaluates the *integer* network as an ANN (real-valued
rates instead of spikes): the same weights, exponents, thresholds and biases,
and the same clipping of rates at one spike per step.  Comparing three
accuracies -- float ANN, quantised ANN, SNN -- shows whether a loss comes
from quantisation or from spiking.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from neurocomp import numerics as nm
from neurocomp.encoding import input_payloads
from neurocomp.lowered import FewSpikeNeuron, InputNeuron, LIFNeuron, LoweredNet, SigmaDeltaNeuron, SigmaNeuron


def connection_matrix(net: LoweredNet, c) -> sp.csr_matrix:
    """(n_src, n_dst) effective integer weights of a connection (exponent not applied)."""
    if c.kind == "dense":
        return sp.csr_matrix(c.effective_weight().T.astype(np.float64))
    from neurocomp.backends.event import conv_stamp_csr
    indptr, indices, data = conv_stamp_csr(net.populations[c.src].shape, c)
    n_dst = net.populations[c.dst].size
    return sp.csr_matrix((data.astype(np.float64), indices, indptr),
                         shape=(net.populations[c.src].size, n_dst))


def quantised_ann(net: LoweredNet, x: np.ndarray, currents: Optional[dict] = None,
                  corrected: bool = False) -> dict[str, np.ndarray]:
    """Per population, the steady-state value the spiking network approximates:
    rates (spikes per step, clipped to [0, burst]) for LIF populations, the
    output's per-step input over its threshold for a membrane read-out, and
    decoded activations (1.0 = the calibration scale) for sigma-delta and
    few-spike ones (few-spike: floored to its k bits and clipped, as the
    cycle's binary expansion).  The input population keeps its integer payloads.
    ``currents``, when given, receives each LIF population's steady per-step input.
    Rate correction (``neurocomp.rate_correction``) scales some thresholds with their
    biases: by default the values are those of the network before it (the quantised ANN,
    which separates quantisation loss from spiking loss); ``corrected``: of the network
    as it runs."""
    cycle = int(net.meta.get("cycle_steps", 1))    # few-spike: values are per-cycle payload sums
    vals: dict[str, np.ndarray] = {}
    vth_nominal = net.meta.get("vth_nominal", {})
    corrections = net.meta.get("threshold_corrections", {})
    for name, p in net.populations.items():
        n = p.neuron
        if isinstance(n, InputNeuron):
            vals[name] = input_payloads(n, x).astype(np.float64)
            continue
        z = np.zeros((len(x), p.size))
        for c in net.incoming(name):
            per = cycle if isinstance(net.populations[c.src].neuron, InputNeuron) else 1
            z += (vals[c.src] * per @ connection_matrix(net, c)) * 2.0 ** c.weight_exp
        if isinstance(n, FewSpikeNeuron):
            b = 0 if n.bias is None else np.asarray(n.bias, np.float64)
            vals[name] = np.clip(np.floor((z + b) / n.vth), 0, (1 << n.k) - 1)
        elif isinstance(n, LIFNeuron):
            if n.self_weight:        # rate_reset "synapse": no filter; the bias is an input
                if n.bias_in_mant is not None:
                    z = z + nm.binary_dense_message(n.bias_in_mant, n.bias_in_exp)
            else:
                bias = nm.lif_bias(n.bias_mant if n.bias_mant is not None else np.zeros(p.size),
                                   n.bias_exp if n.bias_exp is not None else np.zeros(p.size))
                if name in corrections and not corrected:
                    # rate correction scaled the threshold and the bias together; before it,
                    # the weights and the bias were over the nominal threshold
                    bias = bias / corrections[name]
                # a synaptic filter (du < 4095) integrates each input 4096 / (du + 1) times
                z = z * (nm.DECAY_UNITY / (int(n.du) + 1)) + bias / (1 << nm.ACT_SHIFT)
            vth = (n.vth if corrected and name in corrections else vth_nominal.get(name, n.vth)) or 1
            if currents is not None:      # per-step input in weight units, e.g. to size u's range
                currents[name] = z
            r = z / vth
            vals[name] = r if name == net.output else np.clip(r, 0.0, float(n.burst))
        elif isinstance(n, SigmaNeuron):
            vals[name] = z + (0 if n.bias is None else np.asarray(n.bias))
        elif isinstance(n, SigmaDeltaNeuron):
            scale = 1 << (n.spike_exp + n.state_exp)
            b = 0 if n.bias is None else np.asarray(n.bias) * scale
            act = z + b
            if n.act_mode == "relu":
                act = np.maximum(act, 0.0)
            vals[name] = act / (1 << n.state_exp)
    for name in net.meta.get("units", {}):                  # activation 1.0 == 1.0
        if isinstance(net.populations[name].neuron, (SigmaDeltaNeuron, SigmaNeuron, FewSpikeNeuron)):
            vals[name] = vals[name] / unit_of(net, name)
    return vals


def unit_of(net: LoweredNet, name: str) -> np.ndarray | float:
    """Payload (sigma-delta, few-spike) or sigma units per activation 1.0 of a
    population: a scalar, or one per neuron where the lowering chose one per channel."""
    u = net.meta.get("units", {}).get(name, 1.0)
    if np.ndim(u) == 0:
        return float(u)
    return np.broadcast_to(np.asarray(u, np.float64), net.populations[name].shape).reshape(-1)


def pop_depths(net: LoweredNet) -> dict[str, int]:
    """Steps from the input to each population (the step its input first arrives is depth + 1)."""
    d = {net.input: 0}
    for name in net.populations:
        for c in net.incoming(name):
            d[name] = max(d.get(name, 0), d[c.src] + 1 + c.delay)
    return d


def snn_values(net: LoweredNet, spikes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per recorded population, what its spikes encode over the run:
    rates over the steps after its input arrived (LIF), or the summed
    payloads (sigma-delta: the decoded activation)."""
    depth = pop_depths(net)
    out = {}
    for name, s in spikes.items():
        n = net.populations[name].neuron
        if isinstance(n, SigmaDeltaNeuron):
            out[name] = s.astype(np.float64).sum(axis=1) / unit_of(net, name)
        elif isinstance(n, FewSpikeNeuron) or (isinstance(n, SigmaNeuron) and "cycle_steps" in net.meta):
            # the last complete cycle (few-spike): its payloads, or the decoder's gain over it
            from neurocomp.few_spike import decode_window
            k = int(net.meta["cycle_steps"])
            t0, t1 = decode_window(s.shape[1], k)
            if isinstance(n, FewSpikeNeuron):
                t1 -= k - 1                       # this population's cycle ends earlier
                t0 = t1 - k
                v = s[:, max(t0, 0):max(t1, 0)].astype(np.float64).sum(axis=1)
            else:
                v = s[:, t1].astype(np.float64) - s[:, t0]
            out[name] = v / unit_of(net, name)
        elif isinstance(n, SigmaNeuron):
            out[name] = s[:, -1].astype(np.float64) / unit_of(net, name)
        else:
            steps = max(s.shape[1] - depth[name], 1)
            out[name] = s.astype(np.float64).sum(axis=1) / steps
    return out


@dataclass
class LayerDiagnostics:
    population: str
    neurons: int
    correlation: float          # Pearson r between ANN activation and SNN value, all neurons x samples
    quantised_correlation: float  # same, quantised ANN vs SNN
    spikes_per_neuron: float    # per sample
    rate_mean: float


def layer_diagnostics(compiled, x: np.ndarray, steps: int, backend: str = "event") -> list[LayerDiagnostics]:
    """Per population: how well the spiking values track the float ANN's normalised
    activations and the quantised ANN, and how much it spikes."""
    from neurocomp.ir import run_float
    from neurocomp.ir import inputs_of
    from neurocomp.lower import act_scale, calibration_graph, conversion_plan

    net = compiled.net
    maxpool = getattr(compiled.options, "maxpool", "exact")
    g = compiled.graph
    plans = {p.name: p for p in conversion_plan(g, maxpool)}
    keep = {p.value_node for p in plans.values()}
    keep |= {inputs_of(g, p.op_node)[0] for p in plans.values() if p.aux}
    ann = run_float(calibration_graph(g, maxpool), x, keep=sorted(keep))
    aux_vals: dict = {}
    for p in plans.values():          # a max-pool tree's populations, in the float network
        if p.aux:
            aux_vals[p.name] = p.float_value(ann, aux_vals)
    qann = quantised_ann(net, x)
    out = compiled.simulate(x, steps, backend, record="all")
    snn = snn_values(net, out.result.spikes)
    rows = []
    for name, s in out.result.spikes.items():
        if name == net.input:
            continue
        p = plans[name]
        a_f = aux_vals[name] if p.aux else ann[p.value_node]
        a = a_f.reshape(len(x), -1) / np.broadcast_to(
            act_scale(g, p.value_node), a_f.shape[1:]).reshape(-1)
        q = qann[name]
        v = snn[name]
        if name == net.output and net.meta.get("readout") == "membrane":
            v = out.scores      # the output integrates instead of spiking
        nonzero_spikes = float((s != 0).sum()) / len(x) / s.shape[2]
        rows.append(LayerDiagnostics(name, int(s.shape[2]), _corr(a, v), _corr(q, v), nonzero_spikes,
                                     float(v.mean())))
    return rows


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])
