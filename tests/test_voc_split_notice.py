"""tf_convert_data.py without --split on a VOC folder that has split lists: it converts every
annotation, test.txt's ids too (the older TF port's README command did so silently, so that a
--split=test evaluation scored images the model had trained on), and now says so in one line."""

import os

from datasets import dataset_factory
from tests import data_fixtures as fx
from tests.conftest import run_script


def _voc(root, ids, splits):
    for i in ids:
        fx.add_voc_example(root, i, fx.smooth_image(16, 20), [fx.voc_object('dog', (1, 1, 9, 9))])
    for split, listed in splits.items():
        fx.write_split(root, split, listed)


def _convert(tmp_path, dirs, output_name, *args):
    """(notes, num_examples): the `tf_convert_data: note:` lines of a conversion of `dirs` into
    <tmp_path>/out, and how many examples it wrote."""
    out = str(tmp_path / 'out')
    proc = run_script(
        'tf_convert_data.py',
        '--dataset_name=pascalvoc',
        f'--dataset_dir={",".join(dirs)}',
        f'--output_dir={out}',
        f'--output_name={output_name}',
        '--num_workers=1',
        *args,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stderr.splitlines() if line.startswith('tf_convert_data: note')]
    return notes, dataset_factory.get_dataset('custom', output_name, out).num_samples


def test_no_split_on_a_folder_with_lists_says_every_annotation_is_converted(tmp_path):
    voc = str(tmp_path / 'VOCdevkit' / 'VOC2007')
    _voc(
        voc,
        ['000001', '000002', '000003', '000005', '000007'],
        {
            'train': ['000001', '000002'],
            'val': ['000003'],
            'trainval': ['000001', '000002', '000003'],
            'test': ['000005', '000007'],
            'dog_train': ['000001  1', '000002 -1'],  # per-class lists are not split lists
        },
    )
    # The older port's command: an output named for the train split, no --split.
    notes, converted = _convert(tmp_path, [voc + '/'], 'voc_2007_train')
    assert notes == [
        'tf_convert_data: note: --split is not set, so every annotation of Annotations/ is '
        'converted (5 examples), including the 2 ids of test.txt, though '
        '--output_name=voc_2007_train names the train split; '
        f'{voc}/ImageSets/Main/ lists train.txt (2 ids), val.txt (1 id), trainval.txt (3 ids), '
        'test.txt (2 ids): pass --split=train (or val, trainval, test) to convert only the ids '
        'of that list.'
    ]
    assert converted == 5  # said, not refused: converting everything is legitimate
    # A name that names no split: --split=trainval offered first.
    notes, _ = _convert(tmp_path, [voc], 'everything')
    assert notes == [
        'tf_convert_data: note: --split is not set, so every annotation of Annotations/ is '
        'converted (5 examples), including the 2 ids of test.txt; '
        f'{voc}/ImageSets/Main/ lists train.txt (2 ids), val.txt (1 id), trainval.txt (3 ids), '
        'test.txt (2 ids): pass --split=trainval (or train, val, test) to convert only the ids '
        'of that list.'
    ]
    # With --split, the list's ids only, and no note.
    notes, converted = _convert(tmp_path, [voc], 'voc_2007_trainval', '--split=trainval')
    assert (notes, converted) == ([], 3)


def test_no_split_over_several_folders_names_each_folders_lists(tmp_path):
    d07, d12 = str(tmp_path / 'VOC2007'), str(tmp_path / 'VOC2012')
    _voc(
        d07,
        ['000001', '000002', '000003', '000005', '000007'],
        {
            'train': ['000001', '000002'],
            'val': ['000003'],
            'trainval': ['000001', '000002', '000003'],
            'test': ['000005', '000007', '000009'],  # 000009 has no annotation: not converted
        },
    )
    _voc(
        d12,
        ['2012_000001', '2012_000002', '2012_000003'],
        {
            'train': ['2012_000001'],
            'val': ['2012_000002'],
            'trainval': ['2012_000001', '2012_000002'],
        },
    )
    notes, converted = _convert(tmp_path, [d07, d12], 'voc_0712')
    assert notes == [
        'tf_convert_data: note: --split is not set, so every annotation of Annotations/ is '
        f'converted (8 examples), including 2 of the 3 ids of {d07}/ImageSets/Main/test.txt; '
        f'{d07}/ImageSets/Main/ lists train.txt (2 ids), val.txt (1 id), trainval.txt (3 ids), '
        f'test.txt (3 ids); {d12}/ImageSets/Main/ lists train.txt (1 id), val.txt (1 id), '
        'trainval.txt (2 ids): pass --split=trainval (or train, val) to convert only the ids of '
        'that list in each folder.'
    ]
    assert converted == 8
    # A folder without lists beside one with lists: no --split fits both.
    mine = str(tmp_path / 'mine')
    _voc(mine, ['a', 'b'], {})
    notes, _ = _convert(tmp_path, [d12, mine], 'voc_test')
    assert notes == [
        'tf_convert_data: note: --split is not set, so every annotation of Annotations/ is '
        'converted (5 examples), though --output_name=voc_test names the test split; '
        f'{d12}/ImageSets/Main/ lists train.txt (1 id), val.txt (1 id), trainval.txt (2 ids). '
        '--split=<split> reads ImageSets/Main/<split>.txt of every --dataset_dir folder, and no '
        'list is in all of them.'
    ]


def test_no_split_on_custom_data_without_lists_says_nothing(tmp_path):
    mine = str(tmp_path / 'mine')
    _voc(mine, ['a', 'b', 'c'], {'dog_train': ['a 1']})  # only a per-class list
    assert os.path.isdir(os.path.join(mine, 'ImageSets', 'Main'))
    assert _convert(tmp_path, [mine], 'train') == ([], 3)
