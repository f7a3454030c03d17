"""A zoo of small, really trained Keras models covering every layer the Keras
frontend supports (Sequential, Functional and nested).

Each builder trains for a few epochs on scikit-learn's 8x8 digits (scaled to
[0, 1], shape ``(N, 8, 8, 1)``) -- or on a small MNIST subset -- with fixed
seeds, and returns ``(model, x_test)``.  ``ZOO`` maps a name to its builder so
tests and benchmarks can parametrise over it; :func:`load_or_build` caches the
trained model on disk (``<cache>/<name>.keras`` + ``<name>.npz``) so several
processes (pytest-xdist workers, benchmarks) train each model only once.

Usage from a test (``tests/`` is on ``sys.path`` under pytest)::

    from keras_zoo import ZOO, load_or_build
    model, x = load_or_build("lenet", cache_dir)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import neurocomp  # noqa: F401  (quiet TensorFlow before it is imported)
from neurocomp.frontends.keras import import_keras

keras = import_keras()
layers = keras.layers

#: Where the shared MNIST file lives (``<project>/../shared/datasets``).
MNIST_PATH = Path(__file__).resolve().parents[1].parent / "shared/datasets/mnist.npz"

N_TEST = 200          # test inputs returned with each model
SEED = 1234

_DIGITS = None


def load_digits_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn digits as ``(x_train, y_train, x_test, y_test)``; x in [0, 1],
    shape ``(N, 8, 8, 1)`` float32; a fixed 80/20 split."""
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits
        d = load_digits()
        x = (d.images / 16.0).astype(np.float32)[..., None]
        y = d.target.astype(np.int64)
        idx = np.random.default_rng(0).permutation(len(x))
        cut = int(0.8 * len(x))
        tr, te = idx[:cut], idx[cut:]
        _DIGITS = (x[tr], y[tr], x[te], y[te])
    return _DIGITS


def load_mnist(path: Optional[os.PathLike | str] = None):
    """MNIST as ``(x_train, y_train, x_test, y_test)``: uint8 images
    ``(N, 28, 28)`` and int labels, read from ``shared/datasets/mnist.npz``.

    Raises ``FileNotFoundError`` (tests skip on it) when the file is absent.
    """
    p = Path(path) if path is not None else MNIST_PATH
    if not p.exists():
        raise FileNotFoundError(f"MNIST file not found: {p}")
    with np.load(p) as z:
        return z["x_train"], z["y_train"], z["x_test"], z["y_test"]


# -- helpers ----------------------------------------------------------------------

def _fit(model, x, y, *, epochs: int = 3, softmax: bool = False, lr: float = 3e-3,
         batch_size: int = 64):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not softmax),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    return model


def _digits_model(build: Callable, *, epochs: int = 3, softmax: bool = False,
                  transform: Callable = lambda x: x):
    keras.utils.set_random_seed(SEED)
    xtr, ytr, xte, _ = load_digits_data()
    model = build()
    _fit(model, transform(xtr), ytr, epochs=epochs, softmax=softmax)
    return model, transform(xte[:N_TEST])


def _inp(shape=(8, 8, 1), name="image"):
    return keras.Input(shape, name=name)


# -- the zoo ----------------------------------------------------------------------

def mlp_digits():
    """Sequential MLP with biases: Flatten -> Dense(relu) -> Dense."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Flatten(name="flatten"),
        layers.Dense(32, activation="relu", name="hidden"),
        layers.Dense(10, name="logits")], name="mlp_digits"), epochs=5)


def mlp_rescale_bn_dropout():
    """Raw 0..16 pixels -> Rescaling -> Dense -> BatchNorm -> ReLU -> Dropout
    -> Dense(softmax) (fused softmax at the output)."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Rescaling(1.0 / 16.0, offset=-0.25, name="rescale"),
        layers.Flatten(), layers.Dense(48, name="fc1"),
        layers.BatchNormalization(momentum=0.8, name="bn1"), layers.ReLU(name="relu1"),
        layers.Dropout(0.2, name="drop1"),
        layers.Dense(10, activation="softmax", name="probs")], name="mlp_rescale_bn_dropout"),
        epochs=5, softmax=True, transform=lambda x: x * 16.0)


