"""Conversion audit 7: real-world VOC/COCO variations that failed or lost data before.

- a JPEG with more than 1 kB after its end-of-image marker (phone trailers, motion photos);
- VOC XML declaring a multi-byte encoding (GBK, GB2312) or an encoding Python does not know;
- VOC XML with a default namespace (`<annotation xmlns="...">`);
- COCO categories without a usable "name", annotations with string image ids, annotations
  without "bbox" (or with an unreadable value): one-line errors naming the entry.
"""

import json
import os

import cv2
import numpy as np
import pytest

from datasets import coco
from datasets import convert
from datasets import image_io
from datasets import pascalvoc
from tests import data_fixtures as fx


def _jpeg(height=40, width=60):
    ok, buf = cv2.imencode('.jpg', fx.smooth_image(height, width)[:, :, ::-1])
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize('trailer', [b'\0' * 2000, b'\0\0\0\x18ftypmp42' + b'\x11' * 5000])
def test_jpeg_with_long_trailer_after_eoi_is_kept_byte_for_byte(trailer):
    data = _jpeg() + trailer  # TensorFlow's and OpenCV's decoders stop at EOI
    image = image_io.normalise_image_bytes(data, file_name='a.jpg')
    assert (image.width, image.height, image.converted_from) == (60, 40, None)
    assert image.data == data


