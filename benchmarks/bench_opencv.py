"""OpenCV DNN against our TF graphs on the same Caffe SSD weights: net forward latency (batch 1)
and throughput (batch 8).

    python benchmarks/bench_opencv.py [--nets mobilenet_merged,vgg300] [--threads 2] \
        [--output benchmarks/results/opencv.json]

Per net (`caffe_fixtures.PARITY_NETS`: MobileNet-SSD300 with merged BatchNorm, VGG16 SSD300), a
seeded random Caffe model (deploy prototxt + caffemodel, exact published blob shapes) is written
to a temp folder and
  opencv        `cv2.dnn.readNetFromCaffe` (OpenCV backend, CPU, `cv2.setNumThreads`), input
                from `cv2.dnn.blobFromImages`, outputs mbox_loc and mbox_conf (raw logits);
  tf_checkpoint the model converted with `caffe_convert.convert`, our net graph restored from
                the checkpoint (NHWC RGB input), outputs the flattened loc codes and logits;
  tf_frozen     the same graph with the variables folded to constants, re-imported.
All three run the convolutions, heads and concatenations only (no softmax, decoding or NMS) on
the same photo-like images; the max abs difference of OpenCV's and our outputs is reported as a
check that they compute the same model. Timed: one run call (the TF feed included); medians over
the repeats after one warm-up run, the three taking turns within each repeat (the machine is
shared: load from other jobs then falls on all three alike). Prints a markdown table and writes
JSON (and .md beside it).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

import numpy as np
import tensorflow as tf
import tf_slim as slim

from converters import caffe_convert  # noqa: E402
from inference import detection  # noqa: E402
from model import card as card_lib  # noqa: E402
from tests import caffe_fixtures  # noqa: E402
from nets import ssd_common  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_nets  # noqa: E402

v1 = tf.compat.v1
# (batch-1 repeats, batch-8 repeats) after one warm-up; --repeats_scale multiplies them.
REPEATS = {
    'mobilenet_merged': (10, 5),
    'mobilenet_separate_bn': (10, 5),
    'vgg300': (3, 2),
    'vgg512': (2, 1),
}
BATCHES = (1, 8)
FRAMEWORKS = ('opencv', 'tf_checkpoint', 'tf_frozen')


def interleaved_medians(fns, repeats):
    """Median wall time of each of `fns` over `repeats` rounds after one untimed round.

    Each round times every function once, in turn, so that load from other jobs on the shared
    machine falls on all of them alike. Returns (medians in seconds, the warm-up outputs).
    """
    outputs = [fn() for fn in fns]
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seconds in zip(fns, times):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times], outputs


class OpenCVRunner:
    """cv2.dnn on a Caffe deploy + caffemodel; `run(blob)` -> (loc [B, N*4], logits [B, N*C])."""

    def __init__(self, prototxt_path, caffemodel_path):
        self.net = cv2.dnn.readNetFromCaffe(prototxt_path, caffemodel_path)
        self.net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def run(self, blob):
        self.net.setInput(blob)
        loc, conf = self.net.forward(['mbox_loc', 'mbox_conf'])
        return loc.reshape(len(blob), -1), conf.reshape(len(blob), -1)


class TFRunner:
    """Our net on a converted checkpoint, as a variables graph or a frozen one.

    `run(blob)` takes OpenCV's NCHW BGR blob, feeds it as NHWC RGB and returns
    (loc [B, N*4], logits [B, N*C]) in OpenCV's anchor order.
    """

    def __init__(self, checkpoint_path, batch, threads, frozen):
        ssd = card_lib.load(caffe_convert.config_path_for(checkpoint_path)).net()
        size = tuple(ssd.params.img_shape)
        session_config = v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1
        )
        with tf.Graph().as_default() as graph:
            images = v1.placeholder(tf.float32, (batch,) + size + (3,), name='images')
            with slim.arg_scope(ssd.arg_scope(data_format='NHWC')):
                _, localisations, logits, _ = ssd.net(images, is_training=False)
            loc = tf.identity(ssd_common.flatten_layers(localisations), name='loc')
            conf = tf.identity(ssd_common.flatten_layers(logits), name='logits')
            with v1.Session(graph=graph, config=session_config) as sess:
                v1.train.Saver().restore(sess, checkpoint_path)
                graph_def = detection.freeze(sess, ['loc', 'logits']) if frozen else None
        if frozen:
            graph = tf.Graph()
            with graph.as_default():
                images, loc, conf = tf.import_graph_def(
                    graph_def, return_elements=['images:0', 'loc:0', 'logits:0'], name=''
                )
        self.sess = v1.Session(graph=graph, config=session_config)
        if not frozen:
            with graph.as_default():
                v1.train.Saver().restore(self.sess, checkpoint_path)
        self.images, self.fetches = images, [loc, conf]

    def run(self, blob):
        rgb = blob.transpose(0, 2, 3, 1)[..., ::-1]
        loc, conf = self.sess.run(self.fetches, {self.images: rgb})
        return loc.reshape(len(blob), -1), conf.reshape(len(blob), -1)

    def close(self):
        self.sess.close()


def bench_net(name, work_dir, threads, repeats_scale, log):
    model_name, make, size, mean, scale = caffe_fixtures.PARITY_NETS[name]
    net = make()
    images = [caffe_fixtures.photo_like_image(size, size, seed=i) for i in range(max(BATCHES))]
    caffe_fixtures.calibrate_heads(
        net, caffe_fixtures.opencv_blob(images[0], (size, size), mean, scale)
    )
    proto, model = caffe_fixtures.write_net(net, work_dir, name)
    checkpoint = os.path.join(work_dir, name + '.ckpt')
    caffe_convert.convert(model, checkpoint, model_name, prototxt_path=proto, log=lambda _: None)
    rows = []
    for batch, repeats in zip(BATCHES, REPEATS[name]):
        repeats = max(1, int(round(repeats * repeats_scale)))
        blob = cv2.dnn.blobFromImages(
            images[:batch], scale, (size, size), mean, swapRB=False, crop=False
        )
        runners, setups = [], []
        for framework in FRAMEWORKS:
            start = time.perf_counter()
            runners.append(
                OpenCVRunner(proto, model)
                if framework == 'opencv'
                else TFRunner(checkpoint, batch, threads, frozen=framework == 'tf_frozen')
            )
            setups.append(time.perf_counter() - start)
        medians, outputs = interleaved_medians(
            [lambda runner=runner: runner.run(blob) for runner in runners], repeats
        )
        for runner in runners:
            if hasattr(runner, 'close'):
                runner.close()
        reference = outputs[FRAMEWORKS.index('opencv')]
        for framework, setup, seconds, (loc, conf) in zip(FRAMEWORKS, setups, medians, outputs):
            row = {
                'net': name,
                'model': model_name,
                'framework': framework,
                'batch': batch,
                'repeats': repeats,
                'setup_s': round(setup, 2),
                'ms_per_batch': seconds * 1e3,
                'ms_per_image': seconds * 1e3 / batch,
                'images_per_s': batch / seconds,
                'max_abs_diff_vs_opencv': float(
                    max(np.abs(loc - reference[0]).max(), np.abs(conf - reference[1]).max())
                ),
            }
            log('%s batch %d %s: %.1f ms/img' % (name, batch, framework, row['ms_per_image']))
            rows.append(row)
    return rows


def markdown(rows):
    lines = [
        '| net | model | framework | batch 1 latency (ms) | batch 8 (ms/img) | '
        'batch 8 (img/s) | max abs diff vs OpenCV |',
        '|---|---|---|---|---|---|---|',
    ]
    keyed = {(r['net'], r['framework'], r['batch']): r for r in rows}
    for net in dict.fromkeys(r['net'] for r in rows):
        for framework in FRAMEWORKS:
            b1, b8 = keyed[(net, framework, 1)], keyed[(net, framework, 8)]
            lines.append(
                '| %s | %s | %s | %.1f | %.1f | %.2f | %.2g |'
                % (
                    net,
                    b1['model'],
                    framework,
                    b1['ms_per_batch'],
                    b8['ms_per_image'],
                    b8['images_per_s'],
                    max(b1['max_abs_diff_vs_opencv'], b8['max_abs_diff_vs_opencv']),
                )
            )
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--nets',
        default='mobilenet_merged,vgg300',
        help='comma-separated keys of caffe_fixtures.PARITY_NETS',
    )
    parser.add_argument(
        '--threads', type=int, default=2, help='cv2.setNumThreads and TF intra-op threads'
    )
    parser.add_argument(
        '--repeats_scale',
        type=float,
        default=1.0,
        help='multiplies the per-net repeats (at least 1 each)',
    )
    parser.add_argument('--output', default=None, help='JSON file to write (and .md beside it)')
    args = parser.parse_args()
    nets = args.nets.split(',')
    unknown = [n for n in nets if n not in caffe_fixtures.PARITY_NETS]
    if unknown:
        parser.error(
            'unknown --nets %s; choose from %s' % (unknown, ', '.join(caffe_fixtures.PARITY_NETS))
        )
    v1.logging.set_verbosity(v1.logging.ERROR)
    cv2.setNumThreads(args.threads)
    rows = []
    for name in nets:
        with tempfile.TemporaryDirectory() as work_dir:
            rows.extend(bench_net(name, work_dir, args.threads, args.repeats_scale, print))
    report = {
        'rows': rows,
        'threads': args.threads,
        'opencv': cv2.__version__,
        'tensorflow': tf.__version__,
        'machine': platform.machine(),
        'cpus': os.cpu_count(),
    }
    table = markdown(rows)
    print(table)
    if args.output:
        bench_nets.write_report(args.output, report, table)


if __name__ == '__main__':
    logs.run_plain(main)  # tf.keras resolvable (TF_USE_LEGACY_KERAS undone), Ctrl-C one line
