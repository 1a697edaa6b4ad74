"""End-to-end detection speed per net and deployment format: latency (batch 1) and throughput
(batch 8) of the checkpoint graph and the frozen graph in each compute dtype (float32, and
bfloat16 where the CPU has bf16 instructions),
TFLite float32 and int8, and the OpenVINO export in fp32 and bf16 (precision hint) and its NNCF
int8 quantisation, all in one
process, timed round by round (every format once per round, then the next round), so their
ratios share the machine's load of the moment.

    python benchmarks/bench_inference.py [--models ssd_300_mobilenet,...] \
        [--dtypes float32,bfloat16] [--openvino_precisions fp32,bf16,int8] \
        [--output output/benchmarks/bench_inference.json]

What is timed: one call of the whole exported graph on 480x640 uint8 RGB images (preprocessing,
net, decoding and NMS inside), random weights, 21 classes, Caffe DetectionOutput settings of the
model (VGG: score > 0.01, top 400 per class, keep 200; MobileNet: 0.25, 100, 100). Random
weights give near-uniform scores (about 1/21), so the VGG settings keep 400 candidates per class
(the NMS worst case) and the MobileNet ones almost none. Medians (and, in the JSON, the fastest)
of `REPEATS` rounds after `WARM_UP_CALLS` warm-up calls of each model (the OpenVINO runtime
compiles a model for the batch shape at its STATIC_AFTER-th call). TFLite runs the stock
interpreter (XNNPACK) with --tflite_threads; int8 is calibrated on 2 random images (speed only).
OpenVINO runs its CPU plugin with the latency hint on all cores (the fp32 row also says how many
of its batch-1 milliseconds the convolutions take, from OpenVINO's performance counters: what no
setting outside the kernels can remove); its bf16 rows say what OpenVINO compiled ('ran': bf16
only where the CPU has bf16 instructions) and the report names the CPU's matrix units (AMX,
AVX-512 BF16 or neither). Ratios: against the frozen fp32 graph of the same net and batch (the
median of the rounds' ratios, `bench_openvino_ir.median_ratio`; the OpenVINO rows also against
the OpenVINO fp32 row at batch 1), and against the fp32 compute floor (2·MACs at the
best fp32 matmul rate, numpy or TF, measured at the start and the end of the run; end-to-end
times include pre- and post-processing, the floor only the convolutions).
Writes JSON and a markdown table beside it; the machine is shared: compare within a run.
"""

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nets  # noqa: E402
import bench_openvino_ir  # noqa: E402
from inference import export  # noqa: E402
from inference import detection  # noqa: E402
from inference import openvino_model  # noqa: E402 - imports openvino only when used
from inference import openvino_runtime  # noqa: E402
from model import card as card_lib  # noqa: E402
from tf_extended import atomic_io  # noqa: E402
from tf_extended import cpu_features  # noqa: E402

v1 = tf.compat.v1
DETECTION = {
    'ssd_300_vgg': (0.01, 400, 200),
    'ssd_512_vgg': (0.01, 400, 200),
    'ssd_300_mobilenet': (0.25, 100, 100),
}
# (batch-1 repeats, batch-8 repeats) after WARM_UP_CALLS calls.
REPEATS = {'ssd_300_vgg': (3, 2), 'ssd_512_vgg': (2, 1), 'ssd_300_mobilenet': (30, 10)}
# OpenVINODetector compiles a model for a batch shape at its STATIC_AFTER-th call: not timed.
WARM_UP_CALLS = openvino_model.STATIC_AFTER
TFLITE_FORMATS = (('tflite_float', 'float32'), ('tflite_int8', 'int8'))
IMAGE_SHAPE = (480, 640, 3)


def write_checkpoint(spec, directory):
    with tf.Graph().as_default():
        detection.build_detection_graph(spec)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver().save(sess, os.path.join(directory, 'model.ckpt'))


def _quiet(_):
    pass


