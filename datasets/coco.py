"""COCO detection annotations (instances_*.json + an image folder) -> records.

- Classes: the JSON's categories sorted by COCO category id get contiguous labels 1..K; the
  metadata keeps each class's `coco_category_id` (COCO ids have gaps: 1..90 for 80 classes).
  Category ids must be integers and unique, names unique once surrounding whitespace is stripped
  (the class name is the stripped `name`, as VOC `<name>`s and labels files are read).
- Every image of the JSON is converted, in image-id order (images without annotations are kept
  as negatives, as COCO evaluation expects every image), objects in annotation-id order.
- Boxes: COCO `bbox` is `[x, y, w, h]` in continuous pixel coordinates (0 = left edge), so
  `xmin_rel = x / W`, `xmax_rel = (x + w) / W` with W, H the decoded image size (the JSON's
  width/height are only compared and a mismatch reported). Boxes with `w <= 0` or `h <= 0`, or
  nothing inside the image, are dropped; the rest are clipped to the image; both are reported.
- `image/filename` is the image's `file_name` as the JSON writes it (subfolders kept).
- Crowd regions: `iscrowd` is stored in `image/object/bbox/iscrowd` and also as
  `image/object/bbox/difficult` (for readers that know only that flag). Evaluation ignores crowd
  regions whatever `--remove_difficult` says; training ignores anchors matched to them (see
  nets/ssd_common.py). The metadata counts them per class as `num_crowd` (and, being flagged
  difficult, in `num_difficult` too, as before `num_crowd` existed). `truncated` is 0. `image/id`
  holds the COCO image id.
- COCO evaluation ground truth: `image/coco/annotations` keeps every annotation of the image
  exactly as the file has it (id, category_id, bbox, area, iscrowd, its position in the file),
  including boxes dropped or clipped above, so evaluation equals pycocotools on the original file
  (see datasets/example_format.py). An annotation without `area` gets w*h (reported as fixed;
  pycocotools itself would fail on it). Annotations of categories the file does not list are not
  kept (pycocotools ignores them too).
- Hostile entries are bad examples (an error, or skipped and reported with skip_bad_examples):
  an image id that is not an integer in 0..2**63-1 or is repeated, a `file_name` that is not a
  relative path inside the image folder (absolute, or `..` climbing out; allowed with
  `allow_outside_paths`), a bbox or area with a non-finite number. Images are read as `image_io` allows
  (regular files only, size limits checked on the header before decoding), the JSON only from a
  regular file of at most MAX_ANNOTATIONS_BYTES.
- Broken entries refuse the file with a message naming the entry: a category without a non-empty
  `name` string or an integer `id` in 0..2**63-1, two categories of one id or one name, an
  annotation without an integer `id` in 0..2**63-1, `bbox` or an integer `category_id`, with a
  bbox value or `area` that is not a number, an `iscrowd` other than 0 or 1, or without an
  integer `image_id` in 0..2**63-1 (`"139"` beside `"id": 139` would otherwise lose every
  annotation silently; a `"category_id": "18"` would make each one an unknown class); an
  `image_id` in range but of no image is ignored, as pycocotools does.
"""

import dataclasses
import hashlib
import json
import math
import os
from typing import Optional

from absl import logging

from datasets import convert
from datasets import image_io
from tf_extended import safe_io
from tf_extended import texts
from datasets.convert import BadExampleError, UnknownClassError, load_example_image
from datasets.example_format import ExampleRecord, ObjectRecord

_MAX_IMAGE_ID = (1 << 63) - 1  # image/id is an int64 feature
# instances_train2017.json is 448 MB, LVIS v1 train 1.1 GB; parsing takes several times the size.
MAX_ANNOTATIONS_BYTES = 4 << 30


