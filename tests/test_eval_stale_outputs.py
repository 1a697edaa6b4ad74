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
from tests.conftest import file_bytes

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
    settings = eval_fixtures.custom_split_settings(card, records_dir, batch_size=4, pr_curves=True)
    # One evaluator per metrics tuple for the module's evaluations (`_evaluate`): the graph does
    # not depend on the metrics, and a reused evaluator evaluates as a fresh one does
    # (test_eval_pipeline.py), without building the graph again for each evaluation.
    evaluators = {}
    yield dict(
        root=root,
        prefix=prefix,
        settings=settings,
        class_names=class_names,
        card=card,
        evaluators=evaluators,
    )
    for evaluator in evaluators.values():
        evaluator.close()


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
    """`evaluate_checkpoint` of the module's checkpoint with `metrics`, by the module's evaluator
    of those metrics."""
    if metrics not in setup['evaluators']:
        settings = dataclasses.replace(setup['settings'], metrics=metrics)
        setup['evaluators'][metrics] = evaluate.CheckpointEvaluator(settings)
    return setup['evaluators'][metrics].evaluate(
        setup['prefix'], str(eval_dir), summary_dir=str(eval_dir), log=logged.append
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
    # An older version's results.json (no list of its files): files of the output names are its.
    earlier = json.dumps({'checkpoint': '/train/model.ckpt-7', 'global_step': 7, 'settings': {}})
    (target / 'results.json').write_text(earlier)
    logged = []
    removed = eval_outputs.remove_earlier_outputs(str(staging), str(target), logged.append)
    assert removed == [str(target / name) for name in sorted(ours)]
    assert all(not (target / name).exists() for name in ours)
    assert all((target / name).read_text() == 'x' for name in theirs)
    assert (target / 'results.json').read_text() == earlier  # replaced by publishing, not removed
    assert logged == [
        f'[eval] removed 4 output(s) of an earlier evaluation in {target} that this one does not '
        f'write: coco_detections.json, comp4_det_val_cat.txt, pr_curves/pr_cat.png, results.txt'
    ]


def _refusal(folder, names):
    return (
        f'{folder} holds {names}: named like the outputs of an evaluation, which would replace '
        'or remove them, but no results.json of an evaluation there lists them. Move them away, '
        'or choose another --eval_dir.'
    )


def test_files_of_output_names_no_evaluation_wrote_are_refused_before_evaluating(setup, tmp_path):
    """Audit finding: an --eval_dir holding devkit, COCO and PR-curve files of other origin
    (no results.json) lost them all to 'removed 4 output(s) of an earlier evaluation'."""
    eval_dir = tmp_path / 'eval'
    planted = [
        'comp4_det_test_aeroplane.txt',
        'comp4_det_val_circle.txt',
        'coco_detections.json',
        'pr_curves/pr_aeroplane.png',
        'notes.txt',
    ]
    for name in planted:
        (eval_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (eval_dir / name).write_text(f'mine: {name}')
    before = file_bytes(eval_dir)
    logged = []
    with pytest.raises(ValueError) as info:
        _evaluate(setup, eval_dir, ('voc07',), logged)
    assert str(info.value) == _refusal(
        eval_dir,
        'coco_detections.json, comp4_det_test_aeroplane.txt, comp4_det_val_circle.txt, '
        'pr_curves/pr_aeroplane.png',
    )
    assert logged == []  # refused before evaluating
    assert file_bytes(eval_dir) == before
    assert sorted(os.listdir(eval_dir)) == sorted({name.split('/')[0] for name in planted})

    # A results.json that is not an evaluation's is no record either (and would be replaced).
    for name in planted:
        (eval_dir / name).unlink()
    (eval_dir / 'results.json').write_text('{"mine": 1}')
    with pytest.raises(ValueError) as info:
        _evaluate(setup, eval_dir, ('voc07',), [])
    assert str(info.value) == _refusal(eval_dir, 'results.json')
    assert file_bytes(eval_dir) == {'results.json': b'{"mine": 1}'}

    # A folder of an output's name stopped the publishing, after the whole evaluation: it is
    # refused before evaluating (nothing in it is touched, whatever results.json says).
    (eval_dir / 'results.json').unlink()
    _evaluate(setup, eval_dir, ('voc07',), [])
    (eval_dir / 'results.txt').unlink()
    (eval_dir / 'results.txt').mkdir()
    (eval_dir / 'results.txt' / 'notes.md').write_text('mine')
    (eval_dir / 'pr_curves' / 'pr_x.png').mkdir()
    before = file_bytes(eval_dir)
    logged = []
    with pytest.raises(ValueError) as info:
        _evaluate(setup, eval_dir, ('voc07',), logged)
    assert str(info.value) == _refusal(eval_dir, 'pr_curves/pr_x.png/, results.txt/')
    assert logged == []
    assert file_bytes(eval_dir) == before


def test_results_json_lists_its_files_and_only_those_are_taken_as_its(setup, tmp_path):
    eval_dir = tmp_path / 'eval'
    _evaluate(setup, eval_dir, ('voc07',), [])
    voc = _voc_outputs(setup, eval_dir)
    with open(eval_dir / 'results.json') as fh:
        assert json.load(fh)[eval_outputs.OUTPUT_FILES_KEY] == voc
    # A file of an output's name added since (a class this evaluation has no file for) is not
    # the evaluation's: the next evaluation, which would remove it, refuses.
    (eval_dir / 'comp4_det_test_zebra.txt').write_text('mine')
    before = file_bytes(eval_dir)
    with pytest.raises(ValueError) as info:
        _evaluate(setup, eval_dir, ('coco',), [])
    assert str(info.value) == _refusal(eval_dir, 'comp4_det_test_zebra.txt')
    assert file_bytes(eval_dir) == before


def test_a_symlinked_pr_curves_folder_is_never_written_through(setup, tmp_path):
    """Audit finding: publishing followed eval_dir/pr_curves -> elsewhere and replaced the
    files there."""
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    stems = sorted(name.replace(' ', '_') for name in setup['class_names'])
    for stem in stems:
        (elsewhere / f'pr_{stem}.png').write_text('mine')
    eval_dir = tmp_path / 'eval'
    eval_dir.mkdir()
    (eval_dir / 'pr_curves').symlink_to(elsewhere)
    with pytest.raises(ValueError) as info:
        _evaluate(setup, eval_dir, ('voc07',), [])
    assert str(info.value) == _refusal(eval_dir, 'pr_curves')
    assert sorted(os.listdir(eval_dir)) == ['pr_curves']
    assert file_bytes(elsewhere) == {f'pr_{stem}.png': b'mine' for stem in stems}

    # publish_dir itself (the link made while evaluating): nothing moved, nothing written there.
    staging = eval_dir / '.staging'
    (staging / 'pr_curves').mkdir(parents=True)
    (staging / 'pr_curves' / f'pr_{stems[0]}.png').write_text('new')
    (staging / 'results.json').write_text('{}')
    with pytest.raises(ValueError) as info:
        eval_outputs.publish_dir(str(staging), str(eval_dir))
    assert str(info.value) == (
        f'{eval_dir / "pr_curves"} is a symlink where the evaluation publishes an output of that '
        'name; nothing was published. Move it away, or choose another --eval_dir.'
    )
    assert file_bytes(elsewhere) == {f'pr_{stem}.png': b'mine' for stem in stems}
    assert _files(staging) == [f'pr_curves/pr_{stems[0]}.png', 'results.json']
    assert not (eval_dir / 'results.json').exists()


def test_a_folder_where_an_output_file_goes_is_not_deleted(tmp_path):
    target, staging = tmp_path / 'eval', tmp_path / 'eval' / '.staging'
    staging.mkdir(parents=True)
    for name in ('results.json', 'results.txt'):
        (staging / name).write_text('new')
    (target / 'results.txt').mkdir()
    (target / 'results.txt' / 'notes.md').write_text('mine')
    with pytest.raises(ValueError) as info:
        eval_outputs.publish_dir(str(staging), str(target))
    assert str(info.value) == (
        f'{target / "results.txt"} is a folder where the evaluation publishes an output of that '
        'name; nothing was published. Move it away, or choose another --eval_dir.'
    )
    assert file_bytes(target) == {
        '.staging/results.json': b'new',
        '.staging/results.txt': b'new',
        'results.txt/notes.md': b'mine',
    }


def test_results_json_is_published_first(tmp_path, monkeypatch):
    """A publishing cut short leaves the new results.json, which lists every output there, so
    the next evaluation into the folder does not take them for someone else's."""
    target, staging = tmp_path / 'eval', tmp_path / 'eval' / '.staging'
    staging.mkdir(parents=True)
    for name in ('coco_detections.json', 'comp4_det_test_cat.txt', 'results.txt'):
        (staging / name).write_text('new')
    summary = {'checkpoint': '/train/model.ckpt-7', 'global_step': 7, 'settings': {}}
    listed = dict(summary, output_files=eval_outputs.staged_outputs(str(staging)))
    (staging / 'results.json').write_text(json.dumps(listed))  # written last, as evaluate does
    assert eval_outputs.remove_earlier_outputs(str(staging), str(target)) == []
    moved = []
    real_replace = os.replace

    def replace_then_die(source, dest):
        if moved:
            raise KeyboardInterrupt
        moved.append(os.path.relpath(dest, target))
        real_replace(source, dest)

    monkeypatch.setattr(os, 'replace', replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        eval_outputs.publish_dir(str(staging), str(target))
    monkeypatch.undo()
    assert moved == ['results.json']
    with open(target / 'results.json') as fh:
        assert json.load(fh) == dict(
            summary,
            output_files=[
                'coco_detections.json',
                'comp4_det_test_cat.txt',
                'results.json',
                'results.txt',
            ],
        )
    assert eval_outputs.foreign_outputs(str(target)) == []
