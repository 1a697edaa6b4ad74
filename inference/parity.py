"""Do two models detect the same things? Order-free matching of the batched detection outputs
(`detection.DETECTION_OUTPUTS`: boxes relative `[ymin, xmin, ymax, xmax]`, scores, classes,
num_detections) of an exported model against a reference (the frozen graph, the checkpoint).

Order-free because near-equal scores (ties within float rounding) may be ordered differently by
two runtimes; a detection matches one of the other model's with the same class and score and box
within a tolerance, each used once."""

import dataclasses

import numpy as np


def _match(got, want, b_got, b_want, tol):
    """(want's matched mask [n], got's used mask [m], max score difference, max box difference)."""
    n = int(want['num_detections'][b_want])
    m = int(got['num_detections'][b_got])
    used = np.zeros(m, bool)
    found = np.zeros(n, bool)
    score_diff, box_diff = 0.0, 0.0
    for i in range(n):
        cls = want['detection_classes'][b_want, i]
        ds = np.abs(got['detection_scores'][b_got, :m] - want['detection_scores'][b_want, i])
        db = np.abs(got['detection_boxes'][b_got, :m] - want['detection_boxes'][b_want, i]).max(1)
        ok = (~used) & (got['detection_classes'][b_got, :m] == cls) & (ds <= tol) & (db <= tol)
        if ok.any():
            j = np.flatnonzero(ok)[np.argmin(ds[ok])]
            used[j] = found[i] = True
            score_diff, box_diff = max(score_diff, float(ds[j])), max(box_diff, float(db[j]))
    return found, used, score_diff, box_diff


def match_detections(got, want, b_got=0, b_want=0, tol=1e-4):
    """Pairs the detections of `want` (image `b_want`) with those of `got` (image `b_got`).

    Returns (matched, num_want, max score difference, max box difference) over the matched
    pairs (boxes: the largest coordinate difference)."""
    found, _, score_diff, box_diff = _match(got, want, b_got, b_want, tol)
    return int(found.sum()), len(found), score_diff, box_diff


def _near_cut(scores, kept_by_other, tol):
    """Which of `scores` (one model's unmatched detections) lie within `tol` of the lowest score
    the other model kept (bool mask): near-ties at a cut (the score threshold, keep_top_k), where
    float rounding decides which of two detections is kept."""
    if not len(kept_by_other):
        return np.zeros(len(scores), bool)
    return np.abs(scores - kept_by_other.min()) <= tol


def _near_nms_tie(classes, scores, other_classes, other_scores, tol):
    """Which of one model's unmatched detections (`classes`, `scores`) have an unmatched
    detection of the other model of the same class within `tol` in score (bool mask): near-ties
    in NMS, where float rounding decides which of two overlapping boxes suppresses the other."""
    same = (classes[:, None] == other_classes[None, :]) & (
        np.abs(scores[:, None] - other_scores[None, :]) <= tol
    )
    return same.any(axis=1)


@dataclasses.dataclass
class Parity:
    """Totals over the images compared so far (see `add`)."""

    tol: float = 1e-4
    images: int = 0
    reference_detections: int = 0
    detections: int = 0
    matched: int = 0
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0
    # Unmatched detections of either model within tol of the other's lowest kept score.
    unmatched_near_cut: int = 0
    # The other unmatched ones beside an unmatched detection of the other model of the same
    # class and score (another box kept by NMS).
    unmatched_nms_ties: int = 0

    def add(self, got, want):
        """Adds a batch: `got` and `want` are one batch's outputs of the two models."""
        for b in range(len(want['num_detections'])):
            found, used, ds, db = _match(got, want, b, b, self.tol)
            want_scores = want['detection_scores'][b, : len(found)]
            got_scores = got['detection_scores'][b, : len(used)]
            self.images += 1
            self.reference_detections += len(found)
            self.detections += len(used)
            self.matched += int(found.sum())
            self.max_score_diff = max(self.max_score_diff, ds)
            self.max_box_diff = max(self.max_box_diff, db)
            lost = (
                want['detection_classes'][b, : len(found)][~found],
                want_scores[~found],
            )
            extra = (got['detection_classes'][b, : len(used)][~used], got_scores[~used])
            for (classes, scores), other, kept_by_other in (
                (lost, extra, got_scores),
                (extra, lost, want_scores),
            ):
                cut = _near_cut(scores, kept_by_other, self.tol)
                nms = _near_nms_tie(classes, scores, *other, self.tol) & ~cut
                self.unmatched_near_cut += int(cut.sum())
                self.unmatched_nms_ties += int(nms.sum())

    @property
    def every_detection_matched(self):
        return self.matched == self.reference_detections == self.detections

    def summary(self):
        return (
            f'{self.matched} of the reference\'s {self.reference_detections} detections matched '
            f'({self.detections} detections) on {self.images} images, within {self.tol:g}: '
            f'largest score difference {self.max_score_diff:.2g}, box {self.max_box_diff:.2g}; '
            f'{self.unmatched} unmatched in all (both models), {self.unmatched_near_cut} of them '
            f"within {self.tol:g} of the other model's lowest kept score (a near-tie at a cut), "
            f'{self.unmatched_nms_ties} beside an unmatched detection of the other model of the '
            f'same class and score (a near-tie in NMS: another box kept)'
        )

    @property
    def unmatched(self):
        return self.reference_detections + self.detections - 2 * self.matched
