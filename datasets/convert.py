"""Conversion engine shared by the VOC and COCO converters: sharding, worker processes,
progress, atomic output and the metadata file.

Output in `output_dir`:
- `<output_name>_<NNN>.tfrecord`: shards of `samples_per_file` examples (the last may be
  shorter, and shards shrink when examples are skipped); NNN has at least 3 digits.
- `<output_name>_metadata.json` (`metadata_path`): written last; its presence marks a complete
  conversion. It holds the example count, the shard list (name, example count, size in bytes,
  sha256 of each shard, so readers can tell an emptied, truncated or replaced shard), the classes
  with per-class image/object/difficult counts (and crowd-region counts, `num_crowd`, where the
  source flags crowd regions: COCO), the options, and a report of what was fixed,
  dropped or skipped (with file names; a fixed entry's `fix` says what kind of fix, FIXES).

Atomicity: shards are written into a hidden folder `.<output_name>.tmp-<pid>` inside
`output_dir` and renamed into place only after every shard is done; the metadata file comes last
(temp name + rename). An interrupted conversion leaves at most the hidden folder (removed by the
next run with the same output name) and never a metadata file. Replacing an earlier run's output
first writes `<output_name>_incomplete.json` (listing old and new shards), then deletes the old
metadata and shards, moves the new shards in, writes the new metadata and removes the marker: a
run interrupted while replacing leaves the marker, and readers refuse to read a folder with a
marker and no metadata instead of using whatever shards remain.

Ownership: the converter deletes or overwrites only files it wrote, i.e. shards listed in an
earlier run's metadata (or marker) of the same output name. Any other file whose name matches the
shard names (`<output_name>_<digits>.tfrecord`, e.g. an older port's records or a user's own
file), or a `<output_name>_metadata.json` that is not ours, stops the run before any work with
`OutputConflictError`.

Validation: every record is checked before it is written (`validate_record`): boxes finite and
inside [0, 1], labels within the classes, flags 0/1, the image id an int64, at most
`max_objects_per_image` objects (matching costs anchors x objects). A source may carry a
`problem` (a bad entry found while listing, e.g. a path that leaves the dataset folder): the run
stops on it before converting anything, or skips and reports it with `skip_bad_examples`.

Determinism: examples are ordered by the caller, optionally shuffled with `random.Random(seed)`,
then cut into shards; each shard is converted by exactly one worker with the same code, so the
bytes written do not depend on `num_workers`.

Workers are `spawn` processes (safe with TensorFlow loaded; no fork of a threaded parent). They
load, normalise and serialize examples without TensorFlow (importing it costs seconds per
process); the main process writes each shard as it arrives. Each worker has a pipe of its own
(`_WorkerPool`, not multiprocessing.Pool, whose terminate can hang: see there), so that Ctrl-C or
an error ends the workers at once, whatever they were doing. Spawn re-imports the caller's
`__main__` module in every worker, so a script calling `convert` with several workers should not
import TensorFlow at module level (tf_convert_data.py does not).
"""

import collections
import glob
import hashlib
import itertools
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import re
import shutil
import signal
import struct
import sys
import threading
import time
import traceback

from absl import logging

from datasets import example_format
from datasets import image_io
from tf_extended import atomic_io
from tf_extended import safe_io
from tf_extended import signals
from tf_extended import texts

METADATA_SUFFIX = '_metadata.json'
INCOMPLETE_SUFFIX = '_incomplete.json'
METADATA_FORMAT = 'ssd-tfrecords'
# 2: files[] entries carry 'size' and 'sha256'. Version 1 (without them) is still read.
METADATA_VERSION = 2
# Metadata is a few kB plus ~200 bytes per reported item (fixed box, dropped object): 1 GiB is
# millions of items; more is not a file this converter wrote.
MAX_METADATA_BYTES = 1 << 30
DEFAULT_MAX_OBJECTS_PER_IMAGE = 1000
# A class's external id in the metadata (the model card's `category_ids`): a COCO annotation
# file's category id, or the id of a TF Object Detection API label map's item (VOC with
# --labels_file=label_map.pbtxt).
COCO_CATEGORY_ID = 'coco_category_id'
LABEL_MAP_ID = 'label_map_id'
CATEGORY_ID_KEYS = (COCO_CATEGORY_ID, LABEL_MAP_ID)
_TEMP_MARKER = '.written-by-tf_convert_data'


# What a 'fixed' report entry did (its 'fix'), as (singular, plural) phrases for the summary
# line, in its order: re-encoding an RGBA or palette PNG is routine, clipping a box repairs an
# annotation.
FIXES = {
    'reencoded': ('image re-encoded as JPEG', 'images re-encoded as JPEG'),
    'box_clipped': ('box clipped', 'boxes clipped'),
    'size': ('image size corrected', 'image sizes corrected'),
    'filename': (
        "<filename> other than the image's name",
        "<filename>s other than the images' names",
    ),
    'area': ('missing area set to w*h', 'missing areas set to w*h'),
}


def report_entry(file, kind, detail, fix=None):
    """A metadata report entry {'file', 'kind', 'detail'}; a 'fixed' one also has 'fix', its
    key in FIXES, so that the summary can count what kinds of fix there were."""
    entry = {'file': file, 'kind': kind, 'detail': detail}
    if fix is not None:
        entry['fix'] = fix
    return entry


class BadExampleError(ValueError):
    """An annotation or image that cannot be converted; the message names the file."""


def load_example_image(path, limits, where=None):
    """`image_io.load_image(path, limits)` for a loader: its errors become `BadExampleError`,
    whose message starts with `where` (the example's name) when given, then names the image."""
    prefix = '' if where is None else f'{where}: '
    try:
        return image_io.load_image(path, limits)
    except safe_io.UnsafeFileError as e:  # its message names the file
        raise BadExampleError(f'{prefix}{e}') from None
    except (image_io.BadImageError, OSError) as e:
        raise BadExampleError(f'{prefix}{path}: {e}') from None


