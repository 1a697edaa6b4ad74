"""train_ssd_network.py end to end, as subprocesses, on a tiny synthetic dataset.

ssd_300_mobilenet at depth multiplier 0.25, batch 2, a few steps: the loss goes down and the
checkpoint restores into an eval graph; mixed precision follows fp32 step by step (that run is
ended by Ctrl-C, which must say what was kept); a diverging run stops at a NaN/inf without saving
it, and its first step shows --negative_ratio reaching the loss; SIGKILL at fixed points in and
around a checkpoint save, and SIGTERM, then restart, resume exactly; 1 ps + 2 workers train
synchronously.

A training run costs seconds of graph building and session start whatever its step count: each
run here checks what no other can, and the runs that resume share folders.
"""

import os
import re
import shutil
import signal
import time
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from evaluation import evaluate
from model import card as card_lib
from model import checkpoints
from tests import script_server
from tests.conftest import (
    TINY_TRAIN_FLAGS,
    free_ports,
    interrupt_when,
    script_env,
    synthetic_voc_records,
    training_graph_text,
)
from training import hooks
from training import trainer
from tf_extended import folder_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_LINE = hooks.LOG_LINE  # the trainer's step line: step and name=value loss terms
v1 = tf.compat.v1


@pytest.fixture(scope='session')
def dataset_dir():
    """8 synthetic images as pascalvoc_2007 train records (what `python -m datasets.synthetic
    --num_images=8` then tf_convert_data.py write), shared by the workers and test files."""
    return str(synthetic_voc_records() / 'records')


def _args(dataset_dir, train_dir, *extra):
    """train_ssd_network.py and its flags (`python` left out: tests/script_server.py)."""
    return [
        os.path.join(ROOT, 'train_ssd_network.py'),
        '--train_dir=%s' % train_dir,
        '--dataset_dir=%s' % dataset_dir,
        '--dataset_name=pascalvoc_2007',
        '--dataset_split_name=train',
        *TINY_TRAIN_FLAGS,
        '--log_every_n_steps=1',
        *extra,
    ]


def _run(args, timeout=240, **env):
    return script_server.run(args, ROOT, script_env(**env), timeout)


def _losses(output):
    """step -> {term: value} from the log lines."""
    losses = {}
    for step, terms in LOG_LINE.findall(output):
        losses[int(step)] = {k: float(v) for k, v in (t.split('=') for t in terms.split())}
    return losses


def _step(prefix):
    return int(tf.train.load_checkpoint(prefix).get_tensor('global_step'))


