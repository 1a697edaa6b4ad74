"""The one SSD implementation: heads, anchors, target encoding, loss and post-processing around a
backbone. Variants (VGG SSD300/SSD512, MobileNet SSD300) differ only in their `SSDParams` and
their backbone function; see `ssd_vgg.py` and `ssd_mobilenet.py`.

Net outputs are lists with one tensor per feature layer (the older TF port's interface):
`localisations[i]` float `[B, H, W, A, 4]` box codes `[tx, ty, tw, th]`, `logits[i]` and
`predictions[i]` float `[B, H, W, A, C]`. `flatten_layers` concatenates them to `[B, N, K]` in
the order of the anchors (and of Caffe's Permute + Flatten + Concat).
"""

import abc

import numpy as np
import tensorflow as tf
import tf_slim as slim
from tf_slim import add_arg_scope

from nets import anchors as anchors_lib
from nets import box_coder
from nets import custom_layers
from nets import losses as losses_lib
from nets import matching
from nets import post_processing
from nets.batch_norm import batch_norm

v1 = tf.compat.v1

# The nets' arithmetic: bfloat16 for CPUs with AVX-512 BF16 or AMX, float16 for GPUs.
COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')


def flatten_layers(tensors):
    """Per-layer `[B, H, W, A, K]` tensors -> `[B, sum(H * W * A), K]` (a flat tensor passes)."""
    if not isinstance(tensors, (list, tuple)):
        return tensors

    def flat(t):
        cells = t.shape[1:4].num_elements()
        return tf.reshape(t, [tf.shape(t)[0], -1 if cells is None else cells, t.shape[-1]])

    return tf.concat([flat(t) for t in tensors], axis=1)


def _class_biases(num_anchors, num_classes, background_prior):
    """The initializer of a class head's biases `[A * C]` (anchor-major): zeros, or the
    background's log-odds of `background_prior` against C - 1 equal classes at each anchor's
    class 0."""
    if background_prior is None:
        return v1.zeros_initializer()
    odds = background_prior * (num_classes - 1) / (1.0 - background_prior)
    biases = np.zeros([num_anchors, num_classes], np.float32)
    biases[:, 0] = np.log(odds)
    return v1.constant_initializer(biases.ravel())


@add_arg_scope
def multibox_head(
    features,
    num_classes,
    num_anchors,
    kernel_size,
    normalization=-1,
    loc_scope='conv_loc',
    cls_scope='conv_cls',
    norm_scope='L2Normalization',
    data_format='NHWC',
    background_prior=None,
):
    """Box and class predictions for one feature layer.

    `background_prior`: None (the class biases start at 0), or the probability of the background
    every anchor starts at (RetinaNet's prior for focal loss, 0.99): the background's bias starts
    at log(prior * (C - 1) / (1 - prior)), the other classes' at 0.

    Returns `(localisations [B, H, W, A, 4], logits [B, H, W, A, C])`, always NHWC-ordered.
    """
    if normalization > 0:
        features = custom_layers.l2_normalization(
            features, scale_initializer=normalization, data_format=data_format, scope=norm_scope
        )
    pad = (kernel_size - 1) // 2
    outputs = []
    for depth, scope, biases in (
        (4, loc_scope, v1.zeros_initializer()),
        (num_classes, cls_scope, _class_biases(num_anchors, num_classes, background_prior)),
    ):
        net = custom_layers.conv2d(
            features,
            num_anchors * depth,
            kernel_size,
            padding=pad,
            activation_fn=None,
            normalizer_fn=None,
            biases_initializer=biases,
            data_format=data_format,
            scope=scope,
        )
        if data_format == 'NCHW':
            net = tf.transpose(net, [0, 2, 3, 1])
        static = net.shape[:3]
        net = tf.reshape(net, tf.concat([tf.shape(net)[:3], [num_anchors, depth]], axis=0))
        net.set_shape(static.concatenate([num_anchors, depth]))
        outputs.append(net)
    return tuple(outputs)


