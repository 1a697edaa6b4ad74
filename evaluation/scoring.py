"""Offline scoring of detection files: devkit results files against a VOC folder, COCO results
JSON against an annotation file.

VOC ground truth is read from the XML as the devkit reads it: `object/name`, `object/difficult`
(missing or empty = 0) and `object/bndbox` in 1-based inclusive pixels, unclipped (`<part>`
boxes are not objects), by the converter's parser (`datasets.pascalvoc.annotation_objects`), so
both accept the same files, with the same messages.

Tie order. The devkit sorts each class's detections by score, ties in file order, and matches
them in that order. Each image's detections are matched in their score order (ties in file
order), which gives the devkit's matches, and the detections are ranked by score, then line in
the file (`VOCEvaluator.add_batch`'s det_ranks): the devkit's order, also in files whose images'
lines are not contiguous (e.g. sorted by score).
"""

import os
import re

from absl import logging
import numpy as np

from datasets import coco as coco_lib
from datasets import labels as labels_lib
from datasets import pascalvoc
from model import card as card_lib
from tf_extended import coco_metrics
from tf_extended import texts
from tf_extended import voc_metrics

# Padded cells (images x detection rows x ground-truth rows) of one add_batch call at most: bounds
# its arrays when an image has very many detections. Batches, not add_image per image: 12x faster
# (11 s for 20 classes x 4952 images, 140k detections).
_BATCH_CELLS = 1 << 20


def read_voc_ground_truth(annotation_path, class_ids):
    """One annotation's objects of known classes.

    Args:
      annotation_path: a VOC XML file.
      class_ids: {class name: label}.
    Returns:
      (boxes [G, 4] float64 `[ymin, xmin, ymax, xmax]` 1-based pixels, labels [G] int64,
      difficult [G] bool).
    Raises:
      ValueError naming the file and object for malformed XML or unknown class names (the
      converter's checks and messages: `pascalvoc.annotation_objects`); naming the file when it
      is not a regular file or larger than `pascalvoc.MAX_XML_BYTES`.
    """
    boxes, labels, difficult = [], [], []
    root = pascalvoc.read_annotation_xml(annotation_path)
    for obj in pascalvoc.annotation_objects(root, annotation_path):
        if obj.name not in class_ids:
            case = labels_lib.case_note(obj.name, class_ids)
            raise ValueError(
                f'{obj.where} has class {obj.name!r}, not among {sorted(class_ids)}'
                + (
                    f' (it {case}; class names are case-sensitive); fix the annotation\'s '
                    'spelling or pass a --labels_file that spells the class as the annotations do.'
                    if case
                    else '; pass --labels_file with the dataset\'s classes.'
                )
            )
        xmin, ymin, xmax, ymax = obj.box()
        boxes.append([ymin, xmin, ymax, xmax])
        labels.append(class_ids[obj.name])
        difficult.append(bool(obj.flag('difficult')))
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(difficult, bool),
    )


