"""Bad, huge or hostile input to the converter and the reader: nothing deleted, nothing executed,
nothing silently partial (issue #16, data layer)."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from datasets import convert
from datasets import dataset_factory
from datasets import example_format as ef
from datasets import image_io
from datasets import labels
from datasets import pascalvoc
from inference import detection
from tests import data_fixtures as fx
from tests.conftest import run_script

VOC = labels.VOC_CLASSES
BOX = [fx.voc_object('cat', (2, 3, 10, 12))]


def _entries(meta, kind='skipped_example'):
    return {
        os.path.basename(e['file']): e['detail']
        for e in meta['report']['entries']
        if e['kind'] == kind
    }


def _good(root, image_id='good'):
    fx.add_voc_example(root, image_id, fx.smooth_image(20, 24), BOX)


def _run_cli(*args):
    return run_script('tf_convert_data.py', *args, timeout=300)


# --- 1. resource limits -----------------------------------------------------------------------


def test_header_sizes_are_read_without_decoding():
    bomb = fx.jpeg_claiming(30000, 30000)
    assert len(bomb) == 629  # the bomb: 629 bytes that decode to 30000x30000x3 = 2.7 GB
    assert image_io.image_header_size(bomb) == ('JPEG', 30000, 30000)
    for ext, fmt in (('.png', 'PNG'), ('.bmp', 'BMP'), ('.tiff', 'TIFF'), ('.webp', 'WEBP')):
        data = cv2.imencode(ext, np.zeros((7, 9, 3), np.uint8))[1].tobytes()
        assert image_io.image_header_size(data) == (fmt, 9, 7)
    # TensorFlow's JPEG decoder refuses height * width * 3 >= 2**29: 13378^2 * 3 = 536912652 > 2**29.
    limits = image_io.ImageLimits(max_pixels=10**12)
    image_io.check_size(13377, 13377, limits)  # 536832387 bytes: TensorFlow still decodes it
    with pytest.raises(
        image_io.BadImageError, match="13378x13378 = 178970884 pixels: TensorFlow's JPEG decoder"
    ):
        image_io.check_size(13378, 13378, limits)
    # Both bounds are inclusive: 178956970 * 3 = 536870910 < 2**29 bytes, one pixel more is not.
    assert 178956970 * 3 < 2**29 <= 178956971 * 3
    image_io.check_size(178956970, 1, limits)
    with pytest.raises(image_io.BadImageError, match="178956971 pixels: TensorFlow's JPEG"):
        image_io.check_size(178956971, 1, limits)
    image_io.check_size(24, 20, image_io.ImageLimits(max_pixels=480))
    with pytest.raises(
        image_io.BadImageError, match='480 pixels: more than --max_image_pixels=479'
    ):
        image_io.check_size(24, 20, image_io.ImageLimits(max_pixels=479))


def test_jpegs_of_many_scans_are_refused_before_decoding(tmp_path):
    """Each scan is decoded over the whole image, data or not: 20000 empty scans in a 294 KB
    4000x4000 file took TensorFlow 92 s and OpenCV 47 s to decode. The converter and detect
    refuse more than MAX_JPEG_SCANS from the bytes; libjpeg's own 10 scans pass."""
    progressive = fx.jpeg_with_empty_scans(0)
    assert image_io.jpeg_scans(progressive) == 10  # libjpeg's progressive script for colour
    limit = image_io.MAX_JPEG_SCANS
    # The SavedModel's count (`serving_encoded`, `serving_tf_example`) is the bytes' up to one
    # over the limit: the same files pass.
    for extra, count in ((0, 10), (limit - 10, limit), (limit - 9, limit + 1), (limit, limit + 1)):
        scans = detection._jpeg_scans(tf.constant(fx.jpeg_with_empty_scans(extra)))
        assert int(scans) == count, extra
    assert image_io.image_header_size(fx.jpeg_with_empty_scans(limit - 10)) == ('JPEG', 16, 16)
    bomb = fx.jpeg_with_empty_scans(limit - 9)
    why = (
        f'JPEG of {limit + 1} scans, more than the {limit} it may have (each is decoded over the '
        f'whole image: that many take minutes); re-save the image'
    )
    with pytest.raises(image_io.BadImageError) as err:
        image_io.normalise_image_bytes(bomb)
    assert str(err.value) == why
    (tmp_path / 'scans.jpg').write_bytes(bomb)
    with pytest.raises(ValueError) as err:
        detection.load_image(str(tmp_path / 'scans.jpg'))
    assert str(err.value) == f'{tmp_path / "scans.jpg"}: {why}.'


