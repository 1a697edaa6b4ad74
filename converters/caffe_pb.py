"""Reads and writes Caffe `.caffemodel` files with the protobuf runtime alone.

No Caffe, no protoc and no generated `_pb2` module: the subset of `caffe.proto` that a
converter needs is declared below as a `FileDescriptorProto` and the message classes are
built from it at import time in a private descriptor pool (so a real `caffe_pb2` loaded by
someone else cannot clash with it). Field numbers are those of BVLC/caffe and
weiliu89/caffe (`src/caffe/proto/caffe.proto`); fields outside the subset are kept by the
runtime as unknown fields and ignored.

Both layer encodings are read: the current `NetParameter.layer` (LayerParameter, type as a
string) and the legacy V1 `NetParameter.layers` (V1LayerParameter, type as an enum); and
both blob shape encodings: `BlobProto.shape.dim` and the legacy num/channels/height/width.

Files are untrusted: only regular files are read (protobuf's 2 GB limit), and every value the
converter uses is checked while parsing, so a crafted file gives one `CaffeModelError` naming the
layer, the blob and the field: layer names must be UTF-8, blob dimensions 0..2**31-1 with at most
2**31-1 values in all (Caffe's own limits) and exactly as many values as the shape says, values
finite, `group` >= 1, `eps` finite and >= 0.
"""

import dataclasses
import math
from typing import List, Optional

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

from tf_extended import atomic_io
from tf_extended import safe_io

MAX_FILE_BYTES = (2 << 30) - 1  # the protobuf runtime does not parse messages of 2 GB or more
_INT32_MAX = (1 << 31) - 1

_F = descriptor_pb2.FieldDescriptorProto

# V1LayerParameter.LayerType (caffe.proto), value -> the LayerParameter type string.
V1_LAYER_TYPES = {
    0: 'None',
    35: 'AbsVal',
    1: 'Accuracy',
    30: 'ArgMax',
    2: 'BNLL',
    3: 'Concat',
    37: 'ContrastiveLoss',
    4: 'Convolution',
    5: 'Data',
    39: 'Deconvolution',
    6: 'Dropout',
    32: 'DummyData',
    7: 'EuclideanLoss',
    25: 'Eltwise',
    38: 'Exp',
    8: 'Flatten',
    9: 'HDF5Data',
    10: 'HDF5Output',
    28: 'HingeLoss',
    11: 'Im2col',
    12: 'ImageData',
    13: 'InfogainLoss',
    14: 'InnerProduct',
    15: 'LRN',
    29: 'MemoryData',
    16: 'MultinomialLogisticLoss',
    34: 'MVN',
    17: 'Pooling',
    26: 'Power',
    18: 'ReLU',
    19: 'Sigmoid',
    27: 'SigmoidCrossEntropyLoss',
    36: 'Silence',
    20: 'Softmax',
    21: 'SoftmaxWithLoss',
    22: 'Split',
    33: 'Slice',
    23: 'TanH',
    24: 'WindowData',
    31: 'Threshold',
}
_V1_TYPE_IDS = {name: value for value, name in V1_LAYER_TYPES.items()}


def _field(msg, name, number, ftype, label=_F.LABEL_OPTIONAL, type_name=None, packed=False):
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True


