"""Backends behind one interface (``base.Backend``), found by name."""
from __future__ import annotations

from importlib import import_module

from .base import Backend, SimResult  # noqa: F401

# name -> (module, class, constructor kwargs); imported lazily (Lava is slow to import)
_REGISTRY = {
    "event": ("event", "EventBackend", {}),
    "lava": ("lava", "LavaBackend", {"tag": "fixed_pt"}),
    "lava-float": ("lava", "LavaBackend", {"tag": "floating_pt"}),
    "netx": ("netx", "NetxBackend", {}),
    "loihi2": ("lava", "LavaBackend", {"hardware": True}),
}

BACKENDS = tuple(_REGISTRY)


def get_backend(name: str) -> Backend:
    """A backend instance by name (see ``BACKENDS``)."""
    if name not in _REGISTRY:
        from neurocomp.errors import NeurocompError
        raise NeurocompError(f"unknown backend '{name}'; backends: {', '.join(BACKENDS)}")
    mod, cls, kw = _REGISTRY[name]
    return getattr(import_module(f"{__name__}.{mod}"), cls)(**kw)
