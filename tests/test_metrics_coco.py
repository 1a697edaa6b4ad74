"""COCO metrics wrapper: the numbers must be pycocotools' own, run directly on the same data."""

import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tf_extended import coco_metrics as cm

PERSON, CAR = 1, 3  # non-contiguous ids, as in COCO


def _dataset():
    """Three images; small (< 32²), medium and large objects; one crowd region."""
    annotations = [
        (1, PERSON, [10, 10, 200, 300], 0),  # large
        (1, PERSON, [300, 50, 20, 20], 0),  # small (400 px)
        (1, CAR, [400, 200, 60, 50], 0),  # medium (3000 px)
        (1, PERSON, [0, 300, 640, 180], 1),  # crowd: matched detections inside are ignored
        (2, CAR, [50, 50, 100, 80], 0),  # medium (8000 px)
        (2, PERSON, [10, 10, 40, 60], 0),  # medium (2400 px)
    ]
    return {
        'images': [
            {'id': 1, 'width': 640, 'height': 480},
            {'id': 2, 'width': 320, 'height': 240},
            {'id': 3, 'width': 100, 'height': 100},
        ],
        'categories': [{'id': PERSON, 'name': 'person'}, {'id': CAR, 'name': 'car'}],
        'annotations': [
            {
                'id': n + 1,
                'image_id': image,
                'category_id': category,
                'bbox': box,
                'area': float(box[2] * box[3]),
                'iscrowd': crowd,
            }
            for n, (image, category, box, crowd) in enumerate(annotations)
        ],
    }


def _detections():
    rows = [
        (1, PERSON, [12, 12, 198, 296], 0.9),
        (1, PERSON, [10, 10, 200, 300], 0.8),  # duplicate
        (1, PERSON, [100, 350, 50, 50], 0.85),  # inside the crowd region
        (1, PERSON, [305, 55, 20, 20], 0.6),  # small object, IoU ~0.33
        (1, CAR, [402, 198, 60, 52], 0.7),
        (1, CAR, [500, 400, 30, 30], 0.95),  # false positive ranked first
        (2, CAR, [55, 52, 95, 80], 0.75),
        (2, PERSON, [10, 10, 40, 60], 0.5),
        (3, PERSON, [5, 5, 20, 20], 0.3),  # image without objects
    ]
    return [
        {'image_id': i, 'category_id': c, 'bbox': [float(v) for v in b], 'score': s}
        for i, c, b, s in rows
    ]


def _pycocotools_stats(dataset, detections, tmp_path, image_ids=None):
    path = tmp_path / 'direct_gt.json'
    path.write_text(json.dumps(dataset))
    gt = COCO(str(path))
    evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), iouType='bbox')
    if image_ids is not None:
        evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {
        name: (None if value == -1 else float(value))
        for name, value in zip(cm.COCO_METRIC_NAMES, evaluator.stats)
    }


def test_matches_pycocotools_in_memory(tmp_path):
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path)
    detections = _detections()
    got = cm.evaluate_coco(_dataset(), detections)
    assert got == expected
    assert detections == _detections()  # the caller's list is not modified
    # The fixture is not degenerate: partial scores, every area range present.
    assert 0 < got['AP'] < got['AP50'] < 1
    assert all(got[name] is not None for name in cm.COCO_METRIC_NAMES)


def test_matches_pycocotools_from_files(tmp_path):
    gt_path, results_path = tmp_path / 'gt.json', tmp_path / 'results.json'
    gt_path.write_text(json.dumps(_dataset()))
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path)
    assert cm.evaluate_coco(_dataset(), _detections(), results_path=str(results_path)) == expected
    # The caller's results exactly: not the keys loadRes adds (area, id, iscrowd, segmentation).
    assert json.loads(results_path.read_text()) == _detections()
    assert cm.read_coco_results(str(results_path)) == _detections()
    assert cm.evaluate_coco(str(gt_path), str(results_path)) == expected
    assert cm.evaluate_coco(COCO(str(gt_path)), _detections()) == expected


def test_image_subset_matches_pycocotools(tmp_path):
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path, image_ids=[2])
    got = cm.evaluate_coco(_dataset(), _detections(), image_ids=[2])
    assert got == expected
    assert got['AP_small'] is None  # no small object in image 2: pycocotools' -1


