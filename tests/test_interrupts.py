"""Ctrl-C ends a script with one line saying what was kept and how to resume, not a traceback.
(Training: tests/test_train_run.py, which interrupts one of its runs.)"""

import glob
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import types

import pytest

from datasets import convert
from datasets import synthetic
from tests.conftest import ROOT, interrupt_when, process_running, process_state, run_python


def _conversion_workers():
    """The pids of the conversion workers (spawned: `--multiprocessing-fork` in their command
    line) among this process's descendants (where the scripts run: tests/script_server.py)."""
    children = {}
    for pid in map(int, filter(str.isdigit, os.listdir('/proc'))):
        state = process_state(pid)
        if state is not None:  # not ended meanwhile
            children.setdefault(state[1], []).append(pid)
    descendants, todo = [], [os.getpid()]
    while todo:
        found = children.get(todo.pop(), [])
        descendants += found
        todo += found
    workers = []
    for pid in descendants:
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if b'--multiprocessing-fork' in f.read():
                    workers.append(pid)
        except OSError:
            continue
    return workers


def _alive_at_their_parents_end(workers, alive):
    """A thread: adds to `alive` the `workers` still running when their parent ends (polled
    every 5 ms; the test's reader of their shared stderr sees its end only once they end)."""

    def watch():
        parent = process_state(workers[0])[1]
        while process_running(parent):
            time.sleep(0.005)
        alive.extend(filter(process_running, workers))

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    'signum, status, stopped',
    [
        (signal.SIGINT, 130, 'interrupted'),
        # A scheduler's stop: it killed the script at once, its workers converting on.
        (signal.SIGTERM, -signal.SIGTERM, 'terminated (SIGTERM)'),
    ],
)
def test_conversion_interrupted_keeps_the_earlier_output(tmp_path, signum, status, stopped):
    synthetic.generate(str(tmp_path / 'voc'), 80)
    records = tmp_path / 'records'
    records.mkdir()
    (records / 'notes.txt').write_text('mine')
    workers, alive, watching = [], [], []

    def first_shard_written():
        if glob.glob(str(records / '.train.tmp-*' / 'part-*.tfrecord')):
            workers.extend(_conversion_workers())
        if workers:
            watching.append(_alive_at_their_parents_end(workers, alive))
        return bool(workers)

    ended, lines = interrupt_when(
        [
            os.path.join(ROOT, 'tf_convert_data.py'),
            '--dataset_name=pascalvoc',
            f'--dataset_dir={tmp_path / "voc"}',
            f'--labels_file={tmp_path / "voc" / "labels.txt"}',
            f'--output_dir={records}',
            '--output_name=train',
            '--num_workers=2',
            '--samples_per_file=5',
        ],
        # Once the first shard is written: 15 of 16 are still to convert, whatever the load.
        # Forked (TensorFlow imported already): the first shard comes while the workers are
        # busy, when multiprocessing.Pool's terminate could hang (see convert._WorkerPool).
        first_shard_written,
        signum=signum,
    )
    assert ended == status, lines[-20:]
    assert not any('Traceback' in line or 'KeyboardInterrupt' in line for line in lines), lines
    assert lines[-1:] == [
        f'tf_convert_data: {stopped}; nothing of train was replaced in {records}; run the '
        f'same command to convert again'
    ], lines[-5:]
    # Its temporary folder too is gone (the message said the next run would remove it), and
    # its workers with it.
    assert os.listdir(records) == ['notes.txt']
    watching[0].join(10)
    assert len(workers) == 2 and alive == [], (workers, alive)


