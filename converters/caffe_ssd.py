"""Maps the layers of Caffe SSD models onto the variables of our nets, by Caffe layer name.

Pure numpy: `convert_layers` turns `caffe_pb.CaffeLayer`s into `{tf variable name: array}`;
`ssd_config_from_prototxt` reads the anchor, preprocessing and DetectionOutput settings of a
deploy prototxt. Building the TF graph and writing the checkpoint is `tf_checkpoint`'s job.

Layouts: Caffe conv weights are `[out, in/group, kh, kw]`; TF conv2d wants `[kh, kw, in, out]`
and TF depthwise `[kh, kw, in, 1]`. The first conv of a Caffe net sees BGR; its input channels
are reversed so that our nets take RGB.

Untrusted files: every prototxt value read is type- and range-checked through the prototxt
getters (a `prototxt.PrototxtValueError` names file, layer, field, line, value and what was
expected), convolution / pooling geometry included although conversion does not use it (absurd
kernel, stride, pad values are refused, not ignored); blob shapes are checked before use.
"""

import collections
import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from converters import prototxt
from model import card as card_lib

# Caffe BatchNormParameter.eps default.
CAFFE_BN_EPS = 1e-5
_INT32_MAX = (1 << 31) - 1
_MAX_PIXELS = 100000.0  # prior sizes and steps, in input pixels


class ConversionError(ValueError):
    """The Caffe model does not fit the requested net."""


@dataclasses.dataclass(frozen=True)
class ConvTarget:
    """Where one Caffe Convolution layer goes.

    scope: TF scope below the model scope (`conv1/conv1_1`).
    depthwise: the Caffe layer has group == channels; TF variable `depthwise_weights`.
    batch_norm: our conv is followed by `<scope>/BatchNorm` (no `biases` variable).
    head: 'loc' / 'conf' for the box-prediction convs of feature layer `feature`, else None.
    """

    scope: str
    depthwise: bool = False
    batch_norm: bool = False
    head: Optional[str] = None
    feature: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class LayerMap:
    """How a Caffe model maps onto one of our nets.

    name: the converter's model name (`--model_name`).
    net_name: the nets_factory name of the TF net the checkpoint is for.
    scope: TF variable scope of that net.
    convs: Caffe Convolution layer name -> ConvTarget.
    first_conv: the Caffe layer that sees the BGR image.
    l2_norms: Caffe Normalize layer name -> TF variable (below the scope).
    feature_sources: Caffe blob each feature layer's PriorBox reads, in our anchor order.
    backbone_only: a backbone checkpoint (heads and extra layers are expected to be missing).
    caffe_mean_bgr, caffe_scale: the preprocessing the Caffe model was trained with,
      `(x_bgr - mean) * scale`, used when the prototxt and flags give none.
    detection: the published DetectionOutput settings, used when no prototxt gives them.
    anchor_presets: nets.ssd_params preset for anchor sizes when no prototxt is given,
      by dataset ('voc' for 21 classes, 'coco' for 81).
    """

    name: str
    net_name: str
    scope: str
    convs: Dict[str, ConvTarget]
    first_conv: str
    l2_norms: Dict[str, str]
    feature_sources: Tuple[str, ...]
    backbone_only: bool
    caffe_mean_bgr: Tuple[float, float, float]
    caffe_scale: float
    detection: Dict[str, float]
    anchor_presets: Dict[str, str]


_VGG_DETECTION = {
    'nms_threshold': 0.45,
    'top_k': 400,
    'keep_top_k': 200,
    'confidence_threshold': 0.01,
}
_MOBILENET_DETECTION = {
    'nms_threshold': 0.45,
    'top_k': 100,
    'keep_top_k': 100,
    'confidence_threshold': 0.25,
}


def _vgg_backbone():
    convs = collections.OrderedDict()
    for block, count in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        for i in range(1, count + 1):
            convs['conv%d_%d' % (block, i)] = ConvTarget('conv%d/conv%d_%d' % (block, block, i))
    convs['fc6'] = ConvTarget('conv6')
    convs['fc7'] = ConvTarget('conv7')
    return convs


