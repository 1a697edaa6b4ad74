"""Drawing (OpenCV, matplotlib), image loading and input expansion of the detection tools."""

import collections
import os

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image

from datasets import dataset_factory
from datasets import image_io
from inference import detection
from inference import detection_records
from inference import visualization
from tests import data_fixtures

matplotlib.use('Agg')

DETECTIONS = {
    'boxes': np.array([[0.25, 0.1, 0.75, 0.6]], np.float32),
    'scores': np.array([0.87], np.float32),
    'classes': np.array([3], np.int32),
}
NAMES = ('cat', 'dog', 'bird')


def test_draw_detections_box_and_filled_label():
    image = np.full((100, 200, 3), 255, np.uint8)
    drawn = visualization.draw_detections(image, DETECTIONS, NAMES)
    color = visualization.PALETTE[2]
    # Box edges in pixels: x 20..120, y 25..75 (relative box x image size).
    np.testing.assert_array_equal(drawn[50, 20], color)
    np.testing.assert_array_equal(drawn[50, 120], color)
    np.testing.assert_array_equal(drawn[75, 70], color)
    assert (drawn[50, 70] == 255).all() and (image == 255).all()  # Inside untouched; a copy.
    # The label sits above the box on a filled background of the class colour, with text in it.
    label = drawn[10:24, 21:60].reshape(-1, 3)
    assert (label == color).all(axis=1).mean() > 0.5
    assert (np.abs(label.astype(int) - color).sum(axis=1) > 200).any()
    bgr = visualization.draw_detections(image, DETECTIONS, {3: 'bird'}, rgb=False)
    np.testing.assert_array_equal(bgr[50, 20], color[::-1])
    assert (visualization.draw_detections(image, DETECTIONS, NAMES, min_score=0.9) == 255).all()
    # min_score keeps the scores equal to it.
    at_score = DETECTIONS['scores'][0]
    np.testing.assert_array_equal(
        visualization.draw_detections(image, DETECTIONS, NAMES, min_score=at_score), drawn
    )


def test_show_detections_plots_pixel_box():
    image = np.zeros((100, 200, 3), np.uint8)
    ax = visualization.show_detections(image, DETECTIONS, NAMES)
    [rect] = ax.patches
    assert rect.get_xy() == (20, 25) and rect.get_width() == 100 and rect.get_height() == 50
    assert [t.get_text() for t in ax.texts] == ['bird 0.87']


def test_pixel_detections():
    rows = detection.pixel_detections(DETECTIONS, 100, 200, NAMES)
    assert rows == [
        {
            'label': 'bird',
            'label_id': 3,
            'score': pytest.approx(0.87),
            'xmin': pytest.approx(20.0),
            'ymin': 25.0,
            'xmax': pytest.approx(120.0),
            'ymax': 75.0,
        }
    ]


def test_pixel_detections_are_clipped_to_the_image_as_evaluation_scores_them():
    """A box reaching past the image was written past it: a user's mAP from detections.json
    differed from the evaluation's, which clips (evaluation/input.py map_to_image)."""
    outside = dict(DETECTIONS, boxes=np.array([[-0.125, 0.5, 1.25, 1.5]], np.float32))
    [row] = detection.pixel_detections(outside, 100, 200, NAMES)
    assert [row[k] for k in ('xmin', 'ymin', 'xmax', 'ymax')] == [100.0, 0.0, 200.0, 100.0]


def test_pixel_detections_keep_the_scores_equal_to_min_score():
    at_score = DETECTIONS['scores'][0]
    assert len(detection.pixel_detections(DETECTIONS, 100, 200, NAMES, min_score=at_score)) == 1
    assert detection.pixel_detections(DETECTIONS, 100, 200, NAMES, min_score=0.88) == []


