"""The TFRecord example format: writing (converter) and parsing (reader).

Keys are those of the older TensorFlow SSD port, so its records stay readable, plus three
optional ones it did not write (`image/filename`, `image/id`, `image/object/bbox/iscrowd`):

| key | type | meaning |
|---|---|---|
| image/encoded | bytes | JPEG (3 channels) |
| image/format | bytes | b'jpeg' (older records: b'JPEG') |
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
"""

import dataclasses

import tensorflow as tf

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
    """One image with its objects. image: datasets.image_io.EncodedImage; image_id: int or None."""
    filename: str
    image: object
    objects: tuple
    image_id: object = None


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def serialize_example(record):
    """ExampleRecord -> serialized tf.train.Example bytes."""
    img, objs = record.image, record.objects
    features = {
        ENCODED: _bytes([img.data]),
        FORMAT: _bytes([b'jpeg']),
        FILENAME: _bytes([record.filename.encode('utf-8')]),
        HEIGHT: _ints([img.height]),
        WIDTH: _ints([img.width]),
        CHANNELS: _ints([3]),
        SHAPE: _ints([img.height, img.width, 3]),
        YMIN: _floats([o.box[0] for o in objs]),
        XMIN: _floats([o.box[1] for o in objs]),
        YMAX: _floats([o.box[2] for o in objs]),
        XMAX: _floats([o.box[3] for o in objs]),
        LABEL: _ints([o.label for o in objs]),
        LABEL_TEXT: _bytes([o.name.encode('utf-8') for o in objs]),
        DIFFICULT: _ints([o.difficult for o in objs]),
        TRUNCATED: _ints([o.truncated for o in objs]),
    }
    if record.image_id is not None:
        features[IMAGE_ID] = _ints([record.image_id])
        features[ISCROWD] = _ints([o.iscrowd or 0 for o in objs])
    # deterministic=True sorts the feature map, so the bytes do not depend on the process hash seed.
    example = tf.train.Example(features=tf.train.Features(feature=features))
    return example.SerializeToString(deterministic=True)


_PARSE_SPEC = {
    ENCODED: tf.io.FixedLenFeature([], tf.string),
    FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=''),
    IMAGE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    XMIN: tf.io.VarLenFeature(tf.float32),
    XMAX: tf.io.VarLenFeature(tf.float32),
    YMIN: tf.io.VarLenFeature(tf.float32),
    YMAX: tf.io.VarLenFeature(tf.float32),
    LABEL: tf.io.VarLenFeature(tf.int64),
    DIFFICULT: tf.io.VarLenFeature(tf.int64),
    TRUNCATED: tf.io.VarLenFeature(tf.int64),
}


def parse_example(serialized):
    """Serialized example (string scalar tensor) -> dict of decoded tensors.

    Returns:
      image: uint8 [H, W, 3] RGB; shape: int32 [3] (= tf.shape(image));
      bboxes: float32 [N, 4] relative [ymin, xmin, ymax, xmax]; labels, difficult, truncated:
      int64 [N]; filename: string scalar ('' for older records); image_id: int64 scalar
      (COCO image id, -1 when absent).
      Older records without difficult/truncated give zeros of length N.
    """
    f = tf.io.parse_single_example(serialized, _PARSE_SPEC)
    # decode_image sniffs the bytes, so older records holding PNG data also decode.
    image = tf.io.decode_image(f[ENCODED], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    dense = {k: tf.sparse.to_dense(f[k]) for k in (XMIN, XMAX, YMIN, YMAX, LABEL, DIFFICULT, TRUNCATED)}
    labels = dense[LABEL]
    zeros = tf.zeros_like(labels)
    flags = {k: tf.cond(tf.equal(tf.size(dense[k]), tf.size(labels)), lambda k=k: dense[k], lambda: zeros)
             for k in (DIFFICULT, TRUNCATED)}
    return {
        'image': image,
        'shape': tf.shape(image, out_type=tf.int32),
        'bboxes': tf.stack([dense[YMIN], dense[XMIN], dense[YMAX], dense[XMAX]], axis=1),
        'labels': labels,
        'difficult': flags[DIFFICULT],
        'truncated': flags[TRUNCATED],
        'filename': f[FILENAME],
        'image_id': f[IMAGE_ID],
    }