class UnknownClassError(ValueError):
    """An object's class is not in the class list; the message names file, name and known classes."""


class OutputConflictError(ValueError):
    """The output folder holds files of the output name that this converter did not write."""


class DatasetFilesError(ValueError):
    """The shards on disk do not match what the metadata says was written."""


def metadata_path(output_dir, output_name):
    """Path of the metadata JSON of a conversion."""
    return os.path.join(output_dir, output_name + METADATA_SUFFIX)


def incomplete_marker_path(output_dir, output_name):
    """Path of the marker present while a conversion replaces the shards of `output_name`."""
    return os.path.join(output_dir, output_name + INCOMPLETE_SUFFIX)


def shard_pattern(output_name):
    """Regex (fullmatch) of every shard name a conversion to `output_name` may write."""
    return re.compile(re.escape(output_name) + r'_\d{3,}\.tfrecord')


def shard_name(output_name, index, num_shards):
    """`<output_name>_<NNN>.tfrecord`, zero-padded to at least 3 digits."""
    width = max(3, len(str(num_shards - 1)))
    return f'{output_name}_{index:0{width}d}.tfrecord'


_COUNTER = None  # examples done, shared with worker processes for the progress line


def _init_worker(counter, pool_worker=False):
    global _COUNTER
    _COUNTER = counter
    if pool_worker:
        # Ctrl-C reaches the whole process group: the main process reports it in one line and
        # ends the pool; a worker's own KeyboardInterrupt would only add a traceback each.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # One OpenCV thread per worker process: the processes are the parallelism; more threads oversubscribe.
        import cv2

        cv2.setNumThreads(1)
        logging.set_verbosity(logging.ERROR)


def _start_pool(ctx, workers, counter):
    """A `_WorkerPool` of `workers` spawned processes that ignore SIGINT from their first
    instruction.

    They inherit the ignoring (Python keeps an inherited SIG_IGN), so a Ctrl-C (sent to the whole
    process group) while they start cannot give a KeyboardInterrupt traceback each, and the
    main process cannot be interrupted while it hands them their start-up data (the child then
    failed with 'EOFError: Ran out of input'). A Ctrl-C in those milliseconds is lost.
    Their start-up code ignores it too, for a conversion run outside the main thread (where
    handlers cannot be set).

    A SIGTERM (a scheduler's stop) in those milliseconds is held instead, and raised again for
    the main process's handler once the workers are started (and ended, when that handler
    raises): the workers must not ignore it (the pool ends them with it), and a handler set in
    Python is not theirs (spawned: a new program).
    """
    if threading.current_thread() is not threading.main_thread():
        return _WorkerPool(ctx, workers, counter)
    pool = None
    try:
        with signals.held((signal.SIGTERM,)):
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                pool = _WorkerPool(ctx, workers, counter)
            finally:
                signal.signal(signal.SIGINT, previous)
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    return pool


