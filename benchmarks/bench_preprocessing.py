"""Throughput of the preprocessing pipelines in a tf.data map (AUTOTUNE) on a few CPU cores.

Synthetic 300-500 px images with 1-6 boxes (decoded, so JPEG decoding is not counted), 300x300
output. Writes `<output_dir>/bench_preprocessing.json` and `.md` (atomically) and prints the table.

  python benchmarks/bench_preprocessing.py --cores 2 --num_images 1000
"""

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

import numpy as np
import tensorflow as tf

from preprocessing import preprocessing_factory  # noqa: E402
from preprocessing.seeds import example_seed  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

OUT_SHAPE = (300, 300)
BATCH = 32


def synthetic_examples(count, seed=0):
    """`count` (image uint8 [H, W, 3] with H, W in [300, 500], labels, bboxes) numpy triples."""
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        height, width = rng.integers(300, 501, size=2)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        num = rng.integers(1, 7)
        corners = np.sort(rng.uniform(0, 1, (num, 2, 2)), axis=1).astype(np.float32)
        bboxes = np.concatenate([corners[:, 0], corners[:, 1]], axis=1)
        examples.append((image, rng.integers(1, 21, num).astype(np.int64), bboxes))
    return examples


def _source(examples):
    """Endless dataset of the examples; images travel as serialized tensors (ragged sizes)."""
    images = [tf.make_tensor_proto(e[0]).SerializeToString() for e in examples]
    lengths = [len(e[1]) for e in examples]
    labels = tf.RaggedTensor.from_row_lengths(np.concatenate([e[1] for e in examples]), lengths)
    bboxes = tf.RaggedTensor.from_row_lengths(np.concatenate([e[2] for e in examples]), lengths)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels, bboxes)).repeat()
    return dataset.map(
        lambda im, l, b: (tf.ensure_shape(tf.io.parse_tensor(im, tf.uint8), [None, None, 3]), l, b)
    )


def measure(model_name, is_training, examples, num_images, warmup, cores):
    """Images/s of `num_images` after `warmup` images, on a pipeline limited to `cores` threads."""
    pipeline = preprocessing_factory.get_preprocessing(model_name)
    with tf.Graph().as_default():
        dataset = _source(examples).enumerate()

        def apply(index, example):
            image, labels, bboxes = example
            options = {'seed': example_seed(0, index)} if is_training else {}
            outputs = pipeline(image, labels, bboxes, OUT_SHAPE, is_training, **options)
            return outputs[0], tf.shape(outputs[2])[0]

        dataset = dataset.map(apply, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH)
        dataset = dataset.prefetch(2)
        options = tf.data.Options()
        options.threading.private_threadpool_size = cores
        dataset = dataset.with_options(options)
        next_batch = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=cores, inter_op_parallelism_threads=cores
        )
        with tf.compat.v1.Session(config=config) as session:
            for _ in range(max(1, warmup // BATCH)):
                session.run(next_batch)
            batches = max(1, num_images // BATCH)
            start = time.perf_counter()
            for _ in range(batches):
                session.run(next_batch)
            elapsed = time.perf_counter() - start
    return batches * BATCH / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=['ssd_300_mobilenet', 'ssd_300_vgg'])
    parser.add_argument('--cores', type=int, default=2, help='CPU cores the process may use.')
    parser.add_argument('--num_images', type=int, default=1024)
    parser.add_argument('--warmup', type=int, default=128)
    parser.add_argument('--num_source_images', type=int, default=64)
    parser.add_argument('--output_dir', default='output/benchmarks')
    args = parser.parse_args(argv)

    available = sorted(os.sched_getaffinity(0))
    if args.cores > len(available):
        parser.error(f'--cores {args.cores} but only {len(available)} cores are available.')
    # Pin the process so that "N cores" holds on bigger machines too.
    os.sched_setaffinity(0, available[: args.cores])

    examples = synthetic_examples(args.num_source_images)
    rows = []
    for model in args.models:
        for is_training in (True, False):
            rate = measure(model, is_training, examples, args.num_images, args.warmup, args.cores)
            rows.append(
                {
                    'model': model,
                    'mode': 'train' if is_training else 'eval',
                    'images_per_s': round(rate, 1),
                    'ms_per_image_per_core': round(1000.0 * args.cores / rate, 2),
                }
            )
            print(rows[-1], flush=True)
    result = {
        'benchmark': 'preprocessing',
        'cores': args.cores,
        'out_shape': list(OUT_SHAPE),
        'input': 'synthetic uint8, 300-500 px per side, 1-6 boxes, decoded',
        'num_images': args.num_images,
        'tensorflow': tf.__version__,
        'cpu': platform.processor() or platform.machine(),
        'results': rows,
    }
    table = ['| model | mode | images/s | ms/image/core |', '|---|---|---|---|']
    table += [
        f"| {r['model']} | {r['mode']} | {r['images_per_s']} | {r['ms_per_image_per_core']} |"
        for r in rows
    ]
    markdown = (
        f'# Preprocessing throughput\n\n{args.cores} cores, tf.data map AUTOTUNE, '
        f'{result["input"]}, output {OUT_SHAPE[0]}x{OUT_SHAPE[1]}, '
        f'TensorFlow {tf.__version__}.\n\n' + '\n'.join(table) + '\n'
    )
    os.makedirs(args.output_dir, exist_ok=True)
    atomic_io.write_json_atomic(os.path.join(args.output_dir, 'bench_preprocessing.json'), result)
    atomic_io.write_text_atomic(os.path.join(args.output_dir, 'bench_preprocessing.md'), markdown)
    print(markdown)


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
