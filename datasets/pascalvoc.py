"""Pascal VOC layout (Annotations/<id>.xml, JPEGImages/<id>.*, ImageSets/Main/<split>.txt) -> records.

Box rule. VOC boxes are 1-based inclusive pixel indices: `xmin=1, xmax=W` covers the whole
width. In continuous coordinates (0 at the left edge of the image) the box spans
`[xmin - 1, xmax]`, so

    xmin_rel = (xmin - 1) / W,  xmax_rel = xmax / W,  ymin_rel = (ymin - 1) / H,  ymax_rel = ymax / H

with W, H the size of the decoded image (never `<size>`, which can be 0×0 or off by one).
Coordinates may be fractional. Then:
- an inverted box, `xmax < xmin` or `ymax < ymin`, is dropped and reported. A box with
  `xmin == xmax` (or `ymin == ymax`) is kept: it is one pixel wide (the devkit's width is
  `xmax - xmin + 1`), `[xmin - 1, xmax]` above;
- the box is clipped to the image: `xmin - 1 < 0` (a coordinate of 0 written by a 0-based
  tool) becomes 0, `xmax > W` becomes W; clipping is reported;
- a box with nothing left inside the image after clipping is dropped and reported.
0-based tools thus shift boxes by at most one pixel; we cannot tell them apart otherwise.

Flags: `<difficult>` and `<truncated>` are read as integers from the element's text; a missing
or empty element means 0. (The older port tested the element's truthiness, which is False for an
element without children, so it wrote 0 for every object.)

Text is read with surrounding whitespace stripped (`<name>`, the flags, the coordinates, `<size>`,
`<filename>`), as XML pretty-printers and labelling tools wrap it in newlines and indentation.
Class names are then matched exactly, case included: `Dog` is not `dog` (a class list may hold
both); the unknown-class error says when a name differs from a known class only in case.

Split lists (ImageSets/Main/<split>.txt) hold one id per line, the whole stripped line: ids may
hold spaces (LabelImg keeps file names, `IMG 000`). A line that names no annotation is read as
a per-class list's `<id> <-1|0|1>`, or as a file name (`IMG_027.jpg`: id `IMG_027`, with one note
per file); see `resolve_split_id`.

Only `object/bndbox` is a box: `<part>` elements inside person objects hold their own `bndbox`
and are not objects. The image is found by id (`JPEGImages/<id>.jpg`, else any `<id>.*`), not by
`<filename>`.

Hostile input: split ids that are absolute or climb out of the folder with `..` are bad examples
unless `allow_outside_paths`; coordinates must be finite numbers; files are read only when they
are regular files (also through symlinks), an annotation XML only up to MAX_XML_BYTES, images
within the `image_io.ImageLimits`, a split file only up to MAX_SPLIT_BYTES. An XML whose
<!DOCTYPE> declares entities is refused: VOC annotations declare none, and the entities of one
expanded a 31 MB file to 3 GB within expat's amplification limit. An XML may use any encoding
Python knows (expat itself decodes only UTF-8/16, Latin-1 and ASCII); a default namespace on its
tags is ignored.
"""

import codecs
import dataclasses
import glob
import math
import os
import re
from typing import Optional
import xml.etree.ElementTree as ET
import xml.parsers.expat

from absl import logging

from datasets import convert
from datasets import folders
from datasets import image_io
from datasets import labels
from tf_extended import safe_io
from tf_extended import texts
from datasets.convert import BadExampleError, UnknownClassError, load_example_image
from datasets.example_format import ExampleRecord, ObjectRecord

_IMAGE_EXT_PREFERENCE = ('.jpg', '.jpeg', '.JPG', '.JPEG', '.png', '.PNG')
# Extensions (lower-case) of the files a split line may name instead of an id: images, XML.
_IMAGE_EXTS = ('.jpg', '.jpeg', '.jpe', '.png', '.bmp', '.tif', '.tiff', '.webp', '.gif')
_FILE_NAME_EXTS = _IMAGE_EXTS + ('.xml',)
# The flags of a per-class list's `<id> <flag>` lines.
_CLASS_FLAGS = ('-1', '0', '1')
_XML_ENCODING = re.compile(rb'\s*<\?xml[^>]*?\sencoding\s*=\s*["\']([A-Za-z][\w.:-]*)["\']')
MAX_XML_BYTES = 32 << 20  # a VOC annotation is ~1 kB; 1000 objects are ~200 kB
# VOC's largest split (trainval 2012) is 11540 ids in 150 kB; 64 MiB is millions of ids.
MAX_SPLIT_BYTES = 64 << 20
# The plain split lists of a VOC release's ImageSets/Main/, in the devkit's order.
VOC_SPLITS = ('train', 'val', 'trainval', 'test')


