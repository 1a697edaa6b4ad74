"""The torch-free .pth reader: real files written by torch.save (zip and legacy formats,
float32/float16/bfloat16, views, a 2017-style GPU file), and pickles that must never run."""

import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from converters import pth_reader
from tests import pytorch_fixtures as fx
from tests.conftest import run_script


def _expected():
    with np.load(os.path.join(fx.READER_DIR, 'expected.npz')) as data:
        out = collections.defaultdict(dict)
        for key in data.files:
            name, tensor = key.split('/', 1)
            out[name][tensor] = data[key]
        return out


EXPECTED = _expected()


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_real_torch_files_read_as_torch_load_reads_them(name):
    state = pth_reader.load_state_dict(os.path.join(fx.READER_DIR, name))
    expected = EXPECTED[name]
    assert list(state) == list(expected)  # file order is kept
    for key, want in expected.items():
        got = state[key]
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=key)


def test_formats_and_dtypes_covered_by_the_fixtures():
    names = set(EXPECTED)
    assert {
        'zip_state_dict.pth',
        'legacy_state_dict.pth',
        'zip_float16.pth',
        'legacy_float16.pth',
        'legacy_v1_cuda.pth',
    } <= names
    assert zipfile.is_zipfile(os.path.join(fx.READER_DIR, 'zip_float16.pth'))
    assert not zipfile.is_zipfile(os.path.join(fx.READER_DIR, 'legacy_float16.pth'))
    half = pth_reader.load_state_dict(os.path.join(fx.READER_DIR, 'legacy_float16.pth'))
    assert half['0.weight'].dtype == np.float16
    mixed = pth_reader.load_state_dict(os.path.join(fx.READER_DIR, 'zip_mixed.pth'))
    np.testing.assert_array_equal(mixed['bfloat16'], [1.5, -2.25, 3008.0])  # bf16(3000.)
    np.testing.assert_array_equal(mixed['transposed'], mixed['same_storage'].T)
    np.testing.assert_array_equal(mixed['offset_view'], mixed['same_storage'].ravel()[5:17])
    assert mixed['scalar'].shape == () and mixed['scalar'] == 3.25


def test_training_checkpoint_dict_finds_its_state_dict():
    path = os.path.join(fx.READER_DIR, 'zip_checkpoint.pth')
    obj = pth_reader.load(path)
    assert obj['epoch'] == 7 and obj['classes'] == ['bg', 'cat']
    assert obj['nested'] == (1, 2.5, None, True)
    state = pth_reader.load_state_dict(path)
    assert list(state) == list(EXPECTED['zip_state_dict.pth'])


@pytest.mark.parametrize('legacy', [False, True])
def test_fixture_writer_round_trips(tmp_path, legacy):
    rng = np.random.default_rng(3)
    sd = collections.OrderedDict(
        [
            ('w', rng.standard_normal((2, 3, 1, 1), np.float32)),
            ('h', rng.standard_normal(4).astype(np.float16)),
            ('n', np.array(7, np.int64)),
        ]
    )
    path = str(tmp_path / 'w.pth')
    fx.write_pth(sd, path, legacy=legacy, location='cuda:0')
    back = pth_reader.load_state_dict(path)
    assert list(back) == list(sd)
    for key, value in sd.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape
        np.testing.assert_array_equal(back[key], value)


# ---------------------------------------------------------------------------------------------
# Pickles that must be refused before anything in them runs.


