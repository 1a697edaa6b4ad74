"""Training speed: images/s of a training step of each SSD net (fp32 and mixed precision), and of
the training input pipeline alone.

    python benchmarks/bench_train.py [--steps 2] [--output benchmarks/results/train.json]

The step is the graph `training.trainer.build_train_op` builds (clones, SSD loss, weight decay, Adam, batch
norm updates, NaN guard) fed from a constant batch in memory, so it measures the model, not the
input. The input pipeline is `training.input.train_dataset` on a small synthetic dataset
(decode, SSD300* augmentation, box encoding, batching) iterated alone. Medians over `--steps`
runs after one warm-up; prints a markdown table and writes JSON (atomically).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

from absl import app
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from datasets import dataset_factory  # noqa: E402
from model import card as card_lib  # noqa: E402
from training import model_deploy  # noqa: E402
from training import trainer  # noqa: E402
from training import input as train_input  # noqa: E402
from preprocessing import preprocessing_factory  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

v1 = tf.compat.v1
MODELS = ('ssd_300_mobilenet', 'ssd_300_vgg', 'ssd_512_vgg')


class _ConstantBatches:
    """Stands in for the iterator: every `get_next()` is the same in-memory batch. (A
    `Dataset.from_tensors` of it would copy the constants into the dataset graph: GBs.)"""

    def __init__(self, batch):
        self._batch = batch

    def get_next(self):
        return self._batch


# VOC07+12 trainval: the epoch size of the learning-rate decay steps.
EPOCH_SIZE = 16551


def _constant_batch(net, batch_size, seed=0):
    """A batch with real targets: random boxes encoded against the net's anchors."""
    rng = np.random.default_rng(seed)
    size = net.params.img_shape
    image = rng.uniform(-1, 1, (batch_size,) + tuple(size) + (3,)).astype(np.float32)
    yx = rng.uniform(0, 0.6, (batch_size, 3, 2))
    hw = rng.uniform(0.1, 0.4, (batch_size, 3, 2))
    boxes = np.concatenate([yx, yx + hw], axis=-1).astype(np.float32)
    labels = rng.integers(1, net.params.num_classes, (batch_size, 3))
    # Encoded once, in a graph of its own: in the training graph it would run every step.
    with tf.Graph().as_default(), v1.Session() as sess:
        targets = sess.run(
            [
                net.bboxes_encode(tf.constant(labels[i]), tf.constant(boxes[i]))
                for i in range(batch_size)
            ]
        )
    gclasses, glocalisations, gscores = (np.stack(t) for t in zip(*targets))
    arrays = {
        'image': image,
        'gclasses': gclasses,
        'glocalisations': glocalisations,
        'gscores': gscores,
        'labels': labels,
        'bboxes': boxes,
    }
    return {k: tf.constant(v) for k, v in arrays.items()}


def bench_step(model, batch_size, mixed_precision, steps, max_step_seconds):
    """(images/s, from_warmup): median over `steps` timed steps, or, when the warm-up step
    took over `max_step_seconds`, the warm-up's rate (a lower bound) and True."""
    settings = trainer.TrainSettings(
        model_name=model, batch_size=batch_size, mixed_precision=mixed_precision
    )
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        net = card_lib.from_registry(model, 21).net()
        train_op, _, _ = trainer.build_train_op(
            settings,
            model_deploy.DeploymentConfig(),
            net,
            _ConstantBatches(_constant_batch(net, batch_size)),
            EPOCH_SIZE,
        )
        with v1.Session(config=trainer.session_config(settings)) as sess:
            sess.run(v1.global_variables_initializer())
            start = time.perf_counter()
            sess.run(train_op)
            warmup = time.perf_counter() - start
            if warmup > max_step_seconds:
                return batch_size / warmup, True
            times = []
            for _ in range(steps):
                start = time.perf_counter()
                sess.run(train_op)
                times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times), False


