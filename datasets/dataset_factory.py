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
anything is read: present, a regular file, and of the size the metadata records (metadata of
version 1, without sizes: its record count), so an emptied, truncated or replaced shard fails
with its name instead of silently giving fewer examples; `verify_digests=True` also compares
each shard's sha256 (reads every byte). A `<prefix>_incomplete.json` without metadata means a
conversion was interrupted while replacing the shards: refused. Without either (records of the
older TensorFlow port, e.g. `voc_2007_train_000.tfrecord`) the shards are globbed, the samples
are counted by reading the record headers (logged), and the classes are the VOC ones for the
pascalvoc names, else `class_<id>`; `num_classes` must then be given for coco_2017/custom.
"""

import dataclasses
import glob
import os
import re

from absl import logging
import tensorflow as tf

from datasets import convert
from datasets import example_format as ef
from datasets import labels


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

        Shards are read by a parallel interleave of `num_readers` files, records are parsed and
        decoded in parallel and prefetched. With shuffle, the shard order is shuffled every epoch
        and records pass a shuffle buffer of `shuffle_buffer_size` (serialized, so cheap).
        The order is deterministic unless shuffle is set without a seed. `skip` (an int or an
        int64 scalar tensor) drops that many records of the unshuffled order before they are
        parsed and decoded (the eval input cache's decoded images take their place).

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
            tf.data.TFRecordDataset,
            cycle_length=num_readers,
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
            parse_example, num_parallel_calls=num_parallel_calls, deterministic=deterministic
        )
        return examples.prefetch(tf.data.AUTOTUNE)


_PARSE_SPEC = {
    ef.ENCODED: tf.io.FixedLenFeature([], tf.string),
    ef.FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=''),
    ef.IMAGE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    ef.XMIN: tf.io.VarLenFeature(tf.float32),
    ef.XMAX: tf.io.VarLenFeature(tf.float32),
    ef.YMIN: tf.io.VarLenFeature(tf.float32),
    ef.YMAX: tf.io.VarLenFeature(tf.float32),
    ef.LABEL: tf.io.VarLenFeature(tf.int64),
    ef.DIFFICULT: tf.io.VarLenFeature(tf.int64),
    ef.TRUNCATED: tf.io.VarLenFeature(tf.int64),
    ef.ISCROWD: tf.io.VarLenFeature(tf.int64),
    ef.COCO_ANNOTATIONS: tf.io.FixedLenFeature([], tf.string, default_value=''),
}


def parse_example(serialized):
    """Serialized example (string scalar tensor) -> dict of decoded tensors.

    Returns:
      image: uint8 [H, W, 3] RGB; shape: int32 [3] (= tf.shape(image));
      bboxes: float32 [N, 4] relative [ymin, xmin, ymax, xmax]; labels, difficult, truncated,
      iscrowd: int64 [N]; filename: string scalar ('' for older records); image_id: int64 scalar
      (COCO image id, -1 when absent); coco_annotations: string scalar ('' when absent).
      Records without difficult/truncated/iscrowd give zeros of length N.
    """
    f = tf.io.parse_single_example(serialized, _PARSE_SPEC)
    # decode_image sniffs the bytes, so older records holding PNG data also decode.
    image = tf.io.decode_image(f[ef.ENCODED], channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    dense = {
        k: tf.sparse.to_dense(f[k])
        for k in (
            ef.XMIN,
            ef.XMAX,
            ef.YMIN,
            ef.YMAX,
            ef.LABEL,
            ef.DIFFICULT,
            ef.TRUNCATED,
            ef.ISCROWD,
        )
    }
    label_ids = dense[ef.LABEL]
    zeros = tf.zeros_like(label_ids)
    flags = {
        k: tf.cond(
            tf.equal(tf.size(dense[k]), tf.size(label_ids)), lambda k=k: dense[k], lambda: zeros
        )
        for k in (ef.DIFFICULT, ef.TRUNCATED, ef.ISCROWD)
    }
    return {
        'image': image,
        'shape': tf.shape(image, out_type=tf.int32),
        'bboxes': tf.stack(
            [dense[ef.YMIN], dense[ef.XMIN], dense[ef.YMAX], dense[ef.XMAX]], axis=1
        ),
        'labels': label_ids,
        'difficult': flags[ef.DIFFICULT],
        'truncated': flags[ef.TRUNCATED],
        'iscrowd': flags[ef.ISCROWD],
        'filename': f[ef.FILENAME],
        'image_id': f[ef.IMAGE_ID],
        'coco_annotations': f[ef.COCO_ANNOTATIONS],
    }


# The metadata format, its shard checks and the record counter live with the writer (no TensorFlow there).
count_records = convert.count_records
DatasetFilesError = convert.DatasetFilesError


def _resolve(dataset_dir, pattern):
    return pattern if os.path.isabs(pattern) else os.path.join(dataset_dir, pattern)


def _available(dataset_dir):
    if not os.path.isdir(dataset_dir):
        return f'{dataset_dir} does not exist'
    names = sorted(
        n for n in os.listdir(dataset_dir) if n.endswith(('.tfrecord', convert.METADATA_SUFFIX))
    )
    return f'{dataset_dir} holds {names[:20]}{" ..." if len(names) > 20 else ""}'


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


def _load_metadata(path, verify_digests=False):
    metadata, files = convert.read_metadata(path, verify_digests)
    class_names = [c['name'] for c in sorted(metadata['classes'], key=lambda c: c['id'])]
    return metadata, files, class_names


def category_ids(metadata):
    """The COCO category ids of labels 1..K (tuple of ints, in label order) that records'
    `metadata` gives their classes (`coco_category_id`, see datasets/coco.py), or None: no
    metadata (older records), or classes without them (other sources). convert.read_metadata has
    checked them: in every class or in none, distinct integers in 0..2**63-1."""
    classes = sorted((metadata or {}).get('classes', []), key=lambda c: c['id'])
    if classes and all('coco_category_id' in c for c in classes):
        return tuple(c['coco_category_id'] for c in classes)
    return None


def get_dataset(
    name, split_name, dataset_dir, file_pattern=None, num_classes=None, verify_digests=False
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
    Returns:
      DetectionDataset.
    Raises:
      ValueError: unknown name, num_classes disagreeing with the metadata or missing;
        DatasetFilesError (a ValueError): a shard differs from what the metadata records.
      FileNotFoundError: no shards found (the message lists what dataset_dir holds), a shard the
        metadata lists is missing, or a conversion was interrupted while replacing the shards.
    """
    if name not in _REGISTRY:
        raise ValueError(f'Unknown dataset {name!r}; known: {dataset_names()}.')
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
            raise ValueError(
                f'num_classes={num_classes} disagrees with {meta_path}: {len(class_names)} classes + '
                f'background = {len(class_names) + 1}. The model (--num_classes or its card) and '
                f'the records must count the same classes: convert the data with the model\'s '
                f'labels file, or use a model of these classes.'
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
            hint = (
                f' Its records are those of {" and of ".join(there)}: pass one of them (split '
                f'names are case-sensitive), or convert'
                if there
                else ' Convert'
            )
            raise FileNotFoundError(
                f'Dataset {name!r} split {split_name!r}: no files match {pattern_path} '
                f'({_available(dataset_dir)}).{hint} the data with tf_convert_data.py '
                f'--output_name={entry.prefix.format(split=split_name)}.'
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
        num_samples = sum(count_records(f) for f in files)
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
