"""The data side's one-line messages about the folders and files users name: records read from an
unconverted VOC/COCO folder (what the folder truly holds, and the converter command), and the
file/folder flags of tf_convert_data.py (missing, a folder for a file, a file for a folder);
`python -m datasets.synthetic --help`."""

import json
import os

import pytest

from datasets import dataset_factory
from datasets import folders
from datasets import synthetic
from tests import data_fixtures as fx
from tests.conftest import ROOT, run_script

LABELS_EXPECTED = (
    'expected a text file with one class name per line (the first line is class id 1, the next id '
    '2, ...: ids follow the line order), or a TF Object Detection API label map (label_map.pbtxt)'
)
VOC_EXPECTED = (
    'expected a VOC folder (Annotations/ and JPEGImages/, and ImageSets/Main/<split>.txt for '
    '--split), e.g. VOCdevkit/VOC2007'
)


def _error_lines(proc, script):
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.startswith(f'{script}: error:')]


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    """An unconverted synthetic VOC folder (Annotations/, ImageSets/, JPEGImages/, labels.txt)."""
    folder = str(tmp_path_factory.mktemp('wd') / 'voc')
    synthetic.generate(folder, 6, 0)
    return folder


def test_training_on_an_unconverted_voc_folder_says_what_it_holds_and_how_to_convert(voc):
    """It said '(<folder> holds [])' (it listed record files only) and only 'Convert the data
    with tf_convert_data.py --output_name=train'."""
    proc = run_script(
        'train_ssd_network.py',
        '--dataset_name=custom',
        '--dataset_split_name=train',
        f'--dataset_dir={voc}',
        f'--train_dir={voc}_train',
        '--model_name=ssd_300_vgg',
        f'--num_classes={len(synthetic.CLASSES) + 1}',
    )
    out = f'{voc}_tfrecords'
    command = (
        f'tf_convert_data.py --dataset_name=pascalvoc --dataset_dir={voc} --split=train '
        f'--labels_file={voc}/labels.txt --output_dir={out} --output_name=train'
    )
    assert _error_lines(proc, 'train_ssd_network') == [
        f"train_ssd_network: error: dataset 'custom' split 'train': no files match "
        f'{voc}/train_*.tfrecord ({voc} holds Annotations/, ImageSets/, JPEGImages/, labels.txt). '
        f'{voc} is a Pascal VOC folder (Annotations/, JPEGImages/), not converted records: '
        f'convert it with {command}, then pass --dataset_dir={out}.'
    ]
    # The command, run as given, writes the records the training asked for.
    proc = run_script(*command.split(), '--num_workers=1', timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dataset = dataset_factory.get_dataset('custom', 'train', out)
    assert dataset.num_samples == 4 and tuple(dataset.class_names) == synthetic.CLASSES


def _reader_message(name, split, folder):
    with pytest.raises(FileNotFoundError) as info:
        dataset_factory.get_dataset(name, split, str(folder))
    return str(info.value)


def test_a_folder_without_records_is_listed_as_it_is(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert _reader_message('custom', 'train', empty) == (
        f"dataset 'custom' split 'train': no files match {empty}/train_*.tfrecord ({empty} is "
        f'empty). Convert the data with tf_convert_data.py --output_name=train.'
    )
    many = tmp_path / 'many'
    for i in range(10):
        (many / f'sub{i}').mkdir(parents=True)
    (many / 'notes.txt').write_text('x')
    (many / 'odd\nname').write_text('x')
    assert _reader_message('pascalvoc_2007', 'test', many) == (
        f"dataset 'pascalvoc_2007' split 'test': no files match {many}/voc_2007_test_*.tfrecord "
        f"({many} holds notes.txt, 'odd\\nname', sub0/, sub1/, sub2/, sub3/, sub4/, sub5/ and 4 "
        f'more). Convert the data with tf_convert_data.py --output_name=voc_2007_test.'
    )
    missing, a_file = tmp_path / 'missing', tmp_path / 'notes.txt'
    a_file.write_text('x')
    assert f'no files match {missing}/train_*.tfrecord ({missing} does not exist). Convert' in (
        _reader_message('custom', 'train', missing)
    )
    assert f'({a_file} is a file, not a folder). Convert' in (
        _reader_message('custom', 'train', a_file)
    )


def test_a_vocdevkit_folder_gets_the_command_over_its_voc_folders(tmp_path):
    devkit = tmp_path / 'VOCdevkit'
    for year in ('VOC2007', 'VOC2012'):
        root = str(devkit / year)
        fx.add_voc_example(
            root, '0001', fx.smooth_image(20, 20), [fx.voc_object('cat', (1, 1, 9, 9))]
        )
        fx.write_split(root, 'trainval', ['0001'])
    a, b = devkit / 'VOC2007', devkit / 'VOC2012'
    assert _reader_message('pascalvoc_0712', 'trainval', devkit) == (
        f"dataset 'pascalvoc_0712' split 'trainval': no files match "
        f'{devkit}/voc_0712_trainval_*.tfrecord ({devkit} holds VOC2007/, VOC2012/). {devkit} '
        f'holds Pascal VOC folders (VOC2007/, VOC2012/), not converted records: convert it with '
        f'tf_convert_data.py --dataset_name=pascalvoc --dataset_dir={a},{b} --split=trainval '
        f'--output_dir={devkit}_tfrecords --output_name=voc_0712_trainval, then pass '
        f'--dataset_dir={devkit}_tfrecords.'
    )


def test_a_coco_folder_gets_the_coco_command(tmp_path):
    coco = tmp_path / 'coco'
    (coco / 'annotations').mkdir(parents=True)
    (coco / 'val2017').mkdir()
    ann = coco / 'annotations' / 'instances_val2017.json'
    ann.write_text(json.dumps({'images': [], 'annotations': [], 'categories': []}))
    assert _reader_message('coco_2017', 'val', coco) == (
        f"dataset 'coco_2017' split 'val': no files match {coco}/coco_2017_val_*.tfrecord ({coco} "
        f'holds annotations/, val2017/). {coco} holds COCO annotations (instances_val2017.json), '
        f'not converted records: convert it with tf_convert_data.py --dataset_name=coco '
        f'--annotations_file={ann} --dataset_dir={coco / "val2017"} '
        f'--output_dir={coco}_tfrecords --output_name=coco_2017_val, then pass '
        f'--dataset_dir={coco}_tfrecords.'
    )


def test_what_a_folder_is_named_and_what_is_no_dataset(tmp_path):
    link = tmp_path / 'records'
    link.symlink_to(tmp_path / 'gone')
    assert folders.describe(str(link)) == f'{link} is a broken symlink'
    # The link, not the folder above it, stops a folder from being made there.
    assert folders.existing_ancestor(str(link / 'train' / 'a.tfrecord')) == str(link)
    annotations_only = tmp_path / 'xml'
    (annotations_only / 'Annotations').mkdir(parents=True)
    assert not folders.is_voc_folder(str(annotations_only))
    assert folders.conversion_hint(str(annotations_only), 'train', 'train') is None
    (tmp_path / 'coco' / 'instances_old.json').mkdir(parents=True)  # a folder named like one
    assert folders.coco_annotation_files(str(tmp_path / 'coco')) == []


def _voc(root, splits=('trainval',)):
    fx.add_voc_example(root, '0001', fx.smooth_image(20, 20), [fx.voc_object('cat', (1, 1, 9, 9))])
    for split in splits:
        fx.write_split(root, split, ['0001'])


def test_the_split_is_suggested_only_when_every_voc_folder_lists_it(tmp_path):
    devkit = tmp_path / 'VOCdevkit'
    _voc(str(devkit / 'VOC2007'))
    _voc(str(devkit / 'VOC2012'), splits=())
    assert folders.conversion_hint(str(devkit), 'trainval', 'voc_0712_trainval') == (
        f'{devkit} holds Pascal VOC folders (VOC2007/, VOC2012/), not converted records: convert '
        f'it with tf_convert_data.py --dataset_name=pascalvoc '
        f'--dataset_dir={devkit / "VOC2007"},{devkit / "VOC2012"} '
        f'--output_dir={devkit}_tfrecords --output_name=voc_0712_trainval, then pass '
        f'--dataset_dir={devkit}_tfrecords.'
    )


@pytest.mark.parametrize('where, named', [('', '.'), ('Annotations', '..')])
def test_records_of_the_current_or_parent_folder_go_beside_it(tmp_path, monkeypatch, where, named):
    """`--dataset_dir=.` must not suggest a hidden `._tfrecords` inside the folder."""
    voc = tmp_path / 'voc'
    _voc(str(voc))
    monkeypatch.chdir(voc / where)
    assert folders.conversion_hint(named, 'trainval', 'train').endswith(
        f'--output_dir={voc}_tfrecords --output_name=train, then pass --dataset_dir={voc}_tfrecords.'
    )


def test_the_coco_command_takes_the_annotations_of_the_split(tmp_path):
    coco = tmp_path / 'coco'
    for name in ('train2017', 'val2017'):
        (coco / name).mkdir(parents=True)
        (coco / f'instances_{name}.json').write_text('{}')
    for split, name in (('val', 'val2017'), ('train', 'train2017'), ('test', 'train2017')):
        hint = folders.conversion_hint(str(coco), split, f'coco_{split}')
        assert (
            f'--annotations_file={coco}/instances_{name}.json --dataset_dir={coco / name} '
        ) in hint, split


def test_the_coco_image_folder_is_found_where_coco_puts_it(tmp_path):
    ann = tmp_path / 'annotations' / 'instances_val2017.json'
    ann.parent.mkdir()
    ann.write_text('{}')
    assert folders.coco_image_folder(str(ann)) is None
    for where in ('annotations/val2017', 'images/val2017', 'val2017'):  # each preferred to the last
        (tmp_path / where).mkdir(parents=True)
        assert folders.coco_image_folder(str(ann)) == str(tmp_path / where)


@pytest.fixture(scope='module')
def tree(tmp_path_factory, voc):
    """{name: path} of the inputs the converter cases name, in a folder of known contents."""
    wd = tmp_path_factory.mktemp('inputs')
    (wd / 'a_file').write_text('x')
    devkit = wd / 'devkit'
    fx.add_voc_example(
        str(devkit / 'VOC2007'),
        '0001',
        fx.smooth_image(20, 20),
        [fx.voc_object('cat', (1, 1, 9, 9))],
    )
    (wd / 'coco' / 'annotations').mkdir(parents=True)
    (wd / 'coco' / 'annotations' / 'instances_val2017.json').write_text(
        json.dumps({'images': [], 'annotations': [], 'categories': [{'id': 1, 'name': 'cat'}]})
    )
    # Apart from wd, whose listing the messages give: an annotations folder of two splits.
    splits = tmp_path_factory.mktemp('coco_splits')
    (splits / 'annotations').mkdir()
    for split in ('train2017', 'val2017'):
        (splits / split).mkdir()
        fx.write_image(str(splits / split / f'{split}.jpg'), fx.smooth_image(20, 20))
        (splits / 'annotations' / f'instances_{split}.json').write_text(
            json.dumps(
                {
                    'images': [{'id': 1, 'file_name': f'{split}.jpg', 'width': 20, 'height': 20}],
                    'annotations': [],
                    'categories': [{'id': 1, 'name': 'cat'}],
                }
            )
        )
    # A JSON of more images than the converter looks for before refusing a folder of none.
    many = tmp_path_factory.mktemp('coco_many')
    (many / 'instances_val2017.json').write_text(
        json.dumps(
            {
                'images': [
                    {'id': i, 'file_name': f'{i:03d}.jpg', 'width': 20, 'height': 20}
                    for i in range(25)
                ],
                'annotations': [],
                'categories': [{'id': 1, 'name': 'cat'}],
            }
        )
    )
    records = wd / 'records'
    proc = run_script(
        'tf_convert_data.py',
        '--dataset_name=pascalvoc',
        f'--dataset_dir={voc}',
        # Relative (to the scripts' working directory): the metadata keeps it absolute, as the
        # folders (it kept the flag's text).
        f'--labels_file={os.path.relpath(os.path.join(voc, "labels.txt"), ROOT)}',
        f'--output_dir={records}',
        '--output_name=train',
        '--num_workers=1',
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(records / 'train_metadata.json') as f:
        assert json.load(f)['source']['labels_file'] == os.path.join(voc, 'labels.txt')
    return {
        'wd': str(wd),
        'voc': voc,
        'file': str(wd / 'a_file'),
        'devkit': str(devkit),
        'coco': str(wd / 'coco'),
        'json': str(wd / 'coco' / 'annotations' / 'instances_val2017.json'),
        'splits': str(splits),
        'many': str(many),
        'records': str(records),
        'out': str(wd / 'out'),
    }


# (flags, expected message after 'tf_convert_data: error: '), with {name} from `tree`.
CONVERTER_CASES = {
    'labels_file_missing': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc}', '--labels_file={voc}/label.txt'],
        '--labels_file: {voc}/label.txt does not exist; ' + LABELS_EXPECTED + ': pass '
        '--labels_file={voc}/labels.txt.',
    ),
    'labels_file_a_folder': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc}', '--labels_file={voc}'],
        '--labels_file: {voc} is a folder; ' + LABELS_EXPECTED + ': pass '
        '--labels_file={voc}/labels.txt.',
    ),
    'dataset_dir_missing': (
        ['--dataset_name=pascalvoc', '--dataset_dir={wd}/vocc'],
        '--dataset_dir: {wd}/vocc does not exist ({wd} holds a_file, coco/, devkit/, records/); '
        + VOC_EXPECTED
        + '.',
    ),
    'dataset_dir_one_of_a_list_missing': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc},{wd}/VOC2012'],
        '--dataset_dir: {wd}/VOC2012 does not exist ({wd} holds a_file, coco/, devkit/, records/); '
        + VOC_EXPECTED
        + '.',
    ),
    'dataset_dir_a_file': (
        ['--dataset_name=pascalvoc', '--dataset_dir={file}'],
        '--dataset_dir: {file} is a file, not a folder; ' + VOC_EXPECTED + '.',
    ),
    'dataset_dir_a_devkit': (
        ['--dataset_name=pascalvoc', '--dataset_dir={devkit}'],
        '--dataset_dir: {devkit}: no Annotations/ folder; ' + VOC_EXPECTED + '. It holds VOC '
        'folders: pass {devkit}/VOC2007 instead.',
    ),
    'dataset_dir_of_records': (
        ['--dataset_name=pascalvoc', '--dataset_dir={records}'],
        '--dataset_dir: {records}: no Annotations/ folder; ' + VOC_EXPECTED + ' ({records} holds '
        'train_000.tfrecord, train_metadata.json). It holds converted records (.tfrecord): pass it '
        'as --dataset_dir to the training and evaluation scripts.',
    ),
    'dataset_dir_of_coco': (
        ['--dataset_name=pascalvoc', '--dataset_dir={coco}'],
        '--dataset_dir: {coco}: no Annotations/ folder; ' + VOC_EXPECTED + '. It holds COCO '
        'annotations: convert them with --dataset_name=coco --annotations_file={json} and their '
        'image folder as --dataset_dir.',
    ),
    'split_missing': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc}', '--split=Train'],
        "--split=Train: {voc}/ImageSets/Main/Train.txt: split file not found (splits present: "
        "['test', 'train', 'trainval', 'val']); choose one of them, or leave --split out to take "
        'every annotation of Annotations/.',
    ),
    'split_without_imagesets': (
        ['--dataset_name=pascalvoc', '--dataset_dir={devkit}/VOC2007', '--split=train'],
        '--split=train: {devkit}/VOC2007/ImageSets/Main/train.txt: split file not found '
        '({devkit}/VOC2007 has no ImageSets/Main/ folder, so no split files); leave --split '
        'out to take every annotation of Annotations/.',
    ),
    'annotations_file_missing': (
        ['--dataset_name=coco', '--dataset_dir={coco}', '--annotations_file={wd}/instances.json'],
        '--annotations_file: {wd}/instances.json does not exist ({wd} holds a_file, coco/, '
        'devkit/, records/); expected a COCO instances JSON file, e.g. '
        'annotations/instances_val2017.json.',
    ),
    'annotations_file_a_folder': (
        ['--dataset_name=coco', '--dataset_dir={coco}', '--annotations_file={coco}'],
        '--annotations_file: {coco} is a folder; expected a COCO instances JSON file, e.g. '
        'annotations/instances_val2017.json: pass --annotations_file={json}.',
    ),
    # It named the folder's first file, instances_train2017.json: the annotations of other images.
    'annotations_folder_of_the_dataset_dir_split': (
        [
            '--dataset_name=coco',
            '--dataset_dir={splits}/val2017',
            '--annotations_file={splits}/annotations',
        ],
        '--annotations_file: {splits}/annotations is a folder; expected a COCO instances JSON '
        'file, e.g. annotations/instances_val2017.json: pass '
        '--annotations_file={splits}/annotations/instances_val2017.json.',
    ),
    'annotations_folder_of_other_splits': (
        ['--dataset_name=coco', '--dataset_dir={splits}/images', '--annotations_file={splits}'],
        '--annotations_file: {splits} is a folder; expected a COCO instances JSON file, e.g. '
        'annotations/instances_val2017.json: pass as --annotations_file the one of '
        '{splits}/annotations/instances_train2017.json, '
        '{splits}/annotations/instances_val2017.json that annotates the images of '
        '--dataset_dir={splits}/images.',
    ),
    # The first missing image's error advised --skip_bad_examples, which skips every image.
    'coco_dataset_dir_of_other_images': (
        [
            '--dataset_name=coco',
            '--dataset_dir={splits}',
            '--annotations_file={splits}/annotations/instances_val2017.json',
        ],
        '--dataset_dir: {splits} does not hold the image '
        '{splits}/annotations/instances_val2017.json lists (val2017.jpg); expected the image '
        'folder the file_name entries of --annotations_file are relative to (e.g. val2017): pass '
        '--dataset_dir={splits}/val2017.',
    ),
    'coco_dataset_dir_of_none_of_many_images': (
        [
            '--dataset_name=coco',
            '--dataset_dir={many}',
            '--annotations_file={many}/instances_val2017.json',
        ],
        '--dataset_dir: {many} holds none of the first 20 images {many}/instances_val2017.json '
        'lists (000.jpg, 001.jpg, 002.jpg and 17 more); expected the image folder the file_name entries '
        'of --annotations_file are relative to (e.g. val2017): pass the folder of its images.',
    ),
    'coco_dataset_dir_missing': (
        ['--dataset_name=coco', '--dataset_dir={coco}/val2017', '--annotations_file={json}'],
        '--dataset_dir: {coco}/val2017 does not exist ({coco} holds annotations/); expected the '
        'image folder the file_name entries of --annotations_file are relative to (e.g. val2017).',
    ),
    'output_dir_a_file': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc}', '--output_dir={file}'],
        '--output_dir: {file} is a file, not a folder; expected a folder for the records (made '
        'when missing): pass another --output_dir.',
    ),
    'output_dir_under_a_file': (
        ['--dataset_name=pascalvoc', '--dataset_dir={voc}', '--output_dir={file}/records'],
        '--output_dir: {file}/records: {file} is a file, not a folder; expected a folder for the '
        'records (made when missing): pass another --output_dir.',
    ),
    'verify_output_dir_missing': (
        ['--verify', '--output_dir={wd}/recs'],
        '--output_dir: {wd}/recs does not exist; --verify expected the folder of an earlier '
        'conversion: pass the --output_dir and --output_name it wrote.',
    ),
}


