"""Net structure (variable names/shapes of the older TF port), forward shapes and NCHW == NHWC."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from nets import nets_factory
from nets.ssd_common import flatten_layers
from tests.conftest import require_nchw

v1 = tf.compat.v1


def _vgg_backbone(scope):
    convs = [
        ('conv1/conv1_1', 3, 3, 64),
        ('conv1/conv1_2', 3, 64, 64),
        ('conv2/conv2_1', 3, 64, 128),
        ('conv2/conv2_2', 3, 128, 128),
        ('conv3/conv3_1', 3, 128, 256),
        ('conv3/conv3_2', 3, 256, 256),
        ('conv3/conv3_3', 3, 256, 256),
        ('conv4/conv4_1', 3, 256, 512),
        ('conv4/conv4_2', 3, 512, 512),
        ('conv4/conv4_3', 3, 512, 512),
        ('conv5/conv5_1', 3, 512, 512),
        ('conv5/conv5_2', 3, 512, 512),
        ('conv5/conv5_3', 3, 512, 512),
        ('conv6', 3, 512, 1024),
        ('conv7', 1, 1024, 1024),
        ('block8/conv1x1', 1, 1024, 256),
        ('block8/conv3x3', 3, 256, 512),
        ('block9/conv1x1', 1, 512, 128),
        ('block9/conv3x3', 3, 128, 256),
        ('block10/conv1x1', 1, 256, 128),
        ('block10/conv3x3', 3, 128, 256),
        ('block11/conv1x1', 1, 256, 128),
        ('block11/conv3x3', 3, 128, 256),
    ]
    return convs


# The older TF port's SSD300 (21 classes): anchors per location 4, 6, 6, 6, 4, 4.
SSD300_HEADS = [
    ('block4_box', 512, 4),
    ('block7_box', 1024, 6),
    ('block8_box', 512, 6),
    ('block9_box', 256, 6),
    ('block10_box', 256, 4),
    ('block11_box', 256, 4),
]
SSD512_EXTRA = [('block12/conv1x1', 1, 256, 128), ('block12/conv4x4', 4, 128, 256)]
SSD512_HEADS = [
    ('block4_box', 512, 4),
    ('block7_box', 1024, 6),
    ('block8_box', 512, 6),
    ('block9_box', 256, 6),
    ('block10_box', 256, 6),
    ('block11_box', 256, 4),
    ('block12_box', 256, 4),
]


def expected_variables(scope, convs, heads, num_classes=21):
    out = {}
    for name, k, cin, cout in convs:
        out['%s/%s/weights' % (scope, name)] = (k, k, cin, cout)
        out['%s/%s/biases' % (scope, name)] = (cout,)
    for box, cin, anchors in heads:
        out['%s/%s/conv_loc/weights' % (scope, box)] = (3, 3, cin, anchors * 4)
        out['%s/%s/conv_loc/biases' % (scope, box)] = (anchors * 4,)
        out['%s/%s/conv_cls/weights' % (scope, box)] = (3, 3, cin, anchors * num_classes)
        out['%s/%s/conv_cls/biases' % (scope, box)] = (anchors * num_classes,)
    out['%s/block4_box/L2Normalization/gamma' % scope] = (512,)
    return out


def build(name, size, data_format='NHWC', num_classes=21, batch=None, is_training=False):
    net, fn = nets_factory.get_network_fn(
        name, num_classes, is_training=is_training, data_format=data_format
    )
    shape = [batch, 3, size, size] if data_format == 'NCHW' else [batch, size, size, 3]
    inputs = v1.placeholder(tf.float32, shape)
    return net, inputs, fn(inputs)


@functools.cache
def inference_graph(name, size, num_classes=21):
    """({variable name: shape}, number of regularization losses) of the net in inference mode,
    built once for the tests that read them."""
    with tf.Graph().as_default():
        build(name, size, num_classes=num_classes)
        variables = {v.op.name: tuple(v.shape.as_list()) for v in v1.global_variables()}
        return variables, len(v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES))


def variables_of(name, size, num_classes=21):
    return inference_graph(name, size, num_classes)[0]


def test_ssd_300_vgg_variables_equal_older_port():
    got = variables_of('ssd_300_vgg', 300)
    want = expected_variables('ssd_300_vgg', _vgg_backbone('ssd_300_vgg'), SSD300_HEADS)
    assert got == want
    assert len(got) == 71
    assert sum(int(np.prod(s)) for s in got.values()) == 26285486


def test_ssd_512_vgg_variables_equal_older_port():
    got = variables_of('ssd_512_vgg', 512)
    want = expected_variables(
        'ssd_512_vgg', _vgg_backbone('ssd_512_vgg') + SSD512_EXTRA, SSD512_HEADS
    )
    assert got == want


def test_num_classes_changes_only_class_heads():
    got = variables_of('ssd_300_vgg', 300, num_classes=7)
    assert got['ssd_300_vgg/block7_box/conv_cls/weights'] == (3, 3, 1024, 6 * 7)
    assert got['ssd_300_vgg/block7_box/conv_loc/weights'] == (3, 3, 1024, 24)


def test_mobilenet_scopes_follow_caffe_names():
    got = variables_of('ssd_300_mobilenet', 300)
    assert got['ssd_300_mobilenet/conv0/weights'] == (3, 3, 3, 32)
    assert got['ssd_300_mobilenet/conv1/dw/depthwise_weights'] == (3, 3, 32, 1)
    assert got['ssd_300_mobilenet/conv1/weights'] == (1, 1, 32, 64)
    assert got['ssd_300_mobilenet/conv13/weights'] == (1, 1, 1024, 1024)
    assert got['ssd_300_mobilenet/conv17_2/weights'] == (3, 3, 64, 128)
    assert got['ssd_300_mobilenet/conv11_mbox_loc/weights'] == (1, 1, 512, 12)
    assert got['ssd_300_mobilenet/conv11_mbox_conf/biases'] == (63,)
    assert got['ssd_300_mobilenet/conv13_mbox_conf/weights'] == (1, 1, 1024, 126)
    for bn in ('beta', 'gamma', 'moving_mean', 'moving_variance'):
        assert got['ssd_300_mobilenet/conv3/dw/BatchNorm/%s' % bn] == (128,)
    # Backbone and extra convs have batch norm instead of biases; heads have biases.
    assert not any(k.endswith('/biases') and 'mbox' not in k for k in got)
    # 47 convs as the Caffe deploy: 27 backbone + 8 extra + 12 heads.
    assert sum(k.endswith('weights') for k in got) == 47


@pytest.fixture(
    scope='module',
    params=[
        ('ssd_300_vgg', 300, 8732, 21),
        ('ssd_512_vgg', 512, 24564, 5),
        ('ssd_300_mobilenet', 300, 1917, 21),
    ],
    ids=lambda case: case[0],
)
def nhwc_forward(request):
    """A net (name, input size, anchor count, classes) in NHWC on two random images, with random
    weights and non-trivial batch-norm statistics (so that a wrong axis would show): its
    outputs, its variables' values and the images, for the shape test and the NCHW comparison."""
    name, size, count, classes = request.param
    rng = np.random.RandomState(1)
    images = rng.randn(2, size, size, 3).astype(np.float32) * 50
    with tf.Graph().as_default():
        net, inputs, (predictions, localisations, logits, _) = build(
            name, size, num_classes=classes
        )
        flat = [flatten_layers(predictions), flatten_layers(localisations)]
        variables = v1.global_variables()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            values = {
                v.op.name: (rng.rand(*v.shape.as_list()) + 0.5).astype(np.float32)
                if 'moving_variance' in v.op.name or 'gamma' in v.op.name
                else sess.run(v)
                if 'BatchNorm' not in v.op.name
                else rng.randn(*v.shape.as_list()).astype(np.float32) * 0.1
                for v in variables
            }
            # One run of every initializer fed its value (v.load is one run per variable).
            sess.run(
                [v.initializer for v in variables],
                {v.initializer.inputs[1]: values[v.op.name] for v in variables},
            )
            flat, layers = sess.run([flat, localisations + logits], {inputs: images})
    return dict(
        name=name,
        size=size,
        count=count,
        classes=classes,
        images=images,
        values=values,
        flat=flat,
        layers=layers,
        feat_shapes=[tuple(t.shape[1:3]) for t in localisations],
        params=net.params,
    )


