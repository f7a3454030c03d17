"""Turning float inputs into the input population's integer raster."""
from __future__ import annotations

import numpy as np

from neurocomp.lowered import InputNeuron, LoweredNet


def input_payloads(neuron: InputNeuron, x: np.ndarray) -> np.ndarray:
    """(batch, n) integer payloads for float samples ``x`` (batch, *shape)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1) if neuron.pre_scale is None else \
        np.asarray(x, dtype=np.float64)
    if neuron.pre_scale is not None:
        x = (x * neuron.pre_scale + neuron.pre_offset).reshape(len(x), -1)
    p = np.rint(x * neuron.payload_per_unit)
    return np.clip(p, -neuron.payload_max if neuron.signed else 0, neuron.payload_max).astype(np.int32)


def encode(net: LoweredNet, x: np.ndarray, steps: int) -> np.ndarray:
    """Raster ``(batch, steps, n_input)`` int32 for ``steps`` time steps."""
    neuron = net.populations[net.input].neuron
    p = input_payloads(neuron, x)
    raster = np.zeros((p.shape[0], steps, p.shape[1]), np.int32)
    if neuron.encoding == "constant":
        raster[:] = p[:, None, :]
    elif neuron.encoding == "delta":
        raster[:, 0] = p
    else:
        raise ValueError(f"unknown input encoding '{neuron.encoding}'")
    return raster
