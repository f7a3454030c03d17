"""The backend interface: every backend runs a ``LoweredNet`` on an integer
input raster and returns the same ``SimResult`` structure, so results from
different backends can be compared array for array."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

import numpy as np

from neurocomp.lowered import LoweredNet

# State variables each neuron kind exposes for recording (post-update, post-reset).
STATE_VARS = {"lif": ("u", "v"), "sigma_delta": ("sigma", "act", "residue"), "sigma": ("sigma",),
              "few_spike": ("fx", "v")}


@dataclass
class SimResult:
    """Spikes (payloads; 0/1 for binary neurons) and optionally states,
    each ``(batch, steps, neurons)`` int32 in the population's flat order."""

    spikes: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # spikes (non-zero payloads) per sample and step, summed over each population's
    # neurons: (batch, steps) for every non-input population, recorded or not
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    synaptic_events: int = 0      # spikes x synapses they reach, summed over the run (0: not counted)
    seconds: float = 0.0          # wall time of the simulation proper
    steps: int = 0
    samples: int = 0


class Backend(Protocol):
    name: str

    def run(self, net: LoweredNet, raster: np.ndarray, *, record: Optional[Iterable[str]] = None,
            record_states: bool = False) -> SimResult:
        """Simulate ``raster`` (``(batch, steps, n_input)`` int32, the input
        population's emissions per step).  ``record``: population names whose
        spikes to return (default: the output only; ``"all"``: every one).
        ``record_states``: True for every population's state variables, or
        an iterable of population names."""
        ...


def record_set(net: LoweredNet, record) -> list[str]:
    if record == "all":
        return [p for p in net.populations if p != net.input]
    names = list(record or [])
    if net.output not in names:
        names.append(net.output)
    unknown = [n for n in names if n not in net.populations]
    if unknown:
        raise KeyError(f"unknown populations {unknown}")
    return names


def state_set(net: LoweredNet, record_states) -> set:
    """Population names whose state variables to record."""
    if record_states is True or record_states == "all":
        names = set(net.populations)
    elif not record_states:
        names = set()
    else:
        names = set(record_states)
        unknown = names - set(net.populations)
        if unknown:
            raise KeyError(f"unknown populations {sorted(unknown)}")
    return {n for n in names if net.populations[n].neuron.kind in STATE_VARS}
