"""A small parser and writer for protobuf text format (Caffe `.prototxt` files).

Schema-free: `key: value` pairs and `key { ... }` blocks (also `key: { ... }`), repeated keys,
quoted strings ('...' or "..." with backslash escapes), numbers, bare words (enum values,
true/false) and `#` comments. Values are typed by their spelling: quoted -> str, integer
literal -> int (decimal, 0x hex, 0-prefixed octal), other number -> float, `true`/`false` ->
bool, any other bare word -> str.

Files are untrusted: `parse_file` reads only regular files up to MAX_FILE_BYTES, blocks nest at
most MAX_DEPTH deep, numbers that Python cannot convert and non-UTF-8 text are PrototxtErrors
with the line. The typed getters (`Message.block`, `number`, `numbers`, `boolean`, ...) raise
`PrototxtValueError` naming the field, its line, the value and what was expected, so code reading
a parsed file never meets a Message where it expects a number (or the reverse).
"""

import math
import os
import re
import sys

from tf_extended import safe_io
from tf_extended import texts

_TOKEN = re.compile(
    r'''
    (?P<space>\s+|\#[^\n]*) |
    (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*') |
    (?P<punct>[{}:;,<>\[\]]) |
    (?P<word>[^\s{}:;,<>\[\]"'\#]+)
''',
    re.VERBOSE,
)
_INT = re.compile(r'^[-+]?(0[xX][0-9a-fA-F]+|\d+)$')
_OCTAL = re.compile(r'^[-+]?0[0-7]+$')
_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', "'": "'", '\\': '\\'}
MAX_DEPTH = 100  # protobuf's own parsers stop at 100 nested messages
MAX_FILE_BYTES = 16 << 20  # a deploy prototxt is tens of kB
# Fields in all (a parsed field takes about 500 bytes): ResNet-152's deploy file has about 10,000.
MAX_FIELDS = 200_000


class PrototxtError(ValueError):
    """The text is not valid protobuf text format."""


class PrototxtValueError(PrototxtError):
    """A field has a value of the wrong kind (a block for a number, a word for a number, ...) or
    outside its range."""


def _range_text(integer, minimum, maximum, exclusive_minimum):
    kind = 'an integer' if integer else 'a finite number'
    low, high = (
        None if v is None else '%d' % v if isinstance(v, int) else '%g' % v
        for v in (minimum, maximum)
    )
    if minimum is not None and maximum is not None:
        return '%s in %s%s, %s]' % (kind, '(' if exclusive_minimum else '[', low, high)
    if minimum is not None:
        return '%s %s %s' % (kind, '>' if exclusive_minimum else '>=', low)
    if maximum is not None:
        return '%s <= %s' % (kind, high)
    return kind


