"""VOC conversion: round trip and one fixture per real-world input problem."""

import hashlib
import io
import json
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets import convert
from datasets import image_io
from datasets import labels
from datasets import pascalvoc
from inference import detection
from tests import data_fixtures as fx

VOC = labels.VOC_CLASSES


def _label(name):
    return VOC.index(name) + 1


def _meta_entries(meta, kind):
    return [e for e in meta['report']['entries'] if e['kind'] == kind]


def test_round_trip_boxes_labels_flags_image(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    img_a, img_b = fx.smooth_image(120, 200, seed=1), fx.smooth_image(90, 64, seed=2)
    objs_a = [
        fx.voc_object('dog', (10, 20, 150, 110), difficult='1', truncated='0'),
        fx.voc_object('person', (1, 1, 200, 120), difficult='0', truncated='1'),
        fx.voc_object('car', (33.5, 40.25, 80.75, 60), difficult='0', truncated='0'),
    ]
    # Two of one class in one image: num_images counts the image once.
    objs_b = [
        fx.voc_object('tvmonitor', (5, 6, 60, 88)),
        fx.voc_object('tvmonitor', (1, 2, 30, 40)),
    ]
    fx.add_voc_example(root, '000001', img_a, objs_a)
    fx.add_voc_example(root, '000002', img_b, objs_b)
    fx.add_voc_example(root, '000003', img_b, [])  # an image without objects is a negative example
    meta = fx.convert_voc([root], out)

    got = fx.read_examples(out)
    assert [g['filename'] for g in got] == [b'000001.jpg', b'000002.jpg', b'000003.jpg']
    a, b, c = got
    np.testing.assert_allclose(
        a['bboxes'], [fx.voc_rel(o['box'], 200, 120) for o in objs_a], atol=1e-6
    )
    np.testing.assert_array_equal(a['labels'], [_label('dog'), _label('person'), _label('car')])
    np.testing.assert_array_equal(a['difficult'], [1, 0, 0])
    np.testing.assert_array_equal(a['truncated'], [0, 1, 0])
    np.testing.assert_array_equal(a['shape'], [120, 200, 3])
    np.testing.assert_allclose(
        b['bboxes'], [fx.voc_rel(o['box'], 64, 90) for o in objs_b], atol=1e-6
    )
    assert c['bboxes'].shape == (0, 4) and c['labels'].shape == (0,)
    assert a['image_id'] == -1
    # A 3-channel JPEG is stored byte for byte; the decoded pixels match OpenCV's decode of the file.
    raw = fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    with open(os.path.join(root, 'JPEGImages', '000001.jpg'), 'rb') as f:
        assert raw[0]['image/encoded'][0] == f.read()
    assert raw[0]['image/object/bbox/label_text'] == [b'dog', b'person', b'car']
    assert raw[0]['image/shape'] == [120, 200, 3] and raw[0]['image/format'] == [b'jpeg']
    ref = cv2.cvtColor(
        cv2.imread(os.path.join(root, 'JPEGImages', '000001.jpg')), cv2.COLOR_BGR2RGB
    )
    # The reader decodes as OpenCV (and detect_ssd_network.py) do: TF's default IDCT did not.
    np.testing.assert_array_equal(a['image'], ref)
    # Metadata: counts per class, computed by hand from the fixture.
    classes = {c['name']: c for c in meta['classes']}
    assert meta['num_examples'] == 3 and meta['num_classes_including_background'] == 21
    assert (
        classes['dog']['num_images'],
        classes['dog']['num_objects'],
        classes['dog']['num_difficult'],
    ) == (1, 1, 1)
    assert (classes['tvmonitor']['num_images'], classes['tvmonitor']['num_objects']) == (1, 2)
    assert classes['cat']['num_objects'] == 0
    with open(os.path.join(out, 'data_000.tfrecord'), 'rb') as f:
        shard = f.read()
    assert meta['files'] == [
        {
            'name': 'data_000.tfrecord',
            'num_examples': 3,
            'size': len(shard),
            'sha256': hashlib.sha256(shard).hexdigest(),
        }
    ]


def test_difficult_and_truncated_read_from_element_text(tmp_path):
    """The older port tested the element's truthiness (always False for a leaf) and wrote 0 everywhere."""
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    objs = [
        fx.voc_object('cat', (1, 1, 10, 10), difficult='1', truncated='1'),
        fx.voc_object('cat', (1, 1, 10, 10), difficult=None, truncated=None),  # missing -> 0
        fx.voc_object('cat', (1, 1, 10, 10), difficult='', truncated=''),  # empty -> 0
        fx.voc_object('cat', (1, 1, 10, 10), difficult=' 1 ', truncated='0'),
    ]
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 20), objs)
    fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    np.testing.assert_array_equal(ex['difficult'], [1, 0, 0, 1])
    np.testing.assert_array_equal(ex['truncated'], [1, 0, 0, 0])


