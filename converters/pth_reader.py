"""Reads PyTorch `.pth` files into numpy arrays without PyTorch, and without running their code.

A `.pth` file is a pickle: loading it with `pickle` (or `torch.load(weights_only=False)`) runs
whatever callables the file names. This reader unpickles with an allow-list of the few globals
that a saved state_dict uses and refuses every other one before anything is called:

  collections.OrderedDict                       the state_dict container
  torch._utils._rebuild_tensor{,_v2}            a tensor: (storage, offset, size, stride, ...)
  torch._utils._rebuild_parameter               an nn.Parameter around such a tensor
  torch.<Type>Storage                           storage type tags (Float, Half, BFloat16, Double,
                                                Long, Int, Short, Char, Byte, Bool)

Tensors come back as numpy arrays of their own dtype (bfloat16 becomes float32: numpy has none);
every storage read and every strided view is bounds-checked against the bytes in the file.

A small hostile file must not take much memory or time either: archive entries must be stored
uncompressed (as torch.save writes them: a deflated one can expand a thousandfold); a tensor may
not have more elements than its storage (a stride-0 view of one number could claim terabytes),
nor all tensors together much more than all storages (see MAX_OVERLAP); objects the pickle shares
are converted once (lists sharing children 40 deep are 2^40 paths), and nesting and the number of
values are capped (MAX_DEPTH, MAX_VALUES). Dict keys and set elements are checked before they are
hashed, which needs the pure-Python unpickler (its opcodes can be hooked; a state_dict's pickle is
small): strings, numbers or flat tuples of them only (nested shared tuples take 2^depth steps to
hash), and at most MAX_EQUAL_HASHES distinct ones of one hash value (numbers chosen to collide
make building a dict quadratic).

Two container formats:
  zip (PyTorch >= 1.6): `<archive>/data.pkl` plus one entry `<archive>/data/<key>` per storage
    (and `<archive>/byteorder` since 1.10).
  legacy (older files, or `_use_new_zipfile_serialization=False`): pickles of the magic number,
    the protocol version and sys_info, then the object pickle, then the list of storage keys,
    then each storage as an int64 element count and its raw bytes, in that key order. Storages
    saved from a GPU (location 'cuda:0') load the same way.
The tar format of PyTorch < 0.1.10 is recognised and refused with a message.
"""

import collections
import functools
import io
import math
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np

from tf_extended import safe_io
from tf_extended import texts

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage type name -> (numpy dtype of the bytes in the file, element size).
STORAGE_DTYPES = {
    'FloatStorage': np.dtype('<f4'),
    'HalfStorage': np.dtype('<f2'),
    'DoubleStorage': np.dtype('<f8'),
    'BFloat16Storage': np.dtype('<u2'),
    'LongStorage': np.dtype('<i8'),
    'IntStorage': np.dtype('<i4'),
    'ShortStorage': np.dtype('<i2'),
    'CharStorage': np.dtype('i1'),
    'ByteStorage': np.dtype('u1'),
    'BoolStorage': np.dtype('?'),
}


# The tensors together may hold this many times the elements of the file's storages, plus
# OVERLAP_SLACK: tied weights and views share a storage, but a state_dict holds each value about
# once, so this bounds the memory a small file can claim.
MAX_OVERLAP = 2
OVERLAP_SLACK = 1 << 26
MAX_DEPTH = 100  # nested dicts / lists / tuples; a training checkpoint nests a handful
MAX_VALUES = 10_000_000  # values visited in the object; a state_dict holds a few thousand
MAX_NDIM = 64  # numpy's limit


class PthError(ValueError):
    """The file is not a .pth this reader can (or may) load; the message says why."""


class _StorageType:
    """What `torch.<Type>Storage` unpickles to: just the type name."""

    def __init__(self, name):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    """A storage named by the pickle; `array` is filled from the file afterwards."""

    def __init__(self, storage_type, key, numel):
        self.storage_type = storage_type
        self.key = key
        self.numel = numel
        self.array = None
        self.view_of = None  # legacy views: (root _Storage, element offset)


