"""Caffe SSD model -> our TF checkpoint plus its model card.

`convert` is what `caffe_to_tensorflow.py` runs: read the caffemodel (and the deploy prototxt),
map the layers by name, print the table, write `<output_path>` (checkpoint) and its model card
`<output_path>.model.json` (model/card.py; a backbone, which is no detection model, gets the
conversion record `<output_path>.json` instead), then re-load and run a forward pass as a check.

The conversion record (`ConvertResult.config`; the card is built from it) holds:
  model_name: our net (nets_factory name); backbone_only: bool;
  ssd_params: nets.ssd_params.params_to_dict of the SSDParams to build the net with (anchors
    from the prototxt's PriorBox layers; `anchor_int_sizes` true = Caffe's PriorBox);
  detection: nms_threshold, top_k, keep_top_k, confidence_threshold (DetectionOutput);
  preprocessing: channel_order 'RGB', mean_rgb, scale — the net takes (RGB - mean) * scale;
  source: the input files and converter model name.

Class names (the card's): `--labelmap_file`, the model's Caffe LabelMap (`read_labelmap`:
display_name, else name, of labels 1..K-1), or `--labels_file` (one name per line); without
either, the 20 VOC classes for a 21-class model and placeholders `class_<i>` otherwise
(`default_class_names`). The card's `provenance.class_names` records which, and the file. A label
map whose `name`s are category ids (Caffe SSD's COCO one: name "18", display_name "dog") gives
the card's `category_ids` too (`labelmap_category_ids`).
"""

import dataclasses
import json
import math
import os
import re
from typing import Dict, List, Optional

from converters import caffe_pb
from converters import caffe_ssd
from converters import checkpoint_io
from converters import prototxt
from datasets import labels as labels_lib
from model import card as card_lib
from nets import nets_factory
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory
from tf_extended import safe_io
from tf_extended import texts

# A Caffe LabelMap is a few kB (data/coco/labelmap_coco.prototxt: 4.8 kB for 81 items); 4 MiB
# holds some 60000 items.
MAX_LABELMAP_BYTES = 4 << 20
LABELMAP_FORMAT = (
    'a Caffe LabelMap (item { name: "..." label: N display_name: "..." } per class, label 0 the '
    'background, as data/VOC0712/labelmap_voc.prototxt)'
)
_LABELMAP_FIELDS = ('name', 'label', 'display_name')
_INT32_MAX = 2**31 - 1
# A label map `name` read as a category id: a decimal integer as COCO's ids are written.
_CATEGORY_ID = re.compile(r'0|[1-9][0-9]{0,9}')


@dataclasses.dataclass
class ConvertResult:
    """What `convert` wrote and found.

    checkpoint_path / config_path: the files written.
    config: the JSON content.
    conversion: the caffe_ssd.Conversion (mapping table, unmapped layers).
    problems: problem lines (empty unless allow_partial let them through).
    table: the printed mapping table.
    """

    checkpoint_path: str
    config_path: str
    config: Dict
    conversion: caffe_ssd.Conversion
    problems: List[str]
    table: str


class LabelMapError(caffe_ssd.ConversionError):
    """A --labelmap_file that cannot be read, is no Caffe LabelMap, or does not fit the model."""


@dataclasses.dataclass(frozen=True)
class LabelMapItem:
    """One `item { ... }` of a Caffe LabelMap.

    index: its position in the file (1 = the first item); line: the line of its `item`;
    label, name, display_name: its fields (name / display_name None when absent).
    """

    index: int
    line: Optional[int]
    label: int
    name: Optional[str]
    display_name: Optional[str]

    @property
    def class_name(self):
        """display_name, else name (Caffe's name is the class's key, e.g. COCO's category id
        as text; display_name the class name), stripped."""
        return (self.name if self.display_name is None else self.display_name).strip()

    def where(self, path):
        line = '' if self.line is None else f'line {self.line}, '
        return f'{path}: item {self.index} ({line}label {self.label})'


def _item_where(path, index, line):
    return f'{path}: item {index}' + ('' if line is None else f' (line {line})')


