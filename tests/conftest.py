"""What many test files share: the project root and running a script as a user does."""

import atexit
import functools
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from tests import script_server
from tests import shared_cache
from tf_extended import cpu_features
from tf_extended import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def _scripts_temp_dir():
    """A temporary folder for the scripts' own temporary files, removed when the tests end.
    AutoGraph's generated modules are deleted at exit, which the tests' killed scripts and forked
    helpers never reach: without this, every run of the suite left them in the system's /tmp."""
    folder = tempfile.mkdtemp(prefix='ssd_scripts_')
    atexit.register(shutil.rmtree, folder, True)
    return folder


def script_env(**extra):
    """The environment scripts run in: the project importable, TF quiet, no GPU, their
    temporary files in one folder of the test run."""
    return dict(
        os.environ,
        PYTHONPATH=ROOT,
        TF_CPP_MIN_LOG_LEVEL='2',
        CUDA_VISIBLE_DEVICES='',
        TMPDIR=_scripts_temp_dir(),
        **extra,
    )


def file_bytes(folder):
    """{relative path: bytes} of every file under `folder` (symlinked folders not followed): what
    a test compares before and after a run that must leave the folder as it was."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


def free_ports(count):
    """`count` distinct localhost TCP ports that were free a moment ago (all bound at once, then
    released), for the gRPC servers of a test cluster."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def training_graph_text(train_dir):
    """The training graph (text GraphDef, with shapes) of `train_dir`'s latest checkpoint, from
    its .meta: the trainer writes no graph.pbtxt."""
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow.core.protobuf import meta_graph_pb2

    meta = meta_graph_pb2.MetaGraphDef()
    with open(tf.train.latest_checkpoint(str(train_dir)) + '.meta', 'rb') as f:
        meta.ParseFromString(f.read())
    return text_format.MessageToString(meta.graph_def)


# The smallest training the script tests run: ssd_300_mobilenet at depth 0.25, batch 2, seeded,
# one reader, no summaries.
TINY_TRAIN_FLAGS = (
    '--model_name=ssd_300_mobilenet',
    '--depth_multiplier=0.25',
    '--batch_size=2',
    '--seed=1',
    '--num_readers=1',
    '--num_preprocessing_threads=2',
    '--save_summaries_secs=3600',
)


def run_script(script, *args, timeout=400):
    """Runs `python <ROOT>/<script> args...` from the project root as a child of
    tests/script_server.py (TensorFlow imported already); returns the CompletedProcess (text
    stdout / stderr captured)."""
    return script_server.run([os.path.join(ROOT, script), *args], ROOT, script_env(), timeout)


def readme_python_block(heading):
    """The first Python code block of README.md's section `heading` (e.g. '### Your own data'),
    for tests that run the README's snippets as a user would."""
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text.split(heading, 1)[1].split('\n### ', 1)[0]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def run_python(code, *args, timeout=400):
    """Runs the Python source `code` with `args` as `run_script` runs a script (from a file in
    a temporary folder); returns the CompletedProcess. For code that imports a script defining
    absl flags, which a test must not import in its own process."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'child.py')
        with open(path, 'w') as f:
            f.write(code)
        return run_script(path, *args, timeout=timeout)


def interrupt_when(args, when, timeout=400, signum=None):
    """Starts `python args...` from the project root (as run_script does), sends `signum`
    (default SIGINT, what Ctrl-C sends) once `when` holds: a str, once a line of its stderr
    contains it; a callable, once it returns true (polled every 10 ms). Returns (exit status,
    stderr lines)."""
    import signal
    import threading
    import time

    read_end, write_end = os.pipe()
    with open(os.devnull, 'wb') as devnull:
        try:
            process = script_server.spawn(args, ROOT, script_env(), devnull, write_end)
        finally:
            os.close(write_end)
    lines = []

    def read():
        with open(read_end) as stderr:
            lines.extend(line.rstrip('\n') for line in stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + timeout
    try:
        while not (when() if callable(when) else any(when in line for line in list(lines))):
            assert process.poll() is None, ('ended before it was interrupted', lines[-20:])
            assert time.time() < deadline, lines[-20:]
            time.sleep(0.01)
        process.send_signal(signal.SIGINT if signum is None else signum)
        status = process.wait(timeout=120)
        reader.join(timeout=120)
        return status, lines
    finally:
        if process.poll() is None:
            process.kill()


def process_state(pid):
    """(state letter, parent pid) of process `pid`, from /proc; None when it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()  # after the command's name
    except OSError:  # gone (also while it was read)
        return None
    return fields[0], int(fields[1])


def process_running(pid):
    """Whether process `pid` exists and is not a zombie."""
    state = process_state(pid)
    return state is not None and state[0] not in ('Z', 'X')


