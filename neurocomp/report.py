"""The compile report: what was built, where accuracy went, what it costs.

Two steps, so that the numbers are computed once and written three ways:

* :func:`analyse` simulates up to ``n`` (200) calibration samples on
  the event simulator (recording every population, in chunks that bound the
  memory) and gathers everything the report shows as plain JSON-able data:
  the layer table with quantisation errors, how often the quantised ANN and
  the SNN decide as the float ANN (no labels needed; :func:`agreement_warning`
  turns a low one into the compile's warning), with labels accuracy after every time step
  (one run gives all of them: the read-out after ``T`` steps of a longer run
  is the read-out of a ``T``-step run), per-layer ANN-vs-SNN activations,
  per-neuron spike rates, the spike raster of the first sample, per-core
  resource use and the cost estimate of :func:`neurocomp.mapping.cost_report`.
* :func:`render` turns that data and the bundle summary into files:
  ``report.md``, ``report.html`` (self-contained: figures embedded as base64
  PNG), ``report.json`` (the data behind every figure and table) and
  ``figures/*.png``.

Nothing in these files depends on the clock, so the same inputs give the same
bytes (pass timings go to the terminal's build log instead).
"""
from __future__ import annotations

import base64
import html
import json
import re
from typing import Callable, Optional

import numpy as np

from neurocomp.bundle import json_default, layer_rows

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
FIGURES = "figures"
FIG_ACCURACY = f"{FIGURES}/accuracy_vs_steps.png"
FIG_SCATTER = f"{FIGURES}/ann_vs_snn.png"
FIG_RATES = f"{FIGURES}/spike_rates.png"
FIG_RASTER = f"{FIGURES}/raster.png"
FIG_CORES = f"{FIGURES}/core_utilisation.png"
RESOURCES = ("neurons", "input_axons", "output_axons", "synapse_memory_bits")
_SIM_BUDGET = 1 << 24          # recorded int32 spike values per simulated chunk (64 MB)


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
    per_layer = [{"name": name, "cores": int(n),
                  "lower_bound": int((s.get("lower_bound_per_layer", {}).get(name) or {}).get("cores", 0))}
                 for name, n in s.get("cores_per_layer", {}).items()]
    return mapping, {"cores": int(s["cores_used"]), "chips": int(s["chips_used"]),
                     "lower_bound": int(s["lower_bound"]), "utilisation": s.get("utilisation", {}),
                     "per_layer": per_layer,
                     "method": "partition_cores, verified by check_mapping"}


# -- analysis -----------------------------------------------------------------------------

def _spiking(net, name: str) -> bool:
    """Whether a population emits spikes (not the input, a Sigma decoder, or a
    membrane read-out integrator)."""
    kind = net.populations[name].neuron.kind
    if kind not in ("lif", "sigma_delta"):
        return False
    return not (name == net.output and net.meta.get("readout") == "membrane")