def test_load_image_rgb(tmp_path):
    rgb = data_fixtures.smooth_image(20, 30)
    data_fixtures.write_image(str(tmp_path / 'a.png'), rgb, '.png')
    np.testing.assert_array_equal(detection.load_image_rgb(str(tmp_path / 'a.png')), rgb)
    data_fixtures.write_image(str(tmp_path / 'gray.jpg'), rgb[..., 0], '.png')  # PNG named .jpg
    gray = detection.load_image_rgb(str(tmp_path / 'gray.jpg'))
    assert gray.shape == (20, 30, 3)
    np.testing.assert_array_equal(gray[..., 1], rgb[..., 0])
    (tmp_path / 'bad.jpg').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='bad.jpg: not a decodable image'):
        detection.load_image_rgb(str(tmp_path / 'bad.jpg'))
    with pytest.raises(ValueError, match='none.jpg: cannot read'):
        detection.load_image_rgb(str(tmp_path / 'none.jpg'))


def test_cmyk_jpegs_decode_to_evaluations_pixels_at_every_size(tmp_path):
    """OpenCV converts a CMYK JPEG's colours with other rounding than TensorFlow's decoder, which
    training, evaluation and `serving_encoded` decode with (`dataset_factory.decode_rgb`): detect's
    pixels were up to 2 levels off, and some detections differed. detect now decodes it as they
    do, also at a reduced size. Reference: Pillow's samples (Adobe's stored ones inverted) and
    TensorFlow's formula for them, R = C * K // 255; at 1/f size Pillow's DCT-scaled decode."""
    height, width = 49, 67
    cmyk = np.dstack(
        [data_fixtures.smooth_image(height, width), data_fixtures.smooth_image(height, width, 1)]
    )[..., :4]
    path = str(tmp_path / 'cmyk.jpg')
    Image.fromarray(cmyk, 'CMYK').save(path, quality=95)
    with open(path, 'rb') as f:
        data = f.read()

    def reference(factor):
        with Image.open(path) as image:
            image.draft('CMYK', (width // factor, height // factor))
            stored = 255 - np.asarray(image).astype(np.int32)
        return (stored[..., :3] * stored[..., 3:] // 255).astype(np.uint8)

    want = reference(1)
    np.testing.assert_array_equal(dataset_factory.decode_rgb(data).numpy(), want)
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.abs(opencv.astype(np.int32) - want).max() == 2  # what detect gave
    np.testing.assert_array_equal(detection.load_image_rgb(path), want)
    for factor in detection.REDUCTIONS:
        reduced_width, reduced_height = detection.reduced_size(width, height, factor)
        limits = image_io.ImageLimits(max_pixels=reduced_width * reduced_height)
        image = detection.load_image(path, limits)
        assert (image.reduction, image.height, image.width) == (factor, height, width)
        np.testing.assert_array_equal(image.rgb, reference(factor))
    (tmp_path / 'cut.jpg').write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match='cut.jpg: not a decodable image .* a CMYK JPEG'):
        detection.load_image_rgb(str(tmp_path / 'cut.jpg'))


def test_threads_loading_cmyk_jpegs_at_once_share_one_decoder(monkeypatch):
    """Threads that first decoded a CMYK JPEG at the same moment each built a graph and a
    session (all but the cached one never closed). The graph building is slowed down here so
    that they overlap."""
    import threading
    import time

    build = dataset_factory.decode_jpeg

    def slow(*args):
        time.sleep(0.3)
        return build(*args)

    monkeypatch.setattr(dataset_factory, 'decode_jpeg', slow)
    detection._built_jpeg_decoder.cache_clear()
    start, got = threading.Barrier(4), []

    def load():
        start.wait()
        got.append(detection._jpeg_decoder(2))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and all(one is got[0] for one in got)
    detection._built_jpeg_decoder.cache_clear()  # built while decode_jpeg was patched


def test_16_bit_pngs_decode_in_the_graph_to_detects_pixels(tmp_path):
    """Evaluation's and `serving_encoded`'s decoding (`dataset_factory.decode_rgb`) of a 16-bit
    PNG rounds each value v to v / 257 as detect's reading does (TensorFlow's own 8-bit decoding
    truncated: 1 level lower for about half the values). Every 16-bit value, grey and RGB."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    bgr = np.dstack([values, values.T, 65535 - values])
    for name, pixels, rgb in (
        ('grey.png', values, np.dstack([values] * 3)),
        ('bgr.png', bgr, bgr[..., ::-1]),
    ):
        path = str(tmp_path / name)
        assert cv2.imwrite(path, pixels)
        with open(path, 'rb') as f:
            decoded = dataset_factory.decode_rgb(f.read()).numpy()
        np.testing.assert_array_equal(decoded, np.rint(rgb / 257).astype(np.uint8))
        np.testing.assert_array_equal(detection.load_image_rgb(path), decoded)


def test_expand_inputs(tmp_path):
    for name in ('b.jpg', 'a.PNG', 'notes.txt', 'clip.mp4', 'detections.json', '.DS_Store'):
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'c.jpg').write_bytes(b'x')
    d = str(tmp_path)
    paths, skipped, others = detection.expand_inputs(f'{d}, {d}/sub/*.jpg,{d}/b.jpg,{d}/notes.txt')
    assert paths == [os.path.join(d, n) for n in ('a.PNG', 'b.jpg', 'clip.mp4')] + [
        os.path.join(d, 'sub', 'c.jpg'),
        os.path.join(d, 'notes.txt'),  # named alone: kept, reported if it does not decode
    ]
    assert skipped == 0
    assert detection.describe_others(others) == '1 .txt file, 1 folder'
    many = collections.Counter({f'.{c}': 8 - i for i, c in enumerate('abcdefg')})
    assert detection.describe_others(many) == (
        '8 .a files, 7 .b files, 6 .c files, 5 .d files, 4 .e files and 2 more'
    )
    assert [detection.is_video(p) for p in paths] == [False, False, True, False, False]


def test_output_names():
    """`<stem>_det<ext>`: an image's own .jpg, .jpeg or .png (lower case), .mp4 for a video,
    else .png; `_<n>` for the n-th taken name. Only those names are an input's outputs."""
    name = detection_records.output_name
    assert [name(p) for p in ('a/b.JPG', 'c.jpeg', 'd.png', 'e.bmp', 'f.tif', 'v/g.AVI')] == [
        'b_det.jpg',
        'c_det.jpeg',
        'd_det.png',
        'e_det.png',
        'f_det.png',
        'g_det.mp4',
    ]
    assert name('c.jpeg', 2) == 'c_det_2.jpeg'
    is_output = detection_records._is_output_of
    assert is_output('x/c.jpeg', 'c_det.jpeg') and is_output('x/c.jpeg', 'c_det_12.jpeg')
    for other in ('c_det.jpeg.txt', 'c_det_0.jpeg', 'c_det_01.jpeg', 'c_det.png', 'xc_det.jpeg'):
        assert not is_output('x/c.jpeg', other), other


def test_expand_inputs_skips_earlier_outputs_unless_named_alone(tmp_path):
    """A folder or glob holding an earlier detection run's outputs gave them as inputs again
    (`x_det.jpg` -> `x_det_det.jpg`); a file the user names alone is still detected on."""
    for name in ('a.jpg', 'a_det.jpg', 'b.png', 'b_det.png'):
        (tmp_path / name).write_bytes(b'x')
    d = str(tmp_path)
    outputs = {os.path.realpath(os.path.join(d, n)) for n in ('a_det.jpg', 'b_det.png')}
    asked = []

    def outputs_in(folder):
        asked.append(folder)
        return outputs if os.path.realpath(folder) == os.path.realpath(d) else set()

    paths, skipped, others = detection.expand_inputs(f'{d},{d}/*.jpg', outputs_in)
    assert (paths, skipped, others) == ([f'{d}/a.jpg', f'{d}/b.png'], 2, {})
    assert asked == [d]  # once per folder
    paths, skipped, _ = detection.expand_inputs(f'{d}/*_det.*,{d}/b_det.png', outputs_in)
    assert (paths, skipped) == ([f'{d}/b_det.png'], 1)


def test_expand_inputs_without_images_names_what_it_found(tmp_path):
    """`--input=voc/Annotations` said only 'no image processed (0 failed)', after the model had
    loaded."""
    notes = tmp_path / 'Annotations'
    notes.mkdir()
    for i in range(12):
        (notes / f'{i:06d}.xml').write_text('<annotation/>')
    (notes / 'README').write_text('x')
    (notes / 'a.TXT').write_text('x')
    (notes / 'b.txt').write_text('x')
    (notes / 'sub').mkdir()
    known = '.jpg .jpeg .png .bmp .gif .webp .tif .tiff .mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg'
    with pytest.raises(ValueError) as info:
        detection.expand_inputs(str(notes))
    assert str(info.value) == (
        f'--input={notes} holds no image or video file (by extension: {known}; folders are not '
        f'searched recursively); found 12 .xml files, 2 .txt files, 1 extensionless file, '
        f'1 folder.'
    )
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError) as info:
        detection.expand_inputs(f'{tmp_path}/empty, ')
    assert str(info.value).endswith('recursively); found nothing.')
    (notes / 'x_det.png').write_bytes(b'x')
    with pytest.raises(ValueError) as info:
        detection.expand_inputs(str(notes), lambda folder: {os.path.realpath(notes / 'x_det.png')})
    assert str(info.value).endswith(
        'found 1 output of earlier runs (skipped), 12 .xml files, 2 .txt files, '
        '1 extensionless file, 1 folder.'
    )


def test_pad_batch_and_split_detections():
    images = [np.full((2, 3, 3), 7, np.uint8), np.full((4, 1, 3), 9, np.uint8)]
    batch, sizes = detection.pad_batch(images)
    assert batch.shape == (2, 4, 3, 3)
    np.testing.assert_array_equal(sizes, [[2, 3], [4, 1]])
    assert (batch[0, :2] == 7).all() and (batch[0, 2:] == 0).all() and (batch[1, :, 1:] == 0).all()
    outputs = {
        'num_detections': np.array([1, 0]),
        'detection_boxes': np.ones((2, 3, 4)),
        'detection_scores': np.ones((2, 3)),
        'detection_classes': np.ones((2, 3), int),
    }
    split = detection.split_detections(outputs)
    assert [len(d['scores']) for d in split] == [1, 0] and split[0]['boxes'].shape == (1, 4)


def test_batches_are_capped_in_padded_pixels():
    """8 images at the 100 MP limit, padded together, took ~15 GB."""
    limit = detection.MAX_BATCH_PIXELS
    assert limit == 100_000_000
    assert detection.batch_fits([(3000, 4000, 3)] * 8)  # 8 photos of 12 MP: 96 MP
    assert not detection.batch_fits([(3000, 4000, 3)] * 9)
    # Sizes are run apart (nothing padded): landscape and portrait photos count 12 MP each.
    assert detection.batch_fits([(3000, 4000, 3), (4000, 3000, 3)] * 4)
    assert not detection.batch_fits([(3000, 4000, 3), (4000, 3000, 3)] * 4 + [(2000, 2001, 3)])
    assert detection.batch_fits([(3000, 4000, 3), (4000, 3000, 3)] * 4 + [(2000, 2000, 3)])
    assert detection.batch_fits([(10000, 10000, 3)])  # one image always runs
    assert not detection.batch_fits([(10000, 10000, 3), (1, 1, 3)])


def test_padded_batches_split_into_parts_of_capped_padded_pixels():
    """Evaluating an export pads a batch to its largest height and width: a tall and a wide
    image of 1 MP each took 100 MP each in the graph."""
    parts = detection.padded_parts
    assert parts([(3000, 4000)] * 8) == [(0, 8, 3000, 4000)]  # 96 MP: one part
    assert parts([(3000, 4000)] * 9) == [(0, 8, 3000, 4000), (8, 9, 3000, 4000)]
    # Together 10000 x 10000 each; apart, 0.1 MP each.
    assert parts([(10000, 10), (10, 10000)]) == [(0, 1, 10000, 10), (1, 2, 10, 10000)]
    assert parts([(10000, 10000), (1, 1), (1, 1)]) == [(0, 1, 10000, 10000), (1, 3, 1, 1)]
    assert parts([(5000, 10000), (5000, 10000), (1, 1)]) == [(0, 2, 5000, 10000), (2, 3, 1, 1)]
    assert parts([]) == []