def _tensors(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope='module')
def fp32_run(dataset_dir, tmp_path_factory):
    train_dir = str(tmp_path_factory.mktemp('fp32'))
    result = _run(
        _args(
            dataset_dir,
            train_dir,
            '--max_number_of_steps=30',
            '--save_interval_steps=100',
            '--learning_rate_decay_type=fixed',
        )
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return train_dir, _losses(result.stderr), result.stderr


def test_short_run_lowers_loss_and_restores_in_eval_graph(fp32_run):
    """30 steps: the loss goes down, the step lines' rate is in TensorBoard, the checkpoint
    restores into an eval graph."""
    from nets import nets_factory

    train_dir, losses, stderr = fp32_run
    # From scratch, 30 steps at the default decay 0.997 keep 91 % of the moving statistics' start
    # values: said, with the count of batch-norm layers the checkpoint holds.
    layers = sum(
        1
        for name in _tensors(os.path.join(train_dir, 'model.ckpt-30'))
        if name.endswith('/moving_variance')
    )
    assert (
        f'--batch_norm_decay=0.997 over 30 steps: the moving means and variances of {layers} '
        'batch-norm layer(s) start from 0 and 1 and keep 91% of those at the end;'
    ) in stderr
    assert layers > 20
    assert sorted(losses) == list(range(1, 31))
    first = np.mean([losses[s]['total'] for s in range(1, 6)])
    last = np.mean([losses[s]['total'] for s in range(26, 31)])
    assert last < 0.8 * first, (first, last)
    prefix = checkpoints.resolve_checkpoint(train_dir)
    assert prefix.endswith('model.ckpt-30') and _step(prefix) == 30
    # Each line's rate in TensorBoard, as TF-Slim and TF-OD-API users read it: global_step/sec,
    # and images/sec at the batch of 2, what the line says.
    logged = {
        int(m[1]): float(m[2]) for m in re.finditer(r'step (\d+)/30 .* ([\d.]+) images/s', stderr)
    }
    (events,) = [n for n in os.listdir(train_dir) if n.startswith('events.out.tfevents')]
    rates = {}
    for event in v1.train.summary_iterator(os.path.join(train_dir, events)):
        for value in event.summary.value:
            rates.setdefault(event.step, {})[value.tag] = value.simple_value
    rates = {step: r for step, r in rates.items() if 'global_step/sec' in r}
    assert sorted(rates) == sorted(logged) and len(logged) >= 28
    for step, rate in rates.items():
        assert rate['images/sec'] == pytest.approx(2 * rate['global_step/sec'], rel=1e-6)
        assert round(rate['images/sec'], 1) == pytest.approx(logged[step], abs=0.051)
    finished = checkpoints.training_finished(train_dir)  # for the eval watcher
    assert (finished['checkpoint'], finished['step']) == ('model.ckpt-30', 30)
    saved = _tensors(prefix)
    with tf.Graph().as_default():
        _, network_fn = nets_factory.get_network_fn(
            'ssd_300_mobilenet', 7, is_training=False, depth_multiplier=0.25
        )
        predictions, _, _, _ = network_fn(tf.random.uniform([1, 300, 300, 3], -1.0, 1.0))
        variables = slim.get_model_variables()
        with v1.Session() as sess:
            v1.train.Saver(variables).restore(sess, prefix)
            values, scores = sess.run([variables, predictions])
    for variable, value in zip(variables, values):
        np.testing.assert_array_equal(value, saved[variable.op.name])
    assert all(np.isfinite(s).all() for s in scores)


MIXED_STEPS = 12
MIXED_FLAGS = ('--mixed_precision', '--learning_rate_decay_type=fixed')


@pytest.fixture(scope='module')
def mixed_run(dataset_dir, tmp_path_factory):
    """The fp32 run's flags with MIXED_FLAGS, no step limit and no checkpoint after the starting
    point's, interrupted by SIGINT (what Ctrl-C sends) once step MIXED_STEPS is logged: (train
    dir, exit status, stderr lines)."""
    train_dir = tmp_path_factory.mktemp('mixed')
    args = _args(
        dataset_dir,
        str(train_dir),
        *MIXED_FLAGS,
        '--max_number_of_steps=100000',
        '--save_interval_steps=100000',
    )
    status, lines = interrupt_when(args, f'step {MIXED_STEPS}/')
    return train_dir, status, lines


def _kept_step(lines):
    """The step of the checkpoint an interrupted run's last line says is kept."""
    return int(lines[-1].split('model.ckpt-')[1].split(' ')[0])


def test_mixed_precision_follows_fp32(fp32_run, mixed_run):
    """Seeded runs see the same batches: bf16 losses track the fp32 run's step by step. Measured
    (2-core CPU): step 1 within 4 % per term; mixed / fp32 total over steps 8-12 0.98 on average,
    each within 10 %; the totals drop 17 % (fp32) and 20 % (mixed) from steps 1-5 to steps 8-12.
    A mixed run whose updates do not reach the weights: ratios 1.06-1.51 (mean 1.30), no drop."""
    _, fp32_losses, _ = fp32_run
    train_dir, _, lines = mixed_run
    mixed = _losses('\n'.join(lines))
    # Steps logged after MIXED_STEPS, before the interrupt took effect, are not compared.
    assert sorted(mixed)[:MIXED_STEPS] == list(range(1, MIXED_STEPS + 1))
    for term, value in fp32_losses[1].items():
        assert mixed[1][term] == pytest.approx(value, rel=0.05), term
    ratios = [mixed[s]['total'] / fp32_losses[s]['total'] for s in range(8, MIXED_STEPS + 1)]
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.07), ratios
    assert all(0.8 < r < 1.2 for r in ratios), ratios

    def drop(losses):
        return np.mean([losses[s]['total'] for s in range(8, MIXED_STEPS + 1)]) / np.mean(
            [losses[s]['total'] for s in range(1, 6)]
        )

    assert drop(mixed) < 0.92 and drop(mixed) == pytest.approx(drop(fp32_losses), abs=0.06)
    assert 'graph.pbtxt' not in os.listdir(train_dir)
    # TensorBoard's graph view reads the event file: the graph and meta graph are there.
    (events,) = [n for n in os.listdir(train_dir) if n.startswith('events.out.tfevents')]
    written = list(v1.train.summary_iterator(str(train_dir / events)))
    assert any(e.graph_def for e in written) and any(e.meta_graph_def for e in written)
    graph = training_graph_text(train_dir)
    assert re.search(r'op: "Conv2D".*?type: DT_BFLOAT16', graph, re.S)
    # The checkpoint holds float32 master weights.
    prefix = checkpoints.resolve_checkpoint(str(train_dir))
    assert _step(prefix) == _kept_step(lines) >= MIXED_STEPS
    assert all(v.dtype == np.float32 or v.dtype.kind in 'iu' for v in _tensors(prefix).values())


def test_training_interrupted_saves_its_step_and_says_what_was_kept(mixed_run):
    """Ctrl-C: the step it stopped at is saved (only the starting point's checkpoint was kept:
    every step since the last save was lost), exit status 130 and one last line saying which
    checkpoints are kept and how to resume, no traceback (tests/test_interrupts.py: the
    conversion)."""
    train_dir, status, lines = mixed_run
    assert status == 130, lines[-20:]
    assert not any('Traceback' in line or 'KeyboardInterrupt' in line for line in lines), lines
    last = lines[-1]
    assert last.startswith('train_ssd_network: interrupted; checkpoints up to model.ckpt-'), lines
    assert last.endswith(f'are kept in {train_dir}; run the same command to resume from it')
    step = _kept_step(lines)
    assert step >= MIXED_STEPS and _step(str(train_dir / f'model.ckpt-{step}')) == step
    assert f'checkpoint saved: {train_dir}/model.ckpt-{step}' in '\n'.join(lines)
    start, saved = (
        _tensors(str(train_dir / 'model.ckpt-0')),
        _tensors(str(train_dir / f'model.ckpt-{step}')),
    )
    trained = [
        n for n in start if n.endswith('/weights') and not np.array_equal(start[n], saved[n])
    ]
    assert trained, 'the saved step holds the starting weights'


