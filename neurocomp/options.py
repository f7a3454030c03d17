"""Conversion options: one typed, documented object that round-trips to JSON."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["rate", "rate-soft", "sigma-delta", "few-spike"]

# Rate modes' default channel-scale floor: the best of 0, 0.125, 0.15, ..., 0.3 for both the
# benchmark MLP and CNN (rate, L+8 and L+32) on a held-out split (MNIST training images 55k-60k,
# not the test set).  Below ~0.15 the MLP loses weight precision; at 0.3 the CNN's quiet channels
# fire too slowly for L+8.
RATE_CHANNEL_SCALE_FLOOR = 0.225


class ConvertOptions(BaseModel):
    """Everything that decides how a float network becomes a spiking one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = Field("rate", description="rate: IF neurons on Lava's plain LIF (reset by a "
                       "self-inhibitory synapse, or to zero for NetX CUBA: see rate_reset); "
                       "rate-soft: reset by subtraction (custom Lava process, Loihi 2 microcode); "
                       "sigma-delta: graded spikes (Lava SigmaDelta, NetX SDNN); "
                       "few-spike: FS neurons, k-step cycles of at most k graded spikes (custom Lava "
                       "process, Loihi 2 microcode)")
    fs_k: int = Field(6, ge=2, le=12, description="few-spike: steps per cycle = activation bits; each "
                      "layer adds one cycle of latency")
    normalization: Literal["max", "percentile", "spike-norm"] = Field(
        "percentile", description="how activation scales (thresholds) are set from calibration data")
    percentile: float = Field(99.9, gt=0, le=100, description="robust max for 'percentile'")
    maxpool: Literal["exact", "avg"] = Field(
        "exact", description="max pooling: exact (a tree of ReLU populations, max(a,b) = relu(a-b) + b; "
        "exact for sigma-delta, approximate for rate neurons; ceil(log2(window size)) extra steps of "
        "latency) or avg (an average pool instead: one population, not the ANN's function)")
    avgpool_fold: Optional[bool] = Field(None, description="fold average pools (non-overlapping, "
                                         "unpadded) into the conv or dense layer that reads them: one "
                                         "spiking layer less per pool (lower latency, no rate error "
                                         "of its own) for more synapses per spike; default: on for "
                                         "the rate modes")
    channelwise: bool = Field(True, description="one scale per output channel instead of per layer "
                              "(finer rates, but a wider weight range for the per-layer exponent)")
    channel_scale_floor: Optional[float] = Field(
        None, ge=0, le=1, description="channelwise: no channel's scale below this fraction of the "
        "layer's largest (a ReLU network computes the same function under any positive per-channel "
        "scale; near-silent channels would otherwise get huge normalised weights, which widen the "
        "layer's shared weight range and, for rate_reset synapse, the negative input u must hold); "
        f"default: {RATE_CHANNEL_SCALE_FLOOR} for the rate modes and few-spike, 0 otherwise")
    weight_rounding: Literal["optq", "nearest"] = Field(
        "optq", description="rate modes: how weights become mantissas.  optq: error feedback on "
        "calibration activations (OPTQ): each rounding error is spread over the inputs not yet "
        "rounded, so a layer's output error on real inputs is least-squares smaller; nearest: "
        "round each weight on its own (also without calibration data, and with any input encoding "
        "but constant current, whose per-step inputs the calibration statistics describe)")
    input_bits: int = Field(8, ge=1, le=16, description="graded input payload bits (constant current)")
    trade_input_bits: bool = Field(True, description="rate with rate_reset synapse, constant-current "
                                   "input and calibration data: use the input width, of input_bits "
                                   "and up to 3 fewer (not below 4), whose quantised network is closest "
                                   "to the float one on calibration data (the first layer's threshold is "
                                   "capped for u's range, so wide pixels leave its weights few mantissa "
                                   "levels); off: exactly input_bits")
    v_init: Optional[float] = Field(None, ge=0, lt=1, description="initial membrane, fraction of "
                                    "threshold (0.5 rounds rates instead of flooring them); default: 0.5 "
                                    "for rate-soft, 0 for rate (NetX files cannot set an initial state)")
    readout: Literal["membrane", "count", "first-spike", "k-spikes"] = Field(
        "membrane", description="rate modes: argmax of the output's integrated input (non-spiking "
        "output layer), of its spike counts, or the first output neuron to spike (first-spike) or to "
        "reach readout_k spikes (k-spikes); all but membrane keep a spiking output layer")
    readout_k: int = Field(3, ge=1, description="spikes the k-spikes read-out waits for")
    readout_skip: float = Field(0.0, ge=0, lt=1, description="rate modes, membrane and count read-outs: "
                                "the fraction of the steps since the output's input arrived that the "
                                "decision leaves out, the earliest (their pipeline-filling transient); "
                                "0 integrates them all.  0.5 suits deep networks in rate (unsigned), "
                                "whose early spikes stay counted; rate-soft's signed spikes take them "
                                "back, so it reads best from the start")
    encoding: Literal["constant", "poisson", "signed-poisson", "if", "burst", "phase"] = Field(
        "constant", description="input encoding (neurocomp.encoding); sigma-delta takes only constant "
        "(delta-coded); simulate() can override it")
    synapse_tau: float = Field(1.0, ge=1, le=64, description="rate modes: synaptic low-pass filter time "
                               "constant in steps (Loihi current decay du = 4096/tau - 1; NengoDL's "
                               "lowpass synapse); 1 = no filter.  Thresholds and biases are scaled by tau "
                               "so rates are unchanged; smooths bursty input at a cost in latency")
    max_rate: float = Field(1.0, gt=0, le=1, description="rate modes: spikes per step that stand for an "
                            "activation at the calibration scale (firing-rate scaling; lower rates mean "
                            "fewer spikes and smaller per-spike errors but need more steps)")
    rate_reset: Optional[Literal["synapse", "zero"]] = Field(
        None, description="rate: how a spike resets the neuron.  synapse: reset by subtraction "
        "built from standard LIF hardware (the current u integrates, a one-to-one self synapse of "
        "-threshold subtracts each spike, biases come from an always-on neuron; Loihi 1 and 2, no "
        "microcode, not NetX-expressible); zero: Lava LIF's own reset to zero (NetX CUBA; loses "
        "the charge above threshold, so rates need rate_correction); default: zero with netx or "
        "synapse_tau, else synapse")
    delay_biases: Optional[bool] = Field(
        None, description="rate modes: each layer's bias starts at the step its input first "
        "arrives (its depth) instead of step 0, so no layer integrates its bias alone while the "
        "pipeline fills (a transient that deep, BatchNorm-biased networks such as a ResNet take "
        "tens of steps to wash out); rate-soft counts steps in its microcoded neuron, rate "
        "(synapse reset) starts its always-on bias neuron later; Lava's plain LIF (rate_reset "
        "zero, NetX, the rate membrane read-out) keeps constant biases; default: on")
    signed_spikes: Optional[bool] = Field(
        None, description="rate-soft: a neuron that has fired more than its integrated input now "
        "warrants sends a -1 spike and takes its threshold back, so its net spike count is the "
        "rounded ReLU of the charge so far instead of its running maximum: a spike fired on an "
        "early, unrepresentative volley (deep networks, BatchNorm biases, max-pool trees) no longer "
        "stays in the count.  Loihi 2 graded spikes (-1/+1 payloads) and one more state variable "
        "in rate-soft's microcoded neuron; default: on for rate-soft")
    spikes_per_step: int = Field(1, ge=1, le=127, description="rate-soft: the most spikes a neuron "
                                 "sends in one step, as one graded message (a burst: LIFNeuron.burst; "
                                 "Loihi 2 graded payloads): the calibration scale then stands for "
                                 "spikes_per_step * max_rate spikes per step, so a layer resolves that "
                                 "many times more levels in the same steps; 1: one spike per step")
    rate_correction: bool = Field(True, description="rate: after lowering, lower each reset-to-zero "
                                  "layer's threshold until its mean rate on calibration data matches the "
                                  "quantised ANN (the reset discards charge, so rates sink layer by layer), "
                                  "then search each threshold for the decisions that agree most often with "
                                  "the quantised ANN's at T = L+8 ... L+32 (neurocomp.rate_correction); "
                                  "kept only where the network then agrees more often")
    potential_correction: bool = Field(True, description="unsigned rate neurons that start from a "
                                       "membrane state (rate with rate_reset synapse, rate-soft without "
                                       "signed spikes; signed ones take early spikes back): after "
                                       "lowering, move each channel's initial membrane, layer by layer, by "
                                       "the charge its mean rate at T = L+8 misses against the quantised ANN "
                                       "on calibration data (neurocomp.potential_correction); kept only "
                                       "where the network then agrees with the quantised ANN more often")
    threshold_search: bool = Field(True, description="rate_correction: search the thresholds after "
                                   "matching mean rates (one simulation of the calibration samples per "
                                   "candidate: seconds for an MLP, minutes for a ResNet or MobileNet); "
                                   "off: mean matching alone")
    max_steps: int = Field(128, ge=1, description="longest run the membrane read-out must not saturate "
                           "in (for logits up to twice the calibration scale)")
    sd_state_scale: int = Field(1 << 20, ge=64, le=1 << 21,
                                description="sigma-delta: at most this many state units per activation "
                                "1.0 (less where weight range or exactness bounds require)")
    sd_threshold: float = Field(1 / 256, gt=0, le=1,
                                description="sigma-delta: delta threshold, fraction of activation 1.0")
    netx: Optional[bool] = Field(None, description="keep the network expressible as a lava-dl NetX "
                                 "file: integer weights without exponents (NetX has none), at some cost in "
                                 "weight precision; default: on for rate with rate_reset zero, off "
                                 "otherwise (rate-soft and rate with rate_reset synapse are never "
                                 "NetX-expressible)")
    calib_samples: int = Field(500, ge=1, description="calibration samples used")

    @property
    def scale_floor(self) -> float:
        if self.channel_scale_floor is not None:
            return self.channel_scale_floor
        # modes whose layers share one weight range (sigma-delta scales each channel's state
        # instead); few-spike too: a retrained MNIST MLP's near-silent hidden channel had cost
        # its quantised ANN 30 pt (0.9813 -> 0.6854; 0.9809 with the floor)
        return RATE_CHANNEL_SCALE_FLOOR if self.mode in ("rate", "rate-soft", "few-spike") else 0.0

    @property
    def reset_synapse(self) -> bool:
        """Whether rate-mode layers reset through a self-inhibitory synapse (``rate_reset``)."""
        if self.mode != "rate":
            return False
        if self.rate_reset is not None:
            return self.rate_reset == "synapse"
        return not self.netx and self.synapse_tau == 1

    @property
    def biases_delayed(self) -> bool:
        return self.mode in ("rate", "rate-soft") and self.delay_biases is not False

    @property
    def spikes_signed(self) -> bool:
        return self.mode == "rate-soft" and self.signed_spikes is not False

    @property
    def rate_scale(self) -> float:
        """Spikes per step an activation at the calibration scale stands for (rate modes)."""
        return self.max_rate * (self.spikes_per_step if self.mode == "rate-soft" else 1)

    @property
    def initial_membrane(self) -> float:
        if self.v_init is not None:
            return self.v_init
        return 0.5 if self.mode == "rate-soft" or self.reset_synapse else 0.0

    @property
    def fold_pooling(self) -> bool:
        if self.avgpool_fold is not None:
            return self.avgpool_fold
        return self.mode in ("rate", "rate-soft")

    @property
    def netx_weights(self) -> bool:
        """Whether weights are kept exponent-free for NetX."""
        if self.mode in ("rate-soft", "few-spike"):
            return False
        return self.netx if self.netx is not None else (self.mode == "rate" and not self.reset_synapse)
