"""A small parser and writer for protobuf text format (Caffe `.prototxt` files).

Schema-free: `key: value` pairs and `key { ... }` blocks (also `key: { ... }`), repeated keys,
quoted strings ('...' or "..." with backslash escapes), numbers, bare words (enum values,
true/false) and `#` comments. Values are typed by their spelling: quoted -> str, integer
literal -> int, other number -> float, `true`/`false` -> bool, any other bare word -> str.
"""

import re

_TOKEN = re.compile(r'''
    (?P<space>\s+|\#[^\n]*) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<punct>[{}:;,<>\[\]]) |
    (?P<word>[^\s{}:;,<>\[\]"'\#]+)
''', re.VERBOSE)
_INT = re.compile(r'^[-+]?(0[xX][0-9a-fA-F]+|\d+)$')
_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', "'": "'", '\\': '\\'}


class PrototxtError(ValueError):
    """The text is not valid protobuf text format."""


class Message:
    """A parsed message: an ordered list of (key, value) fields; values are scalars or Messages."""

    def __init__(self, fields=None):
        self.fields = list(fields or [])

    def get_all(self, key):
        """All values of `key`, in file order (a repeated field)."""
        return [v for k, v in self.fields if k == key]

    def get(self, key, default=None):
        """The last value of `key` (protobuf's rule for a repeated optional field), or default."""
        values = self.get_all(key)
        return values[-1] if values else default

    def has(self, key):
        return any(k == key for k, _ in self.fields)

    def __eq__(self, other):
        return isinstance(other, Message) and self.fields == other.fields

    __hash__ = None

    def __repr__(self):
        return 'Message(%r)' % (self.fields,)


def _unquote(token, line):
    body, out, i = token[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == '\\' and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt in '01234567':
                octal = re.match(r'[0-7]{1,3}', body[i + 1:]).group(0)
                out.append(chr(int(octal, 8)))
                i += 1 + len(octal)
                continue
            raise PrototxtError('line %d: unknown escape \\%s in %s' % (line, nxt, token))
        out.append(c)
        i += 1
    return ''.join(out)


def _scalar(word):
    if word in ('true', 'True'):
        return True
    if word in ('false', 'False'):
        return False
    if _INT.match(word):
        return int(word, 0)
    try:
        return float(word)
    except ValueError:
        return word


def _tokens(text, source):
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise PrototxtError('%s, line %d: unexpected character %r'
                                % (source, line, text[pos]))
        kind = m.lastgroup
        if kind != 'space':
            yield kind, m.group(kind), line
        line += m.group(0).count('\n')
        pos = m.end()


def parse(text, source='<prototxt>'):
    """Parses protobuf text format into a `Message`.

    Args:
      text: the file contents.
      source: a name for error messages (the file path).
    Raises:
      PrototxtError: with the line number of the problem.
    """
    toks = list(_tokens(text, source))
    stack, i = [Message()], 0
    while i < len(toks):
        kind, tok, line = toks[i]
        if kind == 'punct' and tok in '}>':
            if len(stack) == 1:
                raise PrototxtError('%s, line %d: unbalanced "%s"' % (source, line, tok))
            stack.pop()
            i += 1
            continue
        if kind == 'punct' and tok in ';,':
            i += 1
            continue
        if kind != 'word':
            raise PrototxtError('%s, line %d: expected a field name, got %r' % (source, line, tok))
        key, i = tok, i + 1
        if i < len(toks) and toks[i][1] == ':':
            i += 1
        if i >= len(toks):
            raise PrototxtError('%s, line %d: field %r has no value' % (source, line, key))
        kind, tok, line = toks[i]
        if tok in ('{', '<'):
            child = Message()
            stack[-1].fields.append((key, child))
            stack.append(child)
        elif tok == '[':
            i += 1
            while i < len(toks) and toks[i][1] != ']':
                if toks[i][1] != ',':
                    stack[-1].fields.append((key, _value(toks[i], source)))
                i += 1
            if i >= len(toks):
                raise PrototxtError('%s, line %d: unclosed "[" of %r' % (source, line, key))
        else:
            stack[-1].fields.append((key, _value(toks[i], source)))
        i += 1
    if len(stack) != 1:
        raise PrototxtError('%s: %d unclosed "{" at end of file' % (source, len(stack) - 1))
    return stack[0]


def _value(token, source):
    kind, tok, line = token
    if kind == 'string':
        return _unquote(tok, line)
    if kind == 'word':
        return _scalar(tok)
    raise PrototxtError('%s, line %d: expected a value, got %r' % (source, line, tok))


def parse_file(path):
    """Parses a `.prototxt` file; see `parse`."""
    with open(path, encoding='utf-8') as f:
        return parse(f.read(), source=path)


def _format_scalar(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Enum):
        return value.name
    return '"%s"' % str(value).replace('\\', '\\\\').replace('"', '\\"')


class Enum:
    """A bare-word value (an enum name) for `format`."""

    def __init__(self, name):
        self.name = name


def to_text(fields, indent=0):
    """Writes text format (the inverse of `parse`).

    Args:
      fields: list of (key, value); value is a scalar (str is quoted, `Enum` is bare), a
        `Message`, or a nested list of (key, value) for a block.
    Returns:
      str.
    """
    pad, lines = '  ' * indent, []
    for key, value in (fields.fields if isinstance(fields, Message) else fields):
        if isinstance(value, (list, Message)):
            lines.append('%s%s {' % (pad, key))
            lines.append(to_text(value, indent + 1).rstrip('\n'))
            lines.append('%s}' % pad)
        else:
            lines.append('%s%s: %s' % (pad, key, _format_scalar(value)))
    return '\n'.join(line for line in lines if line) + '\n'
