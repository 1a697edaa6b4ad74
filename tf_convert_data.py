r"""Converts a Pascal VOC-layout or COCO dataset to sharded TFRecords for SSD training/evaluation.

Writes `<output_dir>/<output_name>_<NNN>.tfrecord` and, last, `<output_name>_metadata.json`
(example count, classes with per-class counts, what was fixed/dropped/skipped). Name the output
after the registry convention so `datasets.dataset_factory.get_dataset` finds it:
`voc_2007_<split>`, `voc_2012_<split>`, `voc_0712_<split>`, `coco_2017_<split>`, or any name
for the generic `custom` dataset (split_name = output_name). VOC without --split converts every
annotation of Annotations/, whatever the split lists say (test.txt's ids too): a note names the
lists when the folder has some.

  python tf_convert_data.py --dataset_name=pascalvoc --dataset_dir=VOC2007,VOC2012 \
      --split=trainval --output_dir=tfrecords --output_name=voc_0712_trainval
  python tf_convert_data.py --dataset_name=pascalvoc --dataset_dir=my_data \
      --labels_file=my_data/labels.txt --split=train --output_dir=tfrecords --output_name=train
  python tf_convert_data.py --dataset_name=coco --annotations_file=annotations/instances_val2017.json \
      --dataset_dir=val2017 --output_dir=tfrecords --output_name=coco_2017_val
  # check an output, convert nothing:
  python tf_convert_data.py --verify --output_dir=tfrecords --output_name=coco_2017_val

Every input file is treated as possibly hostile: only regular files are read, image sizes are
checked on the header before decoding (--max_image_pixels, and TensorFlow's own decoder limit),
file sizes before reading (--max_image_bytes), objects per image are capped
(--max_objects_per_image), paths in split files / COCO file_name must stay inside the dataset
folder (--allow_outside_paths), and files named like the output that this converter did not
write are never overwritten or deleted.
"""

import os
import re
import sys

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags
from absl import logging

from datasets import coco
from datasets import convert
from datasets import folders
from datasets import image_io
from datasets import labels
from datasets import pascalvoc
from tf_extended import texts

FLAGS = flags.FLAGS
flags.DEFINE_enum('dataset_name', None, ['pascalvoc', 'coco'], 'Input layout.')
flags.DEFINE_string(
    'dataset_dir',
    None,
    'VOC: a VOC folder or a comma-separated list of them (one output). COCO: the image folder.',
)
flags.DEFINE_string('annotations_file', None, 'COCO: the instances_*.json file.')
flags.DEFINE_string('output_dir', None, 'Where to write the shards and the metadata JSON.')
flags.DEFINE_string('output_name', None, 'File prefix, e.g. voc_2007_train.')
flags.DEFINE_string(
    'split',
    None,
    'VOC: convert the ids of ImageSets/Main/<split>.txt; when not set, every annotation of '
    'Annotations/, those of test.txt too (a note says so when the folder has split lists).',
)
flags.DEFINE_string(
    'labels_file',
    None,
    'VOC: class names, one per line (id = line number), or a TF Object Detection API '
    'label_map.pbtxt (names in id order); default: the 20 VOC classes.',
)
flags.DEFINE_integer('samples_per_file', 200, 'Examples per shard.', lower_bound=1)
flags.DEFINE_boolean('shuffle', True, 'Shuffle the example order (with --seed) before sharding.')
flags.DEFINE_integer('seed', 0, 'Seed of the shuffle.')
flags.DEFINE_integer(
    'num_workers',
    None,
    'Worker processes (default: all cores; at most one per shard of --samples_per_file examples).',
    lower_bound=1,
)
flags.DEFINE_boolean(
    'skip_bad_examples', False, 'Skip (and report) corrupt images/annotations instead of failing.'
)
flags.DEFINE_boolean(
    'skip_unknown_classes',
    False,
    'Drop (and report) objects of unknown classes instead of failing.',
)
flags.DEFINE_integer(
    'max_image_pixels',
    image_io.DEFAULT_MAX_IMAGE_PIXELS,
    'Images with more pixels (width x height, read from the header before decoding) are bad '
    'examples. Images above TensorFlow\'s JPEG decoder limit (~179 M pixels) always are.',
    lower_bound=1,
)
flags.DEFINE_integer(
    'max_image_bytes',
    image_io.DEFAULT_MAX_IMAGE_BYTES,
    'Image files larger than this (bytes, checked before reading) are bad examples.',
    lower_bound=1,
)
flags.DEFINE_integer(
    'max_objects_per_image',
    convert.DEFAULT_MAX_OBJECTS_PER_IMAGE,
    'Images with more objects (after dropping unusable boxes) are bad examples; matching '
    'costs anchors x objects per image.',
    lower_bound=1,
)
flags.DEFINE_boolean(
    'allow_outside_paths',
    False,
    'Accept VOC split ids and COCO file_names that are absolute paths or climb out of the '
    'dataset folder with "..". Otherwise such entries are bad examples.',
)
flags.DEFINE_boolean(
    'verify',
    False,
    'Check an existing conversion (<output_dir>/<output_name>): every shard the metadata lists '
    'is present with its size and sha256 digest. Converts nothing.',
)
flags.mark_flags_as_required(['output_dir', 'output_name'])

