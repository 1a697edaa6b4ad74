"""One run at a time in a folder (tf_extended/folder_lock.py): the lock against a second process,
its release when the holder is killed, and each script refusing a folder another run holds, in
one line and before it writes anything.

Seen before: two detect_ssd_network.py runs into one --output_dir lost each other's lines of
`.detections_pending.jsonl` and each wrote a detections.json of its own images only; two trainers
in one --train_dir resumed from one checkpoint and saved over and rotated away each other's."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from inference import export
from tests import data_fixtures
from tests import inference_fixtures as fx
from tests.conftest import ROOT, file_bytes, interrupt_when, run_script, synthetic_voc_records
from tf_extended import folder_lock
from training import trainer

LOCK = folder_lock.LOCK_NAME
MODEL_FLAGS = [
    '--model_name=ssd_300_mobilenet',
    '--depth_multiplier=0.25',
    f'--num_classes={fx.NUM_CLASSES}',
]
HOLDER = """
import os, sys, time
sys.path.insert(0, {root!r})
from tf_extended import folder_lock
lock = folder_lock.acquire(sys.argv[1], '--output_dir', 'detection run')
print('locked', flush=True)
if sys.argv[2] == 'exit':
    os._exit(3)
time.sleep(600)
"""


def _start_holder(tmp_path, folder, how='sleep'):
    """A fresh process (`holder.py <folder> <how>`) holding the folder's lock; returns it once it
    holds it."""
    script = tmp_path / 'holder.py'
    script.write_text(HOLDER.format(root=ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), how],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert proc.stdout.readline().strip() == 'locked'
    return proc


def _record(folder):
    with open(os.path.join(folder, LOCK)) as f:
        return json.loads(f.read())


def _refusal(flag, folder, record):
    return (
        f'{flag} {folder} is in use: {folder_lock.describe(record)}; wait for it to end, or '
        f'choose another {flag}.'
    )


def test_a_second_process_is_refused_until_the_holder_is_killed(tmp_path):
    out = tmp_path / 'out'
    holder = _start_holder(tmp_path, out)
    try:
        record = _record(out)
        assert record['pid'] == holder.pid and record['role'] == 'detection run'
        assert record['command'].endswith(f'holder.py {out} sleep')
        with pytest.raises(folder_lock.FolderBusy) as err:
            folder_lock.acquire(str(out), '--output_dir', 'export')
        message = str(err.value)
        assert message == _refusal('--output_dir', out, record)
        assert f'another detection run holds its lock (pid {holder.pid} on ' in message
        assert f'holder.py {out} sleep); wait for it to end, or choose another ' in message
        assert '\n' not in message and _record(out) == record  # the refusal changed nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel released it with the process: the file it left is free, no cleanup needed.
    assert os.listdir(out) == [LOCK]
    with folder_lock.acquire(str(out), '--output_dir', 'export') as lock:
        assert _record(out)['pid'] == os.getpid() and _record(out)['role'] == 'export'
        assert lock.fd is not None
    assert os.listdir(out) == []  # removed at the end; the folder was there before: it stays


def test_a_lock_file_nested_too_deeply_is_not_a_holder():
    """A lock file is read by other runs (the watcher reads the trainer's): JSON nested beyond
    the parser after our prefix was a RecursionError traceback."""
    text = folder_lock._PREFIX + ', "x": ' + '[' * 30000
    assert folder_lock.holder(text) is None


def test_a_json_object_without_our_signature_is_not_a_holder():
    assert folder_lock.holder('{"role": "training run", "pid": 1}') is None
    assert folder_lock.holder(folder_lock._PREFIX + ', "pid": 7}') == {
        'lock': 'ssd folder lock',
        'pid': 7,
    }


@pytest.mark.parametrize('pid', [0, -1, 1 << 31])
def test_a_lock_file_naming_no_process_has_no_holder(tmp_path, pid):
    """kill(0) and kill(-1) signal process groups, so they would call a lock file naming pid 0
    or -1 held by a live run; a pid past the kernel's limit is none either."""
    record = {'lock': 'ssd folder lock', 'host': socket.gethostname(), 'pid': pid}
    (tmp_path / LOCK).write_text(json.dumps(record))
    assert folder_lock.current_holder(str(tmp_path)) is None
    (tmp_path / LOCK).write_text(json.dumps(dict(record, pid=os.getpid())))
    assert folder_lock.current_holder(str(tmp_path))['pid'] == os.getpid()


def test_a_long_or_controlling_command_is_cut_in_the_refusal():
    # A newline and a DEL would act on the user's terminal; 304 characters are over the 300 shown.
    shown = folder_lock.describe(
        {'pid': 5, 'host': 'h', 'since': 't', 'command': 'a\nb\x7f' + 'x' * 300}
    )
    command = shown.split('command: ')[1][:-1]
    assert command == 'a?b?' + 'x' * (folder_lock._COMMAND_SHOWN - 7) + '...'
    assert shown.startswith('another process holds its lock (pid 5 on h since t, command: a?b')


def test_a_holder_ending_by_os_exit_releases_it(tmp_path):
    out = tmp_path / 'out'
    holder = _start_holder(tmp_path, out, 'exit')
    assert holder.wait() == 3
    with folder_lock.acquire(str(out), '--output_dir', 'export'):
        pass


def test_release_removes_its_file_and_the_folder_it_created(tmp_path):
    new = tmp_path / 'new'
    lock = folder_lock.acquire(str(new), '--eval_dir', 'evaluation')
    assert os.listdir(new) == [LOCK]
    # flock is per open file: a second lock in the same process is refused too (a local disk).
    with pytest.raises(folder_lock.FolderBusy, match=f'another evaluation.*pid {os.getpid()}'):
        folder_lock.acquire(str(new), '--eval_dir', 'evaluation')
    lock.release()
    lock.release()  # twice: nothing
    assert not new.exists()  # as a run that failed before writing would leave it
    with folder_lock.acquire(str(new / 'a' / 'b'), '--eval_dir', 'evaluation'):
        assert os.listdir(new / 'a' / 'b') == [LOCK]
    assert not new.exists()  # the parents it made too
    kept = tmp_path / 'kept'
    with folder_lock.acquire(str(kept), '--output_dir', 'export'):
        (kept / 'result.txt').write_text('out')
    assert os.listdir(kept) == ['result.txt']


def test_a_lock_file_replaced_meanwhile_is_not_removed(tmp_path):
    lock = folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
    os.remove(tmp_path / LOCK)
    (tmp_path / LOCK).write_text('')  # another run's, say
    lock.release()
    assert (tmp_path / LOCK).exists()


def test_a_lock_file_this_user_cannot_open_is_one_line(tmp_path, monkeypatch):
    """Another user's run left the lock file (0644) in a shared folder: a bare 'Permission
    denied' before. (Simulated: the tests run as root, whom permissions do not stop.)"""
    real_open = os.open

    def denied(path, *args, **kwargs):
        if os.path.basename(path) == folder_lock.LOCK_NAME:
            raise PermissionError(13, 'Permission denied', path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, 'open', denied)
    lock_file = tmp_path / folder_lock.LOCK_NAME
    with pytest.raises(ValueError) as error:
        folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
    assert str(error.value) == (
        f'--output_dir {tmp_path}: cannot open its lock file {lock_file} (Permission denied): '
        f"another user's run left it, or you cannot write in the folder; if no run writes there, "
        f'remove {lock_file}.'
    )


def test_a_file_of_the_lock_name_that_is_not_ours_is_refused_untouched(tmp_path):
    (tmp_path / LOCK).write_text('my notes\n')
    with pytest.raises(ValueError, match='is not a lock file of these scripts; move it away'):
        folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
    assert (tmp_path / LOCK).read_text() == 'my notes\n'
    os.remove(tmp_path / LOCK)
    (tmp_path / 'target.txt').write_text('precious')
    for make in (
        lambda path: os.symlink(tmp_path / 'elsewhere', path),
        lambda path: os.symlink(tmp_path / 'target.txt', path),
        os.mkdir,
        os.mkfifo,  # opened, it was '[Errno 29] Illegal seek' without a file name
    ):
        make(tmp_path / LOCK)
        with pytest.raises(
            ValueError,
            match=r'--output_dir .*: .*\.ssd\.lock is not a lock file of these scripts \(a sy',
        ):
            folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
        (os.rmdir if os.path.isdir(tmp_path / LOCK) else os.remove)(tmp_path / LOCK)
    assert not (tmp_path / 'elsewhere').exists()
    assert (tmp_path / 'target.txt').read_text() == 'precious'


def test_a_path_that_is_a_file_is_left_to_the_callers_check(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('mine')
    lock = folder_lock.acquire(str(path), '--output_dir', 'export')
    assert lock.fd is None
    lock.release()
    assert path.read_text() == 'mine'


def test_only_the_chief_of_a_cluster_locks_the_train_dir(tmp_path, monkeypatch):
    """The other workers write to the chief's folder by design: they take no lock."""
    spec = tf.train.ClusterSpec({'ps': ['localhost:1'], 'worker': ['localhost:2', 'localhost:3']})
    ran = []
    monkeypatch.setattr(trainer.cluster_lib, 'describe_role', lambda *args: 'role')
    monkeypatch.setattr(
        trainer.cluster_lib, 'start_server', lambda *args: type('S', (), {'target': ''})
    )
    monkeypatch.setattr(trainer, '_train', lambda settings, cluster, *args: ran.append(cluster))
    settings = trainer.TrainSettings(train_dir=str(tmp_path / 'train'), dataset_dir='unused')
    with folder_lock.acquire(settings.train_dir, '--train_dir', 'training run'):
        for task, refused in ((1, False), (0, True)):
            cluster = trainer.Cluster(spec, 'worker', task)
            monkeypatch.setattr(trainer, 'cluster_setup', lambda settings, c=cluster: c)
            if refused:
                with pytest.raises(folder_lock.FolderBusy, match='another training run'):
                    trainer.train(settings)
            else:
                trainer.train(settings)
    assert [c.task_index for c in ran] == [1]


# ---------------------------------------------------------------------------------------------
# Each script, into a folder this test process holds: exit status 1, the one line, nothing
# written.


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp('locks')
    prefix = fx.write_checkpoint(fx.small_spec(), str(root / 'ckpt'))
    images = root / 'images'
    images.mkdir()
    for i, image in enumerate(fx.random_images(3, [(120, 160), (97, 131)])):
        data_fixtures.write_image(str(images / f'img{i}.png'), image, '.png')
    labels = root / 'labels.txt'
    labels.write_text('\n'.join(fx.synthetic.CLASSES) + '\n')
    return dict(prefix=prefix, images=images, labels=labels)


def _refused(script, flag, folder, role, *args):
    """Runs `script` into `folder` while this process holds it: refused in one line, the folder
    as it was."""
    prefix = os.path.splitext(os.path.basename(script))[0]
    with folder_lock.acquire(str(folder), flag, role):
        before = file_bytes(folder)
        proc = run_script(script, *args)
        assert proc.returncode == 1, proc.stderr[-3000:]
        line = f'{prefix}: error: {_refusal(flag, folder, _record(folder))}'
        assert proc.stderr.strip().splitlines()[-1] == line, proc.stderr[-3000:]
        assert f'pid {os.getpid()} on ' in line
        assert file_bytes(folder) == before
    return proc


def test_detect_into_a_held_folder_is_refused(model, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / '.detections_pending.jsonl').write_text('"img9_det.png"\n')  # an interrupted run's
    args = [
        f'--checkpoint_path={model["prefix"]}',
        *MODEL_FLAGS,
        f'--labels_file={model["labels"]}',
        f'--input={model["images"]}',
        f'--output_dir={out}',
    ]
    _refused(
        'detect_ssd_network.py',
        '--output_dir',
        out,
        'detection run',
        *args,
    )
    proc = run_script('detect_ssd_network.py', *args)  # the same command, once it is free
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == ['detections.json', 'img0_det.png', 'img1_det.png']


def test_export_into_a_held_folder_is_refused(model, tmp_path):
    out = tmp_path / 'out'
    args = [
        f'--checkpoint_path={model["prefix"]}',
        *MODEL_FLAGS,
        f'--labels_file={model["labels"]}',
        '--formats=frozen_graph',
        f'--output_dir={out}',
    ]
    _refused('export_ssd_network.py', '--output_dir', out, 'export', *args)
    assert not out.exists()  # the holder had created it, and removed it with its lock
    proc = run_script('export_ssd_network.py', *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(out)) == export.written_names(['frozen_graph'])


@pytest.mark.parametrize('watch', [False, True])
def test_eval_into_a_held_folder_is_refused(model, tmp_path, watch):
    eval_dir = tmp_path / 'eval'
    eval_dir.mkdir()
    (eval_dir / 'eval_ledger.jsonl').write_text('')
    (eval_dir / 'results.json').write_text('{}')
    checkpoint = os.path.dirname(model['prefix']) if watch else model['prefix']
    _refused(
        'eval_ssd_network.py',
        '--eval_dir',
        eval_dir,
        'watcher' if watch else 'evaluation',
        f'--checkpoint_path={checkpoint}',
        *MODEL_FLAGS,
        f'--eval_dir={eval_dir}',
        '--dataset_name=custom',
        f'--dataset_dir={tmp_path}',
        *(['--wait_for_checkpoints', '--eval_timeout=1'] if watch else []),
    )


def _training(train_dir):
    """A one-step training's command line into `train_dir`."""
    return [
        'train_ssd_network.py',
        f'--train_dir={train_dir}',
        f'--dataset_dir={synthetic_voc_records() / "records"}',
        '--dataset_name=pascalvoc_2007',
        '--dataset_split_name=train',
        '--model_name=ssd_300_mobilenet',
        '--depth_multiplier=0.25',
        '--max_number_of_steps=1',
    ]


def test_training_into_a_held_folder_is_refused(tmp_path):
    train_dir = tmp_path / 'train'
    script, *args = _training(train_dir)
    _refused(script, '--train_dir', train_dir, 'training run', *args)
    assert not train_dir.exists()


@pytest.mark.parametrize('case', ['lock_is_a_folder', 'parent_is_a_file'])
def test_training_into_a_path_it_cannot_use_is_one_line(tmp_path, case):
    """A folder named .ssd.lock in --train_dir, or a --train_dir under a file: OSErrors other
    than FileNotFoundError were tracebacks (then a bare `[Errno 20]` line for the latter)."""
    if case == 'lock_is_a_folder':
        train_dir = tmp_path / 'train'
        (train_dir / LOCK).mkdir(parents=True)
        error = (
            f'--train_dir {train_dir}: {train_dir / LOCK} is not a lock file of these scripts (a '
            'symlink, a folder or another special file); move it away and run again.'
        )
    else:
        (tmp_path / 'notes.txt').write_text('mine')
        train_dir = tmp_path / 'notes.txt' / 'train'
        error = (
            f'--train_dir {train_dir}: cannot create it (Not a directory); choose a folder you can '
            'write in.'
        )
    proc = run_script(*_training(train_dir))
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == f'train_ssd_network: error: {error}'


def test_a_folder_on_a_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    """An existing --output_dir on a read-only mount ended with '[Errno 30] Read-only file
    system: .../.ssd.lock' (export, detect, eval), naming no flag."""
    import errno

    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).endswith(folder_lock.LOCK_NAME):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(folder_lock.os, 'open', read_only)
    with pytest.raises(ValueError) as err:
        folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
    assert str(err.value) == (
        f'--output_dir {tmp_path}: cannot write in it (Read-only file system); choose a folder '
        'you can write in.'
    )


def test_a_socket_named_as_the_lock_file_is_named_not_the_folder(tmp_path):
    """A socket at .ssd.lock (ENXIO on open) was reported as 'cannot write in it' although the
    folder is writable."""
    import socket

    path = tmp_path / folder_lock.LOCK_NAME
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(ValueError) as err:
            folder_lock.acquire(str(tmp_path), '--output_dir', 'export')
    assert str(err.value) == (
        f'--output_dir {tmp_path}: {path} is not a lock file of these scripts (a symlink, a '
        'folder or another special file); move it away and run again.'
    )


# ---------------------------------------------------------------------------------------------
# A script stopped by SIGTERM releases its folder (the lock of the other scripts:
# tests/test_eval_watcher.py, tests/test_detect_script.py).


def test_sigterm_during_an_export_removes_its_pending_file_and_releases_the_folder(model, tmp_path):
    """SIGTERM (a scheduler, `kill`) killed an export at once: no line, its folder left with the
    pending file that marks an export unfinished (readers refuse the folder) and the lock file.
    Now it ends as Ctrl-C does, then by the signal: nothing was written, so nothing is left."""
    out = tmp_path / 'out'
    ended, lines = interrupt_when(
        [
            os.path.join(ROOT, 'export_ssd_network.py'),
            f'--checkpoint_path={model["prefix"]}',
            *MODEL_FLAGS,
            f'--labels_file={model["labels"]}',
            '--formats=frozen_graph',
            f'--output_dir={out}',
        ],
        lambda: (out / export.PENDING_FILE).exists(),
        signum=signal.SIGTERM,
    )
    assert ended == -signal.SIGTERM, lines[-20:]
    assert lines[-1:] == [
        f'export_ssd_network: terminated (SIGTERM); each file already in {out} is complete '
        f'(written atomically), metadata.json comes last; run the same command with --overwrite '
        f'to export again'
    ], lines[-5:]
    assert not out.exists()  # created by the export, and removed with its lock
