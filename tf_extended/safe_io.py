"""Reading the files a user hands us as if they could be hostile: dataset files, model cards and
export metadata, exported models, Caffe / PyTorch weights, results files.

- Only regular files are read (also through symlinks): a device (`/dev/zero`), a FIFO or a
  socket would be read forever or block, so they are refused before they are opened, and again
  (race-free) on the open descriptor.
- Sizes are checked from the file system before reading, and the read stops one byte past the
  limit (a file that grows while we read cannot get past it).
- Paths named inside a dataset (VOC split ids, COCO `file_name`) must stay inside the dataset
  folder: `check_inside` refuses absolute paths and `..` that climb out, by the text of the path
  (symlinks the user placed inside the folder, e.g. JPEGImages -> another disk, stay allowed).
"""

import hashlib
import json
import os
import stat


# Protocol buffers and flatbuffers cannot be larger: no frozen graph, SavedModel or TFLite model is.
SERIALIZED_MODEL_LIMIT = 2 << 30


class UnsafeFileError(OSError):
    """A file that must not be read: not a regular file, or above a size limit."""

    def __str__(self):
        return self.args[0] if self.args else ''


_KINDS = (
    (stat.S_ISDIR, 'a directory'),
    (stat.S_ISCHR, 'a character device'),
    (stat.S_ISBLK, 'a block device'),
    (stat.S_ISFIFO, 'a FIFO (named pipe)'),
    (stat.S_ISSOCK, 'a socket'),
)


def _kind(mode):
    for test, name in _KINDS:
        if test(mode):
            return name
    return 'not a regular file'


def _check_regular(path, mode, what):
    if not stat.S_ISREG(mode):
        link = ' (through a symlink)' if os.path.islink(path) else ''
        raise UnsafeFileError(
            f'{path}: the {what} is {_kind(mode)}{link}, not a regular file; refusing to read it.'
        )


def _open(path, what):
    """Opens a regular file read-only without blocking on FIFOs; returns (fd, size)."""
    _check_regular(
        path, os.stat(path).st_mode, what
    )  # before opening: opening a device can have effects
    flags = (
        os.O_RDONLY
        | getattr(os, 'O_NONBLOCK', 0)
        | getattr(os, 'O_NOCTTY', 0)
        | getattr(os, 'O_CLOEXEC', 0)
    )
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        _check_regular(path, st.st_mode, what)  # the path may have been swapped since the stat
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_bytes(path, max_bytes=None, what='file', limit_name=None):
    """Reads a regular file whole.

    Args:
      path: the file.
      max_bytes: refuse files larger than this (None: no limit).
      what: what the file is, for messages ('image', 'annotation XML').
      limit_name: how the user changes the limit (e.g. '--max_image_bytes'), for messages.
    Raises:
      UnsafeFileError: not a regular file or too large; OSError: cannot be read.
    """
    fd, size = _open(path, what)
    try:
        how = f' ({limit_name}; raise it if the file is genuine)' if limit_name else ''
        if max_bytes is not None and size > max_bytes:
            raise UnsafeFileError(
                f'{path}: the {what} has {size} bytes, more than the limit of {max_bytes}{how}.'
            )
        chunks, total = [], 0
        while max_bytes is None or total <= max_bytes:
            want = 1 << 20 if max_bytes is None else min(1 << 20, max_bytes + 1 - total)
            chunk = os.read(fd, want)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise UnsafeFileError(
                f'{path}: the {what} grew past the limit of {max_bytes} bytes while being '
                f'read{how}.'
            )
        return b''.join(chunks)
    finally:
        os.close(fd)


def read_text(path, max_bytes, what, expected):
    """Reads a UTF-8 text file whole with `read_bytes`'s checks, as text mode would: a leading
    byte order mark dropped (Windows editors write one), line ends ('\\r\\n', '\\r') made '\\n'.

    Args:
      path: str, the file; max_bytes: int, refuse larger files; what: str, what the file is, for
      messages ('labels file'); expected: str, what it should hold ('one class name per line').
    Returns:
      str.
    Raises:
      UnsafeFileError / OSError as `read_bytes`; ValueError naming the file and line: not UTF-8.
    """
    data = read_bytes(path, max_bytes, what)
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        line = data[: err.start].replace(b'\r\n', b'\n').replace(b'\r', b'\n').count(b'\n') + 1
        raise ValueError(
            f'{path}: not UTF-8 text (line {line}: {err.reason}); the {what} '
            f'should hold {expected}, saved as UTF-8.'
        ) from None
    del data  # files can be GiBs: free the bytes before the copies below
    return text.removeprefix('\ufeff').replace('\r\n', '\n').replace('\r', '\n')


