"""Drawing detections: OpenCV (annotated files, video) and matplotlib (notebooks).

Detections of one image are a dict `{'boxes': [n, 4] relative [ymin, xmin, ymax, xmax],
'scores': [n], 'classes': [n] int labels >= 1}` (`inference.detection.split_detections`).
`class_names` is a sequence (label l is `class_names[l - 1]`) or a dict `{label: name}`.
"""

import cv2
import numpy as np

# Tableau 10 (RGB): distinct, readable on photos; label l takes colour (l - 1) % 10.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

# Labels laid out per image at most (`draw_detections`): the best-scoring ones; the others get
# their boxes only. Far above what an image shows readably, and above the usual keep_top_k (200),
# so that the usual images are drawn as without a bound; `layout_labels` is cubic in the count
# (every detection of a --select_threshold=0 --keep_top_k=0 run, thousands, took minutes per
# image).
MAX_LABELS = 300


def color_of(label):
    """RGB colour of a label."""
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def _text_color(rgb):
    # Black on light backgrounds, white on dark ones (ITU-R BT.601 luma).
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150 else (255, 255, 255)


def label_text(label, score, class_names):
    name = class_names[int(label)] if isinstance(class_names, dict) else class_names[int(label) - 1]
    return f'{name} {score:.2f}'


def _pixel_box(box, height, width):
    # Corners far outside the image (finite codes of a barely trained model decode to 1e26)
    # overflow OpenCV's int coordinates; the part drawn is the same.
    ymin, xmin, ymax, xmax = np.clip(np.asarray(box, np.float64), -8.0, 9.0)
    return (
        int(round(xmin * width)),
        int(round(ymin * height)),
        int(round(xmax * width)),
        int(round(ymax * height)),
    )


