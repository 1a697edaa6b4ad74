"""Class lists: the 20 Pascal VOC classes and user label files.

Label ids are 1..K in list order; 0 is the background and is never written to a record.
"""

import difflib
import os
import unicodedata

from tf_extended import safe_io

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
    """Reads a class list: one name per line, surrounding whitespace stripped, blank lines ignored
    (UTF-8, a leading byte order mark dropped).

    Returns:
      tuple of str, the class names in id order (first line is id 1).
    Raises:
      ValueError: the file is empty, not UTF-8 text, names a class twice, or a name holds a control
      character or is longer than MAX_CLASS_NAME_CHARS; OSError: unreadable, not a regular file or
      larger than MAX_LABELS_BYTES (safe_io.UnsafeFileError).
    """
    text = safe_io.read_text(path, MAX_LABELS_BYTES, 'labels file', 'one class name per line')
    names, seen = [], set()
    for number, line in enumerate(text.split('\n'), 1):
        name = line.strip()
        if not name:
            continue
        where = f'{path}, line {number}: class name {name[:40]!r}{"..." if len(name) > 40 else ""}'
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
    return tuple(names)


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
    'ids follow the line order)'
)


def read_labels_flag(labels_file, error, near=()):
    """`read_labels_file` of a converter's --labels_file: every failure raised as `error` (an
    exception class) in one line naming the flag and the file. `near`: folders whose labels.txt
    the message names when the file is missing or a folder (the dataset folder)."""
    try:
        return read_labels_file(labels_file)
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


def names_shown(names, count=5):
    """The first `count` class names for a log line ('a, b, c, ...')."""
    return ', '.join(names[:count]) + (', ...' if len(names) > count else '')


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