class _WorkerPool:
    """Worker processes of context `ctx`, each handed one task at a time through a pipe of its
    own by a thread of the main process; a context manager that ends them on leaving (at once on
    an exception).

    Not multiprocessing.Pool, whose terminate (on Ctrl-C or an error) could hang for good: its
    workers send results through one pipe behind a lock shared by every process, and terminate
    stops its result thread, then writes to that pipe itself. A worker still sending a shard
    (more than a pipe holds) then held the lock forever, or, killed while sending, left it taken
    for the pool's task thread; seen in about 1 of 10 conversions interrupted while the workers
    were busy (py-spy: Pool._terminate_pool in SimpleQueue.put, the worker in its send). Here
    the only lock the workers share with the main process is the progress counter's, which the
    main process reads no more once the pool ends: ending kills the workers, whatever they do.
    """

    def __init__(self, ctx, workers, counter):
        # Kept: a worker that is still starting opens the counter's semaphore by name, which
        # is gone once the counter is freed here.
        self._counter = counter
        self._ending = False
        self._threads = []
        self._workers = []  # (process, our end of its pipe)
        try:
            for _ in range(workers):
                ours, theirs = ctx.Pipe()
                process = ctx.Process(target=_pool_worker, args=(theirs, counter), daemon=True)
                process.start()
                theirs.close()
                self._workers.append((process, ours))
        except BaseException:
            self.terminate()
            raise

    @property
    def processes(self):
        return [process for process, _ in self._workers]

    def imap(self, func, tasks):
        """Yields `func(task)` (picklable, computed in a worker) for each of `tasks`, in their
        order; the workers go on in the background (as Pool.imap's do) while the caller uses a
        result. Raises what `func` raised (with the worker's traceback as its cause), or
        ChildProcessError when a worker ended while it had a task (e.g. killed for memory)."""
        tasks = list(tasks)
        results = {}  # task index -> (ok, value)
        ended = []  # the thread's end: [] while it runs, else [None] or [why the pool failed]
        arrived = threading.Condition()
        thread = threading.Thread(
            target=self._hand_out,
            args=(func, tasks, results, ended, arrived),
            name='conversion pool',
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()
        for index in range(len(tasks)):
            with arrived:
                while index not in results and not ended:
                    # Not wait() without a timeout: a Ctrl-C that reaches another thread of this
                    # process would not wake it until the next result.
                    arrived.wait(0.2)
                if index not in results:
                    raise ended[0] or RuntimeError('the conversion pool ended early')
                ok, value = results.pop(index)
            if not ok:
                error, text = value
                raise error from WorkerTraceback(text)
            yield value

    def _hand_out(self, func, tasks, results, ended, arrived):
        """The thread of `imap`: hands the tasks to idle workers and collects the results."""
        pending = enumerate(tasks)
        idle = list(self._workers)
        busy = {}  # our end of a worker's pipe -> (task index, process)
        current = None  # the pipe in use (when it fails: its worker ended)
        error = None
        try:
            while not self._ending:
                while idle:
                    task = next(pending, None)
                    if task is None:
                        break
                    process, current = idle.pop()
                    busy[current] = (task[0], process)
                    current.send((func, task[1]))
                if not busy:
                    break
                ready = multiprocessing.connection.wait(
                    [*busy, *(process.sentinel for _, process in busy.values())]
                )
                for current, (index, process) in list(busy.items()):
                    if current in ready or process.sentinel in ready:
                        if not current.poll():
                            raise EOFError  # ended without a word
                        result = current.recv()
                        with arrived:
                            results[index] = result
                            arrived.notify()
                        del busy[current]
                        idle.append((process, current))
                current = None
        except (EOFError, OSError) as e:
            index, process = busy.get(current, (None, None))
            if self._ending:
                pass  # terminate ended the workers
            elif process is None:
                error = e
            else:
                process.join(1)
                error = ChildProcessError(
                    f'a conversion worker (pid {process.pid}) ended with exit code '
                    f'{process.exitcode} while converting shard {index} (killed for lack of '
                    'memory? try fewer --num_workers or a smaller --samples_per_file)'
                )
        except BaseException as e:  # e.g. a task that cannot be pickled
            error = e
        finally:
            with arrived:
                ended.append(error)
                arrived.notify()

    def close(self, timeout=10.0):
        """Lets the workers end once idle; ends any still there after `timeout` seconds."""
        if any(thread.is_alive() for thread in self._threads):
            return self.terminate()  # tasks left (the caller stopped early): not idle
        for _, connection in self._workers:
            try:
                connection.send(None)
            except OSError:
                pass  # ended already
        deadline = time.monotonic() + timeout
        for process, _ in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
        self.terminate()

    def terminate(self):
        """Ends the workers now (SIGTERM, then SIGKILL) and waits for them."""
        self._ending = True
        for process, _ in self._workers:
            if process.exitcode is None:
                process.terminate()
        for process, _ in self._workers:
            process.join(5)
            if process.exitcode is None:
                process.kill()
                process.join()
        for thread in self._threads:  # its workers' pipes are closed at their end: it ends
            thread.join(5)
        for _, connection in self._workers:
            connection.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.terminate()


def _pool_worker(connection, counter):
    """A `_WorkerPool` worker: runs (func, task) messages until None or the main process ends."""
    _init_worker(counter, pool_worker=True)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the main process is gone
        if message is None:
            return
        func, task = message
        try:
            result = (True, func(task))
        except Exception as e:
            result = (False, (e, ''.join(traceback.format_exception(e))))
        try:
            try:
                connection.send(result)
            except OSError:
                return  # the main process is gone
            except Exception as e:  # the result or the exception cannot be pickled
                what = 'exception' if not result[0] else 'result'
                error = RuntimeError(f'a conversion worker could not send its {what}: {e!r}')
                connection.send((False, (error, result[1][1] if not result[0] else '')))
        except OSError:
            return


class WorkerTraceback(Exception):
    """The traceback (text) of an exception raised in a conversion worker: the cause of the same
    exception raised again in the main process, so that its traceback shows where it began."""

    def __str__(self):
        return '\n\n' + self.args[0]


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def validate_record(record, num_classes, max_objects_per_image, where):
    """Raises BadExampleError when `record` would convert but could not be used for training or
    evaluation: too many objects, non-finite or out-of-range boxes, labels outside 1..num_classes,
    flags other than 0/1, an image id outside int64, an image without pixels."""
    image = record.image
    if not (
        isinstance(image.height, int)
        and isinstance(image.width, int)
        and image.height > 0
        and image.width > 0
    ):
        raise BadExampleError(
            f'{where}: image size {image.width}x{image.height}, expected positive integers.'
        )
    if len(record.objects) > max_objects_per_image:
        raise BadExampleError(
            f'{where}: {len(record.objects)} objects, more than '
            f'--max_objects_per_image={max_objects_per_image} '
            f'(matching costs anchors x objects per image); raise the limit if the annotation is genuine.'
        )
    if record.image_id is not None and not (
        isinstance(record.image_id, int)
        and not isinstance(record.image_id, bool)
        and _INT64_MIN <= record.image_id <= _INT64_MAX
    ):
        raise BadExampleError(f'{where}: image id {record.image_id!r} is not a 64-bit integer.')
    for index, obj in enumerate(record.objects):
        box = tuple(obj.box)
        if len(box) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in box):
            raise BadExampleError(
                f'{where}: object {index} ({obj.name}) has box {box}, expected 4 finite numbers.'
            )
        ymin, xmin, ymax, xmax = box
        if not (0.0 <= ymin <= ymax <= 1.0 and 0.0 <= xmin <= xmax <= 1.0):
            raise BadExampleError(
                f'{where}: object {index} ({obj.name}) has relative box [ymin, xmin, ymax, xmax] = '
                f'{list(box)}, expected 0 <= min <= max <= 1.'
            )
        label_ok = isinstance(obj.label, int) and not isinstance(obj.label, bool)  # True is 1
        if not (label_ok and 1 <= obj.label <= num_classes):
            raise BadExampleError(
                f'{where}: object {index} ({obj.name}) has label {obj.label!r}, expected 1..'
                f'{num_classes}.'
            )
        for field in ('difficult', 'truncated', 'iscrowd'):
            value = getattr(obj, field)
            if value not in ((None, 0, 1) if field == 'iscrowd' else (0, 1)):
                raise BadExampleError(
                    f'{where}: object {index} ({obj.name}) has {field}={value!r}, expected 0 or 1.'
                )