def test_decompression_bomb_and_pixel_limit(tmp_path):
    root = str(tmp_path / 'VOC')
    _good(root)
    fx.add_voc_example(root, 'bomb', fx.jpeg_claiming(30000, 30000), BOX, size=(30000, 30000))
    fx.add_voc_example(
        root, 'big', fx.jpeg_claiming(12000, 9000), BOX, size=(12000, 9000)
    )  # 108 M pixels
    with pytest.raises(
        convert.BadExampleError,
        match=r'big\.jpg: JPEG image of 12000x9000 = 108000000 pixels: more '
        r'than --max_image_pixels=100000000; raise the limit',
    ):
        fx.convert_voc([root], str(tmp_path / 'out1'))
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), skip_bad_examples=True)
    skipped = _entries(meta)
    assert sorted(skipped) == ['big.xml', 'bomb.xml']
    assert skipped['bomb.xml'].endswith(
        "bomb.jpg: JPEG image of 30000x30000 = 900000000 pixels: TensorFlow's JPEG "
        'decoder refuses images of more than 178956970 pixels (height x width x 3 '
        'must stay below 2**29 bytes), so training could not read it; downscale or '
        'tile the image'
    )
    assert meta['num_examples'] == 1 and meta['report']['counts']['skipped_example'] == 2
    # Nothing left: the reasons are in the error (the report that holds them is not written; it
    # said "see the reasons above" with none above).
    bad_only = str(tmp_path / 'bad_only')
    shutil.copytree(root, bad_only)
    os.remove(os.path.join(bad_only, 'Annotations', 'good.xml'))
    with pytest.raises(ValueError) as info:
        fx.convert_voc([bad_only], str(tmp_path / 'out3'), skip_bad_examples=True)
    lines = str(info.value).splitlines()
    assert (
        lines[0] == 'every one of the 2 examples was skipped; nothing written. The first reasons:'
    )
    assert [line.split(': ', 1)[0] for line in lines[1:]] == [
        f'  {bad_only}/Annotations/{name}.xml' for name in ('big', 'bomb')
    ]
    assert lines[2].endswith(skipped['bomb.xml'].replace(root, bad_only))
    # A lower limit refuses ordinary images; the message names the flag.
    loader = pascalvoc.VocLoader(VOC, image_limits=image_io.ImageLimits(max_pixels=400))
    (good,) = [s for s in pascalvoc.list_examples([root]) if s.image_id == 'good']
    with pytest.raises(
        image_io.BadImageError, match=r'24x20 = 480 pixels: more than --max_image_pixels=400'
    ):
        image_io.load_image(os.path.join(root, 'JPEGImages', 'good.jpg'), loader.image_limits)
    with pytest.raises(convert.BadExampleError, match='good.jpg: JPEG image of 24x20'):
        loader(good)


def test_file_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / 'a.png'
    fx.write_image(str(path), fx.smooth_image(40, 40), '.png')
    size = os.path.getsize(path)
    assert image_io.load_image(str(path), image_io.ImageLimits(max_bytes=size)).width == 40
    with pytest.raises(
        OSError,
        match=rf'a.png: the image has {size} bytes, more than the limit of {size - 1} '
        r'\(--max_image_bytes',
    ):
        image_io.load_image(str(path), image_io.ImageLimits(max_bytes=size - 1))


def test_devices_and_fifos_are_never_read(tmp_path):
    root = str(tmp_path / 'VOC')
    _good(root)
    fx.add_voc_example(root, 'dev', fx.smooth_image(20, 24), BOX)
    os.remove(os.path.join(root, 'JPEGImages', 'dev.jpg'))
    os.symlink('/dev/zero', os.path.join(root, 'JPEGImages', 'dev.jpg'))
    fx.add_voc_example(root, 'fifo', fx.smooth_image(20, 24), BOX)
    os.remove(os.path.join(root, 'JPEGImages', 'fifo.jpg'))
    os.mkfifo(
        os.path.join(root, 'JPEGImages', 'fifo.jpg')
    )  # opening it for reading would block forever
    fx.add_voc_example(root, 'xmlfifo', fx.smooth_image(20, 24), BOX)
    os.remove(os.path.join(root, 'Annotations', 'xmlfifo.xml'))
    os.mkfifo(os.path.join(root, 'Annotations', 'xmlfifo.xml'))
    with pytest.raises(
        convert.BadExampleError,
        match=r'dev.jpg: the image is a character device \(through a '
        r'symlink\), not a regular file; refusing to read it',
    ):
        fx.convert_voc([root], str(tmp_path / 'out1'))
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), skip_bad_examples=True)
    skipped = _entries(meta)
    assert sorted(skipped) == ['dev.xml', 'fifo.xml', 'xmlfifo.xml']
    assert 'a FIFO (named pipe), not a regular file' in skipped['fifo.xml']
    assert 'the annotation XML is a FIFO' in skipped['xmlfifo.xml']
    assert [e['filename'] for e in fx.read_examples(str(tmp_path / 'out2'))] == [b'good.jpg']