class _Payload:
    """Pickles to `os.system(command)`: what a booby-trapped .pth does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _evil_pickle(marker):
    return pickle.dumps(collections.OrderedDict(w=_Payload('touch %s' % marker)), protocol=2)


def _zip_pth(path, data_pkl):
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', data_pkl)
        zf.writestr('archive/version', '3\n')


def _legacy_pth(path, object_pickle, header=None):
    with open(path, 'wb') as f:
        f.write(header if header is not None else pickle.dumps(pth_reader.LEGACY_MAGIC, 2))
        f.write(pickle.dumps(pth_reader.LEGACY_PROTOCOL, 2))
        f.write(pickle.dumps({'little_endian': True}, 2))
        f.write(object_pickle)
        f.write(pickle.dumps([], 2))


@pytest.mark.parametrize('where', ['zip', 'legacy', 'legacy_header'])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, where):
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'evil.pth')
    if where == 'zip':
        _zip_pth(path, _evil_pickle(marker))
    elif where == 'legacy':
        _legacy_pth(path, _evil_pickle(marker))
    else:
        _legacy_pth(path, pickle.dumps({}, 2), header=_evil_pickle(marker))
    with pytest.raises(
        pth_reader.PthError, match=r'refusing to load the global (posix|os)\.system'
    ):
        pth_reader.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    'module,name',
    [
        ('builtins', 'eval'),
        ('builtins', 'getattr'),
        ('torch', 'load'),
        ('torch._utils', '_rebuild_qtensor'),
        ('numpy', 'frombuffer'),
        ('subprocess', 'Popen'),
    ],
)
def test_only_the_state_dict_globals_are_allowed(tmp_path, module, name):
    data = b'\x80\x02c' + module.encode() + b'\n' + name.encode() + b'\n)R.'
    path = str(tmp_path / 'g.pth')
    _zip_pth(path, data)
    with pytest.raises(
        pth_reader.PthError, match='refusing to load the global %s.%s' % (module, name)
    ):
        pth_reader.load(path)


def test_pickled_module_records_are_refused(tmp_path):
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return ('module', 'MyNet', 'net.py', 'source') if obj == 'm' else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump({'net': 'm'})
    path = str(tmp_path / 'm.pth')
    _zip_pth(path, buf.getvalue())
    with pytest.raises(pth_reader.PthError, match="persistent record 'module'"):
        pth_reader.load(path)


def _tensor_pickle(size, stride, offset=0, numel=4, key='0', view=None):
    p = fx._Pickle()
    p.glob('torch._utils', '_rebuild_tensor_v2')
    p.op(b'((')
    p.string('storage')
    p.glob('torch', 'FloatStorage')
    p.string(key)
    p.string('cpu')
    p.integer(numel)
    if view is not None:  # legacy view metadata
        p.op(pickle.dumps(view, 2)[2:-1])
    p.op(b'tQ')
    p.integer(offset)
    p.ints(size)
    p.ints(stride)
    p.op(b'\x89')
    p.glob('collections', 'OrderedDict')
    p.op(b')RtR.')
    return p.out.getvalue()


@pytest.mark.parametrize(
    'target,state',
    [
        ('tensor', {'stride': (-16,)}),  # rewrites a checked tensor record: memory before the file
        ('tensor', {'stride': (-(10**9),)}),  # ... or a segfault
        ('storage_type', {'dtype': 'x'}),
        ('function', {'__defaults__': (1, 2, 3, 4)}),  # the reader's own allow-listed function
        ('ordered_dict', {'_metadata': {}, 'extra': 1}),
    ],
)
def test_pickle_build_is_refused_except_a_state_dicts_metadata(tmp_path, target, state):
    """BUILD sets an object's state after the object was made (and checked); torch uses it only
    for a state_dict's _metadata, which the real files above carry and must keep loading."""
    p = fx._Pickle()
    if target == 'tensor':
        p.op(_tensor_pickle((2,), (1,))[2:-1])
    elif target == 'storage_type':
        p.glob('torch', 'FloatStorage')
    elif target == 'function':
        p.glob('torch._utils', '_rebuild_tensor_v2')
    else:
        p.glob('collections', 'OrderedDict')
        p.op(b')R')
    p.op(pickle.dumps(state, 2)[2:-1] + b'b.')
    path = str(tmp_path / 'build.pth')
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', p.out.getvalue())
        zf.writestr('archive/data/0', np.arange(4, dtype='<f4').tobytes())
    with pytest.raises(pth_reader.PthError, match=r"the pickle sets the state of a \w+ to "):
        pth_reader.load(path)
    assert pth_reader._rebuild_tensor.__defaults__ is None


@pytest.mark.parametrize(
    'size,stride,offset', [((3, 3), (3, 1), 0), ((4,), (1,), 1), ((2, 2), (4, 1), 0)]
)
def test_tensor_reading_past_its_storage_is_refused(tmp_path, size, stride, offset):
    path = str(tmp_path / 'oob.pth')
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', _tensor_pickle(size, stride, offset))
        zf.writestr('archive/data/0', np.arange(4, dtype='<f4').tobytes())
    with pytest.raises(pth_reader.PthError, match='reads past its storage'):
        pth_reader.load(path)


