"""Geometric image operations: show a window of an image at a fixed size, flip, normalise.

A *window* is a box `[ymin, xmin, ymax, xmax]` relative to the image; it may extend beyond
`[0, 1]` (the outside is filled with a constant). Cropping, zooming out (Caffe's expand),
warp resizing and aspect-preserving padding are all "show this window at out_shape", so the
whole training pipeline resizes the image once, and never builds the (up to 16x larger)
expanded canvas.
"""

import numpy as np
import tensorflow as tf

from tf_extended import bboxes as tfe_bboxes

RESIZE_METHODS = ('bilinear', 'nearest', 'bicubic', 'area')


def resize_with_method(image, size, method_index, methods):
    """`tf.image.resize` to `size` with `methods[method_index]` (a scalar int tensor)."""
    branches = [lambda m=m: tf.image.resize(image, size, method=m) for m in methods]
    if len(branches) == 1:
        return branches[0]()
    return tf.switch_case(method_index, branches)


def _axis_placement(lo, hi, size, out_size):
    """Integer placement along one axis of the window `[lo, hi)` (image pixels, floats).

    Returns `(i0, i1, o0, o1)`: image pixels `[i0, i1)` (the visible part of the window) go to
    output pixels `[o0, o1)`. The image is cut on whole pixels, so the rows shown may differ from
    the window by up to half a pixel on each side.
    """
    scale = (hi - lo) / tf.cast(out_size, tf.float32)
    visible_lo = tf.maximum(lo, 0.0)
    visible_hi = tf.minimum(hi, tf.cast(size, tf.float32))
    i0 = tf.clip_by_value(tf.cast(tf.round(visible_lo), tf.int32), 0, size)
    i1 = tf.clip_by_value(tf.cast(tf.round(visible_hi), tf.int32), 0, size)
    o0 = tf.clip_by_value(tf.cast(tf.round((visible_lo - lo) / scale), tf.int32), 0, out_size)
    o1 = tf.clip_by_value(tf.cast(tf.round((visible_hi - lo) / scale), tf.int32), 0, out_size)
    return i0, i1, o0, o1


def _axis_window(i0, i1, o0, o1, size, out_size):
    """Relative `(lo, hi)` of the window that the placement `(i0, i1, o0, o1)` really shows."""
    scale = tf.cast(i1 - i0, tf.float32) / tf.cast(o1 - o0, tf.float32)
    lo = tf.cast(i0, tf.float32) - tf.cast(o0, tf.float32) * scale
    hi = lo + tf.cast(out_size, tf.float32) * scale
    return lo / tf.cast(size, tf.float32), hi / tf.cast(size, tf.float32)


def resize_window(image, window, out_shape, method_index=0, methods=('bilinear',), fill=0.0):
    """Shows `window` of `image` at `out_shape`: crop, zoom out and resize in one step.

    Args:
      image: float32 `[H, W, C]`, dynamic H and W.
      window: float32 `[4]` relative `[ymin, xmin, ymax, xmax]` of the image; may extend beyond
        the image, where the output is `fill`.
      out_shape: `(height, width)` Python ints.
      method_index: int scalar (tensor), which of `methods` resizes.
      methods: `tf.image.resize` method names.
      fill: scalar value of the pixels outside the image.
    Returns:
      `(output float32 [height, width, C], shown_window float32 [4])`: `shown_window` is the
      window really shown after rounding to whole pixels; map boxes into the output with
      `tfe_bboxes.bboxes_resize(shown_window, bboxes)`. When the window does not overlap the
      image, the output is all `fill` and `shown_window` is `window`.
    """
    out_h, out_w = out_shape
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    window = tf.cast(window, tf.float32)
    y0, y1, oy0, oy1 = _axis_placement(
        window[0] * tf.cast(height, tf.float32),
        window[2] * tf.cast(height, tf.float32),
        height,
        out_h,
    )
    x0, x1, ox0, ox1 = _axis_placement(
        window[1] * tf.cast(width, tf.float32), window[3] * tf.cast(width, tf.float32), width, out_w
    )
    visible = (y1 > y0) & (x1 > x0) & (oy1 > oy0) & (ox1 > ox0)

    def show():
        part = resize_with_method(
            image[y0:y1, x0:x1], tf.stack([oy1 - oy0, ox1 - ox0]), method_index, methods
        )
        padded = tf.pad(
            part, [[oy0, out_h - oy1], [ox0, out_w - ox1], [0, 0]], constant_values=fill
        )
        wy = _axis_window(y0, y1, oy0, oy1, height, out_h)
        wx = _axis_window(x0, x1, ox0, ox1, width, out_w)
        return padded, tf.stack([wy[0], wx[0], wy[1], wx[1]])

    def blank():
        return tf.fill([out_h, out_w, tf.shape(image)[2]], tf.cast(fill, image.dtype)), window

    output, shown = tf.cond(visible, show, blank)
    output.set_shape([out_h, out_w, image.shape[2]])
    return output, shown


def flip_left_right(image, bboxes):
    """Mirrors an image `[H, W, C]` and its relative boxes `[N, 4]`."""
    return tf.reverse(image, axis=[1]), tfe_bboxes.bboxes_flip_left_right(bboxes)


