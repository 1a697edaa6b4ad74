"""A cluster's failures end in one line, in time (training/cluster.py): a parameter server that
is missing at the start or dies mid-run (no hang, no thread tracebacks), a session that
MonitoredSession re-creates after a ps restart (its old failure and counts dropped), a port in
use, TF's errors with their reason. Unit tests of the functions, and one run of a tiny model as
2 processes (ps and chief) whose ps is killed."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import tensorflow as tf

from tests.conftest import script_env
from tf_extended import tf_errors
from training import cluster as cluster_lib

v1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Logs(list):
    def __call__(self, fmt, *args):
        self.append(fmt % args if args else fmt)


def _cluster(job='worker', index=0, ps_port=None):
    ps = f'127.0.0.1:{ps_port or _free_port()}'
    return cluster_lib.cluster_from(ps, 'h1:2,h2:3', job, index, environ={})


# Parameter servers that do not answer.


def test_wait_for_ps_names_the_ps_that_does_not_answer(monkeypatch):
    monkeypatch.setattr(cluster_lib, 'PS_PROBE_SECS', 0.1)
    cluster = _cluster()
    address = cluster.spec.task_address('ps', 0)
    logs = Logs()
    start = time.time()
    with pytest.raises(cluster_lib.ClusterError) as error:
        cluster_lib.wait_for_ps(cluster, 1, log=logs)
    assert time.time() - start < 5
    assert str(error.value) == (
        f'worker 0 (h1:2): the parameter server(s) ps 0 ({address}) did not answer within 1 s '
        '(--cluster_wait_secs): start them, or check the addresses in --ps_hosts.'
    )
    assert (
        logs[0] == f'Waiting for the parameter server(s) ps 0 ({address}) to answer (0 s of 1 s).'
    )
    # A listening port answers at once.
    with socket.socket() as server:
        server.bind(('127.0.0.1', 0))
        server.listen()
        listening = _cluster(ps_port=server.getsockname()[1])
        assert cluster_lib.unreachable_ps(listening) == []
        cluster_lib.wait_for_ps(listening, 1, log=logs)
    assert len(logs) == 1


def _replication(probe, lost, wait_secs=1, index=0):
    logs = Logs()
    replication = cluster_lib.Replication(
        _cluster(index=index),
        sync=True,
        wait_secs=wait_secs,
        log=logs,
        warn=logs,
        on_ps_lost=lost.append,
        probe=probe,
    )
    return replication, logs


def test_ps_watch_ends_the_process_when_a_ps_stays_away(monkeypatch):
    monkeypatch.setattr(cluster_lib, 'PS_PROBE_SECS', 0.05)
    lost = []
    replication, logs = _replication(lambda c: [c.spec.task_address('ps', 0)], lost)
    address = replication.cluster.spec.task_address('ps', 0)
    thread = threading.Thread(target=replication._watch_ps)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and len(lost) == 1
    assert re.fullmatch(
        rf'worker 0 \(h1:2\) stops: the parameter server\(s\) ps 0 \({address}\) did not answer '
        r'for \d s \(--cluster_wait_secs\); restart every process of the cluster to resume from '
        r'the last checkpoint\.',
        lost[0],
    ), lost
    assert logs == [
        f'The parameter server(s) ps 0 ({address}) do not answer; waiting up to 1 s '
        '(--cluster_wait_secs) for them to come back.'
    ]


def test_ps_watch_forgets_a_ps_that_came_back(monkeypatch):
    monkeypatch.setattr(cluster_lib, 'PS_PROBE_SECS', 0.05)
    answers = iter([True] * 3 + [False] * 1000)
    lost = []
    replication, logs = _replication(
        lambda c: [c.spec.task_address('ps', 0)] if next(answers) else [], lost, wait_secs=5
    )
    thread = threading.Thread(target=replication._watch_ps)
    thread.start()
    time.sleep(0.6)
    replication._stop.set()
    thread.join(10)
    assert lost == [] and len(logs) == 2, logs
    assert logs[0].endswith(
        'do not answer; waiting up to 5 s (--cluster_wait_secs) for them to come back.'
    )
    assert logs[1] == 'The parameter servers answer again.'


class ClosedSession:
    """What a hook's thread holds once MonitoredSession closed its session."""

    def __init__(self):
        self.calls = 0

    def run(self, *args, **kwargs):
        self.calls += 1
        raise RuntimeError('Attempted to use a closed Session.')


