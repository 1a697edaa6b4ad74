"""Class names (and the other text fields) of user annotations: VOC XML as pretty-printers and
labelling tools write it, names differing only in case, COCO categories with one name, with
surrounding whitespace or with ids that are not integers."""

import json
import os

import numpy as np
import pytest

from datasets import coco
from datasets import convert
from datasets import labels
from evaluation import scoring
from tests import data_fixtures as fx

VOC = labels.VOC_CLASSES
DOG = VOC.index('dog') + 1
CAT = VOC.index('cat') + 1

# What an XML pretty-printer (or a labelling tool) writes: every text wrapped in whitespace.
PRETTY = """<annotation>
  <filename>
    a.jpg
  </filename>
  <size>
    <width> 30 </width>
    <height>
      20
    </height>
  </size>
  <object>
    <name>
      dog
    </name>
    <truncated>
      1
    </truncated>
    <difficult> 1 </difficult>
    <bndbox>
      <xmin> 2 </xmin>
      <ymin>
        3
      </ymin>
      <xmax>\t10\t</xmax>
      <ymax> 12 </ymax>
    </bndbox>
  </object>
  <object>
    <name> cat </name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>30</xmax><ymax>20</ymax></bndbox>
  </object>
</annotation>
"""


def _voc_xml(tmp_path, xml, image=None):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 30) if image is None else image, [])
    with open(os.path.join(root, 'Annotations', 'a.xml'), 'w') as f:
        f.write(xml)
    return root, os.path.join(root, 'Annotations', 'a.xml')


def _entries(meta, kind):
    return [e['detail'] for e in meta['report']['entries'] if e['kind'] == kind]


def test_voc_whitespace_around_every_field_is_ignored(tmp_path):
    root, _ = _voc_xml(tmp_path, PRETTY)
    out = str(tmp_path / 'out')
    meta = fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    np.testing.assert_array_equal(ex['labels'], [DOG, CAT])
    np.testing.assert_array_equal(ex['difficult'], [1, 0])
    np.testing.assert_array_equal(ex['truncated'], [1, 0])
    np.testing.assert_allclose(
        ex['bboxes'], [fx.voc_rel((2, 3, 10, 12), 30, 20), [0, 0, 1, 1]], atol=1e-6
    )
    (raw,) = fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    assert raw['image/object/bbox/label_text'] == [b'dog', b'cat']
    # <size> and <filename> match once stripped: nothing was "fixed".
    assert meta['report']['counts'] == {
        'fixed': 0,
        'dropped_object': 0,
        'unknown_class': 0,
        'skipped_example': 0,
    }


def test_voc_size_note_shows_the_stripped_values(tmp_path):
    root, _ = _voc_xml(tmp_path, PRETTY.replace('<width> 30 </width>', '<width>\n  31\n</width>'))
    meta = fx.convert_voc([root], str(tmp_path / 'out1'))
    assert _entries(meta, 'fixed') == [
        '<size> says 31x20, decoded image is 30x20; using the decoded size'
    ]
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 30), [], size=None)
    meta = fx.convert_voc([root], str(tmp_path / 'out2'))
    assert _entries(meta, 'fixed') == [
        '<size> is missing, decoded image is 30x20; using the decoded size'
    ]


def _with_name(name):
    return PRETTY.replace('<name> cat </name>', f'<name>{name}</name>')


