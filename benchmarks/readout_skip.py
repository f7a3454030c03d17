#!/usr/bin/env python
"""``--readout-skip``: the membrane read-out from arrival against one that leaves out the
first half of the steps since the output's input arrived, on the same simulation.

The benchmark's cached MNIST models (``benchmarks/accuracy.py`` trains them) are compiled
in ``rate`` (percentile, channel-wise, its calibration sample), simulated once on the event
simulator for L + 64 steps, and read both ways at T = L + {0, 1, 2, 4, 8, 16, 32, 64}.

    .venv/bin/python benchmarks/readout_skip.py [--models resnet,mobilenet] [--limit 10000] [--skip 0.5]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import EPOCHS, OFFSETS, calibration_sample, load_mnist, trained  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet,mobilenet")
    ap.add_argument("--limit", type=int, default=10000)
    ap.add_argument("--skip", type=float, default=0.5)
    ap.add_argument("--mode", default="rate")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import neurocomp
    from neurocomp.frontends.keras import import_keras
    from neurocomp.readout import decide
    import_keras()
    data = load_mnist()
    x_tr, _, x_te, y_te = data
    x_te, y_te = x_te[:args.limit], y_te[:args.limit]
    calib = calibration_sample(x_tr)
    for name in args.models.split(","):
        model = trained(name, data, EPOCHS[name], retrain=False)     # accuracy.py's cached model
        c = neurocomp.compile(model, calib=calib, mode=args.mode, max_steps=128)
        L = c.latency_steps
        out = c.simulate(x_te, L + max(OFFSETS))
        print(f"| {name} ({args.mode}, L={L}) | " + " | ".join(f"L+{k}" for k in OFFSETS) + " |")
        print("|---|" + "---|" * len(OFFSETS))
        for label, skip in (("from arrival", 0.0), (f"skip {args.skip}", args.skip)):
            accs = [float((decide(c.net, out.result, steps=L + k, skip=skip).predictions == y_te).mean())
                    for k in OFFSETS]
            print(f"| {label} | " + " | ".join(f"{a:.4f}" for a in accs) + " |", flush=True)
        print()
    print(f"({len(y_te)} test images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
