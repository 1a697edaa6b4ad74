"""The older TF port's published checkpoints (`ssd_300_vgg/conv1/conv1_1/weights` ...) load into
our ssd_300_vgg / ssd_512_vgg unchanged: a fixture checkpoint with exactly that port's names and
shapes (written from plain variables, not from our nets) restores with a Saver over our net's
variables, every value equal."""

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from nets import nets_factory

v1 = tf.compat.v1


def _old_port_variables(scope, size, num_classes=21):
    """{name: shape} of the older TF port's checkpoints, written out from its layer list."""
    shapes = {}

    def conv(name, k, cin, cout):
        shapes['%s/%s/weights' % (scope, name)] = (k, k, cin, cout)
        shapes['%s/%s/biases' % (scope, name)] = (cout,)

    cin = 3
    for block, (count, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, count + 1):
            conv('conv%d/conv%d_%d' % (block, block, i), 3, cin, width)
            cin = width
    conv('conv6', 3, 512, 1024)
    conv('conv7', 1, 1024, 1024)
    extras = [
        ('block8', 1024, 256, 512, 3),
        ('block9', 512, 128, 256, 3),
        ('block10', 256, 128, 256, 3),
        ('block11', 256, 128, 256, 3),
    ]
    if size == 512:
        extras.append(('block12', 256, 128, 256, 4))
    for block, cin, mid, out, k in extras:
        conv(block + '/conv1x1', 1, cin, mid)
        conv('%s/conv%dx%d' % (block, k, k), k, mid, out)
    sources = [('block4', 512, 4), ('block7', 1024, 6), ('block8', 512, 6), ('block9', 256, 6)]
    sources += (
        [('block10', 256, 6), ('block11', 256, 4), ('block12', 256, 4)]
        if size == 512
        else [('block10', 256, 4), ('block11', 256, 4)]
    )
    for block, channels, anchors in sources:
        conv(block + '_box/conv_loc', 3, channels, anchors * 4)
        conv(block + '_box/conv_cls', 3, channels, anchors * num_classes)
    shapes['%s/block4_box/L2Normalization/gamma' % scope] = (512,)
    return shapes


@pytest.mark.parametrize('name,size', [('ssd_300_vgg', 300), ('ssd_512_vgg', 512)])
def test_old_port_checkpoint_loads_unchanged(name, size, tmp_path):
    shapes = _old_port_variables(name, size)
    if size == 300:  # The published counts (facts §6).
        assert len(shapes) == 71
        assert sum(int(np.prod(s)) for s in shapes.values()) == 26285486
    rng = np.random.default_rng(size)
    values = {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}
    path = str(tmp_path / (name + '.ckpt'))
    with tf.Graph().as_default():
        plain = [v1.Variable(value, name=n) for n, value in values.items()]
        with v1.Session() as sess:
            sess.run(v1.variables_initializer(plain))
            v1.train.Saver(plain).save(sess, path, write_meta_graph=False)

    cls = nets_factory.get_network(name)
    ssd = cls(cls.default_params)
    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, [1, size, size, 3])
        with slim.arg_scope(ssd.arg_scope()):
            ssd.net(inputs, is_training=False)
        ours = v1.global_variables()
        assert sorted(v.op.name for v in ours) == sorted(values)
        with v1.Session() as sess:
            v1.train.Saver(ours).restore(sess, path)
            restored = sess.run({v.op.name: v for v in ours})
    for n, value in values.items():
        np.testing.assert_array_equal(restored[n], value)
