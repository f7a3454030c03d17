"""The pass interface.

A pass is a function ``fn(graph, ctx) -> graph | None`` registered with
``@graph_pass``.  Its docstring's first line says what it changes and what it
requires.  ``run_pass`` hands it a deep copy (a pass never mutates its
caller's graph), validates the result, and records the pass name and time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import networkx as nx

from neurocomp.errors import NeurocompError
from neurocomp.ir import copy_graph, validate
from neurocomp.ir.ops import IRError


class PassError(NeurocompError):
    """A pass refused the graph; the message names the pass and the node."""


@dataclass
class PassContext:
    """What passes may read besides the graph: hardware, options, data."""

    hw: Any = None                       # neurocomp.hw.HardwareConfig
    options: dict = field(default_factory=dict)
    calib: Any = None                    # calibration inputs (numpy array)
    notes: dict = field(default_factory=dict)   # per-pass results for reports
    timings: list = field(default_factory=list)  # (pass name, seconds)


@dataclass(frozen=True)
class PassInfo:
    name: str
    fn: Callable[[nx.DiGraph, PassContext], Optional[nx.DiGraph]]

    @property
    def summary(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else ""


PASSES: dict[str, PassInfo] = {}


def graph_pass(fn):
    """Register ``fn`` as a pass under its own name."""
    if not (fn.__doc__ or "").strip():
        raise TypeError(f"pass {fn.__name__} needs a docstring saying what it changes and requires")
    PASSES[fn.__name__] = PassInfo(fn.__name__, fn)
    return fn


def run_pass(name: str, g: nx.DiGraph, ctx: PassContext, check: bool = True) -> nx.DiGraph:
    if name not in PASSES:
        raise PassError(f"unknown pass '{name}'; known passes: {', '.join(sorted(PASSES))}")
    t0 = time.perf_counter()
    h = copy_graph(g)
    out = PASSES[name].fn(h, ctx)
    h = h if out is None else out
    if check:
        try:
            validate(h)
        except IRError as e:
            raise PassError(f"pass '{name}' produced an invalid graph: {e}") from None
    ctx.timings.append((name, time.perf_counter() - t0))
    return h


def run_pipeline(g: nx.DiGraph, names: list[str], ctx: PassContext, check: bool = True,
                 on_pass: Optional[Callable[[int, int, str], None]] = None) -> nx.DiGraph:
    """Run the named passes in order; ``on_pass(i, n, name)`` is called before each."""
    for i, name in enumerate(names):
        if on_pass:
            on_pass(i, len(names), name)
        g = run_pass(name, g, ctx, check=check)
    return g
