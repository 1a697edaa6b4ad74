"""SSD box coding (Caffe's CENTER_SIZE with variances).

Codes are `[tx, ty, tw, th]` — Caffe's `[dx, dy, dw, dh]` channel order, which the older TF port
kept: `tx = (gcx - acx) / aw / v0`, `ty = (gcy - acy) / ah / v1`, `tw = log(gw / aw) / v2`,
`th = log(gh / ah) / v3`, with variances `prior_scaling = (v0, v1, v2, v3) = (0.1, 0.1, 0.2, 0.2)`.
Boxes and anchors are `[ymin, xmin, ymax, xmax]`, relative.
"""

import tensorflow as tf

from tf_extended import bboxes as tfe_bboxes

DEFAULT_PRIOR_SCALING = (0.1, 0.1, 0.2, 0.2)


def encode(bboxes, anchors, prior_scaling=DEFAULT_PRIOR_SCALING):
    """Boxes `[..., 4]` -> codes `[..., 4]` relative to anchors (broadcastable `[..., 4]`).

    Boxes must have positive size (the matcher never assigns an empty box).
    """
    gcy, gcx, gh, gw = tfe_bboxes.corners_to_center_size(bboxes)
    acy, acx, ah, aw = tfe_bboxes.corners_to_center_size(tf.cast(anchors, bboxes.dtype))
    return tf.stack(
        [
            (gcx - acx) / aw / prior_scaling[0],
            (gcy - acy) / ah / prior_scaling[1],
            tf.math.log(gw / aw) / prior_scaling[2],
            tf.math.log(gh / ah) / prior_scaling[3],
        ],
        axis=-1,
    )


def decode(codes, anchors, prior_scaling=DEFAULT_PRIOR_SCALING):
    """Codes `[..., 4]` -> boxes `[..., 4]` (inverse of `encode`)."""
    acy, acx, ah, aw = tfe_bboxes.corners_to_center_size(tf.cast(anchors, codes.dtype))
    tx, ty, tw, th = tf.unstack(codes, axis=-1)
    cx = tx * prior_scaling[0] * aw + acx
    cy = ty * prior_scaling[1] * ah + acy
    w = tf.exp(tw * prior_scaling[2]) * aw
    h = tf.exp(th * prior_scaling[3]) * ah
    return tfe_bboxes.center_size_to_corners(cy, cx, h, w)
