"""Crafted .caffemodel / .prototxt files: one error line naming the layer, the field and what was
expected, never a traceback (issue #16, Caffe input)."""

import copy
import os
import struct

import numpy as np
import pytest

from converters import caffe_pb
from converters import caffe_ssd
from converters import prototxt
from tests import caffe_fixtures
from tests.caffe_fixtures import pb_field, pb_varint
from tests.conftest import run_script
from tf_extended import safe_io


def _floats(*values):
    return pb_field(5, 2, struct.pack('<%df' % len(values), *values))


def _blob_body(dims, payload):
    """BlobProto { shape (7) { dim (1) packed }, payload }"""
    return pb_field(7, 2, pb_field(1, 2, b''.join(pb_varint(d) for d in dims))) + payload


def _shaped_blob(dims, payload):
    """LayerParameter.blobs (7)"""
    return pb_field(7, 2, _blob_body(dims, payload))


def _layer(body, name=b'c', layer_type=b'Convolution'):
    """NetParameter.layer (100) { name (1), type (2), body }"""
    return pb_field(100, 2, pb_field(1, 2, name) + pb_field(2, 2, layer_type) + body)


CRAFTED_MODELS = [
    (
        _layer(_shaped_blob([-1, -2], _floats(1, 2))),
        r"m.caffemodel, layer 'c', blob 0: blob shape.dim is \[-1, -2\]; expected at most 32 dimensions of "
        r'0..2147483647 each',
    ),
    (
        _layer(
            _shaped_blob([1 << 32, 1 << 32], b'')
        ),  # numpy's int64 product wraps to 0 == 0 values
        r'blob shape.dim is \[4294967296, 4294967296\]; expected at most 32 dimensions',
    ),
    (
        _layer(_shaped_blob([1 << 16, 1 << 16], b'')),
        r'blob shape \(65536, 65536\) holds 4294967296 values, more than Caffe allows \(2147483647\)',
    ),
    (
        _layer(
            pb_field(
                7,
                2,
                pb_field(1, 0, -3)
                + pb_field(2, 0, 1)
                + pb_field(3, 0, 1)
                + pb_field(4, 0, 2)
                + _floats(1, 2),
            )
        ),
        r"layer 'c', blob 0: blob num/channels/height/width is \[-3, 1, 1, 2\]",
    ),
    (
        _layer(_shaped_blob([3], _floats(1, 2))),
        r'blob shape \(3,\) holds 3 values but the blob stores 2',
    ),
    (
        _layer(_shaped_blob([2], _floats(1, 2) + pb_field(8, 2, struct.pack('<2d', 1, 2)))),
        'the blob stores both data and double_data',
    ),
    (
        _layer(_shaped_blob([3], _floats(1, float('nan'), float('inf')))),
        r"layer 'c', blob 0: the blob of shape \(3,\) holds 2 NaN or infinite value\(s\)",
    ),
    (
        _layer(b'', name=b'conv\xff\xfe'),
        r"m.caffemodel, layer 0: the layer name b'conv\\xff\\xfe' is not UTF-8 text",
    ),
    (
        _layer(pb_field(106, 2, pb_field(5, 0, 0))),
        r"layer 'c': convolution_param.group is 0, expected >= 1",
    ),
    (
        _layer(
            pb_field(139, 2, pb_field(3, 5, struct.pack('<f', float('nan')))),
            layer_type=b'BatchNorm',
        ),
        r"layer 'c': batch_norm_param.eps is nan, expected a finite number >= 0",
    ),
    (
        _layer(pb_field(139, 2, pb_field(3, 5, struct.pack('<f', -1.0))), layer_type=b'BatchNorm'),
        'batch_norm_param.eps is -1.0',
    ),
    (
        pb_field(
            2, 2, pb_field(4, 2, b'v1') + pb_field(6, 2, _blob_body([5], _floats(1)))
        ),  # V1LayerParameter.blobs (6)
        r"m.caffemodel, V1 layer 'v1', blob 0: blob shape \(5,\) holds 5 values but the blob stores 1",
    ),
    # Unknown groups (wire type 3/4) nested 5000 deep: the protobuf runtime's depth limit, not a crash.
    (
        _layer(pb_varint(60 << 3 | 3) * 5000 + pb_varint(60 << 3 | 4) * 5000),
        r'm.caffemodel is not a binary Caffe model \(NetParameter protobuf\): .*Wire format was corrupt',
    ),
]


