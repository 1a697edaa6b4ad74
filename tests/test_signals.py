"""A Ctrl-C or SIGTERM between the creation of a temporary and the `try` that removes it left the
temporary behind: an export stopped by SIGTERM in its first milliseconds kept its folder (the
staged checkpoint in it). `signals.held` holds them for those instructions."""

import os
import signal
import tempfile
import threading

import pytest

from tf_extended import atomic_io
from tf_extended import signals
from tf_extended import temp_dirs


@pytest.fixture
def recorded():
    """SIGINT and SIGTERM recorded (in order) by handlers of the test, restored after it."""
    came = []
    previous = {
        s: signal.signal(s, lambda number, frame: came.append(number)) for s in signals.STOPS
    }
    try:
        yield came
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_held_signals_reach_the_earlier_handlers_once_each_in_order_at_the_end(recorded):
    handlers = {s: signal.getsignal(s) for s in signals.STOPS}
    with signals.held():
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            signal.raise_signal(signum)
        assert recorded == []
    assert recorded == [signal.SIGTERM, signal.SIGINT]
    assert {s: signal.getsignal(s) for s in signals.STOPS} == handlers


def test_a_held_signal_comes_even_when_the_block_raised(recorded):
    with pytest.raises(ValueError):
        with signals.held((signal.SIGTERM,)):
            signal.raise_signal(signal.SIGTERM)
            raise ValueError
    assert recorded == [signal.SIGTERM]


def test_only_the_signals_named_are_held(recorded):
    with signals.held((signal.SIGTERM,)):
        signal.raise_signal(signal.SIGINT)
        assert recorded == [signal.SIGINT]
    assert recorded == [signal.SIGINT]


def test_an_ignored_signal_stays_ignored(recorded):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with signals.held():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
    assert recorded == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_off_the_main_thread_nothing_is_held(recorded):
    seen = []

    def body():
        with signals.held():
            seen.append({s: signal.getsignal(s) for s in signals.STOPS})

    handlers = {s: signal.getsignal(s) for s in signals.STOPS}
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [handlers]


@pytest.fixture
def ctrl_c_as_made(monkeypatch):
    """tempfile's mkdtemp and mkstemp send this process a SIGINT (Python's own handler: a
    KeyboardInterrupt) once they made their folder or file: a Ctrl-C in that instant."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ('mkdtemp', 'mkstemp'):
        made = getattr(tempfile, name)

        def interrupted(*args, made=made, **kwargs):
            path = made(*args, **kwargs)
            signal.raise_signal(signal.SIGINT)
            return path

        monkeypatch.setattr(tempfile, name, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_as_a_temporary_folder_is_made_leaves_nothing(ctrl_c_as_made, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_io.temp_dir(str(tmp_path / 'export')):
            pytest.fail('the block ran: the Ctrl-C came after the folder was made')
    with pytest.raises(KeyboardInterrupt):
        with temp_dirs.made(str(tmp_path), 'staged'):
            pytest.fail('the block ran: the Ctrl-C came after the folder was made')
    assert os.listdir(tmp_path) == []


def test_a_ctrl_c_as_an_atomic_write_starts_leaves_nothing(ctrl_c_as_made, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        atomic_io.write_bytes_atomic(str(tmp_path / 'out.bin'), b'data')
    assert os.listdir(tmp_path) == []


def test_temporary_folders_go_with_what_they_hold_and_leave_what_was_moved_out(tmp_path):
    with atomic_io.temp_dir(str(tmp_path / 'export')) as temp:
        assert os.path.isdir(temp) and os.path.dirname(temp) == str(tmp_path)
        for name in ('kept', 'left'):
            with open(os.path.join(temp, name), 'w') as f:
                f.write(name)
        os.replace(os.path.join(temp, 'kept'), tmp_path / 'kept')
    with temp_dirs.made(str(tmp_path), 'staged') as temp:
        os.replace(temp, tmp_path / 'published')  # the folder itself renamed into place
    assert sorted(os.listdir(tmp_path)) == ['kept', 'published']


@pytest.mark.parametrize('moment', ['starts', 'ends'])
def test_a_signal_raising_as_the_hold_starts_or_ends_leaves_every_handler_as_it_was(
    recorded, monkeypatch, moment
):
    """A SIGTERM whose handler raises just after SIGINT's handler was replaced (before its own
    was), or a Ctrl-C just after SIGINT's was put back (before SIGTERM's was): the other handler
    stayed the hold's recorder for good (that signal did nothing for the rest of the run)."""
    handlers = {s: signal.getsignal(s) for s in signals.STOPS}
    replace = signal.signal

    def interrupted(signum, handler):
        previous = replace(signum, handler)
        put_back = handler is handlers[signum]
        if signum == signal.SIGINT and put_back == (moment == 'ends'):
            raise KeyboardInterrupt  # the signal's handler, run as the call returns
        return previous

    monkeypatch.setattr(signal, 'signal', interrupted)
    with pytest.raises(KeyboardInterrupt):
        with signals.held():
            pass
    monkeypatch.undo()
    assert {s: signal.getsignal(s) for s in signals.STOPS} == handlers


def test_each_held_signal_comes_even_when_an_earlier_ones_handler_raises():
    """SIGINT then SIGTERM held: SIGINT's handler raised KeyboardInterrupt, and SIGTERM's handler
    never ran (a terminated script ended as if only interrupted, not by its signal)."""
    came = []

    def raising(number, frame):
        came.append(number)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, raising) for s in signals.STOPS}
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals.held():
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert came == [signal.SIGINT, signal.SIGTERM]
