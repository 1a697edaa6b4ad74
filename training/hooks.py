"""Training hooks: the log line of a step, and the finite-weights check before a save."""
import time

from absl import logging
import tensorflow as tf

v1 = tf.compat.v1


class NonFiniteError(RuntimeError):
    """Training produced NaN/inf: stop without saving."""


class FiniteCheckListener(v1.train.CheckpointSaverListener):
    """Refuses to save (and stops training) when a variable is not finite."""

    def __init__(self, all_finite):
        self._all_finite = all_finite

    def before_save(self, session, global_step_value):
        if not session.run(self._all_finite):
            raise NonFiniteError('non-finite weights at step %d' % global_step_value)


class LoggingHook(v1.train.SessionRunHook):
    """Every `every_n` steps logs step, loss terms, learning rate, images/s and ETA.

    `step` is the global step after this process' latest run. Alone, it is read at start and
    then counted (exact); in a cluster, where other workers move it too, it is the value read
    during the run (may lag by one).
    """

    def __init__(self, tensors, every_n, images_per_step, last_step, count_locally=True):
        self._tensors = tensors
        self._every_n = every_n
        self._images_per_step = images_per_step
        self._last_step = last_step
        self._count_locally = count_locally
        self.step = None

    def after_create_session(self, session, coord):
        self.step = int(session.run(self._tensors['global_step']))
        self._local_steps = 0
        self._window = (time.time(), 0)

    def before_run(self, run_context):
        return v1.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        values = run_values.results
        self._local_steps += 1
        self.step = self.step + 1 if self._count_locally else int(values['global_step'])
        if (self.step if self._count_locally else self._local_steps) % self._every_n:
            return
        now = time.time()
        start, start_step = self._window
        self._window = (now, self._local_steps)
        steps_per_sec = (self._local_steps - start_step) / max(now - start, 1e-9)
        losses = ' '.join('%s=%.4f' % item for item in sorted(values['losses'].items()))
        eta = ''
        if self._last_step:
            eta = ' ETA %s' % time.strftime(
                '%H:%M:%S', time.gmtime(max(self._last_step - self.step, 0) / steps_per_sec))
        logging.info('step %d: %s lr=%.4g %.1f images/s%s', self.step, losses,
                     values['learning_rate'], steps_per_sec * self._images_per_step, eta)