def test_voc_name_differing_in_case_is_an_error_saying_so(tmp_path):
    root, xml_path = _voc_xml(tmp_path, _with_name(' Dog '))
    with pytest.raises(convert.UnknownClassError) as err:
        fx.convert_voc([root], str(tmp_path / 'out1'))
    assert str(err.value) == (
        f"{xml_path}: object 1 has class name 'Dog', which is not among the 20 known classes "
        f'({", ".join(VOC)}): it differs only in case from the known class \'dog\', and class '
        "names are case-sensitive. Fix the annotation's spelling, pass a --labels_file that "
        'spells the class as the annotations do, or pass --skip_unknown_classes to drop such '
        'objects.'
    )
    assert not os.path.exists(tmp_path / 'out1' / 'data_metadata.json')
    # Skipped: dropped (never lowercased into 'dog'), and the report says why it did not match.
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), skip_unknown_classes=True)
    (ex,) = fx.read_examples(str(tmp_path / 'out2'))
    np.testing.assert_array_equal(ex['labels'], [DOG])
    assert _entries(meta, 'unknown_class') == [
        "object 1: unknown class 'Dog' (differs only in case from the known class 'dog') dropped"
    ]


@pytest.mark.parametrize(
    'name, said',
    [
        ('unicorn', '.'),  # nothing close: the plain error
        ('persn', ": did you mean 'person'?"),  # a typo of a known class
    ],
)
def test_voc_unknown_name_names_a_close_known_one(tmp_path, name, said):
    root, xml_path = _voc_xml(tmp_path, _with_name(name))
    with pytest.raises(convert.UnknownClassError) as err:
        fx.convert_voc([root], str(tmp_path / 'out'))
    assert str(err.value) == (
        f"{xml_path}: object 1 has class name {name!r}, which is not among the 20 known classes "
        f'({", ".join(VOC)}){said} Fix the annotation, pass --labels_file with the full class '
        'list, or pass --skip_unknown_classes to drop such objects.'
    )


def test_voc_class_list_is_matched_exactly(tmp_path):
    """A class list may hold 'Dog' and 'dog' as two classes: each name gets its own id."""
    root, _ = _voc_xml(tmp_path, _with_name('Dog'))
    path = tmp_path / 'labels.txt'
    path.write_bytes(b'\xef\xbb\xbfdog\r\n\r\n  Dog \r\n')
    names = labels.read_labels_file(str(path))
    assert names == ('dog', 'Dog')
    out = str(tmp_path / 'out')
    fx.convert_voc([root], out, class_names=names)
    (raw,) = fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    assert raw['image/object/bbox/label'] == [1, 2]
    assert raw['image/object/bbox/label_text'] == [b'dog', b'Dog']


def test_voc_scoring_names_the_case_difference(tmp_path):
    _, xml_path = _voc_xml(tmp_path, _with_name('CAT'))
    with pytest.raises(ValueError) as err:
        scoring.read_voc_ground_truth(xml_path, {'cat': 1, 'dog': 2})
    assert str(err.value) == (
        f"{xml_path}: object 1 has class 'CAT', not among ['cat', 'dog'] (it differs only in "
        "case from the known class 'cat'; class names are case-sensitive); fix the annotation's "
        'spelling or pass a --labels_file that spells the class as the annotations do.'
    )


def test_case_note():
    assert labels.case_note('Dog', VOC) == "differs only in case from the known class 'dog'"
    assert labels.case_note('DOG', ('dog', 'Dog', 'cat')) == (
        "differs only in case from the known class 'dog' or 'Dog'"
    )
    assert labels.case_note('STRASSE', ('straße',)) == (  # casefold, not lower
        "differs only in case from the known class 'straße'"
    )
    assert labels.case_note('unicorn', VOC) is None


def _ann(ann_id, category_id, bbox=(1, 1, 5, 5)):
    return {
        'id': ann_id,
        'image_id': 1,
        'category_id': category_id,
        'bbox': list(bbox),
        'area': bbox[2] * bbox[3],
        'iscrowd': 0,
    }


def _coco(tmp_path, categories, annotations):
    images = [('a.jpg', 1, fx.smooth_image(20, 20), (20, 20))]
    return fx.write_coco(str(tmp_path), images, categories, annotations)


