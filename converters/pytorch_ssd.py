"""Maps the state_dicts of published PyTorch SSD models onto the variables of our nets, by name.

Pure numpy: `detect_layout` names the layout of a state_dict from its keys, `convert_state_dict`
turns it into `{tf variable name: array}`. Reading the file is `pth_reader`'s job, writing the
checkpoint and the model card `pytorch_convert`'s.

Layouts (`LAYOUTS`):
  torchvision_ssd300          torchvision `ssd300_vgg16` (`ssd300_vgg16_coco-b556d3b4.pth`):
                              backbone.features.* (conv1_1..conv4_3), backbone.extra.0.* (conv5,
                              fc6, fc7), backbone.extra.1-4.* (extra layers),
                              backbone.scale_weight (conv4_3 L2 norm), head.*_head.module_list.*
  ssd_pytorch_ssd300          ssd.pytorch `build_ssd('test', 300, C)` (`ssd300_mAP_77.43_v2.pth`):
                              vgg.<i>, L2Norm.weight, extras.<i>, loc.<i>, conf.<i>
  torchvision_vgg16_features  torchvision's VGG16 for SSD (`vgg16_features-amdegroot-*.pth`):
                              features.<i> (conv1_1..conv5_3); its classifier.* holds NaN
                              (torchvision's SSD builds fc6/fc7 from scratch), so it is skipped
  ssd_pytorch_vgg16_reducedfc ssd.pytorch's base (`vgg16_reducedfc.pth`): <i>.weight / <i>.bias
                              of its `vgg` list (conv1_1..conv5_3, fc6, fc7)
A leading `module.` (nn.DataParallel) is stripped from every key.

Layouts: PyTorch conv weights are OIHW, TF's HWIO. Both sources see RGB (torchvision: 0-1 RGB
normalised to `RGB*255 - 255*mean`; ssd.pytorch: BGR minus (104, 117, 123), then reordered to
RGB), so no channel is reversed. Both heads put anchor a's value k at channel `a*K + k` over
anchors in our order (min square, sqrt(min*max) square, then each ratio r and 1/r) and box codes
(dx, dy, dw, dh) with variances (0.1, 0.1, 0.2, 0.2) (torchvision: BoxCoder weights 10, 10,
5, 5): our heads' layout, so the head weights map without reordering (the cross-check fixtures
prove it anchor by anchor). Classes: 'source' keeps the file's class channels (torchvision's 91
COCO category ids, unused ids included; VOC's 21); 'contiguous' keeps background and the used
COCO ids in id order (81 classes, the labels tf_convert_data.py gives COCO), see
`class_order_channels`. torchvision's COCO head scores category id c in channel c, so the kept
channels are the classes' COCO category ids (`Conversion.category_ids`): 1..90 for 'source',
the 80 used ids for 'contiguous'.
"""

import collections
import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

from datasets import labels as labels_lib
from tf_extended import texts


class ConversionError(ValueError):
    """The state_dict does not fit the requested layout or net."""


# torchvision.models._meta._COCO_CATEGORIES: the 91 ids of torchvision's COCO detectors.
TORCHVISION_COCO_CATEGORIES = (
    '__background__',
    'person',
    'bicycle',
    'car',
    'motorcycle',
    'airplane',
    'bus',
    'train',
    'truck',
    'boat',
    'traffic light',
    'fire hydrant',
    'N/A',
    'stop sign',
    'parking meter',
    'bench',
    'bird',
    'cat',
    'dog',
    'horse',
    'sheep',
    'cow',
    'elephant',
    'bear',
    'zebra',
    'giraffe',
    'N/A',
    'backpack',
    'umbrella',
    'N/A',
    'N/A',
    'handbag',
    'tie',
    'suitcase',
    'frisbee',
    'skis',
    'snowboard',
    'sports ball',
    'kite',
    'baseball bat',
    'baseball glove',
    'skateboard',
    'surfboard',
    'tennis racket',
    'bottle',
    'N/A',
    'wine glass',
    'cup',
    'fork',
    'knife',
    'spoon',
    'bowl',
    'banana',
    'apple',
    'sandwich',
    'orange',
    'broccoli',
    'carrot',
    'hot dog',
    'pizza',
    'donut',
    'cake',
    'chair',
    'couch',
    'potted plant',
    'bed',
    'N/A',
    'dining table',
    'N/A',
    'N/A',
    'toilet',
    'N/A',
    'tv',
    'laptop',
    'mouse',
    'remote',
    'keyboard',
    'cell phone',
    'microwave',
    'oven',
    'toaster',
    'sink',
    'refrigerator',
    'N/A',
    'book',
    'clock',
    'vase',
    'scissors',
    'teddy bear',
    'hair drier',
    'toothbrush',
)
# ssd.pytorch data/voc0712.py VOC_CLASSES (labels 1..20; 0 is the background): the same 20
# Pascal VOC names in the same order as ours, so the file's class channels map one to one.
SSD_PYTORCH_VOC_CLASSES = labels_lib.VOC_CLASSES
CLASS_ORDERS = ('source', 'contiguous')