def test_coco_device_file_name(tmp_path):
    ann, img_dir = fx.write_coco(
        str(tmp_path),
        [('a.jpg', 1, fx.smooth_image(20, 30), (30, 20))],
        [{'id': 1, 'name': 'cat'}],
        [],
    )
    with open(ann) as f:
        data = json.load(f)
    data['images'].append({'id': 2, 'file_name': '/dev/zero', 'width': 30, 'height': 20})
    with open(ann, 'w') as f:
        json.dump(data, f)
    with pytest.raises(
        convert.BadExampleError,
        match=r"image 2: file_name '/dev/zero' is an absolute path; .*"
        r'--allow_outside_paths',
    ):
        fx.convert_coco(ann, img_dir, str(tmp_path / 'out1'))
    # Allowed outside paths still never read a device.
    sources, names, extra, _ = fx.coco.read_annotations(ann, img_dir, allow_outside_paths=True)
    loader = fx.coco.CocoLoader([c['coco_category_id'] for c in extra], names)
    with pytest.raises(
        convert.BadExampleError,
        match=r'image id 2 \(zero\): /dev/zero: the image is a character '
        r'device, not a regular file',
    ):
        loader(sources[1])
    meta = fx.convert_coco(ann, img_dir, str(tmp_path / 'out2'), skip_bad_examples=True)
    assert meta['num_examples'] == 1 and meta['report']['counts']['skipped_example'] == 1


# --- 2. objects per image ----------------------------------------------------------------------


def test_objects_per_image_are_capped(tmp_path):
    root = str(tmp_path / 'VOC')
    _good(root)
    fx.add_voc_example(
        root,
        'crowd',
        fx.smooth_image(40, 40),
        [fx.voc_object('sheep', (1, 1, 5 + i, 9)) for i in range(5)],
    )
    with pytest.raises(
        convert.BadExampleError, match=r'crowd.xml: 5 objects, more than --max_objects_per_image=4'
    ):
        fx.convert_voc([root], str(tmp_path / 'out1'), max_objects_per_image=4)
    meta = fx.convert_voc(
        [root], str(tmp_path / 'out2'), max_objects_per_image=4, skip_bad_examples=True
    )
    assert list(_entries(meta)) == ['crowd.xml'] and meta['num_examples'] == 1
    assert meta['options']['max_objects_per_image'] == 4
    meta = fx.convert_voc([root], str(tmp_path / 'out3'), max_objects_per_image=5)
    assert meta['num_examples'] == 2 and convert.DEFAULT_MAX_OBJECTS_PER_IMAGE == 1000


# --- 3. records that would convert but could not be used ----------------------------------------


def test_nan_and_infinite_coordinates(tmp_path):
    root = str(tmp_path / 'VOC')
    _good(root)
    fx.add_voc_example(
        root, 'nan', fx.smooth_image(20, 24), [fx.voc_object('cat', ('nan', 2, 10, 12))]
    )
    fx.add_voc_example(
        root, 'inf', fx.smooth_image(20, 24), [fx.voc_object('cat', (1, 2, 'inf', 12))]
    )
    with pytest.raises(
        convert.BadExampleError,
        match=r"inf.xml: object 0: <bndbox><xmax> is 'inf', expected a "
        r'finite number',
    ):
        fx.convert_voc([root], str(tmp_path / 'out1'))
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), skip_bad_examples=True)
    assert _entries(meta)['nan.xml'].endswith(
        "nan.xml: object 0: <bndbox><xmin> is 'nan', expected a finite number."
    )
    assert meta['num_examples'] == 1
    # COCO: json writes NaN / Infinity and reads them back as floats.
    ann, img_dir = fx.write_coco(
        str(tmp_path / 'coco'),
        [
            ('a.jpg', 1, fx.smooth_image(20, 30), (30, 20)),
            ('b.jpg', 2, fx.smooth_image(20, 30), (30, 20)),
        ],
        [{'id': 1, 'name': 'cat'}],
        [
            {'id': 7, 'image_id': 1, 'category_id': 1, 'bbox': [1, 2, float('nan'), 4]},
            {'id': 8, 'image_id': 2, 'category_id': 1, 'bbox': [1, 2, 3, 4]},
        ],
    )
    with pytest.raises(
        convert.BadExampleError,
        match=r'image id 1 \(a.jpg\): annotation 7 has bbox \[1.0, 2.0, '
        r'nan, 4.0\], expected \[x, y, w, h\] of 4 finite numbers',
    ):
        fx.convert_coco(ann, img_dir, str(tmp_path / 'c1'))
    # The engine's last check catches what a loader lets through.
    record = ef.ExampleRecord(
        'x.jpg',
        image_io.EncodedImage(b'', 10, 10),
        (ef.ObjectRecord((0.1, float('nan'), 0.5, 0.5), 1, 'cat'),),
    )
    with pytest.raises(
        convert.BadExampleError,
        match=r'src: object 0 \(cat\) has box \(0.1, nan, 0.5, 0.5\), '
        r'expected 4 finite numbers',
    ):
        convert.validate_record(record, 20, 1000, 'src')
    record = ef.ExampleRecord(
        'x.jpg',
        image_io.EncodedImage(b'', 10, 10),
        (ef.ObjectRecord((0.1, 0.2, 1.5, 0.5), 21, 'cat'),),
    )
    with pytest.raises(convert.BadExampleError, match=r'expected 0 <= min <= max <= 1'):
        convert.validate_record(record, 20, 1000, 'src')


