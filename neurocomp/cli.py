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
    from neurocomp.frontends.keras import load_keras
    from neurocomp.summary import layer_table

    g = load_keras(model)
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
@click.option("--mode", type=click.Choice(["rate", "rate-soft", "sigma-delta"]), default="rate",
              show_default=True, help="Neuron mode.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration inputs (.npz with x_train or x).")
@click.option("--steps", type=int, default=None, help="Time steps per sample for reports and simulate "
              "(default: L + 32).")
@click.option("--normalization", type=click.Choice(["percentile", "max", "spike-norm"]), default="percentile",
              show_default=True)
@click.option("--percentile", type=float, default=99.9, show_default=True)
@click.option("--channelwise/--layerwise", default=False, show_default=True,
              help="One activation scale per channel or per layer.")
@click.option("--netx/--no-netx", default=None, help="Keep weights NetX-expressible (default: on for rate).")
@click.option("--v-init", type=float, default=None, help="Initial membrane as a fraction of threshold.")
@click.option("--readout", type=click.Choice(["membrane", "count"]), default="membrane", show_default=True)
@click.option("--input-bits", type=int, default=8, show_default=True)
@click.option("--calib-samples", type=int, default=500, show_default=True)
def compile_cmd(model, out, hw, mode, calib, steps, normalization, percentile, channelwise, netx, v_init,
                readout, input_bits, calib_samples):
    """Compile MODEL (.keras/.h5) into a deployable bundle in OUT."""
    from pydantic import ValidationError

    from neurocomp.bundle import write_bundle
    from neurocomp.compiler import compile as compile_model
    from neurocomp.data import load_npz
    from neurocomp.errors import DataError
    from neurocomp.frontends.keras import load_keras
    from neurocomp.hw import load_hw
    from neurocomp.options import ConvertOptions
    from neurocomp.report import calibration_checks, map_to_cores, markdown

    if out.exists() and not out.is_dir():
        raise DataError(f"output path '{out}' exists and is a file; choose a directory name with -o")
    try:
        opt = ConvertOptions(mode=mode, normalization=normalization, percentile=percentile,
                             channelwise=channelwise, netx=netx, v_init=v_init, readout=readout,
                             input_bits=input_bits, calib_samples=calib_samples)
    except ValidationError as e:
        err0 = e.errors()[0]
        raise DataError(f"option --{str(err0['loc'][0]).replace('_', '-')}: {err0['msg']}") from None
    hw_cfg = load_hw(hw)
    g = load_keras(model)
    if calib is None:
        raise DataError(f"mode '{mode}' sets thresholds from data: pass --calib DATA.npz with a few hundred "
                        "training inputs (array x_train or x)")
    from neurocomp.ir import input_nodes, output_nodes
    in_shape = g.nodes[input_nodes(g)[0]]["op"].shape
    n_out = int(np.prod(g.nodes[output_nodes(g)[0]]["op"].shape))
    x_cal, y_cal = load_npz(calib, in_shape, purpose="calib", n_classes=n_out)
    _say(f"compiling {model} for {hw_cfg.name} ({mode})")
    compiled = compile_model(g, calib=x_cal, hw=hw_cfg, options=opt,
                             on_pass=lambda i, n, name: _say(f"  pass [{i + 1}/{n}] {name}", verbose=True))
    steps = steps or compiled.latency_steps + 32
    _say("  partitioning onto cores")
    mapping, res = map_to_cores(compiled.net, hw_cfg)
    _say(f"  checking on {min(200, len(x_cal))} calibration samples ({steps} steps)")
    diags, acc, spikes = calibration_checks(compiled, x_cal, y_cal, steps)
    extra = {"cores": res["cores"], "chips": res["chips"], "cores_method": res["method"], "resources": res,
             "calibration": acc, "spikes_per_sample": spikes}
    summary = write_bundle(compiled, out, steps=steps, extra_summary=extra, files={"mapping.json": mapping.to_json()},
                           report=lambda summ: markdown(compiled, summ, diags, acc, spikes),
                           log=lambda m: _say(m, always=True))
    _say(f"wrote {out}/ (latency {summary['latency_steps']} steps, {summary['cores']} cores, "
         f"{summary['chips']} chip{'s' if summary['chips'] != 1 else ''})", always=True)


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
def simulate(bundle, data, backend, steps, limit, as_json, record):
    """Run a compiled BUNDLE on DATA with a backend and report accuracy and spikes."""
    import json as _json
    import time

    from neurocomp.backends import get_backend
    from neurocomp.bundle import NETX, load_bundle
    from neurocomp.data import load_npz
    from neurocomp.encoding import encode
    from neurocomp.errors import DataError
    from neurocomp.readout import needs_states, scores

    b = load_bundle(bundle)
    net = b.net
    steps = steps or int(b.summary.get("steps", b.latency_steps + 32))
    if steps < 1:
        raise DataError(f"--steps must be positive, got {steps}")
    if limit is not None and limit < 1:
        raise DataError(f"--limit must be positive, got {limit}")
    x, y = load_npz(data, tuple(b.summary["input_shape"]), purpose="test",
                    n_classes=int(b.summary["outputs"]), limit=limit)
    if backend == "netx":
        if not (b.path / NETX).exists():
            raise DataError(f"bundle '{bundle}' has no {NETX}: {b.summary['netx'].get('reason', 'not written')}; "
                            "use --backend event or lava")
        from neurocomp.backends.netx import NetxBackend
        be = NetxBackend(path=b.path / NETX)
    else:
        be = get_backend(backend)
    if record is not None and record.exists() and record.is_dir():
        raise DataError(f"--record path '{record}' is a directory; give a .npz file name")
    _say(f"simulating {len(x)} samples x {steps} steps on {backend}")
    t0 = time.perf_counter()
    # every population's spikes are counted: the event simulator always counts them,
    # the Lava-based backends only for populations they record
    res = be.run(net, encode(net, x, steps), record="all" if record or backend != "event" else None,
                 record_states=needs_states(net))
    seconds = time.perf_counter() - t0
    pred = scores(net, res).argmax(axis=1)
    spikes = float(sum(v.astype(np.int64).sum(axis=1) for v in res.spike_counts.values()).mean()) \
        if res.spike_counts else 0.0
    result = {"accuracy": None if y is None else float((pred == y).mean()), "samples": int(len(x)),
              "steps": steps, "latency_steps": b.latency_steps, "backend": backend,
              "seconds": round(seconds, 4), "sim_seconds": round(res.seconds, 4),
              "spikes_per_sample": spikes, "predictions": pred.tolist()}
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


def _say(msg: str, verbose: bool = False, always: bool = False) -> None:
    """Progress on stderr (stdout stays clean for --json)."""
    if _state["quiet"] and not always:
        return
    if verbose and not _state["verbose"]:
        return
    err.print(msg, markup=False, highlight=False)


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
              show_default=True, help="Where the demo writes its model and bundle.")
def demo(out_dir: Path):
    """Train a small CNN on sklearn digits and run it through neurocomp (no files needed)."""
    from neurocomp.demo import run_demo

    run_demo(out_dir, console=out, quiet=_state["quiet"])


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