# Our VGG16 SSD300 layers: (TF scope below the model scope, OIHW shape).
_VGG = (
    ('conv1/conv1_1', (64, 3, 3, 3)),
    ('conv1/conv1_2', (64, 64, 3, 3)),
    ('conv2/conv2_1', (128, 64, 3, 3)),
    ('conv2/conv2_2', (128, 128, 3, 3)),
    ('conv3/conv3_1', (256, 128, 3, 3)),
    ('conv3/conv3_2', (256, 256, 3, 3)),
    ('conv3/conv3_3', (256, 256, 3, 3)),
    ('conv4/conv4_1', (512, 256, 3, 3)),
    ('conv4/conv4_2', (512, 512, 3, 3)),
    ('conv4/conv4_3', (512, 512, 3, 3)),
    ('conv5/conv5_1', (512, 512, 3, 3)),
    ('conv5/conv5_2', (512, 512, 3, 3)),
    ('conv5/conv5_3', (512, 512, 3, 3)),
    ('conv6', (1024, 512, 3, 3)),
    ('conv7', (1024, 1024, 1, 1)),
)
_EXTRAS = (
    ('block8/conv1x1', (256, 1024, 1, 1)),
    ('block8/conv3x3', (512, 256, 3, 3)),
    ('block9/conv1x1', (128, 512, 1, 1)),
    ('block9/conv3x3', (256, 128, 3, 3)),
    ('block10/conv1x1', (128, 256, 1, 1)),
    ('block10/conv3x3', (256, 128, 3, 3)),
    ('block11/conv1x1', (128, 256, 1, 1)),
    ('block11/conv3x3', (256, 128, 3, 3)),
)
_BOXES = ('block4_box', 'block7_box', 'block8_box', 'block9_box', 'block10_box', 'block11_box')
_SOURCE_CHANNELS = (512, 1024, 512, 256, 256, 256)
_L2_NORM = 'block4_box/L2Normalization/gamma'

