"""PyTorch -> TF conversion: layouts recognised from the tensor names, errors that name what is
wrong, class orders, the anchor presets of the sources, and the VGG base files as backbones for
training (converted with the script, loaded the way --checkpoint_path loads them, first-step loss
against a TF-Slim vgg_16-initialised net)."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from converters import checkpoint_io
from converters import pytorch_convert
from converters import pytorch_ssd
from model import checkpoints
from nets import anchors as anchors_lib
from nets import nets_factory
from nets import ssd_params
from tests import pytorch_fixtures as fx
from tests.conftest import run_script

v1 = tf.compat.v1


@pytest.fixture(scope='module')
def ssd_pytorch_sd():
    return fx.ssd_pytorch_ssd300(fx.SEED)


def _torchvision_vgg_features_file_keys():
    """The keys of torchvision's vgg16_features file, classifier included (zero-stride NaN)."""
    sd = fx.torchvision_vgg_features(fx.SEED)
    for key, shape in (
        ('classifier.0.weight', (4096, 25088)),
        ('classifier.0.bias', (4096,)),
        ('classifier.3.weight', (4096, 4096)),
        ('classifier.3.bias', (4096,)),
        ('classifier.6.weight', (1000, 4096)),
        ('classifier.6.bias', (1000,)),
    ):
        sd[key] = np.broadcast_to(np.float32(np.nan), shape)
    return sd


@pytest.mark.parametrize(
    'source,layout',
    [
        ('torchvision_ssd300', 'torchvision_ssd300'),
        ('ssd_pytorch_ssd300', 'ssd_pytorch_ssd300'),
        ('ssd_pytorch_vgg', 'ssd_pytorch_vgg16_reducedfc'),
        ('torchvision_vgg_features', 'torchvision_vgg16_features'),
    ],
)
def test_layouts_are_recognised_and_map_every_tensor(source, layout):
    sd = (
        _torchvision_vgg_features_file_keys()
        if source == 'torchvision_vgg_features'
        else fx.SOURCES[source](fx.SEED)
    )
    found = pytorch_ssd.detect_layout(sd.keys())
    assert found.name == layout
    conversion = pytorch_ssd.convert_state_dict(sd, found)
    assert not conversion.unmapped and not conversion.missing
    expected = {
        'torchvision_ssd300': 71,
        'ssd_pytorch_ssd300': 71,
        'ssd_pytorch_vgg16_reducedfc': 30,
        'torchvision_vgg16_features': 26,
    }[layout]
    assert len(conversion.values) == expected
    if layout == 'torchvision_vgg16_features':
        assert [k for k, _ in conversion.skipped] == [k for k in sd if k.startswith('classifier')]
    # OIHW -> HWIO, nothing reversed (both sources see RGB).
    first = (
        'backbone.features.0.weight'
        if layout == 'torchvision_ssd300'
        else (
            'vgg.0.weight'
            if layout == 'ssd_pytorch_ssd300'
            else ('0.weight' if layout == 'ssd_pytorch_vgg16_reducedfc' else 'features.0.weight')
        )
    )
    np.testing.assert_array_equal(
        conversion.values['ssd_300_vgg/conv1/conv1_1/weights'], sd[first].transpose(2, 3, 1, 0)
    )


def test_module_prefix_of_data_parallel_is_stripped(ssd_pytorch_sd):
    sd = collections.OrderedDict(('module.' + k, v) for k, v in ssd_pytorch_sd.items())
    sd = pytorch_ssd.strip_module_prefix(sd)
    assert pytorch_ssd.detect_layout(sd.keys()).name == 'ssd_pytorch_ssd300'


def test_unknown_layout_lists_the_keys_and_the_known_layouts():
    keys = ['encoder.conv1.weight', 'encoder.conv1.bias', 'decoder.fc.weight']
    with pytest.raises(pytorch_ssd.ConversionError) as err:
        pytorch_ssd.detect_layout(keys, 'mine.pth')
    message = str(err.value)
    assert 'mine.pth: unknown layout' in message
    assert 'encoder.conv1.weight, encoder.conv1.bias, decoder.fc.weight' in message
    for name in pytorch_ssd.LAYOUTS:
        assert name in message
    assert 'ssd300_mAP_77.43_v2.pth' in message and 'L2Norm.weight' in message


