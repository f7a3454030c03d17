"""From simulation results to class scores and predictions."""
from __future__ import annotations

import numpy as np

from neurocomp.lowered import LoweredNet

READOUTS = ("membrane", "count", "sigma")


def needs_states(net: LoweredNet) -> list[str]:
    """Populations whose state the read-out needs (to pass as ``record_states``)."""
    return [net.output] if net.meta.get("readout", "count") in ("membrane", "count") \
        and net.populations[net.output].neuron.kind == "lif" else []


def scores(net: LoweredNet, res, steps: int | None = None) -> np.ndarray:
    """``(batch, n_out)`` scores whose argmax is the prediction, after the
    first ``steps`` steps of the run (default: all of them).

    * ``membrane``: the output layer never spikes; its final membrane
      potential is the integrated input (the ANN's logit times the steps).
    * ``count``: spike counts, ties broken by the final membrane potential.
    * ``sigma``: sigma-delta: the output Sigma decoder's value at the last
      step (the decoded logit) plus its bias.
    """
    mode = net.meta.get("readout", "count")
    steps = steps or res.spikes[net.output].shape[1]
    spikes = res.spikes[net.output][:, :steps].astype(np.int64)
    if mode == "sigma":
        bias = net.populations[net.output].neuron.bias
        return spikes[:, steps - 1].astype(np.float64) + (0.0 if bias is None else bias)
    v = res.states.get(net.output, {}).get("v")
    v_last = v[:, steps - 1].astype(np.float64) if v is not None else np.zeros(spikes.shape[::2])
    if mode == "membrane":
        return v_last
    vth64 = float(net.populations[net.output].neuron.vth << 6) or 1.0
    return spikes.sum(axis=1) + np.clip(v_last / vth64, -0.999, 0.999) * 0.5


def predict(net: LoweredNet, res) -> np.ndarray:
    return scores(net, res).argmax(axis=1)