def test_given_area_is_kept(tmp_path):
    """COCO files hold mask areas, which pick the area range: the large person's box with a
    900-pixel mask is small for pycocotools (recomputed from the box, it would be large)."""
    dataset = _dataset()
    dataset['annotations'][0]['area'] = 900.0
    got = cm.evaluate_coco(dataset, _detections())
    assert got == _pycocotools_stats(dataset, _detections(), tmp_path)
    assert got != cm.evaluate_coco(_dataset(), _detections())


def test_crowd_flag_is_used():
    dataset = _dataset()
    without_crowd = copy.deepcopy(dataset)
    without_crowd['annotations'][3]['iscrowd'] = 0
    assert (
        cm.evaluate_coco(dataset, _detections())['AP']
        != cm.evaluate_coco(without_crowd, _detections())['AP']
    )


def test_detections_are_checked_once_and_bad_ones_not_written(tmp_path, monkeypatch):
    checks = []
    check = cm._check_results
    monkeypatch.setattr(
        cm, '_check_results', lambda dets, src: checks.append(src) or check(dets, src)
    )
    path = tmp_path / 'results.json'
    got = cm.evaluate_coco_per_class(_dataset(), _detections(), results_path=str(path))
    assert got.metrics == _pycocotools_stats(_dataset(), _detections(), tmp_path)
    assert checks == ['the detections'] and path.exists()
    bad = [dict(_detections()[0], score=float('nan'))]
    with pytest.raises(ValueError, match=r'result #0 score must be a finite number, got nan\.'):
        cm.evaluate_coco_per_class(_dataset(), bad, results_path=str(tmp_path / 'bad.json'))
    assert not (tmp_path / 'bad.json').exists()