_SKIP_HINT = (
    'pass --skip_bad_examples to skip such examples (each is listed in the metadata report), '
    'or fix the input'
)


def main(_):
    logging.set_verbosity(logging.INFO)
    try:
        if FLAGS.verify:
            _verify()
        else:
            _convert()
    except convert.BadExampleError as e:
        # The message names the file and what is wrong; a traceback would only bury it.
        logs.exit_error(f'{str(e).rstrip(".")} ({_SKIP_HINT}).')
    except (convert.UnknownClassError, ValueError, OSError) as e:
        logs.exit_error(e)


def _verify():
    if not os.path.isdir(FLAGS.output_dir):
        raise FileNotFoundError(
            f'--output_dir: {folders.describe(FLAGS.output_dir)}; --verify expected the folder '
            f'of an earlier conversion: pass the --output_dir and --output_name it wrote.'
        )
    meta = convert.metadata_path(FLAGS.output_dir, FLAGS.output_name)
    marker = convert.incomplete_marker_path(FLAGS.output_dir, FLAGS.output_name)
    if not os.path.isfile(meta):
        if os.path.lexists(marker):
            raise FileNotFoundError(
                f'{marker}: a conversion was interrupted while it replaced the shards; '
                f'convert the data again.'
            )
        suffix = convert.METADATA_SUFFIX
        names = sorted(
            n[: -len(suffix)] for n in os.listdir(FLAGS.output_dir) if n.endswith(suffix)
        )
        there = (
            f'; {FLAGS.output_dir} holds the conversions --output_name={", ".join(names)}'
            if names
            else ''
        )
        raise FileNotFoundError(
            f'{meta}: no metadata, so nothing to verify the shards against (records of the '
            f'older port have none; convert them again to get one){there}.'
        )
    metadata, files = convert.read_metadata(meta, verify_digests=True)
    how = (
        'size and sha256 digest'
        if all('sha256' in f for f in metadata['files'])
        else 'record count (metadata version 1 has no digests)'
    )
    print(
        f'tf_convert_data: {meta}: {len(files)} shard(s), {metadata["num_examples"]} examples; '
        'every shard is '
        f'present with the {how} the metadata lists.'
    )


