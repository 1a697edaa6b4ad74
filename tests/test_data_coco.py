"""COCO conversion: contiguous labels over a category-id gap, crowd boxes, image ids, box rule."""

import hashlib
import json
import os

import numpy as np
import pytest

from datasets import coco
from datasets import convert
from tests import data_fixtures as fx
from tf_extended import safe_io

CATEGORIES = [
    {'id': 18, 'name': 'dog', 'supercategory': 'animal'},
    {'id': 1, 'name': 'person', 'supercategory': 'person'},
    {'id': 3, 'name': 'car', 'supercategory': 'vehicle'},
]


def _ann(ann_id, image_id, category_id, bbox, iscrowd=0):
    return fx.coco_annotation(ann_id, image_id, category_id, bbox, iscrowd=iscrowd, segmentation=[])


def test_coco_round_trip(tmp_path):
    images = [
        ('b.jpg', 42, fx.smooth_image(50, 100, 1), (100, 50)),
        ('a.jpg', 7, fx.smooth_image(60, 80, 2), (81, 60)),  # JSON width off by one
        ('empty.jpg', 9, fx.smooth_image(30, 30, 3), (30, 30)),
    ]
    anns = [
        _ann(5, 7, 18, [10.5, 20.0, 30.0, 15.5]),
        _ann(2, 7, 1, [0.0, 0.0, 80.0, 60.0], iscrowd=1),
        _ann(9, 42, 3, [90.0, 40.0, 20.0, 20.0]),  # crosses the right/bottom border: clipped
        _ann(11, 42, 3, [5.0, 5.0, 0.0, 10.0]),  # zero width: dropped
        _ann(12, 42, 1, [1.0, 2.0, 3.0, 4.0]),
    ]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    out = str(tmp_path / 'out')
    meta = fx.convert_coco(ann_path, img_dir, out)

    # Labels 1..K in COCO category-id order: person (1) -> 1, car (3) -> 2, dog (18) -> 3.
    assert [(c['id'], c['name'], c['coco_category_id']) for c in meta['classes']] == [
        (1, 'person', 1),
        (2, 'car', 3),
        (3, 'dog', 18),
    ]
    got = fx.read_examples(out, 'coco')
    assert [g['image_id'] for g in got] == [7, 9, 42]  # image-id order
    a, empty, b = got
    assert a['filename'] == b'a.jpg'
    # Annotation-id order inside an image: crowd person (id 2), then dog (id 5).
    np.testing.assert_allclose(
        a['bboxes'], [[0, 0, 1, 1], [20 / 60, 10.5 / 80, 35.5 / 60, 40.5 / 80]], atol=1e-6
    )
    np.testing.assert_array_equal(a['labels'], [1, 3])
    np.testing.assert_array_equal(a['difficult'], [1, 0])  # crowd is ignored like VOC difficult
    np.testing.assert_array_equal(a['truncated'], [0, 0])
    assert empty['bboxes'].shape == (0, 4)
    np.testing.assert_allclose(
        b['bboxes'], [[40 / 50, 90 / 100, 1, 1], [2 / 50, 1 / 100, 6 / 50, 4 / 100]], atol=1e-6
    )
    np.testing.assert_array_equal(b['labels'], [2, 1])
    raw = {r['image/id'][0]: r for r in fx.raw_features(os.path.join(out, 'coco_000.tfrecord'))}
    assert raw[7]['image/object/bbox/iscrowd'] == [1, 0] and raw[42][
        'image/object/bbox/iscrowd'
    ] == [0, 0]
    assert raw[7]['image/object/bbox/label_text'] == [b'person', b'dog']
    details = [
        (e['file'].split(': ')[-1], e['kind'], e['detail']) for e in meta['report']['entries']
    ]
    assert (
        'image id 7 (a.jpg)',
        'fixed',
        'JSON size 81x60, decoded image is 80x60; using the decoded size',
    ) in details
    assert (
        'image id 42 (b.jpg)',
        'fixed',
        'annotation 9 (car): box clipped to the 100x50 image',
    ) in details
    assert any(
        d[1] == 'dropped_object' and d[2].startswith('annotation 11 (car): zero-area')
        for d in details
    )
    person = meta['classes'][0]
    assert (person['num_images'], person['num_objects'], person['num_difficult']) == (2, 2, 1)