def test_detections_of_categories_or_images_the_ground_truth_lacks_are_refused(
    tmp_path, monkeypatch
):
    """Contiguous labels (car as 2) in place of the file's category ids: COCOeval scored them
    silently (car's detections dropped, a third category's as cars); a corner box [x1, y1, x2, y2]
    read as [x, y, w, h] gives a negative width it took too."""
    contiguous = [dict(d, category_id=2) if d['category_id'] == CAR else d for d in _detections()]
    path = tmp_path / 'results.json'
    path.write_text(json.dumps(contiguous))
    with pytest.raises(ValueError) as info:
        cm.evaluate_coco(_dataset(), str(path))
    assert str(info.value) == (
        f'{path}: detections use category ids 2 that the ground truth does not have (1 '
        "unknown; its ids: 1, 3); results must carry its category ids (COCO's own, not "
        'contiguous labels).'
    )
    # 0-based class indices (person 0, car 1), as torchvision-style and YOLO exporters write
    # them: they were a warning and mAP 0, now refused.
    zero_based = [dict(d, category_id=[PERSON, CAR].index(d['category_id'])) for d in _detections()]
    with pytest.raises(ValueError, match=r'detections use category ids 0 that the ground'):
        cm.evaluate_coco(_dataset(), zero_based)
    # A model of more categories scored on a subset file: its other detections are not scored,
    # as pycocotools does (said).
    warnings = []
    monkeypatch.setattr(cm.logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
    extra = _detections() + [dict(_detections()[0], category_id=18)]
    assert cm.evaluate_coco(_dataset(), extra) == cm.evaluate_coco(_dataset(), _detections())
    assert warnings == [
        'the detections: 1 detection(s) of category ids the ground truth does not have (18) are '
        'not scored, as pycocotools does (its ids: 1, 3).'
    ]
    with pytest.raises(ValueError, match=r'^the detections: detections refer to image ids 9 '):
        cm.evaluate_coco(_dataset(), [dict(_detections()[0], image_id=9)])
    # Ten named, the rest counted (a silent cut at ten read as all of them).
    with pytest.raises(ValueError) as info:
        cm.evaluate_coco(_dataset(), [dict(_detections()[0], image_id=i) for i in range(20, 32)])
    assert str(info.value) == (
        'the detections: detections refer to image ids 20, 21, 22, 23, 24, 25, 26, 27, 28, 29 '
        'and 2 more that are not in the ground truth (12 unknown ids).'
    )
    corners = [dict(_detections()[0], bbox=[300.0, 50.0, 20.0, -5.0])]
    with pytest.raises(ValueError) as info:
        cm.evaluate_coco(_dataset(), corners)
    assert str(info.value) == (
        'the detections: result #0 bbox [300.0, 50.0, 20.0, -5.0] has a negative width or '
        'height; COCO boxes are [x, y, width, height], not corners.'
    )


def _drop(key, index, field):
    return lambda dataset: dataset[key][index].pop(field)


def _set(key, index, field, value):
    return lambda dataset: dataset[key][index].update({field: value})


@pytest.mark.parametrize(
    'change, problem',
    [
        (
            lambda dataset: dataset.pop('annotations'),
            'it has no "annotations" (an image_info_*.json lists only images)',
        ),
        (lambda dataset: dataset.update(images={}), '"images" is not an array of objects'),
        (
            lambda dataset: dataset['categories'].append(3),
            '"categories" is not an array of objects',
        ),
        (_drop('annotations', 2, 'id'), '5 of 6 annotations have an "id": all or none must'),
        (_drop('images', 1, 'id'), '"images"[1] has no "id"'),
        (_set('images', 0, 'id', 1.0), '"images"[0] has id 1.0, not an integer'),
        (_set('categories', 1, 'name', 3), '"categories"[1] has name 3, not a string'),
        (_set('annotations', 1, 'id', True), '"annotations"[1] has id True, not an integer'),
        (
            _set('annotations', 4, 'category_id', '3'),
            '"annotations"[4] has category_id \'3\', not an integer',
        ),
        (_drop('annotations', 0, 'image_id'), '"annotations"[0] has no "image_id"'),
        (
            _set('annotations', 3, 'bbox', [0, 300, 640]),
            '"annotations"[3] has bbox [0, 300, 640], not [x, y, w, h] of 4 finite numbers',
        ),
        (
            _set('annotations', 3, 'bbox', [0, 300, float('inf'), 180]),
            '"annotations"[3] has bbox [0, 300, inf, 180], not [x, y, w, h] of 4 finite numbers',
        ),
        (
            _set('annotations', 5, 'area', None),
            '"annotations"[5] has area None, not a finite number',
        ),
        (_set('annotations', 5, 'iscrowd', 2), '"annotations"[5] has iscrowd 2, not 0 or 1'),
        # pycocotools keeps the last of two equal ids: the other annotation was silently lost.
        (_set('annotations', 4, 'id', 2), 'id 2 appears twice in "annotations"'),
        (_set('categories', 1, 'id', 1), 'id 1 appears twice in "categories"'),
        # Every result was blamed for category ids the ground truth lacks.
        (lambda dataset: dataset.update(categories=[]), '"categories" is empty'),
    ],
)
def test_ground_truth_problems_name_the_source(change, problem):
    dataset = _dataset()
    change(dataset)
    expected = (
        f'{{}}: cannot score against these COCO annotations ({problem}); pass the '
        f'instances_*.json the results are for.'
    )
    with pytest.raises(ValueError) as err:
        cm.coco_ground_truth(dataset, '/data/instances_val2017.json')
    assert str(err.value) == expected.format('/data/instances_val2017.json')
    with pytest.raises(ValueError) as err:
        cm.evaluate_coco(dataset, _detections())
    assert str(err.value) == expected.format('coco_ground_truth')


def test_ground_truth_defaults():
    dataset = _dataset()
    for ann in dataset['annotations']:
        del ann['id'], ann['area']
        if not ann['iscrowd']:
            del ann['iscrowd']
    gt = cm.coco_ground_truth(dataset)
    assert 'area' not in dataset['annotations'][0]  # input untouched
    assert [a['area'] for a in gt.dataset['annotations']] == [
        60000,
        400,
        3000,
        640 * 180,
        8000,
        2400,
    ]
    assert [a['iscrowd'] for a in gt.dataset['annotations']] == [0, 0, 0, 1, 0, 0]
    assert sorted(gt.anns) == [1, 2, 3, 4, 5, 6]
    assert cm.evaluate_coco(gt, _detections()) == cm.evaluate_coco(_dataset(), _detections())


def test_no_detections():
    got = cm.evaluate_coco(_dataset(), [])
    assert all(got[name] == 0.0 for name in cm.COCO_METRIC_NAMES)


def test_stdout_is_silenced_or_captured(capsys):
    cm.evaluate_coco(_dataset(), _detections())
    assert capsys.readouterr().out == ''
    sink = io.StringIO()
    cm.evaluate_coco(_dataset(), _detections(), stdout=sink)
    assert (
        'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]' in sink.getvalue()
    )
    assert capsys.readouterr().out == ''


def test_coco_detections_from_relative_boxes():
    dets = cm.coco_detections(
        7, [[0.1, 0.25, 0.5, 0.75]], [0.5], [2], (480, 640, 3), label_to_category={2: 18}
    )
    assert len(dets) == 1 and dets[0]['image_id'] == 7 and dets[0]['category_id'] == 18
    # x = 0.25*640, y = 0.1*480, w = (0.75 - 0.25)*640, h = (0.5 - 0.1)*480.
    np.testing.assert_allclose(dets[0]['bbox'], [160, 48, 320, 192])
    assert dets[0]['score'] == 0.5
    json.dumps(dets)  # plain Python types
    with pytest.raises(ValueError, match='label 5 has no entry'):
        cm.coco_detections(7, [[0, 0, 1, 1]], [0.5], [5], (10, 10), label_to_category={2: 18})
    # Without a map the labels are the category ids: whole numbers in int64's range.
    assert (
        cm.coco_detections(7, [[0, 0, 1, 1]] * 2, [0.5] * 2, [3.0, 2], (10, 10))[0]['category_id']
        == 3
    )
    for label, message in ((np.nan, 'gives category id nan'), (2**70, 'beyond int64')):
        with pytest.raises(ValueError, match=message):
            cm.coco_detections(7, [[0, 0, 1, 1]], [0.5], [label], (10, 10))
    for shape in ((0, 10), (10, -1, 3)):  # no pixels: every box would be 0 x 0 at (0, 0)
        with pytest.raises(ValueError, match='with positive sizes, got'):
            cm.coco_boxes_from_relative([[0, 0, 1, 1]], shape)


def test_number_checks_take_exact_types_and_refuse_huge_integers(tmp_path):
    """is_integer / is_finite_number: Python and NumPy numbers, no bools, nothing non-finite; an
    integer beyond float64's range (JSON allows one) is not a finite number: a results file
    holding one is refused naming the result, not an OverflowError."""
    assert all(map(cm.is_integer, [3, np.int64(3), np.uint8(3)]))
    assert not any(map(cm.is_integer, [True, 3.0, '3', np.float32(3)]))
    assert all(map(cm.is_finite_number, [3, 2.5, np.float32(2.5), np.int64(-4), 10**300]))
    bad = [True, np.bool_(True), float('nan'), np.float32('inf'), -(10**400), '1', None]
    assert not any(map(cm.is_finite_number, bad))
    path = tmp_path / 'huge.json'
    path.write_text(
        '[{"image_id": 1, "category_id": 1, "bbox": [1' + '0' * 400 + ', 0, 1, 1], "score": 0.5}]'
    )
    with pytest.raises(ValueError, match='result #0 bbox must be'):
        cm.read_coco_results(str(path))
    # Over 4300 digits Python's int() refuses it: an error naming the file, not a bare one.
    path.write_text('[{"image_id": 1' + '0' * 5000 + '}]')
    with pytest.raises(ValueError, match='huge.json: the COCO results file is not valid JSON'):
        cm.read_coco_results(str(path))


def test_bad_input_is_reported(tmp_path):
    with pytest.raises(ValueError, match=r'image ids 42 that'):
        cm.evaluate_coco(_dataset(), [dict(_detections()[0], image_id=42)])
    with pytest.raises(ValueError, match=r"result #0 must be an object with keys"):
        cm.evaluate_coco(_dataset(), [{'image_id': 1, 'bbox': [0, 0, 1, 1], 'score': 0.5}])
    bad = tmp_path / 'bad.json'
    bad.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match='bad.json.*not valid JSON'):
        cm.read_coco_results(str(bad))


