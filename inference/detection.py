"""Inference: the detection graph, running it from a checkpoint or an exported model, image input.

The graph (`build_detection_graph`) takes a batch of uint8 RGB images of any size and does
everything else: the model's evaluation preprocessing per image (normalisation, warp resize to
the net's input, as `preprocess_for_eval(resize='WARP_RESIZE')`), the net, box decoding and NMS.

    card = model.card.load('train/model.json')          # or cli.resolve_card(flags, 'train/')
    with Detector.from_checkpoint(card, 'train/') as detector:   # or from_saved_model/_frozen_graph
        for dets in detector.detect([rgb_a, rgb_b]):               # any sizes, one session
            dets['boxes'], dets['scores'], dets['classes']

Tensors (names in frozen graphs and SavedModels):
  inputs   `images` uint8 `[B, H, W, 3]` RGB; `image_sizes` int32 `[B, 2]` (height, width) of
           the valid top-left part of each image, default: all of it (lets images of different
           sizes share a zero-padded batch);
  outputs  `detection_boxes` float32 `[B, K, 4]` relative `[ymin, xmin, ymax, xmax]` (relative to
           the image, as the warp resize maps the whole image onto the net's input),
           `detection_scores` float32 `[B, K]`, `detection_classes` int32 `[B, K]` (1..C-1, 0 in
           padding rows), `num_detections` int32 `[B]`; `raw_localisations` float32 `[B, N, 4]`
           box codes `[tx, ty, tw, th]` of the N anchors (`ssd.anchors()` order) and
           `raw_scores` float32 `[B, N, C]` softmax probabilities, for own post-processing.
"""

import collections
import contextlib
import dataclasses
import faulthandler
import functools
import glob
import os
import signal
import sys
import threading
import time
import warnings

import cv2
import numpy as np
import tensorflow as tf
import tf_slim as slim
from google.protobuf import message
from tensorflow.python.util import deprecation

from datasets import dataset_factory
from datasets import example_format
from datasets import image_io
from inference import embedded_card
from inference import graph_check
from model import card as card_lib
from model import checkpoints
from nets import post_processing
from nets import ssd_common
from tf_extended import safe_io
from tf_extended import signals
from tf_extended import texts
from tf_extended import tf_errors

v1 = tf.compat.v1

INPUT = 'images'
SIZES = 'image_sizes'
DETECTION_OUTPUTS = ('detection_boxes', 'detection_scores', 'detection_classes', 'num_detections')
RAW_OUTPUTS = ('raw_localisations', 'raw_scores')
OUTPUTS = DETECTION_OUTPUTS + RAW_OUTPUTS
# {tensor name: (dtype, rank)} of the inputs and outputs (see the module docstring), checked when
# an export is loaded (`graph_check.check_interface`).
INTERFACE = {
    INPUT: (tf.uint8, 4),
    SIZES: (tf.int32, 2),
    'detection_boxes': (tf.float32, 3),
    'detection_scores': (tf.float32, 2),
    'detection_classes': (tf.int32, 2),
    'num_detections': (tf.int32, 1),
    'raw_localisations': (tf.float32, 3),
    'raw_scores': (tf.float32, 3),
}
# The SavedModel signature with both inputs; 'serving_default' takes `images` only.
PADDED_SIGNATURE = 'serving_padded'
# The SavedModel signature of JPEG or PNG files' bytes (`add_encoded_input`), as the TF Object
# Detection API's `encoded_image_string_tensor` input: TF Serving's REST API takes them as
# {"b64": ...}.
ENCODED_SIGNATURE = graph_check.ENCODED_SIGNATURE
ENCODED_INPUT = 'encoded_images'
ENCODED_SCOPE = 'encoded'
# The SavedModel signature of serialized tf.Examples holding an image file's bytes as
# `image/encoded` (`add_encoded_input`: our records; the TF Object Detection API's `tf_example`
# input).
TF_EXAMPLE_SIGNATURE = graph_check.TF_EXAMPLE_SIGNATURE
TF_EXAMPLE_INPUT = 'tf_examples'
TF_EXAMPLE_SCOPE = 'tf_example'
METADATA_FILE = 'metadata.json'
# detect_ssd_network.py's record of a run, in its --output_dir.
DETECTIONS_FILE = 'detections.json'
ANCHORS_FILE = 'anchors.npy'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


# ---------------------------------------------------------------------------------------------
# The graph.


def _preprocess_one(image, card):
    """One uint8 `[H, W, 3]` RGB image -> the net's float32 input `[h, w, 3]` (the model's
    evaluation preprocessing, WARP_RESIZE)."""
    image.set_shape([None, None, 3])
    return card.preprocessing()(
        image,
        tf.zeros([0], tf.int64),
        tf.zeros([0, 4]),
        card.input_shape,
        is_training=False,
        resize='WARP_RESIZE',
    )[0]


def preprocess_images(images, card, image_sizes=None):
    """uint8 `[B, H, W, 3]` RGB -> the net's float32 input `[B, h, w, 3]`.

    Every image goes through the model's evaluation preprocessing (WARP_RESIZE). With
    `image_sizes` (int32 `[B, 2]`), image b is `images[b, :height, :width]` (a map over the
    batch); without, the batch size must be static and the images are unrolled, which keeps the
    graph free of control flow (TFLite).
    """
    if image_sizes is None:
        if images.shape[0] is None:
            raise ValueError('preprocess_images without image_sizes needs a static batch size.')
        return tf.stack([_preprocess_one(images[b], card) for b in range(images.shape[0])])
    return tf.map_fn(
        lambda args: _preprocess_one(args[0][: args[1][0], : args[1][1]], card),
        (images, image_sizes),
        fn_output_signature=tf.TensorSpec(card.input_shape + (3,), tf.float32),
    )


_PNG_SIZE_END = len(image_io.PNG_IHDR_START) + 8  # width and height follow


# How `serving_encoded`'s messages name a file ({}: its place in the batch).
ENCODED_FILE = f'{ENCODED_SIGNATURE}: {ENCODED_INPUT}[{{}}]'


def decode_image_file(data, index, name=ENCODED_FILE, max_pixels=image_io.DEFAULT_MAX_IMAGE_PIXELS):
    """uint8 `[H, W, 3]` RGB of a JPEG or PNG file's bytes (string scalar), decoded as evaluation
    decodes records (`dataset_factory.decode_rgb`: a JPEG to the pixels OpenCV gives detect;
    grey and alpha to RGB; EXIF orientation ignored). Its size is read from its header first: a
    few hundred bytes can declare gigapixels. Other bytes, an image of more than `max_pixels`
    pixels (detect's limit), a JPEG of more than `image_io.MAX_JPEG_SCANS` scans (counted in its
    bytes), and a damaged or cut file (a JPEG header the decoder cannot read, image data it
    refuses) fail the run (InvalidArgumentError) saying so and naming the file by `name` (str,
    `{}` standing for `index`, an int32 scalar: its place in the batch)."""
    length = tf.strings.length(data)
    is_jpeg = tf.io.is_jpeg(data)
    # The length first: reading a PNG's size from fewer bytes would fail with the bytes in
    # the message, which TF's Python client cannot decode as UTF-8 (UnicodeDecodeError).
    start = image_io.PNG_IHDR_START
    is_png = tf.equal(tf.strings.substr(data, 0, len(start)), start) & (length >= _PNG_SIZE_END)
    known = _assert_file(
        is_jpeg | is_png,
        'is neither a JPEG nor a PNG file (from its first bytes); send JPEG or PNG files only',
        name,
        index,
        length,
    )
    with tf.control_dependencies([known]):
        size, readable = tf.cond(
            is_jpeg,
            lambda: _attempt(_jpeg_size, data, tf.zeros([2], tf.int64)),
            lambda: (_png_size(data), True),
        )
    readable = _assert_file(
        readable,
        'is a JPEG file whose header cannot be read (damaged, or cut before its image data); '
        'send the whole, undamaged file',
        name,
        index,
        length,
    )
    with tf.control_dependencies([readable]):
        # Each side first: two of a PNG's 32-bit sides overflow int64 when multiplied.
        small = (size[0] <= max_pixels) & (size[1] <= max_pixels)
        small = small & (size[0] * size[1] <= max_pixels)
        scans = _jpeg_scans(data)
    few = tf.debugging.Assert(
        is_png | (scans <= image_io.MAX_JPEG_SCANS),
        [
            tf.strings.format(
                f'{name} is a JPEG file of more than '
                f'{image_io.MAX_JPEG_SCANS} scans (each is decoded over the whole image: that '
                f'many take minutes); re-save the image',
                (index,),
            )
        ],
    )
    small = tf.debugging.Assert(
        small,
        [
            tf.strings.format(
                f'{name} declares {{}}x{{}} (height x width) pixels, more than the '
                f'{max_pixels} it decodes; downscale the image',
                (index, size[0], size[1]),
            )
        ],
    )
    with tf.control_dependencies([small, few]):
        rgb, decoded = _attempt(dataset_factory.decode_rgb, data, tf.zeros([0, 0, 3], tf.uint8))
    damaged = (
        ' whose image data cannot be decoded (damaged or cut short); send the whole, undamaged file'
    )
    decoded = _assert_file(
        decoded,
        tf.where(is_jpeg, 'is a JPEG file' + damaged, 'is a PNG file' + damaged),
        name,
        index,
        length,
    )
    with tf.control_dependencies([decoded]):
        return tf.identity(rgb)


