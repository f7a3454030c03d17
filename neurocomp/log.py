"""Terminal output of the command line: quiet libraries, progress, a timed build log.

* :func:`quiet_libraries` keeps TensorFlow, Keras, absl, numba and Lava
  chatter off the terminal (the CLI calls it unless ``--verbose``).
* :class:`BuildLog` writes progress to stderr: a live progress bar while a
  step runs (only on a terminal), then one timed line per finished step, like
  a build log.  ``quiet`` prints only what is marked ``always``; ``verbose``
  adds the lines marked ``verbose``.  Stdout stays clean for ``--json``.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from contextlib import contextmanager
from typing import Iterator, Optional

from rich.console import Console

_NOISY_LOGGERS = ("tensorflow", "absl", "keras", "h5py", "matplotlib", "lava", "PIL", "numba", "jax",
                  "torch", "urllib3")


def quiet_libraries() -> None:
    """Silence third-party logs and warnings (call before importing them).

    Sets TensorFlow's C++ log level (``TF_CPP_MIN_LOG_LEVEL=3``, unless the
    user set it), turns Python warnings off and raises the level of the
    loggers TensorFlow, absl, Keras, h5py, matplotlib, Lava and numba use."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def fmt_seconds(s: float) -> str:
    """A duration for the build log: ``7 ms``, ``1.24 s``, ``2 min 03 s``."""
    if s < 1.0:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.2f} s"
    return f"{int(s // 60)} min {int(s % 60):02d} s"


class Task:
    """A running step of a :class:`BuildLog`: advance its bar, change its text,
    or add a detail that the finished line shows."""

    def __init__(self, log: "BuildLog", title: str, total: Optional[float]):
        self.log, self.title, self.total, self.detail = log, title, total, ""
        self._progress = None
        self._id = None

    def advance(self, n: float = 1) -> None:
        """Move the bar ``n`` units on (no-op off a terminal)."""
        if self._progress is not None:
            self._progress.update(self._id, advance=n)

    def update(self, description: Optional[str] = None, completed: Optional[float] = None,
               total: Optional[float] = None) -> None:
        """Change what the live line says, how far it is, or its total."""
        if total is not None:
            self.total = total
        if self._progress is not None:
            kw = {}
            if description is not None:
                kw["description"] = description
            if completed is not None:
                kw["completed"] = completed
            if total is not None:
                kw["total"] = total
            self._progress.update(self._id, **kw)


class BuildLog:
    """Progress and timed step lines on ``console`` (stderr).

    ``with log.task("calibration", total=n) as t: ... t.advance()`` shows a
    bar while it runs (on a terminal only) and prints ``  calibration  1.20 s``
    when it ends; ``log.line(...)`` prints a timed line for work timed
    elsewhere (e.g. each compiler pass); ``log.say(...)`` prints a message."""

    def __init__(self, console: Console, quiet: bool = False, verbose: bool = False, width: int = 46):
        self.console, self.quiet, self.verbose, self.width = console, quiet, verbose, width

    @property
    def live(self) -> bool:
        """Whether live progress bars are drawn (a terminal, not ``--quiet``)."""
        return self.console.is_terminal and not self.quiet

    def say(self, msg: str, *, verbose: bool = False, always: bool = False) -> None:
        """Print ``msg`` unless ``--quiet`` (``always`` prints anyway); ``verbose``
        lines only with ``--verbose``."""
        if self.quiet and not always:
            return
        if verbose and not self.verbose:
            return
        self.console.print(msg, markup=False, highlight=False)

    def line(self, title: str, seconds: float, detail: str = "") -> None:
        """One build-log line: ``  title ........ 12 ms  detail``."""
        text = f"  {title:<{self.width}} {fmt_seconds(seconds):>9}"
        self.say(text + (f"  {detail}" if detail else ""))

    @contextmanager
    def task(self, title: str, total: Optional[float] = None, detail: str = "") -> Iterator[Task]:
        """Run a step with a live bar (spinner when ``total`` is None); print its
        timed line when it ends without an error."""
        t = Task(self, title, total)
        t.detail = detail
        t0 = time.perf_counter()
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeElapsedColumn)
            cols = [SpinnerColumn(), TextColumn("{task.description}")]
            if total is not None:
                cols += [BarColumn(), MofNCompleteColumn()]
            cols.append(TimeElapsedColumn())
            with Progress(*cols, console=self.console, transient=True) as prog:
                t._progress, t._id = prog, prog.add_task(title, total=total)
                yield t
                t._progress = None
        else:
            yield t
        self.line(t.title, time.perf_counter() - t0, t.detail)
