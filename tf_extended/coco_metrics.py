"""COCO box detection metrics: a thin wrapper around pycocotools (nothing re-implemented).

Box conventions. Our boxes are relative ``[ymin, xmin, ymax, xmax]``; COCO boxes (annotations
and results JSON) are ``[x, y, width, height]`` in continuous pixel coordinates of the original
image (0-based, no +1): ``x = xmin*W, y = ymin*H, width = (xmax - xmin)*W,
height = (ymax - ymin)*H``.

Results JSON (written by ``evaluate_coco(..., results_path=...)``, read by ``read_coco_results``)
is the COCO format: a list of
``{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}``.

Per-class AP (``evaluate_coco_per_class``, ``category_ap``) is read from COCOeval's accumulated
precision array with the averaging rule of ``COCOeval.summarize``, one category at a time.
"""

import collections
import contextlib
import copy
import io
import math
import numbers
import os
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, TextIO, Tuple, Union

from absl import logging
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tf_extended import atomic_io
from tf_extended import safe_io
from tf_extended import texts

# The 12 numbers of COCOeval.summarize() for boxes, in its order.
COCO_METRIC_NAMES = (
    'AP',
    'AP50',
    'AP75',
    'AP_small',
    'AP_medium',
    'AP_large',
    'AR1',
    'AR10',
    'AR100',
    'AR_small',
    'AR_medium',
    'AR_large',
)

_RESULT_KEYS = ('image_id', 'category_id', 'bbox', 'score')
# 100 detections on each of test-dev's 20k images are ~200 MB of JSON; parsing takes several
# times the size in memory.
MAX_RESULTS_BYTES = 2 << 30


def coco_boxes_from_relative(boxes, image_shape) -> np.ndarray:
    """Relative ``[ymin, xmin, ymax, xmax]`` [N, 4] to COCO ``[x, y, w, h]`` [N, 4] float64 pixels.

    ``image_shape`` is (height, width[, channels]) of the original image.
    """
    shape = tuple(image_shape)
    if len(shape) not in (2, 3) or not (shape[0] > 0 and shape[1] > 0):
        raise ValueError(
            f'coco_boxes_from_relative: image_shape must be (height, width[, channels]) '
            f'with positive sizes, got {shape}.'
        )
    height, width = float(shape[0]), float(shape[1])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack(
        [
            boxes[:, 1] * width,
            boxes[:, 0] * height,
            (boxes[:, 3] - boxes[:, 1]) * width,
            (boxes[:, 2] - boxes[:, 0]) * height,
        ],
        axis=1,
    )


def coco_ground_truth_boxes(boxes, image_shape, decimals: int = 3) -> np.ndarray:
    """Relative ground-truth boxes (float32 from records) to COCO ``[x, y, w, h]`` pixels, each
    coordinate rounded to ``decimals`` (1/1000 pixel by default).

    A float32 relative coordinate times the image size comes back within ``size * 6e-8`` pixel of
    the original (< 0.0005 below 8000 pixels), so rounding restores the annotation's numbers when
    they had at most 3 decimals (VOC's integer pixels, most tools' output): an exactly 96x96 box
    has area 9216, not 9216.0004 (which COCOeval would call "large" only). ``w`` and ``h`` are
    rounded differences of the rounded corners. For ground truth only; detections stay exact.
    """
    coco_boxes_from_relative(np.zeros((0, 4)), image_shape)  # checks the shape
    height, width = float(image_shape[0]), float(image_shape[1])
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, x1 = np.round(boxes[:, 1] * width, decimals), np.round(boxes[:, 3] * width, decimals)
    y0, y1 = np.round(boxes[:, 0] * height, decimals), np.round(boxes[:, 2] * height, decimals)
    return np.stack([x0, y0, np.round(x1 - x0, decimals), np.round(y1 - y0, decimals)], axis=1)


