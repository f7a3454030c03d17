"""Keras frontend: a trained Keras 3 model -> a validated neurocomp IR graph.

Entry point: :func:`load_keras` (a ``.keras`` archive, a legacy ``.h5`` /
``.hdf5`` file, or an in-memory ``keras.Model``).  Sequential and Functional
models are supported, including models nested as layers inside others (their
layers are inlined).  Subclassed models are not (their graph is not known).

Conversion is driven by a registry: one handler per Keras layer class,
registered with ``@handler("ClassName")``; :data:`SUPPORTED_LAYERS` is the
sorted tuple of registered class names.  A layer whose class has no handler
raises :class:`~neurocomp.errors.UnsupportedLayerError` with a one-line
message naming the layer, its class and the supported list.  Problems with
the file itself raise :class:`~neurocomp.errors.ModelLoadError`.

Naming
------
* Every IR node that computes a Keras layer is named after the layer.  A
  layer called more than once (a shared layer) gets ``<name>_call<k>`` for its
  k-th extra call; layers of a nested model whose name is already taken get
  ``<submodel>_<name>``.
* Input nodes are named after their ``InputLayer``.
* A fused ``activation=`` of Dense / Conv2D / DepthwiseConv2D becomes a
  separate ``Activation`` node ``<layer>_act`` (nothing for ``linear``).
* ``SeparableConv2D`` becomes Keras' own pair: a ``DepthwiseConv2D`` node
  ``<layer>_depthwise`` (no bias, no activation) and a 1x1 ``Conv2D`` named
  after the layer (the ``fold_linear_layers`` pass composes them).
  ``GlobalMaxPooling2D`` becomes a ``MaxPool2D`` over the whole map (named
  ``<layer>_window`` and followed by a ``Flatten`` named after the layer,
  unless ``keepdims``).
* Each model output gets an ``Output`` node: ``"output"`` for a
  single-output model, ``"output_<i>"`` (in ``model.outputs`` order)
  otherwise.  Synthesised names never steal a Keras layer's name: on a clash
  a numeric suffix ``_1``, ``_2``... is appended.
* Inference-time identities (Dropout, SpatialDropout1D/2D/3D, GaussianNoise,
  GaussianDropout, AlphaDropout, Identity) produce no node at all.

Graph attributes: ``name`` (the model's name) and ``source = "keras"``.
Parameters are copied into float64 numpy arrays.

Softmax
-------
Softmax cannot be computed with spikes, but a classifier's final softmax does
not change its arg-max, so it is accepted **only** where every consumer is a
model output (later passes may drop it).  A softmax anywhere else raises
``UnsupportedLayerError`` here, at load time, so the user learns early.

Other restrictions (each raises ``UnsupportedLayerError`` naming the layer):
``data_format="channels_first"``; ``BatchNormalization`` on any axis but the
last; ``Dense`` on an input of rank > 1 (add a ``Flatten``); ``ReLU`` with
``negative_slope`` or ``threshold`` != 0; activations other than linear,
relu, relu6 and softmax; ``Rescaling`` whose scale/offset vary along any axis
but the channels axis; inputs with an unknown (``None``) dimension.

neurocomp's own layers
----------------------
``neurocomp.training.QCFS`` (quantised clipped ReLU) becomes a ReLU capped at
its trained threshold lambda, with ``meta["act_scale_hint"] = lambda`` and
``meta["qcfs_levels"] = L`` on the node (threshold balancing may use the hint
as the activation scale).  Only the class defined in ``neurocomp.training``
matches (``OWN_HANDLERS``), never a user class of the same name.

TensorFlow/Keras is imported lazily (inside the functions) and quietly, so
``import neurocomp.frontends.keras`` stays cheap.
"""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import networkx as nx
import numpy as np

from neurocomp.errors import ModelLoadError, UnsupportedLayerError
from neurocomp.ir import ops
from neurocomp.ir.graph import add_op, new_graph, output_nodes, validate
from neurocomp.ir.ops import IRError

__all__ = ["load_keras", "SUPPORTED_LAYERS", "HANDLERS", "handler", "import_keras"]

#: Keras layer class name -> conversion function (see :func:`handler`).
HANDLERS: dict[str, Callable] = {}

#: neurocomp's own layers (``neurocomp.training``) -> conversion function.  Kept apart
#: from HANDLERS: those are matched only for classes defined by Keras itself.
OWN_HANDLERS: dict[str, Callable] = {}
_OWN_MODULE = "neurocomp.training"

