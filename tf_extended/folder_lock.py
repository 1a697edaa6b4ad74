"""One run at a time in an output folder: an exclusive lock, held while a script writes there.

The scripts that write a folder take its lock before they read or write anything in it:
train_ssd_network.py its --train_dir (the chief of a cluster, or the single process; the other
workers share the folder with the chief by design), eval_ssd_network.py its --eval_dir (one
evaluation or a watcher), export_ssd_network.py and detect_ssd_network.py their --output_dir.
A second run into a folder that is in use stops at once, before it writes or removes anything,
with one line naming the folder, the process holding it (pid, host, since when, command) and what
to do (`FolderBusy`). Two runs at once had lost or mixed each other's work: each detection run's
detections.json listed only its images, two trainers resumed from the same checkpoint and wrote
and rotated away each other's checkpoints, two evaluations rewrote one ledger.

The lock is `fcntl.flock` on `LOCK_NAME` in the folder. One name for every script: a folder is
written by one run at a time, whichever script it is, and the checks that list a folder (an
export's refusal of a non-empty folder, the scripts' removal of the outputs they know) ignore
one name. The kernel releases the lock when the process ends, however it ends (kill -9,
`os._exit`, a crash): no stale lock needs cleaning up, and a lock file a killed run left is free
for the next run. On NFS, Linux emulates flock with POSIX (fcntl) locks, which the server holds,
so runs on different hosts exclude each other too (the holder's host is in the message). The
lock file's content, written once the lock is taken, says who holds it: one JSON line
{"lock": "ssd folder lock", "role", "pid", "host", "since", "command"}.

A run that ends (also by an error or Ctrl-C) removes the lock file, and the folder (with the
parents it made) when the run created it and left it empty, so that a finished run's folder holds
only its outputs and a run that failed at its start leaves nothing (`FolderLock.release`); the
checkpoint watcher's own lock (evaluation/watcher.py, when it is not given one) stays in its
folder, as it always has. A file of the lock file's name that is not ours is refused, untouched.

Within one process, a second lock on the same folder is refused on a local disk (flock is per
open file) but not on NFS (POSIX locks are per process): the scripts take each lock once.
"""

import datetime
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import stat
import sys
import time

from tf_extended import atomic_io
from tf_extended import safe_io
from tf_extended import texts

LOCK_NAME = '.ssd.lock'
_SIGNATURE = 'ssd folder lock'
_PREFIX = '{"lock": "%s"' % _SIGNATURE  # how every lock file of ours starts (json.dumps' order)
# The trainer's role (the eval watcher reads it from a train_dir's lock file).
TRAINING_ROLE = 'training run'
_COMMAND_SHOWN = 300  # characters of the holder's command line in a refusal
# Errors of a file system that cannot lock files at all: the run goes on unlocked (warned).
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


class FolderBusy(ValueError):
    """Another process holds the folder's lock (the message says who and what to do)."""


def _now():
    return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def command_line(argv=None):
    """The command line as the lock file records it: the script and its arguments, quoted."""
    argv = sys.argv if argv is None else argv
    return shlex.join(argv) if argv else sys.executable


def _same_file(fd, path):
    """True when `path` is still the file open as `fd` (not removed, nor replaced)."""
    try:
        here, there = os.fstat(fd), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1 << 16).decode('utf-8', 'replace')


def holder(text):
    """The holder's record (a dict) from a lock file's text, or None (empty, or not ours)."""
    if not text.startswith(_PREFIX):
        return None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def current_holder(folder):
    """The record of the run holding `folder`'s lock, as its lock file says, read without taking
    the lock (a reader must not make a starting run find the folder busy): None when there is no
    lock file, it is not one of ours, or it names a process of this host that has ended (a
    killed holder leaves its file). The record's 'since' is an ISO time with its UTC offset."""
    path = os.path.join(folder, LOCK_NAME)
    try:
        record = holder(safe_io.read_bytes(path, 1 << 16, 'lock file').decode('utf-8', 'replace'))
    except OSError:
        return None
    if record is None or record.get('host') != socket.gethostname():
        return record
    pid = record.get('pid')
    # kill(0 or -1) would signal process groups; a pid beyond the kernel's is no process.
    if not isinstance(pid, int) or not 0 < pid < 1 << 31 or not atomic_io.pid_alive(pid):
        return None
    return record


def describe(record):
    """'another <role> holds its lock (pid .. on .. since .., command: ..)' for a refusal."""
    if record is None:
        return 'another process holds its lock (it has not written its name into the lock file yet)'
    command = re.sub(r'[\x00-\x1f\x7f]', '?', str(record.get('command', '?')))
    command = texts.cut(command, _COMMAND_SHOWN)
    role = record.get('role') or 'process'
    return (
        f'another {role} holds its lock (pid {record.get("pid", "?")} on '
        f'{record.get("host", "?")} since {record.get("since", "?")}, command: {command})'
    )


