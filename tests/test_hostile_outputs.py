"""Outputs vs the user's files and resources (#16): detect never overwrites an input or a file it
did not write and never pads a mixed-size batch to its largest image; the converter leaves a
state file it did not write alone; an evaluation writes nothing outside its folder and fails when
it read fewer examples than the dataset lists; killed runs' temporary folders are removed."""

import dataclasses
import json
import os
import stat
import subprocess

import pytest
import tensorflow as tf

from converters import checkpoint_io
from evaluation import evaluate
from evaluation import outputs as eval_outputs
from model import checkpoints
from tests import data_fixtures
from tests import eval_fixtures
from tests import inference_fixtures as fx
from tests import script_server
from tests.conftest import ROOT, script_env
from tf_extended import atomic_io
from tf_extended import temp_dirs

v1 = tf.compat.v1
MODEL_FLAGS = [
    '--model_name=ssd_300_mobilenet',
    '--depth_multiplier=0.25',
    f'--num_classes={fx.NUM_CLASSES}',
]

# detect_ssd_network.py with `detection.pad_batch` recording every array the graph is fed.
DETECT_DRIVER = """
import atexit, json, sys
from absl import app
from inference import detection
calls, pad = [], detection.pad_batch

def recording(images):
    batch, sizes = pad(images)
    calls.append({'shape': list(batch.shape), 'bytes': int(batch.nbytes),
                  'image_bytes': [int(im.nbytes) for im in images]})
    return batch, sizes

detection.pad_batch = recording
record = sys.argv.pop(1)
atexit.register(lambda: json.dump(calls, open(record, 'w')))
import detect_ssd_network
app.run(detect_ssd_network.main)
"""


def _detect(record, *args):
    proc = script_server.run(['-c', DETECT_DRIVER, record, *args], ROOT, script_env(), 600)
    assert proc.returncode == 0, proc.stderr
    with open(record) as fh:
        return json.load(fh)


@pytest.fixture(scope='module')
def detect_in_place(tmp_path_factory):
    """detect with --output_dir = the input folder, which holds files named like its outputs
    (a_det.png, big_det.png: also inputs); then again on two of them (explicit list), after the
    first run's detections.json says what it wrote."""
    root = tmp_path_factory.mktemp('in_place')
    prefix = fx.write_checkpoint(fx.small_spec(), str(root / 'ckpt'))
    photos = root / 'photos'
    sizes = {
        'a.png': (60, 80),
        'a_det.png': (60, 80),
        'big.png': (240, 320),
        'big_det.png': (240, 320),
        'c.jpg': (60, 80),
    }
    for (name, size), image in zip(sizes.items(), fx.random_images(3, list(sizes.values()))):
        data_fixtures.write_image(str(photos / name), image, os.path.splitext(name)[1])
    before = {name: (photos / name).read_bytes() for name in sizes}
    common = [
        f'--checkpoint_path={prefix}',
        *MODEL_FLAGS,
        f'--output_dir={photos}',
        '--batch_size=8',
    ]
    first = _detect(str(root / 'calls1.json'), *common, f'--input={photos}')
    first_json = json.loads((photos / 'detections.json').read_text())
    after_first = {name: (photos / name).read_bytes() for name in sizes}
    second = _detect(
        str(root / 'calls2.json'), *common, f'--input={photos / "a.png"},{photos / "c.jpg"}'
    )
    second_json = json.loads((photos / 'detections.json').read_text())
    return dict(
        photos=photos,
        sizes=sizes,
        before=before,
        after_first=after_first,
        first=first,
        first_json=first_json,
        second=second,
        second_json=second_json,
    )


