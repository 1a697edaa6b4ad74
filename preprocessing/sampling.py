"""Caffe SSD's zoom out (`ExpandImage`) and batch sampler (`GenerateBatchSamples`), as windows.

Nothing here touches pixels: each step returns a window (relative `[ymin, xmin, ymax, xmax]`)
and moves the boxes into that window's frame; `geometry.resize_window` renders the final window.
"""

import tensorflow as tf

from tf_extended import bboxes as tfe_bboxes

# The window of the whole image, in its own frame.
UNIT_WINDOW = (0.0, 0.0, 1.0, 1.0)


def sample_expansion(image_shape, seeds, prob=0.5, max_ratio=4.0):
    """Caffe's `ExpandImage`: with probability `prob`, a canvas `ratio` times the image on each
    side (`ratio` uniform in `[1, max_ratio]`) with the image at a random whole-pixel offset.

    Args:
      image_shape: int `[3]` (or `[2]`) tensor, `[H, W, ...]` of the image.
      seeds: a `seeds.SeedStream`.
    Returns:
      float32 `[4]`: the canvas as a window of the image (`[0, 0, 1, 1]` when not expanded).
      Boxes move to the canvas frame with `tfe_bboxes.bboxes_resize(canvas, bboxes)`.
    """
    expand = seeds.bernoulli(prob)
    ratio = tf.where(expand, seeds.uniform((), 1.0, max_ratio), 1.0)
    size = tf.cast(image_shape[:2], tf.float32)
    canvas = tf.floor(size * ratio)
    offset = tf.floor(seeds.uniform([2]) * (canvas - size))
    return tf.concat([-offset / size, (canvas - offset) / size], axis=0)


def sample_crop(
    bboxes,
    seeds,
    min_ious=(0.1, 0.3, 0.5, 0.7, 0.9, 0.0),
    scale_range=(0.3, 1.0),
    aspect_ratio_range=(0.5, 2.0),
    max_trials=50,
):
    """Caffe's batch sampler: the whole image or one of the crops satisfying a min-IoU sampler.

    For every sampler in `min_ious`, `max_trials` candidate crops are drawn at once: scale `s`
    uniform in `scale_range`, aspect ratio (width / height, in relative units) uniform in
    `[max(lo, s^2), min(hi, 1 / s^2)]` (so the crop fits), position uniform. A sampler succeeds
    with its first candidate whose IoU with at least one object is >= its minimum (0 means
    "any crop", but like Caffe's `max_jaccard_overlap: 1` it still needs one object). The result
    is drawn uniformly among the whole image and the samplers that succeeded.

    Args:
      bboxes: float32 `[N, 4]` relative boxes (N may be 0).
      seeds: a `seeds.SeedStream`.
    Returns:
      float32 `[4]` crop window, relative to the image.
    """
    num_samplers = len(min_ious)
    shape = [num_samplers, max_trials]
    scale = seeds.uniform(shape, *scale_range)
    lo = tf.maximum(aspect_ratio_range[0], tf.square(scale))
    hi = tf.minimum(aspect_ratio_range[1], 1.0 / tf.square(scale))
    aspect_ratio = lo + seeds.uniform(shape) * (hi - lo)
    width = tf.minimum(scale * tf.sqrt(aspect_ratio), 1.0)
    height = tf.minimum(scale / tf.sqrt(aspect_ratio), 1.0)
    ymin = seeds.uniform(shape) * (1.0 - height)
    xmin = seeds.uniform(shape) * (1.0 - width)
    candidates = tf.stack([ymin, xmin, ymin + height, xmin + width], axis=-1)

    iou = tf.reshape(
        tfe_bboxes.bboxes_jaccard(tf.reshape(candidates, [-1, 4]), bboxes), shape + [-1]
    )
    min_iou = tf.constant(min_ious, tf.float32)[:, None, None]
    satisfied = tf.reduce_any(iou >= min_iou, axis=-1)
    # Caffe keeps each sampler's first success (max_sample 1).
    first = tf.argmax(tf.cast(satisfied, tf.int32), axis=1, output_type=tf.int32)
    found = tf.reduce_any(satisfied, axis=1)
    chosen = tf.gather(candidates, first, batch_dims=1)

    options = tf.concat([tf.constant([UNIT_WINDOW]), chosen], axis=0)
    valid = tf.concat([[True], found], axis=0)
    score = tf.where(valid, seeds.uniform([num_samplers + 1]), -1.0)
    return options[tf.argmax(score, output_type=tf.int32)]


def crop_bboxes(window, bboxes, *aligned):
    """Keeps the boxes whose centre lies in `window`, clipped and expressed in its frame.

    Args:
      window: float32 `[4]` relative window.
      bboxes: float32 `[N, 4]`.
      *aligned: tensors `[N, ...]` (labels, difficult flags) filtered like the boxes.
    Returns:
      `(bboxes [M, 4], *aligned [M, ...])`.
    """
    keep = tfe_bboxes.bboxes_center_inside(window, bboxes)
    bboxes = tfe_bboxes.bboxes_resize(window, tfe_bboxes.bboxes_clip(window, bboxes))
    return (tf.boolean_mask(bboxes, keep),) + tuple(tf.boolean_mask(t, keep) for t in aligned)
