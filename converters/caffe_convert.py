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
"""

import dataclasses
import json
import math
import os
from typing import Dict, List

from converters import caffe_pb
from converters import caffe_ssd
from converters import checkpoint_io
from converters import prototxt
from datasets import labels as labels_lib
from model import card as card_lib
from nets import nets_factory
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory


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


def config_path_for(checkpoint_path, backbone_only=False):
    """The JSON written beside a converted checkpoint: its model card, or a backbone's record."""
    return checkpoint_path + (
        card_lib.LEGACY_CHECKPOINT_SUFFIX if backbone_only else card_lib.CHECKPOINT_CARD_SUFFIX
    )


def model_card(config, params):
    """The model card of a converted detection model (`config`: the conversion record)."""
    detection = {
        card_lib.CAFFE_DETECTION_NAMES[k]: v
        for k, v in config['detection'].items()
        if k in card_lib.CAFFE_DETECTION_NAMES
    }
    names = (
        labels_lib.VOC_CLASSES
        if params.num_classes == len(labels_lib.VOC_CLASSES) + 1
        else card_lib.default_class_names(params.num_classes)
    )
    provenance = {
        'converted_by': 'caffe_to_tensorflow.py',
        'source': config['source'],
        'time': card_lib.now(),
        'git_commit': card_lib.git_commit(),
    }
    return card_lib.ModelCard(
        config['model_name'],
        params,
        tuple(config['preprocessing']['mean_rgb']),
        config['preprocessing']['scale'],
        tuple(names),
        card_lib.DetectionSettings(**detection),
        card_id=card_lib.new_card_id(),
        provenance=provenance,
    )


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
    if flag is not None:
        return flag
    if inferred is not None:
        return inferred
    return from_prototxt if from_prototxt is not None else default


def _preset_params(params, spec):
    """Without a prototxt: the published anchor sizes of the dataset the class count suggests."""
    dataset = 'coco' if params.num_classes == 81 else 'voc'
    sizes = ssd_params_lib.anchor_size_preset(spec.net_name, spec.anchor_presets[dataset])
    return params._replace(anchor_sizes=tuple(sizes)), dataset


def _ssd_params(spec, layers, from_prototxt, prototxt_path, num_classes):
    """(SSDParams of the converted net, where its anchors come from): the class count from the
    flag, else the heads, else the prototxt; anchors from the prototxt's PriorBox layers, else
    the published preset of the dataset the class count suggests."""
    base = nets_factory.get_network(spec.net_name).default_params
    inferred = None if spec.backbone_only else caffe_ssd.infer_num_classes(layers, spec)
    proto_params = dict(from_prototxt['ssd_params'])
    proto_classes = proto_params.pop('num_classes', None)
    classes = _num_classes(num_classes, inferred, proto_classes, base.num_classes)
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
        return ssd_params_lib.params_from_dict(params, proto_params), 'the prototxt PriorBox layers'
    if spec.backbone_only:
        return params, None
    # A prototxt without PriorBox layers (e.g. one cut down for another runtime) gives no
    # anchors: the preset, as without a prototxt, not the net's defaults.
    params, dataset = _preset_params(params, spec)
    return params, 'the published %s preset (%s)' % (
        dataset.upper(),
        '%s has no PriorBox layers' % prototxt_path
        if prototxt_path
        else 'no --prototxt_path; pass the deploy prototxt to take them from the model',
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
    layers = caffe_pb.read_caffemodel(caffemodel_path)
    from_prototxt = {'ssd_params': {}, 'detection': {}, 'preprocessing': {}, 'bn_eps': {}}
    if prototxt_path:
        from_prototxt = caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse_file(prototxt_path), spec, prototxt_path
        )
    params, anchors_from = _ssd_params(spec, layers, from_prototxt, prototxt_path, num_classes)

    conversion = caffe_ssd.convert_layers(
        layers, spec, params.batch_norm_epsilon, from_prototxt['bn_eps']
    )
    table = caffe_ssd.format_table(conversion)
    log(table)
    config = _conversion_record(
        spec, params, from_prototxt, caffemodel_path, prototxt_path, caffe_mean_bgr, caffe_scale
    )
    if not spec.backbone_only:
        log('anchors from %s; DetectionOutput %s' % (anchors_from, config['detection']))
    _note_normalisation(spec, config, config_path, log)

    unmapped = ['unmapped Caffe layer %r (%s) with blobs %s' % u for u in conversion.unmapped]
    sidecar = config if spec.backbone_only else model_card(config, params).to_dict()
    match, problems, _ = checkpoint_io.write_checkpoint(
        nets_factory.get_network(spec.net_name),
        params,
        conversion.values,
        output_path,
        allow_partial=allow_partial,
        expect_missing=spec.backbone_only,
        extra_problems=unmapped,
        sidecar_files={config_path: json.dumps(sidecar, indent=2) + '\n'},
        check_end_point='block7' if spec.backbone_only else None,
    )
    for line in problems:
        log('WARNING: ' + line)
    log(
        'wrote %s (%d variables, %d Caffe layers mapped) and %s; re-loaded it and ran a '
        'forward pass' % (output_path, len(match.matched), len(conversion.mapped), config_path)
    )
    return ConvertResult(output_path, config_path, config, conversion, problems, table)
