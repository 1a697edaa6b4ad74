"""A PNG grid of preprocessed samples with their boxes and class names (`show_augmentation.py`
is the command).

Boxes are drawn in the class's colour with its name; difficult objects get a "*" and a thin box.
The drawing part (`render_grid`) takes a function building any `tf.data.Dataset` of example dicts
(`image` uint8 [H, W, 3], `labels` int64 [N], `bboxes` float32 [N, 4] relative yx, optional
`difficult` [N]), so it works on converted datasets and on datasets built in memory.
"""

import math
import os
import zlib

import cv2
import numpy as np
import tensorflow as tf

from datasets import folders
from preprocessing.seeds import example_seed
from tf_extended import atomic_io


def augmented_examples(examples, pipeline, out_shape, is_training, seed=None, **options):
    """Maps example dicts through `pipeline`; yields dicts of display-ready tensors.

    Returns:
      tf.data.Dataset of dicts: `image` float32 [h, w, 3] RGB 0-255 (de-normalised), `labels`,
      `bboxes` (relative to the output), `difficult` (zeros when the examples have none).
    """

    def apply(index, example):
        difficult = example.get('difficult', tf.zeros_like(example['labels']))
        kwargs = dict(options, difficult=difficult)
        if is_training:
            kwargs['seed'] = None if seed is None else example_seed(seed, index)
        outputs = pipeline(
            example['image'], example['labels'], example['bboxes'], out_shape, is_training, **kwargs
        )
        return {
            'image': pipeline.denormalize(outputs[0]),
            'labels': outputs[1],
            'bboxes': outputs[2],
            'difficult': outputs[-1],
        }

    return examples.enumerate().map(apply)


def _class_color(label):
    """A stable, saturated RGB colour per class id."""
    hue = (int(label) * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def draw_sample(image, labels, bboxes, difficult, labels_to_names):
    """uint8 RGB copy of `image` (float 0-255 [h, w, 3]) with boxes and class names drawn."""
    canvas = np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    height, width = canvas.shape[:2]
    for label, box, hard in zip(labels, bboxes, difficult):
        y0, x0, y1, x1 = np.round(box * [height, width, height, width]).astype(int)
        color = _class_color(label)
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), color, 1 if hard else 2)
        name = labels_to_names.get(int(label), str(int(label))) + ('*' if hard else '')
        cv2.putText(
            canvas,
            name,
            (x0 + 2, max(y0 + 12, 12)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            color,
            1,
            cv2.LINE_AA,
        )
    return canvas


def make_grid(images, num_cols=None, gap=4):
    """Tiles uint8 `[h, w, 3]` images row by row on a white background, each in a cell of the
    largest height and width, top left (the evaluation input without resizing keeps each
    image's size)."""
    num_cols = num_cols or math.ceil(math.sqrt(len(images)))
    num_rows = math.ceil(len(images) / num_cols)
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    grid = np.full(
        (num_rows * (height + gap) + gap, num_cols * (width + gap) + gap, 3), 255, np.uint8
    )
    for i, image in enumerate(images):
        top = gap + (i // num_cols) * (height + gap)
        left = gap + (i % num_cols) * (width + gap)
        grid[top : top + image.shape[0], left : left + image.shape[1]] = image
    return grid


def render_grid(
    make_examples,
    pipeline,
    labels_to_names,
    num_samples,
    out_shape,
    is_training=True,
    seed=None,
    **options,
):
    """Runs `num_samples` examples through `pipeline` and returns the uint8 RGB grid.

    Args:
      make_examples: no-argument function returning the `tf.data.Dataset` of example dicts; it
        is called inside the graph that `render_grid` builds and runs (tf.compat.v1 session).
      labels_to_names: dict class id -> name (ids missing from it are drawn as numbers).
      seed: int for a reproducible training augmentation (per-example seeds), or None.
      options: pipeline options.
    """
    with tf.Graph().as_default():
        dataset = augmented_examples(
            make_examples().take(num_samples), pipeline, out_shape, is_training, seed, **options
        )
        next_sample = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        drawn = []
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    sample = session.run(next_sample)
                except tf.errors.OutOfRangeError:
                    break
                drawn.append(
                    draw_sample(
                        sample['image'],
                        sample['labels'],
                        sample['bboxes'],
                        sample['difficult'],
                        labels_to_names,
                    )
                )
    if not drawn:
        raise ValueError('the dataset yielded no example to draw.')
    return make_grid(drawn)


_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# A tEXt chunk right after the header (IHDR: 25 bytes) marks the grids this tool wrote: only they
# are replaced, not a user's own PNG named by mistake.
_MARK = b'Software\x00show_augmentation.py'
_MARK_CHUNK = (
    len(_MARK).to_bytes(4, 'big') + b'tEXt' + _MARK + zlib.crc32(b'tEXt' + _MARK).to_bytes(4, 'big')
)
_IHDR_END = len(_PNG_SIGNATURE) + 25
# Side and total pixels of the samples drawn: a 40000x40000 --image_size asked for 19 GB each.
MAX_SIDE = 4096
MAX_GRID_PIXELS = 100_000_000


def check_grid_size(num_samples, out_shape):
    """Raises ValueError unless 1 <= num_samples, each side of `out_shape` (height, width) is in
    1..MAX_SIDE and the samples hold at most MAX_GRID_PIXELS pixels."""
    height, width = out_shape
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(
            f'--image_size={height} {width}: each side must be 1 to {MAX_SIDE} pixels.'
        )
    if num_samples < 1 or num_samples * height * width > MAX_GRID_PIXELS:
        raise ValueError(
            f'--num_samples={num_samples} of {height}x{width}: give 1 to '
            f'{max(MAX_GRID_PIXELS // (height * width), 1)} samples at that size (at most '
            f'{MAX_GRID_PIXELS} pixels in all).'
        )


def check_png_output(path):
    """Raises FileExistsError unless `path` is free or a grid this tool wrote (`write_png`'s
    mark): a wrong --output, e.g. a shard, a checkpoint file of the data shown or the user's own
    picture, must not be replaced; raises ValueError for another extension than .png (it wrote
    PNG bytes into `aug.jpg`)."""
    if os.path.lexists(path):
        head = b''
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, 'rb') as f:
                head = f.read(_IHDR_END + len(_MARK_CHUNK))
        if not head.startswith(_PNG_SIGNATURE) or head[_IHDR_END:] != _MARK_CHUNK:
            raise FileExistsError(
                f'{path} exists and is not a grid show_augmentation.py wrote; refusing to replace '
                f'it: choose another --output (a new file, or an earlier grid; grids written '
                f'before this check carry no mark: delete such a grid first).'
            )
    if os.path.splitext(path)[1].lower() != '.png':
        raise ValueError(f'--output={path}: the grid is written as PNG; name it .png.')
    above = folders.existing_ancestor(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(above):
        raise ValueError(f'--output={path}: {above} is a file, not a folder.')


def write_png(path, rgb):
    """Writes an RGB uint8 image as PNG atomically, creating the folder if needed, marked as
    this tool's (see `check_png_output`)."""
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f'could not encode the grid as PNG for {path}.')
    data = encoded.tobytes()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_io.write_bytes_atomic(path, data[:_IHDR_END] + _MARK_CHUNK + data[_IHDR_END:])