def test_storage_size_must_match_the_archive_entry(tmp_path):
    path = str(tmp_path / 'short.pth')
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', _tensor_pickle((4,), (1,)))
        zf.writestr('archive/data/0', np.arange(3, dtype='<f4').tobytes())
    with pytest.raises(pth_reader.PthError, match='should hold 4 elements of 4 bytes'):
        pth_reader.load(path)


def test_truncated_legacy_file_is_a_clear_error(tmp_path):
    good = os.path.join(fx.READER_DIR, 'legacy_state_dict.pth')
    with open(good, 'rb') as f:
        data = f.read()
    path = str(tmp_path / 'cut.pth')
    with open(path, 'wb') as f:
        f.write(data[:-10])
    with pytest.raises(pth_reader.PthError, match='file ends (before|inside) storage'):
        pth_reader.load(path)


def test_not_a_pth_file(tmp_path):
    text = tmp_path / 'notes.pth'
    text.write_text('hello')
    with pytest.raises(pth_reader.PthError, match='not a PyTorch .pth file'):
        pth_reader.load(str(text))
    tar_path = str(tmp_path / 'old.pth')
    with tarfile.open(tar_path, 'w') as tf_:
        info = tarfile.TarInfo('sys_info')
        info.size = 1
        tf_.addfile(info, io.BytesIO(b'x'))
    with pytest.raises(pth_reader.PthError, match='PyTorch < 0.1.10'):
        pth_reader.load(tar_path)
    no_tensors = str(tmp_path / 'dict.pth')
    _zip_pth(no_tensors, pickle.dumps({'epoch': 3, 'lr': 0.1}, 2))
    with pytest.raises(
        pth_reader.PthError, match="no state_dict of tensors found; top-level keys: 'epoch', 'lr'"
    ):
        pth_reader.load_state_dict(no_tensors)


def test_big_endian_legacy_storages(tmp_path):
    """sys_info little_endian False: storages are byte-swapped on read."""
    path = str(tmp_path / 'be.pth')
    p = fx._Pickle()
    p.glob('collections', 'OrderedDict')
    p.op(b')R(')
    p.string('w')
    body = _tensor_pickle((3,), (1,), numel=3)[2:-1]  # without PROTO and STOP
    p.op(body)
    p.op(b'u.')
    with open(path, 'wb') as f:
        f.write(pickle.dumps(pth_reader.LEGACY_MAGIC, 2))
        f.write(pickle.dumps(pth_reader.LEGACY_PROTOCOL, 2))
        f.write(pickle.dumps({'little_endian': False}, 2))
        f.write(p.out.getvalue())
        f.write(pickle.dumps(['0'], 2))
        f.write(struct.pack('>q', 3))
        f.write(np.array([1.5, -2.0, 4.0], '>f4').tobytes())
    np.testing.assert_array_equal(pth_reader.load_state_dict(path)['w'], [1.5, -2.0, 4.0])


# ---------------------------------------------------------------------------------------------
# Small files that claim much memory or time (reproduced by a hostile-input audit). Those the
# reader used to choke on are read in a child with little address space and a timeout, so that a
# regression fails the test, not the machine.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_MEMORY = 768 << 20  # address space; the bombs below claim 1 GiB or more
CHILD_SECONDS = 60
_CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
from converters import pth_reader
try:
    obj = pth_reader.load(sys.argv[1])
except pth_reader.PthError as e:
    print('PthError:', e)
else:
    print('loaded', type(obj).__name__)
