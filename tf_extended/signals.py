"""Ctrl-C (SIGINT) and SIGTERM held back for the few instructions that must not be cut in two.

A script's handlers raise KeyboardInterrupt wherever its main thread is (Python's own for Ctrl-C,
`logs.terminate` for SIGTERM). Between the creation of a temporary file or folder, a lock or a
child process and the `try` that removes or stops it, that left it behind: an export's folder
kept the staged checkpoint of an export stopped in its first milliseconds. Within `held` such a
signal is recorded instead, and raised again for the handler in place before once the block
ends, so a caller that enters its `try` before the block (and registers what it made within it)
cleans up after it. TensorFlow-free: run_demo and the converter's pool use it too.
"""

import contextlib
import signal
import threading

STOPS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def held(signums=STOPS):
    """Within the block, the `signums` that come are recorded, not acted on; at its end the
    handlers in place before are back and each signal that came is raised again (once, in the
    order they first came), even when the block raised. A signal ignored (SIG_IGN) or handled
    outside Python stays as it is; off the main thread (where Python runs no handler, so nothing
    is raised) nothing is held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came, previous = [], {}
    try:
        for signum in signums:
            handler = signal.getsignal(signum)
            if handler is not None and handler != signal.SIG_IGN:
                previous[signum] = signal.signal(signum, lambda number, frame: came.append(number))
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(came):
            signal.raise_signal(signum)