_SSD_PYTORCH_VGG_INDEX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33)
_TORCHVISION_VGG = tuple(
    'backbone.features.%d' % i for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21)
) + (
    'backbone.extra.0.1',
    'backbone.extra.0.3',
    'backbone.extra.0.5',
    'backbone.extra.0.7.1',
    'backbone.extra.0.7.3',
)
_TORCHVISION_EXTRAS = tuple('backbone.extra.%d.%d' % (b, i) for b in (1, 2, 3, 4) for i in (0, 2))


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one published PyTorch file maps onto our net.

    name: the layout's name (`--layout`).
    description / files: what it is, the published file name(s).
    signature: keys whose presence identifies the layout.
    convs: (PyTorch prefix, TF scope, OIHW shape) of the plain convolutions.
    l2_norm: PyTorch key of the conv4_3 L2-normalisation scale, or None.
    heads: (loc prefix, conf prefix) per feature layer (our anchor order), or () for a backbone.
    skipped: PyTorch key prefix -> why it is not converted.
    backbone_only: a backbone checkpoint (extra layers, heads and L2 scale stay missing).
    anchor_preset: nets.ssd_params preset of the source's anchors (ssd_params.ANCHOR_PRESET_
      SETTINGS holds its clipping).
    mean_rgb / scale: the source's input normalisation as `(RGB - mean_rgb) * scale`, exactly.
    detection: the source's post-processing in our terms (see pytorch_convert.model_card).
    class_names: the source's class names for labels 1.. ('source' order), or None.
    published: the published accuracy.
    """

    name: str
    description: str
    files: Tuple[str, ...]
    signature: Tuple[str, ...]
    convs: Tuple[Tuple[str, str, Tuple[int, ...]], ...]
    l2_norm: Optional[str]
    heads: Tuple[Tuple[str, str], ...]
    skipped: Dict[str, str]
    backbone_only: bool
    anchor_preset: Optional[str]
    mean_rgb: Tuple[float, float, float]
    scale: float
    detection: Dict
    class_names: Optional[Tuple[str, ...]]
    published: str


# torchvision: Normalize(mean=[0.48235, 0.45882, 0.40784], std=[1/255]*3) of a 0-1 image is
# (RGB/255 - mean) * 255 = RGB - 255 * mean.
_TORCHVISION_MEAN_RGB = tuple(255.0 * m for m in (0.48235, 0.45882, 0.40784))
# ssd.pytorch: BGR - (104, 117, 123), channels then reordered to RGB.
_SSD_PYTORCH_MEAN_RGB = (123.0, 117.0, 104.0)

LAYOUTS = collections.OrderedDict(
    (layout.name, layout)
    for layout in (
        Layout(
            name='torchvision_ssd300',
            description="torchvision's ssd300_vgg16",
            files=('ssd300_vgg16_coco-b556d3b4.pth',),
            signature=(
                'backbone.scale_weight',
                'backbone.extra.0.7.1.weight',
                'head.classification_head.module_list.0.weight',
            ),
            convs=tuple(
                (key, scope, shape)
                for key, (scope, shape) in zip(
                    _TORCHVISION_VGG + _TORCHVISION_EXTRAS, _VGG + _EXTRAS
                )
            ),
            l2_norm='backbone.scale_weight',
            heads=tuple(
                (
                    'head.regression_head.module_list.%d' % i,
                    'head.classification_head.module_list.%d' % i,
                )
                for i in range(6)
            ),
            skipped={},
            backbone_only=False,
            anchor_preset='torchvision_coco',
            mean_rgb=_TORCHVISION_MEAN_RGB,
            scale=1.0,
            # SSD.postprocess_detections: boxes clipped to the image, per class score > 0.01 and the
            # 400 best, batched NMS at 0.45, the 200 best of the image.
            detection={
                'select_threshold': 0.01,
                'nms_threshold': 0.45,
                'top_k': 400,
                'keep_top_k': 200,
                'clip': True,
            },
            class_names=TORCHVISION_COCO_CATEGORIES[1:],
            published='COCO val2017 box mAP 25.1 (torchvision)',
        ),
        Layout(
            name='ssd_pytorch_ssd300',
            description="ssd.pytorch's SSD300 (amdegroot)",
            files=('ssd300_mAP_77.43_v2.pth',),
            signature=(
                'vgg.0.weight',
                'L2Norm.weight',
                'extras.0.weight',
                'loc.0.weight',
                'conf.0.weight',
            ),
            convs=tuple(
                ('vgg.%d' % i, scope, shape)
                for i, (scope, shape) in zip(_SSD_PYTORCH_VGG_INDEX, _VGG)
            )
            + tuple(('extras.%d' % i, scope, shape) for i, (scope, shape) in enumerate(_EXTRAS)),
            l2_norm='L2Norm.weight',
            heads=tuple(('loc.%d' % i, 'conf.%d' % i) for i in range(6)),
            skipped={},
            backbone_only=False,
            anchor_preset='ssd_pytorch_voc',
            mean_rgb=_SSD_PYTORCH_MEAN_RGB,
            scale=1.0,
            # Detect(num_classes, 0, 200, 0.01, 0.45): per class score > 0.01, the 200 best, NMS at
            # 0.45, up to 200 kept per class; its per-image top_k line has no effect (it fills a
            # copy), so no per-image limit; boxes are not clipped.
            detection={
                'select_threshold': 0.01,
                'nms_threshold': 0.45,
                'top_k': 200,
                'keep_top_k': 0,
                'clip': False,
            },
            class_names=SSD_PYTORCH_VOC_CLASSES,
            published='VOC2007 test mAP 77.43 (ssd.pytorch README)',
        ),
        Layout(
            name='torchvision_vgg16_features',
            description="torchvision's VGG16 backbone for SSD (ImageNet, ported from ssd.pytorch)",
            files=('vgg16_features-amdegroot-88682ab5.pth',),
            signature=('features.0.weight', 'features.28.weight'),
            convs=tuple(
                ('features.%d' % i, scope, shape)
                for i, (scope, shape) in zip(
                    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), _VGG[:13]
                )
            ),
            l2_norm=None,
            heads=(),
            skipped={
                'classifier.': 'the classifier holds NaN in this file (torchvision: "only the '
                'features module has valid values"); fc6/fc7 start from scratch '
                'as in torchvision\'s SSD'
            },
            backbone_only=True,
            anchor_preset=None,
            mean_rgb=_TORCHVISION_MEAN_RGB,
            scale=1.0,
            detection={},
            class_names=None,
            published='ImageNet (no accuracy published)',
        ),
        Layout(
            name='ssd_pytorch_vgg16_reducedfc',
            description="ssd.pytorch's fc-reduced VGG16 base (ImageNet)",
            files=('vgg16_reducedfc.pth',),
            signature=('0.weight', '31.weight', '33.weight'),
            convs=tuple(
                ('%d' % i, scope, shape) for i, (scope, shape) in zip(_SSD_PYTORCH_VGG_INDEX, _VGG)
            ),
            l2_norm=None,
            heads=(),
            skipped={},
            backbone_only=True,
            anchor_preset=None,
            mean_rgb=_SSD_PYTORCH_MEAN_RGB,
            scale=1.0,
            detection={},
            class_names=None,
            published='ImageNet (no accuracy published)',
        ),
    )
)


def strip_module_prefix(state_dict):
    """Drops nn.DataParallel's `module.` from every key (when every key has it)."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        return collections.OrderedDict((k[len('module.') :], v) for k, v in state_dict.items())
    return state_dict


