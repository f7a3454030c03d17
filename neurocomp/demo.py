"""`neurocomp demo`: the whole flow on a built-in example, no files needed."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


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
    import keras

    keras.utils.set_random_seed(seed)
    x_tr, x_te, y_tr, y_te = digits_data(seed)
    m = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.AveragePooling2D(2),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ], name="digits_cnn")
    m.compile(optimizer=keras.optimizers.Adam(1e-2),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    m.fit(x_tr, y_tr, epochs=epochs, batch_size=64, verbose=0)
    return m, (x_tr, y_tr, x_te, y_te)


def run_demo(out_dir: Path, console: Console, quiet: bool = False) -> None:
    from neurocomp.frontends.keras import load_keras
    from neurocomp.ir import predict
    from neurocomp.passes import PassContext, run_pipeline
    from neurocomp.pipeline import PIPELINES

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, (x_tr, y_tr, x_te, y_te) = train_digits_cnn()
    t_train = time.perf_counter() - t0
    path = out_dir / "digits_cnn.keras"
    model.save(path)
    keras_out = model.predict(x_te, verbose=0)
    g = run_pipeline(load_keras(path), PIPELINES["canonicalize"], PassContext())
    ir_out = predict(g, x_te)
    acc_keras = float((keras_out.argmax(1) == y_te).mean())
    acc_ir = float((ir_out.argmax(1) == y_te).mean())
    t = Table(title="neurocomp demo: sklearn digits CNN")
    t.add_column("stage")
    t.add_column("accuracy", justify="right")
    t.add_column("note")
    t.add_row("Keras ANN", f"{acc_keras:.2%}", f"trained in {t_train:.1f} s")
    t.add_row("neurocomp float IR", f"{acc_ir:.2%}",
              f"BatchNorm folded; max |IR - Keras| = {np.abs(ir_out - keras_out).max():.1e}")
    console.print(t)
    console.print(f"model written to {path}")
