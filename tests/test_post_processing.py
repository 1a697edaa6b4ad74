"""Post-processing against a numpy transcription of Caffe's DetectionOutput."""

import numpy as np
import pytest
import tensorflow as tf

from nets import post_processing
from tests import numpy_reference as ref

v1 = tf.compat.v1


def make_inputs(rng, batch, n, c):
    anchors = np.concatenate([rng.rand(n, 2) * 0.7, np.zeros((n, 2))], 1)
    anchors[:, 2:] = anchors[:, :2] + rng.rand(n, 2) * 0.3 + 0.05
    # Clustered anchors so that NMS has overlaps to suppress.
    anchors = anchors.astype(np.float32)
    logits = rng.randn(batch, n, c) * 2.5
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    codes = rng.randn(batch, n, 4) * 0.5
    return probs.astype(np.float32), codes.astype(np.float32), anchors


@pytest.mark.parametrize(
    'conf,nms,top_k,keep_top_k,clip',
    [
        (0.3, 0.45, 400, 200, False),
        (0.2, 0.3, 10, 25, False),
        (0.25, 0.5, -1, -1, True),
        (0.6, 0.45, 5, 3, False),
    ],
)
def test_equals_caffe_detection_output(conf, nms, top_k, keep_top_k, clip):
    rng = np.random.RandomState(0)
    probs, codes, anchors = make_inputs(rng, 3, 300, 5)
    with tf.Graph().as_default(), v1.Session() as sess:
        out = sess.run(
            post_processing.detected_bboxes(
                tf.constant(probs), tf.constant(codes), anchors, conf, nms, top_k, keep_top_k, clip
            )
        )
    for b in range(3):
        boxes = ref.decode(codes[b].astype(np.float64), anchors.astype(np.float64))
        if clip:
            boxes = np.clip(boxes, 0, 1)
        want = ref.caffe_detection_output(probs[b], boxes, conf, nms, top_k, keep_top_k)
        n = out['num_detections'][b]
        assert n == len(want) and n > 0
        np.testing.assert_allclose(out['detection_scores'][b, :n], [w[0] for w in want], atol=1e-6)
        np.testing.assert_array_equal(out['detection_classes'][b, :n], [w[1] for w in want])
        np.testing.assert_allclose(out['detection_boxes'][b, :n], [w[2] for w in want], atol=1e-5)
        assert not out['detection_classes'][b, n:].any()
        assert not out['detection_scores'][b, n:].any()


@pytest.mark.parametrize('top_k,keep_top_k', [(0, 0), (-1, None), (5, 10), (None, 10)])
def test_top_k_zero_negative_none_or_above_the_anchors_keeps_every_candidate(top_k, keep_top_k):
    """3 disjoint anchors, 2 classes, every score above the threshold: `top_k` 0, -1, None or more
    than the anchors keeps all 3 candidates per class, `keep_top_k` 0 or None keeps every
    detection (6), and more rows than detections (10) are zero padding, in both
    post-processings."""
    anchors = np.array([[0, 0, 0.2, 0.2], [0.4, 0.4, 0.6, 0.6], [0.8, 0.8, 1, 1]], np.float32)
    probs = np.array([[[0.1, 0.5, 0.4], [0.2, 0.3, 0.5], [0.05, 0.9, 0.05]]], np.float32)
    codes = np.zeros([1, 3, 4], np.float32)
    # (score, class, anchor) by decreasing score.
    want = [(0.9, 1, 2), (0.5, 1, 0), (0.5, 2, 1), (0.4, 2, 0), (0.3, 1, 1), (0.05, 2, 2)]
    args = (anchors, 0.01, 0.45, top_k, keep_top_k)
    with tf.Graph().as_default(), v1.Session() as sess:
        outputs = sess.run(
            [
                post_processing.detected_bboxes(tf.constant(probs), tf.constant(codes), *args),
                post_processing.detected_bboxes_per_class_nms(
                    tf.constant(probs), tf.constant(codes), *args
                ),
            ]
        )
    rows = 6 if keep_top_k is None or keep_top_k <= 0 else keep_top_k
    for out in outputs:
        assert out['num_detections'].tolist() == [6]
        assert out['detection_scores'].shape == (1, rows)
        scores = out['detection_scores'][0]
        np.testing.assert_allclose(scores[:6], [w[0] for w in want], atol=1e-6)
        # Equal scores (0.5) may come in either order; each (class, box) pair must be there.
        got = sorted(
            zip(
                np.round(scores[:6], 5),
                out['detection_classes'][0, :6].tolist(),
                map(tuple, out['detection_boxes'][0, :6].round(5).tolist()),
            )
        )
        expected = sorted((round(s, 5), c, tuple(anchors[a].round(5).tolist())) for s, c, a in want)
        assert got == expected
        assert not scores[6:].any() and not out['detection_classes'][0, 6:].any()
        assert not out['detection_boxes'][0, 6:].any()