@dataclasses.dataclass(frozen=True)
class VocSource:
    """One VOC example to convert: the annotation file, the image folder and the image id.

    problem: why the entry cannot be converted (found while listing), or None.
    """

    annotation_path: str
    image_dir: str
    image_id: str
    problem: Optional[str] = None

    @property
    def report_name(self):
        return self.annotation_path


def folder_problem(root):
    """What keeps `root` from being read as a VOC folder, as a message without its final period
    ('<root> does not exist; expected a VOC folder ...'), or None when it has Annotations/."""
    if os.path.isdir(os.path.join(root, 'Annotations')):
        return None
    expected = f'expected {folders.VOC_EXPECTED}'
    if not os.path.lexists(root) or not os.path.isdir(root):
        said = folders.describe(root)
        parent = os.path.dirname(os.path.abspath(root))
        if not os.path.lexists(root) and os.path.isdir(parent):
            said += f' ({folders.describe(parent)})'  # a mistyped name shows beside the right one
        return f'{said}; {expected}'
    inside = folders.voc_subfolders(root)
    if inside:
        paths = ','.join(inside)  # the converter's --dataset_dir takes a list
        return (
            f'{root}: no Annotations/ folder; {expected}. It holds VOC folders: pass '
            f'{paths} instead'
        )
    coco = folders.coco_annotation_files(root)
    if coco:
        return (
            f'{root}: no Annotations/ folder; {expected}. It holds COCO annotations: convert them '
            f'with --dataset_name=coco --annotations_file={coco[0]} and their image folder as '
            f'--dataset_dir'
        )
    labelimg = folders.labelimg_hint(root)
    if labelimg:
        return f'{root}: no Annotations/ folder; {expected}. {labelimg}'
    said = f'{root}: no Annotations/ folder; {expected} ({folders.describe(root)})'
    if glob.glob(os.path.join(glob.escape(root), '*.tfrecord')):
        said += (
            '. It holds converted records (.tfrecord): pass it as --dataset_dir to the training '
            'and evaluation scripts'
        )
    return said


def _is_split_list(name):
    """True for the file name of a plain split list (`trainval.txt`), not of a per-class one
    (`dog_trainval.txt`)."""
    return name.endswith('.txt') and '_' not in name


def read_split_ids(split_path):
    """The lines of a split file, as [(line number, line)]: each non-blank line stripped whole,
    since an id may hold spaces (LabelImg keeps a file's name, `IMG 000`); `resolve_split_id`
    then tells which id a line names.

    Raises:
      safe_io.UnsafeFileError: not a regular file, or larger than MAX_SPLIT_BYTES; OSError:
      unreadable; ValueError: not UTF-8.
    """
    lines = safe_io.read_text(
        split_path, MAX_SPLIT_BYTES, 'split file', 'one image id per line'
    ).split('\n')
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def resolve_split_id(line, has_annotation):
    """The image id a split-file line names, and whether the line was a file name.

    Main/<split>.txt lines are one id each (spaces included), per-class lists' `<id> <-1|0|1>`,
    and users write file names (`IMG_027.jpg`): the whole line when `has_annotation(line)`
    (Annotations/<line>.xml exists), else the first word of a `<id> <flag>` line when that has
    an annotation (`scan 1` of LabelImg, which writes no XML for an image without boxes, is not
    `scan`), else the name without its image or .xml extension when that has an annotation,
    else the whole line (the missing annotation's error then names it).

    Returns:
      (id, True when the id is a file name's stem).
    """
    if has_annotation(line):
        return line, False
    words = line.split()
    if len(words) == 2 and words[1] in _CLASS_FLAGS and has_annotation(words[0]):
        return words[0], False
    stem, ext = os.path.splitext(line)
    if ext.lower() in _FILE_NAME_EXTS and stem and has_annotation(stem):
        return stem, True
    return line, False


