"""Evaluation throughput against the forward pass, for the checkpoint graph and exported models.

Per net and batch size, images/s of:
  forward        the net alone on the split's preprocessed batches, held in memory (no input,
                 no post-processing);
  +postprocess   the net plus `detected_bboxes` (per-class top-k, NMS, keep_top_k) on them;
  evaluation     `evaluate.evaluate_checkpoint`: records -> decode -> eval preprocessing -> net ->
                 post-processing -> mapping back -> VOC metrics and results files, at its steady
                 rate after the first batch (results.json's steady_images_per_second: the
                 forward rates are timed after a warm-up call too); the whole run's rate and the
                 first batch's seconds are in the row beside it;
  input cached   the same, as the eval watcher's later evaluations run it: the split's decoded
                 input cached by a first evaluation (--input_cache_mb, `evaluation.input_cache`);
and for each exported model (--exported: any of export_ssd_network.py's --formats, e.g.
frozen_graph, openvino, openvino_int8, tflite_float, tflite_int8):
  forward        the model on the split's decoded batches, held in memory (its preprocessing,
                 net and NMS inside: what a user's calls cost), OpenVINO in throughput mode as
                 eval_ssd_network.py opens it;
  evaluation     `exported.evaluate_exported` (decode, the model, metrics; overlapped).
Forward passes and evaluations alternate for --rounds rounds (forward, evaluation, forward, ...):
each evaluation is compared with the mean of the forward rates just before and just after it,
and the round with the median ratio is reported (the others' ratios beside it): on a shared
machine one round's ratio swings by +-10 %. The share of the evaluation time outside the forward
pass is `1 - evaluation / forward`.

With both exports and a trained checkpoint, the OpenVINO model's detections are matched against
the frozen graph's on every image (`inference.parity`: same class, score and box within
--parity_tol, order-free).

Weights: random (the default: near-uniform scores, every anchor above 0.01, the NMS worst
case), or a trained checkpoint and its records (`--checkpoint_path` with `--dataset_dir`,
e.g. the main job's work_dir/train and work_dir/tfrecords), whose scores are a detector's.

  python benchmarks/bench_eval.py --models=ssd_300_mobilenet --num_images=64 --batch_size=8 \
      [--exported=frozen_graph,openvino] [--output=bench_eval.json]
  python benchmarks/bench_eval.py --checkpoint_path=work_dir/train --dataset_dir=work_dir/tfrecords
"""

import dataclasses
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs  # noqa: E402

from absl import flags
import numpy as np
import tensorflow as tf
import tf_slim as slim


from datasets import dataset_factory  # noqa: E402
from evaluation import evaluate  # noqa: E402
from evaluation import exported as eval_exported  # noqa: E402
from evaluation import input as eval_input  # noqa: E402
from inference import detection  # noqa: E402
from inference import export  # noqa: E402
from inference import parity  # noqa: E402
from model import card as card_lib  # noqa: E402
from model import checkpoints  # noqa: E402
from model import cli  # noqa: E402
from tests import eval_fixtures  # noqa: E402
from tf_extended import atomic_io  # noqa: E402