# Per-class AP against a hand-computed case. IoUs are kept off the threshold grid (.5:.05:.95)
# and recalls off the recall grid (0:.01:1), so float rounding cannot move a match or a point.
CAT, DOG, BIRD, FISH = 2, 5, 7, 9


def _hand_dataset():
    """Image 1: three cats (100x100, far apart); image 2: one dog. No bird, no fish."""
    annotations = [
        (1, CAT, [0, 0, 100, 100]),
        (1, CAT, [200, 0, 100, 100]),
        (1, CAT, [400, 0, 100, 100]),
        (2, DOG, [10, 10, 100, 100]),
    ]
    return {
        'images': [{'id': 1, 'width': 640, 'height': 480}, {'id': 2, 'width': 640, 'height': 480}],
        'categories': [
            {'id': CAT, 'name': 'cat'},
            {'id': DOG, 'name': 'dog'},
            {'id': BIRD, 'name': 'bird'},
            {'id': FISH, 'name': 'fish'},
        ],
        'annotations': [{'image_id': i, 'category_id': c, 'bbox': b} for i, c, b in annotations],
    }


def _hand_detections():
    rows = [
        (1, CAT, [0, 0, 100, 84], 0.9),  # IoU 0.84 with cat 1: a match at t <= .80
        (1, CAT, [200, 0, 100, 62], 0.8),  # IoU 0.62 with cat 2: a match at t <= .60
        (1, CAT, [0, 300, 50, 50], 0.7),  # no overlap: false positive; cat 3 is missed
        (1, DOG, [500, 300, 60, 60], 0.95),  # no dog in image 1: false positive ranked first
        (2, DOG, [10, 10, 100, 92], 0.6),  # IoU 0.92 with the dog: a match at t <= .90
        (2, BIRD, [0, 0, 50, 50], 0.5),  # a category without ground truth
    ]
    return [
        {'image_id': i, 'category_id': c, 'bbox': [float(v) for v in b], 'score': s}
        for i, c, b, s in rows
    ]


