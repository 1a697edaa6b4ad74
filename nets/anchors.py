"""SSD anchors (default boxes), exactly as Caffe's PriorBox layer makes them.

For a feature map of H x W cells with step s and offset o, cell (i, j) is centred at
`((i + o) * s_h / img_h, (j + o) * s_w / img_w)`; when no step is given Caffe uses
`img / feature size` (15.789... for 300 / 19). Per location, in this order: the `min x min` box,
the `sqrt(min * max)` square when a max size is set, then for every aspect ratio r (and 1/r):
`w = min * sqrt(r)`, `h = min / sqrt(r)`. Anchors run layer by layer, row-major over cells, box
index fastest — the order of Caffe's `mbox_priorbox` and of the flattened heads.

Clipping (`clip`), all in relative units: False (Caffe's default); True (Caffe's `clip: true`:
the corners are clipped to [0, 1]); 'size' (torchvision's DefaultBoxGenerator: width and height
are clamped to at most 1 before the corners are made, so a box wider than the image stays
centred on its cell and sticks out); 'center_size' (ssd.pytorch's PriorBox: cx, cy, w and h are
each clamped to [0, 1], which also moves the centres of cells beyond the image, e.g. SSD300's
10x10 layer with step 32 puts its last column at 304 px, clamped to 300).
"""

import numpy as np

# `clip` values besides False / True (corner clipping); see the module docstring.
CLIP_MODES = ('size', 'center_size')


def expand_ratios(ratios):
    """Caffe's aspect-ratio list: 1, then each r and its flip 1/r, without duplicates."""
    out = [1.0]
    for r in ratios:
        for value in (float(r), 1.0 / float(r)):
            if all(abs(value - existing) > 1e-6 for existing in out):
                out.append(value)
    return out


def num_anchors_per_location(sizes, ratios):
    """Boxes per cell for one layer: min square, optional max square, the other ratios."""
    return len(expand_ratios(ratios)) + (1 if sizes[1] is not None else 0)


def layer_anchors(
    img_shape, feat_shape, sizes, ratios, step=None, offset=0.5, clip=False, int_sizes=True
):
    """Anchors of one feature layer.

    Args:
      img_shape: (height, width) of the network input in pixels.
      feat_shape: (height, width) of the feature map.
      sizes: (min_size, max_size or None) in pixels.
      ratios: aspect ratios besides 1 (each also adds its inverse).
      step: cell step in pixels, or None for img / feature size.
      clip: False, True (clip the corners), 'size' (clamp width and height to 1) or
        'center_size' (clamp centre, width and height to [0, 1]); see the module docstring.
      int_sizes: truncate sizes to int as Caffe's PriorBox does.
    Returns:
      float64 `[H * W * A, 4]` `[ymin, xmin, ymax, xmax]` relative to the image.
    """
    img_h, img_w = img_shape
    feat_h, feat_w = feat_shape
    min_size, max_size = sizes
    if int_sizes:
        min_size = int(min_size)
        max_size = int(max_size) if max_size is not None else None
    heights, widths = [min_size], [min_size]
    if max_size is not None:
        side = np.sqrt(min_size * max_size)
        heights.append(side)
        widths.append(side)
    for r in expand_ratios(ratios)[1:]:
        heights.append(min_size / np.sqrt(r))
        widths.append(min_size * np.sqrt(r))
    heights = np.asarray(heights) / img_h
    widths = np.asarray(widths) / img_w
    if isinstance(clip, str) and clip not in CLIP_MODES:
        raise ValueError(
            'anchor clip must be False, True, %s; got %r'
            % (' or '.join(repr(m) for m in CLIP_MODES), clip)
        )
    if clip in CLIP_MODES:
        heights, widths = np.minimum(heights, 1.0), np.minimum(widths, 1.0)
    step_h = step if step is not None else img_h / feat_h
    step_w = step if step is not None else img_w / feat_w
    cy = (np.arange(feat_h) + offset) * step_h / img_h
    cx = (np.arange(feat_w) + offset) * step_w / img_w
    if clip == 'center_size':
        cy, cx = np.clip(cy, 0.0, 1.0), np.clip(cx, 0.0, 1.0)
    cy, cx = np.meshgrid(cy, cx, indexing='ij')
    cy = cy.reshape(-1, 1)
    cx = cx.reshape(-1, 1)
    boxes = np.stack(
        [cy - heights / 2.0, cx - widths / 2.0, cy + heights / 2.0, cx + widths / 2.0], axis=-1
    ).reshape(-1, 4)
    return np.clip(boxes, 0.0, 1.0) if clip and clip not in CLIP_MODES else boxes


def ssd_anchors(params, img_shape=None):
    """All anchors of a net, float32 `[N, 4]` `[ymin, xmin, ymax, xmax]`, in Caffe's order.

    `img_shape` defaults to `params.img_shape`; the feature shapes are `params.feat_shapes`.
    """
    img_shape = img_shape or params.img_shape
    steps = params.anchor_steps or [None] * len(params.feat_shapes)
    layers = [
        layer_anchors(
            img_shape,
            feat_shape,
            sizes,
            ratios,
            step,
            params.anchor_offset,
            params.anchor_clip,
            params.anchor_int_sizes,
        )
        for feat_shape, sizes, ratios, step in zip(
            params.feat_shapes, params.anchor_sizes, params.anchor_ratios, steps
        )
    ]
    return np.concatenate(layers, axis=0).astype(np.float32)
