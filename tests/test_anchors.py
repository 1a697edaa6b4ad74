"""Anchors against an independent, loop-by-loop transcription of Caffe's PriorBox::Forward_cpu."""
import math

import numpy as np
import pytest

from nets import nets_factory
from nets.ssd_params import ANCHOR_SIZE_PRESETS, anchor_size_preset


def caffe_prior_box(img_w, img_h, layer_w, layer_h, min_size, max_size, aspect_ratios, flip,
                    step, offset, clip, int_sizes=True):
    """Written after the C++ loop: returns [xmin, ymin, xmax, ymax] rows."""
    ars = [1.0]
    for ar in aspect_ratios:
        if any(abs(ar - a) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        if flip:
            ars.append(1.0 / ar)
    step_w = step if step else img_w / layer_w
    step_h = step if step else img_h / layer_h
    if int_sizes:
        min_size = int(min_size)
        max_size = int(max_size) if max_size else max_size
    out = []
    for h in range(layer_h):
        for w in range(layer_w):
            center_x = (w + offset) * step_w
            center_y = (h + offset) * step_h
            boxes = [(min_size, min_size)]
            if max_size:
                s = math.sqrt(min_size * max_size)
                boxes.append((s, s))
            for ar in ars:
                if abs(ar - 1.) < 1e-6:
                    continue
                boxes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
            for bw, bh in boxes:
                out.append([(center_x - bw / 2.) / img_w, (center_y - bh / 2.) / img_h,
                            (center_x + bw / 2.) / img_w, (center_y + bh / 2.) / img_h])
    out = np.array(out)
    return np.clip(out, 0, 1) if clip else out


def reference_anchors(params):
    img_h, img_w = params.img_shape
    steps = params.anchor_steps or [None] * len(params.feat_shapes)
    rows = [caffe_prior_box(img_w, img_h, fw, fh, sizes[0], sizes[1], ratios, True, step,
                            params.anchor_offset, params.anchor_clip, params.anchor_int_sizes)
            for (fh, fw), sizes, ratios, step in zip(params.feat_shapes, params.anchor_sizes,
                                                      params.anchor_ratios, steps)]
    xyxy = np.concatenate(rows)
    return xyxy[:, [1, 0, 3, 2]]


CASES = [(name, preset) for name, presets in ANCHOR_SIZE_PRESETS.items() for preset in presets]


@pytest.mark.parametrize('name,preset', CASES)
@pytest.mark.parametrize('int_sizes', [True, False])
def test_anchors_equal_caffe_prior_box(name, preset, int_sizes):
    cls = nets_factory.get_network(name)
    params = cls.default_params._replace(anchor_sizes=anchor_size_preset(name, preset),
                                         anchor_int_sizes=int_sizes)
    ours = cls(params).anchors()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_anchors(params), atol=1e-6, rtol=0)


@pytest.mark.parametrize('name,count', [('ssd_300_vgg', 8732), ('ssd_512_vgg', 24564),
                                        ('ssd_300_mobilenet', 1917)])
def test_anchor_counts(name, count):
    assert nets_factory.get_network(name)().anchors().shape == (count, 4)


def test_mobilenet_step_is_img_over_fmap_and_first_layer_has_three_boxes():
    anchors = nets_factory.get_network('ssd_300_mobilenet')().anchors()
    # conv11: 19x19 cells, 3 boxes each; cell (0, 1) centre is 1.5 * 300/19 px.
    first = anchors[3:6]
    cx = (first[:, 1] + first[:, 3]) / 2 * 300
    np.testing.assert_allclose(cx, 1.5 * 300 / 19, rtol=1e-5)
    h = (anchors[:3, 2] - anchors[:3, 0]) * 300
    np.testing.assert_allclose(h, [60, 60 / math.sqrt(2), 60 * math.sqrt(2)], rtol=1e-5)


def test_clip_and_int_truncation():
    cls = nets_factory.get_network('ssd_512_vgg')
    base = cls.default_params._replace(anchor_sizes=anchor_size_preset('ssd_512_vgg', 'caffe_coco'))
    clipped = cls(base._replace(anchor_clip=True)).anchors()
    assert clipped.min() >= 0 and clipped.max() <= 1
    # First box of the first layer: Caffe truncates 20.48 -> 20 px, OpenCV keeps 20.48.
    for int_sizes, side in ((True, 20.), (False, 20.48)):
        a = cls(base._replace(anchor_int_sizes=int_sizes)).anchors()[0]
        np.testing.assert_allclose((a[2] - a[0]) * 512, side, rtol=1e-5)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match='caffe_voc'):
        anchor_size_preset('ssd_300_vgg', 'nope')
