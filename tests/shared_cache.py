"""Folders built once per test run and shared by its pytest-xdist workers (and test files): a
random-weight checkpoint or a converted dataset that several modules need the same.

tests/conftest.py sets ROOT for a pytest run (a folder of that run, above each worker's own
temporary folder); without it (a benchmark importing a fixture module) nothing is shared and the
callers build their own copy."""

import fcntl
import os
import shutil

ROOT = None


def folder(name, build):
    """`ROOT/name`, built by the first caller: `build(path)` runs holding a file lock, and a
    `.done` marker is written after it, so that a build that failed half-way is redone by the next
    caller; the others wait for the lock and reuse the folder. `name` must stand for everything
    the contents depend on. The folder is read-only for the callers."""
    if ROOT is None:
        raise RuntimeError('shared_cache.ROOT is set by tests/conftest.py for a pytest run')
    os.makedirs(ROOT, exist_ok=True)
    path = os.path.join(ROOT, name)
    done = path + '.done'
    with open(path + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(done):
            shutil.rmtree(path, ignore_errors=True)
            os.makedirs(path)
            build(path)
            open(done, 'w').close()
    return path


def copy_checkpoint(source_dir, prefix_name, directory):
    """Copies `<source_dir>/<prefix_name>.*` into `directory` (made if missing), and the
    `checkpoint` state file naming it there; returns the new prefix."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(source_dir):
        if name.startswith(prefix_name + '.'):
            shutil.copyfile(os.path.join(source_dir, name), os.path.join(directory, name))
    state = os.path.join(source_dir, 'checkpoint')
    if os.path.exists(state):
        with open(state) as f:
            text = f.read().replace(os.path.abspath(source_dir), os.path.abspath(directory))
        with open(os.path.join(directory, 'checkpoint'), 'w') as f:
            f.write(text)
    return os.path.join(directory, prefix_name)
