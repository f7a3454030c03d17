"""The deployable bundle that ``neurocomp compile`` writes and ``simulate`` reads.

``OUT/`` holds:

* ``lowered.json`` + ``lowered.npz`` -- the integer network every backend runs;
* ``model.json`` + ``model.npz`` -- the calibrated float IR (for diagnostics);
* ``network.net`` -- lava-dl NetX HDF5, when the network is NetX-expressible;
* ``network.nir`` -- the same network as a NIR graph, when NIR can express it;
* ``mapping.json`` -- every core: chip, index, population, neuron range, axons,
  synapses, memory (checked by ``neurocomp.mapping.check_mapping``);
* ``summary.json`` -- hw, mode, latency_steps, cores, chips, layers, ...;
* ``report.md``, ``report.html`` (self-contained), ``report.json`` (the data
  behind the report) and ``figures/*.png`` -- see :mod:`neurocomp.report`.

Every file is a deterministic function of the inputs: compiling the same
model with the same data and options twice gives byte-identical bundles.

Writing is atomic: everything goes to a hidden sibling directory that
replaces ``OUT`` only once complete, so a failed compile leaves no ``OUT`` (or
an existing one untouched).
"""
from __future__ import annotations

import hashlib
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


CHECKED = (LOWERED + ".json", LOWERED + ".npz", NETX, NIR)


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, summary: dict) -> None:
    """Raise ``BundleError`` when bundle file ``path`` differs from the one
    ``summary.json`` recorded at compile time (bundles without checksums pass)."""
    want = (summary.get("checksums") or {}).get(Path(path).name)
    if want is not None and sha256(path) != want:
        raise BundleError(f"'{path}' is not the file compiled into this bundle (its checksum differs from "
                          f"{SUMMARY}: damaged, or copied from another bundle); compile the bundle again")


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


def json_default(o):
    """``json.dumps`` fallback for numpy scalars and arrays."""
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
            if n.has_reset_synapses:                              # rate_reset "synapse"
                bias_syn = 0 if n.bias_in_mant is None else int(np.count_nonzero(n.bias_in_mant))
                row.update(reset="synapse", synapses=syn + (p.size if n.self_weight else 0) + bias_syn)
        elif n.kind == "sigma_delta":
            row.update(vth=int(n.vth), spike_exp=int(n.spike_exp), state_exp=int(n.state_exp))
        elif n.kind == "few_spike":
            row.update(vth=int(n.vth), k=int(n.k))
        rows.append(row)
    return rows


@dataclass
class Bundle:
    """A loaded bundle: its directory, the integer network and ``summary.json``."""

    path: Path
    net: LoweredNet
    summary: dict

    @property
    def latency_steps(self) -> int:
        """Pipeline depth L recorded at compile time."""
        return int(self.summary["latency_steps"])


_SUMMARY_KEYS = ("hw", "mode", "latency_steps", "input_shape", "outputs", "layers")


def load_bundle(path: Path | str) -> Bundle:
    """Load the bundle directory ``path`` that ``neurocomp compile -o`` wrote;
    a missing, incomplete, corrupt or foreign directory is a one-line
    ``BundleError`` saying how to fix it."""
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
    except Exception as e:
        raise BundleError(f"bundle '{path}': {SUMMARY} is not valid JSON ({type(e).__name__}); "
                          "compile the bundle again") from None
    if not isinstance(summary, dict) or any(k not in summary for k in _SUMMARY_KEYS):
        have = sorted(summary) if isinstance(summary, dict) else type(summary).__name__
        raise BundleError(f"'{path}' is not a neurocomp bundle ({SUMMARY} lacks "
                          f"{', '.join(k for k in _SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary)}"
                          f"; found {have}); compile the model with 'neurocomp compile MODEL -o {path}'")
    for f in (LOWERED + ".json", LOWERED + ".npz"):
        check_file(path / f, summary)
    try:
        net = LoweredNet.load(path / LOWERED)
        net.validate()
        shape = list(net.populations[net.input].shape)
        outputs = int(net.populations[net.output].size)
    except NeurocompError:
        raise
    except Exception as e:
        raise BundleError(f"bundle '{path}' is corrupt: {LOWERED}.json/.npz cannot be loaded "
                          f"({type(e).__name__}: {' '.join(str(e).split())[:120]}); compile it again") from None
    if list(summary["input_shape"]) != shape or int(summary["outputs"]) != outputs:
        raise BundleError(f"bundle '{path}' is inconsistent: {SUMMARY} describes input {summary['input_shape']} "
                          f"and {summary['outputs']} outputs but {LOWERED}.json has {shape} and {outputs}; "
                          "compile it again")
    return Bundle(path, net, summary)


