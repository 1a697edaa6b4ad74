"""VGG16 SSD300 and SSD512, as the Caffe SSD models and with the older TF port's variable names.

Backbone: conv1..conv5 (3x3, Caffe pad 1, ReLU), 2x2/2 max pools (ceil mode), pool5 3x3/1,
conv6 = Caffe fc6 (3x3, dilation 6, 1024), conv7 = fc7 (1x1, 1024), then extra blocks
`blockN/conv1x1` + `blockN/conv{k}x{k}`. Heads (3x3) read block4 (after L2 normalisation,
scale 20), block7 and the extra blocks. No dropout (Caffe has none).
Input: RGB minus (123, 117, 104), no scaling.
"""

import tensorflow as tf

from nets import custom_layers
from nets import ssd_common
from nets.ssd_params import SSDParams, ANCHOR_SIZE_PRESETS

v1 = tf.compat.v1

# Caffe name -> our scope for the layers that differ (the conv1_1..conv5_3 names nest:
# conv1_1 -> conv1/conv1_1); see converters/ for the full map.
CAFFE_EXTRA_NAMES = {
    'conv6_1': 'block8/conv1x1',
    'conv6_2': 'block8/conv3x3',
    'conv7_1': 'block9/conv1x1',
    'conv7_2': 'block9/conv3x3',
    'conv8_1': 'block10/conv1x1',
    'conv8_2': 'block10/conv3x3',
    'conv9_1': 'block11/conv1x1',
    'conv9_2': 'block11/conv3x3',
    'conv10_1': 'block12/conv1x1',
    'conv10_2': 'block12/conv4x4',
}


def vgg_backbone(inputs, extra_layers):
    """VGG16 conv1..conv7 plus the SSD extra blocks.

    Args:
      inputs: normalised images, float `[B, H, W, 3]` (or NCHW under the arg scope).
      extra_layers: sequence of `(name, depth_1x1, depth_out, kernel, stride, pad)`.
    Returns:
      end_points: `block1` ... `block7` and each extra block name -> tensor.
    """
    end_points = {}
    net = inputs
    for block, (repeats, depth) in enumerate(
        ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1
    ):
        with v1.variable_scope('conv%d' % block):
            for i in range(1, repeats + 1):
                net = custom_layers.conv2d(net, depth, 3, padding=1, scope='conv%d_%d' % (block, i))
        end_points['block%d' % block] = net
        if block < 5:
            net = custom_layers.max_pool2d(net, 2, 2, scope='pool%d' % block)
    net = custom_layers.max_pool2d(net, 3, 1, scope='pool5')
    net = custom_layers.conv2d(net, 1024, 3, padding=6, rate=6, scope='conv6')
    end_points['block6'] = net
    net = custom_layers.conv2d(net, 1024, 1, scope='conv7')
    end_points['block7'] = net
    for name, depth_1x1, depth, kernel, stride, pad in extra_layers:
        with v1.variable_scope(name):
            net = custom_layers.conv2d(net, depth_1x1, 1, scope='conv1x1')
            net = custom_layers.conv2d(
                net, depth, kernel, stride=stride, padding=pad, scope='conv%dx%d' % (kernel, kernel)
            )
        end_points[name] = net
    return end_points


class SSDVGG(ssd_common.SSDNet):
    """Shared by SSD300 and SSD512: only the params differ."""

    def backbone(self, inputs, is_training):
        return vgg_backbone(inputs, self.params.extra_layers)


class SSD300VGG(SSDVGG):
    name = 'ssd_300_vgg'
    default_params = SSDParams(
        img_shape=(300, 300),
        num_classes=21,
        feat_layers=('block4', 'block7', 'block8', 'block9', 'block10', 'block11'),
        feat_shapes=((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
        anchor_sizes=tuple(ANCHOR_SIZE_PRESETS['ssd_300_vgg']['caffe_voc']),
        anchor_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        anchor_steps=(8, 16, 32, 64, 100, 300),
        anchor_offset=0.5,
        anchor_clip=False,
        anchor_int_sizes=True,
        prior_scaling=(0.1, 0.1, 0.2, 0.2),
        normalizations=(20, -1, -1, -1, -1, -1),
        extra_layers=(
            ('block8', 256, 512, 3, 2, 1),
            ('block9', 128, 256, 3, 2, 1),
            ('block10', 128, 256, 3, 1, 0),
            ('block11', 128, 256, 3, 1, 0),
        ),
        depth_multiplier=1.0,
        batch_norm_epsilon=1e-3,
        batch_norm_decay=0.997,
    )


class SSD512VGG(SSDVGG):
    name = 'ssd_512_vgg'
    default_params = SSD300VGG.default_params._replace(
        img_shape=(512, 512),
        feat_layers=('block4', 'block7', 'block8', 'block9', 'block10', 'block11', 'block12'),
        feat_shapes=((64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)),
        anchor_sizes=tuple(ANCHOR_SIZE_PRESETS['ssd_512_vgg']['caffe_voc']),
        anchor_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
        anchor_steps=(8, 16, 32, 64, 128, 256, 512),
        normalizations=(20, -1, -1, -1, -1, -1, -1),
        extra_layers=(
            ('block8', 256, 512, 3, 2, 1),
            ('block9', 128, 256, 3, 2, 1),
            ('block10', 128, 256, 3, 2, 1),
            ('block11', 128, 256, 3, 2, 1),
            ('block12', 128, 256, 4, 1, 1),
        ),
    )
