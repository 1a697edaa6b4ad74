"""Evaluation of a checkpoint: one graph, one session, metrics streamed per batch.

    settings = EvalSettings(card=card.load('train/model.json'), dataset_name='pascalvoc_2007',
                            dataset_split_name='test', dataset_dir='/data/tfrecords')
    result = evaluate_checkpoint(settings, '/train/model.ckpt-1000', results_dir='/eval')
    with CheckpointEvaluator(settings) as evaluator:  # a series of checkpoints, one graph
        for prefix in prefixes:
            evaluator.evaluate(prefix, os.path.join('/eval', os.path.basename(prefix)))

The graph: tf.data input (`evaluation.input`), the net, `detected_bboxes` (Caffe
DetectionOutput: per-class `top_k` then NMS, `keep_top_k` per image), and the detections
mapped back to the original image through `bbox_img`. Each fetched batch goes to
`VOCEvaluator.add_batch` (original image shapes, relative boxes -> devkit pixels) and the
devkit results files when a VOC metric is asked for, and, for COCO, to a compact per-image list
(`_CocoCollector`: the ground truth is the annotation file's own, stored in the records, so the
numbers equal pycocotools on that file). Memory stays bounded for VOC; COCO keeps the detections
until pycocotools runs (it needs them all).

Class names can be anything (spaces, '/', non-ASCII): tables and JSON show them as they are;
file names use `tf_extended.file_names.safe_file_names` (one stem per class, collisions
resolved). The "label" column of every table (and 'label' in results.json rows) is the COCO
category id where the dataset has ids, else the model's label.

`results_dir` receives (atomically, see `eval_outputs.publish_dir`):
  results.json   summary: checkpoint, global step, settings, metrics, per-class APs and rows,
                 speed (seconds, images_per_second; first_batch_seconds and
                 steady_images_per_second, the rate after the first batch's warm-up;
                 input_cached_images, how many came decoded from the watcher's input cache),
                 and `output_files`, the files below that this evaluation wrote;
  results.txt    the per-class tables (VOC; with 'coco', COCO AP@[.5:.95] and AP@.5 by class);
  comp4_det_<split>_<stem>.txt   devkit results files (1-based pixels), with VOC metrics; the
                 image id column is the file stem (whitespace and '%' percent-encoded:
                 `voc_metrics.results_file_id`), or a COCO image's id (see `image_key`);
  coco_detections.json, coco_ground_truth.json   when 'coco' is in the metrics;
  pr_curves/pr_<stem>.png   with VOC metrics;
(the outputs an earlier evaluation's results.json lists that this one does not write are
removed, and files of these names that no results.json lists are refused before evaluating:
`eval_outputs.remove_earlier_outputs`, `eval_outputs.foreign_outputs`) and the TensorBoard
scalars (mAPs and per-class APs) go to `summary_dir` at the checkpoint's global step.
"""

import contextlib
import dataclasses
import os
import re
import shutil
import time
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
import tf_slim as slim

from datasets import dataset_factory
from evaluation import input as eval_input
from evaluation import input_cache
from evaluation import outputs as eval_outputs
from model import card as card_lib
from model import checkpoints
from model import cli
from tf_extended import atomic_io
from tf_extended import coco_metrics
from tf_extended import file_names
from tf_extended import safe_io
from tf_extended import signals
from tf_extended import texts
from tf_extended import tf_errors
from tf_extended import voc_metrics

v1 = tf.compat.v1


