"""Messages a user walkthrough found misleading: each now says what is wrong and a fix that works
(no advice that leads to another error, no model described before the error that its path is
wrong, no file type offered that the script then refuses)."""

import os

import pytest

from datasets import synthetic
from model import card as card_lib
from model import cli
from tests import eval_fixtures
from tests import inference_fixtures
from tests.conftest import run_script


def _card():
    return card_lib.from_registry(
        'ssd_300_mobilenet', class_names=synthetic.CLASSES, depth_multiplier=0.25
    )


def test_labels_of_another_count_than_the_cards_ask_for_the_cards_count(tmp_path):
    """It said `pass --num_classes=5 if the model was trained with these classes`, and
    --num_classes=5 then contradicted the card."""
    path = card_lib.write(str(tmp_path / 'model.json'), _card())
    labels = tmp_path / 'labels4.txt'
    labels.write_text('a\nb\nc\nd\n')
    fix = 'pass --labels_file with 6 names, one per line, label 1 first.'
    with pytest.raises(card_lib.CardError) as err:
        cli.resolve_card(
            cli.ModelFlags(labels_file=str(labels)), str(tmp_path), log=lambda line: None
        )
    assert str(err.value) == (
        f'{labels} names 4 classes but the model card {path} says the model has 6; {fix}'
    )
    # An export's card (eval --exported_model names its metadata.json; detect's exports).
    with pytest.raises(card_lib.CardError) as err:
        cli.with_labels_file(_card(), str(labels), path)
    assert str(err.value) == (
        f'{labels} names 4 classes but the model card {path} says the model has 6; {fix}'
    )
    with pytest.raises(card_lib.CardError) as err:
        cli.with_labels_file(_card(), str(labels))
    assert (
        str(err.value)
        == f"{labels} names 4 classes but the model's card says the model has 6; {fix}"
    )
    # With --override_model_card the flag counts the classes: --num_classes is the fix.
    with pytest.raises(card_lib.CardError) as err:
        cli.resolve_card(
            cli.ModelFlags(labels_file=str(labels), num_classes=4, override_model_card=True),
            str(tmp_path),
            log=lambda line: None,
        )
    assert str(err.value) == (
        f'{labels} names 4 classes but the model has 3 (num_classes=4 counts the background); '
        f'pass --num_classes=5 if the model was trained with these classes.'
    )


def _eval(tmp_path, *args):
    proc = run_script('eval_ssd_network.py', f'--eval_dir={tmp_path / "eval"}', *args)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_eval_says_a_wrong_checkpoint_path_before_describing_a_model(tmp_path):
    """It described the model the flags make ('no model card found ...; the model comes from
    the flags: ssd_300_vgg, ...') before saying that there is no checkpoint."""
    _, records, _ = eval_fixtures.make_synthetic_records(str(tmp_path), num_images=4)
    missing = tmp_path / 'nonexistent'
    proc = _eval(
        tmp_path,
        f'--checkpoint_path={missing}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={records}',
    )
    assert proc.stdout == ''
    assert proc.stderr.splitlines() == [
        f'eval_ssd_network: error: no checkpoint at {missing}: expected {missing}.index (and its '
        f'.data-* files), a V1 checkpoint file, or a directory holding checkpoints.'
    ]


def test_eval_names_the_models_of_an_export_folder_it_evaluates(tmp_path):
    """An export folder (as --exported_model or --checkpoint_path): the error lists the folder's
    models that eval evaluates, and the file types it names are those eval takes."""
    export = tmp_path / 'export'
    export.mkdir()
    inference_fixtures.write_users_own_models(export)
    (export / 'metadata.json').write_text('{}')
    notes = tmp_path / 'notes.txt'
    notes.write_text('not a model')
    models = (
        f'pass --exported_model={export}/frozen_graph.pb or --exported_model={export}/'
        f'model_float.tflite or --exported_model={export}/saved_model'
    )
    types = (
        'an OpenVINO model file (.xml), a frozen graph file (.pb), a TFLite model file (.tflite) '
        'or a SavedModel folder'
    )
    cases = [
        ([f'--exported_model={export}'], f'{export}: an export folder, not one of its models'),
        (
            [f'--checkpoint_path={export}'],
            f'{export}: an export folder, not a checkpoint (--checkpoint_path)',
        ),
        (
            [f'--checkpoint_path={export}', '--wait_for_checkpoints', '--eval_timeout=60'],
            f'{export}: an export folder, not a checkpoint (--checkpoint_path)',
        ),
    ]
    for args, problem in cases:
        proc = _eval(tmp_path, *args, f'--dataset_dir={tmp_path}')
        assert proc.stderr.splitlines() == [f'eval_ssd_network: error: {problem}; {models}.']
    proc = _eval(tmp_path, f'--exported_model={notes}', f'--dataset_dir={tmp_path}')
    assert proc.stderr.splitlines() == [
        f'eval_ssd_network: error: {notes}: not a model eval evaluates by its file type '
        f'({types}); export the checkpoint with export_ssd_network.py --formats=frozen_graph '
        f'(or openvino, saved_model) and evaluate that.'
    ]


def test_a_single_evaluation_into_a_watchers_folder_is_refused(tmp_path):
    """It wrote results.json beside the watcher's ledger and a second event file at a step the
    watcher's event file has."""
    eval_dir = tmp_path / 'eval'
    eval_dir.mkdir()
    (eval_dir / 'eval_ledger.jsonl').write_text('')
    proc = _eval(
        tmp_path,
        f'--checkpoint_path={tmp_path / "train"}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={tmp_path}',
    )
    assert proc.stderr.splitlines()[-1] == (
        f"eval_ssd_network: error: --eval_dir {eval_dir} is a watcher's (it holds "
        f'eval_ledger.jsonl); evaluate once into a folder of its own, e.g. {eval_dir / "once"}.'
    )
    assert sorted(os.listdir(eval_dir)) == ['eval_ledger.jsonl']
