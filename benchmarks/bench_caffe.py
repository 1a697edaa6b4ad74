"""Caffe conversion: time and peak memory of converting VGG16 SSD512, and parity with OpenCV.

    python benchmarks/bench_caffe.py [--repeats 3] [--output_json /tmp/bench_caffe.json]

Conversion: a seeded random SSD512 caffemodel (27.2 M floats, 109 MB) is written to a temp
folder, then `caffe_convert.convert` runs on it (read, map, build the graph, assign, save
atomically, re-load and forward check); wall time (median of --repeats), the peak of Python /
numpy allocations during one conversion (tracemalloc) and the process's peak RSS
(resource.getrusage) are reported. TensorFlow is imported before timing.

Parity: for each net of the parity tests (VGG SSD300, SSD512, MobileNet-SSD merged and separate
BN), OpenCV (`cv2.dnn`, OpenCV backend) and the converted checkpoint run on the same blob; the
max abs / relative (to the tensor's max) differences of priors, loc codes and class logits are
reported, with the forward time of each (median of --repeats, batch 1, CPU).
Prints a markdown table and writes JSON.
"""

import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

from absl import flags
import numpy as np


import tensorflow as tf  # noqa: E402  (imported before timing)

from converters import caffe_convert  # noqa: E402
from model import card as card_lib  # noqa: E402
from tests import caffe_fixtures  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer('repeats', 3, 'Timed runs (the median is reported).', lower_bound=1)
flags.DEFINE_string('output_json', None, 'Where to write the results as JSON.')


def _conversion(directory):
    net = caffe_fixtures.vgg_ssd(512, seed=2)
    proto, model = caffe_fixtures.write_net(net, directory, 'ssd512')
    floats = sum(b.size for layer in net.layers for b in layer.blobs)
    out = os.path.join(directory, 'ssd512.ckpt')
    times = []
    for i in range(FLAGS.repeats):
        if i == 0:
            tracemalloc.start()
        start = time.perf_counter()
        caffe_convert.convert(model, out, 'ssd_512_vgg', prototxt_path=proto, log=lambda line: None)
        times.append(time.perf_counter() - start)
        if i == 0:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return {
        'model': 'ssd_512_vgg (21 classes)',
        'floats': int(floats),
        'caffemodel_mb': os.path.getsize(model) / 2**20,
        'seconds_median': statistics.median(times),
        'seconds_all': times,
        'tracemalloc_peak_mb': peak / 2**20,
        'ru_maxrss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _parity(name, directory):
    model_name, make, size, mean, scale = caffe_fixtures.PARITY_NETS[name]
    net = make()
    blob = caffe_fixtures.opencv_blob(
        caffe_fixtures.photo_like_image(size, size, seed=7), (size, size), mean, scale
    )
    caffe_fixtures.calibrate_heads(net, blob)
    proto, model = caffe_fixtures.write_net(net, directory, name)
    names = ['mbox_loc', 'mbox_conf', 'mbox_priorbox']
    cv_times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        cv = caffe_fixtures.opencv_forward(net, blob, names)
        cv_times.append(time.perf_counter() - start)
    out = os.path.join(directory, name + '.ckpt')
    caffe_convert.convert(model, out, model_name, prototxt_path=proto, log=lambda line: None)
    ours = caffe_fixtures.our_forward(
        out, card_lib.load(caffe_convert.config_path_for(out)), blob, repeats=FLAGS.repeats + 1
    )
    n = len(ours['anchors'])
    priors = cv['mbox_priorbox'].reshape(2, n, 4)[0][:, [1, 0, 3, 2]]
    loc, conf = cv['mbox_loc'].reshape(n, 4), cv['mbox_conf'].reshape(n, -1)
    return {
        'net': name,
        'anchors': n,
        'priors_max_abs': float(np.abs(ours['anchors'] - priors).max()),
        'loc_max_abs': float(np.abs(ours['loc'] - loc).max()),
        'loc_rel': _rel(ours['loc'], loc),
        'logits_max_abs': float(np.abs(ours['logits'] - conf).max()),
        'logits_rel': _rel(ours['logits'], conf),
        # OpenCV's time includes building the net from memory; ours is the session run only.
        'opencv_load_and_forward_s': statistics.median(cv_times),
        'tf_forward_s': statistics.median(ours['seconds'][1:]),
    }


def main(_):
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)
    with tempfile.TemporaryDirectory() as directory:
        conversion = _conversion(directory)
        parity = [_parity(name, directory) for name in caffe_fixtures.PARITY_NETS]
    results = {
        'machine': platform.platform(),
        'cpus': os.cpu_count(),
        'tensorflow': tf.__version__,
        'conversion': conversion,
        'parity': parity,
    }
    print(
        '| conversion | floats | caffemodel MB | seconds (median) | tracemalloc peak MB | '
        'peak RSS MB |'
    )
    print('|---|---|---|---|---|---|')
    print(
        '| %s | %d | %.0f | %.2f | %.0f | %.0f |'
        % (
            conversion['model'],
            conversion['floats'],
            conversion['caffemodel_mb'],
            conversion['seconds_median'],
            conversion['tracemalloc_peak_mb'],
            conversion['ru_maxrss_mb'],
        )
    )
    print()
    print(
        '| net | anchors | priors max abs | loc max abs (rel) | logits max abs (rel) | '
        'OpenCV load+forward s | TF forward s |'
    )
    print('|---|---|---|---|---|---|---|')
    for p in parity:
        print(
            '| %s | %d | %.2g | %.2g (%.2g) | %.2g (%.2g) | %.2f | %.2f |'
            % (
                p['net'],
                p['anchors'],
                p['priors_max_abs'],
                p['loc_max_abs'],
                p['loc_rel'],
                p['logits_max_abs'],
                p['logits_rel'],
                p['opencv_load_and_forward_s'],
                p['tf_forward_s'],
            )
        )
    if FLAGS.output_json:
        atomic_io.write_json_atomic(FLAGS.output_json, results)


if __name__ == '__main__':
    logs.run(main)  # --help exits 0, Ctrl-C is one line
