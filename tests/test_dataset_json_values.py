"""Numbers in the JSON the data layer reads (the records' metadata, COCO instances files) that
Python's json takes but the code after it cannot: null, a string or a boolean for an integer,
NaN/Infinity, 1e400 (a float overflow), a 400-digit integer (float() raises OverflowError), a
fraction where an integer is meant. Each is refused naming the file and the field, before it
crashes or silently changes a later step (the trainer's model card, COCO evaluation)."""

import json
import os
import shutil

import pytest

from datasets import coco
from datasets import convert
from datasets import dataset_factory
from tests import data_fixtures as fx

CATEGORIES = [{'id': 18, 'name': 'dog'}, {'id': 1, 'name': 'person'}, {'id': 3, 'name': 'car'}]
ANN = {'id': 3, 'image_id': 1, 'category_id': 1, 'bbox': [6, 4, 12, 8], 'area': 96, 'iscrowd': 0}
HUGE = '1' + '0' * 400  # a JSON integer beyond float64


def _dump(path, data, raw=None):
    """Writes `data` as JSON; the string 'RAW' (quoted) is replaced by the JSON text `raw`
    (what json.dump cannot write: 1e400, a 400-digit integer)."""
    text = json.dumps(data)
    if raw is not None:
        assert text.count('"RAW"') == 1
        text = text.replace('"RAW"', raw)
    with open(path, 'w') as f:
        f.write(text)


# --- the records' metadata (<name>_metadata.json) ---------------------------------------------


@pytest.fixture(scope='module')
def coco_records(tmp_path_factory):
    """COCO records of 3 classes (coco_category_id 1, 3, 18), 2 shards of 1 example each."""
    root = str(tmp_path_factory.mktemp('json_values'))
    images = [(f'{i}.jpg', i, fx.smooth_image(24, 32, i), (32, 24)) for i in (1, 2)]
    anns = [ANN, dict(ANN, id=4, image_id=2, category_id=18)]
    ann_path, img_dir = fx.write_coco(root, images, CATEGORIES, anns)
    out = os.path.join(root, 'records')
    fx.convert_coco(ann_path, img_dir, out, samples_per_file=1)
    return out


@pytest.fixture
def records(coco_records, tmp_path):
    """A copy of the records and their metadata: (folder, metadata path, metadata dict)."""
    out = str(tmp_path / 'records')
    shutil.copytree(coco_records, out)
    meta_path = os.path.join(out, 'coco' + convert.METADATA_SUFFIX)
    with open(meta_path) as f:
        return out, meta_path, json.load(f)


def test_the_records_category_ids_are_read(records):
    out, _, meta = records
    assert [f['num_examples'] for f in meta['files']] == [1, 1]
    dataset = dataset_factory.get_dataset('custom', 'coco', out)
    assert dataset_factory.category_ids(dataset.metadata) == (1, 3, 18)


def test_the_largest_int64_category_id_is_read(records):
    out, meta_path, meta = records
    meta['classes'][2]['coco_category_id'] = 2**63 - 1
    _dump(meta_path, meta)
    dataset = dataset_factory.get_dataset('custom', 'coco', out)
    assert dataset_factory.category_ids(dataset.metadata) == (1, 3, 2**63 - 1)


_IDS_EXPECTED = (
    "; expected every class or none to have a 'coco_category_id' (the COCO category id of its "
    "label) or a 'label_map_id' (its id in the label map converted with), a distinct integer in "
    '0..2**63-1: convert the dataset again.'
)