# cat, t in {.50, .55, .60}: TP, TP, FP -> recall 1/3, 2/3 at precision 1: the recall points
#   0, .01, ..., .66 (67 of 101) have precision 1.
# cat, t in {.65, ..., .80}: TP, FP, FP -> recall 1/3 at precision 1: 34 of 101 points.
# cat, t in {.85, .90, .95}: no TP -> 0.
# dog, t <= .90 (9 thresholds): FP then TP -> the envelope is precision 1/2 at every recall point.
# dog, t = .95: 0.
HAND_AP = {
    'cat': (3 * 67 / 101 + 4 * 34 / 101) / 10,
    'dog': 9 * 0.5 / 10,
    'bird': None,
    'fish': None,
}
HAND_AP50 = {'cat': 67 / 101, 'dog': 0.5, 'bird': None, 'fish': None}


def test_per_class_ap_of_a_hand_computed_case():
    got = cm.evaluate_coco_per_class(_hand_dataset(), _hand_detections())
    assert list(got.class_ap) == ['cat', 'dog', 'bird', 'fish']  # the ground truth's order
    assert got.class_ap == pytest.approx(HAND_AP, abs=1e-12)
    assert got.class_ap50 == pytest.approx(HAND_AP50, abs=1e-12)
    # summarize's AP is the mean over the classes with ground truth; bird and fish do not count.
    summary = cm.evaluate_coco(_hand_dataset(), _hand_detections())
    assert got.metrics == summary
    assert summary['AP'] == pytest.approx((HAND_AP['cat'] + HAND_AP['dog']) / 2, abs=1e-12)
    assert summary['AP50'] == pytest.approx((HAND_AP50['cat'] + HAND_AP50['dog']) / 2, abs=1e-12)


def _mean(values):
    present = [v for v in values if v is not None]
    return sum(present) / len(present)


@pytest.mark.parametrize('image_ids', [None, [2]])
def test_mean_of_class_ap_is_the_pycocotools_summary(tmp_path, image_ids):
    """On the crowd/area fixture, all images and image 2 only: the mean of the per-class APs is
    summarize's AP (and AP50)."""
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path, image_ids=image_ids)
    got = cm.evaluate_coco_per_class(_dataset(), _detections(), image_ids=image_ids)
    assert got.metrics == expected
    assert sorted(got.class_ap) == ['car', 'person']
    assert _mean(got.class_ap.values()) == pytest.approx(expected['AP'], abs=1e-12)
    assert _mean(got.class_ap50.values()) == pytest.approx(expected['AP50'], abs=1e-12)


