"""Dataset registry and TFRecord readers.

    ds = get_dataset('pascalvoc_2007', 'test', '/data/tfrecords')
    ds.num_samples, ds.num_classes (with background: 21), ds.labels_to_names[15] == 'person'
    examples = ds.make_dataset(shuffle=True, repeat=True)   # tf.data.Dataset of dicts

Names and the files they read in `dataset_dir` (written by tf_convert_data.py with
`--output_name=<prefix>`):

| name | prefix |
|---|---|
| pascalvoc_2007 | voc_2007_<split> |
| pascalvoc_2012 | voc_2012_<split> |
| pascalvoc_0712 | voc_0712_<split> |
| coco_2017 | coco_2017_<split> |
| custom | <split> (any converter output: split_name is its output_name) |

Shards are `<prefix>_*.tfrecord`. With the converter's `<prefix>_metadata.json`, the shard list,
the number of samples and the class names come from it, and every listed shard is checked before
anything is read: present, a regular file, of the size the metadata records (metadata of
version 1 has none) and holding its record count, each record within the file (a record header
declaring more bytes than the file holds crashed TensorFlow's reader), so an emptied, truncated
or replaced shard fails with its name instead of silently giving fewer examples or a crash;
`verify_digests=True` also compares
each shard's sha256 (reads every byte). A `<prefix>_incomplete.json` without metadata means a
conversion was interrupted while replacing the shards: refused. Without either (records of the
older TensorFlow port, e.g. `voc_2007_train_000.tfrecord`) the shards are globbed, the samples
are counted by reading the record headers (logged), and the classes are the VOC ones for the
pascalvoc names, else `class_<id>`; `num_classes` must then be given for coco_2017/custom.
Such shards must not be empty (0 bytes: a write that failed), and their first records are looked
at before anything is read: TF Object Detection API records (labels under
`image/object/class/label`) are refused, and so are records whose `image/object/bbox/label_text`
names other VOC classes than their labels do (the classes numbered otherwise).

Every record read is checked as it is parsed (all sources; the converter checked its own when it
wrote them): one length for the coordinate and label lists, difficult/truncated/iscrowd absent
or of that length, labels in 1..num_classes-1, coordinates in [0, 1] with min <= max. A record
that fails stops the pipeline with an InvalidArgumentError naming its shard and its index there.
"""

import dataclasses
import difflib
import functools
import glob
import os
import re

from absl import logging
from google.protobuf import message as protobuf_message
import numpy as np
import tensorflow as tf

from datasets import convert
from datasets import example_format as ef
from datasets import folders
from datasets import image_io
from datasets import labels
from tf_extended import safe_io
from tf_extended import texts


@dataclasses.dataclass(frozen=True)
class _Entry:
    prefix: str  # format string with {split}
    class_names: object  # default classes for records without metadata, or None


_REGISTRY = {
    'pascalvoc_2007': _Entry('voc_2007_{split}', labels.VOC_CLASSES),
    'pascalvoc_2012': _Entry('voc_2012_{split}', labels.VOC_CLASSES),
    'pascalvoc_0712': _Entry('voc_0712_{split}', labels.VOC_CLASSES),
    'coco_2017': _Entry('coco_2017_{split}', None),
    'custom': _Entry('{split}', None),
}

_SHARD_GLOB_SUFFIX = '_*.tfrecord'


def dataset_names():
    """The registered dataset names."""
    return sorted(_REGISTRY)


# The converter's --dataset_name values (input layouts, not record readers): what reads the
# records each writes.
_CONVERTER_NAMES = {
    'pascalvoc': (
        'pascalvoc_2007, pascalvoc_2012 or pascalvoc_0712 when they are VOC\'s own splits '
        '(--output_name=voc_2007_<split>, ...)'
    ),
    'coco': 'coco_2017 when --output_name was coco_2017_<split>',
}


