"""An evaluation into a folder holding an earlier evaluation's outputs leaves none of those it
does not write itself: an earlier VOC evaluation's devkit files and PR curves beside a new
COCO-only results.json (score_detections.py would score them), or an earlier COCO evaluation's
JSON beside a VOC one, for checkpoints and exported models alike. A user's files and TensorBoard
event files stay.
"""

import dataclasses
import json
import os

import pytest

from evaluation import evaluate
from evaluation import exported as eval_exported
from evaluation import outputs as eval_outputs
from inference import detection
from inference import export
from tests import eval_fixtures

MODEL = 'ssd_300_mobilenet'
DEPTH = 0.25
STEP = 7


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('stale')
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(
        str(root), num_images=12, seed=2
    )
    prefix = eval_fixtures.write_random_checkpoint(
        str(root / 'train' / 'model.ckpt'),
        MODEL,
        len(class_names) + 1,
        STEP,
        depth_multiplier=DEPTH,
    )
    card = eval_fixtures.small_card(MODEL, class_names, DEPTH)
    settings = evaluate.EvalSettings(
        card=card,
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=records_dir,
        batch_size=4,
        num_threads=1,
        metrics=('voc07',),
        pr_curves=True,
    )
    return dict(root=root, prefix=prefix, settings=settings, class_names=class_names, card=card)


def _files(folder):
    """Relative paths of every file under `folder`, TensorBoard event files as 'EVENTS'."""
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), folder)
            found.append('EVENTS' if name.startswith('events.out.tfevents.') else rel)
    return sorted(found)


def _voc_outputs(setup, eval_dir):
    """The VOC outputs of the evaluation in `eval_dir`: a devkit file per class, a PR curve per
    class with ground truth (checked to be some of them), the results."""
    stems = sorted(name.replace(' ', '_') for name in setup['class_names'])
    curves = sorted(n for n in os.listdir(eval_dir / 'pr_curves') if n.startswith('pr_'))
    assert curves and set(curves) <= {f'pr_{stem}.png' for stem in stems}
    names = [f'comp4_det_test_{stem}.txt' for stem in stems] + ['results.json', 'results.txt']
    return sorted(names + [f'pr_curves/{name}' for name in curves])


COCO_OUTPUTS = ['coco_detections.json', 'coco_ground_truth.json', 'results.json', 'results.txt']


def _evaluate(setup, eval_dir, metrics, logged):
    settings = dataclasses.replace(setup['settings'], metrics=metrics)
    return evaluate.evaluate_checkpoint(
        settings, setup['prefix'], str(eval_dir), summary_dir=str(eval_dir), log=logged.append
    )


def _removed_lines(logged):
    return [line for line in logged if line.startswith('[eval] removed')]


def test_coco_evaluation_after_a_voc_one_removes_its_devkit_files_and_curves(setup, tmp_path):
    eval_dir = tmp_path / 'eval'
    eval_dir.mkdir()
    (eval_dir / 'notes.txt').write_text('mine')
    (eval_dir / 'comp4_det_notes.md').write_text('mine')  # not a devkit results file
    logged = []
    _evaluate(setup, eval_dir, ('voc07',), logged)
    voc = _voc_outputs(setup, eval_dir)
    assert _files(eval_dir) == sorted(voc + ['EVENTS', 'notes.txt', 'comp4_det_notes.md'])
    assert _removed_lines(logged) == []

    logged = []
    result = _evaluate(setup, eval_dir, ('coco',), logged)
    assert result.global_step == STEP
    # Both evaluations' event files stay (history); the user's files stay.
    assert _files(eval_dir) == sorted(
        COCO_OUTPUTS + ['EVENTS', 'EVENTS', 'notes.txt', 'comp4_det_notes.md']
    )
    gone = [name for name in voc if name not in COCO_OUTPUTS] + ['pr_curves/']
    assert _removed_lines(logged) == [
        f'[eval] removed {len(gone)} output(s) of an earlier evaluation in {eval_dir} that this '
        f'one does not write: {", ".join(gone)}'
    ]
    with open(eval_dir / 'results.json') as fh:
        assert set(json.load(fh)['metrics']) == {'coco'}


