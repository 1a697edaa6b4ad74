"""Evaluates SSD checkpoints: VOC07/VOC12 mAP (devkit rules) and COCO AP.

One checkpoint (a prefix, one of its files, or a directory -> its latest):
  python eval_ssd_network.py --checkpoint_path=train/model.ckpt-120000 --eval_dir=eval \
      --dataset_name=pascalvoc_2007 --dataset_split_name=test --dataset_dir=tfrecords \
      --model_name=ssd_300_vgg
Beside a trainer, every checkpoint it writes, once each (see evaluation/watcher.py):
  python eval_ssd_network.py --wait_for_checkpoints --checkpoint_path=train --eval_dir=eval \
      ... --num_threads=2 --eval_timeout=3600 --final_step=120000
A converted Caffe model: add --model_config=model.ckpt.json (written by caffe_to_tensorflow.py):
its SSD params, DetectionOutput thresholds (unless given as flags) and input normalisation.

Outputs in --eval_dir: results.json/.txt, comp4_det_<split>_<class>.txt, coco_*.json (with
--metrics=coco), pr_curves/, TensorBoard scalars (see evaluation/evaluate.py).
"""
import sys

from absl import app
from absl import flags
import tensorflow as tf

from model import checkpoints
from evaluation import evaluate
from evaluation import input as eval_input
from evaluation import outputs as eval_outputs
from tf_extended import logs
from evaluation import watcher
from nets import ssd_common

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint_path', None, 'Checkpoint prefix or file, or a directory (its latest; '
                                             'the watched folder with --wait_for_checkpoints).')
flags.DEFINE_string('eval_dir', None, 'Where results and summaries are written.')
flags.DEFINE_string('dataset_name', 'pascalvoc_2007', 'Dataset registry name.')
flags.DEFINE_string('dataset_split_name', 'test', 'Split to evaluate.')
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_string('model_name', 'ssd_300_vgg', 'Net registry name.')
flags.DEFINE_integer('num_classes', None, 'Classes including background (default: the dataset\'s).')
flags.DEFINE_integer('batch_size', 32, 'Images per batch.', lower_bound=1)
flags.DEFINE_integer('max_num_batches', None, 'Evaluate only this many batches (default: all).')
flags.DEFINE_float('select_threshold', 0.01, 'Minimum class score of a detection.')
flags.DEFINE_integer('select_top_k', 400, 'Candidates per class before NMS.')
flags.DEFINE_integer('keep_top_k', 200, 'Detections per image after NMS (across classes).')
flags.DEFINE_float('nms_threshold', 0.45, 'NMS IoU threshold.')
flags.DEFINE_float('matching_threshold', 0.5, 'IoU threshold of a true positive (VOC).')
flags.DEFINE_enum('iou_rule', '>=', ['>=', '>'], "'>=': the VOC devkit; '>': common Python ports.")
flags.DEFINE_enum('eval_resize', 'WARP_RESIZE', list(eval_input.BATCHABLE_RESIZE_MODES),
                  'Evaluation resize mode of the preprocessing.')
flags.DEFINE_boolean('remove_difficult', True, 'Ignore difficult objects in the metrics (devkit); '
                                               'false counts them as ordinary objects.')
flags.DEFINE_float('moving_average_decay', None, 'Restore the exponential moving averages of the '
                                                 'weights (the decay used in training).')
flags.DEFINE_float('gpu_memory_fraction', None, 'Per-process GPU memory fraction (default: grow).')
flags.DEFINE_list('metrics', ['voc07', 'voc12'], 'Any of voc07, voc12, coco.')
flags.DEFINE_integer('num_threads', None, 'Intra/inter-op and tf.data threads (run beside training).',
                     lower_bound=1)
flags.DEFINE_string('model_config', None, 'JSON written by caffe_to_tensorflow.py beside a converted '
                                          'checkpoint (SSD params, detection thresholds, normalisation).')
flags.DEFINE_float('depth_multiplier', None, 'MobileNet width multiplier (default: the model\'s).')
flags.DEFINE_enum('data_format', 'NHWC', ['NHWC', 'NCHW'], 'Layout of the net (NCHW: GPU only).')
flags.DEFINE_enum('compute_dtype', 'float32', list(ssd_common.COMPUTE_DTYPES),
                  'Arithmetic of the net: bfloat16 for CPUs with AVX-512 BF16 or AMX, float16 for '
                  'GPUs (scores, decoding and NMS stay float32).')