def check_dataset_name(name):
    """Raises ValueError naming --dataset_name, with the closest names (or, for a name of
    tf_convert_data.py's, the readers of its records), unless `name` is a registered dataset."""
    if name in _REGISTRY:
        return
    if name in _CONVERTER_NAMES:
        hint = (
            f': {name} is tf_convert_data.py\'s --dataset_name (the input layout); read the '
            'records it wrote with --dataset_name=custom --dataset_split_name=<its '
            f'--output_name>, or with {_CONVERTER_NAMES[name]}'
        )
    else:
        close = difflib.get_close_matches(str(name), dataset_names(), n=2, cutoff=0.6)
        hint = f' (did you mean {" or ".join(close)}?)' if close else ''
    raise ValueError(
        f'--dataset_name: unknown dataset {name!r}{hint}; the datasets are '
        f'{", ".join(dataset_names())}.'
    )


class DetectionDataset:
    """One split of a converted detection dataset.

    Attributes:
      name, split_name, dataset_dir: as given to get_dataset.
      file_pattern: the glob (relative to dataset_dir unless absolute) naming the shards.
      files: sorted list of shard paths.
      num_samples: examples in the split.
      num_classes: classes INCLUDING background (21 for VOC).
      labels_to_names: dict id -> name, 0 -> 'none'.
      class_names: tuple of the names of labels 1.. (no background).
      metadata: the converter's metadata dict, or None for older records.
    """

    def __init__(
        self, name, split_name, dataset_dir, file_pattern, files, num_samples, class_names, metadata
    ):
        self.name = name
        self.split_name = split_name
        self.dataset_dir = dataset_dir
        self.file_pattern = file_pattern
        self.files = list(files)
        self.num_samples = num_samples
        self.num_classes = len(class_names) + 1
        self.class_names = tuple(class_names)
        self.labels_to_names = labels.labels_to_names(class_names)
        self.metadata = metadata

    def make_dataset(
        self,
        shuffle=False,
        num_readers=4,
        num_parallel_calls=tf.data.AUTOTUNE,
        seed=None,
        repeat=False,
        shuffle_buffer_size=1024,
        skip=0,
    ):
        """Builds the input pipeline; works eagerly and in tf.compat.v1 graph mode.

        Shards are interleaved READ_CYCLE at a time (`num_readers` at a time above it), one
        record of each in turn, `num_readers` of them read in parallel; records are parsed and
        decoded in parallel and prefetched. The order does not depend on `num_readers` up to
        READ_CYCLE. With shuffle, the shard order is shuffled every epoch
        and records pass a shuffle buffer of `shuffle_buffer_size` (serialized, so cheap).
        The order is deterministic unless shuffle is set without a seed. `skip` (an int or an
        int64 scalar tensor) drops that many records of the unshuffled order before they are
        parsed and decoded (the eval input cache's decoded images take their place). Every record
        is checked as parse_example parses it: iterating fails with an InvalidArgumentError
        naming the shard and the record's index there when its content is wrong.

        Returns:
          tf.data.Dataset of dicts: image uint8 [H, W, 3] RGB; shape int32 [3]; bboxes float32
          [N, 4] relative [ymin, xmin, ymax, xmax]; labels int64 [N] (1..K); difficult int64 [N];
          truncated int64 [N]; iscrowd int64 [N] (COCO crowd regions; 0 for other records);
          filename string scalar ('' for older records); image_id int64 scalar (COCO image id,
          -1 otherwise); coco_annotations string scalar (the image's COCO annotations as JSON,
          '' for records without them; see datasets/example_format.py).
        """
        deterministic = (not shuffle) or seed is not None
        files = tf.data.Dataset.from_tensor_slices(self.files)
        if shuffle:
            files = files.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            files = files.repeat()
        records = files.interleave(
            _indexed_records,
            cycle_length=max(num_readers, READ_CYCLE),
            block_length=1,
            num_parallel_calls=num_readers if num_readers > 1 else None,
            deterministic=deterministic,
        )
        if isinstance(skip, bool) or (isinstance(skip, int) and skip < 0):
            raise ValueError(f'make_dataset: skip must be a count of records, got {skip!r}.')
        if not (isinstance(skip, int) and skip == 0):
            if shuffle:
                raise ValueError('make_dataset: skip applies to the unshuffled record order only.')
            records = records.skip(skip)
        if shuffle:
            records = records.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
        examples = records.map(
            functools.partial(parse_example, num_classes=self.num_classes),
            num_parallel_calls=num_parallel_calls,
            deterministic=deterministic,
        )
        return examples.prefetch(tf.data.AUTOTUNE)


