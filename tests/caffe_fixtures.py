"""Seeded random Caffe SSD models (deploy prototxt + caffemodel) and photo-like test images.

For the converter's parity tests against OpenCV's Caffe implementation and for the benchmarks:
the nets have the exact layer names, blob shapes and layer parameters of the published Caffe
deploys (VGG16 SSD300/SSD512, MobileNet-SSD with merged or separate BatchNorm, the fc-reduced
VGG16 backbone), and random weights scaled so that activations neither vanish nor explode:
He-style convs, BatchNorm with a moving-average factor != 1, a Normalize scale with a
per-channel spread. Head weights are rescaled after one OpenCV forward pass so that the class
logits spread over a few units (softmax neither flat nor saturated) and there are detections.
Also runs both sides: `opencv_forward` (cv2.dnn) and `our_forward` (a converted checkpoint).
The converter itself never imports this module (nor OpenCV).
"""

import dataclasses
import math
import os
import time
from typing import Dict, List

import cv2
import numpy as np
import tensorflow as tf
import tf_slim as slim

from converters import caffe_pb
from converters import prototxt
from converters.prototxt import Enum
from nets import ssd_common
from tf_extended import atomic_io

v1 = tf.compat.v1

# Published anchor settings (min, max or None, ratios, step or None) per feature layer.
VGG300_VOC_PRIORS = [
    (30.0, 60.0, [2.0], 8.0),
    (60.0, 111.0, [2.0, 3.0], 16.0),
    (111.0, 162.0, [2.0, 3.0], 32.0),
    (162.0, 213.0, [2.0, 3.0], 64.0),
    (213.0, 264.0, [2.0], 100.0),
    (264.0, 315.0, [2.0], 300.0),
]
VGG512_COCO_PRIORS = [
    (20.48, 51.2, [2.0], 8.0),
    (51.2, 133.12, [2.0, 3.0], 16.0),
    (133.12, 215.04, [2.0, 3.0], 32.0),
    (215.04, 296.96, [2.0, 3.0], 64.0),
    (296.96, 378.88, [2.0, 3.0], 128.0),
    (378.88, 460.8, [2.0], 256.0),
    (460.8, 542.72, [2.0], 512.0),
]
MOBILENET_PRIORS = [
    (60.0, None, [2.0], None),
    (105.0, 150.0, [2.0, 3.0], None),
    (150.0, 195.0, [2.0, 3.0], None),
    (195.0, 240.0, [2.0, 3.0], None),
    (240.0, 285.0, [2.0, 3.0], None),
    (285.0, 300.0, [2.0, 3.0], None),
]
VGG_DETECTION = {
    'nms_threshold': 0.45,
    'top_k': 400,
    'keep_top_k': 200,
    'confidence_threshold': 0.01,
}
MOBILENET_DETECTION = {
    'nms_threshold': 0.45,
    'top_k': 100,
    'keep_top_k': 100,
    'confidence_threshold': 0.25,
}

# Target spread of the head outputs: class logits with std ~2 give softmax scores over the
# whole (0, 1) range; loc codes with std ~0.5 keep decoded boxes image-sized.
CONF_LOGIT_STD = 2.0
LOC_CODE_STD = 0.5


@dataclasses.dataclass
class CaffeNet:
    """A generated Caffe model.

    prototxt: the deploy net, text format.
    layers: the layers with blobs (`caffe_pb.CaffeLayer`, Caffe layouts).
    input_size: (height, width) of the `data` input.
    heads: names of the loc / conf head layers (for rescaling).
    """

    prototxt: str
    layers: List[caffe_pb.CaffeLayer]
    input_size: tuple
    heads: Dict[str, str]


