"""The checkpoint watcher: a backlog and checkpoints appearing over time are each evaluated once,
oldest first; deleted checkpoints (before or during their evaluation) are skipped or survive;
a restart resumes from the ledger; the best checkpoint, history, timeout and final step work."""

import csv
import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import pytest
import tensorflow as tf

from model import checkpoints
from evaluation import evaluate
from tests import eval_fixtures
from tests import inference_fixtures as fx
from tests import script_server
from tests.conftest import ROOT, interrupt_when, run_python, run_script, script_env
from evaluation import watcher
from tf_extended import folder_lock
from tf_extended import voc_metrics

MODEL = 'ssd_300_mobilenet'
DEPTH = 0.25


def _delete(prefix):
    for path in glob.glob(prefix + '.*'):
        os.remove(path)


def _random_checkpoint_writer(request, train_dir, card):
    """write(step, new_weights=True): saves `<train_dir>/model.ckpt-<step>` (`global_step` =
    `step`) of `card`'s net with new random weights, or the last ones with `new_weights=False`,
    and returns its prefix. The weights are inference_fixtures.write_checkpoint's kind, whose
    scores are spread out (plain random initialisations detect the same boxes whatever the
    seed); the net is built once for every checkpoint (its session closed when the test ends).
    """
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(1)
        fx.build_spread_out_pass(card, 1)
        # As inference_fixtures.init_spread_out_weights, in ops built once (the initialisers and
        # random ops draw new values at each run): batch norm statistics from the batch
        # (variances at least 0.05), random class-head biases.
        initialise = [v1.global_variables_initializer(), v1.get_collection(v1.GraphKeys.UPDATE_OPS)]
        initialise.append(
            [
                v.assign(tf.maximum(v, 0.05))
                if v.op.name.endswith('moving_variance')
                else v.assign(tf.random.normal(v.shape))
                for v in v1.global_variables()
                if v.op.name.endswith('moving_variance') or 'mbox_conf/biases' in v.op.name
            ]
        )
        global_step = v1.train.get_or_create_global_step()
        step_value = v1.placeholder(tf.int64, [])
        set_step = v1.assign(global_step, step_value)
        saver = v1.train.Saver(max_to_keep=None)
    sess = v1.Session(graph=graph)
    request.addfinalizer(sess.close)

    def write(step, new_weights=True):
        if new_weights:
            for ops in initialise:
                sess.run(ops)
        sess.run(set_step, {step_value: step})
        with graph.as_default():
            prefix = os.path.join(train_dir, 'model.ckpt')
            return saver.save(sess, prefix, global_step=step, write_meta_graph=False)

    return write


def test_watcher_backlog_deletions_restart_best_and_timeout(tmp_path, monkeypatch, request):
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(
        str(tmp_path), num_images=8, seed=5
    )
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    card = eval_fixtures.small_card(MODEL, class_names, DEPTH, keep_top_k=1000, nms_threshold=0.9)
    write = _random_checkpoint_writer(request, train_dir, card)
    backlog = [write(10), write(20), write(30)]
    settings = eval_fixtures.custom_split_settings(card, records_dir, metrics=('voc07', 'voc12'))
    original = evaluate.CheckpointEvaluator.evaluate
    evaluated, graphs = [], []

    def evaluate_like_a_trainer_deletes(evaluator, prefix, results_dir, *args, **kwargs):
        evaluated.append(os.path.basename(prefix))
        if evaluated[-1] == 'model.ckpt-20':
            _delete(backlog[1])  # deleted during its own evaluation (after staging)
            _delete(backlog[2])  # deleted before its evaluation
        result = original(evaluator, prefix, results_dir, *args, **kwargs)
        graphs.append(evaluator.graph)
        return result

    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', evaluate_like_a_trainer_deletes)
    clock = {'now': 0.0}
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock['now'] += seconds
        if len(sleeps) == 1:
            write(40)  # a checkpoint appearing while the watcher waits

    lines = []
    entries = watcher.watch(
        settings,
        train_dir,
        eval_dir,
        interval_secs=5.0,
        timeout_secs=12.0,
        log=lines.append,
        clock=lambda: clock['now'],
        sleep=sleep,
    )
    assert [(e['checkpoint'], e['status']) for e in entries] == [
        ('model.ckpt-10', 'evaluated'),
        ('model.ckpt-20', 'evaluated'),
        ('model.ckpt-30', 'unavailable'),
        ('model.ckpt-40', 'evaluated'),
    ]
    assert evaluated == ['model.ckpt-10', 'model.ckpt-20', 'model.ckpt-40']
    assert any('skipping model.ckpt-30' in line for line in lines)
    # One graph for the run's checkpoints (compared with a fresh evaluation after the restart).
    assert len(graphs) == 3 and graphs[0] is graphs[1] is graphs[2]
    # Idle after ckpt-40: sleeps of 5, 5, 2 reach the 12 s timeout.
    assert sleeps == [5.0, 5.0, 5.0, 2.0] and 'stopping' in lines[-1]

    # Restart: nothing repeated; a new checkpoint with the final step is evaluated, then it stops.
    write(50, new_weights=False)
    restarted = watcher.watch(
        settings,
        train_dir,
        eval_dir,
        interval_secs=5.0,
        timeout_secs=None,
        final_step=50,
        log=lines.append,
        sleep=lambda s: pytest.fail('should stop at the final step'),
    )
    assert [e['checkpoint'] for e in restarted] == ['model.ckpt-50']
    # ckpt-50 holds ckpt-40's weights, evaluated first in the restarted watcher's new graph (as a
    # fresh evaluation is): ckpt-40, restored into the first graph after two others, gave the
    # same detections, byte for byte, and metrics.
    assert len(graphs) == 4 and graphs[3] is not graphs[0]
    assert (restarted[0]['metrics'], restarted[0]['class_ap']) == (
        entries[-1]['metrics'],
        entries[-1]['class_ap'],
    )

    def detections(step):
        folder = os.path.join(eval_dir, f'model.ckpt-{step}')
        found = {}
        for name in sorted(os.listdir(folder)):
            if name.startswith('comp4_'):
                with open(os.path.join(folder, name)) as fh:
                    found[name] = fh.read()
        return found

    assert detections(50) == detections(40)
    # Guards the comparison: another checkpoint's weights detect otherwise.
    assert detections(10) != detections(40)
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        ledger = [json.loads(line) for line in fh]
    assert [e['checkpoint'] for e in ledger] == [f'model.ckpt-{s}' for s in (10, 20, 30, 40, 50)]
    done = [e for e in ledger if e['status'] == 'evaluated']
    assert [e['step'] for e in done] == [10, 20, 40, 50]

    # Each evaluated checkpoint has its results; the summary names the trainer's checkpoint.
    for e in done:
        with open(os.path.join(eval_dir, e['checkpoint'], 'results.json')) as fh:
            summary = json.load(fh)
        assert summary['metrics'] == e['metrics']
        assert summary['checkpoint'] == os.path.join(train_dir, e['checkpoint'])

    # Best: the highest voc07 mAP (first on ties), restorable from eval_dir/best.
    best = max(done, key=lambda e: e['metrics']['voc07'])
    with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
        assert json.load(fh)['checkpoint'] == best['checkpoint']
    best_prefix = checkpoints.resolve_checkpoint(os.path.join(eval_dir, 'best'))
    assert int(tf.train.load_checkpoint(best_prefix).get_tensor('global_step')) == best['step']
    with open(os.path.join(eval_dir, 'best', 'results', 'results.json')) as fh:
        assert json.load(fh)['global_step'] == best['step']

    # History: one row per evaluated checkpoint, by step, with the ledger's numbers.
    with open(os.path.join(eval_dir, 'history.csv')) as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r['step']) for r in rows] == [10, 20, 40, 50]
    # Per-class columns in label order, as the tables (they were alphabetical).
    assert [c for c in rows[0] if c.startswith('voc12_AP_')] == [
        f'voc12_AP_{name}' for name in class_names
    ]
    for row, e in zip(rows, done):
        assert float(row['voc07_mAP']) == e['metrics']['voc07']
        name = class_names[0]
        ap = e['class_ap']['voc12'][name]
        assert row[f'voc12_AP_{name}'] == ('' if ap is None else repr(ap))
    assert os.path.isfile(os.path.join(eval_dir, 'history.png'))
    assert [n for n in os.listdir(eval_dir) if n.startswith('.')] == [watcher.LOCK_NAME]


def test_list_checkpoints_reads_state_file_and_index_files_by_step(tmp_path):
    """By the step of the name, not the `.index` time (it listed 300, 20, 100, m-7 here); a tie
    and names without a step by mtime, the latter last."""
    paths = {}
    for name, mtime in (
        ('model.ckpt-300', 1000),
        ('model.ckpt-20', 2000),
        ('model.ckpt-100', 3000),
        ('other-20', 1500),
        ('model.ckpt', 900),
        ('final', 800),
    ):
        prefix = str(tmp_path / name)
        for suffix in ('.index', '.data-00000-of-00001'):
            with open(prefix + suffix, 'w') as fh:
                fh.write('x')
        os.utime(prefix + '.index', (mtime, mtime))
        paths[name] = prefix
    # The state file names one more checkpoint (relative path) and one that no longer exists.
    other = tmp_path / 'sub'
    other.mkdir()
    for suffix in ('.index', '.data-00000-of-00001'):
        (other / f'm-7{suffix}').write_text('x')
    os.utime(other / 'm-7.index', (4000, 4000))
    (tmp_path / 'checkpoint').write_text(
        'model_checkpoint_path: "model.ckpt-100"\n'
        'all_model_checkpoint_paths: "sub/m-7"\n'
        'all_model_checkpoint_paths: "model.ckpt-5"\n'
    )
    assert watcher.list_checkpoints(str(tmp_path)) == [
        str(other / 'm-7'),
        paths['other-20'],
        paths['model.ckpt-20'],
        paths['model.ckpt-100'],
        paths['model.ckpt-300'],
        paths['final'],
        paths['model.ckpt'],
    ]


def test_each_checkpoint_once_however_the_directory_is_spelled(tmp_path, monkeypatch):
    """The trainer's state file names its checkpoints by absolute path; a watcher given the
    folder by a relative path or a symlink sees each checkpoint there and in the glob, and must
    evaluate it once (it evaluated each twice, into `<name>` and `<name>.run-<card>`)."""
    train_dir = tmp_path / 'train'
    for step in (10, 20):
        _fake_checkpoint(str(train_dir), step, mtime=1000 + step)
    (train_dir / 'checkpoint').write_text(
        f'model_checkpoint_path: "{train_dir}/model.ckpt-20"\n'
        f'all_model_checkpoint_paths: "{train_dir}/model.ckpt-10"\n'
        f'all_model_checkpoint_paths: "{train_dir}/model.ckpt-20"\n'
    )
    os.symlink(train_dir, tmp_path / 'link')
    monkeypatch.chdir(tmp_path)
    for spelling in ('train', 'link', './train/'):
        assert watcher.list_checkpoints(spelling) == [
            os.path.join(os.path.normpath(spelling), f'model.ckpt-{step}') for step in (10, 20)
        ]
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    clock, sleep = _no_timeout_clock()
    entries = watcher.watch(
        _settings('a' * 32), 'train', 'eval', timeout_secs=0, log=print, clock=clock, sleep=sleep
    )
    assert [(e['step'], e['results_dir']) for e in entries] == [
        (10, 'model.ckpt-10'),
        (20, 'model.ckpt-20'),
    ]
    assert [step for step, *_ in calls] == [10, 20]


