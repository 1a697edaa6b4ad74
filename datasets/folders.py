"""What a folder the user named holds, for messages: its entries, and whether it is an unconverted
Pascal VOC or COCO dataset (and the tf_convert_data.py command that converts it).

No TensorFlow: tf_convert_data.py and the record readers both use it.
"""

import glob
import os

from tf_extended import texts

# Entries a message names before "and N more".
SHOWN_ENTRIES = 8
# Folders looked at for VOC folders inside the one named (VOCdevkit/VOC2007, ...).
_MAX_SUBFOLDERS = 50

VOC_EXPECTED = (
    'a VOC folder (Annotations/ and JPEGImages/, and ImageSets/Main/<split>.txt for --split), '
    'e.g. VOCdevkit/VOC2007'
)
COCO_ANNOTATIONS_EXPECTED = 'a COCO instances JSON file, e.g. annotations/instances_val2017.json'


def _shown(name):
    """A file name as a message shows it: as is, or quoted when it holds characters that would
    break the one-line message (a newline, a control character)."""
    return name if name.isprintable() else repr(name)


def entries(folder, limit=SHOWN_ENTRIES):
    """'Annotations/, ImageSets/, labels.txt' (folders with a trailing /, sorted), capped at `limit`
    names and 'and N more'; None when `folder` cannot be listed."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    shown = [
        _shown(n) + ('/' if os.path.isdir(os.path.join(folder, n)) else '') for n in names[:limit]
    ]
    return texts.listed(shown + names[limit:], limit)


def existing_ancestor(path):
    """`path` made absolute, or its nearest folder above that exists: where a file on the way
    stops a folder from being made."""
    path = os.path.abspath(path)
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def describe(folder, limit=SHOWN_ENTRIES):
    """'<folder> holds a, b/, c', '<folder> is empty', '<folder> does not exist', '<folder> is a
    file, not a folder' or '<folder> cannot be listed (reason)': what the folder is, truthfully."""
    if not os.path.lexists(folder):
        return f'{folder} does not exist'
    if not os.path.isdir(folder):
        if os.path.islink(folder) and not os.path.exists(folder):
            return f'{folder} is a broken symlink'
        return f'{folder} is a file, not a folder'
    try:
        has_any = bool(os.listdir(folder))
    except OSError as e:
        return f'{folder} cannot be listed ({e.strerror or e})'
    if not has_any:
        return f'{folder} is empty'
    return f'{folder} holds {entries(folder, limit)}'


def is_voc_folder(folder):
    """True when `folder` has the Annotations/ and JPEGImages/ folders of the Pascal VOC layout."""
    return os.path.isdir(os.path.join(folder, 'Annotations')) and os.path.isdir(
        os.path.join(folder, 'JPEGImages')
    )


def voc_subfolders(folder):
    """The VOC folders directly inside `folder` (e.g. VOCdevkit/VOC2007), sorted."""
    try:
        names = sorted(os.listdir(folder))[:_MAX_SUBFOLDERS]
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if is_voc_folder(os.path.join(folder, n))]


def labelimg_hint(folder):
    """When `folder` holds annotation XML files itself (LabelImg saves each one beside its image):
    a sentence saying it looks like LabelImg's layout and what to move where; else None."""
    found = glob.glob(os.path.join(glob.escape(folder), '*.xml'))
    if not found:
        return None
    files = f'{len(found)} .xml files' if len(found) > 1 else 'an .xml file'
    return (
        f'It holds {files} itself, as LabelImg saves them beside the images: move the .xml files '
        f'into {os.path.join(folder, "Annotations", "")} and the images into '
        f'{os.path.join(folder, "JPEGImages", "")} (see README.md, "Converting data")'
    )


def coco_annotation_files(folder):
    """The COCO instances JSON files in `folder` or in its annotations/ folder, sorted."""
    found = []
    for where in (folder, os.path.join(folder, 'annotations')):
        found += sorted(glob.glob(os.path.join(glob.escape(where), 'instances_*.json')))
    return [f for f in found if os.path.isfile(f)]


def coco_annotation_file_for(folder, image_dir):
    """The instances JSON of `folder` (`coco_annotation_files`) that annotates the images of
    `image_dir`: the one named after it (instances_val2017.json for val2017/), else the folder's
    only one, else None (several, none named so: the caller lists them rather than guess)."""
    found = coco_annotation_files(folder)
    name = f'instances_{os.path.basename(os.path.normpath(image_dir))}.json'
    named = [f for f in found if os.path.basename(f) == name]
    return next(iter(named or (found if len(found) == 1 else [])), None)


def coco_image_folder(annotations_file):
    """The image folder of `annotations/instances_<name>.json` when it sits where COCO puts it
    (<root>/<name>, <root>/images/<name>, or beside the JSON), else None."""
    name = os.path.basename(annotations_file)[len('instances_') : -len('.json')]
    here = os.path.dirname(annotations_file)
    root = os.path.dirname(here) if os.path.basename(here) == 'annotations' else here
    for candidate in (
        os.path.join(root, name),
        os.path.join(root, 'images', name),
        os.path.join(here, name),
    ):
        if os.path.isdir(candidate):
            return candidate
    return None


def _output_folder(folder):
    """A new folder beside `folder` for its records: `<folder>_tfrecords`."""
    base = os.path.normpath(folder)
    if os.path.basename(base) in ('', '.', '..'):
        base = os.path.abspath(folder)
    return f'{base}_tfrecords' if os.path.basename(base) else os.path.join(base, 'tfrecords')


def conversion_hint(folder, split, output_name):
    """When `folder` holds an unconverted dataset: a message sentence saying so, with the
    tf_convert_data.py command that converts it into records named `output_name` (from the VOC
    split `split` when the folder lists one) and the --dataset_dir to pass then; else None."""
    voc = [folder] if is_voc_folder(folder) else voc_subfolders(folder)
    out = _output_folder(folder)
    if voc:
        if voc == [folder]:
            what = f'{folder} is a Pascal VOC folder (Annotations/, JPEGImages/), not converted records'
        else:
            names = ', '.join(os.path.basename(v) + '/' for v in voc)
            what = f'{folder} holds Pascal VOC folders ({names}), not converted records'
        command = [
            'tf_convert_data.py --dataset_name=pascalvoc',
            f'--dataset_dir={",".join(voc)}',
        ]
        if all(os.path.isfile(os.path.join(v, 'ImageSets', 'Main', f'{split}.txt')) for v in voc):
            command.append(f'--split={split}')
        labels_file = next(
            (
                f
                for f in (os.path.join(voc[0], 'labels.txt'), os.path.join(folder, 'labels.txt'))
                if os.path.isfile(f)
            ),
            None,
        )
        if labels_file:
            command.append(f'--labels_file={labels_file}')
    else:
        jsons = coco_annotation_files(folder)
        if not jsons:
            return None
        chosen = next((j for j in jsons if split and split in os.path.basename(j)), jsons[0])
        images = coco_image_folder(chosen) or '<its image folder>'
        names = ', '.join(map(os.path.basename, jsons))
        what = f'{folder} holds COCO annotations ({names}), not converted records'
        command = [
            'tf_convert_data.py --dataset_name=coco',
            f'--annotations_file={chosen}',
            f'--dataset_dir={images}',
        ]
    command += [f'--output_dir={out}', f'--output_name={output_name}']
    return f'{what}: convert it with {" ".join(command)}, then pass --dataset_dir={out}.'