def test_part_boxes_are_not_objects(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    person = fx.voc_object(
        'person', (10, 10, 50, 90), parts=[('head', (20, 12, 40, 30)), ('hand', (12, 50, 18, 58))]
    )
    fx.add_voc_example(root, 'a', fx.smooth_image(100, 60), [person])
    fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    np.testing.assert_allclose(ex['bboxes'], [fx.voc_rel((10, 10, 50, 90), 60, 100)], atol=1e-6)
    np.testing.assert_array_equal(ex['labels'], [_label('person')])


def test_annotation_objects_name_flags_and_own_box(tmp_path):
    """Parsing alone: `<name>` is stripped (' cat ' is 'cat'); a flag is its number's
    integer part (0.5 is 0, 2 is 1); the box is the object's own `<bndbox>`,
    not that of a `<part>` written before it; `<object>`s nested in a part are not objects."""
    path = str(tmp_path / 'a.xml')
    with open(path, 'w') as f:
        f.write(
            '<annotation><object><name> cat </name><difficult>0.5</difficult>'
            '<truncated>2</truncated><part><name>head</name><object><name>dog</name></object>'
            '<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></part>'
            '<bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>'
            '</object></annotation>'
        )
    (obj,) = pascalvoc.annotation_objects(pascalvoc.read_annotation_xml(path), path)
    assert obj.name == 'cat'
    assert (obj.flag('difficult'), obj.flag('truncated')) == (0, 1)
    assert obj.box() == (1.0, 2.0, 30.0, 40.0)


@pytest.mark.parametrize('xml_size', [(0, 0), (61, 100), None])
def test_size_from_decoded_image_not_xml(tmp_path, xml_size):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    fx.add_voc_example(
        root, 'a', fx.smooth_image(100, 60), [fx.voc_object('cow', (11, 21, 40, 70))], size=xml_size
    )
    meta = fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    np.testing.assert_allclose(ex['bboxes'], [[0.2, 10 / 60, 0.7, 40 / 60]], atol=1e-6)
    fixed = _meta_entries(meta, 'fixed')
    assert len(fixed) == 1 and fixed[0]['file'].endswith(os.path.join('Annotations', 'a.xml'))
    assert 'decoded image is 60x100' in fixed[0]['detail']


def test_image_found_by_id_not_by_filename(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    fx.add_voc_example(
        root,
        'a',
        fx.smooth_image(30, 40),
        [fx.voc_object('cat', (1, 1, 40, 30))],
        filename='IMG_1234.JPG',
    )
    fx.add_voc_example(
        root, 'b', fx.smooth_image(30, 40), [fx.voc_object('dog', (1, 1, 20, 30))], ext='.png'
    )
    meta = fx.convert_voc([root], out)
    a, b = fx.read_examples(out)
    assert (a['filename'], b['filename']) == (b'a.jpg', b'b.png')
    np.testing.assert_array_equal(b['labels'], [_label('dog')])
    details = [e['detail'] for e in _meta_entries(meta, 'fixed') if e['file'].endswith('a.xml')]
    assert details == ["<filename> is 'IMG_1234.JPG'; image found by id: a.jpg"]


def _png_bytes(image, **options):
    buf = io.BytesIO()
    image.save(buf, format='PNG', **options)
    return buf.getvalue()


def _palette_png(rgb):
    return _png_bytes(Image.fromarray(rgb).convert('P', palette=Image.ADAPTIVE, colors=16))


def test_only_8_bit_grey_or_rgb_pngs_are_stored_byte_for_byte():
    """A 1-bit grey PNG decodes to a 2-D uint8 array as an 8-bit one does: only IHDR's bit depth
    (byte 24) tells them apart, and only the 8-bit one is kept as it is."""
    grey = np.where(fx.smooth_image(12, 16, seed=5)[..., 0] > 128, 255, 0).astype(np.uint8)
    eight_bit = _png_bytes(Image.fromarray(grey))
    kept = image_io.normalise_image_bytes(eight_bit)
    assert (kept.data, kept.format, kept.converted_from) == (eight_bit, 'png', None)
    one_bit = _png_bytes(Image.fromarray(grey).convert('1'))
    assert one_bit[24:26] == b'\x01\x00'  # IHDR: bit depth 1, colour type 0 (grey)
    converted = image_io.normalise_image_bytes(one_bit)
    assert (converted.format, converted.converted_from) == ('jpeg', 'PNG grayscale 1-bit')
    assert (converted.height, converted.width) == (12, 16)
    decoded = cv2.imdecode(np.frombuffer(converted.data, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert np.abs(decoded.astype(int) - grey).mean() < 8


def test_image_modes_stored_as_3_channel_jpeg(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    rgb = fx.smooth_image(40, 50, seed=3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    rgba_png = cv2.imencode('.png', cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))[1].tobytes()
    png_rgb = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
    # A tEXt chunk after IHDR whose CRC is wrong: libpng warns and skips an ancillary chunk.
    text = b'tEXt' + b'Comment\x00hello'
    chunk = struct.pack('>I', len(text) - 4) + text + struct.pack('>I', zlib.crc32(text) ^ 1)
    png_bad_crc = png_rgb[:33] + chunk + png_rgb[33:]
    damaged = '(damaged: a chunk cut short or failing its CRC, or bytes after IEND)'
    gray_alpha = _png_bytes(Image.fromarray(np.dstack([gray, gray]), 'LA'))
    # RGB with a tRNS chunk (one transparent colour): a 4th channel for OpenCV.
    rgb_trns = _png_bytes(Image.fromarray(rgb), transparency=tuple(int(v) for v in rgb[0, 0]))
    png16 = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)[
        1
    ].tobytes()
    palette = _palette_png(rgb)
    palette_rgb = np.asarray(Image.open(io.BytesIO(palette)).convert('RGB'))
    cases = {  # id: (bytes or array, file extension, expected RGB pixels, what the report says)
        'rgba_named_jpg': (
            rgba_png,
            '.jpg',
            rgb,
            'PNG RGBA data in a .jpg file: decoded as PNG, alpha dropped',
        ),
        'gray_alpha_png': (
            gray_alpha,
            '.png',
            np.dstack([gray] * 3),
            'PNG grayscale+alpha: decoded as PNG, alpha dropped',
        ),
        'rgb_trns_png': (rgb_trns, '.png', rgb, 'PNG RGB: decoded as PNG, alpha dropped'),
        # Damage OpenCV reads past (TensorFlow's libpng would decode it again at every epoch).
        'png_bad_crc': (png_bad_crc, '.png', rgb, f'PNG RGB: decoded as PNG {damaged}'),
        'png_trailer': (png_rgb + b'junk', '.png', rgb, f'PNG RGB: decoded as PNG {damaged}'),
        'palette_png': (
            palette,
            '.png',
            palette_rgb,
            'PNG palette 4-bit: decoded as PNG, palette expanded to RGB',
        ),
        'png16': (
            png16,
            '.png',
            rgb,
            'PNG RGB 16-bit: decoded as PNG, 16-bit values scaled to 8-bit',
        ),
    }
    for image_id, (image, ext, _, _) in cases.items():
        fx.add_voc_example(
            root, image_id, image, [fx.voc_object('cat', (1, 1, 50, 40))], ext=ext, size=(50, 40)
        )
    meta = fx.convert_voc([root], out)
    got = {ex['filename'].decode().split('.')[0]: ex for ex in fx.read_examples(out)}
    raw = {
        r['image/filename'][0].decode().split('.')[0]: r
        for r in fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    }
    reports = {os.path.basename(e['file'])[:-4]: e['detail'] for e in _meta_entries(meta, 'fixed')}
    for image_id, (_, _, expected, report) in cases.items():
        assert raw[image_id]['image/encoded'][0][:3] == b'\xff\xd8\xff', image_id
        assert raw[image_id]['image/channels'] == [3] and raw[image_id]['image/format'] == [b'jpeg']
        assert got[image_id]['image'].shape == (40, 50, 3)
        # Reference: the expected pixels through JPEG q95 (OpenCV): the converter's input goes
        # through one more lossy step for the JPEG cases, hence the tolerance.
        ref = cv2.imencode(
            '.jpg', cv2.cvtColor(expected, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )[1]
        ref = cv2.cvtColor(cv2.imdecode(ref, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        err = np.abs(got[image_id]['image'].astype(int) - ref.astype(int))
        assert err.mean() < 1.5, (image_id, err.mean())
        # The reader decodes the stored JPEG as OpenCV does, pixel for pixel.
        stored = np.frombuffer(raw[image_id]['image/encoded'][0], np.uint8)
        opencv = cv2.cvtColor(cv2.imdecode(stored, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(got[image_id]['image'], opencv, err_msg=image_id)
        assert (
            reports[image_id] == f'{image_id}{cases[image_id][1]}: {report}, re-encoded as JPEG '
            f'(quality 95)'
        ), reports[image_id]


def test_grayscale_jpeg_and_8_bit_png_stored_as_they_are(tmp_path):
    """A grayscale JPEG (COCO has them) and an 8-bit grayscale or RGB PNG (own datasets; one
    named .jpg too) are stored byte for byte, and the reader decodes each to the pixels detection
    gives the same file (a grey one: grey in R, G and B): re-encoded at quality 95, the evaluation
    scored other pixels than detect_ssd_network.py saw."""
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    rgb = fx.smooth_image(40, 50, seed=5)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cases = {  # id: (image, extension, stored format, ndim of OpenCV's decoding of the file)
        'gray_jpeg': (gray, '.jpg', b'jpeg', 2),
        'gray_png': (gray, '.png', b'png', 2),
        'rgb_png': (rgb, '.png', b'png', 3),
        'rgb_png_named_jpg': (
            cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes(),
            '.jpg',
            b'png',
            3,
        ),
    }
    for image_id, (image, ext, _, _) in cases.items():
        fx.add_voc_example(
            root, image_id, image, [fx.voc_object('cat', (1, 1, 50, 40))], ext=ext, size=(50, 40)
        )
    meta = fx.convert_voc([root], out)
    assert _meta_entries(meta, 'fixed') == []
    raw = {
        r['image/filename'][0].decode().split('.')[0]: r
        for r in fx.raw_features(os.path.join(out, 'data_000.tfrecord'))
    }
    got = {ex['filename'].decode().split('.')[0]: ex for ex in fx.read_examples(out)}
    for image_id, (_, ext, stored, ndim) in cases.items():
        path = os.path.join(root, 'JPEGImages', image_id + ext)
        with open(path, 'rb') as f:
            data = f.read()
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).ndim == ndim
        assert raw[image_id]['image/encoded'][0] == data, image_id
        assert raw[image_id]['image/format'] == [stored]
        assert raw[image_id]['image/channels'] == [3] and raw[image_id]['image/shape'] == [
            40,
            50,
            3,
        ]
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(got[image_id]['image'], bgr[..., ::-1], err_msg=image_id)
        np.testing.assert_array_equal(got[image_id]['image'], detection.load_image(path).rgb)


def test_boxes_clipped_one_pixel_and_inverted(tmp_path):
    """VOC pixels are 1-based and inclusive (the devkit's width is xmax - xmin + 1): a box with
    xmin == xmax is one pixel wide, [xmin - 1, xmax], and kept; it was dropped as a "zero-area or
    inverted box". Only xmax < xmin (ymax < ymin), or nothing left after clipping, is dropped."""
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    w, h = 80, 50
    objs = [
        fx.voc_object('car', (0, 0, 40, 25)),  # 0-based tool: 0 clamps to the edge
        fx.voc_object('car', (61, 11, 95, 60)),  # beyond right/bottom: clipped to W, H
        fx.voc_object('bus', (30, 10, 30, 20)),  # xmin == xmax: one pixel wide, kept
        fx.voc_object('bus', (50, 30, 20, 40)),  # inverted: dropped
        fx.voc_object('bus', (90, 10, 120, 20)),  # entirely right of the image: dropped
        fx.voc_object('car', (1, 1, 80, 50)),  # whole image, unchanged
        fx.voc_object('bus', (5, 7, 12, 7)),  # ymin == ymax: one pixel tall, kept
        fx.voc_object('bus', (80, 50, 80, 50)),  # the bottom-right pixel, kept
        fx.voc_object('bus', (10, 30, 20, 29)),  # inverted in y: dropped
        fx.voc_object('bus', (81, 5, 81, 9)),  # one pixel wide, right of the image: dropped
    ]
    fx.add_voc_example(root, 'a', fx.smooth_image(h, w), objs)
    meta = fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    # (ymin, xmin, ymax, xmax) = ((ymin-1)/H, (xmin-1)/W, ymax/H, xmax/W), by hand for W=80, H=50:
    # (30, 10, 30, 20) -> (9/50, 29/80, 20/50, 30/80); (5, 7, 12, 7) -> (6/50, 4/80, 7/50, 12/80);
    # (80, 50, 80, 50) -> (49/50, 79/80, 1, 1).
    np.testing.assert_allclose(
        ex['bboxes'],
        [
            [0, 0, 0.5, 0.5],
            [0.2, 0.75, 1, 1],
            [0.18, 0.3625, 0.4, 0.375],
            [0, 0, 1, 1],
            [0.12, 0.05, 0.14, 0.15],
            [0.98, 0.9875, 1, 1],
        ],
        atol=1e-6,
    )
    assert list(ex['labels']) == [_label(n) for n in ('car', 'car', 'bus', 'car', 'bus', 'bus')]
    assert [d['detail'] for d in _meta_entries(meta, 'dropped_object')] == [
        'object 3 (bus): inverted box, xmax < xmin (xmin=50, ymin=30, xmax=20, ymax=40)',
        'object 4 (bus): box outside the 80x50 image (xmin=90, ymin=10, xmax=120, ymax=20)',
        'object 8 (bus): inverted box, ymax < ymin (xmin=10, ymin=30, xmax=20, ymax=29)',
        'object 9 (bus): box outside the 80x50 image (xmin=81, ymin=5, xmax=81, ymax=9)',
    ]
    clipped = [e['detail'] for e in _meta_entries(meta, 'fixed')]
    assert clipped == [
        'object 0 (car): xmin=0, ymin=0 clipped to the 80x50 image',
        'object 1 (car): xmax=95, ymax=60 clipped to the 80x50 image',
    ]
    assert meta['report']['counts']['dropped_object'] == 4
    # The rule itself: a single pixel is kept; both axes inverted say both.
    assert pascalvoc.voc_box_to_relative(3, 4, 3, 4, 10, 20) == ((0.15, 0.2, 0.2, 0.3), [], None)
    assert pascalvoc.voc_box_to_relative(5, 6, 4, 5, 10, 20) == (
        None,
        [],
        'inverted box, xmax < xmin and ymax < ymin (xmin=5, ymin=6, xmax=4, ymax=5)',
    )


def test_unknown_class_fails_naming_file_or_is_skipped(tmp_path):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(
        root,
        'a',
        fx.smooth_image(20, 20),
        [fx.voc_object('cat', (1, 1, 9, 9)), fx.voc_object('unicorn', (2, 2, 9, 9))],
    )
    with pytest.raises(convert.UnknownClassError) as e:
        fx.convert_voc([root], str(tmp_path / 'out1'))
    msg = str(e.value)
    assert (
        os.path.join('Annotations', 'a.xml') in msg
        and "'unicorn'" in msg
        and 'aeroplane, bicycle' in msg
    )
    assert not os.path.exists(tmp_path / 'out1' / 'data_metadata.json')
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), skip_unknown_classes=True)
    (ex,) = fx.read_examples(str(tmp_path / 'out2'))
    np.testing.assert_array_equal(ex['labels'], [_label('cat')])
    unknown = _meta_entries(meta, 'unknown_class')
    assert (
        len(unknown) == 1
        and "'unicorn'" in unknown[0]['detail']
        and unknown[0]['file'].endswith('a.xml')
    )


def _bad_examples(root):
    good = fx.smooth_image(30, 30)
    box = [fx.voc_object('cat', (1, 1, 30, 30))]
    fx.add_voc_example(root, 'good1', good, box)
    fx.add_voc_example(root, 'garbage', b'this is not an image', box, size=(30, 30))
    jpeg = cv2.imencode('.jpg', good)[1].tobytes()
    fx.add_voc_example(root, 'truncated', jpeg[: len(jpeg) // 2], box, size=(30, 30))
    fx.add_voc_example(root, 'badxml', good, box)
    with open(os.path.join(root, 'Annotations', 'badxml.xml'), 'w') as f:
        f.write('<annotation><object><name>cat</name>')
    fx.add_voc_example(root, 'noimage', good, box)
    os.remove(os.path.join(root, 'JPEGImages', 'noimage.jpg'))
    fx.add_voc_example(root, 'good2', good, box)


def test_corrupt_inputs_fail_naming_the_file(tmp_path):
    root = str(tmp_path / 'VOC')
    _bad_examples(root)
    for bad in ('garbage', 'truncated', 'badxml', 'noimage'):
        sources = [s for s in fx.pascalvoc.list_examples([root]) if s.image_id in ('good1', bad)]
        with pytest.raises(convert.BadExampleError, match=bad):
            convert.convert(
                sources,
                fx.pascalvoc.VocLoader(VOC),
                VOC,
                str(tmp_path / bad),
                'data',
                num_workers=1,
                show_progress=False,
            )
        assert os.listdir(tmp_path / bad) == [], 'a failed run must leave nothing behind'


def test_corrupt_inputs_skipped_and_reported(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    _bad_examples(root)
    meta = fx.convert_voc([root], out, skip_bad_examples=True)
    assert [ex['filename'] for ex in fx.read_examples(out)] == [b'good1.jpg', b'good2.jpg']
    skipped = {os.path.basename(e['file']) for e in _meta_entries(meta, 'skipped_example')}
    assert skipped == {'garbage.xml', 'truncated.xml', 'badxml.xml', 'noimage.xml'}
    assert meta['num_examples'] == 2 and meta['report']['counts']['skipped_example'] == 4


def test_hundreds_of_objects_kept_whole(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    rng = np.random.default_rng(0)
    boxes = []
    for _ in range(300):
        x0, y0 = (int(v) for v in rng.integers(1, 150, 2))
        boxes.append((x0, y0, x0 + int(rng.integers(1, 50)), y0 + int(rng.integers(1, 50))))
    fx.add_voc_example(
        root, 'crowd', fx.smooth_image(200, 200), [fx.voc_object('sheep', b) for b in boxes]
    )
    fx.convert_voc([root], out)
    (ex,) = fx.read_examples(out)
    assert ex['bboxes'].shape == (300, 4)
    np.testing.assert_allclose(ex['bboxes'], [fx.voc_rel(b, 200, 200) for b in boxes], atol=1e-6)


def test_labels_file_multiple_dirs_and_split(tmp_path):
    d07, d12, out = str(tmp_path / 'VOC2007'), str(tmp_path / 'VOC2012'), str(tmp_path / 'out')
    labels_path = tmp_path / 'labels.txt'
    labels_path.write_text('widget\n\n  gadget \n')
    names = labels.read_labels_file(str(labels_path))
    assert names == ('widget', 'gadget')
    for root, ids in ((d07, ['000001', '000002', '000003']), (d12, ['2012_000001', '2012_000002'])):
        for i in ids:
            fx.add_voc_example(
                root, i, fx.smooth_image(20, 20), [fx.voc_object('gadget', (1, 1, 10, 10))]
            )
    fx.write_split(d07, 'train', ['000003', '000001'])
    fx.write_split(d12, 'train', ['2012_000002'])
    meta = fx.convert_voc([d07, d12], out, split='train', class_names=names)
    got = fx.read_examples(out)
    assert [g['filename'] for g in got] == [b'000003.jpg', b'000001.jpg', b'2012_000002.jpg']
    assert all(list(g['labels']) == [2] for g in got)
    assert [c['name'] for c in meta['classes']] == ['widget', 'gadget']
    with pytest.raises(FileNotFoundError, match=r"splits present: \['train'\]"):
        fx.convert_voc([d07], out, split='trian', class_names=names)
    with open(os.path.join(out, 'data_metadata.json')) as f:
        assert json.load(f) == meta


def test_a_listed_image_without_annotation_names_the_list_line(tmp_path):
    """An id in ImageSets/Main/<split>.txt without its Annotations/<id>.xml failed as a bare
    "[Errno 2] No such file" of the XML: it is a bad example naming the list's line (skipped
    with --skip_bad_examples)."""
    root = str(tmp_path / 'voc')
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 20), [fx.voc_object('cat', (1, 1, 9, 9))])
    fx.write_split(root, 'train', ['a', 'ghost'])
    listed = pascalvoc.list_examples([root], 'train')
    assert [(s.image_id, s.problem) for s in listed] == [
        ('a', None),
        (
            'ghost',
            f'{root}/ImageSets/Main/train.txt, line 2: image id \'ghost\' has no annotation file '
            f'{root}/Annotations/ghost.xml: the list names an image the folder does not hold',
        ),
    ]


def test_labels_file_rejects_duplicates(tmp_path):
    p = tmp_path / 'labels.txt'
    p.write_text('a\nb\na\n')
    with pytest.raises(ValueError, match="'a' is listed twice"):
        labels.read_labels_file(str(p))


def test_folder_errors_name_no_flag_of_one_script(tmp_path):
    """list_examples serves the converter (--dataset_dir, --split) and score_detections.py
    (--voc_dir): its errors say what is expected, not one script's flag."""
    with pytest.raises(FileNotFoundError) as err:
        pascalvoc.list_examples([str(tmp_path)], 'test')
    assert 'expected a VOC folder (Annotations/' in str(err.value)
    assert '--dataset_dir' not in str(err.value)
    (tmp_path / 'Annotations').mkdir()
    (tmp_path / 'ImageSets' / 'Main').mkdir(parents=True)
    (tmp_path / 'ImageSets' / 'Main' / 'trainval.txt').write_text('a\n')
    with pytest.raises(FileNotFoundError, match=r"splits present: \['trainval'\]\); choose one"):
        pascalvoc.list_examples([str(tmp_path)], 'tset')