def _annotation_exists(root):
    """A predicate: does `root`'s Annotations/<id>.xml exist (as a regular file)."""
    ann_dir = os.path.join(root, 'Annotations')
    return lambda image_id: os.path.isfile(os.path.join(ann_dir, f'{image_id}.xml'))


def file_name_ids_note(split_path, named):
    """The one note for a split file whose lines are file names, as [(line, id)]; None when
    there are none. Said once per file: every line of a list is usually written alike."""
    if not named:
        return None
    line, image_id = named[0]
    many = f'{len(named)} lines are file names' if len(named) > 1 else 'a line is a file name'
    return (
        f'{split_path}: {many} (e.g. {texts.shown(line)}), read as the ids they name '
        f'({texts.shown(image_id)}); ids are file stems, the names without extension.'
    )


def split_lists(root):
    """The plain split lists of `root`'s ImageSets/Main/ (`<split>.txt`, not the per-class
    `<class>_<split>.txt`), as [(split, ids)]: VOC's train, val, trainval and test first, then the
    others by name; `ids` the list of ids (`resolve_split_id` of each line), or None when the
    file cannot be read. [] without the folder."""
    main_dir = os.path.join(root, 'ImageSets', 'Main')
    has_annotation = _annotation_exists(root)
    try:
        names = [n[:-4] for n in os.listdir(main_dir) if _is_split_list(n)]
    except OSError:
        return []
    order = {split: i for i, split in enumerate(VOC_SPLITS)}
    found = []
    for split in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
        path = os.path.join(main_dir, f'{split}.txt')
        if not os.path.isfile(path):
            continue
        try:
            ids = [resolve_split_id(line, has_annotation)[0] for _, line in read_split_ids(path)]
        except (OSError, ValueError):
            ids = None
        found.append((split, ids))
    return found


def annotation_ids(root):
    """The ids of `root`'s Annotations/*.xml, sorted: what `list_examples` takes without a split."""
    ann_dir = os.path.join(root, 'Annotations')
    return sorted(os.path.splitext(n)[0] for n in os.listdir(ann_dir) if n.endswith('.xml'))


def unannotated_images(root):
    """The image files of `root`'s JPEGImages/ whose stem has no Annotations/<stem>.xml, sorted:
    what a conversion without a split leaves out (LabelImg writes no XML for an image it was
    not given a box for). [] when JPEGImages/ cannot be listed."""
    try:
        names = os.listdir(os.path.join(root, 'JPEGImages'))
    except OSError:
        return []
    annotated = set(annotation_ids(root))
    return sorted(
        n
        for n in names
        if os.path.splitext(n)[1].lower() in _IMAGE_EXTS and os.path.splitext(n)[0] not in annotated
    )


def split_problem(root, split, optional_flag=None):
    """What is wrong with the split file of `split` in the VOC folder `root`, as a message without
    its final period, or None when ImageSets/Main/<split>.txt is a file. `optional_flag`: the
    flag that, left out, takes every annotation instead (the converter's --split), for the hint."""
    split_path = os.path.join(root, 'ImageSets', 'Main', f'{split}.txt')
    if os.path.isfile(split_path):
        return None
    main_dir = os.path.join(root, 'ImageSets', 'Main')
    every = f'leave {optional_flag} out to take every annotation of Annotations/'
    if not os.path.isdir(main_dir):
        problem = f'{root} has no ImageSets/Main/ folder, so no split files)'
        fix = f'; {every}'
    else:
        have = sorted(n[:-4] for n in os.listdir(main_dir) if _is_split_list(n))
        problem = f'splits present: {have}); choose one of them'
        fix = f', or {every}'
    return f'{split_path}: split file not found ({problem}' + (fix if optional_flag else '')


