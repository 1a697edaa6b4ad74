"""Box coding, matching and target encoding against the numpy references."""

import numpy as np
import tensorflow as tf

from nets import box_coder, matching, nets_factory
from tests import numpy_reference as ref

v1 = tf.compat.v1


def run(fn, *arrays):
    with tf.Graph().as_default(), v1.Session() as sess:
        return sess.run(fn(*[tf.constant(a) for a in arrays]))


def random_boxes(rng, n, min_size=0.02):
    yx = rng.rand(n, 2) * 0.8
    hw = rng.rand(n, 2) * 0.5 + min_size
    return np.concatenate([yx, np.minimum(yx + hw, 1.0)], 1).astype(np.float32)


def test_encode_matches_numpy_and_decode_inverts_it():
    rng = np.random.RandomState(0)
    boxes, anchors = random_boxes(rng, 500), random_boxes(rng, 500)
    codes = run(box_coder.encode, boxes, anchors)
    np.testing.assert_allclose(
        codes, ref.encode(boxes.astype(np.float64), anchors), rtol=1e-4, atol=1e-5
    )
    back = run(box_coder.decode, codes, anchors)
    np.testing.assert_allclose(back, boxes, atol=1e-5)
    np.testing.assert_allclose(
        run(box_coder.decode, codes, anchors),
        ref.decode(codes.astype(np.float64), anchors),
        atol=1e-5,
    )


def test_encode_and_decode_use_each_variance_on_its_own_coordinate():
    """`prior_scaling` is a model-card setting (4 numbers > 0): with four different variances,
    each code coordinate is divided (encode) and multiplied (decode) by its own one."""
    rng = np.random.RandomState(1)
    boxes, anchors = random_boxes(rng, 50), random_boxes(rng, 50)
    variances = (0.1, 0.3, 0.2, 0.7)
    codes = run(lambda b, a: box_coder.encode(b, a, variances), boxes, anchors)
    np.testing.assert_allclose(
        codes, ref.encode(boxes.astype(np.float64), anchors, variances), rtol=1e-4, atol=1e-5
    )
    decoded = run(lambda c, a: box_coder.decode(c, a, variances), codes, anchors)
    np.testing.assert_allclose(decoded, boxes, atol=1e-5)
    # Any codes (here the box values) decode as the reference does.
    np.testing.assert_allclose(
        run(lambda c, a: box_coder.decode(c, a, variances), boxes, anchors),
        ref.decode(boxes.astype(np.float64), anchors, variances),
        atol=1e-5,
    )


def test_matching_equals_caffe_reference_on_random_scenes():
    anchors = nets_factory.get_network('ssd_300_mobilenet')().anchors()
    rng = np.random.RandomState(3)
    for trial in range(6):
        g = rng.randint(1, 9)
        gt = random_boxes(rng, g, min_size=0.01)
        valid = rng.rand(g) > 0.2
        matches, max_iou = run(lambda a, b, c: matching.match(a, b, c, 0.5), anchors, gt, valid)
        want, want_iou = ref.caffe_match(gt, valid, anchors, 0.5)
        np.testing.assert_array_equal(matches, want)
        np.testing.assert_allclose(max_iou, want_iou, atol=1e-5)


def test_every_ground_truth_gets_a_positive_even_a_tiny_one():
    net = nets_factory.get_network('ssd_300_vgg')()
    anchors = net.anchors()
    tiny = np.array([[0.50, 0.50, 0.51, 0.515]], np.float32)  # best IoU with any anchor << 0.5
    big = np.array([[0.1, 0.1, 0.9, 0.8]], np.float32)
    gt = np.concatenate([tiny, big])
    assert ref.iou_matrix(tiny.astype(np.float64), anchors).max() < 0.5
    labels = np.array([3, 7], np.int64)
    gclasses, glocs, gscores = run(lambda l, b: net.bboxes_encode(l, b), labels, gt)
    assert (gclasses == 3).sum() == 1 and (gclasses == 7).sum() >= 1
    # Targets decode back to the matched box.
    decoded = ref.decode(glocs.astype(np.float64), anchors)
    np.testing.assert_allclose(decoded[gclasses == 3][0], tiny[0], atol=1e-5)
    np.testing.assert_allclose(
        decoded[gclasses == 7], np.repeat(big, (gclasses == 7).sum(), 0), atol=1e-5
    )
    # Unmatched anchors have zero codes (finite) and background label.
    assert np.all(glocs[gclasses == 0] == 0)
    np.testing.assert_allclose(
        gscores, ref.iou_matrix(gt.astype(np.float64), anchors).max(0), atol=1e-5
    )


def test_degenerate_and_padded_ground_truths_never_match_nor_nan():
    net = nets_factory.get_network('ssd_300_mobilenet')()
    gt = np.array(
        [
            [0.3, 0.3, 0.3, 0.6],  # zero height
            [0.5, 0.5, 0.4, 0.4],  # inverted
            [0, 0, 0, 0],  # padding
            [0.2, 0.2, 0.6, 0.7],
        ],
        np.float32,
    )
    labels = np.array([1, 2, 0, 4], np.int64)
    gclasses, glocs, gscores = run(lambda l, b: net.bboxes_encode(l, b), labels, gt)
    assert set(np.unique(gclasses)) == {0, 4}
    assert np.all(np.isfinite(glocs)) and np.all(np.isfinite(gscores))