def _vgg_spec(name, net_name, extra_blocks):
    """extra_blocks: (caffe index, TF block, name of the second conv) of the extra layers."""
    convs = _vgg_backbone()
    sources = ['conv4_3_norm', 'fc7']
    boxes = ['block4_box', 'block7_box']
    for caffe_index, block, second in extra_blocks:
        convs['conv%d_1' % caffe_index] = ConvTarget('block%d/conv1x1' % block)
        convs['conv%d_2' % caffe_index] = ConvTarget('block%d/%s' % (block, second))
        sources.append('conv%d_2' % caffe_index)
        boxes.append('block%d_box' % block)
    for i, (source, box) in enumerate(zip(sources, boxes)):
        convs[source + '_mbox_loc'] = ConvTarget(box + '/conv_loc', head='loc', feature=i)
        convs[source + '_mbox_conf'] = ConvTarget(box + '/conv_cls', head='conf', feature=i)
    return LayerMap(
        name=name,
        net_name=net_name,
        scope=net_name,
        convs=dict(convs),
        first_conv='conv1_1',
        l2_norms={'conv4_3_norm': 'block4_box/L2Normalization/gamma'},
        feature_sources=tuple(sources),
        backbone_only=False,
        caffe_mean_bgr=(104.0, 117.0, 123.0),
        caffe_scale=1.0,
        detection=dict(_VGG_DETECTION),
        anchor_presets={
            'voc': 'caffe_voc',
            'coco': 'caffe_coco' if '512' in name else 'tf_port_coco',
        },
    )


def _mobilenet_spec():
    convs = collections.OrderedDict()
    convs['conv0'] = ConvTarget('conv0', batch_norm=True)
    for n in range(1, 14):
        convs['conv%d/dw' % n] = ConvTarget('conv%d/dw' % n, depthwise=True, batch_norm=True)
        convs['conv%d' % n] = ConvTarget('conv%d' % n, batch_norm=True)
    for n in range(14, 18):
        for k in (1, 2):
            convs['conv%d_%d' % (n, k)] = ConvTarget('conv%d_%d' % (n, k), batch_norm=True)
    sources = ('conv11', 'conv13', 'conv14_2', 'conv15_2', 'conv16_2', 'conv17_2')
    for i, source in enumerate(sources):
        for head in ('loc', 'conf'):
            name = '%s_mbox_%s' % (source, head)
            convs[name] = ConvTarget(name, head=head, feature=i)
    return LayerMap(
        name='ssd_300_mobilenet',
        net_name='ssd_300_mobilenet',
        scope='ssd_300_mobilenet',
        convs=dict(convs),
        first_conv='conv0',
        l2_norms={},
        feature_sources=sources,
        backbone_only=False,
        caffe_mean_bgr=(127.5, 127.5, 127.5),
        caffe_scale=0.007843,
        detection=dict(_MOBILENET_DETECTION),
        anchor_presets={'voc': 'mobilenet_ssd', 'coco': 'mobilenet_ssd'},
    )


def _fc_reduced_spec(backbone_scope):
    vgg = _vgg_spec(backbone_scope, backbone_scope, ())
    return dataclasses.replace(
        vgg,
        name='vgg_16_fc_reduced',
        convs=_vgg_backbone(),
        l2_norms={},
        feature_sources=(),
        backbone_only=True,
    )


_SSD300_EXTRAS = ((6, 8, 'conv3x3'), (7, 9, 'conv3x3'), (8, 10, 'conv3x3'), (9, 11, 'conv3x3'))
_SSD512_EXTRAS = _SSD300_EXTRAS + ((10, 12, 'conv4x4'),)
MODEL_NAMES = ('ssd_300_vgg', 'ssd_512_vgg', 'ssd_300_mobilenet', 'vgg_16_fc_reduced')
VGG_BACKBONE_SCOPES = ('ssd_300_vgg', 'ssd_512_vgg')