def test_coco_box_rule_by_hand():
    """The box rule on a 100x50 image, case by case: (box, clipped, drop reason)."""
    rule = coco.coco_box_to_relative
    assert rule(10, 5, 30, 20, 100, 50) == ((0.1, 0.1, 0.5, 0.4), False, None)
    # Clipped in y only (y + h = 60 > 50) is reported as clipped.
    assert rule(10, 40, 30, 20, 100, 50) == ((0.8, 0.1, 1.0, 0.4), True, None)
    # No height (or no width) is a zero-area box, whatever is left after clipping.
    assert rule(10, 5, 30, 0, 100, 50) == (None, False, 'zero-area box [x=10, y=5, w=30, h=0]')
    assert rule(10, 5, 30, -2, 100, 50)[2] == 'zero-area box [x=10, y=5, w=30, h=-2]'
    # Entirely right of or below the image: clipped to a zero-width (-height) edge, dropped.
    for box in ((100, 5, 30, 20), (120, 5, 30, 20), (10, 50, 30, 20), (-40, 5, 30, 20)):
        x, y, w, h = box
        assert rule(*box, 100, 50) == (
            None,
            True,
            f'box [x={x}, y={y}, w={w}, h={h}] outside the 100x50 image',
        )


def test_coco_metadata_counts_crowd_regions_as_num_crowd(tmp_path):
    """A COCO user reads crowd regions as `num_crowd` (they are also flagged difficult, so
    `num_difficult` counts them too, as it did); counts add up over shards, and a class or a
    shard without crowds says 0."""
    images = [
        ('a.jpg', 1, fx.smooth_image(20, 20, 1), (20, 20)),
        ('b.jpg', 2, fx.smooth_image(20, 20, 2), (20, 20)),
        ('c.jpg', 3, fx.smooth_image(20, 20, 3), (20, 20)),
    ]
    anns = [
        _ann(1, 1, 1, [1, 1, 5, 5]),  # shard 1: no crowd
        _ann(2, 2, 1, [0, 0, 20, 20], iscrowd=1),  # shard 2
        _ann(3, 2, 3, [2, 2, 5, 5]),
        _ann(4, 3, 1, [0, 0, 10, 10], iscrowd=1),  # shard 3
        _ann(5, 3, 1, [3, 3, 4, 4]),
    ]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    out = str(tmp_path / 'out')
    fx.convert_coco(ann_path, img_dir, out, samples_per_file=1)
    with open(os.path.join(out, 'coco_metadata.json')) as f:
        written = json.load(f)
    counts = [
        (c['name'], c['num_objects'], c['num_crowd'], c['num_difficult'])
        for c in written['classes']
    ]
    assert counts == [('person', 4, 2, 2), ('car', 1, 0, 0), ('dog', 0, 0, 0)]


def test_coco_unknown_category(tmp_path):
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    anns = [_ann(1, 1, 1, [1, 1, 5, 5]), _ann(2, 1, 99, [1, 1, 5, 5])]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    with pytest.raises(
        convert.UnknownClassError, match=r'annotation 2 has category id 99.*1:person, 3:car, 18:dog'
    ):
        fx.convert_coco(ann_path, img_dir, str(tmp_path / 'out1'))
    meta = fx.convert_coco(ann_path, img_dir, str(tmp_path / 'out2'), skip_unknown_classes=True)
    (ex,) = fx.read_examples(str(tmp_path / 'out2'), 'coco')
    np.testing.assert_array_equal(ex['labels'], [1])
    assert meta['report']['counts']['unknown_class'] == 1


