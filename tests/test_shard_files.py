"""Shards handed in by users that are no TFRecord files the reader can use: a FIFO, device,
directory or dangling link named like a shard, a GZIP-compressed shard, and a file beside the
metadata that it does not list; with metadata and without (datasets.convert, through
dataset_factory.get_dataset)."""

import gzip
import hashlib
import json
import logging
import os
import shutil
import threading

import pytest
import tensorflow as tf

from datasets import convert
from datasets import dataset_factory
from tests import data_fixtures as fx

BOX = [fx.voc_object('cat', (2, 3, 10, 12))]
NOT_REGULAR_HINT = (
    'not a regular file, so not a TFRecord shard; refusing to read it. Put the TFRecord file '
    'itself there, or move it away.'
)
GZIP = (
    ': the shard is GZIP-compressed (it starts with the gzip magic bytes 1f 8b), and the records '
    'are read uncompressed: decompress it (gunzip), keeping its name'
)


def _promptly(call, fifos=()):
    """The exception `call()` raises; fails (instead of hanging the suite) when it blocks, as
    opening a FIFO for reading did, waiting for a writer. Unblocks such a reader by opening
    `fifos` for writing."""
    raised = []

    def run():
        try:
            call()
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():
        for fifo in fifos:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # EOF for the blocked reader
        thread.join(5)
        pytest.fail(f'{call} blocked for 20 s')
    assert raised, f'{call} raised nothing'
    return raised[0]


def _make(path, kind):
    """Puts a `kind` of non-regular file at `path`; returns what the messages call it."""
    if kind == 'fifo':
        os.mkfifo(path)
        return 'a FIFO (named pipe)'
    if kind == 'directory':
        os.mkdir(path)
        return 'a directory'
    if kind == 'device':
        os.symlink(os.devnull, path)  # read as 0 records before
        return 'a character device (through a symlink)'
    if kind == 'loop':
        os.symlink(os.path.basename(path), path)
        return 'a broken or looping symlink'
    os.symlink('gone.tfrecord', path)
    return 'a broken or looping symlink'


KINDS = ['fifo', 'directory', 'device', 'loop', 'dangling']


def _write_records(path, records):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def _example(size):
    """A serialized tf.train.Example of `size` bytes (100, 0x8B1F): get_dataset looks at the first
    records of shards without metadata."""
    for n in range(size, -1, -1):
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'x' * n]))
        record = tf.train.Example(
            features=tf.train.Features(feature={'image/encoded': feature})
        ).SerializeToString()
        if len(record) == size:
            return record
    raise ValueError(size)


def _gzip_in_place(path):
    data = path.read_bytes()
    path.write_bytes(gzip.compress(data))
    return len(data)


# --- without metadata: count_records on what the glob found ------------------------------------


def _voc_2007_test(folder):
    return dataset_factory.get_dataset('pascalvoc_2007', 'test', str(folder))


@pytest.mark.parametrize('kind', KINDS)
def test_a_shard_that_is_no_regular_file_is_refused_without_metadata(tmp_path, kind):
    _write_records(tmp_path / 'voc_2007_test_000.tfrecord', [b'a', b'b'])
    odd = tmp_path / 'voc_2007_test_001.tfrecord'
    what = _make(str(odd), kind)
    error = _promptly(lambda: _voc_2007_test(tmp_path), fifos=[str(odd)] if kind == 'fifo' else [])
    assert type(error) is ValueError
    assert str(error) == f'{odd} is {what}, {NOT_REGULAR_HINT}'


def test_records_are_walked_from_their_headers_and_a_cut_crc_is_a_truncation(tmp_path):
    """Each record is a 12-byte header, its data and a 4-byte CRC (TFRecord's layout)."""
    shard = tmp_path / 'voc_2007_test_000.tfrecord'
    _write_records(shard, [b'a', b'bcd'])
    data = shard.read_bytes()
    assert len(data) == (12 + 1 + 4) + (12 + 3 + 4)
    assert convert.count_records(str(shard)) == 2
    assert convert.first_records(str(shard), 1) == [b'a']
    assert convert.first_records(str(shard), 5) == [b'a', b'bcd']
    for cut in (1, 4):  # the last record's data CRC cut off
        shard.write_bytes(data[:-cut])
        with pytest.raises(ValueError) as info:
            convert.count_records(str(shard))
        assert str(info.value) == (
            f'{shard}: truncated TFRecord file (record 1 at byte 17 declares 3 bytes, past the '
            'end of the file).'
        )


