"""The ``neurocomp`` command line.

Every failure the user can cause ends in one line on stderr
(``error: <problem>; <fix>``) and exit code 2 -- never a traceback, unless
``--verbose`` asks for one.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import click
from rich.console import Console
from rich.table import Table

from neurocomp.errors import NeurocompError


out = Console(highlight=False)
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
