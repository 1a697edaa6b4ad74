"""Runs the project's scripts for the tests as forked children of a process that has imported
TensorFlow already: each run is still a process of its own (its own command line, environment,
working directory, stdin/stdout/stderr, exit status and pid, so signals reach it), but does not
pay the 6-9 s of `import tensorflow` each fresh process pays on 2 cores.

One server per test process, started on first use (`spawn`, `run`). It imports TensorFlow as the
scripts do (Keras skipped, see tf_extended/logs) with `conftest.script_env()`, and probes the
devices once, so that a child does not print the CUDA probe's error line: the scripts' stderr
filter (tf_extended/logs), which removes that line from a fresh process's stderr, is not installed
where TensorFlow is imported already. Runs whose environment differs from the server's (but for
variables read after start-up, _RUNTIME_VARIABLES), and any run when SSD_TEST_FORK_SERVER=0,
start a fresh process instead; tests of the start-up itself (tests/test_logs.py,
tests/test_demo.py) use fresh processes.

Protocol: a SOCK_SEQPACKET Unix socket; a request is one JSON message (argv without the
interpreter, cwd, env) carrying the child's stdin, stdout and stderr file descriptors. The server
forks a watcher per request, which forks the child, sends its pid, waits for it and sends its
exit status (as subprocess's returncode). The server exits when its stdin (a pipe from the test
process) closes.
"""

import atexit
import gc
import io
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

# Environment variables a run may set differently from the server's: read after start-up (and
# pytest's PYTEST_CURRENT_TEST, which changes with every test).
_RUNTIME_VARIABLES = frozenset({'KILL_AT', 'TF_CONFIG', 'PYTEST_CURRENT_TEST'})
_server = {}
_lock = threading.Lock()


class ForkedProcess:
    """The part of subprocess.Popen the tests use, for a child of the server."""

    def __init__(self, connection, args):
        self.args = args
        self._connection = connection
        self.pid = json.loads(connection.recv(4096))['pid']
        self.returncode = None

    def poll(self):
        if self.returncode is None:
            ready, _, _ = select.select([self._connection], [], [], 0)
            if ready:
                self._receive()
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            ready, _, _ = select.select([self._connection], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._receive()
        return self.returncode

    def _receive(self):
        self.returncode = json.loads(self._connection.recv(4096))['returncode']
        self._connection.close()

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self):
        self.send_signal(signal.SIGKILL)


def spawn(args, cwd, env, stdout=None, stderr=None):
    """Starts `python args...` (a script path, `-c code` or `-m module`, then its arguments) in
    `cwd` with `env`; stdout / stderr: file objects or file descriptors (None: this process's).
    Returns a ForkedProcess, or a subprocess.Popen where the server cannot stand in for a fresh
    process (see the module docstring)."""
    client = _connect(env)
    if client is None:
        return subprocess.Popen(
            [sys.executable, *args], cwd=cwd, env=env, stdout=stdout, stderr=stderr
        )
    fds = [_fileno(f, default) for f, default in ((stdout, 1), (stderr, 2))]
    with open(os.devnull, 'rb') as stdin:
        request = json.dumps({'args': list(args), 'cwd': str(cwd), 'env': dict(env)})
        socket.send_fds(client, [request.encode()], [stdin.fileno(), *fds])
    return ForkedProcess(client, args)


def run(args, cwd, env, timeout):
    """subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True,
    timeout=timeout), through the server."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = spawn(args, cwd, env, stdout=out, stderr=err)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(io.TextIOWrapper(f).read())  # as subprocess's text mode reads
    return subprocess.CompletedProcess([sys.executable, *args], process.returncode, *texts)


def _fileno(f, default):
    if f is None:
        return default
    return f if isinstance(f, int) else f.fileno()


def _connect(env):
    from tests.conftest import ROOT, script_env

    if os.environ.get('SSD_TEST_FORK_SERVER') == '0':
        return None
    with _lock:
        if not _server:
            base = script_env()
            folder = tempfile.mkdtemp(prefix='ssd_fork_')
            path = os.path.join(folder, 'socket')
            process = subprocess.Popen(
                [sys.executable, '-m', 'tests.script_server', path],
                cwd=ROOT,
                env=base,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            if process.stdout.readline() != b'ready\n':
                raise RuntimeError('tests/script_server.py did not start')
            atexit.register(shutil.rmtree, folder, True)
            atexit.register(process.stdin.close)  # the server exits when its stdin closes
            _server.update(process=process, path=path, env=base)
    base = _server['env']
    if {k for k in set(env) | set(base) if env.get(k) != base.get(k)} - _RUNTIME_VARIABLES:
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.connect(_server['path'])
    return client


def _serve(path):
    """The server's loop; returns the request in a child, which then runs it."""
    # As tf_extended/logs.skip_keras_at_tensorflow_import, without importing that module here:
    # its start-up code must run in each child, as in a fresh script.
    skip_keras = 'TF_USE_LEGACY_KERAS' not in os.environ
    if skip_keras:
        os.environ['TF_USE_LEGACY_KERAS'] = '1'
    import tensorflow as tf

    if skip_keras:
        del os.environ['TF_USE_LEGACY_KERAS']
    tf.config.list_physical_devices()
    # TensorFlow's objects out of the collector's reach: a child's collections (its exit's too)
    # walked them all, writing to every page they share with this process (0.6 s a run).
    gc.freeze()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the watchers are reaped by the kernel
    print('ready', flush=True)
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready:
            return None
        connection, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return _watch(connection)
        connection.close()


def _watch(connection):
    """In the watcher: forks the child and returns its request there; reports and exits here."""
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    pid = os.fork()
    if pid == 0:
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        return json.loads(message)
    for fd in fds:
        os.close(fd)
    try:
        connection.send(json.dumps({'pid': pid}).encode())
        _, status = os.waitpid(pid, 0)
        connection.send(json.dumps({'returncode': os.waitstatus_to_exitcode(status)}).encode())
    finally:
        os._exit(0)


def _run_request(request):
    """Runs the request as `python args...` would, in this (forked) process."""
    import runpy
    import types

    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    args = request['args']
    if args[0] == '-c':
        sys.argv, sys.path[0] = ['-c', *args[2:]], ''
        main = types.ModuleType('__main__')
        sys.modules['__main__'] = main
        exec(compile(args[1], '<string>', 'exec'), main.__dict__)
    elif args[0] == '-m':
        sys.argv, sys.path[0] = [args[1], *args[2:]], os.getcwd()
        runpy.run_module(args[1], run_name='__main__', alter_sys=True)
    else:
        sys.argv, sys.path[0] = list(args), os.path.dirname(os.path.abspath(args[0]))
        runpy.run_path(args[0], run_name='__main__')


if __name__ == '__main__':
    request = _serve(sys.argv[1])
    if request is not None:
        _run_request(request)