def test_ledger_names_a_corrupt_line(tmp_path):
    (tmp_path / watcher.LEDGER_NAME).write_text(
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "metrics": {}, "class_ap": {}}\n'
        'not json\n'
    )
    with pytest.raises(ValueError, match=r'eval_ledger.jsonl:2'):
        watcher.Ledger(str(tmp_path))


@pytest.mark.parametrize(
    'line',
    [
        '[' * 100000,  # nested beyond the parser: a RecursionError traceback before
        '["checkpoint", "status"]',
        '{"checkpoint": ["a"], "status": "evaluated", "step": 1, "metrics": {}, "class_ap": {}}',
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "metrics": {"voc07": "high"}, '
        '"class_ap": {}}',
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "metrics": {}, "class_ap": {}, '
        '"index_mtime_ns": [1]}',
        # beyond float64: an OverflowError in the history table before
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "class_ap": {}, "metrics": '
        '{"voc07": 1' + '0' * 400 + '}}',
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "metrics": {}, "class_ap": '
        '{"voc07": {"cat": 1' + '0' * 400 + '}}}',
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "metrics": {}}',  # a KeyError
        '{"checkpoint": "a", "status": "evaluated", "step": 1, "class_ap": {}}',
        '{"checkpoint": "a", "status": "evaluated", "step": "1", "metrics": {}, "class_ap": {}}',
        '{"checkpoint": "a", "status": "skipped", "results_dir": [1]}',  # unhashable, later
    ],
)
def test_ledger_refuses_lines_its_readers_cannot_use(tmp_path, line):
    (tmp_path / watcher.LEDGER_NAME).write_text(line + '\n')
    with pytest.raises(ValueError, match=r'eval_ledger.jsonl:1: not a ledger entry'):
        watcher.Ledger(str(tmp_path))


@pytest.mark.parametrize('value', ['NaN', 'Infinity', '-Infinity', '-0.5', '1.5', 'true'])
@pytest.mark.parametrize('where', ['metrics', 'class_ap'])
def test_ledger_refuses_metrics_outside_0_to_1(tmp_path, value, where):
    """An Infinity (or NaN) best was never beaten: best/ was silently never published again."""
    metrics, class_ap = (
        ('{"voc07": %s}' % value, '{}')
        if where == 'metrics'
        else (
            '{"voc07": 0.5}',
            '{"voc07": {"cat": %s}}' % value,
        )
    )
    line = (
        f'{{"checkpoint": "model.ckpt-5", "status": "evaluated", "step": 5, "metrics": {metrics}, '
        f'"class_ap": {class_ap}}}'
    )
    (tmp_path / watcher.LEDGER_NAME).write_text('\n' + line + '\n')
    with pytest.raises(ValueError) as info:
        watcher.Ledger(str(tmp_path))
    assert len(repr(line)) > 80  # shown cut in the middle, to 80 characters
    assert str(info.value) == (
        f'{tmp_path / watcher.LEDGER_NAME}:2: not a ledger entry ({repr(line)[:38]}...'
        f'{repr(line)[-39:]}); fix or remove '
        'the line (every line is a JSON object with "checkpoint" and "status"; an evaluated '
        "one's metrics and class_ap are null or numbers in [0, 1])."
    )


def test_ledger_takes_the_metrics_evaluations_write(tmp_path):
    """None (undefined), 0, 1, and the VOC07 AP of a perfectly detected class, which rounds to
    one ulp above 1 (a watcher that refused it would refuse its own ledger)."""
    perfect = voc_metrics.average_precision([True], 1)[0]
    assert perfect == 1.0000000000000002
    (tmp_path / watcher.LEDGER_NAME).write_text(
        ''.join(
            f'{{"checkpoint": "c{i}", "status": "evaluated", "step": {i}, '
            f'"class_ap": {{"voc07": {{"cat": {value}}}}}, "metrics": {{"voc07": {value}}}}}\n'
            for i, value in enumerate(['null', '0', '0.5', repr(perfect), '1'])
        )
    )
    assert watcher.Ledger(str(tmp_path)).best('voc07')['checkpoint'] == 'c3'


def test_ledger_best_is_the_first_on_ties_and_history_rows_go_by_step(tmp_path):
    """Handled out of step order (a resumed or rewritten run): history.csv has one row per
    evaluated checkpoint by step, not by ledger order; the best of equal values is the first
    evaluated."""
    ledger = watcher.Ledger(str(tmp_path))
    for step, value in ((30, 0.5), (10, 0.7), (20, 0.7)):
        ledger.append(
            {
                'checkpoint': f'model.ckpt-{step}',
                'status': watcher.EVALUATED,
                'step': step,
                'metrics': {'voc07': value},
                'class_ap': {'voc07': {'cat': value}},
            }
        )
    ledger.append({'checkpoint': 'model.ckpt-40', 'status': watcher.UNAVAILABLE, 'step': 40})
    assert ledger.best('voc07')['checkpoint'] == 'model.ckpt-10'
    watcher.write_history(ledger, str(tmp_path), best_metric='voc07', class_names=['cat'])
    with open(tmp_path / 'history.csv') as fh:
        assert fh.read() == (
            'step,checkpoint,voc07_mAP,voc07_AP_cat\n'
            '10,model.ckpt-10,0.7,0.7\n'
            '20,model.ckpt-20,0.7,0.7\n'
            '30,model.ckpt-30,0.5,0.5\n'
        )


def test_a_later_checkpoint_that_only_ties_does_not_replace_best(tmp_path, monkeypatch):
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20, 30):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    scores = {10: 0.25, 20: 0.5, 30: 0.5}
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([], scores=scores))
    lines = []
    entries = watcher.watch(
        _settings('a' * 32), train_dir, eval_dir, timeout_secs=0, log=lines.append
    )
    assert [e['step'] for e in entries] == [10, 20, 30]
    with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
        assert json.load(fh)['checkpoint'] == 'model.ckpt-20'
    assert [line for line in lines if 'new best' in line] == [
        f'[watch] new best voc07 mAP 25.00 % at step 10 -> {eval_dir}/best',
        f'[watch] new best voc07 mAP 50.00 % at step 20 -> {eval_dir}/best',
    ]


def test_ledger_entries_of_older_versions_are_this_runs(tmp_path, monkeypatch):
    """An entry without "path" (an older version's) is handled and in this run's history."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    os.makedirs(eval_dir)
    (tmp_path / 'eval' / watcher.LEDGER_NAME).write_text(
        '{"checkpoint": "model.ckpt-10", "status": "evaluated", "step": 10, '
        '"metrics": {"voc07": 0.75}, "class_ap": {"voc07": {"cat": 0.75}}}\n'
    )
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    entries = watcher.watch(_settings('a' * 32), train_dir, eval_dir, timeout_secs=0, log=print)
    assert [e['step'] for e in entries] == [20] and [step for step, *_ in calls] == [20]
    with open(os.path.join(eval_dir, 'history.csv')) as fh:
        assert [(r['step'], r['voc07_mAP']) for r in csv.DictReader(fh)] == [
            ('10', '0.75'),
            ('20', '0.002'),
        ]


def test_a_copied_training_folder_is_another_run_in_history_and_best(tmp_path, monkeypatch):
    """The same card in another training folder (a copy): its own history rows and best/, the
    first folder's kept apart."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    copy = str(tmp_path / 'copy')
    for folder in (train_dir, copy):
        if folder == copy:
            shutil.copytree(train_dir, copy)
        entries = watcher.watch(_settings('a' * 32), folder, eval_dir, timeout_secs=0, log=print)
        assert [e['step'] for e in entries] == [10, 20]
    with open(os.path.join(eval_dir, 'history.csv')) as fh:
        assert [r['step'] for r in csv.DictReader(fh)] == ['10', '20']
    for best, folder in (('best', copy), ('best.run-aaaaaaaa', train_dir)):
        with open(os.path.join(eval_dir, best, 'best.json')) as fh:
            found = json.load(fh)
        assert (found['checkpoint'], found['run']['train_dir']) == (
            'model.ckpt-20',
            os.path.realpath(folder),
        )


@pytest.mark.parametrize('started,after', [(-1, False), (0, True), (1, True)])
def test_a_training_run_started_in_the_markers_second_counts_as_after(
    tmp_path, monkeypatch, started, after
):
    """The lock file keeps whole seconds: a run that started in the second the marker was written
    (its removal of the marker still to come) is a resumed run, not the one that wrote it."""
    written = 1_700_000_000.5
    (tmp_path / checkpoints.FINISHED_MARKER).write_text('{}')
    os.utime(tmp_path / checkpoints.FINISHED_MARKER, (written, written))
    since = datetime.datetime.fromtimestamp(int(written) + started, datetime.timezone.utc)
    record = {
        'role': folder_lock.TRAINING_ROLE,
        'since': since.isoformat(timespec='seconds'),
        'pid': 7,
        'host': socket.gethostname(),
    }
    monkeypatch.setattr(folder_lock, 'current_holder', lambda directory: record)
    found = watcher._trainer_started_after_marker(str(tmp_path))
    assert found == (f'pid 7 on {record["host"]} since {record["since"]}' if after else None)


def test_a_timeout_with_only_another_runs_evaluations_is_an_error(tmp_path, monkeypatch):
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _delete(_fake_checkpoint(train_dir, 10))
    _fake_checkpoint(str(tmp_path / 'other'), 10)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    watcher.watch(_settings('b' * 32), str(tmp_path / 'other'), eval_dir, timeout_secs=0)
    with pytest.raises(watcher.NothingEvaluated, match=f'none appeared in {train_dir} '):
        watcher.watch(_settings('a' * 32), train_dir, eval_dir, timeout_secs=0)


