"""caffemodel reading/writing (protobuf schema built in Python) and the prototxt parser."""

import re
import struct

import numpy as np
import pytest

from converters import caffe_pb
from converters import caffe_ssd
from tests import caffe_fixtures
from tests.caffe_fixtures import pb_field, pb_varint
from converters import prototxt


def test_reads_hand_encoded_current_format_with_caffe_field_numbers():
    # NetParameter.layer = 100; LayerParameter name 1, type 2, blobs 7;
    # BlobProto data 5 (packed float), shape 7; BlobShape dim 1 (packed int64).
    weights = np.arange(6, dtype=np.float32).reshape(3, 2, 1, 1)
    blob = pb_field(7, 2, pb_field(1, 2, b''.join(pb_varint(d) for d in weights.shape))) + pb_field(
        5, 2, struct.pack('<6f', *weights.ravel())
    )
    bias = pb_field(7, 2, pb_field(1, 2, pb_varint(3))) + pb_field(
        8, 2, struct.pack('<3d', 1, 2, 3)
    )
    layer = (
        pb_field(1, 2, b'conv1')
        + pb_field(2, 2, b'Convolution')
        + pb_field(3, 2, b'data')
        + pb_field(4, 2, b'conv1')
        + pb_field(7, 2, blob)
        + pb_field(7, 2, bias)
    )
    layers = caffe_pb.parse_caffemodel(
        pb_field(100, 2, layer) + pb_field(100, 2, pb_field(1, 2, b'relu'))
    )
    assert [(l.name, l.type) for l in layers] == [('conv1', 'Convolution'), ('relu', '')]
    np.testing.assert_array_equal(layers[0].blobs[0], weights)
    # double_data (field 8) is read when data is empty.
    np.testing.assert_array_equal(layers[0].blobs[1], [1, 2, 3])
    assert layers[0].blobs[1].dtype == np.float32


def test_reads_hand_encoded_v1_format_with_legacy_blob_dims():
    # NetParameter.layers = 2; V1LayerParameter bottom 2, top 3, name 4, type 5 (enum
    # CONVOLUTION = 4), blobs 6; BlobProto num 1, channels 2, height 3, width 4.
    blob = (
        pb_field(1, 0, 2)
        + pb_field(2, 0, 1)
        + pb_field(3, 0, 1)
        + pb_field(4, 0, 2)
        + pb_field(5, 2, struct.pack('<4f', 1, 2, 3, 4))
    )
    layer = pb_field(4, 2, b'fc7') + pb_field(5, 0, 4) + pb_field(6, 2, blob)
    pool = pb_field(4, 2, b'pool1') + pb_field(5, 0, 17)
    layers = caffe_pb.parse_caffemodel(pb_field(2, 2, layer) + pb_field(2, 2, pool))
    assert [(l.name, l.type) for l in layers] == [('fc7', 'Convolution'), ('pool1', 'Pooling')]
    np.testing.assert_array_equal(layers[0].blobs[0], np.array([1, 2, 3, 4]).reshape(2, 1, 1, 2))


@pytest.mark.parametrize(
    'legacy_v1,legacy_dims', [(False, False), (True, False), (True, True), (False, True)]
)
def test_write_read_round_trip(legacy_v1, legacy_dims):
    rng = np.random.default_rng(0)
    layers = [
        caffe_pb.CaffeLayer(
            'conv1_1',
            'Convolution',
            [
                rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
                rng.standard_normal(4).astype(np.float32),
            ],
            group=1,
        ),
        caffe_pb.CaffeLayer('relu1_1', 'ReLU', []),
    ]
    data = caffe_pb.serialize_caffemodel(layers, legacy_v1=legacy_v1, legacy_blob_dims=legacy_dims)
    back = caffe_pb.parse_caffemodel(data)
    assert [(l.name, l.type, l.group) for l in back] == [
        ('conv1_1', 'Convolution', 1),
        ('relu1_1', 'ReLU', None),
    ]
    np.testing.assert_array_equal(back[0].blobs[0], layers[0].blobs[0])
    np.testing.assert_array_equal(back[0].blobs[1].reshape(-1), layers[0].blobs[1])
    assert back[0].blobs[1].shape == ((1, 1, 1, 4) if legacy_dims else (4,))


