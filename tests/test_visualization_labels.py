"""Detection labels never overdraw each other (geometry of `layout_labels`), stay in the image,
and go above their box when that place is free."""

import itertools

import numpy as np

from inference import visualization


def _disjoint(rects):
    return not any(visualization._overlaps(a, b) for a, b in itertools.combinations(rects, 2))


def test_label_above_box_when_free():
    rects = visualization.layout_labels([(50, 60, 150, 160)], [(40, 12)], 300, 300)
    assert rects == [(50, 48, 90, 60)]


def test_crowded_boxes_get_disjoint_labels_inside_the_image():
    rng = np.random.default_rng(0)
    for trial in range(50):
        height, width = 300, 400
        n = int(rng.integers(2, 15))
        x0 = rng.integers(-20, width - 40, n)
        y0 = rng.integers(-20, height - 40, n)
        boxes = [
            (int(a), int(b), int(a + rng.integers(10, 200)), int(b + rng.integers(10, 200)))
            for a, b in zip(x0, y0)
        ]
        sizes = [(int(rng.integers(30, 90)), int(rng.integers(10, 18))) for _ in range(n)]
        rects = visualization.layout_labels(boxes, sizes, height, width)
        assert _disjoint(rects), (trial, boxes, rects)
        for (left, top, right, bottom), (w, h) in zip(rects, sizes):
            assert (right - left, bottom - top) == (w, h)
            assert 0 <= left and right <= width and 0 <= top and bottom <= height


def test_same_box_many_times():
    # NMS keeps overlapping boxes of different classes: their labels used to land on one spot.
    boxes = [(100, 100, 200, 200)] * 6
    rects = visualization.layout_labels(boxes, [(60, 14)] * 6, 300, 300)
    assert _disjoint(rects)
    # Above the box, inside its top edge, below it, inside its bottom edge; then the free places
    # nearest the box (touching labels do not overlap: half-open rectangles).
    assert [top for _, top, _, _ in rects] == [86, 100, 200, 186, 114, 128]
    assert all(rect[::2] == (100, 160) for rect in rects)


def test_a_full_column_takes_the_least_overlapping_place():
    """Three 14-pixel labels in a 35-pixel column: the third overlaps least (7 rows) between the
    first two."""
    rects = visualization.layout_labels([(10, 0, 50, 35)] * 3, [(30, 14)] * 3, 35, 100)
    assert rects == [(10, 0, 40, 14), (10, 21, 40, 35), (10, 7, 40, 21)]


def test_label_text_is_black_on_light_colours_white_on_dark():
    # ITU-R BT.601 luma above 150: black text.
    assert visualization._text_color((255, 255, 255)) == (0, 0, 0)
    assert visualization._text_color((255, 127, 14)) == (0, 0, 0)  # luma 152.4
    assert visualization._text_color((23, 190, 207)) == (255, 255, 255)  # luma 142.0
    assert visualization._text_color((0, 0, 0)) == (255, 255, 255)


def test_box_at_the_top_edge_puts_label_inside():
    rects = visualization.layout_labels(
        [(10, 0, 100, 100), (10, 2, 100, 90)], [(50, 14)] * 2, 200, 200
    )
    assert rects[0] == (10, 0, 60, 14) and _disjoint(rects)


def test_drawn_labels_keep_their_pixels():
    """Drawing: two identical boxes of different classes; both labels' colours are visible."""
    image = np.full((200, 300, 3), 255, np.uint8)
    dets = {
        'boxes': np.array([[0.3, 0.3, 0.7, 0.7]] * 2),
        'scores': np.array([0.9, 0.8]),
        'classes': np.array([1, 2]),
    }
    out = visualization.draw_detections(image, dets, ['cat', 'dog'])
    for label in (1, 2):
        color = np.array(visualization.color_of(label), np.uint8)
        assert (out == color).all(axis=-1).sum() > 50, label


def test_boxes_far_outside_the_image_are_drawn_as_their_visible_part():
    """A barely trained model's finite codes decode to corners of 1e26: OpenCV refused the int
    (detect crashed with a traceback). What shows is the box's visible part: the same pixels as
    a box whose hidden corners lie just outside the image."""
    image = np.full((60, 80, 3), 255, np.uint8)

    def drawn(box):
        dets = {'boxes': np.array([box]), 'scores': np.array([0.9]), 'classes': np.array([1])}
        return visualization.draw_detections(image, dets, ['cat'], max_labels=0)

    np.testing.assert_array_equal(drawn([0.25, -1e26, 1e26, 0.5]), drawn([0.25, -1.0, 2.0, 0.5]))
    # Its top edge (y = 15) from the left border to x = 40 and its right edge (x = 40) below.
    changed = (drawn([0.25, -1e26, 1e26, 0.5]) != image).any(axis=-1)
    assert changed[15, :40].all() and changed[15:, 40].all() and changed.sum() == 40 + 45
