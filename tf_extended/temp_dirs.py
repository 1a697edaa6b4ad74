"""Temporary folders inside the folder a tool writes to, and removing the ones a killed run left.

A tool writes only inside the output folder it was given, its temporary files too: a staging
folder beside the output would be a file outside it, left behind by a kill. Each temporary
folder is `<parent>/.<label>.tmp-<pid>@<host>-<8 random characters>`: the name says which
process made it, so `remove_stale` removes exactly those whose process (on this host) has ended
and nothing else (another name, another host, a live process, a symlink or a file: left alone).
The name carries everything, so the folder's content is only what its caller puts there.
"""

import contextlib
import os
import shutil
import tempfile

from tf_extended import atomic_io
from tf_extended import signals


def make(parent, label):
    """Creates and returns a fresh temporary folder `<parent>/.<label>.tmp-<pid>@<host>-<random>`
    (`parent` is created when missing) with the umask's permissions, not mkdtemp's 0700: one may
    be renamed into place as an output (the watcher's best/)."""
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(
        dir=parent, prefix=f'.{label}.tmp-{os.getpid()}@{atomic_io.host_tag()}-'
    )
    os.chmod(path, atomic_io.dir_mode())
    return path


@contextlib.contextmanager
def made(parent, label):
    """Yields `make(parent, label)`, removed with what it still holds when the block ends (what
    was renamed out of it, or the folder itself renamed into place, stays). A Ctrl-C or SIGTERM
    while it is made is held until it is (`signals.held`): it cannot be left behind."""
    path = None
    try:
        with signals.held():
            path = make(parent, label)
        yield path
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def parse(name):
    """{'label', 'pid', 'host'} of a name `make` gives, else None."""
    match = atomic_io.TEMP_NAME.match(name)
    if not match or match['ext']:
        return None
    return {'label': match['target'], 'pid': int(match['pid']), 'host': match['host']}


def is_stale(path):
    """True for a folder of `make` (a real folder, not a symlink) whose process on this host has
    ended."""
    info = parse(os.path.basename(path))
    return (
        info is not None
        and info['host'] == atomic_io.host_tag()
        and not os.path.islink(path)
        and os.path.isdir(path)
        and not atomic_io.pid_alive(info['pid'])
    )


def remove_stale(parent, label=None, log=None):
    """Removes the temporary folders of `make` in `parent` (of `label`, default any) whose process
    has ended. Returns the paths removed."""
    removed = []
    try:
        names = sorted(os.listdir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in names:
        info = parse(name)
        path = os.path.join(parent, name)
        if info is None or (label is not None and info['label'] != label) or not is_stale(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        if log:
            log(f'removed {path}, left by an interrupted run (process {info["pid"]})')
    return removed