# Opens the FIFO argv[1] for writing whenever a reader waits on it, from 20 s on, and marks
# each time in the file argv[2]. A process of its own: TF's reader waits holding the GIL.
_FIFO_RELEASER = """
import os, sys, time
time.sleep(20)
while True:
    try:
        os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_NONBLOCK))
        open(sys.argv[2], 'a').close()
    except OSError:
        pass
    time.sleep(0.2)
"""


@pytest.fixture()
def fifo_release(tmp_path):
    """`watch(fifo)`: a check that let TensorFlow open `fifo` fails instead of hanging the
    suite (see _FIFO_RELEASER); `fired()` says whether a reader had to be released."""
    marker, processes = tmp_path / 'released', []

    def watch(path):
        processes.append(
            subprocess.Popen([sys.executable, '-c', _FIFO_RELEASER, path, str(marker)])
        )

    watch.fired = marker.exists
    yield watch
    for process in processes:
        process.kill()
        process.wait()


def synthetic_voc_records(num_images=8, seed=0, output_name='voc_2007_train'):
    """`num_images` images of datasets/synthetic.py (`seed`) in VOC layout (`<folder>/voc`),
    converted as tf_convert_data.py does by default (every annotation, shuffled with seed 0, one
    shard) to `<folder>/records/<output_name>_*.tfrecord`; returns the folder (shared by the run's
    tests: read-only, see shared_cache.py)."""

    def build(path):
        path = pathlib.Path(path)
        from datasets import labels
        from datasets import synthetic
        from tests import data_fixtures

        synthetic.generate(str(path / 'voc'), num_images, seed)
        data_fixtures.convert_voc(
            [str(path / 'voc')],
            str(path / 'records'),
            output_name=output_name,
            class_names=labels.read_labels_file(str(path / 'voc' / 'labels.txt')),
            shuffle=True,
            seed=0,
        )

    return pathlib.Path(
        shared_cache.folder(f'synthetic_voc_{num_images}_{seed}_{output_name}', build)
    )


def pytest_configure(config):
    """In the process that runs the tests (an xdist worker, or pytest without -n), the test
    modules' `import tensorflow` skips Keras as the scripts' does (2 s per process, see
    tf_extended/logs.skip_keras_at_tensorflow_import); not in xdist's controller, whose
    environment the workers inherit."""
    if hasattr(config, 'workerinput') or not config.getoption('numprocesses', None):
        logs.skip_keras_at_tensorflow_import()


def pytest_collection_finish(session):
    """The test modules are imported: `tf.keras` resolves normally from here on."""
    logs.restore_keras_setting()