def _convert_shard(args):
    """Converts one shard's examples (in a worker). Returns (serialized examples, statistics and report).

    Raises BadExampleError on a bad example unless skipping, UnknownClassError from the loader.
    """
    sources, loader, skip_bad_examples, checks = args
    records = []
    stats = {'classes': {}, 'report': [], 'crowd_flags': False}
    for source in sources:
        try:
            problem = getattr(source, 'problem', None)
            if problem:
                raise BadExampleError(problem)
            record, report = loader(source)
            validate_record(
                record, checks['num_classes'], checks['max_objects_per_image'], source.report_name
            )
        except BadExampleError as e:
            if not skip_bad_examples:
                raise
            stats['report'].append(
                {'file': source.report_name, 'kind': 'skipped_example', 'detail': str(e)}
            )
        else:
            records.append(example_format.serialize_example(record))
            stats['report'].extend(report)
            seen = set()
            for obj in record.objects:
                counts = stats['classes'].setdefault(obj.label, [0, 0, 0, 0])
                counts[1] += 1
                counts[2] += obj.difficult
                counts[3] += obj.iscrowd or 0
                stats['crowd_flags'] |= obj.iscrowd is not None
                if obj.label not in seen:
                    counts[0] += 1
                    seen.add(obj.label)
        with _COUNTER.get_lock():
            _COUNTER.value += 1
    stats['num_examples'] = len(records)
    return records, stats


def _write_records(path, records):
    """Writes a shard; returns {'size': bytes, 'sha256': hex digest} of the file written."""
    # Imported here so that worker processes, which import this module, never load TensorFlow.
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return file_digest(path)


def file_digest(path):
    """{'size': bytes, 'sha256': hex digest} of a file."""
    digest, size = hashlib.sha256(), 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
            size += len(block)
    return {'size': size, 'sha256': digest.hexdigest()}


class _Progress:
    """Prints `done/total, images/s, ETA` to stderr: a redrawn bar on a terminal, else a line every 10 s."""

    def __init__(self, counter, total, enabled):
        self.counter, self.total, self.enabled = counter, total, enabled
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._print(final=True)

    def _run(self):
        interval = 0.5 if self.tty else 10.0
        while not self._stop.wait(interval):
            self._print()

    def _print(self, final=False):
        # Without the counter's lock: a worker killed while it held it (as it counted) would
        # block this read, and the end of the pool's `with` with it.
        done = self.counter.get_obj().value
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float('inf')
        frac = done / self.total if self.total else 1.0
        bar = '#' * int(frac * 30) + '.' * (30 - int(frac * 30))
        line = (
            f'[convert] |{bar}| {done}/{self.total} images {100 * frac:5.1f}% '
            f'{rate:7.1f} img/s ' + (f'{elapsed:.1f}s total' if final else f'ETA {eta:.0f}s')
        )
        if self.tty:
            sys.stderr.write('\r' + line + ('\n' if final else ''))
        else:
            sys.stderr.write(line + '\n')
        sys.stderr.flush()


def _remove_stale(output_dir, output_name):
    """Removes temp folders of interrupted conversions: only ours (marker file inside), only
    of dead processes."""
    for stale in glob.glob(
        os.path.join(glob.escape(output_dir), f'.{glob.escape(output_name)}.tmp-*')
    ):
        pid = stale.rsplit('.tmp-', 1)[1]
        if not (
            pid.isdigit()
            and os.path.isdir(stale)
            and not os.path.islink(stale)
            and os.path.isfile(os.path.join(stale, _TEMP_MARKER))
        ):
            continue  # not a folder this converter made
        # This process' own folder is an earlier, interrupted conversion's (and has this one's
        # name): stale too.
        if int(pid) != os.getpid() and atomic_io.pid_alive(int(pid)):
            logging.warning('%s belongs to a running conversion (pid %s); leaving it.', stale, pid)
            continue
        logging.info('Removing %s left by an interrupted conversion.', stale)
        shutil.rmtree(stale, ignore_errors=True)


def _listed_shards(path, output_name, what):
    """Shard names listed in our metadata or marker file at `path` (empty when there is none).

    Raises:
      OutputConflictError: the file exists but was not written by this converter.
    """
    if not os.path.lexists(path):
        return set()
    try:
        data = safe_io.read_json(path, what, MAX_METADATA_BYTES)
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get('format') != METADATA_FORMAT:
        raise OutputConflictError(
            f'{path} exists but is not a {what} written by tf_convert_data.py; refusing to replace it or the '
            f'shards it may describe. Move it away or choose another --output_name.'
        )
    pattern = shard_pattern(output_name)
    files = data.get('files')
    return {
        f['name']
        for f in (files if isinstance(files, list) else [])
        if isinstance(f, dict) and isinstance(f.get('name'), str) and pattern.fullmatch(f['name'])
    }


def owned_outputs(output_dir, output_name):
    """The shard names in output_dir that an earlier conversion to `output_name` wrote.

    Raises:
      OutputConflictError: output_dir holds a file named like our shards (or our metadata) that
        no metadata of ours lists; we neither overwrite nor delete such files.
    """
    if not os.path.isdir(output_dir):
        return set()
    meta = metadata_path(output_dir, output_name)
    owned = _listed_shards(meta, output_name, 'metadata file') | _listed_shards(
        incomplete_marker_path(output_dir, output_name), output_name, 'conversion marker'
    )
    pattern = shard_pattern(output_name)
    foreign = sorted(n for n in os.listdir(output_dir) if pattern.fullmatch(n) and n not in owned)
    if foreign:
        listed = texts.listed(foreign, 5)
        raise OutputConflictError(
            f'{output_dir} holds {listed}, named like the shards of '
            f'--output_name={output_name} but not written by '
            f'tf_convert_data.py for it (not listed in {os.path.basename(meta)}); refusing to '
            'overwrite or delete '
            f'{"it" if len(foreign) == 1 else "them"}. Move '
            f'{"it" if len(foreign) == 1 else "them"} away or choose '
            f'another --output_name.'
        )
    return owned


def _make_temp_dir(output_dir, output_name):
    """Creates and returns `<output_dir>/.<output_name>.tmp-<pid>` with its marker file (which
    `_remove_stale` requires)."""
    temp_dir = os.path.join(output_dir, f'.{output_name}.tmp-{os.getpid()}')
    os.makedirs(temp_dir)
    with open(os.path.join(temp_dir, _TEMP_MARKER), 'w'):
        pass
    return temp_dir


