"""Activation scales from calibration data (threshold balancing)."""
from __future__ import annotations

import warnings

import networkx as nx
import numpy as np

from neurocomp.errors import DataError
from neurocomp.ir import run_float
from .base import PassContext, graph_pass


def robust_max(a: np.ndarray, percentile: float, axis=None) -> np.ndarray:
    """Percentile of the positive values (100: the max); 1.0 where none is positive."""
    a = np.where(a > 0, a, np.nan)
    with warnings.catch_warnings():        # all-NaN channels (dead neurons) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        s = np.nanmax(a, axis=axis) if percentile >= 100 else np.nanpercentile(a, percentile, axis=axis)
    s = np.asarray(s, dtype=np.float64)
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


def _hint(g: nx.DiGraph, node: str):
    """The frontend's activation-scale hint on ``node`` (a QCFS layer's lambda), or None."""
    h = g.nodes[node].get("meta", {}).get("act_scale_hint")
    return float(h) if h is not None and np.isfinite(h) and float(h) > 0 else None


@graph_pass
def balance_thresholds(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Annotates meta.act_scale (per channel, floored at scale_floor x the layer's largest, or per layer) on every node that becomes a population, from the robust max of its calibration activations (of the average-pool stand-in for max pools when maxpool="avg"); populations merging branches (add, concatenated slices) are normalised to their own node's scale, so branches meet on one scale. Requires: ctx.calib; canonical graph (fold_batchnorm)."""
    from neurocomp.lower import calibration_graph, conversion_plan

    if ctx.calib is None:
        raise DataError("threshold balancing needs calibration inputs; pass --calib DATA.npz "
                        "(a few hundred training samples)")
    from neurocomp.options import ConvertOptions

    opt = ConvertOptions(**ctx.options)
    method = opt.normalization
    percentile = 100.0 if method == "max" else opt.percentile
    channelwise = opt.channelwise
    plans = [p for p in conversion_plan(g, opt.maxpool) if not p.aux]   # aux: the max pool's scale
    acts = run_float(calibration_graph(g, opt.maxpool), ctx.calib, keep=[p.value_node for p in plans])
    scales, hinted = {}, []
    for p in plans:
        a = acts[p.value_node]
        if p.kind == "input":
            s = robust_max(np.abs(a), 100.0)         # never clip the input
            g.nodes[p.value_node].setdefault("meta", {})["signed"] = bool(a.min() < 0)
        elif p.is_output:
            s = robust_max(np.abs(a), percentile)    # one scale: argmax must not change
        elif _hint(g, p.value_node) is not None:
            # a QCFS activation (neurocomp.training): its trained clip lambda is the scale, one for
            # the layer, so the neuron's threshold is lambda and L steps reproduce its L levels
            lam = _hint(g, p.value_node)
            s = np.full(a.shape[-1], lam) if channelwise else np.asarray(lam, dtype=np.float64)
            hinted.append(p.name)
        elif channelwise:
            s = robust_max(a.reshape(-1, a.shape[-1]), percentile, axis=0)
            s = np.maximum(s, opt.scale_floor * s.max())
        else:
            s = robust_max(a, percentile)
        g.nodes[p.value_node].setdefault("meta", {})["act_scale"] = s.tolist()
        scales[p.name] = s
    ctx.notes["balance_thresholds"] = {"method": method, "percentile": percentile,
                                       "channelwise": channelwise, "from_hint": hinted,
                                       "scales": {k: float(np.mean(v)) for k, v in scales.items()}}
    return g
