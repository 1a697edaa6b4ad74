"""run_demo.py's re-run rules, with the stages' scripts replaced by fakes that write what each
stage leaves: a stage is reused only with the same settings and input, otherwise it and what
depends on it are redone (and the log says why); an interrupted training resumes; --fresh and
the work folder never touch a folder the demo did not make."""

import json
import os

import cv2
import numpy as np
import pytest

import run_demo

TINY = ['--num_images', '8', '--steps', '4', '--batch_size', '2', '--num_detect_images', '1']


class FakeScripts:
    """Stands in for `run_demo.run`: records which stage ran and writes its outputs."""

    def __init__(self):
        self.ran = []
        self.commands = []
        self.interrupt_training_at = None
        self.env = None

    def __call__(self, args, on_line=None, env=None):
        self.commands.append(args)
        self.env = env
        flags = dict(a[2:].split('=', 1) for a in args if a.startswith('--') and '=' in a)
        if args[:2] == ['-m', 'datasets.synthetic']:
            self.ran.append('dataset')
            out = args[args.index('--output_dir') + 1]
            os.makedirs(os.path.join(out, 'ImageSets', 'Main'))
            os.makedirs(os.path.join(out, 'JPEGImages'))
            open(os.path.join(out, 'labels.txt'), 'w').write('circle\n')
            open(os.path.join(out, 'ImageSets', 'Main', 'test.txt'), 'w').write('000001\n')
            cv2.imwrite(
                os.path.join(out, 'JPEGImages', '000001.jpg'), np.zeros((8, 8, 3), np.uint8)
            )
        elif args[0] == 'tf_convert_data.py':
            self.ran.append('tfrecords:' + flags['split'])
            os.makedirs(flags['output_dir'], exist_ok=True)
            open(os.path.join(flags['output_dir'], flags['split'] + '_metadata.json'), 'w').write(
                '{}'
            )
        elif args[0] == 'train_ssd_network.py':
            self.ran.append('train')
            os.makedirs(flags['train_dir'], exist_ok=True)
            last = int(flags['max_number_of_steps'])
            first = (run_demo.latest_step(flags['train_dir']) or 0) + 1
            for step in range(first, last + 1):
                on_line(
                    f'step {step}/{last} (epoch 1.0): loss over 1 step total={10.0 / step:.4f} '
                    f'localization=1.0 lr=0.001 3.0 images/s ETA 0:00:01'
                )
                open(os.path.join(flags['train_dir'], f'model.ckpt-{step}.index'), 'w').close()
                if step == self.interrupt_training_at:
                    self.interrupt_training_at = None
                    raise KeyboardInterrupt
        elif args[0] == 'eval_ssd_network.py':
            self.ran.append('evaluate')
            os.makedirs(flags['eval_dir'], exist_ok=True)
            step = run_demo.latest_step(flags['checkpoint_path'])
            json.dump(
                {'global_step': step, 'metrics': {'voc07': 0.5, 'voc12': 0.6}},
                open(os.path.join(flags['eval_dir'], 'results.json'), 'w'),
            )
            open(os.path.join(flags['eval_dir'], 'results.txt'), 'w').write('table\n')
        elif args[0] == 'export_ssd_network.py':
            self.ran.append('export')
            os.makedirs(flags['output_dir'], exist_ok=True)
            open(os.path.join(flags['output_dir'], 'metadata.json'), 'w').write('{}')
        elif args[0] == 'detect_ssd_network.py':
            self.ran.append('detect')
            open(os.path.join(flags['output_dir'], 'detections.json'), 'w').write('{}')
        else:
            raise AssertionError(args)