def _replace_outputs(output_dir, output_name, temp_dir, shards, metadata):
    """Replaces an earlier run's output (only the files it wrote) by the new shards and metadata.

    A marker listing old and new shards is present while files are deleted and moved, so an
    interruption leaves a folder that readers refuse and that the next run may clean up.
    """
    owned = owned_outputs(output_dir, output_name)
    new = {final for _, final in shards}
    marker = incomplete_marker_path(output_dir, output_name)
    _write_json_atomic(
        marker,
        {
            'format': METADATA_FORMAT,
            'version': METADATA_VERSION,
            'output_name': output_name,
            'status': 'incomplete',
            'note': 'tf_convert_data.py was replacing these shards and did not finish: convert again.',
            'files': [{'name': n} for n in sorted(owned | new)],
        },
    )
    meta = metadata_path(output_dir, output_name)
    if os.path.lexists(meta):
        os.remove(meta)
    for name in sorted(owned - new):
        if os.path.lexists(os.path.join(output_dir, name)):
            os.remove(os.path.join(output_dir, name))
    for temp_name, final_name in shards:
        os.replace(os.path.join(temp_dir, temp_name), os.path.join(output_dir, final_name))
    _write_json_atomic(meta, metadata)
    os.remove(marker)


def _write_json_atomic(path, data):
    # A fresh temporary of its own (a fixed `<path>.tmp-<pid>` was opened through a planted link).
    atomic_io.write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + '\n')


def convert(
    sources,
    loader,
    class_names,
    output_dir,
    output_name,
    samples_per_file=200,
    shuffle=True,
    seed=0,
    num_workers=None,
    skip_bad_examples=False,
    description=None,
    class_extra=None,
    show_progress=True,
    max_objects_per_image=DEFAULT_MAX_OBJECTS_PER_IMAGE,
):
    """Converts examples to sharded TFRecords plus the metadata file.

    Args:
      sources: list of picklable example descriptions with a `report_name` attribute and
        optionally a `problem` (a string when the entry is already known to be bad).
      loader: picklable callable source -> (example_format.ExampleRecord, report list); raises
        BadExampleError or UnknownClassError.
      class_names: tuple of class names; label id = index + 1.
      output_dir, output_name: where and under which prefix to write.
      samples_per_file: examples per shard (>= 1).
      shuffle, seed: shuffle the example order with random.Random(seed) before sharding.
      num_workers: processes (default: all cores; capped at the number of shards). 1 runs in-process.
      skip_bad_examples: skip (and report) examples raising BadExampleError instead of failing.
      description: dict stored under 'source' in the metadata (dataset kind, folders, split, options).
      class_extra: optional list (one dict per class) merged into the metadata class entries.
      show_progress: print progress lines to stderr.
      max_objects_per_image: examples with more objects are bad examples (see validate_record).
    Returns:
      the metadata dict (also written to metadata_path(output_dir, output_name)).
    Raises:
      ValueError: no examples, bad arguments; BadExampleError/UnknownClassError from the loader or
      validation; OutputConflictError: output_dir holds files of that name we did not write.
    """
    if samples_per_file < 1:
        raise ValueError(f'samples_per_file must be >= 1, got {samples_per_file}.')
    if not sources:
        raise ValueError('no examples to convert: the input lists no images.')
    if not re.fullmatch(r'[\w.\-]+', output_name):
        raise ValueError(
            f'output_name {output_name!r} must be a plain file-name prefix (letters, digits, _ . -).'
        )
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise ValueError(f'num_workers must be >= 1, got {num_workers}.')
    if max_objects_per_image < 1:
        raise ValueError(f'max_objects_per_image must be >= 1, got {max_objects_per_image}.')
    problems = [s for s in sources if getattr(s, 'problem', None)]
    if problems and not skip_bad_examples:
        more = f' ({len(problems) - 1} more such entries)' if len(problems) > 1 else ''
        raise BadExampleError(f'{problems[0].problem}{more}')
    order = list(sources)
    if shuffle:
        random.Random(seed).shuffle(order)
    chunks = [order[i : i + samples_per_file] for i in range(0, len(order), samples_per_file)]
    os.makedirs(output_dir, exist_ok=True)
    owned_outputs(output_dir, output_name)  # refuse before any work, not after it
    _remove_stale(output_dir, output_name)
    temp_names = [f'part-{i:06d}.tfrecord' for i in range(len(chunks))]
    checks = {'num_classes': len(class_names), 'max_objects_per_image': max_objects_per_image}
    tasks = [(c, loader, skip_bad_examples, checks) for c in chunks]
    workers = min(num_workers, len(tasks))
    logging.info(
        'Converting %s into %s with %s.',
        texts.counted(len(order), 'example'),
        texts.counted(len(tasks), 'shard'),
        texts.counted(workers, 'worker'),
    )
    temp_dir = None
    try:
        # A Ctrl-C or SIGTERM as it is made: removed below (a folder without its marker would
        # stay: `_remove_stale` leaves it).
        with signals.held():
            temp_dir = _make_temp_dir(output_dir, output_name)
        results = []
        if workers == 1:
            counter = multiprocessing.Value('q', 0)
            _init_worker(counter)
            with _Progress(counter, len(order), show_progress):
                for name, task in zip(temp_names, tasks):
                    records, stats = _convert_shard(task)
                    stats['file'] = _write_records(os.path.join(temp_dir, name), records)
                    results.append(stats)
        else:
            ctx = multiprocessing.get_context('spawn')
            counter = ctx.Value('q', 0)
            with _start_pool(ctx, workers, counter) as pool:
                with _Progress(counter, len(order), show_progress):
                    for name, (records, stats) in zip(temp_names, pool.imap(_convert_shard, tasks)):
                        stats['file'] = _write_records(os.path.join(temp_dir, name), records)
                        results.append(stats)
        metadata, moves = _metadata(
            results,
            temp_names,
            class_names,
            output_name,
            samples_per_file,
            shuffle,
            seed,
            skip_bad_examples,
            description,
            class_extra,
            max_objects_per_image,
        )
        if metadata['num_examples'] == 0:
            # The reasons go to the metadata's report, which is not written then: shown here.
            skipped = [e for e in metadata['report']['entries'] if e['kind'] == 'skipped_example']
            reasons = ''.join(
                '\n  '
                + (
                    e['detail']
                    if e['detail'].startswith(e['file'])
                    else f'{e["file"]}: {e["detail"]}'
                )
                for e in skipped[:5]
            )
            more = f'\n  ... and {len(skipped) - 5} more' if len(skipped) > 5 else ''
            raise ValueError(
                f'every one of the {len(order)} examples was skipped; nothing written. The '
                f'first reasons:{reasons}{more}'
            )
        _replace_outputs(output_dir, output_name, temp_dir, moves, metadata)
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    for kind, count in metadata['report']['counts'].items():
        if count:
            logging.warning(
                '%d %s entries%s; see %s.',
                count,
                kind,
                _fixes_said(metadata['report']['entries']) if kind == 'fixed' else '',
                metadata_path(output_dir, output_name),
            )
    return metadata


