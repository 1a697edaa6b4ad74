"""Box operations shared by the nets, the preprocessing and the metrics.

All boxes are float tensors `[..., 4]` as `[ymin, xmin, ymax, xmax]`, relative to the image
(any consistent unit works for the functions that only compare boxes).
"""

import tensorflow as tf


def bboxes_area(bboxes):
    """Area of boxes `[..., 4]` -> `[...]`; inverted boxes have area 0."""
    ymin, xmin, ymax, xmax = tf.unstack(bboxes, axis=-1)
    return tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)


def bboxes_intersection_area(bboxes_a, bboxes_b):
    """Pairwise intersection areas of `[N, 4]` and `[M, 4]` boxes -> `[N, M]`."""
    a = tf.expand_dims(bboxes_a, 1)
    b = tf.expand_dims(bboxes_b, 0)
    h = tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0])
    w = tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1])
    return tf.maximum(h, 0.0) * tf.maximum(w, 0.0)


def bboxes_jaccard(bboxes_a, bboxes_b):
    """Pairwise IoU of `[N, 4]` and `[M, 4]` boxes -> `[N, M]`.

    A pair whose union is empty (two zero-area boxes) has IoU 0, never NaN.
    """
    inter = bboxes_intersection_area(bboxes_a, bboxes_b)
    union = (
        tf.expand_dims(bboxes_area(bboxes_a), 1) + tf.expand_dims(bboxes_area(bboxes_b), 0) - inter
    )
    return tf.math.divide_no_nan(inter, union)


def bboxes_intersection_over_area(bbox_ref, bboxes):
    """Fraction of each box `[N, 4]` that lies inside `bbox_ref` `[4]` -> `[N]` (0 for empty boxes)."""
    inter = bboxes_intersection_area(bboxes, tf.expand_dims(bbox_ref, 0))[:, 0]
    return tf.math.divide_no_nan(inter, bboxes_area(bboxes))


def bboxes_clip(bbox_ref, bboxes):
    """Clips boxes `[..., 4]` to the window `bbox_ref` `[4]`."""
    lo = tf.stack([bbox_ref[0], bbox_ref[1], bbox_ref[0], bbox_ref[1]])
    hi = tf.stack([bbox_ref[2], bbox_ref[3], bbox_ref[2], bbox_ref[3]])
    return tf.minimum(tf.maximum(bboxes, lo), hi)


def bboxes_resize(bbox_ref, bboxes):
    """Expresses boxes `[..., 4]` in the frame of the window `bbox_ref` `[4]`.

    The window becomes `[0, 0, 1, 1]`: this is how boxes follow a crop (or, with a window that
    extends beyond `[0, 1]`, an expansion) of the image.
    """
    origin = tf.stack([bbox_ref[0], bbox_ref[1], bbox_ref[0], bbox_ref[1]])
    size = tf.stack([bbox_ref[2] - bbox_ref[0], bbox_ref[3] - bbox_ref[1]] * 2)
    return tf.math.divide_no_nan(bboxes - origin, size)


def bboxes_center_inside(bbox_ref, bboxes):
    """Boolean `[N]`: the centre of each box `[N, 4]` lies inside `bbox_ref` `[4]` (Caffe's
    `MeetEmitConstraint` CENTER rule for crops)."""
    cy = (bboxes[:, 0] + bboxes[:, 2]) / 2.0
    cx = (bboxes[:, 1] + bboxes[:, 3]) / 2.0
    return (cy >= bbox_ref[0]) & (cy <= bbox_ref[2]) & (cx >= bbox_ref[1]) & (cx <= bbox_ref[3])


def bboxes_flip_left_right(bboxes):
    """Mirrors relative boxes `[..., 4]` horizontally."""
    ymin, xmin, ymax, xmax = tf.unstack(bboxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def bboxes_sort(scores, bboxes, top_k):
    """Keeps the `top_k` highest scores of `[..., N]` and their boxes `[..., N, 4]`, sorted.

    Returns `(scores [..., top_k], bboxes [..., top_k, 4], indices [..., top_k])`.
    """
    scores, idx = tf.math.top_k(scores, k=top_k, sorted=True)
    return scores, tf.gather(bboxes, idx, batch_dims=len(idx.shape) - 1), idx


def corners_to_center_size(bboxes):
    """`[..., 4]` `[ymin, xmin, ymax, xmax]` -> `(cy, cx, h, w)`, each `[...]`."""
    ymin, xmin, ymax, xmax = tf.unstack(bboxes, axis=-1)
    return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0, ymax - ymin, xmax - xmin


def center_size_to_corners(cy, cx, h, w):
    """Inverse of `corners_to_center_size`: four `[...]` tensors -> `[..., 4]` corners."""
    return tf.stack([cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0], axis=-1)


def bboxes_unresize(bbox_ref, bboxes):
    """Inverse of `bboxes_resize`: boxes `[..., 4]` given in the frame of the window `bbox_ref`
    `[4]` -> the same boxes in the frame `bbox_ref` itself is expressed in.

    Composes windows: a crop given in the frame of an expanded canvas becomes a window of the
    original image with `bboxes_unresize(canvas, crop)`.
    """
    origin = tf.stack([bbox_ref[0], bbox_ref[1], bbox_ref[0], bbox_ref[1]])
    size = tf.stack([bbox_ref[2] - bbox_ref[0], bbox_ref[3] - bbox_ref[1]] * 2)
    return bboxes * size + origin
