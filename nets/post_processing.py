"""Detection post-processing with Caffe DetectionOutput semantics, vectorised over batch and
classes.

Per image and per class c >= 1: keep anchors whose score is > `select_threshold`, take the
`top_k` best, run greedy NMS (a box is dropped when its IoU with a kept one is > `nms_threshold`);
then keep the `keep_top_k` best detections of the image across classes. Boxes are decoded and
optionally clipped to [0, 1] before NMS, as Caffe does.
"""

import numpy as np
import tensorflow as tf

from nets import box_coder


def detected_bboxes(
    predictions,
    localisations,
    anchors,
    select_threshold=0.01,
    nms_threshold=0.45,
    top_k=400,
    keep_top_k=200,
    clip=False,
    prior_scaling=box_coder.DEFAULT_PRIOR_SCALING,
):
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
    scores, class_boxes, total = _candidates(
        predictions, localisations, anchors, top_k, keep_top_k, clip, prior_scaling
    )
    # combined_non_max_suppression wants boxes [B, k, C-1, 4] ("q = num_classes") and scores
    # [B, k, C-1].
    nms = tf.image.combined_non_max_suppression(
        tf.transpose(class_boxes, [0, 2, 1, 3]),
        tf.transpose(scores, [0, 2, 1]),
        max_output_size_per_class=int(scores.shape[2]),
        max_total_size=total,
        iou_threshold=nms_threshold,
        score_threshold=select_threshold,
        pad_per_class=False,
        clip_boxes=False,
    )
    valid = tf.sequence_mask(nms.valid_detections, total)
    return {
        'detection_boxes': nms.nmsed_boxes,
        'detection_scores': nms.nmsed_scores,
        'detection_classes': tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32) + 1, 0),
        'num_detections': nms.valid_detections,
    }


def _candidates(predictions, localisations, anchors, top_k, keep_top_k, clip, prior_scaling):
    """The stage both post-processings share, before NMS: boxes decoded (clipped when `clip`),
    then the `top_k` best anchors of every foreground class.

    Args: as `detected_bboxes`.
    Returns:
      `(scores, boxes, total)`: float32 `[B, C-1, k]` sorted by decreasing score and their
      boxes `[B, C-1, k, 4]` (`class_candidates`; row c holds class c + 1), and the number of
      detections per image (`output_size`).
    """
    predictions = tf.cast(predictions, tf.float32)
    boxes = decode_boxes(localisations, anchors, clip, prior_scaling)
    scores, class_boxes = class_candidates(predictions, boxes, top_k)
    return scores, class_boxes, output_size(keep_top_k, int(scores.shape[2]), int(scores.shape[1]))


def decode_boxes(localisations, anchors, clip=False, prior_scaling=box_coder.DEFAULT_PRIOR_SCALING):
    """Box codes `[B, N, 4]` -> float32 boxes `[B, N, 4]`, clipped to [0, 1] when `clip`."""
    boxes = box_coder.decode(tf.cast(localisations, tf.float32), anchors, prior_scaling)
    return tf.clip_by_value(boxes, 0.0, 1.0) if clip else boxes


def class_candidates(predictions, boxes, top_k):
    """The `top_k` best anchors of every foreground class (Caffe's per-class `top_k`).

    Args:
      predictions: float32 `[B, N, C]` probabilities; boxes: float32 `[B, N, 4]` decoded boxes.
      top_k: candidates per class (<= 0 or None: all N).
    Returns:
      `(scores, boxes)`: float32 `[B, C-1, k]` sorted by decreasing score, and their boxes
      `[B, C-1, k, 4]`; row c holds class c + 1.
    """
    num_anchors = int(predictions.shape[1])
    num_fg = int(predictions.shape[2]) - 1
    k = candidates_per_class(top_k, num_anchors)
    scores, indices = tf.math.top_k(tf.transpose(predictions[:, :, 1:], [0, 2, 1]), k=k)
    batch = tf.shape(predictions)[0]
    class_boxes = tf.gather(boxes, tf.reshape(indices, [batch, -1]), batch_dims=1)
    return scores, tf.reshape(class_boxes, [batch, num_fg, k, 4])


