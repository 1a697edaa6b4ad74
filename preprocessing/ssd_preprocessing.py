"""SSD training ("SSD300*" Caffe recipe) and evaluation preprocessing.

Inputs of both pipelines:
  image: uint8 `[H, W, 3]` RGB, dynamic H and W.
  labels: int64 `[N]`.
  bboxes: float32 `[N, 4]` `[ymin, xmin, ymax, xmax]` relative to the image.
  out_shape: `(height, width)` Python ints.
  difficult (keyword, optional): `[N]` flags (any dtype), kept aligned with the boxes. When it is
    given, it is returned as one more, last, output.

The output image is float32 `[height, width, 3]` (NHWC) or `[3, height, width]` (NCHW), RGB,
normalised as `(x - mean_rgb) * scale`; output boxes are relative to the output image.

Training: photometric distortion -> normalisation -> zoom out (expand) -> batch sampler crop ->
one resize with a random interpolation -> horizontal flip. The expanded canvas is never built:
its mean-coloured border is 0 after normalisation, which `geometry.resize_window` pads with.
Returns `(image, labels [M], bboxes [M, 4][, difficult [M]])`. M can be 0: as in Caffe, the
unconstrained sampler may pick a crop that holds no object centre.

Evaluation: a deterministic resize (`RESIZE_MODES`) and normalisation (WARP_RESIZE: resized
first, as Caffe; the others pad with the mean, so they normalise first); no object is dropped.
Returns `(image, labels [N], bboxes [N, 4], bbox_img [4][, difficult [N]])`: `bbox_img` is the
image's box in the output frame; `tf_extended.bboxes.bboxes_resize(bbox_img, detections)` maps
detections (relative to the output) back to the original image.
"""

import inspect

import tensorflow as tf

from preprocessing import geometry, photometric, sampling
from preprocessing.seeds import SeedStream
from tf_extended import bboxes as tfe_bboxes

DATA_FORMATS = ('NHWC', 'NCHW')
# WARP_RESIZE: stretch to out_shape (Caffe). PAD_AND_RESIZE: fit inside out_shape keeping the
# aspect ratio, centred, padded with the mean. CENTRAL_CROP: no scaling, central out_shape crop
# (padded with the mean where the image is smaller). NONE: keep the image size.
RESIZE_MODES = ('WARP_RESIZE', 'PAD_AND_RESIZE', 'CENTRAL_CROP', 'NONE')


def _check_inputs(image, bboxes, out_shape, data_format):
    if image.shape.rank is not None and (image.shape.rank != 3 or image.shape[-1] not in (3, None)):
        raise ValueError(f'the image must be [H, W, 3] RGB; got shape {image.shape}.')
    if bboxes.shape.rank is not None and (bboxes.shape.rank != 2 or bboxes.shape[-1] != 4):
        raise ValueError(f'bboxes must be [N, 4] [ymin, xmin, ymax, xmax]; got {bboxes.shape}.')
    if len(out_shape) != 2 or not all(isinstance(s, int) and s > 0 for s in out_shape):
        raise ValueError(f'out_shape must be (height, width) positive ints; got {out_shape!r}.')
    if data_format not in DATA_FORMATS:
        raise ValueError(f'data_format must be one of {DATA_FORMATS}; got {data_format!r}.')


def _to_data_format(image, data_format):
    return tf.transpose(image, [2, 0, 1]) if data_format == 'NCHW' else image


def preprocess_for_train(
    image,
    labels,
    bboxes,
    out_shape,
    data_format='NHWC',
    *,
    mean_rgb,
    scale,
    difficult=None,
    seed=None,
    photometric_distortion=True,
    brightness_delta=32.0,
    brightness_prob=0.5,
    contrast_range=(0.5, 1.5),
    contrast_prob=0.5,
    saturation_range=(0.5, 1.5),
    saturation_prob=0.5,
    hue_delta=18.0,
    hue_prob=0.5,
    channel_shuffle_prob=0.0,
    expand_prob=0.5,
    expand_max_ratio=4.0,
    crop_min_ious=(0.1, 0.3, 0.5, 0.7, 0.9, 0.0),
    crop_scale_range=(0.3, 1.0),
    crop_aspect_ratio_range=(0.5, 2.0),
    crop_max_trials=50,
    flip_prob=0.5,
    resize_methods=geometry.RESIZE_METHODS,
):
    """SSD300* training augmentation (see the module docstring for inputs and outputs).

    Args:
      mean_rgb, scale: the model's normalisation; `mean_rgb` also fills the zoomed-out canvas.
      seed: per-example seed (int, int scalar or `[2]` tensor; see `seeds.example_seed`), or None
        for a non-reproducible random one. Same seed and options -> same output.
      photometric_distortion, brightness_*, contrast_*, saturation_*, hue_* (degrees),
        channel_shuffle_prob: see `photometric.random_distort`.
      expand_prob, expand_max_ratio: see `sampling.sample_expansion` (0 disables zoom out).
      crop_min_ious, crop_scale_range, crop_aspect_ratio_range, crop_max_trials: see
        `sampling.sample_crop` (an empty `crop_min_ious` keeps the whole image).
      flip_prob: probability of a horizontal mirror.
      resize_methods: `tf.image.resize` methods, one drawn uniformly per example.
    """
    _check_inputs(image, bboxes, out_shape, data_format)
    seeds = SeedStream(seed)
    # A stream of its own, so that switching the distortion off leaves the geometry unchanged.
    photometric_seeds = seeds.fork()
    bboxes = tf.cast(bboxes, tf.float32)
    image = tf.cast(image, tf.float32)
    if photometric_distortion:
        image = photometric.random_distort(
            image,
            photometric_seeds,
            brightness_delta=brightness_delta,
            brightness_prob=brightness_prob,
            contrast_range=contrast_range,
            contrast_prob=contrast_prob,
            saturation_range=saturation_range,
            saturation_prob=saturation_prob,
            hue_delta=hue_delta,
            hue_prob=hue_prob,
            channel_shuffle_prob=channel_shuffle_prob,
        )
    image = geometry.normalize(image, mean_rgb, scale)

    canvas = sampling.sample_expansion(tf.shape(image), seeds, expand_prob, expand_max_ratio)
    if crop_min_ious:
        crop = sampling.sample_crop(
            tfe_bboxes.bboxes_resize(canvas, bboxes),
            seeds,
            min_ious=crop_min_ious,
            scale_range=crop_scale_range,
            aspect_ratio_range=crop_aspect_ratio_range,
            max_trials=crop_max_trials,
        )
        window = tfe_bboxes.bboxes_unresize(canvas, crop)
    else:
        window = canvas
    method = tf.random.stateless_uniform((), seeds(), 0, len(resize_methods), dtype=tf.int32)
    image, shown = geometry.resize_window(image, window, out_shape, method, resize_methods)
    image = geometry.clip_normalized(image, mean_rgb, scale)
    aligned = (labels,) if difficult is None else (labels, difficult)
    bboxes, *aligned = sampling.crop_bboxes(shown, bboxes, *aligned)

    image, bboxes = tf.cond(
        seeds.bernoulli(flip_prob),
        lambda: geometry.flip_left_right(image, bboxes),
        lambda: (image, bboxes),
    )
    return (_to_data_format(image, data_format), aligned[0], bboxes) + tuple(aligned[1:])


