"""The numbers that define an SSD net: the one record every variant fills in.

`SSDParams` keeps the older TF port's field names (`feat_layers`, `feat_shapes`, `anchor_sizes`,
`anchor_ratios`, `anchor_steps`, `anchor_offset`, `normalizations`, `prior_scaling`) and adds what
Caffe's PriorBox and the backbones need. Sizes are in pixels of the input image.
"""

import collections
import math

from tf_extended import texts

SSDParams = collections.namedtuple(
    'SSDParams',
    [
        'img_shape',  # (height, width) of the network input.
        'num_classes',  # Including background (label 0).
        'feat_layers',  # end_points keys the heads read, in anchor order.
        'feat_shapes',  # (height, width) of each feature layer for `img_shape`.
        'anchor_sizes',  # Per layer (min_size, max_size or None), pixels.
        'anchor_ratios',  # Per layer aspect ratios besides 1; each r also adds 1/r (Caffe's flip).
        'anchor_steps',  # Per layer step in pixels, or None for img / feature size (Caffe default).
        'anchor_offset',  # Cell-centre offset (0.5).
        'anchor_clip',  # False (Caffe), True (clip corners), 'size' (torchvision) or
        # 'center_size' (ssd.pytorch); see nets/anchors.py.
        'anchor_int_sizes',  # Truncate sizes to int like Caffe's PriorBox (OpenCV keeps floats).
        'prior_scaling',  # Box-coding variances (cx, cy, w, h).
        'normalizations',  # Per layer: > 0 = L2-normalise with this initial scale, else nothing.
        'extra_layers',  # Backbone-specific extra-layer spec (see each backbone).
        'depth_multiplier',  # Width multiplier of the backbone and extra layers (MobileNet).
        'batch_norm_epsilon',
        'batch_norm_decay',  # Moving-average decay of the batch-norm statistics.
    ],
)

# Anchor sizes that two presets of a net share.
# Caffe's VOC SSD300 (also ssd.pytorch's VOC PriorBox).
_SSD300_VOC_SIZES = (
    (30.0, 60.0),
    (60.0, 111.0),
    (111.0, 162.0),
    (162.0, 213.0),
    (213.0, 264.0),
    (264.0, 315.0),
)
# The older TF port's SSD300 COCO sizes. torchvision's ssd300_vgg16 has the same: its
# DefaultBoxGenerator scales 0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05 of 300 px.
_SSD300_COCO_SIZES = (
    (21.0, 45.0),
    (45.0, 99.0),
    (99.0, 153.0),
    (153.0, 207.0),
    (207.0, 261.0),
    (261.0, 315.0),
)
# Caffe's COCO SSD512 (the older TF port took the same).
_SSD512_COCO_SIZES = (
    (20.48, 51.2),
    (51.2, 133.12),
    (133.12, 215.04),
    (215.04, 296.96),
    (296.96, 378.88),
    (378.88, 460.8),
    (460.8, 542.72),
)

# Anchor-size presets per model. 'caffe_voc' is what the Caffe VOC models were trained with;
# 'tf_port_coco' is what the older TF port ran the same nets with (Caffe's COCO SSD300 sizes).
ANCHOR_SIZE_PRESETS = {
    'ssd_300_vgg': {
        'caffe_voc': list(_SSD300_VOC_SIZES),
        'tf_port_coco': list(_SSD300_COCO_SIZES),
        # torchvision's ssd300_vgg16, with its size clamping (below).
        'torchvision_coco': list(_SSD300_COCO_SIZES),
        # ssd.pytorch's VOC PriorBox, with its clamping (below).
        'ssd_pytorch_voc': list(_SSD300_VOC_SIZES),
    },
    'ssd_512_vgg': {
        'caffe_voc': [
            (35.84, 76.8),
            (76.8, 153.6),
            (153.6, 230.4),
            (230.4, 307.2),
            (307.2, 384.0),
            (384.0, 460.8),
            (460.8, 537.6),
        ],
        'caffe_coco': list(_SSD512_COCO_SIZES),
        'tf_port_coco': list(_SSD512_COCO_SIZES),
    },
    'ssd_300_mobilenet': {
        'mobilenet_ssd': [
            (60.0, None),
            (105.0, 150.0),
            (150.0, 195.0),
            (195.0, 240.0),
            (240.0, 285.0),
            (285.0, 300.0),
        ],
    },
}