class _Builder:
    """Emits deploy prototxt layers and seeded blobs, tracking blob channels."""

    def __init__(self, seed, input_size):
        self.rng = np.random.default_rng(seed)
        self.text = []
        self.layers = []
        self.channels = {'data': 3}
        self.input_size = input_size
        self.heads = {}

    def _layer(self, name, type_, bottoms, tops, params=()):
        fields = [('name', name), ('type', type_)]
        fields += [('bottom', b) for b in bottoms] + [('top', t) for t in tops]
        self.text.append(('layer', fields + list(params)))

    def conv(
        self,
        name,
        bottom,
        num_output,
        kernel,
        stride=1,
        pad=0,
        dilation=1,
        group=1,
        relu=True,
        batch_norm=None,
        head=None,
        gain=math.sqrt(2.0),
    ):
        """A Convolution (+ BatchNorm/Scale when batch_norm is 'separate') (+ ReLU).

        batch_norm: None (conv with bias), 'merged' (conv with bias, MobileNet's merged deploy)
        or 'separate' (conv without bias, then BatchNorm + Scale layers).
        """
        cin = self.channels[bottom]
        bias_term = batch_norm != 'separate'
        p = [('num_output', num_output)]
        if not bias_term:
            p.append(('bias_term', False))
        if pad:
            p.append(('pad', pad))
        p.append(('kernel_size', kernel))
        if stride != 1:
            p.append(('stride', stride))
        if dilation != 1:
            p.append(('dilation', dilation))
        if group != 1:
            p.append(('group', group))
        self._layer(name, 'Convolution', [bottom], [name], [('convolution_param', p)])
        fan_in = cin // group * kernel * kernel
        w = self.rng.standard_normal((num_output, cin // group, kernel, kernel)) * (
            gain / math.sqrt(fan_in)
        )
        blobs = [w.astype(np.float32)]
        if bias_term:
            scale = 0.0 if head else 0.1
            blobs.append((self.rng.standard_normal(num_output) * scale).astype(np.float32))
        self.layers.append(
            caffe_pb.CaffeLayer(name, 'Convolution', blobs, group=group if group != 1 else None)
        )
        self.channels[name] = num_output
        if head:
            self.heads[name] = head
        if batch_norm == 'separate':
            f = float(self.rng.uniform(500.0, 1000.0))
            mean = self.rng.standard_normal(num_output) * 0.1
            var = self.rng.uniform(0.5, 1.5, num_output)
            self._layer(
                name + '/bn',
                'BatchNorm',
                [name],
                [name],
                [('batch_norm_param', [('use_global_stats', True), ('eps', 1e-5)])],
            )
            self.layers.append(
                caffe_pb.CaffeLayer(
                    name + '/bn',
                    'BatchNorm',
                    [
                        (mean * f).astype(np.float32),
                        (var * f).astype(np.float32),
                        np.array([f], np.float32),
                    ],
                    eps=1e-5,
                )
            )
            self._layer(
                name + '/scale', 'Scale', [name], [name], [('scale_param', [('bias_term', True)])]
            )
            self.layers.append(
                caffe_pb.CaffeLayer(
                    name + '/scale',
                    'Scale',
                    [
                        self.rng.uniform(0.7, 1.3, num_output).astype(np.float32),
                        (self.rng.standard_normal(num_output) * 0.1).astype(np.float32),
                    ],
                )
            )
        if relu:
            self._layer(name + '/relu', 'ReLU', [name], [name])
        return name

    def pool(self, name, bottom, kernel, stride, pad=0):
        p = [('pool', Enum('MAX')), ('kernel_size', kernel), ('stride', stride)]
        if pad:
            p.append(('pad', pad))
        self._layer(name, 'Pooling', [bottom], [name], [('pooling_param', p)])
        self.channels[name] = self.channels[bottom]
        return name

    def normalize(self, name, bottom):
        channels = self.channels[bottom]
        self._layer(
            name,
            'Normalize',
            [bottom],
            [name],
            [
                (
                    'norm_param',
                    [
                        ('across_spatial', False),
                        ('scale_filler', [('type', 'constant'), ('value', 20.0)]),
                        ('channel_shared', False),
                    ],
                )
            ],
        )
        self.layers.append(
            caffe_pb.CaffeLayer(
                name,
                'Normalize',
                [(20.0 * self.rng.uniform(0.5, 1.5, channels)).astype(np.float32)],
            )
        )
        self.channels[name] = channels
        return name

    def ssd_heads(self, sources, priors, num_classes, kernel, pad, detection):
        """loc/conf heads, Permute + Flatten, PriorBoxes, the Concats and DetectionOutput."""
        order = [('order', 0), ('order', 2), ('order', 3), ('order', 1)]
        flats = {'loc': [], 'conf': [], 'priorbox': []}
        for source, (min_size, max_size, ratios, step) in zip(sources, priors):
            num_priors = 1 + (max_size is not None) + 2 * len(ratios)
            for head, per_prior in (('loc', 4), ('conf', num_classes)):
                name = '%s_mbox_%s' % (source, head)
                self.conv(
                    name,
                    source,
                    num_priors * per_prior,
                    kernel,
                    pad=pad,
                    relu=False,
                    head=head,
                    gain=1.0,
                )
                self._layer(
                    name + '_perm', 'Permute', [name], [name + '_perm'], [('permute_param', order)]
                )
                self._layer(
                    name + '_flat',
                    'Flatten',
                    [name + '_perm'],
                    [name + '_flat'],
                    [('flatten_param', [('axis', 1)])],
                )
                flats[head].append(name + '_flat')
            p = [('min_size', min_size)]
            if max_size is not None:
                p.append(('max_size', max_size))
            p += [('aspect_ratio', r) for r in ratios]
            p += [('flip', True), ('clip', False)]
            p += [('variance', v) for v in (0.1, 0.1, 0.2, 0.2)]
            if step is not None:
                p.append(('step', step))
            p.append(('offset', 0.5))
            name = source + '_mbox_priorbox'
            self._layer(name, 'PriorBox', [source, 'data'], [name], [('prior_box_param', p)])
            flats['priorbox'].append(name)
        for key, axis in (('loc', 1), ('conf', 1), ('priorbox', 2)):
            self._layer(
                'mbox_' + key,
                'Concat',
                flats[key],
                ['mbox_' + key],
                [('concat_param', [('axis', axis)])],
            )
        self._layer(
            'mbox_conf_reshape',
            'Reshape',
            ['mbox_conf'],
            ['mbox_conf_reshape'],
            [('reshape_param', [('shape', [('dim', 0), ('dim', -1), ('dim', num_classes)])])],
        )
        self._layer(
            'mbox_conf_softmax',
            'Softmax',
            ['mbox_conf_reshape'],
            ['mbox_conf_softmax'],
            [('softmax_param', [('axis', 2)])],
        )
        self._layer(
            'mbox_conf_flatten',
            'Flatten',
            ['mbox_conf_softmax'],
            ['mbox_conf_flatten'],
            [('flatten_param', [('axis', 1)])],
        )
        self.text.append(detection_output_layer('detection_out', num_classes, detection))

    def build(self, name):
        h, w = self.input_size
        fields = [
            ('name', name),
            ('input', 'data'),
            ('input_shape', [('dim', 1), ('dim', 3), ('dim', h), ('dim', w)]),
        ]
        return CaffeNet(
            prototxt=prototxt.to_text(fields + self.text),
            layers=self.layers,
            input_size=self.input_size,
            heads=self.heads,
        )


def detection_output_layer(name, num_classes, detection):
    """A DetectionOutput layer reading mbox_loc / mbox_conf_flatten / mbox_priorbox, as a
    ('layer', fields) entry for `prototxt.to_text`.

    detection: nms_threshold, top_k, keep_top_k, confidence_threshold (-1: no top-k limit).
    """
    return (
        'layer',
        [
            ('name', name),
            ('type', 'DetectionOutput'),
            ('bottom', 'mbox_loc'),
            ('bottom', 'mbox_conf_flatten'),
            ('bottom', 'mbox_priorbox'),
            ('top', name),
            (
                'detection_output_param',
                [
                    ('num_classes', num_classes),
                    ('share_location', True),
                    ('background_label_id', 0),
                    (
                        'nms_param',
                        [
                            ('nms_threshold', float(detection['nms_threshold'])),
                            ('top_k', int(detection['top_k'])),
                        ],
                    ),
                    ('code_type', Enum('CENTER_SIZE')),
                    ('keep_top_k', int(detection['keep_top_k'])),
                    ('confidence_threshold', float(detection['confidence_threshold'])),
                ],
            ),
        ],
    )


def _vgg_backbone(b):
    x = 'data'
    for block, (count, width) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), 1):
        for i in range(1, count + 1):
            x = b.conv('conv%d_%d' % (block, i), x, width, 3, pad=1)
        x = (
            b.pool('pool%d' % block, x, 3, 1, 1)
            if block == 5
            else b.pool('pool%d' % block, x, 2, 2)
        )
    x = b.conv('fc6', x, 1024, 3, pad=6, dilation=6)
    return b.conv('fc7', x, 1024, 1)