def _record(box=(0.1, 0.2, 0.5, 0.6), label=1, size=(10, 10), image_id=None, count=1, **flags):
    obj = ef.ObjectRecord(box, label, 'cat', **flags)
    image = image_io.EncodedImage(b'', *size)
    return ef.ExampleRecord('x.jpg', image, (obj,) * count, image_id)


@pytest.mark.parametrize(
    'record, problem',
    [
        (_record(size=(0, 10)), r'image size 10x0, expected positive integers'),
        (_record(size=(10, 0)), r'image size 0x10, expected positive integers'),
        (_record(count=4), r'4 objects, more than --max_objects_per_image=3'),
        (_record(box=(-0.1, 0.2, 0.5, 0.6)), r'expected 0 <= min <= max <= 1'),
        (_record(box=(0.1, -0.2, 0.5, 0.6)), r'expected 0 <= min <= max <= 1'),
        (_record(box=(0.6, 0.2, 0.5, 0.6)), r'expected 0 <= min <= max <= 1'),
        (_record(box=(0.1, 0.7, 0.5, 0.6)), r'expected 0 <= min <= max <= 1'),
        (_record(box=(0.1, 0.2, 0.5, 1.1)), r'expected 0 <= min <= max <= 1'),
        (_record(box=(0.1, 0.2, float('inf'), 0.6)), r'expected 4 finite numbers'),
        (_record(box=(0.1, 0.2, 0.5)), r'expected 4 finite numbers'),
        (_record(label=0), r'has label 0, expected 1..20'),
        (_record(label=21), r'has label 21, expected 1..20'),
        (_record(label=1.0), r'has label 1.0, expected 1..20'),
        (_record(label=True), r'has label True, expected 1..20'),
        (_record(difficult=None), r'has difficult=None, expected 0 or 1'),
        (_record(truncated=2), r'has truncated=2, expected 0 or 1'),
        (_record(iscrowd=2), r'has iscrowd=2, expected 0 or 1'),
        (_record(image_id=2**63), r'image id 9223372036854775808 is not a 64-bit integer'),
        (_record(image_id=-(2**63) - 1), r'is not a 64-bit integer'),
        (_record(image_id=True), r'image id True is not a 64-bit integer'),
        (_record(image_id=1.0), r'image id 1.0 is not a 64-bit integer'),
    ],
)
def test_the_engines_last_check_refuses_each_unusable_value(record, problem):
    # The loaders clip, order and check; this is the last check for a loader that does not.
    with pytest.raises(convert.BadExampleError, match=rf'^src: .*{problem}'):
        convert.validate_record(record, 20, 3, 'src')


@pytest.mark.parametrize(
    'record',
    [
        _record(count=3),
        _record(box=(0.0, 0.0, 1.0, 1.0), label=20),
        _record(box=(0.5, 0.5, 0.5, 0.5)),
        _record(image_id=2**63 - 1, iscrowd=1, difficult=1, truncated=1),
        _record(image_id=-(2**63), iscrowd=0),
    ],
)
def test_the_engines_last_check_passes_values_at_the_limits(record):
    convert.validate_record(record, 20, 3, 'src')


