"""Learning-rate schedules and optimizers, configured by name (TF-Slim's train_image_classifier
conventions, plus piecewise, cosine and warmup).

All schedules are graph tensors of the global step, so a resumed run continues its schedule.
"""

import math

import tensorflow as tf

v1 = tf.compat.v1

DECAY_TYPES = ('fixed', 'exponential', 'polynomial', 'piecewise', 'cosine')
OPTIMIZERS = ('adadelta', 'adagrad', 'adam', 'ftrl', 'momentum', 'rmsprop', 'sgd')

# Which optimizers read each optimizer setting (`make_optimizer`'s arguments), and which decay
# types read each schedule setting (`learning_rate_schedule`'s; piecewise reads the decay factor
# only without `values`): train_ssd_network.py refuses one given to a run that would ignore it.
OPTIMIZER_READERS = {
    'opt_epsilon': ('adadelta', 'adam', 'rmsprop'),
    'adadelta_rho': ('adadelta',),
    'adagrad_initial_accumulator_value': ('adagrad',),
    'adam_beta1': ('adam',),
    'adam_beta2': ('adam',),
    'ftrl_learning_rate_power': ('ftrl',),
    'ftrl_initial_accumulator_value': ('ftrl',),
    'ftrl_l1': ('ftrl',),
    'ftrl_l2': ('ftrl',),
    'momentum': ('momentum',),
    'rmsprop_momentum': ('rmsprop',),
    'rmsprop_decay': ('rmsprop',),
}
DECAY_READERS = {
    'learning_rate_decay_factor': ('exponential', 'piecewise'),
    'num_epochs_per_decay': ('exponential', 'polynomial'),
    'end_learning_rate': ('polynomial', 'cosine'),
}


def piecewise_values(learning_rate, boundaries, values=None, decay_factor=0.1):
    """Values of a piecewise-constant schedule: `values` if given (one more than boundaries),
    else `learning_rate * decay_factor ** i` (the Caffe recipe: 1e-3, x0.1 at 80k and 100k)."""
    if values:
        if len(values) != len(boundaries) + 1:
            raise ValueError(
                'piecewise decay needs one more value than boundaries; got %d '
                'boundaries %s and %d values %s.'
                % (len(boundaries), boundaries, len(values), values)
            )
        return [float(v) for v in values]
    return [learning_rate * decay_factor**i for i in range(len(boundaries) + 1)]


def reads_learning_rate(decay_type, values):
    """Whether the schedule reads the initial `learning_rate`: all but a piecewise one whose
    `values` give every rate."""
    return not (decay_type == 'piecewise' and values)


def reads_setting(name, settings):
    """Whether a run of `settings` (a dict of the training settings) reads the optimizer or
    schedule setting `name`; True for any other setting."""
    if name in OPTIMIZER_READERS:
        return settings.get('optimizer') in OPTIMIZER_READERS[name]
    decay, values = settings.get('learning_rate_decay_type'), settings.get('values')
    if name == 'learning_rate':
        return reads_learning_rate(decay, values)
    if name == 'learning_rate_decay_factor' and decay == 'piecewise':
        return not values
    if name in DECAY_READERS:
        return decay in DECAY_READERS[name]
    return True


