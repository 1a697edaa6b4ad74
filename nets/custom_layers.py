"""Layers with Caffe's semantics, usable under `slim.arg_scope`.

Caffe pads symmetrically; TF's 'SAME' pads more at the bottom/right on stride-2 layers and cannot
express kernel-4 pad-1, so convolutions take Caffe's integer `padding` (see `_caffe_padding`).
Variables are named as slim names them (`weights`, `biases`, `depthwise_weights`) so TF-Slim
checkpoints load unchanged. Dilation is passed to the convolution itself, not lowered to
SpaceToBatch as `slim.conv2d(rate=...)` does (2-3x slower on the dilated layer on CPU).
"""

import tensorflow as tf
import tf_slim as slim
from tf_slim import add_arg_scope

v1 = tf.compat.v1


def _caffe_padding(inputs, padding, kernel_size, stride, rate, data_format):
    """Caffe's symmetric integer pad -> `(inputs, TF padding)`; strings pass through.

    'VALID' for no pad, 'SAME' where TF pads the same way (stride 1, pad = rate * (k - 1) / 2),
    else the input is padded explicitly and convolved 'VALID'. TF's explicit-padding attribute
    would express all of these, but its convolution gradients then leave oneDNN for much slower
    kernels (2.5x in fp32, 25x in bf16 on the MobileNet training step, measured).
    """
    if isinstance(padding, str):
        return inputs, padding
    if padding == 0:
        return inputs, 'VALID'
    if stride == 1 and 2 * padding == rate * (kernel_size - 1):
        return inputs, 'SAME'
    spatial = [[padding, padding], [padding, padding]]
    paddings = (
        [[0, 0], [0, 0]] + spatial if data_format == 'NCHW' else [[0, 0]] + spatial + [[0, 0]]
    )
    return tf.pad(inputs, paddings), 'VALID'


def _strides(stride, data_format):
    return [1, 1, stride, stride] if data_format == 'NCHW' else [1, stride, stride, 1]


def _channels(inputs, data_format):
    return int(inputs.shape[1 if data_format == 'NCHW' else -1])