@pytest.mark.parametrize('bad_id', [2**70, -(2**70), -3, 'abc', 1.5, True])
def test_coco_image_ids_must_be_int64(tmp_path, bad_id):
    ann, img_dir = fx.write_coco(
        str(tmp_path),
        [
            ('a.jpg', 5, fx.smooth_image(20, 30), (30, 20)),
            ('b.jpg', bad_id, fx.smooth_image(20, 30), (30, 20)),
        ],
        [{'id': 1, 'name': 'cat'}],
        [{'id': 1, 'image_id': 5, 'category_id': 1, 'bbox': [1, 2, 3, 4]}],
    )
    with pytest.raises(
        convert.BadExampleError,
        match=rf"image id {bad_id!r} \(file_name 'b.jpg'\) is not an "
        r'integer in 0..2\*\*63-1',
    ):
        fx.convert_coco(ann, img_dir, str(tmp_path / 'out1'))
    meta = fx.convert_coco(ann, img_dir, str(tmp_path / 'out2'), skip_bad_examples=True)
    assert meta['num_examples'] == 1 and meta['report']['counts']['skipped_example'] == 1
    (ex,) = fx.read_examples(str(tmp_path / 'out2'), 'coco', num_classes=2)
    assert ex['image_id'] == 5 and ex['filename'] == b'a.jpg'


def test_coco_duplicate_image_id(tmp_path):
    ann, img_dir = fx.write_coco(
        str(tmp_path),
        [
            ('a.jpg', 5, fx.smooth_image(20, 30), (30, 20)),
            ('b.jpg', 5, fx.smooth_image(20, 30), (30, 20)),
        ],
        [{'id': 1, 'name': 'cat'}],
        [],
    )
    with pytest.raises(
        convert.BadExampleError, match=r"image 5: the id appears twice in \"images\""
    ):
        fx.convert_coco(ann, img_dir, str(tmp_path / 'out'))


def test_int64_features_never_loop_or_overflow():
    image = image_io.EncodedImage(b'\xff\xd8\xff', 1, 1)
    for bad in (-(2**70), 2**63):  # -2**70 looped forever in the varint encoder
        with pytest.raises(ValueError, match=f'{bad} does not fit a 64-bit integer feature'):
            ef.serialize_example(ef.ExampleRecord('x.jpg', image, (), bad))
    ef.serialize_example(ef.ExampleRecord('x.jpg', image, (), 2**63 - 1))


# --- 5. silently partial data --------------------------------------------------------------------


@pytest.fixture()
def converted(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    for i in range(5):
        _good(root, f'{i:03d}')
    fx.convert_voc([root], out, samples_per_file=2)
    return root, out


def test_emptied_truncated_or_modified_shard_fails_the_reader(converted):
    _, out = converted
    shard = os.path.join(out, 'data_001.tfrecord')
    with open(shard, 'rb') as f:
        data = f.read()
    assert dataset_factory.get_dataset('custom', 'data', out, verify_digests=True).num_samples == 5
    for damaged in (b'', data[:-1]):
        with open(shard, 'wb') as f:
            f.write(damaged)
        with pytest.raises(
            dataset_factory.DatasetFilesError,
            match=rf'data_001.tfrecord has {len(damaged)} bytes but data_metadata.json lists '
            rf'{len(data)}: the shard was emptied, truncated or replaced',
        ):
            dataset_factory.get_dataset('custom', 'data', out)
    # Same size, other bytes: only the digest tells.
    with open(shard, 'wb') as f:
        f.write(data[:-1] + bytes([data[-1] ^ 1]))
    assert dataset_factory.get_dataset('custom', 'data', out).num_samples == 5
    with pytest.raises(
        dataset_factory.DatasetFilesError, match=r'data_001.tfrecord: sha256 .* differs'
    ):
        dataset_factory.get_dataset('custom', 'data', out, verify_digests=True)
    proc = _run_cli('--verify', f'--output_dir={out}', '--output_name=data')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert (
        proc.stderr.strip().splitlines()[-1].startswith(f'tf_convert_data: error: {shard}: sha256 ')
        and 'convert the data again' in proc.stderr
    )


def test_metadata_version_1_without_sizes_counts_records(converted):
    _, out = converted
    meta_path = os.path.join(out, 'data_metadata.json')
    with open(meta_path) as f:
        meta = json.load(f)
    for entry in meta['files']:
        del entry['size'], entry['sha256']
    meta['version'] = 1
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    assert dataset_factory.get_dataset('custom', 'data', out).num_samples == 5
    with open(os.path.join(out, 'data_002.tfrecord'), 'wb'):
        pass  # emptied
    with pytest.raises(
        dataset_factory.DatasetFilesError,
        match='data_002.tfrecord holds 0 records but data_metadata.json lists 1',
    ):
        dataset_factory.get_dataset('custom', 'data', out)


def test_metadata_naming_files_outside_its_folder_is_refused(converted):
    _, out = converted
    meta_path = os.path.join(out, 'data_metadata.json')
    with open(meta_path) as f:
        meta = json.load(f)
    for name in ('../../etc/passwd', '..'):
        meta['files'][0]['name'] = name
        with open(meta_path, 'w') as f:
            json.dump(meta, f)
        with pytest.raises(ValueError, match=rf"lists shard '{name}', which is not a file name in"):
            dataset_factory.get_dataset('custom', 'data', out)


def _shift_ids(meta):
    for entry in meta['classes']:
        entry['id'] -= 1  # 0-based, as a hand edit might number them


def _metadata_error(out, edit):
    """(the metadata's path, the message of the error reading the dataset raises once `edit` has
    changed its JSON)."""
    meta_path = os.path.join(out, 'data_metadata.json')
    with open(meta_path) as f:
        meta = json.load(f)
    edit(meta)
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'data', out)
    return meta_path, str(err.value)


