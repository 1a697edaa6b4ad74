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
"""

import dataclasses
import json
import os
from typing import Dict, List

from converters import checkpoint_io
from converters import pth_reader
from converters import pytorch_ssd
from model import card as card_lib
from nets import nets_factory
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory

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


def model_card(layout, params, class_names, pth_path, class_order):
    """The model card of a converted detector."""
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
    state_dict = pytorch_ssd.strip_module_prefix(pth_reader.load_state_dict(pth_path))
    layout = (
        pytorch_ssd.get_layout(layout)
        if layout
        else pytorch_ssd.detect_layout(state_dict.keys(), pth_path)
    )
    config_path = config_path_for(output_path, layout.backbone_only)
    # The card or record it writes must not replace one no converter wrote (the layout tells
    # which: a training's model.json is `<output_path>.json` for a backbone).
    checkpoint_io.check_output_path(output_path, [config_path])
    log('%s: %s (layout %s)' % (pth_path, layout.description, layout.name))
    if layout.backbone_only:
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
        card = model_card(layout, params, conversion.class_names, pth_path, class_order)
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
    try:
        match, problems, _ = checkpoint_io.write_checkpoint(
            net_cls,
            params,
            conversion.values,
            output_path,
            allow_partial=allow_partial,
            expect_missing=layout.backbone_only,
            extra_problems=problems,
            sidecar_files={config_path: json.dumps(config, indent=2) + '\n'},
            check_end_point='block7' if layout.backbone_only else None,
        )
    except checkpoint_io.CheckpointMismatchError as e:
        raise checkpoint_io.CheckpointMismatchError(
            str(e).replace('The Caffe model', '%s (%s)' % (pth_path, layout.name))
        ) from None
    for line in problems:
        log('WARNING: ' + line)
    log(
        'wrote %s (%d variables from %d PyTorch tensors) and %s; re-loaded it and ran a forward '
        'pass' % (output_path, len(match.matched), len(conversion.mapped), config_path)
    )
    return ConvertResult(
        output_path, config_path, config, card, layout, conversion, problems, table
    )