def _one_line(error):
    text = str(error)
    assert '\n' not in text and 'Traceback' not in text
    return text


@pytest.mark.parametrize(
    'data,message', CRAFTED_MODELS, ids=[f'model{i}' for i in range(len(CRAFTED_MODELS))]
)
def test_crafted_caffemodels_give_one_line_naming_layer_and_field(data, message):
    with pytest.raises(caffe_pb.CaffeModelError, match=message) as info:
        caffe_pb.parse_caffemodel(data, 'm.caffemodel')
    _one_line(info.value)


def test_caffemodel_reader_accepts_what_caffe_accepts():
    layers = caffe_pb.parse_caffemodel(
        _layer(_shaped_blob([2, 0, 3], b'') + pb_field(106, 2, pb_field(5, 0, 2)))
    )
    assert layers[0].blobs[0].shape == (2, 0, 3) and layers[0].group == 2


def test_devices_are_not_read_as_models(tmp_path):
    for reader, what in (
        (caffe_pb.read_caffemodel, 'caffemodel'),
        (prototxt.parse_file, 'prototxt'),
    ):
        with pytest.raises(
            safe_io.UnsafeFileError,
            match=rf'/dev/zero: the {what} is a character device, not a regular file',
        ):
            reader('/dev/zero')
    fifo = tmp_path / 'deploy.prototxt'
    os.mkfifo(fifo)  # opening it would block
    with pytest.raises(OSError, match='deploy.prototxt: the prototxt is a FIFO'):
        prototxt.parse_file(str(fifo))
    binary = tmp_path / 'model.prototxt'
    binary.write_bytes(b'name: "x"\nlayer {\n' + bytes(range(128, 256)))
    with pytest.raises(
        prototxt.PrototxtError,
        match=r'model.prototxt, line 3: not UTF-8 text \(invalid start byte\)'
        r'; a deploy .prototxt is text',
    ):
        prototxt.parse_file(str(binary))


def test_prototxt_numbers_and_nesting():
    net = prototxt.parse('a: 0123\nb: 0x1F\nc: 09\nd: -017\ne: nan\n')
    assert [net.get(k) for k in 'abcd'] == [
        83,
        31,
        9.0,
        -15,
    ]  # 0-prefixed integers are octal (protobuf rule)
    assert np.isnan(net.get('e'))
    huge = prototxt.parse('a: ' + '9' * 5000)  # more digits than Python's int() converts
    with pytest.raises(
        prototxt.PrototxtValueError, match=r'x: a \(line 1\) is inf, expected an integer >= 0'
    ):
        huge.number('a', 'x', integer=True, minimum=0)
    with pytest.raises(
        prototxt.PrototxtError, match=r'deploy.prototxt, line 1: blocks nested more than 100 deep'
    ):
        prototxt.parse('a { ' * 5000 + '}' * 5000, 'deploy.prototxt')
    net = prototxt.parse('a { b: 1 }\nc: "x"\nd: [1, 2, -3]\n')
    with pytest.raises(
        prototxt.PrototxtValueError,
        match=r"w: a \(line 1\) is Message\(\[\('b', 1\)\]\), expected "
        r'a finite number',
    ):
        net.number('a', 'w')
    with pytest.raises(
        prototxt.PrototxtValueError, match=r"w: c \(line 2\) is 'x', expected a \{ ... \} block"
    ):
        net.block('c', 'w')
    with pytest.raises(
        prototxt.PrototxtValueError, match=r'w: d \(line 3\) is -3, expected an integer in \[0, 5\]'
    ):
        net.numbers('d', 'w', integer=True, minimum=0, maximum=5)


