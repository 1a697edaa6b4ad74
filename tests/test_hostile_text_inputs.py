"""Hostile text and JSON inputs of scoring, conversion and evaluation (VOC XML and split files,
labels files, COCO annotations and results, conversion metadata): FIFOs refused instead of
blocking, sizes bounded, deep nesting and wrong structure a one-line error naming the file."""

import contextlib
import hashlib
import json
import os
import re
import signal

import numpy as np
import pytest

from datasets import coco
from datasets import convert
from datasets import dataset_factory
from datasets import labels
from datasets import pascalvoc
from evaluation import scoring
from tests import data_fixtures as fx
from tests.conftest import run_script
from tf_extended import coco_metrics
from tf_extended import safe_io
from tf_extended import voc_metrics

DEEP = '[' * 200000
GROUND_TRUTH = {
    'images': [{'id': 1, 'width': 100, 'height': 80}],
    'categories': [{'id': 3, 'name': 'cat'}],
    'annotations': [{'id': 1, 'image_id': 1, 'category_id': 3, 'bbox': [10, 10, 40, 30]}],
}
RESULT = {'image_id': 1, 'category_id': 3, 'bbox': [10, 10, 40, 30], 'score': 0.9}


@contextlib.contextmanager
def no_hang(seconds=20):
    """Fails instead of blocking forever when the code under test opens a FIFO."""

    def hung(signum, frame):
        raise AssertionError(f'blocked for {seconds} s: a FIFO was opened or read')

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _fifo(path):
    os.mkfifo(path)
    return str(path)


def _voc(tmp_path):
    """A VOC folder whose split 'test' lists image 'a' (no annotation yet); no results files."""
    root = tmp_path / 'voc'
    (root / 'Annotations').mkdir(parents=True)
    fx.write_split(str(root), 'test', ['a'])
    results = tmp_path / 'results'
    results.mkdir()
    return root, results


def test_voc_scoring_refuses_a_fifo_annotation(tmp_path):
    root, results = _voc(tmp_path)
    fifo = _fifo(root / 'Annotations' / 'a.xml')
    (results / 'comp4_det_test_cat.txt').write_text('a 0.9 1 1 5 5\n')
    with no_hang(), pytest.raises(ValueError) as err:
        scoring.score_voc_results(str(results), str(root), 'test', ('cat',))
    assert str(err.value) == (
        f'{fifo}: the annotation XML is a FIFO (named pipe), not a regular file; refusing to '
        f'read it.'
    )


def test_voc_scoring_needs_some_results_file(tmp_path):
    root, results = _voc(tmp_path)
    (root / 'Annotations' / 'a.xml').write_text('<annotation/>')
    hint = (
        'expected files named comp4_det_test_<class>.txt (e.g. comp4_det_test_cat.txt); pass '
        '--results_dir the folder that holds them (eval_ssd_network.py writes them to its '
        '--eval_dir)'
    )
    missing, a_file = tmp_path / 'nowhere', root / 'ImageSets' / 'Main' / 'test.txt'
    for folder, strict, expected in (
        (missing, False, f'{missing}: the results folder does not exist; {hint}.'),
        (missing, True, f'{missing}: the results folder does not exist; {hint}.'),
        (a_file, False, f'{a_file}: the results folder is not a folder; {hint}.'),
        (
            results,
            False,
            f'{results}: no results file for any of the 2 classes; {hint}, and check --split, '
            f'--competition and the class list.',
        ),
    ):
        with pytest.raises(ValueError) as err:
            scoring.score_voc_results(str(folder), str(root), 'test', ('cat', 'dog'), strict=strict)
        assert str(err.value) == expected
    # Some classes without a file: still scored, with the warning.
    (results / 'comp4_det_test_cat.txt').write_text('a 0.9 1 1 5 5\n')
    warnings = []
    result = scoring.score_voc_results(
        str(results), str(root), 'test', ('cat', 'dog'), log=warnings.append
    )
    assert len(result.classes) == 2 and warnings[0].startswith('1 of 2 classes have no ')


def test_coco_scoring_refuses_two_categories_of_one_name_before_evaluating(tmp_path, monkeypatch):
    """score_detections.py ran the whole evaluation, then failed naming neither the file nor the
    categories."""
    data = json.loads(json.dumps(GROUND_TRUTH))
    data['categories'].append({'id': 7, 'name': 'cat '})  # one name for the converter too
    path = _write(tmp_path / 'instances.json', json.dumps(data))
    results = _write(tmp_path / 'results.json', json.dumps([RESULT]))

    def evaluated(*args, **kwargs):
        raise AssertionError('evaluated before the categories were checked')

    monkeypatch.setattr(scoring.coco_metrics, 'evaluate_coco_per_class', evaluated)
    with pytest.raises(ValueError) as error:
        scoring.score_coco_results(results, path)
    assert str(error.value) == (
        f"{path}: ground-truth categories 3, 7 are all named 'cat'; per-class AP is keyed by "
        'name: give each its own name.'
    )