# The anchor settings besides the sizes that a preset stands for, where they differ from the
# nets' Caffe defaults: torchvision's DefaultBoxGenerator (clip=True) clamps width and height to
# the image ('size'), ssd.pytorch's PriorBox (clip: True) clamps centre, width and height
# ('center_size'); both on float sizes.
ANCHOR_PRESET_SETTINGS = {
    'torchvision_coco': {'anchor_clip': 'size', 'anchor_int_sizes': False},
    'ssd_pytorch_voc': {'anchor_clip': 'center_size', 'anchor_int_sizes': False},
}


def anchor_preset_params(model_name, preset):
    """{SSDParams field: value} of a preset: `anchor_sizes` and its other anchor settings."""
    fields = {'anchor_sizes': tuple(tuple(s) for s in anchor_size_preset(model_name, preset))}
    fields.update(ANCHOR_PRESET_SETTINGS.get(preset, {}))
    return fields


def anchor_size_preset(model_name, preset):
    """Returns the `anchor_sizes` of a named preset, with a clear error for unknown names."""
    presets = ANCHOR_SIZE_PRESETS.get(model_name, {})
    if preset not in presets:
        raise ValueError(
            'unknown anchor size preset %r for %s; known: %s'
            % (preset, model_name, ', '.join(sorted(presets)) or 'none')
        )
    return presets[preset]


def params_to_dict(params):
    """JSON-ready dict of `params` (tuples become lists)."""

    def plain(value):
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in params._asdict().items()}


# Bounds of values read from files (cards, converted models' JSON): far beyond any SSD (SSD512
# has 24,564 anchors, COCO 91 classes), below what would exhaust memory.
MAX_IMAGE_SIDE = 4096
MAX_CLASSES = 100_000
MAX_ANCHORS = 2_000_000
MAX_RATIOS = 32
MAX_DEPTH_MULTIPLIER = 4.0
# SSD parameters nest lists 2 levels deep at most (per layer (min_size, max_size) pairs, the
# extra layers' specs); a file's value nested deeper is refused before it is converted (lists
# nested near the JSON parser's limit would exhaust Python's recursion).
MAX_PARAM_NESTING = 3
ANCHOR_CLIPS = (False, True, 'size', 'center_size')


def is_int(value, low, high):
    """True for an int (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def is_number(value, low=-math.inf, high=math.inf, above=None):
    """True for a finite int or float (not a bool) in [low, high] and > `above` when given; an
    int beyond float64's range (JSON can hold one) is not finite."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        finite = math.isfinite(value)
    except OverflowError:
        return False
    return finite and low <= value <= high and (above is None or value > above)


def _per_layer(value, count, check):
    return isinstance(value, tuple) and len(value) == count and all(check(v) for v in value)