@pytest.mark.parametrize(
    'categories, problem',
    [
        (
            [{'id': 19, 'name': 'dog'}, {'id': 1, 'name': 'cat'}, {'id': 18, 'name': 'dog'}],
            "categories 18 and 19 are both named 'dog'",
        ),
        (
            [{'id': 18, 'name': 'dog'}, {'id': 19, 'name': ' dog\n'}],
            "categories 18 and 19 are both named 'dog' (written 'dog' and ' dog\\n'; surrounding "
            'whitespace is ignored)',
        ),
    ],
)
def test_coco_categories_of_one_name_are_refused(tmp_path, categories, problem):
    """pycocotools and the TF Object Detection API index categories by id and take such a file;
    here both classes would carry one name in the records, the card and per-class AP."""
    ann_path, img_dir = _coco(tmp_path, categories, [_ann(1, 18), _ann(2, 19)])
    with pytest.raises(ValueError) as err:
        coco.read_annotations(ann_path, img_dir)
    assert str(err.value) == (
        f'{ann_path}: {problem}; class names must be unique (classes are known by name in the '
        'model card, detections and per-class AP): rename one, or merge them (keep one category '
        'and use its id in every annotation of the other); fix the JSON.'
    )


def test_coco_names_are_stripped(tmp_path):
    categories = [{'id': 18, 'name': ' dog\n'}, {'id': 3, 'name': '\ttraffic light '}]
    ann_path, img_dir = _coco(tmp_path, categories, [_ann(1, 18), _ann(2, 3, (2, 2, 6, 6))])
    out = str(tmp_path / 'out')
    meta = fx.convert_coco(ann_path, img_dir, out)
    assert [(c['id'], c['name'], c['coco_category_id']) for c in meta['classes']] == [
        (1, 'traffic light', 3),
        (2, 'dog', 18),
    ]
    (raw,) = fx.raw_features(os.path.join(out, 'coco_000.tfrecord'))
    assert raw['image/object/bbox/label'] == [2, 1]
    assert raw['image/object/bbox/label_text'] == [b'dog', b'traffic light']
    # Evaluation's ground truth keeps the file's category ids.
    kept = json.loads(raw['image/coco/annotations'][0])
    assert [a['category_id'] for a in kept] == [18, 3]


@pytest.mark.parametrize(
    'category, has',
    [
        ({'id': '18', 'name': 'dog'}, "id '18' (a string)"),
        ({'id': 18.0, 'name': 'dog'}, 'id 18.0 (a number)'),
        ({'id': True, 'name': 'dog'}, 'id True (a boolean)'),
        ({'name': 'dog'}, 'no "id"'),
    ],
)
def test_coco_category_ids_must_be_integers(tmp_path, category, has):
    """`"id": "18"` beside annotations' 18 made every dog an unknown class, with a message
    ("category id 18, which is not among ... 18:dog") that could not be understood."""
    ann_path, img_dir = _coco(tmp_path, [{'id': 1, 'name': 'cat'}, category], [_ann(1, 1)])
    with pytest.raises(ValueError) as err:
        coco.read_annotations(ann_path, img_dir)
    assert str(err.value) == (
        f'{ann_path}: "categories"[1] (name \'dog\') has {has}; category ids are integers, which '
        'the annotations\' "category_id" refer to; fix the JSON.'
    )


@pytest.mark.parametrize(
    'category_id, kind',
    [('18', "'18' is a string"), (18.0, '18.0 is a number'), (None, 'None is null')],
)
def test_coco_annotation_category_ids_must_be_integers(tmp_path, category_id, kind):
    ann_path, img_dir = _coco(
        tmp_path, [{'id': 18, 'name': 'dog'}], [_ann(1, 18), _ann(2, category_id)]
    )
    with pytest.raises(ValueError) as err:
        coco.read_annotations(ann_path, img_dir)
    assert str(err.value) == (
        f'{ann_path}: "annotations"[1] (id 2) cannot be read (category_id {kind}, not an '
        'integer); expected an integer "category_id", "bbox": [x, y, w, h] and optional "area" '
        'and "iscrowd" numbers: fix the JSON.'
    )
