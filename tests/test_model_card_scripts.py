"""The model card from training to every later script, as a user runs them: a tiny
ssd_300_mobilenet (depth multiplier 0.25, the synthetic set's own class names) is trained, then
evaluated, watched, exported, run and scored with no model flag at all; the results equal those
of the model built from explicit flags in-process. Contradicting flags fail before writing."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from datasets import convert
from datasets import dataset_factory
from datasets import pascalvoc
from datasets import synthetic
from evaluation import evaluate
from inference import export
from model import card as card_lib
from model import checkpoints
from model import cli
from tests import caffe_fixtures
from tests.conftest import file_bytes, run_script
from tests import data_fixtures
from tests import eval_fixtures
from tests import inference_fixtures
from training import trainer

MODEL = 'ssd_300_mobilenet'
DEPTH = 0.25
EXPLICIT = cli.ModelFlags(
    model_name=MODEL,
    depth_multiplier=DEPTH,
    num_classes=len(synthetic.CLASSES) + 1,
    select_threshold=0.01,
    nms_threshold=0.45,
    top_k=400,
    keep_top_k=200,
)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('card')
    voc_dir, records, names = eval_fixtures.make_synthetic_records(str(root), num_images=12)
    train_dir = str(root / 'train')
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={train_dir}',
        f'--dataset_dir={records}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--model_name={MODEL}',
        f'--depth_multiplier={DEPTH}',
        '--batch_size=2',
        '--max_number_of_steps=2',
        '--save_interval_steps=2',
        '--num_readers=1',
        '--seed=3',
        '--num_preprocessing_threads=1',
        '--batch_norm_decay=0.5',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = root / 'images'
    for i, image in enumerate(inference_fixtures.random_images(4, [(120, 160), (90, 200)])):
        data_fixtures.write_image(str(images / f'im{i}.png'), image, '.png')
    return dict(
        root=root,
        voc_dir=voc_dir,
        records=records,
        names=tuple(names),
        train_dir=train_dir,
        prefix=checkpoints.resolve_checkpoint(train_dir),
        images=str(images),
        train_log=proc.stderr,
    )


@pytest.fixture(scope='module')
def exported(trained, tmp_path_factory):
    """An export without model flags into a copy of the training folder (frozen graph): refused
    without --overwrite (the folder is not empty), then done with it. Returns the folder, its
    checkpoint's prefix, its files before (the trainer's), the refused run and the files after
    it."""
    train_dir = str(tmp_path_factory.mktemp('exported') / 'train')
    shutil.copytree(trained['train_dir'], train_dir)
    trainer_files = file_bytes(train_dir)
    args = [f'--checkpoint_path={train_dir}', f'--output_dir={train_dir}', '--formats=frozen_graph']
    refused = run_script('export_ssd_network.py', *args)
    refused_files = file_bytes(train_dir)
    proc = run_script('export_ssd_network.py', *args, '--overwrite')
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(
        dir=train_dir,
        prefix=os.path.join(train_dir, os.path.basename(trained['prefix'])),
        trainer_files=trainer_files,
        refused=refused,
        refused_files=refused_files,
    )


def test_training_writes_the_card(trained):
    card = card_lib.load(os.path.join(trained['train_dir'], 'model.json'))
    assert card.model_name == MODEL and card.params.depth_multiplier == DEPTH
    assert card.class_names == trained['names'] == synthetic.CLASSES
    assert card.provenance['dataset'] == {
        'name': 'custom',
        'split': 'test',
        'dir': os.path.abspath(trained['records']),
        'num_examples': 3,
    }
    assert card.provenance['settings']['batch_norm_decay'] == 0.5
    # The card records the batch-norm decay the net trained with (it said the default, 0.997).
    assert card.params == card_lib.from_registry(MODEL, 7, depth_multiplier=DEPTH).params._replace(
        batch_norm_decay=0.5
    )
    assert len(card.card_id) == 32


def test_eval_watch_export_detect_score_without_model_flags(trained, exported, tmp_path):
    prefix = trained['prefix']
    eval_dir = str(tmp_path / 'eval')
    common = [
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={trained["records"]}',
        '--batch_size=2',
    ]
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={trained["train_dir"]}',
        f'--eval_dir={eval_dir}',
        *common,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'model card ' + os.path.join(trained['train_dir'], 'model.json') in proc.stdout
    summary = json.loads(open(os.path.join(eval_dir, 'results.json')).read())
    # The same model from explicit flags, evaluated in-process: the same numbers.
    explicit = cli.resolve_card(EXPLICIT, None, log=lambda line: None)
    # The same net; the training's card also records the batch-norm decay it trained with.
    trained_params = card_lib.load(os.path.join(trained['train_dir'], 'model.json')).params
    assert trained_params == explicit.params._replace(batch_norm_decay=0.5)
    settings = evaluate.EvalSettings(
        card=explicit,
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=trained['records'],
        batch_size=2,
        pr_curves=False,
    )
    with tf.Graph().as_default():
        result = evaluate.evaluate_checkpoint(
            settings, prefix, str(tmp_path / 'explicit'), log=lambda line: None
        )
    assert summary['metrics'] == result.metrics
    assert [row['name'] for row in summary['classes']] == list(synthetic.CLASSES)

    # The watcher: its best/ folder carries the card.
    watch_dir = str(tmp_path / 'watch')
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={trained["train_dir"]}',
        f'--eval_dir={watch_dir}',
        '--wait_for_checkpoints',
        '--eval_timeout=60',
        '--eval_interval_secs=1',
        *common,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Restoring parameters' not in proc.stdout + proc.stderr  # a staged copy's temp path
    # The default --input_cache_mb keeps the small split for the next checkpoints.
    assert '[eval] input cache: the next evaluations reuse the decoded input of' in proc.stdout
    best = card_lib.load(os.path.join(watch_dir, 'best', 'model.json'))
    assert best.class_names == synthetic.CLASSES and best.params.depth_multiplier == DEPTH

    # Score the devkit files of the eval with the card's class names.
    proc = run_script(
        'score_detections.py',
        f'--results_dir={eval_dir}',
        f'--voc_dir={trained["voc_dir"]}',
        '--split=test',
        f'--model_card={trained["train_dir"]}/model.json',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'{100 * summary["metrics"]["voc07"]:.2f}' in proc.stdout

    # Export without model flags: metadata.json is the training card plus the export.
    out = exported['dir']
    meta = json.loads(open(os.path.join(out, 'metadata.json')).read())
    trained_card = card_lib.load(os.path.join(trained['train_dir'], 'model.json'))
    assert meta['card_id'] == trained_card.card_id and meta['class_names'] == list(
        synthetic.CLASSES
    )
    assert meta['export']['checkpoint'] == {
        'path': exported['prefix'],
        'step': 2,
        'moving_averages': False,
    }

    # Detect from the checkpoint with no model flag, and from a copy without its card with
    # every flag: the same detections (same code path, so exactly), class names in both JSONs.
    bare = tmp_path / 'bare'
    bare.mkdir()
    for name in os.listdir(trained['train_dir']):
        if name.startswith(os.path.basename(prefix) + '.'):
            shutil.copy(os.path.join(trained['train_dir'], name), bare / name)
    labels = tmp_path / 'labels.txt'
    labels.write_text('\n'.join(synthetic.CLASSES) + '\n')
    explicit_flags = [
        f'--model_name={MODEL}',
        f'--depth_multiplier={DEPTH}',
        f'--labels_file={labels}',
    ]
    results = {}
    for name, args in (
        ('card', [f'--checkpoint_path={trained["train_dir"]}']),
        ('flags', [f'--checkpoint_path={bare}/{os.path.basename(prefix)}', *explicit_flags]),
        ('frozen', [f'--frozen_graph={out}/frozen_graph.pb']),
    ):
        det_dir = str(tmp_path / ('det_' + name))
        proc = run_script(
            'detect_ssd_network.py',
            *args,
            f'--input={trained["images"]}',
            f'--output_dir={det_dir}',
            '--select_threshold=0.01',
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        results[name] = json.loads(open(os.path.join(det_dir, 'detections.json')).read())
        assert ('no model card found' in proc.stdout) == (name == 'flags')
        for image in results[name]['images']:
            rows = image['detections']
            assert rows and all(d['label'] == synthetic.CLASSES[d['label_id'] - 1] for d in rows)

    def strip(result):
        return [
            [
                {k: d[k] for k in ('label', 'label_id', 'score', 'xmin', 'ymin', 'xmax', 'ymax')}
                for d in im['detections']
            ]
            for im in result['images']
        ]

    assert strip(results['card']) == strip(results['flags'])


def test_contradicting_flags_fail_before_writing(trained, tmp_path):
    eval_dir = tmp_path / 'eval'
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={trained["prefix"]}',
        f'--eval_dir={eval_dir}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={trained["records"]}',
        '--depth_multiplier=0.5',
    )
    assert proc.returncode != 0 and not eval_dir.exists()
    assert (
        f'--depth_multiplier=0.5 contradicts the model card '
        f'{trained["train_dir"]}/model.json, which says 0.25'
    ) in proc.stderr
    before = sorted(os.listdir(trained['train_dir']))
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={trained["train_dir"]}',
        f'--dataset_dir={trained["records"]}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        '--depth_multiplier=0.5',
        '--max_number_of_steps=3',
        '--batch_size=2',
    )
    assert proc.returncode != 0
    # The trainer has no --override_model_card: a resumed model keeps its shape.
    assert (
        '--depth_multiplier=0.5 contradicts the model card %s/model.json, which says 0.25. Drop '
        '--depth_multiplier (the card describes the model), or train in a new --train_dir to use '
        '--depth_multiplier=0.5.' % trained['train_dir']
    ) in proc.stderr
    assert sorted(os.listdir(trained['train_dir'])) == before


@pytest.mark.parametrize('watch', [False, True])
def test_eval_dir_that_is_the_checkpoints_folder_is_refused(trained, watch):
    """The watcher wrote results folders named `model.ckpt-N/` among the checkpoints (later read
    as no checkpoint), and its event file beside the trainer's; refused before any work."""
    train_dir = trained['train_dir']
    before = {
        name: os.path.getmtime(os.path.join(train_dir, name)) for name in os.listdir(train_dir)
    }
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={train_dir if watch else trained["prefix"]}',
        f'--eval_dir={train_dir}/.',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={trained["records"]}',
        *(['--wait_for_checkpoints', '--eval_timeout=1'] if watch else []),
    )
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert (
        f'error: --eval_dir {train_dir}/. is the checkpoints\' folder; give a folder of its own, '
        f'e.g. {os.path.join(train_dir if watch else os.path.dirname(trained["prefix"]), "eval")}.'
    ) in proc.stderr
    after = {
        name: os.path.getmtime(os.path.join(train_dir, name)) for name in os.listdir(train_dir)
    }
    assert after == before