def read_labelmap(path):
    """Reads a Caffe SSD LabelMap text file (`labelmap_voc.prototxt`, `labelmap_coco.prototxt`)
    as an untrusted file: a regular file of at most MAX_LABELMAP_BYTES, UTF-8 protobuf text
    format holding only `item { name label display_name }` blocks, each with an integer
    `label` >= 0 and string `name` / `display_name` (each field at most once), no label twice and
    no class name (display_name, else name) twice among labels >= 1 (label 0, the background,
    is not a class: its names are not used).

    Returns:
      list of LabelMapItem, in file order (`labelmap_class_names` checks them against a model).
    Raises:
      LabelMapError: one line naming the file, the item (position, line) and what to do.
    """
    fix = f'fix the label map; --labelmap_file takes {LABELMAP_FORMAT}'
    labels_file_fix = (
        'it looks like a labels file (one class name per line): pass it as --labels_file'
    )
    try:
        text = safe_io.read_text(path, MAX_LABELMAP_BYTES, 'label map', LABELMAP_FORMAT)
        message = prototxt.parse(text, source=path)
    except safe_io.UnsafeFileError as e:
        raise LabelMapError(f'--labelmap_file: {e}') from None
    except OSError as e:
        raise LabelMapError(f'--labelmap_file: cannot read {path}: {e.strerror or e}') from None
    except prototxt.PrototxtError as e:
        # Names one per line (no block): a labels file.
        raise LabelMapError(
            f'--labelmap_file: {e}; {fix if "{" in text else labels_file_fix}'
        ) from None
    except ValueError as e:  # not UTF-8 text (safe_io.read_text names the file, line, format)
        raise LabelMapError(f'--labelmap_file: {e}') from None
    items, seen_keys = [], {}
    for key, value in message.fields:
        nth = seen_keys[key] = seen_keys.get(key, -1) + 1
        line = message.line_of(key, nth)
        if key != 'item' or not isinstance(value, prototxt.Message):
            if '{' not in text:
                raise LabelMapError(f'{path}: not a label map; {labels_file_fix}')
            raise LabelMapError(
                f'{path}, line {line}: field {key!r} is not an item {{ ... }} block (is this a '
                f'label map? a deploy prototxt goes to --prototxt_path); {fix}'
            )
        items.append(_labelmap_item(path, len(items) + 1, line, value, fix))
    if not items:
        raise LabelMapError(f'{path}: the label map has no item {{ ... }} blocks; {fix}')
    by_label, by_name = {}, {}
    for item in items:
        other = by_label.setdefault(item.label, item)
        if other is not item:
            raise LabelMapError(
                f'{_item_where(path, item.index, item.line)}: label {item.label} again (item '
                f'{other.index} has it); each label once, 0 the background and 1..K-1 the '
                f'classes: {fix}'
            )
        if item.label == 0:
            continue
        other = by_name.setdefault(item.class_name, item)
        if other is not item:
            raise LabelMapError(
                f'{item.where(path)}: class name {item.class_name!r} again (item {other.index}, '
                f'label {other.label} has it); class names must be unique: {fix}'
            )
    return items


def _labelmap_item(path, index, line, item, fix):
    """The LabelMapItem of the index-th `item` block, checked (see `read_labelmap`)."""
    where = _item_where(path, index, line)
    for key, _ in item.fields:
        if key not in _LABELMAP_FIELDS:
            raise LabelMapError(
                f'{where}: unknown field {key!r} (line {item.line_of(key, 0)}); an item has '
                f'name, label and display_name: {fix}'
            )
    for key in _LABELMAP_FIELDS:
        lines = item.lines.get(key, [])
        if len(lines) > 1:
            raise LabelMapError(
                f'{where}: {key} given {len(lines)} times (lines {", ".join(map(str, lines))}); '
                f'give it once: {fix}'
            )
    try:
        label = item.number('label', where, integer=True, minimum=0, maximum=_INT32_MAX)
        name = item.text('name', where)
        display_name = item.text('display_name', where)
    except prototxt.PrototxtValueError as e:
        raise LabelMapError(f'{e}; {fix}') from None
    if label is None:
        raise LabelMapError(
            f'{where} has no label; give each item its label: N (0 the background, 1..K-1 the '
            f'classes): {fix}'
        )
    if name is None and display_name is None:
        raise LabelMapError(
            f'{where}: label {label} has neither display_name nor name; give the class name as '
            f'display_name: {fix}'
        )
    result = LabelMapItem(index, line, label, name, display_name)
    problem = None if label == 0 else labels_lib.class_name_problem(result.class_name)
    if problem is not None:
        raise LabelMapError(
            f'{result.where(path)}: class name {texts.shown(result.class_name)} {problem}; {fix}'
        )
    return result


