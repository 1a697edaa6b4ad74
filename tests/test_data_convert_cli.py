"""tf_convert_data.py end to end: workers, determinism, progress, errors, atomic output under SIGKILL;
its engine in-process on hand-made records: sharding, metadata counts, progress line, clean-up."""

import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import signal
import time

import cv2
import numpy as np
import pytest

from datasets import convert
from datasets import dataset_factory
from datasets import example_format as ef
from datasets import image_io
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
    assert 'Converting 10 examples into 2 shards with 1 worker.' in err and '10/10 images' in err
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


# --- the engine in-process, on hand-made records: which example lands in which shard, and what
# the metadata counts


@dataclasses.dataclass(frozen=True)
class _Source:
    """objects: (label, difficult, iscrowd) per object, or None for an unreadable example;
    fixes: the `fix` of each 'fixed' report entry its loader gives."""

    report_name: str
    objects: tuple = ()
    fixes: tuple = ()


def _load(source):
    if source.objects is None:
        raise convert.BadExampleError(f'{source.report_name}: unreadable')
    objects = tuple(
        ef.ObjectRecord((0.1, 0.2, 0.5, 0.6), label, f'c{label}', difficult=d, iscrowd=c)
        for label, d, c in source.objects
    )
    record = ef.ExampleRecord(source.report_name, image_io.EncodedImage(b'\xff\xd8', 8, 8), objects)
    report = [convert.report_entry(source.report_name, 'fixed', 'x', fix) for fix in source.fixes]
    return record, report


def _filenames(path):
    return [f['image/filename'][0].decode() for f in fx.raw_features(path)]


def test_shards_hold_the_seeded_shuffle_in_order_without_the_skipped(tmp_path):
    # 7 examples, 2 per shard: the shuffled order (Python's random.Random(seed), the documented
    # rule) cut in chunks of 2; a skipped example leaves its chunk short, a chunk left empty is
    # no shard.
    permutation = list(range(7))
    random.Random(5).shuffle(permutation)
    unreadable = {permutation[3], permutation[6]}  # one in the second chunk, the last chunk alone
    sources = [_Source(f'e{i}', None if i in unreadable else ((1, 0, None),)) for i in range(7)]
    out = str(tmp_path / 'out')
    meta = convert.convert(
        sources,
        _load,
        ('c1',),
        out,
        'data',
        samples_per_file=2,
        seed=5,
        num_workers=1,
        skip_bad_examples=True,
        show_progress=False,
    )
    kept = [f'e{i}' for i in permutation if i not in unreadable]
    expected = [kept[0:2], kept[2:3], kept[3:5]]
    assert [f['name'] for f in meta['files']] == [
        'data_000.tfrecord',
        'data_001.tfrecord',
        'data_002.tfrecord',
    ]
    assert sorted(os.listdir(out)) == sorted(
        [f['name'] for f in meta['files']] + ['data_metadata.json']
    )
    for entry, names in zip(meta['files'], expected):
        path = os.path.join(out, entry['name'])
        with open(path, 'rb') as f:
            data = f.read()
        assert _filenames(path) == names
        assert entry['num_examples'] == len(names)
        assert entry['size'] == len(data) and entry['sha256'] == hashlib.sha256(data).hexdigest()
    assert meta['num_examples'] == 5
    assert [e['file'] for e in meta['report']['entries']] == [
        f'e{i}' for i in permutation if i in unreadable
    ]
    assert meta['report']['counts']['skipped_example'] == 2
    assert meta['options'] == {
        'samples_per_file': 2,
        'shuffle': True,
        'seed': 5,
        'skip_bad_examples': True,
        'max_objects_per_image': convert.DEFAULT_MAX_OBJECTS_PER_IMAGE,
    }
    with open(os.path.join(out, 'data_metadata.json')) as f:
        assert json.load(f) == meta