def _corr(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    a, b = np.asarray(a, float).reshape(-1), np.asarray(b, float).reshape(-1)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _rel_rms(q: np.ndarray, a: np.ndarray) -> Optional[float]:
    den = float(np.sqrt(np.mean(np.square(a))))
    if den == 0:
        return None
    return float(np.sqrt(np.mean(np.square(q - a))) / den)


def _avg_tree(parts: list, weights: list):
    """Weighted mean of the numeric leaves of equally-shaped dicts (first part's
    non-numeric leaves; booleans OR-ed)."""
    first = parts[0]
    if isinstance(first, dict):
        return {k: _avg_tree([p[k] for p in parts], weights) for k in first}
    if isinstance(first, bool):
        return any(parts)
    if isinstance(first, (int, float)) and not isinstance(first, bool):
        w = np.asarray(weights, float)
        v = float(np.dot(np.asarray(parts, float), w) / w.sum())
        return int(round(v)) if isinstance(first, int) and all(p == first for p in parts) else v
    return first


# the compile warns where the spiking network's decisions on calibration samples agree with the
# float ANN's less often than this (the MNIST references agree on 99-100 % at L+32)
AGREEMENT_WARN_BELOW = 0.98
# ... on at least this many samples (fewer are noise: one of 20 calibration samples is 95 %)
AGREEMENT_WARN_MIN_SAMPLES = 3
# ... and blames quantisation alone where the SNN stays this close to the quantised ANN
_NEAR_QUANTISED = 0.01


def agreement_warning(agreement: Optional[dict], mode: Optional[str] = None,
                      normalization: Optional[str] = None) -> Optional[str]:
    """A one-line warning naming where the decisions part from the float ANN's
    (``analyse``'s ``agreement``) and what to try (not the ``mode`` or ``normalization``
    already in use), or None where the SNN agrees often enough."""
    if not agreement or agreement["snn"] >= AGREEMENT_WARN_BELOW or \
            (1 - agreement["snn"]) * agreement["samples"] < AGREEMENT_WARN_MIN_SAMPLES - 1e-9:
        return None
    g = agreement
    head = (f"warning: the SNN decides as the float ANN on {g['snn']:.1%} of {g['samples']} calibration "
            f"samples after {g['steps']} steps")
    quant_fix = {"max": "try --normalization percentile",
                 "spike-norm": "try --normalization percentile or max"}.get(
        normalization, "try --normalization max or a higher --percentile")
    modes = [f"--mode {m}" for m in ("sigma-delta", "rate-soft") if m != mode]
    spike_fix = ", ".join(["more --steps"] + modes[:-1]) + (f" or {modes[-1]}" if modes else "") + " keep more"
    where = "report.html: per layer and per step"
    if g["qann"] < AGREEMENT_WARN_BELOW and g["snn"] >= g["qann"] - _NEAR_QUANTISED:
        return (f"{head}, the quantised ANN alone on {g['qann']:.1%}: the loss is in quantisation; "
                f"{quant_fix} ({where})")
    if g["qann"] < AGREEMENT_WARN_BELOW:
        return (f"{head}, the quantised ANN on {g['qann']:.1%}: the loss is in quantisation and in spiking; "
                f"{quant_fix}; {spike_fix} ({where})")
    return (f"{head} (the quantised ANN on {g['qann']:.1%}): the loss is in spiking; {spike_fix} ({where})")


def analyse(compiled, x: np.ndarray, y: Optional[np.ndarray], steps: int, mapping=None, *, n: int = 200,
            seed: int = 0, scatter_points: int = 1500,
            progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Simulate the first ``n`` samples of ``x`` for ``steps`` steps on the event
    simulator and return the report's data (JSON-able; see the module doc).

    ``agreement`` holds how often the quantised ANN's and the SNN's decisions (after the
    run and after each step) equal the float ANN's; ``y`` (labels, optional) adds
    accuracies and the accuracy-vs-steps curve;
    ``mapping`` (a core mapping) adds per-core utilisation and cost estimates.
    ``progress(done, total)`` is called after each simulated chunk.  Inputs are
    encoded and decisions read exactly as ``neurocomp simulate`` does (the
    bundle's encoding, seed 0, the compiled read-out), so every point of the
    curve is what ``simulate --steps T`` measures on the same samples.  The
    data is a deterministic function of the inputs (``seed`` picks scatter
    points)."""
    from neurocomp.analysis import pop_depths, quantised_ann, snn_values
    from neurocomp.encoding import encode
    from neurocomp.ir import output_nodes, run_float
    from neurocomp.lower import act_scale, conversion_plan

    net = compiled.net
    x = np.asarray(x)[:n]
    y = None if y is None else np.asarray(y).reshape(-1)[:n]
    ns = len(x)
    depth = pop_depths(net)
    pops = [p for p in net.populations if p != net.input]
    readout = net.meta.get("readout")

    # float ANN (activations in units of the calibration scale) and quantised ANN
    plans = {p.name: p for p in conversion_plan(compiled.graph)}
    keep = sorted({plans[p].value_node for p in pops if p in plans})
    ann_raw = run_float(compiled.graph, x, keep=keep)
    ann = {}
    for p in pops:
        if p not in plans:
            continue
        v = plans[p].value_node
        scale = np.broadcast_to(act_scale(compiled.graph, v), ann_raw[v].shape[1:]).reshape(-1)
        ann[p] = ann_raw[v].reshape(ns, -1) / scale
    qann = quantised_ann(net, x)
    ann_pred = ann_raw[output_nodes(compiled.graph)[0]].argmax(1)
    qann_pred = qann[net.output].argmax(1)

    # the spiking network, in chunks small enough to record every population
    per_sample = max(1, steps * sum(net.populations[p].size for p in pops))
    chunk = int(max(1, min(ns, _SIM_BUDGET // per_sample)))
    snn = {p: np.zeros((ns, net.populations[p].size), np.float32) for p in pops}
    events = {p: np.zeros(net.populations[p].size, np.float64) for p in pops}
    correct = np.zeros(steps, np.int64)
    agree = np.zeros(steps, np.int64)          # decisions equal to the float ANN's (no labels needed)
    spikes_total = 0.0
    costs, cost_w = [], []
    raster0 = None
    out_n = net.populations[net.output].neuron
    from neurocomp.backends import get_backend
    from neurocomp.readout import decide, needs_states, output_values
    backend = get_backend("event")
    for b0 in range(0, ns, chunk):
        xc = x[b0:b0 + chunk]
        # the input raster of each sample as 'neurocomp simulate' makes it (seed 0, its index in x)
        raster = encode(net, xc, steps, seed=0, sample_offset=b0)
        res = backend.run(net, raster, record="all", record_states=needs_states(net))
        first_pred = int(decide(net, res).predictions[0])
        vals = snn_values(net, res.spikes)
        if readout == "membrane" and out_n.kind == "lif":
            # the output integrates: its membrane per step of input (of those the read-out keeps),
            # in rate units like the other LIF layers' values (divided by rate_scale below)
            vals[net.output] = output_values(net, res) * net.rate_scale()
        for p in pops:
            snn[p][b0:b0 + len(xc)] = vals[p]
            if _spiking(net, p):
                events[p] += (res.spikes[p] != 0).sum(axis=(0, 1))
        spikes_total += float(sum(v.astype(np.int64).sum() for v in res.spike_counts.values()))
        yc = None if y is None else y[b0:b0 + len(xc)]
        for t in range(1, steps + 1):
            pred = decide(net, res, steps=t).predictions
            agree[t - 1] += int((pred == ann_pred[b0:b0 + len(xc)]).sum())
            if yc is not None:
                correct[t - 1] += int((pred == yc).sum())
        if raster0 is None:
            raster0 = {"sample": 0, "prediction": first_pred,
                       "label": None if y is None else int(y[0]), "layers": []}
            for p in pops:
                if _spiking(net, p):
                    t_idx, i_idx = np.nonzero(res.spikes[p][0])
                    raster0["layers"].append({"name": p, "neurons": int(net.populations[p].size),
                                              "t": t_idx.tolist(), "i": i_idx.tolist()})
        if mapping is not None:
            from neurocomp.mapping import cost_report
            costs.append(cost_report(net, compiled.hw, mapping, sim_result=res, steps=steps, raster=raster))
            cost_w.append(len(xc))
        if progress:
            progress(min(b0 + chunk, ns), ns)

    # per layer: the table, the scatter points, the rate histograms
    rng = np.random.default_rng(seed)
    rows = {r["name"]: r for r in layer_rows(net)}
    layers, scatter, hist = [], [], []
    rate_scale = net.rate_scale()       # LIF rates per activation 1.0 (max_rate, bursts)
    for name, r in rows.items():
        row = dict(r)
        if name in snn:
            a, s, q = ann.get(name), snn[name], qann[name]
            if net.populations[name].neuron.kind == "lif" and rate_scale != 1.0:
                s, q = s / rate_scale, q / rate_scale
            row["quant_error"] = None if a is None else _rel_rms(q, a)
            row["r_ann_snn"] = None if a is None else _corr(a, s)
            row["r_qann_snn"] = _corr(q, s)
            row["spiking"] = _spiking(net, name)
            row["spikes_per_neuron"] = float(events[name].sum() / ns / max(1, s.shape[1])) \
                if row["spiking"] else None
            row["mean_value"] = float(s.mean())
            if a is not None:
                k = min(scatter_points, a.size)
                idx = np.sort(rng.choice(a.size, size=k, replace=False))
                scatter.append({"name": name, "r": row["r_ann_snn"],
                                "ann": np.round(a.reshape(-1)[idx], 5).tolist(),
                                "snn": np.round(s.reshape(-1)[idx].astype(np.float64), 5).tolist()})
            if row["spiking"]:
                rate = events[name] / ns / max(steps - depth[name], 1)
                # bins over the range the rates use (sigma-delta layers spike in the first steps only)
                hi = float(min(1.0, np.ceil(max(float(rate.max()), 1.0 / steps) * 1.05 * 40) / 40))
                edges = np.linspace(0.0, hi, 41)
                counts, _ = np.histogram(np.clip(rate, 0, hi), bins=edges)
                hist.append({"name": name, "edges": edges.round(4).tolist(), "counts": counts.tolist(),
                             "mean_rate": float(rate.mean()), "max_rate": float(rate.max()),
                             "silent": int((events[name] == 0).sum())})
        layers.append(row)

    data = {"samples": ns, "steps": int(steps), "latency_steps": int(compiled.latency_steps),
            "mode": compiled.options.mode, "readout": readout,
            "spikes_per_sample": spikes_total / ns, "layers": layers, "scatter": scatter,
            "rate_histograms": hist, "raster": raster0, "accuracy": None, "curve": None,
            "agreement": {"samples": ns, "steps": int(steps),
                          "qann": float((qann_pred == ann_pred).mean()),
                          "snn": float(agree[-1] / ns), "per_step": [float(v) for v in agree / ns]},
            "cores": None, "costs": None}
    if y is not None:
        snn_acc = correct / ns
        data["accuracy"] = {"samples": ns, "steps": int(steps),
                            "ann": float((ann_pred == y).mean()),
                            "qann": float((qann_pred == y).mean()),
                            "snn": float(snn_acc[-1])}
        data["curve"] = {"steps": list(range(1, steps + 1)), "snn": [float(v) for v in snn_acc],
                         "ann": data["accuracy"]["ann"], "qann": data["accuracy"]["qann"],
                         "samples": ns, "source": "labelled calibration samples, event simulator"}
    if mapping is not None:
        hw = compiled.hw
        data["cores"] = {"limits": {k: int(hw.value(f"core.{k}")) for k in RESOURCES},
                         "per_core": [{"chip": int(c.chip), "core": int(c.core), "population": c.population,
                                       **{k: int(getattr(c, k)) for k in RESOURCES}} for c in mapping.cores]}
        data["costs"] = _avg_tree(costs, cost_w)
        data["costs"]["samples"] = ns
    return data


# -- rendering ----------------------------------------------------------------------------

def _f(v, fmt: str = ".4f", none: str = "-") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return none
    return format(v, fmt)


def _si(v: float, unit: str) -> str:
    for div, pre in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g} {pre}{unit}"
    return f"{v:.3g} {unit}"


def figures(data: dict, title: str = "") -> dict[str, bytes]:
    """The report's PNG figures from :func:`analyse`'s data: ``{bundle path: png}``."""
    from neurocomp import plots

    figs = {}
    if data.get("curve"):
        c = data["curve"]
        figs[FIG_ACCURACY] = plots.accuracy_curve(
            {data["mode"]: (c["steps"], c["snn"])}, ann=c["ann"], qann=c["qann"],
            latency=data["latency_steps"], marks={data["mode"]: (data["steps"], c["snn"][-1])},
            title=f"{title}: accuracy vs time steps ({c['samples']} calibration samples)")
    if data["scatter"]:
        figs[FIG_SCATTER] = plots.activation_scatter(
            [(s["name"], s["ann"], s["snn"], s["r"]) for s in data["scatter"]],
            title=f"{title}: ANN activation vs SNN value ({data['samples']} samples, {data['steps']} steps)")
    if data["rate_histograms"]:
        figs[FIG_RATES] = plots.rate_histogram(
            [(h["name"], h["edges"], h["counts"]) for h in data["rate_histograms"]],
            title=f"{title}: spike rate per neuron (mean over {data['samples']} samples)")
    if data["raster"] and data["raster"]["layers"]:
        r = data["raster"]
        lab = "" if r["label"] is None else f", label {r['label']}"
        figs[FIG_RASTER] = plots.raster([(lay["name"], lay["neurons"], lay["t"], lay["i"])
                                         for lay in r["layers"]], data["steps"],
                                        title=f"{title}: spikes of calibration sample {r['sample']} "
                                              f"(predicted {r['prediction']}{lab})")
    if data.get("cores"):
        figs[FIG_CORES] = plots.core_utilisation(data["cores"]["per_core"], data["cores"]["limits"],
                                                 title=f"{title}: core utilisation per resource "
                                                       f"({len(data['cores']['per_core'])} cores)")
    return figs


def _step_points(data: dict) -> list[int]:
    """The steps the report's per-step tables show: L, L+1, L+2, L+4 ... L+32 and the run's last."""
    L = data["latency_steps"]
    return sorted({t for t in (L, L + 1, L + 2, L + 4, L + 8, L + 16, L + 32, data["steps"])
                   if 1 <= t <= data["steps"]})


def blocks(compiled, summary: dict, data: Optional[dict], figs: dict) -> list[tuple]:
    """The report as a list of blocks (``("h1"|"h2"|"p", text)``, ``("ul", items)``,
    ``("table", header, rows)``, ``("img", path, alt)``) that both renderers share."""
    net = compiled.net
    opt = compiled.options
    name = compiled.graph.graph.get("name", "model")
    nx_ = summary["netx"]
    nir_ = summary["nir"]
    b: list[tuple] = [("h1", f"neurocomp report: {name}"), ("ul", [
        f"hardware: **{summary['hw']}**, mode: **{opt.mode}**, normalisation: {opt.normalization}"
        f"{' (channel-wise)' if opt.channelwise else ''}, read-out: {net.meta.get('readout')}",
        f"latency (pipeline depth L): **{summary['latency_steps']} steps**; suggested run: "
        f"{summary['steps']} steps",
        f"neurons: {summary['neurons']:,}; cores: {summary['cores']} ({summary.get('cores_method', '')}); "
        f"chips: {summary['chips']}",
        "NetX file: " + ("written (`network.net`)" if nx_["written"] else "not written: " + nx_["reason"]),
        "NIR file: " + ("written (`network.nir`)" if nir_["written"] else "not written: " + nir_["reason"]),
    ])]
    if nx_.get("network_args"):
        args = ", ".join(f"{k}={v!r}" for k, v in nx_["network_args"].items())
        b.append(("p", f"Load the NetX file with `netx.hdf5.Network(net_config='network.net', {args})`."))

    # layer table
    rows = data["layers"] if data else summary["layers"]
    b += [("h2", "Layers"),
          ("p", "quant. error: relative RMS error of the quantised ANN (the integer network evaluated "
                "with rates instead of spikes, rates clipped to one spike per step) against the float "
                "ANN's activations, both in units of the layer's calibration scale. r: Pearson "
                "correlation of the SNN's values with the ANN's over all neurons and samples.")]
    header = ["population", "neuron", "shape", "neurons", "synapses", "inputs", "vth", "weight exp",
              "quant. error", "r(ANN, SNN)", "r(qANN, SNN)", "spikes/neuron/sample"]
    table = []
    for r in rows:
        table.append([r["name"], r["neuron"], str(tuple(r["shape"])), f"{r['neurons']:,}",
                      f"{r['synapses']:,}", ", ".join(r["inputs"]) or "-", str(r.get("vth", "-")),
                      ", ".join(map(str, r["weight_exp"])) or "-", _f(r.get("quant_error"), ".2%"),
                      _f(r.get("r_ann_snn")), _f(r.get("r_qann_snn")), _f(r.get("spikes_per_neuron"), ".3f")])
    b.append(("table", header, table))

    if data and data.get("agreement"):
        g = data["agreement"]
        warn = agreement_warning(g, compiled.options.mode, compiled.options.normalization)
        per_step = g["per_step"]
        b += [("h2", f"Agreement with the float ANN ({g['samples']} calibration samples, {g['steps']} steps)"),
              ("table", ["quantised ANN", "SNN (event simulator)"], [[f"{g['qann']:.2%}", f"{g['snn']:.2%}"]]),
              ("table", ["steps"] + [str(t) for t in _step_points(data)],
               [["SNN agreement"] + [f"{per_step[t - 1]:.2%}" for t in _step_points(data)]]),
              ("p", "How often each decides as the float ANN does on the same samples (no labels needed), "
                    "after the whole run and after T steps of it. "
                    + (f"**{warn[len('warning: ')].upper()}{warn[len('warning: ') + 1:]}**" if warn else
                       f"At least {AGREEMENT_WARN_BELOW:.0%}: the conversion keeps the ANN's decisions."))]
    if data and data.get("accuracy"):
        a, c = data["accuracy"], data["curve"]
        b += [("h2", f"Accuracy ({a['samples']} labelled calibration samples, {a['steps']} steps)"),
              ("table", ["float ANN", "quantised ANN", "SNN (event simulator)"],
               [[f"{a['ann']:.4f}", f"{a['qann']:.4f}", f"{a['snn']:.4f}"]]),
              ("p", "A gap between float and quantised ANN comes from quantisation; a gap between the "
                    "quantised ANN and the SNN comes from spiking (too few steps, rate clipping).")]
        acc = np.asarray(c["snn"])
        near = np.nonzero(acc >= a["qann"] - 0.01)[0]
        pts = _step_points(data)
        b += [("table", ["steps"] + [str(t) for t in pts], [["SNN accuracy"] + [f"{acc[t - 1]:.4f}" for t in pts]]),
              ("p", ("The SNN first comes within 1 point of the quantised ANN after "
                     f"**{int(near[0]) + 1} steps**." if near.size else
                     f"The SNN stays more than 1 point below the quantised ANN for all {data['steps']} steps.")
               + " The curve is read from one run: the read-out after T steps of a longer run is the "
                 "read-out of a T-step run.")]
        if FIG_ACCURACY in figs:
            b.append(("img", FIG_ACCURACY, "accuracy vs time steps"))
    if data:
        b += [("h2", "ANN vs SNN activations"),
              ("p", "Per layer, a random sample of (neuron, sample) points: the float ANN's activation "
                    "(1 = the calibration scale) against what the spiking layer encodes (spike rate after "
                    "its input arrives, the decoded sigma-delta value, or the output membrane over "
                    "threshold x steps). Points on the diagonal are converted exactly.")]
        if FIG_SCATTER in figs:
            b.append(("img", FIG_SCATTER, "ANN vs SNN activation scatter"))
        b += [("h2", "Spikes"),
              ("p", f"Mean spikes (non-zero payloads) per inference: **{data['spikes_per_sample']:,.0f}** "
                    f"over {data['samples']} samples x {data['steps']} steps.")]
        if data["rate_histograms"]:
            b.append(("table", ["population", "mean spikes per neuron per step", "max", "silent neurons"],
                      [[h["name"], f"{h['mean_rate']:.4f}", f"{h['max_rate']:.4f}", f"{h['silent']:,}"]
                       for h in data["rate_histograms"]]))
        if FIG_RATES in figs:
            b.append(("img", FIG_RATES, "spike-rate histograms"))
        quiet = [r["name"] for r in data["layers"] if r.get("spiking") is False]
        if FIG_RASTER in figs:
            b.append(("p", "Spike raster of the first calibration sample (one row per neuron, layers stacked "
                           "from the first at the bottom)."
                      + (f" Not shown (they do not spike): {', '.join(quiet)} "
                         f"({'membrane read-out' if data['readout'] == 'membrane' else 'decoder'})."
                         if quiet else "")))
            b.append(("img", FIG_RASTER, "spike raster of one sample"))

    res = summary.get("resources", {})
    if res:
        b += [("h2", f"Cores ({res['cores']} used, lower bound {res.get('lower_bound', '?')}, "
                     f"{res.get('chips', summary['chips'])} chip{'s' if summary['chips'] != 1 else ''})"),
              ("table", ["population", "cores", "lower bound"],
               [[r["name"], str(r["cores"]), str(r.get("lower_bound", "-"))] for r in res["per_layer"]])]
        util = res.get("utilisation") or {}
        if util:
            b.append(("p", "Mean utilisation of the used cores: " + ", ".join(
                f"{k} {float(v):.1%}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in util.items())))
        if FIG_CORES in figs:
            b.append(("img", FIG_CORES, "core utilisation per resource"))
    if data and data.get("costs"):
        c = data["costs"]
        b += [("h2", f"Cost estimate per inference ({c['steps']} steps, {c['hw']})"),
              ("p", f"From `mapping.cost_report` with the spikes simulated on {c['samples']} calibration "
                    "samples and the per-operation costs in the hardware YAML."
                    + (f" **Unconfirmed** YAML costs used: {', '.join(c['unconfirmed'])}." if c["unconfirmed"]
                       else ""))]
        keys = ("synaptic_ops", "neuron_updates", "spikes", "inter_core_messages", "inter_chip_messages",
                "energy_pj")
        trows = [[n] + [f"{r[k]:,.0f}" for k in keys] for n, r in c["layers"].items()]
        trows.append(["**total**"] + [f"**{c['total'][k]:,.0f}**" for k in keys])
        b += [("table", ["population", "synaptic ops", "neuron updates", "spikes", "inter-core msgs",
                         "inter-chip msgs", "energy (pJ)"], trows),
              ("ul", [f"energy per inference: **{_si(c['total']['energy_pj'] * 1e-12, 'J')}**",
                      f"time per step: {_si(c['time_per_step_ns'] * 1e-9, 's')}; per inference: "
                      f"**{_si(c['time_per_inference_ns'] * 1e-9, 's')}**; to the first output "
                      f"(L = {c['latency_steps']} steps): {_si(c['first_output_ns'] * 1e-9, 's')}",
                      f"throughput: {1e9 / max(c['time_per_inference_ns'], 1e-9):,.0f} inferences/s "
                      "(one at a time)"])]
    passes = ", ".join(n for n, _ in compiled.timings)
    b += [("h2", "Build"), ("p", f"Passes: {passes}. neurocomp {summary.get('neurocomp', '')}. "
                                 "Pass timings are printed by `neurocomp compile` (kept out of the bundle, "
                                 "whose files are byte-identical for identical inputs).")]
    return b


def to_markdown(bl: list[tuple]) -> str:
    """Render blocks as GitHub markdown (images as relative links)."""
    out = []
    for blk in bl:
        kind = blk[0]
        if kind == "h1":
            out += [f"# {blk[1]}", ""]
        elif kind == "h2":
            out += [f"## {blk[1]}", ""]
        elif kind == "p":
            out += [blk[1], ""]
        elif kind == "ul":
            out += [f"- {it}" for it in blk[1]] + [""]
        elif kind == "table":
            header, rows = blk[1], blk[2]
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        elif kind == "img":
            out += [f"![{blk[2]}]({blk[1]})", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.25em;
border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}table{border-collapse:collapse;
margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}code{background:#f3f3f3;
padding:0 .2em;border-radius:3px}img{max-width:100%;border:1px solid #eee;margin:.5em 0}"""


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def to_html(bl: list[tuple], figs: dict[str, bytes], title: str) -> str:
    """Render blocks as one self-contained HTML page: figures are embedded as
    ``data:image/png;base64`` URIs, styles inline, no external references."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for blk in bl:
        kind = blk[0]
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{_inline(blk[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline(blk[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in blk[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in blk[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in blk[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "img":
            b64 = base64.b64encode(figs[blk[1]]).decode("ascii")
            out.append(f'<figure><img alt="{html.escape(blk[2])}" title="{html.escape(blk[1])}" '
                       f'src="data:image/png;base64,{b64}"></figure>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"




def render(compiled, summary: dict, data: Optional[dict]) -> dict[str, bytes]:
    """All report files for a bundle: ``{relative path: bytes}`` with
    ``report.md``, ``report.html``, ``report.json`` and ``figures/*.png``
    (only ``report.md`` and ``report.html`` when ``data`` is None)."""
    name = compiled.graph.graph.get("name", "model")
    figs = figures(data, name) if data else {}
    bl = blocks(compiled, summary, data, figs)
    files = {REPORT_MD: to_markdown(bl).encode(),
             REPORT_HTML: to_html(bl, figs, f"neurocomp report: {name}").encode()}
    if data is not None:
        files[REPORT_JSON] = (json.dumps(data, indent=1, default=json_default) + "\n").encode()
    files.update(figs)
    return files


def markdown(compiled, summary: dict, data: Optional[dict] = None) -> str:
    """``report.md`` alone (see :func:`render`)."""
    return render(compiled, summary, data)[REPORT_MD].decode()


def demo_report(results: dict, curves: dict, ann: float, samples: int, title: str) -> dict[str, bytes]:
    """The demo's own report comparing the modes: ``report.md``, ``report.html``,
    ``report.json`` and ``figures/accuracy_vs_steps.png`` with every mode's
    accuracy after each step on the test split (``curves[mode]``, steps 1..T)."""
    from neurocomp import plots

    lat = min(r["latency"] for r in results.values())
    fig = plots.accuracy_curve({m: (list(range(1, len(c) + 1)), c) for m, c in curves.items()}, ann=ann,
                               latency=lat, marks={m: (r["steps"], r["snn"]) for m, r in results.items()},
                               title=f"{title}: accuracy vs time steps ({samples} test images)")
    figs = {FIG_ACCURACY: fig}
    header = ["mode", "ANN acc", "SNN acc", "steps", "latency", "cores", "spikes/inf", "sample-steps/s",
              "x Lava", "bit-exact", "bundle report"]
    rows = [[m, f"{r['ann']:.2%}", f"{r['snn']:.2%}", str(r["steps"]), str(r["latency"]), str(r["cores"]),
             f"{r['spikes']:,.0f}", f"{r['speed']:,.0f}", f"{r['speedup']:,.0f}", "yes" if r["exact"] else "NO",
             f"`{r['bundle'].rsplit('/', 1)[-1]}/report.html`"] for m, r in results.items()]
    horizon = max(len(c) for c in curves.values())
    pts = [t for t in (lat, lat + 1, lat + 2, lat + 4, lat + 8, lat + 16, lat + 32) if t <= horizon]
    bl = [("h1", title),
          ("p", f"Every mode compiled for Loihi 2 and simulated on the event simulator on {samples} test "
                "images; a few samples also on Lava fixed_pt, compared spike for spike. Each bundle has "
                "its own report (layer table, activations, spike rates, raster, cores, costs)."),
          ("table", header, rows),
          ("h2", "Accuracy vs time steps"),
          ("table", ["mode"] + [f"T={t}" for t in pts],
           [[m] + [f"{c[t - 1]:.4f}" for t in pts] for m, c in curves.items()]),
          ("img", FIG_ACCURACY, "accuracy vs time steps for every mode")]
    data = {"samples": samples, "ann": ann, "results": results,
            "curves": {m: {"steps": list(range(1, len(c) + 1)), "snn": c} for m, c in curves.items()}}
    return {REPORT_MD: to_markdown(bl).encode(), REPORT_HTML: to_html(bl, figs, title).encode(),
            REPORT_JSON: (json.dumps(data, indent=1, default=json_default) + "\n").encode(), **figs}