""" % (CHILD_MEMORY, CHILD_MEMORY)


def _load_in_child(path):
    """What pth_reader.load(path) gives in a limited child: 'PthError: <message>' or
    'loaded <type>' (a traceback, e.g. MemoryError, or a timeout fails the test)."""
    env = dict(os.environ, PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, '-c', _CHILD, path],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def _state_dict_pth(path, tensors, numel, compression=zipfile.ZIP_STORED):
    """A zip .pth of an OrderedDict {name: float32 tensor (size, stride)}, all views of one
    storage '0' of `numel` zeros (streamed, so a 1 GiB storage is never held)."""
    p = fx._Pickle()
    p.glob('collections', 'OrderedDict')
    p.op(b')R(')
    for name, size, stride in tensors:
        p.string(name)
        p.op(_tensor_pickle(size, stride, numel=numel)[2:-1])  # without PROTO and STOP
    p.op(b'u.')
    with zipfile.ZipFile(path, 'w', compression, compresslevel=9) as zf:
        zf.writestr('archive/data.pkl', p.out.getvalue(), zipfile.ZIP_STORED)
        with zf.open('archive/data/0', 'w', force_zip64=True) as f:
            left = numel * 4
            chunk = bytes(min(left, 1 << 24))
            while left:
                f.write(chunk[:left])
                left -= min(left, len(chunk))


@pytest.mark.parametrize('side', [1 << 14, 1 << 20])
def test_stride0_tensor_larger_than_its_storage_is_refused(tmp_path, side):
    """One stored float as side x side (stride 0): 1 GiB / 4 TiB (an _ArrayMemoryError)."""
    path = str(tmp_path / 'stride0.pth')
    _state_dict_pth(path, [('w', (side, side), (0, 0))], numel=1)
    assert os.path.getsize(path) < 1000
    message = _load_in_child(path)
    assert message.startswith('PthError: %s: tensor ' % path) and "'w'" in message, message
    assert 'has %d elements, more than the 1 of its storage 0' % side**2 in message
    assert 'tensor.contiguous()' in message


def test_compressed_storage_entry_is_refused(tmp_path):
    """A deflated 1 GiB storage of zeros is a 1 MB file."""
    path = str(tmp_path / 'deflated.pth')
    _state_dict_pth(
        path, [('w', (1 << 28,), (1,))], numel=1 << 28, compression=zipfile.ZIP_DEFLATED
    )
    assert os.path.getsize(path) < 2 << 20
    message = _load_in_child(path)
    assert message.startswith('PthError: %s: the archive entry archive/data/0 is compressed' % path)
    assert 'zip -0' in message


def test_overlapping_views_are_capped(tmp_path, monkeypatch):
    """Tensors together may hold MAX_OVERLAP times the stored elements (plus a slack)."""
    path = str(tmp_path / 'views.pth')
    _state_dict_pth(path, [(name, (4,), (1,)) for name in 'abc'], numel=4)
    monkeypatch.setattr(pth_reader, 'OVERLAP_SLACK', 0)
    with pytest.raises(pth_reader.PthError) as err:
        pth_reader.load(path)
    assert str(err.value).startswith(
        "%s: tensor 'c' of size (4,) takes the tensors past 8 elements, 2 times the 4" % path
    )
    monkeypatch.setattr(pth_reader, 'OVERLAP_SLACK', 4)
    assert list(pth_reader.load_state_dict(path)) == ['a', 'b', 'c']


def _zip_object(path, data_pkl):
    _zip_pth(path, b'\x80\x02' + data_pkl + b'.')


def test_shared_nested_lists_are_read_once(tmp_path):
    """Lists sharing both children, 40 deep: 2^40 paths, which the reader copied one by one."""
    path = str(tmp_path / 'shared.pth')
    data = b']q\x00'  # an empty list, memo 0
    for i in range(1, 41):  # [memo i-1, memo i-1], memo i
        data += b'](h%ch%ceq%c' % (i - 1, i - 1, i)
    _zip_object(path, data)
    assert os.path.getsize(path) < 1000
    assert _load_in_child(path) == 'loaded list'
    obj = pth_reader.load(path)
    assert obj[0] is obj[1] and obj[0][0] is obj[1][1]  # shared as in the file


@pytest.mark.parametrize(
    'data,where',
    [
        (b'(' * 5000 + b']' + b'l' * 5000, '0 / 0 / 0'),  # lists 5000 deep
        (b')' + b'\x85' * 5000, '0 / 0 / 0'),  # tuples 5000 deep
        (b']q\x00h\x00a', '0 / 0 / 0'),  # a list that holds itself
    ],
)
def test_deep_or_self_holding_objects_are_refused(tmp_path, data, where):
    path = str(tmp_path / 'deep.pth')
    _zip_object(path, data)
    with pytest.raises(pth_reader.PthError) as err:
        pth_reader.load(path)
    message = str(err.value)
    assert message.startswith('%s: %s / ' % (path, where))
    assert 'nests containers more than 100 deep (or contains itself)' in message


def test_values_are_capped(tmp_path, monkeypatch):
    path = str(tmp_path / 'many.pth')
    _zip_object(path, pickle.dumps(list(range(2000)), 2)[2:-1])
    monkeypatch.setattr(pth_reader, 'MAX_VALUES', 1000)
    with pytest.raises(pth_reader.PthError, match='many.pth: holds more than 1000 values'):
        pth_reader.load(path)


def test_legacy_storage_larger_than_the_file_is_refused_before_reading(tmp_path):
    """A legacy storage of 2^30 floats (4 GiB) that the file does not hold."""
    path = str(tmp_path / 'short.pth')
    p = fx._Pickle()
    p.glob('collections', 'OrderedDict')
    p.op(b')R(')
    p.string('w')
    p.op(_tensor_pickle((1 << 30,), (1,), numel=1 << 30)[2:-1])
    p.op(b'u.')
    with open(path, 'wb') as f:
        f.write(pickle.dumps(pth_reader.LEGACY_MAGIC, 2))
        f.write(pickle.dumps(pth_reader.LEGACY_PROTOCOL, 2))
        f.write(pickle.dumps({'little_endian': True}, 2))
        f.write(p.out.getvalue())
        f.write(pickle.dumps(['0'], 2))
        f.write(struct.pack('<q', 1 << 30))
        f.write(bytes(16))
    message = _load_in_child(path)
    assert message == 'PthError: %s: file ends inside storage 0 (16 of %d bytes)' % (path, 4 << 30)


def test_messages_show_shared_tuples_in_bounded_form(tmp_path):
    """A persistent record of tuples sharing both children 40 deep: repr() never ended."""
    path = str(tmp_path / 'dag.pth')
    data = b')q\x00'  # (), memo 0
    for i in range(1, 41):  # (memo i-1, memo i-1), memo i
        data += b'h%ch%c\x86q%c' % (i - 1, i - 1, i)
    _zip_object(path, data + b'\x85Q')  # persistent id (tuple,)
    message = _load_in_child(path)
    assert message.startswith('PthError: %s: unsupported persistent record (((' % path)
    assert len(message) < 300 + len(path)


def _shared_tuple(depth):
    """Pickle ops leaving a tuple whose two children are one shared tuple, `depth` deep (memo
    0..depth): hashing it walks 2^depth paths."""
    data = b')q\x00'
    for i in range(1, depth + 1):
        data += b'0h%ch%c\x86q%c' % (i - 1, i - 1, i)  # pop the previous one, pair it
    return data


@pytest.mark.parametrize(
    'ops',
    [
        b'}' + _shared_tuple(60) + b'K\x01s',  # {key: 1} by SETITEM
        b'}(' + _shared_tuple(60) + b'K\x01u',  # by SETITEMS
        b'(' + _shared_tuple(60) + b'K\x01d',  # by DICT (protocol 0)
        b'\x8f(' + _shared_tuple(60) + b'\x90',  # a set by ADDITEMS (protocol 4)
        b'(' + _shared_tuple(60) + b'\x91',  # FROZENSET
        b'ccollections\nOrderedDict\n((' + _shared_tuple(60) + b'K\x01ll\x85R',  # Python 2 style
    ],
    ids=['setitem', 'setitems', 'dict', 'additems', 'frozenset', 'ordereddict_args'],
)
def test_keys_that_would_take_forever_to_hash_are_refused(tmp_path, ops):
    """Keys are checked before they are hashed; with the plain unpickler each file hung."""
    path = str(tmp_path / 'hash.pth')
    _zip_object(path, ops)
    assert os.path.getsize(path) < 1000
    message = _load_in_child(path)
    assert message.startswith('PthError: %s: the dict key or set element (((' % path), message
    assert message.endswith(
        'is not a string, a number or a flat tuple of them; a state_dict is keyed by names. '
        'Re-save the weights as a plain state_dict (torch.save(model.state_dict(), path)).'
    )


@pytest.mark.parametrize('count, refused', [(16, False), (17, True)])
def test_keys_chosen_to_share_a_hash_are_capped(tmp_path, count, refused):
    """Ints that differ by multiples of 2^61 - 1 share Python's hash: a few MB of them made
    building one dict take hours (each insertion compares with every earlier key)."""
    modulus = (1 << 61) - 1
    keys = [k * modulus for k in range(1, count + 1)]
    assert len({hash(k) for k in keys}) == 1
    path = str(tmp_path / 'collide.pth')
    _zip_object(path, pickle.dumps(dict.fromkeys(keys, 0), 2)[2:-1])
    if refused:
        with pytest.raises(pth_reader.PthError) as err:
            pth_reader.load(path)
        assert str(err.value).startswith(
            f'{path}: more than 16 dict keys or set elements share one hash value'
        )
    else:
        assert pth_reader.load(path) == dict.fromkeys(keys, 0)


def test_python2_ordered_dict_items_are_read(tmp_path):
    """Python 2 pickles an OrderedDict with its items as the constructor's argument."""
    path = str(tmp_path / 'py2.pth')
    _zip_object(
        path,
        b'ccollections\nOrderedDict\n((X\x01\x00\x00\x00bK\x02l(X\x01\x00\x00\x00aK\x01ll\x85R',
    )
    assert pth_reader.load(path) == collections.OrderedDict([('b', 2), ('a', 1)])