def per_channel(op, image, values):
    """`op(image, values)` for RGB `[..., H, W, 3]` float32 and per-channel `values` (3 numbers
    or scalar tensors), computed on rows of W*3 numbers with `values` tiled W times: TF's CPU
    kernels vectorise over the innermost dimension, and a 3-wide one is their slow path (a
    300x300 image in tf.data, one core: bias_add 0.3 ms on `[300, 300, 3]`, 0.05 ms on
    `[300, 900]`)."""
    shape = tf.shape(image)
    rows = tf.reshape(image, tf.concat([shape[:-2], [shape[-2] * 3]], 0))
    tiled = tf.tile(tf.cast(tf.stack(values), tf.float32), shape[-2:-1])
    result = tf.reshape(op(rows, tiled), shape)
    result.set_shape(image.shape)
    return result


def normalize(image, mean_rgb, scale):
    """`(image - mean_rgb) * scale`, float32. `image` `[..., H, W, 3]` RGB 0-255."""
    # bias_add of -mean: the same float32 values (x - m is x + -m).
    negated = np.array([-float(m) for m in mean_rgb], np.float32)
    return per_channel(tf.nn.bias_add, tf.cast(image, tf.float32), negated) * scale


def normalized_range(mean_rgb, scale):
    """float32 `[3]` (low, high): what `normalize` makes of 0 and 255 (the same arithmetic)."""
    mean = np.asarray(mean_rgb, np.float32)
    scale = np.float32(scale)
    return (np.float32(0.0) - mean) * scale, (np.float32(255.0) - mean) * scale


def clip_normalized(image, mean_rgb, scale):
    """Clips a normalised image to the image of [0, 255] (bicubic resizing overshoots it)."""
    low, high = normalized_range(mean_rgb, scale)
    return per_channel(tf.minimum, per_channel(tf.maximum, image, low), high)


def warp_resize_normalized(image, out_shape, mean_rgb, scale, method='bilinear'):
    """RGB 0-255 `[..., H, W, 3]` (any real dtype) -> `normalize`d float32 `[..., h, w, 3]`,
    stretched to `out_shape` = (h, w). Caffe's order: resize, clip to [0, 255] (bicubic
    overshoots it; bilinear and nearest values are the image's or between two of its values,
    so they skip the clip), then normalise. An image whose static size is `out_shape` already
    is not resized (an identity: a --fixed_size TFLite model holds no resize op)."""
    image = tf.cast(image, tf.float32)
    if tuple(image.shape[-3:-1]) == tuple(out_shape):
        return normalize(image, mean_rgb, scale)
    image = tf.image.resize(image, out_shape, method=method)
    if method not in ('bilinear', 'nearest'):
        image = tf.clip_by_value(image, 0.0, 255.0)
    return normalize(image, mean_rgb, scale)


def warp_resize_uint8(image, out_shape):
    """uint8 RGB `[..., H, W, 3]` -> uint8 `[..., h, w, 3]` stretched to `out_shape` = (h, w) by
    the evaluation preprocessing's resize (`warp_resize_normalized`: TF bilinear), rounded: the
    input a model exported with --fixed_size gets for an image of another size (its int8
    calibration images, its evaluation)."""
    resized = tf.image.resize(tf.cast(image, tf.float32), out_shape)
    return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)


def _half_pixel_samples(in_size, out_size):
    """Where TF's bilinear resize (half-pixel centres, no antialiasing) samples one axis.

    Returns `(lower, upper, weight)`: the two input pixels of each output pixel, int32
    `[out_size]` each, and the float32 `[out_size]` weight of `upper`, in the kernel's own
    arithmetic (so `resize_bilinear_by_gathers` gives its values to the bit).
    """
    scale = tf.cast(in_size, tf.float32) / float(out_size)
    position = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale - 0.5
    floor = tf.floor(position)
    lower = tf.maximum(tf.cast(floor, tf.int32), 0)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), in_size - 1)
    return lower, upper, position - floor


def resize_bilinear_by_gathers(images, size):
    """`tf.image.resize(images, size)` (bilinear) built from gathers and lerps: float32
    `[B, h, w, C]` of any real `[B, H, W, C]`, equal to TF's kernel's output.

    For graphs converted to OpenVINO: its CPU plugin runs these gathers (uint8, before the cast)
    about 0.8 ms faster than its Interpolate for a 480x640 image, which first reorders the
    3-channel float image into a 16-channel blocked layout (MobileNet-SSD300 batch 1, 2 cores:
    10.5 instead of 11.3 ms). TF's own kernel is the faster one in TF.
    """
    shape = tf.shape(images)
    y0, y1, wy = _half_pixel_samples(shape[1], size[0])
    x0, x1, wx = _half_pixel_samples(shape[2], size[1])
    top, bottom = tf.gather(images, y0, axis=1), tf.gather(images, y1, axis=1)

    def columns(rows):
        left = tf.cast(tf.gather(rows, x0, axis=2), tf.float32)
        right = tf.cast(tf.gather(rows, x1, axis=2), tf.float32)
        return left + (right - left) * wx[:, None]

    # The kernel's order: along x within the two rows, then along y.
    top, bottom = columns(top), columns(bottom)
    return top + (bottom - top) * wy[:, None, None]


def denormalize(image, mean_rgb, scale):
    """Inverse of `normalize`: float32 RGB on the 0-255 scale (not clipped)."""
    return image / scale + tf.constant(mean_rgb, tf.float32)