def list_examples(
    dataset_dirs,
    split=None,
    allow_outside_paths=False,
    note=logging.warning,
    repeats_ok=False,
    outside_flag=True,
):
    """Lists the examples of one or more VOC folders, in a stable order.

    Args:
      dataset_dirs: list of VOC folders (each with Annotations/ and JPEGImages/).
      split: None for every Annotations/*.xml (sorted by id), else the ids listed in
        ImageSets/Main/<split>.txt of each folder, in file order (see `resolve_split_id`).
      allow_outside_paths: accept split ids that are absolute paths or climb out of the folder
        with `..`; otherwise such ids are listed with a `problem` (a bad example).
      note: called with a one-line message when a split file lists file names instead of ids
        (`file_name_ids_note`), and for each id a split file names again with `repeats_ok`.
      repeats_ok: an id named again is listed again (the converter: a training list may repeat
        an image to oversample it), with a note; otherwise it is refused (scoring).
      outside_flag: whether the problem of an id leaving the folder tells to pass
        --allow_outside_paths (the converter's flag; scoring has none).
    Returns:
      list of VocSource, folder by folder.
    Raises:
      FileNotFoundError: a folder lacks Annotations/ or the split file; safe_io.UnsafeFileError:
      the split file is a device or FIFO, or larger than MAX_SPLIT_BYTES; ValueError: not UTF-8,
      or it names an id twice (also as `IMG_1` and `IMG_1.jpg`) without `repeats_ok`.
    """
    sources = []
    for root in dataset_dirs:
        problem = folder_problem(root)
        if problem:
            raise FileNotFoundError(f'{problem}.')
        if split is None:
            split_path, ids = None, [(None, i) for i in annotation_ids(root)]
        else:
            split_path, ids = _split_ids(root, split, note, repeats_ok)
        sources += [
            _voc_source(root, split_path, line, image_id, allow_outside_paths, outside_flag)
            for line, image_id in ids
        ]
    return sources


def _split_ids(root, split, note, repeats_ok):
    """(path, [(line number, id)]) of `root`'s ImageSets/Main/<split>.txt, each line resolved
    to the id it names; `note` is told once when lines are file names, and of each repeated id
    with `repeats_ok` (else refused).

    Raises:
      as list_examples.
    """
    split_path = os.path.join(root, 'ImageSets', 'Main', f'{split}.txt')
    problem = split_problem(root, split)
    if problem:
        raise FileNotFoundError(f'{problem}.')
    has_annotation = _annotation_exists(root)
    ids, named, line_of = [], [], {}
    for n, line in read_split_ids(split_path):
        image_id, is_file_name = resolve_split_id(line, has_annotation)
        earlier = line_of.setdefault(image_id, n)
        if earlier != n:
            # Converted, the image is two records of one id: a training set oversampling it, or
            # a mistake that a VOC evaluation refuses (it cannot tell the two apart); the devkit
            # stops at a detection of a repeated id.
            repeated = f'{split_path}:{n}: image id {texts.shown(image_id)} is listed again (line {earlier})'
            if not repeats_ok:
                raise ValueError(f'{repeated}; a split lists each image once: remove the line.')
            note(
                f'{repeated}: converted again, as another record (oversampling it); a VOC '
                f'evaluation of these records refuses two records of one image.'
            )
        ids.append((n, image_id))
        if is_file_name:
            named.append((line, image_id))
    said = file_name_ids_note(split_path, named)
    if said:
        note(said)
    return split_path, ids


def _voc_source(root, split_path, line, image_id, allow_outside_paths, outside_flag):
    """The VocSource of id `image_id` (from line `line` of `split_path`, or of no split file),
    with a `problem` when the id leaves `root` and that is not allowed (`list_examples`)."""
    reason = (
        None if allow_outside_paths and '\0' not in image_id else safe_io.check_inside(image_id)
    )
    problem = None
    if reason:
        problem = (
            f'{split_path}, line {line}: image id {texts.shown(image_id)} {reason}; ids name files inside '
            f'{root}'
            + (
                ' (pass --allow_outside_paths to allow it)'
                if outside_flag and '\0' not in image_id
                else ''
            )
            + '.'
        )
        image_id = image_id.replace('\0', '?')
    annotation = os.path.join(root, 'Annotations', f'{image_id}.xml')
    if problem is None and split_path is not None and not os.path.lexists(annotation):
        # Read, it failed as a bare "No such file" of the XML, not naming the list.
        problem = (
            f'{split_path}, line {line}: image id {texts.shown(image_id)} has no annotation file '
            f'{annotation}: the list names an image the folder does not hold'
        )
    return VocSource(annotation, os.path.join(root, 'JPEGImages'), image_id, problem)