def test_category_ap_at_other_thresholds_reads_their_slice(tmp_path):
    """category_ap at another threshold reads that threshold's slice: the mean over the classes
    is pycocotools' own AP75 (not AP50, which differs here)."""
    path = tmp_path / 'gt.json'
    path.write_text(json.dumps(_dataset()))
    gt = COCO(str(path))
    detections = _detections()
    # Image 2's car [50, 50, 100, 80] found at IoU 80*70 / (8000 + 8000 - 5600) = 0.54.
    assert detections[6]['category_id'] == CAR and detections[6]['image_id'] == 2
    detections[6]['bbox'] = [70.0, 60.0, 100.0, 80.0]
    evaluator = COCOeval(gt, gt.loadRes(detections), iouType='bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    ap50, ap75 = evaluator.stats[1], evaluator.stats[2]
    assert ap75 != pytest.approx(ap50)
    assert _mean(cm.category_ap(evaluator, iou_threshold=0.75).values()) == pytest.approx(
        ap75, abs=1e-12
    )
    # numpy's linspace holds 0.9 one ulp off: the threshold is found all the same.
    assert 0.9 not in evaluator.params.iouThrs.tolist()
    assert set(cm.category_ap(evaluator, iou_threshold=0.9)) == {PERSON, CAR}


def test_per_class_ap_takes_100_detections_per_image():
    """summarize's AP takes up to 100 detections per image: 12 objects found by 12 exact
    detections give AP 1 (and AR10 10/12). Per-class AP read at maxDets 10 would leave 2 out (84/101)."""
    dataset = {
        'images': [{'id': 1}],
        'categories': [{'id': 1, 'name': 'dot'}],
        'annotations': [
            {'image_id': 1, 'category_id': 1, 'bbox': [20 * i, 0, 10, 10]} for i in range(12)
        ],
    }
    detections = [
        {'image_id': 1, 'category_id': 1, 'bbox': [20.0 * i, 0.0, 10.0, 10.0], 'score': 1 - i / 100}
        for i in range(12)
    ]
    got = cm.evaluate_coco_per_class(dataset, detections)
    assert got.class_ap == {'dot': 1.0} and got.class_ap50 == {'dot': 1.0}
    assert got.metrics['AP'] == 1.0 and got.metrics['AR10'] == pytest.approx(10 / 12)


def test_category_ap_of_a_class_missing_from_the_evaluated_images():
    # Only image 2 (the dog): cat has no ground truth there, so None, and the dog is found
    # without the image-1 false positive: AP 9/10, AP50 1.
    got = cm.evaluate_coco_per_class(_hand_dataset(), _hand_detections(), image_ids=[2])
    assert got.class_ap == pytest.approx(
        {'cat': None, 'dog': 0.9, 'bird': None, 'fish': None}, abs=1e-12
    )
    assert got.class_ap50 == pytest.approx(
        {'cat': None, 'dog': 1.0, 'bird': None, 'fish': None}, abs=1e-12
    )
    assert got.metrics['AP'] == pytest.approx(0.9, abs=1e-12)


def test_per_class_ap_keys_are_stripped_names():
    """Category names are stripped, as the converter reads them: class_ap is keyed 'cat' for
    ' cat ' (the records' name), and 'dog' and 'dog ' are one name, not taken as written."""
    dataset = _hand_dataset()
    dataset['categories'][0]['name'] = ' cat '
    got = cm.evaluate_coco_per_class(dataset, _hand_detections())
    assert got.class_ap == pytest.approx(HAND_AP, abs=1e-12)
    dataset['categories'][0]['name'] = 'dog '
    with pytest.raises(ValueError, match=r"categories 2, 5 are all named 'dog'"):
        cm.evaluate_coco_per_class(dataset, _hand_detections())


def test_per_class_ap_without_detections():
    got = cm.evaluate_coco_per_class(_hand_dataset(), [])
    assert got.class_ap == {'cat': 0.0, 'dog': 0.0, 'bird': None, 'fish': None}


def test_per_class_ap_bad_input():
    dataset = _hand_dataset()
    dataset['categories'][1]['name'] = 'cat'
    duplicate = r"^evaluate_coco_per_class: ground-truth categories 2, 5 are all named 'cat'"
    with pytest.raises(ValueError, match=duplicate):
        cm.evaluate_coco_per_class(dataset, _hand_detections())
    dataset = _hand_dataset()
    del dataset['categories'][0]['name']
    with pytest.raises(ValueError, match=r'\(\"categories\"\[0\] has no "name"\)'):
        cm.evaluate_coco_per_class(dataset, _hand_detections())
    unchecked = cm.coco_ground_truth(_hand_dataset())  # a COCO object is used as it is
    del unchecked.cats[CAT]['name']
    with pytest.raises(ValueError, match=r'category \{\'id\': 2\} has no "name"; per-class AP'):
        cm.evaluate_coco_per_class(unchecked, _hand_detections())
    gt = cm.coco_ground_truth(_hand_dataset())
    # The ground truth as its own detections.
    perfect = gt.loadRes(
        [
            {
                'image_id': a['image_id'],
                'category_id': a['category_id'],
                'bbox': a['bbox'],
                'score': 1.0,
            }
            for a in _hand_dataset()['annotations']
        ]
    )
    evaluator = COCOeval(gt, perfect, iouType='bbox')
    with pytest.raises(ValueError, match='run evaluate\\(\\) and accumulate\\(\\) first'):
        cm.category_ap(evaluator)
    evaluator.evaluate()
    evaluator.accumulate()
    with pytest.raises(ValueError, match='IoU threshold 0.52 is not one of the evaluated'):
        cm.category_ap(evaluator, iou_threshold=0.52)
    # Perfect detections: AP 1 where there is ground truth.
    assert cm.category_ap(evaluator) == pytest.approx(
        {CAT: 1.0, DOG: 1.0, BIRD: None, FISH: None}, abs=1e-12
    )


def test_annotations_pycocotools_leaves_out_are_named(caplog):
    """Annotations of an image or category the file does not list (a subset made by deleting
    entries): pycocotools scores without them and said nothing; the scores stay pycocotools'."""
    dataset = _dataset()
    want = cm.evaluate_coco(dataset, _detections())
    dataset['annotations'].append(dict(dataset['annotations'][0], id=100, image_id=99))
    dataset['annotations'].append(dict(dataset['annotations'][1], id=101, category_id=77))
    dataset['annotations'].append(dict(dataset['annotations'][1], id=102, category_id=77))
    with caplog.at_level('WARNING'):
        got = cm.evaluate_coco(dataset, _detections())
    assert got == want
    assert caplog.messages == [
        'coco_ground_truth: 1 annotation(s) of image ids 99 that "images" does not list; 2 '
        'annotation(s) of category ids 77 that "categories" does not list are not scored, as '
        'pycocotools does.'
    ]


def test_relative_boxes_are_named(caplog):
    """Results in relative coordinates (x / width, ...) scored AP 0 in silence; one warning names
    them, and the scores stay pycocotools' (0 here). Pixel results are not warned about."""
    dataset = _dataset()
    size = {image['id']: (image['width'], image['height']) for image in dataset['images']}
    relative = [
        dict(det, bbox=[v / size[det['image_id']][k % 2] for k, v in enumerate(det['bbox'])])
        for det in _detections()
    ]
    # A box reaching the image's right and bottom edges: x + w and y + h are exactly 1.
    relative.append(
        {'image_id': 3, 'category_id': PERSON, 'bbox': [0.5, 0.25, 0.5, 0.75], 'score': 0.2}
    )
    with caplog.at_level('WARNING'):
        assert cm.evaluate_coco(dataset, _detections())['AP'] > 0.5
        assert not caplog.messages
        assert cm.evaluate_coco(dataset, relative)['AP'] == 0.0
    assert caplog.messages == [
        'the detections: every bbox of the 10 results lies within [0, 1]: relative coordinates? '
        'COCO results hold pixels ([x, y, width, height], x = relative xmin * image width); they '
        'are scored as pixels.'
    ]


def test_results_of_part_of_the_images_are_named(tmp_path, caplog):
    """Results of some of an annotation file's images (a run on part of val2017) scored lower
    in silence: COCOeval counts the others as images where nothing was found. Scoring a results
    file warns, and the numbers stay pycocotools' own."""
    from evaluation import scoring

    gt_path, results_path = tmp_path / 'gt.json', tmp_path / 'results.json'
    gt_path.write_text(json.dumps(_dataset()))
    part = [det for det in _detections() if det['image_id'] == 2]
    for detections, warnings in (
        (
            part,
            [
                f'{results_path}: detections in 1 of the 3 images of the ground truth; COCOeval '
                f'scores the other 2 as images where nothing was detected (results of part of '
                f'the images score lower than on those images alone).'
            ],
        ),
        (_detections(), []),
    ):
        results_path.write_text(json.dumps(detections))
        caplog.clear()
        with caplog.at_level('WARNING'):
            result, _ = scoring.score_coco_results(str(results_path), str(gt_path))
        assert caplog.messages == warnings
        assert result.metrics == _pycocotools_stats(_dataset(), detections, tmp_path)
    # The evaluation's ground truth is the evaluated images: an image without detections there
    # is the model's, not a part run, and is not warned about.
    with caplog.at_level('WARNING'):
        cm.evaluate_coco_per_class(_dataset(), part)
    assert caplog.messages == []
