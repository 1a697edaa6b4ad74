"""End-to-end detection speed per net and deployment format: latency (batch 1) and throughput
(batch 8) of the checkpoint graph and the frozen graph in each compute dtype (float32, bfloat16),
TFLite float32 and TFLite int8.

    python benchmarks/bench_inference.py [--models ssd_300_mobilenet,...] \
        [--dtypes float32,bfloat16] [--output output/benchmarks/bench_inference.json]

What is timed: one call of the whole exported graph on 480x640 uint8 RGB images (preprocessing,
net, decoding and NMS inside), random weights, 21 classes, Caffe DetectionOutput settings of the
model (VGG: score > 0.01, top 400 per class, keep 200; MobileNet: 0.25, 100, 100). Random
weights give near-uniform scores (about 1/21), so the VGG settings keep 400 candidates per class
(the NMS worst case) and the MobileNet ones almost none. Medians after one warm-up run; the VGG
nets get few repeats (`REPEATS`) to keep the total near 5 minutes on 2 cores. TFLite runs the
stock interpreter (XNNPACK) with --tflite_threads; int8 is calibrated on 2 random images (speed
only). Writes JSON and a markdown table beside it; the machine is shared: compare within a run.
"""

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nets  # noqa: E402
from inference import export  # noqa: E402
from inference import detection  # noqa: E402
from model import card as card_lib  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

v1 = tf.compat.v1
DETECTION = {
    'ssd_300_vgg': (0.01, 400, 200),
    'ssd_512_vgg': (0.01, 400, 200),
    'ssd_300_mobilenet': (0.25, 100, 100),
}
# (batch-1 repeats, batch-8 repeats) after one warm-up run.
REPEATS = {'ssd_300_vgg': (3, 2), 'ssd_512_vgg': (2, 1), 'ssd_300_mobilenet': (10, 5)}
TFLITE_FORMATS = (('tflite_float', 'float32'), ('tflite_int8', 'int8'))
IMAGE_SHAPE = (480, 640, 3)


def write_checkpoint(spec, directory):
    with tf.Graph().as_default():
        detection.build_detection_graph(spec)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver().save(sess, os.path.join(directory, 'model.ckpt'))


def bench_model(name, work_dir, dtypes, tflite_threads, log):
    """Rows (model, format, dtype, latency_ms, batch8_ms_per_image, ...) of one net."""
    select, top_k, keep_top_k = DETECTION[name]
    spec = card_lib.from_registry(name, num_classes=21).with_detection(
        select_threshold=select, top_k=top_k, keep_top_k=keep_top_k
    )
    prefix = write_checkpoint(spec, work_dir)
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, IMAGE_SHAPE).astype(np.uint8) for _ in range(8)]
    typed = {dtype: dataclasses.replace(spec, compute_dtype=dtype) for dtype in dtypes}
    frozen = {
        dtype: export.export(
            typed[dtype],
            prefix,
            os.path.join(work_dir, dtype),
            formats=['frozen_graph'],
            log=lambda _: None,
        )['frozen_graph']
        for dtype in dtypes
    }
    setups = [
        (
            'checkpoint',
            dtype,
            lambda batch, dtype=dtype: detection.Detector.from_checkpoint(typed[dtype], prefix),
        )
        for dtype in dtypes
    ]
    setups += [
        (
            'frozen_graph',
            dtype,
            lambda batch, dtype=dtype: detection.Detector.from_frozen_graph(frozen[dtype]),
        )
        for dtype in dtypes
    ]

    def tflite_path(fmt, batch):
        return os.path.join(work_dir, f'{fmt}_{batch}.tflite')

    for fmt, dtype in TFLITE_FORMATS:

        def make(batch, fmt=fmt):
            calibration = images[:2] if fmt == 'tflite_int8' else None
            atomic_io.write_bytes_atomic(
                tflite_path(fmt, batch),
                export.tflite_model(spec, prefix, batch, representative_images=calibration),
            )
            return detection.TFLiteDetector(tflite_path(fmt, batch), num_threads=tflite_threads)

        setups.append((fmt, dtype, make))
    rows = []
    for fmt, dtype, make in setups:
        row = {'model': name, 'format': fmt, 'dtype': dtype}
        for batch, repeats in zip((1, 8), REPEATS[name]):
            start = time.perf_counter()
            detector = make(batch)
            row[f'setup_s_batch{batch}'] = round(time.perf_counter() - start, 1)
            if fmt.startswith('tflite'):
                row['tflite_mb'] = round(os.path.getsize(tflite_path(fmt, batch)) / 2**20, 1)
            seconds = bench_nets.median_seconds(
                lambda: detector.run(images[:batch]), repeats, warmup=1
            )
            if batch == 1:
                row['latency_ms'] = round(seconds * 1000, 1)
            else:
                row['batch8_ms_per_image'] = round(seconds * 1000 / batch, 1)
                row['batch8_images_per_s'] = round(batch / seconds, 2)
            if hasattr(detector, 'close'):
                detector.close()
        log(row)
        rows.append(row)
    return rows


def markdown(rows):
    lines = [
        '| model | format | arithmetic | latency batch 1 (ms) | batch 8 (ms/img) | '
        'batch 8 (img/s) |',
        '|---|---|---|---|---|---|',
    ]
    for r in rows:
        lines.append(
            f'| `{r["model"]}` | {r["format"]} | {r["dtype"]} | {r["latency_ms"]} | '
            f'{r["batch8_ms_per_image"]} | {r["batch8_images_per_s"]} |'
        )
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='ssd_300_mobilenet,ssd_300_vgg,ssd_512_vgg')
    parser.add_argument('--output', default='output/benchmarks/bench_inference.json')
    parser.add_argument(
        '--dtypes',
        default='float32,bfloat16',
        help='compute dtypes of the checkpoint and frozen graphs, comma-separated',
    )
    parser.add_argument('--tflite_threads', type=int, default=os.cpu_count())
    args = parser.parse_args()
    rows = []
    start = time.perf_counter()
    for name in args.models.split(','):
        with tempfile.TemporaryDirectory() as work_dir:
            rows.extend(
                bench_model(name, work_dir, args.dtypes.split(','), args.tflite_threads, print)
            )
    result = {
        'rows': rows,
        'image_shape': IMAGE_SHAPE,
        'tensorflow': tf.__version__,
        'machine': platform.machine(),
        'cpus': os.cpu_count(),
        'total_seconds': round(time.perf_counter() - start, 1),
    }
    table = markdown(rows)
    bench_nets.write_report(args.output, result, table)
    print(table)
    print(f'total {result["total_seconds"]} s; wrote {args.output}')


if __name__ == '__main__':
    main()
