"""Dataset registry and readers: older-port records, metadata-driven names, graph mode, shuffling."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from datasets import dataset_factory
from datasets import example_format as ef
from datasets import image_io
from datasets import labels
from tests import data_fixtures as fx


def _legacy_example(jpeg, height, width, boxes, label_ids, difficult, truncated):
    """An example exactly as the older TF SSD port wrote it (no filename, format b'JPEG')."""

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def byts(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    feature = {
        'image/height': ints([height]),
        'image/width': ints([width]),
        'image/channels': ints([3]),
        'image/shape': ints([height, width, 3]),
        'image/object/bbox/ymin': floats(boxes[:, 0]),
        'image/object/bbox/xmin': floats(boxes[:, 1]),
        'image/object/bbox/ymax': floats(boxes[:, 2]),
        'image/object/bbox/xmax': floats(boxes[:, 3]),
        'image/object/bbox/label': ints(label_ids),
        'image/object/bbox/label_text': byts(
            [labels.VOC_CLASSES[i - 1].encode() for i in label_ids]
        ),
        'image/object/bbox/difficult': ints(difficult),
        'image/object/bbox/truncated': ints(truncated),
        'image/format': byts([b'JPEG']),
        'image/encoded': byts([jpeg]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope='module')
def legacy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('legacy')
    rng = np.random.default_rng(0)
    expected = []
    for shard in range(2):
        with tf.io.TFRecordWriter(str(d / f'voc_2007_train_{shard:03d}.tfrecord')) as w:
            for i in range(3 if shard == 0 else 2):
                img = fx.smooth_image(30 + i, 40, seed=shard * 10 + i)
                jpeg = cv2.imencode('.jpg', img)[1].tobytes()
                boxes = np.sort(
                    rng.uniform(0, 1, (i + 1, 4)), axis=1
                )  # ymin <= xmin <= ymax <= xmax: a valid box
                ids = list(rng.integers(1, 21, i + 1))
                diff = list(rng.integers(0, 2, i + 1))
                w.write(_legacy_example(jpeg, 30 + i, 40, boxes, ids, diff, [0] * (i + 1)))
                expected.append((boxes, ids, diff, (30 + i, 40, 3)))
    return str(d), expected


def test_legacy_records_without_metadata(legacy_dir):
    d, expected = legacy_dir
    ds = dataset_factory.get_dataset('pascalvoc_2007', 'train', d)
    assert ds.num_samples == 5 and ds.num_classes == 21 and ds.metadata is None
    assert ds.labels_to_names[0] == 'none' and ds.labels_to_names[15] == 'person'
    got = [{k: v.numpy() for k, v in ex.items()} for ex in ds.make_dataset(num_readers=1)]
    assert len(got) == 5
    # Written as shard 0: records 0-2, shard 1: records 3-4; read one of each in turn.
    for g, (boxes, ids, diff, shape) in zip(got, [expected[i] for i in (0, 3, 1, 4, 2)]):
        np.testing.assert_allclose(g['bboxes'], boxes, atol=1e-6)
        np.testing.assert_array_equal(g['labels'], ids)
        np.testing.assert_array_equal(g['difficult'], diff)
        np.testing.assert_array_equal(g['shape'], shape)
        assert g['filename'] == b'' and g['image_id'] == -1
    # The older port's pattern style and an explicit class count also work.
    ds2 = dataset_factory.get_dataset(
        'custom', 'train', d, file_pattern='voc_2007_%s_*.tfrecord', num_classes=5
    )
    assert ds2.num_samples == 5 and ds2.labels_to_names == {
        0: 'none',
        1: 'class_1',
        2: 'class_2',
        3: 'class_3',
        4: 'class_4',
    }
    with pytest.raises(ValueError, match='pass num_classes'):
        dataset_factory.get_dataset('custom', 'voc_2007_train', d)


def test_count_records_matches_tf(legacy_dir):
    d, _ = legacy_dir
    path = os.path.join(d, 'voc_2007_train_000.tfrecord')
    assert dataset_factory.count_records(path) == sum(1 for _ in tf.data.TFRecordDataset(path)) == 3
    with open(path, 'rb') as f:
        data = f.read()
    cut = os.path.join(d, 'cut.bin')
    with open(cut, 'wb') as f:
        f.write(data[:-10])
    with pytest.raises(ValueError, match='truncated TFRecord'):
        dataset_factory.count_records(cut)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('voc'))
    for i in range(7):
        fx.add_voc_example(
            root,
            f'{i:03d}',
            fx.smooth_image(20 + i, 30, seed=i),
            [fx.voc_object('bird', (1, 1, 10 + i, 12))],
        )
    out = str(tmp_path_factory.mktemp('out'))
    fx.convert_voc([root], out, 'voc_2012_val', samples_per_file=3)
    return out


def test_registered_names_and_metadata(converted):
    for name, split in (('pascalvoc_2012', 'val'), ('custom', 'voc_2012_val')):
        ds = dataset_factory.get_dataset(name, split, converted)
        assert ds.num_samples == 7 and ds.num_classes == 21
        assert [os.path.basename(f) for f in ds.files] == [
            f'voc_2012_val_{i:03d}.tfrecord' for i in range(3)
        ]
    with pytest.raises(ValueError, match='num_classes=7 disagrees') as info:
        dataset_factory.get_dataset('pascalvoc_2012', 'val', converted, num_classes=7)
    assert str(info.value).endswith(
        "use a model of these classes, or convert the data with the model's labels file "
        '(tf_convert_data.py --labels_file).'
    )
    # COCO records take their classes from the annotation file: no labels file to convert with
    # (the advice was the VOC one, which the converter refuses for COCO).
    coco = {'classes': [{'id': 1, 'name': 'person', 'coco_category_id': 1}]}
    assert dataset_factory.relabel_advice(coco) == (
        "convert an annotation file whose categories are the model's classes (COCO records take "
        'their classes from it; the converter takes no labels file for COCO)'
    )
    with pytest.raises(FileNotFoundError, match='voc_2012_val_000.tfrecord'):
        dataset_factory.get_dataset('pascalvoc_2012', 'test', converted)
    with pytest.raises(ValueError) as info:
        dataset_factory.get_dataset('coco2017', 'val', converted)
    assert str(info.value).startswith(
        "--dataset_name: unknown dataset 'coco2017' (did you mean coco_2017?); the datasets are "
    )
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; the datasets are"):
        dataset_factory.get_dataset('imagenet', 'val', converted)
    assert {'pascalvoc_2007', 'pascalvoc_2012', 'pascalvoc_0712', 'coco_2017', 'custom'} <= set(
        dataset_factory.dataset_names()
    )


@pytest.mark.parametrize(
    'name,split,there',
    [
        ('pascalvoc_2007', 'val', 'of --dataset_name=pascalvoc_2012 --dataset_split_name=val'),
        ('pascalvoc_2012', 'Val', 'of --dataset_name=pascalvoc_2012 --dataset_split_name=val'),
        ('custom', 'val', 'of --dataset_name=pascalvoc_2012 --dataset_split_name=val'),
    ],
)
def test_a_split_not_there_names_the_splits_that_are(converted, name, split, there):
    """Records of another dataset name or a split name in another case: the message only said to
    convert the data again."""
    with pytest.raises(FileNotFoundError) as info:
        dataset_factory.get_dataset(name, split, converted)
    prefix = dataset_factory._REGISTRY[name].prefix.format(split=split)
    assert str(info.value).endswith(
        f'Its records are those {there}: pass it (split names are case-sensitive), or '
        f'convert the data with tf_convert_data.py --output_name={prefix}.'
    )


@pytest.mark.parametrize('name', ['voc_2012_val_000.tfrecord', 'voc_2012_val_metadata.json'])
def test_a_record_or_metadata_file_as_dataset_dir_names_its_folder(converted, name):
    """A shard, or the metadata file, given as --dataset_dir was told to convert the data."""
    path = os.path.join(converted, name)
    assert os.path.isfile(path)
    with pytest.raises(FileNotFoundError) as info:
        dataset_factory.get_dataset('pascalvoc_2012', 'val', path)
    assert str(info.value).endswith(
        f'({path} is a file, not a folder). --dataset_dir is the folder of the records: pass '
        f'--dataset_dir={converted}.'
    )


def test_metadata_with_missing_shard_is_incomplete(converted, tmp_path):
    for name in os.listdir(converted):
        if name != 'voc_2012_val_001.tfrecord':
            with (
                open(os.path.join(converted, name), 'rb') as src,
                open(tmp_path / name, 'wb') as dst,
            ):
                dst.write(src.read())
    with pytest.raises(FileNotFoundError, match='incomplete'):
        dataset_factory.get_dataset('pascalvoc_2012', 'val', str(tmp_path))


def _eager_examples(ds, **kwargs):
    return [{k: v.numpy() for k, v in ex.items()} for ex in ds.make_dataset(**kwargs)]


def test_graph_mode_iterators_match_eager(converted):
    ds = dataset_factory.get_dataset('pascalvoc_2012', 'val', converted)
    eager = _eager_examples(ds)
    with tf.Graph().as_default():
        one_shot = tf.compat.v1.data.make_one_shot_iterator(ds.make_dataset()).get_next()
        init_it = tf.compat.v1.data.make_initializable_iterator(ds.make_dataset(num_readers=2))
        nxt = init_it.get_next()
        assert nxt['image'].shape.as_list() == [None, None, 3] and nxt[
            'bboxes'
        ].shape.as_list() == [None, 4]
        with tf.compat.v1.Session() as sess:
            graph_one_shot = [sess.run(one_shot) for _ in range(7)]
            with pytest.raises(tf.errors.OutOfRangeError):
                sess.run(one_shot)
            sess.run(init_it.initializer)
            graph_init = [sess.run(nxt) for _ in range(7)]
    for seq in (graph_one_shot, graph_init):
        assert sorted(g['filename'] for g in seq) == sorted(e['filename'] for e in eager)
    for g, e in zip(graph_one_shot, eager):
        assert g['filename'] == e['filename']
        np.testing.assert_array_equal(g['image'], e['image'])
        np.testing.assert_array_equal(g['bboxes'], e['bboxes'])


def test_shuffle_seed_and_repeat(converted):
    ds = dataset_factory.get_dataset('pascalvoc_2012', 'val', converted)
    plain = [e['filename'] for e in _eager_examples(ds, num_readers=1)]
    # The shards (000-002, 003-005, 006) one record of each in turn, whatever the number of
    # readers up to READ_CYCLE: a seeded run or an evaluation changed order with --num_readers.
    assert plain == [f'{i:03d}.jpg'.encode() for i in (0, 3, 6, 1, 4, 2, 5)]
    for num_readers in (2, dataset_factory.READ_CYCLE):
        assert [e['filename'] for e in _eager_examples(ds, num_readers=num_readers)] == plain
    a = [e['filename'] for e in _eager_examples(ds, shuffle=True, seed=3)]
    b = [e['filename'] for e in _eager_examples(ds, shuffle=True, seed=3, num_readers=1)]
    assert a == b and sorted(a) == sorted(plain) and a != plain
    repeated = [
        e['filename']
        for e in ds.make_dataset(shuffle=True, seed=1, repeat=True).take(21).as_numpy_iterator()
    ]
    assert len(repeated) == 21 and set(repeated) == set(plain)


def test_skip_leaves_out_the_first_records_of_the_unshuffled_order(converted):
    """`skip` (the eval input cache's) drops records across shard files, as a tensor too; it
    has no meaning for a shuffled order."""
    ds = dataset_factory.get_dataset('pascalvoc_2012', 'val', converted)
    plain = [e['filename'] for e in _eager_examples(ds)]
    for skip in (0, 2, 4, 7, tf.constant(5, tf.int64)):
        assert [e['filename'] for e in _eager_examples(ds, skip=skip)] == plain[int(skip) :]
    with pytest.raises(ValueError, match='unshuffled'):
        ds.make_dataset(shuffle=True, seed=1, skip=2)
    for bad in (-1, True):
        with pytest.raises(ValueError, match='count of records'):
            ds.make_dataset(skip=bad)


def test_metadata_content(converted):
    with open(os.path.join(converted, 'voc_2012_val_metadata.json')) as f:
        meta = json.load(f)
    bird = [c for c in meta['classes'] if c['name'] == 'bird'][0]
    assert bird == {'id': 3, 'name': 'bird', 'num_images': 7, 'num_objects': 7, 'num_difficult': 0}
    assert [f['num_examples'] for f in meta['files']] == [3, 3, 1]


@pytest.mark.parametrize(
    'image_id,objects,fmt',
    [
        (None, (), 'jpeg'),
        (
            None,
            (
                ef.ObjectRecord((0.1, 0.2, 0.3, 0.4), 3, 'bird', 1, 0),
                ef.ObjectRecord((0, 0, 1, 1), 20, 'tvmonitor'),
            ),
            'jpeg',
        ),
        (-5, (ef.ObjectRecord((1 / 3, 0.5, 0.75, 1.0), 300, 'caf\u00e9', 0, 1, 1),), 'jpeg'),
        (2**40, (), 'jpeg'),
        (-(2**63), (), 'png'),  # the smallest int64; an 8-bit PNG kept byte for byte
    ],
)
def test_hand_encoded_example_parses_to_the_tensorflow_proto(image_id, objects, fmt):
    image = image_io.EncodedImage(b'\xff\xd8\xff' + bytes(range(256)) * 3, 123, 4567, format=fmt)
    record = ef.ExampleRecord('x/\u00e9.jpg', image, objects, image_id)
    feature = {
        ef.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.data])),
        ef.FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[fmt.encode()])),
        ef.FILENAME: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=['x/\u00e9.jpg'.encode()])
        ),
        ef.HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[123])),
        ef.WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[4567])),
        ef.CHANNELS: tf.train.Feature(int64_list=tf.train.Int64List(value=[3])),
        ef.SHAPE: tf.train.Feature(int64_list=tf.train.Int64List(value=[123, 4567, 3])),
        ef.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[o.label for o in objects])),
        ef.LABEL_TEXT: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[o.name.encode() for o in objects])
        ),
        ef.DIFFICULT: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[o.difficult for o in objects])
        ),
        ef.TRUNCATED: tf.train.Feature(
            int64_list=tf.train.Int64List(value=[o.truncated for o in objects])
        ),
    }
    for key, i in ((ef.YMIN, 0), (ef.XMIN, 1), (ef.YMAX, 2), (ef.XMAX, 3)):
        feature[key] = tf.train.Feature(
            float_list=tf.train.FloatList(value=[o.box[i] for o in objects])
        )
    if image_id is not None:
        feature[ef.IMAGE_ID] = tf.train.Feature(int64_list=tf.train.Int64List(value=[image_id]))
        feature[ef.ISCROWD] = tf.train.Feature(
            int64_list=tf.train.Int64List(value=[o.iscrowd for o in objects])
        )
    expected = tf.train.Example(features=tf.train.Features(feature=feature))
    assert tf.train.Example.FromString(ef.serialize_example(record)) == expected