class _TensorRef:
    """A tensor to build once its storage is read: storage[offset] strided as size/stride."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _int_tuple(value, what):
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise PthError(
            '%s must be a tuple of non-negative ints, got %s' % (what, texts.shown(value))
        )
    return tuple(value)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """torch._utils._rebuild_tensor / _rebuild_tensor_v2 (requires_grad, hooks, metadata are
    training state, not values)."""
    if not isinstance(storage, _Storage):
        raise PthError('a tensor must be built on a storage record, got %r' % type(storage))
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise PthError('bad tensor storage offset %s' % texts.shown(storage_offset))
    size = _int_tuple(size, 'tensor size')
    stride = _int_tuple(stride, 'tensor stride')
    if len(size) != len(stride):
        raise PthError('tensor size %s and stride %s differ in length' % (size, stride))
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
    """torch._utils._rebuild_parameter(data, requires_grad, backward_hooks): the data."""
    if not isinstance(data, _TensorRef):
        raise PthError('a parameter must hold a tensor, got %r' % type(data))
    return data


_TORCH_UTILS = {
    '_rebuild_tensor': _rebuild_tensor,
    '_rebuild_tensor_v2': _rebuild_tensor,
    '_rebuild_parameter': _rebuild_parameter,
}


_FLAT_KEYS = (str, bytes, int, float, type(None))
# Distinct dict keys or set elements of one hash value: Python's hashes of names are randomised
# per process and never collide in practice, but ints, floats and tuples of them can be chosen to
# collide (a few MB of such keys made building one dict take hours: each insertion compares with
# all the others).
MAX_EQUAL_HASHES = 16


def _new_ordered_dict(unpickler, *args):
    """collections.OrderedDict(*args) with its items' keys checked first: Python 3 pickles it
    empty and fills it by SETITEMS, Python 2 passes a list of [key, value] pairs."""
    if not args:
        return collections.OrderedDict()
    items = args[0]
    source = unpickler._source
    if len(args) > 1 or not isinstance(items, list):
        raise PthError('%s: an OrderedDict pickled with arguments %s' % (source, texts.shown(args)))
    if not all(isinstance(item, (list, tuple)) and len(item) == 2 for item in items):
        raise PthError('%s: an OrderedDict pickled with items %s' % (source, texts.shown(items)))
    unpickler.check_keys([key for key, _ in items])
    return collections.OrderedDict(items)


class _RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the allow-listed globals (see the module docstring) and
    checks dict keys and set elements before they are hashed.

    It is the pure-Python unpickler: the C one cannot be hooked where keys are hashed. A
    state_dict's pickle is small (its tensors are separate entries), so the cost is milliseconds.
    """

    def __init__(self, file, persistent_load, source):
        super().__init__(file, encoding='latin1')  # Python 2 pickles hold byte strings.
        self._persistent_load = persistent_load
        self._source = source
        self._hashes = {}  # hash value -> the distinct keys of that hash seen so far

    def check_keys(self, keys):
        """Refuses dict keys and set elements other than strings, numbers or flat tuples of
        them, before they are hashed: hashing a tuple walks all of it, and a pickle of a few
        hundred bytes can nest tuples that share their children 60 deep (2^60 steps). Refuses
        more than MAX_EQUAL_HASHES distinct keys of one hash value."""
        for key in keys:
            if not isinstance(key, _FLAT_KEYS) and not (
                isinstance(key, tuple) and all(isinstance(k, _FLAT_KEYS) for k in key)
            ):
                raise PthError(
                    '%s: the dict key or set element %s is not a string, a number or a flat tuple '
                    'of them; a state_dict is keyed by names. Re-save the weights as a plain '
                    'state_dict (torch.save(model.state_dict(), path)).'
                    % (self._source, texts.shown(key))
                )
            same = self._hashes.setdefault(hash(key), set())
            if key not in same:
                if len(same) == MAX_EQUAL_HASHES:
                    raise PthError(
                        '%s: more than %d dict keys or set elements share one hash value (keys '
                        'chosen to collide make reading take hours); a state_dict is keyed by '
                        'names. Re-save the weights as a plain state_dict '
                        '(torch.save(model.state_dict(), path)).' % (self._source, MAX_EQUAL_HASHES)
                    )
                same.add(key)

    def find_class(self, module, name):
        if module == 'collections' and name == 'OrderedDict':
            return functools.partial(_new_ordered_dict, self)
        if module == 'torch._utils' and name in _TORCH_UTILS:
            return _TORCH_UTILS[name]
        if module == 'torch' and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise PthError(
            '%s: refusing to load the global %s.%s: a .pth file is a pickle, and this reader '
            'only allows the types a state_dict needs (collections.OrderedDict, '
            'torch._utils._rebuild_tensor[_v2], torch._utils._rebuild_parameter, '
            'torch.*Storage). Re-save the weights as a plain state_dict '
            '(torch.save(model.state_dict(), path)).' % (self._source, module, name)
        )

    def persistent_load(self, pid):
        return self._persistent_load(pid)


