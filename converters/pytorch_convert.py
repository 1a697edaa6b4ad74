"""PyTorch SSD weights (`.pth`) -> our TF checkpoint plus its model card, without PyTorch.

`convert` is what `pytorch_to_tensorflow.py` runs: read the `.pth` (pth_reader: no code from
the file runs), name its layout from its keys (pytorch_ssd.LAYOUTS), map the tensors by name,
print the table, write `<output_path>` (checkpoint) and beside it the model card
`<output_path>.model.json` (model/card.py) with the source's anchors, input normalisation,
class names and post-processing, or, for a backbone (no detection model), the conversion
record `<output_path>.json`; then re-load the checkpoint and run a forward pass as a check.

torchvision clips decoded boxes to the image before NMS: the card's `detection.clip`. Its
`provenance.source_settings` records what the source does that the card has no field for: its
box decoding clamps dw/dh at log(1000/16) (reached only by codes above 20), and the exact source
anchor generator.

Class names: the layout's own (`pytorch_ssd.Layout.class_names`, placeholders `class_<i>` when it
has none for the file's class count), or `--labels_file` (one name per line, background
excluded), which replaces them when it has one name per class of the converted net. The card's
`provenance.class_names` records which, and the file. The card's `category_ids`: torchvision's
COCO category ids of the converted classes (`pytorch_ssd.Conversion.category_ids`: the 80 used
ids with --class_order=contiguous; 1..90, the labels themselves, with source), so detections
name COCO's ids; none for other sources, and none with a --labels_file whose names are not the
layout's (a model trained on other classes).
"""

import dataclasses
import json
import os
from typing import Dict, List

from converters import checkpoint_io
from converters import pth_reader
from converters import pytorch_ssd
from datasets import labels as labels_lib
from model import card as card_lib
from nets import nets_factory
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory
from tf_extended import texts

BACKBONE_SCOPES = ('ssd_300_vgg', 'ssd_512_vgg')


@dataclasses.dataclass
class ConvertResult:
    """What `convert` wrote and found.

    checkpoint_path / config_path: the files written (config_path: the model card, or a
      backbone's conversion record).
    config: the JSON content written to config_path.
    card: the ModelCard (None for a backbone).
    layout: the pytorch_ssd.Layout used.
    conversion: the pytorch_ssd.Conversion (table rows, skipped and unmapped tensors).
    problems: problem lines (empty unless allow_partial let them through).
    table: the printed mapping table.
    """

    checkpoint_path: str
    config_path: str
    config: Dict
    card: object
    layout: pytorch_ssd.Layout
    conversion: pytorch_ssd.Conversion
    problems: List[str]
    table: str


def config_path_for(checkpoint_path, backbone_only=False):
    """The JSON written beside a converted checkpoint: its model card, or a backbone's record."""
    return checkpoint_path + (
        card_lib.LEGACY_CHECKPOINT_SUFFIX if backbone_only else card_lib.CHECKPOINT_CARD_SUFFIX
    )


def source_params(layout, num_classes, net_name='ssd_300_vgg'):
    """SSDParams of our net for a detector layout: the source's anchors and class count.

    ssd.pytorch builds every class count but 21 with its `coco` config, whose PriorBox sizes are
    21, 45, 99, 153, 207, 261, 315 (clamped the same way).
    """
    base = nets_factory.get_network(net_name).default_params
    fields = ssd_params_lib.anchor_preset_params(net_name, layout.anchor_preset)
    if _ssd_pytorch_coco(layout, num_classes):
        fields['anchor_sizes'] = tuple(
            tuple(s) for s in ssd_params_lib.anchor_size_preset(net_name, 'tf_port_coco')
        )
    return base._replace(num_classes=num_classes, **fields)


def _ssd_pytorch_coco(layout, num_classes):
    """Whether ssd.pytorch built this model with its `coco` config (its train.py takes
    `(coco, voc)[num_classes == 21]`)."""
    return layout.name == 'ssd_pytorch_ssd300' and num_classes != 21


