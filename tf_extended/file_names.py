"""The one rule by which a name (a class name) becomes part of a file name.

Class names can hold anything a dataset holds: spaces ('traffic light'), slashes ('a/b'),
non-ASCII letters, characters Windows refuses. Wherever such a name becomes (part of) a file name
(the devkit results files ``comp4_det_<split>_<stem>.txt``, the plots ``pr_<stem>.png``), it goes
through :func:`safe_file_names`; tables, JSON and TensorBoard keep the real name.

The rule, per name in the given order:
  * Unicode NFC normalisation; every character that is not a letter or digit (``str.isalnum``)
    or one of ``- _ .`` becomes ``_`` (spaces, ``/``, ``\\``, ``:``, control characters, ...);
  * a leading ``.`` becomes ``_`` (no hidden files, no ``..``);
  * longer than 100 UTF-8 bytes: cut to 91 bytes plus ``~`` and 8 hex digits of the name's
    SHA-1 (distinct long names stay distinct);
  * a stem already taken by an earlier name (compared case-insensitively, as macOS and Windows
    file systems do) gets ``_2``, ``_3``, ... (the first free one).
So the stems depend on the whole list and its order: give the same list (label order) to get
the same stems back, as the writers and readers of results files do.
"""

import hashlib
import unicodedata
from typing import Dict, Iterable

_KEPT = frozenset('-_.')
_MAX_BYTES = 100


def _stem(name: str) -> str:
    text = unicodedata.normalize('NFC', name)
    chars = [c if (c.isalnum() or c in _KEPT) else '_' for c in text]
    if chars and chars[0] == '.':
        chars[0] = '_'
    stem = ''.join(chars) or '_'
    if len(stem.encode('utf-8')) > _MAX_BYTES:
        digest = hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]
        cut = stem.encode('utf-8')[: _MAX_BYTES - 9].decode('utf-8', 'ignore')
        stem = f'{cut}~{digest}'
    return stem


def safe_file_names(names: Iterable[str]) -> Dict[str, str]:
    """{name: file-name stem} for `names` (unique strings), by the module's rule.

    Raises:
      ValueError: a name is not a non-empty string, or appears twice.
    """
    stems, taken = {}, set()
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f'safe_file_names: names must be non-empty strings, got {name!r}.')
        if name in stems:
            raise ValueError(f'safe_file_names: name {name!r} appears twice; names must be unique.')
        base = _stem(name)
        stem, k = base, 1
        while stem.casefold() in taken:
            k += 1
            stem = f'{base}_{k}'
        taken.add(stem.casefold())
        stems[name] = stem
    return stems