def layer_map(model_name, backbone_scope='ssd_300_vgg'):
    """The `LayerMap` of a converter model name.

    Args:
      model_name: one of MODEL_NAMES.
      backbone_scope: for 'vgg_16_fc_reduced', the net whose backbone variables are written.
    """
    if model_name == 'ssd_300_vgg':
        return _vgg_spec('ssd_300_vgg', 'ssd_300_vgg', _SSD300_EXTRAS)
    if model_name == 'ssd_512_vgg':
        return _vgg_spec('ssd_512_vgg', 'ssd_512_vgg', _SSD512_EXTRAS)
    if model_name == 'ssd_300_mobilenet':
        return _mobilenet_spec()
    if model_name == 'vgg_16_fc_reduced':
        if backbone_scope not in VGG_BACKBONE_SCOPES:
            raise ConversionError(
                'vgg_16_fc_reduced is a backbone for %s, not %r'
                % (' or '.join(VGG_BACKBONE_SCOPES), backbone_scope)
            )
        return _fc_reduced_spec(backbone_scope)
    raise ConversionError(
        'unknown model %r: the Caffe converter knows %s.' % (model_name, ', '.join(MODEL_NAMES))
    )


def check_model_kind(layers, spec, source):
    """Raises ConversionError naming `source` when the Caffe model's layers are clearly another
    SSD kind's than `spec`'s (more than twice as many of its Convolution layer names), with the
    --model_name to pass: the conversion would otherwise list every layer as unmapped."""
    names = {layer.name for layer in layers if layer.blobs}
    given = len(names & set(spec.convs))
    counts = {
        name: len(names & set(layer_map(name).convs))
        for name in MODEL_NAMES
        if name not in (spec.name, 'vgg_16_fc_reduced')
    }
    best = max(counts, key=counts.get)
    # Every layer of `spec` there: its conversion works (a backbone from a whole SSD model).
    if counts[best] > 2 * given and given < len(spec.convs):
        raise ConversionError(
            f'{source}: a {best} model, not {spec.name} ({counts[best]} of its '
            f'{len(layer_map(best).convs)} convolution layers are there, {given} of '
            f'{spec.name}\'s {len(spec.convs)}); pass --model_name={best}.'
        )


@dataclasses.dataclass
class MappedLayer:
    """One row of the conversion table: a Caffe layer and the TF variables it filled."""

    caffe_name: str
    caffe_type: str
    blob_shapes: List[Tuple[int, ...]]
    tf_variables: List[str]


@dataclasses.dataclass
class Conversion:
    """What `convert_layers` produced.

    values: full TF variable name (without ':0') -> float32 array in TF layout.
    mapped: the table rows, in Caffe file order.
    unmapped: Caffe layers holding blobs that no target consumed (name, type, blob shapes).
    """

    values: Dict[str, np.ndarray]
    mapped: List[MappedLayer]
    unmapped: List[Tuple[str, str, List[Tuple[int, ...]]]]


def _shapes(layer):
    return [tuple(b.shape) for b in layer.blobs]


def _check_type(layer, expected):
    if layer.type != expected:
        raise ConversionError(
            'Caffe layer %r is a %s layer; expected %s for this name'
            % (layer.name, layer.type, expected)
        )