def labelmap_class_names(items, path, num_classes, classes_from):
    """The class names of labels 1..num_classes-1 of a label map (`read_labelmap`'s items),
    whose labels must be exactly 0..num_classes-1.

    Args:
      classes_from: where the model's class count comes from, for messages ('its conf heads').
    Raises:
      LabelMapError: naming the file, the item or label, and what to do.
    """
    by_label = {item.label: item for item in items}
    model = (
        f'the model has {num_classes} classes with the background ({classes_from}), labels '
        f'0..{num_classes - 1}'
    )
    labels = sorted(by_label)
    if labels == list(range(len(labels))) and len(labels) != num_classes:
        raise LabelMapError(
            f'{path}: the label map has labels 0..{labels[-1]} ({len(labels)} classes with the '
            f'background), but {model}; pass the label map the model was trained with'
        )
    beyond = [by_label[label] for label in labels if label >= num_classes]
    if beyond:
        raise LabelMapError(
            f'{beyond[0].where(path)}: label {beyond[0].label} is beyond the model\'s classes: '
            f'{model}; pass the label map the model was trained with'
        )
    missing = [label for label in range(num_classes) if label not in by_label]
    if missing:
        shown = texts.listed(missing, 5)
        background = (
            ' (label 0 is the background: add item { name: "none_of_the_above" label: 0 '
            'display_name: "background" })'
            if missing[0] == 0
            else ''
        )
        raise LabelMapError(
            f'{path}: no item has label {shown}{background}; {model}: add an item for every label'
        )
    return tuple(by_label[label].class_name for label in range(1, num_classes))


def labelmap_category_ids(items, num_classes):
    """The category ids of labels 1..num_classes-1 (`labelmap_class_names` checked them) when
    the label map gives them as its `name`s beside the class names, as Caffe SSD's COCO label
    map does (`name: "18" label: 17 display_name: "dog"`: COCO's category id 18): every such
    item has a display_name and a decimal integer name other than it, the ids distinct. Else
    None (the VOC label map's names are its class names)."""
    by_label = {item.label: item for item in items}
    named = [by_label[label] for label in range(1, num_classes)]
    if not all(
        item.display_name is not None
        and item.name is not None
        and _CATEGORY_ID.fullmatch(item.name.strip())
        and item.name.strip() != item.class_name  # names that are the classes: digits, say
        for item in named
    ):
        return None
    ids = tuple(int(item.name) for item in named)
    if len(set(ids)) != len(ids) or max(ids) > _INT32_MAX:
        return None
    return ids


def config_path_for(checkpoint_path, backbone_only=False):
    """The JSON written beside a converted checkpoint: its model card, or a backbone's record."""
    return checkpoint_path + (
        card_lib.LEGACY_CHECKPOINT_SUFFIX if backbone_only else card_lib.CHECKPOINT_CARD_SUFFIX
    )


