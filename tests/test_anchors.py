"""Anchors against an independent, loop-by-loop transcription of Caffe's PriorBox::Forward_cpu,
and against the published Caffe prototxt numbers, pinned here (not read from `nets.ssd_params`)."""

import math

import numpy as np
import pytest

from nets import anchors as anchors_lib
from nets import nets_factory
from nets.ssd_params import ANCHOR_SIZE_PRESETS, anchor_size_preset


def caffe_prior_box(
    img_w,
    img_h,
    layer_w,
    layer_h,
    min_size,
    max_size,
    aspect_ratios,
    flip,
    step,
    offset,
    clip,
    int_sizes=True,
):
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
                if abs(ar - 1.0) < 1e-6:
                    continue
                boxes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
            for bw, bh in boxes:
                out.append(
                    [
                        (center_x - bw / 2.0) / img_w,
                        (center_y - bh / 2.0) / img_h,
                        (center_x + bw / 2.0) / img_w,
                        (center_y + bh / 2.0) / img_h,
                    ]
                )
    out = np.array(out)
    return np.clip(out, 0, 1) if clip else out


def reference_anchors(params):
    img_h, img_w = params.img_shape
    steps = params.anchor_steps or [None] * len(params.feat_shapes)
    rows = [
        caffe_prior_box(
            img_w,
            img_h,
            fw,
            fh,
            sizes[0],
            sizes[1],
            ratios,
            True,
            step,
            params.anchor_offset,
            params.anchor_clip,
            params.anchor_int_sizes,
        )
        for (fh, fw), sizes, ratios, step in zip(
            params.feat_shapes, params.anchor_sizes, params.anchor_ratios, steps
        )
    ]
    xyxy = np.concatenate(rows)
    return xyxy[:, [1, 0, 3, 2]]


CASES = [(name, preset) for name, presets in ANCHOR_SIZE_PRESETS.items() for preset in presets]


@pytest.mark.parametrize('name,preset', CASES)
@pytest.mark.parametrize('int_sizes', [True, False])
def test_anchors_equal_caffe_prior_box(name, preset, int_sizes):
    cls = nets_factory.get_network(name)
    params = cls.default_params._replace(
        anchor_sizes=anchor_size_preset(name, preset), anchor_int_sizes=int_sizes
    )
    ours = cls(params).anchors()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference_anchors(params), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    'name,count', [('ssd_300_vgg', 8732), ('ssd_512_vgg', 24564), ('ssd_300_mobilenet', 1917)]
)
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
    for int_sizes, side in ((True, 20.0), (False, 20.48)):
        a = cls(base._replace(anchor_int_sizes=int_sizes)).anchors()[0]
        np.testing.assert_allclose((a[2] - a[0]) * 512, side, rtol=1e-5)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match='caffe_voc'):
        anchor_size_preset('ssd_300_vgg', 'nope')


# The published Caffe deploy prototxts, per PriorBox layer: (source, feature map (h, w),
# min_size, max_size or None, aspect_ratio list (flip: true), step or None when the prototxt
# sets none). Typed in from weiliu89/caffe's models and chuanqi305's MobileNet-SSD, not from
# nets/ssd_params.py: a typo there must not be copied into the reference.
PUBLISHED = {
    'ssd_300_vgg': {  # VGG_VOC0712_SSD_300x300 deploy.prototxt
        'img_shape': (300, 300),
        'count': 8732,
        'layers': [
            ('conv4_3_norm', (38, 38), 30, 60, (2,), 8),
            ('fc7', (19, 19), 60, 111, (2, 3), 16),
            ('conv6_2', (10, 10), 111, 162, (2, 3), 32),
            ('conv7_2', (5, 5), 162, 213, (2, 3), 64),
            ('conv8_2', (3, 3), 213, 264, (2,), 100),
            ('conv9_2', (1, 1), 264, 315, (2,), 300),
        ],
    },
    'ssd_512_vgg': {  # VGG_VOC0712_SSD_512x512 deploy.prototxt
        'img_shape': (512, 512),
        'count': 24564,
        'layers': [
            ('conv4_3_norm', (64, 64), 35.84, 76.8, (2,), 8),
            ('fc7', (32, 32), 76.8, 153.6, (2, 3), 16),
            ('conv6_2', (16, 16), 153.6, 230.4, (2, 3), 32),
            ('conv7_2', (8, 8), 230.4, 307.2, (2, 3), 64),
            ('conv8_2', (4, 4), 307.2, 384.0, (2, 3), 128),
            ('conv9_2', (2, 2), 384.0, 460.8, (2,), 256),
            ('conv10_2', (1, 1), 460.8, 537.6, (2,), 512),
        ],
    },
    'ssd_300_mobilenet': {  # MobileNet-SSD deploy.prototxt: no step anywhere
        'img_shape': (300, 300),
        'count': 1917,
        'layers': [
            ('conv11', (19, 19), 60, None, (2,), None),
            ('conv13', (10, 10), 105, 150, (2, 3), None),
            ('conv14_2', (5, 5), 150, 195, (2, 3), None),
            ('conv15_2', (3, 3), 195, 240, (2, 3), None),
            ('conv16_2', (2, 2), 240, 285, (2, 3), None),
            ('conv17_2', (1, 1), 285, 300, (2, 3), None),
        ],
    },
}
# The other presets: SSD512 COCO (VGG_coco_SSD_512x512) and the older TF port's SSD300 sizes.
PUBLISHED_PRESETS = {
    ('ssd_512_vgg', 'caffe_coco'): [
        (20.48, 51.2),
        (51.2, 133.12),
        (133.12, 215.04),
        (215.04, 296.96),
        (296.96, 378.88),
        (378.88, 460.8),
        (460.8, 542.72),
    ],
    ('ssd_300_vgg', 'tf_port_coco'): [
        (21, 45),
        (45, 99),
        (99, 153),
        (153, 207),
        (207, 261),
        (261, 315),
    ],
}