def test_truncated_jpeg_still_refused_and_thumbnail_eoi_does_not_count():
    data = _jpeg()
    thumb = _jpeg(8, 8)  # an APP1 segment with a thumbnail and its own EOI, as EXIF has
    app1 = b'\xff\xe1' + (len(thumb) + 8).to_bytes(2, 'big') + b'Exif\0\0' + thumb
    with_thumb = data[:2] + app1 + data[2:]
    assert image_io._jpeg_ends(data) and image_io._jpeg_ends(with_thumb)
    for truncated in (data[:-2], with_thumb[:-2], with_thumb[: len(with_thumb) // 2]):
        assert not image_io._jpeg_ends(truncated)
        with pytest.raises(image_io.BadImageError):
            image_io.normalise_image_bytes(truncated)
    kept = image_io.normalise_image_bytes(with_thumb)
    assert (kept.width, kept.height, kept.converted_from) == (60, 40, None)


def test_jpeg_with_a_stray_byte_before_its_scan_is_kept():
    """libjpeg skips stray bytes between header segments ("extraneous bytes before marker"), so
    TensorFlow decodes such a JPEG; the segment walk refused it as "truncated JPEG (no
    end-of-image marker)"."""
    import tensorflow as tf

    data = _jpeg()
    sos = data.index(b'\xff\xda')
    stray = data[:sos] + b'\x00' + data[sos:]
    with pytest.raises(image_io.BadImageError):
        list(image_io._jpeg_segments(stray))  # the walk alone fails on it
    assert image_io._jpeg_ends(stray)
    kept = image_io.normalise_image_bytes(stray, file_name='a.jpg')
    assert (kept.width, kept.height, kept.converted_from) == (60, 40, None)
    assert kept.data == stray
    decoded = tf.io.decode_jpeg(stray).numpy()
    assert decoded.shape == (40, 60, 3)
    np.testing.assert_array_equal(decoded, tf.io.decode_jpeg(data).numpy())
    for truncated in (stray[:-2], stray[:700]):
        assert not image_io._jpeg_ends(truncated)  # (OpenCV refuses these too)
        with pytest.raises(image_io.BadImageError):
            image_io.normalise_image_bytes(truncated)


def _voc_xml(root, image_id, text, encoding):
    os.makedirs(os.path.join(root, 'Annotations'), exist_ok=True)
    with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'wb') as f:
        f.write(text.encode(encoding))
    fx.write_image(os.path.join(root, 'JPEGImages', image_id + '.jpg'), fx.smooth_image(40, 60))


_OBJ = (
    '<object><name>{name}</name><difficult>1</difficult><bndbox><xmin>7</xmin><ymin>5</ymin>'
    '<xmax>30.5</xmax><ymax>20</ymax></bndbox></object>'
)


@pytest.mark.parametrize('encoding', ['GBK', 'gb2312', 'Big5', 'Shift_JIS'])
def test_voc_xml_in_a_multibyte_encoding(tmp_path, encoding):
    root = str(tmp_path)
    name = {'Big5': '\u72d7', 'Shift_JIS': '\u72ac'}.get(encoding, '\u72d7')
    _voc_xml(
        root,
        'a',
        f'<?xml version="1.0" encoding="{encoding}"?>\n<annotation><filename>{name}.jpg'
        f'</filename>' + _OBJ.format(name=name) + _OBJ.format(name='dog') + '</annotation>',
        encoding,
    )
    (source,) = pascalvoc.list_examples([root])
    record, _ = pascalvoc.VocLoader(('dog', name))(source)
    # VOC rule: [(ymin-1)/H, (xmin-1)/W, ymax/H, xmax/W] = [4/40, 6/60, 20/40, 30.5/60]
    want = [0.1, 0.1, 0.5, 30.5 / 60]
    assert [(o.name, o.label, o.difficult) for o in record.objects] == [(name, 2, 1), ('dog', 1, 1)]
    for o in record.objects:
        np.testing.assert_allclose(o.box, want, rtol=1e-12)


@pytest.mark.parametrize(
    'declared, name, written',
    [
        ('gb2312', '\u5586', 'gbk'),  # 喆: GBK, not GB2312
        ('GB2312', '\u5586', 'gbk'),
        ('Shift_JIS', '\u3231', 'cp932'),  # ㈱: a NEC row-13 character of Windows
        ('Big5', '\u4f8a', 'big5hkscs'),  # 侊: HKSCS
        ('EUC-KR', '\uac02', 'cp949'),  # 갂: Windows' unified Hangul
    ],
)
def test_voc_xml_declared_gb2312_but_written_in_gbk(tmp_path, declared, name, written):
    """Windows labelling tools declare encoding="gb2312" but write GBK characters: the strict
    codec refused the file ("'gb2312' codec can't decode"). Declared encodings are read as their
    Windows supersets, as the WHATWG Encoding Standard says."""
    with pytest.raises(UnicodeDecodeError):
        name.encode(written).decode(declared)
    root = str(tmp_path)
    _voc_xml(
        root,
        'a',
        f'<?xml version="1.0" encoding="{declared}"?>\n<annotation><filename>a.jpg'
        f'</filename>' + _OBJ.format(name=name) + '</annotation>',
        written,
    )
    (source,) = pascalvoc.list_examples([root])
    record, _ = pascalvoc.VocLoader((name,))(source)
    assert [(o.name, o.label, o.difficult) for o in record.objects] == [(name, 1, 1)]


@pytest.mark.parametrize(
    'declaration, message',
    [
        ('encoding="nonsense"', r'unknown encoding: nonsense .*save it as UTF-8'),
        ('encoding="gbk"', r"'gbk' codec can't decode"),
    ],
)
def test_voc_xml_with_an_unusable_encoding_is_a_bad_example(tmp_path, declaration, message):
    root = str(tmp_path)
    path = os.path.join(root, 'Annotations', 'a.xml')
    os.makedirs(os.path.dirname(path))
    with open(path, 'wb') as f:
        f.write(
            f'<?xml version="1.0" {declaration}?><annotation>'.encode() + b'\xff\xff</annotation>'
        )
    with pytest.raises(
        convert.BadExampleError, match=rf'^{path}: cannot read the annotation XML.*{message}'
    ):
        pascalvoc.read_annotation_xml(path)


@pytest.mark.parametrize('encoding', ['utf-8', 'gb2312', 'utf-16'])
def test_voc_xml_with_a_doctype_is_a_bad_example(tmp_path, encoding):
    """A <!DOCTYPE> declaring entities: 139,500 references to a 20 kB entity in a 10 MB file
    expanded to 3 GB within expat's limits. Refused before its internal subset is read, in the
    encodings expat decodes and in those Python decodes first (gb2312)."""
    path = os.path.join(str(tmp_path), 'Annotations', 'a.xml')
    os.makedirs(os.path.dirname(path))
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<!-- made by hand -->\n'
        '<!DOCTYPE annotation [<!ENTITY e "dog">]>\n'
        '<annotation>' + _OBJ.format(name='&e;') + '</annotation>'
    )
    with open(path, 'wb') as f:
        f.write(text.encode(encoding))
    with pytest.raises(convert.BadExampleError) as info:
        pascalvoc.read_annotation_xml(path)
    assert str(info.value) == (
        f'{path}: cannot read the annotation XML (a <!DOCTYPE> declaring entities at line 3: '
        'VOC annotations declare none, and entities can expand to gigabytes; remove it).'
    )
    # A bare DOCTYPE declares nothing: read as before.
    with open(path, 'w') as f:
        f.write('<!DOCTYPE annotation>\n<annotation>' + _OBJ.format(name='dog') + '</annotation>')
    assert [
        o.name for o in pascalvoc.annotation_objects(pascalvoc.read_annotation_xml(path), path)
    ] == ['dog']


