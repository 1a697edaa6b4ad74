"""Evaluation of one checkpoint: one graph, one session, metrics streamed per batch.

    settings = EvalSettings(card=card.load('train/model.json'), dataset_name='pascalvoc_2007',
                            dataset_split_name='test', dataset_dir='/data/tfrecords')
    result = evaluate_checkpoint(settings, '/train/model.ckpt-1000', results_dir='/eval')

The graph: tf.data input (`evaluation.input`), the net, `detected_bboxes` (Caffe
DetectionOutput: per-class `top_k` then NMS, `keep_top_k` per image), and the detections
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
import os
import shutil
import time
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from evaluation import input as eval_input
from evaluation import outputs as eval_outputs
from model import card as card_lib
from model import checkpoints
from tf_extended import atomic_io
from tf_extended import coco_metrics
from tf_extended import voc_metrics

v1 = tf.compat.v1

@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Everything an evaluation needs besides the checkpoint (flags of eval_ssd_network.py).

    card: the model's `ModelCard` (net, anchors, normalisation, detection settings, compute
      dtype); card_path: the file it came from (None: built from flags), named in errors.
    remove_difficult: True: difficult objects are ignored by the metrics (the devkit's rule);
      False: they count as ordinary objects (the older TF port's meaning of the flag).
    """
    card: card_lib.ModelCard
    dataset_name: str
    dataset_split_name: str
    dataset_dir: str
    card_path: Optional[str] = None
    batch_size: int = 32
    max_num_batches: Optional[int] = None
    matching_threshold: float = 0.5
    iou_rule: str = '>='
    eval_resize: str = 'WARP_RESIZE'
    remove_difficult: bool = True
    moving_average_decay: Optional[float] = None
    metrics: Tuple[str, ...] = ('voc07', 'voc12')
    data_format: str = 'NHWC'
    num_threads: Optional[int] = None
    gpu_memory_fraction: Optional[float] = None
    pr_curves: bool = True
    progress_secs: float = 10.

    def __post_init__(self):
        unknown = sorted(set(self.metrics) - set(eval_outputs.METRICS))
        if unknown or not self.metrics:
            raise ValueError(f'metrics must be a non-empty subset of {eval_outputs.METRICS}, got '
                             f'{list(self.metrics)}.')

    def to_dict(self):
        """JSON-ready settings (the card as its JSON)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'card'}
        values['model_card'] = self.card.to_dict()
        return values


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


def build_detections(net, batch, settings):
    """Net forward pass + post-processing on `batch['image']`.

    Returns `detected_bboxes`' dict (boxes relative to the network input).
    """
    card = settings.card
    with slim.arg_scope(net.arg_scope(weight_decay=0., data_format=settings.data_format)):
        predictions, localisations = net.predict(batch['image'], card.compute_dtype)
    return net.detected_bboxes(predictions, localisations, **dataclasses.asdict(card.detection))


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


def _class_names(card, dataset):
    """{label: name} of labels 1..: the dataset's (its metadata names the ground truth), else the
    card's for records without metadata."""
    if dataset.metadata is None and card.class_names != card_lib.default_class_names(card.num_classes):
        return dict(enumerate(card.class_names, start=1))
    return {label: name for label, name in dataset.labels_to_names.items() if label > 0}


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
    card = settings.card
    dataset = dataset_factory.get_dataset(settings.dataset_name, settings.dataset_split_name,
                                          settings.dataset_dir, num_classes=card.num_classes)
    net = card.net()
    if card.num_classes != dataset.num_classes:
        raise ValueError(f'The net predicts {card.num_classes} classes (with background) but '
                         f'dataset {settings.dataset_name}/{settings.dataset_split_name} has '
                         f'{dataset.num_classes}; the class lists must agree.')
    class_names = _class_names(card, dataset)
    preprocessing = card.preprocessing()
    step = checkpoints.checkpoint_step(checkpoint_prefix)
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
        var_map = checkpoints.variables_to_restore(settings.moving_average_decay)
        checkpoints.check_restorable(checkpoint_prefix, var_map, settings.card_path)
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
        with writer, v1.Session(graph=graph, config=checkpoints.session_config(
                settings.num_threads, settings.gpu_memory_fraction)) as sess:
            try:
                saver.restore(sess, checkpoint_prefix)
            except (tf.errors.NotFoundError, tf.errors.DataLossError) as err:
                raise checkpoints.CheckpointUnavailable(f'{checkpoint_prefix}: restoring failed ({err.message}).') from None
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
            'settings': settings.to_dict(),
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
