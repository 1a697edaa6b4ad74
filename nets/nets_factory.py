"""Model registry: name -> SSD net class (the older TF port's `nets_factory` interface)."""

import tf_slim as slim

from nets import ssd_mobilenet
from nets import ssd_vgg

networks_map = {
    'ssd_300_vgg': ssd_vgg.SSD300VGG,
    'ssd_512_vgg': ssd_vgg.SSD512VGG,
    'ssd_300_mobilenet': ssd_mobilenet.SSD300MobileNet,
}


def get_network(name):
    """The SSD class registered under `name`; instances have `params`, `net`, `arg_scope`,
    `anchors`, `bboxes_encode`, `bboxes_decode`, `detected_bboxes` and `losses`."""
    if name not in networks_map:
        raise ValueError(
            'unknown model_name %r; known: %s' % (name, ', '.join(sorted(networks_map)))
        )
    return networks_map[name]


def get_network_fn(
    name, num_classes, is_training=False, weight_decay=0.0005, data_format='NHWC', **params
):
    """`(net, fn)`: the SSD instance and `fn(images) -> (predictions, localisations, logits,
    end_points)` built under its arg scope. Extra keyword arguments override `SSDParams`."""
    cls = get_network(name)
    net = cls(cls.default_params._replace(num_classes=num_classes, **params))

    def network_fn(images, reuse=None):
        with slim.arg_scope(net.arg_scope(weight_decay=weight_decay, data_format=data_format)):
            return net.net(images, is_training=is_training, reuse=reuse)

    return net, network_fn