def test_v1_and_legacy_dims_convert_like_the_current_format():
    net = caffe_fixtures.vgg_fc_reduced(seed=3)
    spec = caffe_ssd.layer_map('vgg_16_fc_reduced')
    current = caffe_ssd.convert_layers(net.layers, spec).values
    legacy = caffe_ssd.convert_layers(
        caffe_pb.parse_caffemodel(
            caffe_pb.serialize_caffemodel(net.layers, legacy_v1=True, legacy_blob_dims=True)
        ),
        spec,
    ).values
    assert sorted(current) == sorted(legacy) and len(current) == 30
    for name, value in current.items():
        np.testing.assert_array_equal(legacy[name], value)


def test_not_a_caffemodel_errors_name_the_file(tmp_path):
    text = tmp_path / 'deploy.prototxt'
    text.write_text('name: "VGG"\nlayer { name: "x" }\n')
    with pytest.raises(caffe_pb.CaffeModelError, match='deploy.prototxt is not a binary Caffe'):
        caffe_pb.read_caffemodel(str(text))
    empty = tmp_path / 'empty.caffemodel'
    empty.write_bytes(b'')
    with pytest.raises(caffe_pb.CaffeModelError, match='empty.caffemodel holds no Caffe layers'):
        caffe_pb.read_caffemodel(str(empty))
    bad_blob = pb_field(
        100,
        2,
        pb_field(1, 2, b'c')
        + pb_field(
            7,
            2,
            pb_field(7, 2, pb_field(1, 2, pb_varint(5))) + pb_field(5, 2, struct.pack('<2f', 1, 2)),
        ),
    )
    with pytest.raises(caffe_pb.CaffeModelError, match="layer 'c'.*holds 5 values"):
        caffe_pb.parse_caffemodel(bad_blob, 'm.caffemodel')


def test_prototxt_parser():
    text = r'''
    # a comment
    name: "VGG_SSD"  # trailing comment
    input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }
    layer {
      name: 'conv\'1' type: "Convolution"
      convolution_param: { num_output: 64 pad: 1 kernel_size: 3 bias_term: false }
      param { lr_mult: 1.5e-1 } param { lr_mult: -2 }
    }
    layer { name: "det" detection_output_param { code_type: CENTER_SIZE nms_param <
      nms_threshold: 0.45 > } }
    repeated: [1, 2.5, 3]
    '''
    net = prototxt.parse(text)
    assert net.get('name') == 'VGG_SSD'
    assert net.get('input_shape').get_all('dim') == [1, 3, 300, 300]
    conv, det = net.get_all('layer')
    assert conv.get('name') == "conv'1"
    p = conv.get('convolution_param')
    assert (p.get('num_output'), p.get('bias_term'), p.get('stride', 1)) == (64, False, 1)
    assert [x.get('lr_mult') for x in conv.get_all('param')] == [0.15, -2]
    assert det.get('detection_output_param').get('code_type') == 'CENTER_SIZE'
    assert det.get('detection_output_param').get('nms_param').get('nms_threshold') == 0.45
    assert net.get_all('repeated') == [1, 2.5, 3]
    # to_text writes what parse reads.
    assert prototxt.parse(prototxt.to_text(net)).fields == net.fields


def test_prototxt_getters_follow_protobuf_text_format():
    """A field given twice takes its last value (a block too); bounds are inclusive unless
    exclusive_minimum; booleans may be t / f; "\\101" is an octal escape; blocks nest up to 100
    deep (protobuf's parsers' limit)."""
    net = prototxt.parse(r'x: 0.2 x: 1.0 p { v: 1 } p { v: 2 } s: "\101\n" t: t f: f')
    assert net.number('x', 'w', minimum=1.0, maximum=1.0) == 1.0
    assert net.block('p', 'w').get('v') == 2
    assert net.text('s', 'w') == 'A\n'
    assert (net.boolean('t', 'w'), net.boolean('f', 'w')) == (True, False)
    assert len(prototxt.parse('a { ' * 100 + '}' * 100).fields) == 1
    with pytest.raises(prototxt.PrototxtError, match='nested more than 100 deep'):
        prototxt.parse('a { ' * 101 + '}' * 101)