@pytest.fixture(scope='module')
def diverging_run(dataset_dir, tmp_path_factory):
    """The fp32 run's flags with SGD at a learning rate that diverges at once, a checkpoint every
    step, and --negative_ratio=1: (train dir, CompletedProcess)."""
    train_dir = tmp_path_factory.mktemp('diverging')
    result = _run(
        _args(
            dataset_dir,
            str(train_dir),
            '--max_number_of_steps=50',
            '--optimizer=sgd',
            '--learning_rate=1e30',
            '--learning_rate_decay_type=fixed',
            '--save_interval_steps=1',
            '--negative_ratio=1',
        )
    )
    return train_dir, result


def test_negative_ratio_flag_reaches_the_loss(fp32_run, diverging_run):
    """--negative_ratio=1 against the seeded fp32 run (ratio 3) at step 1: same weights, same
    batch (a step logs the loss of the weights before its update, so the optimizers differing
    does not matter), so the positive and localisation terms are equal; the negative term sums
    each image's top-k background losses for k = positives instead of 3 x positives, so it lies
    between a third of the ratio-3 term and that term."""
    _, fp32_losses, _ = fp32_run
    _, result = diverging_run
    one, three = _losses(result.stderr)[1], fp32_losses[1]
    for term in ('cross_entropy_pos', 'localization'):
        assert one[term] == pytest.approx(three[term], rel=1e-3), term
    assert three['cross_entropy_neg'] / 3 <= one['cross_entropy_neg'] + 1e-4
    assert one['cross_entropy_neg'] < 0.9 * three['cross_entropy_neg']


def test_non_finite_loss_stops_without_saving(diverging_run):
    train_dir, result = diverging_run
    assert result.returncode != 0
    match = re.search(
        r'non-finite (loss|weights) at step (\d+); training stopped without '
        r'saving\. Last good checkpoint: (\S+)\.',
        result.stderr,
    )
    assert match, result.stderr[-3000:]
    failed_step, last_good = int(match.group(2)), match.group(3)
    assert last_good == checkpoints.latest_in_directory(str(train_dir))
    assert _step(last_good) < failed_step
    for name, value in _tensors(last_good).items():
        if value.dtype.kind == 'f':
            assert np.isfinite(value).all(), name


