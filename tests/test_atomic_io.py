"""Atomic writes leave either the old or the new file, never a partial one or a temp file."""
import json
import os

import pytest

from tf_extended import atomic_io


def test_writes_and_replaces(tmp_path):
    path = tmp_path / 'out.json'
    atomic_io.write_json_atomic(str(path), {'a': 1})
    atomic_io.write_json_atomic(str(path), {'a': 2})
    assert json.loads(path.read_text()) == {'a': 2}
    atomic_io.write_bytes_atomic(str(tmp_path / 'b.bin'), b'\x00\x01')
    assert (tmp_path / 'b.bin').read_bytes() == b'\x00\x01'
    assert sorted(os.listdir(tmp_path)) == ['b.bin', 'out.json']


def test_failure_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / 'out.json'
    atomic_io.write_text_atomic(str(path), 'old')
    with pytest.raises(TypeError):
        atomic_io.write_bytes_atomic(str(path), object())
    with pytest.raises(TypeError):
        atomic_io.write_json_atomic(str(path), {'x': object()})
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['out.json']
