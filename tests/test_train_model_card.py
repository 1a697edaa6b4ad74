"""train_ssd_network.py --model_card: the net a card file describes is trained (an ablation of
anchors or box coding by editing a card, not the code); its classes come from the dataset."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from model import card as card_lib
from tests import train_fixtures
from tests.conftest import run_script
from training import trainer

v1 = tf.compat.v1
RATIOS = ((2, 3),) * 6
SCALING = (0.1, 0.1, 0.3, 0.3)


@pytest.fixture
def edited(tmp_path):
    """A MobileNet-SSD card (depth 0.25) edited as a user edits the JSON: ratios 2 and 3 on every
    layer and other variances; 21 VOC classes, which the dataset's replace. (path, its card)."""
    path = str(tmp_path / 'my_net.json')
    card_lib.write(path, card_lib.from_registry('ssd_300_mobilenet', 21, depth_multiplier=0.25))
    with open(path) as f:
        meta = json.load(f)
    meta['ssd_params']['anchor_ratios'] = [list(r) for r in RATIOS]
    meta['ssd_params']['prior_scaling'] = list(SCALING)
    meta['ssd_params']['batch_norm_decay'] = 0.9
    with open(path, 'w') as f:
        json.dump(meta, f)
    return path, card_lib.load(path)


def _dataset(settings):
    return dataset_factory.get_dataset('pascalvoc_2007', 'train', settings.dataset_dir)


def test_the_card_file_is_the_net_trained_with_the_datasets_classes(edited):
    path, given = edited
    settings = train_fixtures.tiny_settings(model_card=path)
    dataset = _dataset(settings)
    logged = []
    card = trainer._new_card(settings, dataset, logged.append)
    assert logged == []
    assert card.params == given.params._replace(num_classes=dataset.num_classes)
    assert card.params.anchor_ratios == RATIOS and card.params.prior_scaling == SCALING
    assert card.class_names == dataset.class_names
    assert card.provenance['model_card'] == {'path': path, 'card_id': None}  # a card never trained
    assert card.card_id != given.card_id
    # The heads predict for the card's anchors: per location 1 + 1 (max size) + 2 per ratio.
    params = card.params
    per_location = [
        1 + (size[1] is not None) + 2 * len(ratios)
        for size, ratios in zip(params.anchor_sizes, params.anchor_ratios)
    ]
    expected = sum(h * w * n for (h, w), n in zip(params.feat_shapes, per_location))
    # Its batch-norm decay too, unless --batch_norm_decay says otherwise.
    assert trainer.net_card(card, settings).params.batch_norm_decay == 0.9
    flagged = train_fixtures.tiny_settings(model_card=path, batch_norm_decay=0.95)
    assert trainer.net_card(card, flagged).params.batch_norm_decay == 0.95
    net = trainer.net_card(card, settings).net()
    assert len(net.anchors()) == expected
    with tf.Graph().as_default():
        with slim.arg_scope(net.arg_scope()):
            _, localisations, logits, _ = net.net(
                v1.placeholder(tf.float32, [1, 300, 300, 3]), is_training=False
            )
        assert sum(int(np.prod(t.shape[1:-1])) for t in logits) == expected
        assert all(t.shape[-1] == dataset.num_classes for t in logits)
        assert sum(int(np.prod(t.shape[1:-1])) for t in localisations) == expected


