"""The TFRecord example format: keys, the converter's records and their serialization.

Parsing lives in datasets.dataset_factory (the reader); this module does not import TensorFlow.

Keys are those of the older TensorFlow SSD port, so its records stay readable, plus four
optional ones it did not write (`image/filename`, `image/id`, `image/object/bbox/iscrowd`,
`image/coco/annotations`); readers give defaults for the ones a record lacks:

| key | type | meaning |
|---|---|---|
| image/encoded | bytes | JPEG or 8-bit PNG (3 channels, or grayscale: decoded to grey in R, G and B) |
| image/format | bytes | b'jpeg' or b'png' (older records: b'JPEG') |
| image/filename | bytes | image file name, e.g. b'000005.jpg' (absent in older records) |
| image/id | int64 | COCO image id (COCO only; -1 when read from records without it) |
| image/height, image/width, image/channels | int64 | of the decoded image |
| image/shape | int64 ×3 | [height, width, channels] |
| image/object/bbox/{xmin,xmax,ymin,ymax} | float ×N | relative to the decoded size, in [0, 1] |
| image/object/bbox/label | int64 ×N | 1..K (0 = background is never written) |
| image/object/bbox/label_text | bytes ×N | class name |
| image/object/bbox/difficult | int64 ×N | 1 = ignored by evaluation (VOC difficult, COCO iscrowd) |
| image/object/bbox/truncated | int64 ×N | VOC truncated flag (0 for COCO) |
| image/object/bbox/iscrowd | int64 ×N | COCO iscrowd (COCO only) |
| image/coco/annotations | bytes | COCO only: JSON, the image's annotations as in the file (below) |

`image/coco/annotations` keeps what COCO evaluation needs, losslessly: every annotation of the
image whose category is in the file (crowd regions, and boxes the converter dropped or clipped
for training, included), in the file's order, each
`{"id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd": 0|1, "index"}` with the file's
values (`area` is the file's, e.g. a polygon area; w*h only when the file has none) and `index`
its position in the file's `annotations` list. Evaluation builds pycocotools' ground truth from
it, so COCO numbers equal pycocotools run on the original file. The float32 boxes above are the
training view (clipped to the image, relative).
"""

import dataclasses
import struct

ENCODED = 'image/encoded'
FORMAT = 'image/format'
FILENAME = 'image/filename'
IMAGE_ID = 'image/id'
HEIGHT = 'image/height'
WIDTH = 'image/width'
CHANNELS = 'image/channels'
SHAPE = 'image/shape'
XMIN = 'image/object/bbox/xmin'
XMAX = 'image/object/bbox/xmax'
YMIN = 'image/object/bbox/ymin'
YMAX = 'image/object/bbox/ymax'
LABEL = 'image/object/bbox/label'
LABEL_TEXT = 'image/object/bbox/label_text'
DIFFICULT = 'image/object/bbox/difficult'
TRUNCATED = 'image/object/bbox/truncated'
ISCROWD = 'image/object/bbox/iscrowd'
COCO_ANNOTATIONS = 'image/coco/annotations'


@dataclasses.dataclass(frozen=True)
class ObjectRecord:
    """One object. box: (ymin, xmin, ymax, xmax) relative floats; label: 1..K; flags 0/1."""

    box: tuple
    label: int
    name: str
    difficult: int = 0
    truncated: int = 0
    iscrowd: object = None


@dataclasses.dataclass(frozen=True)
class ExampleRecord:
    """One image with its objects. image: datasets.image_io.EncodedImage; image_id: int or None;
    coco_annotations: the JSON text of `image/coco/annotations` (COCO only), or None."""

    filename: str
    image: object
    objects: tuple
    image_id: object = None
    coco_annotations: object = None


def _varint(value):
    if not -(1 << 63) <= value < (1 << 63):
        # Outside int64 the loop below would never end (large negatives) or write what no parser reads.
        raise ValueError(f'{value} does not fit a 64-bit integer feature.')
    if value < 0:  # int64 two's complement, as protobuf encodes negative int64
        value += 1 << 64
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(values):  # Feature.bytes_list = 1 { repeated bytes value = 1; }
    return _len_field(1, b''.join(_len_field(1, v) for v in values))


def _float_feature(values):  # Feature.float_list = 2 { repeated float value = 1 [packed]; }
    return _len_field(2, _len_field(1, struct.pack(f'<{len(values)}f', *values)) if values else b'')


def _int64_feature(values):  # Feature.int64_list = 3 { repeated int64 value = 1 [packed]; }
    return _len_field(
        3, _len_field(1, b''.join(_varint(int(v)) for v in values)) if values else b''
    )


def serialize_example(record):
    """ExampleRecord -> serialized tf.train.Example bytes.

    Encoded by hand in the protobuf wire format (it parses to the same message as a
    tf.train.Example built from the same values; tested), so converter workers do not need
    TensorFlow, whose import costs seconds per spawned process. Keys are written in sorted order,
    so the bytes depend only on the record.
    """
    img, objs = record.image, record.objects
    features = {
        ENCODED: _bytes_feature([img.data]),
        FORMAT: _bytes_feature([img.format.encode('ascii')]),
        FILENAME: _bytes_feature([record.filename.encode('utf-8')]),
        HEIGHT: _int64_feature([img.height]),
        WIDTH: _int64_feature([img.width]),
        CHANNELS: _int64_feature([3]),
        SHAPE: _int64_feature([img.height, img.width, 3]),
        YMIN: _float_feature([o.box[0] for o in objs]),
        XMIN: _float_feature([o.box[1] for o in objs]),
        YMAX: _float_feature([o.box[2] for o in objs]),
        XMAX: _float_feature([o.box[3] for o in objs]),
        LABEL: _int64_feature([o.label for o in objs]),
        LABEL_TEXT: _bytes_feature([o.name.encode('utf-8') for o in objs]),
        DIFFICULT: _int64_feature([o.difficult for o in objs]),
        TRUNCATED: _int64_feature([o.truncated for o in objs]),
    }
    if record.image_id is not None:
        features[IMAGE_ID] = _int64_feature([record.image_id])
        features[ISCROWD] = _int64_feature([o.iscrowd or 0 for o in objs])
    if record.coco_annotations is not None:
        features[COCO_ANNOTATIONS] = _bytes_feature([record.coco_annotations.encode('utf-8')])
    # Example.features = 1 { map<string, Feature> feature = 1; }: entries {key = 1, value = 2}.
    entries = b''.join(
        _len_field(1, _len_field(1, k.encode()) + _len_field(2, features[k]))
        for k in sorted(features)
    )
    return _len_field(1, entries)
