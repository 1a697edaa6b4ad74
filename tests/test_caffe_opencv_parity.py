"""Issue #7: Caffe SSD models converted by caffe_to_tensorflow equal OpenCV's Caffe implementation.

For each net (VGG16 SSD300 VOC, VGG16 SSD512 with COCO's non-integer prior sizes, MobileNet-SSD
with merged BatchNorm and with separate BatchNorm + Scale) a seeded random caffemodel and its
deploy prototxt are generated, OpenCV (`cv2.dnn.readNetFromCaffe`) runs them on a photo-like
image, the converter writes our checkpoint and our net runs on exactly the same input blob
(BGR -> RGB, NCHW -> NHWC). Priors, raw loc codes and class logits must match, and so must
every detection, both with a high threshold and no top-k limits and with the deploy's own
DetectionOutput settings (top_k per class, keep_top_k per image).
"""

import os

import numpy as np
import pytest

from converters import caffe_convert
from model import card as card_lib
from tests import caffe_fixtures
from converters import prototxt
from nets import nets_factory

CASES = caffe_fixtures.PARITY_NETS
NUM_CLASSES = 21
NO_LIMIT = 20000
STRICT_THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
MIN_STRICT_DETECTIONS = 20
OUTPUTS = ['mbox_loc', 'mbox_conf', 'mbox_priorbox', 'detection_out']


def _opencv_detections(out):
    """OpenCV's [1, 1, K, 7] rows (image, label, score, xmin, ymin, xmax, ymax) -> arrays."""
    rows = out.reshape(-1, 7)
    rows = rows[rows[:, 1] >= 1]
    return rows[:, 1].astype(int), rows[:, 2], rows[:, [4, 3, 6, 5]]


def _our_detections(dets):
    n = int(dets['num_detections'][0])
    return (
        dets['detection_classes'][0, :n],
        dets['detection_scores'][0, :n],
        dets['detection_boxes'][0, :n],
    )


def _match(ref, ours, tol=1e-3):
    """Pairs every reference detection with one of ours (same class, score and box within tol).

    Returns the list of unmatched reference detections and the count of ours left over.
    """
    ref_cls, ref_scores, ref_boxes = ref
    cls, scores, boxes = ours
    used = np.zeros(len(cls), bool)
    unmatched = []
    for c, s, b in zip(ref_cls, ref_scores, ref_boxes):
        ok = (
            ~used
            & (cls == c)
            & (np.abs(scores - s) <= tol)
            & np.all(np.abs(boxes - b) <= tol, axis=1)
        )
        if not ok.any():
            unmatched.append((int(c), float(s), b.tolist()))
            continue
        candidates = np.flatnonzero(ok)
        best = candidates[np.argmin(np.abs(scores[candidates] - s))]
        used[best] = True
    return unmatched, int((~used).sum())


@pytest.fixture(scope='module', params=list(CASES))
def case(request, tmp_path_factory):
    """Generate, run OpenCV, convert, run ours; everything the tests compare."""
    name = request.param
    model_name, make, size, mean, scale = CASES[name]
    net = make()
    image = caffe_fixtures.photo_like_image(size, size, seed=7)
    blob = caffe_fixtures.opencv_blob(image, (size, size), mean, scale)
    caffe_fixtures.calibrate_heads(net, blob)
    directory = str(tmp_path_factory.mktemp(name))
    proto_path, model_path = caffe_fixtures.write_net(net, directory, name)
    detection = dict(
        caffe_fixtures.MOBILENET_DETECTION if 'mobilenet' in name else caffe_fixtures.VGG_DETECTION
    )
    # No top-k limits, several thresholds (in one forward pass): the test uses the highest one
    # that leaves enough detections to compare. OpenCV 4.14 crashes on keep_top_k: -1, so it
    # gets a bound above any possible count instead.
    extra = [
        caffe_fixtures.detection_output_layer(
            'detection_strict_%d' % i,
            NUM_CLASSES,
            {
                'nms_threshold': detection['nms_threshold'],
                'top_k': -1,
                'keep_top_k': NO_LIMIT,
                'confidence_threshold': threshold,
            },
        )
        for i, threshold in enumerate(STRICT_THRESHOLDS)
    ]
    names = OUTPUTS + ['detection_strict_%d' % i for i in range(len(STRICT_THRESHOLDS))]
    cv = caffe_fixtures.opencv_forward(
        net, blob, names, prototxt_text=net.prototxt + prototxt.to_text(extra)
    )
    counts = [
        len(_opencv_detections(cv['detection_strict_%d' % i])[0])
        for i in range(len(STRICT_THRESHOLDS))
    ]
    strict_index = max(i for i, n in enumerate(counts) if n >= MIN_STRICT_DETECTIONS)
    strict = STRICT_THRESHOLDS[strict_index]
    cv['detection_strict'] = cv['detection_strict_%d' % strict_index]

    ckpt = os.path.join(directory, 'model.ckpt')
    result = caffe_convert.convert(
        model_path, ckpt, model_name, prototxt_path=proto_path, log=lambda line: None
    )
    config = result.config
    card = card_lib.load(result.config_path)
    det = config['detection']
    # OpenCV keeps non-integer prior sizes (SSD512-COCO's 20.48); Caffe truncates them. The
    # converted JSON says Caffe (true); compare with OpenCV using its convention.
    ours = caffe_fixtures.our_forward(
        ckpt,
        card,
        blob,
        detections=[
            (det['confidence_threshold'], det['nms_threshold'], det['top_k'], det['keep_top_k']),
            (strict, det['nms_threshold'], -1, -1),
        ],
    )
    cls = nets_factory.get_network(card.model_name)
    params = card.params
    return {
        'name': name,
        'cv': cv,
        'ours': ours,
        'anchors': ours['anchors'],
        'params': params,
        'config': config,
        'result': result,
        'detection': detection,
        'net': net,
        'ssd_caffe_sizes': cls(params).anchors(),
        'strict': strict,
    }