def default_class_names(num_classes):
    """(class names, provenance record, log line) without --labelmap_file / --labels_file: the
    20 VOC classes for a 21-class model (what the published Caffe SSD models of 21 classes are),
    placeholders `class_<i>` otherwise."""
    files = (
        "--labelmap_file=<the model's labelmap.prototxt> or --labels_file=<one class name per line>"
    )
    if num_classes == len(labels_lib.VOC_CLASSES) + 1:
        note = 'the 20 Pascal VOC classes, assumed for a 21-class model'
        return (
            labels_lib.VOC_CLASSES,
            {'from': 'default', 'note': note},
            f'NOTE: class names: {note} (no --labelmap_file or --labels_file); a model trained '
            f'on other classes needs {files}',
        )
    names = card_lib.default_class_names(num_classes)
    note = f'placeholders {names[0]}..{names[-1]}' if names else 'none'
    return (
        names,
        {'from': 'default', 'note': note},
        f'NOTE: class names: {note} (no --labelmap_file or --labels_file); name them with {files}',
    )


def model_card(config, params, class_names=None, class_names_from=None, category_ids=None):
    """The model card of a converted detection model (`config`: the conversion record;
    class_names: of labels 1.., default `default_class_names`; class_names_from: where they come
    from, the card's `provenance.class_names`; category_ids: the card's, of labels 1..)."""
    detection = {
        card_lib.CAFFE_DETECTION_NAMES[k]: v
        for k, v in config['detection'].items()
        if k in card_lib.CAFFE_DETECTION_NAMES
    }
    if class_names is None:
        class_names, class_names_from, _ = default_class_names(params.num_classes)
    provenance = {
        'converted_by': 'caffe_to_tensorflow.py',
        'source': config['source'],
        'class_names': class_names_from,
        'time': card_lib.now(),
        'git_commit': card_lib.git_commit(),
    }
    return card_lib.ModelCard(
        config['model_name'],
        params,
        tuple(config['preprocessing']['mean_rgb']),
        config['preprocessing']['scale'],
        tuple(class_names),
        card_lib.DetectionSettings(**detection),
        card_id=card_lib.new_card_id(),
        provenance=provenance,
        category_ids=category_ids,
    )


def read_class_names_file(labelmap_file, labels_file, backbone_only=False):
    """Reads --labelmap_file or --labels_file (at most one; neither: None) before any other work;
    `resolve_class_names` checks it against the model's class count.

    Returns:
      list of LabelMapItem (a label map), tuple of names (a labels file), or None.
    Raises:
      caffe_ssd.ConversionError (LabelMapError): both given, given for a backbone, or the file
      cannot be read or is malformed, naming the file, the item or line, and what to do.
    """
    if labelmap_file and labels_file:
        raise caffe_ssd.ConversionError(
            f'--labelmap_file={labelmap_file} and --labels_file={labels_file}: pass one of them '
            f"(the model's Caffe labelmap.prototxt, or a labels file with one class name per line)"
        )
    if not (labelmap_file or labels_file):
        return None
    if backbone_only:
        flag = 'labelmap_file' if labelmap_file else 'labels_file'
        raise caffe_ssd.ConversionError(
            f'--{flag}: a backbone has no classes to name; convert it without the flag'
        )
    if labelmap_file:
        return read_labelmap(labelmap_file)
    return labels_lib.read_labels_flag(labels_file, caffe_ssd.ConversionError)


def resolve_class_names(labelmap_file, labels_file, read, num_classes, classes_from):
    """(class names of labels 1..num_classes-1, provenance record, log line, category ids or
    None): those of the file `read_class_names_file` read (`read`), else `default_class_names`;
    the ids of a label map's names (`labelmap_category_ids`).

    Raises:
      caffe_ssd.ConversionError (LabelMapError): the file's classes do not fit the model's
      `num_classes` (classes_from: where that count comes from, for the message).
    """
    if read is None:
        return default_class_names(num_classes) + (None,)
    ids = None
    if labelmap_file:
        names = labelmap_class_names(read, labelmap_file, num_classes, classes_from)
        ids = labelmap_category_ids(read, num_classes)
        kind, flag, path = 'label map', 'labelmap_file', labelmap_file
        how = f' (display_name, else name, of labels 1..{num_classes - 1})'
    else:
        names, kind, flag, path, how = tuple(read), 'labels file', 'labels_file', labels_file, ''
        if len(names) != num_classes - 1:
            raise caffe_ssd.ConversionError(
                f'{path}: {len(names)} class names, but the model has {num_classes - 1} classes '
                f'besides the background ({classes_from})'
                f'{labels_lib.background_line_note(names, num_classes - 1)}; give one name per '
                f'class in label '
                f"order, background excluded, or pass the model's Caffe label map with "
                f'--labelmap_file'
            )
    line = f'class names: the {len(names)} of the {kind} {path}{how}: {texts.listed(names, 5)}'
    if ids is not None:
        shown = texts.listed(ids, 5)
        line += f'; category ids (detections\' category_id): its names, {shown}'
    return names, {'from': flag, 'path': os.path.abspath(path)}, line, ids