def learning_rate_schedule(
    global_step,
    decay_type,
    learning_rate,
    decay_steps=None,
    decay_factor=0.94,
    end_learning_rate=0.0001,
    boundaries=(),
    values=(),
    total_steps=None,
    warmup_steps=0,
):
    """The learning rate at `global_step`.

    Args:
      global_step: int64 scalar tensor.
      decay_type: one of `DECAY_TYPES`.
      learning_rate: initial rate.
      decay_steps: steps per decay for exponential (staircase) and polynomial (power 1, to
        `end_learning_rate`) schedules.
      decay_factor: exponential factor; piecewise factor when `values` is empty.
      boundaries, values: piecewise steps and rates (see `piecewise_values`); the rate changes
        at the boundary step (`step >= boundary`, Caffe's multistep).
      total_steps: cosine: steps from `learning_rate` down to `end_learning_rate`.
      warmup_steps: for any decay type, the rate is multiplied by `(step + 1) / warmup_steps`
        while `step < warmup_steps` (linear ramp to the schedule).
    Returns:
      float32 scalar tensor.
    """
    if decay_type not in DECAY_TYPES:
        raise ValueError(
            'learning_rate_decay_type must be one of %s; got %r.' % (DECAY_TYPES, decay_type)
        )
    step = tf.cast(global_step, tf.int64)
    if decay_type == 'fixed':
        rate = tf.constant(learning_rate, tf.float32)
    elif decay_type == 'exponential':
        rate = v1.train.exponential_decay(
            learning_rate, step, _positive(decay_steps, decay_type), decay_factor, staircase=True
        )
    elif decay_type == 'polynomial':
        rate = v1.train.polynomial_decay(
            learning_rate,
            step,
            _positive(decay_steps, decay_type),
            end_learning_rate,
            power=1.0,
            cycle=False,
        )
    elif decay_type == 'piecewise':
        if not boundaries:
            raise ValueError('piecewise decay needs --boundaries (steps, e.g. 80000,100000).')
        rates = piecewise_values(learning_rate, boundaries, values, decay_factor)
        # A boundary is the first step of the next value (Caffe's multistep); TF's
        # piecewise_constant switches after it.
        rate = v1.train.piecewise_constant(step, [int(b) - 1 for b in boundaries], rates)
    else:
        total = _positive(total_steps, decay_type)
        progress = tf.minimum(tf.cast(step, tf.float32) / float(total), 1.0)
        rate = end_learning_rate + (learning_rate - end_learning_rate) * 0.5 * (
            1.0 + tf.cos(math.pi * progress)
        )
    rate = tf.cast(rate, tf.float32)
    if warmup_steps > 0:
        ramp = tf.minimum(tf.cast(step + 1, tf.float32) / float(warmup_steps), 1.0)
        rate = rate * ramp
    return tf.identity(rate, name='learning_rate')


def _positive(steps, decay_type):
    if not steps or steps <= 0:
        raise ValueError(
            '%s decay needs a positive number of steps (got %r): set '
            '--num_epochs_per_decay / --max_number_of_steps.' % (decay_type, steps)
        )
    return int(steps)


# The most steps of one decay: the global step is an int64, and TF's schedules refuse a larger
# decay_steps with a TypeError traceback (--num_epochs_per_decay=1e300 did).
MAX_DECAY_STEPS = 2**63 - 1


def decay_steps_per_epochs(num_samples, batch_size, num_epochs_per_decay):
    """Steps in `num_epochs_per_decay` epochs of `num_samples` at `batch_size` images per step
    (at least 1, at most MAX_DECAY_STEPS: a decay no training reaches)."""
    return min(MAX_DECAY_STEPS, max(1, int(num_samples / batch_size * num_epochs_per_decay)))


def make_optimizer(
    name,
    learning_rate,
    opt_epsilon=1e-8,
    adadelta_rho=0.95,
    adagrad_initial_accumulator_value=0.1,
    adam_beta1=0.9,
    adam_beta2=0.999,
    ftrl_learning_rate_power=-0.5,
    ftrl_initial_accumulator_value=0.1,
    ftrl_l1=0.0,
    ftrl_l2=0.0,
    momentum=0.9,
    rmsprop_momentum=0.9,
    rmsprop_decay=0.9,
):
    """A `tf.compat.v1.train` optimizer by name (one of `OPTIMIZERS`)."""
    if name == 'adadelta':
        return v1.train.AdadeltaOptimizer(learning_rate, rho=adadelta_rho, epsilon=opt_epsilon)
    if name == 'adagrad':
        return v1.train.AdagradOptimizer(
            learning_rate, initial_accumulator_value=adagrad_initial_accumulator_value
        )
    if name == 'adam':
        return v1.train.AdamOptimizer(
            learning_rate, beta1=adam_beta1, beta2=adam_beta2, epsilon=opt_epsilon
        )
    if name == 'ftrl':
        return v1.train.FtrlOptimizer(
            learning_rate,
            learning_rate_power=ftrl_learning_rate_power,
            initial_accumulator_value=ftrl_initial_accumulator_value,
            l1_regularization_strength=ftrl_l1,
            l2_regularization_strength=ftrl_l2,
        )
    if name == 'momentum':
        return v1.train.MomentumOptimizer(learning_rate, momentum=momentum, name='Momentum')
    if name == 'rmsprop':
        return v1.train.RMSPropOptimizer(
            learning_rate, decay=rmsprop_decay, momentum=rmsprop_momentum, epsilon=opt_epsilon
        )
    if name == 'sgd':
        return v1.train.GradientDescentOptimizer(learning_rate)
    raise ValueError('optimizer must be one of %s; got %r.' % (OPTIMIZERS, name))