def check_metrics(metrics):
    """Raises ValueError naming --metrics for an empty `metrics` or one not in
    `eval_outputs.METRICS`, suggesting the closest."""
    cli.check_choices('--metrics', metrics, eval_outputs.METRICS, 'metric')


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Everything an evaluation needs besides the checkpoint (flags of eval_ssd_network.py).

    card: the model's `ModelCard` (net, anchors, normalisation, detection settings, compute
      dtype); card_path: the file it came from (None: built from flags), named in errors.
    remove_difficult: True: difficult objects are ignored by the metrics (the devkit's rule);
      False: they count as ordinary objects (the older TF port's meaning of the flag). COCO crowd
      regions are ignored either way (by the VOC metrics, and by COCOeval's crowd rule), and the
      COCO ground truth of records holding their COCO annotations does not depend on it.
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
    progress_secs: float = 10.0

    def __post_init__(self):
        check_metrics(self.metrics)

    def to_dict(self):
        """JSON-ready settings (the card as its JSON)."""
        values = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'card'
        }
        values['model_card'] = self.card.to_dict()
        return values


@dataclasses.dataclass(frozen=True, eq=False)
class EvalResult:
    """checkpoint: the prefix evaluated; metrics: {'voc07'|'voc12'|'coco': value or None};
    class_ap: {'voc07'|'voc12'|'coco': {class: AP or None}} for the requested metrics ('coco':
    AP@[.5:.95]); voc: the VOCResult, None without VOC metrics; coco: the 12 COCO numbers or None;
    summary: the content of results.json (its 'classes' rows also hold the COCO AP@.5 per
    class)."""

    checkpoint: str
    global_step: int
    num_images: int
    seconds: float
    metrics: Dict[str, Optional[float]]
    class_ap: Dict[str, Dict[str, Optional[float]]]
    voc: Optional[voc_metrics.VOCResult]
    coco: Optional[Dict[str, Optional[float]]]
    summary: dict


def build_detections(net, batch, settings):
    """Net forward pass + post-processing on `batch['image']`.

    Returns `detected_bboxes`' dict (boxes relative to the network input).
    """
    card = settings.card
    with slim.arg_scope(net.arg_scope(weight_decay=0.0, data_format=settings.data_format)):
        predictions, localisations = net.predict(batch['image'], card.compute_dtype)
    return net.detected_bboxes(predictions, localisations, **dataclasses.asdict(card.detection))


def image_key(filename, index, coco_id=-1):
    """The VOC image id of an example (the devkit files' first column): for a COCO image
    (`coco_id` >= 0) its COCO id zero-padded to 12 digits (COCO 2017's file stems:
    000000000139.jpg is id 139), unique and without whitespace whatever the file names (a COCO
    `file_name` may hold spaces, and `a/1.jpg`, `b/1.jpg` or one file listed under two ids share
    a stem); else its file name without extension, else its 1-based index."""
    if coco_id >= 0:
        return f'{int(coco_id):012d}'
    stem = os.path.splitext(filename.decode('utf-8') if isinstance(filename, bytes) else filename)[
        0
    ]
    return stem or f'{index:06d}'


_ANNOTATION_KEYS = ('id', 'category_id', 'bbox', 'area', 'iscrowd', 'index')


def _stored_annotations(text, coco_id, key):
    """The `image/coco/annotations` JSON of one record -> list of (file position, annotation dict
    for pycocotools). Raises ValueError naming the image when the JSON is not what the converter
    writes."""
    where = f'image {key!r} (COCO id {coco_id}): image/coco/annotations'
    try:
        entries = safe_io.parse_json(text.encode('utf-8'), where, 'annotations text')
    except ValueError as err:
        raise ValueError(f'{err} Convert the dataset again.') from None
    if not isinstance(entries, list):
        raise ValueError(f'{where} is not a list; convert the dataset again.')
    out = []
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and all(k in entry for k in _ANNOTATION_KEYS)
            and isinstance(entry['bbox'], list)
            and len(entry['bbox']) == 4
            and all(map(coco_metrics.is_finite_number, entry['bbox'] + [entry['area']]))
            and isinstance(entry['index'], int)
            and entry['iscrowd'] in (0, 1)
        ):
            raise ValueError(
                f'{where}: entry {entry!r} is not {{{", ".join(_ANNOTATION_KEYS)}}} with a '
                f'4-number bbox and finite numbers; convert the dataset again.'
            )
        out.append(
            (
                entry['index'],
                {
                    'id': entry['id'],
                    'image_id': coco_id,
                    'category_id': entry['category_id'],
                    'bbox': entry['bbox'],
                    'area': entry['area'],
                    'iscrowd': entry['iscrowd'],
                },
            )
        )
    return out


# A VOC id that is a COCO image id as it is: ASCII digits (str.isdigit takes '²', which int()
# refuses), at most 18 of them (an int64).
_DIGIT_ID = re.compile('[0-9]{1,18}')


class _CocoCollector:
    """Keeps per image the COCO ground truth and detections until pycocotools runs.

    Ground truth: from the record's `image/coco/annotations` when it has one (records of COCO
    files converted since that key exists): the annotation file's own annotations, in its order,
    with its ids, boxes (unclipped), areas and crowd flags, so the numbers equal pycocotools run on
    the original file; `remove_difficult` plays no part. Otherwise (VOC-style data, older COCO
    records) derived from the record's boxes: `coco_metrics.coco_ground_truth_boxes` (pixels
    rounded to 1/1000), area w*h, iscrowd = the crowd flag, or difficult when
    `remove_difficult` (the devkit's "ignore" is COCO's crowd), ids 1, 2, ... in evaluation order.

    Image ids: the record's COCO id when it has one; else the VOC id as an integer when it is
    ASCII digits (at most 18: an int64) and neither an image before it nor a record's COCO id has
    that number; the other images (ids of letters, `7` after `007`) get the numbers after the
    largest of those and of the COCO ids, in evaluation order (1, 2, ... where no id is a number;
    an evaluation of fewer batches, --max_num_batches, may number them otherwise). The numbers
    are given once every image is in: the position alone collided with a digit id (`3` and the
    third image `cat`).
    """

    def __init__(self, class_names, label_to_category, remove_difficult=True):
        self._label_to_category = label_to_category
        self._remove_difficult = remove_difficult
        self._categories = [
            {'id': label_to_category[label], 'name': name} for label, name in class_names.items()
        ]
        self._images, self._stored, self._derived = [], [], []
        # Per image: (its COCO id, or None where `_image_ids` numbers it) and its key.
        self._requested_ids = []
        # Per image (category ids, xywh, scores) arrays; the result dicts are built once, by
        # `detections`: 200 dicts per image built as it comes took 1.2 ms per image (the garbage
        # collector walking TensorFlow's objects as they pile up).
        self._detection_arrays, self._detections = [], None
        self._ids = set()
        self.num_derived_coco_images = 0  # COCO images (id >= 0) without stored annotations

    def add_image(
        self,
        key,
        index,
        coco_id,
        shape,
        gt_boxes,
        gt_labels,
        gt_difficult,
        gt_crowd,
        boxes,
        scores,
        labels,
        coco_annotations=b'',
        filename=b'',
    ):
        """`key`: the image_key; `filename`: the record's image/filename, a COCO image's
        `file_name` in the ground truth (the JSON's own); other images' `file_name` is `key`."""
        has_coco_id = coco_id >= 0
        if has_coco_id:
            if coco_id in self._ids:
                raise ValueError(
                    f'COCO image id {coco_id} (image {key!r}, record {index}) is used twice; the '
                    f'records must hold each COCO image once.'
                )
            self._ids.add(coco_id)
        slot = len(self._images)
        self._requested_ids.append((coco_id if has_coco_id else None, key))
        if isinstance(filename, bytes):
            filename = filename.decode('utf-8')
        self._images.append(
            {
                'file_name': (filename if has_coco_id else '') or key,
                'height': int(shape[0]),
                'width': int(shape[1]),
            }
        )
        if isinstance(coco_annotations, bytes):
            coco_annotations = coco_annotations.decode('utf-8')
        if coco_annotations and has_coco_id:  # a COCO image's own annotations
            self._stored += _stored_annotations(coco_annotations, coco_id, key)
        else:
            self.num_derived_coco_images += int(has_coco_id)
            crowd = np.asarray(gt_crowd, bool) | (
                np.asarray(gt_difficult, bool) & self._remove_difficult
            )
            for box, label, flag in zip(
                coco_metrics.coco_ground_truth_boxes(gt_boxes, shape).tolist(),
                gt_labels.tolist(),
                crowd.tolist(),
            ):
                self._derived.append(
                    {
                        'image_id': slot,  # the image's slot until `ground_truth` numbers it
                        'category_id': self._label_to_category[label],
                        'bbox': box,
                        'area': box[2] * box[3],
                        'iscrowd': int(flag),
                        'id': len(self._derived) + 1,
                    }
                )
        categories, xywh, scores = coco_metrics.coco_detection_arrays(
            boxes, scores, labels, shape, self._label_to_category, f'COCO detections of {key!r}'
        )
        self._detection_arrays.append(
            (np.full(len(scores), slot, np.int64), categories, xywh, scores)
        )
        self._detections = None

    def _image_ids(self):
        """[N] int64: each image's COCO id, by the rule of the class docstring."""
        ids = [coco_id for coco_id, _ in self._requested_ids]
        taken = set(self._ids)
        for slot, (coco_id, key) in enumerate(self._requested_ids):
            number = int(key) if _DIGIT_ID.fullmatch(key) else None
            if coco_id is None and number is not None and number not in taken:
                ids[slot] = number
                taken.add(number)
        following = max(taken, default=0) + 1
        for slot, coco_id in enumerate(ids):
            if coco_id is None:
                if following >= 1 << 63:
                    key = self._requested_ids[slot][1]
                    raise ValueError(
                        f'COCO image ids: image {key!r} (record {slot + 1}) would be numbered '
                        f'past {(1 << 63) - 1}, the largest id, which image ids of digits or COCO '
                        'ids take; rename the images or convert them with COCO ids.'
                    )
                ids[slot], following = following, following + 1
        return np.asarray(ids, np.int64).reshape(-1)

    def ground_truth(self):
        """The COCO dataset dict: images in evaluation order; stored annotations in the annotation
        file's order, then derived ones."""
        ids = self._image_ids().tolist()
        stored = [ann for _, ann in sorted(self._stored, key=lambda item: item[0])]
        return {
            'images': [dict(image, id=i) for image, i in zip(self._images, ids)],
            'annotations': stored
            + [dict(ann, image_id=ids[ann['image_id']]) for ann in self._derived],
            'categories': self._categories,
        }

    @property
    def detections(self):
        """The COCO result dicts of every image, in evaluation order."""
        if self._detections is None:
            self._detections = []
            if self._detection_arrays:
                slots, *arrays = map(np.concatenate, zip(*self._detection_arrays))
                self._detections = coco_metrics.coco_results(self._image_ids()[slots], *arrays)
        return self._detections


def _label_to_category(dataset):
    """{label: category id} from the dataset's metadata (COCO's or a label map's ids), else the
    identity."""
    ids = dataset_factory.category_ids(dataset.metadata)
    if ids is not None:
        return dict(enumerate(ids, start=1))
    return {label: label for label in range(1, dataset.num_classes)}


def _class_rows(class_names, label_ids, voc, coco_result, coco_counts):
    """The results.json rows, one per class in label order.

    'label': the id shown in every table (the category id, COCO's or a label map's, where the data
    has ids, else the model's label), 'model_label': the net's class index, 'name': the real name,
    'file_stem': the name as it appears in file names (`tf_extended.file_names`). With VOC metrics
    the VOC counts and APs; with COCO its AP@[.5:.95] ('ap_coco'), AP@.5 ('ap50_coco'), None
    without COCO ground truth, and the COCO ground-truth counts ('coco_num_gt' non-crowd,
    'coco_num_crowd').
    """
    stems = file_names.safe_file_names(class_names.values())
    voc_classes = {c.label: c for c in voc.classes} if voc is not None else {}
    rows = []
    for label, name in class_names.items():
        row = {
            'label': label_ids[label],
            'model_label': label,
            'name': name,
            'file_stem': stems[name],
        }
        c = voc_classes.get(label)
        if c is not None:
            row.update(
                num_gt=c.num_gt,
                num_difficult=c.num_difficult,
                num_detections=c.num_detections,
                num_tp=c.num_tp,
                num_fp=c.num_fp,
                num_ignored=c.num_ignored,
                ap_voc07=c.ap_voc07,
                ap_voc12=c.ap_voc12,
            )
        if coco_result is not None:
            num_gt, num_crowd, num_detections = coco_counts[label_ids[label]]
            row.update(
                ap_coco=coco_result.class_ap[name],
                ap50_coco=coco_result.class_ap50[name],
                coco_num_gt=num_gt,
                coco_num_crowd=num_crowd,
            )
            row.setdefault('num_detections', num_detections)
        rows.append(row)
    return rows


def _coco_counts(ground_truth, detections):
    """{category id: (non-crowd annotations, crowd annotations, detections)}."""
    counts = {c['id']: [0, 0, 0] for c in ground_truth['categories']}
    for ann in ground_truth['annotations']:
        if ann['category_id'] in counts:
            counts[ann['category_id']][1 if ann['iscrowd'] else 0] += 1
    for det in detections:
        counts[det['category_id']][2] += 1
    return {k: tuple(v) for k, v in counts.items()}


def _class_names(card, dataset):
    """{label: name} of labels 1..: the dataset's (its metadata names the ground truth), else the
    card's for records without metadata."""
    if dataset.metadata is None and card.class_names != card_lib.default_class_names(
        card.num_classes
    ):
        return dict(enumerate(card.class_names, start=1))
    return dict(enumerate(dataset.class_names, start=1))


def _progress(log, done, total, start):
    elapsed = max(time.time() - start, 1e-9)
    log(f'[eval] {done}/{total} images, {done / elapsed:.1f} images/s, {elapsed:.0f} s')


def evaluate_checkpoint(
    settings, checkpoint_prefix, results_dir, summary_dir=None, log=None, source=None
):
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
      tf_errors.RecordsError (a ValueError): reading the records failed; nothing was written.
    """
    with CheckpointEvaluator(settings) as evaluator:
        return evaluator.evaluate(checkpoint_prefix, results_dir, summary_dir, log, source)


def check_eval_dir(eval_dir, checkpoint_dir):
    """Refuses an --eval_dir that is the checkpoints' own folder (ValueError, one line).

    Its results, event file and (for the watcher) per-checkpoint results folders named like the
    checkpoints would mix with the training's: TensorBoard would show one run, and a folder
    `model.ckpt-N/` reads as a checkpoint's name."""
    if os.path.realpath(eval_dir) == os.path.realpath(checkpoint_dir):
        raise ValueError(
            f'--eval_dir {eval_dir} is the checkpoints\' folder; give a folder of its own, '
            f'e.g. {os.path.join(checkpoint_dir, "eval")}.'
        )


def trained_on(card, dataset):
    """True when the card's provenance says the model was trained on `dataset` (its split of
    the same records folder), in its first run or a resumed one (`provenance.resumed`)."""
    provenance = card.provenance if isinstance(card.provenance, dict) else {}
    resumes = provenance.get('resumed') if isinstance(provenance.get('resumed'), list) else []
    trained = [provenance.get('dataset')] + [
        r.get('dataset') for r in resumes if isinstance(r, dict)
    ]
    return any(
        isinstance(data, dict)
        and data.get('split') == dataset.split_name
        and isinstance(data.get('dir'), str)
        and os.path.realpath(data['dir']) == os.path.realpath(dataset.dataset_dir)
        for data in trained
    )


# VOC splits whose ids the other one holds: (part, whole).
_VOC_PARTS = {('train', 'trainval'), ('val', 'trainval')}


def _source_images(source):
    """The images a conversion's metadata `source` says its records hold: {('voc', folder,
    split)} (split None: every annotation of the folder) or {('coco', annotation file sha256,
    path)}; empty where it does not say."""
    if not isinstance(source, dict):
        return set()
    if source.get('dataset_name') == 'pascalvoc' and isinstance(source.get('dataset_dirs'), list):
        split = source.get('split')
        return {
            ('voc', os.path.realpath(d), split if isinstance(split, str) else None)
            for d in source['dataset_dirs']
            if isinstance(d, str)
        }
    digest = source.get('annotations_sha256')
    if isinstance(digest, str):
        return {('coco', digest, str(source.get('annotations_file')))}
    return set()


def _shared(trained, evaluated):
    """Whether two `_source_images` items hold the same images."""
    if trained[:2] != evaluated[:2]:
        return False
    if trained[0] == 'coco':
        return True
    a, b = trained[2], evaluated[2]
    return None in (a, b) or a == b or (a, b) in _VOC_PARTS or (b, a) in _VOC_PARTS


def _converted_from(item):
    if item[0] == 'coco':
        return f'the annotation file {item[2]}'
    split = f'--split={item[2]}' if item[2] else 'no --split: every annotation'
    return f'{item[1]} ({split})'


def shared_training_images(card, dataset):
    """(training records, the conversion they share with `dataset`'s) where the model's card
    names training records (other than `dataset`'s: `trained_on` tells those) whose metadata
    says they were converted from images of `dataset`'s split: the same VOC folder without
    --split, the same split or one that holds it (trainval and val), or the same COCO annotation
    file. None otherwise, or where the training records' metadata cannot be read."""
    evaluated = _source_images((dataset.metadata or {}).get('source'))
    if not evaluated:
        return None
    provenance = card.provenance if isinstance(card.provenance, dict) else {}
    resumes = provenance.get('resumed') if isinstance(provenance.get('resumed'), list) else []
    runs = [provenance.get('dataset')] + [r.get('dataset') for r in resumes if isinstance(r, dict)]
    for data in runs:
        if not isinstance(data, dict):
            continue
        source = dataset_factory.recorded_source(
            data.get('name'), data.get('split'), data.get('dir')
        )
        for trained in sorted(_source_images(source), key=str):
            for item in sorted(evaluated, key=str):
                if _shared(trained, item):
                    return data, trained, item
    return None


# Above it, the mAP no longer ranks (nearly) every detection as the VOC and COCO protocols do:
# Caffe SSD evaluates at 0.01 (test.prototxt), the TF Object Detection API at 1e-8; deploy
# files keep higher thresholds for display (MobileNet-SSD's 0.25).
MAP_SELECT_THRESHOLD = 0.05


def warn_select_threshold(card, exported):
    """Warns when the card's select_threshold (the one this evaluation applies) cuts detections
    the mAP protocols count: their objects are counted as missed."""
    threshold = card.detection.select_threshold
    if threshold <= MAP_SELECT_THRESHOLD:
        return
    fix = (
        'export the model again with --select_threshold=0.01 (an exported model keeps the '
        'threshold it was exported with)'
        if exported
        else 'pass --select_threshold=0.01'
    )
    logging.warning(
        'The mAP counts only detections scoring above select_threshold=%g (the model card\'s, '
        'e.g. a Caffe deploy file\'s display threshold): objects found with lower scores count '
        'as missed, which lowers the mAP. The VOC and COCO protocols rank every detection (Caffe '
        'SSD\'s test.prototxt evaluates at 0.01): for numbers comparable with published ones, %s.',
        threshold,
        fix,
    )


def open_dataset(settings, card):
    """(the DetectionDataset of `settings`' split, {label: class name} of labels 1..) for the
    model of `card`; warns when the model was trained on that split. Raises ValueError when the
    model and the dataset count other classes; warns for COCO metrics on records that left out
    images the converter skipped."""
    dataset = dataset_factory.get_dataset(
        settings.dataset_name,
        settings.dataset_split_name,
        settings.dataset_dir,
        num_classes=card.num_classes,
        model_class_names=card.class_names,
    )
    skipped = (
        ((dataset.metadata or {}).get('report') or {}).get('counts', {}).get('skipped_example', 0)
    )
    if skipped and 'coco' in settings.metrics:
        logging.warning(
            'The records of %s/%s leave out %d image(s) the converter skipped '
            '(--skip_bad_examples, listed in its metadata): the COCO numbers cover the records\' '
            'images; pycocotools on the annotation file would count their objects as missed.',
            settings.dataset_name,
            settings.dataset_split_name,
            skipped,
        )
    fitted = trained_on(card, dataset)
    shared = None if fitted else shared_training_images(card, dataset)
    if fitted:
        logging.warning(
            'Evaluating on %s/%s in %s, the split the model was trained on (its card says so): '
            'the mAP measures how it fits its training images, not how it does on new ones.',
            settings.dataset_name,
            settings.dataset_split_name,
            settings.dataset_dir,
        )
    elif shared:
        data, trained, item = shared
        logging.warning(
            'Evaluating on %s/%s in %s, whose images the model was trained on: its training '
            'records %s/%s in %s were converted from %s, these from %s (their metadata say so). '
            'The mAP counts images the model has seen; %s.',
            settings.dataset_name,
            settings.dataset_split_name,
            settings.dataset_dir,
            data.get('name'),
            data.get('split'),
            data.get('dir'),
            _converted_from(trained),
            _converted_from(item),
            'train on records converted with a --split that leaves these images out (VOC2007: '
            '--split=trainval, evaluated on test)'
            if trained[0] == 'voc'
            else 'evaluate on records of another annotation file (val2017 for a model trained '
            'on train2017)',
        )
    if card.num_classes != dataset.num_classes:
        raise ValueError(
            f'the model predicts {card.num_classes} classes (with background) but '
            f'dataset {settings.dataset_name}/{settings.dataset_split_name} has '
            f'{dataset.num_classes}; the class lists must agree.'
        )
    # Records with metadata name their classes; older ones only assume names.
    mismatch = dataset.metadata and card_lib.class_names_mismatch(card, dataset.class_names)
    if mismatch:
        model = f'The model (card {settings.card_path})' if settings.card_path else 'The model'
        raise card_lib.CardError(
            f'{model} and dataset {settings.dataset_name}/{settings.dataset_split_name} in '
            f'{settings.dataset_dir} {mismatch}. '
            + (
                'Evaluate on records converted with the model\'s labels file '
                '(tf_convert_data.py --labels_file, the names in the card\'s order)'
                if dataset_factory.coco_category_ids(dataset.metadata) is None
                else f'Evaluate a model of these classes ({dataset_factory.relabel_advice(dataset.metadata)})'
            )
            + ', or, where only the spelling differs, name the model\'s classes as the data does '
            'with --labels_file.'
        )
    return dataset, _class_names(card, dataset)


class CheckpointEvaluator:
    """`evaluate_checkpoint` for a series of checkpoints of one model (the eval watcher's): the
    graph is built and the session opened once, at the first `evaluate`, and each checkpoint is
    restored into them. Building the graph and warming the session up cost about 1.3 s of a
    3-4 s evaluation of 300 images (ssd_300_mobilenet, 2 cores), paid on every checkpoint
    otherwise. The session (the model's memory) stays open until `close`.

    With `input_cache_mb`, `fill_input_cache` (or else the first evaluation) keeps the split's
    first batches of network input (up to that many MiB) for the evaluations after it
    (`evaluation.input_cache`): same results, without decoding them again.
    """

    def __init__(self, settings, input_cache_mb=0):
        self.settings = settings
        self.graph = None
        self._session = None
        self._input_cache_bytes = int(input_cache_mb * 2**20)
        self._input_cache = None

    def _build(self):
        settings = self.settings
        card = settings.card
        dataset, self._class_names = open_dataset(settings, card)
        warn_select_threshold(card, exported=False)
        self._dataset = dataset
        self._input_cache = input_cache.InputCache(self._input_cache_bytes, dataset.files)
        net = card.net()
        graph = tf.Graph()
        with graph.as_default():
            self._skip = v1.placeholder_with_default(tf.constant(0, tf.int64), [], 'skip')
            batches = eval_input.make_eval_dataset(
                dataset,
                card.preprocessing(),
                net.params.img_shape,
                settings.batch_size,
                settings.eval_resize,
                settings.max_num_batches,
                data_format=settings.data_format,
                num_threads=settings.num_threads,
                skip=self._skip,
            )
            iterator = v1.data.make_initializable_iterator(batches)
            self._inputs = iterator.get_next()
            detections = build_detections(net, self._inputs, settings)
            self._var_map = checkpoints.variables_to_restore(settings.moving_average_decay)
            self._saver = v1.train.Saver(self._var_map)
            self._detections = dict(
                boxes=eval_input.map_to_image(
                    self._inputs['bbox_img'], detections['detection_boxes']
                ),
                scores=detections['detection_scores'],
                labels=detections['detection_classes'],
                num_detections=detections['num_detections'],
            )
            self._start = iterator.initializer
            graph.finalize()
        self.graph = graph

    def evaluate(self, checkpoint_prefix, results_dir, summary_dir=None, log=None, source=None):
        """`evaluate_checkpoint(self.settings, ...)`: same arguments, result and errors."""
        log = log or (lambda line: print(line, flush=True))
        if self.graph is None:
            self._build()
        settings = self.settings
        step = checkpoints.checkpoint_step(checkpoint_prefix)
        checkpoints.check_moving_averages(checkpoint_prefix, settings.moving_average_decay)
        checkpoints.check_restorable(checkpoint_prefix, self._var_map, settings.card_path)
        cache = self._input_cache
        changed = cache.check_records()
        if changed:
            log(changed)

        @contextlib.contextmanager
        def open_batches():
            sess = self._open_session()
            with self.graph.as_default():  # the Saver's restore runs in its graph
                checkpoints.restore(self._saver, sess, checkpoint_prefix)
            sess.run(self._start, {self._skip: cache.num_images})
            # The session runs one batch ahead in a thread: the metrics overlap the net.
            batches = eval_input.prefetch(
                lambda: cache.fetch_batches(sess, self._inputs, self._detections)
            )
            # An evaluation that failed part-way stops its thread now, not when the error is
            # forgotten: it would take batches of the next evaluation in this session.
            with contextlib.closing(batches):
                yield batches

        result = evaluate_batches(
            settings,
            self._dataset,
            self._class_names,
            open_batches,
            results_dir,
            header=f'{os.path.basename(checkpoint_prefix)} (step {step})',
            record={
                'checkpoint': source or os.path.abspath(checkpoint_prefix),
                # Fed from memory: a speed not comparable with a decoding evaluation's.
                'input_cached_images': cache.num_images,
            },
            checkpoint=checkpoint_prefix,
            step=step,
            summary_dir=summary_dir,
            log=log,
        )
        line = cache.commit(result.num_images)
        if line:
            log(line)
        return result

    def _open_session(self):
        if self._session is None:
            config = checkpoints.session_config(
                self.settings.num_threads, self.settings.gpu_memory_fraction
            )
            self._session = v1.Session(graph=self.graph, config=config)
        return self._session

    def fill_input_cache(self, log=None):
        """Fills the input cache before any evaluation, from the records alone (the network
        input does not depend on the weights): the eval watcher decodes the split before its
        first evaluation, so that its evaluations all take the input from memory. Does nothing
        when the cache is off or filled. Returns the cached images."""
        log = log or (lambda line: print(line, flush=True))
        if not self._input_cache_bytes:
            return 0
        if self.graph is None:
            self._build()
        cache = self._input_cache
        changed = cache.check_records()
        if changed:
            log(changed)
        if cache.filled:
            return cache.num_images
        log(
            f'[eval] input cache: decoding the split\'s first images, up to '
            f'{cache.budget_bytes / 2**20:g} MiB of network input, for the evaluations.'
        )
        sess = self._open_session()
        sess.run(self._start, {self._skip: 0})
        line = cache.fill(sess, self._inputs, _images_evaluated(self.settings, self._dataset))
        if line:
            log(line)
        return cache.num_images

    @property
    def input_cache_images(self):
        """Images whose network input the next evaluations take from the input cache."""
        return 0 if self._input_cache is None else self._input_cache.num_images

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Metrics:
    """The metrics of one evaluation, fed batch by batch: the VOC evaluator and devkit results
    files (only when VOC metrics are asked for), the COCO collector (with 'coco')."""

    def __init__(self, settings, class_names, label_to_category, staging):
        self.settings = settings
        self.evaluator = self.writer = self.coco = None
        if any(m in settings.metrics for m in ('voc07', 'voc12')):
            self.evaluator = voc_metrics.VOCEvaluator(
                class_names, iou_threshold=settings.matching_threshold, iou_rule=settings.iou_rule
            )
            self.writer = voc_metrics.VOCResultsWriter(
                staging, settings.dataset_split_name, class_names
            )
        if 'coco' in settings.metrics:
            self.coco = _CocoCollector(class_names, label_to_category, settings.remove_difficult)
        self.done = 0
        self._record_of = {}  # image key -> its record's number (1-based), to name both of a pair

    def add_batch(self, out):
        """One fetched batch: ground truth, original shapes and detections (relative boxes).

        Raises:
          ValueError naming both records when two are one image key and VOC metrics run (the
          results files name each image once; COCO numbers the two apart).
        """
        first = self.done
        keys = []
        for i in range(len(out['num_gt'])):
            keys.append(image_key(out['filename'][i], first + i + 1, int(out['image_id'][i])))
            if self.evaluator is not None:
                self._check_new_key(keys[-1], first + i + 1, out['filename'][i])
        self.done += len(keys)
        shapes = out['shape'][:, :2]
        difficult, crowd = out['gt_difficult'] > 0, out['gt_crowd'] > 0
        det = (out['boxes'], out['scores'], out['labels'], out['num_detections'])
        if self.evaluator is not None:
            # Crowd regions are always ignored; difficult objects with remove_difficult.
            ignored = crowd | (difficult & self.settings.remove_difficult)
            checked = self.evaluator.add_batch(
                keys, out['gt_bboxes'], out['gt_labels'], ignored, out['num_gt'], *det, shapes
            )
            # The writer takes the detections as the evaluator checked them (in pixels): one
            # check per batch; its messages name the image, the field and what it must hold.
            self.writer.add_checked(checked)
        if self.coco is not None:
            for i, key in enumerate(keys):
                g, n = out['num_gt'][i], out['num_detections'][i]
                self.coco.add_image(
                    key,
                    first + i + 1,
                    int(out['image_id'][i]),
                    shapes[i],
                    out['gt_bboxes'][i, :g],
                    out['gt_labels'][i, :g],
                    difficult[i, :g],
                    crowd[i, :g],
                    out['boxes'][i, :n],
                    out['scores'][i, :n],
                    out['labels'][i, :n],
                    out['coco_annotations'][i],
                    out['filename'][i],
                )

    def _check_new_key(self, key, record, filename):
        """Raises ValueError when an earlier record had image key `key` (see `add_batch`)."""
        earlier = self._record_of.setdefault(key, record)
        if earlier != record:
            if isinstance(filename, bytes):
                filename = filename.decode('utf-8', 'replace')
            settings = self.settings
            raise ValueError(
                f'{settings.dataset_dir}: records {earlier} and {record} of '
                f'{settings.dataset_name}/{settings.dataset_split_name} are both image {key!r} '
                f'(file name {filename!r}); the results files name each image once, so nothing '
                f'was written. A split list that names an id twice, or folders whose images share '
                f'names converted into one record set, give such records: convert again, the '
                f'folders into separate record sets or with their images renamed.'
            )

    def close(self):
        if self.writer is not None:
            self.writer.close()

    def abort(self):
        if self.writer is not None:
            self.writer.abort()


def _coco_outputs(coco, staging, log, records):
    """(COCO result, its 12 values, per-class counts) computed by pycocotools; writes the COCO
    detections and ground truth JSON into `staging`. `records`: the records' folder, named in
    errors about the ground truth they hold."""
    if coco.num_derived_coco_images:
        log(
            f'[eval] warning: {coco.num_derived_coco_images} COCO image(s) have no '
            f'image/coco/annotations (records converted before it existed): their COCO ground '
            f'truth comes from the clipped float32 boxes with w*h areas, so COCO numbers can '
            f'differ from pycocotools on the annotation file; convert the data again.'
        )
    ground_truth = coco.ground_truth()
    checked = coco_metrics.coco_ground_truth(
        ground_truth,
        f'{records} (the COCO annotations its records hold)',
        'convert the dataset again with tf_convert_data.py',
    )
    # One check of the detections for both the evaluation and the file.
    result = coco_metrics.evaluate_coco_per_class(
        checked,
        coco.detections,
        results_path=os.path.join(staging, 'coco_detections.json'),
    )
    atomic_io.write_json_atomic(os.path.join(staging, 'coco_ground_truth.json'), ground_truth)
    return result, result.metrics, _coco_counts(ground_truth, coco.detections)


def _read_records(batches, dataset):
    """`batches`, a failure of reading the records in them (`tf_errors.input_reason`) raised as a
    `tf_errors.RecordsError` naming them. The metrics' own errors are not seen here."""
    try:
        yield from batches
    except tf_errors.RUN_ERRORS as err:
        records_error = tf_errors.records_error(err, dataset)
        if records_error is None:
            raise
        raise records_error from None


def _images_evaluated(settings, dataset):
    """The images an evaluation covers: the split's, or its first --max_num_batches batches'."""
    total = dataset.num_samples
    if settings.max_num_batches:
        total = min(total, settings.max_num_batches * settings.batch_size)
    return total


def evaluate_batches(
    settings,
    dataset,
    class_names,
    open_batches,
    results_dir,
    *,
    header,
    record,
    checkpoint,
    step,
    summary_dir=None,
    log=None,
):
    """Feeds every batch to the metrics and writes the outputs (see the module docstring).

    Args:
      settings: EvalSettings (its card is the model's); dataset: the DetectionDataset;
        class_names: {label: name} of labels 1..
      open_batches: a context manager factory yielding an iterable of fetched batches (dicts of
        numpy arrays, possibly read-only ones of the input cache: shape, gt_bboxes, gt_labels,
        gt_difficult, gt_crowd, num_gt, filename, image_id, coco_annotations, and the
        detections boxes (relative to the original image), scores, labels, num_detections).
      header: what is evaluated, for the log; record: results.json's fields naming the model;
      checkpoint, step: EvalResult's (step None: no TensorBoard scalars).
    Returns:
      EvalResult.
    """
    log = log or (lambda line: print(line, flush=True))
    total = _images_evaluated(settings, dataset)
    label_to_category = _label_to_category(dataset)
    # The "label" column of every table: the category id (COCO's, a label map's) where the data
    # has ids.
    label_ids = {label: label_to_category.get(label, label) for label in class_names}
    # A failed evaluation leaves no results folder it created (the watcher's <checkpoint>/).
    created = not os.path.isdir(results_dir)
    staging = metrics = None
    try:
        with signals.held():  # a Ctrl-C or SIGTERM as it is made: it is removed below
            staging = eval_outputs.make_staging_dir(results_dir)
        metrics = _Metrics(settings, class_names, label_to_category, staging)
        with open_batches() as batches:
            log(
                f'[eval] {header}: {texts.counted(total, "image")} of '
                f'{settings.dataset_name}/{settings.dataset_split_name}'
            )
            start = last_report = time.time()
            first = None  # (time, images) at the first batch: graph warm-up comes before it
            for out in _read_records(batches, dataset):
                if first is None:
                    first = (time.time(), len(out['num_gt']))
                metrics.add_batch(out)
                if time.time() - last_report >= settings.progress_secs:
                    _progress(log, metrics.done, total, start)
                    last_report = time.time()
            seconds = time.time() - start
            steady = None
            if first is not None and metrics.done > first[1]:
                steady = (metrics.done - first[1]) / max(time.time() - first[0], 1e-9)
            _progress(log, metrics.done, total, start)
        done = metrics.done
        if not settings.max_num_batches and done != dataset.num_samples:
            raise ValueError(
                f'{settings.dataset_name}/{settings.dataset_split_name}: read {done} examples '
                f'but the dataset lists {dataset.num_samples}; nothing was written. The records '
                f'are incomplete or not those of the metadata (tf_convert_data.py --verify).'
            )
        metrics.close()
        voc = metrics.evaluator.compute() if metrics.evaluator is not None else None
        coco_result = coco_values = coco_counts = None
        if metrics.coco is not None:
            coco_result, coco_values, coco_counts = _coco_outputs(
                metrics.coco, staging, log, settings.dataset_dir
            )
        values = eval_outputs.metric_values(voc, coco_values, settings.metrics)
        class_ap = eval_outputs.per_class_ap(
            voc, None if coco_result is None else coco_result.class_ap, settings.metrics
        )
        summary = dict(
            record,
            global_step=step,
            num_images=done,
            seconds=seconds,
            images_per_second=done / max(seconds, 1e-9),
            # After the first batch (the warm-up: graph optimisation, first allocations): the
            # rate a long split runs at, comparable with a forward-pass benchmark.
            first_batch_seconds=None if first is None else first[0] - start,
            steady_images_per_second=steady,
            metrics=values,
            class_ap=class_ap,
            coco=coco_values,
            classes=_class_rows(class_names, label_ids, voc, coco_result, coco_counts),
            settings=settings.to_dict(),
        )
        tables = []
        if voc is not None:
            rules = [m for m in settings.metrics if m in voc_metrics.VOC_RULES]
            tables.append(voc.format_table(label_ids, rules))
        if coco_result is not None:
            tables.append(
                eval_outputs.format_coco_table(
                    coco_result, {label_ids[label]: name for label, name in class_names.items()}
                )
            )
        table = '\n\n'.join(tables)
        atomic_io.write_text_atomic(os.path.join(staging, 'results.txt'), table + '\n')
        if settings.pr_curves and voc is not None:
            eval_outputs.plot_pr_curves(voc, os.path.join(staging, 'pr_curves'))
        summary[eval_outputs.OUTPUT_FILES_KEY] = eval_outputs.staged_outputs(staging)
        atomic_io.write_json_atomic(os.path.join(staging, 'results.json'), summary)
        eval_outputs.remove_earlier_outputs(staging, results_dir, log)
        eval_outputs.publish_dir(staging, results_dir)
    except BaseException:
        if metrics is not None:
            metrics.abort()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created:
            with contextlib.suppress(OSError):  # not empty: another process wrote there
                os.rmdir(results_dir)
        raise
    log(table)
    if summary_dir and step is not None:
        eval_outputs.write_tensorboard(summary_dir, step, values, class_ap, coco_values)
    return EvalResult(
        checkpoint=checkpoint,
        global_step=step,
        num_images=done,
        seconds=seconds,
        metrics=values,
        class_ap=class_ap,
        voc=voc,
        coco=coco_values,
        summary=summary,
    )
