"""Per-op float semantics: every IR op's ``evaluate`` (through ``load_keras``
and ``ir.run_float``) against the matching single Keras layer with random
weights (no training), including the tricky geometry: 'same' padding on odd
sizes (asymmetric pads), strides, dilation, groups, depth multipliers, and
'same' average pooling (Keras excludes the padding from the mean)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from keras_zoo import keras, layers
from neurocomp import ir
from neurocomp.frontends.keras import load_keras
from neurocomp.ir import ops

TOL = 1e-4


def _randomise(model, rng):
    """Random parameters everywhere (Keras zero-initialises biases and BN stats)."""
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        new = [rng.normal(0.0, 0.5, size=w.shape).astype(np.float32) for w in ws]
        if isinstance(layer, layers.BatchNormalization):
            new[-1] = np.abs(new[-1]) + 0.2  # moving variance > 0
        layer.set_weights(new)


class Case:
    def __init__(self, id, make, *shapes, kind=None):
        self.id, self.make, self.shapes, self.kind = id, make, shapes, kind

    def model(self):
        ins = [keras.Input(s, name=f"in{i}") for i, s in enumerate(self.shapes)]
        y = self.make()(ins if len(ins) > 1 else ins[0])
        return keras.Model(ins if len(ins) > 1 else ins[0], y, name=f"case_{self.id}")


L = layers
CASES = [
    # Dense
    Case("dense", lambda: L.Dense(5), (7,), kind="dense"),
    Case("dense_nobias", lambda: L.Dense(5, use_bias=False), (7,), kind="dense"),
    Case("dense_relu", lambda: L.Dense(5, activation="relu"), (7,), kind="activation"),
    Case("dense_relu6", lambda: L.Dense(5, activation="relu6"), (7,), kind="activation"),
    Case("dense_softmax", lambda: L.Dense(5, activation="softmax"), (7,), kind="activation"),
    # Conv2D
    Case("conv_valid", lambda: L.Conv2D(4, 3), (8, 8, 3), kind="conv2d"),
    Case("conv_same", lambda: L.Conv2D(4, 3, padding="same"), (8, 8, 3), kind="conv2d"),
    Case("conv_same_even_kernel_odd_size", lambda: L.Conv2D(3, 4, padding="same"), (7, 7, 2),
         kind="conv2d"),
    Case("conv_same_s2_even", lambda: L.Conv2D(4, 3, strides=2, padding="same"), (8, 8, 2),
         kind="conv2d"),
    Case("conv_same_s2_odd", lambda: L.Conv2D(4, 3, strides=2, padding="same"), (9, 9, 2),
         kind="conv2d"),
    Case("conv_valid_s2", lambda: L.Conv2D(4, 3, strides=2), (9, 8, 2), kind="conv2d"),
    Case("conv_rect_strides", lambda: L.Conv2D(3, (2, 3), strides=(1, 2), padding="same"),
         (7, 6, 2), kind="conv2d"),
    Case("conv_dilation2_valid", lambda: L.Conv2D(3, 3, dilation_rate=2), (9, 9, 2),
         kind="conv2d"),
    Case("conv_dilation2_same", lambda: L.Conv2D(3, 3, dilation_rate=2, padding="same"),
         (7, 7, 2), kind="conv2d"),
    Case("conv_dilation21_same", lambda: L.Conv2D(3, (3, 2), dilation_rate=(2, 1),
                                                  padding="same"), (6, 7, 2), kind="conv2d"),
    Case("conv_groups2", lambda: L.Conv2D(6, 3, groups=2), (6, 6, 4), kind="conv2d"),
    Case("conv_groups3_same", lambda: L.Conv2D(6, 3, groups=3, padding="same"), (5, 5, 6),
         kind="conv2d"),
    Case("conv_groups4_s2", lambda: L.Conv2D(8, 3, groups=4, strides=2, padding="same"),
         (7, 7, 4), kind="conv2d"),
    Case("conv_nobias_relu", lambda: L.Conv2D(4, 3, use_bias=False, activation="relu"),
         (6, 6, 2), kind="activation"),
    # DepthwiseConv2D
    Case("dw_valid", lambda: L.DepthwiseConv2D(3), (6, 6, 3), kind="depthwise_conv2d"),
    Case("dw_mult2_same_odd", lambda: L.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
         (7, 7, 3), kind="depthwise_conv2d"),
    Case("dw_s2_same", lambda: L.DepthwiseConv2D(3, strides=2, padding="same"), (8, 8, 2),
         kind="depthwise_conv2d"),
    Case("dw_dilation2_same", lambda: L.DepthwiseConv2D(3, dilation_rate=2, padding="same",
                                                        depth_multiplier=2), (7, 6, 2),
         kind="depthwise_conv2d"),
    Case("dw_rect_nobias", lambda: L.DepthwiseConv2D((3, 2), use_bias=False), (5, 6, 2),
         kind="depthwise_conv2d"),
    # pooling
    Case("avg_valid", lambda: L.AveragePooling2D(2), (8, 8, 2), kind="avg_pool2d"),
    Case("avg_valid_odd", lambda: L.AveragePooling2D(2), (7, 7, 2), kind="avg_pool2d"),
    Case("avg_same_p3_s2", lambda: L.AveragePooling2D(3, strides=2, padding="same"), (7, 7, 2),
         kind="avg_pool2d"),
    Case("avg_same_p2_s1", lambda: L.AveragePooling2D(2, strides=1, padding="same"), (5, 5, 2),
         kind="avg_pool2d"),
    Case("avg_same_p2_s2_odd", lambda: L.AveragePooling2D(2, padding="same"), (5, 5, 1),
         kind="avg_pool2d"),
    Case("avg_rect", lambda: L.AveragePooling2D((2, 3), strides=(2, 1), padding="same"),
         (7, 8, 2), kind="avg_pool2d"),
    Case("avg_valid_p3_s2", lambda: L.AveragePooling2D(3, strides=2), (9, 9, 1),
         kind="avg_pool2d"),
    Case("max_valid", lambda: L.MaxPooling2D(2), (8, 8, 2), kind="max_pool2d"),
    Case("max_same_p3_s2", lambda: L.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2),
         kind="max_pool2d"),
    Case("max_same_p2_s1", lambda: L.MaxPooling2D(2, strides=1, padding="same"), (5, 5, 2),
         kind="max_pool2d"),
    Case("max_rect", lambda: L.MaxPooling2D((2, 3), strides=(2, 1), padding="same"), (7, 8, 2),
         kind="max_pool2d"),
    Case("gap", lambda: L.GlobalAveragePooling2D(), (5, 4, 3), kind="global_avg_pool2d"),
    Case("gap_keepdims", lambda: L.GlobalAveragePooling2D(keepdims=True), (5, 4, 3),
         kind="global_avg_pool2d"),
    # shape ops
    Case("flatten", lambda: L.Flatten(), (3, 4, 5), kind="flatten"),
    Case("reshape", lambda: L.Reshape((2, 12)), (4, 6), kind="reshape"),
    Case("reshape_infer", lambda: L.Reshape((-1, 3)), (4, 6), kind="reshape"),
    Case("zero_pad_asym", lambda: L.ZeroPadding2D(((1, 2), (0, 3))), (4, 5, 2),
         kind="zero_padding2d"),
    Case("zero_pad_1", lambda: L.ZeroPadding2D(1), (3, 3, 1), kind="zero_padding2d"),
    # affine
    Case("rescale_scalar", lambda: L.Rescaling(0.5, offset=0.2), (4, 4, 3), kind="scale"),
    Case("rescale_channels", lambda: L.Rescaling([0.5, 2.0, -1.0], offset=[0.1, 0.0, 0.3]),
         (4, 4, 3), kind="scale"),
    Case("bn_conv", lambda: L.BatchNormalization(), (5, 5, 3), kind="batchnorm"),
    Case("bn_vector_eps", lambda: L.BatchNormalization(epsilon=0.1), (7,), kind="batchnorm"),
    Case("bn_no_center_no_scale", lambda: L.BatchNormalization(center=False, scale=False),
         (4, 4, 2), kind="batchnorm"),
    Case("bn_axis3", lambda: L.BatchNormalization(axis=3), (4, 4, 2), kind="batchnorm"),
    # activations
    Case("act_relu", lambda: L.Activation("relu"), (4, 4, 2), kind="activation"),
    Case("act_relu6", lambda: L.Activation("relu6"), (9,), kind="activation"),
    Case("act_softmax", lambda: L.Activation("softmax"), (9,), kind="activation"),
    Case("act_linear", lambda: L.Activation("linear"), (9,), kind="output"),
    Case("relu_layer", lambda: L.ReLU(), (3, 3, 2), kind="activation"),
    Case("relu_max", lambda: L.ReLU(max_value=0.7), (3, 3, 2), kind="activation"),
    Case("softmax_layer", lambda: L.Softmax(), (3, 4), kind="activation"),
    # merges
    Case("add2", lambda: L.Add(), (4, 4, 2), (4, 4, 2), kind="add"),
    Case("add3", lambda: L.Add(), (6,), (6,), (6,), kind="add"),
    Case("concat_channels", lambda: L.Concatenate(), (4, 4, 2), (4, 4, 3), kind="concatenate"),
    Case("concat_height", lambda: L.Concatenate(axis=1), (2, 4, 2), (3, 4, 2),
         kind="concatenate"),
    Case("concat_width_pos", lambda: L.Concatenate(axis=2), (2, 4, 2), (2, 1, 2),
         kind="concatenate"),
    Case("concat_vectors", lambda: L.Concatenate(), (3,), (5,), (2,), kind="concatenate"),
    # inference identities
    Case("dropout", lambda: L.Dropout(0.5), (6,), kind="output"),
    Case("gaussian_noise", lambda: L.GaussianNoise(1.0), (3, 3, 1), kind="output"),
    Case("spatial_dropout2d", lambda: L.SpatialDropout2D(0.5), (3, 3, 2), kind="output"),
]


def _evaluate(case):
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    keras.utils.set_random_seed(7)
    model = case.model()
    _randomise(model, rng)
    xs = [rng.normal(size=(3,) + s).astype(np.float32) for s in case.shapes]
    ref = np.asarray(model(xs if len(xs) > 1 else xs[0], training=False), dtype=np.float64)
    g = load_keras(model)
    out = ir.run_float(g, {f"in{i}": x for i, x in enumerate(xs)})["output"]
    return g, ref, out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_keras_layer(case):
    g, ref, out = _evaluate(case)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    diff = float(np.abs(out - ref).max())
    scale = max(1.0, float(np.abs(ref).max()))
    assert diff <= TOL * scale, f"{case.id}: max |IR - Keras| = {diff:.3g}"
    (o,) = ir.output_nodes(g)
    last = ir.inputs_of(g, o)[0]
    assert ir.op(g, last if case.kind != "output" else o).kind == case.kind
    # the shape the IR inferred is the one Keras computed
    assert tuple(ir.op(g, o).shape) == tuple(ref.shape[1:])


def test_cases_cover_every_op_kind():
    kinds = set()
    for c in CASES:
        kinds.add(c.kind)
    kinds |= {"input", "output"}
    assert kinds == set(ops.OP_TYPES), set(ops.OP_TYPES) - kinds


@pytest.mark.parametrize("size,k,stride,dil", [
    (s, k, st, d) for s in (1, 4, 5, 7, 8) for k in (1, 2, 3, 4) for st in (1, 2, 3)
    for d in (1, 2) if not (st > 1 and d > 1)])
def test_same_pads_match_keras_output_size(size, k, stride, dil):
    lay = layers.Conv2D(1, (k, 1), strides=(stride, 1), dilation_rate=(dil, 1), padding="same")
    want = lay.compute_output_shape((None, size, 1, 1))[1]
    pads = ops.same_pads(size, k, stride, dil)
    assert ops._conv_out(size, k, stride, dil, pads) == want
