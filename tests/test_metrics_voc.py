"""VOC metrics: hand-computed cases, and equivalence with a devkit-style global-order reference."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.conftest import ROOT
from tf_extended import voc_metrics as vm

NAMES = {1: 'cat', 2: 'dog', 3: 'bird', 4: 'cow'}


# Hand-built split (pixel boxes [ymin, xmin, ymax, xmax], 1-based inclusive):
#   cat, image A: g1 [1,1,10,10]; g2 [21,21,30,30] difficult.
#   cat, image B: g3 [1,1,10,10]; g4 [41,41,50,50] (10x10 = 100 px).
#   d4 0.95 B far from everything              -> FP, ranked above every TP
#   d1 0.90 A on g1                            -> TP
#   d6 0.85 B [41,41,50,60] on g4 (10x20=200 px, intersection 100): IoU = 100/200 = 0.5 exactly
#                                              -> TP with '>=', FP with '>'
#   d2 0.80 A on g1 again                      -> FP (duplicate)
#   d3 0.70 A on g2                            -> ignored (difficult)
#   d5 0.60 B on g3                            -> TP
#   dog: 10 objects in image C, 3 detections on 3 of them: recall exactly 0.1, 0.2, 0.3.
#   bird: no ground truth, one detection (absent). cow: one object, no detection (AP 0).
def _hand_split():
    cat, dog, bird, cow = 1, 2, 3, 4
    dog_boxes = [[1 + 20 * i, 1, 10 + 20 * i, 10] for i in range(10)]
    return [
        dict(
            image_id='A',
            gt_boxes=[[1, 1, 10, 10], [21, 21, 30, 30], [1, 100, 10, 110]],
            gt_labels=[cat, cat, cow],
            gt_difficult=[0, 1, 0],
            det_boxes=[[1, 1, 10, 10], [1, 1, 10, 10], [21, 21, 30, 30], [60, 60, 70, 70]],
            det_scores=[0.9, 0.8, 0.7, 0.4],
            det_labels=[cat, cat, cat, bird],
        ),
        dict(
            image_id='B',
            gt_boxes=[[1, 1, 10, 10], [41, 41, 50, 50]],
            gt_labels=[cat, cat],
            gt_difficult=[0, 0],
            det_boxes=[[100, 100, 110, 110], [41, 41, 50, 60], [1, 1, 10, 10]],
            det_scores=[0.95, 0.85, 0.6],
            det_labels=[cat, cat, cat],
        ),
        dict(
            image_id='C',
            gt_boxes=dog_boxes,
            gt_labels=[dog] * 10,
            gt_difficult=[0] * 10,
            det_boxes=dog_boxes[:3],
            det_scores=[0.9, 0.8, 0.7],
            det_labels=[dog] * 3,
        ),
    ]


def _evaluate(images, **kwargs):
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True, **kwargs)
    for image in images:
        evaluator.add_image(**image)
    return evaluator.compute()


def test_devkit_iou_plus_one_convention():
    # [41,41,50,60] vs [41,41,50,50]: 10*20 = 200 and 10*10 = 100 pixels, intersection 100.
    # Boxes sharing one pixel column with +1: [1,1,10,10] and [1,10,10,19] -> 10 / 190.
    # Boxes apart along one axis only (rows shared, columns 20 apart, or the reverse) do not
    # overlap: 0, not the negative "intersection" of a negative width times a positive height.
    iou = vm.devkit_iou(
        [[41, 41, 50, 60], [1, 1, 10, 10]],
        [[41, 41, 50, 50], [1, 10, 10, 19], [1, 11, 10, 20], [1, 31, 10, 40], [31, 1, 40, 10]],
    )
    np.testing.assert_allclose(iou, [[0.5, 0, 0, 0, 0], [0, 10 / 190, 0, 0, 0]], rtol=1e-15)
    assert iou[0, 0] == 0.5


def test_hand_case_devkit_rule():
    result = _evaluate(_hand_split())
    cat, dog, bird, cow = result.classes
    # Counted detections, in score order: FP TP TP FP (ignored) TP; 3 positives.
    # precision 0, 1/2, 2/3, 1/2, 3/5 ; recall 0, 1/3, 2/3, 2/3, 1.
    np.testing.assert_allclose(cat.precision, [0, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    np.testing.assert_allclose(cat.recall, [0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(cat.scores, [0.95, 0.9, 0.85, 0.8, 0.6])
    assert (cat.num_gt, cat.num_difficult, cat.num_detections) == (4, 1, 6)
    assert (cat.num_tp, cat.num_fp, cat.num_ignored) == (3, 2, 1)
    # 11-point: t = 0..0.6 (7 points) max precision 2/3; t = 0.7..1 (4 points) 3/5.
    assert cat.ap_voc07 == pytest.approx((7 * 2 / 3 + 4 * 3 / 5) / 11)
    # Envelope 2/3, 2/3, 2/3, 3/5, 3/5 ; recall steps of 1/3 at points 2, 3 and 5.
    assert cat.ap_voc12 == pytest.approx(2 / 3 / 3 + 2 / 3 / 3 + 3 / 5 / 3)
    # Recall exactly 0.3 (3 of 10) reaches t = 0.3: points t = 0, 0.1, 0.2, 0.3.
    assert dog.ap_voc07 == pytest.approx(4 / 11)
    assert dog.ap_voc12 == pytest.approx(0.3)
    assert bird.absent and bird.ap_voc07 is None and bird.ap_voc12 is None
    assert bird.num_detections == 1 and bird.num_fp == 1
    assert cow.ap_voc07 == 0.0 and cow.ap_voc12 == 0.0 and cow.num_detections == 0
    assert result.absent_classes == ['bird']
    assert result.map_voc07 == pytest.approx((cat.ap_voc07 + dog.ap_voc07 + 0.0) / 3)
    assert result.map_voc12 == pytest.approx((cat.ap_voc12 + 0.3 + 0.0) / 3)
    assert result.ap('voc12') == {'cat': cat.ap_voc12, 'dog': 0.3, 'bird': None, 'cow': 0.0}


def test_hand_case_strict_rule():
    result = _evaluate(_hand_split(), iou_rule='>')
    cat = result.classes[0]
    # d6 (IoU exactly 0.5) is now a FP: FP TP FP FP TP.
    np.testing.assert_allclose(cat.precision, [0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    np.testing.assert_allclose(cat.recall, [0, 1 / 3, 1 / 3, 1 / 3, 2 / 3])
    assert cat.ap_voc07 == pytest.approx((4 * 1 / 2 + 3 * 2 / 5) / 11)
    assert cat.ap_voc12 == pytest.approx(1 / 2 / 3 + 2 / 5 / 3)


def test_difficult_below_threshold_is_false_positive():
    # The best ground truth is difficult but IoU < 0.5: the devkit counts a FP, not "ignored".
    image = dict(
        image_id='x',
        gt_boxes=[[1, 1, 10, 10], [50, 50, 60, 60]],
        gt_labels=[1, 1],
        gt_difficult=[1, 0],
        det_boxes=[[1, 1, 10, 30]],
        det_scores=[0.5],
        det_labels=[1],
    )
    cat = _evaluate([image]).classes[0]
    assert (cat.num_tp, cat.num_fp, cat.num_ignored) == (0, 1, 0)


def test_iou_tie_takes_the_first_ground_truth():
    """A detection whose IoU ties between two ground truths takes the first (the devkit's strict
    `ov > ovmax` scan). Taking the last would leave the first free for a lower-scored duplicate:
    a TP where the devkit counts a FP."""
    # g0 [1,1,10,10], g1 [1,3,10,12]; d1 [1,2,10,11] overlaps each by 9 columns: 90 / 110 both.
    # d2 is g0 itself (IoU 1 with g0, 80/120 with g1): g0 is taken by d1 -> FP.
    image = dict(
        image_id='x',
        gt_boxes=[[1, 1, 10, 10], [1, 3, 10, 12]],
        gt_labels=[1, 1],
        gt_difficult=[0, 0],
        det_boxes=[[1, 2, 10, 11], [1, 1, 10, 10]],
        det_scores=[0.9, 0.8],
        det_labels=[1, 1],
    )
    iou = vm.devkit_iou(image['det_boxes'], image['gt_boxes'])
    assert iou[0, 0] == iou[0, 1] == 90 / 110
    cat = _evaluate([image]).classes[0]
    assert (cat.num_tp, cat.num_fp) == (1, 1)
    np.testing.assert_allclose(cat.precision, [1, 1 / 2])
    _, _, tp, fp = _reference_voc([image], 1, 0.5, '>=')
    assert (tp.tolist(), fp.tolist()) == ([1, 1], [0, 1])


def test_match_batch_padding_ground_truth_plays_no_part():
    """`match_batch` rows past `num_gt` (and `num_detections`) are padding: a padding ground
    truth lying on a detection, of its class, must not make that detection a TP."""
    image, index, flags = vm.match_batch(
        det_boxes=[[[1, 1, 10, 10], [50, 50, 60, 60]]],
        det_scores=[[0.9, 1.0]],
        det_labels=[[1, 1]],
        num_detections=[1],
        gt_boxes=[[[50, 50, 60, 60], [1, 1, 10, 10]]],
        gt_labels=[[1, 1]],
        gt_difficult=[[False, False]],
        num_gt=[1],
    )
    assert (image.tolist(), index.tolist(), flags.tolist()) == ([0], [0], [vm.FP])


def test_iou_threshold_one_is_allowed():
    """iou_threshold is in (0, 1]: 1.0 (exact boxes only) is allowed, above 1 or 0 refused."""
    image = dict(
        image_id='x',
        gt_boxes=[[1, 1, 10, 10]],
        gt_labels=[1],
        gt_difficult=[0],
        det_boxes=[[1, 1, 10, 11], [1, 1, 10, 10]],  # IoU 100/110, then exact
        det_scores=[0.9, 0.8],
        det_labels=[1, 1],
    )
    cat = _evaluate([image], iou_threshold=1.0).classes[0]
    assert (cat.num_tp, cat.num_fp) == (1, 1)
    for bad in (0.0, 1.01):
        with pytest.raises(ValueError, match=r'iou_threshold must be in \(0, 1\]'):
            vm.VOCEvaluator(NAMES, iou_threshold=bad)


def test_classes_and_results_files_follow_label_order_not_mapping_order(tmp_path):
    """class_names given out of label order: the classes are by label, and the results files'
    stems (which depend on the names' order) are those of the sorted mapping, so a reader given
    either order finds the writer's files, not the mapping's order."""
    shuffled = {2: 'a_b', 1: 'a/b'}
    result = vm.VOCEvaluator(shuffled, boxes_in_pixels=True).compute()
    assert [(c.label, c.name) for c in result.classes] == [(1, 'a/b'), (2, 'a_b')]
    paths = vm.voc_results_paths(str(tmp_path), 'val', shuffled)
    assert {label: os.path.basename(p) for label, p in paths.items()} == {
        1: 'comp4_det_val_a_b.txt',
        2: 'comp4_det_val_a_b_2.txt',
    }


def test_no_ground_truth_anywhere_gives_no_map():
    image = dict(
        image_id='x',
        gt_boxes=[],
        gt_labels=[],
        gt_difficult=[],
        det_boxes=[[1, 1, 10, 10]],
        det_scores=[0.5],
        det_labels=[2],
    )
    result = _evaluate([image])
    assert result.map_voc07 is None and result.map_voc12 is None
    assert result.absent_classes == ['cat', 'dog', 'bird', 'cow']
    assert 'absent' in result.format_table()


def test_relative_boxes_match_pixel_boxes():
    # 128 x 256 images: (p - 1)/W and p/W are exact binary fractions, so the round trip is exact.
    height, width = 128, 256

    def to_relative(boxes):
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.stack(
            [(b[:, 0] - 1) / height, (b[:, 1] - 1) / width, b[:, 2] / height, b[:, 3] / width],
            axis=1,
        )

    evaluator = vm.VOCEvaluator(NAMES)
    for image in _hand_split():
        image = dict(
            image,
            gt_boxes=to_relative(image['gt_boxes']),
            det_boxes=to_relative(image['det_boxes']),
            image_shape=(height, width, 3),
        )
        evaluator.add_image(**image)
    relative, pixels = evaluator.compute(), _evaluate(_hand_split())
    assert relative.ap('voc07') == pixels.ap('voc07') and relative.ap('voc12') == pixels.ap('voc12')
    np.testing.assert_array_equal(
        vm.pixel_boxes_from_relative([[0.25, 0.5, 0.75, 1.0]], (128, 256)),
        [[33.0, 129.0, 96.0, 256.0]],
    )


def test_format_table_lists_every_class():
    """Each count sits under the header that names it; the legend says what the ignored columns
    mean (COCO crowd regions are counted there, not as "difficult")."""
    lines = _evaluate(_hand_split()).format_table().splitlines()
    header = lines[1].replace('on ign', 'on_ign').replace(' %', '')
    assert dict(zip(header.split(), lines[3].split())) == {
        'label': '1',
        'class': 'cat',
        'gt': '4',
        'ignored': '1',
        'dets': '6',
        'tp': '3',
        'fp': '2',
        'on_ign': '1',
        'AP07': '64.24',  # (7 * 2/3 + 4 * 3/5) / 11
        'AP12': '64.44',  # 2/9 + 2/9 + 1/5
    }
    assert next(line for line in lines if ' bird ' in line).split()[-2:] == ['absent', 'absent']
    assert lines[-3].split()[-2:] == ['33.54', '31.48']  # (64.24 + 36.36 + 0)/3, (64.44 + 30 + 0)/3
    assert lines[-2:] == [
        'ignored: objects the score leaves out (difficult ones unless --noremove_difficult, '
        'crowd regions)',
        'on ign: detections matched to them, neither tp nor fp',
    ]
    # The columns of the rules asked for (an evaluation of --metrics=voc07 has no VOC12 AP).
    for rules, want in ((['voc07'], ['ign', 'AP07', '%']), (['voc12'], ['ign', 'AP12', '%'])):
        only = _evaluate(_hand_split()).format_table(rules=rules).splitlines()
        assert only[1].split()[-3:] == want
        assert next(line for line in only if ' cat ' in line).split()[-2:] == [
            '1',  # ign, then the one AP
            '64.24' if rules == ['voc07'] else '64.44',
        ]
    with pytest.raises(ValueError, match='rules must be some of'):
        _evaluate(_hand_split()).format_table(rules=['coco'])


def test_bad_input_is_reported():
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True)
    good = _hand_split()[0]
    with pytest.raises(ValueError, match=r"image_id='A'.*labels \[7\]"):
        evaluator.add_image(**dict(good, det_labels=[1, 1, 1, 7]))
    with pytest.raises(ValueError, match='same length'):
        evaluator.add_image(**dict(good, det_scores=[0.9]))
    with pytest.raises(ValueError, match=r'shape \[N, 4\]'):
        evaluator.add_image(**dict(good, gt_boxes=[[1, 2, 3]] * 3))
    evaluator.add_image(**good)
    with pytest.raises(
        ValueError, match=r"^VOCEvaluator\.add_image\(image_id='A'\): this image was"
    ):
        evaluator.add_image(**good)
    with pytest.raises(ValueError, match='image_shape'):
        vm.VOCEvaluator(NAMES).add_image(**good)
    with pytest.raises(ValueError, match='iou_rule'):
        vm.VOCEvaluator(NAMES, iou_rule='=>')
    with pytest.raises(ValueError, match='label 0'):
        vm.VOCEvaluator({0: 'background', 1: 'cat'})


# What add_image refuses: {case: (changes to image A of `_hand_split`, with image_shape (128, 256)
# and relative boxes; the message after "<class>.add_image(image_id='A'): ")}. Image A has 3
# ground truths and 4 detections.
BAD_IMAGES = {
    'gt_boxes shorter': (
        dict(gt_boxes=[[1, 1, 10, 10]]),
        r'gt_boxes, gt_labels and gt_difficult must have the same length, got 1, 3, 3\.',
    ),
    'gt_labels longer': (dict(gt_labels=[1, 1, 4, 1]), r'.* same length, got 3, 4, 3\.'),
    'gt_difficult empty': (dict(gt_difficult=[]), r'.* same length, got 3, 3, 0\.'),
    'det_boxes shorter': (
        dict(det_boxes=[[1, 1, 10, 10]]),
        r'det_boxes, det_scores and det_labels must have the same length, got 1, 4, 4\.',
    ),
    'det_scores shorter': (dict(det_scores=[0.9]), r'.* same length, got 4, 1, 4\.'),
    'det_labels shorter': (dict(det_labels=[1, 1, 1]), r'.* same length, got 4, 4, 3\.'),
    'gt_boxes 1-D': (
        dict(gt_boxes=[1, 1, 10, 10], gt_labels=[1], gt_difficult=[0]),
        r'gt_boxes must have shape \[N, 4\], got \(4,\)\.',
    ),
    'gt_boxes 3 columns': (
        dict(gt_boxes=[[1, 2, 3]] * 3),
        r'gt_boxes must have shape \[N, 4\], got \(3, 3\)\.',
    ),
    'det_boxes 3-D': (
        dict(det_boxes=[[[1, 1, 10, 10]] * 4]),
        r'det_boxes must have shape \[N, 4\], got \(1, 4, 4\)\.',
    ),
    'det_scores a column': (
        dict(det_scores=[[0.9], [0.8], [0.7], [0.4]]),
        r'det_scores must have shape \[N\], got \(4, 1\)\.',
    ),
    'det_labels a number': (
        dict(det_boxes=[[1, 1, 10, 10]], det_scores=[0.5], det_labels=1),
        r'det_labels must have shape \[N\], got \(\)\.',
    ),
    'gt_difficult None': (
        dict(gt_difficult=None),
        r'gt_difficult must have shape \[N\], got \(\)\.',
    ),
    'gt_boxes NaN': (
        dict(gt_boxes=[[1, 1, 10, 10], [21, 21, np.nan, 30], [1, 100, 10, 110]]),
        r'gt_boxes row 1 must hold finite numbers, got \[21\.0, 21\.0, nan, 30\.0\]\.',
    ),
    'det_boxes infinite': (
        dict(det_boxes=[[1, 1, 10, 10]] * 3 + [[1, 1, 10, np.inf]]),
        r'det_boxes row 3 must hold finite numbers, got \[1\.0, 1\.0, 10\.0, inf\]\.',
    ),
    'det_scores NaN': (
        dict(det_scores=[0.9, 0.8, np.nan, 0.4]),
        r'det_scores row 2 must hold finite numbers, got nan\.',
    ),
    'gt_labels fractional': (
        dict(gt_labels=[1.5, 1, 4]),
        r'gt_labels row 0 must hold integers, got 1\.5\.',
    ),
    'det_labels NaN': (
        dict(det_labels=[np.nan, 1, 1, 3]),
        r'det_labels row 0 must hold integers, got nan\.',
    ),
    'gt_difficult fractional': (
        dict(gt_difficult=[0, 0.5, 0]),
        r'gt_difficult row 1 must hold integers, got 0\.5\.',
    ),
    'det_scores None': (
        dict(det_scores=[0.9, None, 0.7, 0.4]),
        r'det_scores row 1 must hold finite numbers, got nan\.',
    ),
    'det_labels text': (
        dict(det_labels=['1', '1', '1', '3']),
        r'det_labels must hold numbers, not text\.',
    ),
    'gt_difficult text in objects': (
        dict(gt_difficult=np.array([0, '1', 0], object)),
        r'gt_difficult must hold numbers, not text\.',
    ),
    'det_labels above 2**53': (
        dict(det_labels=np.array([1, 2**53 + 1, 1, 3])),
        r'det_labels has labels \[9007199254740993\] that are not in class_names',
    ),
    'gt_labels unknown': (
        dict(gt_labels=[1, 9, 4]),
        r'gt_labels has labels \[9\] that are not in class_names \(known labels: \[1, 2, 3, 4\]',
    ),
    'det_labels background': (
        dict(det_labels=[1, 0, 1, 3]),
        r'det_labels has labels \[0\] that are not in class_names',
    ),
    'image_shape missing': (
        dict(image_shape=None),
        r'image_shape \(height, width\) is required for relative boxes; pass the original',
    ),
    'image_shape of 1': (
        dict(image_shape=(128,)),
        r'image_shape must be \(height, width\) or \(height, width, channels\), got \[128\]\.',
    ),
    'image_shape of 4': (dict(image_shape=(128, 256, 3, 1)), r'image_shape must be \(height, '),
    'image_shape a number': (dict(image_shape=128), r'image_shape must be .*, got 128\.'),
    'image_shape zero': (
        dict(image_shape=(0, 256)),
        r'image_shape must have a positive, finite height and width, got \[0, 256\]\.',
    ),
    'image_shape negative': (dict(image_shape=(128, -1)), r'image_shape must have a positive'),
    'image_shape infinite': (dict(image_shape=(np.inf, 256)), r'image_shape must have a positive'),
    'image_shape NaN': (dict(image_shape=(128, np.nan)), r'image_shape must have a positive'),
    'image_shape None width': (dict(image_shape=(128, None)), r'image_shape must have a positive'),
}


@pytest.mark.parametrize('change, message', list(BAD_IMAGES.values()), ids=list(BAD_IMAGES))
def test_add_image_refuses_bad_input(tmp_path, change, message):
    image = {**_hand_split()[0], 'image_shape': (128, 256), **change}
    evaluator = vm.VOCEvaluator(NAMES)
    with pytest.raises(ValueError, match=rf"^VOCEvaluator\.add_image\(image_id='A'\): {message}"):
        evaluator.add_image(**image)
    assert evaluator.num_images == 0
    if not all(key.startswith('det_') or key == 'image_shape' for key in change):
        return
    with vm.VOCResultsWriter(str(tmp_path), 'test', NAMES) as writer:
        with pytest.raises(
            ValueError, match=rf"^VOCResultsWriter\.add_image\(image_id='A'\): {message}"
        ):
            writer.add_image(
                'A',
                image['det_boxes'],
                image['det_scores'],
                image['det_labels'],
                image['image_shape'],
            )
    assert all(not (tmp_path / name).read_text() for name in os.listdir(tmp_path))


def test_add_image_takes_lists_empty_values_and_difficult_as_bool_or_int():
    as_arrays = [
        {key: np.asarray(value) if key != 'image_id' else value for key, value in image.items()}
        for image in _hand_split()
    ]
    as_bool = [
        dict(image, gt_difficult=np.asarray(image['gt_difficult'], bool)) for image in as_arrays
    ]
    empty = dict(
        image_id='empty',
        gt_boxes=[],  # any empty value is no rows
        gt_labels=np.zeros((0,), np.int64),
        gt_difficult=[],
        det_boxes=np.zeros((3, 0)),
        det_scores=[],
        det_labels=[],
    )
    want = _evaluate(_hand_split())
    for images in (as_arrays, as_bool, _hand_split() + [empty]):
        got = _evaluate(images)
        assert got.ap('voc07') == want.ap('voc07') and got.ap('voc12') == want.ap('voc12')
        assert [c.num_gt for c in got.classes] == [c.num_gt for c in want.classes]
    assert _evaluate(_hand_split() + [empty]).num_images == 4
    with pytest.raises(ValueError, match=r'^pixel_boxes_from_relative: image_shape must have a'):
        vm.pixel_boxes_from_relative([[0.0, 0.0, 1.0, 1.0]], (0, 10))


# ----------------------------------------------------------------------------------------------
# Independent devkit-style reference: whole-split detection list per class, global stable sort,
# the devkit's loop over detections with per-image "already detected" flags.
# ----------------------------------------------------------------------------------------------
def _reference_voc(images, label, iou_threshold, iou_rule, file_order=None):
    """`file_order`: the results file's lines as (image index, detection index) pairs; None:
    image by image, each image's detections in their order."""
    gt = {}
    npos = 0
    for image in images:
        keep = [i for i, lab in enumerate(image['gt_labels']) if lab == label]
        boxes = [list(map(float, image['gt_boxes'][i])) for i in keep]
        difficult = [bool(image['gt_difficult'][i]) for i in keep]
        gt[image['image_id']] = dict(boxes=boxes, difficult=difficult, det=[False] * len(keep))
        npos += sum(not d for d in difficult)
    ids, confidence, bb = [], [], []
    if file_order is None:
        file_order = [
            (i, k) for i, image in enumerate(images) for k in range(len(image['det_scores']))
        ]
    for i, k in file_order:
        image = images[i]
        if image['det_labels'][k] == label:
            ids.append(image['image_id'])
            confidence.append(image['det_scores'][k])
            bb.append(list(map(float, image['det_boxes'][k])))
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])  # Python sort is stable
    tp = np.zeros(len(order))
    fp = np.zeros(len(order))
    for d, i in enumerate(order):
        g = gt[ids[i]]
        b = bb[i]
        ovmax, jmax = -np.inf, -1
        for j, bgt in enumerate(g['boxes']):
            bi = [max(b[0], bgt[0]), max(b[1], bgt[1]), min(b[2], bgt[2]), min(b[3], bgt[3])]
            ih, iw = bi[2] - bi[0] + 1, bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = (
                    (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
                    + (bgt[2] - bgt[0] + 1) * (bgt[3] - bgt[1] + 1)
                    - iw * ih
                )
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        passed = ovmax >= iou_threshold if iou_rule == '>=' else ovmax > iou_threshold
        if passed:
            if not g['difficult'][jmax]:
                if not g['det'][jmax]:
                    tp[d] = 1
                    g['det'][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    if npos == 0:
        return None, None, tp, fp
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap07 = 0.0
    for t in [k / 10 for k in range(11)]:
        p = prec[rec >= t].max() if np.any(rec >= t) else 0.0
        ap07 += p / 11
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    ap12 = np.sum((mrec[idx] - mrec[idx - 1]) * mpre[idx])
    return ap07, ap12, tp, fp


def _random_split(rng, num_images=80, num_labels=4):
    images = []
    for n in range(num_images):
        num_gt = rng.integers(0, 6)
        tops = rng.integers(1, 80, size=(num_gt, 2))
        sizes = rng.integers(5, 40, size=(num_gt, 2))
        gt_boxes = np.concatenate([tops, tops + sizes - 1], axis=1)
        gt_labels = rng.integers(1, num_labels, size=num_gt)  # label 4 never has ground truth
        gt_difficult = rng.random(num_gt) < 0.2
        dets, labels = [], []
        for box, lab in zip(gt_boxes, gt_labels):
            for _ in range(rng.integers(0, 4)):  # 0-3 detections per object: misses, duplicates
                jitter = rng.integers(-4, 5, size=4)
                dets.append(box + jitter)
                labels.append(lab if rng.random() < 0.9 else rng.integers(1, num_labels + 1))
            if rng.random() < 0.3:  # twice as wide: IoU exactly 0.5 with its object (+1 pixels)
                dets.append(box + np.array([0, 0, 0, box[3] - box[1] + 1]))
                labels.append(lab)
        for _ in range(rng.integers(0, 4)):  # background detections, float coordinates
            top = rng.uniform(1, 90, size=2)
            dets.append(np.concatenate([top, top + rng.uniform(3, 30, size=2)]))
            labels.append(rng.integers(1, num_labels + 1))
        num_det = len(dets)
        scores = np.round(rng.random(num_det), 1)  # coarse scores: many ties, across images too
        images.append(
            dict(
                image_id=f'img{n:03d}',
                gt_boxes=gt_boxes.reshape(-1, 4),
                gt_labels=gt_labels,
                gt_difficult=gt_difficult,
                det_boxes=np.asarray(dets, dtype=np.float64).reshape(-1, 4),
                det_scores=scores,
                det_labels=np.asarray(labels, dtype=np.int64),
            )
        )
    return images


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('iou_rule', ['>=', '>'])
def test_streaming_equals_global_devkit_order(seed, iou_rule):
    images = _random_split(np.random.default_rng(seed))
    result = _evaluate(images, iou_rule=iou_rule)
    for cls in result.classes:
        ap07, ap12, tp, fp = _reference_voc(images, cls.label, 0.5, iou_rule)
        counted = np.diff(np.concatenate([[0], tp + fp])) > 0
        assert cls.num_tp == (tp[-1] if len(tp) else 0)
        assert cls.num_fp == (fp[-1] if len(fp) else 0)
        assert cls.num_ignored == int((~counted).sum())
        if ap07 is None:
            assert cls.absent and cls.ap_voc07 is None and cls.ap_voc12 is None
            continue
        assert cls.ap_voc07 == pytest.approx(ap07, abs=1e-12)
        assert cls.ap_voc12 == pytest.approx(ap12, abs=1e-12)
        npos = cls.num_positives
        np.testing.assert_allclose(cls.recall, tp[counted] / npos, rtol=0, atol=1e-15)
        np.testing.assert_allclose(
            cls.precision, tp[counted] / (tp + fp)[counted], rtol=0, atol=1e-15
        )
    present = [c for c in result.classes if not c.absent]
    assert result.map_voc12 == pytest.approx(np.mean([c.ap_voc12 for c in present]))
    assert result.absent_classes == ['cow']


def _padded_batches(images, batch_size, shapes=None):
    """`add_batch` arguments of `images` (dicts as `_random_split`'s), `batch_size` at a time,
    padded with rows that would change the results if they were read: ground truths on the
    image's first detection, and cat detections scoring 1."""
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        num_gt = [len(image['gt_labels']) for image in chunk]
        num_det = [len(image['det_labels']) for image in chunk]
        gt_rows, det_rows = max(num_gt) + 2, max(num_det) + 3
        batch = dict(
            image_ids=[image['image_id'] for image in chunk],
            gt_boxes=np.tile([1.0, 1.0, 10.0, 10.0], (len(chunk), gt_rows, 1)),
            gt_labels=np.ones((len(chunk), gt_rows), np.int64),
            gt_difficult=np.zeros((len(chunk), gt_rows), bool),
            num_gt=np.array(num_gt),
            det_boxes=np.tile([1.0, 1.0, 10.0, 10.0], (len(chunk), det_rows, 1)),
            det_scores=np.ones((len(chunk), det_rows)),
            det_labels=np.ones((len(chunk), det_rows), np.int64),
            num_detections=np.array(num_det),
        )
        for i, image in enumerate(chunk):
            if num_det[i]:
                batch['gt_boxes'][i] = image['det_boxes'][0]
                batch['gt_labels'][i] = image['det_labels'][0]
            for key in ('gt_boxes', 'gt_labels', 'gt_difficult'):
                batch[key][i, : num_gt[i]] = np.reshape(
                    image[key], batch[key][i, : num_gt[i]].shape
                )
            for key in ('det_boxes', 'det_scores', 'det_labels'):
                batch[key][i, : num_det[i]] = np.reshape(
                    image[key], batch[key][i, : num_det[i]].shape
                )
        if shapes is not None:
            batch['image_shapes'] = np.array([shapes[image['image_id']] for image in chunk])
        yield batch


@pytest.mark.parametrize('seed', range(4))
def test_det_ranks_give_the_devkit_order_of_a_file_whose_images_interleave(seed):
    """Detections ranked by their line in a results file whose lines are shuffled (images'
    lines not contiguous, coarse scores: ties across images everywhere) give the devkit
    reference on that file; the order of adding (the default) would not."""
    rng = np.random.default_rng(100 + seed)
    images = _random_split(rng)
    # The file's lines of each image's detections: random, increasing within the image (each
    # image's detections are read in the file's order, whose ties also order their matching).
    shuffled = rng.permutation(sum(len(image['det_scores']) for image in images))
    lines, start = [], 0
    for image in images:
        lines.append(np.sort(shuffled[start : start + len(image['det_scores'])]))
        start += len(lines[-1])
    pairs = [(i, k) for i, image_lines in enumerate(lines) for k in range(len(image_lines))]
    file_order = sorted(pairs, key=lambda pair: lines[pair[0]][pair[1]])
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True)
    first = 0
    for batch in _padded_batches(images, 16):
        ranks = np.full(batch['det_scores'].shape, -1)  # padding: never read
        for b, num in enumerate(batch['num_detections'].tolist()):
            ranks[b, :num] = lines[first + b]
        first += len(batch['image_ids'])
        evaluator.add_batch(**batch, det_ranks=ranks)
    result = evaluator.compute()
    differs = False
    for cls in result.classes:
        ap07, ap12, _, _ = _reference_voc(images, cls.label, 0.5, '>=', file_order)
        if ap07 is None:
            continue
        assert (cls.ap_voc07, cls.ap_voc12) == pytest.approx((ap07, ap12), abs=1e-12)
        by_image = _reference_voc(images, cls.label, 0.5, '>=')
        differs |= by_image[1] != pytest.approx(ap12, abs=1e-12)
    assert differs  # the file's order matters on this split
    with pytest.raises(ValueError, match='det_ranks must be given to every add_batch call'):
        evaluator.add_batch(**dict(next(_padded_batches(images[:1], 1)), image_ids=['new']))
    with pytest.raises(ValueError, match=r'^VOCEvaluator\.add_image: det_ranks must be given'):
        evaluator.add_image(**dict(images[0], image_id='new'))


@pytest.mark.parametrize('batch_size', [1, 7, 80])
@pytest.mark.parametrize('iou_rule', ['>=', '>'])
def test_add_batch_equals_image_by_image(batch_size, iou_rule):
    # The evaluation adds whole padded batches: same outcomes, counts, curves and tie order.
    images = _random_split(np.random.default_rng(11))
    one_by_one = _evaluate(images, iou_rule=iou_rule)
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True, iou_rule=iou_rule)
    for batch in _padded_batches(images, batch_size):
        evaluator.add_batch(**batch)
    batched = evaluator.compute()
    assert batched.num_images == len(images)
    for got, want in zip(batched.classes, one_by_one.classes):
        for field in ('num_gt', 'num_difficult', 'num_detections', 'num_tp', 'num_fp'):
            assert getattr(got, field) == getattr(want, field)
        assert got.ap_voc07 == want.ap_voc07 and got.ap_voc12 == want.ap_voc12
        np.testing.assert_array_equal(got.precision, want.precision)
        np.testing.assert_array_equal(got.scores, want.scores)
        ap07, ap12, tp, fp = _reference_voc(images, got.label, 0.5, iou_rule)
        assert got.num_tp == (tp[-1] if len(tp) else 0)
        if ap07 is not None:
            assert got.ap_voc12 == pytest.approx(ap12, abs=1e-12)


