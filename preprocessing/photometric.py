"""Photometric distortions of Caffe SSD's `DistortImage` (weiliu89/caffe, `im_transforms.cpp`).

Images are float32 `[H, W, 3]` RGB on the 0-255 scale. Every operation clips to [0, 255] as Caffe's
uint8 `convertTo` saturates, but values are not rounded to integers.
"""

import tensorflow as tf

from preprocessing import geometry


def adjust_brightness(image, delta):
    """Adds `delta` (0-255 scale) to every channel: Caffe's `AdjustBrightness`."""
    return tf.clip_by_value(image + delta, 0.0, 255.0)


def adjust_contrast(image, factor):
    """Multiplies every value by `factor`: Caffe's `AdjustContrast` (`convertTo(alpha=factor)`).

    This is not `tf.image.adjust_contrast`, which scales around the image mean.
    """
    return tf.clip_by_value(image * factor, 0.0, 255.0)


def adjust_saturation_hue(image, saturation_factor, hue_delta):
    """Scales the HSV saturation by `saturation_factor` and rotates the hue by `hue_delta` degrees.

    One HSV round trip for both, as Caffe's saturation and hue steps are always adjacent.
    The hue wraps around (OpenCV's float HSV convention, H in degrees).
    """
    hsv = tf.image.rgb_to_hsv(image / 255.0)
    # Per channel without unstacking (geometry.per_channel): hue + delta, saturation * factor,
    # then the hue mod 1 as h - floor(h) (the same float as floormod's), and one [0, 1] clip
    # (a no-op on hue and value).
    moved = geometry.per_channel(
        tf.add,
        geometry.per_channel(tf.multiply, hsv, [1.0, saturation_factor, 1.0]),
        [hue_delta / 360.0, 0.0, 0.0],
    )
    wrapped = moved - geometry.per_channel(tf.multiply, tf.floor(moved), [1.0, 0.0, 0.0])
    return tf.image.hsv_to_rgb(tf.clip_by_value(wrapped, 0.0, 1.0)) * 255.0


def shuffle_channels(image, seed):
    """Random permutation of the 3 channels (Caffe's `RandomOrderChannels`), from a `[2]` seed."""
    permutation = tf.argsort(tf.random.stateless_uniform([3], seed=seed))
    return tf.gather(image, permutation, axis=-1)


def random_distort(
    image,
    seeds,
    brightness_delta=32.0,
    brightness_prob=0.5,
    contrast_range=(0.5, 1.5),
    contrast_prob=0.5,
    saturation_range=(0.5, 1.5),
    saturation_prob=0.5,
    hue_delta=18.0,
    hue_prob=0.5,
    channel_shuffle_prob=0.0,
):
    """Caffe's `ApplyDistort`: brightness, contrast, saturation, hue, each with its probability.

    With probability 0.5 the order is brightness, contrast, saturation, hue, otherwise brightness,
    saturation, hue, contrast; then the channels are shuffled with `channel_shuffle_prob`
    (Caffe's SSD models train with `random_order_prob: 0`).

    Args:
      image: float32 `[H, W, 3]`, 0-255.
      seeds: a `seeds.SeedStream`.
      brightness_delta: the added value is uniform in `[-delta, delta]` (0-255 scale).
      contrast_range, saturation_range: the factor is uniform in this `(lower, upper)`.
      hue_delta: the hue rotation is uniform in `[-hue_delta, hue_delta]` degrees. Caffe's
        `hue_delta: 18` is in OpenCV 8-bit hue units (2 degrees each); 18 degrees here is
        the project's chosen default.
      *_prob: probability that each distortion is applied.
    Returns:
      float32 `[H, W, 3]`, 0-255.
    """
    contrast_first = seeds.bernoulli(0.5)
    brightness = tf.where(
        seeds.bernoulli(brightness_prob),
        seeds.uniform((), -brightness_delta, brightness_delta),
        0.0,
    )
    contrast = tf.where(seeds.bernoulli(contrast_prob), seeds.uniform((), *contrast_range), 1.0)
    do_saturation = seeds.bernoulli(saturation_prob)
    saturation = tf.where(do_saturation, seeds.uniform((), *saturation_range), 1.0)
    do_hue = seeds.bernoulli(hue_prob)
    hue = tf.where(do_hue, seeds.uniform((), -hue_delta, hue_delta), 0.0)
    shuffle = seeds.bernoulli(channel_shuffle_prob)
    shuffle_seed = seeds()

    image = adjust_brightness(image, brightness)
    # A factor of 1 is a no-op, so the two orders need no branch for contrast.
    image = adjust_contrast(image, tf.where(contrast_first, contrast, 1.0))
    # Skipping the HSV round trip when unused keeps the image bit-exact and saves time.
    image = tf.cond(
        do_saturation | do_hue, lambda: adjust_saturation_hue(image, saturation, hue), lambda: image
    )
    image = adjust_contrast(image, tf.where(contrast_first, 1.0, contrast))
    if channel_shuffle_prob > 0:
        image = tf.cond(shuffle, lambda: shuffle_channels(image, shuffle_seed), lambda: image)
    return image
