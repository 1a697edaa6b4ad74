"""tf_extended.bboxes against numpy."""

import numpy as np
import tensorflow as tf

from tf_extended import bboxes as tfe
from tests import numpy_reference as ref

v1 = tf.compat.v1


def run(t):
    with v1.Session() as sess:
        return sess.run(t)


def boxes(rng, n):
    a = rng.rand(n, 4).astype(np.float32)
    return np.concatenate([np.minimum(a[:, :2], a[:, 2:]), np.maximum(a[:, :2], a[:, 2:])], 1)


def test_jaccard_area_intersection():
    rng = np.random.RandomState(0)
    a, b = boxes(rng, 30), boxes(rng, 20)
    b[0] = [0.5, 0.5, 0.5, 0.5]
    a[0] = [0.5, 0.5, 0.5, 0.5]  # empty vs empty: 0, not NaN
    with tf.Graph().as_default():
        iou, inter, area = run(
            [tfe.bboxes_jaccard(a, b), tfe.bboxes_intersection_area(a, b), tfe.bboxes_area(a)]
        )
    np.testing.assert_allclose(iou, ref.iou_matrix(a.astype(np.float64), b), atol=1e-6)
    assert iou[0, 0] == 0
    np.testing.assert_allclose(area, (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), rtol=1e-6)
    ih = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    iw = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    np.testing.assert_allclose(inter, ih * iw, atol=1e-7)


def test_inverted_boxes_have_zero_area():
    """bboxes_area: an inverted box (ymax < ymin or xmax < xmin) has area 0, not a negative area,
    nor a positive one when both axes are inverted."""
    inverted = np.array(
        [[0.6, 0.2, 0.4, 0.8], [0.2, 0.6, 0.8, 0.4], [0.6, 0.8, 0.4, 0.6]], np.float32
    )
    with tf.Graph().as_default():
        area = run(tfe.bboxes_area(inverted))
    assert area.tolist() == [0, 0, 0]


def test_clip_resize_center_flip_overlap():
    rng = np.random.RandomState(1)
    b = boxes(rng, 50) * 1.4 - 0.2
    ref_box = np.array([0.1, 0.2, 0.7, 0.9], np.float32)
    with tf.Graph().as_default():
        clipped, resized, inside, flipped, frac = run(
            [
                tfe.bboxes_clip(ref_box, b),
                tfe.bboxes_resize(ref_box, b),
                tfe.bboxes_center_inside(ref_box, tf.constant(b)),
                tfe.bboxes_flip_left_right(b),
                tfe.bboxes_intersection_over_area(ref_box, b),
            ]
        )
    lo = ref_box[[0, 1, 0, 1]]
    hi = ref_box[[2, 3, 2, 3]]
    np.testing.assert_allclose(clipped, np.minimum(np.maximum(b, lo), hi))
    np.testing.assert_allclose(resized, (b - lo) / (hi - lo), atol=1e-6)
    cy, cx = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    np.testing.assert_array_equal(inside, (cy >= 0.1) & (cy <= 0.7) & (cx >= 0.2) & (cx <= 0.9))
    np.testing.assert_allclose(flipped, np.stack([b[:, 0], 1 - b[:, 3], b[:, 2], 1 - b[:, 1]], 1))
    inter = np.clip(np.minimum(b[:, 2], 0.7) - np.maximum(b[:, 0], 0.1), 0, None) * np.clip(
        np.minimum(b[:, 3], 0.9) - np.maximum(b[:, 1], 0.2), 0, None
    )
    np.testing.assert_allclose(frac, inter / ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])), rtol=1e-5)


def test_center_inside_includes_the_window_edges():
    """Caffe's CENTER rule keeps a box whose centre lies on the window's edge (`<=` on every
    side), the bottom and right edges included."""
    window = np.array([0.25, 0.25, 0.75, 0.75], np.float32)
    # Centres (0.75, 0.5), (0.5, 0.75), (0.25, 0.25), (0.75, 0.75): on the edges; (0.875, 0.5) out.
    b = np.array(
        [
            [0.5, 0.25, 1.0, 0.75],
            [0.25, 0.5, 0.75, 1.0],
            [0.0, 0.0, 0.5, 0.5],
            [0.5, 0.5, 1.0, 1.0],
            [0.75, 0.25, 1.0, 0.75],
        ],
        np.float32,
    )
    with tf.Graph().as_default():
        inside = run(tfe.bboxes_center_inside(window, tf.constant(b)))
    assert inside.tolist() == [True, True, True, True, False]


def test_sort_and_center_size_round_trip():
    rng = np.random.RandomState(2)
    scores = rng.rand(2, 40).astype(np.float32)
    b = np.stack([boxes(rng, 40), boxes(rng, 40)])
    with tf.Graph().as_default():
        s, sb, idx = run(tfe.bboxes_sort(scores, b, 5))
        back = run(tfe.center_size_to_corners(*tfe.corners_to_center_size(b)))
    for i in range(2):
        order = np.argsort(-scores[i])[:5]
        np.testing.assert_array_equal(idx[i], order)
        np.testing.assert_allclose(sb[i], b[i][order])
    np.testing.assert_allclose(back, b, atol=1e-6)