def _assert_file(condition, problem, name, index, length):
    """An assertion of `condition` (bool scalar) whose message names the file (`name`, `{}`
    standing for `index`) and its `length` in bytes, then says `problem` (str, or a string
    scalar)."""
    return tf.debugging.Assert(
        condition,
        [tf.strings.join([tf.strings.format(f'{name} ({{}} bytes) ', (index, length)), problem])],
    )


def _attempt(fn, data, fallback):
    """(fn(data), True), or (`fallback`, False) where `fn` fails on `data` (a string scalar): a
    graph has no try/except, but a dataset skips an element whose map failed (`ignore_errors`)
    and yields the fallback after it. The decoders' own messages ("Invalid JPEG data, size 177")
    do not say which file of a batch failed."""
    attempted = tf.data.Dataset.from_tensors(data).map(lambda one: (fn(one), True))
    failed = tf.data.Dataset.from_tensors((fallback, False))
    return attempted.ignore_errors().concatenate(failed).take(1).get_single_element()


def _jpeg_size(data):
    """int64 `[2]` (height, width) that a JPEG's frame header declares."""
    return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)


def _jpeg_scans(data):
    """int64 scalar: `image_io.jpeg_scans` of `data` (a string scalar), counted up to
    MAX_JPEG_SCANS + 1."""
    split = tf.raw_ops.StringSplitV2(
        input=data[None], sep=image_io.JPEG_SCAN_MARKER, maxsplit=image_io.MAX_JPEG_SCANS + 1
    )
    return split.shape[1] - 1  # the pieces of the one string, one more than the markers


def _png_size(data):
    """int64 `[2]` (height, width) that a PNG's IHDR declares (big-endian at bytes 16..23); the
    data holds them (`decode_image_file` checks)."""
    ihdr = tf.io.decode_raw(tf.strings.substr(data, len(image_io.PNG_IHDR_START), 8), tf.uint8)
    ihdr = tf.reshape(tf.cast(ihdr, tf.int64), [2, 4])
    big_endian = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64)
    width, height = tf.unstack(tf.reduce_sum(ihdr * big_endian, axis=1))
    return tf.stack([height, width])


def image_of_tf_example(serialized, index):
    """The `image/encoded` bytes (string scalar) of a serialized tf.Example (string scalar), as
    our records and the TF Object Detection API's hold an image file. Bytes that are no
    tf.Example, or one without that feature, fail the run naming it by `index` (int32 scalar, its
    place in `tf_examples`): TF's own parse error held the bytes, which its Python client cannot
    decode as UTF-8 (UnicodeDecodeError)."""

    def parse(one):
        features = {example_format.ENCODED: tf.io.FixedLenFeature([], tf.string)}
        return tf.io.parse_single_example(one, features)[example_format.ENCODED]

    data, parsed = _attempt(parse, serialized, tf.constant(b''))
    parsed = _assert_file(
        parsed,
        # No apostrophe: TF's message escapes it.
        f'is not a serialized tf.Example holding one {example_format.ENCODED} (the bytes of an '
        f'image file); send the records tf_convert_data.py writes, or the image files to '
        f'{ENCODED_SIGNATURE}',
        f'{TF_EXAMPLE_SIGNATURE}: {TF_EXAMPLE_INPUT}[{{}}]',
        index,
        tf.strings.length(serialized),
    )
    with tf.control_dependencies([parsed]):
        return tf.identity(data)


# How `serving_tf_example`'s messages name the image file of an example ({}: its place).
TF_EXAMPLE_FILE = f'{TF_EXAMPLE_SIGNATURE}: {TF_EXAMPLE_INPUT}[{{}}] {example_format.ENCODED}'


def preprocess_encoded(encoded, card, tf_examples=False):
    """string `[B]`, each a JPEG or PNG file's bytes (with `tf_examples`: a serialized tf.Example
    holding them, `image_of_tf_example`) -> the net's float32 input `[B, h, w, 3]`: each decoded
    (`decode_image_file`) and preprocessed as `preprocess_images` does."""

    def one(data, index):
        if tf_examples:
            return decode_image_file(image_of_tf_example(data, index), index, TF_EXAMPLE_FILE)
        return decode_image_file(data, index)

    return tf.map_fn(
        lambda args: _preprocess_one(one(*args), card),
        (encoded, tf.range(tf.shape(encoded)[0])),
        fn_output_signature=tf.TensorSpec(card.input_shape + (3,), tf.float32),
        # One image at a time: the pixel bound is one image's (map_fn ran 10 at once).
        parallel_iterations=1,
    )


@dataclasses.dataclass
class GraphEndpoints:
    """inputs: {'images'[, 'image_sizes']: tensor}; outputs: {name in OUTPUTS: tensor}."""

    inputs: dict
    outputs: dict


# Name scopes of the graph's ops before and after the net (TFLite int8 keeps them float32).
PREPROCESS_SCOPE = 'preprocess'
POSTPROCESS_SCOPE = 'postprocess'


def build_detection_graph(card, batch_size=None, fixed_size=False, tflite=False):
    """Builds the inference graph in the default graph (see the module docstring for tensors).

    Args:
      batch_size: static batch size, or None for any (not with `tflite`).
      fixed_size: the input is `[B, h, w, 3]` at the net's input size (no resizing needed: the
        TFLite graph has no resize; the others crop each image to its `image_sizes` and resize
        it, an identity on whole images).
      tflite: TFLite builtin ops only: no `image_sizes` input (the batch's images share one
        size) and `post_processing.detected_bboxes_per_class_nms`; needs `batch_size` and a
        float32 `card.compute_dtype`.
    Returns:
      GraphEndpoints.
    """
    if tflite and batch_size is None:
        raise ValueError('A TFLite graph needs a static batch size.')
    if tflite and card.compute_dtype != 'float32':
        raise ValueError(
            f'A TFLite graph computes in float32 (or int8 after quantisation), not '
            f'{card.compute_dtype}.'
        )
    height, width = card.input_shape if fixed_size else (None, None)
    images = v1.placeholder(tf.uint8, [batch_size, height, width, 3], name=INPUT)
    inputs = {INPUT: images}
    if tflite:
        with tf.name_scope(PREPROCESS_SCOPE):
            net_input = preprocess_images(images, card)
    else:
        checked = _not_empty(_shape_checked(images), f'{INPUT} holds no image')
        shape = tf.shape(checked)
        full = tf.tile(shape[None, 1:3], [shape[0], 1])
        sizes = v1.placeholder_with_default(full, [batch_size, 2], name=SIZES)
        inputs[SIZES] = sizes
        with tf.name_scope(PREPROCESS_SCOPE):
            net_input = preprocess_images(checked, card, _shape_checked(sizes))
    return GraphEndpoints(inputs, _outputs(card, net_input, tflite))


def _shape_checked(placeholder):
    """`placeholder` with its declared shape checked when the graph runs (EnsureShape): a v1
    session checks what it is fed, but a TF2 signature call and TF Serving do not, and a graph
    of a static batch B (`--batch_size`) then ran the first B images of a larger batch and
    dropped the others, with no error."""
    return tf.ensure_shape(placeholder, placeholder.shape, name=f'{placeholder.op.name}_shape')


def _not_empty(batch, problem):
    """`batch` with its size asserted to be at least 1 when the graph runs: an empty batch gave
    a convolution's shape error deep in the net (TensorFlow's CPU convolution returns its input
    for an empty batch). Fails (InvalidArgumentError) with `problem` (str: what the batch holds,
    naming the input) and what to do, as the detectors refuse an empty list (`check_images`)."""
    check = tf.debugging.Assert(
        tf.shape(batch)[0] > 0,
        [f'{problem} (a batch of 0); send at least one'],
    )
    with tf.control_dependencies([check]):
        return tf.identity(batch)


def add_encoded_input(card, batch_size=None, tf_examples=False):
    """Adds to the default graph, which holds `build_detection_graph`'s (not TFLite's), another
    input through the same variables: `encoded_images` string `[B]`, JPEG or PNG files' bytes,
    or with `tf_examples`, `tf_examples` string `[B]`, serialized tf.Examples holding them
    (`preprocess_encoded`), each image of its own size. Its outputs are the OUTPUTS under the
    name scope `encoded/` (`tf_example/`). Returns GraphEndpoints."""
    signature, name, scope, holds = (
        (TF_EXAMPLE_SIGNATURE, TF_EXAMPLE_INPUT, TF_EXAMPLE_SCOPE, 'example')
        if tf_examples
        else (ENCODED_SIGNATURE, ENCODED_INPUT, ENCODED_SCOPE, 'file')
    )
    encoded = v1.placeholder(tf.string, [batch_size], name=name)
    # The root variable scope first: entering it resets the name scope.
    with v1.variable_scope(v1.get_variable_scope(), reuse=True), tf.name_scope(scope):
        with tf.name_scope(PREPROCESS_SCOPE):
            checked = _not_empty(_shape_checked(encoded), f'{signature}: {name} holds no {holds}')
            net_input = preprocess_encoded(checked, card, tf_examples)
        return GraphEndpoints({name: encoded}, _outputs(card, net_input, tflite=False))


