"""The records of detect_ssd_network.py's output folder: which files earlier runs wrote there
(its `detections.json`, and the `.detections_pending.jsonl` of a run that did not finish), so
that a run replaces only outputs of this script, named as it names the outputs of the inputs the
records list, and never takes them as inputs.
"""

import json
import os
import re

from inference import detection
from tf_extended import atomic_io
from tf_extended import safe_io

JSON_NAME = detection.DETECTIONS_FILE
# The outputs written so far by a run that has not finished: one JSON object (its input and an
# output file name in --output_dir) per line, appended as each is written (`OutputRecord`).
PENDING_NAME = '.detections_pending.jsonl'
# An earlier run's detections.json (a long video's frames make it large, but not this large).
EARLIER_JSON_LIMIT = 1 << 30


def _file_name(value):
    """`value` when it is the plain name of a file in a folder (no folder part), else None."""
    if isinstance(value, str) and value not in ('', '.', '..') and '\0' not in value:
        return value if os.path.basename(value) == value else None
    return None


def output_name(path, n=0):
    """The name of input `path`'s output: `<stem>_det<ext>`, or `<stem>_det_<n><ext>` for n > 0
    (the names before it were taken); ext: `.mp4` for a video, an image's own `.jpg`, `.jpeg` or
    `.png` (lower case), else `.png`."""
    ext = os.path.splitext(path)[1].lower()
    if detection.is_video(path):
        ext = '.mp4'
    elif ext not in ('.jpg', '.jpeg', '.png'):
        ext = '.png'
    stem = os.path.splitext(os.path.basename(path))[0] + '_det'
    return f'{stem}_{n}{ext}' if n else stem + ext


def _is_output_of(path, name):
    """Whether `output_name` gives `name` to input `path` (for some n)."""
    if not _file_name(os.path.basename(path)):
        return False
    stem, ext = os.path.splitext(output_name(path))
    return bool(re.fullmatch(re.escape(stem) + r'(_[1-9][0-9]*)?' + re.escape(ext), name))


def _listed_outputs(output_dir):
    """(input, output path) of the outputs the folder's detections.json lists: its images and
    videos, and its `kept_outputs` (an output, a file name in `output_dir`, and its input; other
    entries, e.g. an older version's bare names, are skipped). Raises ValueError when the file is
    not ours."""
    path = os.path.join(output_dir, JSON_NAME)
    if not os.path.lexists(path):
        return []
    try:
        # Bounded, and a FIFO or device is refused (opening one would block).
        earlier = safe_io.read_json(path, JSON_NAME, EARLIER_JSON_LIMIT)
        outputs = [(i['file'], i['output']) for key in ('images', 'videos') for i in earlier[key]]
        kept = earlier.get('kept_outputs', [])  # absent from an older version's file
        if not (
            isinstance(earlier.get('model'), dict)
            and 'num_processed' in earlier
            and all(isinstance(value, str) for pair in outputs for value in pair)
            and isinstance(kept, list)
        ):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        why = f' ({err})' if isinstance(err, safe_io.UnsafeFileError) else ''
        raise ValueError(
            f'{path} exists and is not the detections.json of an earlier run of this '
            f'script{why}; it would be replaced. Move it away or choose another '
            f'--output_dir.'
        ) from None
    return outputs + _named_records(kept, output_dir)


def _named_records(items, output_dir):
    """(input, output path) of the `{'file': input, 'output': file name}` among `items`."""
    records = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get('file'), str):
            name = _file_name(item.get('output'))
            if name:
                records.append((item['file'], os.path.join(output_dir, name)))
    return records


def pending_outputs(output_dir):
    """(input, output path) of the outputs that the `PENDING_NAME` of an unfinished run in
    `output_dir` names (lines that are not such a record, e.g. one cut short by a kill, are
    skipped). Raises ValueError when that file cannot be read (not a regular file, too large)."""
    path = os.path.join(output_dir, PENDING_NAME)
    if not os.path.lexists(path):
        return []
    try:
        data = safe_io.read_bytes(path, EARLIER_JSON_LIMIT, PENDING_NAME)
    except OSError as err:
        raise ValueError(
            f'{path} cannot be read ({err}); it names the outputs of an unfinished run of this '
            f'script. Move it away or choose another --output_dir.'
        ) from None
    items = []
    for line in data.splitlines():
        try:
            items.append(json.loads(line))
        except (ValueError, RecursionError):
            pass
    return _named_records(items, output_dir)


def _ours(records, folder):
    """{resolved output path: input} of the (input, output path) `records` whose output is a
    file in `folder` (resolved) named as this script names an output of that input: a record
    of another output (planted, foreign) gives no file of the user's to this run."""
    ours = {}
    for file, out in records:
        real = os.path.realpath(out)
        if os.path.dirname(real) == folder and _is_output_of(file, os.path.basename(real)):
            ours[real] = file
    return ours


def earlier_outputs(output_dir):
    """({resolved path: input} of the files earlier runs wrote to `output_dir`, which this run
    may replace: those its detections.json lists, and those the `PENDING_NAME` of an interrupted
    run names; the latter apart, in the same form). Raises ValueError when `output_dir` is not a
    folder, a detections.json there is not one of ours, or a `PENDING_NAME` there cannot be
    read."""
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f'--output_dir {output_dir} is not a folder; choose a folder.')
    folder = os.path.realpath(output_dir)
    pending = _ours(pending_outputs(output_dir), folder)
    return {**_ours(_listed_outputs(output_dir), folder), **pending}, pending


def outputs_in(folder, output_dir, earlier):
    """The resolved paths of the outputs earlier runs wrote to input folder `folder`: `earlier`
    (`earlier_outputs`) for `output_dir`; for another folder, those its records name (none where
    they are not ours)."""
    if os.path.realpath(folder) == os.path.realpath(output_dir):
        return earlier
    try:
        return earlier_outputs(folder)[0]
    except ValueError:
        return {}


class OutputRecord:
    """`PENDING_NAME` in `output_dir` while a run writes its outputs: the files written so far,
    each with its input, so that a run which does not reach its detections.json (Ctrl-C, a kill)
    leaves them recognisable as ours. One line is appended per output (no rewrite: cheap for any
    number of images); `finish` removes the file once detections.json lists them.

    carried: (input, output name) an earlier unfinished run recorded, kept in the record until
    this run's detections.json lists them (this run may be interrupted too)."""

    def __init__(self, output_dir, carried=()):
        self.path = os.path.join(output_dir, PENDING_NAME)
        # Replaces whatever is there (a line cut short, a link) with a regular file of ours.
        atomic_io.write_text_atomic(self.path, ''.join(_line(*item) for item in carried))
        flags = os.O_WRONLY | os.O_APPEND | getattr(os, 'O_NOFOLLOW', 0)
        self._fd = os.open(self.path, flags | getattr(os, 'O_CLOEXEC', 0))
        self._lines = len(carried)

    def add(self, file, name):
        os.write(self._fd, _line(file, name).encode('utf-8'))
        self._lines += 1

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self):
        """Removes the record: call after detections.json was written."""
        self.close()
        os.remove(self.path)

    def abandon(self):
        """For a run that ends without its detections.json: keeps the record for the next run
        where it names outputs, else removes it (an empty one reads as outputs written)."""
        if self._lines:
            self.close()
        else:
            self.finish()


def _line(file, name):
    return json.dumps({'file': file, 'output': name}) + '\n'