def test_conversion_maps_every_caffe_layer(case):
    result = case['result']
    assert result.problems == [] and result.conversion.unmapped == []
    with_blobs = {l.name for l in case['net'].layers}
    assert {row.caffe_name for row in result.conversion.mapped} == with_blobs


def test_priors_equal_opencv(case):
    priors = case['cv']['mbox_priorbox'].reshape(2, -1, 4)
    xyxy, variances = priors[0], priors[1]
    assert case['anchors'].shape == xyxy.shape
    np.testing.assert_allclose(case['anchors'], xyxy[:, [1, 0, 3, 2]], rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        variances, np.tile(case['params'].prior_scaling, (len(xyxy), 1)), atol=1e-7
    )


def test_caffe_int_sizes_differ_only_for_non_integer_priors(case):
    """Caffe truncates prior sizes: the JSON keeps Caffe's convention (anchor_int_sizes true),
    which only SSD512-COCO's 20.48 / 51.2 / ... sizes make different from OpenCV's floats."""
    assert case['config']['ssd_params']['anchor_int_sizes'] is True
    diff = np.abs(case['ssd_caffe_sizes'] - case['anchors']).max()
    if case['name'] == 'vgg512':
        assert diff > 1e-4
    else:
        assert diff < 1e-6


def test_loc_and_conf_logits_equal_opencv(case):
    cv, ours = case['cv'], case['ours']
    n = len(case['anchors'])
    loc_ref = cv['mbox_loc'].reshape(n, 4)
    conf_ref = cv['mbox_conf'].reshape(n, -1)
    loc_err = np.abs(ours['loc'] - loc_ref).max() / np.abs(loc_ref).max()
    conf_err = np.abs(ours['logits'] - conf_ref).max() / np.abs(conf_ref).max()
    assert loc_err <= 1e-4, loc_err
    assert conf_err <= 1e-4, conf_err
    # The fixtures are not degenerate: the heads spread out (see caffe_testing).
    assert np.std(conf_ref) > 1.0 and np.std(loc_ref) > 0.2


def test_detections_equal_opencv_without_top_k(case):
    ref = _opencv_detections(case['cv']['detection_strict'])
    ours = _our_detections(case['ours']['detections'][1])
    assert len(ref[0]) >= MIN_STRICT_DETECTIONS
    unmatched, extra = _match(ref, ours)
    assert unmatched == [] and extra == 0, (unmatched[:5], extra)


def test_detections_equal_opencv_with_deploy_top_k(case):
    """The deploy's thresholds: top_k per class before NMS and keep_top_k per image bind."""
    ref = _opencv_detections(case['cv']['detection_out'])
    ours = _our_detections(case['ours']['detections'][0])
    assert len(ref[0]) == case['detection']['keep_top_k']
    assert case['config']['detection'] == case['detection']
    unmatched, extra = _match(ref, ours)
    assert unmatched == [] and extra == 0, (unmatched[:5], extra)
