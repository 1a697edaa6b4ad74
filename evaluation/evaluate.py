"""Evaluation of one checkpoint: one graph, one session, metrics streamed per batch.

    settings = EvalSettings(model_name='ssd_300_vgg', dataset_name='pascalvoc_2007',
                            dataset_split_name='test', dataset_dir='/data/tfrecords')
    result = evaluate_checkpoint(settings, '/train/model.ckpt-1000', results_dir='/eval')

The graph: tf.data input (`evaluation.input`), the net, `detected_bboxes` (Caffe
DetectionOutput: per-class `select_top_k` then NMS, `keep_top_k` per image), and the detections
mapped back to the original image through `bbox_img`. Each fetched batch goes, image by image,
to `VOCEvaluator.add_image` (original image shape, relative boxes -> devkit pixels), to the
devkit results files and, for COCO, to a compact per-image list. Memory stays bounded for VOC;
COCO keeps the detections until pycocotools runs (it needs them all).

`results_dir` receives (atomically, see `eval_outputs.publish_dir`):
  results.json   summary: checkpoint, global step, settings, metrics, per-class APs and rows;
  results.txt    the per-class tables (VOC; with 'coco', COCO AP@[.5:.95] and AP@.5 by class);
  comp4_det_<split>_<class>.txt   devkit results files (1-based pixels);
  coco_detections.json, coco_ground_truth.json   when 'coco' is in the metrics;
  pr_curves/pr_<class>.png;
and the TensorBoard scalars (mAPs and per-class APs) go to `summary_dir` at the checkpoint's
global step.
"""
import dataclasses
import json
import os
import re
import shutil
import time
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from evaluation import input as eval_input
from evaluation import outputs as eval_outputs
from nets import nets_factory
from nets import ssd_common
from nets import ssd_params as ssd_params_lib
from preprocessing import preprocessing_factory
from preprocessing.ssd_preprocessing import SSDPreprocessing
from tf_extended import atomic_io
from tf_extended import coco_metrics
from tf_extended import voc_metrics

v1 = tf.compat.v1

# Keys of a model config's "detection" part (caffe_to_tensorflow.py) -> EvalSettings fields.
DETECTION_CONFIG_KEYS = {'confidence_threshold': 'select_threshold', 'nms_threshold': 'nms_threshold',
                         'top_k': 'select_top_k', 'keep_top_k': 'keep_top_k'}