v1 = tf.compat.v1
FLAGS = flags.FLAGS
flags.DEFINE_list(
    'models',
    ['ssd_300_mobilenet', 'ssd_300_vgg', 'ssd_512_vgg'],
    'Nets to measure (random weights).',
)
# Bounds as eval_ssd_network.py's and export_ssd_network.py's: a count below 1 ended in a
# traceback (--num_images, --batch_size) or was run as 1 (--rounds), a negative --num_threads or
# --input_cache_mb was run without a word.
flags.DEFINE_integer(
    'num_images',
    64,
    'Synthetic images in the evaluated split (about 1/4 of those generated).',
    lower_bound=1,
)
flags.DEFINE_integer(
    'batch_size', 8, 'Images per batch.', lower_bound=1, upper_bound=cli.MAX_BATCH_SIZE
)
flags.DEFINE_integer(
    'rounds',
    3,
    'Evaluations per model, each between two forward measurements.',
    lower_bound=1,
)
flags.DEFINE_integer(
    'num_threads',
    None,
    'Intra/inter-op threads (default: TensorFlow\'s).',
    lower_bound=1,
    upper_bound=cli.MAX_THREADS,
)
flags.DEFINE_list(
    'exported',
    ['frozen_graph', 'openvino'],
    'Exported models to evaluate too (with both: the OpenVINO model\'s detections matched '
    'against the frozen graph\'s).',
)
# As export_ssd_network.py's: 0 ended in a traceback (no images for int8 calibration).
flags.DEFINE_integer(
    'num_calibration_images',
    100,
    'Calibration images of openvino_int8 and tflite_int8 (in --exported).',
    lower_bound=1,
    upper_bound=cli.MAX_CALIBRATION_IMAGES,
)
flags.DEFINE_enum('openvino_precision', 'fp32', ['fp32', 'bf16'], 'OpenVINO inference precision.')
flags.DEFINE_float('parity_tol', 1e-4, 'Score and box tolerance of a matched detection.')
# nan or a negative tolerance matched no detection: a parity failure that is the flag's.
cli.register_bound('parity_tol', lambda v: v >= 0, 'be a finite number >= 0 (e.g. 1e-4)')
flags.DEFINE_string(
    'checkpoint_path',
    None,
    'A trained checkpoint (with its model card) instead '
    'of random weights; --dataset_dir then holds its records.',
)
flags.DEFINE_string('dataset_dir', None, 'Records of --checkpoint_path\'s data.')
flags.DEFINE_string('dataset_name', 'custom', 'Dataset of --dataset_dir.')
flags.DEFINE_string('dataset_split_name', 'test', 'Split of --dataset_dir.')
flags.DEFINE_string(
    'calibration_split_name',
    None,
    'Split of --dataset_dir whose images calibrate the int8 models (default: the evaluated '
    'one, as a user with only a test split would; a deployment calibrates on training images, '
    'e.g. train, and the evaluated split gives an optimistic int8 mAP).',
)
flags.DEFINE_integer(
    'input_cache_mb',
    4096,
    'Input cache of the "checkpoint, input cached" rows (the watcher\'s later evaluations).',
    lower_bound=0,
)
flags.DEFINE_string('output', None, 'Also write the results as JSON here.')


def _split_batches(dataset, card, batch_size):
    """Every batch of the split, decoded, in memory: preprocessed (the net's input, float32) and
    raw (padded uint8 images with their sizes, an exported model's input)."""
    with tf.Graph().as_default():
        pre = eval_input.make_eval_dataset(
            dataset, card.preprocessing(), card.input_shape, batch_size
        )
        raw = eval_input.make_raw_eval_dataset(dataset, batch_size)
        pre = v1.data.make_one_shot_iterator(pre).get_next()['image']
        raw = v1.data.make_one_shot_iterator(raw).get_next()
        raw = (raw[eval_input.RAW_IMAGES], raw[eval_input.RAW_SIZES])
        with v1.Session() as sess:
            return (
                list(eval_input.session_batches(sess, pre)),
                list(eval_input.session_batches(sess, raw)),
            )


def _quiet(_):
    pass


def _rate(run, batches):
    """Images/s of `run(batch)` (`run(*batch)` for tuples) over all the batches, after one
    untimed warm-up call."""

    def call(batch):
        return run(*batch) if isinstance(batch, tuple) else run(batch)

    call(batches[0])
    start = time.perf_counter()
    for batch in batches:
        call(batch)
    return sum(len(b[0]) if isinstance(b, tuple) else len(b) for b in batches) / (
        time.perf_counter() - start
    )


def _steady(result):
    """The evaluation's rate after its first batch; a split of one batch has none."""
    rate = result.summary['steady_images_per_second']
    if rate is None:
        logs.exit_error(
            f'the split gave one batch of at most --batch_size={FLAGS.batch_size} images: the '
            'steady rate (after the first batch\'s warm-up) needs two or more; use more images '
            'or a smaller --batch_size.'
        )
    return rate


def _alternate(forward, evaluate_once):
    """--rounds rounds of `evaluate_once()` (an EvalResult) between calls of `forward()` (images/s).

    Returns (forward rate, result, extra row fields) of the round whose evaluation / forward ratio
    is the median; the forward rate is the mean of the measurements around that evaluation."""
    rates = [forward()]
    rounds = []
    for _ in range(max(FLAGS.rounds, 1)):
        result = evaluate_once()
        rates.append(forward())
        mean = (rates[-2] + rates[-1]) / 2
        rounds.append((_steady(result) / mean, mean, result, rates[-2:]))
    _, mean, result, around = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
    return (
        mean,
        result,
        {
            'forward_before_after': around,
            'round_ratios': [round(r[0], 3) for r in rounds],
        },
    )


