"""`neurocomp demo`: the whole flow on a built-in example, no files needed.

Trains a small CNN on sklearn's digits, compiles it for Loihi 2 in every
neuron mode, simulates the test split on the event simulator and a few
samples on Lava (checking they agree bit for bit), and prints one table.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

MODES = ("rate", "rate-soft", "sigma-delta")


def digits_data(seed: int = 0):
    """sklearn's 8x8 digits as (N, 8, 8, 1) floats in [0, 1], split 75/25."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, d.target.astype(np.int64), test_size=0.25, random_state=seed,
                            stratify=d.target)


def train_digits_cnn(epochs: int = 30, seed: int = 0):
    """A small CNN (conv-BN-relu-avgpool, conv-relu, dense) trained in seconds."""
    from neurocomp.frontends.keras import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    x_tr, x_te, y_tr, y_te = digits_data(seed)
    m = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.ReLU(name="relu1"),
        keras.layers.AveragePooling2D(2, name="pool1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="logits"),
    ], name="digits_cnn")
    m.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    m.fit(x_tr, y_tr, epochs=epochs, batch_size=64, verbose=0)
    return m, (x_tr, y_tr, x_te, y_te)


def run_demo(out_dir: Path, console: Console, quiet: bool = False, lava_samples: int = 3,
             epochs: int = 30, modes=MODES) -> dict:
    """Run the demo; returns its results (also printed as a table)."""
    import neurocomp
    from neurocomp.bundle import write_bundle
    from neurocomp.ir import predict
    from neurocomp.report import calibration_checks, map_to_cores, markdown

    say = (lambda m: None) if quiet else (lambda m: console.print(m, highlight=False))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    say("training a small CNN on sklearn digits ...")
    model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn(epochs)
    model.save(out_dir / "digits_cnn.keras")
    np.savez(out_dir / "digits_test.npz", x=x_te, y=y_te)
    np.savez(out_dir / "digits_calib.npz", x_train=x_tr, y_train=y_tr)
    say(f"  trained in {time.perf_counter() - t0:.1f} s")
    rows, results = [], {}
    for mode in modes:
        say(f"compiling for loihi2 in mode {mode} ...")
        c = neurocomp.compile(model, calib=x_tr, hw="loihi2", mode=mode)
        steps = c.latency_steps + (8 if mode == "sigma-delta" else 32)
        ann = float((predict(c.graph, x_te).argmax(1) == y_te).mean())
        ev = c.simulate(x_te, steps, "event")
        lv = c.simulate(x_te[:lava_samples], steps, "lava", record="all")
        ev_few = c.simulate(x_te[:lava_samples], steps, "event", record="all")
        exact = all(np.array_equal(ev_few.result.spikes[p], lv.result.spikes[p]) for p in lv.result.spikes)
        mapping, res = map_to_cores(c.net, c.hw)
        spikes = float(sum(v.sum(axis=1) for v in ev.result.spike_counts.values()).mean())
        bundle = out_dir / f"bundle-{mode}"
        diags, acc, spk = calibration_checks(c, x_tr, y_tr, steps)
        write_bundle(c, bundle, steps=steps, report=lambda s: markdown(c, s, diags, acc, spk),
                     extra_summary={"cores": res["cores"], "chips": res["chips"],
                                    "cores_method": res["method"], "resources": res},
                     files={"mapping.json": mapping.to_json()})
        speed = len(x_te) * steps / max(ev.result.seconds, 1e-9)
        lava_speed = lava_samples * steps / max(lv.result.seconds, 1e-9)
        results[mode] = dict(ann=ann, snn=ev.accuracy(y_te), steps=steps, latency=c.latency_steps,
                             cores=res["cores"], spikes=spikes, exact=exact, speedup=speed / lava_speed,
                             bundle=str(bundle))
        rows.append((mode, ann, ev.accuracy(y_te), steps, c.latency_steps, res["cores"], spikes,
                     speed, speed / lava_speed, exact))
    t = Table(title=f"neurocomp demo: digits CNN on Loihi 2 ({len(x_te)} test images)")
    for col in ("mode", "ANN acc", "SNN acc", "steps", "latency", "cores", "spikes/inf",
                "sample-steps/s", "x Lava", "bit-exact"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for mode, ann, snn, steps, lat, cores, spikes, speed, ratio, exact in rows:
        t.add_row(mode, f"{ann:.2%}", f"{snn:.2%}", str(steps), str(lat), str(cores), f"{spikes:,.0f}",
                  f"{speed:,.0f}", f"{ratio:,.0f}", "yes" if exact else "[red]NO[/]")
    console.print(t)
    console.print(f"bundles and reports in {out_dir}/bundle-*/ (report.md); try:\n"
                  f"  neurocomp simulate {out_dir}/bundle-rate --data {out_dir}/digits_test.npz --backend lava --limit 5",
                  highlight=False)
    console.print(f"done in {time.perf_counter() - t0:.0f} s", highlight=False)
    return results