def test_forward_shapes(nhwc_forward):
    p, l = nhwc_forward['flat']
    count, classes = nhwc_forward['count'], nhwc_forward['classes']
    assert p.shape == (2, count, classes) and l.shape == (2, count, 4)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    assert nhwc_forward['feat_shapes'] == list(nhwc_forward['params'].feat_shapes)


def test_feature_shape_mismatch_is_a_clear_error():
    with tf.Graph().as_default():
        with pytest.raises(ValueError, match='feat_shapes'):
            build('ssd_300_vgg', 320)


def test_nchw_equals_nhwc(nhwc_forward):
    """The NCHW net with the NHWC net's values on its first image."""
    require_nchw()
    name, size, values = nhwc_forward['name'], nhwc_forward['size'], nhwc_forward['values']
    with tf.Graph().as_default():
        _, inputs, (_, localisations, logits, _) = build(
            name, size, 'NCHW', num_classes=nhwc_forward['classes']
        )
        variables = v1.global_variables()
        with v1.Session() as sess:
            sess.run(
                [v.initializer for v in variables],
                {v.initializer.inputs[1]: values[v.op.name] for v in variables},
            )
            nchw = sess.run(
                localisations + logits, {inputs: nhwc_forward['images'][:1].transpose(0, 3, 1, 2)}
            )
    for a, b in zip(nhwc_forward['layers'], nchw):
        a = a[:1]
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(a).max())


