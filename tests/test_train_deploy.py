"""Clones and gradient averaging (training/model_deploy.py)."""

import numpy as np
import tensorflow as tf
import tf_slim as slim

from training import model_deploy

v1 = tf.compat.v1


def test_cpu_clones_average_gradients_and_share_variables():
    rng = np.random.default_rng(0)
    x_data = rng.standard_normal((2, 4, 3)).astype(np.float32)  # one batch of 4 per clone
    y_data = rng.standard_normal((2, 4, 1)).astype(np.float32)
    w0 = rng.standard_normal((3, 1)).astype(np.float32)
    with tf.Graph().as_default():
        config = model_deploy.DeploymentConfig(num_clones=2, clone_on_cpu=True)
        inputs = iter(zip(x_data, y_data))

        def model_fn():
            x, y = next(inputs)
            w = slim.model_variable('w', initializer=w0)
            v1.losses.add_loss(tf.reduce_mean(tf.square(tf.matmul(x, w) - y)))
            return w

        clones = model_deploy.create_clones(config, model_fn)
        assert [c.scope for c in clones] == ['clone_0/', 'clone_1/']
        assert (
            clones[0].outputs is clones[1].outputs
            or clones[0].outputs.name == clones[1].outputs.name
        )
        assert len(v1.global_variables()) == 1
        total_loss, grads_and_vars = model_deploy.optimize_clones(
            clones, v1.train.GradientDescentOptimizer(1.0), regularization_losses=[]
        )
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            loss, grad = sess.run([total_loss, grads_and_vars[0][0]])
    # Reference: mean over clones of each clone's MSE and of its gradient.
    residual = x_data @ w0 - y_data
    np.testing.assert_allclose(loss, np.mean(np.mean(residual**2, axis=(1, 2))), rtol=1e-5)
    per_clone = [2 * x_data[i].T @ residual[i] / 4 for i in range(2)]
    np.testing.assert_allclose(grad, np.mean(per_clone, axis=0), rtol=1e-5)


def test_devices():
    config = model_deploy.DeploymentConfig(num_clones=2, worker_device='/job:worker/task:1')
    assert config.clone_device(1) == '/job:worker/task:1/device:GPU:1'
    assert config.variables_device() == '/job:worker/task:1/device:CPU:0'
    cluster = tf.train.ClusterSpec({'ps': ['a:1', 'b:2'], 'worker': ['c:3']})
    config = model_deploy.DeploymentConfig(worker_device='/job:worker/task:0', cluster=cluster)
    with tf.Graph().as_default():
        with v1.device(config.variables_device()):
            first, second = v1.get_variable('a', []), v1.get_variable('b', [])
            op = tf.constant(1.0)
    assert {first.device, second.device} == {'/job:ps/task:0', '/job:ps/task:1'}
    assert op.device == '/job:worker/task:0'