def eval_window(image_shape, out_shape, resize):
    """The window of the image shown by `resize`, 'PAD_AND_RESIZE' or 'CENTRAL_CROP'.

    Args:
      image_shape: int `[3]` tensor.
    Returns:
      float32 `[4]` relative window, centred on the image.
    """
    size = tf.cast(image_shape[:2], tf.float32)
    out = tf.constant(out_shape, tf.float32)
    if resize == 'PAD_AND_RESIZE':
        # Output pixels per image pixel, the same on both axes.
        factor = tf.reduce_min(out / size)
        extent = out / factor / size
    else:
        extent = out / size
    top_left = (1.0 - extent) / 2.0
    return tf.concat([top_left, top_left + extent], axis=0)


def preprocess_for_eval(
    image,
    labels,
    bboxes,
    out_shape,
    data_format='NHWC',
    *,
    mean_rgb,
    scale,
    difficult=None,
    resize='WARP_RESIZE',
    resize_method='bilinear',
):
    """Deterministic evaluation preprocessing (see the module docstring).

    Args:
      mean_rgb, scale: the model's normalisation; `mean_rgb` also fills any padding.
      resize: one of `RESIZE_MODES`.
      resize_method: the `tf.image.resize` method.
    """
    _check_inputs(image, bboxes, out_shape, data_format)
    if resize not in RESIZE_MODES:
        raise ValueError(f'resize must be one of {RESIZE_MODES}; got {resize!r}.')
    bboxes = tf.cast(bboxes, tf.float32)
    unit = tf.constant(sampling.UNIT_WINDOW)
    bbox_img = unit
    if resize == 'WARP_RESIZE':
        image = geometry.warp_resize_normalized(image, out_shape, mean_rgb, scale, resize_method)
    elif resize == 'NONE':
        image = geometry.normalize(image, mean_rgb, scale)
    else:
        # Normalised first: resize_window pads with 0, the mean colour once normalised.
        image, shown = geometry.resize_window(
            geometry.normalize(image, mean_rgb, scale),
            eval_window(tf.shape(image), out_shape, resize),
            out_shape,
            methods=(resize_method,),
        )
        image = geometry.clip_normalized(image, mean_rgb, scale)
        bboxes = tfe_bboxes.bboxes_resize(shown, bboxes)
        bbox_img = tfe_bboxes.bboxes_resize(shown, unit)
    outputs = (_to_data_format(image, data_format), labels, bboxes, bbox_img)
    return outputs if difficult is None else outputs + (difficult,)


class SSDPreprocessing:
    """A model's preprocessing: `pipeline(image, labels, bboxes, out_shape, is_training,
    data_format='NHWC', **options)`; options are the keyword arguments of `preprocess_for_train`
    or `preprocess_for_eval` (less `mean_rgb` and `scale`, which the model fixes)."""

    def __init__(self, name, mean_rgb, scale):
        self.name = name
        self.mean_rgb = tuple(float(m) for m in mean_rgb)
        self.scale = float(scale)

    def __call__(
        self, image, labels, bboxes, out_shape, is_training, data_format='NHWC', **options
    ):
        function = preprocess_for_train if is_training else preprocess_for_eval
        allowed = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name not in ('mean_rgb', 'scale')
        ]
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f'{self.name} {"training" if is_training else "evaluation"} '
                f'preprocessing has no option {unknown}; its options: {allowed}.'
            )
        return function(
            image,
            labels,
            bboxes,
            tuple(out_shape),
            data_format,
            mean_rgb=self.mean_rgb,
            scale=self.scale,
            **options,
        )

    def denormalize(self, image, data_format='NHWC'):
        """Output image(s) `[..., H, W, 3]` (or `[..., 3, H, W]`) -> float32 RGB 0-255 NHWC."""
        if data_format == 'NCHW':
            rank = image.shape.rank
            image = tf.transpose(image, list(range(rank - 3)) + [rank - 2, rank - 1, rank - 3])
        return geometry.denormalize(image, self.mean_rgb, self.scale)
