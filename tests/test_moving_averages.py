"""A training's exponential moving averages (--moving_average_decay) after training: export writes
them instead of the raw weights when asked, detect runs them, and both say when a checkpoint's
averages go unused.

The checkpoint is the realistic random model of `inference_fixtures.write_checkpoint` with
averages added as a training with --moving_average_decay saves them: `<name>/ExponentialMovingAverage`
beside every model variable, batch norm's moving statistics included. The reference is the
checkpoint's own tensors: eval with the flag reads the averages of the trainable variables and
the moving statistics themselves.
"""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from inference import detection
from inference import export
from model import card as card_lib
from model import checkpoints
from tests import inference_fixtures as fx
from tests.conftest import run_script

v1 = tf.compat.v1

DECAY = 0.999
TOL = 1e-4
MOVING_STATISTICS = ('moving_mean', 'moving_variance')


def _add_averages(prefix, output_prefix, seed=1):
    """Saves `prefix`'s variables, a `global_step` and, for each, an average 10 % off its value
    (`<name>/ExponentialMovingAverage`) at `output_prefix`; returns {name: array} of all of them."""
    rng = np.random.RandomState(seed)
    reader = tf.train.load_checkpoint(prefix)
    values = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    for name, value in list(values.items()):
        off = rng.uniform(0.9, 1.1, value.shape).astype(value.dtype)
        values[name + checkpoints.AVERAGE_SUFFIX] = value * off
    values['global_step'] = np.int64(1200)
    with tf.Graph().as_default(), v1.Session() as sess:
        variables = [v1.Variable(value, name=name) for name, value in values.items()]
        sess.run(v1.global_variables_initializer())
        v1.train.Saver(variables).save(sess, output_prefix, write_meta_graph=False)
    return values


@pytest.fixture(scope='module')
def averaged(tmp_path_factory):
    root = tmp_path_factory.mktemp('averages')
    train_dir = root / 'train'
    train_dir.mkdir()
    card = fx.small_spec().replace(provenance={'settings': {'moving_average_decay': DECAY}})
    raw = fx.write_checkpoint(card, str(root / 'raw'))
    prefix = str(train_dir / 'model.ckpt-1200')
    values = _add_averages(raw, prefix)
    card_lib.write(str(train_dir / card_lib.CARD_FILE), card)
    images = fx.random_images(3, [(240, 320), (300, 300)])
    return dict(root=root, card=card, prefix=prefix, values=values, images=images)


@pytest.fixture(scope='module')
def averages_detector(averaged):
    """The checkpoint graph restored with the averages, in this process: the reference of the
    export and of the detect script (its graph and session built once)."""
    with detection.Detector.from_checkpoint(
        averaged['card'], averaged['prefix'], moving_average_decay=DECAY
    ) as detector:
        yield detector


def _exported(averaged, name, **kwargs):
    out = str(averaged['root'] / name)
    lines = []
    written = export.export(
        averaged['card'],
        averaged['prefix'],
        out,
        formats=['frozen_graph'],
        log=lines.append,
        **kwargs,
    )
    graph_def = tf.compat.v1.GraphDef()
    with open(written['frozen_graph'], 'rb') as f:
        graph_def.ParseFromString(f.read())
    constants = {
        n.name: tf.make_ndarray(n.attr['value'].tensor) for n in graph_def.node if n.op == 'Const'
    }
    with open(os.path.join(out, 'metadata.json')) as f:
        meta = json.load(f)
    return written['frozen_graph'], constants, meta, lines


def _model_variables(values):
    return [n for n in values if n != 'global_step' and not n.endswith(checkpoints.AVERAGE_SUFFIX)]


def test_export_writes_the_averages_of_the_trainable_weights(averaged, averages_detector):
    path, constants, meta, lines = _exported(averaged, 'averaged', moving_average_decay=DECAY)
    values = averaged['values']
    names = _model_variables(values)
    assert len([n for n in names if n.endswith(MOVING_STATISTICS)]) > 20
    for name in names:
        moving_statistic = name.endswith(MOVING_STATISTICS)
        expected = values[name] if moving_statistic else values[name + checkpoints.AVERAGE_SUFFIX]
        np.testing.assert_array_equal(constants[name], expected, err_msg=name)
    assert meta['export']['checkpoint']['moving_averages'] is True
    assert meta['export']['checkpoint']['step'] == 1200
    assert 'step 1200, the moving averages of its weights' in lines[0]
    assert not any(line.startswith('note:') for line in lines)
    # The frozen graph detects as the checkpoint graph restored with the averages does, and
    # otherwise than the raw weights.
    with detection.Detector.from_frozen_graph(path) as detector:
        exported = detector.run(averaged['images'])
    reference = averages_detector.run(averaged['images'])
    with detection.Detector.from_checkpoint(averaged['card'], averaged['prefix']) as detector:
        raw = detector.run(averaged['images'])
    assert int(reference['num_detections'].sum()) > 10
    for key in ('num_detections', 'detection_classes'):
        np.testing.assert_array_equal(exported[key], reference[key])
    for key in ('detection_boxes', 'detection_scores'):
        np.testing.assert_allclose(exported[key], reference[key], atol=TOL)
    assert np.abs(raw['detection_scores'] - reference['detection_scores']).max() > 1e-2


