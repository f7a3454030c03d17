"""Keras frontend: every zoo model converts from memory, .keras and legacy .h5
and the IR reproduces ``model.predict``; the IR survives a save/load round
trip; every failure is a one-line ``ModelLoadError`` / ``UnsupportedLayerError``."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from keras_zoo import ZOO, keras, labels_for, layer_classes, layers
from neurocomp import ir
from neurocomp.errors import ModelLoadError, UnsupportedLayerError
from neurocomp.frontends.keras import HANDLERS, SUPPORTED_LAYERS, load_keras
from neurocomp.ir import ops

TOL = 1e-4
ZOO_PARAMS = [pytest.param(n, marks=pytest.mark.xdist_group(f"zoo-{n}")) for n in ZOO]

_REF: dict[str, np.ndarray] = {}


def _reference(zoo, name):
    model, x = zoo(name)
    if name not in _REF:
        _REF[name] = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    return model, x, _REF[name]


def _saved(model, d: Path, fmt: str) -> Path:
    p = d / f"{model.name}.{fmt}"
    if not p.exists():
        model.save(p)
    return p


def _check_one_line(err, *needles):
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert "Traceback" not in msg
    assert len(msg) < 700, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


# -- zoo: conversion matches Keras ------------------------------------------------

# names vary fastest, so xdist's plain `load` scheduling trains different
# models on different workers at the start instead of waiting on one.
@pytest.mark.parametrize("name", ZOO_PARAMS)
@pytest.mark.parametrize("source", ["memory", "keras", "h5"])
def test_zoo_matches_keras(zoo, session_tmp, name, source):
    model, x, ref = _reference(zoo, name)
    g = load_keras(model if source == "memory" else _saved(model, session_tmp, source))
    assert g.graph["name"] == model.name and g.graph["source"] == "keras"
    ir.validate(g)
    assert ir.output_nodes(g) == ["output"]
    for n in g.nodes:  # IR is float64
        for a in g.nodes[n]["op"].array_fields().values():
            assert a.dtype == np.float64, n
    y = ir.predict(g, x)
    assert y.shape == ref.shape
    diff = float(np.abs(y - ref).max())
    assert diff <= TOL, f"{name} from {source}: max |IR - Keras| = {diff:.3g}"


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_ir_round_trip(zoo, tmp_path, name):
    model, x, _ = _reference(zoo, name)
    g = load_keras(model)
    jp, zp = ir.save(g, tmp_path / name)
    assert jp.exists() and zp.exists()
    g2 = ir.load(tmp_path / name)
    assert ir.graphs_equal(g, g2)
    assert np.array_equal(ir.predict(g, x), ir.predict(g2, x))


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_models_are_trained(zoo, name):
    model, x, ref = _reference(zoo, name)
    acc = float((ref.argmax(1) == labels_for(name)).mean())
    assert acc > 0.6, f"{name}: test accuracy {acc:.2f}"


def test_zoo_covers_every_supported_layer():
    # builders are cheap to *construct* untrained: trace the class names only
    import keras_zoo
    seen, kinds = set(), set()
    orig = keras_zoo._fit
    keras_zoo._fit = lambda model, *a, **k: model
    try:
        for name, build in ZOO.items():
            if name in keras_zoo.NEEDS_MNIST and not keras_zoo.MNIST_PATH.exists():
                continue
            model = build()[0]
            seen |= layer_classes(model)
            kinds.add(type(model).__name__)
    finally:
        keras_zoo._fit = orig
    assert set(SUPPORTED_LAYERS) <= seen, set(SUPPORTED_LAYERS) - seen
    assert {"Sequential", "Functional"} <= kinds
    assert len(ZOO) >= 12


def test_supported_layers_registry():
    assert SUPPORTED_LAYERS == tuple(sorted(SUPPORTED_LAYERS))
    assert set(SUPPORTED_LAYERS) == set(HANDLERS)
    for cls in ("InputLayer", "Dense", "Conv2D", "DepthwiseConv2D", "AveragePooling2D",
                "MaxPooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape", "ZeroPadding2D",
                "Rescaling", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                "GaussianDropout", "AlphaDropout", "BatchNormalization", "Activation", "ReLU",
                "Add", "Concatenate"):
        assert cls in SUPPORTED_LAYERS, cls


# -- naming and structure -----------------------------------------------------------

def test_names_fused_activation_and_dropped_layers(zoo):
    model, _ = zoo("mlp_rescale_bn_dropout")
    g = load_keras(model)
    assert list(g.nodes)[0] == "image"
    assert isinstance(ir.op(g, "image"), ops.Input) and ir.op(g, "image").shape == (8, 8, 1)
    assert isinstance(ir.op(g, "rescale"), ops.Scale)
    assert isinstance(ir.op(g, "bn1"), ops.BatchNorm)
    assert ir.op(g, "relu1").function == "relu"
    assert "drop1" not in g  # inference identity
    assert ir.op(g, "probs_act").function == "softmax"
    assert ir.inputs_of(g, "probs_act") == ["probs"]
    assert ir.inputs_of(g, "output") == ["probs_act"]


def test_nested_sequential_is_inlined(zoo):
    model, x = zoo("nested_sequential")
    g = load_keras(model)
    for n in ("blk_conv", "blk_conv_act", "blk_bn", "blk_pool"):
        assert n in g
    assert "features" not in g
    assert ir.inputs_of(g, "blk_conv") == ["image"]


def test_nested_functional_with_unused_output(tmp_path):
    keras.utils.set_random_seed(2)
    xi = keras.Input((4, 4, 2), name="inner_in")
    c = layers.Conv2D(3, 3, padding="same", activation="relu", name="inner_conv")(xi)
    aux = layers.Dense(2, name="inner_aux")(layers.Flatten(name="inner_flat")(c))
    inner = keras.Model(xi, [c, aux], name="inner")
    x = keras.Input((4, 4, 2), name="x")
    feat, _ = inner(x)
    y = layers.Dense(3, name="head")(layers.Flatten(name="flatten")(feat))
    m = keras.Model(x, y, name="outer")
    xv = np.random.default_rng(0).normal(size=(4, 4, 4, 2)).astype(np.float32)
    ref = m.predict(xv, verbose=0)
    for src in (m, _saved(m, tmp_path, "keras"), _saved(m, tmp_path, "h5")):
        g = load_keras(src)
        assert "inner_conv" in g and "inner_aux" not in g and "inner_in" not in g
        assert np.abs(ir.predict(g, xv) - ref).max() <= TOL


def test_unused_model_input():
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    layers.Dense(2, name="dangling")(b)  # b is used, but by nothing that reaches the output
    m = keras.Model([a, b], layers.Dense(2, name="d")(a))
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(m)
    _check_one_line(e, "'b'", "not supported")


def test_multi_output_and_multi_input():
    keras.utils.set_random_seed(1)
    a, b = keras.Input((6,), name="a"), keras.Input((6,), name="b")
    s = layers.Add(name="sum")([layers.Dense(4, name="da")(a), layers.Dense(4, name="db")(b)])
    o1 = layers.Dense(3, name="head1")(s)
    o2 = layers.Dense(2, activation="relu", name="head2")(s)
    m = keras.Model([a, b], [o1, o2], name="two_heads")
    g = load_keras(m)
    assert ir.output_nodes(g) == ["output_0", "output_1"]
    assert ir.inputs_of(g, "output_1") == ["head2_act"]
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    r1, r2 = m.predict([xa, xb], verbose=0)
    out = ir.run_float(g, {"a": xa, "b": xb})
    assert np.abs(out["output_0"] - r1).max() <= TOL
    assert np.abs(out["output_1"] - r2).max() <= TOL


def test_shared_layer_and_name_clashes():
    x = keras.Input((4,), name="x")
    d = layers.Dense(4, activation="relu", name="shared")
    y = d(d(x))
    out = layers.Dense(2, name="output")(y)                # a layer called "output"
    out = layers.Dense(2, name="shared_act")(out)          # clashes with a synthesised name
    m = keras.Model(x, out, name="clash")
    g = load_keras(m)
    assert {"shared", "shared_call1", "output", "shared_act"} <= set(g.nodes)
    (o,) = ir.output_nodes(g)
    assert o not in ("output",) and o.startswith("output")
    assert ir.inputs_of(g, "shared_call1")[0].startswith("shared_act_")
    xv = np.random.default_rng(0).normal(size=(3, 4))
    assert np.abs(ir.predict(g, xv) - m.predict(xv, verbose=0)).max() <= TOL


def test_output_straight_from_dropped_layer():
    x = keras.Input((5,), name="x")
    m = keras.Model(x, layers.Dropout(0.5)(layers.Dense(3, name="d")(x)))
    g = load_keras(m)
    assert ir.inputs_of(g, "output") == ["d"]


def test_import_is_cheap_and_quiet(session_tmp, zoo):
    code = ("import sys, neurocomp.frontends.keras as k; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    model, _ = zoo("mlp_digits")
    p = _saved(model, session_tmp, "keras")
    code = ("from neurocomp.frontends.keras import load_keras; import sys; "
            f"g = load_keras({str(p)!r}); print(len(g))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr


# -- file errors ---------------------------------------------------------------------

def test_missing_file(tmp_path):
    p = tmp_path / "nope.keras"
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, "nope.keras", "does not exist")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.keras"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError) as e:
        load_keras(str(p))
    _check_one_line(e, "empty.keras", "empty", "model.save")


def test_text_file_named_keras(tmp_path):
    p = tmp_path / "notes.keras"
    p.write_text("this is not a model\n")
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, "notes.keras", "not a valid .keras")


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_truncated_file(zoo, session_tmp, tmp_path, fmt):
    model, _ = zoo("mlp_digits")
    data = _saved(model, session_tmp, fmt).read_bytes()
    p = tmp_path / f"cut.{fmt}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, f"cut.{fmt}", "model.save")


def test_zip_that_is_not_a_model(tmp_path):
    p = tmp_path / "other.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, "other.keras", "could not be loaded")


def test_weights_only_h5(zoo, tmp_path):
    model, _ = zoo("mlp_digits")
    p = tmp_path / "w.weights.h5"
    model.save_weights(p)
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, "w.weights.h5")


def test_text_file_named_h5_and_unknown_extension(tmp_path):
    p = tmp_path / "model.h5"
    p.write_text("nope")
    with pytest.raises(ModelLoadError) as e:
        load_keras(p)
    _check_one_line(e, "model.h5", "HDF5")
    q = tmp_path / "model.onnx"
    q.write_bytes(b"\x00\x01")
    with pytest.raises(ModelLoadError) as e:
        load_keras(q)
    _check_one_line(e, "model.onnx", ".keras")


def test_directory_and_wrong_type(tmp_path):
    with pytest.raises(ModelLoadError) as e:
        load_keras(tmp_path)
    _check_one_line(e, "directory")
    with pytest.raises(ModelLoadError) as e:
        load_keras(42)
    _check_one_line(e, "keras.Model")


def test_unbuilt_sequential():
    with pytest.raises(ModelLoadError) as e:
        load_keras(keras.Sequential([layers.Dense(3)], name="lazy"))
    _check_one_line(e, "lazy", "keras.Input")


# -- unsupported layers --------------------------------------------------------------

def _seq(*ls, shape=(8, 8, 1), name="m"):
    return keras.Sequential([keras.Input(shape)] + list(ls), name=name)


UNSUPPORTED = {
    "lstm": (lambda: _seq(layers.LSTM(4, name="lstm_1"), shape=(5, 3)), "lstm_1", "LSTM"),
    "conv1d": (lambda: _seq(layers.Conv1D(4, 3, name="c1d"), shape=(10, 2)), "c1d", "Conv1D"),
    "leaky": (lambda: _seq(layers.Flatten(), layers.LeakyReLU(name="leaky")), "leaky",
              "LeakyReLU"),
    "attention": (lambda: keras.Model(
        *(lambda q: (q, layers.MultiHeadAttention(2, 4, name="mha")(q, q)))(keras.Input((5, 8)))),
        "mha", "MultiHeadAttention"),
    "upsampling": (lambda: _seq(layers.UpSampling2D(name="up")), "up", "UpSampling2D"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
@pytest.mark.parametrize("source", ["memory", "keras", "h5"])
def test_unsupported_layer(tmp_path, case, source):
    build, lname, cls = UNSUPPORTED[case]
    model = build()
    src = model if source == "memory" else _saved(model, tmp_path, source)
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(src)
    msg = _check_one_line(e, f"'{lname}'", f"({cls})", "not supported", "supported layers:")
    assert ", ".join(SUPPORTED_LAYERS) in msg


def test_custom_and_lambda_layers_from_file(tmp_path):
    @keras.saving.register_keras_serializable(package="nctest")
    class Twice(layers.Layer):
        def call(self, x):
            return 2 * x

    m = _seq(layers.Flatten(), Twice(name="twice"), layers.Dense(2), name="custom")
    p = _saved(m, tmp_path, "keras")
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(m)
    _check_one_line(e, "'twice'", "(Twice)", "supported layers:")
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(p)
    _check_one_line(e, "'twice'", "(Twice)", "supported layers:")

    m = _seq(layers.Flatten(), layers.Lambda(lambda t: t * 2, name="lam"), name="withlambda")
    p = _saved(m, tmp_path, "keras")
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(p)
    _check_one_line(e, "'lam'", "(Lambda)", "supported layers:")


def test_keras_ops_call_in_functional_model():
    x = keras.Input((4,))
    m = keras.Model(x, layers.Dense(2, name="d")(x * 2.0))
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(m)
    _check_one_line(e, "not supported", "keras.ops")


def test_subclassed_model():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.d = layers.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), np.float32))
    with pytest.raises((UnsupportedLayerError, ModelLoadError)) as e:
        load_keras(net)
    _check_one_line(e, "net", "supported")


OPTION_CASES = {
    "bn_axis1": (lambda: _seq(layers.Conv2D(4, 3), layers.BatchNormalization(axis=1, name="bn")),
                 "'bn'", "(BatchNormalization)", "axis=1"),
    "channels_first_conv": (lambda: _seq(layers.Conv2D(4, 3, data_format="channels_first",
                                                       name="cf"), shape=(1, 8, 8)),
                            "'cf'", "(Conv2D)", "channels_first"),
    "channels_first_pool": (lambda: _seq(layers.MaxPooling2D(data_format="channels_first",
                                                             name="cfp"), shape=(1, 8, 8)),
                            "'cfp'", "(MaxPooling2D)", "channels_first"),
    "leaky_relu_layer": (lambda: _seq(layers.ReLU(negative_slope=0.1, name="lrelu")),
                         "'lrelu'", "(ReLU)", "negative_slope"),
    "relu_threshold": (lambda: _seq(layers.ReLU(threshold=0.5, name="trelu")),
                       "'trelu'", "(ReLU)", "threshold"),
    "dense_rank3": (lambda: _seq(layers.Dense(3, name="d3")), "'d3'", "(Dense)", "Flatten"),
    "sigmoid": (lambda: _seq(layers.Flatten(), layers.Dense(3, activation="sigmoid", name="sg")),
                "'sg'", "(Dense)", "sigmoid"),
    "tanh_layer": (lambda: _seq(layers.Activation("tanh", name="th")),
                   "'th'", "(Activation)", "tanh"),
    "softmax_hidden": (lambda: _seq(layers.Flatten(), layers.Dense(5, activation="softmax",
                                                                   name="sm"),
                                    layers.Dense(2)), "'sm'", "(Dense)", "softmax"),
    "dynamic_input": (lambda: _seq(layers.Conv2D(2, 3, name="c"), shape=(None, None, 1)),
                      "(InputLayer)", "fixed shape"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_unsupported_option(case):
    build, *needles = OPTION_CASES[case]
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(build())
    _check_one_line(e, "supported", *needles)


def test_softmax_only_before_outputs_from_file(tmp_path):
    m = OPTION_CASES["softmax_hidden"][0]()
    with pytest.raises(UnsupportedLayerError) as e:
        load_keras(_saved(m, tmp_path, "h5"))
    _check_one_line(e, "'sm'", "softmax", "not supported")