def test_voc_evaluation_after_a_coco_one_removes_its_json(setup, tmp_path):
    eval_dir = tmp_path / 'eval'
    logged = []
    _evaluate(setup, eval_dir, ('coco',), logged)
    assert _files(eval_dir) == sorted(COCO_OUTPUTS + ['EVENTS'])
    # A user's file in pr_curves/: the folder stays with it.
    (eval_dir / 'pr_curves').mkdir()
    (eval_dir / 'pr_curves' / 'mine.png').write_bytes(b'mine')
    logged = []
    _evaluate(setup, eval_dir, ('voc07',), logged)
    assert _files(eval_dir) == sorted(
        _voc_outputs(setup, eval_dir) + ['EVENTS', 'EVENTS', 'pr_curves/mine.png']
    )
    assert _removed_lines(logged) == [
        f'[eval] removed 2 output(s) of an earlier evaluation in {eval_dir} that this one does '
        f'not write: coco_detections.json, coco_ground_truth.json'
    ]


def test_exported_model_evaluation_removes_earlier_outputs(setup, tmp_path):
    out = tmp_path / 'export'
    export.export(setup['card'], setup['prefix'], str(out), ['frozen_graph'], log=lambda _: None)
    graph = str(out / 'frozen_graph.pb')
    eval_dir = tmp_path / 'eval'
    _evaluate(setup, eval_dir, ('voc07', 'coco'), [])
    voc = _voc_outputs(setup, eval_dir)
    assert _files(eval_dir) == sorted(set(voc + COCO_OUTPUTS) | {'EVENTS'})
    logged = []
    settings = dataclasses.replace(setup['settings'], metrics=('coco',), pr_curves=False)
    with detection.open_exported_model(graph) as detector:
        result = eval_exported.evaluate_exported(
            settings, detector, graph, str(eval_dir), summary_dir=str(eval_dir), log=logged.append
        )
    assert result.global_step == STEP
    assert _files(eval_dir) == sorted(COCO_OUTPUTS + ['EVENTS', 'EVENTS'])
    gone = [name for name in voc if name not in COCO_OUTPUTS] + ['pr_curves/']
    assert _removed_lines(logged) == [
        f'[eval] removed {len(gone)} output(s) of an earlier evaluation in {eval_dir} that this '
        f'one does not write: {", ".join(gone)}'
    ]


def test_only_an_evaluations_outputs_are_removed(tmp_path):
    target, staging = tmp_path / 'eval', tmp_path / 'eval' / '.staging'
    staging.mkdir(parents=True)
    (staging / 'results.json').write_text('{}')
    ours = ['results.txt', 'coco_detections.json', 'comp4_det_val_cat.txt', 'pr_curves/pr_cat.png']
    theirs = [
        'results.json',  # written again: replaced by publishing, not removed
        'coco_instances.json',
        'results.csv',
        'comp3_det_test_cat.txt',
        'comp4_det_test_cat.txt.bak',
        'pr_curves/curve.png',
        'events.out.tfevents.1.host',
        'history.csv',
        'checkpoint-7/results.txt',
        'best/results.json',
    ]
    for name in ours + theirs:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text('x')
    (target / 'comp4_det_dir.txt').mkdir()  # a folder of that name is nobody's output
    logged = []
    removed = eval_outputs.remove_earlier_outputs(str(staging), str(target), logged.append)
    assert removed == [str(target / name) for name in sorted(ours)]
    assert all(not (target / name).exists() for name in ours)
    assert all((target / name).read_text() == 'x' for name in theirs)
    assert (target / 'comp4_det_dir.txt').is_dir()
    assert logged == [
        f'[eval] removed 4 output(s) of an earlier evaluation in {target} that this one does not '
        f'write: coco_detections.json, comp4_det_val_cat.txt, pr_curves/pr_cat.png, results.txt'
    ]