def prior_box(
    img_h,
    img_w,
    layer_h,
    layer_w,
    min_sizes,
    max_sizes,
    aspect_ratios,
    flip=True,
    step=None,
    step_h=None,
    step_w=None,
    offset=0.5,
    clip=False,
    int_sizes=True,
):
    """Caffe's PriorBoxLayer (LayerSetUp + Forward_cpu), with every height and width kept apart
    as Caffe keeps them. Sizes are lists (Caffe's repeated min_size / max_size). Returns
    [layer_h * layer_w * num_priors, 4] rows [xmin, ymin, xmax, ymax] (Caffe's output order)."""
    # LayerSetUp: aspect_ratios_ = [1] + each new ratio (and its flip).
    ratios = [1.0]
    for ar in aspect_ratios:
        if any(abs(ar - seen) < 1e-6 for seen in ratios):
            continue
        ratios.append(float(ar))
        if flip:
            ratios.append(1.0 / ar)
    if step_h or step_w:
        step_h_, step_w_ = step_h, step_w
    elif step:
        step_h_ = step_w_ = step
    else:
        step_h_ = step_w_ = 0
    # Forward_cpu.
    if step_w_ == 0 or step_h_ == 0:
        step_w_, step_h_ = img_w / layer_w, img_h / layer_h
    rows = []
    for h in range(layer_h):
        for w in range(layer_w):
            center_x = (w + offset) * step_w_
            center_y = (h + offset) * step_h_
            for s, min_size in enumerate(min_sizes):
                min_size = int(min_size) if int_sizes else min_size
                boxes = [(min_size, min_size)]
                if max_sizes:
                    max_size = int(max_sizes[s]) if int_sizes else max_sizes[s]
                    boxes.append((math.sqrt(min_size * max_size),) * 2)
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    boxes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
                for box_w, box_h in boxes:
                    rows.append(
                        [
                            (center_x - box_w / 2.0) / img_w,
                            (center_y - box_h / 2.0) / img_h,
                            (center_x + box_w / 2.0) / img_w,
                            (center_y + box_h / 2.0) / img_h,
                        ]
                    )
    rows = np.array(rows)
    return np.clip(rows, 0.0, 1.0) if clip else rows