def check_normalisation(caffe_mean_bgr, caffe_scale):
    """(mean B, G, R, scale) of --caffe_mean_bgr / --caffe_scale (None where not given), checked
    as the prototxt's transform_param is: 1 mean value (Caffe's mean_value for every channel) or
    3, finite, and a scale > 0.

    Raises:
      caffe_ssd.ConversionError: naming the flag (a scale of 0 would zero every input).
    """
    mean = None
    if caffe_mean_bgr:
        try:
            mean = [float(m) for m in caffe_mean_bgr]
        except (TypeError, ValueError):
            mean = []
        if len(mean) not in (1, 3) or not all(math.isfinite(m) and abs(m) <= 1e6 for m in mean):
            raise caffe_ssd.ConversionError(
                '--caffe_mean_bgr=%s: expected 1 or 3 finite numbers (B,G,R, e.g. 104,117,123)'
                % ','.join(map(str, caffe_mean_bgr))
            )
        mean = mean * 3 if len(mean) == 1 else mean
    if caffe_scale is not None and not (0 < caffe_scale <= 1e6):
        raise caffe_ssd.ConversionError(
            '--caffe_scale=%s: expected a number > 0 (the Caffe model\'s input scale after the '
            'mean, e.g. 0.007843 for MobileNet-SSD)' % caffe_scale
        )
    return mean, caffe_scale


def _num_classes(flag, inferred, from_prototxt, default):
    """(number of classes with the background, where it comes from)."""
    if flag is not None:
        return flag, '--num_classes'
    if inferred is not None:
        return inferred, 'inferred from its conf heads'
    if from_prototxt is not None:
        return from_prototxt, 'the prototxt DetectionOutput'
    return default, 'the net\'s default'


def _preset_params(params, spec):
    """Without a prototxt: the published anchor sizes of the dataset the class count suggests."""
    dataset = 'coco' if params.num_classes == 81 else 'voc'
    sizes = ssd_params_lib.anchor_size_preset(spec.net_name, spec.anchor_presets[dataset])
    return params._replace(anchor_sizes=tuple(sizes)), dataset


def _ssd_params(spec, layers, from_prototxt, prototxt_path, num_classes):
    """(SSDParams of the converted net, where its anchors come from, where its class count comes
    from): the class count from the flag, else the heads, else the prototxt; anchors from the
    prototxt's PriorBox layers, else the published preset of the dataset the class count
    suggests."""
    base = nets_factory.get_network(spec.net_name).default_params
    inferred = None if spec.backbone_only else caffe_ssd.infer_num_classes(layers, spec)
    proto_params = dict(from_prototxt['ssd_params'])
    proto_classes = proto_params.pop('num_classes', None)
    classes, classes_from = _num_classes(num_classes, inferred, proto_classes, base.num_classes)
    if proto_classes is not None and proto_classes != classes and not spec.backbone_only:
        raise caffe_ssd.ConversionError(
            '%s says num_classes %d (DetectionOutput) but %s %d; pass the deploy prototxt of '
            'this model'
            % (
                prototxt_path,
                proto_classes,
                'the model has' if num_classes is None else '--num_classes is',
                classes,
            )
        )
    if tuple(proto_params.get('img_shape', base.img_shape)) != tuple(base.img_shape):
        raise caffe_ssd.ConversionError(
            '%s: input %s, but %s is built for %s'
            % (prototxt_path, proto_params['img_shape'], spec.net_name, list(base.img_shape))
        )
    params = base._replace(num_classes=classes)
    if 'anchor_sizes' in proto_params:
        params = ssd_params_lib.params_from_dict(params, proto_params)
        return params, 'the prototxt PriorBox layers', classes_from
    if spec.backbone_only:
        return params, None, classes_from
    # A prototxt without PriorBox layers (e.g. one cut down for another runtime) gives no
    # anchors: the preset, as without a prototxt, not the net's defaults.
    params, dataset = _preset_params(params, spec)
    return (
        params,
        'the published %s preset (%s)'
        % (
            dataset.upper(),
            '%s has no PriorBox layers' % prototxt_path
            if prototxt_path
            else 'no --prototxt_path; pass the deploy prototxt to take them from the model',
        ),
        classes_from,
    )


