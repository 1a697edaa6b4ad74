"""Data-layer throughput: conversion (images/s, 1 and 2 workers) and reading (decoded images/s).

    python benchmarks/bench_data.py --num_images 600 --output_json /tmp/bench_data.json

Generates the synthetic shapes set (160–320 px images) in a temp folder, converts it with
tf_convert_data's engine (wall time including worker start-up; TensorFlow is imported before
timing), once from the JPEGs as generated (bytes kept) and once from PNG copies (decoded and
re-encoded as JPEG), then reads the records back with the dataset_factory pipeline (parse +
JPEG decode, eager). Each number is the median of --repeats runs. Prints a markdown table and
writes the numbers as JSON.
"""

import json
import os
import platform
import statistics
import sys
import tempfile
import time

from absl import flags
import cv2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# No TensorFlow at module level: spawn workers re-import this module, and importing TensorFlow
# would add seconds to each worker's start (tf_convert_data.py is kept free of it for the same reason).
from datasets import convert  # noqa: E402
from datasets import pascalvoc  # noqa: E402
from datasets import synthetic  # noqa: E402
from model import cli  # noqa: E402
from tf_extended import logs  # noqa: E402

FLAGS = flags.FLAGS
# Counts below 1 ended in tracebacks (the generator's or converter's ValueError, no median of
# 0 runs, TF's cycle_length error); more than 1024 readers hang the start, as in training.
flags.DEFINE_integer('num_images', 600, 'Synthetic images to convert and read.', lower_bound=1)
flags.DEFINE_integer(
    'samples_per_file', 50, 'Examples per shard (more shards than workers).', lower_bound=1
)
flags.DEFINE_integer(
    'repeats', 3, 'Timed runs per configuration (the median is reported).', lower_bound=1
)
flags.DEFINE_integer(
    'num_readers',
    4,
    'Parallel shard readers of the input pipeline.',
    lower_bound=1,
    upper_bound=cli.MAX_THREADS,
)
flags.DEFINE_string('output_json', None, 'Where to write the results as JSON.')


def _png_copy(src, dst):
    """The same VOC folder with every image stored as PNG (named by id), so conversion must re-encode."""
    os.makedirs(os.path.join(dst, 'JPEGImages'))
    for sub in ('Annotations', 'ImageSets'):
        os.symlink(os.path.join(src, sub), os.path.join(dst, sub))
    for name in os.listdir(os.path.join(src, 'JPEGImages')):
        image = cv2.imread(os.path.join(src, 'JPEGImages', name), cv2.IMREAD_COLOR)
        cv2.imwrite(os.path.join(dst, 'JPEGImages', name[:-4] + '.png'), image)


def _time_conversion(voc_dir, out_dir, workers):
    sources = pascalvoc.list_examples([voc_dir])
    loader = pascalvoc.VocLoader(synthetic.CLASSES)
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        convert.convert(
            sources,
            loader,
            synthetic.CLASSES,
            out_dir,
            'bench',
            samples_per_file=FLAGS.samples_per_file,
            num_workers=workers,
            show_progress=False,
        )
        times.append(time.perf_counter() - start)
    return len(sources) / statistics.median(times)


def _time_reading(out_dir):
    from datasets import dataset_factory

    ds = dataset_factory.get_dataset('custom', 'bench', out_dir)
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        count = sum(1 for _ in ds.make_dataset(num_readers=FLAGS.num_readers))
        times.append(time.perf_counter() - start)
    assert count == ds.num_samples
    return count / statistics.median(times)


def main(_):
    import tensorflow as tf  # before timing, so the in-process (1 worker) run does not pay for it

    with tempfile.TemporaryDirectory() as tmp:
        voc = os.path.join(tmp, 'voc')
        synthetic.generate(voc, FLAGS.num_images, seed=0)
        png = os.path.join(tmp, 'voc_png')
        _png_copy(voc, png)
        rows = []
        for label, src in (
            ('synthetic JPEG (bytes kept)', voc),
            ('synthetic PNG (re-encoded)', png),
        ):
            for workers in (1, 2):
                rate = _time_conversion(src, os.path.join(tmp, 'out'), workers)
                rows.append(
                    {'stage': 'convert', 'input': label, 'workers': workers, 'images_per_s': rate}
                )
        rate = _time_reading(os.path.join(tmp, 'out'))
        rows.append(
            {
                'stage': 'read + decode',
                'input': 'converted records',
                'workers': FLAGS.num_readers,
                'images_per_s': rate,
            }
        )
    print(
        f'\n{FLAGS.num_images} synthetic images (160-320 px), median of {FLAGS.repeats} runs, '
        f'{os.cpu_count()} CPU cores\n'
    )
    print('| stage | input | workers / readers | images/s |')
    print('|---|---|---|---|')
    for r in rows:
        print(f'| {r["stage"]} | {r["input"]} | {r["workers"]} | {r["images_per_s"]:.0f} |')
    if FLAGS.output_json:
        result = {
            'num_images': FLAGS.num_images,
            'samples_per_file': FLAGS.samples_per_file,
            'repeats': FLAGS.repeats,
            'cpu_count': os.cpu_count(),
            'machine': platform.processor() or platform.machine(),
            'tensorflow': tf.__version__,
            'opencv': cv2.__version__,
            'rows': rows,
        }
        temp = FLAGS.output_json + '.tmp'
        with open(temp, 'w') as f:
            json.dump(result, f, indent=1)
        os.replace(temp, FLAGS.output_json)


if __name__ == '__main__':
    logs.run(main)  # --help exits 0, Ctrl-C is one line