def find_image(image_dir, image_id):
    """Path of JPEGImages/<id>.<ext>, preferring .jpg; None when there is none."""
    for ext in _IMAGE_EXT_PREFERENCE:
        path = os.path.join(image_dir, image_id + ext)
        if os.path.isfile(path):
            return path
    others = sorted(glob.glob(os.path.join(glob.escape(image_dir), glob.escape(image_id) + '.*')))
    return others[0] if others else None


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_annotation_xml(path):
    """The root element of an annotation XML (a regular file of at most MAX_XML_BYTES).

    Raises:
      BadExampleError naming the file: unreadable, not a regular file, too large, not XML.
    """
    try:
        root = _parse_xml(safe_io.read_bytes(path, MAX_XML_BYTES, what='annotation XML'))
    except safe_io.UnsafeFileError as e:
        raise BadExampleError(str(e)) from None
    except LookupError as e:  # an encoding Python does not know
        raise BadExampleError(
            f'{path}: cannot read the annotation XML ({e} in its <?xml ... encoding=...?> '
            'declaration); save it as UTF-8.'
        ) from None
    except (ET.ParseError, OSError, ValueError) as e:
        raise BadExampleError(f'{path}: cannot read the annotation XML ({e}).') from None
    for element in root.iter():  # <annotation xmlns="...">: the tags are '{uri}object'
        if isinstance(element.tag, str) and element.tag.startswith('{'):
            element.tag = element.tag.split('}', 1)[1]
    return root


# Declared encodings read as their Windows supersets, as the WHATWG Encoding Standard (browsers)
# does: Windows annotation tools declare encoding="gb2312" but write GBK characters (such as
# those of names), which the strict codec refuses. Keys and values are Python's codec names.
_ENCODING_SUPERSETS = {
    'gb2312': 'gbk',
    'shift_jis': 'cp932',
    'big5': 'big5hkscs',
    'euc_kr': 'cp949',
}


def _parse_xml(data):
    """ET.fromstring(data) of an XML without a <!DOCTYPE> (`_refuse_doctype`); a multi-byte
    encoding that expat cannot decode itself (GBK, GB2312, Big5, Shift_JIS, from Windows
    annotation tools) is decoded by Python's codec first, a declared GB2312, Shift_JIS, Big5 or
    EUC-KR as its superset (`_ENCODING_SUPERSETS`)."""
    try:
        _refuse_doctype(data)
        return ET.fromstring(data)
    except ValueError as e:  # pyexpat's, before parsing anything
        match = _XML_ENCODING.match(data)
        if 'multi-byte encodings are not supported' not in str(e) or not match:
            raise
    name = codecs.lookup(match.group(1).decode('ascii')).name  # LookupError: unknown encoding
    # Text input: the parser reads it as Unicode whatever the declaration says.
    text = data.decode(_ENCODING_SUPERSETS.get(name, name))
    _refuse_doctype(text)
    return ET.fromstring(text)


class _RootStarted(Exception):
    """The root element began: no <!DOCTYPE> can follow."""


def _refuse_doctype(data):
    """Raises ValueError when the XML `data` (bytes or text) has a <!DOCTYPE> with an internal
    subset, where entities are declared (expat loads no external DTD): a 31 MB file of 139,500
    references to a 20 kB entity expanded to 3 GB, within expat's amplification limit (100x). A
    bare `<!DOCTYPE annotation>` declares nothing and is read. Reads up to the root element's
    start tag only; errors of the XML itself are left to the parse that follows."""
    parser = xml.parsers.expat.ParserCreate()

    def doctype(name, system_id, public_id, has_internal_subset):
        if has_internal_subset:
            raise ValueError(
                f'a <!DOCTYPE> declaring entities at line {parser.CurrentLineNumber}: VOC '
                f'annotations declare none, and entities can expand to gigabytes; remove it'
            )

    def root_started(*_):
        raise _RootStarted()

    parser.StartDoctypeDeclHandler = doctype
    parser.StartElementHandler = root_started
    try:
        parser.Parse(data, True)
    except (_RootStarted, xml.parsers.expat.ExpatError):
        pass


