"""Keeping Lava importable after numba has run (multiprocessing start method)."""


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