@pytest.mark.parametrize(
    'text,message',
    [
        # Hex and octal escape Python's 4300-digit limit: math.isfinite overflowed on them.
        ('a: 1\nb: 0x' + 'f' * 5000, r"p, line 2: cannot read the number '0xfff.*larger than any"),
        ('b: -0' + '7' * 400, r'p, line 1: cannot read the number .*larger than any number'),
        ('b: [1, 0x1' + '0' * 256 + ']', r"p, line 1: cannot read the number '0x1000"),
    ],
)
def test_prototxt_integers_beyond_doubles_are_refused_with_the_line(text, message):
    with pytest.raises(prototxt.PrototxtError, match=message):
        prototxt.parse(text, 'p')
    big = prototxt.parse('a: 0x' + 'f' * 255)  # a double's range: the range check says
    with pytest.raises(prototxt.PrototxtValueError, match=r"x: a \(line 1\) is 1123.*expected an"):
        big.number('a', 'x', integer=True, maximum=5)


def test_prototxt_fields_are_capped(monkeypatch):
    """16 MiB of `a{}` took 48 s and 2.9 GB (about 180 bytes per input byte)."""
    monkeypatch.setattr(prototxt, 'MAX_FIELDS', 5)
    assert len(prototxt.parse('a{} a{} b: [1, 2] c: 3').fields) == 5
    with pytest.raises(prototxt.PrototxtError, match=r'p, line 2: more than 5 fields'):
        prototxt.parse('a{} a{} b: [1, 2]\nc { d: 3 }', 'p')
    with pytest.raises(prototxt.PrototxtError, match=r'p, line 1: unclosed "\[" of \'b\''):
        prototxt.parse('b: [1, 2', 'p')


_MOBILENET = caffe_fixtures.mobilenet_ssd('separate').prototxt
_PRIOR = r"d.prototxt, PriorBox 'conv11_mbox_priorbox' \(line \d+\), prior_box_param: "
_DET = r"d.prototxt, DetectionOutput 'detection_out' \(line \d+\), detection_output_param"
_CONV0 = r"d.prototxt, Convolution 'conv0' \(line 10\), convolution_param: "


