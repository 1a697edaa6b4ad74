"""Caffe-padded layers: padding forms, dilated convolution forward and gradient against
SpaceToBatch/numpy."""

import numpy as np
import pytest
import tensorflow as tf

from nets import custom_layers
from tests.conftest import require_nchw

v1 = tf.compat.v1


def numpy_dilated_conv(x, w, rate, pad):
    """NHWC, stride 1, zero padding `pad` (int: symmetric; else ((top, bottom), (left, right)))."""
    pads = ((pad, pad), (pad, pad)) if isinstance(pad, int) else pad
    xp = np.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    k_h, k_w = w.shape[:2]
    h = xp.shape[1] - rate * (k_h - 1)
    wd = xp.shape[2] - rate * (k_w - 1)
    out = np.zeros((x.shape[0], h, wd, w.shape[3]))
    for i in range(k_h):
        for j in range(k_w):
            out += xp[:, i * rate : i * rate + h, j * rate : j * rate + wd, :] @ w[i, j]
    return out


def numpy_dilated_conv_grads(x, w, dy, rate, pads):
    """(dL/dx, dL/dw) of L = sum(numpy_dilated_conv(x, w, rate, pads) * dy), by the chain rule
    tap by tap: each tap is a matmul of a shifted window of the padded input."""
    (top, bottom), (left, right) = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    h, wd = dy.shape[1:3]
    dxp, dw = np.zeros_like(xp, dtype=np.float64), np.zeros(w.shape)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            window = (slice(None), slice(i * rate, i * rate + h), slice(j * rate, j * rate + wd))
            dxp[window] += dy @ w[i, j].T
            dw[i, j] = np.einsum('bhwc,bhwo->co', xp[window], dy)
    return dxp[:, top : xp.shape[1] - bottom, left : xp.shape[2] - right], dw


