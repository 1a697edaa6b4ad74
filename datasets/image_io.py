"""Image loading for the converters: whatever is on disk becomes a JPEG or PNG the reader decodes
to 3 channels.

Rules (see `load_image`):
- The format is sniffed from the bytes, never from the file extension (VOC-format sets contain
  PNG files named `.jpg`).
- A complete 3-channel or grayscale JPEG, and an 8-bit RGB or grayscale PNG without
  transparency whose chunks are intact (`_clean_png`), are stored byte for byte: the reader
  decodes a grayscale one to grey in R, G and B, the pixels OpenCV gives detection, so
  evaluation scores the pixels a deployed model sees (re-encoded as JPEG, they differed; COCO
  has grayscale JPEGs, own datasets PNGs). Anything else (RGBA, palette, 16-bit, BMP, ...) is
  decoded with OpenCV, converted to 3-channel RGB (alpha is dropped, as PIL's `convert('RGB')`
  does) and re-encoded as JPEG quality 95.
- EXIF orientation is ignored, as TensorFlow's decoders ignore it, so the size measured here is
  the size the reader will decode and boxes stay aligned with the stored pixels.
- Width and height always come from the decoded pixels.

Limits (hostile or broken files): the size is read from the image header before anything is
decoded (JPEG frame header, PNG IHDR; other formats through Pillow's lazy open, which reads only
the header; a format neither knows is refused), and an image is refused when
- its width x height exceeds `ImageLimits.max_pixels` (a 629-byte JPEG can claim 30000x30000
  pixels and decode to 2.7 GB), or
- TensorFlow's JPEG decoder would refuse it at training time (height x width x 3 >= 2**29
  bytes, about 179 million pixels), whatever the limit says, or
- the file has more than `ImageLimits.max_bytes` bytes, or is not a regular file (a device, a
  FIFO, also through a symlink): checked before reading (`tf_extended.safe_io`).
"""

import dataclasses
import io
import os
import struct
import warnings
import zlib

import cv2
import numpy as np

from tf_extended import safe_io

JPEG_QUALITY = 95
_JPEG_MAGIC = b'\xff\xd8\xff'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# A PNG's first 16 bytes: its signature, then its IHDR chunk's length (13) and type (PNG puts
# IHDR first); then width and height (bytes 16..23, big-endian), bit depth (byte 24).
PNG_IHDR_START = PNG_SIGNATURE + b'\x00\x00\x00\x0dIHDR'
_PNG_COLOR_TYPES = {0: 'grayscale', 2: 'RGB', 3: 'palette', 4: 'grayscale+alpha', 6: 'RGBA'}

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000  # 10000x10000; every public detection dataset is far below
DEFAULT_MAX_IMAGE_BYTES = 512 << 20  # an uncompressed 100-megapixel RGB file is 300 MB
# TensorFlow's JPEG decoder (jpeg_mem.cc) refuses height * width * 3 >= 2**29 bytes ("Image too large").
TF_JPEG_MAX_BYTES = 1 << 29
TF_MAX_PIXELS = (TF_JPEG_MAX_BYTES - 1) // 3
# Scans a JPEG may have (`jpeg_scans`). A sequential JPEG has 1 per component at most, libjpeg's
# progressive script 10 for colour; the decoders pass over every block of a scan's components
# for each one, data or not, so a file of empty scans costs minutes for nothing (4000x4000
# pixels in 294 KB with 20000 empty scans: TensorFlow 92 s, OpenCV 47 s).
MAX_JPEG_SCANS = 500
JPEG_SCAN_MARKER = b'\xff\xda'
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).


class BadImageError(ValueError):
    """The bytes are not a decodable image."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What `load_image` accepts. max_pixels: width x height; max_bytes: file size."""

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES


DEFAULT_LIMITS = ImageLimits()


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    """An image ready to be stored.

    data: JPEG or PNG bytes of a 3-channel or grayscale image; height, width: pixels of the
    decoded image; format: 'jpeg' or 'png' (the records' image/format); converted_from: None
    when the original bytes were kept, else a description of what was converted (e.g. 'PNG
    palette'); conversion: then what the converter did, for the conversion report (e.g. 'PNG
    RGBA data in a .jpg file: decoded as PNG, alpha dropped, re-encoded as JPEG (quality 95)').
    """

    data: bytes
    height: int
    width: int
    converted_from: object = None
    conversion: object = None
    format: str = 'jpeg'