def test_metadata_counts_images_objects_difficult_and_crowd_per_class(tmp_path, caplog):
    # One example per shard; the last has no objects (a COCO image without annotations).
    sources = [
        _Source('a', ((1, 0, 0), (1, 1, 0), (2, 0, 1)), ('size', 'size')),
        _Source('b', ((2, 1, 1), (2, 0, 0)), ('area', 'reencoded')),
        _Source('c', ((1, 0, 0),), (None,)),
        _Source('d'),
    ]
    meta = convert.convert(
        sources,
        _load,
        ('c1', 'c2', 'c3'),
        str(tmp_path),
        'data',
        samples_per_file=1,
        shuffle=False,
        num_workers=1,
        show_progress=False,
        class_extra=[{'coco_category_id': 7}, {'coco_category_id': 8}, {'coco_category_id': 9}],
    )
    # By hand: class 1 in a (2 objects, 1 difficult) and c; class 2 in a (crowd) and b
    # (2 objects: 1 difficult, 1 crowd); class 3 nowhere.
    assert meta['classes'] == [
        {
            'id': 1,
            'name': 'c1',
            'num_images': 2,
            'num_objects': 3,
            'num_difficult': 1,
            'num_crowd': 0,
            'coco_category_id': 7,
        },
        {
            'id': 2,
            'name': 'c2',
            'num_images': 2,
            'num_objects': 3,
            'num_difficult': 1,
            'num_crowd': 2,
            'coco_category_id': 8,
        },
        {
            'id': 3,
            'name': 'c3',
            'num_images': 0,
            'num_objects': 0,
            'num_difficult': 0,
            'num_crowd': 0,
            'coco_category_id': 9,
        },
    ]
    assert meta['num_classes_including_background'] == 4 and meta['num_examples'] == 4
    assert meta['report']['counts'] == {
        'fixed': 5,
        'dropped_object': 0,
        'unknown_class': 0,
        'skipped_example': 0,
    }
    # The summary counts by kind of fix, in FIXES order, singular for one; a fix it does not know is 'other'.
    assert (
        '5 fixed entries (1 image re-encoded as JPEG, 2 image sizes corrected, '
        '1 missing area set to w*h, 1 other); see'
    ) in caplog.text


@pytest.mark.parametrize('iscrowd, crowd', [(None, {}), (0, {'num_crowd': 0})])
def test_records_without_crowd_flags_have_no_crowd_count(tmp_path, iscrowd, crowd):
    # VOC's objects have no crowd flag (None): no count; COCO's without a crowd region count 0.
    sources = [_Source('a', ((1, 1, iscrowd), (1, 0, iscrowd)))]
    meta = convert.convert(
        sources, _load, ('c1',), str(tmp_path), 'data', num_workers=1, show_progress=False
    )
    assert meta['classes'] == [
        {'id': 1, 'name': 'c1', 'num_images': 1, 'num_objects': 2, 'num_difficult': 1, **crowd}
    ]


def test_progress_line_shows_count_percent_rate_and_eta(monkeypatch, capsys):
    clock = iter([100.0, 104.0, 105.0])
    monkeypatch.setattr(convert.time, 'monotonic', lambda: next(clock, 105.0))
    counter = multiprocessing.Value('q', 6)
    progress = convert._Progress(counter, 10, True)
    progress._print()  # 6 of 10 in 4 s: 1.5 img/s, 4 left: 2.7 s
    counter.value = 10
    progress._print(final=True)  # 10 in 5 s
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        '[convert] |' + '#' * 18 + '.' * 12 + '| 6/10 images  60.0%     1.5 img/s ETA 3s',
        '[convert] |' + '#' * 30 + '| 10/10 images 100.0%     2.0 img/s 5.0s total',
    ]


def test_file_digest_of_a_file_larger_than_one_read(tmp_path):
    data = bytes(range(256)) * 10000 + b'end'  # 2.4 MiB: three reads of 1 MiB
    path = tmp_path / 'shard'
    path.write_bytes(data)
    assert convert.file_digest(str(path)) == {
        'size': len(data),
        'sha256': hashlib.sha256(data).hexdigest(),
    }


def _dead_pid():
    process = multiprocessing.get_context('fork').Process(target=int)
    process.start()
    process.join()
    return process.pid


def test_a_conversion_removes_only_its_own_temporary_folders_of_ended_processes(tmp_path):
    out = tmp_path / 'out'
    dead = _dead_pid()
    kept = {
        f'.data.tmp-{os.getppid()}',  # a running process'
        f'.other.tmp-{dead}',  # another output name's
        '.data.tmp-x1',  # not a pid
    }
    # Interrupted conversions' (also an earlier one of this process): removed.
    for name in [*kept, f'.data.tmp-{dead}', f'.data.tmp-{os.getpid()}']:
        (out / name).mkdir(parents=True)
        (out / name / convert._TEMP_MARKER).write_bytes(b'')
    (out / f'.data.tmp-{dead + 1}').mkdir()  # without the marker: not ours
    target = tmp_path / 'elsewhere'
    target.mkdir()
    (target / convert._TEMP_MARKER).write_bytes(b'')
    (out / f'.data.tmp-{dead + 2}').symlink_to(target)  # a link: not ours either
    convert.convert(
        [_Source('a')], _load, ('c1',), str(out), 'data', num_workers=1, show_progress=False
    )
    assert sorted(os.listdir(out)) == sorted(
        [*kept, f'.data.tmp-{dead + 1}', f'.data.tmp-{dead + 2}']
        + ['data_000.tfrecord', 'data_metadata.json']
    )
    assert os.listdir(target) == [convert._TEMP_MARKER]


