"""Atomic file writes: a temporary file in the target's folder, then a rename.

A reader (or a crash) sees either the old file or the complete new one, never a partial file.
"""
import json
import os
import tempfile


def write_bytes_atomic(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode('utf-8'))


def write_json_atomic(path, obj, indent=2):
    """Writes `obj` as JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + '\n')