def _convert():
    if not FLAGS.dataset_name or not FLAGS.dataset_dir:
        raise ValueError('--dataset_name and --dataset_dir are required (unless --verify).')
    _check_output_dir()
    limits = image_io.ImageLimits(
        max_pixels=FLAGS.max_image_pixels, max_bytes=FLAGS.max_image_bytes
    )
    if FLAGS.dataset_name == 'pascalvoc':
        if FLAGS.annotations_file:
            raise ValueError('--annotations_file is for --dataset_name=coco.')
        dirs = [d for d in FLAGS.dataset_dir.split(',') if d]
        _check_voc_inputs(dirs)
        class_names, ids = (
            labels.read_labels_flag(
                FLAGS.labels_file, ValueError, near=dirs, read=labels.read_class_list
            )
            if FLAGS.labels_file
            else (labels.VOC_CLASSES, None)
        )
        sources = pascalvoc.list_examples(
            dirs, FLAGS.split, FLAGS.allow_outside_paths, _note, repeats_ok=True
        )
        if FLAGS.split is None:
            for notice in (
                _unsplit_notice(dirs, len(sources), FLAGS.output_name),
                _unannotated_notice(dirs),
            ):
                if notice:
                    _note(notice)
        loader = pascalvoc.VocLoader(
            class_names, FLAGS.skip_unknown_classes, limits, _labels_advice(dirs)
        )
        description = {
            'dataset_name': 'pascalvoc',
            'dataset_dirs': [os.path.abspath(d) for d in dirs],
            'split': FLAGS.split,
            'labels_file': FLAGS.labels_file and os.path.abspath(FLAGS.labels_file),
        }
        # A label map's ids go to the model card (`category_ids`): detections.json names them.
        class_extra = ids and [{convert.LABEL_MAP_ID: i} for i in ids]
    else:
        if not FLAGS.annotations_file:
            raise ValueError('--dataset_name=coco needs --annotations_file (instances_*.json).')
        given = [f'--{name}' for name in ('labels_file', 'split') if FLAGS[name].value]
        if given:
            raise ValueError(
                f'{" and ".join(given)} {"are" if len(given) > 1 else "is"} for VOC; COCO classes '
                'and images come from the JSON.'
            )
        _check_coco_inputs()
        sources, class_names, class_extra, description = coco.read_annotations(
            FLAGS.annotations_file, FLAGS.dataset_dir, FLAGS.allow_outside_paths
        )
        if not FLAGS.skip_bad_examples:
            _check_coco_images_found(sources)
        loader = coco.CocoLoader(
            [c[convert.COCO_CATEGORY_ID] for c in class_extra],
            class_names,
            FLAGS.skip_unknown_classes,
            limits,
        )
    description.update(
        skip_unknown_classes=FLAGS.skip_unknown_classes,
        max_image_pixels=FLAGS.max_image_pixels,
        max_image_bytes=FLAGS.max_image_bytes,
        allow_outside_paths=FLAGS.allow_outside_paths,
    )
    # A conversion replaces its earlier output of the same name (atomically): said, not silent.
    earlier = _earlier_examples(convert.metadata_path(FLAGS.output_dir, FLAGS.output_name))
    metadata = convert.convert(
        sources,
        loader,
        class_names,
        FLAGS.output_dir,
        FLAGS.output_name,
        samples_per_file=FLAGS.samples_per_file,
        shuffle=FLAGS.shuffle,
        seed=FLAGS.seed,
        num_workers=FLAGS.num_workers,
        skip_bad_examples=FLAGS.skip_bad_examples,
        description=description,
        class_extra=class_extra,
        max_objects_per_image=FLAGS.max_objects_per_image,
    )
    logging.info(
        'Wrote %s in %s; metadata: %s',
        texts.counted(metadata['num_examples'], 'example'),
        texts.counted(len(metadata['files']), 'shard'),
        convert.metadata_path(FLAGS.output_dir, FLAGS.output_name),
    )
    empty = [c for c in metadata['classes'] if c['num_objects'] == 0]
    if empty:
        logging.warning(_empty_classes_warning(empty))
    if earlier is not None:
        logging.info(
            'They replace the earlier %s records in %s (%s examples).',
            FLAGS.output_name,
            FLAGS.output_dir,
            earlier,
        )


def _earlier_examples(metadata_path):
    """The example count of an earlier conversion's metadata at `metadata_path` ('?' where it
    cannot be read), or None where there is none."""
    if not os.path.lexists(metadata_path):
        return None
    try:
        return convert.read_metadata(metadata_path)[0]['num_examples']
    except (ValueError, OSError):
        return '?'


def _empty_classes_warning(empty):
    """The warning for the classes `empty` (metadata 'classes' entries) that have no object in
    the records written: a model trained on them has an output for each that nothing teaches."""
    if FLAGS.dataset_name == 'coco':
        return coco.empty_categories_warning(FLAGS.annotations_file, empty)
    names = ', '.join(repr(c['name']) for c in empty)
    listed = f'--labels_file={FLAGS.labels_file}' if FLAGS.labels_file else "VOC's 20 classes"
    one = len(empty) == 1
    # A labels file that lists the background makes it label 1, a class of its own.
    background = [c['name'] for c in empty if c['name'].casefold() in labels.BACKGROUND_LINES]
    hint = (
        f' Label 0, the background, is implied: a labels file lists only the objects\' classes, '
        f'its first line label 1; remove {", ".join(map(repr, background))} from it.'
        if background
        else ''
    )
    return (
        f'{"class" if one else "classes"} {names} of {listed} {"has" if one else "have"} no '
        f'objects in these records: a model trained on them has an output for '
        f'{"it" if one else "each"} that nothing teaches (an evaluation on them reports '
        f'{"it" if one else "them"} absent). Check the names in the annotations; a class that is '
        'not yours can be removed from the labels file.' + hint
    )


def _note(message):
    """Prints `message` (one line) as a note of the converter on stderr, beside its progress."""
    print(f'tf_convert_data: note: {message}', file=sys.stderr, flush=True)