def _fixes_said(entries):
    """' (20 images re-encoded as JPEG, 12 boxes clipped)': what the 'fixed' report `entries`
    did, counted by their `fix` (FIXES order), so that re-encodings do not hide repairs."""
    counts = collections.Counter(e.get('fix') for e in entries if e['kind'] == 'fixed')
    said = [f'{counts[fix]} {FIXES[fix][counts[fix] != 1]}' for fix in FIXES if counts[fix]]
    others = sum(n for fix, n in counts.items() if fix not in FIXES)
    if others:  # a loader of another source that gives no `fix`
        said.append(f'{others} other')
    return f' ({", ".join(said)})'


def _metadata(
    results,
    temp_names,
    class_names,
    output_name,
    samples_per_file,
    shuffle,
    seed,
    skip_bad_examples,
    description,
    class_extra,
    max_objects_per_image,
):
    """Merges shard results in shard order. Returns (metadata dict, [(temp name, final name)])."""
    kept = [(n, r) for n, r in zip(temp_names, results) if r['num_examples'] > 0]
    files, moves = [], []
    for index, (temp_name, result) in enumerate(kept):
        final = shard_name(output_name, index, len(kept))
        files.append(
            {
                'name': final,
                'num_examples': result['num_examples'],
                'size': result['file']['size'],
                'sha256': result['file']['sha256'],
            }
        )
        moves.append((temp_name, final))
    # Sources with crowd regions (COCO) flag each object; VOC's have no such flag (None).
    crowd_flags = any(r['crowd_flags'] for r in results)
    classes = []
    for i, name in enumerate(class_names):
        counts = [sum(r['classes'].get(i + 1, [0] * 4)[k] for r in results) for k in range(4)]
        entry = {
            'id': i + 1,
            'name': name,
            'num_images': counts[0],
            'num_objects': counts[1],
            'num_difficult': counts[2],
        }
        if crowd_flags:
            entry['num_crowd'] = counts[3]
        entry.update((class_extra or [{}] * len(class_names))[i])
        classes.append(entry)
    entries = [e for r in results for e in r['report']]
    kinds = ('fixed', 'dropped_object', 'unknown_class', 'skipped_example')
    metadata = {
        'format': METADATA_FORMAT,
        'version': METADATA_VERSION,
        'output_name': output_name,
        'num_examples': sum(f['num_examples'] for f in files),
        'num_classes_including_background': len(class_names) + 1,
        'classes': classes,
        'files': files,
        'source': dict(description or {}),
        'options': {
            'samples_per_file': samples_per_file,
            'shuffle': shuffle,
            'seed': seed,
            'skip_bad_examples': skip_bad_examples,
            'max_objects_per_image': max_objects_per_image,
        },
        'report': {
            'counts': {k: sum(e['kind'] == k for e in entries) for k in kinds},
            'entries': entries,
        },
    }
    return metadata, moves


def open_shard(path):
    """The TFRecord file `path` opened for binary reading.

    Raises:
      ValueError: not a regular file (a FIFO, device or directory is refused before it is
      opened: opening a FIFO waited for a writer forever).
    """
    what = safe_io.kind(path)
    if what:
        raise ValueError(
            f'{path} is {what}, not a regular file, so not a TFRecord shard; refusing to read it. '
            'Put the TFRecord file itself there, or move it away.'
        )
    return safe_io.open_binary(path, 'TFRecord file')  # checked again on the descriptor


def record_spans(f, path):
    """Yields (offset, length) of each record's data in the TFRecord file `f` (opened by
    open_shard from `path`), from the 12-byte record headers (uint64 length, uint32 CRC of it;
    the data's CRC follows the data). No CRC is checked. The consumer may read `f` between
    yields.

    Raises:
      ValueError: the file ends inside a record, or is GZIP-compressed.
    """
    size = os.fstat(f.fileno()).st_size
    offset = index = 0
    while offset < size:
        f.seek(offset)
        header = f.read(12)
        if len(header) < 12:
            problem = f'record {index} header cut at byte {offset}'
            break
        (length,) = struct.unpack('<Q', header[:8])
        end = offset + 12 + length + 4
        if end > size:
            problem = (
                f'record {index} at byte {offset} declares {length} bytes, past the end of the file'
            )
            break
        yield offset + 12, length
        offset, index = end, index + 1
    else:
        return
    if _gzip_compressed(path):
        raise ValueError(_gzip_message(path) + '.')
    raise ValueError(f'{path}: truncated TFRecord file ({problem}).')


def count_records(path):
    """Number of records in a TFRecord file, read from the record headers (no CRC check).

    Raises:
      ValueError: as open_shard and record_spans.
    """
    with open_shard(path) as f:
        return sum(1 for _ in record_spans(f, path))