def test_detect_never_overwrites_an_input_or_a_file_it_did_not_write(detect_in_place):
    d = detect_in_place
    assert d['after_first'] == d['before']  # the inputs, a_det.png and big_det.png included
    outputs = {
        os.path.basename(item['file']): os.path.basename(item['output'])
        for item in d['first_json']['images']
    }
    assert outputs == {
        'a.png': 'a_det_1.png',
        'a_det.png': 'a_det_det.png',
        'big.png': 'big_det_1.png',
        'big_det.png': 'big_det_det.png',
        'c.jpg': 'c_det.jpg',
    }
    # Second run: a_det.png is the user's (not an input now, not in detections.json): kept;
    # a_det_1.png and c_det.jpg are the first run's outputs (listed): replaced, no _2 names.
    outputs = {
        os.path.basename(item['file']): os.path.basename(item['output'])
        for item in d['second_json']['images']
    }
    assert outputs == {'a.png': 'a_det_1.png', 'c.jpg': 'c_det.jpg'}
    assert {name: (d['photos'] / name).read_bytes() for name in d['sizes']} == d['before']
    assert not list(d['photos'].glob('*_det_2.*'))


def test_detect_feeds_each_size_apart(detect_in_place):
    """Five images of two sizes in one --batch_size=8 batch: the graph gets one array per size,
    never one padded to the largest image (the old 458 MB -> 8.9 GB case)."""
    calls = detect_in_place['first']
    assert sorted(tuple(c['shape']) for c in calls) == [(2, 240, 320, 3), (3, 60, 80, 3)]
    for call in calls:
        assert call['bytes'] == sum(call['image_bytes'])
    largest_image = max(h * w * 3 for h, w in detect_in_place['sizes'].values())
    padded = len(detect_in_place['sizes']) * largest_image
    assert sum(c['bytes'] for c in calls) < padded / 2


def test_detect_takes_over_only_outputs_named_for_a_listed_input(tmp_path):
    """A planted detections.json (the minimal shape of ours) or pending record listing a file
    handed it to the next run, which wrote over it; now an output is a run's only where its name
    is the one the script gives an input the record lists."""
    from inference import detection_records as detect

    out = tmp_path / 'out'
    out.mkdir()
    names = ['img_det.jpg', 'img_det_1.jpg', 'a_det.png', 'clip_det.mp4', 'b_det.png']
    for name in names + ['c_det_01.png', 'd_det.png', 'e_det.jpg']:
        (out / name).write_bytes(b'mine')
    (tmp_path / 'f_det.jpg').write_bytes(b'mine')
    record = {
        'model': {},
        'num_processed': 0,
        'images': [
            {'file': '/x/img.jpg', 'output': str(out / 'img_det_1.jpg')},
            {'file': '/x/zzz.jpg', 'output': str(out / 'a_det.png')},
            {'file': '/x/f.jpg', 'output': str(tmp_path / 'f_det.jpg')},  # not in the folder
        ],
        'videos': [{'file': 'clip.avi', 'output': str(out / 'clip_det.mp4')}],
        'kept_outputs': [
            'img_det.jpg',
            {'file': 'b.gif', 'output': 'b_det.png'},
            {'file': 'c.png', 'output': 'c_det_01.png'},
            {'file': 'x/', 'output': '_det.png'},
        ],
    }
    (out / 'detections.json').write_text(json.dumps(record))
    (out / '.detections_pending.jsonl').write_text(
        '"img_det.jpg"\n{"file": "other.jpg", "output": "img_det.jpg"}\n'
        '{"file": "d.bmp", "output": "d_det.png"}\n{"file": "e.JPG", "output": "e_det.jpg"}\n'
    )
    real = os.path.realpath(out)
    pending = {f'{real}/d_det.png': 'd.bmp', f'{real}/e_det.jpg': 'e.JPG'}
    assert detect.earlier_outputs(str(out)) == (
        {
            f'{real}/img_det_1.jpg': '/x/img.jpg',
            f'{real}/clip_det.mp4': 'clip.avi',
            f'{real}/b_det.png': 'b.gif',
            **pending,
        },
        pending,
    )
    # Another input folder's outputs, by its records; a record not ours there gives none.
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'a_det.png').write_bytes(b'x')
    record = {'model': {}, 'num_processed': 1, 'images': [], 'videos': []}
    record['images'] = [{'file': 'a.png', 'output': str(other / 'a_det.png')}]
    (other / 'detections.json').write_text(json.dumps(record))
    assert detect.outputs_in(str(other), str(out), {}) == {
        f'{os.path.realpath(other)}/a_det.png': 'a.png'
    }
    (other / 'detections.json').write_text('[]')
    assert detect.outputs_in(str(other), str(out), {}) == {}
    earlier = {'x': 'y'}
    assert detect.outputs_in(f'{out}/', str(out), earlier) is earlier