# Runs train_ssd_network.py with a SIGKILL at a fixed point of tf.compat.v1.train.Saver.save
# (KILL_AT=point:step), the only code between training steps that writes to --train_dir:
#   before_save     the step's training is done, its save not begun;
#   before_state    the checkpoint's .index/.data are written, the `checkpoint` state file not;
#   before_cleanup  the state file names the new checkpoint, older ones beyond --max_to_keep are
#                   not deleted yet;
#   after_save      the save is complete.
# before_save and after_save are not in KILL_POINTS: they leave what a kill during a step does (a
# complete latest checkpoint), which before_state's run covers; kept for reproducing by hand.
KILLING_LAUNCHER = r"""
import os, runpy, signal, sys
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
point, step = os.environ['KILL_AT'].split(':')
suffix = '-' + step
Saver = tf.compat.v1.train.Saver

def die():
    os.kill(os.getpid(), signal.SIGKILL)

save, update = Saver.save, checkpoint_management.update_checkpoint_state_internal
cleanup = Saver._MaybeDeleteOldCheckpoints

def patched_save(self, sess, save_path, global_step=None, *args, **kwargs):
    if point == 'before_save' and str(global_step) == step:
        die()
    result = save(self, sess, save_path, global_step, *args, **kwargs)
    if point == 'after_save' and str(global_step) == step:
        die()
    return result

def patched_update(save_dir, model_checkpoint_path, *args, **kwargs):
    if point == 'before_state' and model_checkpoint_path.endswith(suffix):
        die()
    return update(save_dir, model_checkpoint_path, *args, **kwargs)

def patched_cleanup(self, *args, **kwargs):
    if point == 'before_cleanup' and self.last_checkpoints[-1].endswith(suffix):
        die()
    return cleanup(self, *args, **kwargs)

Saver.save, Saver._MaybeDeleteOldCheckpoints = patched_save, patched_cleanup
checkpoint_management.update_checkpoint_state_internal = patched_update
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""
# (point, the step of the kill, the latest checkpoint's step after it), in steps past the one the
# chain starts from: run one after the other in one --train_dir (saves every 2 steps), each run
# resuming from the previous kill.
KILL_POINTS = [('before_state', 2, 0), ('before_cleanup', 4, 4)]


def test_kills_and_sigterm_then_resumes_continue_exactly(mixed_run, dataset_dir, tmp_path):
    """A copy of the interrupted mixed run's folder, resumed with its flags (saving every 2 steps)
    by runs killed at each of KILL_POINTS, then by one stopped by SIGTERM: each resumes exactly
    from the latest checkpoint the one before left (the first from the step Ctrl-C saved).

    The copy has no state file: TF started from scratch while the trainer said 'resuming from'.
    SIGTERM (a scheduler stopping or preempting the job) killed the run at once, losing every
    step since the last save: it now ends as Ctrl-C does."""
    source, _, lines = mixed_run
    start = _kept_step(lines)
    train_dir = tmp_path / 'train'
    shutil.copytree(source, train_dir)
    os.remove(train_dir / 'checkpoint')
    args = _args(
        dataset_dir,
        str(train_dir),
        *MIXED_FLAGS,
        '--save_interval_steps=2',
        '--max_to_keep=3',
        '--checkpoint_path=%s' % (tmp_path / 'does_not_exist'),  # ignored when resuming
    )
    resumed_from = str(train_dir / f'model.ckpt-{start}')
    before = _tensors(resumed_from)
    for point, offset, latest_offset in KILL_POINTS + [('SIGTERM', 6, None)]:
        step = start + offset
        where = 'run ending at %s:%d' % (point, step)
        if point == 'SIGTERM':
            status, lines = interrupt_when(
                [*args, '--max_number_of_steps=100000'], f'step {step}/', signum=signal.SIGTERM
            )
            stderr, expected = '\n'.join(lines), -signal.SIGTERM
        else:
            # The step limit ends a run that was not killed.
            limit = '--max_number_of_steps=%d' % (step + 4)
            result = _run(
                ['-c', KILLING_LAUNCHER, *args, limit], timeout=600, KILL_AT=f'{point}:{step}'
            )
            stderr, status, expected = result.stderr, result.returncode, -signal.SIGKILL
        assert status == expected, (where, status, stderr[-3000:])
        if point == 'before_state':
            assert 'Rewrote %s' % (train_dir / 'checkpoint') in stderr
        # The previous run's latest checkpoint was restored: it is re-saved at the start with
        # every variable (weights, Adam slots, global step, BN statistics) unchanged.
        assert 'resuming from %s (step' % resumed_from in stderr, where
        logged = sorted(_losses(stderr))
        assert logged[0] == _step(resumed_from) + 1, where
        after = _tensors(resumed_from)
        assert sorted(after) == sorted(before), where
        for name in before:
            np.testing.assert_array_equal(after[name], before[name], err_msg=where + name)
        assert checkpoints.training_finished(str(train_dir)) is None, where  # not finished
        if point == 'SIGTERM':
            saved = _kept_step(lines)
            assert saved >= step and _step(str(train_dir / f'model.ckpt-{saved}')) == saved
            # Its saves went past --max_to_keep: the first listed went, by the state file the
            # first run wrote.
            assert not os.path.exists(train_dir / f'model.ckpt-{start}.index')
            break
        # A kill comes in the step's save, before or after that step's log line.
        assert step - 1 <= logged[-1] <= step, (where, logged)
        state = tf.train.get_checkpoint_state(str(train_dir))
        for prefix in state.all_model_checkpoint_paths:
            _tensors(prefix)  # every listed checkpoint loads
        resumed_from = checkpoints.resolve_checkpoint(str(train_dir))
        assert _step(resumed_from) == start + latest_offset, where
        before = _tensors(resumed_from)
        if point == 'before_state':  # the unlisted new checkpoint's files are there
            assert os.path.exists(train_dir / f'model.ckpt-{step}.index')


def test_sigterm_while_the_training_starts_ends_by_it_with_one_line(dataset_dir, tmp_path):
    """SIGTERM before the steps (while the graph is built) killed the run at once: no line, its
    lock file left in --train_dir. Now Ctrl-C's path, then the end by the signal (in the steps
    too, after the save: test_kills_and_sigterm_then_resumes_continue_exactly)."""
    train_dir = tmp_path / 'train'
    lock = train_dir / folder_lock.LOCK_NAME
    status, lines = interrupt_when(
        _args(dataset_dir, str(train_dir), '--max_number_of_steps=2'),
        lambda: lock.exists() and lock.read_text().strip(),  # locked: the graph is being built
        signum=signal.SIGTERM,
    )
    assert status == -signal.SIGTERM, lines[-20:]
    assert lines[-1:] == [
        f'train_ssd_network: terminated (SIGTERM); no checkpoint was written yet in {train_dir}; '
        'run the same command to start again'
    ], lines[-5:]
    assert not train_dir.exists()  # made for its lock, removed with it


def test_training_into_a_pointer_folder_is_refused(dataset_dir, fp32_run, tmp_path):
    """A --train_dir holding only a state file that names another folder's checkpoint (TF allows
    such a pointer): TF resumed from it and max_to_keep deleted that folder's older checkpoints.
    The trainer refuses before writing anything, saying how to go on with either folder."""
    original, pointer = str(tmp_path / 'original'), tmp_path / 'pointer'
    shutil.copytree(fp32_run[0], original)
    pointer.mkdir()
    text = 'model_checkpoint_path: "%s"\n' % os.path.join(original, 'model.ckpt-30')
    (pointer / 'checkpoint').write_text(text)
    files = {name: os.path.getmtime(os.path.join(original, name)) for name in os.listdir(original)}
    proc = _run(_args(dataset_dir, str(pointer), '--max_number_of_steps=32', '--max_to_keep=1'))
    assert proc.returncode != 0
    assert 'names a checkpoint of another folder, %s' % os.path.join(original, 'model.ckpt-30') in (
        proc.stderr
    )
    assert '--checkpoint_path=%s' % os.path.join(original, 'model.ckpt-30') in proc.stderr
    assert {n: os.path.getmtime(os.path.join(original, n)) for n in os.listdir(original)} == files
    assert os.listdir(pointer) == ['checkpoint'] and (pointer / 'checkpoint').read_text() == text


def _mtimes(directory):
    return {name: os.path.getmtime(os.path.join(directory, name)) for name in os.listdir(directory)}


def test_rerun_of_a_finished_training_trains_nothing(dataset_dir, fp32_run, tmp_path):
    """TF's StopAtStepHook stops after a step, so the finished run's command, run again, trained
    one step more and changed the final model. Now nothing is written but the finished marker
    (when a kill had kept the first run from writing it)."""
    copy = str(tmp_path / 'copy')
    shutil.copytree(fp32_run[0], copy)
    os.remove(os.path.join(copy, checkpoints.FINISHED_MARKER))
    files = _mtimes(copy)
    proc = _run(_args(dataset_dir, copy, '--max_number_of_steps=30'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        'model.ckpt-30 is at step 30: the training in %s has reached --max_number_of_steps=30; '
        'nothing to train' % copy
    ) in proc.stderr
    assert not _losses(proc.stderr)
    after = _mtimes(copy)
    assert after.pop(checkpoints.FINISHED_MARKER) and after == files
    assert checkpoints.training_finished(copy)['checkpoint'] == 'model.ckpt-30'
    # A model flag that contradicts the card was hidden behind 'nothing to train'.
    files = _mtimes(copy)
    proc = _run(_args(dataset_dir, copy, '--max_number_of_steps=30', '--depth_multiplier=0.75'))
    assert proc.returncode != 0
    card = os.path.join(copy, card_lib.CARD_FILE)
    assert f'--depth_multiplier=0.75 contradicts the model card {card}, which says' in proc.stderr
    assert 'nothing to train' not in proc.stderr
    assert _mtimes(copy) == files


@pytest.mark.parametrize('kind', ['optimizer', 'converted'])
def test_resuming_what_the_saver_cannot_restore_is_one_line(dataset_dir, fp32_run, tmp_path, kind):
    """Resuming with another --optimizer (its slots are not in the checkpoint), or a folder of
    weights without a global_step (an older converter's, whose state file has no header): the
    Saver's restore failed in a 190-line traceback. Now one line says what differs."""
    folder = tmp_path / kind
    if kind == 'optimizer':
        shutil.copytree(fp32_run[0], folder)
        extra, hint = (
            ['--optimizer=momentum'],
            (
                'they are the optimizer\'s state: the checkpoint was trained with another --optimizer '
                '(its slots: Adam, Adam_1); resume with --optimizer=adam'
            ),
        )
    else:
        folder.mkdir()
        weights = {
            name: value
            for name, value in _tensors(os.path.join(fp32_run[0], 'model.ckpt-30')).items()
            if name != 'global_step' and '/Adam' not in name and 'power' not in name
        }
        names = sorted(weights)
        # The files a Saver of these variables writes, without building the variables (~1 s).
        with tf.Graph().as_default(), v1.Session() as sess:
            sess.run(
                tf.raw_ops.SaveV2(
                    prefix=str(folder / 'ssd_300_mobilenet.ckpt'),
                    tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[weights[n] for n in names],
                )
            )
        (folder / 'checkpoint').write_text(
            'model_checkpoint_path: "ssd_300_mobilenet.ckpt"\n'
            'all_model_checkpoint_paths: "ssd_300_mobilenet.ckpt"\n'
        )
        extra, hint = [], 'it has no global_step: these are not a training\'s checkpoints'
    files = _mtimes(folder)
    proc = _run(_args(dataset_dir, str(folder), '--max_number_of_steps=32', *extra))
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert 'does not fit the model built from' in proc.stderr and hint in proc.stderr
    assert _mtimes(folder) == files


def test_a_resume_that_would_drop_the_checkpoints_variables_is_refused(
    dataset_dir, fp32_run, tmp_path
):
    """A narrower --trainable_scopes: TF re-saved the resumed checkpoint at start with the graph's
    variables only, so the other variables' Adam slots were lost from it, in place. Refused now,
    the folder untouched."""
    copy = str(tmp_path / 'copy')
    shutil.copytree(fp32_run[0], copy)
    assert os.path.exists(os.path.join(copy, checkpoints.FINISHED_MARKER))
    files = _mtimes(copy)
    proc = _run(
        _args(
            dataset_dir,
            copy,
            '--max_number_of_steps=32',
            '--trainable_scopes=ssd_300_mobilenet/conv13',
        )
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    prefix = os.path.join(copy, 'model.ckpt-30')
    assert f'error: {prefix}: this run would drop ' in proc.stderr
    assert (
        'the optimizer state of variables this run would not train: resume without '
        f'--trainable_scopes, or start a new --train_dir with --checkpoint_path={prefix}'
    ) in proc.stderr
    assert _mtimes(copy) == files


def test_a_card_without_checkpoints_says_it_may_be_deleted(dataset_dir, fp32_run, tmp_path):
    """A run stopped before its first checkpoint left its model.json; the corrected command
    (another --depth_multiplier) was refused with advice to pass a flag the trainer does not
    have. The card describes no weights: the error says to delete it (a watcher or the cluster's
    other workers may have read it, so it is not replaced behind their backs)."""
    folder = tmp_path / 'stopped'
    folder.mkdir()
    card = folder / 'model.json'
    shutil.copy(os.path.join(fp32_run[0], 'model.json'), card)
    before = card.read_bytes()
    args = _args(dataset_dir, str(folder), '--max_number_of_steps=1')
    args[args.index('--depth_multiplier=0.25')] = '--depth_multiplier=0.5'
    proc = _run(args)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert (
        f'--depth_multiplier=0.5 contradicts the model card {card}, which says 0.25. Drop '
        f'--depth_multiplier (the card describes the model), or delete {card} (no checkpoint was '
        f'written with it: a run stopped before one) to use --depth_multiplier=0.5.'
    ) in proc.stderr
    assert card.read_bytes() == before and os.listdir(folder) == ['model.json']


@pytest.fixture(scope='module')
def restarted_run(dataset_dir, fp32_run, tmp_path_factory):
    """A folder holding only the model.json of a run stopped before its first checkpoint (the
    fp32 run's card), trained into by the corrected command (other batch size and learning rate)
    for 2 steps; the last checkpoint's graph cannot be written (a folder is in the way of
    model.ckpt-2.meta, as a full disk would stop it). (folder, the card before, the result)."""
    folder = tmp_path_factory.mktemp('restarted')
    shutil.copy(os.path.join(fp32_run[0], 'model.json'), folder / 'model.json')
    (folder / 'model.ckpt-2.meta').mkdir()
    before = card_lib.load(str(folder / 'model.json'))
    args = _args(dataset_dir, str(folder), '--max_number_of_steps=2', '--learning_rate=0.003')
    args[args.index('--batch_size=2')] = '--batch_size=1'
    return folder, before, _run(args)


def test_a_run_restarted_before_any_checkpoint_records_its_own_settings(restarted_run):
    """The card a stopped run left kept that run's settings and data: the corrected command's
    resumes then logged changes it never made ('batch_size 2 -> 1'; evaluation's warning on the
    training split named the stopped run's data). The new run records its own (same model,
    same card id: a watcher may have read the card)."""
    folder, before, proc = restarted_run
    card = card_lib.load(str(folder / 'model.json'))
    assert card.card_id == before.card_id and card.net() is not None
    assert card.class_names == before.class_names and card.params == before.params
    settings = card.provenance['settings']
    assert (settings['batch_size'], settings['learning_rate']) == (1, 0.003)
    assert card.provenance['time'] >= before.provenance['time']
    assert (
        f'{folder / "model.json"}: no checkpoint was written with it (a run stopped before its '
        "first); it records this run's settings and data from now on"
    ) in proc.stderr


def test_a_checkpoint_that_cannot_be_written_is_one_line_saying_what_is_kept(restarted_run):
    """A full disk (or a folder made read-only) at a save was TF's traceback ending in a hint about
    tensors allocated "when OOM happens". One line names the file that failed and why, and the
    checkpoint kept: here the weights of step 2 were written, their graph was not (the resume
    writes it again)."""
    folder, _, proc = restarted_run
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert (
        f'error: {folder}: writing checkpoint model.ckpt-2 failed at model.ckpt-2.meta (Is a '
        f'directory); the last checkpoint {folder / "model.ckpt-2"} (step 2) is kept: make room '
        'on its disk (or make the folder writable again), then run the same command to resume.'
    ) in proc.stderr
    assert 'OOM' not in proc.stderr


def test_a_resume_keeps_old_checkpoints_until_it_saves_and_records_other_settings(
    dataset_dir, fp32_run, tmp_path
):
    """Resumes of a copy of the fp32 run whose state file names the original's checkpoints by
    absolute path (TF's default, and this trainer's before it wrote relative ones):

    - the copy resumes from its own latest checkpoint, and max_to_keep deletes the copy's old
      checkpoints, not the original folder's (TF's resume took the state file's list as
      written);
    - with a lower --max_to_keep, killed before its first save (Ctrl-C saves the step first):
      the checkpoints beyond it were deleted at resume, before the first step, so a resume that
      then failed or was killed had lost them. They are now only unlisted (TF's Saver would
      otherwise rotate them) until the run writes a checkpoint;
    - then with other settings than the training's so far: they were taken silently (the
      audit's learning rate jumped from the schedule's end back to its middle). The log names
      each change and the card records it once the run has written a checkpoint, when the
      unlisted checkpoints are removed;
    - again (`trainer._resume_record`, as the trainer calls it with the card the resume wrote):
      it compares with the settings as the first resume left them."""
    original, copy = str(tmp_path / 'original'), str(tmp_path / 'copy')
    shutil.copytree(fp32_run[0], original)
    old = [os.path.join(original, f'model.ckpt-{step}') for step in (0, 30)]
    with open(os.path.join(original, 'checkpoint'), 'w') as f:
        f.write(f'model_checkpoint_path: "{old[1]}"\n')
        f.writelines(f'all_model_checkpoint_paths: "{p}"\n' for p in old)
    shutil.copytree(original, copy)
    originals = _mtimes(original)
    first = card_lib.load(os.path.join(copy, 'model.json'))
    args = _args(
        dataset_dir,
        copy,
        '--max_number_of_steps=100000',
        '--save_interval_steps=100000',
        '--learning_rate_decay_type=fixed',
        '--max_to_keep=1',
    )
    status, lines = interrupt_when(args, 'step 32/', signum=signal.SIGKILL)
    assert status == -signal.SIGKILL, lines[-20:]
    text = '\n'.join(lines)
    assert 'resuming from %s (step 30' % os.path.join(copy, 'model.ckpt-30') in text
    assert sorted(_losses(text))[0] == 31  # from step 30, not from scratch
    assert 'Rewrote %s' % os.path.join(copy, 'checkpoint') in text
    # TF's Saver would remove one listed checkpoint per save, never getting down to it.
    assert (
        '1 checkpoint(s) older than the --max_to_keep=1 newest (model.ckpt-0) are removed once '
        'this run has written its first checkpoint.'
    ) in text
    assert sorted(n for n in os.listdir(copy) if n.endswith('.index')) == [
        'model.ckpt-0.index',
        'model.ckpt-30.index',
    ]
    state = tf.train.get_checkpoint_state(copy)
    assert list(state.all_model_checkpoint_paths) == [os.path.join(copy, 'model.ckpt-30')]
    assert 'Removed' not in text
    assert card_lib.load(os.path.join(copy, 'model.json')) == first  # no checkpoint written

    cosine = ['--learning_rate=0.002', '--learning_rate_decay_type=cosine', '--max_to_keep=1']
    proc = _run(_args(dataset_dir, copy, '--max_number_of_steps=31', *cosine))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(_losses(proc.stderr)) == [31]
    assert 'Removed 1 checkpoint(s) older than the --max_to_keep newest: model.ckpt-0.' in (
        proc.stderr
    )
    # model.ckpt-30 went by the copy's own max_to_keep, the original's stayed.
    assert sorted(n for n in os.listdir(copy) if n.endswith('.index')) == ['model.ckpt-31.index']
    assert _mtimes(original) == originals
    assert not os.path.exists(os.path.join(copy, checkpoints.UNLISTED_FILE))
    # TF's v1 deprecation notice when max_to_keep removes a checkpoint (3 lines, once a run).
    assert 'remove_checkpoint' not in proc.stderr and 'Instructions for' not in proc.stderr
    written = tf.train.get_checkpoint_state(copy)
    assert list(written.all_model_checkpoint_paths) == [os.path.join(copy, 'model.ckpt-31')]
    with open(os.path.join(copy, 'checkpoint')) as f:
        assert tmp_path.name not in f.read()  # relative paths
    assert checkpoints.training_finished(copy)['step'] == 31
    assert 'Restoring parameters' not in proc.stderr  # TF's line; the resume line names it
    assert (
        'resuming with other settings than the training so far (its card records them once this '
        'run has written a checkpoint): learning_rate 0.001 -> 0.002, learning_rate_decay_type '
        'fixed -> cosine, max_number_of_steps 30 -> 31; the step count and the learning-rate '
        'schedule go on from step 30 with the new values'
    ) in proc.stderr
    card = card_lib.load(os.path.join(copy, 'model.json'))
    assert (
        card.card_id == first.card_id
        and card.provenance['settings'] == first.provenance['settings']
    )
    (resume,) = card.provenance['resumed']
    assert resume['step'] == 30 and 'dataset' not in resume
    assert resume['changes'] == {
        'learning_rate': [0.001, 0.002],
        'learning_rate_decay_type': ['fixed', 'cosine'],
        'max_number_of_steps': [30, 31],
    }

    same = _recorded_dataset(card)
    # The settings of the first command with `cosine` and --max_number_of_steps=32.
    again = trainer.TrainSettings(
        **dict(
            card.provenance['settings'],
            learning_rate=0.002,
            learning_rate_decay_type='cosine',
            max_to_keep=1,
            max_number_of_steps=32,
        )
    )
    resumed, lines = trainer._resume_record(card, again, same, 31)
    assert lines == [
        (
            trainer.logging.INFO,
            'resuming with other settings than the training so far (its card records them once '
            'this run has written a checkpoint): max_number_of_steps 31 -> 32; the step count and '
            'the learning-rate schedule go on from step 31 with the new values',
        )
    ]
    resumes = resumed.provenance['resumed']
    assert [r['changes'] for r in resumes[1:]] == [{'max_number_of_steps': [31, 32]}]


def _recorded_dataset(card):
    """The dataset a training's `card` records (name, split, folder, size), as `_resume_record`
    reads a dataset."""
    data = card.provenance['dataset']
    return types.SimpleNamespace(
        name=data['name'],
        split_name=data['split'],
        dataset_dir=data['dir'],
        num_samples=data['num_examples'],
    )


def test_a_resume_is_recorded_after_its_first_checkpoint():
    """The record waits for a checkpoint past the resumed step (the re-save of that step at start
    does not count): a resume aborted before leaves the card as it was."""
    calls = []
    listener = hooks.FirstSavePastListener(30, lambda: calls.append(1))
    listener.after_save(None, 30)
    assert calls == []
    listener.after_save(None, 31)
    listener.after_save(None, 32)
    assert calls == [1]


def test_a_resumes_step_limit_changes_only_a_cosine_schedule(fp32_run):
    """A polynomial decay spans --num_epochs_per_decay (TF-Slim's), not the run: a resume that
    raised the step limit said the schedule went on "with the new values"."""
    card = card_lib.load(os.path.join(fp32_run[0], 'model.json'))
    same = _recorded_dataset(card)
    for decay, changed in (('polynomial', False), ('exponential', False), ('cosine', True)):
        recorded = dict(card.provenance['settings'], learning_rate_decay_type=decay)
        decayed = card.replace(provenance=dict(card.provenance, settings=recorded))
        longer = trainer.TrainSettings(**dict(recorded, max_number_of_steps=60))
        resumed, lines = trainer._resume_record(decayed, longer, same, 30)
        assert bool(lines) == changed, (decay, lines)
        if changed:
            assert 'max_number_of_steps 30 -> 60' in lines[0][1]


def test_a_resume_on_other_data_is_recorded_for_evaluation(fp32_run, tmp_path):
    """Resumed on the test split (an audit's mistake): evaluation on it then said nothing, the
    card naming the train split only. The card records the resume's data; trained_on reads it."""
    card = card_lib.load(os.path.join(fp32_run[0], 'model.json'))
    settings = trainer.TrainSettings(**card.provenance['settings'])
    first = card.provenance['dataset']
    test = types.SimpleNamespace(
        name=first['name'], split_name='test', dataset_dir=str(tmp_path), num_samples=3
    )
    resumed, lines = trainer._resume_record(card, settings, test, 30)
    assert lines == [
        (
            trainer.logging.WARNING,  # absl's
            'resuming on %s split test in %s; the training so far used %s split %s in %s (the '
            'card records both once this run has written a checkpoint)'
            % (first['name'], tmp_path, first['name'], first['split'], first['dir']),
        )
    ]
    (resume,) = resumed.provenance['resumed']
    assert resume['changes'] == {} and resume['step'] == 30
    assert resume['dataset'] == {
        'name': first['name'],
        'split': 'test',
        'dir': str(tmp_path),
        'num_examples': 3,
    }
    assert evaluate.trained_on(resumed, test) and not evaluate.trained_on(card, test)
    assert trainer._resume_record(card, settings, _recorded_dataset(card), 30) == (card, [])


def test_train_dir_that_is_a_file_is_one_line(dataset_dir, tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('mine')
    proc = _run(_args(dataset_dir, str(path), '--max_number_of_steps=2'))
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert f'--train_dir {path} is not a folder; pass the folder for the checkpoints' in (
        proc.stderr
    )
    assert path.read_text() == 'mine'


def test_one_ps_two_workers_sync_replicas(dataset_dir, tmp_path):
    """1 ps + 2 workers, synchronous: the chief counts both workers' gradients in every step
    (its worker-id accumulator, training/cluster.py), the checkpoint is at the last step, and all
    three processes exit 0 by themselves. Worker 1 is configured by TF_CONFIG, the others by the
    host flags. More cluster cases (late, killed, restarted workers; async) run in-process in
    tests/test_train_cluster.py."""
    import json

    ports = free_ports(3)
    ps_hosts = ['127.0.0.1:%d' % ports[0]]
    worker_hosts = ['127.0.0.1:%d' % p for p in ports[1:]]
    flags = ['--ps_hosts=%s' % ','.join(ps_hosts), '--worker_hosts=%s' % ','.join(worker_hosts)]
    tf_config = json.dumps(
        {
            'cluster': {'ps': ps_hosts, 'worker': worker_hosts},
            'task': {'type': 'worker', 'index': 1},
        }
    )
    train_dir = str(tmp_path / 'train')
    steps = [
        '--sync_replicas',
        '--max_number_of_steps=3',
        '--batch_size=1',
        '--save_interval_steps=100',
    ]
    runs = {
        'ps': (flags + ['--job_name=ps', '--task_index=0'], train_dir, {}),
        'chief': (flags + ['--job_name=worker', '--task_index=0'], train_dir, {}),
        'worker1': ([], str(tmp_path / 'worker1'), {'TF_CONFIG': tf_config}),
    }
    processes, logs = {}, {}
    try:
        for name, (cluster, directory, env) in runs.items():
            logs[name] = tmp_path / ('%s.log' % name)
            with open(os.devnull, 'wb') as devnull, open(logs[name], 'w') as log:
                processes[name] = script_server.spawn(
                    _args(dataset_dir, directory, *(cluster + steps)),
                    ROOT,
                    script_env(**env),
                    devnull,
                    log,
                )
        deadline = time.time() + 900
        for name, process in processes.items():
            code = process.wait(timeout=max(deadline - time.time(), 1))
            assert code == 0, (name, logs[name].read_text()[-3000:])
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    text = {name: path.read_text() for name, path in logs.items()}
    assert (
        'Synchronous steps 1-3: 3 steps of 2 distinct workers; gradients per worker: '
        'worker 0: 3, worker 1: 3.'
    ) in text['chief'], text['chief'][-3000:]
    assert 'pushed 3 gradients; the global step is 3' in text['worker1']
    # The step is read once each run's step is done: read during the runs it lagged by one (the
    # lines ended at "step 2/3", "to step 2"). A worker named the latest checkpoint when it
    # ended, before the chief's last (it said "model.ckpt-0").
    for name in ('chief', 'worker1'):
        assert re.findall(r'\] step (\d+)/3\b', text[name]) == ['1', '2', '3'], text[name][-3000:]
        assert 'training finished: 3 steps (to step 3) in ' in text[name]
    assert '(latest model.ckpt-3), model card' in text['chief']
    assert "step); checkpoints and model card: the chief's" in (text['worker1'])
    assert re.search(r'The chief ended training; ps 0 \(127\.0\.0\.1:\d+\) stops', text['ps'])
    for name, log in text.items():
        assert 'This process: ' in log  # its role, the cluster and what it waits for
        assert 'Traceback' not in log and 'Exception in thread' not in log, (name, log[-3000:])
    assert _step(checkpoints.resolve_checkpoint(train_dir)) == 3
    assert not os.path.exists(tmp_path / 'worker1' / 'checkpoint')  # only the chief saves