def test_shape_mismatch_names_the_tensor(ssd_pytorch_sd):
    sd = collections.OrderedDict(ssd_pytorch_sd)
    sd['vgg.5.weight'] = np.zeros((128, 32, 3, 3), np.float32)
    with pytest.raises(
        pytorch_ssd.ConversionError,
        match=r'vgg\.5\.weight has shape \(128, 32, 3, 3\), but '
        r'ssd_300_vgg/conv2/conv2_1/weights needs \(128, 64, 3, 3\)',
    ):
        pytorch_ssd.convert_state_dict(sd, pytorch_ssd.LAYOUTS['ssd_pytorch_ssd300'])


def test_nan_weights_are_refused_by_name(ssd_pytorch_sd):
    sd = collections.OrderedDict(ssd_pytorch_sd)
    sd['extras.3.bias'] = np.full(256, np.nan, np.float32)
    with pytest.raises(pytorch_ssd.ConversionError, match=r'extras\.3\.bias .*NaN'):
        pytorch_ssd.convert_state_dict(sd, pytorch_ssd.LAYOUTS['ssd_pytorch_ssd300'])


def test_missing_and_unmapped_tensors_are_reported(ssd_pytorch_sd):
    sd = collections.OrderedDict(ssd_pytorch_sd)
    del sd['conf.2.bias']
    sd['extras.8.weight'] = np.zeros((1, 1, 1, 1), np.float32)
    conversion = pytorch_ssd.convert_state_dict(sd, pytorch_ssd.LAYOUTS['ssd_pytorch_ssd300'])
    assert conversion.missing == ['conf.2.bias']
    assert conversion.unmapped == ['extras.8.weight']
    assert 'UNMAPPED PyTorch tensor extras.8.weight' in pytorch_ssd.format_table(conversion)


def test_class_orders_of_torchvision_coco():
    layout = pytorch_ssd.LAYOUTS['torchvision_ssd300']
    keep, names = pytorch_ssd.class_order_channels(layout, 91, 'contiguous')
    assert len(keep) == 81 and keep[:13] == [0] + list(range(1, 12)) + [13]
    assert names[:12] == (
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
        'stop sign',
    )
    assert names[-1] == 'toothbrush' and 'N/A' not in names
    keep, names = pytorch_ssd.class_order_channels(layout, 91, 'source')
    assert keep == list(range(91)) and names[11] == 'unused_12' and len(set(names)) == 90
    # The contiguous class head is the source's, channel by channel (a*91 + c for the kept c).
    sd = fx.torchvision_ssd300(fx.SEED)
    source = pytorch_ssd.convert_state_dict(sd, layout, class_order='source')
    ordered = pytorch_ssd.convert_state_dict(sd, layout, class_order='contiguous')
    assert (source.num_classes, ordered.num_classes) == (91, 81)
    kept, _ = pytorch_ssd.class_order_channels(layout, 91, 'contiguous')
    channels = [a * 91 + c for a in range(4) for c in kept]
    w = 'ssd_300_vgg/block11_box/conv_cls/weights'
    b = 'ssd_300_vgg/block11_box/conv_cls/biases'
    np.testing.assert_array_equal(ordered.values[w], source.values[w][..., channels])
    np.testing.assert_array_equal(ordered.values[b], source.values[b][channels])


def test_contiguous_is_only_for_torchvision_coco(tmp_path, ssd_pytorch_sd):
    path = str(tmp_path / 'voc.pth')
    fx.write_pth(ssd_pytorch_sd, path)
    with pytest.raises(pytorch_ssd.ConversionError, match='has none'):
        pytorch_convert.convert(
            path, str(tmp_path / 'x.ckpt'), class_order='contiguous', log=lambda *_: None
        )