class CheckpointUnavailable(Exception):
    """The checkpoint's files are gone (deleted by the trainer's max_to_keep) or unreadable."""


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Everything an evaluation needs besides the checkpoint (flags of eval_ssd_network.py).

    params_overrides: SSDParams fields replacing the model's defaults (a converted model's
      `ssd_params`, `depth_multiplier`, ...). mean_rgb / scale: input normalisation overriding the
      model's preprocessing (a converted model's `preprocessing`), both or neither.
    remove_difficult: True: difficult objects are ignored by the metrics (the devkit's rule);
      False: they count as ordinary objects (the older TF port's meaning of the flag).
    compute_dtype: the net's arithmetic, one of `ssd_common.COMPUTE_DTYPES` (see
      `SSDNet.predict`); decoding and NMS run in float32.
    """
    model_name: str
    dataset_name: str
    dataset_split_name: str
    dataset_dir: str
    num_classes: Optional[int] = None
    batch_size: int = 32
    max_num_batches: Optional[int] = None
    select_threshold: float = 0.01
    select_top_k: int = 400
    keep_top_k: int = 200
    nms_threshold: float = 0.45
    matching_threshold: float = 0.5
    iou_rule: str = '>='
    eval_resize: str = 'WARP_RESIZE'
    remove_difficult: bool = True
    moving_average_decay: Optional[float] = None
    metrics: Tuple[str, ...] = ('voc07', 'voc12')
    params_overrides: Tuple[Tuple[str, object], ...] = ()
    mean_rgb: Optional[Tuple[float, float, float]] = None
    scale: Optional[float] = None
    data_format: str = 'NHWC'
    num_threads: Optional[int] = None
    gpu_memory_fraction: Optional[float] = None
    pr_curves: bool = True
    progress_secs: float = 10.
    compute_dtype: str = 'float32'

    def __post_init__(self):
        unknown = sorted(set(self.metrics) - set(eval_outputs.METRICS))
        if unknown or not self.metrics:
            raise ValueError(f'metrics must be a non-empty subset of {eval_outputs.METRICS}, got '
                             f'{list(self.metrics)}.')
        if self.compute_dtype not in ssd_common.COMPUTE_DTYPES:
            raise ValueError(f'compute_dtype {self.compute_dtype!r} is not one of '
                             f'{ssd_common.COMPUTE_DTYPES}.')
        if (self.mean_rgb is None) != (self.scale is None):
            raise ValueError('mean_rgb and scale override the input normalisation together; give both '
                             'or neither.')


@dataclasses.dataclass(frozen=True, eq=False)
class EvalResult:
    """checkpoint: the prefix evaluated; metrics: {'voc07'|'voc12'|'coco': value or None};
    class_ap: {'voc07'|'voc12'|'coco': {class: AP or None}} for the requested metrics ('coco':
    AP@[.5:.95]); voc: the VOCResult; coco: the 12 COCO numbers or None; summary: the content of
    results.json (its 'classes' rows also hold the COCO AP@.5 per class)."""
    checkpoint: str
    global_step: int
    num_images: int
    seconds: float
    metrics: Dict[str, Optional[float]]
    class_ap: Dict[str, Dict[str, Optional[float]]]
    voc: voc_metrics.VOCResult
    coco: Optional[Dict[str, Optional[float]]]
    summary: dict


def load_model_config(path):
    """Reads the JSON `caffe_to_tensorflow.py` writes beside a converted checkpoint.

    Returns:
      dict with 'model_name' (or None), 'ssd_params' (SSDParams overrides), 'detection'
      ({EvalSettings field: value}) and 'preprocessing' ({'mean_rgb', 'scale'} or {}).
    """
    try:
        with open(path, encoding='utf-8') as fh:
            config = json.load(fh)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f'--model_config {path!r}: cannot read it as JSON ({err}).') from None
    detection = config.get('detection') or {}
    unknown = sorted(set(detection) - set(DETECTION_CONFIG_KEYS))
    if unknown:
        raise ValueError(f'{path}: unknown "detection" keys {unknown}; known: {sorted(DETECTION_CONFIG_KEYS)}.')
    preprocessing = config.get('preprocessing') or {}
    return {
        'model_name': config.get('model_name'),
        'ssd_params': dict(config.get('ssd_params') or {}),
        'detection': {DETECTION_CONFIG_KEYS[k]: v for k, v in detection.items()},
        'preprocessing': ({'mean_rgb': tuple(float(m) for m in preprocessing['mean_rgb']),
                           'scale': float(preprocessing['scale'])}
                          if 'mean_rgb' in preprocessing else {}),
    }


def build_net(settings, num_classes):
    """The SSD net instance: the model's default params, the overrides, then `num_classes`."""
    cls = nets_factory.get_network(settings.model_name)
    params = ssd_params_lib.params_from_dict(cls.default_params, dict(settings.params_overrides))
    return cls(params._replace(num_classes=num_classes))


def build_detections(net, batch, settings):
    """Net forward pass + post-processing on `batch['image']`.

    Returns `detected_bboxes`' dict (boxes relative to the network input).
    """
    with slim.arg_scope(net.arg_scope(weight_decay=0., data_format=settings.data_format)):
        predictions, localisations = net.predict(batch['image'], settings.compute_dtype)
    return net.detected_bboxes(predictions, localisations, select_threshold=settings.select_threshold,
                               nms_threshold=settings.nms_threshold, top_k=settings.select_top_k,
                               keep_top_k=settings.keep_top_k)


def checkpoint_step(prefix):
    """The checkpoint's `global_step` variable, else its `-<step>` name suffix, else 0."""
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, OSError, ValueError) as err:
        raise CheckpointUnavailable(f'{prefix}: cannot read the checkpoint ({err}).') from None
    if reader.has_tensor('global_step'):
        return int(reader.get_tensor('global_step'))
    step = checkpoint_step_from_name(prefix)
    return 0 if step is None else step


