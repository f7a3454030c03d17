"""Typed IR operations.

Every node of a neurocomp graph carries one of these dataclasses under the
node attribute ``op``.  Shapes never include the batch axis and are
channels-last (``(H, W, C)``), like Keras.  Each op knows

* ``kind`` -- its stable name in JSON and in error messages,
* ``arity`` -- how many inputs it takes (``None``: two or more),
* ``infer_shape(input_shapes)`` -- its output shape, raising ``IRError`` when
  its parameters do not fit its inputs,
* ``evaluate(inputs)`` -- its float semantics on a batch (``float64``),
  given in the docstring as an equation.  This is the oracle every spiking
  backend is compared with.

Array-valued fields (``np.ndarray``) are parameters; they are stored in the
NPZ half of a saved graph, everything else in the JSON half.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neurocomp.errors import NeurocompError

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], tuple[int, int]]


class IRError(NeurocompError, ValueError):
    """The graph or one of its nodes is inconsistent."""


OP_TYPES: dict[str, type["Op"]] = {}


def register(cls):
    OP_TYPES[cls.kind] = cls
    return cls


@dataclass
class Op:
    """Base class: ``shape`` is the output shape without the batch axis."""

    shape: Shape = ()
    kind: ClassVar[str] = "op"
    arity: ClassVar[Optional[int]] = 1

    def infer_shape(self, in_shapes: list[Shape]) -> Shape:  # pragma: no cover
        raise NotImplementedError

    def evaluate(self, xs: list[np.ndarray]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- introspection used by serialisation and reports --------------------
    def array_fields(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), np.ndarray)}

    def scalar_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not isinstance(getattr(self, f.name), np.ndarray)
                and getattr(self, f.name) is not None}

    def num_params(self) -> int:
        return int(sum(a.size for a in self.array_fields().values()))

    def synapses(self, in_shapes: list[Shape]) -> int:
        """Number of weighted connections this op makes (0 if none)."""
        return 0


def _one(in_shapes, kind, rank=None) -> Shape:
    (s,) = in_shapes
    if rank is not None and len(s) != rank:
        raise IRError(f"{kind} expects a rank-{rank} input (without batch), got shape {s}")
    return tuple(s)


def _conv_out(size: int, k: int, stride: int, dilation: int, pad: tuple[int, int]) -> int:
    eff = (k - 1) * dilation + 1
    n = size + pad[0] + pad[1] - eff
    if n < 0:
        raise IRError(f"kernel of extent {eff} does not fit input of size {size} with padding {pad}")
    return n // stride + 1


def same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding: extra pixel at the end when odd."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return (total // 2, total - total // 2)


def tied_block(weight: np.ndarray, strides, pads: Pads, dilation) -> int:
    """The largest ``s > 1`` such that a conv kernel (kh, kw, cin, cout) is constant
    over s x s tiles and its strides, kernel size and padding are multiples of s,
    else 1: the conv then equals sum-pooling by s followed by a conv s times smaller
    per axis (what ``fold_avgpool`` makes of an average pool and the conv after it)."""
    kh, kw = weight.shape[:2]
    if tuple(dilation) != (1, 1):
        return 1
    for s in range(min(strides), 1, -1):
        if any(v % s for v in (*strides, kh, kw, *pads[0], *pads[1])):
            continue
        tiles = weight.reshape(kh // s, s, kw // s, s, *weight.shape[2:])
        if (tiles == tiles[:, :1, :, :1]).all():
            return s
    return 1


def _windows(x: np.ndarray, k: tuple[int, int], strides, dilation, pads: Pads,
             pad_value: float = 0.0) -> np.ndarray:
    """(N,H,W,C) -> (N,Ho,Wo,C,kh,kw) strided view of receptive fields."""
    (pt, pb), (pl, pr) = pads
    if pt or pb or pl or pr:
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=pad_value)
    eh = (k[0] - 1) * dilation[0] + 1
    ew = (k[1] - 1) * dilation[1] + 1
    v = sliding_window_view(x, (eh, ew), axis=(1, 2))
    return v[:, ::strides[0], ::strides[1], :, ::dilation[0], ::dilation[1]]


@register
@dataclass
class Input(Op):
    """Network input: ``y = x``; ``shape`` is the input shape without batch."""

    kind: ClassVar[str] = "input"
    arity: ClassVar[Optional[int]] = 0

    def infer_shape(self, in_shapes):
        if in_shapes:
            raise IRError("input takes no inputs")
        if not self.shape or any(int(d) <= 0 for d in self.shape):
            raise IRError(f"input shape must be positive, got {self.shape}")
        return tuple(self.shape)

    def evaluate(self, xs):
        return xs[0]


@register
@dataclass
class Output(Op):
    """Network output marker: ``y = x``."""

    kind: ClassVar[str] = "output"

    def infer_shape(self, in_shapes):
        return _one(in_shapes, self.kind)

    def evaluate(self, xs):
        return xs[0]


@register
@dataclass
class Dense(Op):
    """Fully connected: ``y[j] = sum_i x[i] * weight[i, j] + bias[j]``.

    ``weight`` has shape ``(in, out)`` (Keras layout); ``bias`` may be None.
    """

    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    kind: ClassVar[str] = "dense"

    def infer_shape(self, in_shapes):
        (n,) = _one(in_shapes, self.kind, rank=1)
        if self.weight.ndim != 2 or self.weight.shape[0] != n:
            raise IRError(f"dense weight {self.weight.shape} does not fit input ({n},)")
        if self.bias is not None and self.bias.shape != (self.weight.shape[1],):
            raise IRError(f"dense bias {self.bias.shape} does not fit {self.weight.shape[1]} units")
        return (int(self.weight.shape[1]),)

    def evaluate(self, xs):
        y = xs[0] @ self.weight
        return y + self.bias if self.bias is not None else y

    def synapses(self, in_shapes):
        return int(self.weight.size)


@register
@dataclass
class Conv2D(Op):
    """2-D cross-correlation (grouped, strided, dilated, explicitly padded).

    ``y[n,i,j,o] = sum_{a,b,c} xpad[n, i*s0 + a*d0, j*s1 + b*d1, g(o)*Cg + c]
    * weight[a,b,c,o] + bias[o]`` with ``weight`` of shape
    ``(kh, kw, C_in / groups, C_out)`` (Keras layout), ``pads`` =
    ``((top, bottom), (left, right))`` zeros and ``g(o) = o // (C_out/groups)``.
    """

    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    strides: tuple[int, int] = (1, 1)
    pads: Pads = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kind: ClassVar[str] = "conv2d"

    def infer_shape(self, in_shapes):
        h, w, c = _one(in_shapes, self.kind, rank=3)
        kh, kw, cg, co = self.weight.shape
        if c % self.groups or co % self.groups or cg * self.groups != c:
            raise IRError(f"conv2d weight {self.weight.shape} with groups={self.groups} "
                          f"does not fit {c} input channels")
        if self.bias is not None and self.bias.shape != (co,):
            raise IRError(f"conv2d bias {self.bias.shape} does not fit {co} filters")
        return (_conv_out(h, kh, self.strides[0], self.dilation[0], self.pads[0]),
                _conv_out(w, kw, self.strides[1], self.dilation[1], self.pads[1]), co)

    def evaluate(self, xs):
        kh, kw, cg, co = self.weight.shape
        win = _windows(xs[0], (kh, kw), self.strides, self.dilation, self.pads)
        g = self.groups
        n, ho, wo = win.shape[:3]
        win = win.reshape(n, ho, wo, g, cg, kh, kw)
        wgt = self.weight.reshape(kh, kw, cg, g, co // g)
        y = np.einsum("nhwgcab,abcgo->nhwgo", win, wgt, optimize=True).reshape(n, ho, wo, co)
        return y + self.bias if self.bias is not None else y

    def synapses(self, in_shapes):
        h, w, co = self.infer_shape(in_shapes)
        kh, kw, cg, _ = self.weight.shape
        return int(h * w * co * kh * kw * cg)


@register
@dataclass
class DepthwiseConv2D(Op):
    """Depthwise convolution: each input channel ``c`` is filtered by its own
    ``weight[:, :, c, m]`` for ``m < multiplier``; output channel
    ``c * multiplier + m`` (Keras order).  ``weight``: ``(kh, kw, C, mult)``.
    """

    weight: np.ndarray = None
    bias: Optional[np.ndarray] = None
    strides: tuple[int, int] = (1, 1)
    pads: Pads = ((0, 0), (0, 0))
    dilation: tuple[int, int] = (1, 1)
    kind: ClassVar[str] = "depthwise_conv2d"

    def infer_shape(self, in_shapes):
        h, w, c = _one(in_shapes, self.kind, rank=3)
        kh, kw, cw, m = self.weight.shape
        if cw != c:
            raise IRError(f"depthwise weight {self.weight.shape} does not fit {c} channels")
        if self.bias is not None and self.bias.shape != (c * m,):
            raise IRError(f"depthwise bias {self.bias.shape} does not fit {c * m} channels")
        return (_conv_out(h, kh, self.strides[0], self.dilation[0], self.pads[0]),
                _conv_out(w, kw, self.strides[1], self.dilation[1], self.pads[1]), c * m)

    def evaluate(self, xs):
        kh, kw, c, m = self.weight.shape
        win = _windows(xs[0], (kh, kw), self.strides, self.dilation, self.pads)
        y = np.einsum("nhwcab,abcm->nhwcm", win, self.weight, optimize=True)
        y = y.reshape(y.shape[0], y.shape[1], y.shape[2], c * m)
        return y + self.bias if self.bias is not None else y

    def synapses(self, in_shapes):
        h, w, co = self.infer_shape(in_shapes)
        kh, kw = self.weight.shape[:2]
        return int(h * w * co * kh * kw)

    def as_grouped_conv(self) -> Conv2D:
        """The same operation as a ``Conv2D`` with ``groups = C``."""
        kh, kw, c, m = self.weight.shape
        wg = self.weight.reshape(kh, kw, 1, c * m)
        return Conv2D(shape=self.shape, weight=wg, bias=self.bias, strides=self.strides,
                      pads=self.pads, dilation=self.dilation, groups=c)


@dataclass
class _Pool2D(Op):
    pool: tuple[int, int] = (2, 2)
    strides: tuple[int, int] = (2, 2)
    pads: Pads = ((0, 0), (0, 0))

    def infer_shape(self, in_shapes):
        h, w, c = _one(in_shapes, self.kind, rank=3)
        return (_conv_out(h, self.pool[0], self.strides[0], 1, self.pads[0]),
                _conv_out(w, self.pool[1], self.strides[1], 1, self.pads[1]), c)


@register
@dataclass
class AvgPool2D(_Pool2D):
    """Average pooling: ``y = mean`` of each window over the *valid* (unpadded)
    inputs, as Keras does for ``padding='same'``."""

    kind: ClassVar[str] = "avg_pool2d"

    def evaluate(self, xs):
        x = xs[0]
        win = _windows(x, self.pool, self.strides, (1, 1), self.pads)
        s = win.sum(axis=(-2, -1))
        if not any(p for pp in self.pads for p in pp):
            return s / (self.pool[0] * self.pool[1])
        ones = np.ones((1,) + x.shape[1:3] + (1,))
        cnt = _windows(ones, self.pool, self.strides, (1, 1), self.pads).sum(axis=(-2, -1))
        return s / cnt

    def synapses(self, in_shapes):
        h, w, c = self.infer_shape(in_shapes)
        return int(h * w * c * self.pool[0] * self.pool[1])


@register
@dataclass
class MaxPool2D(_Pool2D):
    """Max pooling: ``y = max`` of each window (padding never wins)."""

    kind: ClassVar[str] = "max_pool2d"

    def evaluate(self, xs):
        win = _windows(xs[0], self.pool, self.strides, (1, 1), self.pads, pad_value=-np.inf)
        return win.max(axis=(-2, -1))

    def synapses(self, in_shapes):
        h, w, c = self.infer_shape(in_shapes)
        return int(h * w * c * self.pool[0] * self.pool[1])


@register
@dataclass
class GlobalAvgPool2D(Op):
    """``y[c] = mean_{h,w} x[h,w,c]``; ``keepdims`` keeps shape ``(1,1,C)``."""

    keepdims: bool = False
    kind: ClassVar[str] = "global_avg_pool2d"

    def infer_shape(self, in_shapes):
        h, w, c = _one(in_shapes, self.kind, rank=3)
        return (1, 1, c) if self.keepdims else (c,)

    def evaluate(self, xs):
        return xs[0].mean(axis=(1, 2), keepdims=self.keepdims)

    def synapses(self, in_shapes):
        return int(np.prod(in_shapes[0]))


@register
@dataclass
class Flatten(Op):
    """Row-major (channels-last) flatten: index ``(h*W + w)*C + c``."""

    kind: ClassVar[str] = "flatten"

    def infer_shape(self, in_shapes):
        return (int(np.prod(_one(in_shapes, self.kind))),)

    def evaluate(self, xs):
        return xs[0].reshape(xs[0].shape[0], -1)


@register
@dataclass
class Reshape(Op):
    """Row-major reshape to ``target`` (no batch axis)."""

    target: Shape = ()
    kind: ClassVar[str] = "reshape"

    def infer_shape(self, in_shapes):
        s = _one(in_shapes, self.kind)
        if int(np.prod(s)) != int(np.prod(self.target)):
            raise IRError(f"cannot reshape {s} to {self.target}")
        return tuple(self.target)

    def evaluate(self, xs):
        return xs[0].reshape((xs[0].shape[0],) + tuple(self.target))


@register
@dataclass
class ZeroPadding2D(Op):
    """Zero padding ``((top, bottom), (left, right))`` on H and W."""

    pads: Pads = ((0, 0), (0, 0))
    kind: ClassVar[str] = "zero_padding2d"

    def infer_shape(self, in_shapes):
        h, w, c = _one(in_shapes, self.kind, rank=3)
        (t, b), (l, r) = self.pads
        return (h + t + b, w + l + r, c)

    def evaluate(self, xs):
        (t, b), (l, r) = self.pads
        return np.pad(xs[0], ((0, 0), (t, b), (l, r), (0, 0)))


@register
@dataclass
class BatchNorm(Op):
    """Inference batch normalisation over the last axis:
    ``y = gamma * (x - mean) / sqrt(var + epsilon) + beta``."""

    gamma: np.ndarray = None
    beta: np.ndarray = None
    mean: np.ndarray = None
    var: np.ndarray = None
    epsilon: float = 1e-3
    kind: ClassVar[str] = "batchnorm"

    def infer_shape(self, in_shapes):
        s = _one(in_shapes, self.kind)
        for n in ("gamma", "beta", "mean", "var"):
            if getattr(self, n).shape != (s[-1],):
                raise IRError(f"batchnorm {n} {getattr(self, n).shape} does not fit channels {s[-1]}")
        return s

    def scale_offset(self) -> tuple[np.ndarray, np.ndarray]:
        """The affine form ``y = scale * x + offset``."""
        scale = self.gamma / np.sqrt(self.var + self.epsilon)
        return scale, self.beta - self.mean * scale

    def evaluate(self, xs):
        scale, offset = self.scale_offset()
        return xs[0] * scale + offset


@register
@dataclass
class Scale(Op):
    """Element-wise affine ``y = x * scale + offset`` over the last axis
    (``scale``/``offset`` of shape ``(C,)`` or ``()``), e.g. Keras Rescaling."""

    scale: np.ndarray = None
    offset: np.ndarray = None
    kind: ClassVar[str] = "scale"

    def infer_shape(self, in_shapes):
        s = _one(in_shapes, self.kind)
        for n in ("scale", "offset"):
            a = getattr(self, n)
            if a.ndim > 1 or (a.ndim == 1 and a.shape[0] not in (1, s[-1])):
                raise IRError(f"scale {n} {a.shape} does not fit channels {s[-1]}")
        return s

    def evaluate(self, xs):
        return xs[0] * self.scale + self.offset


ACTIVATIONS = ("relu", "linear", "softmax")


@register
@dataclass
class Activation(Op):
    """Point-wise non-linearity.

    ``relu``: ``y = min(max(x, 0), max_value)`` (``max_value`` None: no cap);
    ``linear``: ``y = x``; ``softmax``: over the last axis (output layer only).
    """

    function: str = "relu"
    max_value: Optional[float] = None
    kind: ClassVar[str] = "activation"

    def infer_shape(self, in_shapes):
        if self.function not in ACTIVATIONS:
            raise IRError(f"activation '{self.function}' is not one of {ACTIVATIONS}")
        return _one(in_shapes, self.kind)

    def evaluate(self, xs):
        x = xs[0]
        if self.function == "relu":
            y = np.maximum(x, 0.0)
            return y if self.max_value is None else np.minimum(y, self.max_value)
        if self.function == "softmax":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return x


@register
@dataclass
class Add(Op):
    """Element-wise sum of two or more inputs of equal shape."""

    kind: ClassVar[str] = "add"
    arity: ClassVar[Optional[int]] = None

    def infer_shape(self, in_shapes):
        if len({tuple(s) for s in in_shapes}) != 1:
            raise IRError(f"add inputs differ in shape: {in_shapes}")
        return tuple(in_shapes[0])

    def evaluate(self, xs):
        return sum(xs[1:], xs[0])


@register
@dataclass
class Concatenate(Op):
    """Concatenation along ``axis`` (of the shape without batch; non-negative)."""

    axis: int = -1
    kind: ClassVar[str] = "concatenate"
    arity: ClassVar[Optional[int]] = None

    def infer_shape(self, in_shapes):
        rank = len(in_shapes[0])
        ax = self.axis % rank
        for s in in_shapes:
            if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, in_shapes[0])) if i != ax):
                raise IRError(f"concatenate inputs {in_shapes} do not match off axis {ax}")
        out = list(in_shapes[0])
        out[ax] = sum(s[ax] for s in in_shapes)
        return tuple(out)

    def evaluate(self, xs):
        return np.concatenate(xs, axis=(self.axis % (xs[0].ndim - 1)) + 1)


WEIGHTED_KINDS = ("dense", "conv2d", "depthwise_conv2d")


def op_from_dict(kind: str, scalars: dict, arrays: dict) -> Op:
    """Rebuild an op from its JSON scalars and NPZ arrays."""
    if kind not in OP_TYPES:
        raise IRError(f"unknown op kind '{kind}'; known: {sorted(OP_TYPES)}")
    cls = OP_TYPES[kind]
    kw = {}
    for f in dataclasses.fields(cls):
        if f.name in arrays:
            kw[f.name] = arrays[f.name]
        elif f.name in scalars:
            kw[f.name] = _tupleize(scalars[f.name])
    return cls(**kw)


def _tupleize(v):
    if isinstance(v, list):
        return tuple(_tupleize(x) for x in v)
    return v


__all__ = ["Op", "IRError", "OP_TYPES", "WEIGHTED_KINDS", "ACTIVATIONS", "same_pads",
           "op_from_dict"] + sorted(c.__name__ for c in OP_TYPES.values())
