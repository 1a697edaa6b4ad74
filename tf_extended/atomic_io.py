"""Atomic, durable file writes: a temporary file in the target's folder, then a rename.

A reader (or a crash, or a power cut) sees either the old file or the complete new one, never a
partial or empty file: the data is flushed and `fsync`ed before the rename, and the folder is
`fsync`ed after it, so the rename itself is on disk too.

Files and folders made here get the permissions `open()` / `os.makedirs` would give them under the
user's umask (0644 / 0755 under umask 022), not `tempfile`'s private 0600 / 0700: results,
exports, metadata and checkpoints are meant to be read by others.

Temporary names are `.<target name>.tmp-<pid>@<host>-<8 random characters>[.<ext>]`. One that a
killed process of this host left behind is removed when the same target is written again
(`write_bytes_atomic`, `make_temp_dir`) or when a job calls `remove_orphans` on its folder; a
temporary of a process that is still running, or of another host (a shared folder), is never
touched, nor is a user's file of a looser name (`.photos.tmp-2019-archive`).
"""

import contextlib
import errno
import glob
import json
import os
import re
import shutil
import socket
import tempfile

from tf_extended import signals

# The names of temporaries (tf_extended/temp_dirs' folders too); tempfile's random part is 8
# characters of [a-z0-9_].
TEMP_NAME = re.compile(
    r'^\.(?P<target>.+)\.tmp-(?P<pid>[0-9]+)@(?P<host>[A-Za-z0-9._-]*)-[a-z0-9_]{8}'
    r'(?P<ext>\.[A-Za-z0-9]+)?$'
)


def umask():
    """The process' umask, read without changing it where the OS allows (Linux /proc), since
    setting it, even briefly, races with other threads creating files."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode():
    """Mode of a new file under the umask (0o644 under 022)."""
    return 0o666 & ~umask()


def dir_mode():
    """Mode of a new folder under the umask (0o755 under 022)."""
    return 0o777 & ~umask()


def host_tag():
    """This host's name as temporary names carry it (characters a file name keeps, at most 64)."""
    return re.sub(r'[^A-Za-z0-9._-]', '_', socket.gethostname())[:64]


def _temp_prefix(target):
    return f'.{os.path.basename(os.path.abspath(target))}.tmp-{os.getpid()}@{host_tag()}-'


def pid_alive(pid):
    """Whether process `pid` of this host runs (also another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def remove_orphans(directory, target=None):
    """Removes the temporary files and folders of atomic writes into `directory` (only those of
    `target`'s name when given) whose process no longer runs. Returns the removed paths."""
    if not os.path.isdir(directory):
        return []
    pattern = (
        '.' + glob.escape(os.path.basename(os.path.abspath(target))) + '.tmp-*'
        if target
        else '.*.tmp-*'
    )
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), pattern)):
        match = TEMP_NAME.match(os.path.basename(path))
        if not match or match['host'] != host_tag() or pid_alive(int(match['pid'])):
            continue
        if target and match.group('target') != os.path.basename(os.path.abspath(target)):
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            removed.append(path)
        except FileNotFoundError:
            pass  # another process cleaned it up first
    return removed


def fsync_dir(directory):
    """Makes a rename (or creation) in `directory` durable. File systems that cannot fsync a
    folder (some network mounts) are accepted silently."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP, errno.EROFS):
            raise
    finally:
        os.close(fd)


def fsync_file(path):
    """Flushes a written file's data to disk (before renaming it into place)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace(source, target):
    """`os.replace(source, target)`, then the target's folder is fsynced."""
    os.replace(source, target)
    fsync_dir(os.path.dirname(os.path.abspath(target)))


def mkstemp_for(target, suffix=''):
    """(fd, path) of a new temporary file beside `target`, with the umask's permissions (not
    mkstemp's 0600); orphans of earlier killed writes of `target` are removed first. `suffix`
    (e.g. '.mp4'): for writers that pick the file format by the name's extension."""
    directory = os.path.dirname(os.path.abspath(target))
    remove_orphans(directory, target)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(target), suffix=suffix)
    try:
        os.fchmod(fd, file_mode())
    except BaseException:
        os.close(fd)
        os.remove(tmp)
        raise
    return fd, tmp


def make_temp_dir(target):
    """A new empty folder beside `target` (same file system, so publishing it is one rename),
    with the umask's permissions (not mkdtemp's 0700); orphans of earlier killed runs for
    `target` are removed first. `temp_dir` removes it at the end of a block."""
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_orphans(parent, target)
    path = tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(target))
    os.chmod(path, dir_mode())
    return path


@contextlib.contextmanager
def temp_dir(target):
    """Yields `make_temp_dir(target)`, removed with what it still holds when the block ends
    (what was renamed out of it stays). A Ctrl-C or SIGTERM while it is made is held until it is
    (`signals.held`): it cannot be left behind."""
    path = None
    try:
        with signals.held():
            path = make_temp_dir(target)
        yield path
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def write_bytes_atomic(path, data):
    """Writes `data` (bytes) to `path` atomically and durably (see the module docstring)."""
    tmp = None
    try:
        with signals.held():  # a Ctrl-C or SIGTERM as it is made: its removal below is due
            fd, tmp = mkstemp_for(path)
            f = os.fdopen(fd, 'wb')
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode('utf-8'))


def write_json_atomic(path, obj, indent=2):
    """Writes `obj` as JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + '\n')
