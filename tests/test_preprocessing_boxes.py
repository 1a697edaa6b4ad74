"""Box transforms of expand, crop, flip and window resize against numpy references; the sampler."""

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import geometry, sampling
from preprocessing.seeds import SeedStream
from tests.test_preprocessing_helpers import np_iou, np_resize_boxes, random_boxes, run_graph
from tf_extended import bboxes as tfe_bboxes


def test_bboxes_unresize_is_the_inverse_of_resize():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 20, -0.5, 1.5)
    window = np.array([-0.4, 0.2, 1.7, 0.9], np.float32)
    unresized, round_trip = run_graph(
        lambda w, b: (
            tfe_bboxes.bboxes_unresize(w, b),
            tfe_bboxes.bboxes_unresize(w, tfe_bboxes.bboxes_resize(w, b)),
        ),
        window,
        boxes,
    )
    size = np.array([window[2] - window[0], window[3] - window[1]] * 2)
    np.testing.assert_allclose(unresized, boxes * size + np.tile(window[:2], 2), atol=1e-6)
    np.testing.assert_allclose(round_trip, boxes, atol=1e-5)


def test_crop_keeps_centres_inside_clips_and_reframes_like_numpy():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 200)
    labels = np.arange(200, dtype=np.int64)
    difficult = rng.integers(0, 2, 200)
    window = np.array([0.2, 0.1, 0.7, 0.8], np.float32)
    got_boxes, got_labels, got_difficult = run_graph(
        sampling.crop_bboxes, window, boxes, labels, difficult
    )
    cy, cx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    keep = (cy >= window[0]) & (cy <= window[2]) & (cx >= window[1]) & (cx <= window[3])
    clipped = np.clip(boxes, np.tile(window[:2], 2), np.tile(window[2:], 2))
    assert 0 < keep.sum() < 200
    np.testing.assert_array_equal(got_labels, labels[keep])
    np.testing.assert_array_equal(got_difficult, difficult[keep])
    np.testing.assert_allclose(got_boxes, np_resize_boxes(window, clipped[keep]), atol=1e-5)
    assert got_boxes.min() >= -1e-6 and got_boxes.max() <= 1 + 1e-6


def test_flip_mirrors_image_and_boxes():
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 30)
    image = rng.uniform(size=(5, 7, 3)).astype(np.float32)
    got_image, got_boxes = run_graph(geometry.flip_left_right, image, boxes)
    np.testing.assert_array_equal(got_image, image[:, ::-1])
    expected = np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=1)
    np.testing.assert_allclose(got_boxes, expected, atol=1e-6)


@pytest.mark.parametrize('height,width', [(375, 500), (301, 173)])
def test_expansion_is_a_whole_pixel_canvas_holding_the_image(height, width):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 10)

    def build(seed, b):
        canvas = sampling.sample_expansion(
            tf.constant([height, width, 3]), SeedStream(seed), prob=0.5, max_ratio=4.0
        )
        return canvas, tfe_bboxes.bboxes_resize(canvas, b)

    results = run_graph(
        build,
        np.array([0, 0], np.int64),
        boxes,
        feeds=[{0: np.array([7, i], np.int64)} for i in range(100)],
    )
    expanded, ratios, spread = 0, [], []
    for canvas, canvas_boxes in results:
        size = np.array([height, width])
        offset = -canvas[:2] * size
        canvas_px = (canvas[2:] - canvas[:2]) * size
        np.testing.assert_allclose(offset, np.round(offset), atol=1e-3)
        np.testing.assert_allclose(canvas_px, np.round(canvas_px), atol=1e-3)
        assert np.all(offset >= -1e-3) and np.all(offset + size <= canvas_px + 1e-3)
        ratio = canvas_px / size
        assert np.all(ratio >= 1 - 1e-6) and np.all(ratio <= 4 + 1e-6)
        # One ratio r for both sides, each floored to whole pixels (Caffe's int cast): some r
        # has floor(height * r) and floor(width * r) equal to the canvas sides.
        sides = np.round(canvas_px)
        assert np.max(sides / size) < np.min((sides + 1) / size) + 1e-6
        expanded += bool(np.any(ratio > 1))
        ratios.append(ratio[0])
        if np.all(canvas_px > size):
            spread.append(offset / (canvas_px - size))
        # Reference: pixel boxes shifted by the offset, over the canvas size.
        pixels = boxes * np.tile(size, 2) + np.tile(offset, 2)
        np.testing.assert_allclose(canvas_boxes, pixels / np.tile(canvas_px, 2), atol=1e-5)
    assert 30 <= expanded <= 70
    # Ratios reach up to max_ratio, offsets across the whole free margin, on both axes.
    assert max(ratios) > 3.5
    assert np.all(np.max(spread, axis=0) > 0.8) and np.all(np.min(spread, axis=0) < 0.2)


def _expected_index(window_lo, window_hi, size, out_size):
    """Nearest-neighbour source index of each output pixel, -1 outside the image, and a mask of
    the pixels too close to a rounding boundary to check."""
    v = (window_lo + (np.arange(out_size) + 0.5) / out_size * (window_hi - window_lo)) * size
    index = np.where((v >= 0) & (v < size), np.floor(v), -1)
    fraction = v - np.floor(v)
    clear = np.minimum(fraction, 1 - fraction) > 1e-3
    return index, clear


