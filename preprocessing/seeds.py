"""Seeds for the stateless random ops of the augmentation pipelines.

Every random draw of a pipeline comes from a `tf.random.stateless_*` op keyed by a seed derived
from one per-example seed, so the same seed gives the same augmentation however the examples are
scheduled (`tf.data` `map` with `num_parallel_calls`, several epochs, other workers).
"""

import tensorflow as tf


def as_seed(seed):
    """Normalises a seed to the int64 `[2]` tensor that stateless ops take.

    Args:
      seed: None (a fresh random seed at every run: not reproducible), a Python int or int
        scalar tensor, or an int `[2]` tensor / pair.
    Returns:
      int64 `[2]` tensor.
    """
    if seed is None:
        return tf.random.uniform([2], minval=tf.int64.min, maxval=tf.int64.max, dtype=tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([tf.constant(0, tf.int64), seed])
    if seed.shape.as_list() != [2]:
        raise ValueError(f'A seed is a scalar or a [2] tensor; got shape {seed.shape}.')
    return seed


def example_seed(base_seed, index):
    """Per-example seed `[2]` from a run-wide `base_seed` (int) and the example's position.

    Typical use: `dataset.repeat().enumerate().map(lambda i, ex: pipeline(..., seed=example_seed(
    seed, i)))`: each example of each epoch gets its own, reproducible, augmentation.
    """
    return tf.stack([tf.cast(base_seed, tf.int64), tf.cast(index, tf.int64)])


class SeedStream:
    """Hands out distinct seeds for successive random ops, all derived from one seed.

    Seeds are numbered in the order they are requested while the graph is built, which is fixed
    by the code: the same base seed gives the same seed to the same op.
    """

    def __init__(self, seed):
        self._seed = as_seed(seed)
        self._count = 0

    def __call__(self):
        """Next seed: int32 `[2]` tensor."""
        self._count += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._count)

    def fork(self):
        """A new `SeedStream` seeded from this one's next seed."""
        return SeedStream(self())

    def uniform(self, shape=(), minval=0.0, maxval=1.0):
        """float32 uniform draw in `[minval, maxval)` from the next seed."""
        return tf.random.stateless_uniform(shape, seed=self(), minval=minval, maxval=maxval)

    def bernoulli(self, prob):
        """Boolean scalar that is True with probability `prob`."""
        return self.uniform() < prob