@dataclasses.dataclass(frozen=True)
class VocObject:
    """One `object` of an annotation (`<part>`s inside it are not objects).

    The box and the flags are parsed when asked for, so that a caller may drop an object (an
    unknown class, an inverted box) without its other elements being judged.

    Attributes:
      where: str, '<annotation path>: object <index>', for messages.
      name: str, the stripped `<name>`, never empty.
      element: xml.etree.ElementTree.Element, the `<object>`.
    """

    where: str
    name: str
    element: ET.Element

    def box(self):
        """(xmin, ymin, xmax, ymax) floats, finite, as written: 1-based pixels, unclipped.

        Raises:
          BadExampleError: no `<bndbox>`, or a coordinate missing or not a finite number.
        """
        bndbox = self.element.find('bndbox')
        if bndbox is None:
            raise BadExampleError(f'{self.where} ({self.name}) has no <bndbox>.')
        return tuple(self._coord(bndbox, tag) for tag in ('xmin', 'ymin', 'xmax', 'ymax'))

    def _coord(self, bndbox, tag):
        element = bndbox.find(tag)
        if element is None or element.text is None:
            raise BadExampleError(f'{self.where}: <bndbox> has no <{tag}>.')
        try:
            value = float(element.text.strip())
        except ValueError:
            value = None
        if value is None or not math.isfinite(value):
            raise BadExampleError(
                f'{self.where}: <bndbox><{tag}> is {texts.shown(element.text)}, expected a finite number.'
            )
        return value

    def flag(self, tag):
        """The int 0 or 1 of `<tag>` ('difficult', 'truncated'): a missing or empty element is 0,
        a number is its integer part's truth.

        Raises:
          BadExampleError: the text is not a finite number.
        """
        element = self.element.find(tag)
        if element is None or element.text is None or not element.text.strip():
            return 0
        try:
            return 1 if int(float(element.text.strip())) else 0
        except (ValueError, OverflowError):  # OverflowError: int(inf)
            raise BadExampleError(
                f'{self.where}: <{tag}> is {texts.shown(element.text)}, expected 0 or 1.'
            ) from None


def annotation_objects(root, path):
    """The `object`s of an annotation's root element (from `read_annotation_xml(path)`), in file
    order, as VocObject; lazily, so objects before a bad one are seen first.

    Raises:
      BadExampleError naming `path` and the object: an object without a `<name>`.
    """
    for index, obj in enumerate(root.findall('object')):
        where = f'{path}: object {index}'
        name = (obj.findtext('name') or '').strip()
        if not name:
            raise BadExampleError(f'{where} has no <name>.')
        yield VocObject(where, name, obj)


def voc_box_to_relative(xmin, ymin, xmax, ymax, width, height):
    """Applies the module's box rule.

    Returns:
      (box, clipped, drop_reason): box is (ymin, xmin, ymax, xmax) relative or None when dropped;
      clipped is a list of human-readable clip notes; drop_reason is None or a string.
    """
    # 1-based inclusive pixels: xmin == xmax is one pixel wide; only xmax < xmin has no pixel.
    inverted = [
        f'{b} < {a}'
        for a, b, lo, hi in (('xmin', 'xmax', xmin, xmax), ('ymin', 'ymax', ymin, ymax))
        if hi < lo
    ]
    if inverted:
        return (
            None,
            [],
            f'inverted box, {" and ".join(inverted)} (xmin={xmin:g}, ymin={ymin:g}, '
            f'xmax={xmax:g}, ymax={ymax:g})',
        )
    x0, y0, x1, y1 = xmin - 1.0, ymin - 1.0, float(xmax), float(ymax)
    clipped = [
        f'{name}={orig:g}'
        for name, orig, value, limit in (
            ('xmin', xmin, x0, width),
            ('ymin', ymin, y0, height),
            ('xmax', xmax, x1, width),
            ('ymax', ymax, y1, height),
        )
        if value < 0 or value > limit
    ]
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    if x1 <= x0 or y1 <= y0:
        return (
            None,
            clipped,
            f'box outside the {width}x{height} image (xmin={xmin:g}, ymin={ymin:g}, '
            f'xmax={xmax:g}, ymax={ymax:g})',
        )
    return (y0 / height, x0 / width, y1 / height, x1 / width), clipped, None