def test_export_without_the_flag_writes_the_raw_weights_and_says_so(averaged):
    _, constants, meta, lines = _exported(averaged, 'raw_export')
    values = averaged['values']
    for name in _model_variables(values):
        np.testing.assert_array_equal(constants[name], values[name], err_msg=name)
    assert meta['export']['checkpoint']['moving_averages'] is False
    assert (
        'note: the checkpoint also holds exponential moving averages of its weights; the raw '
        f'weights are used: add --moving_average_decay={DECAY} to use the averages'
    ) in lines


def _tiny_checkpoint(prefix, names):
    with tf.Graph().as_default(), v1.Session() as sess:
        variables = [v1.Variable([1.0], name=name) for name in names]
        sess.run(v1.global_variables_initializer())
        return v1.train.Saver(variables).save(sess, prefix, write_meta_graph=False)


def test_unused_averages_note(tmp_path):
    """No note with the flag, nor for a checkpoint without averages; the decay is named only when
    the card records a valid one."""
    card = fx.small_spec()
    both = _tiny_checkpoint(str(tmp_path / 'both'), ['net/w', 'net/w/ExponentialMovingAverage'])
    assert checkpoints.unused_averages_note(both, DECAY, card) is None
    assert checkpoints.unused_averages_note(both, None, card).endswith(
        'add --moving_average_decay to use the averages'
    )
    odd = card.replace(provenance={'settings': {'moving_average_decay': 'x' * 1000}})
    assert 'xxx' not in checkpoints.unused_averages_note(both, None, odd)
    assert (
        checkpoints.unused_averages_note(
            _tiny_checkpoint(str(tmp_path / 'raw'), ['net/w']), None, card
        )
        is None
    )
    with pytest.raises(checkpoints.CheckpointUnavailable, match='cannot read the checkpoint'):
        checkpoints.unused_averages_note(str(tmp_path / 'missing'), None, card)


def test_detect_script_runs_the_averages(averaged, averages_detector, tmp_path):
    image = tmp_path / 'in.png'
    cv2.imwrite(str(image), averaged['images'][0][..., ::-1])
    args = ['--checkpoint_path', str(averaged['root'] / 'train'), '--input', str(image)]
    args += ['--select_threshold', '0.05']
    with_flag = run_script(
        'detect_ssd_network.py',
        *args,
        '--output_dir',
        str(tmp_path / 'a'),
        '--moving_average_decay',
        str(DECAY),
    )
    assert with_flag.returncode == 0, with_flag.stderr
    assert '(step 1200, the moving averages of its weights)' in with_flag.stdout
    assert 'note:' not in with_flag.stdout
    without = run_script('detect_ssd_network.py', *args, '--output_dir', str(tmp_path / 'b'))
    assert without.returncode == 0, without.stderr
    assert f'add --moving_average_decay={DECAY} to use the averages' in without.stdout
    reference = averages_detector.run(averaged['images'][:1])
    with open(tmp_path / 'a' / 'detections.json') as f:
        written = json.load(f)
    scores = sorted(d['score'] for d in written['images'][0]['detections'])
    expected = sorted(reference['detection_scores'][0][: int(reference['num_detections'][0])])
    np.testing.assert_allclose(scores, expected, atol=TOL)
    exported = run_script(
        'detect_ssd_network.py',
        '--frozen_graph',
        'model.pb',
        '--input',
        str(image),
        '--output_dir',
        str(tmp_path / 'c'),
        '--moving_average_decay',
        str(DECAY),
    )
    assert exported.returncode != 0
    assert 'an exported model holds the weights it was exported with' in exported.stderr


def test_averages_asked_of_a_checkpoint_without_them(averaged, tmp_path):
    """One line naming the checkpoint, before anything is written: the restore's error had named
    129 missing variables and blamed the model's flags. A decay outside (0, 1) is refused."""
    raw = str(averaged['root'] / 'raw' / 'model.ckpt')
    message = (
        f'{raw} holds no moving averages (its training had no --moving_average_decay): leave '
        '--moving_average_decay unset.'
    )
    out = tmp_path / 'export'
    with pytest.raises(ValueError) as error:
        export.export(
            averaged['card'],
            raw,
            str(out),
            formats=['frozen_graph'],
            log=lambda _: None,
            moving_average_decay=DECAY,
        )
    assert str(error.value) == message
    assert not os.path.exists(out / 'frozen_graph.pb')
    with pytest.raises(ValueError) as error:
        detection.Detector.from_checkpoint(averaged['card'], raw, moving_average_decay=DECAY)
    assert str(error.value) == message
    proc = run_script(
        'export_ssd_network.py',
        f'--checkpoint_path={raw}',
        f'--output_dir={tmp_path / "zero"}',
        '--moving_average_decay=0',
    )
    assert proc.returncode != 0 and '--moving_average_decay must lie in (0, 1)' in proc.stderr