def _overlaps(a, b):
    """Half-open pixel rectangles `(left, top, right, bottom)` share a pixel."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def layout_labels(boxes, sizes, height, width):
    """Where each detection's label goes, so that no two labels overlap.

    Args:
      boxes: pixel boxes `(x0, y0, x1, y1)`, in drawing order (earlier labels get the better
        places: pass detections by descending score).
      sizes: `(w, h)` of each label in pixels.
      height, width: the image's size.
    Returns:
      list of half-open rectangles `(left, top, right, bottom)` inside the image (as far as the
      label fits): above the box when that space is free, else inside its top edge, below it,
      inside its bottom edge, else the free place nearest the box in the same column; where no
      place is free (more labels than the column holds), the candidate overlapping least.

    Each label weighs its candidates (up to twice the labels in its column) against the labels of
    its column: quadratic per label, cubic in all (vectorised; `draw_detections` lays out at most
    MAX_LABELS).
    """
    placed = []
    for (x0, y0, x1, y1), (w, h) in zip(boxes, sizes):
        left = min(max(x0, 0), max(width - w, 0))
        clamp = lambda top: min(max(top, 0), max(height - h, 0))  # noqa: E731
        preferred = [clamp(t) for t in (y0 - h, y0, y1, y1 - h)]
        column = [r for r in placed if r[0] < left + w and left < r[2]]
        others = {clamp(t) for r in column for t in (r[3], r[1] - h)} - set(preferred)
        distance = lambda t: max(y0 - h - t, t - y1, 0)  # noqa: E731
        candidates = preferred + sorted(others, key=lambda t: (distance(t), t))
        rects = [(left, t, left + w, t + h) for t in candidates]
        if not column:
            placed.append(rects[0])
            continue
        # `_overlaps` of every candidate (rows) with every label of the column (columns); all in
        # one column, so only the vertical extents can keep them apart.
        cand = np.array(rects, np.int64)[:, None, :]
        them = np.array(column, np.int64)[None, :, :]
        hits = (
            (cand[..., 0] < them[..., 2])
            & (them[..., 0] < cand[..., 2])
            & (cand[..., 1] < them[..., 3])
            & (them[..., 1] < cand[..., 3])
        )
        free = ~hits.any(axis=1)
        if free.any():
            placed.append(rects[int(np.argmax(free))])  # the first free candidate
            continue
        overlap = (
            np.maximum(
                0, np.minimum(cand[..., 2], them[..., 2]) - np.maximum(cand[..., 0], them[..., 0])
            )
            * np.maximum(
                0, np.minimum(cand[..., 3], them[..., 3]) - np.maximum(cand[..., 1], them[..., 1])
            )
        ).sum(axis=1)
        placed.append(rects[int(np.argmin(overlap))])  # the first of the least overlapping
    return placed


def unlabelled_count(detections, min_score=0.0, max_labels=MAX_LABELS):
    """How many of the detections (score >= min_score) `draw_detections` draws without a label:
    those after the `max_labels` best-scoring (None: no bound)."""
    kept = int(np.count_nonzero(np.asarray(detections['scores']) >= min_score))
    return 0 if max_labels is None else max(kept - int(max_labels), 0)


def draw_detections(
    image, detections, class_names, min_score=0.0, rgb=True, thickness=None, max_labels=MAX_LABELS
):
    """Returns a copy of `image` (uint8 `[H, W, 3]`, RGB unless `rgb=False`, i.e. BGR) with boxes
    and "name score" labels on a filled background in the class colour. Labels do not overlap
    each other (`layout_labels`); higher scores get the places nearest their boxes. Only the
    `max_labels` best-scoring detections get a label (None: every one); the others, their boxes
    (`unlabelled_count`)."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 300))
    font_scale = max(0.4, min(height, width) / 800)
    kept = [
        (box, score, label)
        for box, score, label in zip(
            detections['boxes'], detections['scores'], detections['classes']
        )
        if score >= min_score
    ]
    kept.sort(key=lambda item: -float(item[1]))
    boxes, texts, sizes = [], [], []
    labelled = len(kept) if max_labels is None else min(len(kept), int(max_labels))
    for box, score, label in kept[:labelled]:
        boxes.append(_pixel_box(box, height, width))
        texts.append(label_text(label, score, class_names))
        (tw, th), baseline = cv2.getTextSize(texts[-1], cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        sizes.append((tw + 3, th + baseline + 3))
    colors = []
    # The unlabelled boxes first: the labelled ones (drawn as without them) stay on top.
    for box, _, label in kept[labelled:]:
        color = color_of(label) if rgb else color_of(label)[::-1]
        x0, y0, x1, y1 = _pixel_box(box, height, width)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
    for (x0, y0, x1, y1), (_, _, label) in zip(boxes, kept):
        color, text_color = color_of(label), _text_color(color_of(label))
        if not rgb:
            color, text_color = color[::-1], text_color[::-1]
        colors.append((color, text_color))
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
    # Labels after every box, so that no box line crosses a label.
    for text, (left, top, right, bottom), (color, text_color) in zip(
        texts, layout_labels(boxes, sizes, height, width), colors
    ):
        cv2.rectangle(out, (left, top), (right - 1, bottom - 1), color, -1)
        (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        cv2.putText(
            out,
            text,
            (left + 1, top + th + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            text_color,
            1,
            cv2.LINE_AA,
        )
    return out


def show_detections(image, detections, class_names, min_score=0.0, ax=None, figsize=(10, 10)):
    """Plots an RGB image with its detections in a notebook (matplotlib); returns the axes."""
    import matplotlib.pyplot as plt  # Only notebooks need it; scripts draw with OpenCV.

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(image)
    height, width = image.shape[:2]
    for box, score, label in zip(detections['boxes'], detections['scores'], detections['classes']):
        if score < min_score:
            continue
        color = np.array(color_of(label)) / 255.0
        x0, y0, x1, y1 = _pixel_box(box, height, width)
        ax.add_patch(
            plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2)
        )
        ax.text(
            x0,
            y0,
            label_text(label, score, class_names),
            color=np.array(_text_color(color_of(label))) / 255.0,
            fontsize=9,
            va='bottom',
            bbox={'facecolor': color, 'edgecolor': color, 'pad': 1},
        )
    ax.axis('off')
    return ax