@pytest.mark.parametrize(
    'size,stride,message',
    [
        ((1,) * 65, (1,) * 65, '65 dimensions, more than numpy allows (64)'),
        (
            (0, 1 << 62, 1 << 62),
            (1, 1, 1),
            'an empty tensor of size (0, %d, %d), too large for numpy' % (1 << 62, 1 << 62),
        ),
    ],
)
def test_tensors_numpy_cannot_hold_are_refused(tmp_path, size, stride, message):
    path = str(tmp_path / 'odd.pth')
    _state_dict_pth(path, [('w', size, stride)], numel=4)
    with pytest.raises(pth_reader.PthError) as err:
        pth_reader.load(path)
    assert str(err.value) == "%s: tensor 'w': %s" % (path, message)


def test_strides_of_size_1_dimensions_are_not_used(tmp_path):
    """torch leaves any stride on a dimension of size 1; numpy overflowed on 2^62 * 4."""
    path = str(tmp_path / 'unit.pth')
    _state_dict_pth(path, [('w', (1, 4), (1 << 62, 1))], numel=4)
    np.testing.assert_array_equal(pth_reader.load_state_dict(path)['w'], np.zeros((1, 4)))


@pytest.mark.parametrize(
    'records,message',
    [
        ([('0', ('1', 'x', 3))], "malformed storage view ('1', 'x', 3)"),
        (
            [('0', ('1', 0, 3)), ('1', ('2', 0, 2))],
            'storage 1 is a view, and a view of it is named',
        ),
    ],
)
def test_malformed_or_chained_storage_views_are_refused(tmp_path, records, message):
    """Legacy view records (key, offset, size): a string offset was a TypeError; chains of views
    of views recursed once per link."""
    p = fx._Pickle()
    p.glob('collections', 'OrderedDict')
    p.op(b')R(')
    for index, (key, view) in enumerate(records):
        p.string('t%d' % index)
        p.op(_tensor_pickle((2,), (1,), key=key, view=view)[2:-1])
    p.op(b'u.')
    path = str(tmp_path / 'views.pth')
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl', p.out.getvalue())
        zf.writestr('archive/data/0', np.arange(4, dtype='<f4').tobytes())
    with pytest.raises(pth_reader.PthError) as err:
        pth_reader.load(path)
    assert str(err.value) == '%s: %s' % (path, message)


def test_converter_reports_a_refused_file_in_one_line(tmp_path):
    """pytorch_to_tensorflow.py on the 2^20 x 2^20 stride-0 file: a traceback before."""
    path = str(tmp_path / 'stride0.pth')
    _state_dict_pth(path, [('w', (1 << 20, 1 << 20), (0, 0))], numel=1)
    result = run_script(
        'pytorch_to_tensorflow.py',
        '--pth_path=' + path,
        '--output_path=' + str(tmp_path / 'x.ckpt'),
    )
    assert result.returncode == 1
    assert 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith('pytorch_to_tensorflow: error: %s: tensor ' % path), lines[-5:]
    assert 'more than the 1 of its storage 0' in lines[-1]