def _conv_weights(layer, target, reverse_input):
    if not layer.blobs or layer.blobs[0].ndim != 4:
        raise ConversionError(
            'Caffe Convolution layer %r: expected a 4-D weight blob '
            '[out, in/group, kh, kw], got blobs of shapes %s' % (layer.name, _shapes(layer))
        )
    w = layer.blobs[0]
    if reverse_input:
        w = w[:, ::-1]
    if target.depthwise:
        if w.shape[1] != 1 or (layer.group is not None and layer.group != w.shape[0]):
            raise ConversionError(
                'Caffe layer %r should be depthwise (group == channels, '
                'weights [C, 1, kh, kw]) but has weights %s and group %s'
                % (layer.name, w.shape, layer.group)
            )
        return np.ascontiguousarray(w.transpose(2, 3, 0, 1))
    if layer.group not in (None, 1):
        raise ConversionError(
            'Caffe layer %r is a grouped convolution (group %d) but %s is a '
            'plain conv2d' % (layer.name, layer.group, target.scope)
        )
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _batch_norm_values(conv, bias, bn, scale, caffe_eps, tf_eps):
    """gamma, beta, moving_mean, moving_variance for our batch norm after `conv`.

    bias: the conv's bias or None; bn / scale: the Caffe BatchNorm / Scale layers or None.
    Caffe BatchNorm stores [mean * f, var * f, f] (f the moving-average normaliser; f == 0
    means zero statistics) and computes (x - mean) / sqrt(var + caffe_eps); a following Scale
    layer holds gamma (and beta). Without BatchNorm (the merged-BN deploys) the conv bias is
    the whole affine part: mean 0, var 1, gamma sqrt(1 + eps) makes the scale exactly 1.
    """
    channels = conv.blobs[0].shape[0]
    if bn is None:
        beta = bias if bias is not None else np.zeros(channels, np.float32)
        return {
            'gamma': np.full(channels, math.sqrt(1.0 + tf_eps), np.float32),
            'beta': beta.astype(np.float32),
            'moving_mean': np.zeros(channels, np.float32),
            'moving_variance': np.ones(channels, np.float32),
        }
    if len(bn.blobs) != 3:
        raise ConversionError(
            'Caffe BatchNorm layer %r: expected 3 blobs [mean*f, var*f, f], '
            'got %s' % (bn.name, _shapes(bn))
        )
    if bn.blobs[2].size != 1:
        raise ConversionError(
            'Caffe BatchNorm layer %r: blob 2 (the moving-average factor f) '
            'has shape %s; expected one value' % (bn.name, bn.blobs[2].shape)
        )
    for index, what in ((0, 'mean*f'), (1, 'var*f')):
        if bn.blobs[index].size != channels:
            raise ConversionError(
                'Caffe BatchNorm layer %r: blob %d (%s) has %d values for the %d '
                'channels of %r' % (bn.name, index, what, bn.blobs[index].size, channels, conv.name)
            )
    f = float(bn.blobs[2].reshape(-1)[0])
    factor = 0.0 if f == 0 else 1.0 / f
    mean = bn.blobs[0].reshape(-1).astype(np.float64) * factor
    # Our eps may differ from the Caffe layer's: fold the difference into the variance.
    var = bn.blobs[1].reshape(-1).astype(np.float64) * factor + caffe_eps - tf_eps
    if bias is not None:
        mean = mean - bias
    if scale is not None:
        if not 1 <= len(scale.blobs) <= 2:
            raise ConversionError(
                'Caffe Scale layer %r: expected blobs [gamma] or [gamma, beta],'
                ' got %s' % (scale.name, _shapes(scale))
            )
        gamma = scale.blobs[0].reshape(-1)
        beta = (
            scale.blobs[1].reshape(-1) if len(scale.blobs) == 2 else np.zeros(channels, np.float32)
        )
    else:
        gamma, beta = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    values = {'gamma': gamma, 'beta': beta, 'moving_mean': mean, 'moving_variance': var}
    for key, value in values.items():
        if value.shape != (channels,):
            raise ConversionError(
                'Caffe layers after %r: %s has %d values for %d channels'
                % (conv.name, key, value.size, channels)
            )
    return {key: value.astype(np.float32) for key, value in values.items()}


def _layers_by_name(layers):
    """{name: layer}; a name twice with blobs is an error (layers are mapped by name)."""
    by_name = {}
    for layer in layers:
        if layer.name in by_name and layer.blobs:
            raise ConversionError(
                'Caffe layer name %r occurs twice; layers are mapped by name' % layer.name
            )
        if layer.blobs or layer.name not in by_name:
            by_name[layer.name] = layer
    return by_name