def _outputs(card, net_input, tflite):
    """{name in OUTPUTS: tensor} of the net and its post-processing on `net_input` (the net's
    float32 input `[B, h, w, 3]`); see `build_detection_graph`."""
    net = card.net()
    with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
        predictions, localisations = net.predict(net_input, card.compute_dtype)
    scores = ssd_common.flatten_layers(predictions)
    codes = ssd_common.flatten_layers(localisations)
    postprocess = (
        post_processing.detected_bboxes_per_class_nms if tflite else post_processing.detected_bboxes
    )
    with tf.name_scope(POSTPROCESS_SCOPE):
        detections = postprocess(
            scores,
            codes,
            net.anchors(),
            **dataclasses.asdict(card.detection),
            prior_scaling=net.params.prior_scaling,
        )
    detections.update(raw_localisations=codes, raw_scores=scores)
    return {name: tf.identity(detections[name], name=name) for name in OUTPUTS}


def restore_variables(sess, checkpoint_path, card_path=None, moving_average_decay=None):
    """Restores the graph's global variables from a checkpoint (prefix, file or directory);
    a checkpoint of another shape is a ValueError naming the variables and the likely flag.
    With `moving_average_decay`, the trainable ones read their moving averages."""
    prefix = checkpoints.resolve_checkpoint(checkpoint_path)
    checkpoints.check_moving_averages(prefix, moving_average_decay)
    var_map = checkpoints.variables_to_restore(moving_average_decay)
    checkpoints.check_restorable(prefix, var_map, card_path)
    checkpoints.restore(v1.train.Saver(var_map), sess, prefix)
    return prefix


def check_checkpoint_fits(card, checkpoint_path, card_path=None):
    """Raises ValueError (`checkpoints.check_restorable`'s message, naming the model card
    `card_path` or else the flags) when the checkpoint cannot fill the net `card` describes:
    an export checks it before its slow work, and names the card a user gave."""
    with tf.Graph().as_default():
        build_detection_graph(card)
        prefix = checkpoints.resolve_checkpoint(checkpoint_path)
        checkpoints.check_restorable(prefix, checkpoints.variables_to_restore(None), card_path)


