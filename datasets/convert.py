"""Conversion engine shared by the VOC and COCO converters: sharding, worker processes,
progress, atomic output and the metadata file.

Output in `output_dir`:
- `<output_name>_<NNN>.tfrecord`: shards of `samples_per_file` examples (the last may be
  shorter, and shards shrink when examples are skipped); NNN has at least 3 digits.
- `<output_name>_metadata.json` (`metadata_path`): written last; its presence marks a complete
  conversion. It holds the example count, the shard list, the classes with per-class
  image/object/difficult counts, the options, and a report of what was fixed, dropped or skipped
  (with file names).

Atomicity: shards are written into a hidden folder `.<output_name>.tmp-<pid>` inside
`output_dir` and renamed into place only after every shard is done; the metadata file comes last
(temp name + rename). An interrupted run therefore leaves at most the hidden folder (removed by
the next run with the same output name) and never a metadata file. Shards and metadata of an
earlier run with the same name are deleted (metadata first) just before the new ones are moved in.

Determinism: examples are ordered by the caller, optionally shuffled with `random.Random(seed)`,
then cut into shards; each shard is converted by exactly one worker with the same code, so the
bytes written do not depend on `num_workers`.

Workers are `spawn` processes (safe with TensorFlow loaded; no fork of a threaded parent). They
load, normalise and serialize examples without TensorFlow (importing it costs seconds per
process); the main process writes each shard as it arrives. Spawn re-imports the caller's
`__main__` module in every worker, so a script calling `convert` with several workers should not
import TensorFlow at module level (tf_convert_data.py does not).
"""

import glob
import json
import multiprocessing
import os
import random
import re
import shutil
import sys
import threading
import time

from absl import logging

from datasets import example_format

METADATA_SUFFIX = '_metadata.json'
METADATA_FORMAT = 'ssd-tfrecords'
METADATA_VERSION = 1


class BadExampleError(ValueError):
    """An annotation or image that cannot be converted; the message names the file."""


class UnknownClassError(ValueError):
    """An object's class is not in the class list; the message names file, name and known classes."""


def metadata_path(output_dir, output_name):
    """Path of the metadata JSON of a conversion."""
    return os.path.join(output_dir, output_name + METADATA_SUFFIX)


def shard_name(output_name, index, num_shards):
    """`<output_name>_<NNN>.tfrecord`, zero-padded to at least 3 digits."""
    width = max(3, len(str(num_shards - 1)))
    return f'{output_name}_{index:0{width}d}.tfrecord'


_COUNTER = None  # examples done, shared with worker processes for the progress line


def _init_worker(counter, pool_worker=False):
    global _COUNTER
    _COUNTER = counter
    if pool_worker:
        # One OpenCV thread per worker process: the processes are the parallelism; more threads oversubscribe.
        import cv2
        cv2.setNumThreads(1)
        logging.set_verbosity(logging.ERROR)


def _convert_shard(args):
    """Converts one shard's examples (in a worker). Returns (serialized examples, statistics and report).

    Raises BadExampleError on a bad example unless skipping, UnknownClassError from the loader.
    """
    sources, loader, skip_bad_examples = args
    records = []
    stats = {'classes': {}, 'report': []}
    for source in sources:
        try:
            record, report = loader(source)
        except BadExampleError as e:
            if not skip_bad_examples:
                raise
            stats['report'].append({'file': source.report_name, 'kind': 'skipped_example', 'detail': str(e)})
        else:
            records.append(example_format.serialize_example(record))
            stats['report'].extend(report)
            seen = set()
            for obj in record.objects:
                counts = stats['classes'].setdefault(obj.label, [0, 0, 0])
                counts[1] += 1
                counts[2] += obj.difficult
                if obj.label not in seen:
                    counts[0] += 1
                    seen.add(obj.label)
        with _COUNTER.get_lock():
            _COUNTER.value += 1
    stats['num_examples'] = len(records)
    return records, stats


def _write_records(path, records):
    # Imported here so that worker processes, which import this module, never load TensorFlow.
    import tensorflow as tf
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


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
        done = self.counter.value
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else float('inf')
        frac = done / self.total if self.total else 1.0
        bar = '#' * int(frac * 30) + '.' * (30 - int(frac * 30))
        line = (f'[convert] |{bar}| {done}/{self.total} images {100 * frac:5.1f}% '
                f'{rate:7.1f} img/s ' + (f'{elapsed:.1f}s total' if final else f'ETA {eta:.0f}s'))
        if self.tty:
            sys.stderr.write('\r' + line + ('\n' if final else ''))
        else:
            sys.stderr.write(line + '\n')
        sys.stderr.flush()


def _remove_stale(output_dir, output_name):
    for stale in glob.glob(os.path.join(glob.escape(output_dir), f'.{glob.escape(output_name)}.tmp-*')):
        logging.info('Removing %s left by an interrupted conversion.', stale)
        shutil.rmtree(stale, ignore_errors=True)


