"""Training on several machines: TensorFlow's between-graph replication, with steps that are what
they say and a cluster that starts and ends by itself.

Roles. Parameter servers (`ps`) hold the variables; every `worker` trains; worker 0 is the chief:
it initialises or resumes the model, writes checkpoints and summaries, and ends the cluster.

Synchronous steps (`sync=True`). Each global step averages the gradients of
`replicas_to_aggregate` *distinct* workers (default: all of them). Workers push their gradients into
accumulators on the parameter servers; the chief takes `replicas_to_aggregate` of them, applies
their mean and hands every worker a token for the next step. Unlike TF's SyncReplicasOptimizer
(one shared token queue that the chief fills at start, so one fast worker could push twice into the
same step), every worker has a token queue of its own and pushes once per step: it waits for a
token newer than the step it pushed for. A worker-id accumulator beside the gradient accumulators
counts which workers each step aggregated; the chief checks and logs it. The chief waits (up to
`wait_secs`) for enough workers to join before the first step and names the missing ones; a step
that waits for a worker that died is reported every 30 s, and after `wait_secs` the chief stops
with a message naming it; a worker that restarts in time rejoins and contributes.

With fewer `replicas_to_aggregate` than workers (backup workers), each variable averages that many
distinct workers, but not necessarily the same ones for every variable (each accumulator takes
the first pushes it receives); the log's counts are those of the worker-id accumulator.

Asynchronous steps (`sync=False`): every worker applies its own gradients as soon as they are
computed; with a last step, a worker takes a step number (`count_up_to` on the global step) before
it applies, so the steps of all workers add up to the last step exactly.

Start and end. Every process logs its role, the cluster and what it waits for. Workers wait (up
to `wait_secs`) for the chief to initialise the model; the chief sends a heartbeat to every other
process through queues on the parameter servers, and at its end, once the workers have finished
their last step, a final message: ended (every process exits with status 0) or failed (non-zero).
A process that hears nothing from the chief for `wait_secs` stops with an error. A restarted chief
cannot take over a running cluster (workers and accumulators are in the middle of a step): it says
so and ends the cluster with FAILED; restarting every process resumes from the last checkpoint.

Parameter servers. TF waits for a missing parameter server forever (and silently), so workers
probe the ps ports themselves (`wait_for_ps`, `unreachable_ps`): before any session, for
`wait_secs` at most; while training, from a thread (`Replication._watch_ps`) that ends the process
with one line when a ps stays away for `wait_secs`. A ps back in time (restarted: its variables
are gone) makes MonitoredSession create a new session, in which the chief restores the last
checkpoint; the old session's threads end quietly and its failure and counts are dropped.
"""

import contextlib
import dataclasses
import json
import os
import random
import re
import socket
import sys
import threading
import time
from typing import Optional

from absl import logging
import tensorflow as tf

from nets import ssd_params
from tf_extended import logs
from tf_extended import texts
from tf_extended import tf_errors

v1 = tf.compat.v1

HEARTBEAT_SECS = 2.0
# A worker not heard from for this long (it sends a heartbeat every second) is reported as gone
# (killed, or its machine is) and not waited for at the end.
SILENT_SECS = 15.0
# Seconds between reports of a synchronous step that waits for gradients.
REPORT_SECS = 30.0
# Seconds between the TCP probes of the parameter servers' ports (`unreachable_ps`), and the
# timeout of one probe.
PS_PROBE_SECS = 2.0
# Seconds between the log lines of a wait for the parameter servers.
PS_LOG_SECS = 10.0
# A parameter server stays up this long after the chief's final message, so that the chief can
# close its session before the server goes.
PS_LINGER_SECS = 2.0
TOKEN_WAIT_TAG = 'ssd_cluster: waiting for a token was interrupted'
_MISSING = object()

# Events, worker -> chief: (task index, kind, value).
JOIN, LEAVE, ALIVE, PUSHED = 1, 2, 3, 4
# Messages, chief -> every other process.
RUNNING, ENDED, FAILED = 1, 2, 3
SILENT = 4  # not a message: the chief was not heard from for wait_secs


class ClusterError(RuntimeError):
    """The cluster cannot train (the message says which process and why)."""


class UsageError(ValueError):
    """Cluster settings that cannot work (the message says which)."""


def _ps_device(index):
    return f'/job:ps/task:{index}/device:CPU:0'


@dataclasses.dataclass
class Cluster:
    """This process' place: alone (spec None), or `job_name`/`task_index` of a cluster."""

    spec: Optional[tf.train.ClusterSpec] = None
    job_name: Optional[str] = None
    task_index: int = 0

    @property
    def is_chief(self):
        return self.spec is None or (self.job_name == 'worker' and self.task_index == 0)

    @property
    def num_workers(self):
        return 1 if self.spec is None else len(self.spec.job_tasks('worker'))

    @property
    def num_ps(self):
        return 0 if self.spec is None else len(self.spec.job_tasks('ps'))

    @property
    def worker_device(self):
        return '' if self.spec is None else f'/job:worker/task:{self.task_index}'

    def task(self, job, index):
        """'worker 1 (host:port)'."""
        return f'{job} {index} ({self.spec.task_address(job, index)})'

    def workers(self, indices):
        return ', '.join(self.task('worker', i) for i in sorted(indices))

    def describe(self):
        """'ps 0 (h:p); workers 0 (h:p, the chief), 1 (h:p)'."""
        ps = ', '.join(f'{i} ({a})' for i, a in enumerate(self.spec.job_tasks('ps')))
        workers = ', '.join(
            f"{i} ({a}{', the chief' if i == 0 else ''})"
            for i, a in enumerate(self.spec.job_tasks('worker'))
        )
        return f'ps {ps}; workers {workers}'


def _jobs_from_flags(ps_hosts, worker_hosts):
    jobs = {'worker': [h for h in worker_hosts.split(',') if h]}
    if ps_hosts:
        jobs['ps'] = [h for h in ps_hosts.split(',') if h]
    return jobs


_TF_CONFIG_SHAPE = (
    'TF_CONFIG needs {"cluster": {"ps": ["host:port", ...], "worker": ["host:port", ...]}, '
    '"task": {"type": "ps" or "worker", "index": n}}'
)