@pytest.mark.parametrize('case', sorted(CONVERTER_CASES))
def test_converter_names_the_flag_and_what_it_expected(tree, case):
    """A missing --labels_file was '[Errno 2] No such file or directory: ...' (no flag, nothing
    expected); a missing --dataset_dir 'no Annotations/ folder'; a missing --annotations_file
    '[Errno 2] ...'; a missing COCO image folder 'No examples to convert'; an --output_dir that
    is a file '[Errno 17] File exists'."""
    flags, expected = CONVERTER_CASES[case]
    flags = [f.format(**tree) for f in flags]
    if not any(f.startswith('--output_dir=') for f in flags):
        flags.append(f'--output_dir={tree["out"]}')
    proc = run_script(
        'tf_convert_data.py', *flags, '--output_name=train', '--num_workers=1', timeout=120
    )
    assert _error_lines(proc, 'tf_convert_data') == [
        f'tf_convert_data: error: {expected.format(**tree)}'
    ]
    assert not os.path.exists(tree['out'])


def test_verify_of_an_output_name_typo_names_the_conversions_there(tree):
    records = tree['records']
    proc = run_script(
        'tf_convert_data.py', '--verify', f'--output_dir={records}', '--output_name=trian'
    )
    assert _error_lines(proc, 'tf_convert_data') == [
        f'tf_convert_data: error: {records}/trian_metadata.json: no metadata, so nothing to verify '
        'the shards against (records of the older port have none; convert them again to get '
        f'one); {records} holds the conversions --output_name=train.'
    ]


