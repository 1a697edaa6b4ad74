"""The reader's checks of record contents: records of other tools (balancap/SSD-Tensorflow's
pascalvoc_to_tfrecords, the TF Object Detection API) without metadata, each problem named with
its shard and record index; well-formed records of other tools and of our converter read as
before."""

import os
import re

import cv2
import numpy as np
import pytest
import tensorflow as tf

from datasets import dataset_factory
from datasets import labels
from tests import data_fixtures as fx

FIX = '[Convert the data again with tf_convert_data.py.]'
LENGTHS = (
    "[its lists must hold one value per object: ymin, xmin, ymax, xmax and label, and difficult, "
    "truncated and iscrowd unless empty (read as 0). Their lengths (ymin, xmin, ymax, xmax, "
    "label, difficult, truncated, iscrowd, image/object/class/label):]"
)
BOXES = (
    '[coordinates must be finite and relative to the image size, with 0 <= ymin <= ymax <= 1 '
    'and 0 <= xmin <= xmax <= 1 (values > 1 look like pixels). The boxes [ymin, xmin, ymax, '
    'xmax]:]'
)
OD_API = (
    'a TF Object Detection API record (labels under image/object/class/label, none under '
    'image/object/bbox/label): its label map may number the classes with gaps (COCO: ids '
    '1..90), which this reader does not translate.'
)
OD_API_FIX = 'Convert the source images and annotations with tf_convert_data.py.'
BOX = [0.1, 0.2, 0.5, 0.6]  # [ymin, xmin, ymax, xmax]


def _labels_problem(classes):
    return (
        f'[labels must be 1..{classes}: 0 is the background, so labels are 1-based, and '
        f'{classes + 1} and above are beyond the {classes} classes of the dataset. The labels:]'
    )


def _feature(key, values):
    """A tf.train.Feature of the type the writers give `key` (empty lists keep their type)."""
    if key.endswith(('min', 'max')):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if key.endswith(('text', 'encoded', 'format', 'filename', 'source_id', 'view')):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _example(features):
    return tf.train.Example(
        features=tf.train.Features(feature={k: _feature(k, v) for k, v in features.items()})
    ).SerializeToString()


JPEG = cv2.imencode('.jpg', fx.smooth_image(20, 30))[1].tobytes()