class _CheckpointNet:
    """The checkpoint's net (and net + post-processing) on fed preprocessed batches."""

    def __init__(self, card, prefix):
        net = card.net()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs = v1.placeholder(tf.float32, [None, *card.input_shape, 3])
            with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
                predictions, localisations = net.predict(self.inputs, card.compute_dtype)
            self.forward = [tf.reduce_sum(p) for p in predictions + localisations]
            self.post = net.detected_bboxes(
                predictions, localisations, **dataclasses.asdict(card.detection)
            )
            saver = v1.train.Saver(checkpoints.variables_to_restore())
        config = checkpoints.session_config(FLAGS.num_threads)
        self.sess = v1.Session(graph=self.graph, config=config)
        saver.restore(self.sess, prefix)

    def rate(self, batches, post=False):
        fetch = self.post if post else self.forward
        return _rate(lambda batch: self.sess.run(fetch, {self.inputs: batch}), batches)

    def detections_per_image(self, batch):
        return float(np.mean(self.sess.run(self.post['num_detections'], {self.inputs: batch})))


def _row(model, kind, forward, result, **extra):
    """One result row. The evaluation's rate is its steady one (after the first batch), as the
    forward rates are timed after a warm-up call; the whole run's is beside it."""
    evaluation = _steady(result)
    row = {
        'model': model,
        'source': kind,
        'batch_size': FLAGS.batch_size,
        'images': result.num_images,
        'forward_images_per_s': forward,
        'evaluation_images_per_s': evaluation,
        'evaluation_with_warm_up_images_per_s': result.summary['images_per_second'],
        'first_batch_seconds': result.summary['first_batch_seconds'],
        'evaluation_vs_forward': evaluation / forward,
        'non_forward_share': 1.0 - evaluation / forward,
        'voc07': result.metrics.get('voc07'),
    }
    row.update(extra)
    print(
        f'{model:18s} {kind:22s} forward {forward:7.1f} img/s | evaluation {evaluation:7.1f} '
        f'img/s = {evaluation / forward:.2f}x forward ({100 * row["non_forward_share"]:.0f} % '
        f'outside it; with its {row["first_batch_seconds"]:.1f} s first batch '
        f'{row["evaluation_with_warm_up_images_per_s"]:.1f} img/s) | VOC07 {row["voc07"]}',
        flush=True,
    )
    return row