def _anchor_description(layout, num_classes):
    preset = '%s %s' % (
        layout.anchor_preset,
        ssd_params_lib.ANCHOR_PRESET_SETTINGS.get(layout.anchor_preset, {}),
    )
    if _ssd_pytorch_coco(layout, num_classes):
        return '%s with the coco config\'s sizes (%d classes, not 21)' % (preset, num_classes)
    return preset


def _source_settings(layout, num_classes):
    settings = {
        'anchor_preset': layout.anchor_preset,
        'anchor_settings': ssd_params_lib.ANCHOR_PRESET_SETTINGS.get(layout.anchor_preset, {}),
    }
    if layout.name == 'torchvision_ssd300':
        settings.update(
            anchor_generator='DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]], '
            'scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], '
            'steps=[8, 16, 32, 64, 100, 300], clip=True)',
            box_coder='BoxCoder(weights=(10, 10, 5, 5)), dw/dh clamped at log(1000/16)',
            transform='GeneralizedRCNNTransform: 0-1 RGB, Normalize(mean=[0.48235, 0.45882, '
            '0.40784], std=[1/255]*3), bilinear resize to 300x300',
        )
    elif layout.name == 'ssd_pytorch_ssd300':
        sizes = (
            'PriorBox(coco): min_sizes [21, 45, 99, 153, 207, 261], max_sizes [45, 99, 153, 207, '
            '261, 315]'
            if _ssd_pytorch_coco(layout, num_classes)
            else 'PriorBox(voc): min_sizes [30, 60, 111, 162, 213, 264], max_sizes [60, 111, 162, '
            '213, 264, 315]'
        )
        settings.update(
            anchor_generator=sizes + ', steps [8, 16, 32, 64, 100, 300], clip True (cx, cy, w, '
            'h clamped to [0, 1])',
            box_coder='decode(variances [0.1, 0.2])',
            transform='cv2 BGR image resized to 300x300, minus (104, 117, 123), then RGB order',
            per_image_limit='none: Detect\'s per-image top_k line fills a copy and has no effect',
        )
    return settings


def resolve_class_names(layout, conversion, class_order, labels_file=None, labels=None):
    """(class names of labels 1.., provenance record, log line) of a converted detector: the
    labels file's (`labels`, read from `labels_file`) when given, else the layout's own names
    (`conversion.class_names`: placeholders where the layout has none for this class count).

    Raises:
      pytorch_ssd.ConversionError: the labels file does not have one name per class of the
      converted net (after `class_order`).
    """
    count = conversion.num_classes - 1
    if labels is not None:
        names = tuple(labels)
        if len(names) != count:
            hint = labels_lib.background_line_note(names, count)
            if layout.name == 'torchvision_ssd300' and class_order == 'source' and len(names) == 80:
                hint = ' (80 names are for --class_order=contiguous, the 80 used COCO ids)'
            raise pytorch_ssd.ConversionError(
                f'{labels_file}: {len(names)} class names, but the converted {layout.name} model '
                f'has {count} classes besides the background (--class_order={class_order}){hint}; '
                f'give one name per class in label order, background excluded'
            )
        return (
            names,
            {'from': 'labels_file', 'path': os.path.abspath(labels_file)},
            f'class names: the {len(names)} of the labels file {labels_file}: '
            f'{texts.listed(names, 5)}',
        )
    names = tuple(conversion.class_names)
    if names == card_lib.default_class_names(conversion.num_classes):
        note = (
            f'placeholders {names[0]}..{names[-1]} (the {layout.name} layout has no class list '
            f'for {conversion.num_classes} classes)'
        )
        return (
            names,
            {'from': 'default', 'note': note},
            f'NOTE: class names: {note}; name them with --labels_file=<one class name per line>',
        )
    note = f"the {layout.name} layout's own ({class_order} order)"
    return (
        names,
        {'from': 'default', 'note': note},
        f'class names: {note}: {texts.listed(names, 5)}; a model trained on other classes needs '
        f'--labels_file=<one class name per line>',
    )