def setups(name, work_dir, dtypes, openvino_precisions, tflite_threads, images):
    """[(format, dtype, make(batch) -> detector)] of one net, its checkpoint and exports."""
    select, top_k, keep_top_k = DETECTION[name]
    spec = card_lib.from_registry(name, num_classes=21).with_detection(
        select_threshold=select, top_k=top_k, keep_top_k=keep_top_k
    )
    prefix = write_checkpoint(spec, work_dir)
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
    result = [
        (
            'checkpoint',
            dtype,
            lambda batch, dtype=dtype: detection.Detector.from_checkpoint(typed[dtype], prefix),
        )
        for dtype in dtypes
    ]
    result += [
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
            detector = detection.TFLiteDetector(tflite_path(fmt, batch), num_threads=tflite_threads)
            detector.file_mb = round(os.path.getsize(tflite_path(fmt, batch)) / 2**20, 1)
            return detector

        result.append((fmt, dtype, make))
    if openvino_precisions:
        # int8: the fp32 IR quantised (NNCF) on 2 random images, as TFLite int8 (speed only).
        formats = ['openvino'] + (['openvino_int8'] if 'int8' in openvino_precisions else [])
        start = time.perf_counter()
        written = export.export(
            spec,
            prefix,
            os.path.join(work_dir, 'openvino'),
            formats=formats,
            calibration_images=images[:2],
            log=_quiet,
        )
        convert_s = round(time.perf_counter() - start, 1)
        for precision in openvino_precisions:
            xml = written['openvino_int8' if precision == 'int8' else 'openvino']

            def make(batch, precision=precision, xml=xml):
                detector = detection.open_exported_model(
                    xml, openvino_precision='fp32' if precision == 'int8' else precision
                )
                detector.convert_s = convert_s
                return detector

            result.append(('openvino', precision, make))
    return result


def bench_model(name, work_dir, dtypes, openvino_precisions, tflite_threads, log):
    """Rows (model, format, dtype, latency_ms, batch8_ms_per_image, ...) of one net: every
    format timed in turn within each round (see the module docstring)."""
    rng = np.random.RandomState(0)
    images = [rng.randint(0, 256, IMAGE_SHAPE).astype(np.uint8) for _ in range(8)]
    formats = setups(name, work_dir, dtypes, openvino_precisions, tflite_threads, images)
    rows = [{'model': name, 'format': fmt, 'dtype': dtype} for fmt, dtype, _ in formats]
    rows_times = []  # per batch: per format, the seconds of each round
    for batch, repeats in zip((1, 8), REPEATS[name]):
        detectors = []
        for row, (_, _, make) in zip(rows, formats):
            start = time.perf_counter()
            detectors.append(make(batch))
            row[f'setup_s_batch{batch}'] = round(time.perf_counter() - start, 1)
        times = [[] for _ in detectors]
        for _ in range(WARM_UP_CALLS):
            for detector in detectors:
                detector.run(images[:batch])
        for _ in range(repeats):
            for i, detector in enumerate(detectors):
                start = time.perf_counter()
                detector.run(images[:batch])
                times[i].append(time.perf_counter() - start)
        rows_times.append(times)
        for row, detector, per_round in zip(rows, detectors, times):
            seconds = float(np.median(per_round))
            if batch == 1:
                row['latency_ms'] = round(seconds * 1000, 2)
                row['latency_fastest_ms'] = round(min(per_round) * 1000, 2)
            else:
                row['batch8_ms_per_image'] = round(seconds * 1000 / batch, 2)
                row['batch8_images_per_s'] = round(batch / seconds, 2)
            for attribute in ('file_mb', 'convert_s'):
                if hasattr(detector, attribute):
                    row[attribute] = getattr(detector, attribute)
            if row['format'] == 'openvino':
                row['ran'] = 'int8' if row['dtype'] == 'int8' else detector.precision
                if batch == 1 and row['dtype'] == 'fp32':
                    row['op_ms_batch1'] = bench_openvino_ir.op_ms(detector.path, images[0])
            if hasattr(detector, 'close'):
                detector.close()
    frozen = _row_index(rows, 'frozen_graph', 'float32')
    openvino_fp32 = _row_index(rows, 'openvino', 'fp32')
    for i, row in enumerate(rows):
        if frozen is not None:
            row['latency_vs_frozen_fp32'], row['batch8_vs_frozen_fp32'] = (
                bench_openvino_ir.median_ratio(times[i], times[frozen]) for times in rows_times
            )
        if row['format'] == 'openvino' and openvino_fp32 is not None:
            row['latency_vs_openvino_fp32'] = bench_openvino_ir.median_ratio(
                rows_times[0][i], rows_times[0][openvino_fp32]
            )
        log(row)
    return rows


def _row_index(rows, fmt, dtype):
    """The index of the (format, dtype) row in `rows`, or None."""
    return next((i for i, r in enumerate(rows) if (r['format'], r['dtype']) == (fmt, dtype)), None)


def floor_gflops(repeats=5, size=2048, threads=None):
    """The best fp32 matmul GFLOP/s, numpy/OpenBLAS or TF (bench_floor's measures, all cores)."""
    import bench_floor

    return max(
        bench_floor.numpy_matmul_gflops(size, repeats),
        bench_floor.tf_matmul_gflops(size, repeats, threads or os.cpu_count(), tf.float32),
    )


def add_floor_ratios(rows, gflop_per_s):
    """Per row: the fp32 compute floor of its net (ms/img) and measured / floor."""
    import bench_floor

    macs = {}
    for row in rows:
        if row['model'] not in macs:
            macs[row['model']] = bench_floor.net_macs(row['model'])
        floor = bench_floor.floor_ms(macs[row['model']], gflop_per_s)
        row['floor_ms_fp32'] = round(floor, 2)
        row['latency_vs_floor'] = round(row['latency_ms'] / floor, 2)
        row['batch8_vs_floor'] = round(row['batch8_ms_per_image'] / floor, 2)


def markdown(rows, units=None, gflop_per_s=None):
    lines = []
    if units:
        lines += [
            f'CPU matrix units: {units["summary"]} (OpenVINO CPU capabilities: '
            f'{", ".join(units["openvino_capabilities"]) or "unknown"}; cpuinfo: '
            f'{", ".join(units["cpu_flags"]) or "none of avx2/avx512/amx"}).',
            '',
        ]
    if gflop_per_s:
        lines += [
            f'fp32 compute floor: 2·MACs at {gflop_per_s:.0f} GFLOP/s (the best fp32 matmul, '
            f'numpy or TF, at the start and the end of this run).',
            '',
        ]
    lines += [
        '| model | format | arithmetic (ran) | latency batch 1 (ms) | fastest round (ms) | '
        'vs frozen fp32 | vs fp32 floor | batch 8 (ms/img) | vs frozen fp32 | vs fp32 floor | '
        'batch 8 (img/s) |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        arithmetic = r['dtype'] + (f' ({r["ran"]})' if 'ran' in r else '')
        lines.append(
            f'| `{r["model"]}` | {r["format"]} | {arithmetic} | {r["latency_ms"]} | '
            f'{r["latency_fastest_ms"]} | '
            f'{r.get("latency_vs_frozen_fp32", "")} | {r.get("latency_vs_floor", "")} | '
            f'{r["batch8_ms_per_image"]} | {r.get("batch8_vs_frozen_fp32", "")} | '
            f'{r.get("batch8_vs_floor", "")} | {r["batch8_images_per_s"]} |'
        )
    return '\n'.join(lines) + '\n'


def main():
    logs.absl_only()  # one line per TF record, not two
    logs.drop_tensorflow_messages(*export.TF_CHATTER)  # restores of the exported checkpoint
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='ssd_300_mobilenet,ssd_300_vgg,ssd_512_vgg')
    parser.add_argument('--output', default='output/benchmarks/bench_inference.json')
    parser.add_argument(
        '--dtypes',
        default=None,
        help='compute dtypes of the checkpoint and frozen graphs, comma-separated '
        '(default: float32, and bfloat16 where the CPU has avx512_bf16 or amx_bf16: '
        'elsewhere TF emulates it, which nobody would deploy)',
    )
    parser.add_argument(
        '--openvino_precisions',
        default='fp32,bf16,int8',
        help='OpenVINO precisions, comma-separated: fp32, bf16 (the fp32 IR loaded with the '
        'bf16 hint), int8 (the NNCF-quantised IR); empty: no OpenVINO rows',
    )
    parser.add_argument('--tflite_threads', type=int, default=os.cpu_count())
    args = parser.parse_args()
    if args.dtypes is None:
        args.dtypes = 'float32,bfloat16' if cpu_features.has_bf16() else 'float32'
    rows = []
    start, load_at_start = time.perf_counter(), os.getloadavg()[0]
    rates = [floor_gflops()]
    units = None
    precisions = [p for p in args.openvino_precisions.split(',') if p]
    if precisions:
        units = openvino_runtime.cpu_matrix_units()
    for name in args.models.split(','):
        with tempfile.TemporaryDirectory() as work_dir:
            rows.extend(
                bench_model(
                    name, work_dir, args.dtypes.split(','), precisions, args.tflite_threads, print
                )
            )
    rates.append(floor_gflops())
    add_floor_ratios(rows, max(rates))
    result = {
        'rows': rows,
        'image_shape': IMAGE_SHAPE,
        'tensorflow': tf.__version__,
        'openvino': openvino_model.openvino_version() if precisions else None,
        'cpu_matrix_units': units,
        'floor_gflops_fp32': [round(r, 1) for r in rates],
        'machine': platform.machine(),
        'cpus': os.cpu_count(),
        'load_average_at_start': round(load_at_start, 2),
        'load_average_at_end': [round(x, 2) for x in os.getloadavg()],
        'total_seconds': round(time.perf_counter() - start, 1),
    }
    busy = cpu_features.busy_note(load_at_start, os.getloadavg()[0], os.cpu_count())
    table = markdown(rows, units, max(rates)) + (f'\n{busy}\n' if busy else '')
    bench_nets.write_report(args.output, result, table)
    print(table)
    print(f'total {result["total_seconds"]} s; wrote {args.output}')


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