flags.DEFINE_boolean('pr_curves', True, 'Write per-class precision/recall PNGs.')
flags.DEFINE_boolean('wait_for_checkpoints', False, 'Watch --checkpoint_path (a directory) and '
                                                    'evaluate each new checkpoint once.')
flags.DEFINE_float('eval_interval_secs', 60., 'Watcher: seconds between scans of the directory.')
flags.DEFINE_float('eval_timeout', None, 'Watcher: stop after this many seconds without a new checkpoint.')
flags.DEFINE_integer('final_step', None, 'Watcher: stop once the checkpoint of this step (the '
                                         'trainer\'s last) is evaluated.')
flags.DEFINE_alias('max_number_of_steps', 'final_step')
flags.DEFINE_enum('best_metric', 'voc07', list(eval_outputs.METRICS), 'Watcher: metric choosing '
                                                                      'eval_dir/best.')
flags.mark_flags_as_required(['checkpoint_path', 'eval_dir', 'dataset_dir'])


def _settings():
    params, detection, normalisation = {}, {}, {}
    model_name = FLAGS.model_name
    if FLAGS.model_config:
        config = evaluate.load_model_config(FLAGS.model_config)
        if config['model_name'] and config['model_name'] != model_name:
            if FLAGS['model_name'].present:
                raise ValueError(f'--model_name={model_name} but {FLAGS.model_config} is for '
                                 f'{config["model_name"]}.')
            model_name = config['model_name']
        params = config['ssd_params']
        # Thresholds given on the command line win over the converted model's.
        detection = {k: v for k, v in config['detection'].items() if not FLAGS[k].present}
        normalisation = config['preprocessing']
    if FLAGS.depth_multiplier is not None:
        params['depth_multiplier'] = FLAGS.depth_multiplier
    options = dict(
        model_name=model_name, dataset_name=FLAGS.dataset_name,
        dataset_split_name=FLAGS.dataset_split_name, dataset_dir=FLAGS.dataset_dir,
        num_classes=FLAGS.num_classes, batch_size=FLAGS.batch_size,
        max_num_batches=FLAGS.max_num_batches, select_threshold=FLAGS.select_threshold,
        select_top_k=FLAGS.select_top_k, keep_top_k=FLAGS.keep_top_k,
        nms_threshold=FLAGS.nms_threshold, matching_threshold=FLAGS.matching_threshold,
        iou_rule=FLAGS.iou_rule, eval_resize=FLAGS.eval_resize,
        remove_difficult=FLAGS.remove_difficult, moving_average_decay=FLAGS.moving_average_decay,
        metrics=tuple(FLAGS.metrics), params_overrides=tuple(sorted(params.items())),
        data_format=FLAGS.data_format, num_threads=FLAGS.num_threads,
        gpu_memory_fraction=FLAGS.gpu_memory_fraction, pr_curves=FLAGS.pr_curves,
        compute_dtype=FLAGS.compute_dtype)
    options.update(detection)
    options.update(normalisation)
    return evaluate.EvalSettings(**options)


def main(_):
    logs.absl_only()
    tf.compat.v1.disable_eager_execution()
    try:
        settings = _settings()
        if FLAGS.wait_for_checkpoints:
            watcher.watch(settings, FLAGS.checkpoint_path, FLAGS.eval_dir,
                          interval_secs=FLAGS.eval_interval_secs, timeout_secs=FLAGS.eval_timeout,
                          final_step=FLAGS.final_step, best_metric=FLAGS.best_metric)
        else:
            prefix = checkpoints.resolve_checkpoint(FLAGS.checkpoint_path)
            evaluate.evaluate_checkpoint(settings, prefix, FLAGS.eval_dir, summary_dir=FLAGS.eval_dir)
    except (ValueError, FileNotFoundError, evaluate.CheckpointUnavailable) as err:
        sys.exit(f'eval_ssd_network: error: {err}')


if __name__ == '__main__':
    app.run(main)