def lenet():
    """LeNet-style: Conv2D(valid, relu) -> AveragePooling2D -> Conv2D -> Flatten -> Dense."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(6, 3, activation="relu", name="conv1"),
        layers.AveragePooling2D(2, name="pool1"),
        layers.Conv2D(16, 2, activation="relu", name="conv2"),
        layers.Flatten(name="flatten"), layers.Dense(10, name="logits")], name="lenet"),
        epochs=6)


def cnn_same_strides_dilation():
    """'same' padding, stride 2 (asymmetric pads), dilation 2, non-square kernel."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_same"),
        layers.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="conv_s2"),
        layers.Conv2D(12, (3, 2), dilation_rate=2, padding="same", activation="relu",
                      name="conv_d2"),
        layers.Flatten(), layers.Dense(10, name="logits")], name="cnn_same_strides_dilation"))


def cnn_bn_relu():
    """Conv (no bias) -> BatchNorm -> ReLU, then -> BatchNorm -> ReLU(max_value=6)."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1"),
        layers.BatchNormalization(momentum=0.8, name="bn1"), layers.ReLU(name="relu1"),
        layers.Conv2D(16, 3, strides=2, name="conv2"),
        layers.BatchNormalization(momentum=0.8, name="bn2"), layers.ReLU(max_value=6.0, name="relu6"),
        layers.Flatten(), layers.Dense(10, name="logits")], name="cnn_bn_relu"))


def mobilenet_block():
    """MobileNet-style: DepthwiseConv2D(depth_multiplier=2) -> BN -> ReLU6 ->
    pointwise Conv2D(relu6 activation) -> GlobalAveragePooling2D -> Dense."""
    def build():
        x = _inp()
        y = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
        y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(y)
        y = layers.BatchNormalization(momentum=0.8, name="dw_bn")(y)
        y = layers.ReLU(6.0, name="dw_relu")(y)
        y = layers.Conv2D(24, 1, activation="relu6", name="pw")(y)
        y = layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu",
                                   name="dw2")(y)
        y = layers.GlobalAveragePooling2D(name="gap")(y)
        return keras.Model(x, layers.Dense(10, name="logits")(y), name="mobilenet_block")
    return _digits_model(build, epochs=6)


def mobilenet_v2():
    """MobileNetV2-style inverted residuals: 1x1 expansion -> BN -> ReLU6 -> depthwise ->
    BN -> ReLU6 -> *linear* 1x1 projection -> BN, an Add without ReLU after it (the
    linear bottleneck, read by the next block's expansion and its Add), and a stride-2
    block without a skip."""
    def block(x, expand, out, stride, name):
        c = x.shape[-1]
        y = layers.Conv2D(c * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu")(layers.BatchNormalization(momentum=0.8, name=f"{name}_expand_bn")(y))
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.ReLU(6.0, name=f"{name}_dw_relu")(layers.BatchNormalization(momentum=0.8, name=f"{name}_dw_bn")(y))
        y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
        y = layers.BatchNormalization(momentum=0.8, name=f"{name}_project_bn")(y)
        return layers.Add(name=f"{name}_add")([x, y]) if stride == 1 and c == out else y

    def build():
        x = _inp()
        y = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
        y = layers.ReLU(6.0, name="stem_relu")(layers.BatchNormalization(momentum=0.8, name="stem_bn")(y))
        y = block(y, 2, 8, 1, "b1")
        y = block(y, 2, 8, 1, "b2")
        y = block(y, 2, 16, 2, "b3")
        y = layers.ReLU(6.0, name="head_relu")(layers.Conv2D(24, 1, name="head")(y))
        y = layers.GlobalAveragePooling2D(name="gap")(y)
        return keras.Model(x, layers.Dense(10, name="logits")(y), name="mobilenet_v2")
    return _digits_model(build, epochs=8)


def separable_cnn():
    """SeparableConv2D (depth multiplier 2, 'same'; then strided, 'valid') and a
    GlobalMaxPooling2D head."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(8, 3, padding="same", activation="relu", name="stem"),
        layers.SeparableConv2D(16, 3, padding="same", depth_multiplier=2, activation="relu", name="sep1"),
        layers.SeparableConv2D(24, 3, strides=2, activation="relu", name="sep2"),
        layers.GlobalMaxPooling2D(name="gmp"),
        layers.Dense(10, name="logits")], name="separable_cnn"), epochs=8)