def _tiny_saver(directory, name='model.ckpt'):
    """A one-variable graph, its session and saver, and the output prefix."""
    graph = tf.Graph()
    with graph.as_default():
        v1.get_variable('w', [3], initializer=v1.ones_initializer())
        saver = v1.train.Saver()
        sess = v1.Session(graph=graph)
        sess.run(v1.global_variables_initializer())
    return sess, saver, os.path.join(directory, name)


TRAINER_STATE = (
    'model_checkpoint_path: "model.ckpt-500"\n'
    'all_model_checkpoint_paths: "model.ckpt-500"\n'
    'all_model_checkpoint_timestamps: 1700000000.0\n'
    'last_preserved_timestamp: 1699999999.0\n'
)


def test_converter_leaves_a_state_file_it_did_not_write_alone(tmp_path, caplog):
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'checkpoint').write_text(TRAINER_STATE)
    sess, saver, prefix = _tiny_saver(str(mine))
    with sess.graph.as_default():
        checkpoint_io._save_atomically(sess, saver, prefix, {})
    assert (mine / 'checkpoint').read_text() == TRAINER_STATE
    assert os.path.exists(prefix + '.index')
    assert any('left it alone' in r.getMessage() for r in caplog.records)

    # No state file, or one of ours (any version): written, and TF reads it.
    for existing in (
        None,
        checkpoint_io.STATE_FILE_HEADER + '\nmodel_checkpoint_path: "x"\n',
        'model_checkpoint_path: "old.ckpt"\nall_model_checkpoint_paths: "old.ckpt"\n',
    ):
        folder = tmp_path / f'ours{len(existing or "")}'
        folder.mkdir()
        if existing:
            (folder / 'checkpoint').write_text(existing)
        if existing and not existing.startswith(checkpoint_io.STATE_FILE_HEADER):
            # The old form is TF's own for one checkpoint: ours with a converter's record.
            (folder / 'old.ckpt.json').write_text('{"backbone_only": false}')
        # A temporary folder of a killed conversion (its process is gone) is removed.
        dead = subprocess.Popen(['true'])
        dead.wait()
        stale = folder / f'.ckpt.tmp-{dead.pid}@{atomic_io.host_tag()}-abcdefgh'
        stale.mkdir()
        sess, saver, prefix = _tiny_saver(str(folder))
        with sess.graph.as_default():
            checkpoint_io._save_atomically(sess, saver, prefix, {})
        assert tf.train.latest_checkpoint(str(folder)) == prefix
        assert (folder / 'checkpoint').read_text().startswith(checkpoint_io.STATE_FILE_HEADER)
        assert sorted(p.name for p in folder.iterdir() if p.name != 'old.ckpt.json') == [
            'checkpoint',
            'model.ckpt.data-00000-of-00001',
            'model.ckpt.index',
        ]


HEADER_LESS_STATE = (
    'model_checkpoint_path: "model.ckpt-5"\nall_model_checkpoint_paths: "model.ckpt-5"\n'
)