@pytest.mark.parametrize(
    'value, raw, shown',
    [
        (None, None, 'None'),  # was a TypeError traceback in category_ids
        ('RAW', '1e400', 'inf'),  # OverflowError traceback
        ('RAW', HUGE, None),  # beyond int64: the model card, numpy's int64 arrays
        ('x', None, "'x'"),  # "invalid literal for int()", naming no file
        (2.7, None, '2.7'),  # was silently 2
        (True, None, 'True'),  # was silently 1
        (-3, None, '-3'),  # the model card refuses it
        (2**63, None, str(2**63)),
        ([3], None, '[3]'),
    ],
)
def test_metadata_category_ids_must_be_int64_integers(records, value, raw, shown):
    out, meta_path, meta = records
    meta['classes'][1]['coco_category_id'] = value
    _dump(meta_path, meta, raw)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    message = str(err.value)
    if shown is None:  # texts.shown shortens it
        assert message.startswith(f"{meta_path}: 'classes'[1] has coco_category_id 1000")
        assert message.endswith(f', not an integer in 0..2**63-1{_IDS_EXPECTED}')
    else:
        assert message == (
            f"{meta_path}: 'classes'[1] has coco_category_id {shown}, not an integer in "
            f'0..2**63-1{_IDS_EXPECTED}'
        )


def test_metadata_category_ids_are_distinct_and_in_every_class(records):
    out, meta_path, meta = records
    meta['classes'][2]['coco_category_id'] = 1
    _dump(meta_path, meta)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    assert str(err.value) == (
        f"{meta_path}: 'classes'[0] and [2] have one coco_category_id 1{_IDS_EXPECTED}"
    )
    del meta['classes'][2]['coco_category_id']
    _dump(meta_path, meta)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    assert str(err.value) == (
        f"{meta_path}: 'classes'[2] has no 'coco_category_id' while 2 other classes have one"
        f'{_IDS_EXPECTED}'
    )
    # A label map's ids (VOC records) are read as COCO's are; both kinds at once are not.
    for entry, label_map_id in zip(meta['classes'], (4, 2, 9)):
        entry.pop('coco_category_id', None)
        entry['label_map_id'] = label_map_id
    _dump(meta_path, meta)
    dataset = dataset_factory.get_dataset('custom', 'coco', out)
    assert dataset_factory.category_ids(dataset.metadata) == (4, 2, 9)
    assert dataset_factory.coco_category_ids(dataset.metadata) is None
    meta['classes'][1]['coco_category_id'] = 3
    _dump(meta_path, meta)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    assert str(err.value) == (
        f"{meta_path}: 'classes' have both 'coco_category_id' and 'label_map_id'{_IDS_EXPECTED}"
    )


def test_metadata_category_id_0_is_an_id(records):
    out, meta_path, meta = records
    meta['classes'][0]['coco_category_id'] = 0  # as some COCO exports number them
    _dump(meta_path, meta)
    metadata, _ = convert.read_metadata(meta_path)
    assert dataset_factory.category_ids(metadata) == (0, 3, 18)


_FILES_EXPECTED = (
    '; expected \'files\' to list each shard as {"name": str, "num_examples": int, "size": int, '
    '"sha256": str} with counts and sizes in 0..2**63-1: convert the dataset again.'
)


@pytest.mark.parametrize(
    'field, value, raw, shown, what',
    [
        ('num_examples', True, None, 'True', 'an integer in 0..2**63-1'),  # was read as 1
        ('num_examples', -1, None, '-1', 'an integer in 0..2**63-1'),
        ('num_examples', 1.0, None, '1.0', 'an integer in 0..2**63-1'),
        ('num_examples', 'RAW', '1e400', 'inf', 'an integer in 0..2**63-1'),
        ('size', True, None, 'True', 'an integer in 0..2**63-1'),
        ('size', -5, None, '-5', 'an integer in 0..2**63-1'),
        ('size', '1', None, "'1'", 'an integer in 0..2**63-1'),  # was: counted the records instead
        ('size', None, None, 'None', 'an integer in 0..2**63-1'),
        ('sha256', 7, None, '7', 'a sha256 of 64 hex digits'),  # was: never verified
        ('sha256', '0' * 63, None, repr('0' * 63), 'a sha256 of 64 hex digits'),
        ('sha256', 'A' * 64, None, repr('A' * 64), 'a sha256 of 64 hex digits'),  # hexdigest's: a-f
    ],
)
def test_metadata_shard_counts_and_sizes_must_be_integers(records, field, value, raw, shown, what):
    out, meta_path, meta = records
    meta['files'][1][field] = value
    _dump(meta_path, meta, raw)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    assert str(err.value) == (
        f"{meta_path}: 'files'[1] has {field} {shown}, not {what}{_FILES_EXPECTED}"
    )