def _results_subfolders(folder, prefix):
    """The folders directly in `folder` that hold a file named `prefix...`, 'best' last, the
    others in natural order (model.ckpt-9 before model.ckpt-10)."""

    def names(path):
        try:
            return os.listdir(path)
        except OSError:  # not a folder, or unreadable
            return []

    found = [
        name
        for name in names(folder)
        if any(f.startswith(prefix) for f in names(os.path.join(folder, name)))
    ]
    return sorted(
        found,
        key=lambda n: (n == 'best', [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', n)]),
    )


def _other_results_files(results_dir, prefix, paths):
    """What the results files in `results_dir` of these classes (`paths`: the expected files,
    named `prefix<stem>.txt`) are named for, e.g. `comp4_det_val_<class>.txt (--competition=comp4
    --split=val)`; '' if none."""
    stems = {os.path.basename(path)[len(prefix) :] for path in paths}
    found = set()
    for name in os.listdir(results_dir):
        # The longest stem it ends with: `val_big_cat.txt` is big_cat's, not cat's (`val_big`).
        stem = max((s for s in stems if name.endswith('_' + s)), key=len, default=None)
        head = name[: -len(stem) - 1] if stem else ''
        if '_det_' in head:
            found.add(tuple(head.split('_det_', 1)))
    return ', '.join(
        f'{competition}_det_{split}_<class>.txt (--competition={competition} --split={split})'
        for competition, split in sorted(found)
    )


def score_voc_results(
    results_dir,
    voc_dir,
    split,
    class_names=labels_lib.VOC_CLASSES,
    competition='comp4',
    iou_threshold=0.5,
    iou_rule='>=',
    strict=False,
    log=None,
    remove_difficult=True,
):
    """Scores `<results_dir>/<competition>_det_<split>_<class>.txt` against a VOC folder (`<class>`:
    the class name made safe for file names, see `voc_metrics.voc_results_paths`).

    Args:
      results_dir: folder of the results files. A class without a file has no detections
        (tools skip the file of a class they never detected); `log` gets one warning saying how
        many classes had none, and one when every box lies within [0, 1] (relative coordinates
        in place of pixels). `strict`: a missing file is an error, as in the devkit.
      voc_dir: VOC folder with Annotations/ and ImageSets/Main/<split>.txt.
      split: the image set.
      class_names: class names in label order (label = index + 1).
      remove_difficult: difficult objects are ignored (the devkit); False: ordinary objects.
    Returns:
      voc_metrics.VOCResult.
    Raises:
      ValueError: `results_dir` is not a folder or holds no class's results file; a detection
        names an image that is not in the split.
      FileNotFoundError: `strict` and a class has no results file.
      safe_io.UnsafeFileError (an OSError): a results file is not a regular file or is larger
        than `voc_metrics.MAX_RESULTS_BYTES`.
    """
    names = {i + 1: name for i, name in enumerate(class_names)}
    class_ids = {name: label for label, name in names.items()}
    paths = voc_metrics.voc_results_paths(results_dir, split, names, competition)
    expected = (
        f'expected files named {competition}_det_{split}_<class>.txt (e.g. '
        f'{os.path.basename(paths[1])}); pass --results_dir the folder that holds them '
        f'(eval_ssd_network.py writes them to its --eval_dir)'
    )
    if not os.path.isdir(results_dir):
        state = 'is not a folder' if os.path.exists(results_dir) else 'does not exist'
        raise ValueError(f'{results_dir}: the results folder {state}; {expected}.')
    # The VOC folder first: a wrong --voc_dir was reported as results files missing.
    listed = pascalvoc.list_examples([voc_dir], split, outside_flag=False)
    sources = {s.image_id: s.annotation_path for s in listed}
    detections = voc_metrics.read_voc_results(
        results_dir, split, names, competition, missing_ok=not strict
    )
    missing = [names[label] for label, dets in detections.items() if dets.missing]
    if len(missing) == len(names):
        inside = _results_subfolders(results_dir, f'{competition}_det_{split}_')
        if inside:
            # An eval watcher's --eval_dir: one folder per checkpoint, and best/.
            raise ValueError(
                f'{results_dir}: no results file here, but its '
                f'folder{"s" if len(inside) > 1 else ""} {texts.listed(inside, 4)} '
                f'hold{"" if len(inside) > 1 else "s"} some '
                f'(an eval watcher\'s --eval_dir has one per checkpoint): pass one of them as '
                f'--results_dir, e.g. '
                f'--results_dir={os.path.join(results_dir, inside[-1])}.'
            )
        others = _other_results_files(results_dir, f'{competition}_det_{split}_', paths.values())
        raise ValueError(
            f'{results_dir}: no results file for any of the {len(names)} classes; {expected}, '
            + (
                f'and check --split and --competition: it holds {others}.'
                if others
                else 'and check --split, --competition and the class list.'
            )
        )
    if missing:
        (log or logging.warning)(
            f'{len(missing)} of {len(names)} classes have no {competition}_det_{split}_<class>.txt '
            f'file in {results_dir} ({texts.listed(missing, 10)}): scored as classes without '
            f'detections (--strict refuses instead).'
        )
    boxes = np.concatenate([np.zeros((0, 4))] + [d.boxes for d in detections.values()])
    if len(boxes) and boxes.max() <= 1.0:
        (log or logging.warning)(
            f'{results_dir}: every box of the {len(boxes)} detections lies within [0, 1]: relative '
            f'coordinates? The results files hold 1-based pixels (xmin = x * width + 1, xmax = '
            f'x * width for relative x); they are scored as pixels.'
        )
    problem = next((s.problem for s in listed if s.problem), None)
    if problem:  # an id without its XML, or one leaving the folder: before reading them
        raise ValueError(problem.rstrip('.') + '.')
    image_ids = list(sources)
    ground_truth = [read_voc_ground_truth(sources[image_id], class_ids) for image_id in image_ids]
    # Every object of the split (the empty first parts: a split without images), `split_image`
    # its image's index in `image_ids`.
    split_image = np.repeat(np.arange(len(image_ids)), [len(g[1]) for g in ground_truth])
    split_boxes = np.concatenate([np.zeros((0, 4))] + [g[0] for g in ground_truth])
    split_labels = np.concatenate([np.zeros(0, np.int64)] + [g[1] for g in ground_truth])
    split_difficult = np.concatenate([np.zeros(0, bool)] + [g[2] for g in ground_truth])
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    classes = []
    for label, name in names.items():
        dets = detections[label]
        det_image = np.array([image_index.get(i, -1) for i in dets.image_ids], np.int64)
        outside = np.flatnonzero(det_image < 0)
        if len(outside):
            image_id, line = dets.image_ids[outside[0]], dets.lines[outside[0]]
            more = (
                f' ({len(outside)} of its {len(det_image)} detections name images not in it: '
                'results of another split?)'
                if len(outside) > 1
                else ''
            )
            raise ValueError(
                f'{paths[label]}:{line}: image {texts.shown(image_id)} is not in {voc_dir} split '
                f'{split!r}{more}.'
            )
        mine = np.flatnonzero(split_labels == label)
        # Rows sorted by image once (stably: each image's rows keep the file's order), so that
        # each batch takes a contiguous run of them; a detection's rank is its line.
        det_rows = np.argsort(det_image, kind='stable')
        gt_rows = mine[np.argsort(split_image[mine], kind='stable')]
        det_slot, gt_slot = det_image[det_rows], split_image[gt_rows]
        class_det = (dets.boxes[det_rows], dets.scores[det_rows], det_rows)
        class_gt = (
            split_boxes[gt_rows],
            split_labels[gt_rows],
            split_difficult[gt_rows] & remove_difficult,
        )
        evaluator = voc_metrics.VOCEvaluator(
            {label: name}, iou_threshold=iou_threshold, iou_rule=iou_rule, boxes_in_pixels=True
        )
        num_images = len(image_ids)
        for start, end in _batches(
            np.bincount(det_slot, minlength=num_images), np.bincount(gt_slot, minlength=num_images)
        ):
            (det_boxes, det_scores, det_lines), num_det = _padded(det_slot, start, end, *class_det)
            (gt_boxes, gt_labels, gt_difficult), num_gt = _padded(gt_slot, start, end, *class_gt)
            evaluator.add_batch(
                image_ids[start:end],
                gt_boxes,
                gt_labels,
                gt_difficult,
                num_gt,
                det_boxes,
                det_scores,
                np.full(det_scores.shape, label),
                num_det,
                det_ranks=det_lines,
            )
        classes.append(evaluator.compute().classes[0])
    return voc_metrics.VOCResult.of_classes(classes, iou_threshold, iou_rule, len(sources))


def _batches(det_rows, gt_rows):
    """[(start, end)]: consecutive runs of the images whose detection and ground-truth rows are
    `det_rows`, `gt_rows` [B] that pad to at most `_BATCH_CELLS` cells (or hold one image)."""
    batches, start, widest_det, widest_gt = [], 0, 1, 1
    for end, (num_det, num_gt) in enumerate(zip(det_rows.tolist(), gt_rows.tolist())):
        widest_det, widest_gt = max(widest_det, num_det), max(widest_gt, num_gt)
        if end > start and (end + 1 - start) * widest_det * widest_gt > _BATCH_CELLS:
            batches.append((start, end))
            start, widest_det, widest_gt = end, max(num_det, 1), max(num_gt, 1)
    return batches + [(start, len(det_rows))] * (len(det_rows) > start)


def _padded(slots, start, end, *arrays):
    """The rows of images `start` to `end` - 1 of `arrays` ([T, ...], row t of image `slots[t]`,
    `slots` sorted) as zero-padded [end - start, N, ...] arrays, each image's rows in their
    order; and the rows of each image [end - start]."""
    rows = np.arange(*np.searchsorted(slots, [start, end]))
    image = slots[rows] - start
    counts = np.bincount(image, minlength=end - start)
    index = np.arange(len(rows)) - (np.cumsum(counts) - counts)[image]
    padded = []
    for array in arrays:
        out = np.zeros((end - start, counts.max(initial=0)) + array.shape[1:], array.dtype)
        out[image, index] = array[rows]
        padded.append(out)
    return padded, counts


def score_coco_results(results_path, annotations_path, stdout=None):
    """COCO metrics of a results JSON against an annotation file (pycocotools), per class too.

    The annotations are read as the converter reads them (`datasets.coco.read_annotations_json`:
    a regular file within its size limit, the arrays checked), then checked for what COCOeval
    uses (`coco_metrics.coco_ground_truth`, which gives an annotation without "area" w*h and one
    without "iscrowd" 0, as the converter does). Results that detect in fewer than all its
    images are scored as pycocotools scores them, with a warning.

    Returns:
      (`coco_metrics.COCOResult`, {category id: name} in the annotation file's order).
    Raises:
      ValueError naming the file (and entry): unreadable or malformed annotations or results;
      OSError.
    """
    data, _ = coco_lib.read_annotations_json(annotations_path)
    ground_truth = coco_metrics.coco_ground_truth(data, annotations_path)
    names = coco_metrics.category_names(ground_truth, annotations_path)  # before the evaluation
    result = coco_metrics.evaluate_coco_per_class(
        ground_truth, results_path, stdout=stdout, warn_partial=True
    )
    return result, names


def class_names_from(labels_file=None, voc_dir=None, model_card=None):
    """The class list: `labels_file`, else the model card's (a `model.json` path), else
    `<voc_dir>/labels.txt` when present, else the VOC 20.

    Raises:
      ValueError naming --labels_file and the file (`labels.read_labels_flag`): missing,
      unreadable or malformed; card_lib.CardError (a ValueError): an unreadable card.
    """
    if labels_file:
        return labels_lib.read_labels_flag(
            labels_file, ValueError, near=[voc_dir] if voc_dir else []
        )
    if model_card:
        return list(card_lib.load(model_card).class_names)
    if voc_dir and os.path.isfile(os.path.join(voc_dir, 'labels.txt')):
        return labels_lib.read_labels_file(os.path.join(voc_dir, 'labels.txt'))
    return labels_lib.VOC_CLASSES
