"""Training targets around COCO crowd regions: anchors that belong to a crowd region are neither
positives nor negatives and add nothing to the loss; without crowd regions the targets are
Caffe's, unchanged."""

import numpy as np
import tensorflow as tf

from nets import losses, nets_factory
from tests import data_fixtures as fx
from tests import numpy_reference as ref

v1 = tf.compat.v1

PERSON = [0.1, 0.1, 0.4, 0.4]
CROWD = [0.5, 0.5, 0.95, 0.95]
ANCHORS = np.array(
    [
        PERSON,  # 0: the person itself: positive
        CROWD,  # 1: the crowd region itself: matched to it -> ignored
        [0.55, 0.55, 0.75, 0.75],  # 2: inside the crowd, IoU 0.20 -> ignored (would be a negative)
        [0.0, 0.6, 0.1, 0.7],  # 3: overlaps nothing: a negative candidate
        [0.05, 0.05, 0.3, 0.3],  # 4: IoU 0.36 with the person only: a negative candidate
        [0.45, 0.45, 0.6, 0.6],  # 5: touches only the crowd (IoU 0.05) -> ignored
        [0.35, 0.35, 0.55, 0.55],  # 6: touches both, more the person (0.020 vs 0.010): a candidate
        [0.6, 0.6, 0.9, 0.9],  # 7: inside the crowd, IoU 0.44 -> ignored
        [0.5, 0.5, 0.9, 0.9],  # 8: IoU 0.79 with the crowd, matched to it -> ignored
    ],
    np.float32,
)
IGNORED = [1, 2, 5, 7, 8]


def run(fn):
    with tf.Graph().as_default(), v1.Session() as sess:
        return sess.run(fn())


def encode(crowd):
    net = nets_factory.get_network('ssd_300_vgg')()
    labels = np.array([1, 2], np.int64)
    boxes = np.array([PERSON, CROWD], np.float32)
    return run(
        lambda: net.bboxes_encode(
            tf.constant(labels),
            tf.constant(boxes),
            ANCHORS,
            0.5,
            crowd=None if crowd is None else tf.constant(crowd),
        )
    )


def test_anchors_of_a_crowd_region_are_ignored():
    gclasses, glocs, gscores = encode(np.array([0, 1]))
    np.testing.assert_array_equal(gclasses, [1, -1, -1, 0, 0, -1, 0, -1, -1])
    np.testing.assert_array_equal(glocs[IGNORED], 0.0)
    # Today's behaviour (--noignore_crowd): the crowd region is an ordinary object.
    plain, plain_locs, plain_scores = encode(None)
    np.testing.assert_array_equal(plain, [1, 2, 0, 0, 0, 0, 0, 0, 2])
    np.testing.assert_array_equal(gscores, plain_scores)
    keep = [0, 3, 4, 6]
    np.testing.assert_array_equal(glocs[keep], plain_locs[keep])


def test_without_crowd_regions_the_targets_are_caffes():
    net = nets_factory.get_network('ssd_300_mobilenet')()
    anchors = net.anchors()
    rng = np.random.RandomState(5)
    yx = rng.rand(6, 2) * 0.7
    boxes = np.concatenate([yx, yx + rng.rand(6, 2) * 0.3 + 0.01], 1).astype(np.float32)
    labels = np.array([3, 1, 2, 0, 5, 4], np.int64)  # one padding row
    with_flags = run(lambda: net.bboxes_encode(labels, boxes, crowd=tf.zeros([6], tf.int64)))
    without = run(lambda: net.bboxes_encode(labels, boxes))
    for a, b in zip(with_flags, without):
        np.testing.assert_array_equal(a, b)
    want, _ = ref.caffe_match(boxes, labels > 0, anchors, 0.5)
    np.testing.assert_array_equal(without[0], np.where(want >= 0, labels[np.maximum(want, 0)], 0))


def loss_and_gradients(logits, locs, gclasses, glocs, gscores):
    def build():
        lg, lc = tf.constant(logits), tf.constant(locs)
        total = losses.ssd_losses(
            lg, lc, tf.constant(gclasses), tf.constant(glocs), tf.constant(gscores)
        )
        return total, tf.gradients(total, [lg, lc])

    return run(build)