def model_card(
    layout, params, class_names, pth_path, class_order, class_names_from=None, category_ids=None
):
    """The model card of a converted detector (class_names_from: where the class names come
    from, the card's `provenance.class_names`; default: the layout; category_ids: the card's,
    see the module docstring)."""
    detection = dict(layout.detection)
    provenance = {
        'converted_by': 'pytorch_to_tensorflow.py',
        'source': {
            'pth': os.path.abspath(pth_path),
            'layout': layout.name,
            'description': layout.description,
            'published_files': list(layout.files),
            'published': layout.published,
            'class_order': class_order,
        },
        'class_names': class_names_from
        or {'from': 'default', 'note': f"the {layout.name} layout's own"},
        'source_settings': _source_settings(layout, params.num_classes),
        'time': card_lib.now(),
        'git_commit': card_lib.git_commit(),
    }
    return card_lib.ModelCard(
        params_model_name(params),
        params,
        tuple(float(m) for m in layout.mean_rgb),
        float(layout.scale),
        tuple(class_names),
        card_lib.DetectionSettings(**detection),
        card_id=card_lib.new_card_id(),
        category_ids=category_ids,
        provenance=provenance,
    )


def params_model_name(params):
    return 'ssd_512_vgg' if tuple(params.img_shape) == (512, 512) else 'ssd_300_vgg'


