"""The TFLite-builtin post-processing (per-class NMS V5, unrolled) against `detected_bboxes`
(CombinedNonMaxSuppression) and the numpy Caffe DetectionOutput reference."""

import numpy as np
import pytest
import tensorflow as tf

from nets import post_processing
from tests import numpy_reference as ref
from tests.test_post_processing import make_inputs

v1 = tf.compat.v1


@pytest.mark.parametrize(
    'conf,nms,top_k,keep_top_k,clip',
    [
        (0.3, 0.45, 400, 200, False),
        (0.2, 0.3, 10, 25, True),
        (0.25, 0.5, -1, -1, False),
        (0.1, 0.45, 4, 30, False),
    ],
)
def test_per_class_nms_equals_combined_nms(conf, nms, top_k, keep_top_k, clip):
    rng = np.random.RandomState(3)
    probs, codes, anchors = make_inputs(rng, 2, 300, 5)
    args = (anchors, conf, nms, top_k, keep_top_k, clip)
    with tf.Graph().as_default(), v1.Session() as sess:
        combined, per_class = sess.run(
            [
                post_processing.detected_bboxes(tf.constant(probs), tf.constant(codes), *args),
                post_processing.detected_bboxes_per_class_nms(
                    tf.constant(probs), tf.constant(codes), *args
                ),
            ]
        )
    for key in combined:
        assert combined[key].shape == per_class[key].shape, key
        assert combined[key].dtype == per_class[key].dtype, key
    np.testing.assert_array_equal(per_class['num_detections'], combined['num_detections'])
    np.testing.assert_array_equal(per_class['detection_classes'], combined['detection_classes'])
    np.testing.assert_allclose(
        per_class['detection_scores'], combined['detection_scores'], atol=1e-6
    )
    np.testing.assert_allclose(per_class['detection_boxes'], combined['detection_boxes'], atol=1e-6)
    for b in range(2):
        boxes = ref.decode(codes[b].astype(np.float64), anchors.astype(np.float64))
        want = ref.caffe_detection_output(
            probs[b], np.clip(boxes, 0, 1) if clip else boxes, conf, nms, top_k, keep_top_k
        )
        n = per_class['num_detections'][b]
        assert n == len(want) > 0
        np.testing.assert_allclose(
            per_class['detection_scores'][b, :n], [w[0] for w in want], atol=1e-6
        )
        # Padding rows: the last case asks for more rows (30) than survive NMS.
        assert not per_class['detection_scores'][b, n:].any()
        assert not per_class['detection_boxes'][b, n:].any()


def test_per_class_nms_needs_a_static_batch():
    with tf.Graph().as_default():
        probs = v1.placeholder(tf.float32, [None, 10, 3])
        with pytest.raises(ValueError, match='static batch size'):
            post_processing.detected_bboxes_per_class_nms(
                probs, tf.zeros([1, 10, 4]), np.zeros([10, 4], np.float32)
            )