def test_image_without_objects_is_all_background():
    net = nets_factory.get_network('ssd_300_mobilenet')()
    gclasses, glocs, gscores = run(
        lambda l, b: net.bboxes_encode(l, b), np.zeros([0], np.int64), np.zeros([0, 4], np.float32)
    )
    assert gclasses.shape == (1917,) and not gclasses.any() and not glocs.any()
    assert not gscores.any()


def test_iou_exactly_at_the_threshold_matches():
    """Caffe matches an anchor whose IoU is >= 0.5 (overlap_threshold), so IoU exactly 0.5 is a
    positive. Coordinates are multiples of 1/128: every area, intersection, union and ratio is
    exact in float32, and the IoUs below are hand-computed."""
    gt = np.array(
        [
            [0.0, 0.0, 0.5, 0.25],  # gt 0: 0.5 high, 0.25 wide (area 1/8)
            [0.5, 0.5, 1.0, 1.0],
        ],
        np.float32,
    )  # gt 1: area 1/4
    anchors = np.array(
        [
            [0.0, 0.0, 0.5, 0.5],  # gt 0 inside half of it: IoU 1/2 exactly
            [0.0, 0.0, 0.5, 0.25],  # gt 0 itself: its bipartite match
            [0.5, 0.5, 1.0, 1.0],  # gt 1 itself: its bipartite match
            [0.0, 0.0, 0.5, 0.5078125],  # IoU with gt 0: 0.125 / 0.25390625 < 1/2
            [0.5, 0.5, 0.75, 1.0],  # half of gt 1 (split the other way): 1/2
            [0.5, 0.5, 1.0, 0.7421875],
        ],  # IoU with gt 1: 0.12109375 / 0.25 < 1/2
        np.float32,
    )
    want_iou = [0.5, 1.0, 1.0, 0.125 / 0.25390625, 0.5, 0.12109375 / 0.25]
    want = [0, 0, 1, -1, 1, -1]
    matches, max_iou = run(
        lambda a, b, c: matching.match(a, b, c, 0.5), anchors, gt, np.array([True, True])
    )
    np.testing.assert_array_equal(max_iou, np.float32(want_iou))
    np.testing.assert_array_equal(matches, want)
    np.testing.assert_array_equal(ref.caffe_match(gt, [True, True], anchors, 0.5)[0], want)
    # The training targets: labels of the matched ground truths, IoU exactly 0.5 in gscores.
    net = nets_factory.get_network('ssd_300_mobilenet')()
    gclasses, _, gscores = run(
        lambda l, b: net.bboxes_encode(l, b, anchors=anchors), np.array([3, 5], np.int64), gt
    )
    np.testing.assert_array_equal(gclasses, [3, 3, 5, 0, 5, 0])
    assert gscores[0] == gscores[4] == 0.5


def test_bipartite_step_gives_a_taken_anchor_to_no_one_else_and_skips_zero_overlaps():
    """Caffe's bipartite step pairs each ground truth with its best *free* anchor, and only over
    overlaps > 1e-6. Ground truths 0 and 1 both prefer anchor 0; 0 takes it (IoU 1), so 1 gets
    anchor 1 (IoU 2/3), not anchor 0 (IoU 3/4). Ground truth 2 overlaps no anchor: it matches
    nothing, whatever the threshold."""
    gt = np.array(
        [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.375], [0.75, 0.75, 1.0, 1.0]], np.float32
    )
    anchors = np.array(
        [[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.25], [0.0, 0.625, 0.25, 0.75]], np.float32
    )
    np.testing.assert_allclose(
        ref.iou_matrix(gt, anchors), [[1, 0.5, 0], [0.75, 2 / 3, 0], [0, 0, 0]], rtol=1e-6
    )
    for threshold in (0.9, 0.5, 1e-3):
        matches, max_iou = run(
            lambda a, b, c: matching.match(a, b, c, threshold), anchors, gt, np.ones(3, bool)
        )
        np.testing.assert_array_equal(matches, [0, 1, -1])
        np.testing.assert_array_equal(
            ref.caffe_match(gt, [True] * 3, anchors, threshold)[0], [0, 1, -1]
        )
        np.testing.assert_array_equal(max_iou, np.float32([1.0, 2.0 / 3.0, 0.0]))


def test_a_label_0_row_is_padding_even_with_a_real_box():
    """`bboxes_encode` treats labels <= 0 as padding whatever their box: an object labelled 0
    (or -1) gives the same targets as no object at all."""
    net = nets_factory.get_network('ssd_300_mobilenet')()
    box = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
    alone = run(lambda l, b: net.bboxes_encode(l, b), np.array([4], np.int64), box)
    for padding in (0, -1):
        with_padding = run(
            lambda l, b: net.bboxes_encode(l, b),
            np.array([padding, 4, padding], np.int64),
            np.concatenate([box[:, [1, 0, 3, 2]], box, [[0.1, 0.1, 0.3, 0.3]]]).astype(np.float32),
        )
        for a, b in zip(with_padding, alone):
            np.testing.assert_array_equal(a, b)