#: Model container classes whose layers are inlined.
_MODEL_CLASSES = ("Sequential", "Functional", "Model")

#: Layers that are the identity at inference time; they produce no IR node.
_IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                    "GaussianNoise", "GaussianDropout", "AlphaDropout", "Identity")

#: Keras activation name -> (IR function, max_value); None: no node (linear).
_ACTIVATIONS: dict[str, Optional[tuple[str, Optional[float]]]] = {
    "linear": None, "relu": ("relu", None), "relu6": ("relu", 6.0), "softmax": ("softmax", None)}

_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_RESAVE_HINT = "re-save the trained model with model.save('model.keras')"


def handler(*class_names: str):
    """Register the decorated function as the converter of Keras layer classes.

    The function is called as ``fn(builder, layer, name, inputs)`` with the
    node name reserved for the layer and the IR node names feeding it (in
    order); it adds its node(s) with ``builder.add`` and returns the name of
    the node that carries the layer's output (its input, for an identity).
    """
    def deco(fn):
        for c in class_names:
            HANDLERS[c] = fn
        return fn
    return deco


# -- lazy, quiet Keras import ---------------------------------------------------

_KERAS = None


def import_keras():
    """Import and return ``keras`` with TensorFlow's start-up chatter muted.

    TensorFlow writes C++ log lines to file descriptor 2 while it loads,
    before any log level applies; they are discarded unless
    ``NEUROCOMP_TF_VERBOSE=1``.  Python-side absl warnings are limited to
    errors.
    """
    global _KERAS
    if _KERAS is not None:
        return _KERAS
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import sys
    quiet = "tensorflow" not in sys.modules and os.environ.get("NEUROCOMP_TF_VERBOSE") != "1"
    saved = devnull = None
    if quiet:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
        except OSError:  # no usable fd 2: just import
            saved = None
    try:
        import keras
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        if devnull is not None:
            os.close(devnull)
    import logging
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices etc.
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    _KERAS = keras
    return keras


# -- errors ---------------------------------------------------------------------

