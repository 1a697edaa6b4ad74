"""Several machines (training/cluster.py): who is who, synchronous steps that aggregate distinct
workers, asynchronous steps that add up, and a cluster that starts and ends by itself.

In-process tests put a parameter server and the workers of a tiny model (w -> loss (w - t_i)^2
on worker i) in one process, each on its own gRPC server and thread, and count the workers' pushes
per step from the chief's worker-id accumulator; the averaged gradient is checked through the
weights (both workers' targets must be in every step's mean). The end-to-end run of
train_ssd_network.py as 1 ps + 2 workers is tests/test_train_run.py's
test_one_ps_two_workers_sync_replicas.
"""

import json
import re
import threading
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import free_ports
from training import cluster as cluster_lib

v1 = tf.compat.v1
LR = 0.1


# Cluster settings: host flags and TF_CONFIG.


def test_flags_and_tf_config_give_the_same_cluster():
    flags = cluster_lib.cluster_from('h0:1', 'h1:2,h2:3', 'worker', 1, environ={})
    config = {
        'cluster': {'ps': ['h0:1'], 'worker': ['h1:2', 'h2:3']},
        'task': {'type': 'worker', 'index': 1},
    }
    env = cluster_lib.cluster_from(environ={'TF_CONFIG': json.dumps(config)})
    assert flags.spec.as_dict() == env.spec.as_dict()
    assert (flags.job_name, flags.task_index) == (env.job_name, env.task_index) == ('worker', 1)
    assert not flags.is_chief and flags.num_workers == 2 and flags.num_ps == 1
    assert cluster_lib.cluster_from(environ={}).spec is None  # alone


@pytest.mark.parametrize(
    'flags,config,message',
    [
        (('', 'h1:2', 'worker', 0), None, 'at least one ps'),
        (('h0:1', 'h1:2', 'worker', 1), None, 'worker 1, which is not in the cluster'),
        (('h0:1', 'h1:2', None, 0), None, '--job_name'),
        (
            None,
            {
                'cluster': {'ps': ['h0:1'], 'worker': ['h1:2']},
                'task': {'type': 'worker', 'index': 3},
            },
            'worker 3, which is not in the cluster',
        ),
        (
            None,
            {
                'cluster': {'chief': ['h:1'], 'ps': ['h0:1'], 'worker': ['h1:2']},
                'task': {'type': 'worker', 'index': 0},
            },
            "only ps and worker jobs",
        ),
        (None, {'cluster': {'ps': ['h0:1'], 'worker': ['h1:2']}}, 'TF_CONFIG needs'),
    ],
)
def test_cluster_settings_are_checked_alike(flags, config, message):
    with pytest.raises(cluster_lib.UsageError, match=message):
        if flags:
            cluster_lib.cluster_from(*flags, environ={})
        else:
            cluster_lib.cluster_from(environ={'TF_CONFIG': json.dumps(config)})


def test_replicas_to_aggregate_at_most_the_workers():
    cluster = cluster_lib.cluster_from('h0:1', 'h1:2,h2:3', 'worker', 0, environ={})
    with pytest.raises(cluster_lib.UsageError, match='replicas_to_aggregate=3 with 2 workers'):
        cluster_lib.Replication(cluster, sync=True, replicas_to_aggregate=3)


def test_role_is_described():
    cluster = cluster_lib.cluster_from('h0:1', 'h1:2,h2:3', 'worker', 1, environ={})
    text = cluster_lib.describe_role(cluster, True, None, 600)
    assert 'ps 0 (h0:1); workers 0 (h1:2, the chief), 1 (h2:3)' in text
    assert 'worker 1 (h2:3)' in text and 'distinct workers' in text and '600 s' in text


# In-process clusters of a tiny model.


class Logs:
    """Collects a process' log lines (Replication's log and warn)."""

    def __init__(self):
        self.lines = []
        self._lock = threading.Lock()

    def __call__(self, fmt, *args):
        with self._lock:
            self.lines.append(fmt % args if args else fmt)

    def text(self):
        with self._lock:
            return '\n'.join(self.lines)

    def wait_for(self, pattern, timeout=120):
        deadline = time.time() + timeout
        while not re.search(pattern, self.text()):
            assert time.time() < deadline, f'no {pattern!r} in:\n{self.text()}'
            time.sleep(0.1)


