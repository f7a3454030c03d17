"""One check shared by every test that runs a network on two backends: the
event simulator and Lava must give identical spikes and states."""
from __future__ import annotations

import numpy as np


def run_event_and_lava(net, raster):
    """``(event result, Lava result)`` of ``raster`` with every spike and state recorded."""
    from neurocomp.backends.event import EventBackend
    from neurocomp.backends.lava import LavaBackend
    ev = EventBackend().run(net, raster, record="all", record_states=True)
    lv = LavaBackend().run(net, raster, record="all", record_states=True)
    return ev, lv


def assert_identical(a, b) -> int:
    """Every recorded spike and state of two runs is equal; returns the number
    of non-zero spikes (so a caller can check the run was not silent)."""
    spiking = 0
    for pop in a.spikes:
        np.testing.assert_array_equal(a.spikes[pop], b.spikes[pop], err_msg=pop)
        for var in a.states.get(pop, {}):
            np.testing.assert_array_equal(a.states[pop][var], b.states[pop][var], err_msg=f"{pop}.{var}")
        spiking += int(np.count_nonzero(a.spikes[pop]))
    return spiking
