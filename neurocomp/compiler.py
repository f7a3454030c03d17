"""The Python API: ``neurocomp.compile(model, hw=..., calib=...)``."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import networkx as nx
import numpy as np

from neurocomp.encoding import encode
from neurocomp.lowered import LoweredNet
from neurocomp.options import ConvertOptions
from neurocomp.pipeline import passes_for


@dataclass
class SimOutput:
    predictions: np.ndarray
    scores: np.ndarray
    result: Any                      # backends.base.SimResult
    steps: int
    backend: str

    def accuracy(self, y) -> float:
        return float((self.predictions == np.asarray(y).reshape(-1)).mean())


@dataclass
class Compiled:
    """A compiled network: the calibrated float graph, the integer network,
    the options and hardware it was made for, and what each pass noted."""

    graph: nx.DiGraph
    net: LoweredNet
    options: ConvertOptions
    hw: Any = None
    notes: dict = field(default_factory=dict)
    timings: list = field(default_factory=list)

    @property
    def latency_steps(self) -> int:
        """Pipeline depth L: steps before the output can respond."""
        return self.net.depth() + 1

    def simulate(self, x: np.ndarray, steps: int, backend: str = "event", *, record=None,
                 record_states=None) -> SimOutput:
        """Run ``x`` (float samples, the Keras model's input shape) for ``steps``."""
        from neurocomp.backends import get_backend
        from neurocomp.readout import needs_states, scores

        raster = encode(self.net, x, steps)
        states = set(needs_states(self.net)) | set(
            self.net.populations if record_states is True else (record_states or ()))
        res = get_backend(backend).run(self.net, raster, record=record, record_states=sorted(states))
        sc = scores(self.net, res)
        return SimOutput(sc.argmax(axis=1), sc, res, steps, backend)


def compile(model, calib: Optional[np.ndarray] = None, hw="loihi2", options: Optional[ConvertOptions] = None,
            on_pass: Optional[Callable[[int, int, str], None]] = None, **option_overrides) -> Compiled:
    """Compile a Keras model (object or file) or an IR graph into a spiking network.

    ``calib``: calibration inputs (a few hundred training samples) for
    threshold balancing.  ``hw``: hardware name, YAML path or config.
    Options: a ``ConvertOptions`` or its fields as keyword arguments.
    """
    from neurocomp.frontends.keras import load_keras
    from neurocomp.hw import load_hw
    from neurocomp.lower import lower
    from neurocomp.passes import PassContext, run_pipeline

    opt = options or ConvertOptions(**option_overrides)
    if option_overrides and options is not None:
        opt = options.model_copy(update=option_overrides)
    hw_cfg = load_hw(hw) if isinstance(hw, str) else hw
    g = model if isinstance(model, nx.DiGraph) else load_keras(model)
    ctx = PassContext(hw=hw_cfg, options=opt.model_dump(),
                      calib=None if calib is None else np.asarray(calib)[:opt.calib_samples])
    names = passes_for(opt)
    g = run_pipeline(g, names, ctx, on_pass=on_pass)
    t0 = time.perf_counter()
    net = lower(g, opt, hw_cfg)
    ctx.timings.append(("lower", time.perf_counter() - t0))
    return Compiled(g, net, opt, hw_cfg, ctx.notes, ctx.timings)