def maxpool_cnn():
    """MaxPooling2D valid and 'same' (odd size, stride 1)."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        layers.MaxPooling2D(2, name="pool1"),
        layers.Conv2D(16, 2, activation="relu", name="conv2"),   # 3x3
        layers.MaxPooling2D(2, strides=1, padding="same", name="pool2"),
        layers.Flatten(), layers.Dense(10, name="logits")], name="maxpool_cnn"))


def gap_head():
    """GlobalAveragePooling2D(keepdims=True) -> Flatten, linear Activation layer."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
        layers.Conv2D(32, 3, activation="relu", name="conv2"),
        layers.GlobalAveragePooling2D(keepdims=True, name="gap"),
        layers.Flatten(name="flatten"), layers.Activation("linear", name="noop"),
        layers.Dense(10, name="logits")], name="gap_head"), epochs=8)


def zeropad_reshape():
    """Flat input -> Reshape -> asymmetric ZeroPadding2D -> conv -> AveragePooling2D
    ('same': Keras excludes padding from the mean) -> Reshape(-1) -> Dense."""
    return _digits_model(lambda: keras.Sequential([
        keras.Input((64,), name="pixels"), layers.Reshape((8, 8, 1), name="to_image"),
        layers.ZeroPadding2D(((1, 2), (2, 1)), name="pad"),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),           # 9x9
        layers.AveragePooling2D(3, strides=2, padding="same", name="pool"),  # 5x5
        layers.Reshape((-1,), name="to_vector"), layers.Dense(10, name="logits")],
        name="zeropad_reshape"), transform=lambda x: x.reshape(len(x), 64))


def residual():
    """Functional residual block: Add of a skip and a two-conv branch, then
    an Activation('relu') layer."""
    def build():
        x = _inp()
        a = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
        c = layers.Conv2D(8, 3, padding="same", activation="relu", name="res_conv1")(a)
        c = layers.Conv2D(8, 3, padding="same", name="res_conv2")(c)
        y = layers.Add(name="res_add")([a, c])
        y = layers.Activation("relu", name="res_relu")(y)
        y = layers.AveragePooling2D(2, name="pool")(y)
        y = layers.Flatten(name="flatten")(y)
        return keras.Model(x, layers.Dense(10, name="logits")(y), name="residual")
    return _digits_model(build)


def inception():
    """Functional inception block: four branches joined by Concatenate."""
    def build():
        x = _inp()
        s = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(x)
        b1 = layers.Conv2D(4, 1, activation="relu", name="b1_1x1")(s)
        b2 = layers.Conv2D(4, 1, activation="relu", name="b2_1x1")(s)
        b2 = layers.Conv2D(6, 3, padding="same", activation="relu", name="b2_3x3")(b2)
        b3 = layers.MaxPooling2D(3, strides=1, padding="same", name="b3_pool")(s)
        b3 = layers.Conv2D(4, 1, activation="relu", name="b3_1x1")(b3)
        b4 = layers.AveragePooling2D(3, strides=1, padding="same", name="b4_pool")(s)
        y = layers.Concatenate(name="concat")([b1, b2, b3, b4])
        y = layers.MaxPooling2D(2, name="pool")(y)
        y = layers.Flatten(name="flatten")(y)
        return keras.Model(x, layers.Dense(10, name="logits")(y), name="inception")
    return _digits_model(build)


