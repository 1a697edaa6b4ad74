"""Evaluation throughput per net (random weights, synthetic shapes images) against the forward pass.

For each net, three images/s figures on the same batch size:
  forward       the net alone on an in-graph batch (no input, no post-processing);
  +postprocess  the net plus `detected_bboxes` (per-class top-k, NMS, keep_top_k);
  evaluation    `evaluate.evaluate_checkpoint`'s loop: records -> decode -> eval preprocessing
                -> net -> post-processing -> mapping back -> VOC metrics and results files
                (graph building and restoring excluded, as in the images/s it reports).
and the share of the evaluation time that is not the forward pass.

  python benchmarks/bench_eval.py --models=ssd_300_mobilenet,ssd_300_vgg --num_images=64 \
      --batch_size=8 [--output=bench_eval.json]
"""

import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
import tf_slim as slim

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation import evaluate  # noqa: E402
from model import checkpoints  # noqa: E402
from tests import eval_fixtures  # noqa: E402
from nets import nets_factory  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('models', ['ssd_300_mobilenet', 'ssd_300_vgg', 'ssd_512_vgg'], 'Nets to measure.')
flags.DEFINE_integer(
    'num_images', 64, 'Synthetic images in the evaluated split (about 1/4 of those generated).'
)
flags.DEFINE_integer('batch_size', 8, 'Images per batch.')
flags.DEFINE_integer('repeats', 5, 'Timed runs of the in-graph batch (after one warm-up run).')
flags.DEFINE_integer('num_threads', None, 'Intra/inter-op threads (default: TensorFlow\'s).')
flags.DEFINE_string('output', None, 'Also write the results as JSON here.')


def _in_graph_rate(model_name, num_classes, batch_size, repeats, with_postprocessing):
    cls = nets_factory.get_network(model_name)
    net = cls(cls.default_params._replace(num_classes=num_classes))
    graph = tf.Graph()
    with graph.as_default():
        images = tf.random.uniform(
            [batch_size] + list(net.params.img_shape) + [3], -1.0, 1.0, seed=0
        )
        with slim.arg_scope(net.arg_scope()):
            predictions, localisations, _, _ = net.net(images, is_training=False)
        if with_postprocessing:
            fetch = net.detected_bboxes(predictions, localisations)
        else:
            fetch = [tf.reduce_sum(p) for p in predictions + localisations]
        init = tf.compat.v1.global_variables_initializer()
    with tf.compat.v1.Session(
        graph=graph, config=checkpoints.session_config(FLAGS.num_threads)
    ) as sess:
        sess.run(init)
        sess.run(fetch)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            sess.run(fetch)
            times.append(time.perf_counter() - start)
    return batch_size / float(np.median(times))


def main(_):
    tf.compat.v1.disable_eager_execution()
    results = []
    with tempfile.TemporaryDirectory() as root:
        # The synthetic generator puts a quarter of the images in the test split.
        _, records_dir, class_names = eval_fixtures.make_synthetic_records(
            root, num_images=4 * FLAGS.num_images
        )
        num_classes = len(class_names) + 1
        for model in FLAGS.models:
            prefix = eval_fixtures.write_random_checkpoint(
                os.path.join(root, model, 'model.ckpt'), model, num_classes, 1
            )
            forward = _in_graph_rate(model, num_classes, FLAGS.batch_size, FLAGS.repeats, False)
            post = _in_graph_rate(model, num_classes, FLAGS.batch_size, FLAGS.repeats, True)
            settings = evaluate.EvalSettings(
                card=eval_fixtures.small_card(model, class_names),
                dataset_name='custom',
                dataset_split_name='test',
                dataset_dir=records_dir,
                batch_size=FLAGS.batch_size,
                num_threads=FLAGS.num_threads,
                pr_curves=False,
            )
            result = evaluate.evaluate_checkpoint(
                settings, prefix, os.path.join(root, model, 'eval'), log=lambda line: None
            )
            evaluation = result.summary['images_per_second']
            row = {
                'model': model,
                'batch_size': FLAGS.batch_size,
                'images': result.num_images,
                'forward_images_per_s': forward,
                'postprocess_images_per_s': post,
                'evaluation_images_per_s': evaluation,
                # Shares of the evaluation's time per image.
                'postprocess_overhead': (1.0 / post - 1.0 / forward) * evaluation,
                'non_forward_share': 1.0 - evaluation / forward,
            }
            results.append(row)
            print(
                f'{model:18s} forward {forward:7.1f} img/s | +postprocess {post:7.1f} img/s | '
                f'evaluation {evaluation:7.1f} img/s | '
                f'post-processing {100 * row["postprocess_overhead"]:5.1f} % '
                f'and input+metrics {100 * (row["non_forward_share"] - row["postprocess_overhead"]):5.1f} % '
                f'of the evaluation time',
                flush=True,
            )
    if FLAGS.output:
        device = 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'
        atomic_io.write_json_atomic(FLAGS.output, {'device': device, 'results': results})


if __name__ == '__main__':
    app.run(main)