@pytest.mark.parametrize(
    'text,message',
    [
        ('layer { name: "a"', 'unclosed'),
        ('layer { }\n}', 'line 2: unbalanced'),
        ('name: "a\\q"', 'unknown escape'),
        ('a: }', 'expected a value'),
    ],
)
def test_prototxt_errors_give_the_line(text, message):
    with pytest.raises(prototxt.PrototxtError, match=message):
        prototxt.parse(text, 'deploy.prototxt')


def test_ssd_config_from_generated_deploys():
    vgg = caffe_ssd.ssd_config_from_prototxt(
        prototxt.parse(caffe_fixtures.vgg_ssd(300).prototxt), caffe_ssd.layer_map('ssd_300_vgg')
    )
    params = vgg['ssd_params']
    assert params['img_shape'] == [300, 300] and params['num_classes'] == 21
    assert params['anchor_sizes'] == [[lo, hi] for lo, hi, _, _ in caffe_fixtures.VGG300_VOC_PRIORS]
    assert params['anchor_ratios'] == [r for _, _, r, _ in caffe_fixtures.VGG300_VOC_PRIORS]
    assert params['anchor_steps'] == [8.0, 16.0, 32.0, 64.0, 100.0, 300.0]
    assert (params['anchor_offset'], params['anchor_clip']) == (0.5, False)
    assert params['prior_scaling'] == [0.1, 0.1, 0.2, 0.2]
    assert vgg['detection'] == caffe_fixtures.VGG_DETECTION
    mobilenet = caffe_ssd.ssd_config_from_prototxt(
        prototxt.parse(caffe_fixtures.mobilenet_ssd('separate').prototxt),
        caffe_ssd.layer_map('ssd_300_mobilenet'),
    )
    assert mobilenet['ssd_params']['anchor_steps'] == [None] * 6
    assert mobilenet['ssd_params']['anchor_sizes'][0] == [60.0, None]
    assert mobilenet['detection'] == caffe_fixtures.MOBILENET_DETECTION
    assert mobilenet['bn_eps']['conv0/bn'] == 1e-5


def test_prior_box_fields_left_out_take_caffes_defaults():
    """SSD Caffe's PriorBoxParameter defaults (caffe.proto: offset 0.5, clip false, flip true;
    prior_box_layer.cpp: no variance is 0.1 for all four codes), as a deploy that leaves them out
    must give; the generated deploys spell every one of them."""
    text = caffe_fixtures.mobilenet_ssd().prototxt
    bare = re.sub(r'\n *(offset|clip|flip|variance): [^\n]*', '', text)
    assert bare.count('PriorBox') == text.count('PriorBox') and 'variance' not in bare
    params = caffe_ssd.ssd_config_from_prototxt(
        prototxt.parse(bare), caffe_ssd.layer_map('ssd_300_mobilenet')
    )['ssd_params']
    assert (params['anchor_offset'], params['anchor_clip']) == (0.5, False)
    assert params['prior_scaling'] == [0.1] * 4


def test_ssd_config_rejects_what_our_anchors_cannot_express():
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')
    text = caffe_fixtures.mobilenet_ssd().prototxt
    with pytest.raises(caffe_ssd.ConversionError, match='flip: false'):
        caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse(text.replace('flip: true', 'flip: false', 1)), spec
        )
    with pytest.raises(caffe_ssd.ConversionError, match="reads \\['conv12'"):
        caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse(
                text.replace(
                    'bottom: "conv11"\n  bottom: "data"', 'bottom: "conv12"\n  bottom: "data"'
                )
            ),
            spec,
        )
    with pytest.raises(caffe_ssd.ConversionError, match='disagree on clip'):
        caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse(text.replace('clip: false', 'clip: true', 1)), spec
        )
    with pytest.raises(caffe_ssd.ConversionError, match='disagree on variances'):
        caffe_ssd.ssd_config_from_prototxt(
            prototxt.parse(text.replace('variance: 0.2', 'variance: 0.3', 1)), spec
        )
