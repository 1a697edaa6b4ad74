"""The checkpoint watcher: a backlog and checkpoints appearing over time are each evaluated once,
oldest first; deleted checkpoints (before or during their evaluation) are skipped or survive;
a restart resumes from the ledger; the best checkpoint, history, timeout and final step work."""
import csv
import glob
import json
import os

import pytest
import tensorflow as tf

from model import checkpoints
from evaluation import evaluate
from tests import eval_fixtures
from evaluation import watcher

MODEL = 'ssd_300_mobilenet'
DEPTH = 0.25


def _delete(prefix):
    for path in glob.glob(prefix + '.*'):
        os.remove(path)


def test_watcher_backlog_deletions_restart_best_and_timeout(tmp_path, monkeypatch):
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(str(tmp_path), num_images=8, seed=5)
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    num_classes = len(class_names) + 1

    def write(step, seed):
        return eval_fixtures.write_random_checkpoint(os.path.join(train_dir, 'model.ckpt'), MODEL, num_classes,
                                                    step, seed=seed, depth_multiplier=DEPTH)

    backlog = [write(10, 1), write(20, 2), write(30, 3)]
    card = eval_fixtures.small_card(MODEL, class_names, DEPTH, keep_top_k=1000, nms_threshold=0.9)
    settings = evaluate.EvalSettings(card=card, dataset_name='custom', dataset_split_name='test',
                                     dataset_dir=records_dir, batch_size=2, num_threads=1,
                                     pr_curves=False)
    original = evaluate.evaluate_checkpoint
    evaluated = []

    def evaluate_like_a_trainer_deletes(settings, prefix, results_dir, **kwargs):
        evaluated.append(os.path.basename(prefix))
        if evaluated[-1] == 'model.ckpt-20':
            _delete(backlog[1])  # deleted during its own evaluation (after staging)
            _delete(backlog[2])  # deleted before its evaluation
        return original(settings, prefix, results_dir, **kwargs)

    monkeypatch.setattr(evaluate, 'evaluate_checkpoint', evaluate_like_a_trainer_deletes)
    clock = {'now': 0.}
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        clock['now'] += seconds
        if len(sleeps) == 1:
            write(40, 4)  # a checkpoint appearing while the watcher waits

    lines = []
    entries = watcher.watch(settings, train_dir, eval_dir, interval_secs=5., timeout_secs=12.,
                            log=lines.append, clock=lambda: clock['now'], sleep=sleep)
    assert [(e['checkpoint'], e['status']) for e in entries] == [
        ('model.ckpt-10', 'evaluated'), ('model.ckpt-20', 'evaluated'), ('model.ckpt-30', 'unavailable'),
        ('model.ckpt-40', 'evaluated')]
    assert evaluated == ['model.ckpt-10', 'model.ckpt-20', 'model.ckpt-40']
    assert any('skipping model.ckpt-30' in line for line in lines)
    # Idle after ckpt-40: sleeps of 5, 5, 2 reach the 12 s timeout.
    assert sleeps == [5., 5., 5., 2.] and 'stopping' in lines[-1]

    # Restart: nothing repeated; a new checkpoint with the final step is evaluated, then it stops.
    write(50, 5)
    entries = watcher.watch(settings, train_dir, eval_dir, interval_secs=5., timeout_secs=None, final_step=50,
                            log=lines.append, sleep=lambda s: pytest.fail('should stop at the final step'))
    assert [e['checkpoint'] for e in entries] == ['model.ckpt-50']
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
    for row, e in zip(rows, done):
        assert float(row['voc07_mAP']) == e['metrics']['voc07']
        name = class_names[0]
        ap = e['class_ap']['voc12'][name]
        assert row[f'voc12_AP_{name}'] == ('' if ap is None else repr(ap))
    assert os.path.isfile(os.path.join(eval_dir, 'history.png'))
    assert not [n for n in os.listdir(eval_dir) if n.startswith('.')]


def test_list_checkpoints_reads_state_file_and_index_files_oldest_first(tmp_path):
    paths = {}
    for step, mtime in ((300, 1000), (20, 2000), (100, 3000)):
        prefix = str(tmp_path / f'model.ckpt-{step}')
        for suffix in ('.index', '.data-00000-of-00001'):
            with open(prefix + suffix, 'w') as fh:
                fh.write('x')
        os.utime(prefix + '.index', (mtime, mtime))
        paths[step] = prefix
    # The state file names one more checkpoint (relative path) and one that no longer exists.
    other = tmp_path / 'sub'
    other.mkdir()
    for suffix in ('.index', '.data-00000-of-00001'):
        (other / f'm-7{suffix}').write_text('x')
    os.utime(other / 'm-7.index', (4000, 4000))
    (tmp_path / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-100"\n'
                                         'all_model_checkpoint_paths: "sub/m-7"\n'
                                         'all_model_checkpoint_paths: "model.ckpt-5"\n')
    assert watcher.list_checkpoints(str(tmp_path)) == [paths[300], paths[20], paths[100], str(other / 'm-7')]


def test_ledger_names_a_corrupt_line(tmp_path):
    (tmp_path / watcher.LEDGER_NAME).write_text('{"checkpoint": "a", "status": "evaluated"}\nnot json\n')
    with pytest.raises(ValueError, match=r'eval_ledger.jsonl:2'):
        watcher.Ledger(str(tmp_path))


def test_watcher_stops_when_the_trainer_has_finished(tmp_path):
    """training_finished.json naming a handled checkpoint stops the watcher (no timeout, no final
    step); the trainer writes it, tests/test_train_run.py checks that side."""
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(str(tmp_path), num_images=4, seed=6)
    train_dir, eval_dir = str(tmp_path / 'train'), str(tmp_path / 'eval')
    for step in (10, 20):
        eval_fixtures.write_random_checkpoint(os.path.join(train_dir, 'model.ckpt'), MODEL,
                                             len(class_names) + 1, step, seed=step,
                                             depth_multiplier=DEPTH)
    checkpoints.mark_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir)['checkpoint'] == 'model.ckpt-20'
    settings = evaluate.EvalSettings(card=eval_fixtures.small_card(MODEL, class_names, DEPTH),
                                     dataset_name='custom', dataset_split_name='test',
                                     dataset_dir=records_dir, batch_size=2, num_threads=1,
                                     metrics=('voc07',), pr_curves=False)
    lines = []
    entries = watcher.watch(settings, train_dir, eval_dir, log=lines.append,
                            sleep=lambda s: pytest.fail('should stop: the trainer has finished'))
    assert [e['checkpoint'] for e in entries] == ['model.ckpt-10', 'model.ckpt-20']
    assert 'the trainer finished at step 20' in lines[-1]
    # A resumed run removes the marker: the watcher waits again (until its timeout here).
    checkpoints.clear_training_finished(train_dir)
    assert checkpoints.training_finished(train_dir) is None
    clock = {'now': 0.}

    def sleep(seconds):
        clock['now'] += seconds
    assert watcher.watch(settings, train_dir, eval_dir, interval_secs=1., timeout_secs=3.,
                         log=lines.append, clock=lambda: clock['now'], sleep=sleep) == []
    assert clock['now'] == 3. and 'no new checkpoint' in lines[-1]