def sniff_format(data):
    """Returns 'JPEG', 'PNG' or 'other' from the magic bytes."""
    if data.startswith(_JPEG_MAGIC):
        return 'JPEG'
    if data.startswith(PNG_SIGNATURE):
        return 'PNG'
    return 'other'


def _jpeg_size(data):
    """(width, height) from the first JPEG frame header (SOFn), walking the marker segments."""
    for marker, pos in _jpeg_segments(data):
        if marker in _SOF_MARKERS:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack('>HH', data[pos + 5 : pos + 9])
            if height == 0 or width == 0:
                raise BadImageError(
                    f'JPEG frame header gives {width}x{height} pixels (a zero height needs a '
                    f'DNL marker, which decoders do not support)'
                )
            return width, height
    raise BadImageError('JPEG without a frame header (SOF) before its image data')


def _clean_png(data):
    """Whether a PNG is one chunk after another, each with its CRC right, up to IEND and
    nothing after: stored byte for byte, it is decoded again by TensorFlow's libpng at every
    epoch, which may be stricter than OpenCV's about damage OpenCV read past."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from('>I', data, pos)
        end = pos + 12 + length
        if end > len(data):
            return False
        kind = data[pos + 4 : pos + 8]
        (crc,) = struct.unpack_from('>I', data, end - 4)
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return False
        if kind == b'IEND':
            return end == len(data)
        pos = end
    return False


def _jpeg_ends(data):
    """Whether the JPEG has an end-of-image marker after its first start of scan. (Scan data
    stuffs its 0xFF bytes, so EOI cannot appear there by chance; a thumbnail's EOI inside an
    APP segment is skipped; bytes after EOI, such as a phone's trailer or an appended video,
    are ignored by decoders.) Stray bytes between the header's segments, which libjpeg skips
    ("extraneous bytes before marker") and so TensorFlow and PIL decode, make the walk fail:
    then the first start of scan is the first 0xFFDA found by a plain byte search."""
    try:
        scan = next((pos for marker, pos in _jpeg_segments(data) if marker == 0xDA), None)
    except BadImageError:
        scan = data.find(b'\xff\xda', 2)
        if scan < 0:
            return False
    return scan is not None and data.find(b'\xff\xd9', scan) >= 0


def _jpeg_segments(data):
    """Yields (marker, offset) of a JPEG's marker segments, up to the first start of scan (0xDA)
    or end of image (0xD9), which come last. Raises BadImageError where the walk finds no
    marker or a bad segment length."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise BadImageError(f'corrupt JPEG header (no marker at byte {pos})')
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # segments without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):
            yield marker, pos
            return
        (length,) = struct.unpack('>H', data[pos + 2 : pos + 4])
        if length < 2:
            raise BadImageError(f'corrupt JPEG header (segment length {length} at byte {pos})')
        yield marker, pos
        pos += 2 + length


# How each JPEG frame type (start-of-frame marker SOFn, Huffman or arithmetic coded) codes its data.
_JPEG_FRAMES = {
    **dict.fromkeys((0xC0, 0xC1, 0xC9), 'sequential'),
    **dict.fromkeys((0xC2, 0xCA), 'progressive'),
    **dict.fromkeys((0xC3, 0xCB), 'lossless'),
    **dict.fromkeys((0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF), 'hierarchical'),
}
_SOF_MARKERS = frozenset(_JPEG_FRAMES)  # start of frame: SOF0-SOF15 but DHT, JPG, DAC


def jpeg_coding(data):
    """How a JPEG's image data is coded, read from its first frame and scan headers (str):
    'sequential' (one scan of all components: baseline JPEGs, as cameras write them),
    'multi-scan' (sequential, components in scans of their own), 'progressive', 'lossless',
    'hierarchical', or 'of unknown coding' (no frame and scan header found).

    Only a sequential JPEG decodes at 1/f size in memory of that size: for the multi-scan and
    progressive ones libjpeg holds every DCT coefficient of the full image (2 bytes per sample:
    a 519-byte progressive file claiming 46000x46000 pixels took 6 GB and 15 s at 1/8 size), and
    it ignores the scaling for lossless ones."""
    frame = None
    try:
        for marker, pos in _jpeg_segments(data):
            if frame is None and marker in _JPEG_FRAMES and pos + 10 <= len(data):
                frame = _JPEG_FRAMES[marker], data[pos + 9]
            if marker == 0xDA and frame is not None and pos + 5 <= len(data):
                coding, num_components = frame
                # A scan header's component count is its byte 4.
                return (
                    'multi-scan'
                    if coding == 'sequential' and data[pos + 4] < num_components
                    else coding
                )
    except BadImageError:
        pass
    return 'of unknown coding'


