"""MultiBox loss against a numpy computation of Caffe's definition."""

import numpy as np
import pytest
import tensorflow as tf

from nets import losses

v1 = tf.compat.v1


def numpy_loss(
    logits, locs, gclasses, glocs, gscores, ratio=3, neg_thr=0.5, alpha=1.0, smoothing=0.0
):
    c = logits.shape[-1]
    logp = logits - logits.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    onehot = np.eye(c)[gclasses]
    target = onehot * (1 - smoothing) + smoothing / c
    ce = -(target * logp).sum(-1)
    pos = gclasses > 0
    npos = max(pos.sum(), 1)
    neg = np.zeros_like(pos)
    for b in range(len(logits)):
        cand = np.where((~pos[b]) & (gscores[b] < neg_thr))[0]
        k = min(int(pos[b].sum() * ratio), len(cand))
        order = cand[np.argsort(logp[b, cand, 0])]  # highest background loss first
        neg[b, order[:k]] = True
    d = np.abs(locs - glocs)
    sl1 = np.where(d < 1, 0.5 * d**2, d - 0.5).sum(-1)
    return ((ce * pos).sum() / npos, (ce * neg).sum() / npos, alpha * (sl1 * pos).sum() / npos, neg)


def run_loss(logits, locs, gclasses, glocs, gscores, **kwargs):
    with tf.Graph().as_default(), v1.Session() as sess:
        total = losses.ssd_losses(
            tf.constant(logits),
            tf.constant(locs),
            tf.constant(gclasses),
            tf.constant(glocs),
            tf.constant(gscores),
            **kwargs,
        )
        terms = {t.op.name.split('/')[-1]: t for t in v1.losses.get_losses()}
        return sess.run([total, terms])


def random_case(rng, batch=3, n=200, c=5, pos_per_image=(4, 1, 0)):
    logits = rng.randn(batch, n, c).astype(np.float32) * 2
    locs = rng.randn(batch, n, 4).astype(np.float32)
    glocs = rng.randn(batch, n, 4).astype(np.float32)
    gclasses = np.zeros((batch, n), np.int64)
    gscores = rng.rand(batch, n).astype(np.float32) * 0.45
    for b, k in enumerate(pos_per_image):
        idx = rng.choice(n, k, replace=False)
        gclasses[b, idx] = rng.randint(1, c, k)
        gscores[b, idx] = 0.6
    # Some unmatched anchors with IoU in [0.5, 1) are neither positive nor negative candidates.
    gscores[0, :5] = np.where(gclasses[0, :5] == 0, 0.55, gscores[0, :5])
    return logits, locs, gclasses, glocs, gscores


def test_hand_built_single_anchor_case():
    # One image, 2 anchors, 2 classes: anchor 0 positive (class 1), anchor 1 the only negative.
    logits = np.array([[[0.0, np.log(3.0)], [np.log(4.0), 0.0]]], np.float32)
    locs = np.array([[[0.5, -2.0, 0.0, 0.0], [9, 9, 9, 9]]], np.float32)
    glocs = np.zeros((1, 2, 4), np.float32)
    total, terms = run_loss(
        logits, locs, np.array([[1, 0]]), glocs, np.array([[0.7, 0.1]], np.float32)
    )
    # CE pos = -log(3/4), CE neg = -log(4/5), smooth L1 = 0.5*0.25 + (2 - 0.5).
    np.testing.assert_allclose(terms['cross_entropy_pos'], -np.log(0.75), rtol=1e-6)
    np.testing.assert_allclose(terms['cross_entropy_neg'], -np.log(0.8), rtol=1e-6)
    np.testing.assert_allclose(terms['localization'], 0.125 + 1.5, rtol=1e-6)
    np.testing.assert_allclose(total, -np.log(0.75) - np.log(0.8) + 1.625, rtol=1e-6)


@pytest.mark.parametrize('smoothing', [0.0, 0.1])
def test_random_case_equals_numpy(smoothing):
    case = random_case(np.random.RandomState(0))
    total, terms = run_loss(*case, alpha=2.0, label_smoothing=smoothing)
    pos, neg, loc, _ = numpy_loss(*case, alpha=2.0, smoothing=smoothing)
    np.testing.assert_allclose(terms['cross_entropy_pos'], pos, rtol=1e-5)
    np.testing.assert_allclose(terms['cross_entropy_neg'], neg, rtol=1e-5)
    np.testing.assert_allclose(terms['localization'], loc, rtol=1e-5)
    np.testing.assert_allclose(total, pos + neg + loc, rtol=1e-5)


@pytest.mark.parametrize('ratio', [1.0, 1.5, 5.0])
def test_other_negative_ratios_equal_numpy(ratio):
    case = random_case(np.random.RandomState(5))
    total, terms = run_loss(*case, negative_ratio=ratio)
    pos, neg, loc, mask = numpy_loss(*case, ratio=ratio)
    # 4, 1 and 0 positives: int(ratio * positives) negatives per image (Caffe truncates).
    np.testing.assert_array_equal(mask.sum(1), [int(4 * ratio), int(ratio), 0])
    np.testing.assert_allclose(terms['cross_entropy_neg'], neg, rtol=1e-5)
    np.testing.assert_allclose(total, pos + neg + loc, rtol=1e-5)