def vgg_ssd(size=300, num_classes=21, priors=None, detection=None, seed=0):
    """VGG16 SSD300 or SSD512 (weiliu89/caffe deploy layout) with random weights.

    Args:
      size: 300 or 512.
      priors: per feature layer (min, max, ratios, step); default the published VOC SSD300 /
        COCO SSD512 settings.
      detection: DetectionOutput settings (VGG_DETECTION keys).
    """
    if size not in (300, 512):
        raise ValueError('VGG SSD comes in 300 and 512, not %r' % size)
    b = _Builder(seed, (size, size))
    fc7 = _vgg_backbone(b)
    x = fc7
    sources = ['conv4_3_norm', 'fc7']
    extras = [(256, 512, 2, 1), (128, 256, 2, 1)]
    extras += [(128, 256, 2, 1)] * 2 if size == 512 else [(128, 256, 1, 0)] * 2
    for i, (mid, out, stride, pad) in enumerate(extras, 6):
        x = b.conv('conv%d_1' % i, x, mid, 1)
        x = b.conv('conv%d_2' % i, x, out, 3, stride=stride, pad=pad)
        sources.append(x)
    if size == 512:
        x = b.conv('conv10_1', x, 128, 1)
        sources.append(b.conv('conv10_2', x, 256, 4, pad=1))
    b.normalize('conv4_3_norm', 'conv4_3')
    default = VGG300_VOC_PRIORS if size == 300 else VGG512_COCO_PRIORS
    b.ssd_heads(sources, priors or default, num_classes, 3, 1, detection or VGG_DETECTION)
    return b.build('VGG_SSD_%d' % size)


