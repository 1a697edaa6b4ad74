"""Ctrl-C (SIGINT) and SIGTERM in the scripts and the demo: SIGTERM taken as Ctrl-C, signals
held back for the few instructions that must not be cut in two, and kept deliverable.

`terminate` makes SIGTERM (a scheduler, `kill`) take Ctrl-C's path, a KeyboardInterrupt and its
cleanup; `end_by_signal` then ends the process by it, as its sender expects. TensorFlow-free and
without side effects at import: the demo uses them too (`logs`' import-time set-up is for the
TensorFlow scripts).

Those handlers raise KeyboardInterrupt wherever the main thread is. Between the creation of a
temporary file or folder, a lock or a child process and the `try` that removes or stops it, that
left it behind: an export's folder kept the staged checkpoint of an export stopped in its first
milliseconds. Within `held` such a signal is recorded instead, and raised again for the handler
in place before once the block ends, so a caller that enters its `try` before the block (and
registers what it made within it) cleans up after it.

`kept_signal_stack` keeps the thread's alternate signal stack (the one Python's and
faulthandler's handlers run on) from being left on memory a native library (OpenVINO's CPU
plugin) freed.
"""

import atexit
import contextlib
import ctypes
import os
import signal
import sys
import threading

STOPS = (signal.SIGINT, signal.SIGTERM)

# Set once SIGTERM reached `terminate`: the process then ends by that signal (`end_by_signal`).
_terminated = []


def terminate(signum, frame):
    """The SIGTERM handler of the scripts' main (`logs.run_plain`, the training's steps) and of
    the demo: Ctrl-C's path (its cleanup, its line), then the end by the signal. A second SIGTERM
    is ignored: it would cut that cleanup (a training's save, the wait for the demo's stage) or
    the line."""
    if not _terminated:
        _terminated.append(signum)
        raise KeyboardInterrupt


def stop_signal():
    """The signal whose KeyboardInterrupt stopped the main: SIGTERM once `terminate` ran, else
    SIGINT (Ctrl-C)."""
    return _terminated[0] if _terminated else signal.SIGINT


def stopped_by(signum):
    """How a last line names what stopped the process: Ctrl-C or SIGTERM."""
    return 'terminated (SIGTERM)' if signum == signal.SIGTERM else 'interrupted'


def end_by_signal(signum):
    """Ends this process by `signum` with its default action, so that a parent or a scheduler
    sees the signal it sent (a status of -15 in Python, 143 in a shell), after what a normal exit
    does first: stdout flushed, the atexit callbacks run (the stderr filter passes on the last
    line, temporary files go). Does not return."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    # Still here: the process is a container's PID 1, for which the kernel drops a signal left to
    # its default action. The shell's status for that signal instead.
    os._exit(128 + signum)


@contextlib.contextmanager
def held(signums=STOPS):
    """Within the block, the `signums` that come are recorded, not acted on; at its end the
    handlers in place before are back and each signal that came is raised again (once, in the
    order they first came), even when the block raised, and even when a handler put back raises
    (each later one still comes; the last exception propagates). A signal ignored (SIG_IGN) or
    handled outside Python stays as it is; off the main thread (where Python runs no handler, so
    nothing is raised) nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came, previous = [], {}

    def record(number, frame):
        came.append(number)

    try:
        for signum in signums:
            handler = signal.getsignal(signum)
            if handler is not None and handler != signal.SIG_IGN:
                # Noted before it is replaced: a signal whose handler is not replaced (yet) may
                # raise as soon as that returns, which must not leave `record` in place for good.
                previous[signum] = handler
                signal.signal(signum, record)
        yield
    finally:
        _put_back(previous, came)


def _put_back(previous, came):
    """Puts back the handlers of `previous` ({signum: handler}), then raises each signal of
    `came` (read once they are all back: `record` adds no more) once, in the order they first
    came. Each step runs in the `finally` of the one before: a handler put back that raises
    (KeyboardInterrupt) cannot skip the rest."""
    if previous:
        (signum, handler), *rest = previous.items()
        try:
            signal.signal(signum, handler)
        finally:
            _put_back(dict(rest), came)
    elif came:
        try:
            signal.raise_signal(came[0])
        finally:
            _put_back({}, [s for s in came if s != came[0]])


class _SignalStack(ctypes.Structure):
    """glibc's `stack_t` (Linux): the alternate stack signal handlers run on."""

    _fields_ = [
        ('ss_sp', ctypes.c_void_p),
        ('ss_flags', ctypes.c_int),
        ('ss_size', ctypes.c_size_t),
    ]


@contextlib.contextmanager
def kept_signal_stack():
    """The calling thread's alternate signal stack (`sigaltstack`) as it was before the block,
    put back at its end.

    OpenVINO's CPU plugin installs a stack of its own when it compiles a model, and puts back the
    one it found when that model is freed: two models freed in another order than they were
    compiled left the thread on a stack already freed, and the next signal to it (Ctrl-C) killed
    the process by SIGSEGV, before any handler ran. Linux only (glibc's `stack_t`); elsewhere
    nothing is done."""
    if not sys.platform.startswith('linux'):
        yield
        return
    sigaltstack = ctypes.CDLL(None, use_errno=True).sigaltstack
    before = _SignalStack()
    sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(before), None)