class _Mapping:
    """The values found so far and which Caffe layer gave which TF variables."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.values, self.rows = {}, {}

    def add(self, layer, values):
        """Records `values` ({variable name below the scope: array}) as coming from `layer`."""
        names = [self.prefix + name for name in values]
        self.values.update(zip(names, values.values()))
        row = self.rows.setdefault(
            layer.name, MappedLayer(layer.name, layer.type, _shapes(layer), [])
        )
        row.tf_variables.extend(names)


def _conv_bias(layer):
    bias = layer.blobs[1].reshape(-1) if len(layer.blobs) > 1 else None
    if bias is not None and bias.size != layer.blobs[0].shape[0]:
        raise ConversionError(
            'Caffe Convolution layer %r: the bias blob has %d values for %d '
            'output channels (weights %s)'
            % (layer.name, bias.size, layer.blobs[0].shape[0], layer.blobs[0].shape)
        )
    return bias


def _batch_norm_layers(by_name, caffe_name):
    """The conv's (BatchNorm, Scale) layers, each None when absent (a Scale without its
    BatchNorm is ignored: merged models fold both into the conv's bias)."""
    bn, scale = by_name.get(caffe_name + '/bn'), by_name.get(caffe_name + '/scale')
    if bn is None:
        return None, None
    _check_type(bn, 'BatchNorm')
    if scale is not None:
        _check_type(scale, 'Scale')
    return bn, scale


def _map_conv(mapping, layer, target, is_first, by_name, bn_eps, tf_bn_epsilon):
    """Maps one Caffe convolution (with its BatchNorm / Scale layers) onto `target`."""
    _check_type(layer, 'Convolution')
    bias = _conv_bias(layer)
    weights = {
        target.scope + ('/depthwise_weights' if target.depthwise else '/weights'): _conv_weights(
            layer, target, is_first
        )
    }
    if not target.batch_norm:
        if bias is not None:
            weights[target.scope + '/biases'] = bias.astype(np.float32)
        mapping.add(layer, weights)
        return
    bn, scale = _batch_norm_layers(by_name, layer.name)
    caffe_eps = None
    if bn is not None:
        caffe_eps = bn_eps.get(bn.name)
        if caffe_eps is None:
            caffe_eps = bn.eps if bn.eps is not None else CAFFE_BN_EPS
    bn_values = {
        target.scope + '/BatchNorm/' + key: value
        for key, value in _batch_norm_values(
            layer, bias, bn, scale, caffe_eps, tf_bn_epsilon
        ).items()
    }
    if bn is None:  # Merged: the statistics come from the conv's bias.
        mapping.add(layer, dict(weights, **bn_values))
        return
    mapping.add(layer, weights)
    mapping.add(bn, {k: v for k, v in bn_values.items() if 'moving' in k})
    if scale is not None:
        mapping.add(scale, {k: v for k, v in bn_values.items() if 'moving' not in k})


def convert_layers(layers, spec, tf_bn_epsilon=CAFFE_BN_EPS, bn_eps=None):
    """Converts Caffe layers to TF variable values, by layer name.

    Args:
      layers: list of `caffe_pb.CaffeLayer`.
      spec: the `LayerMap`.
      tf_bn_epsilon: the epsilon of our nets' batch norm.
      bn_eps: optional {Caffe BatchNorm layer name: eps} (from the prototxt); otherwise the eps
        stored in the caffemodel, else Caffe's default 1e-5.
    Returns:
      `Conversion`. Caffe layers the spec does not name are listed in `unmapped` when they
      hold blobs; Caffe layers the spec names but the model lacks simply produce no values
      (the caller reports the TF variables left without a value).
    Raises:
      ConversionError: duplicate layer names, wrong layer types or blob shapes.
    """
    by_name = _layers_by_name(layers)
    mapping = _Mapping(spec.scope + '/')
    for caffe_name, target in spec.convs.items():
        layer = by_name.get(caffe_name)
        if layer is not None and layer.blobs:
            _map_conv(
                mapping,
                layer,
                target,
                caffe_name == spec.first_conv,
                by_name,
                bn_eps or {},
                tf_bn_epsilon,
            )
    for caffe_name, tf_name in spec.l2_norms.items():
        layer = by_name.get(caffe_name)
        if layer is not None and layer.blobs:
            _check_type(layer, 'Normalize')
            mapping.add(layer, {tf_name: layer.blobs[0].reshape(-1).astype(np.float32)})
    order = {layer.name: i for i, layer in enumerate(layers)}
    mapped = sorted(mapping.rows.values(), key=lambda row: order[row.caffe_name])
    unmapped = [
        (layer.name, layer.type, _shapes(layer))
        for layer in layers
        if layer.blobs and layer.name not in mapping.rows
    ]
    return Conversion(values=mapping.values, mapped=mapped, unmapped=unmapped)


