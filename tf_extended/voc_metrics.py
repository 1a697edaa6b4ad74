"""Pascal VOC detection metrics (per-class AP, mAP) computed as the official devkit does.

The rules, per class, over the whole split (VOCdevkit ``VOCevaldet.m``):

* detections are sorted by score, descending, stably (ties keep their input order);
* a detection takes, among the ground truths of its class in its image (difficult ones
  included), the one of largest IoU (first one on ties). If that IoU passes the threshold
  (``iou_rule='>='``: IoU >= 0.5, the devkit; ``'>'``: IoU > 0.5, as in the common Python ports)
  then: a difficult ground truth makes the detection count neither way (ignored); an unmatched
  one makes it a true positive and marks it matched; an already matched one makes it a false
  positive (duplicate). Below the threshold, or with no ground truth, it is a false positive;
* IoU is measured in pixels of the original image, boxes being 1-based inclusive:
  width = xmax - xmin + 1 (the "+1" convention);
* the number of positives is the number of non-difficult ground truths;
* VOC2007 AP ("11-point"): mean over t in {0, 0.1, ..., 1} of the largest precision at
  recall >= t (0 when no point reaches t). The comparison is exact (integer arithmetic on the
  counts): a floating grid such as ``numpy.arange(0, 1.1, 0.1)``, whose 0.3, 0.6 and 0.7 are one
  ulp high, would drop a point whose recall is exactly 0.3, 0.6 or 0.7. MATLAB's ``0:0.1:1``
  (the devkit's loop) holds 0.3 one ulp high too (its colon operator computes the first half as
  ``k * 0.1``, the second as ``1 - (10 - k) * 0.1``), so the devkit itself drops a recall of
  exactly 0.3 (tp/npos = 3/10): there our 11-point AP can be above the devkit's;
* VOC2010+ AP ("all-point"): area under the precision envelope (precision made non-increasing
  from right to left), summed over the recalls at which recall changes.

Our choices where the devkit gives NaN or would crash:

* a class with no non-difficult ground truth in the split is *absent*: its AP is ``None`` and it
  is left out of the mAP (the devkit divides by zero positives);
* a class with positives but no detections has AP 0 (and is in the mAP);
* ignored detections (on difficult objects) are dropped from the precision/recall curve. In the
  devkit they repeat the previous curve point (which changes no AP), or give precision 0/0 when
  they come first (NaN, which MATLAB's ``max`` skips, except when every detection is ignored).

Streaming: :class:`VOCEvaluator` matches each image's detections against that image's ground
truth as soon as the image is added and keeps only, per class, the scores and TP/FP flags plus
counts. This gives the devkit's flags: the matching state is per image, and the devkit's global
score order, restricted to one image, is that image's detections in (stable) score order. The
later global stable sort keeps images in the order they were added, which is the devkit's order
for a results file written image by image.

Box conventions. Relative boxes are ``[ymin, xmin, ymax, xmax]`` in [0, 1], as our converter
stores VOC pixels: ``xmin_rel = (xmin - 1) / W``, ``xmax_rel = xmax / W`` (same for y with H).
They are turned back into devkit pixels by :func:`pixel_boxes_from_relative`:
``xmin = xmin_rel * W + 1``, ``xmax = xmax_rel * W``, ``ymin = ymin_rel * H + 1``,
``ymax = ymax_rel * H``. Pixel boxes are ``[ymin, xmin, ymax, xmax]`` in 1-based inclusive pixels.
Results files (``comp4_det_<split>_<class>.txt``) hold ``image_id score xmin ymin xmax ymax``
(an id's whitespace and ``%`` percent-encoded, :func:`results_file_id`);
``<class>`` is the class name made safe for file names (``tf_extended.file_names``: spaces,
slashes and other characters become ``_``, collisions get ``_2``...), from the whole class list in
label order. Class names themselves can be any non-empty unique strings.
"""

import dataclasses
import os
import urllib.parse
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import orjson

from tf_extended import atomic_io
from tf_extended import file_names
from tf_extended import safe_io
from tf_extended import signals
from tf_extended import texts

IOU_RULES = ('>=', '>')
# The AP rules: VOC2007's 11-point interpolation, VOC2010+'s area under the whole curve.
VOC_RULES = ('voc07', 'voc12')

# Per-detection outcome flags.
FP, TP, IGNORED = 0, 1, -1
# Detections x ground-truth rows whose IoUs `match_batch` holds at once (`_best_ground_truth`):
# about 100 bytes each (the gathered boxes, the IoU's temporaries), 100 MB at most. An
# evaluation's batch (32 images x 200 detections x up to ~100 objects) is one or two such chunks.
_MATCH_CELLS = 1 << 20


# ----------------------------------------------------------------------------------------------
# Boxes and IoU
# ----------------------------------------------------------------------------------------------
def pixel_boxes_from_relative(boxes, image_shape) -> np.ndarray:
    """Relative boxes to devkit pixel boxes.

    Args:
      boxes: [N, 4] relative ``[ymin, xmin, ymax, xmax]`` (any float dtype).
      image_shape: (height, width) of the original image (a trailing channel count is allowed).
    Returns:
      [N, 4] float64 ``[ymin, xmin, ymax, xmax]``, 1-based inclusive pixels:
      ``ymin*H + 1, xmin*W + 1, ymax*H, xmax*W`` (the inverse of the converter's
      ``(xmin - 1)/W, xmax/W``).
    """
    sizes = _PaddedRows('pixel_boxes_from_relative').sizes(image_shape)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(1, -1, 4)
    return _batch_pixel_boxes(boxes, sizes)[0]


_PIXEL_OFFSET = np.array([1.0, 1.0, 0.0, 0.0])  # the 1-based ymin, xmin


def _batch_pixel_boxes(boxes, heights_widths) -> np.ndarray:
    """`pixel_boxes_from_relative` of float64 `[B, N, 4]` boxes, float64 `[B, 2]` sizes."""
    scale = np.concatenate([heights_widths, heights_widths], axis=1)[:, None, :]  # H, W, H, W
    return boxes * scale + _PIXEL_OFFSET


def devkit_iou(boxes, gt_boxes) -> np.ndarray:
    """Pairwise IoU of pixel boxes with the devkit's +1 convention.

    Args:
      boxes: [N, 4] float ``[ymin, xmin, ymax, xmax]``, 1-based inclusive pixels.
      gt_boxes: [M, 4] same convention.
    Returns:
      [N, M] float64 IoU; 0 where two boxes do not overlap (inclusive width or height <= 0).
    """
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(gt_boxes, dtype=np.float64).reshape(1, -1, 4)
    return _broadcast_iou(a, b)