# Shards interleaved at a time, whatever the number read in parallel (up to it): a seeded run
# or an evaluation reads the records in one order with --num_readers 1 to 4 (the default).
READ_CYCLE = 4


def _indexed_records(shard):
    """tf.data.Dataset of (shard: string scalar, index: int64 scalar from 0, record: string
    scalar) of one shard's records, so that a record's checks can say where it is."""
    return tf.data.Dataset.zip(
        (
            tf.data.Dataset.from_tensors(shard).repeat(),
            # Not Dataset.counter(): a scan, whose function call per record cost 10 % of reading.
            tf.data.Dataset.range(2**63 - 1),
            tf.data.TFRecordDataset(shard),
        )
    )


# Labels of TF Object Detection API records (its create_*_tf_record.py scripts). Their label
# maps may number classes with gaps (COCO: category ids 1..90), so they are refused, not read.
_OD_API_LABEL = 'image/object/class/label'
_OD_API_KEYS = (_OD_API_LABEL, 'image/object/class/text')

_FIX = 'Convert the data again with tf_convert_data.py.'
_OD_API = (
    'a TF Object Detection API record (labels under image/object/class/label, none under '
    'image/object/bbox/label): its label map may number the classes with gaps (COCO: ids '
    '1..90), which this reader does not translate.'
)
_OD_API_FIX = 'Convert the source images and annotations with tf_convert_data.py.'
# Per object, in the order of the `counts` vector parse_example checks.
_COORDINATES = (ef.YMIN, ef.XMIN, ef.YMAX, ef.XMAX)
_FLAGS = (ef.DIFFICULT, ef.TRUNCATED, ef.ISCROWD)
_LISTS = (*_COORDINATES, ef.LABEL, *_FLAGS, _OD_API_LABEL)

_PARSE_SPEC = {
    ef.ENCODED: tf.io.FixedLenFeature([], tf.string),
    ef.FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=''),
    ef.IMAGE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    **{k: tf.io.VarLenFeature(tf.float32) for k in _COORDINATES},
    **{k: tf.io.VarLenFeature(tf.int64) for k in (ef.LABEL, *_FLAGS, _OD_API_LABEL)},
    ef.COCO_ANNOTATIONS: tf.io.FixedLenFeature([], tf.string, default_value=''),
}


def _where(shard, index):
    """'<shard>, record <index> (counted from 0)' (str, or string scalar tensor for tensors)."""
    if isinstance(shard, str):
        return f'{shard}, record {index} (counted from 0)'
    return tf.strings.join([shard, ', record ', tf.strings.as_string(index), ' (counted from 0)'])


# Values an error shows of a record's lists (the Assert op prints the first ones, then '...').
_SHOWN = 100
# A list's length must be the label count, or this: 0 for the lists that may be absent (the
# flags, then all 0, and image/object/class/label), -1 (never) for the others.
_LENGTH_IF_ABSENT = np.array([-1] * 5 + [0] * 4, np.int64)
# [ymin, xmin, ymax, xmax] @ _BOX_DIFFERENCES >= _BOX_BOUNDS: ymin >= 0, xmin >= 0,
# ymax - ymin >= 0, xmax - xmin >= 0, -ymax >= -1, -xmax >= -1.
_BOX_DIFFERENCES = np.array(
    [
        [1, 0, -1, 0, 0, 0],
        [0, 1, 0, -1, 0, 0],
        [0, 0, 1, 0, -1, 0],
        [0, 0, 0, 1, 0, -1],
    ],
    np.float32,
)
_BOX_BOUNDS = np.array([0, 0, 0, 0, -1, -1], np.float32)