def test_a_best_folder_of_an_older_version_is_replaced(tmp_path, monkeypatch):
    """Its best.json names no run (nor its files): it is this watcher's to replace, not another
    run's to keep apart."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10)
    old_best = tmp_path / 'eval' / 'best'
    old_best.mkdir(parents=True)
    (old_best / 'model.ckpt-5.index').write_text('x')
    (old_best / 'best.json').write_text('{"checkpoint": "model.ckpt-5", "step": 5}')
    (tmp_path / 'eval' / watcher.LEDGER_NAME).write_text(
        '{"checkpoint": "model.ckpt-5", "status": "evaluated", "step": 5, '
        '"metrics": {"voc07": 0.0001}, "class_ap": {}}\n'
    )
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    watcher.watch(_settings('a' * 32), train_dir, eval_dir, timeout_secs=0, log=print)
    assert not glob.glob(os.path.join(eval_dir, 'best.*'))
    with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
        assert json.load(fh)['checkpoint'] == 'model.ckpt-10'


def test_a_final_step_checkpoint_that_is_gone_stops_the_watcher(tmp_path, monkeypatch):
    """Deleted before it could be evaluated, the checkpoint of --final_step is still reached."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    fake = _fake_evaluate([])

    def gone_at_20(evaluator, prefix, results_dir, **kwargs):
        if prefix.endswith('-20'):
            raise checkpoints.CheckpointUnavailable('deleted by max_to_keep')
        return fake(evaluator, prefix, results_dir, **kwargs)

    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', gone_at_20)
    lines = []
    entries = watcher.watch(
        _settings('a' * 32),
        train_dir,
        eval_dir,
        final_step=20,
        log=lines.append,
        sleep=lambda s: pytest.fail('should stop at the final step'),
    )
    assert [(e['step'], e['status']) for e in entries] == [(10, 'evaluated'), (20, 'unavailable')]
    assert lines[-1] == '[watch] final step 20 reached (model.ckpt-20); stopping.'


@pytest.mark.parametrize(
    'old,now,refused',
    [
        # Older versions' entries: max_num_batches (None: all) and, with it, batch_size.
        ({'max_num_batches': 3, 'batch_size': 2}, (6, 1), None),
        (
            {'max_num_batches': 3, 'batch_size': 2},
            (3, 1),
            'the first 6 images (--max_num_batches=3 --batch_size=2) -> the first 3 images',
        ),
        ({'max_num_batches': None}, (0, 8), None),
        ({'max_num_batches': 0}, (0, 8), None),
        ({'max_num_batches': 3}, (3, 1), 'images not recorded (--max_num_batches=3 batch_size'),
        # Today's: max_images (None: all), a count > 0.
        ({'max_images': 6, 'max_num_batches': 6, 'batch_size': 1}, (3, 2), None),
        (
            {'max_images': 0, 'max_num_batches': 0, 'batch_size': 1},
            (0, 8),
            'images not recorded (--max_num_batches=0) -> all 100 images of the split',
        ),
    ],
)
def test_settings_compare_the_images_an_entry_recorded(tmp_path, old, now, refused):
    """On a split of 100 images, whatever the format an entry recorded them in."""
    settings = _settings('a' * 32)
    record = watcher.results_settings(
        dataclasses.replace(settings, max_num_batches=now[0], batch_size=now[1])
    )
    recorded = {k: v for k, v in record.items() if k not in ('max_images', 'batch_size')}
    entry = {'checkpoint': 'model.ckpt-10', 'status': watcher.EVALUATED, 'step': 10}
    ledger = watcher.Ledger(str(tmp_path))
    ledger.append(dict(entry, metrics={}, class_ap={}, settings=dict(recorded, **old)))

    def check():
        watcher.check_settings(ledger, record, lambda e: True, 'eval', lambda: 100)

    if refused is None:
        check()
    else:
        with pytest.raises(ValueError, match=re.escape(refused)):
            check()


def test_a_finished_marker_naming_a_deleted_checkpoint_stops_the_watcher(tmp_path, monkeypatch):
    """The trainer finished and its last checkpoint is gone before the watcher saw it (deleted
    by hand): nothing is left to wait for."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    checkpoints.mark_training_finished(train_dir)
    _delete(os.path.join(train_dir, 'model.ckpt-20'))
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    lines = []
    entries = watcher.watch(
        _settings('a' * 32),
        train_dir,
        eval_dir,
        log=lines.append,
        sleep=lambda s: pytest.fail('should stop: the trainer has finished'),
    )
    assert [e['step'] for e in entries] == [10]
    assert lines[-1] == (
        '[watch] the trainer finished at step 20 (training_finished.json, model.ckpt-20); stopping.'
    )


def test_a_setting_an_entry_did_not_record_is_another_setting(tmp_path):
    """A recorded settings dict without a key (null in today's) is refused, naming it."""
    record = watcher.results_settings(_settings('a' * 32))
    assert record['moving_average_decay'] is None
    old = {k: v for k, v in record.items() if k != 'moving_average_decay'}
    ledger = watcher.Ledger(str(tmp_path))
    ledger.append(
        {
            'checkpoint': 'model.ckpt-10',
            'status': watcher.EVALUATED,
            'step': 10,
            'metrics': {},
            'class_ap': {},
            'settings': old,
        }
    )
    with pytest.raises(ValueError, match='moving_average_decay not recorded -> no --moving_'):
        watcher.check_settings(ledger, record, lambda e: True, 'eval', pytest.fail)
    ledger.entries[0]['settings'] = record
    watcher.check_settings(ledger, record, lambda e: True, 'eval', pytest.fail)


def test_ledger_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / watcher.LEDGER_NAME)  # opening it for reading would wait for a writer
    with pytest.raises(OSError, match=r'the watcher ledger is a FIFO \(named pipe\), not a regul'):
        watcher.Ledger(str(tmp_path))


@pytest.mark.parametrize('kind', ['fifo', 'deep', 'huge'])
def test_best_json_and_results_json_are_read_bounded(tmp_path, kind):
    """best/best.json and a results folder's results.json: unreadable ones are not the watcher's
    (None / False), read without blocking, recursing or loading gigabytes."""
    for name in (watcher.BEST_JSON, 'results.json'):
        path = tmp_path / name
        if kind == 'fifo':
            os.mkfifo(path)
        elif kind == 'deep':
            path.write_text('[' * 100000)
        else:
            with open(path, 'wb') as f:
                f.truncate(watcher._MAX_JSON_BYTES + 1)  # sparse
    assert watcher._read_best_json(str(tmp_path)) is None
    assert watcher._is_own_results(str(tmp_path), 'model.ckpt-1', '') is False


def test_watcher_stops_when_the_trainer_has_finished(tmp_path, monkeypatch):
    """training_finished.json naming a handled checkpoint stops the watcher (no timeout, no final
    step); the trainer writes it, tests/test_train_run.py checks that side."""
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(
        str(tmp_path), num_images=4, seed=6
    )
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    # The stand-in evaluation (the records are real: the split an input cache would decode).
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    checkpoints.mark_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir)['checkpoint'] == 'model.ckpt-20'
    settings = eval_fixtures.custom_split_settings(
        eval_fixtures.small_card(MODEL, class_names, DEPTH), records_dir
    )
    lines = []
    entries = watcher.watch(
        settings,
        train_dir,
        eval_dir,
        log=lines.append,
        sleep=lambda s: pytest.fail('should stop: the trainer has finished'),
    )
    assert [e['checkpoint'] for e in entries] == ['model.ckpt-10', 'model.ckpt-20']
    assert 'the trainer finished at step 20' in lines[-1]
    # Restarted on the finished training: it stops at once, without decoding the split for its
    # input cache first.
    again = []
    assert watcher.watch(settings, train_dir, eval_dir, input_cache_mb=64, log=again.append) == []
    assert again[-1] == lines[-1] and not [line for line in again if 'input cache' in line]
    # A resumed run that has not removed the marker yet (it does once its graph is built): the
    # marker is older than its lock, so the watcher waits for its checkpoints. It stopped at once.
    marker = os.path.join(train_dir, checkpoints.FINISHED_MARKER)
    os.utime(marker, (time.time() - 100, time.time() - 100))
    clock = {'now': 0.0}

    def sleep(seconds):
        clock['now'] += seconds

    def watch_briefly():
        return watcher.watch(
            settings,
            train_dir,
            eval_dir,
            interval_secs=1.0,
            timeout_secs=3.0,
            log=lines.append,
            clock=lambda: clock['now'],
            sleep=sleep,
        )

    with folder_lock.acquire(train_dir, '--train_dir', folder_lock.TRAINING_ROLE):
        assert watch_briefly() == []
    assert clock['now'] == 3.0 and 'no new checkpoint' in lines[-1]
    assert lines[-2].startswith(
        f'[watch] training_finished.json (step 20) is older than the training run that holds '
        f'{train_dir} (pid {os.getpid()} on '
    ) and lines[-2].endswith('): waiting for its checkpoints.')
    # A holder on another host (a shared folder) may have been killed there: the line says how
    # to let the watcher stop (it waited until its timeout, or for ever, without a word).
    with folder_lock.acquire(train_dir, '--train_dir', folder_lock.TRAINING_ROLE) as lock:
        record = json.loads(open(lock.path).read())
        with open(lock.path, 'w') as f:
            f.write(json.dumps(dict(record, host='node7', pid=4242)) + '\n')
        clock['now'] = 0.0
        assert watch_briefly() == []
    assert lines[-2] == (
        f'[watch] training_finished.json (step 20) is older than the training run that holds '
        f'{train_dir} (pid 4242 on node7 since {record["since"]}; this watcher cannot tell '
        f'whether a process of another host is alive: if that run was killed, delete its lock '
        f'file {lock.path} and the watcher stops at the marker): waiting for its checkpoints.'
    )
    # A holder that was killed (its lock file left, its process gone) or a lock taken before the
    # marker (the run that wrote it, ending) do not count.
    dead = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
    )
    with folder_lock.acquire(train_dir, '--train_dir', folder_lock.TRAINING_ROLE) as lock:
        record = json.loads(open(lock.path).read())
        with open(lock.path, 'w') as f:
            f.write(json.dumps(dict(record, pid=int(dead.stdout))) + '\n')
        assert (
            watcher.watch(settings, train_dir, eval_dir, log=lines.append, sleep=pytest.fail) == []
        )
        os.utime(marker)
        with open(lock.path, 'w') as f:
            f.write(json.dumps(dict(record, since='2020-01-01T00:00:00+00:00')) + '\n')
        assert (
            watcher.watch(settings, train_dir, eval_dir, log=lines.append, sleep=pytest.fail) == []
        )
    assert 'the trainer finished at step 20' in lines[-1]
    # A resumed run removes the marker: the watcher waits again (until its timeout here).
    checkpoints.clear_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir) is None
    clock['now'] = 0.0
    assert watch_briefly() == []
    assert clock['now'] == 3.0 and 'no new checkpoint' in lines[-1]


# ---------------------------------------------------------------------------------------------
# Restarts, reused folders, two watchers, timeouts (#14, #16). A stand-in for the evaluation
# keeps these fast: it writes a results.json as CheckpointEvaluator.evaluate does (through its staging
# folder) and scores a checkpoint step / 10000 (an mAP in [0, 1] for the steps used here), or
# as `scores` ({step: mAP}) says.


def _fake_checkpoint(train_dir, step, mtime=None):
    os.makedirs(train_dir, exist_ok=True)
    prefix = os.path.join(train_dir, f'model.ckpt-{step}')
    for suffix in ('.index', '.data-00000-of-00001'):
        with open(prefix + suffix, 'w') as fh:
            fh.write(f'{step}')
    if mtime is not None:
        os.utime(prefix + '.index', (mtime, mtime))
    return prefix