def test_coco_source_describes_the_bytes_read_once(tmp_path, monkeypatch):
    """The metadata's `source` hashes the very bytes parsed: the file (450 MB for train2017) is
    read once."""
    images = [('a.jpg', 7, fx.smooth_image(20, 30), (30, 20))]
    ann_path, img_dir = fx.write_coco(
        str(tmp_path), images, CATEGORIES, [_ann(1, 7, 3, [1, 2, 3, 4])]
    )
    reads, read_bytes = [], safe_io.read_bytes
    monkeypatch.setattr(
        safe_io, 'read_bytes', lambda path, *args: reads.append(path) or read_bytes(path, *args)
    )
    *_, source = fx.coco.read_annotations(ann_path, img_dir)
    assert reads == [ann_path]
    with open(ann_path, 'rb') as f:
        data = f.read()
    assert source == {
        'dataset_name': 'coco',
        'annotations_file': os.path.abspath(ann_path),
        'annotations_size': len(data),
        'annotations_sha256': hashlib.sha256(data).hexdigest(),
        'image_dir': os.path.abspath(img_dir),
    }


@pytest.mark.parametrize(
    'categories, anns, message',
    [
        (
            CATEGORIES,
            [_ann(5, 1, 1, [1, 1, 5, 5]), _ann(2, 1, 3, [2, 2, 5, 5]), _ann(5, 1, 3, [1, 1, 4, 4])],
            'id 5 appears twice in "annotations"',
        ),
        (CATEGORIES + [{'id': 3, 'name': 'truck'}], [], 'id 3 appears twice in "categories"'),
    ],
)
def test_coco_ids_twice_are_refused(tmp_path, categories, anns, message):
    """pycocotools indexes annotations and categories by id: the later would hide the other."""
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, categories, anns)
    with pytest.raises(ValueError) as err:
        fx.coco.read_annotations(ann_path, img_dir)
    assert str(err.value) == f'{ann_path}: {message}; fix the JSON.'


_MISSING = object()


@pytest.mark.parametrize(
    'image_id, problem',
    [
        # These fell into "not a COCO instances file ... (KeyError: 'image_id')" or
        # "(TypeError: unhashable type: 'list')", naming neither the annotation nor the field.
        (_MISSING, 'has no "image_id"; every annotation needs the integer id of its image in '),
        ([1], 'has image_id [1] (an array), which is no image\'s id: '),
        ({'id': 1}, "has image_id {'id': 1} (an object), which is no image's id: "),
        # These matched image 1 (1.0 == True == 1) and were kept: refused as a category_id 1.0 is.
        (1.0, "has image_id 1.0 (a number), which is no image's id: "),
        (True, "has image_id True (a boolean), which is no image's id: "),
        (2.5, "has image_id 2.5 (a number), which is no image's id: "),
        # Integers no image can have (an image of such an id is skipped as a bad image).
        (-1, 'has image_id -1, not an integer in 0..2**63-1, which the records store as int64'),
        (
            2**63,
            f'has image_id {2**63}, not an integer in 0..2**63-1, which the records store as int64',
        ),
    ],
)
def test_coco_annotation_image_ids_name_the_annotation(tmp_path, image_id, problem):
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    ann = _ann(8, 1, 1, [1, 1, 5, 5])
    if image_id is _MISSING:
        del ann['image_id']
    else:
        ann['image_id'] = image_id
    ann_path, img_dir = fx.write_coco(
        str(tmp_path), images, CATEGORIES, [_ann(3, 1, 1, [2, 2, 5, 5]), ann]
    )
    with pytest.raises(ValueError) as err:
        fx.coco.read_annotations(ann_path, img_dir)
    if image_id is _MISSING:
        end = '"images"; fix the JSON.'
    elif isinstance(image_id, int) and not isinstance(image_id, bool):
        end = '; fix the JSON.'
    else:
        end = 'image ids are integers; fix the JSON.'
    assert str(err.value) == f'{ann_path}: "annotations"[1] (id 8) {problem}{end}'


def test_coco_annotation_problems_are_reported_in_file_order(tmp_path):
    """The first bad annotation of the file is named, not the one of the lowest id."""
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    anns = [
        dict(_ann(9, 1, 1, [1, 1, 5, 5]), image_id='x'),
        dict(_ann(2, 1, 1, [1, 1, 5, 5]), image_id='y'),
    ]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    with pytest.raises(ValueError, match=r'"annotations"\[0\] \(id 9\) has image_id \'x\''):
        fx.coco.read_annotations(ann_path, img_dir)