@pytest.mark.parametrize(
    'edit, problem',
    [
        (lambda m: m.pop('classes'), "it has no 'classes'"),
        (lambda m: m.update(classes={}), "'classes' is {}, not a non-empty list"),
        (lambda m: m.update(classes=[]), "'classes' is [], not a non-empty list"),
        (lambda m: m['classes'].__setitem__(4, 'cat'), "'classes'[4] is 'cat', not an object"),
        (lambda m: m['classes'][3].pop('id'), "'classes'[3] has no 'id'"),
        (lambda m: m['classes'][0].pop('name'), "'classes'[0] has no 'name'"),
        (lambda m: m['classes'][1].update(id='2'), "'classes'[1] has id '2', not an integer"),
        (lambda m: m['classes'][1].update(id=True), "'classes'[1] has id True, not an integer"),
        (lambda m: m['classes'][2].update(name=7), "'classes'[2] has name 7, not a string"),
        (
            lambda m: m['classes'][19].update(id=1),
            f"the 'classes' ids are {[1, *range(1, 20)]}, not 1..20 each once",
        ),
        (_shift_ids, f"the 'classes' ids are {list(range(20))}, not 1..20 each once"),
    ],
)
def test_metadata_classes_are_checked(converted, edit, problem):
    meta_path, message = _metadata_error(converted[1], edit)
    assert message == (
        f'{meta_path}: {problem}; expected \'classes\' to list each class as {{"id": 1, "name": '
        f'"cat"}} with ids 1..K (0 is the background): convert the dataset again.'
    )


@pytest.mark.parametrize('edit', [lambda m: m.pop('format'), lambda m: m.update(format='coco')])
def test_metadata_of_another_tool_is_refused(converted, edit):
    meta_path, message = _metadata_error(converted[1], edit)
    assert message == (
        f"{meta_path}: not a metadata file of tf_convert_data.py (no 'format': 'ssd-tfrecords')."
    )


def test_metadata_classes_in_any_order_and_verify_cli(converted):
    _, out = converted
    meta_path = os.path.join(out, 'data_metadata.json')
    with open(meta_path) as f:
        meta = json.load(f)
    meta['classes'].reverse()  # the ids, not the list order, give the labels
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    assert dataset_factory.get_dataset('custom', 'data', out).class_names == VOC
    del meta['classes'][7]['name']
    with open(meta_path, 'w') as f:
        json.dump(meta, f)
    proc = _run_cli('--verify', f'--output_dir={out}', '--output_name=data')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tf_convert_data: error: {meta_path}: 'classes'[7] has no 'name'; ")


def test_interrupted_replacement_is_refused_then_repaired(converted, monkeypatch):
    root, out = converted
    user_file = os.path.join(
        out, 'data_notes.tfrecord'
    )  # the user's, same prefix, not a shard name
    with open(user_file, 'wb') as f:
        f.write(b'mine')
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # marker written, first shard moved: killed here
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        fx.convert_voc([root], out, samples_per_file=1)
    monkeypatch.setattr(os, 'replace', real_replace)
    assert os.path.basename(calls[0]) == 'data_incomplete.json'
    # New 000 moved in, old 001 and 002 still there (new names too), no metadata.
    assert sorted(os.listdir(out)) == [
        'data_000.tfrecord',
        'data_001.tfrecord',
        'data_002.tfrecord',
        'data_incomplete.json',
        'data_notes.tfrecord',
    ]
    with pytest.raises(
        FileNotFoundError,
        match=r'data_incomplete.json: a conversion was interrupted while it '
        r'replaced the shards of data',
    ):
        dataset_factory.get_dataset('custom', 'data', out)
    meta = fx.convert_voc(
        [root], out, samples_per_file=1
    )  # the next run owns what the marker lists
    assert sorted(os.listdir(out)) == [f'data_{i:03d}.tfrecord' for i in range(5)] + [
        'data_metadata.json',
        'data_notes.tfrecord',
    ]
    assert (
        meta['num_examples'] == dataset_factory.get_dataset('custom', 'data', out).num_samples == 5
    )
    with open(user_file, 'rb') as f:
        assert f.read() == b'mine'