def detect_layout(keys, source='<state_dict>'):
    """The `Layout` whose signature keys are all in `keys`.

    Raises:
      ConversionError: none (or several) fit; the message lists the keys found and the
        layouts known with their signature keys.
    """
    keys = list(keys)
    found = _fitting_layouts(keys)
    if len(found) == 1:
        return found[0]
    shown = texts.listed(keys, 12)
    known = '; '.join(
        '%s (%s, keys %s)' % (l.name, ' / '.join(l.files), ', '.join(l.signature))
        for l in LAYOUTS.values()
    )
    what = 'several layouts fit' if found else 'unknown layout'
    raise ConversionError(
        '%s: %s. Keys found: %s. Known layouts: %s. Pass --layout to choose '
        'one.' % (source, what, shown or 'none', known)
    )


def _fitting_layouts(keys):
    keys = set(keys)
    return [layout for layout in LAYOUTS.values() if keys.issuperset(layout.signature)]


def check_layout_fits(layout, keys, source='<state_dict>'):
    """Raises ConversionError when `keys` lack a signature key of `layout` (a --layout given)
    and fit exactly one other layout, naming it (else the conversion's own mismatch report says
    what is wrong)."""
    keys = set(keys)
    lacking = [k for k in layout.signature if k not in keys]
    found = _fitting_layouts(keys)
    if lacking and len(found) == 1:
        raise ConversionError(
            '%s: its tensors are not those of --layout=%s (it has no %s); they are %s\'s (%s): '
            'pass --layout=%s, or leave --layout out to recognise it.'
            % (
                source,
                layout.name,
                ', '.join(lacking),
                found[0].name,
                found[0].description,
                found[0].name,
            )
        )


def get_layout(name):
    if name not in LAYOUTS:
        raise ConversionError('unknown layout %r; known: %s' % (name, ', '.join(LAYOUTS)))
    return LAYOUTS[name]