class LocalCluster:
    """1 ps + `num_workers` gRPC servers in this process."""

    def __init__(self, num_workers=2):
        ports = free_ports(num_workers + 1)
        self.spec = tf.train.ClusterSpec(
            {'ps': [f'127.0.0.1:{ports[0]}'], 'worker': [f'127.0.0.1:{p}' for p in ports[1:]]}
        )
        self.servers = {('ps', 0): tf.distribute.Server(self.spec, 'ps', 0)}
        for i in range(num_workers):
            self.servers['worker', i] = tf.distribute.Server(self.spec, 'worker', i)
        self.ps_result = []
        ps = cluster_lib.Cluster(self.spec, 'ps', 0)
        self.ps_thread = threading.Thread(target=self._serve, args=(ps,), daemon=True)
        self.ps_thread.start()

    def _serve(self, ps):
        try:
            cluster_lib.serve(ps, self.servers['ps', 0], wait_secs=120, log=lambda *a: None)
            self.ps_result.append('ended')
        except cluster_lib.ClusterError as e:
            self.ps_result.append(e)


class Worker:
    """One worker of the tiny model on its own thread; `kill()` closes its session the way a
    killed process' would go (no last message, pending operations cancelled)."""

    def __init__(
        self,
        local,
        task,
        sync=True,
        last_step=6,
        replicas=None,
        wait_secs=60,
        report_secs=1.0,
        silent_secs=3.0,
    ):
        self.local, self.task = local, task
        self.logs = Logs()
        self.error = None
        self.killed = False
        self.raw_session = None
        self.pause_at = None
        self.paused = threading.Event()
        cluster = cluster_lib.Cluster(local.spec, 'worker', task)
        self.graph = tf.Graph()
        with self.graph.as_default():
            device = v1.train.replica_device_setter(
                ps_tasks=1, worker_device=f'/job:worker/task:{task}', cluster=local.spec
            )
            with v1.device(device):
                global_step = v1.train.get_or_create_global_step()
                self.weights = v1.get_variable('w', [3], initializer=v1.zeros_initializer())
            with v1.device(f'/job:worker/task:{task}'):
                loss = tf.reduce_sum(tf.square(self.weights - float(task + 1)))
            self.replication = cluster_lib.Replication(
                cluster,
                sync=sync,
                replicas_to_aggregate=replicas,
                last_step=last_step,
                wait_secs=wait_secs,
                log=self.logs,
                warn=self.logs,
                report_secs=report_secs,
                silent_secs=silent_secs,
            )
            opt = self.replication.optimizer(v1.train.GradientDescentOptimizer(LR))
            with v1.device(device):
                self.train_op = opt.minimize(loss, global_step=global_step)
            self.hooks = [v1.train.StopAtStepHook(last_step=last_step), _Grab(self)]
            self.config = cluster_lib.add_device_filters(v1.ConfigProto(), cluster)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        try:
            with (
                self.graph.as_default(),
                self.replication.session(
                    self.local.servers['worker', self.task].target,
                    self.config,
                    hooks=self.hooks,
                    stop_grace_period_secs=1,
                ) as session,
            ):
                while not session.should_stop():
                    session.run(self.train_op)
        except Exception as e:  # pylint: disable=broad-except
            self.error = e

    def kill(self):
        # Its heartbeats stop; it sends no LEAVE and, as a chief, no final message.
        self.replication._stop.set()
        self.replication._end_cluster = lambda *args: None
        self.raw_session.close()
        self.killed = True

    def join(self, timeout=180):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), self.logs.text()
        return self

    @property
    def hook(self):
        return self.replication.chief_hook or self.replication.worker_hook


class _Grab(v1.train.SessionRunHook):
    """Keeps the raw session (for `kill`) and can hold the worker before a run (`pause_at`), so
    that a test kills it between two steps."""

    def __init__(self, worker):
        self._worker = worker
        self.runs = 0

    def after_create_session(self, session, coord):
        self._worker.raw_session = session

    def before_run(self, run_context):
        if self.runs == self._worker.pause_at:
            self._worker.paused.set()
            while not self._worker.killed:
                time.sleep(0.05)

    def after_run(self, run_context, run_values):
        self.runs += 1


def _expected_sync_weights(steps, targets):
    """Gradient descent on the mean loss of the workers' targets, from 0."""
    w = 0.0
    for _ in range(steps):
        w -= LR * np.mean([2.0 * (w - t) for t in targets])
    return w


