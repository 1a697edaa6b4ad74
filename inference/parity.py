"""Do two models detect the same things? Order-free matching of the batched detection outputs
(`detection.DETECTION_OUTPUTS`: boxes relative `[ymin, xmin, ymax, xmax]`, scores, classes,
num_detections) of an exported model against a reference (the frozen graph, the checkpoint).

Order-free because near-equal scores (ties within float rounding) may be ordered differently by
two runtimes; a detection matches one of the other model's with the same class and score and box
within a tolerance, each used once."""

import dataclasses

import numpy as np


def match_detections(got, want, b_got=0, b_want=0, tol=1e-4):
    """Pairs the detections of `want` (image `b_want`) with those of `got` (image `b_got`).

    Returns (matched, num_want, max score difference, max box difference) over the matched
    pairs (boxes: the largest coordinate difference)."""
    n = int(want['num_detections'][b_want])
    m = int(got['num_detections'][b_got])
    used = np.zeros(m, bool)
    matched, score_diff, box_diff = 0, 0.0, 0.0
    for i in range(n):
        cls = want['detection_classes'][b_want, i]
        ds = np.abs(got['detection_scores'][b_got, :m] - want['detection_scores'][b_want, i])
        db = np.abs(got['detection_boxes'][b_got, :m] - want['detection_boxes'][b_want, i]).max(1)
        ok = (~used) & (got['detection_classes'][b_got, :m] == cls) & (ds <= tol) & (db <= tol)
        if ok.any():
            j = np.flatnonzero(ok)[np.argmin(ds[ok])]
            used[j] = True
            matched += 1
            score_diff, box_diff = max(score_diff, float(ds[j])), max(box_diff, float(db[j]))
    return matched, n, score_diff, box_diff


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

    def add(self, got, want):
        """Adds a batch: `got` and `want` are one batch's outputs of the two models."""
        for b in range(len(want['num_detections'])):
            matched, n, ds, db = match_detections(got, want, b, b, self.tol)
            self.images += 1
            self.reference_detections += n
            self.detections += int(got['num_detections'][b])
            self.matched += matched
            self.max_score_diff = max(self.max_score_diff, ds)
            self.max_box_diff = max(self.max_box_diff, db)

    @property
    def every_detection_matched(self):
        return self.matched == self.reference_detections == self.detections

    def summary(self):
        return (
            f'{self.matched} of the reference\'s {self.reference_detections} detections matched '
            f'({self.detections} detections) on {self.images} images, within {self.tol:g}: '
            f'largest score difference {self.max_score_diff:.2g}, box {self.max_box_diff:.2g}'
        )
