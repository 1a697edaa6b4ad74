"""Training and evaluation pipelines end to end: boxes follow the pixels, shapes, ranges,
data formats, determinism, evaluation resize modes, registry."""

import cv2
import numpy as np
import pytest
import tensorflow as tf

from preprocessing import geometry
from preprocessing import preprocessing_factory
from preprocessing import ssd_preprocessing
from preprocessing.seeds import example_seed
from tests.test_preprocessing_helpers import (
    BACKGROUND,
    COLORS,
    colored_boxes_image,
    random_boxes,
    run_graph,
)
from tf_extended import bboxes as tfe_bboxes

VGG = preprocessing_factory.get_preprocessing('ssd_300_vgg')
MOBILENET = preprocessing_factory.get_preprocessing('ssd_300_mobilenet')
OUT = (300, 300)
BOXES = np.array(
    [[0.05, 0.05, 0.45, 0.3], [0.1, 0.5, 0.5, 0.95], [0.55, 0.1, 0.95, 0.45], [0.6, 0.6, 0.9, 0.8]],
    np.float32,
)
LABELS = np.arange(1, 5, dtype=np.int64)
DIFFICULT = np.array([0, 1, 0, 1], np.int64)


def _train(pipeline, image, labels, bboxes, seeds, **options):
    """Runs the training pipeline once per seed (one graph, seed fed)."""

    def build(seed, im, lab, box, diff):
        return pipeline(im, lab, box, OUT, True, seed=seed, difficult=diff, **options)

    return run_graph(
        build,
        np.array([0, 0], np.int64),
        image,
        labels,
        bboxes,
        np.zeros(len(labels), np.int64) + (labels % 2 == 0),
        feeds=[{0: np.array(s, np.int64)} for s in seeds],
    )


def test_boxes_and_labels_follow_the_pixels():
    """Coloured objects: after expand, crop, resize and flip, every output box holds its colour
    and the rest of the image is background or the mean (zoom out fill)."""
    image, boxes = colored_boxes_image(240, 320, BOXES)
    mean = np.array(VGG.mean_rgb)
    seen_counts, zoomed_out = set(), 0
    results = _train(
        VGG,
        image,
        LABELS,
        boxes,
        [[5, i] for i in range(40)],
        photometric_distortion=False,
        resize_methods=('nearest',),
    )
    for out_image, labels, bboxes, difficult in results:
        assert out_image.shape == (300, 300, 3) and out_image.dtype == np.float32
        rgb = out_image + mean
        allowed = np.concatenate([COLORS[:4], [BACKGROUND], [mean]])
        distance = np.abs(rgb[:, :, None, :] - allowed[None, None]).max(axis=-1).min(axis=-1)
        assert distance.max() < 1e-3
        zoomed_out += np.any(np.abs(rgb - mean).max(axis=-1) < 1e-3)
        np.testing.assert_array_equal(difficult, labels % 2 == 0)
        assert bboxes.shape == (len(labels), 4)
        assert np.all(bboxes >= 0) and np.all(bboxes <= 1)
        seen_counts.add(len(labels))
        for label, box in zip(labels, bboxes):
            y0, x0, y1, x1 = np.round(box * 300).astype(int)
            if y1 - y0 >= 4 and x1 - x0 >= 4:
                inner = rgb[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1]
                np.testing.assert_allclose(
                    inner, np.broadcast_to(COLORS[label - 1], inner.shape), atol=1e-3
                )
    assert len(seen_counts) >= 3, 'crops should keep different numbers of objects'
    assert 5 <= zoomed_out <= 35


def test_photometric_switch_leaves_the_geometry_unchanged():
    image = np.random.default_rng(7).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    seeds = [[8, i] for i in range(6)]
    distorted = _train(VGG, image, LABELS, BOXES, seeds)
    plain = _train(VGG, image, LABELS, BOXES, seeds, photometric_distortion=False)
    for (image_a, labels_a, boxes_a, _), (image_b, labels_b, boxes_b, _) in zip(distorted, plain):
        np.testing.assert_array_equal(labels_a, labels_b)
        np.testing.assert_array_equal(boxes_a, boxes_b)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(distorted, plain))