def write_averaged_weights(card, prefix, moving_average_decay):
    """Writes the inference graph's variables, the trainable ones read from their moving averages
    in checkpoint `prefix`, as checkpoint `<prefix>-averaged`; returns that prefix. Every export
    format read from it holds the averages, as eval with --moving_average_decay reads them (batch
    norm's moving statistics stay the checkpoint's)."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as sess:
        build_detection_graph(card)
        restore_variables(sess, prefix, moving_average_decay=moving_average_decay)
        saver = v1.train.Saver(v1.global_variables())
        return saver.save(sess, f'{prefix}-averaged', write_meta_graph=False)


def freeze(sess, output_names):
    """The session's graph as a GraphDef holding only what the ops `output_names` need, its
    variables replaced by their values in `sess` as constants, its library only the functions
    they call (TF keeps every function, e.g. `add_encoded_input`'s decoding loop).

    TF's v1 freezing, the API for this project's graph-mode graphs; its notice that v1 APIs are
    deprecated (two WARNING records, the first time in a process) says nothing to a user, so it
    is silenced."""
    with deprecation.silence():
        frozen = v1.graph_util.convert_variables_to_constants(
            sess, sess.graph.as_graph_def(), list(output_names)
        )
    called = graph_check.called_functions(frozen)
    kept = [f for f in frozen.library.function if f.signature.name in called]
    del frozen.library.function[:]
    frozen.library.function.extend(kept)
    return frozen


# ---------------------------------------------------------------------------------------------
# Running it.


# A graph holds about 16 bytes per input pixel (measured: MobileNet-SSD300's frozen graph took
# 1.3 GB more for one 49 MP image), so a batch of 8 images at the 100 MP image limit took ~15 GB.
# detect_ssd_network.py caps its batches at this many pixels; 8 photos of 12 MP still fit in one.
MAX_BATCH_PIXELS = 100_000_000


def batch_fits(shapes):
    """Whether images of `shapes` (`[H, W, ...]` each) may run as one batch of
    detect_ssd_network.py (which runs each size in a call of its own, so nothing is padded): a
    single image always; more while they hold at most MAX_BATCH_PIXELS together."""
    return len(shapes) == 1 or sum(shape[0] * shape[1] for shape in shapes) <= MAX_BATCH_PIXELS


def padded_parts(sizes):
    """Consecutive parts `(start, end, height, width)` of a zero-padded batch of images of `sizes`
    (int `[B, 2]`), each cropped to its largest height and width and holding at most
    MAX_BATCH_PIXELS padded pixels (a single image always): one part when the whole batch fits.
    A batch padded to its largest height and width can hold far more pixels than its images."""
    parts, start = [], 0
    while start < len(sizes):
        end, height, width = start + 1, int(sizes[start][0]), int(sizes[start][1])
        while end < len(sizes):
            grown = max(height, int(sizes[end][0])), max(width, int(sizes[end][1]))
            if (end + 1 - start) * grown[0] * grown[1] > MAX_BATCH_PIXELS:
                break
            end, (height, width) = end + 1, grown
        parts.append((start, end, height, width))
        start = end
    return parts


# The end of check_images' messages.
IMAGES_EXPECTED = (
    'the model takes uint8 RGB images [H, W, 3], 0-255 as decoded from a file, and resizes and '
    'normalises them itself'
)


def check_images(images, source, padded=False):
    """Raises ValueError in one line naming `source` (the model's file) unless `images` is what
    the detectors' `run` takes, a non-empty list of uint8 RGB arrays `[H, W, 3]` (or one array
    `[B, H, W, 3]`), or with `padded`, what their `run_padded` takes: one such array. Floats,
    other integers, gray or 4-channel images gave garbage detections or a deep runtime error.
    Cheap: dtypes and shapes, and the max of a float array (whether it looks normalised)."""
    batch = isinstance(images, np.ndarray) and images.ndim == 4
    if not batch and (padded or isinstance(images, np.ndarray)):
        wanted = 'a zero-padded batch [B, H, W, 3]' if padded else 'a list of images ([image])'
        raise ValueError(f'{source}: got {_described(images)}, not {wanted}; {IMAGES_EXPECTED}.')
    if len(images) == 0:
        raise ValueError(
            f'{source}: no images (an empty {"batch" if batch else "list"}); pass at least '
            f'one: {IMAGES_EXPECTED}.'
        )
    # A batch array is checked once: its images share its dtype and channels.
    for i, image in enumerate([images] if batch else images):
        found, advice = _image_problem(image, 4 if batch else 3)
        if advice:
            name = 'the batch' if batch else f'image {i}'
            raise ValueError(f'{source}: {name} is {found}; {advice}: {IMAGES_EXPECTED}.')


def check_padded_sizes(batch, sizes, source):
    """Raises ValueError in one line naming `source` unless `sizes` are the int `[B, 2]` (height,
    width) of the images of a checked padded `batch` `[B, H, W, 3]`, each within it and at least
    one pixel: wrong sizes would crop other pixels without an error."""
    sizes = np.asarray(sizes)
    height, width = batch.shape[1:3]
    if (
        sizes.shape != (len(batch), 2)
        or not np.issubdtype(sizes.dtype, np.integer)
        or np.any(sizes < 1)
        or np.any(sizes > [height, width])
    ):
        raise ValueError(
            f'{source}: image sizes {sizes.tolist()!s:.200} are not {len(batch)} integer '
            f'(height, width) pairs within the batch\'s {height}x{width}; pass each image\'s own '
            f'size, [B, 2].'
        )


def fixed_input_size(shape):
    """(height, width) of a model's image input of `shape` `[B, H, W, 3]` (a list; None or a
    negative number for a free dimension) where both are static, the input of a model exported
    with --fixed_size; else None (any size, or no shape known)."""
    if shape is None or len(shape) != 4:
        return None
    height, width = (None if d is None or int(d) < 0 else int(d) for d in shape[1:3])
    return (height, width) if height and width else None


class WrongSizeError(ValueError):
    """Images of a size other than a model exported with --fixed_size takes
    (`check_fixed_size`): that model cannot run them."""


def check_fixed_size(sizes, fixed_size, source):
    """Raises WrongSizeError in one line naming `source` (the model's file) unless every
    (height, width) of `sizes` is `fixed_size`, the one size of a model exported with
    --fixed_size (`fixed_input_size`; None: any size, nothing checked). Every detector checks
    its images here before running them: the runtimes' own errors on another size say nothing
    of why (TF: "Cannot feed value of shape", TFLite: an XNNPack reshape error)."""
    if fixed_size is None:
        return
    wrong = sorted({(int(h), int(w)) for h, w in sizes} - {tuple(fixed_size)})
    if wrong:
        height, width = fixed_size
        got = texts.listed([f'{h}x{w}' for h, w in wrong], 5)
        raise WrongSizeError(
            f'{source} was exported with --fixed_size: it takes {height}x{width} (height x '
            f'width) images only; got {got}. Resize them to {height}x{width} first, '
            f'or export the model without --fixed_size to detect on images of any size.'
        )


def _described(value):
    if isinstance(value, np.ndarray):
        return f'{value.dtype} of shape {list(value.shape)}'
    return f'a {type(value).__name__}'


def _image_problem(image, ndim):
    """(what `image` is, what to do about it): the advice None when it is a uint8 RGB array of
    `ndim` dimensions (3: an image, 4: a batch) with pixels."""
    found = _described(image)
    if not isinstance(image, np.ndarray):
        return f'{found}, not a numpy array', 'convert it with np.asarray(image)'
    channels = image.shape[-1] if image.ndim == ndim else None
    if (ndim == 3 and image.ndim == 2) or channels == 1:
        return f'{found}, gray', 'convert it to RGB, e.g. cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)'
    if channels == 4:
        return (
            f'{found}, 4 channels',
            'drop the alpha channel, e.g. cv2.cvtColor(image, cv2.COLOR_RGBA2RGB) '
            "(COLOR_BGRA2RGB for OpenCV's BGRA)",
        )
    if channels != 3:
        return found, f'pass arrays [{"B, " if ndim == 4 else ""}H, W, 3]'
    if image.size == 0:
        return f'{found}, no pixels', 'pass images of one pixel or more'
    if np.issubdtype(image.dtype, np.floating):
        peak = float(image.max())
        if peak <= 1.0:
            return f'{found}, which looks normalised (max {peak:g})', 'pass the decoded uint8 image'
        return (
            f'{found}, not normalised (max {peak:g})',
            'convert it with np.clip(image, 0, 255).astype(np.uint8)',
        )
    if image.dtype != np.uint8:
        return found, 'convert it to uint8 (image.astype(np.uint8) if its values are 0-255)'
    return found, None


def pad_batch(images):
    """List of uint8 `[H_i, W_i, 3]` -> (uint8 `[B, max H, max W, 3]` zero-padded at the bottom
    and right, int32 `[B, 2]` sizes)."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    batch = np.zeros((len(images), height, width, 3), np.uint8)
    for b, im in enumerate(images):
        batch[b, : im.shape[0], : im.shape[1]] = im
    return batch, np.array([im.shape[:2] for im in images], np.int32)


def split_detections(outputs):
    """Batched graph outputs -> per image `{'boxes' [n, 4] relative, 'scores' [n], 'classes' [n]
    int}` (padding rows dropped)."""
    result = []
    for b, n in enumerate(outputs['num_detections']):
        result.append(
            {
                'boxes': outputs['detection_boxes'][b, :n],
                'scores': outputs['detection_scores'][b, :n],
                'classes': outputs['detection_classes'][b, :n],
            }
        )
    return result


def _op_error_reason(err):
    """A tf.errors.OpError in one line (str): its type, node and `tf_errors.reason`."""
    node = '' if err.op is None else f' in node {err.op.name!r}'
    return f'{type(err).__name__}{node}: {tf_errors.reason(err)}'


class ModelRunError(ValueError):
    """A runtime failed running a model, or the model's outputs are not the interface's (the
    message names the model and why)."""


def check_outputs(outputs, batch_size, source, num_classes=None):
    """Raises ModelRunError unless `outputs` ({name: numpy array}, names from OUTPUTS) are what
    INTERFACE says for `batch_size` images: dtype, rank, `batch_size` rows, 4 box coordinates,
    0 <= num_detections <= the detection rows and, given the card's `num_classes` (background
    included), detection_classes in 1..num_classes - 1 in the rows below num_detections. A
    broken or hostile export's outputs would otherwise give tracebacks or wrong detections in
    the per-image code (class 99 was an IndexError naming the label, class -3 the name of
    label 3 through Python's negative indexing)."""
    for name, value in outputs.items():
        dtype, rank = INTERFACE[name]
        boxes = name in ('detection_boxes', 'raw_localisations')
        if (
            value.dtype != dtype.as_numpy_dtype
            or value.ndim != rank
            or value.shape[0] != batch_size
            or (boxes and value.shape[-1] != 4)
        ):
            raise ModelRunError(
                f"{source}: the model's output {name!r} for {batch_size} image(s) is "
                f'{value.dtype} of shape {list(value.shape)}, not {dtype.name} of rank {rank} '
                f'with {batch_size} rows{" of 4 coordinates" if boxes else ""}; export the model '
                f'again with export_ssd_network.py.'
            )
    rows = [outputs[n].shape[1] for n in DETECTION_OUTPUTS[:3] if n in outputs]
    counts = outputs.get('num_detections')
    if rows and counts is not None and (np.any(counts < 0) or np.any(counts > min(rows))):
        raise ModelRunError(
            f"{source}: the model's num_detections {counts.tolist()[:8]} are not within 0.."
            f'{min(rows)} (its detection rows); export the model again with export_ssd_network.py.'
        )
    if num_classes is not None and counts is not None and 'detection_classes' in outputs:
        _check_classes(outputs['detection_classes'], counts, num_classes, source)


def _check_classes(classes, counts, num_classes, source):
    """Raises ModelRunError unless the `classes` [B, N] of each image's first `counts` [B] rows
    are labels 1..num_classes - 1 (the padding rows after them may hold anything)."""
    real = classes[np.arange(classes.shape[1]) < counts[:, None]]
    bad = real[(real < 1) | (real >= num_classes)]
    if bad.size:
        raise ModelRunError(
            f"{source}: the model's detection_classes {np.unique(bad).tolist()[:8]} are not "
            f'within 1..{num_classes - 1} (the classes of its model card, the background 0 '
            f'left out); export the model again with export_ssd_network.py.'
        )


class Detector:
    """One graph and one session for a whole run; see the module docstring.

    Attributes:
      card: the ModelCard; inputs / outputs: {name: tensor} of the graph; checkpoint: the
      restored checkpoint prefix (`from_checkpoint`; a directory resolved), else None; source:
      the model's file or folder (the checkpoint prefix), named in errors; export_step: an
      export's checkpoint step (its metadata's), or None (a checkpoint, or not recorded); note:
      a line for the log where the metadata could not be checked against the model
      (`card.unchecked_note`), else None; card_source: where the card was read (an export's
      metadata.json, the frozen graph holding it, the checkpoint's card), named in messages
      about it; fixed_size: (height, width), the one image size of
      an export with --fixed_size (its input's static size; other sizes are refused,
      `check_fixed_size`), else None.
    """

    def __init__(
        self,
        graph,
        sess,
        card,
        inputs,
        outputs,
        checkpoint=None,
        source=None,
        export_step=None,
        note=None,
        card_source=None,
    ):
        self.graph, self.sess, self.card = graph, sess, card
        self.card_source = card_source
        self.inputs, self.outputs = inputs, outputs
        shape = inputs[INPUT].shape
        self.fixed_size = fixed_input_size(None if shape.rank is None else shape.as_list())
        self.checkpoint = checkpoint
        self.source = source or checkpoint
        self.export_step = export_step
        self.note = note

    @classmethod
    def from_checkpoint(
        cls, card, checkpoint_path, batch_size=None, card_path=None, moving_average_decay=None
    ):
        graph = tf.Graph()
        with graph.as_default():
            endpoints = build_detection_graph(card, batch_size)
            sess = v1.Session(graph=graph)
            prefix = restore_variables(sess, checkpoint_path, card_path, moving_average_decay)
        return cls(
            graph, sess, card, endpoints.inputs, endpoints.outputs, prefix, card_source=card_path
        )

    @classmethod
    def from_saved_model(cls, export_dir):
        """A SavedModel of `export_ssd_network.py` (its `serving_padded` signature). Its ops are
        checked before loading (`graph_check.check_saved_model`: a SavedModel is code), and its
        variables' files to be regular files. An unfinished export's folder is refused
        (`card.check_export_finished`)."""
        card_lib.check_export_finished(export_dir)
        graph_check.check_saved_model(export_dir, signature_names=[PADDED_SIGNATURE])
        # The loader reads variables/ with TF's checkpoint reader, which waited on a FIFO forever.
        problem = checkpoints.irregular_file(os.path.join(export_dir, 'variables', 'variables'))
        if problem:
            raise ValueError(
                f'{problem}; a SavedModel is read from regular files only: export the model again.'
            )
        # Its own assets.extra/metadata.json, checked against its files before the (seconds
        # long) load and against its outputs after it.
        meta, meta_path = card_lib.read_export_metadata(export_dir)
        graph = tf.Graph()
        sess = v1.Session(graph=graph)
        try:
            with graph.as_default(), deprecation.silence():  # the v1 loader: see `freeze`
                meta_graph = v1.saved_model.loader.load(
                    sess, [v1.saved_model.tag_constants.SERVING], export_dir
                )
            if PADDED_SIGNATURE not in meta_graph.signature_def:
                raise ValueError(
                    f'{export_dir}: no {PADDED_SIGNATURE!r} signature (signatures: '
                    f'{sorted(meta_graph.signature_def)}); export it with '
                    f'export_ssd_network.py.'
                )
            signature = meta_graph.signature_def[PADDED_SIGNATURE]

            def tensors(infos):
                try:
                    return {k: graph.get_tensor_by_name(v.name) for k, v in infos.items()}
                except (KeyError, ValueError) as err:  # a name of no tensor, or not a tensor's
                    raise ValueError(
                        f'{export_dir}: the {PADDED_SIGNATURE!r} signature names a tensor the '
                        f'graph does not hold ({tf_errors.reason(err)}); export it with '
                        f'export_ssd_network.py.'
                    ) from None

            inputs, outputs = tensors(signature.inputs), tensors(signature.outputs)
            graph_check.check_interface(inputs | outputs, export_dir, 'SavedModel', INTERFACE)
            card = card_lib.from_dict(meta, meta_path)
            card_lib.check_model_outputs(
                meta, meta_path, export_dir, _static_shape(outputs['raw_scores']), card
            )
        except BaseException:
            sess.close()
            raise
        return cls(
            graph,
            sess,
            card,
            inputs,
            outputs,
            source=export_dir,
            export_step=card_lib.export_step(meta, meta_path),
            note=card_lib.unchecked_note(meta, meta_path, export_dir),
            card_source=meta_path,
        )

    @classmethod
    def from_frozen_graph(cls, path):
        """A frozen GraphDef; its metadata is `metadata.json` beside it, else the card inside it
        (`card.resolve_export_metadata`, `embedded_card`). Its ops are checked before
        importing, its INTERFACE after (`graph_check.check_frozen_graph`: a graph is code), in
        the graph then run. An unfinished export's folder is refused
        (`card.check_export_finished`)."""
        card_lib.check_export_finished(path)
        graph_def = v1.GraphDef()
        data = safe_io.read_bytes(path, safe_io.SERIALIZED_MODEL_LIMIT, 'frozen graph')
        if not data:  # parses as a GraphDef without nodes
            raise ValueError(
                f'{path}: an empty file (0 bytes), not a frozen GraphDef; export one with '
                f'export_ssd_network.py.'
            )
        try:
            graph_def.ParseFromString(data)
        except message.DecodeError as err:
            raise ValueError(
                f'{path}: not a frozen GraphDef ({err}); export one with export_ssd_network.py.'
            ) from None
        graph = graph_check.check_frozen_graph(graph_def, path, INTERFACE)

        def tensor(name):
            return graph.get_tensor_by_name(name + ':0')

        # Beside the graph (checked against the bytes parsed, not a second read), else the
        # graph's own card.
        meta, source, note = card_lib.resolve_export_metadata(
            path,
            lambda: embedded_card.from_graph_def(graph_def),
            'frozen graph',
            contents={path: data},
        )
        card = card_lib.from_dict(meta, source)
        card_lib.check_model_outputs(meta, source, path, _static_shape(tensor('raw_scores')), card)
        return cls(
            graph,
            v1.Session(graph=graph),
            card,
            {n: tensor(n) for n in (INPUT, SIZES)},
            {n: tensor(n) for n in OUTPUTS},
            source=path,
            export_step=card_lib.export_step(meta, source),
            note=note,
            card_source=source,
        )

    def run(self, images, outputs=DETECTION_OUTPUTS):
        """Batched outputs (numpy) for a list of uint8 RGB images `[H_i, W_i, 3]` (anything else:
        ValueError, `check_images`)."""
        check_images(images, self.source)
        return self._run_padded(*pad_batch(images), outputs)

    def run_padded(self, batch, sizes, outputs=DETECTION_OUTPUTS):
        """Batched outputs for a zero-padded uint8 batch `[B, H, W, 3]` and its int32 sizes
        `[B, 2]` (height, width of each image at the top left). A batch of more padded pixels
        than MAX_BATCH_PIXELS runs in parts (`padded_parts`), unless the model's input has a
        static batch size B (an export with --batch_size): then it runs in parts of B images,
        the last one filled up with copies of its last image (their outputs dropped).
        Raises ModelRunError when TensorFlow fails running the graph, WrongSizeError for images
        of another size than a --fixed_size export takes, ValueError for another batch
        (`check_images`)."""
        check_images(batch, self.source, padded=True)
        check_padded_sizes(batch, sizes, self.source)
        return self._run_padded(batch, sizes, outputs)

    def _run_padded(self, batch, sizes, outputs):
        """`run_padded` of a checked batch (its images and sizes checked once per call)."""
        sizes = np.asarray(sizes)
        check_fixed_size(sizes, self.fixed_size, self.source)
        shape = self.inputs[INPUT].shape
        static = None if shape.rank is None else tf.compat.dimension_value(shape[0])
        if static is not None:  # parts of its images, each cropped to its largest one
            parts = [
                (start, min(start + static, len(sizes)), *np.max(sizes[start : start + static], 0))
                for start in range(0, len(sizes), static)
            ]
        else:
            parts = padded_parts(sizes)
        results = [
            self._run_part(batch[start:end, :height, :width], sizes[start:end], outputs, static)
            for start, end, height, width in parts
        ]
        if len(results) == 1:
            return results[0]
        for name in outputs:
            shapes = {r[name].shape[1:] for r in results}
            if len(shapes) > 1:
                raise ModelRunError(
                    f"{self.source}: the model's output {name!r} has shapes "
                    f'{sorted(list(s) for s in shapes)} per image in parts of one batch, not '
                    f'one; export the model again with export_ssd_network.py.'
                )
        return {name: np.concatenate([r[name] for r in results]) for name in outputs}

    def _run_part(self, batch, sizes, outputs, static=None):
        """Outputs of a batch; with `static` (the model's static batch size), a batch of fewer
        images is filled up with copies of its last image, whose outputs are dropped."""
        count = len(batch)
        if static is not None and count < static:
            batch = np.concatenate([batch, np.repeat(batch[-1:], static - count, axis=0)])
            sizes = np.concatenate([sizes, np.repeat(sizes[-1:], static - count, axis=0)])
        try:
            result = self.sess.run(
                {k: self.outputs[k] for k in outputs},
                {self.inputs[INPUT]: batch, self.inputs[SIZES]: sizes},
            )
        except tf.errors.OpError as err:
            if isinstance(err, tf.errors.ResourceExhaustedError):
                hint = 'out of memory: detect fewer or smaller images at a time'
            elif self.checkpoint is None:
                hint = 'if it fails on every batch, export it again with export_ssd_network.py'
            else:
                hint = 'the graph is built by this code: please report this error'
            raise ModelRunError(
                f'{self.source}: TensorFlow failed running the model on a batch of shape '
                f'{list(batch.shape)} ({_op_error_reason(err)}); {hint}.'
            ) from None
        check_outputs(result, len(batch), self.source, self.card.num_classes)
        return {name: value[:count] for name, value in result.items()}

    def detect(self, images):
        """Per-image detections (see `split_detections`) for a list of uint8 RGB images."""
        return split_detections(self.run(images))

    def close(self):
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _static_shape(tensor):
    """A graph tensor's static shape as a list (None for unknown dimensions; [] unknown rank)."""
    return [] if tensor.shape.rank is None else tensor.shape.as_list()


EXPORTED_KINDS = ('openvino_model', 'frozen_graph', 'tflite_model', 'saved_model_dir')


def saved_model_folder(path):
    """The SavedModel folder whose graph file `path` is (`saved_model.pb` beside `variables/`),
    else None: that file alone is no model (read as a frozen graph it is "corrupt")."""
    folder = os.path.dirname(path) or '.'
    if os.path.basename(path) == 'saved_model.pb' and os.path.isdir(
        os.path.join(folder, 'variables')
    ):
        return folder
    return None


# The file types of export_ssd_network.py's model files.
_EXPORT_FILE_KINDS = {
    suffix: kind for kind, (suffix, _) in checkpoints.EXPORT_KINDS.items() if suffix
}


def file_kind(path):
    """The kind of an export by its file type: 'openvino_model' (.xml), 'frozen_graph' (.pb),
    'tflite_model' (.tflite) or 'saved_model_dir' (a folder with saved_model.pb); None where its
    file type is none of an export's."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, 'saved_model.pb')):
        return 'saved_model_dir'
    return _EXPORT_FILE_KINDS.get(os.path.splitext(path)[1].lower())


def exports_in(folder):
    """{path: kind} of the exports (`file_kind`: model files, SavedModel folders) in `folder`,
    by name; {} where it cannot be listed."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return {}
    found = {}
    for name in names:
        path = os.path.join(folder, name)
        kind = file_kind(path)
        if kind == 'saved_model_dir' or (kind is not None and os.path.isfile(path)):
            found[path] = kind
    return found


def exported_model_kind(path):
    """`file_kind` of `path`; ValueError where its file type is none of an export's, naming the
    model files beside it (an export's other files: an IR's .bin, metadata.json)."""
    kind = file_kind(path)
    if kind is None:
        folder = os.path.dirname(path) or '.'
        beside = [
            m
            for m, k in exports_in(folder).items()
            if k != 'saved_model_dir' and os.path.basename(m) != os.path.basename(path)
        ]
        hint = f'; the model files beside it: {texts.listed(beside, 5)}' if beside else ''
        raise ValueError(
            f'{path}: not an export of export_ssd_network.py by its file type '
            f'({checkpoints.export_kinds_text()}){hint}.'
        )
    return kind


def open_exported_model(
    path, kind=None, openvino_precision='fp32', num_threads=None, openvino_requests=1
):
    """A detector (`run`, `run_padded`, `detect`, `card`, `fixed_size`, `close`) of an OpenVINO
    model, frozen graph, SavedModel or TFLite model (`kind` as `exported_model_kind`, default: by
    file type). `fixed_size`: (height, width) of a model exported with --fixed_size, which takes
    that size only (`check_fixed_size`), else None.
    OpenVINO is imported only for an OpenVINO model; `openvino_requests`: its `num_requests` (0:
    throughput mode, for evaluation); `num_threads`: OpenVINO's and TFLite's threads."""
    kind = kind or exported_model_kind(path)
    if kind == 'openvino_model':
        from inference import openvino_model  # Lazy: TF-only runs never load openvino.

        return openvino_model.OpenVINODetector(
            path, openvino_precision, num_threads, openvino_requests
        )
    if kind == 'frozen_graph':
        return Detector.from_frozen_graph(path)
    if kind == 'saved_model_dir':
        return Detector.from_saved_model(path)
    return TFLiteImageDetector(path, num_threads)


def no_detection_note(select_threshold):
    """The line detect prints when no detection of any image scored above `select_threshold`: a
    briefly trained model's scores all lie below the default 0.5, and empty drawings with an
    empty detections.json read as a broken run. The value it suggests lies below the one given
    (0.2 after --select_threshold=0.2 read as a mistake); after 0 there is none lower."""
    note = f'note: no detection scored above {select_threshold:g} (--select_threshold) in any image'
    if select_threshold > 0:
        note += (
            f': a briefly trained model scores lower; a lower --select_threshold (e.g. '
            f'{min(0.2, select_threshold / 2):g}) shows its weaker detections'
        )
    return note


@contextlib.contextmanager
def without_interpreter_notice():
    """Creating a `tf.lite.Interpreter` in this block does not warn that the interpreter moves
    to the ai_edge_litert package: it is still in the TF this project pins, and the notice says
    nothing about the user's model."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            'ignore', r'\s*Warning: tf.lite.Interpreter is deprecated', UserWarning
        )
        yield


def check_tflite_ops(path, content):
    """Raises ValueError naming `path` when the model `content` has a custom op (Select TF ops,
    `Flex*`, are custom ops): our exports hold TFLite builtin ops only, and a custom op runs
    whatever its runtime links (a Flex-enabled one runs TF ops such as WriteFile). A buffer that
    is no TFLite model is left to TFLite's own verifier to report."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(content, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        custom = sorted(
            {
                (code.CustomCode() or b'?').decode('utf-8', 'replace')
                for code in codes
                if max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                == schema.BuiltinOperator.CUSTOM
            }
        )
    except Exception:  # noqa: BLE001 - any malformed flatbuffer: TFLite's verifier says which
        return
    if custom:
        raise ValueError(
            f'{path}: the model has custom ops ({texts.listed(custom, 10)}), which our TFLite '
            f'exports never hold (builtin ops only) and which may run any code their runtime '
            f'links (Select TF ops: file writes); refused: export it with export_ssd_network.py '
            f'--formats=tflite_float or tflite_int8.'
        )