def _unannotated_notice(dirs):
    """The note of a conversion without --split when JPEGImages/ holds images that no annotation
    names (LabelImg writes no XML for an image without boxes): how many, a few of them, and that
    they are not converted. None when every image has an annotation."""
    paths = [
        os.path.join(root, 'JPEGImages', name)
        for root in dirs
        for name in pascalvoc.unannotated_images(root)
    ]
    if not paths:
        return None
    shown = texts.listed(paths, 5)
    return (
        f'{texts.counted(len(paths), "image")} of JPEGImages/ {"has" if len(paths) == 1 else "have"} '
        f'no annotation (Annotations/<id>.xml), so {"is" if len(paths) == 1 else "are"} not '
        f'converted: {shown}. An image with no objects needs an annotation XML with no <object> '
        'to be converted as a negative example.'
    )


def _unsplit_notice(dirs, num_examples, output_name):
    """The note of a conversion without --split when a --dataset_dir folder has split lists
    (ImageSets/Main/<split>.txt): every annotation is converted, test.txt's ids too; which lists
    there are; which --split converts one of them. None when no folder has a list (custom data
    without lists: converting everything is what is wanted).

    Args:
      dirs: the --dataset_dir folders; num_examples: how many annotations are listed;
      output_name: the --output_name, said when it names a split (voc_2007_train).
    """
    found = [(root, pascalvoc.split_lists(root)) for root in dirs]
    found = [(root, dict(lists), lists) for root, lists in found if lists]
    if not found:
        return None
    several = len(dirs) > 1
    included = []  # test.txt ids that have an annotation, so are converted
    for root, by_name, _ in found:
        test = by_name.get('test')
        if test:
            have = set(pascalvoc.annotation_ids(root))
            n = sum(image_id in have for image_id in test)
            whose = os.path.join(root, 'ImageSets', 'Main', 'test.txt') if several else 'test.txt'
            if n == len(test):
                included.append(f'the {texts.counted(n, "id")} of {whose}')
            elif n:
                included.append(f'{n} of the {len(test)} ids of {whose}')
    said = (
        f'--split is not set, so every annotation of Annotations/ is converted '
        f'({texts.counted(num_examples, "example")})'
    )
    if included:
        said += f', including {" and ".join(included)}'
    # --split reads the list in every folder: only lists that all of them have, readable.
    common = [
        split
        for split, _ in found[0][2]
        if len(found) == len(dirs) and all(b.get(split) is not None for _, b, _ in found)
    ]
    splits = set(pascalvoc.VOC_SPLITS).union(*(b for _, b, _ in found))
    named = [t for t in re.split(r'[^0-9A-Za-z]+', output_name) if t in splits]
    if named:
        said += f', though --output_name={output_name} names the {named[-1]} split'
    listed = '; '.join(
        f'{os.path.join(root, "ImageSets", "Main", "")} lists '
        + ', '.join(
            f'{split}.txt ({"unreadable" if ids is None else texts.counted(len(ids), "id")})'
            for split, ids in lists
        )
        for root, _, lists in found
    )
    if not common:
        return (
            f'{said}; {listed}. --split=<split> reads ImageSets/Main/<split>.txt of every '
            '--dataset_dir folder, and no list is in all of them.'
        )
    if named and named[-1] in common:
        first = named[-1]
    else:
        first = 'trainval' if 'trainval' in common else common[0]
    others = [split for split in common if split != first]
    besides = f' (or {", ".join(others)})' if others else ''
    where = ' in each folder' if several else ''
    return f'{said}; {listed}: pass --split={first}{besides} to convert only the ids of that list{where}.'


def _check_output_dir():
    """--output_dir: a folder, or a path where one can be made (no file on the way)."""
    path = folders.existing_ancestor(FLAGS.output_dir)
    if not os.path.isdir(path):
        where = '' if path == os.path.abspath(FLAGS.output_dir) else f'{FLAGS.output_dir}: '
        raise FileExistsError(
            f'--output_dir: {where}{folders.describe(path)}; expected a folder for the records '
            f'(made when missing): pass another --output_dir.'
        )