def _fake_evaluate(calls, kill_at=None, scores=None):
    from evaluation import outputs as eval_outputs
    from tf_extended import atomic_io

    def fake(evaluator, prefix, results_dir, summary_dir=None, log=None, source=None):
        settings = evaluator.settings
        step = checkpoints.checkpoint_step_from_name(prefix)
        calls.append((step, source, results_dir, settings.card.card_id))
        staging = eval_outputs.make_staging_dir(results_dir)
        atomic_io.write_json_atomic(
            os.path.join(staging, 'results.json'),
            {
                'checkpoint': source,
                'global_step': step,
                'settings': {'model_card': {'card_id': settings.card.card_id}},
            },
        )
        if step == kill_at:
            os.kill(os.getpid(), 9)  # SIGKILL: no cleanup at all
        eval_outputs.publish_dir(staging, results_dir)
        value = (scores or {}).get(step, step / 10000)
        return types.SimpleNamespace(
            global_step=step,
            metrics={'voc07': value},
            class_ap={'voc07': {'cat': value}},
            coco=None,
            seconds=0.01,
            summary={'images_per_second': 100.0},
        )

    return fake


def _settings(card_id=''):
    card = eval_fixtures.small_card(MODEL, ['cat'], DEPTH).replace(card_id=card_id)
    return evaluate.EvalSettings(
        card=card,
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir='unused',
        metrics=('voc07',),
    )


def _no_timeout_clock():
    clock = {'now': 0.0}

    def sleep(seconds):
        clock['now'] += seconds

    return (lambda: clock['now']), sleep


def _hidden(directory):
    return sorted(n for n in os.listdir(directory) if n.startswith('.'))


KILLED_WATCHER = """
import sys
from tests import test_eval_watcher as t
from evaluation import evaluate, watcher
evaluate.CheckpointEvaluator.evaluate = t._fake_evaluate([], kill_at=20)
watcher.watch(t._settings('run-a'), sys.argv[1], sys.argv[2], timeout_secs=0)
"""


def test_sigkilled_watcher_restarts_cleanly(tmp_path, monkeypatch):
    """A watcher killed (SIGKILL) while evaluating leaves its lock, staged hard links and the
    evaluation's staging folder; the next start removes them, evaluates what is left, and
    nothing hidden remains but the lock file. The `.staged-<name>` folders of older versions
    (they made the restart crash on its links) do not stop it; they are named in a log line,
    not removed: a user's folder may have such a name."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20, 30):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    proc = script_server.run(['-c', KILLED_WATCHER, train_dir, eval_dir], ROOT, script_env(), 600)
    assert proc.returncode == -9, proc.stderr
    left = _hidden(eval_dir)
    assert any(n.startswith('.staged.tmp-') for n in left), left
    assert any(
        n.startswith('.staging.tmp-') for n in _hidden(os.path.join(eval_dir, 'model.ckpt-20'))
    )
    # What older versions left: hard links in .staged-<name>.
    old = os.path.join(eval_dir, '.staged-model.ckpt-30')
    os.makedirs(old)
    for suffix in ('.index', '.data-00000-of-00001'):
        os.link(
            os.path.join(train_dir, 'model.ckpt-30' + suffix),
            os.path.join(old, 'model.ckpt-30' + suffix),
        )

    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    lines = []
    entries = watcher.watch(
        _settings('run-a'), train_dir, eval_dir, timeout_secs=0, log=lines.append
    )
    assert [e['step'] for e in entries] == [20, 30]
    assert [step for step, *_ in calls] == [20, 30]
    assert any('killed' in line for line in lines)
    assert (
        f'[watch] not removing .staged-model.ckpt-30 in {eval_dir}: named like the temporary '
        'files that a killed watcher of an older version left, but they could be yours; remove '
        'them by hand if they are not.'
    ) in lines
    assert _hidden(eval_dir) == [watcher.LOCK_NAME, '.staged-model.ckpt-30']
    assert _hidden(os.path.join(eval_dir, 'model.ckpt-20')) == []
    with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
        assert json.load(fh)['checkpoint'] == 'model.ckpt-30'


def test_reused_eval_folder_and_another_spelling(tmp_path, monkeypatch):
    """A new training run in the same folder (same checkpoint names, new card id) is evaluated,
    its results beside the first run's (nothing of it replaced; its best/ kept apart), its history
    its own; the same folder spelled another way (a symlink, './') is not evaluated twice."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    clock, sleep = _no_timeout_clock()
    first = watcher.watch(
        _settings('a' * 32),
        train_dir,
        eval_dir,
        timeout_secs=0,
        log=print,
        clock=clock,
        sleep=sleep,
    )
    assert [e['step'] for e in first] == [10, 20]
    with open(os.path.join(eval_dir, 'model.ckpt-20', 'results.json')) as fh:
        run_a_results = fh.read()

    # The same run through a symlink and a './' spelling: nothing new.
    link = str(tmp_path / 'link')
    os.symlink(train_dir, link)
    for spelling in (link, train_dir + '/./'):
        assert (
            watcher.watch(
                _settings('a' * 32),
                spelling,
                eval_dir,
                timeout_secs=0,
                log=print,
                clock=clock,
                sleep=sleep,
            )
            == []
        )
    assert len(calls) == 2

    # A new run in the same train_dir: the same names, another card.
    for step in (10, 20):
        for path in glob.glob(os.path.join(train_dir, f'model.ckpt-{step}.*')):
            os.remove(path)
    for step in (10, 20, 30):
        _fake_checkpoint(train_dir, step, mtime=2000 + step)
    lines = []
    second = watcher.watch(
        _settings('b' * 32),
        train_dir,
        eval_dir,
        timeout_secs=0,
        log=lines.append,
        clock=clock,
        sleep=sleep,
    )
    assert [e['step'] for e in second] == [10, 20, 30]
    assert [e['results_dir'] for e in second] == [
        'model.ckpt-10.run-bbbbbbbb',
        'model.ckpt-20.run-bbbbbbbb',
        'model.ckpt-30',
    ]
    with open(os.path.join(eval_dir, 'model.ckpt-20', 'results.json')) as fh:
        assert fh.read() == run_a_results
    with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
        assert json.load(fh)['run']['card_id'] == 'b' * 32
    with open(os.path.join(eval_dir, 'best.run-aaaaaaaa', 'best.json')) as fh:
        assert json.load(fh)['run']['card_id'] == 'a' * 32
    with open(os.path.join(eval_dir, 'history.csv')) as fh:
        assert [int(r['step']) for r in csv.DictReader(fh)] == [10, 20, 30]
    # One TensorBoard event file per watch that evaluated something (not one per checkpoint).
    assert len(glob.glob(os.path.join(eval_dir, 'events.out.tfevents.*'))) == 2
    assert any('watching' in line and 'every' in line for line in lines)
    assert any('%' in line and 'new best voc07' in line for line in lines)


def test_second_watcher_on_a_folder_refuses(tmp_path, monkeypatch):
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10)
    os.makedirs(eval_dir)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    held = watcher._lock(eval_dir)  # the first watcher (flock: per open file, so also in-process)
    try:
        with pytest.raises(watcher.WatcherBusy, match=f'another watcher.*pid {os.getpid()}'):
            watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
        assert not os.path.exists(os.path.join(eval_dir, watcher.LEDGER_NAME))
    finally:
        os.close(held)
    assert [e['step'] for e in watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)] == [
        10
    ]


def test_a_watch_runs_under_its_callers_lock_and_an_evaluations_lock_refuses_it(
    tmp_path, monkeypatch
):
    """eval_ssd_network.py locks --eval_dir at its start (tf_extended/folder_lock) and hands the
    lock to the watch; a one-off evaluation holding the folder refuses a watcher, naming it."""
    from tf_extended import folder_lock

    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    with folder_lock.acquire(eval_dir, '--eval_dir', 'evaluation') as held:
        with pytest.raises(watcher.WatcherBusy, match=f'another evaluation .*pid {os.getpid()}'):
            watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
        assert os.listdir(eval_dir) == [watcher.LOCK_NAME]
        entries = watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0, lock=held)
        assert [e['step'] for e in entries] == [10]
    assert _hidden(eval_dir) == []  # the caller's lock file goes with its lock


def test_a_ctrl_c_as_a_watch_takes_its_lock_releases_it(tmp_path, monkeypatch):
    """A Ctrl-C right after a watch without its caller's lock took its own, before the `try`
    that closes it: a caller that went on (a notebook) found the folder held by itself."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10)
    acquire = folder_lock.acquire

    def ctrl_c_as_taken(*args):
        taken = acquire(*args)
        signal.raise_signal(signal.SIGINT)
        return taken

    monkeypatch.setattr(folder_lock, 'acquire', ctrl_c_as_taken)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
    finally:
        signal.signal(signal.SIGINT, previous)
    acquire(eval_dir, '--eval_dir', 'evaluation').release()  # not FolderBusy


def test_best_folder_with_other_files_is_not_replaced(tmp_path, monkeypatch):
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10)
    os.makedirs(os.path.join(eval_dir, 'best'))
    with open(os.path.join(eval_dir, 'best', 'notes.txt'), 'w') as fh:
        fh.write('mine')
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    with pytest.raises(ValueError, match='notes.txt'):
        watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
    assert os.listdir(os.path.join(eval_dir, 'best')) == ['notes.txt']


@pytest.mark.parametrize(
    'moment', ['the new best fails to move in', 'its results fail to copy', 'a Ctrl-C in the swap']
)
def test_a_new_best_cut_short_leaves_one_best_and_no_temporary(tmp_path, monkeypatch, moment):
    """The earlier best/ was moved aside into a temporary folder before the new one moved in: a
    failure of that second rename left no best/ at all (the next watch removed the temporary). A
    failure before the swap (copying the results) raised UnboundLocalError in place of its own
    error; a Ctrl-C held over the swap, raised at its end, left the earlier best/ in a temporary
    folder of --eval_dir."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    best = os.path.join(eval_dir, 'best')
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    _fake_checkpoint(train_dir, 10)
    watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)

    def files():
        return {
            os.path.relpath(os.path.join(folder, name), best): open(
                os.path.join(folder, name), 'rb'
            ).read()
            for folder, _, names in os.walk(best)
            for name in names
        }

    before = files()
    assert json.loads(before['best.json'])['step'] == 10
    _fake_checkpoint(train_dir, 20)  # a higher mAP (`_fake_evaluate`): the new best
    replace = os.replace

    def swap(source, target):
        moving_in = os.fspath(target) == best and '.best-new.tmp-' in os.fspath(source)
        if moving_in and moment == 'the new best fails to move in':
            raise OSError(5, 'Input/output error')
        replace(source, target)
        if moving_in and moment == 'a Ctrl-C in the swap':
            signal.raise_signal(signal.SIGINT)

    def copy_fails(*args, **kwargs):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'replace', swap)
    if moment == 'its results fail to copy':
        monkeypatch.setattr(shutil, 'copytree', copy_fails)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt if moment == 'a Ctrl-C in the swap' else OSError):
            watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
    finally:
        signal.signal(signal.SIGINT, previous)
    after = files()
    if moment == 'a Ctrl-C in the swap':
        assert json.loads(after['best.json'])['step'] == 20
    else:
        assert after == before
    assert [n for n in os.listdir(eval_dir) if '.best-' in n] == []