@tf.autograph.experimental.do_not_convert
def parse_example(shard, index, serialized, num_classes):
    """A shard's record -> dict of decoded tensors, after checking its content.

    Args:
      shard: string scalar, the shard's path; index: int64 scalar, the record's index in it (from
        0); both only name the record in errors. serialized: string scalar, the record.
      num_classes: int, classes with background (labels must be 1..num_classes-1).
    Returns:
      image: uint8 [H, W, 3] RGB; shape: int32 [3] (= tf.shape(image));
      bboxes: float32 [N, 4] relative [ymin, xmin, ymax, xmax]; labels, difficult, truncated,
      iscrowd: int64 [N]; filename: string scalar ('' for older records); image_id: int64 scalar
      (COCO image id, -1 when absent); coco_annotations: string scalar ('' when absent).
      Records without difficult/truncated/iscrowd give zeros of length N.
    Computing them fails (InvalidArgumentError 'assertion failed: [<shard>, record <index>
    (counted from 0)] [<problem>] [<the values>] [Convert the data again with
    tf_convert_data.py.]') for a TF Object Detection API record, lists of other lengths than the
    labels', labels outside 1..num_classes-1, coordinates not finite, outside [0, 1] or with
    min > max.
    """
    f = tf.io.parse_single_example(serialized, _PARSE_SPEC)
    # A record's VarLen lists come as 1-D sparse tensors whose values are the list itself.
    values = {k: f[k].values for k in _LISTS}
    label_ids = values[ef.LABEL]
    num_objects = f[ef.LABEL].dense_shape  # int64 [1]
    counts = tf.concat([f[k].dense_shape for k in _LISTS], 0)  # int64 [9], in _LISTS order
    where = _where(shard, index)

    convert_again = tf.constant(_FIX)

    # Plain Assert ops, not tf.debugging.Assert (which adds a tf.cond, a function call, for data
    # other than strings and int32). tf.data runs a map function op by op, at about a
    # microsecond per op, so the checks are written in few ops.
    def check(ok, problem, *shown, fix=convert_again):
        return tf.raw_ops.Assert(condition=ok, data=[where, problem, *shown, fix], summarize=_SHOWN)

    zero = tf.constant(0, tf.int64)
    od_api = check(
        tf.reduce_all((num_objects > zero) | tf.equal(f[_OD_API_LABEL].dense_shape, zero)),
        _OD_API,
        fix=_OD_API_FIX,
    )
    with tf.control_dependencies([od_api]):  # its message, not the lengths', for such records
        structure = check(
            tf.reduce_all(tf.equal(counts, num_objects) | tf.equal(counts, _LENGTH_IF_ABSENT)),
            'its lists must hold one value per object: ymin, xmin, ymax, xmax and label, and '
            'difficult, truncated and iscrowd unless empty (read as 0). Their lengths ('
            f'{", ".join(k.rsplit("/", 1)[1] for k in _LISTS[:-1])}, {_OD_API_LABEL}):',
            counts,
        )
    with tf.control_dependencies([structure]):
        bboxes = tf.stack([values[k] for k in _COORDINATES], axis=1)
        # Absent flags (checked: none, or one per object) read as zeros.
        flags = {
            k: tf.sparse.to_dense(tf.SparseTensor(f[k].indices, values[k], num_objects), zero)
            for k in _FLAGS
        }
    classes = num_classes - 1
    content = [
        check(
            # 0 and negative labels wrap around to large unsigned values.
            tf.reduce_all(tf.bitcast(label_ids - 1, tf.uint64) < classes),
            f'labels must be 1..{classes}: 0 is the background, so labels are 1-based, and '
            f'{classes + 1} and above are beyond the {classes} classes of the dataset. The labels:',
            label_ids,
        ),
        # One product gives the 6 differences that must not be negative; NaN and infinities
        # fail too (as NaN, or 0 * inf = NaN).
        check(
            tf.reduce_all(tf.matmul(bboxes, _BOX_DIFFERENCES) >= _BOX_BOUNDS),
            'coordinates must be finite and relative to the image size, with 0 <= ymin <= ymax '
            '<= 1 and 0 <= xmin <= xmax <= 1 (values > 1 look like pixels). The boxes [ymin, '
            'xmin, ymax, xmax]:',
            bboxes,
        ),
    ]
    with tf.control_dependencies(content):
        image = decode_rgb(f[ef.ENCODED])
    image.set_shape([None, None, 3])
    return {
        'image': image,
        'shape': tf.shape(image, out_type=tf.int32),
        'bboxes': bboxes,
        'labels': label_ids,
        'difficult': flags[ef.DIFFICULT],
        'truncated': flags[ef.TRUNCATED],
        'iscrowd': flags[ef.ISCROWD],
        'filename': f[ef.FILENAME],
        'image_id': f[ef.IMAGE_ID],
        'coco_annotations': f[ef.COCO_ANNOTATIONS],
    }