@pytest.fixture
def demo(tmp_path, monkeypatch, capsys):
    fake = FakeScripts()
    monkeypatch.setattr(run_demo, 'run', fake)
    work_dir = str(tmp_path / 'work')

    def main(*extra, expect_exit=None):
        fake.ran, fake.commands = [], []
        if expect_exit is None:
            run_demo.main(['--work_dir', work_dir, *TINY, *extra])
        else:
            with pytest.raises(SystemExit) as exit_:
                run_demo.main(['--work_dir', work_dir, *TINY, *extra])
            assert exit_.value.code == expect_exit
        return fake.ran, capsys.readouterr().out

    main.fake, main.work_dir = fake, work_dir
    return main


ALL = ['dataset', 'tfrecords:train', 'tfrecords:test', 'train', 'evaluate', 'export', 'detect']


def test_changed_settings_redo_the_stage_and_what_depends_on_it(demo):
    ran, out = demo()
    assert ran == ALL
    assert os.path.isfile(os.path.join(demo.work_dir, run_demo.CURVE))
    assert f'curve       {os.path.join(demo.work_dir, run_demo.CURVE)}' in out
    ran, out = demo()
    assert ran == [] and out.count(': reusing ') == 6

    ran, out = demo('--depth_multiplier', '0.25')
    assert ran == ['train', 'evaluate', 'export', 'detect']
    # The earlier training is moved aside, not deleted: a rerun with other settings lost it.
    (aside,) = [n for n in os.listdir(demo.work_dir) if n.startswith('train.earlier-')]
    aside = os.path.join(demo.work_dir, aside)
    assert f'3/6 train: the earlier output is kept in {aside} (delete it when done)' in out
    assert run_demo.latest_step(aside) == 4
    assert '4/6 evaluate: removing the earlier output' in out
    assert '(settings changed: depth_multiplier 0.5 -> 0.25)' in out
    assert (
        '4/6 evaluate: the test split, VOC07 and VOC12 rules (its input (3/6 train) was '
        'redone)' in out
    )
    assert '1/6 dataset: reusing' in out and '2/6 tfrecords: reusing' in out

    ran, out = demo('--depth_multiplier', '0.25', '--num_images', '12')
    assert ran == ALL and 'settings changed: num_images 8 -> 12' in out
    ran, _ = demo('--depth_multiplier', '0.25', '--num_images', '12', '--batch_size', '3')
    assert ran == ['train', 'evaluate', 'export', 'detect']
    ran, _ = demo(
        '--depth_multiplier',
        '0.25',
        '--num_images',
        '12',
        '--batch_size',
        '3',
        '--num_detect_images',
        '2',
    )
    assert ran == ['detect']


def test_precision_reaches_training_and_evaluation(demo):
    ran, out = demo('--precision', 'fp32')
    assert 'precision: fp32 (as asked)' in out
    assert not any(
        '--mixed_precision' in c or '--compute_dtype=bfloat16' in c for c in demo.fake.commands
    )
    ran, out = demo('--precision', 'bf16')
    assert ran == ['train', 'evaluate', 'export', 'detect']
    assert '(settings changed: precision fp32 -> bf16)' in out
    commands = {c[0]: c for c in demo.fake.commands}
    assert '--mixed_precision' in commands['train_ssd_network.py']
    assert '--compute_dtype=bfloat16' in commands['eval_ssd_network.py']
    # Exports stay float32: they run on machines the demo knows nothing of.
    assert not any('bfloat16' in a for a in commands['export_ssd_network.py'])


@pytest.mark.parametrize(
    'flags, expected',
    [
        ({'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16', 'amx_tile'}, 'bf16'),
        ({'avx2', 'avx512f', 'avx512_bf16'}, 'bf16'),
        ({'avx2', 'avx512f'}, 'fp32'),
        ({'avx2'}, 'fp32'),
    ],
)
def test_auto_precision_is_bf16_only_with_bf16_instructions(flags, expected):
    precision, why = run_demo.resolve_precision('auto', flags)
    assert precision == expected and why.startswith('auto: ')
    assert run_demo.resolve_precision('bf16', {'avx2'}) == ('bf16', 'as asked')