@pytest.mark.parametrize(
    'state,record,conversion_replaces,training_refuses',
    [
        # The converters' header: a conversion replaces the file, a training refuses the folder.
        (f'{checkpoint_io.STATE_FILE_HEADER}\n{HEADER_LESS_STATE}', False, True, True),
        # Line ends as text mode reads them (the converter read it with `open`).
        (f'{checkpoint_io.STATE_FILE_HEADER}\r\n{HEADER_LESS_STATE}', False, True, True),
        # Older converters' two lines count only for a conversion (a training resumed such a
        # folder before and still does), and only with a converter's record beside the
        # checkpoint they name: TF writes the same two lines for --max_to_keep=1.
        (HEADER_LESS_STATE, True, True, False),
        (HEADER_LESS_STATE.replace('\n', '\r\n'), True, True, False),
        (HEADER_LESS_STATE, False, False, False),
        # Read within the state file limit (1 MiB), as TF's state files: not a converter's.
        (f'{checkpoint_io.STATE_FILE_HEADER}\n#{"x" * (1 << 20)}\n', False, False, False),
        ('fifo', False, False, False),  # opening it with `open` waited for a writer forever
    ],
    ids=['header', 'header-crlf', 'two-lines', 'two-lines-crlf', 'trainers', 'huge', 'fifo'],
)
def test_one_check_of_the_converters_state_file(
    tmp_path, state, record, conversion_replaces, training_refuses
):
    """`checkpoints.written_by_converter` answers both that ask, each its own question: a
    conversion (may it replace the folder's state file?) and a training (does --train_dir hold
    converted weights?)."""
    folder = tmp_path / 'folder'
    folder.mkdir()
    sess, saver, _ = _tiny_saver(str(folder))
    with sess.graph.as_default():
        saver.save(sess, str(folder / 'model.ckpt-5'), write_meta_graph=False, write_state=False)
    path = folder / 'checkpoint'
    if state == 'fifo':
        os.mkfifo(path)
    else:
        path.write_bytes(state.encode())
    if record:
        (folder / 'model.ckpt-5.json').write_text('{"backbone_only": false}')
    if training_refuses:
        with pytest.raises(ValueError, match='was written by a checkpoint converter'):
            checkpoints.resume_checkpoint(str(folder))
    else:
        assert checkpoints.resume_checkpoint(str(folder)) == str(folder / 'model.ckpt-5')
    with sess.graph.as_default():
        checkpoint_io._save_atomically(sess, saver, str(folder / 'base.ckpt'), {})
    if conversion_replaces:
        assert tf.train.latest_checkpoint(str(folder)) == str(folder / 'base.ckpt')
        assert path.read_text().startswith(checkpoint_io.STATE_FILE_HEADER + '\n')
    elif state == 'fifo':
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    else:
        assert path.read_bytes() == state.encode()


@pytest.fixture(scope='module')
def eval_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('eval')
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(
        str(root), num_images=12, seed=2
    )
    prefix = eval_fixtures.write_random_checkpoint(
        str(root / 'train' / 'model.ckpt'),
        'ssd_300_mobilenet',
        len(class_names) + 1,
        3,
        depth_multiplier=0.25,
    )
    settings = eval_fixtures.custom_split_settings(
        eval_fixtures.small_card('ssd_300_mobilenet', class_names, 0.25), records_dir
    )
    num_samples = evaluate.dataset_factory.get_dataset('custom', 'test', records_dir).num_samples
    assert num_samples >= 3
    return dict(root=root, prefix=prefix, settings=settings, num_samples=num_samples)