def test_batch_norm_update_ops_when_training():
    with tf.Graph().as_default():
        build('ssd_300_mobilenet', 300, is_training=True, batch=2)
        updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        # Two moving averages per batch norm: 35 backbone and extra convs.
        assert len(updates) == 2 * 35


def test_weight_decay_regularizes_every_conv_but_depthwise():
    assert inference_graph('ssd_300_mobilenet', 300)[1] == 47 - 13
    assert inference_graph('ssd_300_vgg', 300)[1] == 35


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match='ssd_300_vgg'):
        nets_factory.get_network('ssd_1000')


def test_predict_in_bfloat16_returns_float32_softmax_of_float32_logits():
    rng = np.random.RandomState(2)
    images = (rng.rand(2, 300, 300, 3).astype(np.float32) - 0.5) * 2
    with tf.Graph().as_default():
        net = nets_factory.get_network('ssd_300_mobilenet')(
            nets_factory.get_network('ssd_300_mobilenet').default_params
        )
        inputs = v1.placeholder(tf.float32, [2, 300, 300, 3])
        with slim.arg_scope(net.arg_scope()):
            fp32 = net.predict(inputs)
            with v1.variable_scope(v1.get_variable_scope(), reuse=True):
                bf16 = net.predict(inputs, 'bfloat16')
                _, _, logits, _ = net.net(inputs, is_training=False)
        with pytest.raises(ValueError, match='compute_dtype'):
            net.predict(inputs, 'int8')
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            fp32, bf16, logits = sess.run([fp32, bf16, logits], {inputs: images})
    for layer, logit in enumerate(logits):
        e = np.exp(logit.astype(np.float64) - logit.max(axis=-1, keepdims=True))
        np.testing.assert_allclose(fp32[0][layer], e / e.sum(axis=-1, keepdims=True), atol=1e-6)
        for got, want in zip((bf16[0][layer], bf16[1][layer]), (fp32[0][layer], fp32[1][layer])):
            assert got.dtype == np.float32
            assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
        # A float32 softmax: bf16's would be off by ~1e-2 from summing to 1.
        np.testing.assert_allclose(bf16[0][layer].sum(axis=-1), 1.0, atol=1e-5)