def decode_rgb(data):
    """uint8 `[H, W, 3]` RGB of a record's image bytes: JPEG by `decode_jpeg`, with libjpeg's
    accurate integer IDCT, the pixels OpenCV and PIL decode (detect_ssd_network.py, a user's own
    code; our SavedModels' `serving_encoded` decodes with this too): TensorFlow's default fast
    IDCT differed by up to 11 levels, so evaluation scored other pixels than the ones a deployed
    model sees (a CMYK JPEG's colours OpenCV rounds otherwise: detect decodes those with
    `decode_jpeg`). Other formats (PNG, kept byte for byte by the converter) by
    `decode_image`; a 16-bit PNG at 16 bits, rounded to 8 as detect rounds it
    (`image_io.to_bgr8`): TensorFlow's 8-bit decoding truncates, up to 1 level lower. Only
    those: decoding a PNG at 16 bits takes twice as long."""

    def other():
        return tf.cond(
            _is_16_bit_png(data),
            lambda: _rounded_to_8_bits(
                tf.io.decode_image(data, channels=3, dtype=tf.uint16, expand_animations=False)
            ),
            lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
        )

    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: decode_jpeg(data),
        other,
    )


def decode_jpeg(data, ratio=1):
    """uint8 `[ceil(H / ratio), ceil(W / ratio), 3]` RGB of a JPEG's bytes (string scalar), as
    evaluation decodes it (`decode_rgb`): libjpeg's accurate integer IDCT, grey to R, G and B,
    CMYK by TensorFlow's own conversion (an Adobe file's stored samples to R = C * K // 255,
    G = M * K // 255, B = Y * K // 255), which rounds otherwise than OpenCV's; `ratio` 1, 2, 4
    or 8 scales it down in the IDCT."""
    return tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method='INTEGER_ACCURATE')


def _is_16_bit_png(data):
    """Whether `data` starts as a PNG whose IHDR (`image_io.PNG_IHDR_START`) declares 16 bits
    per sample (byte 24); its first 25 bytes padded, so that short data is simply not one."""
    start = image_io.PNG_IHDR_START
    head = tf.strings.join([tf.strings.substr(data, 0, 25), b'\0' * 25])
    return tf.equal(tf.strings.substr(head, 0, len(start)), start) & tf.equal(
        tf.strings.substr(head, 24, 1), b'\x10'
    )


def _rounded_to_8_bits(image):
    """uint16 -> uint8, each value v to round(v * 255 / 65535), `image_io.to_bgr8`'s formula
    (8-bit values, decoded as v * 257, come back unchanged)."""
    wide = tf.cast(image, tf.int32)
    return tf.cast(tf.math.floordiv(wide * 255 + 32767, 65535), tf.uint8)


# The metadata format, its shard checks and the record counter live with the writer (no TensorFlow there).
count_records = convert.count_records
DatasetFilesError = convert.DatasetFilesError


class RecordContentError(ValueError):
    """Records without metadata that this reader must not read; the message names the record."""


# Records looked at by get_dataset before reading shards without metadata: enough to see a
# source's label numbering, few enough to cost milliseconds.
_PEEK_RECORDS = 10