def test_image_without_objects_passes_through():
    image = np.random.default_rng(0).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    no_boxes = np.zeros([0, 4], np.float32)
    no_labels = np.zeros([0], np.int64)
    ((out, labels, bboxes, _),) = _train(
        VGG,
        image,
        no_labels,
        no_boxes,
        [[1, 2]],
        photometric_distortion=False,
        expand_prob=0.0,
        flip_prob=0.0,
        resize_methods=('bilinear',),
    )
    reference = cv2.resize(image.astype(np.float32), OUT[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(out, reference - np.array(VGG.mean_rgb), atol=0.01)
    assert labels.shape == (0,) and bboxes.shape == (0, 4)


def test_crops_meet_the_min_iou_with_the_zoomed_out_object():
    """One object, always zoomed out, one sampler of min IoU 0.5. A crop's IoU with the object
    is at most the share of the output the object's box covers (inter / crop >= inter /
    union), so that share is at least 0.5; the whole canvas shows the object at most at its
    image share, 0.25. Nothing in between (the IoU measured on the boxes before the zoom out
    gave shares of 0.27-0.41)."""
    image = np.full((60, 80, 3), 200, np.uint8)
    box = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)
    results = _train(
        VGG,
        image,
        LABELS[:1],
        box,
        [[11, i] for i in range(60)],
        photometric_distortion=False,
        expand_prob=1.0,
        expand_max_ratio=3.0,
        crop_min_ious=(0.5,),
        flip_prob=0.0,
        resize_methods=('nearest',),
    )
    shares = np.array([np.prod(b[0, 2:] - b[0, :2]) for _, _, b, _ in results])
    assert np.all((shares <= 0.25 + 1e-6) | (shares >= 0.5)), shares
    assert np.sum(shares >= 0.5) >= 5


def test_each_resize_method_is_drawn():
    """Every listed method is drawn; an output is exactly that method's resize."""
    image = np.random.default_rng(8).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    seeds = [[4, i] for i in range(12)]
    plain = dict(photometric_distortion=False, expand_prob=0.0, crop_min_ious=(), flip_prob=0.0)
    alone = {
        method: [
            r[0]
            for r in _train(VGG, image, LABELS, BOXES, seeds, resize_methods=(method,), **plain)
        ]
        for method in ('nearest', 'bilinear')
    }
    both = _train(VGG, image, LABELS, BOXES, seeds, resize_methods=('nearest', 'bilinear'), **plain)
    drawn = []
    for i, (out, *_) in enumerate(both):
        matches = [m for m in alone if np.array_equal(out, alone[m][i])]
        assert len(matches) == 1, i
        drawn.append(matches[0])
    assert 3 <= drawn.count('nearest') <= 9, drawn


def test_the_training_pipeline_passes_each_photometric_option(monkeypatch):
    """Every photometric option reaches `random_distort` under its own name (each at a value of
    its own, none at its default)."""
    options = dict(
        brightness_delta=1.5,
        brightness_prob=0.11,
        contrast_range=(0.7, 1.2),
        contrast_prob=0.12,
        saturation_range=(0.8, 1.3),
        saturation_prob=0.13,
        hue_delta=2.5,
        hue_prob=0.14,
        channel_shuffle_prob=0.15,
    )
    received = {}

    def record(image, seeds, **kwargs):
        received.update(kwargs)
        return image

    monkeypatch.setattr(ssd_preprocessing.photometric, 'random_distort', record)
    with tf.Graph().as_default():
        image = tf.zeros([10, 10, 3], tf.uint8)
        VGG(image, tf.zeros([0], tf.int64), tf.zeros([0, 4]), OUT, True, seed=1, **options)
    assert received == options


@pytest.mark.parametrize(
    'pipeline,low,high', [(VGG, -123.0, 255.0 - 104.0), (MOBILENET, -1.0, 1.0)]
)
def test_training_output_shapes_dtypes_and_ranges(pipeline, low, high):
    image = np.random.default_rng(1).integers(0, 256, (333, 457, 3), dtype=np.uint8)
    results = _train(pipeline, image, LABELS, BOXES, [[2, i] for i in range(12)])
    for out, labels, bboxes, difficult in results:
        assert out.shape == (300, 300, 3) and out.dtype == np.float32
        assert out.min() >= low - 1e-4 and out.max() <= high + 1e-4
        assert labels.dtype == np.int64 and bboxes.dtype == np.float32
        assert bboxes.shape == (len(labels), 4) and difficult.shape == labels.shape
    assert np.std([r[0].mean() for r in results]) > 0


def test_nchw_is_the_transpose_of_nhwc():
    image = np.random.default_rng(2).integers(0, 256, (200, 260, 3), dtype=np.uint8)

    def build(im, lab, box):
        return (
            VGG(im, lab, box, OUT, True, seed=9)[0],
            VGG(im, lab, box, OUT, True, data_format='NCHW', seed=9)[0],
            VGG(im, lab, box, OUT, False)[0],
            VGG(im, lab, box, OUT, False, 'NCHW')[0],
        )

    train_nhwc, train_nchw, eval_nhwc, eval_nchw = run_graph(build, image, LABELS, BOXES)
    np.testing.assert_array_equal(train_nchw, train_nhwc.transpose(2, 0, 1))
    np.testing.assert_array_equal(eval_nchw, eval_nhwc.transpose(2, 0, 1))
    np.testing.assert_allclose(
        run_graph(lambda x: VGG.denormalize(x, 'NCHW'), train_nchw[None])[0],
        train_nhwc + np.array(VGG.mean_rgb),
        atol=1e-4,
    )


def _through_dataset(num_parallel_calls, base_seed):
    image = np.random.default_rng(3).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    with tf.Graph().as_default():
        dataset = tf.data.Dataset.from_tensors((image, LABELS, BOXES)).repeat(6).enumerate()
        dataset = dataset.map(
            lambda i, ex: VGG(*ex, OUT, True, seed=example_seed(base_seed, i)),
            num_parallel_calls=num_parallel_calls,
        )
        batch = tf.compat.v1.data.make_one_shot_iterator(dataset.map(lambda im, l, b: im).batch(6))
        with tf.compat.v1.Session() as session:
            return session.run(batch.get_next())


def test_same_seed_same_output_even_in_a_parallel_map():
    sequential = _through_dataset(None, 17)
    parallel = _through_dataset(4, 17)
    np.testing.assert_array_equal(parallel, sequential)
    assert not np.array_equal(_through_dataset(4, 18), sequential)
    assert len({float(x.sum()) for x in sequential}) == 6, 'each example has its own draw'


EVAL_IMAGE = np.random.default_rng(4).integers(0, 256, (200, 400, 3), dtype=np.uint8)


def _eval(resize, image=EVAL_IMAGE, bboxes=BOXES, pipeline=VGG):
    return run_graph(
        lambda im, lab, box, diff: pipeline(
            im, lab, box, OUT, False, resize=resize, difficult=diff
        ),
        image,
        LABELS,
        bboxes,
        DIFFICULT,
    )


# OpenCV's float bilinear weights differ from TensorFlow's by < 0.01 on the 0-255 scale.
def _normalized(rgb):
    return rgb.astype(np.float32) - np.array(VGG.mean_rgb, np.float32)


def test_eval_warp_resize_matches_opencv():
    image, labels, bboxes, bbox_img, difficult = _eval('WARP_RESIZE')
    reference = cv2.resize(EVAL_IMAGE.astype(np.float32), OUT[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(image, _normalized(reference), atol=0.01)
    np.testing.assert_array_equal(bbox_img, [0, 0, 1, 1])
    np.testing.assert_array_equal(bboxes, BOXES)
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(difficult, DIFFICULT)


def test_eval_pad_and_resize_hand_computed():
    """200x400 into 300x300: scaled by 0.75 to 150x300, rows 75..225, mean above and below."""
    image, _, bboxes, bbox_img, _ = _eval('PAD_AND_RESIZE')
    np.testing.assert_allclose(bbox_img, [0.25, 0.0, 0.75, 1.0], atol=1e-6)
    reference = cv2.resize(
        EVAL_IMAGE.astype(np.float32), (300, 150), interpolation=cv2.INTER_LINEAR
    )
    np.testing.assert_allclose(image[75:225], _normalized(reference), atol=0.01)
    np.testing.assert_array_equal(image[:75], 0.0)
    np.testing.assert_array_equal(image[225:], 0.0)
    expected = BOXES * [0.5, 1, 0.5, 1] + [0.25, 0, 0.25, 0]
    np.testing.assert_allclose(bboxes, expected, atol=1e-6)


def test_eval_central_crop_hand_computed():
    """200x400 into 300x300 unscaled: columns 50..350 of the image, 50 mean rows above/below."""
    image, _, _, bbox_img, _ = _eval('CENTRAL_CROP')
    np.testing.assert_allclose(bbox_img, np.array([50, -50, 250, 350]) / 300.0, atol=1e-6)
    np.testing.assert_allclose(image[50:250], _normalized(EVAL_IMAGE[:, 50:350]), atol=1e-4)
    np.testing.assert_array_equal(image[:50], 0.0)
    np.testing.assert_array_equal(image[250:], 0.0)


def test_eval_none_keeps_the_image():
    image, _, bboxes, bbox_img, _ = _eval('NONE')
    np.testing.assert_allclose(image, _normalized(EVAL_IMAGE), atol=1e-5)
    np.testing.assert_array_equal(bbox_img, [0, 0, 1, 1])
    np.testing.assert_array_equal(bboxes, BOXES)


@pytest.mark.parametrize('resize', ['WARP_RESIZE', 'PAD_AND_RESIZE', 'CENTRAL_CROP', 'NONE'])
@pytest.mark.parametrize('shape', [(200, 400), (317, 151)])
def test_eval_boxes_map_back_with_bbox_img_and_are_deterministic(resize, shape):
    image = np.random.default_rng(5).integers(0, 256, shape + (3,), dtype=np.uint8)
    boxes = random_boxes(np.random.default_rng(6), 4)
    first = _eval(resize, image, boxes)
    second = _eval(resize, image, boxes)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    _, labels, out_boxes, bbox_img, difficult = first
    mapped_back = run_graph(tfe_bboxes.bboxes_resize, bbox_img, out_boxes)
    np.testing.assert_allclose(mapped_back, boxes, atol=1e-5)
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(difficult, DIFFICULT)


def test_eval_mobilenet_normalisation():
    image, *_ = _eval('NONE', pipeline=MOBILENET)
    np.testing.assert_allclose(image, (EVAL_IMAGE - 127.5) * 0.007843, atol=1e-5)


def test_normalize_is_exactly_the_numpy_arithmetic_and_warp_clips_bicubic_overshoot():
    """normalize (bias_add of -mean) gives numpy's float32 `(x - mean) * scale` bit for bit;
    warp_resize_normalized follows OpenCV's resize then that normalisation, and a bicubic
    resize, which overshoots 0-255 at sharp edges, ends inside the normalised range."""
    mean, scale = MOBILENET.mean_rgb, MOBILENET.scale
    got = run_graph(lambda im: geometry.normalize(im, mean, scale), EVAL_IMAGE)
    want = (EVAL_IMAGE.astype(np.float32) - np.array(mean, np.float32)) * np.float32(scale)
    np.testing.assert_array_equal(got, want)
    warped = run_graph(lambda im: geometry.warp_resize_normalized(im, OUT, mean, scale), EVAL_IMAGE)
    reference = cv2.resize(EVAL_IMAGE.astype(np.float32), OUT[::-1], interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(warped, (reference - np.array(mean)) * scale, atol=0.01 * scale)
    edges = np.zeros((8, 8, 3), np.uint8)
    edges[:, ::2] = 255
    bicubic = run_graph(
        lambda im: geometry.warp_resize_normalized(im, (30, 30), mean, scale, 'bicubic'), edges
    )
    low, high = geometry.normalized_range(mean, scale)
    assert bicubic.min() == pytest.approx(low.min()) and bicubic.max() == pytest.approx(high.max())
    overshoot = run_graph(lambda im: tf.image.resize(im, (30, 30), 'bicubic'), edges * 1.0)
    assert overshoot.min() < 0 and overshoot.max() > 255  # what the clip is for
    # The padded evaluation resizes clip alike.
    for resize in ('PAD_AND_RESIZE', 'CENTRAL_CROP'):
        padded = run_graph(
            lambda im, lab, box: MOBILENET(
                im, lab, box, (30, 40), False, resize=resize, resize_method='bicubic'
            )[0],
            edges,
            LABELS,
            BOXES,
        )
        assert padded.min() >= low.min() and padded.max() <= high.max(), resize


def test_denormalize_warp_resize_uint8_and_the_fixed_size_identity():
    """denormalize undoes normalize at MobileNet's scale; warp_resize_uint8 rounds TF's bilinear
    values to the nearest integer (a row 0, 11 stretched to 4 columns samples at -0.25, 0.25,
    0.75 and 1.25 pixels: 0, 2.75, 8.25, 11); an image already at a non-square `out_shape` is
    only normalised, with no resize op in the graph."""
    mean, scale = MOBILENET.mean_rgb, MOBILENET.scale
    back = run_graph(
        lambda im: geometry.denormalize(geometry.normalize(im, mean, scale), mean, scale),
        EVAL_IMAGE,
    )
    np.testing.assert_allclose(back, EVAL_IMAGE, atol=1e-3)
    row = np.array([[[0] * 3, [11] * 3]], np.uint8)
    stretched = run_graph(lambda im: geometry.warp_resize_uint8(im, (1, 4)), row)
    assert stretched.dtype == np.uint8
    np.testing.assert_array_equal(stretched[0, :, 0], [0, 3, 8, 11])
    with tf.Graph().as_default() as graph:
        image = tf.constant(EVAL_IMAGE[:2, :3])
        warped = geometry.warp_resize_normalized(image, (2, 3), mean, scale)
        assert not [op for op in graph.get_operations() if 'Resize' in op.type]
        with tf.compat.v1.Session() as sess:
            np.testing.assert_array_equal(
                sess.run(warped), sess.run(geometry.normalize(image, mean, scale))
            )


@pytest.mark.parametrize('shape', [(480, 640), (200, 299), (17, 5), (1, 1), (3, 401)])
def test_resize_bilinear_by_gathers_is_tfs_bilinear_resize(shape):
    """The OpenVINO export's resize gives TF's bilinear kernel's values to the bit, downscaling,
    upscaling and both at once; OpenCV's half-pixel bilinear agrees where it does not
    antialias (factors below 2)."""
    rng = np.random.RandomState(sum(shape))
    images = rng.randint(0, 256, (2,) + shape + (3,)).astype(np.uint8)
    got = run_graph(lambda im: geometry.resize_bilinear_by_gathers(im, OUT), images)
    want = run_graph(lambda im: tf.image.resize(tf.cast(im, tf.float32), OUT), images)
    assert got.dtype == np.float32 and got.shape == (2,) + OUT + (3,)
    np.testing.assert_array_equal(got, want)
    if max(shape) < 2 * min(OUT):
        for image, resized in zip(images, got):
            reference = cv2.resize(image.astype(np.float32), OUT[::-1], cv2.INTER_LINEAR)
            np.testing.assert_allclose(resized, reference.reshape(resized.shape), atol=0.01)


def test_registry_names_and_errors():
    assert preprocessing_factory.get_preprocessing('ssd_512_vgg') is VGG
    assert preprocessing_factory.get_preprocessing('ssd_vgg') is VGG
    assert preprocessing_factory.get_preprocessing('ssd_mobilenet') is MOBILENET
    with pytest.raises(ValueError, match='ssd_300_vgg'):
        preprocessing_factory.get_preprocessing('yolo')
    with tf.Graph().as_default():
        image = tf.zeros([10, 10, 3], tf.uint8)
        labels, bboxes = tf.zeros([0], tf.int64), tf.zeros([0, 4])
        with pytest.raises(ValueError, match='has no option'):
            VGG(image, labels, bboxes, OUT, False, seed=3)
        with pytest.raises(ValueError, match='data_format'):
            VGG(image, labels, bboxes, OUT, True, data_format='CHW')
        with pytest.raises(ValueError, match='resize must be one of'):
            VGG(image, labels, bboxes, OUT, False, resize='STRETCH')
        with pytest.raises(ValueError, match=r'\[H, W, 3\]'):
            VGG(tf.zeros([10, 10]), labels, bboxes, OUT, True)
        with pytest.raises(ValueError, match=r'bboxes must be \[N, 4\]'):
            VGG(image, labels, tf.zeros([0, 5]), OUT, False)