def infer_num_classes(layers, spec):
    """Number of classes (with background) from the conf / loc head shapes, or None.

    Each feature layer's loc head has 4·A outputs and its conf head C·A.
    Raises:
      ConversionError: the heads disagree.
    """
    outputs = {}
    for layer in layers:
        target = spec.convs.get(layer.name)
        if target is not None and target.head and layer.blobs:
            outputs[(target.feature, target.head)] = layer.blobs[0].shape[0]
    found = {}
    for (feature, head), out in outputs.items():
        if head != 'conf' or (feature, 'loc') not in outputs:
            continue
        loc = outputs[(feature, 'loc')]
        if loc == 0 or out == 0 or loc % 4 or out % (loc // 4):
            raise ConversionError(
                'feature layer %s: loc head has %d outputs and conf head %d; '
                'expected 4·A and C·A' % (spec.feature_sources[feature], loc, out)
            )
        found[spec.feature_sources[feature]] = out // (loc // 4)
    if len(set(found.values())) > 1:
        raise ConversionError('the conf heads disagree on the number of classes: %s' % found)
    return next(iter(found.values()), None)


def format_table(conversion):
    """The mapping table and the unmapped Caffe layers, as text."""
    rows = [('Caffe layer', 'type', 'blobs', 'TF variables')]
    for row in conversion.mapped:
        shapes = ' '.join('x'.join(str(d) for d in s) for s in row.blob_shapes)
        rows.append((row.caffe_name, row.caffe_type, shapes, ', '.join(row.tf_variables)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ['  '.join(r[i].ljust(widths[i]) for i in range(3)) + '  ' + r[3] for r in rows]
    for name, layer_type, shapes in conversion.unmapped:
        lines.append('UNMAPPED Caffe layer %r (%s, blobs %s)' % (name, layer_type, shapes))
    return '\n'.join(lines)


def _dims(shape, where):
    return shape.numbers('dim', where, integer=True, minimum=1, maximum=_INT32_MAX)


def _input_shape(net, layers, source_file):
    """(height, width) of the deploy input, from input_shape / input_dim / an Input layer."""
    dims = None
    if net.has('input_shape'):
        dims = _dims(net.blocks('input_shape', source_file)[0], source_file + ', input_shape')
    elif net.has('input_dim'):
        dims = net.numbers('input_dim', source_file, integer=True, minimum=1, maximum=_INT32_MAX)[
            :4
        ]
    else:
        for layer in layers:
            if layer.get('type') == 'Input' and layer.has('input_param'):
                where = _where(layer, source_file)
                shapes = layer.block('input_param', where).blocks('shape', where + ', input_param')
                dims = _dims(shapes[0], where + ', input_param.shape') if shapes else None
                break
    if not dims or len(dims) != 4:
        return None
    return int(dims[2]), int(dims[3])


def _where(layer, source_file):
    """'file, <Type> 'name' (line N)' for messages; the name must be a string."""
    name = layer.text('name', source_file + ', a layer', default='')
    line = layer.line_of('name')
    kind = layer.get('type') if isinstance(layer.get('type'), str) else 'layer'
    return '%s, %s %r%s' % (source_file, kind, name, '' if line is None else ' (line %d)' % line)


def _prior_box(layer, source_file):
    where = _where(layer, source_file)
    p = layer.block('prior_box_param', where)
    if p is None:
        raise ConversionError(
            '%s: no prior_box_param { ... }; a PriorBox needs at least min_size' % where
        )
    where += ', prior_box_param'

    def positive(key, maximum):
        return p.numbers(key, where, minimum=0.0, maximum=maximum, exclusive_minimum=True)

    min_sizes, max_sizes = positive('min_size', _MAX_PIXELS), positive('max_size', _MAX_PIXELS)
    if len(min_sizes) != 1 or len(max_sizes) > 1:
        raise ConversionError(
            '%s: exactly one min_size and at most one max_size are supported, '
            'got %s / %s' % (where, min_sizes, max_sizes)
        )
    if max_sizes and max_sizes[0] <= min_sizes[0]:
        raise ConversionError(
            '%s: max_size %g must be greater than min_size %g (as Caffe requires)'
            % (where, max_sizes[0], min_sizes[0])
        )
    if not p.boolean('flip', where, True):
        raise ConversionError(
            '%s: flip: false is not supported (our anchors always add 1/r)' % where
        )
    if p.has('step_h') or p.has('step_w') or p.has('img_h') or p.has('img_size'):
        raise ConversionError('%s: step_h/step_w/img_size are not supported; use step' % where)
    variances = positive('variance', 100.0) or [0.1]
    if len(variances) not in (1, 4):
        raise ConversionError(
            '%s: %d variance values; expected 1 or 4 (as Caffe requires)' % (where, len(variances))
        )
    if len(variances) == 1:
        variances = variances * 4
    return {
        'sizes': [min_sizes[0], max_sizes[0] if max_sizes else None],
        'ratios': positive('aspect_ratio', 1000.0),
        'step': (positive('step', _MAX_PIXELS) or [None])[-1],
        'offset': p.number('offset', where, default=0.5, minimum=0.0, maximum=1.0),
        # Caffe's default; OpenCV clips when `clip` is absent.
        'clip': p.boolean('clip', where, False),
        'variances': variances,
    }


# The kernel, stride and padding fields of both layers below, with the same bounds.
_WINDOW_GEOMETRY = dict(
    kernel_size=(1, 1024),
    kernel_h=(1, 1024),
    kernel_w=(1, 1024),
    stride=(1, 1024),
    stride_h=(1, 1024),
    stride_w=(1, 1024),
    pad=(0, 1024),
    pad_h=(0, 1024),
    pad_w=(0, 1024),
)
# Geometry fields of Convolution / Pooling layers: (minimum, maximum). Conversion takes the
# geometry from our nets, but a prototxt with absurd values is refused rather than ignored.
_GEOMETRY = {
    'convolution_param': dict(
        num_output=(1, 1000000),
        group=(1, 1000000),
        axis=(-4, 3),
        dilation=(1, 1024),
        **_WINDOW_GEOMETRY,
    ),
    'pooling_param': _WINDOW_GEOMETRY,
}


def _check_geometry(layer, source_file):
    for block_name, limits in _GEOMETRY.items():
        if not layer.has(block_name):
            continue
        where = _where(layer, source_file)
        block = layer.block(block_name, where)
        for key, (low, high) in limits.items():
            block.numbers(
                key, '%s, %s' % (where, block_name), integer=True, minimum=low, maximum=high
            )


def ssd_config_from_prototxt(net, spec, source_file='<prototxt>'):
    """Anchors, DetectionOutput settings and preprocessing of a parsed deploy prototxt.

    Args:
      net: `prototxt.Message` of the deploy net.
      spec: the `LayerMap` (its `feature_sources` order the PriorBox layers).
      source_file: for error messages.
    Returns:
      dict with 'ssd_params' (fields of nets.ssd_params.SSDParams found in the prototxt:
      img_shape, num_classes, anchor_sizes, anchor_ratios, anchor_steps, anchor_offset,
      anchor_clip, prior_scaling), 'detection' (nms_threshold, top_k, keep_top_k,
      confidence_threshold; those present), 'preprocessing' (caffe_mean_bgr, caffe_scale; those
      present) and 'bn_eps' ({BatchNorm layer name: eps}).
    Raises:
      ConversionError: PriorBox layers that do not match the net's feature layers, or settings
        our anchors cannot express.
    """
    layers = net.blocks('layer', source_file) + net.blocks('layers', source_file)
    priors, detection, preprocessing, bn_eps = {}, {}, {}, {}
    for layer in layers:
        layer_type = layer.get('type')
        _check_geometry(layer, source_file)
        if layer_type == 'PriorBox':
            bottoms = layer.get_all('bottom')
            if not bottoms or bottoms[0] not in spec.feature_sources:
                raise ConversionError(
                    '%s: PriorBox %r reads %r, which is not a feature layer of '
                    '%s (%s)'
                    % (
                        source_file,
                        layer.get('name'),
                        bottoms,
                        spec.name,
                        ', '.join(spec.feature_sources),
                    )
                )
            priors[bottoms[0]] = _prior_box(layer, source_file)
        elif layer_type == 'DetectionOutput':
            where = _where(layer, source_file)
            p = layer.block('detection_output_param', where)
            if p is None:
                continue
            where += ', detection_output_param'
            nms = p.block('nms_param', where) or prototxt.Message()
            at_nms = where + ', nms_param'
            values = {
                'num_classes': p.number(
                    'num_classes', where, integer=True, minimum=1, maximum=100000
                ),
                'nms_threshold': nms.number('nms_threshold', at_nms, minimum=0.0, maximum=1.0),
                # <= 0 means all, in Caffe and in our post-processing
                # The model card's bounds (detections per image are allocated up front).
                'top_k': nms.number(
                    'top_k', at_nms, integer=True, minimum=-1, maximum=card_lib.MAX_DETECTIONS
                ),
                'keep_top_k': p.number(
                    'keep_top_k', where, integer=True, minimum=-1, maximum=card_lib.MAX_DETECTIONS
                ),
                'confidence_threshold': p.number(
                    'confidence_threshold', where, minimum=0.0, maximum=1.0
                ),
            }
            detection.update((k, v) for k, v in values.items() if v is not None)
        elif layer_type == 'BatchNorm' and layer.has('batch_norm_param'):
            where = _where(layer, source_file)
            eps = layer.block('batch_norm_param', where).number(
                'eps', where + ', batch_norm_param', minimum=0.0, maximum=1.0
            )
            if eps is not None:
                bn_eps[layer.text('name', where, '')] = eps
        if layer.has('transform_param'):
            where = _where(layer, source_file)
            transform = layer.block('transform_param', where)
            where += ', transform_param'
            means = transform.numbers('mean_value', where, minimum=-1e6, maximum=1e6)
            if len(means) not in (0, 1, 3):
                raise ConversionError(
                    '%s: %d mean_value entries; expected 1 or 3 (B, G, R)' % (where, len(means))
                )
            if means:
                preprocessing['caffe_mean_bgr'] = means * 3 if len(means) == 1 else means
            scale = transform.number(
                'scale', where, minimum=0.0, maximum=1e6, exclusive_minimum=True
            )
            if scale is not None:
                preprocessing['caffe_scale'] = scale
    params = {}
    img_shape = _input_shape(net, layers, source_file)
    if img_shape:
        params['img_shape'] = list(img_shape)
    if priors:
        missing = [s for s in spec.feature_sources if s not in priors]
        if missing:
            raise ConversionError(
                '%s: no PriorBox for feature layer(s) %s of %s'
                % (source_file, ', '.join(missing), spec.name)
            )
        ordered = [priors[s] for s in spec.feature_sources]
        for key in ('offset', 'clip', 'variances'):
            if len({repr(p[key]) for p in ordered}) > 1:
                raise ConversionError(
                    '%s: the PriorBox layers disagree on %s (%s); our anchors '
                    'use one value for all layers' % (source_file, key, [p[key] for p in ordered])
                )
        params.update(
            anchor_sizes=[p['sizes'] for p in ordered],
            anchor_ratios=[p['ratios'] for p in ordered],
            anchor_steps=[p['step'] for p in ordered],
            anchor_offset=ordered[0]['offset'],
            anchor_clip=ordered[0]['clip'],
            prior_scaling=ordered[0]['variances'],
        )
    if 'num_classes' in detection:
        params['num_classes'] = detection.pop('num_classes')
    return {
        'ssd_params': params,
        'detection': detection,
        'preprocessing': preprocessing,
        'bn_eps': bn_eps,
    }
