"""The project's slim-compatible batch norm against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from nets.batch_norm import batch_norm

v1 = tf.compat.v1


@pytest.mark.parametrize('data_format', ['NHWC', 'NCHW'])
def test_training_and_inference_match_numpy(data_format):
    rng = np.random.RandomState(0)
    x = (rng.randn(4, 5, 6, 3) * 3 + 2).astype(np.float32)
    feed = x if data_format == 'NHWC' else x.transpose(0, 3, 1, 2)
    gamma, beta = np.array([1.5, 0.5, 2.0], np.float32), np.array([0.1, -0.2, 0.3], np.float32)
    mean0, var0 = np.array([1.0, 2.0, 3.0], np.float32), np.array([4.0, 0.5, 2.0], np.float32)
    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, feed.shape)
        with v1.variable_scope('layer'):
            train = batch_norm(
                inputs, decay=0.9, epsilon=1e-5, is_training=True, data_format=data_format
            )
        with v1.variable_scope('layer', reuse=True):
            infer = batch_norm(inputs, epsilon=1e-5, is_training=False, data_format=data_format)
        names = sorted(v.op.name for v in v1.global_variables())
        assert names == [
            'layer/BatchNorm/beta',
            'layer/BatchNorm/gamma',
            'layer/BatchNorm/moving_mean',
            'layer/BatchNorm/moving_variance',
        ]
        updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        assert len(updates) == 2
        variables = {v.op.name.split('/')[-1]: v for v in v1.global_variables()}
        with v1.Session() as sess:
            for name, value in (
                ('gamma', gamma),
                ('beta', beta),
                ('moving_mean', mean0),
                ('moving_variance', var0),
            ):
                variables[name].load(value, sess)
            y_infer = sess.run(infer, {inputs: feed})
            y_train, _ = sess.run([train, updates], {inputs: feed})
            mean, var = sess.run([variables['moving_mean'], variables['moving_variance']])
    axis = (0, 1, 2) if data_format == 'NHWC' else (0, 2, 3)
    shape = (1, 1, 1, 3) if data_format == 'NHWC' else (1, 3, 1, 1)

    def r(a):
        return a.reshape(shape)

    np.testing.assert_allclose(
        y_infer,
        r(gamma) * (feed - r(mean0)) / np.sqrt(r(var0) + 1e-5) + r(beta),
        rtol=1e-5,
        atol=1e-5,
    )
    bm, bv = feed.mean(axis), feed.var(axis)
    np.testing.assert_allclose(
        y_train, r(gamma) * (feed - r(bm)) / np.sqrt(r(bv) + 1e-5) + r(beta), rtol=1e-4, atol=1e-4
    )
    n = feed.size / 3
    np.testing.assert_allclose(mean, 0.9 * mean0 + 0.1 * bm, rtol=1e-5)
    # Moving variance uses the unbiased batch variance (as slim's fused batch norm did).
    np.testing.assert_allclose(var, 0.9 * var0 + 0.1 * bv * n / (n - 1), rtol=1e-4)


def test_updates_in_place_and_tensor_is_training():
    x = np.random.RandomState(1).randn(8, 2, 2, 2).astype(np.float32) + 5
    with tf.Graph().as_default():
        flag = v1.placeholder(tf.bool, [])
        y = batch_norm(tf.constant(x), decay=0.5, is_training=flag, updates_collections=None)
        mean_var = [v for v in v1.global_variables() if 'moving_mean' in v.op.name][0]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(y, {flag: False})
            np.testing.assert_allclose(sess.run(mean_var), 0.0)
            sess.run(y, {flag: True})
            np.testing.assert_allclose(sess.run(mean_var), 0.5 * x.mean((0, 1, 2)), rtol=1e-5)


def test_defaults_flags_activation_and_epsilon_against_numpy():
    """A fresh layer (moving mean 0, variance 1) in inference gives x / sqrt(1 + eps); without
    `center` / `scale` there is no beta / gamma (0 / 1); `activation_fn` applies in both modes;
    beta and gamma train, the moving statistics do not; a batch of small variance (1e-4) shows
    that training uses `epsilon` too."""
    rng = np.random.RandomState(2)
    x = (rng.randn(2, 3, 3, 2) * 0.01 - 0.005).astype(np.float32)
    with tf.Graph().as_default():
        fresh = batch_norm(tf.constant(x), epsilon=1e-5, is_training=False, scope='fresh')
        plain = batch_norm(
            tf.constant(x), center=False, scale=False, epsilon=1e-5, is_training=True, scope='plain'
        )
        relu_infer = batch_norm(
            tf.constant(x), activation_fn=tf.nn.relu, is_training=False, scope='relu_infer'
        )
        relu_train = batch_norm(
            tf.constant(x), activation_fn=tf.nn.relu, is_training=True, scope='relu_train'
        )
        trainable = sorted(v.op.name for v in v1.trainable_variables())
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            got = sess.run([fresh, plain, relu_infer, relu_train])
    assert trainable == [
        f'{scope}/{name}'
        for scope in ('fresh', 'relu_infer', 'relu_train')
        for name in ('beta', 'gamma')
    ]
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    np.testing.assert_allclose(got[0], x / np.sqrt(1 + 1e-5), rtol=1e-6)
    np.testing.assert_allclose(got[1], (x - mean) / np.sqrt(var + 1e-5), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got[2], np.maximum(x / np.sqrt(1 + 1e-3), 0), rtol=1e-6)
    np.testing.assert_allclose(
        got[3], np.maximum((x - mean) / np.sqrt(var + 1e-3), 0), rtol=1e-3, atol=1e-4
    )