def test_a_gzip_compressed_shard_is_named_without_metadata(tmp_path):
    shard = tmp_path / 'voc_2007_test_000.tfrecord'
    _write_records(shard, [_example(100)] * 3)
    assert _voc_2007_test(tmp_path).num_samples == 3
    _gzip_in_place(shard)
    with pytest.raises(ValueError) as info:
        _voc_2007_test(tmp_path)
    assert str(info.value) == f'{shard}{GZIP}.'
    # Only a file that is no valid TFRecord file is called so: this one starts with 1f 8b too
    # (its first record is 0x8b1f bytes long).
    _write_records(shard, [_example(0x8B1F), _example(100)])
    assert shard.read_bytes()[:2] == b'\x1f\x8b'
    assert _voc_2007_test(tmp_path).num_samples == 2
    for start in (b'\x00\x00', b'\x1f\x00'):  # no valid shard and no gzip: still truncated
        shard.write_bytes(start + b'\x00' * 6)
        with pytest.raises(ValueError) as info:
            _voc_2007_test(tmp_path)
        assert str(info.value) == (
            f'{shard}: truncated TFRecord file (record 0 header cut at byte 0).'
        )


# --- with metadata: read_metadata's shard checks -------------------------------------------------


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """A conversion to `syn` of two images, one a shard: syn_000.tfrecord, syn_001.tfrecord."""
    root = str(tmp_path_factory.mktemp('voc'))
    for i in range(2):
        fx.add_voc_example(root, f'{i:03d}', fx.smooth_image(20, 24, seed=i), BOX)
    out = tmp_path_factory.mktemp('records')
    fx.convert_voc([root], str(out), 'syn', samples_per_file=1)
    assert sorted(os.listdir(out)) == ['syn_000.tfrecord', 'syn_001.tfrecord', 'syn_metadata.json']
    return out


@pytest.fixture()
def records(converted, tmp_path):
    """A copy of `converted` for one test to change."""
    out = tmp_path / 'records'
    shutil.copytree(converted, out)
    return out


def _syn(folder):
    return dataset_factory.get_dataset('custom', 'syn', str(folder))


@pytest.mark.parametrize('kind', KINDS)
def test_a_listed_shard_that_is_no_regular_file_is_not_called_missing(records, kind):
    shard = records / 'syn_001.tfrecord'
    shard.unlink()
    what = _make(str(shard), kind)
    error = _promptly(lambda: _syn(records), fifos=[str(shard)] if kind == 'fifo' else [])
    assert type(error) is dataset_factory.DatasetFilesError
    assert str(error) == (
        f'{records / "syn_metadata.json"} lists shards that are present but not regular files '
        f'(syn_001.tfrecord is {what}); records are read from regular files only: put the shard '
        'files there (restore them) or convert the data again.'
    )


def test_every_listed_shard_that_is_no_regular_file_is_named_and_missing_ones_come_first(records):
    for name, kind in (('syn_000.tfrecord', 'fifo'), ('syn_001.tfrecord', 'directory')):
        (records / name).unlink()
        _make(str(records / name), kind)
    error = _promptly(lambda: _syn(records), fifos=[str(records / 'syn_000.tfrecord')])
    assert str(error) == (
        f'{records / "syn_metadata.json"} lists shards that are present but not regular files '
        '(syn_000.tfrecord is a FIFO (named pipe), syn_001.tfrecord is a directory); records are '
        'read from regular files only: put the shard files there (restore them) or convert the '
        'data again.'
    )
    os.rmdir(records / 'syn_001.tfrecord')
    with pytest.raises(FileNotFoundError, match=r'lists shards that are missing \(\[.*syn_001'):
        _syn(records)