def convert(
    pth_path,
    output_path,
    layout=None,
    num_classes=None,
    class_order='source',
    backbone_scope='ssd_300_vgg',
    allow_partial=False,
    labels_file=None,
    log=print,
):
    """Converts a PyTorch SSD (or VGG base) `.pth` to a checkpoint of our VGG SSD nets.

    Args:
      pth_path: the `.pth` file (zip or legacy format).
      output_path: checkpoint prefix to write (`dir/name.ckpt`).
      layout: a pytorch_ssd.LAYOUTS name; default: recognised from the keys.
      num_classes: classes with background before `class_order`; default: from the heads.
      class_order: 'source' or 'contiguous' (pytorch_ssd.class_order_channels).
      backbone_scope: for the VGG base layouts, the net whose backbone variables to write.
      allow_partial: write the checkpoint even with unmapped or missing tensors.
      labels_file: class names one per line (background excluded) replacing the layout's own;
        it must have one per class of the converted net (after `class_order`). Not for a VGG
        base (no classes).
      log: where the table and messages go.
    Returns:
      ConvertResult.
    Raises:
      pth_reader.PthError, pytorch_ssd.ConversionError, checkpoint_io.CheckpointMismatchError,
      OSError: with the file and what to do (an --output_path that names a folder, or would
      replace files no converter wrote: see checkpoint_io.check_output_path).
    """
    # Before any work: a folder as the prefix, or a checkpoint no converter wrote there.
    checkpoint_io.check_output_path(output_path)
    labels = (
        labels_lib.read_labels_flag(labels_file, pytorch_ssd.ConversionError)
        if labels_file
        else None
    )
    state_dict = pytorch_ssd.strip_module_prefix(pth_reader.load_state_dict(pth_path))
    if layout:
        layout = pytorch_ssd.get_layout(layout)
        pytorch_ssd.check_layout_fits(layout, state_dict.keys(), pth_path)
    else:
        layout = pytorch_ssd.detect_layout(state_dict.keys(), pth_path)
    config_path = config_path_for(output_path, layout.backbone_only)
    # The card or record it writes must not replace one no converter wrote (the layout tells
    # which: a training's model.json is `<output_path>.json` for a backbone).
    checkpoint_io.check_output_path(output_path, [config_path])
    log('%s: %s (layout %s)' % (pth_path, layout.description, layout.name))
    if layout.backbone_only:
        if labels_file:
            raise pytorch_ssd.ConversionError(
                f'--labels_file: {pth_path} is a VGG base (layout {layout.name}), which has no '
                f'classes to name; convert it without the flag'
            )
        if backbone_scope not in BACKBONE_SCOPES:
            raise pytorch_ssd.ConversionError(
                'a VGG base is a backbone for %s, not %r'
                % (' or '.join(BACKBONE_SCOPES), backbone_scope)
            )
        net_name = backbone_scope
    else:
        net_name = 'ssd_300_vgg'
        if class_order == 'contiguous' and layout.name != 'torchvision_ssd300':
            raise pytorch_ssd.ConversionError(
                '--class_order=contiguous drops the unused COCO ids of torchvision_ssd300; %s '
                'has none (use source)' % layout.name
            )
    net_cls = nets_factory.get_network(net_name)
    conversion = pytorch_ssd.convert_state_dict(
        state_dict, layout, scope=net_name, num_classes=num_classes, class_order=class_order
    )
    table = pytorch_ssd.format_table(conversion)
    log(table)

    if layout.backbone_only:
        params = net_cls.default_params
        card = None
        config = {
            'model_name': net_name,
            'backbone_only': True,
            'preprocessing': {
                'channel_order': 'RGB',
                'mean_rgb': [float(m) for m in layout.mean_rgb],
                'scale': float(layout.scale),
            },
            'source': {
                'pth': os.path.abspath(pth_path),
                'layout': layout.name,
                'description': layout.description,
                'published_files': list(layout.files),
            },
            'skipped': sorted({why for _, why in conversion.skipped}),
        }
    else:
        params = source_params(layout, conversion.num_classes, net_name)
        names, names_from, names_line = resolve_class_names(
            layout, conversion, class_order, labels_file, labels
        )
        card = model_card(
            layout,
            params,
            names,
            pth_path,
            class_order,
            names_from,
            # A labels file naming other classes: the ids are of the layout's classes.
            None if names != conversion.class_names else conversion.category_ids,
        )
        config = card.to_dict()
        log(
            'anchors: preset %s; detection %s; input (RGB - %s) * %g; %d classes (%s order)'
            % (
                _anchor_description(layout, conversion.num_classes),
                layout.detection,
                [round(m, 5) for m in layout.mean_rgb],
                layout.scale,
                conversion.num_classes,
                class_order,
            )
        )
        log(names_line)
    pipeline = preprocessing_factory.get_preprocessing(net_name)
    if tuple(layout.mean_rgb) != pipeline.mean_rgb or layout.scale != pipeline.scale:
        log(
            'NOTE: the source normalises as (RGB - %s) * %g; the %s training preprocessing uses '
            '(RGB - %s) * %g%s'
            % (
                [round(m, 5) for m in layout.mean_rgb],
                layout.scale,
                pipeline.name,
                list(pipeline.mean_rgb),
                pipeline.scale,
                '' if card is None else '; evaluation, export and detection take the card\'s',
            )
        )

    problems = ['PyTorch tensor %s is not mapped to any variable' % k for k in conversion.unmapped]
    problems += [
        'the %s layout needs PyTorch tensor %s, which the file lacks' % (layout.name, k)
        for k in conversion.missing
    ]
    match, problems, _ = checkpoint_io.write_checkpoint(
        net_cls,
        params,
        conversion.values,
        output_path,
        allow_partial=allow_partial,
        backbone_only=layout.backbone_only,
        extra_problems=problems,
        sidecar_files={config_path: json.dumps(config, indent=2) + '\n'},
        origin=checkpoint_io.Origin(f'{pth_path} ({layout.name})', 'PyTorch tensor', '--layout'),
    )
    for line in problems:
        log('WARNING: ' + line)
    log(
        'wrote %s (%d variables from %d PyTorch tensors) and %s; re-loaded it and ran a forward '
        'pass' % (output_path, len(match.matched), len(conversion.mapped), config_path)
    )
    return ConvertResult(
        output_path, config_path, config, card, layout, conversion, problems, table
    )
