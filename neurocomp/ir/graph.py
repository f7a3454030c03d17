"""The neurocomp IR container: a ``networkx.DiGraph`` of typed ops.

Node key = unique layer name; node attribute ``op`` = an ``ops.Op``.  Optional node
attribute ``meta`` = a JSON-able dict of analysis results (e.g. activation
scales from calibration); it never changes what the op computes.  Edge
attribute ``index`` = the input slot of the destination (0 for single-input
ops; order matters for ``concatenate``).  Graph attribute ``name``.

Saved as two files: ``<stem>.json`` (structure, scalar attributes) and
``<stem>.npz`` (parameter arrays keyed ``"<node>/<field>"``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import networkx as nx
import numpy as np

from neurocomp.ir.ops import Input, IRError, Op, Output, op_from_dict

FORMAT_VERSION = 1


def new_graph(name: str = "model") -> nx.DiGraph:
    g = nx.DiGraph()
    g.graph["name"] = name
    return g


def add_op(g: nx.DiGraph, name: str, op: Op, inputs: Iterable[str] = ()) -> str:
    """Add node ``name`` computing ``op`` on ``inputs`` (in order); fills ``op.shape``."""
    if name in g:
        raise IRError(f"duplicate node name '{name}'")
    inputs = list(inputs)
    for src in inputs:
        if src not in g:
            raise IRError(f"node '{name}' reads unknown node '{src}'")
    op.shape = tuple(int(d) for d in op.infer_shape([g.nodes[s]["op"].shape for s in inputs]))
    g.add_node(name, op=op)
    for i, src in enumerate(inputs):
        g.add_edge(src, name, index=i)
    return name


def op(g: nx.DiGraph, name: str) -> Op:
    return g.nodes[name]["op"]


def inputs_of(g: nx.DiGraph, name: str) -> list[str]:
    """Predecessors of ``name`` in input-slot order."""
    return [u for u, _, _ in sorted(g.in_edges(name, data="index"), key=lambda e: e[2])]


def topo_order(g: nx.DiGraph) -> list[str]:
    """Deterministic topological order (ties broken by insertion order)."""
    rank = {n: i for i, n in enumerate(g.nodes)}
    return list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))


def input_nodes(g: nx.DiGraph) -> list[str]:
    return [n for n in g.nodes if isinstance(g.nodes[n]["op"], Input)]


def output_nodes(g: nx.DiGraph) -> list[str]:
    return [n for n in g.nodes if isinstance(g.nodes[n]["op"], Output)]


def replace_input(g: nx.DiGraph, node: str, old: str, new: str) -> None:
    """Rewire ``node``'s input slot fed by ``old`` to be fed by ``new``."""
    idx = g.edges[old, node]["index"]
    g.remove_edge(old, node)
    g.add_edge(new, node, index=idx)


def bypass(g: nx.DiGraph, node: str) -> None:
    """Remove a single-input node, connecting its input to all its consumers."""
    (src,) = inputs_of(g, node)
    for dst in list(g.successors(node)):
        replace_input(g, dst, node, src)
    g.remove_node(node)


def copy_graph(g: nx.DiGraph) -> nx.DiGraph:
    """Deep copy: ops and their arrays are copied, so passes never alias."""
    import copy
    h = nx.DiGraph()
    h.graph.update(copy.deepcopy(g.graph))
    for n, d in g.nodes(data=True):
        h.add_node(n, **{k: copy.deepcopy(v) for k, v in d.items()})
    h.add_edges_from((u, v, dict(d)) for u, v, d in g.edges(data=True))
    return h


def validate(g: nx.DiGraph) -> None:
    """Check the graph is a well-formed IR; raise ``IRError`` naming the node."""
    if not nx.is_directed_acyclic_graph(g):
        raise IRError(f"graph has a cycle: {nx.find_cycle(g)}")
    if not input_nodes(g):
        raise IRError("graph has no input node")
    if not output_nodes(g):
        raise IRError("graph has no output node")
    for n in topo_order(g):
        o = g.nodes[n].get("op")
        if not isinstance(o, Op):
            raise IRError(f"node '{n}' has no op")
        preds = inputs_of(g, n)
        idx = sorted(i for _, _, i in g.in_edges(n, data="index"))
        if idx != list(range(len(preds))):
            raise IRError(f"node '{n}' ({o.kind}) has input slots {idx}, expected 0..{len(preds) - 1}")
        if o.arity is None:
            if len(preds) < 2:
                raise IRError(f"node '{n}' ({o.kind}) needs at least 2 inputs, has {len(preds)}")
        elif len(preds) != o.arity:
            raise IRError(f"node '{n}' ({o.kind}) needs {o.arity} input(s), has {len(preds)}")
        if isinstance(o, Output) and g.out_degree(n):
            raise IRError(f"output node '{n}' has consumers")
        for name, a in o.array_fields().items():
            if not np.all(np.isfinite(a)):
                raise IRError(f"node '{n}' ({o.kind}) has non-finite values in '{name}'")
        try:
            shape = tuple(o.infer_shape([g.nodes[p]["op"].shape for p in preds]))
        except IRError as e:
            raise IRError(f"node '{n}' ({o.kind}): {e}") from None
        if shape != tuple(o.shape):
            raise IRError(f"node '{n}' ({o.kind}) records shape {o.shape}, inputs give {shape}")
    dead = [n for n in g.nodes if not isinstance(g.nodes[n]["op"], Output) and g.out_degree(n) == 0]
    if dead:
        raise IRError(f"nodes {dead} feed no output")