def test_another_net_is_refused_at_start_and_at_resume(edited, tmp_path):
    path, given = edited
    settings = train_fixtures.tiny_settings(model_card=path, model_name='ssd_300_vgg')
    with pytest.raises(trainer.UsageError) as info:
        trainer._new_card(settings, _dataset(settings), print)
    assert str(info.value) == (
        f'--model_name=ssd_300_vgg and --model_card={path} (ssd_300_mobilenet) name two nets: '
        'leave --model_name out, or give a card of ssd_300_vgg.'
    )
    # A training of the registry's net, resumed with the edited card.
    train_dir = tmp_path / 'run'
    train_dir.mkdir()
    settings = train_fixtures.tiny_settings(train_dir=str(train_dir))
    dataset = _dataset(settings)
    card_lib.write(str(train_dir / card_lib.CARD_FILE), trainer._new_card(settings, dataset, print))
    settings = train_fixtures.tiny_settings(train_dir=str(train_dir), model_card=path)
    with pytest.raises(card_lib.CardError) as info:
        trainer.resolve_model_card(settings, dataset, resume_from='model.ckpt-3')
    assert str(info.value) == (
        f'--model_card={path} describes another net than the training in '
        f'{train_dir / card_lib.CARD_FILE} (its anchor_ratios, prior_scaling differ): train in a '
        'new --train_dir, or leave --model_card out to resume.'
    )
    # A finished run (its checkpoint at --max_number_of_steps) refuses it as well: it said
    # "nothing to train" as if the edited card were the run's.
    finished = train_fixtures.tiny_settings(
        train_dir=str(train_dir), model_card=path, max_number_of_steps=3
    )
    with pytest.raises(card_lib.CardError) as finished_info:
        trainer._reached_last_step(finished, 'model.ckpt-3', 3)
    assert str(finished_info.value) == str(info.value)
    # The same net (the run's own card) resumes.
    own = str(train_dir / card_lib.CARD_FILE)
    settings = train_fixtures.tiny_settings(train_dir=str(train_dir), model_card=own)
    card, found = trainer.resolve_model_card(settings, dataset, resume_from='model.ckpt-3')
    assert found == own and card.params.anchor_ratios != RATIOS


def test_structure_flags_beside_the_card_are_refused(edited):
    path, _ = edited
    proc = run_script(
        'train_ssd_network.py', f'--model_card={path}', '--anchor_sizes=mobilenet_ssd'
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f'train_ssd_network: error: --anchor_sizes and --model_card={path}: the card describes the '
        'net to train; edit its ssd_params (or normalisation) instead, or leave it out; '
        '--helpfull lists the flags.'
    ]
    # Two failed checks: absl puts each on a line, both lose its list of every flag and value.
    proc = run_script(
        'train_ssd_network.py',
        f'--model_card={path}',
        '--depth_multiplier=0.5',
        '--learning_rate_decay_type=piecewise',
        '--boundaries=5',
        '--values=0.1,0.01',
        '--learning_rate=0.1',
    )
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith('train_ssd_network: error: --learning_rate is not used with --values')
    assert f'; --depth_multiplier and --model_card={path}: the card describes' in line
    assert 'flags ' not in line and 'None' not in line


def test_fine_tuning_into_the_card_says_how_the_checkpoints_classes_fit(edited, tmp_path):
    """With --checkpoint_path, the checkpoint's own card still names what is fine-tuned (its
    card id in the provenance) and how its class heads fit the dataset's classes."""
    from tests import eval_fixtures

    path, _ = edited
    prefix = eval_fixtures.write_random_checkpoint(
        str(tmp_path / 'voc' / 'model.ckpt'), 'ssd_300_mobilenet', 21, 5, depth_multiplier=0.25
    )
    voc = card_lib.from_registry('ssd_300_mobilenet', 21, depth_multiplier=0.25).replace(
        card_id='c' * 32
    )
    card_lib.write(str(tmp_path / 'voc' / card_lib.CARD_FILE), voc)
    settings = train_fixtures.tiny_settings(model_card=path, checkpoint_path=prefix)
    logged = []
    card = trainer._new_card(settings, _dataset(settings), logged.append)
    assert card.provenance['fine_tuned_from'] == {'checkpoint': prefix, 'card_id': 'c' * 32}
    assert card.params.anchor_ratios == RATIOS
    assert logged == [
        f'fine-tuning a 20-class model ({prefix}) on 6 classes: its class heads do not fit; '
        'restore without them (--checkpoint_exclude_scopes or --exclude_mismatched_vars)'
    ]
