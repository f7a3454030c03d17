"""The ``neurocomp`` command line.

Every failure the user can cause ends in one line on stderr
(``error: <problem>; <fix>``) and exit code 2 -- never a traceback, unless
``--verbose`` asks for one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from neurocomp.errors import NeurocompError
from neurocomp.options import RATE_CHANNEL_SCALE_FLOOR


# piped output (CI logs, files) gets wide tables instead of rich's 80-column default
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"verbose": False, "quiet": False}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurocomp")
@click.option("--verbose", "-v", is_flag=True, help="Show library logs and tracebacks.")
@click.option("--quiet", "-q", is_flag=True, help="Print only results and errors.")
def app(verbose: bool, quiet: bool):
    """Compile trained Keras models into spiking networks for Loihi-style chips."""
    _state["verbose"], _state["quiet"] = verbose, quiet


@app.group("hw")
def hw_app():
    """List and show hardware configurations."""


def _fmt_shape(s) -> str:
    return "(" + ", ".join(str(d) for d in s) + ")"


@app.command()
@click.argument("model", type=click.Path(path_type=Path))
def inspect(model: Path):
    """Show the layers of MODEL (.keras or .h5).

    Show the model as neurocomp sees it: layer, op, output shape, parameters, neurons, synapses."""
    from neurocomp.summary import layer_table

    g = _load_model(model)
    rows = layer_table(g)
    t = Table(title=f"{g.graph.get('name', model.name)} ({model})")
    for col, just in (("layer", "left"), ("op", "left"), ("output shape", "left"),
                      ("parameters", "right"), ("neurons", "right"), ("synapses", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        t.add_row(r.name, r.kind, _fmt_shape(r.shape), f"{r.params:,}", f"{r.neurons:,}",
                  f"{r.synapses:,}")
    t.add_section()
    t.add_row("total", "", "", f"{sum(r.params for r in rows):,}",
              f"{sum(r.neurons for r in rows):,}", f"{sum(r.synapses for r in rows):,}")
    out.print(t)


@app.command("compile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="Bundle directory to write (replaced atomically).")
@click.option("--hw", default="loihi2", show_default=True, help="Hardware name (see 'hw list') or YAML path.")
@click.option("--mode", type=click.Choice(["rate", "rate-soft", "sigma-delta", "few-spike"]), default="rate",
              show_default=True, help="Neuron mode.")
@click.option("--fs-k", type=int, default=6, show_default=True,
              help="few-spike: steps per cycle (activation bits); one cycle of latency per layer.")
@click.option("--maxpool", type=click.Choice(["exact", "avg"]), default="exact", show_default=True,
              help="MaxPooling2D as an exact tree of ReLU populations or as an average pool.")
@click.option("--synapse-tau", type=float, default=1.0, show_default=True,
              help="Rate modes: synaptic low-pass time constant in steps (1: none).")
@click.option("--max-rate", type=float, default=1.0, show_default=True,
              help="Rate modes: spikes per step at the calibration scale (firing-rate scaling).")
@click.option("--rate-correction/--no-rate-correction", default=True, show_default=True,
              help="rate: correct reset-to-zero thresholds on calibration data when it helps.")
@click.option("--threshold-search/--no-threshold-search", default=True, show_default=True,
              help="rate correction: after matching mean rates, search each threshold for agreement "
              "with the quantised ANN (minutes on deep networks; off: mean matching alone).")
@click.option("--potential-correction/--no-potential-correction", default=True, show_default=True,
              help="rate with --rate-reset synapse, and rate-soft --no-signed-spikes: set each "
              "channel's initial membrane from calibration data so its rate at T = L+8 matches the "
              "quantised ANN, when it helps.")
@click.option("--avgpool-fold/--no-avgpool-fold", default=None,
              help="Fold average pools into the next conv/dense layer (default: on for rate modes).")
@click.option("--delay-biases/--no-delay-biases", default=None,
              help="Rate modes: start each layer's bias when its input first arrives (default: on).")
@click.option("--signed-spikes/--no-signed-spikes", default=None,
              help="rate-soft: -1 spikes take back spikes the integrated input no longer warrants "
              "(Loihi 2 graded spikes; default: on).")
@click.option("--spikes-per-step", type=int, default=1, show_default=True,
              help="rate-soft: most spikes a neuron sends per step, as one graded message; the "
              "calibration scale stands for that many spikes per step.")
@click.option("--weight-rounding", type=click.Choice(["optq", "nearest"]), default="optq", show_default=True,
              help="Rate modes: round weights with error feedback on calibration activations (optq) "
              "or each on its own (nearest).")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration inputs (.npz with x_train or x).")
@click.option("--steps", type=int, default=None, help="Time steps per sample for reports and simulate "
              "(default: L + 32).")
@click.option("--normalization", type=click.Choice(["percentile", "max", "spike-norm"]), default="percentile",
              show_default=True)
@click.option("--percentile", type=float, default=99.9, show_default=True)
@click.option("--channelwise/--layerwise", default=True, show_default=True,
              help="One activation scale per channel or per layer.")
@click.option("--netx/--no-netx", default=None, help="Keep the network NetX-expressible (default: on for "
              "rate with --rate-reset zero).")
@click.option("--channel-scale-floor", type=float, default=None,
              help="--channelwise: no channel's scale below this fraction of its layer's largest "
              f"(default: {RATE_CHANNEL_SCALE_FLOOR} in the rate modes and few-spike, else 0).")
@click.option("--max-steps", type=int, default=128, show_default=True,
              help="Longest run (steps) the thresholds are sized for: the membrane read-out does "
              "not saturate and --rate-reset synapse's u does not wrap within it (raised to --steps).")
@click.option("--rate-reset", type=click.Choice(["synapse", "zero"]), default=None,
              help="rate: reset by a self-inhibitory synapse on plain LIF (default) or Lava LIF's reset "
              "to zero (NetX; default with --netx or --synapse-tau).")
@click.option("--v-init", type=float, default=None, help="Initial membrane as a fraction of threshold.")
@click.option("--readout", type=click.Choice(["membrane", "count", "first-spike", "k-spikes"]), default="membrane",
              show_default=True)
@click.option("--readout-k", type=int, default=3, show_default=True, help="Spikes the k-spikes read-out waits for.")
@click.option("--readout-skip", type=float, default=0.0, show_default=True,
              help="Rate modes, membrane and count read-outs: leave out this fraction of the steps since "
              "the output's input arrived, the earliest (0.5 suits deep networks in --mode rate).")
@click.option("--encoding", type=click.Choice(["constant", "poisson", "signed-poisson", "if", "burst", "phase"]),
              default="constant", show_default=True, help="Input encoding (sigma-delta: constant only).")
@click.option("--input-bits", type=int, default=8, show_default=True)
@click.option("--trade-input-bits/--exact-input-bits", default=True, show_default=True,
              help="rate with --rate-reset synapse: use the input width of --input-bits and up to 3 "
              "fewer whose quantised network is closest to the float one on the calibration data.")
@click.option("--calib-samples", type=int, default=500, show_default=True)
def compile_cmd(model, out, hw, mode, calib, steps, normalization, percentile, channelwise, netx, v_init,
                readout, input_bits, calib_samples, readout_k=3, encoding="constant", fs_k=6,
                maxpool="exact", synapse_tau=1.0, max_rate=1.0, rate_correction=True, avgpool_fold=None,
                rate_reset=None, max_steps=128, channel_scale_floor=None, delay_biases=None,
                signed_spikes=None, weight_rounding="optq", trade_input_bits=True, spikes_per_step=1,
                readout_skip=0.0, threshold_search=True,
                potential_correction=True):
    """Compile MODEL (.keras/.h5) into a deployable bundle in OUT."""
    from pydantic import ValidationError

    from neurocomp.bundle import save_bundle
    from neurocomp.compiler import compile as compile_model
    from neurocomp.data import load_npz
    from neurocomp.errors import DataError, HardwareLimitError
    from neurocomp.hw import load_hw
    from neurocomp.options import ConvertOptions

    if out.exists() and not out.is_dir():
        raise DataError(f"output path '{out}' exists and is a file; choose a directory name with -o")
    if steps is not None and steps < 1:
        raise DataError(f"--steps must be at least 1, got {steps}; pass a positive number of time steps")
    try:
        opt = ConvertOptions(mode=mode, normalization=normalization, percentile=percentile,
                             channelwise=channelwise, netx=netx, v_init=v_init, readout=readout,
                             input_bits=input_bits, calib_samples=calib_samples, readout_k=readout_k,
                             encoding=encoding, fs_k=fs_k, maxpool=maxpool, synapse_tau=synapse_tau,
                             max_rate=max_rate, rate_correction=rate_correction, avgpool_fold=avgpool_fold,
                             rate_reset=rate_reset, max_steps=max(max_steps, steps or 0),
                             channel_scale_floor=channel_scale_floor, delay_biases=delay_biases,
                             signed_spikes=signed_spikes, weight_rounding=weight_rounding,
                             trade_input_bits=trade_input_bits, spikes_per_step=spikes_per_step,
                             readout_skip=readout_skip, threshold_search=threshold_search,
                             potential_correction=potential_correction)
    except ValidationError as e:
        err0 = e.errors()[0]
        raise DataError(f"option --{str(err0['loc'][0]).replace('_', '-')}: {err0['msg']}") from None
    from neurocomp.compiler import check_options
    check_options(opt)                  # nonsensical mode/encoding/read-out pairs fail before TensorFlow loads
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise DataError(f"the directory '{parent}' for -o {out} does not exist; create it first")
    # everything that needs no model is checked before loading it (TensorFlow takes seconds)
    log = _log()
    log.say(f"compiling {model} for {hw} ({mode}) into {out}/")
    with log.task("load hardware config") as t:
        hw_cfg = load_hw(hw)
        t.detail = hw_cfg.name
    if calib is None:
        raise DataError(f"mode '{mode}' sets thresholds from calibration data and no --calib was given; pass "
                        "--calib DATA.npz with a few hundred training inputs (array x_train or x)")
    from neurocomp.data import read_npz
    calib_arrays = read_npz(calib)
    with log.task("load model") as t:
        g = _load_model(model)
        t.detail = f"{g.graph.get('name', model.name)}, {g.number_of_nodes()} nodes"
    from neurocomp.ir import input_nodes, output_nodes
    in_shape = g.nodes[input_nodes(g)[0]]["op"].shape
    n_out = int(np.prod(g.nodes[output_nodes(g)[0]]["op"].shape))
    with log.task("load calibration data") as t:
        x_cal, y_cal = load_npz(calib, in_shape, purpose="calib", n_classes=n_out, arrays=calib_arrays)
        t.detail = f"{len(x_cal):,} samples{'' if y_cal is None else ' with labels'}"
    compiled = _compile_with_log(log, compile_model, g, x_cal, hw_cfg, opt)
    try:
        summary = save_bundle(compiled, out, x_cal, y_cal, steps=steps, log=log)
    except HardwareLimitError as e:
        msg = _one_line(e)
        if ";" not in msg:
            msg += (f"; the model does not fit '{hw_cfg.name}': choose a larger chip with --hw (see "
                    "'neurocomp hw list') or make the layer smaller")
        raise HardwareLimitError(msg) from None
    from neurocomp.report import agreement_warning

    acc, agree = summary.get("calibration"), summary.get("agreement")
    log.say(f"wrote {out}/ (latency {summary['latency_steps']} steps, {summary['cores']} cores, "
            f"{summary['chips']} chip{'s' if summary['chips'] != 1 else ''}"
            + (f", calibration accuracy {acc['snn']:.4f} at {acc['steps']} steps" if acc else
               f", agrees with the float ANN on {agree['snn']:.1%} of calibration samples at {agree['steps']} steps"
               if agree else "")
            + f"); report: {out / 'report.html'}", always=True)
    warning = agreement_warning(agree, opt.mode, opt.normalization)
    if warning:
        log.say(warning, always=True)


def _load_model(model: Path):
    """The model as an IR graph; invalid weights (NaN, infinity) are a user error
    with a fix, not an internal one."""
    from neurocomp.errors import ModelLoadError
    from neurocomp.frontends.keras import load_keras
    from neurocomp.ir.ops import IRError

    try:
        return load_keras(model)
    except ModelLoadError:
        raise
    except IRError as e:
        msg = _one_line(e)
        if "non-finite" in msg:
            raise ModelLoadError(f"model '{model}': {msg} (NaN or infinity, e.g. from diverged training); "
                                 "retrain or repair the weights and save the model again") from None
        raise ModelLoadError(f"model '{model}' cannot be converted: {msg}; check the model, or report it if "
                             "Keras runs it") from None


def _compile_with_log(log, compile_model, g, x_cal, hw_cfg, opt):
    """Run the compiler under a progress bar (one tick per pass), then print
    every pass as a timed build-log line."""
    from neurocomp.pipeline import passes_for

    n_passes = len(passes_for(opt)) + 1          # + lowering
    with log.task("compile", total=n_passes) as t:
        def on_pass(i, n, name):
            t.update(description=f"pass {i + 1}/{n + 1}: {name}", completed=i, total=n + 1)
        compiled = compile_model(g, calib=x_cal, hw=hw_cfg, options=opt, on_pass=on_pass)
        t.title = f"compile ({len(compiled.timings)} passes)"
    for k, (name, sec) in enumerate(compiled.timings):
        log.line(f"  [{k + 1}/{len(compiled.timings)}] {name}", sec,
                 f"calibrated on {min(len(x_cal), opt.calib_samples):,} samples"
                 if name in ("balance_thresholds", "spike_norm") else "")
    return compiled


@app.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help=".npz with x and y (or x_test and y_test).")
@click.option("--backend", type=click.Choice(["event", "lava", "netx", "loihi2"]), default="event",
              show_default=True)
@click.option("--steps", type=int, default=None, help="Time steps per sample (default: the bundle's).")
@click.option("--limit", type=int, default=None, help="Simulate only the first N samples.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with the results.")
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Save every population's spikes as boolean (samples, steps, neurons) arrays.")
@click.option("--encoding", type=click.Choice(["constant", "poisson", "signed-poisson", "if", "burst", "phase"]),
              default=None, help="Input encoding (default: the bundle's).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the stochastic encodings.")
@click.option("--early-exit", type=float, default=None, metavar="MARGIN",
              help="Stop a sample once the top-2 score margin stays >= MARGIN for 3 steps; reports mean_steps.")
def simulate(bundle, data, backend, steps, limit, as_json, record, encoding=None, seed=0, early_exit=None):
    """Run a compiled BUNDLE on DATA with a backend and report accuracy and spikes."""
    import json as _json
    import time

    from neurocomp.backends import get_backend
    from neurocomp.bundle import NETX, load_bundle
    from neurocomp.data import load_npz
    from neurocomp.encoding import encode
    from neurocomp.errors import DataError
    from neurocomp.readout import EarlyExit, decide, needs_states

    b = load_bundle(bundle)
    net = b.net
    steps = steps if steps is not None else int(b.summary.get("steps", b.latency_steps + 32))
    if steps < 1:
        raise DataError(f"--steps must be at least 1, got {steps}; pass a positive number of time steps")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be at least 1, got {limit}; pass a positive number of samples")
    x, y = load_npz(data, tuple(b.summary["input_shape"]), purpose="test",
                    n_classes=int(b.summary["outputs"]), limit=limit)
    if backend == "netx":
        if not (b.path / NETX).exists():
            raise DataError(f"bundle '{bundle}' has no {NETX}: {b.summary['netx'].get('reason', 'not written')}; "
                            "use --backend event or lava")
        from neurocomp.backends.netx import NetxBackend
        from neurocomp.bundle import check_file
        check_file(b.path / NETX, b.summary)
        be = NetxBackend(path=b.path / NETX)
    else:
        be = get_backend(backend)
    if record is not None and record.exists() and record.is_dir():
        raise DataError(f"--record path '{record}' is a directory; give a .npz file name")
    if record is not None and not record.parent.is_dir():
        raise DataError(f"--record: directory '{record.parent}' does not exist; create it first")
    log = _log()
    t0 = time.perf_counter()
    # every population's spikes are counted: the event simulator always counts them,
    # the Lava-based backends only for populations they record
    done = [0]          # samples encoded so far: a sample's noise depends on its index, not its chunk

    def encode_chunk(xc):
        r = encode(net, xc, steps, encoding=encoding, seed=seed, sample_offset=done[0])
        done[0] += len(xc)
        return r
    res = _run_with_progress(log, be, net, x, steps, backend, encode_chunk,
                             record="all" if record or backend != "event" else None,
                             record_states=needs_states(net))
    seconds = time.perf_counter() - t0
    decision = decide(net, res, early_exit=None if early_exit is None else EarlyExit(margin=early_exit))
    pred = decision.predictions
    spikes = float(sum(v.astype(np.int64).sum(axis=1) for v in res.spike_counts.values()).mean()) \
        if res.spike_counts else 0.0
    result = {"accuracy": None if y is None else float((pred == y).mean()), "samples": int(len(x)),
              "steps": steps, "latency_steps": b.latency_steps, "backend": backend,
              "seconds": round(seconds, 4), "sim_seconds": round(res.seconds, 4),
              "spikes_per_sample": spikes, "predictions": pred.tolist(), "mean_steps": decision.mean_steps}
    if record is not None:
        arrays = {k: (v != 0) for k, v in res.spikes.items() if k != net.input}
        tmp = record.with_name(record.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, record)
    if as_json:
        click.echo(_json.dumps(result))
        return
    t = Table(title=f"{bundle} on {backend}")
    for col in ("samples", "steps", "latency", "accuracy", "spikes/sample", "seconds"):
        t.add_column(col, justify="right")
    t.add_row(str(len(x)), str(steps), str(b.latency_steps),
              "-" if y is None else f"{result['accuracy']:.4f}", f"{spikes:,.0f}", f"{seconds:.2f}")
    out.print(t)
    if record is not None:
        out.print(f"spikes recorded to {record}")


def _log():
    """The build log / progress writer for this invocation (stderr)."""
    from neurocomp.log import BuildLog
    return BuildLog(err, quiet=_state["quiet"], verbose=_state["verbose"])


def _say(msg: str, verbose: bool = False, always: bool = False) -> None:
    """Progress on stderr (stdout stays clean for --json)."""
    _log().say(msg, verbose=verbose, always=always)


_EVENT_CHUNK = 1000      # samples per progress tick on the event simulator


def _run_with_progress(log, be, net, x, steps, backend, encode_fn, *, record, record_states):
    """``be.run`` on ``encode_fn(x)`` under a progress bar: the event simulator
    runs in chunks of samples (one tick each; samples are independent, so the
    result is the same); Lava-based backends run in one call under a spinner.
    A backend that cannot read its network file stops with one line."""
    from neurocomp.backends.base import SimResult
    from neurocomp.errors import NeurocompError

    title = f"simulate {len(x):,} samples x {steps} steps on {backend}"
    with log.task(title, total=len(x) if backend == "event" else None) as t:
        if backend != "event":
            from neurocomp.errors import BackendUnavailableError
            try:
                res = be.run(net, encode_fn(x), record=record, record_states=record_states)
            except BackendUnavailableError:
                raise
            except (NeurocompError, OSError, KeyError, ValueError) as e:
                if backend != "netx":
                    raise
                from neurocomp.bundle import BundleError
                why = _one_line(e) if isinstance(e, NeurocompError) else f"{type(e).__name__}: {_one_line(e)}"
                raise BundleError(f"network.net cannot be run by lava-dl NetX ({why[:160]}); it is corrupt or "
                                  "not from this bundle: compile the bundle again, or use --backend event or "
                                  "lava") from None
            t.detail = f"{res.seconds:.2f} s simulated"
            return res
        parts = []
        for i in range(0, len(x), _EVENT_CHUNK):
            xc = x[i:i + _EVENT_CHUNK]
            parts.append(be.run(net, encode_fn(xc), record=record, record_states=record_states))
            t.advance(len(xc))
    if len(parts) == 1:
        return parts[0]
    res = SimResult(steps=steps, samples=len(x), seconds=sum(p.seconds for p in parts),
                    synaptic_events=sum(p.synaptic_events for p in parts))
    res.spikes = {k: np.concatenate([p.spikes[k] for p in parts]) for k in parts[0].spikes}
    res.states = {k: {v: np.concatenate([p.states[k][v] for p in parts]) for v in parts[0].states[k]}
                  for k in parts[0].states}
    res.spike_counts = {k: np.concatenate([p.spike_counts[k] for p in parts]) for k in parts[0].spike_counts}
    return res


@hw_app.command("list")
def hw_list():
    """List the packaged hardware configurations."""
    from neurocomp.hw import list_hw, load_hw

    t = Table()
    t.add_column("name")
    t.add_column("description")
    for name in list_hw():
        t.add_row(name, load_hw(name).description)
    out.print(t)


@hw_app.command("show")
@click.argument("name")
def hw_show(name: str):
    """Show every number of a hardware configuration with its unit and source."""
    from neurocomp.hw import load_hw

    hw = load_hw(name)
    t = Table(title=f"{hw.name}: {hw.description}")
    t.add_column("parameter", no_wrap=True)
    t.add_column("value", no_wrap=True)
    for col in ("unit", "confirmed", "source"):
        t.add_column(col, overflow="fold")
    for path, value, unit, confirmed, source in hw.rows():
        t.add_row(path, str(value), unit, "yes" if confirmed else "[yellow]no[/]", source)
    out.print(t)


@app.command()
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("neurocomp-out/demo"),
              show_default=True, help="Where the demo writes its model, data, bundles and report.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Train on this .npz (x_train, y_train, x_test, y_test) instead of sklearn digits.")
@click.option("--mode", "modes", type=click.Choice(["rate", "rate-soft", "sigma-delta", "few-spike"]), multiple=True,
              help="Modes to compile (repeatable; default: all three).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=30, show_default=True, help="Training epochs.")
@click.option("--lava-samples", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Test samples also run on Lava and compared spike for spike.")
def demo(out_dir: Path, data, modes, epochs, lava_samples):
    """Train a small CNN on sklearn digits and run it through neurocomp (no files needed)."""
    from neurocomp.demo import MODES, run_demo

    run_demo(out_dir, console=out, quiet=_state["quiet"], data=data, modes=tuple(modes) or MODES,
             epochs=epochs, lava_samples=lava_samples, log=_log())


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the ``neurocomp`` script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args or "-v" in args
    if not verbose:
        from neurocomp.log import quiet_libraries
        quiet_libraries()
    try:
        rc = app.main(args=args, prog_name="neurocomp", standalone_mode=False)
        return int(rc or 0)
    except NeurocompError as e:
        err.print(f"error: {_one_line(e)}", markup=False)
        if verbose:
            err.print_exception()
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        err.print("error: interrupted", markup=False)
        return 130
    except click.ClickException as e:
        err.print(f"error: {_one_line(e.format_message()).rstrip('.')}; see 'neurocomp --help'",
                  markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        return 130
    except Exception as e:  # a bug in neurocomp: still one line, traceback on request
        err.print(f"error: internal error {type(e).__name__}: {_one_line(e)} "
                  "(please report it; rerun with --verbose for the traceback)", markup=False)
        if verbose:
            err.print_exception()
        return 1


if __name__ == "__main__":
    sys.exit(main())