# -- serialisation -------------------------------------------------------------

def _jsonable(v):
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def to_dicts(g: nx.DiGraph) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able structure, arrays) of a graph."""
    nodes, arrays = [], {}
    for n in g.nodes:
        o = g.nodes[n]["op"]
        entry = {"name": n, "kind": o.kind,
                 "attrs": {k: _jsonable(v) for k, v in o.scalar_fields().items()}}
        if g.nodes[n].get("meta"):
            entry["meta"] = _jsonable(g.nodes[n]["meta"])
        nodes.append(entry)
        for k, a in o.array_fields().items():
            arrays[f"{n}/{k}"] = a
    edges = [{"src": u, "dst": v, "index": int(d["index"])} for u, v, d in g.edges(data=True)]
    meta = {k: _jsonable(v) for k, v in g.graph.items()}
    return {"format": "neurocomp-ir", "version": FORMAT_VERSION, "graph": meta,
            "nodes": nodes, "edges": edges}, arrays


def from_dicts(doc: dict, arrays: dict[str, np.ndarray]) -> nx.DiGraph:
    if doc.get("format") != "neurocomp-ir":
        raise IRError("not a neurocomp IR file (missing format tag)")
    g = nx.DiGraph()
    g.graph.update(doc.get("graph", {}))
    for nd in doc["nodes"]:
        prefix = nd["name"] + "/"
        arr = {k[len(prefix):]: np.asarray(v) for k, v in arrays.items() if k.startswith(prefix)
               and "/" not in k[len(prefix):]}
        g.add_node(nd["name"], op=op_from_dict(nd["kind"], nd["attrs"], arr))
        if nd.get("meta"):
            g.nodes[nd["name"]]["meta"] = nd["meta"]
    for e in doc["edges"]:
        g.add_edge(e["src"], e["dst"], index=e["index"])
    return g


def save(g: nx.DiGraph, stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``stem.json`` and ``stem.npz``; returns both paths."""
    stem = Path(stem)
    doc, arrays = to_dicts(g)
    jp, zp = stem.with_suffix(".json"), stem.with_suffix(".npz")
    jp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    with open(zp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return jp, zp


def load(stem: str | os.PathLike) -> nx.DiGraph:
    """Read a graph written by ``save``; the result is validated."""
    stem = Path(stem)
    if stem.suffix in (".json", ".npz"):
        stem = stem.with_suffix("")
    doc = json.loads(stem.with_suffix(".json").read_text())
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    g = from_dicts(doc, arrays)
    validate(g)
    return g


def graphs_equal(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Structural and parameter equality (exact, arrays bit for bit)."""
    if list(a.nodes) != list(b.nodes) or a.graph != b.graph:
        return False
    if {(u, v, d["index"]) for u, v, d in a.edges(data=True)} != \
            {(u, v, d["index"]) for u, v, d in b.edges(data=True)}:
        return False
    for n in a.nodes:
        oa, ob = a.nodes[n]["op"], b.nodes[n]["op"]
        if type(oa) is not type(ob) or _jsonable(a.nodes[n].get("meta", {})) != \
                _jsonable(b.nodes[n].get("meta", {})):
            return False
        if {k: _jsonable(v) for k, v in oa.scalar_fields().items()} != \
                {k: _jsonable(v) for k, v in ob.scalar_fields().items()}:
            return False
        fa, fb = oa.array_fields(), ob.array_fields()
        if fa.keys() != fb.keys() or any(
                fa[k].dtype != fb[k].dtype or not np.array_equal(fa[k], fb[k]) for k in fa):
            return False
    return True
