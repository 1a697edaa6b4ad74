"""Image loading for the converters: whatever is on disk becomes a decodable 3-channel JPEG.

Rules (see `load_image`):
- The format is sniffed from the bytes, never from the file extension (VOC-format sets contain
  PNG files named `.jpg`).
- A complete 3-channel JPEG is stored byte for byte. Anything else (PNG, grayscale, RGBA,
  palette, 16-bit, BMP, ...) is decoded with OpenCV, converted to 3-channel RGB (alpha is
  dropped, as PIL's `convert('RGB')` does) and re-encoded as JPEG quality 95.
- EXIF orientation is ignored, as TensorFlow's decoders ignore it, so the size measured here is
  the size the reader will decode and boxes stay aligned with the stored pixels.
- Width and height always come from the decoded pixels.
"""

import dataclasses

import cv2
import numpy as np

JPEG_QUALITY = 95
_JPEG_MAGIC = b'\xff\xd8\xff'
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_PNG_COLOR_TYPES = {0: 'grayscale', 2: 'RGB', 3: 'palette', 4: 'grayscale+alpha', 6: 'RGBA'}


class BadImageError(ValueError):
    """The bytes are not a decodable image."""


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    """An image ready to be stored.

    data: JPEG bytes of a 3-channel image; height, width: pixels of the decoded image;
    converted_from: None when the original bytes were kept, else a description of what was
    converted (e.g. 'PNG palette'), for the conversion report.
    """
    data: bytes
    height: int
    width: int
    converted_from: object = None


def sniff_format(data):
    """Returns 'JPEG', 'PNG' or 'other' from the magic bytes."""
    if data.startswith(_JPEG_MAGIC):
        return 'JPEG'
    if data.startswith(_PNG_MAGIC):
        return 'PNG'
    return 'other'


def _describe(data, fmt, image):
    if fmt == 'PNG' and len(data) > 25:
        mode = _PNG_COLOR_TYPES.get(data[25], f'color type {data[25]}')
        depth = data[24]
        return f'PNG {mode}' + (f' {depth}-bit' if depth != 8 else '')
    channels = 1 if image.ndim == 2 else image.shape[2]
    mode = {1: 'grayscale', 2: 'grayscale+alpha', 3: 'RGB', 4: 'RGBA'}.get(channels, f'{channels}-channel')
    return f'{fmt if fmt != "other" else "non-JPEG/PNG"} {mode}'


def to_bgr8(image):
    """Any OpenCV-decoded array (H×W, H×W×1/2/3/4, uint8 or uint16) -> uint8 H×W×3 BGR."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImageError(f'unsupported pixel type {image.dtype}')
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 2:  # grayscale + alpha
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def encode_jpeg(bgr):
    """uint8 H×W×3 BGR -> JPEG bytes (quality 95)."""
    ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise BadImageError('OpenCV could not encode the image as JPEG')
    return buf.tobytes()


def normalise_image_bytes(data):
    """Image file bytes -> EncodedImage (see the module docstring for the rules).

    Raises:
      BadImageError: undecodable, empty, or a truncated JPEG (TensorFlow's decoder rejects those
      although OpenCV returns a partly grey image).
    """
    fmt = sniff_format(data)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadImageError(f'not a decodable image ({len(data)} bytes, format {fmt})')
    height, width = image.shape[:2]
    # A JPEG must end with the EOI marker (trailing padding after it is tolerated).
    if fmt == 'JPEG' and b'\xff\xd9' not in data[-1024:]:
        raise BadImageError('truncated JPEG (no end-of-image marker)')
    if fmt == 'JPEG' and image.ndim == 3 and image.shape[2] == 3:
        return EncodedImage(data, height, width, None)
    return EncodedImage(encode_jpeg(to_bgr8(image)), height, width, _describe(data, fmt, image))


def load_image(path):
    """Reads an image file (binary) and normalises it; see `normalise_image_bytes`."""
    with open(path, 'rb') as f:
        data = f.read()
    return normalise_image_bytes(data)
