"""Independent numpy implementations used as references by the tests (written from Caffe's
algorithms, sharing no code with the project)."""

import numpy as np


def iou_matrix(a, b):
    """IoU of [N,4] and [M,4] yx-corner boxes."""
    ih = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    iw = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = ih * iw

    def area(x):
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    union = area(a)[:, None] + area(b)[None, :] - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, inter / union, 0.0)


def encode(boxes, anchors, var=(0.1, 0.1, 0.2, 0.2)):
    acy, acx = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    ah, aw = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gcy, gcx = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    gh, gw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack(
        [
            (gcx - acx) / aw / var[0],
            (gcy - acy) / ah / var[1],
            np.log(gw / aw) / var[2],
            np.log(gh / ah) / var[3],
        ],
        -1,
    )


def decode(codes, anchors, var=(0.1, 0.1, 0.2, 0.2)):
    acy, acx = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    ah, aw = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx = codes[..., 0] * var[0] * aw + acx
    cy = codes[..., 1] * var[1] * ah + acy
    w = np.exp(codes[..., 2] * var[2]) * aw
    h = np.exp(codes[..., 3] * var[3]) * ah
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1)


def caffe_match(gt, valid, anchors, threshold):
    """Caffe MatchBBox: BIPARTITE then PER_PREDICTION. Returns (matches [N], max_overlap [N]).

    Equal overlaps are common (same-shape anchors inside a large box); ties go to the lowest
    (ground truth, anchor) pair in row-major order, so compare with float32 inputs.
    """
    n = len(anchors)
    overlaps = iou_matrix(gt, anchors)
    area = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    usable = [j for j in range(len(gt)) if valid[j] and area[j] > 0]
    matches = -np.ones(n, int)
    max_overlap = np.zeros(n)
    for j in usable:
        max_overlap = np.maximum(max_overlap, overlaps[j])
    pool = list(usable)
    while pool:
        best, bi, bj = -1.0, -1, -1
        for j in sorted(pool):
            for i in range(n):
                if matches[i] != -1:
                    continue
                if overlaps[j, i] > 1e-6 and overlaps[j, i] > best:
                    best, bi, bj = overlaps[j, i], i, j
        if bi == -1:
            break
        matches[bi] = bj
        pool.remove(bj)
    for i in range(n):
        if matches[i] != -1:
            continue
        best, bj = -1.0, -1
        for j in usable:
            if overlaps[j, i] > 1e-6 and overlaps[j, i] >= threshold and overlaps[j, i] > best:
                best, bj = overlaps[j, i], j
        matches[i] = bj
    return matches, max_overlap


def greedy_nms(boxes, scores, threshold):
    order = list(np.argsort(-scores, kind='stable'))
    keep = []
    for i in order:
        if all(iou_matrix(boxes[i : i + 1], boxes[k : k + 1])[0, 0] <= threshold for k in keep):
            keep.append(i)
    return keep


def caffe_detection_output(probs, boxes, conf_threshold, nms_threshold, top_k, keep_top_k):
    """One image: probs [N, C], decoded boxes [N, 4] -> list of (score, label, box) sorted."""
    dets = []
    for c in range(1, probs.shape[1]):
        idx = np.where(probs[:, c] > conf_threshold)[0]
        idx = idx[np.argsort(-probs[idx, c], kind='stable')]
        if top_k > 0:
            idx = idx[:top_k]
        keep = greedy_nms(boxes[idx], probs[idx, c], nms_threshold)
        dets += [(probs[idx[k], c], c, boxes[idx[k]]) for k in keep]
    dets.sort(key=lambda d: -d[0])
    return dets[:keep_top_k] if keep_top_k > 0 else dets