_PROTOTXT_CASES = [
    (
        'prior_box_param {\n    min_size: 60.0',
        'prior_box_param: 5\n  foo {\n    min_size: 60.0',
        r"PriorBox 'conv11_mbox_priorbox' \(line \d+\): prior_box_param \(line \d+\) is 5, "
        r"expected a \{ ... \} block",
    ),
    (
        'min_size: 60.0',
        'min_size: "abc"',
        _PRIOR + r"min_size \(line \d+\) is 'abc', expected a finite number in "
        r'\(0, 100000\]',
    ),
    ('min_size: 60.0', 'min_size: -60.0', _PRIOR + r'min_size \(line \d+\) is -60.0'),
    (
        'min_size: 60.0',
        'min_size { x: 1 }',
        _PRIOR + r"min_size \(line \d+\) is Message\(\[\('x', 1\)\]\)",
    ),
    (
        'min_size: 60.0',
        'min_size: 60.0 max_size: 30.0',
        _PRIOR + r'max_size 30 must be greater than min_size 60',
    ),
    (
        'min_size: 60.0',
        'min_size: 60.0 max_size: 60.0',
        _PRIOR + r'max_size 60 must be greater than min_size 60',
    ),
    ('min_size: 60.0', 'min_size: 60.0 step: inf', _PRIOR + r'step \(line \d+\) is inf'),
    (
        'aspect_ratio: 2.0',
        'aspect_ratio: 0.0',
        _PRIOR + r'aspect_ratio \(line \d+\) is 0.0, expected a finite '
        r'number in \(0, 1000\]',
    ),
    (
        'offset: 0.5',
        'offset: 7',
        _PRIOR + r'offset \(line \d+\) is 7, expected a finite number in \[0, 1\]',
    ),
    ('flip: true', 'flip: maybe', _PRIOR + r"flip \(line \d+\) is 'maybe', expected true or false"),
    (
        'variance: 0.1\n    variance: 0.1\n',
        'variance: 0.1\n',
        _PRIOR + r'3 variance values; expected 1 or 4',
    ),
    (
        'num_classes: 21',
        'num_classes: nan',
        _DET + r': num_classes \(line \d+\) is nan, expected an integer in '
        r'\[1, 100000\]',
    ),
    ('num_classes: 21', 'num_classes: "x"', _DET + r": num_classes \(line \d+\) is 'x'"),
    (
        'nms_param {',
        'nms_param: 3\n    foo {',
        _DET + r': nms_param \(line \d+\) is 3, expected a \{ ... \} block',
    ),
    (
        'top_k: 100',
        'top_k: 99999999999999999999',
        _DET + r', nms_param: top_k \(line \d+\) is 99999999999999999999, '
        r'expected an integer in \[-1, 100000\]',
    ),
    (
        'top_k: 100',
        'top_k: 100001',  # above the model card's bound: refused here, naming the line
        _DET + r', nms_param: top_k \(line \d+\) is 100001, expected an integer in \[-1, 100000\]',
    ),
    (
        'confidence_threshold: 0.25',
        'confidence_threshold: 5',
        _DET + r': confidence_threshold \(line \d+\) is 5, expected a finite number in \[0, 1\]',
    ),
    (
        'keep_top_k: 100',
        'keep_top_k: 1000000000',
        _DET + r': keep_top_k \(line \d+\) is 1000000000, expected an '
        r'integer in \[-1, 100000\]',
    ),
    (
        'dim: 300',
        'dim: "x"',
        r"d.prototxt, input_shape: dim \(line 6\) is 'x', expected an integer in "
        r'\[1, 2147483647\]',
    ),
    (
        'eps: 1e-05',
        'eps: "a"',
        r"d.prototxt, BatchNorm 'conv0/bn' \(line \d+\), batch_norm_param: eps \(line \d+\) "
        r"is 'a', expected a finite number in \[0, 1\]",
    ),
    (
        'kernel_size: 3',
        'kernel_size: 99999',
        _CONV0 + r'kernel_size \(line 18\) is 99999, expected an integer in '
        r'\[1, 1024\]',
    ),
    (
        'stride: 2',
        'stride: -2',
        _CONV0 + r'stride \(line 19\) is -2, expected an integer in \[1, 1024\]',
    ),
    (
        'pad: 1',
        'pad: 1e9',
        _CONV0 + r'pad \(line 17\) is 1000000000.0, expected an integer in \[0, 1024\]',
    ),
    ('num_output: 32', 'num_output: { a: 1 }', _CONV0 + r'num_output \(line 15\) is Message'),
    (
        'name: "conv0"',
        'name { }',
        r'd.prototxt, a layer: name \(line 10\) is Message\(\[\]\), expected a string',
    ),
    (
        'layer {',
        'layer: 5\nlayer {',
        r'd.prototxt: layer \(line 9\) is 5, expected a \{ ... \} block',
    ),
]


@pytest.mark.parametrize(
    'old,new,message', _PROTOTXT_CASES, ids=[c[1][:20] for c in _PROTOTXT_CASES]
)
def test_crafted_prototxt_values_give_one_line_naming_layer_field_and_line(old, new, message):
    assert old in _MOBILENET
    text = _MOBILENET.replace(old, new, 1)
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')
    with pytest.raises((prototxt.PrototxtError, caffe_ssd.ConversionError), match=message) as info:
        caffe_ssd.ssd_config_from_prototxt(prototxt.parse(text, 'd.prototxt'), spec, 'd.prototxt')
    _one_line(info.value)


