"""A user's own data: LabelImg VOC XML (ids with spaces, split lists of file names, images without
XML, the XML beside the images) and a Roboflow/CVAT COCO export (a category without
annotations); the converter's summary of what it fixed; the readers' messages when the dataset
name is the converter's or the class count differs."""

import json
import os
import re

import numpy as np
import pytest

from datasets import coco
from datasets import dataset_factory
from datasets import folders
from datasets import pascalvoc
from evaluation import evaluate
from evaluation import watcher
from tests import data_fixtures as fx
from tests import eval_fixtures
from tests.conftest import readme_python_block, run_script

DOG = [fx.voc_object('dog', (1, 1, 9, 9))]


def _voc(root, ids, splits=None, ext='.jpg', objects=DOG, alpha=False):
    """A VOC folder at `root` with one dog per image `ids` (RGBA with `alpha`) and the split
    lists `splits`."""
    for image_id in ids:
        image = fx.smooth_image(16, 20)
        if alpha:
            image = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
        fx.add_voc_example(root, image_id, image, objects, ext=ext)
    for split, lines in (splits or {}).items():
        fx.write_split(root, split, lines)


def _convert(*flags):
    """The stderr lines of a tf_convert_data.py run, which must succeed."""
    proc = run_script('tf_convert_data.py', '--num_workers=1', *flags, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr.splitlines()


def _notes(lines):
    return [line for line in lines if line.startswith('tf_convert_data: note:')]


def _logged(lines, text):
    """The messages of the absl log lines (`W0101 ... file.py:12] message`) that hold `text`."""
    return [line.split('] ', 1)[1] for line in lines if '] ' in line and text in line]


def test_split_lines_are_whole_ids_per_class_flags_or_file_names(tmp_path):
    """`read_split_ids` kept the first word of a line: `IMG 000` was read as id `IMG` (no
    Annotations/IMG.xml), and 38 of 40 LabelImg examples were skipped."""
    root = str(tmp_path / 'voc')
    _voc(root, ['IMG 000', 'my pet (7)', 'plain', 'IMG_027', 'IMG_028'])
    fx.write_split(
        root,
        'train',
        ['IMG 000', '  my pet (7) ', 'plain 1', 'IMG_027.jpg', 'IMG_028.XML', 'lost one'],
    )
    notes = []
    sources = pascalvoc.list_examples([root], 'train', note=notes.append)
    assert [s.image_id for s in sources] == [
        'IMG 000',
        'my pet (7)',
        'plain',  # a per-class list's `<id> <flag>` line
        'IMG_027',
        'IMG_028',
        'lost one',  # no annotation: kept whole, so that its error names the line
    ]
    assert sources[-1].annotation_path == os.path.join(root, 'Annotations', 'lost one.xml')
    split = os.path.join(root, 'ImageSets', 'Main', 'train.txt')
    assert notes == [  # one note for the file, not one per line
        f"{split}: 2 lines are file names (e.g. 'IMG_027.jpg'), read as the ids they name "
        "('IMG_027'); ids are file stems, the names without extension."
    ]
    assert pascalvoc.split_lists(root) == [
        ('train', ['IMG 000', 'my pet (7)', 'plain', 'IMG_027', 'IMG_028', 'lost one'])
    ]
    meta = fx.convert_voc(
        [root], str(tmp_path / 'out'), split='train', skip_bad_examples=True, num_workers=1
    )
    skipped = [e['file'] for e in meta['report']['entries'] if e['kind'] == 'skipped_example']
    assert (meta['num_examples'], skipped) == (5, [sources[-1].annotation_path])


def test_split_line_resolution_order():
    """`resolve_split_id`: the whole line first (`scan 1` of LabelImg is its own image, not
    `scan`); a second word is a per-class flag only when it is -1, 0 or 1 (`IMG 000` without an
    annotation is not the image `IMG`)."""
    has = {'scan 1', 'scan', 'IMG', 'plain'}.__contains__
    assert pascalvoc.resolve_split_id('scan 1', has) == ('scan 1', False)
    assert pascalvoc.resolve_split_id('IMG 000', has) == ('IMG 000', False)
    assert pascalvoc.resolve_split_id('plain -1', has) == ('plain', False)


def test_split_lists_annotation_ids_and_unannotated_images(tmp_path):
    """`split_lists`: the plain lists only (not per-class `dog_train.txt`), VOC's splits in the
    devkit's order then the others by name; `annotation_ids` sorted; `unannotated_images`: image
    files only."""
    root = str(tmp_path / 'voc')
    ids = ['k', 'c', 'x', 'a', 'q', 'm', 'b', 'z', 'e', 'h']
    _voc(root, ids)
    for split in ('test', 'extra', 'val', 'dog_train', 'trainval', 'train', 'aaa'):
        fx.write_split(root, split, [split[0]])
    assert pascalvoc.split_lists(root) == [
        ('train', ['t']),
        ('val', ['v']),
        ('trainval', ['t']),
        ('test', ['t']),
        ('aaa', ['a']),
        ('extra', ['e']),
    ]
    assert pascalvoc.annotation_ids(root) == sorted(ids)
    for name in ('new.png', 'notes.txt', 'a.jpg.bak'):
        with open(os.path.join(root, 'JPEGImages', name), 'wb') as f:
            f.write(b'x')
    assert pascalvoc.unannotated_images(root) == ['new.png']


def test_a_labelimg_folder_without_a_split_says_what_it_fixed_and_left_out(tmp_path):
    """The fixed count lumped RGBA PNG re-encodings with box clips ('23 fixed entries' hid 7 clipped
    boxes); images without an XML (LabelImg writes none for an image without boxes) were left
    out silently; test.txt's ids with spaces counted as absent."""
    root = str(tmp_path / 'labelimg')
    _voc(root, ['IMG 000', 'IMG 001'], {'test': ['IMG 000', 'IMG 001.jpg']})
    _voc(root, ['IMG 002', 'IMG 003'], ext='.png', alpha=True)
    _voc(root, ['IMG 004'], objects=[fx.voc_object('dog', (1, 1, 25, 9))])  # 20 wide: clipped
    for name in ('IMG 005.jpg', 'IMG 006.jpg'):
        fx.write_image(os.path.join(root, 'JPEGImages', name), fx.smooth_image(16, 20))
    out = str(tmp_path / 'out')
    lines = _convert(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        f'--output_dir={out}',
        '--output_name=all',
    )
    jpegs = os.path.join(root, 'JPEGImages')
    assert _notes(lines) == [
        'tf_convert_data: note: --split is not set, so every annotation of Annotations/ is '
        'converted (5 examples), including the 2 ids of test.txt; '
        f'{root}/ImageSets/Main/ lists test.txt (2 ids): pass --split=test to convert only the '
        'ids of that list.',
        'tf_convert_data: note: 2 images of JPEGImages/ have no annotation (Annotations/<id>.xml), '
        f'so are not converted: {jpegs}/IMG 005.jpg, {jpegs}/IMG 006.jpg. An image with no '
        'objects needs an annotation XML with no <object> to be converted as a negative example.',
    ]
    assert _logged(lines, 'fixed entries') == [
        '3 fixed entries (2 images re-encoded as JPEG, 1 box clipped); see '
        f'{out}/all_metadata.json.'
    ]
    with open(os.path.join(out, 'all_metadata.json')) as f:
        fixes = [e.get('fix') for e in json.load(f)['report']['entries']]
    assert sorted(fixes) == ['box_clipped', 'reencoded', 'reencoded']


def test_split_of_file_names_is_converted_with_one_note(tmp_path):
    root = str(tmp_path / 'voc')
    _voc(root, ['IMG_027', 'IMG_028'], {'train': ['IMG_027.jpg', 'IMG_028.jpg']})
    out = str(tmp_path / 'out')
    lines = _convert(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        '--split=train',
        f'--output_dir={out}',
        '--output_name=train',
    )
    assert _notes(lines) == [
        f'tf_convert_data: note: {root}/ImageSets/Main/train.txt: 2 lines are file names (e.g. '
        "'IMG_027.jpg'), read as the ids they name ('IMG_027'); ids are file stems, the names "
        'without extension.'
    ]
    assert dataset_factory.get_dataset('custom', 'train', out).num_samples == 2


def _roboflow_export(root):
    """A COCO file as Roboflow exports it: the supercategory `animals` (id 0) beside the classes,
    with no annotation of its own."""
    categories = [
        {'id': 0, 'name': 'animals', 'supercategory': 'none'},
        {'id': 1, 'name': 'cat', 'supercategory': 'animals'},
        {'id': 2, 'name': 'dog', 'supercategory': 'animals'},
    ]
    images = [(f'{i}.jpg', i, fx.smooth_image(20, 30, seed=i), (30, 20)) for i in (1, 2)]
    annotations = [
        fx.coco_annotation(1, 1, 1, [2, 2, 10, 8]),
        fx.coco_annotation(2, 2, 2, [4, 3, 12, 9]),
    ]
    return fx.write_coco(root, images, categories, annotations)


def test_a_coco_category_without_objects_is_named_at_conversion(tmp_path):
    """Roboflow's id-0 supercategory silently became a trained class."""
    ann, images = _roboflow_export(str(tmp_path / 'coco'))
    meta = fx.convert_coco(ann, images, str(tmp_path / 'records'))
    assert [(c['name'], c['num_objects']) for c in meta['classes']] == [
        ('animals', 0),
        ('cat', 1),
        ('dog', 1),
    ]
    expected = (
        f'{ann}: category id 0 (animals) has no objects in these records, yet it stays a class: '
        'the records have no example of it, and a model trained on them still has an output for '
        'it. To leave it out, remove it from the file\'s "categories" and convert '
        'again.'
    )
    assert coco.empty_categories_warning(ann, meta['classes'][:1]) == expected
    out = str(tmp_path / 'out')
    lines = _convert(
        '--dataset_name=coco',
        f'--annotations_file={ann}',
        f'--dataset_dir={images}',
        f'--output_dir={out}',
        '--output_name=train',
    )
    assert _logged(lines, 'no objects in these records') == [expected]


_NOTHING_TEACHES = (
    'a model trained on them has an output for {0} that nothing teaches (an evaluation on them '
    'reports {1} absent). Check the names in the annotations; a class that is not yours can be '
    'removed from the labels file.'
)


@pytest.mark.parametrize(
    'labels, expected',
    [
        (
            'cat\ndog\nfish\n',
            "classes 'cat', 'fish' of --labels_file={path} have no objects in these records: "
            + _NOTHING_TEACHES.format('each', 'them'),
        ),
        # The older port's class table began with 'none' (label 0): a labels file copying it
        # made the background label 1, a class with no objects, and the warning said not why.
        (
            'Background\ndog\n',
            "class 'Background' of --labels_file={path} has no objects in these records: "
            + _NOTHING_TEACHES.format('it', 'it')
            + " Label 0, the background, is implied: a labels file lists only the objects' "
            "classes, its first line label 1; remove 'Background' from it.",
        ),
    ],
)
def test_labels_file_classes_without_objects_are_named_at_conversion(tmp_path, labels, expected):
    """The VOC converter said nothing of a --labels_file class that no annotation has (a typo in
    the XML names, a class of another project): the model got an output nothing teaches."""
    root = str(tmp_path / 'voc')
    _voc(root, ['a', 'b'])
    labels_file = tmp_path / 'labels.txt'
    labels_file.write_text(labels)
    lines = _convert(
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        f'--labels_file={labels_file}',
        f'--output_dir={tmp_path / "out"}',
        '--output_name=train',
    )
    assert _logged(lines, 'no objects in these records') == [expected.format(path=labels_file)]


@pytest.mark.parametrize(
    'name, readers',
    [
        (
            'pascalvoc',
            "pascalvoc_2007, pascalvoc_2012 or pascalvoc_0712 when they are VOC's own splits "
            '(--output_name=voc_2007_<split>, ...)',
        ),
        ('coco', 'coco_2017 when --output_name was coco_2017_<split>'),
    ],
)
def test_the_converters_dataset_name_points_to_the_readers(name, readers):
    """`--dataset_name=pascalvoc` suggested 'pascalvoc_2012 or pascalvoc_2007', not `custom`."""
    with pytest.raises(ValueError) as info:
        dataset_factory.check_dataset_name(name)
    assert str(info.value) == (
        f"--dataset_name: unknown dataset '{name}': {name} is tf_convert_data.py's "
        '--dataset_name (the input layout); read the records it wrote with '
        '--dataset_name=custom --dataset_split_name=<its --output_name>, or with '
        f'{readers}; the datasets are {", ".join(dataset_factory.dataset_names())}.'
    )


@pytest.fixture(scope='module')
def four_classes(tmp_path_factory):
    """Records of the classes cat, dog, bird, fish: (folder, metadata path)."""
    root = str(tmp_path_factory.mktemp('four') / 'voc')
    _voc(root, ['a'], objects=[fx.voc_object('cat', (1, 1, 9, 9))])
    out = str(tmp_path_factory.mktemp('records'))
    fx.convert_voc([root], out, 'val', class_names=('cat', 'dog', 'bird', 'fish'))
    return out, os.path.join(out, 'val_metadata.json')


def test_a_class_count_that_differs_names_the_classes(four_classes):
    """It said only '4 classes + background = 5': the user could not see which class differed.
    Every count says whether it holds the background: 'N classes' without, num_classes=N with."""
    out, meta = four_classes
    advice = (
        'The model (--num_classes or its card) and the records must count the same classes: use '
        "a model of these classes, or convert the data with the model's labels file "
        '(tf_convert_data.py --labels_file).'
    )
    with pytest.raises(ValueError) as info:
        dataset_factory.get_dataset('custom', 'val', out, num_classes=4)
    assert str(info.value) == (
        f"num_classes=4 disagrees with {meta}: the records' 4 classes (cat, dog, bird, fish) and "
        'the background make num_classes=5 (num_classes counts the background too: 4 leaves it '
        f'out). {advice}'
    )
    with pytest.raises(ValueError) as info:
        dataset_factory.get_dataset('custom', 'val', out, num_classes=7)
    assert str(info.value) == (
        f"num_classes=7 disagrees with {meta}: the records' 4 classes (cat, dog, bird, fish) and "
        f'the background make num_classes=5. {advice}'
    )
    with pytest.raises(ValueError) as info:
        dataset_factory.get_dataset(
            'custom', 'val', out, num_classes=4, model_class_names=('cat', 'dog', 'horse')
        )
    assert str(info.value) == (
        f"num_classes=4 disagrees with {meta}: the records' 4 classes (cat, dog, bird, fish) and "
        "the background make num_classes=5; the model's 3 classes (cat, dog, horse) and the "
        'background make num_classes=4; only the records have bird, fish; only the model has '
        f'horse. {advice}'
    )
    many = tuple(f'c{i}' for i in range(12))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "the model's 12 classes (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 and 2 more) and the "
            'background make num_classes=13;'
        ),
    ):
        dataset_factory.get_dataset('custom', 'val', out, num_classes=13, model_class_names=many)


