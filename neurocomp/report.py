"""The compile report: what was built, where accuracy went, what it costs."""
from __future__ import annotations

from dataclasses import asdict
from typing import Optional

import numpy as np

from neurocomp.bundle import layer_rows


def map_to_cores(net, hw) -> tuple[object, dict]:
    """Partition ``net`` onto ``hw``'s cores, verify the mapping with the independent
    checker, and return ``(mapping, resources)`` for the summary and report."""
    from neurocomp.errors import HardwareLimitError
    from neurocomp.mapping import check_mapping
    from neurocomp.passes.partition_cores import partition_cores

    mapping = partition_cores(net, hw)
    problems = check_mapping(net, hw, mapping)
    if problems:
        raise HardwareLimitError(f"the core mapping failed its check ({len(problems)} problems), first: "
                                 f"{problems[0]}; please report this")
    s = mapping.summary
    per_layer = [{"name": name, "cores": int(n)} for name, n in s.get("cores_per_layer", {}).items()]
    return mapping, {"cores": int(s["cores_used"]), "chips": int(s["chips_used"]),
                     "lower_bound": int(s["lower_bound"]), "utilisation": s.get("utilisation", {}),
                     "per_layer": per_layer,
                     "method": "partition_cores, verified by check_mapping"}


def markdown(compiled, summary: dict, diagnostics: Optional[list] = None,
             accuracy: Optional[dict] = None, spikes_per_sample: Optional[float] = None) -> str:
    net = compiled.net
    opt = compiled.options
    lines = [f"# neurocomp report: {compiled.graph.graph.get('name', 'model')}", "",
             f"- hardware: **{summary['hw']}**, mode: **{opt.mode}**, normalisation: {opt.normalization}"
             f"{' (channel-wise)' if opt.channelwise else ''}, read-out: {net.meta.get('readout')}",
             f"- latency (pipeline depth L): **{summary['latency_steps']} steps**; "
             f"suggested run: {summary['steps']} steps",
             f"- neurons: {summary['neurons']:,}; cores: {summary['cores']} "
             f"({summary.get('cores_method', '')}); chips: {summary['chips']}",
             f"- NetX file: {'written (network.net)' if summary['netx']['written'] else 'not written: ' + summary['netx']['reason']}",
             f"- NIR file: {'written (network.nir)' if summary['nir']['written'] else 'not written: ' + summary['nir']['reason']}",
             ""]
    if summary["netx"].get("network_args"):
        args = ", ".join(f"{k}={v!r}" for k, v in summary["netx"]["network_args"].items())
        lines += ["Load the NetX file with "
                  f"`netx.hdf5.Network(net_config='network.net', {args})`.", ""]
    lines += ["## Layers", "",
              "| population | neuron | shape | neurons | synapses | inputs | vth | weight exp |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["layers"]:
        lines.append(f"| {r['name']} | {r['neuron']} | {tuple(r['shape'])} | {r['neurons']:,} | "
                     f"{r['synapses']:,} | {', '.join(r['inputs']) or '-'} | {r.get('vth', '-')} | "
                     f"{', '.join(map(str, r['weight_exp'])) or '-'} |")
    if accuracy:
        lines += ["", f"## Accuracy ({accuracy['samples']} labelled calibration samples, "
                  f"{accuracy['steps']} steps)", "",
                  "| float ANN | quantised ANN | SNN (event simulator) |", "|---|---|---|",
                  f"| {accuracy['ann']:.4f} | {accuracy['qann']:.4f} | {accuracy['snn']:.4f} |", "",
                  "A gap between float and quantised ANN comes from quantisation; a gap between the "
                  "quantised ANN and the SNN comes from spiking (too few steps, rate clipping)."]
    if diagnostics:
        lines += ["", "## Per-layer diagnostics", "",
                  "| population | neurons | r(ANN, SNN) | r(quantised ANN, SNN) | spikes/neuron/sample | mean value |",
                  "|---|---|---|---|---|---|"]
        for d in diagnostics:
            d = asdict(d)
            lines.append(f"| {d['population']} | {d['neurons']:,} | {d['correlation']:.4f} | "
                         f"{d['quantised_correlation']:.4f} | {d['spikes_per_neuron']:.3f} | {d['rate_mean']:.3f} |")
    if spikes_per_sample is not None:
        lines += ["", f"Mean spikes per inference: {spikes_per_sample:,.0f}"]
    res = summary.get("resources", {})
    if res:
        lines += ["", f"## Cores ({res['cores']} used, lower bound {res.get('lower_bound', '?')})", "",
                  "| population | cores |", "|---|---|"]
        for r in res["per_layer"]:
            lines.append(f"| {r['name']} | {r['cores']} |")
        util = res.get("utilisation") or {}
        if util:
            lines += ["", "Utilisation: " + ", ".join(
                f"{k} {float(v):.0%}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in util.items())]
    timings = ", ".join(f"{n} {t * 1000:.0f} ms" for n, t in compiled.timings)
    lines += ["", f"Passes: {timings}", ""]
    return "\n".join(lines)


def calibration_checks(compiled, x: np.ndarray, y: Optional[np.ndarray], steps: int, n: int = 200):
    """(diagnostics, accuracy dict or None, spikes per sample) on calibration samples."""
    from neurocomp.analysis import layer_diagnostics, quantised_ann
    from neurocomp.ir import predict

    x = x[:n]
    diags = layer_diagnostics(compiled, x, steps)
    out = compiled.simulate(x, steps)
    spikes = float(sum(v.sum(axis=1) for v in out.result.spike_counts.values()).mean())
    acc = None
    if y is not None:
        y = y[:n]
        acc = {"samples": len(x), "steps": steps,
               "ann": float((predict(compiled.graph, x).argmax(1) == y).mean()),
               "qann": float((quantised_ann(compiled.net, x)[compiled.net.output].argmax(1) == y).mean()),
               "snn": out.accuracy(y)}
    return diags, acc, spikes