@pytest.mark.parametrize(
    'value, raw, shown',
    [(True, None, 'True'), (2.0, None, '2.0'), ('2', None, "'2'"), ('RAW', HUGE, None)],
)
def test_metadata_total_count_must_be_an_integer(records, value, raw, shown):
    out, meta_path, meta = records
    meta['files'].pop()  # one shard of 1 example: `true` equalled the sum
    meta['num_examples'] = value
    _dump(meta_path, meta, raw)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    message = str(err.value)
    assert message.startswith(f'{meta_path}: num_examples is ')
    assert message.endswith(', not an integer in 0..2**63-1; convert the dataset again.')
    if shown is not None:
        assert message == (
            f'{meta_path}: num_examples is {shown}, not an integer in 0..2**63-1; convert the '
            'dataset again.'
        )


def test_metadata_total_count_must_be_the_sum_of_the_shards(records):
    out, meta_path, meta = records
    meta['num_examples'] = 3
    _dump(meta_path, meta)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'coco', out)
    assert str(err.value) == (
        f"{meta_path}: num_examples 3 is not the sum of its shards' counts (2); convert the "
        'dataset again.'
    )


# --- COCO instances files ----------------------------------------------------------------------


def _instances(tmp_path, categories, annotations, raw=None):
    """An instances JSON of one image (id 1, not written: reading the JSON does not open it)."""
    path = str(tmp_path / 'instances.json')
    images = [{'id': 1, 'file_name': '1.jpg', 'width': 32, 'height': 24}]
    _dump(path, {'images': images, 'categories': categories, 'annotations': annotations}, raw)
    return path, str(tmp_path / 'images')


@pytest.mark.parametrize('value, raw', [(2**63, None), (2**64, None), ('RAW', HUGE), (-1, None)])
def test_coco_category_ids_are_bounded_as_image_ids(tmp_path, value, raw):
    categories = [{'id': 1, 'name': 'cat'}, {'id': value, 'name': 'dog'}]
    path, img_dir = _instances(tmp_path, categories, [ANN], raw)
    with pytest.raises(ValueError) as err:
        coco.read_annotations(path, img_dir)
    shown = str(value if raw is None else int(raw))
    assert str(err.value) == (
        f'{path}: "categories"[1] (name \'dog\') has id {shown}, beyond 0..2**63-1 (category ids '
        "are kept as int64 by the records' metadata, the model card and COCO evaluation); fix "
        'the JSON.'
    )


def test_coco_category_ids_at_the_bounds_are_read(tmp_path):
    categories = [{'id': 0, 'name': 'cat'}, {'id': 2**63 - 1, 'name': 'dog'}]
    path, img_dir = _instances(tmp_path, categories, [dict(ANN, category_id=0)])
    _, names, extra, _ = coco.read_annotations(path, img_dir)
    assert names == ('cat', 'dog') and extra == [
        {'coco_category_id': 0},
        {'coco_category_id': 2**63 - 1},
    ]


_ANN_EXPECTED = (
    '; expected an integer "category_id", "bbox": [x, y, w, h] and optional "area" and '
    '"iscrowd" numbers: fix the JSON.'
)