# The blank run of `check_tflite_survives`: a real export's takes seconds (VGG SSD512, batch 8).
TFLITE_CHECK_SECS = 300
_CGROUP_LIMITS = ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes')


def _tflite_check_memory():
    """The address space a TFLite check child may add to this process': half the memory this
    process may use (the machine's, or its container's cgroup limit where lower). A model that
    allocates more there is refused instead of exhausting the machine."""
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    for limit_file in _CGROUP_LIMITS:
        try:
            with open(limit_file) as f:
                memory = min(memory, int(f.read()))
        except (OSError, ValueError):  # none, or 'max'
            pass
    return memory // 2


def _address_space():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmSize:'):
                return int(line.split()[1]) * 1024
    return 0


def _is_allocation_failure(err):
    """An error of a TFLite run at the memory limit: numpy's or TFLite's own (which also
    returns from allocate_tensors without its arena, leaving tensors 'unallocated')."""
    return isinstance(err, MemoryError) or 'alloc' in str(err).lower()


def check_tflite_survives(path, content, num_threads=None):
    """Raises ValueError naming `path` when TFLite kills the process that loads the model
    `content`, allocates its tensors and runs it once on zeros (some malformed models, an int8
    tensor of quantisation scale 0, crash TFLite's C++: SIGSEGV, SIGABRT, which no exception
    catches), when that run does not end within TFLITE_CHECK_SECS (a loop that never ends), or
    when it runs out of the memory `_tflite_check_memory` gives it (a tiny file can declare huge
    tensors). Tried in a forked child, which ends with its parent (Ctrl-C, a kill) or at the
    time limit; its other exceptions are left to the caller's own load to report. On Linux only:
    elsewhere forking a process that has loaded TF is not safe (macOS's system frameworks) or
    not possible (Windows), and nothing is tried."""
    if not sys.platform.startswith('linux'):
        return
    import ctypes
    import resource  # Unix only

    memory = _tflite_check_memory()
    # Looked up before the fork: a forked child of a threaded process may deadlock in dlopen.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    # Ctrl-C and SIGTERM wait, from before the pipe until each side is in the `try` that ends it:
    # one raised in the child before that ran the parent's cleanup there; one in the parent, its
    # child on without it.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, signals.STOPS)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            # Killed when the parent dies (prctl PR_SET_PDEATHSIG = 1): a SIGTERM or SIGKILL of
            # the parent left it running a model that never ends.
            prctl(1, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # it died before that
                os._exit(1)
            # Ctrl-C or SIGTERM ends it at once: the handlers it inherited (`logs.run`'s
            # cleanup and last line) are the parent's.
            for signum in signals.STOPS:
                signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            faulthandler.disable()  # its crash is the parent's one-line error, not a dump
            quiet = os.open(os.devnull, os.O_WRONLY)  # the parent's load prints TFLite's lines
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            limit = _address_space() + memory
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            with without_interpreter_notice():
                interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
            try:
                interpreter.allocate_tensors()
                for detail in interpreter.get_input_details():
                    blank = np.zeros(detail['shape'], detail['dtype'])
                    interpreter.set_tensor(detail['index'], blank)
                interpreter.invoke()
            except (RuntimeError, ValueError, MemoryError) as err:
                if _is_allocation_failure(err):
                    os.write(write_end, (str(err) or type(err).__name__).encode()[:4000])
                    status = 3
                raise
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        status = _wait_for_child(
            pid,
            TFLITE_CHECK_SECS,
            f'note: {path}: still checking the model (TFLite runs it once on a blank input, in a '
            f'child process stopped after {TFLITE_CHECK_SECS} s)',
            mask,
        )
        reason = os.read(read_end, 4000).decode('utf-8', 'replace')
    finally:
        os.close(read_end)
    again = 'export it again with export_ssd_network.py --formats=tflite_float or tflite_int8.'
    if status is None:
        raise ValueError(
            f'{path}: TFLite did not finish running it once on a blank input within '
            f'{TFLITE_CHECK_SECS} s, in a child process (stopped): a loop that never ends (a '
            f'damaged model, or one no TFLite converter wrote) or a model far too slow for this '
            f'machine; {again}'
        )
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        why = ' (out of memory?)' if signum == signal.SIGKILL else ''
        raise ValueError(
            f'{path}: TFLite crashed ({signal.Signals(signum).name}{why}) loading it and running '
            f'it once on a blank input, in a child process; it is damaged or was not written by a '
            f'TFLite converter: {again}'
        )
    if os.WEXITSTATUS(status) == 3:
        raise ValueError(
            f'{path}: TFLite ran out of memory loading it and running it once on a blank input '
            f'({reason.strip()}), in a child process given {memory / 2**30:.1f} GiB (half of '
            f'what this process may use); a tiny file can declare huge tensors. For an export of '
            f'ours, export it again with a smaller --tflite_batch_size; else {again}'
        )


# After this long a wait for a child says so: a silent 300 s looks like a hang.
_WAIT_NOTICE_SECS = 10


def _wait_for_child(pid, seconds, notice, mask):
    """The child's wait status, or None when it ran `seconds` (then killed); `notice` goes to
    stderr once the wait is _WAIT_NOTICE_SECS long. Killed too when the wait ends by an
    exception (Ctrl-C): it must not go on running after its parent. `mask`: the signal mask put
    back once that holds (the fork blocked Ctrl-C and SIGTERM)."""
    start, done, noticed = time.monotonic(), False, False
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        while True:
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                done = True
                return status
            waited = time.monotonic() - start
            if waited > seconds:
                return None
            if waited > _WAIT_NOTICE_SECS and not noticed:
                print(notice, file=sys.stderr, flush=True)
                noticed = True
            time.sleep(0.02)
    finally:
        if not done:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):  # reaped already
                pass


