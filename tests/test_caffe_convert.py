"""Caffe -> TF conversion: layouts and BatchNorm against numpy references, reporting of what
does not fit, the backbone-only fc-reduced VGG16 (against OpenCV), and the script's errors."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from converters import caffe_convert
from datasets import labels
from model import card as card_lib
from converters import caffe_pb
from converters import caffe_ssd
from converters import prototxt
from tests import caffe_fixtures
from tests.conftest import run_script
from converters import checkpoint_io
from nets import nets_factory
from nets import ssd_vgg

v1 = tf.compat.v1


def _caffe_conv(x, w, pad, stride=1, group=1):
    """Caffe's convolution (cross-correlation), numpy: x [C, H, W], w [O, C/group, kh, kw]."""
    c, h, width = x.shape
    out, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (width + 2 * pad - kw) // stride + 1
    y = np.zeros((out, ho, wo))
    per_group = out // group
    for o in range(out):
        first = (o // per_group) * cg
        for i in range(ho):
            for j in range(wo):
                patch = xp[
                    first : first + cg, i * stride : i * stride + kh, j * stride : j * stride + kw
                ]
                y[o, i, j] = np.sum(patch * w[o])
    return y


def _run(fn):
    with tf.Graph().as_default(), v1.Session() as sess:
        return sess.run(fn())


def _convert_one(layer, target, first=False):
    spec = caffe_ssd.LayerMap(
        name='t',
        net_name='t',
        scope='s',
        convs={layer.name: target},
        first_conv=layer.name if first else '',
        l2_norms={},
        feature_sources=(),
        backbone_only=False,
        caffe_mean_bgr=(0.0, 0.0, 0.0),
        caffe_scale=1.0,
        detection={},
        anchor_presets={},
    )
    return caffe_ssd.convert_layers([layer], spec).values


@pytest.mark.parametrize('stride,pad', [(1, 1), (2, 1), (1, 0)])
def test_conv_layout_and_bgr_swap_match_caffe(stride, pad):
    rng = np.random.default_rng(stride + pad)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    x_bgr = rng.standard_normal((3, 7, 7)).astype(np.float32)
    values = _convert_one(
        caffe_pb.CaffeLayer('conv1_1', 'Convolution', [w]),
        caffe_ssd.ConvTarget('conv1'),
        first=True,
    )
    w_tf = values['s/conv1/weights']
    assert w_tf.shape == (3, 3, 3, 5)
    x_rgb = x_bgr[::-1].transpose(1, 2, 0)[None]  # The TF net sees RGB, NHWC.
    y = _run(
        lambda: tf.nn.conv2d(
            x_rgb, w_tf, [1, stride, stride, 1], [[0, 0], [pad, pad], [pad, pad], [0, 0]]
        )
    )
    np.testing.assert_allclose(
        y[0].transpose(2, 0, 1), _caffe_conv(x_bgr, w, pad, stride), rtol=1e-5, atol=1e-5
    )


def test_depthwise_layout_matches_caffe_group_conv():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    x = rng.standard_normal((4, 6, 6)).astype(np.float32)
    values = _convert_one(
        caffe_pb.CaffeLayer('conv1/dw', 'Convolution', [w], group=4),
        caffe_ssd.ConvTarget('conv1/dw', depthwise=True),
    )
    w_tf = values['s/conv1/dw/depthwise_weights']
    assert w_tf.shape == (3, 3, 4, 1)
    y = _run(
        lambda: tf.nn.depthwise_conv2d(
            np.pad(x.transpose(1, 2, 0)[None], ((0, 0), (1, 1), (1, 1), (0, 0))),
            w_tf,
            [1, 2, 2, 1],
            'VALID',
        )
    )
    np.testing.assert_allclose(
        y[0].transpose(2, 0, 1), _caffe_conv(x, w, 1, 2, group=4), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(caffe_ssd.ConversionError, match='should be depthwise'):
        _convert_one(
            caffe_pb.CaffeLayer('conv1/dw', 'Convolution', [np.ones((4, 2, 3, 3))]),
            caffe_ssd.ConvTarget('conv1/dw', depthwise=True),
        )
    with pytest.raises(caffe_ssd.ConversionError, match='grouped convolution'):
        _convert_one(
            caffe_pb.CaffeLayer('conv1', 'Convolution', [np.ones((4, 2, 3, 3))], group=2),
            caffe_ssd.ConvTarget('conv1'),
        )


def _our_batch_norm(x, values, eps):
    return (
        values['gamma'] * (x - values['moving_mean']) / np.sqrt(values['moving_variance'] + eps)
        + values['beta']
    )


@pytest.mark.parametrize(
    'factor,conv_bias,caffe_eps', [(999.5, False, 1e-5), (0.0, False, 1e-5), (1.0, True, 1e-3)]
)
def test_batch_norm_and_scale_match_caffe(factor, conv_bias, caffe_eps):
    rng = np.random.default_rng(2)
    c = 6
    mean, var = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    bias = rng.standard_normal(c)
    conv_blobs = [np.ones((c, 1, 1, 1), np.float32)] + (
        [bias.astype(np.float32)] if conv_bias else []
    )
    layers = [
        caffe_pb.CaffeLayer('conv1', 'Convolution', conv_blobs),
        caffe_pb.CaffeLayer(
            'conv1/bn',
            'BatchNorm',
            [np.float32(mean * factor), np.float32(var * factor), np.float32([factor])],
            eps=caffe_eps,
        ),
        caffe_pb.CaffeLayer('conv1/scale', 'Scale', [np.float32(gamma), np.float32(beta)]),
    ]
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')
    conv = caffe_ssd.convert_layers(layers, spec, tf_bn_epsilon=1e-5)
    values = {k.rsplit('/', 1)[1]: v for k, v in conv.values.items() if '/BatchNorm/' in k}
    x = rng.standard_normal((10, c)) * 3
    # Caffe: conv (+ bias), BatchNorm with stats / f (0 when f == 0), then Scale.
    f = 0.0 if factor == 0 else 1.0 / factor
    conv_out = x + (bias if conv_bias else 0.0)
    ref = (conv_out - mean * factor * f) / np.sqrt(var * factor * f + caffe_eps) * gamma + beta
    np.testing.assert_allclose(_our_batch_norm(x, values, 1e-5), ref, rtol=1e-4, atol=1e-4)
    assert [r.caffe_name for r in conv.mapped] == ['conv1', 'conv1/bn', 'conv1/scale']
    assert conv.unmapped == []


def test_zero_factor_statistics_prototxt_eps_and_a_scale_without_beta_are_caffes():
    """Caffe's BatchNorm takes zero statistics when its factor blob f is 0, whatever the mean
    and variance blobs hold (batch_norm_layer.cpp: scale_factor 0), and the eps of the deploy
    prototxt (the net Caffe builds) over the one stored in the caffemodel; a Scale layer without
    bias_term has one blob, gamma, and adds nothing."""
    rng = np.random.default_rng(4)
    c = 5
    gamma = rng.uniform(0.5, 1.5, c)
    layers = [
        caffe_pb.CaffeLayer('conv1', 'Convolution', [np.ones((c, 1, 1, 1), np.float32)]),
        caffe_pb.CaffeLayer(
            'conv1/bn',
            'BatchNorm',
            [
                np.float32(rng.standard_normal(c)),
                np.float32(rng.uniform(0.5, 2.0, c)),
                np.float32([0.0]),
            ],
            eps=1e-5,
        ),
        caffe_pb.CaffeLayer('conv1/scale', 'Scale', [np.float32(gamma)]),
    ]
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')
    conv = caffe_ssd.convert_layers(layers, spec, tf_bn_epsilon=1e-3, bn_eps={'conv1/bn': 0.25})
    values = {k.rsplit('/', 1)[1]: v for k, v in conv.values.items() if '/BatchNorm/' in k}
    x = rng.standard_normal((10, c)) * 3
    # (x - 0) / sqrt(0 + 0.25) * gamma = 2x * gamma.
    np.testing.assert_allclose(
        _our_batch_norm(x, values, 1e-3), 2 * x * gamma, rtol=1e-5, atol=1e-5
    )


def test_merged_batch_norm_is_the_identity_plus_bias():
    rng = np.random.default_rng(3)
    bias = rng.standard_normal(8).astype(np.float32)
    layers = [
        caffe_pb.CaffeLayer('conv0', 'Convolution', [np.ones((8, 3, 3, 3), np.float32), bias])
    ]
    conv = caffe_ssd.convert_layers(layers, caffe_ssd.layer_map('ssd_300_mobilenet'), 1e-5)
    values = {k.rsplit('/', 1)[1]: v for k, v in conv.values.items() if '/BatchNorm/' in k}
    x = rng.standard_normal((5, 8)).astype(np.float32) * 10
    np.testing.assert_allclose(_our_batch_norm(x, values, 1e-5), x + bias, rtol=1e-6, atol=1e-5)


def test_num_classes_is_inferred_from_the_heads():
    spec = caffe_ssd.layer_map('ssd_300_mobilenet')

    def heads(conf_out):
        return [
            caffe_pb.CaffeLayer('conv11_mbox_loc', 'Convolution', [np.zeros((12, 1, 1, 1))]),
            caffe_pb.CaffeLayer('conv11_mbox_conf', 'Convolution', [np.zeros((conf_out, 1, 1, 1))]),
            caffe_pb.CaffeLayer('conv13_mbox_loc', 'Convolution', [np.zeros((24, 1, 1, 1))]),
            caffe_pb.CaffeLayer('conv13_mbox_conf', 'Convolution', [np.zeros((6 * 81, 1, 1, 1))]),
        ]

    assert caffe_ssd.infer_num_classes(heads(3 * 81), spec) == 81
    with pytest.raises(caffe_ssd.ConversionError, match='disagree on the number of classes'):
        caffe_ssd.infer_num_classes(heads(3 * 21), spec)


def test_layer_type_duplicates_and_unknown_model_are_errors():
    spec = caffe_ssd.layer_map('ssd_300_vgg')
    with pytest.raises(caffe_ssd.ConversionError, match="'fc6' is a InnerProduct layer"):
        caffe_ssd.convert_layers(
            [caffe_pb.CaffeLayer('fc6', 'InnerProduct', [np.ones((2, 3))])], spec
        )
    conv = caffe_pb.CaffeLayer('fc7', 'Convolution', [np.ones((2, 3, 1, 1))])
    with pytest.raises(caffe_ssd.ConversionError, match="'fc7' occurs twice"):
        caffe_ssd.convert_layers([conv, conv], spec)
    with pytest.raises(caffe_ssd.ConversionError, match="unknown model 'ssd_300_resnet'"):
        caffe_ssd.layer_map('ssd_300_resnet')


@pytest.fixture(scope='module')
def mobilenet_model(tmp_path_factory):
    """A separate-BN MobileNet-SSD caffemodel + deploy (no head calibration needed here)."""
    directory = tmp_path_factory.mktemp('mobilenet')
    net = caffe_fixtures.mobilenet_ssd('separate', seed=5)
    return net, directory


def test_unmapped_missing_and_mismatched_are_reported_by_name(mobilenet_model):
    net, directory = mobilenet_model
    layers = [l for l in net.layers if l.name != 'conv5/dw']
    layers.append(caffe_pb.CaffeLayer('conv_extra', 'Convolution', [np.ones((2, 2, 1, 1))]))
    path = str(directory / 'broken.caffemodel')
    caffe_pb.write_caffemodel(path, layers)
    out = str(directory / 'broken.ckpt')
    with pytest.raises(checkpoint_io.CheckpointMismatchError) as info:
        caffe_convert.convert(path, out, 'ssd_300_mobilenet', num_classes=10, log=lambda line: None)
    message = str(info.value)
    assert "unmapped Caffe layer 'conv_extra'" in message
    assert 'missing TF variable ssd_300_mobilenet/conv5/dw/depthwise_weights' in message
    assert (
        'shape mismatch for ssd_300_mobilenet/conv11_mbox_conf/weights: the Caffe layer gives '
        '(1, 1, 512, 63), the net has (1, 1, 512, 30)'
    ) in message
    assert not [f for f in os.listdir(directory) if f.startswith('broken.ckpt')]

    lines = []
    result = caffe_convert.convert(
        path, out, 'ssd_300_mobilenet', allow_partial=True, log=lines.append
    )
    assert any("unmapped Caffe layer 'conv_extra'" in p for p in result.problems)
    assert any('conv5/dw/BatchNorm/gamma' in p for p in result.problems)
    saved = checkpoint_io.restore_values(out)
    assert 'ssd_300_mobilenet/conv5/dw/depthwise_weights' not in saved
    assert len(saved) == 199 - 5
    np.testing.assert_array_equal(
        saved['ssd_300_mobilenet/conv6/weights'],
        next(l for l in layers if l.name == 'conv6').blobs[0].transpose(2, 3, 1, 0),
    )
    assert any(line.startswith('Caffe layer') for line in lines)
    with open(os.path.join(directory, 'checkpoint')) as f:
        assert f.read().startswith(
            checkpoint_io.STATE_FILE_HEADER + '\nmodel_checkpoint_path: "broken.ckpt"'
        )
    # Without a prototxt the card carries the published MobileNet-SSD anchors and thresholds.
    assert result.config_path == out + '.model.json'
    card = card_lib.load(result.config_path)
    published = caffe_fixtures.MOBILENET_DETECTION
    assert card.detection == card_lib.DetectionSettings(
        select_threshold=published['confidence_threshold'],
        nms_threshold=published['nms_threshold'],
        top_k=published['top_k'],
        keep_top_k=published['keep_top_k'],
    )
    assert card.num_classes == 21 and card.class_names == labels.VOC_CLASSES
    assert card.mean_rgb == (127.5,) * 3 and card.scale == 0.007843
    assert card.anchor_size_preset == 'mobilenet_ssd'
    assert card.provenance['source']['caffemodel'] == os.path.abspath(path)


def test_another_model_kind_names_the_model_name_to_pass(mobilenet_model):
    """A MobileNet-SSD caffemodel converted as ssd_300_vgg listed its ~120 layers as unmapped and
    advised --allow_partial, with which the save failed with a traceback ('No variables to
    save')."""
    net, directory = mobilenet_model
    path = str(directory / 'mobilenet.caffemodel')
    caffe_pb.write_caffemodel(path, net.layers)
    out = str(directory / 'as_vgg.ckpt')
    for name in ('ssd_300_vgg', 'ssd_512_vgg', 'vgg_16_fc_reduced'):
        with pytest.raises(caffe_ssd.ConversionError) as info:
            caffe_convert.convert(path, out, name, log=lambda line: None)
        assert str(info.value).startswith(
            f'{path}: a ssd_300_mobilenet model, not {name} ('
        ) and str(info.value).endswith('); pass --model_name=ssd_300_mobilenet.')
    mobilenet = caffe_ssd.layer_map('ssd_300_mobilenet')
    named = sum(1 for layer in net.layers if layer.blobs and layer.name in mobilenet.convs)
    assert f'({named} of its {len(mobilenet.convs)} convolution layers are there, 0 of' in (
        str(info.value)
    )
    # Nothing of the net in the weights, whatever --allow_partial says: one error, no file.
    layers = [caffe_pb.CaffeLayer('mystery', 'Convolution', [np.ones((2, 2, 1, 1))])]
    caffe_pb.write_caffemodel(path, layers)
    with pytest.raises(checkpoint_io.CheckpointMismatchError) as info:
        caffe_convert.convert(
            path, out, 'ssd_300_mobilenet', num_classes=21, allow_partial=True, log=lambda _: None
        )
    assert str(info.value).startswith(
        "The Caffe model does not fit ssd_300_mobilenet: none of its weights is one of the net's "
        '(check --model_name):'
    )
    assert not [f for f in os.listdir(directory) if f.startswith('as_vgg.ckpt')]


def test_a_backbone_from_a_whole_ssd_model_is_not_another_kind():
    """The kind check compares layer names only: a whole VGG SSD caffemodel holds every layer of
    the fc-reduced backbone (its conversion writes that backbone), and is named as what it is for
    a MobileNet conversion."""
    vgg = caffe_ssd.layer_map('ssd_300_vgg')
    layers = [caffe_pb.CaffeLayer(n, 'Convolution', [np.ones((1, 1, 1, 1))]) for n in vgg.convs]
    caffe_ssd.check_model_kind(layers, caffe_ssd.layer_map('vgg_16_fc_reduced'), 'm.caffemodel')
    caffe_ssd.check_model_kind(layers, vgg, 'm.caffemodel')
    with pytest.raises(caffe_ssd.ConversionError, match=r'^m\.caffemodel: a ssd_(300|512)_vgg'):
        caffe_ssd.check_model_kind(layers, caffe_ssd.layer_map('ssd_300_mobilenet'), 'm.caffemodel')


def test_fc_reduced_vgg16_backbone_matches_opencv(tmp_path):
    """vgg_16_fc_reduced writes only conv1_1..fc7 (here for ssd_300_vgg; `backbone_scope`
    picks ssd_512_vgg); its conv7 (Caffe fc7) features equal OpenCV's on a small input."""
    net = caffe_fixtures.vgg_fc_reduced(seed=6, size=64)
    proto, model = caffe_fixtures.write_net(net, str(tmp_path), 'fc_reduced')
    out = str(tmp_path / 'vgg16_fc_reduced.ckpt')
    result = caffe_convert.convert(model, out, 'vgg_16_fc_reduced', log=lambda line: None)
    assert result.problems == [] and result.config['backbone_only'] is True
    # A backbone is no detection model: no card, its conversion record instead.
    assert result.config_path == out + '.json' and not os.path.exists(out + '.model.json')
    saved = checkpoint_io.restore_values(out)
    assert len(saved) == 30 and all(n.startswith('ssd_300_vgg/conv') for n in saved)
    assert saved['ssd_300_vgg/conv6/weights'].shape == (3, 3, 512, 1024)

    image = caffe_fixtures.photo_like_image(64, 64, seed=8)
    blob = caffe_fixtures.opencv_blob(image, (64, 64), (104.0, 117.0, 123.0), 1.0)
    ref = caffe_fixtures.opencv_forward(net, blob, ['fc7/relu'])['fc7/relu'][0].transpose(1, 2, 0)
    assert caffe_ssd.layer_map('vgg_16_fc_reduced', 'ssd_512_vgg').scope == 'ssd_512_vgg'
    cls = nets_factory.get_network('ssd_300_vgg')
    with tf.Graph().as_default():
        inputs = tf.constant(blob[0].transpose(1, 2, 0)[None, :, :, ::-1])
        with slim.arg_scope(cls().arg_scope()):
            with v1.variable_scope('ssd_300_vgg'):
                end_points = ssd_vgg.vgg_backbone(inputs, extra_layers=())
        with v1.Session() as sess:
            v1.train.Saver().restore(sess, out)
            ours = sess.run(end_points['block7'])[0]
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (ref > 0).mean() > 0.05  # not a dead net


def test_script_rejects_a_file_that_is_not_a_caffemodel(tmp_path):
    fake = tmp_path / 'deploy.prototxt'
    fake.write_text('name: "VGG_SSD"\n')
    proc = run_script(
        'caffe_to_tensorflow.py',
        '--caffemodel_path=%s' % fake,
        '--model_name=ssd_300_vgg',
        '--output_path=%s' % (tmp_path / 'x.ckpt'),
    )
    assert proc.returncode != 0
    assert 'caffe_to_tensorflow: error: %s is not a binary Caffe model' % fake in proc.stderr
    assert not list(tmp_path.glob('x.ckpt*'))


def test_script_names_the_flag_of_a_missing_or_swapped_file_and_an_ignored_flag(
    tmp_path, monkeypatch
):
    """Bare '[Errno 2] ...' / '[Errno 17] File exists' named no flag; a caffemodel passed as the
    prototxt was 'more than the limit of 16777216 bytes'; --backbone_scope with a whole model
    was ignored."""
    missing = tmp_path / 'missing.caffemodel'
    out = f'--output_path={tmp_path / "x.ckpt"}'
    proc = run_script(
        'caffe_to_tensorflow.py', f'--caffemodel_path={missing}', '--model_name=ssd_300_vgg', out
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        f'caffe_to_tensorflow: error: --caffemodel_path: {missing} does not exist; pass the '
        'binary .caffemodel weights.'
    )
    weights = tmp_path / 'w.caffemodel'
    caffe_pb.write_caffemodel(
        str(weights), [caffe_pb.CaffeLayer('conv1_1', 'Convolution', [np.ones((2, 3, 3, 3))])]
    )
    proc = run_script(
        'caffe_to_tensorflow.py',
        f'--caffemodel_path={weights}',
        '--model_name=ssd_300_mobilenet',
        '--backbone_scope=ssd_512_vgg',
        out,
    )
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1] == (
        'caffe_to_tensorflow: error: --backbone_scope names the net whose backbone a '
        'vgg_16_fc_reduced conversion writes; --model_name=ssd_300_mobilenet converts a whole '
        'model (leave it out).'
    )
    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    with pytest.raises(NotADirectoryError) as info:
        checkpoint_io.check_output_path(str(notes / 'sub' / 'x.ckpt'))
    assert str(info.value) == (
        f'--output_path={notes}/sub/x.ckpt: {notes} is a file, not a folder; pass a prefix in a '
        'folder (a new one is created).'
    )
    # The weights as --prototxt_path: larger than a prototxt may be, and binary.
    monkeypatch.setattr(prototxt, 'MAX_FILE_BYTES', 16)
    with pytest.raises(prototxt.PrototxtError) as info:
        prototxt.parse_file(str(weights))
    assert str(info.value) == (
        f'{weights}: a binary file, not a text .prototxt; the binary weights (.caffemodel) go to '
        '--caffemodel_path'
    )


def test_a_checkpoint_the_converter_did_not_write_is_not_replaced(tmp_path):
    """--output_path naming a training's checkpoint (no card or record beside it): refused,
    its files untouched; the converter's own earlier output is replaced as before."""
    net = caffe_fixtures.vgg_fc_reduced(seed=6, size=64)
    _, model = caffe_fixtures.write_net(net, str(tmp_path), 'fc_reduced')
    out = str(tmp_path / 'model.ckpt-5000')
    with tf.Graph().as_default():
        tf.compat.v1.get_variable('w', initializer=np.ones([2], np.float32))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, out, write_meta_graph=False, write_state=False)
    before = {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if 'ckpt' in n}
    with pytest.raises(FileExistsError, match='model.ckpt-5000 is a checkpoint this converter '):
        caffe_convert.convert(model, out, 'vgg_16_fc_reduced', log=lambda line: None)
    assert {n: (tmp_path / n).read_bytes() for n in os.listdir(tmp_path) if 'ckpt' in n} == before
    # An older converter's record beside it (every version's has backbone_only; a `{}` would
    # be no converter's, and is not replaced: tests/test_converter_outputs.py).
    (tmp_path / 'model.ckpt-5000.json').write_text(
        '{"model_name": "ssd_300_vgg", "backbone_only": true, "source": {}}'
    )
    caffe_convert.convert(model, out, 'vgg_16_fc_reduced', log=lambda line: None)
    assert len(checkpoint_io.restore_values(out)) == 30
    mine = str(tmp_path / 'vgg16_fc_reduced.ckpt')
    for _ in range(2):
        caffe_convert.convert(model, mine, 'vgg_16_fc_reduced', log=lambda line: None)
    assert len(checkpoint_io.restore_values(mine)) == 30


def test_the_reload_check_refuses_outputs_beyond_float_noise():
    """The last step of writing a checkpoint: the re-loaded net's outputs must equal the
    converted net's up to float noise (1e-6 of the largest output)."""
    expected = {'logits': np.array([[1000.0, -2.0]]), 'localisations': np.array([[0.5]])}
    noisy = {'logits': np.array([[1000.0 + 1e-4, -2.0]]), 'localisations': np.array([[0.5]])}
    assert checkpoint_io._compare('m.ckpt', expected, noisy) == pytest.approx(1e-4, rel=1e-3)
    lost = {'logits': np.array([[1000.0, -2.0]]), 'localisations': np.array([[0.6]])}
    with pytest.raises(RuntimeError, match=r're-loading m.ckpt does not reproduce .*diff 0.1\)'):
        checkpoint_io._compare('m.ckpt', expected, lost)
