"""Activation scales from calibration data (threshold balancing)."""
from __future__ import annotations

import networkx as nx
import numpy as np

from neurocomp.errors import DataError
from neurocomp.ir import run_float
from .base import PassContext, graph_pass


def _robust_max(a: np.ndarray, percentile: float) -> float:
    pos = a[a > 0]
    if pos.size == 0:
        return 1.0
    return float(np.percentile(pos, percentile)) if percentile < 100 else float(pos.max())


@graph_pass
def balance_thresholds(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Annotates meta.act_scale on every node that becomes a population (robust max of its calibration activations; the input uses its true max). Requires: ctx.calib; canonical graph (fold_batchnorm)."""
    from neurocomp.lower import conversion_plan

    if ctx.calib is None:
        raise DataError("threshold balancing needs calibration inputs; pass --calib DATA.npz "
                        "(a few hundred training samples)")
    percentile = float(ctx.options.get("percentile", 99.9))
    plans = conversion_plan(g)
    acts = run_float(g, ctx.calib, keep=[p.value_node for p in plans])
    scales = {}
    for p in plans:
        a = acts[p.value_node]
        s = _robust_max(a, 100.0 if p.kind == "input" else percentile)
        g.nodes[p.value_node].setdefault("meta", {})["act_scale"] = s
        scales[p.name] = s
    ctx.notes["balance_thresholds"] = {"percentile": percentile, "scales": scales}
    return g