def _one_line(s: str, limit: int = 240) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _short_reason(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return _one_line(f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__, 200)


def _supported_list() -> str:
    return ", ".join(SUPPORTED_LAYERS)


def _unsupported_class(name: str, cls: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"layer '{name}' ({cls}) is not supported; supported layers: {_supported_list()}")


def _unsupported(layer, what: str, fix: str = "") -> UnsupportedLayerError:
    """One-line error for a supported class used with an unsupported option."""
    msg = f"layer '{layer.name}' ({type(layer).__name__}): {what} is not supported"
    if fix:
        msg += f"; {fix}"
    return UnsupportedLayerError(_one_line(msg, 400))


# -- the builder ----------------------------------------------------------------

class _Builder:
    """Accumulates IR nodes while walking a Keras model."""

    def __init__(self, name: str, reserved: set[str]):
        self.g = new_graph(name)
        self.g.graph["source"] = "keras"
        self.reserved = reserved          # Keras layer names: synthesised names avoid them
        self.calls: dict[int, int] = {}   # id(layer) -> times converted
        self.origin: dict[str, tuple[str, str]] = {}  # node -> (layer name, class)

    # naming
    def fresh(self, base: str) -> str:
        """``base`` or ``base_<k>``: a name no node and no Keras layer uses."""
        cand, k = base, 0
        while cand in self.g or cand in self.reserved:
            k += 1
            cand = f"{base}_{k}"
        return cand

    def claim(self, layer, scope: tuple[str, ...]) -> str:
        """The node name for this call of ``layer``."""
        k = self.calls.get(id(layer), 0)
        self.calls[id(layer)] = k + 1
        base = layer.name if k == 0 else f"{layer.name}_call{k}"
        if base not in self.g and (k == 0 or base not in self.reserved):
            return base
        return self.fresh("_".join(scope + (base,)) if scope else base)

    # graph
    def shape(self, node: str) -> tuple[int, ...]:
        return tuple(self.g.nodes[node]["op"].shape)

    def add(self, name: str, op: ops.Op, inputs, layer) -> str:
        add_op(self.g, name, op, inputs)
        self.origin[name] = (layer.name, type(layer).__name__)
        return name

    def activation(self, layer, node: str, fn) -> str:
        """Append the node for a fused ``activation=`` of ``layer``."""
        spec = _activation_spec(layer, fn)
        if spec is None:
            return node
        func, cap = spec
        return self.add(self.fresh(f"{node}_act"), ops.Activation(function=func, max_value=cap),
                        [node], layer)


def _activation_spec(layer, fn):
    name = getattr(fn, "__name__", None)
    if name in _ACTIVATIONS:
        keras = import_keras()
        try:
            ok = keras.activations.get(name) is fn
        except Exception:  # pragma: no cover
            ok = False
        if ok:
            return _ACTIVATIONS[name]
        shown = f"{getattr(fn, '__module__', '?')}.{name} (not the Keras built-in '{name}')"
    else:
        shown = name or type(fn).__name__
    raise _unsupported(layer, f"activation '{shown}'",
                       f"supported activations: {', '.join(sorted(_ACTIVATIONS))}")


def _np(v) -> np.ndarray:
    keras = import_keras()
    return np.array(keras.ops.convert_to_numpy(v), dtype=np.float64)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def _check_channels_last(layer):
    fmt = getattr(layer, "data_format", None)
    if fmt not in (None, "channels_last"):
        raise _unsupported(layer, f"data_format='{fmt}'",
                           "neurocomp needs channels_last (the Keras default); rebuild the model "
                           "with data_format='channels_last'")


def _spatial_pads(layer, shape, kernel, strides, dilation) -> ops.Pads:
    pad = str(layer.padding).lower()
    if pad == "valid":
        return ((0, 0), (0, 0))
    if pad == "same":
        return (ops.same_pads(shape[0], kernel[0], strides[0], dilation[0]),
                ops.same_pads(shape[1], kernel[1], strides[1], dilation[1]))
    raise _unsupported(layer, f"padding='{layer.padding}'", "use 'valid' or 'same'")


def _rank3(b: _Builder, layer, node: str) -> tuple[int, int, int]:
    s = b.shape(node)
    if len(s) != 3:
        raise _unsupported(layer, f"an input of shape {s} (expected (height, width, channels))")
    return s


# -- handlers -------------------------------------------------------------------

@handler("InputLayer")
def _input(b, layer, name, inputs):
    shape = tuple(layer.batch_shape[1:])
    if not shape or any(d is None for d in shape):
        raise _unsupported(layer, f"input shape {tuple(layer.batch_shape)} with an unknown size",
                           "give keras.Input a fixed shape, e.g. keras.Input((28, 28, 1))")
    return b.add(name, ops.Input(shape=tuple(int(d) for d in shape)), [], layer)


@handler(*_IDENTITY_LAYERS)
def _identity(b, layer, name, inputs):
    (src,) = inputs
    return src


@handler("Dense")
def _dense(b, layer, name, inputs):
    (src,) = inputs
    s = b.shape(src)
    if len(s) != 1:
        raise _unsupported(layer, f"an input of rank {len(s)} (shape {s})",
                           "add a Flatten (or GlobalAveragePooling2D) before it")
    node = b.add(name, ops.Dense(weight=_np(layer.kernel), bias=_bias(layer)), [src], layer)
    return b.activation(layer, node, layer.activation)


def _conv_input(b, layer, inputs) -> tuple[str, dict]:
    """A conv layer's input node and its ``strides``/``dilation``/``pads``."""
    (src,) = inputs
    _check_channels_last(layer)
    s = _rank3(b, layer, src)
    k, st, dil = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
    return src, dict(strides=st, dilation=dil, pads=_spatial_pads(layer, s, k, st, dil))


def _bias(layer):
    return _np(layer.bias) if layer.use_bias else None


@handler("Conv2D")
def _conv2d(b, layer, name, inputs):
    src, geo = _conv_input(b, layer, inputs)
    op = ops.Conv2D(weight=_np(layer.kernel), bias=_bias(layer), groups=int(getattr(layer, "groups", 1) or 1),
                    **geo)
    return b.activation(layer, b.add(name, op, [src], layer), layer.activation)


@handler("DepthwiseConv2D")
def _depthwise(b, layer, name, inputs):
    src, geo = _conv_input(b, layer, inputs)
    kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    op = ops.DepthwiseConv2D(weight=_np(kernel), bias=_bias(layer), **geo)
    return b.activation(layer, b.add(name, op, [src], layer), layer.activation)


@handler("SeparableConv2D")
def _separable(b, layer, name, inputs):
    # Keras' own structure, a depthwise conv and a 1x1 conv with no activation
    # between; fold_linear_layers composes them into one conv
    src, geo = _conv_input(b, layer, inputs)
    dw = b.add(b.fresh(f"{name}_depthwise"), ops.DepthwiseConv2D(weight=_np(layer.depthwise_kernel), bias=None,
                                                                 **geo), [src], layer)
    pw = ops.Conv2D(weight=_np(layer.pointwise_kernel), bias=_bias(layer))
    return b.activation(layer, b.add(name, pw, [dw], layer), layer.activation)


def _pool(b, layer, name, inputs, cls):
    (src,) = inputs
    _check_channels_last(layer)
    s = _rank3(b, layer, src)
    pool = _pair(layer.pool_size)
    st = _pair(layer.strides if layer.strides is not None else layer.pool_size)
    pads = _spatial_pads(layer, s, pool, st, (1, 1))
    return b.add(name, cls(pool=pool, strides=st, pads=pads), [src], layer)


@handler("AveragePooling2D")
def _avgpool(b, layer, name, inputs):
    return _pool(b, layer, name, inputs, ops.AvgPool2D)


@handler("MaxPooling2D")
def _maxpool(b, layer, name, inputs):
    return _pool(b, layer, name, inputs, ops.MaxPool2D)


@handler("GlobalMaxPooling2D")
def _global_maxpool(b, layer, name, inputs):
    # a max pool whose one window is the whole map (the same ReLU tournament)
    (src,) = inputs
    _check_channels_last(layer)
    h, w, _ = _rank3(b, layer, src)
    if layer.keepdims:
        return b.add(name, ops.MaxPool2D(pool=(h, w), strides=(h, w)), [src], layer)
    pool = b.add(b.fresh(f"{name}_window"), ops.MaxPool2D(pool=(h, w), strides=(h, w)), [src], layer)
    return b.add(name, ops.Flatten(), [pool], layer)


@handler("GlobalAveragePooling2D")
def _gap(b, layer, name, inputs):
    (src,) = inputs
    _check_channels_last(layer)
    _rank3(b, layer, src)
    return b.add(name, ops.GlobalAvgPool2D(keepdims=bool(layer.keepdims)), [src], layer)


@handler("Flatten")
def _flatten(b, layer, name, inputs):
    (src,) = inputs
    if len(b.shape(src)) > 1:
        _check_channels_last(layer)
    return b.add(name, ops.Flatten(), [src], layer)


@handler("Reshape")
def _reshape(b, layer, name, inputs):
    (src,) = inputs
    total = int(np.prod(b.shape(src)))
    target = [int(d) if d is not None else -1 for d in layer.target_shape]
    if target.count(-1) > 1:
        raise _unsupported(layer, f"target shape {tuple(layer.target_shape)} with several unknowns")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        if known == 0 or total % known:
            raise _unsupported(layer, f"reshaping {b.shape(src)} to {tuple(layer.target_shape)}")
        target[target.index(-1)] = total // known
    return b.add(name, ops.Reshape(target=tuple(target)), [src], layer)


@handler("ZeroPadding2D")
def _zeropad(b, layer, name, inputs):
    (src,) = inputs
    _check_channels_last(layer)
    _rank3(b, layer, src)
    (t, bo), (le, r) = layer.padding
    return b.add(name, ops.ZeroPadding2D(pads=((int(t), int(bo)), (int(le), int(r)))), [src], layer)


def _channel_vector(layer, what: str, v, channels: int) -> np.ndarray:
    a = np.array(v, dtype=np.float64)
    if a.size == 1:
        return a.reshape(())
    if a.ndim >= 1 and all(d == 1 for d in a.shape[:-1]) and a.shape[-1] == channels:
        return a.reshape(channels)
    raise _unsupported(layer, f"{what} of shape {a.shape} (only a scalar or one value per channel)")


@handler("Rescaling")
def _rescaling(b, layer, name, inputs):
    (src,) = inputs
    c = b.shape(src)[-1]
    op = ops.Scale(scale=_channel_vector(layer, "scale", layer.scale, c),
                   offset=_channel_vector(layer, "offset", layer.offset, c))
    return b.add(name, op, [src], layer)


@handler("BatchNormalization")
def _batchnorm(b, layer, name, inputs):
    (src,) = inputs
    s = b.shape(src)
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(s) + 1  # with the batch axis
    if len(axes) != 1 or int(axes[0]) % rank != rank - 1:
        raise _unsupported(layer, f"axis={layer.axis}",
                           "only normalisation over the last (channels) axis, axis=-1, is supported")
    c = s[-1]
    gamma = _np(layer.gamma) if getattr(layer, "gamma", None) is not None else np.ones(c)
    beta = _np(layer.beta) if getattr(layer, "beta", None) is not None else np.zeros(c)
    op = ops.BatchNorm(gamma=gamma, beta=beta, mean=_np(layer.moving_mean),
                       var=_np(layer.moving_variance), epsilon=float(layer.epsilon))
    return b.add(name, op, [src], layer)


@handler("Activation")
def _activation(b, layer, name, inputs):
    (src,) = inputs
    spec = _activation_spec(layer, layer.activation)
    if spec is None:
        return src
    func, cap = spec
    return b.add(name, ops.Activation(function=func, max_value=cap), [src], layer)


@handler("ReLU")
def _relu(b, layer, name, inputs):
    (src,) = inputs
    slope = float(layer.negative_slope or 0.0)
    thr = float(layer.threshold or 0.0)
    if slope != 0.0:
        raise _unsupported(layer, f"negative_slope={slope:g} (leaky ReLU)", "use negative_slope=0")
    if thr != 0.0:
        raise _unsupported(layer, f"threshold={thr:g}", "use threshold=0")
    cap = None if layer.max_value is None else float(layer.max_value)
    return b.add(name, ops.Activation(function="relu", max_value=cap), [src], layer)


@handler("Softmax")
def _softmax(b, layer, name, inputs):
    (src,) = inputs
    axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    rank = len(b.shape(src)) + 1
    if len(axes) != 1 or int(axes[0]) % rank != rank - 1:
        raise _unsupported(layer, f"axis={layer.axis}", "only softmax over the last axis is supported")
    return b.add(name, ops.Activation(function="softmax"), [src], layer)


@handler("Add")
def _add(b, layer, name, inputs):
    if len(inputs) == 1:
        return inputs[0]
    return b.add(name, ops.Add(), inputs, layer)


@handler("Concatenate")
def _concat(b, layer, name, inputs):
    if len(inputs) == 1:
        return inputs[0]
    rank = len(b.shape(inputs[0])) + 1
    ax = int(layer.axis) % rank
    if ax == 0:
        raise _unsupported(layer, "concatenation along the batch axis")
    return b.add(name, ops.Concatenate(axis=ax - 1), inputs, layer)


def _qcfs(b, layer, name, inputs):
    """QCFS (``neurocomp.training``): a ReLU capped at the trained threshold lambda.

    The float IR computes the clipped (not the quantised) ReLU; the quantisation is
    what the spiking network does by itself in about ``levels`` steps when its
    threshold is lambda, hence the activation-scale hint."""
    (src,) = inputs
    lam = layer.threshold_value()
    node = b.add(name, ops.Activation(function="relu", max_value=lam), [src], layer)
    b.g.nodes[node]["meta"] = {"act_scale_hint": lam, "qcfs_levels": int(layer.levels)}
    return node


OWN_HANDLERS["QCFS"] = _qcfs

SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted(HANDLERS))


