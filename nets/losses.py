"""SSD training loss (Caffe's MultiBoxLoss), with label smoothing and a focal-loss option.

Confidence: softmax cross-entropy on the matched anchors (positives) and on hard negatives: per
image, the `negative_ratio * positives` unmatched anchors (best IoU below `negative_threshold`)
with the highest background loss. Localisation: smooth L1 (sigma 1) on the positives. Both are
divided by the number of positives in the whole batch (at least 1), as Caffe's VALID normaliser.
Anchors of class -1 (ignored: they belong to a COCO crowd region, see `SSDNet.bboxes_encode`) are
neither positives nor negatives and add nothing to any term.
"""

import tensorflow as tf

v1 = tf.compat.v1


def _smooth_l1(x):
    absx = tf.abs(x)
    return tf.where(absx < 1.0, 0.5 * tf.square(x), absx - 0.5)


def hard_negative_mask(background_loss, negative_candidates, num_negatives):
    """Per image, True for the `num_negatives[b]` candidates with the highest background loss.

    Args:
      background_loss: float `[B, N]`.
      negative_candidates: bool `[B, N]`.
      num_negatives: int32 `[B]`.
    Returns:
      bool `[B, N]`.
    """
    ranked = tf.where(
        negative_candidates, background_loss, tf.fill(tf.shape(background_loss), float('-inf'))
    )
    order = tf.argsort(ranked, axis=1, direction='DESCENDING', stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    return negative_candidates & (rank < num_negatives[:, None])


def ssd_losses(
    logits,
    localisations,
    gclasses,
    glocalisations,
    gscores,
    negative_threshold=0.5,
    negative_ratio=3.0,
    min_negatives=0,
    alpha=1.0,
    label_smoothing=0.0,
    focal_gamma=None,
    focal_alpha=0.25,
    scope=None,
):
    """SSD loss over a batch; every term is added to the loss collection and summarised.

    Args:
      logits: float `[B, N, C]` class logits.
      localisations: float `[B, N, 4]` predicted codes.
      gclasses: int `[B, N]` matched labels (0 = background / unmatched, -1 = ignored).
      glocalisations: float `[B, N, 4]` target codes (ignored where unmatched).
      gscores: float `[B, N]` each anchor's best IoU with a ground truth.
      negative_threshold: unmatched anchors with best IoU below this can be negatives.
      negative_ratio: negatives per positive, per image.
      min_negatives: negatives per image even without positives (Caffe: 0).
      alpha: weight of the localisation term.
      label_smoothing: epsilon of the smoothed one-hot targets (0 = off).
      focal_gamma: if set, softmax focal loss over all positives and negative candidates
        (no hard-negative mining), weighted `focal_alpha` / (1 - `focal_alpha`) for positives /
        negatives (so 0 is a weighted cross-entropy, not plain cross-entropy).
      focal_alpha: focal loss only: the weight of the positives' terms, 1 - it the negatives'
        (RetinaNet's 0.25; train_ssd_network.py --focal_loss_alpha).
    Returns:
      The total loss, a float32 scalar.
    """
    with v1.name_scope(scope, 'ssd_losses'):
        logits = tf.cast(logits, tf.float32)
        localisations = tf.cast(localisations, tf.float32)
        num_classes = tf.shape(logits)[-1]
        gclasses = tf.cast(gclasses, tf.int32)
        positives = gclasses > 0
        fpositives = tf.cast(positives, tf.float32)
        num_positives = tf.reduce_sum(tf.cast(positives, tf.int32), axis=1)
        normalizer = tf.maximum(tf.reduce_sum(fpositives), 1.0)
        candidates = tf.equal(gclasses, 0) & (gscores < negative_threshold)

        log_probs = tf.nn.log_softmax(logits)
        targets = tf.one_hot(gclasses, num_classes)
        if label_smoothing > 0:
            targets = targets * (1.0 - label_smoothing) + label_smoothing / tf.cast(
                num_classes, tf.float32
            )
        cross_entropy = -tf.reduce_sum(targets * log_probs, axis=-1)

        if focal_gamma is not None:
            p_true = tf.exp(
                -tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.maximum(gclasses, 0), logits=logits
                )
            )
            modulation = tf.pow(1.0 - p_true, focal_gamma)
            cross_entropy *= modulation * tf.where(positives, focal_alpha, 1.0 - focal_alpha)
            negatives = candidates
        else:
            num_negatives = tf.maximum(
                tf.minimum(
                    tf.cast(tf.cast(num_positives, tf.float32) * negative_ratio, tf.int32),
                    tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1),
                ),
                tf.minimum(min_negatives, tf.reduce_sum(tf.cast(candidates, tf.int32), axis=1)),
            )
            negatives = hard_negative_mask(
                tf.stop_gradient(-log_probs[..., 0]), candidates, num_negatives
            )

        loss_pos = tf.reduce_sum(cross_entropy * fpositives) / normalizer
        loss_neg = tf.reduce_sum(cross_entropy * tf.cast(negatives, tf.float32)) / normalizer
        loss_loc = (
            alpha
            * tf.reduce_sum(
                tf.reduce_sum(_smooth_l1(localisations - glocalisations), axis=-1) * fpositives
            )
            / normalizer
        )
        for name, value in (
            ('cross_entropy_pos', loss_pos),
            ('cross_entropy_neg', loss_neg),
            ('localization', loss_loc),
        ):
            v1.losses.add_loss(tf.identity(value, name=name))
        return loss_pos + loss_neg + loss_loc