def test_timeout_with_nothing_evaluated_is_an_error(tmp_path):
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    os.makedirs(train_dir)
    clock, sleep = _no_timeout_clock()
    with pytest.raises(watcher.NothingEvaluated, match='no checkpoint evaluated'):
        watcher.watch(
            _settings(),
            train_dir,
            eval_dir,
            interval_secs=1.0,
            timeout_secs=2.0,
            clock=clock,
            sleep=sleep,
        )
    lines = []
    for folder in ('nothing', 'train'):
        assert (
            watcher.wait_for_card(
                str(tmp_path / folder), 1.0, 2.0, log=lines.append, clock=clock, sleep=sleep
            )
            is False
        )
    # A mistyped folder waited for ever (no default timeout) without saying it is not there.
    assert lines == [
        f"[watch] waiting for the trainer's model card or first checkpoint in "
        f"{tmp_path / 'nothing'} (the folder does not exist yet: is it the trainer's --train_dir?)",
        f"[watch] waiting for the trainer's model card or first checkpoint in {train_dir}",
    ]
    # The script: a card, no checkpoint, a short timeout -> non-zero exit with the reason. With
    # --metrics=coco alone, best/ follows coco (the default --best_metric=voc07 was refused).
    from model import card as card_lib

    card_lib.write(os.path.join(train_dir, card_lib.CARD_FILE), _settings().card)
    proc = run_script(
        'eval_ssd_network.py',
        '--wait_for_checkpoints',
        f'--checkpoint_path={train_dir}',
        f'--eval_dir={eval_dir}',
        f'--dataset_dir={tmp_path}',
        '--dataset_name=custom',
        '--eval_interval_secs=0.2',
        '--eval_timeout=0.5',
        '--metrics=coco',
        '--input_cache_mb=0',  # a cache would be filled while waiting: from records not there
    )
    assert proc.returncode != 0
    assert 'no checkpoint evaluated' in proc.stderr and 'eval_timeout' in proc.stderr
    assert f'best/ (coco mAP) in {eval_dir}' in proc.stdout


# Runs eval_ssd_network.py as its `__main__` does (`logs.run`) once for each argument list of
# argv[1:] (JSON), in this one process; prints [[exit status, stderr], ...] as each run would
# have ended (a SystemExit message goes to stderr with status 1, as the interpreter ends on it).
EVAL_RUNS = r"""
import contextlib
import io
import json
import sys
from absl import flags
from tf_extended import logs
import eval_ssd_network

ended = []
for args in [json.loads(arg) for arg in sys.argv[1:]]:
    flags.FLAGS.unparse_flags()
    sys.argv = ['eval_ssd_network.py', *args]
    stderr = io.StringIO()
    code = None
    with contextlib.redirect_stderr(stderr):
        try:
            logs.run(eval_ssd_network.main, eval_ssd_network._interrupted)
        except SystemExit as exit_:
            code = exit_.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
    ended.append([code if isinstance(code, int) else int(code is not None), stderr.getvalue()])
print(json.dumps(ended))
"""


def test_watcher_flags_without_the_watcher_are_an_error(tmp_path):
    """--eval_timeout, --final_step (--max_number_of_steps), --eval_interval_secs,
    --best_metric and --input_cache_mb set the watcher: without --wait_for_checkpoints they were
    ignored silently (one evaluation, exit 0); --wait_for_checkpoints with an exported model
    too. (One process runs the script for each command: each ends before it reads or writes
    anything.)"""
    common = [f'--eval_dir={tmp_path / "eval"}', f'--dataset_dir={tmp_path}']
    once = [f'--checkpoint_path={tmp_path}', *common]
    watch = ['--wait_for_checkpoints', *common]
    runs = [
        (once + ['--eval_timeout=5'], '--eval_timeout set(s) the watcher'),
        (
            once + ['--max_number_of_steps=9'],
            '--final_step (--max_number_of_steps) set(s) the watcher',
        ),
        (
            once + ['--best_metric=voc12', '--eval_interval_secs=1'],
            '--eval_interval_secs, --best_metric set(s) the watcher',
        ),
        (once + ['--input_cache_mb=0'], '--input_cache_mb set(s) the watcher'),
        (
            watch + [f'--exported_model={tmp_path / "frozen_graph.pb"}'],
            'an exported model is evaluated once',
        ),
        # A --best_metric it would not evaluate: refused before it waits for the trainer (it was
        # "best_metric 'coco' must be one of the evaluated metrics ['voc07']", naming no flag).
        (
            watch + [f'--checkpoint_path={tmp_path}', '--metrics=voc07', '--best_metric=coco'],
            'eval_ssd_network: error: --best_metric=coco is not among the evaluated '
            '--metrics=voc07; add it to --metrics, or pick one of them.',
        ),
    ]
    proc = run_python(EVAL_RUNS, *(json.dumps(args) for args, _ in runs))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ended = json.loads(proc.stdout.splitlines()[-1])
    assert len(ended) == len(runs)
    for (args, message), (status, stderr) in zip(runs, ended):
        assert status == 1 and message in stderr, (args, stderr[-2000:])
    assert ended[-1][1].strip().splitlines()[-1] == runs[-1][1]
    assert not (tmp_path / 'eval').exists()


# ---------------------------------------------------------------------------------------------
# A stale training_finished.json with a later --final_step, the order of a copied folder, a
# restart with other evaluation settings.


def test_stale_finished_marker_does_not_stop_a_watcher_with_a_later_final_step(
    tmp_path, monkeypatch
):
    """A folder that finished at step 1600, extended by a new trainer run to 1640 (which removes
    the marker only once it has started): a watcher with --final_step=1640 stopped at once on the
    old marker ("the trainer finished at step 1600") and never evaluated 1610-1640."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (1200, 1600):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    checkpoints.mark_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir)['step'] == 1600
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    coming = [1610, 1620, 1630, 1640]
    clock = {'now': 0.0}

    def trainer_goes_on(seconds):
        clock['now'] += seconds
        if len(coming) == 3:
            checkpoints.clear_training_finished(train_dir)  # the new run, a few seconds in
        _fake_checkpoint(train_dir, coming.pop(0))

    lines = []
    entries = watcher.watch(
        _settings('a' * 32),
        train_dir,
        eval_dir,
        interval_secs=5.0,
        final_step=1640,
        log=lines.append,
        clock=lambda: clock['now'],
        sleep=trainer_goes_on,
    )
    assert [e['step'] for e in entries] == [1200, 1600, 1610, 1620, 1630, 1640]
    assert [step for step, *_ in calls] == [1200, 1600, 1610, 1620, 1630, 1640]
    assert clock['now'] == 20.0
    stale = [line for line in lines if 'before --final_step 1640' in line]
    assert len(stale) == 1 and 'finished at step 1600' in stale[0]
    assert 'at step 1640 (or when the trainer has finished at or after it)' in lines[0]
    assert lines[-1] == '[watch] final step 1640 reached (model.ckpt-1640); stopping.'

    # A marker before --final_step, nothing new: the watcher stops at its timeout, not at once.
    checkpoints.mark_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir)['step'] == 1640
    clock['now'] = 0.0
    later = dict(
        log=lines.append,
        clock=lambda: clock['now'],
        sleep=lambda s: clock.update(now=clock['now'] + s),
    )
    assert (
        watcher.watch(
            _settings('a' * 32),
            train_dir,
            eval_dir,
            interval_secs=1.0,
            timeout_secs=3.0,
            final_step=1700,
            **later,
        )
        == []
    )
    assert clock['now'] == 3.0 and 'no new checkpoint' in lines[-1]
    # A marker at (or after) --final_step still stops it, as without --final_step.
    clock['now'] = 0.0
    assert watcher.watch(_settings('a' * 32), train_dir, eval_dir, final_step=1640, **later) == []
    assert clock['now'] == 0.0
    assert 'the trainer finished at step 1640' in lines[-1]
    assert len(calls) == 6


def test_stale_finished_marker_stops_the_watcher_after_a_grace_period(tmp_path, monkeypatch):
    """With --final_step above where training really ended (a typo, a lowered
    --max_number_of_steps) and no --eval_timeout, a watcher waited forever on a marker of an
    earlier step; one whose checkpoint name has no step was stale forever. The same marker still
    there max(120 s, 2 x interval) after it was first seen, with no new checkpoint meanwhile,
    stops it; a new checkpoint in between starts the grace again."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (1200, 1600):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    checkpoints.mark_training_finished(train_dir)
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    clock = {'now': 0.0}
    lines = []

    def sleep(seconds):
        clock['now'] += seconds
        assert clock['now'] < 10_000, 'the watcher waits forever'

    run = dict(log=lines.append, clock=lambda: clock['now'], sleep=sleep)
    entries = watcher.watch(
        _settings('a' * 32), train_dir, eval_dir, interval_secs=5.0, final_step=1700, **run
    )
    assert [e['step'] for e in entries] == [1200, 1600]
    assert clock['now'] == 120.0
    assert lines[-1] == (
        '[watch] training_finished.json (the trainer finished at step 1600, model.ckpt-1600) is '
        'still there 120 s after it was first seen and no new checkpoint came: training ended '
        'before --final_step 1700; stopping.'
    )
    assert 'stopping if it is still there in 120 s' in lines[-2]

    # 2 x interval when that is longer; a new checkpoint (the marker still there) restarts it.
    clock['now'] = 0.0

    def one_more_at_100(seconds):
        sleep(seconds)
        if clock['now'] == 100.0:
            _fake_checkpoint(train_dir, 1650)

    run['sleep'] = one_more_at_100
    entries = watcher.watch(
        _settings('a' * 32), train_dir, eval_dir, interval_secs=100.0, final_step=1700, **run
    )
    assert [e['step'] for e in entries] == [1650]
    assert clock['now'] == 300.0  # 100 + 2 x 100, not 200
    assert 'still there 200 s after' in lines[-1] and 'finished at step 1600' in lines[-1]

    # A marker whose checkpoint has no step in its name (step -1) stops it too.
    other = str(tmp_path / 'other')
    os.makedirs(other)
    for suffix in ('.index', '.data-00000-of-00001'):
        with open(os.path.join(other, 'final' + suffix), 'w') as fh:
            fh.write('x')
    with open(os.path.join(other, checkpoints.FINISHED_MARKER), 'w') as fh:
        json.dump({'checkpoint': 'final', 'step': -1, 'time': 'now'}, fh)
    clock['now'] = 0.0
    run['sleep'] = sleep
    monkeypatch.setattr(
        evaluate.CheckpointEvaluator,
        'evaluate',
        lambda *args, **kwargs: types.SimpleNamespace(
            global_step=7,
            metrics={'voc07': None},  # no best/ to publish
            class_ap={},
            coco=None,
            seconds=0.01,
            summary={'images_per_second': 100.0},
        ),
    )
    entries = watcher.watch(
        _settings('a' * 32),
        other,
        str(tmp_path / 'eval-other'),
        interval_secs=5.0,
        final_step=10,
        **run,
    )
    assert [e['checkpoint'] for e in entries] == ['final'] and clock['now'] == 120.0
    assert 'step unknown (no step in its checkpoint name)' in lines[-1]
    assert 'before --final_step 10; stopping.' in lines[-1]
    assert watcher.STALE_MARKER_GRACE_SECS == 120.0