def vgg_fc_reduced(seed=0, size=300):
    """The fc-reduced VGG16 backbone (conv1_1..conv5_3, fc6 3x3 dilation 6, fc7 1x1)."""
    b = _Builder(seed, (size, size))
    _vgg_backbone(b)
    return b.build('VGG_ILSVRC_16_layers_fc_reduced')


def mobilenet_ssd(batch_norm='merged', num_classes=21, detection=None, seed=0):
    """chuanqi305's MobileNet-SSD300 deploy: batch_norm 'merged' or 'separate'."""
    if batch_norm not in ('merged', 'separate'):
        raise ValueError("batch_norm is 'merged' or 'separate', not %r" % batch_norm)
    b = _Builder(seed, (300, 300))
    x = b.conv('conv0', 'data', 32, 3, stride=2, pad=1, batch_norm=batch_norm)
    strides = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
    widths = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    for n, (stride, width) in enumerate(zip(strides, widths), 1):
        c = b.channels[x]
        x = b.conv('conv%d/dw' % n, x, c, 3, stride=stride, pad=1, group=c, batch_norm=batch_norm)
        x = b.conv('conv%d' % n, x, width, 1, batch_norm=batch_norm)
    sources = ['conv11', 'conv13']
    for n, (mid, out) in zip(range(14, 18), ((256, 512), (128, 256), (128, 256), (64, 128))):
        x = b.conv('conv%d_1' % n, x, mid, 1, batch_norm=batch_norm)
        x = b.conv('conv%d_2' % n, x, out, 3, stride=2, pad=1, batch_norm=batch_norm)
        sources.append(x)
    b.ssd_heads(sources, MOBILENET_PRIORS, num_classes, 1, 0, detection or MOBILENET_DETECTION)
    return b.build('MobileNet-SSD')


