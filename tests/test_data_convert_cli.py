"""tf_convert_data.py end to end: workers, determinism, progress, errors, atomic output under SIGKILL."""

import os
import signal
import time

import cv2
import numpy as np
import pytest

from datasets import dataset_factory
from datasets import labels
from tests import data_fixtures as fx
from tests import script_server
from tests.conftest import ROOT, run_script, script_env


def _run_cli(*args):
    return run_script('tf_convert_data.py', *args, timeout=120)


def _small_voc(root, n=9):
    for i in range(n):
        fx.add_voc_example(
            root,
            f'{i:04d}',
            fx.smooth_image(20 + i, 24, seed=i),
            [fx.voc_object(labels.VOC_CLASSES[i % 20], (1, 2, 10 + i, 15))],
        )


def test_two_workers_write_the_same_bytes_as_one(tmp_path, capfd):
    root = str(tmp_path / 'VOC')
    _small_voc(root)
    out1, out2 = str(tmp_path / 'one'), str(tmp_path / 'two')
    meta1 = fx.convert_voc([root], out1, 'voc_2007_train', shuffle=True, seed=5, samples_per_file=2)
    meta2 = fx.convert_voc(
        [root],
        out2,
        'voc_2007_train',
        shuffle=True,
        seed=5,
        samples_per_file=2,
        num_workers=2,
        show_progress=True,
    )
    err = capfd.readouterr().err
    assert '9/9 images' in err and 'img/s' in err
    assert meta1 == meta2
    names = sorted(os.listdir(out2))
    assert (
        names
        == sorted(os.listdir(out1))
        == sorted(
            [f'voc_2007_train_{i:03d}.tfrecord' for i in range(5)]
            + ['voc_2007_train_metadata.json']
        )
    )
    for name in names:
        with open(os.path.join(out1, name), 'rb') as a, open(os.path.join(out2, name), 'rb') as b:
            assert a.read() == b.read(), name
    order = [e['filename'] for e in fx.read_examples(out2, 'train', name='pascalvoc_2007')]
    assert sorted(order) == [f'{i:04d}.jpg'.encode() for i in range(9)] and order != sorted(
        order
    )  # shuffled


def test_cli_unknown_class_exits_with_clear_error(tmp_path):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(
        root, 'x1', fx.smooth_image(20, 20), [fx.voc_object('unicorn', (1, 1, 5, 5))]
    )
    proc = _run_cli(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        f'--output_dir={tmp_path / "out"}',
        '--output_name=data',
        '--num_workers=1',
    )
    err = proc.stderr
    assert proc.returncode == 1
    assert (
        "tf_convert_data: error:" in err
        and os.path.join('Annotations', 'x1.xml') in err
        and "'unicorn'" in err
    )
    assert 'Traceback' not in err
    assert not [n for n in os.listdir(tmp_path / 'out') if not n.startswith('.')]
    # The folder's own labels.txt, when no --labels_file was given: pointed at.
    with open(os.path.join(root, 'labels.txt'), 'w') as f:
        f.write('unicorn\n')
    proc = _run_cli(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        f'--output_dir={tmp_path / "out"}',
        '--output_name=data',
    )
    assert proc.returncode == 1
    assert (
        f'Fix the annotation, pass --labels_file={root}/labels.txt (the classes are the 20 of '
        'Pascal VOC without it), or pass --skip_unknown_classes'
    ) in proc.stderr
    # One folder named twice (by two names): its images would be converted twice.
    proc = _run_cli(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root},{root}/',
        f'--output_dir={tmp_path / "out"}',
        '--output_name=data',
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(
        f'tf_convert_data: error: --dataset_dir names one folder ({root}, {root}/) twice: its '
        'images would be converted twice; name each folder once.'
    )