def prior_box_net(img_shape, layers):
    """mbox_priorbox of a net (Concat of its PriorBox layers) in our [ymin, xmin, ymax, xmax]."""
    rows = [
        prior_box(
            img_shape[0],
            img_shape[1],
            fmap[0],
            fmap[1],
            [min_size],
            [max_size] if max_size else [],
            ratios,
            step=step,
        )
        for _, fmap, min_size, max_size, ratios, step in layers
    ]
    return np.concatenate(rows)[:, [1, 0, 3, 2]]


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_default_params_are_the_published_prototxt(name):
    published = PUBLISHED[name]
    params = nets_factory.get_network(name).default_params
    layers = published['layers']
    assert tuple(params.img_shape) == published['img_shape']
    assert [tuple(s) for s in params.feat_shapes] == [fmap for _, fmap, _, _, _, _ in layers]
    assert [tuple(s) for s in params.anchor_sizes] == [(lo, hi) for _, _, lo, hi, _, _ in layers]
    assert [tuple(r) for r in params.anchor_ratios] == [r for _, _, _, _, r, _ in layers]
    steps = [step for _, _, _, _, _, step in layers]
    assert (list(params.anchor_steps) if params.anchor_steps else [None] * len(layers)) == steps
    assert (params.anchor_offset, params.anchor_clip, params.anchor_int_sizes) == (0.5, False, True)
    assert tuple(params.prior_scaling) == (0.1, 0.1, 0.2, 0.2)


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_default_anchors_are_the_published_prior_boxes(name):
    published = PUBLISHED[name]
    ours = nets_factory.get_network(name)().anchors()
    want = prior_box_net(published['img_shape'], published['layers'])
    assert ours.shape == want.shape == (published['count'], 4)
    np.testing.assert_allclose(ours, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize('name,preset', sorted(PUBLISHED_PRESETS))
def test_other_presets_are_the_published_sizes(name, preset):
    assert [tuple(s) for s in anchor_size_preset(name, preset)] == PUBLISHED_PRESETS[name, preset]


def test_prior_box_reference_against_hand_computed_rectangular_cells():
    """The reference itself: a 2x3 map on a 300x500 image, no step (50 x 166.67 px cells)."""
    rows = prior_box(300, 500, 2, 3, [60], [], [2])
    assert rows.shape == (2 * 3 * 3, 4)
    # Cell (h=1, w=2), first prior (60 x 60 px): centre (2.5 * 500/3, 1.5 * 150) px.
    cx, cy = 2.5 * 500 / 3, 1.5 * 150
    np.testing.assert_allclose(
        rows[5 * 3],
        [(cx - 30) / 500, (cy - 30) / 300, (cx + 30) / 500, (cy + 30) / 300],
        rtol=1e-12,
    )
    # Its 2:1 prior: 60*sqrt(2) wide, 60/sqrt(2) high; separate steps step_h=100, step_w=80.
    rows = prior_box(300, 500, 2, 3, [60], [], [2], step_h=100, step_w=80)
    w, h = 60 * math.sqrt(2), 60 / math.sqrt(2)
    np.testing.assert_allclose(
        rows[5 * 3 + 1],
        [(200 - w / 2) / 500, (150 - h / 2) / 300, (200 + w / 2) / 500, (150 + h / 2) / 300],
        rtol=1e-12,
    )


# Non-square inputs (height x width) and their feature maps, worked out by hand from each layer's
# kernel, stride and padding (Caffe's pooling rounds up): VGG 300x500 pools 500 -> 250, 125, 63,
# 32, extras 16, 8, then the unpadded 3x3 convs 6, 4; MobileNet halves with rounding up.
NON_SQUARE = {
    ('ssd_300_vgg', (300, 500)): ((38, 63), (19, 32), (10, 16), (5, 8), (3, 6), (1, 4)),
    ('ssd_300_mobilenet', (300, 500)): ((19, 32), (10, 16), (5, 8), (3, 4), (2, 2), (1, 1)),
    ('ssd_512_vgg', (512, 384)): ((64, 48), (32, 24), (16, 12), (8, 6), (4, 3), (2, 2), (1, 1)),
    ('ssd_300_mobilenet', (512, 384)): ((32, 24), (16, 12), (8, 6), (4, 3), (2, 2), (1, 1)),
}


def non_square_params(name, img_shape, anchor_steps=None):
    """The published net at another input size: its feature shapes, steps img / fmap per axis
    (PriorBox without `step`, as Caffe's MobileNet-SSD) unless given."""
    params = nets_factory.get_network(name).default_params
    return params._replace(
        img_shape=img_shape, feat_shapes=NON_SQUARE[name, img_shape], anchor_steps=anchor_steps
    )


@pytest.mark.parametrize('name,img_shape', sorted(NON_SQUARE))
def test_non_square_anchors_equal_caffe_prior_box(name, img_shape):
    cls = nets_factory.get_network(name)
    params = non_square_params(name, img_shape)
    published = PUBLISHED[name]['layers']
    layers = [
        (source, fmap, lo, hi, ratios, None)
        for (source, _, lo, hi, ratios, _), fmap in zip(published, params.feat_shapes)
    ]
    want = prior_box_net(img_shape, layers)
    np.testing.assert_allclose(cls(params).anchors(), want, atol=1e-6, rtol=0)
    # The public img_shape argument: the same net's anchors for an input given at call time.
    square = cls(params._replace(img_shape=PUBLISHED[name]['img_shape']))
    np.testing.assert_allclose(square.anchors(img_shape=img_shape), want, atol=1e-6, rtol=0)


def test_non_square_anchors_with_the_published_fixed_steps():
    """VGG300 keeps its prototxt steps (8, 16, ... px on both axes) on a 300x500 input."""
    params = non_square_params('ssd_300_vgg', (300, 500), anchor_steps=(8, 16, 32, 64, 100, 300))
    layers = [
        (source, fmap, lo, hi, ratios, step)
        for (source, _, lo, hi, ratios, step), fmap in zip(
            PUBLISHED['ssd_300_vgg']['layers'], params.feat_shapes
        )
    ]
    np.testing.assert_allclose(
        nets_factory.get_network('ssd_300_vgg')(params).anchors(),
        prior_box_net((300, 500), layers),
        atol=1e-6,
        rtol=0,
    )


def test_non_square_anchor_centres_and_sizes_by_hand():
    """MobileNet at 300x500, conv11 (19 x 32 cells, 3 priors each): cells are 300/19 px high and
    500/32 px wide; the 60 px prior is 60/300 high and 60/500 wide."""
    anchors = (
        nets_factory.get_network('ssd_300_mobilenet')(
            non_square_params('ssd_300_mobilenet', (300, 500))
        )
        .anchors()
        .astype(np.float64)
    )
    cy = (anchors[:, 0] + anchors[:, 2]) / 2
    cx = (anchors[:, 1] + anchors[:, 3]) / 2
    # Cell (row 0, column 1) starts at prior 3; cell (row 1, column 0) at prior 32 * 3.
    np.testing.assert_allclose([cy[3], cx[3]], [0.5 / 19, 1.5 / 32], rtol=1e-6)
    np.testing.assert_allclose([cy[96], cx[96]], [1.5 / 19, 0.5 / 32], rtol=1e-6)
    np.testing.assert_allclose(
        [anchors[0, 2] - anchors[0, 0], anchors[0, 3] - anchors[0, 1]],
        [60 / 300, 60 / 500],
        rtol=1e-6,
    )
    assert len(anchors) == 19 * 32 * 3 + 10 * 16 * 6 + 5 * 8 * 6 + 3 * 4 * 6 + 2 * 2 * 6 + 6


@pytest.mark.parametrize('offset', [0.0, 0.25])
def test_other_offsets_and_repeated_ratios_equal_caffe_prior_box(offset):
    """`anchor_offset` other than 0.5 moves every centre (Caffe's PriorBox `offset`), and a
    ratio given twice, 1 itself or both r and 1/r adds no prior (Caffe skips ratios within 1e-6 of
    one it has), on both axes of a non-square input."""
    params = nets_factory.get_network('ssd_300_mobilenet').default_params._replace(
        img_shape=(300, 500),
        feat_shapes=((3, 4), (2, 3)),
        anchor_sizes=((60.0, 105.0), (150.0, None)),
        anchor_ratios=((2.0, 2.0, 1.0, 0.5), (3.0, 1.0 / 3.0, 2.0)),
        anchor_steps=None,
        anchor_offset=offset,
    )
    ours = anchors_lib.ssd_anchors(params)
    assert len(ours) == 3 * 4 * 4 + 2 * 3 * 5
    np.testing.assert_allclose(ours, reference_anchors(params), atol=1e-6, rtol=0)
    assert [
        anchors_lib.num_anchors_per_location(s, r)
        for s, r in zip(params.anchor_sizes, params.anchor_ratios)
    ] == [4, 5]


def test_center_size_clip_clamps_row_and_column_centres():
    """ssd.pytorch's PriorBox clamps cx and cy: a 10x10 layer with step 32 puts its last row and
    column at 304 px, clamped to 300 (1.0); 'size' keeps 304 / 300 on both axes."""
    for clip, last in (('center_size', 1.0), ('size', 304.0 / 300.0)):
        boxes = anchors_lib.layer_anchors((300, 300), (10, 10), (60, 111), [2], 32, 0.5, clip)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        # The last cell (row 9, column 9) holds the last 4 priors; cell (9, 0) starts at 90 * 4.
        np.testing.assert_allclose(centres[-4:], [[last, last]] * 4, atol=1e-12)
        np.testing.assert_allclose(centres[360], [last, 16.0 / 300.0], atol=1e-12)