def candidates_per_class(top_k, num_anchors):
    """Candidates per class before NMS: `top_k`, at most `num_anchors`; all when <= 0 or None."""
    return num_anchors if top_k is None or top_k <= 0 else min(top_k, num_anchors)


def output_size(keep_top_k, k, num_fg):
    """Detections per image: `keep_top_k`, or every candidate (`k * num_fg`) when <= 0."""
    return k * num_fg if keep_top_k is None or keep_top_k <= 0 else keep_top_k


def detected_bboxes_per_class_nms(
    predictions,
    localisations,
    anchors,
    select_threshold=0.01,
    nms_threshold=0.45,
    top_k=400,
    keep_top_k=200,
    clip=False,
    prior_scaling=box_coder.DEFAULT_PRIOR_SCALING,
):
    """`detected_bboxes` built from TFLite builtin ops only.

    CombinedNonMaxSuppression has no TFLite kernel; this runs NonMaxSuppressionV5 (TFLite
    NON_MAX_SUPPRESSION_V5) once per image and foreground class, unrolled in the graph, then keeps
    the `keep_top_k` best of the image with TOPK_V2. Same arguments, outputs and semantics as
    `detected_bboxes`, except that the batch size must be static (the unrolling needs it).
    """
    batch = predictions.shape[0]
    if batch is None:
        raise ValueError(
            'detected_bboxes_per_class_nms needs a static batch size (predictions '
            f'have shape {predictions.shape}); give the input a fixed batch size.'
        )
    scores, class_boxes, total = _candidates(
        predictions, localisations, anchors, top_k, keep_top_k, clip, prior_scaling
    )
    k, num_fg = int(scores.shape[2]), int(scores.shape[1])
    # Flat candidate p of an image belongs to class p // k + 1; rows past `total` pad.
    class_ids = tf.constant(
        np.concatenate(
            [np.repeat(np.arange(1, num_fg + 1), k), np.zeros(max(total - k * num_fg, 0))]
        ),
        tf.int32,
    )
    outputs = {
        'detection_boxes': [],
        'detection_scores': [],
        'detection_classes': [],
        'num_detections': [],
    }
    for b in range(batch):
        kept_scores, kept_boxes = [], []
        for c in range(num_fg):
            selected, selected_scores, num_valid = tf.raw_ops.NonMaxSuppressionV5(
                boxes=class_boxes[b, c],
                scores=scores[b, c],
                max_output_size=k,
                iou_threshold=nms_threshold,
                score_threshold=select_threshold,
                soft_nms_sigma=0.0,
                pad_to_max_output_size=True,
            )
            # Suppressed slots score -1, below any probability, so the final top-k skips them.
            kept_scores.append(tf.where(tf.range(k) < num_valid, selected_scores, -1.0))
            kept_boxes.append(tf.gather(class_boxes[b, c], selected))
        flat_scores = tf.concat(kept_scores, axis=0)
        flat_boxes = tf.concat(kept_boxes, axis=0)
        if total > k * num_fg:
            flat_scores = tf.pad(flat_scores, [[0, total - k * num_fg]], constant_values=-1.0)
            flat_boxes = tf.pad(flat_boxes, [[0, total - k * num_fg], [0, 0]])
        top_scores, order = tf.math.top_k(flat_scores, k=total)
        valid = top_scores >= 0.0
        outputs['detection_scores'].append(tf.where(valid, top_scores, 0.0))
        outputs['detection_boxes'].append(
            tf.where(valid[:, None], tf.gather(flat_boxes, order), 0.0)
        )
        outputs['detection_classes'].append(tf.where(valid, tf.gather(class_ids, order), 0))
        outputs['num_detections'].append(tf.reduce_sum(tf.cast(valid, tf.int32)))
    return {key: tf.stack(values) for key, values in outputs.items()}