def _checking_keys(load, keys):
    """`load` (a pickle opcode's loader) after `check_keys` on `keys(stack)`."""

    def checked(unpickler):
        unpickler.check_keys(keys(unpickler.stack))
        load(unpickler)

    return checked


def _load_build(unpickler):
    """BUILD (set an object's state) only as torch uses it: a state_dict's `_metadata` (a dict
    of per-module versions) on an OrderedDict. On any other object it would let the pickle
    rewrite a tensor record after _rebuild_tensor checked it (a negative stride reads memory
    outside the file), or this module's own allow-listed functions."""
    state, target = unpickler.stack[-1], unpickler.stack[-2]
    if not (
        type(target) is collections.OrderedDict
        and isinstance(state, dict)
        and set(state) <= {'_metadata'}
    ):
        raise PthError(
            '%s: the pickle sets the state of a %s to %s; a state_dict only sets an '
            "OrderedDict's _metadata. Re-save the weights as a plain state_dict "
            '(torch.save(model.state_dict(), path)).'
            % (unpickler._source, type(target).__name__, texts.shown(state))
        )
    pickle._Unpickler.load_build(unpickler)


# The opcodes that hash what is on the stack: SETITEM (key, value), SETITEMS and DICT (key,
# value, ... since the mark), ADDITEMS and FROZENSET (elements since the mark); and BUILD.
_RestrictedUnpickler.dispatch = {
    **pickle._Unpickler.dispatch,
    pickle.BUILD[0]: _load_build,
    pickle.SETITEM[0]: _checking_keys(pickle._Unpickler.load_setitem, lambda stack: stack[-2:-1]),
    pickle.SETITEMS[0]: _checking_keys(pickle._Unpickler.load_setitems, lambda stack: stack[::2]),
    pickle.DICT[0]: _checking_keys(pickle._Unpickler.load_dict, lambda stack: stack[::2]),
    pickle.ADDITEMS[0]: _checking_keys(pickle._Unpickler.load_additems, lambda stack: stack),
    pickle.FROZENSET[0]: _checking_keys(pickle._Unpickler.load_frozenset, lambda stack: stack),
}