# -- walking Keras models --------------------------------------------------------

def _layer_names(model, acc: set[str]) -> set[str]:
    """Names of every layer (InputLayers and nested models' layers included)."""
    keras = import_keras()
    layers = list(model.layers)
    if isinstance(model, keras.Sequential):
        layers = list(getattr(model, "_layers", layers))
    else:
        try:
            layers += [t._keras_history.operation for t in model.inputs]
        except (AttributeError, ValueError):
            pass
    for layer in layers:
        acc.add(layer.name)
        if isinstance(layer, keras.Model) and layer is not model:
            _layer_names(layer, acc)
    return acc


def _convert_layer(b: _Builder, layer, inputs: list[str], scope: tuple[str, ...]) -> list[str]:
    keras = import_keras()
    if isinstance(layer, keras.Model):
        return _convert_model(b, layer, inputs, scope + (layer.name,))
    cls = type(layer).__name__
    if not isinstance(layer, keras.layers.Layer):
        raise UnsupportedLayerError(
            f"operation '{layer.name}' ({cls}, a keras.ops call) is not supported; use Keras "
            f"layers, supported layers: {_supported_list()}")
    if type(layer).__module__ == _OWN_MODULE and cls in OWN_HANDLERS:
        fn = OWN_HANDLERS[cls]
    else:
        fn = HANDLERS.get(cls)
        if fn is None or not type(layer).__module__.startswith("keras."):
            raise _unsupported_class(layer.name, cls)  # custom classes never match by name
    name = b.claim(layer, scope)
    try:
        return [fn(b, layer, name, list(inputs))]
    except IRError as e:
        raise _unsupported(layer, f"this configuration ({e})") from None


