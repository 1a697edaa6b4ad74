"""Atomic writes leave either the old or the new file, never a partial one or a temp file; they
are durable (fsync) and readable by others (umask, not 0600)."""

import errno
import json
import os
import stat
import subprocess
import sys

import pytest

from tf_extended import atomic_io
from tf_extended import temp_dirs


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


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    atomic_io.write_text_atomic(str(tmp_path / 'results.json'), '{}')
    assert stat.S_IMODE(os.stat(tmp_path / 'results.json').st_mode) == 0o644
    folder = atomic_io.make_temp_dir(str(tmp_path / 'export'))
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755
    # The watcher's best/ is such a folder renamed into place (it was 0700, mkdtemp's mode).
    assert stat.S_IMODE(os.stat(temp_dirs.make(str(tmp_path), 'best-new')).st_mode) == 0o755
    os.umask(0o027)
    atomic_io.write_text_atomic(str(tmp_path / 'private.txt'), 'x')
    assert stat.S_IMODE(os.stat(tmp_path / 'private.txt').st_mode) == 0o640
    assert atomic_io.file_mode() == 0o640 and atomic_io.dir_mode() == 0o750


def test_interrupted_before_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'model.json'
    atomic_io.write_text_atomic(str(path), 'old')

    def killed(source, target):
        raise KeyboardInterrupt  # e.g. Ctrl-C between the write and the rename

    monkeypatch.setattr(atomic_io, 'replace', killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_io.write_text_atomic(str(path), 'new')
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['model.json']


def test_fsync_file_before_rename_and_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(('fsync', 'dir' if stat.S_ISDIR(info.st_mode) else 'file', info.st_ino))
        real_fsync(fd)

    def replace(source, target):
        events.append(('rename', os.stat(source).st_ino))
        real_replace(source, target)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    path = tmp_path / 'out.bin'
    atomic_io.write_bytes_atomic(str(path), b'data')
    file_inode, dir_inode = os.stat(path).st_ino, os.stat(tmp_path).st_ino
    assert events == [
        ('fsync', 'file', file_inode),
        ('rename', file_inode),
        ('fsync', 'dir', dir_inode),
    ]


def test_orphans_of_killed_writes_are_removed_on_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    host = atomic_io.host_tag()
    orphan = tmp_path / f'.model.json.tmp-{dead.pid}@{host}-abc123xy'
    orphan.write_text('half')
    orphan_dir = tmp_path / f'.export.tmp-{dead.pid}@{host}-xyz_0000'
    orphan_dir.mkdir()
    alive = tmp_path / f'.model.json.tmp-{os.getppid()}@{host}-def456xy'  # a running writer's
    alive.write_text('busy')
    other = tmp_path / '.model.json.swp'  # not ours: kept
    other.write_text('editor')
    # A user's names of the old, looser form, and another host's temporary: kept.
    users = [f'.model.json.tmp-{dead.pid}-orig', f'.photos.tmp-{dead.pid}-archive']
    for name in users:
        (tmp_path / name).mkdir()
    elsewhere = tmp_path / f'.model.json.tmp-{dead.pid}@elsewhere-abc123xy'
    elsewhere.write_text('shared folder')
    atomic_io.write_text_atomic(str(tmp_path / 'model.json'), 'new')
    kept = [alive.name, other.name, elsewhere.name, *users]
    assert sorted(os.listdir(tmp_path)) == sorted([orphan_dir.name, *kept, 'model.json'])
    made = atomic_io.make_temp_dir(str(tmp_path / 'export'))  # this process': kept
    assert not orphan_dir.exists()
    assert atomic_io.remove_orphans(str(tmp_path)) == []
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, 'model.json', os.path.basename(made)])
    # With a suffix (a video writer picks its format by the extension): removed the same way.
    video = tmp_path / f'.clip_det.mp4.tmp-{dead.pid}@{host}-k2j4abcd.mp4'
    video.write_text('half')
    fd, path = atomic_io.mkstemp_for(str(tmp_path / 'clip_det.mp4'), suffix='.mp4')
    os.close(fd)
    assert not video.exists() and path.endswith('.mp4')
    assert os.path.basename(path).startswith(f'.clip_det.mp4.tmp-{os.getpid()}@{host}-')


def test_results_files_are_readable_by_others(tmp_path, umask_022):
    from tf_extended import voc_metrics

    writer = voc_metrics.VOCResultsWriter(str(tmp_path), 'test', {1: 'cat'}, boxes_in_pixels=True)
    writer.add_image('a', [[1.0, 1.0, 5.0, 5.0]], [0.9], [1])
    path = writer.close()[1]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path) == [os.path.basename(path)]


@pytest.mark.parametrize(
    'hostname, tag',
    [('node-017.cluster.example.org', 'node-017.cluster.example.org'), ('my host/1', 'my_host_1')],
)
def test_host_tag_keeps_the_name_a_file_name_can_hold(monkeypatch, hostname, tag):
    monkeypatch.setattr(atomic_io.socket, 'gethostname', lambda: hostname)
    assert atomic_io.host_tag() == tag
    monkeypatch.setattr(atomic_io.socket, 'gethostname', lambda: 'n' * 60 + 'abcdefgh')
    assert atomic_io.host_tag() == 'n' * 60 + 'abcd'  # at most 64 characters


@pytest.mark.parametrize(
    'name, ours',
    [
        ('.model.json.tmp-42@node-1-abc_12xy', True),
        ('.clip.mp4.tmp-42@node-1-abc_12xy.mp4', True),
        ('model.json.tmp-42@node-1-abc_12xy', False),  # not hidden: a user's
        ('.model.json.tmp-42@node-1-abc12x', False),  # 6 random characters: not tempfile's
        ('.model.json.tmp-42@node-1-abc_12xy~', False),  # an editor's backup of one
        ('.model.json.tmp-x42@node-1-abc_12xy', False),
    ],
)
def test_only_names_made_here_are_temporaries(name, ours):
    assert bool(atomic_io.TEMP_NAME.match(name)) == ours


def test_an_orphan_symlink_is_removed_not_what_it_points_to(tmp_path):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    kept = tmp_path / 'photos'
    kept.mkdir()
    (kept / 'a.jpg').write_text('jpeg')
    link = tmp_path / f'.model.json.tmp-{dead.pid}@{atomic_io.host_tag()}-abc123xy'
    link.symlink_to(kept)
    assert atomic_io.remove_orphans(str(tmp_path)) == [str(link)]
    assert os.listdir(tmp_path) == ['photos'] and os.listdir(kept) == ['a.jpg']


@pytest.mark.parametrize('code, raised', [(errno.EINVAL, False), (errno.EIO, True)])
def test_a_folder_fsync_error_other_than_unsupported_is_raised(tmp_path, monkeypatch, code, raised):
    """EINVAL: the file system cannot fsync a folder; EIO: the rename may not be on disk."""

    def fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, 'fsync', fsync)
    if raised:
        with pytest.raises(OSError, match=os.strerror(code)):
            atomic_io.fsync_dir(str(tmp_path))
    else:
        atomic_io.fsync_dir(str(tmp_path))