def jpeg_components(data):
    """The number of colour components (int) in a JPEG's first frame header: 1 grey, 3 YCbCr or
    RGB, 4 CMYK or YCCK (Adobe); None where the header walk finds no frame header."""
    try:
        for marker, pos in _jpeg_segments(data):
            if marker in _SOF_MARKERS and pos + 10 <= len(data):
                return data[pos + 9]
    except BadImageError:
        pass
    return None


def jpeg_scans(data):
    """The start-of-scan markers in a JPEG's bytes (int): its scans, and those of a thumbnail in
    its header. Scan data stuffs its 0xFF bytes, so a marker is the only place 0xFFDA is before
    the end of the image; bytes after it that decoders ignore (a motion photo's video) hold one
    by chance per 64 KB or so, counted too: a bound, not the decoder's count."""
    return data.count(JPEG_SCAN_MARKER)


def image_header_size(data):
    """(format, width, height) read from the header only, without decoding the pixels.

    JPEG and PNG are parsed here; other formats (BMP, TIFF, WebP, GIF, PNM, ...) through Pillow's
    lazy `Image.open`, which reads the header only.
    Raises:
      BadImageError: no recognisable image header; a JPEG of more than MAX_JPEG_SCANS scans
      (its decoding time, which the size does not bound).
    """
    fmt = sniff_format(data)
    if fmt == 'JPEG':
        scans = jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise BadImageError(
                f'JPEG of {scans} scans, more than the {MAX_JPEG_SCANS} it may have (each is '
                f'decoded over the whole image: that many take minutes); re-save the image'
            )
        return ('JPEG',) + _jpeg_size(data)
    if fmt == 'PNG':
        if len(data) < 24 or data[12:16] != b'IHDR':
            raise BadImageError('PNG without an IHDR header')
        width, height = struct.unpack('>II', data[16:24])
        return 'PNG', width, height
    try:
        from PIL import Image
    except ImportError:
        raise BadImageError(
            'not a JPEG or PNG file, and Pillow (which reads other headers) is not installed'
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                return im.format or 'other', width, height
    except (
        Image.DecompressionBombError
    ) as e:  # only above 2 x 89.5 M pixels: beyond TF_MAX_PIXELS too
        raise BadImageError(
            f'the image header claims more than {TF_MAX_PIXELS} pixels, which TensorFlow\'s '
            f'decoder refuses (Pillow: {e})'
        ) from None
    except Exception as e:  # Pillow raises many types for unknown or broken headers
        raise BadImageError(
            f'not a decodable image ({len(data)} bytes: neither JPEG, PNG nor another format whose '
            f'header Pillow reads; {type(e).__name__})'
        ) from None


def check_size(width, height, limits, fmt='image'):
    """Raises BadImageError when a width x height image must not be decoded or stored."""
    pixels = width * height
    if pixels > min(limits.max_pixels, TF_MAX_PIXELS):
        if pixels > TF_MAX_PIXELS:
            why = (
                f'TensorFlow\'s JPEG decoder refuses images of more than {TF_MAX_PIXELS} pixels '
                f'(height x width x 3 must stay below 2**29 bytes), so training could not read it; '
                f'downscale or tile the image'
            )
        else:
            why = f'more than --max_image_pixels={limits.max_pixels}; raise the limit if the image is genuine'
        raise BadImageError(f'{fmt} of {width}x{height} = {pixels} pixels: {why}')


def _describe(data, fmt, image):
    if fmt == 'PNG' and len(data) > 25:
        mode = _PNG_COLOR_TYPES.get(data[25], f'color type {data[25]}')
        depth = data[24]
        return f'PNG {mode}' + (f' {depth}-bit' if depth != 8 else '')
    channels = 1 if image.ndim == 2 else image.shape[2]
    mode = {1: 'grayscale', 2: 'grayscale+alpha', 3: 'RGB', 4: 'RGBA'}.get(
        channels, f'{channels}-channel'
    )
    return f'{fmt if fmt != "other" else "non-JPEG/PNG"} {mode}'


_EXTENSION_FORMATS = {
    '.jpg': 'JPEG',
    '.jpeg': 'JPEG',
    '.jpe': 'JPEG',
    '.png': 'PNG',
    '.bmp': 'BMP',
    '.tif': 'TIFF',
    '.tiff': 'TIFF',
    '.webp': 'WEBP',
    '.gif': 'GIF',
}


def _conversion(source, header_fmt, image, file_name=None, damaged=False):
    """What `normalise_image_bytes` does to an image it does not keep byte for byte, in words
    (`damaged`: a PNG that is not `_clean_png`)."""
    ext = os.path.splitext(file_name or '')[1].lower()
    if ext in _EXTENSION_FORMATS and _EXTENSION_FORMATS[ext] != header_fmt:
        source = f'{source} data in a {ext} file'
    channels = 1 if image.ndim == 2 else image.shape[2]
    steps = [f'decoded as {header_fmt}']
    if damaged:
        steps[0] += ' (damaged: a chunk cut short or failing its CRC, or bytes after IEND)'
    if 'palette' in source:
        steps.append('palette expanded to RGB')
    if image.dtype == np.uint16:
        steps.append('16-bit values scaled to 8-bit')
    if channels in (2, 4):
        steps.append('alpha dropped')
    if channels in (1, 2):
        steps.append('grey copied to R, G and B')
    steps.append(f're-encoded as JPEG (quality {JPEG_QUALITY})')
    return f'{source}: {", ".join(steps)}'


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


def normalise_image_bytes(data, limits=DEFAULT_LIMITS, file_name=None):
    """Image file bytes -> EncodedImage (see the module docstring for the rules). `file_name`
    (optional) lets the report say when the data's format is not the one its extension names.

    Raises:
      BadImageError: undecodable, empty, a truncated JPEG (TensorFlow's decoder rejects those
      although OpenCV returns a partly grey image), or too many pixels (checked on the header,
      before decoding).
    """
    fmt = sniff_format(data)
    if not data:
        raise BadImageError('empty file (0 bytes)')
    header_fmt, header_w, header_h = image_header_size(data)
    check_size(header_w, header_h, limits, f'{header_fmt} image')
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise BadImageError(f'not a decodable image ({len(data)} bytes, format {fmt})')
    height, width = image.shape[:2]
    check_size(
        width, height, limits, f'decoded {header_fmt} image'
    )  # in case the header parse missed a frame
    # A JPEG must have the EOI marker after its scan data (bytes after EOI are tolerated).
    if fmt == 'JPEG' and not _jpeg_ends(data):
        raise BadImageError('truncated JPEG (no end-of-image marker)')
    plain = image.dtype == np.uint8 and (image.ndim == 2 or image.shape[2] == 3)
    if fmt == 'JPEG' and plain:
        return EncodedImage(data, height, width, None)
    # IHDR's bit depth and colour type (0 grey, 2 RGB). OpenCV gives an RGB PNG with a tRNS
    # chunk a 4th channel (re-encoded below); a grey one stays 2-D, as TensorFlow decodes it.
    damaged = fmt == 'PNG' and not _clean_png(data)
    if fmt == 'PNG' and plain and data[24] == 8 and data[25] in (0, 2) and not damaged:
        return EncodedImage(data, height, width, None, format='png')
    source = _describe(data, fmt, image)
    return EncodedImage(
        encode_jpeg(to_bgr8(image)),
        height,
        width,
        source,
        _conversion(source, header_fmt, image, file_name, damaged),
    )


def load_image(path, limits=DEFAULT_LIMITS):
    """Reads an image file (binary) and normalises it; see `normalise_image_bytes`.

    Raises:
      BadImageError: see normalise_image_bytes; safe_io.UnsafeFileError (an OSError): not a
      regular file or more than limits.max_bytes; OSError: unreadable.
    """
    data = safe_io.read_bytes(path, limits.max_bytes, what='image', limit_name='--max_image_bytes')
    return normalise_image_bytes(data, limits, file_name=os.path.basename(path))