@pytest.mark.parametrize(
    'change, raw, head, problem',
    [
        # NaN/Infinity failed later, writing the records, naming neither file nor annotation.
        ({'id': float('nan')}, None, 'id nan', 'id nan is a number'),
        ({'id': float('inf')}, None, 'id inf', 'id inf is a number'),
        # These converted, and broke COCO evaluation later.
        ({'id': 1.5}, None, 'id 1.5', 'id 1.5 is a number'),
        ({'id': [1]}, None, 'id [1]', 'id [1] is an array'),
        ({'id': 'a'}, None, "id 'a'", "id 'a' is a string"),
        ({'id': True}, None, 'id True', 'id True is a boolean'),
        ({'id': None}, None, 'id None', 'id None is null'),
        ({'id': -1}, None, 'id -1', 'id -1 is a number'),
        ({'id': 2**63}, None, f'id {2**63}', f'id {2**63} is a number'),
    ],
)
def test_coco_annotation_ids_must_be_int64_integers(tmp_path, change, raw, head, problem):
    path, img_dir = _instances(tmp_path, CATEGORIES, [ANN, dict(ANN, **change)], raw)
    with pytest.raises(ValueError) as err:
        coco.read_annotations(path, img_dir)
    assert str(err.value) == (
        f'{path}: "annotations"[1] ({head}) cannot be read ({problem}, not an integer in '
        f'0..2**63-1){_ANN_EXPECTED}'
    )


def test_coco_annotation_without_an_id_names_it(tmp_path):
    ann = dict(ANN)
    del ann['id']
    path, img_dir = _instances(tmp_path, CATEGORIES, [ANN, ann])
    with pytest.raises(ValueError) as err:
        coco.read_annotations(path, img_dir)
    assert str(err.value) == (f'{path}: "annotations"[1] (id None) has no \'id\'{_ANN_EXPECTED}')


@pytest.mark.parametrize(
    'change, problem',
    [
        # pycocotools takes any true iscrowd for a crowd; 0.5 was stored as 0 (not crowd).
        ({'iscrowd': 0.5}, 'iscrowd 0.5 is a number, not 0 or 1'),
        ({'iscrowd': 2}, 'iscrowd 2 is a number, not 0 or 1'),
        ({'iscrowd': '1'}, "iscrowd '1' is a string, not 0 or 1"),
        ({'iscrowd': float('nan')}, 'iscrowd nan is a number, not 0 or 1'),
        # bbox values were read with float(): true became 1.0, "10" 10.0.
        ({'bbox': [6, 4, True, 8]}, 'bbox value True is not a number'),
        ({'bbox': [6, 4, '10', 8]}, "bbox value '10' is not a number"),
        # A string was read as its characters.
        ({'bbox': '6412'}, "bbox '6412' is a string, not an array"),
        ({'bbox': [6, 4, 12, int(HUGE)]}, 'int too large to convert to float'),
    ],
)
def test_coco_crowd_flags_and_box_values_are_checked(tmp_path, change, problem):
    path, img_dir = _instances(tmp_path, CATEGORIES, [ANN, dict(ANN, id=7, **change)])
    with pytest.raises(ValueError) as err:
        coco.read_annotations(path, img_dir)
    assert str(err.value) == (
        f'{path}: "annotations"[1] (id 7) cannot be read ({problem}){_ANN_EXPECTED}'
    )


def test_coco_values_real_files_hold_are_read_unchanged(tmp_path):
    """COCO's own files: integer ids (crowd ones above 2**39), iscrowd 0/1, float or integer
    boxes and areas; annotations stay in id order whatever the file order."""
    anns = [
        dict(ANN, id=900100581904, bbox=[1.5, 2.25, 10.0, 8.75], area=70.3, iscrowd=1),
        dict(ANN, id=3, bbox=[6, 4, 12, 8], area=96, iscrowd=0),
        dict(ANN, id=0, bbox=[0, 0, 1, 1], area=1),
    ]
    path, img_dir = _instances(tmp_path, CATEGORIES, anns)
    (source,), names, _, _ = coco.read_annotations(path, img_dir)
    assert names == ('person', 'car', 'dog')
    assert source.annotations == (
        (0, 1, (0.0, 0.0, 1.0, 1.0), 0, 1.0, 2),
        (3, 1, (6.0, 4.0, 12.0, 8.0), 0, 96.0, 1),
        (900100581904, 1, (1.5, 2.25, 10.0, 8.75), 1, 70.3, 0),
    )
