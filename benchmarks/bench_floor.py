"""The machine's compute limit and each net's compute floor.

    python benchmarks/bench_floor.py [--size 2048] [--repeats 10] [--threads 2] \
        [--models ssd_300_mobilenet,ssd_300_vgg,ssd_512_vgg] [--output /tmp/floor.json]

Measured: GFLOP/s of square fp32 matrix multiplies (numpy/OpenBLAS and TensorFlow, --threads
threads each) and, where the CPU has avx512_bf16 or amx_bf16, of TensorFlow bf16 matmuls;
2·n³ FLOPs per multiply, median over --repeats runs after two warm-up runs. Per net: the
multiply-accumulates of one 300x300 (512x512) image (`bench_nets.multiply_accumulates`, convs
only) and the compute floor in ms per image, 2·MACs / (best fp32 GFLOP/s), i.e. the time the
forward pass would take if every convolution ran at matmul speed. Prints a markdown table and
writes JSON (and the table beside it, .md).
"""

import argparse
import os
import platform
import sys

# OpenBLAS sizes its pool when numpy is imported; the thread count has to be set before that.
if __name__ == '__main__':
    _threads = sys.argv[sys.argv.index('--threads') + 1] if '--threads' in sys.argv else '2'
    os.environ['OPENBLAS_NUM_THREADS'] = _threads
    os.environ['OMP_NUM_THREADS'] = _threads

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nets  # noqa: E402
from nets import nets_factory  # noqa: E402
from tf_extended import cpu_features  # noqa: E402

v1 = tf.compat.v1


def gflops(n, seconds):
    """GFLOP/s of one n x n by n x n matrix multiply taking `seconds` (2·n³ FLOPs)."""
    return 2.0 * n**3 / seconds / 1e9


def numpy_matmul_gflops(n, repeats):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    return gflops(n, bench_nets.median_seconds(lambda: np.matmul(a, b, out=out), repeats))


def tf_matmul_gflops(n, repeats, threads, dtype):
    """TensorFlow matmul GFLOP/s in `dtype` (tf.float32 or tf.bfloat16) on `threads` threads."""
    with tf.Graph().as_default():
        rng = np.random.default_rng(0)
        a, b = (
            v1.Variable(tf.cast(rng.standard_normal((n, n)).astype(np.float32), dtype))
            for _ in range(2)
        )
        # Running the op without fetching its output: no copy of the n x n result is timed.
        product = tf.matmul(a, b).op
        config = v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        with v1.Session(config=config) as sess:
            sess.run(v1.global_variables_initializer())
            return gflops(n, bench_nets.median_seconds(lambda: sess.run(product), repeats))


def net_macs(name):
    """Per-image multiply-accumulates of net `name` (batch 1, its default input size)."""
    with tf.Graph().as_default() as graph:
        net, network_fn = nets_factory.get_network_fn(name, 21)
        size = dict(bench_nets.NETS)[name]
        network_fn(v1.placeholder(tf.float32, [1, size, size, 3]))
        return bench_nets.multiply_accumulates(graph)


def floor_ms(macs, gflop_per_s):
    """Compute floor in ms per image: 2·MACs FLOPs at `gflop_per_s`."""
    return 2.0 * macs / (gflop_per_s * 1e9) * 1e3


def measure(models, size, repeats, threads):
    """The floor report (see the module docstring) as a JSON-ready dict."""
    fp32 = {
        'numpy': numpy_matmul_gflops(size, repeats),
        'tensorflow': tf_matmul_gflops(size, repeats, threads, tf.float32),
    }
    best_fp32 = max(fp32.values())
    bf16_flags = sorted(cpu_features.cpu_flags() & set(cpu_features.BF16_FLAGS))
    bf16 = tf_matmul_gflops(size, repeats, threads, tf.bfloat16) if bf16_flags else None
    rows = []
    for name in models:
        macs = net_macs(name)
        rows.append(
            {
                'model': name,
                'gmacs': macs / 1e9,
                'floor_ms_fp32': floor_ms(macs, best_fp32),
                'floor_ms_bf16': floor_ms(macs, bf16) if bf16 else None,
            }
        )
    return {
        'matrix_size': size,
        'threads': threads,
        'repeats': repeats,
        'fp32_gflops': fp32,
        'fp32_gflops_best': best_fp32,
        'bf16_cpu_flags': bf16_flags,
        'bf16_gflops': bf16,
        'rows': rows,
        'tensorflow': tf.__version__,
        'numpy': np.__version__,
        'machine': platform.machine(),
        'cpus': os.cpu_count(),
    }


def markdown(report):
    bf16 = report['bf16_gflops']
    lines = [
        'Matmul %dx%d, %d threads: fp32 numpy %.1f GFLOP/s, fp32 TensorFlow %.1f GFLOP/s, '
        'bf16 TensorFlow %s.'
        % (
            report['matrix_size'],
            report['matrix_size'],
            report['threads'],
            report['fp32_gflops']['numpy'],
            report['fp32_gflops']['tensorflow'],
            '%.1f GFLOP/s' % bf16 if bf16 else 'not measured (no avx512_bf16/amx_bf16)',
        ),
        '',
        '| model | GMACs/img | fp32 floor (ms/img) | bf16 floor (ms/img) |',
        '|---|---|---|---|',
    ]
    for r in report['rows']:
        lines.append(
            '| %s | %.2f | %.1f | %s |'
            % (
                r['model'],
                r['gmacs'],
                r['floor_ms_fp32'],
                '%.1f' % r['floor_ms_bf16'] if r['floor_ms_bf16'] else '-',
            )
        )
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=2048, help='matrix side')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--models', default=','.join(n for n, _ in bench_nets.NETS))
    parser.add_argument('--output', default=None, help='JSON file to write (and .md beside it)')
    args = parser.parse_args()
    v1.logging.set_verbosity(v1.logging.ERROR)
    report = measure(args.models.split(','), args.size, args.repeats, args.threads)
    table = markdown(report)
    print(table)
    if args.output:
        bench_nets.write_report(args.output, report, table)


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