def _fresh_python(code):
    """`python -c code` in a fresh interpreter (not a child of the tests' fork server: its own
    signal handlers), the project importable; output captured as text."""
    return subprocess.run(
        [sys.executable, '-c', code],
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_conversion_workers_ignore_ctrl_c_from_their_start():
    """Ctrl-C reaches the whole process group: workers still starting (before their
    initializer) printed a KeyboardInterrupt traceback each. They now inherit the ignoring."""
    ctx = multiprocessing.get_context('spawn')
    handler = signal.getsignal(signal.SIGINT)
    pool = convert._start_pool(ctx, 2, ctx.Value('q', 0))
    try:
        for process in pool.processes:  # read at once: the workers are still importing
            with open(f'/proc/{process.pid}/status') as status:
                (ignored,) = [line.split()[1] for line in status if line.startswith('SigIgn:')]
            assert int(ignored, 16) & (1 << (signal.SIGINT - 1)), process.pid
    finally:
        pool.terminate()  # and waits for them
    assert signal.getsignal(signal.SIGINT) is handler  # this process's is restored


# A SIGTERM while the workers start, for a handler that raises (as a script's does); then how
# the workers ended.
_SIGTERM_WHILE_STARTING = """
import multiprocessing, os, signal
from datasets import convert
pools = []


class Pool(convert._WorkerPool):
    def __init__(self, *args):
        pools.append(self)
        os.kill(os.getpid(), signal.SIGTERM)
        super().__init__(*args)
        print('started')


def stop(signum, frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, stop)
convert._WorkerPool = Pool
ctx = multiprocessing.get_context('spawn')
try:
    convert._start_pool(ctx, 2, ctx.Value('q', 0))
    print('not stopped')
except KeyboardInterrupt:
    print('stopped', [p.exitcode for p in pools[0].processes])
"""


def test_conversion_workers_start_before_a_sigterm_ends_them():
    """A SIGTERM while the pool starts its workers ran the main process's handler there (a
    script's raises: the interrupt that could leave a worker waiting for its start-up data, see
    `convert._start_pool`). It is held until the workers are started, then the handler runs and
    the pool is ended (by SIGTERM: the workers do not ignore it)."""
    proc = _fresh_python(_SIGTERM_WHILE_STARTING)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ['started', 'stopped [-15, -15]'], proc.stdout
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]


def test_conversion_workers_start_outside_the_main_thread():
    """Signal handlers can be set only in the main thread: there the workers' initializer alone
    ignores SIGINT (a ValueError ended such a conversion)."""
    ctx = multiprocessing.get_context('spawn')
    result = []
    thread = threading.Thread(
        target=lambda: result.append(convert._start_pool(ctx, 1, ctx.Value('q', 0)))
    )
    thread.start()
    thread.join()
    (pool,) = result
    try:
        assert list(pool.imap(signal.getsignal, [signal.SIGINT])) == [signal.SIG_IGN]
    finally:
        pool.terminate()  # and waits for them


# In a fresh interpreter with Python's own SIGINT handler: `_thread.interrupt_main` does nothing
# where SIGINT is ignored, as in a suite started in the background (`cmd &` ignores SIGINT in
# what it starts), where the 60 s task then finished first.
_POOL_INTERRUPTED = """
import _thread, multiprocessing, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from datasets import convert
ctx = multiprocessing.get_context('spawn')
pool = convert._start_pool(ctx, 2, ctx.Value('q', 0))
results = pool.imap(time.sleep, [60] * 3)
threading.Timer(3, _thread.interrupt_main).start()  # Ctrl-C as the main process sees it
try:
    next(results)
    print('not interrupted')
except KeyboardInterrupt:
    start = time.monotonic()
    pool.terminate()
    print(round(time.monotonic() - start), [p.exitcode == -signal.SIGTERM for p in pool.processes])
"""


def test_conversion_pool_ends_at_once_whatever_its_workers_do():
    """multiprocessing.Pool's terminate could wait forever for a worker sending a shard (its
    workers share one result pipe behind a lock). The conversion's pool kills its workers
    whatever they do, re-raises a worker's exception, and reports a worker that died."""
    proc = _fresh_python(_POOL_INTERRUPTED)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seconds, killed = proc.stdout.split(maxsplit=1)
    assert int(seconds) < 10 and killed.strip() == '[True, True]', proc.stdout
    ctx = multiprocessing.get_context('spawn')
    pool = convert._start_pool(ctx, 1, ctx.Value('q', 0))
    try:
        assert list(pool.imap(len, [b'ab', b'c'])) == [2, 1]
        with pytest.raises(ValueError, match="'x'"):
            list(pool.imap(int, ['x']))
        with pytest.raises(ChildProcessError, match='exit code 3 while converting shard 0'):
            list(pool.imap(os._exit, [3]))
    finally:
        pool.terminate()