def _convert_model(b: _Builder, model, inputs: Optional[list[str]],
                   scope: tuple[str, ...] = ()) -> list[str]:
    """Add ``model``'s layers; ``inputs`` are the IR nodes feeding a nested
    model (None at top level: Input nodes are created).  Returns the IR node
    of each model output."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            if inputs is None:
                raise ModelLoadError(
                    f"Sequential model '{model.name}' is not built; give its first layer an input "
                    f"shape (keras.Input) or call it on data before converting")
            cur = list(inputs)
            for layer in model.layers:
                cur = _convert_layer(b, layer, cur, scope)
            return cur
        model = fn
    from keras.src.models.functional import Functional
    if not isinstance(model, Functional):
        raise UnsupportedLayerError(
            f"model '{model.name}' ({type(model).__name__}) is a subclassed model, which is not "
            f"supported; build it with the Sequential or Functional API")
    names: dict[int, str] = {}
    for i, t in enumerate(model.inputs):
        if inputs is None:
            layer = t._keras_history.operation
            names[id(t)] = _convert_layer(b, layer, [], scope)[0]
        else:
            names[id(t)] = inputs[i]
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            srcs = node.input_tensors
            if any(id(x) not in names for x in srcs):
                continue
            outs = _convert_layer(b, node.operation, [names[id(x)] for x in srcs], scope)
            if len(outs) != len(node.outputs):
                raise UnsupportedLayerError(
                    f"layer '{node.operation.name}' ({type(node.operation).__name__}) has "
                    f"{len(node.outputs)} outputs, which is not supported")
            for x, o in zip(node.outputs, outs):
                names[id(x)] = o
    missing = [t for t in model.outputs if id(t) not in names]
    if missing:
        raise ModelLoadError(f"model '{model.name}': cannot trace output(s) back to its inputs; "
                             f"{_RESAVE_HINT}")
    return [names[id(t)] for t in model.outputs]


def _prune_dead(g: nx.DiGraph) -> None:
    """Drop nodes feeding no output (unused outputs of nested models)."""
    keep = set()
    for o in output_nodes(g):
        keep |= nx.ancestors(g, o) | {o}
    unused = [n for n in g.nodes if n not in keep and isinstance(g.nodes[n]["op"], ops.Input)]
    if unused:
        raise UnsupportedLayerError(
            f"layer '{unused[0]}' (InputLayer): a model input that reaches no output is not "
            f"supported; remove it from the model's inputs")
    g.remove_nodes_from([n for n in list(g.nodes) if n not in keep])


def _check_softmax(b: _Builder) -> None:
    g = b.g
    for n in g.nodes:
        o = g.nodes[n]["op"]
        if isinstance(o, ops.Activation) and o.function == "softmax":
            bad = [s for s in g.successors(n) if not isinstance(g.nodes[s]["op"], ops.Output)]
            if bad:
                lname, cls = b.origin.get(n, (n, "Activation"))
                raise UnsupportedLayerError(
                    f"layer '{lname}' ({cls}): softmax feeding '{bad[0]}' is not supported; "
                    f"softmax cannot be computed with spikes and is only accepted as the last "
                    f"operation before a model output")


def _from_model(model) -> nx.DiGraph:
    keras = import_keras()
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"expected a path to a .keras/.h5 file or a keras.Model, got "
                             f"{type(model).__name__}")
    from keras.src.models.functional import Functional
    if not isinstance(model, (keras.Sequential, Functional)):
        raise UnsupportedLayerError(
            f"model '{model.name}' ({type(model).__name__}) is a subclassed model, which is not "
            f"supported; build it with the Sequential or Functional API")
    try:
        model.inputs
        model.outputs
    except (AttributeError, ValueError):
        raise ModelLoadError(
            f"model '{model.name}' has no defined inputs; build it with keras.Input(...) "
            f"(or call it on data) before converting") from None
    b = _Builder(model.name, _layer_names(model, set()))
    outs = _convert_model(b, model, None)
    for i, src in enumerate(outs):
        base = "output" if len(outs) == 1 else f"output_{i}"
        add_op(b.g, b.fresh(base), ops.Output(), [src])
    _prune_dead(b.g)
    _check_softmax(b)
    validate(b.g)
    return b.g


# -- files ----------------------------------------------------------------------

def _walk_config(cfg: Any):
    """Yield ``(layer name, class name)`` of every layer in a saved model config."""
    if not isinstance(cfg, dict):
        return
    for layer in (cfg.get("config") or {}).get("layers") or []:
        if not isinstance(layer, dict):
            continue
        cls = layer.get("class_name")
        module = str(layer.get("module") or "")
        lname = (layer.get("config") or {}).get("name") or layer.get("name") or "?"
        if module.startswith(("keras.src.ops", "keras.ops")):
            continue  # a keras.ops call, reported during conversion
        yield lname, cls
        if cls in _MODEL_CLASSES:
            yield from _walk_config(layer)


def _prescan(path: Path, kind: str) -> None:
    """Name an unsupported layer from the saved config, before Keras tries to
    deserialise it (custom or Lambda layers would otherwise fail to load with
    an obscure message)."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as z:
                cfg = json.loads(z.read("config.json"))
        else:
            import h5py
            with h5py.File(path, "r") as f:
                raw = f.attrs.get("model_config")
            if raw is None:
                return
            cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        found = list(_walk_config(cfg))
    except Exception:
        return  # let Keras report the problem
    for lname, cls in found:
        if cls not in HANDLERS and cls not in OWN_HANDLERS and cls not in _MODEL_CLASSES:
            raise _unsupported_class(lname, cls)