def test_hook_threads_end_quietly_on_a_closed_session():
    replication, logs = _replication(lambda c: [], [])
    replication._broadcast = replication._message = replication._drain_events = None
    replication._sync_step = replication._interrupt = None
    chief, session = replication.chief_hook, ClosedSession()
    chief._session = session
    chief._heartbeat(session)  # each returns (before: RuntimeError in the thread)
    chief._monitor(session)
    chief._sync_loop(session)
    worker, worker_logs = _replication(lambda c: [], [], index=1)
    worker._watch = None
    worker.worker_hook._session = session
    worker.worker_hook._watch(session)
    assert session.calls == 4
    assert logs == [] and worker_logs == [] and chief.failure is None


class FakeSession:
    """A re-created session of the chief: the step restored from the last checkpoint, the
    parameter servers' chief queue already holding this chief."""

    def __init__(self, replication, step):
        self._r, self.step = replication, step

    def run(self, fetches, *args, **kwargs):
        if fetches is self._r._start:
            return {'step': self.step, 'chiefs_before': 1}
        if fetches is self._r._drain_events:
            return [], [], []
        return None


def test_a_new_session_drops_the_old_ones_failure_and_counts():
    replication, logs = _replication(lambda c: [], [])
    r = replication
    r.last_step = 90  # the new session's step: after_create_session stops there
    r._start, r._drain_events, r._broadcast, r._message = {}, object(), object(), None
    r._interrupt = None
    hook = r.chief_hook
    first = ClosedSession()
    hook._reset(first)
    for step in range(1, 10):
        hook._record(step, [1, 1])
    error = tf.errors.UnavailableError(
        None, None, 'Graph execution error:\n\nDetected at node x\nNode: x\nSocket closed\n'
    )
    hook._fail(first, cluster_lib.ClusterError(f'The update failed: {tf_errors.reason(error)}'))
    assert str(hook.failure) == 'The update failed: Socket closed'  # TF's reason, not line 1
    coord = v1.train.Coordinator()
    second = FakeSession(r, 90)
    hook.after_create_session(second, coord)  # no 'already served a chief': it is this one
    r.stop_threads()
    hook._fail(first, cluster_lib.ClusterError('late error of the old session'))
    assert hook.failure is None and hook.sessions == 2
    assert hook.contributions == [0, 0] and hook.distinct == {} and hook.first_step is None
    hook.check()
    assert coord.should_stop()
    assert (
        'A new session (a parameter server failed; the variables are restored from the last '
        'checkpoint): training continues at step 90; the counts below start there.' in logs
    )


# Errors in one line.


def test_port_in_use_is_one_line():
    with socket.socket() as other:
        other.bind(('127.0.0.1', 0))
        other.listen()
        port = other.getsockname()[1]
        cluster = cluster_lib.cluster_from(f'localhost:{port}', 'h1:2', 'ps', 0, environ={})
        with pytest.raises(cluster_lib.ClusterError) as error:
            cluster_lib.start_server(cluster, v1.ConfigProto())
    assert str(error.value) == (
        f'ps 0 cannot listen on localhost:{port} (in use: another process, or a duplicate '
        '--task_index)'
    )