def coco_detection_arrays(
    boxes,
    scores,
    labels,
    image_shape,
    label_to_category: Optional[Mapping[int, int]] = None,
    context: str = 'coco_detections',
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detections as COCO values, in arrays: (category ids int64 [D], ``[x, y, w,
    h]`` float64 pixels [D, 4], scores float64 [D]); arguments as for :func:`coco_detections`,
    `context` names the caller in errors."""
    xywh = coco_boxes_from_relative(boxes, image_shape)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not len(xywh) == len(scores) == len(labels):
        raise ValueError(
            f'{context}: boxes, scores and labels must have the same length, got '
            f'{len(xywh)}, {len(scores)}, {len(labels)}.'
        )
    known, index = np.unique(labels, return_inverse=True)
    categories = []
    for label in known.tolist():
        if label_to_category is None:
            category = label
        elif label in label_to_category:
            category = label_to_category[label]
        else:
            raise ValueError(
                f'{context}: label {label} has no entry in label_to_category (known labels: '
                f'{sorted(label_to_category)}).'
            )
        if not is_finite_number(category):
            raise ValueError(f'{context}: label {label} gives category id {category!r}.')
        categories.append(int(category))
    try:
        categories = np.asarray(categories, np.int64)
    except OverflowError:
        raise ValueError(f'{context}: category ids {categories} are beyond int64.') from None
    return categories[index.reshape(-1)], xywh, scores


def coco_results(image_ids, categories, xywh, scores) -> List[dict]:
    """COCO result dicts (plain Python types) from arrays: image ids and category ids [N],
    ``[x, y, w, h]`` [N, 4], scores [N]."""
    return [
        {'image_id': image_id, 'category_id': category, 'bbox': box, 'score': score}
        for image_id, category, box, score in zip(
            np.asarray(image_ids, np.int64).tolist(),
            np.asarray(categories, np.int64).tolist(),
            np.asarray(xywh, np.float64).tolist(),
            np.asarray(scores, np.float64).tolist(),
        )
    ]


def coco_detections(
    image_id: int,
    boxes,
    scores,
    labels,
    image_shape,
    label_to_category: Optional[Mapping[int, int]] = None,
) -> List[dict]:
    """One image's detections as COCO result dicts.

    Args:
      image_id: the COCO image id.
      boxes: [D, 4] relative ``[ymin, xmin, ymax, xmax]``.
      scores: [D] float scores.
      labels: [D] int labels (>= 1).
      image_shape: (height, width[, channels]) of the original image.
      label_to_category: {label: COCO category id}; identity when None. COCO's 80 classes have
        non-contiguous ids (1..90), so a contiguous label space needs this map.
    Returns:
      list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` (plain Python types).
    """
    categories, xywh, scores = coco_detection_arrays(
        boxes,
        scores,
        labels,
        image_shape,
        label_to_category,
        f'coco_detections(image_id={image_id!r})',
    )
    return coco_results(np.full(len(scores), int(image_id), np.int64), categories, xywh, scores)


def is_integer(value) -> bool:
    """An integer (Python or NumPy), not a bool: what COCO ids must be."""
    # Exact types first: the ABC checks cost ~1 us each, on every number of a results file.
    return type(value) is int or (
        isinstance(value, numbers.Integral) and not isinstance(value, bool)
    )


def is_finite_number(value) -> bool:
    """A finite real number (Python or NumPy), not a bool; an integer beyond float64's range
    is not one."""
    if not (
        type(value) in (float, int)
        or (isinstance(value, numbers.Real) and not isinstance(value, bool))
    ):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_results(detections, source: str) -> List[dict]:
    if not isinstance(detections, list):
        # detect_ssd_network.py's detections.json is an object of images: say what it holds.
        got = type(detections).__name__
        if isinstance(detections, dict):
            got = f'an object with keys {texts.shown(sorted(map(str, detections)))}'
        raise ValueError(
            f'{source}: COCO results must be a list of objects with keys {_RESULT_KEYS} '
            f'(bbox [x, y, width, height] in pixels), got {got}.'
        )
    for index, det in enumerate(detections):
        if not isinstance(det, dict) or any(key not in det for key in _RESULT_KEYS):
            raise ValueError(
                f'{source}: result #{index} must be an object with keys {_RESULT_KEYS}, '
                f'got {texts.shown(det)}.'
            )
        bbox = det['bbox']
        if not (
            isinstance(bbox, (list, tuple, np.ndarray))
            and len(bbox) == 4
            and all(is_finite_number(v) for v in bbox)
        ):
            raise ValueError(
                f'{source}: result #{index} bbox must be [x, y, width, height] of finite '
                f'numbers, got {texts.shown(bbox)}.'
            )
        if bbox[2] < 0 or bbox[3] < 0:  # COCOeval takes it, with a negative area
            raise ValueError(
                f'{source}: result #{index} bbox {texts.shown(bbox)} has a negative width or '
                f'height; COCO boxes are [x, y, width, height], not corners.'
            )
        for key, check, what in (
            ('image_id', is_integer, 'an integer'),
            ('category_id', is_integer, 'an integer'),
            ('score', is_finite_number, 'a finite number'),
        ):
            if not check(det[key]):
                raise ValueError(
                    f'{source}: result #{index} {key} must be {what}, got {texts.shown(det[key])}.'
                )
    return detections


def read_coco_results(path: str) -> List[dict]:
    """Reads and checks a COCO results JSON file (a regular file of at most MAX_RESULTS_BYTES);
    returns its list of dicts.

    Raises:
      ValueError naming the file: not JSON, nested too deeply, not a list of results;
      OSError: unreadable (safe_io.UnsafeFileError: a FIFO, a device, too large).
    """
    detections = safe_io.read_json(path, 'COCO results file', MAX_RESULTS_BYTES)
    return _check_results(detections, path)


# (array, field, required, check, what it must be): what COCOeval on boxes reads. An annotation's
# "id", "area" and "iscrowd" may be missing: coco_ground_truth fills them in.
_GROUND_TRUTH_FIELDS = (
    ('images', 'id', True, is_integer, 'an integer'),
    ('categories', 'id', True, is_integer, 'an integer'),
    ('categories', 'name', True, lambda v: isinstance(v, str), 'a string'),
    ('annotations', 'id', False, is_integer, 'an integer'),
    ('annotations', 'image_id', True, is_integer, 'an integer'),
    ('annotations', 'category_id', True, is_integer, 'an integer'),
    (
        'annotations',
        'bbox',
        True,
        lambda v: isinstance(v, (list, tuple)) and len(v) == 4 and all(map(is_finite_number, v)),
        '[x, y, w, h] of 4 finite numbers',
    ),
    ('annotations', 'area', False, is_finite_number, 'a finite number'),
    ('annotations', 'iscrowd', False, lambda v: v in (0, 1), '0 or 1'),
)


def _ground_truth_problem(dataset) -> Optional[str]:
    """Why COCOeval cannot score against a COCO-format dataset, or None."""
    if not isinstance(dataset, Mapping):
        return f'it is a {type(dataset).__name__}, not an object'
    for key in ('images', 'categories', 'annotations'):
        if key not in dataset:
            hint = ' (an image_info_*.json lists only images)' if key == 'annotations' else ''
            return f'it has no "{key}"{hint}'
        entries = dataset[key]
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            return f'"{key}" is not an array of objects'
    annotations = dataset['annotations']
    with_id = sum('id' in ann for ann in annotations)
    if with_id not in (0, len(annotations)):
        return f'{with_id} of {len(annotations)} annotations have an "id": all or none must'
    for key, field, required, check, what in _GROUND_TRUTH_FIELDS:
        for index, entry in enumerate(dataset[key]):
            if field not in entry:
                if required:
                    return f'"{key}"[{index}] has no "{field}"'
            elif not check(entry[field]):
                return f'"{key}"[{index}] has {field} {texts.shown(entry[field])}, not {what}'
    for key in ('images', 'categories', 'annotations'):  # pycocotools indexes them by id
        ids = collections.Counter(entry['id'] for entry in dataset[key] if 'id' in entry)
        twice = next((i for i, count in ids.items() if count > 1), None)
        if twice is not None:
            return f'id {twice!r} appears twice in "{key}"'
    if not dataset['categories']:
        return '"categories" is empty'
    return None


def _unscored_annotations(dataset):
    """'<n> annotations of image ids ... that "images" does not list, ...': what pycocotools
    leaves out of the scores without a word (a subset file made by deleting images or
    categories, as the converter also takes it), or None."""
    found = []
    for key, field in (('images', 'image_id'), ('categories', 'category_id')):
        listed = {entry['id'] for entry in dataset[key]}
        ids = [ann[field] for ann in dataset['annotations'] if ann[field] not in listed]
        if ids:
            distinct = sorted(set(ids))
            shown = texts.listed(distinct, 5)
            found.append(
                f'{len(ids)} annotation(s) of {field.replace("_", " ")}s {shown} that "{key}" '
                f'does not list'
            )
    return '; '.join(found) or None


def coco_ground_truth(
    dataset: Mapping,
    source: str = 'coco_ground_truth',
    advice: str = 'pass the instances_*.json the results are for',
) -> COCO:
    """Builds a pycocotools COCO object from an in-memory COCO-format dataset, checked for what
    COCOeval on boxes reads.

    Args:
      dataset: ``{"images": [{"id", ...}], "annotations": [{"image_id", "category_id",
        "bbox": [x, y, w, h], ...}], "categories": [{"id", "name"}]}``. Annotations may omit
        ``iscrowd`` (then 0), ``area`` (then w*h: right for boxes; COCO's own files hold mask
        areas) and ``id`` (then 1-based position; all or none must have one). The input is not
        modified.
      source: str, where the dataset comes from (the annotations file's path), for messages.
      advice: str, what to do about a dataset COCOeval cannot use (the message's end).
    Raises:
      ValueError naming ``source`` and the first entry COCOeval cannot use.
    """
    problem = _ground_truth_problem(dataset)
    if problem:
        raise ValueError(
            f'{source}: cannot score against these COCO annotations ({problem}); {advice}.'
        )
    unscored = _unscored_annotations(dataset)
    if unscored:
        logging.warning('%s: %s are not scored, as pycocotools does.', source, unscored)
    annotations = copy.deepcopy(dataset['annotations'])
    for index, ann in enumerate(annotations):
        ann.setdefault('iscrowd', 0)
        ann.setdefault('area', float(ann['bbox'][2]) * float(ann['bbox'][3]))
        ann.setdefault('id', index + 1)
    coco = COCO()
    rest = {key: value for key, value in dataset.items() if key != 'annotations'}
    coco.dataset = dict(copy.deepcopy(rest), annotations=annotations)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class COCOResult(NamedTuple):
    """COCO box metrics of one evaluation.

    metrics: {name: value} for the 12 names of ``COCO_METRIC_NAMES``; None where pycocotools
      reports -1 (no ground truth in that setting, e.g. no small objects).
    class_ap: {category name: AP@[.5:.95]} in the ground truth's category order (area 'all',
      maxDets 100); None for a category without non-crowd ground truth in the evaluated images.
      The mean over the categories that are not None is ``metrics['AP']``.
    class_ap50: {category name: AP@.5}, the same keys; its mean is ``metrics['AP50']``.
    """

    metrics: Dict[str, Optional[float]]
    class_ap: Dict[str, Optional[float]]
    class_ap50: Dict[str, Optional[float]]


def _check_category_ids(results, known, source):
    """COCOeval scores the ground truth's categories only and drops other detections silently:
    right for a model of more categories on a subset file, wrong for results in contiguous labels
    (1..80 or 0..79) in place of the file's ids (1..90 with gaps). Raises ValueError for the
    latter (every detection's id within 1..K or 0..K-1, K categories, while the file's ids are
    not those) and for results of no category of the file; warns of the detections dropped
    otherwise."""
    ids = {det['category_id'] for det in results}
    unknown = sorted(ids - set(known))
    if not unknown:
        return
    # 1..K, or 0..K-1 as torchvision-style and YOLO exporters write class indices.
    contiguous = [set(range(first, len(known) + first)) for first in (1, 0)]
    shown = texts.listed(known, 12)
    if not ids & set(known) or any(ids <= c and set(known) != c for c in contiguous):
        raise ValueError(
            f'{source}: detections use category ids {texts.listed(unknown, 10)} that the ground truth does '
            f'not have ({len(unknown)} unknown; its ids: {shown}); results must carry its '
            f'category ids (COCO\'s own, not contiguous labels).'
        )
    dropped = sum(1 for det in results if det['category_id'] not in set(known))
    logging.warning(
        '%s: %d detection(s) of category ids the ground truth does not have (%s) are not scored, '
        'as pycocotools does (its ids: %s).',
        source,
        dropped,
        texts.listed(unknown, 10),
        shown,
    )


def _warn_relative_boxes(results, source):
    """Warns when every result's bbox lies within [0, 1]: relative coordinates, which COCOeval
    scores as pixels (AP 0 with no error)."""
    if results and all(
        x >= 0 and y >= 0 and x + w <= 1.0 and y + h <= 1.0
        for x, y, w, h in (r['bbox'] for r in results)
    ):
        logging.warning(
            '%s: every bbox of the %d results lies within [0, 1]: relative coordinates? COCO '
            'results hold pixels ([x, y, width, height], x = relative xmin * image width); they '
            'are scored as pixels.',
            source,
            len(results),
        )


def _warn_partial(results, image_ids, source):
    """Warns when the results detect in fewer of the ground truth's `image_ids` than all:
    COCOeval scores the others as images where nothing was found, so results of part of an
    annotation file's images score lower, in silence."""
    covered = len({det['image_id'] for det in results})
    if covered < len(image_ids):
        logging.warning(
            '%s: detections in %d of the %d images of the ground truth; COCOeval scores the '
            'other %d as images where nothing was detected (results of part of the images score '
            'lower than on those images alone).',
            source,
            covered,
            len(image_ids),
            len(image_ids) - covered,
        )


def _run_cocoeval(
    ground_truth, detections, image_ids, stdout, results_path, warn_partial=False
) -> COCOeval:
    """COCOeval evaluated, accumulated and summarized; see :func:`evaluate_coco_per_class` for
    the arguments."""
    sink = io.StringIO() if stdout is None else stdout
    with contextlib.redirect_stdout(sink):
        if isinstance(ground_truth, COCO):
            gt = ground_truth
        elif isinstance(ground_truth, Mapping):
            gt = coco_ground_truth(ground_truth)
        else:
            gt = COCO(os.fspath(ground_truth))
        if isinstance(detections, (str, os.PathLike)):
            source = os.fspath(detections)
            results = read_coco_results(source)
        else:
            source = 'the detections'
            # Copies: loadRes adds keys to each dict (it changes no value in place).
            results = [dict(det) if isinstance(det, dict) else det for det in detections]
            _check_results(results, source)
        unknown = sorted({det['image_id'] for det in results} - set(gt.getImgIds()))
        if unknown:
            raise ValueError(
                f'{source}: detections refer to image ids {texts.listed(unknown, 10)} that are not in the '
                f'ground truth ({len(unknown)} unknown ids).'
            )
        _check_category_ids(results, gt.getCatIds(), source)
        _warn_relative_boxes(results, source)
        if warn_partial and image_ids is None:
            _warn_partial(results, gt.getImgIds(), source)
        if results_path is not None:
            atomic_io.write_json_atomic(results_path, results, indent=None)
        if results:
            dt = gt.loadRes(results)
        else:
            # loadRes cannot take an empty list; an empty result set is the same thing.
            dt = COCO()
            dt.dataset = {
                'images': list(gt.dataset['images']),
                'annotations': [],
                'categories': copy.deepcopy(gt.dataset['categories']),
            }
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iouType='bbox')
        if image_ids is not None:
            evaluator.params.imgIds = sorted(int(i) for i in image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_coco(
    ground_truth: Union[str, os.PathLike, Mapping, COCO],
    detections: Union[str, os.PathLike, Sequence[dict]],
    *,
    image_ids: Optional[Sequence[int]] = None,
    stdout: Optional[TextIO] = None,
    results_path: Optional[str] = None,
) -> Dict[str, Optional[float]]:
    """COCO box metrics by pycocotools' COCOeval (default parameters: 10 IoUs .5:.95, 101 recall
    points, maxDets 1/10/100, area ranges small < 32² <= medium < 96² <= large).

    Args:
      ground_truth: an annotation file path, an in-memory dataset dict (see
        :func:`coco_ground_truth`) or a pycocotools ``COCO`` object.
      detections: a results JSON path or a list of result dicts (not modified). An empty list
        means no detections (every metric of a category with ground truth is 0).
      image_ids: evaluate on these images only (default: every ground-truth image).
      stdout: where pycocotools' printing goes: None (default) silences it; pass ``sys.stdout``
        to show it or an ``io.StringIO`` to capture it (the summary table included).
      results_path: str; when given, the checked detections are also written there as COCO
        results JSON (atomically), so that a caller keeping them needs no second check.
    Returns:
      {name: value} for the 12 names of ``COCO_METRIC_NAMES``; a value is None where pycocotools
      reports -1 (no ground truth in that setting, e.g. no small objects).
    """
    return _summary(_run_cocoeval(ground_truth, detections, image_ids, stdout, results_path))


def evaluate_coco_per_class(
    ground_truth: Union[str, os.PathLike, Mapping, COCO],
    detections: Union[str, os.PathLike, Sequence[dict]],
    *,
    image_ids: Optional[Sequence[int]] = None,
    stdout: Optional[TextIO] = None,
    results_path: Optional[str] = None,
    warn_partial: bool = False,
) -> COCOResult:
    """:func:`evaluate_coco` (same arguments, one COCOeval run) plus the per-category AP@[.5:.95]
    and AP@.5, keyed by category name (see :class:`COCOResult`). warn_partial: warn when the
    detections are in fewer than all the ground truth's images (results scored against a whole
    annotation file); off where the ground truth is the evaluated images."""
    evaluator = _run_cocoeval(
        ground_truth, detections, image_ids, stdout, results_path, warn_partial
    )
    names = category_names(evaluator.cocoGt)
    ap, ap50 = category_ap(evaluator), category_ap(evaluator, iou_threshold=0.5)
    return COCOResult(
        metrics=_summary(evaluator),
        class_ap={name: ap[category] for category, name in names.items()},
        class_ap50={name: ap50[category] for category, name in names.items()},
    )


def category_ap(
    evaluator: COCOeval, iou_threshold: Optional[float] = None
) -> Dict[int, Optional[float]]:
    """Per-category box AP of an accumulated COCOeval, by the rule of ``COCOeval.summarize``.

    ``evaluator.eval['precision']`` is float64 [T, R, K, A, M]: IoU thresholds, recall points,
    categories (``params.catIds`` order), area ranges, maxDets; -1 where nothing was accumulated.
    A category's AP is the mean of its entries > -1 over the IoU thresholds (all of them, or the
    one equal to ``iou_threshold``) and the recall points, at area 'all' and maxDets 100.

    Returns:
      {category id: AP}, None for a category without non-crowd ground truth (all entries -1).
      A category with ground truth has all T x R entries >= 0, so the mean of the values that
      are not None is summarize's AP (or AP at ``iou_threshold``).
    """
    if not evaluator.eval or 'precision' not in evaluator.eval:
        raise ValueError(
            'category_ap: the COCOeval has no results; run evaluate() and accumulate() first.'
        )
    params = evaluator.eval['params']
    if not params.useCats:
        raise ValueError(
            'category_ap: the COCOeval pooled the categories (params.useCats = 0); '
            'per-category AP needs useCats = 1.'
        )
    precision = evaluator.eval['precision']
    if iou_threshold is not None:
        match = np.flatnonzero(np.isclose(params.iouThrs, iou_threshold))
        if not match.size:
            raise ValueError(
                f'category_ap: IoU threshold {iou_threshold} is not one of the evaluated '
                f'thresholds {np.round(params.iouThrs, 4).tolist()}.'
            )
        precision = precision[match]
    area = _index_of(list(params.areaRngLbl), 'all', 'area range label')
    max_dets = _index_of(list(params.maxDets), 100, 'maxDets')
    precision = precision[:, :, :, area, max_dets]  # [T, R, K]
    ap = {}
    for k, category in enumerate(params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        ap[int(category)] = float(np.mean(values)) if values.size else None
    return ap


def _index_of(values: list, value, what: str) -> int:
    if value not in values:
        raise ValueError(
            f'category_ap: the COCOeval has no {what} {value!r} (it has {values}); '
            f'per-category AP follows summarize, which needs it.'
        )
    return values.index(value)


def category_names(gt: COCO, source: str = 'evaluate_coco_per_class') -> Dict[int, str]:
    """{category id: name} in the ground truth's category order; names must be unique (per-class
    AP is keyed by name). ``source`` (the annotation file) is named in errors."""
    names = {}
    for category in gt.loadCats(gt.getCatIds()):
        if 'name' not in category:
            raise ValueError(
                f'{source}: ground-truth category {category!r} has no '
                f'"name"; per-class AP is keyed by name.'
            )
        # Stripped, as the converter reads them: 'person' and 'person ' are one name.
        name = category['name']
        names[int(category['id'])] = name.strip() if isinstance(name, str) else name
    ids = collections.defaultdict(list)
    for category, name in names.items():
        ids[name].append(category)
    for name, shared in ids.items():
        if len(shared) > 1:
            raise ValueError(
                f'{source}: ground-truth categories {", ".join(map(str, shared))} are all named '
                f'{name!r}; per-class AP is keyed by name: give each its own name.'
            )
    return names


def _summary(evaluator: COCOeval) -> Dict[str, Optional[float]]:
    return {
        name: (None if value == -1 else float(value))
        for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)
    }