def _conversion_record(
    spec, params, from_prototxt, caffemodel_path, prototxt_path, caffe_mean_bgr, caffe_scale
):
    """The conversion record (see the module docstring)."""
    mean_bgr = list(
        caffe_mean_bgr
        or from_prototxt['preprocessing'].get('caffe_mean_bgr')
        or spec.caffe_mean_bgr
    )
    scale = (
        caffe_scale
        if caffe_scale is not None
        else from_prototxt['preprocessing'].get('caffe_scale', spec.caffe_scale)
    )
    config = {
        'model_name': spec.net_name,
        'backbone_only': spec.backbone_only,
        'preprocessing': {
            'channel_order': 'RGB',
            'mean_rgb': [float(m) for m in mean_bgr[::-1]],
            'scale': float(scale),
        },
        'source': {
            'caffemodel': os.path.abspath(caffemodel_path),
            'prototxt': os.path.abspath(prototxt_path) if prototxt_path else None,
            'converter_model_name': spec.name,
        },
    }
    if not spec.backbone_only:
        config['ssd_params'] = ssd_params_lib.params_to_dict(params)
        config['detection'] = dict(spec.detection, **from_prototxt['detection'])
    return config


def _note_normalisation(spec, config, config_path, log):
    """Says so when the Caffe model's input normalisation is not our pipeline's."""
    pipeline = preprocessing_factory.get_preprocessing(spec.net_name)
    mean_rgb, scale = config['preprocessing']['mean_rgb'], config['preprocessing']['scale']
    if tuple(mean_rgb) != pipeline.mean_rgb or abs(scale - pipeline.scale) > 1e-9:
        log(
            'NOTE: the Caffe model expects (RGB - %s) * %g but the %s preprocessing normalises '
            'with (RGB - %s) * %g; see %s'
            % (mean_rgb, scale, pipeline.name, list(pipeline.mean_rgb), pipeline.scale, config_path)
        )


