"""Fixed- and floating-point models of the custom processes in ``process.py``."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from neurocomp.backends.lava_procs.process import LIFSoftReset  # absolute: Lava imports this file alone

@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifSoftResetModelBitAcc(AbstractPyLifModelFixed):
    """Bit-accurate LIF (lava-nc 0.10.0 ``PyLifModelBitAcc``, which Lava does not
    let us subclass) with subtractive reset."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= self.effective_vth


@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifSoftResetModelFloat(AbstractPyLifModelFloat):
    """Floating-point LIF with subtractive reset."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def spiking_activation(self):
        return self.v > self.vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= self.vth