def infer_num_classes(state_dict, layout):
    """Classes (with background) from the first conf head: (4 anchors x C) outputs, or None."""
    if not layout.heads:
        return None
    loc_key, conf_key = layout.heads[0][0] + '.weight', layout.heads[0][1] + '.weight'
    if loc_key not in state_dict or conf_key not in state_dict:
        return None
    anchors = state_dict[loc_key].shape[0] // 4
    return state_dict[conf_key].shape[0] // anchors if anchors else None


def class_order_channels(layout, num_classes, class_order):
    """(source class indices kept, in our label order; class names of labels 1..).

    'source': every class channel as in the file. 'contiguous' (COCO layouts with torchvision's
    91 ids): the background and the 80 used ids in increasing id order, so label i is the i-th
    used category id, as tf_convert_data.py numbers COCO. Our softmax then runs over the 81 kept
    logits: the probabilities are the source's renormalised without its 10 never-trained ids.
    """
    if class_order not in CLASS_ORDERS:
        raise ConversionError(
            'unknown class order %r; known: %s' % (class_order, ', '.join(CLASS_ORDERS))
        )
    names = layout.class_names
    if names is None or len(names) != num_classes - 1:
        names = tuple('class_%d' % i for i in range(1, num_classes))
        if class_order == 'contiguous':
            raise ConversionError(
                '--class_order=contiguous needs the source\'s class list; %s '
                'with %d classes has none' % (layout.name, num_classes)
            )
    if class_order == 'source':
        # Unused ids keep their channel; unique names so that name -> label maps stay valid.
        return list(range(num_classes)), tuple(
            'unused_%d' % (i + 1) if n == 'N/A' else n for i, n in enumerate(names)
        )
    keep = [0] + [i + 1 for i, n in enumerate(names) if n != 'N/A']
    return keep, tuple(names[i - 1] for i in keep[1:])


@dataclasses.dataclass
class MappedTensor:
    """One row of the conversion table."""

    torch_key: str
    torch_shape: Tuple[int, ...]
    tf_variable: str
    tf_shape: Tuple[int, ...]
    note: str = ''


@dataclasses.dataclass
class Conversion:
    """What `convert_state_dict` produced.

    values: full TF variable name -> float32 array in TF layout.
    mapped: the table rows, in file order.
    skipped: (key, reason) of tensors deliberately not converted.
    unmapped: keys that no rule consumed (a problem unless allow_partial).
    missing: keys the layout needs that the file lacks.
    num_classes / class_names: of the converted net (after the class order).
    category_ids: tuple of the COCO category ids of labels 1.. (torchvision's 91-class COCO
      head: the kept channels), or None (other heads: no known ids).
    """

    values: Dict[str, np.ndarray]
    mapped: List[MappedTensor]
    skipped: List[Tuple[str, str]]
    unmapped: List[str]
    missing: List[str]
    num_classes: Optional[int]
    class_names: Optional[Tuple[str, ...]]
    category_ids: Optional[Tuple[int, ...]] = None


def _tensor(state_dict, key, shape, tf_name, used):
    """state_dict[key] as float32, its shape checked against the OIHW / vector `shape`."""
    value = state_dict[key]
    used.add(key)
    if tuple(value.shape) != tuple(shape):
        raise ConversionError(
            'shape mismatch: PyTorch tensor %s has shape %s, but %s needs %s '
            '(PyTorch layout)' % (key, tuple(value.shape), tf_name, tuple(shape))
        )
    if not np.issubdtype(value.dtype, np.floating):
        raise ConversionError('PyTorch tensor %s is %s, expected floats' % (key, value.dtype))
    value = value.astype(np.float32)
    if not np.all(np.isfinite(value)):
        raise ConversionError('PyTorch tensor %s (for %s) holds NaN or inf' % (key, tf_name))
    return value


