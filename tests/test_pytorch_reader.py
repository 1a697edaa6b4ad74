"""The torch-free .pth reader: real files written by torch.save (zip and legacy formats,
float32/float16/bfloat16, views, a 2017-style GPU file), and pickles that must never run."""

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest

from converters import pth_reader
from tests import pytorch_fixtures as fx


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


def _tensor_pickle(size, stride, offset=0, numel=4):
    p = fx._Pickle()
    p.glob('torch._utils', '_rebuild_tensor_v2')
    p.op(b'((')
    p.string('storage')
    p.glob('torch', 'FloatStorage')
    p.string('0')
    p.string('cpu')
    p.integer(numel)
    p.op(b'tQ')
    p.integer(offset)
    p.ints(size)
    p.ints(stride)
    p.op(b'\x89')
    p.glob('collections', 'OrderedDict')
    p.op(b')RtR.')
    return p.out.getvalue()


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
        pth_reader.PthError, match='no state_dict of tensors found; top-level keys: epoch, lr'
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