def test_fp32_stages_run_with_onednn_unless_set(demo):
    """fp32: the scripts get TF_ENABLE_ONEDNN_OPTS=1 (this process's environment unchanged);
    bf16 or a user's own setting: left as it is."""
    assert 'TF_ENABLE_ONEDNN_OPTS' not in os.environ
    _, out = demo('--precision', 'fp32')
    assert demo.fake.env['TF_ENABLE_ONEDNN_OPTS'] == '1' and 'oneDNN kernels on' in out
    assert 'TF_ENABLE_ONEDNN_OPTS' not in os.environ
    assert demo.fake.env['PATH'] == os.environ['PATH']
    env, line = run_demo.stage_environment('bf16', {'PATH': '/bin'})
    assert env == {'PATH': '/bin'} and "TensorFlow's own choice" in line
    env, line = run_demo.stage_environment('fp32', {'TF_ENABLE_ONEDNN_OPTS': '0'})
    assert env == {'TF_ENABLE_ONEDNN_OPTS': '0'} and '(as set)' in line
    # Why, by the CPU: it said "about 3x faster on AVX2 CPUs" on CPUs where TF turns them on.
    for flags, why in (
        ({'avx2', 'avx512f', 'avx512_vnni'}, "(TensorFlow's default on this CPU)"),
        ({'avx2', 'amx_bf16'}, "(TensorFlow's default on this CPU)"),
        ({'avx2', 'avx512f'}, '(TensorFlow leaves them off on CPUs without VNNI'),
        ({'avx2'}, '(TensorFlow leaves them off on CPUs without VNNI'),
    ):
        env, line = run_demo.stage_environment('fp32', {}, flags)
        assert env == {'TF_ENABLE_ONEDNN_OPTS': '1'} and line.startswith(f'oneDNN kernels on {why}')


def test_interrupted_training_resumes(demo):
    demo.fake.interrupt_training_at = 2
    ran, out = demo(expect_exit=130)
    assert ran == ['dataset', 'tfrecords:train', 'tfrecords:test', 'train']
    last = out.strip().splitlines()[-1]
    assert last.endswith(
        'interrupted during 3/6 train; kept: 1/6 dataset, 2/6 tfrecords, '
        'training checkpoints up to step 2 of 4; run the same command to resume'
    )
    ran, out = demo()
    assert ran == ['train', 'evaluate', 'export', 'detect']
    assert 'resuming at step 2 (resuming: the earlier run of this stage did not finish)' in out
    losses = json.load(open(os.path.join(demo.work_dir, 'stages.json')))['train']['loss']
    assert [step for step, _ in losses] == [1, 2, 3, 4]


@pytest.mark.parametrize('keep_checkpoint', [True, False])
def test_a_resumed_training_records_each_step_once_in_order(demo, keep_checkpoint):
    """stages.json as an interrupted training leaves it: points logged past its last checkpoint
    (step 3 of a run whose checkpoint is step 2; an older demo's repeated steps), or no checkpoint
    at all. The resumed run logs those steps again: the record keeps the new points, once."""
    demo.fake.interrupt_training_at = 2
    demo(expect_exit=130)
    path = os.path.join(demo.work_dir, 'stages.json')
    records = json.load(open(path))
    records['train']['loss'] = [[1, 11.0], [2, 6.0], [1, 10.0], [2, 5.0], [3, 99.0]]
    json.dump(records, open(path, 'w'))
    if not keep_checkpoint:
        for name in os.listdir(os.path.join(demo.work_dir, 'train')):
            os.remove(os.path.join(demo.work_dir, 'train', name))
    ran, out = demo()
    assert ran == ['train', 'evaluate', 'export', 'detect']
    assert ('resuming at step 2 (' in out) == keep_checkpoint
    losses = json.load(open(path))['train']['loss']
    assert losses == [[1, 10.0], [2, 5.0], [3, 3.3333], [4, 2.5]]