def test_shard_names_are_three_digits_until_a_thousand_shards():
    assert convert.shard_name('d', 7, 1000) == 'd_007.tfrecord'
    assert convert.shard_name('d', 7, 1001) == 'd_0007.tfrecord'
    assert convert.shard_pattern('d').fullmatch('d_1000.tfrecord')
    assert not convert.shard_pattern('d').fullmatch('d_07.tfrecord')


@pytest.mark.parametrize(
    'option, problem',
    [
        ({'samples_per_file': 0}, 'samples_per_file must be >= 1, got 0'),
        ({'max_objects_per_image': 0}, 'max_objects_per_image must be >= 1, got 0'),
        ({'num_workers': -1}, 'num_workers must be >= 1, got -1'),
    ],
)
def test_the_engine_refuses_counts_below_one(tmp_path, option, problem):
    with pytest.raises(ValueError, match=problem):
        convert.convert([_Source('a')], _load, ('c1',), str(tmp_path), 'data', **option)
    assert os.listdir(tmp_path) == []


def test_when_every_example_is_skipped_the_error_shows_five_reasons_and_the_rest_counted(tmp_path):
    sources = [_Source(f'e{i}', None) for i in range(7)]
    with pytest.raises(ValueError) as error:
        convert.convert(
            sources,
            _load,
            ('c1',),
            str(tmp_path),
            'data',
            shuffle=False,
            num_workers=1,
            skip_bad_examples=True,
            show_progress=False,
        )
    assert str(error.value) == (
        'every one of the 7 examples was skipped; nothing written. The first reasons:'
        + ''.join(f'\n  e{i}: unreadable' for i in range(5))
        + '\n  ... and 2 more'
    )
    assert os.listdir(tmp_path) == []


def test_a_metadata_listing_a_file_not_named_as_a_shard_does_not_get_it_deleted(tmp_path):
    out = tmp_path / 'out'
    convert.convert([_Source('a')], _load, ('c1',), str(out), 'data', show_progress=False)
    meta_path = out / 'data_metadata.json'
    meta = json.loads(meta_path.read_text())
    meta['files'].append({'name': 'notes.txt'})  # edited by hand, or another tool's
    meta_path.write_text(json.dumps(meta))
    (out / 'notes.txt').write_text('mine')
    convert.convert([_Source('b')], _load, ('c1',), str(out), 'data', show_progress=False)
    assert (out / 'notes.txt').read_text() == 'mine'


def test_a_run_interrupted_before_removing_old_shards_is_repaired_by_the_next(
    tmp_path, monkeypatch
):
    sources = [_Source(f'e{i}') for i in range(3)]
    options = dict(shuffle=False, num_workers=1, show_progress=False)
    convert.convert(sources, _load, ('c1',), str(tmp_path), 'data', samples_per_file=1, **options)
    real_remove = os.remove

    def remove_unless_a_shard(path):
        if path.endswith('.tfrecord'):
            raise KeyboardInterrupt  # killed as it removes the first old shard
        real_remove(path)

    monkeypatch.setattr(os, 'remove', remove_unless_a_shard)
    with pytest.raises(KeyboardInterrupt):
        convert.convert(
            sources, _load, ('c1',), str(tmp_path), 'data', samples_per_file=3, **options
        )
    monkeypatch.setattr(os, 'remove', real_remove)
    assert sorted(os.listdir(tmp_path)) == [f'data_{i:03d}.tfrecord' for i in range(3)] + [
        'data_incomplete.json'
    ]
    # The marker lists the old shards too: the next run owns them and removes them.
    meta = convert.convert(
        sources, _load, ('c1',), str(tmp_path), 'data', samples_per_file=3, **options
    )
    assert sorted(os.listdir(tmp_path)) == ['data_000.tfrecord', 'data_metadata.json']
    assert meta['files'][0]['num_examples'] == 3