class FolderLock:
    """The lock of `folder` this process holds (`fd`; None: not locked, see `acquire`).
    `created`: the folders `acquire` made for it, the folder first, then its new parents."""

    def __init__(self, folder, fd=None, created=()):
        self.folder, self.fd, self.created = folder, fd, list(created)
        self.path = os.path.join(folder, LOCK_NAME)

    def release(self):
        """Removes the lock file (when it is still this lock's), then unlocks; removes the folder
        (and the parents it created) too when this run created it and it is empty. Nothing when
        not held."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)  # while locked: a run that opened it sees it gone
        except OSError:
            pass
        finally:
            os.close(fd)
        for folder in self.created:
            try:
                os.rmdir(folder)
            except OSError:  # not empty (outputs, or the next run's lock file), or gone
                break

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire(folder, flag, role):
    """Takes the exclusive lock of `folder` (created when missing) for this process.

    Args:
      folder: the folder the run writes.
      flag: the flag that named it, for the refusal ('--output_dir').
      role: what this run is, for another run's refusal ('detection run', 'training run').
    Returns:
      a FolderLock; release it at the end (`release`, or `with`). A path that exists and is not
      a folder is not locked (the caller's own check refuses it), nor is a folder on a file
      system without locks (a warning says so).
    Raises:
      FolderBusy: another process holds it: '<flag> <folder> is in use: another <role> holds its
        lock (pid <pid> on <host> since <time>, command: <command>); wait for it to end, or
        choose another <flag>.'
      ValueError: the folder holds a file of the lock file's name that is not a lock file, or the
        lock file cannot be created (no permission, a read-only file system, a full disk).
    """
    if os.path.lexists(folder) and not os.path.isdir(folder):
        return FolderLock(folder)
    created, missing = [], os.path.abspath(folder)
    while not os.path.isdir(missing) and os.path.dirname(missing) != missing:
        created.append(missing)
        missing = os.path.dirname(missing)
    path = os.path.join(folder, LOCK_NAME)
    for _ in range(100):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:  # the bare errno named neither the flag nor the folder
            raise ValueError(
                f'{flag} {folder}: cannot create it ({err.strerror or err}); choose a folder '
                f'you can write in.'
            ) from None
        try:
            fd = os.open(
                path,
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                0o666,
            )
        except FileNotFoundError:  # the folder went with the run that had created it
            continue
        except PermissionError as err:
            raise ValueError(
                f'{flag} {folder}: cannot open its lock file {path} ({err.strerror}): another '
                'user\'s run left it, or you cannot write in the folder; if no run writes there, '
                f'remove {path}.'
            ) from None
        except OSError as err:
            # ENXIO, EOPNOTSUPP: a socket or device of that name, not the folder's fault.
            if err.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
                # A read-only file system, a full disk: the bare errno named no flag.
                raise ValueError(
                    f'{flag} {folder}: cannot write in it ({err.strerror or err}); choose a '
                    'folder you can write in.'
                ) from None
            fd = None
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            raise ValueError(
                f'{flag} {folder}: {path} is not a lock file of these scripts (a symlink, a '
                f'folder or another special file); move it away and run again.'
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _NO_LOCKS:
                os.close(fd)
                print(
                    f'warning: {flag} {folder}: its file system cannot lock files '
                    f'({err.strerror}); a second run into it at once would not be refused',
                    file=sys.stderr,
                    flush=True,
                )
                return FolderLock(folder)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            record = holder(_read(fd))
            for _ in range(10):  # a holder that has just taken it writes its name at once
                if record is not None:
                    break
                time.sleep(0.05)
                record = holder(_read(fd))
            os.close(fd)
            raise FolderBusy(
                f'{flag} {folder} is in use: {describe(record)}; wait for it to end, or '
                f'choose another {flag}.'
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it as it ended: lock the file there now
    else:
        raise OSError(f'{flag} {folder}: could not lock {path} (it keeps being replaced).')
    try:
        text = _read(fd)
        if text.strip() and not text.startswith(_PREFIX):
            raise ValueError(
                f'{flag} {folder}: {path} is not a lock file of these scripts; move it away '
                f'(the scripts lock the folder with a file of that name).'
            )
        record = {
            'lock': _SIGNATURE,
            'role': role,
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'since': _now(),
            'command': command_line(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + '\n').encode('utf-8'), 0)
    except BaseException:
        os.close(fd)
        raise
    return FolderLock(folder, fd, created)
