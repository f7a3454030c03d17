#!/usr/bin/env python
"""Simulation speed: neurocomp's event simulator vs Lava's fixed_pt CPU models.

The same compiled networks -- an MNIST MLP 784-256-10 with bias and a
LeNet-style CNN, trained briefly here, converted in rate mode (constant-
current input) -- run on both backends.  The CNN runs twice: ``lenet`` keeps
its average pools as spiking layers (pooling connections into pool
populations), ``lenet-folded`` is the rate-mode default, where the
``fold_avgpool`` pass folds each pool into the next layer's weights.  ``lenet-soft``
and ``lenet-soft-burst2`` are the folded LeNet in ``rate-soft`` (signed spikes), one
spike per step and bursts of up to 2 (``--spikes-per-step 2``).  Printed per network and batch size:
sample-steps per second, synaptic events per second and the speed ratio.
Both backends' times cover the simulation only (Lava: inside ``run()``;
building and compiling the process graph is excluded).  Lava cannot batch:
it simulates samples one after another, so its throughput does not depend on
the batch size; it is measured on ``--lava-samples`` samples and compared
with the event simulator at batch 1 and at batch 1000.  The samples that ran
on Lava are checked bit for bit (all spikes, all states) against the event
simulator.

Targets (issue 3): >= 1000x Lava's throughput at batch 1000, >= 20x at batch 1.

    .venv/bin/python benchmarks/sim_speed.py [--steps 32] [--lava-samples 5]
        [--networks mlp,lenet,lenet-folded,lenet-soft,lenet-soft-burst2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import CACHE, load_mnist  # noqa: E402


def build(name):
    import keras
    L = keras.layers
    if name == "mlp":
        return keras.Sequential([L.Input((28, 28, 1)), L.Flatten(), L.Dense(256, activation="relu"),
                                 L.Dense(10)], name="speed_mlp")
    return keras.Sequential([
        L.Input((28, 28, 1)), L.Conv2D(6, 5, activation="relu"), L.AveragePooling2D(2),
        L.Conv2D(16, 5, activation="relu"), L.AveragePooling2D(2), L.Flatten(),
        L.Dense(120, activation="relu"), L.Dense(10)], name="speed_lenet")


def trained(name, data):
    import keras
    path = CACHE / f"speed_{name}.keras"
    if path.exists():
        return keras.models.load_model(path, compile=False)
    keras.utils.set_random_seed(0)
    m = build(name)
    m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(data[0][:20000], data[1][:20000], epochs=1, batch_size=128, verbose=0)
    CACHE.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return m


NETWORKS = {   # name: (model, compile options)
    "mlp": ("mlp", {"mode": "rate"}),
    "lenet": ("lenet", {"mode": "rate", "avgpool_fold": False}),
    "lenet-folded": ("lenet", {"mode": "rate"}),
    "lenet-soft": ("lenet", {"mode": "rate-soft"}),
    "lenet-soft-burst2": ("lenet", {"mode": "rate-soft", "spikes_per_step": 2}),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--lava-samples", type=int, default=5)
    ap.add_argument("--big-batch", type=int, default=1000)
    ap.add_argument("--networks", default="mlp,lenet,lenet-folded",
                    help="comma-separated, of: " + ", ".join(NETWORKS))
    args = ap.parse_args(argv)
    unknown = [n for n in args.networks.split(",") if n not in NETWORKS]
    if unknown:
        ap.error(f"unknown network(s) {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from neurocomp.frontends.keras import import_keras
    import_keras()
    import neurocomp
    from neurocomp.backends.event import EventBackend
    from neurocomp.backends.lava import LavaBackend
    from neurocomp.encoding import encode

    data = load_mnist()
    rows = []
    for name in args.networks.split(","):
        model_name, options = NETWORKS[name]
        model = trained(model_name, data)
        c = neurocomp.compile(model, calib=data[0][:300], **options)
        x = data[2][:args.big_batch]
        T = args.steps
        ev = EventBackend()
        ev.run(c.net, encode(c.net, x[:64], 4))                      # numba JIT warm-up
        # Lava: a few samples, one after another (its per-sample throughput)
        nl = args.lava_samples
        raster_l = encode(c.net, x[:nl], T)
        lv = LavaBackend().run(c.net, raster_l, record="all", record_states=True)
        ref = EventBackend().run(c.net, raster_l, record="all", record_states=True)
        exact = all(np.array_equal(lv.spikes[p], ref.spikes[p]) for p in ref.spikes) and all(
            np.array_equal(lv.states[p][v], ref.states[p][v]) for p in ref.states for v in ref.states[p])
        ev_per_sample_step = ref.synaptic_events / (nl * T)
        lava_rate = nl * T / lv.seconds
        rows.append((name, "lava", "1..%d (sequential)" % nl, lava_rate, lava_rate * ev_per_sample_step,
                     1.0, exact))
        for batch in (1, args.big_batch):
            raster = encode(c.net, x[:batch], T)
            reps = 20 if batch == 1 else 3
            times = []
            for _ in range(reps):
                r = ev.run(c.net, raster)
                times.append(r.seconds)
                if os.environ.get("NEUROCOMP_BENCH_DEBUG"):
                    print(name, batch, round(r.seconds, 3), flush=True)
            secs = float(np.median(times))                   # warm runs; the median of the repeats
            rate = batch * T / secs
            events = r.synaptic_events
            rows.append((name, "event", str(batch), rate, events / secs, rate / lava_rate, exact))
        ev_check = ev.run(c.net, raster_l, record="all", record_states=True)
        assert all(np.array_equal(ev_check.spikes[p], lv.spikes[p]) for p in lv.spikes)
        print(f"{name}: L={c.latency_steps}, {sum(p.size for p in c.net.populations.values()):,} neurons, "
              f"{ev_per_sample_step:,.0f} synaptic events per sample-step", flush=True)
    print()
    print(f"| network | backend | batch | sample-steps/s | synaptic events/s | x Lava | bit-exact |")
    print("|---|---|---|---|---|---|---|")
    for name, be, batch, rate, evs, ratio, exact in rows:
        print(f"| {name} | {be} | {batch} | {rate:,.0f} | {evs:,.0f} | {ratio:,.1f} | {'yes' if exact else 'NO'} |")
    print(f"\n(T = {args.steps} steps per sample, constant-current input; "
          f"times exclude graph construction and compilation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