@dataclasses.dataclass(frozen=True)
class CocoSource:
    """One COCO image to convert. annotations: tuple of (annotation id, category id, (x, y, w, h), iscrowd,
    area or None, position in the file's `annotations` list), in annotation-id order.

    problem: why the image entry cannot be converted (found while reading the JSON), or None.
    """

    annotations_file: str
    image_path: str
    image_id: int
    json_size: tuple
    annotations: tuple
    problem: Optional[str] = None
    file_name: Optional[str] = None

    @property
    def record_file_name(self):
        """`image/filename`: the JSON's `file_name` as written (subfolders kept, as the TF Object
        Detection API stores it: `a/1.jpg` and `b/1.jpg` stay apart), else the path's base name."""
        return self.file_name or os.path.basename(self.image_path)

    @property
    def report_name(self):
        return f'{self.annotations_file}: image id {self.image_id} ({os.path.basename(self.image_path)})'


def _valid_image_id(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_IMAGE_ID


def _image_problem(annotations_file, im, seen_ids, allow_outside_paths):
    """Why an `images` entry cannot be converted, or None."""
    where = f'{annotations_file}: image {im["id"]!r}'
    if not _valid_image_id(im['id']):
        return (
            f'{annotations_file}: image id {im["id"]!r} (file_name {im.get("file_name")!r}) is '
            'not an integer in '
            f'0..2**63-1, which the records store as int64; fix the JSON.'
        )
    if im['id'] in seen_ids:
        return f'{where}: the id appears twice in "images"; fix the JSON.'
    name = im['file_name']
    if allow_outside_paths and isinstance(name, str) and name and '\0' not in name:
        return None
    reason = safe_io.check_inside(name)
    if reason:
        hint = (
            ' (pass --allow_outside_paths to allow it)'
            if isinstance(name, str) and '\0' not in name
            else ''
        )
        return f'{where}: file_name {name!r} {reason}; file names are relative to the image folder{hint}.'
    return None


def _check_image_keys(annotations_file, index, im):
    """Raises _EntryError naming the file and the index-th `images` entry when it has no "id"
    or no "file_name" (a bad value of either is that image's problem, reported per image)."""
    missing = ' and no '.join(f'"{key}"' for key in ('id', 'file_name') if key not in im)
    if missing:
        shown = ', '.join(f'{k} {texts.shown(im[k])}' for k in ('id', 'file_name') if k in im)
        raise _EntryError(
            f'{annotations_file}: "images"[{index}]{f" ({shown})" if shown else ""} has no '
            f'{missing}; every image needs an integer "id" and the "file_name" of its image '
            'file; fix the JSON.'
        )


def _json_kind(value):
    """How JSON calls the type of a parsed value, for messages."""
    kinds = (
        (dict, 'an object'),
        (list, 'an array'),
        (str, 'a string'),
        (bool, 'a boolean'),
        ((int, float), 'a number'),
    )
    return next((name for types, name in kinds if isinstance(value, types)), 'null')


def read_annotations_json(annotations_file):
    """The parsed instances JSON, read with safe_io's checks (regular files only, at most
    MAX_ANNOTATIONS_BYTES, nesting the parser can take), checked to be an object whose "images",
    "categories" and (when present) "annotations" are arrays of objects.

    Returns:
      (data, digest): the parsed JSON; {'annotations_size': int bytes, 'annotations_sha256': str
      hex} of the bytes parsed (the file is read once: train2017's is 450 MB).
    Raises:
      ValueError naming the file; OSError: unreadable (safe_io.UnsafeFileError: a FIFO, a device,
      or too large).
    """
    what = 'COCO annotations file'
    raw = safe_io.read_bytes(annotations_file, MAX_ANNOTATIONS_BYTES, what)
    digest = {'annotations_size': len(raw), 'annotations_sha256': hashlib.sha256(raw).hexdigest()}
    data = safe_io.parse_json(raw, annotations_file, what)
    problem = None
    if not isinstance(data, dict):
        problem = f'it holds {_json_kind(data)}, not an object'
    else:
        for key in ('images', 'categories', 'annotations'):
            if key not in data:
                if key != 'annotations':
                    problem = f'it has no "{key}"'
            elif not isinstance(data[key], list):
                problem = f'"{key}" is {_json_kind(data[key])}, not an array'
            else:
                index = next((i for i, v in enumerate(data[key]) if not isinstance(v, dict)), None)
                if index is not None:
                    problem = f'"{key}"[{index}] is {_json_kind(data[key][index])}, not an object'
            if problem:
                break
    if problem:
        raise ValueError(
            f'{annotations_file}: not a COCO instances file ({problem}); expected an object with '
            f'"images", "annotations" and "categories" arrays of objects: pass an instances_*.json '
            f'file.'
        )
    return data, digest


def read_annotations(annotations_file, image_dir, allow_outside_paths=False):
    """Reads an instances JSON.

    Args:
      annotations_file, image_dir: the JSON and the folder its `file_name`s are relative to.
      allow_outside_paths: accept `file_name`s that are absolute or climb out of image_dir.
    Returns:
      (sources, class_names, class_extra, source): list of CocoSource in image-id order (entries
      with a bad id at the end, in file order); class names (stripped) in category-id order;
      [{'coco_category_id': id}] per class; the metadata's `source` dict: the annotation file's
      absolute path, size and sha256 (so a later evaluation or `score_detections.py
      --coco_annotations` can tell it has the same file) and the image folder.
    Raises:
      ValueError: the JSON is unreadable or lacks images/categories, an annotation or category
      id appears twice, a category id is not an integer, or two categories have one name, naming
      the file; OSError as `read_annotations_json`.
    """
    data, digest = read_annotations_json(annotations_file)
    for index, im in enumerate(data['images']):
        _check_image_keys(annotations_file, index, im)
    try:
        for index, c in enumerate(data['categories']):
            _check_category(annotations_file, index, c)
        categories = sorted(data['categories'], key=lambda c: c['id'])
        images = sorted(
            data['images'], key=lambda im: (0, im['id']) if _valid_image_id(im['id']) else (1, 0)
        )
        by_image = {}
        annotations = data.get('annotations', [])
        # Checked in file order, before sorting by id (a string or NaN id would not sort, or not
        # in order).
        entries = []
        for index, a in enumerate(annotations):
            entries.append(_annotation_entry(annotations_file, index, a))
            _check_annotation_image_id(annotations_file, index, a)
        order = sorted(range(len(annotations)), key=lambda i: entries[i][0])
        indexed = [(index, annotations[index]) for index in order]
        for index, a in indexed:
            by_image.setdefault(a['image_id'], []).append(entries[index])
        sources, seen_ids = [], set()
        for im in images:
            problem = _image_problem(annotations_file, im, seen_ids, allow_outside_paths)
            name = im['file_name'] if isinstance(im['file_name'], str) else repr(im['file_name'])
            sources.append(
                CocoSource(
                    annotations_file,
                    os.path.join(image_dir, name.replace('\0', '?')),
                    im['id'],
                    (im.get('width'), im.get('height')),
                    tuple(by_image.get(im['id'], ())) if problem is None else (),
                    problem,
                    name.replace('\0', '?'),
                )
            )
            if _valid_image_id(im['id']):
                seen_ids.add(im['id'])
    except _EntryError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise ValueError(
            f'{annotations_file}: not a COCO instances file with images, categories and '
            f'annotations ({type(e).__name__}: {e}).'
        ) from None
    if not categories:
        raise ValueError(f'{annotations_file}: no categories.')
    for key, entries in (('categories', categories), ('annotations', [a for _, a in indexed])):
        twice = next((a['id'] for a, b in zip(entries, entries[1:]) if a['id'] == b['id']), None)
        if twice is not None:  # pycocotools indexes by id: one would replace the other
            raise ValueError(
                f'{annotations_file}: id {twice!r} appears twice in "{key}"; fix the JSON.'
            )
    known = {im['id'] for im in images if _valid_image_id(im['id'])}
    orphans = [a['image_id'] for _, a in indexed if a['image_id'] not in known]
    if orphans:  # ignored, as pycocotools does; many of them mean another file's annotations
        logging.warning(
            '%s: %d annotation(s) refer to image ids that no "images" entry has (%s): left '
            'out; check that it is the annotation file of these images.',
            annotations_file,
            len(orphans),
            texts.listed(sorted(set(orphans)), 5),
        )
    names = _class_names(annotations_file, categories)
    source = {
        'dataset_name': 'coco',
        'annotations_file': os.path.abspath(annotations_file),
        **digest,
        'image_dir': os.path.abspath(image_dir),
    }
    return (
        sources,
        names,
        [{convert.COCO_CATEGORY_ID: c['id']} for c in categories],
        source,
    )


def empty_categories_warning(annotations_file, empty):
    """The warning of a conversion of `annotations_file` whose records have no object of the
    classes `empty` (their metadata 'classes' entries), naming each (category id, name). Such a
    category (Roboflow exports its supercategory, id 0, so) still becomes a class, and a model
    trained on the records gets an output for it that nothing teaches."""
    named = ', '.join(f'id {c[convert.COCO_CATEGORY_ID]} ({c["name"]})' for c in empty)
    one = len(empty) == 1
    it, they = ('it', 'it') if one else ('each', 'them')
    return (
        f'{annotations_file}: {"category" if one else "categories"} {named} '
        f'{"has" if one else "have"} no objects in these records, yet {it} stays a class: the '
        f'records have no example of {they}, and a model trained on them still has an output '
        f'for {they}. To leave {they} out, remove {they} from the file\'s '
        '"categories" and convert again.'
    )


class _EntryError(ValueError):
    """A ValueError whose message already names the file and the entry."""


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


# Category ids, like image ids, are int64 where they are used (the metadata's
# `coco_category_id`, the model card, COCO evaluation's arrays); annotation ids, kept in the
# records' `image/coco/annotations` for COCO evaluation, are bounded alike.
_MAX_ID = _MAX_IMAGE_ID


def _check_category(annotations_file, index, c):
    """Raises _EntryError naming the file and the index-th category: its id is not an integer
    (`"18"` beside annotations' `18` would make every annotation of it unknown, and the
    annotations' `category_id`s, the metadata and COCO evaluation need integers), or its name is
    not a non-empty string."""
    if not _is_integer(c.get('id')):
        has = f'id {c["id"]!r} ({_json_kind(c["id"])})' if 'id' in c else 'no "id"'
        raise _EntryError(
            f'{annotations_file}: "categories"[{index}] (name {c.get("name")!r}) has {has}; '
            'category ids are integers, which the annotations\' "category_id" refer to; fix the '
            'JSON.'
        )
    if not 0 <= c['id'] <= _MAX_ID:
        raise _EntryError(
            f'{annotations_file}: "categories"[{index}] (name {c.get("name")!r}) has id '
            f'{c["id"]}, beyond 0..2**63-1 (category ids are kept as int64 by the records\' '
            'metadata, the model card and COCO evaluation); fix the JSON.'
        )
    if not isinstance(c.get('name'), str) or not c['name'].strip():
        raise _EntryError(
            f'{annotations_file}: category id {c["id"]!r} has name {c.get("name")!r}; '
            'every category needs a non-empty "name" string (the class name); fix the JSON.'
        )


def _class_names(annotations_file, categories):
    """The categories' names (in the given order) with surrounding whitespace stripped, as VOC
    `<name>`s and labels files are read ('person ' and 'person\\n' are 'person').

    Raises:
      ValueError naming the file, both category ids and the name: two categories with one name.
      pycocotools and the TF Object Detection API take such a file (they index categories by id;
      the latter's name -> id map keeps the last), but here classes are known by name too (the
      model card, detections, per-class COCO AP), so their objects could not be told apart.
    """
    names, first = [], {}
    for c in categories:
        name = c['name'].strip()
        if name in first:
            other = first[name]
            written = (
                ''
                if other['name'] == c['name']
                else f' (written {other["name"]!r} and {c["name"]!r}; surrounding whitespace '
                'is ignored)'
            )
            raise ValueError(
                f'{annotations_file}: categories {other["id"]!r} and {c["id"]!r} are both named '
                f'{name!r}{written}; class names must be unique (classes are known by name in '
                'the model card, detections and per-class AP): rename one, or merge them (keep '
                'one category and use its id in every annotation of the other); fix the JSON.'
            )
        first[name] = c
        names.append(name)
    return tuple(names)


def _annotation_entry(annotations_file, index, a):
    """The CocoSource tuple of annotation `a`, the index-th of the file.

    Raises:
      _EntryError naming the file and the annotation: no id, bbox or category_id, an id that is
      not an integer in 0..2**63-1, a category_id that is not an integer, a bbox value or area
      that is not a number, or an iscrowd other than 0 or 1 (pycocotools takes any true value
      for a crowd; the records keep 0 or 1).
    """
    try:
        ann_id = a['id']
        if not _is_integer(ann_id) or not 0 <= ann_id <= _MAX_ID:
            raise ValueError(f'id {ann_id!r} is {_json_kind(ann_id)}, not an integer in 0..2**63-1')
        area = a.get('area')
        category_id = a['category_id']
        if not _is_integer(category_id):
            raise ValueError(
                f'category_id {category_id!r} is {_json_kind(category_id)}, not an integer'
            )
        iscrowd = a.get('iscrowd', 0)
        if iscrowd not in (0, 1):  # as coco_metrics checks a ground truth file
            raise ValueError(f'iscrowd {texts.shown(iscrowd)} is {_json_kind(iscrowd)}, not 0 or 1')
        bbox = a['bbox']
        if not isinstance(bbox, list):
            raise ValueError(f'bbox {texts.shown(bbox)} is {_json_kind(bbox)}, not an array')
        return (
            ann_id,
            category_id,
            tuple(_number(v, 'bbox value') for v in bbox),
            1 if iscrowd else 0,
            None if area is None else _number(area, 'area'),
            index,
        )
    except KeyError as e:
        problem = f'has no {e}'
    except (TypeError, ValueError, OverflowError) as e:
        problem = f'cannot be read ({e})'
    raise _EntryError(
        f'{annotations_file}: "annotations"[{index}] (id {a.get("id")!r}) {problem}; expected an '
        'integer "category_id", "bbox": [x, y, w, h] and optional "area" and "iscrowd" numbers: '
        'fix the JSON.'
    )


def _check_annotation_image_id(annotations_file, index, a):
    """Raises _EntryError naming the file and the index-th annotation (id checked): it has no
    `image_id`, or one that is not an integer (e.g. "139" beside "id": 139 would lose every
    annotation; 139.0 or true are refused as a category_id of 18.0 is), or an integer no image
    can have (beyond 0..2**63-1, where `_image_problem` skips an image). An integer id in range
    but of no image is an orphan, ignored as pycocotools does."""
    where = f'{annotations_file}: "annotations"[{index}] (id {a["id"]!r})'
    if 'image_id' not in a:
        raise _EntryError(
            f'{where} has no "image_id"; every annotation needs the integer id of its image in '
            '"images"; fix the JSON.'
        )
    image_id = a['image_id']
    if not _is_integer(image_id):
        raise _EntryError(
            f'{where} has image_id {texts.shown(image_id)} ({_json_kind(image_id)}), which is '
            'no image\'s id: image ids are integers; fix the JSON.'
        )
    if not _valid_image_id(image_id):
        raise _EntryError(
            f'{where} has image_id {texts.shown(image_id)}, not an integer in 0..2**63-1, '
            'which the records store as int64; fix the JSON.'
        )


def _number(value, what):
    """float(value) for a JSON number; ValueError for anything else (bool, string, list)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f'{what} {value!r} is not a number')
    return float(value)


def coco_box_to_relative(x, y, w, h, width, height):
    """COCO [x, y, w, h] pixels -> ((ymin, xmin, ymax, xmax) relative or None, clipped?, drop reason)."""
    if w <= 0 or h <= 0:
        return None, False, f'zero-area box [x={x:g}, y={y:g}, w={w:g}, h={h:g}]'
    x0, y0, x1, y1 = x, y, x + w, y + h
    cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    if cx1 <= cx0 or cy1 <= cy0:
        return (
            None,
            True,
            f'box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] outside the {width}x{height} image',
        )
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    return (cy0 / height, cx0 / width, cy1 / height, cx1 / width), clipped, None


class CocoLoader:
    """CocoSource -> (ExampleRecord, report). Picklable.

    Args:
      category_ids: COCO category ids in label order (label = index + 1).
      class_names: names in the same order.
      skip_unknown_classes: drop annotations with a category id not in category_ids (reported).
      image_limits: image_io.ImageLimits (pixels, bytes) an image must stay within.
    """

    def __init__(
        self,
        category_ids,
        class_names,
        skip_unknown_classes=False,
        image_limits=image_io.DEFAULT_LIMITS,
    ):
        self.category_ids = tuple(category_ids)
        self.class_names = tuple(class_names)
        self.skip_unknown_classes = skip_unknown_classes
        self.image_limits = image_limits
        self._labels = {c: i + 1 for i, c in enumerate(self.category_ids)}

    def __call__(self, source):
        where = source.report_name
        image = load_example_image(source.image_path, self.image_limits, where)
        report = []

        def note(kind, detail, fix=None):
            report.append(convert.report_entry(where, kind, detail, fix))

        if image.converted_from:
            note('fixed', f'{image.conversion}', 'reencoded')
        if tuple(source.json_size) != (image.width, image.height):
            note(
                'fixed',
                f'JSON size {source.json_size[0]}x{source.json_size[1]}, decoded image is '
                f'{image.width}x{image.height}; using the decoded size',
                'size',
            )
        objects, kept = [], []
        for ann_id, category_id, bbox, iscrowd, area, index in source.annotations:
            label = self._labels.get(category_id)
            if label is None:
                if not self.skip_unknown_classes:
                    known = ', '.join(
                        f'{c}:{n}' for c, n in zip(self.category_ids, self.class_names)
                    )
                    raise UnknownClassError(
                        f'{where}: annotation {ann_id} has category id {category_id}, which is not among the '
                        f'categories of the file ({known}). Fix the JSON or pass --skip_unknown_classes.'
                    )
                note(
                    'unknown_class',
                    f'annotation {ann_id}: unknown category id {category_id} dropped',
                )
                continue
            if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
                raise BadExampleError(
                    f'{where}: annotation {ann_id} has bbox {list(bbox)}, expected [x, y, w, h] '
                    f'of 4 finite numbers.'
                )
            if area is not None and not math.isfinite(area):
                raise BadExampleError(
                    f'{where}: annotation {ann_id} has area {area}, expected a finite number.'
                )
            name = self.class_names[label - 1]
            if area is None:
                area = bbox[2] * bbox[3]
                note(
                    'fixed',
                    f'annotation {ann_id} ({name}): no "area"; w*h = {area:g} kept for COCO '
                    f'evaluation',
                    'area',
                )
            kept.append(
                (
                    index,
                    {
                        'id': ann_id,
                        'category_id': category_id,
                        'bbox': list(bbox),
                        'area': area,
                        'iscrowd': 1 if iscrowd else 0,
                        'index': index,
                    },
                )
            )
            box, clipped, drop = coco_box_to_relative(*bbox, image.width, image.height)
            if drop:
                note('dropped_object', f'annotation {ann_id} ({name}): {drop}')
                continue
            if clipped:
                note(
                    'fixed',
                    f'annotation {ann_id} ({name}): box clipped to the {image.width}x{image.height} image',
                    'box_clipped',
                )
            objects.append(
                ObjectRecord(
                    box=box,
                    label=label,
                    name=name,
                    difficult=1 if iscrowd else 0,
                    truncated=0,
                    iscrowd=1 if iscrowd else 0,
                )
            )
        # File order; allow_nan=False: every number was checked finite above.
        annotations = json.dumps(
            [a for _, a in sorted(kept, key=lambda ia: ia[0])],
            allow_nan=False,
            separators=(',', ':'),
        )
        return ExampleRecord(
            filename=source.record_file_name,
            image=image,
            objects=tuple(objects),
            image_id=int(source.image_id),
            coco_annotations=annotations,
        ), report