def _storage_record(pid, storages, source):
    """('storage', type, key, location, numel[, view_metadata]) -> the shared _Storage."""
    if not isinstance(pid, tuple) or not pid or pid[0] != 'storage':
        kind = pid[0] if isinstance(pid, tuple) and pid else pid
        raise PthError(
            '%s: unsupported persistent record %s (only tensor storages are '
            'allowed; whole pickled modules are not)' % (source, texts.shown(kind))
        )
    if len(pid) not in (5, 6):
        raise PthError('%s: malformed storage record %s' % (source, texts.shown(pid)))
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
        raise PthError('%s: storage record with type %s' % (source, texts.shown(storage_type)))
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise PthError('%s: malformed storage record %s' % (source, texts.shown(pid)))
    storage = storages.get(key)
    if storage is None:
        storage = storages[key] = _Storage(storage_type, key, numel)
    view = pid[5] if len(pid) == 6 else None
    if view is None:
        return storage
    # Legacy storage views: (view key, element offset, view size) into the root storage.
    if not (
        isinstance(view, tuple)
        and len(view) == 3
        and isinstance(view[0], str)
        and all(isinstance(v, int) and v >= 0 for v in view[1:])
    ):
        raise PthError('%s: malformed storage view %s' % (source, texts.shown(view)))
    if storage.view_of is not None:
        raise PthError('%s: storage %s is a view, and a view of it is named' % (source, key))
    view_key, offset, view_size = view
    view_storage = storages.get(view_key)
    if view_storage is None:
        view_storage = storages[view_key] = _Storage(storage_type, view_key, view_size)
        view_storage.view_of = (storage, offset)
    return view_storage


def _where(chain):
    """The keys / indices of a value, from the (parent chain, key) pairs _Materialiser passes."""
    keys = []
    while chain:
        chain, key = chain
        keys.append(texts.shown(key))
    return ' / '.join(reversed(keys)) or 'at the top level'


class _Materialiser:
    """Replaces every _TensorRef in nested dicts / lists / tuples by its numpy array.

    Each object is converted once (by id), so that what the pickle shares stays shared; nesting,
    the values visited and the elements of all tensors together are capped.
    """

    def __init__(self, source, big_endian, stored_elements):
        self.source = source
        self.big_endian = big_endian
        self.stored_elements = stored_elements
        self.budget = MAX_OVERLAP * stored_elements + OVERLAP_SLACK
        self.values = 0
        self.done = {}  # id(source object) -> its copy

    def __call__(self, obj, chain=None, depth=0):
        self.values += 1
        if self.values > MAX_VALUES:
            raise PthError(
                '%s: holds more than %d values; a state_dict holds far fewer'
                % (self.source, MAX_VALUES)
            )
        if not isinstance(obj, (_TensorRef, dict, list, tuple)):
            return obj
        if id(obj) in self.done:
            return self.done[id(obj)]
        if depth >= MAX_DEPTH:
            raise PthError(
                '%s: %s nests containers more than %d deep (or contains itself); a state_dict '
                'is a dict of tensors' % (self.source, _where(chain), MAX_DEPTH)
            )
        if isinstance(obj, _TensorRef):
            out = self._tensor(obj, chain)
        elif isinstance(obj, dict):
            items = [(k, self(v, (chain, k), depth + 1)) for k, v in obj.items()]
            out = (
                collections.OrderedDict(items)
                if isinstance(obj, collections.OrderedDict)
                else dict(items)
            )
        else:
            items = [self(v, (chain, i), depth + 1) for i, v in enumerate(obj)]
            out = items if isinstance(obj, list) else tuple(items)
        self.done[id(obj)] = out
        return out

    def _tensor(self, ref, chain):
        try:
            view = _tensor_view(ref, self.big_endian)
        except PthError as e:
            raise PthError('%s: tensor %s: %s' % (self.source, _where(chain), e)) from None
        if view.size > self.budget:
            raise PthError(
                '%s: tensor %s of size %s takes the tensors past %d elements, %d times the %d '
                'elements stored in the file plus %d: its views of shared storages overlap more '
                'than a state_dict\'s do'
                % (
                    self.source,
                    _where(chain),
                    ref.size,
                    MAX_OVERLAP * self.stored_elements + OVERLAP_SLACK,
                    MAX_OVERLAP,
                    self.stored_elements,
                    OVERLAP_SLACK,
                )
            )
        self.budget -= view.size
        array = np.array(view, dtype=view.dtype.newbyteorder('='), copy=True)
        if ref.storage.storage_type.name == 'BFloat16Storage':
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _root_array(storage):
    if storage.view_of is not None:
        root, offset = storage.view_of
        array = _root_array(root)
        if offset + storage.numel > array.size:
            raise PthError(
                'storage view %s [%d:+%d] lies outside storage %s of %d elements'
                % (storage.key, offset, storage.numel, root.key, array.size)
            )
        return array[offset : offset + storage.numel]
    if storage.array is None:
        raise PthError('storage %s is named by a tensor but not stored in the file' % storage.key)
    return storage.array


