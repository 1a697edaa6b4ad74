"""Shared fixtures and numpy references of the preprocessing tests (no tests here)."""

import numpy as np
import tensorflow as tf


def run_graph(build, *arrays, feeds=None):
    """Builds `build(*tensors)` in a fresh graph from numpy `arrays` and runs it once.

    `feeds` (optional) is a list of dicts `{index_of_array: value}`: the graph is then built once
    with placeholders for those arrays and run once per dict; a list of results is returned.
    """
    with tf.Graph().as_default():
        fed = set().union(*feeds) if feeds else set()
        tensors = [
            tf.compat.v1.placeholder(tf.as_dtype(np.asarray(a).dtype), np.shape(a))
            if i in fed
            else tf.constant(a)
            for i, a in enumerate(arrays)
        ]
        fetches = build(*tensors)
        with tf.compat.v1.Session() as session:
            if not feeds:
                return session.run(fetches)
            return [
                session.run(fetches, {tensors[i]: v for i, v in feed.items()}) for feed in feeds
            ]


def random_boxes(rng, n, low=0.0, high=1.0):
    """`n` random valid boxes `[ymin, xmin, ymax, xmax]` with corners in `[low, high]`."""
    corners = rng.uniform(low, high, size=(n, 2, 2)).astype(np.float32)
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)


def np_resize_boxes(window, boxes):
    """Boxes expressed in the frame of `window` (numpy reference of `bboxes_resize`)."""
    window = np.asarray(window, np.float64)
    size = np.array([window[2] - window[0], window[3] - window[1]] * 2)
    return (np.asarray(boxes, np.float64) - np.tile(window[:2], 2)) / size


def np_iou(a, b):
    """IoU matrix `[len(a), len(b)]` of two box arrays."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    h = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    w = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = h * w

    def area(x):
        return (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])

    return inter / (area(a) + area(b) - inter)


COLORS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
    ],
    np.uint8,
)
BACKGROUND = np.array([128, 128, 128], np.uint8)


def colored_boxes_image(height, width, boxes):
    """uint8 RGB image, grey, with box i filled with `COLORS[i]` (later boxes on top).

    Boxes are snapped to whole pixels; returns `(image, snapped relative boxes)`.
    """
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    pixels = np.round(boxes * [height, width, height, width]).astype(int)
    for i, (y0, x0, y1, x1) in enumerate(pixels):
        image[y0:y1, x0:x1] = COLORS[i]
    return image, (pixels / [height, width, height, width]).astype(np.float32)