def _broadcast_iou(a, b) -> np.ndarray:
    """`devkit_iou` of float64 boxes `[..., 4]` broadcast against each other."""
    ih = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1.0
    iw = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1.0
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    area = (a[..., 2] - a[..., 0] + 1.0) * (a[..., 3] - a[..., 1] + 1.0)
    gt_area = (b[..., 2] - b[..., 0] + 1.0) * (b[..., 3] - b[..., 1] + 1.0)
    union = np.where(overlap, area + gt_area - inter, 1.0)
    return inter / union


def _passes(iou, threshold: float, rule: str):
    return iou >= threshold if rule == '>=' else iou > threshold


def _check_iou_rule(iou_threshold: float, iou_rule: str):
    if iou_rule not in IOU_RULES:
        raise ValueError(
            f"iou_rule must be one of {IOU_RULES} ('>=' is the devkit's), got {iou_rule!r}."
        )
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f'iou_threshold must be in (0, 1], got {iou_threshold}.')


def match_batch(
    det_boxes,
    det_scores,
    det_labels,
    num_detections,
    gt_boxes,
    gt_labels,
    gt_difficult,
    num_gt,
    iou_threshold: float = 0.5,
    iou_rule: str = '>=',
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devkit matching of a batch of images, each image's detections of every class against its
    own ground truths.

    Each detection is matched against the ground truths of its own image and class only, in one
    IoU matrix (other images' and classes' pairs masked out). Rows past an image's count are
    padding and play no part.

    Args:
      det_boxes: [B, K, 4] pixel boxes ``[ymin, xmin, ymax, xmax]``, 1-based inclusive.
      det_scores: [B, K] float scores.
      det_labels: [B, K] int labels.
      num_detections: [B] int, the real rows of each image (<= K).
      gt_boxes: [B, G, 4] pixel boxes, same convention.
      gt_labels: [B, G] int labels.
      gt_difficult: [B, G] bool.
      num_gt: [B] int, the real ground-truth rows of each image (<= G).
      iou_threshold: IoU threshold (0.5 in VOC), > 0.
      iou_rule: ``'>='`` (devkit) or ``'>'`` (common Python ports).
    Returns:
      image, index: [D] int64, the real detections (``det_*[image, index]``) by image, then by
        label (ascending), then in stable descending score order within a label.
      flags: [D] int8, their outcomes: ``TP`` (1), ``FP`` (0) or ``IGNORED`` (-1).
    """
    _check_iou_rule(iou_threshold, iou_rule)
    det_scores = np.asarray(det_scores, dtype=np.float64)
    det_labels = np.asarray(det_labels)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
    num_det = np.asarray(num_detections).reshape(-1, 1)
    image, index = np.nonzero(np.arange(det_scores.shape[1]) < num_det)
    labels = det_labels[image, index]
    # Stable: ties keep the detections' order.
    order = np.lexsort((-det_scores[image, index], labels, image))
    image, index, labels = image[order], index[order], labels[order]
    flags = np.full(order.shape, FP, dtype=np.int8)
    num_gt_rows = gt_boxes.shape[1]
    if not num_gt_rows or not len(order):
        return image, index, flags
    boxes = np.asarray(det_boxes, dtype=np.float64)[image, index]
    real_gt = np.arange(num_gt_rows) < np.asarray(num_gt).reshape(-1, 1)
    # A detection's best ground truth does not depend on what is already matched (the devkit
    # takes the best overall, then looks at its state), so greedy matching reduces to: the first
    # detection, in score order, that picks a given non-difficult ground truth is its TP (a
    # ground truth is picked by detections of its own image and class only).
    best, best_iou = _best_ground_truth(boxes, image, labels, gt_boxes, gt_labels, real_gt)
    passed = _passes(best_iou, iou_threshold, iou_rule)
    difficult = np.asarray(gt_difficult, dtype=bool)[image, best]
    flags[passed & difficult] = IGNORED
    candidates = np.flatnonzero(passed & ~difficult)
    _, first = np.unique(image[candidates] * num_gt_rows + best[candidates], return_index=True)
    flags[candidates[first]] = TP
    return image, index, flags


def _best_ground_truth(boxes, image, labels, gt_boxes, gt_labels, real_gt):
    """Each detection's best ground truth: for `boxes` [D, 4] of images `image` [D] and labels
    `labels` [D], against the images' `gt_boxes` [B, G, 4], `gt_labels` [B, G] whose real rows are
    `real_gt` [B, G], the index of the first ground truth of highest IoU (the devkit's strict '>'
    scan) and that IoU, -1 where the image has none of the detection's class ([D] each).

    By `_MATCH_CELLS` detections x ground-truth rows at most at a time: a row's numbers do not
    depend on the others', and one image of 300 objects with 1,000,000 detections (a results
    file) asked for 9 GiB at once.
    """
    gt_labels = np.asarray(gt_labels)
    best = np.empty(len(boxes), np.int64)
    best_iou = np.empty(len(boxes), np.float64)
    step = max(1, _MATCH_CELLS // gt_boxes.shape[1])
    for start in range(0, len(boxes), step):
        rows = slice(start, start + step)
        rows_image = image[rows]
        iou = _broadcast_iou(boxes[rows, None, :], gt_boxes[rows_image])
        # Other classes' and padding ground truths can never be matched: below any IoU, and
        # never passing.
        iou[(labels[rows, None] != gt_labels[rows_image]) | ~real_gt[rows_image]] = -1.0
        best[rows] = np.argmax(iou, axis=1)
        best_iou[rows] = iou[np.arange(len(iou)), best[rows]]
    return best, best_iou


# ----------------------------------------------------------------------------------------------
# Average precision
# ----------------------------------------------------------------------------------------------
def precision_recall(is_tp, num_positives: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall.

    Args:
      is_tp: [K] bool, counted detections (ignored ones removed) in descending score order.
      num_positives: number of non-difficult ground truths (> 0).
    Returns:
      precision, recall: [K] float64.
    """
    tp = np.cumsum(np.asarray(is_tp, dtype=bool), dtype=np.int64)
    counted = np.arange(1, len(tp) + 1, dtype=np.int64)
    return tp / counted, tp / num_positives