def write_bundle(compiled, out: Path, *, steps: int, report=None, extra_summary: Optional[dict] = None,
                 files: Optional[dict] = None, log=lambda msg: None) -> dict:
    """Write every bundle file for ``compiled`` into ``out`` atomically; returns the summary.

    ``report(summary)`` returns the report files as ``{relative path: bytes or
    str}`` (a plain string is ``report.md``); ``files`` adds more text files
    (e.g. ``mapping.json``); ``log`` receives one-line notes (e.g. why
    ``network.net`` was not written)."""
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
        # lets 'simulate' tell a corrupt, mixed or foreign file from the one compiled here
        summary["checksums"] = {f: sha256(tmp / f) for f in CHECKED if (tmp / f).exists()}
        (tmp / SUMMARY).write_text(json.dumps(summary, indent=1, default=json_default) + "\n")
        if report is not None:
            rep = report(summary)
            for rel, content in ({REPORT: rep} if isinstance(rep, str) else rep).items():
                p = tmp / rel
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return summary


def save_bundle(compiled, out: Path | str, x=None, y=None, *, steps: Optional[int] = None,
                report_samples: int = 200, log=None) -> dict:
    """Partition ``compiled`` onto its hardware's cores, analyse it on the first
    ``report_samples`` of ``x`` (labels ``y`` optional: they add accuracies and
    the accuracy-vs-steps curve) and write the whole bundle -- networks,
    mapping, summary and report -- into ``out`` atomically.  Returns the
    summary.  ``steps`` defaults to L + 32 (L + 8 for sigma-delta is plenty, but
    one default keeps bundles comparable).  ``log``: a
    :class:`neurocomp.log.BuildLog` for progress (silent by default)."""
    from rich.console import Console

    from neurocomp.log import BuildLog
    from neurocomp.report import analyse, map_to_cores, render

    log = log or BuildLog(Console(stderr=True), quiet=True)
    steps = int(steps or compiled.latency_steps + 32)
    with log.task("partition onto cores") as t:
        mapping, res = map_to_cores(compiled.net, compiled.hw)
        t.detail = f"{res['cores']} cores, {res['chips']} chip{'s' if res['chips'] != 1 else ''}"
    data = None
    if x is not None:
        n = min(report_samples, len(x))
        with log.task(f"report: simulate {n} samples x {steps} steps", total=n) as t:
            data = analyse(compiled, x, y, steps, mapping, n=n,
                           progress=lambda done, total: t.update(completed=done))
            t.detail = (f"SNN accuracy {data['accuracy']['snn']:.4f}" if data["accuracy"] else
                        f"SNN agrees with the float ANN on {data['agreement']['snn']:.1%}")
    extra = {"cores": res["cores"], "chips": res["chips"], "cores_method": res["method"], "resources": res}
    if data is not None:
        extra.update(calibration=data["accuracy"], spikes_per_sample=data["spikes_per_sample"],
                     agreement={k: v for k, v in data["agreement"].items() if k != "per_step"})
    with log.task("write bundle and report") as t:
        summary = write_bundle(compiled, Path(out), steps=steps, extra_summary=extra,
                               files={"mapping.json": mapping.to_json()},
                               report=lambda summ: render(compiled, summ, data),
                               log=lambda m: log.say(m, always=True))
        t.detail = str(out)
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
