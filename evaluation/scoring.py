"""Offline scoring of detection files: devkit results files against a VOC folder, COCO results
JSON against an annotation file.

VOC ground truth is read from the XML as the devkit reads it: `object/name`, `object/difficult`
(missing or empty = 0) and `object/bndbox` in 1-based inclusive pixels, unclipped (`<part>`
boxes are not objects). `datasets.pascalvoc` offers no such function (its loader needs the image
and returns clipped relative boxes), hence this minimal parse.

Tie order. The devkit sorts each class's detections by score, ties in file order. Each class is
scored by its own evaluator fed the images in order of first appearance in that class's file, which
gives exactly that order whenever an image's detections are contiguous in the file (as
`VOCResultsWriter` and most tools write them).
"""

import contextlib
import io
import os
import reprlib
import xml.etree.ElementTree as ET

from absl import logging
import numpy as np
from pycocotools.coco import COCO

from datasets import coco as coco_lib
from datasets import labels as labels_lib
from datasets import pascalvoc
from model import card as card_lib
from tf_extended import coco_metrics
from tf_extended import safe_io
from tf_extended import voc_metrics


def read_voc_ground_truth(annotation_path, class_ids):
    """One annotation's objects of known classes.

    Args:
      annotation_path: a VOC XML file.
      class_ids: {class name: label}.
    Returns:
      (boxes [G, 4] float64 `[ymin, xmin, ymax, xmax]` 1-based pixels, labels [G] int64,
      difficult [G] bool).
    Raises:
      ValueError naming the file and object for malformed XML or unknown class names; naming the
      file when it is not a regular file or larger than `pascalvoc.MAX_XML_BYTES`.
    """
    try:
        data = safe_io.read_bytes(annotation_path, pascalvoc.MAX_XML_BYTES, 'annotation XML')
        root = ET.fromstring(data)
    except safe_io.UnsafeFileError as err:
        raise ValueError(str(err)) from None
    except (ET.ParseError, OSError) as err:
        raise ValueError(f'{annotation_path}: cannot read the annotation XML ({err}).') from None
    boxes, labels, difficult = [], [], []
    for index, obj in enumerate(root.findall('object')):
        name = (obj.findtext('name') or '').strip()
        if name not in class_ids:
            raise ValueError(
                f'{annotation_path}: object {index} has class {name!r}, not among '
                f'{sorted(class_ids)}; pass --labels_file with the dataset\'s classes.'
            )
        try:
            box = obj.find('bndbox')
            xmin, ymin, xmax, ymax = (
                float(box.findtext(tag)) for tag in ('xmin', 'ymin', 'xmax', 'ymax')
            )
            flag = (obj.findtext('difficult') or '').strip()
            difficult.append(bool(int(float(flag))) if flag else False)
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f'{annotation_path}: object {index} ({name}) needs <bndbox> with numeric '
                f'xmin, ymin, xmax, ymax and a 0/1 <difficult>.'
            ) from None
        boxes.append([ymin, xmin, ymax, xmax])
        labels.append(class_ids[name])
    return (
        np.asarray(boxes, np.float64).reshape(-1, 4),
        np.asarray(labels, np.int64),
        np.asarray(difficult, bool),
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
):
    """Scores `<results_dir>/<competition>_det_<split>_<class>.txt` against a VOC folder (`<class>`:
    the class name made safe for file names, see `voc_metrics.voc_results_paths`).

    Args:
      results_dir: folder of the results files. A class without a file has no detections
        (tools skip the file of a class they never detected); `log` gets one warning saying how
        many classes had none. `strict`: a missing file is an error, as in the devkit.
      voc_dir: VOC folder with Annotations/ and ImageSets/Main/<split>.txt.
      split: the image set.
      class_names: class names in label order (label = index + 1).
    Returns:
      voc_metrics.VOCResult.
    Raises:
      ValueError: `results_dir` is not a folder or holds no class's results file; a detection
        names an image that is not in the split.
      FileNotFoundError: `strict` and a class has no results file.
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
    detections = voc_metrics.read_voc_results(
        results_dir, split, names, competition, missing_ok=not strict
    )
    missing = [names[label] for label, dets in detections.items() if dets.missing]
    if len(missing) == len(names):
        raise ValueError(
            f'{results_dir}: no results file for any of the {len(names)} classes; {expected}, '
            f'and check --split, --competition and the class list.'
        )
    if missing:
        (log or logging.warning)(
            f'{len(missing)} of {len(names)} classes have no {competition}_det_{split}_<class>.txt '
            f'file in {results_dir} ({", ".join(missing[:10])}{", ..." if len(missing) > 10 else ""}'
            f'): scored as classes without detections (--strict refuses instead).'
        )
    sources = {s.image_id: s.annotation_path for s in pascalvoc.list_examples([voc_dir], split)}
    ground_truth = {
        image_id: read_voc_ground_truth(path, class_ids) for image_id, path in sources.items()
    }
    classes = []
    for label, name in names.items():
        dets = detections[label]
        rows = {}
        for index, image_id in enumerate(dets.image_ids):
            if image_id not in sources:
                raise ValueError(
                    f'{paths[label]}: image {image_id!r} is not in {voc_dir} split {split!r}.'
                )
            rows.setdefault(image_id, []).append(index)
        # One evaluator per class, images in this file's order: the devkit's tie order exactly.
        evaluator = voc_metrics.VOCEvaluator(
            {label: name}, iou_threshold=iou_threshold, iou_rule=iou_rule, boxes_in_pixels=True
        )
        for image_id in list(rows) + [i for i in sources if i not in rows]:
            gt_boxes, gt_labels, gt_difficult = ground_truth[image_id]
            mine = gt_labels == label
            index = np.asarray(rows.get(image_id, []), np.int64)
            evaluator.add_image(
                image_id,
                gt_boxes[mine],
                gt_labels[mine],
                gt_difficult[mine],
                dets.boxes[index],
                dets.scores[index],
                np.full(len(index), label),
            )
        classes.append(evaluator.compute().classes[0])
    present = [c for c in classes if not c.absent]
    return voc_metrics.VOCResult(
        classes=tuple(classes),
        map_voc07=float(np.mean([c.ap_voc07 for c in present])) if present else None,
        map_voc12=float(np.mean([c.ap_voc12 for c in present])) if present else None,
        iou_threshold=iou_threshold,
        iou_rule=iou_rule,
        num_images=len(sources),
    )


# (array, field, required, check, what it must be): what COCOeval on boxes reads.
_GROUND_TRUTH_FIELDS = (
    ('images', 'id', True, coco_metrics.is_integer, 'an integer'),
    ('categories', 'id', True, coco_metrics.is_integer, 'an integer'),
    ('categories', 'name', True, lambda v: isinstance(v, str), 'a string'),
    ('annotations', 'id', True, coco_metrics.is_integer, 'an integer'),
    ('annotations', 'image_id', True, coco_metrics.is_integer, 'an integer'),
    ('annotations', 'category_id', True, coco_metrics.is_integer, 'an integer'),
    (
        'annotations',
        'bbox',
        True,
        lambda v: (
            isinstance(v, list) and len(v) == 4 and all(coco_metrics.is_finite_number(x) for x in v)
        ),
        '[x, y, w, h] of 4 finite numbers',
    ),
    ('annotations', 'area', False, coco_metrics.is_finite_number, 'a finite number'),
    ('annotations', 'iscrowd', False, lambda v: v in (0, 1), '0 or 1'),
)


def _ground_truth_problem(data):
    """Why COCOeval cannot score against an instances dict, or None."""
    if 'annotations' not in data:
        return 'it has no "annotations" (an image_info_*.json lists only images)'
    for key, field, required, check, what in _GROUND_TRUTH_FIELDS:
        for index, entry in enumerate(data[key]):
            if field not in entry:
                if required:
                    return f'"{key}"[{index}] has no "{field}"'
            elif not check(entry[field]):
                return f'"{key}"[{index}] has {field} {reprlib.repr(entry[field])}, not {what}'
    return None


def read_coco_ground_truth(annotations_path):
    """A pycocotools COCO object of an instances JSON, read as the converter reads it
    (`datasets.coco.read_annotations_json`: a regular file within its size limit, the arrays
    checked) and checked for what COCOeval uses. As in the converter, an annotation without
    "area" gets w*h and one without "iscrowd" 0 (pycocotools would fail on them).

    Raises:
      ValueError naming the file and the entry; OSError: unreadable.
    """
    data = coco_lib.read_annotations_json(annotations_path)
    problem = _ground_truth_problem(data)
    if problem:
        raise ValueError(
            f'{annotations_path}: cannot score against this COCO annotations file ({problem}); '
            f'pass the instances_*.json the results are for.'
        )
    for ann in data['annotations']:
        ann.setdefault('area', float(ann['bbox'][2]) * float(ann['bbox'][3]))
        ann.setdefault('iscrowd', 0)
    ground_truth = COCO()
    ground_truth.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    return ground_truth


def score_coco_results(results_path, annotations_path, stdout=None):
    """COCO metrics of a results JSON against an annotation file (pycocotools), per class too.

    Returns:
      (`coco_metrics.COCOResult`, {category id: name} in the annotation file's order).
    Raises:
      ValueError naming the file: unreadable or malformed annotations or results; OSError.
    """
    ground_truth = read_coco_ground_truth(annotations_path)
    result = coco_metrics.evaluate_coco_per_class(ground_truth, results_path, stdout=stdout)
    return result, coco_metrics.category_names(ground_truth)


def class_names_from(labels_file=None, voc_dir=None, model_card=None):
    """The class list: `labels_file`, else the model card's (a `model.json` path), else
    `<voc_dir>/labels.txt` when present, else the VOC 20."""
    if labels_file:
        return labels_lib.read_labels_file(labels_file)
    if model_card:
        return list(card_lib.load(model_card).class_names)
    if voc_dir and os.path.isfile(os.path.join(voc_dir, 'labels.txt')):
        return labels_lib.read_labels_file(os.path.join(voc_dir, 'labels.txt'))
    return labels_lib.VOC_CLASSES
