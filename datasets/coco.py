"""COCO detection annotations (instances_*.json + an image folder) -> records.

- Classes: the JSON's categories sorted by COCO category id get contiguous labels 1..K; the
  metadata keeps each class's `coco_category_id` (COCO ids have gaps: 1..90 for 80 classes).
- Every image of the JSON is converted, in image-id order (images without annotations are kept
  as negatives, as COCO evaluation expects every image), objects in annotation-id order.
- Boxes: COCO `bbox` is `[x, y, w, h]` in continuous pixel coordinates (0 = left edge), so
  `xmin_rel = x / W`, `xmax_rel = (x + w) / W` with W, H the decoded image size (the JSON's
  width/height are only compared and a mismatch reported). Boxes with `w <= 0` or `h <= 0`, or
  nothing inside the image, are dropped; the rest are clipped to the image; both are reported.
- Crowd regions: `iscrowd` is stored in `image/object/bbox/iscrowd` and also as
  `image/object/bbox/difficult`, so VOC-style evaluation ignores crowd boxes the way COCO
  evaluation does. `truncated` is 0. `image/id` holds the COCO image id so evaluation with
  pycocotools can map detections back.
"""

import dataclasses
import json
import os

from datasets import image_io
from datasets.convert import BadExampleError, UnknownClassError
from datasets.example_format import ExampleRecord, ObjectRecord


@dataclasses.dataclass(frozen=True)
class CocoSource:
    """One COCO image to convert. annotations: tuple of (annotation id, category id, (x, y, w, h), iscrowd)."""
    annotations_file: str
    image_path: str
    image_id: int
    json_size: tuple
    annotations: tuple

    @property
    def report_name(self):
        return f'{self.annotations_file}: image id {self.image_id} ({os.path.basename(self.image_path)})'


def read_annotations(annotations_file, image_dir):
    """Reads an instances JSON.

    Returns:
      (sources, class_names, class_extra): list of CocoSource in image-id order; class names in
      category-id order; [{'coco_category_id': id}] per class.
    Raises:
      ValueError: the JSON is unreadable or lacks images/categories, naming the file.
    """
    try:
        with open(annotations_file, encoding='utf-8') as f:
            data = json.load(f)
        categories = sorted(data['categories'], key=lambda c: c['id'])
        images = sorted(data['images'], key=lambda im: im['id'])
        by_image = {}
        for a in sorted(data.get('annotations', []), key=lambda a: a['id']):
            by_image.setdefault(a['image_id'], []).append(
                (a['id'], a['category_id'], tuple(float(v) for v in a['bbox']), int(a.get('iscrowd', 0))))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f'{annotations_file}: not a COCO instances file with images, categories and '
                         f'annotations ({type(e).__name__}: {e}).') from None
    if not categories:
        raise ValueError(f'{annotations_file}: no categories.')
    sources = [CocoSource(annotations_file, os.path.join(image_dir, im['file_name']), im['id'],
                          (im.get('width'), im.get('height')), tuple(by_image.get(im['id'], ())))
               for im in images]
    return (sources, tuple(c['name'] for c in categories),
            [{'coco_category_id': c['id']} for c in categories])


def coco_box_to_relative(x, y, w, h, width, height):
    """COCO [x, y, w, h] pixels -> ((ymin, xmin, ymax, xmax) relative or None, clipped?, drop reason)."""
    if w <= 0 or h <= 0:
        return None, False, f'zero-area box [x={x:g}, y={y:g}, w={w:g}, h={h:g}]'
    x0, y0, x1, y1 = x, y, x + w, y + h
    cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    if cx1 <= cx0 or cy1 <= cy0:
        return None, True, f'box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] outside the {width}x{height} image'
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    return (cy0 / height, cx0 / width, cy1 / height, cx1 / width), clipped, None


class CocoLoader:
    """CocoSource -> (ExampleRecord, report). Picklable.

    Args:
      category_ids: COCO category ids in label order (label = index + 1).
      class_names: names in the same order.
      skip_unknown_classes: drop annotations with a category id not in category_ids (reported).
    """

    def __init__(self, category_ids, class_names, skip_unknown_classes=False):
        self.category_ids = tuple(category_ids)
        self.class_names = tuple(class_names)
        self.skip_unknown_classes = skip_unknown_classes
        self._labels = {c: i + 1 for i, c in enumerate(self.category_ids)}

    def __call__(self, source):
        where = source.report_name
        try:
            image = image_io.load_image(source.image_path)
        except (image_io.BadImageError, OSError) as e:
            raise BadExampleError(f'{where}: {source.image_path}: {e}') from None
        report = []

        def note(kind, detail):
            report.append({'file': where, 'kind': kind, 'detail': detail})

        if image.converted_from:
            note('fixed', f'{image.converted_from} stored as 3-channel JPEG')
        if tuple(source.json_size) != (image.width, image.height):
            note('fixed', f'JSON size {source.json_size[0]}x{source.json_size[1]}, decoded image is '
                          f'{image.width}x{image.height}; using the decoded size')
        objects = []
        for ann_id, category_id, bbox, iscrowd in source.annotations:
            label = self._labels.get(category_id)
            if label is None:
                if not self.skip_unknown_classes:
                    known = ', '.join(f'{c}:{n}' for c, n in zip(self.category_ids, self.class_names))
                    raise UnknownClassError(
                        f'{where}: annotation {ann_id} has category id {category_id}, which is not among the '
                        f'categories of the file ({known}). Fix the JSON or pass --skip_unknown_classes.')
                note('unknown_class', f'annotation {ann_id}: unknown category id {category_id} dropped')
                continue
            if len(bbox) != 4:
                raise BadExampleError(f'{where}: annotation {ann_id} has bbox {list(bbox)}, expected [x, y, w, h].')
            name = self.class_names[label - 1]
            box, clipped, drop = coco_box_to_relative(*bbox, image.width, image.height)
            if drop:
                note('dropped_object', f'annotation {ann_id} ({name}): {drop}')
                continue
            if clipped:
                note('fixed', f'annotation {ann_id} ({name}): box clipped to the {image.width}x{image.height} image')
            objects.append(ObjectRecord(box=box, label=label, name=name, difficult=1 if iscrowd else 0,
                                        truncated=0, iscrowd=1 if iscrowd else 0))
        return ExampleRecord(filename=os.path.basename(source.image_path), image=image, objects=tuple(objects),
                             image_id=int(source.image_id)), report
