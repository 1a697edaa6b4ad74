"""Converted PyTorch SSD300s against PyTorch itself: torchvision's ssd300_vgg16 (COCO, 91 ids)
and ssd.pytorch's SSD300 (VOC, 21 classes).

The cross-check (scripts/pytorch_crosscheck.py, run with torch) ran each source network on three
photos with the seeded weights of tests/pytorch_fixtures.py and stored its outputs. Here the same
weights are regenerated, written as a full-size .pth (zip for torchvision, a legacy GPU-tagged
file for ssd.pytorch, as those projects' files are), converted with pytorch_convert.convert, and
our net, built from the written model card alone, must give the same anchors, per-anchor box
codes, class logits and probabilities (<= 1e-4 relative to the output's scale) and the same
detections (every one matched: label, score, box).
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from converters import pytorch_convert
from model import card as card_lib
from nets import post_processing
from nets import ssd_common
from tests import pytorch_fixtures as fx

v1 = tf.compat.v1
REL_TOL = 1e-4
SOURCES = ('torchvision_ssd300', 'ssd_pytorch_ssd300')


def _normalised(card, images):
    rgb = np.stack([img for _, img in images]).astype(np.float32)
    return (rgb - np.asarray(card.mean_rgb, np.float32)) * np.float32(card.scale)


def _run_ours(checkpoint, card, clip_boxes, inputs):
    """Our net from the card: flat logits, probabilities, codes and detections."""
    with tf.Graph().as_default():
        ssd = card.net()
        x = v1.placeholder(tf.float32, [None] + list(card.input_shape) + [3])
        with slim.arg_scope(ssd.arg_scope(data_format='NHWC')):
            predictions, localisations, logits, _ = ssd.net(x, is_training=False)
        d = card.detection
        dets = post_processing.detected_bboxes(
            ssd_common.flatten_layers(predictions),
            ssd_common.flatten_layers(localisations),
            ssd.anchors(),
            d.select_threshold,
            d.nms_threshold,
            d.top_k,
            d.keep_top_k,
            clip=clip_boxes,
            prior_scaling=ssd.params.prior_scaling,
        )
        fetch = {
            'logits': ssd_common.flatten_layers(logits),
            'probs': ssd_common.flatten_layers(predictions),
            'codes': ssd_common.flatten_layers(localisations),
            'dets': dets,
        }
        with v1.Session() as sess:
            v1.train.Saver().restore(sess, checkpoint)
            out = sess.run(fetch, {x: inputs})
        out['anchors'] = ssd.anchors()
    return out


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """source -> (card, clip_boxes, our outputs on the photos, the PyTorch outputs)."""
    root = tmp_path_factory.mktemp('pytorch_parity')
    images = fx.load_photos()
    meta = fx.load_meta()
    results = {}
    for source in SOURCES:
        state_dict = fx.SOURCES[source](fx.SEED)
        # The regenerated weights are the ones PyTorch ran (numpy's stream has not changed).
        assert fx.checksums(state_dict) == meta['sources'][source]['checksums']
        pth = str(root / (source + '.pth'))
        legacy = source == 'ssd_pytorch_ssd300'
        fx.write_pth(state_dict, pth, legacy=legacy, location='cuda:0' if legacy else 'cpu')
        del state_dict
        ckpt = str(root / source / 'model.ckpt')
        result = pytorch_convert.convert(pth, ckpt, log=lambda *_: None)
        os.remove(pth)
        card = card_lib.load(result.config_path)
        clip = card.detection.clip
        assert clip == (source == 'torchvision_ssd300')  # torchvision clips, ssd.pytorch not
        ours = _run_ours(ckpt, card, clip, _normalised(card, images))
        results[source] = (card, clip, ours, fx.load_outputs(source))
    return results


def _rel_err(ours, theirs):
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-12))


def test_cards_describe_the_sources(converted):
    card, clip, _, _ = converted['torchvision_ssd300']
    assert card.num_classes == 91 and card.class_names[:3] == ('person', 'bicycle', 'car')
    assert card.class_names[11] == 'unused_12'
    np.testing.assert_allclose(card.mean_rgb, [122.99925, 116.9991, 103.9992], rtol=1e-7)
    assert (card.params.anchor_clip, card.params.anchor_int_sizes) == ('size', False)
    assert (card.detection.top_k, card.detection.keep_top_k) == (400, 200) and clip
    card, clip, _, _ = converted['ssd_pytorch_ssd300']
    assert card.num_classes == 21 and card.class_names[-1] == 'tvmonitor'
    assert card.mean_rgb == (123.0, 117.0, 104.0) and card.params.anchor_clip == 'center_size'
    assert (card.detection.top_k, card.detection.keep_top_k) == (200, 0) and not clip


def test_anchors_equal_the_sources(converted):
    _, _, ours, theirs = converted['torchvision_ssd300']
    tv = theirs['anchors_xyxy_pixels'][:, [1, 0, 3, 2]] / 300.0
    np.testing.assert_allclose(ours['anchors'], tv, atol=1e-6, rtol=0)
    _, _, ours, theirs = converted['ssd_pytorch_ssd300']
    c = theirs['priors_cxcywh']
    sp = np.stack(
        [
            c[:, 1] - c[:, 3] / 2,
            c[:, 0] - c[:, 2] / 2,
            c[:, 1] + c[:, 3] / 2,
            c[:, 0] + c[:, 2] / 2,
        ],
        axis=1,
    )
    np.testing.assert_allclose(ours['anchors'], sp, atol=1e-6, rtol=0)


@pytest.mark.parametrize('source', SOURCES)
def test_per_anchor_outputs_equal_pytorch(converted, source):
    _, _, ours, theirs = converted[source]
    step = fx.load_meta()['subset_step']
    for b, name in enumerate(fx.PHOTOS):
        codes = ours['codes'][b]
        assert codes.shape == theirs[name + '/codes'].shape == (8732, 4)
        assert _rel_err(codes, theirs[name + '/codes']) <= REL_TOL, name
        assert _rel_err(ours['logits'][b][::step], theirs[name + '/logits_subset']) <= REL_TOL
        probs = ours['probs'][b]
        assert np.max(np.abs(probs[:, 0] - theirs[name + '/prob_background'])) <= REL_TOL
        assert (
            np.max(np.abs(probs[:, 1:].max(axis=1) - theirs[name + '/prob_best_foreground']))
            <= REL_TOL
        )
        # The best class agrees wherever it is not a near-tie.
        top2 = np.sort(probs[:, 1:], axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-5
        np.testing.assert_array_equal(
            (probs[:, 1:].argmax(axis=1) + 1)[clear], theirs[name + '/best_foreground_class'][clear]
        )


def _their_detections(source, theirs, name):
    scores = theirs[name + '/det_scores']
    labels = theirs[name + '/det_labels'].astype(np.int64)
    if source == 'torchvision_ssd300':
        boxes = theirs[name + '/det_boxes_xyxy_pixels'] / 300.0
    else:
        boxes = theirs[name + '/det_boxes_xyxy_relative']
    return scores, labels, boxes[:, [1, 0, 3, 2]]


@pytest.mark.parametrize('source', SOURCES)
def test_detections_equal_pytorch(converted, source):
    _, _, ours, theirs = converted[source]
    dets = ours['dets']
    for b, name in enumerate(fx.PHOTOS):
        scores, labels, boxes = _their_detections(source, theirs, name)
        n = int(dets['num_detections'][b])
        assert n == len(scores), (name, n, len(scores))
        our_scores = dets['detection_scores'][b][:n]
        our_labels = dets['detection_classes'][b][:n].astype(np.int64)
        our_boxes = dets['detection_boxes'][b][:n]
        unmatched = []
        free = np.ones(n, bool)
        for score, label, box in zip(scores, labels, boxes):
            candidates = np.flatnonzero(
                free
                & (our_labels == label)
                & (np.abs(our_scores - score) <= REL_TOL * score)
                & (np.max(np.abs(our_boxes - box), axis=1) <= REL_TOL)
            )
            if len(candidates) == 0:
                unmatched.append((float(score), int(label), box.tolist()))
                continue
            free[candidates[0]] = False
        assert not unmatched, '%s: %d of %d PyTorch detections unmatched, e.g. %s' % (
            name,
            len(unmatched),
            len(scores),
            unmatched[:3],
        )