def test_metrics_in_another_order_are_the_same_settings(tmp_path, monkeypatch):
    """`--metrics=voc07,coco` then `coco,voc07` on the same --eval_dir refused the restart
    ("metrics ['voc07', 'coco'] -> ['coco', 'voc07']"): the ledger records them sorted, and
    entries written in flag order still match."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10, mtime=1010)
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    clock, sleep = _no_timeout_clock()
    run = dict(timeout_secs=0, log=print, clock=clock, sleep=sleep)
    first = dataclasses.replace(_settings('a' * 32), metrics=('voc07', 'coco'))
    assert watcher.results_settings(first)['metrics'] == ['coco', 'voc07']
    assert [e['step'] for e in watcher.watch(first, train_dir, eval_dir, **run)] == [10]
    assert _ledger_lines(eval_dir)[0]['settings']['metrics'] == ['coco', 'voc07']
    # An entry of the older version, in flag order.
    entries = _ledger_lines(eval_dir)
    entries[0]['settings']['metrics'] = ['voc07', 'coco']
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME), 'w') as fh:
        fh.writelines(json.dumps(e) + '\n' for e in entries)
    _fake_checkpoint(train_dir, 20, mtime=1020)
    swapped = dataclasses.replace(first, metrics=('coco', 'voc07'))
    assert [e['step'] for e in watcher.watch(swapped, train_dir, eval_dir, **run)] == [20]
    assert _ledger_lines(eval_dir)[-1]['settings']['metrics'] == ['coco', 'voc07']
    # Other metrics are still other settings.
    with pytest.raises(ValueError, match='--metrics=coco,voc07 -> --metrics=voc07'):
        watcher.watch(_settings('a' * 32), train_dir, eval_dir, **run)


def _event_steps(eval_dir):
    steps = []
    for path in sorted(glob.glob(os.path.join(eval_dir, 'events.out.tfevents.*'))):
        for event in tf.compat.v1.train.summary_iterator(path):
            if event.summary.value:
                steps.append(event.step)
    return steps


def test_copied_training_folder_is_handled_by_step(tmp_path, monkeypatch):
    """`cp -r` gives every file a new mtime in arbitrary order: handled by `.index` time, with
    --final_step=1615 the watcher evaluated 1610, 1615 and stopped (never 1200, 1600, 1605), and
    without it the TensorBoard steps came out of order."""
    train_dir = str(tmp_path / 'train')
    steps = [1200, 1600, 1605, 1610, 1615]
    for step in steps:
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    shuffled = {1610: 1000, 1615: 2000, 1200: 3000, 1605: 4000, 1600: 5000}
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    clock, sleep = _no_timeout_clock()
    for copy, final_step, card_id in (('copy1', 1615, 'a' * 32), ('copy2', None, '')):
        copied = str(tmp_path / copy)
        shutil.copytree(train_dir, copied)
        for step, mtime in shuffled.items():
            os.utime(os.path.join(copied, f'model.ckpt-{step}.index'), (mtime, mtime))
        eval_dir = str(tmp_path / f'eval-{copy}')
        del calls[:]
        lines = []
        entries = watcher.watch(
            _settings(card_id),
            copied,
            eval_dir,
            timeout_secs=0,
            final_step=final_step,
            log=lines.append,
            clock=clock,
            sleep=sleep,
        )
        assert [e['step'] for e in entries] == steps, copy
        assert [step for step, *_ in calls] == steps
        assert _event_steps(eval_dir) == steps
        with open(os.path.join(eval_dir, 'history.csv')) as fh:
            assert [int(r['step']) for r in csv.DictReader(fh)] == steps
        with open(os.path.join(eval_dir, 'best', 'best.json')) as fh:
            assert json.load(fh)['checkpoint'] == 'model.ckpt-1615'
        if final_step:
            assert lines[-1] == '[watch] final step 1615 reached (model.ckpt-1615); stopping.'

    # Without a card a checkpoint's run is its .index time: a new run rewriting two of them in
    # the copied folder gets those two evaluated again, by step; the others stay handled.
    for step, mtime in ((1610, 7000), (1605, 8000)):
        _fake_checkpoint(copied, step, mtime=mtime)
    del calls[:]
    entries = watcher.watch(
        _settings(''), copied, eval_dir, timeout_secs=0, log=print, clock=clock, sleep=sleep
    )
    assert [e['step'] for e in entries] == [1605, 1610]
    assert [step for step, *_ in calls] == [1605, 1610]
    # Beside the earlier run's results, which its ledger entries still name.
    assert [e['results_dir'] for e in entries] == [
        'model.ckpt-1605.run-nocard',
        'model.ckpt-1610.run-nocard',
    ]


def _ledger_lines(eval_dir):
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        return [json.loads(line) for line in fh]


def test_restart_with_other_evaluation_settings_refuses(tmp_path, monkeypatch):
    """A watcher restarted on the same --eval_dir with other evaluation settings took the
    checkpoints evaluated with the old ones as handled and mixed new results into history.csv
    and best/ (voc07 0.955 on 12 images, then 0.866 on 300: only the evaluation set changed)."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    calls = []
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate(calls))
    clock, sleep = _no_timeout_clock()
    run = dict(timeout_secs=0, log=print, clock=clock, sleep=sleep)
    settings = _settings('a' * 32)
    assert [e['step'] for e in watcher.watch(settings, train_dir, eval_dir, **run)] == [10, 20]
    _fake_checkpoint(train_dir, 30, mtime=1030)
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        ledger_before = fh.read()
    listing_before = sorted(os.listdir(eval_dir))
    detection = settings.card.detection
    for other, changed in (
        (
            dataclasses.replace(settings, dataset_split_name='val'),
            '--dataset_split_name=test -> --dataset_split_name=val',
        ),
        (
            dataclasses.replace(settings, dataset_dir=str(tmp_path / 'voc')),
            f"--dataset_dir={os.path.realpath('unused')} -> --dataset_dir={tmp_path / 'voc'}",
        ),
        (
            dataclasses.replace(settings, metrics=('voc07', 'voc12')),
            '--metrics=voc07 -> --metrics=voc07,voc12',
        ),
        (
            dataclasses.replace(
                settings, card=settings.card.with_detection(select_threshold=0.5, keep_top_k=20)
            ),
            # The card's or a flag's: named without a flag's dashes.
            f'select_threshold={detection.select_threshold} -> select_threshold=0.5, '
            f'keep_top_k={detection.keep_top_k} -> keep_top_k=20',
        ),
        (
            dataclasses.replace(settings, card=settings.card.with_detection(clip=True)),
            "the model card's clip=false -> the model card's clip=true",
        ),
        (
            dataclasses.replace(settings, remove_difficult=False),
            '--remove_difficult=true -> --remove_difficult=false',
        ),
        (
            dataclasses.replace(settings, moving_average_decay=0.999),
            'no --moving_average_decay -> --moving_average_decay=0.999',
        ),
    ):
        with pytest.raises(ValueError) as err:
            watcher.watch(other, train_dir, eval_dir, **run)
        message = str(err.value)
        assert '\n' not in message and message.startswith(f'{eval_dir}: ')
        assert changed in message, message
        assert 'the first of them: model.ckpt-10' in message and 'another --eval_dir' in message
        assert 'earlier settings' in message
    assert [step for step, *_ in calls] == [10, 20]
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        assert fh.read() == ledger_before
    assert sorted(os.listdir(eval_dir)) == listing_before

    # Every entry records the settings that change results, small and stable.
    first = _ledger_lines(eval_dir)[0]['settings']
    assert first == {
        'dataset_name': 'custom',
        'dataset_split_name': 'test',
        'dataset_dir': os.path.realpath('unused'),
        'max_images': None,
        'max_num_batches': None,
        'batch_size': 32,
        'matching_threshold': 0.5,
        'iou_rule': '>=',
        'eval_resize': 'WARP_RESIZE',
        'remove_difficult': True,
        'moving_average_decay': None,
        'metrics': ['voc07'],
        **dataclasses.asdict(detection),
        'compute_dtype': 'float32',
    }
    # What does not change results (threads, batch size without max_num_batches, PR curves),
    # or the same dataset folder spelled another way: the watcher goes on (the batch size is
    # recorded as given, not compared).
    dataset_dir = os.path.realpath('unused')
    monkeypatch.chdir(tmp_path)
    os.symlink(dataset_dir, 'data')
    same = dataclasses.replace(
        settings, dataset_dir='data', num_threads=1, batch_size=4, pr_curves=False
    )
    assert [e['step'] for e in watcher.watch(same, train_dir, eval_dir, **run)] == [30]
    assert _ledger_lines(eval_dir)[-1]['settings'] == dict(first, batch_size=4)
    # Another run in the folder (another card): its own history and best/, not refused.
    other_run = dataclasses.replace(_settings('b' * 32), dataset_split_name='val')
    assert [e['step'] for e in watcher.watch(other_run, train_dir, eval_dir, **run)] == [
        10,
        20,
        30,
    ]

    # Entries written before the settings were recorded match any settings.
    legacy = str(tmp_path / 'legacy')
    os.makedirs(legacy)
    with open(os.path.join(legacy, watcher.LEDGER_NAME), 'w') as fh:
        for entry in _ledger_lines(eval_dir)[:2]:
            del entry['settings']
            fh.write(json.dumps(entry) + '\n')
    moved = dataclasses.replace(settings, dataset_split_name='val')
    assert [e['step'] for e in watcher.watch(moved, train_dir, legacy, **run)] == [30]
    assert _ledger_lines(legacy)[-1]['settings']['dataset_split_name'] == 'val'


def _four_image_split(root):
    """EvalSettings (batches of 1, card id 'a' * 32) of a split of 4 images (synthetic shapes,
    trainval of 5)."""
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(
        str(root), num_images=5, seed=0, split='trainval'
    )
    card = eval_fixtures.small_card(MODEL, class_names, DEPTH).replace(card_id='a' * 32)
    return dataclasses.replace(
        eval_fixtures.custom_split_settings(card, records_dir, batch_size=1),
        dataset_split_name='trainval',
    )


def _settings_as_written_before(settings):
    """An entry's "settings" as the watcher wrote them before it recorded the images evaluated:
    max_num_batches (None: all) and, only with it, batch_size."""
    record = {
        'dataset_name': settings.dataset_name,
        'dataset_split_name': settings.dataset_split_name,
        'dataset_dir': os.path.realpath(settings.dataset_dir),
        'max_num_batches': settings.max_num_batches or None,
        'matching_threshold': settings.matching_threshold,
        'iou_rule': settings.iou_rule,
        'eval_resize': settings.eval_resize,
        'remove_difficult': settings.remove_difficult,
        'moving_average_decay': settings.moving_average_decay,
        'metrics': sorted(settings.metrics),
        **dataclasses.asdict(settings.card.detection),
        'compute_dtype': settings.card.compute_dtype,
    }
    if settings.max_num_batches:
        record['batch_size'] = settings.batch_size
    return record


