"""Text shared by messages. Imports nothing with side effects, so converter, reader and script
modules that must not load TensorFlow or install log filters can use it."""


def listed(entries, limit=30):
    """The first `limit` of `entries` (strings) joined, and how many more there are (`a, b and 3
    more`): one model's variables listed whole made a 24 KB log line."""
    text = ', '.join(entries[:limit])
    return text + (f' and {len(entries) - limit} more' if len(entries) > limit else '')


def shown(value, limit=80):
    """`repr(value)` for a message, cut to `limit` characters with `...` at the end where longer:
    a cut without the mark read as the whole value (a string without its closing quote)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + '...'