@pytest.fixture(scope='session', autouse=True)
def _shared_cache_root(tmp_path_factory):
    """The run's folder for tests/shared_cache.py: above each xdist worker's own temporary
    folder, so that the workers share it; the run's own folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'):
        base = base.parent
    shared_cache.ROOT = str(base / 'shared')


def require_nchw():
    """Skips the calling test where this machine cannot run NCHW convolutions fast: TF's own CPU
    kernels are NHWC only, and oneDNN (on by default only on CPUs with AVX-512 VNNI/BF16 or AMX;
    TF_ENABLE_ONEDNN_OPTS=1 elsewhere) runs NCHW nets on CPUs without AVX-512 minutes slower than
    NHWC (seen: one SSD300 comparison over 3 minutes instead of seconds). NCHW is the GPU layout:
    tested on a GPU or an AVX-512 CPU."""
    if not (cpu_features.cpu_flags() & {'avx512f'}) and not _gpu():
        pytest.skip('NCHW is tested on a GPU or an AVX-512 CPU (oneDNN is slow at it without)')
    if _nchw_runs():
        return
    pytest.skip('NCHW needs oneDNN or a GPU; TensorFlow runs without oneDNN here')


def _gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices('GPU'))


_NCHW = []


def _nchw_runs():
    if not _NCHW:
        import tensorflow as tf

        v1 = tf.compat.v1
        with tf.Graph().as_default():
            x = tf.zeros([1, 2, 4, 4])
            y = tf.nn.conv2d(x, tf.zeros([1, 1, 2, 2]), 1, 'SAME', data_format='NCHW')
            y = tf.nn.max_pool2d(y, 2, 2, 'SAME', data_format='NCHW')
            try:
                with v1.Session() as sess:
                    sess.run(y)
                _NCHW.append(True)
            except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
                _NCHW.append(False)
    return _NCHW[0]


# Scheduling under pytest-xdist: scripts/test.sh runs `-n 3 --dist loadfile
# --no-loadscope-reorder`.
#
# --dist loadfile sends a module's tests to one worker. xdist's default (`load`) spread them over
# the workers, and a module-scoped fixture (a trained or exported model, a converted dataset)
# was then built by each worker that ran one of its tests. (`--dist loadgroup` with xdist_group marks
# would keep finer units, but pytest-xdist 3.8 cannot rename pytest 9's node ids, so it does not
# group.)
#
# The modules are queued longest first (pytest_collection_modifyitems below; xdist then takes
# the collection order, as --no-loadscope-reorder asks), so that no long module starts last
# while the other worker idles. The lengths are rough wall times on a 2-core CPU (seconds, of a
# test together with the fixtures it sets up first); they only order the queue: a stale or
# missing entry costs time, not correctness. Keys: a test's node id without its parameters (for
# each parameter case), or a module's path (for each of its tests without an entry of its own).
DURATIONS = {
    'tests/test_train_run.py::test_kills_and_sigterm_then_resumes_continue_exactly': 47,
    'tests/test_train_run.py::test_one_ps_two_workers_sync_replicas': 36,
    'tests/test_train_run.py::test_a_resume_keeps_old_checkpoints_until_it_saves_and_records_'
    'other_settings': 28,
    'tests/test_train_run.py::test_short_run_lowers_loss_and_restores_in_eval_graph': 21,
    'tests/test_train_run.py::test_mixed_precision_follows_fp32': 18,
    'tests/test_train_run.py::test_negative_ratio_flag_reaches_the_loss': 11,
    'tests/test_train_run.py::test_a_run_restarted_before_any_checkpoint_records_its_own_'
    'settings': 9,
    'tests/test_model_card_scripts.py::test_training_writes_the_card': 44,
    'tests/test_model_card_scripts.py::test_eval_watch_export_detect_score_without_model_flags': 58,
    'tests/test_model_card_scripts.py::test_contradicting_flags_fail_before_writing': 3,
    'tests/test_model_card_scripts.py::test_caffe_converted_checkpoint_needs_no_model_flags': 15,
    'tests/test_demo.py::test_reduced_main_job_runs_every_stage': 100,
    'tests/test_demo.py::test_sigterm_ends_the_demo_and_its_stage_with_one_line': 25,
    'tests/test_detect_script.py': 3,  # 26 tests with 29 script runs
    'tests/test_script_refusals.py': 3,  # 37 tests with 54 script runs
    'tests/test_non_square.py::test_train_script_fine_tunes_the_300x500_model': 26,
    'tests/test_non_square.py::test_eval_script_at_300x500_equals_the_reference': 23,
    'tests/test_non_square.py::test_eval_script_in_bfloat16_computes_in_bfloat16': 7,
    'tests/test_non_square.py::test_export_script_at_300x500_equals_the_reference': 7,
    'tests/test_openvino.py': 6,  # 19 tests sharing test_fixed_size's export, 3 script runs
    'tests/test_export_models.py': 4,  # 21 tests sharing two exports (one with int8 calibration)
    # 27 tests sharing two exports (one test_openvino's), 3 script runs
    'tests/test_export_metadata_checks.py': 3,
    # 20 tests sharing three exports (one test_openvino's, one test_export_models'), 5 runs
    'tests/test_fixed_size.py': 5,
    'tests/test_eval_watcher.py': 4,
    'tests/test_eval_watcher.py::test_watcher_backlog_deletions_restart_best_and_timeout': 14,
    'tests/test_coco_names.py': 12,
    'tests/test_eval_pipeline.py': 4,
    'tests/test_eval_input_cache.py': 2,  # 23 tests sharing three evaluators, 3 watches
    'tests/test_eval_pipeline.py::test_eval_equals_offline_scoring_of_its_results_files': 15,
    'tests/test_benchmarks.py::test_run_all_small': 17,
    'tests/test_caffe_opencv_parity.py::test_conversion_maps_every_caffe_layer': 13,
    'tests/test_logs.py': 4,
    'tests/test_train_cluster.py': 3,
    'tests/test_pytorch_parity.py::test_cards_describe_the_sources': 24,
    'tests/test_pytorch_convert.py::test_vgg_bases_initialise_training_like_tf_slim_vgg_16': 26,
    'tests/test_hostile_outputs.py::test_detect_never_overwrites_an_input_or_a_file_it_did_not_write': 11,
    'tests/test_graph_check.py': 5,
    'tests/test_train_checkpoints.py': 2,
    'tests/test_folder_locks.py': 2,  # 12 tests, 5 script runs
    'tests/test_moving_averages.py': 6,  # 5 tests, 3 script runs
    'tests/test_converter_labels.py': 1,
}


def _expected_seconds(nodeid):
    name = nodeid.split('[')[0]
    return DURATIONS.get(name, DURATIONS.get(name.split('::')[0], 0.0))


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Modules longest first; the tests of a module keep their order (after pytest's own
    reordering by parametrized fixtures)."""
    result = yield
    modules = {}
    for item in items:
        modules.setdefault(item.nodeid.split('::')[0], []).append(item)
    order = sorted(
        modules.values(), key=lambda tests: -sum(_expected_seconds(t.nodeid) for t in tests)
    )
    items[:] = [item for tests in order for item in tests]
    return result