def test_transform_param_values():
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')
    head = 'layer { name: "data" type: "Input" transform_param { %s } }\n'
    config = caffe_ssd.ssd_config_from_prototxt(
        prototxt.parse(head % 'mean_value: 104 mean_value: 117 mean_value: 123 scale: 0.5'),
        spec,
        'd',
    )
    assert config['preprocessing'] == {'caffe_mean_bgr': [104.0, 117.0, 123.0], 'caffe_scale': 0.5}
    for body, message in (
        (
            'mean_value: 1 mean_value: 2',
            "d, Input 'data' \\(line 1\\), transform_param: 2 mean_value entries; expected 1 or 3",
        ),
        (
            'scale: 0',
            r'transform_param: scale \(line 1\) is 0, expected a finite number in '
            r'\(0, 1e\+06\]',
        ),
        ('mean_value: "blue"', r"mean_value \(line 1\) is 'blue'"),
    ):
        with pytest.raises((prototxt.PrototxtError, caffe_ssd.ConversionError), match=message):
            caffe_ssd.ssd_config_from_prototxt(prototxt.parse(head % body), spec, 'd')


@pytest.fixture(scope='module')
def mobilenet_layers():
    return {layer.name: layer for layer in caffe_fixtures.mobilenet_ssd('separate').layers}


@pytest.mark.parametrize(
    'layer,mutate,message',
    [
        (
            'conv0',
            lambda l: l.blobs.append(np.zeros(7, np.float32)),
            r"Caffe Convolution layer 'conv0': the bias blob has 7 values for 32 output channels",
        ),
        (
            'conv0/bn',
            lambda l: l.blobs.__setitem__(2, np.zeros(0, np.float32)),
            r"Caffe BatchNorm layer 'conv0/bn': blob 2 \(the moving-average factor f\) has "
            r"shape \(0,\); expected one "
            r'value',
        ),
        (
            'conv0/bn',
            lambda l: l.blobs.__setitem__(
                0, np.zeros(1, np.float32)
            ),  # would broadcast to 32 channels
            r"Caffe BatchNorm layer 'conv0/bn': blob 0 \(mean\*f\) has 1 values for the 32 "
            r"channels of 'conv0'",
        ),
    ],
)
def test_crafted_blob_shapes_in_conversion(mobilenet_layers, layer, mutate, message):
    layers = copy.deepcopy(mobilenet_layers)
    mutate(layers[layer])
    with pytest.raises(caffe_ssd.ConversionError, match=message):
        caffe_ssd.convert_layers(list(layers.values()), caffe_ssd.layer_map('ssd_300_mobilenet'))


def test_head_without_outputs_is_an_error_not_a_division_by_zero(mobilenet_layers):
    layers = copy.deepcopy(mobilenet_layers)
    layers['conv11_mbox_loc'].blobs[0] = np.zeros((0, 512, 1, 1), np.float32)
    with pytest.raises(
        caffe_ssd.ConversionError,
        match='feature layer conv11: loc head has 0 outputs and conf head 63; expected 4·A and C·A',
    ):
        caffe_ssd.infer_num_classes(list(layers.values()), caffe_ssd.layer_map('ssd_300_mobilenet'))


def test_script_gives_one_line_for_crafted_files(tmp_path):
    model = tmp_path / 'm.caffemodel'
    caffe_pb.write_caffemodel(
        str(model),
        [caffe_pb.CaffeLayer('conv0', 'Convolution', [np.ones((2, 3, 1, 1), np.float32)])],
    )
    deploy = tmp_path / 'deploy.prototxt'
    deploy.write_text(_MOBILENET.replace('stride: 2', 'stride: 100000', 1))
    proc = run_script(
        'caffe_to_tensorflow.py',
        '--caffemodel_path=%s' % model,
        '--prototxt_path=%s' % deploy,
        '--model_name=ssd_300_mobilenet',
        '--output_path=%s' % (tmp_path / 'x.ckpt'),
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "caffe_to_tensorflow: error: %s, Convolution 'conv0' (line 10), convolution_param: "
        "stride (line 19) is "
        "100000, expected an integer in [1, 1024]" % deploy
    )
    assert not list(tmp_path.glob('x.ckpt*'))