def convert(
    caffemodel_path,
    output_path,
    model_name,
    prototxt_path=None,
    num_classes=None,
    allow_partial=False,
    backbone_scope='ssd_300_vgg',
    caffe_mean_bgr=None,
    caffe_scale=None,
    labelmap_file=None,
    labels_file=None,
    log=print,
):
    """Converts a Caffe SSD (or fc-reduced VGG16) model to a checkpoint of our nets.

    Args:
      caffemodel_path: the binary `.caffemodel`.
      output_path: checkpoint prefix to write (`dir/name.ckpt`); the model card goes to
        `<output_path>.model.json` (a backbone's conversion record to `<output_path>.json`).
      model_name: one of caffe_ssd.MODEL_NAMES.
      prototxt_path: optional deploy prototxt: anchors, DetectionOutput thresholds, BatchNorm
        eps and (when it has a transform_param) the input mean / scale come from it.
      num_classes: classes with background; default: inferred from the head shapes.
      allow_partial: write the checkpoint even with unmapped Caffe layers, missing TF variables
        or shape mismatches.
      backbone_scope: for 'vgg_16_fc_reduced', the VGG net the backbone is for.
      caffe_mean_bgr, caffe_scale: the Caffe model's preprocessing `(x_bgr - mean) * scale`,
        overriding the prototxt and the published defaults (see `check_normalisation`: the
        mean may be 1 or 3 numbers or strings of them).
      labelmap_file: the model's Caffe LabelMap (`read_labelmap`): the card's class names are
        its display names of labels 1..K-1; its labels must be exactly 0..K-1.
      labels_file: instead, class names one per line (datasets/labels.py), K-1 of them.
        Without either: `default_class_names`. At most one; none for a backbone.
      log: where the table and messages go.
    Returns:
      ConvertResult.
    Raises:
      caffe_pb.CaffeModelError, prototxt.PrototxtError, caffe_ssd.ConversionError,
      checkpoint_io.CheckpointMismatchError, OSError: with the file and what to do (an
      --output_path that names a folder, or would replace files no converter wrote: see
      checkpoint_io.check_output_path).
    """
    spec = caffe_ssd.layer_map(model_name, backbone_scope)
    caffe_mean_bgr, caffe_scale = check_normalisation(caffe_mean_bgr, caffe_scale)
    config_path = config_path_for(output_path, spec.backbone_only)
    # Before any work: a folder as the prefix, or files a conversion must not replace.
    checkpoint_io.check_output_path(output_path, [config_path])
    # The class names' file too, before the weights are read; checked against the model below.
    names_read = read_class_names_file(labelmap_file, labels_file, spec.backbone_only)
    layers = caffe_pb.read_caffemodel(caffemodel_path)
    caffe_ssd.check_model_kind(layers, spec, caffemodel_path)
    from_prototxt = {'ssd_params': {}, 'detection': {}, 'preprocessing': {}, 'bn_eps': {}}
    if prototxt_path:
        from_prototxt = caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse_file(prototxt_path), spec, prototxt_path
        )
    params, anchors_from, classes_from = _ssd_params(
        spec, layers, from_prototxt, prototxt_path, num_classes
    )
    if not spec.backbone_only:
        names, names_from, names_line, category_ids = resolve_class_names(
            labelmap_file, labels_file, names_read, params.num_classes, classes_from
        )

    conversion = caffe_ssd.convert_layers(
        layers, spec, params.batch_norm_epsilon, from_prototxt['bn_eps']
    )
    table = caffe_ssd.format_table(conversion)
    log(table)
    config = _conversion_record(
        spec, params, from_prototxt, caffemodel_path, prototxt_path, caffe_mean_bgr, caffe_scale
    )
    if not spec.backbone_only:
        if from_prototxt['detection']:
            detection_from = prototxt_path
        elif prototxt_path:  # e.g. a train.prototxt (MultiBoxLoss, no DetectionOutput)
            detection_from = (
                f'the published defaults: {prototxt_path} has no DetectionOutput layer (is it the '
                'deploy file?)'
            )
        else:
            detection_from = 'the published defaults'
        log(
            'anchors from %s; DetectionOutput %s (from %s)'
            % (anchors_from, config['detection'], detection_from)
        )
        log(names_line)
    _note_normalisation(spec, config, config_path, log)

    unmapped = ['unmapped Caffe layer %r (%s) with blobs %s' % u for u in conversion.unmapped]
    sidecar = (
        config
        if spec.backbone_only
        else model_card(config, params, names, names_from, category_ids).to_dict()
    )
    match, problems, _ = checkpoint_io.write_checkpoint(
        nets_factory.get_network(spec.net_name),
        params,
        conversion.values,
        output_path,
        allow_partial=allow_partial,
        backbone_only=spec.backbone_only,
        extra_problems=unmapped,
        sidecar_files={config_path: json.dumps(sidecar, indent=2) + '\n'},
    )
    for line in problems:
        log('WARNING: ' + line)
    log(
        'wrote %s (%d variables, %d Caffe layers mapped) and %s; re-loaded it and ran a '
        'forward pass' % (output_path, len(match.matched), len(conversion.mapped), config_path)
    )
    return ConvertResult(output_path, config_path, config, conversion, problems, table)
