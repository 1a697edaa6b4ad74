"""Script logging: each TensorFlow log record printed once, in absl's format."""

import os
import re
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = '''
from absl import app
from absl import logging
import tensorflow as tf
from tf_extended import logs

def main(_):
    logging.set_verbosity(logging.INFO)
    tf.get_logger().info('before-info')
    logs.absl_only(logging.INFO)
    tf.get_logger().info('after-info')
    tf.get_logger().warning('after-warning')
    logging.info('absl-info')

app.run(main)
'''


def _python(program, env, timeout=300):
    """`python -c program` from the project root in `env`, output captured as text."""
    return subprocess.run(
        [sys.executable, '-c', program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_tensorflow_records_are_printed_once():
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    proc = _python(PROGRAM, env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()

    def count(marker):
        return sum(line.endswith('] ' + marker) or line.endswith(':' + marker) for line in lines)

    assert count('before-info') == 2  # TF's own handler and absl's: the problem fixed here.
    assert count('after-info') == count('after-warning') == count('absl-info') == 1
    assert not any(
        line.startswith(('INFO:tensorflow:', 'WARNING:tensorflow:')) and 'after' in line
        for line in lines
    )


def test_records_in_absl_format_without_app_run():
    """A program parsing its own arguments (argparse, as benchmarks/bench_inference.py) gets
    absl's format too, each record once."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES='')
    program = (
        'import tensorflow as tf\n'
        'from tf_extended import logs\n'
        'logs.absl_only()\n'
        "tf.get_logger().warning('plain-warning')\n"
    )
    proc = _python(program, env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if 'plain-warning' in line]
    assert len(lines) == 1, proc.stderr
    assert re.match(r'W\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ .+\] plain-warning$', lines[0])


SCRIPT = '''"""A script with a usage example.

  python tiny.py --name=x
"""
import os
import signal
import atexit
import sys
import time

from absl import flags

from tf_extended import logs

flags.DEFINE_string('name', 'x', 'A name.')


def ctrl_c_while_exiting():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.5)


def main(_):
    if flags.FLAGS.name == 'interrupt':
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
        time.sleep(30)
    if flags.FLAGS.name == 'interrupt_at_exit':
        atexit.register(ctrl_c_while_exiting)
    if flags.FLAGS.name == 'print':
        print('x' * 1000, flush=True)
    if flags.FLAGS.name == 'terminate':
        atexit.register(print, 'atexit ran', file=sys.stderr)
        try:
            os.killpg(0, signal.SIGTERM)  # a scheduler's: to the stderr filter too
            time.sleep(30)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second one, during the cleanup
            time.sleep(0.5)
            print('cleaned up', file=sys.stderr, flush=True)
    if flags.FLAGS.name == 'terminate_in_tensorflow':
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except KeyboardInterrupt:  # as TF reports a signal that came while a call of it failed
            raise RuntimeError(
                'pybind11::error_already_set: MISMATCH of original and normalized active '
                'exception types: ORIGINAL DeadlineExceededError REPLACED BY KeyboardInterrupt: '
                '<EMPTY MESSAGE>'
            ) from None


logs.run(main, lambda: 'kept out/a.json; run the same command to resume')
'''


def _run_tiny(tmp_path, *args, stdout=subprocess.PIPE, **env):
    """Runs SCRIPT with `args`, in a session of its own (a signal to its process group reaches
    nothing else), `env` added to the environment."""
    script = tmp_path / 'tiny.py'
    script.write_text(SCRIPT)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT, **env),
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        start_new_session=True,
    )


def test_help_exits_zero_and_shows_the_usage(tmp_path):
    for flag in ('--help', '--helpfull', '-?'):
        proc = _run_tiny(tmp_path, flag)
        assert proc.returncode == 0, (flag, proc.stderr)
        assert 'python tiny.py --name=x' in proc.stdout and '--name' in proc.stdout
    assert _run_tiny(tmp_path, '--no_such_flag').returncode == 1  # a usage error still fails


def test_a_reader_gone_from_stdout_is_no_traceback(tmp_path):
    """`script --help | head` sometimes ended in a BrokenPipeError traceback (head exits
    before the help is written): stdout here is a pipe whose reader is already closed."""
    read, write = os.pipe()
    os.close(read)
    try:
        for args, status in ((['--help'], 0), (['--name=print'], 141)):
            proc = _run_tiny(tmp_path, *args, stdout=write)
            assert (proc.returncode, proc.stderr) == (status, ''), args
    finally:
        os.close(write)


def test_ctrl_c_ends_with_one_line(tmp_path):
    proc = _run_tiny(tmp_path, '--name=interrupt')
    assert proc.returncode == 130
    assert proc.stderr.splitlines() == [
        'tiny: interrupted; kept out/a.json; run the same command to resume'
    ]


def test_sigterm_takes_the_ctrl_c_path_then_ends_by_the_signal(tmp_path):
    """SIGTERM (a scheduler, `kill`, a CI timeout) killed a script at once: no line, no cleanup.
    Now its cleanup runs (a second SIGTERM does not cut it), then one line and the atexit
    callbacks, and it ends by SIGTERM as the sender expects. The stderr filter, which the
    scheduler's SIGTERM to the process group reaches too, passes every line on."""
    proc = _run_tiny(tmp_path, '--name=terminate', SSD_STDERR_FILTER='1')
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert proc.stderr.splitlines() == [
        'cleaned up',
        'tiny: terminated (SIGTERM); kept out/a.json; run the same command to resume',
        'atexit ran',
    ]


def test_sigterm_that_tensorflow_reports_as_its_own_error_is_a_termination(tmp_path):
    """A parameter server polls with a timeout: a signal came while TF built the timeout's
    exception, and pybind11 raised a RuntimeError in its place (a traceback, status 1)."""
    proc = _run_tiny(tmp_path, '--name=terminate_in_tensorflow')
    assert (proc.returncode, proc.stderr) == (
        -signal.SIGTERM,
        'tiny: terminated (SIGTERM); kept out/a.json; run the same command to resume\n',
    )


def test_sigterm_while_starting_ends_with_one_line():
    program = (
        'import signal, sys\nfrom tf_extended import logs\n'
        "sys.argv[0] = 'tiny.py'\nlogs._interrupted_while_starting(signal.SIGTERM, None)\n"
    )
    proc = _python(program, dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert (proc.returncode, proc.stderr) == (
        -signal.SIGTERM,
        'tiny: terminated (SIGTERM) while starting; nothing was done.\n',
    )


def test_ctrl_c_after_the_work_is_done_is_ignored(tmp_path):
    """A Ctrl-C during the exit's cleanup (atexit callbacks) printed 'Exception ignored in atexit
    callback' and a KeyboardInterrupt traceback after the script's last line."""
    proc = _run_tiny(tmp_path, '--name=interrupt_at_exit')
    assert (proc.returncode, proc.stderr) == (0, '')


NOISE = [
    b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',
    b'I0000 00:00:1796193964.186616   28222 cudart_stub.cc:31] Could not find cuda drivers on '
    b'your machine, GPU will not be used.',
    b'E0000 00:00:1796193997.465394   28222 cuda_platform.cc:52] failed call to cuInit: '
    b'INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)',
    b'I0000 00:00:1796287303.641072   14574 port.cc:153] oneDNN custom operations are on. You '
    b'may see slightly different numerical results due to floating-point round-off errors from '
    b'different computation orders. To turn them off, set the environment variable '
    b'`TF_ENABLE_ONEDNN_OPTS=0`.',
    b'E0000 00:00:1796572206.085669   21271 add_port.cc:83] Failed to add port to server: No '
    b"address added out of total 1 resolved for '0.0.0.0:56295'",
    b'E0000 00:00:1796572206.089010   21271 grpc_server_lib.cc:618] UNKNOWN: Could not start gRPC '
    b'server',
    b'fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, '
    b'output_inference_type: FLOAT32',
    b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.',
]


def test_filter_drops_exactly_the_noise_lines():
    from tf_extended import logs

    keep = [
        b'I1202 06:46:37.535162 140454362086272 trainer.py:485] Model: ssd_300_mobilenet',
        b'E0000 00:00:1796193997.465394   28222 some_op.cc:52] a real error',
        b'Traceback',
        b'fully_quantize: 0, and something else',
        b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU and more',
        b'E0000 00:00:1796572206.089010   21271 grpc_server_lib.cc:618] UNKNOWN: another error',
        b'I0000 00:00:1796572206.085669   21271 add_port.cc:83] Failed to add port to server: x',
    ]
    out, held = logs.filter_chunk(b'\n'.join(NOISE + keep) + b'\n')
    assert (out, held) == (b'\n'.join(keep) + b'\n', b'')
    # With an NVIDIA device a failing CUDA probe is news.
    out, _ = logs.filter_chunk(NOISE[2] + b'\n', gpu_device=True)
    assert out == NOISE[2] + b'\n'
    # A progress bar redrawn with \\r passes at once; a line that may be noise waits for its end.
    assert logs.filter_chunk(b'[convert] 10%\r[convert] 20%') == (
        b'[convert] 10%\r[convert] 20%',
        b'',
    )
    assert logs.filter_chunk(b'ok\nWARNING: All log mes') == (b'ok\n', b'WARNING: All log mes')
    assert logs.filter_chunk(b'ok\nfully_quan') == (b'ok\n', b'fully_quan')
    assert logs.filter_chunk(b'ok\nINFO: Created') == (b'ok\n', b'INFO: Created')
    assert logs.filter_chunk(NOISE[-2][:30] + b'\n') == (NOISE[-2][:30] + b'\n', b'')
    assert logs.filter_chunk(
        b'WARNING: All log mes' + b'sages before absl::InitializeLog() is '
        b'called are written to STDERR\nnext'
    ) == (b'next', b'')


def test_last_words_pass_the_filter_when_the_script_dies():
    noise = NOISE[1].decode()
    program = (
        'import os, sys\nfrom tf_extended import logs\n'
        f'sys.stderr.write("{noise}\\nlast words\\n")\nsys.stderr.flush()\nos.abort()\n'
    )
    proc = _python(program, dict(os.environ, PYTHONPATH=ROOT, SSD_STDERR_FILTER='1'), timeout=120)
    assert proc.returncode < 0 and proc.stderr == 'last words\n'


def test_exit_does_not_wait_for_the_resource_tracker():
    """multiprocessing's resource tracker (started by tf_convert_data.py's workers) held a copy of
    the filtered stderr until the script ended, so the exit waited the filter's whole timeout: 5 s
    more for every conversion with workers. The wait is set to 60 s here: the old code timed out."""
    program = (
        'import sys\nfrom tf_extended import logs\n'
        'logs._drain_stderr_filter.__defaults__ = (60.0,)\n'
        'from multiprocessing import resource_tracker\nresource_tracker.ensure_running()\n'
        'sys.stderr.write("last words\\n")\n'
    )
    proc = _python(program, dict(os.environ, PYTHONPATH=ROOT, SSD_STDERR_FILTER='1'), timeout=30)
    assert proc.returncode == 0 and proc.stderr == 'last words\n'


def test_tensorflow_log_level_default():
    from tf_extended import logs

    env = {}
    logs.quiet_tensorflow_start(env)
    assert env == {'TF_CPP_MIN_LOG_LEVEL': '2'}
    env = {'TF_CPP_MIN_LOG_LEVEL': '0'}
    logs.quiet_tensorflow_start(env)
    assert env == {'TF_CPP_MIN_LOG_LEVEL': '0'}


def test_no_tensorflow_start_up_lines():
    """Measured: without these settings TF 2.21 prints 8 lines on a CPU-only machine before a
    script logs anything (the list is in tf_extended/logs.py); with them, none. (The filter is
    installed for the project's scripts; SSD_STDERR_FILTER=1 asks for it here.)"""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ('TF_CPP_MIN_LOG_LEVEL', 'CUDA_VISIBLE_DEVICES')
    }
    env.update(PYTHONPATH=ROOT, SSD_STDERR_FILTER='1')
    program = (
        'from tf_extended import logs\nimport tensorflow as tf\n'
        'tf.compat.v1.disable_eager_execution()\n'
        'with tf.compat.v1.Session() as s:\n    print(s.run(tf.constant(1) + 1))\n'
    )
    proc = _python(program, env)
    assert proc.returncode == 0 and proc.stdout == '2\n', proc.stderr
    assert proc.stderr == ''


def test_tensorflow_import_skips_keras_and_tf_keras_still_works():
    """skip_keras_at_tensorflow_import: `import tensorflow` loads neither Keras nor what Keras
    pulls in (matplotlib.pyplot), the variable is gone after restore_keras_setting, and
    `tf.keras` then resolves to Keras 3 as usual (OpenVINO's converter touches it). A user's
    own TF_USE_LEGACY_KERAS is left alone."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_USE_LEGACY_KERAS'}
    env.update(PYTHONPATH=ROOT)
    program = (
        'import os, sys\n'
        'from tf_extended import logs\n'
        'logs.skip_keras_at_tensorflow_import()\n'
        'import tensorflow as tf\n'
        'loaded = sorted(m for m in ("keras", "matplotlib.pyplot") if m in sys.modules)\n'
        'logs.restore_keras_setting()\n'
        'print(loaded, os.environ.get("TF_USE_LEGACY_KERAS"), tf.keras.layers.Layer.__module__)\n'
    )
    proc = _python(program, env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['[]', 'None', 'keras.src.layers.layer']
    from tf_extended import logs

    user = {'TF_USE_LEGACY_KERAS': '0'}
    logs.skip_keras_at_tensorflow_import(user)
    logs.restore_keras_setting()
    assert user == {'TF_USE_LEGACY_KERAS': '0'}


def test_every_script_importing_logs_starts_through_it():
    """Scripts and benchmarks that import tf_extended.logs run their main through `logs.run` or
    `logs.run_plain` (--help exits 0, Ctrl-C is one line). Importing it sets
    TF_USE_LEGACY_KERAS=1 for the TensorFlow import; only those remove it again. A benchmark
    that called main() itself kept it, so OpenVINO's converter failed there on `tf.keras`
    ("Keras cannot be imported")."""
    import ast
    import glob

    scripts = glob.glob(os.path.join(ROOT, '*.py')) + glob.glob(
        os.path.join(ROOT, 'benchmarks', '*.py')
    )
    missing = []
    for path in sorted(scripts):
        with open(path, encoding='utf-8') as fh:
            tree = ast.parse(fh.read())
        imports_logs = any(
            isinstance(node, ast.ImportFrom)
            and node.module == 'tf_extended'
            and any(alias.name == 'logs' for alias in node.names)
            for node in tree.body
        )
        mains = [
            node
            for node in tree.body
            if isinstance(node, ast.If) and '__main__' in ast.unparse(node.test)
        ]
        started = any(
            isinstance(call, ast.Call) and ast.unparse(call.func) in ('logs.run', 'logs.run_plain')
            for node in mains
            for call in ast.walk(node)
        )
        if imports_logs and mains and not started:
            missing.append(os.path.relpath(path, ROOT))
    assert len(scripts) > 20 and missing == []


PROJECT = (
    'datasets',
    'nets',
    'preprocessing',
    'tf_extended',
    'model',
    'training',
    'evaluation',
    'inference',
    'converters',
)


def test_every_script_quiets_tensorflow_first():
    """Each top-level script imports tf_extended.logs before any module that loads TensorFlow
    (and so runs its main through it: `test_every_script_importing_logs_starts_through_it`)."""
    import ast

    scripts = [n for n in os.listdir(ROOT) if n.endswith('.py') and n != 'run_demo.py']
    assert len(scripts) >= 9
    for name in scripts:
        tree = ast.parse(open(os.path.join(ROOT, name), encoding='utf-8').read())
        loads = []  # in file order: 'logs', or a module that may load TensorFlow
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module.split('.')[0] in PROJECT:
                loads.append(
                    'logs'
                    if (node.module, node.names[0].name) == ('tf_extended', 'logs')
                    else node.module
                )
            elif isinstance(node, ast.Import):
                loads += [
                    a.name for a in node.names if a.name.split('.')[0] in ('tensorflow', 'tf_slim')
                ]
        assert loads and loads[0] == 'logs', (name, loads)
        # Usage examples keep their line breaks: a "\\" at a line's end in a non-raw docstring
        # would join the lines into one long line in --help.
        doc = ast.get_docstring(tree, clean=False) or ''
        assert not re.search(r'\S {4,}--', doc), (name, re.findall(r'.*\S {4,}--.*', doc))


def test_a_leading_tilde_in_flag_values_is_expanded(monkeypatch):
    """`--checkpoint_path=~/train` reaches a script unexpanded: the checkpoint was found (one
    place expanded it), its model card not. Every string and list flag is expanded as a shell
    would."""
    from absl import flags

    from tf_extended import logs

    monkeypatch.setenv('HOME', '/home/someone')
    values = flags.FlagValues()
    flags.DEFINE_string('checkpoint_path', None, '', flag_values=values)
    flags.DEFINE_string('note', None, '', flag_values=values)
    flags.DEFINE_list('inputs', [], '', flag_values=values)
    flags.DEFINE_integer('steps', 3, '', flag_values=values)
    values(['x', '--checkpoint_path=~/train', '--note=a~b', '--inputs=~/a.jpg,b.jpg,~'])
    logs.expand_home(values)
    assert values.checkpoint_path == '/home/someone/train'
    assert values.note == 'a~b' and values.steps == 3
    assert values.inputs == ['/home/someone/a.jpg', 'b.jpg', '/home/someone']


def test_multi_flag_messages_lose_absls_list_of_every_flag_and_value():
    """absl begins a multi-flag check's message with `flags a=1, b=None: `, each flag of the
    check with its value: noise before messages that name the flags that matter."""
    from absl import flags

    from tf_extended import logs

    values = flags.FlagValues()
    flags.DEFINE_string('model_card', '/tmp/a: b.json', '', flag_values=values)
    flags.DEFINE_string('anchor_sizes', None, '', flag_values=values)
    values(['x'])
    said = '--anchor_sizes and --model_card: the card describes the net'
    assert (
        logs._without_flag_values(
            f'flags model_card=/tmp/a: b.json, anchor_sizes=None: {said}', values
        )
        == said
    )
    for text in (
        said,
        f'flags model_card=/tmp/other.json, anchor_sizes=None: {said}',  # not the values
        f'flags unknown=1: {said}',
        f'flag --model_card=/tmp/a: b.json: {said}',  # a one-flag check: the value it refused
    ):
        assert logs._without_flag_values(text, values) == text
