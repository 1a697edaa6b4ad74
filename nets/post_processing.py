"""Detection post-processing with Caffe DetectionOutput semantics, vectorised over batch and
classes.

Per image and per class c >= 1: keep anchors whose score is > `select_threshold`, take the
`top_k` best, run greedy NMS (a box is dropped when its IoU with a kept one is > `nms_threshold`);
then keep the `keep_top_k` best detections of the image across classes. Boxes are decoded and
optionally clipped to [0, 1] before NMS, as Caffe does.
"""
import tensorflow as tf

from nets import box_coder


def detected_bboxes(predictions, localisations, anchors, select_threshold=0.01,
                    nms_threshold=0.45, top_k=400, keep_top_k=200, clip=False,
                    prior_scaling=box_coder.DEFAULT_PRIOR_SCALING):
    """Detections from the flat outputs of an SSD net.

    Args:
      predictions: float `[B, N, C]` class probabilities (class 0 = background).
      localisations: float `[B, N, 4]` box codes.
      anchors: `[N, 4]` anchors, `[ymin, xmin, ymax, xmax]`.
      top_k: candidates per class before NMS (<= 0: all).
      keep_top_k: detections per image after NMS (<= 0: all that survive).
    Returns:
      dict of `detection_boxes` float32 `[B, K, 4]` (relative `[ymin, xmin, ymax, xmax]`),
      `detection_scores` float32 `[B, K]`, `detection_classes` int32 `[B, K]` (labels >= 1),
      `num_detections` int32 `[B]`; rows beyond `num_detections` are zero padding, and rows are
      sorted by decreasing score.
    """
    predictions = tf.cast(predictions, tf.float32)
    boxes = box_coder.decode(tf.cast(localisations, tf.float32), anchors, prior_scaling)
    if clip:
        boxes = tf.clip_by_value(boxes, 0., 1.)
    num_anchors = int(predictions.shape[1])
    num_fg = int(predictions.shape[2]) - 1
    k = num_anchors if top_k is None or top_k <= 0 else min(top_k, num_anchors)
    # Per-class candidates [B, C-1, k]; each class gets its own boxes ("q = num_classes" layout).
    scores, indices = tf.math.top_k(tf.transpose(predictions[:, :, 1:], [0, 2, 1]), k=k)
    batch = tf.shape(predictions)[0]
    class_boxes = tf.gather(boxes, tf.reshape(indices, [batch, -1]), batch_dims=1)
    class_boxes = tf.transpose(tf.reshape(class_boxes, [batch, num_fg, k, 4]), [0, 2, 1, 3])
    total = k * num_fg if keep_top_k is None or keep_top_k <= 0 else keep_top_k
    nms = tf.image.combined_non_max_suppression(
        class_boxes, tf.transpose(scores, [0, 2, 1]), max_output_size_per_class=k,
        max_total_size=total, iou_threshold=nms_threshold, score_threshold=select_threshold,
        pad_per_class=False, clip_boxes=False)
    valid = tf.sequence_mask(nms.valid_detections, total)
    return {
        'detection_boxes': nms.nmsed_boxes,
        'detection_scores': nms.nmsed_scores,
        'detection_classes': tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32) + 1, 0),
        'num_detections': nms.valid_detections,
    }
