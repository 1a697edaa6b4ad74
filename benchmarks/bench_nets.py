"""Forward-pass speed of the SSD nets: latency (batch 1) and throughput (batch 8), fp32 and bf16,
with parameter and multiply-accumulate counts.

    python benchmarks/bench_nets.py [--repeats 10] [--output benchmarks/results/nets.json]

Random weights, random normalised 300x300 (512x512) inputs, NHWC, the graph with variables
(no freezing). Medians over `--repeats` runs after warm-up; prints a markdown table and writes
JSON. The machine is noisy: compare numbers from one run.
"""

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

import numpy as np
import tensorflow as tf

from nets import nets_factory  # noqa: E402
from nets.ssd_common import flatten_layers  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

v1 = tf.compat.v1
NETS = (('ssd_300_vgg', 300), ('ssd_512_vgg', 512), ('ssd_300_mobilenet', 300))


def multiply_accumulates(graph):
    """Per-image MACs of the convolutions in `graph` (static shapes)."""
    total = 0
    for op in graph.get_operations():
        if op.type not in ('Conv2D', 'DepthwiseConv2dNative'):
            continue
        out = op.outputs[0].shape.as_list()
        kh, kw, cin, mult = op.inputs[1].shape.as_list()
        spatial = out[1] * out[2] if op.get_attr('data_format') == b'NHWC' else out[2] * out[3]
        # Conv2D filters are [kh, kw, in, out]; depthwise ones [kh, kw, in, multiplier].
        total += spatial * kh * kw * cin * mult
    return total


def write_report(path, report, table=None):
    """Writes `report` as JSON to `path` and the markdown `table` (if any) beside it as `.md`,
    both atomically, creating the folder (the benchmarks' one writer)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_io.write_json_atomic(path, report)
    if table is not None:
        atomic_io.write_text_atomic(os.path.splitext(path)[0] + '.md', table)


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of `fn()` over `repeats` runs after `warmup` untimed ones (the benchmarks'
    one timer)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(name, size, repeats, dtypes):
    """One row: parameters, MACs and, per compute dtype, batch-1 latency and batch-8 ms/img.

    fp32 keys are `latency_ms_b1`, `ms_per_image_b8`, `images_per_s_b8`; other dtypes prefix them
    with the dtype name (`bfloat16_latency_ms_b1`, ...). A non-fp32 net is the same graph fed with
    inputs cast to that dtype (the layers cast their weights to the input's dtype).
    """
    row = {'model': name}
    for dtype in dtypes:
        prefix = '' if dtype == 'float32' else dtype + '_'
        for batch in (1, 8):
            with tf.Graph().as_default() as graph:
                net, network_fn = nets_factory.get_network_fn(name, 21)
                images = v1.placeholder(tf.float32, [batch, size, size, 3])
                predictions, localisations, _, _ = network_fn(tf.cast(images, dtype))
                outputs = [flatten_layers(predictions), flatten_layers(localisations)]
                if 'parameters' not in row:
                    row['parameters'] = int(sum(np.prod(v.shape) for v in v1.trainable_variables()))
                    row['gmacs'] = multiply_accumulates(graph) / 1e9
                config = v1.ConfigProto(
                    intra_op_parallelism_threads=os.cpu_count(), inter_op_parallelism_threads=1
                )
                with v1.Session(config=config) as sess:
                    sess.run(v1.global_variables_initializer())
                    feed = {images: np.random.RandomState(0).randn(batch, size, size, 3) * 50}
                    seconds = median_seconds(lambda: sess.run(outputs, feed), repeats)
            if batch == 1:
                row[prefix + 'latency_ms_b1'] = seconds * 1e3
            else:
                row[prefix + 'ms_per_image_b8'] = seconds * 1e3 / batch
                row[prefix + 'images_per_s_b8'] = batch / seconds
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--models', default=','.join(n for n, _ in NETS))
    parser.add_argument(
        '--dtypes',
        default='float32,bfloat16',
        help='compute dtypes, comma-separated (float32 first)',
    )
    parser.add_argument('--output', default=None, help='JSON file to write')
    args = parser.parse_args()
    dtypes = args.dtypes.split(',')
    rows = [
        bench(name, size, args.repeats, dtypes)
        for name, size in NETS
        if name in args.models.split(',')
    ]
    print('| model | parameters | GMACs | dtype | latency b1 (ms) | b8 ms/img | b8 img/s |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        for dtype in dtypes:
            prefix = '' if dtype == 'float32' else dtype + '_'
            print(
                '| %s | %s | %.2f | %s | %.1f | %.1f | %.1f |'
                % (
                    r['model'],
                    format(r['parameters'], ','),
                    r['gmacs'],
                    dtype,
                    r[prefix + 'latency_ms_b1'],
                    r[prefix + 'ms_per_image_b8'],
                    r[prefix + 'images_per_s_b8'],
                )
            )
    if args.output:
        report = {
            'date': time.strftime('%Y-%m-%d'),
            'machine': platform.processor() or platform.machine(),
            'cpus': os.cpu_count(),
            'tensorflow': tf.__version__,
            'results': rows,
        }
        write_report(args.output, report)


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