class TFLiteDetector:
    """A `.tflite` export run by the stock `tf.lite.Interpreter`.

    Its input is `images` uint8 `[B, H, W, 3]` with a batch size fixed at export; H and W are
    free (the input is resized to the images' size when it changes), the images of one call
    share one size; `fixed_size`: (H, W) of a model exported with --fixed_size, which takes that
    size only, else None.
    """

    def __init__(self, path, num_threads=None):
        self.path = path
        content = safe_io.read_bytes(path, safe_io.SERIALIZED_MODEL_LIMIT, 'TFLite model')
        if not content:  # TFLite's message: "`model_path` or `model_content` must be specified"
            raise ValueError(
                f'{path}: an empty file (0 bytes), not a TFLite model; export it with '
                f'export_ssd_network.py --formats=tflite_float or tflite_int8.'
            )
        check_tflite_ops(path, content)
        check_tflite_survives(path, content, num_threads)
        self.content = content  # the bytes loaded (the interpreter holds them anyway)
        try:
            with without_interpreter_notice():
                self.interpreter = tf.lite.Interpreter(
                    model_content=content, num_threads=num_threads
                )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ValueError(
                f'{path}: TFLite cannot load it as a model ({err}); export it with '
                f'export_ssd_network.py --formats=tflite_float or tflite_int8.'
            ) from None
        self._input = self.interpreter.get_input_details()[0]
        self.batch_size = int(self._input['shape'][0])
        self._outputs = {d['name']: d['index'] for d in self.interpreter.get_output_details()}
        missing = sorted(set(DETECTION_OUTPUTS) - set(self._outputs))
        if missing:
            raise ValueError(
                f'{path}: no output(s) {missing} (outputs: {sorted(self._outputs)}); '
                f'export it with export_ssd_network.py.'
            )
        self._shape = tuple(self._input['shape'])
        # (height, width) of a model exported with --fixed_size: its input's static size (the
        # shape signature has -1 for a free dimension), else None.
        self.fixed_size = fixed_input_size(
            list(self._input.get('shape_signature', self._input['shape']))
        )

    def run(self, images, outputs=DETECTION_OUTPUTS):
        check_images(images, self.path)
        check_fixed_size([im.shape[:2] for im in images], self.fixed_size, self.path)
        if len(images) != self.batch_size or len({im.shape for im in images}) != 1:
            raise ValueError(
                f'{self.path}: this TFLite model takes {self.batch_size} image(s) of one size '
                f'per call; got sizes {[im.shape for im in images]}.'
            )
        batch = np.stack(images)
        try:
            if batch.shape != self._shape:
                self.interpreter.resize_tensor_input(self._input['index'], batch.shape)
                self.interpreter.allocate_tensors()
                self._shape = batch.shape
            self.interpreter.set_tensor(self._input['index'], batch)
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as err:
            raise ModelRunError(
                f'{self.path}: the TFLite runtime failed on a batch of shape {list(batch.shape)} '
                f'({err}).'
            ) from None
        result = {k: self.interpreter.get_tensor(self._outputs[k]) for k in outputs}
        check_outputs(result, len(batch), self.path)
        return result

    def detect(self, images):
        return split_detections(self.run(images))