@pytest.mark.parametrize(
    'kernel,rate,padding', [(3, 4, 'explicit'), (3, 4, 'SAME'), (2, 3, 'SAME'), (3, 4, 'VALID')]
)
@pytest.mark.parametrize('data_format', ['NHWC', 'NCHW'])
def test_dilated_conv_forward_and_gradients(data_format, kernel, rate, padding):
    if data_format == 'NCHW':
        require_nchw()
    # TF's 'SAME' puts the odd pixel at the bottom/right (kernel 2 at rate 3: 1 + 2 pixels; the
    # explicit form is Caffe's pad 4 at rate 4, which the layers turn into 'SAME').
    pads = {
        'explicit': ((4, 4), (4, 4)),
        'VALID': ((0, 0), (0, 0)),
        'SAME': ((rate * (kernel - 1) // 2, rate * (kernel - 1) - rate * (kernel - 1) // 2),) * 2,
    }[padding]
    rng = np.random.RandomState(kernel)
    x = rng.randn(2, 13, 11, 5).astype(np.float32)
    w = rng.randn(kernel, kernel, 5, 4).astype(np.float32)
    want_y = numpy_dilated_conv(x, w, rate, pads)
    dy = rng.randn(*want_y.shape).astype(np.float32)
    want_dx, want_dw = numpy_dilated_conv_grads(x, w, dy, rate, pads)
    to = (lambda a: a.transpose(0, 3, 1, 2)) if data_format == 'NCHW' else (lambda a: a)
    back = (lambda a: a.transpose(0, 2, 3, 1)) if data_format == 'NCHW' else (lambda a: a)
    tf_padding = padding
    if padding == 'explicit':
        spatial = [list(p) for p in pads]
        tf_padding = (
            [[0, 0], [0, 0]] + spatial if data_format == 'NCHW' else [[0, 0]] + spatial + [[0, 0]]
        )
    with tf.Graph().as_default(), v1.Session() as sess:
        tx, tw = tf.constant(to(x)), tf.constant(w)
        y = custom_layers._conv2d(tx, tw, 1, tf_padding, data_format, rate)
        gx, gw = tf.gradients(y, [tx, tw], tf.constant(to(dy)))
        y, gx, gw = sess.run([y, gx, gw])
    np.testing.assert_allclose(back(y), want_y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back(gx), want_dx, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(gw, want_dw, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    'kernel,stride,rate,pad,expected',
    [
        (3, 1, 1, 1, 'SAME'),
        (3, 1, 6, 6, 'SAME'),
        (1, 1, 1, 0, 'VALID'),
        (3, 1, 1, 0, 'VALID'),
        (3, 2, 1, 1, 'pad'),
        (4, 1, 1, 1, 'pad'),
    ],
)
def test_caffe_padding_equals_symmetric_zero_padding(kernel, stride, rate, pad, expected):
    rng = np.random.RandomState(kernel + stride + rate + pad)
    x = rng.randn(1, 10, 10, 2).astype(np.float32)
    w = rng.randn(kernel, kernel, 2, 3).astype(np.float32)
    with tf.Graph().as_default(), v1.Session() as sess:
        inputs, tf_padding = custom_layers._caffe_padding(
            tf.constant(x), pad, kernel, stride, rate, 'NHWC'
        )
        assert tf_padding == (expected if expected != 'pad' else 'VALID')
        y = sess.run(tf.nn.conv2d(inputs, w, stride, tf_padding, dilations=rate))
    want = numpy_dilated_conv(x, w, rate, pad)[:, ::stride, ::stride]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


def numpy_depthwise_conv_and_grads(x, w, dy, stride):
    """y, dL/dx, dL/dw of a depthwise conv (NHWC, Caffe pad 1, `stride`), L = sum(y * dy)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    k = w.shape[0]
    h, wd = dy.shape[1:3]
    y, dxp, dw = np.zeros(dy.shape), np.zeros_like(xp), np.zeros(w.shape)
    for i in range(k):
        for j in range(k):
            window = (
                slice(None),
                slice(i, i + stride * h, stride),
                slice(j, j + stride * wd, stride),
            )
            y += xp[window] * w[i, j, :, 0]
            dxp[window] += dy * w[i, j, :, 0]
            dw[i, j, :, 0] = (xp[window] * dy).sum(axis=(0, 1, 2))
    return y, dxp[:, 1:-1, 1:-1], dw


@pytest.mark.parametrize('dtype', [tf.float32, tf.bfloat16])
@pytest.mark.parametrize('stride', [1, 2])
def test_depthwise_conv_forward_and_gradients(dtype, stride):
    # bf16 takes a custom gradient (computed in float32); both against numpy.
    rng = np.random.RandomState(stride)
    x = rng.randn(2, 10, 10, 6).astype(np.float32)
    w = rng.randn(3, 3, 6, 1).astype(np.float32)
    dy = rng.randn(2, 10 // stride, 10 // stride, 6).astype(np.float32)
    if dtype == tf.bfloat16:  # Compare with inputs already rounded to bf16.
        x, w = (tf.cast(tf.cast(a, tf.bfloat16), tf.float32).numpy() for a in (x, w))
    want_y, want_dx, want_dw = numpy_depthwise_conv_and_grads(x, w, dy, stride)
    with tf.Graph().as_default(), v1.Session() as sess:
        tx = tf.constant(x)
        y = custom_layers.depthwise_conv2d(
            tf.cast(tx, dtype),
            3,
            stride=stride,
            padding=1,
            activation_fn=None,
            biases_initializer=None,
            weights_initializer=tf.constant_initializer(w),
            scope='dw',
        )
        (weights,) = v1.trainable_variables()
        gx, gw = tf.gradients(tf.cast(y, tf.float32), [tx, weights], tf.constant(dy))
        sess.run(v1.global_variables_initializer())
        y, gx, gw = sess.run([tf.cast(y, tf.float32), gx, gw])
    tol = 1e-4 if dtype == tf.float32 else 3e-2  # bf16: 8 mantissa bits in y and the grads.
    for got, want in ((y, want_y), (gx, want_dx), (gw, want_dw)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