def _check_first_records(shard, name, class_names):
    """Raises RecordContentError when the first records of `shard` (records without metadata)
    are TF Object Detection API records or, given the default `class_names` of dataset `name`
    (tuple of str, labels 1..; None: nothing to compare), carry label_text naming other classes
    than their labels map to."""
    mismatches, first = {}, None
    for index, record in enumerate(convert.first_records(shard, _PEEK_RECORDS)):
        where = _where(shard, index)
        try:
            feature = tf.train.Example.FromString(record).features.feature
        except protobuf_message.DecodeError:
            raise RecordContentError(f'{where}: not a tf.train.Example. {_FIX}') from None
        label_ids = feature[ef.LABEL].int64_list.value if ef.LABEL in feature else []
        if not label_ids and any(k in feature for k in _OD_API_KEYS):
            raise RecordContentError(f'{where}: {_OD_API} {_OD_API_FIX}')
        texts = feature[ef.LABEL_TEXT].bytes_list.value if ef.LABEL_TEXT in feature else []
        if class_names is None or len(texts) != len(label_ids):
            continue
        for label, text in zip(label_ids, texts):
            text = text.decode('utf-8', 'replace')
            # Labels outside 1..K are the reader's to report (parse_example).
            if 1 <= label <= len(class_names) and class_names[label - 1] != text:
                mismatches.setdefault((label, text), class_names[label - 1])
                first = first or where
    if mismatches:
        pairs = ', '.join(
            f'{label} -> {text!r} (label {label} is {known!r})'
            for (label, text), known in sorted(mismatches.items())[:6]
        )
        raise RecordContentError(
            f'{first}: image/object/bbox/label_text names other classes than the labels map to '
            f'(label -> text: {pairs}). Without metadata, the labels 1..{len(class_names)} of '
            f'{name} are {", ".join(class_names[:2])}, ..., {class_names[-1]} in this order: '
            f'these records number their classes otherwise. {_FIX}'
        )


def _resolve(dataset_dir, pattern):
    return pattern if os.path.isabs(pattern) else os.path.join(dataset_dir, pattern)


_RECORD_FILE = re.compile(r'^(.+)_(?:\d+\.tfrecord|metadata\.json)$')


def _splits_there(dataset_dir, name):
    """['--dataset_name=N --dataset_split_name=S', ...]: the splits whose records `dataset_dir`
    holds, named for a registered dataset whose prefix fits them (`name` first), else as 'custom'
    records (whose split name is the converter's whole --output_name)."""
    try:
        prefixes = sorted(
            {m.group(1) for m in map(_RECORD_FILE.match, os.listdir(dataset_dir)) if m}
        )
    except OSError:
        return []
    fixed = [(n, _REGISTRY[n].prefix.format(split='')) for n in [name, *sorted(_REGISTRY)]]
    found = []
    for prefix in prefixes[:20]:
        dataset, split = next(
            (
                (n, prefix[len(start) :])
                for n, start in fixed
                if start and prefix.startswith(start) and len(prefix) > len(start)
            ),
            ('custom', prefix),
        )
        found.append(f'--dataset_name={dataset} --dataset_split_name={split}')
    return found


def recorded_source(name, split_name, dataset_dir):
    """The `source` that the converter's metadata of dataset `name`'s split in `dataset_dir`
    records (tf_convert_data.py's input: VOC folders and --split, or the COCO annotation file
    and its sha256), or None where no readable metadata of ours is there. Reads the metadata
    only: the shards need not be there (a model's training records, seen from an evaluation)."""
    if not all(isinstance(v, str) for v in (name, split_name, dataset_dir)):
        return None  # a card's free-form provenance
    entry = _REGISTRY.get(name)
    if entry is None:
        return None
    path = convert.metadata_path(dataset_dir, entry.prefix.format(split=split_name))
    try:
        data = safe_io.read_json(path, 'metadata', convert.MAX_METADATA_BYTES)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get('format') != convert.METADATA_FORMAT:
        return None
    source = data.get('source')
    return source if isinstance(source, dict) else None


def _load_metadata(path, verify_digests=False):
    metadata, files = convert.read_metadata(path, verify_digests)
    class_names = [c['name'] for c in sorted(metadata['classes'], key=lambda c: c['id'])]
    return metadata, files, class_names


def category_ids(metadata):
    """The external ids of labels 1..K (tuple of ints, in label order) that records' `metadata`
    gives their classes, or None: no metadata (older records), or classes without them (a plain
    labels file). COCO's category ids (`coco_category_id`, see datasets/coco.py) or a label map's
    item ids (`label_map_id`, VOC converted with a TF Object Detection API label map).
    convert.read_metadata has checked them: in every class or in none, under one key, distinct
    integers in 0..2**63-1."""
    return _ids(metadata, convert.CATEGORY_ID_KEYS)