def calibrate_heads(net, image_blob):
    """Rescales the head convs so that conf logits / loc codes have the target spread.

    Heads are linear and feed nothing else, so one OpenCV forward with the current weights
    gives each head's output spread; the weights are scaled to CONF_LOGIT_STD / LOC_CODE_STD,
    then each head gets a small random bias (so the bias layout is exercised).

    Args:
      net: `CaffeNet`; its head layers are modified in place.
      image_blob: float32 NCHW input blob for the forward pass.
    """
    names = list(net.heads)
    outputs = opencv_forward(net, image_blob, names)
    rng = np.random.default_rng(len(names))
    for layer in net.layers:
        if layer.name not in net.heads:
            continue
        target = CONF_LOGIT_STD if net.heads[layer.name] == 'conf' else LOC_CODE_STD
        std = float(np.std(outputs[layer.name])) or 1.0
        layer.blobs[0] = (layer.blobs[0] * (target / std)).astype(np.float32)
        layer.blobs[1] = (rng.standard_normal(layer.blobs[1].shape) * 0.2 * target).astype(
            np.float32
        )


def opencv_forward(net, image_blob, names, prototxt_text=None):
    """Runs OpenCV's Caffe implementation (cv2.dnn, OpenCV backend) on `net`.

    Args:
      net: `CaffeNet` (its weights are serialized in memory).
      image_blob: float32 NCHW input blob.
      names: layer names whose outputs to return.
      prototxt_text: a deploy to use instead of `net.prototxt` (e.g. other thresholds).
    Returns:
      {name: float32 array}.
    """
    model = caffe_pb.serialize_caffemodel(net.layers)
    text = prototxt_text if prototxt_text is not None else net.prototxt
    dnn = cv2.dnn.readNetFromCaffe(
        np.frombuffer(text.encode(), np.uint8), np.frombuffer(model, np.uint8)
    )
    dnn.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    dnn.setInput(image_blob)
    return dict(zip(names, dnn.forward(list(names))))


def write_net(net, directory, name):
    """Writes `<name>.prototxt` and `<name>.caffemodel` (atomically); returns both paths."""
    proto_path = os.path.join(directory, name + '.prototxt')
    model_path = os.path.join(directory, name + '.caffemodel')
    atomic_io.write_text_atomic(proto_path, net.prototxt)
    caffe_pb.write_caffemodel(model_path, net.layers)
    return proto_path, model_path


def photo_like_image(height=300, width=300, seed=0):
    """A uint8 BGR image with smooth gradients, filled shapes, texture and noise.

    Returns:
      uint8 array [height, width, 3], BGR (OpenCV's order).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.empty((height, width, 3), np.float32)
    for c in range(3):
        a, b_, phase = rng.uniform(-1, 1, 2).tolist() + [rng.uniform(0, 2 * np.pi)]
        img[..., c] = (
            128
            + 60 * (a * xx / width + b_ * yy / height)
            + 30 * np.sin(phase + 6 * xx / width + 4 * yy / height)
        )
    for _ in range(8):
        color = rng.uniform(0, 255, 3).tolist()
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        if rng.uniform() < 0.5:
            axes = (int(rng.uniform(10, width / 4)), int(rng.uniform(10, height / 4)))
            cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        else:
            w2, h2 = int(rng.uniform(10, width / 4)), int(rng.uniform(10, height / 4))
            cv2.rectangle(img, (cx - w2, cy - h2), (cx + w2, cy + h2), color, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def opencv_blob(image_bgr, size, mean_bgr, scale):
    """OpenCV's input blob: resize to `size`, (x - mean) * scale, float32 NCHW, BGR."""
    return cv2.dnn.blobFromImage(
        image_bgr, scale, (size[1], size[0]), tuple(mean_bgr), swapRB=False, crop=False
    )