def test_points_a_resumed_training_keeps():
    points = [[4, 1.0], [8, 2.0], [4, 3.0], 'junk', [True, 1.0], [12, 4.0], [2, 5.0]]
    assert run_demo.points_up_to(points, 8) == [[2, 5.0], [4, 3.0], [8, 2.0]]
    assert run_demo.points_up_to(points, 0) == []
    assert run_demo.points_up_to({'not': 'a list'}, 8) == []


def test_fresh_deletes_only_the_demos_folder(demo, tmp_path):
    demo()
    ran, out = demo('--fresh')
    assert ran == ALL and 'fresh: removing' in out

    thesis = tmp_path / 'thesis'
    (thesis / '.git').mkdir(parents=True)
    (thesis / 'thesis.tex').write_text('years of work')
    for extra in (['--fresh'], []):
        with pytest.raises(SystemExit) as exit_:
            run_demo.main(['--work_dir', str(thesis), *TINY, *extra])
        assert 'was not made by the demo' in str(exit_.value.code)
        assert 'refusing to ' + ('delete' if extra else 'write into') in str(exit_.value.code)
        assert sorted(os.listdir(thesis)) == ['.git', 'thesis.tex']


def test_the_refusal_names_five_entries_and_counts_the_rest(tmp_path):
    """An unmarked folder of 7 files: 'and 2 more' says how much the message left out."""
    for i in range(7):
        (tmp_path / f'f{i}.txt').write_text('x')
    with pytest.raises(
        run_demo.DemoError,
        match=r'it holds f0\.txt, f1\.txt, f2\.txt, f3\.txt, f4\.txt and 2 more\)',
    ):
        run_demo.prepare_work_dir(str(tmp_path), fresh=False)


def test_an_unmarked_folder_of_stage_names_is_refused(tmp_path):
    """A folder holding only folders named as the demo's stages, without the marker: a user's
    project (its own train/ and eval/) as much as an older demo's; a redone stage would delete
    them. Refused with and without --fresh, nothing written; an empty folder is taken."""
    project = tmp_path / 'project'
    (project / 'train').mkdir(parents=True)
    (project / 'train' / 'model.ckpt-90000.index').write_text('weeks of training')
    (project / 'eval').mkdir()
    for extra in (['--fresh'], []):
        with pytest.raises(SystemExit) as exit_:
            run_demo.main(['--work_dir', str(project), *TINY, *extra])
        assert 'was not made by the demo' in str(exit_.value.code)
        assert 'it holds eval/, train/);' in str(exit_.value.code)
        assert sorted(os.listdir(project)) == ['eval', 'train']
        assert os.listdir(project / 'train') == ['model.ckpt-90000.index']
    empty = tmp_path / 'empty'
    empty.mkdir()
    run_demo.prepare_work_dir(str(empty), fresh=False)
    assert os.listdir(empty) == [run_demo.MARKER]


def test_a_marker_that_is_a_link_does_not_make_a_folder_the_demos(tmp_path):
    """isfile() followed a planted link: --fresh deleted the folder with the user's files."""
    real = tmp_path / 'real_marker'
    real.write_text('any file')
    project = tmp_path / 'project'
    project.mkdir()
    (project / 'own.txt').write_text('mine')
    os.symlink(real, project / run_demo.MARKER)
    with pytest.raises(run_demo.DemoError, match='was not made by the demo'):
        run_demo.prepare_work_dir(str(project), fresh=True)
    assert (project / 'own.txt').read_text() == 'mine'


@pytest.mark.parametrize('text', ['[]', '{"train": [1]}', '[' * 100000, '{"train": '])
def test_unusable_stage_records_redo_every_stage(tmp_path, text):
    """stages.json that is not a record per stage (a list, nested beyond the parser: an
    AttributeError or RecursionError traceback before) counts as no record."""
    (tmp_path / run_demo.RECORDS).write_text(text)
    records = run_demo.StageRecords(str(tmp_path))
    assert records.records == {}
    assert records.why_redo('train', {'steps': 1}, set(), True).startswith('no record')
