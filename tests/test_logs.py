"""Script logging: each TensorFlow log record printed once, in absl's format."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = '''
from absl import app
from absl import logging
import tensorflow as tf
from tf_extended import logs

def main(_):
    logging.set_verbosity(logging.INFO)
    tf.get_logger().info('before-info')
    logs.absl_only(logging.INFO)
    tf.get_logger().info('after-info')
    tf.get_logger().warning('after-warning')
    logging.info('absl-info')

app.run(main)
'''


def test_tensorflow_records_are_printed_once():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, '-c', PROGRAM], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    count = lambda marker: sum(line.endswith('] ' + marker) or line.endswith(':' + marker)
                               for line in lines)
    assert count('before-info') == 2  # TF's own handler and absl's: the problem fixed here.
    assert count('after-info') == count('after-warning') == count('absl-info') == 1
    assert not any(line.startswith(('INFO:tensorflow:', 'WARNING:tensorflow:')) and 'after' in line
                   for line in lines)