def first_records(path, count):
    """The first `count` serialized records (list of bytes) of a TFRecord file, fewer if it
    holds fewer.

    Raises:
      ValueError: as open_shard and record_spans (only the first `count` records are walked).
    """
    records = []
    with open_shard(path) as f:
        for offset, length in itertools.islice(record_spans(f, path), count):
            f.seek(offset)
            records.append(f.read(length))
    return records


def _gzip_compressed(path):
    """Whether the regular file `path` starts with the gzip magic bytes 1f 8b. Asked only of a
    file that is no valid shard: a valid one starts so when its first record is 35615 bytes
    long modulo 65536."""
    with safe_io.open_binary(path, 'TFRecord file') as f:
        return f.read(2) == b'\x1f\x8b'


def _gzip_message(path):
    return (
        f'{path}: the shard is GZIP-compressed (it starts with the gzip magic bytes 1f 8b), and '
        'the records are read uncompressed: decompress it (gunzip), keeping its name'
    )


def read_metadata(path, verify_digests=False):
    """Reads a conversion's metadata and checks the shards it lists.

    Every shard must be a plain file name beside the metadata, present, of the recorded size
    (version 1 metadata has none) and hold the recorded number of records, each within the file
    (read from the record headers); with verify_digests, of the recorded sha256 too.
    Returns:
      (metadata dict, shard paths in metadata order).
    Raises:
      ValueError: unreadable (also: not a regular file, above MAX_METADATA_BYTES, nested too
      deeply) or foreign metadata, 'classes' is not a list of {id, name} with ids 1..K, their
      `coco_category_id`s (or `label_map_id`s) are not in every class or none distinct
      integers in 0..2**63-1, or a count, size or sha256 of 'files' or the total num_examples
      is not what the converter writes (integers in 0..2**63-1, not booleans; 64 hex digits);
      FileNotFoundError: a shard is missing;
      DatasetFilesError (a ValueError): a shard is not a regular file (a FIFO, a directory, a
      broken link), is GZIP-compressed or differs from what was written.
    Files beside the metadata named like its shards but not listed are not read: a warning
    names them.
    """
    try:
        metadata = safe_io.read_json(path, 'metadata file', MAX_METADATA_BYTES)
    except (ValueError, safe_io.UnsafeFileError) as e:
        raise ValueError(f'{e} Convert the dataset again.') from None
    if not isinstance(metadata, dict) or metadata.get('format') != METADATA_FORMAT:
        raise ValueError(
            f"{path}: not a metadata file of tf_convert_data.py (no 'format': '{METADATA_FORMAT}')."
        )
    problem = _classes_problem(metadata)
    if problem:
        raise ValueError(
            f'{path}: {problem}; expected \'classes\' to list each class as {{"id": 1, "name": '
            f'"cat"}} with ids 1..K (0 is the background): convert the dataset again.'
        )
    problem = _category_ids_problem(metadata['classes'])
    if problem:
        raise ValueError(
            f"{path}: {problem}; expected every class or none to have a 'coco_category_id' (the "
            f"COCO category id of its label) or a 'label_map_id' (its id in the label map "
            f'converted with), a distinct integer in 0..2**63-1: convert the dataset again.'
        )
    entries = metadata.get('files')
    problem = _files_problem(entries)
    if problem:
        raise ValueError(
            f"{path}: {problem}; expected 'files' to list each shard as {{\"name\": str, "
            f'"num_examples": int, "size": int, "sha256": str}} with counts and sizes in '
            f'0..2**63-1: convert the dataset again.'
        )
    total = metadata.get('num_examples')
    if not _is_count(total):
        raise ValueError(
            f'{path}: num_examples is {texts.shown(total)}, not an integer in 0..2**63-1; '
            'convert the dataset again.'
        )
    for f in entries:
        if os.path.basename(f['name']) != f['name'] or f['name'] in ('', '.', '..'):
            raise ValueError(
                f'{path} lists shard {f["name"]!r}, which is not a file name in {os.path.dirname(path)}'
                f' (shards live beside their metadata); refusing to read it.'
            )
    files = [os.path.join(os.path.dirname(path), f['name']) for f in entries]
    missing = [f for f in files if not os.path.lexists(f)]
    if missing:
        raise FileNotFoundError(
            f'{path} lists shards that are missing ({missing[:3]}); the dataset in '
            f'{os.path.dirname(path) or "."} is incomplete: convert it again.'
        )
    odd = [(f, safe_io.kind(f)) for f in files]
    odd = [(f, what) for f, what in odd if what]
    if odd:
        named = texts.listed([f'{os.path.basename(f)} is {what}' for f, what in odd], 5)
        raise DatasetFilesError(
            f'{path} lists shards that are present but not regular files ({named}); '
            'records are read from regular files only: put the shard files there (restore them) '
            'or convert the data again.'
        )
    for file, entry in zip(files, entries):
        _check_shard(file, entry, path, verify_digests)
    if sum(f['num_examples'] for f in entries) != total:
        raise ValueError(
            f"{path}: num_examples {total!r} is not the sum of its shards' "
            f"counts ({sum(f['num_examples'] for f in entries)}); convert the dataset again."
        )
    _warn_unlisted(path, {f['name'] for f in entries})
    return metadata, files


def _warn_unlisted(path, listed):
    """Logs a warning naming the files beside the metadata at `path` that are named like its
    shards but not in its `listed` names: the list is what the conversion wrote, so they are not
    read (without the metadata, the reader's glob would read them)."""
    if not path.endswith(METADATA_SUFFIX):
        return
    folder = os.path.dirname(path) or '.'
    pattern = shard_pattern(os.path.basename(path)[: -len(METADATA_SUFFIX)])
    extra = sorted(n for n in os.listdir(folder) if pattern.fullmatch(n) and n not in listed)
    if extra:
        it, its = ('it', 'its') if len(extra) == 1 else ('them', 'their')
        logging.warning(
            '%s in %s: named like the shards of %s but not listed in it, so not read (its list '
            'is what the conversion wrote; a leftover of an older conversion, or a file copied '
            'in?). Move %s away, or convert the data again to include %s examples.',
            texts.listed(extra, 5),
            folder,
            os.path.basename(path),
            it,
            its,
        )