def average_precision(is_tp, num_positives: int) -> Tuple[float, float]:
    """VOC2007 11-point and VOC2010+ all-point AP of one class.

    Args:
      is_tp: [K] bool, counted detections (ignored ones removed) in descending score order.
      num_positives: number of non-difficult ground truths; must be > 0.
    Returns:
      (ap_voc07, ap_voc12) floats.
    """
    if num_positives <= 0:
        raise ValueError(f'average_precision needs num_positives > 0, got {num_positives}.')
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    precision, recall = precision_recall(is_tp, num_positives)
    tp = np.cumsum(is_tp, dtype=np.int64)
    ap07 = 0.0
    for k in range(11):
        # recall >= k/10  <=>  10*tp >= k*num_positives, exactly.
        reached = 10 * tp >= k * num_positives
        ap07 += (precision[reached].max() if reached.any() else 0.0) / 11.0
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    change = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    ap12 = float(np.sum((mrec[change] - mrec[change - 1]) * mpre[change]))
    return float(ap07), ap12


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
# eq=False: the fields hold arrays, which make field-wise equality ambiguous.
@dataclasses.dataclass(frozen=True, eq=False)
class ClassResult:
    """Evaluation of one class over the split.

    ``num_difficult``: the ground truth the score leaves out (the devkit's "difficult": what the
    caller flagged, e.g. difficult objects with --remove_difficult and COCO crowd regions);
    ``num_ignored``: the detections matched to them, neither TP nor FP.
    ``precision``, ``recall`` and ``scores`` are [K] float64 over the counted detections (TP or
    FP; ignored ones left out) in descending score order: point k is the curve after keeping
    every detection scoring >= ``scores[k]`` (ties in input order). AP values are ``None`` when
    the class is absent (no non-difficult ground truth).
    """

    label: int
    name: str
    num_gt: int
    num_difficult: int
    num_detections: int
    num_tp: int
    num_fp: int
    num_ignored: int
    ap_voc07: Optional[float]
    ap_voc12: Optional[float]
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray

    @property
    def num_positives(self) -> int:
        return self.num_gt - self.num_difficult

    @property
    def absent(self) -> bool:
        return self.num_positives == 0


@dataclasses.dataclass(frozen=True, eq=False)
class VOCResult:
    """Per-class results (by label, ascending) and mAPs over the present classes.

    ``map_voc07`` / ``map_voc12`` are ``None`` only when no class has a positive.
    """

    classes: Tuple[ClassResult, ...]
    map_voc07: Optional[float]
    map_voc12: Optional[float]
    iou_threshold: float
    iou_rule: str
    num_images: int

    @classmethod
    def of_classes(
        cls, classes: Sequence[ClassResult], iou_threshold: float, iou_rule: str, num_images: int
    ) -> 'VOCResult':
        """The result of `classes` (by label, ascending), its mAPs the means over the present
        ones."""
        present = [c for c in classes if not c.absent]
        return cls(
            classes=tuple(classes),
            map_voc07=float(np.mean([c.ap_voc07 for c in present])) if present else None,
            map_voc12=float(np.mean([c.ap_voc12 for c in present])) if present else None,
            iou_threshold=iou_threshold,
            iou_rule=iou_rule,
            num_images=num_images,
        )

    def ap(self, rule: str = 'voc07') -> Dict[str, Optional[float]]:
        """{class name: AP} under ``rule`` ('voc07' or 'voc12'); ``None`` for absent classes."""
        if rule not in VOC_RULES:
            raise ValueError(f"rule must be 'voc07' or 'voc12', got {rule!r}.")
        return {c.name: getattr(c, 'ap_' + rule) for c in self.classes}

    @property
    def absent_classes(self) -> List[str]:
        return [c.name for c in self.classes if c.absent]

    def format_table(
        self, label_ids: Optional[Mapping[int, int]] = None, rules: Sequence[str] = VOC_RULES
    ) -> str:
        """A fixed-width text table: one row per class, then the mAPs (AP in %).

        label_ids: {label: id shown in the "label" column} (e.g. COCO category ids); default:
          the labels themselves.
        rules: the AP columns, of 'voc07' and 'voc12' (those the evaluation reports).
        """
        if not rules or any(rule not in VOC_RULES for rule in rules):
            raise ValueError(f'rules must be some of {VOC_RULES}, got {rules!r}.')
        rules = [rule for rule in VOC_RULES if rule in rules]

        def pct(value):
            return 'absent' if value is None else f'{100.0 * value:.2f}'

        def aps(result):
            return ''.join(f'  {pct(getattr(result, "ap_" + rule)):>6}' for rule in rules)

        shown = {c.label: c.label for c in self.classes}
        shown.update(label_ids or {})
        width = max([len('class')] + [len(c.name) for c in self.classes])
        head = (
            f'{"label":>5}  {"class":<{width}}  {"gt":>6}  {"ignored":>7}  {"dets":>7}  {"tp":>6}  '
            f'{"fp":>7}  {"on ign":>6}'
            + ''.join(f'  {"AP" + rule[-2:] + " %":>6}' for rule in rules)
        )
        lines = [
            f'VOC detection AP, {self.num_images} images, IoU {self.iou_rule} {self.iou_threshold}',
            head,
            '-' * len(head),
        ]
        for c in self.classes:
            lines.append(
                f'{shown[c.label]:>5}  {c.name:<{width}}  {c.num_gt:>6}  {c.num_difficult:>7}  '
                f'{c.num_detections:>7}  {c.num_tp:>6}  {c.num_fp:>7}  {c.num_ignored:>6}' + aps(c)
            )
        lines.append('-' * len(head))
        present = len(self.classes) - len(self.absent_classes)
        lines.append(
            f'{"":>5}  {"mAP":<{width}}  {f"over {present} of {len(self.classes)} classes":>49}'
            + ''.join(f'  {pct(getattr(self, "map_" + rule)):>6}' for rule in rules)
        )
        lines.append(
            'ignored: objects the score leaves out (difficult ones unless --noremove_difficult, '
            'crowd regions)'
        )
        lines.append('on ign: detections matched to them, neither tp nor fp')
        return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------
