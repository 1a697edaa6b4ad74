"""What many test files share: the project root and running a script as a user does."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env(**extra):
    """The environment scripts run in: the project importable, TF quiet, no GPU."""
    return dict(
        os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='', **extra
    )


def run_script(script, *args, timeout=400, **kwargs):
    """Runs `python <ROOT>/<script> args...` from the project root; returns the CompletedProcess
    (text stdout / stderr captured)."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def require_nchw():
    """Skips the calling test where this machine cannot run NCHW convolutions: TF's own CPU
    kernels are NHWC only; oneDNN (on by default on CPUs with AVX-512) or a GPU runs NCHW."""
    if _nchw_runs():
        return
    import pytest

    pytest.skip('NCHW needs oneDNN or a GPU; TF disables oneDNN on this CPU (no AVX-512)')


_NCHW = []


def _nchw_runs():
    if not _NCHW:
        import tensorflow as tf

        v1 = tf.compat.v1
        with tf.Graph().as_default():
            x = tf.zeros([1, 2, 4, 4])
            y = tf.nn.conv2d(x, tf.zeros([1, 1, 2, 2]), 1, 'SAME', data_format='NCHW')
            y = tf.nn.max_pool2d(y, 2, 2, 'SAME', data_format='NCHW')
            try:
                with v1.Session() as sess:
                    sess.run(y)
                _NCHW.append(True)
            except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
                _NCHW.append(False)
    return _NCHW[0]