@pytest.mark.parametrize(
    'content, reason',
    [
        ('[1, 2]', 'not a COCO instances file (it holds an array, not an object); expected an'),
        ('{"images": []}', 'not a COCO instances file (it has no "categories"); expected an'),
        ('{"images": [], "categories": {"id": 1}}', '("categories" is an object, not an array)'),
        ('{"images": [7], "categories": []}', '("images"[0] is a number, not an object)'),
        (DEEP, 'the COCO annotations file nests its JSON too deeply to read.'),
        (
            '{"images": [], "categories": []}',
            'cannot score against these COCO annotations (it has no "annotations" (an '
            'image_info_*.json lists only images)); pass the instances_*.json the results are for.',
        ),
    ],
)
def test_coco_scoring_bad_annotations(tmp_path, content, reason):
    path = _write(tmp_path / 'instances.json', content)
    results = _write(tmp_path / 'results.json', json.dumps([RESULT]))
    with pytest.raises(ValueError, match=re.escape(f'{path}: ') + '.*' + re.escape(reason)):
        scoring.score_coco_results(results, path)


def test_coco_scoring_fifo_and_fields(tmp_path):
    results = _write(tmp_path / 'results.json', json.dumps([RESULT]))
    fifo = _fifo(tmp_path / 'fifo.json')
    with (
        no_hang(),
        pytest.raises(OSError, match=re.escape(f'{fifo}: the COCO annotations file is a FIFO')),
    ):
        scoring.score_coco_results(results, fifo)
    for key, change, reason in (
        ('annotations', {'bbox': [1, 2, 'x', 4]}, 'bbox [1, 2, \'x\', 4], not [x, y, w, h]'),
        ('annotations', {'image_id': [1]}, 'image_id [1], not an integer'),
        ('images', {'id': None}, '"images"[0] has id None, not an integer'),
        ('categories', {'name': 5}, '"categories"[0] has name 5, not a string'),
    ):
        data = json.loads(json.dumps(GROUND_TRUTH))
        data[key][0].update(change)
        path = _write(tmp_path / 'instances.json', json.dumps(data))
        with pytest.raises(
            ValueError, match=re.escape(f'{path}: cannot score') + '.*' + re.escape(reason)
        ):
            scoring.score_coco_results(results, path)
    # No "area", no "iscrowd" (pycocotools failed on them): w*h and 0, as the converter keeps;
    # no annotation "id" at all: numbered 1, 2, ...
    without_id = {k: v for k, v in GROUND_TRUTH['annotations'][0].items() if k != 'id'}
    for annotation in (GROUND_TRUTH['annotations'][0], without_id):
        data = dict(GROUND_TRUTH, annotations=[annotation])
        path = _write(tmp_path / 'instances.json', json.dumps(data))
        result, names = scoring.score_coco_results(results, path)
        assert names == {3: 'cat'} and result.metrics['AP'] == pytest.approx(1.0)


@pytest.mark.parametrize(
    'content, reason',
    [
        (DEEP, 'the COCO results file nests its JSON too deeply to read.'),
        (
            '{"images": [], "videos": []}',
            "COCO results must be a list of objects with keys ('image_id', 'category_id', "
            "'bbox', 'score') (bbox [x, y, width, height] in pixels), got an object with keys "
            "['images', 'videos'].",
        ),
        (
            '7',
            "COCO results must be a list of objects with keys ('image_id', 'category_id', "
            "'bbox', 'score') (bbox [x, y, width, height] in pixels), got int.",
        ),
        (json.dumps([dict(RESULT, bbox=5)]), 'result #0 bbox must be [x, y, width, height] of'),
        (
            json.dumps([dict(RESULT, image_id=[1])]),
            'result #0 image_id must be an integer, got [1].',
        ),
        (
            json.dumps([dict(RESULT, score='high')]),
            "result #0 score must be a finite number, got 'high'.",
        ),
    ],
)
def test_coco_results_file(tmp_path, content, reason):
    path = _write(tmp_path / 'results.json', content)
    with pytest.raises(ValueError, match=re.escape(f'{path}: {reason}')):
        coco_metrics.read_coco_results(path)
    ground_truth = _write(tmp_path / 'instances.json', json.dumps(GROUND_TRUTH))
    with pytest.raises(ValueError, match=re.escape(f'{path}: {reason}')):
        scoring.score_coco_results(path, ground_truth)


def test_coco_results_size_limit(tmp_path, monkeypatch):
    path = _write(tmp_path / 'results.json', json.dumps([RESULT]))
    monkeypatch.setattr(coco_metrics, 'MAX_RESULTS_BYTES', 10)
    with pytest.raises(
        safe_io.UnsafeFileError, match=re.escape(f'{path}: the COCO results file has ')
    ):
        coco_metrics.read_coco_results(path)


def test_score_detections_errors_are_one_line(tmp_path):
    annotations = _write(tmp_path / 'instances.json', '[1, 2]')
    results = _write(tmp_path / 'results.json', '[]')
    proc = run_script(
        'score_detections.py', f'--coco_results={results}', f'--coco_annotations={annotations}'
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f'score_detections: error: {annotations}: not a COCO instances file (it holds an array'
        )
    )
    root, folder = _voc(tmp_path)
    proc = run_script('score_detections.py', f'--results_dir={folder}', f'--voc_dir={root}')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f'score_detections: error: {folder}: no results file for any of the 20 classes; '
        )
    )


def test_metadata_nested_too_deeply(tmp_path):
    path = _write(tmp_path / 'data_metadata.json', DEEP)
    expected = (
        f'{path}: the metadata file nests its JSON too deeply to read. Convert the dataset again.'
    )
    with pytest.raises(ValueError) as err:
        dataset_factory.get_dataset('custom', 'data', str(tmp_path))
    assert str(err.value) == expected
    proc = run_script(
        'eval_ssd_network.py',
        '--dataset_name=custom',
        '--dataset_split_name=data',
        f'--dataset_dir={tmp_path}',
        f'--eval_dir={tmp_path / "eval"}',
        f'--checkpoint_path={tmp_path / "none"}',
        timeout=120,
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f'eval_ssd_network: error: {expected}'


def test_converter_output_metadata_nested_too_deeply(tmp_path):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 24), [fx.voc_object('cat', (2, 3, 10, 12))])
    out = tmp_path / 'out'
    out.mkdir()
    path = _write(out / 'data_metadata.json', DEEP)
    with pytest.raises(convert.OutputConflictError, match=re.escape(f'{path} exists but is not a')):
        fx.convert_voc([root], str(out))
    assert (out / 'data_metadata.json').read_text() == DEEP


@pytest.mark.parametrize(
    'content, reason',
    [
        (DEEP, 'the COCO annotations file nests its JSON too deeply to read.'),
        (
            '[1, 2]',
            'not a COCO instances file (it holds an array, not an object); expected an '
            'object with "images", "annotations" and "categories" arrays of objects: pass an '
            'instances_*.json file.',
        ),
        (
            '{"images": [], "categories": [], "annotations": {}}',
            'not a COCO instances file ("annotations" is an object, not an array)',
        ),
        (
            '{"images": [], "categories": [], "annotations": [5]}',
            'not a COCO instances file ("annotations"[0] is a number, not an object)',
        ),
    ],
)
def test_coco_conversion_annotations(tmp_path, content, reason):
    path = _write(tmp_path / 'instances.json', content)
    with pytest.raises(ValueError, match=re.escape(f'{path}: {reason}')):
        coco.read_annotations(path, str(tmp_path))


def test_coco_conversion_annotations_fifo_and_size(tmp_path, monkeypatch):
    fifo = _fifo(tmp_path / 'fifo.json')
    with (
        no_hang(),
        pytest.raises(OSError, match=re.escape(f'{fifo}: the COCO annotations file is a FIFO')),
    ):
        coco.read_annotations(fifo, str(tmp_path))
    path = _write(tmp_path / 'instances.json', json.dumps(GROUND_TRUTH))
    monkeypatch.setattr(coco, 'MAX_ANNOTATIONS_BYTES', 10)
    for read in (
        lambda: coco.read_annotations(path, str(tmp_path)),
        lambda: scoring.score_coco_results(path, path),
    ):
        with pytest.raises(
            safe_io.UnsafeFileError, match=re.escape(f'{path}: the COCO annotations file has ')
        ):
            read()


def test_labels_file_limits(tmp_path):
    path = tmp_path / 'labels.txt'
    path.write_text('cat\n')
    os.truncate(path, 1 << 30)  # a sparse 1 GiB file: cat and a billion NUL bytes
    with pytest.raises(safe_io.UnsafeFileError) as err:
        labels.read_labels_file(str(path))
    assert str(err.value) == (
        f'{path}: the labels file has {1 << 30} bytes, more than the limit of {1 << 20}.'
    )
    for content, reason in (
        ('cat\nd\0g\n', "line 2: class name 'd\\x00g' holds the control character U+0000"),
        (
            'cat\n\n\x1b[31mdog\n',
            "line 3: class name '\\x1b[31mdog' holds the control character U+001B",
        ),
        (
            'cat\n' + 'x' * 300 + '\n',
            "line 2: class name '"
            + 'x' * 37
            + '...'
            + 'x' * 38
            + "' has 300 characters, more than 256",
        ),
    ):
        path.write_text(content)
        with pytest.raises(ValueError, match=re.escape(f'{path}, {reason}')):
            labels.read_labels_file(str(path))
    path.write_bytes(b'cat\r\n  dog  \r\n\r\nbird')
    assert labels.read_labels_file(str(path)) == ('cat', 'dog', 'bird')


def test_split_file_limit(tmp_path):
    root = tmp_path / 'voc'
    (root / 'Annotations').mkdir(parents=True)
    fx.write_split(str(root), 'test', ['a'])
    path = root / 'ImageSets' / 'Main' / 'test.txt'
    os.truncate(path, pascalvoc.MAX_SPLIT_BYTES + 1)
    with pytest.raises(safe_io.UnsafeFileError) as err:
        pascalvoc.list_examples([str(root)], 'test')
    assert str(err.value) == (
        f'{path}: the split file has {pascalvoc.MAX_SPLIT_BYTES + 1} bytes, more than the limit '
        f'of {pascalvoc.MAX_SPLIT_BYTES}.'
    )
    # CRLF lines; a per-class list's `<id> <flag>` line names `<id>` when that has an annotation.
    path.write_bytes(b'a\r\nb 1\r\nc 1\r\n')
    (root / 'Annotations' / 'b.xml').write_text('<annotation/>')
    assert [s.image_id for s in pascalvoc.list_examples([str(root)], 'test')] == ['a', 'b', 'c 1']


def test_text_files_saved_with_a_byte_order_mark(tmp_path):
    # Windows editors start UTF-8 files with U+FEFF; it used to stay in the first name or id.
    path = tmp_path / 'labels.txt'
    path.write_bytes(('\ufeff' + '\r\n'.join(labels.VOC_CLASSES)).encode('utf-8'))
    assert labels.read_labels_file(str(path)) == labels.VOC_CLASSES
    root, results = _voc(tmp_path)
    split = root / 'ImageSets' / 'Main' / 'test.txt'
    split.write_bytes(b'\xef\xbb\xbf000005\r\n000007\r\n')
    assert [s.image_id for s in pascalvoc.list_examples([str(root)], 'test')] == [
        '000005',
        '000007',
    ]
    (results / 'comp4_det_test_cat.txt').write_bytes(b'\xef\xbb\xbf000005 0.5 1 2 3 4\n')
    detections = voc_metrics.read_voc_results(str(results), 'test', {1: 'cat'})
    assert detections[1].image_ids == ['000005']
    np.testing.assert_array_equal(detections[1].boxes, [[2, 1, 4, 3]])


def test_text_files_not_utf8_name_the_line(tmp_path):
    root, results = _voc(tmp_path)
    for path, data, read, line, reason, expected in (
        (
            tmp_path / 'labels.txt',
            b'\xff\xfec\x00a\x00t\x00',  # UTF-16, Notepad's "Unicode"
            lambda path: labels.read_labels_file(path),
            1,
            'invalid start byte',
            'the labels file should hold one class name per line',
        ),
        (
            root / 'ImageSets' / 'Main' / 'test.txt',
            b'a\rb\r\nb\xe9r\n',
            lambda path: pascalvoc.list_examples([str(root)], 'test'),
            3,
            'invalid continuation byte',
            'the split file should hold one image id per line',
        ),
        (
            results / 'comp4_det_test_cat.txt',
            b'im1 0.5 1 2 3 4\nim2 0.\xff 1 2 3 4\n',
            lambda path: voc_metrics.read_voc_results(str(results), 'test', {1: 'cat'}),
            2,
            'invalid start byte',
            'the results file should hold lines "image_id score xmin ymin xmax ymax"',
        ),
    ):
        path.write_bytes(data)
        with pytest.raises(ValueError) as err:
            read(str(path))
        assert str(err.value) == (
            f'{path}: not UTF-8 text (line {line}: {reason}); {expected}, saved as UTF-8.'
        )


def test_voc_results_size_limit(tmp_path, monkeypatch):
    root, results = _voc(tmp_path)
    path = results / 'comp4_det_test_cat.txt'
    path.write_text('a 0.9 1 1 5 5\n')  # 14 bytes
    monkeypatch.setattr(voc_metrics, 'MAX_RESULTS_BYTES', 13)
    with pytest.raises(safe_io.UnsafeFileError) as err:
        scoring.score_voc_results(str(results), str(root), 'test', ('cat',))
    assert str(err.value) == f'{path}: the results file has 14 bytes, more than the limit of 13.'
    # A file that grows after its size was taken is stopped at the limit too.
    monkeypatch.setattr(voc_metrics, 'MAX_RESULTS_BYTES', 14)
    real_fstat = os.fstat

    def fstat_before_growth(fd):
        st = real_fstat(fd)
        return os.stat_result(st[:6] + (10,) + st[7:10])

    path.write_text('a 0.9 1 1 5 5\na 0.8 1 1 5 5\n')
    with monkeypatch.context() as patch:
        patch.setattr(os, 'fstat', fstat_before_growth)
        with pytest.raises(safe_io.UnsafeFileError) as err:
            voc_metrics.read_voc_results(str(results), 'test', {1: 'cat'})
    assert str(err.value) == (
        f'{path}: the results file grew past the limit of 14 bytes while being read.'
    )


def test_long_ids_and_lines_are_shortened_in_messages(tmp_path):
    """A results line or split id of megabytes was echoed whole in the one-line error (20 MB of
    stderr for a 20 MB line): each is cut to 80 characters of its repr."""
    root, results = _voc(tmp_path)
    fx.write_voc_xml(str(root / 'Annotations' / 'a.xml'), 'a.jpg', (8, 8), [])
    path = results / 'comp4_det_test_cat.txt'
    long = 'x' * 1_000_000
    for line, why in (
        # Cut to 80 characters, `...` in the middle: the start and end of the value.
        (f'a 0.9 1 1 5 5 {long}', f"got 'a 0.9 1 1 5 5 {'x' * 23}...{'x' * 38}' (7 fields)."),
        (f'{long} 0.9 1 1 5 5', f"image '{'x' * 37}...{'x' * 38}' is not in {root} split 'test'."),
    ):
        path.write_text(line + '\n')
        with pytest.raises(ValueError) as err:
            scoring.score_voc_results(str(results), str(root), 'test', ('cat',))
        assert str(err.value).endswith(why) and len(str(err.value)) < 400
    fx.write_split(str(root), 'test', ['a', f'../{long}'])
    with pytest.raises(ValueError) as err:
        scoring.score_voc_results(str(results), str(root), 'test', ('cat',))
    assert f"line 2: image id '../{'x' * 34}...{'x' * 38}' climbs out" in str(err.value)
    assert len(str(err.value)) < 400


def test_score_detections_huge_results_file_is_one_line(tmp_path):
    root, results = _voc(tmp_path)
    path = results / 'comp4_det_test_cat.txt'
    path.write_text('a 0.9 1 1 5 5\n')
    os.truncate(path, voc_metrics.MAX_RESULTS_BYTES + 1)  # sparse: nothing is written
    proc = run_script('score_detections.py', f'--results_dir={results}', f'--voc_dir={root}')
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'score_detections: error: {path}: the results file has '
        f'{voc_metrics.MAX_RESULTS_BYTES + 1} bytes, more than the limit of '
        f'{voc_metrics.MAX_RESULTS_BYTES}.'
    )


@pytest.mark.parametrize(
    'path, problem',
    [
        ('JPEGImages/a.jpg', None),
        ('a/../b.jpg', None),
        ('..a/b.jpg', None),  # a folder whose name starts with two dots stays inside
        ('..', 'climbs out of the dataset folder with ".."'),
        ('a/../..', 'climbs out of the dataset folder with ".."'),
        ('../x.jpg', 'climbs out of the dataset folder with ".."'),
        ('/etc/passwd', 'is an absolute path'),
        ('a\0.jpg', 'contains a NUL byte'),
        ('', 'is empty'),
        (3, 'is 3, not a path string'),
    ],
)
def test_paths_named_in_a_dataset_stay_inside_its_folder(path, problem):
    assert safe_io.check_inside(path) == problem


def test_file_digest_is_the_size_and_sha256_of_the_whole_file(tmp_path):
    data = bytes(range(256)) * 5000  # over one 1 MiB block
    (tmp_path / 'm.bin').write_bytes(data)
    assert safe_io.file_digest(str(tmp_path / 'm.bin')) == {
        'size': len(data),
        'sha256': hashlib.sha256(data).hexdigest(),
    }
