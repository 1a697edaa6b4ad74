"""inference/parity.py on hand-made outputs: order-free matching, each detection used once,
class and tolerance respected, totals over batches."""

import numpy as np

from inference import parity


def _outputs(rows, size=4):
    """One-image batch outputs from [(class, score, box)] padded to `size` rows."""
    boxes = np.zeros((1, size, 4), np.float32)
    scores = np.zeros((1, size), np.float32)
    classes = np.zeros((1, size), np.int64)
    for i, (cls, score, box) in enumerate(rows):
        classes[0, i], scores[0, i], boxes[0, i] = cls, score, box
    return {
        'detection_boxes': boxes,
        'detection_scores': scores,
        'detection_classes': classes,
        'num_detections': np.array([len(rows)], np.float32),
    }


BOX_A = [0.1, 0.1, 0.5, 0.5]
BOX_B = [0.2, 0.3, 0.6, 0.9]


def test_near_equal_scores_in_another_order_match():
    want = _outputs([(1, 0.70000, BOX_A), (1, 0.69999, BOX_B), (2, 0.3, BOX_A)])
    got = _outputs([(1, 0.69999, BOX_B), (1, 0.70003, BOX_A), (2, 0.3, BOX_A)])
    matched, n, score_diff, box_diff = parity.match_detections(got, want)
    assert (matched, n) == (3, 3)
    assert abs(score_diff - 3e-5) < 1e-6 and box_diff == 0.0


def test_class_tolerance_and_single_use():
    want = _outputs([(1, 0.7, BOX_A), (1, 0.7, BOX_A)])
    # One got detection cannot stand for two; another class or a moved box is no match.
    assert parity.match_detections(_outputs([(1, 0.7, BOX_A)]), want)[0] == 1
    assert parity.match_detections(_outputs([(2, 0.7, BOX_A), (2, 0.7, BOX_A)]), want)[0] == 0
    moved = [0.1, 0.1, 0.5, 0.5002]
    assert parity.match_detections(_outputs([(1, 0.7, moved), (1, 0.7, BOX_A)]), want)[0] == 1
    assert parity.match_detections(_outputs([(1, 0.7, moved)] * 2), want, tol=1e-3)[0] == 2


def test_score_and_box_tolerances_are_inclusive_and_both_checked():
    """A pair within tol in score and in every box coordinate matches, a difference of exactly
    tol too (binary fractions: exact in float32); a score or a box off by more does not."""
    want = _outputs([(1, 0.5, [0.0, 0.0, 0.5, 0.5])])

    def matched(score, box):
        return parity.match_detections(_outputs([(1, score, box)]), want, tol=0.25)[0]

    assert matched(0.75, [0.0, 0.0, 0.5, 0.75]) == 1
    assert matched(0.875, [0.0, 0.0, 0.5, 0.5]) == 0
    assert matched(0.5, [0.0, 0.0, 0.5, 0.875]) == 0


def test_each_detection_takes_the_nearest_score():
    """Two candidates within tol: the nearer score is taken, so that the reported largest
    difference is that of the best pairing (0 here), not of the first candidate."""
    want = _outputs([(1, 0.7, BOX_A), (1, 0.70005, BOX_A)])
    got = _outputs([(1, 0.70005, BOX_A), (1, 0.7, BOX_A)])
    assert parity.match_detections(got, want) == (2, 2, 0.0, 0.0)


def test_totals_over_batches():
    report = parity.Parity(tol=1e-4)
    want = _outputs([(1, 0.9, BOX_A), (3, 0.5, BOX_B)])
    report.add(want, want)
    report.add(_outputs([(1, 0.9, BOX_A), (3, 0.5, BOX_B), (3, 0.01, BOX_A)]), want)
    assert (report.images, report.reference_detections, report.detections) == (2, 4, 5)
    assert report.matched == 4 and not report.every_detection_matched
    assert '4 of the reference\'s 4 detections matched (5 detections) on 2 images' in (
        report.summary()
    )
    assert report.unmatched == 1 and report.unmatched_near_cut == 0  # 0.01 is below 0.5 - tol


def test_near_ties_at_the_cut_are_counted():
    """Two detections scored 0.40001 and 0.40000, a cut keeping one: each model kept the other
    one. Both unmatched lie at the other model's lowest kept score; clear misses do not."""
    want = _outputs([(1, 0.9, BOX_A), (2, 0.40001, BOX_A)])
    got = _outputs([(1, 0.9, BOX_A), (2, 0.40000, BOX_B)])
    report = parity.Parity(tol=1e-4)
    report.add(got, want)
    assert (report.matched, report.unmatched, report.unmatched_near_cut) == (1, 2, 2)
    assert report.unmatched_nms_ties == 0  # same class and score too, but counted at the cut
    missed = parity.Parity(tol=1e-4)
    missed.add(_outputs([(1, 0.9, BOX_A), (2, 0.2, BOX_B)]), want)
    assert (missed.unmatched, missed.unmatched_near_cut) == (2, 0)  # 0.2 and 0.4: no tie
    assert '2 unmatched in all (both models), 0 of them within 0.0001' in missed.summary()


def test_near_ties_in_nms_are_counted():
    """Two overlapping boxes of one class scored alike within float rounding: each model's NMS
    kept the other one, above the cut. Both are NMS near-ties; another class or score is not."""
    want = _outputs([(1, 0.9, BOX_A), (2, 0.60001, BOX_A), (3, 0.2, BOX_A)])
    got = _outputs([(1, 0.9, BOX_A), (2, 0.60000, BOX_B), (3, 0.2, BOX_A), (1, 0.5, BOX_B)])
    report = parity.Parity(tol=1e-4)
    report.add(got, want)
    assert (report.matched, report.unmatched) == (2, 3)
    assert (report.unmatched_near_cut, report.unmatched_nms_ties) == (0, 2)
    assert '0 of them within 0.0001' in report.summary()
    assert '2 beside an unmatched detection of the other model of the same class' in (
        report.summary()
    )


def test_an_nms_tie_needs_the_same_class():
    """Unmatched detections of two classes at one score are no NMS tie (NMS runs per class)."""
    want = _outputs([(1, 0.9, BOX_A), (4, 0.5, BOX_B), (3, 0.2, BOX_A)])
    got = _outputs([(1, 0.9, BOX_A), (2, 0.5, BOX_B), (3, 0.2, BOX_A)])
    report = parity.Parity(tol=1e-4)
    report.add(got, want)
    assert (report.matched, report.unmatched) == (2, 2)
    assert (report.unmatched_near_cut, report.unmatched_nms_ties) == (0, 0)
    report.add(_outputs([(1, 0.9, BOX_A), (4, 0.50002, BOX_A), (3, 0.2, BOX_A)]), want)
    assert (report.unmatched_near_cut, report.unmatched_nms_ties) == (0, 2)