def test_progress_reads_the_counter_without_its_lock(capsys):
    """The workers count converted images under the counter's lock; a worker killed while it
    held it would have blocked the progress line, and the end of the conversion with it."""
    counter = multiprocessing.get_context('spawn').Value('q', 7)
    held, release = threading.Event(), threading.Event()

    def hold():
        with counter.get_lock():
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    held.wait(10)
    printer = threading.Thread(
        target=convert._Progress(counter, 10, True)._print, kwargs={'final': True}, daemon=True
    )
    printer.start()
    printer.join(10)
    release.set()
    assert not printer.is_alive()
    assert '7/10 images' in capsys.readouterr().err


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError('no pickling')


def _task(value):
    if value == 'raise':
        raise ValueError('bad shard 3')
    if value == 'unpicklable':
        raise _Unpicklable('x')
    return value * 2


def test_worker_errors_reach_the_main_process_with_their_traceback():
    """The pool's own error transport (it borrowed multiprocessing.pool's private classes)."""
    ctx = multiprocessing.get_context('spawn')
    with convert._start_pool(ctx, 1, ctx.Value('q', 0)) as pool:
        assert list(pool.imap(_task, [1, 2])) == [2, 4]
        with pytest.raises(ValueError, match='^bad shard 3$') as info:
            list(pool.imap(_task, [1, 'raise']))
        cause = info.value.__cause__
        assert isinstance(cause, convert.WorkerTraceback)
        assert "in _task\n    raise ValueError('bad shard 3')" in str(cause)
        with pytest.raises(RuntimeError) as info:
            list(pool.imap(_task, ['unpicklable']))
        assert str(info.value).startswith(
            "a conversion worker could not send its exception: TypeError('no pickling')"
        )
        assert '_Unpicklable: x' in str(info.value.__cause__)


def test_an_interrupt_that_replaced_a_tf_error_is_an_interrupt():
    """A signal handled while TF builds the exception of a failing call (pybind11) comes out as
    a RuntimeError 'MISMATCH ... REPLACED BY KeyboardInterrupt': it ended in a traceback."""
    from training import trainer

    def session(error):
        def run(_):
            raise error

        return types.SimpleNamespace(should_stop=lambda: False, run=run)

    hook = types.SimpleNamespace(step=7)
    replaced = RuntimeError(
        'pybind11::error_already_set: MISMATCH of original and normalized active exception '
        'types: ORIGINAL DeadlineExceededError REPLACED BY KeyboardInterrupt'
    )
    with pytest.raises(KeyboardInterrupt):
        trainer._run_steps(session(replaced), None, hook, None)
    with pytest.raises(RuntimeError, match='another failure'):
        trainer._run_steps(session(RuntimeError('another failure')), None, hook, None)


SIGTERM_IN_THE_STEPS = r"""
import os, signal, time
from training import trainer

before = signal.getsignal(signal.SIGTERM)
try:
    with trainer._sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this returns
except KeyboardInterrupt:
    print('interrupted', signal.getsignal(signal.SIGTERM) is before)
"""


def test_sigterm_is_an_interrupt_while_the_steps_run():
    """SIGTERM (a scheduler stopping the job) takes the path of Ctrl-C in training: a lone
    process saves its step (tests/test_train_run.py), a cluster's worker tells the chief it
    leaves (tests/test_train_cluster.py); outside the steps it is left as it was. In a process
    of its own: signals reach the main thread only, and a test worker's may not be it."""
    proc = run_python(SIGTERM_IN_THE_STEPS)
    assert proc.returncode == 0 and proc.stdout.split() == ['interrupted', 'True'], proc.stderr


# A script's training steps stopped by SIGTERM, then a second one during the save of the step
# reached (a scheduler's to the process group, then to the script).
SECOND_SIGTERM_IN_THE_SAVE = r"""
import os, signal, sys, time
from tf_extended import logs
from training import trainer


def main():
    try:
        with trainer._sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)
        print('saved', file=sys.stderr, flush=True)
        raise


logs.run_plain(main, lambda: 'kept model.ckpt-7')
"""


def test_a_second_sigterm_does_not_cut_the_training_s_save():
    """The steps' handler raised at every SIGTERM: a second one cut the save of the step the
    first stopped at (the scripts' ignores it, as README says). One line, then the end by the
    signal, as elsewhere in the scripts."""
    proc = run_python(SECOND_SIGTERM_IN_THE_SAVE)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert proc.stderr.splitlines()[-2:] == [
        'saved',
        'child: terminated (SIGTERM); kept model.ckpt-7',
    ], proc.stderr