# --- 6. paths that leave the dataset -------------------------------------------------------------


def test_voc_split_ids_outside_the_folder(tmp_path):
    root = str(tmp_path / 'VOC')
    _good(root)
    # <root>/Annotations/<id>.xml and <root>/JPEGImages/<id>.jpg both resolve to tmp/elsewhere/secret.*
    fx.write_image(str(tmp_path / 'elsewhere' / 'secret.jpg'), fx.smooth_image(20, 24))
    fx.write_voc_xml(str(tmp_path / 'elsewhere' / 'secret.xml'), 'secret.jpg', (24, 20), BOX)
    escape, absolute = '../../elsewhere/secret', str(tmp_path / 'elsewhere' / 'secret')
    fx.write_split(root, 'train', ['good', escape, absolute])
    with pytest.raises(
        convert.BadExampleError,
        match=rf"train.txt, line 2: image id '{escape}' climbs out of the "
        rf'dataset folder with "..".*--allow_outside_paths.*\(1 more',
    ):
        fx.convert_voc([root], str(tmp_path / 'out1'), split='train')
    meta = fx.convert_voc([root], str(tmp_path / 'out2'), split='train', skip_bad_examples=True)
    details = [e['detail'] for e in meta['report']['entries']]
    assert (
        meta['num_examples'] == 1
        and len(details) == 2
        and 'line 3' in details[1]
        and 'absolute path' in details[1]
    )
    # With the flag, they are read (the user says the paths are meant).
    sources = pascalvoc.list_examples([root], 'train', allow_outside_paths=True)
    meta = convert.convert(
        sources,
        pascalvoc.VocLoader(VOC),
        VOC,
        str(tmp_path / 'out3'),
        'data',
        num_workers=1,
        show_progress=False,
        shuffle=False,
    )
    assert meta['num_examples'] == 3


def test_coco_file_name_outside_the_folder(tmp_path):
    ann, img_dir = fx.write_coco(
        str(tmp_path / 'coco'),
        [('a.jpg', 1, fx.smooth_image(20, 30), (30, 20))],
        [{'id': 1, 'name': 'cat'}],
        [],
    )
    fx.write_image(str(tmp_path / 'secret.jpg'), fx.smooth_image(20, 30))
    os.makedirs(os.path.join(img_dir, 'sub'))
    with open(ann) as f:
        data = json.load(f)
    data['images'] += [
        {'id': 2, 'file_name': '../../secret.jpg', 'width': 30, 'height': 20},
        {'id': 3, 'file_name': 'sub/../a.jpg', 'width': 30, 'height': 20},
    ]  # stays inside: fine
    with open(ann, 'w') as f:
        json.dump(data, f)
    with pytest.raises(
        convert.BadExampleError,
        match=r"image 2: file_name '../../secret.jpg' climbs out of the "
        r'dataset folder',
    ):
        fx.convert_coco(ann, img_dir, str(tmp_path / 'out1'))
    meta = fx.convert_coco(ann, img_dir, str(tmp_path / 'out2'), skip_bad_examples=True)
    assert meta['num_examples'] == 2
    sources, names, extra, _ = fx.coco.read_annotations(ann, img_dir, allow_outside_paths=True)
    assert [s.problem for s in sources] == [None, None, None]


# --- 7. the user's files ---------------------------------------------------------------------------