def open_text(path, what='file', encoding='utf-8'):
    """Opens a regular file for reading text (a context manager, like `open`). Refuses devices, FIFOs."""
    fd, _ = _open(path, what)
    return os.fdopen(fd, 'r', encoding=encoding)


def open_binary(path, what='file'):
    """Opens a regular file for reading bytes (a context manager, like `open(path, 'rb')`).
    Refuses devices, FIFOs."""
    fd, _ = _open(path, what)
    return os.fdopen(fd, 'rb')


def file_digest(path, what='file'):
    """{'size': bytes, 'sha256': hex digest} of a regular file (read with `open_binary`'s
    checks: a FIFO is refused, not read forever)."""
    digest, size = hashlib.sha256(), 0
    with open_binary(path, what) as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
            size += len(block)
    return {'size': size, 'sha256': digest.hexdigest()}


def kind(path):
    """What `path` is when it is not a regular file, also through a symlink (str: e.g. 'a FIFO
    (named pipe)', 'a directory (through a symlink)', 'a broken or looping symlink'), or None for
    a regular file. Raises FileNotFoundError when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        if os.path.islink(path):
            return 'a broken or looping symlink'
        raise
    if stat.S_ISREG(mode):
        return None
    return _kind(mode) + (' (through a symlink)' if os.path.islink(path) else '')


def check_regular(path, what='file'):
    """Refuses a path that is not a regular file (also through a symlink) before a library that
    opens it by name reads it (OpenVINO, TFLite, zipfile); FileNotFoundError when missing."""
    _check_regular(path, os.stat(path).st_mode, what)


def read_json(path, what='JSON file', max_bytes=None):
    """The parsed content of a JSON file read with `read_bytes`'s checks.

    Raises:
      UnsafeFileError / OSError as `read_bytes`; ValueError naming the file: not UTF-8, not
      JSON, or nested too deeply for the parser.
    """
    return parse_json(read_bytes(path, max_bytes, what), path, what)


def parse_json(data, path, what='JSON file'):
    """The parsed content of `data` (bytes, UTF-8 JSON read from the str `path`, named in
    messages with the str `what`): for callers that also need the bytes (e.g. to hash them).

    Raises:
      ValueError naming the file: not UTF-8, not JSON, or nested too deeply for the parser.
    """
    try:
        return json.loads(data.decode('utf-8'))
    except UnicodeDecodeError as err:
        raise ValueError(f'{path}: the {what} is not UTF-8 text ({err.reason}).') from None
    except ValueError as err:  # JSONDecodeError, or an integer of over 4300 digits
        raise ValueError(f'{path}: the {what} is not valid JSON ({err}).') from None
    except RecursionError:
        raise ValueError(f'{path}: the {what} nests its JSON too deeply to read.') from None


# Model cards (model.json, an export's metadata.json, the copies inside model files) are a few
# KiB, their class names the most; a bigger one is not a card.
MAX_CARD_BYTES = 16 << 20


def parse_card_json(data):
    """The dict of a model card's JSON `data` (bytes or str) held inside a model file. Raises
    ValueError saying what it is instead ('more than ...', 'not JSON (...)', 'not a JSON
    object'), for 'the model card in <model> is ...' messages."""
    if len(data) > MAX_CARD_BYTES:
        raise ValueError(f'more than {MAX_CARD_BYTES} bytes, which no card is')
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise ValueError(f'not JSON ({err})') from None
    if not isinstance(meta, dict):
        raise ValueError('not a JSON object')
    return meta


def check_inside(relative_path):
    """Why `relative_path` (a path written inside a dataset file) would leave the folder it is
    relative to, or None when it stays inside.

    Judged on the text: absolute paths, `..` that climb above the folder, and NUL bytes are refused.
    """
    if not isinstance(relative_path, str):
        return f'is {relative_path!r}, not a path string'
    if '\0' in relative_path:
        return 'contains a NUL byte'
    if not relative_path:
        return 'is empty'
    if os.path.isabs(relative_path) or (os.sep != '/' and relative_path.startswith('/')):
        return 'is an absolute path'
    norm = os.path.normpath(relative_path)
    if norm == os.pardir or norm.startswith(os.pardir + os.sep):
        return 'climbs out of the dataset folder with ".."'
    return None