def zeropad_cnn():
    """ZeroPadding2D folded into convolutions and a valid average pool (its zeros count in the
    mean); asymmetric padding before a strided conv."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.ZeroPadding2D(1, name="pad1"),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),                       # 8x8
        layers.ZeroPadding2D(((0, 1), (1, 0)), name="pad2"),
        layers.Conv2D(12, 3, strides=2, activation="relu", name="conv2"),           # 4x4
        layers.ZeroPadding2D(1, name="pad3"),
        layers.AveragePooling2D(2, name="pool"),                                    # 3x3
        layers.Flatten(name="flatten"), layers.Dense(10, name="logits")], name="zeropad_cnn"),
        epochs=6)


def resnet_bn():
    """Two residual blocks with BatchNorm: an identity skip and a strided 1x1 projection skip
    (conv + BN on both branches of the Add), ReLU after each Add, global average pooling."""
    def block(x, filters, stride, name):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_c1")(x)
        y = layers.BatchNormalization(momentum=0.8, name=f"{name}_bn1")(y)
        y = layers.ReLU(name=f"{name}_r1")(y)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_c2")(y)
        y = layers.BatchNormalization(momentum=0.8, name=f"{name}_bn2")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
            x = layers.BatchNormalization(momentum=0.8, name=f"{name}_projbn")(x)
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([x, y]))

    def build():
        x = _inp()
        y = layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(x)
        y = layers.BatchNormalization(momentum=0.8, name="stem_bn")(y)
        y = layers.ReLU(name="stem_relu")(y)
        y = block(y, 8, 1, "b1")
        y = block(y, 16, 2, "b2")
        y = layers.GlobalAveragePooling2D(name="gap")(y)
        return keras.Model(x, layers.Dense(10, name="logits")(y), name="resnet_bn")
    return _digits_model(build, epochs=8)


def grouped_conv():
    """Grouped Conv2D (groups=4) between ordinary convolutions."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        layers.Conv2D(16, 3, padding="same", groups=4, activation="relu", name="gconv"),
        layers.Conv2D(8, 1, activation="relu", name="mix"),
        layers.Flatten(), layers.Dense(10, name="logits")], name="grouped_conv"))


def noisy_regularised():
    """Every inference-time identity: GaussianNoise, SpatialDropout1D/2D/3D,
    GaussianDropout, AlphaDropout, Identity, Dropout."""
    return _digits_model(lambda: keras.Sequential([
        _inp(), layers.GaussianNoise(0.05, name="noise"),
        layers.Reshape((8, 8), name="rows"), layers.SpatialDropout1D(0.1, name="sdrop1"),
        layers.Reshape((2, 4, 8, 1), name="vol"), layers.SpatialDropout3D(0.1, name="sdrop3"),
        layers.Reshape((8, 8, 1), name="img"),
        layers.Conv2D(8, 3, activation="relu", name="conv1"),
        layers.SpatialDropout2D(0.1, name="sdrop2"),
        layers.Conv2D(16, 3, activation="relu", name="conv2"),
        layers.GaussianDropout(0.1, name="gdrop"), layers.Flatten(),
        layers.AlphaDropout(0.05, name="adrop"), layers.Identity(name="ident"),
        layers.Dense(32, activation="relu", name="fc"), layers.Dropout(0.1, name="drop"),
        layers.Dense(10, name="logits")], name="noisy_regularised"))


def softmax_classifier():
    """Softmax as separate output layers: Activation('softmax') / Softmax()."""
    def build():
        x = _inp()
        y = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(x)
        y = layers.Flatten(name="flatten")(y)
        y = layers.Dense(10, name="logits")(y)
        return keras.Model(x, layers.Activation("softmax", name="probs")(y),
                           name="softmax_classifier")
    return _digits_model(build, softmax=True, epochs=5)


def nested_sequential():
    """A Functional model calling a nested Sequential feature block, with a
    Softmax-layer head (nested models are inlined)."""
    def build():
        block = keras.Sequential([
            layers.Conv2D(8, 3, padding="same", activation="relu", name="blk_conv"),
            layers.BatchNormalization(momentum=0.8, name="blk_bn"),
            layers.MaxPooling2D(2, name="blk_pool")], name="features")
        x = _inp()
        y = block(x)
        y = layers.Flatten(name="flatten")(y)
        y = layers.Dense(10, name="logits")(y)
        return keras.Model(x, layers.Softmax(name="probs")(y), name="nested_sequential")
    return _digits_model(build, softmax=True)


