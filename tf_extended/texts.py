"""Text shared by messages. Imports nothing with side effects, so converter, reader and script
modules that must not load TensorFlow or install log filters can use it."""

import reprlib


def counted(n, noun):
    """`n` and `noun`, plural unless n is 1: '1 image', '4 images'."""
    return f'{n} {noun}{"" if n == 1 else "s"}'


def cut(text, limit):
    """`text` (a str) of at most `limit` characters, ending in `...` where it was cut: a cut
    without the mark reads as the whole text."""
    return text if len(text) <= limit else text[: limit - 3] + '...'


def listed(entries, limit=30, show=str):
    """The first `limit` of `entries` (a sequence), each formatted by `show`, joined, and how many
    more there are (`a, b and 3 more`): one model's variables listed whole made a 24 KB log line,
    and a list cut with `, ...` did not say how much was left out. One entry past `limit` is
    shown rather than counted ('and 1 more' is no shorter)."""
    if len(entries) == limit + 1:
        limit += 1
    text = ', '.join(map(show, entries[:limit]))
    return text + (f' and {len(entries) - limit} more' if len(entries) > limit else '')


class _Bounded(reprlib.Repr):
    """`reprlib.Repr` whose work stays bounded on any value a file can hold: 3 levels, 20 items
    of each container, strings, ints and others of `limit` characters; a pickle's bytes are cut
    before their repr, and an integer past Python's 4300-digit str limit is named by its size
    (its repr raises ValueError)."""

    def __init__(self, limit):
        super().__init__()
        self.maxlevel = 3
        self.maxstring = self.maxlong = self.maxother = limit
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 20
        self.maxfrozenset = self.maxdeque = self.maxarray = 20

    def repr_bytes(self, value, level):
        return repr(value[: self.maxstring]) + ('...' if len(value) > self.maxstring else '')

    repr_bytearray = repr_bytes

    def repr_int(self, value, level):
        try:
            return super().repr_int(value, level)
        except ValueError:
            return f'<an integer of {value.bit_length()} bits>'


def shown(value, limit=80):
    """`repr(value)` for a message, at most `limit` characters, cut with `...` where longer (a cut
    without the mark read as the whole value): a string in the middle (`'/data/Anno...1.xml'`:
    its start and end), containers after 20 items and 3 levels, the whole at the end. A value
    from a hostile file may be a list of millions or nest thousands deep: only what is shown is
    formatted."""
    return cut(_Bounded(limit).repr(value), limit)
