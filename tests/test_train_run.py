"""train_ssd_network.py end to end, as subprocesses, on a tiny synthetic dataset.

ssd_300_mobilenet at depth multiplier 0.25, batch 2, a few steps: the loss goes down and the
checkpoint restores into an eval graph; mixed precision matches fp32; SIGKILL + restart resumes
exactly; a diverging run stops at a NaN/inf without saving it; 1 ps + 2 workers train
synchronously.
"""
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from model import checkpoints
from training import hooks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_LINE = hooks.LOG_LINE  # the trainer's step line: step and name=value loss terms
v1 = tf.compat.v1


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_data')
    env = _env()
    subprocess.run([sys.executable, '-m', 'datasets.synthetic', '--output_dir', str(root / 'voc'),
                    '--num_images', '8', '--seed', '0'], check=True, cwd=ROOT, env=env,
                   capture_output=True)
    subprocess.run([sys.executable, 'tf_convert_data.py', '--dataset_name=pascalvoc',
                    '--dataset_dir=%s' % (root / 'voc'),
                    '--labels_file=%s' % (root / 'voc' / 'labels.txt'),
                    '--output_dir=%s' % (root / 'records'), '--output_name=voc_2007_train',
                    '--num_workers=1'], check=True, cwd=ROOT, env=env, capture_output=True)
    return str(root / 'records')


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    return env


def _args(dataset_dir, train_dir, *extra):
    return [sys.executable, os.path.join(ROOT, 'train_ssd_network.py'),
            '--train_dir=%s' % train_dir, '--dataset_dir=%s' % dataset_dir,
            '--dataset_name=pascalvoc_2007', '--dataset_split_name=train',
            '--model_name=ssd_300_mobilenet', '--depth_multiplier=0.25', '--batch_size=2',
            '--seed=1', '--num_readers=1', '--num_preprocessing_threads=2',
            '--log_every_n_steps=1', '--save_summaries_secs=3600'] + list(extra)


def _run(args, timeout=240):
    result = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=timeout)
    return result


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
    result = _run(_args(dataset_dir, train_dir, '--max_number_of_steps=30',
                        '--save_interval_steps=100', '--learning_rate_decay_type=fixed'))
    assert result.returncode == 0, result.stderr[-3000:]
    return train_dir, _losses(result.stderr)


def test_short_run_lowers_loss_and_restores_in_eval_graph(fp32_run):
    from nets import nets_factory
    train_dir, losses = fp32_run
    assert sorted(losses) == list(range(1, 31))
    first = np.mean([losses[s]['total'] for s in range(1, 6)])
    last = np.mean([losses[s]['total'] for s in range(26, 31)])
    assert last < 0.8 * first, (first, last)
    prefix = checkpoints.resolve_checkpoint(train_dir)
    assert prefix.endswith('model.ckpt-30') and _step(prefix) == 30
    finished = checkpoints.training_finished(train_dir)  # for the eval watcher
    assert (finished['checkpoint'], finished['step']) == ('model.ckpt-30', 30)
    saved = _tensors(prefix)
    with tf.Graph().as_default():
        _, network_fn = nets_factory.get_network_fn('ssd_300_mobilenet', 7, is_training=False,
                                                    depth_multiplier=0.25)
        predictions, _, _, _ = network_fn(tf.random.uniform([1, 300, 300, 3], -1., 1.))
        variables = slim.get_model_variables()
        with v1.Session() as sess:
            v1.train.Saver(variables).restore(sess, prefix)
            values, scores = sess.run([variables, predictions])
    for variable, value in zip(variables, values):
        np.testing.assert_array_equal(value, saved[variable.op.name])
    assert all(np.isfinite(s).all() for s in scores)


def test_mixed_precision_matches_fp32(fp32_run, dataset_dir, tmp_path):
    _, fp32_losses = fp32_run
    result = _run(_args(dataset_dir, str(tmp_path), '--max_number_of_steps=1',
                        '--mixed_precision', '--learning_rate_decay_type=fixed'))
    assert result.returncode == 0, result.stderr[-3000:]
    mixed = _losses(result.stderr)[1]
    for term, value in fp32_losses[1].items():
        assert mixed[term] == pytest.approx(value, rel=0.05), term
    with open(tmp_path / 'graph.pbtxt') as f:
        graph = f.read()
    assert re.search(r'op: "Conv2D".*?type: DT_BFLOAT16', graph, re.S)


