"""Drawing detections: OpenCV (annotated files, video) and matplotlib (notebooks).

Detections of one image are a dict `{'boxes': [n, 4] relative [ymin, xmin, ymax, xmax],
'scores': [n], 'classes': [n] int labels >= 1}` (`inference.detection.split_detections`).
`class_names` is a sequence (label l is `class_names[l - 1]`) or a dict `{label: name}`.
"""
import cv2
import numpy as np

# Tableau 10 (RGB): distinct, readable on photos; label l takes colour (l - 1) % 10.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


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
    ymin, xmin, ymax, xmax = box
    return (int(round(xmin * width)), int(round(ymin * height)),
            int(round(xmax * width)), int(round(ymax * height)))


def draw_detections(image, detections, class_names, min_score=0., rgb=True, thickness=None):
    """Returns a copy of `image` (uint8 `[H, W, 3]`, RGB unless `rgb=False`, i.e. BGR) with boxes
    and "name score" labels on a filled background in the class colour."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    thickness = thickness or max(1, round(min(height, width) / 300))
    font_scale = max(0.4, min(height, width) / 800)
    for box, score, label in zip(detections['boxes'], detections['scores'],
                                 detections['classes']):
        if score < min_score:
            continue
        color = color_of(label)
        text_color = _text_color(color)
        if not rgb:
            color, text_color = color[::-1], text_color[::-1]
        x0, y0, x1, y1 = _pixel_box(box, height, width)
        cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness)
        text = label_text(label, score, class_names)
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Above the box when there is room, else inside its top edge.
        top = y0 - th - baseline - 2 if y0 - th - baseline - 2 >= 0 else max(y0, 0)
        left = min(max(x0, 0), max(width - tw - 2, 0))
        cv2.rectangle(out, (left, top), (left + tw + 2, top + th + baseline + 2), color, -1)
        cv2.putText(out, text, (left + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    text_color, 1, cv2.LINE_AA)
    return out


def show_detections(image, detections, class_names, min_score=0., ax=None, figsize=(10, 10)):
    """Plots an RGB image with its detections in a notebook (matplotlib); returns the axes."""
    import matplotlib.pyplot as plt  # Only notebooks need it; scripts draw with OpenCV.
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    ax.imshow(image)
    height, width = image.shape[:2]
    for box, score, label in zip(detections['boxes'], detections['scores'],
                                 detections['classes']):
        if score < min_score:
            continue
        color = np.array(color_of(label)) / 255.
        x0, y0, x1, y1 = _pixel_box(box, height, width)
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color,
                                   linewidth=2))
        ax.text(x0, y0, label_text(label, score, class_names), color=np.array(_text_color(
            color_of(label))) / 255., fontsize=9, va='bottom',
            bbox={'facecolor': color, 'edgecolor': color, 'pad': 1})
    ax.axis('off')
    return ax