def test_rerun_replaces_every_earlier_shard(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    _small_voc(root, 4)
    fx.convert_voc([root], out, samples_per_file=1)
    assert len([n for n in os.listdir(out) if n.endswith('.tfrecord')]) == 4
    fx.convert_voc([root], out, samples_per_file=3)
    assert sorted(os.listdir(out)) == [
        'data_000.tfrecord',
        'data_001.tfrecord',
        'data_metadata.json',
    ]
    assert len(fx.read_examples(out)) == 4


def test_a_ctrl_c_as_the_temporary_folder_is_made_leaves_nothing(tmp_path, monkeypatch):
    """A Ctrl-C right after the conversion's hidden folder was made, before the `try` that
    removes it: the folder stayed, without the marker that lets the next conversion remove it."""
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    _small_voc(root, n=1)
    makedirs = os.makedirs

    def ctrl_c_as_made(path, *args, **kwargs):
        makedirs(path, *args, **kwargs)
        if os.path.basename(path).startswith('.data.tmp-'):
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(os, 'makedirs', ctrl_c_as_made)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            fx.convert_voc([root], out)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.listdir(out) == []


def test_sigkill_leaves_no_complete_looking_output(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    # 300 RGBA PNG images of 640x480 (hard links to one file): each must be decoded and
    # re-encoded, ~5 ms.
    big = fx.smooth_image(480, 640)
    big = np.dstack([big, np.full(big.shape[:2], 255, np.uint8)])
    fx.add_voc_example(root, '0000', big, [fx.voc_object('cat', (1, 1, 100, 100))], ext='.png')
    src_png = os.path.join(root, 'JPEGImages', '0000.png')
    src_xml = os.path.join(root, 'Annotations', '0000.xml')
    with open(src_xml) as f:
        xml = f.read()
    for i in range(1, 300):
        os.link(src_png, os.path.join(root, 'JPEGImages', f'{i:04d}.png'))
        with open(os.path.join(root, 'Annotations', f'{i:04d}.xml'), 'w') as f:
            f.write(xml)
    log = tmp_path / 'stderr.txt'
    with open(log, 'w') as stderr:
        proc = script_server.spawn(
            [
                os.path.join(ROOT, 'tf_convert_data.py'),
                '--dataset_name=pascalvoc',
                f'--dataset_dir={root}',
                f'--output_dir={out}',
                '--output_name=data',
                '--samples_per_file=5',
                '--num_workers=1',
            ],
            ROOT,
            script_env(),
            stderr,
            stderr,
        )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:  # wait until shards are being written, then kill
            temp_dirs = (
                [n for n in os.listdir(out) if n.startswith('.data.tmp-')]
                if os.path.isdir(out)
                else []
            )
            if temp_dirs and len(os.listdir(os.path.join(out, temp_dirs[0]))) >= 2:
                break
            assert proc.poll() is None, log.read_text()
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    visible = [n for n in os.listdir(out) if not n.startswith('.')]
    assert visible == [], f'an interrupted conversion left {visible}'
    with pytest.raises(FileNotFoundError):
        dataset_factory.get_dataset('custom', 'data', out)
    # The next run (through the CLI, flags end to end) removes the interrupted run's temp folder
    # and completes.
    fx.write_split(root, 'small', [f'{i:04d}' for i in range(0, 300, 30)])
    proc = _run_cli(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        '--split=small',
        f'--output_dir={out}',
        '--output_name=data',
        '--samples_per_file=6',
        '--num_workers=1',
        '--noshuffle',
    )
    err = proc.stderr
    assert proc.returncode == 0, err
    assert 'Converting 10 examples into 2 shards with 1 worker(s)' in err and '10/10 images' in err
    assert f'Wrote 10 examples in 2 shards; metadata: {out}/data_metadata.json' in err
    assert sorted(os.listdir(out)) == [
        'data_000.tfrecord',
        'data_001.tfrecord',
        'data_metadata.json',
    ]
    ds = dataset_factory.get_dataset('custom', 'data', out)
    assert ds.num_samples == 10
    (first,) = [e for e in ds.make_dataset().take(1).as_numpy_iterator()]
    ref = cv2.imdecode(
        cv2.imencode('.jpg', cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[
            1
        ],
        1,
    )
    assert np.abs(first['image'].astype(int) - ref[:, :, ::-1].astype(int)).mean() < 1.5


def test_a_rerun_says_what_it_replaced(tmp_path):
    """A conversion into the name of an earlier one replaced its records without a word."""
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    _small_voc(root, 4)
    args = [f'--dataset_dir={root}', f'--output_dir={out}', '--output_name=train']
    first = _run_cli("--dataset_name=pascalvoc", *args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert 'They replace' not in first.stderr
    _small_voc(str(tmp_path / 'VOC2'), 2)
    again = _run_cli(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={tmp_path / "VOC2"}',
        f'--output_dir={out}',
        '--output_name=train',
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f'They replace the earlier train records in {out} (4 examples).' in again.stderr