def convert_state_dict(
    state_dict,
    layout,
    scope='ssd_300_vgg',
    num_classes=None,
    class_order='source',
    anchors_per_location=(4, 6, 6, 6, 4, 4),
):
    """Converts a state_dict of `layout` to TF variable values of our VGG SSD net.

    Args:
      state_dict: {key: numpy array} (pth_reader.load_state_dict).
      layout: a `Layout`.
      scope: our model scope ('ssd_300_vgg'; 'ssd_512_vgg' for the backbone layouts).
      num_classes: classes with background; default: inferred from the heads.
      class_order: 'source' or 'contiguous' (see `class_order_channels`).
      anchors_per_location: per feature layer, of our net (for the head shapes).
    Returns:
      `Conversion`.
    Raises:
      ConversionError: a tensor of the wrong shape or dtype (named), NaN weights, a class
        order the layout cannot have.
    """
    state_dict = strip_module_prefix(state_dict)
    prefix = scope + '/'
    values, rows, used, missing = {}, [], set(), []

    def add(key, shape, tf_name, transform, note=''):
        if key not in state_dict:
            missing.append(key)
            return
        value = _tensor(state_dict, key, shape, tf_name, used)
        out = transform(value)
        values[tf_name] = np.ascontiguousarray(out)
        rows.append(MappedTensor(key, tuple(value.shape), tf_name, tuple(out.shape), note))

    def conv(key, scope_name, shape, channels=None, note=''):
        def weights(w):
            return (w if channels is None else w[channels]).transpose(2, 3, 1, 0)

        def biases(b):
            return b if channels is None else b[channels]

        add(key + '.weight', shape, prefix + scope_name + '/weights', weights, note)
        add(key + '.bias', shape[:1], prefix + scope_name + '/biases', biases, note)

    for key, scope_name, shape in layout.convs:
        conv(key, scope_name, shape)
    if layout.l2_norm:
        add(layout.l2_norm, (512,), prefix + _L2_NORM, lambda g: g)

    classes, names, category_ids = None, None, None
    if layout.heads:
        classes = num_classes or infer_num_classes(state_dict, layout)
        if classes is None:
            raise ConversionError(
                '%s: cannot infer the number of classes (no %s)'
                % (layout.name, layout.heads[0][1] + '.weight')
            )
        keep, names = class_order_channels(layout, classes, class_order)
        if layout.class_names == TORCHVISION_COCO_CATEGORIES[1:] and classes == len(
            TORCHVISION_COCO_CATEGORIES
        ):
            category_ids = tuple(keep[1:])  # channel c scores COCO category id c
        for i, ((loc_key, conf_key), box) in enumerate(zip(layout.heads, _BOXES)):
            anchors, cin = anchors_per_location[i], _SOURCE_CHANNELS[i]
            conv(loc_key, box + '/conv_loc', (anchors * 4, cin, 3, 3))
            channels = None
            note = ''
            if len(keep) != classes:
                channels = np.array([a * classes + c for a in range(anchors) for c in keep])
                note = 'classes %d -> %d (%s order)' % (classes, len(keep), class_order)
            conv(conf_key, box + '/conv_cls', (anchors * classes, cin, 3, 3), channels, note)
        classes = len(keep)

    skipped, unmapped = [], []
    for key in state_dict:
        if key in used:
            continue
        reason = next((why for p, why in layout.skipped.items() if key.startswith(p)), None)
        if reason is not None:
            skipped.append((key, reason))
        elif key.endswith('num_batches_tracked'):
            skipped.append((key, 'a batch-norm step counter'))
        else:
            unmapped.append(key)
    return Conversion(
        values=values,
        mapped=rows,
        skipped=skipped,
        unmapped=unmapped,
        missing=missing,
        num_classes=classes,
        class_names=names,
        category_ids=category_ids,
    )


def format_table(conversion):
    """The mapping table, skipped and unmapped tensors, as text."""
    rows = [('PyTorch tensor', 'shape', 'TF variable', 'shape')]
    for row in conversion.mapped:
        rows.append(
            (
                row.torch_key,
                'x'.join(map(str, row.torch_shape)),
                row.tf_variable,
                'x'.join(map(str, row.tf_shape)) + ('  ' + row.note if row.note else ''),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ['  '.join(r[i].ljust(widths[i]) for i in range(3)) + '  ' + r[3] for r in rows]
    reasons = collections.OrderedDict()
    for key, why in conversion.skipped:
        reasons.setdefault(why, []).append(key)
    for why, keys in reasons.items():
        lines.append('skipped %s: %s' % (', '.join(keys), why))
    for key in conversion.unmapped:
        lines.append('UNMAPPED PyTorch tensor %s' % key)
    return '\n'.join(lines)