def _file_descriptor():
    """The caffe.proto subset, with caffe.proto's field numbers."""
    fd = descriptor_pb2.FileDescriptorProto(
        name='ssd_tf_caffe_subset.proto', package='caffe', syntax='proto2'
    )
    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL

    m = fd.message_type.add(name='BlobShape')
    _field(m, 'dim', 1, _F.TYPE_INT64, rep, packed=True)

    m = fd.message_type.add(name='BlobProto')
    _field(m, 'num', 1, _F.TYPE_INT32)
    _field(m, 'channels', 2, _F.TYPE_INT32)
    _field(m, 'height', 3, _F.TYPE_INT32)
    _field(m, 'width', 4, _F.TYPE_INT32)
    _field(m, 'data', 5, _F.TYPE_FLOAT, rep, packed=True)
    _field(m, 'diff', 6, _F.TYPE_FLOAT, rep, packed=True)
    _field(m, 'shape', 7, _F.TYPE_MESSAGE, opt, '.caffe.BlobShape')
    _field(m, 'double_data', 8, _F.TYPE_DOUBLE, rep, packed=True)
    _field(m, 'double_diff', 9, _F.TYPE_DOUBLE, rep, packed=True)

    m = fd.message_type.add(name='ConvolutionParameter')
    _field(m, 'num_output', 1, _F.TYPE_UINT32)
    _field(m, 'bias_term', 2, _F.TYPE_BOOL)
    _field(m, 'pad', 3, _F.TYPE_UINT32, rep)
    _field(m, 'kernel_size', 4, _F.TYPE_UINT32, rep)
    _field(m, 'group', 5, _F.TYPE_UINT32)
    _field(m, 'stride', 6, _F.TYPE_UINT32, rep)
    _field(m, 'dilation', 18, _F.TYPE_UINT32, rep)

    m = fd.message_type.add(name='BatchNormParameter')
    _field(m, 'use_global_stats', 1, _F.TYPE_BOOL)
    _field(m, 'moving_average_fraction', 2, _F.TYPE_FLOAT)
    _field(m, 'eps', 3, _F.TYPE_FLOAT)

    m = fd.message_type.add(name='LayerParameter')
    _field(m, 'name', 1, _F.TYPE_STRING)
    _field(m, 'type', 2, _F.TYPE_STRING)
    _field(m, 'bottom', 3, _F.TYPE_STRING, rep)
    _field(m, 'top', 4, _F.TYPE_STRING, rep)
    _field(m, 'blobs', 7, _F.TYPE_MESSAGE, rep, '.caffe.BlobProto')
    _field(m, 'convolution_param', 106, _F.TYPE_MESSAGE, opt, '.caffe.ConvolutionParameter')
    _field(m, 'batch_norm_param', 139, _F.TYPE_MESSAGE, opt, '.caffe.BatchNormParameter')

    m = fd.message_type.add(name='V1LayerParameter')
    _field(m, 'bottom', 2, _F.TYPE_STRING, rep)
    _field(m, 'top', 3, _F.TYPE_STRING, rep)
    _field(m, 'name', 4, _F.TYPE_STRING)
    enum = m.enum_type.add(name='LayerType')
    for value, name in sorted(V1_LAYER_TYPES.items()):
        enum.value.add(name='V1_' + name.upper(), number=value)
    _field(m, 'type', 5, _F.TYPE_ENUM, opt, '.caffe.V1LayerParameter.LayerType')
    _field(m, 'blobs', 6, _F.TYPE_MESSAGE, rep, '.caffe.BlobProto')
    _field(m, 'convolution_param', 10, _F.TYPE_MESSAGE, opt, '.caffe.ConvolutionParameter')

    m = fd.message_type.add(name='NetParameter')
    _field(m, 'name', 1, _F.TYPE_STRING)
    _field(m, 'layers', 2, _F.TYPE_MESSAGE, rep, '.caffe.V1LayerParameter')
    _field(m, 'layer', 100, _F.TYPE_MESSAGE, rep, '.caffe.LayerParameter')
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName('caffe.' + name))


NetParameter = _message_class('NetParameter')
LayerParameter = _message_class('LayerParameter')
V1LayerParameter = _message_class('V1LayerParameter')
BlobProto = _message_class('BlobProto')


class CaffeModelError(ValueError):
    """The file is not a readable Caffe model."""


@dataclasses.dataclass
class CaffeLayer:
    """One layer of a caffemodel.

    Attributes:
      name: the Caffe layer name (what conversion maps by).
      type: the layer type string ('Convolution', 'BatchNorm', ...; V1 enums are translated).
      blobs: the parameter blobs as float32 numpy arrays in Caffe layout (conv weights
        [out, in/group, kh, kw], biases [out], ...).
      group: convolution_param.group when the model stores it, else None.
      eps: batch_norm_param.eps when the model stores it, else None.
    """

    name: str
    type: str
    blobs: List[np.ndarray]
    group: Optional[int] = None
    eps: Optional[float] = None


