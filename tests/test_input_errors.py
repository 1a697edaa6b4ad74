"""Bad records met while training or evaluating (records without our metadata, read as they come):
the script ends with one line naming the records, TF's reason, what is kept and how to go on; no
traceback, no half-written results folder.

One training (its checkpoints serve the evaluations) and two evaluations, about 40 s on 2 cores.
"""

import os
import shutil

import pytest
import tensorflow as tf

from datasets import convert
from datasets import synthetic
from model import checkpoints
from tests.conftest import TINY_TRAIN_FLAGS, run_script, synthetic_voc_records

# Past the records get_dataset reads when it opens shards without metadata (the first 10): the
# bad one is met by the input pipeline.
BAD_RECORD = 11
DATA = ['--dataset_name=custom', '--dataset_split_name=bad']


def _payloads(path):
    """[(offset of the record's data, its bytes)] of a TFRecord file."""
    found = []
    with convert.open_shard(path) as f:
        for offset, length in convert.record_spans(f, path):
            f.seek(offset)
            found.append((offset, f.read(length)))
    return found


def _bad_records(folder, damage):
    """12 synthetic images as `<folder>/bad_000.tfrecord` (no metadata JSON), record BAD_RECORD
    damaged: 'crc' (a flipped byte: its CRC fails), 'junk_image' (image/encoded not an image),
    'not_example' (bytes that are no protobuf). Returns the shard's path."""
    source = str(synthetic_voc_records(12) / 'records' / 'voc_2007_train_000.tfrecord')
    os.makedirs(folder)
    shard = os.path.join(folder, 'bad_000.tfrecord')
    records = _payloads(source)
    assert len(records) == 12
    if damage == 'crc':
        shutil.copyfile(source, shard)
        offset, payload = records[BAD_RECORD]
        with open(shard, 'r+b') as f:
            f.seek(offset + len(payload) // 2)
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ 0xFF]))
        return shard
    payloads = [payload for _, payload in records]
    if damage == 'junk_image':
        example = tf.train.Example.FromString(payloads[BAD_RECORD])
        example.features.feature['image/encoded'].bytes_list.value[:] = [b'not an image']
        payloads[BAD_RECORD] = example.SerializeToString()
    else:
        payloads[BAD_RECORD] = b'\xff' * 300  # TF quotes it in its message: not UTF-8
    with tf.io.TFRecordWriter(shard) as writer:
        for payload in payloads:
            writer.write(payload)
    return shard


def _error_line(proc):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope='module')
def training(tmp_path_factory):
    """(process, train_dir, shard) of a training on records one of which is no Example, a
    checkpoint saved every step."""
    root = tmp_path_factory.mktemp('input_errors')
    shard = _bad_records(str(root / 'data'), 'not_example')
    train_dir = str(root / 'train')
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={train_dir}',
        f'--dataset_dir={root / "data"}',
        *DATA,
        f'--num_classes={len(synthetic.CLASSES) + 1}',
        *TINY_TRAIN_FLAGS,
        '--save_interval_steps=1',
        '--max_number_of_steps=20',
    )
    return proc, train_dir, shard


def test_training_names_the_records_and_keeps_its_last_checkpoint(training):
    """TF's message quotes the record (not UTF-8: TF raised UnicodeDecodeError in its place)."""
    proc, train_dir, shard = training
    line = _error_line(proc)
    latest = checkpoints.latest_in_directory(train_dir)
    assert latest and os.path.isfile(latest + '.index'), os.listdir(train_dir)
    step = checkpoints.checkpoint_step_from_name(latest)
    head = f'train_ssd_network: error: {shard}: reading the records failed at step '
    assert line.startswith(head), line
    assert '(Could not parse example input: the record is not a tf.train.Example)' in line, line
    assert line.endswith(
        f'the last checkpoint {latest} (step {step}) is kept: fix or convert the data again '
        '(tf_convert_data.py), then run the same command to resume.'
    ), line
    assert 'codec' not in proc.stderr


def _evaluate(training, folder, damage, *flags):
    """(the one error line, the damaged shard) of eval_ssd_network.py on records damaged so
    (see _bad_records), evaluating the training's checkpoints; asserts that no results were
    left in its eval_dir."""
    _, train_dir, _ = training
    shard = _bad_records(str(folder / 'data'), damage)
    eval_dir = folder / 'eval'
    proc = run_script(
        'eval_ssd_network.py',
        *flags,
        f'--checkpoint_path={train_dir}',
        f'--eval_dir={eval_dir}',
        f'--dataset_dir={folder / "data"}',
        *DATA,
        '--batch_size=4',
    )
    line = _error_line(proc)
    # Not even the empty results folder of a checkpoint (nor a ledger entry for it).
    assert not eval_dir.exists() or not list(eval_dir.iterdir()), list(eval_dir.iterdir())
    return line, shard


def test_evaluation_names_the_records_and_writes_nothing(training, tmp_path):
    line, shard = _evaluate(training, tmp_path, 'junk_image')
    assert line == (
        f'eval_ssd_network: error: {shard}: reading the records failed (Unknown image file format. '
        'One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required.); nothing was written: fix or '
        'convert the data again (tf_convert_data.py), then run the same command.'
    ), line


def test_watcher_stops_naming_the_records_and_leaves_no_results_folder(training, tmp_path):
    line, shard = _evaluate(
        training, tmp_path, 'crc', '--wait_for_checkpoints', '--eval_timeout=60'
    )
    # The watcher evaluates the oldest checkpoint the training kept first.
    oldest = tf.train.get_checkpoint_state(training[1]).all_model_checkpoint_paths[0]
    assert line.startswith(
        f'eval_ssd_network: error: {shard}: reading the records failed evaluating '
        f'{os.path.basename(oldest)} (corrupted record at byte '
    ), line
    assert line.endswith(
        '); the watcher stops and nothing was written: fix or convert the data again '
        '(tf_convert_data.py), then run the same command to go on.'
    ), line
