"""MobileNet-V1 SSD300, as the widely used Caffe MobileNet-SSD (1917 anchors).

Scopes map one-to-one onto the Caffe layer names:
  conv0                    -> conv0 (3x3/2, 32) + conv0/BatchNorm
  convN/dw (N = 1..13)     -> convN/dw (depthwise 3x3) + convN/dw/BatchNorm
  convN                    -> convN (pointwise 1x1) + convN/BatchNorm
  conv14_1 ... conv17_2    -> same names (1x1 then 3x3/2), each + BatchNorm
  <src>_mbox_loc / _conf   -> <src>_mbox_loc / <src>_mbox_conf (1x1 heads, with biases)
Every backbone and extra conv is followed by batch norm (Caffe: BatchNorm + Scale, eps 1e-5)
and ReLU. Heads read conv11, conv13, conv14_2, conv15_2, conv16_2, conv17_2.
Input: (RGB - 127.5) * 0.007843.
"""

import tensorflow as tf
import tf_slim as slim

from nets import custom_layers
from nets import ssd_common
from nets.batch_norm import batch_norm
from nets.ssd_params import SSDParams, ANCHOR_SIZE_PRESETS

v1 = tf.compat.v1

# (stride, pointwise depth) of conv1 ... conv13.
MOBILENET_V1_LAYERS = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)


def _depth(depth, multiplier):
    return max(8, int(depth * multiplier))


def mobilenet_backbone(inputs, extra_layers, depth_multiplier=1.0):
    """MobileNet-V1 conv0..conv13 plus the SSD extra layers.

    Args:
      inputs: normalised images, float `[B, H, W, 3]` (or NCHW under the arg scope).
      extra_layers: sequence of `(name, depth_1x1, depth_out)`; each adds `<name>_1` (1x1) and
        `<name>_2` (3x3, stride 2, pad 1).
    Returns:
      end_points: Caffe layer name -> tensor (after BN + ReLU).
    """
    end_points = {}
    net = custom_layers.conv2d(
        inputs, _depth(32, depth_multiplier), 3, stride=2, padding=1, scope='conv0'
    )
    end_points['conv0'] = net
    for i, (stride, depth) in enumerate(MOBILENET_V1_LAYERS, start=1):
        net = custom_layers.depthwise_conv2d(
            net, 3, stride=stride, padding=1, scope='conv%d/dw' % i
        )
        end_points['conv%d/dw' % i] = net
        net = custom_layers.conv2d(net, _depth(depth, depth_multiplier), 1, scope='conv%d' % i)
        end_points['conv%d' % i] = net
    for name, depth_1x1, depth in extra_layers:
        net = custom_layers.conv2d(net, _depth(depth_1x1, depth_multiplier), 1, scope=name + '_1')
        end_points[name + '_1'] = net
        net = custom_layers.conv2d(
            net, _depth(depth, depth_multiplier), 3, stride=2, padding=1, scope=name + '_2'
        )
        end_points[name + '_2'] = net
    return end_points


class SSD300MobileNet(ssd_common.SSDNet):
    name = 'ssd_300_mobilenet'
    head_kernel = 1
    loc_scope = '{}_mbox_loc'
    cls_scope = '{}_mbox_conf'
    norm_scope = '{}_mbox_norm'
    default_params = SSDParams(
        img_shape=(300, 300),
        num_classes=21,
        feat_layers=('conv11', 'conv13', 'conv14_2', 'conv15_2', 'conv16_2', 'conv17_2'),
        feat_shapes=((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
        anchor_sizes=tuple(ANCHOR_SIZE_PRESETS['ssd_300_mobilenet']['mobilenet_ssd']),
        anchor_ratios=((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2, 3)),
        anchor_steps=None,
        anchor_offset=0.5,
        anchor_clip=False,
        anchor_int_sizes=True,
        prior_scaling=(0.1, 0.1, 0.2, 0.2),
        normalizations=(-1, -1, -1, -1, -1, -1),
        extra_layers=(
            ('conv14', 256, 512),
            ('conv15', 128, 256),
            ('conv16', 128, 256),
            ('conv17', 64, 128),
        ),
        depth_multiplier=1.0,
        batch_norm_epsilon=1e-5,
        # TF Object Detection API's SSD value; slower decays lag far behind short runs.
        batch_norm_decay=0.997,
    )

    def backbone(self, inputs, is_training):
        with slim.arg_scope(
            [custom_layers.conv2d, custom_layers.depthwise_conv2d],
            normalizer_fn=batch_norm,
            normalizer_params={
                'epsilon': self.params.batch_norm_epsilon,
                'decay': self.params.batch_norm_decay,
            },
        ):
            return mobilenet_backbone(
                inputs, self.params.extra_layers, self.params.depth_multiplier
            )

    def arg_scope(self, weight_decay=0.0005, data_format='NHWC'):
        # TF-Slim's MobileNet does not decay the depthwise filters.
        with slim.arg_scope(super().arg_scope(weight_decay, data_format)):
            with slim.arg_scope([custom_layers.depthwise_conv2d], weights_regularizer=None) as sc:
                return sc