def _blob_to_array(blob, where):
    if blob.HasField('shape'):
        shape = tuple(int(d) for d in blob.shape.dim)
        field = 'shape.dim'
    else:
        # Legacy encoding: always 4-D (a bias is 1x1x1xN); conversion reshapes by count.
        shape = (blob.num, blob.channels, blob.height, blob.width)
        field = 'num/channels/height/width'
    if len(shape) > 32 or any(not 0 <= d <= _INT32_MAX for d in shape):
        shown = list(shape)[:8] + (['...'] if len(shape) > 8 else [])
        raise CaffeModelError(
            '%s: blob %s is %s; expected at most 32 dimensions of 0..%d each'
            % (where, field, shown, _INT32_MAX)
        )
    count = math.prod(shape)  # exact (numpy's product would wrap around)
    if count > _INT32_MAX:
        raise CaffeModelError(
            '%s: blob shape %s holds %d values, more than Caffe allows (%d)'
            % (where, shape, count, _INT32_MAX)
        )
    if len(blob.data) and len(blob.double_data):
        raise CaffeModelError(
            '%s: the blob stores both data and double_data; expected one of them' % where
        )
    if len(blob.data):
        values = np.asarray(blob.data, dtype=np.float32)
    else:
        values = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    if values.size != count:
        raise CaffeModelError(
            '%s: blob shape %s holds %d values but the blob stores %d'
            % (where, shape, count, values.size)
        )
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise CaffeModelError(
            '%s: the blob of shape %s holds %d NaN or infinite value(s); the '
            'model is corrupt or was saved from a diverged training' % (where, shape, bad)
        )
    return values.reshape(shape)


def _layer_name(layer, source, index, kind):
    name = layer.name
    if not isinstance(name, str):  # the runtime hands back non-UTF-8 proto2 strings as bytes
        raise CaffeModelError(
            '%s, %s %d: the layer name %r is not UTF-8 text' % (source, kind, index, name)
        )
    return name


def _blobs(layer, where):
    return [_blob_to_array(b, '%s, blob %d' % (where, i)) for i, b in enumerate(layer.blobs)]


def _group(layer, where):
    if not layer.convolution_param.HasField('group'):
        return None
    group = layer.convolution_param.group
    if group < 1:
        raise CaffeModelError('%s: convolution_param.group is %d, expected >= 1' % (where, group))
    return group


def _varint_at(data, pos):
    """(value, next position) of the varint at `pos`, or None where the data ends first."""
    value = shift = 0
    while pos < len(data) and shift < 64:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
    return None


def _truncated_layer(data):
    """(layer index, where its field starts, bytes present, bytes declared or None when the cut
    is in its length) when `data` is a NetParameter cut short inside a layer (`layer` or V1
    `layers`: nearly all of a caffemodel), else None (e.g. a text prototxt: its wire format
    breaks down first)."""
    pos, layers = 0, 0
    while pos < len(data):
        start = pos
        tag = _varint_at(data, pos)
        if tag is None or not 1 <= tag[0] >> 3 <= 100:  # NetParameter's field numbers
            return None
        (field, wire_type), pos = divmod(tag[0], 8), tag[1]
        if wire_type == 2:
            length = _varint_at(data, pos)
            if length is None:
                return (layers, start, 0, None) if field in (2, 100) else None  # length cut
            size, pos = length
        elif wire_type == 0:
            end = _varint_at(data, pos)
            if end is None:
                return None
            size, pos = 0, end[1]
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
        else:
            return None
        if pos + size > len(data):
            return (layers, start, len(data) - pos, size) if field in (2, 100) else None
        pos += size
        layers += field in (2, 100)
    return None


def _after_layer(complete):
    """', after <name>' of the last layer of `complete` (the bytes before a cut layer), or ''."""
    net = NetParameter()
    try:
        net.ParseFromString(complete)
    except message.DecodeError:
        return ''
    layers = net.layer or net.layers
    return ', after %r' % layers[-1].name if layers else ''