class Message:
    """A parsed message: an ordered list of (key, value) fields; values are scalars or Messages.

    `lines` maps a key to the line numbers of its values, in order (filled by `parse`).
    """

    def __init__(self, fields=None):
        self.fields = list(fields or [])
        self.lines = {}

    def line_of(self, key, index=-1):
        """The line of the index-th value of `key` in the parsed text, or None."""
        lines = self.lines.get(key, [])
        try:
            return lines[index]
        except IndexError:
            return None

    def _error(self, where, key, index, value, expected):
        line = self.line_of(key, index)
        return PrototxtValueError(
            '%s: %s%s is %s, expected %s'
            % (
                where,
                key,
                '' if line is None else ' (line %d)' % line,
                texts.shown(value),
                expected,
            )
        )

    def block(self, key, where):
        """The last `key { ... }` block, or None when absent; PrototxtValueError for a scalar."""
        values = self.get_all(key)
        if values and not isinstance(values[-1], Message):
            raise self._error(where, key, -1, values[-1], 'a { ... } block')
        return values[-1] if values else None

    def blocks(self, key, where):
        """Every `key { ... }` block. Raises PrototxtValueError for a scalar among them."""
        values = self.get_all(key)
        for i, value in enumerate(values):
            if not isinstance(value, Message):
                raise self._error(where, key, i, value, 'a { ... } block')
        return values

    def _check_number(self, key, index, value, where, integer, minimum, maximum, exclusive_minimum):
        ok = (
            (isinstance(value, int) if integer else isinstance(value, (int, float)))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and (minimum is None or value > minimum or (value == minimum and not exclusive_minimum))
            and (maximum is None or value <= maximum)
        )
        if not ok:
            raise self._error(
                where, key, index, value, _range_text(integer, minimum, maximum, exclusive_minimum)
            )
        return value if integer else float(value)

    def number(
        self,
        key,
        where,
        default=None,
        integer=False,
        minimum=None,
        maximum=None,
        exclusive_minimum=False,
    ):
        """The last value of `key` as a finite float (or int with integer=True) within the bounds;
        default when absent. Raises PrototxtValueError naming the field, its line and the bounds."""
        values = self.get_all(key)
        if not values:
            return default
        return self._check_number(
            key, len(values) - 1, values[-1], where, integer, minimum, maximum, exclusive_minimum
        )

    def numbers(
        self, key, where, integer=False, minimum=None, maximum=None, exclusive_minimum=False
    ):
        """Every value of `key` (a repeated field), each checked as in `number`."""
        return [
            self._check_number(key, i, v, where, integer, minimum, maximum, exclusive_minimum)
            for i, v in enumerate(self.get_all(key))
        ]

    def text(self, key, where, default=None):
        """The last value of `key` as a string (quoted or a bare word); default when absent."""
        values = self.get_all(key)
        if not values:
            return default
        if not isinstance(values[-1], str):
            raise self._error(where, key, len(values) - 1, values[-1], 'a string')
        return values[-1]

    def boolean(self, key, where, default=None):
        """The last value of `key` as a bool (true/false, 1/0); default when absent."""
        values = self.get_all(key)
        if not values:
            return default
        value = values[-1]
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return bool(value)
        if value in ('t', 'f'):  # protobuf text format spells booleans these ways too
            return value == 't'
        raise self._error(where, key, len(values) - 1, value, 'true or false')

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
                octal = re.match(r'[0-7]{1,3}', body[i + 1 :]).group(0)
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
    if _OCTAL.match(word) or _INT.match(word):
        try:  # protobuf text format: a leading 0 means octal
            value = int(word, 8) if _OCTAL.match(word) else int(word, 0)
        except ValueError:  # '09' (not octal): a decimal number
            return float(word)
        # Python's ints have no bound; protobuf's numbers stop at the largest double (math.isfinite
        # of a larger int overflows). Hex and octal literals escape int()'s 4300-digit limit.
        if abs(value) > sys.float_info.max:
            raise ValueError('larger than any number protobuf holds')
        return value
    try:
        return float(word)
    except ValueError:
        return word


def _tokens(text, source):
    line, pos = 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise PrototxtError('%s, line %d: unexpected character %r' % (source, line, text[pos]))
        kind = m.lastgroup
        if kind != 'space':
            yield kind, m.group(kind), line
        line += m.group(0).count('\n')
        pos = m.end()


class _TokenStream:
    """`_tokens` read one at a time (a list of them took about 100 bytes per input byte)."""

    def __init__(self, text, source):
        self._tokens = _tokens(text, source)
        self._next = next(self._tokens, None)

    def peek(self):
        """The next (kind, token, line) without taking it, or None at the end."""
        return self._next

    def take(self):
        token, self._next = self._next, next(self._tokens, None)
        return token