def test_sync_each_step_aggregates_both_workers():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=6)
    worker = Worker(local, 1, last_step=6)
    _record_final_weights(chief)
    chief.start(), worker.start()
    chief.join(), worker.join()
    assert chief.error is None and worker.error is None, (chief.error, worker.error)
    hook = chief.hook
    assert hook.contributions == [6, 6], chief.logs.text()
    assert hook.distinct == {2: 6} and not hook.irregular
    assert (hook.first_step, hook.last_step) == (1, 6)
    assert worker.hook.runs == 6 and chief.hook.runs == 6
    # Every step's mean has both targets (1 and 2) in it.
    np.testing.assert_allclose(
        chief.final_weights, [_expected_sync_weights(6, [1.0, 2.0])] * 3, rtol=1e-5
    )
    local.ps_thread.join(30)
    assert local.ps_result == ['ended']
    assert 'Synchronous steps 1-6: 6 steps of 2 distinct workers' in chief.logs.text()


def _record_final_weights(worker):
    """Reads the weights in the chief's `end` (before the cluster ends)."""

    class Read(v1.train.SessionRunHook):
        def end(self, session):
            worker.final_weights = session.run(worker.weights)

    worker.hooks.append(Read())


def test_chief_waits_for_a_late_worker_then_both_contribute():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=4).start()
    chief.logs.wait_for(r'Waiting for 1 more worker\(s\) of worker 1 \(127\.0\.0\.1:\d+\) to join')
    time.sleep(1.0)
    worker = Worker(local, 1, last_step=4).start()
    chief.join(), worker.join()
    assert chief.error is None and worker.error is None, (chief.error, worker.error)
    assert chief.hook.contributions == [4, 4] and chief.hook.distinct == {2: 4}
    assert re.search(r'worker 1 \(127\.0\.0\.1:\d+\) joined at step 0', chief.logs.text())


def test_killed_worker_is_reported_and_its_restart_contributes():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=8)
    _record_final_weights(chief)
    worker = Worker(local, 1, last_step=8)
    worker.pause_at = 3  # killed after 3 steps, between two runs
    chief.start(), worker.start()
    assert worker.paused.wait(120), worker.logs.text()
    worker.kill()
    chief.logs.wait_for(
        r'Step 4 has waited \d+ s for the gradients of worker 1 '
        r'\(127\.0\.0\.1:\d+\) \(not heard from for \d+ s: killed\?\)'
    )
    restarted = Worker(local, 1, last_step=8).start()
    chief.join(), restarted.join(), worker.join()
    assert chief.error is None and restarted.error is None, (chief.error, restarted.error)
    assert re.search(
        r'worker 1 \(127\.0\.0\.1:\d+\) joined again \(restarted\) at step 3', chief.logs.text()
    )
    assert chief.hook.contributions == [8, 8] and chief.hook.distinct == {2: 8}
    assert restarted.hook.runs == 5
    np.testing.assert_allclose(
        chief.final_weights, [_expected_sync_weights(8, [1.0, 2.0])] * 3, rtol=1e-5
    )
    local.ps_thread.join(30)
    assert local.ps_result == ['ended']


def test_worker_missing_for_wait_secs_stops_the_cluster_with_a_message():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=8)
    worker = Worker(local, 1, last_step=8)
    worker.pause_at = 2
    chief.start(), worker.start()
    assert worker.paused.wait(120), worker.logs.text()
    chief.replication.wait_secs = 4  # (not before: a busy machine may take longer to start)
    worker.kill()
    chief.join(), worker.join()
    assert isinstance(chief.error, cluster_lib.ClusterError), chief.logs.text()
    assert re.search(
        r'No synchronous step for \d+ s \(--cluster_wait_secs=4\): step 3 still '
        r'waits for the gradients of worker 1 \(127\.0\.0\.1:\d+\)',
        str(chief.error),
    )
    local.ps_thread.join(30)
    assert 'reported a failure' in str(local.ps_result[0])


def test_chief_gives_up_on_a_worker_that_never_joins():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=4, wait_secs=3).start()
    chief.join()
    assert isinstance(chief.error, cluster_lib.ClusterError)
    assert re.search(
        r'waited \d+ s \(--cluster_wait_secs\) for 1 more worker\(s\) of worker 1 '
        r'\(127\.0\.0\.1:\d+\)',
        str(chief.error),
    )
    local.ps_thread.join(30)
    assert 'reported a failure' in str(local.ps_result[0])


