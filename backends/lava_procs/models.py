"""Fixed- and floating-point models of the custom processes in ``process.py``."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from neurocomp.backends.lava_procs.process import FewSpike, LIFSoftReset  # absolute: Lava imports this file alone

@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLifSoftResetModelBitAcc(AbstractPyLifModelFixed):
    """Bit-accurate LIF (lava-nc 0.10.0 ``PyLifModelBitAcc``, which Lava does not
    let us subclass) with subtractive reset."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    bias_onset: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    steps_run: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    signed: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    burst: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=7)
    count: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.effective_vth = 0

    def scale_bias(self):
        super().scale_bias()
        if self.steps_run[0] < self.bias_onset[0]:      # delayed bias: not before the input
            self.effective_bias = np.zeros_like(self.effective_bias)
            self.steps_run[0] += 1

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        b, vth = int(self.burst[0]), self.effective_vth
        if b == 1:
            return _signed_spikes(self, self.v > vth, vth)
        return _signed_spikes(self, np.clip((self.v.astype(np.int64) - 1) // vth, 0, b), vth)

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v -= spike_vector * self.effective_vth


@implements(proc=LIFSoftReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLifSoftResetModelFloat(AbstractPyLifModelFloat):
    """Floating-point LIF with subtractive reset."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)
    bias_onset: np.ndarray = LavaPyType(np.ndarray, int)
    steps_run: np.ndarray = LavaPyType(np.ndarray, int)
    signed: np.ndarray = LavaPyType(np.ndarray, int)
    burst: np.ndarray = LavaPyType(np.ndarray, int)
    count: np.ndarray = LavaPyType(np.ndarray, int)

    def subthr_dynamics(self, activation_in: np.ndarray):
        if self.steps_run[0] >= self.bias_onset[0]:
            return super().subthr_dynamics(activation_in)
        self.steps_run[0] += 1                          # delayed bias: not before the input
        bias, self.bias_mant = self.bias_mant, np.zeros_like(self.bias_mant)
        try:
            super().subthr_dynamics(activation_in)
        finally:
            self.bias_mant = bias

    def spiking_activation(self):
        b = int(self.burst[0])
        if b == 1:
            return _signed_spikes(self, self.v > self.vth, self.vth)
        return _signed_spikes(self, np.clip(np.ceil(self.v / self.vth) - 1, 0, b), self.vth)

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v -= spike_vector * self.vth


def _signed_spikes(model, fired: np.ndarray, vth) -> np.ndarray:
    """``fired`` (spikes per neuron: bool, or 0..burst) as payloads, with -k where a
    signed neuron takes spikes back (no spike, v < 0, net count > 0; k = 1, or for
    bursts up to ``burst`` thresholds v lacks; ``LIFSoftReset``)."""
    if not model.signed[0]:
        return fired
    b = int(model.burst[0])
    back = (fired == 0) & (model.v < 0) & (model.count > 0)
    if b > 1:
        # thresholds v lacks: exact in float64 for the fixed model's 24-bit integers too
        back = back * np.minimum(np.minimum(np.ceil(-model.v / vth), model.count), b)
    s = np.asarray(fired, np.int32) - back.astype(np.int32)
    model.count += s.astype(model.count.dtype)
    return s


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


@implements(proc=FewSpike, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFewSpikeModelFixed(PyLoihiProcessModel):
    """Integer few-spike neuron (``neurocomp.lowered.FewSpikeNeuron``); int32 sums."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    fx: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=32)
    cycle_step: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)
    k: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=5)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=31)

    def run_spk(self) -> None:
        a = self.a_in.recv()
        k, p = int(self.k[0]), int(self.cycle_step[0])
        fx = _wrap32(self.fx + a.astype(np.int64))
        if p == 0:
            self.v[:] = _wrap32(fx + self.bias)
            fx[:] = 0
        self.fx[:] = fx
        thr = int(self.vth[0]) << (k - 1 - p)
        s = self.v.astype(np.int64) >= thr
        self.v[:] = _wrap32(self.v - s * thr)
        self.cycle_step[0] = (p + 1) % k
        self.s_out.send((s.astype(np.int64) << (k - 1 - p)).astype(np.int32))