def test_user_files_of_the_same_prefix_survive(tmp_path):
    root, out = str(tmp_path / 'VOC'), str(tmp_path / 'out')
    _good(root)
    os.makedirs(out)
    mine = {
        'data_000.tfrecord': b'my own records',
        'data_5.tfrecord': b'five',
        'data_metadata.json': b'{"x": 1}',
        '.data.tmp-123/keep.txt': b'not the converter\'s',
    }
    for name, content in mine.items():
        os.makedirs(os.path.dirname(os.path.join(out, name)), exist_ok=True)
        with open(os.path.join(out, name), 'wb') as f:
            f.write(content)

    def unchanged():
        for name, content in mine.items():
            with open(os.path.join(out, name), 'rb') as f:
                assert f.read() == content, name

    with pytest.raises(
        convert.OutputConflictError,
        match=r'data_metadata.json exists but is not a metadata file '
        r'written by tf_convert_data.py; refusing to replace it',
    ):
        fx.convert_voc([root], out)
    unchanged()
    os.rename(os.path.join(out, 'data_metadata.json'), os.path.join(out, 'notes.json'))
    del mine['data_metadata.json']
    with pytest.raises(
        convert.OutputConflictError,
        match=r'holds data_000.tfrecord, named like the shards of '
        r'--output_name=data but not written by tf_convert_data.py',
    ):
        fx.convert_voc([root], out)
    unchanged()
    assert sorted(os.listdir(out)) == [
        '.data.tmp-123',
        'data_000.tfrecord',
        'data_5.tfrecord',
        'notes.json',
    ]
    os.rename(os.path.join(out, 'data_000.tfrecord'), os.path.join(out, 'mine.tfrecord'))
    del mine['data_000.tfrecord']
    fx.convert_voc([root], out)
    fx.convert_voc([root], out)  # a second run replaces what the first wrote
    unchanged()
    assert sorted(os.listdir(out)) == [
        '.data.tmp-123',
        'data_000.tfrecord',
        'data_5.tfrecord',
        'data_metadata.json',
        'mine.tfrecord',
        'notes.json',
    ]
    # A user's shard-like file appearing beside converted data is not deleted by the next run either.
    with open(os.path.join(out, 'data_001.tfrecord'), 'wb') as f:
        f.write(b'added later')
    with pytest.raises(convert.OutputConflictError, match='holds data_001.tfrecord'):
        fx.convert_voc([root], out, samples_per_file=1)
    with open(os.path.join(out, 'data_001.tfrecord'), 'rb') as f:
        assert f.read() == b'added later'


def test_cli_one_line_per_refusal_naming_file_and_flag(tmp_path):
    """Each run stops at its first bad example, before TensorFlow is loaded (about a second)."""
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(
        root, 'a', fx.smooth_image(20, 24), [fx.voc_object('cat', (2, 3, 10, 12))] * 3
    )
    size = os.path.getsize(os.path.join(root, 'JPEGImages', 'a.jpg'))
    fx.write_split(root, 'up', ['../up'])
    image = os.path.join(root, 'JPEGImages', 'a.jpg')
    hint = (
        '(pass --skip_bad_examples to skip such examples (each is listed in the metadata report), '
        'or fix the input).'
    )
    bomb_root = str(tmp_path / 'BOMB')
    fx.add_voc_example(bomb_root, 'bomb', fx.jpeg_claiming(30000, 30000), BOX, size=(30000, 30000))
    bomb = os.path.join(bomb_root, 'JPEGImages', 'bomb.jpg')
    for flags, expected in (
        (
            [f'--dataset_dir={bomb_root}'],
            f'{bomb}: JPEG image of 30000x30000 = 900000000 pixels: TensorFlow\'s '
            f'JPEG decoder refuses images of more than 178956970 pixels (height x '
            f'width x 3 must stay below 2**29 bytes), so training could not read '
            f'it; downscale or tile the image',
        ),
        (
            ['--max_image_pixels=400'],
            f'{image}: JPEG image of 24x20 = 480 pixels: more than '
            f'--max_image_pixels=400; raise the limit if the image is genuine',
        ),
        (
            [f'--max_image_bytes={size - 1}'],
            f'{image}: the image has {size} bytes, more than the limit of '
            f'{size - 1} (--max_image_bytes; raise it if the file is genuine)',
        ),
        (
            ['--max_objects_per_image=2'],
            f'{os.path.join(root, "Annotations", "a.xml")}: 3 objects, more than '
            f'--max_objects_per_image=2 (matching costs anchors x objects per '
            f'image); raise the limit if the annotation is genuine',
        ),
        (
            ['--split=up'],
            f'{os.path.join(root, "ImageSets", "Main", "up.txt")}, line 1: image id \'../up\' climbs '
            f'out of the dataset folder with ".."; ids name files inside {root} (pass '
            f'--allow_outside_paths to allow it)',
        ),
    ):
        args = [
            '--dataset_name=pascalvoc',
            f'--dataset_dir={root}',
            f'--output_dir={tmp_path / "out"}',
            '--output_name=data',
            '--num_workers=1',
        ] + flags
        proc = _run_cli(*args)
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
        assert (
            proc.stderr.strip().splitlines()[-1] == f'tf_convert_data: error: {expected} {hint}'
        ), flags
    assert not os.path.exists(tmp_path / 'out' / 'data_metadata.json')
