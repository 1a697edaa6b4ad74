"""Class lists: the 20 Pascal VOC classes and user label files.

Label ids are 1..K in list order; 0 is the background and is never written to a record.
"""

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


def read_labels_file(path):
    """Reads a class list: one name per line, surrounding whitespace stripped, blank lines ignored.

    Returns:
      tuple of str, the class names in id order (first line is id 1).
    Raises:
      ValueError: the file is empty, not UTF-8 text or names a class twice; OSError: unreadable,
      or not a regular file (safe_io.UnsafeFileError).
    """
    try:
        with safe_io.open_text(path, 'labels file') as f:
            names = [line.strip() for line in f]
    except UnicodeDecodeError as e:
        raise ValueError(
            f'{path}: labels file is not UTF-8 text ({e}); expected one class name per line.'
        ) from None
    names = tuple(n for n in names if n)
    if not names:
        raise ValueError(f'{path}: labels file has no class names (expected one name per line).')
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f'{path}: class name {name!r} is listed twice; names must be unique.')
        seen.add(name)
    return names


def labels_to_names(class_names):
    """Maps id -> name for ids 0..K, with 0 the background ('none')."""
    mapping = {0: BACKGROUND_NAME}
    mapping.update({i + 1: name for i, name in enumerate(class_names)})
    return mapping