class TFLiteImageDetector:
    """A `.tflite` export with its card, as `open_exported_model` gives the other kinds: `card`,
    `fixed_size`, `run`, `run_padded` (evaluation), `detect`, `close`, a context manager;
    `precision`: 'int8' where the model holds int8 tensors (a tflite_int8 export's net), else
    'float32'; `note`, `card_source`: as `Detector`'s.

    A TFLite model's batch size B is static (the interpreter's input shape, as metadata
    `input.tflite_batch_size` records) and the images of one call must share one size. Each image
    therefore runs alone, repeated B times, and the first result is kept. This is simpler than
    grouping same-size images and padding the last group, an image's detections never depend on
    the other images of the run, and the default export (B = 1) wastes nothing; a model exported
    with B > 1 does B times the work per image here.
    """

    def __init__(self, path, num_threads=None):
        self.model = TFLiteDetector(path, num_threads)
        content = self.model.content
        meta, source, self.note = card_lib.resolve_export_metadata(
            path,
            lambda: embedded_card.from_tflite(content),
            'TFLite model',
            contents={path: content},
        )
        self.card_source = source
        scores = next(
            (
                d['shape_signature']
                for d in self.model.interpreter.get_output_details()
                if d['name'] == 'raw_scores'
            ),
            [],
        )
        # TFLite has no bfloat16/float16 kernels: its models compute in float32 (the int8 one's
        # net in int8) whatever the exported card says (export.tflite_model).
        self.card = card_lib.from_dict(meta, source).replace(compute_dtype='float32')
        card_lib.check_model_outputs(meta, source, path, list(scores), self.card)
        self.export_step = card_lib.export_step(meta, source)
        self.fixed_size = self.model.fixed_size  # checked in `run`
        self.path = path
        tensors = self.model.interpreter.get_tensor_details()
        self.precision = 'int8' if any(t['dtype'] == np.int8 for t in tensors) else 'float32'

    def run(self, images, outputs=DETECTION_OUTPUTS):
        """Batched outputs (numpy) for a list of uint8 RGB images `[H_i, W_i, 3]`."""
        check_images(images, self.path)
        check_fixed_size([im.shape[:2] for im in images], self.fixed_size, self.path)
        firsts = [self.model.run([im] * self.model.batch_size, outputs) for im in images]
        result = {k: np.concatenate([out[k][:1] for out in firsts]) for k in outputs}
        check_outputs(result, len(images), self.path, self.card.num_classes)
        return result

    def run_padded(self, batch, sizes, outputs=DETECTION_OUTPUTS):
        """Batched outputs for a zero-padded uint8 batch `[B, H, W, 3]` and its int32 sizes
        `[B, 2]`: each image is run at its own size."""
        check_images(batch, self.path, padded=True)
        check_padded_sizes(batch, sizes, self.path)
        return self.run([image[:h, :w] for image, (h, w) in zip(batch, sizes)], outputs)

    def detect(self, images):
        """Per-image detections (`split_detections`) of uint8 RGB `[H_i, W_i, 3]`."""
        return split_detections(self.run(images))

    def close(self):
        """Nothing to release: the interpreter is freed with the object."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
def filter_detections(detections, select_threshold, keep_top_k):
    """One image's detections (arrays by key, best first) with scores > `select_threshold` (as
    the graph's post-processing and Caffe's DetectionOutput keep them), at most `keep_top_k` of
    them (None or <= 0: all, as in the model card)."""
    mask = detections['scores'] > select_threshold
    top = keep_top_k if keep_top_k is not None and keep_top_k > 0 else None
    return {k: v[mask][:top] for k, v in detections.items()}


# Inputs and outputs.


def expand_inputs(spec_text, outputs_in=None):
    """`--input` (comma-separated files, folders, globs) -> (sorted, de-duplicated paths, number
    of files skipped as earlier outputs, what its folders hold besides images and videos: a
    Counter of extension or 'folder', see `describe_others`).

    Folders give their image and video files (by extension, not recursive); globs give what
    they match; a file is kept whatever it holds (one that cannot be decoded is reported and
    skipped when the run reads it). An entry that does not exist (a typo), or a glob that
    matches nothing, is refused: ValueError naming them all, before any model loads.
    outputs_in: folder -> the resolved paths of the files in it that earlier runs wrote (outputs,
    not inputs): skipped where a folder or glob gives them; a file named alone is kept. Raises
    ValueError naming what the inputs hold when they give no file.
    """
    paths = {}  # ordered; a list's `in` made 100k inputs quadratic
    skipped = set()
    others = collections.Counter()  # what the folders hold besides images and videos
    outputs = {}  # folder -> outputs_in(folder), asked once per folder
    missing = []  # the entries that name nothing, with why
    for item in (s.strip() for s in spec_text.split(',')):
        if not item:
            continue
        if os.path.isdir(item):
            found = []
            for name in sorted(os.listdir(item)):
                path = os.path.join(item, name)
                if name.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
                    found.append(path)
                elif not name.startswith('.') and name != DETECTIONS_FILE:  # ours, hidden ones
                    kind = 'folder' if os.path.isdir(path) else os.path.splitext(name)[1].lower()
                    others[kind] += 1
        elif glob.has_magic(item) and not os.path.lexists(item):  # a file named `a[1].jpg`
            found = sorted(glob.glob(item))
            if not found:
                missing.append(f'{item} (the pattern matches no file)')
                continue
        elif os.path.lexists(item):  # a broken link too: reported as unreadable
            paths[item] = None
            continue
        else:
            missing.append(f'{item} (no such file or folder)')
            continue
        for path in found:
            folder = os.path.dirname(path) or '.'
            if folder not in outputs:
                outputs[folder] = outputs_in(folder) if outputs_in else ()
            if os.path.realpath(path) in outputs[folder]:
                skipped.add(path)
            else:
                paths[path] = None
    if missing:
        raise ValueError(
            f'--input: {"; ".join(missing)}; correct the path or leave it out of --input '
            f'(comma-separated image and video files, folders and globs).'
        )
    skipped -= paths.keys()  # also named alone
    if not paths:
        raise ValueError(_no_inputs(spec_text, others, len(skipped)))
    return list(paths), len(skipped), others


def describe_others(others):
    """The most common kinds of a Counter of expand_inputs, e.g. '12 .xml files, 1 folder', and
    how many other kinds there are."""

    def counted(kind_count):
        kind, count = kind_count
        return texts.counted(
            count, 'folder' if kind == 'folder' else f'{kind or "extensionless"} file'
        )

    return texts.listed(sorted(others.items(), key=lambda kv: (-kv[1], kv[0])), 5, counted)


def media_extensions_line():
    return (
        f'by extension: {" ".join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}; folders are not searched '
        f'recursively'
    )


def _no_inputs(spec_text, others, num_skipped):
    """Why `--input` gives no file: what counts, and the most common of what it holds instead."""
    found = (
        [texts.counted(num_skipped, 'output') + ' of earlier runs (skipped)'] if num_skipped else []
    )
    found += [describe_others(others)] if others else []
    return (
        f'--input={spec_text} holds no image or video file ({media_extensions_line()}); found '
        f'{", ".join(found) or "nothing"}.'
    )


def is_video(path):
    return path.lower().endswith(VIDEO_EXTENSIONS)


def too_many_pixels(width, height, limits=image_io.DEFAULT_LIMITS):
    """'<W>x<H> = <N> pixels, more than the limit of <max>' (str) when an image, or a video's
    frames, of width x height pixels must not be decoded (`limits.max_pixels`); else None."""
    if width * height > limits.max_pixels:
        return (
            f'{width}x{height} = {width * height} pixels, more than the limit of '
            f'{limits.max_pixels}'
        )
    return None


# A JPEG over the pixel limit is decoded at 1/f size by libjpeg's DCT scaling (`load_image`), the
# smallest f that fits. IMREAD_REDUCED_* turns the image by its EXIF orientation, which the
# full-size decode (IMREAD_UNCHANGED) ignores, as the converter and TensorFlow's decoders do;
# hence IMREAD_IGNORE_ORIENTATION.
_REDUCED_DECODES = {
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}
REDUCTIONS = tuple(_REDUCED_DECODES)


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An image file decoded for detection (`load_image`).

    rgb: uint8 `[h, w, 3]` RGB, what the net sees; height, width: the original image's size,
    which pixel coordinates (detections.json) refer to; reduction: 1 when `rgb` is full size
    (`h, w == height, width`), else f in REDUCTIONS: a JPEG over the pixel limit decoded at 1/f
    size, `h == ceil(height / f)`, `w == ceil(width / f)`; note: then one line saying so, for
    the log (else None).
    """

    rgb: np.ndarray
    height: int
    width: int
    reduction: int = 1
    note: object = None