def _rewrite_settings(eval_dir, settings):
    """The ledger's entries with `settings` (JSON), one line each as the watcher writes them."""
    entries = [dict(e, settings=settings) for e in _ledger_lines(eval_dir)]
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME), 'w') as fh:
        fh.writelines(json.dumps(e, sort_keys=True) + '\n' for e in entries)


def test_restart_evaluating_the_same_images_is_accepted(tmp_path, monkeypatch):
    """A watcher started with the older port's `--batch_size=1 --max_num_batches=500` on a split
    of 4 images, restarted with `--batch_size=1` alone, was refused ("max_num_batches 500 ->
    None, batch_size 1 -> unset"): 500 batches had covered every image, so the results are the
    same. The images evaluated are compared, not the flags; a refusal names the flags as given.
    The ledger of the first watch is one the watcher wrote before this change."""
    settings = _four_image_split(tmp_path / 'data')
    assert watcher.split_size(settings) == 4
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    _fake_checkpoint(train_dir, 10, mtime=1010)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    clock, sleep = _no_timeout_clock()
    run = dict(timeout_secs=0, log=print, clock=clock, sleep=sleep)
    older_port = dataclasses.replace(settings, max_num_batches=500)
    assert [e['step'] for e in watcher.watch(older_port, train_dir, eval_dir, **run)] == [10]
    _rewrite_settings(eval_dir, _settings_as_written_before(older_port))

    _fake_checkpoint(train_dir, 20, mtime=1020)
    assert [e['step'] for e in watcher.watch(settings, train_dir, eval_dir, **run)] == [20]
    recorded = _ledger_lines(eval_dir)[-1]['settings']
    assert (recorded['max_images'], recorded['max_num_batches'], recorded['batch_size']) == (
        None,
        None,
        1,
    )
    # Every image again, by other flags: 2 batches of 2, --max_num_batches=0 (all).
    for step, same in (
        (30, dataclasses.replace(settings, max_num_batches=2, batch_size=2)),
        (40, dataclasses.replace(settings, max_num_batches=0, batch_size=8)),
    ):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
        assert [e['step'] for e in watcher.watch(same, train_dir, eval_dir, **run)] == [step]

    # Two of the four images: refused, naming both in the flags' terms (the first entry is
    # the one written before the change).
    _fake_checkpoint(train_dir, 50, mtime=1050)
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        ledger_before = fh.read()
    with pytest.raises(ValueError) as err:
        watcher.watch(dataclasses.replace(settings, max_num_batches=2), train_dir, eval_dir, **run)
    message = str(err.value)
    assert (
        'other settings (all 4 images of the split (--max_num_batches=500 --batch_size=1) -> the '
        'first 2 images (--max_num_batches=2 --batch_size=1); the first of them: model.ckpt-10)'
    ) in message, message
    assert 'unset' not in message
    with open(os.path.join(eval_dir, watcher.LEDGER_NAME)) as fh:
        assert fh.read() == ledger_before

    # A ledger of two images (before the change), then all four: refused; the same two images
    # in batches of 2: accepted.
    two = str(tmp_path / 'eval-two')
    first_two = dataclasses.replace(settings, max_num_batches=2)
    assert [e['step'] for e in watcher.watch(first_two, train_dir, two, final_step=10, **run)] == [
        10
    ]
    _rewrite_settings(two, _settings_as_written_before(first_two))
    with pytest.raises(ValueError) as err:
        watcher.watch(settings, train_dir, two, final_step=20, **run)
    message = str(err.value)
    assert (
        'other settings (the first 2 images (--max_num_batches=2 --batch_size=1) -> all 4 images '
        'of the split (no --max_num_batches); the first of them: model.ckpt-10)'
    ) in message, message
    other_batches = dataclasses.replace(settings, max_num_batches=1, batch_size=2)
    entries = watcher.watch(other_batches, train_dir, two, final_step=20, **run)
    assert [e['step'] for e in entries] == [20]
    # The split's size is read only where the images differ: an unreadable split is its error.
    gone = dataclasses.replace(settings, dataset_dir=str(tmp_path / 'data' / 'records'))
    shutil.rmtree(gone.dataset_dir)
    with pytest.raises(FileNotFoundError, match='no files match'):
        watcher.watch(gone, train_dir, two, **run)


WATCH_ARGS = (
    '--wait_for_checkpoints',
    '--dataset_name=custom',
    '--dataset_split_name=trainval',
    '--metrics=voc07',
    '--eval_timeout=0',
    '--input_cache_mb=0',
)


def test_the_script_accepts_a_restart_on_the_same_images(tmp_path, monkeypatch):
    """The user's commands: a watcher's ledger of `--batch_size=1 --max_num_batches=500` on 4
    images (as the watcher wrote it before this change), then eval_ssd_network.py with
    `--batch_size=1` alone goes on; with `--max_num_batches=2` it is refused, naming the flags
    given in both."""
    from model import card as card_lib

    settings = _four_image_split(tmp_path / 'data')
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'logs' / 'eval_w')
    _fake_checkpoint(train_dir, 10, mtime=1010)
    card_lib.write(os.path.join(train_dir, card_lib.CARD_FILE), settings.card)
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    older_port = dataclasses.replace(settings, max_num_batches=500)
    assert [e['step'] for e in watcher.watch(older_port, train_dir, eval_dir, timeout_secs=0)] == [
        10
    ]
    _rewrite_settings(eval_dir, _settings_as_written_before(older_port))
    args = (
        'eval_ssd_network.py',
        *WATCH_ARGS,
        f'--checkpoint_path={train_dir}',
        f'--eval_dir={eval_dir}',
        f'--dataset_dir={settings.dataset_dir}',
        '--batch_size=1',
    )
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'[watch] no new checkpoint in {train_dir} for 0 s; stopping.' in proc.stdout
    proc = run_script(*args, '--max_num_batches=2')
    assert proc.returncode == 1
    assert (
        f'error: {eval_dir}: its eval_ledger.jsonl holds checkpoints of this run evaluated with '
        'other settings (all 4 images of the split (--max_num_batches=500 --batch_size=1) -> the '
        'first 2 images (--max_num_batches=2 --batch_size=1); the first of them: model.ckpt-10)'
    ) in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize(
    'signum, status, stopped',
    [
        (signal.SIGINT, 130, 'interrupted'),
        # A scheduler's stop: it killed the watcher at once, no line, its lock file left behind.
        (signal.SIGTERM, -signal.SIGTERM, 'terminated (SIGTERM)'),
    ],
)
def test_ctrl_c_or_sigterm_before_any_evaluation_says_nothing_was_evaluated(
    tmp_path, signum, status, stopped
):
    """Ctrl-C on a watcher waiting for the trainer said 'the checkpoints evaluated so far are in
    logs/w3 (eval_ledger.jsonl)': nothing was evaluated, and logs/w3 (made for its lock) was
    gone."""
    eval_dir = tmp_path / 'logs' / 'w3'
    lock = eval_dir / watcher.LOCK_NAME
    seen = []

    def waiting():
        # The lock taken and its holder written: the script waits for the trainer's card.
        if not seen and lock.exists() and lock.read_text().strip():
            seen.append(time.time())
        return bool(seen) and time.time() - seen[0] > 1.0

    ended, lines = interrupt_when(
        [
            os.path.join(ROOT, 'eval_ssd_network.py'),
            *WATCH_ARGS[:3],
            f'--checkpoint_path={tmp_path / "train"}',
            f'--eval_dir={eval_dir}',
            f'--dataset_dir={tmp_path / "records"}',
            '--eval_interval_secs=0.2',
        ],
        waiting,
        signum=signum,
    )
    assert ended == status, lines[-20:]
    assert lines[-1:] == [
        f'eval_ssd_network: {stopped}; no checkpoint was evaluated; run the same command to '
        'watch again'
    ], lines[-5:]
    assert not (tmp_path / 'logs').exists()


INTERRUPTED_LINE = r"""
import sys
import eval_ssd_network
eval_ssd_network.FLAGS(['eval', '--wait_for_checkpoints', '--checkpoint_path=train',
                        '--dataset_dir=records', '--eval_dir=unset'])
for eval_dir in sys.argv[1:]:
    eval_ssd_network.FLAGS.eval_dir = eval_dir
    print(eval_ssd_network._interrupted())
"""


def test_the_interrupt_line_points_at_evaluated_checkpoints_only(tmp_path):
    """The interrupt line names the ledger where it holds an evaluated checkpoint (unchanged);
    no folder, or a ledger of checkpoints deleted before they could be evaluated: nothing was
    evaluated."""
    unavailable, evaluated = tmp_path / 'unavailable', tmp_path / 'evaluated'
    entry = {'checkpoint': 'model.ckpt-10', 'status': watcher.UNAVAILABLE, 'reason': 'deleted'}
    for folder, entries in (
        (unavailable, [entry]),
        (
            evaluated,
            [
                entry,
                dict(
                    entry,
                    checkpoint='model.ckpt-20',
                    status=watcher.EVALUATED,
                    step=20,
                    metrics={'voc07': 0.5},
                    class_ap={'voc07': {'cat': 0.5}},
                ),
            ],
        ),
    ):
        folder.mkdir()
        (folder / watcher.LEDGER_NAME).write_text(''.join(json.dumps(e) + '\n' for e in entries))
    proc = run_python(INTERRUPTED_LINE, str(tmp_path / 'missing'), str(unavailable), str(evaluated))
    nothing = 'no checkpoint was evaluated; run the same command to watch again'
    assert proc.stdout.splitlines() == [
        nothing,
        nothing,
        f'the checkpoints evaluated so far are in {evaluated} (eval_ledger.jsonl); run the same '
        'command to go on with the next one',
    ], proc.stderr[-2000:]


@pytest.mark.parametrize('maps,top', [((0.012, 0.0157), 1.884), ((0.5, 0.9), 100.0), ((0.0,), 1.0)])
def test_history_plot_scales_to_the_values(tmp_path, monkeypatch, maps, top):
    """history.png's mAP axis ran 0-100 whatever the values: an early run's 1.6 % was flat."""
    from matplotlib.figure import Figure

    shown = []
    monkeypatch.setattr(
        Figure, 'savefig', lambda fig, *a, **k: shown.append(fig.axes[0].get_ylim())
    )
    ledger = watcher.Ledger(str(tmp_path))
    for step, value in enumerate(maps):
        entry = {'checkpoint': f'model.ckpt-{step}', 'status': watcher.EVALUATED, 'step': step}
        ledger.append(dict(entry, metrics={'voc07': value}, class_ap={}))
    watcher.write_history(ledger, str(tmp_path), best_metric='voc07')
    assert shown == [(0.0, pytest.approx(top))]