def test_port_in_use_is_one_line_on_the_scripts_stderr():
    """gRPC logged two C++ error lines (add_port.cc, grpc_server_lib.cc) before the script's
    own line saying the same."""
    with socket.socket() as other:
        other.bind(('127.0.0.1', 0))
        other.listen()
        port = other.getsockname()[1]
        # A fresh process: the stderr filter is installed at a script's start-up, which
        # run_script's pre-imported server skips.
        proc = subprocess.run(
            [
                sys.executable,
                os.path.join(ROOT, 'train_ssd_network.py'),
                '--job_name=ps',
                '--task_index=0',
                f'--ps_hosts=localhost:{port}',
                '--worker_hosts=localhost:1',
            ],
            env=script_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[-1] == (
        f'train_ssd_network: error: ps 0 cannot listen on localhost:{port} (in use: another '
        'process, or a duplicate --task_index)'
    )
    assert not [line for line in lines if 'add_port.cc' in line or 'gRPC' in line], lines


def test_tf_errors_of_the_session_become_one_line_cluster_errors():
    replication, logs = _replication(lambda c: [], [], index=1)

    def cancelled(master, config):
        raise tf.errors.CancelledError(
            None, None, 'Graph execution error:\n\nNode: x\nRunGraph was cancelled\n'
        )

    replication.wait_for_model = cancelled
    with pytest.raises(cluster_lib.ClusterError) as error:
        with replication.session('', v1.ConfigProto()):
            pass
    assert str(error.value) == 'worker 1 (h2:3): RunGraph was cancelled'


TF_CONFIG = (
    '{"cluster": {"ps": ["h0:1"], "worker": ["h1:2", "h2:3"]}, '
    '"task": {"type": "worker", "index": 1}}'
)


def test_job_flags_win_over_tf_config():
    logs = Logs()
    cluster = cluster_lib.cluster_from(
        job_name='ps', task_index=0, environ={'TF_CONFIG': TF_CONFIG}, log=logs
    )
    assert (cluster.job_name, cluster.task_index) == ('ps', 0)
    assert cluster.spec.as_dict() == {'ps': ['h0:1'], 'worker': ['h1:2', 'h2:3']}
    assert logs == [
        "--job_name=ps --task_index=0 replace TF_CONFIG's task (worker 1): this process is ps 0."
    ]
    with pytest.raises(
        cluster_lib.UsageError,
        match=r'TF_CONFIG with --job_name/--task_index: '
        r'this process is worker 2, which is not in the cluster',
    ):
        cluster_lib.cluster_from(job_name='worker', task_index=2, environ={'TF_CONFIG': TF_CONFIG})
    logs.clear()
    cluster = cluster_lib.cluster_from(
        'a:1', 'b:2', 'worker', 0, environ={'TF_CONFIG': TF_CONFIG}, log=logs
    )
    assert cluster.spec.as_dict() == {'ps': ['a:1'], 'worker': ['b:2']}
    assert logs == ['TF_CONFIG is ignored: --ps_hosts/--worker_hosts give the cluster.']
    with pytest.raises(cluster_lib.UsageError) as error:
        cluster_lib.cluster_from('a:1', 'b:2', environ={'TF_CONFIG': TF_CONFIG})
    assert str(error.value) == (
        '--job_name (ps or worker) is required with --worker_hosts (TF_CONFIG is ignored: '
        '--ps_hosts/--worker_hosts give the cluster).'
    )


# A ps killed mid-run: the chief (a real process) ends with one line after --cluster_wait_secs.

_PROCESS = r'''
import sys, time
import tensorflow as tf
from training import cluster as cluster_lib
v1 = tf.compat.v1
v1.disable_eager_execution()
job, ps, worker = sys.argv[1], sys.argv[2], sys.argv[3]
spec = tf.train.ClusterSpec({'ps': [ps], 'worker': [worker]})
cluster = cluster_lib.Cluster(spec, job, 0)
config = cluster_lib.add_device_filters(v1.ConfigProto(), cluster)
server = cluster_lib.start_server(cluster, config)
if job == 'ps':
    print('serving', flush=True)
    server.join()
replication = cluster_lib.Replication(cluster, sync=True, wait_secs=4, report_secs=1)
with v1.device(v1.train.replica_device_setter(ps_tasks=1, cluster=spec)):
    step = v1.train.get_or_create_global_step()
    w = v1.get_variable('w', [3], initializer=v1.zeros_initializer())
    opt = replication.optimizer(v1.train.GradientDescentOptimizer(0.1))
    train_op = opt.minimize(tf.reduce_sum(tf.square(w - 1.0)), global_step=step)
with replication.session(server.target, config) as session:
    while not session.should_stop():
        session.run(train_op)
        if session.run(step) == 3:
            print('step 3', flush=True)
        time.sleep(0.05)
'''


def _spawn(*args):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.Popen(
        [sys.executable, '-c', _PROCESS, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_ps_ends_the_chief_with_one_line():
    ps_address, worker_address = f'127.0.0.1:{_free_port()}', f'127.0.0.1:{_free_port()}'
    ps = _spawn('ps', ps_address, worker_address)
    chief = _spawn('worker', ps_address, worker_address)
    try:
        for line in chief.stdout:
            if line.startswith('step 3'):
                break
        ps.send_signal(signal.SIGKILL)
        killed = time.time()
        out, err = chief.communicate(timeout=60)
        took = time.time() - killed
    finally:
        for process in (ps, chief):
            if process.poll() is None:
                process.kill()
            process.wait()
    assert chief.returncode == 1, err[-3000:]
    assert 4 <= took < 30, took
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(
        rf'-c: error: worker 0 \({worker_address}\) stops: the parameter server\(s\) ps 0 '
        rf'\({ps_address}\) did not answer for \d+ s \(--cluster_wait_secs\); restart every '
        r'process of the cluster to resume from the last checkpoint\.',
        last,
    ), err[-3000:]
    assert 'Exception in thread' not in err and 'Traceback' not in err, err[-3000:]


def test_interrupted_worker_says_the_chief_keeps_the_checkpoints(tmp_path, monkeypatch):
    from absl import flags
    from absl.testing import flagsaver

    import train_ssd_network as script

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    monkeypatch.delenv('TF_CONFIG', raising=False)
    hosts = dict(ps_hosts='h0:1', worker_hosts='h1:2,h2:3', train_dir=str(tmp_path))
    with flagsaver.flagsaver(job_name='worker', task_index=1, **hosts):
        assert script._interrupted() == (
            'the chief keeps the checkpoints; restart this worker with the same command to '
            'rejoin the training'
        )
    with flagsaver.flagsaver(job_name='ps', task_index=0, **hosts):
        assert script._interrupted() == (
            'this parameter server keeps nothing on disk (the chief keeps the checkpoints); '
            'restart it with the same command'
        )
    with flagsaver.flagsaver(job_name='worker', task_index=0, **hosts):  # the chief: as before
        assert script._interrupted() == (
            f'no checkpoint was written yet in {tmp_path}; run the same command to start again'
        )


def test_resume_line_is_the_chiefs_only():
    from training import trainer

    worker, chief = _cluster(index=1), _cluster(index=0)
    assert trainer.resume_line('/t/model.ckpt-10', 10, None, worker) == (
        'the chief resumes the model (model.ckpt-10, step 10, is in --train_dir); this worker '
        "restores nothing: it trains the parameter servers' variables from their step"
    )
    assert trainer.resume_line('/t/model.ckpt-10', 10, 'vgg.ckpt', chief) == (
        'resuming from /t/model.ckpt-10 (step 10, found in --train_dir); --checkpoint_path '
        'vgg.ckpt is ignored'
    )
    # Without --checkpoint_path: no 'None is ignored' on every resume.
    assert trainer.resume_line('/t/model.ckpt-10', 10, None, chief) == (
        'resuming from /t/model.ckpt-10 (step 10, found in --train_dir)'
    )
