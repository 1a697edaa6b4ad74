"""Caffe-padded layers: padding forms, dilated convolution forward and gradient against
SpaceToBatch/numpy."""
import numpy as np
import pytest
import tensorflow as tf

from nets import custom_layers

v1 = tf.compat.v1


def numpy_dilated_conv(x, w, rate, pad):
    """NHWC, stride 1, symmetric zero padding."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    k = w.shape[0]
    h = xp.shape[1] - rate * (k - 1)
    wd = xp.shape[2] - rate * (k - 1)
    out = np.zeros((x.shape[0], h, wd, w.shape[3]))
    for i in range(k):
        for j in range(k):
            out += xp[:, i * rate:i * rate + h, j * rate:j * rate + wd, :] @ w[i, j]
    return out


@pytest.mark.parametrize('explicit', [True, False])
@pytest.mark.parametrize('data_format', ['NHWC', 'NCHW'])
def test_dilated_conv_forward_and_gradients(data_format, explicit):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 13, 13, 5).astype(np.float32)
    w = rng.randn(3, 3, 5, 4).astype(np.float32)
    dy = rng.randn(2, 13, 13, 4).astype(np.float32)
    to = (lambda a: a.transpose(0, 3, 1, 2)) if data_format == 'NCHW' else (lambda a: a)
    back = (lambda a: a.transpose(0, 2, 3, 1)) if data_format == 'NCHW' else (lambda a: a)
    with tf.Graph().as_default(), v1.Session() as sess:
        tx, tw = tf.constant(to(x)), tf.constant(w)
        padding = [[0, 0], [0, 0], [4, 4], [4, 4]] if data_format == 'NCHW' else \
            [[0, 0], [4, 4], [4, 4], [0, 0]]
        # Caffe's pad 4 at rate 4 is TF's 'SAME', the form the layers use; check both forms.
        y = custom_layers._conv2d(tx, tw, 1, padding if explicit else 'SAME', data_format, 4)
        gx, gw = tf.gradients(y, [tx, tw], tf.constant(to(dy)))
        # Reference gradients: the SpaceToBatch dilated convolution TF can differentiate on CPU.
        ref = tf.nn.atrous_conv2d(tf.pad(tf.constant(x), [[0, 0], [4, 4], [4, 4], [0, 0]]), tw, 4,
                                  'VALID')
        rw, = tf.gradients(ref, [tw], tf.constant(dy))
        y, gx, gw, rw = sess.run([y, gx, gw, rw])
    np.testing.assert_allclose(back(y), numpy_dilated_conv(x, w, 4, 4), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, rw, rtol=1e-4, atol=1e-3)
    # dL/dx of sum(y * dy) is the transposed dilated convolution of dy: check it numerically.
    eps = 1e-2
    idx = (1, 6, 7, 2)
    xp, xm = x.copy(), x.copy()
    xp[idx] += eps
    xm[idx] -= eps
    numeric = ((numpy_dilated_conv(xp, w, 4, 4) - numpy_dilated_conv(xm, w, 4, 4)) * dy).sum() / (2 * eps)
    np.testing.assert_allclose(back(gx)[idx], numeric, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize('kernel,stride,rate,pad,expected', [
    (3, 1, 1, 1, 'SAME'), (3, 1, 6, 6, 'SAME'), (1, 1, 1, 0, 'VALID'), (3, 1, 1, 0, 'VALID'),
    (3, 2, 1, 1, 'pad'), (4, 1, 1, 1, 'pad')])
def test_caffe_padding_equals_symmetric_zero_padding(kernel, stride, rate, pad, expected):
    rng = np.random.RandomState(kernel + stride + rate + pad)
    x = rng.randn(1, 10, 10, 2).astype(np.float32)
    w = rng.randn(kernel, kernel, 2, 3).astype(np.float32)
    with tf.Graph().as_default(), v1.Session() as sess:
        inputs, tf_padding = custom_layers._caffe_padding(tf.constant(x), pad, kernel, stride,
                                                          rate, 'NHWC')
        assert tf_padding == (expected if expected != 'pad' else 'VALID')
        y = sess.run(tf.nn.conv2d(inputs, w, stride, tf_padding, dilations=rate))
    want = numpy_dilated_conv(x, w, rate, pad)[:, ::stride, ::stride]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