# Streaming evaluator
# ----------------------------------------------------------------------------------------------
def shortest_float_text(values) -> List[str]:
    """Rows of finite float64 `values` [N, F] as text: F numbers separated by spaces, each the
    shortest decimal that reads back as exactly that float64: ``repr``'s text from 1e-4 up;
    below it the same value spelled otherwise (``0.0000123`` or ``1e-7`` where ``repr`` writes
    ``1.23e-05`` or ``1e-07``).

    orjson's Ryu formatter does it about 6x faster than ``repr`` (0.07 instead of 0.45 ms for an
    image's 200 detections), which is most of the results files' cost in an evaluation.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f'shortest_float_text takes rows [N, F], got shape {values.shape}.')
    if not len(values):
        return []
    text = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode('ascii')
    return text[2:-2].replace(',', ' ').split('] [')


def _label_runs(labels) -> List[Tuple[int, int, int]]:
    """[(label, start, end)] of the runs of equal values in sorted int `labels` [N]."""
    if not len(labels):
        return []
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    return list(
        zip(labels[starts].tolist(), starts.tolist(), np.r_[starts[1:], len(labels)].tolist())
    )


class _PaddedRows:
    """Checks the padded arrays of a batch of images (`add_batch`), or one image's arrays as a
    batch of one (`add_image`); a ValueError names the first image with bad input.

    Args:
      context: the caller, e.g. ``'VOCEvaluator.add_batch'``; for one image, naming it too.
      image_ids: the batch's ids; None for one image, whose values (``[N]``, ``[N, 4]``,
        ``(height, width[, channels])``) get the leading axis here and whose rows are all real.
    """

    def __init__(self, context: str, image_ids: Optional[Sequence[Hashable]] = None):
        self.context = context
        self.image_ids = image_ids
        self.single = image_ids is None
        self.batch = 1 if self.single else len(image_ids)

    def error(self, image: Optional[int], message: str):
        where = self.context
        if image is not None and not self.single:
            where = f'{self.context}(image_id={self.image_ids[image]!r})'
        raise ValueError(f'{where}: {message}')

    def _bad_shape(self, prefix: str, name: str, shape: Tuple[int, ...]):
        dims = ', 4' if name == 'boxes' else ''
        if self.single:
            self.error(None, f'{prefix}_{name} must have shape [N{dims}], got {shape[1:]}.')
        self.error(
            None,
            f'{prefix}_{name} must have shape [B, N{dims}] (B = {self.batch} images, N the padded '
            f'{prefix} rows of every {prefix}_* array), got {shape}.',
        )

    def group(self, prefix: str, num, **arrays) -> Dict[str, np.ndarray]:
        """`arrays` = {name: (value, dtype)}, all `[B, N]` (boxes `[B, N, 4]`) with the same N,
        whose first `num[i]` rows of image i are real (one image: `[N]`, boxes `[N, 4]`, any
        empty value being N = 0, and `num` unused). Returns {name: `[B, N]` or `[B, N, 4]` array
        of its dtype, 'num': int64 [B], 'real': bool [B, N]}; checks the shapes, the counts
        (integers in [0, N]) and that the real rows are finite (integers for the integer and
        bool dtypes)."""
        out = {}
        for name, (value, _) in arrays.items():
            array = np.asarray(value)
            if array.dtype.kind in 'USO' and array.size:
                # Text is not a number here (np.asarray would have read '3' as one silently),
                # and objects may be None or text.
                strings = array.dtype.kind in 'US' or any(
                    isinstance(item, (str, bytes)) for item in array.ravel().tolist()
                )
                if strings:
                    self.error(None, f'{prefix}_{name} must hold numbers, not text.')
            tail = (4,) if name == 'boxes' else ()
            if self.single:
                # No rows whatever the shape, as in `[]` for [0, 4] boxes.
                array = array.reshape((1, 0) + tail) if array.size == 0 else array[None]
            if (
                array.ndim != 2 + len(tail)
                or array.shape[0] != self.batch
                or array.shape[2:] != tail
            ):
                self._bad_shape(prefix, name, array.shape)
            out[name] = array
        lengths = [array.shape[1] for array in out.values()]
        if len(set(lengths)) > 1:
            if self.single:
                names = [f'{prefix}_{name}' for name in out]
                self.error(
                    None,
                    f'{", ".join(names[:-1])} and {names[-1]} must have the same length, got '
                    f'{", ".join(map(str, lengths))}.',
                )
            name = next(name for name, array in out.items() if array.shape[1] != lengths[0])
            self._bad_shape(prefix, name, out[name].shape)
        size = lengths[0]
        if self.single:
            counts, real = np.array([size]), np.ones((1, size), bool)
        else:
            counts = np.asarray(num)
            if (
                counts.shape != (self.batch,)
                or not np.all(np.isfinite(counts.astype(np.float64)))
                or np.any(counts != np.round(counts))
                or np.any((counts < 0) | (counts > size))
            ):
                self.error(
                    None,
                    f'num_{prefix if prefix == "gt" else "detections"} must hold {self.batch} '
                    f'integers in [0, {size}] (the real rows of each image), got '
                    f'{counts.tolist()}.',
                )
            counts = counts.astype(np.int64)
            real = np.arange(size) < counts[:, None]
        for name, (_, dtype) in arrays.items():
            keep = real if out[name].ndim == 2 else real[..., None]
            if out[name].dtype.kind in 'iub':
                # Integers need no check, and float64 would round those above 2**53.
                out[name] = np.where(keep, out[name], 0).astype(dtype, copy=False)
                continue
            values = out[name].astype(np.float64)
            if not self.single:
                # Padding as zeros: whatever it held casts and takes part in IoUs without warnings.
                values = np.where(keep, values, 0.0)
            ok = np.isfinite(values)
            if dtype is not np.float64:
                ok &= values == np.round(values)
            if not ok.all():
                image, row = np.argwhere(~ok if ok.ndim == 2 else ~ok.all(axis=2))[0].tolist()
                kind = 'finite numbers' if dtype is np.float64 else 'integers'
                self.error(
                    image,
                    f'{prefix}_{name} row {row} must hold {kind}, got '
                    f'{values[image, row].tolist()}.',
                )
            out[name] = values.astype(dtype, copy=False)
        out.update(num=counts, real=real)
        return out

    def ground_truth(self, boxes, labels, difficult, num_gt, names) -> Dict[str, np.ndarray]:
        """The checked 'gt' group (`group`) of padded ground truths, labels in `names`."""
        gt = self.group(
            'gt',
            num_gt,
            boxes=(boxes, np.float64),
            labels=(labels, np.int64),
            difficult=(difficult, bool),
        )
        self._check_labels('gt', gt, names)
        return gt

    def detections(
        self, boxes, scores, labels, num_detections, names, ranks=None
    ) -> Dict[str, np.ndarray]:
        """The checked 'det' group (`group`) of padded detections, labels in `names`; with
        `ranks` ([B, K] integers), its 'ranks' too."""
        arrays = dict(boxes=(boxes, np.float64), scores=(scores, np.float64))
        arrays.update(labels=(labels, np.int64))
        if ranks is not None:
            arrays.update(ranks=(ranks, np.int64))
        det = self.group('det', num_detections, **arrays)
        self._check_labels('det', det, names)
        return det

    def _check_labels(self, prefix: str, group: Dict[str, np.ndarray], names: Mapping[int, str]):
        """Refuses real rows of `group` whose label is not in `names`."""
        known = np.sort(np.fromiter(names, np.int64, len(names)))
        # A sorted lookup: np.isin is ~5x slower on one image's few labels.
        found = known[np.searchsorted(known, group['labels']) % len(known)]
        unknown = (found != group['labels']) & group['real']
        if unknown.any():
            image = int(np.flatnonzero(unknown.any(axis=1))[0])
            labels = sorted(set(group['labels'][image][unknown[image]].tolist()))
            self.error(
                image,
                f'{prefix}_labels has labels {labels} that are not in class_names (known labels: '
                f'{sorted(names)}; 0 is background and never evaluated).',
            )

    def sizes(self, image_shapes) -> np.ndarray:
        """float64 [B, 2] (height, width) of `image_shapes` [B, 2] or [B, 3] (one image: its
        ``(height, width[, channels])``)."""
        if image_shapes is None:
            self.error(
                None,
                'image_shape (height, width) is required for relative boxes; pass the original '
                'image size, or use pixel boxes.'
                if self.single
                else 'image_shapes (height, width) of every image are required for relative '
                'boxes; pass the original image sizes, or use pixel boxes.',
            )
        shapes = np.asarray(image_shapes)
        if self.single:
            shapes = shapes[None]
        if shapes.ndim != 2 or shapes.shape[0] != self.batch or shapes.shape[1] not in (2, 3):
            self.error(
                None,
                f'image_shape must be (height, width) or (height, width, channels), got '
                f'{shapes[0].tolist()!r}.'
                if self.single
                else f'image_shapes must have shape [B, 2] or [B, 3], got {shapes.shape}.',
            )
        sizes = shapes[:, :2].astype(np.float64)
        ok = (sizes > 0) & np.isfinite(sizes)
        if not ok.all():
            image = int(np.flatnonzero(~ok.all(axis=1))[0])
            self.error(
                image,
                f'image_shape{"" if self.single else "s"} must have a positive, finite height '
                f'and width, got {shapes[image].tolist()}.',
            )
        return sizes


def _check_class_names(class_names: Mapping[int, str]) -> Dict[int, str]:
    if not isinstance(class_names, Mapping) or not class_names:
        raise ValueError(
            'class_names must be a non-empty mapping {label: name} of the evaluated '
            'classes (labels >= 1; 0 is background).'
        )
    names = {}
    for label, name in class_names.items():
        if int(label) != label or label < 1:
            raise ValueError(
                f'class_names: label {label!r} must be an integer >= 1 (0 is background).'
            )
        if not isinstance(name, str) or not name:
            raise ValueError(
                f'class_names: name of label {label} must be a non-empty string, got {name!r}.'
            )
        names[int(label)] = name
    if len(set(names.values())) != len(names):
        raise ValueError(f'class_names: names must be unique, got {sorted(names.values())}.')
    return dict(sorted(names.items()))


@dataclasses.dataclass(frozen=True, eq=False)
class CheckedDetections:
    """One batch's detections as :meth:`VOCEvaluator.add_batch` checked them (it returns this),
    for :meth:`VOCResultsWriter.add_checked`, which writes them without checking or converting
    them again (an evaluation feeds both, batch by batch).

    image_ids: the batch's B ids; class_names: the evaluator's {label: name} (the labels are in
    it); boxes: float64 [B, K, 4] devkit pixels ``[ymin, xmin, ymax, xmax]``; scores: float64
    [B, K]; labels: int64 [B, K]; real: bool [B, K], the real rows (the rest is padding).
    """

    image_ids: List[Hashable]
    class_names: Dict[int, str]
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    real: np.ndarray


class VOCEvaluator:
    """Streaming VOC evaluator with bounded memory.

    Memory per class: one float64 score and one int8 flag per detection, plus three counters;
    the set of image ids seen (to refuse an image added twice). No boxes or images are kept.

    Args:
      class_names: {label: name} of the evaluated classes, labels >= 1 (0 is background). Names
        must be unique non-empty strings (any characters).
      iou_threshold: the IoU threshold, 0.5 in VOC.
      iou_rule: ``'>='`` (the devkit's: IoU >= threshold is a match; default) or ``'>'``
        (the common Python ports, e.g. py-faster-rcnn's ``voc_eval``).
      boxes_in_pixels: False (default): boxes are relative ``[ymin, xmin, ymax, xmax]`` and
        ``add_image`` needs ``image_shape`` (``add_batch``: ``image_shapes``); they are converted by
        :func:`pixel_boxes_from_relative`, without rounding (float32 relative ground truth comes
        back within ~1e-4 pixel of its integers, which can only flip an IoU lying exactly on the
        threshold). True: boxes are already devkit pixels (``[ymin, xmin, ymax, xmax]``, 1-based
        inclusive) and ``image_shape`` is not used.
    """

    def __init__(
        self,
        class_names: Mapping[int, str],
        *,
        iou_threshold: float = 0.5,
        iou_rule: str = '>=',
        boxes_in_pixels: bool = False,
    ):
        _check_iou_rule(iou_threshold, iou_rule)
        self._names = _check_class_names(class_names)
        self._iou_threshold = float(iou_threshold)
        self._iou_rule = iou_rule
        self._boxes_in_pixels = bool(boxes_in_pixels)
        self._scores: Dict[int, List[np.ndarray]] = {label: [] for label in self._names}
        self._flags: Dict[int, List[np.ndarray]] = {label: [] for label in self._names}
        # Each stored detection's rank among equal scores: the order added, or add_batch's
        # det_ranks (a results file's line numbers: the devkit's order).
        self._ranks: Dict[int, List[np.ndarray]] = {label: [] for label in self._names}
        self._added = 0  # detections stored so far (the default ranks)
        self._given_ranks = None  # whether add_batch calls gave det_ranks (all or none)
        self._num_gt = dict.fromkeys(self._names, 0)
        self._num_difficult = dict.fromkeys(self._names, 0)
        self._image_ids = set()

    @property
    def num_images(self) -> int:
        return len(self._image_ids)

    def add_image(
        self,
        image_id: Hashable,
        gt_boxes,
        gt_labels,
        gt_difficult,
        det_boxes,
        det_scores,
        det_labels,
        image_shape=None,
    ):
        """Matches one image's detections against its ground truth and stores the outcomes.

        Args:
          image_id: the image's id (hashable, unique over the split).
          gt_boxes: [G, 4] boxes ``[ymin, xmin, ymax, xmax]``, relative or pixels (see class doc).
          gt_labels: [G] int labels (in ``class_names``).
          gt_difficult: [G] bool (or 0/1) VOC difficult flags.
          det_boxes: [D, 4] detection boxes, same convention as ``gt_boxes``.
          det_scores: [D] float scores.
          det_labels: [D] int labels (in ``class_names``).
          image_shape: (height, width[, channels]) of the ORIGINAL image; required for relative
            boxes.
        Raises:
          ValueError naming the image: an image added twice, bad shapes or lengths, values that
          are not finite (or not integers for labels and flags), labels not in ``class_names``,
          a missing or bad ``image_shape``; nothing is added then. An empty value of any shape
          (e.g. ``[]``) is no rows.
        """
        self._check_new([image_id], 'VOCEvaluator.add_image')
        self._check_ranks_mode(False, 'VOCEvaluator.add_image')
        self._add(
            _PaddedRows(f'VOCEvaluator.add_image(image_id={image_id!r})'),
            [image_id],
            (gt_boxes, gt_labels, gt_difficult, None),
            (det_boxes, det_scores, det_labels, None),
            image_shape,
        )
        self._given_ranks = False

    def add_batch(
        self,
        image_ids: Sequence[Hashable],
        gt_boxes,
        gt_labels,
        gt_difficult,
        num_gt,
        det_boxes,
        det_scores,
        det_labels,
        num_detections,
        image_shapes=None,
        det_ranks=None,
    ):
        """`add_image` of B images at once, from padded arrays (an evaluation batch's): the same
        outcomes and results as adding them one by one, in order, without a Python loop over
        images or detections.

        Args:
          image_ids: B ids (hashable, unique over the split).
          gt_boxes: [B, G, 4]; gt_labels, gt_difficult: [B, G]; num_gt: [B] int, the real rows
            of each image (the rows after them are padding, whatever they hold).
          det_boxes: [B, K, 4]; det_scores, det_labels: [B, K]; num_detections: [B] int.
          image_shapes: [B, 2] or [B, 3] (height, width[, channels]) of the ORIGINAL images;
            required for relative boxes.
          det_ranks: [B, K] integers ranking detections of equal scores over the split (e.g.
            their lines in a results file, as the devkit does); None: the order they are added.
            Every call of an evaluator gives them, or none does.
        Returns:
          The detections as checked, in pixels (`CheckedDetections`), for
          :meth:`VOCResultsWriter.add_checked`.
        Raises:
          ValueError naming the first image with bad input; nothing of the batch is added then.
        """
        image_ids = list(image_ids)
        context = 'VOCEvaluator.add_batch'
        self._check_new(image_ids, context)
        given = det_ranks is not None
        self._check_ranks_mode(given, context)
        checked = self._add(
            _PaddedRows(context, image_ids),
            image_ids,
            (gt_boxes, gt_labels, gt_difficult, num_gt),
            (det_boxes, det_scores, det_labels, num_detections),
            image_shapes,
            det_ranks,
        )
        self._given_ranks = given
        return checked

    def _check_ranks_mode(self, given, context):
        if self._given_ranks not in (None, given):
            raise ValueError(
                f'{context}: det_ranks must be given to every add_batch call of an evaluator or '
                f'to none, without add_image then (ranks of equal scores cannot mix with the '
                f'order of adding).'
            )

    def _check_new(self, image_ids, context):
        batch = set()  # not a copy of every id seen: that made add_image quadratic
        for image_id in image_ids:
            if image_id in self._image_ids or image_id in batch:
                raise ValueError(
                    f'{context}(image_id={image_id!r}): this image was already added; each image '
                    f'must be added once (its detections are matched against its ground truth '
                    f'in one go).'
                )
            batch.add(image_id)

    def _add(self, rows, image_ids, gt, det, image_shapes, det_ranks=None):
        """Checks with `rows` (a `_PaddedRows`), then stores, gt = (boxes, labels, difficult,
        num), det = (boxes, scores, labels, num), `image_shapes` and `det_ranks`, as `add_batch`
        takes them or, nums None, as `add_image` does. Returns the `CheckedDetections`."""
        gt = rows.ground_truth(*gt, self._names)
        det = rows.detections(*det, self._names, ranks=det_ranks)
        gt_boxes, det_boxes = gt['boxes'], det['boxes']
        if not self._boxes_in_pixels:
            sizes = rows.sizes(image_shapes)
            gt_boxes = _batch_pixel_boxes(gt_boxes, sizes)
            det_boxes = _batch_pixel_boxes(det_boxes, sizes)
        self._image_ids.update(image_ids)
        gt_labels, real = gt['labels'], gt['real']
        labels, counts = np.unique(gt_labels[real], return_counts=True)
        difficult = dict(zip(*np.unique(gt_labels[real & gt['difficult']], return_counts=True)))
        for label, count in zip(labels.tolist(), counts.tolist()):
            self._num_gt[label] += count
            self._num_difficult[label] += int(difficult.get(label, 0))
        det_scores, det_labels = det['scores'], det['labels']
        image, index, flags = match_batch(
            det_boxes,
            det_scores,
            det_labels,
            det['num'],
            gt_boxes,
            gt_labels,
            gt['difficult'],
            gt['num'],
            self._iou_threshold,
            self._iou_rule,
        )
        labels, scores = det_labels[image, index], det_scores[image, index]
        if 'ranks' in det:
            ranks = det['ranks'][image, index]
        else:  # images in the order they came, each in its score order
            ranks = self._added + np.arange(len(labels))
            self._added += len(labels)
        by_label = np.argsort(labels, kind='stable')
        labels, scores, flags = labels[by_label], scores[by_label], flags[by_label]
        ranks = ranks[by_label]
        for label, start, end in _label_runs(labels):
            self._scores[label].append(scores[start:end])
            self._flags[label].append(flags[start:end])
            self._ranks[label].append(ranks[start:end])
        return CheckedDetections(
            image_ids, self._names, det_boxes, det_scores, det_labels, det['real']
        )

    def compute(self) -> VOCResult:
        """Per-class AP under both rules, the mAPs over present classes, curves and counts."""
        classes = []
        for label, name in self._names.items():
            scores = np.concatenate(self._scores[label] + [np.zeros(0)])
            flags = np.concatenate(self._flags[label] + [np.zeros(0, np.int8)])
            ranks = np.concatenate(self._ranks[label] + [np.zeros(0, np.int64)])
            # Images were matched separately; equal scores in rank order, as the devkit's
            # stable sort of a results file.
            order = np.lexsort((ranks, -scores))
            scores, flags = scores[order], flags[order]
            counted = flags != IGNORED
            is_tp = flags[counted] == TP
            num_positives = self._num_gt[label] - self._num_difficult[label]
            if num_positives > 0:
                ap07, ap12 = average_precision(is_tp, num_positives)
                precision, recall = precision_recall(is_tp, num_positives)
            else:
                ap07 = ap12 = None
                precision = recall = np.zeros(0)
            classes.append(
                ClassResult(
                    label=label,
                    name=name,
                    num_gt=self._num_gt[label],
                    num_difficult=self._num_difficult[label],
                    num_detections=len(flags),
                    num_tp=int(is_tp.sum()),
                    num_fp=int((~is_tp).sum()),
                    num_ignored=int((~counted).sum()),
                    ap_voc07=ap07,
                    ap_voc12=ap12,
                    precision=precision,
                    recall=recall,
                    scores=scores[counted],
                )
            )
        return VOCResult.of_classes(classes, self._iou_threshold, self._iou_rule, self.num_images)


# ----------------------------------------------------------------------------------------------
# Results files: <competition>_det_<split>_<class>.txt, "image_id score xmin ymin xmax ymax"
# ----------------------------------------------------------------------------------------------
_RESULTS_LINE = '"image_id score xmin ymin xmax ymax"'
# The devkit's results files are tens of MB (VOC2007 test: 4952 images); 2 GiB, as COCO's, is
# ~40 million detections of one class.
MAX_RESULTS_BYTES = 2 << 30


def voc_results_path(directory: str, split: str, file_stem: str, competition: str = 'comp4') -> str:
    """Path of the devkit results file of one class: ``<dir>/<competition>_det_<split>_<stem>.txt``.

    ``file_stem`` is the class's stem from :func:`voc_results_paths` (``file_names``' rule; the
    class name itself when it is already a safe, unique file name, as VOC's are).
    """
    return os.path.join(directory, f'{competition}_det_{split}_{file_stem}.txt')


def voc_results_paths(
    directory: str, split: str, class_names: Mapping[int, str], competition: str = 'comp4'
) -> Dict[int, str]:
    """{label: results file path} of every class, stems by ``file_names.safe_file_names`` over the
    names in label order (so writer and reader agree)."""
    names = _check_class_names(class_names)
    stems = file_names.safe_file_names(names.values())
    return {
        label: voc_results_path(directory, split, stems[name], competition)
        for label, name in names.items()
    }


def results_file_id(image_id: str) -> str:
    """`image_id` as a results file's first column: its whitespace (which separates the columns)
    and `%` percent-encoded as UTF-8 bytes (`IMG 030` -> `IMG%20030`, LabelImg-style file names),
    everything else as is, so ids without them (VOC's, COCO's) are written unchanged and the
    devkit reads those files. :func:`read_voc_results` decodes it."""
    if not any(ch.isspace() or ch == '%' for ch in image_id):
        return image_id
    return ''.join(
        ''.join(f'%{b:02X}' for b in ch.encode('utf-8')) if ch.isspace() or ch == '%' else ch
        for ch in image_id
    )


@dataclasses.dataclass(frozen=True, eq=False)
class VOCClassDetections:
    """Detections of one class read from a results file, in file order.

    image_ids: [N] str; scores: [N] float64; boxes: [N, 4] float64 ``[ymin, xmin, ymax, xmax]``
    in 1-based inclusive pixels (the file's order is xmin ymin xmax ymax); lines: [N] int64, each
    detection's 1-based line in the file (blank lines are skipped), for messages.
    """

    image_ids: List[str]
    scores: np.ndarray
    boxes: np.ndarray
    lines: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    missing: bool = False  # no results file (read with missing_ok)


class VOCResultsWriter:
    """Streams detections into the devkit's per-class results files, atomically.

    Every class gets a file (possibly empty). Lines are ``image_id score xmin ymin xmax ymax``
    with 1-based pixel coordinates; numbers are written as the shortest text that reads back
    as the same float64 (:func:`shortest_float_text`), so that reading back gives the same
    values and the same score ties. Files are written
    under temporary names and renamed by :meth:`close`; :meth:`abort` (or leaving a ``with``
    block by an exception) deletes them.

    Args:
      directory: existing output directory.
      split: the image set name, e.g. ``'test'``.
      class_names: {label: name} as for :class:`VOCEvaluator`.
      boxes_in_pixels: False: relative boxes plus ``image_shape`` (converted by
        :func:`pixel_boxes_from_relative`); True: pixel boxes ``[ymin, xmin, ymax, xmax]``.
      competition: file prefix, ``'comp4'`` (any training data) or ``'comp3'`` (VOC data only).
    """

    def __init__(
        self,
        directory: str,
        split: str,
        class_names: Mapping[int, str],
        *,
        boxes_in_pixels: bool = False,
        competition: str = 'comp4',
    ):
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f'VOCResultsWriter: output directory {directory!r} does not exist; create it first.'
            )
        self._names = _check_class_names(class_names)
        self._boxes_in_pixels = bool(boxes_in_pixels)
        self._paths = voc_results_paths(directory, split, self._names, competition)
        self._files = {}
        try:
            for label, path in self._paths.items():
                # A Ctrl-C or SIGTERM as one is made: it is listed before `abort` runs.
                with signals.held():
                    fd, tmp = atomic_io.mkstemp_for(path)  # the umask's permissions, not 0600
                    self._files[label] = (os.fdopen(fd, 'w'), tmp)
        except BaseException:
            self.abort()
            raise

    def add_image(self, image_id: str, det_boxes, det_scores, det_labels, image_shape=None):
        """Appends one image's detections (shapes as in :meth:`VOCEvaluator.add_image`)."""
        context = f'VOCResultsWriter.add_image(image_id={image_id!r})'
        image_ids = self._check_ids([image_id], context)
        self._add(
            _PaddedRows(context), image_ids, (det_boxes, det_scores, det_labels, None), image_shape
        )

    def add_batch(
        self, image_ids, det_boxes, det_scores, det_labels, num_detections, image_shapes=None
    ):
        """Appends B images' detections from padded arrays (shapes as in
        :meth:`VOCEvaluator.add_batch`): the same files as `add_image` image by image."""
        context = 'VOCResultsWriter.add_batch'
        image_ids = self._check_ids(image_ids, context)
        self._add(
            _PaddedRows(context, image_ids),
            image_ids,
            (det_boxes, det_scores, det_labels, num_detections),
            image_shapes,
        )

    def add_checked(self, checked: CheckedDetections):
        """Appends the detections :meth:`VOCEvaluator.add_batch` checked and returned: the same
        files as :meth:`add_batch` with that call's detection arguments, without checking and
        converting them a second time. The evaluator's `class_names` must be the writer's."""
        context = 'VOCResultsWriter.add_checked'
        image_ids = self._check_ids(checked.image_ids, context)
        if checked.class_names != self._names:
            raise ValueError(
                f'{context}: the detections were checked against class_names '
                f'{checked.class_names}, the writer has {self._names}; give the evaluator and the '
                f'writer the same class_names.'
            )
        self._write_rows(image_ids, checked.boxes, checked.scores, checked.labels, checked.real)

    def _add(self, rows, image_ids, det, image_shapes):
        """Checks with `rows` (a `_PaddedRows`), then writes, det = (boxes, scores, labels, num)
        and `image_shapes`, as `add_batch` takes them or, num None, as `add_image` does."""
        det = rows.detections(*det, self._names)
        boxes = det['boxes']
        if not self._boxes_in_pixels:
            boxes = _batch_pixel_boxes(boxes, rows.sizes(image_shapes))
        self._write_rows(image_ids, boxes, det['scores'], det['labels'], det['real'])

    def _write_rows(self, image_ids, boxes, scores, labels, real):
        """`_write` of the `real` rows (bool [B, K]) of checked padded pixel `boxes` [B, K, 4],
        `scores` and `labels` [B, K] of the images `image_ids` [B] (str)."""
        file_ids = [results_file_id(image_id) for image_id in image_ids]
        self._write(
            [file_ids[i] for i in np.nonzero(real)[0].tolist()],
            boxes[real],
            scores[real],
            labels[real],
        )

    def _check_ids(self, image_ids, context):
        if not self._files:
            raise RuntimeError(f'{context}: the writer is already closed.')
        image_ids = [str(image_id) for image_id in image_ids]
        for image_id in image_ids:
            if not image_id:
                raise ValueError(f'{context}: image ids must be non-empty, got {image_id!r}.')
        return image_ids

    def _write(self, image_ids, boxes, scores, labels):
        """One line per detection (`image_ids` [N] str, float64 pixel `boxes` [N, 4], `scores`
        [N], int `labels` [N]), appended to its class's file in the given order; one write per
        class."""
        order = np.argsort(labels, kind='stable')
        labels = labels[order]
        values = np.column_stack([scores[order], boxes[order][:, [1, 0, 3, 2]]])
        lines = [
            f'{image_ids[i]} {numbers}\n'
            for i, numbers in zip(order.tolist(), shortest_float_text(values))
        ]
        for label, start, end in _label_runs(labels):
            self._files[label][0].write(''.join(lines[start:end]))

    def close(self) -> Dict[int, str]:
        """Renames the files into place; returns {label: path}."""
        for fh, _ in self._files.values():
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the renames: a crash leaves old or new files
            fh.close()
        for label, (_, tmp) in self._files.items():
            os.replace(tmp, self._paths[label])
        if self._paths:
            atomic_io.fsync_dir(os.path.dirname(os.path.abspath(next(iter(self._paths.values())))))
        self._files = {}
        return dict(self._paths)

    def abort(self):
        """Closes and deletes the temporary files; nothing is written."""
        for fh, tmp in self._files.values():
            fh.close()
            if os.path.exists(tmp):
                os.remove(tmp)
        self._files = {}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_voc_results(
    directory: str,
    split: str,
    class_names: Mapping[int, str],
    competition: str = 'comp4',
    missing_ok: bool = False,
) -> Dict[int, VOCClassDetections]:
    """Reads the devkit results files of every class in ``class_names``.

    Returns:
      {label: VOCClassDetections} (file order kept, boxes as ``[ymin, xmin, ymax, xmax]`` pixels);
      with ``missing_ok``, a class without a file has no detections (and ``missing`` set).
    Raises:
      FileNotFoundError if a class has no file (unless ``missing_ok``); ValueError naming the
      file and line of a malformed line or of bytes that are not UTF-8;
      safe_io.UnsafeFileError (an OSError): a file is not a regular file or is larger than
      MAX_RESULTS_BYTES.
    """
    results = {}
    names = _check_class_names(class_names)
    paths = voc_results_paths(directory, split, names, competition)
    for label, name in names.items():
        path = paths[label]
        if missing_ok and not os.path.lexists(path):
            results[label] = VOCClassDetections(
                image_ids=[], scores=np.zeros(0), boxes=np.zeros((0, 4)), missing=True
            )
            continue
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'read_voc_results: missing results file {path!r} for class '
                f'{name!r} (every class needs a file, possibly empty).'
            )
        text = safe_io.read_text(path, MAX_RESULTS_BYTES, 'results file', f'lines {_RESULTS_LINE}')
        ids, values, lines = _parse_results(text, path)
        results[label] = VOCClassDetections(
            image_ids=ids,
            scores=values[:, 0],
            boxes=values[:, [2, 1, 4, 3]],
            lines=lines,
        )
    return results


# Lines whose numbers `_parse_results` converts at once (their text then freed).
_RESULTS_CHUNK = 1 << 16


def _parse_results(text, path):
    """(image ids, float64 `[N, 5]` score and box numbers, int64 `[N]` line numbers) of the
    text of results file `path`. The numbers are converted a chunk of lines at a time (numpy
    parses as `float` does): a number at a time, each line's finiteness checked by numpy, took
    20 us a line (a million detections: 20 s). Raises ValueError naming the first line that is
    not `_RESULTS_LINE` with 6 fields of finite numbers."""
    all_lines = text.split('\n')

    def bad(line_no, why):
        return ValueError(
            f'{path}:{line_no}: expected {_RESULTS_LINE} (6 fields, finite numbers), '
            f'got {texts.shown(all_lines[line_no - 1].strip())} ({why}).'
        )

    def converted(numbers):
        """float64 `[n, 5]` of `numbers`, the number fields of the last n lines listed."""
        first = len(lines) - len(numbers) // 5
        try:
            chunk = np.array(numbers, dtype=np.float64).reshape(-1, 5)
        except ValueError:  # which line, and float's own words for it
            for i, line_no in enumerate(lines[first:]):
                for value in numbers[5 * i : 5 * i + 5]:
                    try:
                        float(value)
                    except ValueError as err:
                        raise bad(line_no, err) from None
            raise
        finite = np.isfinite(chunk).all(axis=1)
        if not finite.all():
            raise bad(lines[first + int(np.argmin(finite))], 'non-finite number')
        return chunk

    ids, lines, numbers, chunks = [], [], [], []
    for line_no, line in enumerate(all_lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            converted(numbers)  # an earlier bad line first
            raise bad(line_no, f'{len(fields)} fields')
        ids.append(urllib.parse.unquote(fields[0]) if '%' in fields[0] else fields[0])
        lines.append(line_no)
        numbers += fields[1:]
        if len(numbers) == 5 * _RESULTS_CHUNK:
            chunks.append(converted(numbers))
            numbers = []
    chunks.append(converted(numbers))
    return ids, np.concatenate(chunks), np.asarray(lines, np.int64)
