"""Per-layer summary of an IR graph (the `neurocomp inspect` table)."""
from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np

from neurocomp.ir import inputs_of, topo_order
from neurocomp.ir import ops

# ops whose outputs become neuron populations once converted to spikes
_NEURON_KINDS = (ops.Input, ops.Dense, ops.Conv2D, ops.DepthwiseConv2D, ops.AvgPool2D,
                 ops.MaxPool2D, ops.GlobalAvgPool2D, ops.Add)


@dataclass
class LayerRow:
    name: str
    kind: str
    shape: tuple
    params: int
    neurons: int
    synapses: int


def layer_table(g: nx.DiGraph) -> list[LayerRow]:
    rows = []
    for n in topo_order(g):
        o = g.nodes[n]["op"]
        in_shapes = [g.nodes[p]["op"].shape for p in inputs_of(g, n)]
        neurons = int(np.prod(o.shape)) if isinstance(o, _NEURON_KINDS) else 0
        rows.append(LayerRow(n, o.kind, tuple(o.shape), o.num_params(), neurons,
                             o.synapses(in_shapes)))
    return rows
