"""Class lists: the 20 Pascal VOC classes and user label files.

Label ids are 1..K in list order; 0 is the background and is never written to a record.

A labels file is one class name per line, or a TF Object Detection API label map
(`label_map.pbtxt`: `item { id: 1 name: 'cat' display_name: 'Cat' }` per class, in protobuf text
format), whose class names are the items' `name`s in `id` order.
"""

import difflib
import os
import re
import unicodedata

from absl import logging

from tf_extended import safe_io
from tf_extended import texts

VOC_CLASSES = (
    'aeroplane',
    'bicycle',
    'bird',
    'boat',
    'bottle',
    'bus',
    'car',
    'cat',
    'chair',
    'cow',
    'diningtable',
    'dog',
    'horse',
    'motorbike',
    'person',
    'pottedplant',
    'sheep',
    'sofa',
    'train',
    'tvmonitor',
)

BACKGROUND_NAME = 'none'

# A labels file is a few kB (LVIS: 1203 names, 20 kB); 1 MiB holds ~40000 names of 25 characters.
MAX_LABELS_BYTES = 1 << 20
# Class names end up in file names, summaries and tables; no dataset's name comes near this.
MAX_CLASS_NAME_CHARS = 256


def read_labels_file(path):
    """The class names of `read_class_list(path)`: a tuple of str in label order."""
    return read_class_list(path)[0]


def read_class_list(path):
    """Reads a class list: one name per line, surrounding whitespace stripped, blank lines ignored
    (UTF-8, a leading byte order mark dropped), or a TF Object Detection API label map (a file
    whose first token, after comments, is `item {`; see `_read_label_map`).

    Returns:
      (names, ids): the class names in label order (a plain file's first line is label 1), and a
      label map's item ids of those labels (tuple of int), None for a plain file.
    Raises:
      ValueError: the file is empty, not UTF-8 text, names a class twice, or a name holds a control
      character or is longer than MAX_CLASS_NAME_CHARS, or it is a malformed label map;
      OSError: unreadable, not a regular file or larger than MAX_LABELS_BYTES
      (safe_io.UnsafeFileError).
    """
    text = safe_io.read_text(path, MAX_LABELS_BYTES, 'labels file', 'one class name per line')
    if _LABEL_MAP_START.match(text):
        return _read_label_map(text, path)
    names, seen = [], set()
    for number, line in enumerate(text.split('\n'), 1):
        name = line.strip()
        if not name:
            continue
        where = f'{path}, line {number}: class name {texts.shown(name)}'
        control = next((c for c in name if unicodedata.category(c) == 'Cc'), None)
        if control is not None:
            raise ValueError(
                f'{where} holds the control character U+{ord(control):04X}; expected one '
                f'printable class name per line (is this a labels file?).'
            )
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise ValueError(
                f'{where} has {len(name)} characters, more than {MAX_CLASS_NAME_CHARS}; expected '
                f'one class name per line (is this a labels file?).'
            )
        if name in seen:
            raise ValueError(f'{where} is listed twice; names must be unique.')
        seen.add(name)
        names.append(name)
    if not names:
        raise ValueError(f'{path}: labels file has no class names (expected one name per line).')
    return tuple(names), None