def test_backup_worker_steps_aggregate_one_distinct_worker_each():
    local = LocalCluster(2)
    workers = [Worker(local, i, last_step=6, replicas=1) for i in (1, 0)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    chief = workers[1]
    assert chief.error is None and workers[0].error is None
    assert chief.hook.distinct == {1: 6} and sum(chief.hook.contributions) == 6
    assert not chief.hook.irregular


def test_async_steps_of_the_workers_add_up_to_the_last_step():
    local = LocalCluster(2)
    worker = Worker(local, 1, sync=False, last_step=20).start()  # waits for the model
    chief = Worker(local, 0, sync=False, last_step=20).start()
    chief.join(), worker.join()
    assert chief.error is None and worker.error is None, (chief.error, worker.error)
    assert chief.hook.runs + worker.hook.runs == 20, (chief.hook.runs, worker.hook.runs)
    assert re.search(r'applied \d+ asynchronous steps; the global step is 20', worker.logs.text())
    local.ps_thread.join(30)
    assert local.ps_result == ['ended']


def test_restarted_chief_stops_the_cluster_with_a_message():
    """A chief killed mid-run cannot take over the live cluster (its workers are in the middle
    of a step): the new chief says so and every process stops with an error; restarting them
    all resumes from the last checkpoint."""
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=8)
    chief.pause_at = 2
    worker = Worker(local, 1, last_step=8)
    chief.start(), worker.start()
    assert chief.paused.wait(120), chief.logs.text()
    chief.kill()
    chief.join()
    second = Worker(local, 0, last_step=8).start()
    second.join(), worker.join()
    assert 'already served a chief' in str(second.error), second.logs.text()
    assert 'reported a failure' in str(worker.error), worker.logs.text()
    local.ps_thread.join(30)
    assert 'reported a failure' in str(local.ps_result[0])


class _Interrupt(v1.train.SessionRunHook):
    """Ctrl-C on a worker: KeyboardInterrupt before its run `at`."""

    def __init__(self, at):
        self.at, self.runs = at, 0

    def before_run(self, run_context):
        if self.runs == self.at:
            raise KeyboardInterrupt
        self.runs += 1


def test_interrupted_worker_tells_the_chief_it_leaves_and_rejoins():
    local = LocalCluster(2)
    chief = Worker(local, 0, last_step=6)
    worker = Worker(local, 1, last_step=6)
    worker.hooks.append(_Interrupt(2))
    interrupted = []

    def run():
        try:
            Worker._run(worker)
        except KeyboardInterrupt:
            interrupted.append(True)

    worker.thread = threading.Thread(target=run, daemon=True)
    chief.start(), worker.start()
    worker.join()
    assert interrupted == [True], worker.logs.text()
    assert 'Told the chief that this worker leaves.' in worker.logs.lines
    chief.logs.wait_for(
        r'worker 1 \(127\.0\.0\.1:\d+\) left \(interrupted; it rejoins when restarted\)\.'
    )
    restarted = Worker(local, 1, last_step=6).start()
    chief.join(), restarted.join()
    assert chief.error is None and restarted.error is None, (chief.error, restarted.error)
    assert chief.hook.contributions == [6, 6] and chief.hook.distinct == {2: 6}


def test_joins_after_a_parameter_server_restart_are_not_worker_restarts():
    """A restarted parameter server loses the event queues, so every worker's MonitoredSession
    joins the chief's new session again: the chief logged 'joined again (restarted)' for workers
    that never restarted. A join within one session is still a restart."""
    logs = Logs()
    spec = tf.train.ClusterSpec({'ps': ['h:1'], 'worker': ['h:2', 'h:3', 'h:4']})
    replication = types.SimpleNamespace(
        cluster=cluster_lib.Cluster(spec, 'worker', 0),
        log=logs,
        _drain_events='drain',
        silent_secs=3.0,
    )
    hook = cluster_lib.ChiefHook(replication)

    class Session:
        def __init__(self, events):
            self.events = events

        def run(self, fetches, options=None):
            assert fetches == 'drain'
            events, self.events = self.events, []
            return [np.array(column) for column in zip(*events)] if events else [[], [], []]

    join = cluster_lib.JOIN
    first = Session([(1, join, 0), (2, join, 0)])
    hook._reset(first)
    hook._poll(first)
    second = Session([(1, join, 20), (1, join, 20)])
    hook._reset(second)
    hook._poll(second)
    assert [line.split(') ', 1)[1] for line in logs.lines] == [
        'joined at step 0.',
        'joined at step 0.',
        'joined the new session at step 20.',
        'joined again (restarted) at step 20.',
    ]
    assert hook.present == {0, 1} and hook.rejoining == {2}
    hook.heard[2] = time.time()  # heard before the restart: it was 'left'
    assert hook._missing(19)[1] == (
        f"{replication.cluster.task('worker', 1)} (alive, its gradients have not arrived), "
        f"{replication.cluster.task('worker', 2)} (not back yet in the session after the "
        'parameter server restart)'
    )
