"""Anchor-to-ground-truth matching, as Caffe's MultiBoxLoss does it (BIPARTITE + PER_PREDICTION).

1. Bipartite: repeatedly take the highest IoU among unmatched ground truths and unused anchors
   and pair them, so every object gets its best free anchor even when that IoU is below the
   threshold (small objects would otherwise never train).
2. Per prediction: every remaining anchor whose best IoU with a ground truth is >= threshold is
   matched to that ground truth.
Empty (zero-area) or padded ground truths never match and never produce NaN.

`owners` gives, per anchor, the ground truth it belongs to: its match, else (unmatched) the
ground truth of its best IoU when that IoU is above 0; SSD targets use it to ignore anchors that
belong to COCO crowd regions (see `SSDNet.bboxes_encode`).
"""

import tensorflow as tf

from tf_extended import bboxes as tfe_bboxes

# Caffe only considers overlaps above this in the bipartite step.
_MIN_OVERLAP = 1e-6


def match(anchors, gt_bboxes, gt_valid, match_threshold=0.5):
    """Matches one image's anchors to its ground truths; see `match_with_owners`.

    Returns:
      (matches, max_iou) of `match_with_owners`.
    """
    matches, max_iou, _ = match_with_owners(anchors, gt_bboxes, gt_valid, match_threshold)
    return matches, max_iou


def match_with_owners(anchors, gt_bboxes, gt_valid, match_threshold=0.5):
    """Matches one image's anchors to its ground truths.

    Args:
      anchors: float32 `[N, 4]`.
      gt_bboxes: float32 `[G, 4]` (padding allowed).
      gt_valid: bool `[G]`, False for padding; empty boxes are excluded here too.
      match_threshold: IoU for the per-prediction step (>=).
    Returns:
      matches: int32 `[N]`, index of the matched ground truth or -1.
      max_iou: float32 `[N]`, each anchor's best IoU with a valid ground truth (0 if none) — what
        hard-negative mining compares with its negative threshold.
      owners: int32 `[N]`, the ground truth each anchor belongs to: `matches` where matched, else
        the valid ground truth of its best IoU when that IoU is > 0 (first on ties), else -1.
    """
    # One invalid sentinel row keeps the reductions below defined for images without objects.
    gt_bboxes = tf.concat([gt_bboxes, tf.zeros([1, 4], gt_bboxes.dtype)], axis=0)
    gt_valid = tf.concat([gt_valid, [False]], axis=0)
    num_anchors = tf.shape(anchors)[0]
    num_gt = tf.shape(gt_bboxes)[0]
    valid = gt_valid & (tfe_bboxes.bboxes_area(gt_bboxes) > 0.0)
    iou = tfe_bboxes.bboxes_jaccard(gt_bboxes, anchors)
    iou = tf.where(valid[:, None], iou, -tf.ones_like(iou))

    def bipartite_step(step, gt_done, matches):
        blocked = gt_done[:, None] | (matches >= 0)[None, :]
        masked = tf.where(blocked, -tf.ones_like(iou), iou)
        best = tf.argmax(tf.reshape(masked, [-1]), output_type=tf.int32)
        g, n = best // num_anchors, best % num_anchors
        found = masked[g, n] > _MIN_OVERLAP
        gt_done = tf.tensor_scatter_nd_update(gt_done, [[g]], [True])
        matches = tf.where(found & tf.equal(tf.range(num_anchors), n), g, matches)
        # A failed search means no free overlapping pair is left: stop.
        step = tf.where(found, step + 1, num_gt)
        return step, gt_done, matches

    _, _, matches = tf.while_loop(
        lambda step, *_: step < num_gt,
        bipartite_step,
        [tf.constant(0), ~valid, -tf.ones([num_anchors], tf.int32)],
    )

    best_gt = tf.argmax(iou, axis=0, output_type=tf.int32)
    max_iou = tf.maximum(tf.reduce_max(iou, axis=0), 0.0)
    per_prediction = (matches < 0) & (max_iou >= match_threshold) & (max_iou > _MIN_OVERLAP)
    matches = tf.where(per_prediction, best_gt, matches)
    owners = tf.where(matches >= 0, matches, tf.where(max_iou > 0.0, best_gt, -1))
    return matches, max_iou, owners