def test_voc_xml_with_a_default_namespace_keeps_its_objects(tmp_path):
    root = str(tmp_path)
    _voc_xml(
        root,
        'a',
        '<annotation xmlns="http://example.com/voc"><filename>a.jpg</filename>'
        '<size><width>60</width><height>40</height></size>'
        + _OBJ.format(name='dog')
        + '</annotation>',
        'utf-8',
    )
    (source,) = pascalvoc.list_examples([root])
    record, report = pascalvoc.VocLoader(('cat', 'dog'))(source)
    assert [(o.label, o.difficult) for o in record.objects] == [(2, 1)]
    np.testing.assert_allclose(record.objects[0].box, [0.1, 0.1, 0.5, 30.5 / 60], rtol=1e-12)
    assert report == []  # <size> and <filename> were read too


def _coco_file(tmp_path, categories, annotations):
    fx.write_image(str(tmp_path / 'images' / 'a.jpg'), fx.smooth_image(40, 60))
    path = str(tmp_path / 'instances.json')
    with open(path, 'w') as f:
        json.dump(
            {
                'images': [{'id': 1, 'file_name': 'a.jpg', 'width': 60, 'height': 40}],
                'categories': categories,
                'annotations': annotations,
            },
            f,
        )
    return path, str(tmp_path / 'images')


_ANN = {'id': 3, 'image_id': 1, 'category_id': 1, 'bbox': [6, 4, 12, 8], 'area': 96, 'iscrowd': 0}


@pytest.mark.parametrize('category', [{'id': 1}, {'id': 1, 'name': None}, {'id': 1, 'name': ' '}])
def test_coco_category_without_a_name_is_a_one_line_error(tmp_path, category):
    path, img_dir = _coco_file(tmp_path, [category], [_ANN])
    with pytest.raises(ValueError, match=rf'^{path}: category id 1 has name .*non-empty "name"'):
        coco.read_annotations(path, img_dir)


def test_coco_string_image_ids_in_annotations_are_an_error(tmp_path):
    path, img_dir = _coco_file(
        tmp_path, [{'id': 1, 'name': 'cat'}], [_ANN, dict(_ANN, id=4, image_id='1')]
    )
    with pytest.raises(
        ValueError,
        match=rf'^{path}: "annotations"\[1\] \(id 4\) has image_id \'1\' \(a string\), which is '
        "no image's id",
    ):
        coco.read_annotations(path, img_dir)


def test_coco_integer_orphans_stay_ignored(tmp_path):
    path, img_dir = _coco_file(
        tmp_path, [{'id': 1, 'name': 'cat'}], [_ANN, dict(_ANN, id=4, image_id=9)]
    )
    (source,), names, _, _ = coco.read_annotations(path, img_dir)
    assert names == ('cat',) and [a[0] for a in source.annotations] == [3]


@pytest.mark.parametrize(
    'remove, change, problem',
    [
        ('bbox', {}, "has no 'bbox'"),
        ('category_id', {}, "has no 'category_id'"),
        (None, {'bbox': None}, r"cannot be read \(bbox None is null, not an array\)"),
        (
            None,
            {'bbox': '6,4,12,8'},
            r"cannot be read \(bbox '6,4,12,8' is a string, not an array\)",
        ),
        (None, {'bbox': [6, '4', 12, 8]}, r"cannot be read \(bbox value '4' is not a number\)"),
        (None, {'area': '96'}, r"cannot be read \(area '96' is not a number\)"),
        (None, {'iscrowd': 'yes'}, r"cannot be read \(iscrowd 'yes' is a string, not 0 or 1\)"),
        (None, {'iscrowd': None}, r"cannot be read \(iscrowd None is null, not 0 or 1\)"),
        (None, {'iscrowd': 2}, r"cannot be read \(iscrowd 2 is a number, not 0 or 1\)"),
    ],
)
def test_coco_unreadable_annotation_names_the_annotation(tmp_path, remove, change, problem):
    ann = dict(_ANN, id=7, **change)
    ann.pop(remove, None)
    path, img_dir = _coco_file(tmp_path, [{'id': 1, 'name': 'cat'}], [_ANN, ann])
    with pytest.raises(ValueError, match=rf'^{path}: "annotations"\[1\] \(id 7\) {problem}; '):
        coco.read_annotations(path, img_dir)


@pytest.mark.parametrize(
    'image, shown',
    [
        ({'file_name': 'a.jpg'}, r"\(file_name 'a.jpg'\) has no \"id\""),
        ({'id': 1}, r'\(id 1\) has no "file_name"'),
        ({'width': 60}, r'has no "id" and no "file_name"'),
    ],
)
def test_coco_image_without_id_or_file_name_names_the_image(tmp_path, image, shown):
    """Before, a KeyError's general 'not a COCO instances file' message named neither."""
    path, img_dir = _coco_file(tmp_path, [{'id': 1, 'name': 'cat'}], [_ANN])
    with open(path) as f:
        data = json.load(f)
    data['images'].append(image)
    with open(path, 'w') as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=rf'^{path}: "images"\[1\] ?{shown}; every image needs'):
        coco.read_annotations(path, img_dir)