def mnist_cnn(n_train: int = 2000):
    """A strided CNN trained 1 epoch on ``n_train`` MNIST images (28x28x1)."""
    keras.utils.set_random_seed(SEED)
    xtr, ytr, xte, _ = load_mnist()
    xtr = (xtr[:n_train] / 255.0).astype(np.float32)[..., None]
    xte = (xte[:N_TEST] / 255.0).astype(np.float32)[..., None]
    model = keras.Sequential([
        keras.Input((28, 28, 1), name="image"),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1"),
        layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2"),
        layers.AveragePooling2D(2, name="pool"),
        layers.Flatten(name="flatten"), layers.Dense(10, name="logits")], name="mnist_cnn")
    _fit(model, xtr, ytr[:n_train], epochs=1, batch_size=32, lr=5e-3)
    return model, xte


ZOO: dict[str, Callable[[], tuple]] = {
    "mlp_digits": mlp_digits,
    "mlp_rescale_bn_dropout": mlp_rescale_bn_dropout,
    "lenet": lenet,
    "cnn_same_strides_dilation": cnn_same_strides_dilation,
    "cnn_bn_relu": cnn_bn_relu,
    "mobilenet_block": mobilenet_block,
    "mobilenet_v2": mobilenet_v2,
    "separable_cnn": separable_cnn,
    "maxpool_cnn": maxpool_cnn,
    "gap_head": gap_head,
    "zeropad_reshape": zeropad_reshape,
    "residual": residual,
    "inception": inception,
    "grouped_conv": grouped_conv,
    "zeropad_cnn": zeropad_cnn,
    "resnet_bn": resnet_bn,
    "noisy_regularised": noisy_regularised,
    "softmax_classifier": softmax_classifier,
    "nested_sequential": nested_sequential,
    "mnist_cnn": mnist_cnn,
}

#: Zoo entries that need ``shared/datasets/mnist.npz``.
NEEDS_MNIST = frozenset({"mnist_cnn"})


def labels_for(name: str) -> np.ndarray:
    """True labels of the ``x_test`` that zoo model ``name`` returns."""
    if name in NEEDS_MNIST:
        return load_mnist()[3][:N_TEST].astype(np.int64)
    return load_digits_data()[3][:N_TEST]


def build(name: str):
    """Train zoo model ``name`` afresh; returns ``(model, x_test)``."""
    return ZOO[name]()


_MEMO: dict[tuple[str, str], tuple] = {}


def load_or_build(name: str, cache_dir: Optional[os.PathLike | str] = None):
    """``(model, x_test)`` for zoo model ``name``, trained at most once.

    With ``cache_dir`` the trained model is kept as ``<name>.keras`` (and its
    test inputs as ``<name>.npz``) and reused by every process that points at
    the same folder; a file lock keeps concurrent processes from training the
    same model twice.  Within a process results are memoised.
    """
    key = (name, str(cache_dir))
    if key in _MEMO:
        return _MEMO[key]
    if cache_dir is None:
        _MEMO[key] = build(name)
        return _MEMO[key]
    d = Path(cache_dir)
    d.mkdir(parents=True, exist_ok=True)
    mp, xp = d / f"{name}.keras", d / f"{name}.npz"
    with _lock(d / f"{name}.lock"):
        if mp.exists() and xp.exists():
            model = keras.saving.load_model(mp, compile=False)
            with np.load(xp) as z:
                x = z["x"]
        else:
            model, x = build(name)
            tmp = d / f"{name}.tmp.keras"
            model.save(tmp)
            np.savez(d / f"{name}.tmp.npz", x=x)
            os.replace(d / f"{name}.tmp.npz", xp)
            os.replace(tmp, mp)
    _MEMO[key] = (model, x)
    return _MEMO[key]


class _lock:
    """A process-level file lock (filelock when available, else a no-op)."""

    def __init__(self, path: Path):
        try:
            from filelock import FileLock
            self._l = FileLock(str(path), timeout=600)
        except ImportError:  # pragma: no cover
            self._l = None

    def __enter__(self):
        if self._l is not None:
            self._l.acquire()
        return self

    def __exit__(self, *exc):
        if self._l is not None:
            self._l.release()
        return False


def layer_classes(model) -> set[str]:
    """Class names of every layer of ``model``, nested models included."""
    out = set()
    items = list(model._layers if isinstance(model, keras.Sequential) else model.layers)
    for layer in items:
        if isinstance(layer, keras.Model):
            out |= layer_classes(layer)
        else:
            out.add(type(layer).__name__)
    return out
