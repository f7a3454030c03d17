"""The deployable bundle that ``neurocomp compile`` writes and ``simulate`` reads.

``OUT/`` holds:

* ``lowered.json`` + ``lowered.npz`` -- the integer network every backend runs;
* ``model.json`` + ``model.npz`` -- the calibrated float IR (for diagnostics);
* ``network.net`` -- lava-dl NetX HDF5, when the network is NetX-expressible;
* ``network.nir`` -- the same network as a NIR graph, when NIR can express it;
* ``mapping.json`` -- every core: chip, index, population, neuron range, axons,
  synapses, memory (checked by ``neurocomp.mapping.check_mapping``);
* ``summary.json`` -- hw, mode, latency_steps, cores, chips, layers, ...;
* ``report.md`` -- layer table, diagnostics and costs.

Writing is atomic: everything goes to a hidden sibling directory that
replaces ``OUT`` only once complete, so a failed compile leaves no ``OUT`` (or
an existing one untouched).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from neurocomp import __version__
from neurocomp.errors import NeurocompError
from neurocomp.lowered import LoweredNet

LOWERED = "lowered"
FLOAT_IR = "model"
SUMMARY = "summary.json"
REPORT = "report.md"
NETX = "network.net"
NIR = "network.nir"


class BundleError(NeurocompError):
    """A bundle directory is missing, incomplete or not a neurocomp bundle."""


@contextmanager
def atomic_dir(out: Path):
    """Yield a fresh temporary directory that becomes ``out`` on success."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BundleError(f"output path '{out}' exists and is a file; choose a directory name with -o")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise BundleError(f"parent directory '{parent}' of the output does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
        os.rename(out, old / "b")
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def layer_rows(net: LoweredNet) -> list[dict]:
    """Per population: what it is, its size, fan-in and integer parameters."""
    rows = []
    for name, p in net.populations.items():
        n = p.neuron
        conns = net.incoming(name)
        syn = 0
        for c in conns:
            if c.kind == "dense":
                syn += int(np.count_nonzero(c.effective_weight()))
            else:
                from neurocomp.analysis import connection_matrix
                syn += int(connection_matrix(net, c).nnz)
        row = {"name": name, "neuron": n.kind, "shape": list(p.shape), "neurons": p.size,
               "synapses": syn, "inputs": [c.src for c in conns],
               "connection": ",".join(sorted({c.kind for c in conns})) or "-",
               "weight_exp": [int(c.weight_exp) for c in conns]}
        if n.kind == "lif":
            row.update(vth=int(n.vth), du=int(n.du), dv=int(n.dv), reset=n.reset)
        elif n.kind == "sigma_delta":
            row.update(vth=int(n.vth), spike_exp=int(n.spike_exp), state_exp=int(n.state_exp))
        rows.append(row)
    return rows


@dataclass
class Bundle:
    path: Path
    net: LoweredNet
    summary: dict

    @property
    def latency_steps(self) -> int:
        return int(self.summary["latency_steps"])


def load_bundle(path: Path | str) -> Bundle:
    path = Path(path)
    if not path.exists():
        raise BundleError(f"bundle '{path}' does not exist; create it with 'neurocomp compile MODEL -o {path}'")
    if not path.is_dir():
        raise BundleError(f"'{path}' is not a bundle directory; pass the directory 'neurocomp compile -o' wrote")
    missing = [f for f in (SUMMARY, LOWERED + ".json", LOWERED + ".npz") if not (path / f).exists()]
    if missing:
        raise BundleError(f"'{path}' is not a complete neurocomp bundle (missing {', '.join(missing)}); "
                          "compile it again")
    try:
        summary = json.loads((path / SUMMARY).read_text())
        net = LoweredNet.load(path / LOWERED)
    except NeurocompError:
        raise
    except Exception as e:
        raise BundleError(f"bundle '{path}' is corrupt ({type(e).__name__}: {' '.join(str(e).split())[:120]}); "
                          "compile it again") from None
    return Bundle(path, net, summary)


def write_bundle(compiled, out: Path, *, steps: int, report=None, extra_summary: Optional[dict] = None,
                 files: Optional[dict] = None, log=lambda msg: None) -> dict:
    """Write every bundle file for ``compiled`` into ``out`` atomically; returns the summary.
    ``report(summary) -> str`` renders ``report.md``."""
    from neurocomp.ir import save as save_ir

    net = compiled.net
    with atomic_dir(out) as tmp:
        net.save(tmp / LOWERED)
        save_ir(compiled.graph, tmp / FLOAT_IR)
        netx_info = _write_netx(net, tmp / NETX, log)
        nir_info = _write_nir(net, tmp / NIR, log)
        summary = {
            "neurocomp": __version__,
            "hw": getattr(compiled.hw, "name", str(compiled.hw)),
            "mode": compiled.options.mode,
            "latency_steps": compiled.latency_steps,
            "steps": steps,
            "input_shape": list(net.populations[net.input].shape),
            "outputs": net.populations[net.output].size,
            "neurons": int(sum(p.size for n, p in net.populations.items() if n != net.input)),
            "options": compiled.options.model_dump(),
            "netx": netx_info,
            "nir": nir_info,
            "layers": layer_rows(net),
        }
        summary.update(extra_summary or {})
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1, default=_json_default) + "\n")
        if report is not None:
            (tmp / REPORT).write_text(report(summary))
    return summary


def _write_netx(net: LoweredNet, path: Path, log) -> dict:
    try:
        from neurocomp.backends.netx import netx_expressible, netx_network_args, write_netx
    except ImportError as e:                                   # pragma: no cover
        return {"written": False, "reason": f"NetX export unavailable ({e})"}
    ok, reason = netx_expressible(net)
    if not ok:
        log(f"network.net not written: {reason}")
        return {"written": False, "reason": reason}
    write_netx(net, path)
    return {"written": True, "file": NETX, "network_args": netx_network_args(net)}


def _write_nir(net: LoweredNet, path: Path, log) -> dict:
    try:
        from neurocomp.nir_io import nir_expressible, write_nir
    except ImportError as e:                                   # pragma: no cover
        return {"written": False, "reason": f"NIR export unavailable ({e})"}
    ok, reason = nir_expressible(net)
    if not ok:
        log(f"network.nir not written: {reason}")
        return {"written": False, "reason": reason}
    write_nir(net, path)
    return {"written": True, "file": NIR}
