"""Fine-tuning onto the classes of the fine-tuned model in another order, or onto some of them:
the class heads are restored for each class by name (a gather on the per-anchor class axis),
where they were restored label for label, each class's weights trained for another class."""

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from datasets import dataset_factory
from model import card as card_lib
from model import checkpoints
from tests import eval_fixtures
from tests import train_fixtures
from training import trainer

v1 = tf.compat.v1


def _card(names):
    return card_lib.from_registry('ssd_300_mobilenet', class_names=names, depth_multiplier=0.25)


def test_class_indices_by_name():
    model = _card(('cat', 'dog', 'bird', 'fish'))
    assert card_lib.class_indices(model, ('bird', 'cat', 'dog', 'fish')) == [0, 3, 1, 2, 4]
    assert card_lib.class_indices(model, ('fish', 'cat')) == [0, 4, 1]  # some of them
    assert card_lib.class_indices(model, ('cat', 'dog', 'bird')) == [0, 1, 2, 3]
    for names in (
        ('cat', 'dog', 'bird', 'fish'),  # the same labels: restored as they are
        ('cat', 'horse'),  # a class the model does not have
        ('class_1', 'class_2'),  # unnamed data
    ):
        assert card_lib.class_indices(model, names) is None, names
    assert card_lib.class_indices(_card(card_lib.default_class_names(5)), ('cat',)) is None


def test_class_gather_picks_each_anchors_classes():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 3, 2, 2 * 5)).astype(np.float32)  # 2 anchors x 5 classes
    gather = checkpoints.ClassGather([0, 4, 1], 5)
    expected = np.stack([weights[..., a * 5 + c] for a in range(2) for c in (0, 4, 1)], axis=-1)
    np.testing.assert_array_equal(gather(weights), expected)
    np.testing.assert_array_equal(gather(weights[0, 0, 0]), expected[0, 0, 0])  # biases


@pytest.mark.parametrize('extra', [(), ('horse', 'fish')])
def test_fine_tuning_restores_the_class_heads_by_name(tmp_path, extra):
    settings = train_fixtures.tiny_settings()
    dataset = dataset_factory.get_dataset('pascalvoc_2007', 'train', settings.dataset_dir)
    names = dataset.class_names
    source_names = extra + tuple(reversed(names))
    folder = tmp_path / 'source'
    prefix = eval_fixtures.write_random_checkpoint(
        str(folder / 'model.ckpt'),
        'ssd_300_mobilenet',
        len(source_names) + 1,
        5,
        depth_multiplier=0.25,
    )
    card_lib.write(str(folder / card_lib.CARD_FILE), _card(source_names).replace(card_id='5' * 32))
    settings = train_fixtures.tiny_settings(checkpoint_path=prefix)
    logged = []
    card = trainer._new_card(settings, dataset, logged.append)
    which = 'in another order' if not extra else f'among its {len(source_names)}'
    assert logged == [
        f'the fine-tuned model ({prefix}) has the classes of dataset pascalvoc_2007/train '
        f'({which}): its class heads are restored for them by name: '
        + ', '.join(f'{n!r} (its label {source_names.index(n) + 1})' for n in names)
    ]
    indices = [0] + [source_names.index(n) + 1 for n in names]
    reader = tf.train.load_checkpoint(prefix)
    with tf.Graph().as_default():
        net = trainer.net_card(card, settings).net()
        with slim.arg_scope(net.arg_scope()):
            net.net(v1.placeholder(tf.float32, [1, 300, 300, 3]), is_training=False)
        restorer = trainer.fine_tune_restorer(
            settings, net, trainer.class_heads_by_name(settings, card, net)
        )
        heads = [v for v in slim.get_model_variables() if '_mbox_conf/' in v.op.name]
        model_names = {v.op.name for v in slim.get_model_variables()}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            restorer.restore(sess)
            restored = sess.run(heads)
    assert len(heads) == 12 and {i.name for i in restorer.items} == model_names
    classes = len(source_names) + 1
    for variable, value in zip(heads, restored):
        source = reader.get_tensor(variable.op.name)
        anchors = source.shape[-1] // classes
        expected = np.stack(
            [source[..., a * classes + c] for a in range(anchors) for c in indices], axis=-1
        )
        np.testing.assert_array_equal(value, expected, err_msg=variable.op.name)
