"""Checkpoint-path resolution and scope-based restore (deployment/checkpoints.py)."""
import os

import numpy as np
import pytest
import tensorflow as tf

from deployment import checkpoints

v1 = tf.compat.v1


def _write(directory, name, step, value, update_state=True):
    """Saves variable `w` = value as `<directory>/<name>-<step>`; returns the prefix."""
    with tf.Graph().as_default():
        w = v1.get_variable('w', initializer=np.float32(value))
        saver = v1.train.Saver([w])
        with v1.Session() as sess:
            sess.run(w.initializer)
            return saver.save(sess, os.path.join(directory, name), global_step=step,
                              write_state=update_state)


def test_resolve_prefix_index_data_and_directory(tmp_path):
    d = str(tmp_path)
    first = _write(d, 'model.ckpt', 5, 1.)
    second = _write(d, 'model.ckpt', 10, 2.)
    assert checkpoints.resolve_checkpoint(first) == first
    assert checkpoints.resolve_checkpoint(first + '.index') == first
    data = [f for f in os.listdir(d) if f.startswith('model.ckpt-5.data-')]
    assert len(data) == 1
    assert checkpoints.resolve_checkpoint(os.path.join(d, data[0])) == first
    assert checkpoints.resolve_checkpoint(d) == second
    assert float(tf.train.load_checkpoint(checkpoints.resolve_checkpoint(d)).get_tensor('w')) == 2.


def test_directory_without_state_file_takes_highest_step(tmp_path):
    d = str(tmp_path)
    _write(d, 'model.ckpt', 100, 1.)
    _write(d, 'model.ckpt', 20, 2., update_state=False)
    os.remove(os.path.join(d, 'checkpoint'))
    assert checkpoints.resolve_checkpoint(d) == os.path.join(d, 'model.ckpt-100')


def test_v1_single_file_passes_through(tmp_path):
    path = tmp_path / 'vgg_16.ckpt'
    path.write_bytes(b'v1')
    assert checkpoints.resolve_checkpoint(str(path)) == str(path)


@pytest.mark.parametrize('make', ['missing', 'empty_dir', 'empty'])
def test_errors_name_the_path(tmp_path, make):
    path = {'missing': str(tmp_path / 'nope.ckpt-3'), 'empty_dir': str(tmp_path), 'empty': ''}[make]
    with pytest.raises(FileNotFoundError) as info:
        checkpoints.resolve_checkpoint(path)
    assert path in str(info.value)
