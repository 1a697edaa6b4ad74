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
        (1, PERSON, [10, 10, 200, 300], 0),   # large
        (1, PERSON, [300, 50, 20, 20], 0),    # small (400 px)
        (1, CAR, [400, 200, 60, 50], 0),      # medium (3000 px)
        (1, PERSON, [0, 300, 640, 180], 1),   # crowd: matched detections inside are ignored
        (2, CAR, [50, 50, 100, 80], 0),       # medium (8000 px)
        (2, PERSON, [10, 10, 40, 60], 0),     # medium (2400 px)
    ]
    return {
        'images': [{'id': 1, 'width': 640, 'height': 480}, {'id': 2, 'width': 320, 'height': 240},
                   {'id': 3, 'width': 100, 'height': 100}],
        'categories': [{'id': PERSON, 'name': 'person'}, {'id': CAR, 'name': 'car'}],
        'annotations': [{'id': n + 1, 'image_id': image, 'category_id': category, 'bbox': box,
                         'area': float(box[2] * box[3]), 'iscrowd': crowd}
                        for n, (image, category, box, crowd) in enumerate(annotations)],
    }


def _detections():
    rows = [
        (1, PERSON, [12, 12, 198, 296], 0.9),
        (1, PERSON, [10, 10, 200, 300], 0.8),    # duplicate
        (1, PERSON, [100, 350, 50, 50], 0.85),   # inside the crowd region
        (1, PERSON, [305, 55, 20, 20], 0.6),     # small object, IoU ~0.33
        (1, CAR, [402, 198, 60, 52], 0.7),
        (1, CAR, [500, 400, 30, 30], 0.95),      # false positive ranked first
        (2, CAR, [55, 52, 95, 80], 0.75),
        (2, PERSON, [10, 10, 40, 60], 0.5),
        (3, PERSON, [5, 5, 20, 20], 0.3),        # image without objects
    ]
    return [{'image_id': i, 'category_id': c, 'bbox': [float(v) for v in b], 'score': s}
            for i, c, b, s in rows]


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
    return {name: (None if value == -1 else float(value))
            for name, value in zip(cm.COCO_METRIC_NAMES, evaluator.stats)}


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
    cm.write_coco_results(str(results_path), _detections())
    assert cm.read_coco_results(str(results_path)) == _detections()
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path)
    assert cm.evaluate_coco(str(gt_path), str(results_path)) == expected
    assert cm.evaluate_coco(COCO(str(gt_path)), _detections()) == expected


def test_image_subset_matches_pycocotools(tmp_path):
    expected = _pycocotools_stats(_dataset(), _detections(), tmp_path, image_ids=[2])
    got = cm.evaluate_coco(_dataset(), _detections(), image_ids=[2])
    assert got == expected
    assert got['AP_small'] is None  # no small object in image 2: pycocotools' -1


def test_crowd_flag_is_used():
    dataset = _dataset()
    without_crowd = copy.deepcopy(dataset)
    without_crowd['annotations'][3]['iscrowd'] = 0
    assert cm.evaluate_coco(dataset, _detections())['AP'] != cm.evaluate_coco(without_crowd, _detections())['AP']


def test_ground_truth_defaults():
    dataset = _dataset()
    for ann in dataset['annotations']:
        del ann['id'], ann['area']
        if not ann['iscrowd']:
            del ann['iscrowd']
    gt = cm.coco_ground_truth(dataset)
    assert 'area' not in dataset['annotations'][0]  # input untouched
    assert [a['area'] for a in gt.dataset['annotations']] == [60000, 400, 3000, 640 * 180, 8000, 2400]
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
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]' in sink.getvalue()
    assert capsys.readouterr().out == ''


def test_coco_detections_from_relative_boxes():
    dets = cm.coco_detections(7, [[0.1, 0.25, 0.5, 0.75]], [0.5], [2], (480, 640, 3),
                              label_to_category={2: 18})
    assert len(dets) == 1 and dets[0]['image_id'] == 7 and dets[0]['category_id'] == 18
    # x = 0.25*640, y = 0.1*480, w = (0.75 - 0.25)*640, h = (0.5 - 0.1)*480.
    np.testing.assert_allclose(dets[0]['bbox'], [160, 48, 320, 192])
    assert dets[0]['score'] == 0.5
    json.dumps(dets)  # plain Python types
    with pytest.raises(ValueError, match='label 5 has no entry'):
        cm.coco_detections(7, [[0, 0, 1, 1]], [0.5], [5], (10, 10), label_to_category={2: 18})


def test_bad_input_is_reported(tmp_path):
    with pytest.raises(ValueError, match=r'image ids \[42\]'):
        cm.evaluate_coco(_dataset(), [dict(_detections()[0], image_id=42)])
    with pytest.raises(ValueError, match=r"result #0 must be an object with keys"):
        cm.evaluate_coco(_dataset(), [{'image_id': 1, 'bbox': [0, 0, 1, 1], 'score': 0.5}])
    bad = tmp_path / 'bad.json'
    bad.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match='bad.json.*not valid JSON'):
        cm.read_coco_results(str(bad))