def _tensor_view(ref, big_endian):
    """A read-only strided view of `ref`'s storage, checked against it (no copy)."""
    data = _root_array(ref.storage)
    if big_endian:
        data = data.view(data.dtype.newbyteorder('>'))
    if len(ref.size) > MAX_NDIM:
        raise PthError('%d dimensions, more than numpy allows (%d)' % (len(ref.size), MAX_NDIM))
    numel = math.prod(ref.size)
    last = (
        ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if numel
        else ref.offset - 1
    )
    if last >= data.size:
        raise PthError(
            'size %s, stride %s at offset %d reads past its storage %s of %d elements'
            % (ref.size, ref.stride, ref.offset, ref.storage.key, data.size)
        )
    if numel > data.size:
        raise PthError(
            'size %s, stride %s has %d elements, more than the %d of its storage %s (its '
            'strides overlap: a broadcast view); a state_dict holds each element: save '
            'tensor.contiguous()' % (ref.size, ref.stride, numel, data.size, ref.storage.key)
        )
    if numel == 0:
        if math.prod(n for n in ref.size if n) > np.iinfo(np.intp).max // data.dtype.itemsize:
            raise PthError('an empty tensor of size %s, too large for numpy' % (ref.size,))
        return np.empty(ref.size, data.dtype)
    return np.lib.stride_tricks.as_strided(
        data[ref.offset :],
        shape=ref.size,
        # Strides of dimensions of size 1 are never used (and may be any size).
        strides=[s * data.dtype.itemsize if n > 1 else 0 for n, s in zip(ref.size, ref.stride)],
        writeable=False,
    )