@pytest.mark.parametrize('version', [2, 1])
def test_a_gzip_compressed_listed_shard_is_named(records, version):
    meta = records / 'syn_metadata.json'
    if version == 1:  # no sizes or digests: the record count is checked
        metadata = json.loads(meta.read_text())
        metadata['version'] = 1
        for entry in metadata['files']:
            del entry['size'], entry['sha256']
        meta.write_text(json.dumps(metadata))
    size = _gzip_in_place(records / 'syn_001.tfrecord')
    with pytest.raises(ValueError) as info:
        _syn(records)
    expected = f'{records / "syn_001.tfrecord"}{GZIP}'
    if version == 2:
        assert type(info.value) is dataset_factory.DatasetFilesError
        expected += f': it then has the {size} bytes that syn_metadata.json lists'
    assert str(info.value) == expected + '.'


def test_a_shard_the_metadata_does_not_list_is_named_in_one_warning(records, caplog):
    def warnings():
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            dataset = _syn(records)
        assert [os.path.basename(f) for f in dataset.files] == [
            'syn_000.tfrecord',
            'syn_001.tfrecord',
        ]
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    # Another output name's shards (syn_hard) share the folder without a warning.
    shutil.copy(records / 'syn_000.tfrecord', records / 'syn_hard_000.tfrecord')
    shutil.copy(records / 'syn_000.tfrecord', records / 'syn_000.tfrecord.orig')  # nor a backup
    assert warnings() == []
    shutil.copy(records / 'syn_000.tfrecord', records / 'syn_002.tfrecord')
    assert warnings() == [
        f'syn_002.tfrecord in {records}: named like the shards of syn_metadata.json but not '
        'listed in it, so not read (its list is what the conversion wrote; a leftover of an older '
        'conversion, or a file copied in?). Move it away, or convert the data again to include '
        'its examples.'
    ]
    assert convert.read_metadata(str(records / 'syn_metadata.json'))[0]['num_examples'] == 2


def _record_declaring(length):
    """A TFRecord record header declaring `length` bytes (its length CRC right, as TF's reader
    checks it), then 100 bytes: what a crafted shard holds."""
    header = length.to_bytes(8, 'little')
    crc = _crc32c(header)
    masked = ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF
    return header + masked.to_bytes(4, 'little') + b'x' * 100


def _crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: TFRecord headers carry it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_a_listed_shard_with_a_record_past_its_end_is_refused_whatever_its_size(records):
    # TF's reader allocated the 2**40 bytes the header declares and the process died (SIGSEGV);
    # the metadata records the crafted shard's size and sha256, so only the headers tell.
    shard, meta = records / 'syn_001.tfrecord', records / 'syn_metadata.json'
    data = _record_declaring(1 << 40)
    shard.write_bytes(data)
    metadata = json.loads(meta.read_text())
    metadata['files'][1].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    meta.write_text(json.dumps(metadata))
    for verify in (False, True):
        with pytest.raises(dataset_factory.DatasetFilesError) as info:
            dataset_factory.get_dataset('custom', 'syn', str(records), verify_digests=verify)
        assert str(info.value) == (
            f'{shard}: truncated TFRecord file (record 0 at byte 0 declares 1099511627776 bytes, '
            'past the end of the file). Convert the data again (or restore the shard).'
        )


def test_a_listed_shard_of_another_record_count_than_listed_is_refused(records):
    meta = records / 'syn_metadata.json'
    metadata = json.loads(meta.read_text())
    metadata['files'][1]['num_examples'] = 2
    metadata['num_examples'] = 3
    meta.write_text(json.dumps(metadata))
    with pytest.raises(dataset_factory.DatasetFilesError) as info:
        _syn(records)
    assert str(info.value) == (
        f'{records / "syn_001.tfrecord"} holds 1 records but syn_metadata.json lists 2; convert '
        'the data again (or restore the shard).'
    )