# The nets the parity tests and benchmarks compare with OpenCV:
# name -> (converter model name, generator, input size, Caffe mean (BGR), Caffe scale).
PARITY_NETS = {
    'vgg300': ('ssd_300_vgg', lambda: vgg_ssd(300, seed=1), 300, (104.0, 117.0, 123.0), 1.0),
    'vgg512': ('ssd_512_vgg', lambda: vgg_ssd(512, seed=2), 512, (104.0, 117.0, 123.0), 1.0),
    'mobilenet_merged': (
        'ssd_300_mobilenet',
        lambda: mobilenet_ssd('merged', seed=3),
        300,
        (127.5, 127.5, 127.5),
        0.007843,
    ),
    'mobilenet_separate_bn': (
        'ssd_300_mobilenet',
        lambda: mobilenet_ssd('separate', seed=4),
        300,
        (127.5, 127.5, 127.5),
        0.007843,
    ),
}


def our_forward(checkpoint_path, card, blob, detections=(), anchor_int_sizes=False, repeats=1):
    """Runs a converted checkpoint on an OpenCV input blob.

    Args:
      checkpoint_path: the converted checkpoint; card: its model card (model/card.py).
      blob: float32 NCHW BGR blob (OpenCV's input); the net gets it as NHWC RGB.
      detections: list of (select_threshold, nms_threshold, top_k, keep_top_k) settings.
      anchor_int_sizes: Caffe's int truncation of prior sizes (OpenCV: False).
      repeats: forward passes to time (the outputs of the last are returned).
    Returns:
      dict: 'loc' [N, 4], 'logits' [N, C], 'anchors' [N, 4] (yx), 'detections' (list of dicts
      of numpy arrays, one per setting), 'seconds' (list of forward times).
    """
    ssd = card.with_params(anchor_int_sizes=anchor_int_sizes).net()
    rgb = np.ascontiguousarray(blob[0].transpose(1, 2, 0)[None, :, :, ::-1])
    with tf.Graph().as_default() as graph:
        inputs = v1.placeholder(tf.float32, rgb.shape)
        with slim.arg_scope(ssd.arg_scope(data_format='NHWC')):
            predictions, localisations, logits, _ = ssd.net(inputs, is_training=False)
        fetches = {
            'loc': ssd_common.flatten_layers(localisations)[0],
            'logits': ssd_common.flatten_layers(logits)[0],
            'detections': [
                ssd.detected_bboxes(predictions, localisations, *d, clip=False) for d in detections
            ],
        }
        with v1.Session(graph=graph) as sess:
            v1.train.Saver().restore(sess, checkpoint_path)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                out = sess.run(fetches, {inputs: rgb})
                seconds.append(time.perf_counter() - start)
    out['anchors'] = ssd.anchors()
    out['seconds'] = seconds
    return out


def pb_varint(value):
    """Protobuf varint of an int64 (a negative number as its two's complement, as protobuf writes
    it)."""
    value &= (1 << 64) - 1
    out = b''
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def pb_field(number, wire_type, payload):
    """Hand-made protobuf wire encoding (the reference for caffe.proto's field numbers): wire type
    0 (varint `payload`), 5 (`payload` the 4 bytes of a fixed32) or 2 (length-delimited)."""
    if wire_type == 0:
        return pb_varint(number << 3) + pb_varint(payload)
    if wire_type == 5:
        return pb_varint(number << 3 | 5) + payload
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload
