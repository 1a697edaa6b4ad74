"""score_detections' VOC path against a hand-computed case (devkit rules, unclipped XML pixels)."""

import os

import numpy as np
import pytest

from datasets import pascalvoc
from evaluation import scoring
from tests import data_fixtures as fx
from tests.conftest import run_script


def _xml(objects):
    parts = ['<annotation><size><width>100</width><height>80</height><depth>3</depth></size>']
    for name, box, difficult in objects:
        flag = '' if difficult is None else f'<difficult>{difficult}</difficult>'
        parts.append(
            f'<object><name>{name}</name>{flag}<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>'
            f'<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox>'
            f'<part><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>'
            f'<ymax>5</ymax></bndbox></part></object>'
        )
    return ''.join(parts) + '</annotation>'


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / 'voc'
    (root / 'Annotations').mkdir(parents=True)
    (root / 'ImageSets' / 'Main').mkdir(parents=True)
    (root / 'Annotations' / 'a.xml').write_text(
        _xml(
            [
                ('cat', (11, 11, 50, 50), '0'),
                ('cat', (61, 11, 90, 40), '1'),
                ('dog', (1, 1, 20, 20), None),
            ]
        )
    )
    (root / 'Annotations' / 'b.xml').write_text(_xml([('cat', (21, 21, 60, 60), '0')]))
    (root / 'ImageSets' / 'Main' / 'test.txt').write_text('a\nb\n')
    results = tmp_path / 'results'
    results.mkdir()
    # cat: TP (0.9, exact box on a), FP (0.8, duplicate on a), ignored (0.75, on a's difficult one),
    # TP (0.7, on b with IoU 39*39 / (40*40) >= 0.5). dog: no detections.
    (results / 'comp4_det_test_cat.txt').write_text(
        'a 0.9 11 11 50 50\na 0.8 12 12 50 50\na 0.75 61 11 90 40\nb 0.7 21 21 59 59\n'
    )
    (results / 'comp4_det_test_dog.txt').write_text('')
    return str(root), str(results)


def test_voc_scoring_hand_computed(voc):
    root, results = voc
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    cat, dog = result.classes
    assert (cat.num_gt, cat.num_difficult, cat.num_tp, cat.num_fp, cat.num_ignored) == (
        3,
        1,
        2,
        1,
        1,
    )
    # Counted curve: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    assert cat.ap_voc12 == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert cat.ap_voc07 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert (dog.num_gt, dog.ap_voc07) == (1, 0.0)
    assert result.map_voc12 == pytest.approx((0.5 + 1 / 3) / 2)
    assert result.map_voc07 == pytest.approx((6 * 1 + 5 * 2 / 3) / 11 / 2)
    assert result.num_images == 2
    np.testing.assert_allclose(cat.precision, [1, 0.5, 2 / 3])


def test_voc_scoring_leaves_absent_classes_out_of_the_map(voc):
    """A class without ground truth in the split (bird, detected once) is absent: AP None, and
    the mAPs are those of cat and dog alone."""
    root, results = voc
    with open(os.path.join(results, 'comp4_det_test_bird.txt'), 'w') as fh:
        fh.write('a 0.9 11 11 50 50\n')
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'bird', 'dog'))
    cat, bird, dog = result.classes
    assert bird.absent and (bird.ap_voc07, bird.ap_voc12, bird.num_fp) == (None, None, 1)
    assert result.map_voc07 == pytest.approx((cat.ap_voc07 + dog.ap_voc07) / 2)
    assert result.map_voc12 == pytest.approx((0.5 + 1 / 3) / 2)


def test_voc_scoring_ties_within_an_image_keep_the_file_order(voc):
    """Equal scores within an image are matched in file order, as the devkit's stable sort does,
    also when the file interleaves images: the first line on each object is its TP (IoU 0.95),
    the exact boxes after it are duplicates. Counted: TP TP then 10 FP -> AP 1."""
    root, results = voc
    lines = []
    for i in range(6):
        lines.append(f'a 0.6 {11 + (i == 0)} 11 50 50\n')
        lines.append(f'b 0.6 {21 + (i == 0)} 21 60 60\n')
    with open(os.path.join(results, 'comp4_det_test_cat.txt'), 'w') as fh:
        fh.write(''.join(lines))
    cat = scoring.score_voc_results(results, root, 'test', ('cat', 'dog')).classes[0]
    assert (cat.num_tp, cat.num_fp) == (2, 10)
    np.testing.assert_allclose(cat.precision, [1, 1] + [2 / k for k in range(3, 13)])
    assert (cat.ap_voc07, cat.ap_voc12) == pytest.approx((1, 1))


def test_voc_scoring_batches_give_the_image_by_image_result(voc, monkeypatch):
    root, results = voc
    # A cat FP on a scoring 0.7, after b's TP of 0.7 in the file: the devkit ranks equal scores
    # in file order, so b's TP comes first although a's other lines come before b's. Counted:
    # TP FP TP FP -> precision 1, 1/2, 2/3, 1/2 at recall 1/2, 1/2, 1, 1; 2 positives.
    with open(os.path.join(results, 'comp4_det_test_cat.txt'), 'a') as fh:
        fh.write('a 0.7 21 21 59 59\n')
    one_batch = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    assert one_batch.classes[0].ap_voc12 == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    np.testing.assert_allclose(one_batch.classes[0].precision, [1, 0.5, 2 / 3, 0.5])
    monkeypatch.setattr(scoring, '_BATCH_CELLS', 1)  # one image per add_batch
    per_image = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    for got, want in zip(per_image.classes, one_batch.classes):
        assert (got.num_gt, got.num_tp, got.num_fp, got.num_ignored) == (
            want.num_gt,
            want.num_tp,
            want.num_fp,
            want.num_ignored,
        )
        assert (got.ap_voc07, got.ap_voc12) == (want.ap_voc07, want.ap_voc12)
        np.testing.assert_array_equal(got.precision, want.precision)
    monkeypatch.setattr(scoring, '_BATCH_CELLS', 100)
    # Images x widest detection rows x widest ground-truth rows <= 100, or one image.
    assert scoring._batches(np.array([0, 3, 1, 50, 0]), np.array([2, 0, 0, 1, 9])) == [
        (0, 3),
        (3, 4),
        (4, 5),
    ]
    assert scoring._batches(np.zeros(0, int), np.zeros(0, int)) == []
    # At most _BATCH_CELLS: 4 images of 5 x 5 rows fill 100 cells, a fifth would not fit.
    assert scoring._batches(np.full(6, 5), np.full(6, 5)) == [(0, 4), (4, 6)]
    # Each image's rows from the first column on, in order; padding zeros (image 2 has none).
    slots = np.array([0, 0, 0, 1, 1, 3])
    (padded,), counts = scoring._padded(slots, 0, 4, np.array([10, 11, 12, 20, 21, 40]))
    np.testing.assert_array_equal(padded, [[10, 11, 12], [20, 21, 0], [0, 0, 0], [40, 0, 0]])
    np.testing.assert_array_equal(counts, [3, 2, 0, 1])


def test_voc_scoring_rejects_unknown_images_and_classes(voc, tmp_path):
    root, results = voc
    cat = os.path.join(results, 'comp4_det_test_cat.txt')
    with open(cat, 'a') as fh:
        fh.write('\nzzz 0.5 1 1 2 2\n')
    # Named by its line (blank lines counted), as another split's results file is hinted.
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    assert str(info.value) == f"{cat}:6: image 'zzz' is not in {root} split 'test'."
    with open(cat, 'a') as fh:
        fh.write('yyy 0.4 1 1 2 2\n')
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    assert str(info.value) == (
        f"{cat}:6: image 'zzz' is not in {root} split 'test' (2 of its 6 detections name "
        'images not in it: results of another split?).'
    )
    with pytest.raises(ValueError, match="class 'dog', not among"):
        scoring.score_voc_results(results, root, 'test', ('cat',))


def test_a_wrong_voc_dir_is_named_before_the_results(voc):
    """--voc_dir=<VOC>/Annotations was reported as 'no results file for any of the classes'."""
    root, results = voc
    annotations = os.path.join(root, 'Annotations')
    with pytest.raises(FileNotFoundError) as info:
        scoring.score_voc_results(results, annotations, 'test', ('cat', 'dog'))
    assert str(info.value).startswith(f'{annotations}: no Annotations/ folder; expected a VOC')


def test_missing_class_file_scores_as_no_detections(voc):
    root, results = voc
    expected = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    os.remove(os.path.join(results, 'comp4_det_test_dog.txt'))  # a tool that found no dog
    warnings = []
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), log=warnings.append)
    assert [(c.name, c.num_gt, c.ap_voc07, c.ap_voc12) for c in result.classes] == [
        (c.name, c.num_gt, c.ap_voc07, c.ap_voc12) for c in expected.classes
    ]
    assert result.map_voc07 == expected.map_voc07
    assert len(warnings) == 1 and warnings[0].startswith('1 of 2 classes have no ')
    assert '(dog)' in warnings[0]
    with pytest.raises(FileNotFoundError, match='dog'):  # the devkit's rule, on request
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), strict=True)


def test_ground_truth_read_as_the_converter_reads_it(tmp_path):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(
        root,
        'good',
        fx.smooth_image(40, 60),
        [
            fx.voc_object('cat', (2.5, 3, 50, 30), difficult='1.0', parts=[('paw', (1, 1, 4, 4))]),
            fx.voc_object('dog', (1, 1, 60, 40), difficult=None),
            fx.voc_object('cat', (5, 6, 7, 8), difficult=''),
        ],
    )
    path = os.path.join(root, 'Annotations', 'good.xml')
    boxes, labels, difficult = scoring.read_voc_ground_truth(path, {'cat': 1, 'dog': 2})
    assert boxes.dtype == np.float64 and labels.dtype == np.int64 and difficult.dtype == bool
    np.testing.assert_array_equal(boxes, [[3, 2.5, 30, 50], [1, 1, 40, 60], [6, 5, 8, 7]])
    np.testing.assert_array_equal(labels, [1, 2, 1])
    np.testing.assert_array_equal(difficult, [True, False, False])
    loader = pascalvoc.VocLoader(('cat', 'dog'))
    record, _ = loader(pascalvoc.VocSource(path, os.path.join(root, 'JPEGImages'), 'good'))
    assert [o.difficult for o in record.objects] == [1, 0, 0]


@pytest.mark.parametrize(
    'obj, problem',
    [
        (fx.voc_object('', (1, 1, 5, 5)), 'object 1 has no <name>.'),
        (fx.voc_object('cat', None), 'object 1 (cat) has no <bndbox>.'),
        (
            fx.voc_object('cat', ('nan', 1, 5, 5)),
            "object 1: <bndbox><xmin> is 'nan', expected a finite number.",
        ),
        (fx.voc_object('cat', (1, 1, 5, '')), 'object 1: <bndbox> has no <ymax>.'),
        (
            fx.voc_object('cat', (1, 1, '1e999', 5)),
            "object 1: <bndbox><xmax> is '1e999', expected a finite number.",
        ),
        (
            fx.voc_object('cat', (1, 1, 5, 5), difficult='inf'),
            "object 1: <difficult> is 'inf', expected 0 or 1.",
        ),
        (
            fx.voc_object('cat', (1, 1, 5, 5), difficult='yes'),
            "object 1: <difficult> is 'yes', expected 0 or 1.",
        ),
    ],
)
def test_malformed_objects_same_error_in_scoring_and_converter(tmp_path, obj, problem):
    root = str(tmp_path / 'VOC')
    fx.add_voc_example(
        root, 'bad', fx.smooth_image(40, 60), [fx.voc_object('cat', (1, 1, 9, 9)), obj]
    )
    path = os.path.join(root, 'Annotations', 'bad.xml')
    with pytest.raises(ValueError) as scored:
        scoring.read_voc_ground_truth(path, {'cat': 1})
    with pytest.raises(ValueError) as converted:
        pascalvoc.VocLoader(('cat',))(
            pascalvoc.VocSource(path, os.path.join(root, 'JPEGImages'), 'bad')
        )
    assert str(scored.value) == str(converted.value) == f'{path}: {problem}'


@pytest.mark.parametrize(
    'args, message',
    [
        (
            ['--coco_results=r.json'],
            'COCO scoring needs both --coco_results and --coco_annotations.',
        ),
        (['--results_dir=eval'], 'VOC scoring needs both --results_dir and --voc_dir.'),
        (
            [],
            'give either --results_dir and --voc_dir (VOC) or --coco_results and '
            '--coco_annotations (COCO).',
        ),
    ],
)
def test_usage_errors_are_one_line(args, message):
    """They came after ~40 lines of absl's flag help (app.UsageError prints it)."""
    proc = run_script('score_detections.py', *args)
    assert proc.returncode == 1 and proc.stdout == ''
    assert proc.stderr.splitlines() == [f'score_detections: error: {message}']


def test_a_watchers_eval_dir_points_at_its_checkpoint_folders(voc, tmp_path):
    """An eval watcher's --eval_dir holds one results folder per checkpoint (and best/): given as
    --results_dir it was 'no results file for any of the 2 classes'."""
    root, results = voc
    eval_dir = tmp_path / 'eval'
    for name in ('model.ckpt-10', 'model.ckpt-9', 'best', 'empty'):
        (eval_dir / name).mkdir(parents=True)
    for name in ('model.ckpt-10', 'model.ckpt-9', 'best'):
        os.link(
            os.path.join(results, 'comp4_det_test_cat.txt'),
            eval_dir / name / 'comp4_det_test_cat.txt',
        )
    (eval_dir / 'ledger.jsonl').write_text('')
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(str(eval_dir), root, 'test', ('cat', 'dog'))
    assert str(info.value) == (
        f"{eval_dir}: no results file here, but its folders model.ckpt-9, model.ckpt-10, best hold "
        "some (an eval watcher's --eval_dir has one per checkpoint): pass one of them as "
        f'--results_dir, e.g. --results_dir={eval_dir}/best.'
    )
    # The folder it names scores as the results themselves.
    assert (
        scoring.score_voc_results(str(eval_dir / 'best'), root, 'test', ('cat', 'dog')).map_voc07
        == scoring.score_voc_results(results, root, 'test', ('cat', 'dog')).map_voc07
    )


def test_noremove_difficult_counts_difficult_objects(voc):
    """--noremove_difficult, which the table's footer names, is score_detections' too (it was an
    unknown flag there): a's difficult cat becomes an ordinary object, its detection (0.75) a TP.
    Counted: TP FP TP TP -> precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1."""
    root, results = voc
    result = scoring.score_voc_results(
        results, root, 'test', ('cat', 'dog'), remove_difficult=False
    )
    cat = result.classes[0]
    assert (cat.num_gt, cat.num_difficult, cat.num_tp, cat.num_fp, cat.num_ignored) == (
        3,
        0,
        3,
        1,
        0,
    )
    assert cat.ap_voc12 == pytest.approx(1 / 3 * 1 + 2 / 3 * 3 / 4)
    assert cat.ap_voc07 == pytest.approx((4 * 1 + 7 * 3 / 4) / 11)
    with open(os.path.join(root, 'labels.txt'), 'w') as f:
        f.write('cat\ndog\n')
    proc = run_script(
        'score_detections.py',
        f'--results_dir={results}',
        f'--voc_dir={root}',
        '--noremove_difficult',
    )
    assert proc.returncode == 0, proc.stderr
    row = next(line.split() for line in proc.stdout.splitlines() if line.split()[1:2] == ['cat'])
    assert row[2:] == ['3', '0', '4', '3', '1', '0', f'{100 * cat.ap_voc07:.2f}', '83.33']


def test_a_split_list_naming_an_image_twice_is_refused(voc):
    """Scoring de-duplicated such an image in silence (the devkit stops at a detection of it and
    counts its objects twice where none names it): the list reader refuses it, naming the lines
    (`b.xml` also names `b`). The converter lists the repeat again (a training list may
    oversample an image) and says so."""
    root, results = voc
    split = os.path.join(root, 'ImageSets', 'Main', 'test.txt')
    with open(split, 'a') as f:
        f.write('b.xml\n')
    repeated = f"{split}:3: image id 'b' is listed again (line 2)"
    with pytest.raises(ValueError) as scored:
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    with pytest.raises(ValueError) as listed:
        pascalvoc.list_examples([root], 'test', note=lambda line: None)
    message = f'{repeated}; a split lists each image once: remove the line.'
    assert str(scored.value) == str(listed.value) == message
    notes = []
    listed = pascalvoc.list_examples([root], 'test', note=notes.append, repeats_ok=True)
    assert [s.image_id for s in listed] == ['a', 'b', 'b']
    assert notes[0] == (
        f'{repeated}: converted again, as another record (oversampling it); a VOC evaluation of '
        'these records refuses two records of one image.'
    )


@pytest.mark.parametrize(
    'listed, problem',
    [
        # A missing XML was read as a bare "No such file".
        (
            'ghost',
            "image id 'ghost' has no annotation file {root}/Annotations/ghost.xml: the list "
            'names an image the folder does not hold.',
        ),
        # Refused as the converter refuses it, but without its --allow_outside_paths.
        (
            '../elsewhere/x',
            "image id '../elsewhere/x' climbs out of the dataset folder with \"..\"; ids name "
            'files inside {root}.',
        ),
    ],
)
def test_a_listed_id_that_scoring_cannot_read_is_named_by_its_line(voc, listed, problem):
    """An id of the split list without its XML, or leaving the VOC folder, is named by the
    list's line as the converter names it; scoring names no flag of the converter."""
    root, results = voc
    split = os.path.join(root, 'ImageSets', 'Main', 'test.txt')
    with open(split, 'a') as f:
        f.write(listed + '\n')
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(results, root, 'test', ('cat', 'dog'))
    assert str(info.value) == f'{split}, line 3: ' + problem.format(root=root)


def test_relative_boxes_are_named(voc):
    """Results files in relative coordinates scored 0 in silence; one warning says so (the
    devkit's numbers are kept). Pixel files are not warned about."""
    root, results = voc
    warnings = []
    scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), log=warnings.append)
    assert warnings == []
    path = os.path.join(results, 'comp4_det_test_cat.txt')
    with open(path) as f:
        rows = [line.split() for line in f]
    with open(path, 'w') as f:
        f.write(
            ''.join(
                # The largest coordinate, 90, becomes 1.0: a box at the image's edge.
                f'{r[0]} {r[1]} ' + ' '.join(str(float(v) / 90) for v in r[2:]) + '\n'
                for r in rows
            )
        )
    result = scoring.score_voc_results(results, root, 'test', ('cat', 'dog'), log=warnings.append)
    assert result.classes[0].num_tp == 0
    assert warnings == [
        f'{results}: every box of the 4 detections lies within [0, 1]: relative coordinates? '
        'The results files hold 1-based pixels (xmin = x * width + 1, xmax = x * width for '
        'relative x); they are scored as pixels.'
    ]


def test_results_of_another_split_or_competition_are_named(voc, tmp_path):
    """A folder of another split's (or competition's) files was 'no results file for any of the
    2 classes ... check --split, --competition and the class list': the message names what the
    folder holds, and the flags that read it."""
    root, results = voc
    other = tmp_path / 'other'
    other.mkdir()
    for name in ('comp4_det_val_cat.txt', 'comp3_det_test_dog.txt', 'comp4_det_val_bird.txt'):
        (other / name).write_text('a 0.9 11 11 50 50\n')
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(str(other), root, 'test', ('cat', 'dog'))
    assert str(info.value).endswith(
        '(eval_ssd_network.py writes them to its --eval_dir), and check --split and '
        '--competition: it holds comp3_det_test_<class>.txt (--competition=comp3 --split=test), '
        'comp4_det_val_<class>.txt (--competition=comp4 --split=val).'
    )
    # A class name ending another's: the file is the longer one's (no split 'val_big').
    (other / 'comp4_det_val_big_cat.txt').write_text('')
    with pytest.raises(ValueError) as info:
        scoring.score_voc_results(str(other), root, 'test', ('cat', 'big_cat', 'dog'))
    assert str(info.value).endswith(
        'it holds comp3_det_test_<class>.txt (--competition=comp3 --split=test), '
        'comp4_det_val_<class>.txt (--competition=comp4 --split=val).'
    )


def test_a_missing_labels_file_is_named_as_the_flag(voc):
    """It was `[Errno 2] No such file or directory: 'nope.txt'`; the converter's message names
    the flag, what the file holds and the VOC folder's labels.txt."""
    root, _ = voc
    with open(os.path.join(root, 'labels.txt'), 'w') as f:
        f.write('cat\ndog\n')
    with pytest.raises(ValueError) as info:
        scoring.class_names_from('nope.txt', root)
    assert str(info.value) == (
        '--labels_file: nope.txt does not exist; expected a text file with one class name per '
        'line (the first line is class id 1, the next id 2, ...: ids follow the line order), or a '
        f'TF Object Detection API label map (label_map.pbtxt): pass --labels_file={root}/labels.txt.'
    )
    assert list(scoring.class_names_from(os.path.join(root, 'labels.txt'))) == ['cat', 'dog']
