"""Ctrl-C ends a script with one line saying what was kept and how to resume, not a traceback."""

import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, script_env


def _interrupt_when(args, marker, timeout=400):
    """Starts `python args...`, sends SIGINT (what Ctrl-C sends) once `marker` is in its stderr;
    returns (exit status, stderr lines)."""
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=script_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    deadline = time.time() + timeout
    try:
        for line in process.stderr:
            lines.append(line.rstrip('\n'))
            if marker in line:
                process.send_signal(signal.SIGINT)
                break
            assert time.time() < deadline, lines[-20:]
        lines += process.stderr.read().splitlines()
        return process.wait(timeout=120), lines
    finally:
        if process.poll() is None:
            process.kill()


def test_training_interrupted_says_what_was_kept(tmp_path):
    records = tmp_path / 'records'
    env = script_env()
    subprocess.run(
        [
            sys.executable,
            '-m',
            'datasets.synthetic',
            '--output_dir',
            str(tmp_path / 'voc'),
            '--num_images',
            '8',
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            'tf_convert_data.py',
            '--dataset_name=pascalvoc',
            f'--dataset_dir={tmp_path / "voc"}',
            f'--labels_file={tmp_path / "voc" / "labels.txt"}',
            f'--output_dir={records}',
            '--output_name=voc_2007_train',
            '--num_workers=1',
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    train_dir = tmp_path / 'train'
    status, lines = _interrupt_when(
        [
            os.path.join(ROOT, 'train_ssd_network.py'),
            f'--train_dir={train_dir}',
            f'--dataset_dir={records}',
            '--dataset_name=pascalvoc_2007',
            '--dataset_split_name=train',
            '--model_name=ssd_300_mobilenet',
            '--depth_multiplier=0.25',
            '--batch_size=2',
            '--num_readers=1',
            '--log_every_n_steps=1',
            '--save_interval_steps=2',
            '--max_number_of_steps=100000',
        ],
        'step 3/',
    )
    assert status == 130, lines[-20:]
    assert not any('Traceback' in line or 'KeyboardInterrupt' in line for line in lines), lines
    last = lines[-1]
    assert last.startswith('train_ssd_network: interrupted; checkpoints up to model.ckpt-'), lines
    assert last.endswith(f'are kept in {train_dir}; run the same command to resume from it')
    step = int(last.split('model.ckpt-')[1].split(' ')[0])
    assert os.path.isfile(train_dir / f'model.ckpt-{step}.index')


def test_conversion_interrupted_keeps_the_earlier_output(tmp_path):
    env = script_env()
    subprocess.run(
        [
            sys.executable,
            '-m',
            'datasets.synthetic',
            '--output_dir',
            str(tmp_path / 'voc'),
            '--num_images',
            '80',
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    records = tmp_path / 'records'
    records.mkdir()
    (records / 'notes.txt').write_text('mine')
    status, lines = _interrupt_when(
        [
            os.path.join(ROOT, 'tf_convert_data.py'),
            '--dataset_name=pascalvoc',
            f'--dataset_dir={tmp_path / "voc"}',
            f'--labels_file={tmp_path / "voc" / "labels.txt"}',
            f'--output_dir={records}',
            '--output_name=train',
            '--num_workers=2',
            '--samples_per_file=5',
        ],
        '[convert]',
    )
    assert status == 130, lines[-20:]
    assert not any('Traceback' in line or 'KeyboardInterrupt' in line for line in lines), lines
    assert lines[-1] == (
        f'tf_convert_data: interrupted; nothing of train was replaced in '
        f'{records} (the temporary folder is removed by the next run); run the '
        f'same command to convert again'
    ), lines[-5:]
    assert sorted(n for n in os.listdir(records) if not n.startswith('.')) == ['notes.txt']