def test_evaluation_writes_nothing_outside_its_folder(eval_setup, monkeypatch, tmp_path):
    """The staging folder lives inside eval_dir (it was a hidden sibling of it): the parent of
    eval_dir looks the same before, during (at publish time) and after."""
    parent = tmp_path / 'user_folder'
    parent.mkdir()
    (parent / 'notes.txt').write_text('mine')
    eval_dir = parent / 'eval'
    seen = []
    publish = eval_outputs.publish_dir

    def watching_publish(staging, target):
        seen.append(sorted(os.listdir(parent)))
        return publish(staging, target)

    monkeypatch.setattr(eval_outputs, 'publish_dir', watching_publish)
    # A staging folder a killed evaluation left in eval_dir goes at the next start.
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = eval_dir / f'.staging.tmp-{dead.pid}@{atomic_io.host_tag()}-abcdefgh'
    stale.mkdir(parents=True)
    result = evaluate.evaluate_checkpoint(
        eval_setup['settings'], eval_setup['prefix'], str(eval_dir), summary_dir=str(eval_dir)
    )
    assert result.num_images == eval_setup['num_samples']
    assert seen == [['eval', 'notes.txt']]
    assert sorted(os.listdir(parent)) == ['eval', 'notes.txt']
    assert not [n for n in os.listdir(eval_dir) if n.startswith('.')]


def test_evaluation_fails_when_it_read_fewer_examples_than_listed(
    eval_setup, monkeypatch, tmp_path
):
    get_dataset = evaluate.dataset_factory.get_dataset

    def one_more(*args, **kwargs):
        dataset = get_dataset(*args, **kwargs)
        dataset.num_samples += 1
        return dataset

    monkeypatch.setattr(evaluate.dataset_factory, 'get_dataset', one_more)
    eval_dir = tmp_path / 'eval'
    n = eval_setup['num_samples']
    with pytest.raises(ValueError, match=f'read {n} examples but the dataset lists {n + 1}'):
        evaluate.evaluate_checkpoint(eval_setup['settings'], eval_setup['prefix'], str(eval_dir))
    assert not eval_dir.exists() or not any(eval_dir.iterdir())
    # --max_num_batches limits on purpose: no check.
    limited = dataclasses.replace(eval_setup['settings'], max_num_batches=1)
    assert (
        evaluate.evaluate_checkpoint(
            limited, eval_setup['prefix'], str(tmp_path / 'limited')
        ).num_images
        == 2
    )


def test_temp_dirs_remove_only_dead_processes_folders(tmp_path):
    mine = temp_dirs.make(str(tmp_path), 'staging')
    dead = subprocess.Popen(['true'])
    dead.wait()
    host = atomic_io.host_tag()
    stale = tmp_path / f'.staging.tmp-{dead.pid}@{host}-abcdefgh'
    other_host = tmp_path / f'.staging.tmp-{dead.pid}@elsewhere-abcdefgh'
    user = tmp_path / '.staging.tmp-notes'
    for path in (stale, other_host, user):
        path.mkdir()
    link = tmp_path / f'.staging.tmp-{dead.pid}@{host}-linkedxx'
    link.symlink_to(user)
    assert temp_dirs.remove_stale(str(tmp_path)) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [os.path.basename(mine), other_host.name, user.name, link.name]
    )
    assert temp_dirs.parse(os.path.basename(mine))['pid'] == os.getpid()


def test_detect_filter_keeps_every_detection_for_keep_top_k_0_or_less():
    """--keep_top_k=0 ('every detection', as the card reads it) sliced [:0] and kept none."""
    import numpy as np

    from inference import detection

    dets = {'scores': np.array([0.9, 0.6, 0.3]), 'labels': np.array([1, 2, 3])}
    for top, want in ((None, [1, 2]), (0, [1, 2]), (-1, [1, 2]), (1, [1])):
        got = detection.filter_detections(dets, 0.5, top)
        assert got['labels'].tolist() == want, top
        np.testing.assert_array_equal(got['scores'], dets['scores'][: len(want)])
    # Scores above the threshold only, as the graph's post-processing keeps them (Caffe's
    # DetectionOutput: score > confidence_threshold): a run's --select_threshold above the
    # exported one keeps what a model exported with it keeps.
    assert detection.filter_detections(dets, 0.6, None)['labels'].tolist() == [1]
