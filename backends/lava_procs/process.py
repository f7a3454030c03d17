"""Custom Lava processes for neuron modes Lava does not ship.

``LIFSoftReset``: Lava's CUBA LIF with reset by subtraction
(``v -= vth << 6`` on a spike instead of ``v = 0``).  Its ``fixed_pt``
model is Lava's bit-accurate LIF with only the reset changed, so the
event simulator's ``reset="subtract"`` is its exact twin.  On a chip it
needs a Loihi 2 microcoded neuron (Loihi 1 compartments reset to zero), and
NetX cannot express it.

``FewSpike``: the few-spike ReLU neuron (``neurocomp.lowered.FewSpikeNeuron``:
k-step cycles, a latched input, binary-expansion spikes with graded
payloads).  Its ``fixed_pt`` model is the event simulator's twin; on a chip
it needs a Loihi 2 microcoded neuron.
"""
import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.proc.lif.process import LIF


class LIFSoftReset(LIF):
    """LIF whose membrane is reduced by the threshold on a spike (soft reset),
    and whose bias joins only from step ``bias_onset`` (0-based) on: the step a
    layer's input first arrives (``neurocomp.lowered`` delayed biases).  With
    ``signed``, a neuron whose net spike count ``count`` is positive and whose
    membrane falls below zero sends a -1 spike and gets its threshold back
    (``neurocomp.lowered.LIFNeuron.signed``; graded payloads on Loihi 2).  With
    ``burst`` b > 1 one step's payload carries up to b thresholds (and a signed
    neuron takes back up to b at once; ``neurocomp.lowered.LIFNeuron.burst``)."""

    def __init__(self, *, shape, bias_onset: int = 0, signed: bool = False, burst: int = 1, **kwargs):
        super().__init__(shape=shape, **kwargs)
        self.burst = Var(shape=(1,), init=int(burst))
        self.bias_onset = Var(shape=(1,), init=int(bias_onset))
        self.steps_run = Var(shape=(1,), init=0)     # since the last reset; saturates at bias_onset
        self.signed = Var(shape=(1,), init=int(signed))
        self.count = Var(shape=shape, init=0)        # net spikes since the last reset (signed)


class FewSpike(AbstractProcess):
    """Few-spike ReLU neurons with a k-step cycle (see module docstring)."""

    def __init__(self, *, shape, k: int, vth: int, bias=0, **kwargs):
        super().__init__(shape=shape, k=k, vth=vth, bias=bias, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.fx = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.bias = Var(shape=shape, init=bias)
        self.cycle_step = Var(shape=(1,), init=0)   # not "phase": Lava models use that name
        self.k = Var(shape=(1,), init=k)
        self.vth = Var(shape=(1,), init=vth)