def _stored_entry(path, zf, name, file_bytes):
    """The bytes of an archive entry, which must be stored uncompressed, as torch.save writes
    them (a compressed entry can expand a thousandfold)."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise PthError(
            '%s: the archive entry %s is compressed (zip method %d); torch.save stores entries '
            'uncompressed: re-save the file with torch.save, or re-zip it without compression '
            '(zip -0)' % (path, name, info.compress_type)
        )
    if info.compress_size != info.file_size or info.file_size > file_bytes:
        raise PthError(
            '%s: the archive entry %s claims %d bytes, more than the file holds; the file is '
            'damaged' % (path, name, max(info.compress_size, info.file_size))
        )
    return zf.read(name)


def _read_zip(path, zf):
    file_bytes = os.path.getsize(path)
    names = zf.namelist()
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
        raise PthError(
            '%s: a zip file but not a PyTorch checkpoint (expected one '
            '<archive>/data.pkl, found %s)' % (path, pickles or 'none')
        )
    prefix = pickles[0][: -len('data.pkl')]
    byteorder = 'little'
    if prefix + 'byteorder' in names:
        byteorder = _stored_entry(path, zf, prefix + 'byteorder', file_bytes)
        byteorder = byteorder.decode('ascii', 'replace').strip()
    storages = {}
    unpickler = _RestrictedUnpickler(
        io.BytesIO(_stored_entry(path, zf, pickles[0], file_bytes)),
        lambda pid: _storage_record(pid, storages, path),
        path,
    )
    try:
        obj = unpickler.load()
    except PthError:
        raise
    except Exception as e:  # pickle raises many types on garbage
        raise PthError(
            '%s: %s is corrupt (%s: %s)' % (path, pickles[0], type(e).__name__, e)
        ) from None
    for key, storage in storages.items():
        if storage.view_of is not None:
            continue
        entry = prefix + 'data/' + key
        if entry not in names:
            raise PthError('%s: storage %s has no entry %s in the archive' % (path, key, entry))
        info = zf.getinfo(entry)
        itemsize = storage.storage_type.dtype.itemsize
        if info.file_size != storage.numel * itemsize:
            raise PthError(
                '%s: storage %s should hold %d elements of %d bytes, the archive '
                'entry has %d bytes' % (path, key, storage.numel, itemsize, info.file_size)
            )
        data = _stored_entry(path, zf, entry, file_bytes)
        storage.array = np.frombuffer(data, dtype=storage.storage_type.dtype)
    return obj, byteorder == 'big', storages


def _read_legacy(path, f):
    def load_plain(what):
        try:
            return _RestrictedUnpickler(f, _no_persistent, path).load()
        except Exception as e:  # pickle raises many types on garbage
            if what != 'magic number' and f.tell() >= os.fstat(f.fileno()).st_size:
                raise PthError(
                    '%s: the file ends inside its %s (%d bytes): it is truncated (an '
                    'interrupted download or copy?): download or copy it again'
                    % (path, what, f.tell())
                ) from None
            if isinstance(e, PthError):
                raise
            raise PthError(
                '%s: not a PyTorch .pth file (reading the %s: %s: %s)'
                % (path, what, type(e).__name__, e)
            ) from None

    def _no_persistent(pid):
        raise PthError(
            '%s: unexpected persistent record %s in the header' % (path, texts.shown(pid))
        )

    magic = load_plain('magic number')
    if magic != LEGACY_MAGIC:
        raise PthError(
            '%s: not a PyTorch .pth file (no zip archive, and the legacy magic '
            'number is missing)' % path
        )
    protocol = load_plain('protocol version')
    if protocol != LEGACY_PROTOCOL:
        raise PthError(
            '%s: legacy .pth protocol %s; this reader knows %d'
            % (path, texts.shown(protocol), LEGACY_PROTOCOL)
        )
    sys_info = load_plain('sys_info')
    big_endian = isinstance(sys_info, dict) and sys_info.get('little_endian') is False
    storages = {}
    try:
        obj = _RestrictedUnpickler(f, lambda pid: _storage_record(pid, storages, path), path).load()
    except Exception as e:
        if f.tell() >= os.fstat(f.fileno()).st_size:
            # The storage keys and the storages follow the object: the file was cut short
            # (a partial global name would otherwise read as a refused global).
            raise PthError(
                '%s: the file ends inside its object pickle (%d bytes): it is truncated (an '
                'interrupted download or copy?): download or copy it again' % (path, f.tell())
            ) from None
        if isinstance(e, PthError):
            raise
        raise PthError(
            '%s: the object pickle is corrupt (%s: %s)' % (path, type(e).__name__, e)
        ) from None
    keys = load_plain('storage keys')
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise PthError('%s: malformed storage key list' % path)
    for key in keys:
        storage = storages.get(key)
        if storage is None or storage.view_of is not None:
            raise PthError(
                '%s: stored storage %r is not a root storage named by the pickle' % (path, key)
            )
        header = f.read(8)
        if len(header) != 8:
            raise PthError('%s: file ends before storage %s' % (path, key))
        (numel,) = struct.unpack('>q' if big_endian else '<q', header)
        if numel != storage.numel:
            raise PthError(
                '%s: storage %s holds %d elements, the pickle says %d'
                % (path, key, numel, storage.numel)
            )
        nbytes = numel * storage.storage_type.dtype.itemsize
        left = os.fstat(f.fileno()).st_size - f.tell()
        if nbytes > left:  # before reading: read(n) allocates n bytes
            raise PthError(
                '%s: file ends inside storage %s (%d of %d bytes)' % (path, key, left, nbytes)
            )
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise PthError(
                '%s: file ends inside storage %s (%d of %d bytes)' % (path, key, len(data), nbytes)
            )
        storage.array = np.frombuffer(data, dtype=storage.storage_type.dtype)
    return obj, big_endian, storages


def load(path):
    """The object saved in a `.pth` file, with tensors as numpy arrays.

    Args:
      path: a `.pth` / `.pt` file in the zip or the legacy format.
    Returns:
      the saved object: usually an OrderedDict {name: np.ndarray}; nested dicts, lists, tuples,
      strings and numbers pass through.
    Raises:
      PthError: not a .pth file, a global outside the allow-list (nothing from the file is
        run), storages that do not hold what the pickle says, a compressed archive entry, a
        tensor larger than its storage, objects past the caps above, or too little memory.
      safe_io.UnsafeFileError (an OSError): not a regular file (a FIFO would block, a device
        be read forever); OSError: the file cannot be read.
    """
    safe_io.check_regular(path, '.pth file')
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                obj, big_endian, storages = _read_zip(path, zf)
        else:
            with open(path, 'rb') as f:
                zip_start = f.read(4) == b'PK\x03\x04'
            if zip_start:  # A zip archive's directory is at its end: the end is missing.
                raise PthError(
                    '%s: a zip archive without its end (the central directory): the file is '
                    'truncated or damaged (%d bytes; an interrupted download or copy?): '
                    'download or copy it again' % (path, os.path.getsize(path))
                )
            if tarfile.is_tarfile(path):
                raise PthError(
                    '%s: a tar archive: the .pth format of PyTorch < 0.1.10 is not '
                    'supported; re-save it with a newer PyTorch' % path
                )
            with open(path, 'rb') as f:
                obj, big_endian, storages = _read_legacy(path, f)
        stored = sum(s.array.size for s in storages.values() if s.array is not None)
        return _Materialiser(path, big_endian, stored)(obj)
    except RecursionError:
        raise PthError('%s: nests its objects too deeply to read' % path) from None
    except MemoryError:
        raise PthError(
            '%s: not enough memory to read it (%d bytes on disk)' % (path, os.path.getsize(path))
        ) from None


def find_state_dict(obj, path='<object>'):
    """The {name: array} state_dict inside what `load` returned.

    A plain state_dict is returned as is; a training checkpoint dict is searched for one under
    'state_dict', 'model_state_dict', 'model', 'net' or 'weights'.
    Raises:
      PthError: no dict of arrays found (the message lists the top-level keys).
    """

    def is_state_dict(d):
        return (
            isinstance(d, dict)
            and d
            and all(isinstance(k, str) for k in d)
            and any(isinstance(v, np.ndarray) for v in d.values())
        )

    if is_state_dict(obj):
        return collections.OrderedDict((k, v) for k, v in obj.items() if isinstance(v, np.ndarray))
    if isinstance(obj, dict):
        for key in ('state_dict', 'model_state_dict', 'model', 'net', 'weights'):
            if is_state_dict(obj.get(key)):
                return find_state_dict(obj[key], path)
        raise PthError(
            '%s: no state_dict of tensors found; top-level keys: %s'
            % (path, texts.listed(list(obj), 20, texts.shown))
        )
    raise PthError('%s: holds a %s, not a state_dict' % (path, type(obj).__name__))


def load_state_dict(path):
    """`find_state_dict(load(path))`: {parameter name: numpy array}, in file order."""
    if not os.path.exists(path):
        raise FileNotFoundError('no such .pth file: %s' % path)
    return find_state_dict(load(path), path)  # load says what else it is: a folder, a FIFO...
