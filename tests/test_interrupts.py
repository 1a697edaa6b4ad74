"""Ctrl-C ends a script with one line saying what was kept and how to resume, not a traceback.
(Training: tests/test_train_run.py, which interrupts one of its runs.)"""

import os

from datasets import synthetic
from tests.conftest import ROOT, interrupt_when


def test_conversion_interrupted_keeps_the_earlier_output(tmp_path):
    synthetic.generate(str(tmp_path / 'voc'), 80)
    records = tmp_path / 'records'
    records.mkdir()
    (records / 'notes.txt').write_text('mine')
    status, lines = interrupt_when(
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