def test_sigkill_then_resume_continues_exactly(dataset_dir, tmp_path):
    train_dir = str(tmp_path / 'train')
    process = subprocess.Popen(_args(dataset_dir, train_dir, '--max_number_of_steps=100000',
                                     '--save_interval_steps=2', '--max_to_keep=3'),
                               cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            latest = os.path.isdir(train_dir) and checkpoints.latest_in_directory(train_dir)
            if latest and int(latest.rsplit('-', 1)[1]) >= 6:
                break
            time.sleep(0.1)
        else:
            pytest.fail('no checkpoint at step >= 6 within 180 s')
        time.sleep(random.uniform(0., 0.3))  # land anywhere, saves included
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
    assert checkpoints.training_finished(train_dir) is None  # killed: not finished
    state = tf.train.get_checkpoint_state(train_dir)
    for prefix in state.all_model_checkpoint_paths:
        _tensors(prefix)  # every listed checkpoint loads
    latest = checkpoints.resolve_checkpoint(train_dir)
    step = _step(latest)
    before = _tensors(latest)
    result = _run(_args(dataset_dir, train_dir, '--max_number_of_steps=%d' % (step + 3),
                        '--save_interval_steps=2', '--max_to_keep=3',
                        '--checkpoint_path=%s' % (tmp_path / 'does_not_exist')))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Resuming from %s' % latest in result.stderr
    assert sorted(_losses(result.stderr)) == [step + 1, step + 2, step + 3]
    assert _step(checkpoints.resolve_checkpoint(train_dir)) == step + 3
    assert checkpoints.training_finished(train_dir)['step'] == step + 3
    # The resumed session re-saves its starting point: every variable (weights, Adam slots,
    # global step, BN statistics) came back unchanged.
    after = _tensors(latest)
    assert sorted(after) == sorted(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_non_finite_loss_stops_without_saving(dataset_dir, tmp_path):
    result = _run(_args(dataset_dir, str(tmp_path), '--max_number_of_steps=50',
                        '--optimizer=sgd', '--learning_rate=1e30',
                        '--learning_rate_decay_type=fixed', '--save_interval_steps=1'))
    assert result.returncode != 0
    match = re.search(r'non-finite (loss|weights) at step (\d+); training stopped without '
                      r'saving\. Last good checkpoint: (\S+)\.', result.stderr)
    assert match, result.stderr[-3000:]
    failed_step, last_good = int(match.group(2)), match.group(3)
    assert last_good == checkpoints.latest_in_directory(str(tmp_path))
    assert _step(last_good) < failed_step
    for name, value in _tensors(last_good).items():
        if value.dtype.kind == 'f':
            assert np.isfinite(value).all(), name


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_one_ps_two_workers_sync_replicas(dataset_dir, tmp_path):
    """1 ps + 2 workers, synchronous: the chief counts both workers' gradients in every step
    (its worker-id accumulator, training/cluster.py), the checkpoint is at the last step, and all
    three processes exit 0 by themselves. Worker 1 is configured by TF_CONFIG, the others by the
    host flags. More cluster cases (late, killed, restarted workers; async) run in-process in
    tests/test_train_cluster.py."""
    import json
    ports = _free_ports(3)
    ps_hosts = ['127.0.0.1:%d' % ports[0]]
    worker_hosts = ['127.0.0.1:%d' % p for p in ports[1:]]
    flags = ['--ps_hosts=%s' % ','.join(ps_hosts), '--worker_hosts=%s' % ','.join(worker_hosts)]
    tf_config = json.dumps({'cluster': {'ps': ps_hosts, 'worker': worker_hosts},
                            'task': {'type': 'worker', 'index': 1}})
    train_dir = str(tmp_path / 'train')
    steps = ['--sync_replicas', '--max_number_of_steps=3', '--batch_size=1',
             '--save_interval_steps=100']
    runs = {'ps': (flags + ['--job_name=ps', '--task_index=0'], train_dir, {}),
            'chief': (flags + ['--job_name=worker', '--task_index=0'], train_dir, {}),
            'worker1': ([], str(tmp_path / 'worker1'), {'TF_CONFIG': tf_config})}
    processes, logs = {}, {}
    try:
        for name, (cluster, directory, env) in runs.items():
            logs[name] = tmp_path / ('%s.log' % name)
            processes[name] = subprocess.Popen(
                _args(dataset_dir, directory, *(cluster + steps)), cwd=ROOT,
                env=dict(_env(), **env), stdout=subprocess.DEVNULL,
                stderr=open(logs[name], 'w'))
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
    assert ('Synchronous steps 1-3: 3 steps of 2 distinct workers; gradients per worker: '
            'worker 0: 3, worker 1: 3.') in text['chief'], text['chief'][-3000:]
    assert 'pushed 3 gradients; the global step is 3' in text['worker1']
    assert re.search(r'The chief ended training; ps 0 \(127\.0\.0\.1:\d+\) stops', text['ps'])
    for name, log in text.items():
        assert 'This process: ' in log  # its role, the cluster and what it waits for
        assert 'Traceback' not in log and 'Exception in thread' not in log, (name, log[-3000:])
    assert _step(checkpoints.resolve_checkpoint(train_dir)) == 3
    assert not os.path.exists(tmp_path / 'worker1' / 'checkpoint')  # only the chief saves