def equal_loss_case():
    """All logits 0: every anchor's cross-entropy is log(3) (3 classes), so the negative term
    counts the negatives. Image 0: 2 positives, 10 negative candidates. Image 1: 1 positive,
    2 candidates (best IoU 0.1), 3 unmatched anchors with IoU exactly 0.5 and 6 with 0.7, which
    are not candidates (Caffe: neg_overlap 0.5, strictly below)."""
    gclasses = np.zeros((2, 12), np.int64)
    gclasses[0, :2] = [1, 2]
    gclasses[1, 0] = 2
    gscores = np.full((2, 12), 0.1, np.float32)
    gscores[:, 0] = 0.8
    gscores[0, 1] = 0.6
    gscores[1, 3:6] = 0.5
    gscores[1, 6:] = 0.7
    zeros = np.zeros((2, 12, 4), np.float32)
    return np.zeros((2, 12, 3), np.float32), zeros, gclasses, zeros, gscores


@pytest.mark.parametrize(
    'kwargs,negatives',
    [
        ({}, 6 + 2),  # three per positive; image 1 has only 2 candidates
        ({'negative_ratio': 1.5}, 3 + 1),  # int(2 * 1.5), int(1 * 1.5)
        ({'negative_ratio': 10.0}, 10 + 2),  # every candidate
        ({'negative_threshold': 0.6}, 6 + 3),  # IoU 0.5 < 0.6: the three join image 1's candidates
    ],
)
def test_hard_negatives_are_three_per_positive_per_image(kwargs, negatives):
    total, terms = run_loss(*equal_loss_case(), **kwargs)
    # Normalised by the batch's 3 positives.
    np.testing.assert_allclose(terms['cross_entropy_pos'], np.log(3.0), rtol=1e-6)
    np.testing.assert_allclose(terms['cross_entropy_neg'], negatives * np.log(3.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(total, (3 + negatives) * np.log(3.0) / 3, rtol=1e-6)


def test_hard_negative_mask_keeps_the_highest_background_losses():
    case = random_case(np.random.RandomState(1))
    with tf.Graph().as_default(), v1.Session() as sess:
        logits, _, gclasses, _, gscores = case
        logp = tf.nn.log_softmax(tf.constant(logits))
        candidates = (gclasses == 0) & (gscores < 0.5)
        num_neg = np.minimum(3 * (gclasses > 0).sum(1), candidates.sum(1)).astype(np.int32)
        mask = sess.run(
            losses.hard_negative_mask(-logp[..., 0], tf.constant(candidates), tf.constant(num_neg))
        )
    np.testing.assert_array_equal(mask.sum(1), [12, 3, 0])
    np.testing.assert_array_equal(mask, numpy_loss(*case)[3])


def test_zero_positives_gives_finite_loss_and_min_negatives_option():
    rng = np.random.RandomState(2)
    case = random_case(rng, pos_per_image=(0, 0, 0))
    total, terms = run_loss(*case)
    assert np.isfinite(total) and total == 0.0
    total, terms = run_loss(*case, min_negatives=2)
    assert np.isfinite(total) and terms['cross_entropy_neg'] > 0


def test_focal_loss_equals_numpy():
    logits, locs, gclasses, glocs, gscores = random_case(np.random.RandomState(4))
    _, terms = run_loss(logits, locs, gclasses, glocs, gscores, focal_gamma=2.0, focal_alpha=0.25)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    pt = np.take_along_axis(p, gclasses[..., None], -1)[..., 0]
    pos = gclasses > 0
    neg = (~pos) & (gscores < 0.5)
    fl = -((1 - pt) ** 2) * np.log(pt) * np.where(pos, 0.25, 0.75)
    np.testing.assert_allclose(terms['cross_entropy_pos'], (fl * pos).sum() / pos.sum(), rtol=1e-5)
    np.testing.assert_allclose(terms['cross_entropy_neg'], (fl * neg).sum() / pos.sum(), rtol=1e-5)


def test_min_negatives_counts_per_image_up_to_the_candidates():
    """`min_negatives` (an SSD extension; Caffe has 0) is a floor on each image's negatives, never
    more than its candidates. All logits 0: each negative adds log(3). Image 0: 1 positive, 11
    candidates: max(3 * 1, 5) = 5 negatives. Image 1: no positive, 1 candidate (the other 11 have
    IoU 0.7): 1 negative. Normalised by the batch's 1 positive."""
    gclasses = np.zeros((2, 12), np.int64)
    gclasses[0, 0] = 2
    gscores = np.full((2, 12), 0.1, np.float32)
    gscores[0, 0] = 0.8
    gscores[1, 1:] = 0.7
    zeros = np.zeros((2, 12, 4), np.float32)
    logits = np.zeros((2, 12, 3), np.float32)
    for min_negatives, negatives in ((5, 5 + 1), (2, 3 + 1), (0, 3)):
        _, terms = run_loss(logits, zeros, gclasses, zeros, gscores, min_negatives=min_negatives)
        np.testing.assert_allclose(terms['cross_entropy_neg'], negatives * np.log(3.0), rtol=1e-6)
