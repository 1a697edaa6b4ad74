"""detection.load_image on images over the pixel limit: JPEGs decoded at 1/2, 1/4 or 1/8 size by
libjpeg's DCT scaling (what detect_ssd_network.py runs on), the rest refused.

Small limits keep the images tiny. The 67x49 JPEG (3283 pixels) decodes at 1/2 to 34x25 = 850
pixels, at 1/4 to 17x13 = 221, at 1/8 to 9x7 = 63 (libjpeg rounds up; rounding down would give
33x24 = 792, 16x12 = 192, 8x6 = 48), so the limits 849, 220 and 62 sit one pixel below a
factor's size.
"""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from datasets import image_io
from inference import detection
from tests import data_fixtures

WIDTH, HEIGHT = 67, 49
REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def _limits(max_pixels):
    return image_io.ImageLimits(max_pixels=max_pixels)


def _jpeg(tmp_path, name='big.jpg', gray=False, params=()):
    """Writes a WIDTH x HEIGHT JPEG; returns (path, its bytes)."""
    rgb = data_fixtures.smooth_image(HEIGHT, WIDTH)
    pixels = rgb[..., 0] if gray else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    data = cv2.imencode('.jpg', pixels, list(params))[1].tobytes()
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name), data


def _reference(data, factor):
    """OpenCV's own reduced decode, RGB (the test images carry no EXIF orientation)."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[factor])[..., ::-1]


@pytest.mark.parametrize(
    'max_pixels, factor, size',
    [(WIDTH * HEIGHT, 1, (49, 67)), (1000, 2, (25, 34)), (849, 4, (13, 17)), (220, 8, (7, 9))],
)
def test_smallest_reduction_that_fits(tmp_path, max_pixels, factor, size):
    path, data = _jpeg(tmp_path)
    image = detection.load_image(path, _limits(max_pixels))
    assert (image.height, image.width, image.reduction) == (HEIGHT, WIDTH, factor)
    assert image.rgb.dtype == np.uint8 and image.rgb.shape == size + (3,)
    if factor == 1:
        assert image.note is None
        np.testing.assert_array_equal(image.rgb, detection.load_image_rgb(path))
    else:
        np.testing.assert_array_equal(image.rgb, _reference(data, factor))
        assert image.note == (
            f'{path}: decoded at 1/{factor} size ({size[1]}x{size[0]}): the JPEG header claims '
            f'67x49 = 3283 pixels, more than the limit of {max_pixels}'
        )


def test_gray_jpeg_comes_back_rgb(tmp_path):
    path, data = _jpeg(tmp_path, gray=True)
    image = detection.load_image(path, _limits(1000))
    assert image.reduction == 2 and image.rgb.dtype == np.uint8 and image.rgb.shape == (25, 34, 3)
    np.testing.assert_array_equal(image.rgb, _reference(data, 2))
    assert (image.rgb == image.rgb[..., :1]).all()


def test_exif_orientation_ignored_at_every_size(tmp_path):
    """A JPEG whose EXIF says "rotate 90 degrees" keeps its stored orientation, as the full-size
    decode (and the converter, and TensorFlow) keeps it: OpenCV's reduced decodes would turn it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.fromarray(data_fixtures.smooth_image(48, 64)).save(buf, 'JPEG', exif=exif, quality=95)
    (tmp_path / 'exif.jpg').write_bytes(buf.getvalue())
    encoded = np.frombuffer(buf.getvalue(), np.uint8)
    assert cv2.imdecode(encoded, cv2.IMREAD_REDUCED_COLOR_2).shape == (32, 24, 3)  # turned
    full = detection.load_image(str(tmp_path / 'exif.jpg'))
    half = detection.load_image(str(tmp_path / 'exif.jpg'), _limits(1000))
    assert full.rgb.shape == (48, 64, 3) and half.reduction == 2 and half.rgb.shape == (24, 32, 3)
    assert (half.height, half.width) == (48, 64)
    # Same orientation: the half-size decode is the full one averaged over 2x2 blocks.
    shrunk = cv2.resize(full.rgb, (32, 24), interpolation=cv2.INTER_AREA)
    assert np.abs(half.rgb.astype(int) - shrunk).mean() < 2


