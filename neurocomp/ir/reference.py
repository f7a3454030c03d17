"""Float reference execution of the IR in numpy (batched, float64).

This is the oracle that calibration, diagnostics and tests compare against:
it reproduces ``keras.Model.predict`` to 1e-4 on every supported layer.
"""
from __future__ import annotations

from typing import Iterable, Optional

import networkx as nx
import numpy as np

from neurocomp.ir.graph import input_nodes, inputs_of, output_nodes, topo_order
from neurocomp.ir.ops import IRError


def run_float(g: nx.DiGraph, x: np.ndarray | dict[str, np.ndarray], *,
              keep: Optional[Iterable[str]] = None, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Evaluate ``g`` on a batch ``x`` (or ``{input_name: x}``).

    Returns ``{node: activation}`` for the output nodes, plus every node named
    in ``keep`` (``keep="all"`` keeps every node).  Evaluation runs in chunks of
    ``batch_size`` samples so memory stays bounded on large conv layers.
    """
    ins = input_nodes(g)
    feeds = x if isinstance(x, dict) else {ins[0]: x}
    if set(feeds) != set(ins):
        raise IRError(f"graph inputs are {ins}, got data for {sorted(feeds)}")
    n = len(next(iter(feeds.values())))
    for name, arr in feeds.items():
        want = tuple(g.nodes[name]["op"].shape)
        if tuple(arr.shape[1:]) != want:
            raise IRError(f"input '{name}' expects samples of shape {want}, got {tuple(arr.shape[1:])}")
    order = topo_order(g)
    wanted = set(order) if keep == "all" else set(output_nodes(g)) | set(keep or ())
    chunks: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
    for start in range(0, max(n, 1), batch_size):
        vals: dict[str, np.ndarray] = {}
        consumers_left = {k: g.out_degree(k) for k in order}
        for node in order:
            o = g.nodes[node]["op"]
            preds = inputs_of(g, node)
            if not preds:
                vals[node] = np.asarray(feeds[node][start:start + batch_size], dtype=np.float64)
            else:
                vals[node] = o.evaluate([vals[p] for p in preds])
                for p in preds:  # free activations no one needs any more
                    consumers_left[p] -= 1
                    if consumers_left[p] == 0 and p not in wanted:
                        del vals[p]
            if node in wanted:
                chunks[node].append(vals[node])
    return {k: np.concatenate(v) for k, v in chunks.items()}


def predict(g: nx.DiGraph, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Output of a single-output graph."""
    (out,) = output_nodes(g)
    return run_float(g, x, batch_size=batch_size)[out]