def test_ignored_anchors_contribute_nothing_to_the_loss():
    gclasses, glocs, gscores = encode(np.array([0, 1]))
    rng = np.random.RandomState(0)
    logits = rng.randn(1, len(ANCHORS), 3).astype(np.float32)
    logits[0, IGNORED, 0] = -8.0  # the highest background losses: hard negatives if they could be
    locs = rng.randn(1, len(ANCHORS), 4).astype(np.float32)
    total, (d_logits, d_locs) = loss_and_gradients(
        logits, locs, gclasses[None], glocs[None], gscores[None]
    )
    np.testing.assert_array_equal(d_logits[0, IGNORED], 0.0)
    np.testing.assert_array_equal(d_locs[0, IGNORED], 0.0)
    assert np.abs(d_logits[0, 0]).sum() > 0 and np.abs(d_locs[0, 0]).sum() > 0
    # The same loss as without those anchors at all: 1 positive, its 3 negatives among 3, 4, 6.
    keep = [i for i in range(len(ANCHORS)) if i not in IGNORED]
    alone, (d_alone, _) = loss_and_gradients(
        logits[:, keep], locs[:, keep], gclasses[None, keep], glocs[None, keep], gscores[None, keep]
    )
    assert total == alone
    assert (np.abs(d_alone[0]).sum(-1) > 0).all()

    # Focal loss too.
    def focal():
        return losses.ssd_losses(
            tf.constant(logits),
            tf.constant(locs),
            tf.constant(gclasses[None]),
            tf.constant(glocs[None]),
            tf.constant(gscores[None]),
            focal_gamma=2.0,
        )

    def focal_alone():
        return losses.ssd_losses(
            tf.constant(logits[:, keep]),
            tf.constant(locs[:, keep]),
            tf.constant(gclasses[None, keep]),
            tf.constant(glocs[None, keep]),
            tf.constant(gscores[None, keep]),
            focal_gamma=2.0,
        )

    assert np.isfinite(run(focal)) and run(focal) == run(focal_alone)


def test_training_input_carries_crowd_flags(tmp_path):
    """Records -> training batches: the crowd region's anchors come out -1 with ignore_crowd,
    as an ordinary class without it (augmentation off, so the boxes stay where they are)."""
    from datasets import dataset_factory
    from preprocessing import preprocessing_factory
    from training import input as train_input

    images = [('a.jpg', 1, fx.smooth_image(60, 80, 1), (80, 60))]
    categories = [{'id': 1, 'name': 'person'}, {'id': 7, 'name': 'traffic light'}]
    anns = [
        {
            'id': 1,
            'image_id': 1,
            'category_id': 1,
            'bbox': [4, 4, 30, 40],
            'area': 900,
            'iscrowd': 0,
        },
        {
            'id': 2,
            'image_id': 1,
            'category_id': 1,
            'bbox': [40, 2, 40, 56],
            'area': 2000,
            'iscrowd': 1,
        },
    ]
    ann_path, img_dir = fx.write_coco(str(tmp_path), images, categories, anns)
    fx.convert_coco(ann_path, img_dir, str(tmp_path / 'records'), output_name='train')
    dataset = dataset_factory.get_dataset('custom', 'train', str(tmp_path / 'records'))
    cls = nets_factory.get_network('ssd_300_mobilenet')
    net = cls(cls.default_params._replace(num_classes=3))
    options = dict(photometric_distortion=False, expand_prob=0.0, crop_min_ious=(), flip_prob=0.0)
    got = {}
    for ignore in (True, False):
        batches = train_input.train_dataset(
            dataset,
            preprocessing_factory.get_preprocessing('ssd_300_mobilenet'),
            net,
            1,
            seed=0,
            num_readers=1,
            preprocessing_options=options,
            ignore_crowd=ignore,
        )
        got[ignore] = next(iter(batches))['gclasses'].numpy()[0]
    with_flag, without = got[True], got[False]
    assert (without >= 0).all() and (with_flag == 1).sum() > 0
    assert (without[with_flag == 1] == 1).all()  # the person's anchors are unchanged
    ignored = with_flag == -1
    # Without the flag the crowd region is a person: its matched anchors are ignored with it,
    # and so are anchors whose best overlap is with it (background without the flag).
    assert (without[ignored] == 1).sum() >= 1 and (without[ignored] == 0).sum() >= 1
    assert (without == 1).sum() == (with_flag == 1).sum() + (without[ignored] == 1).sum()


def test_anchors_overlapping_nothing_stay_negatives_when_the_crowd_comes_first():
    """An anchor that overlaps no ground truth belongs to none (its best IoU is 0): with the
    crowd region as ground truth 0, anchor 3 is still a negative, not ignored."""
    net = nets_factory.get_network('ssd_300_vgg')()
    gclasses, glocs, _ = run(
        lambda: net.bboxes_encode(
            tf.constant([2, 1], tf.int64),
            tf.constant([CROWD, PERSON], tf.float32),
            ANCHORS,
            0.5,
            crowd=tf.constant([1, 0]),
        )
    )
    np.testing.assert_array_equal(gclasses, [1, -1, -1, 0, 0, -1, 0, -1, -1])
    np.testing.assert_array_equal(glocs[IGNORED], 0.0)