def _balancap(boxes=(BOX,), label_ids=(3,), **changes):
    """A record as balancap/SSD-Tensorflow's pascalvoc_to_tfrecords writes it (boxes
    [ymin, xmin, ymax, xmax] relative); `changes`: key suffix -> values, None to leave it out."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(boxes)
    features = {
        'image/height': [20],
        'image/width': [30],
        'image/channels': [3],
        'image/shape': [20, 30, 3],
        'image/object/bbox/xmin': [float(v) for v in boxes[:, 1]],
        'image/object/bbox/xmax': [float(v) for v in boxes[:, 3]],
        'image/object/bbox/ymin': [float(v) for v in boxes[:, 0]],
        'image/object/bbox/ymax': [float(v) for v in boxes[:, 2]],
        'image/object/bbox/label': list(label_ids),
        'image/object/bbox/label_text': [
            labels.VOC_CLASSES[i - 1].encode() if 1 <= i <= 20 else b'?' for i in label_ids
        ],
        'image/object/bbox/difficult': [0] * n,
        'image/object/bbox/truncated': [0] * n,
        'image/format': [b'JPEG'],
        'image/encoded': [JPEG],
    }
    for key, values in changes.items():
        features.pop(f'image/object/bbox/{key}', None)
        if values is not None:
            features[f'image/object/bbox/{key}'] = list(values)
    return _example(features)


def _od_api(with_boxes=True):
    """A record as the TF Object Detection API's create_pascal_tf_record.py writes it (our box
    keys, or none; labels of its label map under image/object/class/label)."""
    box_keys = ('xmin', 'xmax', 'ymin', 'ymax')
    return _example(
        {
            'image/height': [20],
            'image/width': [30],
            'image/filename': [b'a.jpg'],
            'image/source_id': [b'a.jpg'],
            'image/encoded': [JPEG],
            'image/format': [b'jpeg'],
            **{f'image/object/bbox/{k}': [0.5] if with_boxes else [] for k in box_keys},
            'image/object/class/text': [b'dog'],
            'image/object/class/label': [18],
            'image/object/difficult': [0],
            'image/object/truncated': [0],
            'image/object/view': [b'Unspecified'],
        }
    )


def _write(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return str(path)


def _failure(dataset, **kwargs):
    """The 'assertion failed: ...' text of the error that reading `dataset` ends with."""
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        for _ in dataset.make_dataset(num_readers=1, **kwargs):
            pass
    return re.search(r'assertion failed: (.*)', info.value.message).group(1)


def _custom(folder, num_classes=7):
    return dataset_factory.get_dataset('custom', 'x', str(folder), num_classes=num_classes)


GOOD = _balancap()


# --- 1. labels and coordinates ----------------------------------------------------------------


@pytest.mark.parametrize(
    'record, shown',
    [
        (_balancap([BOX, BOX], [3, 7]), '[3 7]'),  # K = num_classes: beyond the classes
        (_balancap([BOX], [0]), '[0]'),  # 0-based labels
        (_balancap([BOX], [-2]), '[-2]'),
    ],
    ids=['beyond', 'background', 'negative'],
)
def test_labels_outside_1_to_k_are_named(tmp_path, record, shown):
    path = _write(tmp_path / 'x_000.tfrecord', [GOOD, GOOD, record])
    dataset = _custom(tmp_path)
    assert _failure(dataset) == (
        f'[{path}, record 2 (counted from 0)] {_labels_problem(6)} {shown} {FIX}'
    )


@pytest.mark.parametrize(
    'box, shown',
    [
        ([2.0, 3.0, 10.0, 12.5], '[[2 3 10 12.5]]'),  # pixels
        ([0.1, float('nan'), 0.5, 0.6], '[[0.1 nan 0.5 0.6]]'),
        ([0.1, 0.2, float('inf'), 0.6], '[[0.1 0.2 inf 0.6]]'),
        ([0.1, -0.2, 0.5, 0.6], '[[0.1 -0.2 0.5 0.6]]'),
        ([0.1, 0.7, 0.5, 0.6], '[[0.1 0.7 0.5 0.6]]'),  # xmin > xmax
        ([0.6, 0.2, 0.5, 0.6], '[[0.6 0.2 0.5 0.6]]'),  # ymin > ymax
    ],
    ids=['pixels', 'nan', 'infinite', 'negative', 'xmin>xmax', 'ymin>ymax'],
)
def test_boxes_outside_the_relative_rule_are_named(tmp_path, box, shown):
    path = _write(tmp_path / 'x_000.tfrecord', [GOOD, _balancap([BOX, box], [3, 4])])
    assert _failure(_custom(tmp_path)) == (
        f'[{path}, record 1 (counted from 0)] {BOXES} [[0.1 0.2 0.5 0.6]{shown[1:]} {FIX}'
    )


def test_the_index_is_the_records_in_its_shard_whatever_the_order(tmp_path):
    """skip and shuffle change which records are read first, not the index an error names."""
    _write(tmp_path / 'x_000.tfrecord', [GOOD] * 3)
    path = _write(tmp_path / 'x_001.tfrecord', [GOOD, GOOD, _balancap([BOX], [9])])
    dataset = _custom(tmp_path)
    want = f'[{path}, record 2 (counted from 0)] {_labels_problem(6)} [9] {FIX}'
    assert _failure(dataset) == want
    assert _failure(dataset, skip=4) == want
    assert _failure(dataset, shuffle=True, seed=3) == want


def test_graph_mode_names_the_record_too(tmp_path):
    path = _write(tmp_path / 'x_000.tfrecord', [GOOD, _balancap([BOX], [0])])
    dataset = _custom(tmp_path)
    with tf.Graph().as_default():
        example = tf.compat.v1.data.make_one_shot_iterator(dataset.make_dataset()).get_next()
        with tf.compat.v1.Session() as session:
            assert session.run(example['labels']).tolist() == [3]
            with pytest.raises(tf.errors.InvalidArgumentError) as info:
                session.run(example)
    assert f'assertion failed: [{path}, record 1 (counted from 0)] {_labels_problem(6)} [0] ' in (
        info.value.message
    )


# --- 2, 3. list lengths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    'changes, shown',
    [
        ({'difficult': [0]}, '[2 2 2 2 2 1 2 0 0]'),
        ({'truncated': [1, 0, 1]}, '[2 2 2 2 2 2 3 0 0]'),
        ({'iscrowd': [1]}, '[2 2 2 2 2 2 2 1 0]'),
        ({'xmax': [0.6]}, '[2 2 2 1 2 2 2 0 0]'),
        ({'ymin': None}, '[0 2 2 2 2 2 2 0 0]'),
        ({'label': [3], 'label_text': [b'bird']}, '[2 2 2 2 1 2 2 0 0]'),
    ],
    ids=['difficult', 'truncated', 'iscrowd', 'xmax', 'no ymin', 'one label'],
)
def test_lists_of_other_lengths_are_named(tmp_path, changes, shown):
    """Flags of another length were read as zeros (changing the mAP); coordinates or labels of
    another length ended in a TensorFlow traceback."""
    record = _balancap([BOX, BOX], [3, 4], **changes)
    path = _write(tmp_path / 'x_000.tfrecord', [GOOD, record])
    assert _failure(_custom(tmp_path)) == (
        f'[{path}, record 1 (counted from 0)] {LENGTHS} {shown} {FIX}'
    )


# --- 4. TF Object Detection API records --------------------------------------------------------


@pytest.mark.parametrize('with_boxes', [True, False], ids=['boxes', 'no boxes'])
def test_od_api_records_are_refused_before_reading(tmp_path, with_boxes):
    path = _write(tmp_path / 'x_000.tfrecord', [_od_api(with_boxes)] * 2)
    with pytest.raises(dataset_factory.RecordContentError) as info:
        _custom(tmp_path)
    assert str(info.value) == f'{path}, record 0 (counted from 0): {OD_API} {OD_API_FIX}'


@pytest.mark.parametrize('with_boxes', [True, False], ids=['boxes', 'no boxes'])
def test_od_api_records_past_the_first_are_refused_as_read(tmp_path, with_boxes):
    """get_dataset looks at the first records of the first shard only; the reader checks all."""
    _write(tmp_path / 'x_000.tfrecord', [GOOD])
    path = _write(tmp_path / 'x_001.tfrecord', [GOOD, _od_api(with_boxes)])
    assert _failure(_custom(tmp_path)) == (
        f'[{path}, record 1 (counted from 0)] [{OD_API}] [{OD_API_FIX}]'
    )


# --- 5. label_text naming other classes -------------------------------------------------------


def test_label_text_naming_other_voc_classes_is_refused(tmp_path):
    """Ids shifted by one (the writer counted from 0): 'dog' (12) written as 11, 'person' (15)
    as 14."""
    voc = labels.VOC_CLASSES
    records = [GOOD] + [
        _balancap([BOX, BOX], [11, 14], label_text=[b'dog', b'person']),
        _balancap([BOX], [11], label_text=[b'dog']),
    ]
    path = _write(tmp_path / 'voc_2007_train_000.tfrecord', records)
    with pytest.raises(dataset_factory.RecordContentError) as info:
        dataset_factory.get_dataset('pascalvoc_2007', 'train', str(tmp_path))
    assert str(info.value) == (
        f"{path}, record 1 (counted from 0): image/object/bbox/label_text names other classes "
        f"than the labels map to (label -> text: 11 -> 'dog' (label 11 is '{voc[10]}'), "
        f"14 -> 'person' (label 14 is '{voc[13]}')). Without metadata, the labels 1..20 of "
        f"pascalvoc_2007 are aeroplane, bicycle, ..., tvmonitor in this order: these records "
        f"number their classes otherwise. Convert the data again with tf_convert_data.py."
    )
    # Classes without names (class_<id>) have nothing to compare.
    dataset = dataset_factory.get_dataset('custom', 'voc_2007_train', str(tmp_path), num_classes=21)
    assert [e['labels'].tolist() for e in dataset.make_dataset().as_numpy_iterator()] == [
        [3],
        [11, 14],
        [11],
    ]


# --- 6. empty shards ---------------------------------------------------------------------------


def test_an_empty_shard_among_the_files_is_refused(tmp_path):
    for i in range(3):
        _write(tmp_path / f'x_00{i}.tfrecord', [GOOD] * 2)
    empty = tmp_path / 'x_001.tfrecord'
    empty.write_bytes(b'')
    with pytest.raises(dataset_factory.DatasetFilesError) as info:
        _custom(tmp_path)
    assert str(info.value) == (
        f'{empty}: an empty shard (0 bytes) among the 3 files matching '
        f'{tmp_path / "x_*.tfrecord"}; its examples are missing. Convert the data again with '
        f'tf_convert_data.py.'
    )


# --- what still reads --------------------------------------------------------------------------


def test_well_formed_records_of_other_tools_read_as_written(tmp_path):
    boxes = [BOX, [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.3, 0.4]]  # whole image, zero height
    records = [
        _balancap(boxes, [1, 20, 15], difficult=[1, 0, 1], truncated=[0, 1, 1]),
        _balancap(boxes[:2], [12, 12], difficult=None, truncated=None),  # no flags: zeros
        _balancap([], []),  # no objects
        _balancap([BOX], [7], iscrowd=[1], label_text=None),
    ]
    _write(tmp_path / 'voc_2007_test_000.tfrecord', records)
    dataset = dataset_factory.get_dataset('pascalvoc_2007', 'test', str(tmp_path))
    got = list(dataset.make_dataset(num_readers=1).as_numpy_iterator())
    assert [g['labels'].tolist() for g in got] == [[1, 20, 15], [12, 12], [], [7]]
    assert [g['difficult'].tolist() for g in got] == [[1, 0, 1], [0, 0], [], [0]]
    assert [g['truncated'].tolist() for g in got] == [[0, 1, 1], [0, 0], [], [0]]
    assert [g['iscrowd'].tolist() for g in got] == [[0, 0, 0], [0, 0], [], [1]]
    np.testing.assert_array_equal(got[0]['bboxes'], np.float32(boxes))
    assert got[2]['bboxes'].shape == (0, 4)
    assert all(g['shape'].tolist() == [20, 30, 3] for g in got)


def test_converter_records_read_unchanged(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    objects = [
        fx.voc_object('dog', (1, 1, 40, 30), difficult='1'),
        fx.voc_object('tvmonitor', (5, 6, 20, 18), truncated='1'),
    ]
    fx.add_voc_example(root, '000001', fx.smooth_image(30, 40), objects)
    fx.add_voc_example(root, '000002', fx.smooth_image(25, 25), [])
    fx.convert_voc([root], out)
    (raw_a, raw_b) = fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    a, b = fx.read_examples(out)
    key = 'image/object/bbox/'
    np.testing.assert_array_equal(
        a['bboxes'], np.float32([raw_a[key + k] for k in ('ymin', 'xmin', 'ymax', 'xmax')]).T
    )
    assert a['labels'].tolist() == raw_a[key + 'label'] == [12, 20]
    assert a['difficult'].tolist() == raw_a[key + 'difficult'] == [1, 0]
    assert a['truncated'].tolist() == raw_a[key + 'truncated'] == [0, 1]
    assert a['iscrowd'].tolist() == [0, 0] and a['filename'] == b'000001.jpg'
    assert b['labels'].shape == (0,) and raw_b[key + 'label'] == []