def _dead_pid():
    done = subprocess.run(
        [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
    )
    return int(done.stdout)


def test_start_up_cleanup_removes_only_the_watchers_own_stale_temporaries(tmp_path):
    """Audit finding: the start-up cleanup removed temporary folders of any label, `.staged-*`
    folders of checkpoint-like files and older versions' temporary file names (a user's
    `.history.csv.backup01`), some silently."""
    from tf_extended import atomic_io

    eval_dir = tmp_path / 'eval'
    pid, host = _dead_pid(), atomic_io.host_tag()
    ours = [f'.{label}.tmp-{pid}@{host}-abcdefgh' for label in ('best-new', 'staged', 'staging')]
    kept = [
        f'.drafts.tmp-{pid}@{host}-abcdefgh',  # another tool's label
        f'.staged.tmp-{pid}@elsewhere-abcdefgh',  # another host's
        f'.staged.tmp-{os.getpid()}@{host}-abcdefgh',  # a live process's
        'mine',
    ]
    for name in ours + kept + [f'mine/.drafts.tmp-{pid}@{host}-abcdefgh']:
        (eval_dir / name).mkdir(parents=True)
        (eval_dir / name / 'x').write_text('x')
    (eval_dir / '.staged-notes').mkdir()
    for name in ('a.index', 'a.data-00000-of-00001'):
        (eval_dir / '.staged-notes' / name).write_text('mine')
    legacy = [
        '.eval_ledger.jsonl.abcd1234',
        '.history.csv.backup01',
        f'.history.csv.tmp-{pid}-abcdefgh',
        '.history.png.tmp',
    ]
    for name in legacy:
        (eval_dir / name).write_text('mine')
    orphan = eval_dir / f'.eval_ledger.jsonl.tmp-{pid}@{host}-abcdefgh'
    orphan.write_text('{')
    results = eval_dir / 'model.ckpt-10'
    (results / f'.staging.tmp-{pid}@{host}-abcdefgh').mkdir(parents=True)

    lines = []
    watcher._clean_up_after_kill(str(eval_dir), lines.append)
    assert sorted(os.listdir(eval_dir)) == sorted(kept + legacy + ['.staged-notes'])
    assert sorted(os.listdir(eval_dir / 'mine')) == [f'.drafts.tmp-{pid}@{host}-abcdefgh', 'x']
    assert sorted(os.listdir(eval_dir / '.staged-notes')) == ['a.data-00000-of-00001', 'a.index']
    assert lines == [
        f'[watch] removed {eval_dir / name}, left by a watcher or evaluation that was killed '
        f'(process {pid})'
        for name in ours
    ] + [
        f'[watch] removed {orphan}, left by a watcher that was killed while writing '
        'eval_ledger.jsonl',
        '[watch] not removing .eval_ledger.jsonl.abcd1234, .history.csv.backup01, '
        f'.history.csv.tmp-{pid}-abcdefgh, .history.png.tmp, .staged-notes in {eval_dir}: named '
        'like the temporary files that a '
        'killed watcher of an older version left, but they could be yours; remove them by hand '
        'if they are not.',
        f'[watch] removed {results}/.staging.tmp-{pid}@{host}-abcdefgh, left by an interrupted '
        f'run (process {pid})',
        f'[watch] removed {results}, empty once that staging folder was removed',
    ]


def test_a_best_json_listing_a_users_file_does_not_get_it_deleted(tmp_path, monkeypatch):
    """Audit finding: a best/best.json whose "files" listed notes.txt got best/notes.txt deleted
    when best/ was replaced."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    best_dir = os.path.join(eval_dir, 'best')
    for step in (10, 20):
        _fake_checkpoint(train_dir, step, mtime=1000 + step)
    fake = _fake_evaluate([])

    def plant_at_20(evaluator, prefix, results_dir, **kwargs):
        if prefix.endswith('-20'):
            with open(os.path.join(best_dir, 'notes.txt'), 'w') as fh:
                fh.write('mine')
            with open(os.path.join(best_dir, 'best.json')) as fh:
                best = json.load(fh)
            with open(os.path.join(best_dir, 'best.json'), 'w') as fh:
                json.dump(dict(best, files=best['files'] + ['notes.txt']), fh)
        return fake(evaluator, prefix, results_dir, **kwargs)

    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', plant_at_20)
    lines = []
    entries = watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0, log=lines.append)
    assert [e['step'] for e in entries] == [10, 20]
    assert (
        f'[watch] not updating {best_dir}: it holds files the watcher did not write '
        '(notes.txt); move them away.'
    ) in lines
    with open(os.path.join(best_dir, 'notes.txt')) as fh:
        assert fh.read() == 'mine'
    with open(os.path.join(best_dir, 'best.json')) as fh:
        assert json.load(fh)['checkpoint'] == 'model.ckpt-10'
    _fake_checkpoint(train_dir, 30)
    with pytest.raises(ValueError) as info:
        watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0)
    assert str(info.value) == (
        f'{best_dir} holds files the watcher did not write (notes.txt); the watcher replaces '
        'best/ and would delete them. Move them away.'
    )
    with open(os.path.join(best_dir, 'notes.txt')) as fh:
        assert fh.read() == 'mine'


@pytest.mark.parametrize('listed', [True, False], ids=['files-listed', 'older-version'])
def test_best_files_are_the_watchers_only_by_their_names(tmp_path, listed):
    """What best.json lists (or, for an older version, all of best/) is the watcher's only where
    it is a regular file of a name the watcher gives: its checkpoint's files, the card, the
    state file, best.json and an evaluation's outputs in results/."""
    best_dir = tmp_path / 'best'
    own = [
        'best.json',
        'checkpoint',
        'model.json',
        'model.ckpt-10.index',
        'model.ckpt-10.data-00000-of-00001',
        'results/results.json',
        'results/pr_curves/pr_cat.png',
    ]
    others = [
        'model.ckpt-99.index',
        'model.ckpt-10.index.txt',
        'model.ckpt-10.data-0-of-1',
        'notes.txt',
        'results/notes.txt',
        'results/x/results.txt',
    ]
    # Named as the watcher names its files, but not in the list of those it wrote.
    unlisted = 'model.ckpt-10.data-00001-of-00002'
    for name in own + others + [unlisted]:
        (best_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (best_dir / name).write_text('x')
    (tmp_path / 'elsewhere.txt').write_text('mine')
    (best_dir / 'results' / 'comp4_det_test_cat.txt').symlink_to(tmp_path / 'elsewhere.txt')
    everything = own + others + ['results/comp4_det_test_cat.txt']
    best = {'checkpoint': 'model.ckpt-10'}
    if listed:
        best['files'] = [name for name in everything if name != 'notes.txt']
    (best_dir / 'best.json').write_text(json.dumps(best))
    assert watcher.foreign_files(str(best_dir)) == sorted(
        others + ['results/comp4_det_test_cat.txt'] + ([unlisted] if listed else [])
    )


def test_results_folder_that_is_a_symlink_or_holds_foreign_outputs_is_not_used(
    tmp_path, monkeypatch
):
    """A checkpoint's results folder in eval_dir that is a symlink (publishing would write where
    it leads), or whose results.json of this checkpoint does not list a file of an output's name
    there: the results go to `<name>.run-<id>`, nothing of them is touched."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    prefixes = [_fake_checkpoint(train_dir, step, mtime=1000 + step) for step in (10, 20)]
    os.makedirs(eval_dir)
    summary = {'global_step': 0, 'settings': {'model_card': {'card_id': ''}}}
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    (elsewhere / 'results.json').write_text(json.dumps(dict(summary, checkpoint=prefixes[0])))
    os.symlink(elsewhere, os.path.join(eval_dir, 'model.ckpt-10'))
    held = tmp_path / 'eval' / 'model.ckpt-20'
    held.mkdir()
    (held / 'results.json').write_text(
        json.dumps(dict(summary, checkpoint=prefixes[1], output_files=['results.json']))
    )
    (held / 'comp4_det_test_cat.txt').write_text('mine')
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    lines = []
    entries = watcher.watch(_settings(), train_dir, eval_dir, timeout_secs=0, log=lines.append)
    assert [e['results_dir'] for e in entries] == [
        'model.ckpt-10.run-nocard',
        'model.ckpt-20.run-nocard',
    ]
    for name in ('model.ckpt-10', 'model.ckpt-20'):
        assert (
            f'[watch] {os.path.join(eval_dir, name)} holds other results; this one goes to '
            f'{os.path.join(eval_dir, name)}.run-nocard'
        ) in lines
    assert sorted(os.listdir(elsewhere)) == ['results.json']
    assert sorted(os.listdir(held)) == ['comp4_det_test_cat.txt', 'results.json']


@pytest.mark.parametrize('card_id', ['/../../.', '..', ['x']])
def test_card_ids_not_of_letters_and_digits_name_no_folder_outside_eval_dir(
    tmp_path, monkeypatch, card_id
):
    """The run's card id, and another run's in best/best.json (files handed to us), become
    `.run-id-<digest>` names: '/../../.' put the results and best/'s copy in eval_dir's parent
    (copied into itself until ENAMETOOLONG), '/../../x' moved best/ to the parent's x, a list
    was an AttributeError."""
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'parent' / 'eval')
    _fake_checkpoint(train_dir, 10, mtime=1010)
    (tmp_path / 'parent' / 'eval' / 'model.ckpt-10').mkdir(parents=True)
    (tmp_path / 'parent' / 'eval' / 'model.ckpt-10' / 'notes.txt').write_text('mine')
    best_dir = os.path.join(eval_dir, 'best')
    os.makedirs(best_dir)
    with open(os.path.join(best_dir, 'best.json'), 'w') as fh:
        json.dump({'checkpoint': 'x', 'files': ['best.json'], 'run': {'card_id': card_id}}, fh)
    settings = _settings()
    settings = dataclasses.replace(settings, card=settings.card.replace(card_id=str(card_id)))
    monkeypatch.setattr(evaluate.CheckpointEvaluator, 'evaluate', _fake_evaluate([]))
    lines = []
    entries = watcher.watch(settings, train_dir, eval_dir, timeout_secs=0, log=lines.append)
    assert sorted(os.listdir(tmp_path / 'parent')) == ['eval']
    [results_dir] = [e['results_dir'] for e in entries]
    assert re.fullmatch(r'model\.ckpt-10\.run-id-[0-9a-f]{8}', results_dir)
    [kept] = [n for n in os.listdir(eval_dir) if n.startswith('best.')]
    assert re.fullmatch(r'best\.run-id-[0-9a-f]{8}', kept)
    assert (
        f'[watch] {best_dir} held the best checkpoint of another run (None, card {card_id}); '
        f'kept it as {eval_dir}/{kept}'
    ) in lines
    assert sorted(n for n in os.listdir(eval_dir) if not n.startswith('events.out')) == sorted(
        ['.ssd.lock', 'best', kept, 'eval_ledger.jsonl', 'history.csv', 'history.png']
        + ['model.ckpt-10', results_dir]
    )
    with open(os.path.join(best_dir, 'best.json')) as fh:
        assert json.load(fh)['results_dir'] == results_dir
