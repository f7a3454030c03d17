"""Living with Lava's fork-started processes: its start method, and the
inherited heap."""

import gc
from contextlib import contextmanager


def allow_lava_start_method() -> None:
    """Lava's runtime calls ``multiprocessing.set_start_method('fork')`` when it
    is first imported and fails if a start method is already fixed -- which
    numba's parallel layer does (to 'fork') the first time the event simulator
    runs.  Same method, so un-fix it before Lava's import (Python 3.10's
    ``DefaultContext``)."""
    import multiprocessing as mp
    import sys
    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    ctx = mp.context._default_context
    if getattr(ctx, "_actual_context", None) is not None and ctx.get_start_method() == "fork":
        ctx._actual_context = None


@contextmanager
def frozen_heap():
    """Collect, then freeze every object the garbage collector tracks while Lava
    forks its processes (runtime service, process models, shared-memory manager).

    A forked child inherits the parent's uncollected cyclic garbage, and its
    first full collection runs those objects' finalizers -- for TensorFlow's
    tensors and functions that is C++ code taking mutexes that parent threads
    (TF's thread pools) held or waited on at the fork, which does not exist
    in the child: it segfaults or aborts (``[mutex.cc] Check w->waitp->cond ==
    nullptr failed``), and Lava reports a dead process.  Frozen objects are
    never examined by a collection, in the parent or in the children forked
    meanwhile; the parent unfreezes when the forks are done."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