def _classes_problem(metadata):
    """Why the 'classes' of a metadata dict are not a non-empty list of {'id': int, 'name': str}
    with ids 1..K each once (in any order), as a str; None when they are."""
    if 'classes' not in metadata:
        return "it has no 'classes'"
    classes = metadata['classes']
    if not isinstance(classes, list) or not classes:
        return f"'classes' is {texts.shown(classes)}, not a non-empty list"
    for index, entry in enumerate(classes):
        if not isinstance(entry, dict):
            return f"'classes'[{index}] is {texts.shown(entry)}, not an object"
        for key, kind, ok in (
            ('id', 'an integer', lambda v: type(v) is int),  # not JSON's true/false (bools)
            ('name', 'a string', lambda v: isinstance(v, str)),
        ):
            if key not in entry:
                return f"'classes'[{index}] has no '{key}'"
            if not ok(entry[key]):
                return f"'classes'[{index}] has {key} {texts.shown(entry[key])}, not {kind}"
    ids = sorted(entry['id'] for entry in classes)
    if ids != list(range(1, len(ids) + 1)):
        return f"the 'classes' ids are {texts.shown(ids)}, not 1..{len(ids)} each once"
    return None


def _category_ids_problem(classes):
    """Why the external ids of metadata `classes` (checked by _classes_problem) are not absent
    from every class or, in every class, distinct integers in 0..2**63-1 under one of
    CATEGORY_ID_KEYS (as the converters write them, and the model card and COCO evaluation take
    them), as a str; None when they are."""
    keys = [k for k in CATEGORY_ID_KEYS if any(k in entry for entry in classes)]
    if len(keys) > 1:
        return f"'classes' have both '{keys[0]}' and '{keys[1]}'"
    if not keys:
        return None
    key = keys[0]
    having = [index for index, entry in enumerate(classes) if key in entry]
    if len(having) < len(classes):
        index = next(i for i in range(len(classes)) if i not in set(having))
        return f"'classes'[{index}] has no '{key}' while {len(having)} other classes have one"
    seen = {}
    for index, entry in enumerate(classes):
        value = entry[key]
        if not _is_count(value):
            return (
                f"'classes'[{index}] has {key} {texts.shown(value)}, not an integer in 0..2**63-1"
            )
        if value in seen:
            return f"'classes'[{seen[value]}] and [{index}] have one {key} {value}"
        seen[value] = index
    return None


def _is_count(value):
    """An int (not a bool) in 0..2**63-1: a count, size or id as int64 holds it."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64_MAX


def _is_sha256(value):
    return isinstance(value, str) and re.fullmatch(r'[0-9a-f]{64}', value) is not None


def _files_problem(entries):
    """Why a metadata's 'files' is not a list of {name: str, num_examples: int in 0..2**63-1} with
    optional 'size' (int in 0..2**63-1) and 'sha256' (64 hex digits), as a str; None when it is."""
    if not isinstance(entries, list):
        return f"'files' is {texts.shown(entries)}, not a list"
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return f"'files'[{index}] is {texts.shown(entry)}, not an object"
        for key, required, what, ok in (
            ('name', True, 'a string', lambda v: isinstance(v, str)),
            ('num_examples', True, 'an integer in 0..2**63-1', _is_count),
            ('size', False, 'an integer in 0..2**63-1', _is_count),
            ('sha256', False, 'a sha256 of 64 hex digits', _is_sha256),
        ):
            if key not in entry:
                if required:
                    return f"'files'[{index}] has no '{key}'"
            elif not ok(entry[key]):
                return f"'files'[{index}] has {key} {texts.shown(entry[key])}, not {what}"
    return None


def _check_shard(file, entry, meta_path, verify_digests):
    """Raises DatasetFilesError when a shard is not what the metadata recorded."""
    again = 'convert the data again (or restore the shard)'
    st = os.stat(file)  # a regular file: read_metadata checked
    if 'size' in entry:  # an int: read_metadata checked
        if st.st_size != entry['size']:
            if _gzip_compressed(file):
                raise DatasetFilesError(
                    f'{_gzip_message(file)}: it then has the {entry["size"]} bytes that '
                    f'{os.path.basename(meta_path)} lists.'
                )
            raise DatasetFilesError(
                f'{file} has {st.st_size} bytes but {os.path.basename(meta_path)} lists '
                f'{entry["size"]}: the shard was '
                'emptied, truncated or replaced after the conversion, and reading it would '
                'silently give other '
                f'examples than the {entry["num_examples"]} it held; {again}.'
            )
    # The record headers are walked whatever the size (the count is cheap to read from them):
    # TensorFlow's reader allocates the length a header declares before reading the record, and
    # a 112-byte shard declaring 2**40 bytes, listed with its size and sha256, crashed the
    # process (SIGSEGV) instead of failing.
    try:
        count = count_records(file)
    except ValueError as err:
        if _gzip_compressed(file):  # the message says what to do: decompress it
            raise DatasetFilesError(str(err)) from None
        raise DatasetFilesError(f'{err} {again[0].upper()}{again[1:]}.') from None
    if count != entry['num_examples']:
        raise DatasetFilesError(
            f'{file} holds {count} records but {os.path.basename(meta_path)} lists '
            f'{entry["num_examples"]}; {again}.'
        )
    if verify_digests and 'sha256' in entry:
        digest = file_digest(file)['sha256']
        if digest != entry['sha256']:
            raise DatasetFilesError(
                f'{file}: sha256 {digest} differs from {entry["sha256"]} in '
                f'{os.path.basename(meta_path)}: the shard was modified after the conversion; '
                f'{again}.'
            )
