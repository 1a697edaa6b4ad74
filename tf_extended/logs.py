"""Logging set-up of the command-line scripts."""
from absl import logging
import tensorflow as tf


def absl_only(verbosity=None):
    """One line per log record, in absl's format.

    TF's python logger has a stderr handler of its own and also propagates to the root logger,
    where absl's handler prints it again: without this, every TensorFlow line (checkpoint saves,
    restores, warnings) appears twice. `verbosity`: an absl level to set (e.g. logging.INFO).
    """
    if verbosity is not None:
        logging.set_verbosity(verbosity)
    logger = tf.get_logger()
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