def test_caffe_converted_checkpoint_needs_no_model_flags(trained, tmp_path, monkeypatch):
    """caffe_to_tensorflow.py's card: detect and evaluate with no model flags; the evaluation
    warns that the card's select_threshold (MobileNet-SSD's deploy 0.25) lowers the mAP (a
    walkthrough got 0.00 there and 1.93 at 0.01, without a word)."""
    warnings = []
    monkeypatch.setattr(evaluate.logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
    from converters import caffe_convert

    net = caffe_fixtures.mobilenet_ssd(num_classes=len(synthetic.CLASSES) + 1, seed=2)
    _, model = caffe_fixtures.write_net(net, str(tmp_path), 'mobilenet')
    ckpt = str(tmp_path / 'converted' / 'mobilenet.ckpt')
    caffe_convert.convert(model, ckpt, MODEL, log=lambda line: None)
    det_dir = str(tmp_path / 'det')
    proc = run_script(
        'detect_ssd_network.py',
        f'--checkpoint_path={ckpt}',
        f'--input={trained["images"]}',
        f'--output_dir={det_dir}',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'model card {ckpt}.model.json' in proc.stdout
    card = card_lib.load(ckpt + '.model.json')
    settings = evaluate.EvalSettings(
        card=cli.resolve_card(cli.ModelFlags(), ckpt, log=print),
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=trained['records'],
        batch_size=2,
        pr_curves=False,
    )
    assert settings.card.detection == card.detection and settings.card.params == card.params
    with tf.Graph().as_default():
        result = evaluate.evaluate_checkpoint(
            settings, ckpt, str(tmp_path / 'eval'), log=lambda line: None
        )
    assert result.num_images == 3 and np.isfinite(result.metrics['voc07'])
    assert card.detection.select_threshold == 0.25
    (warning,) = [w for w in warnings if 'select_threshold' in w]
    assert warning.startswith('The mAP counts only detections scoring above select_threshold=0.25')
    assert warning.endswith('comparable with published ones, pass --select_threshold=0.01.')
    warnings.clear()
    evaluate.warn_select_threshold(card, exported=True)
    assert warnings[0].endswith(
        'export the model again with --select_threshold=0.01 (an exported '
        'model keeps the threshold it was exported with).'
    )
    warnings.clear()
    evaluate.warn_select_threshold(card.with_detection(select_threshold=0.05), exported=False)
    assert warnings == []


def test_a_copy_of_the_train_dir_names_its_own_checkpoints(trained, tmp_path):
    """The trainer's state file holds relative paths: with absolute ones, a copy of the folder
    (the original still there) resolved to the original's checkpoints, in TF's restore and ours."""
    train_dir = trained['train_dir']
    with open(os.path.join(train_dir, 'checkpoint')) as f:
        state = f.read()
    assert 'model_checkpoint_path' in state and train_dir not in state, state
    copy = str(tmp_path / 'copy')
    shutil.copytree(train_dir, copy)
    latest = os.path.join(copy, os.path.basename(trained['prefix']))
    assert checkpoints.latest_in_directory(copy) == latest
    assert tf.train.latest_checkpoint(copy) == latest


def test_classes_named_in_another_order_are_refused(trained, tmp_path):
    """Records converted with the labels in another order: evaluating or resuming the model on
    them would score (or train) its label 1 as the data's label 1. Eval and training refuse,
    naming both names of a label; fine-tuning says its class heads fit other classes."""
    reversed_names = list(reversed(trained['names']))
    records = str(tmp_path / 'reversed')
    convert.convert(
        pascalvoc.list_examples([trained['voc_dir']], 'test'),
        pascalvoc.VocLoader(reversed_names),
        reversed_names,
        records,
        'test',
        num_workers=1,
        show_progress=False,
    )
    first = f"label 1 is {trained['names'][0]!r} in the model, {reversed_names[0]!r} in the data"
    eval_dir = tmp_path / 'eval'
    data = ['--dataset_name=custom', '--dataset_split_name=test', f'--dataset_dir={records}']
    proc = run_script(
        'eval_ssd_network.py',
        f'--checkpoint_path={trained["prefix"]}',
        f'--eval_dir={eval_dir}',
        *data,
    )
    assert proc.returncode == 1 and not eval_dir.exists(), proc.stderr[-2000:]
    assert 'name their classes differently (the same classes in another order)' in proc.stderr
    assert first in proc.stderr
    before = sorted(os.listdir(trained['train_dir']))
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={trained["train_dir"]}',
        '--max_number_of_steps=4',
        '--batch_size=2',
        *data,
    )
    assert proc.returncode != 0 and first in proc.stderr, proc.stderr[-2000:]
    assert sorted(os.listdir(trained['train_dir'])) == before
    logged = []
    trainer.resolve_model_card(
        trainer.TrainSettings(
            train_dir=str(tmp_path / 'fine_tune'), checkpoint_path=trained['train_dir']
        ),
        dataset_factory.get_dataset('custom', 'test', records),
        log=logged.append,
    )
    # Fine-tuning onto the same classes in another order restores the class heads by name
    # (they were restored label for label, for other classes, with a warning).
    assert any(
        '(in another order): its class heads are restored for them by name: '
        f"{reversed_names[0]!r} (its label {len(reversed_names)})" in line
        for line in logged
    ), logged


def test_export_overwrite_leaves_files_no_export_wrote(trained, exported, tmp_path):
    """The audit's command: --output_dir holds no metadata.json but a SavedModel, a frozen graph
    and a TFLite model the user made elsewhere; --overwrite replaced the SavedModel and removed
    the other two. Now: one line naming the SavedModel, before any work, nothing touched. An
    --output_dir that is a file: one line, before loading the model. An export into the training
    folder itself replaces none of the trainer's files (model.json is its card; an export writes
    metadata.json)."""
    home = tmp_path / 'home'
    inference_fixtures.write_users_own_models(home)
    before = file_bytes(home)
    train = f'--checkpoint_path={trained["train_dir"]}'
    proc = run_script(
        'export_ssd_network.py',
        train,
        '--formats=saved_model',
        f'--output_dir={home}',
        '--overwrite',
    )
    assert proc.returncode == 1 and file_bytes(home) == before, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        f'export_ssd_network: error: {home / "saved_model"} is not from an earlier export (it '
        f'holds no assets.extra/metadata.json an export wrote); refusing to replace it: choose '
        f'another --output_dir, or move it out of {home}.'
    ], proc.stderr
    assert sorted(os.listdir(home)) == ['frozen_graph.pb', 'model_float.tflite', 'saved_model']

    notes = tmp_path / 'notes.txt'
    notes.write_text('mine')
    proc = run_script('export_ssd_network.py', train, f'--output_dir={notes}', '--overwrite')
    assert proc.stderr.splitlines() == [
        f'export_ssd_network: error: --output_dir {notes} is not a folder; choose a new or '
        'empty folder.'
    ], proc.stderr
    assert proc.returncode == 1 and notes.read_text() == 'mine'

    train_dir, trainer = exported['dir'], exported['trainer_files']
    assert 'model.json' in trainer and 'model.json' not in export.written_names(export.FORMATS)
    refused = exported['refused']
    assert refused.returncode == 1 and 'is not empty' in refused.stderr, refused.stderr[-3000:]
    assert exported['refused_files'] == trainer
    after = file_bytes(train_dir)
    assert {name: after[name] for name in trainer} == trainer
    assert sorted(set(after) - set(trainer)) == export.written_names(['frozen_graph'])
    assert checkpoints.resolve_checkpoint(train_dir) == exported['prefix']
    assert card_lib.find_for_checkpoint(train_dir) == os.path.join(train_dir, 'model.json')