def check_params(params, base):
    """Raises ValueError naming the first field of `params` (read from a file) that is not a
    valid value: numbers finite and in range, one entry per feature layer, at most MAX_ANCHORS
    anchors; `feat_layers` and `extra_layers` as in `base` (the net's defaults: its code builds
    those layers, a file cannot change them)."""
    layers = len(base.feat_layers)
    height, width = params.img_shape if _per_layer(params.img_shape, 2, lambda v: True) else (0, 0)
    checks = {
        'img_shape': (
            _per_layer(params.img_shape, 2, lambda v: is_int(v, 1, MAX_IMAGE_SIDE)),
            f'(height, width), each an integer in [1, {MAX_IMAGE_SIDE}]',
        ),
        'num_classes': (
            is_int(params.num_classes, 2, MAX_CLASSES),
            f'an integer in [2, {MAX_CLASSES}] (the background included)',
        ),
        'feat_layers': (params.feat_layers == base.feat_layers, f'{base.feat_layers}'),
        'extra_layers': (params.extra_layers == base.extra_layers, f'{base.extra_layers}'),
        'feat_shapes': (
            _per_layer(
                params.feat_shapes,
                layers,
                lambda s: (
                    _per_layer(s, 2, lambda v: True)
                    and is_int(s[0], 1, height)
                    and is_int(s[1], 1, width)
                ),
            ),
            f'{layers} (height, width) pairs of integers, at most img_shape',
        ),
        'anchor_sizes': (
            _per_layer(
                params.anchor_sizes,
                layers,
                lambda s: (
                    _per_layer(s, 2, lambda v: v is None or is_number(v, above=0))
                    and s[0] is not None
                ),
            ),
            f'{layers} (min_size, max_size or None) pairs of numbers > 0',
        ),
        'anchor_ratios': (
            _per_layer(
                params.anchor_ratios,
                layers,
                lambda r: (
                    isinstance(r, tuple)
                    and len(r) <= MAX_RATIOS
                    and all(is_number(v, above=0) for v in r)
                ),
            ),
            f'{layers} lists of at most {MAX_RATIOS} numbers > 0',
        ),
        'anchor_steps': (
            params.anchor_steps is None
            or _per_layer(
                params.anchor_steps, layers, lambda v: v is None or is_number(v, above=0)
            ),
            f'None, or {layers} numbers > 0 (or None)',
        ),
        'anchor_offset': (is_number(params.anchor_offset, 0, 1), 'a number in [0, 1]'),
        'anchor_clip': (
            isinstance(params.anchor_clip, bool) or params.anchor_clip in ANCHOR_CLIPS[2:],
            f'one of {ANCHOR_CLIPS}',
        ),
        'anchor_int_sizes': (isinstance(params.anchor_int_sizes, bool), 'true or false'),
        'prior_scaling': (
            _per_layer(params.prior_scaling, 4, lambda v: is_number(v, above=0)),
            '4 numbers > 0 (cx, cy, w, h)',
        ),
        'normalizations': (
            _per_layer(params.normalizations, layers, is_number),
            f'{layers} numbers',
        ),
        'depth_multiplier': (
            is_number(params.depth_multiplier, 0, MAX_DEPTH_MULTIPLIER, above=0),
            f'a number in (0, {MAX_DEPTH_MULTIPLIER:g}]',
        ),
        'batch_norm_epsilon': (
            is_number(params.batch_norm_epsilon, 0, 1, above=0),
            'a number in (0, 1]',
        ),
        'batch_norm_decay': (is_number(params.batch_norm_decay, 0, 1), 'a number in [0, 1]'),
    }
    for field, (ok, expected) in checks.items():
        if not ok:
            raise ValueError(
                f'SSD parameter {field} is {texts.shown(getattr(params, field))}, expected {expected}.'
            )
    anchors = sum(
        h * w * (2 + 2 * len(r)) for (h, w), r in zip(params.feat_shapes, params.anchor_ratios)
    )
    if anchors > MAX_ANCHORS:
        raise ValueError(
            f'SSD parameters feat_shapes and anchor_ratios make {anchors} anchors, more than '
            f'{MAX_ANCHORS}.'
        )


def _nesting(value, limit):
    """How many levels `value` nests lists, tuples and dicts (0: none), counted without
    recursion; past `limit` the count stops (at limit + 1)."""
    deepest, stack = 0, [(value, 0)]
    while stack and deepest <= limit:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, depth + 1)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def params_from_dict(base, overrides):
    """`base` with the fields in `overrides` (e.g. read from a converted model's JSON) replaced,
    checked (`check_params`).

    Unknown keys are an error (a typo would otherwise silently change nothing); so is a value
    nesting lists (or objects) more than MAX_PARAM_NESTING levels deep.
    """
    if not isinstance(overrides, dict):
        raise ValueError(
            f'ssd_params is {texts.shown(overrides)}, expected a JSON object of SSD parameters'
        )
    unknown = sorted(set(overrides) - set(SSDParams._fields))
    if unknown:
        raise ValueError(
            'unknown SSD parameter(s) %s; known: %s'
            % (', '.join(unknown), ', '.join(SSDParams._fields))
        )

    for key, value in overrides.items():
        if _nesting(value, MAX_PARAM_NESTING) > MAX_PARAM_NESTING:
            raise ValueError(
                f'SSD parameter {key} nests lists more than {MAX_PARAM_NESTING} levels deep; '
                f'SSD parameters nest 2 at most (e.g. anchor_sizes: a [min_size, max_size] pair '
                f'per layer)'
            )

    def tuples(value):  # recursion bounded by the nesting checked above
        if isinstance(value, list):
            return tuple(tuples(v) for v in value)
        return value

    params = base._replace(**{key: tuples(value) for key, value in overrides.items()})
    check_params(params, base)
    return params