class SSDNet(abc.ABC):
    """An SSD detector: `params` plus a backbone.

    Subclasses set `name` (the variable scope), `default_params`, `head_kernel`, the head scope
    formats and implement `backbone(inputs, is_training) -> end_points`.
    """

    name = None
    default_params = None
    head_kernel = 3
    loc_scope = '{}_box/conv_loc'
    cls_scope = '{}_box/conv_cls'
    norm_scope = '{}_box/L2Normalization'

    def __init__(self, params=None):
        self.params = params or self.default_params

    @abc.abstractmethod
    def backbone(self, inputs, is_training):
        """Builds the backbone and extra layers; returns `end_points` holding `feat_layers`."""

    def net(self, inputs, is_training=True, reuse=None, scope=None):
        """Builds the net on normalised images `[B, H, W, 3]` (or `[B, 3, H, W]` in NCHW).

        Returns `(predictions, localisations, logits, end_points)`.
        """
        params = self.params
        with v1.variable_scope(scope or self.name, values=[inputs], reuse=reuse):
            with slim.arg_scope([batch_norm], is_training=is_training):
                end_points = self.backbone(inputs, is_training)
            predictions, localisations, logits = [], [], []
            for i, layer in enumerate(params.feat_layers):
                features = end_points[layer]
                num_anchors = anchors_lib.num_anchors_per_location(
                    params.anchor_sizes[i], params.anchor_ratios[i]
                )
                loc, logit = multibox_head(
                    features,
                    params.num_classes,
                    num_anchors,
                    self.head_kernel,
                    normalization=params.normalizations[i],
                    loc_scope=self.loc_scope.format(layer),
                    cls_scope=self.cls_scope.format(layer),
                    norm_scope=self.norm_scope.format(layer),
                )
                self._check_feat_shape(layer, loc, params.feat_shapes[i])
                end_points[layer + '_box/localisations'] = loc
                end_points[layer + '_box/logits'] = logit
                localisations.append(loc)
                logits.append(logit)
                predictions.append(tf.nn.softmax(logit))
        return predictions, localisations, logits, end_points

    def predict(self, inputs, compute_dtype='float32'):
        """Inference forward pass in `compute_dtype` (one of COMPUTE_DTYPES; weights stay float32
        and are cast by the layers) -> float32 per-layer (predictions, localisations) as `net`
        returns them. The softmax runs on float32 logits: a bf16 one keeps only 3 digits. Call
        it under `arg_scope`."""
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f'compute_dtype {compute_dtype!r} is not one of {COMPUTE_DTYPES}.')
        _, localisations, logits, _ = self.net(tf.cast(inputs, compute_dtype), is_training=False)
        return (
            [tf.nn.softmax(tf.cast(logit, tf.float32)) for logit in logits],
            [tf.cast(loc, tf.float32) for loc in localisations],
        )

    @staticmethod
    def _check_feat_shape(layer, loc, expected):
        actual = tuple(loc.shape[1:3])
        if None not in actual and actual != tuple(expected):
            raise ValueError(
                'feature layer %s is %s for this input, but params.feat_shapes says %s'
                '; set feat_shapes (and anchor sizes) for the new input size.'
                % (layer, actual, tuple(expected))
            )

    def arg_scope(self, weight_decay=0.0005, data_format='NHWC'):
        """The layers' defaults: L2 weight decay, Xavier init, ReLU, data format."""
        with slim.arg_scope(
            [custom_layers.conv2d, custom_layers.depthwise_conv2d],
            weights_regularizer=slim.l2_regularizer(weight_decay) if weight_decay else None,
            weights_initializer=v1.glorot_uniform_initializer(),
        ):
            with slim.arg_scope(
                [
                    custom_layers.conv2d,
                    custom_layers.depthwise_conv2d,
                    custom_layers.max_pool2d,
                    custom_layers.l2_normalization,
                    batch_norm,
                    multibox_head,
                ],
                data_format=data_format,
            ) as sc:
                return sc

    def anchors(self, img_shape=None, dtype=np.float32):
        """All anchors, `[N, 4]` `[ymin, xmin, ymax, xmax]` relative, in the heads' order."""
        return anchors_lib.ssd_anchors(self.params, img_shape).astype(dtype)

    def bboxes_encode(self, labels, bboxes, anchors=None, match_threshold=0.5, crowd=None):
        """Training targets for one image.

        Crowd regions (COCO `iscrowd`) are neither positives nor negatives: matching runs over
        every ground truth, crowd regions included, exactly as without them, and an anchor that
        belongs to a crowd region (`matching.match_with_owners`: matched to it, or, unmatched,
        its best IoU > 0 is with it) gets class -1 (ignored by the loss) and zero codes. Anchors
        of ordinary objects and background are as without the flag (Caffe's targets when no
        region is a crowd). `crowd=None` treats every box as an ordinary object.

        Args:
          labels: int `[G]` (<= 0 = padding), bboxes: float32 `[G, 4]` relative.
          crowd: optional bool/int `[G]`, nonzero for crowd regions.
        Returns:
          gclasses int64 `[N]` (0 = background, -1 = ignored: belongs to a crowd region),
          glocalisations float32 `[N, 4]` codes (0 where unmatched or ignored), gscores float32
          `[N]` best IoU of each anchor.
        """
        anchors = tf.constant(self.anchors() if anchors is None else anchors, tf.float32)
        # A background row makes the gathers below valid for images without objects.
        labels = tf.concat([tf.cast(labels, tf.int64), [0]], axis=0)
        bboxes = tf.concat([tf.cast(bboxes, tf.float32), tf.zeros([1, 4])], axis=0)
        matches, gscores, owners = matching.match_with_owners(
            anchors, bboxes, labels > 0, match_threshold
        )
        matched = matches >= 0
        safe = tf.maximum(matches, 0)
        gclasses = tf.where(matched, tf.gather(labels, safe), tf.zeros_like(matches, tf.int64))
        # Unmatched anchors encode themselves (no log(0)), then get exact zero codes.
        target_boxes = tf.where(matched[:, None], tf.gather(bboxes, safe), anchors)
        glocalisations = tf.where(
            matched[:, None],
            box_coder.encode(target_boxes, anchors, self.params.prior_scaling),
            0.0,
        )
        if crowd is not None:
            crowd = tf.concat([tf.not_equal(tf.cast(crowd, tf.int64), 0), [False]], axis=0)
            ignored = (owners >= 0) & tf.gather(crowd, tf.maximum(owners, 0))
            gclasses = tf.where(ignored, tf.constant(-1, tf.int64), gclasses)
            glocalisations = tf.where(ignored[:, None], 0.0, glocalisations)
        return gclasses, glocalisations, gscores

    def bboxes_decode(self, localisations, anchors=None):
        """Box codes (per-layer list or `[B, N, 4]`) -> boxes `[B, N, 4]`."""
        anchors = self.anchors() if anchors is None else anchors
        return box_coder.decode(flatten_layers(localisations), anchors, self.params.prior_scaling)

    def detected_bboxes(
        self,
        predictions,
        localisations,
        select_threshold=0.01,
        nms_threshold=0.45,
        top_k=400,
        keep_top_k=200,
        clip=False,
        anchors=None,
    ):
        """Detections with Caffe DetectionOutput semantics; see `post_processing`."""
        anchors = self.anchors() if anchors is None else anchors
        return post_processing.detected_bboxes(
            flatten_layers(predictions),
            flatten_layers(localisations),
            anchors,
            select_threshold,
            nms_threshold,
            top_k,
            keep_top_k,
            clip,
            self.params.prior_scaling,
        )

    def losses(self, logits, localisations, gclasses, glocalisations, gscores, **kwargs):
        """The SSD loss; see `losses.ssd_losses` for the options."""
        return losses_lib.ssd_losses(
            flatten_layers(logits),
            flatten_layers(localisations),
            gclasses,
            glocalisations,
            gscores,
            **kwargs,
        )