def checkpoint_step_from_name(prefix):
    """The `-<step>` suffix of a checkpoint prefix (`model.ckpt-1000` -> 1000), or None."""
    match = re.search(r'-(\d+)$', prefix)
    return int(match.group(1)) if match else None


def variables_to_restore(moving_average_decay):
    """{checkpoint name: variable} of the graph's variables; with a decay, trainable variables read
    their exponential moving averages (`<name>/ExponentialMovingAverage`)."""
    if moving_average_decay:
        return v1.train.ExponentialMovingAverage(moving_average_decay).variables_to_restore()
    return {v.op.name: v for v in v1.global_variables()}


def check_restorable(prefix, var_map, model_name):
    """Raises ValueError naming missing or mis-shaped variables before the Saver fails obscurely."""
    try:
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    except (tf.errors.OpError, OSError, ValueError) as err:
        raise CheckpointUnavailable(f'{prefix}: cannot read the checkpoint ({err}).') from None
    missing = sorted(name for name in var_map if name not in shapes)
    wrong = sorted(f'{name}: checkpoint {shapes[name]}, graph {var.shape.as_list()}'
                   for name, var in var_map.items()
                   if name in shapes and list(shapes[name]) != var.shape.as_list())
    if missing or wrong:
        hint = ('; the checkpoint has no moving averages: leave --moving_average_decay unset'
                if any(n.endswith('/ExponentialMovingAverage') for n in missing) else
                f'; check --model_name ({model_name}), --num_classes and the model config')
        raise ValueError(f'{prefix} does not fit the evaluation graph: {len(missing)} variable(s) '
                         f'missing (e.g. {missing[:3]}), {len(wrong)} of another shape '
                         f'(e.g. {wrong[:3]}){hint}.')


def session_config(num_threads=None, gpu_memory_fraction=None):
    """ConfigProto limiting CPU threads and GPU memory so an evaluation can run beside training."""
    config = v1.ConfigProto(allow_soft_placement=True)
    if num_threads:
        config.intra_op_parallelism_threads = int(num_threads)
        config.inter_op_parallelism_threads = int(num_threads)
    if gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = float(gpu_memory_fraction)
    else:
        config.gpu_options.allow_growth = True
    return config


def image_key(filename, index):
    """The VOC image id of an example: its file name without extension, else its 1-based index."""
    stem = os.path.splitext(filename.decode('utf-8') if isinstance(filename, bytes) else filename)[0]
    return stem or f'{index:06d}'


class _CocoCollector:
    """Keeps per image the COCO ground truth and detections until pycocotools runs.

    Image ids: the record's COCO id when it has one, else the VOC id as an integer when it is all
    digits, else the 1-based position in the evaluation order.
    """

    def __init__(self, class_names, label_to_category):
        self._label_to_category = label_to_category
        self._categories = [{'id': label_to_category[label], 'name': name}
                            for label, name in class_names.items()]
        self._images, self._annotations, self._detections = [], [], []
        self._ids = set()

    def add_image(self, key, index, coco_id, shape, gt_boxes, gt_labels, gt_crowd, boxes, scores,
                  labels):
        if coco_id < 0:
            coco_id = int(key) if key.isdigit() else index
        if coco_id in self._ids:
            raise ValueError(f'COCO image id {coco_id} (image {key!r}) is used twice; the dataset needs '
                             f'unique COCO ids or VOC ids.')
        self._ids.add(coco_id)
        self._images.append({'id': coco_id, 'file_name': key, 'height': int(shape[0]),
                             'width': int(shape[1])})
        for box, label, crowd in zip(coco_metrics.coco_boxes_from_relative(gt_boxes, shape).tolist(),
                                     gt_labels.tolist(), gt_crowd.tolist()):
            self._annotations.append({'image_id': coco_id, 'category_id': self._label_to_category[label],
                                      'bbox': box, 'area': box[2] * box[3], 'iscrowd': int(crowd),
                                      'id': len(self._annotations) + 1})
        self._detections += coco_metrics.coco_detections(coco_id, boxes, scores, labels, shape,
                                                          self._label_to_category)

    def ground_truth(self):
        return {'images': self._images, 'annotations': self._annotations,
                'categories': self._categories}

    @property
    def detections(self):
        return self._detections