@pytest.mark.parametrize('cells', [1, 50, 1000])
@pytest.mark.parametrize('iou_rule', ['>=', '>'])
def test_match_batch_in_chunks_gives_the_same_matches(monkeypatch, cells, iou_rule):
    """Detections matched `_MATCH_CELLS` cells at a time (fewer than one image's ground-truth
    rows, or cutting through images) give the arrays of one pass, bit for bit."""
    images = _random_split(np.random.default_rng(12))
    batches = list(_padded_batches(images, 16))
    for batch in batches:
        del batch['image_ids']
    whole = [vm.match_batch(**batch, iou_rule=iou_rule) for batch in batches]
    monkeypatch.setattr(vm, '_MATCH_CELLS', cells)
    for batch, want in zip(batches, whole):
        got = vm.match_batch(**batch, iou_rule=iou_rule)
        for got_array, want_array in zip(got, want):
            np.testing.assert_array_equal(got_array, want_array, strict=True)


_MATCH_IN_CHILD = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
import numpy as np
from tf_extended import voc_metrics as vm

gt = np.array([[1 + 10 * i, 1, 8 + 10 * i, 8] for i in range(300)], np.float64)
det = np.tile(gt, (334, 1))[:100_000]  # each object 334 times (the last ones 333)
image, index, flags = vm.match_batch(
    det[None], np.linspace(1, 0, len(det))[None], np.ones((1, len(det)), np.int64),
    [len(det)], gt[None], np.ones((1, 300), np.int64), np.zeros((1, 300), bool), [300],
)
print(np.flatnonzero(flags == vm.TP).tolist() == list(range(300)), int((flags == vm.FP).sum()))
"""


def test_match_batch_memory_is_bounded_for_an_image_of_many_detections():
    """One image of 300 objects with 100,000 detections (a results file's lines) asked for
    1 GB at once (1,000,000 lines: 9 GiB, a MemoryError traceback or an OOM kill); matched in
    chunks, it fits in a child of 768 MiB of address space."""
    limit = 768 << 20
    result = subprocess.run(
        [sys.executable, '-c', _MATCH_IN_CHILD % (limit, limit)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout) == (0, 'True 99700\n'), result.stderr[-2000:]


def test_add_batch_padding_of_any_value_gives_no_warning():
    images = _random_split(np.random.default_rng(6), num_images=9)
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # NaN cast to int, inf in an IoU
        for batch in _padded_batches(images, 4):
            real_gt = np.arange(batch['gt_labels'].shape[1]) < batch['num_gt'][:, None]
            batch['gt_boxes'] = np.where(real_gt[..., None], batch['gt_boxes'], np.inf)
            batch['gt_labels'] = np.where(real_gt, batch['gt_labels'], np.nan)
            evaluator.add_batch(**batch)
    assert evaluator.compute().ap('voc12') == _evaluate(images).ap('voc12')


def test_add_batch_bad_input_names_the_image_and_adds_nothing():
    images = _random_split(np.random.default_rng(2), num_images=6)
    evaluator = vm.VOCEvaluator(NAMES, boxes_in_pixels=True)
    batch = next(_padded_batches(images, 6))
    unknown = dict(batch, det_labels=batch['det_labels'].copy())
    image = next(i for i, n in enumerate(batch['num_detections']) if n)
    unknown['det_labels'][image, 0] = 7
    with pytest.raises(ValueError, match=rf"image_id='{images[image]['image_id']}'.*labels \[7\]"):
        evaluator.add_batch(**unknown)
    nan = dict(batch, det_scores=batch['det_scores'].copy())
    nan['det_scores'][image, 0] = np.nan
    with pytest.raises(ValueError, match=rf"image_id='{images[image]['image_id']}'.*det_scores"):
        evaluator.add_batch(**nan)
    with pytest.raises(ValueError, match=r'num_detections must hold 6 integers'):
        evaluator.add_batch(**dict(batch, num_detections=batch['num_detections'] + 100))
    with pytest.raises(ValueError, match=r'gt_labels must have shape \[B, N\]'):
        evaluator.add_batch(**dict(batch, gt_labels=batch['gt_labels'][:, :1]))
    repeated = dict(batch, image_ids=[images[0]['image_id']] * 6)
    with pytest.raises(ValueError, match='already added'):
        evaluator.add_batch(**repeated)
    with pytest.raises(ValueError, match='image_shapes'):
        vm.VOCEvaluator(NAMES).add_batch(**batch)
    assert evaluator.num_images == 0
    evaluator.add_batch(**batch)
    with pytest.raises(ValueError, match='already added'):
        evaluator.add_batch(**batch)
    assert evaluator.compute().map_voc07 == _evaluate(images).map_voc07


def test_random_split_exercises_the_hard_cases():
    # Guards the fixture above: it must contain ties at IoU 0.5, duplicates and ignored detections.
    images = _random_split(np.random.default_rng(0))
    loose, strict = _evaluate(images), _evaluate(images, iou_rule='>')
    assert loose.ap('voc12') != strict.ap('voc12')
    assert sum(c.num_ignored for c in loose.classes) > 0
    assert sum(c.num_fp for c in loose.classes) > 0


def test_average_precision_function():
    # T F T with 4 positives: precision 1, 1/2, 2/3; recall 1/4, 1/4, 1/2.
    ap07, ap12 = vm.average_precision([True, False, True], 4)
    assert ap07 == pytest.approx((3 * 1 + 3 * 2 / 3) / 11)  # t=0..0.2 -> 1; t=0.3..0.5 -> 2/3
    assert ap12 == pytest.approx(1 / 4 * 1 + 1 / 4 * 2 / 3)
    assert vm.average_precision([], 3) == (0.0, 0.0)
    # No positives: recall is undefined (the devkit divides by zero); refused, not NaN.
    with pytest.raises(ValueError, match='num_positives > 0, got 0'):
        vm.average_precision([True], 0)


# ----------------------------------------------------------------------------------------------
# Results files
# ----------------------------------------------------------------------------------------------
def test_results_file_format_and_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    shapes = {
        f'{n:06d}': (int(rng.integers(100, 500)), int(rng.integers(100, 500))) for n in range(20)
    }
    images = _random_split(rng, num_images=20)
    with vm.VOCResultsWriter(str(tmp_path), 'test', NAMES) as writer:
        writer.add_image('000xyz', [[0.0, 0.0, 0.5, 0.25]], [0.5], [2], image_shape=(100, 200))
        for image, (image_id, shape) in zip(images, shapes.items()):
            # Arbitrary float64 values: the text must carry them exactly.
            image.update(
                image_id=image_id,
                shape=shape,
                det_boxes=image['det_boxes'] / 128.0,
                det_scores=image['det_scores'] + rng.random(len(image['det_scores'])) * 1e-7,
            )
            writer.add_image(
                image_id,
                image['det_boxes'],
                image['det_scores'],
                image['det_labels'],
                image_shape=shape,
            )
    assert sorted(os.listdir(tmp_path)) == sorted(f'comp4_det_test_{n}.txt' for n in NAMES.values())
    first = (tmp_path / 'comp4_det_test_dog.txt').read_text().splitlines()[0]
    # xmin = 0*200 + 1, ymin = 0*100 + 1, xmax = 0.25*200, ymax = 0.5*100.
    assert first == '000xyz 0.5 1.0 1.0 50.0 50.0'

    read = vm.read_voc_results(str(tmp_path), 'test', NAMES)
    for label in NAMES:
        ids, scores, boxes = (
            (['000xyz'], [0.5], [[1.0, 1.0, 50.0, 50.0]]) if label == 2 else ([], [], [])
        )
        for image in images:
            keep = image['det_labels'] == label
            ids += [image['image_id']] * int(keep.sum())
            scores += image['det_scores'][keep].tolist()
            boxes += vm.pixel_boxes_from_relative(image['det_boxes'][keep], image['shape']).tolist()
        assert read[label].image_ids == ids
        np.testing.assert_array_equal(read[label].scores, scores)
        np.testing.assert_array_equal(read[label].boxes, np.reshape(boxes, (-1, 4)))


def test_results_file_columns_are_xmin_ymin_xmax_ymax(tmp_path):
    """The devkit's lines are `image_id score xmin ymin xmax ymax`. The format test's box is
    symmetric in x and y (1 1 50 50): writing (and reading back) ymin first would pass it."""
    with vm.VOCResultsWriter(str(tmp_path), 'test', {1: 'cat'}) as writer:
        # 128 x 256: xmin = 0.5*256 + 1, ymin = 0.25*128 + 1, xmax = 0.875*256, ymax = 0.75*128.
        writer.add_image('a', [[0.25, 0.5, 0.75, 0.875]], [0.5], [1], image_shape=(128, 256))
    path = tmp_path / 'comp4_det_test_cat.txt'
    assert path.read_text() == 'a 0.5 129.0 33.0 224.0 96.0\n'
    path.write_text('b 0.25 10 20 30 40\n')  # a devkit line: xmin 10, ymin 20, xmax 30, ymax 40
    read = vm.read_voc_results(str(tmp_path), 'test', {1: 'cat'})[1]
    np.testing.assert_array_equal(read.boxes, [[20, 10, 40, 30]])


def test_results_files_are_read_chunk_by_chunk_as_line_by_line(tmp_path, monkeypatch):
    """The numbers are converted a chunk of lines at a time (3 here, across blank lines): the
    values and line numbers are those of a line-by-line reading, and a bad line is named as it
    was, the first one first, with `float`'s words."""
    monkeypatch.setattr(vm, '_RESULTS_CHUNK', 3)
    rng = np.random.default_rng(2)
    lines = []
    for i in range(11):
        lines.append(f'img{i} ' + ' '.join(f'{v:.6g}' for v in rng.uniform(0, 500, 5)))
        if i % 4 == 1:
            lines.append('  ')
    path = tmp_path / 'comp4_det_test_cat.txt'
    path.write_text('\n'.join(lines) + '\n')
    read = vm.read_voc_results(str(tmp_path), 'test', {1: 'cat'})[1]
    kept = [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip()]
    assert read.image_ids == [fields[0] for _, fields in kept]
    np.testing.assert_array_equal(read.lines, [n for n, _ in kept])
    numbers = np.array([[float(v) for v in fields[1:]] for _, fields in kept])
    np.testing.assert_array_equal(read.scores, numbers[:, 0])
    np.testing.assert_array_equal(read.boxes, numbers[:, [2, 1, 4, 3]])
    for changes, line, why in (
        ({8: 'img7 0.5 1 2 inf 4', 10: 'img9 0.5 1 2 3'}, 8, 'non-finite number'),
        ({5: 'img4 0.5 1 x 3 4'}, 5, "could not convert string to float: 'x'"),
        ({12: 'img10 0.5 1 2 3', 13: 'img11 nan 1 2 3 4'}, 12, '5 fields'),
    ):
        bad = [changes.get(n, text) for n, text in enumerate(lines, 1)]
        path.write_text('\n'.join(bad) + '\n')
        with pytest.raises(ValueError) as info:
            vm.read_voc_results(str(tmp_path), 'test', {1: 'cat'})
        assert str(info.value) == (
            f'{path}:{line}: expected "image_id score xmin ymin xmax ymax" (6 fields, finite '
            f'numbers), got {changes[line]!r} ({why}).'
        )


def test_results_evaluate_the_same_after_round_trip(tmp_path):
    images = _random_split(np.random.default_rng(5), num_images=30)
    with vm.VOCResultsWriter(str(tmp_path), 'val', NAMES, boxes_in_pixels=True) as writer:
        for image in images:
            writer.add_image(
                image['image_id'], image['det_boxes'], image['det_scores'], image['det_labels']
            )
    read = vm.read_voc_results(str(tmp_path), 'val', NAMES)
    reread = []
    for image in images:  # regroup the per-class files by image, class after class
        boxes, scores, labels = [], [], []
        for label, dets in read.items():
            for image_id, score, box in zip(dets.image_ids, dets.scores, dets.boxes):
                if image_id == image['image_id']:
                    boxes.append(box)
                    scores.append(score)
                    labels.append(label)
        reread.append(
            dict(image, det_boxes=np.reshape(boxes, (-1, 4)), det_scores=scores, det_labels=labels)
        )
    direct, via_files = _evaluate(images), _evaluate(reread)
    assert direct.ap('voc07') == via_files.ap('voc07')
    assert direct.ap('voc12') == via_files.ap('voc12')


def test_results_writer_add_batch_writes_the_same_files(tmp_path):
    rng = np.random.default_rng(4)
    images = _random_split(rng, num_images=25)
    shapes = {image['image_id']: (int(rng.integers(50, 500)), 300, 3) for image in images}
    for image in images:
        image['det_boxes'] = image['det_boxes'] / 128.0  # relative: converted with each shape
        image['det_scores'] = image['det_scores'] + rng.random(len(image['det_scores'])) * 1e-7
    os.makedirs(tmp_path / 'one')
    with vm.VOCResultsWriter(str(tmp_path / 'one'), 'test', NAMES) as writer:
        for image in images:
            writer.add_image(
                image['image_id'],
                image['det_boxes'],
                image['det_scores'],
                image['det_labels'],
                image_shape=shapes[image['image_id']],
            )
    os.makedirs(tmp_path / 'batched')
    with vm.VOCResultsWriter(str(tmp_path / 'batched'), 'test', NAMES) as writer:
        for batch in _padded_batches(images, 4, shapes):
            writer.add_batch(
                batch['image_ids'],
                batch['det_boxes'],
                batch['det_scores'],
                batch['det_labels'],
                batch['num_detections'],
                batch['image_shapes'],
            )
    # The detections an evaluator checked (an evaluation's batches): the same files.
    os.makedirs(tmp_path / 'checked')
    evaluator = vm.VOCEvaluator(NAMES)
    with vm.VOCResultsWriter(str(tmp_path / 'checked'), 'test', NAMES) as writer:
        for batch in _padded_batches(images, 4, shapes):
            writer.add_checked(evaluator.add_batch(**batch))
    for name in os.listdir(tmp_path / 'one'):
        assert (tmp_path / 'batched' / name).read_text() == (tmp_path / 'one' / name).read_text()
        assert (tmp_path / 'checked' / name).read_text() == (tmp_path / 'one' / name).read_text()
    assert sum(len((tmp_path / 'one' / n).read_text()) for n in os.listdir(tmp_path / 'one'))
    with pytest.raises(ValueError, match='non-empty'):
        with vm.VOCResultsWriter(str(tmp_path / 'batched'), 'test', NAMES) as writer:
            writer.add_batch([''], np.zeros((1, 0, 4)), np.zeros((1, 0)), np.zeros((1, 0)), [0])
    batch = dict(next(_padded_batches(images[:1], 1, shapes)), image_ids=[''])
    checked = vm.VOCEvaluator(NAMES).add_batch(**batch)
    with pytest.raises(
        ValueError, match=r"^VOCResultsWriter\.add_checked: image ids must be non-empty, got ''"
    ):
        with vm.VOCResultsWriter(str(tmp_path / 'batched'), 'test', NAMES) as writer:
            writer.add_checked(checked)
    batch.update(image_ids=['x'], num_detections=[0], num_gt=[0])
    checked = vm.VOCEvaluator({1: 'cat'}).add_batch(**batch)
    with pytest.raises(ValueError, match='the writer has .* the same class_names'):
        with vm.VOCResultsWriter(str(tmp_path / 'batched'), 'test', NAMES) as writer:
            writer.add_checked(checked)


def test_shortest_float_text_reads_back_exactly():
    rng = np.random.default_rng(8)
    values = np.concatenate(
        [
            rng.random(300) * 1000.0,
            rng.random(100).astype(np.float32).astype(np.float64),  # scores come as float32
            10.0 ** rng.uniform(-12, 20, 100) * rng.choice([-1.0, 1.0], 100),
            [0.0, -0.0, 1.0, 50.0, 0.1, 1e-5, 1e16, 123456789.125, 5e-324],
        ]
    )
    values = np.resize(values, (len(values) // 3, 3))
    rows = vm.shortest_float_text(values)
    assert len(rows) == len(values)
    for row, want in zip(rows, values.tolist()):
        fields = row.split(' ')
        assert [float(f) for f in fields] == want
        for field, value in zip(fields, want):
            if abs(value) >= 1e-4 or value == 0.0:
                assert field == repr(value)
    assert vm.shortest_float_text(np.zeros((0, 5))) == []
    with pytest.raises(ValueError, match=r'rows \[N, F\]'):
        vm.shortest_float_text([1.0, 2.0])


def test_results_writer_is_atomic_and_reader_reports_bad_lines(tmp_path):
    with pytest.raises(RuntimeError):
        with vm.VOCResultsWriter(str(tmp_path), 'test', NAMES) as writer:
            writer.add_image('a', [[0, 0, 1, 1]], [0.5], [1], image_shape=(10, 10))
            raise RuntimeError('interrupted')
    assert os.listdir(tmp_path) == []
    with vm.VOCResultsWriter(str(tmp_path), 'test', NAMES, boxes_in_pixels=True) as writer:
        with pytest.raises(
            ValueError, match=r"^VOCResultsWriter\.add_image\(image_id=''\): image ids must"
        ):
            writer.add_image('', [[1, 1, 5, 5]], [0.5], [1])
    with pytest.raises(RuntimeError, match='already closed'):
        writer.add_image('a', [[1, 1, 5, 5]], [0.5], [1])
    with open(tmp_path / 'comp4_det_test_cow.txt', 'w') as fh:
        fh.write('img1 0.5 1 1 5 5\nimg2 0.4 1 1 5\n')
    with pytest.raises(ValueError, match=r'comp4_det_test_cow.txt:2: expected'):
        vm.read_voc_results(str(tmp_path), 'test', NAMES)
    os.remove(tmp_path / 'comp4_det_test_cow.txt')
    with pytest.raises(FileNotFoundError, match='cow'):
        vm.read_voc_results(str(tmp_path), 'test', NAMES)


def test_ids_with_whitespace_are_percent_encoded_in_results_files_and_read_back(tmp_path):
    """LabelImg-style file stems ('IMG 030') were refused, so evaluating such records failed:
    whitespace separates the devkit's columns. It is written percent-encoded (so is '%'), UTF-8
    bytes for any Unicode whitespace, and read back as the id; other ids are written as they are."""
    ids = ['IMG 030', 'my pet (7)', '100%', 'tab\there', 'wide\u3000space', '000005']
    written = [
        'IMG%20030',
        'my%20pet%20(7)',
        '100%25',
        'tab%09here',
        'wide%E3%80%80space',
        '000005',
    ]
    with vm.VOCResultsWriter(str(tmp_path), 'test', NAMES, boxes_in_pixels=True) as writer:
        for i, image_id in enumerate(ids):
            writer.add_image(image_id, [[1, 1, 5, 5 + i]], [0.5 - 0.01 * i], [1])
    lines = (tmp_path / 'comp4_det_test_cat.txt').read_text().splitlines()
    assert [line.split(' ')[0] for line in lines] == written
    assert all(len(line.split()) == 6 for line in lines)
    cat = vm.read_voc_results(str(tmp_path), 'test', NAMES)[1]
    assert cat.image_ids == ids
    np.testing.assert_array_equal(cat.boxes[:, 3], 5 + np.arange(len(ids)))
