"""score_detections' VOC path against a hand-computed case (devkit rules, unclipped XML pixels)."""

import os

import numpy as np
import pytest

from evaluation import scoring


def _xml(objects):
    parts = ['<annotation><size><width>100</width><height>80</height><depth>3</depth></size>']
    for name, box, difficult in objects:
        flag = '' if difficult is None else f'<difficult>{difficult}</difficult>'
        parts.append(
            f'<object><name>{name}</name>{flag}<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>'
            f'<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox>'
            f'<part><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>'
            f'<ymax>5</ymax></bndbox></part></object>'
        )
    return ''.join(parts) + '</annotation>'


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / 'voc'
    (root / 'Annotations').mkdir(parents=True)
    (root / 'ImageSets' / 'Main').mkdir(parents=True)
    (root / 'Annotations' / 'a.xml').write_text(
        _xml(
            [
                ('cat', (11, 11, 50, 50), '0'),
                ('cat', (61, 11, 90, 40), '1'),
                ('dog', (1, 1, 20, 20), None),
            ]
        )
    )
    (root / 'Annotations' / 'b.xml').write_text(_xml([('cat', (21, 21, 60, 60), '0')]))
    (root / 'ImageSets' / 'Main' / 'test.txt').write_text('a\nb\n')
    results = tmp_path / 'results'
    results.mkdir()
    # cat: TP (0.9, exact box on a), FP (0.8, duplicate on a), ignored (0.75, on a's difficult one),
    # TP (0.7, on b with IoU 39*39 / (40*40) >= 0.5). dog: no detections.
    (results / 'comp4_det_test_cat.txt').write_text(
        'a 0.9 11 11 50 50\na 0.8 12 12 50 50\na 0.75 61 11 90 40\nb 0.7 21 21 59 59\n'
    )
    (results / 'comp4_det_test_dog.txt').write_text('')
    return str(root), str(results)


def test_voc_scoring_hand_computed(voc):
    root, results = voc
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    cat, dog = result.classes
    assert (cat.num_gt, cat.num_difficult, cat.num_tp, cat.num_fp, cat.num_ignored) == (
        3,
        1,
        2,
        1,
        1,
    )
    # Counted curve: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    assert cat.ap_voc12 == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert cat.ap_voc07 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert (dog.num_gt, dog.ap_voc07) == (1, 0.0)
    assert result.map_voc12 == pytest.approx((0.5 + 1 / 3) / 2)
    np.testing.assert_allclose(cat.precision, [1, 0.5, 2 / 3])


def test_voc_scoring_rejects_unknown_images_and_classes(voc, tmp_path):
    root, results = voc
    with open(os.path.join(results, 'comp4_det_test_cat.txt'), 'a') as fh:
        fh.write('zzz 0.5 1 1 2 2\n')
    with pytest.raises(ValueError, match="image 'zzz' is not in"):
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    with pytest.raises(ValueError, match="class 'dog', not among"):
        scoring.score_voc_results(results, root, 'test', ('cat',))


def test_missing_class_file_scores_as_no_detections(voc):
    root, results = voc
    expected = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    os.remove(os.path.join(results, 'comp4_det_test_dog.txt'))  # a tool that found no dog
    warnings = []
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), log=warnings.append)
    assert [(c.name, c.num_gt, c.ap_voc07, c.ap_voc12) for c in result.classes] == [
        (c.name, c.num_gt, c.ap_voc07, c.ap_voc12) for c in expected.classes
    ]
    assert result.map_voc07 == expected.map_voc07
    assert len(warnings) == 1 and warnings[0].startswith('1 of 2 classes have no ')
    assert '(dog)' in warnings[0]
    with pytest.raises(FileNotFoundError, match='dog'):  # the devkit's rule, on request
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), strict=True)