def _label_to_category(dataset):
    classes = (dataset.metadata or {}).get('classes', [])
    if classes and all('coco_category_id' in c for c in classes):
        return {int(c['id']): int(c['coco_category_id']) for c in classes}
    return {label: label for label in range(1, dataset.num_classes)}


def _class_row(c, coco_result):
    """The results.json row of class `c` (a VOC per-class result): its VOC counts and APs, and
    with COCO its AP@[.5:.95] ('ap_coco') and AP@.5 ('ap50_coco'), None without COCO ground truth."""
    row = {'label': c.label, 'name': c.name, 'num_gt': c.num_gt, 'num_difficult': c.num_difficult,
           'num_detections': c.num_detections, 'num_tp': c.num_tp, 'num_fp': c.num_fp,
           'num_ignored': c.num_ignored, 'ap_voc07': c.ap_voc07, 'ap_voc12': c.ap_voc12}
    if coco_result is not None:
        row.update(ap_coco=coco_result.class_ap[c.name], ap50_coco=coco_result.class_ap50[c.name])
    return row


def _progress(log, done, total, start):
    elapsed = max(time.time() - start, 1e-9)
    log(f'[eval] {done}/{total} images, {done / elapsed:.1f} images/s, {elapsed:.0f} s')


def evaluate_checkpoint(settings, checkpoint_prefix, results_dir, summary_dir=None, log=None,
                        source=None):
    """Evaluates one checkpoint and writes its outputs (see the module docstring).

    Args:
      settings: EvalSettings.
      checkpoint_prefix: a checkpoint prefix (see `model.checkpoints.resolve_checkpoint`).
      results_dir: folder receiving the result files (created; files in it are replaced).
      summary_dir: folder of the TensorBoard event file (None: no summaries).
      log: callable taking one line (default: print to stdout).
      source: the checkpoint's name to record when `checkpoint_prefix` is a staged copy.
    Returns:
      EvalResult.
    Raises:
      CheckpointUnavailable: the checkpoint's files cannot be read (e.g. deleted meanwhile).
      ValueError: the checkpoint does not fit the graph, or bad data/settings (message says which).
    """
    log = log or (lambda line: print(line, flush=True))
    dataset = dataset_factory.get_dataset(settings.dataset_name, settings.dataset_split_name,
                                          settings.dataset_dir, num_classes=settings.num_classes)
    net = build_net(settings, settings.num_classes or dataset.num_classes)
    if net.params.num_classes != dataset.num_classes:
        raise ValueError(f'The net predicts {net.params.num_classes} classes (with background) but '
                         f'dataset {settings.dataset_name}/{settings.dataset_split_name} has '
                         f'{dataset.num_classes}; the class lists must agree.')
    class_names = {label: name for label, name in dataset.labels_to_names.items() if label > 0}
    if settings.mean_rgb is not None:
        preprocessing = SSDPreprocessing(settings.model_name, settings.mean_rgb, settings.scale)
    else:
        preprocessing = preprocessing_factory.get_preprocessing(settings.model_name)
    step = checkpoint_step(checkpoint_prefix)
    total = dataset.num_samples
    if settings.max_num_batches:
        total = min(total, settings.max_num_batches * settings.batch_size)

    graph = tf.Graph()
    with graph.as_default():
        batches = eval_input.make_eval_dataset(
            dataset, preprocessing, net.params.img_shape, settings.batch_size, settings.eval_resize,
            settings.max_num_batches, data_format=settings.data_format,
            num_threads=settings.num_threads)
        batch = v1.data.make_one_shot_iterator(batches).get_next()
        detections = build_detections(net, batch, settings)
        var_map = variables_to_restore(settings.moving_average_decay)
        check_restorable(checkpoint_prefix, var_map, settings.model_name)
        saver = v1.train.Saver(var_map)
        fetches = {key: batch[key] for key in ('shape', 'gt_bboxes', 'gt_labels', 'gt_difficult',
                                               'num_gt', 'filename', 'image_id')}
        fetches.update(boxes=eval_input.map_to_image(batch['bbox_img'], detections['detection_boxes']),
                       scores=detections['detection_scores'], labels=detections['detection_classes'],
                       num_detections=detections['num_detections'])
        graph.finalize()

    staging = eval_outputs.make_staging_dir(results_dir)
    try:
        evaluator = voc_metrics.VOCEvaluator(class_names, iou_threshold=settings.matching_threshold,
                                             iou_rule=settings.iou_rule)
        coco = _CocoCollector(class_names, _label_to_category(dataset)) if 'coco' in settings.metrics else None
        writer = voc_metrics.VOCResultsWriter(staging, settings.dataset_split_name, class_names)
        with writer, v1.Session(graph=graph, config=session_config(
                settings.num_threads, settings.gpu_memory_fraction)) as sess:
            try:
                saver.restore(sess, checkpoint_prefix)
            except (tf.errors.NotFoundError, tf.errors.DataLossError) as err:
                raise CheckpointUnavailable(f'{checkpoint_prefix}: restoring failed ({err.message}).') from None
            log(f'[eval] {os.path.basename(checkpoint_prefix)} (step {step}): {total} images of '
                f'{settings.dataset_name}/{settings.dataset_split_name}')
            start = last_report = time.time()
            done = 0
            while True:
                try:
                    out = sess.run(fetches)
                except tf.errors.OutOfRangeError:
                    break
                for i in range(len(out['num_gt'])):
                    done += 1
                    key = image_key(out['filename'][i], done)
                    g, n = out['num_gt'][i], out['num_detections'][i]
                    shape = out['shape'][i][:2]
                    gt = (out['gt_bboxes'][i, :g], out['gt_labels'][i, :g],
                          out['gt_difficult'][i, :g] if settings.remove_difficult else np.zeros(g))
                    det = (out['boxes'][i, :n], out['scores'][i, :n], out['labels'][i, :n])
                    evaluator.add_image(key, *gt, *det, image_shape=shape)
                    writer.add_image(key, *det, image_shape=shape)
                    if coco is not None:
                        coco.add_image(key, done, int(out['image_id'][i]), shape, *gt, *det)
                if time.time() - last_report >= settings.progress_secs:
                    _progress(log, done, total, start)
                    last_report = time.time()
            seconds = time.time() - start
            _progress(log, done, total, start)

        voc = evaluator.compute()
        coco_result = coco_values = None
        if coco is not None:
            ground_truth = coco.ground_truth()
            coco_result = coco_metrics.evaluate_coco_per_class(ground_truth, coco.detections)
            coco_values = coco_result.metrics
            coco_metrics.write_coco_results(os.path.join(staging, 'coco_detections.json'), coco.detections)
            atomic_io.write_json_atomic(os.path.join(staging, 'coco_ground_truth.json'), ground_truth)
        values = eval_outputs.metric_values(voc, coco_values, settings.metrics)
        class_ap = eval_outputs.per_class_ap(voc, None if coco_result is None else coco_result.class_ap,
                                             settings.metrics)
        summary = {
            'checkpoint': source or os.path.abspath(checkpoint_prefix),
            'global_step': step,
            'num_images': done,
            'seconds': seconds,
            'images_per_second': done / max(seconds, 1e-9),
            'metrics': values,
            'class_ap': class_ap,
            'coco': coco_values,
            'classes': [_class_row(c, coco_result) for c in voc.classes],
            'settings': dataclasses.asdict(settings),
        }
        table = voc.format_table()
        if coco_result is not None:
            table += '\n\n' + eval_outputs.format_coco_table(coco_result, class_names)
        atomic_io.write_json_atomic(os.path.join(staging, 'results.json'), summary)
        atomic_io.write_text_atomic(os.path.join(staging, 'results.txt'), table + '\n')
        if settings.pr_curves:
            eval_outputs.plot_pr_curves(voc, os.path.join(staging, 'pr_curves'))
        eval_outputs.publish_dir(staging, results_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(table)
    if summary_dir:
        eval_outputs.write_tensorboard(summary_dir, step, values, class_ap)
    return EvalResult(checkpoint=checkpoint_prefix, global_step=step, num_images=done, seconds=seconds,
                      metrics=values, class_ap=class_ap, voc=voc, coco=coco_values, summary=summary)