def test_unmapped_tensor_fails_the_conversion_naming_it(tmp_path, ssd_pytorch_sd):
    sd = collections.OrderedDict(ssd_pytorch_sd)
    sd['extras.8.weight'] = np.zeros((1, 1, 1, 1), np.float32)
    path = str(tmp_path / 'extra.pth')
    fx.write_pth(sd, path)
    with pytest.raises(
        checkpoint_io.CheckpointMismatchError,
        match=r'extra\.pth \(ssd_pytorch_ssd300\) does not fit ssd_300_vgg[\s\S]*'
        r'PyTorch tensor extras\.8\.weight is not mapped',
    ):
        pytorch_convert.convert(path, str(tmp_path / 'x.ckpt'), log=lambda *_: None)
    assert not os.path.exists(str(tmp_path / 'x.ckpt.index'))
    # Another --layout than the file's, which fits no layout: nothing fits, said in PyTorch's
    # terms and flag (it said "no Caffe layer gave it a value ... check --model_name", a flag
    # this converter lacks).
    del sd['L2Norm.weight']
    fx.write_pth(sd, path)
    with pytest.raises(checkpoint_io.CheckpointMismatchError) as info:
        pytorch_convert.convert(
            path, str(tmp_path / 'x.ckpt'), 'torchvision_ssd300', 21, log=lambda *_: None
        )
    message = str(info.value)
    assert message.startswith(
        f"{path} (torchvision_ssd300) does not fit ssd_300_vgg: none of its weights is one of "
        "the net's (check --layout):"
    )
    assert '(no PyTorch tensor gave it a value)' in message and 'Caffe' not in message


def test_another_layout_than_the_files_names_the_files(tmp_path, ssd_pytorch_sd):
    """--layout=torchvision_ssd300 for ssd.pytorch's file: the layout its names fit (it said
    'cannot infer the number of classes (no head.classification_head...)')."""
    path = str(tmp_path / 'ssd300_mAP_77.43_v2.pth')
    fx.write_pth(ssd_pytorch_sd, path)
    with pytest.raises(pytorch_ssd.ConversionError) as info:
        pytorch_convert.convert(
            path, str(tmp_path / 'x.ckpt'), 'torchvision_ssd300', log=lambda *_: None
        )
    signature = pytorch_ssd.LAYOUTS['torchvision_ssd300'].signature
    assert str(info.value) == (
        f"{path}: its tensors are not those of --layout=torchvision_ssd300 (it has no "
        f"{', '.join(signature)}); they are ssd_pytorch_ssd300's (ssd.pytorch's SSD300 "
        "(amdegroot)): pass --layout=ssd_pytorch_ssd300, or leave --layout out to recognise it."
    )
    assert not os.path.exists(str(tmp_path / 'x.ckpt.index'))


@pytest.mark.parametrize(
    'preset,clip', [('torchvision_coco', 'size'), ('ssd_pytorch_voc', 'center_size')]
)
def test_source_anchor_presets(preset, clip):
    fields = ssd_params.anchor_preset_params('ssd_300_vgg', preset)
    assert fields['anchor_clip'] == clip and fields['anchor_int_sizes'] is False
    params = nets_factory.get_network('ssd_300_vgg').default_params._replace(**fields)
    anchors = anchors_lib.ssd_anchors(params)
    assert anchors.shape == (8732, 4)
    h, w = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    assert h.max() <= 1 + 1e-6 and w.max() <= 1 + 1e-6
    # The last layer's 2:1 box (0.87 * sqrt(2) = 1.23 wide) is clamped to the image width and
    # stays centred on its cell, unlike Caffe's corner clipping.
    last_wide = anchors[-2]  # layer 6 (1x1): min, sqrt(min*max), 2:1, 1:2
    np.testing.assert_allclose(last_wide[3] - last_wide[1], 1.0, atol=1e-6)
    np.testing.assert_allclose((last_wide[1] + last_wide[3]) / 2, 0.5, atol=1e-6)
    # ssd.pytorch also clamps centres: the 10x10 layer's last column (step 32: 304 px) -> 300.
    column = anchors[5776 + 2166 + 9 * 6]
    expected = 1.0 if clip == 'center_size' else 304.0 / 300.0
    np.testing.assert_allclose((column[1] + column[3]) / 2, expected, atol=1e-6)
    with pytest.raises(ValueError, match="anchor clip must be"):
        anchors_lib.ssd_anchors(params._replace(anchor_clip='corners'))