def _load_file(source) -> Any:
    path = Path(os.fspath(source)).expanduser()
    shown = str(source)
    if not path.exists():
        raise ModelLoadError(f"model file '{shown}' does not exist; check the path")
    if path.is_dir():
        raise ModelLoadError(f"model path '{shown}' is a directory (TensorFlow SavedModel?); "
                             f"{_RESAVE_HINT}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelLoadError(f"model file '{shown}' cannot be read ({_short_reason(e)}); "
                             f"check its permissions") from None
    if size == 0:
        raise ModelLoadError(f"model file '{shown}' is empty; {_RESAVE_HINT}")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelLoadError(f"model file '{shown}' is not a valid .keras archive (not a zip "
                                 f"file: truncated or not a Keras model?); {_RESAVE_HINT}")
        kind = "keras"
    elif suffix in (".h5", ".hdf5"):
        if head != _H5_SIGNATURE:
            raise ModelLoadError(f"model file '{shown}' is not an HDF5 file (truncated or not a "
                                 f"Keras model?); {_RESAVE_HINT}")
        kind = "h5"
    else:
        raise ModelLoadError(f"model file '{shown}' has an unknown extension '{path.suffix}'; "
                             f"expected .keras (or legacy .h5); {_RESAVE_HINT}")
    _prescan(path, kind)
    keras = import_keras()
    import neurocomp.training  # noqa: F401  registers QCFS & co. so files using them deserialise
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as e:
        raise ModelLoadError(f"model file '{shown}' could not be loaded as a Keras model "
                             f"({_short_reason(e)}); {_RESAVE_HINT}") from None
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"model file '{shown}' does not hold a Keras model; {_RESAVE_HINT}")
    return model


def load_keras(source) -> nx.DiGraph:
    """Convert a Keras model to a validated neurocomp IR graph.

    ``source``: path (``str`` / ``os.PathLike``) of a ``.keras`` archive or a
    legacy ``.h5``/``.hdf5`` file, or an in-memory ``keras.Model``.

    Raises ``ModelLoadError`` when the file is missing, empty, corrupt or not
    a Keras model, and ``UnsupportedLayerError`` when a layer (or a layer
    option) cannot be converted; both carry a one-line message.
    """
    if isinstance(source, (str, os.PathLike)):
        model = _load_file(source)
    else:
        model = source
    return _from_model(model)