def reduced_size(width, height, factor):
    """(width, height) of a JPEG of width x height pixels decoded at 1/factor size: libjpeg
    rounds up."""
    return -(-width // factor), -(-height // factor)


def reduction_for(width, height, limits=image_io.DEFAULT_LIMITS):
    """The smallest f in REDUCTIONS whose reduced decode (`reduced_size`) of a width x height
    JPEG holds at most `limits.max_pixels` pixels; None when even the smallest size does not."""
    for factor in REDUCTIONS:
        w, h = reduced_size(width, height, factor)
        if w * h <= limits.max_pixels:
            return factor
    return None


def _decode_rgb(path, data, factor=1):
    """uint8 `[H, W, 3]` RGB of image bytes (gray and alpha converted), a JPEG decoded at
    1/`factor` size (1 or in REDUCTIONS). A CMYK JPEG (4 components) is decoded as evaluation
    and `serving_encoded` decode it (`_tf_decoded_jpeg`); any other image by `cv2.imdecode`,
    whose pixels are theirs."""
    if image_io.sniff_format(data) == 'JPEG' and image_io.jpeg_components(data) == 4:
        return _tf_decoded_jpeg(path, data, factor)
    flags = cv2.IMREAD_UNCHANGED if factor == 1 else _REDUCED_DECODES[factor]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if image is None or image.size == 0:
        raise ValueError(f'{path}: not a decodable image ({len(data)} bytes).')
    try:
        bgr = image_io.to_bgr8(image)
    except image_io.BadImageError as err:
        raise ValueError(f'{path}: {err}.') from None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _tf_decoded_jpeg(path, data, factor):
    """uint8 RGB of a JPEG's bytes decoded at 1/`factor` size by `dataset_factory.decode_jpeg`
    (OpenCV converts CMYK to RGB with other rounding than TensorFlow: up to 2 levels apart, which
    changed low-score detections), in a graph of its own (`_jpeg_decoder`), so that it runs with
    eager execution on or off. Raises ValueError naming `path` when TensorFlow cannot decode the
    bytes."""
    sess, encoded, rgb = _jpeg_decoder(factor)
    try:
        return sess.run(rgb, {encoded: data})
    except tf.errors.OpError as err:
        why = tf_errors.reason(err).rstrip('.')
        raise ValueError(
            f'{path}: not a decodable image ({len(data)} bytes; a CMYK JPEG, which '
            f'TensorFlow\'s decoder refuses: {why}).'
        ) from None


_JPEG_DECODERS_LOCK = threading.Lock()


def _jpeg_decoder(factor):
    """(session, string placeholder, its decoded RGB) of `_tf_decoded_jpeg` at 1/`factor` size,
    built once per process: a graph and session per image made a 640x480 CMYK JPEG take 29 ms
    to decode instead of 12-22 (2 busy cores). Locked: threads loading images at once each
    built one the first time, all but one never closed."""
    with _JPEG_DECODERS_LOCK:
        return _built_jpeg_decoder(factor)


@functools.cache
def _built_jpeg_decoder(factor):
    graph = tf.Graph()
    with graph.as_default():
        encoded = v1.placeholder(tf.string, [])
        rgb = dataset_factory.decode_jpeg(encoded, factor)
    graph.finalize()
    return v1.Session(graph=graph), encoded, rgb


def load_image(path, limits=image_io.DEFAULT_LIMITS, allow_reduced=True):
    """An image file decoded for detection (LoadedImage), read as the converter reads images: a
    regular file of at most `limits.max_bytes`, its header read before decoding.

    An image whose header claims at most `limits.max_pixels` pixels is decoded at full size (gray
    and alpha converted to RGB; a CMYK JPEG as evaluation decodes it, `_decode_rgb`; EXIF
    orientation ignored, as the converter and TensorFlow's decoders ignore it). With
    `allow_reduced`, a sequential JPEG (`image_io.jpeg_coding`) over the limit is decoded at 1/f
    size by libjpeg's DCT scaling, the smallest f in REDUCTIONS that fits (`reduction_for`; EXIF
    orientation ignored as well); any other image over the limit is refused. Raises ValueError
    naming the file when it cannot be read, decoded or is refused.
    """
    try:
        data = safe_io.read_bytes(path, limits.max_bytes, 'image')
    except safe_io.UnsafeFileError as err:
        raise ValueError(str(err)) from None
    except OSError as err:
        raise ValueError(f'{path}: cannot read the file ({err.strerror}).') from None
    try:
        fmt, width, height = image_io.image_header_size(data)
    except image_io.BadImageError as err:
        raise ValueError(f'{path}: {err}.') from None
    problem = too_many_pixels(width, height, limits)
    if problem is None:
        rgb = _decode_rgb(path, data)
        return LoadedImage(rgb, *rgb.shape[:2])
    claims = f'{path}: the {fmt} header claims {problem}'
    if not allow_reduced:
        raise ValueError(f'{claims}; downscale the image.')
    if fmt != 'JPEG':
        raise ValueError(f'{claims}; only a JPEG can be decoded at a reduced size: downscale it.')
    coding = image_io.jpeg_coding(data)
    if coding != 'sequential':
        raise ValueError(
            f'{claims}; only a sequential single-scan JPEG (as cameras write) is decoded at a '
            f'reduced size within the limit, this one is {coding}: downscale the image.'
        )
    factor = reduction_for(width, height, limits)
    if factor is None:
        w, h = reduced_size(width, height, REDUCTIONS[-1])
        raise ValueError(
            f'{claims}, and at 1/{REDUCTIONS[-1]} size still {w}x{h} = {w * h}: downscale the '
            f'image.'
        )
    rgb = _decode_rgb(path, data, factor)
    w, h = reduced_size(width, height, factor)
    if rgb.shape[:2] != (h, w):  # pixel coordinates would be scaled wrongly
        raise ValueError(
            f'{path}: the JPEG header claims {width}x{height} pixels, but at 1/{factor} size it '
            f'decoded to {rgb.shape[1]}x{rgb.shape[0]}, not {w}x{h}; re-save the image.'
        )
    note = f'{path}: decoded at 1/{factor} size ({w}x{h}): the JPEG header claims {problem}'
    return LoadedImage(rgb, height, width, factor, note)


def load_image_rgb(path, limits=image_io.DEFAULT_LIMITS):
    """uint8 `[H, W, 3]` RGB of an image file at full size, so that pixel coordinates are the
    array's: `load_image` without reduced decoding (an image over `limits.max_pixels` pixels is
    refused)."""
    return load_image(path, limits, allow_reduced=False).rgb


def pixel_detections(detections, height, width, class_names, min_score=0.0, category_ids=None):
    """One image's detections (`split_detections`) -> JSON-ready list, best first.

    Each row: 'label' (class name), 'label_id' (the model's label 1..C-1), with `category_ids`
    (the card's: tuple of C-1 ints, label 1 first) 'category_id' (the label's external id, e.g.
    COCO's), 'score', 'xmin', 'ymin', 'xmax', 'ymax'. Coordinates are in pixels of the original
    image, clipped to it: `xmin = clip(box_xmin, 0, 1) * width`, etc. (continuous coordinates: the
    image spans [0, width] x [0, height]), as evaluation scores them (evaluation/input.py
    map_to_image) and as Caffe's saved detections, torchvision and the TF Object Detection API
    give them: unclipped, a user's mAP from these rows differed from the evaluation's. The boxes
    are relative to the image, so an image decoded at 1/f size (`LoadedImage`) takes its original
    height and width (to within f - 1 original pixels: libjpeg's last reduced row and column come
    from partial blocks).
    """
    rows = []
    for box, score, label in zip(detections['boxes'], detections['scores'], detections['classes']):
        if score < min_score:
            continue
        ymin, xmin, ymax, xmax = (float(v) for v in np.clip(box, 0.0, 1.0))
        rows.append(
            {
                'label': class_names[int(label) - 1],
                'label_id': int(label),
                **({} if category_ids is None else {'category_id': category_ids[int(label) - 1]}),
                'score': float(score),
                'xmin': xmin * width,
                'ymin': ymin * height,
                'xmax': xmax * width,
                'ymax': ymax * height,
            }
        )
    return rows


def image_record(path, output, image, detections, class_names, category_ids=None):
    """detect_ssd_network.py's `detections.json` entry of an image: its file, its annotated
    output, the original image's height and width and its `pixel_detections` in original pixels
    (`image`: the LoadedImage detected on, maybe decoded reduced; `category_ids`: the card's)."""
    return {
        'file': path,
        'output': output,
        'height': image.height,
        'width': image.width,
        'detections': pixel_detections(
            detections, image.height, image.width, class_names, category_ids=category_ids
        ),
    }
