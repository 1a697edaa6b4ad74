"""Model clones on local devices and between-graph replicas (TF-Slim's model_deploy, trimmed).

    config = DeploymentConfig(num_clones=2)
    with tf.compat.v1.device(config.variables_device()):
        global_step = tf.compat.v1.train.get_or_create_global_step()
    clones = create_clones(config, model_fn, [batch_queue])
    total_loss, grads_and_vars = optimize_clones(clones, optimizer)

Each clone builds `model_fn` under its own name scope and device; the clones share variables,
which live on the CPU when there are several clones (or on the parameter servers). A clone's loss
is the sum of the losses it added to the loss collection; gradients are averaged over clones.
"""

import collections

import tensorflow as tf
import tf_slim as slim

v1 = tf.compat.v1

Clone = collections.namedtuple('Clone', ['outputs', 'scope', 'device'])


class DeploymentConfig:
    """Where clones, variables, inputs and the optimizer live.

    Args:
      num_clones: model copies on this machine (GPU:0..num_clones-1, or the CPU).
      clone_on_cpu: put every clone on the CPU.
      worker_device: this worker's job/task (`/job:worker/task:1`) in a cluster, '' locally.
      cluster: a `tf.train.ClusterSpec` with a `ps` job (variables go there), or None.
    """

    def __init__(self, num_clones=1, clone_on_cpu=False, worker_device='', cluster=None):
        if num_clones < 1:
            raise ValueError('num_clones must be >= 1; got %d.' % num_clones)
        self.num_clones = num_clones
        self.clone_on_cpu = clone_on_cpu
        self.worker_device = worker_device
        self.cluster = cluster
        self.num_ps_tasks = (
            len(cluster.job_tasks('ps')) if cluster is not None and 'ps' in cluster.jobs else 0
        )

    def clone_scope(self, index):
        return 'clone_%d' % index if self.num_clones > 1 else ''

    def clone_device(self, index):
        if self.clone_on_cpu:
            return self.worker_device + '/device:CPU:0'
        if self.num_clones > 1:
            # Soft placement runs these on the CPU where there are fewer GPUs.
            return self.worker_device + '/device:GPU:%d' % index
        return self.worker_device

    def variables_device(self):
        """A device function (parameter servers) or string for the shared variables."""
        if self.num_ps_tasks:
            return v1.train.replica_device_setter(
                ps_tasks=self.num_ps_tasks, worker_device=self.worker_device, cluster=self.cluster
            )
        if self.num_clones > 1:
            return self.worker_device + '/device:CPU:0'
        return self.clone_device(0)

    def inputs_device(self):
        return self.worker_device + '/device:CPU:0'

    def optimizer_device(self):
        return self.variables_device() if self.num_ps_tasks else self.clone_device(0)


def create_clones(config, model_fn, args=(), kwargs=None):
    """Calls `model_fn(*args, **kwargs)` once per clone; the first clone creates the variables.

    Returns:
      list of `Clone`.
    """
    clones = []
    variables_device = config.variables_device()
    for i in range(config.num_clones):
        with v1.name_scope(config.clone_scope(i)) as scope:
            with v1.device(config.clone_device(i)):
                with v1.variable_scope(v1.get_variable_scope(), reuse=True if i > 0 else None):
                    with slim.arg_scope(
                        [slim.model_variable, slim.variable], device=variables_device
                    ):
                        outputs = model_fn(*args, **(kwargs or {}))
                clones.append(Clone(outputs, scope, config.clone_device(i)))
    return clones


def clone_loss(clone, num_clones, regularization_losses=None):
    """The clone's losses summed (divided by `num_clones`), plus `regularization_losses`."""
    losses = v1.losses.get_losses(scope=clone.scope or None)
    if not losses:
        raise ValueError(
            'the model added no loss to the loss collection in scope %r.' % clone.scope
        )
    loss = tf.add_n([tf.cast(l, tf.float32) for l in losses])
    if num_clones > 1:
        loss = loss / float(num_clones)
    if regularization_losses:
        loss = loss + tf.add_n(regularization_losses)
    return loss


def sum_gradients(clone_grads):
    """Sums per-clone `[(grad, var)]` lists variable by variable (None gradients dropped)."""
    summed = []
    for grad_and_vars in zip(*clone_grads):
        var = grad_and_vars[0][1]
        grads = [g for g, _ in grad_and_vars if g is not None]
        if not grads:
            continue
        summed.append((tf.add_n(grads) if len(grads) > 1 else grads[0], var))
    return summed


def optimize_clones(clones, optimizer, var_list=None, regularization_losses=None):
    """Total loss and clone-averaged gradients.

    Clone losses are already divided by the number of clones, so summing their gradients
    averages them. The regularisation losses go into the first clone only.

    Returns:
      (total_loss float32 scalar, list of (gradient, variable)).
    """
    if regularization_losses is None:
        regularization_losses = v1.losses.get_regularization_losses()
    losses, clone_grads = [], []
    for i, clone in enumerate(clones):
        with v1.name_scope(clone.scope or None), v1.device(clone.device):
            loss = clone_loss(clone, len(clones), regularization_losses if i == 0 else None)
            grads = optimizer.compute_gradients(loss, var_list=var_list)
        losses.append(loss)
        clone_grads.append(grads)
    total_loss = (
        tf.add_n(losses, name='total_loss')
        if len(losses) > 1
        else tf.identity(losses[0], name='total_loss')
    )
    return total_loss, sum_gradients(clone_grads)
