"""The numbers that define an SSD net: the one record every variant fills in.

`SSDParams` keeps the older TF port's field names (`feat_layers`, `feat_shapes`, `anchor_sizes`,
`anchor_ratios`, `anchor_steps`, `anchor_offset`, `normalizations`, `prior_scaling`) and adds what
Caffe's PriorBox and the backbones need. Sizes are in pixels of the input image.
"""

import collections

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

# Anchor-size presets per model. 'caffe_voc' is what the Caffe VOC models were trained with;
# 'tf_port_coco' is what the older TF port used with the same nets (its checkpoints expect it).
ANCHOR_SIZE_PRESETS = {
    'ssd_300_vgg': {
        'caffe_voc': [
            (30.0, 60.0),
            (60.0, 111.0),
            (111.0, 162.0),
            (162.0, 213.0),
            (213.0, 264.0),
            (264.0, 315.0),
        ],
        'tf_port_coco': [
            (21.0, 45.0),
            (45.0, 99.0),
            (99.0, 153.0),
            (153.0, 207.0),
            (207.0, 261.0),
            (261.0, 315.0),
        ],
        # torchvision's ssd300_vgg16: DefaultBoxGenerator scales 0.07, 0.15, 0.33, 0.51, 0.69,
        # 0.87, 1.05 of 300 px (the tf_port_coco sizes), with its size clamping (below).
        'torchvision_coco': [
            (21.0, 45.0),
            (45.0, 99.0),
            (99.0, 153.0),
            (153.0, 207.0),
            (207.0, 261.0),
            (261.0, 315.0),
        ],
        # ssd.pytorch's VOC PriorBox: the Caffe VOC sizes, with its clamping (below).
        'ssd_pytorch_voc': [
            (30.0, 60.0),
            (60.0, 111.0),
            (111.0, 162.0),
            (162.0, 213.0),
            (213.0, 264.0),
            (264.0, 315.0),
        ],
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
        'caffe_coco': [
            (20.48, 51.2),
            (51.2, 133.12),
            (133.12, 215.04),
            (215.04, 296.96),
            (296.96, 378.88),
            (378.88, 460.8),
            (460.8, 542.72),
        ],
        'tf_port_coco': [
            (20.48, 51.2),
            (51.2, 133.12),
            (133.12, 215.04),
            (215.04, 296.96),
            (296.96, 378.88),
            (378.88, 460.8),
            (460.8, 542.72),
        ],
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
            'Unknown anchor size preset %r for %s; known: %s'
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


def params_from_dict(base, overrides):
    """`base` with the fields in `overrides` (e.g. read from a converted model's JSON) replaced.

    Unknown keys are an error (a typo would otherwise silently change nothing).
    """
    unknown = sorted(set(overrides) - set(SSDParams._fields))
    if unknown:
        raise ValueError(
            'Unknown SSD parameter(s) %s; known: %s'
            % (', '.join(unknown), ', '.join(SSDParams._fields))
        )

    def tuples(value):
        if isinstance(value, list):
            return tuple(tuples(v) for v in value)
        return value

    return base._replace(**{key: tuples(value) for key, value in overrides.items()})