def coco_category_ids(metadata):
    """`category_ids` of records converted from COCO (their `coco_category_id`s), else None."""
    return _ids(metadata, [convert.COCO_CATEGORY_ID])


def _ids(metadata, keys):
    """The ids under the first of `keys` that every class of `metadata` has, else None."""
    classes = sorted((metadata or {}).get('classes', []), key=lambda c: c['id'])
    for key in keys:
        if classes and all(key in c for c in classes):
            return tuple(c[key] for c in classes)
    return None


def relabel_advice(metadata):
    """How records could be given a model's classes, for messages about classes that differ: a
    VOC conversion takes the model's labels file; a COCO one's classes are its annotation file's
    categories (the converter takes no labels file for COCO)."""
    if coco_category_ids(metadata) is not None:
        return (
            'convert an annotation file whose categories are the model\'s classes (COCO records '
            'take their classes from it; the converter takes no labels file for COCO)'
        )
    return 'convert the data with the model\'s labels file (tf_convert_data.py --labels_file)'


def _with_background(whose, names):
    """A class count for messages: "the records' 4 classes (cat, dog, bird, fish) and the
    background make num_classes=5" for `whose` "the records'". Messages count classes without the
    background and call the count with it num_classes, as the flag and the card do."""
    return (
        f'{whose} {len(names)} classes ({texts.listed(names, 10)}) and the background make '
        f'num_classes={len(names) + 1}'
    )


def _class_difference(record_names, num_classes, model_names):
    """What a message about a class count that differs adds: the model's classes and those only
    one side has, when `model_names` (the model's class names) are known; else, when
    `num_classes` is the records' count without background, that it counts the background."""
    if model_names:
        model_names = list(model_names)
        extra = [n for n in record_names if n not in model_names]
        missing = [n for n in model_names if n not in record_names]
        said = '; ' + _with_background("the model's", model_names)
        if extra:
            said += f'; only the records have {texts.listed(extra, 10)}'
        if missing:
            said += f'; only the model has {texts.listed(missing, 10)}'
        return said
    if num_classes == len(record_names):
        return f' (num_classes counts the background too: {num_classes} leaves it out)'
    return ''