def _spatial_pads(padding, kernel_shape, rate, data_format):
    """[(top, bottom), (left, right)] zero padding of a stride-1 convolution: 'SAME' (TF puts the
    odd pixel at the bottom/right), 'VALID', or an explicit 4x2 list in `data_format` order."""
    if padding == 'VALID':
        return [(0, 0), (0, 0)]
    if padding == 'SAME':
        totals = [rate * (k - 1) for k in kernel_shape]
        return [(t // 2, t - t // 2) for t in totals]
    dims = (2, 3) if data_format == 'NCHW' else (1, 2)
    return [tuple(padding[d]) for d in dims]


def _dilated_conv2d_grads(x, w, dy, pads, rate):
    """(dL/dx, dL/dw) of `y = conv2d(pad(x, pads), w, 1, 'VALID', dilations=rate)`, NHWC.

    TF's CPU backprop kernels reject dilations, and the SpaceToBatch form they would need runs
    3x3 convolutions on tiny 6x6 blocks (conv6 of VGG-SSD: ~22 % of a bf16 training step). Here
    dL/dx is itself a dilated convolution (of dy with the flipped, transposed kernel: the native
    forward kernel), and dL/dw one matmul per kernel tap: dw[i, j] = x_tap^T dy.
    """
    (top, bottom), (left, right) = pads
    k_h, k_w = int(w.shape[0]), int(w.shape[1])
    span_h, span_w = rate * (k_h - 1), rate * (k_w - 1)
    flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
    dy_padded = tf.pad(
        dy, [[0, 0], [span_h - top, span_h - bottom], [span_w - left, span_w - right], [0, 0]]
    )
    dx = tf.nn.conv2d(dy_padded, flipped, 1, 'VALID', dilations=rate)
    x_padded = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
    height, width = tf.shape(dy)[1], tf.shape(dy)[2]
    dy_rows = tf.reshape(dy, [-1, int(w.shape[3])])
    taps = [
        tf.matmul(
            tf.reshape(
                x_padded[:, i * rate : i * rate + height, j * rate : j * rate + width],
                [-1, int(w.shape[2])],
            ),
            dy_rows,
            transpose_a=True,
        )
        for i in range(k_h)
        for j in range(k_w)
    ]
    return dx, tf.reshape(tf.stack(taps), w.shape)


def _conv2d(inputs, weights, strides, padding, data_format, rate):
    """`tf.nn.conv2d` (padding 'SAME', 'VALID' or explicit); a dilated one (stride 1) keeps the
    native forward kernel and gets its gradient from `_dilated_conv2d_grads`."""
    if rate == 1:
        return tf.nn.conv2d(inputs, weights, strides, padding, data_format=data_format)
    pads = _spatial_pads(padding, weights.shape[:2], rate, data_format)
    to_nhwc = (lambda t: tf.transpose(t, [0, 2, 3, 1])) if data_format == 'NCHW' else tf.identity
    to_input = (lambda t: tf.transpose(t, [0, 3, 1, 2])) if data_format == 'NCHW' else tf.identity

    @tf.custom_gradient
    def dilated(x, w):
        def grad(dy):
            dx, dw = _dilated_conv2d_grads(to_nhwc(x), w, to_nhwc(dy), pads, rate)
            return to_input(dx), dw

        return tf.nn.conv2d(x, w, strides, padding, data_format=data_format, dilations=rate), grad

    return dilated(inputs, weights)


def _depthwise_conv2d(inputs, weights, strides, padding, data_format):
    """`tf.nn.depthwise_conv2d`; in bfloat16 its gradients are computed in float32.

    oneDNN's bf16 depthwise backward kernels are 2-4x slower than its fp32 ones on an AVX-512
    BF16 CPU (measured: 213 vs 72 ms per MobileNet-SSD training step at batch 8), while the bf16
    forward is the faster one; the casts cost a few ms.
    """
    if inputs.dtype != tf.bfloat16:
        return tf.nn.depthwise_conv2d(inputs, weights, strides, padding, data_format=data_format)

    @tf.custom_gradient
    def depthwise(x, w):
        def grad(dy):
            x32, w32, dy32 = (tf.cast(t, tf.float32) for t in (x, w, dy))
            dx = tf.nn.depthwise_conv2d_backprop_input(
                tf.shape(x), w32, dy32, strides, padding, data_format=data_format
            )
            dw = tf.nn.depthwise_conv2d_backprop_filter(
                x32, tf.shape(w), dy32, strides, padding, data_format=data_format
            )
            return tf.cast(dx, x.dtype), tf.cast(dw, w.dtype)

        return tf.nn.depthwise_conv2d(x, w, strides, padding, data_format=data_format), grad

    return depthwise(inputs, weights)


def _caffe_conv(
    inputs,
    num_outputs,
    kernel_size,
    stride,
    padding,
    rate,
    depthwise,
    data_format,
    activation_fn,
    normalizer_fn,
    normalizer_params,
    weights_initializer,
    weights_regularizer,
    biases_initializer,
    biases_regularizer,
    trainable,
):
    """The body of `conv2d` and of `depthwise_conv2d`, inside the layer's variable scope.

    Weights `weights` `[k, k, C, num_outputs]`, or with `depthwise` TF-Slim's `depthwise_weights`
    `[k, k, C, 1]` (C output channels; `num_outputs` unused, `rate` 1), then Caffe's `padding`
    (see `_caffe_padding`), the convolution, biases `[channels out]` (or the normaliser instead)
    and the activation. `inputs` and the result are in `data_format`.
    """
    channels = _channels(inputs, data_format)
    if depthwise:
        num_outputs = channels
    weights = slim.model_variable(
        'depthwise_weights' if depthwise else 'weights',
        shape=[kernel_size, kernel_size, channels, 1 if depthwise else num_outputs],
        initializer=weights_initializer or v1.glorot_uniform_initializer(),
        regularizer=weights_regularizer,
        trainable=trainable,
    )
    inputs, tf_padding = _caffe_padding(inputs, padding, kernel_size, stride, rate, data_format)
    weights = tf.cast(weights, inputs.dtype)
    strides = _strides(stride, data_format)
    if depthwise:
        outputs = _depthwise_conv2d(inputs, weights, strides, tf_padding, data_format)
    else:
        outputs = _conv2d(inputs, weights, strides, tf_padding, data_format, rate)
    if normalizer_fn is not None:
        outputs = normalizer_fn(outputs, **(normalizer_params or {}))
    elif biases_initializer is not None:
        biases = slim.model_variable(
            'biases',
            shape=[num_outputs],
            initializer=biases_initializer,
            regularizer=biases_regularizer,
            trainable=trainable,
        )
        outputs = tf.nn.bias_add(outputs, tf.cast(biases, outputs.dtype), data_format=data_format)
    return activation_fn(outputs) if activation_fn is not None else outputs


@add_arg_scope
def conv2d(
    inputs,
    num_outputs,
    kernel_size,
    stride=1,
    padding=0,
    rate=1,
    data_format='NHWC',
    activation_fn=tf.nn.relu,
    normalizer_fn=None,
    normalizer_params=None,
    weights_initializer=None,
    weights_regularizer=None,
    biases_initializer=v1.zeros_initializer(),
    biases_regularizer=None,
    trainable=True,
    scope=None,
    reuse=None,
):
    """2-D convolution with Caffe padding.

    Args:
      inputs: float tensor `[B, H, W, C]` (NHWC) or `[B, C, H, W]` (NCHW).
      kernel_size: int (square kernel).
      padding: Caffe's symmetric pad in pixels (int), or 'SAME' / 'VALID'.
      rate: dilation.
    Variables: `<scope>/weights` `[k, k, C, num_outputs]` and `<scope>/biases` `[num_outputs]`
    (no biases when a normaliser follows).
    """
    with v1.variable_scope(scope, 'Conv', [inputs], reuse=reuse):
        return _caffe_conv(
            inputs,
            num_outputs,
            kernel_size,
            stride,
            padding,
            rate,
            depthwise=False,
            data_format=data_format,
            activation_fn=activation_fn,
            normalizer_fn=normalizer_fn,
            normalizer_params=normalizer_params,
            weights_initializer=weights_initializer,
            weights_regularizer=weights_regularizer,
            biases_initializer=biases_initializer,
            biases_regularizer=biases_regularizer,
            trainable=trainable,
        )


@add_arg_scope
def depthwise_conv2d(
    inputs,
    kernel_size,
    stride=1,
    padding=0,
    data_format='NHWC',
    activation_fn=tf.nn.relu,
    normalizer_fn=None,
    normalizer_params=None,
    weights_initializer=None,
    weights_regularizer=None,
    biases_initializer=v1.zeros_initializer(),
    biases_regularizer=None,
    trainable=True,
    scope=None,
    reuse=None,
):
    """Depthwise 3x3 convolution (Caffe `group == channels`), depth multiplier 1.

    Variables: `<scope>/depthwise_weights` `[k, k, C, 1]` (TF-Slim's name) and, without a
    normaliser, `<scope>/biases` `[C]`.
    """
    with v1.variable_scope(scope, 'DepthwiseConv', [inputs], reuse=reuse):
        return _caffe_conv(
            inputs,
            None,
            kernel_size,
            stride,
            padding,
            1,
            depthwise=True,
            data_format=data_format,
            activation_fn=activation_fn,
            normalizer_fn=normalizer_fn,
            normalizer_params=normalizer_params,
            weights_initializer=weights_initializer,
            weights_regularizer=weights_regularizer,
            biases_initializer=biases_initializer,
            biases_regularizer=biases_regularizer,
            trainable=trainable,
        )


@add_arg_scope
def max_pool2d(inputs, kernel_size, stride, padding='SAME', data_format='NHWC', scope=None):
    """Max pooling. 'SAME' reproduces Caffe's ceil-mode pooling for the 2x2/2 and 3x3/1-pad-1
    pools of the SSD nets (padded cells never win a max)."""
    with tf.name_scope(scope or 'MaxPool'):
        return tf.nn.max_pool2d(inputs, kernel_size, stride, padding, data_format=data_format)


@add_arg_scope
def l2_normalization(
    inputs,
    scale_initializer=20.0,
    epsilon=1e-10,
    data_format='NHWC',
    trainable=True,
    scope=None,
    reuse=None,
):
    """Caffe's Normalize layer (across_spatial false, channel_shared false).

    `x / sqrt(sum_c x^2 + epsilon) * gamma[c]`, with `gamma` `[C]` initialised to
    `scale_initializer` (20 for VGG conv4_3: with 1 the head sees tiny activations and trains badly).
    """
    with v1.variable_scope(scope, 'L2Normalization', [inputs], reuse=reuse):
        axis = 1 if data_format == 'NCHW' else -1
        gamma = slim.model_variable(
            'gamma',
            shape=[_channels(inputs, data_format)],
            initializer=v1.constant_initializer(scale_initializer),
            trainable=trainable,
        )
        norm = tf.math.rsqrt(tf.reduce_sum(tf.square(inputs), axis=axis, keepdims=True) + epsilon)
        shape = [1, -1, 1, 1] if data_format == 'NCHW' else [1, 1, 1, -1]
        return inputs * norm * tf.reshape(tf.cast(gamma, inputs.dtype), shape)