def test_refused(tmp_path):
    path, data = _jpeg(tmp_path)
    with pytest.raises(ValueError) as err:
        detection.load_image(path, _limits(62))
    assert str(err.value) == (
        f'{path}: the JPEG header claims 67x49 = 3283 pixels, more than the limit of 62, and at '
        f'1/8 size still 9x7 = 63: downscale the image.'
    )
    # Full size only: refused as before.
    with pytest.raises(ValueError, match='big.jpg: the JPEG header claims 67x49 = 3283 pixels, '):
        detection.load_image_rgb(path, _limits(1000))
    png = str(tmp_path / 'big.png')
    data_fixtures.write_image(png, data_fixtures.smooth_image(HEIGHT, WIDTH), '.png')
    with pytest.raises(ValueError) as err:
        detection.load_image(png, _limits(1000))
    assert str(err.value) == (
        f'{png}: the PNG header claims 67x49 = 3283 pixels, more than the limit of 1000; only a '
        f'JPEG can be decoded at a reduced size: downscale it.'
    )


def test_only_sequential_single_scan_jpegs_are_reduced(tmp_path):
    """libjpeg holds a progressive or multi-scan JPEG's full-size coefficients, and does not scale
    a lossless one: refused from the header, before decoding."""
    path, data = _jpeg(tmp_path, 'prog.jpg', params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
    assert image_io.jpeg_coding(data) == 'progressive'
    assert detection.load_image(path, _limits(WIDTH * HEIGHT)).reduction == 1
    with pytest.raises(ValueError) as err:
        detection.load_image(path, _limits(1000))
    assert str(err.value) == (
        f'{path}: the JPEG header claims 67x49 = 3283 pixels, more than the limit of 1000; only a '
        f'sequential single-scan JPEG (as cameras write) is decoded at a reduced size within the '
        f'limit, this one is progressive: downscale the image.'
    )
    _, data = _jpeg(tmp_path)
    assert image_io.jpeg_coding(data) == 'sequential'
    assert image_io.jpeg_coding(_jpeg(tmp_path, 'g.jpg', gray=True)[1]) == 'sequential'
    sof, sos = data.find(b'\xff\xc0'), data.find(b'\xff\xda')
    for marker, coding in ((b'\xc3', 'lossless'), (b'\xc5', 'hierarchical')):
        assert image_io.jpeg_coding(data[: sof + 1] + marker + data[sof + 2 :]) == coding
    # The first scan codes 1 of the 3 components (the rest of the file no longer matters).
    multi = data[: sos + 4] + b'\x01' + data[sos + 5 :]
    assert image_io.jpeg_coding(multi) == 'multi-scan'
    assert image_io.jpeg_coding(data[:sos]) == 'of unknown coding'
    assert image_io.jpeg_coding(data[: sos + 4]) == 'of unknown coding'  # cut in the scan header
    (tmp_path / 'multi.jpg').write_bytes(multi)
    with pytest.raises(ValueError, match='this one is multi-scan: downscale the image'):
        detection.load_image(str(tmp_path / 'multi.jpg'), _limits(1000))


def test_detections_in_original_pixels(tmp_path):
    path, _ = _jpeg(tmp_path)
    image = detection.load_image(path, _limits(849))
    assert image.rgb.shape[:2] == (13, 17)
    boxes = np.array([[0.25, 0.1, 0.75, 0.6]], np.float32)
    dets = {'boxes': boxes, 'scores': np.array([0.9], np.float32), 'classes': np.array([2])}
    record = detection.image_record(path, 'out.jpg', image, dets, ('cat', 'dog'))
    assert record == {
        'file': path,
        'output': 'out.jpg',
        'height': 49,
        'width': 67,
        'detections': [
            {
                'label': 'dog',
                'label_id': 2,
                'score': pytest.approx(0.9),
                'xmin': pytest.approx(0.1 * 67),
                'ymin': pytest.approx(0.25 * 49),
                'xmax': pytest.approx(0.6 * 67),
                'ymax': pytest.approx(0.75 * 49),
            }
        ],
    }


def test_reduced_decode_of_another_size_is_refused(tmp_path, monkeypatch):
    """Pixel coordinates scale the relative boxes by the header's size: a decode that does not
    match it (a decoder that ignored the scaling) is an error, not wrong coordinates."""
    path, data = _jpeg(tmp_path)
    full = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    monkeypatch.setattr(cv2, 'imdecode', lambda buf, flags: full)
    with pytest.raises(ValueError) as err:
        detection.load_image(path, _limits(1000))
    assert str(err.value) == (
        f'{path}: the JPEG header claims 67x49 pixels, but at 1/2 size it decoded to 67x49, not '
        f'34x25; re-save the image.'
    )


def test_a_frame_header_of_a_bad_length_is_corrupt(tmp_path):
    data = bytearray(_jpeg(tmp_path)[1])
    sof = data.index(b'\xff\xc0')
    data[sof + 2 : sof + 4] = (0).to_bytes(2, 'big')
    with pytest.raises(image_io.BadImageError, match='segment length 0'):
        image_io.image_header_size(bytes(data))
