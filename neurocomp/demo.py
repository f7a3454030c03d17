"""`neurocomp demo`: the whole flow on a built-in example, no files needed.

Trains a small CNN on sklearn's digits (or on ``--data``), compiles it for
Loihi 2 in every neuron mode, simulates the test split on the event simulator
and a few samples on Lava (checking they agree bit for bit), writes a bundle
with its report per mode plus a demo report comparing the modes (accuracy vs
time steps on the test split), and prints one table.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

MODES = ("rate", "rate-soft", "sigma-delta", "few-spike")


def digits_data(seed: int = 0):
    """sklearn's 8x8 digits as (N, 8, 8, 1) floats in [0, 1], split 75/25
    (``x_train, x_test, y_train, y_test``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return train_test_split(x, d.target.astype(np.int64), test_size=0.25, random_state=seed,
                            stratify=d.target)


def user_data(path: Path):
    """``(x_train, x_test, y_train, y_test)`` from an .npz with ``x_train``,
    ``y_train``, ``x_test``, ``y_test`` (images ``(N, H, W)`` or ``(N, H, W, C)``;
    integer labels); every problem is a one-line ``DataError``."""
    import zipfile

    from neurocomp.errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"--data '{path}' is not a file; pass an .npz with x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DataError(f"cannot read '{path}' as a numpy .npz file ({type(e).__name__}); save it with "
                        "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DataError(f"'{path}' lacks {', '.join(missing)}; the demo trains on x_train/y_train and tests "
                        "on x_test/y_test")
    out = []
    for k in ("x_train", "x_test"):
        x = arrays[k]
        if x.dtype.kind not in "biuf" or x.ndim not in (3, 4) or len(x) == 0:
            raise DataError(f"'{path}': {k} must be a non-empty numeric array of images (N, H, W[, C]), "
                            f"got {x.dtype} {x.shape}")
        x = x.astype(np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if not np.all(np.isfinite(x)):
            raise DataError(f"'{path}': {k} contains NaN or infinite values; clean the data first")
        hi = float(np.abs(x).max()) or 1.0
        out.append(x / hi if hi > 1.0 else x)
    if out[0].shape[1:] != out[1].shape[1:]:
        raise DataError(f"'{path}': x_train samples are {out[0].shape[1:]} but x_test samples are "
                        f"{out[1].shape[1:]}; they must match")
    for k, x in (("y_train", out[0]), ("y_test", out[1])):
        y = arrays[k].reshape(-1)
        if y.dtype.kind not in "biu" or len(y) != len(x) or y.min() < 0:
            raise DataError(f"'{path}': {k} must hold {len(x)} non-negative integer labels, got {y.dtype} "
                            f"{arrays[k].shape}")
        out.append(y.astype(np.int64))
    return out[0], out[1], out[2], out[3]


def train_digits_cnn(epochs: int = 30, seed: int = 0, data=None):
    """A small CNN (conv-BN-relu-avgpool, conv-relu, dense) trained in seconds on
    sklearn digits, or on ``data = (x_train, x_test, y_train, y_test)``.
    Returns ``(model, (x_train, y_train, x_test, y_test))``."""
    from neurocomp.frontends.keras import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(seed)
    x_tr, x_te, y_tr, y_te = data if data is not None else digits_data(seed)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    pool = 2 if min(x_tr.shape[1:3]) < 16 else 4
    m = keras.Sequential([
        keras.layers.Input(x_tr.shape[1:]),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1"),
        keras.layers.BatchNormalization(name="bn1"),
        keras.layers.ReLU(name="relu1"),
        keras.layers.AveragePooling2D(pool, name="pool1"),
        keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(n_classes, name="logits"),
    ], name="digits_cnn" if data is None else "demo_cnn")
    m.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    m.fit(x_tr, y_tr, epochs=epochs, batch_size=64, verbose=0)
    return m, (x_tr, y_tr, x_te, y_te)


def accuracy_curve(net, result, y) -> list[float]:
    """Accuracy after every step 1..T of one simulation ``result`` (its output
    spikes and, for membrane read-outs, the output's recorded states)."""
    from neurocomp.readout import decide

    steps = result.spikes[net.output].shape[1]
    return [float((decide(net, result, steps=t).predictions == y).mean()) for t in range(1, steps + 1)]


def run_demo(out_dir: Path, console: Console, quiet: bool = False, lava_samples: int = 3,
             epochs: int = 30, modes=MODES, data: Path | None = None, log=None) -> dict:
    """Train, compile for Loihi 2 in each of ``modes``, simulate the test split on
    the event simulator (and ``lava_samples`` samples on Lava, checking they
    agree bit for bit), write a bundle per mode and a demo report comparing
    the modes; print a result table.  Returns the results per mode."""
    import neurocomp
    from neurocomp.bundle import save_bundle
    from neurocomp.ir import predict
    from neurocomp.log import BuildLog
    from neurocomp.report import demo_report

    log = log or BuildLog(Console(stderr=True), quiet=quiet)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        from neurocomp.errors import DataError
        raise DataError(f"output path '{out_dir}' exists and is a file; choose a directory name with -o")
    arrays = user_data(data) if data is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.task(f"train a small CNN on {'sklearn digits' if data is None else data} ({epochs} epochs)") as t:
        model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn(epochs, data=arrays)
        model.save(out_dir / "digits_cnn.keras")
        np.savez(out_dir / "digits_test.npz", x=x_te, y=y_te)
        np.savez(out_dir / "digits_calib.npz", x_train=x_tr, y_train=y_tr)
        t.detail = f"{len(x_tr):,} training, {len(x_te):,} test images"
    rows, results, curves = [], {}, {}
    ann = None
    for mode in modes:
        with log.task(f"{mode}: compile for loihi2") as t:
            c = neurocomp.compile(model, calib=x_tr, hw="loihi2", mode=mode)
            t.detail = f"latency {c.latency_steps} steps"
        # graded modes settle within a few steps of their latency; rate modes need time to average
        steps = c.latency_steps + {"sigma-delta": 8, "few-spike": 0}.get(mode, 32)
        horizon = c.latency_steps + 32          # the curve: every mode over the same steps
        if ann is None:
            ann = float((predict(c.graph, x_te).argmax(1) == y_te).mean())
        with log.task(f"{mode}: event simulator, {len(x_te)} samples x {horizon} steps") as t:
            ev = c.simulate(x_te, horizon, "event")
            curve = accuracy_curve(c.net, ev.result, y_te)
            t.detail = f"accuracy {curve[steps - 1]:.4f} at {steps} steps"
        with log.task(f"{mode}: Lava fixed_pt, {lava_samples} samples x {steps} steps") as t:
            lv = c.simulate(x_te[:lava_samples], steps, "lava", record="all")
            ev_few = c.simulate(x_te[:lava_samples], steps, "event", record="all")
            exact = all(np.array_equal(ev_few.result.spikes[p], lv.result.spikes[p]) for p in lv.result.spikes)
            t.detail = "bit-exact with the event simulator" if exact else "DIFFERS from the event simulator"
        bundle = out_dir / f"bundle-{mode}"
        summary = save_bundle(c, bundle, x_tr, y_tr, steps=steps, log=log)
        spikes = float(sum(v[:, :steps].astype(np.int64).sum(axis=1) for v in ev.result.spike_counts.values()).mean())
        speed = len(x_te) * horizon / max(ev.result.seconds, 1e-9)
        lava_speed = lava_samples * steps / max(lv.result.seconds, 1e-9)
        snn = curve[steps - 1]
        curves[mode] = curve
        results[mode] = dict(ann=ann, snn=snn, steps=steps, latency=c.latency_steps, cores=summary["cores"],
                             spikes=spikes, exact=exact, speed=speed, speedup=speed / lava_speed,
                             bundle=str(bundle))
        rows.append((mode, ann, snn, steps, c.latency_steps, summary["cores"], spikes, speed,
                     speed / lava_speed, exact))
    with log.task("demo report") as t:
        files = demo_report(results, curves, ann, len(x_te), title=f"neurocomp demo: {model.name} on Loihi 2")
        for rel, content in files.items():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_bytes(content)
        t.detail = str(out_dir / "report.html")
    t = Table(title=f"neurocomp demo: {model.name} on Loihi 2 ({len(x_te)} test images)")
    for col in ("mode", "ANN acc", "SNN acc", "steps", "latency", "cores", "spikes/inf",
                "sample-steps/s", "x Lava", "bit-exact"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for mode, ann_, snn, steps, lat, cores, spikes, speed, ratio, exact in rows:
        t.add_row(mode, f"{ann_:.2%}", f"{snn:.2%}", str(steps), str(lat), str(cores), f"{spikes:,.0f}",
                  f"{speed:,.0f}", f"{ratio:,.0f}", "yes" if exact else "[red]NO[/]")
    console.print(t)
    first = modes[0]
    console.print(f"report: {out_dir}/report.html (every mode); bundles with their own reports: "
                  f"{out_dir}/bundle-*/\ntry:\n"
                  f"  neurocomp simulate {out_dir}/bundle-{first} --data {out_dir}/digits_test.npz --backend lava --limit 5",
                  highlight=False)
    console.print(f"done in {time.perf_counter() - t0:.0f} s", highlight=False)
    return results