def bench(model, card, prefix, dataset_dir, work_dir):
    """Rows of one model: the checkpoint graph, then each exported model. Forward rates are
    measured over every batch of the split just before and just after the evaluation (their
    mean counts: the machine's load drifts)."""
    dataset = dataset_factory.get_dataset(
        FLAGS.dataset_name, FLAGS.dataset_split_name, dataset_dir, num_classes=card.num_classes
    )
    preprocessed, raw = _split_batches(dataset, card, FLAGS.batch_size)
    settings = evaluate.EvalSettings(
        card=card,
        dataset_name=FLAGS.dataset_name,
        dataset_split_name=FLAGS.dataset_split_name,
        dataset_dir=dataset_dir,
        batch_size=FLAGS.batch_size,
        num_threads=FLAGS.num_threads,
        pr_curves=False,
    )
    net = _CheckpointNet(card, prefix)
    forward, result, extra = _alternate(
        lambda: net.rate(preprocessed),
        lambda: evaluate.evaluate_checkpoint(
            settings, prefix, os.path.join(work_dir, 'eval'), log=_quiet
        ),
    )
    post = net.rate(preprocessed, post=True)
    evaluation = _steady(result)
    rows = [
        _row(
            model,
            'checkpoint',
            forward,
            result,
            postprocess_images_per_s=post,
            detections_per_image=net.detections_per_image(preprocessed[0]),
            postprocess_share=(1.0 / post - 1.0 / forward) * evaluation,
            **extra,
        )
    ]
    # The watcher's later evaluations: the split's decoded input cached by the first one.
    with evaluate.CheckpointEvaluator(settings, input_cache_mb=FLAGS.input_cache_mb) as cached:
        cached.evaluate(prefix, os.path.join(work_dir, 'eval_fill'), log=_quiet)
        forward, result, extra = _alternate(
            lambda: net.rate(preprocessed),
            lambda: cached.evaluate(prefix, os.path.join(work_dir, 'eval_cached'), log=_quiet),
        )
        cached_images = cached.input_cache_images
    rows.append(
        _row(
            model,
            'checkpoint, input cached',
            forward,
            result,
            cached_images=cached_images,
            **extra,
        )
    )
    net.sess.close()
    if not FLAGS.exported:
        return rows
    calibration = None
    if set(export.INT8_FORMATS) & set(FLAGS.exported):
        split = FLAGS.calibration_split_name or FLAGS.dataset_split_name
        source = dataset_factory.get_dataset(
            FLAGS.dataset_name, split, dataset_dir, num_classes=card.num_classes
        )
        calibration = export.representative_images(source, FLAGS.num_calibration_images)
        print(f'{model}: int8 calibrated on {len(calibration)} images of split {split}', flush=True)
    written = export.export(
        card,
        prefix,
        os.path.join(work_dir, 'export'),
        FLAGS.exported,
        calibration_images=calibration,
        log=_quiet,
    )
    outputs = {}
    for kind in FLAGS.exported:
        # As eval_ssd_network.py opens it: OpenVINO in throughput mode.
        detector = detection.open_exported_model(
            written[kind],
            openvino_precision=FLAGS.openvino_precision,
            num_threads=FLAGS.num_threads,
            openvino_requests=0,
        )
        try:
            outputs[kind] = [detector.run_padded(*batch) for batch in raw]
            forward, result, extra = _alternate(
                lambda: _rate(detector.run_padded, raw),
                lambda: eval_exported.evaluate_exported(
                    settings,
                    detector,
                    written[kind],
                    os.path.join(work_dir, f'eval_{kind}'),
                    log=_quiet,
                    description={'kind': kind},
                ),
            )
        finally:
            detector.close()
        rows.append(
            _row(
                model,
                kind,
                forward,
                result,
                precision=getattr(detector, 'precision', card.compute_dtype),
                **extra,
            )
        )
    # Random weights tie scores everywhere (which of the tied detections is kept is arbitrary):
    # parity means something on a trained model only.
    if FLAGS.checkpoint_path and {'frozen_graph', 'openvino'} <= set(outputs):
        report = parity.Parity(tol=FLAGS.parity_tol)
        for got, want in zip(outputs['openvino'], outputs['frozen_graph']):
            report.add(got, want)
        row = next(r for r in rows if r['source'] == 'openvino')
        print(
            f'{model}: OpenVINO ({row["precision"]}) vs the frozen graph: {report.summary()}',
            flush=True,
        )
        row['parity_with_frozen_graph'] = dataclasses.asdict(report)
    return rows


def main(_):
    logs.absl_only()  # one line per TF record, not two
    logs.drop_tensorflow_messages(*export.TF_CHATTER)  # restores of the exported checkpoint
    tf.compat.v1.disable_eager_execution()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        if FLAGS.checkpoint_path:
            if not FLAGS.dataset_dir:
                logs.exit_error('--checkpoint_path needs --dataset_dir (its records).')
            prefix = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
            card = card_lib.load(card_lib.find_for_checkpoint(FLAGS.checkpoint_path))
            rows += bench(card.model_name + ' (trained)', card, prefix, FLAGS.dataset_dir, root)
        else:
            # The synthetic generator puts a quarter of the images in the test split.
            _, records_dir, class_names = eval_fixtures.make_synthetic_records(
                root, num_images=4 * FLAGS.num_images
            )
            for model in FLAGS.models:
                prefix = eval_fixtures.write_random_checkpoint(
                    os.path.join(root, model, 'model.ckpt'),
                    model,
                    len(class_names) + 1,
                    1,
                    spread_out=False,
                )
                card = eval_fixtures.small_card(model, class_names)
                rows += bench(model, card, prefix, records_dir, os.path.join(root, model))
    if FLAGS.output:
        device = 'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'
        atomic_io.write_json_atomic(
            FLAGS.output,
            {
                'device': device,
                'weights': 'trained' if FLAGS.checkpoint_path else 'random',
                'load_average_at_end': [round(x, 2) for x in os.getloadavg()],
                'int8_calibration_split': FLAGS.calibration_split_name or FLAGS.dataset_split_name,
                'results': rows,
            },
        )


if __name__ == '__main__':
    logs.run(main)  # --help exits 0, Ctrl-C is one line