@pytest.mark.parametrize(
    'window',
    [
        [0.1, 0.2, 0.8, 0.6],  # crop
        [-0.7, -1.2, 1.9, 1.4],  # zoom out
        [-0.3, 0.25, 0.9, 1.6],  # partly outside
        [0.0, 0.0, 1.0, 1.0],  # warp
        [1.2, 0.1, 1.8, 0.9],  # misses the image
    ],
)
def test_resize_window_shows_the_window_it_reports(window):
    """Each output pixel holds the image pixel that the reported window maps it to."""
    height, width, out = 37, 53, (30, 41)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    image = np.stack([rows, cols], axis=-1).astype(np.float32)
    output, shown = run_graph(
        lambda im, w: geometry.resize_window(im, w, out, methods=('nearest',), fill=-1.0),
        image,
        np.array(window, np.float32),
    )
    row_index, row_clear = _expected_index(shown[0], shown[2], height, out[0])
    col_index, col_clear = _expected_index(shown[1], shown[3], width, out[1])
    inside = (row_index[:, None] >= 0) & (col_index[None, :] >= 0)
    clear = row_clear[:, None] & col_clear[None, :]
    np.testing.assert_array_equal(
        output[..., 0][clear & inside],
        np.broadcast_to(row_index[:, None], inside.shape)[clear & inside],
    )
    np.testing.assert_array_equal(
        output[..., 1][clear & inside],
        np.broadcast_to(col_index[None, :], inside.shape)[clear & inside],
    )
    np.testing.assert_array_equal(output[~inside & clear], -1.0)
    # The rendered window differs from the requested one by less than a pixel.
    tolerance = np.array([1.0 / height, 1.0 / width] * 2) * (
        np.array(window[2:] * 2) - np.array(window[:2] * 2) + 1
    )
    assert np.all(np.abs(shown - window) <= tolerance)


def test_resize_window_cuts_on_the_nearest_whole_pixels():
    """Rows 2.6 to 7.6 of a 10-row image at 5 rows: the nearest whole pixels, rows 3 to 8, are
    shown one to one (not rows 2 to 8 squeezed), and the reported window says so."""
    image = np.repeat(np.arange(10, dtype=np.float32)[:, None, None], 4, axis=1)
    output, shown = run_graph(
        lambda im, w: geometry.resize_window(im, w, (5, 4), methods=('nearest',)),
        image,
        np.array([0.26, 0.0, 0.76, 1.0], np.float32),
    )
    np.testing.assert_allclose(shown, [0.3, 0.0, 0.8, 1.0], atol=1e-6)
    np.testing.assert_array_equal(output[:, 0, 0], [3, 4, 5, 6, 7])


def _sample_crops(boxes, min_ious, count, **options):
    return run_graph(
        lambda seed, b: sampling.sample_crop(b, SeedStream(seed), min_ious=min_ious, **options),
        np.array([0, 0], np.int64),
        boxes,
        feeds=[{0: np.array([11, i], np.int64)} for i in range(count)],
    )


@pytest.mark.parametrize('min_iou', [0.1, 0.5, 0.9])
def test_every_constrained_crop_meets_its_min_iou(min_iou):
    boxes = np.array(
        [[0.05, 0.1, 0.95, 0.9], [0.1, 0.1, 0.6, 0.5], [0.4, 0.5, 0.95, 0.9]], np.float32
    )
    crops = np.array(_sample_crops(boxes, (min_iou,), 200))
    unit = np.all(crops == [0, 0, 1, 1], axis=1)
    constrained = crops[~unit]
    assert len(constrained) >= 20, 'the sampler should often succeed and be picked'
    assert np.all(np_iou(constrained, boxes).max(axis=1) >= min_iou - 1e-6)
    height, width = constrained[:, 2] - constrained[:, 0], constrained[:, 3] - constrained[:, 1]
    assert np.all(constrained >= -1e-6) and np.all(constrained <= 1 + 1e-6)
    scale = np.sqrt(height * width)
    assert np.all(scale >= 0.3 - 1e-5) and np.all(scale <= 1 + 1e-5)
    assert np.all(width / height >= 0.5 - 1e-4) and np.all(width / height <= 2 + 1e-4)


def test_sampler_picks_uniformly_among_successes():
    """Whole image + 3 always-satisfiable samplers (min IoU 0): each is picked ~1/4 of the time."""
    boxes = np.array([[0.2, 0.2, 0.6, 0.7]], np.float32)
    crops = np.array(_sample_crops(boxes, (0.0, 0.0, 0.0), 400))
    unit_share = np.mean(np.all(crops == [0, 0, 1, 1], axis=1))
    assert 0.17 <= unit_share <= 0.33


def test_impossible_constraint_and_no_objects_keep_the_whole_image():
    boxes = np.array([[0.45, 0.45, 0.46, 0.46]], np.float32)  # too small for IoU 0.9 at scale>=0.3
    crops = _sample_crops(boxes, (0.9,), 20)
    np.testing.assert_array_equal(crops, [[0, 0, 1, 1]] * 20)
    crops = _sample_crops(np.zeros([0, 4], np.float32), (0.1, 0.0), 20)
    np.testing.assert_array_equal(crops, [[0, 0, 1, 1]] * 20)


def test_min_iou_0_takes_any_crop_and_scales_span_the_range():
    """Caffe's `max_jaccard_overlap: 1` sampler (min IoU 0 here) accepts any crop once the image
    has an object, even a crop that misses it: it always succeeds, so it is picked about half of
    the time against the whole image, and its crops' scales span `scale_range`."""
    boxes = np.array([[0.0, 0.0, 0.04, 0.04]], np.float32)
    crops = np.array(_sample_crops(boxes, (0.0,), 100))
    constrained = crops[~np.all(crops == [0, 0, 1, 1], axis=1)]
    assert 30 <= len(constrained) <= 70
    assert np.any(np_iou(constrained, boxes)[:, 0] == 0)
    scale = np.sqrt(
        (constrained[:, 2] - constrained[:, 0]) * (constrained[:, 3] - constrained[:, 1])
    )
    assert scale.min() < 0.4 and scale.max() > 0.9