LABEL_MAP_EXPECTED = (
    "a TF Object Detection API label map: item { id: N name: '...' } per class, ids 1, 2, ... "
    "(the class order), names as the annotations' <name> spells them"
)
# A label map starts with its first item (after blank lines and comments): `item {` or `item: {`
# (or `<` for `{`: protobuf's text format takes either pair of delimiters for a message).
# One way to match each character (`\s` singly, a comment up to its newline, no two adjacent
# `\s*`): linear time (`item\s*:?\s*\{` took minutes on 'item' and a MiB of spaces).
_LABEL_MAP_START = re.compile(r'(?:\s|#[^\n]*\n)*item\s*(?::\s*)?[{<]')
_LABEL_MAP_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<punct>[{}<>:;,\[\]]) |
    (?P<word>[^\s{}<>:;,\[\]"'\#]+)
""",
    re.VERBOSE,
)
_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', "'": "'", '\\': '\\'}
# Blocks inside an item (keypoints { ... }) nest one deep; the bound keeps a hostile file from
# building deep structures.
_MAX_LABEL_MAP_DEPTH = 16
_INT32_MAX = 2**31 - 1  # a label map's id is an int32
_CLOSERS = {'{': '}', '<': '>'}


def _read_label_map(text, path):
    """The class names of a TF Object Detection API label map (`text`, read from `path`): each
    `item`'s `name` (what the annotations' <name> holds; TF-OD-API matches `name` too, its
    `display_name` is for display), ordered by `id`. Other fields of an item (display_name,
    keypoints { ... }, frequency, ...) are read past.

    Ids need not be 1..K (COCO's label map skips ids): the model's labels are 1..K in id order,
    and a note logs the first ids that change.

    Returns:
      (names, ids): the class names of labels 1..K and their item ids (tuples of str, int).
    Raises:
      ValueError: naming the file, the line and the item: malformed text (see
      `_parse_label_map`), an item without exactly one quoted `name` or one `id`, an id that is
      not an integer in 1..2**31-1 (0 is the background TF-OD-API reserves), an id or a name twice,
      a name that `class_name_problem` refuses.
    """
    items = _parse_label_map(text, path)
    names_by_id, first = {}, {}  # first: 'id 3' / "name 'cat'" -> (item, line) that has it
    for index, (line, fields) in enumerate(items, 1):
        where = f'{path}, line {line}: item {index}'
        item_id = _label_map_id(fields, where)
        name = _label_map_name(fields, where)
        for what in (f'id {item_id}', f'name {name!r}'):
            if what in first:
                raise ValueError(
                    f'{where} has {what}, as item {first[what][0]} (line {first[what][1]}) has; '
                    f'ids and names must be unique: expected {LABEL_MAP_EXPECTED}.'
                )
            first[what] = (index, line)
        names_by_id[item_id] = name
    ids = sorted(names_by_id)
    names = tuple(names_by_id[i] for i in ids)
    if ids != list(range(1, len(ids) + 1)):
        changed = [(i, label) for label, i in enumerate(ids, 1) if i != label]
        shown = texts.listed(
            [f'id {i} -> label {label} ({names[label - 1]})' for i, label in changed], 3
        )
        logging.info(
            '%s: the label map\'s ids are not 1..%d; the model\'s labels are 1..%d in id order: '
            '%s.',
            path,
            len(ids),
            len(ids),
            shown,
        )
    return names, tuple(ids)


def _single(fields, key, where, form, instead):
    """The one (kind, value, line) of field `key` of a label map item's `fields`; else ValueError
    naming the item (`where`), the expected `form` and, where the item has the field `instead`
    names, what that field is ({field: text})."""
    values = fields.get(key, [])
    if len(values) == 1:
        return values[0]
    found = f'has {len(values)} {key}s' if values else f'has no {key}'
    found += next(
        (f' ({text})' for other, text in instead.items() if not values and other in fields), ''
    )
    raise ValueError(f'{where} {found}; expected one {form} per item: {LABEL_MAP_EXPECTED}.')


def _label_map_id(fields, where):
    """The `id` of a label map item's `fields`, checked (`where` names the item)."""
    kind, value, line = _single(
        fields,
        'id',
        where,
        'id: N',
        {'label': "label: N is a Caffe SSD label map's; this format numbers with id"},
    )
    shown = (
        texts.shown(value)
        if kind == 'string'
        else 'a block'
        if kind == 'block'
        else texts.cut(value, 40)
    )
    if kind != 'word' or not re.fullmatch(r'[-+]?[0-9]+', value):
        # protobuf also reads hexadecimal (0x1f); a label map's ids are decimal in practice.
        decimal = ' written in decimal' if re.fullmatch(r'[-+]?0[xX][0-9a-fA-F]+', value) else ''
        raise ValueError(
            f'{where}: id {shown} (line {line}) is not an integer{decimal}; expected '
            f'{LABEL_MAP_EXPECTED}.'
        )
    digits = value.lstrip('+-')
    if len(digits) > 1 and digits.startswith('0'):
        raise ValueError(
            f'{where}: id {shown} (line {line}) has a leading 0, which protobuf\'s text format (the '
            f'TF Object Detection API\'s reader) reads as an octal number; write the id without '
            f'leading zeros: expected {LABEL_MAP_EXPECTED}.'
        )
    # More than 10 digits is beyond int32 whatever they say: int() of them is not needed.
    item_id = int(value) if len(digits) <= 10 else _INT32_MAX + 1
    if item_id == 0:
        raise ValueError(
            f'{where}: id 0 (line {line}) is the background TF Object Detection API reserves, not '
            f'a class; leave the item out (the background is implicit) or give it a class id from '
            f'1: expected {LABEL_MAP_EXPECTED}.'
        )
    if not 1 <= item_id <= _INT32_MAX:
        raise ValueError(
            f'{where}: id {shown} (line {line}) is not in 1..{_INT32_MAX}; expected '
            f'{LABEL_MAP_EXPECTED}.'
        )
    return item_id


def _label_map_name(fields, where):
    """The class name (`name`, stripped) of a label map item's `fields`, checked."""
    kind, value, line = _single(
        fields,
        'name',
        where,
        "name: '...'",
        {
            'display_name': "display_name is for display; the annotations' <name> is matched against name"
        },
    )
    if kind != 'string':
        shown = 'a block' if kind == 'block' else value
        raise ValueError(
            f"{where}: name {shown} (line {line}) is not a quoted string ('...' or \"...\"); "
            f'expected {LABEL_MAP_EXPECTED}.'
        )
    name = value.strip()
    problem = class_name_problem(name)
    if problem is not None:
        raise ValueError(
            f'{where}: name {texts.shown(name)} (line {line}) {problem}; expected {LABEL_MAP_EXPECTED}.'
        )
    return name


def _label_map_tokens(text, path):
    """(kind, text, line) of each token of protobuf text `text`: kind 'string' (a quoted string,
    unescaped), 'word' (a bare word: a number, a field name, an enum value) or 'punct'."""
    line, pos = 1, 0
    while pos < len(text):
        m = _LABEL_MAP_TOKEN.match(text, pos)
        if not m:  # only a quote that is not closed on its line gets here
            raise ValueError(
                f'{path}, line {line}: a string opened by {text[pos]} is not closed on its line; '
                f'expected {LABEL_MAP_EXPECTED}.'
            )
        kind = m.lastgroup
        if kind == 'string':
            yield kind, _unescape(m.group(kind)[1:-1], path, line), line
        elif kind != 'space':
            yield kind, m.group(kind), line
        line += m.group(0).count('\n')
        pos = m.end()


def _unescape(body, path, line):
    """The text of a quoted string's `body` with its backslash escapes (\\n \\t \\' ...) read."""

    def one(m):
        if m.group(1) not in _ESCAPES:
            raise ValueError(
                f'{path}, line {line}: unknown escape \\{m.group(1)} in a string; expected '
                f'{LABEL_MAP_EXPECTED}.'
            )
        return _ESCAPES[m.group(1)]

    return re.sub(r'\\(.)', one, body)


def _parse_label_map(text, path):
    """The `item` blocks of a label map, as (line, fields) in file order, `fields` mapping each
    field name to its [(kind, value, line)]: kind 'string' / 'word' with a str value, or
    'block' with a dict of fields (`keypoints { ... }`).

    Raises:
      ValueError: naming the file and line: unbalanced braces, a field without a value, a
      top-level field other than an `item` block, blocks nested too deep.
    """
    tokens = _label_map_tokens(text, path)
    # (fields, line of its `{` or `<`, the closer it expects) of each open block
    items, stack = [], [({}, None, None)]
    for kind, token, line in tokens:
        if kind == 'punct' and token in '}>':
            if len(stack) == 1:
                raise ValueError(
                    f'{path}, line {line}: a "{token}" that closes no block; expected '
                    f'{LABEL_MAP_EXPECTED}.'
                )
            if token != stack[-1][2]:
                raise ValueError(
                    f'{path}, line {line}: a "{token}" closes the block opened on line '
                    f'{stack[-1][1]}, which "{stack[-1][2]}" closes; expected '
                    f'{LABEL_MAP_EXPECTED}.'
                )
            stack.pop()
            continue
        if kind == 'punct' and token in ';,':
            continue
        if kind != 'word':
            raise ValueError(
                f'{path}, line {line}: {token!r} where a field name was expected; expected '
                f'{LABEL_MAP_EXPECTED}.'
            )
        values, closer = _field_values(tokens, token, line, path)
        if len(stack) == 1 and (token != 'item' or not values or values[0][0] != 'block'):
            raise ValueError(
                f'{path}, line {line}: {token!r} at the top level; a label map holds only '
                f'item {{ ... }} blocks: expected {LABEL_MAP_EXPECTED}.'
            )
        stack[-1][0].setdefault(token, []).extend(values)
        if values and values[0][0] == 'block':
            if len(stack) > _MAX_LABEL_MAP_DEPTH:
                raise ValueError(
                    f'{path}, line {line}: blocks nested more than {_MAX_LABEL_MAP_DEPTH} deep; '
                    f'expected {LABEL_MAP_EXPECTED}.'
                )
            if len(stack) == 1:
                items.append((line, values[0][1]))
            stack.append((values[0][1], line, closer))
    if len(stack) > 1:
        opener = {v: k for k, v in _CLOSERS.items()}[stack[-1][2]]
        raise ValueError(
            f'{path}, line {stack[-1][1]}: this "{opener}" is never closed (the file ends '
            f'first); expected {LABEL_MAP_EXPECTED}.'
        )
    return items


def _field_values(tokens, key, line, path):
    """The values of field `key` (at `line`) read from `tokens` after its name: `: value`,
    `: [value, ...]`, or a block `{` or `<` (`: {`), whose fields the caller reads next; and the
    token that closes that block (None for a value)."""
    token = next(tokens, None)
    colon = token is not None and token[1] == ':' and token[0] == 'punct'
    if colon:
        token = next(tokens, None)
    if token is not None and token[0] == 'punct' and token[1] in _CLOSERS:
        return [('block', {}, line)], _CLOSERS[token[1]]
    if colon and token is not None and token[0] in ('string', 'word'):
        return [token], None
    if colon and token is not None and token[1] == '[':
        values = []
        for kind, value, value_line in tokens:
            if kind == 'punct' and value == ']':
                return values, None
            if kind in ('string', 'word'):
                values.append((kind, value, value_line))
            elif value != ',':
                break
    raise ValueError(
        f'{path}, line {line}: field {key!r} has no value (expected {key}: value or '
        f'{key} {{ ... }}); expected {LABEL_MAP_EXPECTED}.'
    )


def case_note(name, class_names):
    """For messages about an unknown class name: "differs only in case from the known class 'dog'"
    when `name` equals known names except for case ('Dog'), else None. Names stay matched exactly:
    a class list may hold 'Dog' and 'dog' as two classes."""
    folded = name.casefold()
    variants = [repr(c) for c in class_names if c != name and c.casefold() == folded]
    if not variants:
        return None
    return f'differs only in case from the known class {" or ".join(variants)}'


def close_note(name, class_names):
    """For messages about an unknown class name: "did you mean 'person'?" when `name` is close to
    known names (a typo), else None."""
    close = difflib.get_close_matches(name, class_names, n=2, cutoff=0.75)
    return f'did you mean {" or ".join(map(repr, close))}?' if close else None


LABELS_FILE_EXPECTED = (
    'a text file with one class name per line (the first line is class id 1, the next id 2, ...: '
    'ids follow the line order), or a TF Object Detection API label map (label_map.pbtxt)'
)


def read_labels_flag(labels_file, error, near=(), read=read_labels_file):
    """`read(labels_file)` (`read_labels_file` or `read_class_list`) of a converter's
    --labels_file: every failure raised as `error` (an exception class) in one line naming the flag
    and the file. `near`: folders whose labels.txt the message names when the file is missing or a
    folder (the dataset folder)."""
    try:
        return read(labels_file)
    except (FileNotFoundError, NotADirectoryError):
        problem = 'does not exist'
    except (safe_io.UnsafeFileError, IsADirectoryError) as e:
        if not os.path.isdir(labels_file):
            raise error(f'--labels_file: {e}') from None
        problem = 'is a folder'
        near = (labels_file, *near)
    except OSError as e:
        raise error(f'--labels_file: cannot read {labels_file}: {e.strerror or e}') from None
    except ValueError as e:
        raise error(f'--labels_file: {e}') from None
    found = [
        f
        for f in dict.fromkeys(os.path.join(folder, 'labels.txt') for folder in near)
        if os.path.isfile(f) and os.path.abspath(f) != os.path.abspath(labels_file)
    ]
    fix = f'pass --labels_file={found[0]}' if found else 'pass the path of the labels file'
    raise error(
        f'--labels_file: {labels_file} {problem}; expected {LABELS_FILE_EXPECTED}: {fix}.'
    ) from None


# How labels files of other tools name the background they list first.
BACKGROUND_LINES = frozenset({'background', '__background__', 'bg', BACKGROUND_NAME})


def background_line_note(names, count):
    """For a labels file of `names` where `count` names were expected: a note when its first
    line is a background entry that makes it one too many (the usual off-by-one), else ''."""
    if len(names) == count + 1 and names[0].casefold() in BACKGROUND_LINES:
        return (
            f' (its first line, {names[0]!r}, is a background entry: leave it out, label 1 is '
            'the first line)'
        )
    return ''


def labels_to_names(class_names):
    """Maps id -> name for ids 0..K, with 0 the background ('none')."""
    mapping = {0: BACKGROUND_NAME}
    mapping.update({i + 1: name for i, name in enumerate(class_names)})
    return mapping


def class_name_problem(name):
    """What makes `name` unusable as a class name, as text to follow the name in a message
    ('is empty', 'holds the control character U+0009', 'has 300 characters, more than 256'), or
    None: the checks `read_labels_file` makes of each line, for class names from other files
    (a Caffe label map's display_name)."""
    if not name.strip():
        return 'is empty'
    control = next((c for c in name if unicodedata.category(c) == 'Cc'), None)
    if control is not None:
        return f'holds the control character U+{ord(control):04X}'
    if len(name) > MAX_CLASS_NAME_CHARS:
        return f'has {len(name)} characters, more than {MAX_CLASS_NAME_CHARS}'
    return None