def _is_address(address):
    host, _, port = address.rpartition(':')
    return bool(host) and re.fullmatch('[0-9]{1,5}', port) is not None and int(port) <= 65535


def _tf_config(text):
    """(jobs, (job, index)) of TF_CONFIG's JSON; UsageError naming the field that is not what it
    must be (JSON holds any value: a string for a list, 1e400 or 0.9 for an index). The ps and
    worker jobs are lists of strings here; `cluster_from` checks the rest as for the flags."""

    def bad(field, value, expected):
        shown = 'missing' if value is _MISSING else texts.shown(value)
        return UsageError(
            f'TF_CONFIG: {field} is {shown}, expected {expected}; {_TF_CONFIG_SHAPE}.'
        )

    try:
        config = json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise UsageError(
            f'TF_CONFIG is not JSON ({type(e).__name__}: {e}); {_TF_CONFIG_SHAPE}.'
        ) from None
    if not isinstance(config, dict):
        raise bad('the value', config, 'a JSON object')
    jobs, task = config.get('cluster', _MISSING), config.get('task', _MISSING)
    if not isinstance(jobs, dict):
        raise bad('"cluster"', jobs, 'an object of jobs (ps, worker) and their addresses')
    for job in ('ps', 'worker'):
        addresses = jobs.get(job, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise bad(f'"cluster.{job}"', addresses, 'a list of "host:port" strings')
    if not isinstance(task, dict):
        raise bad('"task"', task, 'an object with this process\' "type" and "index"')
    job, index = task.get('type', _MISSING), task.get('index', 0)
    if job not in ('ps', 'worker'):
        raise bad('"task.type"', job, '"ps" or "worker"')
    if not ssd_params.is_int(index, 0, sys.maxsize):
        raise bad('"task.index"', index, f'an int >= 0 (this process\' place in the {job} list)')
    return jobs, (job, index)


def cluster_from(
    ps_hosts='',
    worker_hosts='',
    job_name=None,
    task_index=0,
    environ=os.environ,
    log=logging.warning,
):
    """The `Cluster` of the host flags, else of TF_CONFIG, else a lone process.

    The flags win where both are given: host flags make TF_CONFIG ignored (said in a `log`
    line); with TF_CONFIG alone, --job_name (and --task_index) replace TF_CONFIG's task (said
    too), so one TF_CONFIG can be shared by every machine. Both sources are checked alike: ps
    and worker jobs only, at least one of each, and this process' job and index in them.
    """
    if worker_hosts or ps_hosts:
        jobs, task, source = (
            _jobs_from_flags(ps_hosts, worker_hosts),
            (job_name, task_index),
            '--ps_hosts/--worker_hosts',
        )
        ignored = (
            ' (TF_CONFIG is ignored: --ps_hosts/--worker_hosts give the cluster)'
            if environ.get('TF_CONFIG')
            else ''
        )
        if job_name is None:
            raise UsageError(f'--job_name (ps or worker) is required with --worker_hosts{ignored}.')
        if ignored:
            log('TF_CONFIG is ignored: --ps_hosts/--worker_hosts give the cluster.')
    elif environ.get('TF_CONFIG'):
        source = 'TF_CONFIG'
        jobs, task = _tf_config(environ['TF_CONFIG'])
        if job_name is not None:
            if (job_name, task_index) != task:
                log(
                    f"--job_name={job_name} --task_index={task_index} replace TF_CONFIG's task "
                    f'({task[0]} {task[1]}): this process is {job_name} {task_index}.'
                )
            task = (job_name, task_index)
            source = 'TF_CONFIG with --job_name/--task_index'
    else:
        return Cluster()
    unknown = set(jobs) - {'ps', 'worker'}
    if unknown:
        raise UsageError(f'{source}: only ps and worker jobs are supported; got {sorted(unknown)}.')
    for job in ('ps', 'worker'):
        if not jobs.get(job):
            raise UsageError(
                f'{source}: the cluster needs at least one {job} (the variables '
                f'live on the parameter servers); got {jobs}.'
            )
    for job in ('ps', 'worker'):
        for address in jobs[job]:
            if not _is_address(address):
                raise UsageError(
                    f'{source}: {job} address {texts.shown(address)} is not host:port (a port '
                    'number, 0 to 65535, after the last colon).'
                )
    job, index = task
    if job not in jobs or not 0 <= index < len(jobs[job]):
        raise UsageError(
            f'{source}: this process is {job} {index}, which is not in the cluster {jobs}.'
        )
    return Cluster(tf.train.ClusterSpec(jobs), job, index)


def add_device_filters(config, cluster):
    """Workers talk to the parameter servers only, not to each other; a ps to itself."""
    if cluster.job_name == 'worker':
        config.device_filters.extend(['/job:ps', f'/job:worker/task:{cluster.task_index}'])
    elif cluster.job_name == 'ps':
        config.device_filters.append(f'/job:ps/task:{cluster.task_index}')
    return config


def start_server(cluster, config):
    """This process' gRPC server. TF binds it to all interfaces (0.0.0.0:port) whatever host
    the cluster names; it has no authentication. ClusterError (one line) when it cannot listen
    (TF only says 'Could not start gRPC server')."""
    try:
        return tf.distribute.Server(
            cluster.spec, job_name=cluster.job_name, task_index=cluster.task_index, config=config
        )
    except tf.errors.OpError as e:
        address = cluster.spec.task_address(cluster.job_name, cluster.task_index)
        if 'Could not start gRPC server' not in str(e):
            raise ClusterError(
                f'{cluster.job_name} {cluster.task_index} ({address}) could not start its '
                f'server: {tf_errors.reason(e)}'
            ) from None
        raise ClusterError(
            f'{cluster.job_name} {cluster.task_index} cannot listen on {address} (in use: '
            'another process, or a duplicate --task_index)'
        ) from None


def unreachable_ps(cluster, timeout=PS_PROBE_SECS):
    """The addresses of the parameter servers whose port refuses a TCP connection (or does not
    answer within `timeout`): a process that is not running, or a machine that is gone. A
    connection opened and closed at once; TF's gRPC server takes it as a client that left."""
    missing = []
    for address in cluster.spec.job_tasks('ps'):
        host, _, port = address.rpartition(':')
        try:
            with socket.create_connection((host.strip('[]'), int(port)), timeout=timeout):
                pass
        except (OSError, ValueError):
            missing.append(address)
    return missing


def wait_for_ps(cluster, wait_secs, log=logging.info, probe=unreachable_ps):
    """Waits (at most `wait_secs`, logging every PS_LOG_SECS which do not answer) until every
    parameter server's port accepts a connection: TF's own session creation would wait for a
    missing one forever, silently. ClusterError naming the ones that never answered."""
    start, next_log = time.time(), 0.0
    while True:
        missing = probe(cluster)
        if not missing:
            return
        waited = time.time() - start
        if waited >= wait_secs:
            raise ClusterError(
                f'{cluster.task(cluster.job_name, cluster.task_index)}: the parameter server(s) '
                f'{_ps_names(cluster, missing)} did not answer within {wait_secs} s '
                '(--cluster_wait_secs): start them, or check the addresses in --ps_hosts.'
            )
        if waited >= next_log:
            log(
                'Waiting for the parameter server(s) %s to answer (%d s of %d s).',
                _ps_names(cluster, missing),
                waited,
                wait_secs,
            )
            next_log = waited + PS_LOG_SECS
        time.sleep(min(PS_PROBE_SECS, max(wait_secs - waited, 0.1)))


def _ps_names(cluster, addresses):
    """'ps 0 (h:p), ps 1 (h:p)' of those addresses."""
    tasks = cluster.spec.job_tasks('ps')
    return ', '.join(f'ps {tasks.index(a)} ({a})' for a in addresses)


def _exit_process(message):
    """Ends this process at once with a one-line error (status 1), whatever its threads do."""
    try:
        logging.flush()
        sys.stdout.flush()
        sys.stderr.write(logs.error_line(message) + '\n')
        sys.stderr.flush()
    finally:
        os._exit(1)


def describe_role(cluster, sync, replicas_to_aggregate, wait_secs):
    """What this process is and what it waits for (logged at its start)."""
    me = cluster.task(cluster.job_name, cluster.task_index)
    lines = [f'Cluster: {cluster.describe()}.']
    replicas = replicas_to_aggregate or cluster.num_workers
    mode = (
        f'synchronous: each step averages the gradients of {replicas} distinct workers'
        if sync
        else 'asynchronous: each worker applies its own gradients'
    )
    chief = cluster.task('worker', 0)
    if cluster.job_name == 'ps':
        lines.append(
            f'This process: {me}, holds variables; waits for the chief, {chief}, to '
            f'end training, and stops if it hears nothing from it for {wait_secs} s.'
        )
    elif cluster.is_chief:
        wait = (
            f'waits up to {wait_secs} s for {replicas} workers to join before the first step'
            if sync
            else 'does not wait for the other workers'
        )
        lines.append(
            f'This process: {me}, the chief ({mode}): initialises or resumes the model, '
            f'writes checkpoints and summaries; {wait}; at the end, tells every process '
            'to stop.'
        )
    else:
        lines.append(
            f'This process: {me} ({mode}): waits up to {wait_secs} s for the chief, '
            f'{chief}, to initialise the model, and stops when the chief says so or is '
            f'silent for {wait_secs} s.'
        )
    return ' '.join(lines)


def _queue(name, dtypes, shapes, device):
    """A queue on a parameter server, shared by name between the processes' graphs."""
    with v1.device(None), v1.device(device):
        return v1.FIFOQueue(
            -1, dtypes, shapes=shapes, shared_name='ssd_cluster/' + name, name='ssd_cluster_' + name
        )


def _message_queue(cluster, job, index):
    """The chief's messages to a ps (on that ps) or to a worker (on ps 0)."""
    device = _ps_device(index) if job == 'ps' else _ps_device(0)
    return _queue(f'to_{job}{index}', [tf.int32], [()], device)


def _drain(queue):
    return queue.dequeue_many(queue.size())


# What a thread of the hooks may get from its session: TF's errors, and RuntimeError once the
# session is closed (MonitoredSession closes it to create a new one, e.g. after a ps restart).
_SESSION_ERRORS = (tf.errors.OpError, RuntimeError)


class ReplicatedOptimizer(v1.train.Optimizer):
    """`opt` with the cluster's synchronisation around its `apply_gradients` (see `Replication`)."""

    def __init__(self, opt, replication):
        super().__init__(use_locking=False, name='Replicated')
        self._opt = opt
        self._replication = replication

    def compute_gradients(self, *args, **kwargs):
        return self._opt.compute_gradients(*args, **kwargs)

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        if global_step is None:
            raise ValueError('a cluster needs the global step to synchronise its workers.')
        return self._replication.apply_gradients(self._opt, list(grads_and_vars), global_step)

    def get_slot(self, *args, **kwargs):
        return self._opt.get_slot(*args, **kwargs)

    def get_slot_names(self, *args, **kwargs):
        return self._opt.get_slot_names(*args, **kwargs)

    def variables(self):
        return self._opt.variables()


class Replication:
    """What one process of a cluster adds to its training graph, its hooks and its session.

        replication = Replication(cluster, sync=True, last_step=1000)
        opt = replication.optimizer(opt)        # then opt.apply_gradients(..., global_step)
        with replication.session(master, config, scaffold=..., hooks=..., ...) as session:
            while not session.should_stop():
                session.run(train_op)

    `session` waits for the model (workers), runs the hooks that make the cluster's protocol
    (`ChiefHook`, `WorkerHook`), turns an interrupted wait into `ClusterError` (or a normal end)
    and, on the chief, ends the cluster: `ENDED` or `FAILED` to every other process.
    """

    def __init__(
        self,
        cluster,
        sync=False,
        replicas_to_aggregate=None,
        last_step=None,
        wait_secs=600,
        log=logging.info,
        warn=logging.warning,
        report_secs=REPORT_SECS,
        silent_secs=SILENT_SECS,
        on_ps_lost=_exit_process,
        probe=unreachable_ps,
    ):
        if cluster.spec is None or cluster.job_name != 'worker':
            raise ValueError('replication is for the workers of a cluster.')
        self.cluster = cluster
        self.sync = sync
        self.replicas = replicas_to_aggregate or cluster.num_workers
        if sync and not 1 <= self.replicas <= cluster.num_workers:
            raise UsageError(
                f'--replicas_to_aggregate={self.replicas} with {cluster.num_workers} workers: a '
                'synchronous step takes at most one gradient from each worker, so it needs '
                f'1..{cluster.num_workers}.'
            )
        self.last_step = last_step
        self.wait_secs = wait_secs
        self.report_secs, self.silent_secs = report_secs, silent_secs
        self.log, self.warn = log, warn
        # Called (with a one-line message) when a parameter server stays unreachable for
        # wait_secs during the session; the default ends the process (see `_watch_ps`).
        self.on_ps_lost, self.probe = on_ps_lost, probe
        # Tells this process' own interruption of its token wait from a stale one of an earlier
        # process with the same task index.
        self._incarnation = random.SystemRandom().randrange(1, 2**62)
        self._graph = None
        self._threads = []
        self._stop = threading.Event()
        self.chief_hook = ChiefHook(self) if cluster.is_chief else None
        self.worker_hook = None if cluster.is_chief else WorkerHook(self)

    def optimizer(self, opt):
        return ReplicatedOptimizer(opt, self)

    # Graph.

    def apply_gradients(self, opt, grads_and_vars, global_step):
        self._graph = global_step.graph
        self._global_step = global_step
        self._build_channels(global_step)
        if self.sync:
            return self._apply_sync(opt, grads_and_vars, global_step)
        if self.last_step is None:
            return opt.apply_gradients(grads_and_vars, global_step)
        # Take a step number first: OutOfRange (the end of training) once last_step is reached,
        # so that the workers' steps add up to last_step exactly.
        with v1.device(global_step.device):
            if hasattr(global_step, 'handle'):
                ticket = tf.raw_ops.ResourceCountUpTo(
                    resource=global_step.handle, limit=self.last_step, T=tf.int64
                )
            else:
                ticket = v1.count_up_to(global_step, self.last_step)
        with tf.control_dependencies([ticket]):
            return opt.apply_gradients(grads_and_vars)

    def _build_channels(self, global_step):
        cluster, index = self.cluster, self.cluster.task_index
        with v1.name_scope('ssd_cluster'):
            self._events = _queue(
                'events', [tf.int32, tf.int32, tf.int64], [(), (), ()], _ps_device(0)
            )
            self._step_value = global_step.read_value()
            # Each distinct session.run costs a graph pruning and partitioning (seconds on a
            # busy machine with the SSD graph), so each role's start, watch and end are one run.
            self._start = {'step': self._step_value}
            if cluster.is_chief:
                chiefs = _queue('chiefs', [tf.int64], [()], _ps_device(0))
                self._start['chiefs_before'] = chiefs.size()
                with tf.control_dependencies([self._start['chiefs_before']]):
                    self._start['register'] = chiefs.enqueue(
                        tf.constant(self._incarnation, tf.int64)
                    )
                self._message = v1.placeholder(tf.int32, [], name='message')
                targets = [('ps', j) for j in range(cluster.num_ps)] + [
                    ('worker', w) for w in range(1, cluster.num_workers)
                ]
                self._broadcast = tf.group(
                    *[_message_queue(cluster, job, i).enqueue(self._message) for job, i in targets]
                )
                self._drain_events = _drain(self._events)
            else:

                def event(kind, value):
                    return self._events.enqueue(
                        (tf.constant(index, tf.int32), tf.constant(kind, tf.int32), value)
                    )

                self._start['join'] = event(JOIN, self._step_value)
                self._watch = {
                    'alive': event(ALIVE, tf.constant(0, tf.int64)),
                    'messages': _drain(_message_queue(cluster, 'worker', index)),
                }
                self._end = {'step': global_step.read_value()}
                with tf.control_dependencies([self._end['step']]):
                    self._end['leave'] = event(LEAVE, tf.identity(self._end['step']))
            if self.sync:
                self._tokens = [
                    _queue(f'tokens{w}', [tf.int64], [()], _ps_device(0))
                    for w in range(cluster.num_workers)
                ]
                self._interrupt = self._tokens[index].enqueue(
                    tf.constant(-self._incarnation, tf.int64)
                )

    def _apply_sync(self, opt, grads_and_vars, global_step):
        cluster, index = self.cluster, self.cluster.task_index
        num_workers, replicas = cluster.num_workers, self.replicas
        with v1.device(None), v1.device(cluster.worker_device + '/device:CPU:0'):
            self._local_step = v1.Variable(
                0,
                trainable=False,
                dtype=tf.int64,
                collections=[v1.GraphKeys.LOCAL_VARIABLES],
                name='ssd_cluster/local_step',
            )
            # The step this worker's gradients are for: one read for every accumulator.
            pushed_for = tf.identity(self._local_step.read_value(), name='pushed_for')
        pushes, aggregated, variables, accumulators = [], [], [], []
        for grad, var in grads_and_vars:
            variables.append(var)
            if grad is None:
                aggregated.append(None)
                continue
            with v1.device(None), v1.device(var.device):
                if isinstance(grad, tf.IndexedSlices):
                    acc = v1.SparseConditionalAccumulator(
                        grad.dtype, shape=(), shared_name=var.name + '/ssd_cluster_grad'
                    )
                    pushes.append(acc.apply_indexed_slices_grad(grad, local_step=pushed_for))
                    aggregated.append(acc.take_indexed_slices_grad(replicas))
                else:
                    acc = v1.ConditionalAccumulator(
                        grad.dtype,
                        shape=var.get_shape(),
                        shared_name=var.name + '/ssd_cluster_grad',
                    )
                    pushes.append(acc.apply_grad(grad, local_step=pushed_for))
                    aggregated.append(acc.take_grad(replicas))
            accumulators.append(acc)
        with v1.device(None), v1.device(_ps_device(0)):
            # One-hot worker ids, accumulated like the gradients: the mean of a step's pushes
            # times their number counts each worker's pushes in that step.
            ids = v1.ConditionalAccumulator(
                tf.float32, shape=[num_workers], shared_name='ssd_cluster/worker_ids'
            )
            pushes.append(ids.apply_grad(tf.one_hot(index, num_workers), local_step=pushed_for))
            counts = tf.cast(tf.round(ids.take_grad(replicas) * replicas), tf.int32)
            accumulators.append(ids)
        with v1.device(global_step.device):
            update = opt.apply_gradients(zip(aggregated, variables), global_step)
        with v1.device(None), v1.device(_ps_device(0)):
            with tf.control_dependencies([update]):
                step = tf.identity(global_step.read_value())
            others = [self._tokens[w].enqueue(step) for w in range(1, num_workers)]
            with tf.control_dependencies(others):  # the chief's own token last
                mine = self._tokens[0].enqueue(step)
            with tf.control_dependencies([mine]):
                self._sync_step = (tf.identity(step), tf.identity(counts))
            with tf.control_dependencies(pushes):
                pushed = self._events.enqueue(
                    (tf.constant(index, tf.int32), tf.constant(PUSHED, tf.int32), pushed_for)
                )
            with tf.control_dependencies([pushed]):
                token = self._wait_for_token(pushed_for, global_step)
                check = tf.debugging.Assert(token >= 0, [TOKEN_WAIT_TAG])
        with tf.control_dependencies([check]):
            train_op = self._local_step.assign(token, read_value=False)
        self._start['init'] = self._local_step.assign(global_step.read_value(), read_value=False)
        if cluster.is_chief:
            self._start['init'] = tf.group(
                self._start['init'],
                *[acc.set_global_step(global_step.read_value()) for acc in accumulators],
            )
        return train_op

    def _wait_for_token(self, pushed_for, global_step):
        """The next step this worker may push for: the first token newer than `pushed_for` and
        not older than the global step (stale ones, e.g. of steps it missed, are skipped), or
        this process' own interruption (-incarnation)."""
        queue = self._tokens[self.cluster.task_index]
        mine = tf.constant(-self._incarnation, tf.int64)

        def keep_waiting(token):
            stale = tf.logical_or(token <= pushed_for, token < global_step.read_value())
            return tf.logical_or(
                tf.logical_and(token >= 0, stale),
                tf.logical_and(token < 0, tf.not_equal(token, mine)),
            )

        (token,) = tf.while_loop(
            keep_waiting, lambda token: [queue.dequeue()], [queue.dequeue()], parallel_iterations=1
        )
        return token

    # Session.

    def wait_for_model(self, master, config):
        """Waits (a worker) until the chief has initialised or restored every variable."""
        with self._graph.as_default():
            not_ready = v1.report_uninitialized_variables(v1.global_variables())
        start, next_log, missing = time.time(), 0.0, None
        with v1.Session(master, graph=self._graph, config=config) as session:
            while True:
                try:
                    missing = len(
                        session.run(not_ready, options=v1.RunOptions(timeout_in_ms=10000))
                    )
                    if not missing:
                        return
                    what = f'{missing} variables not initialised yet'
                except (
                    tf.errors.UnavailableError,
                    tf.errors.DeadlineExceededError,
                    tf.errors.AbortedError,
                ) as e:
                    what = f'the parameter servers do not answer yet ({type(e).__name__})'
                waited = time.time() - start
                if waited > self.wait_secs:
                    raise ClusterError(
                        f"{self.cluster.task('worker', self.cluster.task_index)}: the chief, "
                        f"{self.cluster.task('worker', 0)}, did not initialise the model within "
                        f'{self.wait_secs} s (--cluster_wait_secs): {what}.'
                    )
                if waited >= next_log:
                    self.log(
                        'Waiting for the chief, %s, to initialise the model: %s (%d s of %d s).',
                        self.cluster.task('worker', 0),
                        what,
                        waited,
                        self.wait_secs,
                    )
                    next_log = waited + 10.0
                time.sleep(1.0)

    @contextlib.contextmanager
    def session(self, master, config, hooks=(), chief_only_hooks=(), **kwargs):
        """`MonitoredTrainingSession` with the cluster's hooks (the chief's first, so that it
        waits for the workers' last steps before the final checkpoint), ended as the module
        docstring says. `kwargs` go to MonitoredTrainingSession."""
        chief = self.cluster.is_chief
        me = self.cluster.task('worker', self.cluster.task_index)
        ok = False
        try:
            try:
                wait_for_ps(self.cluster, self.wait_secs, self.log, self.probe)
                self.start_thread('ps_watch', self._watch_ps)
                if not chief:
                    self.wait_for_model(master, config)
                with v1.train.MonitoredTrainingSession(
                    master=master,
                    is_chief=chief,
                    config=config,
                    hooks=list(hooks) + ([] if chief else [self.worker_hook]),
                    chief_only_hooks=([self.chief_hook] if chief else []) + list(chief_only_hooks),
                    max_wait_secs=self.wait_secs,
                    **kwargs,
                ) as session:
                    yield session
            except tf.errors.OpError as e:
                if not (isinstance(e, tf.errors.InvalidArgumentError) and TOKEN_WAIT_TAG in str(e)):
                    raise ClusterError(f'{me}: {tf_errors.reason(e)}') from None
            except KeyboardInterrupt:
                if not chief:
                    self.stop_threads()
                    self._tell_chief_left(master, config)
                raise
            (self.chief_hook or self.worker_hook).check()
            ok = True
        finally:
            self.stop_threads()
            if chief:
                self._end_cluster(master, config, ok)

    def _watch_ps(self):
        """A thread: TCP probes of the parameter servers' ports every PS_PROBE_SECS while the
        process runs. TF does not give up on a dead parameter server: MonitoredSession creates
        a new session and waits for the server forever. When one stays unreachable for
        wait_secs, `on_ps_lost` (by default: the process ends with that one line and status 1;
        it cannot be interrupted otherwise, its main thread waits inside TF; the ps held the
        variables, so nothing is lost that the chief's last checkpoint does not have). A ps that
        comes back in time (restarted: the chief restores the last checkpoint) resets it."""
        since = None
        while self.sleep(PS_PROBE_SECS):
            missing = self.probe(self.cluster)
            if not missing:
                if since is not None:
                    self.log('The parameter servers answer again.')
                since = None
                continue
            now = time.time()
            if since is None:
                since = now
                self.warn(
                    'The parameter server(s) %s do not answer; waiting up to %d s '
                    '(--cluster_wait_secs) for them to come back.',
                    _ps_names(self.cluster, missing),
                    self.wait_secs,
                )
            if now - since >= self.wait_secs and not self.stopping:
                self.on_ps_lost(
                    f"{self.cluster.task('worker', self.cluster.task_index)} stops: the "
                    f'parameter server(s) {_ps_names(self.cluster, missing)} did not answer for '
                    f'{int(now - since)} s (--cluster_wait_secs); restart every process of the '
                    'cluster to resume from the last checkpoint.'
                )
                return

    def _tell_chief_left(self, master, config):
        """An interrupted worker's LEAVE (step -1), so that the chief does not wait for it."""
        if self.probe(self.cluster):
            return
        with tf.Graph().as_default() as graph:
            events = _queue('events', [tf.int32, tf.int32, tf.int64], [(), (), ()], _ps_device(0))
            leave = events.enqueue(
                (
                    tf.constant(self.cluster.task_index, tf.int32),
                    tf.constant(LEAVE, tf.int32),
                    tf.constant(-1, tf.int64),
                )
            )
        try:
            with v1.Session(master, graph=graph, config=config) as session:
                session.run(leave, options=v1.RunOptions(timeout_in_ms=5000))
            self.log('Told the chief that this worker leaves.')
        except _SESSION_ERRORS as e:
            self.warn('Could not tell the chief that this worker leaves: %s', tf_errors.reason(e))

    def _end_cluster(self, master, config, ok):
        cluster = self.cluster
        missing = self.probe(cluster)
        if missing:  # a session would wait for them forever
            self.warn(
                'Could not tell the cluster that training %s: the parameter server(s) %s do '
                'not answer.',
                'ended' if ok else 'failed',
                _ps_names(cluster, missing),
            )
            return
        with tf.Graph().as_default() as graph:  # small: a session on it starts in no time
            message = tf.constant(ENDED if ok else FAILED, tf.int32)
            broadcast = tf.group(
                *[
                    _message_queue(cluster, job, i).enqueue(message)
                    for job, i in [('ps', j) for j in range(cluster.num_ps)]
                    + [('worker', w) for w in range(1, cluster.num_workers)]
                ]
            )
        try:
            with v1.Session(master, graph=graph, config=config) as session:
                session.run(broadcast, options=v1.RunOptions(timeout_in_ms=30000))
            self.log(
                'Told the parameter servers and workers that training %s.',
                'ended' if ok else 'failed',
            )
        except tf.errors.OpError as e:
            self.warn(
                'Could not tell the cluster that training %s: %s',
                'ended' if ok else 'failed',
                tf_errors.reason(e),
            )

    # Threads.

    def start_thread(self, name, target):
        thread = threading.Thread(target=target, name='ssd_cluster_' + name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop_threads(self, timeout=30.0):
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]

    def sleep(self, secs):
        """False when the process is stopping."""
        return not self._stop.wait(secs)

    @property
    def stopping(self):
        return self._stop.is_set()


class ChiefHook(v1.train.SessionRunHook):
    """The chief's part: heartbeats, the workers' events, the synchronous updates, the start
    barrier, reports of missing workers, and the wait for the workers' last steps."""

    def __init__(self, replication):
        self._r = replication
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self.failure = None
        self.runs = 0
        self.present = {0}
        self.rejoining = set()  # present before a new session: their joins are not restarts
        self.heard = {}
        self.pushed = {}
        self.contributions = [0] * replication.cluster.num_workers
        self.distinct = {}  # distinct workers -> number of steps
        self.irregular = []  # (step, counts) of steps that did not aggregate distinct workers
        self.first_step = self.last_step = None
        self.sessions = 0  # created by MonitoredSession: more than 1 after a ps restart
        self._session = None

    def _reset(self, session):
        """A new session (MonitoredSession re-creates it when a parameter server failed): the
        old one's failure is void, and the counts start again at the restored step."""
        with self._lock:
            self._session = session
            self.sessions += 1
            # The restarted parameter server lost the event queues: every worker's MonitoredSession
            # joins again without the worker having restarted.
            self.rejoining, self.present = self.present - {0}, {0}
            self.failure = None
            self.contributions = [0] * self._r.cluster.num_workers
            self.distinct, self.irregular = {}, []
            self.first_step = self.last_step = None
            self.pushed = {}

    # Events and messages.

    def _poll(self, session):
        with self._poll_lock:  # one reader at a time: dequeue_many(size) must not wait
            tasks, kinds, values = session.run(
                self._r._drain_events, options=v1.RunOptions(timeout_in_ms=30000)
            )
        now = time.time()
        with self._lock:
            for task, kind, value in zip(tasks, kinds, values):
                task, value = int(task), int(value)
                self.heard[task] = now
                name = self._r.cluster.task('worker', task)
                if kind == JOIN:
                    if task in self.rejoining:
                        how = 'joined the new session'
                    elif task in self.present:
                        how = 'joined again (restarted)'
                    else:
                        how = 'joined'
                    self._r.log('%s %s at step %d.', name, how, value)
                    self.present.add(task)
                    self.rejoining.discard(task)
                elif kind == LEAVE and value < 0:
                    self._r.log('%s left (interrupted; it rejoins when restarted).', name)
                    self.present.discard(task)
                elif kind == LEAVE:
                    self._r.log('%s left at step %d.', name, value)
                    self.present.discard(task)
                elif kind == PUSHED:
                    self.pushed[task] = value
                    self.present.add(task)
                elif kind == ALIVE:
                    self.present.add(task)

    def _heartbeat(self, session):
        while True:
            try:
                session.run(
                    self._r._broadcast,
                    {self._r._message: RUNNING},
                    options=v1.RunOptions(timeout_in_ms=30000),
                )
            except _SESSION_ERRORS as e:
                if self._r.stopping or self._closed(session, e):
                    return
                self._r.warn('Heartbeat to the cluster failed: %s', tf_errors.reason(e))
            if not self._r.sleep(HEARTBEAT_SECS):
                return

    def _closed(self, session, error):
        """True when `session` is no longer the current one (MonitoredSession created a new
        one, e.g. after a parameter server restarted) or is closed: its thread ends quietly."""
        return session is not self._session or isinstance(error, RuntimeError)

    def _fail(self, session, error):
        """Records `error` and interrupts the chief's own wait for a token; not for a session
        that MonitoredSession has replaced meanwhile (its errors are those of the ps that went)."""
        with self._lock:
            if session is not self._session:
                return
            if self.failure is None:
                self.failure = error
        self._r.warn('%s', error)
        try:
            session.run(self._r._interrupt, options=v1.RunOptions(timeout_in_ms=30000))
        except _SESSION_ERRORS:
            pass

    def _missing(self, step):
        """(workers whose gradients for the step after `step` have not arrived, the other
        workers among them described)."""
        now = time.time()
        with self._lock:
            missing = [w for w in range(self._r.cluster.num_workers) if self.pushed.get(w) != step]
            parts = []
            for w in missing:
                if w == 0:
                    continue  # the chief itself: still computing
                if w in self.rejoining:
                    state = 'not back yet in the session after the parameter server restart'
                elif w not in self.present:
                    state = 'not joined' if w not in self.heard else 'left'
                elif now - self.heard.get(w, 0.0) > self._r.silent_secs:
                    state = f'not heard from for {int(now - self.heard.get(w, 0.0))} s: killed?'
                else:
                    state = 'alive, its gradients have not arrived'
                parts.append(f"{self._r.cluster.task('worker', w)} ({state})")
        return missing, ', '.join(parts)

    def _monitor(self, session):
        last_report = time.time()
        while self._r.sleep(1.0):
            try:
                self._poll(session)
            except _SESSION_ERRORS as e:
                if self._r.stopping or self._closed(session, e):
                    return
                self._r.warn('Could not read the workers\' events: %s', tf_errors.reason(e))
                continue
            if not self._r.sync:
                continue
            with self._lock:
                step, since = self._step, self._step_time
            now = time.time()
            waited = now - since
            if waited < self._r.report_secs or now - last_report < self._r.report_secs:
                continue
            missing, described = self._missing(step)
            if not described:
                continue
            last_report = now
            if 0 not in missing and waited > self._r.wait_secs:
                self._fail(
                    session,
                    ClusterError(
                        f'No synchronous step for {int(waited)} s (--cluster_wait_secs='
                        f'{self._r.wait_secs}): step {step + 1} still waits for the gradients of '
                        f'{described}. Stopping; restart the missing workers sooner, or train with '
                        'fewer --replicas_to_aggregate.'
                    ),
                )
                return
            self._r.warn(
                'Step %d has waited %d s for the gradients of %s; waiting up to '
                '%d s for them (a restarted worker rejoins).',
                step + 1,
                waited,
                described,
                self._r.wait_secs,
            )

    def _sync_loop(self, session):
        last = self._r.last_step
        while not self._r.stopping:
            with self._lock:
                if last is not None and self._step >= last:
                    return
            try:
                step, counts = session.run(self._r._sync_step)
            except _SESSION_ERRORS as e:
                if (
                    not self._r.stopping
                    and not self._closed(session, e)
                    and not isinstance(e, tf.errors.CancelledError)
                ):
                    self._fail(
                        session,
                        ClusterError(f'the synchronous update failed: {tf_errors.reason(e)}'),
                    )
                return
            self._record(int(step), [int(c) for c in counts])

    def _record(self, step, counts):
        distinct = sum(1 for c in counts if c > 0)
        with self._lock:
            self._step, self._step_time = step, time.time()
            self.first_step = step if self.first_step is None else self.first_step
            self.last_step = step
            for w, c in enumerate(counts):
                self.contributions[w] += c
            self.distinct[distinct] = self.distinct.get(distinct, 0) + 1
            regular = distinct == self._r.replicas and max(counts) == 1
            if not regular:
                self.irregular.append((step, counts))
        if not regular:
            self._r.warn(
                'Step %d aggregated %d gradients from %d distinct workers: %s.',
                step,
                sum(counts),
                distinct,
                ', '.join(f'worker {w} x{c}' for w, c in enumerate(counts) if c),
            )

    def _wait_for_workers(self, session, step):
        needed = self._r.replicas
        start, next_log = time.time(), 0.0
        while True:
            self._poll(session)
            with self._lock:
                present = set(self.present)
            if len(present) >= needed:
                self._r.log(
                    'Workers %s are here: synchronous training starts at step %d, each '
                    'step averaging the gradients of %d distinct workers.',
                    ', '.join(str(w) for w in sorted(present)),
                    step,
                    needed,
                )
                return
            absent = set(range(self._r.cluster.num_workers)) - present
            waited = time.time() - start
            if waited > self._r.wait_secs:
                raise ClusterError(
                    f'before the first step: waited {int(waited)} s (--cluster_wait_secs) for '
                    f'{needed - len(present)} more worker(s) of '
                    f'{self._r.cluster.workers(absent)}; a synchronous step needs {needed} '
                    'workers.'
                )
            if waited >= next_log:
                self._r.log(
                    'Waiting for %d more worker(s) of %s to join (%d s of %d s).',
                    needed - len(present),
                    self._r.cluster.workers(absent),
                    waited,
                    self._r.wait_secs,
                )
                next_log = waited + 10.0
            time.sleep(0.5)

    def _wait_for_last_steps(self, session):
        """Until every worker that joined has left (or gone silent), for wait_secs at most."""
        start, next_log = time.time(), 0.0
        while True:
            self._poll(session)
            now = time.time()
            with self._lock:
                busy = {
                    w
                    for w in self.present - {0}
                    if now - self.heard.get(w, 0.0) <= self._r.silent_secs
                }
            waited = now - start
            if not busy:
                return
            if waited > self._r.wait_secs:
                self._r.warn(
                    '%s did not finish within %d s; ending training without them.',
                    self._r.cluster.workers(busy),
                    waited,
                )
                return
            if waited >= next_log:
                self._r.log(
                    'Waiting for %s to finish its last step.', self._r.cluster.workers(busy)
                )
                next_log = waited + 10.0
            time.sleep(0.2)

    # Hook.

    def after_create_session(self, session, coord):
        r = self._r
        again = self.sessions > 0
        self._reset(session)
        start = session.run(r._start)
        # Again: this chief's own session, re-created (the parameter servers' chief is itself).
        if start['chiefs_before'] and not again:
            raise ClusterError(
                'the parameter servers have already served a chief: a restarted chief cannot '
                'take over a running cluster (its workers and accumulators are in the middle of '
                'a step). Stop every process of the cluster and start them all again; training '
                'resumes from the last checkpoint in --train_dir.'
            )
        step = int(start['step'])
        if again:
            r.warn(
                'A new session (a parameter server failed; the variables are restored from the '
                'last checkpoint): training continues at step %d; the counts below start there.',
                step,
            )
        with self._lock:
            self._step, self._step_time = step, time.time()
        r.start_thread('heartbeat', lambda: self._heartbeat(session))
        self._poll(session)
        if r.last_step is not None and step >= r.last_step:
            r.log(
                'The global step is %d: training has reached --max_number_of_steps=%d.',
                step,
                r.last_step,
            )
            coord.request_stop()
            return
        if r.sync:
            self._wait_for_workers(session, step)
            with self._lock:
                self._step_time = time.time()
            r.start_thread('sync', lambda: self._sync_loop(session))
        r.start_thread('monitor', lambda: self._monitor(session))

    def after_run(self, run_context, run_values):
        self.runs += 1

    def end(self, session):
        r = self._r
        self._wait_for_last_steps(session)
        r.stop_threads()
        self._poll(session)
        if r.sync and self.first_step is not None:
            counts = ', '.join(f'worker {w}: {c}' for w, c in enumerate(self.contributions))
            distinct = ', '.join(f'{n} steps of {d}' for d, n in sorted(self.distinct.items()))
            r.log(
                'Synchronous steps %d-%d: %s distinct workers; gradients per worker: %s%s.',
                self.first_step,
                self.last_step,
                distinct,
                counts,
                f'; irregular steps: {self.irregular}' if self.irregular else '',
            )
        elif not r.sync:
            r.log('%s applied %d asynchronous steps.', r.cluster.task('worker', 0), self.runs)

    def check(self):
        if self.failure is not None:
            raise self.failure


class WorkerHook(v1.train.SessionRunHook):
    """A worker's part (not the chief's): joins, sends heartbeats, watches the chief's messages
    and leaves."""

    def __init__(self, replication):
        self._r = replication
        self.message = None
        self.runs = 0
        self._session = None

    def _watch(self, session):
        """Heartbeats to the chief; reads its messages; interrupts this worker's token wait when
        the chief ended, failed or went silent."""
        r = self._r
        heard = time.time()
        while r.sleep(HEARTBEAT_SECS / 2):
            try:
                messages = session.run(r._watch, options=v1.RunOptions(timeout_in_ms=30000))[
                    'messages'
                ]
            except _SESSION_ERRORS as e:
                if r.stopping or session is not self._session or isinstance(e, RuntimeError):
                    return
                messages = []
                r.warn('Could not reach the parameter servers: %s', tf_errors.reason(e))
            if len(messages):
                heard = time.time()
            final = [int(m) for m in messages if m in (ENDED, FAILED)]
            if not final and time.time() - heard > r.wait_secs:
                final = [SILENT]
            if final:
                self.message = final[0]
                if r.sync:
                    try:
                        session.run(r._interrupt, options=v1.RunOptions(timeout_in_ms=30000))
                    except _SESSION_ERRORS:
                        pass
                return

    def after_create_session(self, session, coord):
        r = self._r
        self._session = session
        step = int(session.run(r._start)['step'])  # and JOIN
        if r.last_step is not None and step >= r.last_step:
            r.log(
                'The global step is %d: training has reached --max_number_of_steps=%d.',
                step,
                r.last_step,
            )
            self.message = ENDED
            coord.request_stop()
            return
        r.log('%s joined at step %d.', r.cluster.task('worker', r.cluster.task_index), step)
        r.start_thread('watch', lambda: self._watch(session))

    def after_run(self, run_context, run_values):
        self.runs += 1
        if self.message is not None:
            run_context.request_stop()

    def end(self, session):
        r = self._r
        r.stop_threads()
        try:
            step = int(
                session.run(r._end, options=v1.RunOptions(timeout_in_ms=30000))['step']
            )  # and LEAVE
        except _SESSION_ERRORS as e:  # the cluster has ended meanwhile
            r.warn('Could not tell the chief that this worker leaves: %s', tf_errors.reason(e))
            step = -1
        r.log(
            '%s %s %d %s; the global step is %d.',
            r.cluster.task('worker', r.cluster.task_index),
            'pushed' if r.sync else 'applied',
            self.runs,
            'gradients' if r.sync else 'asynchronous steps',
            step,
        )

    def check(self):
        me = self._r.cluster.task('worker', self._r.cluster.task_index)
        chief = self._r.cluster.task('worker', 0)
        if self.message == FAILED:
            raise ClusterError(f'{me} stops: the chief, {chief}, reported a failure.')
        if self.message == SILENT:
            raise ClusterError(
                f'{me} stops: nothing heard from the chief, {chief}, for '
                f'{self._r.wait_secs} s (--cluster_wait_secs).'
            )
        if self.message == ENDED:
            self._r.log('The chief ended training; %s stops.', me)


def serve(cluster, server, wait_secs, log=logging.info):
    """A parameter server: serves until the chief's final message. Returns on ENDED; raises
    ClusterError when the chief failed or was silent for `wait_secs` (not started included)."""
    me = cluster.task('ps', cluster.task_index)
    chief = cluster.task('worker', 0)
    with tf.Graph().as_default() as graph:
        message = _message_queue(cluster, 'ps', cluster.task_index).dequeue()
    config = add_device_filters(v1.ConfigProto(), cluster)
    start, heard = time.time(), None
    with v1.Session(server.target, graph=graph, config=config) as session:
        while True:
            try:
                value = session.run(message, options=v1.RunOptions(timeout_in_ms=2000))
            except tf.errors.OpError as e:
                if not isinstance(e, tf.errors.DeadlineExceededError):
                    raise ClusterError(f'{me} stops: {tf_errors.reason(e)}') from None
                silent = time.time() - (heard or start)
                if silent > wait_secs:
                    state = 'did not start' if heard is None else 'was silent'
                    raise ClusterError(
                        f'{me} stops: the chief, {chief}, {state} for '
                        f'{int(silent)} s (--cluster_wait_secs).'
                    ) from None
                continue
            if value == RUNNING:
                if heard is None:
                    log('The chief, %s, is up.', chief)
                heard = time.time()
            elif value == ENDED:
                log('The chief ended training; %s stops.', me)
                time.sleep(PS_LINGER_SECS)
                return
            elif value == FAILED:
                time.sleep(PS_LINGER_SECS)
                raise ClusterError(f'{me} stops: the chief, {chief}, reported a failure.')