def _missing_with_parent(path):
    """`folders.describe(path)`, with what its parent folder holds when `path` does not exist
    (a mistyped name shows beside the right one)."""
    said = folders.describe(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.lexists(path) and os.path.isdir(parent):
        said += f' ({folders.describe(parent)})'
    return said


def _labels_advice(dirs):
    """What the unknown-class error advises about the class list: without --labels_file, the
    labels.txt of a --dataset_dir folder when there is one."""
    found = (
        []
        if FLAGS.labels_file
        else [f for f in (os.path.join(d, 'labels.txt') for d in dirs) if os.path.isfile(f)]
    )
    if found:
        return (
            f'pass --labels_file={found[0]} (the classes are the {len(labels.VOC_CLASSES)} of '
            'Pascal VOC without it)'
        )
    return 'pass --labels_file with the full class list'


def _check_voc_inputs(dirs):
    """Each --dataset_dir a VOC folder, named once, holding the --split file when --split is
    given."""
    if not dirs:
        raise FileNotFoundError(
            f'--dataset_dir={FLAGS.dataset_dir!r} names no folder; expected {folders.VOC_EXPECTED} '
            f'or a comma-separated list of them.'
        )
    seen = {}
    for root in dirs:
        other = seen.setdefault(os.path.realpath(root), root)
        if other != root or dirs.count(root) > 1:
            same = root if other == root else f'one folder ({other}, {root})'
            raise ValueError(
                f'--dataset_dir names {same} twice: its images would be converted twice; name '
                'each folder once.'
            )
    for root in dirs:
        problem = pascalvoc.folder_problem(root)
        if problem:
            raise FileNotFoundError(f'--dataset_dir: {problem}.')
        if FLAGS.split is not None:
            problem = pascalvoc.split_problem(root, FLAGS.split, '--split')
            if problem:
                raise FileNotFoundError(f'--split={FLAGS.split}: {problem}.')


def _check_coco_inputs():
    """--annotations_file a file (the JSON's own checks come when it is read), --dataset_dir a
    folder."""
    path = FLAGS.annotations_file
    expected = f'expected {folders.COCO_ANNOTATIONS_EXPECTED}'
    if os.path.isdir(path):
        found = folders.coco_annotation_files(path)
        chosen = folders.coco_annotation_file_for(path, FLAGS.dataset_dir)
        if chosen:
            fix = f'pass --annotations_file={chosen}'
        elif found:
            fix = (
                f'pass as --annotations_file the one of {", ".join(found)} that annotates the '
                f'images of --dataset_dir={FLAGS.dataset_dir}'
            )
        else:
            fix = f'pass the JSON file itself ({folders.describe(path)})'
        raise IsADirectoryError(f'--annotations_file: {path} is a folder; {expected}: {fix}.')
    if not os.path.exists(path):
        raise FileNotFoundError(f'--annotations_file: {_missing_with_parent(path)}; {expected}.')
    if not os.path.isdir(FLAGS.dataset_dir):
        raise FileNotFoundError(
            f'--dataset_dir: {_missing_with_parent(FLAGS.dataset_dir)}; expected the image folder '
            f'the file_name entries of --annotations_file are relative to (e.g. val2017).'
        )


# The images looked for: enough to tell a wrong folder from a few missing files, few enough to
# cost nothing on a network file system.
_IMAGES_PROBED = 20


def _check_coco_images_found(sources):
    """Refuses a --dataset_dir holding none of the first images of the JSON (`sources`, the
    CocoSources): the error on the first missing image advised --skip_bad_examples, which would
    skip every image of a wrong folder."""
    listed = [s for s in sources if s.problem is None]
    probed = listed[:_IMAGES_PROBED]
    if not probed or any(os.path.lexists(s.image_path) for s in probed):
        return
    guess = folders.coco_image_folder(FLAGS.annotations_file)
    fix = (
        f'pass --dataset_dir={guess}'
        if guess and os.path.realpath(guess) != os.path.realpath(FLAGS.dataset_dir)
        else 'pass the folder of its images'
    )
    first = 'first ' if len(listed) > len(probed) else ''
    holds = (
        f'does not hold the {first}image'
        if len(probed) == 1
        else f'holds none of the {first}{len(probed)} images'
    )
    names = texts.listed([s.record_file_name for s in probed], 3)
    raise FileNotFoundError(
        f'--dataset_dir: {FLAGS.dataset_dir} {holds} '
        f'{FLAGS.annotations_file} lists ({names}); '
        'expected the image folder the file_name entries of --annotations_file are relative to '
        f'(e.g. val2017): {fix}.'
    )


def _interrupted():
    if FLAGS.verify:
        return 'nothing was changed'
    marker = convert.incomplete_marker_path(FLAGS.output_dir, FLAGS.output_name)
    if os.path.lexists(marker):
        return (
            f'the shards were being replaced: {marker} marks {FLAGS.output_name} incomplete '
            f'(readers refuse it); run the same command to convert again'
        )
    return (
        f'nothing of {FLAGS.output_name} was replaced in {FLAGS.output_dir}; run the same '
        f'command to convert again'
    )


if __name__ == '__main__':
    logs.run(main, _interrupted)