def test_coco_annotation_image_ids_of_no_image_stay_ignored(tmp_path, monkeypatch):
    """An integer image_id of no image is an orphan, ignored as pycocotools does, and said (it
    was silent: many mean the annotations of other images)."""
    warnings = []
    monkeypatch.setattr(fx.coco.logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    anns = [_ann(3, 1, 1, [2, 2, 5, 5]), _ann(8, 2, 1, [1, 1, 5, 5])]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    (source,), _, _, _ = fx.coco.read_annotations(ann_path, img_dir)
    assert [a[0] for a in source.annotations] == [3]
    assert warnings == [
        f'{ann_path}: 1 annotation(s) refer to image ids that no "images" entry has (2): '
        'left out; check that it is the annotation file of these images.'
    ]


def test_coco_bad_json(tmp_path):
    path = tmp_path / 'instances.json'
    path.write_text('{"images": []}')
    with pytest.raises(ValueError, match='instances.json: not a COCO instances file'):
        fx.coco.read_annotations(str(path), str(tmp_path))


def test_coco_annotations_kept_for_evaluation(tmp_path):
    """image/coco/annotations: the file's values in the file's order, dropped boxes and crowd
    regions included; an annotation without area gets w*h (reported); a non-finite area is a bad
    example, a non-number one makes the file unreadable."""
    images = [
        (name, i, fx.smooth_image(40, 50), (50, 40)) for i, name in ((1, 'a.jpg'), (2, 'b.jpg'))
    ]
    anns = [
        dict(_ann(9, 1, 3, [1.5, 2.25, 10, 20]), area=123.456),
        {'id': 4, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 60, 50], 'iscrowd': 1},  # no area
        dict(_ann(6, 1, 18, [5, 5, 0, 7]), area=0),  # zero width: not a training object
        _ann(2, 2, 1, [1, 1, 5, 5]),
    ]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, CATEGORIES, anns)
    meta = fx.convert_coco(ann_path, img_dir, str(tmp_path / 'out'))
    a, b = fx.read_examples(str(tmp_path / 'out'), 'coco')
    assert json.loads(a['coco_annotations']) == [
        {
            'id': 9,
            'category_id': 3,
            'bbox': [1.5, 2.25, 10.0, 20.0],
            'area': 123.456,
            'iscrowd': 0,
            'index': 0,
        },
        {
            'id': 4,
            'category_id': 1,
            'bbox': [0.0, 0.0, 60.0, 50.0],
            'area': 3000.0,
            'iscrowd': 1,
            'index': 1,
        },
        {
            'id': 6,
            'category_id': 18,
            'bbox': [5.0, 5.0, 0.0, 7.0],
            'area': 0.0,
            'iscrowd': 0,
            'index': 2,
        },
    ]
    assert len(a['labels']) == 2 and json.loads(b['coco_annotations'])[0]['index'] == 3
    np.testing.assert_array_equal(a['iscrowd'], [1, 0])  # annotation-id order: 4, 9
    details = [e['detail'] for e in meta['report']['entries']]
    assert 'annotation 4 (person): no "area"; w*h = 3000 kept for COCO evaluation' in details
    anns[0]['area'] = float('nan')
    ann_path, img_dir = fx.write_coco(str(tmp_path / 'nan'), images, CATEGORIES, anns)
    with pytest.raises(convert.BadExampleError, match='annotation 9 has area nan'):
        fx.convert_coco(ann_path, img_dir, str(tmp_path / 'out_nan'))
    anns[0]['area'] = 'big'
    ann_path, img_dir = fx.write_coco(str(tmp_path / 'str'), images, CATEGORIES, anns)
    with pytest.raises(ValueError, match="area 'big' is not a number"):
        fx.convert_coco(ann_path, img_dir, str(tmp_path / 'out_str'))