def test_evaluation_names_the_classes_only_the_model_or_the_records_have(four_classes):
    """An evaluation (and the watcher's split count) gives get_dataset the card's class names."""
    out, _ = four_classes
    card = eval_fixtures.small_card('ssd_300_mobilenet', ('cat', 'dog', 'horse'), 0.25)
    settings = evaluate.EvalSettings(
        card=card, dataset_name='custom', dataset_split_name='val', dataset_dir=out
    )
    said = (
        "the model's 3 classes (cat, dog, horse) and the background make num_classes=4; only the "
        'records have bird, fish; only the '
    )
    for check in (
        lambda: evaluate.open_dataset(settings, card),
        lambda: watcher.split_size(settings),
    ):
        with pytest.raises(ValueError, match=re.escape(said + 'model has horse. The model')):
            check()


def test_a_labelimg_folder_says_what_to_move_where(tmp_path):
    """LabelImg's layout (each XML beside its image) got only 'no Annotations/ folder'."""
    root = str(tmp_path / 'shots')
    for name in ('IMG 000', 'IMG 001'):
        fx.write_image(os.path.join(root, f'{name}.jpg'), fx.smooth_image(16, 20))
        fx.write_voc_xml(os.path.join(root, f'{name}.xml'), f'{name}.jpg', (20, 16), DOG)
    with pytest.raises(FileNotFoundError) as info:
        pascalvoc.list_examples([root])
    assert str(info.value) == (
        f'{root}: no Annotations/ folder; expected {folders.VOC_EXPECTED}. It holds 2 .xml files '
        'itself, as LabelImg saves them beside the images: move the .xml files into '
        f'{root}/Annotations/ and the images into {root}/JPEGImages/ (see README.md, "Converting '
        'data").'
    )
    assert folders.VOC_EXPECTED == (
        'a VOC folder (Annotations/ and JPEGImages/, and ImageSets/Main/<split>.txt for --split), '
        'e.g. VOCdevkit/VOC2007'
    )


def test_the_readme_split_snippet_writes_seeded_lists_the_converter_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ids = [f'IMG {i:03d}' for i in range(10)]
    _voc('my_data', ids)
    code = readme_python_block('### Your own data')
    exec(code, {})
    main = os.path.join('my_data', 'ImageSets', 'Main')
    with open(os.path.join(main, 'train.txt')) as f:
        train = f.read()
    exec(code, {})  # seeded: the same lists again
    with open(os.path.join(main, 'train.txt')) as f:
        assert f.read() == train
    val = [s.image_id for s in pascalvoc.list_examples(['my_data'], 'val')]
    train = [s.image_id for s in pascalvoc.list_examples(['my_data'], 'train')]
    assert (len(val), len(train), sorted(val + train)) == (2, 8, ids)
