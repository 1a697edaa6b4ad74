"""Slim-compatible batch normalisation.

`tf_slim.batch_norm` imports a Keras module path that TF 2.21 no longer has, so the nets use this
one. It creates the variables slim and TF-Slim checkpoints use — `<scope>/BatchNorm/beta`, `gamma`,
`moving_mean`, `moving_variance` — and in training puts the moving-average updates in
`tf.compat.v1.GraphKeys.UPDATE_OPS`, exactly as slim did, so existing training loops and checkpoints
work unchanged.
"""

import tensorflow as tf
import tf_slim as slim
from tf_slim import add_arg_scope

v1 = tf.compat.v1


@add_arg_scope
def batch_norm(
    inputs,
    decay=0.999,
    center=True,
    scale=True,
    epsilon=0.001,
    activation_fn=None,
    is_training=True,
    trainable=True,
    data_format='NHWC',
    updates_collections=v1.GraphKeys.UPDATE_OPS,
    variables_collections=None,
    scope=None,
    reuse=None,
):
    """Batch normalisation `gamma * (x - mean) / sqrt(var + epsilon) + beta` over a 4-D tensor.

    Args:
      inputs: float tensor `[B, H, W, C]` (NHWC) or `[B, C, H, W]` (NCHW).
      decay: moving-average decay of the population statistics.
      center, scale: create `beta` / `gamma` (otherwise 0 / 1).
      epsilon: added to the variance (Caffe's BatchNorm uses 1e-5, TF-Slim 1e-3).
      is_training: Python bool or boolean tensor; True normalises with the batch statistics and
        updates the moving averages, False uses the moving averages.
      updates_collections: where the update ops go; None runs them in place (before the output).
    Returns:
      A tensor of the shape and dtype of `inputs`.
    """
    with v1.variable_scope(scope, 'BatchNorm', [inputs], reuse=reuse):
        channels = inputs.shape[1 if data_format == 'NCHW' else -1]
        collections = variables_collections or {}

        def variable(name, init, var_trainable):
            coll = collections.get(name) if isinstance(collections, dict) else collections
            return slim.model_variable(
                name,
                shape=[channels],
                dtype=tf.float32,
                initializer=init,
                trainable=var_trainable,
                collections=coll,
            )

        beta = variable('beta', v1.zeros_initializer(), trainable) if center else None
        gamma = variable('gamma', v1.ones_initializer(), trainable) if scale else None
        moving_mean = variable('moving_mean', v1.zeros_initializer(), False)
        moving_variance = variable('moving_variance', v1.ones_initializer(), False)
        offset = beta if beta is not None else tf.zeros([channels])
        factor = gamma if gamma is not None else tf.ones([channels])

        def train_branch():
            outputs, mean, variance = v1.nn.fused_batch_norm(
                inputs, factor, offset, epsilon=epsilon, data_format=data_format, is_training=True
            )
            return outputs, mean, variance

        def inference_branch():
            outputs, _, _ = v1.nn.fused_batch_norm(
                inputs,
                factor,
                offset,
                mean=moving_mean,
                variance=moving_variance,
                epsilon=epsilon,
                data_format=data_format,
                is_training=False,
            )
            return outputs, moving_mean.read_value(), moving_variance.read_value()

        if isinstance(is_training, bool):
            if not is_training:
                outputs = inference_branch()[0]
                return activation_fn(outputs) if activation_fn else outputs
            outputs, mean, variance = train_branch()
        else:
            outputs, mean, variance = tf.cond(is_training, train_branch, inference_branch)

        update_mean = v1.assign_sub(moving_mean, (moving_mean - mean) * (1.0 - decay))
        update_variance = v1.assign_sub(
            moving_variance, (moving_variance - variance) * (1.0 - decay)
        )
        if updates_collections is None:
            with tf.control_dependencies([update_mean, update_variance]):
                outputs = tf.identity(outputs)
        else:
            v1.add_to_collections(updates_collections, update_mean)
            v1.add_to_collections(updates_collections, update_variance)
        return activation_fn(outputs) if activation_fn else outputs