def test_ssd_pytorch_other_class_counts_take_its_coco_prior_sizes():
    layout = pytorch_ssd.LAYOUTS['ssd_pytorch_ssd300']
    voc = pytorch_convert.source_params(layout, 21)
    assert voc.anchor_sizes[0] == (30.0, 60.0) and voc.anchor_clip == 'center_size'
    other = pytorch_convert.source_params(layout, 201)  # ssd.pytorch: (coco, voc)[C == 21]
    assert other.anchor_sizes[0] == (21.0, 45.0) and other.anchor_sizes[-1] == (261.0, 315.0)
    assert other.anchor_clip == 'center_size' and other.num_classes == 201
    # The card's record of the source's anchors follows the sizes.
    for params, sizes in (
        (voc, 'PriorBox(voc): min_sizes [30, '),
        (other, 'PriorBox(coco): min_sizes [21, '),
    ):
        names = ['c%d' % i for i in range(1, params.num_classes)]
        card = pytorch_convert.model_card(layout, params, names, 'm.pth', 'source')
        assert card.provenance['source_settings']['anchor_generator'].startswith(sizes)


# ---------------------------------------------------------------------------------------------
# VGG bases as training initialisation.


@pytest.fixture(scope='module')
def vgg_bases(tmp_path_factory):
    """The two VGG base layouts converted (the ssd.pytorch one through the script)."""
    root = tmp_path_factory.mktemp('pytorch_vgg')
    reduced = str(root / 'vgg16_reducedfc.pth')
    fx.write_pth(fx.ssd_pytorch_vgg(fx.SEED), reduced, legacy=True, location='cuda:0')
    result = run_script(
        'pytorch_to_tensorflow.py',
        '--pth_path=' + reduced,
        '--output_path=' + str(root / 'reducedfc' / 'base.ckpt'),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'layout ssd_pytorch_vgg16_reducedfc' in result.stdout
    assert 'Restoring parameters' not in result.stderr  # the check re-load's TF line
    features = str(root / 'vgg16_features.pth')
    sd = fx.torchvision_vgg_features(fx.SEED)
    sd['classifier.0.weight'] = np.full((8, 4), np.nan, np.float32)  # NaN as in the real file
    fx.write_pth(sd, features)
    pytorch_convert.convert(features, str(root / 'features' / 'base.ckpt'), log=lambda *_: None)
    # A TF-Slim vgg_16 checkpoint with the torchvision base's conv1..conv5 numbers (fc6/fc7 left
    # out: 480 MB; the torchvision base has none either).
    slim_values = {}
    for index, (name, _, _, _) in zip(
        (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28), fx.VGG_CONVS[:13]
    ):
        block = name.split('_')[0]
        slim_values['vgg_16/%s/%s/weights' % (block, name)] = sd[
            'features.%d.weight' % index
        ].transpose(2, 3, 1, 0)
        slim_values['vgg_16/%s/%s/biases' % (block, name)] = sd['features.%d.bias' % index]
    slim_prefix = str(root / 'slim' / 'vgg_16.ckpt')
    with tf.Graph().as_default():
        variables = [v1.Variable(v, name=k) for k, v in slim_values.items()]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            v1.train.Saver(variables).save(sess, slim_prefix, write_meta_graph=False)
    return {
        'reducedfc': str(root / 'reducedfc' / 'base.ckpt'),
        'features': str(root / 'features' / 'base.ckpt'),
        'slim': slim_prefix,
        'reduced_sd': fx.ssd_pytorch_vgg(fx.SEED),
        'features_sd': sd,
    }


def _first_step_losses(inits):
    """{name: (restored variable names, SSD loss at step 0, conv1_1 weights)} on two photos, for
    each init (checkpoint, checkpoint_model_scope), restored the way --checkpoint_path is
    (model.checkpoints.plan_restore with --ignore_missing_vars); one graph, so heads and extra
    layers get the same seeded initial values in every run."""
    images = np.stack([img for _, img in fx.load_photos()[:2]]).astype(np.float32)
    images -= np.array([123.0, 117.0, 104.0], np.float32)
    boxes = np.array(
        [
            [[0.05, 0.3, 0.6, 0.7], [0.5, 0.1, 0.95, 0.5]],
            [[0.2, 0.2, 0.8, 0.8], [0.6, 0.6, 0.9, 0.95]],
        ],
        np.float32,
    )
    labels = np.array([[15, 5], [11, 9]], np.int64)
    results = {}
    with tf.Graph().as_default():
        v1.set_random_seed(7)
        ssd = nets_factory.get_network('ssd_300_vgg')()
        with slim.arg_scope(ssd.arg_scope(weight_decay=0.0)):
            _, localisations, logits, _ = ssd.net(tf.constant(images), is_training=True)
        targets = [
            ssd.bboxes_encode(tf.constant(labels[i]), tf.constant(boxes[i]))
            for i in range(len(images))
        ]
        gclasses, glocs, gscores = (tf.stack(t) for t in zip(*targets))
        loss = ssd.losses(logits, localisations, gclasses, glocs, gscores)
        model_variables = slim.get_model_variables()
        conv1 = [v for v in model_variables if v.op.name == 'ssd_300_vgg/conv1/conv1_1/weights'][0]
        restorers = {}
        for name, (prefix, model_scope) in inits.items():
            shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
            items = checkpoints.plan_restore(
                model_variables,
                shapes,
                ssd.name,
                model_scope,
                ignore_missing_vars=True,
                log=lambda *_: None,
            )
            restorers[name] = checkpoints.Restorer(prefix, items)
        init = v1.global_variables_initializer()
        for name, restorer in restorers.items():
            with v1.Session() as sess:
                sess.run(init)
                restorer.restore(sess)
                results[name] = (
                    sorted(i.name for i in restorer.items),
                    float(sess.run(loss)),
                    sess.run(conv1),
                )
    return results


def test_vgg_bases_initialise_training_like_tf_slim_vgg_16(vgg_bases):
    results = _first_step_losses(
        {
            'reducedfc': (vgg_bases['reducedfc'], None),
            'features': (vgg_bases['features'], None),
            'slim': (vgg_bases['slim'], 'vgg_16'),
        }
    )
    backbone = [
        'ssd_300_vgg/%s/%s' % (s, k) for s, _ in pytorch_ssd._VGG for k in ('biases', 'weights')
    ]
    assert results['reducedfc'][0] == sorted(backbone)  # conv1_1 .. conv5_3, conv6, conv7
    conv1_5 = [n for n in backbone if not n.startswith(('ssd_300_vgg/conv6', 'ssd_300_vgg/conv7'))]
    assert results['features'][0] == sorted(conv1_5)
    assert results['slim'][0] == sorted(conv1_5)
    # The restored conv1_1 is the file's (OIHW -> HWIO), the same as through TF-Slim's names.
    np.testing.assert_array_equal(
        results['reducedfc'][2], vgg_bases['reduced_sd']['0.weight'].transpose(2, 3, 1, 0)
    )
    want = vgg_bases['features_sd']['features.0.weight'].transpose(2, 3, 1, 0)
    for name in ('features', 'slim'):
        np.testing.assert_array_equal(results[name][2], want)
    losses = {name: value[1] for name, value in results.items()}
    assert all(np.isfinite(v) and v > 0 for v in losses.values()), losses
    for name in ('reducedfc', 'features'):
        assert 0.1 < losses[name] / losses['slim'] < 10.0, losses
    # The same conv1..conv5 numbers through the .pth and through TF-Slim's names, the same
    # initial values elsewhere: the same loss.
    np.testing.assert_allclose(losses['features'], losses['slim'], rtol=1e-4)


def test_backbone_record_and_script_errors(vgg_bases, tmp_path):
    import json

    with open(vgg_bases['reducedfc'] + '.json', encoding='utf-8') as f:
        record = json.load(f)
    assert record['backbone_only'] and record['source']['layout'] == 'ssd_pytorch_vgg16_reducedfc'
    assert record['preprocessing']['mean_rgb'] == [123.0, 117.0, 104.0]
    bogus = str(tmp_path / 'resnet.pth')
    fx.write_pth(
        collections.OrderedDict(
            [
                ('conv1.weight', np.zeros((2, 3, 1, 1), np.float32)),
                ('fc.bias', np.zeros(2, np.float32)),
            ]
        ),
        bogus,
    )
    result = run_script(
        'pytorch_to_tensorflow.py',
        '--pth_path=' + bogus,
        '--output_path=' + str(tmp_path / 'x.ckpt'),
    )
    assert result.returncode != 0
    assert 'pytorch_to_tensorflow: error:' in result.stderr
    assert 'unknown layout. Keys found: conv1.weight, fc.bias' in result.stderr
    assert 'Traceback' not in result.stderr