def _replace_outputs(output_dir, output_name, temp_dir, shards):
    """Deletes an earlier run's metadata then shards, and moves the new shards into place."""
    meta = metadata_path(output_dir, output_name)
    if os.path.exists(meta):
        os.remove(meta)
    pattern = re.compile(re.escape(output_name) + r'_\d{3,}\.tfrecord$')
    for name in os.listdir(output_dir):
        if pattern.match(name):
            os.remove(os.path.join(output_dir, name))
    for temp_name, final_name in shards:
        os.replace(os.path.join(temp_dir, temp_name), os.path.join(output_dir, final_name))


def _write_json_atomic(path, data):
    temp = f'{path}.tmp-{os.getpid()}'
    with open(temp, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write('\n')
    os.replace(temp, path)


def convert(sources, loader, class_names, output_dir, output_name, samples_per_file=200, shuffle=True,
            seed=0, num_workers=None, skip_bad_examples=False, description=None, class_extra=None,
            show_progress=True):
    """Converts examples to sharded TFRecords plus the metadata file.

    Args:
      sources: list of picklable example descriptions with a `report_name` attribute.
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
    Returns:
      the metadata dict (also written to metadata_path(output_dir, output_name)).
    Raises:
      ValueError: no examples, bad arguments; BadExampleError/UnknownClassError from the loader.
    """
    if samples_per_file < 1:
        raise ValueError(f'samples_per_file must be >= 1, got {samples_per_file}.')
    if not sources:
        raise ValueError('No examples to convert: the input lists no images.')
    if not re.fullmatch(r'[\w.\-]+', output_name):
        raise ValueError(f'output_name {output_name!r} must be a plain file-name prefix (letters, digits, _ . -).')
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise ValueError(f'num_workers must be >= 1, got {num_workers}.')
    order = list(sources)
    if shuffle:
        random.Random(seed).shuffle(order)
    chunks = [order[i:i + samples_per_file] for i in range(0, len(order), samples_per_file)]
    os.makedirs(output_dir, exist_ok=True)
    _remove_stale(output_dir, output_name)
    temp_dir = os.path.join(output_dir, f'.{output_name}.tmp-{os.getpid()}')
    os.makedirs(temp_dir)
    temp_names = [f'part-{i:06d}.tfrecord' for i in range(len(chunks))]
    tasks = [(c, loader, skip_bad_examples) for c in chunks]
    workers = min(num_workers, len(tasks))
    logging.info('Converting %d examples into %d shards with %d worker(s).', len(order), len(tasks), workers)
    try:
        results = []
        if workers == 1:
            counter = multiprocessing.Value('q', 0)
            _init_worker(counter)
            with _Progress(counter, len(order), show_progress):
                for name, task in zip(temp_names, tasks):
                    records, stats = _convert_shard(task)
                    _write_records(os.path.join(temp_dir, name), records)
                    results.append(stats)
        else:
            ctx = multiprocessing.get_context('spawn')
            counter = ctx.Value('q', 0)
            with ctx.Pool(workers, initializer=_init_worker, initargs=(counter, True)) as pool:
                with _Progress(counter, len(order), show_progress):
                    for name, (records, stats) in zip(temp_names, pool.imap(_convert_shard, tasks)):
                        _write_records(os.path.join(temp_dir, name), records)
                        results.append(stats)
        metadata, moves = _metadata(results, temp_names, class_names, output_name, samples_per_file, shuffle,
                                    seed, skip_bad_examples, description, class_extra)
        if metadata['num_examples'] == 0:
            raise ValueError(f'Every one of the {len(order)} examples was skipped; nothing written. '
                             f'See the reasons above or run without --skip_bad_examples.')
        _replace_outputs(output_dir, output_name, temp_dir, moves)
        _write_json_atomic(metadata_path(output_dir, output_name), metadata)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    for kind, count in metadata['report']['counts'].items():
        if count:
            logging.warning('%d %s entries; see %s.', count, kind, metadata_path(output_dir, output_name))
    return metadata


def _metadata(results, temp_names, class_names, output_name, samples_per_file, shuffle, seed,
              skip_bad_examples, description, class_extra):
    """Merges shard results in shard order. Returns (metadata dict, [(temp name, final name)])."""
    kept = [(n, r) for n, r in zip(temp_names, results) if r['num_examples'] > 0]
    files, moves = [], []
    for index, (temp_name, result) in enumerate(kept):
        final = shard_name(output_name, index, len(kept))
        files.append({'name': final, 'num_examples': result['num_examples']})
        moves.append((temp_name, final))
    classes = []
    for i, name in enumerate(class_names):
        counts = [sum(r['classes'].get(i + 1, [0, 0, 0])[k] for r in results) for k in range(3)]
        entry = {'id': i + 1, 'name': name, 'num_images': counts[0], 'num_objects': counts[1],
                 'num_difficult': counts[2]}
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
        'options': {'samples_per_file': samples_per_file, 'shuffle': shuffle, 'seed': seed,
                    'skip_bad_examples': skip_bad_examples},
        'report': {'counts': {k: sum(e['kind'] == k for e in entries) for k in kinds}, 'entries': entries},
    }
    return metadata, moves
