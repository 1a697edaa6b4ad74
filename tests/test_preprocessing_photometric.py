"""Photometric distortions against numpy / OpenCV references."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from preprocessing import photometric
from preprocessing.seeds import SeedStream
from tests.test_preprocessing_helpers import run_graph


def _image(seed=0, shape=(23, 31, 3)):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def cv2_saturation_hue(image, saturation_factor, hue_degrees):
    """OpenCV float HSV (H in degrees): scale S, rotate H, back to RGB (0-255)."""
    hsv = cv2.cvtColor(image / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + hue_degrees, 360.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation_factor, 0.0, 1.0)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def test_brightness_and_contrast_are_exact():
    image = _image()
    bright, dark, contrast = run_graph(
        lambda im: (
            photometric.adjust_brightness(im, 32.0),
            photometric.adjust_brightness(im, -20.0),
            photometric.adjust_contrast(im, 1.4),
        ),
        image,
    )
    np.testing.assert_array_equal(bright, np.clip(image + np.float32(32.0), 0, 255))
    np.testing.assert_array_equal(dark, np.clip(image - np.float32(20.0), 0, 255))
    np.testing.assert_array_equal(contrast, np.clip(image * np.float32(1.4), 0, 255))


@pytest.mark.parametrize(
    'saturation,hue',
    [(1.0, 18.0), (1.0, -18.0), (1.0, 170.0), (0.6, 0.0), (1.5, -7.5), (1.3, 12.0)],
)
def test_saturation_and_hue_match_opencv_hsv(saturation, hue):
    image = _image(1)
    got = run_graph(lambda im: photometric.adjust_saturation_hue(im, saturation, hue), image)
    np.testing.assert_allclose(got, cv2_saturation_hue(image, saturation, hue), atol=0.05)


@pytest.mark.parametrize('saturation,hue', [(1.0, 170.0), (1.5, -7.5), (0.6, -200.0)])
def test_saturation_and_hue_are_exactly_the_hsv_arithmetic(saturation, hue):
    """Between TF's HSV conversions, the hue is numpy's float32 `(h + delta) mod 1` and the
    saturation `clip(s * factor, 0, 1)`, bit for bit; value 1 and saturation 1 included."""
    image = _image(2)
    image[0, :4] = [[255, 0, 0], [255, 255, 255], [0, 255, 128], [255, 10, 200]]
    got, hsv = run_graph(
        lambda im: (
            photometric.adjust_saturation_hue(im, saturation, hue),
            tf.image.rgb_to_hsv(im / 255.0),
        ),
        image,
    )
    hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(hue / 360.0), np.float32(1.0))
    hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0.0, 1.0)
    want = run_graph(lambda h: tf.image.hsv_to_rgb(h) * 255.0, hsv)
    np.testing.assert_array_equal(got, want)


def _distort(image, count, **options):
    return run_graph(
        lambda seed, im: photometric.random_distort(im, SeedStream(seed), **options),
        np.array([0, 0], np.int64),
        image,
        feeds=[{0: np.array([3, i], np.int64)} for i in range(count)],
    )


def test_both_caffe_orders_on_a_fixed_seed_path():
    """With every step on and fixed factors, each output is one of Caffe's two orders."""
    image = _image(2)
    options = dict(
        brightness_prob=1.0,
        brightness_delta=0.0,
        contrast_prob=1.0,
        contrast_range=(1.5, 1.5),
        saturation_prob=1.0,
        saturation_range=(0.6, 0.6),
        hue_prob=0.0,
    )

    def contrast(x):
        return np.clip(x * np.float32(1.5), 0, 255)

    contrast_first = cv2_saturation_hue(contrast(image), 0.6, 0.0)
    contrast_last = contrast(cv2_saturation_hue(image, 0.6, 0.0))
    assert np.abs(contrast_first - contrast_last).max() > 10
    orders = []
    for out in _distort(image, 100, **options):
        if np.allclose(out, contrast_first, atol=0.1):
            orders.append('first')
        else:
            np.testing.assert_allclose(out, contrast_last, atol=0.1)
            orders.append('last')
    assert 35 <= orders.count('first') <= 65


def test_brightness_delta_range_and_probability():
    image = _image(3, (8, 8, 3)) * 0.5 + 60.0  # no clipping for |delta| <= 32
    options = dict(contrast_prob=0.0, saturation_prob=0.0, hue_prob=0.0)
    differences = [out - image for out in _distort(image, 200, **options)]
    assert all(np.ptp(d) < 1e-4 for d in differences), 'one delta per image'
    deltas = np.array([d.mean() for d in differences])
    changed = np.abs(deltas) > 1e-4
    assert 70 <= changed.sum() <= 130
    assert np.abs(deltas).max() <= 32 and deltas.min() < -25 and deltas.max() > 25


def _hue_shift(before, after):
    """The hue rotation (degrees, in [-180, 180)) from `before` to `after`, by OpenCV's HSV."""
    hue = [cv2.cvtColor(x / 255.0, cv2.COLOR_RGB2HSV)[..., 0] for x in (before, after)]
    return np.median(np.mod(hue[1] - hue[0] + 180.0, 360.0) - 180.0)


def test_hue_delta_range_and_probability():
    """Hue alone (saturation off): rotated by a uniform [-18, 18] degrees in about half the
    images, both ways."""
    image = _image(5, (6, 6, 3)) * 0.6 + 50.0  # saturated enough for a defined hue
    options = dict(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=0.0, hue_delta=18.0)
    shifts = np.array([_hue_shift(image, out) for out in _distort(image, 100, **options)])
    changed = np.abs(shifts) > 0.01
    assert 30 <= changed.sum() <= 70
    assert np.abs(shifts).max() <= 18.01 and shifts.min() < -12 and shifts.max() > 12


def test_channel_shuffle_is_off_by_default_and_permutes_when_asked():
    image = _image(4)
    options = dict(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=0.0, hue_prob=0.0)
    for out in _distort(image, 10, **options):
        np.testing.assert_array_equal(out, image)
    permutations = set()
    for out in _distort(image, 30, channel_shuffle_prob=1.0, **options):
        permutation = [
            int(np.argmin([np.abs(out[..., c] - image[..., k]).max() for k in range(3)]))
            for c in range(3)
        ]
        np.testing.assert_array_equal(out, image[..., permutation])
        permutations.add(tuple(permutation))
    assert len(permutations) >= 4


def test_the_training_pipeline_defaults_are_the_distortions():
    """`preprocess_for_train` lists the photometric options one by one (SSDPreprocessing reads
    that list to refuse unknown options and name the known ones), each with a default written
    again there: they must be `random_distort`'s, else a pipeline built without options would
    distort otherwise than the function says."""
    import inspect

    from preprocessing import ssd_preprocessing

    distort = inspect.signature(photometric.random_distort).parameters
    train = inspect.signature(ssd_preprocessing.preprocess_for_train).parameters
    options = [name for name in distort if name not in ('image', 'seeds')]
    assert len(options) == 9
    assert {n: train[n].default for n in options} == {n: distort[n].default for n in options}