def parse_caffemodel(data, source='<bytes>'):
    """Parses the bytes of a binary `NetParameter`.

    Args:
      data: the serialized model.
      source: a name for error messages (the file path).
    Returns:
      list of `CaffeLayer` in file order (layers without blobs included).
    Raises:
      CaffeModelError: the bytes are not a NetParameter or it holds no layers.
    """
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except message.DecodeError as e:
        cut = _truncated_layer(data)
        if cut is not None:
            layer, start, present, declared = cut
            raise CaffeModelError(
                '%s ends inside its layer %d (counted from 1%s; %s): the file is truncated (an '
                'interrupted download or copy?); download or copy it again.'
                % (
                    source,
                    layer + 1,
                    _after_layer(data[:start]),
                    'within its length'
                    if declared is None
                    else '%d of its %d bytes are in the file' % (present, declared),
                )
            ) from None
        raise CaffeModelError(
            '%s is not a binary Caffe model (NetParameter protobuf): %s. '
            'Pass the .caffemodel weights file; a deploy.prototxt goes to '
            '--prototxt_path.' % (source, e)
        ) from e
    if not len(net.layer) and not len(net.layers):
        raise CaffeModelError(
            '%s holds no Caffe layers (neither `layer` nor legacy `layers`): '
            'it is not a .caffemodel weights file.' % source
        )
    result = []
    for index, layer in enumerate(net.layer):
        name = _layer_name(layer, source, index, 'layer')
        where = '%s, layer %r' % (source, name)
        if not isinstance(layer.type, str):
            raise CaffeModelError('%s: the layer type %r is not UTF-8 text' % (where, layer.type))
        eps = layer.batch_norm_param.eps if layer.batch_norm_param.HasField('eps') else None
        if eps is not None and not (math.isfinite(eps) and eps >= 0):
            raise CaffeModelError(
                '%s: batch_norm_param.eps is %r, expected a finite number >= 0' % (where, eps)
            )
        result.append(
            CaffeLayer(
                name=name,
                type=layer.type,
                blobs=_blobs(layer, where),
                group=_group(layer, where),
                eps=eps,
            )
        )
    for index, layer in enumerate(net.layers):
        name = _layer_name(layer, source, index, 'V1 layer')
        where = '%s, V1 layer %r' % (source, name)
        result.append(
            CaffeLayer(
                name=name,
                type=V1_LAYER_TYPES.get(layer.type, 'V1_%d' % layer.type),
                blobs=_blobs(layer, where),
                group=_group(layer, where),
            )
        )
    return result


def read_caffemodel(path):
    """Reads a `.caffemodel` file; see `parse_caffemodel`.

    Raises:
      CaffeModelError: see parse_caffemodel; safe_io.UnsafeFileError (an OSError): not a
      regular file (a device, a FIFO, also through a symlink) or 2 GB or more.
    """
    data = safe_io.read_bytes(path, MAX_FILE_BYTES, 'caffemodel')
    return parse_caffemodel(data, source=path)


def _fill_blob(blob, array, legacy_dims):
    array = np.asarray(array, dtype=np.float32)
    if legacy_dims:
        if array.ndim > 4:
            raise ValueError(
                'legacy num/channels/height/width blobs hold at most 4 axes, got %s'
                % (array.shape,)
            )
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    # Merging the packed wire bytes is ~50x faster than extending the repeated field from Python.
    blob.MergeFromString(_packed_float_field(5, array))


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _packed_float_field(number, array):
    """Wire encoding of a packed `repeated float` field: tag, byte length, little-endian floats."""
    payload = np.ascontiguousarray(array, dtype='<f4').tobytes()
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def serialize_caffemodel(layers, name='net', legacy_v1=False, legacy_blob_dims=False):
    """Serializes layers to the bytes of a binary `NetParameter`.

    Args:
      layers: iterable of `CaffeLayer`.
      name: NetParameter.name.
      legacy_v1: write V1 `layers` (enum types) instead of `layer`.
      legacy_blob_dims: write blob shapes as num/channels/height/width (left-padded with 1s)
        instead of `shape.dim`.
    Returns:
      bytes.
    """
    net = NetParameter(name=name)
    for src in layers:
        if legacy_v1:
            if src.type not in _V1_TYPE_IDS:
                raise ValueError('layer %r: type %r has no V1 enum value' % (src.name, src.type))
            layer = net.layers.add(name=src.name, type=_V1_TYPE_IDS[src.type])
        else:
            layer = net.layer.add(name=src.name, type=src.type)
            if src.eps is not None:
                layer.batch_norm_param.eps = src.eps
        if src.group is not None:
            layer.convolution_param.group = src.group
        for array in src.blobs:
            _fill_blob(layer.blobs.add(), array, legacy_blob_dims)
    return net.SerializeToString()


def write_caffemodel(path, layers, **kwargs):
    """Writes a `.caffemodel` atomically; kwargs as `serialize_caffemodel`."""
    atomic_io.write_bytes_atomic(path, serialize_caffemodel(layers, **kwargs))