def make_dataset(directory, num_images=64):
    """Synthetic VOC-layout images converted to TFRecords in `directory`."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    voc, records = os.path.join(directory, 'voc'), os.path.join(directory, 'records')
    subprocess.run(
        [
            sys.executable,
            '-m',
            'datasets.synthetic',
            '--output_dir',
            voc,
            '--num_images',
            str(num_images),
            '--seed',
            '0',
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, 'tf_convert_data.py'),
            '--dataset_name=pascalvoc',
            '--dataset_dir=' + voc,
            '--labels_file=' + os.path.join(voc, 'labels.txt'),
            '--output_dir=' + records,
            '--output_name=voc_2007_train',
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    return records


def bench_input(model, records, batch_size, batches):
    """Images/s of the training input pipeline for `model` (all cores)."""
    with tf.Graph().as_default():
        dataset = dataset_factory.get_dataset('pascalvoc_2007', 'train', records)
        net = card_lib.from_registry(model, dataset.num_classes).net()
        pipeline = train_input.train_dataset(
            dataset, preprocessing_factory.get_preprocessing(model), net, batch_size, seed=0
        )
        next_batch = v1.data.make_one_shot_iterator(pipeline).get_next()
        with v1.Session() as sess:
            sess.run(next_batch)
            start = time.perf_counter()
            for _ in range(batches):
                sess.run(next_batch)
            return batches * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=2, help='timed steps per configuration')
    parser.add_argument('--input_batches', type=int, default=10)
    parser.add_argument(
        '--max_step_seconds',
        type=float,
        default=15.0,
        help='slower warm-up steps are reported as they are (lower bound)',
    )
    parser.add_argument(
        '--batch32',
        default='ssd_300_mobilenet',
        help='models also run at batch 32 (comma-separated; memory-bound)',
    )
    parser.add_argument('--models', default=','.join(MODELS))
    parser.add_argument('--output', default=None, help='JSON file to write')
    args = parser.parse_args()
    v1.disable_eager_execution()
    models = args.models.split(',')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        records = make_dataset(tmp)
        for model in models:
            input_rate = bench_input(model, records, 8, args.input_batches)
            for batch_size in (8, 32) if model in args.batch32.split(',') else (8,):
                row = {'model': model, 'batch_size': batch_size, 'input_images_per_s': input_rate}
                for mixed in (False, True):
                    key = 'mixed' if mixed else 'fp32'
                    try:
                        row[key + '_images_per_s'], row[key + '_from_warmup'] = bench_step(
                            model, batch_size, mixed, args.steps, args.max_step_seconds
                        )
                    except app.UsageError as e:  # VGG on CPU
                        row[key + '_images_per_s'], row[key + '_from_warmup'] = None, False
                        row[key + '_error'] = str(e)
                rows.append(row)
                print(json.dumps(row), flush=True)
    on_gpu = bool(tf.config.list_physical_devices('GPU'))
    mixed_name = 'fp16' if on_gpu else 'bf16'
    print('| model | batch | fp32 img/s | %s img/s | input pipeline img/s |' % mixed_name)
    print('|---|---|---|---|---|')
    for r in rows:
        rates = [
            'n/a'
            if r[k + '_images_per_s'] is None
            else '%s%.2f' % ('>= ' if r[k + '_from_warmup'] else '', r[k + '_images_per_s'])
            for k in ('fp32', 'mixed')
        ]
        print(
            '| %s | %d | %s | %s | %.1f |'
            % (r['model'], r['batch_size'], rates[0], rates[1], r['input_images_per_s'])
        )
    print('(>= : one warm-up step over --max_step_seconds, a lower bound; n/a: see the JSON)')
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        report = {
            'date': time.strftime('%Y-%m-%d'),
            'machine': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(),
            'gpu': on_gpu,
            'mixed_precision': mixed_name,
            'tensorflow': tf.__version__,
            'results': rows,
        }
        atomic_io.write_json_atomic(args.output, report)


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