def get_dataset(
    name,
    split_name,
    dataset_dir,
    file_pattern=None,
    num_classes=None,
    verify_digests=False,
    model_class_names=None,
):
    """Looks a dataset split up.

    Args:
      name: a registered name (dataset_names()).
      split_name: e.g. 'train', 'test', 'trainval' (for 'custom': the converter's output_name).
      dataset_dir: folder holding the shards.
      file_pattern: optional glob overriding the default `<prefix>_*.tfrecord`; '%s' is replaced
        by split_name (older-port style, e.g. 'voc_2007_%s_*.tfrecord'). A metadata file is used
        when the pattern ends in '_*.tfrecord' and `<that prefix>_metadata.json` exists.
      num_classes: classes including background. Needed only for records without metadata and no
        default classes (coco_2017, custom); must agree with the metadata when both exist.
      verify_digests: also compare every shard's sha256 with the metadata (reads all the data);
        names, presence and sizes are always checked.
      model_class_names: the class names of the model `num_classes` is of, when the caller
        knows them (a model card's): a class count that disagrees then names the classes only
        one side has.
    Returns:
      DetectionDataset.
    Raises:
      ValueError: unknown name, num_classes disagreeing with the metadata or missing;
        DatasetFilesError (a ValueError): a shard differs from what the metadata records, or
        an empty shard without metadata; RecordContentError (a ValueError): records without
        metadata that are TF Object Detection API records or whose label_text disagrees with
        the VOC classes their labels map to.
      FileNotFoundError: no shards found (the message lists what dataset_dir holds), a shard the
        metadata lists is missing, or a conversion was interrupted while replacing the shards.
    """
    check_dataset_name(name)
    entry = _REGISTRY[name]
    file_pattern_given = file_pattern
    if file_pattern is None:
        file_pattern = entry.prefix.format(split=split_name) + _SHARD_GLOB_SUFFIX
    elif '%s' in file_pattern:
        file_pattern = file_pattern % split_name
    pattern_path = _resolve(dataset_dir, file_pattern)
    meta_path = marker_path = None
    if pattern_path.endswith(_SHARD_GLOB_SUFFIX):
        meta_path = pattern_path[: -len(_SHARD_GLOB_SUFFIX)] + convert.METADATA_SUFFIX
        marker_path = pattern_path[: -len(_SHARD_GLOB_SUFFIX)] + convert.INCOMPLETE_SUFFIX
    if meta_path and os.path.isfile(meta_path):
        metadata, files, class_names = _load_metadata(meta_path, verify_digests)
        num_samples = metadata['num_examples']
        if num_classes is not None and num_classes != len(class_names) + 1:
            records = _with_background("the records'", class_names)
            raise ValueError(
                f'num_classes={num_classes} disagrees with {meta_path}: {records}'
                f'{_class_difference(class_names, num_classes, model_class_names)}. The model '
                f'(--num_classes or its card) and the records must count the same classes: use a '
                f'model of these classes, or {relabel_advice(metadata)}.'
            )
    elif marker_path and os.path.lexists(marker_path):
        raise FileNotFoundError(
            f'{marker_path}: a conversion was interrupted while it replaced the shards of '
            f'{os.path.basename(pattern_path[: -len(_SHARD_GLOB_SUFFIX)])}, so the shards there are '
            f'a mix or a part; convert the data again.'
        )
    else:
        metadata = None
        files = sorted(glob.glob(pattern_path))
        if not files:
            there = _splits_there(dataset_dir, name) if file_pattern_given is None else []
            output_name = entry.prefix.format(split=split_name)
            unconverted = (
                None if there else folders.conversion_hint(dataset_dir, split_name, output_name)
            )
            if unconverted:
                hint = f' {unconverted}'
            elif os.path.isfile(dataset_dir) and dataset_dir.endswith(
                ('.tfrecord', convert.METADATA_SUFFIX)
            ):
                # A shard or the metadata file of the folder to pass.
                hint = (
                    f' --dataset_dir is the folder of the records: pass '
                    f'--dataset_dir={os.path.dirname(dataset_dir) or "."}.'
                )
            else:
                hint = (
                    f' Its records are those of {" and of ".join(there)}: pass '
                    f'{"one of them" if len(there) > 1 else "it"} (split names are '
                    f'case-sensitive), or convert'
                    if there
                    else ' Convert'
                ) + f' the data with tf_convert_data.py --output_name={output_name}.'
            raise FileNotFoundError(
                f'dataset {name!r} split {split_name!r}: no files match {pattern_path} '
                f'({folders.describe(dataset_dir)}).{hint}'
            )
        if num_classes is None:
            if entry.class_names is None:
                raise ValueError(
                    f'{pattern_path}: no metadata file ({meta_path}), so the class count is unknown; '
                    f'pass num_classes (including background).'
                )
            num_classes = len(entry.class_names) + 1
        if entry.class_names is not None and num_classes == len(entry.class_names) + 1:
            class_names = list(entry.class_names)
        else:
            class_names = [f'class_{i}' for i in range(1, num_classes)]
        # Refused, not skipped: a write that failed leaves such a file, and reading the others
        # would silently evaluate or train on part of the split.
        counts = [count_records(f) for f in files]  # refuses FIFOs, links to devices, GZIP files
        empty = [f for f, count in zip(files, counts) if count == 0]  # 0 records: 0 bytes
        if empty:
            raise DatasetFilesError(
                f'{empty[0]}: an empty shard (0 bytes) among the {len(files)} files matching '
                f'{pattern_path}{f" ({len(empty)} empty)" if len(empty) > 1 else ""}; its examples '
                f'are missing. {_FIX}'
            )
        num_samples = sum(counts)
        _check_first_records(
            files[0], name, entry.class_names if entry.class_names == tuple(class_names) else None
        )
        logging.info(
            'No metadata for %s: counted %d records in %d file(s); assuming %d classes with background.',
            pattern_path,
            num_samples,
            len(files),
            num_classes,
        )
    return DetectionDataset(
        name, split_name, dataset_dir, file_pattern, files, num_samples, class_names, metadata
    )
