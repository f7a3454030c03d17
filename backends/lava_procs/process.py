"""Custom Lava processes for neuron modes Lava does not ship.

``LIFSoftReset``: Lava's CUBA LIF with reset by subtraction
(``v -= vth << 6`` on a spike instead of ``v = 0``).  Its ``fixed_pt``
model is Lava's bit-accurate LIF with only the reset changed, so the
event simulator's ``reset="subtract"`` is its exact twin.  On a chip it
needs a Loihi 2 microcoded neuron (Loihi 1 compartments reset to zero), and
NetX cannot express it.
"""
from lava.proc.lif.process import LIF


class LIFSoftReset(LIF):
    """LIF whose membrane is reduced by the threshold on a spike (soft reset)."""