def test_synthetic_help_shows_the_defaults_splits_and_labels(capsys):
    with pytest.raises(SystemExit) as exit_:
        synthetic.main(['--help'])
    assert exit_.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    for part in (
        '--output_dir OUTPUT_DIR folder to write the dataset to; must not exist or be empty '
        '(required)',
        '--num_images NUM_IMAGES number of images, all splits together (default: 1000)',
        '--seed SEED random seed; the same (num_images, seed) writes the same files (default: 0)',
        'ImageSets/Main/{train,val,test,trainval}.txt (about 60 % of the images in train, 15 % in '
        'val, 25 % in test; trainval = train + val) and labels.txt (the 6 class names, one per '
        'line)',
    ):
        assert part in text, text
    # The module's example uses the default.
    assert f'--num_images {synthetic.DEFAULT_NUM_IMAGES} --seed 0' in synthetic.__doc__


def test_converter_flag_combinations_are_one_error_line(tmp_path):
    """A COCO conversion given VOC flags (or none of its own), a VOC one given --annotations_file:
    absl's app.UsageError printed the 75-line --help, then a bare line."""
    common = [f'--dataset_dir={tmp_path}', f'--output_dir={tmp_path / "out"}', '--output_name=x']
    for flags, message in (
        (
            ['--dataset_name=coco', '--split=val', f'--annotations_file={tmp_path}/a.json'],
            '--split is for VOC; COCO classes and images come from the JSON.',
        ),
        (
            ['--dataset_name=coco'],
            '--dataset_name=coco needs --annotations_file (instances_*.json).',
        ),
        (
            ['--dataset_name=pascalvoc', f'--annotations_file={tmp_path}/a.json'],
            '--annotations_file is for --dataset_name=coco.',
        ),
    ):
        proc = run_script('tf_convert_data.py', *flags, *common, timeout=120)
        assert proc.stderr.strip().splitlines() == [f'tf_convert_data: error: {message}'], (
            proc.stderr[-2000:]
        )
        assert proc.returncode == 1 and proc.stdout == ''