class VocLoader:
    """Turns a VocSource into (ExampleRecord, report). Picklable, for worker processes.

    Args:
      class_names: tuple of class names, id = index + 1.
      skip_unknown_classes: drop objects of unknown classes (reported) instead of raising.
      image_limits: image_io.ImageLimits (pixels, bytes) an image must stay within.
      labels_advice: what the unknown-class error advises about the class list.
    """

    def __init__(
        self,
        class_names,
        skip_unknown_classes=False,
        image_limits=image_io.DEFAULT_LIMITS,
        labels_advice='pass --labels_file with the full class list',
    ):
        self.class_names = tuple(class_names)
        self.skip_unknown_classes = skip_unknown_classes
        self.image_limits = image_limits
        self.labels_advice = labels_advice
        self._ids = {name: i + 1 for i, name in enumerate(self.class_names)}

    def __call__(self, source):
        """Returns (ExampleRecord, report) where report is a list of dicts
        {'file', 'kind', 'detail'} with kind in fixed/dropped_object/unknown_class.

        Raises:
          BadExampleError: unreadable/malformed XML, missing or corrupt image.
          UnknownClassError: an unknown class name and not skip_unknown_classes.
        """
        where = source.annotation_path
        root = read_annotation_xml(where)
        image_path = find_image(source.image_dir, source.image_id)
        if image_path is None:
            raise BadExampleError(f'{where}: no image {source.image_id}.* in {source.image_dir}.')
        image = load_example_image(image_path, self.image_limits)
        report = []

        def note(kind, detail, fix=None):
            report.append(convert.report_entry(where, kind, detail, fix))

        if image.converted_from:
            note('fixed', f'{os.path.basename(image_path)}: {image.conversion}', 'reencoded')
        # Pretty-printed files hold '\n    500\n  ': float() ignores the spaces; messages too.
        xml_w, xml_h = ((root.findtext(f'size/{tag}') or '').strip() for tag in ('width', 'height'))
        if (_number(xml_w), _number(xml_h)) != (image.width, image.height):
            said = f'says {xml_w}x{xml_h}' if root.find('size') is not None else 'is missing'
            note(
                'fixed',
                f'<size> {said}, decoded image is {image.width}x{image.height}; '
                f'using the decoded size',
                'size',
            )
        xml_filename = (root.findtext('filename') or '').strip()
        image_name = os.path.basename(image_path)
        if xml_filename != image_name:
            note(
                'fixed',
                f'<filename> is {xml_filename!r}; image found by id: {image_name}',
                'filename',
            )
        objects = []
        for index, obj in enumerate(annotation_objects(root, where)):
            name = obj.name
            if name not in self._ids:
                case = labels.case_note(name, self.class_names)
                if not self.skip_unknown_classes:
                    known = (
                        f'{obj.where} has class name {name!r}, which is not among the '
                        f'{len(self.class_names)} known classes ({", ".join(self.class_names)})'
                    )
                    if case:  # 'Dog' for 'dog': matched exactly, never lowercased
                        raise UnknownClassError(
                            f'{known}: it {case}, and class names are case-sensitive. Fix the '
                            'annotation\'s spelling, pass a --labels_file that spells the class '
                            'as the annotations do, or pass --skip_unknown_classes to drop such '
                            'objects.'
                        )
                    close = labels.close_note(name, self.class_names)
                    raise UnknownClassError(
                        f'{known}{f": {close}" if close else "."} Fix the annotation, '
                        f'{self.labels_advice}, or pass --skip_unknown_classes to drop such objects.'
                    )
                note(
                    'unknown_class',
                    f'object {index}: unknown class {name!r}{f" ({case})" if case else ""} dropped',
                )
                continue
            box, clipped, drop = voc_box_to_relative(*obj.box(), image.width, image.height)
            if drop:
                note('dropped_object', f'object {index} ({name}): {drop}')
                continue
            if clipped:
                note(
                    'fixed',
                    f'object {index} ({name}): {", ".join(clipped)} clipped to the '
                    f'{image.width}x{image.height} image',
                    'box_clipped',
                )
            objects.append(
                ObjectRecord(
                    box=box,
                    label=self._ids[name],
                    name=name,
                    difficult=obj.flag('difficult'),
                    truncated=obj.flag('truncated'),
                )
            )
        return ExampleRecord(filename=image_name, image=image, objects=tuple(objects)), report
