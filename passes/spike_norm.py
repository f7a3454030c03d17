"""Spike-norm: thresholds from the spiking network's own input currents."""
from __future__ import annotations

import networkx as nx
import numpy as np

from neurocomp.errors import DataError
from .base import PassContext, graph_pass
from .balance_thresholds import robust_max


@graph_pass
def spike_norm(g: nx.DiGraph, ctx: PassContext) -> nx.DiGraph:
    """Rescales meta.act_scale layer by layer so each population's largest per-step input (measured in the spiking network, earlier layers already normalised) equals its threshold (Sengupta et al. 2019). Requires: balance_thresholds; ctx.calib; a rate mode."""
    from neurocomp.backends.event import EventBackend
    from neurocomp.encoding import encode
    from neurocomp.lower import conversion_plan, lower
    from neurocomp.options import ConvertOptions

    if ctx.calib is None:
        raise DataError("spike-norm needs calibration inputs; pass --calib DATA.npz")
    opt = ConvertOptions(**ctx.options)
    if opt.mode == "sigma-delta":
        raise DataError("spike-norm applies to the rate modes; use --normalization percentile "
                        "with --mode sigma-delta")
    x = np.asarray(ctx.calib)[:200]
    # a max-pool tree's populations share the pool's scale, set from its last population
    plans = [p for p in conversion_plan(g, opt.maxpool) if p.kind != "input" and not p.is_output
             and not p.aux]
    factors = {}
    for p in plans:
        # u must be the per-step input: rate_reset "synapse" integrates in u, so measure with
        # the plain reset (and the same weight format)
        net = lower(g, opt.model_copy(update={"v_init": 0.0, "rate_reset": "zero",
                                              "netx": opt.netx_weights}), ctx.hw)
        steps = net.depth() + 16
        res = EventBackend().run(net, encode(net, x, steps), record=[p.name], record_states=[p.name])
        vth = net.meta["vth_nominal"][p.name]
        # with du = 4095 the current u is exactly this step's input, << 6; the calibration
        # scale stands for rate_scale spikes per step (max_rate, bursts)
        z = res.states[p.name]["u"].astype(np.float64) / (1 << 6) / vth / opt.rate_scale
        shape = p.shape
        if opt.channelwise:
            f = robust_max(z.reshape(-1, shape[-1]) if len(shape) == 3 else
                           z.reshape(-1, int(np.prod(shape))), opt.percentile, axis=0)
        else:
            f = robust_max(z, opt.percentile)
        meta = g.nodes[p.value_node]["meta"]
        scale = np.asarray(meta["act_scale"]) * f
        if opt.channelwise:
            scale = np.maximum(scale, opt.scale_floor * scale.max())
        meta["act_scale"] = scale.tolist()
        factors[p.name] = float(np.mean(f))
    ctx.notes["spike_norm"] = {"factors": factors}
    return g