def parse(text, source='<prototxt>'):
    """Parses protobuf text format into a `Message`.

    Args:
      text: the file contents.
      source: a name for error messages (the file path).
    Raises:
      PrototxtError: with the line number of the problem.
    """
    if len(text) > MAX_FILE_BYTES:
        raise PrototxtError(
            '%s: %d characters, more than the %d a prototxt may have'
            % (source, len(text), MAX_FILE_BYTES)
        )
    toks = _TokenStream(text, source)
    stack, count = [Message()], 0
    while toks.peek() is not None:
        kind, tok, line = toks.take()
        if kind == 'punct' and tok in '}>':
            if len(stack) == 1:
                raise PrototxtError('%s, line %d: unbalanced "%s"' % (source, line, tok))
            stack.pop()
            continue
        if kind == 'punct' and tok in ';,':
            continue
        if kind != 'word':
            raise PrototxtError('%s, line %d: expected a field name, got %r' % (source, line, tok))
        key = tok
        if toks.peek() is not None and toks.peek()[1] == ':':
            toks.take()
        if toks.peek() is None:
            raise PrototxtError('%s, line %d: field %r has no value' % (source, line, key))
        current = stack[-1]
        token = toks.take()
        _, tok, line = token
        if tok in ('{', '<'):
            if len(stack) > MAX_DEPTH:
                raise PrototxtError(
                    '%s, line %d: blocks nested more than %d deep' % (source, line, MAX_DEPTH)
                )
            child = Message()
            values = [(child, line)]
            stack.append(child)
        elif tok == '[':
            values = []
            while toks.peek() is not None and toks.peek()[1] != ']':
                token = toks.take()
                if token[1] != ',':
                    values.append((_value(token, source), token[2]))
            if toks.take() is None:
                raise PrototxtError('%s, line %d: unclosed "[" of %r' % (source, line, key))
        else:
            values = [(_value(token, source), line)]
        count += len(values)
        if count > MAX_FIELDS:
            raise PrototxtError(
                '%s, line %d: more than %d fields; a Caffe prototxt has thousands'
                % (source, line, MAX_FIELDS)
            )
        for value, value_line in values:
            current.fields.append((key, value))
            current.lines.setdefault(key, []).append(value_line)
    if len(stack) != 1:
        raise PrototxtError('%s: %d unclosed "{" at end of file' % (source, len(stack) - 1))
    return stack[0]


def _value(token, source):
    kind, tok, line = token
    if kind == 'string':
        return _unquote(tok, line)
    if kind == 'word':
        try:
            return _scalar(tok)
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            raise PrototxtError(
                '%s, line %d: cannot read the number %s (%s)' % (source, line, texts.shown(tok), e)
            ) from None
    raise PrototxtError('%s, line %d: expected a value, got %r' % (source, line, tok))


def _binary_head(path, size=4096):
    """True when the first `size` bytes of the regular file `path` are not UTF-8 text."""
    with open(path, 'rb') as f:
        head = f.read(size)
    try:
        head.decode('utf-8')
    except UnicodeDecodeError as e:
        return e.start < len(head) - 3  # not a character cut at the end of the head
    return b'\0' in head


def parse_file(path):
    """Parses a `.prototxt` file; see `parse`.

    Raises:
      PrototxtError: not UTF-8 text or not text format; safe_io.UnsafeFileError (an OSError):
      not a regular file or too large; OSError: unreadable.
    """
    try:
        data = safe_io.read_bytes(path, MAX_FILE_BYTES, 'prototxt')
    except safe_io.UnsafeFileError:
        # Too large: a .caffemodel passed as the prototxt is (22 MB for MobileNet-SSD).
        if os.path.isfile(path) and _binary_head(path):
            raise PrototxtError(
                f'{path}: a binary file, not a text .prototxt; the binary weights '
                f'(.caffemodel) go to --caffemodel_path'
            ) from None
        raise
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b'\n') + 1
        raise PrototxtError(
            '%s, line %d: not UTF-8 text (%s); a deploy .prototxt is text, the '
            'binary weights go to --caffemodel_path' % (path, line, e.reason)
        ) from None
    return parse(text, source=path)


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
    for key, value in fields.fields if isinstance(fields, Message) else fields:
        if isinstance(value, (list, Message)):
            lines.append('%s%s {' % (pad, key))
            lines.append(to_text(value, indent + 1).rstrip('\n'))
            lines.append('%s}' % pad)
        else:
            lines.append('%s%s: %s' % (pad, key, _format_scalar(value)))
    return '\n'.join(line for line in lines if line) + '\n'
